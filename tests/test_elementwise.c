/* The element-wise functions of compiled programs, element by element,
 * against the same functions evaluated in long double:
 *  - exp, log, sin, cos, tan, tanh, sigmoid, softplus, logsigmoid, powers
 *    (array by array, array by scalar, scalar by array) and sin with cos of
 *    one argument (one sincos micro-operation), in f64 and f32;
 *  - arguments from ordinary values to the edges: ±0, tiny and subnormal,
 *    huge (sin of 1e5, exp overflowing to ∞ and underflowing to 0), ±∞,
 *    NaN, and arguments outside the domain (log of a negative: NaN);
 *  - every length from 1 to 40 and two long arrays, so that the kernels'
 *    whole vectors, partial last vectors and blocks all occur;
 *  - each value within 8 units in the last place of the type (glibc's
 *    vector functions promise 4, its scalar ones 1), NaN where the exact
 *    value is NaN, the same infinity where it is infinite;
 *  - an element's value does not depend on its position or on the number of
 *    threads: the same argument at every index gives one bit pattern, and
 *    two threads give the bits of one;
 *  - softmax, logsoftmax and logsumexp of a vector, whose exponentials run
 *    the same way, and the norms at the edges of the double range.
 * Usage: test_elementwise */
#include "nabla.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef long double ld;
static ld sigmoid_l(ld x) { return x >= 0 ? 1 / (1 + expl(-x)) : expl(x) / (1 + expl(x)); }
static ld softplus_l(ld x) { return (x > 0 ? x : 0) + log1pl(expl(-fabsl(x))); }

typedef struct {
    const char *expr; /* of x, y (vectors) and p (scalar) */
    ld (*exact)(ld x, ld y, ld p);
} fcase;

static ld f_exp(ld x, ld y, ld p) { return (void)y, (void)p, expl(x); }
static ld f_log(ld x, ld y, ld p) { return (void)y, (void)p, logl(x); }
static ld f_sin(ld x, ld y, ld p) { return (void)y, (void)p, sinl(x); }
static ld f_cos(ld x, ld y, ld p) { return (void)y, (void)p, cosl(x); }
static ld f_tan(ld x, ld y, ld p) { return (void)y, (void)p, tanl(x); }
static ld f_tanh(ld x, ld y, ld p) { return (void)y, (void)p, tanhl(x); }
static ld f_sigmoid(ld x, ld y, ld p) { return (void)y, (void)p, sigmoid_l(x); }
static ld f_softplus(ld x, ld y, ld p) { return (void)y, (void)p, softplus_l(x); }
static ld f_logsigmoid(ld x, ld y, ld p) { return (void)y, (void)p, -softplus_l(-x); }
static ld f_pow_vv(ld x, ld y, ld p) { return (void)p, powl(x, y); }
static ld f_pow_vs(ld x, ld y, ld p) { return (void)y, powl(x, p); }
static ld f_pow_sv(ld x, ld y, ld p) { return (void)x, powl(p, y); }
static ld f_sincos(ld x, ld y, ld p) { return (void)y, (void)p, sinl(x) * cosl(x); }

static const fcase cases[] = {
    {"exp(x)", f_exp},           {"log(x)", f_log},           {"sin(x)", f_sin},
    {"cos(x)", f_cos},           {"tan(x)", f_tan},           {"tanh(x)", f_tanh},
    {"sigmoid(x)", f_sigmoid},   {"softplus(x)", f_softplus}, {"logsigmoid(x)", f_logsigmoid},
    {"x.^y", f_pow_vv},          {"x.^p", f_pow_vs},          {"p.^y", f_pow_sv},
    {"sin(x) .* cos(x)", f_sincos},
};

/* the arguments: edges first, then ordinary values */
static const double edges[] = {0.0,    -0.0,   1e-310, -1e-310, 1e-30, -1e-30, 1.0,   -1.0,     0.5,      -2.5,
                               20.0,   -20.0,  88.5,   -88.5,   100.0, -103.0, 700.0, -740.0,   710.0,    -750.0,
                               1e5,    -1e5,   3e8,    INFINITY, -INFINITY, NAN, 1.5707963267948966, 3.141592653589793,
                               1e-5,   36.5};
