/* The operators of the registry (ops.def): for each, its shape rule and
 * canonicalising constructor (each rewrite named, see nb_rule), its pure
 * derivative rule (an element-wise partial ∂y/∂aᵢ, or a VJP rule returning
 * one contribution per operand, and a tangent rule for the row-wise ones),
 * and its reference f64 kernel.  The table nb_ops at the end, generated from
 * ops.def, ties them together; docs/operators.md is the checklist. */
#include "kron.h"
#include "matfn.h"
#include "nb_internal.h"
#include "scalar_f64.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLATTEN_LIMIT 64 /* n-ary sums/products are flattened up to this size */

static nb_number node_number(const nb_node *e) { return e->a.c; }
static nb_node *num(nb_ctx *ctx, int64_t v) { return nb_const(ctx, nb_number_int(v), nb_scalar_type()); }
static bool is_scalar_const(const nb_node *e) { return e->op == NB_OP_CONST && e->type.kind == NB_SCALAR; }
static bool is_ones(const nb_node *e) { return nb_is_const(e, 1) && e->type.kind != NB_SCALAR; }

/* ---- shape rules --------------------------------------------------------- */
static bool dim_eq(nb_dim a, nb_dim b) { return a == b; }

static nb_node *shape_error(nb_ctx *ctx, const char *what, const nb_node *a, const nb_node *b) {
    char ta[80], tb[80], da[120], db[120];
    nb_set_error(ctx, "shape mismatch in %s: %s is %s but %s is %s", what, nb_describe(ctx, a, da, sizeof da),
                 nb_type_str(ctx, a->type, ta, sizeof ta), nb_describe(ctx, b, db, sizeof db),
                 nb_type_str(ctx, b->type, tb, sizeof tb));
    return NULL;
}

/* Element-wise broadcasting: a scalar expands to any shape; a row (1 x n)
 * expands over the rows of an m x n matrix. */
static bool broadcast(nb_type a, nb_type b, nb_type *out) {
    if (a.kind == NB_SCALAR) return *out = b, true;
    if (b.kind == NB_SCALAR || nb_type_eq(a, b)) return *out = a, true;
    if (a.kind == NB_MATRIX && b.kind == NB_ROW && dim_eq(a.cols, b.cols)) return *out = a, true;
    if (b.kind == NB_MATRIX && a.kind == NB_ROW && dim_eq(a.cols, b.cols)) return *out = b, true;
    return false;
}

static bool broadcast_all(nb_ctx *ctx, const char *what, size_t n, nb_node *const *args, nb_type *out) {
    nb_type t = nb_scalar_type();
    const nb_node *shaped = NULL;
    for (size_t i = 0; i < n; i++) {
        nb_type next;
        if (!broadcast(t, args[i]->type, &next)) {
            shape_error(ctx, what, shaped, args[i]);
            return false;
        }
        if (!nb_type_eq(next, t) || !shaped) shaped = args[i];
        t = next;
    }
    *out = t;
    return true;
}

static nb_type transposed(nb_type t) {
    switch (t.kind) {
    case NB_VECTOR: return nb_row_type(t.rows);
    case NB_ROW: return nb_vector_type(t.cols);
    case NB_MATRIX: return nb_matrix_type(t.cols, t.rows);
    default: return t;
    }
}

/* ---- a pointer -> index map, so merging n terms costs O(n) ---------------- */
typedef struct {
    const nb_node **key;
    size_t *index;
    size_t mask;
} node_index;

static bool node_index_init(node_index *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->key = calloc(cap, sizeof *m->key);
    m->index = malloc(cap * sizeof *m->index);
    m->mask = cap - 1;
    return m->key && m->index;
}

static void node_index_free(node_index *m) {
    free(m->key);
    free(m->index);
}

/* Returns the index stored for key, or stores fresh and returns it. */
static size_t node_index_get(node_index *m, const nb_node *key, size_t fresh) {
    size_t h = (size_t)(key->hash ^ (key->hash >> 29)) & m->mask;
    while (m->key[h] && m->key[h] != key) h = (h + 1) & m->mask;
    if (!m->key[h]) {
        m->key[h] = key;
        m->index[h] = fresh;
    }
    return m->index[h];
}

/* An n-ary node; past the operand limit of a node, a tree of chunks. */
static nb_node *make_nary(nb_ctx *ctx, nb_op op, size_t n, nb_node *const *args) {
    enum { CHUNK = 4096 };
    nb_type type;
    if (n <= UINT16_MAX) {
        if (!broadcast_all(ctx, nb_ops[op].name, n, args, &type)) return NULL;
        return nb_make(ctx, op, type, n, args, NULL, 0);
    }
    size_t groups = (n + CHUNK - 1) / CHUNK;
    nb_node **partial = malloc(groups * sizeof *partial);
    if (!partial) return NULL;
    for (size_t g = 0; g < groups; g++) {
        size_t len = g + 1 < groups ? CHUNK : n - g * CHUNK;
        partial[g] = len == 1 ? args[g * CHUNK] : make_nary(ctx, op, len, args + g * CHUNK);
    }
    nb_node *r = make_nary(ctx, op, groups, partial);
    free(partial);
    return r;
}

/* Operand count once nested sums (or products) of op are flattened. */
static size_t flattened_size(nb_op op, size_t n, nb_node *const *args) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += args[i]->op == op && args[i]->nargs <= FLATTEN_LIMIT ? args[i]->nargs : 1;
    return total;
}

/* ---- ADD --------------------------------------------------------------- */
typedef struct {
    nb_number coef;
    nb_node *rest; /* NULL: a plain number */
} term;

/* c·rest decomposition of a term. */
static term split_term(nb_ctx *ctx, nb_node *e) {
    if (e->op == NB_OP_CONST)
        return (term){node_number(e), e->type.kind == NB_SCALAR ? NULL : nb_ones(ctx, e->type)};
    if (e->op == NB_OP_MUL && is_scalar_const(e->args[0])) {
        nb_node *rest = e->nargs == 2 ? e->args[1] : nb_make(ctx, NB_OP_MUL, e->type, e->nargs - 1u, e->args + 1, NULL, 0);
        return (term){node_number(e->args[0]), rest};
    }
    return (term){nb_number_int(1), e};
}

nb_node *nb_scale(nb_ctx *ctx, nb_number c, nb_node *a) {
    nb_node *f[2] = {nb_const(ctx, c, nb_scalar_type()), a};
    return nb_mul_n(ctx, 2, f);
}

static nb_node *build_term(nb_ctx *ctx, term t) {
    return t.rest ? nb_scale(ctx, t.coef, t.rest) : nb_const(ctx, t.coef, nb_scalar_type());
}

/* Literals add entry by entry: [a, b] + [c, d] = [a + c, b + d]. */
static nb_node *add_literals(nb_ctx *ctx, nb_node *x, nb_node *y) {
    nb_node **e = malloc(x->nargs * sizeof *e);
    if (!e) return NULL;
    for (size_t i = 0; i < x->nargs; i++) {
        nb_node *pair[2] = {x->args[i], y->args[i]};
        e[i] = nb_add_n(ctx, 2, pair);
    }
    nb_node *r = x->op == NB_OP_VECLIT ? nb_vector_lit(ctx, x->nargs, e)
                                       : nb_matrix_lit(ctx, (size_t)x->type.rows, (size_t)x->type.cols, e);
    free(e);
    return r;
}

static bool is_literal(const nb_node *e) { return e && (e->op == NB_OP_VECLIT || e->op == NB_OP_MATLIT); }

/* Factors of a term as a product (a non-product is its own single factor). */
static size_t term_factors(nb_node *const *t, nb_node *const **f) {
    if ((*t)->op == NB_OP_MUL) {
        *f = (*t)->args;
        return (*t)->nargs;
    }
    *f = t;
    return 1;
}

static bool has_factor(nb_node *const *t, const nb_node *x) {
    nb_node *const *f;
    size_t n = term_factors(t, &f);
    for (size_t i = 0; i < n; i++)
        if (f[i] == x) return true;
    return false;
}

/* The term with one factor x removed. */
static nb_node *without_factor(nb_ctx *ctx, nb_node *const *t, const nb_node *x) {
    nb_node *const *f;
    size_t n = term_factors(t, &f), k = 0;
    nb_node *rest[FLATTEN_LIMIT + 1];
    if (n > FLATTEN_LIMIT + 1) return NULL;
    bool removed = false;
    for (size_t i = 0; i < n; i++) {
        if (f[i] == x && !removed) removed = true;
        else rest[k++] = f[i];
    }
    return nb_mul_n(ctx, k, rest);
}

/* Σₖ cₖ·(L·Rₖ) = L·(Σₖ cₖ·Rₖ) and Σₖ cₖ·(Lₖ·R) = (Σₖ cₖ·Lₖ)·R: a matrix
 * product factor common to every term comes out (xᵀ·B + xᵀ·Bᵀ = xᵀ·(B + Bᵀ)). */
static nb_node *factor_out_product(nb_ctx *ctx, size_t n, nb_node *const *terms) {
    if (n > 16) return NULL;
    term t[16];
    for (size_t k = 0; k < n; k++) {
        t[k] = split_term(ctx, terms[k]);
        if (!t[k].rest || t[k].rest->op != NB_OP_MATMUL) return NULL;
    }
    for (int side = 0; side < 2; side++) {
        nb_node *common = t[0].rest->args[side];
        bool everywhere = true;
        for (size_t k = 1; k < n && everywhere; k++) everywhere = t[k].rest->args[side] == common;
        if (!everywhere) continue;
        nb_node *others[16];
        for (size_t k = 0; k < n; k++) others[k] = nb_scale(ctx, t[k].coef, t[k].rest->args[1 - side]);
        nb_node *sum = nb_add_n(ctx, n, others);
        nb_node *r = side == 0 ? nb_matmul(ctx, common, sum) : nb_matmul(ctx, sum, common);
        return nb_rule(ctx, side == 0 ? "L·A + L·B = L·(A + B)" : "A·R + B·R = (A + B)·R", r);
    }
    return NULL;
}

/* a·F + b·F = F·(a + b) for a compound factor F (a function application or a
 * sum, never a bare variable, so polynomials stay expanded): cos(u) + 2x·cos(u)
 * prints as cos(u)·(1 + 2x). */
static nb_node *factor_out_common(nb_ctx *ctx, size_t n, nb_node *const *terms) {
    nb_node *const *f;
    size_t nf = term_factors(&terms[0], &f);
    if (n > 16 || nf > 16) return NULL; /* a readability rewrite: keep it cheap */
    for (size_t i = 0; i < nf; i++) {
        nb_node *x = f[i];
        nb_op op = x->op == NB_OP_POW ? (nb_op)x->args[0]->op : (nb_op)x->op;
        if (op == NB_OP_CONST || op == NB_OP_VAR || op == NB_OP_DIMVAL || x->type.kind != NB_SCALAR) continue;
        bool everywhere = true;
        for (size_t k = 1; k < n && everywhere; k++) everywhere = has_factor(&terms[k], x);
        if (!everywhere) continue;
        nb_node **rest = malloc(n * sizeof *rest);
        if (!rest) return NULL;
        for (size_t k = 0; k < n; k++) rest[k] = without_factor(ctx, &terms[k], x);
        nb_node *r = nb_mul(ctx, x, nb_add_n(ctx, n, rest));
        free(rest);
        return r;
    }
    return NULL;
}

