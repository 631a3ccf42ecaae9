/* Print → parse round trips, shared by the tests (include once per test
 * program, after test.h).
 *
 * roundtrip_expr(ctx, e): e prints in all three formats; its ASCII text parses
 * back (nb_parse in the same context, so the same declarations and values
 * apply) to an expression of e's type and, when e evaluates at the bound
 * values, of e's values (relative 1e-9).
 * roundtrip_derivatives(ctx, f): the same for every derivative of f — with
 * respect to each variable f uses, in both layouts, and w.r.t. the list of
 * its scalar variables; for a scalar f also its gradients and Hessians. */
#ifndef NB_TEST_ROUNDTRIP_H
#define NB_TEST_ROUNDTRIP_H

#include "nb_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static long roundtrip_checked, roundtrip_valued;

static bool roundtrip_same_type(nb_type a, nb_type b) { return a.kind == b.kind && a.rows == b.rows && a.cols == b.cols; }

static void roundtrip_expr(nb_ctx *ctx, const nb_expr *e) {
    char ta[64], tb[64];
    for (int fmt = 0; fmt < 3; fmt++) {
        char *s = nb_to_string(ctx, e, (nb_format)fmt);
        CHECK(s && *s, "printing in format %d failed: %s", fmt, nb_error(ctx));
        free(s);
    }
    char *text = nb_to_string(ctx, e, NB_FMT_ASCII);
    if (!text) return;
    nb_expr *back = nb_parse(ctx, text);
    roundtrip_checked++;
    if (!back) {
        CHECK(0, "\"%.300s\" does not parse back: %s (column %d)", text, nb_error(ctx), nb_error_column(ctx));
        free(text);
        return;
    }
    CHECK(roundtrip_same_type(nb_type_of(back), nb_type_of(e)), "\"%.300s\" is %s but re-reads as %s", text,
          nb_type_str(ctx, nb_type_of(e), ta, sizeof ta), nb_type_str(ctx, nb_type_of(back), tb, sizeof tb));
    nb_matrix a = {0, 0, NULL}, b = {0, 0, NULL};
    if (nb_eval(ctx, e, &a) == 0) {
        roundtrip_valued++;
        if (nb_eval(ctx, back, &b) != 0) CHECK(0, "\"%.300s\" evaluates, its re-reading does not: %s", text, nb_error(ctx));
        else if (a.rows != b.rows || a.cols != b.cols) CHECK(0, "\"%.300s\" re-reads with another size", text);
        else {
            size_t n = (size_t)a.rows * (size_t)a.cols, bad = n;
            for (size_t k = 0; k < n && bad == n; k++)
                if (!(fabs(a.data[k] - b.data[k]) <= 1e-9 * fmax(1.0, fmax(fabs(a.data[k]), fabs(b.data[k]))))) bad = k;
            CHECK(bad == n, "\"%.300s\" re-reads with other values: entry %zu is %.17g, not %.17g", text, bad,
                  bad < n ? b.data[bad] : 0.0, bad < n ? a.data[bad] : 0.0);
        }
    }
    nb_clear_error(ctx);
    nb_matrix_free(&a);
    nb_matrix_free(&b);
    free(text);
}

static void roundtrip_derivatives(nb_ctx *ctx, nb_expr *f) {
    bool *used = calloc((size_t)f->id + 1, sizeof *used);
    size_t nvars = ctx->nvars; /* re-reading may declare more */
    nb_expr **scalars = malloc((nvars + 1) * sizeof *scalars);
    size_t nscalars = 0;
    if (!used || !scalars) {
        free(used);
        free(scalars);
        return;
    }
    used[f->id] = true;
    for (size_t id = f->id + 1; id-- > 0;)
        if (used[id])
            for (size_t i = 0; i < ctx->nodes[id]->nargs; i++) used[ctx->nodes[id]->args[i]->id] = true;
    for (size_t i = 0; i < nvars; i++) {
        nb_expr *v = ctx->vars[i].var;
        if (v->id > f->id || !used[v->id]) continue;
        if (nb_type_of(v).kind == NB_SCALAR) scalars[nscalars++] = v;
        for (int layout = 0; layout < 2; layout++) {
            nb_expr *J = nb_derivative(ctx, f, 1, &v, (nb_layout)layout);
            if (J) roundtrip_expr(ctx, J);
            nb_clear_error(ctx);
        }
        /* the gradient and, through it, the Hessian */
        nb_expr *g = nb_type_of(f).kind == NB_SCALAR ? nb_gradient(ctx, f, v) : NULL;
        nb_expr *H = g && nb_type_of(v).kind != NB_MATRIX && nb_type_of(v).kind != NB_ROW
                         ? nb_derivative(ctx, g, 1, &v, NB_NUMERATOR) : NULL;
        if (g) roundtrip_expr(ctx, g);
        if (H) roundtrip_expr(ctx, H);
        nb_clear_error(ctx);
    }
    if (nscalars > 1)
        for (int layout = 0; layout < 2; layout++) {
            nb_expr *J = nb_derivative(ctx, f, nscalars, scalars, (nb_layout)layout);
            if (J) roundtrip_expr(ctx, J);
            nb_clear_error(ctx);
        }
    free(used);
    free(scalars);
}

#endif
