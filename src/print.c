/* Printing expressions as text (ASCII, Unicode) or LaTeX, the way the paper
 * writes them: coefficient first, division for negative powers, minus signs
 * pulled out of sums, ⊙/.* only between arrays.
 *
 * ASCII is the input language: everything it prints parses back to an
 * expression of the same type and value (array constants as ones(n),
 * zeros(m, n), eye(n); a row literal as [a, b]').  Unicode and LaTeX use the
 * paper's notation: 𝟏, 𝟏ᵀ, 𝟎 and I (bold, so that the ones vector does not
 * read as the number 1), and a row literal as [a, b]ᵀ — a column is [a, b]
 * in every format, as the parser reads it.
 * A large or deeply nested DAG is printed with definitions (t1 = …; …) for
 * its shared or deep parts, so the output stays linear in the graph size. */
#include "nb_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- string buffer ---------------------------------------------------------- */
static void sb_put(nb_strbuf *sb, const char *s, size_t n) {
    if (sb->failed) return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap * 2 : 256;
        while (cap < sb->len + n + 1) cap *= 2;
        char *b = realloc(sb->buf, cap);
        if (!b) {
            sb->failed = true;
            return;
        }
        sb->buf = b;
        sb->cap = cap;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
}

void nb_sb_puts(nb_strbuf *sb, const char *s) { sb_put(sb, s, strlen(s)); }

void nb_sb_printf(nb_strbuf *sb, const char *fmt, ...) {
    char tmp[512];
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    const int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof tmp) {
        sb_put(sb, tmp, (size_t)n);
    } else if (n > 0) { /* longer (names of any length): the whole text */
        char *big = malloc((size_t)n + 1);
        if (big && vsnprintf(big, (size_t)n + 1, fmt, again) == n) sb_put(sb, big, (size_t)n);
        else sb->failed = true;
        free(big);
    }
    va_end(again);
}

/* Shortest "%.Ng" that reads back as the same double. */
static void print_double(nb_strbuf *sb, double v) {
    char tmp[64];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(tmp, sizeof tmp, "%.*g", digits, v);
        if (strtod(tmp, NULL) == v) break;
    }
    nb_sb_puts(sb, tmp);
}

/* An exact integer in decimal (nb_int has no printf conversion). */
static void print_int(nb_strbuf *sb, nb_int v) {
    char digits[48], *d = digits + sizeof digits;
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    *--d = 0;
    do *--d = (char)('0' + (int)(u % 10)); while (u /= 10);
    if (v < 0) *--d = '-';
    nb_sb_puts(sb, d);
}

void nb_print_number(nb_strbuf *sb, nb_number c) {
    if (!c.exact) print_double(sb, c.val);
    else {
        print_int(sb, c.num);
        if (c.den != 1) nb_sb_puts(sb, "/");
        if (c.den != 1) print_int(sb, c.den);
    }
}

/* ---- printer state ------------------------------------------------------------ */
enum { P_LOW, P_CMP, P_ADD, P_MUL, P_NEG, P_POW, P_POST, P_ATOM };

typedef struct {
    nb_ctx *ctx;
    nb_format fmt;
    bool paper; /* 𝟏, 𝟏ᵀ, 𝟎, I as the paper writes them; else ones(n), eye(n)… */
    nb_strbuf sb;
    nb_node **nodes; /* nb_toposort of the printed root (NULL when printing a piece alone) */
    size_t n;
    uint32_t *name; /* by position in nodes: 0, or k for a node printed as definition tk */
    char prefix[16]; /* of the definitions' names: t1, t2, … unless a variable is called so */
    bool repeats;    /* names only repeated subexpressions of a small tree ("… where t1 = …") */
} printer;

static void print_node(printer *p, const nb_node *e, int prec);

static bool ascii(const printer *p) { return p->fmt == NB_FMT_ASCII; }
static bool latex(const printer *p) { return p->fmt == NB_FMT_LATEX; }
static const char *pick(const printer *p, const char *a, const char *u, const char *l) {
    return p->fmt == NB_FMT_ASCII ? a : p->fmt == NB_FMT_UNICODE ? u : l;
}

static void open_paren(printer *p, bool on) {
    if (on) nb_sb_puts(&p->sb, latex(p) ? "\\left(" : "(");
}
static void close_paren(printer *p, bool on) {
    if (on) nb_sb_puts(&p->sb, latex(p) ? "\\right)" : ")");
}