/* The sum of args, whose broadcast type is type (checked by nb_add_n). */
static nb_node *add_rewrite(nb_ctx *ctx, size_t n, nb_node *const *args, nb_type type) {
    size_t cap = flattened_size(NB_OP_ADD, n, args);
    term *t = malloc((cap + 1) * sizeof *t);
    nb_node **out = malloc((cap + 2) * sizeof *out);
    nb_node *result = NULL;
    node_index seen;
    bool indexed = node_index_init(&seen, cap);
    if (!t || !out || !indexed) goto done;
    size_t nt = 0;
    bool like_terms = false, numbers_added = false;
    nb_node *number_key = nb_ones(ctx, nb_scalar_type()); /* stands for the plain-number term */
    for (size_t i = 0; i < n; i++) {
        bool flat = args[i]->op == NB_OP_ADD && args[i]->nargs <= FLATTEN_LIMIT;
        for (size_t k = 0; k < (flat ? args[i]->nargs : 1u); k++) {
            term s = split_term(ctx, flat ? args[i]->args[k] : args[i]);
            if (s.rest == NULL && s.coef.exact && s.coef.num == 0) continue;
            size_t j = node_index_get(&seen, s.rest ? s.rest : number_key, nt);
            if (j < nt) {
                t[j].coef = nb_number_add(t[j].coef, s.coef);
                if (s.rest) like_terms = true;
                else numbers_added = true;
            }
            else t[nt++] = s;
        }
    }
    /* Structure: c·I and diag(v) terms of one size merge into one diag. */
    int first_struct = -1;
    nb_node *diag_sum = NULL;
    nb_number eye = nb_number_int(0);
    bool has_diag = false;
    for (size_t i = 0; i < nt; i++) {
        if (!t[i].rest || (t[i].rest->op != NB_OP_DIAG && t[i].rest->op != NB_OP_IDENTITY)) continue;
        if (first_struct < 0) first_struct = (int)i;
        if (t[i].rest->op == NB_OP_IDENTITY) eye = nb_number_add(eye, t[i].coef);
        else {
            nb_node *v = nb_scale(ctx, t[i].coef, t[i].rest->args[0]);
            nb_node *pair[2] = {diag_sum, v};
            diag_sum = diag_sum ? nb_add_n(ctx, 2, pair) : v;
            has_diag = true;
        }
        if ((int)i != first_struct) t[i].coef = nb_number_int(0);
    }
    if (first_struct >= 0) {
        if (has_diag) {
            nb_node *pair[2] = {diag_sum, nb_const(ctx, eye, nb_scalar_type())};
            t[first_struct] = (term){nb_number_int(1), nb_diag(ctx, nb_add_n(ctx, 2, pair))};
        } else {
            t[first_struct] = (term){eye, nb_identity(ctx, type.rows)};
        }
    }
    /* Literal terms merge entry by entry. */
    int first_lit = -1;
    for (size_t i = 0; i < nt; i++) {
        if (nb_number_is(t[i].coef, 0) || !t[i].rest) continue;
        nb_node *lit = build_term(ctx, t[i]);
        if (!is_literal(lit)) continue;
        if (first_lit < 0) {
            first_lit = (int)i;
            t[i] = (term){nb_number_int(1), lit};
        } else if (t[first_lit].rest->op == lit->op && nb_type_eq(lit->type, t[first_lit].rest->type)) {
            t[first_lit].rest = add_literals(ctx, t[first_lit].rest, lit);
            t[i].coef = nb_number_int(0);
        }
    }
    size_t no = 0;
    bool shaped = false;
    for (size_t i = 0; i < nt; i++) {
        if (nb_number_is(t[i].coef, 0) || (t[i].rest && nb_is_zero(t[i].rest))) continue;
        out[no] = build_term(ctx, t[i]);
        if (!out[no]) goto done;
        shaped |= nb_type_eq(out[no]->type, type);
        no++;
    }
    if (no == 0) result = nb_rule(ctx, "a - a = 0", nb_zero(ctx, type));
    else if (no >= 2 && (result = factor_out_product(ctx, no, out)) != NULL) {
    } else if (no >= 2 && (result = factor_out_common(ctx, no, out)) != NULL) {
        nb_rule(ctx, "a·F + b·F = F·(a + b)", result);
    } else if (!shaped) {
        /* Only scalars survived: expand them to the result's shape. */
        nb_node *s = no == 1 ? out[0] : make_nary(ctx, NB_OP_ADD, no, out);
        nb_node *f[2] = {s, nb_ones(ctx, type)};
        result = nb_make(ctx, NB_OP_MUL, type, 2, f, NULL, 0);
    } else if (no == 1) result = out[0];
    else {
        /* Aᵀ + A = A + Aᵀ: the symmetric part as the Cookbook writes it, and one
         * node for both orders (other sums keep their terms' order, so this
         * is a canonicalisation the printer could not make) */
        if (no == 2 && out[0]->op == NB_OP_TRANSPOSE && out[0]->args[0] == out[1]) {
            nb_node *swap = out[0];
            out[0] = out[1];
            out[1] = swap;
        }
        result = make_nary(ctx, NB_OP_ADD, no, out);
    }
    if (like_terms) nb_rule(ctx, "a·x + b·x = (a + b)·x", result);
    else if (numbers_added) nb_rule(ctx, NB_RULE_CONSTANT_ARITHMETIC, result);
done:
    if ((!t || !out || !indexed) && !result) nb_set_error(ctx, "out of memory");
    node_index_free(&seen);
    free(t);
    free(out);
    return result;
}

/* ---- MUL --------------------------------------------------------------- */
typedef struct {
    nb_node *base;
    nb_number exp;
} factor;

/* Printing order of factors: scalars before arrays; numbers, then variables
 * and their powers, then function applications, then sums; ties by age. */
static int factor_rank(const nb_node *b) {
    int shape = b->type.kind == NB_SCALAR ? 0 : 8;
    if (is_ones(b)) return shape + 0;
    switch (b->op) {
    case NB_OP_VAR:
    case NB_OP_DIMVAL: return shape + 1;
    case NB_OP_ADD: return shape + 3;
    default: return shape + 2;
    }
}

static int factor_cmp(const void *x, const void *y) {
    const factor *a = x, *b = y;
    int ra = factor_rank(a->base), rb = factor_rank(b->base);
    if (ra != rb) return ra - rb;
    return (a->base->id > b->base->id) - (a->base->id < b->base->id);
}

static nb_node *make_pow(nb_ctx *ctx, nb_node *base, nb_number e) {
    if (nb_number_is(e, 1)) return base;
    nb_node *args[2] = {base, nb_const(ctx, e, nb_scalar_type())};
    return nb_make(ctx, NB_OP_POW, base->type, 2, args, NULL, 0);
}

static nb_node *literal_map_scale(nb_ctx *ctx, nb_node *lit, size_t ns, nb_node *const *scalars) {
    nb_node **e = malloc(lit->nargs * sizeof *e);
    nb_node **f = malloc((ns + 1) * sizeof *f);
    nb_node *r = NULL;
    if (e && f) {
        memcpy(f, scalars, ns * sizeof *f);
        for (size_t i = 0; i < lit->nargs; i++) {
            f[ns] = lit->args[i];
            e[i] = nb_mul_n(ctx, ns + 1, f);
        }
        r = lit->op == NB_OP_VECLIT ? nb_vector_lit(ctx, lit->nargs, e)
                                    : nb_matrix_lit(ctx, (size_t)lit->type.rows, (size_t)lit->type.cols, e);
    } else nb_set_error(ctx, "out of memory");
    free(e);
    free(f);
    return r;
}

/* A term printed with a leading minus: −c or −c·x. */
static bool has_negative_coef(const nb_node *t) {
    if (is_scalar_const(t)) return t->a.c.val < 0;
    return t->op == NB_OP_MUL && is_scalar_const(t->args[0]) && t->args[0]->a.c.val < 0;
}

static bool is_relu_of(const nb_node *e, const nb_node *u) {
    return e->op == NB_OP_MAX && ((nb_is_zero(e->args[0]) && e->args[1] == u) || (nb_is_zero(e->args[1]) && e->args[0] == u));
}

/* e with max(0, u) replaced by u, in e itself, its terms, and their factors. */
static nb_node *without_relu(nb_ctx *ctx, nb_node *e, const nb_node *u) {
    if (is_relu_of(e, u)) return (nb_node *)u;
    if (e->op != NB_OP_ADD && e->op != NB_OP_MUL) return e;
    nb_node **parts = malloc(e->nargs * sizeof *parts);
    if (!parts) return e;
    bool changed = false;
    for (size_t i = 0; i < e->nargs; i++) {
        nb_node *a = e->args[i];
        parts[i] = e->op == NB_OP_ADD ? without_relu(ctx, a, u) : is_relu_of(a, u) ? (nb_node *)u : a;
        changed |= parts[i] != a;
    }
    nb_node *r = !changed ? e : e->op == NB_OP_ADD ? nb_add_n(ctx, e->nargs, parts) : nb_mul_n(ctx, e->nargs, parts);
    free(parts);
    return r ? r : e;
}

/* A scalar sum of monomials c·x^a·y^b… in variables and dimensions. */
static bool is_polynomial(const nb_node *sum) {
    if (sum->type.kind != NB_SCALAR) return false;
    for (size_t i = 0; i < sum->nargs; i++) {
        const nb_node *t = sum->args[i];
        size_t nf = t->op == NB_OP_MUL ? t->nargs : 1;
        for (size_t k = 0; k < nf; k++) {
            const nb_node *f = t->op == NB_OP_MUL ? t->args[k] : t;
            if (f->op == NB_OP_POW && is_scalar_const(f->args[1])) f = f->args[0];
            if (f->op != NB_OP_CONST && f->op != NB_OP_VAR && f->op != NB_OP_DIMVAL) return false;
        }
    }
    return true;
}

/* The factor j = (1 + eᵘ)^−k matching factor i = (eᵘ)^k, or −1. */
static int logistic_partner(const factor *f, size_t nf, size_t i) {
    if (f[i].base->op != NB_OP_EXP) return -1;
    for (size_t j = 0; j < nf; j++) {
        const nb_node *d = f[j].base;
        if (d->op != NB_OP_ADD || d->nargs != 2 || !nb_number_is(nb_number_add(f[i].exp, f[j].exp), 0)) continue;
        if ((nb_is_const(d->args[0], 1) && d->args[1] == f[i].base) || (nb_is_const(d->args[1], 1) && d->args[0] == f[i].base))
            return (int)j;
    }
    return -1;
}

