/* The nabla command: derivatives, values and finite-difference checks of
 * expressions from the command line.  Exit status: 0 success, 1 a check over
 * tolerance, 2 an error (reported on stderr, nothing on stdout). */
#include "cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char main_help[] =
    "nabla " NABLA_VERSION " - matrix calculus and automatic differentiation\n"
    "\n"
    "usage: nabla COMMAND EXPR [options]\n"
    "\n"
    "commands:\n"
    "  diff   EXPR --wrt VARS   the derivative of EXPR, as a formula or (--at) a matrix\n"
    "  eval   EXPR --at VALUES  the value of EXPR\n"
    "  check  EXPR --wrt VARS   compare the derivative with finite differences\n"
    "  hessian EXPR --wrt VARS  the second derivative (see 'nabla hessian --help')\n"
    "  time   EXPR --wrt VARS   time the compiled derivative (see 'nabla time --help')\n"
    "  fit    --generate N,n    fit the paper's ReLU neuron (or --model) by gradient descent\n"
    "  train  --data D          train a network on Fashion-MNIST or CSV data\n"
    "  evaluate --load M.nbm    accuracy, loss and confusion matrix of a checkpoint\n"
    "  predict --load M.nbm     the class of each example of --input\n"
    "Run 'nabla COMMAND --help' for a command's options.  EXPR '-' reads standard input.\n"
    "\n"
    "expressions:\n"
    "  numbers, names, + - * / ^, parentheses, comparisons > < >= <= (indicators 1[...])\n"
    "  A * B     matrix product (a plain product when either side is a scalar); also ·\n"
    "  A .* B    element-wise product (also ⊙); ./ (⊘) division; .^ power\n"
    "  A'        transpose (also Aᵀ)\n"
    "  [a, b]    a column vector, [a, b]' a row; [[a, b], [c, d]] a matrix by rows\n"
    "  x[i] A[i, j] A[:, j]   entries and columns (from 1)\n"
    "  exp log ln sin cos tan tanh sqrt abs sign sigmoid relu softmax logsoftmax\n"
    "  sum mean norm2 diag diagpart, max(a, b) min(a, b) dot(a, b) softmax_xent(Z, Y)\n"
    "  ones(n) zeros(m, n) eye(n)   constant arrays (the 𝟏, 𝟎 and I of derivatives)\n"
    "  e, pi (π)  the constants; e^x is exp(x).  ⊗ is refused: write ⊙ or .*\n"
    "  u = X*w + b; sum(u.^2)   definitions, separated by ';' or newlines; a name\n"
    "            may be redefined from its earlier value (u = u*2), not before it has one\n"
    "  A name not declared with --let is a scalar.\n"
    "\n"
    "declarations (--let):  'w, x: vector(n); X: matrix(N, n); b: scalar'  (also row(n))\n"
    "values (--at):         'b=0.5; w=[1, 2, 3]; X=[[1, 2, 3], [4, 5, 6]]'\n"
    "\n"
    "examples:\n"
    "  nabla diff '3*x^2*y' --wrt x,y\n"
    "  nabla diff 'w .* x' --wrt w --let 'w, x: vector(n)'\n"
    "  nabla diff 'sum((y - max(0, X*w + b)).^2)/N' --wrt w \\\n"
    "        --let 'X: matrix(N, n); w: vector(n); y: vector(N); b: scalar'\n"
    "  nabla eval 'x^2 + y' --at 'x=3; y=1'\n"
    "  nabla check 'sin(x^2)*y' --wrt x,y\n";

#define DIFF_USAGE                                                                                                   \
    "nabla diff EXPR --wrt VARS [--let DECLS] [--layout numerator|denominator] [--format unicode|ascii|latex] "      \
    "[--at VALUES] [--steps [--lang en|zh]]"
#define EVAL_USAGE "nabla eval EXPR [--let DECLS] --at VALUES"
#define CHECK_USAGE "nabla check EXPR --wrt VARS [--let DECLS] [--at VALUES] [--seed S] [--tol T]"

