/* Matrix calculus: the Matrix Cookbook's identities (traces, determinants,
 * inverses, norms) and matrixcalculus.org's examples as exact printed forms,
 * each also checked against central differences; the matrix functions
 * compiled in f64 and f32 against the reference evaluator; the stable forms
 * of losses swept to logits of ±1000 against PyTorch's values; forward mode;
 * printing in three formats and ASCII read back; domain and shape errors. */
#include "nabla.h"
#include "nb_internal.h" /* nb_entry */
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DECLS                                                                                                          \
    "A, B, X: matrix(n, n); a, b, c, x, y: vector(n); M: matrix(N, n); w: vector(n); t, z: vector(N); s, k: scalar"

/* Well-conditioned values with det > 0 for the square matrices (strictly
 * diagonally dominant, positive diagonal), n = 3, N = 4. */
static const double X_val[9] = {4, 0.5, -0.3, 0.2, 3.5, 0.4, -0.6, 0.1, 3.8};
static const double A_val[9] = {3, -1, 0.5, 0.7, 2.5, -0.2, 0.3, 0.9, -3.1};
static const double B_val[9] = {2, 0.3, 0.1, -0.4, 2.2, 0.6, 0.5, -0.7, 1.9};

static nb_ctx *new_ctx(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, DECLS);
    nb_set_value(ctx, "X", 3, 3, X_val);
    nb_set_value(ctx, "A", 3, 3, A_val);
    nb_set_value(ctx, "B", 3, 3, B_val);
    return ctx;
}

typedef struct {
    const char *f, *wrt;
    char kind; /* 'n' numerator, 'd' denominator, 'h' Hessian */
    const char *want;
} golden;

/* Petersen & Pedersen, The Matrix Cookbook (2012), equation numbers in the
 * comments; matrixcalculus.org's examples; logistic regression. */