static bool negative(nb_number c) { return c.val < 0; }
static bool is_scalar_const(const nb_node *e) { return e->op == NB_OP_CONST && e->type.kind == NB_SCALAR; }

/* A term that prints with a leading minus (so a sum shows "a - b"). */
static bool negative_term(const nb_node *e) {
    if (is_scalar_const(e)) return negative(e->a.c);
    if (e->op == NB_OP_MUL && is_scalar_const(e->args[0])) return negative(e->args[0]->a.c);
    return false;
}

static bool is_negative_power(const nb_node *e) {
    return e->op == NB_OP_POW && is_scalar_const(e->args[1]) && negative(e->args[1]->a.c);
}

static void print_superscript(printer *p, int64_t v) {
    static const char *digits[] = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    for (char *c = tmp; *c; c++) nb_sb_puts(&p->sb, *c == '-' ? "⁻" : digits[*c - '0']);
}


/* Whether the double v is (num/den)·π exactly as the builders fold it
 * (den <= 12), so that it prints as num/den·π and re-reads as the same bits.
 * Not when a variable called pi would capture the name. */
static bool pi_multiple(const printer *p, double v, nb_number *ratio) {
    if (!isfinite(v) || v == 0 || fabs(v) > 1e3 || nb_lookup(p->ctx, "pi")) return false;
    for (int64_t den = 1; den <= 12; den++) {
        double k = nearbyint(v / NB_PI * (double)den);
        if (k == 0) continue;
        nb_number r = nb_number_rational((int64_t)k, den);
        if (r.den == den && nb_number_mul(r, nb_number_double(NB_PI)).val == v) return *ratio = r, true;
    }
    return false;
}

static void print_number(printer *p, nb_number c, int prec) {
    nb_number ratio;
    if (!c.exact && pi_multiple(p, c.val, &ratio)) {
        bool paren = (negative(c) && prec > P_NEG) || (!nb_number_is(ratio, 1) && prec > P_MUL);
        open_paren(p, paren);
        if (nb_number_is(ratio, -1)) nb_sb_puts(&p->sb, "-");
        else if (!nb_number_is(ratio, 1)) {
            print_number(p, ratio, P_MUL);
            nb_sb_puts(&p->sb, pick(p, "*", "·", " "));
        }
        nb_sb_puts(&p->sb, pick(p, "pi", "π", "\\pi"));
        close_paren(p, paren);
        return;
    }
    bool paren = (negative(c) && prec > P_NEG) || (c.exact && c.den != 1 && prec > P_MUL);
    if (latex(p) && c.exact && c.den != 1) {
        nb_sb_puts(&p->sb, c.num < 0 ? "-\\frac{" : "\\frac{");
        print_int(&p->sb, c.num < 0 ? -c.num : c.num);
        nb_sb_puts(&p->sb, "}{");
        print_int(&p->sb, c.den);
        nb_sb_puts(&p->sb, "}");
        return;
    }
    open_paren(p, paren);
    nb_print_number(&p->sb, c);
    close_paren(p, paren);
}

/* base^e for a positive exponent e (the printed power of a factor). */
static void print_power(printer *p, const nb_node *base, nb_number e) {
    if (nb_number_is(e, 1)) {
        print_node(p, base, P_POW + 1);
        return;
    }
    if (e.exact && e.num == 1 && e.den == 2 && p->fmt == NB_FMT_UNICODE) {
        nb_sb_puts(&p->sb, "√");
        print_node(p, base, P_ATOM);
        return;
    }
    if (e.exact && e.num == 1 && e.den == 2) {
        nb_sb_puts(&p->sb, latex(p) ? "\\sqrt{" : "sqrt(");
        print_node(p, base, P_LOW);
        nb_sb_puts(&p->sb, latex(p) ? "}" : ")");
        return;
    }
    print_node(p, base, P_POW + 1);
    if (p->fmt == NB_FMT_UNICODE && nb_number_is_int(e) && fabs(e.val) < 1e6) print_superscript(p, (int64_t)e.val);
    else if (latex(p)) {
        nb_sb_puts(&p->sb, "^{");
        print_number(p, e, P_LOW);
        nb_sb_puts(&p->sb, "}");
    } else {
        nb_sb_puts(&p->sb, base->type.kind == NB_SCALAR ? "^" : ".^");
        print_number(p, e, P_POW + 1);
    }
}

/* One list of factors joined by the right product symbol. */
typedef struct {
    const nb_node *base;
    nb_number exp;
} pfactor;

