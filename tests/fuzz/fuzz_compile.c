/* libFuzzer target: parse → differentiate → compile (f64) → run, compared
 * with the reference evaluator.
 *
 * Input as for fuzz_parse.c: the first line is a declaration list for
 * nb_declare (may be empty), the rest an expression program.  f and its
 * derivative (numerator layout) with respect to each variable it uses are
 * compiled together into one f64 program, with every variable as an input,
 * run at a random point, and each output compared with nb_eval of the same
 * expression: where nb_eval gives a finite value the program must give the
 * same within 1e-6 relative (summation order and fused multiply-adds differ).
 * Not where f or the output exceeds 1e6 in magnitude (as in test_property.c):
 * there a derivative printed through quotients such as (t + 1) ./ (t + 2)
 * loses every digit to rounding, in both evaluators.
 * Errors are fine; crashes, sanitizer reports, a NULL without a message and
 * a wrong number are not.
 * With NB_FUZZ_NATIVE=1 in the environment programs are compiled with
 * NB_COMPILE_NATIVE (the system's cc runs for every new row-fused region:
 * slow, so not in CI); generated code that the compiler rejects is a bug.
 *
 * Build and run: tests/fuzz/run.sh compile [SECONDS]. */
#include "nb_internal.h"
#include "fuzz_input.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARS 8
#define MAX_OUTPUTS (1 + MAX_VARS)
#define MAX_EVAL_DIM 64
#define MAX_COMPARED 1e6 /* magnitude beyond which values are not compared */

static void must(int cond, const char *what, const char *src) {
    if (!cond) {
        fprintf(stderr, "fuzz_compile: invariant broken: %s\ninput: %s\n", what, src);
        abort();
    }
}

/* The largest value a dimension can take here: a number is itself, a
 * symbol is bound to 2–5 by nb_randomize, each factor of a product a·b·…
 * too; so that a product of many symbols is never made (its matrices alone
 * would exhaust memory), a dimension counts as small up to MAX_EVAL_DIM. */
static int64_t largest_value(nb_ctx *ctx, nb_dim d) {
    if (d > 0) return d;
    char number[24];
    const size_t factors = nb_dim_factors(nb_dim_name(ctx, d, number, sizeof number), NULL, 0);
    int64_t v = 1;
    for (size_t k = 0; k < factors && v <= MAX_EVAL_DIM; k++)
        v *= 5;
    return v;
}
static int small_dim(nb_ctx *ctx, nb_dim d) { return largest_value(ctx, d) <= MAX_EVAL_DIM; }

static const nb_matrix *value_of(nb_ctx *ctx, const nb_node *var) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (ctx->vars[i].var == var) return ctx->vars[i].value.data ? &ctx->vars[i].value : NULL;
    return NULL;
}

static bool moderate(const nb_matrix *m) {
    for (int64_t i = 0; i < m->rows * m->cols; i++)
        if (!(fabs(m->data[i]) <= MAX_COMPARED)) return false;
    return true;
}

/* Whether e and every value it is computed from stay moderate: where an
 * intermediate is huge and the result small (cancellation), neither
 * evaluator's digits mean anything, so there is nothing to compare.  Large
 * graphs are not judged (quadratic). */
#define MAX_JUDGED_NODES 400
static bool moderate_throughout(nb_ctx *ctx, nb_expr *e) {
    size_t n;
    nb_node **nodes = nb_toposort(ctx, 1, &e, &n);
    bool ok = nodes && n <= MAX_JUDGED_NODES;
    for (size_t i = 0; ok && i < n; i++) {
        nb_matrix v = {0, 0, NULL};
        ok = nb_eval(ctx, nodes[i], &v) == 0 && moderate(&v);
        nb_matrix_free(&v);
    }
    free(nodes);
    nb_clear_error(ctx);
    return ok;
}

/* Runs the program at the values bound in ctx and compares every output with
 * nb_eval (outputs[0] is f). */
/* Every value the outputs need has at most MAX_ENTRIES entries at the bound
 * sizes: a product of many bound symbols (a·b·c·…, each 2–5) can make a
 * dense Jacobian of gigabytes, which the allocator of a sanitizer build
 * reports instead of failing. */
#define MAX_ENTRIES (1 << 20)
static bool moderate_sizes(nb_ctx *ctx, nb_expr **outs, size_t nout) {
    size_t n;
    nb_node **nodes = nb_toposort(ctx, nout, outs, &n);
    bool ok = nodes != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const int64_t r = nb_dim_value(ctx, nodes[i]->type.rows), c = nb_dim_value(ctx, nodes[i]->type.cols);
        ok = r >= 0 && c >= 0 && (r == 0 || c <= MAX_ENTRIES / r);
    }
    free(nodes);
    return ok;
}

