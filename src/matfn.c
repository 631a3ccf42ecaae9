/* Matrix functions and reductions: constructors (shape rule and
 * canonicalising rewrites), derivative rules, reference evaluation.  The
 * rules (Petersen & Pedersen, The Matrix Cookbook, §2), for scalar f with the
 * gradient-shaped adjoint G = ∂f/∂Y:
 *   tr X        ∂/∂X = G·I                   ṫ = tr Ẋ
 *   det X       ∂/∂X = G·det(X)·X⁻ᵀ          (det X)˙ = det(X)·tr(X⁻¹·Ẋ)
 *   log det X   ∂/∂X = G·X⁻ᵀ                 (log det X)˙ = tr(X⁻¹·Ẋ)
 *   Y = X⁻¹     ∂/∂X = −X⁻ᵀ·G·X⁻ᵀ            Ẏ = −X⁻¹·Ẋ·X⁻¹
 *   Y = A⁻¹·B   ∂/∂B = A⁻ᵀ·G, ∂/∂A = −A⁻ᵀ·G·Yᵀ   Ẏ = A⁻¹·(Ḃ − Ȧ·Y)
 *   ‖x‖₁        ∂/∂x = sign(x)   ‖x‖: x/‖x‖   logsumexp(x): softmax(x)
 *   bce(z, y)   ∂/∂z = σ(z) − y, ∂/∂y = −z.
 * A vector x's adjoint is a row (G·Pᵀ for the gradient P), as in diff.c. */
#include "matfn.h"

#include "linalg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nb_node *scalar_num(nb_ctx *ctx, int64_t v) { return nb_const(ctx, nb_number_int(v), nb_scalar_type()); }

static bool is_square(nb_type t) { return t.kind == NB_SCALAR || (t.kind == NB_MATRIX && t.rows == t.cols); }

static nb_node *need_square(nb_ctx *ctx, const char *what, nb_node *x) {
    char t[80];
    if (!x) return NULL;
    if (is_square(x->type)) return x;
    nb_set_error(ctx, "%s needs a square matrix, got %s", what, nb_type_str(ctx, x->type, t, sizeof t));
    return NULL;
}

static nb_node *make1(nb_ctx *ctx, nb_op op, nb_type t, nb_node *x) { return nb_make(ctx, op, t, 1, &x, NULL, 0); }

/* tr, det and log det: a square matrix to a scalar; of Xᵀ the same as of X. */
static nb_node *square_to_scalar(nb_ctx *ctx, nb_op op, nb_node *x) {
    if (!NB_API_OK(ctx, x) || !need_square(ctx, nb_ops[op].ascii, x)) return NULL;
    if (!ctx->raw) {
        if (x->type.kind == NB_SCALAR) return op == NB_OP_LOGDET ? nb_log(ctx, x) : x;
        if (x->op == NB_OP_TRANSPOSE) return square_to_scalar(ctx, op, x->args[0]);
        if (x->op == NB_OP_IDENTITY) return op == NB_OP_TRACE ? nb_dimval(ctx, x->a.dim) : scalar_num(ctx, op == NB_OP_DET);
    }
    return make1(ctx, op, nb_scalar_type(), x);
}

nb_expr *nb_trace(nb_ctx *ctx, nb_expr *x) { return square_to_scalar(ctx, NB_OP_TRACE, x); }
nb_expr *nb_det(nb_ctx *ctx, nb_expr *x) { return square_to_scalar(ctx, NB_OP_DET, x); }
nb_expr *nb_logdet(nb_ctx *ctx, nb_expr *x) { return square_to_scalar(ctx, NB_OP_LOGDET, x); }

/* R with P = M·R (side 0) or P = R·M (side 1), P a product of any
 * association; NULL when M is not P's first (last) factor. */
static nb_node *without_end_factor(nb_ctx *ctx, nb_node *P, const nb_node *M, int side) {
    if (P->op != NB_OP_MATMUL) return NULL;
    if (P->args[side] == M) return P->args[1 - side];
    nb_node *r = without_end_factor(ctx, P->args[side], M, side);
    if (!r) return NULL;
    return side == 0 ? nb_matmul(ctx, r, P->args[1]) : nb_matmul(ctx, P->args[0], r);
}

/* (M·R)⁻¹·M = R⁻¹·M⁻¹·M = R⁻¹ and M·(R·M)⁻¹ = R⁻¹ for a square M (so R is
 * square too); Mᵀ·(M·R)⁻ᵀ = R⁻ᵀ and (R·M)⁻ᵀ·Mᵀ = R⁻ᵀ as their transposes:
 * ∂det(A·X·B)/∂X = det(A·X·B)·X⁻ᵀ. */
