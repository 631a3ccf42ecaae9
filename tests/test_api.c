/* The C API's trust boundary: every public function of nabla.h (but the
 * nb_compile and nb_program_* calls, which src/compile.c checks itself) given each kind of bad
 * argument — NULL context, NULL expression, string or out-pointer, an
 * expression of a second live context or of a freed one, sizes whose product
 * overflows, invalid enum values — returns its error value with a message in
 * nb_error and does not crash (the sanitizer build runs this too). */
#include "nabla.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef nb_expr *(*unary_fn)(nb_ctx *, nb_expr *);
typedef nb_expr *(*binary_fn)(nb_ctx *, nb_expr *, nb_expr *);

static const struct {
    const char *name;
    unary_fn f;
} unary[] = {{"nb_neg", nb_neg},         {"nb_transpose", nb_transpose}, {"nb_sum", nb_sum},   {"nb_mean", nb_mean},
             {"nb_norm2", nb_norm2},     {"nb_diag", nb_diag},           {"nb_exp", nb_exp},   {"nb_log", nb_log},
             {"nb_sin", nb_sin},         {"nb_cos", nb_cos},             {"nb_tan", nb_tan},   {"nb_tanh", nb_tanh},
             {"nb_sqrt", nb_sqrt},       {"nb_abs", nb_abs},             {"nb_sigmoid", nb_sigmoid},
             {"nb_relu", nb_relu},       {"nb_softmax", nb_softmax},     {"nb_logsoftmax", nb_logsoftmax}};

static const struct {
    const char *name;
    binary_fn f;
} binary[] = {{"nb_add", nb_add},       {"nb_sub", nb_sub}, {"nb_mul", nb_mul}, {"nb_div", nb_div},
              {"nb_pow", nb_pow},       {"nb_matmul", nb_matmul}, {"nb_max", nb_max}, {"nb_min", nb_min},
              {"nb_dot", nb_dot},       {"nb_softmax_xent", nb_softmax_xent}, {"nb_gradient", nb_gradient}};

static bool error_mentions(nb_ctx *ctx, const char *what) {
    bool ok = strstr(nb_error(ctx), what) != NULL;
    nb_clear_error(ctx);
    return ok;
}

static nb_expr *cmp_gt(nb_ctx *ctx, nb_expr *a, nb_expr *b) { return nb_compare(ctx, ">", a, b); }

/* Every builder taking expressions, with `bad` in each position: NULL result
 * and a message containing `what`. */
static void builders_reject(nb_ctx *ctx, nb_expr *good, nb_expr *bad, const char *what) {
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
        nb_clear_error(ctx);
        CHECK(unary[i].f(ctx, bad) == NULL && error_mentions(ctx, what), "%s(%s): %s", unary[i].name, what, nb_error(ctx));
        CHECK(unary[i].f(NULL, good) == NULL, "%s(NULL ctx)", unary[i].name);
    }
    for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) {
        for (int pos = 0; pos < 2; pos++) {
            nb_clear_error(ctx);
            nb_expr *r = pos ? binary[i].f(ctx, good, bad) : binary[i].f(ctx, bad, good);
            CHECK(r == NULL && error_mentions(ctx, what), "%s(argument %d %s)", binary[i].name, pos + 1, what);
        }
        CHECK(binary[i].f(NULL, good, good) == NULL, "%s(NULL ctx)", binary[i].name);
    }
    nb_clear_error(ctx);
    CHECK(cmp_gt(ctx, bad, good) == NULL && error_mentions(ctx, what), "nb_compare(%s)", what);
    nb_expr *pair[2] = {good, bad};
    CHECK(nb_vector_lit(ctx, 2, pair) == NULL && error_mentions(ctx, what), "nb_vector_lit(%s)", what);
    CHECK(nb_matrix_lit(ctx, 1, 2, pair) == NULL && error_mentions(ctx, what), "nb_matrix_lit(%s)", what);
    CHECK(nb_derivative(ctx, bad, 1, &good, NB_NUMERATOR) == NULL && error_mentions(ctx, what), "nb_derivative(f %s)", what);
    CHECK(nb_derivative(ctx, good, 1, &bad, NB_NUMERATOR) == NULL && error_mentions(ctx, what), "nb_derivative(wrt %s)", what);
    CHECK(nb_jvp(ctx, good, good, bad) == NULL && error_mentions(ctx, what), "nb_jvp(%s)", what);
    CHECK(nb_vjp(ctx, bad, good, good) == NULL && error_mentions(ctx, what), "nb_vjp(%s)", what);
    CHECK(nb_to_string(ctx, bad, NB_FMT_ASCII) == NULL && error_mentions(ctx, what), "nb_to_string(%s)", what);
    CHECK(nb_derivative_to_string(ctx, bad, NB_FMT_ASCII) == NULL && error_mentions(ctx, what), "nb_derivative_to_string(%s)", what);
    nb_matrix m;
    CHECK(nb_eval(ctx, bad, &m) == -1 && error_mentions(ctx, what), "nb_eval(%s)", what);
    double err;
    CHECK(nb_check(ctx, bad, 1, &good, &err) == -1 && error_mentions(ctx, what), "nb_check(%s)", what);
    CHECK(nb_check(ctx, good, 1, &bad, &err) == -1 && error_mentions(ctx, what), "nb_check(wrt %s)", what);
    uint64_t rng = 1;
    CHECK(nb_randomize(ctx, bad, &rng, 0, 1) == -1 && error_mentions(ctx, what), "nb_randomize(%s)", what);
    nb_clear_error(ctx);
}

