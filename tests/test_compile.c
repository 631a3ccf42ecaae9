/* Compiled programs against the reference evaluator (nb_eval).
 *
 *  - every docs/reference.md case: f and its derivative(s) compiled together;
 *  - random well-typed expressions over every operator (scalars, vectors,
 *    rows, matrices; symbolic and numeric dimensions), each with its
 *    gradients / Jacobians, some large enough to take the threaded paths;
 *  - the networks of the issue (neuron cost, a small MLP with softmax_xent);
 * each in f64 (tight tolerance) and f32 (loose), with 1 and 2 threads, with
 * structured and dense outputs; plus structure reports, API misuse (wrong
 * buffer sizes, unbound dimensions, NaN/Inf inputs, NULL buffers, ...) and a
 * check that a run allocates nothing.
 *
 * Usage: test_compile [seed [count]]. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "nabla.h"
#include "nb_internal.h"
#include "ops_table.h"
#include "random.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL64 1e-9
#define TOL32 3e-3

/* ---- allocation counting (glibc, not under sanitizers) -------------------- */
/* Every malloc/calloc/realloc of the process is counted, except those made
 * inside the BLAS: the test interposes cblas_sgemm/cblas_dgemm (the only
 * BLAS routines nabla calls), marks the thread as inside BLAS for the call and
 * forwards to the library's own routine.  OpenBLAS's small-matrix kernels on
 * AVX-512 CPUs (SkylakeX, Cooperlake) malloc a buffer for each product; those
 * are counted apart, so the test measures nabla's own allocations whatever
 * the BLAS underneath does. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define NB_TEST_NO_MALLOC_HOOK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__GLIBC__)
#define NB_TEST_NO_MALLOC_HOOK 1
#endif
#ifndef NB_TEST_NO_MALLOC_HOOK
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static _Atomic long alloc_count, blas_alloc_count;
static _Thread_local int inside_blas;
static void count_alloc(void) {
    if (inside_blas)
        blas_alloc_count++;
    else
        alloc_count++;
}
void *malloc(size_t n) {
    count_alloc();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    count_alloc();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    count_alloc();
    return __libc_realloc(p, n);
}
#ifdef NB_HAVE_CBLAS
#include <cblas.h>
#include <dlfcn.h>
#undef I /* complex.h, through cblas.h */
#define NB_INTERPOSE_GEMM(name, REAL)                                                                        \
    void name(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,          \
              const blasint m, const blasint n, const blasint k, const REAL alpha, const REAL *a,              \
              const blasint lda, const REAL *b, const blasint ldb, const REAL beta, REAL *c,                   \
              const blasint ldc) {                                                                           \
        typedef void (*fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint,    \
                           blasint, REAL, const REAL *, blasint, const REAL *, blasint, REAL, REAL *, blasint); \
        static _Atomic(fn) real;                                                                             \
        fn f = real;                                                                                         \
        if (!f) {                                                                                            \
            void *sym = dlsym(RTLD_NEXT, #name);                                                             \
            memcpy(&f, &sym, sizeof f);                                                                      \
            real = f;                                                                                        \
        }                                                                                                    \
        inside_blas++;                                                                                       \
        f(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);                                          \
        inside_blas--;                                                                                       \
    }
NB_INTERPOSE_GEMM(cblas_sgemm, float)
NB_INTERPOSE_GEMM(cblas_dgemm, double)
#endif
#define HAVE_ALLOC_COUNT 1
#else
static long alloc_count, blas_alloc_count;
#define HAVE_ALLOC_COUNT 0
#endif


static struct { long programs, runs, skipped_eval, skipped_compile, structured, threaded; } st;

/* How often each instruction kind / micro-operation appears in the compiled
 * programs (from nb_program_describe), to see what the tests cover. */
static const char *const coverage_words[] = {
    " group ",       " gemm ",       " gemv ",    " colsum ",     " rowsum ", " transpose ", " strided ",
    " gather ",      " dense_diag ", " softmax ", " logsoftmax ", " xent ",   "rowwise",     "region:",
    "2 thread(s)\n", "threads=2",    "init",      "row:",         "col:",     "acc",         "= COPY",
    "= NEG",         "= EXP",        "= LOG",     "= SIN",        "= COS",    "= TAN ",      "= TANH",
    "= SIGMOID",     "= ABS",        "= SIGN",    "= SQRT",       "= SQUARE", "= RECIP",     "= ADD",
    "= SUB",         "= MUL",        "= DIV",     "= POW",        "= MAX",    "= MIN",       "= GT",
    "= GE",          "= LT",         "= LE"};
static long coverage[sizeof coverage_words / sizeof *coverage_words];

static void count_coverage(const nb_program *p) {
    char *d = nb_program_describe(p);
    if (!d) return;
    for (size_t w = 0; w < sizeof coverage_words / sizeof *coverage_words; w++)
        for (const char *q = strstr(d, coverage_words[w]); q; q = strstr(q + 1, coverage_words[w]))
            coverage[w]++;
    free(d);
}

/* ---- comparing a compiled program with nb_eval ----------------------------- */
/* Values of the program's inputs, taken from the context's bindings. */
static const nb_matrix *bound_value(nb_ctx *ctx, const nb_expr *v) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (ctx->vars[i].var == v && ctx->vars[i].value.data) return &ctx->vars[i].value;
    return NULL;
}

typedef struct {
    int threads_big; /* also run with 2 threads */
    int quiet;
} check_opts;

/* Compiles outs over ins in f64 and f32, 1 and 2 threads, structured and
 * dense, runs each at the context's bound values and compares with nb_eval.
 * Returns the number of failures (0 when the reference does not evaluate). */
static int check_program(nb_ctx *ctx, const char *label, size_t nout, nb_expr *const *outs, size_t nin,
                         nb_expr *const *ins) {
    nb_matrix ref[8];
    int failures = 0;
    if (nout > 8) return 0;
    for (size_t k = 0; k < nout; k++) {
        if (nb_eval(ctx, outs[k], &ref[k])) {
            for (size_t j = 0; j < k; j++)
                nb_matrix_free(&ref[j]);
            st.skipped_eval++;
            return 0;
        }
    }
    static const int configs[][3] = {/* dtype, threads, flags */
                                     {NB_F64, 1, 0},
                                     {NB_F64, 2, 0},
                                     {NB_F64, 1, NB_COMPILE_DENSE},
                                     {NB_F32, 1, 0},
                                     {NB_F32, 2, NB_COMPILE_DENSE}};
    for (size_t cfg = 0; cfg < sizeof configs / sizeof *configs; cfg++) {
        nb_dtype dt = (nb_dtype)configs[cfg][0];
        int threads = configs[cfg][1];
        unsigned flags = (unsigned)configs[cfg][2];
        size_t rs = dt == NB_F64 ? sizeof(double) : sizeof(float);
        nb_program *p = nb_compile(ctx, nout, outs, nin, ins, dt, flags);
        if (!p) {
            CHECK(0, "%s: compile failed: %s", label, nb_error(ctx));
            failures++;
            break;
        }
        st.programs++;
        void *inb[16] = {0}, *outb[8] = {0}, *dense = NULL;
        size_t insz[16], outsz[8];
        int ok = nin <= 16;
        for (size_t i = 0; i < nin && ok; i++) {
            const nb_matrix *m = bound_value(ctx, ins[i]);
            if (!m) {
                ok = 0;
                break;
            }
            insz[i] = (size_t)(m->rows * m->cols);
            inb[i] = malloc(insz[i] * rs);
            for (size_t e = 0; e < insz[i]; e++) {
                if (dt == NB_F64)
                    ((double *)inb[i])[e] = m->data[e];
                else
                    ((float *)inb[i])[e] = (float)m->data[e];
            }
        }
        CHECK(ok, "%s: an input has no value", label);
        for (size_t k = 0; k < nout && ok; k++) {
            outsz[k] = (size_t)nb_program_output_size(p, k);
            outb[k] = calloc(outsz[k] ? outsz[k] : 1, rs);
            if (nb_program_output_structure(p, k) != NB_STRUCT_DENSE) st.structured++;
            if (flags & NB_COMPILE_DENSE)
                CHECK(nb_program_output_structure(p, k) == NB_STRUCT_DENSE, "%s: dense flag ignored", label);
        }
        int rc = ok ? nb_program_set_threads(p, threads) : -1;
        if (ok) CHECK(rc == NB_OK, "%s: set_threads: %s", label, nb_program_error(p));
        if (ok && rc == NB_OK) {
            /* run twice: the second run must see the same results */
            for (int rep = 0; rep < 2 && ok; rep++) {
                rc = nb_program_run_sized(p, (const void *const *)inb, insz, outb, outsz);
                st.runs++;
                if (rc != NB_OK) {
                    CHECK(0, "%s: run failed (%d): %s", label, rc, nb_program_error(p));
                    failures++;
                    ok = 0;
                }
            }
            if (threads > 1) st.threaded++;
            count_coverage(p);
        }
        for (size_t k = 0; k < nout && ok; k++) {
            int64_t r, c;
            nb_program_output_shape(p, k, &r, &c);
            if (r != ref[k].rows || c != ref[k].cols) {
                CHECK(0, "%s: output %zu shape %lldx%lld, reference %lldx%lld", label, k, (long long)r,
                      (long long)c, (long long)ref[k].rows, (long long)ref[k].cols);
                failures++;
                continue;
            }
            free(dense);
            dense = malloc((size_t)(r * c) * rs);
            nb_program_expand_output(p, k, outb[k], dense);
            double scale = 1, worst = 0;
            int64_t at = -1;
            for (int64_t e = 0; e < r * c; e++)
                scale = fmax(scale, fabs(ref[k].data[e]));
            for (int64_t e = 0; e < r * c; e++) {
                double got = dt == NB_F64 ? ((double *)dense)[e] : (double)((float *)dense)[e];
                double err = fabs(got - ref[k].data[e]) / scale;
                if (!(err <= worst)) {
                    worst = err;
                    at = e;
                }
            }
            double tol = dt == NB_F64 ? TOL64 : TOL32;
            if (!(worst <= tol)) {
                double got = dt == NB_F64 ? ((double *)dense)[at] : (double)((float *)dense)[at];
                CHECK(0, "%s: %s %d thread(s)%s: output %zu entry %lld: got %.17g, reference %.17g", label,
                      dt == NB_F64 ? "f64" : "f32", threads, flags ? " dense" : "", k, (long long)at, got,
                      ref[k].data[at]);
                char *d = nb_program_describe(p);
                fprintf(stderr, "%s", d ? d : "");
                free(d);
                failures++;
            } else {
                CHECK(1, "ok");
            }
        }
        free(dense);
        dense = NULL;
        for (size_t i = 0; i < nin; i++)
            free(inb[i]);
        for (size_t k = 0; k < nout; k++)
            free(outb[k]);
        nb_program_free(p);
    }
    for (size_t k = 0; k < nout; k++)
        nb_matrix_free(&ref[k]);
    return failures;
}

