/* The executable form of a compiled program, and the kernels that run it.
 *
 * The compiler (engine.h) lowers an expression DAG to instructions whose
 * operands are (base, offset) pairs into caller buffers or the program's
 * workspace;
 * kernels_impl.h is the ONE kernel source: kernels.c includes it twice, once
 * with REAL = double (suffix _f64) and once with REAL = float (suffix _f32).
 *
 * Element-wise work runs in "groups": a fused list of micro-operations over
 * one iteration space (rows x cols) that is walked block by block; values that
 * live only inside the group stay in small per-thread registers (one block
 * long, in L1), so a chain of element-wise operations costs one pass over
 * memory.  Everything else (products, gathers, row-wise softmax) is a kernel
 * instruction.  The planned list of nb_instr (plan.c) is the interface every
 * backend reads: the interpreter (run.c + these kernels) today. */
#ifndef NB_KERNELS_H
#define NB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Block length of element-wise groups (elements). */
#define NB_BLOCK 512

/* How a micro-operation reads an operand within a block. */
enum {
    NB_A_REG,  /* a group register (block-long scratch) */
    NB_A_FULL, /* memory, same shape as the iteration space */
    NB_A_SCAL, /* memory, one value broadcast everywhere */
    NB_A_ROWB, /* memory, a row (1 x cols) broadcast over the rows */
    NB_A_COLB  /* memory, a column (rows x 1) broadcast over the columns */
};

typedef struct {
    uint8_t mode; /* NB_A_* */
    uint8_t base; /* index into the run's base-pointer table (memory modes) */
    uint32_t reg; /* register index (NB_A_REG) */
    int64_t off;  /* element offset from the base */
} nb_arg;

/* Micro-operations.  X(name, arity); arity 1 unary, 2 binary, 3 ternary (the
 * fused pairs below), 0 reduction.  SINCOS is unary with two results: dst
 * gets sin, dst2 cos (one libm sincos call). */
#define NB_MOP_LIST(X)                                                                                       \
    X(COPY, 1)                                                                                               \
    X(NEG, 1)                                                                                                \
    X(EXP, 1) X(LOG, 1) X(SIN, 1) X(COS, 1) X(TAN, 1) X(TANH, 1) X(SIGMOID, 1) X(ABS, 1) X(SIGN, 1)          \
        X(SQRT, 1) X(SQUARE, 1) X(RECIP, 1) X(SOFTPLUS, 1) X(LOGSIGMOID, 1) X(ADD, 2) X(SUB, 2) X(MUL, 2)    \
            X(DIV, 2) X(POW, 2) X(MAX, 2) X(MIN, 2) X(GT, 2) X(GE, 2) X(LT, 2) X(LE, 2) X(RSUM, 0)           \
                X(SINCOS, 1) X(MULADD, 3) X(MULSUB, 3) X(MULMUL, 3) X(MULDIV, 3) X(ADDMUL, 3) X(SUBMUL, 3)       \
                    X(ADDADD, 3)

/* The scalar definition of every element-wise micro-operation, written once
 * for the kernels (kernels_impl.h, which instantiates them per REAL) and for
 * generated code (native.c, which prints them): expressions in REAL, with
 * T(name) the suffixed name and M(fn) the libm function for REAL; fused pairs
 * (below) are compositions of two of these, SINCOS is SIN and COS. */
/* Unary: X(name, expression of x). */
#define NB_UNARY(X)                                                                                          \
    X(COPY, x)                                                                                               \
    X(NEG, -x)                                                                                               \
    X(EXP, M(exp)(x))                                                                                        \
    X(LOG, M(log)(x))                                                                                        \
    X(SIN, M(sin)(x))                                                                                        \
    X(COS, M(cos)(x))                                                                                        \
    X(TAN, M(tan)(x))                                                                                        \
    X(TANH, M(tanh)(x))                                                                                      \
    X(SIGMOID, T(sc_sigmoid)(x))                                                                             \
    X(ABS, M(fabs)(x))                                                                                       \
    X(SIGN, T(sc_sign)(x))                                                                                   \
    X(SQRT, M(sqrt)(x))                                                                                      \
    X(SQUARE, x *x)                                                                                          \
    X(RECIP, (REAL)1 / x)                                                                                    \
    X(SOFTPLUS, T(sc_softplus)(x))                                                                           \
    X(LOGSIGMOID, T(sc_logsigmoid)(x))
