/* Derivations: ∂f/∂v shown the way Parr & Howard teach it (nb_derivation).
 *
 * A derivation is data read off three things nabla already has:
 *   1. f's DAG: every node on a path from v to f that is a real operation gets
 *      an intermediate variable (the user's own name where a definition of the
 *      last nb_parse gives one, else u₁, u₂, … in topological order: v₁, … when
 *      the user has a u); negation,
 *      scaling by a constant scalar and transposition are folded into their
 *      user.  Each intermediate's definition is its node with the operands
 *      replaced by their variables, and its partial derivatives are
 *      nb_derivative of that small expression.
 *   2. the chain rule, written as the reverse accumulation diff.c performs:
 *      ∂f/∂a = Σ over the users y of a of ∂f/∂y · ∂y/∂a (one term per path:
 *      the total-derivative rule), the factors in the layout's order.
 *   3. nb_derivative_raw (the chain-rule product as the rules build it) and
 *      the simplifier's log: each node where named rewrites fired becomes one
 *      step "raw form = simplified form (by rule)", and the last line is
 *      nb_simplify's result, which is nb_derivative's (checked).
 * The words come from a table per language (steps_lang_*.c). */
#include "nb_internal.h"
#include "steps_lang.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends the strings up to a NULL (nb_sb_printf truncates long ones). */
static void cat(nb_strbuf *sb, ...) {
    va_list ap;
    va_start(ap, sb);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) nb_sb_puts(sb, s);
    va_end(ap);
}

/* A language table's (printf) string with its %s replaced by args in order. */
static void put_words(nb_strbuf *sb, const char *fmt, const char *const *args, size_t nargs) {
    size_t used = 0;
    for (const char *s = fmt; *s;) {
        const char *mark = strstr(s, "%s");
        size_t len = mark ? (size_t)(mark - s) : strlen(s);
        char *piece = malloc(len + 1);
        if (!piece) {
            sb->failed = true;
            return;
        }
        memcpy(piece, s, len);
        piece[len] = 0;
        nb_sb_puts(sb, piece);
        free(piece);
        if (!mark) break;
        nb_sb_puts(sb, used < nargs ? args[used] : "");
        used++;
        s = mark + 2;
    }
}

/* ---- definitions of the last nb_parse ----------------------------------- */

void nb_forget_definitions(nb_ctx *ctx) {
    ctx->definitions = NULL;
    ctx->definitions_end = &ctx->definitions;
}

int nb_record_definition(nb_ctx *ctx, const char *name, size_t len, nb_node *value) {
    nb_definition *d = nb_arena_alloc(&ctx->arena, sizeof *d);
    char *copy = nb_arena_alloc(&ctx->arena, len + 1);
    if (!d || !copy) return nb_set_error(ctx, "out of memory");
    memcpy(copy, name, len);
    copy[len] = 0;
    *d = (nb_definition){copy, value, NULL};
    if (!ctx->definitions_end) ctx->definitions_end = &ctx->definitions;
    *ctx->definitions_end = d;
    ctx->definitions_end = &d->next;
    return 0;
}

size_t nb_definitions(const nb_ctx *ctx, const char **names, nb_expr **values, size_t cap) {
    size_t n = 0;
    for (const nb_definition *d = ctx ? ctx->definitions : NULL; d; d = d->next, n++) {
        if (n >= cap) continue;
        if (names) names[n] = d->name;
        if (values) values[n] = d->value;
    }
    return n;
}

/* The user's name for node e, or NULL: the last definition whose value it is. */
static const char *definition_name(const nb_ctx *ctx, const nb_node *e) {
    const char *name = NULL;
    for (const nb_definition *d = ctx->definitions; d; d = d->next)
        if (d->value == e) name = d->name;
    return name;
}

/* ---- output formats ----------------------------------------------------- */

typedef enum { OUT_UNICODE, OUT_ASCII, OUT_LATEX, OUT_MARKDOWN } out_format;
static const char *const format_names[] = {"unicode", "ascii", "latex", "markdown"};

/* One token of a rule's name (ops.c writes them in Unicode) per format:
 * unicode, ascii, latex. */
static const struct {
    const char *from, *ascii, *latex;
} rule_tokens[] = {{"ᵀ", "'", "^{\\top}"}, {"·", "*", " \\cdot "}, {"⊙", ".*", " \\odot "},
                   {"⊘", "./", " \\oslash "}, {"−", "-", "-"},       {"1[", "1[", "\\mathbf{1}["}};

/* A rule's name written in the format: Unicode as is; ASCII and LaTeX token
 * by token, a function name f( as \operatorname{f}( and ^(…) as ^{(…)} in
 * LaTeX; a character with no spelling becomes '?'. */