/* Every variable f uses, in id order. */
static size_t variables_of(nb_ctx *ctx, const nb_expr *f, nb_expr **vars, size_t max) {
    size_t n = (size_t)f->id + 1, nv = 0;
    uint8_t *seen = calloc(n, 1);
    seen[f->id] = 1;
    for (size_t id = n; id-- > 0;) {
        if (!seen[id]) continue;
        nb_node *e = ctx->nodes[id];
        if (e->op == NB_OP_VAR && nv < max) vars[nv++] = e;
        for (size_t k = 0; k < e->nargs; k++)
            seen[e->args[k]->id] = 1;
    }
    free(seen);
    return nv;
}

/* ---- docs/reference.md ------------------------------------------------------ */
typedef struct {
    const char *decls, *expr, *wrt;
} refcase;

static const refcase reference_cases[] = {
    {"", "3*x^2*y", "x,y"},
    {"", "2*x + y^8", "x,y"},
    {"", "[3*x^2*y, 2*x + y^8]", "x,y"},
    {"", "99 + 0*x", "x"},
    {"", "3*x", "x"},
    {"", "x^3", "x"},
    {"", "x^2 + 3*x", "x"},
    {"", "x^2 - 3*x", "x"},
    {"", "x^2*x", "x"},
    {"", "ln(x^2)", "x"},
    {"", "9*(x + x^2)", "x"},
    {"", "sin(x^2)", "x"},
    {"", "ln(sin(x^3)^2)", "x"},
    {"", "x + x^2", "x"},
    {"", "sin(x + x^2)", "x"},
    {"", "[ln(x^2), sin(3*x)]", "x"},
    {"w, x: vector(n); z: scalar", "x", "x"},
    {"w, x: vector(n); z: scalar", "w + x", "w"},
    {"w, x: vector(n); z: scalar", "w + x", "x"},
    {"w, x: vector(n); z: scalar", "w - x", "w"},
    {"w, x: vector(n); z: scalar", "w - x", "x"},
    {"w, x: vector(n); z: scalar", "w .* x", "w"},
    {"w, x: vector(n); z: scalar", "w .* x", "x"},
    {"w, x: vector(n); z: scalar", "w ./ x", "w"},
    {"w, x: vector(n); z: scalar", "w ./ x", "x"},
    {"w, x: vector(n); z: scalar", "x + z", "x"},
    {"w, x: vector(n); z: scalar", "x + z", "z"},
    {"w, x: vector(n); z: scalar", "x*z", "x"},
    {"w, x: vector(n); z: scalar", "x*z", "z"},
    {"w, x: vector(n); z: scalar", "sum(x)", "x"},
    {"w, x: vector(n); z: scalar", "sum(x*z)", "x"},
    {"w, x: vector(n); z: scalar", "sum(x*z)", "z"},
    {"w, x: vector(n); z: scalar", "dot(w, x)", "w"},
    {"w, x: vector(n); z: scalar", "dot(w, x)", "x"},
    {"w, x: vector(n); z: scalar", "exp(sin(x))", "x"},
    {"w, x: vector(n); z: scalar", "max(0, x)", "x"},
    {"w, x: vector(n); b: scalar", "dot(w, x) + b", "w"},
    {"w, x: vector(n); b: scalar", "dot(w, x) + b", "b"},
    {"w, x: vector(n); b: scalar", "max(0, dot(w, x) + b)", "w"},
    {"w, x: vector(n); b: scalar", "max(0, dot(w, x) + b)", "b"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "sum((y - max(0, X*w + b)).^2)/N", "w"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "sum((y - max(0, X*w + b)).^2)/N", "b"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "u = X*w + b; v = y - max(0, u); sum(v.^2)/N",
     "w"},
};

static void test_reference(uint64_t seed) {
    for (size_t i = 0; i < sizeof reference_cases / sizeof *reference_cases; i++) {
        const refcase *rc = &reference_cases[i];
        nb_ctx *ctx = nb_ctx_new();
        char label[160];
        snprintf(label, sizeof label, "REFERENCE %s w.r.t. %s", rc->expr, rc->wrt);
        if (rc->decls[0] && nb_declare(ctx, rc->decls)) {
            CHECK(0, "%s: declare: %s", label, nb_error(ctx));
            nb_ctx_free(ctx);
            continue;
        }
        nb_expr *f = nb_parse(ctx, rc->expr);
        if (!f) {
            CHECK(0, "%s: parse: %s", label, nb_error(ctx));
            nb_ctx_free(ctx);
            continue;
        }
        nb_expr *wrt[4];
        size_t nw = 0;
        char names[64];
        snprintf(names, sizeof names, "%s", rc->wrt);
        for (char *t = strtok(names, ","); t && nw < 4; t = strtok(NULL, ","))
            wrt[nw++] = nb_lookup(ctx, t);
        nb_expr *J = nb_derivative(ctx, f, nw, wrt, NB_NUMERATOR);
        nb_expr *Jd = nb_derivative(ctx, f, nw, wrt, NB_DENOMINATOR);
        CHECK(J && Jd, "%s: derivative: %s", label, nb_error(ctx));
        if (J && Jd) {
            uint64_t rng = seed + i;
            nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 5);
            nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 7);
            nb_expr *outs[3] = {f, J, Jd};
            nb_expr *vars[16];
            size_t nv = variables_of(ctx, f, vars, 16);
            for (size_t k = 0; k < nw; k++) {
                size_t j = 0;
                while (j < nv && vars[j] != wrt[k])
                    j++;
                if (j == nv) vars[nv++] = wrt[k];
            }
            CHECK(nb_randomize(ctx, f, &rng, -2, 2) == 0, "%s: randomize: %s", label, nb_error(ctx));
            for (size_t k = 0; k < nw; k++)
                nb_randomize(ctx, wrt[k], &rng, -2, 2);
            check_program(ctx, label, 3, outs, nv, vars);
        }
        nb_ctx_free(ctx);
    }
}

/* ---- random expressions --------------------------------------------------------- */
enum { K_S, K_V, K_R, K_M };

typedef struct {
    nb_ctx *ctx;
    uint64_t *rng;
    nb_dim dims[3]; /* n, m symbolic; a number */
    nb_expr *vars[16];
    size_t nvars;
} gen;

static nb_expr *gen_expr(gen *g, int kind, nb_dim r, nb_dim c, int depth);

static nb_dim pick_dim(gen *g) {
    return g->dims[rnd(g->rng, 3)];
}

/* A variable of this type (created on first use). */
static nb_expr *variable(gen *g, int kind, nb_dim r, nb_dim c) {
    for (size_t i = 0; i < g->nvars; i++) {
        nb_type t = nb_type_of(g->vars[i]);
        if ((int)t.kind == (kind == K_S   ? NB_SCALAR
                            : kind == K_V ? NB_VECTOR
                            : kind == K_R ? NB_ROW
                                          : NB_MATRIX) &&
            t.rows == r && t.cols == c && rnd(g->rng, 3))
            return g->vars[i];
    }
    if (g->nvars >= 16 || kind == K_R) return NULL;
    char name[16];
    snprintf(name, sizeof name, "v%zu", g->nvars);
    nb_type t = kind == K_S ? nb_scalar_type() : kind == K_V ? nb_vector_type(r) : nb_matrix_type(r, c);
    nb_expr *v = nb_var(g->ctx, name, t);
    if (v) g->vars[g->nvars++] = v;
    return v;
}

static nb_expr *positive(gen *g, nb_expr *e) { /* e.^2 + 1 > 0 */
    return nb_add(g->ctx, nb_pow(g->ctx, e, nb_num(g->ctx, 2)), nb_num(g->ctx, 1));
}

/* An element-wise function of the registry (tests/ops_table.h: every
 * EW_UNARY / EW_BINARY row of ops.def with a builder), its argument kept in
 * the function's domain by the row's flags, or one of the arithmetic forms
 * the compiler lowers specially (relu, powers, square roots, division). */
static nb_expr *elementwise(gen *g, int kind, nb_dim r, nb_dim c, int depth) {
    nb_ctx *ctx = g->ctx;
    nb_expr *a = gen_expr(g, kind, r, c, depth - 1);
    switch (rnd(g->rng, 12)) {
    case 0:
        return nb_relu(ctx, a);
    case 1:
        return nb_pow(ctx, a, nb_num(ctx, 3));
    case 2:
        return nb_sqrt(ctx, positive(g, a));
    case 3:
        return nb_div(ctx, a, positive(g, gen_expr(g, kind, r, c, depth - 1)));
    case 4:
        return nb_pow(ctx, positive(g, a), nb_num(ctx, -0.5));
    case 5:
    case 6:
    case 7: { /* a binary row: max, min, or an indicator times its operand (1[a > 0.1] ⊙ a) */
        int op = test_op_pick(NB_CLASS_EW_BINARY, rnd(g->rng, 1000));
        if (test_ops[op].flags & NB_F_INDICATOR) return nb_mul(ctx, test_op_apply(ctx, op, a, nb_num(ctx, 0.1)), a);
        return test_op_apply(ctx, op, a, gen_expr(g, kind, r, c, depth - 1));
    }
    default: {
        int op = test_op_pick(NB_CLASS_EW_UNARY, rnd(g->rng, 1000));
        unsigned flags = test_ops[op].flags;
        if (flags & NB_F_POSITIVE_ARG) a = positive(g, a);
        if (flags & NB_F_SMALL_ARG) a = nb_mul(ctx, nb_num(ctx, 0.3), nb_tanh(ctx, a));
        return test_op_apply(ctx, op, a, NULL);
    }
    }
}

static nb_expr *binary(gen *g, int kind, nb_dim r, nb_dim c, int depth) {
    nb_ctx *ctx = g->ctx;
    nb_expr *a = gen_expr(g, kind, r, c, depth - 1);
    nb_expr *b = rnd(g->rng, 4) == 0 ? gen_expr(g, K_S, 1, 1, depth - 1) : gen_expr(g, kind, r, c, depth - 1);
    if (rnd(g->rng, 2)) {
        nb_expr *t = a;
        a = b;
        b = t;
    }
    switch (rnd(g->rng, 5)) {
    case 0:
        return nb_add(ctx, a, b);
    case 1:
        return nb_sub(ctx, a, b);
    case 2:
        return nb_mul(ctx, a, b);
    case 3: /* a binary row of the registry, with scalar expansion */
        return test_op_apply(ctx, test_op_pick(NB_CLASS_EW_BINARY, rnd(g->rng, 1000)), a, b);
    default:
        return nb_add(ctx, nb_mul(ctx, nb_num(ctx, -1.5), a), b);
    }
}