nb_node *nb_matfn_matmul_rewrite(nb_ctx *ctx, nb_node *a, nb_node *b) {
    if (a->op == NB_OP_TRANSPOSE && b->op == NB_OP_TRANSPOSE) {
        nb_node *r = nb_matfn_matmul_rewrite(ctx, b->args[0], a->args[0]);
        return r ? nb_transpose(ctx, r) : NULL;
    }
    nb_node *R = NULL;
    if (a->op == NB_OP_INV && is_square(b->type) && (R = without_end_factor(ctx, a->args[0], b, 0)) != NULL)
        return nb_rule(ctx, "(M·R)⁻¹·M = R⁻¹", nb_inv(ctx, R));
    if (b->op == NB_OP_INV && is_square(a->type) && (R = without_end_factor(ctx, b->args[0], a, 1)) != NULL)
        return nb_rule(ctx, "M·(R·M)⁻¹ = R⁻¹", nb_inv(ctx, R));
    return NULL;
}

nb_expr *nb_inv(nb_ctx *ctx, nb_expr *x) {
    if (!NB_API_OK(ctx, x) || !need_square(ctx, "inv", x)) return NULL;
    if (!ctx->raw) {
        if (x->type.kind == NB_SCALAR) return nb_pow(ctx, x, scalar_num(ctx, -1));
        if (x->op == NB_OP_INV || x->op == NB_OP_IDENTITY) return x->op == NB_OP_INV ? x->args[0] : x;
        if (x->op == NB_OP_TRANSPOSE) return nb_transpose(ctx, nb_inv(ctx, x->args[0])); /* (Xᵀ)⁻¹ = X⁻ᵀ */
    }
    return make1(ctx, NB_OP_INV, x->type, x);
}

nb_expr *nb_solve(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    char ta[80], tb[80];
    if (!NB_API_OK(ctx, a, b) || !need_square(ctx, "solve", a)) return NULL;
    if (b->type.rows != a->type.rows || b->type.kind == NB_ROW || (a->type.kind == NB_SCALAR) != (b->type.kind == NB_SCALAR)) {
        nb_set_error(ctx, "solve(A, B) needs B with as many rows as the square A; got A %s and B %s",
                     nb_type_str(ctx, a->type, ta, sizeof ta), nb_type_str(ctx, b->type, tb, sizeof tb));
        return NULL;
    }
    if (!ctx->raw) {
        if (a->type.kind == NB_SCALAR) return nb_div(ctx, b, a);
        if (a->op == NB_OP_IDENTITY) return b;
        if (b->op == NB_OP_IDENTITY) return nb_rule(ctx, "solve(A, I) = A⁻¹", nb_inv(ctx, a));
    }
    nb_node *args[2] = {a, b};
    return nb_make(ctx, NB_OP_SOLVE, b->type, 2, args, NULL, 0);
}

/* A reduction of all entries to a scalar; a scalar's norm is |x|. */
static nb_node *reduction(nb_ctx *ctx, nb_op op, nb_node *x) {
    if (!NB_API_OK(ctx, x)) return NULL;
    if (!ctx->raw && x->type.kind == NB_SCALAR) return op == NB_OP_LOGSUMEXP ? x : nb_abs(ctx, x);
    return make1(ctx, op, nb_scalar_type(), x);
}

nb_expr *nb_norm1(nb_ctx *ctx, nb_expr *x) { return reduction(ctx, NB_OP_NORM1, x); }
nb_expr *nb_norm2(nb_ctx *ctx, nb_expr *x) { return reduction(ctx, NB_OP_NORM2, x); }
nb_expr *nb_logsumexp(nb_ctx *ctx, nb_expr *x) { return reduction(ctx, NB_OP_LOGSUMEXP, x); }

nb_expr *nb_bce(nb_ctx *ctx, nb_expr *z, nb_expr *y) {
    char tz[80], ty[80];
    if (!NB_API_OK(ctx, z, y)) return NULL;
    if (!nb_type_eq(z->type, y->type)) {
        nb_set_error(ctx, "bce(z, y) needs logits and labels of one shape; got z %s and y %s",
                     nb_type_str(ctx, z->type, tz, sizeof tz), nb_type_str(ctx, y->type, ty, sizeof ty));
        return NULL;
    }
    nb_node *args[2] = {z, y};
    return nb_make(ctx, NB_OP_BCE, nb_scalar_type(), 2, args, NULL, 0);
}

