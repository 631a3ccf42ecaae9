/* nabla — matrix calculus and automatic differentiation in C.
 *
 * One intermediate representation serves everything: a typed, hash-consed
 * expression DAG owned by a context.  Build expressions with the nb_* builders
 * (or nb_parse), differentiate them (the derivative is again an expression),
 * print them, evaluate them, or compile them into a fast program.
 *
 * Conventions (Parr & Howard): vectors are columns; the gradient of a scalar
 * function is a row; the Jacobian of y in R^m w.r.t. x in R^n is m x n
 * (numerator layout).  Denominator layout is the transpose.
 *
 * Errors: every builder returns NULL on error and leaves a message in
 * nb_error(ctx); passing NULL into a builder propagates the NULL (and the
 * message of the builder that failed), so a chain of calls needs one check at
 * the end.  Nothing aborts on bad input: every function checks its arguments
 * — a NULL context, expression, string or output pointer, an expression that
 * belongs to another context (detected by address, without reading it),
 * sizes whose entry count overflows, enum values out of range — and reports
 * through nb_error (nb_error(NULL) is a message too).  What cannot be
 * checked: a pointer to a freed context or program, a buffer shorter than
 * its stated size.
 *
 * Restrictions (threads):
 *  - nb_ctx: not thread-safe.  A context and everything built in it
 *    (expressions, values, dimension bindings, its error message) belong to
 *    one thread at a time: every call that takes the context, or an
 *    expression of it, must be serialised by the caller.  Distinct contexts
 *    share nothing and may be used concurrently from different threads.
 *  - nb_expr: immutable once built and owned by its context until
 *    nb_ctx_free; reading it (nb_type_of) from several threads is safe only
 *    while no thread calls into the context.  Builders hash-cons, so building
 *    is a write to the context even when the result already exists.
 *  - nb_program: independent of its context once compiled (the context may be
 *    freed).  Calls on one program must not overlap (runs write its
 *    workspace and its error message); distinct programs may run
 *    concurrently.  nb_program_set_threads uses threads inside one run.
 *  - The library has no global mutable state; strings returned by nb_error
 *    and nb_program_error stay valid until the next call on that object. */
#ifndef NABLA_H
#define NABLA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NABLA_VERSION "0.1.0"

typedef struct nb_ctx nb_ctx;
typedef struct nb_node nb_expr;

/* Shape kinds: scalar, column vector (n x 1), row vector (1 x n), matrix. */
typedef enum { NB_SCALAR, NB_VECTOR, NB_ROW, NB_MATRIX } nb_kind;
/* A dimension: > 0 a number, < 0 a symbol (-(id + 1)), see nb_dim_symbol. */
typedef int64_t nb_dim;
typedef struct {
    nb_kind kind;
    nb_dim rows, cols; /* scalar 1x1, vector n x 1, row 1 x n, matrix m x n */
} nb_type;

typedef enum { NB_NUMERATOR, NB_DENOMINATOR } nb_layout;
typedef enum { NB_FMT_UNICODE, NB_FMT_ASCII, NB_FMT_LATEX } nb_format;

/* ---- context ---------------------------------------------------------- */
nb_ctx *nb_ctx_new(void);
void nb_ctx_free(nb_ctx *ctx); /* frees every expression built in ctx */
const char *nb_error(const nb_ctx *ctx); /* last error message, "" if none */
int nb_error_column(const nb_ctx *ctx); /* 0-based byte offset of a parse error in the source, -1 if none */
void nb_clear_error(nb_ctx *ctx);

/* ---- types and declarations -------------------------------------------- */
nb_dim nb_dim_symbol(nb_ctx *ctx, const char *name); /* interned dimension symbol */
nb_type nb_scalar_type(void);
nb_type nb_vector_type(nb_dim n);
nb_type nb_matrix_type(nb_dim rows, nb_dim cols);
nb_type nb_type_of(const nb_expr *e);
/* Writes "scalar", "vector(n)", "row(n)", "matrix(N, n)" into buf. */
const char *nb_type_str(const nb_ctx *ctx, nb_type t, char *buf, size_t size);
/* Parses declarations such as "w, x: vector(n); X: matrix(N, n); b: scalar". */
int nb_declare(nb_ctx *ctx, const char *decls);

