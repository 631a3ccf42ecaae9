/* LU with partial pivoting and the determinant, log-determinant, solve and
 * inverse computed from it (linalg.h).  P·A = L·U: det A = (−1)^swaps ·
 * Πᵢ Uᵢᵢ, and A⁻¹·B by forward substitution with L then back with U. */
#include "linalg.h"
#include "scalar_f64.h"

#include <math.h>
#include <string.h>

#ifdef NB_HAVE_CBLAS
/* LAPACK (Fortran interface, column-major; OpenBLAS exports it). */
void dgetrf_(const int *m, const int *n, double *a, const int *lda, int *ipiv, int *info);
void sgetrf_(const int *m, const int *n, float *a, const int *lda, int *ipiv, int *info);
void sgetrs_(const char *trans, const int *n, const int *nrhs, const float *a, const int *lda, const int *ipiv,
             float *b, const int *ldb, int *info);
void dgetrs_(const char *trans, const int *n, const int *nrhs, const double *a, const int *lda, const int *ipiv,
             double *b, const int *ldb, int *info);
#endif

/* An n x n factorisation in place: lu holds L (unit lower, implicit) and U;
 * row k was swapped with row piv[k] − base. */
typedef struct {
    int64_t n;
    double *lu;
    int *piv;
    int base;   /* 1: LAPACK's 1-based pivots, and lu factors Aᵀ (row-major A read column-major) */
} lu_factors;

/* Row-major Doolittle elimination with the largest remaining pivot per column. */
static int lu_own(int64_t n, double *lu, int *piv) {
    int singular = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++)
            if (fabs(lu[i * n + k]) > fabs(lu[p * n + k])) p = i;
        piv[k] = (int)p;
        if (p != k)
            for (int64_t j = 0; j < n; j++) {
                double t = lu[k * n + j];
                lu[k * n + j] = lu[p * n + j];
                lu[p * n + j] = t;
            }
        double d = lu[k * n + k];
        if (d == 0) {
            singular = 1;
            continue;
        }
        for (int64_t i = k + 1; i < n; i++) {
            double l = lu[i * n + k] /= d;
            if (l == 0) continue;
            for (int64_t j = k + 1; j < n; j++) lu[i * n + j] -= l * lu[k * n + j];
        }
    }
    return singular;
}

/* 0, or 1 when U has a zero pivot (singular). */
static int lu_factor(lu_factors *f, int64_t n, double *lu, int *piv) {
    f->n = n;
    f->lu = lu;
    f->piv = piv;
    f->base = 0;
#ifdef NB_HAVE_CBLAS
    if (n > 0 && n <= 1 << 30) {
        int ni = (int)n, info = 0;
        f->base = 1;
        dgetrf_(&ni, &ni, lu, &ni, piv, &info);
        return info > 0;
    }
#endif
    return lu_own(n, lu, piv);
}

/* det A = sign · e^logabs; sign 0 when singular. */
static void lu_logabsdet(const lu_factors *f, double *logabs, int *sign) {
    int s = 1;
    double l = 0;
    for (int64_t k = 0; k < f->n; k++) {
        double d = f->lu[k * f->n + k];
        if (d == 0) {
            *sign = 0;
            *logabs = -INFINITY;
            return;
        }
        if (d < 0) s = -s;
        if (f->piv[k] - f->base != k) s = -s;
        l += log(fabs(d));
    }
    *sign = s;
    *logabs = l;
}

/* B (n x k, row-major) := A⁻¹·B; tmp: n·k doubles (the LAPACK path). */
static void lu_solve(const lu_factors *f, int64_t k, double *b, double *tmp) {
    int64_t n = f->n;
    const double *lu = f->lu;
#ifdef NB_HAVE_CBLAS
    if (f->base) {
        /* lu factors Aᵀ; A·X = B is (Aᵀ)ᵀ·X = B: trans 'T', B column-major. */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) tmp[j * n + i] = b[i * k + j];
        int ni = (int)n, ki = (int)k, info = 0;
        dgetrs_("T", &ni, &ki, lu, &ni, f->piv, tmp, &ni, &info);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) b[i * k + j] = tmp[j * n + i];
        return;
    }