static void put_rule(nb_strbuf *sb, out_format fmt, const nb_steps_lang *lang, const char *rule) {
    if (strcmp(rule, NB_RULE_CONSTANT_ARITHMETIC) == 0) { /* named in words, in the reader's language */
        bool math = fmt == OUT_LATEX || fmt == OUT_MARKDOWN;
        cat(sb, math ? "\\text{" : "", lang->constant_arithmetic, math ? "}" : "", NULL);
        return;
    }
    if (fmt == OUT_UNICODE) {
        nb_sb_puts(sb, rule);
        return;
    }
    bool latex = fmt != OUT_ASCII;
    int open_superscript = 0, depth = 0;
    for (const char *s = rule; *s;) {
        bool matched = false;
        for (size_t k = 0; k < sizeof rule_tokens / sizeof rule_tokens[0] && !matched; k++) {
            size_t len = strlen(rule_tokens[k].from);
            if (strncmp(s, rule_tokens[k].from, len) == 0 && (latex || strcmp(rule_tokens[k].from, "1[") != 0)) {
                nb_sb_puts(sb, latex ? rule_tokens[k].latex : rule_tokens[k].ascii);
                s += len;
                matched = true;
            }
        }
        if (matched) continue;
        size_t word = 0;
        while ((s[word] >= 'a' && s[word] <= 'z')) word++;
        if (latex && word >= 2 && s[word] == '(') {
            nb_sb_printf(sb, "\\operatorname{%.*s}", (int)word, s);
            s += word;
            continue;
        }
        if (latex && s[0] == '^' && s[1] == '(') {
            nb_sb_puts(sb, "^{");
            open_superscript = depth + 1; /* closed with the parenthesis that follows */
            s++;
            continue;
        }
        if (*s == '(') depth++;
        if (*s == ')') {
            nb_sb_puts(sb, ")");
            if (depth-- == open_superscript && open_superscript) {
                nb_sb_puts(sb, "}");
                open_superscript = 0;
            }
            s++;
            continue;
        }
        if ((unsigned char)*s >= 0x80) { /* a character with no spelling here */
            nb_sb_puts(sb, "?");
            s++;
            while (((unsigned char)*s & 0xC0) == 0x80) s++;
            continue;
        }
        nb_sb_printf(sb, "%c", *s++);
    }
}

/* ---- the derivation's state ---------------------------------------------- */

typedef struct user {
    size_t y; /* position of a node that uses this one directly (through folded nodes) */
    struct user *next;
} user;

typedef struct {
    const char *rule;
    const nb_node *at;
    nb_node **args; /* the operands as the simplifier rebuilt them */
} log_entry;

typedef struct {
    nb_ctx *ctx;
    const nb_steps_lang *lang;
    out_format fmt;
    nb_format pfmt; /* the printers' format */
    nb_layout layout;
    nb_strbuf out;
    nb_arena tmp;
    /* one variable's derivation: arrays by position in nodes */
    nb_node *f, *v;
    nb_node **nodes;
    size_t n;
    bool *dep;        /* depends on v */
    nb_node **symbol; /* the variable standing for node i (v for v), or NULL: folded or constant */
    nb_node **ref;    /* node i as its users' definitions write it */
    nb_node **def;    /* node i with its operands written as refs */
    char **label;     /* printed name of the symbol, or of f */
    size_t **inputs;  /* inputs[i]: positions of the symbols node i reads, count in ninputs */
    size_t *ninputs;
    user **users;
    bool scalar_chain; /* scalars and one path: d/dx, the single-variable rule */
    log_entry *log;
    size_t nlog, cap_log;
    bool log_failed;
    const char *vlabel; /* the variable's printed name */
    const char *prefix; /* of the introduced names: u (u₁, u₂, …), or v, t, s when the user has a u */
    bool chain_written; /* a chain-rule product was written out */
    bool in_list; /* markdown: the last line was a list item */
    bool several; /* a list of variables: a section each, partial derivatives */
    bool total;   /* f and v scalars: the total derivative is written df/dx */
} derivation;

/* The printers' text of e.  A raw (Aᵀ)ᵀ prints in LaTeX as A^{\top}^{\top},
 * a double superscript that LaTeX refuses: written A^{\top\top} here. */
static char *print(derivation *d, const nb_node *e) {
    static const char twice[] = "^{\\top}^{\\top}", once[] = "^{\\top\\top}";
    char *s = nb_to_string(d->ctx, e, d->pfmt);
    if (!s) nb_set_error(d->ctx, "out of memory");
    for (char *at = s ? strstr(s, twice) : NULL; at; at = strstr(at, twice)) {
        memmove(at + strlen(once), at + strlen(twice), strlen(at + strlen(twice)) + 1);
        memcpy(at, once, strlen(once));
    }
    return s;
}

static char *dup_string(derivation *d, const char *s) {
    size_t len = strlen(s) + 1;
    char *copy = nb_arena_alloc(&d->tmp, len);
    if (copy) memcpy(copy, s, len);
    return copy;
}

/* ---- lines ----------------------------------------------------------------
 * A derivation is a sequence of narrative lines and equations "lhs = rhs" with
 * an optional note (words, and mathematics such as a shape). */

static void put_text(derivation *d, const char *text) {
    bool was_list = d->in_list;
    d->in_list = false;
    switch (d->fmt) {
    case OUT_UNICODE:
    case OUT_ASCII: cat(&d->out, text, "\n", NULL); break;
    case OUT_LATEX: cat(&d->out, "  &\\text{", text, "}\\\\\n", NULL); break;
    case OUT_MARKDOWN: cat(&d->out, was_list ? "\n" : "", text, "\n\n", NULL); break;
    }
}

/* lhs may be "" (a continuation "= rhs"); note_math is mathematics of the
 * printers' format, note_words narrative. */
