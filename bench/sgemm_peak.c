/* OpenBLAS sgemm throughput: a large square product (1024³) and the products
 * of one 784-256-256-10 MLP training step at batch B, on T threads.
 * Usage: sgemm_peak B [T]  ->  prints "corename", "square GFLOP/s" and
 * "mlp GFLOP/s". */
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
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* C(m x n) = op(A)·op(B) */
static void gemm(int ta, int tb, int m, int n, int k, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                A, ta ? m : k, B, tb ? k : n, 0.0f, C, n);
}

static double best_of(int reps, void (*fn)(void *), void *arg) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn(arg);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    int B;
    float *X, *W1, *W2, *W3, *H, *G, *Z, *dZ, *dG, *dH, *dW1, *dW2, *dW3;
} mlp;

static void square(void *arg) {
    float **m = arg;
    gemm(0, 0, 1024, 1024, 1024, m[0], m[1], m[2]);
}

static void mlp_step(void *arg) {
    mlp *s = arg;
    int B = s->B;
    for (int rep = 0; rep < 10; rep++) {
        gemm(0, 0, B, 256, 784, s->X, s->W1, s->H); /* forward */
        gemm(0, 0, B, 256, 256, s->H, s->W2, s->G);
        gemm(0, 0, B, 10, 256, s->G, s->W3, s->Z);
        gemm(1, 0, 256, 10, B, s->G, s->dZ, s->dW3); /* backward */
        gemm(0, 1, B, 256, 10, s->dZ, s->W3, s->dG);
        gemm(1, 0, 256, 256, B, s->H, s->dG, s->dW2);
        gemm(0, 1, B, 256, 256, s->dG, s->W2, s->dH);
        gemm(1, 0, 784, 256, B, s->X, s->dH, s->dW1);
    }
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, T = argc > 2 ? atoi(argv[2]) : 1;
    if (B < 1 || B > 1 << 16 || T < 1 || T > 64) {
        fprintf(stderr, "usage: sgemm_peak B [threads]\n");
        return 2;
    }
    openblas_set_num_threads(T);
    printf("corename %s\n", openblas_get_corename());
    float *sq[3] = {buf(1 << 20), buf(1 << 20), buf(1 << 20)};
    double t = best_of(5, square, sq);
    printf("square GFLOP/s %.1f\n", 2.0 * 1024 * 1024 * 1024 / t / 1e9);
    mlp s = {B,
             buf((size_t)B * 784),
             buf(784 * 256),
             buf(256 * 256),
             buf(256 * 10),
             buf((size_t)B * 256),
             buf((size_t)B * 256),
             buf((size_t)B * 10),
             buf((size_t)B * 10),
             buf((size_t)B * 256),
             buf((size_t)B * 256),
             buf(784 * 256),
             buf(256 * 256),
             buf(256 * 10)};
    t = best_of(20, mlp_step, &s) / 10;
    double flops = 2.0 * B * (784 * 256 * 2 + 256 * 256 * 3 + 256 * 10 * 3);
    printf("mlp GFLOP/s %.1f\n", flops / t / 1e9);
    printf("mlp seconds %.6g\n", t);
    return 0;
}