static void test_null_arguments(void) {
    CHECK(nb_error(NULL) != NULL && nb_error(NULL)[0], "nb_error(NULL) is a message");
    CHECK(nb_error_column(NULL) == -1, "nb_error_column(NULL)");
    nb_clear_error(NULL);
    nb_ctx_free(NULL);
    nb_unbind_all(NULL);
    nb_matrix_free(NULL);
    CHECK(nb_num(NULL, 1) == NULL && nb_rational(NULL, 1, 2) == NULL && nb_identity(NULL, 2) == NULL, "leaves need a ctx");
    CHECK(nb_var(NULL, "x", nb_scalar_type()) == NULL && nb_lookup(NULL, "x") == NULL, "names need a ctx");
    CHECK(nb_parse(NULL, "x") == NULL && nb_declare(NULL, "x: scalar") == -1, "parse needs a ctx");
    CHECK(nb_dim_symbol(NULL, "n") == 0 && nb_dimval(NULL, 2) == NULL, "dims need a ctx");
    CHECK(nb_set_value(NULL, "x", 1, 1, (double[]){1}) == -1 && nb_bind_dim(NULL, 2, 2) == -1, "values need a ctx");
    nb_type t = nb_type_of(NULL);
    CHECK(t.rows == 0 && t.cols == 0, "nb_type_of(NULL) is an empty type");
    char buf[32];
    CHECK(strcmp(nb_type_str(NULL, nb_vector_type(3), buf, sizeof buf), "vector(3)") == 0, "nb_type_str without ctx");
    CHECK(strcmp(nb_type_str(NULL, nb_scalar_type(), NULL, 0), "") == 0, "nb_type_str(NULL buf)");

    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type());
    builders_reject(ctx, x, NULL, "NULL");
    CHECK(nb_parse(ctx, NULL) == NULL && error_mentions(ctx, "no source"), "nb_parse(NULL)");
    CHECK(nb_declare(ctx, NULL) == -1 && error_mentions(ctx, "no declarations"), "nb_declare(NULL)");
    CHECK(nb_var(ctx, NULL, nb_scalar_type()) == NULL && error_mentions(ctx, "name"), "nb_var(NULL)");
    CHECK(nb_lookup(ctx, NULL) == NULL && error_mentions(ctx, "NULL"), "nb_lookup(NULL)");
    CHECK(nb_dim_symbol(ctx, NULL) == 0 && error_mentions(ctx, "NULL"), "nb_dim_symbol(NULL)");
    CHECK(nb_dim_symbol(ctx, "") == 0 && error_mentions(ctx, "empty"), "nb_dim_symbol(\"\")");
    CHECK(nb_set_value(ctx, NULL, 1, 1, (double[]){1}) == -1 && error_mentions(ctx, "NULL"), "nb_set_value(NULL name)");
    CHECK(nb_set_value(ctx, "x", 1, 1, NULL) == -1 && error_mentions(ctx, "NULL"), "nb_set_value(NULL data)");
    CHECK(nb_compare(ctx, NULL, x, x) == NULL && error_mentions(ctx, "comparison"), "nb_compare(NULL op)");
    CHECK(nb_vector_lit(ctx, 2, NULL) == NULL && error_mentions(ctx, "NULL"), "nb_vector_lit(NULL array)");
    CHECK(nb_matrix_lit(ctx, 2, 2, NULL) == NULL && error_mentions(ctx, "NULL"), "nb_matrix_lit(NULL array)");
    CHECK(nb_derivative(ctx, x, 2, NULL, NB_NUMERATOR) == NULL && error_mentions(ctx, "NULL"), "nb_derivative(NULL wrt)");
    CHECK(nb_eval(ctx, x, NULL) == -1 && error_mentions(ctx, "NULL"), "nb_eval(NULL out)");
    CHECK(nb_check(ctx, x, 1, &x, NULL) == -1 && error_mentions(ctx, "NULL"), "nb_check(NULL err)");
    CHECK(nb_randomize(ctx, x, NULL, 0, 1) == -1 && error_mentions(ctx, "NULL"), "nb_randomize(NULL rng)");

    /* a NULL from a failed builder keeps that builder's message */
    nb_expr *v = nb_var(ctx, "v", nb_vector_type(2)), *u = nb_var(ctx, "u", nb_vector_type(3));
    nb_expr *bad = nb_add(ctx, v, u);
    CHECK(bad == NULL && nb_exp(ctx, bad) == NULL && strstr(nb_error(ctx), "shape mismatch"), "%s", nb_error(ctx));
    nb_ctx_free(ctx);
}