static void print_factors(printer *p, const pfactor *f, size_t n, bool lead_paren) {
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            bool elementwise = f[i].base->type.kind != NB_SCALAR && f[i - 1].base->type.kind != NB_SCALAR;
            nb_sb_puts(&p->sb, elementwise ? pick(p, " .* ", " ⊙ ", " \\odot ") : pick(p, "*", "·", " "));
        }
        bool power = !nb_number_is(f[i].exp, 1);
        /* a matrix product among other factors reads better bracketed: 4*(x'*x)*x */
        bool bracket = n > 1 && f[i].base->op == NB_OP_MATMUL;
        if (!power && (i > 0 || lead_paren || bracket)) print_node(p, f[i].base, P_MUL + 1);
        else if (!power) print_node(p, f[i].base, P_MUL);
        else print_power(p, f[i].base, f[i].exp);
    }
}

/* A product (or a negative power) as coefficient · numerator / denominator. */
static void print_product(printer *p, const nb_node *e, bool negate, int prec) {
    nb_node *one = (nb_node *)e;
    nb_node *const *args = e->op == NB_OP_MUL ? e->args : &one;
    size_t n = e->op == NB_OP_MUL ? e->nargs : 1;
    nb_number coef = nb_number_int(1);
    size_t start = 0;
    if (is_scalar_const(args[0])) coef = args[0]->a.c, start = 1;
    if (negate) coef = nb_number_neg(coef);
    bool minus = negative(coef);
    if (minus) coef = nb_number_neg(coef);
    pfactor *num = malloc((n + 1) * sizeof *num), *den = malloc((n + 1) * sizeof *den);
    if (!num || !den) {
        p->sb.failed = true;
        free(num);
        free(den);
        return;
    }
    size_t nn = 0, nd = 0;
    bool frac = coef.exact && coef.den != 1;
    bool show_coef = !nb_number_is(coef, 1) && !(frac && coef.num == 1);
    for (size_t i = start; i < n; i++) {
        const nb_node *a = args[i];
        if (is_negative_power(a)) den[nd++] = (pfactor){a->args[0], nb_number_neg(a->args[1]->a.c)};
        else if (a->op == NB_OP_POW && is_scalar_const(a->args[1])) num[nn++] = (pfactor){a->args[0], a->args[1]->a.c};
        else num[nn++] = (pfactor){a, nb_number_int(1)};
    }
    bool paren = prec > P_MUL || (minus && prec > P_ADD);
    open_paren(p, paren);
    if (minus) nb_sb_puts(&p->sb, "-");
    bool any_den = nd > 0 || frac;
    bool array_den = false;
    for (size_t i = 0; i < nd; i++) array_den |= den[i].base->type.kind != NB_SCALAR;
    if (latex(p) && any_den) nb_sb_puts(&p->sb, "\\frac{");
    if (show_coef) {
        nb_strbuf *sb = &p->sb;
        if (frac) print_int(sb, coef.num);
        else print_number(p, coef, P_MUL);
        if (nn) nb_sb_puts(sb, pick(p, "*", "·", " "));
    }
    if (nn) print_factors(p, num, nn, false);
    else if (!show_coef) nb_sb_puts(&p->sb, "1");
    if (any_den) {
        size_t count = nd + (frac ? 1 : 0);
        if (latex(p)) nb_sb_puts(&p->sb, "}{");
        else nb_sb_puts(&p->sb, array_den ? pick(p, " ./ ", " ⊘ ", "") : "/");
        bool group = count > 1 && !latex(p);
        open_paren(p, group);
        if (frac) {
            print_int(&p->sb, coef.den);
            if (nd) nb_sb_puts(&p->sb, pick(p, "*", "·", " "));
        }
        if (nd == 1 && !group && nb_number_is(den[0].exp, 1)) print_node(p, den[0].base, P_MUL + 1);
        else print_factors(p, den, nd, true);
        close_paren(p, group);
        if (latex(p)) nb_sb_puts(&p->sb, "}");
    }
    close_paren(p, paren);
    free(num);
    free(den);
}

