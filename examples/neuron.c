/* The ReLU neuron of Parr & Howard through nabla's C API.
 *
 *   C(w, b) = sum((y - max(0, X*w + b)).^2) / N
 *
 * is built as an expression, differentiated symbolically (∂C/∂w, ∂C/∂b are
 * expressions too), compiled together with C into one program (so the
 * forward values are shared), and run on caller-owned buffers for a few
 * steps of gradient descent:  w ← w − η ∂C/∂w,  b ← b − η ∂C/∂b.
 *
 * Build and run:  make examples && build/examples/neuron */
#include "nabla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1000 /* samples */
#define n 10   /* features */

static double uniform(uint64_t *s) { /* in [-1, 1) */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * 0x1.0p-52 - 1.0;
}

int main(void) {
    nb_ctx *ctx = nb_ctx_new();
    if (!ctx) return 1;

    /* 1. the cost as an expression */
    if (nb_declare(ctx, "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar")) {
        fprintf(stderr, "declare: %s\n", nb_error(ctx));
        return 1;
    }
    nb_expr *C = nb_parse(ctx, "u = X*w + b; v = y - max(0, u); sum(v.^2)/N");
    nb_expr *X = nb_lookup(ctx, "X"), *w = nb_lookup(ctx, "w"), *y = nb_lookup(ctx, "y"),
            *b = nb_lookup(ctx, "b");

    /* 2. its gradient, as expressions (the same rules print them) */
    nb_expr *dw = nb_gradient(ctx, C, w); /* a column, shaped like w */
    nb_expr *db = nb_gradient(ctx, C, b);
    if (!C || !dw || !db) {
        fprintf(stderr, "%s\n", nb_error(ctx));
        return 1;
    }
    char *text = nb_to_string(ctx, dw, NB_FMT_UNICODE);
    printf("∂C/∂w = %s\n", text);
    free(text);
    text = nb_to_string(ctx, db, NB_FMT_UNICODE);
    printf("∂C/∂b = %s\n", text);
    free(text);

    /* 3. one program computing C, ∂C/∂w and ∂C/∂b from (X, y, w, b) */
    nb_expr *outputs[3] = {C, dw, db}, *inputs[4] = {X, y, w, b};
    nb_program *prog = nb_compile(ctx, 3, outputs, 4, inputs, NB_F64, 0);
    if (!prog) {
        fprintf(stderr, "compile: %s\n", nb_error(ctx));
        return 1;
    }
    nb_ctx_free(ctx); /* the program no longer needs the expressions */
    if (nb_program_bind_dim(prog, "N", N) || nb_program_bind_dim(prog, "n", n)) {
        fprintf(stderr, "%s\n", nb_program_error(prog));
        return 1;
    }

    /* 4. data from a known neuron: y = max(0, X·w* + b*) + noise */
    static double Xd[N * n], yd[N];
    double w_true[n], b_true = 0.3, wv[n], bv = 0.1, cost, grad_w[n], grad_b;
    uint64_t rng = 42;
    for (int j = 0; j < n; j++)
        w_true[j] = uniform(&rng);
    for (int i = 0; i < N; i++) {
        double u = b_true;
        for (int j = 0; j < n; j++)
            u += (Xd[i * n + j] = uniform(&rng)) * w_true[j];
        yd[i] = (u > 0 ? u : 0) + 0.01 * uniform(&rng);
    }
    for (int j = 0; j < n; j++)
        wv[j] = 0.1 * uniform(&rng);

    /* 5. gradient descent; each run writes C and the gradient into our buffers */
    const void *in[4] = {Xd, yd, wv, &bv};
    void *out[3] = {&cost, grad_w, &grad_b};
    const double eta = 0.5;
    for (int step = 0; step <= 300; step++) {
        int rc = nb_program_run(prog, in, out);
        if (rc != NB_OK) {
            fprintf(stderr, "run: %s\n", nb_program_error(prog));
            return 1;
        }
        if (step % 50 == 0) {
            double g2 = grad_b * grad_b;
            for (int j = 0; j < n; j++)
                g2 += grad_w[j] * grad_w[j];
            printf("step %3d  C = %.6f  |∇C| = %.2e\n", step, cost, sqrt(g2));
        }
        for (int j = 0; j < n; j++)
            wv[j] -= eta * grad_w[j];
        bv -= eta * grad_b;
    }
    double err = fabs(bv - b_true);
    for (int j = 0; j < n; j++)
        err = fmax(err, fabs(wv[j] - w_true[j]));
    printf("largest parameter error after training: %.3f\n", err);
    nb_program_free(prog);
    return err < 0.1 ? 0 : 1;
}