#endif
    (void)tmp;
    for (int64_t i = 0; i < n; i++)
        if (f->piv[i] != i)
            for (int64_t j = 0; j < k; j++) {
                double t = b[i * k + j];
                b[i * k + j] = b[f->piv[i] * k + j];
                b[f->piv[i] * k + j] = t;
            }
    for (int64_t i = 1; i < n; i++)
        for (int64_t p = 0; p < i; p++) {
            double l = lu[i * n + p];
            if (l != 0)
                for (int64_t j = 0; j < k; j++) b[i * k + j] -= l * b[p * k + j];
        }
    for (int64_t i = n; i-- > 0;) {
        for (int64_t p = i + 1; p < n; p++) {
            double u = lu[i * n + p];
            if (u != 0)
                for (int64_t j = 0; j < k; j++) b[i * k + j] -= u * b[p * k + j];
        }
        double d = lu[i * n + i];
        for (int64_t j = 0; j < k; j++) b[i * k + j] /= d;
    }
}

double nb_norm1_value(int64_t n, const double *x) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += fabs(x[i]);
    return s;
}

/* scaled by the largest entry, so that squares neither overflow nor underflow */
double nb_norm2_value(int64_t n, const double *x) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) m = fabs(x[i]) > m || x[i] != x[i] ? fabs(x[i]) : m;
    if (m == 0 || isinf(m) || m != m) return m;
    for (int64_t i = 0; i < n; i++) s += (x[i] / m) * (x[i] / m);
    return m * sqrt(s);
}

double nb_logsumexp_value(int64_t n, const double *x) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) m = x[i] > m || x[i] != x[i] ? x[i] : m;
    if (isinf(m) || m != m) return m;
    for (int64_t i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

double nb_bce_value(int64_t n, const double *z, const double *y) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += sc_softplus(z[i]) - y[i] * z[i];
    return s;
}


/* Entry counts of a, b and y. */
static void counts(int fn, int64_t rows, int64_t cols, int64_t brows, int64_t bcols, int64_t *na, int64_t *nb,
                   int64_t *ny) {
    *na = fn == NB_LA_COMMUTATION ? 0 : rows * cols;
    *nb = fn == NB_LA_SOLVE ? rows * bcols : fn == NB_LA_BCE ? *na : fn == NB_LA_KRON || fn == NB_LA_TRACE_PRODUCT ? brows * bcols : 0;
    *ny = fn == NB_LA_INV || fn == NB_LA_VEC ? rows * cols
          : fn == NB_LA_SOLVE                 ? *nb
          : fn == NB_LA_KRON                  ? *na * *nb
          : fn == NB_LA_COMMUTATION           ? rows * cols * rows * cols
                                              : 1;
}

/* doubles: a (factored in place), b, y, the solve's column-major copy; ints: pivots */
size_t nb_linalg_work_size(int fn, int64_t rows, int64_t cols, int64_t brows, int64_t bcols) {
    int64_t na, nb, ny;
    counts(fn, rows, cols, brows, bcols, &na, &nb, &ny);
    return (size_t)(na + nb + 2 * ny + 1) * sizeof(double) + (size_t)(rows + 1) * sizeof(int);
}

static void load(size_t real_size, const void *p, int64_t n, double *d) {
    if (real_size == sizeof(double)) memcpy(d, p, (size_t)n * sizeof *d);
    else
        for (int64_t i = 0; i < n; i++) d[i] = ((const float *)p)[i];
}

static void store(size_t real_size, void *p, int64_t n, const double *d) {
    if (real_size == sizeof(double)) memcpy(p, d, (size_t)n * sizeof *d);
    else
        for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)d[i];
}

#ifdef NB_HAVE_CBLAS
/* det, log det, inverse and solve of float matrices with LAPACK's float LU
 * (the f32 programs: half the work of converting to double).  The layout is
 * the double path's: lu factors Aᵀ column-major, solves take trans 'T'. */