/* The element-wise product of args, of broadcast type type (nb_mul_n). */
static nb_node *mul_rewrite(nb_ctx *ctx, size_t n, nb_node *const *args, nb_type type) {
    size_t cap = flattened_size(NB_OP_MUL, n, args);
    factor *f = malloc((cap + 1) * sizeof *f);
    nb_node **out = malloc((cap + 2) * sizeof *out);
    nb_node *result = NULL;
    node_index seen;
    bool indexed = node_index_init(&seen, cap);
    if (!f || !out || !indexed) {
        nb_set_error(ctx, "out of memory");
        goto done;
    }
    nb_number coef = nb_number_int(1);
    bool like_powers = false;
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        bool flat = args[i]->op == NB_OP_MUL && args[i]->nargs <= FLATTEN_LIMIT;
        for (size_t k = 0; k < (flat ? args[i]->nargs : 1u); k++) {
            nb_node *x = flat ? args[i]->args[k] : args[i];
            factor g = {x, nb_number_int(1)};
            if (x->op == NB_OP_CONST) {
                coef = nb_number_mul(coef, node_number(x));
                if (x->type.kind == NB_SCALAR) continue;
                g.base = nb_ones(ctx, x->type);
            } else if (x->op == NB_OP_POW && is_scalar_const(x->args[1])) {
                g = (factor){x->args[0], node_number(x->args[1])};
            }
            size_t j = node_index_get(&seen, g.base, nf);
            if (j < nf) {
                if (!is_ones(g.base)) f[j].exp = nb_number_add(f[j].exp, g.exp), like_powers = true;
            } else f[nf++] = g;
        }
    }
    if (nb_number_is(coef, 0)) {
        result = nb_rule(ctx, "0·x = 0", nb_zero(ctx, type));
        goto done;
    }
    for (size_t i = 0; i < nf; i++) {
        /* eᵘ ⊘ (1 + eᵘ) = σ(u), and to a power k: eᵏᵘ ⊘ (1 + eᵘ)ᵏ = σ(u)ᵏ */
        int j = logistic_partner(f, nf, i);
        if (j < 0) continue;
        size_t no = 0;
        out[no++] = nb_const(ctx, coef, nb_scalar_type());
        for (size_t k = 0; k < nf; k++)
            if (k != i && (int)k != j) out[no++] = make_pow(ctx, f[k].base, f[k].exp);
        out[no++] = nb_pow(ctx, nb_sigmoid(ctx, f[i].base->args[0]), nb_const(ctx, f[i].exp, nb_scalar_type()));
        if (!nb_type_eq(out[no - 1]->type, type)) out[no++] = nb_ones(ctx, type);
        result = nb_rule(ctx, "exp(u) ⊘ (1 + exp(u)) = sigmoid(u)", nb_mul_n(ctx, no, out));
        goto done;
    }
    for (size_t i = 0; i < nf; i++) {
        /* 1[u > 0]·g(max(0, u)) = 1[u > 0]·g(u): where the indicator is 1, max(0, u) = u */
        const nb_node *ind = f[i].base;
        if (ind->op != NB_OP_GT || !nb_is_zero(ind->args[1]) || !nb_number_is(f[i].exp, 1)) continue;
        bool changed = false;
        for (size_t j = 0; j < nf; j++) {
            nb_node *g = without_relu(ctx, f[j].base, ind->args[0]);
            changed |= g != f[j].base;
            f[j].base = g;
        }
        if (!changed) continue;
        size_t no = 0;
        out[no++] = nb_const(ctx, coef, nb_scalar_type());
        for (size_t j = 0; j < nf; j++) out[no++] = make_pow(ctx, f[j].base, f[j].exp);
        result = nb_rule(ctx, "1[u > 0]·g(max(0, u)) = 1[u > 0]·g(u)", nb_mul_n(ctx, no, out));
        goto done;
    }
    if (coef.val < 0) {
        /* −c·(a − b) = c·(b − a): the sign goes into a two-term difference.
         * A canonicalisation, not a display choice: both spellings become one
         * node, so −2·(u − v) + 2·(v − u) collects to 4·(v − u). */
        for (size_t i = 0; i < nf; i++) {
            const nb_node *d = f[i].base;
            bool transposed = d->op == NB_OP_TRANSPOSE; /* −c·(a − b)ᵀ = c·(b − a)ᵀ too */
            if (transposed) d = d->args[0];
            if (d->op != NB_OP_ADD || d->nargs != 2 || !nb_number_is(f[i].exp, 1)) continue;
            if (has_negative_coef(d->args[0]) || !has_negative_coef(d->args[1])) continue;
            nb_node *flipped[2] = {nb_neg(ctx, d->args[1]), nb_neg(ctx, d->args[0])};
            nb_node *difference = nb_add_n(ctx, 2, flipped);
            if (transposed) difference = nb_transpose(ctx, difference);
            size_t no = 0;
            out[no++] = nb_const(ctx, nb_number_neg(coef), nb_scalar_type());
            for (size_t j = 0; j < nf; j++) out[no++] = j == i ? difference : make_pow(ctx, f[j].base, f[j].exp);
            result = nb_rule(ctx, "−c·(a − b) = c·(b − a)", nb_mul_n(ctx, no, out));
            goto done;
        }
    }
    /* Drop x^0, and ones that another factor's shape already implies. */
    bool full = type.kind == NB_SCALAR;
    for (size_t i = 0; i < nf; i++) full |= !is_ones(f[i].base) && nb_type_eq(f[i].base->type, type) && !nb_number_is(f[i].exp, 0);
    size_t m = 0, nscalar = 0;
    int diag = -1, lit = -1, sum = -1;
    for (size_t i = 0; i < nf; i++) {
        if (nb_number_is(f[i].exp, 0) || (full && is_ones(f[i].base))) continue;
        f[m] = f[i];
        if (f[m].base->type.kind == NB_SCALAR) nscalar++;
        if (nb_number_is(f[m].exp, 1)) {
            if (f[m].base->op == NB_OP_DIAG) diag = (int)m;
            if (is_literal(f[m].base)) lit = (int)m;
            if (f[m].base->op == NB_OP_ADD) sum = (int)m;
        }
        m++;
    }
    nf = m;
    qsort(f, nf, sizeof *f, factor_cmp);
    for (size_t i = 0; i < nf; i++) {
        if (f[i].base->op == NB_OP_DIAG && nb_number_is(f[i].exp, 1)) diag = (int)i;
        if (is_literal(f[i].base) && nb_number_is(f[i].exp, 1)) lit = (int)i;
        if (f[i].base->op == NB_OP_ADD && nb_number_is(f[i].exp, 1)) sum = (int)i;
    }
    size_t no = 0;
    if (!nb_number_is(coef, 1)) out[no++] = nb_const(ctx, coef, nb_scalar_type());
    for (size_t i = 0; i < nf; i++) {
        if ((int)i == diag || (int)i == lit) continue;
        out[no++] = make_pow(ctx, f[i].base, f[i].exp);
    }
    if (diag >= 0 && nscalar + 1 == nf) {
        /* s·diag(v) = diag(s·v) */
        out[no++] = f[diag].base->args[0];
        result = nb_rule(ctx, "s·diag(v) = diag(s·v)", nb_diag(ctx, nb_mul_n(ctx, no, out)));
    } else if (lit >= 0 && nscalar + 1 == nf) {
        /* s·[a, b] = [s·a, s·b] */
        result = nb_rule(ctx, "s·[a, b] = [s·a, s·b]", literal_map_scale(ctx, f[lit].base, no, out));
    } else {
        if (diag >= 0) out[no++] = f[diag].base;
        if (lit >= 0) out[no++] = f[lit].base;
        bool shaped = false; /* a broadcast has the type of one of its operands */
        for (size_t i = 0; i < no && !shaped; i++) shaped = nb_type_eq(out[i]->type, type);
        if (no > 0 && !shaped) out[no++] = nb_ones(ctx, type); /* the shaping factor cancelled: x^½ ⊙ x^−½ = 1 */
        if (no == 0) result = nb_const(ctx, coef, type);
        else if (no == 1 && nb_type_eq(out[0]->type, type)) result = out[0];
        else if (no == 2 && nf == 1 && sum >= 0 && !nb_number_is(coef, 1) && is_polynomial(out[1])) {
            /* c·(a + b) = c·a + c·b for polynomials (9(x + x²) = 9x + 9x²); other
             * sums stay whole so shared subexpressions (adjoints) stay shared */
            nb_node *s = out[1];
            nb_node **terms = malloc(s->nargs * sizeof *terms);
            if (terms) {
                for (size_t k = 0; k < s->nargs; k++) terms[k] = nb_scale(ctx, coef, s->args[k]);
                result = nb_rule(ctx, "c·(a + b) = c·a + c·b", nb_add_n(ctx, s->nargs, terms));
                free(terms);
            }
        } else result = make_nary(ctx, NB_OP_MUL, no, out);
    }
    if (like_powers) nb_rule(ctx, "x^a ⊙ x^b = x^(a + b)", result);
done:
    node_index_free(&seen);
    free(f);
    free(out);
    return result;
}

/* ---- POW --------------------------------------------------------------- */
static nb_node *pow_build(nb_ctx *ctx, nb_node *a, nb_node *b) {
    nb_type type;
    if (!broadcast(a->type, b->type, &type)) return shape_error(ctx, ".^", a, b);
    if (!is_scalar_const(b)) {
        nb_node *args[2] = {a, b};
        return nb_make(ctx, NB_OP_POW, type, 2, args, NULL, 0);
    }
    nb_number e = node_number(b);
    if (nb_number_is(e, 0)) return nb_ones(ctx, type);
    if (nb_number_is(e, 1)) return a;
    nb_number folded;
    if (is_scalar_const(a) && nb_number_power(node_number(a), e, &folded))
        return nb_const(ctx, folded, nb_scalar_type());
    bool int_exp = nb_number_is_int(e);
    if (a->op == NB_OP_POW && is_scalar_const(a->args[1]) && int_exp)
        return pow_build(ctx, a->args[0], nb_const(ctx, nb_number_mul(node_number(a->args[1]), e), nb_scalar_type()));
    if (a->op == NB_OP_MUL && int_exp) {
        nb_node **f = malloc(a->nargs * sizeof *f);
        if (!f) return NULL;
        for (size_t i = 0; i < a->nargs; i++) f[i] = pow_build(ctx, a->args[i], b);
        nb_node *r = nb_mul_n(ctx, a->nargs, f);
        free(f);
        return r;
    }
    nb_node *one[1] = {make_pow(ctx, a, e)};
    return nb_mul_n(ctx, 1, one);
}

/* ---- element-wise functions and comparisons ------------------------------ */
static bool fold_unary(nb_op op, nb_number c, nb_number *out) {
    if (!c.exact) return false;
    bool zero = c.num == 0;
    switch (op) {
    case NB_OP_EXP: return zero ? (*out = nb_number_int(1), true) : false;
    case NB_OP_LOG: return nb_number_is(c, 1) ? (*out = nb_number_int(0), true) : false;
    case NB_OP_SIN:
    case NB_OP_TAN:
    case NB_OP_TANH: return zero ? (*out = nb_number_int(0), true) : false;
    case NB_OP_COS: return zero ? (*out = nb_number_int(1), true) : false;
    case NB_OP_SIGMOID: return zero ? (*out = nb_number_rational(1, 2), true) : false;
    case NB_OP_ABS: return *out = c.num < 0 ? nb_number_neg(c) : c, true;
    case NB_OP_SIGN: return *out = nb_number_int((c.num > 0) - (c.num < 0)), true;
    default: return false;
    }
}

static nb_node *unary_rewrite(nb_ctx *ctx, nb_op op, nb_node *a) {
    if (!a) return NULL;
    nb_number folded;
    if (a->op == NB_OP_CONST && fold_unary(op, node_number(a), &folded)) return nb_const(ctx, folded, a->type);
    if (op == NB_OP_SIGN && a->op == NB_OP_SIGN) return a;
    if (op == NB_OP_ABS && a->op == NB_OP_ABS) return a;
    if (op == NB_OP_LOG) {
        nb_node *stable = nb_matfn_log_rewrite(ctx, a);
        if (stable) return stable;
    }
    return nb_make(ctx, op, a->type, 1, &a, NULL, 0);
}

static bool fold_binary(nb_op op, nb_number x, nb_number y, nb_number *out) {
    if (!x.exact || !y.exact) return false;
    double a = x.val, b = y.val;
    switch (op) {
    case NB_OP_MAX: *out = a >= b ? x : y; return true;
    case NB_OP_MIN: *out = a <= b ? x : y; return true;
    case NB_OP_GT: *out = nb_number_int(a > b); return true;
    case NB_OP_GE: *out = nb_number_int(a >= b); return true;
    case NB_OP_LT: *out = nb_number_int(a < b); return true;
    case NB_OP_LE: *out = nb_number_int(a <= b); return true;
    default: return false;
    }
}

static const char *op_symbol(nb_op op) { return nb_ops[op].name; }

static nb_node *binary_rewrite(nb_ctx *ctx, nb_op op, nb_node *a, nb_node *b) {
    if (!a || !b) return NULL;
    if (op == NB_OP_POW) return pow_build(ctx, a, b);
    nb_type type;
    if (!broadcast(a->type, b->type, &type)) return shape_error(ctx, op_symbol(op), a, b);
    nb_number folded;
    if (is_scalar_const(a) && is_scalar_const(b) && fold_binary(op, node_number(a), node_number(b), &folded))
        return nb_const(ctx, folded, type);
    nb_node *args[2] = {a, b};
    return nb_make(ctx, op, type, 2, args, NULL, 0);
}

/* ---- linear algebra -------------------------------------------------------- */
/* Splits a product into its scalar factors and the rest: s·A. */
static void split_scalars(nb_ctx *ctx, nb_node *e, nb_node **scalars, nb_node **rest) {
    *scalars = NULL;
    *rest = e;
    if (e->op != NB_OP_MUL || e->type.kind == NB_SCALAR) return;
    size_t ns = 0, nr = 0;
    for (size_t i = 0; i < e->nargs; i++) *(e->args[i]->type.kind == NB_SCALAR ? &ns : &nr) += 1;
    if (ns == 0 || nr == 0) return;
    nb_node **s = malloc(ns * sizeof *s), **r = malloc(nr * sizeof *r);
    if (s && r) {
        ns = nr = 0;
        for (size_t i = 0; i < e->nargs; i++) {
            if (e->args[i]->type.kind == NB_SCALAR) s[ns++] = e->args[i];
            else r[nr++] = e->args[i];
        }
        *scalars = nb_mul_n(ctx, ns, s);
        *rest = nr == 1 ? r[0] : nb_make(ctx, NB_OP_MUL, e->type, nr, r, NULL, 0);
    }
    free(s);
    free(r);
}

/* A column sum with a matrix product among its terms keeps its transpose
 * outside, (A·x − y)ᵀ, instead of xᵀ·Aᵀ − yᵀ.  This picks the node, not only
 * the text: (x − a)ᵀ and xᵀ − aᵀ typed by a user stay two nodes. */
static bool keeps_transpose_outside(const nb_node *sum) {
    if (sum->type.kind != NB_VECTOR) return false;
    bool variables = true; /* (x − a)ᵀ stays as the Cookbook writes it */
    for (size_t i = 0; i < sum->nargs; i++) {
        const nb_node *t = sum->args[i];
        if (t->op == NB_OP_MUL && t->nargs == 2 && is_scalar_const(t->args[0])) t = t->args[1];
        if (t->op == NB_OP_MATMUL) return true;
        variables &= t->op == NB_OP_VAR && t->type.kind == NB_VECTOR;
    }
    return variables;
}