static nb_expr *gen_expr(gen *g, int kind, nb_dim r, nb_dim c, int depth) {
    nb_ctx *ctx = g->ctx;
    if (depth <= 0 || rnd(g->rng, 6) == 0) {
        if (kind == K_S && rnd(g->rng, 4) == 0) return nb_num(ctx, uniform(g->rng, -2, 2));
        if (kind == K_R) return nb_transpose(ctx, gen_expr(g, K_V, c, 1, 0));
        nb_expr *v = variable(g, kind, r, c);
        if (v) return v;
        depth = 1;
    }
    int choice = rnd(g->rng, 10);
    if (choice < 2) return elementwise(g, kind, r, c, depth);
    if (choice < 4) return binary(g, kind, r, c, depth);
    nb_dim k = pick_dim(g);
    switch (kind) {
    case K_S:
        switch (rnd(g->rng, 6)) {
        case 0:
            return nb_sum(ctx, gen_expr(g, K_V, pick_dim(g), 1, depth - 1));
        case 1:
            return nb_dot(ctx, gen_expr(g, K_V, k, 1, depth - 1), gen_expr(g, K_V, k, 1, depth - 1));
        case 2:
            return nb_sum(ctx, gen_expr(g, K_M, pick_dim(g), k, depth - 1));
        case 3:
            return nb_matmul(ctx, gen_expr(g, K_R, 1, k, depth - 1), gen_expr(g, K_V, k, 1, depth - 1));
        case 4: {
            nb_dim rr = pick_dim(g);
            return nb_softmax_xent(ctx, gen_expr(g, K_M, rr, k, depth - 1),
                                   gen_expr(g, K_M, rr, k, depth - 1));
        }
        default:
            return nb_mean(ctx, gen_expr(g, K_V, k, 1, depth - 1));
        }
    case K_V:
        switch (rnd(g->rng, 6)) {
        case 0:
            return nb_matmul(ctx, gen_expr(g, K_M, r, k, depth - 1), gen_expr(g, K_V, k, 1, depth - 1));
        case 1:
            return nb_matmul(ctx, nb_diag(ctx, gen_expr(g, K_V, r, 1, depth - 1)),
                             gen_expr(g, K_V, r, 1, depth - 1));
        case 2:
            return nb_transpose(ctx, gen_expr(g, K_R, 1, r, depth - 1));
        case 3:
            return nb_matmul(ctx, nb_transpose(ctx, gen_expr(g, K_M, k, r, depth - 1)),
                             gen_expr(g, K_V, k, 1, depth - 1));
        case 4:
            if (r > 0 && r <= 4) {
                nb_expr *e[4];
                for (int i = 0; i < r; i++)
                    e[i] = gen_expr(g, K_S, 1, 1, depth - 1);
                return nb_vector_lit(ctx, (size_t)r, e);
            }
            /* fall through */
        default:
            return nb_mul(ctx, gen_expr(g, K_S, 1, 1, depth - 1), gen_expr(g, K_V, r, 1, depth - 1));
        }
    case K_R:
        switch (rnd(g->rng, 3)) {
        case 0:
            return nb_matmul(ctx, gen_expr(g, K_R, 1, k, depth - 1), gen_expr(g, K_M, k, c, depth - 1));
        case 1:
            return nb_transpose(ctx, gen_expr(g, K_V, c, 1, depth - 1));
        default:
            return nb_matmul(ctx, gen_expr(g, K_R, 1, c, depth - 1),
                             nb_diag(ctx, gen_expr(g, K_V, c, 1, depth - 1)));
        }
    default:
        switch (rnd(g->rng, 10)) {
        case 0:
            return nb_matmul(ctx, gen_expr(g, K_M, r, k, depth - 1), gen_expr(g, K_M, k, c, depth - 1));
        case 1:
            return nb_transpose(ctx, gen_expr(g, K_M, c, r, depth - 1));
        case 2:
            return nb_add(ctx, gen_expr(g, K_M, r, c, depth - 1),
                          nb_transpose(ctx, gen_expr(g, K_V, c, 1, depth - 1)));
        case 3:
            return nb_matmul(ctx, gen_expr(g, K_V, r, 1, depth - 1), gen_expr(g, K_R, 1, c, depth - 1));
        case 4:
            if (r == c) return nb_diag(ctx, gen_expr(g, K_V, r, 1, depth - 1));
            return nb_softmax(ctx, gen_expr(g, K_M, r, c, depth - 1));
        case 5:
            if (r == c)
                return nb_add(ctx, nb_mul(ctx, gen_expr(g, K_S, 1, 1, depth - 1), nb_identity(ctx, r)),
                              gen_expr(g, K_M, r, c, depth - 1));
            return nb_logsoftmax(ctx, gen_expr(g, K_M, r, c, depth - 1));
        case 6:
            return nb_matmul(ctx, nb_diag(ctx, gen_expr(g, K_V, r, 1, depth - 1)),
                             gen_expr(g, K_M, r, c, depth - 1));
        case 7:
            return nb_matmul(ctx, gen_expr(g, K_M, r, c, depth - 1),
                             nb_diag(ctx, gen_expr(g, K_V, c, 1, depth - 1)));
        case 8:
            if (r > 0 && c > 0 && r * c <= 9) {
                nb_expr *e[9];
                for (int i = 0; i < r * c; i++)
                    e[i] = gen_expr(g, K_S, 1, 1, depth - 1);
                return nb_matrix_lit(ctx, (size_t)r, (size_t)c, e);
            }
            /* fall through */
        default:
            return nb_mul(ctx, gen_expr(g, K_S, 1, 1, depth - 1), gen_expr(g, K_M, r, c, depth - 1));
        }
    }
}

static void test_random(uint64_t seed, int count) {
    for (int t = 0; t < count; t++) {
        uint64_t rng = seed * 7919 + (uint64_t)t;
        nb_ctx *ctx = nb_ctx_new();
        gen g = {ctx, &rng, {0, 0, 0}, {0}, 0};
        int big = t % 10 == 9; /* large sizes: threaded paths */
        g.dims[0] = nb_dim_symbol(ctx, "n");
        g.dims[1] = nb_dim_symbol(ctx, "m");
        g.dims[2] = 2 + rnd(&rng, 3);
        nb_bind_dim(ctx, g.dims[0], big ? 150 + rnd(&rng, 60) : 1 + rnd(&rng, 6));
        nb_bind_dim(ctx, g.dims[1], big ? 100 + rnd(&rng, 60) : 1 + rnd(&rng, 6));
        int kind = rnd(&rng, 4);
        nb_dim r = kind == K_S || kind == K_R ? 1 : pick_dim(&g);
        nb_dim c = kind == K_M || kind == K_R ? pick_dim(&g) : 1;
        nb_expr *f = gen_expr(&g, kind, r, c, big ? 3 : 2 + rnd(&rng, 3));
        char label[96];
        snprintf(label, sizeof label, "random #%d (seed %llu)", t, (unsigned long long)seed);
        if (!f) {
            CHECK(0, "%s: generator built nothing: %s", label, nb_error(ctx));
            nb_ctx_free(ctx);
            continue;
        }
        /* inputs: every variable (some unused) with values */
        for (size_t i = 0; i < g.nvars; i++)
            nb_randomize(ctx, g.vars[i], &rng, -2, 2);
        nb_expr *outs[8] = {f};
        size_t nout = 1;
        nb_expr *used[16];
        size_t nu = variables_of(ctx, f, used, 16);
        for (size_t i = 0; i < nu && nout < 4; i++) {
            nb_type vt = nb_type_of(used[i]);
            nb_expr *d = NULL;
            if (kind == K_S)
                d = nb_gradient(ctx, f, used[i]);
            else if (kind == K_V && vt.kind != NB_MATRIX)
                d = nb_derivative(ctx, f, 1, &used[i], NB_NUMERATOR);
            if (d)
                outs[nout++] = d;
            else
                nb_clear_error(ctx);
        }
        if (kind == K_S && nu > 0) { /* a JVP as well: forward-mode structure */
            nb_type vt = nb_type_of(used[0]);
            if (vt.kind == NB_VECTOR) {
                nb_expr *tv = nb_var(ctx, "tangent", vt);
                if (tv) {
                    nb_randomize(ctx, tv, &rng, -1, 1);
                    nb_expr *j = nb_jvp(ctx, f, used[0], tv);
                    if (j) {
                        outs[nout++] = j;
                        g.vars[g.nvars++] = tv;
                    } else
                        nb_clear_error(ctx);
                }
            }
        }
        check_program(ctx, label, nout, outs, g.nvars, g.vars);
        nb_ctx_free(ctx);
    }
}

