/* Finite-difference checking: the symbolic derivative against central
 * differences of the function, and random test points. */
#include "nb_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nb_binding *binding_of(nb_ctx *ctx, const nb_node *var) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (ctx->vars[i].var == var) return &ctx->vars[i];
    return NULL;
}

static size_t entries(const nb_matrix *m) { return (size_t)m->rows * (size_t)m->cols; }

/* Central differences of f w.r.t. every entry of var, compared with column
 * `first_column` onwards of the dense derivative D (m rows of f entries,
 * `ncols` columns in all).  f_scale is max(1, max |f|) at the point: the step
 * grows with its cube root, and the rounding noise of f's values,
 * 4·ε·max(|f(x+h)|, |f(x−h)|)/(2h), is not counted as error — so that
 * 1e10 + x checks as well as x does.  Restores var's value.  Returns 0 or -1. */
static int check_variable(nb_ctx *ctx, nb_expr *f, const nb_node *var, const nb_matrix *D, size_t m, size_t ncols,
                          size_t first_column, double f_scale, double *max_rel_err) {
    nb_binding *b = binding_of(ctx, var);
    if (!b || !b->value.data) return nb_set_error(ctx, "'%s' has no value", var->a.name);
    nb_matrix x = b->value; /* nb_set_value replaces b->value: work on a copy */
    size_t n = entries(&x);
    double *point = malloc(n * sizeof *point);
    if (!point) return nb_set_error(ctx, "out of memory");
    memcpy(point, x.data, n * sizeof *point);
    int status = 0;
    for (size_t k = 0; k < n && status == 0; k++) {
        double x0 = point[k], h = 1e-6 * fmax(1.0, fabs(x0)) * cbrt(f_scale);
        nb_matrix plus = {0, 0, NULL}, minus = {0, 0, NULL};
        point[k] = x0 + h;
        status = nb_set_value(ctx, var->a.name, x.rows, x.cols, point);
        if (status == 0) status = nb_eval(ctx, f, &plus);
        point[k] = x0 - h;
        if (status == 0) status = nb_set_value(ctx, var->a.name, x.rows, x.cols, point);
        if (status == 0) status = nb_eval(ctx, f, &minus);
        double step = (x0 + h) - (x0 - h); /* the step actually taken, after rounding */
        point[k] = x0;
        if (status == 0 && (entries(&plus) != m || entries(&minus) != m))
            status = nb_set_error(ctx, "nb_check: f changed shape under perturbation");
        /* beyond rank 2 the derivative is ∂vec(f)/∂vec(var)ᵀ: vec (column-major) order */
        bool vec_form = f->type.kind == NB_MATRIX || (f->type.kind != NB_SCALAR && var->type.kind == NB_MATRIX);
        size_t col = vec_form ? (k % (size_t)x.cols) * (size_t)x.rows + k / (size_t)x.cols : k;
        for (size_t i = 0; status == 0 && i < m; i++) {
            double numeric = (plus.data[i] - minus.data[i]) / step;
            size_t row = vec_form ? (i % (size_t)plus.cols) * (size_t)plus.rows + i / (size_t)plus.cols : i;
            double symbolic = D->data[row * ncols + first_column + col];
            double noise = 4 * DBL_EPSILON * fmax(fabs(plus.data[i]), fabs(minus.data[i])) / step;
            double err = fmax(0.0, fabs(numeric - symbolic) - noise) / fmax(1.0, fmax(fabs(numeric), fabs(symbolic)));
            if (!(err <= *max_rel_err)) *max_rel_err = isnan(err) ? INFINITY : err;
        }
        nb_matrix_free(&plus);
        nb_matrix_free(&minus);
    }
    /* Restore the original value, whatever happened. */
    if (nb_set_value(ctx, var->a.name, x.rows, x.cols, point) != 0) status = -1;
    free(point);
    return status;
}

