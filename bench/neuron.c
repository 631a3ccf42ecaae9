/* The neuron's cost f = sum((y - max(0, X*w + b)).^2)/N and its gradient,
 * compiled by nabla (f alone, and f with d/dw and d/db, run by the
 * interpreter's row tiles and as generated code, NB_COMPILE_NATIVE), against the same
 * computations written by hand in C as one fused loop over the rows of X
 * (the physical reference: X read once, each row used for X·w and, while it
 * is in registers or L1, for Xᵀ·g).  All four run in this process,
 * alternating sample by sample, so that the noise of a shared machine hits
 * them alike; prints the medians and the ratios.
 * Build: cc -O3 -march=native -ffast-math (the hand-written loops' sums
 * vectorised), as bench/bench.py does.
 * Usage: neuron N n f64|f32 [rounds]   (OPENBLAS_NUM_THREADS=1) */
#include "nabla.h"

#include "timing.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* By hand: u_i = X_i·w + b, f = Σ (y_i − max(0, u_i))² / N, and with the
 * gradient c_i = 1[u_i > 0]·(u_i − y_i), d/dw = (2/N) Σ c_i X_i,
 * d/db = (2/N) Σ c_i, in the same pass. */
#define HAND(REAL, SUF)                                                                                      \
    __attribute__((noinline)) static REAL hand_f_##SUF(long N, long n, const REAL *X, const REAL *w,         \
                                                       const REAL *y, REAL b) {                              \
        REAL s = 0;                                                                                          \
        for (long i = 0; i < N; i++) {                                                                       \
            REAL u = b;                                                                                      \
            for (long j = 0; j < n; j++)                                                                     \
                u += X[i * n + j] * w[j];                                                                    \
            REAL r = y[i] - (u > 0 ? u : 0);                                                                 \
            s += r * r;                                                                                      \
        }                                                                                                    \
        return s / (REAL)N;                                                                                  \
    }                                                                                                        \
    /* four rows at a time: their dot products, then one update of gw by the                                 \
     * four rows while they are in L1 */                                                                     \
    __attribute__((noinline)) static REAL hand_fg_##SUF(long N, long n, const REAL *X, const REAL *w,        \
                                                        const REAL *y, REAL b, REAL *gw, REAL *gb) {         \
        REAL s = 0, sb = 0;                                                                                  \
        memset(gw, 0, (size_t)n * sizeof *gw);                                                               \
        for (long i = 0; i < N; i += 4) {                                                                    \
            const long rows = N - i < 4 ? N - i : 4;                                                         \
            REAL c[4] = {0, 0, 0, 0};                                                                        \
            for (long r = 0; r < rows; r++) {                                                                \
                const REAL *x = X + (i + r) * n;                                                             \
                REAL u = b;                                                                                  \
                for (long j = 0; j < n; j++)                                                                 \
                    u += x[j] * w[j];                                                                        \
                REAL d = y[i + r] - (u > 0 ? u : 0);                                                         \
                s += d * d;                                                                                  \
                c[r] = u > 0 ? u - y[i + r] : 0;                                                             \
                sb += c[r];                                                                                  \
            }                                                                                                \
            const REAL *x0 = X + i * n, *x1 = rows > 1 ? x0 + n : x0, *x2 = rows > 2 ? x0 + 2 * n : x0,      \
                       *x3 = rows > 3 ? x0 + 3 * n : x0;                                                     \
            for (long j = 0; j < n; j++)                                                                     \
                gw[j] += c[0] * x0[j] + c[1] * x1[j] + c[2] * x2[j] + c[3] * x3[j];                          \
        }                                                                                                    \
        for (long j = 0; j < n; j++)                                                                         \
            gw[j] *= (REAL)2 / (REAL)N;                                                                      \
        *gb = sb * (REAL)2 / (REAL)N;                                                                        \
        return s / (REAL)N;                                                                                  \
    }
HAND(double, f64)
HAND(float, f32)