static const golden goldens[] = {
    {"tr(A*X)", "X", 'n', "Aᵀ"},                        /* (100) */
    {"tr(X'*A*X)", "X", 'n', "(A + Aᵀ)·X"},             /* (117) */
    {"det(X)", "X", 'n', "det(X)·X⁻ᵀ"},                 /* (49) */
    {"logdet(X*B)", "X", 'n', "X⁻ᵀ"},
    {"tr(inv(X*A)*X)", "X", 'n', "𝟎"},                /* (X·A)⁻¹·X = A⁻¹ */
    {"logdet(X)", "X", 'n', "X⁻ᵀ"},                     /* (57) */
    {"log(det(X))", "X", 'n', "X⁻ᵀ"},                   /* (57) */
    {"a'*inv(X)*b", "X", 'n', "-X⁻ᵀ·a·bᵀ·X⁻ᵀ"},          /* (61) */
    {"norm2(x - a)", "x", 'n', "(x - a)ᵀ/‖x - a‖"},     /* (129) */
    {"norm2(x - a)", "x", 'd', "(x - a)/‖x - a‖"},       /* (129) */
    {"norm2(X)^2", "X", 'n', "2·X"},                    /* (130) */
    {"bce(M*w, t)/N", "w", 'd', "Mᵀ·(sigmoid(M·w) - t)/N"},
    {"-sum(t .* log(sigmoid(M*w)) + (1-t) .* log(1-sigmoid(M*w)))/N", "w", 'd', "Mᵀ·(sigmoid(M·w) - t)/N"},
    {"bce(M*w, t)/N", "w", 'h', "Mᵀ·diag(sigmoid(M·w) ⊙ (1 - sigmoid(M·w)))·M/N"},
    {"tr(X)", "X", 'n', "I"},                           /* (99) */
    {"tr(X'*A)", "X", 'n', "A"},                        /* (101) */
    {"tr(A*X*B)", "X", 'n', "Aᵀ·Bᵀ"},                   /* (102) */
    {"tr(A*X'*B)", "X", 'n', "B·A"},                    /* (103) */
    {"tr(X*X)", "X", 'n', "2·Xᵀ"},                      /* (106) */
    {"tr(X^2*B)", "X", 'n', "Xᵀ·Bᵀ + Bᵀ·Xᵀ"},           /* (107) */
    {"tr(X'*X)", "X", 'n', "2·X"},                      /* (108) */
    {"tr(X*A*X')", "X", 'n', "X·(A + Aᵀ)"},             /* (110) */
    {"tr(X^3)", "X", 'n', "3·Xᵀ·Xᵀ"},                   /* (112), k = 3 */
    {"tr(inv(X))", "X", 'n', "-X⁻ᵀ·X⁻ᵀ"},               /* (124) */
    {"tr(A*inv(X)*B)", "X", 'n', "-X⁻ᵀ·Aᵀ·Bᵀ·X⁻ᵀ"},     /* (125) */
    {"tr(A*X^-1)", "X", 'n', "-X⁻ᵀ·Aᵀ·X⁻ᵀ"},
    {"det(A*X*B)", "X", 'n', "det(A·X·B)·X⁻ᵀ"},         /* (51): Aᵀ·(A·X·B)⁻ᵀ·Bᵀ = X⁻ᵀ */
    {"det(X)^2", "X", 'n', "2·det(X)²·X⁻ᵀ"},
    {"logdet(X*X)", "X", 'n', "2·X⁻ᵀ"},                 /* Xᵀ·(X·X)⁻ᵀ = (X·X)⁻ᵀ·Xᵀ = X⁻ᵀ */
    {"a'*X*b", "X", 'n', "a·bᵀ"},                       /* (70) */
    {"a'*X'*b", "X", 'n', "b·aᵀ"},                      /* (71) */
    {"a'*X*a", "X", 'n', "a·aᵀ"},                       /* (72) */
    {"b'*X'*X*c", "X", 'n', "X·b·cᵀ + X·c·bᵀ"},         /* (77) */
    {"(X*a)'*(X*a)", "X", 'n', "2·X·a·aᵀ"},             /* (78) with b = a */
    {"x'*A*x", "x", 'd', "(A + Aᵀ)·x"},                 /* (81) */
    {"norm1(x)", "x", 'n', "sign(x)ᵀ"},
    {"norm1(X)", "X", 'n', "sign(X)"},
    {"norm2(x)", "x", 'n', "xᵀ/‖x‖"},
    {"norm2(X)", "X", 'n', "X/‖X‖_F"},
    {"norm2(x)", "x", 'h', "I/‖x‖ - x·xᵀ/‖x‖³"},
    {"logsumexp(x)", "x", 'n', "softmax(x)ᵀ"},
    {"log(sum(exp(x)))", "x", 'n', "softmax(x)ᵀ"},
    {"logsumexp(M*w)", "w", 'd', "Mᵀ·softmax(M·w)"},
    {"logsumexp(x)", "x", 'h', "diag(softmax(x)) - softmax(x)·softmax(x)ᵀ"},
    {"softplus(s)", "s", 'n', "sigmoid(s)"},
    {"log(1 + exp(s))", "s", 'n', "sigmoid(s)"},
    {"logsigmoid(s)", "s", 'n', "sigmoid(-s)"},
    {"bce(z, t)", "t", 'n', "-zᵀ"},
    {"solve(A, b)", "b", 'n', "A⁻¹"},
    {"sum(solve(A, b))", "A", 'n', "-solve(Aᵀ, 𝟏)·solve(A, b)ᵀ"},
    {"logdet(X) + tr(A*X)", "X", 'n', "X⁻ᵀ + Aᵀ"},
    {"tr(X)^2", "X", 'n', "2·tr(X)·I"},
    {"det(s*X)", "s", 'n', "det(s·X)·sum(X ⊙ (s·X)⁻ᵀ)"},
    /* beyond rank 2: ∂vec(F)/∂vec(X)ᵀ (Magnus & Neudecker) */
    {"A*X*B", "X", 'n', "Bᵀ ⊗ A"},
    {"A*X*B", "X", 'd', "B ⊗ Aᵀ"},
    {"X'", "X", 'n', "K"},
    {"X*a", "X", 'n', "aᵀ ⊗ I"},
    {"inv(X)", "X", 'n', "-(X⁻ᵀ ⊗ X⁻¹)"},
    {"X", "X", 'n', "I"},
    {"vec(X)", "X", 'n', "I"},
    {"M*X", "X", 'n', "I ⊗ M"},
    {"X .* A", "X", 'n', "diag(vec(A))"},
    {"X^2", "X", 'n', "Xᵀ ⊗ I + (I ⊗ X)"},
    {"X*inv(X)", "X", 'n', "𝟎"},
    {"kron(X, a)", "X", 'n', "I ⊗ a"},
    {"kron(A, X)", "X", 'n', "((I ⊗ K) ⊗ I)·(vec(A) ⊗ I)"},
    {"sigmoid(M*X)", "X", 'n', "diag(vec(sigmoid(M·X) ⊙ (1 - sigmoid(M·X))))·(I ⊗ M)"},
    {"tr(X)*X", "X", 'n', "vec(X)·vec(I)ᵀ + tr(X)·I"},
    {"solve(X, a)", "X", 'n', "-X⁻¹·(solve(X, a)ᵀ ⊗ I)"},
    {"x*x'*x", "x", 'n', "(xᵀ·x)·I + 2·x·xᵀ"},
    /* a literal whose entry goes through an x-dependent matrix: each row from
     * its entry's scalar gradient, not the vec form's (N·n) x (n·n) factors */
    {"[sum(x), sum(M*diag(x))]", "x", 'n', "[1, 0]·𝟏ᵀ + [0, 1]·𝟏ᵀ·M"},
    {"[logsumexp(M*diag(x)*w), s]", "x", 'n', "[1, 0]·softmax(M·(x ⊙ w))ᵀ·M·diag(w)"},
    /* (P·diag(v))·u = P·(v ⊙ u): no x-dependent matrix is left, no vec form */
    {"diag(x)*A*diag(x)*b", "x", 'n', "diag(A·(b ⊙ x)) + diag(x)·A·diag(b)"},
    {"b'*diag(x)*A*diag(x)", "x", 'n', "diag(Aᵀ·(b ⊙ x)) + diag(x)·Aᵀ·diag(b)"},
    /* diagpart(u·vᵀ) = u ⊙ v, and c·𝟏·𝟏ᵀ is an outer product */
    {"sum(M*diag(x))", "x", 'n', "𝟏ᵀ·M"},
    {"a'*diag(x)*b", "x", 'd', "a ⊙ b"},
    {"sum(A*diag(x)*B)", "x", 'd', "(Aᵀ·𝟏) ⊙ (B·𝟏)"},
    {"a'*A*diag(x)*B*b", "x", 'n', "((Aᵀ·a) ⊙ (B·b))ᵀ"},
    /* (uᵀ ⊗ M)·W = M·diag(u) where W·v = vec(diag(v)) */
    {"diag(x)*A*x", "x", 'n', "diag(A·x) + diag(x)·A"},
    {"M*diag(x)*A*x", "x", 'n', "M·diag(A·x) + M·diag(x)·A"},
    {"M*diag(x)*b", "x", 'n', "M·diag(b)"},
    {"softmax(x)", "x", 'n', "diag(softmax(x)) - softmax(x)·softmax(x)ᵀ"},
    {"logsoftmax(x)", "x", 'n', "I - 𝟏·softmax(x)ᵀ"},
    {"-y'*logsoftmax(x)", "x", 'n', "sum(y)·softmax(x)ᵀ - yᵀ"},
    {"tr(X'*A*X)", "X", 'h', "I ⊗ (A + Aᵀ)"},
    {"logdet(X)", "X", 'h', "-K·(X⁻ᵀ ⊗ X⁻¹)"},
    /* the vec-convention pieces fold back: unvec(s·1) = s·1·1ᵀ, P·(s·1) = s·1, (A ⊗ B)·1 = A·1 ⊗ B·1 */
    {"sum(kron(A, X))", "X", 'n', "sum(A)·𝟏·𝟏ᵀ"},
    {"sum(kron(X, M))*s", "X", 'n', "s·sum(M)·𝟏·𝟏ᵀ"},
    {"sum(kron(M, X)/s)", "X", 'n', "sum(M)·𝟏·𝟏ᵀ/s"},
    {"sum(kron(X, a))", "X", 'n', "sum(a)·𝟏·𝟏ᵀ"},
    /* matrixcalculus.org's examples */
    {"x'*A*x + k*sin(y)'*x", "x", 'd', "Aᵀ·x + A·x + k·sin(y)"},
    {"norm2(M*w - t)^2", "w", 'd', "2·Mᵀ·(M·w - t)"},
};

