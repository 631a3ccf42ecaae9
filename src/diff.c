/* Symbolic differentiation by reverse accumulation over the DAG.
 *
 * The adjoint of node u is G_u = ∂f/∂u in numerator layout: one row per entry
 * of f (m rows; m = 1 for scalar f), one column per entry of u.  So for
 * scalar f a vector node's adjoint is a row (the gradient as the paper writes
 * it), and for vector f it is the Jacobian.  Matrix nodes (scalar f only)
 * carry gradient-shaped adjoints.  Seeds: 1 for scalar f, I(m) for vector f.
 * Nodes are visited once, from f down in id order (a topological order), so
 * the cost is linear in the graph; each operator's rule lives in ops.c and
 * only returns contributions: this file alone accumulates and orders them. */
#include "kron.h"
#include "nb_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct contrib {
    nb_node *e;
    uint32_t order; /* preorder position of the user that sent it */
    struct contrib *next;
} contrib;

/* Reverse-accumulation state; arrays are indexed by position in nodes. */
typedef struct {
    nb_ctx *ctx;
    nb_node **nodes;    /* nb_toposort of f */
    size_t n;
    bool *dep;          /* depends on a wrt variable */
    contrib **adjoint;  /* pending contributions */
    uint32_t *preorder; /* first-visit position from f, left to right */
    uint32_t current;   /* preorder position of the node being propagated */
    nb_arena tmp;
    bool scalar_output;
} reverse_state;

static size_t slot(const reverse_state *d, const nb_node *e) { return nb_topo_index(d->nodes, d->n, e); }

static int accumulate(reverse_state *d, nb_node *operand, nb_node *e) {
    if (nb_is_zero(e)) return 0;
    contrib *c = nb_arena_alloc(&d->tmp, sizeof *c);
    if (!c) return nb_set_error(d->ctx, "out of memory");
    size_t k = slot(d, operand);
    c->e = e;
    c->order = d->current;
    c->next = d->adjoint[k];
    d->adjoint[k] = c;
    return 0;
}

static nb_node *column_form(nb_ctx *ctx, nb_node *p) { return p->type.kind == NB_ROW ? nb_transpose(ctx, p) : p; }

/* Contribution of an element-wise partial p (scalar or shaped like y) of y
 * w.r.t. operand a, given G = ∂f/∂y: G·diag(p), reduced over broadcasts. */
static nb_node *elementwise_contribution(nb_ctx *ctx, nb_node *y, nb_node *a, nb_node *G, nb_node *p) {
    if (!p) return NULL;
    if (nb_is_zero(p)) return p;
    bool uniform = p->type.kind == NB_SCALAR;
    switch (y->type.kind) {
    case NB_SCALAR: return nb_mul(ctx, G, p);
    case NB_VECTOR:
    case NB_ROW: {
        nb_dim n = nb_type_length(y->type);
        if (a->type.kind != NB_SCALAR) /* G·diag(p) */
            return uniform ? nb_mul(ctx, p, G) : nb_matmul(ctx, G, nb_diag(ctx, column_form(ctx, p)));
        /* a scalar expanded to n entries: G·p (p as a column) */
        nb_node *col = uniform ? nb_mul(ctx, p, nb_ones(ctx, nb_vector_type(n))) : column_form(ctx, p);
        return nb_matmul(ctx, G, col);
    }
    case NB_MATRIX: {
        nb_node *q = nb_mul(ctx, G, p);
        if (a->type.kind == NB_SCALAR) return nb_sum(ctx, q);
        if (a->type.kind == NB_ROW) return nb_matmul(ctx, nb_ones(ctx, nb_row_type(y->type.rows)), q);
        return q;
    }
    }
    return NULL;
}

/* True (with the error set) when a vector f would need a rank-3 adjoint for x. */
static bool needs_tensor(reverse_state *d, const nb_node *x) {
    char buf[160], tb[64];
    if (d->scalar_output || x->type.kind != NB_MATRIX) return false;
    nb_set_error(d->ctx, "the Jacobian of a vector function through the %s %s is a tensor (rank > 2); "
                         "differentiate a scalar function instead",
                 nb_type_str(d->ctx, x->type, tb, sizeof tb), nb_describe(d->ctx, x, buf, sizeof buf));
    return true;
}

