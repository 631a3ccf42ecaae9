/* Unit tests of the IR: hash-consing, canonical forms, structure rules,
 * printing formats, evaluation errors, error messages, and linear-time
 * behaviour on long chains of definitions. */
#include "nb_internal.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static char *str(nb_ctx *ctx, nb_expr *e, nb_format fmt) {
    static char buf[4096];
    char *s = nb_to_string(ctx, e, fmt);
    snprintf(buf, sizeof buf, "%s", s ? s : e ? "(print failed)" : nb_error(ctx));
    free(s);
    return buf;
}

/* A derivative as the command prints it (the paper's 1, 1ᵀ, 0, I). */
static char *dstr(nb_ctx *ctx, nb_expr *J) {
    static char buf[4096];
    char *s = nb_derivative_to_string(ctx, J, NB_FMT_ASCII);
    snprintf(buf, sizeof buf, "%s", s ? s : J ? "(print failed)" : nb_error(ctx));
    free(s);
    return buf;
}

static nb_expr *diff1(nb_ctx *ctx, const char *f, const char *v, nb_layout layout) {
    nb_expr *e = nb_parse(ctx, f);
    nb_expr *x = nb_lookup(ctx, v);
    return e && x ? nb_derivative(ctx, e, 1, &x, layout) : NULL;
}

static void test_hash_consing(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type());
    nb_expr *a = nb_sin(ctx, nb_mul(ctx, nb_num(ctx, 2), x));
    nb_expr *b = nb_sin(ctx, nb_mul(ctx, x, nb_num(ctx, 2)));
    CHECK(a == b, "sin(2x) built twice is one node");
    CHECK(nb_add(ctx, x, x) == nb_mul(ctx, nb_num(ctx, 2), x), "x + x = 2x");
    CHECK(nb_mul(ctx, x, nb_pow(ctx, x, nb_num(ctx, 2))) == nb_pow(ctx, x, nb_num(ctx, 3)), "x·x² = x³");
    CHECK(nb_sub(ctx, x, x) == nb_num(ctx, 0), "x - x = 0");
    CHECK(nb_var(ctx, "x", nb_vector_type(3)) == NULL, "redeclaring x with another type fails");
    CHECK(strstr(nb_error(ctx), "scalar") != NULL, "message names the old type: %s", nb_error(ctx));
    nb_ctx_free(ctx);
}

static void test_canonical_forms(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "A, B: matrix(n, n); v, u: vector(n)");
    static const char *cases[][2] = {
        {"2*x*3*y", "6*x*y"},        {"x/2", "x/2"},          {"1/(2*sqrt(x))", "1/(2*sqrt(x))"},
        {"(A*B)'", "B'*A'"},         {"(A')'", "A"},          {"0.5*x", "x/2"},
        {"x^2*x^-2", "1"},           {"-(x - y)", "y - x"},   {"2*(x + 1)", "2*x + 2"},
        {"exp(0) + log(1)", "1"},    {"diag(v)*u", "v .* u"}, {"diag(v)*diag(u)", "diag(v .* u)"},
        {"sum(3*v)", "3*sum(v)"},    {"x^0.5", "sqrt(x)"},    {"1e-3*x", "x/1000"},
        {"-2*(u - v)", "2*(v - u)"}, {"x*y - y*x", "0"},      {"max(2, 3)", "3"},
        {"(2 > 1) + (1 >= 2)", "1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_STR(str(ctx, nb_parse(ctx, cases[i][0]), NB_FMT_ASCII), cases[i][1]);
    nb_ctx_free(ctx);
}

static void test_formats(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "w, x: vector(n); X: matrix(N, n); y: vector(N); b: scalar");
    nb_expr *J = diff1(ctx, "w ./ x", "x", NB_NUMERATOR);
    CHECK_STR(str(ctx, J, NB_FMT_UNICODE), "diag(-w ⊘ x²)");
    CHECK_STR(str(ctx, J, NB_FMT_LATEX), "\\operatorname{diag}\\left(-\\frac{w}{x^{2}}\\right)");
    J = diff1(ctx, "max(0, dot(w, x) + b)", "w", NB_NUMERATOR);
    CHECK_STR(str(ctx, J, NB_FMT_UNICODE), "1[wᵀ·x + b > 0]·xᵀ");
    CHECK_STR(str(ctx, J, NB_FMT_LATEX), "\\mathbb{1}\\left[w^{\\top} x + b > 0\\right] x^{\\top}");
    nb_expr *g = nb_parse(ctx, "3*t^2*s");
    nb_expr *ts[2] = {nb_lookup(ctx, "t"), nb_lookup(ctx, "s")};
    J = nb_derivative(ctx, g, 2, ts, NB_NUMERATOR);
    CHECK_STR(str(ctx, J, NB_FMT_ASCII), "[6*t*s, 3*t^2]'");
    char *listed = nb_derivative_to_string(ctx, J, NB_FMT_UNICODE);
    CHECK_STR(listed, "[6·t·s, 3·t²]ᵀ");
    free(listed);
    CHECK_STR(str(ctx, J, NB_FMT_LATEX), "\\begin{bmatrix} 6 t s & 3 t^{2} \\end{bmatrix}");
    nb_ctx_free(ctx);
}

