/* Every row of docs/reference.md (Parr & Howard): the printed derivative in both
 * layouts, and its value against central finite differences. */
#include "nabla.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const char *decls, *f, *wrt;
    const char *numerator, *denominator; /* ASCII */
} row;

static const row rows[] = {
    /* Scalar functions of several scalars */
    {"", "3*x^2*y", "x,y", "[6*x*y, 3*x^2]'", "[6*x*y, 3*x^2]"},
    {"", "2*x + y^8", "x,y", "[2, 8*y^7]'", "[2, 8*y^7]"},
    {"", "[3*x^2*y, 2*x + y^8]", "x,y", "[[6*x*y, 3*x^2], [2, 8*y^7]]", "[[6*x*y, 2], [3*x^2, 8*y^7]]"},
    {"", "99", "x", "0", "0"},
    {"", "3*x", "x", "3", "3"},
    {"", "x^3", "x", "3*x^2", "3*x^2"},
    {"", "x^2 + 3*x", "x", "2*x + 3", "2*x + 3"},
    {"", "x^2 - 3*x", "x", "2*x - 3", "2*x - 3"},
    {"", "x^2*x", "x", "3*x^2", "3*x^2"},
    {"", "ln(x^2)", "x", "2/x", "2/x"},
    {"", "9*(x + x^2)", "x", "9 + 18*x", "9 + 18*x"},
    {"", "sin(x^2)", "x", "2*x*cos(x^2)", "2*x*cos(x^2)"},
    {"", "ln(sin(x^3)^2)", "x", "6*x^2*cos(x^3)/sin(x^3)", "6*x^2*cos(x^3)/sin(x^3)"},
    {"", "x + x^2", "x", "1 + 2*x", "1 + 2*x"},
    {"", "sin(x + x^2)", "x", "cos(x + x^2)*(1 + 2*x)", "cos(x + x^2)*(1 + 2*x)"},
    {"", "[ln(x^2), sin(3*x)]", "x", "[2/x, 3*cos(3*x)]", "[2/x, 3*cos(3*x)]'"},
    /* Vector functions */
    {"w, x: vector(n); z: scalar", "x", "x", "eye(n)", "eye(n)"},
    {"w, x: vector(n); z: scalar", "w + x", "w", "eye(n)", "eye(n)"},
    {"w, x: vector(n); z: scalar", "w + x", "x", "eye(n)", "eye(n)"},
    {"w, x: vector(n); z: scalar", "w - x", "w", "eye(n)", "eye(n)"},
    {"w, x: vector(n); z: scalar", "w - x", "x", "-eye(n)", "-eye(n)"},
    {"w, x: vector(n); z: scalar", "w .* x", "w", "diag(x)", "diag(x)"},
    {"w, x: vector(n); z: scalar", "w .* x", "x", "diag(w)", "diag(w)"},
    {"w, x: vector(n); z: scalar", "w ./ x", "w", "diag(1 ./ x)", "diag(1 ./ x)"},
    {"w, x: vector(n); z: scalar", "w ./ x", "x", "diag(-w ./ x.^2)", "diag(-w ./ x.^2)"},
    {"w, x: vector(n); z: scalar", "x + z", "x", "eye(n)", "eye(n)"},
    {"w, x: vector(n); z: scalar", "x + z", "z", "ones(n)", "ones(n)'"},
    {"w, x: vector(n); z: scalar", "x*z", "x", "z*eye(n)", "z*eye(n)"},
    {"w, x: vector(n); z: scalar", "x*z", "z", "x", "x'"},
    {"w, x: vector(n); z: scalar", "sum(x)", "x", "ones(n)'", "ones(n)"},
    {"w, x: vector(n); z: scalar", "sum(x*z)", "x", "z*ones(n)'", "z*ones(n)"},
    {"w, x: vector(n); z: scalar", "sum(x*z)", "z", "sum(x)", "sum(x)"},
    {"w, x: vector(n); z: scalar", "dot(w, x)", "w", "x'", "x"},
    {"w, x: vector(n); z: scalar", "dot(w, x)", "x", "w'", "w"},
    {"w, x: vector(n); z: scalar", "sum(w .* x)", "w", "x'", "x"},
    {"w, x: vector(n); z: scalar", "exp(sin(x))", "x", "diag(exp(sin(x)) .* cos(x))", "diag(exp(sin(x)) .* cos(x))"},
    {"w, x: vector(n); z: scalar", "max(0, x)", "x", "diag(x > 0)", "diag(x > 0)"},
    /* The neuron and its cost */
    {"w, x: vector(n); b: scalar", "dot(w, x) + b", "w", "x'", "x"},
    {"w, x: vector(n); b: scalar", "dot(w, x) + b", "b", "1", "1"},
    {"w, x: vector(n); b: scalar", "max(0, dot(w, x) + b)", "w", "(w'*x + b > 0)*x'", "(w'*x + b > 0)*x"},
    {"w, x: vector(n); b: scalar", "max(0, dot(w, x) + b)", "b", "w'*x + b > 0", "w'*x + b > 0"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "sum((y - max(0, X*w + b)).^2)/N", "w",
     "2*((X*w + b > 0) .* (X*w + b - y))'*X/N", "2*X'*((X*w + b > 0) .* (X*w + b - y))/N"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "sum((y - max(0, X*w + b)).^2)/N", "b",
     "2*sum((X*w + b > 0) .* (X*w + b - y))/N", "2*sum((X*w + b > 0) .* (X*w + b - y))/N"},
    {"w: vector(n); X: matrix(N, n); y: vector(N); b: scalar", "u = X*w + b; v = y - max(0, u); sum(v.^2)/N", "w",
     "2*((X*w + b > 0) .* (X*w + b - y))'*X/N", "2*X'*((X*w + b > 0) .* (X*w + b - y))/N"},
};

