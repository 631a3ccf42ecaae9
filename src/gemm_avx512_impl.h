/* The AVX-512 product for one element type (see gemm_avx512.h).  Included by
 * gemm_avx512.c once per type with
 *   REAL, VEC (the 64-byte vector), MASK (its lane mask), VL (lanes),
 *   IDX_T (an integer of REAL's size), G(name) (the suffixed name) and the
 *   intrinsics V_LOADU, V_MASKZ_LOADU, V_STOREU, V_MASK_STOREU, V_FMADD,
 *   V_SET1, V_ZERO, V_MUL, V_ADD, V_PERMX2. */

#define NR (2 * VL)
#define MR NB_GEMM_MR

/* A mask of the first r lanes (none for r <= 0, all for r >= VL). */
static inline MASK G(lanes)(int64_t r) {
    return r <= 0 ? (MASK)0 : r >= VL ? (MASK)~(MASK)0 : (MASK)((1u << r) - 1);
}

/* One step of a transpose: with h = n/2, v[2j] and v[2j+1] become the lanes of
 * v[j] and v[j+h] interleaved (low halves, then high halves).  Seen as bits
 * (register, lane), each step rotates the index left by one; log2(n) steps
 * on n registers of VL lanes turn (row r, lane p) into position p·n + r. */
static inline __attribute__((always_inline)) void G(interleave)(VEC *v, int n) {
    IDX_T lo[VL], hi[VL];
    for (int t = 0; t < VL / 2; t++) {
        lo[2 * t] = t, lo[2 * t + 1] = VL + t;
        hi[2 * t] = VL / 2 + t, hi[2 * t + 1] = VL + VL / 2 + t;
    }
    const __m512i ilo = _mm512_loadu_si512(lo), ihi = _mm512_loadu_si512(hi);
    VEC t[VL];
    for (int j = 0; j < n / 2; j++) {
        t[2 * j] = V_PERMX2(v[j], ilo, v[j + n / 2]);
        t[2 * j + 1] = V_PERMX2(v[j], ihi, v[j + n / 2]);
    }
    for (int j = 0; j < n; j++)
        v[j] = t[j];
}

/* Ap, panels of MR rows: Ap[q·kc·MR + p·MR + i] = alpha·op(A)[q·MR + i][p]
 * for the mc x kc block of op(A) at A (op(A)[i][p] = A[p·lda + i] when ta,
 * A[i·lda + p] otherwise).  The last panel's rows past mc hold zeros or
 * nothing: the micro-kernel reads only its mr rows. */
static void G(pack_a)(int ta, int64_t mc, int64_t kc, REAL alpha, const REAL *A, int64_t lda, REAL *restrict Ap) {
    const VEC va = V_SET1(alpha);
    for (int64_t i0 = 0; i0 < mc; i0 += MR, Ap += kc * MR) {
        const int64_t mr = mc - i0 < MR ? mc - i0 : MR;
        if (ta) {
            const MASK rows = G(lanes)(mr);
            for (int64_t p = 0; p < kc; p++)
                V_MASK_STOREU(Ap + p * MR, rows, V_MUL(va, V_MASKZ_LOADU(rows, A + p * lda + i0)));
            continue;
        }
        int64_t p = 0;
        for (; p + VL <= kc; p += VL) { /* MR rows x VL columns, transposed */
            VEC v[MR];
            for (int i = 0; i < MR; i++)
                v[i] = i < mr ? V_MUL(va, V_LOADU(A + (i0 + i) * lda + p)) : V_ZERO();
            for (int s = 1; s < MR; s *= 2)
                G(interleave)(v, MR);
            for (int i = 0; i < MR; i++)
                V_STOREU(Ap + p * MR + i * VL, v[i]);
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < mr; i++)
                Ap[p * MR + i] = alpha * A[(i0 + i) * lda + p];
    }
}

/* Bp, slivers of NR columns: Bp[s·kc·NR + p·NR + j] = op(B)[p][s·NR + j] for
 * the kc x nc block of op(B) at B (op(B)[p][j] = B[j·ldb + p] when tb,
 * B[p·ldb + j] otherwise), zero past nc. */
static void G(pack_b)(int tb, int64_t kc, int64_t nc, const REAL *B, int64_t ldb, REAL *restrict Bp) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR, Bp += kc * NR) {
        if (!tb) {
            const MASK m0 = G(lanes)(nc - j0), m1 = G(lanes)(nc - j0 - VL);
            for (int64_t p = 0; p < kc; p++) {
                V_STOREU(Bp + p * NR, V_MASKZ_LOADU(m0, B + p * ldb + j0));
                V_STOREU(Bp + p * NR + VL, V_MASKZ_LOADU(m1, B + p * ldb + j0 + VL));
            }
            continue;
        }
        for (int h = 0; h < 2; h++) { /* VL columns of op(B) = VL rows of B, transposed */
            const int64_t jh = j0 + h * VL, rows = nc - jh;
            int64_t p = 0;
            for (; p + VL <= kc; p += VL) {
                VEC v[VL];
                for (int r = 0; r < VL; r++)
                    v[r] = r < rows ? V_LOADU(B + (jh + r) * ldb + p) : V_ZERO();
                for (int s = 1; s < VL; s *= 2)
                    G(interleave)(v, VL);
                for (int q = 0; q < VL; q++)
                    V_STOREU(Bp + (p + q) * NR + h * VL, v[q]);
            }
            for (; p < kc; p++)
                for (int64_t r = 0; r < VL; r++)
                    Bp[p * NR + h * VL + r] = r < rows ? B[(jh + r) * ldb + p] : 0;
        }
    }
}

