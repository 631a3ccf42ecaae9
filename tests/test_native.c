/* Native code for row-fused regions (NB_COMPILE_NATIVE, src/native.c):
 * models of the shape u = X·w → element-wise ops on the rows → Xᵀ·g compile
 * to one generated row loop (the plan's description says so), and its values
 * and gradients equal nb_eval's and central differences of the compiled f,
 * in f64 and f32, with one and two threads, for widths with every tail
 * (whole vectors, half and quarter vectors, single values; n = 1), gradients
 * in registers and in memory (n = 300: four rows a step), row counts that are
 * not a multiple of the step.  Also: values the region makes and the program
 * returns (stored from the loop), sizes bound again (new code), and a
 * missing compiler (the program runs by tiles and says why), and a
 * gradient-descent step compiled as one loop.
 * Usage: test_native [seed]. */
#include "nabla.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rng_state;
static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(rng_state >> 11) / 9007199254740992.0;
}

typedef struct {
    const char *name, *f, *wrt; /* wrt: comma-separated parameters */
    int smooth;                 /* differentiable everywhere: checked against central differences too */
    const char *libm; /* NULL: runs as one native loop; else the libm operation that keeps it on tiles */
} model;

/* Every model reads X: matrix(N, n), w: vector(n), y: vector(N), b: scalar;
 * v: vector(n) for the two-product one. */
static const model models[] = {
    {"neuron", "sum((y - max(0, X*w + b)).^2)/N", "w,b", 0, NULL},
    {"least squares", "sum((X*w - y).^2)", "w", 1, NULL},
    {"hinge", "sum(max(0, 1 - y.*(X*w + b)))", "w,b", 0, NULL},
    {"least absolute deviations", "sum(abs(X*w - y))/N + b^2", "w,b", 0, NULL},
    {"pseudo-Huber", "sum(sqrt(1 + (X*w + b - y).^2) - 1)", "w,b", 1, NULL},
    {"clipped", "sum(min(1, max(-1, X*w - y)).^2)", "w", 0, NULL},
    {"two products (arithmetic)", "sum((X*w).*(X*v) ./ (1 + y.^2))", "w,v", 1, NULL},
    {"logistic regression", "sum(log(1 + exp(-y.*(X*w))))", "w", 1, "SOFTPLUS"},
    {"tanh regression", "sum((tanh(X*w) - y).^2)/2", "w", 1, "TANH"},
    {"softplus and sigmoid", "sum(softplus(X*w + b) - y.*sigmoid(X*w))", "w,b", 1, "SOFTPLUS"},
    {"two products", "sum(sin(X*w).*cos(X*v))", "w,v", 1, "SINCOS"},
};

#define MAXP 3
static const char *const input_names[] = {"X", "w", "y", "b", "v"};
#define NIN 5

typedef struct {
    int64_t N, n;
    double *val[NIN]; /* f64 values of the inputs */
    int64_t len[NIN];
} point;

static void make_point(nb_ctx *ctx, point *pt, int64_t N, int64_t n) {
    pt->N = N;
    pt->n = n;
    const int64_t lens[NIN] = {N * n, n, N, 1, n};
    for (int i = 0; i < NIN; i++) {
        pt->len[i] = lens[i];
        pt->val[i] = malloc((size_t)lens[i] * sizeof(double));
        for (int64_t e = 0; e < lens[i]; e++)
            pt->val[i][e] = uniform(-1, 1);
        const int64_t rows = i == 0 ? N : i == 3 ? 1 : lens[i], cols = i == 0 ? n : 1;
        nb_set_value(ctx, input_names[i], rows, cols, pt->val[i]);
    }
}

static void free_point(point *pt) {
    for (int i = 0; i < NIN; i++)
        free(pt->val[i]);
}

/* Runs p (inputs X, w, y, b, v) at pt converted to its dtype; outputs as f64
 * into out[k] (len[k] entries each).  Returns the run's status. */