static void print_sum(printer *p, const nb_node *e, int prec) {
    bool paren = prec > P_ADD;
    /* Lead with the first positive term: y - x rather than -x + y. */
    size_t lead = 0;
    while (lead < e->nargs && negative_term(e->args[lead])) lead++;
    if (lead == e->nargs) lead = 0;
    open_paren(p, paren);
    for (size_t k = 0; k < e->nargs; k++) {
        size_t i = k == 0 ? lead : (k <= lead ? k - 1 : k);
        const nb_node *t = e->args[i];
        bool neg = k > 0 && negative_term(t);
        if (k > 0) nb_sb_puts(&p->sb, neg ? " - " : " + ");
        if (!neg) print_node(p, t, k == 0 ? P_ADD : P_ADD + 1);
        else if (is_scalar_const(t)) print_number(p, nb_number_neg(t->a.c), P_ADD + 1);
        else print_product(p, t, true, P_ADD + 1);
    }
    close_paren(p, paren);
}

static void print_call(printer *p, const char *name, const nb_node *e) {
    if (latex(p)) {
        nb_sb_puts(&p->sb, nb_ops[e->op].latex); /* the registry's LaTeX name (ops.def) */
        nb_sb_puts(&p->sb, "\\left(");
    } else {
        nb_sb_printf(&p->sb, "%s(", name);
    }
    for (size_t i = 0; i < e->nargs; i++) {
        if (i) nb_sb_puts(&p->sb, ", ");
        print_node(p, e->args[i], P_LOW);
    }
    nb_sb_puts(&p->sb, latex(p) ? "\\right)" : ")");
}

static void print_list(printer *p, nb_node *const *e, size_t n, bool column_latex) {
    for (size_t i = 0; i < n; i++) {
        if (i) nb_sb_puts(&p->sb, latex(p) ? (column_latex ? " \\\\ " : " & ") : ", ");
        print_node(p, e[i], P_LOW);
    }
}

static void print_literal(printer *p, const nb_node *e, bool as_row) {
    if (e->op == NB_OP_VECLIT) {
        if (latex(p)) {
            nb_sb_puts(&p->sb, "\\begin{bmatrix} ");
            print_list(p, e->args, e->nargs, !as_row);
            nb_sb_puts(&p->sb, " \\end{bmatrix}");
        } else {
            nb_sb_puts(&p->sb, "[");
            print_list(p, e->args, e->nargs, false);
            nb_sb_puts(&p->sb, "]");
        }
        return;
    }
    size_t rows = (size_t)e->type.rows, cols = (size_t)e->type.cols;
    nb_sb_puts(&p->sb, latex(p) ? "\\begin{bmatrix} " : "[");
    for (size_t i = 0; i < rows; i++) {
        if (i) nb_sb_puts(&p->sb, latex(p) ? " \\\\ " : ", ");
        if (!latex(p)) nb_sb_puts(&p->sb, "[");
        print_list(p, e->args + i * cols, cols, false);
        if (!latex(p)) nb_sb_puts(&p->sb, "]");
    }
    nb_sb_puts(&p->sb, latex(p) ? " \\end{bmatrix}" : "]");
}

static void print_transpose_mark(printer *p) { nb_sb_puts(&p->sb, pick(p, "'", "ᵀ", "^{\\top}")); }

/* ones(n), zeros(m, n), ones(n)': array constants that parse back. */
static void print_shaped_constant(printer *p, const nb_node *e, int prec) {
    char rb[24], cb[24];
    nb_number v = e->a.c;
    bool zero = nb_number_is(v, 0), scaled = !zero && !nb_number_is(v, 1);
    bool paren = scaled && prec > P_MUL;
    open_paren(p, paren);
    if (scaled) {
        print_number(p, v, P_MUL);
        nb_sb_puts(&p->sb, "*");
    }
    const char *r = nb_dim_name(p->ctx, e->type.rows, rb, sizeof rb);
    const char *c = nb_dim_name(p->ctx, e->type.cols, cb, sizeof cb);
    const char *name = zero ? "zeros" : "ones";
    switch (e->type.kind) {
    case NB_VECTOR: nb_sb_printf(&p->sb, "%s(%s)", name, r); break;
    case NB_ROW: nb_sb_printf(&p->sb, "%s(%s)'", name, c); break;
    default: nb_sb_printf(&p->sb, "%s(%s, %s)", name, r, c); break;
    }
    close_paren(p, paren);
}

