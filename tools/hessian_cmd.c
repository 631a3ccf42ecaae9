/* nabla hessian: the second derivative of a scalar function, as a formula
 * (structure kept: x'*A*x gives A + Aᵀ), as a matrix (--at), or its product
 * with a direction (--along, a Hessian-vector product that never forms the
 * Hessian). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define HESSIAN_USAGE                                                                                                \
    "nabla hessian EXPR --wrt VARS [--let DECLS] [--along VALUES] [--format unicode|ascii|latex] [--at VALUES]"

static const char hessian_help[] =
    "usage: " HESSIAN_USAGE "\n"
    "\n"
    "The Hessian ∂²f/∂x² of a scalar EXPR with respect to one scalar or vector\n"
    "variable: the derivative of the gradient, n x n and symmetric, printed as a\n"
    "formula with its structure (I, diag, 1·1ᵀ), or evaluated at --at VALUES and\n"
    "printed as a matrix (one row per line).\n"
    "\n"
    "  --wrt VAR       the variable (scalar or vector), or several scalars 'x, y'\n"
    "  --let DECLS     variable types: 'x: vector(n); A: matrix(n, n)'\n"
    "  --along V       the Hessian-vector product ∇²f·V instead (V a value of x's\n"
    "                  shape, e.g. '[1, 0, 0]'): forward mode over the gradient\n"
    "  --format F      unicode (default), ascii or latex\n"
    "  --at VALUES     'x=[1, 2, 3]; A=[[1, 2, 0], [0, 1, 0], [0, 0, 1]]'\n"
    "\n"
    "examples:\n"
    "  nabla hessian \"x'*A*x\" --wrt x --let 'x: vector(n); A: matrix(n, n)'       # A + Aᵀ\n"
    "  nabla hessian 'x^3*y' --wrt x,y                                            # [[6·x·y, 3·x²], [3·x², 0]]\n"
    "  nabla hessian 'sum(exp(x))' --wrt x --let 'x: vector(n)' --along '[1, 0]' --at 'x=[0, 1]'\n";

/* The direction of --along as a new variable of v's type, bound to VALUES. */
static nb_expr *direction(nb_ctx *ctx, nb_expr *v, const char *values) {
    static const char name[] = "along";
    if (nb_lookup(ctx, name))
        return nb_cli_error(NULL, -1, "--along names its direction 'along', which EXPR already uses"), NULL;
    size_t len = strlen(name) + strlen(values) + 2;
    char *spec = malloc(len);
    nb_expr *d = nb_var(ctx, name, nb_type_of(v));
    if (!spec || !d) {
        free(spec);
        nb_cli_error(NULL, -1, "%s", d ? "out of memory" : nb_error(ctx));
        return NULL;
    }
    snprintf(spec, len, "%s=%s", name, values);
    int status = nb_cli_bind_values(ctx, spec);
    free(spec);
    return status == 0 ? d : NULL;
}

int nb_cmd_hessian(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL},  {"let", true, NULL},    {"at", true, NULL},
                            {"wrt", true, NULL},    {"along", true, NULL},  {"format", true, NULL}};
    size_t nopts = sizeof opts / sizeof opts[0], npos;
    const char *expr;
    if (nb_cli_parse_options(argc, argv, opts, nopts, &expr, 1, &npos, HESSIAN_USAGE)) return 2;
    const char *let = nb_cli_option_value(opts, nopts, "let"), *at = nb_cli_option_value(opts, nopts, "at");
    const char *wrt_list = nb_cli_option_value(opts, nopts, "wrt"), *along = nb_cli_option_value(opts, nopts, "along");
    const char *format_name = nb_cli_option_value(opts, nopts, "format");
    if (nb_cli_option_value(opts, nopts, "help")) return fputs(hessian_help, stdout), 0;
    if (npos == 0) return nb_cli_usage_error(HESSIAN_USAGE, "missing EXPR");
    if (!wrt_list) return nb_cli_usage_error(HESSIAN_USAGE, "missing --wrt");
    nb_format format = NB_FMT_UNICODE;
    if (format_name && strcmp(format_name, "ascii") == 0) format = NB_FMT_ASCII;
    else if (format_name && strcmp(format_name, "latex") == 0) format = NB_FMT_LATEX;
    else if (format_name && strcmp(format_name, "unicode") != 0)
        return nb_cli_usage_error(HESSIAN_USAGE, "invalid --format '%s' (expected unicode, ascii or latex)", format_name);

    nb_ctx *ctx = nb_ctx_new();
    char *src = ctx ? nb_cli_read_expr(expr) : NULL;
    nb_expr **wrt = NULL, *f = NULL, *H = NULL;
    size_t nwrt = 0;
    int status = !ctx ? nb_cli_error(NULL, -1, "out of memory") : !src ? 2 : 0;
    if (status == 0 && let) status = nb_cli_declare(ctx, let);
    if (status == 0 && !(f = nb_cli_parse(ctx, src))) status = 2;
    if (status == 0) status = nb_cli_wrt(ctx, src, let, wrt_list, &wrt, &nwrt);
    if (status == 0 && nwrt > 1 && along) status = nb_cli_error(NULL, -1, "--along needs one variable in --wrt");
    if (status == 0 && nwrt > 1) {
        /* a list of scalars: the Jacobian of the gradient column [∂f/∂x, ∂f/∂y, …] */
        nb_expr *g = nb_derivative(ctx, f, nwrt, wrt, NB_DENOMINATOR);
        if (!g || !(H = nb_derivative(ctx, g, nwrt, wrt, NB_DENOMINATOR))) status = nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    } else if (status == 0 && along) {
        nb_expr *d = direction(ctx, wrt[0], along);
        status = d ? 0 : 2;
        if (status == 0 && !(H = nb_hvp(ctx, f, wrt[0], d))) status = nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    } else if (status == 0 && !(H = nb_hessian(ctx, f, wrt[0]))) {
        status = nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    }
    if (status == 0 && (at || along)) {
        nb_matrix value;
        if (at) status = nb_cli_bind_values(ctx, at);
        if (status == 0 && nb_eval(ctx, H, &value) != 0) status = nb_cli_error(NULL, -1, "%s", nb_error(ctx));
        if (status == 0) {
            nb_cli_print_matrix(stdout, &value);
            nb_matrix_free(&value);
        }
    } else if (status == 0) {
        char *text = nb_to_string(ctx, H, format);
        if (!text) status = nb_cli_error(NULL, -1, "out of memory");
        else printf("%s\n", text);
        free(text);
    }
    free(wrt);
    free(src);
    nb_ctx_free(ctx);
    return status;
}