bool nb_integer_value(const nb_node *e, int64_t *k) {
    if (!e || e->op != NB_OP_CONST || e->type.kind != NB_SCALAR || !nb_number_is_int(e->a.c)) return false;
    *k = e->a.c.num;
    return true;
}

/* X^k for a square X and an integer k: X·X·…·X (k < 0: of X⁻¹; k = 0: I). */
nb_expr *nb_matpow(nb_ctx *ctx, nb_expr *x, int64_t k) {
    if (!NB_API_OK(ctx, x) || !need_square(ctx, "a matrix power", x)) return NULL;
    if (x->type.kind == NB_SCALAR) return nb_pow(ctx, x, scalar_num(ctx, k));
    if (k == 0) return nb_identity(ctx, x->type.rows);
    if (k > 64 || k < -64) {
        nb_set_error(ctx, "a matrix power X^%lld is too large to write out (|k| <= 64)", (long long)k);
        return NULL;
    }
    nb_node *b = k < 0 ? nb_inv(ctx, x) : x, *r = b;
    for (int64_t i = 1; i < (k < 0 ? -k : k); i++) r = nb_matmul(ctx, r, b);
    return r;
}

/* ---- stable forms of losses -------------------------------------------------
 * log σ(u) = logsigmoid(u), log(1 − σ(u)) = logsigmoid(−u),
 * log(1 + eᵘ) = softplus(u), log Σ eᵘ = logsumexp(u),
 * log softmax(u) = logsoftmax(u): the same values, with
 * derivatives that stay finite where the written form's overflow. */
static bool is_one_minus_sigmoid(const nb_node *a, nb_node **u) {
    if (a->op != NB_OP_ADD || a->nargs != 2 || !nb_is_const(a->args[0], 1)) return false;
    const nb_node *t = a->args[1];
    if (t->op != NB_OP_MUL || t->nargs != 2 || !nb_is_const(t->args[0], -1) || t->args[1]->op != NB_OP_SIGMOID) return false;
    *u = t->args[1]->args[0];
    return true;
}

nb_node *nb_matfn_log_rewrite(nb_ctx *ctx, nb_node *a) {
    nb_node *u;
    if (a->op == NB_OP_SIGMOID) return nb_rule(ctx, "log σ(u) = logsigmoid(u)", nb_logsigmoid(ctx, a->args[0]));
    if (is_one_minus_sigmoid(a, &u)) return nb_rule(ctx, "log(1 − σ(u)) = logsigmoid(−u)", nb_logsigmoid(ctx, nb_neg(ctx, u)));
    if (a->op == NB_OP_ADD && a->nargs == 2 && nb_is_const(a->args[0], 1) && a->args[1]->op == NB_OP_EXP)
        return nb_rule(ctx, "log(1 + eᵘ) = softplus(u)", nb_softplus(ctx, a->args[1]->args[0]));
    if (a->op == NB_OP_VSOFTMAX || a->op == NB_OP_SOFTMAX)
        return nb_rule(ctx, "log softmax(u) = logsoftmax(u)", nb_logsoftmax(ctx, a->args[0]));
    if (a->op == NB_OP_SUM && a->args[0]->op == NB_OP_EXP)
        return nb_rule(ctx, "log Σ eᵘ = logsumexp(u)", nb_logsumexp(ctx, a->args[0]->args[0]));
    return NULL;
}

/* The term y ⊙ logsigmoid(u) (either order): its two factors. */
static bool label_times_logsigmoid(const nb_node *t, nb_node **label, nb_node **u) {
    if (t->op != NB_OP_MUL || t->nargs != 2) return false;
    for (int k = 0; k < 2; k++)
        if (t->args[k]->op == NB_OP_LOGSIGMOID) {
            *u = t->args[k]->args[0];
            *label = t->args[1 - k];
            return true;
        }
    return false;
}

/* Σ y ⊙ logsigmoid(u) + (1 − y) ⊙ logsigmoid(−u) = −bce(u, y): the
 * log-likelihood of labels y written out (after the log rewrites above). */
nb_node *nb_matfn_sum_rewrite(nb_ctx *ctx, nb_node *a) {
    if (a->op != NB_OP_ADD || a->nargs != 2) return NULL;
    for (int k = 0; k < 2; k++) {
        nb_node *y, *u, *y2, *u2;
        if (!label_times_logsigmoid(a->args[k], &y, &u) || !label_times_logsigmoid(a->args[1 - k], &y2, &u2)) continue;
        if (!nb_type_eq(y->type, u->type)) continue;
        if (u2 == nb_neg(ctx, u) && y2 == nb_sub(ctx, scalar_num(ctx, 1), y))
            return nb_rule(ctx, "Σ y ⊙ log σ(u) + (1 − y) ⊙ log σ(−u) = −bce(u, y)", nb_neg(ctx, nb_bce(ctx, u, y)));
    }
    return NULL;
}

