/* The one traversal.  Node ids are a topological order (operands are built
 * first), so the nodes reachable from a set of roots, sorted by id, is an
 * order in which every node comes after its operands.  Passes keep their
 * scratch in side arrays indexed by position in this list, never in the
 * shared nodes. */
#include "nb_internal.h"

#include <stdlib.h>

static int by_id(const void *x, const void *y) {
    const nb_node *a = *(nb_node *const *)x, *b = *(nb_node *const *)y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Marks reached nodes in a bitmap over the ids below the largest root, walks
 * with an explicit stack (no recursion), and sorts what it reached by id. */
nb_node **nb_toposort(nb_ctx *ctx, size_t nroots, nb_node *const *roots, size_t *count) {
    uint32_t top_id = 0;
    *count = 0;
    for (size_t r = 0; r < nroots; r++)
        if (roots[r] && roots[r]->id > top_id) top_id = roots[r]->id;
    size_t cap = 64, n = 0, sp = 0, stack_cap = 64;
    unsigned char *seen = calloc((size_t)top_id / 8 + 1, 1);
    nb_node **order = malloc(cap * sizeof *order), **stack = malloc(stack_cap * sizeof *stack);
    if (!seen || !order || !stack) goto fail;
#define SEEN(e) (seen[(e)->id / 8] >> ((e)->id % 8) & 1u)
#define MARK(e) (seen[(e)->id / 8] |= (unsigned char)(1u << ((e)->id % 8)))
    for (size_t r = 0; r < nroots; r++) {
        if (!roots[r] || SEEN(roots[r])) continue;
        MARK(roots[r]);
        stack[sp++] = roots[r];
        while (sp) {
            nb_node *e = stack[--sp];
            if (n == cap) {
                nb_node **o = realloc(order, (cap *= 2) * sizeof *o);
                if (!o) goto fail;
                order = o;
            }
            order[n++] = e;
            for (size_t i = 0; i < e->nargs; i++) {
                nb_node *a = e->args[i];
                if (SEEN(a)) continue;
                MARK(a);
                if (sp == stack_cap) {
                    nb_node **s = realloc(stack, (stack_cap *= 2) * sizeof *s);
                    if (!s) goto fail;
                    stack = s;
                }
                stack[sp++] = a;
            }
        }
    }
#undef SEEN
#undef MARK
    qsort(order, n, sizeof *order, by_id);
    free(seen);
    free(stack);
    *count = n;
    return order;
fail:
    free(seen);
    free(order);
    free(stack);
    nb_set_error(ctx, "out of memory");
    return NULL;
}

size_t nb_topo_index(nb_node *const *nodes, size_t n, const nb_node *e) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (nodes[mid]->id < e->id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && nodes[lo] == e ? lo : n;
}

int nb_preorder_ranks(nb_ctx *ctx, const nb_node *root, nb_node *const *nodes, size_t n, uint32_t *rank) {
    nb_node **stack = malloc((n + 1) * sizeof *stack);
    bool *done = calloc(n + 1, sizeof *done);
    if (!stack || !done) {
        free(stack);
        free(done);
        return nb_set_error(ctx, "out of memory");
    }
    size_t sp = 0;
    uint32_t next = 0;
    size_t r = nb_topo_index(nodes, n, root);
    if (r < n) {
        done[r] = true;
        stack[sp++] = (nb_node *)root;
    }
    while (sp) {
        nb_node *e = stack[--sp];
        rank[nb_topo_index(nodes, n, e)] = next++;
        for (size_t i = e->nargs; i-- > 0;) {
            size_t k = nb_topo_index(nodes, n, e->args[i]);
            if (k >= n || done[k]) continue;
            done[k] = true;
            stack[sp++] = e->args[i];
        }
    }
    free(stack);
    free(done);
    return 0;
}

size_t nb_variables(nb_ctx *ctx, const nb_expr *e, nb_expr **vars, size_t cap) {
    size_t count = 0;
    if (!ctx || (e && !NB_API_OK(ctx, e))) return 0;
    if (!e) {
        for (size_t i = 0; i < ctx->nvars; i++, count++)
            if (vars && count < cap) vars[count] = ctx->vars[i].var;
        return count;
    }
    size_t n;
    nb_node *root = (nb_node *)e;
    nb_node **nodes = nb_toposort(ctx, 1, &root, &n);
    if (!nodes) return 0;
    for (size_t i = 0; i < n; i++)
        if (nodes[i]->op == NB_OP_VAR) {
            if (vars && count < cap) vars[count] = nodes[i];
            count++;
        }
    free(nodes);
    return count;
}

const char *nb_var_name(const nb_expr *e) { return e && e->op == NB_OP_VAR ? e->a.name : NULL; }