static void put_equation(derivation *d, const char *lhs, const char *rhs, const char *note_words, const char *note_math,
                         bool shape_first) {
    bool words = note_words && *note_words, math = note_math && *note_math;
    const char *w = words ? note_words : "", *m = math ? note_math : "";
    const char *gap = words && math ? (shape_first ? d->lang->separator : " ") : "";
    bool latex = d->fmt == OUT_LATEX, md = d->fmt == OUT_MARKDOWN;
    const char *w_open = latex && words ? "\\text{" : "", *w_close = latex && words ? "}" : "";
    const char *m_open = md && math ? "$" : "", *m_close = md && math ? "$" : "";
    if (latex && words && math && !shape_first) gap = "\\ ";
    switch (d->fmt) {
    case OUT_UNICODE:
    case OUT_ASCII: cat(&d->out, "  ", lhs, *lhs ? " " : "", "= ", rhs, NULL); break;
    case OUT_LATEX: cat(&d->out, "  ", lhs, " &= ", rhs, NULL); break;
    case OUT_MARKDOWN: cat(&d->out, "- $", lhs, " = ", rhs, "$", NULL), d->in_list = true; break;
    }
    if (words || math) {
        cat(&d->out, latex ? " && " : md ? " " : "    ", latex ? "" : d->lang->note_open, NULL);
        if (shape_first && latex) cat(&d->out, m, "\\text{", gap, w, "}", NULL);
        else if (shape_first) cat(&d->out, m_open, m, m_close, gap, w_open, w, w_close, NULL);
        else cat(&d->out, w_open, w, w_close, gap, m_open, m, m_close, NULL);
        if (!latex) nb_sb_puts(&d->out, d->lang->note_close);
    }
    if (latex) nb_sb_puts(&d->out, "\\\\");
    nb_sb_puts(&d->out, "\n");
}

/* The name of a derivative: ∂y/∂x, or dy/dx for a total or single-variable
 * derivative (\frac{\partial y}{\partial x} in LaTeX and markdown). */
static void put_partial(nb_strbuf *sb, const derivation *d, const char *y, const char *x, bool total) {
    const char *letter = d->scalar_chain || total ? "d" : d->fmt == OUT_UNICODE ? "∂" : d->fmt == OUT_ASCII ? "d" : "\\partial ";
    if (d->fmt == OUT_LATEX || d->fmt == OUT_MARKDOWN) cat(sb, "\\frac{", letter, y, "}{", letter, x, "}", NULL);
    else cat(sb, letter, y, "/", letter, x, NULL);
}

static const char *product_sign(const derivation *d) {
    return d->fmt == OUT_ASCII ? " * " : d->fmt == OUT_UNICODE ? " · " : " \\cdot ";
}

static char *take(derivation *d, nb_strbuf *sb) {
    if (sb->failed || !sb->buf) {
        free(sb->buf);
        nb_set_error(d->ctx, "out of memory");
        return NULL;
    }
    return sb->buf;
}

/* "rows×cols" in the format, nothing for a scalar. */
static void put_shape(nb_strbuf *sb, const derivation *d, nb_type t) {
    char rb[24], cb[24];
    if (t.kind == NB_SCALAR) return;
    const char *r = nb_dim_name(d->ctx, t.rows, rb, sizeof rb), *c = nb_dim_name(d->ctx, t.cols, cb, sizeof cb);
    const char *times = d->fmt == OUT_UNICODE ? "×" : d->fmt == OUT_ASCII ? " x " : " \\times ";
    cat(sb, r, times, c, NULL);
}

/* A type in the language's words: scalar, vector(n), … */
static void put_type(nb_strbuf *sb, const derivation *d, nb_type t) {
    char rb[24], cb[24];
    const char *r = nb_dim_name(d->ctx, t.rows, rb, sizeof rb), *c = nb_dim_name(d->ctx, t.cols, cb, sizeof cb);
    const char *rows[] = {r, c}, *cols[] = {c};
    switch (t.kind) {
    case NB_SCALAR: nb_sb_puts(sb, d->lang->type_scalar); break;
    case NB_VECTOR: put_words(sb, d->lang->type_vector, rows, 1); break;
    case NB_ROW: put_words(sb, d->lang->type_row, cols, 1); break;
    case NB_MATRIX: put_words(sb, d->lang->type_matrix, rows, 2); break;
    }
    nb_sb_puts(sb, "");
}

/* The structure of a partial derivative J, in words. */
static const char *structure(const derivation *d, const nb_node *J, nb_type wrt) {
    const nb_steps_lang *L = d->lang;
    if (nb_is_zero(J)) return L->zero;
    if (J->op == NB_OP_IDENTITY) return L->identity;
    if (J->op == NB_OP_DIAG) return L->diagonal;
    if (J->op == NB_OP_MUL && J->nargs == 2 && J->args[1]->op == NB_OP_IDENTITY) return L->scaled_identity;
    if (J->op == NB_OP_CONST && J->type.kind == NB_ROW) return L->ones_row;
    if (J->op == NB_OP_CONST && J->type.kind == NB_VECTOR) return L->ones_column;
    switch (J->type.kind) {
    case NB_SCALAR: return L->scalar;
    case NB_ROW: return L->row;
    case NB_VECTOR: return L->column;
    case NB_MATRIX: return wrt.kind == NB_MATRIX ? L->matrix_gradient : L->matrix;
    }
    return "";
}

/* ---- intermediate variables --------------------------------------------- */

/* Folded into its user rather than named: −u, c·u (c a scalar not depending
 * on v) and uᵀ. */
static bool folded(const derivation *d, size_t i) {
    const nb_node *y = d->nodes[i];
    if (y->op == NB_OP_TRANSPOSE) return true;
    if (y->op != NB_OP_MUL) return false;
    size_t moving = 0;
    for (size_t k = 0; k < y->nargs; k++) {
        const nb_node *a = y->args[k];
        if (d->dep[nb_topo_index(d->nodes, d->n, a)]) moving++;
        else if (a->type.kind != NB_SCALAR) return false;
    }
    return moving == 1;
}

