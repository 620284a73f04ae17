/* The elementwise passes of src/_bn_simd.h (normalise, input gradient, and their fused-relu
 * forms) with the dispatchers; included by it at its end (one header, split for length), so
 * the macros and helpers defined there are in scope. */
#ifndef FC_BN_SIMD_ELEMENTWISE_H
#define FC_BN_SIMD_ELEMENTWISE_H

/* --- elementwise passes: y = ((x - mh) - ml) * a + b and
 *     gx = (gy * a + ((x - mh) - ml) * d) + c,
 * the operations, and their order, of the Cython loops they replace, so the same bits (the
 * baseline build vectorises those loops only 4 wide). The AVX-512 bodies first store up to the
 * output's next 64-byte boundary with a mask, so the body's stores (and, when the inputs share
 * the output's offset, as NumPy's allocations usually do, its loads) never split a cache line.
 * Return 1 when they did the work, 0 when the caller's loop must. */
#if FC_BN_X86
static inline __attribute__((always_inline)) FC_BN_512 __m512
fc_bn_norm16(__m512 x, __m512 vh, __m512 vl, __m512 va, __m512 vb)
{
    return _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(x, vh), vl), va), vb);
}

/* values before the first 64-byte aligned address at or after p; 0 if there are fewer than
 * that (the tail does them) or p is not float-aligned (no boundary is ever reached) */
static inline Py_ssize_t fc_bn_head(const float *p, Py_ssize_t n)
{
    Py_ssize_t head = (Py_ssize_t)(((64 - ((size_t)p & 63)) & 63) / sizeof(float));
    return ((size_t)p & 3) || head > n ? 0 : head;
}

/* fc_bn_norm16, then with relu 0 where it is < 0 (NaN and -0 pass, as the ReLU kernel) */
static inline __attribute__((always_inline)) FC_BN_512 __m512
fc_bn_norm16_relu(__m512 x, __m512 vh, __m512 vl, __m512 va, __m512 vb, int relu)
{
    __m512 v = fc_bn_norm16(x, vh, vl, va, vb);
    if (relu)
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ),
                               _mm512_setzero_ps());
    return v;
}

static inline __attribute__((always_inline)) FC_BN_512 void
fc_bn_normalize_body(const float *x, float *y, Py_ssize_t n, float mh, float ml, float a,
                     float b, int relu)
{
    const __m512 vh = _mm512_set1_ps(mh), vl = _mm512_set1_ps(ml), va = _mm512_set1_ps(a),
                 vb = _mm512_set1_ps(b);
    Py_ssize_t i = fc_bn_head(y, n);
    __mmask16 k;
    if (i) {
        k = (__mmask16)((1u << i) - 1);
        _mm512_mask_storeu_ps(y, k, fc_bn_norm16_relu(_mm512_maskz_loadu_ps(k, x), vh, vl, va,
                                                      vb, relu));
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, fc_bn_norm16_relu(_mm512_loadu_ps(x + i), vh, vl, va, vb,
                                                  relu));
    if (i < n) {
        k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, fc_bn_norm16_relu(_mm512_maskz_loadu_ps(k, x + i), vh,
                                                          vl, va, vb, relu));
    }
}

static FC_BN_512 void fc_bn_normalize_512(const float *x, float *y, Py_ssize_t n, float mh,
                                          float ml, float a, float b)
{
    fc_bn_normalize_body(x, y, n, mh, ml, a, b, 0);
}

static FC_BN_512 void fc_bn_normalize_relu_512(const float *x, float *y, Py_ssize_t n,
                                               float mh, float ml, float a, float b)
{
    fc_bn_normalize_body(x, y, n, mh, ml, a, b, 1);
}

/* AVX2: the same expressions 8 at a time, the last n % 8 values as the Cython loops (with
 * relu: 0 where the value is < 0, NaN and -0 passing) */
static inline __attribute__((always_inline)) FC_BN_256 void
fc_bn_normalize_body256(const float *x, float *y, Py_ssize_t n, float mh, float ml, float a,
                        float b, int relu)
{
    const __m256 vh = _mm256_set1_ps(mh), vl = _mm256_set1_ps(ml), va = _mm256_set1_ps(a),
                 vb = _mm256_set1_ps(b), z = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(
                       _mm256_loadu_ps(x + i), vh), vl), va), vb);
        if (relu)
            v = _mm256_andnot_ps(_mm256_cmp_ps(v, z, _CMP_LT_OQ), v);
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) {
        float v = ((x[i] - mh) - ml) * a + b;
        y[i] = relu && v < 0 ? 0 : v;
    }
}