/* Asks y's rule for its operands' contributions and accumulates them. */
static int propagate(reverse_state *d, nb_node *y, nb_node *G) {
    nb_ctx *ctx = d->ctx;
    const nb_opinfo *info = &nb_ops[y->op];
    char buf[160];
    if (needs_tensor(d, y)) return -1;
    bool *want = malloc(y->nargs * sizeof *want + 1);
    nb_node **out = calloc(y->nargs + 1u, sizeof *out);
    int rc = -1;
    if (!want || !out) {
        nb_set_error(ctx, "out of memory");
        goto done;
    }
    for (int i = 0; i < y->nargs; i++) {
        want[i] = d->dep[slot(d, y->args[i])];
        if (want[i] && needs_tensor(d, y->args[i])) goto done;
    }
    if (info->vjp) {
        if (info->vjp(ctx, y, G, want, out)) goto done;
    } else if (info->partial) {
        for (int i = 0; i < y->nargs; i++)
            if (want[i] && !(out[i] = elementwise_contribution(ctx, y, y->args[i], G, info->partial(ctx, y, i)))) goto done;
    } else {
        nb_set_error(ctx, "cannot differentiate %s", nb_describe(ctx, y, buf, sizeof buf));
        goto done;
    }
    for (int i = 0; i < y->nargs; i++)
        if (want[i] && out[i] && accumulate(d, y->args[i], out[i])) goto done;
    rc = 0;
done:
    free(want);
    free(out);
    return rc;
}

static bool is_variable(nb_ctx *ctx, nb_node *v, const char *role) {
    char buf[160];
    if (v && v->op == NB_OP_VAR) return true;
    if (v) nb_set_error(ctx, "can only differentiate with respect to a variable; %s %s is not one", role, nb_describe(ctx, v, buf, sizeof buf));
    return false;
}

static int by_order(const void *x, const void *y) {
    const contrib *a = *(const contrib *const *)x, *b = *(const contrib *const *)y;
    return (a->order > b->order) - (a->order < b->order);
}

/* The adjoint of node i: its contributions summed in the order their sources
 * appear in f, so results keep the user's term order (x² + 3x gives 2x + 3). */
static nb_node *sum_contributions(reverse_state *d, size_t i) {
    size_t count = 0;
    for (contrib *c = d->adjoint[i]; c; c = c->next) count++;
    nb_node **terms = malloc(count * sizeof *terms);
    contrib **list = malloc(count * sizeof *list);
    nb_node *G = NULL;
    if (terms && list) {
        count = 0;
        for (contrib *c = d->adjoint[i]; c; c = c->next) list[count++] = c;
        qsort(list, count, sizeof *list, by_order);
        for (size_t k = 0; k < count; k++) terms[k] = list[k]->e;
        G = nb_add_n(d->ctx, count, terms);
    } else nb_set_error(d->ctx, "out of memory");
    free(terms);
    free(list);
    return G;
}

/* Reverse accumulation from f over the part of the DAG that f reaches (so a
 * context's other expressions cost nothing); adjoints[k] receives ∂f/∂wrt[k]
 * or NULL (zero). */
