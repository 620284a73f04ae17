# Included by conv2d_im2col.pyx (one module; split for length): the weight gradient's
# schedules. backward_weight (in the .pyx) picks one: the row-offset form as one GEMM per
# chunk of images (backward_weight_padded), its SIMD dot products (backward_weight_dot,
# wgrad_dot.h), or the general form in fixed groups of images (wgrad_images).

cdef extern from "wgrad_dot.h" nogil:
    ctypedef struct fc_wg_piece:
        int64_t x, g, len
    enum:
        FC_WG_CO, FC_WG_R, FC_WG_ALIGN
    bint fc_wg_available() noexcept
    bint fc_wg_wide() noexcept
    void fc_wg_block_f32(const float *x, const float *gy, int64_t ldg, const int64_t *off,
                         const fc_wg_piece *pc, int64_t npieces, int nco, int nr, float *gw,
                         int64_t ldw) noexcept
    void fc_wg_block_f64(const double *x, const double *gy, int64_t ldg, const int64_t *off,
                         const fc_wg_piece *pc, int64_t npieces, int nco, int nr, double *gw,
                         int64_t ldw) noexcept

# backward_weight's padded images and widened gy per chunk of images: 32 MiB
cdef size_t PADDED_BUDGET = 32 << 20
# backward_weight_dot: gy and x rows of one superblock fit in this much of L2, and one
# block's rows (4 of gy, about 2 of x) in L1: at most 4 KiB of pixels per row
cdef size_t L2_BLOCK = 1 << 20
cdef size_t L1_PIXELS = 4096
# backward_weight's general form: images per partial gradient (fixed: the sums must not
# depend on the thread count)
cdef Py_ssize_t WG_GROUP = 8

