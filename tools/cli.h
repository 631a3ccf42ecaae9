/* Shared helpers of the `nabla` command (tools/nabla.c) and its sub-commands
 * (tools/time_cmd.c).
 *
 * Conventions
 *  - A sub-command is `int nb_cmd_NAME(int argc, char **argv)`: argv[0] is the
 *    command name ("diff", "time", ...), argv[1..argc-1] its arguments.  It
 *    returns the exit status: 0 success, 1 "ran, but the answer is no" (a
 *    check over tolerance), 2 error (bad usage or bad input).
 *  - An error is reported once, on stderr, with nb_cli_error:
 *        nabla: error: MESSAGE
 *          the offending input line
 *             ^
 *    (the last two lines only when the position is known).  Nothing goes to
 *    stdout on error: compute everything first, print at the end.
 *  - Input positions are byte offsets into the whole input string, as
 *    nb_error_column() returns them for nb_parse and nb_declare.
 *
 * Helpers
 *  nb_cli_error          the error report above; returns 2
 *  nb_cli_usage_error    "nabla: error: MESSAGE" and the usage line; returns 2
 *  nb_cli_parse_options  --opt VALUE / --opt=VALUE, before or after the
 *                        positional arguments; "--" ends the options
 *  nb_cli_read_expr      the EXPR argument; "-" reads standard input
 *  nb_cli_declare        nb_declare(--let DECLS), reporting errors
 *  nb_cli_parse          nb_parse(EXPR), reporting errors
 *  nb_cli_wrt            --wrt 'x, y' -> the variables
 *  nb_cli_bind_values    --at 'x=1; w=[1,2]; X=[[1,2],[3,4]]' -> nb_set_value
 *  nb_cli_bind_sizes     --size 'N=10000, n=100' -> nb_bind_dim
 *  nb_cli_randomize      random values for the unbound variables of an
 *                        expression (nb_randomize, entries in [-2, 2])
 *  nb_cli_print_matrix   one matrix row per line, entries "%.17g", one space
 *  nb_cli_parse_u64, nb_cli_parse_double  numeric option values
 *
 * A command reads (nb_cmd_check in nabla.c is the model):
 *     nb_cli_option opts[] = {{"help", false, NULL}, {"let", true, NULL}, {"wrt", true, NULL}};
 *     if (nb_cli_parse_options(argc, argv, opts, 3, &expr, 1, &npos, USAGE)) return 2;
 *     ctx = nb_ctx_new();
 *     src = nb_cli_read_expr(expr);              // then, stopping at the first error:
 *     nb_cli_declare(ctx, let);  f = nb_cli_parse(ctx, src);
 *     nb_cli_wrt(ctx, src, let, wrt_list, &wrt, &nwrt);
 *     nb_cli_bind_sizes(ctx, sizes);  nb_cli_randomize(ctx, f, &rng);
 *     ... compute, then print; free(wrt); free(src); nb_ctx_free(ctx); */
#ifndef NABLA_CLI_H
#define NABLA_CLI_H

#include "nabla.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* ---- sub-commands ---- */
int nb_cmd_diff(int argc, char **argv);
int nb_cmd_eval(int argc, char **argv);
int nb_cmd_check(int argc, char **argv);
int nb_cmd_time(int argc, char **argv); /* tools/time_cmd.c */
int nb_cmd_hessian(int argc, char **argv); /* tools/hessian_cmd.c */
int nb_cmd_fit(int argc, char **argv);      /* tools/fit_cmd.c */
int nb_cmd_train(int argc, char **argv);    /* tools/train_cmd.c */
int nb_cmd_evaluate(int argc, char **argv); /* tools/train_cmd.c */
int nb_cmd_predict(int argc, char **argv);  /* tools/train_cmd.c */

/* ---- derivations (tools/steps_cmd.c) ---- */
/* Re-reads src into *f with each definition that the --wrt list names made a
 * variable (so the derivative w.r.t. a definition u works).  0 or 2 (reported). */
