/* Scalar chains and the combining pass (passes.c: sin/cos pairs as one
 * SINCOS, fused pairs of binary operations):
 *  - the pass fires: exact listings of small programs, and the 250-step
 *    chain of bench/chain.c counted in micro-operations;
 *  - it changes no value: random chains of sin, cos, exp, log, tanh,
 *    sigmoid, pow and products/sums with constants, over a scalar (straight-
 *    line sops) and over a vector (fused loops), compiled with and without
 *    the pass (NB_COMPILE_NO_COMBINE) give bit-identical results in f64 and
 *    f32; against nb_eval, and the gradient against central differences of
 *    f in f64. */
#include "nabla.h"
#include "random.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* f and its gradient with respect to x, compiled. */
static nb_program *compile_f_grad(nb_ctx *ctx, nb_expr *f, nb_expr *x, nb_dtype dt, unsigned flags) {
    nb_expr *outs[2] = {f, nb_gradient(ctx, f, x)};
    return outs[1] ? nb_compile(ctx, 2, outs, 1, &x, dt, flags) : NULL;
}

static size_t micro_ops(const nb_program *p) {
    nb_program_stats st;
    nb_program_get_stats(p, &st);
    return st.fused_ops;
}

/* ---- the pass fires ------------------------------------------------------------ */
static void check_listing(const char *decl, const char *src, unsigned flags, const char *want) {
    nb_ctx *ctx = nb_ctx_new();
    if (decl) nb_declare(ctx, decl);
    nb_expr *f = nb_parse(ctx, src), *x = nb_lookup(ctx, "x");
    nb_program *p = f && x ? compile_f_grad(ctx, f, x, NB_F64, flags) : NULL;
    CHECK(p != NULL, "%s: %s", src, nb_error(ctx));
    if (p && decl) nb_program_bind_dim(p, "n", 3);
    char *d = p ? nb_program_describe(p) : NULL;
    CHECK_STR(d, want);
    free(d);
    nb_program_free(p);
    nb_ctx_free(ctx);
}

static void test_listings(void) {
    /* one step of the chain: sin(x) for f and cos(x) for f' from one sincos,
     * both sums of products as multiply-adds */
    check_listing(NULL, "x*1.0001 + 0.5*sin(x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=3 threads=1\n"
                  "        r0 = MUL in0[0], w[0]\n"
                  "        r1, r2 = SINCOS in0[0]\n"
                  "        out0[0] = MULADD r1, w[8], r0\n"
                  "        out1[0] = MULADD r2, w[8], w[0]\n");
    check_listing(NULL, "x*1.0001 + 0.5*sin(x)", NB_COMPILE_NO_COMBINE,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=3 threads=1\n"
                  "        r0 = MUL in0[0], w[0]\n"
                  "        r1 = SIN in0[0]\n"
                  "        r2 = MUL r1, w[8]\n"
                  "        out0[0] = ADD r0, r2\n"
                  "        r2 = COS in0[0]\n"
                  "        r0 = MUL r2, w[8]\n"
                  "        out1[0] = ADD w[0], r0\n");
    /* a·b − c; sin(x) for f and cos(x) for f' */
    check_listing(NULL, "x*sin(x) - exp(x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=4 threads=1\n"
                  "        r0, r1 = SINCOS in0[0]\n"
                  "        r2 = EXP in0[0]\n"
                  "        out0[0] = MULSUB r0, in0[0], r2\n"
                  "        r3 = MULADD r1, in0[0], r0\n"
                  "        out1[0] = SUB r3, r2\n");
    /* (a·b)/c, (a·b)·c, (a + b) + c; r3 = sin(x)/x is read twice: no pair */
    check_listing(NULL, "exp(x)/x*sin(x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=6 threads=1\n"
                  "        r0 = EXP in0[0]\n"
                  "        r1, r2 = SINCOS in0[0]\n"
                  "        out0[0] = MULDIV r1, r0, in0[0]\n"
                  "        r3 = DIV r1, in0[0]\n"
                  "        r4 = SQUARE in0[0]\n"
                  "        r5 = RECIP r4\n"
                  "        r4 = MULMUL r1, r5, w[0]\n"
                  "        r5 = DIV r2, in0[0]\n"
                  "        r2 = ADDADD r4, r3, r5\n"
                  "        out1[0] = MUL r2, r0\n");
    /* (a + b)·c; (a − b)·c; x + 2 feeds f and f': no pair */
    check_listing(NULL, "(x + 2)*tanh(x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=4 threads=1\n"
                  "        r0 = ADD in0[0], w[0]\n"
                  "        r1 = TANH in0[0]\n"
                  "        out0[0] = MUL r0, r1\n"
                  "        r2 = SQUARE r1\n"
                  "        r3 = SUBMUL w[8], r2, r0\n"
                  "        out1[0] = ADD r3, r1\n");
    check_listing(NULL, "(x/3 + 1)*exp(x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 1x1 regs=2 threads=1\n"
                  "        r0 = MUL in0[0], w[0]\n"
                  "        r1 = EXP in0[0]\n"
                  "        out0[0] = ADDMUL r0, w[8], r1\n"
                  "        out1[0] = ADDMUL r0, w[16], r1\n");
    /* a loop over a vector: SINCOS into two block registers, a fused pair */
    check_listing("x: vector(n)", "sum(sin(x) .* cos(x) + x)", 0,
                  "program: 1 inputs, 2 outputs, f64, 1 thread(s)\n"
                  "      0 group 3x1 regs=3 threads=1\n"
                  "        r0, r1 = SINCOS in0[0]\n"
                  "        r2 = MULADD r1, r0, in0[0]\n"
                  "        acc0 += sum r2 -> out0[0]\n"
                  "        r2 = SQUARE r0\n"
                  "        r0 = SQUARE r1\n"
                  "        r1 = ADD s:w[8], r0\n"
                  "        out1[0] = SUB r1, r2\n");
}