/* The micro-kernel: the mr x (nv vectors) tile of C at c (row stride ldc)
 * = Σ_p a[p·MR + i]·b[p·NR + j] (+ C when accum), stored through the column
 * masks m0, m1.  mr and nv are constants in every instance. */
static inline __attribute__((always_inline)) void G(tile)(const int mr, const int nv, int64_t kc,
                                                          const REAL *restrict a, const REAL *restrict b,
                                                          REAL *restrict c, int64_t ldc, MASK m0, MASK m1,
                                                          int accum) {
    VEC c0[MR], c1[MR];
    for (int i = 0; i < mr; i++)
        c0[i] = c1[i] = V_ZERO();
    for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {
        const VEC b0 = V_LOADU(b), b1 = nv > 1 ? V_LOADU(b + VL) : V_ZERO();
        for (int i = 0; i < mr; i++) {
            const VEC ai = V_SET1(a[i]);
            c0[i] = V_FMADD(ai, b0, c0[i]);
            if (nv > 1) c1[i] = V_FMADD(ai, b1, c1[i]);
        }
    }
    for (int i = 0; i < mr; i++) {
        REAL *row = c + i * ldc;
        if (accum) c0[i] = V_ADD(c0[i], V_MASKZ_LOADU(m0, row));
        V_MASK_STOREU(row, m0, c0[i]);
        if (nv > 1) {
            if (accum) c1[i] = V_ADD(c1[i], V_MASKZ_LOADU(m1, row + VL));
            V_MASK_STOREU(row + VL, m1, c1[i]);
        }
    }
}

static void G(micro)(int64_t mr, int64_t nr, int64_t kc, const REAL *a, const REAL *b, REAL *c, int64_t ldc,
                     int accum) {
    const MASK m0 = G(lanes)(nr), m1 = G(lanes)(nr - VL);
    switch (mr) {
#define NB_TILE_CASE(r)                                                                                      \
    case r:                                                                                                  \
        if (nr > VL) G(tile)(r, 2, kc, a, b, c, ldc, m0, m1, accum);                                         \
        else G(tile)(r, 1, kc, a, b, c, ldc, m0, m1, accum);                                                 \
        break;
        NB_TILE_CASE(1)
        NB_TILE_CASE(2)
        NB_TILE_CASE(3)
        NB_TILE_CASE(4)
        NB_TILE_CASE(5)
        NB_TILE_CASE(6)
        NB_TILE_CASE(7)
        NB_TILE_CASE(8)
#undef NB_TILE_CASE
    }
}

void G(nb_gemm_avx512)(int ta, int tb, int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *A, int64_t lda,
                       const REAL *B, int64_t ldb, REAL *C, int64_t ldc, REAL *pack, int acc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!acc)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    C[i * ldc + j] = 0;
        return;
    }
    const int64_t kcb = nb_gemm_chunk(k, NB_GEMM512_KC, 1), mcb = nb_gemm_chunk(m, NB_GEMM512_MC, MR),
                  ncb = nb_gemm_chunk(n, NB_GEMM512_NC_BYTES / (int64_t)sizeof(REAL), NR);
    REAL *Bp = pack, *Ap = pack + kcb * ncb;
    for (int64_t jc = 0; jc < n; jc += ncb) {
        const int64_t nc = n - jc < ncb ? n - jc : ncb;
        for (int64_t pc = 0; pc < k; pc += kcb) {
            const int64_t kc = k - pc < kcb ? k - pc : kcb;
            G(pack_b)(tb, kc, nc, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, Bp);
            const int accum = acc || pc > 0;
            for (int64_t ic = 0; ic < m; ic += mcb) {
                const int64_t mc = m - ic < mcb ? m - ic : mcb;
                G(pack_a)(ta, mc, kc, alpha, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR)
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        G(micro)(mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, kc, Ap + ir * kc,
                                 Bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, accum);
            }
        }
    }
}

#undef NR
#undef MR
#undef REAL
#undef VEC
#undef MASK
#undef VL
#undef IDX_T
#undef G
#undef V_LOADU
#undef V_MASKZ_LOADU
#undef V_STOREU
#undef V_MASK_STOREU
#undef V_FMADD
#undef V_SET1
#undef V_ZERO
#undef V_MUL
#undef V_ADD
#undef V_PERMX2