static void test_goldens(void) {
    uint64_t rng = 12345;
    for (size_t i = 0; i < sizeof goldens / sizeof *goldens; i++) {
        const golden *g = &goldens[i];
        nb_ctx *ctx = new_ctx();
        nb_expr *f = nb_parse(ctx, g->f), *v = nb_lookup(ctx, g->wrt);
        nb_expr *J = !f || !v               ? NULL
                     : g->kind == 'h'       ? nb_hessian(ctx, f, v)
                                            : nb_derivative(ctx, f, 1, &v, g->kind == 'd' ? NB_DENOMINATOR : NB_NUMERATOR);
        char *s = J ? nb_derivative_to_string(ctx, J, NB_FMT_UNICODE) : NULL;
        CHECK(s && strcmp(s, g->want) == 0, "d(%s)/d%s: got \"%s\", want \"%s\"", g->f, g->wrt, s ? s : nb_error(ctx),
              g->want);
        free(s);
        /* numerically: the derivative (of the gradient, for a Hessian) against central differences */
        nb_expr *checked = g->kind == 'h' ? nb_gradient(ctx, f, v) : f;
        double err = 1;
        int rc = -1;
        if (checked && nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 3) == 0 &&
            nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 4) == 0 && nb_randomize(ctx, checked, &rng, -1, 1) == 0)
            rc = nb_check(ctx, checked, 1, &v, &err);
        CHECK(rc == 0 && err < 1e-6, "d(%s)/d%s against central differences: rc %d, error %g %s", g->f, g->wrt, rc, err,
              rc ? nb_error(ctx) : "");
        nb_ctx_free(ctx);
    }
    CHECK(sizeof goldens / sizeof *goldens >= 30, "at least 30 goldens");
}

/* Do a and b have equal values at a random point (n = 3, N = 4)? */
static bool same_value(nb_ctx *ctx, nb_expr *a, nb_expr *b) {
    uint64_t rng = 5;
    nb_matrix va = {0, 0, NULL}, vb = {0, 0, NULL};
    bool same = a && b && nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 3) == 0 && nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 4) == 0 &&
                nb_randomize(ctx, a, &rng, 0.5, 1) == 0 && nb_randomize(ctx, b, &rng, 0.5, 1) == 0 &&
                nb_eval(ctx, a, &va) == 0 && nb_eval(ctx, b, &vb) == 0 && va.rows == vb.rows && va.cols == vb.cols;
    for (int64_t k = 0; same && k < va.rows * va.cols; k++) same = fabs(va.data[k] - vb.data[k]) <= 1e-12 * (1 + fabs(va.data[k]));
    nb_matrix_free(&va);
    nb_matrix_free(&vb);
    return same;
}