static int run_at(nb_program *p, int f32, const point *pt, size_t nout, double **out, const int64_t *len) {
    const size_t rs = f32 ? sizeof(float) : sizeof(double);
    void *in[NIN], *ob[MAXP + 1];
    for (int i = 0; i < NIN; i++) {
        in[i] = malloc((size_t)pt->len[i] * rs);
        for (int64_t e = 0; e < pt->len[i]; e++)
            if (f32)
                ((float *)in[i])[e] = (float)pt->val[i][e];
            else
                ((double *)in[i])[e] = pt->val[i][e];
    }
    for (size_t k = 0; k < nout; k++)
        ob[k] = calloc((size_t)len[k], rs);
    int rc = nb_program_run(p, (const void *const *)in, ob);
    for (size_t k = 0; k < nout; k++) {
        for (int64_t e = 0; e < len[k]; e++)
            out[k][e] = f32 ? (double)((float *)ob[k])[e] : ((double *)ob[k])[e];
        free(ob[k]);
    }
    for (int i = 0; i < NIN; i++)
        free(in[i]);
    return rc;
}

static int param_index(const char *name) {
    for (int i = 0; i < NIN; i++)
        if (strcmp(input_names[i], name) == 0) return i;
    return -1;
}

/* One model at one size: fused, and equal to the references. */
static void check_model(const model *m, int64_t N, int64_t n, int *fired) {
    nb_ctx *ctx = nb_ctx_new();
    CHECK(nb_declare(ctx, "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar; v: vector(n)") == 0,
          "declare: %s", nb_error(ctx));
    nb_expr *f = nb_parse(ctx, m->f);
    CHECK(f != NULL, "%s: parse: %s", m->name, nb_error(ctx));
    if (!f) {
        nb_ctx_free(ctx);
        return;
    }
    nb_expr *ins[NIN], *outs[1 + MAXP];
    int pidx[MAXP];
    size_t np = 0;
    for (int i = 0; i < NIN; i++)
        ins[i] = nb_lookup(ctx, input_names[i]);
    char wrt[32];
    snprintf(wrt, sizeof wrt, "%s", m->wrt);
    for (char *tok = strtok(wrt, ","); tok && np < MAXP; tok = strtok(NULL, ",")) {
        pidx[np] = param_index(tok);
        outs[1 + np] = nb_gradient(ctx, f, ins[pidx[np]]);
        np++;
    }
    outs[0] = f;
    point pt;
    make_point(ctx, &pt, N, n);
    /* references: nb_eval of f and of each gradient */
    nb_matrix ref[1 + MAXP];
    int64_t len[1 + MAXP];
    for (size_t k = 0; k <= np; k++) {
        CHECK(nb_eval(ctx, outs[k], &ref[k]) == 0, "%s: eval: %s", m->name, nb_error(ctx));
        len[k] = ref[k].rows * ref[k].cols;
    }
    for (int f32 = 0; f32 <= 1; f32++)
        for (int threads = 1; threads <= 2; threads++) {
            nb_program *p = nb_compile(ctx, 1 + np, outs, NIN, ins, f32 ? NB_F32 : NB_F64, NB_COMPILE_NATIVE);
            CHECK(p != NULL, "%s: compile: %s", m->name, nb_error(ctx));
            if (!p) continue;
            CHECK(nb_program_bind_dim(p, "N", N) == 0 && nb_program_bind_dim(p, "n", n) == 0 &&
                      nb_program_set_threads(p, threads) == 0,
                  "%s: bind: %s", m->name, nb_program_error(p));
            char *d = nb_program_describe(p);
            const int is_fused = d && strstr(d, "as one native row loop") != NULL;
            fired[m - models] |= is_fused;
            if (m->libm) {
                char why[96];
                snprintf(why, sizeof why, "no native code (%s per row is a libm call", m->libm);
                CHECK(!is_fused && d && strstr(d, why), "%s: not declined (%s):\n%s", m->name, why,
                      d ? d : "");
            }
            double *got[1 + MAXP];
            for (size_t k = 0; k <= np; k++)
                got[k] = malloc((size_t)len[k] * sizeof(double));
            CHECK(run_at(p, f32, &pt, 1 + np, got, len) == NB_OK, "%s: run: %s", m->name,
                  nb_program_error(p));
            const double tol = f32 ? 3e-3 : 1e-9;
            for (size_t k = 0; k <= np; k++) {
                double scale = 1, worst = 0;
                for (int64_t e = 0; e < len[k]; e++)
                    scale = fmax(scale, fabs(ref[k].data[e]));
                for (int64_t e = 0; e < len[k]; e++)
                    worst = fmax(worst, fabs(got[k][e] - ref[k].data[e]) / scale);
                CHECK(worst <= tol, "%s N=%lld n=%lld %s %d thread(s): output %zu off by %g (relative)%s%s",
                      m->name, (long long)N, (long long)n, f32 ? "f32" : "f64", threads, k, worst,
                      is_fused ? ", fused:\n" : "", is_fused ? d : "");
            }
            /* f64: each gradient entry against central differences of the
             * compiled f (not across a kink: the kinked models are checked
             * against nb_eval's exact gradient above) */
            if (!f32 && m->smooth)
                for (size_t k = 0; k < np; k++) {
                    double *x = pt.val[pidx[k]], *shifted[1 + MAXP];
                    for (size_t q = 0; q <= np; q++)
                        shifted[q] = malloc((size_t)len[q] * sizeof(double));
                    for (int64_t e = 0; e < len[1 + k] && e < 6; e++) {
                        const double x0 = x[e], h = 1e-6 * fmax(1, fabs(x0));
                        x[e] = x0 + h;
                        run_at(p, 0, &pt, 1 + np, shifted, len);
                        const double fp = shifted[0][0];
                        x[e] = x0 - h;
                        run_at(p, 0, &pt, 1 + np, shifted, len);
                        const double fm = shifted[0][0];
                        x[e] = x0;
                        const double fd = (fp - fm) / (2 * h), err = fabs(fd - got[1 + k][e]);
                        CHECK(err <= 1e-5 * fmax(1, fabs(fd)),
                              "%s N=%lld n=%lld: d/d%s[%lld] = %.12g, central %.12g", m->name, (long long)N,
                              (long long)n, input_names[pidx[k]], (long long)e, got[1 + k][e], fd);
                    }
                    for (size_t q = 0; q <= np; q++)
                        free(shifted[q]);
                }
            for (size_t k = 0; k <= np; k++)
                free(got[k]);
            free(d);
            nb_program_free(p);
        }
    for (size_t k = 0; k <= np; k++)
        nb_matrix_free(&ref[k]);
    free_point(&pt);
    nb_ctx_free(ctx);
}

