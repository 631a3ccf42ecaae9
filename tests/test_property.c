/* Property test: random well-typed expressions over every operator, built
 * through the public C API from a seeded generator, with symbolic and numeric
 * dimensions; every derivative is compared entry by entry with central finite
 * differences of nb_eval at random points.
 *
 * For each expression f (scalar, vector or row valued) and each variable v it
 * was built from (scalar, vector, row, or matrix when f is scalar):
 *   - ∂f/∂v (numerator layout) has the documented type and size and matches
 *     central differences (h = 1e-6·max(1, |x|), relative error
 *     |a − b|/max(1, |a|, |b|) ≤ 1e-5; a mismatch is re-measured with a
 *     Richardson-extrapolated difference before it counts as a failure);
 *   - the denominator layout is the transpose (the same for a matrix v);
 *   - nb_gradient, nb_jvp and nb_vjp agree with the Jacobian; nb_check agrees;
 *   - for a vector f, a path through a matrix node may be refused as a tensor;
 * for lists of scalar variables the Jacobian's columns are the single
 * derivatives; for scalar f the Jacobian of the gradient (a Hessian) passes the
 * same checks.  Every result prints in all three formats, and the ASCII form of
 * f parses back (fresh context, same declarations) to equal values.
 *
 * Kinks (abs, max, min, relu, comparisons, norm2 at 0) are avoided: each
 * kink's argument (a − b) is recorded while building, a point where one lies
 * within 1e-3 of its kink is redrawn, and a step that crosses a kink is not
 * compared.  Points where f does not evaluate are redrawn; both are counted and
 * most points must be valid.
 *
 * After the random part come fixed cases: minimal reproductions of the bugs
 * this test found (two of them guard against exponential time with a CPU
 * watchdog).
 *
 * Usage: test_property [SEED [COUNT]]  (default: a fixed seed, 1000 expressions).
 * Expression i uses seed SEED + i, and failures print it: `test_property S 1`
 * redoes the expression with seed S alone. */
#include "nabla.h"
#include "ops_table.h"
#include "test.h"
#include "roundtrip.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_VARS 48
#define MAX_KINKS 96
#define POINT_TRIES 12
#define POINTS 2 /* random points per expression */
#define KINK_MARGIN 1e-3
#define TOL 1e-5

/* ---- random numbers ------------------------------------------------------ */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int rnd(uint64_t *s, int n) { return (int)(next_u64(s) % (uint64_t)n); }
static double uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * ((double)(next_u64(s) >> 11) * 0x1.0p-53);
}

/* Structural forms the generator builds by hand; the element-wise operators
 * are drawn from the registry and counted in registry_used. */
enum { U_ADD, U_SUB, U_MUL, U_DIV, U_POW_C, U_POW_V, U_MATMUL, U_TRANSPOSE, U_SUM, U_MEAN, U_DOT, U_NORM2, U_DIAG,
       U_VECLIT, U_MATLIT, U_EXP, U_SIN, U_TANH, U_SQRT, U_SIGMOID, U_RELU, U_SOFTMAX, U_LOGSOFTMAX, U_XENT,
       U_ROWBCAST, U_VSOFTMAX, U_COUNT };
static const char *use_names[U_COUNT] = {"add", "sub", "mul", "div", "pow-const", "pow-var", "matmul", "transpose",
                                         "sum", "mean", "dot", "norm2", "diag", "veclit", "matlit", "exp", "sin",
                                         "tanh", "sqrt", "sigmoid", "relu", "softmax", "logsoftmax", "softmax_xent",
                                         "row-broadcast", "vector-softmax"};

/* ---- statistics ------------------------------------------------------------ */
static struct {
    long exprs, exprs_skipped, points, points_tried, domain, kinky, large;
    long derivs, entries, unsupported, fd_retry, fd_crossing, lists, roundtrips, roundtrip_same_text;
    long jvps, denominators, build_failed, checks, roundtrip_identity, matrix_f, hessians;
    long op_used[U_COUNT];
    long registry_used[NB_OP_COUNT]; /* element-wise operators drawn from ops.def */
} st;

/* ---- the generator ------------------------------------------------------- */
typedef struct {
    char name[16];
    nb_type t;
    nb_expr *e;
    bool used;      /* appears in f (as built) */
    bool direction; /* a tangent/cotangent variable for jvp/vjp */
    double *value;
    int64_t rows, cols;
} var;

typedef struct {
    nb_ctx *ctx;
    uint64_t rng;
    nb_dim dims[3];
    const char *dimname[3]; /* NULL for a numeric dim */
    int64_t dimsize[3];     /* the size bound at the current point */
    var vars[MAX_VARS];
    int nvars;
    int counter[4];
    nb_expr *kinks[MAX_KINKS];
    int nkinks;
    bool overflow; /* too many variables or kinks: skip this expression */
} gen;

static nb_type type_of_kind(nb_kind k, nb_dim r, nb_dim c) {
    switch (k) {
    case NB_SCALAR: return nb_scalar_type();
    case NB_VECTOR: return nb_vector_type(r);
    case NB_ROW: {
        nb_type t = {NB_ROW, 1, c};
        return t;
    }
    default: return nb_matrix_type(r, c);
    }
}

static bool type_same(nb_type a, nb_type b) { return a.kind == b.kind && a.rows == b.rows && a.cols == b.cols; }

static nb_expr *new_var(gen *g, nb_type t, bool direction) {
    static const char prefix[4] = {'s', 'v', 'r', 'M'};
    if (g->nvars >= MAX_VARS) {
        g->overflow = true;
        return NULL;
    }
    var *v = &g->vars[g->nvars];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s%c%d", direction ? "d" : "", prefix[t.kind], g->counter[t.kind]++);
    v->t = t;
    v->direction = direction;
    v->e = nb_var(g->ctx, v->name, t);
    if (!v->e) return NULL;
    g->nvars++;
    return v->e;
}

/* A variable of type t: usually an existing one (shared subexpressions). */
static nb_expr *get_var(gen *g, nb_type t) {
    int have[MAX_VARS], n = 0;
    for (int i = 0; i < g->nvars; i++)
        if (!g->vars[i].direction && type_same(g->vars[i].t, t)) have[n++] = i;
    var *v;
    if (n > 0 && (n >= 3 || rnd(&g->rng, 10) < 6)) v = &g->vars[have[rnd(&g->rng, n)]];
    else {
        if (!new_var(g, t, false)) return NULL;
        v = &g->vars[g->nvars - 1];
    }
    v->used = true;
    return v->e;
}

/* Records d (a − b, or the argument) whose sign selects a branch. */
static void kink(gen *g, nb_expr *d) {
    if (!d) return;
    if (g->nkinks >= MAX_KINKS) {
        g->overflow = true;
        return;
    }
    g->kinks[g->nkinks++] = d;
}

static nb_expr *identity(gen *g, nb_dim n) { return nb_identity(g->ctx, n); }

static nb_dim pick_dim(gen *g) { return g->dims[rnd(&g->rng, 3)]; }
static bool numeric(nb_dim d) { return d > 0; }

static nb_expr *gen_any(gen *g, nb_type t, int depth);
static nb_expr *gen_pos(gen *g, nb_type t, int depth);

static nb_expr *constant(gen *g) {
    switch (rnd(&g->rng, 6)) {
    case 0: return nb_num(g->ctx, rnd(&g->rng, 7) - 3);
    case 1: return nb_num(g->ctx, rnd(&g->rng, 4) + 1);
    case 2: return nb_rational(g->ctx, rnd(&g->rng, 5) - 2, rnd(&g->rng, 3) + 2);
    case 3: return nb_num(g->ctx, uniform(&g->rng, -2, 2));
    case 4: return nb_num(g->ctx, 0.5);
    default: return nb_num(g->ctx, -1.25);
    }
}

/* Something whose entries stay small: an argument for exp and tan. */
static nb_expr *gen_bounded(gen *g, nb_type t, int depth) {
    nb_ctx *c = g->ctx;
    switch (rnd(&g->rng, 5)) {
    case 0: st.op_used[U_TANH]++; return nb_tanh(c, gen_any(g, t, depth));
    case 1: st.op_used[U_SIN]++; return nb_sin(c, gen_any(g, t, depth));
    case 2: st.op_used[U_SIGMOID]++; return nb_sigmoid(c, gen_any(g, t, depth));
    case 3: return nb_mul(c, nb_num(c, 0.5), gen_any(g, t, 0));
    default: return gen_any(g, t, 0);
    }
}

