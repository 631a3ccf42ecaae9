/* nabla's side of bench/sympy_calculus.py.
 *
 *   calculus symbolic 'EXPR' VAR REPEAT   median seconds of one symbolic
 *       derivative in-process: a fresh context, the declarations, parsing,
 *       nb_derivative and printing the result (Unicode), all counted;
 *   calculus logdet N REPEAT DTYPE       median seconds of one run of the
 *       compiled f = logdet(X) + tr(A·X) with its gradient X⁻ᵀ + Aᵀ, n = N,
 *       X = R + N·I (R uniform in [0, 1)), f64 or f32.
 * Build: cc -O2 -Iinclude bench/calculus.c build/libnabla.a -lopenblas -lm -lpthread */
#define _POSIX_C_SOURCE 200809L
#include "nabla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "timing.h"

#define DECLS "A, B, X: matrix(n, n); a, b, c, x: vector(n)"


static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static int symbolic(const char *src, const char *var, int repeat) {
    double *t = malloc((size_t)repeat * sizeof *t);
    char *last = NULL;
    for (int r = 0; t && r < repeat; r++) {
        double t0 = now();
        nb_ctx *ctx = nb_ctx_new();
        nb_declare(ctx, DECLS);
        nb_expr *f = nb_parse(ctx, src), *v = nb_lookup(ctx, var);
        nb_expr *J = f && v ? nb_derivative(ctx, f, 1, &v, NB_NUMERATOR) : NULL;
        char *s = J ? nb_to_string(ctx, J, NB_FMT_UNICODE) : NULL;
        t[r] = now() - t0;
        if (!s) {
            fprintf(stderr, "%s: %s\n", src, nb_error(ctx));
            nb_ctx_free(ctx);
            return 1;
        }
        free(last);
        last = s;
        nb_ctx_free(ctx);
    }
    printf("%.9f %s\n", median(t, repeat), last ? last : "");
    free(last);
    free(t);
    return 0;
}

static int logdet(int64_t n, int repeat, nb_dtype dtype) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "A, X: matrix(n, n)");
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), n);
    nb_expr *f = nb_parse(ctx, "logdet(X) + tr(A*X)"), *X = nb_lookup(ctx, "X"), *A = nb_lookup(ctx, "A");
    nb_expr *out[2] = {f, nb_gradient(ctx, f, X)}, *in[2] = {X, A};
    nb_program *p = out[1] ? nb_compile(ctx, 2, out, 2, in, dtype, NB_COMPILE_DENSE) : NULL;
    if (!p) return fprintf(stderr, "compile: %s\n", nb_error(ctx)), 1;
    size_t sz = dtype == NB_F64 ? sizeof(double) : sizeof(float), nn = (size_t)(n * n);
    char *x = malloc(nn * sz), *a = malloc(nn * sz), *y = malloc(sz), *g = malloc(nn * sz);
    uint64_t s = 42;
    for (size_t i = 0; i < nn; i++) {
        double r[2];
        for (int k = 0; k < 2; k++) {
            s = s * 6364136223846793005u + 1442695040888963407u;
            r[k] = (double)(s >> 11) / 9007199254740992.0;
        }
        double xv = r[0] + (i % (size_t)(n + 1) == 0 ? (double)n : 0);
        if (dtype == NB_F64) ((double *)x)[i] = xv, ((double *)a)[i] = r[1];
        else ((float *)x)[i] = (float)xv, ((float *)a)[i] = (float)r[1];
    }
    const void *ip[2] = {x, a};
    void *op[2] = {y, g};
    double *t = malloc((size_t)repeat * sizeof *t);
    int rc = nb_program_run(p, ip, op); /* warm-up */
    for (int r = 0; r < repeat && rc == NB_OK; r++) {
        double t0 = now();
        rc = nb_program_run(p, ip, op);
        t[r] = now() - t0;
    }
    if (rc == NB_OK) printf("%.9f %.17g\n", median(t, repeat), dtype == NB_F64 ? *(double *)y : (double)*(float *)y);
    else fprintf(stderr, "run: %s\n", nb_program_error(p));
    free(x), free(a), free(y), free(g), free(t);
    nb_program_free(p);
    nb_ctx_free(ctx);
    return rc != NB_OK;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "symbolic") == 0) return symbolic(argv[2], argv[3], atoi(argv[4]));
    if (argc == 5 && strcmp(argv[1], "logdet") == 0)
        return logdet(atoll(argv[2]), atoi(argv[3]), strcmp(argv[4], "f32") == 0 ? NB_F32 : NB_F64);
    fprintf(stderr, "usage: calculus symbolic 'EXPR' VAR REPEAT | calculus logdet N REPEAT f64|f32\n");
    return 2;
}
