/* The one kernel source.  Included by kernels.c once per real type with
 *   REAL      the element type (double or float)
 *   UREAL     an unsigned integer of the same size (for bit tests)
 *   NB_EXPMASK the exponent mask of REAL in UREAL
 *   T(name)   the suffixed name (name_f64 / name_f32)
 *   M(fn)     the libm function for REAL (exp / expf)
 *   NB_CBLAS(x) the CBLAS routine for REAL (cblas_dx / cblas_sx)
 * No other file defines a kernel. */

/* ---- scalar definitions of every element-wise operation ---------------- */
/* (the expressions: NB_UNARY and NB_BINARY in kernels.h) */
#include "scalar.h" /* sigmoid, sign, max, min */

#define NB_DEF_UNARY(name, expr)                                                                             \
    static inline REAL T(f_##name)(REAL x) {                                                                 \
        return (expr);                                                                                       \
    }                                                                                                        \
    static void T(u_##name)(int64_t n, REAL *restrict y, const REAL *restrict p) {                           \
        for (int64_t i = 0; i < n; i++)                                                                      \
            y[i] = T(f_##name)(p[i]);                                                                        \
    }
NB_UNARY(NB_DEF_UNARY)
#undef NB_DEF_UNARY

#define NB_DEF_BINARY(name, expr)                                                                            \
    static inline REAL T(g_##name)(REAL a, REAL b) {                                                         \
        return (expr);                                                                                       \
    }                                                                                                        \
    static void T(b_##name##_vv)(int64_t n, REAL *restrict y, const REAL *restrict pa,                       \
                                 const REAL *restrict pb) {                                                  \
        for (int64_t i = 0; i < n; i++)                                                                      \
            y[i] = T(g_##name)(pa[i], pb[i]);                                                                \
    }                                                                                                        \
    static void T(b_##name##_sv)(int64_t n, REAL *restrict y, REAL a, const REAL *restrict pb) {             \
        for (int64_t i = 0; i < n; i++)                                                                      \
            y[i] = T(g_##name)(a, pb[i]);                                                                    \
    }                                                                                                        \
    static void T(b_##name##_vs)(int64_t n, REAL *restrict y, const REAL *restrict pa, REAL b) {             \
        for (int64_t i = 0; i < n; i++)                                                                      \
            y[i] = T(g_##name)(pa[i], b);                                                                    \
    }
NB_BINARY(NB_DEF_BINARY)
#undef NB_DEF_BINARY

/* ---- element-wise functions a vector at a time ------------------------ */
/* Where the C library has vector variants of its functions (glibc's libmvec,
 * x86-64: _ZGV<isa>N<lanes>v_exp and the like; NB_HAVE_LIBMVEC, set by the
 * Makefile's check, the width NB_VM_BYTES by kernels.c from the kernels'
 * instruction set), the transcendental micro-operations run a vector of REAL
 * per call instead of one libm call per element (glibc documents these at
 * most 4 ulp from the exact value, like its scalar functions' few ulp).
 * sigmoid, softplus and log-sigmoid are written as in scalar.h, from the
 * vector exp and log1p.  The last, partial vector of an array is padded and
 * goes through the same function, so that an element's value does not depend
 * on where a block or a thread's share begins.  T(vm_unary) returns 0 for a
 * micro-operation without a vector form (the scalar loops run it). */
#if defined(NB_HAVE_LIBMVEC)
typedef REAL T(vm) __attribute__((vector_size(NB_VM_BYTES)));
typedef UREAL T(vmu) __attribute__((vector_size(NB_VM_BYTES)));
#define NB_VM_N ((int64_t)(NB_VM_BYTES / NB_REAL_BYTES))
#define NB_VM_DECLARE(fn) T(vm) VM(fn)(T(vm));
NB_VM_DECLARE(exp) NB_VM_DECLARE(log) NB_VM_DECLARE(log1p) NB_VM_DECLARE(sin) NB_VM_DECLARE(cos)
    NB_VM_DECLARE(tan) NB_VM_DECLARE(tanh)
#undef NB_VM_DECLARE
T(vm) VM2(pow)(T(vm), T(vm));

/* lanes of a where mask (a comparison's all-ones lanes), else of b */
static inline T(vm) T(vm_select)(T(vmu) mask, T(vm) a, T(vm) b) {
    return (T(vm))((mask & (T(vmu))a) | (~mask & (T(vmu))b));
}
/* −|x|: the sign bit set */
static inline T(vm) T(vm_negabs)(T(vm) x) {
    return (T(vm))((T(vmu))x | ((T(vmu)){0} + ((UREAL)1 << (8 * NB_REAL_BYTES - 1))));
}
/* σ(x): e = e^−|x|, 1/(1 + e) for x ≥ 0, e/(1 + e) otherwise (NaN included) */
static inline T(vm) T(vm_sigmoid)(T(vm) x) {
    const T(vm) e = VM(exp)(T(vm_negabs)(x)), d = (REAL)1 + e;
    return T(vm_select)((T(vmu))(x >= 0), (REAL)1 / d, e / d);
}
/* softplus(x) = max(x, 0) + log(1 + e^−|x|) (max as x > 0 ? x : 0) */
static inline T(vm) T(vm_softplus)(T(vm) x) {
    const T(vm) zero = {0};
    return T(vm_select)((T(vmu))(x > zero), x, zero) + VM(log1p)(VM(exp)(T(vm_negabs)(x)));
}
static inline T(vm) T(vm_logsigmoid)(T(vm) x) { return -T(vm_softplus)(-x); }

/* y[i] = f(x[i]) for i < n, a vector at a time, the tail padded */
#define NB_VM_ARRAY(name, f)                                                                                 \
    static void T(va_##name)(int64_t n, REAL *restrict y, const REAL *restrict x) {                          \
        int64_t i = 0;                                                                                       \
        for (; i + NB_VM_N <= n; i += NB_VM_N) {                                                             \
            T(vm) v;                                                                                         \
            memcpy(&v, x + i, sizeof v);                                                                     \
            v = f(v);                                                                                        \
            memcpy(y + i, &v, sizeof v);                                                                     \
        }                                                                                                    \
        if (i < n) {                                                                                         \
            T(vm) v = {0};                                                                                   \
            memcpy(&v, x + i, (size_t)(n - i) * sizeof *x);                                                  \
            v = f(v);                                                                                        \
            memcpy(y + i, &v, (size_t)(n - i) * sizeof *y);                                                  \
        }                                                                                                    \
    }
NB_VM_ARRAY(exp, VM(exp))
NB_VM_ARRAY(log, VM(log))
NB_VM_ARRAY(sin, VM(sin))
NB_VM_ARRAY(cos, VM(cos))
NB_VM_ARRAY(tan, VM(tan))
NB_VM_ARRAY(tanh, VM(tanh))
NB_VM_ARRAY(sigmoid, T(vm_sigmoid))
NB_VM_ARRAY(softplus, T(vm_softplus))
NB_VM_ARRAY(logsigmoid, T(vm_logsigmoid))
#undef NB_VM_ARRAY

static int T(vm_unary)(int op, int64_t n, REAL *y, const REAL *x) {
    switch (op) {
    case NB_M_EXP: T(va_exp)(n, y, x); return 1;
    case NB_M_LOG: T(va_log)(n, y, x); return 1;
    case NB_M_SIN: T(va_sin)(n, y, x); return 1;
    case NB_M_COS: T(va_cos)(n, y, x); return 1;
    case NB_M_TAN: T(va_tan)(n, y, x); return 1;
    case NB_M_TANH: T(va_tanh)(n, y, x); return 1;
    case NB_M_SIGMOID: T(va_sigmoid)(n, y, x); return 1;
    case NB_M_SOFTPLUS: T(va_softplus)(n, y, x); return 1;
    case NB_M_LOGSIGMOID: T(va_logsigmoid)(n, y, x); return 1;
    default: return 0;
    }
}

/* y[i] = a[i]^b[i] (NB_M_POW, else returns 0), an operand flagged sa/sb
 * being one value for all */
static int T(vm_binary)(int op, int64_t n, REAL *y, const REAL *a, int sa, const REAL *b, int sb) {
    if (op != NB_M_POW || (sa && sb)) return 0;
    for (int64_t i = 0; i < n; i += NB_VM_N) {
        const int64_t len = n - i < NB_VM_N ? n - i : NB_VM_N;
        T(vm) va = {0}, vb = {0};
        if (sa)
            va += a[0];
        else
            memcpy(&va, a + i, (size_t)len * sizeof *a);
        if (sb)
            vb += b[0];
        else
            memcpy(&vb, b + i, (size_t)len * sizeof *b);
        const T(vm) v = VM2(pow)(va, vb);
        memcpy(y + i, &v, (size_t)len * sizeof *y);
    }
    return 1;
}

/* s[i] = sin x[i], c[i] = cos x[i] */
static int T(vm_sincos)(int64_t n, REAL *s, REAL *c, const REAL *x) {
    T(va_sin)(n, s, x);
    T(va_cos)(n, c, x);
    return 1;
}
#else
static int T(vm_unary)(int op, int64_t n, REAL *y, const REAL *x) {
    (void)op, (void)n, (void)y, (void)x;
    return 0;
}
static int T(vm_binary)(int op, int64_t n, REAL *y, const REAL *a, int sa, const REAL *b, int sb) {
    (void)op, (void)n, (void)y, (void)a, (void)sa, (void)b, (void)sb;
    return 0;
}
static int T(vm_sincos)(int64_t n, REAL *s, REAL *c, const REAL *x) {
    (void)n, (void)s, (void)c, (void)x;
    return 0;
}
#endif

/* y[i] = e^x[i] (the row-wise functions' exponentials), as the EXP
 * micro-operation runs them */
static void T(exp_array)(int64_t n, REAL *y, const REAL *x) {
    if (!T(vm_unary)(NB_M_EXP, n, y, x)) T(u_EXP)(n, y, x);
}

static void T(fill)(int64_t n, REAL *restrict y, REAL v) {
    for (int64_t i = 0; i < n; i++)
        y[i] = v;
}

/* y = op(a, b) over n elements, an operand flagged sa/sb being one value
 * broadcast over them. */
#define NB_DEF_BINARY_BLOCK(name, expr)                                                                      \
    static void T(blk_##name)(int64_t n, REAL *y, const REAL *a, int sa, const REAL *b, int sb) {            \
        if (!sa && !sb)                                                                                      \
            T(b_##name##_vv)(n, y, a, b);                                                                    \
        else if (sa && !sb)                                                                                  \
            T(b_##name##_sv)(n, y, a[0], b);                                                                 \
        else if (!sa)                                                                                        \
            T(b_##name##_vs)(n, y, a, b[0]);                                                                 \
        else                                                                                                 \
            T(fill)(n, y, T(g_##name)(a[0], b[0]));                                                          \
    }
NB_BINARY(NB_DEF_BINARY_BLOCK)
#undef NB_DEF_BINARY_BLOCK

/* x as a value of type REAL: the kernels are built with -ffp-contract=fast,
 * and a·b + c contracted into one fma would be rounded once, unlike the two
 * operations a fused pair stands for (the register constraint makes the
 * compiler materialise x; elsewhere a volatile round trip does). */
static inline REAL T(rounded)(REAL x) {
#if defined(__x86_64__) && defined(__SSE2_MATH__)
    __asm__("" : "+x"(x));
#else
    volatile REAL v = x;
    x = v;
#endif
    return x;
}

/* Fused pairs (NB_FUSED_MOP_LIST): the scalar form, and for blocks the
 * outer operation applied in place after y = inner(a, b) -- two passes, each
 * vectorised and rounded like the operations they replace. */
#define NB_DEF_FUSED(name, inner, outer)                                                                     \
    static inline REAL T(h_##name)(REAL a, REAL b, REAL c) {                                                 \
        return T(g_##outer)(T(rounded)(T(g_##inner)(a, b)), c);                                              \
    }                                                                                                        \
    static void T(then_##name)(int64_t n, REAL *restrict y, const REAL *restrict pc, int sc) {               \
        if (sc) {                                                                                            \
            const REAL c = pc[0];                                                                            \
            for (int64_t i = 0; i < n; i++)                                                                  \
                y[i] = T(g_##outer)(y[i], c);                                                                \
        } else {                                                                                             \
            for (int64_t i = 0; i < n; i++)                                                                  \
                y[i] = T(g_##outer)(y[i], pc[i]);                                                            \
        }                                                                                                    \
    }
NB_FUSED_MOP_LIST(NB_DEF_FUSED)
#undef NB_DEF_FUSED

/* sin and cos of one argument, from one range reduction where the C library
 * has sincos (glibc: the same values as sin and cos). */
static inline void T(sincos)(REAL x, REAL *s, REAL *c) {
#ifdef __GLIBC__
    M(sincos)(x, s, c);
#else
    *s = M(sin)(x);
    *c = M(cos)(x);
#endif
}

/* Σ TERM(a[i]) accumulated in double with 8 independent partial sums added
 * pairwise (vectorises without reassociation flags), one summation order for
 * every reduction: T(sum) Σ a[i], T(sum_abs) Σ |a[i]|, T(sum_scaled_squares)
 * Σ (a[i]·scale)² (the extra parameters after TERM). */
#define NB_DEF_SUM(name, TERM, ...)                                                                          \
    static double T(name)(int64_t n, const REAL *restrict a __VA_ARGS__) {                                   \
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                              \
        int64_t i = 0;                                                                                       \
        for (; i + 8 <= n; i += 8)                                                                           \
            for (int j = 0; j < 8; j++)                                                                      \
                s[j] += TERM(a[i + j]);                                                                      \
        double t = 0;                                                                                        \
        for (; i < n; i++)                                                                                   \
            t += TERM(a[i]);                                                                                 \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;                        \
    }
#define NB_TERM_VALUE(x) ((double)(x))
#define NB_TERM_ABS(x) ((double)M(fabs)(x))
#define NB_TERM_SCALED_SQUARE(x) (((double)(x) * scale) * ((double)(x) * scale))
NB_DEF_SUM(sum, NB_TERM_VALUE, )
NB_DEF_SUM(sum_abs, NB_TERM_ABS, )
NB_DEF_SUM(sum_scaled_squares, NB_TERM_SCALED_SQUARE, , double scale)
#undef NB_DEF_SUM
#undef NB_TERM_VALUE
#undef NB_TERM_ABS
#undef NB_TERM_SCALED_SQUARE

/* y += alpha·x */
static void T(axpy)(int64_t n, REAL alpha, const REAL *restrict x, REAL *restrict y) {
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

/* ---- element-wise groups ---------------------------------------------- */
/* Resolves a micro-operation operand for the block at flat position pos
 * (row r, first column c0).  *bc is set when the operand is one value for the
 * whole block. */
static inline const REAL *T(opnd)(const nb_arg *s, void *const *bases, REAL *regs, int64_t blen, int64_t pos,
                                  int64_t r, int64_t c0, int *bc) {
    switch (s->mode) {
    case NB_A_REG:
        *bc = 0;
        return regs + (int64_t)s->reg * blen;
    case NB_A_FULL:
        *bc = 0;
        return (const REAL *)bases[s->base] + s->off + pos;
    case NB_A_SCAL:
        *bc = 1;
        return (const REAL *)bases[s->base] + s->off;
    case NB_A_ROWB:
        *bc = 0;
        return (const REAL *)bases[s->base] + s->off + c0;
    default: /* NB_A_COLB */
        *bc = 1;
        return (const REAL *)bases[s->base] + s->off + r;
    }
}

static inline REAL *T(dst)(const nb_arg *d, void *const *bases, REAL *regs, int64_t blen, int64_t pos) {
    if (d->mode == NB_A_REG) return regs + (int64_t)d->reg * blen;
    return (REAL *)bases[d->base] + d->off + pos;
}

/* One block of a group: len elements at flat position pos. */
static void T(block)(const nb_group *g, void *const *bases, REAL *regs, double *acc, int64_t pos, int64_t r,
                     int64_t c0, int64_t len) {
    const int64_t blen = g->blen;
    for (uint32_t k = 0; k < g->nmops; k++) {
        const nb_mop *m = &g->mops[k];
        int sa = 0, sb = 0, sc = 0;
        const REAL *a = T(opnd)(&m->src[0], bases, regs, blen, pos, r, c0, &sa);
        if (m->op == NB_M_RSUM) {
            acc[m->acc] += sa ? (double)a[0] * (double)len : T(sum)(len, a);
            continue;
        }
        REAL *y = T(dst)(&m->dst, bases, regs, blen, pos);
        switch (m->op) {
#define NB_CASE_UNARY(name, expr)                                                                            \
    case NB_M_##name:                                                                                        \
        if (sa)                                                                                              \
            T(fill)(len, y, T(f_##name)(a[0]));                                                              \
        else if (!T(vm_unary)(NB_M_##name, len, y, a))                                                       \
            T(u_##name)(len, y, a);                                                                          \
        break;
            NB_UNARY(NB_CASE_UNARY)
#undef NB_CASE_UNARY
#define NB_CASE_BINARY(name, expr)                                                                           \
    case NB_M_##name: {                                                                                      \
        const REAL *b = T(opnd)(&m->src[1], bases, regs, blen, pos, r, c0, &sb);                             \
        if (!T(vm_binary)(NB_M_##name, len, y, a, sa, b, sb)) T(blk_##name)(len, y, a, sa, b, sb);            \
        break;                                                                                               \
    }
            NB_BINARY(NB_CASE_BINARY)
#undef NB_CASE_BINARY
#define NB_CASE_FUSED(name, inner, outer)                                                                    \
    case NB_M_##name: {                                                                                      \
        const REAL *b = T(opnd)(&m->src[1], bases, regs, blen, pos, r, c0, &sb);                             \
        const REAL *c = T(opnd)(&m->src[2], bases, regs, blen, pos, r, c0, &sc);                             \
        T(blk_##inner)(len, y, a, sa, b, sb);                                                                \
        T(then_##name)(len, y, c, sc);                                                                       \
        break;                                                                                               \
    }
            NB_FUSED_MOP_LIST(NB_CASE_FUSED)
#undef NB_CASE_FUSED
        case NB_M_SINCOS: {
            REAL *y2 = T(dst)(&m->dst2, bases, regs, blen, pos);
            if (sa) {
                REAL sv, cv;
                T(sincos)(a[0], &sv, &cv);
                T(fill)(len, y, sv);
                T(fill)(len, y2, cv);
            } else if (!T(vm_sincos)(len, y, y2, a)) {
                for (int64_t i = 0; i < len; i++)
                    T(sincos)(a[i], &y[i], &y2[i]);
            }
            break;
        }
        default:
            break;
        }
    }
}

/* Handler variants of a micro-operation by its arity: bit k of v set when
 * operand k is the previous sop's result. */
#define NB_VARIANTS_1(X, name) X(name, 0) X(name, 1)
#define NB_VARIANTS_2(X, name) NB_VARIANTS_1(X, name) X(name, 2) X(name, 3)
#define NB_VARIANTS_3(X, name) NB_VARIANTS_2(X, name) X(name, 4) X(name, 5) X(name, 6) X(name, 7)
_Static_assert(NB_SOP_VARIANTS == 8, "NB_VARIANTS_3 lists 2^NB_MOP_SRCS variants");

/* A group whose iteration space is one element: straight-line scalar code
 * over resolved addresses (nb_sop). */
static void T(scalar_group)(const nb_group *g, void *const *bases, double *acc) {
    nb_sop *const code = g->sops;
    for (uint32_t f = 0; f < g->nfixups; f++) {
        const nb_sop_fixup *x = &g->fixups[f];
        REAL *addr = (REAL *)bases[x->arg.base] + x->arg.off;
        if (x->which < NB_MOP_SRCS)
            code[x->k].src[x->which] = addr;
        else if (x->which == NB_SOP_Y)
            code[x->k].y = addr;
        else
            code[x->k].y2 = addr;
    }
    /* Threaded dispatch: each handler jumps to the next one's (one indirect
     * branch per operation, predicted per handler).  NB_SOP_VARIANTS
     * handlers per operation, by which operands are the previous result
     * (kept in a register, so a chain does not wait on memory): handler
     * NB_SOP_VARIANTS·op + v (see T(prepare_scalar)). */
#define NB_LABEL(name, v) [NB_SOP_VARIANTS * NB_M_##name + v] = &&op_##name##_##v,
#define NB_LABELS_UNARY(name, expr) NB_VARIANTS_1(NB_LABEL, name)
#define NB_LABELS_BINARY(name, expr) NB_VARIANTS_2(NB_LABEL, name)
#define NB_LABELS_FUSED(name, inner, outer) NB_VARIANTS_3(NB_LABEL, name)
    static const void *const handler[NB_SOP_VARIANTS * NB_M_COUNT + 1] = {
        NB_UNARY(NB_LABELS_UNARY) NB_BINARY(NB_LABELS_BINARY) NB_FUSED_MOP_LIST(NB_LABELS_FUSED)
            NB_VARIANTS_1(NB_LABEL, RSUM) NB_VARIANTS_1(NB_LABEL, SINCOS)
        [NB_SOP_VARIANTS * NB_M_COUNT] = &&op_end, /* the sentinel after the last sop */
    };
#undef NB_LABELS_UNARY
#undef NB_LABELS_BINARY
#undef NB_LABELS_FUSED
#undef NB_LABEL
    const nb_sop *s = code;
    REAL r, prev = 0;
#define NB_OPERAND(v, k) (((v) >> (k) & 1) ? prev : *(const REAL *)s->src[k])
/* the empty asm, different in each handler, keeps the compiler from merging
 * the handlers' identical tails into one shared indirect jump */
#define NB_NEXT(name, v)                                                                                     \
    do {                                                                                                     \
        __asm__ volatile("" ::"i"(NB_SOP_VARIANTS * NB_M_##name + v));                                       \
        s++;                                                                                                 \
        goto *handler[s->handler];                                                                           \
    } while (0)
#define NB_RESULT(name, v, value)                                                                            \
    r = (value);                                                                                             \
    *(REAL *)s->y = r;                                                                                       \
    prev = r;                                                                                                \
    NB_NEXT(name, v);
    goto *handler[s->handler];
op_end:
    return;
#define NB_OP_RSUM(name, v)                                                                                  \
    op_##name##_##v : acc[s->acc] += (double)NB_OPERAND(v, 0);                                               \
    NB_NEXT(name, v);
    NB_VARIANTS_1(NB_OP_RSUM, RSUM)
#undef NB_OP_RSUM
/* (sincos writes through pointers: locals of the handler, so that r stays
 * in a register) */
#define NB_OP_SINCOS(name, v)                                                                                \
    op_##name##_##v : {                                                                                      \
        REAL sv, cv;                                                                                         \
        T(sincos)(NB_OPERAND(v, 0), &sv, &cv);                                                               \
        *(REAL *)s->y2 = cv;                                                                                 \
        r = sv;                                                                                              \
    }                                                                                                        \
    NB_RESULT(name, v, r)
    NB_VARIANTS_1(NB_OP_SINCOS, SINCOS)
#undef NB_OP_SINCOS
#define NB_OP_UNARY_V(name, v) op_##name##_##v : NB_RESULT(name, v, T(f_##name)(NB_OPERAND(v, 0)))
#define NB_OP_UNARY(name, expr) NB_VARIANTS_1(NB_OP_UNARY_V, name)
    NB_UNARY(NB_OP_UNARY)
#undef NB_OP_UNARY
#undef NB_OP_UNARY_V
#define NB_OP_BINARY_V(name, v) op_##name##_##v : NB_RESULT(name, v, T(g_##name)(NB_OPERAND(v, 0), NB_OPERAND(v, 1)))
#define NB_OP_BINARY(name, expr) NB_VARIANTS_2(NB_OP_BINARY_V, name)
    NB_BINARY(NB_OP_BINARY)
#undef NB_OP_BINARY
#undef NB_OP_BINARY_V
#define NB_OP_FUSED_V(name, v)                                                                               \
    op_##name##_##v : NB_RESULT(name, v, T(h_##name)(NB_OPERAND(v, 0), NB_OPERAND(v, 1), NB_OPERAND(v, 2)))
#define NB_OP_FUSED(name, inner, outer) NB_VARIANTS_3(NB_OP_FUSED_V, name)
    NB_FUSED_MOP_LIST(NB_OP_FUSED)
#undef NB_OP_FUSED
#undef NB_OP_FUSED_V
#undef NB_RESULT
#undef NB_NEXT
#undef NB_OPERAND
}
#undef NB_VARIANTS_1
#undef NB_VARIANTS_2
#undef NB_VARIANTS_3

/* The address of a one-element group's operand or result (place: NB_SOP_*):
 * a register (block length 1), the workspace, or -- for the caller's
 * buffers, known per run -- NULL and a fixup. */
static void *T(sop_addr)(nb_group *g, uint32_t k, uint32_t place, const nb_arg *a, void *const *bases,
                         REAL *regs) {
    if (a->mode == NB_A_REG) return regs + a->reg;
    if (a->base == 0) return (REAL *)bases[0] + a->off;
    g->fixups[g->nfixups++] = (nb_sop_fixup){k, place, *a};
    return NULL;
}

static void T(prepare_scalar)(nb_group *g, void *const *bases, void *regs) {
    g->nfixups = 0;
    for (uint32_t k = 0; k < g->nmops; k++) {
        const nb_mop *m = &g->mops[k];
        nb_sop *s = &g->sops[k];
        *s = (nb_sop){.op = m->op, .acc = m->acc};
        const int nsrc = m->op == NB_M_RSUM ? 1 : nb_mop_arity[m->op];
        for (int j = 0; j < nsrc; j++)
            s->src[j] = T(sop_addr)(g, k, (uint32_t)j, &m->src[j], bases, (REAL *)regs);
        if (m->op != NB_M_RSUM) s->y = T(sop_addr)(g, k, NB_SOP_Y, &m->dst, bases, (REAL *)regs);
        if (m->op == NB_M_SINCOS) s->y2 = T(sop_addr)(g, k, NB_SOP_Y2, &m->dst2, bases, (REAL *)regs);
        /* the operands that are the previous sop's result, when that is in a
         * register or the workspace (caller buffers are not compared) */
        const nb_sop *q = k > 0 ? &g->sops[k - 1] : NULL;
        unsigned v = 0;
        for (int j = 0; j < nsrc; j++)
            v |= (unsigned)(q && q->y && s->src[j] == q->y) << j;
        s->handler = (uint16_t)(NB_SOP_VARIANTS * s->op + v);
    }
    g->sops[g->nmops] = (nb_sop){.op = NB_M_COUNT, .handler = NB_SOP_VARIANTS * NB_M_COUNT}; /* sentinel: ends the run */
}

/* Rows r0..r1 of a group (for a flat group, entries r0..r1). */
static void T(group_rows)(const nb_group *g, void *const *bases, REAL *regs, double *acc, int64_t r0,
                          int64_t r1) {
    const int64_t blen = g->blen;
    if (!g->rowwise) {
        const int64_t p0 = r0 * g->cols, p1 = r1 * g->cols;
        for (int64_t pos = p0; pos < p1; pos += blen) {
            const int64_t len = p1 - pos < blen ? p1 - pos : blen;
            T(block)(g, bases, regs, acc, pos, 0, 0, len);
        }
    } else {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c0 = 0; c0 < g->cols; c0 += blen) {
                const int64_t len = g->cols - c0 < blen ? g->cols - c0 : blen;
                T(block)(g, bases, regs, acc, r * g->cols + c0, r, c0, len);
            }
    }
}

static void T(exec_group)(const nb_group *g, void *const *bases, REAL *regs, double *acc, int tid, int nt) {
    for (uint32_t k = 0; k < g->nred; k++)
        acc[k] = 0;
    if (g->rows * g->cols == 1 && g->sops) {
        if (tid == 0) T(scalar_group)(g, bases, acc);
        return;
    }
    if (!g->rowwise) { /* split at block boundaries */
        const int64_t total = g->rows * g->cols, blen = g->blen;
        const int64_t nblocks = (total + blen - 1) / blen;
        const int64_t b0 = nblocks * tid / nt, b1 = nblocks * (tid + 1) / nt;
        for (int64_t b = b0; b < b1; b++) {
            const int64_t pos = b * blen;
            const int64_t len = total - pos < blen ? total - pos : blen;
            T(block)(g, bases, regs, acc, pos, 0, 0, len);
        }
    } else {
        T(group_rows)(g, bases, regs, acc, g->rows * tid / nt, g->rows * (tid + 1) / nt);
    }
}

/* ---- matrix products -------------------------------------------------- */
#if !defined(NB_HAVE_CBLAS) && !defined(NB_HAVE_GEMM_AVX512)
/* Blocked portable product C (m x n, row stride ldc) = alpha·op(A)·op(B):
 * B is packed in KC x NC panels, A in MC x KC panels (times alpha), and a
 * 4-row kernel streams B rows into 4 rows of C with vectorised inner loops. */
static void T(gemm_portable)(int ta, int tb, int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *A,
                             int64_t lda, const REAL *B, int64_t ldb, REAL *C, int64_t ldc, REAL *pack,
                             int acc) {
    REAL *Bp = pack, *Ap = pack + NB_GEMM_KC * NB_GEMM_NC;
    if (!acc)
        for (int64_t i = 0; i < m; i++)
            T(fill)(n, C + i * ldc, 0);
    for (int64_t jc = 0; jc < n; jc += NB_GEMM_NC) {
        const int64_t nc = n - jc < NB_GEMM_NC ? n - jc : NB_GEMM_NC;
        for (int64_t pc = 0; pc < k; pc += NB_GEMM_KC) {
            const int64_t kc = k - pc < NB_GEMM_KC ? k - pc : NB_GEMM_KC;
            if (tb) {
                for (int64_t j = 0; j < nc; j++)
                    for (int64_t p = 0; p < kc; p++)
                        Bp[p * nc + j] = B[(jc + j) * ldb + pc + p];
            } else {
                for (int64_t p = 0; p < kc; p++)
                    for (int64_t j = 0; j < nc; j++)
                        Bp[p * nc + j] = B[(pc + p) * ldb + jc + j];
            }
            for (int64_t ic = 0; ic < m; ic += NB_GEMM_MC) {
                const int64_t mc = m - ic < NB_GEMM_MC ? m - ic : NB_GEMM_MC;
                if (ta) {
                    for (int64_t p = 0; p < kc; p++)
                        for (int64_t i = 0; i < mc; i++)
                            Ap[i * kc + p] = alpha * A[(pc + p) * lda + ic + i];
                } else {
                    for (int64_t i = 0; i < mc; i++)
                        for (int64_t p = 0; p < kc; p++)
                            Ap[i * kc + p] = alpha * A[(ic + i) * lda + pc + p];
                }
                int64_t i = 0;
                for (; i + 4 <= mc; i += 4) {
                    REAL *restrict c0 = C + (ic + i) * ldc + jc;
                    REAL *restrict c1 = c0 + ldc;
                    REAL *restrict c2 = c1 + ldc;
                    REAL *restrict c3 = c2 + ldc;
                    for (int64_t p = 0; p < kc; p++) {
                        const REAL a0 = Ap[i * kc + p], a1 = Ap[(i + 1) * kc + p];
                        const REAL a2 = Ap[(i + 2) * kc + p], a3 = Ap[(i + 3) * kc + p];
                        const REAL *restrict b = Bp + p * nc;
                        for (int64_t j = 0; j < nc; j++) {
                            const REAL bj = b[j];
                            c0[j] += a0 * bj;
                            c1[j] += a1 * bj;
                            c2[j] += a2 * bj;
                            c3[j] += a3 * bj;
                        }
                    }
                }
                for (; i < mc; i++) {
                    REAL *restrict c0 = C + (ic + i) * ldc + jc;
                    for (int64_t p = 0; p < kc; p++)
                        T(axpy)(nc, Ap[i * kc + p], Bp + p * nc, c0);
                }
            }
        }
    }
}
#endif

/* C = alpha·op(A)·op(B) (+ C when acc), C contiguous with row stride ldc:
 * nabla's AVX-512 kernel where the kernels are built for it (gemm_avx512.h),
 * else OpenBLAS, else the portable product.  pack: nb_instr_scratch's space. */
static void T(gemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *A, int64_t lda,
                    const REAL *B, int64_t ldb, REAL *C, int64_t ldc, REAL *pack, int acc) {
    if (m <= 0 || n <= 0) return;
#if defined(NB_HAVE_GEMM_AVX512)
    T(nb_gemm_avx512)(ta, tb, m, n, k, alpha, A, lda, B, ldb, C, ldc, pack, acc);
#elif defined(NB_HAVE_CBLAS)
    (void)pack;
    if (k <= 0) {
        if (!acc)
            for (int64_t i = 0; i < m; i++)
                T(fill)(n, C + i * ldc, 0);
        return;
    }
    NB_CBLAS(gemm)
    (CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
     alpha, A, (int)lda, B, (int)ldb, (REAL)(acc ? 1 : 0), C, (int)ldc);
#else
    T(gemm_portable)(ta, tb, m, n, k, alpha, A, lda, B, ldb, C, ldc, pack, acc);
#endif
}

/* Matrix-vector products.  Own kernels rather than BLAS gemv, with explicit
 * vectors (GCC vector extensions, which clang shares: one register of REAL,
 * 64 bytes where the kernels are built for AVX-512, else 32), accumulators
 * kept in registers; measured faster than OpenBLAS's dgemv on the development
 * machine, and the same code with and without BLAS. */
#ifdef __AVX512F__
#define NB_VBYTES 64
#else
#define NB_VBYTES 32
#endif
#define NB_VN ((int64_t)(NB_VBYTES / NB_REAL_BYTES))
typedef REAL T(vec) __attribute__((vector_size(NB_VBYTES)));
typedef REAL T(hvec) __attribute__((vector_size(NB_VBYTES / 2)));
typedef REAL T(qvec) __attribute__((vector_size(NB_VBYTES / 4)));
/* lane indices of the low and high halves of a vector and of a half vector */
#if NB_VBYTES / NB_REAL_BYTES == 16
#define NB_LO 0, 1, 2, 3, 4, 5, 6, 7
#define NB_HI 8, 9, 10, 11, 12, 13, 14, 15
#define NB_HLO 0, 1, 2, 3
#define NB_HHI 4, 5, 6, 7
#elif NB_VBYTES / NB_REAL_BYTES == 8
#define NB_LO 0, 1, 2, 3
#define NB_HI 4, 5, 6, 7
#define NB_HLO 0, 1
#define NB_HHI 2, 3
#else
#define NB_LO 0, 1
#define NB_HI 2, 3
#define NB_HLO 0
#define NB_HHI 1
#endif

/* Σ of the lanes of v and h, by halving: shuffles, not memory, so that the
 * callers' accumulators stay in registers. */
static inline REAL T(vec_sum)(T(vec) v, T(hvec) h) {
    T(hvec) half = __builtin_shufflevector(v, v, NB_LO) + __builtin_shufflevector(v, v, NB_HI) + h;
    T(qvec) quarter = __builtin_shufflevector(half, half, NB_HLO) + __builtin_shufflevector(half, half, NB_HHI);
    REAL t = 0;
    for (int k = 0; k < NB_VN / 4; k++)
        t += quarter[k];
    return t;
}

static inline T(vec) T(vec_load)(const REAL *p) {
    T(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline T(hvec) T(hvec_load)(const REAL *p) {
    T(hvec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* y[i] = alpha·(A x)[i] (+ y[i] when acc) for i in [i0, i0 + R): R rows at
 * once, full vectors, then a half vector, then scalars. */
#define NB_GEMV_ROWS(R)                                                                                      \
    do {                                                                                                     \
        const REAL *a = A + i0 * lda;                                                                        \
        T(vec) s[R] = {{0}};                                                                                 \
        T(hvec) h[R] = {{0}};                                                                                \
        int64_t j = 0;                                                                                       \
        for (; j + NB_VN <= cols; j += NB_VN) {                                                              \
            const T(vec) xv = T(vec_load)(x + j);                                                            \
            for (int r = 0; r < R; r++)                                                                      \
                s[r] += T(vec_load)(a + r * lda + j) * xv;                                                   \
        }                                                                                                    \
        if (j + NB_VN / 2 <= cols) {                                                                         \
            const T(hvec) xh = T(hvec_load)(x + j);                                                          \
            for (int r = 0; r < R; r++)                                                                      \
                h[r] = T(hvec_load)(a + r * lda + j) * xh;                                                   \
            j += NB_VN / 2;                                                                                  \
        }                                                                                                    \
        REAL t[R];                                                                                           \
        for (int r = 0; r < R; r++)                                                                          \
            t[r] = T(vec_sum)(s[r], h[r]);                                                                   \
        for (; j < cols; j++)                                                                                \
            for (int r = 0; r < R; r++)                                                                      \
                t[r] += a[r * lda + j] * x[j];                                                               \
        for (int r = 0; r < R; r++)                                                                          \
            y[i0 + r] = acc ? y[i0 + r] + alpha * t[r] : alpha * t[r];                                       \
    } while (0)

/* y[i] = alpha·(A x)[i] (+ y[i] when acc), i < rows */
static void T(gemv_n)(int64_t rows, int64_t cols, REAL alpha, const REAL *restrict A, int64_t lda,
                      const REAL *restrict x, REAL *restrict y, int acc) {
    int64_t i0 = 0;
    for (; i0 + NB_GEMV_R <= rows; i0 += NB_GEMV_R)
        NB_GEMV_ROWS(NB_GEMV_R);
    for (; i0 < rows; i0++)
        NB_GEMV_ROWS(1);
}
#undef NB_GEMV_ROWS

/* y[j..j + C·NB_VN + tail) += Σ_i alpha·x[i]·A[i, j..]: C vectors of y
 * (then, when tail, every column left: a half vector, a quarter vector and
 * scalars) stay in registers while the rows of A stream by: one load per
 * vector of A, a single pass over the rows. */
#define NB_GEMVT_COLS(C, tail)                                                                               \
    do {                                                                                                     \
        T(vec) s[C > 0 ? C : 1] = {{0}};                                                                     \
        T(hvec) sh = {0};                                                                                    \
        T(qvec) sq = {0};                                                                                    \
        REAL ss[NB_VN / 4] = {0};                                                                            \
        const int64_t jh = j + C * NB_VN, left = (tail) ? cols - jh : 0;                                     \
        const int has_h = left >= NB_VN / 2, has_q = left - has_h * NB_VN / 2 >= NB_VN / 4;                  \
        const int64_t jq = jh + has_h * NB_VN / 2, js = jq + has_q * NB_VN / 4, ns = (tail) ? cols - js : 0; \
        for (int64_t i = 0; i < rows; i++) {                                                                 \
            const REAL xs = x ? alpha * x[i] : alpha, *a = A + i * lda, *aj = a + j;                         \
            const T(vec) xi = (T(vec)){0} + xs;                                                              \
            for (int k = 0; k < C; k++)                                                                      \
                s[k] += T(vec_load)(aj + k * NB_VN) * xi;                                                    \
            if (has_h) sh += T(hvec_load)(a + jh) * ((T(hvec)){0} + xs);                                     \
            if (has_q) {                                                                                     \
                T(qvec) v;                                                                                   \
                memcpy(&v, a + jq, sizeof v);                                                                \
                sq += v * ((T(qvec)){0} + xs);                                                               \
            }                                                                                                \
            for (int64_t q = 0; q < ns; q++)                                                                 \
                ss[q] += a[js + q] * xs;                                                                     \
        }                                                                                                    \
        for (int k = 0; k < C; k++) {                                                                        \
            const T(vec) sum = T(vec_load)(y + j + k * NB_VN) + s[k];                                        \
            memcpy(y + j + k * NB_VN, &sum, sizeof sum);                                                     \
        }                                                                                                    \
        for (int k = 0; k < NB_VN / 2 && has_h; k++)                                                         \
            y[jh + k] += sh[k];                                                                              \
        for (int k = 0; k < NB_VN / 4 && has_q; k++)                                                         \
            y[jq + k] += sq[k];                                                                              \
        for (int64_t q = 0; q < ns; q++)                                                                     \
            y[js + q] += ss[q];                                                                              \
        j += C * NB_VN;                                                                                      \
    } while (0)

/* y[j] = alpha·(Aᵀx)[j] (+ y[j] when acc), j < cols: blocks of 16 vectors
 * of columns, then the rest in one pass.  x NULL: a vector of ones (column
 * sums). */
static void T(gemv_t)(int64_t rows, int64_t cols, REAL alpha, const REAL *restrict A, int64_t lda,
                      const REAL *restrict x, REAL *restrict y, int acc) {
    if (!acc) T(fill)(cols, y, 0);
    int64_t j = 0;
    while (cols - j > 16 * NB_VN)
        NB_GEMVT_COLS(16, 0);
    switch ((cols - j) / NB_VN) {
#define NB_X(C)                                                                                              \
    case C:                                                                                                  \
        NB_GEMVT_COLS(C, 1);                                                                                 \
        break;
        NB_X(0) NB_X(1) NB_X(2) NB_X(3) NB_X(4) NB_X(5) NB_X(6) NB_X(7) NB_X(8)
        NB_X(9) NB_X(10) NB_X(11) NB_X(12) NB_X(13) NB_X(14) NB_X(15) NB_X(16)
#undef NB_X
    }
}
#undef NB_GEMVT_COLS

/* y = alpha·op(A)·x (+ y when acc) where A is rows x cols row-major with
 * stride lda. */
static void T(gemv)(int ta, int64_t rows, int64_t cols, REAL alpha, const REAL *A, int64_t lda, const REAL *x,
                    REAL *y, int acc) {
    if ((ta ? cols : rows) <= 0) return;
    if (ta)
        T(gemv_t)(rows, cols, alpha, A, lda, x, y, acc);
    else
        T(gemv_n)(rows, cols, alpha, A, lda, x, y, acc);
}

/* ---- row-wise softmax family ------------------------------------------ */
static REAL T(rowmax)(int64_t n, const REAL *z) {
    REAL mx = z[0];
    for (int64_t j = 1; j < n; j++)
        mx = z[j] > mx ? z[j] : mx;
    return mx;
}

static void T(softmax_rows)(int logsm, int64_t r0, int64_t r1, int64_t n, const REAL *Z, REAL *Y) {
    for (int64_t i = r0; i < r1; i++) {
        const REAL *z = Z + i * n;
        REAL *y = Y + i * n;
        const REAL mx = T(rowmax)(n, z);
        /* y = e^(z − max) (a vector at a time), then its sum */
        for (int64_t j = 0; j < n; j++)
            y[j] = z[j] - mx;
        T(exp_array)(n, y, y);
        const double s = T(sum)(n, y);
        if (logsm) {
            const REAL lse = mx + (REAL)log(s);
            for (int64_t j = 0; j < n; j++)
                y[j] = z[j] - lse;
        } else {
            const REAL inv = (REAL)(1.0 / s);
            for (int64_t j = 0; j < n; j++)
                y[j] *= inv;
        }
    }
}

/* log Σ e^x[i] = m + log Σ e^(x[i] − m), m = max (NaN or ±∞: m), as
 * nb_logsumexp_value (linalg.c) computes it, with the exponentials a vector
 * at a time through a buffer on the stack and the sum in double. */
static REAL T(logsumexp)(int64_t n, const REAL *x) {
    REAL m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = x[i] > m || x[i] != x[i] ? x[i] : m;
    if (isinf(m) || m != m) return m;
    enum { CHUNK = 256 };
    REAL t[CHUNK];
    double s = 0;
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t len = n - i < CHUNK ? n - i : CHUNK;
        for (int64_t j = 0; j < len; j++)
            t[j] = x[i + j] - m;
        T(exp_array)(len, t, t);
        s += T(sum)(len, t);
    }
    return (REAL)((double)m + log(s));
}

/* max |x[i]|, NaN when any x[i] is NaN; a vector of maxima at a time */
static double T(max_abs)(int64_t n, const REAL *restrict x) {
    typedef UREAL T(uvec) __attribute__((vector_size(NB_VBYTES)));
    const T(uvec) magnitude = (T(uvec)){0} + (((UREAL)1 << (8 * NB_REAL_BYTES - 1)) - 1);
    T(vec) mv = {0};
    T(uvec) nan = {0};
    int64_t i = 0;
    for (; i + NB_VN <= n; i += NB_VN) {
        const T(vec) a = (T(vec))((T(uvec))T(vec_load)(x + i) & magnitude);
        const T(uvec) more = (T(uvec))(a > mv);
        mv = (T(vec))((more & (T(uvec))a) | (~more & (T(uvec))mv));
        nan |= (T(uvec))(a != a);
    }
    double m = 0;
    for (int k = 0; k < NB_VN; k++) {
        if (nan[k]) return NAN;
        m = (double)mv[k] > m ? (double)mv[k] : m;
    }
    for (; i < n; i++) {
        const double a = M(fabs)(x[i]);
        if (a != a) return NAN;
        m = a > m ? a : m;
    }
    return m;
}

/* ‖x‖₂ scaled by the largest magnitude m so that squares neither overflow
 * nor underflow (nb_norm2_value, linalg.c), the scale a power of two near
 * 1/m so that scaling rounds nothing: ‖x‖ = √(Σ (x[i]·2⁻ᵉ)²)·2ᵉ in double. */
static REAL T(norm2)(int64_t n, const REAL *restrict x) {
    const double m = T(max_abs)(n, x);
    if (m == 0 || isinf(m) || m != m) return (REAL)m;
    int e;
    frexp(m, &e);
    const double scale = ldexp(1, -e);
    return (REAL)(sqrt(T(sum_scaled_squares)(n, x, scale)) / scale);
}

/* Σ over rows r0..r1 of −Σ_j Y_ij·log softmax(Z_i)_j = Σ_j Y_ij (lse_i − Z_ij). */
static double T(xent_rows)(int64_t r0, int64_t r1, int64_t n, const REAL *Z, const REAL *Y) {
    double total = 0;
    for (int64_t i = r0; i < r1; i++) {
        const REAL *z = Z + i * n, *y = Y + i * n;
        const double mx = (double)T(rowmax)(n, z);
        double s = 0;
        for (int64_t j = 0; j < n; j++)
            s += exp((double)z[j] - mx);
        const double lse = mx + log(s);
        double row = 0;
        for (int64_t j = 0; j < n; j++)
            row += (double)y[j] * (lse - (double)z[j]);
        total += row;
    }
    return total;
}

/* ---- instruction dispatch --------------------------------------------- */
#define NB_P(arg) ((REAL *)bases[(arg).base] + (arg).off)

static void T(exec)(const nb_instr *in, void *const *bases, void *scratch, double *acc, int tid, int nt) {
    REAL *scr = (REAL *)scratch;
    const double alpha_d = in->has_alpha ? in->alpha * (double)*NB_P(in->alpha_arg) : in->alpha;
    const REAL alpha = (REAL)alpha_d;
    switch (in->kind) {
    case NB_I_GROUP:
        T(exec_group)(in->g, bases, scr, acc, tid, nt);
        break;
    case NB_I_GEMM: {
        const REAL *A = NB_P(in->a), *B = NB_P(in->b);
        REAL *C = NB_P(in->y);
        int64_t m = in->m, n = in->n;
        /* halves by rows or columns, whichever is longer, cut at whole tiles */
        if (nt > 1 && m >= n) {
            const int64_t i0 = nb_gemm_cut(m, tid, nt, NB_GEMM_ROW_UNIT),
                          i1 = nb_gemm_cut(m, tid + 1, nt, NB_GEMM_ROW_UNIT);
            T(gemm)
            (in->ta, in->tb, i1 - i0, n, in->k, alpha, in->ta ? A + i0 : A + i0 * in->lda, in->lda, B,
             in->ldb, C + i0 * n, n, scr, 0);
        } else if (nt > 1) {
            const int64_t j0 = nb_gemm_cut(n, tid, nt, NB_GEMM_COL_UNIT(sizeof(REAL))),
                          j1 = nb_gemm_cut(n, tid + 1, nt, NB_GEMM_COL_UNIT(sizeof(REAL)));
            T(gemm)
            (in->ta, in->tb, m, j1 - j0, in->k, alpha, A, in->lda, in->tb ? B + j0 * in->ldb : B + j0,
             in->ldb, C + j0, n, scr, 0);
        } else {
            T(gemm)(in->ta, in->tb, m, n, in->k, alpha, A, in->lda, B, in->ldb, C, n, scr, 0);
        }
        break;
    }
    case NB_I_GEMV: {
        /* a is m x n row-major; ta: y(n) = alpha aᵀ b, else y(m) = alpha a b. */
        const REAL *A = NB_P(in->a), *x = NB_P(in->b);
        REAL *y = NB_P(in->y);
        if (!in->ta) {
            const int64_t i0 = in->m * tid / nt, i1 = in->m * (tid + 1) / nt;
            T(gemv)(0, i1 - i0, in->n, alpha, A + i0 * in->n, in->n, x, y + i0, 0);
        } else {
            const int64_t j0 = in->n * tid / nt, j1 = in->n * (tid + 1) / nt;
            T(gemv)(1, in->m, j1 - j0, alpha, A + j0, in->n, x, y + j0, 0);
        }
        break;
    }
    case NB_I_COLSUM: {
        const REAL *A = NB_P(in->a);
        REAL *y = NB_P(in->y);
        const int64_t j0 = in->n * tid / nt, j1 = in->n * (tid + 1) / nt;
        if (j1 > j0) T(gemv_t)(in->m, j1 - j0, 1, A + j0, in->n, NULL, y + j0, 0);
        if (alpha_d != 1)
            for (int64_t j = j0; j < j1; j++)
                y[j] *= alpha;
        break;
    }
    case NB_I_ROWSUM: {
        const REAL *A = NB_P(in->a);
        REAL *y = NB_P(in->y);
        const int64_t i0 = in->m * tid / nt, i1 = in->m * (tid + 1) / nt;
        for (int64_t i = i0; i < i1; i++)
            y[i] = (REAL)(alpha_d * T(sum)(in->n, A + i * in->n));
        break;
    }
    case NB_I_TRANSPOSE: {
        /* y (n x m) = aᵀ, a is m x n: thread takes rows j0..j1 of y. */
        const REAL *A = NB_P(in->a);
        REAL *Y = NB_P(in->y);
        const int64_t m = in->m, n = in->n;
        const int64_t j0 = n * tid / nt, j1 = n * (tid + 1) / nt;
        for (int64_t jb = j0; jb < j1; jb += 32)
            for (int64_t ib = 0; ib < m; ib += 32) {
                const int64_t je = jb + 32 < j1 ? jb + 32 : j1, ie = ib + 32 < m ? ib + 32 : m;
                for (int64_t j = jb; j < je; j++)
                    for (int64_t i = ib; i < ie; i++)
                        Y[j * m + i] = A[i * n + j];
            }
        break;
    }
    case NB_I_STRIDED: {
        const REAL *A = NB_P(in->a);
        REAL *y = NB_P(in->y);
        if (tid == 0)
            for (int64_t i = 0; i < in->m; i++)
                y[i] = A[i * in->stride];
        break;
    }
    case NB_I_GATHER: {
        REAL *y = NB_P(in->y);
        if (tid == 0)
            for (size_t i = 0; i < in->nlist; i++)
                y[i] = *NB_P(in->list[i]);
        break;
    }
    case NB_I_DENSE_DIAG: {
        const REAL *d = NB_P(in->a);
        REAL *Y = NB_P(in->y);
        const int64_t m = in->m;
        const int64_t i0 = m * tid / nt, i1 = m * (tid + 1) / nt;
        for (int64_t i = i0; i < i1; i++) {
            T(fill)(m, Y + i * m, 0);
            Y[i * m + i] = d[i * in->stride];
        }
        break;
    }
    case NB_I_SOFTMAX:
    case NB_I_LOGSOFTMAX: {
        const int64_t r0 = in->m * tid / nt, r1 = in->m * (tid + 1) / nt;
        T(softmax_rows)(in->kind == NB_I_LOGSOFTMAX, r0, r1, in->n, NB_P(in->a), NB_P(in->y));
        break;
    }
    case NB_I_MATFN:
        if (tid != 0) break;
        switch (in->fn) { /* in lockstep with nb_matfn_in_kernels (kernels.c: no scratch), the rest in linalg.c */
        case NB_LA_LOGSUMEXP: *NB_P(in->y) = T(logsumexp)(in->m * in->n, NB_P(in->a)); break;
        case NB_LA_NORM2: *NB_P(in->y) = T(norm2)(in->m * in->n, NB_P(in->a)); break;
        case NB_LA_NORM1: *NB_P(in->y) = (REAL)T(sum_abs)(in->m * in->n, NB_P(in->a)); break;
        default:
            nb_linalg_kernel(in->fn, sizeof(REAL), in->m, in->n, in->ldb, in->k, NB_P(in->a),
                             in->fn == NB_LA_SOLVE || in->fn == NB_LA_BCE || in->fn == NB_LA_KRON ||
                                     in->fn == NB_LA_TRACE_PRODUCT
                                 ? NB_P(in->b)
                                 : NULL,
                             NB_P(in->y), scratch);
        }
        break;
    case NB_I_XENT: {
        const int64_t r0 = in->m * tid / nt, r1 = in->m * (tid + 1) / nt;
        acc[0] = T(xent_rows)(r0, r1, in->n, NB_P(in->a), NB_P(in->b));
        break;
    }
    default:
        break;
    }
}

/* Rows r0..r1 of the tiled dimension of an instruction in a row-tiled region
 * (see tile.c).  first: the first tile of this thread, where sums over the
 * rows start from zero; red: where a sum over the rows goes (NULL: the
 * instruction's own output). */
static void T(exec_rows)(const nb_instr *in, void *const *bases, void *scratch, double *acc, int64_t r0,
                         int64_t r1, int first, void *red) {
    REAL *scr = (REAL *)scratch;
    const double alpha_d = in->has_alpha ? in->alpha * (double)*NB_P(in->alpha_arg) : in->alpha;
    const REAL alpha = (REAL)alpha_d;
    REAL *y = red ? (REAL *)red : NB_P(in->y);
    const REAL *A = NB_P(in->a);
    switch (in->kind) {
    case NB_I_GROUP:
        if (first)
            for (uint32_t k = 0; k < in->g->nred; k++)
                acc[k] = 0;
        T(group_rows)(in->g, bases, scr, acc, r0, r1);
        break;
    case NB_I_GEMV:
        if (!in->ta)
            T(gemv)(0, r1 - r0, in->n, alpha, A + r0 * in->n, in->n, NB_P(in->b), y + r0, 0);
        else
            T(gemv)(1, r1 - r0, in->n, alpha, A + r0 * in->n, in->n, NB_P(in->b) + r0, y, !first);
        break;
    case NB_I_GEMM:
        if (!in->ta) /* rows of A and C */
            T(gemm)
        (0, in->tb, r1 - r0, in->n, in->k, alpha, A + r0 * in->lda, in->lda, NB_P(in->b), in->ldb,
         y + r0 * in->n, in->n, scr, 0);
        else /* the inner dimension: a sum over the rows */
            T(gemm)(1, in->tb, in->m, in->n, r1 - r0, alpha, A + r0 * in->lda, in->lda,
                    in->tb ? NB_P(in->b) + r0 : NB_P(in->b) + r0 * in->ldb, in->ldb, y, in->n, scr, !first);
        break;
    case NB_I_COLSUM:
        T(gemv_t)(r1 - r0, in->n, alpha, A + r0 * in->n, in->n, NULL, y, !first);
        break;
    case NB_I_ROWSUM:
        for (int64_t i = r0; i < r1; i++)
            y[i] = (REAL)(alpha_d * T(sum)(in->n, A + i * in->n));
        break;
    case NB_I_SOFTMAX:
    case NB_I_LOGSOFTMAX:
        T(softmax_rows)(in->kind == NB_I_LOGSOFTMAX, r0, r1, in->n, A, y);
        break;
    case NB_I_XENT:
        if (first) acc[0] = 0;
        acc[0] += T(xent_rows)(r0, r1, in->n, A, NB_P(in->b));
        break;
    default:
        break;
    }
}

static void T(accumulate)(void *y, const void *x, int64_t n) {
    T(axpy)(n, (REAL)1, (const REAL *)x, (REAL *)y);
}

static void T(finish)(const nb_instr *in, void *const *bases, double *const *acc, int nt) {
    if (in->kind == NB_I_GROUP) {
        for (uint32_t k = 0; k < in->g->nred; k++) {
            double s = 0;
            for (int t = 0; t < nt; t++)
                s += acc[t][k];
            *NB_P(in->g->red_dst[k]) = (REAL)s;
        }
    } else if (in->kind == NB_I_XENT) {
        double s = 0;
        for (int t = 0; t < nt; t++)
            s += acc[t][0];
        *NB_P(in->y) = (REAL)(in->m > 0 ? s / (double)in->m : 0);
    }
}
#undef NB_P

static int64_t T(find_nonfinite)(const void *p, int64_t n) {
    const REAL *a = (const REAL *)p;
    const int64_t chunk = 1024;
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const int64_t i1 = n - i0 < chunk ? n : i0 + chunk;
        UREAL bad = 0;
        for (int64_t i = i0; i < i1; i++) {
            UREAL u;
            memcpy(&u, &a[i], sizeof u);
            bad |= (UREAL)((u & NB_EXPMASK) == NB_EXPMASK);
        }
        if (bad)
            for (int64_t i = i0; i < i1; i++)
                if (!isfinite(a[i])) return i;
    }
    return -1;
}

static void T(store)(void *base, int64_t off, double v) {
    ((REAL *)base)[off] = (REAL)v;
}

const nb_kernels T(nb_kernels) = {sizeof(REAL), T(exec),       T(finish),    T(find_nonfinite),
                                  T(store),     T(exec_rows),  T(accumulate), T(prepare_scalar)};

/* The instantiation's parameters end with it. */
#undef REAL
#undef NB_REAL_BYTES
#undef NB_VN
#undef NB_LO
#undef NB_HI
#undef NB_HLO
#undef NB_HHI
#undef NB_VBYTES
#undef UREAL
#undef NB_EXPMASK
#undef T
#undef M
#undef VM
#undef VM2
#undef NB_CBLAS
