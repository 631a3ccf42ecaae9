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
        /* an element-wise quotient heading an inner product keeps its parentheses (seed 48 of test_property) */
        {"A*((1 ./ B)*v)", "A*(1 ./ B)*v"}, {"A*((u ./ v)*v')", "A*(u ./ v)*v'"},
        /* the sign goes into a transposed difference too: one node for both spellings */
        {"-2*(u - v)'", "2*(v - u)'"}, {"-2*(u - v)' + 2*(v - u)'", "4*(v - u)'"}, {"-(u - v)'*A", "(v - u)'*A"},
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
    CHECK_STR(str(ctx, J, NB_FMT_LATEX), "\\mathbf{1}\\left[w^{\\top} x + b > 0\\right] x^{\\top}");
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
        {"x'*A*x", "x", "x'*(A + A')"},
        {"norm2(x)", "x", "x'/norm2(x)"},
        {"mean(x)", "x", "ones(n)'/n"},
        {"x*z + w", "z", "x"},
        {"sum(W)", "W", "ones(m, n)"},
        {"sum(W*x)", "W", "ones(m)*x'"},
        {"x .* z", "x", "z*eye(n)"},
        /* simplifications the independent check asked for (issue 6) */
        {"exp(x) ./ (1 + exp(x))", "x", "diag(sigmoid(x) .* (1 - sigmoid(x)))"},
        {"softmax(x)", "x", "diag(softmax(x)) - softmax(x)*softmax(x)'"},
        {"sum(ones(n)*x')", "x", "n*ones(n)'"},
        {"sum((A*x - w).^2)", "x", "2*(A*x - w)'*A"},
        {"x'*A*w + x'*A'*w", "x", "w'*(A + A')"},
        /* 1[u > 0]·g(max(0, u)) = 1[u > 0]·g(u), and −c·(a − b) = c·(b − a) */
        {"sum(max(0, A*x - w).^3)", "x", "3*((A*x - w > 0) .* (A*x - w).^2)'*A"},
        {"-(x - w)", "x", "-eye(n)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_STR(dstr(ctx, diff1(ctx, cases[i][0], cases[i][1], NB_NUMERATOR)), cases[i][2]);
    CHECK_STR(dstr(ctx, diff1(ctx, "sum((A*x - w).^2)", "x", NB_DENOMINATOR)), "2*A'*(A*x - w)");
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
    /* beyond rank 2: ∂vec(f)/∂vec(v)ᵀ (src/kron.c) */
    CHECK_STR(str(ctx, nb_derivative(ctx, M, 1, &wv, NB_NUMERATOR), NB_FMT_UNICODE), "𝟎");
    nb_expr *xv = nb_lookup(ctx, "X");
    nb_expr *g = nb_parse(ctx, "X*w");
    CHECK_STR(str(ctx, nb_derivative(ctx, g, 1, &xv, NB_NUMERATOR), NB_FMT_UNICODE), "wᵀ ⊗ I");
    nb_expr *h = nb_parse(ctx, "(w*w' + X'*X)*w");
    CHECK_STR(str(ctx, nb_derivative(ctx, h, 1, &wv, NB_NUMERATOR), NB_FMT_UNICODE), "(wᵀ·w)·I + 2·w·wᵀ + Xᵀ·X");
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

/* Why-1 of issue 6: the inner product's gradient simplified to a scalar 1
 * (the ones vector lost its shape).  Each derivative has its true type and
 * matches central finite differences. */
static void test_shape_regressions(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x, a: vector(n); A: matrix(n, n)");
    static const char *cases[][2] = {
        {"sqrt(x)'*sqrt(x)", "ones(n)'"},
        {"(sqrt(x)'*sqrt(x))*a", "a*ones(n)'"},
        {"A*x*(sqrt(x)'*sqrt(x))", "A*x*ones(n)' + ((sqrt(x))'*sqrt(x))*A"},
    };
    double xv[3] = {1, 2, 3}, av[3] = {1, -2, 0.5}, Av[9] = {1, 2, 3, 4, 5, 6, 7, 8, 10};
    nb_set_value(ctx, "x", 3, 1, xv);
    nb_set_value(ctx, "a", 3, 1, av);
    nb_set_value(ctx, "A", 3, 3, Av);
    nb_expr *x = nb_lookup(ctx, "x");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_expr *f = nb_parse(ctx, cases[i][0]);
        nb_expr *J = diff1(ctx, cases[i][0], "x", NB_NUMERATOR);
        CHECK_STR(dstr(ctx, J), cases[i][1]);
        nb_type want = f->type.kind == NB_SCALAR ? nb_row_type(nb_dim_symbol(ctx, "n"))
                                                 : nb_matrix_type(nb_dim_symbol(ctx, "n"), nb_dim_symbol(ctx, "n"));
        CHECK(J && nb_type_eq(nb_type_of(J), want), "%s: derivative has the Jacobian's type", cases[i][0]);
        double err = 1;
        CHECK(nb_check(ctx, f, 1, &x, &err) == 0 && err < 1e-6, "%s matches finite differences: %g %s", cases[i][0],
              err, nb_error(ctx));
    }
    nb_ctx_free(ctx);
}

