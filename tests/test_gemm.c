/* The matrix product compiled programs run (nb_gemm: nabla's AVX-512 kernel
 * on CPUs whose kernels are built for it, else OpenBLAS or the portable
 * product) against a naive f64 triple loop:
 *  - every edge of the micro-tile: m = 1..17 (two 8-row tiles and one) by
 *    n = 1..65 (two 32-float tiles and one; four 16-double tiles and one);
 *  - k = 1, k not a multiple of any unroll or vector, k across cache blocks;
 *  - both transposes, alpha ≠ 1, C += (acc) and C = (acc off: C is not read,
 *    NaN there must not leak), lda/ldb/ldc larger than the shape (the
 *    padding of C must not be written);
 *  - f64 (error ≤ 4(k+2)·2⁻⁵³·Σ|a||b|) and f32 (the same with 2⁻²⁴);
 *  - compiled products on two threads (each product cut in two by rows or
 *    columns at whole micro-tiles) at sizes that are no multiple of a tile,
 *    against the same naive loop.
 * Usage: test_gemm */
#include "gemm_avx512.h"
#include "nabla.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x9e3779b97f4a7c15u;
static double uniform(void) { /* in [-1, 1) */
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

static void put(size_t rs, void *p, int64_t i, double v) {
    if (rs == sizeof(double)) ((double *)p)[i] = v;
    else ((float *)p)[i] = (float)v;
}
static double get(size_t rs, const void *p, int64_t i) {
    return rs == sizeof(double) ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

#define SENTINEL 12345.0

static int reported; /* failures printed so far (the first few are enough) */

/* count random entries in [-1, 1) of rs bytes each (exits when out of memory) */
static void *random_buffer(size_t rs, int64_t count) {
    void *p = malloc((size_t)count * rs);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < count; i++)
        put(rs, p, i, uniform());
    return p;
}

/* Whether got is want = alpha·Σ_p op(A)[i][p]·op(B)[p][j] + c0 (computed in
 * f64) to within 4(k+2)·u·(|alpha|·Σ_p |op(A)[i][p]·op(B)[p][j]| + |c0|), u
 * the unit roundoff of entries of rs bytes; stores want. */
static int entry_ok(size_t rs, double got, int ta, int tb, int64_t k, double alpha, const void *A, int64_t lda,
                    const void *B, int64_t ldb, int64_t i, int64_t j, double c0, double *want) {
    double sum = 0, mag = 0;
    for (int64_t p = 0; p < k; p++) {
        const double a = get(rs, A, ta ? p * lda + i : i * lda + p), b = get(rs, B, tb ? j * ldb + p : p * ldb + j);
        sum += a * b;
        mag += fabs(a * b);
    }
    *want = alpha * sum + c0;
    const double u = rs == sizeof(double) ? DBL_EPSILON / 2 : FLT_EPSILON / 2;
    return fabs(got - *want) <= 4 * (double)(k + 2) * u * (fabs(alpha) * mag + fabs(c0));
}

/* One product; returns 1 when it matches the reference. */
static int check_product(size_t rs, int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, int acc) {
    const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 7;
    const int64_t arows = ta ? k : m, brows = tb ? n : k;
    void *A = random_buffer(rs, arows * lda), *B = random_buffer(rs, brows * ldb);
    void *C = malloc((size_t)((m + 1) * ldc) * rs);
    double *c0 = malloc((size_t)(m * n) * sizeof *c0);
    const size_t scratch = nb_gemm_scratch(m, n, k, rs);
    void *pack = NULL;
    if (!C || !c0 || (scratch && posix_memalign(&pack, 64, scratch))) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < (m + 1) * ldc; i++)
        put(rs, C, i, SENTINEL);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            c0[i * n + j] = acc ? uniform() : 0;
            put(rs, C, i * ldc + j, acc ? c0[i * n + j] : NAN); /* acc off: C must not be read */
        }
    nb_gemm(rs, ta, tb, m, n, k, alpha, A, lda, B, ldb, C, ldc, pack, acc);
    int ok = 1;
    for (int64_t i = 0; i < m && ok; i++) {
        for (int64_t j = 0; j < n && ok; j++) {
            double want;
            const double got = get(rs, C, i * ldc + j);
            if (!entry_ok(rs, got, ta, tb, k, alpha, A, lda, B, ldb, i, j, c0[i * n + j], &want)) {
                if (reported++ < 10)
                    fprintf(stderr, "%s ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g acc=%d: C[%lld][%lld] = %.17g, want %.17g\n",
                            rs == 8 ? "f64" : "f32", ta, tb, (long long)m, (long long)n, (long long)k, alpha, acc,
                            (long long)i, (long long)j, got, want);
                ok = 0;
            }
        }
        for (int64_t j = n; j < ldc && ok; j++)
            if (get(rs, C, i * ldc + j) != SENTINEL) {
                if (reported++ < 10)
                    fprintf(stderr, "m=%lld n=%lld: the padding C[%lld][%lld] was written\n", (long long)m,
                        (long long)n, (long long)i, (long long)j);
                ok = 0;
            }
    }
    for (int64_t j = 0; j < ldc && ok; j++)
        if (get(rs, C, m * ldc + j) != SENTINEL) {
            if (reported++ < 10)
                fprintf(stderr, "m=%lld n=%lld: the row after C was written\n", (long long)m, (long long)n);
            ok = 0;
        }
    free(A);
    free(B);
    free(C);
    free(c0);
    free(pack);
    return ok;
}

