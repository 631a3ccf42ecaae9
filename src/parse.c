/* The expression language (nb_parse) and declarations (nb_declare).
 *
 * A hand-written lexer and a recursive-descent parser with a nesting cap, so
 * that no input can exhaust the C stack.  Error positions are byte offsets
 * into the whole source (nb_error_column); the command-line tool turns them
 * into a line and a caret.
 *
 *   program    := { statement (';' | newline) } expression
 *   statement  := name '=' expression | expression
 *   expression := additive [ ('>' | '<' | '>=' | '<=') additive ]
 *   additive   := multiplicative { ('+' | '-') multiplicative }
 *   multiplicative := unary { ('*' | '·' | '/' | '.*' | '⊙' | './' | '⊘') unary }
 *   unary      := ('-' | '+') unary | power
 *   power      := postfix [ ('^' | '.^') unary ]          (right associative)
 *   postfix    := primary { "'" | 'ᵀ' | '[' index ']' | '[' index ',' index ']' | '[' ':' ',' index ']' }
 *   primary    := number | name | name '(' args ')' | '(' expression ')'
 *               | '[' expression, ... ']' | '[' '[' ... ']', ... ']'
 *
 * Newlines separate statements only outside brackets, and a line may end in a
 * binary operator to continue on the next one.  '#' starts a comment. */
#include "kron.h"
#include "matfn.h"
#include "nb_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper nesting than this (parentheses, unary minus chains, powers) is an
 * error rather than a risk to the stack. */
#define MAX_NESTING 200


/* UTF-8 spellings of the operator symbols. */
#define UTF8_SUPERSCRIPT_T "\xE1\xB5\x80" /* ᵀ U+1D40 */
#define UTF8_ODOT "\xE2\x8A\x99"          /* ⊙ U+2299 */
#define UTF8_OSLASH "\xE2\x8A\x98"        /* ⊘ U+2298 */
#define UTF8_MIDDLE_DOT "\xC2\xB7"        /* · U+00B7 */
#define UTF8_OTIMES "\xE2\x8A\x97"        /* ⊗ U+2297 */
#define UTF8_PI "\xCF\x80"                 /* π U+03C0 */

typedef enum {
    TOK_EOF,
    TOK_NEWLINE,
    TOK_NUMBER,
    TOK_NAME,
    TOK_PLUS,
    TOK_MINUS,
    TOK_STAR,
    TOK_SLASH,
    TOK_CARET,
    TOK_DOT_STAR,
    TOK_DOT_SLASH,
    TOK_DOT_CARET,
    TOK_TRANSPOSE,
    TOK_LPAREN,
    TOK_RPAREN,
    TOK_LBRACKET,
    TOK_RBRACKET,
    TOK_COMMA,
    TOK_SEMICOLON,
    TOK_COLON,
    TOK_ASSIGN,
    TOK_GT,
    TOK_GE,
    TOK_LT,
    TOK_LE,
    TOK_BAD /* a character that starts no token */
} token_kind;

typedef struct {
    token_kind kind;
    size_t start, len; /* bytes of the source */
} token;

/* Local definitions (name = expression), keyed by the name's bytes in the
 * source: open addressing, so thousands of definitions stay linear time. */
typedef struct {
    const char *name; /* NULL: empty slot */
    size_t len;
    nb_expr *value;
} definition;

typedef struct {
    definition *slots;
    size_t cap, count; /* cap is a power of two */
} definition_table;

typedef struct {
    nb_ctx *ctx;
    const char *src;
    size_t pos;      /* where the next token starts */
    size_t prev_end; /* end of the last token consumed: where EOF errors point */
    token tok;       /* the current token */
    int brackets;    /* open ( and [: newlines inside are plain spaces */
    int nesting;     /* recursion depth of parse_unary() */
    bool failed;     /* an error has been recorded */
    char *name;      /* scratch: the current name, NUL-terminated */
    size_t name_cap;
    definition_table defs;
    token defining; /* the name of the definition being parsed (len 0: none or a redefinition) */
    const char *const *keep; /* nb_parse_keeping: definitions made variables */
    size_t nkeep;
} parser;

/* ---- errors ----------------------------------------------------------- */