/* ---- networks --------------------------------------------------------------------- */
static void test_networks(uint64_t seed) {
    /* the neuron, large enough for two threads */
    {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed;
        nb_declare(ctx, "w: vector(n); X: matrix(N, n); y: vector(N); b: scalar");
        nb_expr *C = nb_parse(ctx, "u = X*w + b; v = y - max(0, u); sum(v.^2)/N");
        nb_expr *w = nb_lookup(ctx, "w"), *b = nb_lookup(ctx, "b"), *X = nb_lookup(ctx, "X"),
                *y = nb_lookup(ctx, "y");
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 3000);
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 40);
        nb_randomize(ctx, C, &rng, -1, 1);
        nb_expr *outs[3] = {C, nb_gradient(ctx, C, w), nb_gradient(ctx, C, b)}, *ins[4] = {w, b, X, y};
        check_program(ctx, "neuron N=3000 n=40", 3, outs, 4, ins);
        nb_ctx_free(ctx);
    }
    /* the neuron over widths that reach every tail of the matrix-vector
     * kernels (half, quarter and single columns after whole vectors, blocks of
     * 16 vectors) in f64 and f32 */
    static const int widths[] = {1, 2, 3, 5, 6, 7, 9, 12, 13, 17, 31, 33, 47, 100, 129, 263};
    for (size_t k = 0; k < sizeof widths / sizeof *widths; k++) {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed + 7 + k;
        nb_declare(ctx, "w: vector(n); X: matrix(N, n); y: vector(N); b: scalar");
        nb_expr *C = nb_parse(ctx, "sum((y - max(0, X*w + b)).^2)/N");
        nb_expr *w = nb_lookup(ctx, "w"), *b = nb_lookup(ctx, "b"), *X = nb_lookup(ctx, "X"),
                *y = nb_lookup(ctx, "y");
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 90);
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), widths[k]);
        nb_randomize(ctx, C, &rng, -1, 1);
        nb_expr *outs[3] = {C, nb_gradient(ctx, C, w), nb_gradient(ctx, C, b)}, *ins[4] = {w, b, X, y};
        char label[64];
        snprintf(label, sizeof label, "neuron N=90 n=%d", widths[k]);
        check_program(ctx, label, 3, outs, 4, ins);
        nb_ctx_free(ctx);
    }
    /* an MLP with softmax cross-entropy */
    {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed + 1;
        nb_declare(ctx, "X: matrix(B, 30); Y: matrix(B, 10); W1: matrix(30, 64); b1: vector(64); "
                        "W2: matrix(64, 64); b2: vector(64); W3: matrix(64, 10); b3: vector(10)");
        nb_expr *L =
            nb_parse(ctx, "H = relu(X*W1 + b1'); G = relu(H*W2 + b2'); Z = G*W3 + b3'; softmax_xent(Z, Y)");
        CHECK(L != NULL, "mlp parse: %s", nb_error(ctx));
        if (L) {
            const char *names[6] = {"W1", "b1", "W2", "b2", "W3", "b3"};
            nb_expr *outs[7] = {L}, *ins[8];
            for (int i = 0; i < 6; i++) {
                ins[i] = nb_lookup(ctx, names[i]);
                outs[1 + i] = nb_gradient(ctx, L, ins[i]);
            }
            ins[6] = nb_lookup(ctx, "X");
            ins[7] = nb_lookup(ctx, "Y");
            nb_bind_dim(ctx, nb_dim_symbol(ctx, "B"), 50);
            nb_randomize(ctx, L, &rng, -1, 1);
            check_program(ctx, "mlp 30-64-64-10 B=50", 7, outs, 8, ins);
        }
        nb_ctx_free(ctx);
    }
    /* Jacobians that must stay structured */
    {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed + 2;
        nb_declare(ctx, "x: vector(n); A: matrix(n, n)");
        nb_expr *x = nb_lookup(ctx, "x"), *A = nb_lookup(ctx, "A");
        nb_expr *f = nb_parse(ctx, "exp(x).*sin(x) + x.^2");
        nb_expr *g = nb_parse(ctx, "tanh(A*x)");
        nb_expr *J = nb_derivative(ctx, f, 1, &x, NB_NUMERATOR),
                *K = nb_derivative(ctx, g, 1, &x, NB_NUMERATOR);
        nb_expr *I = nb_derivative(ctx, x, 1, &x, NB_NUMERATOR);
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 300);
        nb_randomize(ctx, g, &rng, -1, 1);
        nb_expr *outs[5] = {f, J, g, K, I}, *ins[2] = {x, A};
        check_program(ctx, "jacobians n=300", 5, outs, 2, ins);
        nb_program *p = nb_compile(ctx, 5, outs, 2, ins, NB_F64, 0);
        CHECK(p != NULL, "compile: %s", nb_error(ctx));
        if (p) {
            CHECK(nb_program_output_structure(p, 1) == NB_STRUCT_DIAGONAL,
                  "Jacobian of element-wise f is diagonal");
            CHECK(nb_program_output_size(p, 1) == 300, "diagonal Jacobian holds n entries, got %lld",
                  (long long)nb_program_output_size(p, 1));
            CHECK(nb_program_output_structure(p, 3) == NB_STRUCT_DENSE, "diag(1-tanh²)·A is dense");
            CHECK(nb_program_output_structure(p, 4) == NB_STRUCT_SCALED_IDENTITY, "∂x/∂x = I");
            nb_program_stats s;
            nb_program_get_stats(p, &s);
            CHECK(s.products == 1, "one product (A*x shared by f and J), got %zu", s.products);
            nb_program_free(p);
        }
        nb_ctx_free(ctx);
    }
}

/* ---- API misuse and guarantees ---------------------------------------------------- */
static void test_api(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n); A: matrix(m, n); s: scalar");
    nb_expr *x = nb_lookup(ctx, "x"), *A = nb_lookup(ctx, "A"), *s = nb_lookup(ctx, "s");
    nb_expr *f = nb_parse(ctx, "sum(tanh(A*x)) * s");
    nb_expr *g = nb_gradient(ctx, f, x);
    nb_expr *outs[2] = {f, g}, *ins[3] = {x, A, s};

    /* compile errors */
    CHECK(nb_compile(ctx, 2, outs, 2, ins, NB_F64, 0) == NULL && strstr(nb_error(ctx), "'s'"),
          "a used variable that is not an input is refused: %s", nb_error(ctx));
    nb_expr *bad_in[2] = {x, f};
    CHECK(nb_compile(ctx, 1, outs, 2, bad_in, NB_F64, 0) == NULL, "a non-variable input is refused");
    nb_expr *twice[3] = {x, A, x};
    CHECK(nb_compile(ctx, 1, outs, 3, twice, NB_F64, 0) == NULL, "an input listed twice is refused");
    nb_expr *null_out[1] = {NULL};
    CHECK(nb_compile(ctx, 1, null_out, 3, ins, NB_F64, 0) == NULL, "a NULL output is refused");
    CHECK(nb_compile(ctx, 0, outs, 3, ins, NB_F64, 0) == NULL, "no outputs is refused");
    CHECK(nb_compile(ctx, 2, outs, 3, ins, (nb_dtype)7, 0) == NULL, "an unknown dtype is refused");

    nb_program *p = nb_compile(ctx, 2, outs, 3, ins, NB_F64, 0);
    CHECK(p != NULL, "compile: %s", nb_error(ctx));
    if (!p) {
        nb_ctx_free(ctx);
        return;
    }
    double X[6] = {1, 2, 3}, M[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, S = 2, out0, out1[3];
    const void *in[3] = {X, M, &S};
    void *out[2] = {&out0, out1};
    /* unbound dimensions */
    int rc = nb_program_run(p, in, out);
    CHECK(rc == NB_ERR_UNBOUND && strstr(nb_program_error(p), "not bound"), "unbound: %d %s", rc,
          nb_program_error(p));
    CHECK(nb_program_output_size(p, 1) == 0, "size of an unbound output is 0");
    CHECK(nb_program_bind_dim(p, "q", 3) == NB_ERR_ARG && strstr(nb_program_error(p), "'q'"),
          "unknown dimension: %s", nb_program_error(p));
    CHECK(nb_program_bind_dim(p, "n", 0) == NB_ERR_ARG, "size 0 refused");
    CHECK(nb_program_bind_dim(p, "n", -4) == NB_ERR_ARG, "negative size refused");
    CHECK(nb_program_bind_dim(p, "n", 3) == NB_OK, "bind n");
    rc = nb_program_run(p, in, out);
    CHECK(rc == NB_ERR_UNBOUND && strstr(nb_program_error(p), "m"), "m still unbound: %s",
          nb_program_error(p));
    CHECK(nb_program_bind_input(p, 0, 3, 2) == NB_ERR_SIZE, "a vector has one column: %s",
          nb_program_error(p));
    CHECK(nb_program_bind_input(p, 1, 2, 3) == NB_OK, "bind from A's shape: %s", nb_program_error(p));
    CHECK(nb_program_bind_input(p, 9, 2, 3) == NB_ERR_ARG, "input index out of range");
    int64_t r, c;
    CHECK(nb_program_input_shape(p, 1, &r, &c) == NB_OK && r == 2 && c == 3, "A is 2 x 3");
    CHECK(nb_program_output_shape(p, 1, &r, &c) == NB_OK && r == 3 && c == 1, "gradient is 3 x 1");
    CHECK(nb_program_num_dims(p) == 2, "two dimension symbols");
    CHECK(nb_program_num_inputs(p) == 3 && nb_program_num_outputs(p) == 2, "counts");
    CHECK(strcmp(nb_program_input_name(p, 1), "A") == 0, "input name");
    rc = nb_program_run(p, in, out);
    CHECK(rc == NB_OK, "run: %s", nb_program_error(p));
    /* NULL buffers */
    const void *in_null[3] = {X, NULL, &S};
    CHECK(nb_program_run(p, in_null, out) == NB_ERR_ARG && strstr(nb_program_error(p), "'A'"),
          "NULL input: %s", nb_program_error(p));
    CHECK(nb_program_run(p, NULL, out) == NB_ERR_ARG, "NULL inputs");
    CHECK(nb_program_run(p, in, NULL) == NB_ERR_ARG, "NULL outputs");
    CHECK(nb_program_run(NULL, in, out) == NB_ERR_ARG, "NULL program");
    /* wrong sizes */
    size_t insz[3] = {3, 6, 1}, outsz[2] = {1, 3};
    CHECK(nb_program_run_sized(p, in, insz, out, outsz) == NB_OK, "sized run");
    insz[1] = 5;
    rc = nb_program_run_sized(p, in, insz, out, outsz);
    CHECK(rc == NB_ERR_SIZE && strstr(nb_program_error(p), "expected 6"), "wrong input size: %s",
          nb_program_error(p));
    insz[1] = 6;
    outsz[1] = 4;
    CHECK(nb_program_run_sized(p, in, insz, out, outsz) == NB_ERR_SIZE, "wrong output size");
    CHECK(nb_program_run_sized(p, in, NULL, out, outsz) == NB_ERR_ARG, "NULL sizes");
    outsz[1] = 3;
    /* NaN / Inf checking */
    X[1] = NAN;
    CHECK(nb_program_run(p, in, out) == NB_OK, "no checking by default");
    nb_program_check_finite(p, 1);
    rc = nb_program_run(p, in, out);
    CHECK(rc == NB_ERR_NONFINITE && strstr(nb_program_error(p), "'x'") &&
              strstr(nb_program_error(p), "(1, 0)"),
          "NaN input: %s", nb_program_error(p));
    X[1] = INFINITY;
    CHECK(nb_program_run(p, in, out) == NB_ERR_NONFINITE, "Inf input");
    X[1] = 2;
    CHECK(nb_program_run(p, in, out) == NB_OK, "finite again: %s", nb_program_error(p));
    CHECK(nb_program_error(p)[0] == 0, "error cleared after success");
    /* threads */
    CHECK(nb_program_set_threads(p, 0) == NB_ERR_ARG, "0 threads refused");
    CHECK(nb_program_set_threads(p, 1000) == NB_ERR_ARG, "1000 threads refused");
    CHECK(nb_program_set_threads(p, 2) == NB_OK && nb_program_run(p, in, out) == NB_OK, "2 threads");
    CHECK(nb_program_set_threads(p, 1) == NB_OK && nb_program_run(p, in, out) == NB_OK, "back to 1 thread");
    /* rebinding sizes re-plans */
    CHECK(nb_program_bind_dim(p, "n", 2) == NB_OK && nb_program_output_size(p, 1) == 2, "rebind n");
    CHECK(nb_program_run(p, in, out) == NB_OK, "run after rebinding");
    CHECK(nb_program_expand_output(p, 5, out1, out1) == NB_ERR_ARG, "expand: index out of range");
    char *d = nb_program_describe(p);
    CHECK(d && strstr(d, "gemv"), "describe lists instructions");
    free(d);
    nb_program_free(p);
    nb_program_free(NULL);
    CHECK(strcmp(nb_program_error(NULL), "no program") == 0, "error of NULL");

    /* the flag form of checking, f32 */
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 3);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "m"), 2);
    p = nb_compile(ctx, 2, outs, 3, ins, NB_F32, NB_COMPILE_CHECK_FINITE);
    CHECK(p && nb_program_output_size(p, 1) == 3, "sizes from the context");
    if (p) {
        float xf[3] = {1, 2, 3}, mf[6] = {0}, sf = 1, o0, o1[3];
        const void *inf[3] = {xf, mf, &sf};
        void *outf[2] = {&o0, o1};
        CHECK(nb_program_run(p, inf, outf) == NB_OK, "f32 run");
        mf[5] = -INFINITY;
        CHECK(nb_program_run(p, inf, outf) == NB_ERR_NONFINITE && strstr(nb_program_error(p), "(1, 2)"),
              "f32 Inf: %s", nb_program_error(p));
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* Sizes: every product of sizes is checked; a plan too large is refused by
 * nb_compile or by the binding call, which then keeps the old sizes. */
static void test_sizes(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "X: matrix(N, n); W: matrix(n, k)");
    nb_expr *X = nb_lookup(ctx, "X"), *W = nb_lookup(ctx, "W");
    nb_expr *f = nb_parse(ctx, "sum(X)");
    nb_expr *outs[2] = {f, nb_gradient(ctx, f, X)};
    /* issue 7: N·n = 2.3e18 entries, sizes bound in the context */
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 2147437309);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 1073764994);
    nb_program *p = nb_compile(ctx, 2, outs, 1, &X, NB_F64, 0);
    CHECK(p == NULL && strstr(nb_error(ctx), "2147437309 x 1073764994") && strstr(nb_error(ctx), "too large"),
          "sum(X) with N=2147437309, n=1073764994 is refused: %s", nb_error(ctx));
    nb_program_free(p);
    nb_ctx_free(ctx);
    ctx = nb_ctx_new();
    nb_declare(ctx, "X: matrix(N, n); W: matrix(n, k)");
    X = nb_lookup(ctx, "X");
    W = nb_lookup(ctx, "W");
    f = nb_parse(ctx, "sum(X)");
    outs[0] = f;
    outs[1] = nb_gradient(ctx, f, X);
    /* the same sizes bound one by one: the second bind fails and is undone */
    p = nb_compile(ctx, 2, outs, 1, &X, NB_F64, 0);
    CHECK(p != NULL, "compile unbound: %s", nb_error(ctx));
    if (p) {
        CHECK(nb_program_bind_dim(p, "N", 2147437309) == NB_OK, "N alone: %s", nb_program_error(p));
        int rc = nb_program_bind_dim(p, "n", 1073764994);
        CHECK(rc == NB_ERR_ARG && strstr(nb_program_error(p), "too large"), "n makes it too large: %d %s", rc,
              nb_program_error(p));
        CHECK(nb_program_dim_value(p, 1) == 0 && nb_program_input_size(p, 0) == 0 &&
                  nb_program_output_size(p, 1) == 0,
              "n stays unbound, sizes 0: %lld", (long long)nb_program_dim_value(p, 1));
        double x[6] = {1, 2, 3, 4, 5, 6}, s = 0, g[6];
        const void *in[1] = {x};
        void *out[2] = {&s, g};
        CHECK(nb_program_run(p, in, out) == NB_ERR_UNBOUND, "a run is refused");
        CHECK(nb_program_bind_dim(p, "N", (int64_t)1 << 41) == NB_ERR_ARG && strstr(nb_program_error(p), "2^40"),
              "one dimension beyond 2^40: %s", nb_program_error(p));
        CHECK(nb_program_bind_input(p, 0, INT64_MAX / 2, 4) == NB_ERR_ARG &&
                  strstr(nb_program_error(p), "too large"),
              "rows·cols overflows: %s", nb_program_error(p));
        CHECK(nb_program_bind_input(p, 0, 3, 2) == NB_OK, "3 x 2: %s", nb_program_error(p));
        CHECK(nb_program_bind_dim(p, "n", (int64_t)1 << 39) == NB_ERR_ARG, "3·2^39 entries refused");
        CHECK(nb_program_input_size(p, 0) == 6 && nb_program_dim_value(p, 1) == 2, "3 x 2 kept: %lld",
              (long long)nb_program_input_size(p, 0));
        CHECK(nb_program_run(p, in, out) == NB_OK && s == 21 && g[0] == 1, "runs with the old sizes: %g %s", s,
              nb_program_error(p));
        nb_program_free(p);
    }
    /* BLAS takes int sizes: a product with a dimension beyond INT_MAX is refused */
    nb_expr *h = nb_parse(ctx, "sum(X*W)");
    nb_expr *ins[2] = {X, W};
    /* (the context itself refuses sizes beyond 2^31 − 1, so the program binds N) */
    nb_unbind_all(ctx);
    p = nb_compile(ctx, 1, &h, 2, ins, NB_F32, 0);
    CHECK(p && nb_program_bind_dim(p, "n", 2) == NB_OK && nb_program_bind_dim(p, "k", 2) == NB_OK,
          "compiles unbound: %s", p ? nb_program_error(p) : nb_error(ctx));
    CHECK(p && nb_program_bind_dim(p, "N", ((int64_t)1 << 31) + 8) != NB_OK &&
              strstr(nb_program_error(p), "product") && strstr(nb_program_error(p), "2147483656"),
          "a product of 2^31 + 8 rows is refused: %s", p ? nb_program_error(p) : "");
    nb_program_free(p);
    nb_ctx_free(ctx);
}

