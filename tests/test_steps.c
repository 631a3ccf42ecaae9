/* Derivations (nb_derivation, src/steps.c):
 *   - on random expressions over every element-wise operator of the registry
 *     (tests/ops_table.h), in both layouts, in every format and language, the
 *     derivation's last equation is plain nb_derivative's printed result;
 *   - a long chain gives a number of lines linear in its length, and a
 *     repeated subexpression is introduced once;
 *   - definitions name the intermediates; nb_parse_keeping makes one a
 *     variable (∂f/∂u);
 *   - regressions found reading the goldens (checked without pdflatex);
 *   - every error path: unknown language (listing the available ones),
 *     unknown format, missing arguments. */
#include "nabla.h"
#include "ops_table.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A random expression of depth <= depth over the vectors w, v and scalars
 * x, y: element-wise operators from the registry, sums, products, w'·v. */
static nb_expr *random_expr(nb_ctx *ctx, uint64_t *rng, int depth, bool vector) {
    const char *leaf = vector ? (next_u64(rng) % 2 ? "w" : "v") : (next_u64(rng) % 2 ? "x" : "y");
    if (depth == 0 || next_u64(rng) % 5 == 0) return nb_lookup(ctx, leaf);
    switch (next_u64(rng) % 6) {
    case 0: return test_op_apply(ctx, test_op_pick(NB_CLASS_EW_UNARY, next_u64(rng)), random_expr(ctx, rng, depth - 1, vector), NULL);
    case 1: {
        int op = test_op_pick(NB_CLASS_EW_BINARY, next_u64(rng));
        if (op == NB_OP_POW) return nb_pow(ctx, random_expr(ctx, rng, depth - 1, vector), nb_num(ctx, 2));
        return test_op_apply(ctx, op, random_expr(ctx, rng, depth - 1, vector), random_expr(ctx, rng, depth - 1, vector));
    }
    case 2: return nb_add(ctx, random_expr(ctx, rng, depth - 1, vector), random_expr(ctx, rng, depth - 1, next_u64(rng) % 2 && vector));
    case 3: return nb_mul(ctx, random_expr(ctx, rng, depth - 1, next_u64(rng) % 2 && vector), random_expr(ctx, rng, depth - 1, vector));
    case 4:
        return vector ? nb_mul(ctx, nb_num(ctx, -3), random_expr(ctx, rng, depth - 1, true))
                      : nb_sum(ctx, random_expr(ctx, rng, depth - 1, true));
    default:
        return vector ? nb_transpose(ctx, nb_transpose(ctx, random_expr(ctx, rng, depth - 1, true)))
                      : nb_matmul(ctx, nb_transpose(ctx, random_expr(ctx, rng, depth - 1, true)), nb_lookup(ctx, "v"));
    }
}