/* Three formats, and ASCII read back to an expression of the same value. */
static void test_printing(void) {
    static const char *cases[][4] = {
        {"inv(X)", "X⁻¹", "inv(X)", "X^{-1}"},
        {"inv(X)'", "X⁻ᵀ", "inv(X)'", "X^{-\\top}"},
        {"norm1(x)", "‖x‖₁", "norm1(x)", "\\left\\| x \\right\\|_1"},
        {"norm2(x - a)", "‖x - a‖", "norm2(x - a)", "\\left\\| x - a \\right\\|"},
        {"norm2(X)", "‖X‖_F", "norm2(X)", "\\left\\| X \\right\\|_F"},
        {"tr(A*X)", "tr(A·X)", "tr(A*X)", "\\operatorname{tr}\\left(A X\\right)"},
        {"det(X)", "det(X)", "det(X)", "\\det\\left(X\\right)"},
        {"logdet(X)", "log det(X)", "logdet(X)", "\\log\\det\\left(X\\right)"},
        {"solve(A, b)", "solve(A, b)", "solve(A, b)", "\\operatorname{solve}\\left(A, b\\right)"},
        {"logsumexp(x)", "logsumexp(x)", "logsumexp(x)", "\\operatorname{logsumexp}\\left(x\\right)"},
        {"bce(z, t)", "bce(z, t)", "bce(z, t)", "\\operatorname{bce}\\left(z, t\\right)"},
        {"softplus(x) + logsigmoid(x)", "softplus(x) + logsigmoid(x)", "softplus(x) + logsigmoid(x)",
         "\\operatorname{softplus}\\left(x\\right) + \\operatorname{logsigmoid}\\left(x\\right)"},
        {"X^3", "X·X·X", "X*X*X", "X X X"},
        {"A*(B*X)", "A·B·X", "A*B*X", "A B X"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_ctx *ctx = new_ctx();
        nb_expr *e = nb_parse(ctx, cases[i][0]);
        nb_format fmts[3] = {NB_FMT_UNICODE, NB_FMT_ASCII, NB_FMT_LATEX};
        for (int k = 0; k < 3; k++) {
            char *s = e ? nb_to_string(ctx, e, fmts[k]) : NULL;
            CHECK(s && strcmp(s, cases[i][k + 1]) == 0, "%s: got \"%s\", want \"%s\"", cases[i][0], s ? s : nb_error(ctx),
                  cases[i][k + 1]);
            if (k == 1 && s) CHECK(same_value(ctx, e, nb_parse(ctx, s)), "%s: ASCII \"%s\" reads back", cases[i][0], s);
            free(s);
        }
        nb_ctx_free(ctx);
    }
}

/* Vec-form derivatives print in ASCII as expressions that read back to the
 * same node, product sizes (n·n) included. */
static void test_ascii_round_trip(void) {
    static const char *cases[][2] = {
        {"X", "eye(n·n)"},
        {"X'", "commutation(n, n)"},
        {"inv(X)", "-kron(inv(X)', inv(X))"},
        {"tr(X)*X", "vec(X)*vec(eye(n))' + tr(X)*eye(n·n)"},
        {"X*inv(X)", "zeros(n·n, n·n)"},
        {"X*a", "kron(a', eye(n))"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_ctx *ctx = new_ctx();
        nb_expr *X = nb_lookup(ctx, "X"), *f = nb_parse(ctx, cases[i][0]);
        nb_expr *J = f ? nb_derivative(ctx, f, 1, &X, NB_NUMERATOR) : NULL;
        char *s = J ? nb_to_string(ctx, J, NB_FMT_ASCII) : NULL;
        CHECK(s && strcmp(s, cases[i][1]) == 0, "d(%s)/dX in ASCII: got \"%s\", want \"%s\"", cases[i][0], s ? s : nb_error(ctx),
              cases[i][1]);
        CHECK(s && nb_parse(ctx, s) == J, "\"%s\" reads back to the same node: %s", s ? s : "", nb_error(ctx));
        free(s);
        nb_ctx_free(ctx);
    }
    nb_ctx *ctx = nb_ctx_new();
    CHECK(nb_declare(ctx, "v: vector(m*n); W: matrix(m·n, 3*2)") == 0, "product sizes in declarations: %s", nb_error(ctx));
    CHECK(nb_parse(ctx, "kron(eye(m), eye(n))*v") != NULL, "I(m) ⊗ I(n) is I(m·n): %s", nb_error(ctx));
    nb_ctx_free(ctx);
}

/* Forward mode agrees with reverse: J·T (nb_jvp) = Σ ∇f ⊙ T. */
static void test_forward_mode(void) {
    static const char *cases[][2] = {
        {"det(X)", "X"},        {"logdet(X)", "X"},        {"sum(inv(X))", "X"},       {"sum(solve(X, b))", "X"},
        {"sum(solve(A, b))", "b"}, {"norm1(x)", "x"},      {"norm2(X)", "X"},          {"logsumexp(x)", "x"},
        {"bce(z, t)", "z"},      {"tr(A*X)", "X"},         {"sum(softplus(x) + logsigmoid(x))", "x"},
    };
    static const double T3[9] = {0.3, -0.2, 0.5, 0.1, 0.7, -0.4, 0.2, 0.6, -0.1};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_ctx *ctx = new_ctx();
        uint64_t rng = 99 + i;
        nb_expr *f = nb_parse(ctx, cases[i][0]), *v = nb_lookup(ctx, cases[i][1]);
        nb_type vt = nb_type_of(v);
        nb_declare(ctx, vt.kind == NB_MATRIX ? "T: matrix(n, n)" : vt.rows == nb_dim_symbol(ctx, "N") ? "T: vector(N)"
                                                                                                       : "T: vector(n)");
        nb_expr *T = nb_lookup(ctx, "T");
        int64_t rows = vt.rows == nb_dim_symbol(ctx, "N") ? 4 : 3;
        nb_set_value(ctx, "T", rows, vt.kind == NB_MATRIX ? 3 : 1, T3);
        nb_expr *jvp = nb_jvp(ctx, f, v, T);
        nb_expr *g = nb_gradient(ctx, f, v);
        nb_expr *dot = g ? nb_sum(ctx, nb_mul(ctx, g, T)) : NULL;
        nb_matrix r1 = {0, 0, NULL}, r2 = {0, 0, NULL};
        int rc = nb_randomize(ctx, f, &rng, -1, 1);
        rc = rc || !jvp || !dot || nb_eval(ctx, jvp, &r1) || nb_eval(ctx, dot, &r2);
        CHECK(rc == 0 && fabs(r1.data[0] - r2.data[0]) < 1e-10 * (1 + fabs(r2.data[0])), "jvp of %s: %g vs %g %s",
              cases[i][0], rc ? 0 : r1.data[0], rc ? 0 : r2.data[0], rc ? nb_error(ctx) : "");
        nb_matrix_free(&r1);
        nb_matrix_free(&r2);
        nb_ctx_free(ctx);
    }
}

/* One value of the test point by name (the values new_ctx and fill set). */
static void fill(double *p, int64_t n, uint64_t *rng) {
    for (int64_t i = 0; i < n; i++) {
        *rng = *rng * 6364136223846793005u + 1442695040888963407u;
        p[i] = (double)(*rng >> 11) / 9007199254740992.0 * 2 - 1;
    }
}

/* f and its gradient (vector or matrix f: its derivative, vec form beyond
 * rank 2) w.r.t. every input, compiled in f64 and f32, against
 * nb_eval at the same point. */
static void check_compiled(const char *src, const char *inputs) {
    nb_ctx *ctx = new_ctx();
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), 3);
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "N"), 4);
    nb_expr *f = nb_parse(ctx, src);
    nb_expr *in[4], *out[5];
    double vals[4][16];
    size_t nin = 0, nout = 0;
    uint64_t rng = 7;
    char names[64];
    snprintf(names, sizeof names, "%s", inputs);
    out[nout++] = f;
    for (char *tok = strtok(names, ","); tok && nin < 4; tok = strtok(NULL, ",")) {
        nb_expr *v = in[nin] = nb_lookup(ctx, tok);
        nb_type t = nb_type_of(v);
        int64_t r = t.rows == nb_dim_symbol(ctx, "N") ? 4 : t.rows == 1 ? 1 : 3, c = t.kind == NB_MATRIX ? 3 : 1;
        const double *fixed = !strcmp(tok, "X") ? X_val : !strcmp(tok, "A") ? A_val : !strcmp(tok, "B") ? B_val : NULL;
        if (fixed) memcpy(vals[nin], fixed, sizeof X_val);
        else fill(vals[nin], r * c, &rng);
        nb_set_value(ctx, tok, r, c, vals[nin]);
        if (f) out[nout++] = nb_type_of(f).kind == NB_SCALAR ? nb_gradient(ctx, f, v) : nb_derivative(ctx, f, 1, &v, NB_NUMERATOR);
        nin++;
    }
    for (int dt = 0; dt < 2; dt++) {
        nb_program *p = f ? nb_compile(ctx, nout, out, nin, in, dt ? NB_F32 : NB_F64, NB_COMPILE_DENSE) : NULL;
        CHECK(p != NULL, "%s compiles (%s): %s", src, dt ? "f32" : "f64", nb_error(ctx));
        if (!p) continue;
        float fin[4][16];
        const void *ip[4];
        void *op[5];
        for (size_t i = 0; i < nin; i++) {
            for (int k = 0; k < 16; k++) fin[i][k] = (float)vals[i][k];
            ip[i] = dt ? (const void *)fin[i] : (const void *)vals[i];
        }
        for (size_t o = 0; o < nout; o++) op[o] = calloc((size_t)nb_program_output_size(p, o) + 1, sizeof(double));
        int rc = nb_program_run(p, ip, op);
        CHECK(rc == NB_OK, "%s runs: %s", src, nb_program_error(p));
        for (size_t o = 0; o < nout && rc == NB_OK; o++) {
            nb_matrix ref = {0, 0, NULL};
            if (nb_eval(ctx, out[o], &ref)) {
                CHECK(0, "%s: reference: %s", src, nb_error(ctx));
                continue;
            }
            double worst = 0;
            for (int64_t k = 0; k < ref.rows * ref.cols; k++) {
                double got = dt ? ((float *)op[o])[k] : ((double *)op[o])[k];
                worst = fmax(worst, fabs(got - ref.data[k]) / fmax(1, fabs(ref.data[k])));
            }
            CHECK(worst < (dt ? 1e-4 : 1e-11), "%s output %zu (%s): error %g", src, o, dt ? "f32" : "f64", worst);
            nb_matrix_free(&ref);
        }
        for (size_t o = 0; o < nout; o++) free(op[o]);
        nb_program_free(p);
    }
    nb_ctx_free(ctx);
}