static FC_BN_256 void fc_bn_normalize_256(const float *x, float *y, Py_ssize_t n, float mh,
                                          float ml, float a, float b)
{
    fc_bn_normalize_body256(x, y, n, mh, ml, a, b, 0);
}

static FC_BN_256 void fc_bn_normalize_relu_256(const float *x, float *y, Py_ssize_t n,
                                               float mh, float ml, float a, float b)
{
    fc_bn_normalize_body256(x, y, n, mh, ml, a, b, 1);
}

static inline __attribute__((always_inline)) FC_BN_512 __m512
fc_bn_gx16(__m512 g, __m512 x, __m512 vh, __m512 vl, __m512 va, __m512 vd, __m512 vc)
{
    return _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(g, va),
                                       _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(x, vh), vl), vd)),
                         vc);
}

/* fc_bn_gx16, gy first masked as relu's backward when relu (fc_bn_relu_mask): relu's input
 * was ((x - vh) - vl) * va + vrb, va = weight * invstd being also the forward's scale */
static inline __attribute__((always_inline)) FC_BN_512 __m512
fc_bn_gx16_relu(__m512 g, __m512 x, __m512 vh, __m512 vl, __m512 va, __m512 vd, __m512 vc,
                int relu, __m512 vrb)
{
    if (relu)
        g = fc_bn_relu_mask(g, _mm512_sub_ps(_mm512_sub_ps(x, vh), vl), va, vrb);
    return fc_bn_gx16(g, x, vh, vl, va, vd, vc);
}

static inline __attribute__((always_inline)) FC_BN_512 void
fc_bn_grad_input_body(const float *gy, const float *x, float *gx, Py_ssize_t n, float mh,
                      float ml, float a, float d, float c, int relu, float rb)
{
    const __m512 vh = _mm512_set1_ps(mh), vl = _mm512_set1_ps(ml), va = _mm512_set1_ps(a),
                 vd = _mm512_set1_ps(d), vc = _mm512_set1_ps(c), vrb = _mm512_set1_ps(rb);
    Py_ssize_t i = fc_bn_head(gx, n);
    __mmask16 k;
    if (i) {
        k = (__mmask16)((1u << i) - 1);
        _mm512_mask_storeu_ps(gx, k, fc_bn_gx16_relu(_mm512_maskz_loadu_ps(k, gy),
                                                     _mm512_maskz_loadu_ps(k, x), vh, vl, va,
                                                     vd, vc, relu, vrb));
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(gx + i, fc_bn_gx16_relu(_mm512_loadu_ps(gy + i),
                                                 _mm512_loadu_ps(x + i), vh, vl, va, vd, vc,
                                                 relu, vrb));
    if (i < n) {
        k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(gx + i, k, fc_bn_gx16_relu(_mm512_maskz_loadu_ps(k, gy + i),
                                                         _mm512_maskz_loadu_ps(k, x + i), vh,
                                                         vl, va, vd, vc, relu, vrb));
    }
}

static FC_BN_512 void fc_bn_grad_input_512(const float *gy, const float *x, float *gx,
                                           Py_ssize_t n, float mh, float ml, float a, float d,
                                           float c)
{
    fc_bn_grad_input_body(gy, x, gx, n, mh, ml, a, d, c, 0, 0.0f);
}

static FC_BN_512 void fc_bn_grad_input_relu_512(const float *gy, const float *x, float *gx,
                                                Py_ssize_t n, float mh, float ml, float a,
                                                float d, float c, float rb)
{
    fc_bn_grad_input_body(gy, x, gx, n, mh, ml, a, d, c, 1, rb);
}

/* with relu: gy masked first, 0 where relu's input ((x - mh) - ml) * a + rb is <= 0 (NaN
 * passes), as _relu_masked */
static inline __attribute__((always_inline)) FC_BN_256 void
fc_bn_grad_input_body256(const float *gy, const float *x, float *gx, Py_ssize_t n, float mh,
                         float ml, float a, float d, float c, int relu, float rb)
{
    const __m256 vh = _mm256_set1_ps(mh), vl = _mm256_set1_ps(ml), va = _mm256_set1_ps(a),
                 vd = _mm256_set1_ps(d), vc = _mm256_set1_ps(c), vrb = _mm256_set1_ps(rb);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 dx = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vh), vl);
        __m256 g = _mm256_loadu_ps(gy + i);
        if (relu)
            g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_add_ps(_mm256_mul_ps(dx, va), vrb),
                                               _mm256_setzero_ps(), _CMP_NLE_UQ));
        _mm256_storeu_ps(gx + i, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(g, va),
                                                             _mm256_mul_ps(dx, vd)), vc));
    }
    for (; i < n; i++) {
        float dx = (x[i] - mh) - ml, g = gy[i];
        if (relu && dx * a + rb <= 0)
            g = 0;
        gx[i] = g * a + dx * d + c;
    }
}