/* The chain of bench/chain.c, steps long: t_k = t_{k-1}·1.0001 + 0.5·sin(t_{k-1}). */
static char *chain_source(int steps) {
    size_t cap = 64 * (size_t)steps + 64, len = 0;
    char *src = malloc(cap);
    for (int k = 1; k <= steps && src; k++) {
        char prev[16];
        snprintf(prev, sizeof prev, k == 1 ? "x" : "t%d", k - 1);
        len += (size_t)snprintf(src + len, cap - len, "t%d = %s*1.0001 + 0.5*sin(%s); ", k, prev, prev);
    }
    if (src) snprintf(src + len, cap - len, "t%d", steps);
    return src;
}

/* Ten steps: f is 10 × (MUL, SIN, MUL, ADD), f' 10 × (COS, MUL, ADD) and 9
 * products; combined, f is 10 × (MUL, SINCOS, MULADD), f' 10 MULADD and the
 * 9 products as 4 MULMUL and 1 MUL.  250 steps (bench/chain.c): the
 * simplifier distributes the derivative's product every 16 factors
 * (t = 1.0001·Π + cos(u)·Π/2), which costs 15 more products, not 15 more
 * copies of Π (lowering folds products from their last factor; 2239 when it
 * did not). */
static void test_chain_counts(void) {
    nb_ctx *ctx = nb_ctx_new();
    char *src = chain_source(10), *long_src = chain_source(250);
    nb_expr *f = nb_parse(ctx, src), *x = nb_lookup(ctx, "x"), *f_long = nb_parse(ctx, long_src);
    nb_program *p = compile_f_grad(ctx, f, x, NB_F64, 0), *plain = compile_f_grad(ctx, f, x, NB_F64, NB_COMPILE_NO_COMBINE);
    nb_program *p_long = compile_f_grad(ctx, f_long, x, NB_F64, 0);
    nb_program *plain_long = compile_f_grad(ctx, f_long, x, NB_F64, NB_COMPILE_NO_COMBINE);
    CHECK(p && plain && p_long && plain_long, "chain: %s", nb_error(ctx));
    if (p_long && plain_long)
        CHECK(micro_ops(plain_long) == 2014 && micro_ops(p_long) == 1140,
              "chain of 250: %zu micro-operations combined, %zu plain", micro_ops(p_long), micro_ops(plain_long));
    if (p && plain) {
        CHECK(micro_ops(plain) == 79 && micro_ops(p) == 45, "chain of 10: %zu micro-operations combined, %zu plain",
              micro_ops(p), micro_ops(plain));
        char *d = nb_program_describe(p);
        size_t counts[4] = {0};
        const char *words[4] = {"= SINCOS ", "= MULADD ", "= MULMUL ", "= COS "};
        for (int w = 0; w < 4; w++)
            for (const char *q = d ? strstr(d, words[w]) : NULL; q; q = strstr(q + 1, words[w]))
                counts[w]++;
        CHECK(counts[0] == 10 && counts[1] == 20 && counts[2] == 4 && counts[3] == 0,
              "chain of 10: %zu SINCOS, %zu MULADD, %zu MULMUL, %zu COS", counts[0], counts[1], counts[2], counts[3]);
        free(d);
    }
    nb_program_free(p);
    nb_program_free(plain);
    nb_program_free(p_long);
    nb_program_free(plain_long);
    free(src);
    free(long_src);
    nb_ctx_free(ctx);
}