/* Records an error at byte offset `at`.  Keeps the first error only. */
static void fail_at(parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_at(parser *p, size_t at, const char *fmt, ...) {
    if (p->failed) return;
    char msg[sizeof p->ctx->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nb_set_error(p->ctx, "%s", msg);
    p->ctx->error_column = at <= INT32_MAX ? (int)at : -1;
    p->failed = true;
}

/* A builder returned NULL: keep its message, point at the responsible token. */
static nb_expr *builder_failed(parser *p, size_t at) {
    if (!p->failed) {
        if (!nb_error(p->ctx)[0]) nb_set_error(p->ctx, "out of memory");
        p->ctx->error_column = at <= INT32_MAX ? (int)at : -1;
        p->failed = true;
    }
    return NULL;
}

static nb_expr *check_built(parser *p, nb_expr *e, size_t at) { return e ? e : builder_failed(p, at); }

/* Length of the UTF-8 sequence at s, or 0 if it is not valid UTF-8. */
static size_t utf8_length(const unsigned char *s) {
    size_t n;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) n = 4;
    else return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Describes a token for a message: 'x', end of line, end of input. */
static const char *describe_token(const parser *p, token t, char *buf, size_t size) {
    if (t.kind == TOK_EOF) return "end of input";
    if (t.kind == TOK_NEWLINE) return "end of line";
    const unsigned char *s = (const unsigned char *)p->src + t.start;
    if (t.kind == TOK_BAD && (s[0] < 0x20 || s[0] == 0x7F || utf8_length(s) == 0)) {
        snprintf(buf, size, "character '\\x%02X'", s[0]);
        return buf;
    }
    int len = t.len > 40 ? 40 : (int)t.len;
    snprintf(buf, size, "%s'%.*s%s'", t.kind == TOK_BAD ? "character " : "", len, p->src + t.start,
             len < (int)t.len ? "..." : "");
    return buf;
}

typedef struct function_info function_info;
static const function_info *find_function(const char *name);

/* An error at the current token; at the end of input it points just after
 * the last token, where the missing piece belongs. */
static void fail_unexpected(parser *p, const char *expected) {
    char what[96];
    const char *found = describe_token(p, p->tok, what, sizeof what);
    size_t at = p->tok.kind == TOK_EOF ? p->prev_end : p->tok.start;
    if (p->tok.kind == TOK_BAD && strncmp(p->src + p->tok.start, UTF8_OTIMES, 3) == 0)
        fail_at(p, at, "'⊗' is ambiguous: the paper writes it for the element-wise product, most texts for the "
                       "Kronecker product; write ⊙ or .* for the element-wise product%s",
                find_function("kron") ? ", kron(A, B) for the Kronecker product" : "");
    else if (expected && p->tok.kind != TOK_BAD) fail_at(p, at, "expected %s, found %s", expected, found);
    else fail_at(p, at, "unexpected %s", found);
}

/* ---- lexer ------------------------------------------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static size_t scan_digits(const char *s, size_t i) {
    while (is_digit(s[i])) i++;
    return i;
}

/* A number: digits [. digits] [e [sign] digits], or . digits [...].  A number
 * never ends in '.', so "2.*x" is 2 .* x. */
static size_t scan_number(const char *s, size_t i) {
    i = scan_digits(s, i);
    if (s[i] == '.' && is_digit(s[i + 1])) i = scan_digits(s, i + 1);
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (is_digit(s[j])) i = scan_digits(s, j);
    }
    return i;
}

static void advance(parser *p) {
    const char *s = p->src;
    size_t i = p->pos;
    if (p->tok.kind != TOK_NEWLINE) p->prev_end = p->tok.start + p->tok.len;
    for (;;) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || (s[i] == '\n' && p->brackets > 0)) i++;
        else if (s[i] == '#')
            while (s[i] && s[i] != '\n') i++;
        else break;
    }
    token t = {TOK_BAD, i, 1};
    char c = s[i];
    if (c == 0) t = (token){TOK_EOF, i, 0};
    else if (c == '\n') t.kind = TOK_NEWLINE;
    else if (is_digit(c) || (c == '.' && is_digit(s[i + 1]))) t = (token){TOK_NUMBER, i, scan_number(s, i) - i};
    else if (is_name_start(c)) {
        size_t j = i;
        while (is_name_char(s[j])) j++;
        t = (token){TOK_NAME, i, j - i};
    } else if (c == '.' && (s[i + 1] == '*' || s[i + 1] == '/' || s[i + 1] == '^')) {
        t.kind = s[i + 1] == '*' ? TOK_DOT_STAR : s[i + 1] == '/' ? TOK_DOT_SLASH : TOK_DOT_CARET;
        t.len = 2;
    } else if ((c == '>' || c == '<') && s[i + 1] == '=') {
        t.kind = c == '>' ? TOK_GE : TOK_LE;
        t.len = 2;
    } else if (strncmp(s + i, UTF8_SUPERSCRIPT_T, 3) == 0) t = (token){TOK_TRANSPOSE, i, 3};
    else if (strncmp(s + i, UTF8_ODOT, 3) == 0) t = (token){TOK_DOT_STAR, i, 3};
    else if (strncmp(s + i, UTF8_OSLASH, 3) == 0) t = (token){TOK_DOT_SLASH, i, 3};
    else if (strncmp(s + i, UTF8_MIDDLE_DOT, 2) == 0) t = (token){TOK_STAR, i, 2};
    else if (strncmp(s + i, UTF8_PI, 2) == 0) t = (token){TOK_NAME, i, 2};
    else {
        switch (c) {
        case '+': t.kind = TOK_PLUS; break;
        case '-': t.kind = TOK_MINUS; break;
        case '*': t.kind = TOK_STAR; break;
        case '/': t.kind = TOK_SLASH; break;
        case '^': t.kind = TOK_CARET; break;
        case '\'': t.kind = TOK_TRANSPOSE; break;
        case '(': t.kind = TOK_LPAREN; break;
        case ')': t.kind = TOK_RPAREN; break;
        case '[': t.kind = TOK_LBRACKET; break;
        case ']': t.kind = TOK_RBRACKET; break;
        case ',': t.kind = TOK_COMMA; break;
        case ';': t.kind = TOK_SEMICOLON; break;
        case ':': t.kind = TOK_COLON; break;
        case '=': t.kind = TOK_ASSIGN; break;
        case '>': t.kind = TOK_GT; break;
        case '<': t.kind = TOK_LT; break;
        default: { /* a whole UTF-8 character, so the message can show it */
            size_t n = utf8_length((const unsigned char *)s + i);
            t.len = n ? n : 1;
        }
        }
    }
    p->tok = t;
    p->pos = t.start + t.len;
}

/* The kind of the token after the current one, without consuming anything. */
static token_kind peek(parser *p) {
    size_t pos = p->pos, prev_end = p->prev_end;
    token tok = p->tok;
    advance(p);
    token_kind next = p->tok.kind;
    p->pos = pos;
    p->prev_end = prev_end;
    p->tok = tok;
    return next;
}

