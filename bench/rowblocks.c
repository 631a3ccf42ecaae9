/* What one pass over X can cost: the neuron's f and f+∇f (N=10000, n=100,
 * f64) written by hand with AVX-512-width vectors, the gradient's 100
 * accumulators in registers, run three ways over X's rows:
 *   serial blocks  X·w (dot products) for a block of T rows, then the block's
 *                  rows again for Xᵀ·g (nabla's row-tiled region, without
 *                  the interpreter);
 *   lagged         row i's dot product, then the update by row i − T (the
 *                  second pass overlapping the stream, T rows behind it);
 *   row-fused      each row's dot product, then at once its update of the
 *                  gradient (the row is still in L1);
 * against f alone (one dot product per row).  No dispatch, no tails: the
 * physical reference for issue 7's f+∇f ≤ 1.3× f.  Medians of 41 samples
 * of 10 runs each, alternating.
 * Build and run: cc -O3 -march=native -fno-math-errno -ffp-contract=fast
 *   bench/rowblocks.c -o /tmp/rowblocks && /tmp/rowblocks 8 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "timing.h"

#define N 10000
#define COLS 100 /* 12 vectors of 8 and a half vector of 4 */
#define NV 12
typedef double vec __attribute__((vector_size(64)));
typedef double hvec __attribute__((vector_size(32)));

static inline vec load(const double *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline hvec hload(const double *p) {
    hvec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline double dot(const double *x, const double *w) {
    vec s0 = {0}, s1 = {0};
    for (int k = 0; k < NV; k += 2) {
        s0 += load(x + 8 * k) * load(w + 8 * k);
        s1 += load(x + 8 * k + 8) * load(w + 8 * k + 8);
    }
    const hvec h = hload(x + 8 * NV) * hload(w + 8 * NV);
    s0 += s1;
    double t = 0;
    for (int k = 0; k < 8; k++)
        t += s0[k];
    return t + h[0] + h[1] + h[2] + h[3];
}
/* (y − max(0, u))² added to *f; returns the gradient's row coefficient 1[u>0]·(u − y) */
static inline double coefficient(double u, double y, double *f) {
    const double r = y - (u > 0 ? u : 0);
    *f += r * r;
    return u > 0 ? u - y : 0;
}
/* g += c·x for one row, g in registers */
#define UPDATE(x, c)                                                                                         \
    do {                                                                                                     \
        const vec cv = (vec){0} + (c);                                                                       \
        for (int k = 0; k < NV; k++)                                                                         \
            g[k] += load((x) + 8 * k) * cv;                                                                  \
        gh += hload((x) + 8 * NV) * ((hvec){0} + (c));                                                       \
    } while (0)
#define STORE_GRADIENT()                                                                                     \
    do {                                                                                                     \
        memcpy(gw, g, sizeof g);                                                                             \
        memcpy(gw + 8 * NV, &gh, sizeof gh);                                                                 \
    } while (0)

__attribute__((noinline)) static double f_only(const double *X, const double *w, const double *y) {
    double f = 0;
    for (long i = 0; i < N; i++)
        coefficient(dot(X + i * COLS, w), y[i], &f);
    return f;
}
__attribute__((noinline)) static double fg_blocks(const double *X, const double *w, const double *y, double *gw,
                                                  long T) {
    double f = 0, c[N];
    vec g[NV] = {{0}};
    hvec gh = {0};
    for (long i0 = 0; i0 < N; i0 += T) {
        const long end = i0 + T < N ? i0 + T : N;
        for (long i = i0; i < end; i++)
            c[i] = coefficient(dot(X + i * COLS, w), y[i], &f);
        for (long i = i0; i < end; i++)
            UPDATE(X + i * COLS, c[i]);
    }
    STORE_GRADIENT();
    return f;
}
__attribute__((noinline)) static double fg_lagged(const double *X, const double *w, const double *y, double *gw,
                                                  long T) {
    double f = 0, c[N];
    vec g[NV] = {{0}};
    hvec gh = {0};
    for (long i = 0; i < T && i < N; i++)
        c[i] = coefficient(dot(X + i * COLS, w), y[i], &f);
    for (long i = T; i < N; i++) {
        c[i] = coefficient(dot(X + i * COLS, w), y[i], &f);
        UPDATE(X + (i - T) * COLS, c[i - T]);
    }
    for (long i = N - T > 0 ? N - T : 0; i < N; i++)
        UPDATE(X + i * COLS, c[i]);
    STORE_GRADIENT();
    return f;
}
__attribute__((noinline)) static double fg_rows(const double *X, const double *w, const double *y, double *gw) {
    double f = 0;
    vec g[NV] = {{0}};
    hvec gh = {0};
    for (long i = 0; i < N; i++) {
        const double c = coefficient(dot(X + i * COLS, w), y[i], &f);
        UPDATE(X + i * COLS, c);
    }
    STORE_GRADIENT();
    return f;
}

#define ROUNDS 41
int main(int argc, char **argv) {
    const long T = argc > 1 ? atol(argv[1]) : 32;
    if (T < 1 || T > N) return 2;
    double *X = malloc(sizeof(double) * N * COLS), *w = malloc(sizeof(double) * COLS), *y = malloc(sizeof(double) * N);
    double g1[COLS], g2[COLS], g3[COLS];
    if (!X || !w || !y) return 1;
    srand(1);
    for (long k = 0; k < N * COLS; k++)
        X[k] = rand() / (double)RAND_MAX - 0.5;
    for (long k = 0; k < COLS; k++)
        w[k] = rand() / (double)RAND_MAX - 0.5;
    for (long k = 0; k < N; k++)
        y[k] = rand() / (double)RAND_MAX - 0.5;
    if (fg_blocks(X, w, y, g1, T) != fg_rows(X, w, y, g2) || memcmp(g1, g2, sizeof g1) ||
        fg_lagged(X, w, y, g3, T) != fg_rows(X, w, y, g2) || memcmp(g3, g2, sizeof g3)) {
        fprintf(stderr, "rowblocks: the two orders disagree\n");
        return 1;
    }
    static const char *names[4] = {"f", "f+grad, serial blocks", "f+grad, lagged", "f+grad, row-fused"};
    double t[4][ROUNDS];
    volatile double sink = 0;
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < 4; k++) {
            const double t0 = now();
            for (int b = 0; b < 10; b++)
                sink += k == 0   ? f_only(X, w, y)
                        : k == 1 ? fg_blocks(X, w, y, g1, T)
                        : k == 2 ? fg_lagged(X, w, y, g1, T)
                                 : fg_rows(X, w, y, g1);
            t[k][r] = (now() - t0) / 10;
        }
    printf("N=%d n=%d f64, blocks of %ld rows, medians of %d:\n", N, COLS, T, ROUNDS);
    for (int k = 0; k < 4; k++) {
        qsort(t[k], ROUNDS, sizeof(double), cmp);
        printf("  %-22s %7.1f us  %.2fx f\n", names[k], t[k][ROUNDS / 2] * 1e6, t[k][ROUNDS / 2] / t[0][ROUNDS / 2]);
    }
    free(X);
    free(w);
    free(y);
    return 0;
}