static const char *const neuron_decls = "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar";
static const char *const neuron_cost = "sum((y - max(0, X*w + b)).^2)/N";

/* The neuron's cost and gradients, compiled native; NULL on failure. */
static nb_program *compile_neuron(nb_ctx *ctx, size_t nextra, nb_expr *const *extra) {
    nb_expr *f = nb_parse(ctx, neuron_cost), *ins[4], *outs[8];
    for (int i = 0; i < 4; i++)
        ins[i] = nb_lookup(ctx, input_names[i]);
    outs[0] = f;
    outs[1] = nb_gradient(ctx, f, ins[1]);
    outs[2] = nb_gradient(ctx, f, ins[3]);
    for (size_t k = 0; k < nextra; k++)
        outs[3 + k] = extra[k];
    return nb_compile(ctx, 3 + nextra, outs, 4, ins, NB_F64, NB_COMPILE_NATIVE);
}

/* Runs p on the context's values of its inputs ins[0..nin) and compares
 * each output with nb_eval of outs[k], within tol relative to max(1, |value|). */
static void check_against_eval_of(nb_ctx *ctx, nb_program *p, size_t nin, nb_expr *const *ins, size_t nout,
                                  nb_expr *const *outs, double tol, const char *what) {
    const void *in[8];
    nb_matrix v[8];
    for (size_t i = 0; i < nin; i++) {
        CHECK(nb_eval(ctx, ins[i], &v[i]) == 0, "%s: eval input %zu", what, i);
        in[i] = v[i].data;
    }
    void *out[8];
    nb_matrix ref[8];
    for (size_t k = 0; k < nout; k++) {
        CHECK(nb_eval(ctx, outs[k], &ref[k]) == 0, "%s: eval %zu", what, k);
        out[k] = calloc((size_t)(ref[k].rows * ref[k].cols), sizeof(double));
    }
    CHECK(nb_program_run(p, in, out) == NB_OK, "%s: run: %s", what, nb_program_error(p));
    for (size_t k = 0; k < nout; k++) {
        double worst = 0;
        for (int64_t e = 0; e < ref[k].rows * ref[k].cols; e++)
            worst = fmax(worst, fabs(((double *)out[k])[e] - ref[k].data[e]) / fmax(1, fabs(ref[k].data[e])));
        CHECK(worst <= tol, "%s: output %zu off by %g", what, k, worst);
        free(out[k]);
        nb_matrix_free(&ref[k]);
    }
    for (size_t i = 0; i < nin; i++)
        nb_matrix_free(&v[i]);
}