static const char diff_help[] =
    "usage: " DIFF_USAGE "\n"
    "\n"
    "The derivative of EXPR with respect to VARS, printed as a formula, or\n"
    "evaluated at --at VALUES and printed as a matrix (one row per line).\n"
    "\n"
    "  --wrt VARS      one variable; several scalars: 'x, y' (one column each); or a\n"
    "                  list of any types: 'W1, b1, W2, b2' (one labelled derivative each)\n"
    "  --let DECLS     variable types: 'w, x: vector(n); X: matrix(N, n); b: scalar'\n"
    "  --layout L      numerator (default: the gradient of a scalar is a row) or\n"
    "                  denominator (the transpose)\n"
    "  --format F      unicode (default), ascii (parses back) or latex; with\n"
    "                  --steps also markdown ($...$ math)\n"
    "  --at VALUES     'x=1; w=[1, 2, 3]; X=[[1, 2], [3, 4]]'\n"
    "  --steps         show the derivation: intermediate variables, partial\n"
    "                  derivatives, the chain rule, each simplification named\n"
    "  --lang L        language of --steps: en (default) or zh\n"
    "VARS may name a definition of EXPR: 'u = x^3; sin(u)' --wrt u.\n"
    "\n"
    "How derivatives print: a column is [a, b] and a row [a, b]ᵀ ([a, b]' in\n"
    "ascii; in latex a bmatrix with rows \\\\ or entries &), so the gradient of\n"
    "3*x^2*y w.r.t. x,y is the row [6·x·y, 3·x²]ᵀ.  Unicode and latex write the\n"
    "ones vector 𝟏 (row 𝟏ᵀ), the zero array 𝟎 and the identity I; ascii writes\n"
    "ones(n), ones(n)', zeros(m, n), eye(n), indicators (u > 0), sign(u),\n"
    "diagpart(A) — every ascii output reads back as the same expression.  A\n"
    "subexpression the result repeats is named once when that is no longer:\n"
    "'diag(t1 ⊙ (1 - t1))·A where t1 = sigmoid(A·x + b)' (ascii: the definition\n"
    "first, 't1 = sigmoid(A*x + b); diag(t1 .* (1 - t1))*A'); a very large result\n"
    "is printed as definitions, one per line, then the formula.\n"
    "\n"
    "Beyond rank 2 (a matrix-valued EXPR, or a vector EXPR of a matrix variable)\n"
    "the derivative is the matrix d vec(F) / d vec(X)' (Magnus & Neudecker; vec\n"
    "stacks columns), printed with Kronecker products, I and the commutation\n"
    "matrix K: d(A*X*B)/dX = B' ⊗ A, d(X')/dX = K; its transpose in denominator\n"
    "layout.  A scalar's gradient w.r.t. a matrix keeps the matrix's shape.\n"
    "\n"
    "example: nabla diff 'sum(w .* x) + b' --wrt w --let 'w, x: vector(n); b: scalar'\n";

static const char eval_help[] =
    "usage: " EVAL_USAGE "\n"
    "\n"
    "The value of EXPR at --at VALUES, one matrix row per line.\n"
    "\n"
    "  --let DECLS     variable types: 'w, x: vector(n); X: matrix(N, n); b: scalar'\n"
    "  --at VALUES     'x=1; w=[1, 2, 3]; X=[[1, 2], [3, 4]]'\n"
    "\n"
    "example: nabla eval 'dot(w, x)' --let 'w, x: vector(n)' --at 'w=[1, 2]; x=[3, 4]'\n";