/* A strictly positive expression (bases of powers, log, sqrt, divisors). */
static nb_expr *gen_pos(gen *g, nb_type t, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth > 0 ? depth - 1 : 0;
    switch (rnd(&g->rng, t.kind == NB_MATRIX ? 6 : 5)) {
    case 0: st.op_used[U_EXP]++; return nb_exp(c, gen_bounded(g, t, d));
    case 1:
        st.op_used[U_POW_C]++;
        return nb_add(c, nb_pow(c, gen_any(g, t, d), nb_num(c, 2)), nb_num(c, rnd(&g->rng, 2) ? 1 : 0.5));
    case 2: st.op_used[U_SIGMOID]++; return nb_add(c, nb_sigmoid(c, gen_any(g, t, d)), nb_rational(c, 1, 4));
    case 3: st.op_used[U_EXP]++; return nb_exp(c, get_var(g, t));
    case 4:
        if (t.kind == NB_SCALAR && depth > 0) {
            /* a sum of squares: norm-like */
            nb_type vt = nb_vector_type(pick_dim(g));
            st.op_used[U_SUM]++;
            return nb_add(c, nb_sum(c, nb_pow(c, gen_any(g, vt, d), nb_num(c, 2))), nb_num(c, 1));
        }
        return nb_add(c, nb_mul(c, gen_any(g, t, d), gen_any(g, t, d)), nb_num(c, 3)); /* may be ≤ 0: rare */
    default: st.op_used[U_SOFTMAX]++; return nb_softmax(c, gen_any(g, t, d));
    }
}

/* An argument that suits an operator's domain (its ops.def flags). */
static nb_expr *gen_argument(gen *g, unsigned flags, nb_type t, int depth) {
    nb_ctx *c = g->ctx;
    if (flags & NB_F_POSITIVE_ARG) return gen_pos(g, t, depth);
    if (flags & NB_F_SMALL_ARG) return nb_mul(c, nb_num(c, 0.7), nb_tanh(c, gen_any(g, t, depth)));
    nb_expr *x = gen_any(g, t, depth);
    if (flags & NB_F_NONSMOOTH) kink(g, x);
    return x;
}

/* An element-wise function of x (any shape): an operator of ops.def's
 * element-wise unary class, or one of the spellings built from operators. */
static nb_expr *elementwise_unary(gen *g, nb_type t, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_expr *x;
    switch (rnd(&g->rng, 13)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7: {
        int op = test_op_pick(NB_CLASS_EW_UNARY, next_u64(&g->rng));
        st.registry_used[op]++;
        return test_op_apply(c, op, gen_argument(g, test_ops[op].flags, t, d), NULL);
    }
    case 8: st.op_used[U_SQRT]++; return nb_sqrt(c, gen_pos(g, t, d));
    case 9:
        st.op_used[U_RELU]++;
        x = gen_any(g, t, d);
        kink(g, x);
        return nb_relu(c, x);
    case 10: return nb_neg(c, gen_any(g, t, d));
    case 11: /* constant exponents on a positive base: ½, −1, 3/2, −½, 1/3 */
    {
        static const int64_t e[][2] = {{1, 2}, {-1, 1}, {3, 2}, {-1, 2}, {1, 3}, {-2, 1}};
        int k = rnd(&g->rng, 6);
        st.op_used[U_POW_C]++;
        return nb_pow(c, gen_pos(g, t, d), nb_rational(c, e[k][0], e[k][1]));
    }
    default: /* integer powers of anything */
        st.op_used[U_POW_C]++;
        return nb_pow(c, gen_any(g, t, d), nb_num(c, rnd(&g->rng, 2) + 2));
    }
}

/* An operand for max/min/comparisons that is not the other one: max(a, a) = a
 * is smooth, but its derivative by the kink convention (0 at a tie) is 0. */
static nb_expr *distinct(gen *g, nb_expr *a, nb_type t, int depth) {
    nb_expr *b = gen_any(g, t, depth);
    for (int i = 0; i < 3 && b == a; i++) b = gen_any(g, t, depth);
    return b == a ? nb_add(g->ctx, b, nb_num(g->ctx, 0.5)) : b;
}

/* An element-wise binary operation producing type t (scalar expansion and
 * row broadcasting on either side). */
static nb_expr *elementwise_binary(gen *g, nb_type t, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_type other = t;
    int shape = rnd(&g->rng, 10);
    if (t.kind != NB_SCALAR && shape < 2) other = nb_scalar_type(); /* scalar expansion */
    else if (t.kind == NB_MATRIX && shape < 4) {
        other = type_of_kind(NB_ROW, 1, t.cols); /* M + r' */
        st.op_used[U_ROWBCAST]++;
    }
    bool swap = rnd(&g->rng, 2);
    nb_expr *a, *b, *x;
    int op = rnd(&g->rng, 10);
    switch (op) {
    case 0:
    case 1:
        st.op_used[U_ADD]++;
        a = gen_any(g, t, d), b = gen_any(g, other, d);
        return swap ? nb_add(c, b, a) : nb_add(c, a, b);
    case 2:
        st.op_used[U_SUB]++;
        a = gen_any(g, t, d), b = gen_any(g, other, d);
        return swap ? nb_sub(c, b, a) : nb_sub(c, a, b);
    case 3:
    case 4:
        st.op_used[U_MUL]++;
        a = gen_any(g, t, d), b = gen_any(g, other, d);
        return swap ? nb_mul(c, b, a) : nb_mul(c, a, b);
    case 5:
        st.op_used[U_DIV]++;
        if (swap) return nb_div(c, gen_any(g, other, d), gen_pos(g, t, d));
        return nb_div(c, gen_any(g, t, d), gen_pos(g, other, d));
    case 6: /* variable exponent on a positive base */
        st.op_used[U_POW_V]++;
        if (swap) return nb_pow(c, gen_pos(g, other, d), nb_mul(c, nb_num(c, 0.5), gen_any(g, t, d)));
        return nb_pow(c, gen_pos(g, t, d), nb_tanh(c, gen_any(g, other, d)));
    default: { /* an element-wise binary operator of ops.def: max, min, comparisons, … */
        int k = test_op_pick(NB_CLASS_EW_BINARY, next_u64(&g->rng));
        unsigned flags = test_ops[k].flags;
        st.registry_used[k]++;
        a = gen_any(g, t, d), b = distinct(g, a, other, d);
        if (swap) x = a, a = b, b = x;
        if (flags & NB_F_NONSMOOTH) kink(g, nb_sub(c, a, b));
        nb_expr *y = test_op_apply(c, k, a, b);
        if (!(flags & NB_F_INDICATOR)) return y;
        /* an indicator times something smooth, as in 1[u > 0] ⊙ u */
        nb_expr *smooth = gen_any(g, rnd(&g->rng, 3) ? t : nb_scalar_type(), d);
        return rnd(&g->rng, 2) ? nb_mul(c, y, smooth) : nb_mul(c, smooth, y);
    }
    }
}

static nb_expr *gen_literal(gen *g, nb_type t, int depth) {
    nb_expr *e[16];
    size_t rows = (size_t)t.rows, cols = (size_t)t.cols, n = rows * cols;
    for (size_t i = 0; i < n; i++) {
        int k = rnd(&g->rng, 4);
        e[i] = k == 0 ? constant(g) : gen_any(g, nb_scalar_type(), k == 1 ? depth - 1 : 0);
    }
    if (t.kind == NB_VECTOR) {
        st.op_used[U_VECLIT]++;
        return nb_vector_lit(g->ctx, rows, e);
    }
    st.op_used[U_MATLIT]++;
    return nb_matrix_lit(g->ctx, rows, cols, e);
}

static nb_expr *gen_scalar(gen *g, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_dim n = pick_dim(g), k = pick_dim(g);
    nb_type vn = nb_vector_type(n), mnk = nb_matrix_type(n, k);
    nb_expr *x;
    switch (rnd(&g->rng, 17)) {
    case 0:
    case 1:
    case 2: return elementwise_unary(g, nb_scalar_type(), depth);
    case 3:
    case 4:
    case 5: return elementwise_binary(g, nb_scalar_type(), depth);
    case 6: st.op_used[U_SUM]++; return nb_sum(c, gen_any(g, rnd(&g->rng, 2) ? vn : mnk, d));
    case 7: st.op_used[U_MEAN]++; return nb_mean(c, gen_any(g, rnd(&g->rng, 2) ? vn : mnk, d));
    case 8: st.op_used[U_DOT]++; return nb_dot(c, gen_any(g, vn, d), gen_any(g, vn, d));
    case 9:
        st.op_used[U_NORM2]++;
        x = gen_any(g, rnd(&g->rng, 3) ? vn : mnk, d);
        kink(g, nb_sum(c, nb_pow(c, x, nb_num(c, 2)))); /* not differentiable at 0 */
        return nb_norm2(c, x);
    case 10: /* row · column */
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, type_of_kind(NB_ROW, 1, n), d), gen_any(g, vn, d));
    case 11: /* quadratic form xᵀ·M·y */
        st.op_used[U_MATMUL] += 2;
        st.op_used[U_TRANSPOSE]++;
        return nb_matmul(c, nb_matmul(c, nb_transpose(c, gen_any(g, vn, d)), gen_any(g, mnk, d)),
                         gen_any(g, nb_vector_type(k), d));
    case 12: { /* softmax cross-entropy against labels or probabilities */
        st.op_used[U_XENT]++;
        nb_expr *Z = gen_any(g, mnk, d);
        nb_expr *Y = rnd(&g->rng, 2) ? get_var(g, mnk) : nb_softmax(c, gen_any(g, mnk, d > 0 ? d - 1 : 0));
        return nb_softmax_xent(c, Z, Y);
    }
    case 13: /* sum(logsoftmax(Z) ⊙ W) */
        st.op_used[U_LOGSOFTMAX]++;
        return nb_sum(c, nb_mul(c, nb_logsoftmax(c, gen_any(g, mnk, d)), gen_any(g, mnk, d > 0 ? d - 1 : 0)));
    case 14: /* sum(diag(v)·M) and friends */
        st.op_used[U_DIAG]++;
        return nb_sum(c, nb_matmul(c, nb_diag(c, gen_any(g, vn, d)), gen_any(g, mnk, d)));
    case 15: return constant(g);
    default: return get_var(g, nb_scalar_type());
    }
}

