/* nabla's own matrix product (nb_gemm: the AVX-512 kernel where the library
 * is built for it) against OpenBLAS sgemm/dgemm, one thread each, on the
 * MLP 784-256-256-10 step's shapes at B=64 and on 1024³, alternating sample
 * by sample in one process; prints median GFLOP/s and the ratio per shape,
 * and the OpenBLAS kernel (openblas_get_corename).  The two results are
 * compared first (relative difference of the largest entry).
 * Usage: gemm [f32|f64 [rounds]]
 * Build: cc -O2 -Iinclude -Isrc bench/gemm.c build/libnabla.a -lopenblas -lz -lm -lpthread -o /tmp/gemm */
#include "gemm_avx512.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* C(m x n) = op(A)·op(B) through OpenBLAS */
static void blas(int f64, int ta, int tb, int m, int n, int k, const void *A, const void *B, void *C) {
    const enum CBLAS_TRANSPOSE a = ta ? CblasTrans : CblasNoTrans, b = tb ? CblasTrans : CblasNoTrans;
    if (f64)
        cblas_dgemm(CblasRowMajor, a, b, m, n, k, 1.0, A, ta ? m : k, B, tb ? k : n, 0.0, C, n);
    else
        cblas_sgemm(CblasRowMajor, a, b, m, n, k, 1.0f, A, ta ? m : k, B, tb ? k : n, 0.0f, C, n);
}

int main(int argc, char **argv) {
    const int f64 = argc > 1 && strcmp(argv[1], "f64") == 0, rounds = argc > 2 ? atoi(argv[2]) : 15;
    if (argc > 1 && !f64 && strcmp(argv[1], "f32") != 0) {
        fprintf(stderr, "usage: gemm [f32|f64 [rounds]]\n");
        return 2;
    }
    const size_t rs = f64 ? sizeof(double) : sizeof(float);
    /* m, n, k, ta, tb: the step's eight products at B=64, then 1024³ */
    static const int shapes[][5] = {{64, 256, 784, 0, 0}, {64, 256, 256, 0, 0}, {64, 10, 256, 0, 0},
                                    {256, 10, 64, 1, 0},  {64, 256, 10, 0, 1},  {256, 256, 64, 1, 0},
                                    {64, 256, 256, 0, 1}, {784, 256, 64, 1, 0}, {1024, 1024, 1024, 0, 0}};
    const size_t most = 1 << 20;
    char *A = malloc(most * rs), *B = malloc(most * rs), *C = malloc(most * rs), *D = malloc(most * rs);
    void *pack = NULL;
    const size_t pack_bytes = nb_gemm_scratch(1024, 1024, 1024, rs);
    if (!A || !B || !C || !D || (pack_bytes && posix_memalign(&pack, 64, pack_bytes))) return 1;
    for (size_t i = 0; i < most; i++) {
        const double a = (double)((i * 2654435761u) % 1000) / 1000.0 - 0.5, b = (double)(i % 997) / 997.0 - 0.5;
        if (f64) ((double *)A)[i] = a, ((double *)B)[i] = b;
        else ((float *)A)[i] = (float)a, ((float *)B)[i] = (float)b;
    }
    double *tn = malloc((size_t)rounds * sizeof *tn), *tb = malloc((size_t)rounds * sizeof *tb);
    if (!tn || !tb) return 1;
    printf("corename %s, nabla's product: %s, %s, one thread\n", openblas_get_corename(),
           nb_gemm_is_avx512() ? "AVX-512 kernel" : "fallback (OpenBLAS or portable)", f64 ? "f64" : "f32");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ta = shapes[s][3], tbt = shapes[s][4];
        const double flops = 2.0 * m * n * k;
        const int reps = (int)(2e7 / flops) + 1;
        nb_gemm(rs, ta, tbt, m, n, k, 1.0, A, ta ? m : k, B, tbt ? k : n, C, n, pack, 0);
        blas(f64, ta, tbt, m, n, k, A, B, D);
        double big = 0, diff = 0;
        for (int i = 0; i < m * n; i++) {
            const double x = f64 ? ((double *)C)[i] : ((float *)C)[i], y = f64 ? ((double *)D)[i] : ((float *)D)[i];
            big = fmax(big, fabs(y));
            diff = fmax(diff, fabs(x - y));
        }
        for (int r = -1; r < rounds; r++) {
            double t0 = now();
            for (int q = 0; q < reps; q++)
                nb_gemm(rs, ta, tbt, m, n, k, 1.0, A, ta ? m : k, B, tbt ? k : n, C, n, pack, 0);
            const double t_nabla = (now() - t0) / reps;
            t0 = now();
            for (int q = 0; q < reps; q++)
                blas(f64, ta, tbt, m, n, k, A, B, D);
            const double t_blas = (now() - t0) / reps;
            if (r >= 0) tn[r] = t_nabla, tb[r] = t_blas;
        }
        qsort(tn, (size_t)rounds, sizeof *tn, cmp);
        qsort(tb, (size_t)rounds, sizeof *tb, cmp);
        const double gn = flops / tn[rounds / 2] / 1e9, gb = flops / tb[rounds / 2] / 1e9;
        printf("%4d x %4d x %4d%s%s  nabla %6.1f GFLOP/s  OpenBLAS %6.1f GFLOP/s  ratio %.2f  (max |diff| / max |C| %.1e)\n",
               m, n, k, ta ? " Aᵀ" : "   ", tbt ? " Bᵀ" : "   ", gn, gb, gn / gb, diff / (big > 0 ? big : 1));
    }
    free(A), free(B), free(C), free(D), free(pack), free(tn), free(tb);
    return 0;
}
