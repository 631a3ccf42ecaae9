/* What one pass over X can cost: the neuron's f and f+∇f (N=10000, n=100,
 * f64) written by hand with AVX-512-width vectors, the gradient's 100
 * accumulators in registers, run six ways over X's rows:
 *   serial blocks  X·w (dot products) for a block of T rows, then the block's
 *                  rows again for Xᵀ·g (nabla's row-tiled region, without
 *                  the interpreter);
 *   ..., g in memory  the same with the gradient loaded and stored around
 *                  each block's update, w not kept in registers (what an
 *                  engine kernel between interpreted ops can do);
 *   lagged         row i's dot product, then the update by row i − T (the
 *                  second pass overlapping the stream, T rows behind it);
 *   pipelined      block k's dot products and block k−1's update in one
 *                  loop over the columns, 8 rows of each at a time;
 *   row-fused      each row's dot product, then at once its update of the
 *                  gradient (the row is still in L1);
 *   ..., interpreted  the same with the coefficient computed by a small
 *                  threaded interpreter of the cost's operations, row by row;
 * against f alone (one dot product per row).  No dispatch, few tails: the
 * physical reference for issue 7's f+∇f ≤ 1.3× f.  Checks first that every
 * order gives row-fused's f and gradient.  Medians of 41 samples
 * of 10 runs each, alternating.
 * Build and run: cc -O3 -march=native -fno-math-errno -ffp-contract=fast
 *   bench/rowblocks.c -o /tmp/rowblocks && /tmp/rowblocks 8 */
#include <math.h>
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

/* Serial blocks with the gradient in memory between blocks (an engine
 * kernel's gradient: loaded into registers for a block's update, stored
 * after it), w not held in registers. */
__attribute__((noinline)) static double fg_blocks_mem(const double *X, const double *w, const double *y, double *gw,
                                                     long T) {
    double f = 0, c[N];
    double *grad = gw;
    memset(grad, 0, sizeof(double) * COLS);
    for (long i0 = 0; i0 < N; i0 += T) {
        const long end = i0 + T < N ? i0 + T : N;
        for (long i = i0; i < end; i++)
            c[i] = coefficient(dot(X + i * COLS, w), y[i], &f);
        __asm__ volatile("" ::: "memory"); /* w and the gradient come from memory in each block */
        vec g[NV];
        hvec gh = hload(grad + 8 * NV);
        for (int k = 0; k < NV; k++)
            g[k] = load(grad + 8 * k);
        for (long i = i0; i < end; i++)
            UPDATE(X + i * COLS, c[i]);
        for (int k = 0; k < NV; k++)
            memcpy(grad + 8 * k, &g[k], sizeof g[k]);
        memcpy(grad + 8 * NV, &gh, sizeof gh);
    }
    return f;
}

/* Pipelined (chunk k's dot products and chunk k−1's update, its rows in
 * cache, in one loop over the columns, 8 rows of each at a time; the
 * gradient in memory): overlapping the two uses inside one loop. */
__attribute__((noinline)) static double fg_pipelined(const double *X, const double *w, const double *y,
                                                    double *gw, long T) {
    double f = 0, c[N];
    double *grad = gw;
    memset(grad, 0, sizeof(double) * COLS);
    for (long i0 = 0; i0 < N; i0 += T) {
        const long end = i0 + T < N ? i0 + T : N;
        const int upd = i0 > 0;
        long s = i0;
        for (; s < end; s += 8) {
            const double *Xd = X + s * COLS, *Xu = Xd - T * COLS;
            if (end - s < 8 || T % 8) { /* tails: one row at a time */
                for (long i = s; i < end; i++)
                    c[i] = coefficient(dot(X + i * COLS, w), y[i], &f);
                break;
            }
            vec acc[8] = {{0}}, cb[8];
            for (int r = 0; r < 8; r++)
                cb[r] = (vec){0} + (upd ? c[s - T + r] : 0);
            for (int k = 0; k < NV; k++) {
                const vec wv = load(w + 8 * k);
                vec t[4];
                for (int r = 0; r < 4; r++)
                    t[r] = upd ? load(Xu + r * COLS + 8 * k) * cb[r] : (vec){0};
                for (int r = 0; r < 8; r++)
                    acc[r] += load(Xd + r * COLS + 8 * k) * wv;
                for (int r = 4; r < 8 && upd; r++)
                    t[r - 4] += load(Xu + r * COLS + 8 * k) * cb[r];
                const vec g = load(grad + 8 * k) + ((t[0] + t[1]) + (t[2] + t[3]));
                memcpy(grad + 8 * k, &g, sizeof g);
            }
            for (int r = 0; r < 8; r++) {
                double u = 0;
                for (int l = 0; l < 8; l++)
                    u += acc[r][l];
                for (int j = 8 * NV; j < COLS; j++)
                    u += Xd[r * COLS + j] * w[j];
                for (int j = 8 * NV; j < COLS && upd; j++)
                    grad[j] += Xu[r * COLS + j] * c[s - T + r];
                c[s + r] = coefficient(u, y[s + r], &f);
            }
        }
        for (long i = s - T; upd && i < i0; i++) /* the previous block's rows not yet used */
            for (int j = 0; j < COLS; j++)
                grad[j] += X[i * COLS + j] * c[i];
    }
    for (long i = (N - 1) / T * T; i < N; i++)
        for (int j = 0; j < COLS; j++)
            grad[j] += X[i * COLS + j] * c[i];
    return f;
}