/* The compiled program of expr (A: m x k or k x m, B: k x n or n x k as expr
 * transposes them) on two threads, against the naive product. */
static int check_compiled(nb_dtype dtype, const char *expr, int ta, int tb, int64_t m, int64_t n, int64_t k) {
    const size_t rs = dtype == NB_F64 ? sizeof(double) : sizeof(float);
    char decls[160];
    snprintf(decls, sizeof decls, "A: matrix(%lld, %lld); B: matrix(%lld, %lld)", (long long)(ta ? k : m),
             (long long)(ta ? m : k), (long long)(tb ? n : k), (long long)(tb ? k : n));
    nb_ctx *ctx = nb_ctx_new();
    int ok = ctx && nb_declare(ctx, decls) == NB_OK;
    nb_expr *f = ok ? nb_parse(ctx, expr) : NULL, *ins[2] = {ok ? nb_lookup(ctx, "A") : NULL, ok ? nb_lookup(ctx, "B") : NULL};
    nb_program *p = f ? nb_compile(ctx, 1, &f, 2, ins, dtype, 0) : NULL;
    ok = p && nb_program_set_threads(p, 2) == NB_OK && nb_program_output_size(p, 0) == m * n;
    void *A = random_buffer(rs, m * k), *B = random_buffer(rs, k * n), *C = random_buffer(rs, m * n);
    const void *in[2] = {A, B};
    void *out[1] = {C};
    ok = ok && nb_program_run(p, in, out) == NB_OK;
    for (int64_t i = 0; i < m && ok; i++)
        for (int64_t j = 0; j < n && ok; j++) {
            double want;
            ok = entry_ok(rs, get(rs, C, i * n + j), ta, tb, k, 1.0, A, ta ? m : k, B, tb ? k : n, i, j, 0, &want);
        }
    free(A);
    free(B);
    free(C);
    nb_program_free(p);
    nb_ctx_free(ctx);
    return ok;
}

int main(void) {
    printf("products on %s\n", nb_gemm_is_avx512() ? "nabla's AVX-512 kernel" : "the fallback (no AVX-512 kernel)");
    static const size_t sizes[2] = {sizeof(double), sizeof(float)};
    for (int s = 0; s < 2; s++) {
        const size_t rs = sizes[s];
        /* every edge tile: each (m, n) once, the transposes, alpha, acc and k rotating */
        static const int64_t ks[] = {1, 5, 19, 33};
        int bad = 0, count = 0;
        for (int64_t m = 1; m <= 17; m++)
            for (int64_t n = 1; n <= 65; n++) {
                const int64_t v = m * 65 + n;
                bad += !check_product(rs, (int)(v & 1), (int)((v >> 1) & 1), m, n, ks[(v >> 2) & 3],
                                      v % 3 ? -0.75 : 1.0, (int)((v / 3) & 1));
                count++;
            }
        CHECK(bad == 0, "%s: %d of %d edge-tile products wrong", rs == 8 ? "f64" : "f32", bad, count);
        /* each transpose, alpha and acc at shapes with full and partial tiles and k
         * across cache blocks (256), equal-sized blocks of rows (192) */
        static const int64_t shapes[][3] = {{1, 1, 1},    {8, 32, 1},    {9, 33, 16},   {16, 64, 17},
                                            {64, 256, 10}, {64, 10, 256}, {200, 70, 257}, {197, 45, 600},
                                            {3, 300, 40}, {385, 17, 31}};
        for (size_t h = 0; h < sizeof shapes / sizeof *shapes; h++)
            for (int t = 0; t < 8; t++) {
                const int ta = t & 1, tb = (t >> 1) & 1, acc = (t >> 2) & 1;
                const double alpha = t % 3 ? 1.0 : -1.5;
                const int64_t m = shapes[h][0], n = shapes[h][1], k = shapes[h][2];
                CHECK(check_product(rs, ta, tb, m, n, k, alpha, acc), "%s ta=%d tb=%d acc=%d %lldx%lldx%lld",
                      rs == 8 ? "f64" : "f32", ta, tb, acc, (long long)m, (long long)n, (long long)k);
            }
        /* k = 0: C = 0, or C unchanged when acc */
        CHECK(check_product(rs, 0, 0, 5, 40, 0, 1.0, 0), "k = 0, acc off");
        CHECK(check_product(rs, 1, 1, 5, 40, 0, 1.0, 1), "k = 0, acc on");
    }
    /* two threads (m·n·k ≥ 2^18 makes the planner split a product): cut by
     * rows (m > n) and by columns (n > m) */
    static const struct {
        const char *expr;
        int ta, tb;
        int64_t m, n, k;
    } compiled[] = {{"A*B", 0, 0, 67, 45, 97},    {"A*B", 0, 0, 21, 77, 170},   {"A'*B", 1, 0, 75, 19, 190},
                    {"A*B'", 0, 1, 13, 99, 210}, {"A'*B'", 1, 1, 50, 49, 113}, {"A*B", 0, 0, 9, 300, 100}};
    for (size_t c = 0; c < sizeof compiled / sizeof *compiled; c++)
        for (int d = 0; d < 2; d++)
            CHECK(check_compiled(d ? NB_F32 : NB_F64, compiled[c].expr, compiled[c].ta, compiled[c].tb, compiled[c].m,
                                 compiled[c].n, compiled[c].k),
                  "%s %s %lldx%lldx%lld on two threads", d ? "f32" : "f64", compiled[c].expr,
                  (long long)compiled[c].m, (long long)compiled[c].n, (long long)compiled[c].k);
    TEST_MAIN_END();
}