static void test_foreign_expressions(void) {
    nb_ctx *ctx = nb_ctx_new(), *other = nb_ctx_new(), *gone = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type());
    nb_expr *y = nb_var(other, "y", nb_scalar_type());
    builders_reject(ctx, x, y, "another");
    builders_reject(other, y, x, "another");
    /* many nodes, so the arena has several blocks */
    nb_expr *e = x;
    for (int i = 0; i < 20000; i++) e = nb_add(ctx, nb_sin(ctx, e), nb_num(ctx, i));
    CHECK(e != NULL, "a long chain builds");
    CHECK(nb_exp(other, e) == NULL && error_mentions(other, "another"), "a node of a late block is foreign to other");
    CHECK(nb_exp(ctx, e) != NULL, "and owned by ctx");
    nb_expr *z = nb_var(gone, "z", nb_scalar_type());
    nb_expr *w = nb_exp(gone, z);
    nb_ctx_free(gone);
    builders_reject(ctx, x, z, "another");
    builders_reject(ctx, x, w, "another");
    nb_ctx_free(ctx);
    nb_ctx_free(other);
}

static void test_sizes_and_enums(void) {
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *x = nb_var(ctx, "x", nb_scalar_type());
    CHECK(nb_declare(ctx, "A: matrix(m, n); v: vector(n)") == 0, "declare");
    double one = 1;
    CHECK(nb_set_value(ctx, "A", INT64_C(1) << 40, INT64_C(1) << 40, &one) == -1 && error_mentions(ctx, "too large"),
          "nb_set_value with an overflowing entry count");
    CHECK(nb_set_value(ctx, "A", INT64_MAX, 2, &one) == -1 && error_mentions(ctx, "too large"), "INT64_MAX rows");
    CHECK(nb_set_value(ctx, "A", -1, 2, &one) == -1 && nb_error(ctx)[0], "negative rows");
    nb_clear_error(ctx);
    nb_dim n = nb_dim_symbol(ctx, "n");
    CHECK(nb_bind_dim(ctx, n, INT64_C(1) << 40) == -1 && error_mentions(ctx, "largest size"), "nb_bind_dim too large");
    CHECK(nb_bind_dim(ctx, n, 0) == -1 && error_mentions(ctx, "positive"), "nb_bind_dim 0");
    CHECK(nb_bind_dim(ctx, -1000, 3) == -1 && error_mentions(ctx, "unknown"), "nb_bind_dim unknown symbol");
    CHECK(nb_identity(ctx, -1000) == NULL && error_mentions(ctx, "dimension symbol"), "nb_identity(bad dim)");
    CHECK(nb_identity(ctx, 0) == NULL && error_mentions(ctx, "dimension symbol"), "nb_identity(0)");
    CHECK(nb_dimval(ctx, -77) == NULL && error_mentions(ctx, "dimension symbol"), "nb_dimval(bad dim)");
    nb_expr *elems[1] = {x};
    CHECK(nb_matrix_lit(ctx, SIZE_MAX / 2, 4, elems) == NULL && error_mentions(ctx, "too large"), "matrix literal overflow");
    CHECK(nb_matrix_lit(ctx, 0, 4, elems) == NULL && error_mentions(ctx, "empty"), "empty matrix literal");
    CHECK(nb_vector_lit(ctx, 0, NULL) == NULL && error_mentions(ctx, "empty"), "empty vector literal");
    CHECK(nb_num(ctx, NAN) == NULL && error_mentions(ctx, "not a finite number"), "nb_num(NaN)");
    CHECK(nb_num(ctx, -INFINITY) == NULL && error_mentions(ctx, "not a finite number"), "nb_num(-inf)");
    CHECK(nb_rational(ctx, INT64_MIN, -1) != NULL, "nb_rational(INT64_MIN, -1) is the exact 2^63");

    nb_type bad_kind = {(nb_kind)7, 1, 1};
    CHECK(nb_var(ctx, "q", bad_kind) == NULL && error_mentions(ctx, "invalid type"), "nb_var(invalid kind)");
    char buf[64];
    CHECK(strstr(nb_type_str(ctx, bad_kind, buf, sizeof buf), "invalid") != NULL, "nb_type_str(invalid kind)");
    CHECK(nb_derivative(ctx, x, 1, &x, (nb_layout)5) == NULL && error_mentions(ctx, "invalid layout"), "invalid layout");
    CHECK(nb_to_string(ctx, x, (nb_format)9) == NULL && error_mentions(ctx, "invalid format"), "invalid format");
    CHECK(nb_derivative_to_string(ctx, x, (nb_format)-1) == NULL && error_mentions(ctx, "invalid format"), "invalid format");
    uint64_t rng = 1;
    CHECK(nb_randomize(ctx, x, &rng, 1, 0) == -1 && error_mentions(ctx, "range"), "nb_randomize(empty range)");
    nb_ctx_free(ctx);
}

int main(void) {
    test_null_arguments();
    test_foreign_expressions();
    test_sizes_and_enums();
    TEST_MAIN_END();
}
