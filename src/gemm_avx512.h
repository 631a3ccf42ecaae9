/* nabla's own matrix product for CPUs with AVX-512 (gemm_avx512.c), and the
 * product entry point every build has (kernels.c).
 *
 * The AVX-512 product is BLIS-style: op(B) is packed into KC x NR slivers,
 * alpha·op(A) into MR x KC panels, and a register-blocked micro-kernel keeps
 * an MR x NR tile of C in 64-byte vectors (broadcast one entry of A, load NR
 * entries of B, MR·NR/VL fused multiply-adds per step of k).  Edge tiles use
 * masked loads and stores.  It is compiled only where the kernels are built
 * for AVX-512 (__AVX512F__, from KERNEL_ARCH); elsewhere the products go to
 * OpenBLAS (BLAS=1) or the portable blocked product (BLAS=0). */
#ifndef NB_GEMM_AVX512_H
#define NB_GEMM_AVX512_H

#include <stddef.h>
#include <stdint.h>

#ifdef __AVX512F__
#define NB_HAVE_GEMM_AVX512 1
/* Micro-tile: NB_GEMM_MR rows of C by two vectors (32 floats, 16 doubles). */
#define NB_GEMM_MR 8
#define NB_GEMM_NR(real_size) ((int64_t)(128 / (real_size)))

/* Bytes of packing space (64-byte aligned) for any product of at most m x n
 * with inner dimension at most k. */
size_t nb_gemm_avx512_scratch(int64_t m, int64_t n, int64_t k, size_t real_size);
/* C (m x n, row stride ldc) = alpha·op(A)·op(B), or C += it when acc;
 * op(A) is m x k (A stored k x m when ta), op(B) k x n (B stored n x k when
 * tb); pack: nb_gemm_avx512_scratch bytes, 64-byte aligned. */
void nb_gemm_avx512_f64(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const double *A,
                        int64_t lda, const double *B, int64_t ldb, double *C, int64_t ldc, double *pack, int acc);
void nb_gemm_avx512_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, float *pack, int acc);
#endif

/* The product as compiled programs run it (kernels.c: the AVX-512 kernel,
 * else OpenBLAS, else the portable one), for tests and benchmarks: real_size
 * 8 (double) or 4 (float); pack holds nb_gemm_scratch(m, n, k, real_size)
 * bytes, 64-byte aligned (NULL when that is 0). */
size_t nb_gemm_scratch(int64_t m, int64_t n, int64_t k, size_t real_size);
void nb_gemm(size_t real_size, int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
             int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, void *pack, int acc);
/* 1 when the products run on nabla's AVX-512 kernel. */
int nb_gemm_is_avx512(void);

#endif