static nb_node *transpose_uncached(nb_ctx *ctx, nb_node *a) {
    nb_type t = transposed(a->type);
    switch (a->op) {
    case NB_OP_TRANSPOSE: return nb_rule(ctx, "(Aᵀ)ᵀ = A", a->args[0]);
    case NB_OP_DIAG:
    case NB_OP_IDENTITY: return nb_rule(ctx, "diag(v)ᵀ = diag(v)", a);
    case NB_OP_CONST: return nb_rule(ctx, "(c·1)ᵀ = c·1ᵀ", nb_const(ctx, node_number(a), t));
    case NB_OP_MATMUL:
        return nb_rule(ctx, "(A·B)ᵀ = Bᵀ·Aᵀ", nb_matmul(ctx, nb_transpose(ctx, a->args[1]), nb_transpose(ctx, a->args[0])));
    case NB_OP_KRON:
        return nb_rule(ctx, "(A ⊗ B)ᵀ = Aᵀ ⊗ Bᵀ", nb_kron(ctx, nb_transpose(ctx, a->args[0]), nb_transpose(ctx, a->args[1])));
    case NB_OP_COMMUTATION: return nb_rule(ctx, "K(m, n)ᵀ = K(n, m)", nb_commutation_matrix(ctx, a->a.index[1], a->a.index[0]));
    case NB_OP_ADD: { /* (a + b)ᵀ = aᵀ + bᵀ, unless a row broadcasts over a matrix */
        for (size_t i = 0; i < a->nargs; i++)
            if (a->args[i]->type.kind != NB_SCALAR && !nb_type_eq(a->args[i]->type, a->type))
                return nb_make(ctx, NB_OP_TRANSPOSE, t, 1, &a, NULL, 0);
        if (keeps_transpose_outside(a)) return nb_make(ctx, NB_OP_TRANSPOSE, t, 1, &a, NULL, 0);
        nb_node **terms = malloc(a->nargs * sizeof *terms);
        if (!terms) return NULL;
        for (size_t i = 0; i < a->nargs; i++) terms[i] = nb_transpose(ctx, a->args[i]);
        nb_node *r = nb_add_n(ctx, a->nargs, terms);
        free(terms);
        return nb_rule(ctx, "(a + b)ᵀ = aᵀ + bᵀ", r);
    }
    case NB_OP_MATLIT: {
        size_t r = (size_t)a->type.rows, c = (size_t)a->type.cols;
        nb_node **e = malloc(r * c * sizeof *e);
        if (!e) return NULL;
        for (size_t i = 0; i < r; i++)
            for (size_t j = 0; j < c; j++) e[j * r + i] = a->args[i * c + j];
        nb_node *m = nb_matrix_lit(ctx, c, r, e);
        free(e);
        return m;
    }
    default: break;
    }
    if (a->type.kind == NB_SCALAR) return a;
    nb_node *s, *rest;
    split_scalars(ctx, a, &s, &rest);
    if (s) return nb_rule(ctx, "(s·A)ᵀ = s·Aᵀ", nb_mul(ctx, s, nb_transpose(ctx, rest)));
    return nb_make(ctx, NB_OP_TRANSPOSE, t, 1, &a, NULL, 0);
}

/* Rewrites that distribute into operands recurse; past this nesting they stop
 * and build the plain node, so deep chains cannot exhaust the C stack. */
#define REWRITE_DEPTH_LIMIT 96

static nb_node *transpose_rewrite(nb_ctx *ctx, nb_node *a) {
    if (!a) return NULL;
    nb_node *r = nb_memo_get(ctx, NB_MEMO_TRANSPOSE, a, 0, 0);
    if (r) return r;
    if (ctx->rewrite_depth >= REWRITE_DEPTH_LIMIT && a->type.kind != NB_SCALAR && a->op != NB_OP_TRANSPOSE)
        return nb_make(ctx, NB_OP_TRANSPOSE, transposed(a->type), 1, &a, NULL, 0);
    ctx->rewrite_depth++;
    r = transpose_uncached(ctx, a);
    ctx->rewrite_depth--;
    return nb_memo_put(ctx, NB_MEMO_TRANSPOSE, a, 0, 0, r);
}

/* The product's type: a row on the left keeps one row, a column on the
 * right one column; so do a 1-row matrix times a row and a column times a
 * 1-column matrix, so that I·B = B and A·I = A keep B's and A's kinds when
 * the identity is 1×1. */
static nb_type matmul_type(nb_type a, nb_type b) {
    bool one_row = a.kind == NB_ROW || (b.kind == NB_ROW && a.rows == 1);
    bool one_col = b.kind == NB_VECTOR || (a.kind == NB_VECTOR && b.cols == 1);
    if (one_row && one_col) return nb_scalar_type();
    if (one_row) return nb_row_type(b.cols);
    if (one_col) return nb_vector_type(a.rows);
    return nb_matrix_type(a.rows, b.cols);
}

static nb_node *matmul_rewrite(nb_ctx *ctx, nb_node *a, nb_node *b) {
    if (!a || !b) return NULL;
    if (a->type.kind == NB_SCALAR || b->type.kind == NB_SCALAR) return nb_mul(ctx, a, b);
    /* a column times a column is no matrix product, even when the second has
     * one entry (vector(1) is a column, not a 1×1 matrix) */
    if (!dim_eq(a->type.cols, b->type.rows) || (a->type.kind == NB_VECTOR && b->type.kind == NB_VECTOR)) {
        shape_error(ctx, "the matrix product", a, b);
        if (a->type.kind == NB_VECTOR && b->type.kind == NB_VECTOR) {
            size_t len = strlen(ctx->error);
            snprintf(ctx->error + len, sizeof ctx->error - len,
                     "; for the inner product write a'*b or dot(a, b), for the element-wise product a .* b");
        }
        return NULL;
    }
    nb_type t = matmul_type(a->type, b->type);
    if (nb_is_zero(a) || nb_is_zero(b)) return nb_rule(ctx, "0·B = A·0 = 0", nb_zero(ctx, t));
    if (a->op == NB_OP_IDENTITY) return nb_rule(ctx, "I·B = B", b);
    if (b->op == NB_OP_IDENTITY) return nb_rule(ctx, "A·I = A", a);
    if ((b->op == NB_OP_INV && b->args[0] == a) || (a->op == NB_OP_INV && a->args[0] == b))
        return nb_rule(ctx, "A·A⁻¹ = A⁻¹·A = I", nb_identity(ctx, t.rows));
    nb_node *cancelled = nb_matfn_matmul_rewrite(ctx, a, b);
    if (cancelled) return cancelled;
    nb_node *mixed = nb_kron_matmul_rewrite(ctx, a, b);
    if (mixed) return mixed;
    nb_node *sa, *ra, *sb, *rb;
    split_scalars(ctx, a, &sa, &ra);
    split_scalars(ctx, b, &sb, &rb);
    if (sa || sb) {
        nb_node *s = sa && sb ? nb_mul(ctx, sa, sb) : (sa ? sa : sb);
        return nb_rule(ctx, "(s·A)·(t·B) = (s·t)·(A·B)", nb_mul(ctx, s, nb_matmul(ctx, ra, rb)));
    }
    if (a->op == NB_OP_DIAG && b->op == NB_OP_DIAG)
        return nb_rule(ctx, "diag(u)·diag(v) = diag(u ⊙ v)", nb_diag(ctx, nb_mul(ctx, a->args[0], b->args[0])));
    if (a->op == NB_OP_DIAG && b->type.kind == NB_VECTOR) return nb_rule(ctx, "diag(v)·u = v ⊙ u", nb_mul(ctx, a->args[0], b));
    if (a->type.kind == NB_ROW && b->op == NB_OP_DIAG) /* 1ᵀ·diag(v) = vᵀ is the case r = 1ᵀ */
        return nb_rule(ctx, "rᵀ·diag(v) = (r ⊙ v)ᵀ", nb_transpose(ctx, nb_mul(ctx, nb_transpose(ctx, a), b->args[0])));
    /* Re-associate so structure meets structure: (P·r)·diag(v) = P·(r·diag(v)),
     * (P·diag(u))·diag(v) = P·diag(u ⊙ v), and the mirror images. */
    if (b->op == NB_OP_DIAG && a->op == NB_OP_MATMUL && (a->args[1]->type.kind == NB_ROW || a->args[1]->op == NB_OP_DIAG))
        return nb_rule(ctx, "(P·Q)·diag(v) = P·(Q·diag(v))", nb_matmul(ctx, a->args[0], nb_matmul(ctx, a->args[1], b)));
    if (a->op == NB_OP_DIAG && b->op == NB_OP_MATMUL && b->args[0]->op == NB_OP_DIAG)
        return nb_rule(ctx, "diag(u)·(diag(v)·Q) = (diag(u)·diag(v))·Q", nb_matmul(ctx, nb_matmul(ctx, a, b->args[0]), b->args[1]));
    /* a vector or row goes through a diagonal first: no matrix then depends
     * on v, so a Jacobian of the product needs no vec form */
    if (b->type.kind == NB_VECTOR && a->op == NB_OP_MATMUL && a->args[1]->op == NB_OP_DIAG)
        return nb_rule(ctx, "(P·diag(v))·u = P·(v ⊙ u)", nb_matmul(ctx, a->args[0], nb_matmul(ctx, a->args[1], b)));
    if (a->type.kind == NB_ROW && b->op == NB_OP_MATMUL && b->args[0]->op == NB_OP_DIAG)
        return nb_rule(ctx, "rᵀ·(diag(v)·Q) = (rᵀ·diag(v))·Q", nb_matmul(ctx, nb_matmul(ctx, a, b->args[0]), b->args[1]));
    if (a->op == NB_OP_CONST && b->op == NB_OP_CONST) /* (c·1)·(d·1) = c·d·k·1 over the inner size k: 1ᵀ·1 = n */
        return nb_rule(ctx, "1ᵀ·1 = n", nb_mul(ctx, nb_dimval(ctx, a->type.cols),
                                                 nb_const(ctx, nb_number_mul(node_number(a), node_number(b)), t)));
    /* r·(c·1) = c·sum(r)·1ᵀ and (c·1)·u = c·sum(u)·1: every column of a constant sums the same */
    if (a->type.kind == NB_ROW && b->op == NB_OP_CONST)
        return nb_rule(ctx, "r·(c·1) = c·sum(r)·1ᵀ", nb_mul(ctx, nb_scale(ctx, node_number(b), nb_sum(ctx, a)), nb_ones(ctx, t)));
    if (b->type.kind == NB_VECTOR && a->op == NB_OP_CONST)
        return nb_rule(ctx, "(c·1)·u = c·sum(u)·1", nb_mul(ctx, nb_scale(ctx, node_number(a), nb_sum(ctx, b)), nb_ones(ctx, t)));
    /* An outer product meets a row or a column: r·(u·vᵀ) = (r·u)·vᵀ and
     * (u·vᵀ)·w = u·(vᵀ·w), scalars in the middle. */
    if (a->type.kind == NB_ROW && b->op == NB_OP_MATMUL && b->args[0]->type.kind == NB_VECTOR)
        return nb_rule(ctx, "r·(u·vᵀ) = (r·u)·vᵀ", nb_matmul(ctx, nb_matmul(ctx, a, b->args[0]), b->args[1]));
    if (b->type.kind == NB_VECTOR && a->op == NB_OP_MATMUL && a->args[1]->type.kind == NB_ROW)
        return nb_rule(ctx, "(u·vᵀ)·w = u·(vᵀ·w)", nb_matmul(ctx, a->args[0], nb_matmul(ctx, a->args[1], b)));
    if (t.kind == NB_SCALAR && is_ones(a)) return nb_rule(ctx, "1ᵀ·x = sum(x)", nb_sum(ctx, b));
    if (t.kind == NB_SCALAR && is_ones(b)) return nb_rule(ctx, "xᵀ·1 = sum(x)", nb_sum(ctx, a));
    nb_node *args[2] = {a, b};
    return nb_make(ctx, NB_OP_MATMUL, t, 2, args, NULL, 0);
}

static nb_node *sum_rewrite(nb_ctx *ctx, nb_node *a) {
    if (!a) return NULL;
    if (a->type.kind == NB_SCALAR) return a;
    switch (a->op) {
    case NB_OP_CONST:
        return nb_rule(ctx, "sum(c·1) = c·m·n", nb_mul(ctx, nb_const(ctx, node_number(a), nb_scalar_type()),
                                                      nb_mul(ctx, nb_dimval(ctx, a->type.rows), nb_dimval(ctx, a->type.cols))));
    case NB_OP_TRANSPOSE: return nb_rule(ctx, "sum(Aᵀ) = sum(A)", nb_sum(ctx, a->args[0]));
    case NB_OP_DIAG: return nb_rule(ctx, "sum(diag(v)) = sum(v)", nb_sum(ctx, a->args[0]));
    case NB_OP_VEC: return nb_rule(ctx, "sum(vec(A)) = sum(A)", nb_sum(ctx, a->args[0]));
    case NB_OP_IDENTITY: return nb_rule(ctx, "sum(I) = n", nb_dimval(ctx, a->a.dim));
    case NB_OP_VECLIT:
    case NB_OP_MATLIT: return nb_rule(ctx, "sum([a, b]) = a + b", nb_add_n(ctx, a->nargs, a->args));
    default: break;
    }
    nb_node *s, *rest, *stable = nb_matfn_sum_rewrite(ctx, a);
    if (stable) return stable;
    split_scalars(ctx, a, &s, &rest);
    if (s) return nb_rule(ctx, "sum(s·A) = s·sum(A)", nb_mul(ctx, s, nb_sum(ctx, rest)));
    return nb_make(ctx, NB_OP_SUM, nb_scalar_type(), 1, &a, NULL, 0);
}