/* Opening and closing brackets: newlines inside them are spaces.  The
 * counter changes before the next token is lexed. */
static void open_bracket(parser *p) {
    p->brackets++;
    advance(p);
}

static bool close_bracket(parser *p, token_kind closer, const char *expected) {
    if (p->tok.kind != closer) {
        fail_unexpected(p, expected);
        return false;
    }
    p->brackets--;
    advance(p);
    return true;
}

/* Copies the current token's text into p->name; false when out of memory. */
static bool take_name(parser *p) {
    size_t len = p->tok.len;
    if (len + 1 > p->name_cap) {
        size_t cap = p->name_cap ? p->name_cap : 32;
        while (cap < len + 1) cap *= 2;
        char *name = realloc(p->name, cap);
        if (!name) {
            fail_at(p, p->tok.start, "out of memory");
            return false;
        }
        p->name = name;
        p->name_cap = cap;
    }
    memcpy(p->name, p->src + p->tok.start, len);
    p->name[len] = 0;
    return true;
}

/* ---- local definitions ------------------------------------------------ */

static uint64_t hash_name(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static definition *find_slot(definition_table *t, const char *name, size_t len) {
    size_t i = hash_name(name, len) & (t->cap - 1);
    while (t->slots[i].name && (t->slots[i].len != len || memcmp(t->slots[i].name, name, len) != 0))
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static nb_expr *lookup_definition(definition_table *t, const char *name, size_t len) {
    if (!t->count) return NULL;
    return find_slot(t, name, len)->value;
}

/* Binds (or rebinds) name; false when out of memory. */
static bool define(definition_table *t, const char *name, size_t len, nb_expr *value) {
    if (2 * (t->count + 1) > t->cap) {
        definition_table bigger = {NULL, t->cap ? 2 * t->cap : 64, 0};
        bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
        if (!bigger.slots) return false;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].name) *find_slot(&bigger, t->slots[i].name, t->slots[i].len) = t->slots[i];
        bigger.count = t->count;
        free(t->slots);
        *t = bigger;
    }
    definition *slot = find_slot(t, name, len);
    if (!slot->name) t->count++;
    *slot = (definition){name, len, value};
    return true;
}

/* ---- numbers ---------------------------------------------------------- */

/* Decimals with few digits become exact rationals ("0.5" -> 1/2, "1e-3" ->
 * 1/1000); anything longer is a double. */
#define EXACT_MAX_INTEGER INT64_C(1000000000000000) /* 1e15 */
#define EXACT_MAX_DIGITS 2                           /* significant digits of a fraction */
#define EXACT_MAX_DECIMALS 4                         /* denominator up to 1e4 */

static nb_expr *parse_number(parser *p) {
    token t = p->tok;
    const char *s = p->src + t.start;
    /* value = mantissa * 10^exponent, exactly, while the mantissa fits */
    int64_t mantissa = 0;
    int digits = 0, exponent = 0;
    bool too_many_digits = false, seen_dot = false;
    size_t i = 0;
    for (; i < t.len && (is_digit(s[i]) || s[i] == '.'); i++) {
        if (s[i] == '.') {
            seen_dot = true;
            continue;
        }
        if (seen_dot) exponent--;
        if (digits == 0 && s[i] == '0') continue;
        if (digits < 18) mantissa = mantissa * 10 + (s[i] - '0'), digits++;
        else too_many_digits = true;
    }
    if (i < t.len) { /* the exponent: e [sign] digits, saturated */
        long e = strtol(s + i + 1, NULL, 10);
        exponent += e > 10000 ? 10000 : e < -10000 ? -10000 : (int)e;
    }
    advance(p);
    if (!too_many_digits) {
        if (mantissa == 0) return check_built(p, nb_rational(p->ctx, 0, 1), t.start);
        while (mantissa % 10 == 0) mantissa /= 10, exponent++;
        digits = 0;
        for (int64_t m = mantissa; m; m /= 10) digits++;
        if (exponent >= 0) {
            int64_t value = mantissa;
            while (exponent > 0 && value <= EXACT_MAX_INTEGER / 10) value *= 10, exponent--;
            if (exponent == 0 && value <= EXACT_MAX_INTEGER) return check_built(p, nb_rational(p->ctx, value, 1), t.start);
        } else if (-exponent <= EXACT_MAX_DECIMALS && digits <= EXACT_MAX_DIGITS) {
            int64_t den = 1;
            for (int k = 0; k < -exponent; k++) den *= 10;
            return check_built(p, nb_rational(p->ctx, mantissa, den), t.start);
        }
    }
    char *text = malloc(t.len + 1);
    if (!text) {
        fail_at(p, t.start, "out of memory");
        return NULL;
    }
    memcpy(text, s, t.len);
    text[t.len] = 0;
    double v = strtod(text, NULL); /* underflow gives 0 or a subnormal: fine */
    free(text);
    if (isinf(v)) {
        fail_at(p, t.start, "number too large");
        return NULL;
    }
    return check_built(p, nb_num(p->ctx, v), t.start);
}

/* ---- expressions ------------------------------------------------------ */

static nb_expr *parse_expression(parser *p);
static nb_expr *parse_unary(parser *p);

struct function_info {
    const char *name;
    int arity;
    nb_expr *(*unary)(nb_ctx *, nb_expr *);
    nb_expr *(*binary)(nb_ctx *, nb_expr *, nb_expr *);
};