/* Every public program function takes NULL, bad indices and bad enums. */
static void test_arguments(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n)");
    nb_expr *x = nb_lookup(ctx, "x"), *f = nb_parse(ctx, "sum(exp(x))");
    CHECK(nb_compile(NULL, 1, &f, 1, &x, NB_F64, 0) == NULL, "NULL context");
    CHECK(nb_compile(ctx, 1, &f, 1, &x, NB_F64, 16u) == NULL && strstr(nb_error(ctx), "flags"),
          "unknown flags: %s", nb_error(ctx));
    CHECK(nb_compile(ctx, 1, &f, 1, &x, (nb_dtype)-1, 0) == NULL && strstr(nb_error(ctx), "dtype"),
          "negative dtype: %s", nb_error(ctx));
    CHECK(nb_compile(ctx, 1, &f, 1, NULL, NB_F64, 0) == NULL, "NULL inputs");
    CHECK(nb_compile(ctx, SIZE_MAX, &f, 1, &x, NB_F64, 0) == NULL && strstr(nb_error(ctx), "at most"),
          "SIZE_MAX outputs: %s", nb_error(ctx));
    nb_program *p = NULL;
    int64_t r = 7, c = 7;
    nb_program_stats st0;
    CHECK(nb_program_bind_dim(p, "n", 2) == NB_ERR_ARG && nb_program_bind_input(p, 0, 1, 1) == NB_ERR_ARG &&
              nb_program_set_threads(p, 2) == NB_ERR_ARG && nb_program_input_shape(p, 0, &r, &c) == NB_ERR_ARG &&
              nb_program_output_shape(p, 0, &r, &c) == NB_ERR_ARG && nb_program_input_size(p, 0) == 0 &&
              nb_program_output_size(p, 0) == 0 && nb_program_expand_output(p, 0, &r, &c) == NB_ERR_ARG &&
              nb_program_run_sized(p, NULL, NULL, NULL, NULL) == NB_ERR_ARG && nb_program_describe(p) == NULL &&
              nb_program_num_inputs(p) == 0 && nb_program_num_outputs(p) == 0 && nb_program_num_dims(p) == 0 &&
              nb_program_dim_name(p, 0) == NULL && nb_program_dim_value(p, 0) == 0 &&
              nb_program_input_name(p, 0) == NULL && nb_program_output_structure(p, 0) == NB_STRUCT_DENSE,
          "NULL program");
    nb_program_check_finite(p, 1);
    nb_program_get_stats(p, &st0);
    nb_program_get_stats(p, NULL);
    CHECK(st0.instructions == 0 && st0.workspace_bytes == 0, "stats of NULL are zero");
    p = nb_compile(ctx, 1, &f, 1, &x, NB_F32, 0);
    CHECK(p != NULL, "compile: %s", nb_error(ctx));
    if (p) {
        CHECK(nb_program_input_shape(p, 1, &r, &c) == NB_ERR_ARG && nb_program_output_shape(p, 1, &r, &c) == NB_ERR_ARG &&
                  nb_program_input_name(p, 1) == NULL && nb_program_dim_name(p, 1) == NULL &&
                  nb_program_input_size(p, 1) == 0 && nb_program_output_size(p, 1) == 0,
              "indices out of range");
        CHECK(nb_program_bind_dim(p, NULL, 2) == NB_ERR_ARG, "NULL name");
        CHECK(nb_program_bind_input(p, 0, 0, 1) == NB_ERR_ARG && nb_program_bind_input(p, 0, 2, -1) == NB_ERR_ARG,
              "non-positive sizes");
        CHECK(nb_program_set_threads(p, -3) == NB_ERR_ARG, "negative threads");
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* A group whose space becomes one element when a dimension is bound to 1
 * runs as straight-line code; rebinding to more elements runs the loop. */
static void test_one_element_rebind(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n); s: scalar");
    nb_expr *x = nb_lookup(ctx, "x"), *sv = nb_lookup(ctx, "s");
    nb_expr *f = nb_parse(ctx, "sum(exp(s*x) + sin(x))");
    nb_expr *outs[3] = {f, nb_gradient(ctx, f, x), nb_gradient(ctx, f, sv)}, *ins[2] = {x, sv};
    nb_program *p = nb_compile(ctx, 3, outs, 2, ins, NB_F64, NB_COMPILE_DENSE);
    CHECK(p != NULL, "compile: %s", nb_error(ctx));
    if (!p) {
        nb_ctx_free(ctx);
        return;
    }
    for (int64_t n = 1; n <= 3; n += 2) {
        double xv[3] = {0.5, -0.25, 1.5}, s = 0.75, f0, g[3], gs;
        const void *in[2] = {xv, &s};
        void *out[3] = {&f0, g, &gs};
        CHECK(nb_program_bind_dim(p, "n", n) == NB_OK && nb_program_run(p, in, out) == NB_OK, "n=%lld: %s",
              (long long)n, nb_program_error(p));
        double want = 0, wgs = 0;
        for (int64_t i = 0; i < n; i++) {
            want += exp(s * xv[i]) + sin(xv[i]);
            wgs += xv[i] * exp(s * xv[i]);
            CHECK(fabs(g[i] - (s * exp(s * xv[i]) + cos(xv[i]))) < 1e-12, "n=%lld: gradient %lld", (long long)n,
                  (long long)i);
        }
        CHECK(fabs(f0 - want) < 1e-12 && fabs(gs - wgs) < 1e-12, "n=%lld: f %.17g want %.17g, df/ds %.17g want %.17g",
              (long long)n, f0, want, gs, wgs);
    }
    nb_program_free(p);
    nb_ctx_free(ctx);
}