static nb_expr *gen_vector(gen *g, nb_dim n, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_dim k = pick_dim(g);
    nb_type t = nb_vector_type(n);
    switch (rnd(&g->rng, 15)) {
    case 0:
    case 1:
    case 2: return elementwise_unary(g, t, depth);
    case 3:
    case 4:
    case 5: return elementwise_binary(g, t, depth);
    case 6: /* matrix · vector */
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, nb_matrix_type(n, k), d), gen_any(g, nb_vector_type(k), d));
    case 7: /* diag(v)·u */
        st.op_used[U_DIAG]++;
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, nb_diag(c, gen_any(g, t, d)), gen_any(g, t, d));
    case 8: /* (rᵀ) */
        st.op_used[U_TRANSPOSE]++;
        return nb_transpose(c, gen_any(g, type_of_kind(NB_ROW, 1, n), d));
    case 9: /* softmax(Z)·v */
        st.op_used[U_SOFTMAX]++;
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, nb_softmax(c, gen_any(g, nb_matrix_type(n, k), d)), gen_any(g, nb_vector_type(k), d));
    case 10:
        if (numeric(n)) return gen_literal(g, t, depth);
        return nb_mul(c, gen_any(g, nb_scalar_type(), d), gen_any(g, t, d));
    case 13: st.op_used[U_VSOFTMAX]++; return nb_softmax(c, gen_any(g, t, d)); /* one sample */
    case 11: /* (c·I + diag(u))·v and friends */
        st.op_used[U_DIAG]++;
        return nb_matmul(c, nb_add(c, nb_mul(c, constant(g), identity(g, n)), nb_diag(c, gen_any(g, t, d))),
                         gen_any(g, t, d));
    default: return get_var(g, t);
    }
}

static nb_expr *gen_row(gen *g, nb_dim n, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_dim k = pick_dim(g);
    nb_type t = type_of_kind(NB_ROW, 1, n);
    switch (rnd(&g->rng, 10)) {
    case 0:
    case 1:
    case 2:
        st.op_used[U_TRANSPOSE]++;
        return nb_transpose(c, gen_any(g, nb_vector_type(n), d));
    case 3: /* row · matrix */
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, type_of_kind(NB_ROW, 1, k), d), gen_any(g, nb_matrix_type(k, n), d));
    case 4: /* row · diag(v) */
        st.op_used[U_MATMUL]++;
        st.op_used[U_DIAG]++;
        return nb_matmul(c, gen_any(g, t, d), nb_diag(c, gen_any(g, nb_vector_type(n), d)));
    case 5: return elementwise_unary(g, t, depth);
    case 6:
    case 7: return elementwise_binary(g, t, depth);
    case 8: /* 1ᵀ-like: a vᵀ·M */
        st.op_used[U_MATMUL]++;
        st.op_used[U_TRANSPOSE]++;
        return nb_matmul(c, nb_transpose(c, gen_any(g, nb_vector_type(k), d)), gen_any(g, nb_matrix_type(k, n), d));
    default: return get_var(g, t);
    }
}

static nb_expr *gen_matrix(gen *g, nb_dim r, nb_dim cdim, int depth) {
    nb_ctx *c = g->ctx;
    int d = depth - 1;
    nb_dim k = pick_dim(g);
    nb_type t = nb_matrix_type(r, cdim);
    switch (rnd(&g->rng, 16)) {
    case 0:
    case 1: return elementwise_unary(g, t, depth);
    case 2:
    case 3:
    case 4: return elementwise_binary(g, t, depth);
    case 5: /* matrix · matrix */
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, nb_matrix_type(r, k), d), gen_any(g, nb_matrix_type(k, cdim), d));
    case 6: /* column · row */
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, nb_vector_type(r), d), gen_any(g, type_of_kind(NB_ROW, 1, cdim), d));
    case 7: /* diag(v) · M */
        st.op_used[U_DIAG]++;
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, nb_diag(c, gen_any(g, nb_vector_type(r), d)), gen_any(g, t, d));
    case 8: /* M · diag(v) */
        st.op_used[U_DIAG]++;
        st.op_used[U_MATMUL]++;
        return nb_matmul(c, gen_any(g, t, d), nb_diag(c, gen_any(g, nb_vector_type(cdim), d)));
    case 9:
        st.op_used[U_TRANSPOSE]++;
        return nb_transpose(c, gen_any(g, nb_matrix_type(cdim, r), d));
    case 10:
        if (r == cdim) {
            st.op_used[U_DIAG]++;
            if (rnd(&g->rng, 2)) return nb_diag(c, gen_any(g, nb_vector_type(r), d));
            return nb_add(c, gen_any(g, t, d), nb_mul(c, constant(g), identity(g, r)));
        }
        return gen_any(g, t, d);
    case 11: st.op_used[U_SOFTMAX]++; return nb_softmax(c, gen_any(g, t, d));
    case 12: st.op_used[U_LOGSOFTMAX]++; return nb_logsoftmax(c, gen_any(g, t, d));
    case 13:
        if (numeric(r) && numeric(cdim)) return gen_literal(g, t, depth);
        return get_var(g, t);
    default: return get_var(g, t);
    }
}

static nb_expr *gen_any(gen *g, nb_type t, int depth) {
    if (g->overflow) return NULL;
    if (depth <= 0) {
        if (t.kind == NB_SCALAR && rnd(&g->rng, 4) == 0) return constant(g);
        if (t.kind == NB_ROW && rnd(&g->rng, 2)) {
            st.op_used[U_TRANSPOSE]++;
            return nb_transpose(g->ctx, get_var(g, nb_vector_type(t.cols)));
        }
        return get_var(g, t);
    }
    switch (t.kind) {
    case NB_SCALAR: return gen_scalar(g, depth);
    case NB_VECTOR: return gen_vector(g, t.rows, depth);
    case NB_ROW: return gen_row(g, t.cols, depth);
    default: return gen_matrix(g, t.rows, t.cols, depth);
    }
}

/* ---- points ----------------------------------------------------------------- */
static int64_t size_of(const gen *g, nb_dim d) {
    if (d > 0) return d;
    for (int i = 0; i < 3; i++)
        if (g->dims[i] == d) return g->dimsize[i];
    return 0;
}

static size_t count(const nb_matrix *m) { return (size_t)m->rows * (size_t)m->cols; }
static size_t entries(const var *v) { return (size_t)v->rows * (size_t)v->cols; }

static bool set_var(gen *g, var *v) { return nb_set_value(g->ctx, v->name, v->rows, v->cols, v->value) == 0; }

/* Binds fresh sizes to the symbolic dims and fresh values to every variable. */
static bool draw_point(gen *g) {
    nb_unbind_all(g->ctx);
    for (int i = 0; i < 3; i++) {
        g->dimsize[i] = g->dims[i];
        if (g->dims[i] < 0) {
            g->dimsize[i] = 1 + rnd(&g->rng, 4);
            if (nb_bind_dim(g->ctx, g->dims[i], g->dimsize[i]) != 0) return false;
        }
    }
    for (int i = 0; i < g->nvars; i++) {
        var *v = &g->vars[i];
        v->rows = size_of(g, v->t.rows);
        v->cols = size_of(g, v->t.cols);
        free(v->value);
        v->value = malloc(entries(v) * sizeof *v->value);
        if (!v->value) return false;
        for (size_t k = 0; k < entries(v); k++) v->value[k] = uniform(&g->rng, -1.5, 1.5);
        if (!set_var(g, v)) {
            CHECK(0, "nb_set_value(%s, %lldx%lld): %s", v->name, (long long)v->rows, (long long)v->cols, nb_error(g->ctx));
            return false;
        }
    }
    return true;
}

static bool eval(nb_ctx *ctx, const nb_expr *e, nb_matrix *out) {
    out->data = NULL;
    if (nb_eval(ctx, e, out) != 0) {
        out->data = NULL;
        return false;
    }
    return true;
}

/* 1 if every kink argument is at least `margin` from its kink, 0 if not, and
 * its sign pattern hashed into *sig. */