static int reverse(nb_ctx *ctx, nb_node *f, size_t nwrt, nb_node *const *wrt, nb_node **adjoints) {
    reverse_state d = {ctx, NULL, 0, NULL, NULL, NULL, 0, {NULL}, f->type.kind == NB_SCALAR};
    int rc = -1;
    d.nodes = nb_toposort(ctx, 1, &f, &d.n);
    if (!d.nodes) return -1;
    size_t n = d.n;
    d.dep = calloc(n + 1, sizeof *d.dep);
    d.adjoint = calloc(n + 1, sizeof *d.adjoint);
    d.preorder = malloc((n + 1) * sizeof *d.preorder);
    if (!d.dep || !d.adjoint || !d.preorder) {
        nb_set_error(ctx, "out of memory");
        goto done;
    }
    if (nb_preorder_ranks(ctx, f, d.nodes, n, d.preorder)) goto done;
    for (size_t k = 0; k < nwrt; k++) {
        adjoints[k] = NULL;
        d.dep[slot(&d, wrt[k])] = true; /* slot n when f does not use it */
    }
    for (size_t i = 0; i < n; i++) {
        nb_node *e = d.nodes[i];
        for (size_t a = 0; a < e->nargs && !d.dep[i]; a++) d.dep[i] = d.dep[slot(&d, e->args[a])];
    }
    if (!d.dep[n - 1]) {
        rc = 0;
        goto done;
    }
    nb_node *seed = d.scalar_output ? nb_const(ctx, nb_number_int(1), nb_scalar_type())
                                    : nb_identity(ctx, nb_type_length(f->type));
    if (accumulate(&d, f, seed)) goto done;
    for (size_t i = n; i-- > 0;) {
        if (!d.adjoint[i]) continue;
        nb_node *y = d.nodes[i];
        nb_node *G = sum_contributions(&d, i);
        d.current = d.preorder[i];
        if (!G) goto done;
        if (y->op == NB_OP_VAR) {
            for (size_t k = 0; k < nwrt; k++)
                if (wrt[k] == y) adjoints[k] = G;
            continue;
        }
        if (propagate(&d, y, G)) goto done;
    }
    rc = 0;
done:
    free(d.nodes);
    free(d.dep);
    free(d.adjoint);
    free(d.preorder);
    nb_arena_free(&d.tmp);
    return rc;
}

/* Type of ∂f/∂v in numerator layout. */
static nb_type jacobian_type(nb_type f, nb_type v) {
    if (f.kind == NB_SCALAR) {
        if (v.kind == NB_SCALAR) return f;
        if (v.kind == NB_MATRIX) return v;
        return nb_row_type(nb_type_length(v));
    }
    if (v.kind == NB_SCALAR) return nb_vector_type(nb_type_length(f));
    return nb_matrix_type(nb_type_length(f), nb_type_length(v));
}

/* eₖ, the k-th unit vector of length n (k from 0), as a literal. */
static nb_node *unit_vector(nb_ctx *ctx, size_t n, size_t k) {
    nb_node **entries = malloc(n * sizeof *entries);
    if (!entries) {
        nb_set_error(ctx, "out of memory");
        return NULL;
    }
    for (size_t j = 0; j < n; j++) entries[j] = nb_const(ctx, nb_number_int(j == k), nb_scalar_type());
    nb_node *e = nb_vector_lit(ctx, n, entries);
    free(entries);
    return e;
}

/* Columns (one per listed scalar) side by side: [c₁ c₂ …]. */
static nb_node *columns(nb_ctx *ctx, nb_node *f, size_t n, nb_node **cols) {
    if (f->type.kind == NB_SCALAR) return nb_transpose(ctx, nb_vector_lit(ctx, n, cols));
    nb_dim m = nb_type_length(f->type);
    if (m > 0 && (uint64_t)m * n <= UINT16_MAX) {
        nb_node **e = malloc((size_t)m * n * sizeof *e);
        if (!e) return NULL;
        for (size_t i = 0; i < (size_t)m; i++)
            for (size_t k = 0; k < n; k++) e[i * n + k] = nb_entry(ctx, cols[k], (int64_t)i, 0);
        nb_node *r = nb_matrix_lit(ctx, (size_t)m, n, e);
        free(e);
        return r;
    }
    /* Symbolic height: Σₖ cₖ·eₖᵀ */
    nb_node *sum = NULL;
    for (size_t k = 0; k < n; k++) {
        nb_node *e = unit_vector(ctx, n, k);
        if (!e) return NULL;
        nb_node *term = nb_matmul(ctx, cols[k], nb_transpose(ctx, e));
        sum = sum ? nb_add(ctx, sum, term) : term;
    }
    return sum;
}