/* ---- values: random chains ------------------------------------------------------- */
/* A random chain over x: t_k = c1·t_{k-1} + c2·F(v[, w]) with v, w earlier
 * values and F one of the functions below; f = t_N (vector: sum(t_N)). */
static char *random_chain(uint64_t *seed, int vector) {
    size_t cap = 8192, len = 0;
    char *src = malloc(cap);
    if (!src) return NULL;
    const int steps = 2 + rnd(seed, 9);
    static const double powers[] = {0.5, 1.5, -1, 2.5, 3, -0.5};
    for (int k = 1; k <= steps; k++) {
        char u[16], v[16], w[16], fn[160];
        snprintf(u, sizeof u, k == 1 ? "x" : "t%d", k - 1);
        int j = rnd(seed, k), i = rnd(seed, k);
        snprintf(v, sizeof v, j == 0 ? "x" : "t%d", j);
        snprintf(w, sizeof w, i == 0 ? "x" : "t%d", i);
        switch (rnd(seed, 11)) {
        case 0: snprintf(fn, sizeof fn, "sin(%s)", v); break;
        case 1: snprintf(fn, sizeof fn, "cos(%s)", v); break;
        case 2: snprintf(fn, sizeof fn, "tanh(%s)", v); break;
        case 3: snprintf(fn, sizeof fn, "sigmoid(%s)", v); break;
        case 4: snprintf(fn, sizeof fn, "exp(%.3f*%s)", uniform(seed, -1, 1), v); break;
        case 5: snprintf(fn, sizeof fn, "log(1 + %s .* %s)", v, v); break;
        case 6: snprintf(fn, sizeof fn, "(1 + %s .* %s).^%g", v, v, powers[rnd(seed, 6)]); break;
        case 7: snprintf(fn, sizeof fn, "%s .* %s", v, w); break;
        case 8: snprintf(fn, sizeof fn, "sin(%s) .* cos(%s)", v, v); break;
        case 9: snprintf(fn, sizeof fn, "%s ./ (1 + %s .* %s)", v, w, w); break;
        default: snprintf(fn, sizeof fn, "cos(%s) - %.3f*sin(%s)", v, uniform(seed, -2, 2), v); break;
        }
        if (rnd(seed, 4)) /* c1·u + c2·F */
            len += (size_t)snprintf(src + len, cap - len, "t%d = %.4f*%s + %.4f*%s; ", k, uniform(seed, -1, 1), u,
                                    uniform(seed, -1.5, 1.5), fn);
        else /* a product less a function value */
            len += (size_t)snprintf(src + len, cap - len, "t%d = tanh(%s) .* %s - %s; ", k, u, v, fn);
    }
    snprintf(src + len, cap - len, vector ? "sum(t%d)" : "t%d", steps);
    return src;
}

#define NVEC 5

/* what the pass makes, as nb_program_describe lists it */
static const char *const combined_ops[] = {"= SINCOS ", "= MULADD ", "= MULSUB ", "= MULMUL ", "= MULDIV ",
                                           "= ADDMUL ", "= SUBMUL ", "= ADDADD "};
#define NCOMBINED (sizeof combined_ops / sizeof *combined_ops)

typedef struct {
    long programs, combined; /* programs, those with fewer micro-operations than without the pass */
    long with[NCOMBINED];    /* programs using each combined operation */
} chain_stats;

/* Runs p at x (n entries) into f (1) and g (n), in p's type; returns 0 on success. */
static int run_at(nb_program *p, nb_dtype dt, const double *x, int n, double *f, double *g) {
    float xf[NVEC], ff, gf[NVEC];
    double fd;
    for (int i = 0; i < n; i++)
        xf[i] = (float)x[i];
    const void *in[1] = {dt == NB_F64 ? (const void *)x : (const void *)xf};
    void *out[2] = {dt == NB_F64 ? (void *)&fd : (void *)&ff, dt == NB_F64 ? (void *)g : (void *)gf};
    if (nb_program_run(p, in, out) != NB_OK) return -1;
    *f = dt == NB_F64 ? fd : ff;
    if (dt == NB_F32)
        for (int i = 0; i < n; i++)
            g[i] = gf[i];
    return 0;
}

static double f_at(nb_program *p, const double *x, int n) {
    double f = NAN, g[NVEC];
    run_at(p, NB_F64, x, n, &f, g);
    return f;
}

/* (f(x + h·e_i) − f(x − h·e_i)) / 2h with p's f64 f */
static double central_difference(nb_program *p, const double *x, int n, int i, double h) {
    double xs[NVEC];
    memcpy(xs, x, (size_t)n * sizeof *x);
    xs[i] = x[i] + h;
    const double fplus = f_at(p, xs, n);
    xs[i] = x[i] - h;
    return (fplus - f_at(p, xs, n)) / (2 * h);
}

