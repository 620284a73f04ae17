/* Per-thread, grow-only scratch buffers for kernels (column matrices and the like).
 *
 * The first touch of a freshly allocated large buffer costs up to 3x on our machines, so a
 * kernel asks for its workspace here and gets the same memory back on every call from the
 * same thread (OpenMP pool threads persist between parallel regions). Buffers are freed when
 * their thread exits (a pthread key destructor), so short-lived Python threads do not leak.
 * fc_scratch returns NULL when the allocation fails; callers turn that into MemoryError.
 */
#ifndef FASTCONV_SCRATCH_H
#define FASTCONV_SCRATCH_H
#include <stdlib.h>
#include <string.h>

#define FC_SCRATCH_SLOTS 6
#define FC_SCRATCH_ALIGN 64

typedef struct { void *ptr[FC_SCRATCH_SLOTS]; size_t size[FC_SCRATCH_SLOTS]; } fc_scratch_set;

#if defined(_WIN32)
static __declspec(thread) fc_scratch_set fc_scratch_tls;
static fc_scratch_set *fc_scratch_get_set(void) { return &fc_scratch_tls; }
static void fc_aligned_free(void *p) { _aligned_free(p); }
static void *fc_aligned_alloc(size_t n) { return _aligned_malloc(n, FC_SCRATCH_ALIGN); }
#else
#include <pthread.h>
static pthread_key_t fc_scratch_key;
static pthread_once_t fc_scratch_once = PTHREAD_ONCE_INIT;
static void fc_aligned_free(void *p) { free(p); }
static void *fc_aligned_alloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, FC_SCRATCH_ALIGN, n) == 0 ? p : NULL;
}
static void fc_scratch_destroy(void *arg) {
    fc_scratch_set *s = (fc_scratch_set *)arg;
    for (int i = 0; i < FC_SCRATCH_SLOTS; i++) fc_aligned_free(s->ptr[i]);
    free(s);
}
static void fc_scratch_make_key(void) { pthread_key_create(&fc_scratch_key, fc_scratch_destroy); }
static fc_scratch_set *fc_scratch_get_set(void) {
    pthread_once(&fc_scratch_once, fc_scratch_make_key);
    fc_scratch_set *s = (fc_scratch_set *)pthread_getspecific(fc_scratch_key);
    if (s == NULL) {
        s = (fc_scratch_set *)calloc(1, sizeof(fc_scratch_set));
        if (s == NULL || pthread_setspecific(fc_scratch_key, s) != 0) { free(s); return NULL; }
    }
    return s;
}
#endif

/* A buffer of at least nbytes for the calling thread, slot 0..FC_SCRATCH_SLOTS-1. Contents are
 * whatever the previous user left. Valid until the next call with the same slot. */
static void *fc_scratch(int slot, size_t nbytes) {
    fc_scratch_set *s = fc_scratch_get_set();
    if (s == NULL) return NULL;
    if (nbytes == 0) nbytes = FC_SCRATCH_ALIGN;
    if (s->size[slot] < nbytes) {
        fc_aligned_free(s->ptr[slot]);
        s->size[slot] = 0;
        s->ptr[slot] = fc_aligned_alloc(nbytes);
        if (s->ptr[slot] == NULL) return NULL;
        s->size[slot] = nbytes;
    }
    return s->ptr[slot];
}
#endif