/* The same for the neuron's inputs X, w, y, b, within 1e-9. */
static void check_against_eval(nb_ctx *ctx, nb_program *p, size_t nout, nb_expr *const *outs,
                               const char *what) {
    nb_expr *ins[4];
    for (int i = 0; i < 4; i++)
        ins[i] = nb_lookup(ctx, input_names[i]);
    check_against_eval_of(ctx, p, 4, ins, nout, outs, 1e-9, what);
}

/* p (the neuron's cost and gradients, compile_neuron) runs as one native
 * loop or not (native), its listing says listing_has, and its values are
 * nb_eval's in ctx. */
static void check_neuron(nb_ctx *ctx, nb_program *p, int native, const char *listing_has, const char *what) {
    char *d = nb_program_describe(p);
    CHECK(d && strstr(d, listing_has) && !strstr(d, "native row loop") == !native, "%s: listing:\n%s", what,
          d ? d : "(null)");
    free(d);
    nb_expr *f = nb_parse(ctx, neuron_cost);
    nb_expr *outs[3] = {f, nb_gradient(ctx, f, nb_lookup(ctx, "w")),
                        nb_gradient(ctx, f, nb_lookup(ctx, "b"))};
    check_against_eval(ctx, p, 3, outs, what);
}

static void set_neuron_point(nb_ctx *ctx, int64_t N, int64_t n) {
    const int64_t lens[4] = {N * n, n, N, 1};
    for (int i = 0; i < 4; i++) {
        double *x = malloc((size_t)lens[i] * sizeof *x);
        for (int64_t e = 0; e < lens[i]; e++)
            x[e] = uniform(-1, 1);
        CHECK(nb_set_value(ctx, input_names[i],
                           i == 0   ? N
                           : i == 3 ? 1
                                    : lens[i],
                           i == 0 ? n : 1, x) == 0,
              "set %s: %s", input_names[i], nb_error(ctx));
        free(x);
    }
}

/* Without a working C compiler (none at NABLA_CC, or one that fails) the
 * program runs by tiles, says why (with the compiler's first line), and is
 * right. */
static void missing_compiler(void) {
    const char *saved = getenv("NABLA_CC");
    char *keep = saved ? strdup(saved) : NULL;
    char failing[] = "/tmp/nabla-test-cc-XXXXXX";
    const int fd = mkstemp(failing);
    static const char script[] = "#!/bin/sh\necho 'cc: error: out of luck' >&2\nexit 1\n";
    CHECK(fd >= 0 && write(fd, script, sizeof script - 1) == (ssize_t)(sizeof script - 1) && close(fd) == 0 &&
              chmod(failing, 0700) == 0,
          "a failing compiler script");
    const char *compilers[2] = {"/nonexistent/nabla-test-cc", failing};
    const char *whys[2] = {"could not be run (NABLA_CC)",
                           "failed on the generated code: cc: error: out of luck"};
    for (int c = 0; c < 2; c++) {
        setenv("NABLA_CC", compilers[c], 1);
        nb_ctx *ctx = nb_ctx_new();
        nb_declare(ctx, neuron_decls);
        set_neuron_point(ctx, 211, 17); /* sizes no other check uses: no code loaded for them yet */
        nb_program *p = compile_neuron(ctx, 0, NULL);
        CHECK(p != NULL, "compile without a compiler: %s", nb_error(ctx));
        if (p) check_neuron(ctx, p, 0, whys[c], compilers[c]);
        nb_program_free(p);
        nb_ctx_free(ctx);
    }
    unlink(failing);
    if (keep) {
        setenv("NABLA_CC", keep, 1);
        free(keep);
    } else {
        unsetenv("NABLA_CC");
    }
}

/* Values the region makes that the program returns (X·w + b, the residual
 * under a ReLU, and X·w itself: a product's result, which the compile
 * fuzzer found kept only inside the loop) are stored from the loop. */
