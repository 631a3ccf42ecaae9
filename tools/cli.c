/* Helpers shared by the nabla sub-commands: see cli.h. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ----------------------------------------------------------- */

/* The caret line shows at most this many characters of a long input line. */
#define CONTEXT_WIDTH 100

/* Length of the UTF-8 character at s (1 for a byte that starts none, which
 * is then shown as '?'), limited to the end of the line. */
static size_t char_length(const unsigned char *s, const unsigned char *end, bool *printable) {
    size_t n = 0;
    if (s[0] < 0x80) n = 1;
    else if (s[0] >= 0xC2 && s[0] <= 0xDF) n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) n = 4;
    bool valid = n > 0 && (size_t)(end - s) >= n;
    for (size_t i = 1; valid && i < n; i++) valid = (s[i] & 0xC0) == 0x80;
    *printable = valid && (n > 1 || (s[0] >= 0x20 && s[0] != 0x7F) || s[0] == '\t');
    return valid ? n : 1;
}

/* Writes input line [start, end) around byte `at`, indented, and a caret under
 * the character at `at`: columns count characters, not bytes. */
static void print_caret(const char *input, size_t start, size_t end, size_t at) {
    const unsigned char *line = (const unsigned char *)input + start, *stop = (const unsigned char *)input + end;
    size_t total = 0, caret = 0;
    bool printable;
    for (const unsigned char *s = line; s < stop; s += char_length(s, stop, &printable)) {
        if (s < (const unsigned char *)input + at) caret++;
        total++;
    }
    size_t from = 0, to = total;
    if (total > CONTEXT_WIDTH) {
        from = caret > CONTEXT_WIDTH / 2 ? caret - CONTEXT_WIDTH / 2 : 0;
        to = from + CONTEXT_WIDTH < total ? from + CONTEXT_WIDTH : total;
    }
    fputs(from > 0 ? "  ..." : "  ", stderr);
    size_t k = 0;
    for (const unsigned char *s = line; s < stop && k < to; k++) {
        size_t n = char_length(s, stop, &printable);
        if (k >= from) {
            if (printable) fwrite(s, 1, n, stderr);
            else fputc('?', stderr);
        }
        s += n;
    }
    fprintf(stderr, "%s\n  %s", to < total ? "..." : "", from > 0 ? "   " : "");
    /* Tabs in the line are echoed as tabs, so the caret lines up under them. */
    k = 0;
    for (const unsigned char *s = line; k < caret; k++) {
        if (k >= from) fputc(*s == '\t' ? '\t' : ' ', stderr);
        s += char_length(s, stop, &printable);
    }
    fputs("^\n", stderr);
}

int nb_cli_error(const char *input, int offset, const char *fmt, ...) {
    va_list ap;
    fputs("nabla: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (input && offset >= 0) {
        size_t at = (size_t)offset, len = strlen(input);
        if (at > len) at = len;
        size_t start = at, end = at;
        while (start > 0 && input[start - 1] != '\n') start--;
        while (end < len && input[end] != '\n') end++;
        if (end > start && input[end - 1] == '\r') end--;
        if (end > start) print_caret(input, start, end, at); /* an empty line has nothing to point at */
    }
    return 2;
}

int nb_cli_usage_error(const char *usage, const char *fmt, ...) {
    va_list ap;
    fputs("nabla: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return 2;
}

/* ---- arguments -------------------------------------------------------- */

int nb_cli_parse_options(int argc, char **argv, nb_cli_option *opts, size_t nopts, const char **positional,
                         size_t max_positional, size_t *npositional, const char *usage) {
    bool options_ended = false;
    *npositional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_ended || strncmp(arg, "--", 2) != 0) {
            if (*npositional == max_positional) return nb_cli_usage_error(usage, "unexpected argument '%s'", arg);
            positional[(*npositional)++] = arg;
            continue;
        }
        if (arg[2] == 0) {
            options_ended = true;
            continue;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        nb_cli_option *opt = NULL;
        for (size_t k = 0; k < nopts && !opt; k++)
            if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) opt = &opts[k];
        if (!opt) return nb_cli_usage_error(usage, "unknown option '--%.*s%s'", len > 40 ? 40 : (int)len, name, len > 40 ? "..." : "");
        if (!opt->takes_value) {
            if (eq) return nb_cli_usage_error(usage, "option '--%s' takes no value", opt->name);
            opt->value = "";
        } else if (eq) {
            opt->value = eq + 1;
        } else if (i + 1 < argc) {
            opt->value = argv[++i];
        } else {
            return nb_cli_usage_error(usage, "option '--%s' needs a value", opt->name);
        }
    }
    return 0;
}

