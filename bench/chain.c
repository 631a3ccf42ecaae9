/* The interpreter's dispatch cost: a chain of 1,000 scalar operations
 * (250 steps of x <- x·1.0001 + 0.5·sin(x)) and its derivative, compiled by
 * nabla, against the same chain written by hand in C (built with -O3, libm).
 * Both run in this process, alternating sample by sample, so that the noise
 * of a shared machine hits both alike; prints the medians and their ratio.
 * The same program compiled with NB_COMPILE_NO_COMBINE (one micro-operation
 * per lowered operation: no sin/cos pairs, no fused pairs) runs alongside,
 * to show what the combining pass does; each program's count of
 * micro-operations (one dispatch each) is printed first.  A second hand-
 * written chain that uses sincos like the combined program is timed too.
 * Usage: chain [rounds]   (built and run by bench/bench.py, case d) */
#define _GNU_SOURCE /* sincos */
#include "nabla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STEPS 250
#define BATCH 200

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* f and df/dx by hand: the forward values kept, the derivative
 * Π (1.0001 + 0.5·cos(x_k)) accumulated backwards. */
static double xs[STEPS + 1];
__attribute__((noinline)) static double hand_f_grad(double x, double *grad) {
    xs[0] = x;
    for (int k = 0; k < STEPS; k++)
        xs[k + 1] = xs[k] * 1.0001 + 0.5 * sin(xs[k]);
    double g = 1;
    for (int k = STEPS; k-- > 0;)
        g *= 1.0001 + 0.5 * cos(xs[k]);
    *grad = g;
    return xs[STEPS];
}

/* The same by hand with what nabla's combining pass does: sin and cos from
 * one sincos in the forward pass, the backward pass reusing the cosines
 * (not the baseline of the target: it shows what dispatch still costs). */
static double cs[STEPS];
__attribute__((noinline)) static double hand_sincos_f_grad(double x, double *grad) {
    for (int k = 0; k < STEPS; k++) {
        double s, c;
        sincos(x, &s, &c);
        cs[k] = c;
        x = x * 1.0001 + 0.5 * s;
    }
    double g = 1;
    for (int k = STEPS; k-- > 0;)
        g *= 1.0001 + 0.5 * cs[k];
    *grad = g;
    return x;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 31;
    if (rounds < 1 || rounds > 10000) rounds = 31;
    /* the expression: t1 = x*1.0001 + 0.5*sin(x); t2 = t1*1.0001 + ...; t250 */
    size_t cap = 64 * STEPS, len = 0;
    char *src = malloc(cap);
    if (!src) return 1;
    for (int k = 1; k <= STEPS; k++) {
        char prev[16];
        snprintf(prev, sizeof prev, k == 1 ? "x" : "t%d", k - 1);
        len += (size_t)snprintf(src + len, cap - len, "t%d = %s*1.0001 + 0.5*sin(%s); ", k, prev, prev);
    }
    snprintf(src + len, cap - len, "t%d", STEPS);
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *f = nb_parse(ctx, src), *x = nb_lookup(ctx, "x");
    nb_expr *outs[2] = {f, f ? nb_gradient(ctx, f, x) : NULL};
    nb_program *p = nb_compile(ctx, 2, outs, 1, &x, NB_F64, 0);
    nb_program *plain = nb_compile(ctx, 2, outs, 1, &x, NB_F64, NB_COMPILE_NO_COMBINE);
    if (!p || !plain) {
        fprintf(stderr, "chain: %s\n", nb_error(ctx));
        return 1;
    }
    nb_program_stats st, st_plain;
    nb_program_get_stats(p, &st);
    nb_program_get_stats(plain, &st_plain);
    printf("micro-operations (dispatches) per run: %zu, without combining %zu\n", st.fused_ops, st_plain.fused_ops);
    double in = 0.7, out[2], hand[2];
    const void *ins[1] = {&in};
    void *outv[2] = {&out[0], &out[1]};
    hand[0] = hand_f_grad(in, &hand[1]);
    for (int k = 0; k < 3; k++) {
        if (k < 2)
            nb_program_run(k ? plain : p, ins, outv);
        else
            out[0] = hand_sincos_f_grad(in, &out[1]);
        if (fabs(out[0] - hand[0]) > 1e-9 * fabs(hand[0]) || fabs(out[1] - hand[1]) > 1e-9 * fabs(hand[1])) {
            fprintf(stderr, "chain: %s (%.17g, %.17g) differs from C (%.17g, %.17g)\n",
                    k < 2 ? "nabla" : "C with sincos", out[0], out[1], hand[0], hand[1]);
            return 1;
        }
    }
    double *tn = malloc((size_t)rounds * sizeof *tn), *tc = malloc((size_t)rounds * sizeof *tc);
    double *tp = malloc((size_t)rounds * sizeof *tp), *ts = malloc((size_t)rounds * sizeof *ts);
    volatile double sink = 0;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            double t0 = now();
            for (int i = 0; i < BATCH; i++) {
                in = 0.7 + i * 1e-9;
                nb_program_run(k ? plain : p, ins, outv);
                sink += out[1];
            }
            (k ? tp : tn)[r] = (now() - t0) / BATCH;
        }
        double t0 = now();
        for (int i = 0; i < BATCH; i++) {
            double g;
            sink += hand_f_grad(0.7 + i * 1e-9, &g) + g;
        }
        tc[r] = (now() - t0) / BATCH;
        t0 = now();
        for (int i = 0; i < BATCH; i++) {
            double g;
            sink += hand_sincos_f_grad(0.7 + i * 1e-9, &g) + g;
        }
        ts[r] = (now() - t0) / BATCH;
    }
    qsort(tn, (size_t)rounds, sizeof *tn, cmp);
    qsort(tp, (size_t)rounds, sizeof *tp, cmp);
    qsort(tc, (size_t)rounds, sizeof *tc, cmp);
    qsort(ts, (size_t)rounds, sizeof *ts, cmp);
    double mn = tn[rounds / 2], mp = tp[rounds / 2], mc = tc[rounds / 2], ms = ts[rounds / 2];
    printf("nabla f+grad: %.4g us (%.2f ns/op)\nnabla uncombined f+grad: %.4g us (%.2f ns/op)\n"
           "C f+grad: %.4g us (%.2f ns/op)\nC with sincos f+grad: %.4g us (%.2f ns/op)\n"
           "ratio: %.3f\nuncombined ratio: %.3f\nnabla / C with sincos: %.3f\n",
           mn * 1e6, mn * 1e9 / (4 * STEPS), mp * 1e6, mp * 1e9 / (4 * STEPS), mc * 1e6, mc * 1e9 / (4 * STEPS),
           ms * 1e6, ms * 1e9 / (4 * STEPS), mn / mc, mp / mc, mn / ms);
    free(tn);
    free(tp);
    free(tc);
    free(ts);
    free(src);
    nb_program_free(p);
    nb_program_free(plain);
    nb_ctx_free(ctx);
    return 0;
}