/* A run performs no allocation of its own (malloc/calloc/realloc outside the
 * BLAS's products are counted). */
static void test_no_allocation(void) {
    if (!HAVE_ALLOC_COUNT) {
        CHECK(1, "skipped");
        return;
    }
    nb_ctx *ctx = nb_ctx_new();
    uint64_t rng = 5;
    nb_declare(ctx,
               "X: matrix(B, 20); Y: matrix(B, 5); W1: matrix(20, 300); b1: vector(300); W2: matrix(300, 5)");
    nb_expr *L = nb_parse(ctx, "H = tanh(X*W1 + b1'); softmax_xent(H*W2, Y)");
    nb_expr *ins[5] = {nb_lookup(ctx, "W1"), nb_lookup(ctx, "b1"), nb_lookup(ctx, "W2"), nb_lookup(ctx, "X"),
                       nb_lookup(ctx, "Y")};
    nb_expr *outs[4] = {L, nb_gradient(ctx, L, ins[0]), nb_gradient(ctx, L, ins[1]),
                        nb_gradient(ctx, L, ins[2])};
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "B"), 200);
    nb_randomize(ctx, L, &rng, -1, 1);
    for (int threads = 1; threads <= 2; threads++) {
        nb_program *p = nb_compile(ctx, 4, outs, 5, ins, NB_F32, 0);
        CHECK(p != NULL, "compile: %s", nb_error(ctx));
        if (!p) break;
        nb_program_set_threads(p, threads);
        void *in[5], *out[4];
        for (int i = 0; i < 5; i++)
            in[i] = calloc((size_t)nb_program_input_size(p, (size_t)i), sizeof(float));
        for (int i = 0; i < 4; i++)
            out[i] = calloc((size_t)nb_program_output_size(p, (size_t)i), sizeof(float));
        nb_program_run(p, (const void *const *)in, out); /* warm-up: BLAS and threads initialise */
        long before = alloc_count, blas_before = blas_alloc_count;
        for (int k = 0; k < 20; k++)
            nb_program_run(p, (const void *const *)in, out);
        CHECK(alloc_count == before, "%d thread(s): 20 runs allocated %ld times", threads,
              alloc_count - before);
        if (blas_alloc_count != blas_before)
            fprintf(stderr, "%d thread(s): the BLAS allocated %ld times in 20 runs\n", threads,
                    blas_alloc_count - blas_before);
        for (int i = 0; i < 5; i++)
            free(in[i]);
        for (int i = 0; i < 4; i++)
            free(out[i]);
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* ---- product dimensions (m·n) ---------------------------------------------------- */
/* Runs p (f64) at the context's bound values of ins and compares every output
 * with nb_eval; returns the number of mismatches. */
static int compare_with_reference(nb_ctx *ctx, nb_program *p, size_t nout, nb_expr *const *outs, size_t nin,
                                  nb_expr *const *ins, const char *label) {
    void *in[8] = {0}, *out[8] = {0};
    int bad = 0;
    for (size_t i = 0; i < nin; i++) {
        const nb_matrix *m = bound_value(ctx, ins[i]);
        in[i] = m ? m->data : NULL;
        bad += !m || nb_program_input_size(p, i) != m->rows * m->cols;
    }
    for (size_t k = 0; k < nout; k++)
        out[k] = calloc((size_t)nb_program_output_size(p, k) + 1, sizeof(double));
    int rc = bad ? -1 : nb_program_run(p, (const void *const *)in, out);
    CHECK(rc == NB_OK, "%s: run: %s", label, nb_program_error(p));
    for (size_t k = 0; k < nout && rc == NB_OK; k++) {
        nb_matrix ref;
        int64_t r, c;
        if (nb_eval(ctx, outs[k], &ref) || nb_program_output_shape(p, k, &r, &c) || r != ref.rows || c != ref.cols) {
            CHECK(0, "%s: output %zu: shape or reference: %s", label, k, nb_error(ctx));
            bad++;
            continue;
        }
        double *dense = malloc((size_t)(r * c) * sizeof *dense), worst = 0;
        nb_program_expand_output(p, k, out[k], dense);
        for (int64_t e = 0; e < r * c; e++)
            worst = fmax(worst, fabs(dense[e] - ref.data[e]));
        CHECK(worst <= 1e-12, "%s: output %zu differs by %g", label, k, worst);
        bad += !(worst <= 1e-12);
        free(dense);
        nb_matrix_free(&ref);
    }
    for (size_t k = 0; k < nout; k++)
        free(out[k]);
    return bad;
}

/* kron(X, A), d(Xᵀ)/dX = K and vec(X) .* vec(X) of X: matrix(n, m), A: matrix(n, 2)
 * in a new context with n, m bound and X, A random; false when building fails. */
static bool product_dim_case(nb_ctx *ctx, int64_t n, int64_t m, uint64_t *rng, nb_expr **outs, nb_expr **ins) {
    nb_declare(ctx, "X: matrix(n, m); A: matrix(n, 2)");
    ins[0] = nb_lookup(ctx, "X");
    ins[1] = nb_lookup(ctx, "A");
    outs[0] = nb_parse(ctx, "kron(X, A)");
    outs[1] = nb_derivative(ctx, nb_parse(ctx, "X'"), 1, &ins[0], NB_NUMERATOR);
    outs[2] = nb_parse(ctx, "vec(X) .* vec(X)");
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), n);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "m"), m);
    double data[64];
    for (int k = 0; k < 64; k++)
        data[k] = uniform(rng, -2, 2);
    return outs[0] && outs[1] && outs[2] && nb_set_value(ctx, "X", n, m, data) == 0 &&
           nb_set_value(ctx, "A", n, 2, data + 32) == 0;
}

/* A product dimension (n·m of kron and vec, the commutation matrix's m)
 * follows its factors whenever they are bound again. */
static void test_product_dims(void) {
    nb_ctx *ctx = nb_ctx_new();
    uint64_t rng = 11;
    nb_expr *outs[3], *ins[2];
    nb_program *p = product_dim_case(ctx, 2, 3, &rng, outs, ins) ? nb_compile(ctx, 3, outs, 2, ins, NB_F64, 0) : NULL;
    CHECK(p != NULL, "product dims: compile: %s", nb_error(ctx));
    if (p) compare_with_reference(ctx, p, 3, outs, 2, ins, "n=2, m=3");
    nb_ctx_free(ctx);
    if (!p) return;
    static const int64_t sizes[][2] = {{3, 2}, {4, 4}, {1, 5}};
    for (size_t t = 0; t < 3; t++) {
        char label[64];
        snprintf(label, sizeof label, "rebound n=%lld, m=%lld", (long long)sizes[t][0], (long long)sizes[t][1]);
        CHECK(nb_program_bind_dim(p, "n", sizes[t][0]) == NB_OK && nb_program_bind_dim(p, "m", sizes[t][1]) == NB_OK,
              "%s: %s", label, nb_program_error(p));
        int64_t r, c;
        CHECK(nb_program_output_shape(p, 0, &r, &c) == NB_OK && r == sizes[t][0] * sizes[t][0] &&
                  c == 2 * sizes[t][1],
              "%s: kron(X, A) is %lldx%lld", label, (long long)r, (long long)c);
        ctx = nb_ctx_new();
        if (product_dim_case(ctx, sizes[t][0], sizes[t][1], &rng, outs, ins))
            compare_with_reference(ctx, p, 3, outs, 2, ins, label);
        else
            CHECK(0, "%s: reference: %s", label, nb_error(ctx));
        nb_ctx_free(ctx);
    }
    /* a product is not bound directly, and one over 2^40 entries is refused
     * with the old sizes kept */
    size_t nn = 0;
    while (nn < nb_program_num_dims(p) && strcmp(nb_program_dim_name(p, nn), "n·n") != 0)
        nn++;
    CHECK(nn < nb_program_num_dims(p) && nb_program_dim_value(p, nn) == 1, "n·n is a program dimension (n = 1)");
    CHECK(nb_program_bind_dim(p, "n·n", 9) == NB_ERR_ARG && strstr(nb_program_error(p), "product of its factors"),
          "binding n·n refused: %s", nb_program_error(p));
    int rc = nb_program_bind_dim(p, "n", (int64_t)1 << 21);
    CHECK(rc == NB_ERR_ARG && strstr(nb_program_error(p), "too large"), "n = 2^21: n·n over 2^40 refused (%d): %s", rc,
          nb_program_error(p));
    CHECK(nn < nb_program_num_dims(p) && nb_program_dim_value(p, nn) == 1 && nb_program_output_size(p, 2) == 5,
          "old sizes kept after the refusal");
    nb_program_free(p);
}