static void run_and_compare(nb_ctx *ctx, nb_program *p, size_t nout, nb_expr *const *outs, size_t nin,
                            nb_expr *const *ins, const char *src) {
    const void *in[MAX_VARS];
    void *out[MAX_OUTPUTS] = {NULL};
    size_t in_size[MAX_VARS], out_size[MAX_OUTPUTS];
    int ok = 1;
    for (size_t i = 0; i < nin; i++) {
        const nb_matrix *v = value_of(ctx, ins[i]);
        if (!v) return;
        in[i] = v->data;
        in_size[i] = (size_t)(v->rows * v->cols);
        must((int64_t)in_size[i] == nb_program_input_size(p, i), "input size differs from the bound value", src);
    }
    for (size_t k = 0; k < nout && ok; k++) {
        int64_t n = nb_program_output_size(p, k);
        must(n > 0, "an output has no size although every dimension is bound", src);
        out_size[k] = (size_t)n;
        ok = (out[k] = malloc(out_size[k] * sizeof(double))) != NULL;
    }
    nb_matrix f_value = {0, 0, NULL};
    bool f_moderate = nb_eval(ctx, outs[0], &f_value) == 0 && moderate(&f_value);
    nb_matrix_free(&f_value);
    nb_clear_error(ctx);
    if (ok && nb_program_run_sized(p, in, in_size, out, out_size) == NB_OK) {
        for (size_t k = 0; k < nout && f_moderate; k++) {
            nb_matrix ref;
            if (nb_eval(ctx, outs[k], &ref) != 0) {
                nb_clear_error(ctx);
                continue;
            }
            if (!moderate(&ref) || !moderate_throughout(ctx, outs[k])) {
                nb_matrix_free(&ref);
                continue;
            }
            must((size_t)(ref.rows * ref.cols) == out_size[k], "compiled output and nb_eval differ in size", src);
            const double *got = out[k];
            for (size_t i = 0; i < out_size[k]; i++) {
                double a = ref.data[i], b = got[i], scale = fmax(1.0, fmax(fabs(a), fabs(b)));
                if (!(fabs(a - b) <= 1e-6 * scale)) {
                    fprintf(stderr, "output %zu entry %zu: nb_eval %.17g, compiled %.17g\n", k, i, a, b);
                    must(0, "compiled value differs from nb_eval", src);
                }
            }
            nb_matrix_free(&ref);
        }
    } else if (ok) {
        must(nb_program_error(p)[0] != '\0', "a failed run without a message", src);
    }
    for (size_t k = 0; k < nout; k++) free(out[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *decls, *src;
    char *text = fuzz_split_input(data, size, &decls, &src);
    if (!text) return 0;
    nb_ctx *ctx = nb_ctx_new();
    nb_program *p = NULL;
    if (!ctx) goto done;
    if (nb_declare(ctx, decls) != 0) nb_clear_error(ctx);
    nb_expr *f = nb_parse(ctx, src);
    if (!f) {
        must(nb_error(ctx)[0] != '\0', "nb_parse failed without a message", src);
        goto done;
    }
    /* the variables f uses; only small sizes are evaluated */
    nb_expr *vars[MAX_VARS];
    size_t nvars = 0;
    int evaluable = 1;
    char *used = calloc((size_t)f->id + 1, 1);
    if (!used) goto done;
    used[f->id] = 1;
    for (size_t id = (size_t)f->id + 1; id-- > 0;) {
        if (!used[id]) continue;
        nb_node *e = ctx->nodes[id];
        evaluable &= small_dim(ctx, e->type.rows) && small_dim(ctx, e->type.cols);
        if ((e->op == NB_OP_IDENTITY || e->op == NB_OP_DIMVAL) && !small_dim(ctx, e->a.dim)) evaluable = 0;
        for (size_t i = 0; i < e->nargs; i++) used[e->args[i]->id] = 1;
        if (e->op == NB_OP_VAR) {
            if (nvars == MAX_VARS) evaluable = 0;
            else vars[nvars++] = e;
        }
    }
    free(used);
    if (!evaluable) goto done;
    uint64_t rng = size;
    if (nb_randomize(ctx, f, &rng, -2, 2) != 0) {
        nb_clear_error(ctx);
        goto done;
    }
    nb_expr *outs[MAX_OUTPUTS];
    size_t nout = 0;
    outs[nout++] = f;
    for (size_t k = 0; k < nvars && f->type.kind != NB_MATRIX; k++) {
        nb_expr *J = nb_derivative(ctx, f, 1, &vars[k], NB_NUMERATOR);
        if (J) outs[nout++] = J;
        else nb_clear_error(ctx);
    }
    if (!moderate_sizes(ctx, outs, nout)) goto done;
    const unsigned native = getenv("NB_FUZZ_NATIVE") ? NB_COMPILE_NATIVE : 0u;
    p = nb_compile(ctx, nout, outs, nvars, vars, NB_F64, NB_COMPILE_DENSE | native);
    if (!p) {
        must(nb_error(ctx)[0] != '\0', "nb_compile failed without a message", src);
        goto done;
    }
    if (native) {
        char *listing = nb_program_describe(p);
        must(!listing || !strstr(listing, "failed on the generated code"), "generated code does not compile", src);
        free(listing);
    }
    run_and_compare(ctx, p, nout, outs, nvars, vars, src);
done:
    nb_program_free(p);
    nb_ctx_free(ctx);
    free(text);
    return 0;
}