static nb_node *diag_rewrite(nb_ctx *ctx, nb_node *v) {
    char tv[80];
    if (v->type.kind == NB_ROW) v = nb_transpose(ctx, v);
    if (v->type.kind != NB_VECTOR) {
        nb_set_error(ctx, "diag expects a vector, got %s", nb_type_str(ctx, v->type, tv, sizeof tv));
        return NULL;
    }
    if (v->op == NB_OP_CONST)
        return nb_rule(ctx, "diag(c·1) = c·I", nb_mul(ctx, nb_const(ctx, node_number(v), nb_scalar_type()), nb_identity(ctx, v->type.rows)));
    nb_node *s, *rest;
    split_scalars(ctx, v, &s, &rest);
    if (s && rest->op == NB_OP_CONST) return nb_rule(ctx, "diag(s·1) = s·I", nb_mul(ctx, s, nb_identity(ctx, v->type.rows)));
    return nb_make(ctx, NB_OP_DIAG, nb_matrix_type(v->type.rows, v->type.rows), 1, &v, NULL, 0);
}

/* The factors of a chain of matrix products, left to right (at most max). */
static size_t product_factors(nb_node *a, nb_node **f, size_t max, size_t n) {
    if (a->op != NB_OP_MATMUL) {
        if (n < max) f[n] = a;
        return n + 1;
    }
    return product_factors(a->args[1], f, max, product_factors(a->args[0], f, max, n));
}

/* A product whose chain passes through one column, A·u·vᵀ·B, written as the
 * column (A·u) times the row (vᵀ·B); a constant matrix c·𝟏·𝟏ᵀ counts as
 * one.  False when the chain has no such point. */
static bool rank_one_split(nb_ctx *ctx, nb_node *a, nb_node **u, nb_node **v) {
    nb_node *f[16];
    size_t n = product_factors(a, f, 16, 0);
    if (n > 16) return false;
    for (size_t j = 0; j < n; j++) {
        bool column = f[j]->type.kind == NB_VECTOR && j + 1 < n;
        bool uniform = f[j]->op == NB_OP_CONST && f[j]->type.kind == NB_MATRIX;
        if (!column && !uniform) continue;
        nb_node *left = uniform ? nb_const(ctx, f[j]->a.c, nb_vector_type(f[j]->type.rows)) : f[j];
        nb_node *right = uniform ? nb_ones(ctx, nb_row_type(f[j]->type.cols)) : f[j + 1];
        for (size_t k = j; k-- > 0 && left;) left = nb_matmul(ctx, f[k], left);
        for (size_t k = uniform ? j + 1 : j + 2; k < n && right; k++) right = nb_matmul(ctx, right, f[k]);
        if (!left || !right || left->type.kind != NB_VECTOR || right->type.kind != NB_ROW ||
            !dim_eq(left->type.rows, right->type.cols))
            return false;
        *u = left;
        *v = right;
        return true;
    }
    return false;
}

static nb_node *diagpart_rewrite(nb_ctx *ctx, nb_node *a) {
    char ta[80];
    if (!a) return NULL;
    if (a->type.kind != NB_MATRIX || !dim_eq(a->type.rows, a->type.cols)) {
        nb_set_error(ctx, "the diagonal needs a square matrix, got %s", nb_type_str(ctx, a->type, ta, sizeof ta));
        return NULL;
    }
    if (a->op == NB_OP_DIAG) return nb_rule(ctx, "diagpart(diag(v)) = v", a->args[0]);
    if (a->op == NB_OP_IDENTITY) return nb_rule(ctx, "diagpart(I) = 1", nb_ones(ctx, nb_vector_type(a->type.rows)));
    if (a->op == NB_OP_MATMUL) {
        nb_node *u, *v;
        if (rank_one_split(ctx, a, &u, &v))
            return nb_rule(ctx, "diagpart(u·vᵀ) = u ⊙ v", nb_mul(ctx, u, nb_transpose(ctx, v)));
    }
    nb_node *s, *rest;
    split_scalars(ctx, a, &s, &rest);
    if (s) return nb_rule(ctx, "diagpart(s·A) = s·diagpart(A)", nb_mul(ctx, s, nb_diagpart(ctx, rest)));
    return nb_make(ctx, NB_OP_DIAGPART, nb_vector_type(a->type.rows), 1, &a, NULL, 0);
}

/* ---- literals and indexing ------------------------------------------------ */
static bool all_scalar(nb_ctx *ctx, size_t n, nb_expr *const *e, const char *what) {
    char t[80];
    for (size_t i = 0; i < n; i++) {
        if (!e[i]) return false;
        if (e[i]->type.kind != NB_SCALAR) {
            nb_set_error(ctx, "%s entries must be scalars; entry %zu is %s", what, i + 1, nb_type_str(ctx, e[i]->type, t, sizeof t));
            return false;
        }
    }
    return true;
}

nb_expr *nb_vector_lit(nb_ctx *ctx, size_t n, nb_expr *const *elems) {
    if (!nb_api_array(ctx, __func__, n, elems)) return NULL;
    if (n == 0) {
        nb_set_error(ctx, "empty vector literal");
        return NULL;
    }
    if (!all_scalar(ctx, n, elems, "vector literal")) return NULL;
    return nb_make(ctx, NB_OP_VECLIT, nb_vector_type((nb_dim)n), n, elems, NULL, 0);
}

nb_expr *nb_matrix_lit(nb_ctx *ctx, size_t rows, size_t cols, nb_expr *const *elems) {
    if (!nb_api_array(ctx, __func__, rows <= UINT16_MAX && cols <= UINT16_MAX ? rows * cols : 0, elems)) return NULL;
    if (rows == 0 || cols == 0) {
        nb_set_error(ctx, "empty matrix literal");
        return NULL;
    }
    if (rows > UINT16_MAX || cols > UINT16_MAX || rows * cols > UINT16_MAX) {
        nb_set_error(ctx, "matrix literal too large");
        return NULL;
    }
    if (!all_scalar(ctx, rows * cols, elems, "matrix literal")) return NULL;
    return nb_make(ctx, NB_OP_MATLIT, nb_matrix_type((nb_dim)rows, (nb_dim)cols), rows * cols, elems, NULL, 0);
}

static nb_node *column_uncached(nb_ctx *ctx, nb_node *a, int64_t k) {
    bool one_row = a->type.kind == NB_ROW || a->type.kind == NB_SCALAR;
    if (a->type.kind == NB_VECTOR || a->type.kind == NB_SCALAR) return a;
    nb_type t = one_row ? nb_scalar_type() : nb_vector_type(a->type.rows);
    if (a->op == NB_OP_CONST) return nb_const(ctx, node_number(a), t);
    if (one_row) return nb_entry(ctx, a, 0, k);
    if (a->op == NB_OP_IDENTITY && a->a.dim > 0) {
        nb_node **e = malloc((size_t)a->a.dim * sizeof *e);
        if (!e) return NULL;
        for (int64_t i = 0; i < a->a.dim; i++) e[i] = num(ctx, i == k);
        nb_node *r = nb_vector_lit(ctx, (size_t)a->a.dim, e);
        free(e);
        return r;
    }
    if (a->op == NB_OP_MATLIT) {
        size_t r = (size_t)a->type.rows, c = (size_t)a->type.cols;
        nb_node **e = malloc(r * sizeof *e);
        if (!e) return NULL;
        for (size_t i = 0; i < r; i++) e[i] = a->args[i * c + (size_t)k];
        nb_node *v = nb_vector_lit(ctx, r, e);
        free(e);
        return v;
    }
    if (a->op == NB_OP_MATMUL) return nb_matmul(ctx, a->args[0], nb_column(ctx, a->args[1], k));
    if (a->op == NB_OP_DIAG) {
        nb_node *s[2] = {nb_column(ctx, nb_identity(ctx, a->type.rows), k), a->args[0]};
        if (a->type.rows > 0) return nb_mul_n(ctx, 2, s);
    }
    if (a->op == NB_OP_ADD || a->op == NB_OP_MUL) {
        nb_node **e = malloc(a->nargs * sizeof *e);
        if (!e) return NULL;
        for (size_t i = 0; i < a->nargs; i++) e[i] = nb_column(ctx, a->args[i], k);
        nb_node *r = a->op == NB_OP_ADD ? nb_add_n(ctx, a->nargs, e) : nb_mul_n(ctx, a->nargs, e);
        free(e);
        return r;
    }
    int64_t attr[2] = {k, 0};
    return nb_make(ctx, NB_OP_COLUMN, t, 1, &a, attr, sizeof attr);
}

/* Column k of a (0-based); for a single-row a, its k-th entry. */
static nb_node *column_rewrite(nb_ctx *ctx, nb_node *a, int64_t k) {
    if (!a) return NULL;
    nb_node *r = nb_memo_get(ctx, NB_MEMO_COLUMN, a, k, 0);
    if (r) return r;
    if (ctx->rewrite_depth >= REWRITE_DEPTH_LIMIT && (a->op == NB_OP_ADD || a->op == NB_OP_MUL || a->op == NB_OP_MATMUL)) {
        int64_t attr[2] = {k, 0};
        bool one_row = a->type.kind == NB_ROW;
        return nb_make(ctx, NB_OP_COLUMN, one_row ? nb_scalar_type() : nb_vector_type(a->type.rows), 1, &a, attr, sizeof attr);
    }
    ctx->rewrite_depth++;
    r = column_uncached(ctx, a, k);
    ctx->rewrite_depth--;
    return nb_memo_put(ctx, NB_MEMO_COLUMN, a, k, 0, r);
}

static nb_node *entry_uncached(nb_ctx *ctx, nb_node *a, int64_t i, int64_t j) {
    switch (a->op) {
    case NB_OP_CONST: return nb_const(ctx, node_number(a), nb_scalar_type());
    case NB_OP_IDENTITY: return num(ctx, i == j);
    case NB_OP_VECLIT: return a->args[i];
    case NB_OP_MATLIT: return a->args[i * (int64_t)a->type.cols + j];
    case NB_OP_TRANSPOSE: return nb_entry(ctx, a->args[0], j, i);
    case NB_OP_DIAG: return i == j ? nb_entry(ctx, a->args[0], i, 0) : num(ctx, 0);
    case NB_OP_ADD:
    case NB_OP_MUL: {
        nb_node **e = malloc(a->nargs * sizeof *e);
        if (!e) return NULL;
        for (size_t k = 0; k < a->nargs; k++) {
            nb_type t = a->args[k]->type;
            e[k] = t.kind == NB_SCALAR ? a->args[k] : nb_entry(ctx, a->args[k], t.rows == 1 ? 0 : i, t.cols == 1 ? 0 : j);
        }
        nb_node *r = a->op == NB_OP_ADD ? nb_add_n(ctx, a->nargs, e) : nb_mul_n(ctx, a->nargs, e);
        free(e);
        return r;
    }
    default: break;
    }
    if (a->type.kind == NB_SCALAR) return a;
    int64_t attr[2] = {i, j};
    return nb_make(ctx, NB_OP_ENTRY, nb_scalar_type(), 1, &a, attr, sizeof attr);
}

static nb_node *entry_rewrite(nb_ctx *ctx, nb_node *a, int64_t i, int64_t j) {
    if (!a) return NULL;
    nb_node *r = nb_memo_get(ctx, NB_MEMO_ENTRY, a, i, j);
    if (r) return r;
    if (ctx->rewrite_depth >= REWRITE_DEPTH_LIMIT && (a->op == NB_OP_ADD || a->op == NB_OP_MUL || a->op == NB_OP_TRANSPOSE)) {
        int64_t attr[2] = {i, j};
        return nb_make(ctx, NB_OP_ENTRY, nb_scalar_type(), 1, &a, attr, sizeof attr);
    }
    ctx->rewrite_depth++;
    r = entry_uncached(ctx, a, i, j);
    ctx->rewrite_depth--;
    return nb_memo_put(ctx, NB_MEMO_ENTRY, a, i, j, r);
}

/* ---- the type invariant ------------------------------------------------------
 * Every constructor is a rewrite of the node its operator and operands denote,
 * and must return a node of exactly that node's type.  This is the one place
 * that checks it: a violation is an error (never a silently reshaped result),
 * and an abort in the sanitizer build, which the property test runs under. */
static nb_node *keep_type(nb_ctx *ctx, const char *what, nb_type want, nb_node *r) {
    if (!r || nb_type_eq(r->type, want)) return r;
    char tw[80], tr[80], d[160];
    nb_set_error(ctx, "internal error: rewriting %s gave %s of type %s where %s was expected", what,
                 nb_describe(ctx, r, d, sizeof d), nb_type_str(ctx, r->type, tr, sizeof tr),
                 nb_type_str(ctx, want, tw, sizeof tw));
#ifdef NB_ASSERT_TYPES
    fprintf(stderr, "nabla: %s\n", ctx->error);
    abort();
#endif
    return NULL;
}

static bool all_present(size_t n, nb_node *const *args) {
    for (size_t i = 0; i < n; i++)
        if (!args[i]) return false;
    return true;
}

/* In raw mode (ctx->raw, see nb_derivative_raw) a constructor only checks
 * types and hash-conses: the node is exactly the operator on its operands,
 * and nb_simplify later rebuilds it through the rewrites below. */