/* An input whose type is a product is checked against its factors. */
static void test_product_dim_input(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "X: matrix(n, n); v: vector(n)");
    nb_expr *X = nb_lookup(ctx, "X"), *v = nb_lookup(ctx, "v");
    nb_expr *J = nb_derivative(ctx, nb_parse(ctx, "X*v"), 1, &X, NB_NUMERATOR); /* vᵀ ⊗ I: n x n·n */
    nb_expr *w = nb_declare(ctx, "w: vector(n·n)") == 0 ? nb_lookup(ctx, "w") : NULL;
    CHECK(J && w, "product input: build: %s", nb_error(ctx));
    if (!J || !w) {
        nb_ctx_free(ctx);
        return;
    }
    nb_expr *f = nb_matmul(ctx, J, w), *ins[3] = {X, v, w};
    nb_program *p = f ? nb_compile(ctx, 1, &f, 3, ins, NB_F64, 0) : NULL;
    CHECK(p != NULL, "product input: compile: %s", nb_error(ctx));
    if (p) {
        int rc = nb_program_bind_input(p, 2, 9, 1);
        CHECK(rc == NB_ERR_UNBOUND && strstr(nb_program_error(p), "bind its factors first"),
              "w before n (%d): %s", rc, nb_program_error(p));
        CHECK(nb_program_bind_input(p, 0, 3, 3) == NB_OK, "X binds n = 3: %s", nb_program_error(p));
        rc = nb_program_bind_input(p, 2, 8, 1);
        CHECK(rc == NB_ERR_SIZE && strstr(nb_program_error(p), "expected n·n = 9"), "w of 8 refused (%d): %s", rc,
              nb_program_error(p));
        CHECK(nb_program_bind_input(p, 2, 9, 1) == NB_OK && nb_program_input_size(p, 2) == 9, "w of 9: %s",
              nb_program_error(p));
        CHECK(nb_program_bind_input(p, 0, 2, 2) == NB_OK && nb_program_input_size(p, 2) == 4, "n = 2: w has 4 entries");
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

/* ---- Kronecker products kept structured ------------------------------------------- */
/* (P ⊗ Q)·v, uᵀ·(P ⊗ Q), K·v and the vec-convention derivatives applied to a
 * vector, against nb_eval (check_program: f64/f32, 1 and 2 threads, and
 * NB_COMPILE_DENSE, where the product is formed densely). */
static void test_kron_products(uint64_t seed) {
    static const char *const cases[] = {
        "kron(A, B)*v",
        "u'*kron(A, B)",
        "kron(A, B)'*u",
        "(u'*kron(A, B))'",
        "-3*kron(A, B)*v",
        "s*kron(A, B)*v",
        "kron(eye(m), B)*w",
        "kron(A, eye(n))*z",
        "kron(A, B)*(v + 1)",
        "sum(kron(A, B)*v) + kron(A, B)*v",
        "kron(A, B)*V",
        "kron(A, B)'*U",
        "s*kron(eye(m), B)*W",
        "kron(A, eye(n))*Z",
        "kron(A, B)*(V .* V) + 2*kron(A, B)*V",
        "kron(a, b)*r",
        "kron(A, b)*x",
        "kron(A, b')*Z",
    };
    static const char decls[] = "A: matrix(m, p); B: matrix(n, q); v: vector(p*q); u: vector(m*n); s: scalar;"
                                "w: vector(m*q); z: vector(p*n); V: matrix(p*q, k); U: matrix(m*n, k);"
                                "W: matrix(m*q, k); Z: matrix(p*n, k); a: vector(m); b: vector(n); r: row(k);"
                                "x: vector(p)";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed + i;
        nb_expr *f = nb_declare(ctx, decls) == 0 ? nb_parse(ctx, cases[i]) : NULL;
        CHECK(f != NULL, "KRON %s: %s", cases[i], nb_error(ctx));
        if (f) {
            static const char *const dims[] = {"m", "p", "n", "q", "k"};
            static const int64_t sizes[] = {3, 2, 4, 5, 3};
            for (int d = 0; d < 5; d++)
                nb_bind_dim(ctx, nb_dim_symbol(ctx, dims[d]), sizes[d]);
            nb_expr *vars[8];
            size_t nv = variables_of(ctx, f, vars, 8);
            nb_randomize(ctx, f, &rng, -2, 2);
            char label[96];
            snprintf(label, sizeof label, "KRON %s", cases[i]);
            check_program(ctx, label, 1, &f, nv, vars);
            /* structured: no mn x pq matrix is formed (no matrix-function kernel makes it) */
            nb_program *p = nb_compile(ctx, 1, &f, nv, vars, NB_F64, 0);
            char *listing = p ? nb_program_describe(p) : NULL;
            CHECK(listing && !strstr(listing, "matfn") && strstr(listing, "gemm"), "%s: structured:\n%s", label,
                  listing ? listing : "");
            free(listing);
            nb_program_free(p);
        }
        nb_ctx_free(ctx);
    }
}

/* Jacobian-vector and vector-Jacobian products of matrix functions (vec
 * convention): d(A·X·B)/dX = Bᵀ ⊗ A, d X⁻¹/dX = −(X⁻ᵀ ⊗ X⁻¹), d Xᵀ/dX = K. */
static void test_kron_derivatives(uint64_t seed) {
    static const char *const cases[][2] = {
        {"A*X*B", "v"}, {"inv(X)", "v"}, {"X'", "v"}, {"X' * A", "v"}, {"A*X*B", "u"}, {"inv(X)", "u"}, {"X'", "u"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_ctx *ctx = nb_ctx_new();
        uint64_t rng = seed + 100 + i;
        nb_declare(ctx, "A: matrix(n, n); B: matrix(n, n); X: matrix(n, n); v: vector(n*n); u: row(n*n)");
        nb_expr *X = nb_lookup(ctx, "X"), *F = nb_parse(ctx, cases[i][0]);
        nb_expr *J = F ? nb_derivative(ctx, F, 1, &X, NB_NUMERATOR) : NULL;
        nb_expr *x = nb_lookup(ctx, cases[i][1]);
        nb_expr *f = J ? (cases[i][1][0] == 'v' ? nb_matmul(ctx, J, x) : nb_matmul(ctx, x, J)) : NULL;
        char label[96];
        snprintf(label, sizeof label, "KRON d(%s)/dX with %s", cases[i][0], cases[i][1]);
        CHECK(f != NULL, "%s: %s", label, nb_error(ctx));
        if (f) {
            nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 4);
            nb_expr *vars[8];
            size_t nv = variables_of(ctx, f, vars, 8);
            nb_randomize(ctx, f, &rng, -1, 1);
            double eye[16] = {0};
            const nb_matrix *xv = bound_value(ctx, X);
            for (int k = 0; k < 16; k++) /* well conditioned: X = I·4 + noise */
                eye[k] = (k % 5 == 0 ? 4 : 0) + (xv ? xv->data[k] : 0);
            nb_set_value(ctx, "X", 4, 4, eye);
            check_program(ctx, label, 1, &f, nv, vars);
        }
        nb_ctx_free(ctx);
    }
}

/* (A ⊗ B)·V in a new context at sizes m, p, n, q, k with random values;
 * ins receives A, B, V. */
static nb_expr *kron_matrix_case(nb_ctx *ctx, const int64_t *sizes, uint64_t *rng, nb_expr **ins) {
    static const char *const dims[] = {"m", "p", "n", "q", "k"};
    nb_declare(ctx, "A: matrix(m, p); B: matrix(n, q); V: matrix(p*q, k)");
    nb_expr *f = nb_parse(ctx, "kron(A, B)*V");
    for (int d = 0; d < 5; d++)
        nb_bind_dim(ctx, nb_dim_symbol(ctx, dims[d]), sizes[d]);
    ins[0] = nb_lookup(ctx, "A");
    ins[1] = nb_lookup(ctx, "B");
    ins[2] = nb_lookup(ctx, "V");
    return f && nb_randomize(ctx, f, rng, -1, 1) == 0 ? f : NULL;
}

/* The reshapes of a structured (A ⊗ B)·V use product dimensions (k·p, n·k)
 * that follow their factors when the program is bound to new sizes. */
static void test_kron_matrix_rebind(void) {
    static const int64_t first[] = {2, 3, 2, 2, 1}, second[] = {3, 2, 4, 5, 3};
    uint64_t rng = 3;
    nb_expr *ins[3];
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *f = kron_matrix_case(ctx, first, &rng, ins);
    nb_program *p = f ? nb_compile(ctx, 1, &f, 3, ins, NB_F64, 0) : NULL;
    CHECK(p != NULL, "kron matrix rebind: compile: %s", nb_error(ctx));
    if (p) compare_with_reference(ctx, p, 1, &f, 3, ins, "kron(A, B)*V first sizes");
    nb_ctx_free(ctx);
    if (!p) return;
    static const char *const dims[] = {"m", "p", "n", "q", "k"};
    for (int d = 0; d < 5; d++)
        CHECK(nb_program_bind_dim(p, dims[d], second[d]) == NB_OK, "bind %s: %s", dims[d], nb_program_error(p));
    ctx = nb_ctx_new();
    f = kron_matrix_case(ctx, second, &rng, ins);
    if (f) compare_with_reference(ctx, p, 1, &f, 3, ins, "kron(A, B)*V rebound");
    CHECK(f != NULL, "kron matrix rebind: reference: %s", nb_error(ctx));
    nb_ctx_free(ctx);
    nb_program_free(p);
}

/* A structured Kronecker product runs without allocating: J·v for
 * J = d X⁻¹/dX = −(X⁻ᵀ ⊗ X⁻¹), in f64 and f32, on 1 and 2 threads. */
static void test_kron_no_allocation(void) {
    if (!HAVE_ALLOC_COUNT) {
        CHECK(1, "skipped");
        return;
    }
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "X: matrix(n, n); v: vector(n*n)");
    nb_expr *X = nb_lookup(ctx, "X"), *ins[2] = {X, nb_lookup(ctx, "v")};
    nb_expr *J = nb_derivative(ctx, nb_parse(ctx, "inv(X)"), 1, &X, NB_NUMERATOR);
    nb_expr *f = J ? nb_matmul(ctx, J, ins[1]) : NULL;
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 40);
    for (int cfg = 0; cfg < 4 && f; cfg++) {
        nb_dtype dt = cfg < 2 ? NB_F64 : NB_F32;
        size_t rs = dt == NB_F64 ? sizeof(double) : sizeof(float);
        nb_program *p = nb_compile(ctx, 1, &f, 2, ins, dt, 0);
        CHECK(p != NULL, "kron no allocation: compile: %s", nb_error(ctx));
        if (!p) break;
        nb_program_set_threads(p, 1 + cfg % 2);
        void *in[2] = {calloc(1600, rs), calloc(1600, rs)}, *out[1] = {calloc(1600, rs)};
        for (int k = 0; k < 1600; k += 41) /* X = I */
            dt == NB_F64 ? (void)(((double *)in[0])[k] = 1) : (void)(((float *)in[0])[k] = 1);
        nb_program_run(p, (const void *const *)in, out); /* warm-up */
        long before = alloc_count;
        int rc = NB_OK;
        for (int k = 0; k < 10 && rc == NB_OK; k++)
            rc = nb_program_run(p, (const void *const *)in, out);
        CHECK(rc == NB_OK && alloc_count == before, "%s %d thread(s): 10 runs allocated %ld times (%s)",
              dt == NB_F64 ? "f64" : "f32", 1 + cfg % 2, alloc_count - before, nb_program_error(p));
        for (int i = 0; i < 2; i++)
            free(in[i]);
        free(out[0]);
        nb_program_free(p);
    }
    CHECK(f != NULL, "kron no allocation: %s", nb_error(ctx));
    nb_ctx_free(ctx);
}

