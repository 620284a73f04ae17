/* Global average pooling of float32 planes (adaptive average to (1, 1)), with the run-time
 * ISA choice of _pool_max.h. Included from src/pool2d.pyx.
 *
 * fc_plane_means_f32(x, P, n, out): out[p] = (sum of the n values of plane p) / H / W for
 * P consecutive planes (the caller passes H and W). With AVX-512 a plane is summed in two
 * 16-lane accumulators (the masked tail included), added and reduced in a fixed order; the
 * other paths use the 8 fixed partial sums of pool2d.pyx's _plane_sum. Either way a plane's
 * value does not depend on how the planes are split over threads. Small planes (global
 * pooling after a CNN's last block: 8x8, 4x4, 7x7) make the per-plane overhead the cost, so
 * a call handles a block of planes.
 */
#ifndef FC_POOL_MEAN_H
#define FC_POOL_MEAN_H
#include "_pool_max.h"

static float fc_plane_sum8_f32(const float *x, Py_ssize_t n)
{
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
    Py_ssize_t i, nv = n - n % 8;
    int l;
    for (i = 0; i < nv; i += 8)
        for (l = 0; l < 8; l++)
            lane[l] += x[i + l];
    for (i = nv; i < n; i++)
        lane[i - nv] += x[i];
    for (l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

#if FC_POOL_X86
static FC_AVX512 void fc_plane_means_avx512(const float *x, Py_ssize_t P, Py_ssize_t n,
                                            float *out, float H, float W)
{
    Py_ssize_t nv = n - n % 32, rem = n - nv;
    __mmask16 t0 = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1);
    __mmask16 t1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
    for (Py_ssize_t p = 0; p < P; p++, x += n) {
        __m512 a = _mm512_maskz_loadu_ps(t0, x + nv);
        __m512 b = _mm512_maskz_loadu_ps(t1, x + nv + 16);
        for (Py_ssize_t i = 0; i < nv; i += 32) {
            a = _mm512_add_ps(a, _mm512_loadu_ps(x + i));
            b = _mm512_add_ps(b, _mm512_loadu_ps(x + i + 16));
        }
        out[p] = _mm512_reduce_add_ps(_mm512_add_ps(a, b)) / H / W;
    }
}
#endif

static void fc_plane_means_f32(const float *x, Py_ssize_t P, Py_ssize_t n, float *out,
                               float H, float W)
{
#if FC_POOL_X86
    if (fc_pool_target() == FC_POOL_AVX512) {
        fc_plane_means_avx512(x, P, n, out, H, W);
        return;
    }
#endif
    for (Py_ssize_t p = 0; p < P; p++)
        out[p] = fc_plane_sum8_f32(x + p * n, n) / H / W;
}

#endif  /* FC_POOL_MEAN_H */