const char *nb_cli_option_value(const nb_cli_option *opts, size_t nopts, const char *name) {
    for (size_t k = 0; k < nopts; k++)
        if (strcmp(opts[k].name, name) == 0) return opts[k].value;
    return NULL;
}

int nb_cli_parse_u64(const char *option, const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end || errno)
        return nb_cli_error(NULL, -1, "invalid --%s value '%s' (expected a non-negative integer)", option, text);
    *out = v;
    return 0;
}

int nb_cli_parse_double(const char *option, const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return nb_cli_error(NULL, -1, "invalid --%s value '%s' (expected a number)", option, text);
    *out = v;
    return 0;
}

/* ---- input ------------------------------------------------------------ */

static char *read_stdin(void) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            nb_cli_error(NULL, -1, "out of memory reading standard input");
            return NULL;
        }
        len += fread(buf + len, 1, cap - len - 1, stdin);
        if (len < cap - 1) break;
        cap *= 2;
        char *bigger = realloc(buf, cap);
        if (!bigger) free(buf);
        buf = bigger;
    }
    if (ferror(stdin)) {
        free(buf);
        nb_cli_error(NULL, -1, "cannot read standard input: %s", strerror(errno));
        return NULL;
    }
    buf[len] = 0;
    if (strlen(buf) != len) {
        nb_cli_error(buf, (int)strlen(buf), "the input contains a NUL byte");
        free(buf);
        return NULL;
    }
    return buf;
}

char *nb_cli_read_expr(const char *arg) {
    if (strcmp(arg, "-") == 0) return read_stdin();
    size_t size = strlen(arg) + 1;
    char *copy = malloc(size);
    if (!copy) nb_cli_error(NULL, -1, "out of memory");
    else memcpy(copy, arg, size);
    return copy;
}

int nb_cli_declare(nb_ctx *ctx, const char *decls) {
    if (nb_declare(ctx, decls) == 0) return 0;
    return nb_cli_error(decls, nb_error_column(ctx), "%s", nb_error(ctx));
}

nb_expr *nb_cli_parse(nb_ctx *ctx, const char *src) {
    nb_expr *e = nb_parse(ctx, src);
    if (!e) nb_cli_error(src, nb_error_column(ctx), "%s", nb_error(ctx));
    return e;
}

/* ---- small scanners for --wrt, --at and --size ------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static size_t skip_blanks(const char *s, size_t i) {
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') i++;
    return i;
}

/* A name at s[*i]: copied into a malloc'd string, *i moved past it; NULL
 * (reported) when there is none. */
static char *scan_name(const char *s, size_t *i) {
    size_t start = *i;
    if (!is_name_start(s[start])) {
        nb_cli_error(s, (int)start, "expected a variable name");
        return NULL;
    }
    size_t end = start;
    while (is_name_char(s[end])) end++;
    char *name = malloc(end - start + 1);
    if (!name) {
        nb_cli_error(NULL, -1, "out of memory");
        return NULL;
    }
    memcpy(name, s + start, end - start);
    name[end - start] = 0;
    *i = end;
    return name;
}

/* Whether `name` occurs as a name in text written in the expression or
 * declaration language (numbers and comments skipped as the parser does). */
static bool mentions_name(const char *text, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; text && text[i];) {
        if (text[i] == '#') {
            while (text[i] && text[i] != '\n') i++;
        } else if (is_digit(text[i])) { /* a number such as 1e5 hides no name "e5" */
            while (is_digit(text[i]) || text[i] == '.') i++;
            bool exponent = (text[i] == 'e' || text[i] == 'E') &&
                            (is_digit(text[i + 1]) || ((text[i + 1] == '+' || text[i + 1] == '-') && is_digit(text[i + 2])));
            if (exponent) {
                i += 2; /* 'e' and a digit or sign */
                while (is_digit(text[i])) i++;
            }
        } else if (is_name_start(text[i])) {
            size_t start = i;
            while (is_name_char(text[i])) i++;
            if (i - start == len && memcmp(text + start, name, len) == 0) return true;
        } else {
            i++;
        }
    }
    return false;
}

/* The variable called name, for --wrt: a variable of the context, or else a
 * new scalar that the expression does not depend on (∂99/∂x = 0).  A name the
 * expression or the declarations use for something else is an error. */