/* Rows ∂fᵢ/∂(wrt) of a vector literal f, each from its own scalar pass. */
static nb_node *literal_jacobian(nb_ctx *ctx, nb_node *f, size_t nwrt, nb_node *const *wrt, nb_node **g) {
    size_t m = f->nargs;
    if ((uint64_t)m * nwrt > UINT16_MAX) {
        nb_set_error(ctx, "a Jacobian of %zu x %zu entries is too large to write out", m, nwrt);
        return NULL;
    }
    nb_node **entries = malloc(m * nwrt * sizeof *entries);
    if (!entries) {
        nb_set_error(ctx, "out of memory");
        return NULL;
    }
    nb_node *J = NULL;
    for (size_t i = 0; i < m; i++) {
        if (reverse(ctx, f->args[i], nwrt, wrt, g)) goto done;
        for (size_t k = 0; k < nwrt; k++) entries[i * nwrt + k] = g[k] ? g[k] : nb_zero(ctx, nb_scalar_type());
    }
    J = nwrt == 1 ? nb_vector_lit(ctx, m, entries) : nb_matrix_lit(ctx, m, nwrt, entries);
done:
    free(entries);
    return J;
}

/* ∂f/∂v (numerator layout) of a vector literal f w.r.t. a vector or row v as
 * Σᵢ eᵢ·∂fᵢ/∂v, each row from its own scalar pass: an entry that goes through
 * a v-dependent matrix keeps the compact scalar gradient (diagpart(Aᵀ·G))
 * instead of the vec form, whose Kronecker factors are (m·n) x (m·n). */
static nb_node *literal_rows(nb_ctx *ctx, nb_node *f, nb_node *v) {
    size_t m = f->nargs;
    nb_node *J = NULL, *row, *e;
    for (size_t i = 0; i < m; i++) {
        if (reverse(ctx, f->args[i], 1, &v, &row)) return NULL;
        if (!row) continue; /* fᵢ does not depend on v */
        if (!(e = unit_vector(ctx, m, i))) return NULL;
        nb_node *term = nb_matmul(ctx, e, row);
        J = J ? nb_add(ctx, J, term) : term;
    }
    return J ? J : nb_zero(ctx, jacobian_type(f->type, v->type));
}

/* Is ∂f/∂v beyond rank 2 (a matrix-valued f, or a vector f of a matrix v)?
 * Then it is written in the vec convention: ∂vec(f)/∂vec(v)ᵀ (kron.c). */
static bool vec_convention(const nb_node *f, const nb_node *v) {
    return f->type.kind == NB_MATRIX || (f->type.kind != NB_SCALAR && v->type.kind == NB_MATRIX);
}

/* ∂vec(f)/∂vec(v)ᵀ in the requested layout (its transpose in denominator layout). */
static nb_node *vec_derivative(nb_ctx *ctx, nb_node *f, nb_node *v, nb_layout layout) {
    nb_node *J = nb_vec_jacobian(ctx, f, v);
    return J && layout == NB_DENOMINATOR ? nb_transpose(ctx, J) : J;
}