/* ---- derivative rules ------------------------------------------------------- */
static nb_node *inv_t(nb_ctx *ctx, nb_node *x) { return nb_transpose(ctx, nb_inv(ctx, x)); }

/* G·∂y/∂x for a scalar y whose gradient, shaped like x, is P. */
static nb_node *reduction_vjp(nb_ctx *ctx, const nb_node *x, nb_node *G, nb_node *P) {
    switch (x->type.kind) {
    case NB_VECTOR: return nb_matmul(ctx, G, nb_transpose(ctx, P));
    case NB_ROW: return nb_matmul(ctx, G, P);
    default: return nb_mul(ctx, G, P);
    }
}

/* ẏ = Σ P ⊙ ẋ (Pᵀ·ẋ for a vector). */
static nb_node *reduction_tangent(nb_ctx *ctx, const nb_node *x, nb_node *P, nb_node *dx) {
    if (x->type.kind == NB_VECTOR) return nb_matmul(ctx, nb_transpose(ctx, P), dx);
    return nb_sum(ctx, nb_mul(ctx, P, dx));
}

int nb_vjp_trace(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    nb_node *x = y->args[0];
    out[0] = x->type.kind == NB_SCALAR ? G : nb_mul(ctx, G, nb_identity(ctx, x->type.rows));
    return out[0] ? 0 : -1;
}

/* The gradient of det / log det, shaped like X. */
static nb_node *det_gradient(nb_ctx *ctx, nb_node *y) {
    nb_node *x = y->args[0];
    if (x->type.kind == NB_SCALAR) return y->op == NB_OP_DET ? scalar_num(ctx, 1) : nb_pow(ctx, x, scalar_num(ctx, -1));
    return y->op == NB_OP_DET ? nb_mul(ctx, y, inv_t(ctx, x)) : inv_t(ctx, x);
}

int nb_vjp_det(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = nb_mul(ctx, G, det_gradient(ctx, y));
    return out[0] ? 0 : -1;
}

int nb_vjp_logdet(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    return nb_vjp_det(ctx, y, G, want, out);
}

/* (det X)˙ = det(X)·tr(X⁻¹·Ẋ), (log det X)˙ = tr(X⁻¹·Ẋ) */
nb_node *nb_tangent_det(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    nb_node *x = y->args[0];
    if (x->type.kind == NB_SCALAR) return nb_mul(ctx, det_gradient(ctx, y), dx[0]);
    nb_node *t = nb_trace(ctx, nb_matmul(ctx, nb_inv(ctx, x), dx[0]));
    return y->op == NB_OP_DET ? nb_mul(ctx, y, t) : t;
}

int nb_vjp_inv(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    nb_node *yt = nb_transpose(ctx, y);
    if (y->type.kind == NB_SCALAR) out[0] = nb_neg(ctx, nb_mul(ctx, G, nb_mul(ctx, y, y)));
    else out[0] = nb_neg(ctx, nb_matmul(ctx, nb_matmul(ctx, yt, G), yt));
    return out[0] ? 0 : -1;
}

nb_node *nb_tangent_inv(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    if (y->type.kind == NB_SCALAR) return nb_neg(ctx, nb_mul(ctx, nb_mul(ctx, y, y), dx[0]));
    return nb_neg(ctx, nb_matmul(ctx, nb_matmul(ctx, y, dx[0]), y));
}

/* Y = A⁻¹·B.  H = A⁻ᵀ·Ĝ with Ĝ the adjoint as a column block (Gᵀ for a
 * vector Y); ∂/∂B = H (as a row for a vector B), ∂/∂A = −H·Yᵀ. */
int nb_vjp_solve(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    nb_node *A = y->args[0];
    bool vec = y->type.kind == NB_VECTOR;
    nb_node *H = nb_solve(ctx, nb_transpose(ctx, A), vec ? nb_transpose(ctx, G) : G);
    if (want[1] && !(out[1] = vec ? nb_transpose(ctx, H) : H)) return -1;
    if (want[0] && !(out[0] = nb_neg(ctx, nb_matmul(ctx, H, nb_transpose(ctx, y))))) return -1;
    return 0;
}

