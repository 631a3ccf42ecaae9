/* Kronecker products, vec and the commutation matrix, and the derivative of
 * a matrix-valued function in the vec convention of Magnus & Neudecker
 * (src/kron.c).  ops.c includes this header for the RULES_ lines. */
#ifndef NB_KRON_H
#define NB_KRON_H
#include "matfn.h"
#include "nb_internal.h"

/* K (mn x mn) with vec(Xᵀ) = K·vec(X) for an m x n X. */
nb_node *nb_commutation_matrix(nb_ctx *ctx, nb_dim m, nb_dim n);
/* ∂vec(F)/∂vec(X)ᵀ (numerator layout), vec stacking columns: the derivative
 * of any F (scalar, vector or matrix) w.r.t. one variable X, from F's
 * tangent (forward mode), written with ⊗, I and K.  NULL with the error set
 * when a term has no such form. */
nb_node *nb_vec_jacobian(nb_ctx *ctx, nb_node *F, nb_node *X);

/* The matrix product's rewrites of vec-convention pieces (the mixed product
 * (A ⊗ B)·(C ⊗ D) = (A·C) ⊗ (B·D), unvec, products with s·1), or NULL. */
nb_node *nb_kron_matmul_rewrite(nb_ctx *ctx, nb_node *l, nb_node *r);
int nb_vjp_kron(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_vec(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);

#define RULES_KRON NULL, nb_vjp_kron, NULL, nb_eval_matfn, NULL, NULL
#define RULES_VEC NULL, nb_vjp_vec, NULL, nb_eval_matfn, NULL, NULL
#define RULES_COMMUTATION NULL, NULL, NULL, nb_eval_matfn, NULL, NULL
#endif
