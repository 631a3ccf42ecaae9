/* Reference evaluation in double precision: dense values, plain loops, one
 * node at a time in topological (id) order.  It is the oracle the compiled
 * engine and the finite-difference checks are measured against. */
#include "nb_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int resolve_dim(nb_ctx *ctx, nb_dim d, int64_t *out) {
    char name[64];
    *out = nb_dim_value(ctx, d);
    if (*out > 0) return 0;
    return nb_set_error(ctx, "dimension %s is not bound: give a value to a variable that has it",
                        nb_dim_name(ctx, d, name, sizeof name));
}

static const nb_matrix *variable_value(nb_ctx *ctx, const nb_node *v) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (ctx->vars[i].var == v) return ctx->vars[i].value.data ? &ctx->vars[i].value : NULL;
    return NULL;
}

static int eval_node(nb_ctx *ctx, const nb_node *e, nb_matrix *out) {
    char buf[160];
    size_t n = 0;
    nb_node *root = (nb_node *)e;
    nb_node **nodes = nb_toposort(ctx, 1, &root, &n);
    nb_matrix *val = nodes ? calloc(n, sizeof *val) : NULL; /* by position in nodes */
    nb_matrix *args = NULL;
    size_t cap_args = 0;
    int rc = -1;
    if (!val) {
        nb_set_error(ctx, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const nb_node *y = nodes[i];
        int64_t rows, cols;
        if (resolve_dim(ctx, y->type.rows, &rows) || resolve_dim(ctx, y->type.cols, &cols)) goto done;
        if (y->op == NB_OP_VAR) {
            const nb_matrix *v = variable_value(ctx, y);
            if (!v) {
                nb_set_error(ctx, "no value given for '%s'", y->a.name);
                goto done;
            }
            val[i] = *v; /* borrowed, not freed */
            continue;
        }
        if (rows > (int64_t)1 << 31 || cols > (int64_t)1 << 31 || (rows * cols) > ((int64_t)1 << 32)) {
            nb_set_error(ctx, "%lld x %lld is too large to evaluate densely", (long long)rows, (long long)cols);
            goto done;
        }
        val[i] = (nb_matrix){rows, cols, malloc((size_t)(rows * cols) * sizeof(double))};
        if (y->nargs > cap_args) {
            free(args);
            cap_args = y->nargs;
            args = malloc(cap_args * sizeof *args);
        }
        if (!val[i].data || (y->nargs && !args)) {
            nb_set_error(ctx, "out of memory");
            goto done;
        }
        for (size_t k = 0; k < y->nargs; k++) args[k] = val[nb_topo_index(nodes, n, y->args[k])];
        if (nb_ops[y->op].eval(ctx, y, args, &val[i])) goto done;
        for (int64_t k = 0; k < rows * cols; k++)
            if (!isfinite(val[i].data[k])) {
                nb_set_error(ctx, "%s evaluates to %g", nb_describe(ctx, y, buf, sizeof buf), val[i].data[k]);
                goto done;
            }
    }
    *out = val[n - 1]; /* e has the largest id */
    if (e->op == NB_OP_VAR) {
        size_t bytes = (size_t)(out->rows * out->cols) * sizeof(double);
        out->data = malloc(bytes);
        if (!out->data) {
            nb_set_error(ctx, "out of memory");
            goto done;
        }
        memcpy(out->data, val[n - 1].data, bytes);
    }
    val[n - 1].data = NULL;
    rc = 0;
done:
    if (val)
        for (size_t i = 0; i < n; i++)
            if (nodes[i]->op != NB_OP_VAR) free(val[i].data);
    free(val);
    free(nodes);
    free(args);
    return rc;
}

int nb_eval(nb_ctx *ctx, const nb_expr *e, nb_matrix *out) {
    if (!NB_API_OK(ctx, e)) return -1;
    if (!out) return nb_set_error(ctx, "nb_eval: the output matrix is NULL");
    out->data = NULL;
    return eval_node(ctx, e, out);
}