/* The last non-empty line of text (in place). */
static const char *last_line(char *text) {
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') text[--len] = 0;
    char *nl = strrchr(text, '\n');
    return nl ? nl + 1 : text;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *const formats[] = {"unicode", "ascii", "latex", "markdown"};

/* The derivation's last equation must read "… = plain result". */
static bool reaches_plain_result(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout,
                                 const char *format, const char *lang) {
    nb_format pf = strcmp(format, "ascii") == 0 ? NB_FMT_ASCII : strcmp(format, "unicode") == 0 ? NB_FMT_UNICODE : NB_FMT_LATEX;
    nb_expr *J = nb_derivative(ctx, f, nwrt, wrt, layout);
    char *plain = J ? nb_derivative_to_string(ctx, J, pf) : NULL;
    char *text = nb_derivation(ctx, f, nwrt, wrt, layout, format, lang);
    bool ok = false;
    if (plain && text) {
        char want[1 << 15];
        const char *line = last_line(text);
        if (strcmp(format, "latex") == 0) {
            ok = strcmp(line, "\\end{align*}") == 0;
            *(char *)line = 0;
            line = last_line(text);
            snprintf(want, sizeof want, " &= %s\\\\", plain);
        } else if (strcmp(format, "markdown") == 0) {
            ok = true;
            snprintf(want, sizeof want, " = %s$", plain);
        } else {
            ok = true;
            snprintf(want, sizeof want, " = %s", plain);
        }
        ok = ok && ends_with(line, want);
        if (!ok) printf("  got  %s\n  want ...%s\n", line, want);
    } else {
        printf("  error: %s\n", nb_error(ctx));
    }
    free(plain);
    free(text);
    return ok;
}

static void random_expressions(void) {
    int checked = 0;
    for (uint64_t seed = 1; seed <= 150; seed++) {
        nb_ctx *ctx = nb_ctx_new();
        nb_declare(ctx, "w, v: vector(n); x, y: scalar");
        uint64_t rng = seed;
        bool vector_f = seed % 3 == 0;
        nb_expr *f = random_expr(ctx, &rng, 4, vector_f);
        const char *names[] = {"w", "v", "x", "y"};
        for (size_t k = 0; f && k < 4; k++) {
            nb_expr *v = nb_lookup(ctx, names[k]);
            nb_layout layout = (seed + k) % 2 ? NB_DENOMINATOR : NB_NUMERATOR;
            if (!nb_derivative(ctx, f, 1, &v, layout)) {
                nb_clear_error(ctx); /* a tensor: nothing to derive */
                continue;
            }
            const char *format = formats[(seed + k) % 4];
            const char *lang = seed % 2 ? "zh" : "en";
            bool ok = reaches_plain_result(ctx, f, 1, &v, layout, format, lang);
            CHECK(ok, "seed %llu: the derivation of ∂f/∂%s (%s, %s) ends in plain diff's result", (unsigned long long)seed,
                  names[k], format, lang);
            checked++;
        }
        nb_ctx_free(ctx);
    }
    CHECK(checked > 300, "%d random derivations checked", checked);
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* sin(sin(…sin(x)…)) of length n */
static size_t chain_lines(size_t n) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type()), *f = x;
    for (size_t i = 0; i < n; i++) f = nb_sin(ctx, f);
    char *text = nb_derivation(ctx, f, 1, &x, NB_NUMERATOR, "unicode", "en");
    size_t lines = text ? count_lines(text) : 0;
    free(text);
    nb_ctx_free(ctx);
    return lines;
}

static void long_chain_is_linear(void) {
    size_t a = chain_lines(50), b = chain_lines(100), c = chain_lines(400);
    CHECK(a > 100 && a <= 3 * 50 && b <= 3 * 100 && c <= 3 * 400 && c > 400,
          "lines grow linearly with the chain: %zu, %zu, %zu for 50, 100, 400", a, b, c);
}

static void repeated_subexpression_once(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n)");
    nb_expr *f = nb_parse(ctx, "sum(exp(x) .* exp(x) + exp(x))");
    nb_expr *x = nb_lookup(ctx, "x");
    char *text = nb_derivation(ctx, f, 1, &x, NB_NUMERATOR, "ascii", "en");
    size_t introduced = 0;
    for (const char *at = text; at && (at = strstr(at, " = exp(x)    ")); at++) introduced++;
    CHECK(text && strstr(text, "  u1 = exp(x)    (vector(n))") && introduced == 1,
          "exp(x) is introduced once");
    CHECK(text && strstr(text, "paths add"), "the shared exp(x) has several paths: the total derivative");
    free(text);
    nb_ctx_free(ctx);
}