static void test_compiled(void) {
    check_compiled("tr(A*X)", "X,A");
    check_compiled("det(X)", "X");
    check_compiled("logdet(X) + tr(A*X)", "X,A");
    check_compiled("sum(inv(X))", "X");
    check_compiled("a'*inv(X)*b", "X,a,b");
    check_compiled("sum(solve(X, b))", "X,b");
    check_compiled("sum(solve(X, A))", "X,A");
    check_compiled("norm1(x - a)", "x,a");
    check_compiled("norm2(x - a)", "x,a");
    check_compiled("norm2(X)^2", "X");
    check_compiled("logsumexp(x)", "x");
    check_compiled("logsumexp(X)", "X");
    check_compiled("bce(M*w, t)/N", "w,M,t");
    check_compiled("sum(softplus(x) + logsigmoid(x))", "x");
    check_compiled("softmax(x)", "x");
    check_compiled("logsoftmax(x)", "x");
    check_compiled("-a'*logsoftmax(x)", "x,a");
    check_compiled("sum(softmax(x) .* a)", "x,a");
    check_compiled("inv(X)", "X");
    check_compiled("solve(A, x)", "A,x");
    check_compiled("tr(X^3)", "X");
    check_compiled("A*X*B", "X,A,B");
    check_compiled("inv(X)", "X");
    check_compiled("X'", "X");
    check_compiled("vec(X)", "X");
    check_compiled("kron(A, X)", "X,A");
    check_compiled("sum(kron(A, X) .* kron(B, B))", "X,A,B");
    check_compiled("x*x'*x", "x");
    check_compiled("[sum(x), softmax_xent(M*diag(x), M)]", "x,M");
    check_compiled("sigmoid(M*X)", "X,M");
}

