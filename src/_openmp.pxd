# The one place fastconv touches the OpenMP runtime (scikit-learn's _openmp_helpers pattern).
# Without OpenMP (compiler lacks it, or FASTCONV_OPENMP=0) these resolve to serial stand-ins,
# and Cython's prange already degrades to a plain loop, so every kernel still builds and runs.
cdef extern from *:
    """
    #ifdef _OPENMP
      #include <omp.h>
      #define FC_HAVE_OPENMP 1
      #define FC_OPENMP_DATE _OPENMP
    #else
      #define FC_HAVE_OPENMP 0
      #define FC_OPENMP_DATE 0
      static inline int omp_get_max_threads(void) { return 1; }
      static inline int omp_get_thread_num(void) { return 0; }
      static inline int omp_get_num_threads(void) { return 1; }
      static inline int omp_get_num_procs(void) { return 1; }
      static inline void omp_set_num_threads(int n) { (void)n; }
    #endif
    """
    bint FC_HAVE_OPENMP
    int FC_OPENMP_DATE
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    int omp_get_num_procs() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