static nb_expr *wrt_variable(nb_ctx *ctx, const char *src, const char *let, const char *name, const char *list,
                             size_t at) {
    nb_expr *v = nb_lookup(ctx, name);
    if (v) return v;
    if (mentions_name(src, name)) nb_cli_error(list, (int)at, "'%s' is not a variable of the expression", name);
    else if (mentions_name(let, name)) nb_cli_error(list, (int)at, "'%s' is a dimension, not a variable", name);
    else if (!(v = nb_var(ctx, name, nb_scalar_type()))) nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    return v;
}

int nb_cli_wrt(nb_ctx *ctx, const char *src, const char *let, const char *list, nb_expr ***vars, size_t *nvars) {
    size_t count = 1;
    for (const char *c = list; *c; c++) count += *c == ',';
    nb_expr **out = malloc(count * sizeof *out);
    if (!out) return nb_cli_error(NULL, -1, "out of memory");
    size_t n = 0, i = 0;
    for (;;) {
        i = skip_blanks(list, i);
        size_t start = i;
        char *name = scan_name(list, &i);
        if (!name) break;
        out[n] = wrt_variable(ctx, src, let, name, list, start);
        free(name);
        if (!out[n++]) break;
        i = skip_blanks(list, i);
        if (list[i] == 0) {
            *vars = out;
            *nvars = n;
            return 0;
        }
        if (list[i] != ',') {
            nb_cli_error(list, (int)i, "expected ',' between variable names");
            break;
        }
        i++;
    }
    free(out);
    return 2;
}

/* A number at s[*i]: [+-] digits [. digits] [e [+-] digits] (or .digits). */
static int scan_number(const char *s, size_t *i, double *out) {
    size_t start = *i, k = start;
    if (s[k] == '+' || s[k] == '-') k++;
    size_t digits = strspn(s + k, "0123456789");
    k += digits;
    if (s[k] == '.') {
        size_t fraction = strspn(s + k + 1, "0123456789");
        digits += fraction;
        k += 1 + fraction;
    }
    if (digits == 0) return nb_cli_error(s, (int)start, "expected a number");
    if (s[k] == 'e' || s[k] == 'E') {
        size_t e = k + 1 + (s[k + 1] == '+' || s[k + 1] == '-');
        size_t exponent = strspn(s + e, "0123456789");
        if (exponent == 0) return nb_cli_error(s, (int)k, "expected the digits of an exponent");
        k = e + exponent;
    }
    char *end;
    errno = 0;
    double v = strtod(s + start, &end);
    if (end != s + k) return nb_cli_error(s, (int)start, "expected a number"); /* "0x1", say */
    if (errno == ERANGE && fabs(v) > 1) return nb_cli_error(s, (int)start, "number out of range");
    *out = v;
    *i = k;
    return 0;
}

typedef struct {
    double *data;
    size_t count, cap;
} number_list;

static int push_number(number_list *l, double v) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        double *data = realloc(l->data, cap * sizeof *data);
        if (!data) return nb_cli_error(NULL, -1, "out of memory");
        l->data = data;
        l->cap = cap;
    }
    l->data[l->count++] = v;
    return 0;
}

/* '[' number, ... ']' at s[*i], appended to l; the count in *n. */
static int scan_row(const char *s, size_t *i, number_list *l, size_t *n) {
    size_t k = *i + 1; /* past '[' */
    *n = 0;
    for (;;) {
        double v;
        k = skip_blanks(s, k);
        if (scan_number(s, &k, &v) || push_number(l, v)) return 2;
        ++*n;
        k = skip_blanks(s, k);
        if (s[k] == ']') break;
        if (s[k] != ',') return nb_cli_error(s, (int)k, "expected ',' or ']'");
        k++;
    }
    *i = k + 1;
    return 0;
}

/* A value at s[*i]: a number (1x1), [a, b, ...] (a column) or
 * [[a, b], [c, d]] (rows). */