/* Second derivatives: structured Hessians (golden strings), and the
 * Hessian-vector product (forward over reverse) and forward-mode JVP against
 * central differences of the gradient / of f along the tangent. */
static void test_second_derivatives(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x, t: vector(n); A: matrix(n, n); X, T: matrix(m, n)");
    static const char *cases[][2] = {
        {"x'*A*x", "A + Aᵀ"},
        {"sum(x)^2", "2·𝟏·𝟏ᵀ"},
        {"sum(exp(x))", "diag(exp(x))"},
        {"sum(x.^3)/6", "diag(x)"},
        {"sum(sin(x))*y", "diag(-y·sin(x))"},
    };
    nb_expr *x = nb_lookup(ctx, "x"), *t = nb_lookup(ctx, "t");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_STR(str(ctx, nb_hessian(ctx, nb_parse(ctx, cases[i][0]), x), NB_FMT_UNICODE), cases[i][1]);
    CHECK_STR(str(ctx, nb_hvp(ctx, nb_parse(ctx, "x'*A*x"), x, t), NB_FMT_UNICODE), "(A + Aᵀ)·t");
    CHECK_STR(str(ctx, nb_jvp(ctx, nb_parse(ctx, "exp(x) .* sin(x)"), x, t), NB_FMT_UNICODE),
              "t ⊙ exp(x) ⊙ sin(x) + t ⊙ exp(x) ⊙ cos(x)");
    CHECK_STR(str(ctx, nb_hessian(ctx, nb_parse(ctx, "sum(X .* X)"), nb_lookup(ctx, "X")), NB_FMT_UNICODE), "2·I");
    CHECK(nb_hvp(ctx, nb_parse(ctx, "A*x"), x, t) == NULL && strstr(nb_error(ctx), "scalar"),
          "the Hessian-vector product needs a scalar f: %s", nb_error(ctx));
    CHECK(nb_jvp(ctx, nb_parse(ctx, "sum(x)"), nb_parse(ctx, "2*x"), t) == NULL && strstr(nb_error(ctx), "variable"),
          "jvp w.r.t. an expression is refused: %s", nb_error(ctx));
    CHECK(nb_jvp(ctx, nb_parse(ctx, "sum(x)"), x, nb_lookup(ctx, "A")) == NULL && strstr(nb_error(ctx), "tangent"),
          "a tangent of the wrong type is refused: %s", nb_error(ctx));

    double xv[3] = {0.3, -0.7, 1.1}, tv[3] = {0.5, 0.25, -1}, Av[9] = {1, 2, 0, -1, 3, 1, 0.5, 0, 2};
    double Xv[6] = {0.1, 0.2, -0.3, 0.4, 0.5, -0.6}, Tv[6] = {1, -1, 0.5, 0.25, 2, -0.5};
    nb_set_value(ctx, "x", 3, 1, xv);
    nb_set_value(ctx, "t", 3, 1, tv);
    nb_set_value(ctx, "A", 3, 3, Av);
    nb_set_value(ctx, "X", 2, 3, Xv);
    nb_set_value(ctx, "T", 2, 3, Tv);
    static const char *scalar_fs[] = {"sum(sin(A*x).^2) + x'*A*x", "log(sum(exp(x)))", "sum(sigmoid(x) .* x)/n",
                                      "norm2(A*x - x)"};
    const double h = 1e-5;
    for (size_t i = 0; i < sizeof scalar_fs / sizeof *scalar_fs; i++) {
        nb_expr *f = nb_parse(ctx, scalar_fs[i]);
        nb_expr *g = nb_gradient(ctx, f, x);
        nb_matrix hv, gp, gm, H;
        int ok = nb_eval(ctx, nb_hvp(ctx, f, x, t), &hv) == 0 && nb_eval(ctx, nb_hessian(ctx, f, x), &H) == 0;
        for (int k = 0; k < 3; k++) xv[k] += h * tv[k];
        nb_set_value(ctx, "x", 3, 1, xv);
        ok = ok && nb_eval(ctx, g, &gp) == 0;
        for (int k = 0; k < 3; k++) xv[k] -= 2 * h * tv[k];
        nb_set_value(ctx, "x", 3, 1, xv);
        ok = ok && nb_eval(ctx, g, &gm) == 0;
        for (int k = 0; k < 3; k++) xv[k] += h * tv[k];
        nb_set_value(ctx, "x", 3, 1, xv);
        CHECK(ok, "%s: second derivatives evaluate: %s", scalar_fs[i], nb_error(ctx));
        double err = 0;
        for (int k = 0; ok && k < 3; k++) {
            double fd = (gp.data[k] - gm.data[k]) / (2 * h), Ht = 0;
            for (int j = 0; j < 3; j++) Ht += H.data[k * 3 + j] * tv[j];
            err = fmax(err, fmax(fabs(hv.data[k] - fd), fabs(Ht - fd)) / fmax(1, fabs(fd)));
        }
        CHECK(ok && err < 1e-6, "%s: ∇²f·t (hvp and hessian) vs differences of the gradient: %g", scalar_fs[i], err);
        if (ok) {
            nb_matrix_free(&hv);
            nb_matrix_free(&H);
            nb_matrix_free(&gp);
            nb_matrix_free(&gm);
        }
    }
    /* the Hessian and the HVP are expressions: they compile like any other */
    {
        nb_expr *f = nb_parse(ctx, "sum(sin(A*x).^2) + x'*A*x");
        nb_expr *outs[2] = {nb_hessian(ctx, f, x), nb_hvp(ctx, f, x, t)}, *ins[3] = {x, t, nb_lookup(ctx, "A")};
        nb_program *p = nb_compile(ctx, 2, outs, 3, ins, NB_F64, NB_COMPILE_DENSE);
        double Hc[9], hvc[3];
        const void *in[3] = {xv, tv, Av};
        void *out[2] = {Hc, hvc};
        nb_matrix H, hv;
        int ok = p && nb_program_run(p, in, out) == NB_OK && nb_eval(ctx, outs[0], &H) == 0 && nb_eval(ctx, outs[1], &hv) == 0;
        double err = 0;
        for (int k = 0; ok && k < 9; k++) err = fmax(err, fabs(Hc[k] - H.data[k]));
        for (int k = 0; ok && k < 3; k++) err = fmax(err, fabs(hvc[k] - hv.data[k]));
        CHECK(ok && err < 1e-12, "compiled Hessian and HVP equal the reference: %g %s", err, nb_error(ctx));
        if (ok) {
            nb_matrix_free(&H);
            nb_matrix_free(&hv);
        }
        nb_program_free(p);
    }
    /* forward mode through a matrix-valued f (no Jacobian could be formed) */
    nb_expr *F = nb_parse(ctx, "softmax(X .* X) + X*A");
    nb_expr *Xe = nb_lookup(ctx, "X");
    nb_matrix jv, fp, fm;
    int ok = nb_eval(ctx, nb_jvp(ctx, F, Xe, nb_lookup(ctx, "T")), &jv) == 0;
    for (int k = 0; k < 6; k++) Xv[k] += h * Tv[k];
    nb_set_value(ctx, "X", 2, 3, Xv);
    ok = ok && nb_eval(ctx, F, &fp) == 0;
    for (int k = 0; k < 6; k++) Xv[k] -= 2 * h * Tv[k];
    nb_set_value(ctx, "X", 2, 3, Xv);
    ok = ok && nb_eval(ctx, F, &fm) == 0;
    double err = 0;
    for (int k = 0; ok && k < 6; k++) err = fmax(err, fabs(jv.data[k] - (fp.data[k] - fm.data[k]) / (2 * h)));
    CHECK(ok && err < 1e-7, "jvp of a matrix function vs central differences: %g %s", err, nb_error(ctx));
    if (ok) {
        nb_matrix_free(&jv);
        nb_matrix_free(&fp);
        nb_matrix_free(&fm);
    }
    nb_ctx_free(ctx);
}