/* Binary: X(name, expression of a and b). */
#define NB_BINARY(X)                                                                                         \
    X(ADD, a + b)                                                                                            \
    X(SUB, a - b)                                                                                            \
    X(MUL, a *b)                                                                                             \
    X(DIV, a / b)                                                                                            \
    X(POW, M(pow)(a, b))                                                                                     \
    X(MAX, T(sc_max)(a, b))                                                                                  \
    X(MIN, T(sc_min)(a, b))                                                                                  \
    X(GT, (REAL)(a > b))                                                                                     \
    X(GE, (REAL)(a >= b))                                                                                    \
    X(LT, (REAL)(a < b))                                                                                     \
    X(LE, (REAL)(a <= b))

/* Fused pairs: one micro-operation for an inner binary operation whose
 * result only the outer one reads, X(name, inner, outer):
 * name(a, b, c) = outer(inner(a, b), c).  The inner result is rounded to
 * the element type as before fusion (no contraction into one fma), so values
 * do not change; what goes is a dispatch (scalar code) or a pass over a
 * block register (loops).  Each name is also a row of NB_MOP_LIST, of arity
 * 3 (checked in kernels.c); the combining pass (passes.c) reads this list. */
#define NB_FUSED_MOP_LIST(X)                                                                                 \
    X(MULADD, MUL, ADD) /* a·b + c */                                                                        \
    X(MULSUB, MUL, SUB) /* a·b − c */                                                                        \
    X(MULMUL, MUL, MUL) /* (a·b)·c */                                                                        \
    X(MULDIV, MUL, DIV) /* (a·b)/c */                                                                        \
    X(ADDMUL, ADD, MUL) /* (a + b)·c */                                                                      \
    X(SUBMUL, SUB, MUL) /* (a − b)·c */                                                                      \
    X(ADDADD, ADD, ADD) /* (a + b) + c */
/* the most operands of a micro-operation */
#define NB_MOP_SRCS 3

typedef enum {
#define NB_X(name, ar) NB_M_##name,
    NB_MOP_LIST(NB_X)
#undef NB_X
        NB_M_COUNT
} nb_mop_code;

typedef struct {
    uint16_t op;  /* nb_mop_code */
    uint32_t acc; /* NB_M_RSUM: accumulator slot */
    nb_arg dst;   /* NB_A_REG or NB_A_FULL (unused for RSUM) */
    nb_arg dst2;  /* NB_M_SINCOS: where the cosine goes */
    nb_arg src[NB_MOP_SRCS];
} nb_mop;

/* A micro-operation of a one-element group with its operands' addresses
 * resolved when the plan is made (straight-line code: no operand modes to
 * decode per run); operands in the caller's buffers are patched at the start
 * of each run from the fixups. */
typedef struct {
    uint16_t op;      /* nb_mop_code */
    uint16_t handler; /* NB_SOP_VARIANTS·op + Σ 2^k over the operands k that are the previous sop's result */
    uint32_t acc;     /* NB_M_RSUM: accumulator slot */
    void *y, *y2;     /* results (y2: SINCOS's cosine) */
    const void *src[NB_MOP_SRCS];
} nb_sop;
/* handlers per micro-operation: one per subset of operands read from the
 * previous result */
#define NB_SOP_VARIANTS (1 << NB_MOP_SRCS)
/* the places of a sop a fixup patches: src[0..2], y, y2 */
enum { NB_SOP_Y = NB_MOP_SRCS, NB_SOP_Y2, NB_SOP_PLACES };
typedef struct {
    uint32_t k, which; /* sop k's place (NB_SOP_*: an operand index, y or y2) */
    nb_arg arg;
} nb_sop_fixup;

typedef struct {
    int64_t rows, cols; /* iteration space */
    int64_t blen;       /* block length: min(NB_BLOCK, cols or rows*cols) */
    int rowwise;        /* walk row by row (row/column broadcasts present) */
    uint32_t nmops, nregs, nred;
    nb_mop *mops;
    nb_arg *red_dst; /* nred destinations (NB_A_FULL, one element) */
    nb_sop *sops;    /* one-element groups: nmops resolved operations and a sentinel (else NULL) */
    nb_sop_fixup *fixups;
    uint32_t nfixups;
} nb_group;