static void print_const(printer *p, const nb_node *e, int prec) {
    nb_number c = e->a.c;
    if (e->type.kind == NB_SCALAR) {
        print_number(p, c, prec);
        return;
    }
    if (!p->paper) {
        print_shaped_constant(p, e, prec);
        return;
    }
    if (nb_number_is(c, 0)) {
        nb_sb_puts(&p->sb, latex(p) ? "\\mathbf{0}" : "𝟎");
        return;
    }
    const char *one = latex(p) ? "\\mathbf{1}" : "𝟏";
    bool scaled = !nb_number_is(c, 1);
    bool paren = scaled && prec > P_MUL;
    open_paren(p, paren);
    if (scaled) {
        print_number(p, c, P_MUL);
        nb_sb_puts(&p->sb, pick(p, "*", "·", " "));
    }
    switch (e->type.kind) {
    case NB_VECTOR: nb_sb_puts(&p->sb, one); break;
    case NB_ROW:
        nb_sb_puts(&p->sb, one);
        print_transpose_mark(p);
        break;
    default:
        nb_sb_puts(&p->sb, one);
        nb_sb_puts(&p->sb, pick(p, "*", "·", " "));
        nb_sb_puts(&p->sb, one);
        print_transpose_mark(p);
        break;
    }
    close_paren(p, paren);
}

static void print_compare(printer *p, const nb_node *e, int prec) {
    static const char *sym[][3] = {{" > ", " > ", " > "}, {" >= ", " ≥ ", " \\geq "}, {" < ", " < ", " < "}, {" <= ", " ≤ ", " \\leq "}};
    int k = e->op - NB_OP_GT;
    bool indicator = !ascii(p);
    bool paren = !indicator && prec > P_CMP;
    if (indicator) nb_sb_puts(&p->sb, latex(p) ? "\\mathbf{1}\\left[" : "1[");
    open_paren(p, paren);
    print_node(p, e->args[0], P_ADD);
    nb_sb_puts(&p->sb, sym[k][p->fmt == NB_FMT_ASCII ? 0 : p->fmt == NB_FMT_UNICODE ? 1 : 2]);
    print_node(p, e->args[1], P_ADD);
    close_paren(p, paren);
    if (indicator) nb_sb_puts(&p->sb, latex(p) ? "\\right]" : "]");
}

static void print_name(printer *p, const char *name) {
    if (latex(p) && strlen(name) > 1) nb_sb_printf(&p->sb, "\\mathit{%s}", name);
    else nb_sb_puts(&p->sb, name);
}

/* t1 (t_{1} in LaTeX, with the prefix's underscores escaped). */
static void print_definition_name(printer *p, uint32_t k) {
    if (!latex(p)) {
        nb_sb_printf(&p->sb, "%s%u", p->prefix, k);
        return;
    }
    for (const char *c = p->prefix; *c; c++) nb_sb_puts(&p->sb, *c == '_' ? "\\_" : (char[]){*c, 0});
    nb_sb_printf(&p->sb, "_{%u}", k);
}

/* The matrix functions' textbook marks (matfn.c, kron.c): X⁻¹ and X⁻ᵀ,
 * ‖x‖₁, ‖x‖, ‖X‖_F, A ⊗ B, K; ASCII writes them as the calls inv(X),
 * inv(X)', norm1(x), norm2(X), kron(A, B), which parse back.  Returns false
 * for other nodes. */
static bool print_matfn(printer *p, const nb_node *e, int prec) {
    if (e->op == NB_OP_COMMUTATION) {
        char m[64], n[64];
        if (!ascii(p)) return nb_sb_puts(&p->sb, "K"), true;
        nb_sb_printf(&p->sb, "commutation(%s, %s)", nb_dim_name(p->ctx, e->a.index[0], m, sizeof m),
                     nb_dim_name(p->ctx, e->a.index[1], n, sizeof n));
        return true;
    }
    if (e->op == NB_OP_KRON && !ascii(p)) {
        open_paren(p, prec > P_ADD); /* ⊗ binds looser than ·: −(A ⊗ B), (A ⊗ B)·C */
        print_node(p, e->args[0], P_MUL + 1);
        nb_sb_puts(&p->sb, pick(p, "", " ⊗ ", " \\otimes "));
        print_node(p, e->args[1], P_MUL + 1);
        close_paren(p, prec > P_ADD);
        return true;
    }
    bool inv_t = e->op == NB_OP_TRANSPOSE && e->args[0]->op == NB_OP_INV;
    if (ascii(p) || !(e->op == NB_OP_INV || inv_t || e->op == NB_OP_NORM1 || e->op == NB_OP_NORM2)) return false;
    if (e->op == NB_OP_INV || inv_t) {
        print_node(p, inv_t ? e->args[0]->args[0] : e->args[0], P_POST);
        nb_sb_puts(&p->sb, inv_t ? pick(p, "", "⁻ᵀ", "^{-\\top}") : pick(p, "", "⁻¹", "^{-1}"));
        return true;
    }
    bool frobenius = e->op == NB_OP_NORM2 && e->args[0]->type.kind == NB_MATRIX;
    nb_sb_puts(&p->sb, pick(p, "", "‖", "\\left\\| "));
    print_node(p, e->args[0], P_LOW);
    nb_sb_puts(&p->sb, e->op == NB_OP_NORM1 ? pick(p, "", "‖₁", " \\right\\|_1")
                       : frobenius          ? pick(p, "", "‖_F", " \\right\\|_F")
                                            : pick(p, "", "‖", " \\right\\|"));
    return true;
}