static nb_expr *derivative(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout) {
    char tv[64];
    if (!f) return NULL;
    if (nwrt == 0) {
        nb_set_error(ctx, "nothing to differentiate with respect to");
        return NULL;
    }
    for (size_t k = 0; k < nwrt; k++)
        if (!is_variable(ctx, wrt[k], "")) return NULL;
    for (size_t k = 0; k < nwrt; k++) {
        nb_type v = wrt[k]->type;
        if (nwrt > 1 && v.kind != NB_SCALAR) {
            nb_set_error(ctx, "a list of variables in one derivative must be scalars, but %s is %s "
                              "(nb_derivatives gives one derivative per variable)",
                         wrt[k]->a.name, nb_type_str(ctx, v, tv, sizeof tv));
            return NULL;
        }
    }
    if (nwrt == 1 && vec_convention(f, wrt[0])) return vec_derivative(ctx, f, wrt[0], layout);
    nb_node **g = malloc(nwrt * sizeof *g);
    if (!g) {
        nb_set_error(ctx, "out of memory");
        return NULL;
    }
    nb_node *J = NULL;
    bool scalars = true;
    for (size_t k = 0; k < nwrt; k++) scalars &= wrt[k]->type.kind == NB_SCALAR;
    if (f->op == NB_OP_VECLIT && scalars) {
        /* A literal [f₁, …, fₘ] w.r.t. scalars: one scalar pass per entry, so the
         * cost is the entries' sizes, not m times the whole literal. */
        J = literal_jacobian(ctx, f, nwrt, wrt, g);
        if (J && layout == NB_DENOMINATOR) J = nb_transpose(ctx, J);
    } else if (reverse(ctx, f, nwrt, wrt, g) != 0) {
        /* a vector function through an x-dependent matrix (x·xᵀ·x): the
         * reverse pass would need a rank-3 adjoint; the vec form has none */
        char first[sizeof ctx->error];
        snprintf(first, sizeof first, "%s", ctx->error);
        bool ok = f->type.kind != NB_SCALAR && (nwrt == 1 || scalars);
        if (ok && f->op == NB_OP_VECLIT && nwrt == 1) {
            nb_clear_error(ctx);
            ok = (g[0] = literal_rows(ctx, f, wrt[0])) != NULL;
        } else {
            for (size_t k = 0; k < nwrt && ok; k++) ok = (g[k] = nb_vec_jacobian(ctx, f, wrt[k])) != NULL;
        }
        J = !ok ? NULL : nwrt == 1 ? g[0] : columns(ctx, f, nwrt, g);
        if (J && layout == NB_DENOMINATOR) J = nb_transpose(ctx, J);
        if (!J) snprintf(ctx->error, sizeof ctx->error, "%s", first);
    } else {
        for (size_t k = 0; k < nwrt; k++)
            if (!g[k]) g[k] = nb_zero(ctx, jacobian_type(f->type, wrt[k]->type));
        J = nwrt == 1 ? g[0] : columns(ctx, f, nwrt, g);
        /* The gradient w.r.t. a matrix keeps the matrix's shape in both layouts. */
        bool keep = f->type.kind == NB_SCALAR && nwrt == 1 && wrt[0]->type.kind == NB_MATRIX;
        if (J && layout == NB_DENOMINATOR && !keep) J = nb_transpose(ctx, J);
    }
    free(g);
    return J;
}

/* The chain rule in raw mode (every factor as its rule built it), then the
 * simplifier: the canonical form is a pass over the raw derivative. */
nb_expr *nb_derivative(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout) {
    if (!NB_API_OK(ctx, f) || !nb_api_array(ctx, __func__, nwrt, wrt) || !nb_api_layout(ctx, __func__, layout)) return NULL;
    if (ctx->raw) return derivative(ctx, f, nwrt, wrt, layout);
    ctx->raw = true;
    nb_node *J = derivative(ctx, f, nwrt, wrt, layout);
    ctx->raw = false;
    return nb_simplify(ctx, J);
}

/* One derivative per variable, each in its own shape, from one reverse pass. */
int nb_derivatives(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout, nb_expr **out) {
    if (!NB_API_OK(ctx, f) || !nb_api_array(ctx, __func__, nwrt, wrt)) return -1;
    if (!out || nwrt == 0) return nb_set_error(ctx, "nb_derivatives: missing function, variables or output");
    for (size_t k = 0; k < nwrt; k++) {
        out[k] = NULL;
        if (!is_variable(ctx, wrt[k], "")) return -1;
    }
    bool raw = ctx->raw;
    ctx->raw = true;
    bool vec_form = false;
    for (size_t k = 0; k < nwrt; k++) vec_form |= vec_convention(f, wrt[k]);
    int rc = vec_form ? 0 : reverse(ctx, f, nwrt, wrt, out);
    for (size_t k = 0; k < nwrt && vec_form && rc == 0; k++) /* beyond rank 2: each on its own */
        if (!(out[k] = vec_derivative(ctx, f, wrt[k], layout))) rc = -1;
    ctx->raw = raw;
    for (size_t k = 0; k < nwrt && rc == 0; k++) {
        nb_node *J = out[k] ? out[k] : nb_zero(ctx, jacobian_type(f->type, wrt[k]->type));
        bool keep = vec_form || (f->type.kind == NB_SCALAR && wrt[k]->type.kind == NB_MATRIX);
        if (J && layout == NB_DENOMINATOR && !keep) J = nb_transpose(ctx, J);
        if (!raw && J) J = nb_simplify(ctx, J);
        if (!(out[k] = J)) rc = -1;
    }
    return rc;
}