/* Generated from the registry: every operator with a call syntax, then the
 * other spellings (ops.def).  Operators without one have the name "". */
static const function_info functions[] = {
#define OP(id, arity, cls, flags, builder, parse, unicode, ascii, latex) \
    {parse, NB_BUILDER_ARITY(builder), NB_BUILDER1(builder), NB_BUILDER2(builder)},
#define SPELLING(name, builder) {name, NB_BUILDER_ARITY(builder), NB_BUILDER1(builder), NB_BUILDER2(builder)},
#include "ops.def"
#undef OP
#undef SPELLING
};

static const function_info *find_function(const char *name) {
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
        if (strcmp(functions[i].name, name) == 0) return &functions[i];
    return NULL;
}

static nb_dim parse_dim(parser *p);

/* ones(n), ones(m, n), zeros(n), zeros(m, n), eye(n): constant arrays, the
 * parseable spelling of the paper's 1, 0 and I. */
static nb_expr *parse_shaped_constant(parser *p, token name, int value, bool identity) {
    advance(p); /* the name; now at '(' */
    open_bracket(p);
    nb_dim dims[2] = {0, 0};
    int ndims = 0;
    for (;;) {
        if (ndims == 2) {
            fail_at(p, name.start, "'%s' takes one or two sizes", identity ? "eye" : value ? "ones" : "zeros");
            return NULL;
        }
        if (!(dims[ndims++] = parse_dim(p))) return NULL;
        if (p->tok.kind != TOK_COMMA) break;
        advance(p);
    }
    if (!close_bracket(p, TOK_RPAREN, "',' or ')'")) return NULL;
    if (identity && ndims != 1) {
        fail_at(p, name.start, "'eye' takes one size");
        return NULL;
    }
    if (identity) return check_built(p, nb_identity(p->ctx, dims[0]), name.start);
    nb_type t = ndims == 1 ? nb_vector_type(dims[0]) : nb_matrix_type(dims[0], dims[1]);
    return check_built(p, nb_const(p->ctx, nb_number_int(value), t), name.start);
}

/* name '(' args ')', the current token being the name. */
static nb_expr *parse_call(parser *p) {
    token name = p->tok;
    if (!take_name(p)) return NULL;
    if (strcmp(p->name, "ones") == 0 || strcmp(p->name, "zeros") == 0 || strcmp(p->name, "eye") == 0)
        return parse_shaped_constant(p, name, p->name[0] == 'o', p->name[0] == 'e');
    const function_info *f = find_function(p->name);
    if (!f) {
        if (nb_lookup(p->ctx, p->name) || lookup_definition(&p->defs, p->src + name.start, name.len))
            fail_at(p, name.start, "'%s' is not a function (write '%s*(...)' for a product)", p->name, p->name);
        else fail_at(p, name.start, "unknown function '%s'", p->name);
        return NULL;
    }
    advance(p); /* the name; now at '(' */
    open_bracket(p);
    nb_expr *args[2] = {NULL, NULL};
    int nargs = 0;
    if (p->tok.kind != TOK_RPAREN) {
        for (;;) {
            nb_expr *arg = parse_expression(p);
            if (!arg) return NULL;
            if (nargs < 2) args[nargs] = arg;
            nargs++;
            if (p->tok.kind != TOK_COMMA) break;
            advance(p);
        }
    }
    if (!close_bracket(p, TOK_RPAREN, "',' or ')'")) return NULL;
    if (nargs != f->arity) {
        fail_at(p, name.start, "'%s' takes %d argument%s, got %d", f->name, f->arity, f->arity == 1 ? "" : "s", nargs);
        return NULL;
    }
    nb_expr *e = f->arity == 1 ? f->unary(p->ctx, args[0]) : f->binary(p->ctx, args[0], args[1]);
    return check_built(p, e, name.start);
}

static bool is_dimension_symbol(const nb_ctx *ctx, const char *name) {
    for (size_t i = 0; i < ctx->ndims; i++)
        if (strcmp(ctx->dims[i].name, name) == 0) return true;
    return false;
}

/* A name: a declared variable, a local definition, a dimension symbol used as
 * a value, or else a new scalar variable. */
static nb_expr *parse_name(parser *p) {
    token t = p->tok;
    if (!take_name(p)) return NULL;
    advance(p);
    nb_expr *e = nb_lookup(p->ctx, p->name);
    if (!e) e = lookup_definition(&p->defs, p->src + t.start, t.len);
    if (e) return e;
    if (p->defining.len == t.len && memcmp(p->src + p->defining.start, p->src + t.start, t.len) == 0) {
        fail_at(p, t.start, "'%s' is used in its own definition, before it has a value", p->name);
        return NULL;
    }
    if (is_dimension_symbol(p->ctx, p->name)) e = nb_dimval(p->ctx, nb_dim_symbol(p->ctx, p->name));
    else if (strcmp(p->name, "e") == 0) e = nb_exp(p->ctx, nb_num(p->ctx, 1));
    else if (strcmp(p->name, "pi") == 0 || strcmp(p->name, UTF8_PI) == 0) e = nb_num(p->ctx, NB_PI);
    else e = nb_var(p->ctx, p->name, nb_scalar_type());
    return check_built(p, e, t.start);
}

/* A growable array of expressions for literals. */
typedef struct {
    nb_expr **items;
    size_t count, cap;
} expr_list;

static bool push(parser *p, expr_list *l, nb_expr *e) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        nb_expr **items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            fail_at(p, p->tok.start, "out of memory");
            return false;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = e;
    return true;
}