static void print_node(printer *p, const nb_node *e, int prec) {
    char buf[64];
    size_t at = p->name ? nb_topo_index(p->nodes, p->n, e) : 0;
    if (p->name && at < p->n && p->name[at]) {
        print_definition_name(p, p->name[at]);
        return;
    }
    if (print_matfn(p, e, prec)) return;
    switch ((nb_op)e->op) {
    case NB_OP_CONST: print_const(p, e, prec); return;
    case NB_OP_VAR: print_name(p, e->a.name); return;
    case NB_OP_DIMVAL: print_name(p, nb_dim_name(p->ctx, e->a.dim, buf, sizeof buf)); return;
    case NB_OP_IDENTITY:
        if (p->paper) nb_sb_puts(&p->sb, "I");
        else nb_sb_printf(&p->sb, "eye(%s)", nb_dim_name(p->ctx, e->a.dim, buf, sizeof buf));
        return;
    case NB_OP_ADD: print_sum(p, e, prec); return;
    case NB_OP_MUL: print_product(p, e, false, prec); return;
    case NB_OP_POW:
        if (is_negative_power(e)) print_product(p, e, false, prec);
        else if (is_scalar_const(e->args[1])) {
            bool paren = prec > P_POW;
            open_paren(p, paren);
            print_power(p, e->args[0], e->args[1]->a.c);
            close_paren(p, paren);
        } else {
            bool paren = prec > P_POW;
            open_paren(p, paren);
            print_node(p, e->args[0], P_POW + 1);
            if (latex(p)) {
                nb_sb_puts(&p->sb, "^{");
                print_node(p, e->args[1], P_LOW);
                nb_sb_puts(&p->sb, "}");
            } else {
                nb_sb_puts(&p->sb, e->type.kind == NB_SCALAR ? "^" : ".^");
                print_node(p, e->args[1], P_POW);
            }
            close_paren(p, paren);
        }
        return;
    case NB_OP_MATMUL: {
        bool paren = prec > P_MUL;
        open_paren(p, paren);
        /* (a ⊙ b)·c and (a ⊘ b)·c: parenthesise an element-wise product or
         * quotient on the left, also inside A·((a ⊘ b)·c) printed as A·(a ⊘ b)·c */
        const nb_node *l = e->args[0];
        bool elementwise = l->type.kind != NB_SCALAR && (l->op == NB_OP_MUL || is_negative_power(l));
        print_node(p, l, elementwise ? P_MUL + 1 : P_MUL);
        nb_sb_puts(&p->sb, pick(p, "*", "·", " "));
        /* the matrix product is associative: A·(B·C) prints as A·B·C */
        print_node(p, e->args[1], e->args[1]->op == NB_OP_MATMUL ? P_MUL : P_MUL + 1);
        close_paren(p, paren);
        return;
    }
    case NB_OP_TRANSPOSE:
        if (e->args[0]->op == NB_OP_VECLIT && !ascii(p) && latex(p)) {
            print_literal(p, e->args[0], true);
            return;
        }
        print_node(p, e->args[0], P_POST);
        print_transpose_mark(p);
        return;
    case NB_OP_VECLIT:
    case NB_OP_MATLIT: print_literal(p, e, false); return;
    case NB_OP_COLUMN:
        print_node(p, e->args[0], P_POST);
        nb_sb_printf(&p->sb, "[:, %lld]", (long long)e->a.index[0] + 1);
        return;
    case NB_OP_ENTRY:
        print_node(p, e->args[0], P_POST);
        if (e->args[0]->type.kind == NB_VECTOR) nb_sb_printf(&p->sb, "[%lld]", (long long)e->a.index[0] + 1);
        else if (e->args[0]->type.kind == NB_ROW) nb_sb_printf(&p->sb, "[%lld]", (long long)e->a.index[1] + 1);
        else nb_sb_printf(&p->sb, "[%lld, %lld]", (long long)e->a.index[0] + 1, (long long)e->a.index[1] + 1);
        return;
    case NB_OP_GT:
    case NB_OP_GE:
    case NB_OP_LT:
    case NB_OP_LE: print_compare(p, e, prec); return;
    case NB_OP_EXP:
        if (is_scalar_const(e->args[0]) && nb_number_is(e->args[0]->a.c, 1) && !nb_lookup(p->ctx, "e")) {
            nb_sb_puts(&p->sb, "e"); /* as the parser reads it */
            return;
        }
        print_call(p, ascii(p) ? nb_ops[e->op].ascii : nb_ops[e->op].name, e);
        return;
    default: print_call(p, ascii(p) ? nb_ops[e->op].ascii : nb_ops[e->op].name, e); return;
    }
}

