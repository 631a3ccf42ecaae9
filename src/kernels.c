/* Numeric kernels of compiled programs: kernels_impl.h instantiated for
 * double and float.  Built with -O3 (see the Makefile) so that gcc vectorises
 * the element-wise loops. */
#define _GNU_SOURCE /* sincos (glibc) */
#include "gemm_avx512.h"
#include "kernels.h"
#include "linalg.h"

#include <math.h>
#include <string.h>
#ifdef NB_HAVE_CBLAS
#include <cblas.h>
#endif

/* Thread shares of a product are cut at multiples of the micro-kernel's tile. */
#ifdef NB_HAVE_GEMM_AVX512
#define NB_GEMM_ROW_UNIT NB_GEMM_MR
#define NB_GEMM_COL_UNIT(real_size) NB_GEMM_NR(real_size)
#else
#define NB_GEMM_ROW_UNIT 1
#define NB_GEMM_COL_UNIT(real_size) 1
#endif
/* Where share tid of nt begins in a dimension of len (tid = nt: len). */
static int64_t nb_gemm_cut(int64_t len, int tid, int nt, int64_t unit) {
    const int64_t at = (len * tid / nt + unit / 2) / unit * unit;
    return tid >= nt || at > len ? len : at;
}

/* Portable product blocking (elements). */
#define NB_GEMM_MC 64
#define NB_GEMM_KC 128
#define NB_GEMM_NC 256
/* rows of A per step of the matrix-vector product */
#define NB_GEMV_R 8

const char *const nb_mop_names[NB_M_COUNT] = {
#define NB_X(name, ar) #name,
    NB_MOP_LIST(NB_X)
#undef NB_X
};
const char *const nb_instr_names[NB_I_COUNT] = {
#define NB_X(name, printed) #printed,
    NB_INSTR_LIST(NB_X)
#undef NB_X
};
const int nb_mop_arity[NB_M_COUNT] = {
#define NB_X(name, ar) ar,
    NB_MOP_LIST(NB_X)
#undef NB_X
};
/* each fused pair is a ternary micro-operation of two binary ones */
enum {
#define NB_X(name, ar) NB_ARITY_##name = ar,
    NB_MOP_LIST(NB_X)
#undef NB_X
};
#define NB_X(name, inner, outer)                                                                             \
    _Static_assert(NB_ARITY_##name == 3 && NB_ARITY_##inner == 2 && NB_ARITY_##outer == 2,                   \
                   #name ": a fused pair of binary operations");
NB_FUSED_MOP_LIST(NB_X)
#undef NB_X

/* The matrix functions the kernels compute on the array itself (vector
 * exponentials and sums, kernels_impl.h), not in linalg.c on an f64 copy. */
static int nb_matfn_in_kernels(int fn) { return fn == NB_LA_LOGSUMEXP || fn == NB_LA_NORM2 || fn == NB_LA_NORM1; }

size_t nb_instr_scratch(const nb_instr *in, size_t real_size) {
    if (in->kind == NB_I_GROUP) return (size_t)in->g->nregs * (size_t)in->g->blen * real_size;
    if (in->kind == NB_I_MATFN)
        return nb_matfn_in_kernels(in->fn) ? 0 : nb_linalg_work_size(in->fn, in->m, in->n, in->ldb, in->k);
#if defined(NB_HAVE_GEMM_AVX512)
    if (in->kind == NB_I_GEMM) return nb_gemm_avx512_scratch(in->m, in->n, in->k, real_size);
#elif !defined(NB_HAVE_CBLAS)
    if (in->kind == NB_I_GEMM) return (size_t)(NB_GEMM_KC * NB_GEMM_NC + NB_GEMM_MC * NB_GEMM_KC) * real_size;
#endif
    return 0;
}

size_t nb_instr_accs(const nb_instr *in) {
    if (in->kind == NB_I_GROUP) return in->g->nred;
    if (in->kind == NB_I_XENT) return 1;
    return 0;
}

/* The kernels' vector helpers are static: no call crosses an ABI boundary, so
 * the note that passing 32-byte vectors without AVX would change the ABI does
 * not apply (it fires in KERNEL_ARCH= builds for the x86-64 baseline). */
#pragma GCC diagnostic ignored "-Wpsabi"

#define NB_CAT2(a, b) a##b
#define NB_CAT(a, b) NB_CAT2(a, b)

/* glibc's vector math (kernels_impl.h): the variant for the kernels'
 * instruction set, _ZGV<isa>N<lanes><v per argument>_<name>, isa b (SSE,
 * 16 bytes), d (AVX2, 32) or e (AVX-512, 64). */
#if defined(NB_HAVE_LIBMVEC) && !defined(__x86_64__)
#undef NB_HAVE_LIBMVEC
#endif
#if defined(__AVX512F__)
#define NB_VM_BYTES 64
#define NB_VM_ISA e
#define NB_VM_LANES_F64 8
#define NB_VM_LANES_F32 16
#elif defined(__AVX2__)
#define NB_VM_BYTES 32
#define NB_VM_ISA d
#define NB_VM_LANES_F64 4
#define NB_VM_LANES_F32 8
#else
#define NB_VM_BYTES 16
#define NB_VM_ISA b
#define NB_VM_LANES_F64 2
#define NB_VM_LANES_F32 4
#endif
#define NB_VM_NAME(lanes, args, fn) NB_CAT(NB_CAT(NB_CAT(_ZGV, NB_VM_ISA), NB_CAT(N, lanes)), NB_CAT(args, fn))

/* double */
#define REAL double
#define NB_REAL_BYTES 8
#define UREAL uint64_t
#define NB_EXPMASK UINT64_C(0x7ff0000000000000)
#define T(name) NB_CAT(name, _f64)
#define M(fn) fn
#define VM(fn) NB_VM_NAME(NB_VM_LANES_F64, v_, fn)
#define VM2(fn) NB_VM_NAME(NB_VM_LANES_F64, vv_, fn)
#define NB_CBLAS(x) NB_CAT(cblas_d, x)
#include "kernels_impl.h"

/* float */
#define REAL float
#define NB_REAL_BYTES 4
#define UREAL uint32_t
#define NB_EXPMASK UINT32_C(0x7f800000)
#define T(name) NB_CAT(name, _f32)
#define M(fn) NB_CAT(fn, f)
#define VM(fn) NB_VM_NAME(NB_VM_LANES_F32, v_, NB_CAT(fn, f))
#define VM2(fn) NB_VM_NAME(NB_VM_LANES_F32, vv_, NB_CAT(fn, f))
#define NB_CBLAS(x) NB_CAT(cblas_s, x)
#include "kernels_impl.h"

size_t nb_gemm_scratch(int64_t m, int64_t n, int64_t k, size_t real_size) {
    nb_instr in = {.kind = NB_I_GEMM, .m = m, .n = n, .k = k};
    return nb_instr_scratch(&in, real_size);
}

void nb_gemm(size_t real_size, int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
             int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, void *pack, int acc) {
    if (real_size == sizeof(double))
        gemm_f64(ta, tb, m, n, k, alpha, A, lda, B, ldb, C, ldc, pack, acc);
    else
        gemm_f32(ta, tb, m, n, k, (float)alpha, A, lda, B, ldb, C, ldc, pack, acc);
}

int nb_gemm_is_avx512(void) {
#ifdef NB_HAVE_GEMM_AVX512
    return 1;
#else
    return 0;
#endif
}