/* A fresh variable of type t for the k-th introduced intermediate: u₁ (u1,
 * u_{1}); an index whose name is taken by another kind of variable, or by a
 * variable of f, is skipped. */
static nb_node *fresh_symbol(derivation *d, unsigned *k, nb_type t) {
    static const char *const subscript[] = {"₀", "₁", "₂", "₃", "₄", "₅", "₆", "₇", "₈", "₉"};
    for (;; ++*k) {
        char name[64], digits[16];
        snprintf(digits, sizeof digits, "%u", *k);
        if (d->fmt == OUT_UNICODE) {
            strcpy(name, d->prefix);
            for (const char *c = digits; *c; c++) strcat(name, subscript[*c - '0']);
        } else if (d->fmt == OUT_ASCII) {
            snprintf(name, sizeof name, "%s%s", d->prefix, digits);
        } else {
            snprintf(name, sizeof name, "%s_{%s}", d->prefix, digits);
        }
        nb_node *old = nb_lookup(d->ctx, name);
        bool taken = old && (!nb_type_eq(old->type, t) || nb_topo_index(d->nodes, d->n, old) < d->n);
        if (!taken) {
            ++*k;
            return old ? old : nb_var(d->ctx, name, t);
        }
    }
}

static nb_node *raw_rebuild(nb_ctx *ctx, const nb_node *y, nb_node *const *args) {
    bool raw = ctx->raw;
    ctx->raw = true;
    nb_node *r = nb_rebuild(ctx, y, args);
    ctx->raw = raw;
    return r;
}

/* Names the nodes on the paths from v to f, writes each one's definition and
 * finds its inputs.  0 or -1. */
static int introduce(derivation *d) {
    nb_ctx *ctx = d->ctx;
    size_t n = d->n;
    unsigned counter = 1;
    static const char *const prefixes[] = {"u", "v", "t", "s"};
    d->prefix = "u";
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        d->prefix = prefixes[k];
        bool taken = false;
        for (const nb_definition *def = ctx->definitions; def && !taken; def = def->next) taken = strcmp(def->name, d->prefix) == 0;
        nb_node *var = nb_lookup(ctx, d->prefix);
        if (!taken && !(var && nb_topo_index(d->nodes, n, var) < n)) break;
    }
    d->dep = nb_arena_alloc(&d->tmp, n * sizeof *d->dep);
    d->symbol = nb_arena_alloc(&d->tmp, n * sizeof *d->symbol);
    d->ref = nb_arena_alloc(&d->tmp, n * sizeof *d->ref);
    d->def = nb_arena_alloc(&d->tmp, n * sizeof *d->def);
    d->label = nb_arena_alloc(&d->tmp, n * sizeof *d->label);
    d->inputs = nb_arena_alloc(&d->tmp, n * sizeof *d->inputs);
    d->ninputs = nb_arena_alloc(&d->tmp, n * sizeof *d->ninputs);
    d->users = nb_arena_alloc(&d->tmp, n * sizeof *d->users);
    size_t *stack = nb_arena_alloc(&d->tmp, (n + 1) * sizeof *stack);
    nb_node **args = NULL;
    if (!d->dep || !d->symbol || !d->ref || !d->def || !d->label || !d->inputs || !d->ninputs || !d->users || !stack)
        return nb_set_error(ctx, "out of memory");
    for (size_t i = 0; i < n; i++) {
        nb_node *y = d->nodes[i];
        d->dep[i] = y == d->v;
        for (size_t k = 0; k < y->nargs && !d->dep[i]; k++) d->dep[i] = d->dep[nb_topo_index(d->nodes, n, y->args[k])];
        d->symbol[i] = NULL;
        d->def[i] = d->ref[i] = y;
        d->label[i] = NULL;
        d->inputs[i] = NULL;
        d->ninputs[i] = 0;
        d->users[i] = NULL;
    }
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        nb_node *y = d->nodes[i];
        if (!d->dep[i]) continue;
        if (y == d->v) d->symbol[i] = y;
        else {
            if (!(args = realloc(args, (y->nargs + 1u) * sizeof *args))) goto out;
            for (size_t k = 0; k < y->nargs; k++) args[k] = d->ref[nb_topo_index(d->nodes, n, y->args[k])];
            if (!(d->def[i] = d->ref[i] = raw_rebuild(ctx, y, args))) goto out;
            const char *name = definition_name(ctx, y);
            if (i + 1 < n && (name || !folded(d, i)))
                d->symbol[i] = name ? nb_var(ctx, name, y->type) : fresh_symbol(d, &counter, y->type);
            if (i + 1 < n && (name || !folded(d, i)) && !d->symbol[i]) goto out;
        }
        if (d->symbol[i]) {
            d->ref[i] = d->symbol[i];
            if (!(d->label[i] = print(d, d->symbol[i]))) goto out;
            char *copy = dup_string(d, d->label[i]);
            free(d->label[i]);
            if (!(d->label[i] = copy)) goto out;
        }
    }
    /* f's label: the user's name for it, else f */
    const char *fname = definition_name(ctx, d->f);
    if (!(d->label[n - 1] = dup_string(d, fname ? fname : "f"))) goto out;
    /* inputs: the symbols a named node reads, through folded nodes */
    for (size_t i = 0; i < n; i++) {
        if (!d->dep[i] || d->nodes[i] == d->v || (!d->symbol[i] && i + 1 < n)) continue;
        size_t top = 0, count = 0;
        size_t *found = nb_arena_alloc(&d->tmp, n * sizeof *found);
        if (!found) goto out;
        stack[top++] = i;
        while (top) {
            const nb_node *y = d->nodes[stack[--top]];
            for (size_t k = 0; k < y->nargs; k++) {
                size_t a = nb_topo_index(d->nodes, n, y->args[k]);
                if (!d->dep[a]) continue;
                if (!d->symbol[a]) {
                    stack[top++] = a;
                    continue;
                }
                bool seen = false;
                for (size_t j = 0; j < count && !seen; j++) seen = found[j] == a;
                if (seen) continue;
                found[count++] = a;
                user *u = nb_arena_alloc(&d->tmp, sizeof *u);
                if (!u) goto out;
                *u = (user){i, d->users[a]};
                d->users[a] = u;
            }
        }
        d->inputs[i] = found;
        d->ninputs[i] = count;
    }
    rc = 0;