/* ---- definitions for large or deep graphs ------------------------------------ */
#define TREE_LIMIT 4000 /* nodes in the printed tree before sharing is named */
#define DEPTH_LIMIT 150 /* nesting before a definition breaks the chain */

/* Length of e printed alone in ASCII, so that every format names the same. */
static size_t printed_length(const printer *p, const nb_node *e) {
    printer alone = {p->ctx, NB_FMT_ASCII, false, {NULL, 0, 0, false}, NULL, 0, NULL, "t", false};
    print_node(&alone, e, P_LOW);
    free(alone.sb.buf);
    return alone.sb.len;
}

/* In a tree small enough to print whole, a subexpression that the text would
 * show k >= 2 times is named when that makes the text no longer: k copies
 * of its L characters cost at least k names, its definition and
 * " where t1 = ", (k − 1)·L >= 2k + 12.  Outermost first: occurrences flow from each node to
 * its operands, once only out of a named node (its body is printed once). */
#define REPEAT_MIN_SIZE 5 /* nodes: smaller repeats are never worth a name */

static bool name_repeats(printer *p, const double *size, uint32_t *count) {
    size_t n = p->n, root = n - 1;
    double *occurs = calloc(n, sizeof *occurs);
    if (!occurs) return false;
    occurs[root] = 1;
    for (size_t i = n; i-- > 0;) {
        if (occurs[i] == 0) continue;
        const nb_node *e = p->nodes[i];
        double k = occurs[i];
        bool named = i != root && k >= 2 && size[i] >= REPEAT_MIN_SIZE &&
                     (k - 1) * (double)printed_length(p, e) >= 2 * k + 12;
        p->name[i] = named;
        for (size_t a = 0; a < e->nargs; a++) occurs[nb_topo_index(p->nodes, n, e->args[a])] += named ? 1 : k;
    }
    for (size_t i = 0; i < n; i++) /* numbered inside out: operands first */
        if (p->name[i]) p->name[i] = ++*count;
    p->repeats = *count > 0;
    free(occurs);
    return true;
}

/* Which nodes print as definitions tk: in a small tree, the repeats worth a
 * name; in a large or deep one, every shared node and the nodes that break a
 * chain deeper than DEPTH_LIMIT.  Side arrays by position in p->nodes. */
static bool plan_names(printer *p, nb_node *root, uint32_t *count) {
    *count = 0;
    p->nodes = nb_toposort(p->ctx, 1, &root, &p->n);
    if (!p->nodes) return false;
    size_t n = p->n;
    uint32_t *uses = calloc(n, sizeof *uses), *height = calloc(n, sizeof *height);
    double *size = calloc(n, sizeof *size);
    size_t *arg_at = NULL; /* positions of each node's operands, in node order */
    size_t nargs = 0;
    for (size_t i = 0; i < n; i++) nargs += p->nodes[i]->nargs;
    arg_at = malloc((nargs ? nargs : 1) * sizeof *arg_at);
    p->name = calloc(n, sizeof *p->name);
    bool ok = uses && height && size && arg_at && p->name;
    if (!ok) goto done;
    size_t *at = arg_at;
    for (size_t i = 0; i < n; i++) {
        const nb_node *e = p->nodes[i];
        size[i] = 1;
        for (size_t a = 0; a < e->nargs; a++) {
            size_t j = at[a] = nb_topo_index(p->nodes, n, e->args[a]);
            uses[j]++;
            size[i] += size[j];
            if (height[j] + 1 > height[i]) height[i] = height[j] + 1;
        }
        at += e->nargs;
    }
    if (size[n - 1] <= TREE_LIMIT && height[n - 1] <= DEPTH_LIMIT) {
        ok = name_repeats(p, size, count);
        goto done;
    }
    at = arg_at;
    for (size_t i = 0; i < n; i++) {
        const nb_node *e = p->nodes[i];
        uint32_t h = 0;
        double s = 1;
        for (size_t a = 0; a < e->nargs; a++) {
            size_t j = at[a];
            bool named = p->name[j] != 0;
            if (!named && height[j] + 1 > h) h = height[j] + 1;
            s += named ? 1 : size[j];
        }
        at += e->nargs;
        height[i] = h;
        size[i] = s;
        bool shared = uses[i] > 1 && s > 4 && e->nargs > 0;
        if (i + 1 != n && (shared || h >= DEPTH_LIMIT)) {
            p->name[i] = ++*count;
            height[i] = 0;
            size[i] = 1;
        }
    }
done:
    free(uses);
    free(height);
    free(size);
    free(arg_at);
    return ok;
}