nb_expr *nb_derivative_raw(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout) {
    if (!NB_API_OK(ctx, f) || !nb_api_array(ctx, __func__, nwrt, wrt) || !nb_api_layout(ctx, __func__, layout)) return NULL;
    bool raw = ctx->raw;
    ctx->raw = true;
    nb_node *J = derivative(ctx, f, nwrt, wrt, layout);
    ctx->raw = raw;
    return J;
}

nb_expr *nb_gradient(nb_ctx *ctx, nb_expr *f, nb_expr *v) {
    if (!NB_API_OK(ctx, f, v)) return NULL;
    char tf[64];
    if (!f || !v) return NULL;
    if (f->type.kind != NB_SCALAR) {
        nb_set_error(ctx, "the gradient needs a scalar function, got %s", nb_type_str(ctx, f->type, tf, sizeof tf));
        return NULL;
    }
    nb_node *J = nb_derivative(ctx, f, 1, &v, NB_NUMERATOR);
    return J && v->type.kind == NB_VECTOR ? nb_transpose(ctx, J) : J;
}

/* uᵀ·(∂f/∂v) is the derivative of the scalar Σ u ⊙ f: one reverse pass. */
nb_expr *nb_vjp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *u) {
    if (!NB_API_OK(ctx, f, v, u)) return NULL;
    char tf[64], tu[64];
    if (!f || !u) return NULL;
    if (!nb_type_eq(f->type, u->type)) {
        nb_set_error(ctx, "the cotangent is %s but the function is %s", nb_type_str(ctx, u->type, tu, sizeof tu),
                     nb_type_str(ctx, f->type, tf, sizeof tf));
        return NULL;
    }
    nb_node *s = f->type.kind == NB_VECTOR ? nb_matmul(ctx, nb_transpose(ctx, u), f) : nb_sum(ctx, nb_mul(ctx, u, f));
    return s ? nb_derivative(ctx, s, 1, &v, NB_NUMERATOR) : NULL;
}

/* ---- forward mode ----------------------------------------------------------
 * The tangent ẏ of node y (shaped like y) from its operands' tangents dx[i]
 * (NULL: zero), by the operator's class:
 *   element-wise   ẏ = Σᵢ ∂y/∂aᵢ ⊙ ȧᵢ (the partials of the reverse rules)
 *   linear         ẏ = op(ȧ)  (the operator applied to the tangents)
 *   bilinear       ẏ = op(ȧ, b) + op(a, ḃ)
 *   row-wise       the operator's tangent rule. */
static nb_node *tangent_of(nb_ctx *ctx, nb_node *y, nb_node **dx) {
    const nb_opinfo *info = &nb_ops[y->op];
    size_t n = y->nargs;
    nb_node **terms = calloc(n + 1, sizeof *terms), **args = malloc((n + 1) * sizeof *args);
    nb_node *r = NULL;
    size_t nt = 0;
    if (!terms || !args) {
        nb_set_error(ctx, "out of memory");
        goto done;
    }
    switch (info->cls) {
    case NB_CLASS_EW_UNARY:
    case NB_CLASS_EW_BINARY:
    case NB_CLASS_EW_NARY:
        for (size_t i = 0; i < n; i++)
            if (dx[i] && !(terms[nt++] = nb_mul(ctx, info->partial(ctx, y, (int)i), dx[i]))) goto done;
        r = nb_add_n(ctx, nt, terms);
        /* uniform tangents of a shaped y: expand (ẏ = s·1) */
        if (r && !nb_type_eq(r->type, y->type)) r = nb_mul(ctx, r, nb_ones(ctx, y->type));
        break;
    case NB_CLASS_LINEAR:
        for (size_t i = 0; i < n; i++) args[i] = dx[i] ? dx[i] : nb_zero(ctx, y->args[i]->type);
        r = nb_rebuild(ctx, y, args);
        break;
    case NB_CLASS_BILINEAR:
        for (size_t i = 0; i < n; i++) {
            if (!dx[i]) continue;
            for (size_t k = 0; k < n; k++) args[k] = k == i ? dx[i] : y->args[k];
            if (!(terms[nt++] = nb_rebuild(ctx, y, args))) goto done;
        }
        r = nb_add_n(ctx, nt, terms);
        break;
    case NB_CLASS_ROWWISE:
    case NB_CLASS_MATRIX_FN: r = info->tangent(ctx, y, dx); break;
    case NB_CLASS_LEAF: r = nb_zero(ctx, y->type); break;
    }
done:
    free(terms);
    free(args);
    return r;
}