/* entry, ... ']' after the '[' at byte `open`, appending the (scalar)
 * entries to l.  Returns the number of entries, or 0 on error. */
static size_t parse_entries(parser *p, expr_list *l, size_t open) {
    size_t count = 0;
    if (p->tok.kind == TOK_RBRACKET) {
        fail_at(p, open, "empty brackets: a literal needs at least one entry");
        return 0;
    }
    for (;;) {
        size_t at = p->tok.start;
        nb_expr *e = parse_expression(p);
        if (!e) return 0;
        if (nb_type_of(e).kind != NB_SCALAR) {
            char type[96];
            fail_at(p, at, "entries of a literal must be scalars, this one is %s",
                    nb_type_str(p->ctx, nb_type_of(e), type, sizeof type));
            return 0;
        }
        if (!push(p, l, e)) return 0;
        count++;
        if (p->tok.kind != TOK_COMMA) break;
        advance(p);
    }
    return close_bracket(p, TOK_RBRACKET, "',' or ']'") ? count : 0;
}

/* Whether token kind k after a closing bracket continues an expression
 * (a postfix or binary operator). */
static bool continues_expression(token_kind k) {
    switch (k) {
    case TOK_TRANSPOSE: case TOK_LBRACKET: case TOK_PLUS: case TOK_MINUS: case TOK_STAR: case TOK_SLASH:
    case TOK_CARET: case TOK_DOT_STAR: case TOK_DOT_SLASH: case TOK_DOT_CARET: case TOK_GT: case TOK_GE:
    case TOK_LT: case TOK_LE: return true;
    default: return false;
    }
}

/* Whether the '[' at the current token opens a matrix row rather than the
 * first entry of a vector, as in [[a, b]'*x, c] (a row literal times x):
 * a row's matching ']' is not followed by an operator.  Looks ahead without
 * consuming anything. */
static bool opens_matrix_row(parser *p) {
    size_t pos = p->pos, prev_end = p->prev_end;
    token tok = p->tok;
    int depth = 0;
    bool row = true;
    for (;;) {
        token_kind k = p->tok.kind;
        if (k == TOK_EOF || k == TOK_BAD) break; /* the matrix path reports it */
        if (k == TOK_LBRACKET || k == TOK_LPAREN) depth++;
        if ((k == TOK_RBRACKET || k == TOK_RPAREN) && --depth == 0) {
            advance(p);
            row = !continues_expression(p->tok.kind);
            break;
        }
        advance(p);
    }
    p->pos = pos;
    p->prev_end = prev_end;
    p->tok = tok;
    return row;
}

/* [a, b, c] or [[a, b], [c, d]]; the current token is '['. */
static nb_expr *parse_literal(parser *p) {
    size_t open = p->tok.start;
    expr_list entries = {NULL, 0, 0};
    nb_expr *result = NULL;
    open_bracket(p);
    if (p->tok.kind != TOK_LBRACKET || !opens_matrix_row(p)) {
        size_t n = parse_entries(p, &entries, open);
        if (n) result = check_built(p, nb_vector_lit(p->ctx, n, entries.items), open);
        free(entries.items);
        return result;
    }
    size_t rows = 0, cols = 0;
    for (;;) {
        size_t row_start = p->tok.start;
        if (p->tok.kind != TOK_LBRACKET) {
            fail_unexpected(p, "'[' starting a matrix row");
            goto done;
        }
        open_bracket(p);
        size_t n = parse_entries(p, &entries, row_start);
        if (!n) goto done;
        if (rows > 0 && n != cols) {
            fail_at(p, row_start, "row %zu of the matrix has %zu entr%s, row 1 has %zu", rows + 1, n, n == 1 ? "y" : "ies",
                    cols);
            goto done;
        }
        cols = n;
        rows++;
        if (p->tok.kind != TOK_COMMA) break;
        advance(p);
    }
    if (close_bracket(p, TOK_RBRACKET, "',' or ']'"))
        result = check_built(p, nb_matrix_lit(p->ctx, rows, cols, entries.items), open);
done:
    free(entries.items);
    return result;
}

static nb_expr *parse_primary(parser *p) {
    switch (p->tok.kind) {
    case TOK_NUMBER: return parse_number(p);
    case TOK_NAME: return peek(p) == TOK_LPAREN ? parse_call(p) : parse_name(p);
    case TOK_LBRACKET: return parse_literal(p);
    case TOK_LPAREN: {
        open_bracket(p);
        nb_expr *e = parse_expression(p);
        if (!e || !close_bracket(p, TOK_RPAREN, "')'")) return NULL;
        return e;
    }
    default: fail_unexpected(p, "an expression"); return NULL;
    }
}

/* One 1-based index within a dimension of size `size` (a number: an index
 * into a symbolic size could not be checked before evaluation); returns it
 * 0-based, or -1 after an error. */
static int64_t parse_index(parser *p, nb_dim size) {
    token t = p->tok;
    const char *s = p->src + t.start;
    if (t.kind != TOK_NUMBER || strspn(s, "0123456789") != t.len) {
        fail_unexpected(p, "an index (a positive integer)");
        return -1;
    }
    char dim[32];
    if (size < 0) { /* its size is only known when values are given */
        fail_at(p, t.start, "indexing needs a numeric size, not %s", nb_dim_name(p->ctx, size, dim, sizeof dim));
        return -1;
    }
    int64_t k = 0;
    for (size_t i = 0; i < t.len && k <= INT32_MAX; i++) k = k * 10 + (s[i] - '0');
    if (k < 1 || k > size) {
        fail_at(p, t.start, "index %.*s is outside 1..%lld", (int)(t.len > 20 ? 20 : t.len), s, (long long)size);
        return -1;
    }
    advance(p);
    return k - 1;
}