static void returned_values(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, neuron_decls);
    set_neuron_point(ctx, 301, 24);
    nb_expr *extra[3] = {nb_parse(ctx, "X*w + b"), nb_parse(ctx, "y - max(0, X*w + b)"),
                         nb_parse(ctx, "X*w")};
    nb_program *p = compile_neuron(ctx, 3, extra);
    CHECK(p != NULL, "compile: %s", nb_error(ctx));
    if (p) {
        char *d = nb_program_describe(p);
        CHECK(d && strstr(d, "as one native row loop"), "returned values: no native loop:\n%s", d ? d : "");
        free(d);
        nb_expr *f = nb_parse(ctx, neuron_cost);
        nb_expr *outs[6] = {f,
                            nb_gradient(ctx, f, nb_lookup(ctx, "w")),
                            nb_gradient(ctx, f, nb_lookup(ctx, "b")),
                            extra[0],
                            extra[1],
                            extra[2]};
        check_against_eval(ctx, p, 6, outs, "returned values");
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* A gradient-descent step (the cost and p − η·∂C/∂p, as nabla fit compiles
 * it) is one row loop: the scale η·2/N of Xᵀ·g is computed before X·w, not
 * in the scalar group after the loop (which split the region in two). */
static void descent_step(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, neuron_decls);
    set_neuron_point(ctx, 500, 12);
    nb_expr *C = nb_parse(ctx, neuron_cost), *eta = nb_var(ctx, "eta", nb_scalar_type());
    double lr = 0.25;
    nb_set_value(ctx, "eta", 1, 1, &lr);
    nb_expr *w = nb_lookup(ctx, "w"), *b = nb_lookup(ctx, "b");
    nb_expr *outs[3] = {C, nb_sub(ctx, w, nb_mul(ctx, eta, nb_gradient(ctx, C, w))),
                        nb_sub(ctx, b, nb_mul(ctx, eta, nb_gradient(ctx, C, b)))};
    nb_expr *ins[5] = {nb_lookup(ctx, "X"), w, nb_lookup(ctx, "y"), b, eta};
    nb_program *p = nb_compile(ctx, 3, outs, 5, ins, NB_F64, NB_COMPILE_NATIVE);
    CHECK(p != NULL, "descent step: compile: %s", nb_error(ctx));
    if (p) {
        char *d = nb_program_describe(p);
        CHECK(d && strstr(d, "as one native row loop"), "descent step: no native loop:\n%s", d ? d : "");
        free(d);
        check_against_eval_of(ctx, p, 5, ins, 3, outs, 1e-12, "descent step");
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* Binding other sizes makes new code; binding the first ones again reuses
 * it.  The references come from a context of each size's own. */
static void sizes_bound_again(void) {
    static const int64_t sizes[][2] = {{50, 10}, {77, 31}, {50, 10}};
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, neuron_decls);
    nb_program *p = compile_neuron(ctx, 0, NULL);
    CHECK(p != NULL, "compile unbound: %s", nb_error(ctx));
    for (size_t s = 0; p && s < 3; s++) {
        nb_ctx *at = nb_ctx_new();
        nb_declare(at, neuron_decls);
        set_neuron_point(at, sizes[s][0], sizes[s][1]);
        CHECK(nb_program_bind_dim(p, "N", sizes[s][0]) == 0 && nb_program_bind_dim(p, "n", sizes[s][1]) == 0,
              "bind: %s", nb_program_error(p));
        check_neuron(at, p, 1, "as one native row loop", "bound again");
        nb_ctx_free(at);
    }
    nb_program_free(p);
    nb_ctx_free(ctx);
}

int main(int argc, char **argv) {
    rng_state = argc > 1 ? strtoull(argv[1], NULL, 10) : 12345;
    missing_compiler();
    returned_values();
    descent_step();
    sizes_bound_again();
    /* n = 1 and widths with every tail (f64 and f32: whole, half and quarter
     * vectors, single values); 300 columns: the gradients in memory (four
     * rows a step, 4001 leaves one over); the last two large enough that two
     * threads split the rows */
    static const int64_t sizes[][2] = {{1, 1}, {5, 3}, {130, 13}, {6000, 20}, {4001, 300}};
    int fired[sizeof models / sizeof *models] = {0};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t m = 0; m < sizeof models / sizeof *models; m++)
            check_model(&models[m], sizes[s][0], sizes[s][1], fired);
    for (size_t m = 0; m < sizeof models / sizeof *models; m++)
        CHECK(fired[m] == !models[m].libm, "%s: native row loop %s", models[m].name,
              fired[m] ? "where a libm operation should keep the tiles" : "never in the plan");
    TEST_MAIN_END();
}