/* Written-out losses become their stable forms: value and gradient finite and
 * equal to PyTorch 1.13's (binary_cross_entropy_with_logits, reduction
 * 'sum'; logsumexp) at logits up to ±1000, in f64 and compiled f32. */
static void test_stable_losses(void) {
    static const double zv[7] = {-1000, -50, -1, 0, 1, 50, 1000}, tv[7] = {1, 0, 1, 0, 1, 1, 0};
    static const double bce_torch = 2002.3196705555963;
    static const double bce_grad_torch[7] = {-1.0, 1.928749847963918e-22, -0.7310585786300049, 0.5, -0.2689414213699951, 0.0, 1.0};
    static const double lse_torch = 1000.0, lse_grad_torch[7] = {0, 0, 0, 0, 0, 0, 1.0};
    /* -t'*log(softmax(z)) against PyTorch's -(t * log_softmax(z)).sum()
     * (4·logsumexp(z) − t'z for these labels) */
    static const double ce_torch = 4950.0, ce_grad_torch[7] = {-1, 0, -1, 0, -1, -1, 4};
    static const char *losses[3] = {"-sum(t .* log(sigmoid(z)) + (1-t) .* log(1-sigmoid(z)))", "log(sum(exp(z)))",
                                    "-t'*log(softmax(z))"};
    for (int which = 0; which < 3; which++) {
        const double want = which == 2 ? ce_torch : which ? lse_torch : bce_torch;
        const double *want_grad = which == 2 ? ce_grad_torch : which ? lse_grad_torch : bce_grad_torch;
        nb_ctx *ctx = nb_ctx_new();
        nb_declare(ctx, "z, t: vector(N)");
        nb_set_value(ctx, "z", 7, 1, zv);
        nb_set_value(ctx, "t", 7, 1, tv);
        nb_expr *f = nb_parse(ctx, losses[which]), *z = nb_lookup(ctx, "z"), *t = nb_lookup(ctx, "t");
        nb_expr *g = f ? nb_gradient(ctx, f, z) : NULL;
        nb_matrix fv = {0, 0, NULL}, gv = {0, 0, NULL};
        int rc = !g || nb_eval(ctx, f, &fv) || nb_eval(ctx, g, &gv);
        CHECK(rc == 0, "%s evaluates: %s", losses[which], nb_error(ctx));
        if (rc == 0) {
            CHECK(fabs(fv.data[0] - want) < 1e-12 * want, "%s = %.17g, PyTorch %.17g", losses[which], fv.data[0], want);
            for (int k = 0; k < 7; k++)
                CHECK(isfinite(gv.data[k]) && fabs(gv.data[k] - want_grad[k]) < 1e-15, "%s: gradient %d = %g, PyTorch %g",
                      losses[which], k, gv.data[k], want_grad[k]);
        }
        nb_matrix_free(&fv);
        nb_matrix_free(&gv);
        nb_expr *outs[2] = {f, g}, *ins[2] = {z, t};
        for (int dt = 0; dt < 2; dt++) {
            nb_program *p = g ? nb_compile(ctx, 2, outs, 2, ins, dt ? NB_F32 : NB_F64, NB_COMPILE_DENSE) : NULL;
            CHECK(p != NULL, "%s compiles: %s", losses[which], nb_error(ctx));
            if (!p) continue;
            float zf[7], tf[7], ff, gf[7];
            double fd, gd[7];
            for (int k = 0; k < 7; k++) zf[k] = (float)zv[k], tf[k] = (float)tv[k];
            const void *ip[2] = {dt ? (const void *)zf : (const void *)zv, dt ? (const void *)tf : (const void *)tv};
            void *op[2] = {dt ? (void *)&ff : (void *)&fd, dt ? (void *)gf : (void *)gd};
            CHECK(nb_program_run(p, ip, op) == NB_OK, "%s runs: %s", losses[which], nb_program_error(p));
            double fval = dt ? ff : fd, tol = dt ? 1e-6 : 1e-12;
            CHECK(fabs(fval - want) < tol * want, "%s compiled (%s) = %.17g, PyTorch %.17g", losses[which], dt ? "f32" : "f64",
                  fval, want);
            for (int k = 0; k < 7; k++) {
                double gk = dt ? gf[k] : gd[k];
                CHECK(isfinite(gk) && fabs(gk - want_grad[k]) < tol, "%s compiled (%s): gradient %d = %g, PyTorch %g",
                      losses[which], dt ? "f32" : "f64", k, gk, want_grad[k]);
            }
            nb_program_free(p);
        }
        nb_ctx_free(ctx);
    }
}