out:
    if (rc && !*ctx->error) nb_set_error(ctx, "out of memory");
    free(args);
    return rc;
}

/* The single-variable chain rule applies when everything is a scalar and
 * every named node reads one input. */
static bool single_variable(const derivation *d) {
    if (!d->total || nb_variables(d->ctx, d->f, NULL, 0) != 1) return false;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->dep[i]) continue;
        if (d->nodes[i]->type.kind != NB_SCALAR) return false;
        if ((d->symbol[i] || i + 1 == d->n) && d->nodes[i] != d->v && d->ninputs[i] != 1) return false;
    }
    return true;
}

/* ---- the sections --------------------------------------------------------- */

static int put_intermediates(derivation *d) {
    size_t named = 0;
    for (size_t i = 0; i + 1 < d->n; i++) named += d->symbol[i] && d->nodes[i] != d->v;
    put_text(d, named ? d->lang->intermediates : d->lang->no_intermediates);
    for (size_t i = 0; i < d->n; i++) {
        if (!d->dep[i] || d->nodes[i] == d->v || (!d->symbol[i] && i + 1 < d->n)) continue;
        char *rhs = print(d, d->def[i]);
        if (!rhs) return -1;
        nb_strbuf type = {0};
        put_type(&type, d, d->nodes[i]->type);
        char *t = take(d, &type);
        if (t) put_equation(d, d->label[i], rhs, t, NULL, false);
        free(rhs);
        free(t);
        if (!t) return -1;
    }
    return 0;
}

/* Each named node's partial derivatives w.r.t. its inputs.  Returns 0, 1 when
 * one of them is a tensor (nothing written, the error cleared), -1 on error. */
static int put_partials(derivation *d) {
    nb_ctx *ctx = d->ctx;
    size_t count = 0;
    for (size_t i = 0; i < d->n; i++) count += d->ninputs[i];
    nb_node **J = nb_arena_alloc(&d->tmp, (count + 1) * sizeof *J);
    if (!J) return nb_set_error(ctx, "out of memory");
    count = 0;
    for (size_t i = 0; i < d->n; i++)
        for (size_t k = 0; k < d->ninputs[i]; k++, count++)
            if (!(J[count] = nb_derivative(ctx, d->def[i], 1, &d->symbol[d->inputs[i][k]], d->layout))) {
                nb_clear_error(ctx);
                return 1;
            }
    put_text(d, d->lang->partials);
    count = 0;
    for (size_t i = 0; i < d->n; i++) {
        for (size_t k = 0; k < d->ninputs[i]; k++, count++) {
            nb_strbuf lhs = {0}, shape = {0};
            put_partial(&lhs, d, d->label[i], d->label[d->inputs[i][k]], false);
            put_shape(&shape, d, J[count]->type);
            nb_sb_puts(&shape, "");
            char *rhs = print(d, J[count]), *l = take(d, &lhs), *s = take(d, &shape);
            if (rhs && l && s)
                put_equation(d, l, rhs, structure(d, J[count], d->symbol[d->inputs[i][k]]->type), s, true);
            free(rhs);
            free(l);
            free(s);
            if (*ctx->error) return -1;
        }
    }
    return 0;
}

/* The chain rule: ∂f/∂a = Σ_users ∂f/∂y · ∂y/∂a from f down to v, naming ∂f/∂a
 * where paths join (numerator layout; the factors swap in denominator). */
