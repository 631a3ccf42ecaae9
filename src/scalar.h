/* Scalar semantics of the element-wise functions whose definition is a
 * choice, written once: the reference evaluator (ops.c) and the kernels
 * (kernels_impl.h) both include this file, once per real type, with
 *   REAL the element type, T(name) the suffixed name, M(fn) the libm function.
 * No include guard: each inclusion instantiates another type. */

/* σ(x) = 1/(1 + e⁻ˣ), evaluated so that neither branch overflows. */
static inline REAL T(sc_sigmoid)(REAL x) {
    if (x >= 0) return (REAL)1 / ((REAL)1 + M(exp)(-x));
    const REAL e = M(exp)(x);
    return e / ((REAL)1 + e);
}

/* sign(x) ∈ {−1, 0, 1}; sign(NaN) = NaN. */
static inline REAL T(sc_sign)(REAL x) { return x != x ? x : (REAL)((x > 0) - (x < 0)); }

/* max and min propagate NaN from either side (PyTorch's torch.maximum /
 * torch.minimum), unlike C's fmax, which drops it. */
static inline REAL T(sc_max)(REAL a, REAL b) { return a > b ? a : (b != b ? b : (a != a ? a : b)); }
static inline REAL T(sc_min)(REAL a, REAL b) { return a < b ? a : (b != b ? b : (a != a ? a : b)); }

/* softplus(x) = log(1 + eˣ) = max(x, 0) + log(1 + e^−|x|): no overflow, and
 * logsigmoid(x) = log σ(x) = −softplus(−x). */
static inline REAL T(sc_softplus)(REAL x) { return (x > 0 ? x : (REAL)0) + M(log1p)(M(exp)(-M(fabs)(x))); }
static inline REAL T(sc_logsigmoid)(REAL x) { return -T(sc_softplus)(-x); }