static int scan_value(const char *s, size_t *i, number_list *l, int64_t *rows, int64_t *cols) {
    if (s[*i] != '[') {
        double v;
        *rows = *cols = 1;
        return scan_number(s, i, &v) || push_number(l, v) ? 2 : 0;
    }
    size_t k = skip_blanks(s, *i + 1), n;
    if (s[k] != '[') {
        if (scan_row(s, i, l, &n)) return 2;
        *rows = (int64_t)n;
        *cols = 1;
        return 0;
    }
    *rows = 0;
    for (;;) {
        size_t row_start = k;
        if (scan_row(s, &k, l, &n)) return 2;
        if (*rows > 0 && (int64_t)n != *cols)
            return nb_cli_error(s, (int)row_start, "this row has %zu entr%s, the first one has %lld", n, n == 1 ? "y" : "ies",
                                (long long)*cols);
        *cols = (int64_t)n;
        ++*rows;
        k = skip_blanks(s, k);
        if (s[k] == ']') break;
        if (s[k] != ',') return nb_cli_error(s, (int)k, "expected ',' or ']'");
        k = skip_blanks(s, k + 1);
        if (s[k] != '[') return nb_cli_error(s, (int)k, "expected '[' starting a matrix row");
    }
    *i = k + 1;
    return 0;
}

/* Calls bind for each "name = value" of a list separated by the characters in
 * `separators`: the name starts at spec[name_start], the value at spec[*i],
 * and bind moves *i past the value. */
typedef int (*binder)(nb_ctx *ctx, const char *spec, const char *name, size_t name_start, size_t *i);

static int bind_each(nb_ctx *ctx, const char *spec, const char *separators, binder bind) {
    size_t i = 0;
    for (;;) {
        while (spec[i] && (strchr(" \t\r\n", spec[i]) || strchr(separators, spec[i]))) i++;
        if (!spec[i]) return 0;
        size_t name_start = i;
        char *name = scan_name(spec, &i);
        if (!name) return 2;
        i = skip_blanks(spec, i);
        int status = 0;
        if (spec[i] != '=') status = nb_cli_error(spec, (int)i, "expected '=' after '%s'", name);
        else i = skip_blanks(spec, i + 1);
        if (status == 0) status = bind(ctx, spec, name, name_start, &i);
        free(name);
        if (status) return status;
        while (spec[i] == ' ' || spec[i] == '\t' || spec[i] == '\r') i++;
        if (spec[i] && !strchr(separators, spec[i]))
            return nb_cli_error(spec, (int)i, "expected '%c' between values", separators[0]);
    }
}

static int bind_value(nb_ctx *ctx, const char *spec, const char *name, size_t name_start, size_t *i) {
    if (!nb_lookup(ctx, name)) return nb_cli_error(spec, (int)name_start, "'%s' is not a variable of the expression", name);
    size_t start = *i;
    number_list values = {NULL, 0, 0};
    int64_t rows, cols;
    int status = scan_value(spec, i, &values, &rows, &cols);
    if (status == 0 && nb_set_value(ctx, name, rows, cols, values.data) != 0)
        status = nb_cli_error(spec, (int)start, "%s", nb_error(ctx));
    free(values.data);
    return status;
}

static int bind_size(nb_ctx *ctx, const char *spec, const char *name, size_t name_start, size_t *i) {
    (void)name_start;
    size_t start = *i;
    uint64_t size = 0;
    while (spec[*i] >= '0' && spec[*i] <= '9' && size <= INT32_MAX) size = size * 10 + (uint64_t)(spec[(*i)++] - '0');
    if (*i == start || size == 0 || size > INT32_MAX || (spec[*i] >= '0' && spec[*i] <= '9'))
        return nb_cli_error(spec, (int)start, "expected a size between 1 and %d", INT32_MAX);
    nb_dim d = nb_dim_symbol(ctx, name);
    if (d == 0) return nb_cli_error(NULL, -1, "out of memory");
    if (nb_bind_dim(ctx, d, (int64_t)size) != 0) return nb_cli_error(spec, (int)start, "%s", nb_error(ctx));
    return 0;
}

int nb_cli_bind_values(nb_ctx *ctx, const char *spec) { return bind_each(ctx, spec, ";\n", bind_value); }
int nb_cli_bind_sizes(nb_ctx *ctx, const char *spec) { return bind_each(ctx, spec, ",;\n", bind_size); }

int nb_cli_randomize(nb_ctx *ctx, const nb_expr *e, uint64_t *rng) {
    if (nb_randomize(ctx, e, rng, -2.0, 2.0) != 0) return nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    return 0;
}

/* ---- output ----------------------------------------------------------- */

void nb_cli_print_matrix(FILE *out, const nb_matrix *m) {
    for (int64_t i = 0; i < m->rows; i++)
        for (int64_t j = 0; j < m->cols; j++) {
            double v = m->data[i * m->cols + j];
            fprintf(out, "%.17g%c", v == 0 ? 0.0 : v, j + 1 < m->cols ? ' ' : '\n'); /* no "-0" */
        }
}
