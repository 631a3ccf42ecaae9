/* The MLP 784-256-256-10 training step (f32) compiled by nabla against
 * OpenBLAS sgemm's throughput, measured in one process, alternating sample by
 * sample so that a shared machine's noise hits all three alike:
 *   - nabla: loss and the six parameter gradients (bench/cases.py's MLP);
 *   - sgemm peak: one 1024³ product;
 *   - nabla's own product (nb_gemm: the AVX-512 kernel where built) on the
 *     same 1024³ product, one thread: the peak of nabla's kernel;
 *   - sgemm on the step's own eight products (what the step cannot beat with
 *     OpenBLAS underneath).
 * Prints the medians in GFLOP/s (the step's flops: 2·B·(784·256·2 +
 * 256·256·3 + 256·10·3)), nabla's share of each, and the OpenBLAS kernel.
 * Usage: mlp B [threads [rounds]]   (run by bench/bench.py, case b)
 * Build: cc -O2 -Iinclude -Isrc bench/mlp.c build/libnabla.a -lopenblas -lz -lm -lpthread */
#include "gemm_avx512.h"
#include "nabla.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *buf(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* C(m x n) = op(A)·op(B) */
static void gemm(int ta, int tb, int m, int n, int k, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                A, ta ? m : k, B, tb ? k : n, 0.0f, C, n);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, T = argc > 2 ? atoi(argv[2]) : 1, rounds = argc > 3 ? atoi(argv[3]) : 21;
    if (B < 1 || B > 1 << 14 || T < 1 || T > 64 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "usage: mlp B [threads [rounds]]\n");
        return 2;
    }
    nb_ctx *ctx = nb_ctx_new();
    nb_declare(ctx, "X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); "
                    "W2: matrix(256, 256); b2: vector(256); W3: matrix(256, 10); b3: vector(10)");
    nb_expr *L = nb_parse(ctx, "H = relu(X*W1 + b1'); G = relu(H*W2 + b2'); Z = G*W3 + b3'; softmax_xent(Z, Y)");
    const char *names[8] = {"X", "Y", "W1", "b1", "W2", "b2", "W3", "b3"};
    nb_expr *ins[8], *outs[7] = {L};
    for (int i = 0; i < 8; i++)
        ins[i] = nb_lookup(ctx, names[i]);
    for (int i = 0; i < 6; i++)
        outs[1 + i] = L ? nb_gradient(ctx, L, ins[2 + i]) : NULL;
    nb_program *p = nb_compile(ctx, 7, outs, 8, ins, NB_F32, 0);
    if (!p || nb_program_bind_dim(p, "B", B) || nb_program_set_threads(p, T)) {
        fprintf(stderr, "mlp: %s\n", p ? nb_program_error(p) : nb_error(ctx));
        return 1;
    }
    void *in[8], *out[7];
    for (int i = 0; i < 8; i++)
        in[i] = buf((size_t)nb_program_input_size(p, (size_t)i));
    for (int i = 0; i < 7; i++)
        out[i] = buf((size_t)nb_program_output_size(p, (size_t)i));
    /* the step's products, as OpenBLAS alone would run them */
    float *X = buf((size_t)B * 784), *W1 = buf(784 * 256), *W2 = buf(256 * 256), *W3 = buf(256 * 10),
          *H = buf((size_t)B * 256), *G = buf((size_t)B * 256), *Z = buf((size_t)B * 10), *dZ = buf((size_t)B * 10),
          *dG = buf((size_t)B * 256), *dH = buf((size_t)B * 256), *dW1 = buf(784 * 256), *dW2 = buf(256 * 256),
          *dW3 = buf(256 * 10);
    float *sq[3] = {buf(1 << 20), buf(1 << 20), buf(1 << 20)};
    const double flops = 2.0 * B * (784 * 256 * 2 + 256 * 256 * 3 + 256 * 10 * 3), sqflops = 2.0 * (1 << 30);
    double *tn = malloc((size_t)rounds * sizeof *tn), *ts = malloc((size_t)rounds * sizeof *ts),
           *tq = malloc((size_t)rounds * sizeof *tq), *to = malloc((size_t)rounds * sizeof *to);
    void *pack = NULL;
    const size_t pack_bytes = nb_gemm_scratch(1024, 1024, 1024, sizeof(float));
    if (pack_bytes && posix_memalign(&pack, 64, pack_bytes)) return 1;
    const int reps = B >= 256 ? 4 : 16;
    for (int r = -1; r < rounds; r++) { /* round -1 warms up */
        openblas_set_num_threads(1);     /* nabla's products run on one OpenBLAS thread each */
        double t0 = now();
        for (int k = 0; k < reps; k++)
            nb_program_run(p, (const void *const *)in, out);
        double tnab = (now() - t0) / reps;
        openblas_set_num_threads(T);
        t0 = now();
        for (int k = 0; k < reps; k++) {
            gemm(0, 0, B, 256, 784, X, W1, H); /* forward */
            gemm(0, 0, B, 256, 256, H, W2, G);
            gemm(0, 0, B, 10, 256, G, W3, Z);
            gemm(1, 0, 256, 10, B, G, dZ, dW3); /* backward */
            gemm(0, 1, B, 256, 10, dZ, W3, dG);
            gemm(1, 0, 256, 256, B, H, dG, dW2);
            gemm(0, 1, B, 256, 256, dG, W2, dH);
            gemm(1, 0, 784, 256, B, X, dH, dW1);
        }
        double tshape = (now() - t0) / reps;
        t0 = now();
        gemm(0, 0, 1024, 1024, 1024, sq[0], sq[1], sq[2]);
        double tsq = now() - t0;
        t0 = now();
        nb_gemm(sizeof(float), 0, 0, 1024, 1024, 1024, 1.0, sq[0], 1024, sq[1], 1024, sq[2], 1024, pack, 0);
        double town = now() - t0;
        if (r >= 0) {
            tn[r] = tnab;
            ts[r] = tshape;
            tq[r] = tsq;
            to[r] = town;
        }
    }
    double gn = flops / median(tn, rounds) / 1e9, gs = flops / median(ts, rounds) / 1e9,
           gq = sqflops / median(tq, rounds) / 1e9, go = sqflops / median(to, rounds) / 1e9;
    printf("corename %s\nnabla gemm kernel %s\nthreads %d\nnabla step seconds %.6g\nnabla GFLOP/s %.1f\n"
           "sgemm 1024^3 GFLOP/s %.1f\nnabla gemm 1024^3 GFLOP/s %.1f\nsgemm step shapes GFLOP/s %.1f\n"
           "nabla / peak %.3f\nnabla / own peak %.3f\nnabla / step shapes %.3f\n",
           openblas_get_corename(), nb_gemm_is_avx512() ? "avx512" : "fallback", T, median(tn, rounds), gn, gq, go,
           gs, gn / gq, gn / go, gn / gs);
    free(pack);
    nb_program_free(p);
    nb_ctx_free(ctx);
    return 0;
}
