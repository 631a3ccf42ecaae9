/* The simplifier: rebuilds an expression bottom-up through the
 * canonicalising constructors of ops.c, each node once (the rebuilt operands
 * are kept in a side array by position in nb_toposort's list), so the cost is
 * linear in the DAG.  The raw chain-rule derivative (nb_derivative_raw) goes
 * through here to become nb_derivative's canonical form; each rewrite that
 * fires is named and reported to the context's log hook. */
#include "nb_internal.h"

#include <stdlib.h>

nb_expr *nb_simplify(nb_ctx *ctx, nb_expr *e) {
    if (!NB_API_OK(ctx, e)) return NULL;
    size_t n;
    nb_node **nodes = nb_toposort(ctx, 1, &e, &n);
    nb_node **done = nodes ? malloc(n * sizeof *done) : NULL;
    nb_node **args = NULL;
    size_t cap = 0;
    nb_node *r = NULL;
    bool raw = ctx->raw;
    ctx->raw = false;
    if (!done) goto out;
    for (size_t i = 0; i < n; i++) {
        nb_node *y = nodes[i];
        if (y->nargs > cap) {
            free(args);
            cap = y->nargs;
            if (!(args = malloc(cap * sizeof *args))) goto out;
        }
        for (size_t k = 0; k < y->nargs; k++) args[k] = done[nb_topo_index(nodes, n, y->args[k])];
        ctx->rewriting = y;
        ctx->rewriting_args = args;
        done[i] = y->nargs ? nb_rebuild(ctx, y, args) : y;
        if (!done[i]) goto out;
    }
    r = done[n - 1];
out:
    if (!r && !*ctx->error) nb_set_error(ctx, "out of memory");
    ctx->rewriting = NULL;
    ctx->rewriting_args = NULL;
    ctx->raw = raw;
    free(nodes);
    free(done);
    free(args);
    return r;
}

void nb_set_rewrite_log(nb_ctx *ctx, nb_rewrite_log fn, void *user) {
    if (!ctx) return;
    ctx->rewrite_log = fn;
    ctx->rewrite_log_user = user;
}

nb_node *nb_rule(nb_ctx *ctx, const char *name, nb_node *result) {
    if (ctx->rewrite_log && result) ctx->rewrite_log(ctx->rewrite_log_user, name, ctx->rewriting, result);
    return result;
}