static const char check_help[] =
    "usage: " CHECK_USAGE "\n"
    "\n"
    "Compares the symbolic derivative of EXPR with central finite differences and\n"
    "prints the largest relative error.  Variables missing from --at get random\n"
    "values in [-2, 2] (and unbound dimensions a size in 2..5).  Exit status 0 when\n"
    "the error is at most the tolerance, 1 when it is larger.  The step grows with\n"
    "|x| and with the cube root of |f|, and the rounding noise of f's values is not\n"
    "counted as error, so a large |f| (1e10 + x) is no false alarm.\n"
    "\n"
    "  --wrt VARS      one variable, or several scalars: 'x, y'\n"
    "  --let DECLS     variable types: 'w, x: vector(n); X: matrix(N, n); b: scalar'\n"
    "  --at VALUES     'x=1; w=[1, 2, 3]' (the rest is random)\n"
    "  --seed S        random seed (default 1)\n"
    "  --tol T         tolerance (default 1e-6)\n"
    "\n"
    "example: nabla check 'sum(max(0, X*w + b))' --wrt w --let 'X: matrix(N, n); w: vector(n); b: scalar'\n";

/* What every command builds: the expression in a fresh context. */
typedef struct {
    nb_ctx *ctx;
    char *src;
    nb_expr *f;
} session;

static void session_free(session *s) {
    nb_ctx_free(s->ctx);
    free(s->src);
}

/* Reads EXPR, declares --let, parses.  Returns 0 or 2 (reported). */
static int session_load(session *s, const char *expr_arg, const char *let) {
    s->ctx = nb_ctx_new();
    if (!s->ctx) return nb_cli_error(NULL, -1, "out of memory");
    if (!(s->src = nb_cli_read_expr(expr_arg))) return 2;
    if (let && nb_cli_declare(s->ctx, let)) return 2;
    return (s->f = nb_cli_parse(s->ctx, s->src)) ? 0 : 2;
}

/* Evaluates e and prints it.  Returns 0 or 2 (reported). */
static int print_value(nb_ctx *ctx, const nb_expr *e) {
    nb_matrix value;
    if (nb_eval(ctx, e, &value) != 0) return nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    nb_cli_print_matrix(stdout, &value);
    nb_matrix_free(&value);
    return 0;
}

/* The value of option `name` in the command's table `opts`. */
#define OPTION(name) nb_cli_option_value(opts, sizeof opts / sizeof opts[0], name)
#define PARSE_OPTIONS(usage) \
    nb_cli_parse_options(argc, argv, opts, sizeof opts / sizeof opts[0], &expr, 1, &npos, usage)

/* Does a --wrt list need one derivative per variable (not all scalars)? */
static bool listed_separately(size_t nwrt, nb_expr *const *wrt) {
    for (size_t k = 0; nwrt > 1 && k < nwrt; k++)
        if (nb_type_of(wrt[k]).kind != NB_SCALAR) return true;
    return false;
}

/* diff --wrt W1,b1,W2,b2: one labelled derivative per variable
 * (∂f/∂W1 = …), each printed or evaluated (--at).  Returns 0 or 2. */
static int print_each_derivative(session *s, size_t nwrt, nb_expr *const *wrt, nb_layout layout, nb_format format,
                                 const char *at) {
    nb_expr **d = calloc(nwrt, sizeof *d);
    int status = d ? 0 : nb_cli_error(NULL, -1, "out of memory");
    if (status == 0 && nb_derivatives(s->ctx, s->f, nwrt, wrt, layout, d) != 0)
        status = nb_cli_error(NULL, -1, "%s", nb_error(s->ctx));
    if (status == 0 && at) status = nb_cli_bind_values(s->ctx, at);
    for (size_t k = 0; k < nwrt && status == 0; k++) {
        char *name = nb_to_string(s->ctx, wrt[k], format), *text = at ? NULL : nb_derivative_to_string(s->ctx, d[k], format);
        if (!name || (!at && !text)) status = nb_cli_error(NULL, -1, "out of memory");
        else {
            printf(format == NB_FMT_LATEX ? "\\frac{\\partial f}{\\partial %s}" : format == NB_FMT_ASCII ? "df/d%s" : "∂f/∂%s", name);
            /* ASCII after a colon: the text is then exactly what the parser reads back
             * (definitions of repeated subexpressions first, "t1 = …; …") */
            printf(at ? ":\n" : format == NB_FMT_ASCII ? ": %s\n" : " = %s\n", text);
        }
        if (status == 0 && at) status = print_value(s->ctx, d[k]);
        free(name);
        free(text);
    }
    free(d);
    return status;
}