static int put_chain_rule(derivation *d) {
    const nb_steps_lang *L = d->lang;
    size_t n = d->n;
    if (d->ninputs[n - 1] == 1 && d->inputs[n - 1][0] == nb_topo_index(d->nodes, n, d->v)) {
        put_text(d, L->direct);
        return 0;
    }
    bool paths = false, scalars = true;
    for (size_t i = 0; i < n; i++) {
        paths |= d->users[i] && d->users[i]->next;
        scalars &= !d->dep[i] || d->nodes[i]->type.kind == NB_SCALAR;
    }
    d->chain_written = true;
    put_text(d, scalars && paths ? L->chain_total
                : d->scalar_chain ? L->chain_single
                : scalars ? L->chain_partial
                : d->layout == NB_NUMERATOR ? L->chain_numerator
                                            : L->chain_denominator);
    char **adjoint = calloc(n, sizeof *adjoint); /* NULL: f itself (the identity) */
    if (!adjoint) return nb_set_error(d->ctx, "out of memory");
    int rc = -1;
    const char *times = product_sign(d);
    for (size_t a = n - 1; a-- > 0;) {
        if (!d->users[a]) continue;
        nb_strbuf sum = {0};
        size_t terms = 0;
        /* the users, the function's side first (the paper's ∂f/∂x + ∂f/∂u·∂u/∂x) */
        size_t count = 0;
        for (user *u = d->users[a]; u; u = u->next) count++;
        user **list = malloc(count * sizeof *list);
        if (!list) goto out;
        count = 0;
        for (user *u = d->users[a]; u; u = u->next) list[count++] = u;
        for (size_t j = 0; j < count; j++) {
            size_t y = list[j]->y;
            if (terms++) nb_sb_puts(&sum, " + ");
            nb_strbuf factor = {0};
            put_partial(&factor, d, d->label[y], d->label[a], false);
            char *fac = take(d, &factor);
            if (!fac) {
                free(list);
                free(sum.buf);
                goto out;
            }
            if (!adjoint[y]) nb_sb_puts(&sum, fac);
            else if (d->layout == NB_NUMERATOR) cat(&sum, adjoint[y], times, fac, NULL);
            else cat(&sum, fac, times, adjoint[y], NULL);
            free(fac);
        }
        free(list);
        char *rhs = take(d, &sum);
        if (!rhs) goto out;
        bool is_v = d->nodes[a] == d->v;
        if (terms > 1 || is_v) {
            nb_strbuf lhs = {0};
            bool scalars = d->f->type.kind == NB_SCALAR && d->nodes[a]->type.kind == NB_SCALAR;
            put_partial(&lhs, d, d->label[n - 1], d->label[a], is_v ? d->total : scalars);
            char *l = take(d, &lhs);
            if (l) put_equation(d, l, rhs, terms > 1 ? L->paths_add : NULL, NULL, false);
            free(rhs);
            rhs = l;
            if (!rhs) goto out;
        }
        adjoint[a] = rhs;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) free(adjoint[i]);
    free(adjoint);
    return rc;
}

/* e with the named nodes written as their symbols (nothing rebuilt
 * canonically, so the form stays the one shown). */
static char *display(derivation *d, nb_node *e) {
    size_t n;
    nb_node **nodes = nb_toposort(d->ctx, 1, &e, &n);
    nb_node **done = nodes ? malloc(n * sizeof *done) : NULL;
    nb_node **args = NULL;
    char *s = NULL;
    if (!done) goto out;
    for (size_t i = 0; i < n; i++) {
        nb_node *y = nodes[i];
        size_t at = nb_topo_index(d->nodes, d->n, y);
        if (at < d->n && d->symbol[at] && at + 1 < d->n) {
            done[i] = d->symbol[at];
            continue;
        }
        bool changed = false;
        free(args);
        if (!(args = malloc((y->nargs + 1u) * sizeof *args))) goto out;
        for (size_t k = 0; k < y->nargs; k++) {
            args[k] = done[nb_topo_index(nodes, n, y->args[k])];
            changed |= args[k] != y->args[k];
        }
        if (!(done[i] = changed ? raw_rebuild(d->ctx, y, args) : y)) goto out;
    }
    s = print(d, done[n - 1]);
out:
    if (!s && !*d->ctx->error) nb_set_error(d->ctx, "out of memory");
    free(nodes);
    free(done);
    free(args);
    return s;
}

static void record_rewrite(void *user, const char *rule, const nb_expr *at, const nb_expr *result) {
    derivation *d = user;
    nb_ctx *ctx = d->ctx;
    (void)result;
    if (!at || !ctx->rewriting_args || d->log_failed) return;
    if (d->nlog == d->cap_log) {
        size_t cap = d->cap_log ? 2 * d->cap_log : 64;
        log_entry *bigger = realloc(d->log, cap * sizeof *bigger);
        if (!bigger) {
            d->log_failed = true;
            return;
        }
        d->log = bigger;
        d->cap_log = cap;
    }
    nb_node **args = nb_arena_alloc(&d->tmp, (at->nargs + 1u) * sizeof *args);
    if (!args) {
        d->log_failed = true;
        return;
    }
    memcpy(args, ctx->rewriting_args, at->nargs * sizeof *args);
    d->log[d->nlog++] = (log_entry){rule, at, args};
}

/* The raw chain-rule product, then one step per node where named rewrites
 * fired: its form with simplified operands = its simplified form (by the
 * rules).  *result receives nb_simplify's result. */