/* Kernel instructions, X(NAME, printed name):
 *   GROUP       a fused element-wise group
 *   GEMM        y(m x n) = alpha op(a) op(b), a/b row-major, lda/ldb
 *   GEMV        y = alpha op(a) b, a is m x n row-major (op by ta)
 *   COLSUM      y(n) = alpha Σ_i a(i, :), a m x n
 *   ROWSUM      y(m) = alpha Σ_j a(:, j), a m x n
 *   TRANSPOSE   y (n x m) = aᵀ, a m x n
 *   STRIDED     y[i] = a[i * stride], i < m
 *   GATHER      y[i] = *list[i], i < nlist
 *   DENSE_DIAG  y (m x m) = diag(a[i * stride]) (stride 0: scalar)
 *   SOFTMAX     y = row-wise softmax of a (m x n)
 *   LOGSOFTMAX  y = row-wise log softmax of a
 *   XENT        y (scalar) = mean_i −Σ_j b_ij log softmax(a_i)_j
 *   MATFN       y = a matrix function fn (linalg.h NB_LA_*) of a (m x n) and b (n x k), one thread */
#define NB_INSTR_LIST(X)                                                                                     \
    X(GROUP, group)                                                                                          \
    X(GEMM, gemm)                                                                                            \
    X(GEMV, gemv)                                                                                            \
    X(COLSUM, colsum)                                                                                        \
    X(ROWSUM, rowsum)                                                                                        \
    X(TRANSPOSE, transpose)                                                                                  \
    X(STRIDED, strided)                                                                                      \
    X(GATHER, gather)                                                                                        \
    X(DENSE_DIAG, dense_diag)                                                                                \
    X(SOFTMAX, softmax)                                                                                      \
    X(LOGSOFTMAX, logsoftmax)                                                                                \
    X(XENT, xent)                                                                                            \
    X(MATFN, matfn)

typedef enum {
#define NB_X(name, printed) NB_I_##name,
    NB_INSTR_LIST(NB_X)
#undef NB_X
        NB_I_COUNT
} nb_instr_kind;

typedef struct {
    int kind;   /* nb_instr_kind */
    int nt;     /* threads this instruction uses (planned) */
    int ta, tb; /* transposes (GEMM, GEMV) */
    int fn;     /* MATFN: which function (linalg.h NB_LA_*) */
    int64_t m, n, k, lda, ldb, stride;
    double alpha;
    int has_alpha; /* alpha is multiplied by the value at alpha_arg */
    nb_arg alpha_arg;
    nb_arg y, a, b;
    nb_group *g;
    nb_arg *list;
    size_t nlist;
} nb_instr;

/* Per-thread scratch needs of one instruction (registers + packing). */
size_t nb_instr_scratch(const nb_instr *in, size_t real_size);
/* Accumulator slots (doubles) an instruction needs per thread. */
size_t nb_instr_accs(const nb_instr *in);

/* Runs thread tid's share (of nt) of an instruction.  bases: the base-pointer
 * table; scratch: this thread's scratch (real_size-aligned), acc its
 * accumulators. */
typedef void (*nb_exec_fn)(const nb_instr *in, void *const *bases, void *scratch, double *acc, int tid,
                           int nt);
/* After all threads ran: combines per-thread accumulators (acc[t] for t < nt)
 * into the instruction's results. */
typedef void (*nb_finish_fn)(const nb_instr *in, void *const *bases, double *const *acc, int nt);
/* Checks n values for NaN/Inf; returns the index of the first, or -1. */
typedef int64_t (*nb_find_nonfinite_fn)(const void *p, int64_t n);
/* Resolves the addresses of a one-element group's sops (regs: thread 0's
 * scratch), once the workspace is allocated. */
typedef void (*nb_prepare_fn)(nb_group *g, void *const *bases, void *regs);
/* Stores a double into element off of base. */
typedef void (*nb_store_fn)(void *base, int64_t off, double v);

/* Rows r0..r1 of an instruction inside a row-tiled region (see tile.c). */
typedef void (*nb_exec_rows_fn)(const nb_instr *in, void *const *bases, void *scratch, double *acc,
                                int64_t r0, int64_t r1, int first, void *red);
/* y[i] += x[i], i < n */
typedef void (*nb_accumulate_fn)(void *y, const void *x, int64_t n);

typedef struct {
    size_t real_size;
    nb_exec_fn exec;
    nb_finish_fn finish;
    nb_find_nonfinite_fn find_nonfinite;
    nb_store_fn store;
    nb_exec_rows_fn exec_rows;
    nb_accumulate_fn accumulate;
    nb_prepare_fn prepare_scalar;
} nb_kernels;

extern const nb_kernels nb_kernels_f64;
extern const nb_kernels nb_kernels_f32;

/* Micro-operation and instruction names (for diagnostics). */
extern const char *const nb_mop_names[NB_M_COUNT];
extern const char *const nb_instr_names[NB_I_COUNT];
extern const int nb_mop_arity[NB_M_COUNT];

#endif