int nb_cmd_diff(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL},   {"let", true, NULL},    {"at", true, NULL},
                            {"wrt", true, NULL},     {"layout", true, NULL}, {"format", true, NULL},
                            {"steps", false, NULL},  {"lang", true, NULL}};
    const char *expr;
    size_t npos;
    if (PARSE_OPTIONS(DIFF_USAGE)) return 2;
    if (OPTION("help")) return fputs(diff_help, stdout), 0;
    if (npos == 0) return nb_cli_usage_error(DIFF_USAGE, "missing EXPR");
    if (!OPTION("wrt")) return nb_cli_usage_error(DIFF_USAGE, "missing --wrt");
    const char *layout_name = OPTION("layout"), *format_name = OPTION("format");
    nb_layout layout = NB_NUMERATOR;
    nb_format format = NB_FMT_UNICODE;
    if (layout_name && strcmp(layout_name, "denominator") == 0) layout = NB_DENOMINATOR;
    else if (layout_name && strcmp(layout_name, "numerator") != 0)
        return nb_cli_usage_error(DIFF_USAGE, "invalid --layout '%s' (expected numerator or denominator)", layout_name);
    if (format_name && strcmp(format_name, "ascii") == 0) format = NB_FMT_ASCII;
    else if (format_name && strcmp(format_name, "latex") == 0) format = NB_FMT_LATEX;
    else if (format_name && strcmp(format_name, "unicode") != 0 && !(OPTION("steps") && strcmp(format_name, "markdown") == 0))
        return nb_cli_usage_error(DIFF_USAGE, "invalid --format '%s' (expected unicode, ascii or latex%s)", format_name,
                                  OPTION("steps") ? " or markdown" : "");
    if (OPTION("steps") && OPTION("at")) return nb_cli_usage_error(DIFF_USAGE, "--steps shows a formula; it takes no --at");
    if (OPTION("lang") && !OPTION("steps")) return nb_cli_usage_error(DIFF_USAGE, "--lang is the language of --steps");

    session s = {NULL, NULL, NULL};
    nb_expr **wrt = NULL;
    size_t nwrt = 0;
    int status = session_load(&s, expr, OPTION("let"));
    if (status == 0) status = nb_cli_wrt_definitions(s.ctx, s.src, &s.f, OPTION("wrt"));
    if (status == 0) status = nb_cli_wrt(s.ctx, s.src, OPTION("let"), OPTION("wrt"), &wrt, &nwrt);
    nb_expr *derivative = NULL;
    if (status == 0 && OPTION("steps")) {
        status = nb_cli_print_derivation(s.ctx, s.f, nwrt, wrt, layout, format_name ? format_name : "unicode",
                                         OPTION("lang") ? OPTION("lang") : "en");
        free(wrt);
        session_free(&s);
        return status;
    }
    if (status == 0 && listed_separately(nwrt, wrt)) {
        status = print_each_derivative(&s, nwrt, wrt, layout, format, OPTION("at"));
        free(wrt);
        session_free(&s);
        return status;
    }
    if (status == 0 && !(derivative = nb_derivative(s.ctx, s.f, nwrt, wrt, layout)))
        status = nb_cli_error(NULL, -1, "%s", nb_error(s.ctx));
    if (status == 0 && OPTION("at")) {
        status = nb_cli_bind_values(s.ctx, OPTION("at"));
        if (status == 0) status = print_value(s.ctx, derivative);
    } else if (status == 0) {
        char *text = nb_derivative_to_string(s.ctx, derivative, format);
        if (!text) status = nb_cli_error(NULL, -1, "out of memory");
        else printf("%s\n", text);
        free(text);
    }
    free(wrt);
    session_free(&s);
    return status;
}

