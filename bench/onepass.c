/* The neuron's f and f+∇f written by hand for any width, the physical
 * reference for issue 7's f+∇f ≤ 1.3× f where bench/rowblocks.c (n = 100
 * only) does not reach: N×n f64 or f32, the loops nabla's generated code
 * (src/native.c, NB_COMPILE_NATIVE) uses, without nabla:
 *   f           the dot products four rows at a time (64-byte vectors), the cost
 *   row-fused   each row's dot product, then at once the update of the
 *               gradient by the row (gradient in registers only when small)
 *   four rows   four rows' dot products sharing the loads of w, then one
 *               update by the four rows (the gradient loaded and stored
 *               once per four rows)
 * Medians of 31 samples of 20 runs each, alternating; checks first that the
 * two orders agree.  Build and run (sizes at compile time):
 *   cc -O3 -march=native -fno-math-errno -ffp-contract=fast -DNR=1000 -DNC=1000 -DREAL=double \
 *      bench/onepass.c -o /tmp/onepass && /tmp/onepass */
#include "timing.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL double
#endif
#ifndef NR
#define NR 1000
#endif
#ifndef NC
#define NC 1000
#endif
#define VN (64 / (int)sizeof(REAL))
typedef REAL vec __attribute__((vector_size(64)));
enum { NV = NC / VN, TL = NC % VN };

static inline vec ld(const REAL *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline REAL hsum(vec v) {
    for (int h = VN / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; l++)
            v[l] += v[l + h];
    return v[0];
}
static inline REAL dot(const REAL *x, const REAL *w) {
    vec s0 = {0}, s1 = {0};
    int k = 0;
    for (; k + 1 < NV; k += 2) {
        s0 += ld(x + VN * k) * ld(w + VN * k);
        s1 += ld(x + VN * k + VN) * ld(w + VN * k + VN);
    }
    if (k < NV) s0 += ld(x + VN * k) * ld(w + VN * k);
    REAL t = hsum(s0 + s1);
    for (int j = NV * VN; j < NC; j++)
        t += x[j] * w[j];
    return t;
}
/* (y − max(0, u))² added to *f; returns the gradient's row coefficient 1[u>0]·(u − y) */
static inline REAL coefficient(REAL u, REAL y, double *f) {
    const REAL r = y - (u > 0 ? u : 0);
    *f += r * r;
    return u > 0 ? u - y : 0;
}

/* four rows' dot products sharing the loads of w, u[r] = x_r·w */
static inline void dot4(const REAL *x, const REAL *w, REAL *u) {
    vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int k = 0; k < NV; k++) {
        const vec wk = ld(w + VN * k);
        a0 += ld(x + VN * k) * wk;
        a1 += ld(x + NC + VN * k) * wk;
        a2 += ld(x + 2 * NC + VN * k) * wk;
        a3 += ld(x + 3 * NC + VN * k) * wk;
    }
    u[0] = hsum(a0), u[1] = hsum(a1), u[2] = hsum(a2), u[3] = hsum(a3);
    for (int r = 0; r < 4; r++)
        for (int j = NV * VN; j < NC; j++)
            u[r] += x[r * NC + j] * w[j];
}

