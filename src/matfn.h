/* Matrix functions and reductions (src/matfn.c): trace, determinant,
 * log-determinant, inverse, solve, the 1- and 2-norms, log-sum-exp and
 * binary cross-entropy.  ops.c includes this header for their RULES_ lines
 * (docs/operators.md); the numbers come from linalg.c. */
#ifndef NB_MATFN_H
#define NB_MATFN_H
#include "nb_internal.h"

int nb_vjp_trace(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_det(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_logdet(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_inv(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_solve(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
int nb_vjp_reduction(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
nb_node *nb_tangent_det(nb_ctx *ctx, nb_node *y, nb_node *const *dx);
nb_node *nb_tangent_inv(nb_ctx *ctx, nb_node *y, nb_node *const *dx);
nb_node *nb_tangent_solve(nb_ctx *ctx, nb_node *y, nb_node *const *dx);
nb_node *nb_tangent_reduction(nb_ctx *ctx, nb_node *y, nb_node *const *dx);
/* The reference value (through linalg.c's kernel; domain errors named). */
int nb_eval_matfn(nb_ctx *ctx, const nb_node *y, const nb_matrix *a, nb_matrix *out);
/* The operator's linalg.h function (NB_LA_*). */
int nb_matfn_code(int op);

/* Rewrites of log(…) and sum(…) to the stable forms of losses (NULL: none). */
nb_node *nb_matfn_log_rewrite(nb_ctx *ctx, nb_node *a);
nb_node *nb_matfn_sum_rewrite(nb_ctx *ctx, nb_node *a);
/* A product with an inverse whose argument has a square factor in common:
 * (M·R)⁻¹·M = R⁻¹ and M·(R·M)⁻¹ = R⁻¹, also transposed (NULL: none). */
nb_node *nb_matfn_matmul_rewrite(nb_ctx *ctx, nb_node *a, nb_node *b);
/* Is e an exact integer constant (the k of a matrix power X^k)? */
bool nb_integer_value(const nb_node *e, int64_t *k);

#define RULES_TRACE NULL, nb_vjp_trace, NULL, nb_eval_matfn, NULL, NULL
#define RULES_DET NULL, nb_vjp_det, nb_tangent_det, nb_eval_matfn, NULL, NULL
#define RULES_LOGDET NULL, nb_vjp_logdet, nb_tangent_det, nb_eval_matfn, NULL, NULL
#define RULES_INV NULL, nb_vjp_inv, nb_tangent_inv, nb_eval_matfn, NULL, NULL
#define RULES_SOLVE NULL, nb_vjp_solve, nb_tangent_solve, nb_eval_matfn, NULL, NULL
#define RULES_NORM1 NULL, nb_vjp_reduction, nb_tangent_reduction, nb_eval_matfn, NULL, NULL
#define RULES_NORM2 NULL, nb_vjp_reduction, nb_tangent_reduction, nb_eval_matfn, NULL, NULL
#define RULES_LOGSUMEXP NULL, nb_vjp_reduction, nb_tangent_reduction, nb_eval_matfn, NULL, NULL
#define RULES_BCE NULL, nb_vjp_reduction, nb_tangent_reduction, nb_eval_matfn, NULL, NULL
#endif
