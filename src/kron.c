/* Kronecker products, vec (column stacking) and the commutation matrix K,
 * and derivatives of matrix-valued functions in the vec convention (Magnus &
 * Neudecker): DF(X) = ∂vec(F)/∂vec(X)ᵀ.  The derivative is read off F's
 * tangent Ḟ, a linear expression in Ẋ, term by term:
 *   vec(A·Ẋ·B) = (Bᵀ ⊗ A)·vec(Ẋ)     vec(Ẋᵀ) = K·vec(Ẋ)
 *   vec(D ⊙ Ẋ) = diag(vec D)·vec(Ẋ)  vec(sum(Ẋ)) = 1ᵀ·vec(Ẋ)
 * and the mixed-product rule (A ⊗ B)·(C ⊗ D) = (A·C) ⊗ (B·D) (ops.c) folds
 * the factors: d(A·X·B)/dX = (Bᵀ ⊗ I)·(I ⊗ A) = Bᵀ ⊗ A. */
#include "kron.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- product dimensions ------------------------------------------------------ */
static const char product_dot[] = "·";

bool nb_dim_is_product(const char *name) { return strstr(name, product_dot) != NULL; }

int nb_dim_each_factor(const char *name, int (*fn)(void *arg, const char *factor, size_t len), void *arg) {
    for (const char *q = name; *q;) {
        const char *end = strstr(q, product_dot);
        const size_t len = end ? (size_t)(end - q) : strlen(q);
        const int rc = fn(arg, q, len);
        if (rc) return rc;
        q = end ? end + strlen(product_dot) : q + len;
    }
    return 0;
}

nb_dim nb_dim_symbol_len(nb_ctx *ctx, const char *name, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy) return nb_set_error(ctx, "out of memory"), 0;
    memcpy(copy, name, len);
    copy[len] = '\0';
    const nb_dim d = nb_dim_symbol(ctx, copy);
    free(copy);
    return d;
}

typedef struct {
    nb_dim_factor *factors;
    size_t max, n;
} factor_list;

static int list_factor(void *arg, const char *factor, size_t len) {
    factor_list *l = arg;
    if (l->n < l->max) l->factors[l->n] = (nb_dim_factor){factor, len};
    l->n++;
    return 0;
}

size_t nb_dim_factors(const char *name, nb_dim_factor *factors, size_t max) {
    factor_list l = {factors, max, 0};
    nb_dim_each_factor(name, list_factor, &l);
    return l.n;
}