nb_expr *nb_jvp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *t) {
    if (!NB_API_OK(ctx, f, v, t)) return NULL;
    char tv[64], tt[64];
    if (!ctx || !f || !v || !t) return NULL;
    if (!is_variable(ctx, v, "")) return NULL;
    if (!nb_type_eq(v->type, t->type)) {
        nb_set_error(ctx, "the tangent is %s but the variable is %s", nb_type_str(ctx, t->type, tt, sizeof tt),
                     nb_type_str(ctx, v->type, tv, sizeof tv));
        return NULL;
    }
    size_t n;
    nb_node **nodes = nb_toposort(ctx, 1, &f, &n);
    nb_node **tangent = nodes ? calloc(n + 1, sizeof *tangent) : NULL;
    nb_node **dx = NULL;
    nb_node *r = NULL;
    size_t cap_dx = 0;
    if (!tangent) goto done;
    tangent[nb_topo_index(nodes, n, v)] = t; /* slot n when f does not use v */
    for (size_t i = 0; i < n; i++) {
        nb_node *y = nodes[i];
        if (y->nargs > cap_dx) {
            free(dx);
            cap_dx = y->nargs;
            if (!(dx = malloc(cap_dx * sizeof *dx))) goto done;
        }
        bool moves = false;
        for (size_t k = 0; k < y->nargs; k++) moves |= (dx[k] = tangent[nb_topo_index(nodes, n, y->args[k])]) != NULL;
        if (!moves) continue;
        if (!(tangent[i] = tangent_of(ctx, y, dx))) goto done;
        if (nb_is_zero(tangent[i])) tangent[i] = NULL;
    }
    r = tangent[n - 1] ? tangent[n - 1] : nb_zero(ctx, f->type);
done:
    if (!tangent && !r) nb_set_error(ctx, "out of memory");
    free(nodes);
    free(tangent);
    free(dx);
    return r;
}

/* ∇²f·t = the tangent of ∇f along t (forward over reverse). */
nb_expr *nb_hvp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *t) {
    if (!NB_API_OK(ctx, f, v, t)) return NULL;
    return nb_jvp(ctx, nb_gradient(ctx, f, v), v, t);
}

nb_expr *nb_hessian(nb_ctx *ctx, nb_expr *f, nb_expr *v) {
    if (!NB_API_OK(ctx, f, v)) return NULL;
    /* w.r.t. a matrix: ∂vec(∇f)/∂vec(X)ᵀ (vec convention, kron.c) */
    if (v->type.kind == NB_MATRIX) {
        nb_node *G = nb_gradient(ctx, f, v);
        return G ? nb_derivative(ctx, G, 1, &v, NB_NUMERATOR) : NULL;
    }
    /* H = ∂(∇f)/∂v in denominator layout, Hᵢⱼ = ∂²f/∂vⱼ∂vᵢ: equal to the
     * numerator layout by symmetry, and it keeps the gradient's term order
     * (∇(xᵀAx) = A·x + Aᵀ·x gives A + Aᵀ). */
    nb_node *g = nb_gradient(ctx, f, v);
    return g ? nb_derivative(ctx, g, 1, &v, NB_DENOMINATOR) : NULL;
}