/* ---- a small seeded generator ---- */
static uint64_t rng_state = 12345;
static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(rng_state >> 11) / 9007199254740992.0;
}

static size_t split_names(char *list, char **names, size_t max) {
    size_t n = 0;
    for (char *tok = strtok(list, ", "); tok && n < max; tok = strtok(NULL, ", ")) names[n++] = tok;
    return n;
}

/* Binds every declared/used variable to random values away from kinks. */
static void bind_random(nb_ctx *ctx, const char *decls) {
    static const char *names[] = {"x", "y", "z", "w", "b", "X"};
    (void)decls;
    nb_dim n = nb_dim_symbol(ctx, "n"), N = nb_dim_symbol(ctx, "N");
    nb_bind_dim(ctx, n, 3);
    nb_bind_dim(ctx, N, 4);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        nb_expr *v = nb_lookup(ctx, names[i]);
        if (!v) continue;
        nb_type t = nb_type_of(v);
        int64_t r = t.rows < 0 ? (t.rows == n ? 3 : 4) : t.rows, c = t.cols < 0 ? (t.cols == n ? 3 : 4) : t.cols;
        double data[64];
        for (int64_t k = 0; k < r * c; k++) {
            double u = uniform(0.3, 1.5);
            data[k] = uniform(0, 1) < 0.3 ? -u : u;
        }
        nb_set_value(ctx, names[i], r, c, data);
    }
}

static double eval_entry(nb_ctx *ctx, nb_expr *f, int64_t i) {
    nb_matrix m;
    if (nb_eval(ctx, f, &m)) return NAN;
    double v = m.data[i];
    nb_matrix_free(&m);
    return v;
}

/* Max relative error between the evaluated derivative and central differences. */
static double check_numeric(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr **wrt, nb_expr *J) {
    nb_matrix Jv, fv;
    if (nb_eval(ctx, J, &Jv) || nb_eval(ctx, f, &fv)) return INFINITY;
    int64_t m = fv.rows * fv.cols, col = 0;
    double worst = 0;
    for (size_t k = 0; k < nwrt; k++) {
        nb_matrix x;
        nb_eval(ctx, wrt[k], &x);
        int64_t nx = x.rows * x.cols;
        for (int64_t j = 0; j < nx; j++, col++) {
            double x0 = x.data[j], h = 1e-6 * fmax(1, fabs(x0));
            x.data[j] = x0 + h;
            char *name = nb_to_string(ctx, wrt[k], NB_FMT_ASCII);
            nb_set_value(ctx, name, x.rows, x.cols, x.data);
            double fp[64], fm[64];
            for (int64_t i = 0; i < m; i++) fp[i] = eval_entry(ctx, f, i);
            x.data[j] = x0 - h;
            nb_set_value(ctx, name, x.rows, x.cols, x.data);
            for (int64_t i = 0; i < m; i++) fm[i] = eval_entry(ctx, f, i);
            x.data[j] = x0;
            nb_set_value(ctx, name, x.rows, x.cols, x.data);
            free(name);
            for (int64_t i = 0; i < m; i++) {
                double fd = (fp[i] - fm[i]) / (2 * h);
                /* numerator layout: row i = entry of f; a matrix wrt keeps its shape */
                double an = nb_type_of(wrt[k]).kind == NB_MATRIX ? Jv.data[j] : Jv.data[i * Jv.cols + col];
                double err = fabs(fd - an) / fmax(1, fmax(fabs(fd), fabs(an)));
                if (!(err <= worst)) worst = err;
            }
        }
        nb_matrix_free(&x);
    }
    nb_matrix_free(&Jv);
    nb_matrix_free(&fv);
    return worst;
}

int main(void) {
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        const row *t = &rows[r];
        nb_ctx *ctx = nb_ctx_new();
        CHECK(nb_declare(ctx, t->decls) == 0, "declare %s: %s", t->decls, nb_error(ctx));
        nb_expr *f = nb_parse(ctx, t->f);
        CHECK(f != NULL, "parse %s: %s", t->f, nb_error(ctx));
        if (!f) {
            nb_ctx_free(ctx);
            continue;
        }
        char list[64], *names[8];
        snprintf(list, sizeof list, "%s", t->wrt);
        size_t nwrt = split_names(list, names, 8);
        nb_expr *wrt[8];
        /* A name the function does not mention is a scalar it does not depend on. */
        for (size_t k = 0; k < nwrt; k++)
            wrt[k] = nb_lookup(ctx, names[k]) ? nb_lookup(ctx, names[k]) : nb_var(ctx, names[k], nb_scalar_type());
        for (int layout = 0; layout < 2; layout++) {
            nb_expr *J = nb_derivative(ctx, f, nwrt, wrt, layout ? NB_DENOMINATOR : NB_NUMERATOR);
            char *s = nb_derivative_to_string(ctx, J, NB_FMT_ASCII);
            const char *want = layout ? t->denominator : t->numerator;
            CHECK(s && strcmp(s, want) == 0, "d(%s)/d(%s) %s: got \"%s\", want \"%s\"", t->f, t->wrt,
                  layout ? "denominator" : "numerator", s ? s : nb_error(ctx), want);
            free(s);
        }
        nb_expr *J = nb_derivative(ctx, f, nwrt, wrt, NB_NUMERATOR);
        for (int point = 0; point < 3 && J; point++) {
            bind_random(ctx, t->decls);
            double err = check_numeric(ctx, f, nwrt, wrt, J);
            CHECK(err < 1e-6, "d(%s)/d(%s) numeric error %g (%s)", t->f, t->wrt, err, nb_error(ctx));
        }
        nb_ctx_free(ctx);
    }
    TEST_MAIN_END();
}