static int lu_kernel_f32(int fn, int64_t n, int64_t bcols, const float *a, const float *b, float *y, void *work) {
    int64_t k = fn == NB_LA_INV ? n : bcols;
    float *lu = work, *cm = lu + n * n;
    int *piv = (int *)(cm + n * k + 1), ni = (int)n, ki = (int)k, info = 0;
    memcpy(lu, a, (size_t)(n * n) * sizeof *lu);
    sgetrf_(&ni, &ni, lu, &ni, piv, &info);
    if (fn == NB_LA_DET || fn == NB_LA_LOGDET) {
        double l = 0, p = 1;
        int s = 1;
        for (int64_t i = 0; i < n; i++) {
            double d = lu[i * n + i] * (piv[i] - 1 != i ? -1.0 : 1.0);
            p *= d;
            s = d < 0 ? -s : d == 0 ? 0 : s;
            l += log(fabs(d));
        }
        y[0] = (float)(fn == NB_LA_DET ? p : s > 0 ? l : NAN);
        return fn == NB_LA_LOGDET && s <= 0;
    }
    if (info > 0) {
        for (int64_t i = 0; i < n * k; i++) y[i] = NAN;
        return 1;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) cm[j * n + i] = fn == NB_LA_INV ? (float)(i == j) : b[i * k + j];
    sgetrs_("T", &ni, &ki, lu, &ni, piv, cm, &ni, &info);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) y[i * k + j] = cm[j * n + i];
    return 0;
}
#endif

int nb_linalg_kernel(int fn, size_t real_size, int64_t rows, int64_t cols, int64_t brows, int64_t bcols, const void *a,
                     const void *b, void *y, void *work) {
    int64_t na, nb, ny;
    counts(fn, rows, cols, brows, bcols, &na, &nb, &ny);
#ifdef NB_HAVE_CBLAS
    if (real_size == sizeof(float) && rows > 0 && rows <= 1 << 15 &&
        (fn == NB_LA_DET || fn == NB_LA_LOGDET || fn == NB_LA_INV || fn == NB_LA_SOLVE))
        return lu_kernel_f32(fn, rows, bcols, a, b, y, work);
#endif
    double *A = work, *B = A + na, *Y = B + nb, *tmp = Y + ny;
    int *piv = (int *)(tmp + ny + 1);
    if (na) load(real_size, a, na, A);
    if (nb) load(real_size, b, nb, B);
    lu_factors f;
    double logabs;
    int sign, rc = 0;
    switch (fn) {
    case NB_LA_TRACE:
        Y[0] = 0;
        for (int64_t i = 0; i < rows; i++) Y[0] += A[i * cols + i];
        break;
    case NB_LA_TRACE_PRODUCT:
        Y[0] = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t k = 0; k < cols; k++) Y[0] += A[i * cols + k] * B[k * bcols + i];
        break;
    case NB_LA_DET:
    case NB_LA_LOGDET:
        lu_factor(&f, rows, A, piv);
        lu_logabsdet(&f, &logabs, &sign);
        if (fn == NB_LA_LOGDET) {
            rc = sign <= 0;
            Y[0] = sign > 0 ? logabs : NAN;
            break;
        }
        /* the product itself (not e^logabs): exact for small integer matrices */
        Y[0] = sign != 0;
        for (int64_t k = 0; k < rows && sign; k++) Y[0] *= A[k * rows + k] * (piv[k] - f.base != k ? -1 : 1);
        break;
    case NB_LA_INV:
    case NB_LA_SOLVE:
        if (fn == NB_LA_INV)
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < rows; j++) Y[i * rows + j] = i == j;
        else memcpy(Y, B, (size_t)nb * sizeof *Y);
        if ((rc = lu_factor(&f, rows, A, piv)) != 0) {
            for (int64_t i = 0; i < ny; i++) Y[i] = NAN;
            break;
        }
        lu_solve(&f, fn == NB_LA_INV ? rows : bcols, Y, tmp);
        break;
    case NB_LA_NORM1: Y[0] = nb_norm1_value(na, A); break;
    case NB_LA_NORM2: Y[0] = nb_norm2_value(na, A); break;
    case NB_LA_LOGSUMEXP: Y[0] = nb_logsumexp_value(na, A); break;
    case NB_LA_BCE: Y[0] = nb_bce_value(na, A, B); break;
    case NB_LA_VEC: /* columns stacked */
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) Y[j * rows + i] = A[i * cols + j];
        break;
    case NB_LA_KRON:
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                for (int64_t k = 0; k < brows; k++)
                    for (int64_t l = 0; l < bcols; l++)
                        Y[(i * brows + k) * (cols * bcols) + j * bcols + l] = A[i * cols + j] * B[k * bcols + l];
        break;
    default: /* COMMUTATION: vec(Xᵀ)[i·n + j] = vec(X)[j·m + i] */
        memset(Y, 0, (size_t)ny * sizeof *Y);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) Y[(i * cols + j) * rows * cols + j * rows + i] = 1;
        break;
    }
    store(real_size, y, ny, Y);
    return rc;
}