/* Whether a variable or dimension is called prefix followed by digits. */
static bool numbered_name(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && name[n] && strspn(name + n, "0123456789") == strlen(name + n);
}

static bool prefix_taken(const nb_ctx *ctx, const char *prefix) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (numbered_name(ctx->vars[i].var->a.name, prefix)) return true;
    for (size_t i = 0; i < ctx->ndims; i++)
        if (numbered_name(ctx->dims[i].name, prefix)) return true;
    return false;
}

/* lead, then each definition "tk = body" in id order (operands before their
 * users), each followed (ASCII: statements) or separated by sep. */
static void print_definitions(printer *p, const char *lead, const char *sep) {
    uint32_t *order = p->name;
    bool first = true;
    nb_sb_puts(&p->sb, lead);
    for (size_t i = 0; i < p->n; i++) {
        uint32_t k = order[i];
        if (!k) continue;
        if (!first && !ascii(p) && p->repeats) nb_sb_puts(&p->sb, sep);
        first = false;
        print_definition_name(p, k);
        nb_sb_puts(&p->sb, " = ");
        order[i] = 0; /* print the body itself, not its name */
        print_node(p, p->nodes[i], P_LOW);
        order[i] = k;
        if (ascii(p) || !p->repeats) nb_sb_puts(&p->sb, sep);
    }
}

static char *to_string(nb_ctx *ctx, const nb_expr *e, nb_format fmt, const char *fn) {
    if (!nb_api_exprs(ctx, fn, 1, &e)) return NULL;
    if (fmt != NB_FMT_UNICODE && fmt != NB_FMT_ASCII && fmt != NB_FMT_LATEX) {
        nb_set_error(ctx, "%s: invalid format %d", fn, (int)fmt);
        return NULL;
    }
    printer p = {ctx, fmt, fmt != NB_FMT_ASCII, {NULL, 0, 0, false}, NULL, 0, NULL, "t", false};
    uint32_t named;
    if (!plan_names(&p, (nb_node *)e, &named)) {
        free(p.nodes);
        free(p.name);
        return NULL;
    }
    while (named && strlen(p.prefix) + 2 < sizeof p.prefix && prefix_taken(ctx, p.prefix)) strcat(p.prefix, "_");
    /* ASCII (and any large result): the definitions first, as the language
     * reads them; the display formats name repeats after: "… where t1 = …". */
    bool after = p.repeats && !ascii(&p);
    if (named && !after) print_definitions(&p, "", p.repeats ? "; " : latex(&p) ? " \\\\\n" : "\n");
    print_node(&p, e, P_LOW);
    if (named && after) print_definitions(&p, latex(&p) ? " \\quad\\text{where } " : " where ", ", ");
    free(p.name);
    free(p.nodes);
    if (p.sb.failed) {
        free(p.sb.buf);
        return NULL;
    }
    return p.sb.buf;
}

char *nb_to_string(nb_ctx *ctx, const nb_expr *e, nb_format fmt) { return to_string(ctx, e, fmt, __func__); }
char *nb_derivative_to_string(nb_ctx *ctx, const nb_expr *J, nb_format fmt) { return to_string(ctx, J, fmt, __func__); }

const char *nb_describe(nb_ctx *ctx, const nb_node *e, char *buf, size_t size) {
    char *s = nb_to_string(ctx, e, NB_FMT_ASCII);
    if (!s) snprintf(buf, size, "(expression)");
    else if (strlen(s) < size) snprintf(buf, size, "%s", s);
    else snprintf(buf, size, "%.*s...", (int)(size > 4 ? size - 4 : 0), s);
    free(s);
    return buf;
}