static int put_simplification(derivation *d, nb_node *raw, nb_node **result) {
    nb_ctx *ctx = d->ctx;
    const nb_steps_lang *L = d->lang;
    nb_strbuf lhs = {0};
    put_partial(&lhs, d, d->label[d->n - 1], d->vlabel, d->total);
    char *name = take(d, &lhs), *text = name ? display(d, raw) : NULL;
    if (text) {
        put_text(d, L->substitute);
        put_equation(d, name, text, d->chain_written && d->layout == NB_DENOMINATOR && raw->op == NB_OP_TRANSPOSE ? L->raw_transposed : NULL,
                     NULL, false);
    }
    free(text);
    if (!text) {
        free(name);
        return -1;
    }
    /* the memo of recursive rewrites is a cache: emptied, every rule that
     * applies fires (and is logged) here */
    if (ctx->memo) memset(ctx->memo, 0, ctx->memo_cap * sizeof *ctx->memo);
    ctx->memo_count = 0;
    d->nlog = 0;
    nb_rewrite_log saved = ctx->rewrite_log;
    void *saved_user = ctx->rewrite_log_user;
    nb_set_rewrite_log(ctx, record_rewrite, d);
    *result = nb_simplify(ctx, raw);
    nb_set_rewrite_log(ctx, saved, saved_user);
    char *raw_text = *result ? display(d, raw) : NULL, *simplified = raw_text ? display(d, *result) : NULL;
    bool changed = simplified && strcmp(raw_text, simplified) != 0;
    free(raw_text);
    if (!simplified || d->log_failed) {
        free(name);
        free(simplified);
        return d->log_failed ? nb_set_error(ctx, "out of memory") : -1;
    }
    put_text(d, d->nlog || changed ? L->simplify : L->nothing_to_simplify);
    for (size_t i = 0; i < d->nlog;) {
        size_t j = i;
        nb_strbuf rules = {0};
        for (; j < d->nlog && d->log[j].at == d->log[i].at; j++) {
            bool repeated = false;
            for (size_t k = i; k < j && !repeated; k++) repeated = strcmp(d->log[k].rule, d->log[j].rule) == 0;
            if (repeated) continue;
            if (j > i) nb_sb_puts(&rules, d->fmt == OUT_UNICODE || d->fmt == OUT_ASCII ? d->lang->separator : ";\\ ");
            put_rule(&rules, d->fmt, d->lang, d->log[j].rule);
        }
        const nb_node *at = d->log[i].at;
        nb_node *before = raw_rebuild(ctx, at, d->log[i].args);
        nb_node *after = before ? nb_rebuild(ctx, at, d->log[i].args) : NULL;
        char *b = before ? display(d, before) : NULL, *a = after ? display(d, after) : NULL, *r = take(d, &rules);
        /* a rewrite of an inner form that prints the same (−1·diag(v) into
         * diag(−v), say) shows nothing: no "A = A" step */
        if (a && b && r && strcmp(a, b) != 0) put_equation(d, b, a, L->by, r, false);
        /* the last step's result is the whole when the root was rewritten last */
        changed &= !a || strcmp(a, simplified) != 0;
        free(a);
        free(b);
        free(r);
        if (*ctx->error) break;
        i = j;
    }
    if (changed && !*ctx->error) put_equation(d, name, simplified, L->collected, NULL, false);
    free(name);
    free(simplified);
    return *ctx->error ? -1 : 0;
}

/* The derivation of ∂f/∂v; *result receives the derivative it reaches. */
static int derive(derivation *d, nb_node *f, nb_node *v, nb_node **result) {
    nb_ctx *ctx = d->ctx;
    d->f = f;
    d->v = v;
    d->scalar_chain = d->chain_written = false;
    d->total = f->type.kind == NB_SCALAR && v->type.kind == NB_SCALAR && !d->several;
    d->nodes = nb_toposort(ctx, 1, &f, &d->n);
    if (!d->nodes) return -1;
    int rc = -1;
    nb_node *raw = nb_derivative_raw(ctx, f, 1, &v, d->layout);
    char *vname = raw ? print(d, v) : NULL;
    d->vlabel = vname ? dup_string(d, vname) : NULL;
    free(vname);
    if (!d->vlabel) goto out;
    if (nb_topo_index(d->nodes, d->n, v) < d->n && f != v) {
        if (introduce(d)) goto out;
        d->scalar_chain = single_variable(d);
        int partials = 0;
        if (put_intermediates(d) || (partials = put_partials(d)) < 0) goto out;
        if (partials == 1) put_text(d, d->lang->tensor);
        else if (put_chain_rule(d)) goto out;
    } else {
        /* f does not use v (the derivative is 0) or is v (the identity) */
        put_text(d, f == v ? d->lang->itself : d->lang->constant);
        d->symbol = nb_arena_alloc(&d->tmp, d->n * sizeof *d->symbol);
        d->label = nb_arena_alloc(&d->tmp, d->n * sizeof *d->label);
        const char *fname = definition_name(ctx, f);
        if (!d->symbol || !d->label || !(d->label[d->n - 1] = dup_string(d, fname ? fname : "f"))) goto out;
        memset(d->symbol, 0, d->n * sizeof *d->symbol);
    }
    rc = put_simplification(d, raw, result);
out:
    free(d->nodes);
    d->nodes = NULL;
    return rc;
}

/* ---- the entry point ------------------------------------------------------ */

static const nb_steps_lang *const languages[] = {
#define STEPS_ENTRY(code) &nb_steps_lang_##code,
    STEPS_LANGUAGES(STEPS_ENTRY)
#undef STEPS_ENTRY
};