/* e[i] (vector or row), e[i, j] (matrix), e[:, k] (column k); 1-based. */
static nb_expr *parse_index_suffix(parser *p, nb_expr *e) {
    size_t open = p->tok.start;
    nb_type t = nb_type_of(e);
    char type[96];
    open_bracket(p);
    nb_expr *r = NULL;
    if (t.kind == NB_SCALAR) {
        fail_at(p, open, "a scalar cannot be indexed");
        return NULL;
    }
    if (p->tok.kind == TOK_COLON) {
        advance(p);
        if (p->tok.kind != TOK_COMMA) {
            fail_unexpected(p, "',' after ':'");
            return NULL;
        }
        advance(p);
        int64_t k = parse_index(p, t.cols);
        if (k < 0) return NULL;
        r = nb_column(p->ctx, e, k);
    } else {
        int64_t i = parse_index(p, t.kind == NB_ROW ? t.cols : t.rows);
        if (i < 0) return NULL;
        if (t.kind == NB_MATRIX) {
            if (p->tok.kind != TOK_COMMA) {
                fail_at(p, open, "a matrix (%s) takes two indices, [i, j] or [:, j]", nb_type_str(p->ctx, t, type, sizeof type));
                return NULL;
            }
            advance(p);
            int64_t j = parse_index(p, t.cols);
            if (j < 0) return NULL;
            r = nb_entry(p->ctx, e, i, j);
        } else {
            r = t.kind == NB_ROW ? nb_entry(p->ctx, e, 0, i) : nb_entry(p->ctx, e, i, 0);
        }
    }
    if (!close_bracket(p, TOK_RBRACKET, "']'")) return NULL;
    return check_built(p, r, open);
}

static nb_expr *parse_postfix(parser *p) {
    nb_expr *e = parse_primary(p);
    while (e && (p->tok.kind == TOK_TRANSPOSE || p->tok.kind == TOK_LBRACKET)) {
        size_t at = p->tok.start;
        if (p->tok.kind == TOK_LBRACKET) {
            e = parse_index_suffix(p, e);
            continue;
        }
        advance(p);
        e = check_built(p, nb_transpose(p->ctx, e), at);
    }
    return e;
}

static nb_expr *parse_power(parser *p) {
    nb_expr *base = parse_postfix(p);
    if (!base || (p->tok.kind != TOK_CARET && p->tok.kind != TOK_DOT_CARET)) return base;
    token op = p->tok;
    advance(p);
    nb_expr *exponent = parse_unary(p);
    int64_t power;
    if (!exponent) return NULL;
    if (op.kind == TOK_CARET && nb_type_of(base).kind == NB_MATRIX && nb_type_of(exponent).kind == NB_SCALAR &&
        nb_integer_value(exponent, &power)) /* X^k: a matrix power */
        return check_built(p, nb_matpow(p->ctx, base, power), op.start);
    if (op.kind == TOK_CARET && nb_type_of(base).kind != NB_SCALAR) {
        char type[96];
        fail_at(p, op.start, "'^' needs a scalar base, not %s; use '.^' for an element-wise power",
                nb_type_str(p->ctx, nb_type_of(base), type, sizeof type));
        return NULL;
    }
    /* e^x is exp(x), so that it differentiates to itself */
    if (base == nb_exp(p->ctx, nb_num(p->ctx, 1))) return check_built(p, nb_exp(p->ctx, exponent), op.start);
    return check_built(p, nb_pow(p->ctx, base, exponent), op.start);
}

static nb_expr *parse_unary(parser *p) {
    while (p->tok.kind == TOK_NEWLINE) advance(p); /* a line ending in an operator continues */
    if (p->nesting >= MAX_NESTING) {
        fail_at(p, p->tok.start, "expression nested too deeply (more than %d levels)", MAX_NESTING);
        return NULL;
    }
    p->nesting++;
    nb_expr *e;
    token op = p->tok;
    if (op.kind == TOK_MINUS || op.kind == TOK_PLUS) {
        advance(p);
        e = parse_unary(p);
        if (e && op.kind == TOK_MINUS) e = check_built(p, nb_neg(p->ctx, e), op.start);
    } else {
        e = parse_power(p);
    }
    p->nesting--;
    return e;
}

static nb_expr *apply_product(parser *p, token op, nb_expr *a, nb_expr *b) {
    char ta[96], tb[96];
    bool scalars = nb_type_of(a).kind == NB_SCALAR || nb_type_of(b).kind == NB_SCALAR;
    nb_expr *e;
    switch (op.kind) {
    case TOK_STAR: e = scalars ? nb_mul(p->ctx, a, b) : nb_matmul(p->ctx, a, b); break;
    case TOK_DOT_STAR: e = nb_mul(p->ctx, a, b); break;
    case TOK_SLASH:
        if (nb_type_of(b).kind != NB_SCALAR) {
            fail_at(p, op.start, "'/' needs a scalar divisor, not %s / %s; use './' for element-wise division",
                    nb_type_str(p->ctx, nb_type_of(a), ta, sizeof ta), nb_type_str(p->ctx, nb_type_of(b), tb, sizeof tb));
            return NULL;
        }
        e = nb_div(p->ctx, a, b);
        break;
    default: e = nb_div(p->ctx, a, b); break; /* TOK_DOT_SLASH */
    }
    return check_built(p, e, op.start);
}