/* ---- building expressions ---------------------------------------------- */
nb_expr *nb_var(nb_ctx *ctx, const char *name, nb_type t); /* declared variable */
nb_expr *nb_lookup(nb_ctx *ctx, const char *name);         /* NULL if undeclared */
/* The variables e uses, in creation order (e NULL: every variable declared in
 * ctx).  Writes the first cap of them to vars (vars may be NULL to count);
 * returns how many there are. */
size_t nb_variables(nb_ctx *ctx, const nb_expr *e, nb_expr **vars, size_t cap);
/* A variable's name; NULL when e is not a variable. */
const char *nb_var_name(const nb_expr *e);
nb_expr *nb_num(nb_ctx *ctx, double v);
nb_expr *nb_rational(nb_ctx *ctx, int64_t num, int64_t den); /* exact num/den */
nb_expr *nb_dimval(nb_ctx *ctx, nb_dim d); /* a dimension used as a scalar value */
nb_expr *nb_add(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* a + b, scalar expansion */
nb_expr *nb_sub(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* a - b */
nb_expr *nb_neg(nb_ctx *ctx, nb_expr *a);             /* -a */
nb_expr *nb_mul(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* a ⊙ b (scalar product if scalars) */
nb_expr *nb_div(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* a ⊘ b */
nb_expr *nb_pow(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* a .^ b */
nb_expr *nb_matmul(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* linear-algebra product a·b */
nb_expr *nb_transpose(nb_ctx *ctx, nb_expr *a);         /* aᵀ */
nb_expr *nb_sum(nb_ctx *ctx, nb_expr *a);  /* Σᵢ aᵢ (all entries) */
nb_expr *nb_mean(nb_ctx *ctx, nb_expr *a); /* sum(a) / (number of entries) */
nb_expr *nb_dot(nb_ctx *ctx, nb_expr *a, nb_expr *b); /* aᵀb for vectors a, b */
nb_expr *nb_norm2(nb_ctx *ctx, nb_expr *a); /* ‖a‖ (vector 2-norm; Frobenius ‖A‖_F of a matrix) */
nb_expr *nb_norm1(nb_ctx *ctx, nb_expr *a); /* ‖a‖₁ = Σ|aᵢ| */
/* Matrix functions of a square X (src/matfn.c): tr X, det X, log det X (det X > 0), X⁻¹,
 * solve(A, B) = A⁻¹·B (without forming A⁻¹), X^k (integer k; X·X·…). */
nb_expr *nb_trace(nb_ctx *ctx, nb_expr *X);
nb_expr *nb_det(nb_ctx *ctx, nb_expr *X);
nb_expr *nb_logdet(nb_ctx *ctx, nb_expr *X);
nb_expr *nb_inv(nb_ctx *ctx, nb_expr *X);
nb_expr *nb_solve(nb_ctx *ctx, nb_expr *A, nb_expr *B);
nb_expr *nb_matpow(nb_ctx *ctx, nb_expr *X, int64_t k);
/* A ⊗ B (mp x nq for A m x n, B p x q) and vec(X), X's columns stacked (mn x 1). */
nb_expr *nb_kron(nb_ctx *ctx, nb_expr *A, nb_expr *B);
nb_expr *nb_vec(nb_ctx *ctx, nb_expr *X);
/* The commutation matrix K (mn x mn), vec(Xᵀ) = K·vec(X) for an m x n X; m and n
 * are sizes: integer constants or dimensions as values (nb_dimval). */
nb_expr *nb_commutation(nb_ctx *ctx, nb_expr *m, nb_expr *n);
/* Stable losses: log Σ exp(aᵢ); log(1 + eˣ) and log σ(x) entry by entry;
 * bce(z, y) = −Σ y ⊙ log σ(z) + (1 − y) ⊙ log(1 − σ(z)) of logits z, labels y. */
nb_expr *nb_logsumexp(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_softplus(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_logsigmoid(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_bce(nb_ctx *ctx, nb_expr *z, nb_expr *y);
nb_expr *nb_diag(nb_ctx *ctx, nb_expr *v);  /* diagonal matrix with v on its diagonal */
nb_expr *nb_identity(nb_ctx *ctx, nb_dim n); /* I (n x n) */
nb_expr *nb_exp(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_log(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_sin(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_cos(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_tan(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_tanh(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_sqrt(nb_ctx *ctx, nb_expr *a);    /* a .^ (1/2) */
nb_expr *nb_abs(nb_ctx *ctx, nb_expr *a);
nb_expr *nb_sign(nb_ctx *ctx, nb_expr *a);    /* −1, 0 or 1 */
nb_expr *nb_sigmoid(nb_ctx *ctx, nb_expr *a); /* 1 ⊘ (1 + exp(-a)) */
nb_expr *nb_relu(nb_ctx *ctx, nb_expr *a);    /* max(0, a) */
nb_expr *nb_max(nb_ctx *ctx, nb_expr *a, nb_expr *b);
nb_expr *nb_min(nb_ctx *ctx, nb_expr *a, nb_expr *b);
/* Indicators 1[a > b] etc., element-wise 0/1.  op is one of ">", ">=", "<", "<=". */
nb_expr *nb_compare(nb_ctx *ctx, const char *op, nb_expr *a, nb_expr *b);
nb_expr *nb_vector_lit(nb_ctx *ctx, size_t n, nb_expr *const *elems); /* [a, b, …] */
nb_expr *nb_matrix_lit(nb_ctx *ctx, size_t rows, size_t cols, nb_expr *const *elems);
/* mean over rows i of −Σⱼ Yᵢⱼ·log softmax(Zᵢ)ⱼ (numerically stable, fused). */
nb_expr *nb_softmax_xent(nb_ctx *ctx, nb_expr *Z, nb_expr *Y);
nb_expr *nb_softmax(nb_ctx *ctx, nb_expr *Z);    /* row-wise softmax */
nb_expr *nb_logsoftmax(nb_ctx *ctx, nb_expr *Z); /* row-wise log softmax */

/* Parses the expression language ("u = X*w + b; sum(u.^2)/N").  On error
 * returns NULL; nb_error_column gives the byte offset in src. */
nb_expr *nb_parse(nb_ctx *ctx, const char *src);

/* ---- differentiation --------------------------------------------------- */
/* ∂f/∂wrt as an expression.  f scalar or vector; wrt one variable (scalar,
 * vector, or — for scalar f — matrix), or nwrt > 1 scalar variables (one column
 * each).  Structure (0, I, diag, 1, 1ᵀ) is kept. */
nb_expr *nb_derivative(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout);
/* One derivative per variable of a list of any types (W1, b1, W2, b2), from
 * one reverse pass: out[k] = ∂f/∂wrt[k] as nb_derivative gives it for that
 * variable alone.  Returns 0, or -1 with nb_error set. */
int nb_derivatives(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout, nb_expr **out);
/* Gradient of scalar f w.r.t. v, shaped like v: ∇ᵥf. */
nb_expr *nb_gradient(nb_ctx *ctx, nb_expr *f, nb_expr *v);
/* Jacobian-vector product J·t by forward mode: tangents pushed from v (t
 * shaped like v) through f without forming J, at a small multiple of f's
 * cost; the result is shaped like f (for a matrix v, Σ J ⊙ t entrywise).
 * Vector-Jacobian product uᵀJ (u shaped like f; one reverse pass; a row for
 * vector v, v's shape for a matrix v). */
nb_expr *nb_jvp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *t);
nb_expr *nb_vjp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *u);
/* Hessian-vector product ∇²f·t of scalar f (t shaped like v; the result too):
 * the forward-mode derivative of the gradient along t (forward over reverse),
 * without forming the Hessian. */
nb_expr *nb_hvp(nb_ctx *ctx, nb_expr *f, nb_expr *v, nb_expr *t);
/* The Hessian ∂²f/∂v² of scalar f w.r.t. a scalar or vector v: the Jacobian
 * of the gradient ∇ᵥf (n x n, symmetric), with its structure kept:
 * x'*A*x gives A + Aᵀ, sum(exp(x)) gives diag(exp(x)). */
nb_expr *nb_hessian(nb_ctx *ctx, nb_expr *f, nb_expr *v);

/* The derivative as the chain rule gives it: each factor as its operator's
 * rule built it, nothing simplified (0·x, I·G and Gᵀᵀ stay).  Same arguments
 * and type as nb_derivative; nb_simplify turns it into nb_derivative's form. */
nb_expr *nb_derivative_raw(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout);
/* Rebuilds e through the canonicalising rewrites (1ᵀ·diag(v) = vᵀ, x + x =
 * 2x, …), bottom-up, once per node: linear in the size of e. */
nb_expr *nb_simplify(nb_ctx *ctx, nb_expr *e);
/* A hook called for every named rewrite that fires: rule is its name
 * ("1ᵀ·x = sum(x)"), at the raw node nb_simplify was rebuilding (NULL outside
 * nb_simplify), result what the rewrite produced.  fn NULL turns it off. */
typedef void (*nb_rewrite_log)(void *user, const char *rule, const nb_expr *at, const nb_expr *result);
void nb_set_rewrite_log(nb_ctx *ctx, nb_rewrite_log fn, void *user);

/* ---- derivations (src/steps.c) ------------------------------------------ */
/* The definitions (name = expression) the last nb_parse in ctx read, in
 * source order: writes the first cap names and values (either may be NULL to
 * count) and returns how many there are. */
size_t nb_definitions(const nb_ctx *ctx, const char **names, nb_expr **values, size_t cap);
/* nb_parse, with the definitions named in keep[0..nkeep) made variables of
 * their value's type (u = x^3; sin(u) reads as sin(u) for a variable u), so
 * that the derivative with respect to u is ∂f/∂u. */
nb_expr *nb_parse_keeping(nb_ctx *ctx, const char *src, size_t nkeep, const char *const *keep);
/* The derivation of ∂f/∂wrt as the paper teaches it: intermediate variables
 * (the definitions of the last nb_parse, else u1, u2, … — v1, … when the
 * user has a u; either is declared
 * in ctx as a variable, so the source cannot be parsed again in ctx), each partial derivative with its shape and structure, the chain
 * rule in the layout's order, the raw chain-rule product and each named
 * simplification, ending in nb_derivative's result.  format: "unicode",
 * "ascii", "latex" (an align* block) or "markdown" ($…$ math); lang: one of
 * nb_derivation_languages().  A malloc'd string, or NULL with the error set. */
char *nb_derivation(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout, const char *format,
                    const char *lang);
/* The languages of nb_derivation, comma-separated: "en, zh". */
const char *nb_derivation_languages(void);

/* ---- printing ---------------------------------------------------------- */
/* Returns a malloc'd string (free with free()); NULL on allocation failure or
 * a bad argument (nb_error says which).  A column prints [a, b], a row
 * [a, b]ᵀ (ASCII [a, b]'; LaTeX a bmatrix row).  NB_FMT_ASCII is the input
 * language: nb_parse reads it back as an expression of the same type and
 * value (ones(n), ones(n)', zeros(m, n), eye(n), sign, diagpart, indexing,
 * definitions "t1 = …; …").  Unicode and LaTeX use the paper's notation: 𝟏,
 * 𝟏ᵀ, 𝟎, I, 1[u > 0], and "… where t1 = …" for a repeated subexpression. */
char *nb_to_string(nb_ctx *ctx, const nb_expr *e, nb_format fmt);
/* The same as nb_to_string (kept for the derivative printing of earlier
 * versions, which dropped the ᵀ of a row of listed entries). */
char *nb_derivative_to_string(nb_ctx *ctx, const nb_expr *J, nb_format fmt);

/* ---- reference evaluation (f64) ----------------------------------------- */
typedef struct {
    int64_t rows, cols;
    double *data; /* row-major, rows*cols entries */
} nb_matrix;
/* Binds a variable's value (copied); binds its symbolic dimensions too. */
int nb_set_value(nb_ctx *ctx, const char *name, int64_t rows, int64_t cols, const double *data);
/* Binds a dimension symbol to a size. */
int nb_bind_dim(nb_ctx *ctx, nb_dim d, int64_t size);
void nb_unbind_all(nb_ctx *ctx);
/* Evaluates e with the bound values into out (out->data is malloc'd).
 * Returns 0, or -1 with nb_error set (unbound variable, domain error, NaN). */
int nb_eval(nb_ctx *ctx, const nb_expr *e, nb_matrix *out);
void nb_matrix_free(nb_matrix *m);

/* ---- finite-difference checking ---- */
/* Compares ∂f/∂wrt (nb_derivative, numerator layout, evaluated at the bound
 * values) with central differences of f, step h = 1e-6·max(1, |x|)·∛F per
 * entry of each wrt variable, where F = max(1, max |f|) at the point;
 * *max_rel_err = max over entries of max(0, |a − b| − r) / max(1, |a|, |b|),
 * where r = 4ε·max(|f(x+h)|, |f(x−h)|)/(2h) bounds the rounding noise of the
 * difference quotient (so a large |f|, as in 1e10 + x, is no false alarm).
 * Returns 0, or -1 with nb_error set. */
int nb_check(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, double *max_rel_err);
/* A random test point: every variable e uses that has no value gets entries
 * uniform in [lo, hi]; unbound dimension symbols e uses first get a size in
 * 2..5.  *rng is the generator's state (seed it with anything); it advances.
 * Returns 0, or -1 with nb_error set. */
int nb_randomize(nb_ctx *ctx, const nb_expr *e, uint64_t *rng, double lo, double hi);

/* ---- compiled programs ---- */
/* A program computes outputs = F(inputs) on caller-owned row-major buffers,
 * in f64 or f32.  Compile a function together with its derivatives
 * (nb_gradient, nb_derivative) so that they share work.  Sizes are planned
 * when the dimensions are bound; a run then performs no allocation.  A
 * program is independent of its context once compiled.  Calls on one program
 * must not overlap; distinct programs may run concurrently. */
/* A product by a Kronecker product or the commutation matrix is computed on
 * the factors, without forming the mn x pq matrix: (P ⊗ Q)·vec(V) =
 * vec(Q·V·Pᵀ) (two products), uᵀ·(P ⊗ Q) = ((Pᵀ ⊗ Qᵀ)·u)ᵀ, K·vec(X) =
 * vec(Xᵀ) (a transpose); identity factors are skipped.  (P ⊗ Q)·M for a
 * matrix M of k columns is two products and two transposes on the factors;
 * M·(P ⊗ Q) and K·M for a matrix M form the product densely.  Dimensions that
 * are products (n·n, of vec and kron) follow their factors when these are
 * bound (nb_program_bind_dim); they are not bound themselves. */
typedef struct nb_program nb_program;
typedef enum { NB_F64, NB_F32 } nb_dtype;
/* How an output buffer holds its value (the shape is always rows x cols). */
typedef enum {
    NB_STRUCT_DENSE,           /* rows·cols entries, row-major */
    NB_STRUCT_DIAGONAL,        /* diag(d) (n x n): the n diagonal entries d */
    NB_STRUCT_SCALED_IDENTITY, /* c·I (n x n): one entry c */
    NB_STRUCT_UNIFORM          /* every entry equal: one entry */
} nb_structure;
/* nb_compile flags */
#define NB_COMPILE_DENSE 1u        /* every output dense: no structured outputs, and Kronecker
                                    * products formed densely (see below) */
#define NB_COMPILE_CHECK_FINITE 2u /* runs reject NaN/Inf inputs (see nb_program_check_finite) */
#define NB_COMPILE_NO_COMBINE 4u   /* one micro-operation per element-wise operation as lowered: no
                                    * sin/cos pairs, no fused pairs (the same values; for comparison) */
#define NB_COMPILE_NATIVE 8u       /* a pass over the rows of X that computes X·w, arithmetic on the
                                    * rows and Xᵀ·g (a cost and its gradient) runs as C generated for
                                    * the bound sizes, compiled by the system's C compiler (NABLA_CC,
                                    * default cc) and loaded with dlopen when the sizes are bound.
                                    * Where that fails, or the rows call libm, the program runs as
                                    * without the flag (nb_program_describe says why). */
/* Status codes of program calls; the message is nb_program_error(p). */
typedef enum {
    NB_OK = 0,
    NB_ERR_ARG = -1,       /* bad argument: NULL buffer, index out of range, size <= 0 */
    NB_ERR_SIZE = -2,      /* a buffer has the wrong number of entries */
    NB_ERR_UNBOUND = -3,   /* a dimension symbol has no size yet */
    NB_ERR_NONFINITE = -4, /* an input holds NaN or Inf (checking on) */
    NB_ERR_NOMEM = -5,     /* out of memory (binding sizes) */
    NB_ERR_THREAD = -6     /* threads could not be started */
} nb_status;

/* outputs[0..nout) as functions of the variables inputs[0..nin), evaluated in
 * dtype.  Every variable the outputs use must be an input.  Sizes bound in ctx
 * (nb_bind_dim, nb_set_value) are the initial sizes.  NULL on error, with the
 * message in nb_error(ctx). */
nb_program *nb_compile(nb_ctx *ctx, size_t nout, nb_expr *const *outputs, size_t nin, nb_expr *const *inputs,
                       nb_dtype dtype, unsigned flags);
void nb_program_free(nb_program *p);
const char *nb_program_error(const nb_program *p); /* message of the last failed call, "" if none */
nb_dtype nb_program_dtype(const nb_program *p);
size_t nb_program_num_inputs(const nb_program *p);
size_t nb_program_num_outputs(const nb_program *p);
const char *nb_program_input_name(const nb_program *p, size_t i);
/* Dimension symbols the program uses: count, name of k, size of k (0: unbound). */
size_t nb_program_num_dims(const nb_program *p);
const char *nb_program_dim_name(const nb_program *p, size_t k);
int64_t nb_program_dim_value(const nb_program *p, size_t k);
/* Binds the symbol `name` to size > 0 (a symbol the program does not use is an
 * error); when every symbol is bound, plans and allocates the workspace. */
int nb_program_bind_dim(nb_program *p, const char *name, int64_t size);
/* Binds the symbols in input i's type from its actual size rows x cols. */
int nb_program_bind_input(nb_program *p, size_t i, int64_t rows, int64_t cols);
/* Shape rows x cols of input i / output i (NB_ERR_UNBOUND while a symbol is unbound). */
int nb_program_input_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols);
int nb_program_output_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols);
/* The structure of output i: how many entries its buffer holds and what they mean. */
nb_structure nb_program_output_structure(const nb_program *p, size_t i);
/* Entries of input i's / output i's buffer (rows·cols when dense, n for a
 * diagonal, 1 for c·I or uniform); 0 while a symbol is unbound. */
int64_t nb_program_input_size(const nb_program *p, size_t i);
int64_t nb_program_output_size(const nb_program *p, size_t i);
/* Threads per run (1..64; default 1): large element-wise loops, products and
 * reductions are split; results equal the 1-thread results up to rounding.
 * With OpenBLAS, nabla runs each BLAS call on one OpenBLAS thread. */
int nb_program_set_threads(nb_program *p, int nthreads);
/* NaN/Inf checking of inputs on every run (on != 0) or off. */
void nb_program_check_finite(nb_program *p, int on);
/* outputs = F(inputs).  inputs[i] / outputs[i] hold nb_program_input_size /
 * nb_program_output_size entries of the dtype (double or float), row-major;
 * outputs must not overlap inputs.  Returns NB_OK or an nb_status. */
int nb_program_run(nb_program *p, const void *const *inputs, void *const *outputs);
/* nb_program_run after checking each buffer's entry count (NB_ERR_SIZE). */
int nb_program_run_sized(nb_program *p, const void *const *inputs, const size_t *input_sizes,
                         void *const *outputs, const size_t *output_sizes);
/* Expands output i's structured buffer src into the dense rows x cols dst. */
int nb_program_expand_output(nb_program *p, size_t i, const void *src, void *dst);
/* What the compiler produced (for diagnostics and tests). */
typedef struct {
    size_t instructions; /* executed per run */
    size_t groups;       /* fused element-wise loops among them */
    size_t fused_ops;    /* element-wise operations inside those loops */
    size_t products;     /* matrix products (gemm/gemv) */
    size_t init_instructions; /* input-independent work done once when sizes are bound */
    size_t workspace_bytes;   /* 0 until planned */
} nb_program_stats;
void nb_program_get_stats(const nb_program *p, nb_program_stats *stats);
/* The instruction listing (malloc'd; free with free()), for diagnostics. */
char *nb_program_describe(const nb_program *p);

#ifdef __cplusplus
}
#endif
#endif