static void definitions(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *f = nb_parse(ctx, "u = x^3; v = sin(u); v^2");
    const char *names[4];
    nb_expr *values[4];
    CHECK(nb_definitions(ctx, names, values, 4) == 2 && strcmp(names[0], "u") == 0 && strcmp(names[1], "v") == 0,
          "the parser keeps the definitions in order");
    nb_expr *x = nb_lookup(ctx, "x");
    char *text = nb_derivation(ctx, f, 1, &x, NB_NUMERATOR, "ascii", "en");
    CHECK(text && strstr(text, "  u = x^3    (scalar)\n  v = sin(u)    (scalar)\n  f = v^2    (scalar)\n"),
          "the user's names are the intermediate variables:\n%s", text ? text : nb_error(ctx));
    CHECK(text && strstr(text, "df/dx = df/dv * dv/du * du/dx"), "the single-variable chain rule with the user's names");
    free(text);
    nb_ctx_free(ctx);
    ctx = nb_ctx_new(); /* nb_derivation declared u and v as variables of ctx */
    const char *keep[] = {"u"};
    nb_expr *g = nb_parse_keeping(ctx, "u = x^3; v = sin(u); v^2", 1, keep);
    nb_expr *u = nb_lookup(ctx, "u");
    nb_expr *J = g && u ? nb_derivative(ctx, g, 1, &u, NB_NUMERATOR) : NULL;
    char *s = J ? nb_to_string(ctx, J, NB_FMT_ASCII) : NULL;
    CHECK_STR(s, "2*sin(u)*cos(u)");
    free(s);
    nb_ctx_free(ctx);
}

static void errors(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type()), *f = nb_sin(ctx, x);
    CHECK(!nb_derivation(ctx, f, 1, &x, NB_NUMERATOR, "unicode", "fr"), "unknown language refused");
    CHECK_STR(nb_error(ctx), "unknown language 'fr' (available: en, zh)");
    CHECK(!nb_derivation(ctx, f, 1, &x, NB_NUMERATOR, "html", "en"), "unknown format refused");
    CHECK_STR(nb_error(ctx), "unknown format 'html' (expected unicode, ascii, latex or markdown)");
    CHECK(!nb_derivation(ctx, NULL, 1, &x, NB_NUMERATOR, "unicode", "en"), "no function");
    CHECK(!nb_derivation(NULL, f, 1, &x, NB_NUMERATOR, "unicode", "en"), "no context");
    CHECK(!nb_derivation(ctx, f, 0, &x, NB_NUMERATOR, "unicode", "en"), "no variable");
    CHECK_STR(nb_error(ctx), "nothing to differentiate with respect to");
    CHECK_STR(nb_derivation_languages(), "en, zh");
    CHECK(nb_definitions(NULL, NULL, NULL, 0) == 0, "no context: no definitions");
    nb_ctx_free(ctx);
}

/* Bugs found while reading the goldens, each checked without pdflatex. */
static void regressions(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x: vector(n); y: scalar");
    nb_expr *x = nb_lookup(ctx, "x"), *y = nb_lookup(ctx, "y");
    nb_expr *f = nb_sum(ctx, x), *g = nb_log(ctx, nb_pow(ctx, y, nb_num(ctx, 2)));
    char *text = nb_derivation(ctx, f, 1, &x, NB_DENOMINATOR, "unicode", "en");
    CHECK(text && !strstr(text, "1ᵀ = 1ᵀ"), "no step whose sides print alike");
    free(text);
    text = nb_derivation(ctx, f, 1, &x, NB_DENOMINATOR, "latex", "en");
    CHECK(text && !strstr(text, "}^{\\top}^{"), "no double superscript in LaTeX");
    free(text);
    text = nb_derivation(ctx, g, 1, &y, NB_NUMERATOR, "latex", "en");
    CHECK(text && strstr(text, "x^{(a + b)}"), "a rule's ^(…) becomes a LaTeX superscript group");
    free(text);
    text = nb_derivation(ctx, g, 1, &y, NB_NUMERATOR, "ascii", "en");
    CHECK(text && strstr(text, "(by x^a .* x^b = x^(a + b))"), "rule names in ASCII");
    free(text);
    nb_ctx_free(ctx);
}

int main(void) {
    regressions();
    random_expressions();
    long_chain_is_linear();
    repeated_subexpression_once();
    definitions();
    errors();
    TEST_MAIN_END();
}