static int kink_state(gen *g, double margin, uint64_t *sig) {
    uint64_t h = 1469598103934665603ULL;
    int clear = 1;
    for (int i = 0; i < g->nkinks; i++) {
        nb_matrix d;
        if (!eval(g->ctx, g->kinks[i], &d)) {
            nb_clear_error(g->ctx);
            h = (h ^ 0xff) * 1099511628211ULL;
            clear = 0;
            continue;
        }
        for (size_t k = 0; k < count(&d); k++) {
            /* an exact 0 counts too: max(min(a, b), b) ties exactly where
             * a > b, and there the kink convention (0) is not the slope */
            if (fabs(d.data[k]) < margin) clear = 0;
            h = (h ^ (uint64_t)(d.data[k] > 0 ? 1 : d.data[k] < 0 ? 2 : 3)) * 1099511628211ULL;
        }
        nb_matrix_free(&d);
    }
    *sig = h;
    return clear;
}

/* Central difference of every entry of f w.r.t. entry k of v, step h; false
 * (and *crossed) when the step crosses a kink or f fails to evaluate. */
static bool central(gen *g, nb_expr *f, var *v, size_t k, double h, uint64_t sig0, double *out, size_t m,
                    bool *crossed) {
    double x0 = v->value[k];
    nb_matrix p = {0, 0, NULL}, q = {0, 0, NULL};
    bool ok = true;
    uint64_t sig;
    v->value[k] = x0 + h;
    ok = set_var(g, v) && eval(g->ctx, f, &p);
    if (ok && g->nkinks && (kink_state(g, 0, &sig), sig != sig0)) *crossed = true, ok = false;
    v->value[k] = x0 - h;
    ok = ok && set_var(g, v) && eval(g->ctx, f, &q);
    if (ok && g->nkinks && (kink_state(g, 0, &sig), sig != sig0)) *crossed = true, ok = false;
    double step = (x0 + h) - (x0 - h);
    v->value[k] = x0;
    if (!set_var(g, v)) ok = false;
    if (ok && (count(&p) != m || count(&q) != m)) ok = false;
    for (size_t i = 0; ok && i < m; i++) out[i] = (p.data[i] - q.data[i]) / step;
    nb_matrix_free(&p);
    nb_matrix_free(&q);
    if (!ok) nb_clear_error(g->ctx);
    return ok;
}

static double rel_err(double a, double b) { return fabs(a - b) / fmax(1.0, fmax(fabs(a), fabs(b))); }

/* ---- reporting -------------------------------------------------------------- */
/* Failures are counted per call site; the first few of each kind print the
 * seed (rerun with `test_property SEED 1`), f and the derivative. */
#define SHOW_PER_SITE 3
static uint64_t cur_seed;
static const char *phase = ""; /* "second derivative: " while checking the gradient's Jacobian */
static int site_failures[2048];