static nb_node *raw_node(nb_ctx *ctx, nb_op op, nb_type t, size_t n, nb_node *const *args) {
    if (n == 1 && (op == NB_OP_ADD || op == NB_OP_MUL)) return args[0];
    if (op == NB_OP_ADD || op == NB_OP_MUL) return make_nary(ctx, op, n, args);
    return nb_make(ctx, op, t, n, args, NULL, 0);
}

nb_node *nb_add_n(nb_ctx *ctx, size_t n, nb_node *const *args) {
    nb_type t;
    if (!all_present(n, args) || !broadcast_all(ctx, "+", n, args, &t)) return NULL;
    if (ctx->raw) return n ? raw_node(ctx, NB_OP_ADD, t, n, args) : nb_zero(ctx, t);
    return keep_type(ctx, "a sum", t, add_rewrite(ctx, n, args, t));
}

nb_node *nb_mul_n(nb_ctx *ctx, size_t n, nb_node *const *args) {
    nb_type t;
    if (!all_present(n, args) || !broadcast_all(ctx, "⊙", n, args, &t)) return NULL;
    if (ctx->raw) return n ? raw_node(ctx, NB_OP_MUL, t, n, args) : nb_ones(ctx, t);
    return keep_type(ctx, "a product", t, mul_rewrite(ctx, n, args, t));
}

nb_node *nb_unary(nb_ctx *ctx, nb_op op, nb_node *a) {
    if (!ctx || !a) return NULL;
    if (ctx->raw) return raw_node(ctx, op, a->type, 1, &a);
    return keep_type(ctx, nb_ops[op].name, a->type, unary_rewrite(ctx, op, a));
}

nb_node *nb_binary(nb_ctx *ctx, nb_op op, nb_node *a, nb_node *b) {
    nb_type t;
    if (!ctx || !a || !b) return NULL;
    if (!broadcast(a->type, b->type, &t)) return shape_error(ctx, nb_ops[op].name, a, b);
    nb_node *args[2] = {a, b};
    if (ctx->raw) return raw_node(ctx, op, t, 2, args);
    return keep_type(ctx, nb_ops[op].name, t, binary_rewrite(ctx, op, a, b));
}

nb_expr *nb_transpose(nb_ctx *ctx, nb_expr *a) {
    if (!NB_API_OK(ctx, a)) return NULL;
    if (ctx->raw) return a->type.kind == NB_SCALAR ? a : raw_node(ctx, NB_OP_TRANSPOSE, transposed(a->type), 1, &a);
    return keep_type(ctx, "a transpose", transposed(a->type), transpose_rewrite(ctx, a));
}

nb_expr *nb_matmul(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    bool scalar = a->type.kind == NB_SCALAR || b->type.kind == NB_SCALAR;
    if (scalar) return nb_mul(ctx, a, b);
    nb_type t = matmul_type(a->type, b->type);
    nb_node *args[2] = {a, b};
    if (ctx->raw && dim_eq(a->type.cols, b->type.rows) && !(a->type.kind == NB_VECTOR && b->type.kind == NB_VECTOR))
        return raw_node(ctx, NB_OP_MATMUL, t, 2, args);
    return keep_type(ctx, "a matrix product", t, matmul_rewrite(ctx, a, b));
}

nb_expr *nb_sum(nb_ctx *ctx, nb_expr *a) {
    if (!NB_API_OK(ctx, a)) return NULL;
    if (ctx->raw) return a->type.kind == NB_SCALAR ? a : raw_node(ctx, NB_OP_SUM, nb_scalar_type(), 1, &a);
    return keep_type(ctx, "a sum of entries", nb_scalar_type(), sum_rewrite(ctx, a));
}

nb_expr *nb_diag(nb_ctx *ctx, nb_expr *v) {
    if (!NB_API_OK(ctx, v)) return NULL;
    if (ctx->raw && v->type.kind == NB_ROW) v = nb_transpose(ctx, v);
    if (v && ctx->raw && v->type.kind == NB_VECTOR)
        return raw_node(ctx, NB_OP_DIAG, nb_matrix_type(v->type.rows, v->type.rows), 1, &v);
    nb_node *r = v ? diag_rewrite(ctx, v) : NULL;
    nb_dim n = r ? nb_type_length(v->type) : 0;
    return keep_type(ctx, "diag", nb_matrix_type(n, n), r);
}

nb_node *nb_diagpart(nb_ctx *ctx, nb_node *a) {
    if (!NB_API_OK(ctx, a)) return NULL;
    if (ctx->raw && a->type.kind == NB_MATRIX && dim_eq(a->type.rows, a->type.cols))
        return raw_node(ctx, NB_OP_DIAGPART, nb_vector_type(a->type.rows), 1, &a);
    nb_node *r = a ? diagpart_rewrite(ctx, a) : NULL;
    return r ? keep_type(ctx, "diagpart", nb_vector_type(a->type.rows), r) : NULL;
}

nb_node *nb_column(nb_ctx *ctx, nb_node *a, int64_t k) {
    if (!a) return NULL;
    if (ctx->raw && a->type.kind == NB_MATRIX) {
        int64_t attr[2] = {k, 0};
        return nb_make(ctx, NB_OP_COLUMN, nb_vector_type(a->type.rows), 1, &a, attr, sizeof attr);
    }
    if (ctx->raw && a->type.kind == NB_ROW) return nb_entry(ctx, a, 0, k);
    if (ctx->raw) return a;
    nb_type t = a->type.kind == NB_MATRIX ? nb_vector_type(a->type.rows) : a->type.kind == NB_ROW ? nb_scalar_type() : a->type;
    return keep_type(ctx, "a column", t, column_rewrite(ctx, a, k));
}

nb_node *nb_entry(nb_ctx *ctx, nb_node *a, int64_t i, int64_t j) {
    if (!a) return NULL;
    if (ctx->raw) {
        int64_t attr[2] = {i, j};
        return a->type.kind == NB_SCALAR ? a : nb_make(ctx, NB_OP_ENTRY, nb_scalar_type(), 1, &a, attr, sizeof attr);
    }
    return keep_type(ctx, "an entry", nb_scalar_type(), entry_rewrite(ctx, a, i, j));
}

/* ---- neural-network operators ---------------------------------------------- */
static bool need_matrix(nb_ctx *ctx, const char *what, nb_node *z) {
    char t[80];
    if (z->type.kind == NB_MATRIX) return true;
    nb_set_error(ctx, "%s expects a matrix (one sample per row), got %s", what, nb_type_str(ctx, z->type, t, sizeof t));
    return false;
}

/* Row-wise over a matrix of samples; a vector is one sample (VSOFTMAX). */
nb_expr *nb_softmax(nb_ctx *ctx, nb_expr *z) {
    if (!NB_API_OK(ctx, z)) return NULL;
    if (z->type.kind == NB_VECTOR) return nb_make(ctx, NB_OP_VSOFTMAX, z->type, 1, &z, NULL, 0);
    if (!need_matrix(ctx, "softmax", z)) return NULL;
    return nb_make(ctx, NB_OP_SOFTMAX, z->type, 1, &z, NULL, 0);
}

/* Of a vector: z − logsumexp(z), the same numbers, stable and compiled. */
nb_expr *nb_logsoftmax(nb_ctx *ctx, nb_expr *z) {
    if (!NB_API_OK(ctx, z)) return NULL;
    if (z->type.kind == NB_VECTOR) return nb_sub(ctx, z, nb_logsumexp(ctx, z));
    if (!need_matrix(ctx, "logsoftmax", z)) return NULL;
    return nb_make(ctx, NB_OP_LOGSOFTMAX, z->type, 1, &z, NULL, 0);
}

nb_expr *nb_softmax_xent(nb_ctx *ctx, nb_expr *z, nb_expr *y) {
    if (!NB_API_OK(ctx, z, y)) return NULL;
    if (!need_matrix(ctx, "softmax_xent", z)) return NULL;
    if (!nb_type_eq(z->type, y->type)) return shape_error(ctx, "softmax_xent(Z, Y)", z, y);
    nb_node *args[2] = {z, y};
    return nb_make(ctx, NB_OP_SOFTMAX_XENT, nb_scalar_type(), 2, args, NULL, 0);
}

/* ---- public builders --------------------------------------------------------- */
nb_expr *nb_add(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    nb_node *t[2] = {a, b};
    return nb_add_n(ctx, 2, t);
}
nb_expr *nb_neg(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_scale(ctx, nb_number_int(-1), a) : NULL; }
nb_expr *nb_sub(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    nb_type t;
    if (!broadcast(a->type, b->type, &t)) return shape_error(ctx, "-", a, b);
    return nb_add(ctx, a, nb_neg(ctx, b));
}
nb_expr *nb_mul(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    nb_node *f[2] = {a, b};
    return nb_mul_n(ctx, 2, f);
}
nb_expr *nb_div(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    nb_type t;
    if (!broadcast(a->type, b->type, &t)) return shape_error(ctx, "⊘", a, b);
    return nb_mul(ctx, a, nb_pow(ctx, b, num(ctx, -1)));
}
nb_expr *nb_pow(nb_ctx *ctx, nb_expr *a, nb_expr *b) { return NB_API_OK(ctx, a, b) ? nb_binary(ctx, NB_OP_POW, a, b) : NULL; }
nb_expr *nb_exp(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_EXP, a) : NULL; }
nb_expr *nb_log(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_LOG, a) : NULL; }
nb_expr *nb_sin(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_SIN, a) : NULL; }
nb_expr *nb_cos(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_COS, a) : NULL; }
nb_expr *nb_tan(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_TAN, a) : NULL; }
nb_expr *nb_tanh(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_TANH, a) : NULL; }
nb_expr *nb_abs(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_ABS, a) : NULL; }
nb_expr *nb_sigmoid(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_SIGMOID, a) : NULL; }
nb_expr *nb_softplus(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_SOFTPLUS, a) : NULL; }
nb_expr *nb_logsigmoid(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_LOGSIGMOID, a) : NULL; }
nb_expr *nb_sqrt(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_pow(ctx, a, nb_rational(ctx, 1, 2)) : NULL; }
nb_expr *nb_relu(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_max(ctx, num(ctx, 0), a) : NULL; }
nb_expr *nb_max(nb_ctx *ctx, nb_expr *a, nb_expr *b) { return NB_API_OK(ctx, a, b) ? nb_binary(ctx, NB_OP_MAX, a, b) : NULL; }
nb_expr *nb_min(nb_ctx *ctx, nb_expr *a, nb_expr *b) { return NB_API_OK(ctx, a, b) ? nb_binary(ctx, NB_OP_MIN, a, b) : NULL; }

nb_expr *nb_compare(nb_ctx *ctx, const char *op, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    static const struct {
        const char *s;
        nb_op op;
    } ops[] = {{">", NB_OP_GT}, {">=", NB_OP_GE}, {"<", NB_OP_LT}, {"<=", NB_OP_LE}};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (op && strcmp(op, ops[i].s) == 0) return nb_binary(ctx, ops[i].op, a, b);
    nb_set_error(ctx, "unknown comparison '%s'", op ? op : "(null)");
    return NULL;
}

static nb_node *entry_count(nb_ctx *ctx, nb_node *a) {
    return nb_mul(ctx, nb_dimval(ctx, a->type.rows), nb_dimval(ctx, a->type.cols));
}

nb_expr *nb_mean(nb_ctx *ctx, nb_expr *a) {
    if (!NB_API_OK(ctx, a)) return NULL;
    return nb_div(ctx, nb_sum(ctx, a), entry_count(ctx, a));
}

nb_expr *nb_dot(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    if (!NB_API_OK(ctx, a, b)) return NULL;
    char ta[80], tb[80];
    if (!a || !b) return NULL;
    if (a->type.kind != NB_VECTOR || b->type.kind != NB_VECTOR) {
        nb_set_error(ctx, "dot expects two vectors, got %s and %s", nb_type_str(ctx, a->type, ta, sizeof ta),
                     nb_type_str(ctx, b->type, tb, sizeof tb));
        return NULL;
    }
    return nb_matmul(ctx, nb_transpose(ctx, a), b);
}


nb_expr *nb_sign(nb_ctx *ctx, nb_expr *a) { return NB_API_OK(ctx, a) ? nb_unary(ctx, NB_OP_SIGN, a) : NULL; }