nb_node *nb_tangent_solve(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    nb_node *A = y->args[0];
    nb_node *rhs = dx[1];
    if (dx[0]) {
        nb_node *t = nb_neg(ctx, nb_matmul(ctx, dx[0], y));
        rhs = rhs ? nb_add(ctx, rhs, t) : t;
    }
    return nb_solve(ctx, A, rhs);
}

/* The gradient (shaped like operand i) of a reduction y. */
static nb_node *reduction_gradient(nb_ctx *ctx, nb_node *y, int i) {
    nb_node *x = y->args[0];
    switch ((nb_op)y->op) {
    case NB_OP_NORM1: return nb_sign(ctx, x);
    case NB_OP_NORM2: return nb_div(ctx, x, y);
    case NB_OP_LOGSUMEXP:
        return x->type.kind == NB_VECTOR ? nb_softmax(ctx, x) : nb_exp(ctx, nb_sub(ctx, x, y));
    default: /* NB_OP_BCE */
        return i == 0 ? nb_sub(ctx, nb_sigmoid(ctx, x), y->args[1]) : nb_neg(ctx, x);
    }
}

int nb_vjp_reduction(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    for (int i = 0; i < y->nargs; i++)
        if (want[i] && !(out[i] = reduction_vjp(ctx, y->args[i], G, reduction_gradient(ctx, y, i)))) return -1;
    return 0;
}

nb_node *nb_tangent_reduction(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    nb_node *terms[2];
    size_t n = 0;
    for (int i = 0; i < y->nargs; i++)
        if (dx[i] && !(terms[n++] = reduction_tangent(ctx, y->args[i], reduction_gradient(ctx, y, i), dx[i]))) return NULL;
    return nb_add_n(ctx, n, terms);
}

/* ---- reference evaluation: the compiled kernel's numbers (linalg.c) ---------- */
int nb_matfn_code(int op) {
    switch (op) {
    case NB_OP_TRACE: return NB_LA_TRACE;
    case NB_OP_DET: return NB_LA_DET;
    case NB_OP_LOGDET: return NB_LA_LOGDET;
    case NB_OP_INV: return NB_LA_INV;
    case NB_OP_SOLVE: return NB_LA_SOLVE;
    case NB_OP_NORM1: return NB_LA_NORM1;
    case NB_OP_NORM2: return NB_LA_NORM2;
    case NB_OP_LOGSUMEXP: return NB_LA_LOGSUMEXP;
    case NB_OP_VEC: return NB_LA_VEC;
    case NB_OP_KRON: return NB_LA_KRON;
    case NB_OP_COMMUTATION: return NB_LA_COMMUTATION;
    default: return NB_LA_BCE;
    }
}

/* fn on the operands a (none: K(m, n) with m x n = size) into out. */
static int run_kernel(int fn, const nb_matrix *a, int nargs, const nb_matrix *size, nb_matrix *out) {
    const nb_matrix *first = nargs ? &a[0] : size;
    int64_t brows = nargs > 1 ? a[1].rows : 0, bcols = nargs > 1 ? a[1].cols : 0;
    void *work = malloc(nb_linalg_work_size(fn, first->rows, first->cols, brows, bcols));
    if (!work) return -1;
    int rc = nb_linalg_kernel(fn, sizeof(double), first->rows, first->cols, brows, bcols, nargs ? a[0].data : NULL,
                              nargs > 1 ? a[1].data : NULL, out->data, work);
    free(work);
    return rc;
}

int nb_eval_matfn(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    char buf[160], what[120];
    int fn = nb_matfn_code(y->op);
    nb_matrix size = {0, 0, NULL}; /* the commutation matrix's m x n */
    if (y->op == NB_OP_COMMUTATION) size = (nb_matrix){nb_dim_value(ctx, y->a.index[0]), nb_dim_value(ctx, y->a.index[1]), NULL};
    int rc = run_kernel(fn, a, y->nargs, &size, out);
    if (rc < 0) return nb_set_error(ctx, "out of memory");
    if (rc == 0) return 0;
    if (fn == NB_LA_LOGDET) {
        double det;
        nb_matrix d = {1, 1, &det};
        if (run_kernel(NB_LA_DET, a, 1, &size, &d) < 0) return nb_set_error(ctx, "out of memory");
        snprintf(what, sizeof what, "logdet of a matrix whose determinant is not positive (det = %g)", det);
    } else {
        snprintf(what, sizeof what, "%s", fn == NB_LA_INV ? "inverse of a singular matrix" : "solve with a singular matrix");
    }
    return nb_set_error(ctx, "%s in %s", what, nb_describe(ctx, y, buf, sizeof buf));
}