static int by_factor_name(const void *x, const void *y) {
    const nb_dim_factor *a = x, *b = y;
    int c = strncmp(a->name, b->name, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The symbol of a product names its factors in sorted order, so that
 * m·n and n·m are one dimension. */
nb_dim nb_dim_mul(nb_ctx *ctx, nb_dim a, nb_dim b) {
    char numbers[2][24];
    if (a == 1) return b;
    if (b == 1) return a;
    if (a > 0 && b > 0 && a <= INT64_MAX / b) return a * b;
    const char *na = nb_dim_name(ctx, a, numbers[0], sizeof numbers[0]);
    const char *nb = nb_dim_name(ctx, b, numbers[1], sizeof numbers[1]);
    const size_t len = strlen(na) + strlen(product_dot) + strlen(nb) + 1;
    char *joined = malloc(len), *name = malloc(len);
    size_t n = joined && name ? nb_dim_factors(strcat(strcat(strcpy(joined, na), product_dot), nb), NULL, 0) : 0;
    nb_dim_factor *factors = n ? malloc(n * sizeof *factors) : NULL;
    nb_dim d = 0;
    if (factors) {
        nb_dim_factors(joined, factors, n);
        qsort(factors, n, sizeof *factors, by_factor_name);
        size_t used = 0;
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(name + used, len - used, "%s%.*s", i ? product_dot : "", (int)factors[i].len,
                                     factors[i].name);
        d = nb_dim_symbol(ctx, name);
    } else {
        nb_set_error(ctx, "out of memory");
    }
    free(factors);
    free(joined);
    free(name);
    return d;
}

typedef struct {
    int64_t (*value_of)(const void *table, const char *factor, size_t len);
    const void *table;
    int64_t limit, value; /* the product so far; 0 once a factor is unknown */
    bool overflow;
} factor_product;

static int multiply_factor(void *arg, const char *factor, size_t len) {
    factor_product *acc = arg;
    int64_t v = len && strspn(factor, "0123456789") >= len ? strtoll(factor, NULL, 10) : 0;
    if (!v) v = acc->value_of(acc->table, factor, len);
    if (v <= 0) acc->value = 0;
    else if (__builtin_mul_overflow(acc->value, v, &acc->value) || acc->value > acc->limit) acc->overflow = true;
    return acc->value == 0 || acc->overflow;
}

int64_t nb_dim_factor_product(const char *name, int64_t (*value_of)(const void *table, const char *factor, size_t len),
                              const void *table, int64_t limit, bool *overflow) {
    factor_product acc = {value_of, table, limit, 1, false};
    nb_dim_each_factor(name, multiply_factor, &acc);
    *overflow = acc.overflow;
    return acc.value;
}

static int64_t bound_in_context(const void *table, const char *factor, size_t len) {
    const nb_ctx *ctx = table;
    for (size_t i = 0; i < ctx->ndims; i++)
        if (strlen(ctx->dims[i].name) == len && strncmp(ctx->dims[i].name, factor, len) == 0) return ctx->dims[i].bound;
    return 0;
}

/* The value of a symbol "m·n·…": the product of its factors' values. */
int64_t nb_dim_product_value(const nb_ctx *ctx, const char *name) {
    bool overflow;
    if (!nb_dim_is_product(name)) return 0;
    const int64_t v = nb_dim_factor_product(name, bound_in_context, ctx, INT64_MAX, &overflow);
    return overflow ? 0 : v;
}

static nb_type shape_type(nb_dim rows, nb_dim cols) {
    if (rows == 1 && cols == 1) return nb_scalar_type();
    if (cols == 1) return nb_vector_type(rows);
    if (rows == 1) return nb_row_type(cols);
    return nb_matrix_type(rows, cols);
}

/* The scalar s when e is s·1 (a constant of every entry c, or scalars times
 * one), else NULL. */
static nb_node *uniform_scale(nb_ctx *ctx, const nb_node *e) {
    if (e->type.kind == NB_SCALAR) return NULL;
    if (e->op == NB_OP_CONST) return nb_const(ctx, e->a.c, nb_scalar_type());
    if (e->op != NB_OP_MUL || e->nargs > 16) return NULL;
    const nb_node *uniform = NULL;
    for (size_t i = 0; i < e->nargs; i++) {
        const nb_node *f = e->args[i];
        if (f->type.kind == NB_SCALAR) continue;
        if (f->op != NB_OP_CONST || uniform) return NULL;
        uniform = f;
    }
    if (!uniform) return NULL;
    nb_node *scalars[16];
    for (size_t i = 0; i < e->nargs; i++)
        scalars[i] = e->args[i] == uniform ? nb_const(ctx, uniform->a.c, nb_scalar_type()) : e->args[i];
    return nb_mul_n(ctx, e->nargs, scalars);
}

/* ---- constructors ------------------------------------------------------------ */
nb_expr *nb_vec(nb_ctx *ctx, nb_expr *x) {
    if (!NB_API_OK(ctx, x)) return NULL;
    if (x->type.kind == NB_SCALAR || x->type.kind == NB_VECTOR) return x; /* vec of a column is itself */
    if (x->type.kind == NB_ROW) return nb_transpose(ctx, x);
    nb_type column = nb_vector_type(nb_dim_mul(ctx, x->type.rows, x->type.cols));
    nb_node *scale = ctx->raw ? NULL : uniform_scale(ctx, x);
    if (scale) return nb_rule(ctx, "vec(s·1) = s·1", nb_mul(ctx, scale, nb_ones(ctx, column)));
    return nb_make(ctx, NB_OP_VEC, column, 1, &x, NULL, 0);
}

nb_expr *nb_kron(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    if (a->type.kind == NB_SCALAR || b->type.kind == NB_SCALAR) return nb_mul(ctx, a, b); /* s ⊗ B = s·B */
    nb_type t = shape_type(nb_dim_mul(ctx, a->type.rows, b->type.rows), nb_dim_mul(ctx, a->type.cols, b->type.cols));
    if (!ctx->raw) {
        if (a->op == NB_OP_IDENTITY && b->op == NB_OP_IDENTITY)
            return nb_rule(ctx, "I ⊗ I = I", nb_identity(ctx, t.rows));
        if (a->op == NB_OP_CONST && b->op == NB_OP_CONST)
            return nb_rule(ctx, "(c·1) ⊗ (d·1) = (c·d)·1", nb_const(ctx, nb_number_mul(a->a.c, b->a.c), t));
        if (a->op == NB_OP_IDENTITY && a->type.rows == 1) return b;
        if (b->op == NB_OP_IDENTITY && b->type.rows == 1) return a;
        if (a->type.kind == NB_VECTOR && b->type.kind == NB_ROW) return nb_rule(ctx, "a ⊗ bᵀ = a·bᵀ", nb_matmul(ctx, a, b));
        if (a->type.kind == NB_ROW && b->type.kind == NB_VECTOR) return nb_rule(ctx, "aᵀ ⊗ b = b·aᵀ", nb_matmul(ctx, b, a));
    }
    nb_node *args[2] = {a, b};
    return nb_make(ctx, NB_OP_KRON, t, 2, args, NULL, 0);
}

nb_node *nb_commutation_matrix(nb_ctx *ctx, nb_dim m, nb_dim n) {
    nb_dim mn = nb_dim_mul(ctx, m, n);
    if (m == 1 || n == 1) return nb_identity(ctx, mn);
    int64_t dims[2] = {m, n};
    return nb_make(ctx, NB_OP_COMMUTATION, nb_matrix_type(mn, mn), 0, NULL, dims, sizeof dims);
}

static bool size_of(const nb_node *e, nb_dim *d) {
    if (e && e->op == NB_OP_DIMVAL) return *d = e->a.dim, true;
    if (e && e->op == NB_OP_CONST && e->type.kind == NB_SCALAR && nb_number_is_int(e->a.c) && e->a.c.num > 0)
        return *d = e->a.c.num, true;
    return false;
}

nb_expr *nb_commutation(nb_ctx *ctx, nb_expr *m, nb_expr *n) {
    nb_dim dm, dn;
    if (!NB_API_OK(ctx, m, n)) return NULL;
    if (!size_of(m, &dm) || !size_of(n, &dn)) {
        nb_set_error(ctx, "commutation(m, n) needs two sizes (positive integers or dimension names)");
        return NULL;
    }
    return nb_commutation_matrix(ctx, dm, dn);
}

/* (A ⊗ B)·(C ⊗ D) = (A·C) ⊗ (B·D) when the products are defined, also into
 * a sum of Kronecker products; NULL otherwise. */
static nb_node *mixed_product(nb_ctx *ctx, nb_node *l, nb_node *r) {
    if (l->op == NB_OP_KRON && r->op == NB_OP_ADD) {
        nb_node *terms[2];
        if (r->nargs != 2 || !mixed_product(ctx, l, r->args[0])) return NULL;
        for (int i = 0; i < 2; i++)
            if (!(terms[i] = mixed_product(ctx, l, r->args[i]))) return NULL;
        return nb_rule(ctx, "(A ⊗ B)·(C ⊗ D + E ⊗ F) = A·C ⊗ B·D + A·E ⊗ B·F", nb_add_n(ctx, 2, terms));
    }
    if (l->op != NB_OP_KRON || r->op != NB_OP_KRON) return NULL;
    nb_node *A = l->args[0], *B = l->args[1], *C = r->args[0], *D = r->args[1];
    if (A->type.cols != C->type.rows || B->type.cols != D->type.rows) return NULL;
    return nb_rule(ctx, "(A ⊗ B)·(C ⊗ D) = (A·C) ⊗ (B·D)", nb_kron(ctx, nb_matmul(ctx, A, C), nb_matmul(ctx, B, D)));
}

/* Whether e is a permutation matrix: I, K(m, n), or Kronecker products of them. */
static bool is_permutation(const nb_node *e) {
    if (e->op == NB_OP_KRON) return is_permutation(e->args[0]) && is_permutation(e->args[1]);
    return e->op == NB_OP_IDENTITY || e->op == NB_OP_COMMUTATION;
}

/* Whether l·r = unvec(v) = (vec(Iₙ)ᵀ ⊗ Iₘ)·(Iₙ ⊗ v), the m x n matrix whose
 * columns are stacked in v (the pattern unvec() below builds); sets *v. */
static bool is_unvec(const nb_node *l, const nb_node *r, nb_node **v) {
    if (l->op != NB_OP_KRON || r->op != NB_OP_KRON || r->args[0]->op != NB_OP_IDENTITY) return false;
    const nb_node *row = l->args[0], *eye = l->args[1];
    if (row->op != NB_OP_TRANSPOSE || row->args[0]->op != NB_OP_VEC || eye->op != NB_OP_IDENTITY) return false;
    const nb_node *In = row->args[0]->args[0];
    if (In->op != NB_OP_IDENTITY || In->a.dim != r->args[0]->a.dim) return false;
    *v = r->args[1];
    return (*v)->type.kind == NB_VECTOR;
}

/* Whether W is diag(vec(Iₙ))·(1 ⊗ Iₙ), the n² x n matrix with W·v =
 * vec(diag(v)) (diag_embedding below); n 0: of any size. */
static bool is_diag_embedding(const nb_node *W, nb_dim n) {
    if (W->op != NB_OP_MATMUL || W->args[0]->op != NB_OP_DIAG || W->args[1]->op != NB_OP_KRON) return false;
    const nb_node *v = W->args[0]->args[0], *ones = W->args[1]->args[0], *I = W->args[1]->args[1];
    return v->op == NB_OP_VEC && v->args[0]->op == NB_OP_IDENTITY && I->op == NB_OP_IDENTITY &&
           v->args[0]->a.dim == I->a.dim && (n == 0 || I->a.dim == n) && nb_is_const(ones, 1) &&
           ones->type.kind == NB_VECTOR && ones->type.rows == I->a.dim;
}

/* The products of matmul that the vec convention produces, folded back into
 * plain matrix expressions (NULL when none applies):
 *   unvec(vec(M)) = M,  unvec(s·1) = s·1·1ᵀ
 *   (uᵀ ⊗ M)·W = M·diag(u) for W with W·v = vec(diag(v)), as
 *       (uᵀ ⊗ M)·vec(D) = vec(M·D·u) and diag(v)·u = diag(u)·v
 *   P·(s·1) = s·1 for a permutation P
 *   (A ⊗ B)·(s·1) = s·(A·1) ⊗ (B·1)       (1 = 1 ⊗ 1)
 *   (L·M)·(s·1) = L·(M·(s·1)) when M·(s·1) folds
 *   (A ⊗ B)·((C ⊗ D)·E) and (L·(A ⊗ B))·R regrouped where a product folds
 * and the mixed product (A ⊗ B)·(C ⊗ D) = (A·C) ⊗ (B·D). */
nb_node *nb_kron_matmul_rewrite(nb_ctx *ctx, nb_node *l, nb_node *r) {
    nb_node *v, *s, *folded;
    if (l->op == NB_OP_KRON && l->args[0]->type.kind == NB_ROW && is_diag_embedding(r, l->args[1]->type.cols))
        return nb_rule(ctx, "(uᵀ ⊗ M)·W = M·diag(u), W·v = vec(diag(v))",
                       nb_matmul(ctx, l->args[1], nb_diag(ctx, nb_transpose(ctx, l->args[0]))));
    if (l->op == NB_OP_KRON && r->op == NB_OP_MATMUL && r->args[0]->op == NB_OP_KRON &&
        (folded = mixed_product(ctx, l, r->args[0])) != NULL)
        return nb_matmul(ctx, folded, r->args[1]); /* (A ⊗ B)·((C ⊗ D)·E) = ((A·C) ⊗ (B·D))·E */
    if (l->op == NB_OP_MATMUL && l->args[1]->op == NB_OP_KRON && (r->op == NB_OP_KRON || is_diag_embedding(r, 0)) &&
        (folded = nb_kron_matmul_rewrite(ctx, l->args[1], r)) != NULL)
        return nb_matmul(ctx, l->args[0], folded); /* (L·(A ⊗ B))·R = L·((A ⊗ B)·R) when the second folds */
    if (is_unvec(l, r, &v)) {
        nb_type t = shape_type(l->type.rows, r->type.cols);
        if (v->op == NB_OP_VEC && nb_type_eq(v->args[0]->type, t)) return nb_rule(ctx, "unvec(vec(M)) = M", v->args[0]);
        if ((s = uniform_scale(ctx, v)) != NULL) return nb_rule(ctx, "unvec(s·1) = s·1·1ᵀ", nb_mul(ctx, s, nb_ones(ctx, t)));
    }
    if (r->type.kind == NB_VECTOR && (s = uniform_scale(ctx, r)) != NULL) {
        if (is_permutation(l)) return nb_rule(ctx, "P·(s·1) = s·1", nb_mul(ctx, s, nb_ones(ctx, nb_vector_type(l->type.rows))));
        if (l->op == NB_OP_KRON) {
            nb_node *A = l->args[0], *B = l->args[1];
            nb_node *ones_a = nb_ones(ctx, nb_vector_type(A->type.cols)), *ones_b = nb_ones(ctx, nb_vector_type(B->type.cols));
            return nb_rule(ctx, "(A ⊗ B)·(s·1) = s·(A·1) ⊗ (B·1)",
                           nb_mul(ctx, s, nb_kron(ctx, nb_matmul(ctx, A, ones_a), nb_matmul(ctx, B, ones_b))));
        }
        if (l->op == NB_OP_MATMUL && (l->args[1]->op == NB_OP_KRON || is_permutation(l->args[1])))
            return nb_matmul(ctx, l->args[0], nb_matmul(ctx, l->args[1], r));
    }
    return mixed_product(ctx, l, r);
}

/* ---- derivative rules ---------------------------------------------------------- */
/* The m x n matrix whose columns are stacked in v (mn x 1):
 * unvec(v) = (vec(Iₙ)ᵀ ⊗ Iₘ)·(Iₙ ⊗ v). */
static nb_node *unvec(nb_ctx *ctx, nb_node *v, nb_dim m, nb_dim n) {
    if (n == 1) return v;
    nb_node *left = nb_kron(ctx, nb_transpose(ctx, nb_vec(ctx, nb_identity(ctx, n))), nb_identity(ctx, m));
    return nb_matmul(ctx, left, nb_kron(ctx, nb_identity(ctx, n), v));
}

/* The adjoint of a matrix operand (scalar f) from the row r = G·∂vec(y)/∂vec(x)ᵀ. */
static nb_node *operand_adjoint(nb_ctx *ctx, const nb_node *x, nb_node *r) {
    return x->type.kind == NB_MATRIX ? unvec(ctx, nb_transpose(ctx, r), x->type.rows, x->type.cols) : r;
}

/* y = vec(X): the row G lands back in X's shape. */
int nb_vjp_vec(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = operand_adjoint(ctx, y->args[0], G);
    return out[0] ? 0 : -1;
}

/* y = A ⊗ B (A m x n, B p x q):  vec(A ⊗ B) = P·(vec A ⊗ vec B) with
 * P = Iₙ ⊗ K(q, m) ⊗ Iₚ, so ∂vec(y)/∂vec(A)ᵀ = P·(I ⊗ vec B) and
 * ∂vec(y)/∂vec(B)ᵀ = P·(vec A ⊗ I). */
static nb_node *kron_jacobian(nb_ctx *ctx, const nb_node *y, int i) {
    nb_node *A = y->args[0], *B = y->args[1];
    nb_dim m = A->type.rows, n = A->type.cols, p = B->type.rows, q = B->type.cols;
    nb_node *P = nb_kron(ctx, nb_kron(ctx, nb_identity(ctx, n), nb_commutation_matrix(ctx, q, m)), nb_identity(ctx, p));
    nb_node *J = i == 0 ? nb_kron(ctx, nb_identity(ctx, nb_dim_mul(ctx, m, n)), nb_vec(ctx, B))
                        : nb_kron(ctx, nb_vec(ctx, A), nb_identity(ctx, nb_dim_mul(ctx, p, q)));
    return nb_matmul(ctx, P, J);
}

int nb_vjp_kron(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    nb_node *Gj = y->type.kind == NB_MATRIX ? nb_transpose(ctx, nb_vec(ctx, G)) : G; /* rows: f's entries */
    for (int i = 0; i < 2; i++)
        if (want[i] && !(out[i] = operand_adjoint(ctx, y->args[i], nb_matmul(ctx, Gj, kron_jacobian(ctx, y, i))))) return -1;
    return 0;
}

/* ---- the vec-convention derivative --------------------------------------------- */
typedef struct {
    nb_ctx *ctx;
    nb_node *dX;    /* the tangent variable Ẋ */
    nb_node **nodes; /* nb_toposort of the tangent */
    size_t n;
    bool *dep;      /* depends on Ẋ */
    nb_node **memo; /* J of each node (NULL: not yet) */
} linearizer;

static nb_dim length(nb_ctx *ctx, nb_type t) { return nb_dim_mul(ctx, t.rows, t.cols); }

static nb_node *linear_part(linearizer *L, nb_node *e);

static nb_node *cannot(linearizer *L, const nb_node *e) {
    char buf[160];
    nb_set_error(L->ctx, "cannot write the derivative through %s in the vec/Kronecker form", nb_describe(L->ctx, e, buf, sizeof buf));
    return NULL;
}

/* J of operand u of e, spread when u broadcasts (a scalar, or a row over a matrix). */
static nb_node *broadcast_part(linearizer *L, nb_node *e, nb_node *u) {
    nb_ctx *ctx = L->ctx;
    nb_node *J = linear_part(L, u);
    if (!J || nb_type_eq(u->type, e->type) || (u->type.rows == e->type.rows && u->type.cols == e->type.cols)) return J;
    if (u->type.kind == NB_SCALAR) return nb_matmul(ctx, nb_ones(ctx, nb_vector_type(length(ctx, e->type))), J);
    if (u->type.kind == NB_ROW) /* vec(1·r) = (Iₙ ⊗ 1ₘ)·rᵀ */
        return nb_matmul(ctx, nb_kron(ctx, nb_identity(ctx, e->type.cols), nb_ones(ctx, nb_vector_type(e->type.rows))), J);
    return cannot(L, e);
}

static nb_node *sum_parts(linearizer *L, nb_node *e) {
    nb_node **terms = malloc(e->nargs * sizeof *terms);
    size_t n = 0;
    nb_node *r = NULL;
    if (!terms) return NULL;
    for (size_t i = 0; i < e->nargs; i++)
        if (L->dep[nb_topo_index(L->nodes, L->n, e->args[i])] && !(terms[n++] = broadcast_part(L, e, e->args[i]))) goto done;
    r = nb_add_n(L->ctx, n, terms);
done:
    free(terms);
    return r;
}

/* e = D ⊙ u with u the one factor that depends on Ẋ. */
static nb_node *product_part(linearizer *L, nb_node *e) {
    nb_ctx *ctx = L->ctx;
    nb_node **others = malloc(e->nargs * sizeof *others), *u = NULL, *r = NULL;
    size_t n = 0;
    if (!others) return NULL;
    for (size_t i = 0; i < e->nargs; i++) {
        if (!L->dep[nb_topo_index(L->nodes, L->n, e->args[i])]) others[n++] = e->args[i];
        else if (u) { /* a product of two tangents is not linear */
            r = cannot(L, e);
            goto done;
        } else u = e->args[i];
    }
    nb_node *D = nb_mul_n(ctx, n, others);
    nb_node *J = D && D->type.kind != NB_SCALAR && u->type.kind == NB_SCALAR ? linear_part(L, u) : broadcast_part(L, e, u);
    if (!D || !J) goto done;
    if (D->type.kind == NB_ROW && e->type.kind == NB_MATRIX) /* a row broadcast over the rows: 1·r */
        D = nb_matmul(ctx, nb_ones(ctx, nb_vector_type(e->type.rows)), D);
    if (!D) goto done;
    if (D->type.kind == NB_SCALAR) r = nb_mul(ctx, D, J);
    else if (u->type.kind == NB_SCALAR) r = nb_matmul(ctx, nb_vec(ctx, D), J); /* vec(D·u) = vec(D)·u */
    else if (nb_type_eq(D->type, e->type)) r = nb_matmul(ctx, nb_diag(ctx, nb_vec(ctx, D)), J);
    else r = cannot(L, e);
done:
    free(others);
    return r;
}

/* W (n² x n) with vec(diag(v)) = W·v: diag(vec(I))·(1 ⊗ I). */
static nb_node *diag_embedding(nb_ctx *ctx, nb_dim n) {
    nb_node *I = nb_identity(ctx, n);
    return nb_matmul(ctx, nb_diag(ctx, nb_vec(ctx, I)), nb_kron(ctx, nb_ones(ctx, nb_vector_type(n)), I));
}

/* eₖ of length n (a number), as a column; NULL with the error set otherwise. */
static nb_node *unit(linearizer *L, nb_dim n, int64_t k, const nb_node *e) {
    if (n <= 0 || n > 4096) return cannot(L, e);
    nb_node **v = malloc((size_t)n * sizeof *v), *r = NULL;
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) v[i] = nb_const(L->ctx, nb_number_int(i == k), nb_scalar_type());
    r = nb_vector_lit(L->ctx, (size_t)n, v);
    free(v);
    return r;
}

/* A literal: Σₖ e_vec(k)·J(entry k), entries in vec (column-major) order. */
static nb_node *literal_part(linearizer *L, nb_node *e) {
    nb_ctx *ctx = L->ctx;
    int64_t rows = e->op == NB_OP_VECLIT ? (int64_t)e->nargs : e->type.rows, cols = e->op == NB_OP_VECLIT ? 1 : e->type.cols;
    nb_node *sum = NULL;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            nb_node *x = e->args[i * cols + j];
            if (!L->dep[nb_topo_index(L->nodes, L->n, x)]) continue;
            nb_node *term = nb_matmul(ctx, unit(L, rows * cols, j * rows + i, e), linear_part(L, x));
            if (!term) return NULL;
            sum = sum ? nb_add(ctx, sum, term) : term;
        }
    return sum;
}