/* max/min propagate NaN (PyTorch's torch.maximum), in the one scalar
 * definition (src/scalar.h) that the reference evaluator and the kernels
 * share; a compiled program without input checking gives NaN too. */
#include "scalar_f64.h"
static void test_scalar_semantics(void) {
    CHECK(isnan(sc_max(NAN, 1)) && isnan(sc_max(1, NAN)) && isnan(sc_min(NAN, 1)) && isnan(sc_min(1, NAN)),
          "max/min propagate NaN from either side");
    CHECK(sc_max(-0.5, 2) == 2 && sc_min(-0.5, 2) == -0.5, "max/min of numbers");
    CHECK(sc_sign(-3) == -1 && sc_sign(0) == 0 && sc_sign(2) == 1 && isnan(sc_sign(NAN)), "sign");
    CHECK(sc_sigmoid(-800) >= 0 && sc_sigmoid(-800) < 1e-300 && sc_sigmoid(800) == 1, "sigmoid never overflows");
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type()), *y = nb_var(ctx, "y", nb_scalar_type());
    nb_expr *outs[2] = {nb_max(ctx, x, y), nb_min(ctx, x, y)}, *ins[2] = {x, y};
    nb_program *p = nb_compile(ctx, 2, outs, 2, ins, NB_F64, 0);
    double xv = NAN, yv = 1, mx = 0, mn = 0;
    const void *in[2] = {&xv, &yv};
    void *out[2] = {&mx, &mn};
    CHECK(p && nb_program_run(p, in, out) == NB_OK && isnan(mx) && isnan(mn), "compiled max/min(NaN, 1) = NaN");
    xv = 1, yv = NAN;
    CHECK(p && nb_program_run(p, in, out) == NB_OK && isnan(mx) && isnan(mn), "compiled max/min(1, NaN) = NaN");
    nb_program_free(p);
    nb_ctx_free(ctx);
}