int nb_cmd_eval(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL}, {"let", true, NULL}, {"at", true, NULL}};
    const char *expr;
    size_t npos;
    if (PARSE_OPTIONS(EVAL_USAGE)) return 2;
    if (OPTION("help")) return fputs(eval_help, stdout), 0;
    if (npos == 0) return nb_cli_usage_error(EVAL_USAGE, "missing EXPR");
    session s = {NULL, NULL, NULL};
    int status = session_load(&s, expr, OPTION("let"));
    if (status == 0 && OPTION("at")) status = nb_cli_bind_values(s.ctx, OPTION("at"));
    if (status == 0) status = print_value(s.ctx, s.f);
    session_free(&s);
    return status;
}

int nb_cmd_check(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL}, {"let", true, NULL},  {"at", true, NULL},
                            {"wrt", true, NULL},   {"seed", true, NULL}, {"tol", true, NULL}};
    const char *expr;
    size_t npos;
    if (PARSE_OPTIONS(CHECK_USAGE)) return 2;
    if (OPTION("help")) return fputs(check_help, stdout), 0;
    if (npos == 0) return nb_cli_usage_error(CHECK_USAGE, "missing EXPR");
    if (!OPTION("wrt")) return nb_cli_usage_error(CHECK_USAGE, "missing --wrt");
    const char *seed_text = OPTION("seed"), *tol_text = OPTION("tol");
    uint64_t rng = 1;
    double tol = 1e-6;
    if (seed_text && nb_cli_parse_u64("seed", seed_text, &rng)) return 2;
    if (tol_text && nb_cli_parse_double("tol", tol_text, &tol)) return 2;
    if (tol < 0) return nb_cli_error(NULL, -1, "invalid --tol value '%s' (expected a number >= 0)", tol_text);

    session s = {NULL, NULL, NULL};
    nb_expr **wrt = NULL;
    size_t nwrt = 0;
    int status = session_load(&s, expr, OPTION("let"));
    if (status == 0) status = nb_cli_wrt(s.ctx, s.src, OPTION("let"), OPTION("wrt"), &wrt, &nwrt);
    if (status == 0 && OPTION("at")) status = nb_cli_bind_values(s.ctx, OPTION("at"));
    /* Random values for the rest: the function's variables, then any
     * variable differentiated against that the function does not use. */
    if (status == 0) status = nb_cli_randomize(s.ctx, s.f, &rng);
    for (size_t j = 0; j < nwrt && status == 0; j++) status = nb_cli_randomize(s.ctx, wrt[j], &rng);
    double max_rel_err = 0;
    if (status == 0 && nb_check(s.ctx, s.f, nwrt, wrt, &max_rel_err) != 0)
        status = nb_cli_error(NULL, -1, "%s", nb_error(s.ctx));
    if (status == 0) {
        printf("max relative error: %.3g\n", max_rel_err);
        status = max_rel_err <= tol ? 0 : 1;
    }
    free(wrt);
    session_free(&s);
    return status;
}

static const char main_usage[] = "nabla diff|eval|check|hessian|time|fit|train|evaluate|predict [options]  (nabla --help)";

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {{"diff", nb_cmd_diff}, {"eval", nb_cmd_eval}, {"check", nb_cmd_check}, {"time", nb_cmd_time},
                    {"hessian", nb_cmd_hessian}, {"fit", nb_cmd_fit}, {"train", nb_cmd_train},
                    {"evaluate", nb_cmd_evaluate}, {"predict", nb_cmd_predict}};
    int status = -1;
    if (argc < 2) return nb_cli_usage_error(main_usage, "missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) status = fputs(main_help, stdout) < 0;
    else if (strcmp(argv[1], "--version") == 0) status = puts("nabla " NABLA_VERSION) < 0;
    for (size_t i = 0; status < 0 && i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) status = commands[i].run(argc - 1, argv + 1);
    if (status < 0) return nb_cli_usage_error(main_usage, "unknown command '%s'", argv[1]);
    /* Output that did not reach its destination (a full disk, a closed pipe) is an error. */
    bool write_failed = ferror(stdout) != 0;
    write_failed |= fclose(stdout) != 0;
    if (write_failed) return nb_cli_error(NULL, -1, "writing the output failed: %s", strerror(errno));
    return status;
}
