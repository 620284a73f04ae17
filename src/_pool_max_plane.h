/* The whole-plane max pooling body of src/_pool_max.h, included there once per SIMD path
 * (AVX-512, AVX2, SSE2). The includer defines PM_ATTR (the target attribute), PM(name) (name
 * mangling), PM_VALS (the values-only row kernel, constant nr, kw and s) and PM_ROWS (the row
 * kernel with indices); this file undefines them. */

/* Values only, output rows [oh0, oh1) whose K window rows are all inside the input: the row
 * pointers and the tap pattern are constants of the loop (K, S constant at each call). */
static inline __attribute__((always_inline)) PM_ATTR void
PM(fc_max_vals_rows_in)(const float *xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OW,
                        int K, int S, int sh, int ph, int pw, int dh, Py_ssize_t oh0,
                        Py_ssize_t oh1, Py_ssize_t lo, Py_ssize_t hi, float *op,
                        fc_plane_pf *pf)
{
    for (Py_ssize_t oh = oh0; oh < oh1; oh++) {
        const float *r[3];
        float *om = op + oh * OW;
        Py_ssize_t h0 = oh * sh - ph;
        fc_plane_pf_row(pf);
        for (int i = 0; i < K; i++)
            r[i] = xp + (h0 + (Py_ssize_t)i * dh) * W;
        fc_max_row_rest_f32(xp, H, W, OW, h0, K, S, pw, dh, lo, hi,
                            PM_VALS(r, K, K, S, om, lo, hi, -pw), om, NULL);
    }
}

/* A whole plane: the row kernel PM_ROWS (values only: PM_VALS) on the interior windows
 * [lo, hi) of every output row (at least one vector of them), fc_max_window_f32 on the
 * border windows and on every window of a row that read a NaN. Same results as the
 * row-by-row path of pool2d.pyx, without its per-row calls (they cost more than the SIMD
 * work on 32-wide planes). k x k windows, k = 2 or 3; stride s = 1 or 2 and dilation 1
 * along W. */
static PM_ATTR void PM(fc_max_plane)(const float *xp, Py_ssize_t H, Py_ssize_t W,
                                     Py_ssize_t OH, Py_ssize_t OW, int k, int sh, int s,
                                     int ph, int pw, int dh, Py_ssize_t lo, Py_ssize_t hi,
                                     float *op, int64_t *ip)
{
    fc_plane_pf pf = {(const char *)(xp + H * W), 0, 0, H * W * (Py_ssize_t)sizeof(float)};
    /* values only: the rows with all k window rows inside go through the loop above */
    Py_ssize_t oh0 = 0, oh1 = 0, last = H - 1 - (Py_ssize_t)(k - 1) * dh + ph;
    pf.step = (pf.end + OH - 1) / OH;
    if (ip == NULL && last >= 0) {
        oh0 = (ph + sh - 1) / sh;
        oh1 = last / sh + 1 < OH ? last / sh + 1 : OH;
        if (oh0 > oh1)
            oh0 = oh1;
        /* constant k and s: each call is inlined with its own unrolled windows */
        if (k == 3 && s == 2)
            PM(fc_max_vals_rows_in)(xp, H, W, OW, 3, 2, sh, ph, pw, dh, oh0, oh1, lo, hi, op, &pf);
        else if (k == 3)
            PM(fc_max_vals_rows_in)(xp, H, W, OW, 3, 1, sh, ph, pw, dh, oh0, oh1, lo, hi, op, &pf);
        else if (s == 2)
            PM(fc_max_vals_rows_in)(xp, H, W, OW, 2, 2, sh, ph, pw, dh, oh0, oh1, lo, hi, op, &pf);
        else
            PM(fc_max_vals_rows_in)(xp, H, W, OW, 2, 1, sh, ph, pw, dh, oh0, oh1, lo, hi, op, &pf);
    }
    for (Py_ssize_t oh = 0; oh < OH; oh++) {
        float *om = op + oh * OW;
        int64_t *oi = ip ? ip + oh * OW : NULL;
        const float *r[3];
        int rel[3], nr = 0;
        Py_ssize_t first = 0, done = -1, h0 = oh * sh - ph;
        if (oh0 <= oh && oh < oh1)
            continue;
        fc_plane_pf_row(&pf);
        for (int i = 0; i < k; i++) {
            Py_ssize_t ih = h0 + (Py_ssize_t)i * dh;
            if (0 <= ih && ih < H) {
                if (nr == 0)
                    first = ih;
                r[nr] = xp + ih * W;
                rel[nr] = (int)((ih - first) * W);
                nr++;
            }
        }
        if (nr > 0) {
            if (k == 3)
                done = s == 2 ? PM_ROWS(r, rel, nr, 3, 2, om, oi, lo, hi, -pw, first * W)
                              : PM_ROWS(r, rel, nr, 3, 1, om, oi, lo, hi, -pw, first * W);
            else
                done = s == 2 ? PM_ROWS(r, rel, nr, 2, 2, om, oi, lo, hi, -pw, first * W)
                              : PM_ROWS(r, rel, nr, 2, 1, om, oi, lo, hi, -pw, first * W);
        }
        fc_max_row_rest_f32(xp, H, W, OW, h0, k, s, pw, dh, lo, hi, done, om, oi);
    }
}

#undef PM_ATTR
#undef PM
#undef PM_VALS
#undef PM_ROWS