/* The raw chain rule and the simplifier: nb_derivative is nb_simplify of
 * nb_derivative_raw; the raw form keeps every factor its rule gave; the
 * log hook names each rewrite and the raw node it fired at. */
typedef struct {
    int count;
    bool saw_diag_rule, at_raw_node;
} rule_log;

static void record_rule(void *user, const char *rule, const nb_expr *at, const nb_expr *result) {
    rule_log *log = user;
    log->count++;
    log->saw_diag_rule |= strcmp(rule, "rᵀ·diag(v) = (r ⊙ v)ᵀ") == 0;
    log->at_raw_node |= at != NULL && result != NULL;
}

static void test_raw_and_simplify(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "w, x: vector(n); X: matrix(N, n); y: vector(N); b: scalar");
    nb_expr *w = nb_lookup(ctx, "w"), *x = nb_lookup(ctx, "x");
    nb_expr *f = nb_parse(ctx, "sum((y - max(0, X*w + b)).^2)/N");
    nb_expr *raw = nb_derivative_raw(ctx, f, 1, &w, NB_NUMERATOR);
    CHECK_STR(str(ctx, raw, NB_FMT_UNICODE), "((-(1/N·𝟏ᵀ)·diag(2·(y - max(0, X·w + b)).^(2 - 1)))·diag(1[X·w + b > 0]))·X");
    CHECK(nb_simplify(ctx, raw) == nb_derivative(ctx, f, 1, &w, NB_NUMERATOR), "simplify(raw) is the derivative");
    CHECK_STR(str(ctx, nb_simplify(ctx, raw), NB_FMT_UNICODE), "2·(1[X·w + b > 0] ⊙ (X·w + b - y))ᵀ·X/N");
    nb_expr *g = nb_parse(ctx, "sqrt(x)'*sqrt(x)");
    raw = nb_derivative_raw(ctx, g, 1, &x, NB_NUMERATOR);
    CHECK(raw && nb_type_of(raw).kind == NB_ROW, "the raw derivative has the Jacobian's type too");
    rule_log log = {0, false, false};
    nb_set_rewrite_log(ctx, record_rule, &log);
    CHECK_STR(str(ctx, nb_simplify(ctx, raw), NB_FMT_UNICODE), "𝟏ᵀ");
    CHECK(log.count >= 3 && log.saw_diag_rule && log.at_raw_node, "rules logged: %d", log.count);
    nb_set_rewrite_log(ctx, NULL, NULL);
    int before = log.count;
    nb_simplify(ctx, nb_derivative_raw(ctx, g, 1, &x, NB_NUMERATOR));
    CHECK(log.count == before, "the hook is off");
    CHECK(nb_simplify(ctx, NULL) == NULL && nb_derivative_raw(NULL, g, 1, &x, NB_NUMERATOR) == NULL, "NULL propagates");
    CHECK(!nb_simplify(NULL, g) && !nb_jvp(NULL, g, x, x) && !nb_hvp(NULL, g, x, x) && !nb_hessian(NULL, g, x),
          "a NULL context is refused");
    CHECK(!nb_jvp(ctx, NULL, x, x) && !nb_hvp(ctx, g, NULL, x) && !nb_hessian(ctx, g, NULL), "NULL operands propagate");
    CHECK(nb_variables(NULL, g, NULL, 0) == 0 && nb_var_name(NULL) == NULL, "NULL in the variable queries");
    nb_set_rewrite_log(NULL, record_rule, NULL);
    nb_ctx_free(ctx);
}

