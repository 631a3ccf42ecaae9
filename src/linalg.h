/* Dense linear algebra on row-major matrices, shared by the reference
 * evaluator (matfn.c) and the compiled kernels (kernels_impl.h): an LU
 * factorisation with partial pivoting (LAPACK's dgetrf from OpenBLAS when
 * nabla is built with it, nabla's own loop otherwise) and what follows from
 * it (determinant, log-determinant, solve, inverse), and the reductions
 * (norms, log-sum-exp, binary cross-entropy).  Nothing here allocates: the
 * caller passes a workspace of nb_linalg_work_size bytes. */
#ifndef NB_LINALG_H
#define NB_LINALG_H

#include <stddef.h>
#include <stdint.h>

/* Numbers of the reductions over n entries. */
double nb_norm1_value(int64_t n, const double *x);
double nb_norm2_value(int64_t n, const double *x);
double nb_logsumexp_value(int64_t n, const double *x);
/* Σ softplus(z) − y·z = −Σ y·log σ(z) + (1 − y)·log(1 − σ(z)) */
double nb_bce_value(int64_t n, const double *z, const double *y);

/* A matrix function fn of a (rows x cols) and b (SOLVE: rows x bcols; BCE:
 * like a; KRON: brows x bcols; otherwise unused) into y, entries float
 * (real_size 4) or double.  COMMUTATION reads nothing: K for rows x cols.
 * Returns 0; 1 when a is singular (INV, SOLVE: y is NaN) or det a <= 0
 * (LOGDET: y is NaN) — the compiled program's finiteness check reports it. */
enum {
    NB_LA_TRACE, NB_LA_DET, NB_LA_LOGDET, NB_LA_INV, NB_LA_SOLVE, NB_LA_NORM1, NB_LA_NORM2, NB_LA_LOGSUMEXP, NB_LA_BCE,
    NB_LA_VEC, NB_LA_KRON, NB_LA_COMMUTATION,
    NB_LA_TRACE_PRODUCT /* tr(A·B) = Σᵢₖ Aᵢₖ·Bₖᵢ of A (rows x cols) and B (cols x rows), without the product */
};
size_t nb_linalg_work_size(int fn, int64_t rows, int64_t cols, int64_t brows, int64_t bcols);
int nb_linalg_kernel(int fn, size_t real_size, int64_t rows, int64_t cols, int64_t brows, int64_t bcols, const void *a,
                     const void *b, void *y, void *work);
#endif