static nb_expr *parse_multiplicative(parser *p) {
    nb_expr *e = parse_unary(p);
    while (e && (p->tok.kind == TOK_STAR || p->tok.kind == TOK_SLASH || p->tok.kind == TOK_DOT_STAR ||
                 p->tok.kind == TOK_DOT_SLASH)) {
        token op = p->tok;
        advance(p);
        nb_expr *rhs = parse_unary(p);
        e = rhs ? apply_product(p, op, e, rhs) : NULL;
    }
    return e;
}

static nb_expr *parse_additive(parser *p) {
    nb_expr *e = parse_multiplicative(p);
    while (e && (p->tok.kind == TOK_PLUS || p->tok.kind == TOK_MINUS)) {
        token op = p->tok;
        advance(p);
        nb_expr *rhs = parse_multiplicative(p);
        if (!rhs) return NULL;
        e = check_built(p, op.kind == TOK_PLUS ? nb_add(p->ctx, e, rhs) : nb_sub(p->ctx, e, rhs), op.start);
    }
    return e;
}

static const char *comparison_operator(token_kind k) {
    switch (k) {
    case TOK_GT: return ">";
    case TOK_GE: return ">=";
    case TOK_LT: return "<";
    case TOK_LE: return "<=";
    default: return NULL;
    }
}

static nb_expr *parse_expression(parser *p) {
    nb_expr *e = parse_additive(p);
    const char *op = e ? comparison_operator(p->tok.kind) : NULL;
    if (!op) return e;
    size_t at = p->tok.start;
    advance(p);
    nb_expr *rhs = parse_additive(p);
    if (!rhs) return NULL;
    if (comparison_operator(p->tok.kind)) {
        fail_at(p, p->tok.start, "comparisons cannot be chained; use parentheses");
        return NULL;
    }
    return check_built(p, nb_compare(p->ctx, op, e, rhs), at);
}

/* ---- statements ------------------------------------------------------- */

static bool at_separator(const parser *p) { return p->tok.kind == TOK_SEMICOLON || p->tok.kind == TOK_NEWLINE; }

/* After a statement: a separator or the end.  "3x" lands here. */
static bool end_statement(parser *p) {
    if (at_separator(p) || p->tok.kind == TOK_EOF) return true;
    if (p->tok.kind == TOK_NAME || p->tok.kind == TOK_NUMBER || p->tok.kind == TOK_LPAREN ||
        p->tok.kind == TOK_LBRACKET) {
        char what[96];
        fail_at(p, p->tok.start, "missing operator before %s", describe_token(p, p->tok, what, sizeof what));
    } else {
        fail_unexpected(p, NULL);
    }
    return false;
}

static nb_expr *parse_program(parser *p) {
    nb_expr *result = NULL;
    size_t result_start = 0, last_definition = 0;
    advance(p);
    for (;;) {
        while (at_separator(p)) advance(p);
        if (p->tok.kind == TOK_EOF) break;
        if (result) { /* an expression statement that was not the last */
            fail_at(p, result_start, "only the last statement can be an expression; define names with 'name = ...'");
            return NULL;
        }
        if (p->tok.kind == TOK_NAME && peek(p) == TOK_ASSIGN) {
            token name = p->tok;
            if (!take_name(p)) return NULL;
            if (nb_lookup(p->ctx, p->name)) {
                fail_at(p, name.start, "'%s' is a variable and cannot be redefined", p->name);
                return NULL;
            }
            advance(p);
            advance(p);
            /* u = u*2 means the earlier u; without one it is an error */
            p->defining = lookup_definition(&p->defs, p->src + name.start, name.len) ? (token){TOK_NAME, 0, 0} : name;
            nb_expr *value = parse_expression(p);
            p->defining.len = 0;
            if (!value || !end_statement(p)) return NULL;
            for (size_t k = 0; k < p->nkeep; k++)
                if (strlen(p->keep[k]) == name.len && memcmp(p->keep[k], p->src + name.start, name.len) == 0 &&
                    !(value = nb_var(p->ctx, p->keep[k], value->type))) {
                    fail_at(p, name.start, "%s", nb_error(p->ctx));
                    return NULL;
                }
            if (!define(&p->defs, p->src + name.start, name.len, value) ||
                nb_record_definition(p->ctx, p->src + name.start, name.len, value)) {
                fail_at(p, name.start, "out of memory");
                return NULL;
            }
            last_definition = name.start;
            continue;
        }
        result_start = p->tok.start;
        nb_expr *e = parse_expression(p);
        if (!e || !end_statement(p)) return NULL;
        result = e;
    }
    if (!result) {
        if (p->defs.count) fail_at(p, last_definition, "the last statement must be an expression, not a definition");
        else fail_at(p, p->tok.start, "empty expression");
    }
    return result;
}

static void parser_init(parser *p, nb_ctx *ctx, const char *src) {
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->src = src;
    p->tok.kind = TOK_EOF;
    nb_clear_error(ctx);
}

static void parser_free(parser *p) {
    free(p->name);
    free(p->defs.slots);
}

nb_expr *nb_parse(nb_ctx *ctx, const char *src) { return nb_parse_keeping(ctx, src, 0, NULL); }

nb_expr *nb_parse_keeping(nb_ctx *ctx, const char *src, size_t nkeep, const char *const *keep) {
    if (!ctx) return NULL;
    if (!src) {
        nb_set_error(ctx, "nb_parse: no source text");
        return NULL;
    }
    parser p;
    parser_init(&p, ctx, src);
    p.keep = keep;
    p.nkeep = keep ? nkeep : 0;
    nb_forget_definitions(ctx);
    nb_expr *e = parse_program(&p);
    parser_free(&p);
    return e;
}