int nb_check(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, double *max_rel_err) {
    if (!NB_API_OK(ctx, f) || !nb_api_array(ctx, __func__, nwrt, wrt)) return -1;
    if (nwrt == 0 || !max_rel_err) return nb_set_error(ctx, "nb_check: no variables, or max_rel_err is NULL");
    *max_rel_err = 0;
    bool separately = false;
    for (size_t j = 0; j < nwrt; j++) {
        if (!wrt[j] || wrt[j]->op != NB_OP_VAR) return nb_set_error(ctx, "nb_check: can only differentiate with respect to variables");
        separately |= nwrt > 1 && wrt[j]->type.kind != NB_SCALAR;
    }
    /* a list of vectors or matrices: each variable's derivative on its own */
    for (size_t j = 0; separately && j < nwrt; j++) {
        double err;
        if (nb_check(ctx, f, 1, &wrt[j], &err)) return -1;
        *max_rel_err = err > *max_rel_err ? err : *max_rel_err;
    }
    if (separately) return 0;
    nb_expr *derivative = nb_derivative(ctx, f, nwrt, wrt, NB_NUMERATOR);
    if (!derivative) return -1;
    nb_matrix D = {0, 0, NULL}, value = {0, 0, NULL};
    if (nb_eval(ctx, derivative, &D) != 0) return -1;
    int status = nb_eval(ctx, f, &value);
    size_t m = entries(&value), ncols = 0;
    double f_scale = 1;
    for (size_t i = 0; status == 0 && i < m; i++) f_scale = fmax(f_scale, fabs(value.data[i]));
    nb_matrix_free(&value);
    for (size_t j = 0; status == 0 && j < nwrt; j++) {
        nb_binding *b = binding_of(ctx, wrt[j]);
        if (!b || !b->value.data) status = nb_set_error(ctx, "'%s' has no value", wrt[j]->a.name);
        else ncols += entries(&b->value);
    }
    if (status == 0 && entries(&D) != m * ncols)
        status = nb_set_error(ctx, "nb_check: the derivative has %lldx%lld entries, expected %zu x %zu", (long long)D.rows,
                              (long long)D.cols, m, ncols);
    for (size_t j = 0, column = 0; status == 0 && j < nwrt; j++) {
        status = check_variable(ctx, f, wrt[j], &D, m, ncols, column, f_scale, max_rel_err);
        column += entries(&binding_of(ctx, wrt[j])->value);
    }
    nb_matrix_free(&D);
    return status;
}

/* ---- random test points ------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1.0p-53; }

/* Random values beyond this many entries per variable are refused (2 GiB):
 * better an error than a process killed for its memory. */
#define MAX_RANDOM_ENTRIES (INT64_C(1) << 28)

/* A product dimension "m·n" (kron.c) takes its value from its factors, so
 * its unbound factors are the ones bound (a compiled program refuses to bind
 * a product by name, and follows the factors). */
static int bind_random_dim(nb_ctx *ctx, nb_dim d, uint64_t *rng);

typedef struct {
    nb_ctx *ctx;
    uint64_t *rng;
} random_binding;

static int bind_random_factor(void *arg, const char *factor, size_t len) {
    random_binding *b = arg;
    if (strspn(factor, "0123456789") >= len) return 0; /* a number */
    return bind_random_dim(b->ctx, nb_dim_symbol_len(b->ctx, factor, len), b->rng);
}

static int bind_random_dim(nb_ctx *ctx, nb_dim d, uint64_t *rng) {
    char number[24];
    if (d >= 0 || nb_dim_value(ctx, d) != 0) return 0;
    const char *name = nb_dim_name(ctx, d, number, sizeof number);
    if (!nb_dim_is_product(name)) return nb_bind_dim(ctx, d, 2 + (int64_t)(splitmix64(rng) % 4));
    return nb_dim_each_factor(name, bind_random_factor, &(random_binding){ctx, rng}) ? -1 : 0;
}

int nb_randomize(nb_ctx *ctx, const nb_expr *e, uint64_t *rng, double lo, double hi) {
    if (!NB_API_OK(ctx, e)) return -1;
    if (!rng) return nb_set_error(ctx, "nb_randomize: the generator state is NULL");
    if (!(isfinite(lo) && isfinite(hi) && lo <= hi)) return nb_set_error(ctx, "nb_randomize: invalid range [%g, %g]", lo, hi);
    size_t n;
    nb_node *root = (nb_node *)e;
    nb_node **nodes = nb_toposort(ctx, 1, &root, &n); /* what e uses, operands first */
    if (!nodes) return nb_set_error(ctx, "out of memory");
    int status = 0;
    for (size_t i = 0; i < n && status == 0; i++) {
        const nb_node *node = nodes[i];
        status = bind_random_dim(ctx, node->type.rows, rng);
        if (status == 0) status = bind_random_dim(ctx, node->type.cols, rng);
        if (status == 0 && (node->op == NB_OP_DIMVAL || node->op == NB_OP_IDENTITY))
            status = bind_random_dim(ctx, node->a.dim, rng);
    }
    for (size_t v = 0; v < ctx->nvars && status == 0; v++) {
        const nb_node *var = ctx->vars[v].var;
        if (nb_topo_index(nodes, n, var) == n || ctx->vars[v].value.data) continue;
        int64_t rows = nb_dim_value(ctx, var->type.rows), cols = nb_dim_value(ctx, var->type.cols);
        double *data = NULL;
        if (rows <= MAX_RANDOM_ENTRIES / cols) data = malloc((size_t)rows * (size_t)cols * sizeof *data);
        if (!data) {
            status = nb_set_error(ctx, "cannot make a random %lldx%lld value for '%s': too large", (long long)rows,
                                  (long long)cols, var->a.name);
            break;
        }
        for (int64_t k = 0; k < rows * cols; k++) data[k] = lo + (hi - lo) * uniform01(rng);
        status = nb_set_value(ctx, var->a.name, rows, cols, data);
        free(data);
    }
    free(nodes);
    return status;
}