static void test_structure(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x, w: vector(n); A: matrix(n, n); W: matrix(m, n); z: scalar");
    static const char *cases[][3] = {
        /* f, wrt, numerator result */
        {"exp(x) .* sin(x) + x.^2", "x", "diag(exp(x) .* sin(x) + exp(x) .* cos(x) + 2*x)"},
        {"tanh(A*x)", "x", "diag(1 - tanh(A*x).^2)*A"},
        {"W*x", "x", "W"},
        {"3*x", "x", "3*eye(n)"},
        {"x - 2*x", "x", "-eye(n)"},
        {"sigmoid(x)", "x", "diag(sigmoid(x) .* (1 - sigmoid(x)))"},
        {"sum(exp(x))", "x", "exp(x)'"},
        {"x'*A*x", "x", "x'*A + x'*A'"},
        {"norm2(x)", "x", "x'/sqrt(sum(x.^2))"},
        {"mean(x)", "x", "ones(n)'/n"},
        {"x*z + w", "z", "x"},
        {"sum(W)", "W", "ones(m, n)"},
        {"sum(W*x)", "W", "ones(m)*x'"},
        {"x .* z", "x", "z*eye(n)"},
        /* 1[u > 0]·g(max(0, u)) = 1[u > 0]·g(u), and −c·(a − b) = c·(b − a) */
        {"sum(max(0, A*x - w).^3)", "x", "3*((A*x - w > 0) .* (A*x - w).^2)'*A"},
        {"-(x - w)", "x", "-eye(n)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_STR(dstr(ctx, diff1(ctx, cases[i][0], cases[i][1], NB_NUMERATOR)), cases[i][2]);
    /* nb_to_string's ASCII spells array constants so that they parse back */
    CHECK_STR(str(ctx, diff1(ctx, "3*x", "x", NB_NUMERATOR), NB_FMT_ASCII), "3*eye(n)");
    CHECK_STR(str(ctx, diff1(ctx, "sum(W)", "W", NB_NUMERATOR), NB_FMT_ASCII), "ones(m, n)");
    CHECK_STR(str(ctx, diff1(ctx, "sum(x)", "x", NB_NUMERATOR), NB_FMT_ASCII), "ones(n)'");
    CHECK_STR(str(ctx, nb_parse(ctx, "2*ones(n)' + zeros(n)' + 0*x'*eye(n)"), NB_FMT_ASCII), "2*ones(n)'");
    nb_ctx_free(ctx);
}

static void test_errors(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "w: vector(n); v: vector(m); X: matrix(N, n)");
    CHECK(nb_parse(ctx, "w + v") == NULL, "vector(n) + vector(m) fails");
    CHECK(strstr(nb_error(ctx), "vector(n)") && strstr(nb_error(ctx), "vector(m)"), "names both shapes: %s",
          nb_error(ctx));
    CHECK(nb_parse(ctx, "X*v") == NULL, "matrix(N,n)*vector(m) fails");
    CHECK(strstr(nb_error(ctx), "matrix(N, n)") && strstr(nb_error(ctx), "vector(m)"),
          "names both shapes: %s", nb_error(ctx));
    nb_expr *f = nb_parse(ctx, "w + 1");
    nb_expr *not_var = nb_parse(ctx, "2*w");
    CHECK(nb_derivative(ctx, f, 1, &not_var, NB_NUMERATOR) == NULL, "w.r.t. an expression fails");
    CHECK(strstr(nb_error(ctx), "variable") != NULL, "says it is not a variable: %s", nb_error(ctx));
    nb_expr *M = nb_parse(ctx, "X*2");
    nb_expr *wv = nb_lookup(ctx, "w");
    CHECK(nb_derivative(ctx, M, 1, &wv, NB_NUMERATOR) == NULL, "matrix-valued f is refused");
    nb_expr *xv = nb_lookup(ctx, "X");
    nb_expr *g = nb_parse(ctx, "X*w");
    CHECK(nb_derivative(ctx, g, 1, &xv, NB_NUMERATOR) == NULL, "vector f w.r.t. a matrix is a rank-3 tensor");
    nb_expr *h = nb_parse(ctx, "(w*w')*w");
    CHECK(nb_derivative(ctx, h, 1, &wv, NB_NUMERATOR) == NULL,
          "vector Jacobian through a matrix node is refused");
    CHECK(strstr(nb_error(ctx), "tensor") != NULL, "%s", nb_error(ctx));
    CHECK(nb_sum(ctx, NULL) == NULL, "NULL propagates");
    nb_ctx_free(ctx);
}

static void test_eval_errors(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "w: vector(n)");
    nb_matrix m;
    nb_expr *f = nb_parse(ctx, "log(x)");
    double x = -2;
    nb_set_value(ctx, "x", 1, 1, &x);
    CHECK(nb_eval(ctx, f, &m) == -1 && strstr(nb_error(ctx), "log of a negative"), "log(-2): %s",
          nb_error(ctx));
    x = 0;
    nb_set_value(ctx, "x", 1, 1, &x);
    CHECK(nb_eval(ctx, nb_parse(ctx, "1/x"), &m) == -1 && strstr(nb_error(ctx), "division by zero"),
          "1/0: %s", nb_error(ctx));
    CHECK(nb_eval(ctx, nb_parse(ctx, "sum(w)"), &m) == -1 && strstr(nb_error(ctx), "not bound"),
          "unbound: %s", nb_error(ctx));
    double nan = NAN;
    CHECK(nb_set_value(ctx, "x", 1, 1, &nan) == -1, "NaN input refused: %s", nb_error(ctx));
    double w[3] = {1, 2, 3};
    CHECK(nb_set_value(ctx, "w", 3, 1, w) == 0, "bind w");
    CHECK(nb_eval(ctx, nb_parse(ctx, "sum(w)/n"), &m) == 0 && m.data[0] == 2, "mean via the dimension n");
    nb_matrix_free(&m);
    CHECK(nb_set_value(ctx, "w", 2, 2, w) == -1, "a 2x2 value for a vector is refused");
    nb_ctx_free(ctx);
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Thousands of definitions: parse, differentiate and print in linear time. */
static void test_long_chain(void) {
    double times[2];
    for (int round = 0; round < 2; round++) {
        int n = round ? 8000 : 2000;
        char *src = malloc((size_t)n * 48 + 64);
        size_t len = (size_t)sprintf(src, "u0 = x;\n");
        for (int i = 1; i < n; i++)
            len += (size_t)sprintf(src + len, "u%d = sin(u%d)*x + u%d;\n", i, i - 1, i - 1);
        sprintf(src + len, "u%d", n - 1);
        nb_ctx *ctx = nb_ctx_new();
        double t0 = seconds();
        nb_expr *f = nb_parse(ctx, src);
        nb_expr *x = nb_lookup(ctx, "x");
        nb_expr *J = f && x ? nb_derivative(ctx, f, 1, &x, NB_NUMERATOR) : NULL;
        char *s = nb_to_string(ctx, J, NB_FMT_ASCII);
        times[round] = seconds() - t0;
        CHECK(s != NULL, "chain of %d definitions differentiates: %s", n, nb_error(ctx));
        free(s);
        free(src);
        nb_ctx_free(ctx);
    }
    /* 4x the work in well under 16x the time (quadratic would be 16x). */
    CHECK(times[1] < 8 * times[0] + 0.05, "linear time: %.3fs for 2000, %.3fs for 8000", times[0], times[1]);
}

int main(void) {
    test_hash_consing();
    test_canonical_forms();
    test_formats();
    test_structure();
    test_errors();
    test_eval_errors();
    test_long_chain();
    TEST_MAIN_END();
}