const char *nb_derivation_languages(void) {
    static char list[64];
    if (!list[0])
        for (size_t i = 0; i < sizeof languages / sizeof languages[0]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", languages[i]->code);
    return list;
}

/* The printed form of the derivative as plain `nabla diff` prints it, in the
 * format's printer. */
static char *final_text(derivation *d, const nb_node *J) {
    char *s = nb_derivative_to_string(d->ctx, J, d->pfmt);
    if (!s) nb_set_error(d->ctx, "out of memory");
    return s;
}

char *nb_derivation(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout, const char *format,
                    const char *lang) {
    if (!ctx) return NULL;
    if (!f || !wrt || !format || !lang) {
        nb_set_error(ctx, "nb_derivation: missing argument");
        return NULL;
    }
    derivation d;
    memset(&d, 0, sizeof d);
    d.ctx = ctx;
    d.layout = layout;
    d.several = nwrt > 1;
    for (size_t i = 0; i < sizeof languages / sizeof languages[0]; i++)
        if (strcmp(languages[i]->code, lang) == 0) d.lang = languages[i];
    if (!d.lang) {
        nb_set_error(ctx, "unknown language '%s' (available: %s)", lang, nb_derivation_languages());
        return NULL;
    }
    size_t nformats = sizeof format_names / sizeof format_names[0], k = 0;
    while (k < nformats && strcmp(format_names[k], format) != 0) k++;
    if (k == nformats) {
        nb_set_error(ctx, "unknown format '%s' (expected unicode, ascii, latex or markdown)", format);
        return NULL;
    }
    d.fmt = (out_format)k;
    d.pfmt = d.fmt == OUT_ASCII ? NB_FMT_ASCII : d.fmt == OUT_UNICODE ? NB_FMT_UNICODE : NB_FMT_LATEX;
    /* plain diff's answer first: it checks the arguments and is what the
     * derivation must reach */
    nb_node *answer = nb_derivative(ctx, f, nwrt, wrt, layout);
    if (!answer) return NULL;
    char *fname = print(&d, f), *vnames = NULL;
    nb_strbuf names = {0};
    for (size_t i = 0; i < nwrt; i++) {
        char *s = print(&d, wrt[i]);
        if (s) cat(&names, i ? ", " : "", s, NULL);
        free(s);
    }
    vnames = take(&d, &names);
    const char *definition = definition_name(ctx, f);
    if (d.fmt == OUT_LATEX) nb_sb_puts(&d.out, "\\begin{align*}\n");
    char *title = NULL;
    bool ok = fname && vnames;
    if (ok) {
        /* mathematics in the title: \(…\) inside LaTeX's \text, $…$ in markdown */
        const char *open = d.fmt == OUT_LATEX ? "\\(" : d.fmt == OUT_MARKDOWN ? "$" : "";
        const char *close = d.fmt == OUT_LATEX ? "\\)" : d.fmt == OUT_MARKDOWN ? "$" : "";
        nb_strbuf fm = {0}, vm = {0}, t = {0};
        cat(&fm, open, definition ? definition : "f", " = ", fname, close, NULL);
        cat(&vm, open, vnames, close, NULL);
        char *a = take(&d, &fm), *b = take(&d, &vm);
        if (a && b) {
            const char *args[] = {a, b, layout == NB_NUMERATOR ? d.lang->numerator_layout : d.lang->denominator_layout};
            put_words(&t, d.lang->title, args, 3);
        }
        free(a);
        free(b);
        title = a && b ? take(&d, &t) : (free(t.buf), NULL);
        ok = title != NULL;
    }
    if (ok) put_text(&d, title);
    if (ok && nwrt > 1) {
        nb_strbuf t = {0};
        const char *args[] = {vnames};
        put_words(&t, d.lang->several_scalars, args, 1);
        char *s = take(&d, &t);
        if ((ok = s != NULL)) put_text(&d, s);
        free(s);
    }
    for (size_t i = 0; ok && i < nwrt; i++) {
        if (nwrt > 1) {
            nb_strbuf t = {0};
            char *v = print(&d, wrt[i]);
            const char *args[] = {v};
            if (v) put_words(&t, d.lang->section, args, 1);
            free(v);
            char *s = take(&d, &t);
            if (!(ok = s != NULL)) break;
            put_text(&d, s);
            free(s);
        }
        nb_node *reached = NULL;
        ok = derive(&d, f, wrt[i], &reached) == 0;
        nb_arena_free(&d.tmp);
        free(d.log);
        d.log = NULL;
        d.nlog = d.cap_log = 0;
        /* the derivation ends where plain nb_derivative does (hash-consed: the same node) */
        if (ok && reached != (nwrt == 1 ? answer : nb_derivative(ctx, f, 1, &wrt[i], layout))) {
            nb_set_error(ctx, "internal error: the derivation does not reach nabla diff's result");
            ok = false;
        }
    }
    char *answer_text = ok ? final_text(&d, answer) : NULL;
    if (answer_text) {
        bool numerator = layout == NB_NUMERATOR;
        const char *gradient = numerator ? d.lang->assemble_gradient_row : d.lang->assemble_gradient_column;
        const char *jacobian = numerator ? d.lang->assemble_jacobian_columns : d.lang->assemble_jacobian_rows;
        put_text(&d, nwrt > 1 ? (f->type.kind == NB_SCALAR ? gradient : jacobian) : d.lang->result);
        nb_strbuf lhs = {0};
        if (nwrt > 1) {
            nb_sb_puts(&lhs, "[");
            for (size_t i = 0; i < nwrt; i++) {
                char *v = print(&d, wrt[i]);
                if (i) nb_sb_puts(&lhs, ", ");
                if (v) put_partial(&lhs, &d, definition ? definition : "f", v, false);
                free(v);
            }
            nb_sb_puts(&lhs, "]");
        } else {
            char *v = print(&d, wrt[0]);
            if (v) put_partial(&lhs, &d, definition ? definition : "f", v, d.total);
            free(v);
        }
        char *l = take(&d, &lhs);
        if (l) put_equation(&d, l, answer_text, NULL, NULL, false);
        free(l);
        ok = l != NULL;
    }
    if (d.fmt == OUT_LATEX) nb_sb_puts(&d.out, "\\end{align*}\n");
    free(answer_text);
    free(title);
    free(fname);
    free(vnames);
    if (ok && !d.out.failed) return d.out.buf;
    if (!*ctx->error) nb_set_error(ctx, "out of memory");
    free(d.out.buf);
    return NULL;
}