cdef int backward_weight_padded(const floating *x, const floating *gy, floating *gw,
                                Geometry *g, int n_threads) noexcept nogil:
    """backward_weight in the row-offset form: a chunk of images is padded into one
    workspace (images segstride apart) and its gy widened to the padded-width grid (zeros in
    the junk columns), so gW += gy' @ cols'^T is ONE GEMM per group over the chunk's pixels,
    large enough to run at full speed and to split well over threads. Chunks bound the
    workspace; their count depends on the shape only, so the summation order does too."""
    cdef Py_ssize_t S = (g.xsize + 15) // 16 * 16       # padded image stride (aligned)
    cdef Py_ssize_t per = (S + g.C_out * g.NP) * sizeof(floating)
    cdef Py_ssize_t nb = max(1, min(g.N, <Py_ssize_t>(PADDED_BUDGET // per)))
    cdef Py_ssize_t n0, nc, i, grp, ld
    cdef floating *xp = <floating *>fc_scratch(1, nb * S * sizeof(floating))
    cdef floating *gyp = <floating *>fc_scratch(2, nb * g.C_out * g.NP * sizeof(floating))
    cdef fc_im2col_t cols = g.pcols
    if xp == NULL or gyp == NULL:
        return -1
    cols.segstride = S
    n0 = 0
    while n0 < g.N:
        nc = min(nb, g.N - n0)
        ld = nc * g.NP
        for i in prange(nc, num_threads=n_threads, schedule="static"):
            pad_image(x + (n0 + i) * g.C_in * g.H * g.W, g, xp + i * S, S)
            widen_rows(gy + (n0 + i) * g.C_out * g.P, g.C_out, g.OH, g.OW, g.Wp,
                       gyp + i * g.NP, ld)
        for grp in range(g.groups):
            if gemm_im2col(False, True, g.cout_g, g.K, ld, 1, gyp + grp * g.cout_g * ld, ld,
                           xp + grp * g.cin_g * g.plane, &cols, 0 if n0 == 0 else 1,
                           gw + grp * g.cout_g * g.K, g.K, n_threads) != 0:
                return -1
        n0 += nc
    return 0


cdef struct WgPlan:             # backward_weight_dot's blocking
    Py_ssize_t La                # pixels per image, padded to the lane multiple
    Py_ssize_t S                 # padded image stride in the workspace
    Py_ssize_t T2                # pixels per superblock: gy and x rows of one stay in L2
    Py_ssize_t nb                # images per chunk
    Py_ssize_t max_pieces        # pieces per chunk, at most


cdef WgPlan wg_plan(Geometry *g, size_t itemsize):
    cdef WgPlan w
    w.La = (g.NP + FC_WG_ALIGN - 1) // FC_WG_ALIGN * FC_WG_ALIGN
    w.S = (g.xsize + 15) // 16 * 16
    w.T2 = max(256, min(L1_PIXELS // itemsize,
                        (L2_BLOCK // itemsize) // (g.C_out + g.C_in) // FC_WG_ALIGN * FC_WG_ALIGN))
    w.nb = max(1, min(g.N, <Py_ssize_t>(PADDED_BUDGET // ((w.S + g.C_out * w.La) * itemsize))))
    w.max_pieces = w.nb * ((w.La + w.T2 - 1) // w.T2)
    return w


cdef int backward_weight_dot(const floating *x, const floating *gy, floating *gw,
                             Geometry *g, WgPlan *w, fc_wg_piece *pieces,
                             int n_threads) noexcept nogil:
    """backward_weight in the row-offset form as blocked dot products (wgrad_dot.h). Per
    chunk of images: pad x, widen gy to La columns per image (zeros past OW and past NP),
    cut the chunk into superblocks of about T2 pixels, and run every (4 channels x 6 taps)
    block of every group over a superblock in parallel. Each block adds its sums to gw once
    per superblock, superblocks in order: the summation order depends on the shape only."""
    cdef Py_ssize_t n0, nc, i, ld, co, t0, npc, p0, p1, tot, pair, grp, rem, co0, r0
    cdef Py_ssize_t nsb, j, t
    cdef Py_ssize_t cob = (g.cout_g + FC_WG_CO - 1) // FC_WG_CO
    cdef Py_ssize_t rb = (g.K + FC_WG_R - 1) // FC_WG_R
    cdef Py_ssize_t nblk = g.groups * cob * rb
    cdef Py_ssize_t nthr = max(1, min(<Py_ssize_t>n_threads, nblk))
    cdef Py_ssize_t *sb = <Py_ssize_t *>fc_scratch(3, (w.max_pieces + 1) * sizeof(Py_ssize_t))
    cdef floating *xp = <floating *>fc_scratch(1, w.nb * w.S * sizeof(floating))
    cdef floating *gyp = <floating *>fc_scratch(2, w.nb * g.C_out * w.La * sizeof(floating))
    if xp == NULL or gyp == NULL or sb == NULL:
        return -1
    memset(gw, 0, g.C_out * g.K * sizeof(floating))
    n0 = 0
    while n0 < g.N:
        nc = min(w.nb, g.N - n0)
        ld = nc * w.La
        for i in prange(nc, num_threads=n_threads, schedule="static"):
            pad_image(x + (n0 + i) * g.C_in * g.H * g.W, g, xp + i * w.S, w.S)
            widen_rows(gy + (n0 + i) * g.C_out * g.P, g.C_out, g.OH, g.OW, g.Wp,
                       gyp + i * w.La, ld)
            for co in range(g.C_out):
                memset(gyp + co * ld + i * w.La + g.NP, 0, (w.La - g.NP) * sizeof(floating))
        npc = 0
        for i in range(nc):
            t0 = 0
            while t0 < w.La:
                pieces[npc].x, pieces[npc].g = i * w.S + t0, i * w.La + t0
                pieces[npc].len = min(w.T2, w.La - t0)
                t0 += pieces[npc].len
                npc += 1
        # superblocks: runs of pieces of at most T2 pixels, boundaries in sb[0..nsb]
        nsb, p0 = 0, 0
        sb[0] = 0
        while p0 < npc:
            p1, tot = p0 + 1, pieces[p0].len
            while p1 < npc and tot + pieces[p1].len <= w.T2:
                tot += pieces[p1].len
                p1 += 1
            nsb += 1
            sb[nsb] = p1
            p0 = p1
        # One parallel region per chunk (not one per superblock: a fork and join each cost
        # a scheduling round when another process holds a core). Thread t owns the blocks
        # [t*nblk/T, (t+1)*nblk/T), as a static prange over the blocks would give it, and
        # walks the superblocks in order (their data stay in its L2 across its blocks), so
        # every gw entry gets the same sums in the same order as before.
        for t in prange(nthr, num_threads=nthr, schedule="static"):
            for j in range(nsb):
                for pair in range(t * nblk // nthr, (t + 1) * nblk // nthr):
                    grp = pair // (cob * rb)
                    rem = pair % (cob * rb)
                    co0 = grp * g.cout_g + rem // rb * FC_WG_CO
                    r0 = rem % rb * FC_WG_R
                    if floating is float:
                        fc_wg_block_f32(xp + grp * g.cin_g * g.plane, gyp + co0 * ld, ld,
                                        g.pcols.rowoff + r0, pieces + sb[j],
                                        sb[j + 1] - sb[j],
                                        min(FC_WG_CO, (grp + 1) * g.cout_g - co0),
                                        min(FC_WG_R, g.K - r0), gw + co0 * g.K + r0, g.K)
                    else:
                        fc_wg_block_f64(xp + grp * g.cin_g * g.plane, gyp + co0 * ld, ld,
                                        g.pcols.rowoff + r0, pieces + sb[j],
                                        sb[j + 1] - sb[j],
                                        min(FC_WG_CO, (grp + 1) * g.cout_g - co0),
                                        min(FC_WG_R, g.K - r0), gw + co0 * g.K + r0, g.K)
        n0 += nc
    return 0


cdef int wgrad_images(const floating *x, const floating *gy, floating *gw, Geometry *g,
                      Py_ssize_t n0, Py_ssize_t n1, int n_threads) noexcept nogil:
    """gw = sum over images n0 <= n < n1, in order, of gy[n] @ cols(x[n])^T (the general
    form: one GEMM per image and group of channels). 0, or -1: no memory."""
    cdef Py_ssize_t n, grp
    cdef const floating *xg
    cdef const floating *gyg
    cdef floating beta
    for n in range(n0, n1):
        beta = 0 if n == n0 else 1
        for grp in range(g.groups):
            xg = x + (n * g.C_in + grp * g.cin_g) * g.H * g.W
            gyg = gy + (n * g.C_out + grp * g.cout_g) * g.P
            if g.direct_cols:
                gemm(False, True, g.cout_g, g.K, g.P, 1, gyg, g.P, xg, g.P, beta,
                     gw + grp * g.cout_g * g.K, g.K, n_threads)
            elif gemm_im2col(False, True, g.cout_g, g.K, g.P, 1, gyg, g.P, xg, &g.cols,
                             beta, gw + grp * g.cout_g * g.K, g.K, n_threads) != 0:
                return -1
    return 0