static void expect_error(const char *src, const char *decls, const char *message) {
    nb_ctx *ctx = new_ctx();
    nb_declare(ctx, decls);
    nb_expr *e = nb_parse(ctx, src);
    nb_matrix m = {0, 0, NULL};
    int rc = e ? nb_eval(ctx, e, &m) : -1;
    CHECK(rc != 0 && strstr(nb_error(ctx), message), "%s: error \"%s\", want \"%s\"", src, nb_error(ctx), message);
    nb_matrix_free(&m);
    nb_ctx_free(ctx);
}

static void test_errors(void) {
    static const double neg[4] = {1, 2, 3, 4}, sing[4] = {1, 2, 2, 4};
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "P, S: matrix(2, 2)");
    nb_set_value(ctx, "P", 2, 2, neg);
    nb_set_value(ctx, "S", 2, 2, sing);
    static const char *cases[][2] = {
        {"logdet(P)", "logdet of a matrix whose determinant is not positive (det = -2)"},
        {"inv(S)", "inverse of a singular matrix"},
        {"solve(S, P)", "solve with a singular matrix"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_matrix m = {0, 0, NULL};
        nb_expr *e = nb_parse(ctx, cases[i][0]);
        int rc = e ? nb_eval(ctx, e, &m) : -1;
        CHECK(rc != 0 && strstr(nb_error(ctx), cases[i][1]), "%s: error \"%s\"", cases[i][0], nb_error(ctx));
        nb_matrix_free(&m);
    }
    nb_expr *d = nb_parse(ctx, "det(P)");
    nb_matrix m = {0, 0, NULL};
    CHECK(d && nb_eval(ctx, d, &m) == 0 && m.data[0] == -2, "det([[1, 2], [3, 4]]) = -2");
    nb_matrix_free(&m);
    nb_ctx_free(ctx);
    expect_error("det(M)", "", "det needs a square matrix, got matrix(N, n)");
    expect_error("tr(x)", "", "tr needs a square matrix, got vector(n)");
    expect_error("solve(A, t)", "", "solve(A, B) needs B with as many rows as the square A; got A matrix(n, n) and B vector(N)");
    expect_error("bce(z, x)", "", "bce(z, y) needs logits and labels of one shape; got z vector(N) and y vector(n)");
    expect_error("M^2", "", "a matrix power needs a square matrix, got matrix(N, n)");
    expect_error("X^100", "", "a matrix power X^100 is too large");
    /* an entry of a matrix of symbolic size has no Kronecker form (eᵢ needs a number) */
    nb_ctx *c2 = new_ctx();
    nb_expr *X = nb_lookup(c2, "X"), *f = nb_mul(c2, nb_entry(c2, X, 0, 1), X);
    CHECK(f && !nb_derivative(c2, f, 1, &X, NB_NUMERATOR) && strstr(nb_error(c2), "cannot write the derivative through"),
          "X[1, 2]·X w.r.t. X of size n: %s", nb_error(c2));
    nb_ctx_free(c2);
}

static const char *str(nb_ctx *ctx, nb_expr *e) {
    static char buf[512];
    char *s = e ? nb_to_string(ctx, e, NB_FMT_UNICODE) : NULL;
    snprintf(buf, sizeof buf, "%s", s ? s : nb_error(ctx));
    free(s);
    return buf;
}

/* nb_derivatives: one derivative per variable of any type, each equal to the
 * one-variable derivative; argument checks. */