static nb_node *linear_uncached(linearizer *L, nb_node *e) {
    nb_ctx *ctx = L->ctx;
    if (e == L->dX) return e->type.kind == NB_SCALAR ? nb_const(ctx, nb_number_int(1), e->type) : nb_identity(ctx, length(ctx, e->type));
    nb_node *a = e->nargs ? e->args[0] : NULL, *b = e->nargs > 1 ? e->args[1] : NULL;
    bool da = a && L->dep[nb_topo_index(L->nodes, L->n, a)], db = b && L->dep[nb_topo_index(L->nodes, L->n, b)];
    switch (e->op) {
    case NB_OP_ADD: return sum_parts(L, e);
    case NB_OP_MUL: return product_part(L, e);
    case NB_OP_TRANSPOSE:
        if (a->type.kind != NB_MATRIX) return linear_part(L, a);
        return nb_matmul(ctx, nb_commutation_matrix(ctx, a->type.rows, a->type.cols), linear_part(L, a));
    case NB_OP_MATMUL: { /* vec(A·B) = (Bᵀ ⊗ I)·vec(A) = (I ⊗ A)·vec(B) */
        nb_node *r = da ? nb_matmul(ctx, nb_kron(ctx, nb_transpose(ctx, b), nb_identity(ctx, a->type.rows)), linear_part(L, a)) : NULL;
        nb_node *s = db ? nb_matmul(ctx, nb_kron(ctx, nb_identity(ctx, b->type.cols), a), linear_part(L, b)) : NULL;
        return r && s ? nb_add(ctx, r, s) : r ? r : s;
    }
    case NB_OP_SOLVE: /* vec(A⁻¹·R) = (I ⊗ A⁻¹)·vec(R); the tangent rule keeps Ẋ out of A */
        if (da) return cannot(L, e);
        return nb_matmul(ctx, nb_kron(ctx, nb_identity(ctx, b->type.cols), nb_inv(ctx, a)), linear_part(L, b));
    case NB_OP_SUM: return nb_matmul(ctx, nb_ones(ctx, nb_row_type(length(ctx, a->type))), linear_part(L, a));
    case NB_OP_TRACE: return nb_matmul(ctx, nb_transpose(ctx, nb_vec(ctx, nb_identity(ctx, a->type.rows))), linear_part(L, a));
    case NB_OP_VEC: return linear_part(L, a);
    case NB_OP_KRON: {
        nb_node *r = da ? nb_matmul(ctx, kron_jacobian(ctx, e, 0), linear_part(L, a)) : NULL;
        nb_node *s = db ? nb_matmul(ctx, kron_jacobian(ctx, e, 1), linear_part(L, b)) : NULL;
        return r && s ? nb_add(ctx, r, s) : r ? r : s;
    }
    case NB_OP_DIAG: /* diag(v) = I ⊙ (v·1ᵀ): vec(diag v) = diag(vec I)·(1 ⊗ I)·v */
        return nb_matmul(ctx, diag_embedding(ctx, e->type.rows), linear_part(L, a));
    case NB_OP_VECLIT:
    case NB_OP_MATLIT: return literal_part(L, e);
    case NB_OP_COLUMN: /* vec(A[:, k]) = (eₖᵀ ⊗ I)·vec(A) */
        return nb_matmul(ctx, nb_kron(ctx, nb_transpose(ctx, unit(L, a->type.cols, e->a.index[0], e)), nb_identity(ctx, a->type.rows)),
                         linear_part(L, a));
    case NB_OP_ENTRY: /* A[i, j] = (eⱼᵀ ⊗ eᵢᵀ)·vec(A) */
        return nb_matmul(ctx,
                         nb_kron(ctx, nb_transpose(ctx, unit(L, a->type.cols, e->a.index[1], e)),
                                 nb_transpose(ctx, unit(L, a->type.rows, e->a.index[0], e))),
                         linear_part(L, a));
    case NB_OP_DIAGPART: /* its transpose picks the diagonal */
        return nb_matmul(ctx, nb_transpose(ctx, diag_embedding(ctx, a->type.rows)), linear_part(L, a));
    default: return cannot(L, e);
    }
}