/* The program outlives its context and does not depend on it. */
static void test_independent(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n)");
    nb_expr *x = nb_lookup(ctx, "x");
    nb_expr *f = nb_parse(ctx, "sum(exp(x)) / n");
    nb_expr *outs[2] = {f, nb_gradient(ctx, f, x)};
    nb_program *p = nb_compile(ctx, 2, outs, 1, &x, NB_F64, 0);
    nb_ctx_free(ctx);
    CHECK(p != NULL, "compile");
    if (!p) return;
    CHECK(nb_program_bind_dim(p, "n", 4) == NB_OK, "bind after the context is gone");
    double v[4] = {0, 0, 0, 0}, o0, o1[4];
    const void *in[1] = {v};
    void *out[2] = {&o0, o1};
    CHECK(nb_program_run(p, in, out) == NB_OK && fabs(o0 - 1) < 1e-15 && fabs(o1[2] - 0.25) < 1e-15,
          "sum(exp(0))/4 = 1, gradient 1/4: %g %g", o0, o1[2]);
    nb_program_free(p);
}

/* Products of sums and half-integer powers are lowered without forming what
 * the printed derivative shows: the gradient of xᵀ·A·x, (A + Aᵀ)·x, is two
 * matrix-vector products on A, one of them f's own (no n² transpose or
 * sum); three terms give three; the derivatives of √u and u^(±3/2)
 * (u^(−1/2), u^(1/2), u^(−5/2)) and of x⁴ run square roots and products,
 * not pow; other exponents, however large, run pow.  Each program's values
 * against nb_eval. */
static void test_lowering_shapes(void) {
    static const struct {
        const char *f, *wrt;
        size_t products; /* of the program computing f and its gradient */
    } cases[] = {
        {"x'*A*x", "x", 2},                     /* f's xᵀ·A and A·x */
        {"y'*(A + B' + A')*x", "x", 3},         /* yᵀ·A, yᵀ·Bᵀ, yᵀ·Aᵀ: f's, and the gradient's transposed */
        {"sum(sqrt(x.^2 + 1)) + sum((x.^2 + 2).^1.5) + sum((x.^2 + 3).^-1.5) + sum(x.^4)", "x", 0},
        /* exponents beyond any int (once converted to int before the range
         * check: undefined behaviour, found by the compile fuzzer) run pow */
        {"sum((x ./ (x + 1)).^1e24) + sum((x + 1).^-1e300) + sum(x.^4.25)", "x", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        nb_ctx *ctx = nb_ctx_new();
        nb_declare(ctx, "A, B: matrix(n, n); x, y: vector(n)");
        nb_expr *ins[4] = {nb_lookup(ctx, "A"), nb_lookup(ctx, "B"), nb_lookup(ctx, "x"), nb_lookup(ctx, "y")};
        nb_expr *f = nb_parse(ctx, cases[k].f), *v = nb_lookup(ctx, cases[k].wrt);
        nb_expr *outs[2] = {f, f ? nb_gradient(ctx, f, v) : NULL};
        const int64_t n = 37;
        uint64_t rng = 5 + k;
        double data[4 * 37 * 37];
        for (size_t e = 0; e < sizeof data / sizeof *data; e++)
            data[e] = uniform(&rng, 0.5, 1.5);
        nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), n);
        const bool made = outs[0] && outs[1] && nb_set_value(ctx, "A", n, n, data) == 0 &&
                          nb_set_value(ctx, "B", n, n, data + n * n) == 0 &&
                          nb_set_value(ctx, "x", n, 1, data + 2 * n * n) == 0 &&
                          nb_set_value(ctx, "y", n, 1, data + 3 * n * n) == 0;
        nb_program *p = made ? nb_compile(ctx, 2, outs, 4, ins, NB_F64, 0) : NULL;
        CHECK(p != NULL, "%s: compile: %s", cases[k].f, nb_error(ctx));
        if (p && nb_program_bind_dim(p, "n", n) == NB_OK) {
            nb_program_stats st;
            nb_program_get_stats(p, &st);
            char *listing = nb_program_describe(p);
            CHECK(st.products == cases[k].products, "%s: %zu products, want %zu", cases[k].f, st.products,
                  cases[k].products);
            CHECK(listing && !strstr(listing, "transpose") && (k == 3) == (strstr(listing, "POW") != NULL),
                  "%s: a transposed copy or pow in\n%s", cases[k].f, listing ? listing : "(none)");
            /* no n x n value of the program's own */
            CHECK(st.workspace_bytes < (size_t)(n * n) * sizeof(double),
                  "%s: workspace %zu bytes", cases[k].f, st.workspace_bytes);
            free(listing);
            compare_with_reference(ctx, p, 2, outs, 4, ins, cases[k].f);
        }
        nb_program_free(p);
        nb_ctx_free(ctx);
    }
}

/* Dimension names of any length: the symbol of a product (n·Q in the
 * Jacobian kron(eye(Q), vᵀ) of vᵀ·M) was built in fixed buffers and cut at
 * 127 bytes, a new unbound dimension (found by the compile fuzzer: an output
 * without a size); printing cut names at 47–63 bytes; a compiled program
 * skipped factors of a product longer than 127 bytes.  The derivative with a
 * 300-byte name prints it whole, compiles, has every output's size and
 * matches nb_eval; a vector of a declared product of two such names binds by
 * its factors. */
static void test_long_dimension_names(void) {
    char name[301], decls[800], want[400];
    for (int i = 0; i < 300; i++)
        name[i] = i % 50 == 49 ? 'M' : 'q';
    name[300] = '\0';
    snprintf(decls, sizeof decls, "M: matrix(n, %s); v: vector(n)", name);
    nb_ctx *ctx = nb_ctx_new();
    CHECK(nb_declare(ctx, decls) == NB_OK, "declare: %s", nb_error(ctx));
    nb_expr *ins[2] = {nb_lookup(ctx, "M"), nb_lookup(ctx, "v")};
    nb_expr *f = nb_parse(ctx, "v'*M*1");
    nb_expr *outs[3] = {f, NULL, NULL};
    for (int k = 0; k < 2 && f; k++)
        outs[1 + k] = nb_derivative(ctx, f, 1, &ins[k], NB_NUMERATOR);
    char *printed = outs[1] ? nb_to_string(ctx, outs[1], NB_FMT_ASCII) : NULL;
    snprintf(want, sizeof want, "kron(eye(%s), v')", name);
    CHECK(printed && strcmp(printed, want) == 0, "printed %.80s...", printed ? printed : "(none)");
    free(printed);
    uint64_t rng = 3;
    double data[6 * 4];
    for (int e = 0; e < 24; e++)
        data[e] = uniform(&rng, -1, 1);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 3);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, name), 4);
    nb_program *p = outs[1] && outs[2] && nb_set_value(ctx, "M", 3, 4, data) == 0 &&
                            nb_set_value(ctx, "v", 3, 1, data + 12) == 0
                        ? nb_compile(ctx, 3, outs, 2, ins, NB_F64, NB_COMPILE_DENSE)
                        : NULL;
    CHECK(p != NULL, "compile: %s", nb_error(ctx));
    for (size_t k = 0; p && k < 3; k++)
        CHECK(nb_program_output_size(p, k) > 0, "output %zu has no size", k);
    if (p) compare_with_reference(ctx, p, 3, outs, 2, ins, "long dimension names");
    nb_program_free(p);
    nb_ctx_free(ctx);
    /* a declared product of two long names: the program's table takes both
     * factors (they were skipped from 128 bytes on: a product never bound) */
    char product[700];
    snprintf(product, sizeof product, "%s·%sn", name, name);
    snprintf(decls, sizeof decls, "w: vector(%s)", product);
    ctx = nb_ctx_new();
    CHECK(nb_declare(ctx, decls) == NB_OK, "declare: %s", nb_error(ctx));
    nb_expr *w = nb_lookup(ctx, "w"), *g = nb_parse(ctx, "w .* w");
    p = g ? nb_compile(ctx, 1, &g, 1, &w, NB_F64, 0) : NULL;
    char second[400];
    snprintf(second, sizeof second, "%sn", name);
    CHECK(p && nb_program_bind_dim(p, name, 3) == NB_OK && nb_program_bind_dim(p, second, 2) == NB_OK &&
              nb_program_output_size(p, 0) == 6,
          "product of long names: %s", p ? nb_program_error(p) : nb_error(ctx));
    /* printed whole beyond the printer's 512-byte line buffer */
    nb_expr *ones = nb_derivative(ctx, nb_parse(ctx, "sum(w)"), 1, &w, NB_NUMERATOR);
    char *text = ones ? nb_to_string(ctx, ones, NB_FMT_ASCII) : NULL, expect[800];
    snprintf(expect, sizeof expect, "ones(%s)'", product);
    CHECK(text && strcmp(text, expect) == 0, "printed %zu bytes, want %zu", text ? strlen(text) : 0, strlen(expect));
    free(text);
    nb_program_free(p);
    nb_ctx_free(ctx);
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 20240611;
    int count = argc > 2 ? atoi(argv[2]) : 600;
    test_api();
    test_independent();
    test_sizes();
    test_arguments();
    test_one_element_rebind();
    test_no_allocation();
    test_product_dims();
    test_product_dim_input();
    test_kron_products(seed);
    test_kron_derivatives(seed);
    test_kron_no_allocation();
    test_kron_matrix_rebind();
    test_lowering_shapes();
    test_long_dimension_names();
    test_reference(seed);
    test_networks(seed);
    test_random(seed, count);
    fprintf(
        stderr,
        "programs %ld, runs %ld, threaded %ld, structured outputs %ld, skipped (no reference value) %ld\n",
        st.programs, st.runs, st.threaded, st.structured, st.skipped_eval);
    fprintf(stderr, "coverage:");
    for (size_t w = 0; w < sizeof coverage_words / sizeof *coverage_words; w++)
        fprintf(stderr, " [%s]%ld", coverage_words[w], coverage[w]);
    fprintf(stderr, "\n");
    TEST_MAIN_END();
}