nb_node *nb_rebuild(nb_ctx *ctx, const nb_node *y, nb_node *const *args) {
    if (!all_present(y->nargs, args)) return NULL;
    switch (nb_ops[y->op].cls) {
    case NB_CLASS_LEAF: return (nb_node *)y;
    case NB_CLASS_EW_UNARY: return nb_unary(ctx, (nb_op)y->op, args[0]);
    case NB_CLASS_EW_BINARY: return nb_binary(ctx, (nb_op)y->op, args[0], args[1]);
    default: break;
    }
    switch ((nb_op)y->op) {
    case NB_OP_ADD: return nb_add_n(ctx, y->nargs, args);
    case NB_OP_MUL: return nb_mul_n(ctx, y->nargs, args);
    case NB_OP_MATMUL: return nb_matmul(ctx, args[0], args[1]);
    case NB_OP_TRANSPOSE: return nb_transpose(ctx, args[0]);
    case NB_OP_SUM: return nb_sum(ctx, args[0]);
    case NB_OP_DIAG: return nb_diag(ctx, args[0]);
    case NB_OP_DIAGPART: return nb_diagpart(ctx, args[0]);
    case NB_OP_VECLIT: return nb_vector_lit(ctx, y->nargs, args);
    case NB_OP_MATLIT: return nb_matrix_lit(ctx, (size_t)y->type.rows, (size_t)y->type.cols, args);
    case NB_OP_COLUMN: return nb_column(ctx, args[0], y->a.index[0]);
    case NB_OP_ENTRY: return nb_entry(ctx, args[0], y->a.index[0], y->a.index[1]);
    case NB_OP_SOFTMAX:
    case NB_OP_VSOFTMAX: return nb_softmax(ctx, args[0]);
    case NB_OP_LOGSOFTMAX: return nb_logsoftmax(ctx, args[0]);
    case NB_OP_SOFTMAX_XENT: return nb_softmax_xent(ctx, args[0], args[1]);
    case NB_OP_KRON: return nb_kron(ctx, args[0], args[1]);
    case NB_OP_VEC: return nb_vec(ctx, args[0]);
    case NB_OP_TRACE: return nb_trace(ctx, args[0]);
    case NB_OP_DET: return nb_det(ctx, args[0]);
    case NB_OP_LOGDET: return nb_logdet(ctx, args[0]);
    case NB_OP_INV: return nb_inv(ctx, args[0]);
    case NB_OP_SOLVE: return nb_solve(ctx, args[0], args[1]);
    case NB_OP_NORM1: return nb_norm1(ctx, args[0]);
    case NB_OP_NORM2: return nb_norm2(ctx, args[0]);
    case NB_OP_LOGSUMEXP: return nb_logsumexp(ctx, args[0]);
    case NB_OP_BCE: return nb_bce(ctx, args[0], args[1]);
    default: break;
    }
    nb_set_error(ctx, "internal error: no constructor for %s", nb_ops[y->op].name);
    return NULL;
}

/* =====================================================================
 * Derivative rules.  G is ∂f/∂y in numerator layout: rows index f's
 * entries (m of them; m = 1 gives a scalar or a row), columns index y's
 * entries; for a matrix y (scalar f only) G has y's shape.
 * ===================================================================== */

/* Element-wise partials ∂y/∂argᵢ (scalar when uniform). */
static nb_node *partial_add(nb_ctx *ctx, nb_node *y, int i) {
    (void)y, (void)i;
    return num(ctx, 1);
}

static nb_node *partial_mul(nb_ctx *ctx, nb_node *y, int i) {
    nb_node **others = malloc(y->nargs * sizeof *others);
    if (!others) return NULL;
    size_t n = 0;
    for (int k = 0; k < y->nargs; k++)
        if (k != i) others[n++] = y->args[k];
    nb_node *p = nb_mul_n(ctx, n, others);
    free(others);
    return p;
}

static nb_node *partial_pow(nb_ctx *ctx, nb_node *y, int i) {
    nb_node *a = y->args[0], *b = y->args[1];
    if (i == 0) return nb_mul(ctx, b, nb_pow(ctx, a, nb_sub(ctx, b, num(ctx, 1)))); /* b·a^(b−1) */
    return nb_mul(ctx, nb_log(ctx, a), y);                                            /* log(a)·a^b */
}

/* ---- element-wise functions ----------------------------------------------
 * Each one together: its partial ∂y/∂x, its scalar value (the reference
 * kernel eval_unary / eval_binary applies it entry by entry; the choices live
 * in scalar.h, shared with the compiled kernels), and its registration RULES_id
 * (partial, VJP, tangent, kernel, scalar).  nb_unary / nb_binary construct them. */

/* exp: ∂eˣ/∂x = eˣ, the node itself */
static nb_node *partial_exp(nb_ctx *ctx, nb_node *y, int i) {
    (void)ctx, (void)i;
    return y;
}
static double apply_exp(double x) { return exp(x); }
#define RULES_EXP partial_exp, NULL, NULL, eval_unary, apply_exp, NULL

/* log: ∂ log x = x⁻¹ (positive arguments: NB_F_POSITIVE_ARG) */
static nb_node *partial_log(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_pow(ctx, y->args[0], num(ctx, -1));
}
static double apply_log(double x) { return log(x); }
#define RULES_LOG partial_log, NULL, NULL, eval_unary, apply_log, NULL

/* sin: ∂ sin x = cos x */
static nb_node *partial_sin(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_cos(ctx, y->args[0]);
}
static double apply_sin(double x) { return sin(x); }
#define RULES_SIN partial_sin, NULL, NULL, eval_unary, apply_sin, NULL

/* cos: ∂ cos x = −sin x */
static nb_node *partial_cos(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_neg(ctx, nb_sin(ctx, y->args[0]));
}
static double apply_cos(double x) { return cos(x); }
#define RULES_COS partial_cos, NULL, NULL, eval_unary, apply_cos, NULL

/* tan: ∂ tan x = 1 + tan² x */
static nb_node *partial_tan(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_add(ctx, num(ctx, 1), nb_pow(ctx, y, num(ctx, 2)));
}
static double apply_tan(double x) { return tan(x); }
#define RULES_TAN partial_tan, NULL, NULL, eval_unary, apply_tan, NULL

/* tanh: ∂ tanh x = 1 − tanh² x */
static nb_node *partial_tanh(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_sub(ctx, num(ctx, 1), nb_pow(ctx, y, num(ctx, 2)));
}
static double apply_tanh(double x) { return tanh(x); }
#define RULES_TANH partial_tanh, NULL, NULL, eval_unary, apply_tanh, NULL

/* sigmoid: ∂σ = σ(1 − σ) */
static nb_node *partial_sigmoid(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_mul(ctx, y, nb_sub(ctx, num(ctx, 1), y));
}
#define RULES_SIGMOID partial_sigmoid, NULL, NULL, eval_unary, sc_sigmoid, NULL

/* abs: ∂|x| = sign x (0 at the kink) */
/* softplus′ = σ, logsigmoid′ = σ(−x) = 1 − σ(x) */
static nb_node *partial_softplus(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_sigmoid(ctx, y->args[0]);
}
#define RULES_SOFTPLUS partial_softplus, NULL, NULL, eval_unary, sc_softplus, NULL

static nb_node *partial_logsigmoid(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_sigmoid(ctx, nb_neg(ctx, y->args[0]));
}
#define RULES_LOGSIGMOID partial_logsigmoid, NULL, NULL, eval_unary, sc_logsigmoid, NULL

static nb_node *partial_abs(nb_ctx *ctx, nb_node *y, int i) {
    (void)i;
    return nb_unary(ctx, NB_OP_SIGN, y->args[0]);
}
static double apply_abs(double x) { return fabs(x); }
#define RULES_ABS partial_abs, NULL, NULL, eval_unary, apply_abs, NULL

/* sign and the indicators: piecewise constant, derivative 0 (taken 0 at the jump) */
static nb_node *partial_zero(nb_ctx *ctx, nb_node *y, int i) {
    (void)y, (void)i;
    return num(ctx, 0);
}
#define RULES_SIGN partial_zero, NULL, NULL, eval_unary, sc_sign, NULL

/* max(a, b): 1[a > b] and 1[b > a]; at a tie (the kink) the derivative is 0. */
static nb_node *partial_max(nb_ctx *ctx, nb_node *y, int i) {
    return nb_binary(ctx, NB_OP_GT, y->args[i], y->args[1 - i]);
}
#define RULES_MAX partial_max, NULL, NULL, eval_binary, NULL, sc_max

static nb_node *partial_min(nb_ctx *ctx, nb_node *y, int i) {
    return nb_binary(ctx, NB_OP_LT, y->args[i], y->args[1 - i]);
}
#define RULES_MIN partial_min, NULL, NULL, eval_binary, NULL, sc_min

static double apply_gt(double u, double v) { return u > v; }
static double apply_ge(double u, double v) { return u >= v; }
static double apply_lt(double u, double v) { return u < v; }
static double apply_le(double u, double v) { return u <= v; }
#define RULES_GT partial_zero, NULL, NULL, eval_binary, NULL, apply_gt
#define RULES_GE partial_zero, NULL, NULL, eval_binary, NULL, apply_ge
#define RULES_LT partial_zero, NULL, NULL, eval_binary, NULL, apply_lt
#define RULES_LE partial_zero, NULL, NULL, eval_binary, NULL, apply_le

static nb_node *ones_row(nb_ctx *ctx, nb_dim n) { return nb_ones(ctx, nb_row_type(n)); }
static nb_node *ones_col(nb_ctx *ctx, nb_dim n) { return nb_ones(ctx, nb_vector_type(n)); }

/* y = A·B.  Vector-shaped operands take G·(∂y/∂operand); matrix operands
 * (scalar f only) take the gradient-shaped Gᵀ-products. */
static int vjp_matmul(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    nb_node *A = y->args[0], *B = y->args[1];
    if (want[0]) {
        switch (y->type.kind) {
        case NB_VECTOR: out[0] = nb_matmul(ctx, nb_transpose(ctx, G), nb_transpose(ctx, B)); break; /* M·b */
        case NB_MATRIX:
            out[0] = nb_matmul(ctx, G, nb_transpose(ctx, B));
            if (A->type.kind == NB_VECTOR) out[0] = nb_transpose(ctx, out[0]); /* a column's entries form a row */
            break;
        default: out[0] = nb_matmul(ctx, G, nb_transpose(ctx, B)); break; /* r·M, r·c */
        }
        if (!out[0]) return -1;
    }
    if (want[1]) {
        out[1] = y->type.kind == NB_VECTOR || y->type.kind == NB_SCALAR ? nb_matmul(ctx, G, A) /* G·A */
                                                                       : nb_matmul(ctx, nb_transpose(ctx, A), G);
        if (!out[1]) return -1;
    }
    return 0;
}

static int vjp_transpose(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = y->args[0]->type.kind == NB_MATRIX ? nb_transpose(ctx, G) : G;
    return out[0] ? 0 : -1;
}

static int vjp_sum(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    nb_node *x = y->args[0];
    if (x->type.kind == NB_MATRIX) out[0] = nb_mul(ctx, G, nb_ones(ctx, x->type));
    else out[0] = nb_matmul(ctx, G, ones_row(ctx, nb_type_length(x->type))); /* G·1ᵀ */
    return out[0] ? 0 : -1;
}

static int vjp_diag(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)y, (void)want;
    out[0] = nb_transpose(ctx, nb_diagpart(ctx, G));
    return out[0] ? 0 : -1;
}

static int vjp_diagpart(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)y, (void)want;
    out[0] = nb_diag(ctx, G);
    return out[0] ? 0 : -1;
}

/* Entry k of [a₁, …] (or of [[…]] row-major) receives entry k of G. */
static int vjp_literal(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    int64_t cols = y->type.cols;
    for (size_t k = 0; k < y->nargs; k++) {
        if (!want[k]) continue;
        out[k] = y->op == NB_OP_VECLIT ? nb_column(ctx, G, (int64_t)k) : nb_entry(ctx, G, (int64_t)k / cols, (int64_t)k % cols);
        if (!out[k]) return -1;
    }
    return 0;
}

/* eₖᵀ: a row of n zeros with 1 at k (n must be a number). */
static nb_node *unit_row(nb_ctx *ctx, nb_dim n, int64_t k) {
    if (n <= 0 || n > UINT16_MAX) {
        nb_set_error(ctx, "indexing into an array of symbolic size cannot be differentiated");
        return NULL;
    }
    nb_node **e = malloc((size_t)n * sizeof *e);
    if (!e) return NULL;
    for (int64_t i = 0; i < n; i++) e[i] = num(ctx, i == k);
    nb_node *r = nb_transpose(ctx, nb_vector_lit(ctx, (size_t)n, e));
    free(e);
    return r;
}

/* y = A[i, j]: G·eᵢᵀ for a vector A (eⱼᵀ for a row); G·Eᵢⱼ for a matrix A. */
static int vjp_entry(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    nb_node *A = y->args[0];
    int64_t i = y->a.index[0], j = y->a.index[1];
    if (A->type.kind == NB_VECTOR) out[0] = nb_matmul(ctx, G, unit_row(ctx, A->type.rows, i));
    else if (A->type.kind == NB_ROW) out[0] = nb_matmul(ctx, G, unit_row(ctx, A->type.cols, j));
    else {
        nb_node *col = nb_transpose(ctx, unit_row(ctx, A->type.rows, i));
        out[0] = nb_mul(ctx, G, nb_matmul(ctx, col, unit_row(ctx, A->type.cols, j)));
    }
    return out[0] ? 0 : -1;
}