#define NEDGES ((int)(sizeof edges / sizeof *edges))

static uint64_t rng = 0x2545f4914f6cdd1du;
static double uniform(double lo, double hi) {
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

/* the argument at index i of an array (edges, then values in [-6, 6]) */
static double argument(int64_t i, int which) {
    if (i < NEDGES) return edges[(i + 7 * which) % NEDGES];
    return uniform(-6, 6);
}

/* got within 8 ulps of the exact value in the element type (f32: float) */
static int close_enough(double got, ld exact, int f32) {
    if (isnan(exact)) return isnan(got);
    if (isinf(exact)) return got == (double)exact;
    const double want = f32 ? (double)(float)exact : (double)exact;
    if (isinf(want)) return got == want || fabsl((ld)got - exact) <= fabsl(exact) * (f32 ? 1e-6L : 1e-15L);
    const double mag = fabs(want) > (f32 ? FLT_MIN : DBL_MIN) ? fabs(want) : (f32 ? FLT_MIN : DBL_MIN);
    const double ulp = f32 ? (double)(nextafterf((float)mag, INFINITY) - (float)mag) : nextafter(mag, INFINITY) - mag;
    return fabsl((ld)got - exact) <= 8 * (ld)ulp;
}

typedef struct {
    nb_ctx *ctx;
    nb_program *p;
    nb_dtype dt;
} compiled;

static int compile_case(compiled *c, const char *expr, nb_dtype dt, int threads) {
    c->ctx = nb_ctx_new();
    c->dt = dt;
    c->p = NULL;
    if (!c->ctx || nb_declare(c->ctx, "x, y: vector(n); p: scalar") != NB_OK) return 0;
    nb_expr *f = nb_parse(c->ctx, expr);
    nb_expr *ins[3] = {nb_lookup(c->ctx, "x"), nb_lookup(c->ctx, "y"), nb_lookup(c->ctx, "p")};
    if (!f) return 0;
    c->p = nb_compile(c->ctx, 1, &f, 3, ins, dt, 0);
    return c->p && nb_program_set_threads(c->p, threads) == NB_OK;
}

static void free_case(compiled *c) {
    nb_program_free(c->p);
    nb_ctx_free(c->ctx);
}

/* Runs c on n arguments (x from `which` 0, y from 1, p = 1.75) into out
 * (doubles); 0 on an error. */
static int run_case(compiled *c, int64_t n, const double *x, const double *y, double p, double *out) {
    const int f32 = c->dt == NB_F32;
    const size_t rs = f32 ? sizeof(float) : sizeof(double);
    void *xb = malloc((size_t)n * rs), *yb = malloc((size_t)n * rs), *ob = calloc((size_t)n, rs);
    float pf = (float)p;
    int ok = xb && yb && ob;
    for (int64_t i = 0; ok && i < n; i++) {
        if (f32) {
            ((float *)xb)[i] = (float)x[i];
            ((float *)yb)[i] = (float)y[i];
        } else {
            ((double *)xb)[i] = x[i];
            ((double *)yb)[i] = y[i];
        }
    }
    const void *in[3] = {xb, yb, f32 ? (const void *)&pf : (const void *)&p};
    void *outs[1] = {ob};
    ok = ok && nb_program_bind_dim(c->p, "n", n) == NB_OK && nb_program_run(c->p, in, outs) == NB_OK;
    for (int64_t i = 0; ok && i < n; i++)
        out[i] = f32 ? (double)((float *)ob)[i] : ((double *)ob)[i];
    free(xb);
    free(yb);
    free(ob);
    return ok;
}

static void check_function(const fcase *fc, nb_dtype dt) {
    const int f32 = dt == NB_F32;
    const char *tn = f32 ? "f32" : "f64";
    compiled one, two;
    const int made = compile_case(&one, fc->expr, dt, 1) & compile_case(&two, fc->expr, dt, 2);
    CHECK(made, "%s %s: compile: %s", fc->expr, tn, one.ctx ? nb_error(one.ctx) : "no context");
    if (!made) {
        free_case(&one);
        free_case(&two);
        return;
    }
    enum { LONG = 5003 };
    double *x = malloc(LONG * sizeof *x), *y = malloc(LONG * sizeof *y), *got = malloc(LONG * sizeof *got),
           *got2 = malloc(LONG * sizeof *got2);
    const double p = 1.75;
    int bad = 0, checked = 0, runs_ok = 1;
    static const int64_t lengths[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,   15,  16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,   31,  32,
                                      33, 34, 35, 36, 37, 38, 39, 40, 1000, LONG};
    for (size_t L = 0; L < sizeof lengths / sizeof *lengths && x && y && got && got2; L++) {
        const int64_t n = lengths[L];
        for (int64_t i = 0; i < n; i++) {
            /* in f32 the arguments are the floats the program sees */
            x[i] = f32 ? (double)(float)argument(i, 0) : argument(i, 0);
            y[i] = f32 ? (double)(float)argument(i, 1) : argument(i, 1);
        }
        if (!run_case(&one, n, x, y, p, got)) {
            runs_ok = 0;
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            const ld exact = fc->exact((ld)x[i], (ld)y[i], (ld)(f32 ? (double)(float)p : p));
            checked++;
            if (!close_enough(got[i], exact, f32) && bad++ < 3)
                fprintf(stderr, "%s %s n=%lld: f(x=%.17g, y=%.17g) = %.17g, exact %.17Lg\n", fc->expr, tn,
                        (long long)n, x[i], y[i], got[i], exact);
        }
        if (n == LONG) { /* two threads: the bits of one */
            if (!run_case(&two, n, x, y, p, got2)) {
                runs_ok = 0;
                break;
            }
            CHECK(memcmp(got, got2, (size_t)n * sizeof *got) == 0, "%s %s: two threads differ from one", fc->expr,
                  tn);
        }
    }
    CHECK(runs_ok, "%s %s: run: %s", fc->expr, tn, nb_program_error(one.p));
    CHECK(bad == 0, "%s %s: %d of %d values beyond 8 ulp", fc->expr, tn, bad, checked);
    /* one argument at every index: one bit pattern */
    if (x && y && got) {
        const int64_t n = 37;
        for (int64_t i = 0; i < n; i++) {
            x[i] = 0.3;
            y[i] = -1.1;
        }
        const int ran = run_case(&one, n, x, y, p, got);
        int same = ran;
        for (int64_t i = 1; i < n && same; i++)
            same = memcmp(&got[i], &got[0], sizeof *got) == 0;
        CHECK(same, "%s %s: one argument gives different values by position", fc->expr, tn);
    }
    free(x);
    free(y);
    free(got);
    free(got2);
    free_case(&one);
    free_case(&two);
}

/* softmax(x), logsoftmax(x) and logsumexp(x) (exponentials a vector at a
 * time, sums in double) against long double, relative error ≤ 1e-13 (f64)
 * or 1e-5 (f32) of the largest magnitude, at lengths across vectors and
 * blocks, arguments in [−30, 30] with some at ±700 (their exponentials
 * overflow and underflow unless shifted by the maximum). */
static void check_rowwise(nb_dtype dt) {
    const int f32 = dt == NB_F32;
    static const char *const exprs[3] = {"softmax(x)", "logsoftmax(x)", "[logsumexp(x)]"};
    static const int64_t lengths[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, 1000, 5003};
    for (int e = 0; e < 3; e++) {
        compiled c;
        const int made = compile_case(&c, exprs[e], dt, 1);
        CHECK(made, "%s: compile: %s", exprs[e], c.ctx ? nb_error(c.ctx) : "no context");
        int bad = 0;
        for (size_t L = 0; L < sizeof lengths / sizeof *lengths && made; L++) {
            const int64_t n = lengths[L];
            double *x = malloc((size_t)n * sizeof *x), *got = malloc((size_t)n * sizeof *got);
            for (int64_t i = 0; x && i < n; i++) {
                const double v = i % 11 == 3 ? 700 : i % 13 == 5 ? -700 : uniform(-30, 30);
                x[i] = f32 ? (double)(float)v : v;
            }
            if (!x || !got || !run_case(&c, n, x, x, 0, got)) {
                CHECK(0, "%s n=%lld: run: %s", exprs[e], (long long)n, nb_program_error(c.p));
                free(x), free(got);
                break;
            }
            ld m = x[0], s = 0;
            for (int64_t i = 1; i < n; i++)
                m = x[i] > m ? x[i] : m;
            for (int64_t i = 0; i < n; i++)
                s += expl((ld)x[i] - m);
            const ld lse = m + logl(s);
            const int64_t nout = e == 2 ? 1 : n;
            ld scale = 0;
            for (int64_t i = 0; i < nout; i++) {
                const ld want = e == 0 ? expl((ld)x[i] - lse) : e == 1 ? (ld)x[i] - lse : lse;
                scale = fabsl(want) > scale ? fabsl(want) : scale;
            }
            for (int64_t i = 0; i < nout; i++) {
                const ld want = e == 0 ? expl((ld)x[i] - lse) : e == 1 ? (ld)x[i] - lse : lse;
                if (!(fabsl((ld)got[i] - want) <= scale * (f32 ? 1e-5L : 1e-13L)) && bad++ < 3)
                    fprintf(stderr, "%s %s n=%lld [%lld]: %.17g, exact %.17Lg\n", exprs[e], f32 ? "f32" : "f64",
                            (long long)n, (long long)i, got[i], want);
            }
            free(x);
            free(got);
        }
        CHECK(bad == 0, "%s %s: %d values off", exprs[e], f32 ? "f32" : "f64", bad);
        free_case(&c);
    }
}

/* norm2 and norm1 of a vector: values as above against long double, and the
 * edges: entries near the largest and smallest doubles (no overflow or
 * underflow of the squares), zeros, a NaN or an infinity anywhere (in the
 * vector body or its tail). */
static void check_norms(void) {
    static const char *const exprs[2] = {"[norm2(x)]", "[norm1(x)]"};
    for (int e = 0; e < 2; e++) {
        compiled c;
        const int made = compile_case(&c, exprs[e], NB_F64, 1);
        CHECK(made, "%s: compile: %s", exprs[e], c.ctx ? nb_error(c.ctx) : "no context");
        for (int64_t n = 1; n <= 37 && made; n += 3) {
            double x[37], got[37];
            for (int kind = 0; kind < 6; kind++) {
                ld want2 = 0, want1 = 0;
                for (int64_t i = 0; i < n; i++) {
                    x[i] = kind == 0 ? uniform(-30, 30) : kind == 1 ? 1e300 * uniform(0.5, 1.5)
                                                        : kind == 2 ? -1e-300 * uniform(0.5, 1.5)
                                                                    : 0.0;
                    want2 += (ld)x[i] * (ld)x[i];
                    want1 += fabsl((ld)x[i]);
                }
                ld want = e == 0 ? sqrtl(want2) : want1;
                if (kind >= 4) { /* a NaN, then an infinity, at an index that moves */
                    x[(n * 7 + kind) % n] = kind == 4 ? NAN : -INFINITY;
                    want = kind == 4 ? (ld)NAN : (ld)INFINITY;
                }
                const int ran = run_case(&c, n, x, x, 0, got);
                CHECK(ran && close_enough(got[0], want, 0), "%s n=%lld kind %d: %.17g, exact %.17Lg", exprs[e],
                      (long long)n, kind, got[0], want);
            }
        }
        free_case(&c);
    }
}

int main(void) {
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        check_function(&cases[k], NB_F64);
        check_function(&cases[k], NB_F32);
    }
    check_rowwise(NB_F64);
    check_rowwise(NB_F32);
    check_norms();
    TEST_MAIN_END();
}