/* One random chain: compiled with and without combining (bit-identical), f
 * against nb_eval, the gradient against central differences (f64). */
static void check_chain(uint64_t *seed, int vector, chain_stats *cs) {
    char *src = random_chain(seed, vector);
    nb_ctx *ctx = nb_ctx_new();
    if (vector) nb_declare(ctx, "x: vector(n)");
    nb_expr *f = src ? nb_parse(ctx, src) : NULL, *x = nb_lookup(ctx, "x");
    CHECK(f && x, "parse %s: %s", src ? src : "(null)", nb_error(ctx));
    const int n = vector ? NVEC : 1;
    double xv[NVEC];
    for (int i = 0; i < n; i++)
        xv[i] = uniform(seed, -1.5, 1.5);
    nb_set_value(ctx, "x", n, 1, xv);
    nb_matrix ref = {0};
    if (!f || !x || nb_eval(ctx, f, &ref)) {
        free(src);
        nb_ctx_free(ctx);
        return;
    }
    for (int t = 0; t < 2; t++) {
        const nb_dtype dt = t ? NB_F32 : NB_F64;
        nb_program *p = compile_f_grad(ctx, f, x, dt, 0), *plain = compile_f_grad(ctx, f, x, dt, NB_COMPILE_NO_COMBINE);
        CHECK(p && plain, "compile %s: %s", src, nb_error(ctx));
        if (p && plain && vector) {
            nb_program_bind_dim(p, "n", NVEC);
            nb_program_bind_dim(plain, "n", NVEC);
        }
        double fv = 0, fp = 0, g[NVEC] = {0}, gp[NVEC] = {0};
        if (p && plain && !run_at(p, dt, xv, n, &fv, g) && !run_at(plain, dt, xv, n, &fp, gp)) {
            cs->programs++;
            cs->combined += micro_ops(p) < micro_ops(plain);
            char *d = nb_program_describe(p);
            CHECK(memcmp(&fv, &fp, sizeof fv) == 0 && memcmp(g, gp, sizeof g) == 0,
                  "%s (%s): combined f %.17g, f' %.17g differ from plain %.17g, %.17g", src, t ? "f32" : "f64", fv,
                  g[0], fp, gp[0]);
            const double scale = fmax(1, fabs(ref.data[0])), tol = t ? 3e-3 : 1e-10;
            CHECK(fabs(fv - ref.data[0]) <= tol * scale, "%s (%s): f %.17g, nb_eval %.17g", src,
                  t ? "f32" : "f64", fv, ref.data[0]);
            for (int i = 0; i < n && !t; i++) {
                /* central differences of the compiled f64 f with steps h and
                 * 2h: their difference (3/4 of the larger one's h² error)
                 * bounds the truncation error of the first on chains that
                 * oscillate fast */
                const double h = 1e-6 * fmax(1, fabs(xv[i]));
                const double d1 = central_difference(p, xv, n, i, h), d2 = central_difference(p, xv, n, i, 2 * h);
                CHECK(fabs(g[i] - d1) <= 1e-6 * fmax(1, fabs(d1)) + fabs(d2 - d1),
                      "%s at x%d = %.17g: df/dx %.17g, central differences %.17g (h), %.17g (2h)", src, i, xv[i],
                      g[i], d1, d2);
            }
            for (size_t k = 0; k < NCOMBINED; k++)
                cs->with[k] += d && strstr(d, combined_ops[k]);
            free(d);
        }
        nb_program_free(p);
        nb_program_free(plain);
    }
    nb_matrix_free(&ref);
    free(src);
    nb_ctx_free(ctx);
}

static void test_random_chains(void) {
    uint64_t seed = 20261202;
    for (int vector = 0; vector < 2; vector++) {
        chain_stats cs = {0};
        for (int k = 0; k < 200; k++)
            check_chain(&seed, vector, &cs);
        /* the pass fires on most chains, and makes each of its operations */
        CHECK(cs.programs >= 360 && cs.combined >= cs.programs * 9 / 10, "%s chains: %ld programs, %ld combined",
              vector ? "vector" : "scalar", cs.programs, cs.combined);
        for (size_t k = 0; k < NCOMBINED; k++)
            CHECK(cs.with[k] > 0, "%s chains: no %s", vector ? "vector" : "scalar", combined_ops[k]);
        printf("%s chains: %ld programs, %ld combined; programs with", vector ? "vector" : "scalar", cs.programs,
               cs.combined); /* shown by make test V=1 */
        for (size_t k = 0; k < NCOMBINED; k++)
            printf(" %s%ld", combined_ops[k] + 2, cs.with[k]);
        printf("\n");
    }
}

int main(void) {
    test_listings();
    test_chain_counts();
    test_random_chains();
    TEST_MAIN_END();
}