/* Forward mode never forms a Jacobian: the tangent of an element-wise vector
 * function has no n x n node, and along a long chain the tangent's DAG grows
 * by a bounded factor of f's.  nb_variables lists what an expression uses. */
static size_t dag_size(nb_ctx *ctx, nb_expr *e, bool *has_square) {
    size_t n;
    nb_node **nodes = nb_toposort(ctx, 1, &e, &n);
    *has_square = false;
    for (size_t i = 0; nodes && i < n; i++) *has_square |= nodes[i]->type.kind == NB_MATRIX;
    free(nodes);
    return nodes ? n : 0;
}

static void test_forward_cost_and_variables(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "x, t, w: vector(n)");
    nb_expr *x = nb_lookup(ctx, "x"), *t = nb_lookup(ctx, "t");
    bool square = true;
    nb_expr *jv = nb_jvp(ctx, nb_parse(ctx, "sin(x) .* exp(x) + tanh(x).^2"), x, t);
    CHECK(jv && dag_size(ctx, jv, &square) > 0 && !square, "the tangent has no matrix node (no Jacobian formed)");
    char src[64 * 400];
    size_t len = (size_t)sprintf(src, "u0 = x;\n");
    for (int i = 1; i < 400; i++) len += (size_t)sprintf(src + len, "u%d = sin(u%d) .* x + u%d;\n", i, i - 1, i - 1);
    sprintf(src + len, "sum(u399)");
    nb_expr *f = nb_parse(ctx, src);
    size_t nf = dag_size(ctx, f, &square), nt = dag_size(ctx, nb_jvp(ctx, f, x, t), &square);
    CHECK(nf > 0 && nt > 0 && nt <= 6 * nf && !square, "tangent DAG %zu nodes for f's %zu", nt, nf);
    nb_expr *vars[4];
    CHECK(nb_variables(ctx, f, vars, 4) == 1 && vars[0] == x, "f uses x only");
    CHECK(nb_variables(ctx, NULL, NULL, 0) == 3, "three declared variables");
    CHECK(nb_variables(ctx, nb_parse(ctx, "w'*t + sum(x)"), vars, 1) == 3 && vars[0] == x, "count beyond cap");
    CHECK(strcmp(nb_var_name(t), "t") == 0 && nb_var_name(f) == NULL, "variable names");
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

/* Sizes of one: a column times a column is refused even when the second has
 * one entry, and products with a 1×1 identity keep their kinds (the parse
 * fuzz target found p·q + q, vector(1), failing inside the differentiator). */
static void test_sizes_of_one(void) {
    nb_ctx *ctx = nb_ctx_new();
    CHECK(nb_declare(ctx, "p, q, x: vector(1); A: matrix(1, 1); r: row(1)") == 0, "declare: %s", nb_error(ctx));
    CHECK(!nb_parse(ctx, "p*q + q") && strstr(nb_error(ctx), "inner product"), "p*q refused: %s", nb_error(ctx));
    const char *fs[] = {"x'*A*x", "A*x + x", "sum(r*A) + sum(A*x)", "x'*x*r"};
    const char *wrt[] = {"x", "A", "r"};
    uint64_t rng = 7;
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        nb_expr *f = nb_parse(ctx, fs[i]);
        CHECK(f != NULL, "%s: %s", fs[i], nb_error(ctx));
        if (!f || nb_randomize(ctx, f, &rng, -2, 2)) continue;
        for (size_t k = 0; k < 3; k++) {
            nb_expr *v = nb_lookup(ctx, wrt[k]);
            double err = 1;
            if (nb_randomize(ctx, v, &rng, -2, 2)) continue;
            if (nb_type_of(f).kind != NB_SCALAR && nb_type_of(v).kind == NB_MATRIX) continue;
            CHECK(nb_check(ctx, f, 1, &v, &err) == 0 && err < 1e-6, "d(%s)/d%s: %s (error %g)", fs[i], wrt[k], nb_error(ctx), err);
        }
    }
    nb_ctx_free(ctx);
}

int main(void) {
    test_sizes_of_one();
    test_hash_consing();
    test_canonical_forms();
    test_formats();
    test_structure();
    test_errors();
    test_eval_errors();
    test_shape_regressions();
    test_second_derivatives();
    test_scalar_semantics();
    test_raw_and_simplify();
    test_forward_cost_and_variables();
    test_long_chain();
    TEST_MAIN_END();
}