/* Row-fused with the coefficient computed by a small interpreter (threaded
 * dispatch over an op list, one op per element-wise operation of the
 * group), one row at a time: what a general kernel would do row by row. */
enum { I_ADD, I_MAX, I_SUB, I_SQUARE, I_SUM, I_GT, I_MUL, I_END };
typedef struct {
    int op, a, b, d;
} iop;
/* registers: 0 u, 1 y, 2 zero, 3 b (0), 4.. temporaries; the coefficient in 9 */
static const iop prog[] = {{I_ADD, 0, 3, 4}, {I_MAX, 2, 4, 5}, {I_SUB, 1, 5, 6}, {I_SQUARE, 6, 0, 5},
                           {I_SUM, 5, 0, 0}, {I_GT, 4, 2, 5}, {I_SUB, 4, 1, 6}, {I_MUL, 5, 6, 9},
                           {I_END, 0, 0, 0}};
static inline double interpret(const iop *code, double u, double y, double *f) {
    static const void *const h[] = {&&add, &&max, &&sub, &&square, &&sum, &&gt, &&mul, &&end};
    double r[10] = {u, y, 0, 0};
    const iop *o = code;
    goto *h[o->op];
add:
    r[o->d] = r[o->a] + r[o->b];
    o++;
    goto *h[o->op];
max:
    r[o->d] = r[o->a] > r[o->b] ? r[o->a] : r[o->b];
    o++;
    goto *h[o->op];
sub:
    r[o->d] = r[o->a] - r[o->b];
    o++;
    goto *h[o->op];
square:
    r[o->d] = r[o->a] * r[o->a];
    o++;
    goto *h[o->op];
sum:
    *f += r[o->a];
    o++;
    goto *h[o->op];
gt:
    r[o->d] = r[o->a] > r[o->b];
    o++;
    goto *h[o->op];
mul:
    r[o->d] = r[o->a] * r[o->b];
    o++;
    goto *h[o->op];
end:
    return r[9];
}
__attribute__((noinline)) static double fg_rows_interpreted(const double *X, const double *w, const double *y,
                                                           double *gw) {
    double f = 0;
    vec g[NV] = {{0}};
    hvec gh = {0};
    for (long i = 0; i < N; i++) {
        const double c = interpret(prog, dot(X + i * COLS, w), y[i], &f);
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
    double g1[COLS], g2[COLS];
    if (!X || !w || !y) return 1;
    srand(1);
    for (long k = 0; k < N * COLS; k++)
        X[k] = rand() / (double)RAND_MAX - 0.5;
    for (long k = 0; k < COLS; k++)
        w[k] = rand() / (double)RAND_MAX - 0.5;
    for (long k = 0; k < N; k++)
        y[k] = rand() / (double)RAND_MAX - 0.5;
    enum { NVAR = 7 };
    static const char *names[NVAR] = {"f",
                                      "f+grad, serial blocks",
                                      "f+grad, serial blocks, g in memory",
                                      "f+grad, lagged",
                                      "f+grad, pipelined",
                                      "f+grad, row-fused",
                                      "f+grad, row-fused, interpreted"};
    double t[NVAR][ROUNDS], gv[NVAR][COLS];
    volatile double sink = 0;
    /* every order gives f and the gradient of row-fused (up to rounding) */
    const double fr = fg_rows(X, w, y, g2);
    double fv[NVAR] = {fr, fg_blocks(X, w, y, gv[1], T), fg_blocks_mem(X, w, y, gv[2], T),
                       fg_lagged(X, w, y, gv[3], T), fg_pipelined(X, w, y, gv[4], T), fr,
                       fg_rows_interpreted(X, w, y, gv[6])};
    memcpy(gv[0], g2, sizeof g2);
    memcpy(gv[5], g2, sizeof g2);
    for (int k = 1; k < NVAR; k++)
        for (int j = 0; j < COLS; j++)
            if (fabs(fv[k] - fr) > 1e-9 * fabs(fr) || fabs(gv[k][j] - g2[j]) > 1e-9 * (1 + fabs(g2[j]))) {
                fprintf(stderr, "rowblocks: %s disagrees with row-fused\n", names[k]);
                return 1;
            }
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < NVAR; k++) {
            const double t0 = now();
            for (int b = 0; b < 10; b++)
                sink += k == 0   ? f_only(X, w, y)
                        : k == 1 ? fg_blocks(X, w, y, g1, T)
                        : k == 2 ? fg_blocks_mem(X, w, y, g1, T)
                        : k == 3 ? fg_lagged(X, w, y, g1, T)
                        : k == 4 ? fg_pipelined(X, w, y, g1, T)
                        : k == 5 ? fg_rows(X, w, y, g1)
                                 : fg_rows_interpreted(X, w, y, g1);
            t[k][r] = (now() - t0) / 10;
        }
    printf("N=%d n=%d f64, blocks of %ld rows, medians of %d:\n", N, COLS, T, ROUNDS);
    for (int k = 0; k < NVAR; k++) {
        qsort(t[k], ROUNDS, sizeof(double), cmp);
        printf("  %-36s %7.1f us  %.2fx f\n", names[k], t[k][ROUNDS / 2] * 1e6, t[k][ROUNDS / 2] / t[0][ROUNDS / 2]);
    }
    free(X);
    free(w);
    free(y);
    return 0;
}
