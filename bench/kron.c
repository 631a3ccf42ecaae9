/* Compiled Jacobian-vector products of matrix functions in the vec
 * convention: J·vec(V) for J = d(A·X·B)/dX = Bᵀ ⊗ A and J = d X⁻¹/dX =
 * −(X⁻ᵀ ⊗ X⁻¹), with the Kronecker product kept structured (the default: two
 * n x n products) and formed densely (NB_COMPILE_DENSE: the n² x n² matrix,
 * what compiled programs did before).
 *
 *   kron N REPEAT   prints, for each case and mode: median seconds of one run,
 *                   the workspace in bytes, and the largest difference between
 *                   the two modes' results.  The dense mode is skipped when its
 *                   n² x n² Jacobian would exceed 2 GiB (it is then reported as
 *                   the bytes it would need).
 * Build: cc -O2 -Iinclude bench/kron.c build/libnabla.a -lopenblas -lz -lm -lpthread
 * Run:   ./kron 64 21; ./kron 256 11
 * Peer:  /usr/bin/python3 bench/kron_torch.py 64 21 (PyTorch's jvp of the same
 *        functions; it also computes F itself, as its jvp does). */
#define _POSIX_C_SOURCE 200809L
#include "nabla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "timing.h"


/* Runs J·v for J = dF/dX (F one of the cases) in one mode; fills out (n²)
 * and prints the line; returns 0 on success. */
static int measure(const char *src, int64_t n, int repeat, unsigned flags, double *out) {
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "A, B, X: matrix(n, n); v: vector(n*n)");
    nb_expr *X = nb_lookup(ctx, "X"), *F = nb_parse(ctx, src);
    nb_expr *J = F ? nb_derivative(ctx, F, 1, &X, NB_NUMERATOR) : NULL;
    nb_expr *f = J ? nb_matmul(ctx, J, nb_lookup(ctx, "v")) : NULL;
    nb_expr *ins[4] = {nb_lookup(ctx, "A"), nb_lookup(ctx, "B"), X, nb_lookup(ctx, "v")};
    nb_bind_dim(ctx, nb_dim_symbol(ctx, "n"), n);
    nb_program *p = f ? nb_compile(ctx, 1, &f, 4, ins, NB_F64, flags) : NULL;
    if (!p) {
        fprintf(stderr, "%s: %s\n", src, nb_error(ctx));
        nb_ctx_free(ctx);
        return 1;
    }
    size_t nn = (size_t)(n * n);
    double *in[4], *t = malloc((size_t)repeat * sizeof *t);
    uint64_t s = 42;
    for (int i = 0; i < 4; i++) {
        in[i] = malloc(nn * sizeof **in);
        for (size_t k = 0; k < nn; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            in[i][k] = (double)(s >> 11) / 9007199254740992.0 + (i == 2 && k % (size_t)(n + 1) == 0 ? (double)n : 0);
        }
    }
    void *outs[1] = {out};
    int rc = 0;
    for (int r = 0; r < repeat && rc == NB_OK; r++) {
        double t0 = now();
        rc = nb_program_run(p, (const void *const *)in, outs);
        t[r] = now() - t0;
    }
    nb_program_stats st;
    nb_program_get_stats(p, &st);
    if (rc == NB_OK) {
        qsort(t, (size_t)repeat, sizeof *t, cmp);
        printf("%-8s n=%-4lld %-10s median %.6f s  workspace %zu bytes\n", src, (long long)n,
               flags ? "dense" : "structured", t[repeat / 2], st.workspace_bytes);
    } else {
        fprintf(stderr, "%s: %s\n", src, nb_program_error(p));
    }
    for (int i = 0; i < 4; i++)
        free(in[i]);
    free(t);
    nb_program_free(p);
    nb_ctx_free(ctx);
    return rc != NB_OK;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: kron N REPEAT\n");
        return 2;
    }
    int64_t n = atoll(argv[1]);
    int repeat = atoi(argv[2]);
    if (n < 1 || n > 4096 || repeat < 1) return 2;
    static const char *const cases[] = {"A*X*B", "inv(X)"};
    size_t nn = (size_t)(n * n);
    double dense_bytes = (double)nn * (double)nn * 8;
    for (int c = 0; c < 2; c++) {
        double *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b);
        if (measure(cases[c], n, repeat, 0, a)) return 1;
        if (dense_bytes > 2147483648.0) {
            printf("%-8s n=%-4lld %-10s not run: the Jacobian alone is %.0f bytes\n", cases[c], (long long)n, "dense",
                   dense_bytes);
        } else {
            if (measure(cases[c], n, repeat, NB_COMPILE_DENSE, b)) return 1;
            double worst = 0, scale = 1;
            for (size_t k = 0; k < nn; k++) {
                worst = fmax(worst, fabs(a[k] - b[k]));
                scale = fmax(scale, fabs(b[k]));
            }
            printf("%-8s n=%-4lld largest relative difference %.3g\n", cases[c], (long long)n, worst / scale);
        }
        free(a);
        free(b);
    }
    return 0;
}