int nb_cli_wrt_definitions(nb_ctx *ctx, const char *src, nb_expr **f, const char *list);
/* Prints nb_derivation (--steps).  0 or 2 (reported). */
int nb_cli_print_derivation(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout,
                            const char *format, const char *lang);

/* ---- errors ---- */
/* Prints "nabla: error: MESSAGE" and, when input is not NULL and offset >= 0,
 * the line of input containing byte `offset` and a caret under it.  Returns 2
 * (the exit status of an error) so that `return nb_cli_error(...)` reads well. */
int nb_cli_error(const char *input, int offset, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints "nabla: error: MESSAGE" and the usage line; returns 2. */
int nb_cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- arguments ---- */
typedef struct {
    const char *name;  /* without the dashes: "wrt" for --wrt */
    bool takes_value;  /* --name VALUE or --name=VALUE; otherwise a flag */
    const char *value; /* out: the value ("" for a flag given), NULL if absent */
} nb_cli_option;

/* Parses argv[1..argc-1] into opts and at most max_positional positional
 * arguments (count in *npositional).  An argument is an option when it starts
 * with "--" (and is not exactly "--"); "-" and "-x^2" are positional.  A
 * repeated option keeps the last value.  Returns 0, or 2 after reporting a
 * usage error (unknown option, missing value, too many arguments) with the
 * usage line. */
int nb_cli_parse_options(int argc, char **argv, nb_cli_option *opts, size_t nopts, const char **positional,
                         size_t max_positional, size_t *npositional, const char *usage);
/* The option called name in opts (which must contain it). */
const char *nb_cli_option_value(const nb_cli_option *opts, size_t nopts, const char *name);

/* Returns the expression text (malloc'd, free it): a copy of arg, or all of
 * standard input when arg is "-".  NULL after reporting an error (unreadable
 * input, a NUL byte in it). */
char *nb_cli_read_expr(const char *arg);

/* nb_declare / nb_parse, reporting errors with the input line and a caret.
 * Return 0 / the expression, or 2 / NULL after reporting. */
int nb_cli_declare(nb_ctx *ctx, const char *decls);
nb_expr *nb_cli_parse(nb_ctx *ctx, const char *src);

/* Resolves --wrt, a comma-separated list of variable names (spaces allowed),
 * after parsing src (the expression) with declarations let (may be NULL): a
 * name is a variable of the context, or else, when neither src nor let uses
 * it, a new scalar the expression does not depend on.  *vars is malloc'd
 * (free it).  Returns 0, or 2 after reporting an error. */
int nb_cli_wrt(nb_ctx *ctx, const char *src, const char *let, const char *list, nb_expr ***vars, size_t *nvars);

/* Binds values given as "x=1; y=-2.5e-3; w=[1,2,3]; X=[[1,2],[3,4]]"
 * (separated by ';' or newlines; a vector literal is a column, a matrix literal
 * lists rows) with nb_set_value, which also binds dimension symbols.  Returns
 * 0, or 2 after reporting an error. */
int nb_cli_bind_values(nb_ctx *ctx, const char *spec);

/* Binds dimension symbols given as "N=10000, n=100" (',' or ';' between them)
 * with nb_bind_dim.  Returns 0, or 2 after reporting an error. */
int nb_cli_bind_sizes(nb_ctx *ctx, const char *spec);

/* Binds every variable of e that has no value yet to values uniform in
 * [-2, 2] (unbound dimension symbols first get a size in 2..5).  *rng is the
 * generator state: set it to the --seed, then call this once per expression.
 * Returns 0, or 2 after reporting an error. */
int nb_cli_randomize(nb_ctx *ctx, const nb_expr *e, uint64_t *rng);

/* Writes m: one matrix row per line, entries "%.17g" separated by one space. */
void nb_cli_print_matrix(FILE *out, const nb_matrix *m);

/* Parse an option value: the whole of text must be a number.  Return 0, or 2
 * after reporting "invalid --NAME value 'text'". */
int nb_cli_parse_u64(const char *option, const char *text, uint64_t *out);
int nb_cli_parse_double(const char *option, const char *text, double *out);

#endif
