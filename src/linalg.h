/* Dense linear algebra on row-major double matrices, shared by the reference
 * evaluator (matfn.c) and the compiled kernels (kernels_impl.h): an LU
 * factorisation with partial pivoting (LAPACK's dgetrf from OpenBLAS when
 * nabla is built with it, nabla's own loop otherwise), and what follows from
 * it: determinant, log-determinant, solve, inverse. */
#ifndef NB_LINALG_H
#define NB_LINALG_H

#include <stddef.h>
#include <stdint.h>

/* An n x n factorisation: lu holds L (unit lower, implicit) and U, piv the
 * row interchanges.  nb_lu_factor returns 0, 1 when U has a zero pivot
 * (singular), -1 when out of memory. */
typedef struct {
    int64_t n;
    double *lu;
    int *piv;
    int transposed; /* lu factors Aᵀ (LAPACK reads row-major A as column-major Aᵀ) */
} nb_lu;
int nb_lu_factor(nb_lu *f, int64_t n, const double *a);
void nb_lu_free(nb_lu *f);
/* det(A) = sign · exp(logabs); sign 0 when singular. */
void nb_lu_logabsdet(const nb_lu *f, double *logabs, int *sign);
/* B (n x k, row-major) := A⁻¹·B. */
int nb_lu_solve(const nb_lu *f, int64_t k, double *b);

/* The operators' numbers.  Each returns 0, or 1 when A is singular (det:
 * never), -1 when out of memory. */
int nb_linalg_det(int64_t n, const double *a, double *det);
/* log det A; 1 (with *det_out the determinant) when det A <= 0. */
int nb_linalg_logdet(int64_t n, const double *a, double *out, double *det_out);
/* X (n x k) = A⁻¹·B; B == NULL: X = A⁻¹ (k = n). */
int nb_linalg_solve(int64_t n, int64_t k, const double *a, const double *b, double *x);

/* Numbers of the reductions over n entries. */
double nb_norm1_value(int64_t n, const double *x);
double nb_norm2_value(int64_t n, const double *x);
double nb_logsumexp_value(int64_t n, const double *x);
/* Σ softplus(z) − y·z = −Σ y·log σ(z) + (1 − y)·log(1 − σ(z)) */
double nb_bce_value(int64_t n, const double *z, const double *y);

/* The compiled kernel of a matrix function (one instruction, NB_I_MATFN):
 * a is rows x cols, b (SOLVE: rows x bcols; BCE: like a) or NULL, y the
 * result; the entries are float (real_size 4) or double.  A singular or
 * non-positive-definite argument gives NaN or ±Inf entries, which the
 * program's finiteness check reports. */
enum { NB_LA_TRACE, NB_LA_DET, NB_LA_LOGDET, NB_LA_INV, NB_LA_SOLVE, NB_LA_NORM1, NB_LA_NORM2, NB_LA_LOGSUMEXP, NB_LA_BCE };
void nb_linalg_kernel(int fn, size_t real_size, int64_t rows, int64_t cols, int64_t bcols, const void *a,
                      const void *b, void *y);
#endif