static FC_BN_256 void fc_bn_grad_input_256(const float *gy, const float *x, float *gx,
                                           Py_ssize_t n, float mh, float ml, float a, float d,
                                           float c)
{
    fc_bn_grad_input_body256(gy, x, gx, n, mh, ml, a, d, c, 0, 0.0f);
}

static FC_BN_256 void fc_bn_grad_input_relu_256(const float *gy, const float *x, float *gx,
                                                Py_ssize_t n, float mh, float ml, float a,
                                                float d, float c, float rb)
{
    fc_bn_grad_input_body256(gy, x, gx, n, mh, ml, a, d, c, 1, rb);
}
#endif  /* FC_BN_X86 */

static int fc_bn_normalize(const float *x, float *y, Py_ssize_t n, float mh, float ml, float a,
                           float b)
{
#if FC_BN_X86
    switch (fc_bn_target()) {
    case FC_BN_AVX512: fc_bn_normalize_512(x, y, n, mh, ml, a, b); return 1;
    case FC_BN_AVX2: fc_bn_normalize_256(x, y, n, mh, ml, a, b); return 1;
    }
#endif
    return 0;
}

/* gx = gy * a + ((x - mh) - ml) * d + c; the caller keeps its own gy * a loop for d = c = 0
 * (0 * inf and the sign of 0 + -0 would differ) */
static int fc_bn_grad_input(const float *gy, const float *x, float *gx, Py_ssize_t n, float mh,
                            float ml, float a, float d, float c)
{
#if FC_BN_X86
    switch (fc_bn_target()) {
    case FC_BN_AVX512: fc_bn_grad_input_512(gy, x, gx, n, mh, ml, a, d, c); return 1;
    case FC_BN_AVX2: fc_bn_grad_input_256(gy, x, gx, n, mh, ml, a, d, c); return 1;
    }
#endif
    return 0;
}

/* fc_bn_grad_input of gy masked as relu's backward (relu's input was ((x - mh) - ml) * a +
 * rb: a = weight * invstd is also the forward's scale, rb its shift), the mask applied in
 * registers; AVX-512 or AVX2 (elsewhere the caller masks into a buffer) */
static int fc_bn_grad_input_relu(const float *gy, const float *x, float *gx, Py_ssize_t n,
                                 float mh, float ml, float a, float d, float c, float rb)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_grad_input_relu_512(gy, x, gx, n, mh, ml, a, d, c, rb);
        return 1;
    }
    if (fc_bn_target() == FC_BN_AVX2) {
        fc_bn_grad_input_relu_256(gy, x, gx, n, mh, ml, a, d, c, rb);
        return 1;
    }
#endif
    return 0;
}

/* max(fc_bn_normalize, 0) in one pass (the fused batch_norm + relu); AVX-512 or AVX2 */
static int fc_bn_normalize_relu(const float *x, float *y, Py_ssize_t n, float mh, float ml,
                                float a, float b)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_normalize_relu_512(x, y, n, mh, ml, a, b);
        return 1;
    }
    if (fc_bn_target() == FC_BN_AVX2) {
        fc_bn_normalize_relu_256(x, y, n, mh, ml, a, b);
        return 1;
    }
#endif
    return 0;
}

#endif  /* FC_BN_SIMD_ELEMENTWISE_H */
