/* Printing expressions as text (ASCII, Unicode) or LaTeX, the way the paper
 * writes them: coefficient first, division for negative powers, minus signs
 * pulled out of sums, ⊙/.* only between arrays.  nb_to_string's ASCII parses
 * back (array constants as ones(n), zeros(m, n), eye(n)); derivatives and the
 * display formats use the paper's 1, 1ᵀ, 0 and I.
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
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(sb, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
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

void nb_print_number(nb_strbuf *sb, nb_number c) {
    if (!c.exact) print_double(sb, c.val);
    else if (c.den == 1) nb_sb_printf(sb, "%lld", (long long)c.num);
    else nb_sb_printf(sb, "%lld/%lld", (long long)c.num, (long long)c.den);
}

/* ---- printer state ------------------------------------------------------------ */
enum { P_LOW, P_CMP, P_ADD, P_MUL, P_NEG, P_POW, P_POST, P_ATOM };

typedef struct {
    nb_ctx *ctx;
    nb_format fmt;
    bool paper; /* 1, 1ᵀ, 0, I as the paper writes them; else ones(n), eye(n)… */
    nb_strbuf sb;
    uint32_t *name; /* by id: 0, or k for a node printed as definition tk */
    uint32_t base;  /* smallest id reachable (name indexes from it) */
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

static void print_number(printer *p, nb_number c, int prec) {
    bool paren = (negative(c) && prec > P_NEG) || (c.exact && c.den != 1 && prec > P_MUL);
    if (latex(p) && c.exact && c.den != 1) {
        nb_sb_printf(&p->sb, "%s\\frac{%lld}{%lld}", c.num < 0 ? "-" : "", (long long)(c.num < 0 ? -c.num : c.num),
                     (long long)c.den);
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
        if (frac) nb_sb_printf(sb, "%lld", (long long)coef.num);
        else nb_print_number(sb, coef);
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
            nb_sb_printf(&p->sb, "%lld", (long long)coef.den);
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
    char r[64], c[64];
    nb_number v = e->a.c;
    bool zero = nb_number_is(v, 0), scaled = !zero && !nb_number_is(v, 1);
    bool paren = scaled && prec > P_MUL;
    open_paren(p, paren);
    if (scaled) {
        print_number(p, v, P_MUL);
        nb_sb_puts(&p->sb, "*");
    }
    nb_dim_name(p->ctx, e->type.rows, r, sizeof r);
    nb_dim_name(p->ctx, e->type.cols, c, sizeof c);
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
        print_number(p, c, prec);
        return;
    }
    const char *one = latex(p) ? "\\mathbf{1}" : "1";
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
    if (indicator) nb_sb_puts(&p->sb, latex(p) ? "\\mathbb{1}\\left[" : "1[");
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
    if (p->name && e->id >= p->base && p->name[e->id - p->base]) {
        nb_sb_printf(&p->sb, "t%u", p->name[e->id - p->base]);
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
        /* (a ⊙ b)·c: parenthesise an element-wise product on the left */
        const nb_node *l = e->args[0];
        print_node(p, l, l->op == NB_OP_MUL && l->type.kind != NB_SCALAR ? P_MUL + 1 : P_MUL);
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
    default: print_call(p, ascii(p) ? nb_ops[e->op].ascii : nb_ops[e->op].name, e); return;
    }
}

/* ---- definitions for large or deep graphs ------------------------------------ */
#define TREE_LIMIT 4000 /* nodes in the printed tree before sharing is named */
#define DEPTH_LIMIT 150 /* nesting before a definition breaks the chain */

static bool plan_names(printer *p, const nb_node *root, uint32_t *count) {
    uint32_t lo = root->id;
    size_t n = (size_t)root->id + 1;
    bool *live = calloc(n, sizeof *live);
    uint32_t *uses = calloc(n, sizeof *uses), *height = calloc(n, sizeof *height);
    double *size = calloc(n, sizeof *size);
    bool ok = live && uses && height && size;
    *count = 0;
    if (!ok) goto done;
    live[root->id] = true;
    for (size_t id = n; id-- > 0;) {
        if (!live[id]) continue;
        const nb_node *e = p->ctx->nodes[id];
        if (id < lo) lo = (uint32_t)id;
        for (size_t i = 0; i < e->nargs; i++) {
            live[e->args[i]->id] = true;
            uses[e->args[i]->id]++;
        }
    }
    for (size_t id = lo; id < n; id++) {
        if (!live[id]) continue;
        const nb_node *e = p->ctx->nodes[id];
        size[id] = 1;
        for (size_t i = 0; i < e->nargs; i++) {
            size[id] += size[e->args[i]->id];
            if (height[e->args[i]->id] + 1 > height[id]) height[id] = height[e->args[i]->id] + 1;
        }
    }
    if (size[root->id] <= TREE_LIMIT && height[root->id] <= DEPTH_LIMIT) goto done;
    p->base = lo;
    p->name = calloc(n - lo, sizeof *p->name);
    if (!p->name) {
        ok = false;
        goto done;
    }
    for (size_t id = lo; id < n; id++) {
        if (!live[id]) continue;
        const nb_node *e = p->ctx->nodes[id];
        uint32_t h = 0;
        double s = 1;
        for (size_t i = 0; i < e->nargs; i++) {
            const nb_node *a = e->args[i];
            bool named = p->name[a->id - lo] != 0;
            if (!named && height[a->id] + 1 > h) h = height[a->id] + 1;
            s += named ? 1 : size[a->id];
        }
        height[id] = h;
        size[id] = s;
        bool shared = uses[id] > 1 && s > 4 && e->nargs > 0;
        if (id != root->id && (shared || h >= DEPTH_LIMIT)) {
            p->name[id - lo] = ++*count;
            height[id] = 0;
            size[id] = 1;
        }
    }
done:
    free(live);
    free(uses);
    free(height);
    free(size);
    return ok;
}

static char *to_string(nb_ctx *ctx, const nb_expr *e, nb_format fmt, bool list_rows) {
    if (!e) return NULL;
    printer p = {ctx, fmt, list_rows || fmt != NB_FMT_ASCII, {NULL, 0, 0, false}, NULL, 0};
    uint32_t named;
    if (!plan_names(&p, e, &named)) return NULL;
    if (named) {
        /* Definitions in id order: each one's operands are printed before it. */
        uint32_t *order = p.name;
        for (uint32_t id = p.base; id <= e->id; id++) {
            uint32_t k = order[id - p.base];
            if (!k) continue;
            nb_sb_printf(&p.sb, "t%u = ", k);
            order[id - p.base] = 0; /* print the body itself, not its name */
            print_node(&p, ctx->nodes[id], P_LOW);
            order[id - p.base] = k;
            nb_sb_puts(&p.sb, latex(&p) ? " \\\\\n" : "\n");
        }
    }
    if (list_rows && e->op == NB_OP_TRANSPOSE && e->args[0]->op == NB_OP_VECLIT &&
        (!p.name || !p.name[e->args[0]->id - p.base]))
        print_literal(&p, e->args[0], true);
    else print_node(&p, e, P_LOW);
    free(p.name);
    if (p.sb.failed) {
        free(p.sb.buf);
        return NULL;
    }
    return p.sb.buf;
}

char *nb_to_string(nb_ctx *ctx, const nb_expr *e, nb_format fmt) { return to_string(ctx, e, fmt, false); }

/* A derivative as the paper writes it: a row of entries (the gradient w.r.t.
 * listed scalars) prints as its list [a, b], like a column of entries. */
char *nb_derivative_to_string(nb_ctx *ctx, const nb_expr *J, nb_format fmt) { return to_string(ctx, J, fmt, true); }

const char *nb_describe(nb_ctx *ctx, const nb_node *e, char *buf, size_t size) {
    char *s = nb_to_string(ctx, e, NB_FMT_ASCII);
    if (!s) snprintf(buf, size, "(expression)");
    else if (strlen(s) < size) snprintf(buf, size, "%s", s);
    else snprintf(buf, size, "%.*s...", (int)(size > 4 ? size - 4 : 0), s);
    free(s);
    return buf;
}