/* ---- declarations ----------------------------------------------------- */

/* A dimension: a positive integer or a symbol. 0 on error. */
static nb_dim parse_dim_factor(parser *p) {
    token t = p->tok;
    if (t.kind == TOK_NAME) {
        if (!take_name(p)) return 0;
        advance(p);
        nb_dim d = nb_dim_symbol(p->ctx, p->name);
        if (!d) fail_at(p, t.start, "out of memory");
        return d;
    }
    const char *s = p->src + t.start;
    if (t.kind != TOK_NUMBER || strspn(s, "0123456789") != t.len) {
        fail_unexpected(p, "a size (a positive integer or a name)");
        return 0;
    }
    int64_t n = 0;
    for (size_t i = 0; i < t.len && n <= INT32_MAX; i++) n = n * 10 + (s[i] - '0');
    if (n <= 0 || n > INT32_MAX) {
        fail_at(p, t.start, "a size must be between 1 and %d", INT32_MAX);
        return 0;
    }
    advance(p);
    return n;
}

/* A dimension, or a product of them: n·n, m*n (the sizes of vec(X), A ⊗ B; kron.c). */
static nb_dim parse_dim(parser *p) {
    nb_dim d = parse_dim_factor(p);
    while (d && p->tok.kind == TOK_STAR) {
        advance(p);
        nb_dim f = parse_dim_factor(p);
        d = f ? nb_dim_mul(p->ctx, d, f) : 0;
    }
    return d;
}

/* '(' dim [',' dim] ')' with ndims sizes. */
static bool parse_dims(parser *p, int ndims, nb_dim *dims) {
    if (p->tok.kind != TOK_LPAREN) {
        fail_unexpected(p, "'('");
        return false;
    }
    open_bracket(p);
    for (int i = 0; i < ndims; i++) {
        if (i > 0) {
            if (p->tok.kind != TOK_COMMA) {
                fail_unexpected(p, "','");
                return false;
            }
            advance(p);
        }
        if (!(dims[i] = parse_dim(p))) return false;
    }
    return close_bracket(p, TOK_RPAREN, "')'");
}

/* scalar | vector(n) | row(n) | matrix(m, n) */
static bool parse_type(parser *p, nb_type *type) {
    static const struct {
        const char *name;
        nb_kind kind;
        int ndims;
    } kinds[] = {{"scalar", NB_SCALAR, 0}, {"vector", NB_VECTOR, 1}, {"row", NB_ROW, 1}, {"matrix", NB_MATRIX, 2}};
    token t = p->tok;
    if (t.kind != TOK_NAME) {
        fail_unexpected(p, "a type");
        return false;
    }
    if (!take_name(p)) return false;
    size_t k = 0;
    while (k < sizeof kinds / sizeof kinds[0] && strcmp(kinds[k].name, p->name) != 0) k++;
    if (k == sizeof kinds / sizeof kinds[0]) {
        fail_at(p, t.start, "unknown type '%s' (expected scalar, vector(n), row(n) or matrix(m, n))", p->name);
        return false;
    }
    advance(p);
    nb_dim dims[2] = {1, 1};
    if (kinds[k].ndims && !parse_dims(p, kinds[k].ndims, dims)) return false;
    switch (kinds[k].kind) {
    case NB_SCALAR: *type = nb_scalar_type(); break;
    case NB_VECTOR: *type = nb_vector_type(dims[0]); break;
    case NB_ROW: *type = nb_row_type(dims[0]); break;
    case NB_MATRIX: *type = nb_matrix_type(dims[0], dims[1]); break;
    }
    return true;
}

/* name, name, ...: type */
static bool parse_declaration(parser *p) {
    token first = p->tok;
    size_t count = 0;
    for (;;) {
        if (p->tok.kind != TOK_NAME) {
            fail_unexpected(p, "a variable name");
            return false;
        }
        count++;
        advance(p);
        if (p->tok.kind != TOK_COMMA) break;
        advance(p);
    }
    if (p->tok.kind != TOK_COLON) {
        fail_unexpected(p, "':' and a type");
        return false;
    }
    advance(p);
    nb_type type;
    if (!parse_type(p, &type)) return false;
    if (!at_separator(p) && p->tok.kind != TOK_EOF) {
        fail_unexpected(p, "';' or end of line");
        return false;
    }
    /* Declare the names, now that the type is known: re-lex the name list. */
    size_t resume = p->pos;
    token after = p->tok;
    p->pos = first.start;
    advance(p);
    for (size_t i = 0; i < count; i++) {
        if (!take_name(p)) return false;
        if (!nb_var(p->ctx, p->name, type)) {
            builder_failed(p, p->tok.start);
            return false;
        }
        advance(p);
        advance(p); /* the ',' or ':' */
    }
    p->pos = resume;
    p->tok = after;
    return true;
}

int nb_declare(nb_ctx *ctx, const char *decls) {
    if (!ctx) return -1;
    if (!decls) return nb_set_error(ctx, "nb_declare: no declarations");
    parser p;
    parser_init(&p, ctx, decls);
    advance(&p);
    for (;;) {
        while (at_separator(&p)) advance(&p);
        if (p.tok.kind == TOK_EOF || !parse_declaration(&p)) break;
    }
    parser_free(&p);
    return p.failed ? -1 : 0;
}