/* y = A[:, k]: the adjoint lands in column k; a row A gives its k-th entry. */
static int vjp_column(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    nb_node *A = y->args[0];
    nb_node *ek = unit_row(ctx, A->type.cols, y->a.index[0]);
    out[0] = A->type.kind == NB_ROW ? nb_matmul(ctx, G, ek) : nb_matmul(ctx, nb_transpose(ctx, G), ek);
    return out[0] ? 0 : -1;
}

/* Row sums broadcast back over the columns: (M·1)·1ᵀ. */
static nb_node *rowsum_spread(nb_ctx *ctx, nb_node *M) {
    return nb_matmul(ctx, nb_matmul(ctx, M, ones_col(ctx, M->type.cols)), ones_row(ctx, M->type.cols));
}

/* Softmax S = softmax(Z) row by row; the linear map J·D = S ⊙ (D − rowsum(S ⊙ D))
 * is its own transpose, so it serves the VJP and the tangent. */
static nb_node *softmax_jacobian_apply(nb_ctx *ctx, nb_node *S, nb_node *D) {
    return nb_mul(ctx, S, nb_sub(ctx, D, rowsum_spread(ctx, nb_mul(ctx, D, S))));
}

static int vjp_softmax(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = softmax_jacobian_apply(ctx, y, G);
    return out[0] ? 0 : -1;
}

static nb_node *tangent_softmax(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    return softmax_jacobian_apply(ctx, y, dx[0]);
}

/* p = softmax(x) of a vector: ∂p/∂x = diag(p) − p·pᵀ, so the VJP is
 * G·diag(p) − (G·p)·pᵀ and the tangent p ⊙ ẋ − p·(pᵀ·ẋ). */
static int vjp_vector_softmax(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = nb_sub(ctx, nb_matmul(ctx, G, nb_diag(ctx, y)), nb_matmul(ctx, nb_matmul(ctx, G, y), nb_transpose(ctx, y)));
    return out[0] ? 0 : -1;
}

static nb_node *tangent_vector_softmax(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    return nb_sub(ctx, nb_mul(ctx, y, dx[0]), nb_matmul(ctx, y, nb_matmul(ctx, nb_transpose(ctx, y), dx[0])));
}

/* log softmax: VJP G − softmax(Z) ⊙ rowsum(G); tangent Ż − rowsum(softmax(Z) ⊙ Ż). */
static int vjp_logsoftmax(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    (void)want;
    out[0] = nb_sub(ctx, G, nb_mul(ctx, nb_softmax(ctx, y->args[0]), rowsum_spread(ctx, G)));
    return out[0] ? 0 : -1;
}

static nb_node *tangent_logsoftmax(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    return nb_sub(ctx, dx[0], rowsum_spread(ctx, nb_mul(ctx, nb_softmax(ctx, y->args[0]), dx[0])));
}

/* f = mean over rows of −Σⱼ Y ⊙ logsoftmax(Z):
 * ∂f/∂Z = (softmax(Z) ⊙ rowsum(Y) − Y)/rows — (softmax(Z) − Y)/rows when each
 * row of Y sums to 1 — and ∂f/∂Y = −logsoftmax(Z)/rows. */
static nb_node *xent_grad(nb_ctx *ctx, nb_node *y, int i) {
    nb_node *Z = y->args[0], *Y = y->args[1];
    nb_node *rows = nb_dimval(ctx, Z->type.rows);
    if (i == 1) return nb_neg(ctx, nb_div(ctx, nb_logsoftmax(ctx, Z), rows));
    return nb_div(ctx, nb_sub(ctx, nb_mul(ctx, nb_softmax(ctx, Z), rowsum_spread(ctx, Y)), Y), rows);
}

static int vjp_softmax_xent(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out) {
    for (int i = 0; i < 2; i++)
        if (want[i] && !(out[i] = nb_mul(ctx, G, xent_grad(ctx, y, i)))) return -1;
    return 0;
}

/* ḟ = Σ ∂f/∂Z ⊙ Ż + Σ ∂f/∂Y ⊙ Ẏ */
static nb_node *tangent_softmax_xent(nb_ctx *ctx, nb_node *y, nb_node *const *dx) {
    nb_node *terms[2] = {NULL, NULL};
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (dx[i]) terms[n++] = nb_sum(ctx, nb_mul(ctx, xent_grad(ctx, y, i), dx[i]));
    return nb_add_n(ctx, n, terms);
}

/* =====================================================================
 * Reference f64 kernels: plain loops over dense row-major values.
 * ===================================================================== */
/* Entry (i, j) of a broadcast operand. */
static double at(const nb_matrix *m, int64_t i, int64_t j) {
    return m->data[(m->rows == 1 ? 0 : i) * m->cols + (m->cols == 1 ? 0 : j)];
}

#define FOR_EACH(out) for (int64_t i = 0; i < (out)->rows; i++) for (int64_t j = 0; j < (out)->cols; j++)
#define OUT(out) (out)->data[i * (out)->cols + j]

static int domain_error(nb_ctx *ctx, const nb_node *y, const char *what, double v) {
    char buf[160];
    return nb_set_error(ctx, "%s (%g) in %s", what, v, nb_describe(ctx, y, buf, sizeof buf));
}

static int eval_const(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)a;
    FOR_EACH(out) OUT(out) = y->a.c.val;
    return 0;
}

static int eval_dimval(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)a;
    out->data[0] = (double)nb_dim_value(ctx, y->a.dim);
    return 0;
}

static int eval_identity(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y, (void)a;
    FOR_EACH(out) OUT(out) = i == j;
    return 0;
}

static int eval_add(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    FOR_EACH(out) {
        double s = 0;
        for (size_t k = 0; k < y->nargs; k++) s += at(&a[k], i, j);
        OUT(out) = s;
    }
    return 0;
}

static int eval_mul(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    FOR_EACH(out) {
        double p = 1;
        for (size_t k = 0; k < y->nargs; k++) p *= at(&a[k], i, j);
        OUT(out) = p;
    }
    return 0;
}

static int eval_pow(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    FOR_EACH(out) {
        double b = at(&a[0], i, j), e = at(&a[1], i, j);
        if (b < 0 && e != floor(e)) return domain_error(ctx, y, "fractional power of a negative number", b);
        if (b == 0 && e < 0) return domain_error(ctx, y, "division by zero", b);
        OUT(out) = e == 2 ? b * b : pow(b, e);
    }
    return 0;
}

static int eval_matmul(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    int64_t n = a[0].cols;
    FOR_EACH(out) {
        double s = 0;
        for (int64_t k = 0; k < n; k++) s += a[0].data[i * n + k] * a[1].data[k * a[1].cols + j];
        OUT(out) = s;
    }
    return 0;
}

static int eval_transpose(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    FOR_EACH(out) OUT(out) = a[0].data[j * a[0].cols + i];
    return 0;
}

static int eval_sum(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    double s = 0;
    for (int64_t k = 0; k < a[0].rows * a[0].cols; k++) s += a[0].data[k];
    out->data[0] = s;
    return 0;
}

static int eval_diag(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    FOR_EACH(out) OUT(out) = i == j ? a[0].data[i] : 0;
    return 0;
}

static int eval_diagpart(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    for (int64_t i = 0; i < out->rows; i++) out->data[i] = a[0].data[i * a[0].cols + i];
    return 0;
}

static int eval_literal(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    for (size_t k = 0; k < y->nargs; k++) out->data[k] = a[k].data[0];
    return 0;
}

static int eval_column(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    int64_t k = y->a.index[0];
    if (a[0].rows == 1) out->data[0] = a[0].data[k];
    else
        for (int64_t i = 0; i < out->rows; i++) out->data[i] = a[0].data[i * a[0].cols + k];
    return 0;
}

static int eval_entry(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    out->data[0] = a[0].data[y->a.index[0] * a[0].cols + y->a.index[1]];
    return 0;
}

/* y = f(x) entry by entry, with f the operator's scalar function. */
static int eval_unary(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    const nb_opinfo *info = &nb_ops[y->op];
    FOR_EACH(out) {
        double x = a[0].data[i * out->cols + j];
        if ((info->flags & NB_F_POSITIVE_ARG) && x <= 0) {
            char what[64];
            snprintf(what, sizeof what, "%s of %s", info->ascii, x < 0 ? "a negative number" : "zero");
            return domain_error(ctx, y, what, x);
        }
        OUT(out) = info->scalar1(x);
    }
    return 0;
}

/* y = f(u, v) entry by entry, operands broadcast. */
static int eval_binary(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    double (*f)(double, double) = nb_ops[y->op].scalar2;
    FOR_EACH(out) OUT(out) = f(at(&a[0], i, j), at(&a[1], i, j));
    return 0;
}

/* log Σⱼ exp(zᵢⱼ) of row i, shifted by the row maximum for stability. */
static double row_logsumexp(const nb_matrix *z, int64_t i) {
    const double *r = z->data + i * z->cols;
    double m = r[0], s = 0;
    for (int64_t j = 1; j < z->cols; j++) m = r[j] > m ? r[j] : m;
    for (int64_t j = 0; j < z->cols; j++) s += exp(r[j] - m);
    return m + log(s);
}

static int eval_softmax(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx;
    for (int64_t i = 0; i < out->rows; i++) {
        double lse = row_logsumexp(&a[0], i);
        for (int64_t j = 0; j < out->cols; j++) {
            double l = a[0].data[i * out->cols + j] - lse;
            OUT(out) = y->op == NB_OP_SOFTMAX ? exp(l) : l;
        }
    }
    return 0;
}

/* A vector's entries as one row. */
static int eval_vector_softmax(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    nb_matrix row = {1, a[0].rows, a[0].data};
    double lse = row_logsumexp(&row, 0);
    for (int64_t i = 0; i < out->rows; i++) out->data[i] = exp(a[0].data[i] - lse);
    return 0;
}

static int eval_softmax_xent(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out) {
    (void)ctx, (void)y;
    double total = 0;
    for (int64_t i = 0; i < a[0].rows; i++) {
        double lse = row_logsumexp(&a[0], i);
        for (int64_t j = 0; j < a[0].cols; j++) total -= a[1].data[i * a[0].cols + j] * (a[0].data[i * a[0].cols + j] - lse);
    }
    out->data[0] = total / (double)a[0].rows;
    return 0;
}

/* ---- the table: ORDER OP ------------------------------------------------------
 * ops.def gives each row's names, arity, class and flags; RULES_id names the
 * operator's functions (element-wise partial, VJP rule, tangent rule,
 * reference kernel, scalar function).  The element-wise functions' lines sit
 * with their functions above; the others follow.  A row without its RULES_
 * line does not compile. */
#define RULES_CONST NULL, NULL, NULL, eval_const, NULL, NULL
#define RULES_VAR NULL, NULL, NULL, NULL, NULL, NULL
#define RULES_DIMVAL NULL, NULL, NULL, eval_dimval, NULL, NULL
#define RULES_IDENTITY NULL, NULL, NULL, eval_identity, NULL, NULL
#define RULES_ADD partial_add, NULL, NULL, eval_add, NULL, NULL
#define RULES_MUL partial_mul, NULL, NULL, eval_mul, NULL, NULL
#define RULES_POW partial_pow, NULL, NULL, eval_pow, NULL, NULL
#define RULES_MATMUL NULL, vjp_matmul, NULL, eval_matmul, NULL, NULL
#define RULES_TRANSPOSE NULL, vjp_transpose, NULL, eval_transpose, NULL, NULL
#define RULES_SUM NULL, vjp_sum, NULL, eval_sum, NULL, NULL
#define RULES_DIAG NULL, vjp_diag, NULL, eval_diag, NULL, NULL
#define RULES_DIAGPART NULL, vjp_diagpart, NULL, eval_diagpart, NULL, NULL
#define RULES_VECLIT NULL, vjp_literal, NULL, eval_literal, NULL, NULL
#define RULES_MATLIT NULL, vjp_literal, NULL, eval_literal, NULL, NULL
#define RULES_COLUMN NULL, vjp_column, NULL, eval_column, NULL, NULL
#define RULES_ENTRY NULL, vjp_entry, NULL, eval_entry, NULL, NULL
#define RULES_SOFTMAX NULL, vjp_softmax, tangent_softmax, eval_softmax, NULL, NULL
#define RULES_VSOFTMAX NULL, vjp_vector_softmax, tangent_vector_softmax, eval_vector_softmax, NULL, NULL
#define RULES_LOGSOFTMAX NULL, vjp_logsoftmax, tangent_logsoftmax, eval_softmax, NULL, NULL
#define RULES_SOFTMAX_XENT NULL, vjp_softmax_xent, tangent_softmax_xent, eval_softmax_xent, NULL, NULL

const nb_opinfo nb_ops[NB_OP_COUNT] = {
#define OP(id, arity, cls, flags, builder, parse, unicode, ascii, latex) \
    [NB_OP_##id] = {unicode, ascii, latex, arity, cls, flags, RULES_##id},
#include "ops.def"
#undef OP
};
