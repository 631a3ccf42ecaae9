/* LU with partial pivoting and the determinant, log-determinant, solve and
 * inverse computed from it (linalg.h).  P·A = L·U: det A = (−1)^swaps ·
 * Πᵢ Uᵢᵢ, and A⁻¹·B by forward substitution with L then back with U. */
#include "linalg.h"
#include "scalar_f64.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef NB_HAVE_CBLAS
/* LAPACK (Fortran interface, column-major; OpenBLAS exports it). */
void dgetrf_(const int *m, const int *n, double *a, const int *lda, int *ipiv, int *info);
void dgetrs_(const char *trans, const int *n, const int *nrhs, const double *a, const int *lda, const int *ipiv,
             double *b, const int *ldb, int *info);
#endif

void nb_lu_free(nb_lu *f) {
    free(f->lu);
    free(f->piv);
    f->lu = NULL;
    f->piv = NULL;
}

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

int nb_lu_factor(nb_lu *f, int64_t n, const double *a) {
    f->n = n;
    f->transposed = 0;
    f->lu = malloc((size_t)(n * n + 1) * sizeof *f->lu);
    f->piv = malloc((size_t)(n + 1) * sizeof *f->piv);
    if (!f->lu || !f->piv) {
        nb_lu_free(f);
        return -1;
    }
    memcpy(f->lu, a, (size_t)(n * n) * sizeof *a);
#ifdef NB_HAVE_CBLAS
    if (n > 0 && n <= 1 << 30) {
        int ni = (int)n, info = 0;
        f->transposed = 1;
        dgetrf_(&ni, &ni, f->lu, &ni, f->piv, &info);
        for (int64_t k = 0; k < n; k++) f->piv[k]--; /* 0-based, as lu_own */
        return info > 0 ? 1 : 0;
    }
#endif
    return lu_own(n, f->lu, f->piv);
}

void nb_lu_logabsdet(const nb_lu *f, double *logabs, int *sign) {
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
        if (f->piv[k] != k) s = -s;
        l += log(fabs(d));
    }
    *sign = s;
    *logabs = l;
}

/* B := U⁻¹·L⁻¹·P·B for the row-major factorisation. */
static void solve_own(const nb_lu *f, int64_t k, double *b) {
    int64_t n = f->n;
    const double *lu = f->lu;
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

int nb_lu_solve(const nb_lu *f, int64_t k, double *b) {
#ifdef NB_HAVE_CBLAS
    if (f->transposed) {
        /* lu factors Aᵀ (column-major A); A·X = B is (Aᵀ)ᵀ·X = B: trans 'T',
         * with B and X column-major. */
        int64_t n = f->n;
        double *cm = malloc((size_t)(n * k + 1) * sizeof *cm);
        int *piv = calloc((size_t)(n + 1), sizeof *piv);
        if (!cm || !piv) {
            free(cm);
            free(piv);
            return -1;
        }
        for (int64_t i = 0; i < n; i++) {
            piv[i] = f->piv[i] + 1;
            for (int64_t j = 0; j < k; j++) cm[j * n + i] = b[i * k + j];
        }
        int ni = (int)n, ki = (int)k, info = 0;
        dgetrs_("T", &ni, &ki, f->lu, &ni, piv, cm, &ni, &info);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) b[i * k + j] = cm[j * n + i];
        free(cm);
        free(piv);
        return 0;
    }
#endif
    solve_own(f, k, b);
    return 0;
}

int nb_linalg_det(int64_t n, const double *a, double *det) {
    nb_lu f;
    int rc = nb_lu_factor(&f, n, a);
    if (rc < 0) return -1;
    double l;
    int s;
    nb_lu_logabsdet(&f, &l, &s);
    /* the product itself (not exp of the log): exact for integer matrices */
    double p = s == 0 ? 0 : 1;
    for (int64_t k = 0; k < n && s; k++) p *= f.lu[k * n + k] * (f.piv[k] != k ? -1 : 1);
    *det = p;
    nb_lu_free(&f);
    return 0;
}

int nb_linalg_logdet(int64_t n, const double *a, double *out, double *det_out) {
    nb_lu f;
    if (nb_lu_factor(&f, n, a) < 0) return -1;
    double l;
    int s;
    nb_lu_logabsdet(&f, &l, &s);
    nb_lu_free(&f);
    *det_out = s == 0 ? 0 : s * exp(l);
    *out = s > 0 ? l : NAN;
    return s > 0 ? 0 : 1;
}

int nb_linalg_solve(int64_t n, int64_t k, const double *a, const double *b, double *x) {
    nb_lu f;
    int rc = nb_lu_factor(&f, n, a);
    if (rc) return rc;
    if (b) memcpy(x, b, (size_t)(n * k) * sizeof *x);
    else
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) x[i * n + j] = i == j;
    rc = nb_lu_solve(&f, b ? k : n, x);
    nb_lu_free(&f);
    return rc;
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


/* Entries as doubles: the array itself (double) or a converted copy. */
static double *as_double(size_t real_size, const void *p, int64_t n, double **owned) {
    *owned = NULL;
    if (real_size == sizeof(double)) return (double *)p;
    double *d = malloc((size_t)(n + 1) * sizeof *d);
    if (d)
        for (int64_t i = 0; i < n; i++) d[i] = ((const float *)p)[i];
    return *owned = d;
}

static void fill_nan(size_t real_size, void *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (real_size == sizeof(double)) ((double *)y)[i] = NAN;
        else ((float *)y)[i] = NAN;
    }
}

void nb_linalg_kernel(int fn, size_t real_size, int64_t rows, int64_t cols, int64_t bcols, const void *a,
                      const void *b, void *y) {
    int64_t na = rows * cols, nb = fn == NB_LA_SOLVE ? rows * bcols : fn == NB_LA_BCE ? na : 0;
    int64_t ny = fn == NB_LA_INV ? na : fn == NB_LA_SOLVE ? nb : 1;
    double *own_a, *own_b = NULL, *own_y = NULL;
    double *A = as_double(real_size, a, na, &own_a), *B = nb ? as_double(real_size, b, nb, &own_b) : NULL;
    double *Y = real_size == sizeof(double) ? (double *)y : (own_y = malloc((size_t)(ny + 1) * sizeof *Y));
    if (!A || (nb && !B) || !Y) {
        fill_nan(real_size, y, ny);
        goto done;
    }
    double det;
    int rc = 0;
    switch (fn) {
    case NB_LA_TRACE:
        Y[0] = 0;
        for (int64_t i = 0; i < rows; i++) Y[0] += A[i * cols + i];
        break;
    case NB_LA_DET: rc = nb_linalg_det(rows, A, Y); break;
    case NB_LA_LOGDET: rc = nb_linalg_logdet(rows, A, Y, &det) < 0; break;
    case NB_LA_INV: rc = nb_linalg_solve(rows, rows, A, NULL, Y); break;
    case NB_LA_SOLVE: rc = nb_linalg_solve(rows, bcols, A, B, Y); break;
    case NB_LA_NORM1: Y[0] = nb_norm1_value(na, A); break;
    case NB_LA_NORM2: Y[0] = nb_norm2_value(na, A); break;
    case NB_LA_LOGSUMEXP: Y[0] = nb_logsumexp_value(na, A); break;
    default: Y[0] = nb_bce_value(na, A, B); break;
    }
    if (rc) {
        fill_nan(real_size, y, ny);
        goto done;
    }
    if (own_y)
        for (int64_t i = 0; i < ny; i++) ((float *)y)[i] = (float)Y[i];
done:
    free(own_a);
    free(own_b);
    free(own_y);
}