#define FAIL_AT(g, f, extra, ...) fail_at(g, f, extra, __LINE__, __VA_ARGS__)
static void fail_at(gen *g, nb_expr *f, nb_expr *extra, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fail_at(gen *g, nb_expr *f, nb_expr *extra, int line, const char *fmt, ...) {
    test_failed++;
    int n = ++site_failures[line < 2048 ? line : 0];
    if (n > SHOW_PER_SITE) return;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: FAIL: [seed %llu] %s%s\n", __FILE__, line, (unsigned long long)cur_seed, phase, what);
    char *s = f ? nb_to_string(g->ctx, f, NB_FMT_ASCII) : NULL;
    char *x = extra ? nb_to_string(g->ctx, extra, NB_FMT_ASCII) : NULL;
    if (s) fprintf(stderr, "    f = %.600s\n", s);
    if (x) fprintf(stderr, "    derivative = %.600s\n", x);
    fprintf(stderr, "    dims:");
    for (int i = 0; i < 3; i++)
        fprintf(stderr, " %s=%lld", g->dimname[i] ? g->dimname[i] : "#", (long long)g->dimsize[i]);
    fprintf(stderr, "\n");
    if (n == SHOW_PER_SITE) fprintf(stderr, "    (further failures at line %d are counted, not shown)\n", line);
    free(s);
    free(x);
}

static void failure_summary(void) {
    for (int i = 0; i < 2048; i++)
        if (site_failures[i]) fprintf(stderr, "failures at line %d: %d\n", i, site_failures[i]);
}

/* Prints e in every format; all must succeed. */
static void print_all(gen *g, nb_expr *f, nb_expr *e) {
    for (int fmt = 0; fmt < 3; fmt++) {
        char *s = nb_to_string(g->ctx, e, (nb_format)fmt);
        if (s && *s) test_passed++;
        else FAIL_AT(g, f, e, "printing failed (format %d)", fmt);
        free(s);
    }
}

/* ---- the derivative checks -------------------------------------------------- */
typedef struct {
    var *v;
    nb_matrix J; /* numerator layout, evaluated */
} single;

static var *find_var(gen *g, nb_type t, bool direction) {
    for (int i = 0; i < g->nvars; i++)
        if (g->vars[i].direction == direction && type_same(g->vars[i].t, t)) return &g->vars[i];
    return NULL;
}

/* Checks values a (n entries) against b, reporting the first mismatch. */
static bool same_values(const double *a, const double *b, size_t n, double tol, size_t *where) {
    for (size_t i = 0; i < n; i++)
        if (!(rel_err(a[i], b[i]) <= tol)) {
            *where = i;
            return false;
        }
    return true;
}

/* ∂fᵢ/∂(entry k of v, row-major) from the evaluated derivative D: a vector f
 * of a matrix v has its columns in vec (column-major) order. */
static double jacobian_entry(const nb_matrix *D, bool scalar_f, bool vec_order, const var *v, size_t i, size_t k) {
    size_t n = (size_t)(v->rows * v->cols);
    size_t col = vec_order ? (k % (size_t)v->cols) * (size_t)v->rows + k / (size_t)v->cols : k;
    return scalar_f ? D->data[k] : D->data[i * n + col];
}

static void check_one(gen *g, nb_expr *f, const nb_matrix *F, var *v, single *out) {
    nb_ctx *c = g->ctx;
    bool scalar_f = nb_type_of(f).kind == NB_SCALAR;
    nb_kind vk = v->t.kind;
    size_t m = count(F), n = entries(v);
    char msg[256];
    out->v = v;
    out->J.data = NULL;
    /* a vector f of a matrix v: ∂f/∂vec(v)ᵀ, columns in vec (column-major) order */
    bool vec_order = !scalar_f && vk == NB_MATRIX;
    nb_expr *J = nb_derivative(c, f, 1, &v->e, NB_NUMERATOR);
    if (!J) {
        if (!scalar_f && strstr(nb_error(c), "tensor")) {
            st.unsupported++;
            nb_clear_error(c);
            return;
        }
        snprintf(msg, sizeof msg, "nb_derivative w.r.t. %s failed: %s", v->name, nb_error(c));
        FAIL_AT(g, f, NULL, "%s", msg);
        nb_clear_error(c);
        return;
    }
    st.derivs++;
    if (st.derivs % 7 == 0) print_all(g, f, J);
    /* the documented shape: gradient row, Jacobian m x n, matrix-shaped gradient */
    nb_kind want_kind = scalar_f ? (vk == NB_SCALAR ? NB_SCALAR : vk == NB_MATRIX ? NB_MATRIX : NB_ROW)
                                 : (vk == NB_SCALAR ? NB_VECTOR : NB_MATRIX);
    int64_t want_rows = scalar_f ? (vk == NB_MATRIX ? v->rows : 1) : (int64_t)m;
    int64_t want_cols = scalar_f && vk == NB_MATRIX ? v->cols : (int64_t)n;
    if (nb_type_of(J).kind != want_kind) {
        snprintf(msg, sizeof msg, "d/d%s has kind %d, want %d", v->name, (int)nb_type_of(J).kind, (int)want_kind);
        FAIL_AT(g, f, J, "%s", msg);
    }
    nb_matrix D;
    if (!eval(c, J, &D)) {
        snprintf(msg, sizeof msg, "d/d%s does not evaluate where f does: %s", v->name, nb_error(c));
        FAIL_AT(g, f, J, "%s", msg);
        nb_clear_error(c);
        return;
    }
    if (D.rows != want_rows || D.cols != want_cols) {
        snprintf(msg, sizeof msg, "d/d%s evaluates to %lldx%lld, want %lldx%lld", v->name, (long long)D.rows,
                 (long long)D.cols, (long long)want_rows, (long long)want_cols);
        FAIL_AT(g, f, J, "%s", msg);
        nb_matrix_free(&D);
        return;
    }
    /* finite differences, entry by entry */
    uint64_t sig0 = 0;
    if (g->nkinks) kink_state(g, 0, &sig0);
    double *num = malloc(m * sizeof *num), *num2 = malloc(m * sizeof *num2);
    bool bad = false;
    for (size_t k = 0; k < n && !bad && num && num2; k++) {
        double x0 = v->value[k];
        bool crossed = false;
        if (!central(g, f, v, k, 1e-6 * fmax(1, fabs(x0)), sig0, num, m, &crossed)) {
            st.fd_crossing++;
            continue;
        }
        for (size_t i = 0; i < m; i++) {
            double sym = jacobian_entry(&D, scalar_f, vec_order, v, i, k);
            st.entries++;
            if (rel_err(sym, num[i]) <= TOL) continue;
            /* re-measure with a Richardson-extrapolated difference */
            st.fd_retry++;
            double h = 1e-3 * fmax(1, fabs(x0));
            if (!central(g, f, v, k, h, sig0, num, m, &crossed) || !central(g, f, v, k, h / 2, sig0, num2, m, &crossed)) {
                st.fd_crossing++;
                break;
            }
            for (size_t r = 0; r < m; r++) num[r] = (4 * num2[r] - num[r]) / 3;
            for (size_t r = i; r < m && !bad; r++) {
                double s2 = jacobian_entry(&D, scalar_f, vec_order, v, r, k);
                if (rel_err(s2, num[r]) > TOL) {
                    snprintf(msg, sizeof msg, "d f[%zu] / d %s[%zu]: symbolic %.12g, finite difference %.12g", r, v->name,
                             k, s2, num[r]);
                    FAIL_AT(g, f, J, "%s", msg);
                    bad = true;
                }
            }
            break;
        }
    }
    free(num);
    free(num2);
    /* nb_check, the library's own checker, on a sample */
    if (!bad && st.derivs % 10 == 3) {
        double err = -1;
        st.checks++;
        int rc = nb_check(c, f, 1, &v->e, &err);
        if (rc != 0) nb_clear_error(c);
        else if (err > 1e-3 && g->nkinks == 0) {
            snprintf(msg, sizeof msg, "nb_check w.r.t. %s reports %g where this test passed", v->name, err);
            FAIL_AT(g, f, J, "%s", msg);
        }
    }
    /* the denominator layout is the transpose (a matrix gradient keeps its shape) */
    nb_expr *Jd = nb_derivative(c, f, 1, &v->e, NB_DENOMINATOR);
    nb_matrix Dd;
    if (!Jd || !eval(c, Jd, &Dd)) {
        snprintf(msg, sizeof msg, "denominator layout d/d%s failed: %s", v->name, nb_error(c));
        FAIL_AT(g, f, Jd, "%s", msg);
        nb_clear_error(c);
    } else {
        bool keep = scalar_f && vk == NB_MATRIX;
        bool ok = keep ? (Dd.rows == D.rows && Dd.cols == D.cols) : (Dd.rows == D.cols && Dd.cols == D.rows);
        for (int64_t i = 0; ok && i < D.rows; i++)
            for (int64_t j = 0; ok && j < D.cols; j++) {
                double a = D.data[i * D.cols + j], b = keep ? Dd.data[i * D.cols + j] : Dd.data[j * D.rows + i];
                ok = rel_err(a, b) <= 1e-9;
            }
        st.denominators++;
        if (ok) test_passed++;
        else {
            snprintf(msg, sizeof msg, "denominator layout d/d%s (%lldx%lld) is not the transpose of numerator (%lldx%lld)",
                     v->name, (long long)Dd.rows, (long long)Dd.cols, (long long)D.rows, (long long)D.cols);
            FAIL_AT(g, f, Jd, "%s", msg);
        }
        nb_matrix_free(&Dd);
    }
    /* gradient (scalar f): the derivative shaped like v */
    if (scalar_f) {
        nb_expr *G = nb_gradient(c, f, v->e);
        nb_matrix Gv;
        size_t where = 0;
        if (!G || !eval(c, G, &Gv)) {
            snprintf(msg, sizeof msg, "nb_gradient w.r.t. %s failed: %s", v->name, nb_error(c));
            FAIL_AT(g, f, G, "%s", msg);
            nb_clear_error(c);
        } else {
            bool ok = Gv.rows == v->rows && Gv.cols == v->cols && same_values(Gv.data, D.data, n, 1e-9, &where);
            if (!ok) {
                snprintf(msg, sizeof msg, "nb_gradient w.r.t. %s is %lldx%lld / differs at %zu", v->name,
                         (long long)Gv.rows, (long long)Gv.cols, where);
                FAIL_AT(g, f, G, "%s", msg);
            }
            nb_matrix_free(&Gv);
        }
    }
    /* jvp: J·t (for a matrix v, Σ J ⊙ t) and vjp: uᵀ·J */
    var *t = find_var(g, v->t, true);
    var *u = find_var(g, nb_type_of(f), true);
    if (t) {
        nb_expr *jv = nb_jvp(c, f, v->e, t->e);
        nb_matrix R;
        st.jvps++;
        if (!jv || !eval(c, jv, &R)) {
            snprintf(msg, sizeof msg, "nb_jvp w.r.t. %s failed: %s", v->name, nb_error(c));
            FAIL_AT(g, f, jv, "%s", msg);
            nb_clear_error(c);
        } else {
            double *want = calloc(m, sizeof *want);
            size_t where = 0;
            for (size_t i = 0; want && i < m; i++)
                for (size_t k = 0; k < n; k++) want[i] += jacobian_entry(&D, scalar_f, vec_order, v, i, k) * t->value[k];
            bool ok = want && count(&R) == m;
            for (size_t i = 0; ok && i < m; i++)
                if (fabs(R.data[i] - want[i]) > 1e-8 * fmax(1, fabs(want[i])) * (double)n) ok = false, where = i;
            if (!ok) {
                snprintf(msg, sizeof msg, "nb_jvp w.r.t. %s: %zu entries, differs at %zu", v->name, count(&R), where);
                FAIL_AT(g, f, jv, "%s", msg);
            }
            free(want);
            nb_matrix_free(&R);
        }
    }
    if (u) {
        nb_expr *vj = nb_vjp(c, f, v->e, u->e);
        nb_matrix R;
        st.jvps++;
        if (!vj || !eval(c, vj, &R)) {
            snprintf(msg, sizeof msg, "nb_vjp w.r.t. %s failed: %s", v->name, nb_error(c));
            FAIL_AT(g, f, vj, "%s", msg);
            nb_clear_error(c);
        } else {
            double *want = calloc(n, sizeof *want);
            size_t where = 0;
            for (size_t k = 0; want && k < n; k++)
                for (size_t i = 0; i < m; i++) want[k] += u->value[i] * jacobian_entry(&D, scalar_f, vec_order, v, i, k);
            bool ok = want && count(&R) == n;
            for (size_t k = 0; ok && k < n; k++)
                if (fabs(R.data[k] - want[k]) > 1e-8 * fmax(1, fabs(want[k])) * (double)m) ok = false, where = k;
            if (!ok) {
                snprintf(msg, sizeof msg, "nb_vjp w.r.t. %s: %zu entries, differs at %zu", v->name, count(&R), where);
                FAIL_AT(g, f, vj, "%s", msg);
            }
            free(want);
            nb_matrix_free(&R);
        }
    }
    if (bad) nb_matrix_free(&D);
    else {
        test_passed++;
        out->J = D;
    }
}

/* ∂f/∂(s₁, s₂, …) for a list of scalars: its columns are the single derivatives. */
static void check_list(gen *g, nb_expr *f, const nb_matrix *F, single *s, int ns) {
    nb_ctx *c = g->ctx;
    nb_expr *wrt[8];
    int idx[8], k = 0;
    char msg[200];
    for (int i = 0; i < ns && k < 4; i++)
        if (s[i].v->t.kind == NB_SCALAR && s[i].J.data) idx[k] = i, wrt[k++] = s[i].v->e;
    if (k < 2) return;
    size_t m = count(F);
    for (int layout = 0; layout < 2; layout++) {
        nb_expr *J = nb_derivative(c, f, (size_t)k, wrt, (nb_layout)layout);
        nb_matrix D;
        if (!J || !eval(c, J, &D)) {
            snprintf(msg, sizeof msg, "derivative w.r.t. a list of %d scalars failed: %s", k, nb_error(c));
            FAIL_AT(g, f, J, "%s", msg);
            nb_clear_error(c);
            return;
        }
        st.lists++;
        bool ok = layout == 0 ? (D.rows == (int64_t)m && D.cols == k) : (D.rows == k && D.cols == (int64_t)m);
        for (size_t i = 0; ok && i < m; i++)
            for (int j = 0; ok && j < k; j++) {
                double a = layout == 0 ? D.data[i * (size_t)k + (size_t)j] : D.data[(size_t)j * m + i];
                ok = rel_err(a, s[idx[j]].J.data[i]) <= 1e-9;
            }
        if (!ok) {
            snprintf(msg, sizeof msg, "list derivative (%s layout, %lldx%lld) disagrees with the single ones",
                     layout ? "denominator" : "numerator", (long long)D.rows, (long long)D.cols);
            FAIL_AT(g, f, J, "%s", msg);
        } else test_passed++;
        nb_matrix_free(&D);
    }
}

static bool name_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Whether the text has the name I (the identity matrix). */
static bool has_identity(const char *s) {
    for (const char *p = s; (p = strchr(p, 'I')) != NULL; p++)
        if ((p == s || !name_char(p[-1])) && !name_char(p[1])) return true;
    return false;
}

/* print(f) in ASCII parses back, in a fresh context with the same
 * declarations, to an expression with the same values. */
static void check_roundtrip(gen *g, nb_expr *f, const nb_matrix *F) {
    char *text = nb_to_string(g->ctx, f, NB_FMT_ASCII);
    char decls[4096] = "", tb[64], msg[256];
    size_t len = 0;
    if (!text) {
        CHECK(0, "nb_to_string failed");
        return;
    }
    if (has_identity(text)) {
        /* I (from nb_identity) has no spelling in the language */
        st.roundtrip_identity++;
        free(text);
        return;
    }
    for (int i = 0; i < g->nvars; i++)
        len += (size_t)snprintf(decls + len, sizeof decls - len, "%s: %s\n", g->vars[i].name,
                                nb_type_str(g->ctx, g->vars[i].t, tb, sizeof tb));
    nb_ctx *c2 = nb_ctx_new();
    nb_expr *f2 = NULL;
    nb_matrix V = {0, 0, NULL};
    if (nb_declare(c2, decls) != 0) {
        snprintf(msg, sizeof msg, "nb_declare(\"%.100s\") failed: %s", decls, nb_error(c2));
        FAIL_AT(g, f, NULL, "%s", msg);
        goto done;
    }
    f2 = nb_parse(c2, text);
    if (!f2) {
        snprintf(msg, sizeof msg, "printed f does not parse back: %s (column %d)", nb_error(c2), nb_error_column(c2));
        FAIL_AT(g, f, NULL, "%s", msg);
        goto done;
    }
    for (int i = 0; i < g->nvars; i++)
        if (nb_set_value(c2, g->vars[i].name, g->vars[i].rows, g->vars[i].cols, g->vars[i].value) != 0) {
            CHECK(0, "nb_set_value in the fresh context: %s", nb_error(c2));
            goto done;
        }
    if (!eval(c2, f2, &V)) {
        snprintf(msg, sizeof msg, "parsed f does not evaluate: %s", nb_error(c2));
        FAIL_AT(g, f, NULL, "%s", msg);
        goto done;
    }
    size_t where = 0;
    bool ok = V.rows == F->rows && V.cols == F->cols && same_values(V.data, F->data, count(F), 1e-9, &where);
    if (!ok) {
        snprintf(msg, sizeof msg, "parse(print(f)) is %lldx%lld, f is %lldx%lld, or differs at entry %zu (%.17g vs %.17g)",
                 (long long)V.rows, (long long)V.cols, (long long)F->rows, (long long)F->cols, where,
                 where < count(&V) ? V.data[where] : 0.0, where < count(F) ? F->data[where] : 0.0);
        FAIL_AT(g, f, NULL, "%s", msg);
    } else {
        test_passed++;
        st.roundtrips++;
        char *again = nb_to_string(c2, f2, NB_FMT_ASCII);
        if (again && strcmp(again, text) == 0) st.roundtrip_same_text++;
        free(again);
    }
done:
    nb_matrix_free(&V);
    nb_ctx_free(c2);
    free(text);
}

/* ---- fixed cases: bugs this test found, as minimal reproductions ------------ */
static bool fd_ok(nb_ctx *c, nb_expr *f, nb_expr *v) {
    double err = -1;
    return f && nb_check(c, f, 1, &v, &err) == 0 && err < 1e-6;
}

static char *ascii(nb_ctx *c, nb_expr *e) { return e ? nb_to_string(c, e, NB_FMT_ASCII) : NULL; }

/* print(e) parses back (declarations decls) to the same shape and values, with
 * the values in vals bound to names. */
static bool reparses(nb_ctx *c, nb_expr *e, const char *decls) {
    char *text = ascii(c, e);
    nb_ctx *c2 = nb_ctx_new();
    nb_matrix a = {0, 0, NULL}, b = {0, 0, NULL};
    bool ok = text && nb_declare(c2, decls) == 0;
    nb_expr *e2 = ok ? nb_parse(c2, text) : NULL;
    for (size_t i = 0; e2 && i < 8; i++) {
        static const char *names[] = {"x", "y", "u", "w", "M", "A", "r", "Z"};
        nb_expr *v = nb_lookup(c, names[i]);
        nb_matrix val;
        if (v && eval(c, v, &val)) {
            nb_set_value(c2, names[i], val.rows, val.cols, val.data);
            nb_matrix_free(&val);
        }
    }
    ok = e2 && eval(c, e, &a) && eval(c2, e2, &b) && a.rows == b.rows && a.cols == b.cols;
    for (size_t k = 0; ok && k < count(&a); k++) ok = rel_err(a.data[k], b.data[k]) < 1e-12;
    if (!ok) fprintf(stderr, "    printed \"%s\" does not parse back to the same value: %s\n", text ? text : "(null)",
                     e2 ? "values differ" : nb_error(c2));
    nb_matrix_free(&a);
    nb_matrix_free(&b);
    nb_ctx_free(c2);
    free(text);
    return ok;
}

/* A case that would run for minutes fails instead: after WATCHDOG_SECONDS of
 * CPU time the process reports the case and the result line so far, and exits. */
#define WATCHDOG_SECONDS 3
static char watchdog_msg[512];
static void watchdog_fire(int sig) {
    (void)sig;
    if (write(1, watchdog_msg, strlen(watchdog_msg)) < 0) _exit(2);
    _exit(1);
}
static void watchdog(const char *what) {
    struct itimerval t = {{0, 0}, {what ? WATCHDOG_SECONDS : 0, 0}};
    if (what) {
        snprintf(watchdog_msg, sizeof watchdog_msg, "test_property: FAIL: still running after %d s of CPU: %s\n%d passed, %d failed\n",
                 WATCHDOG_SECONDS, what, test_passed, test_failed + 1);
        signal(SIGVTALRM, watchdog_fire);
    }
    setitimer(ITIMER_VIRTUAL, &t, NULL);
}

static void fixed_cases(void) {
    nb_ctx *c = nb_ctx_new();
    nb_dim n = nb_dim_symbol(c, "n");
    nb_type row = {NB_ROW, 1, n};
    nb_expr *x = nb_var(c, "x", nb_scalar_type());
    nb_expr *u = nb_var(c, "u", nb_vector_type(n)), *w = nb_var(c, "w", nb_vector_type(n));
    nb_expr *A = nb_var(c, "A", nb_matrix_type(n, n)), *r = nb_var(c, "r", row), *t = nb_var(c, "t", row);
    nb_expr *Z = nb_var(c, "Z", nb_matrix_type(2, 3)), *Y = nb_var(c, "Y", nb_matrix_type(2, 3));
    uint64_t rng = 7;
    nb_randomize(c, Z, &rng, -1, 1);
    nb_randomize(c, Y, &rng, 0, 1);
    nb_randomize(c, x, &rng, 0.5, 1);
    nb_randomize(c, nb_add(c, nb_add(c, u, w), nb_sum(c, nb_add(c, A, nb_add(c, r, t)))), &rng, -1, 1);

    /* softmax_xent(Z, Y) for Y whose rows do not sum to 1: ∂/∂Z = (softmax(Z) ⊙ rowsum(Y) − Y)/rows */
    CHECK(fd_ok(c, nb_softmax_xent(c, Z, Y), Z), "softmax_xent(Z, Y) w.r.t. Z, Y rows not summing to 1");

    /* a vector function through a matrix node: refused as a tensor, not a shape error */
    nb_expr *J = nb_derivative(c, nb_mul(c, nb_sum(c, nb_matmul(c, u, nb_transpose(c, w))), w), 1, &u, NB_NUMERATOR);
    CHECK(J || strstr(nb_error(c), "tensor"), "d(sum(u*w')*w)/du: %s", nb_error(c));
    nb_clear_error(c);

    /* (M + r)ᵀ with a row broadcast builds */
    CHECK(nb_transpose(c, nb_add(c, A, r)) != NULL, "(A + r)': %s", nb_error(c));

    /* row variables: gradient shaped like r, jvp with a row tangent; vjp of a row-valued f */
    nb_expr *fr = nb_sum(c, nb_sin(c, r));
    nb_expr *G = nb_gradient(c, fr, r);
    CHECK(G && nb_type_of(G).kind == NB_ROW, "gradient w.r.t. a row variable is not a row");
    CHECK(nb_jvp(c, fr, r, t) != NULL, "jvp w.r.t. a row variable: %s", nb_error(c));
    CHECK(nb_vjp(c, nb_sin(c, r), r, t) != NULL, "vjp of a row-valued f: %s", nb_error(c));
    nb_clear_error(c);

    /* second derivatives through literals: entries of a derivative are differentiable */
    nb_expr *e2[2] = {x, nb_mul(c, nb_num(c, 2), x)};
    nb_expr *f2 = nb_sum(c, nb_exp(c, nb_vector_lit(c, 2, e2)));
    nb_expr *d1 = nb_derivative(c, f2, 1, &x, NB_NUMERATOR);
    CHECK(d1 && fd_ok(c, d1, x), "d2/dx2 sum(exp([x, 2x])): %s", nb_error(c));
    nb_clear_error(c);

    /* printed ASCII parses back: array constants keep their shape */
    const char *decls = "x: scalar; u, w: vector(n); A: matrix(n, n); r, t: row(n)";
    CHECK(reparses(c, nb_sub(c, u, u), decls), "u - u (a zero vector) prints as a scalar");
    CHECK(reparses(c, nb_add(c, nb_sub(c, u, u), x), decls), "(u - u) + x prints as a scalar");
    CHECK(reparses(c, nb_sum(c, nb_softmax(c, nb_sub(c, A, A))), decls), "softmax(A - A) does not reparse");
    nb_expr *rl[2] = {x, nb_num(c, 2)};
    CHECK(reparses(c, nb_transpose(c, nb_vector_lit(c, 2, rl)), decls), "[x, 2]' (a row literal) loses its transpose");
    nb_ctx_free(c);

    /* linear time on shared graphs: a = M; a = aᵀ·a (16 times); ∂sum(a)/∂M.
     * Transposing a product recursed into both (shared) factors without
     * memoising: time grew as 4^k (k = 14 took seconds, k = 16 a minute). */
    watchdog("d sum(a)/dM with a = a'*a repeated 16 times");
    c = nb_ctx_new();
    nb_expr *M = nb_var(c, "M", nb_matrix_type(nb_dim_symbol(c, "n"), nb_dim_symbol(c, "n"))), *a = M;
    for (int i = 0; i < 16; i++) a = nb_matmul(c, nb_transpose(c, a), a);
    CHECK(nb_derivative(c, nb_sum(c, a), 1, &M, NB_NUMERATOR) != NULL, "d sum(a)/dM: %s", nb_error(c));
    nb_ctx_free(c);
    watchdog(NULL);

    /* the same for entries: a = [x, y]; a = (a + 1) ⊙ (a + 2) (16 times);
     * ∂sum(a)/∂x took entry i of each shared factor separately (2^k). */
    watchdog("d sum(a)/dx with a = [x, y], a = (a + 1) .* (a + 2) repeated 16 times");
    c = nb_ctx_new();
    x = nb_var(c, "x", nb_scalar_type());
    nb_expr *xy[2] = {x, nb_var(c, "y", nb_scalar_type())};
    a = nb_vector_lit(c, 2, xy);
    for (int i = 0; i < 16; i++) a = nb_mul(c, nb_add(c, a, nb_num(c, 1)), nb_add(c, a, nb_num(c, 2)));
    CHECK(nb_derivative(c, nb_sum(c, a), 1, &x, NB_NUMERATOR) != NULL, "d sum(a)/dx: %s", nb_error(c));
    nb_ctx_free(c);
    watchdog(NULL);

    /* a variable used more than 65535 times: its adjoint is a sum of that many
     * contributions, which must not hit the operand limit of one node.
     * f = Σᵢ sin(x + i), i < 66000, summed pairwise. */
    enum { USES = 66000 };
    c = nb_ctx_new();
    x = nb_var(c, "x", nb_scalar_type());
    nb_expr **terms = malloc(USES * sizeof *terms);
    if (terms) {
        for (int i = 0; i < USES; i++) terms[i] = nb_sin(c, nb_add(c, x, nb_num(c, i)));
        for (int k = USES; k > 1;) {
            int m = 0;
            for (int i = 0; i + 1 < k; i += 2) terms[m++] = nb_add(c, terms[i], terms[i + 1]);
            if (k % 2) terms[m++] = terms[k - 1];
            k = m;
        }
        CHECK(nb_derivative(c, terms[0], 1, &x, NB_NUMERATOR) != NULL, "d/dx of a sum of %d sin(x + i): %s", USES,
              nb_error(c));
        free(terms);
    }
    nb_ctx_free(c);

    /* a deep chain: f = sum(W·(W·(…·v))) with 100000 products, ∂f/∂W.  Rewrites
     * that recurse down the chain (nb_transpose) overflow the C stack. */
    printf("(next: a chain of 100000 products; a crash here is a stack overflow)\n");
    fflush(stdout);
    c = nb_ctx_new();
    n = nb_dim_symbol(c, "n");
    nb_expr *W = nb_var(c, "W", nb_matrix_type(n, n));
    a = nb_var(c, "v", nb_vector_type(n));
    for (int i = 0; i < 100000; i++) a = nb_matmul(c, W, a);
    CHECK(nb_derivative(c, nb_sum(c, a), 1, &W, NB_NUMERATOR) != NULL, "d sum(W^k v)/dW, k = 100000: %s", nb_error(c));
    nb_ctx_free(c);
}

/* ---- one expression ---------------------------------------------------------- */
/* nb_hessian and nb_hvp (forward over reverse) against H, the Jacobian of the
 * gradient that check_one just compared with finite differences. */
static void check_hessian(gen *g, nb_expr *f, var *v, const nb_matrix *H) {
    nb_ctx *c = g->ctx;
    size_t n = entries(v), where = 0;
    nb_matrix Hs, hv;
    nb_expr *He = nb_hessian(c, f, v->e);
    if (!He || !eval(c, He, &Hs)) {
        FAIL_AT(g, f, He, "nb_hessian w.r.t. %s failed: %s", v->name, nb_error(c));
        nb_clear_error(c);
    } else {
        if (count(&Hs) != n * n || !same_values(Hs.data, H->data, n * n, 1e-9, &where))
            FAIL_AT(g, f, He, "nb_hessian w.r.t. %s: %zu entries, differs at %zu", v->name, count(&Hs), where);
        else test_passed++;
        nb_matrix_free(&Hs);
    }
    var *t = find_var(g, v->t, true);
    if (!t) return;
    nb_expr *hvp = nb_hvp(c, f, v->e, t->e);
    if (!hvp || !eval(c, hvp, &hv)) {
        FAIL_AT(g, f, hvp, "nb_hvp w.r.t. %s failed: %s", v->name, nb_error(c));
        nb_clear_error(c);
        return;
    }
    bool ok = count(&hv) == n;
    for (size_t i = 0; ok && i < n; i++) {
        double want = 0;
        for (size_t k = 0; k < n; k++) want += H->data[i * n + k] * t->value[k];
        if (fabs(hv.data[i] - want) > 1e-8 * fmax(1, fabs(want)) * (double)n) ok = false, where = i;
    }
    if (!ok) FAIL_AT(g, f, hvp, "nb_hvp w.r.t. %s: %zu entries, differs at %zu", v->name, count(&hv), where);
    else test_passed++;
    nb_matrix_free(&hv);
}

/* Forward mode where no Jacobian exists (f matrix-valued): nb_jvp along t
 * against the central difference (f(x + h·t) − f(x − h·t))/2h. */
static void check_forward_matrix(gen *g, nb_expr *f, const nb_matrix *F, var *v, var *t, uint64_t sig0) {
    nb_ctx *c = g->ctx;
    size_t n = entries(v), m = count(F), where = 0;
    nb_matrix J, p = {0, 0, NULL}, q = {0, 0, NULL};
    nb_expr *jv = nb_jvp(c, f, v->e, t->e);
    st.jvps++;
    if (!jv || !eval(c, jv, &J)) {
        FAIL_AT(g, f, jv, "nb_jvp of a matrix f w.r.t. %s failed: %s", v->name, nb_error(c));
        nb_clear_error(c);
        return;
    }
    double *x0 = malloc(n * sizeof *x0), scale = 1;
    for (size_t k = 0; x0 && k < n; k++) scale = fmax(scale, fabs(x0[k] = v->value[k]));
    double h = 1e-6 * scale;
    bool ok = x0 != NULL, crossed = false;
    uint64_t sig;
    for (int side = 0; ok && side < 2; side++) {
        for (size_t k = 0; k < n; k++) v->value[k] = x0[k] + (side ? -h : h) * t->value[k];
        ok = set_var(g, v) && eval(c, f, side ? &q : &p);
        if (ok && g->nkinks && (kink_state(g, 0, &sig), sig != sig0)) crossed = true;
    }
    for (size_t k = 0; x0 && k < n; k++) v->value[k] = x0[k];
    if (x0) set_var(g, v);
    if (ok && !crossed) {
        bool same = count(&J) == m && count(&p) == m && count(&q) == m;
        for (size_t i = 0; same && i < m; i++)
            if (!(rel_err(J.data[i], (p.data[i] - q.data[i]) / (2 * h)) <= 1e-5)) same = false, where = i;
        if (!same) FAIL_AT(g, f, jv, "nb_jvp of a matrix f w.r.t. %s differs from differences at %zu", v->name, where);
        else test_passed++;
        /* the vec-convention derivative: vec(J·t) = ∂vec(f)/∂vec(v)ᵀ·vec(t) */
        nb_expr *Dv = nb_derivative(c, f, 1, &v->e, NB_NUMERATOR);
        nb_matrix D;
        if (!Dv || !eval(c, Dv, &D)) {
            FAIL_AT(g, f, Dv, "the vec-form derivative of a matrix f w.r.t. %s failed: %s", v->name, nb_error(c));
            nb_clear_error(c);
        } else {
            same = D.rows == (int64_t)m && D.cols == (int64_t)n;
            for (int64_t r = 0; same && r < F->rows; r++)
                for (int64_t cc = 0; same && cc < F->cols; cc++) {
                    double want = 0;
                    for (int64_t i = 0; i < v->rows; i++)
                        for (int64_t j = 0; j < v->cols; j++)
                            want += D.data[(size_t)(cc * F->rows + r) * n + (size_t)(j * v->rows + i)] * t->value[i * v->cols + j];
                    if (fabs(J.data[r * F->cols + cc] - want) > 1e-8 * fmax(1, fabs(want)) * (double)n)
                        same = false, where = (size_t)(r * F->cols + cc);
                }
            if (!same) FAIL_AT(g, f, Dv, "∂vec(f)/∂vec(%s)ᵀ·vec(t) differs from the jvp at %zu", v->name, where);
            else test_passed++;
            nb_matrix_free(&D);
        }
    }
    nb_clear_error(c);
    free(x0);
    nb_matrix_free(&J);
    nb_matrix_free(&p);
    nb_matrix_free(&q);
}

/* Matrix-valued f: forward mode along each variable's tangent matches
 * central differences, and the vec-convention derivative matches forward mode. */
static void check_matrix_function(gen *g, nb_expr *f) {
    int nbase = g->nvars;
    for (int i = 0; i < nbase; i++)
        if (g->vars[i].used && !find_var(g, g->vars[i].t, true)) new_var(g, g->vars[i].t, true);
    for (int attempt = 0; attempt < POINT_TRIES; attempt++) {
        nb_matrix F;
        uint64_t sig = 0;
        if (!draw_point(g)) return;
        if (!eval(g->ctx, f, &F)) {
            nb_clear_error(g->ctx);
            continue;
        }
        if (g->nkinks && !kink_state(g, KINK_MARGIN, &sig)) {
            nb_matrix_free(&F);
            continue;
        }
        for (int i = 0; i < nbase; i++)
            if (g->vars[i].used) check_forward_matrix(g, f, &F, &g->vars[i], find_var(g, g->vars[i].t, true), sig);
        nb_matrix_free(&F);
        return;
    }
}

static void check_expression(uint64_t seed) {
    static const char *names[3] = {"n", "m", "p"};
    gen G;
    gen *g = &G;
    memset(g, 0, sizeof *g);
    g->ctx = nb_ctx_new();
    g->rng = seed;
    cur_seed = seed;
    int mode = rnd(&g->rng, 3); /* 0: symbolic dims, 1: numeric, 2: mixed */
    for (int i = 0; i < 3; i++) {
        bool sym = mode == 0 || (mode == 2 && rnd(&g->rng, 2));
        g->dimname[i] = sym ? names[i] : NULL;
        g->dims[i] = sym ? nb_dim_symbol(g->ctx, names[i]) : 2 + rnd(&g->rng, 3);
    }
    int kind = rnd(&g->rng, 20);
    nb_type t = kind < 12 ? nb_scalar_type()
                : kind < 17 ? nb_vector_type(pick_dim(g))
                : kind < 19 ? type_of_kind(NB_ROW, 1, pick_dim(g))
                            : nb_matrix_type(pick_dim(g), pick_dim(g));
    int depth = 2 + rnd(&g->rng, 3);
    nb_expr *f = gen_any(g, t, depth);
    if (g->overflow) {
        st.exprs_skipped++;
        goto done;
    }
    if (!f) {
        st.build_failed++;
        CHECK(0, "[seed %llu] building a well-typed expression failed: %s", (unsigned long long)seed, nb_error(g->ctx));
        goto done;
    }
    if (nb_type_of(f).kind == NB_MATRIX) {
        check_matrix_function(g, f);
        st.matrix_f++;
        goto done;
    }
    /* tangents and cotangents for jvp/vjp */
    int nbase = g->nvars;
    for (int i = 0; i < nbase; i++)
        if (g->vars[i].used && !find_var(g, g->vars[i].t, true)) new_var(g, g->vars[i].t, true);
    if (!find_var(g, nb_type_of(f), true)) new_var(g, nb_type_of(f), true);
    print_all(g, f, f);
    int npoints = 0;
    for (int attempt = 0; attempt < POINT_TRIES && npoints < POINTS; attempt++) {
        nb_matrix F;
        uint64_t sig;
        st.points_tried++;
        if (!draw_point(g)) break;
        if (!eval(g->ctx, f, &F)) {
            st.domain++;
            nb_clear_error(g->ctx);
            continue;
        }
        bool large = false;
        for (size_t k = 0; k < count(&F); k++) large |= fabs(F.data[k]) > 1e6;
        if (large) {
            st.large++;
            nb_matrix_free(&F);
            continue;
        }
        if (g->nkinks && !kink_state(g, KINK_MARGIN, &sig)) {
            st.kinky++;
            nb_matrix_free(&F);
            continue;
        }
        npoints++;
        st.points++;
        single s[MAX_VARS];
        int ns = 0;
        for (int i = 0; i < nbase; i++)
            if (g->vars[i].used) check_one(g, f, &F, &g->vars[i], &s[ns++]);
        check_list(g, f, &F, s, ns);
        for (int i = 0; i < ns; i++) nb_matrix_free(&s[i].J);
        /* second derivatives: the Jacobian of the gradient (a Hessian) */
        if (nb_type_of(f).kind == NB_SCALAR && npoints == 1)
            for (int i = 0; i < nbase; i++) {
                var *v = &g->vars[i];
                if (!v->used || (v->t.kind != NB_VECTOR && v->t.kind != NB_SCALAR)) continue;
                nb_expr *grad = nb_gradient(g->ctx, f, v->e);
                nb_matrix GF;
                if (!grad || !eval(g->ctx, grad, &GF)) {
                    nb_clear_error(g->ctx);
                    break;
                }
                single h;
                st.hessians++;
                phase = "second derivative (f is the gradient): ";
                check_one(g, grad, &GF, v, &h);
                phase = "";
                if (h.J.data) check_hessian(g, f, v, &h.J);
                nb_matrix_free(&h.J);
                nb_matrix_free(&GF);
                break;
            }
        if (npoints == 1) check_roundtrip(g, f, &F);
        if (npoints == 1) roundtrip_derivatives(g->ctx, f);
        nb_matrix_free(&F);
    }
    if (npoints) st.exprs++;
    else st.exprs_skipped++;
done:
    for (int i = 0; i < g->nvars; i++) free(g->vars[i].value);
    nb_ctx_free(g->ctx);
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 20240601;
    long n = argc > 2 ? strtol(argv[2], NULL, 0) : 1000;
    long tried = 0;
    for (; st.exprs < n && tried < 3 * n; tried++) check_expression(seed + (uint64_t)tried);
    printf("expressions: %ld checked, %ld skipped (no valid point or too large), %ld failed to build\n", st.exprs,
           st.exprs_skipped, st.build_failed);
    printf("points: %ld valid of %ld drawn (%ld domain errors, %ld near a kink, %ld too large)\n", st.points,
           st.points_tried, st.domain, st.kinky, st.large);
    printf("derivatives: %ld (+%ld denominator, %ld list, %ld jvp/vjp, %ld nb_check), %ld entries vs finite "
           "differences, %ld re-measured, %ld steps across a kink; %ld vector-through-matrix refused\n",
           st.derivs, st.denominators, st.lists, st.jvps, st.checks, st.entries, st.fd_retry, st.fd_crossing,
           st.unsupported);
    printf("second derivatives (Jacobian of the gradient, nb_hessian, nb_hvp): %ld\n", st.hessians);
    printf("round trips: %ld parsed back to equal values (%ld print identically; %ld skipped: f uses I)\n",
           st.roundtrips, st.roundtrip_same_text, st.roundtrip_identity);
    printf("matrix-valued f (derivative refused, forward mode checked): %ld\n", st.matrix_f);
    printf("forms used:");
    for (int i = 0; i < U_COUNT; i++) printf(" %s=%ld", use_names[i], st.op_used[i]);
    printf("\nregistry operators used:");
    for (int op = 0; op < NB_OP_COUNT; op++)
        if (st.registry_used[op]) printf(" %s=%ld", test_ops[op].id, st.registry_used[op]);
    printf("\n");
    CHECK(st.exprs >= n, "only %ld of %ld expressions were checked", st.exprs, n);
    if (n >= 1000) {
        for (int i = 0; i < U_COUNT; i++) CHECK(st.op_used[i] > 0, "form %s never generated", use_names[i]);
        for (int op = 0; op < NB_OP_COUNT; op++)
            if (test_op_generated(op, NB_CLASS_EW_UNARY) || test_op_generated(op, NB_CLASS_EW_BINARY))
                CHECK(st.registry_used[op] > 0, "operator %s of ops.def never generated", test_ops[op].id);
    }
    CHECK(st.points * 10 >= st.points_tried * 7, "only %ld of %ld points were valid", st.points, st.points_tried);
    failure_summary();
    fflush(stdout);
    fixed_cases();
    TEST_MAIN_END();
}