static nb_node *linear_part(linearizer *L, nb_node *e) {
    size_t i = nb_topo_index(L->nodes, L->n, e);
    if (i == L->n || !L->dep[i]) return nb_zero(L->ctx, shape_type(length(L->ctx, e->type), length(L->ctx, L->dX->type)));
    if (!L->memo[i]) L->memo[i] = linear_uncached(L, e);
    return L->memo[i];
}

nb_node *nb_vec_jacobian(nb_ctx *ctx, nb_node *F, nb_node *X) {
    char *name = malloc(strlen("δ") + strlen(X->a.name) + 1); /* δX: not a name the parser reads, no clash */
    if (!name) return nb_set_error(ctx, "out of memory"), NULL;
    const char *attr = strcat(strcpy(name, "δ"), X->a.name);
    linearizer L = {ctx, nb_make(ctx, NB_OP_VAR, X->type, 0, NULL, &attr, sizeof attr), NULL, 0, NULL, NULL};
    free(name);
    nb_node *T = L.dX ? nb_jvp(ctx, F, X, L.dX) : NULL, *J = NULL;
    if (!T || !(L.nodes = nb_toposort(ctx, 1, &T, &L.n))) return NULL;
    L.dep = calloc(L.n + 1, sizeof *L.dep);
    L.memo = calloc(L.n + 1, sizeof *L.memo);
    if (L.dep && L.memo) {
        for (size_t i = 0; i < L.n; i++) {
            nb_node *e = L.nodes[i];
            L.dep[i] = e == L.dX;
            for (size_t k = 0; k < e->nargs && !L.dep[i]; k++) L.dep[i] = L.dep[nb_topo_index(L.nodes, L.n, e->args[k])];
        }
        J = linear_part(&L, T);
    } else nb_set_error(ctx, "out of memory");
    free(L.nodes);
    free(L.dep);
    free(L.memo);
    return J;
}