#define NTIMERS 5 /* nabla f, f+grad, C f, C f+grad, nabla native f+grad */
int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: neuron N n f64|f32 [rounds]\n");
        return 2;
    }
    long N = atol(argv[1]), n = atol(argv[2]);
    int f32 = strcmp(argv[3], "f32") == 0, rounds = argc > 4 ? atoi(argv[4]) : 31;
    if (N < 1 || n < 1 || N > 100000000 / n || rounds < 1 || rounds > 10000) {
        fprintf(stderr, "neuron: bad sizes or rounds\n");
        return 2;
    }
    size_t rs = f32 ? sizeof(float) : sizeof(double);
    nb_ctx *ctx = nb_ctx_new();
    if (nb_declare(ctx, "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar")) goto fail;
    nb_expr *f = nb_parse(ctx, "sum((y - max(0, X*w + b)).^2)/N");
    nb_expr *in[4] = {nb_lookup(ctx, "X"), nb_lookup(ctx, "w"), nb_lookup(ctx, "y"), nb_lookup(ctx, "b")};
    if (!f) goto fail;
    nb_expr *outs[3] = {f, nb_gradient(ctx, f, in[1]), nb_gradient(ctx, f, in[3])};
    nb_program *pf = nb_compile(ctx, 1, outs, 4, in, f32 ? NB_F32 : NB_F64, 0);
    nb_program *pg = pf ? nb_compile(ctx, 3, outs, 4, in, f32 ? NB_F32 : NB_F64, 0) : NULL;
    nb_program *pn = pg ? nb_compile(ctx, 3, outs, 4, in, f32 ? NB_F32 : NB_F64, NB_COMPILE_NATIVE) : NULL;
    if (!pn || nb_program_bind_dim(pf, "N", N) || nb_program_bind_dim(pf, "n", n) ||
        nb_program_bind_dim(pg, "N", N) || nb_program_bind_dim(pg, "n", n) ||
        nb_program_bind_dim(pn, "N", N) || nb_program_bind_dim(pn, "n", n))
        goto fail;
    char *listing = nb_program_describe(pn);
    if (!listing || !strstr(listing, "native row loop")) {
        fprintf(stderr, "neuron: no native row loop:\n%s", listing ? listing : "");
        return 1;
    }
    free(listing);
    /* inputs in f64, converted for f32 */
    double *Xd = malloc((size_t)(N * n + n + N + 1) * sizeof *Xd);
    void *buf = malloc((size_t)(N * n + n + N + 1) * rs), *out = malloc((size_t)(2 * n + 8) * rs);
    if (!Xd || !buf || !out) return 1;
    srand(7);
    for (long k = 0; k < N * n + n + N + 1; k++)
        Xd[k] = (double)rand() / RAND_MAX - 0.5;
    for (long k = 0; k < N * n + n + N + 1; k++)
        if (f32)
            ((float *)buf)[k] = (float)Xd[k];
        else
            ((double *)buf)[k] = Xd[k];
    char *base = buf;
    const void *ins[4] = {base, base + N * n * rs, base + (N * n + n) * rs, base + (N * n + n + N) * rs};
    void *ov[3] = {out, (char *)out + rs, (char *)out + (n + 1) * rs};
    /* check nabla against the hand-written loop */
    double fh, gh0, gbh, fn, gn0, gbn;
    for (int k = 0; k < 2; k++) {
        if (nb_program_run(k ? pn : pg, ins, ov)) goto fail;
        if (f32) {
            float gw[n], gb;
            fh = hand_fg_f32(N, n, ins[0], ins[1], ins[2], *(const float *)ins[3], gw, &gb);
            gh0 = gw[0], gbh = gb;
            fn = ((float *)out)[0], gn0 = ((float *)out)[1], gbn = ((float *)out)[n + 1];
        } else {
            double gw[n], gb;
            fh = hand_fg_f64(N, n, ins[0], ins[1], ins[2], *(const double *)ins[3], gw, &gb);
            gh0 = gw[0], gbh = gb;
            fn = ((double *)out)[0], gn0 = ((double *)out)[1], gbn = ((double *)out)[n + 1];
        }
        double tol = f32 ? 1e-3 : 1e-9;
        if (fabs(fn - fh) > tol * fabs(fh) || fabs(gn0 - gh0) > tol * (fabs(gh0) + 1e-3) ||
            fabs(gbn - gbh) > tol * (fabs(gbh) + 1e-3)) {
            fprintf(stderr, "neuron: nabla%s (%g, %g, %g) differs from C (%g, %g, %g)\n", k ? " native" : "",
                    fn, gn0, gbn, fh, gh0, gbh);
            return 1;
        }
    }
    /* batches of ~2 ms */
    int batch = (int)(2e-3 / (1e-9 * (double)(N * n)) + 1);
    double *t[NTIMERS];
    for (int k = 0; k < NTIMERS; k++)
        t[k] = malloc((size_t)rounds * sizeof *t[k]);
    volatile double sink = 0;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < NTIMERS; k++) {
            double t0 = now();
            for (int i = 0; i < batch; i++) {
                if (k < 2 || k == 4)
                    nb_program_run(k == 0 ? pf : k == 1 ? pg : pn, ins, ov);
                else if (f32) {
                    float gw[n], gb, b = *(const float *)ins[3];
                    sink += k == 2 ? hand_f_f32(N, n, ins[0], ins[1], ins[2], b)
                                   : hand_fg_f32(N, n, ins[0], ins[1], ins[2], b, gw, &gb);
                } else {
                    double gw[n], gb, b = *(const double *)ins[3];
                    sink += k == 2 ? hand_f_f64(N, n, ins[0], ins[1], ins[2], b)
                                   : hand_fg_f64(N, n, ins[0], ins[1], ins[2], b, gw, &gb);
                }
            }
            t[k][r] = (now() - t0) / batch;
        }
    double m[NTIMERS];
    for (int k = 0; k < NTIMERS; k++) {
        qsort(t[k], (size_t)rounds, sizeof *t[k], cmp);
        m[k] = t[k][rounds / 2];
        free(t[k]);
    }
    printf("neuron N=%ld n=%ld %s, medians of %d rounds:\n", N, n, f32 ? "f32" : "f64", rounds);
    printf("  nabla f: %.4g us   f+grad: %.4g us   ratio %.3f\n", m[0] * 1e6, m[1] * 1e6, m[1] / m[0]);
    printf("  C     f: %.4g us   f+grad: %.4g us   ratio %.3f\n", m[2] * 1e6, m[3] * 1e6, m[3] / m[2]);
    printf("  nabla / C: f %.3f, f+grad %.3f\n", m[0] / m[2], m[1] / m[3]);
    printf("  nabla native f+grad: %.4g us   ratio %.3f\n", m[4] * 1e6, m[4] / m[0]);
    free(Xd);
    free(buf);
    free(out);
    nb_program_free(pf);
    nb_program_free(pg);
    nb_program_free(pn);
    nb_ctx_free(ctx);
    return 0;
fail:
    fprintf(stderr, "neuron: %s\n", nb_error(ctx));
    return 1;
}