static void test_derivative_list(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "W1: matrix(h, n); b1: vector(h); W2: row(h); b2: scalar; x: vector(n)");
    nb_expr *f = nb_parse(ctx, "sigmoid(W2*tanh(W1*x + b1) + b2)");
    const char *names[4] = {"W1", "b1", "W2", "b2"};
    nb_expr *wrt[4], *d[4];
    for (int k = 0; k < 4; k++) wrt[k] = nb_lookup(ctx, names[k]);
    for (int layout = 0; layout < 2; layout++) {
        nb_layout l = layout ? NB_DENOMINATOR : NB_NUMERATOR;
        CHECK(nb_derivatives(ctx, f, 4, wrt, l, d) == 0, "nb_derivatives: %s", nb_error(ctx));
        for (int k = 0; k < 4; k++)
            CHECK(d[k] == nb_derivative(ctx, f, 1, &wrt[k], l), "d/d%s (layout %d) is the one-variable derivative", names[k], layout);
    }
    CHECK(nb_derivatives(ctx, f, 0, wrt, NB_NUMERATOR, d) == -1 && strstr(nb_error(ctx), "missing"), "no variables: %s",
          nb_error(ctx));
    CHECK(nb_derivatives(ctx, f, 1, &f, NB_NUMERATOR, d) == -1 && strstr(nb_error(ctx), "not one"), "not a variable: %s",
          nb_error(ctx));
    CHECK(nb_derivatives(NULL, f, 1, wrt, NB_NUMERATOR, d) == -1, "no context");
    nb_expr *g = nb_parse(ctx, "W1*x + b1");
    CHECK(nb_derivatives(ctx, g, 2, wrt, NB_NUMERATOR, d) == 0, "vector f w.r.t. a matrix: %s", nb_error(ctx));
    CHECK_STR(str(ctx, d[0]), "xᵀ ⊗ I");
    CHECK_STR(str(ctx, d[1]), "I");
    CHECK(nb_derivative(ctx, f, 2, wrt, NB_NUMERATOR) == NULL && strstr(nb_error(ctx), "nb_derivatives"),
          "nb_derivative points to nb_derivatives: %s", nb_error(ctx));
    nb_ctx_free(ctx);
}

/* The new builders check their arguments: NULL in, NULL out, no crash. */
static void test_api_arguments(void) {
    nb_ctx *ctx = new_ctx();
    nb_expr *X = nb_lookup(ctx, "X"), *x = nb_lookup(ctx, "x");
    nb_expr *(*unary[])(nb_ctx *, nb_expr *) = {nb_trace, nb_det, nb_logdet, nb_inv, nb_norm1, nb_norm2,
                                                nb_logsumexp, nb_softplus, nb_logsigmoid, nb_vec};
    nb_expr *(*binary[])(nb_ctx *, nb_expr *, nb_expr *) = {nb_solve, nb_kron, nb_bce, nb_commutation};
    for (size_t i = 0; i < sizeof unary / sizeof *unary; i++)
        CHECK(unary[i](ctx, NULL) == NULL && unary[i](NULL, X) == NULL, "unary builder %zu: NULL arguments", i);
    for (size_t i = 0; i < sizeof binary / sizeof *binary; i++)
        CHECK(binary[i](ctx, NULL, X) == NULL && binary[i](ctx, X, NULL) == NULL && binary[i](NULL, X, X) == NULL,
              "binary builder %zu: NULL arguments", i);
    CHECK(nb_matpow(NULL, X, 2) == NULL && nb_matpow(ctx, NULL, 2) == NULL, "nb_matpow: NULL arguments");
    CHECK(nb_commutation(ctx, x, X) == NULL && strstr(nb_error(ctx), "commutation(m, n) needs two sizes"), "%s", nb_error(ctx));
    CHECK(nb_derivatives(ctx, X, 1, &X, NB_NUMERATOR, NULL) == -1, "nb_derivatives: no output array");
    nb_ctx_free(ctx);
}

/* nb_randomize binds the factors of a product dimension, not the product:
 * a compiled program takes products from their factors (the compile fuzz
 * target found eye(i*x) with every dimension "bound" and no output size). */
static void test_random_product_dims(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *f = nb_parse(ctx, "eye(i*x) + 1");
    uint64_t rng = 5;
    CHECK(f && nb_randomize(ctx, f, &rng, -2, 2) == 0, "randomize: %s", nb_error(ctx));
    nb_program *p = f ? nb_compile(ctx, 1, &f, 0, NULL, NB_F64, 0) : NULL;
    int64_t r = 0, c = 0;
    CHECK(p && nb_program_output_shape(p, 0, &r, &c) == NB_OK && r == c && r >= 4 && r <= 25,
          "eye(i*x) has a size after randomize: %lld x %lld %s", (long long)r, (long long)c, p ? nb_program_error(p) : nb_error(ctx));
    nb_matrix want = {0, 0, NULL};
    CHECK(nb_eval(ctx, f, &want) == 0 && want.rows == r, "evaluates at the same size: %s", nb_error(ctx));
    nb_matrix_free(&want);
    nb_program_free(p);
    nb_ctx_free(ctx);
}

int main(void) {
    test_random_product_dims();
    test_api_arguments();
    test_derivative_list();
    test_goldens();
    test_printing();
    test_ascii_round_trip();
    test_forward_mode();
    test_compiled();
    test_stable_losses();
    test_errors();
    TEST_MAIN_END();
}