/* f alone, four rows at a time (as fast as this file can make it) */
__attribute__((noinline)) static double f_only(const REAL *X, const REAL *w, const REAL *y) {
    double f = 0;
    long i = 0;
    for (; i + 4 <= NR; i += 4) {
        REAL u[4];
        dot4(X + i * NC, w, u);
        for (int r = 0; r < 4; r++)
            coefficient(u[r], y[i + r], &f);
    }
#if NR % 4
    for (; i < NR; i++)
        coefficient(dot(X + i * NC, w), y[i], &f);
#endif
    return f;
}
static vec g[NV + 1];
static REAL gt[TL + 1];
static void update(const REAL *x, REAL c) {
    const vec cv = (vec){0} + c;
    for (int k = 0; k < NV; k++)
        g[k] += ld(x + VN * k) * cv;
    for (int j = 0; j < TL; j++)
        gt[j] += x[NV * VN + j] * c;
}
static void store(REAL *gw) {
    memcpy(gw, g, sizeof(REAL) * NV * VN);
    memcpy(gw + NV * VN, gt, sizeof(REAL) * TL);
}
__attribute__((noinline)) static double fg_rows(const REAL *X, const REAL *w, const REAL *y, REAL *gw) {
    double f = 0;
    memset(g, 0, sizeof g);
    memset(gt, 0, sizeof gt);
    for (long i = 0; i < NR; i++)
        update(X + i * NC, coefficient(dot(X + i * NC, w), y[i], &f));
    store(gw);
    return f;
}
__attribute__((noinline)) static double fg_four(const REAL *X, const REAL *w, const REAL *y, REAL *gw) {
    double f = 0;
    memset(g, 0, sizeof g);
    memset(gt, 0, sizeof gt);
    long i = 0;
    for (; i + 4 <= NR; i += 4) {
        const REAL *x = X + i * NC;
        REAL u[4], c[4];
        dot4(x, w, u);
        for (int r = 0; r < 4; r++)
            c[r] = coefficient(u[r], y[i + r], &f);
        const vec c0 = (vec){0} + c[0], c1 = (vec){0} + c[1], c2 = (vec){0} + c[2], c3 = (vec){0} + c[3];
        for (int k = 0; k < NV; k++)
            g[k] += ld(x + VN * k) * c0 + ld(x + NC + VN * k) * c1 + ld(x + 2 * NC + VN * k) * c2 +
                    ld(x + 3 * NC + VN * k) * c3;
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < TL; j++)
                gt[j] += x[r * NC + NV * VN + j] * c[r];
    }
#if NR % 4
    for (; i < NR; i++)
        update(X + i * NC, coefficient(dot(X + i * NC, w), y[i], &f));
#endif
    store(gw);
    return f;
}

int main(void) {
    REAL *X = malloc(sizeof(REAL) * NR * NC), *w = malloc(sizeof(REAL) * NC), *y = malloc(sizeof(REAL) * NR);
    REAL *g1 = malloc(sizeof(REAL) * NC), *g2 = malloc(sizeof(REAL) * NC);
    if (!X || !w || !y || !g1 || !g2) return 1;
    srand(1);
    for (long i = 0; i < (long)NR * NC; i++)
        X[i] = (REAL)rand() / (REAL)RAND_MAX - (REAL)0.5;
    for (int j = 0; j < NC; j++)
        w[j] = (REAL)rand() / (REAL)RAND_MAX - (REAL)0.5;
    for (int i = 0; i < NR; i++)
        y[i] = (REAL)rand() / (REAL)RAND_MAX;
    const double fa = fg_rows(X, w, y, g1), fb = fg_four(X, w, y, g2);
    for (int j = 0; j < NC; j++)
        if (fabs((double)g1[j] - (double)g2[j]) > 1e-3 * (1 + fabs((double)g1[j])) ||
            fabs(fa - fb) > 1e-6 * fabs(fa)) {
            fprintf(stderr, "onepass: the two orders disagree\n");
            return 1;
        }
    enum { S = 31, RUNS = 20 };
    double t[3][S];
    volatile double sink = 0;
    for (int s = 0; s < S; s++) {
        double t0 = now();
        for (int r = 0; r < RUNS; r++)
            sink += f_only(X, w, y);
        t[0][s] = (now() - t0) / RUNS;
        t0 = now();
        for (int r = 0; r < RUNS; r++)
            sink += fg_rows(X, w, y, g1);
        t[1][s] = (now() - t0) / RUNS;
        t0 = now();
        for (int r = 0; r < RUNS; r++)
            sink += fg_four(X, w, y, g2);
        t[2][s] = (now() - t0) / RUNS;
    }
    for (int k = 0; k < 3; k++)
        qsort(t[k], S, sizeof(double), cmp);
    printf("N=%d n=%d %s, medians of %d: f %.1f us, f+grad row-fused %.1f us (%.2fx f), four rows %.1f us "
           "(%.2fx f)\n",
           NR, NC, sizeof(REAL) == 8 ? "f64" : "f32", S, t[0][S / 2] * 1e6, t[1][S / 2] * 1e6,
           t[1][S / 2] / t[0][S / 2], t[2][S / 2] * 1e6, t[2][S / 2] / t[0][S / 2]);
    return 0;
}
