/* libFuzzer target: parse → differentiate → print → evaluate.
 *
 * Input: the first line is a declaration list for nb_declare (may be empty),
 * the rest is an expression program for nb_parse.  For every variable the
 * parsed expression uses, both layouts of ∂f/∂v are built and printed in all
 * three formats; with small sizes f and the derivatives are also evaluated,
 * and nb_check runs once.  Errors are fine; crashes, leaks, sanitizer reports
 * and broken invariants (NULL without a message, a parse error column outside
 * the input) are not.
 *
 * Build and run: tests/fuzz/run.sh [SECONDS]. */
#include "nb_internal.h"
#include "fuzz_input.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WRT 8
#define MAX_EVAL_DIM 64 /* evaluate only when every numeric size is at most this */

static void must(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_parse: invariant broken: %s\n", what);
        abort();
    }
}

/* A NULL result must leave a message. */
static void expect_error(nb_ctx *ctx) {
    must(nb_error(ctx) != NULL && nb_error(ctx)[0] != '\0', "a builder returned NULL without an error message");
    nb_clear_error(ctx);
}

static void print_all(nb_ctx *ctx, const nb_expr *e) {
    for (int fmt = 0; fmt < 3; fmt++) {
        char *s = nb_to_string(ctx, e, (nb_format)fmt);
        must(s != NULL, "nb_to_string returned NULL");
        free(s);
    }
}

static int small_dim(nb_dim d) { return d < 0 || d <= MAX_EVAL_DIM; }

/* Whether a value of type t has at most n entries (symbolic sizes count as 5,
 * the most nb_randomize picks). */
static int entries_at_most(nb_type t, int64_t n) {
    int64_t r = t.rows < 0 ? 5 : t.rows, c = t.cols < 0 ? 5 : t.cols;
    return r <= n && c <= n && r * c <= n;
}

static void evaluate(nb_ctx *ctx, const nb_expr *e) {
    nb_matrix m;
    if (nb_eval(ctx, e, &m) == 0) {
        must(m.data != NULL && m.rows > 0 && m.cols > 0, "nb_eval succeeded without a value");
        nb_matrix_free(&m);
    } else {
        expect_error(ctx);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *decls, *src;
    char *text = fuzz_split_input(data, size, &decls, &src);
    if (!text) return 0;
    nb_ctx *ctx = nb_ctx_new();
    if (!ctx) {
        free(text);
        return 0;
    }
    if (nb_declare(ctx, decls) != 0) {
        expect_error(ctx);
    }
    nb_expr *f = nb_parse(ctx, src);
    if (!f) {
        int col = nb_error_column(ctx);
        must(col >= -1 && (size_t)(col + 1) <= strlen(src) + 1, "parse error column outside the input");
        expect_error(ctx);
        goto done;
    }
    print_all(ctx, f);

    /* the variables f uses (operands have smaller ids than their users) */
    size_t n = (size_t)f->id + 1;
    char *used = calloc(n, 1);
    nb_expr *wrt[MAX_WRT], *scalars[MAX_WRT];
    size_t nwrt = 0, nscalars = 0;
    int evaluable = 1;
    if (!used) goto done;
    used[f->id] = 1;
    for (size_t id = n; id-- > 0;) {
        if (!used[id]) continue;
        nb_node *e = ctx->nodes[id];
        evaluable &= small_dim(e->type.rows) && small_dim(e->type.cols);
        if ((e->op == NB_OP_IDENTITY || e->op == NB_OP_DIMVAL) && !small_dim(e->a.dim)) evaluable = 0;
        for (size_t i = 0; i < e->nargs; i++) used[e->args[i]->id] = 1;
        if (e->op == NB_OP_VAR && nwrt < MAX_WRT) {
            wrt[nwrt++] = e;
            if (e->type.kind == NB_SCALAR) scalars[nscalars++] = e;
        }
    }
    free(used);

    uint64_t rng = size;
    if (evaluable) {
        if (nb_randomize(ctx, f, &rng, -2, 2) == 0) evaluate(ctx, f);
        else expect_error(ctx);
    }
    for (size_t k = 0; k < nwrt; k++) {
        for (int layout = 0; layout < 2; layout++) {
            nb_expr *J = nb_derivative(ctx, f, 1, &wrt[k], (nb_layout)layout);
            if (!J) {
                expect_error(ctx);
                continue;
            }
            print_all(ctx, J);
            if (evaluable && layout == 0) {
                if (nb_randomize(ctx, J, &rng, -2, 2) == 0) evaluate(ctx, J);
                else expect_error(ctx);
            }
        }
        if (f->type.kind == NB_SCALAR) {
            nb_expr *g = nb_gradient(ctx, f, wrt[k]);
            if (g) print_all(ctx, g);
            else expect_error(ctx);
        }
    }
    if (nscalars > 1) {
        nb_expr *J = nb_derivative(ctx, f, nscalars, scalars, NB_NUMERATOR);
        if (J) print_all(ctx, J);
        else expect_error(ctx);
    }
    /* finite differences cost two evaluations per entry: small variables only */
    if (evaluable && nwrt > 0 && entries_at_most(wrt[0]->type, 32)) {
        double err;
        if (nb_check(ctx, f, 1, &wrt[0], &err) != 0) nb_clear_error(ctx);
    }
done:
    nb_ctx_free(ctx);
    free(text);
    return 0;
}
