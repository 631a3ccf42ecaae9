/* nabla's own matrix product for AVX-512 (gemm_avx512.h): gemm_avx512_impl.h
 * instantiated for double and float.  Built with the kernels' flags (the
 * Makefile's KERNEL_FLAGS); empty where they do not enable AVX-512. */
#include "gemm_avx512.h"

#ifdef NB_HAVE_GEMM_AVX512
#include <immintrin.h>

/* Cache blocking, for 48 KiB L1d and 1 MiB L2 per core: a KC x NR sliver of
 * packed B (32 KiB) stays in L1 while the MR x KC panels of a packed MC x KC
 * block of A (96 KiB f32) stream past it; the packed KC x NC block of B
 * (512 KiB) stays in L2.  Measured on 1024³ and the MLP step's shapes (Zen 5):
 * larger MC or NC lose 10-20 % at 1024³; the step's shapes do not care. */
#define NB_GEMM512_KC 256
#define NB_GEMM512_MC 96
#define NB_GEMM512_NC_BYTES 2048

/* The block length for total elements: at most max (a multiple of unit),
 * blocks of equal size rounded up to unit, so that no block is a sliver. */
static int64_t nb_gemm_chunk(int64_t total, int64_t max, int64_t unit) {
    const int64_t parts = (total + max - 1) / max, len = (total + parts - 1) / parts;
    return (len + unit - 1) / unit * unit;
}

/* Every block length of a product no larger than m x n x k is at most
 * min(total rounded up to unit, max) (nb_gemm_chunk). */
static size_t nb_gemm_bound(int64_t total, int64_t max, int64_t unit) {
    const int64_t up = (total + unit - 1) / unit * unit;
    return (size_t)(up < max ? up : max);
}

size_t nb_gemm_avx512_scratch(int64_t m, int64_t n, int64_t k, size_t real_size) {
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    const int64_t nr = NB_GEMM_NR(real_size);
    const size_t kc = nb_gemm_bound(k, NB_GEMM512_KC, 1), mc = nb_gemm_bound(m, NB_GEMM512_MC, NB_GEMM_MR),
                 nc = nb_gemm_bound(n, NB_GEMM512_NC_BYTES / (int64_t)real_size, nr);
    /* packed B (kc·nc entries, a multiple of 128 bytes), then packed A */
    return (kc * nc + mc * kc) * real_size;
}

#define REAL double
#define VEC __m512d
#define MASK __mmask8
#define VL 8
#define IDX_T int64_t
#define G(name) name##_f64
#define V_LOADU _mm512_loadu_pd
#define V_MASKZ_LOADU _mm512_maskz_loadu_pd
#define V_STOREU _mm512_storeu_pd
#define V_MASK_STOREU _mm512_mask_storeu_pd
#define V_FMADD _mm512_fmadd_pd
#define V_SET1 _mm512_set1_pd
#define V_ZERO _mm512_setzero_pd
#define V_MUL _mm512_mul_pd
#define V_ADD _mm512_add_pd
#define V_PERMX2 _mm512_permutex2var_pd
#include "gemm_avx512_impl.h"

#define REAL float
#define VEC __m512
#define MASK __mmask16
#define VL 16
#define IDX_T int32_t
#define G(name) name##_f32
#define V_LOADU _mm512_loadu_ps
#define V_MASKZ_LOADU _mm512_maskz_loadu_ps
#define V_STOREU _mm512_storeu_ps
#define V_MASK_STOREU _mm512_mask_storeu_ps
#define V_FMADD _mm512_fmadd_ps
#define V_SET1 _mm512_set1_ps
#define V_ZERO _mm512_setzero_ps
#define V_MUL _mm512_mul_ps
#define V_ADD _mm512_add_ps
#define V_PERMX2 _mm512_permutex2var_ps
#include "gemm_avx512_impl.h"
#else
typedef int nb_gemm_avx512_unused; /* ISO C: a translation unit declares something */
#endif
