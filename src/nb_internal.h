/* Internal representation shared by the passes.  See docs/design.md. */
#ifndef NB_INTERNAL_H
#define NB_INTERNAL_H

#include "nabla.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The sanitizer build aborts when a rewrite breaks the type invariant (ops.c);
 * other builds report it as an error. */
#if defined(__SANITIZE_ADDRESS__)
#define NB_ASSERT_TYPES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NB_ASSERT_TYPES 1
#endif
#endif

typedef enum {
#define OP(id, ...) NB_OP_##id,
#include "ops.def"
#undef OP
    NB_OP_COUNT
} nb_op;

/* Operator classes and flags (the columns of ops.def). */
typedef enum {
    NB_CLASS_LEAF,
    NB_CLASS_EW_UNARY,
    NB_CLASS_EW_BINARY,
    NB_CLASS_EW_NARY,
    NB_CLASS_LINEAR,
    NB_CLASS_BILINEAR,
    NB_CLASS_ROWWISE,
    NB_CLASS_MATRIX_FN
} nb_opclass;
enum { NB_F_ZERO_AT_ZERO = 1u, NB_F_NONSMOOTH = 2u, NB_F_INDICATOR = 4u, NB_F_POSITIVE_ARG = 8u, NB_F_SMALL_ARG = 16u };

/* ops.def's builder column as the parser's unary / binary function pointers
 * (0 where the operator has no call syntax), and its arity. */
typedef nb_expr *(*nb_builder1)(nb_ctx *, nb_expr *);
typedef nb_expr *(*nb_builder2)(nb_ctx *, nb_expr *, nb_expr *);
#define NB_BUILDER1(f) _Generic((f), nb_builder1: (f), default: (nb_builder1)0)
#define NB_BUILDER2(f) _Generic((f), nb_builder2: (f), default: (nb_builder2)0)
#define NB_BUILDER_ARITY(f) _Generic((f), nb_builder1: 1, nb_builder2: 2, default: 0)

/* A constant: exact rational num/den when exact, else the double val.  The
 * 128-bit integers keep integer arithmetic exact well past int64 (2^63 − 1
 * is exact, so (−1)^(2^63 − 1) is −1), up to |num|, |den| < 2^125. */
__extension__ typedef __int128 nb_int;
typedef struct {
    bool exact;
    nb_int num, den; /* den > 0, gcd(num, den) == 1 when exact */
    double val;      /* always set: num/den rounded when exact */
} nb_number;

struct nb_node {
    uint32_t id;    /* creation index: operands always have smaller ids */
    uint16_t op;    /* nb_op */
    uint16_t nargs;
    nb_type type;
    uint64_t hash;
    union {
        nb_number c;    /* CONST */
        const char *name; /* VAR (interned in the context) */
        nb_dim dim;     /* DIMVAL, IDENTITY */
        int64_t index[2]; /* COLUMN: index[0] = k; ENTRY: (i, j); 0-based */
    } a;
    struct nb_node *hash_next;
    struct nb_node *args[]; /* nargs operands */
};
typedef struct nb_node nb_node;

typedef struct nb_arena_block nb_arena_block;
typedef struct {
    nb_arena_block *head;
} nb_arena;
void *nb_arena_alloc(nb_arena *a, size_t size);
void nb_arena_free(nb_arena *a);
bool nb_arena_owns(const nb_arena *a, const void *p);

typedef struct {
    char *name;
    int64_t bound; /* 0 when unbound */
} nb_dimsym;

typedef struct {
    nb_node *var;
    nb_matrix value; /* data NULL when unbound */
} nb_binding;

/* Memo of structural rewrites that recurse (transpose, column, entry), so a
 * rewrite of a shared DAG costs one visit per node, not one per path. */
typedef struct {
    const nb_node *arg; /* NULL: empty slot */
    int kind;
    int64_t i, j;
    nb_node *result;
} nb_memo_slot;
enum { NB_MEMO_TRANSPOSE, NB_MEMO_COLUMN, NB_MEMO_ENTRY };

struct nb_ctx {
    nb_arena arena;
    nb_memo_slot *memo;
    size_t memo_cap, memo_count;
    nb_node **buckets;
    size_t nbuckets;
    nb_node **nodes; /* by id: a topological order */
    size_t nnodes, cap_nodes;
    nb_dimsym *dims;
    size_t ndims, cap_dims;
    nb_binding *vars; /* declared variables and their values */
    size_t nvars, cap_vars;
    unsigned rewrite_depth; /* nesting of recursive rewrites (ops.c) */
    char error[1024];
    int error_column;
    bool oom;
    bool raw; /* constructors only type-check and hash-cons (nb_derivative_raw) */
    nb_rewrite_log rewrite_log; /* the simplifier's log hook (nb_set_rewrite_log) */
    void *rewrite_log_user;
    const nb_node *rewriting; /* the raw node nb_simplify is rebuilding, or NULL */
    nb_node *const *rewriting_args; /* its operands as nb_simplify rebuilt them */
    struct nb_definition *definitions, **definitions_end; /* of the last nb_parse (steps.c) */
};

/* ---- context, errors, dims (expr.c) ---- */
int nb_set_error(nb_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A dimension's name: a symbol's own string in ctx (whole, however long;
 * valid while ctx lives), else a number or "?" written into buf. */
const char *nb_dim_name(const nb_ctx *ctx, nb_dim d, char *buf, size_t size);
int64_t nb_dim_value(const nb_ctx *ctx, nb_dim d); /* 0 if unbound */
/* Product dimensions m·n (the length of vec(X), the sizes of A ⊗ B; kron.c):
 * a number when both are, else the symbol "m·n", whose value is the product. */
nb_dim nb_dim_mul(nb_ctx *ctx, nb_dim a, nb_dim b);
/* Whether a dimension's name is a product "m·n·…". */
bool nb_dim_is_product(const char *name);
/* Calls fn(arg, factor, len) for each factor of a product's name "m·n·…"
 * (once, with the name itself, when it is no product; the factor is not
 * terminated: len bytes); stops at the first nonzero return, which it
 * returns. */
int nb_dim_each_factor(const char *name, int (*fn)(void *arg, const char *factor, size_t len), void *arg);
/* The product of a product name's factors: a number is itself, a symbol
 * value_of(table, factor, len) (0: unknown, and so is the product); sets
 * *overflow when it passes limit. */
int64_t nb_dim_factor_product(const char *name, int64_t (*value_of)(const void *table, const char *factor, size_t len),
                              const void *table, int64_t limit, bool *overflow);
/* nb_dim_symbol of the first len bytes of name. */
nb_dim nb_dim_symbol_len(nb_ctx *ctx, const char *name, size_t len);
/* The factors of a product's name (as nb_dim_each_factor): the first max of
 * them; returns how many there are (more than max: the rest were not
 * stored). */
typedef struct {
    const char *name; /* not terminated: len bytes */
    size_t len;
} nb_dim_factor;
size_t nb_dim_factors(const char *name, nb_dim_factor *factors, size_t max);
int64_t nb_dim_product_value(const nb_ctx *ctx, const char *name); /* 0: not a product or unbound */
bool nb_type_eq(nb_type a, nb_type b);
nb_type nb_row_type(nb_dim n);
/* Number of entries of a type as a dim when it is a vector/row (length). */
nb_dim nb_type_length(nb_type t);

/* The hash-consing constructor: returns the existing node if an identical one
 * exists.  attr may be NULL. No simplification happens here. */
nb_node *nb_make(nb_ctx *ctx, nb_op op, nb_type type, size_t nargs, nb_node *const *args,
                 const void *attr, size_t attr_size);

nb_node *nb_memo_get(nb_ctx *ctx, int kind, const nb_node *arg, int64_t i, int64_t j);
nb_node *nb_memo_put(nb_ctx *ctx, int kind, const nb_node *arg, int64_t i, int64_t j, nb_node *result);

/* Numbers (expr.c) */
nb_number nb_number_int(int64_t v);
nb_number nb_number_rational(int64_t num, int64_t den);
nb_number nb_number_double(double v);
nb_number nb_number_add(nb_number a, nb_number b);
nb_number nb_number_mul(nb_number a, nb_number b);
nb_number nb_number_neg(nb_number a);
nb_number nb_number_inverse(nb_number a);
/* base^e when it is an exact rational (integer e, or e = p/q and base a perfect
 * q-th power): true and *out; false otherwise. */
bool nb_number_power(nb_number base, nb_number e, nb_number *out);
bool nb_number_is(nb_number a, int64_t v);
bool nb_number_is_int(nb_number a);

/* Constants of any type (a non-scalar constant is filled with the number). */
nb_node *nb_const(nb_ctx *ctx, nb_number c, nb_type t);
nb_node *nb_zero(nb_ctx *ctx, nb_type t);
nb_node *nb_ones(nb_ctx *ctx, nb_type t);
bool nb_is_const(const nb_node *e, int64_t v); /* CONST equal to v (any shape) */
bool nb_is_zero(const nb_node *e);

/* ---- the operator table (ops.c) ----
 * Derivative rules are pure: they build expressions and return them; the
 * driver (diff.c) alone accumulates and orders contributions. */
/* Element-wise partial ∂y/∂argᵢ as an expression shaped like y or scalar. */
typedef nb_node *(*nb_partial_fn)(nb_ctx *ctx, nb_node *y, int i);
/* The VJP rule of a non-element-wise operator: given G = ∂f/∂y in the paper's
 * layout (see diff.c), out[i] = operand i's contribution where want[i]
 * (NULL: zero).  Returns 0 or -1 (error set). */
typedef int (*nb_vjp_fn)(nb_ctx *ctx, nb_node *y, nb_node *G, const bool *want, nb_node **out);
/* The tangent rule of a row-wise operator: ẏ from the operands' tangents
 * dx[i] (NULL: zero).  Linear, bilinear and element-wise operators need none:
 * their tangents follow from the class (diff.c). */
typedef nb_node *(*nb_tangent_fn)(nb_ctx *ctx, nb_node *y, nb_node *const *dx);
/* Reference f64 evaluation into out (rows x cols of y, bound). 0 or -1. */
typedef int (*nb_eval_fn)(nb_ctx *ctx, const nb_node *y, const nb_matrix *args, nb_matrix *out);

typedef struct {
    const char *name, *ascii, *latex; /* printed forms (ops.def) */
    int arity;                        /* -1: n-ary */
    nb_opclass cls;
    unsigned flags;
    nb_partial_fn partial; /* element-wise classes */
    nb_vjp_fn vjp;         /* other classes (NULL: not differentiable) */
    nb_tangent_fn tangent; /* row-wise class */
    nb_eval_fn eval;
    double (*scalar1)(double);         /* element-wise unary: the value of one entry */
    double (*scalar2)(double, double); /* element-wise binary (max, min, comparisons) */
} nb_opinfo;
extern const nb_opinfo nb_ops[NB_OP_COUNT];

/* The operator y->op applied to new operands (y's attributes kept), through
 * the canonicalising constructors: a tangent of a linear operator is the
 * operator applied to the operands' tangents. */
nb_node *nb_rebuild(nb_ctx *ctx, const nb_node *y, nb_node *const *args);

/* Smart constructors with canonicalisation (ops.c); n-ary forms. */
nb_node *nb_add_n(nb_ctx *ctx, size_t n, nb_node *const *terms);
nb_node *nb_mul_n(nb_ctx *ctx, size_t n, nb_node *const *factors);
nb_node *nb_unary(nb_ctx *ctx, nb_op op, nb_node *a);
nb_node *nb_binary(nb_ctx *ctx, nb_op op, nb_node *a, nb_node *b);
nb_node *nb_column(nb_ctx *ctx, nb_node *a, int64_t k);
nb_node *nb_entry(nb_ctx *ctx, nb_node *a, int64_t i, int64_t j);
nb_node *nb_diagpart(nb_ctx *ctx, nb_node *a);
nb_node *nb_scale(nb_ctx *ctx, nb_number c, nb_node *a); /* c·a */


/* ---- the simplifier (simplify.c) ---- */
/* A named rewrite fired, giving result: reports it to the log hook and
 * returns result, so a rewrite reads  return nb_rule(ctx, "x + x = 2x", r); */
nb_node *nb_rule(nb_ctx *ctx, const char *name, nb_node *result);
/* The one rule named in words rather than as an identity: numbers folded
 * (2 − 1 = 1); steps.c shows it in the reader's language. */
#define NB_RULE_CONSTANT_ARITHMETIC "constant arithmetic"

/* ---- definitions (steps.c) ---- */
/* The parser's record of `name = value` (name is len bytes), in the arena. */
typedef struct nb_definition {
    const char *name;
    nb_node *value;
    struct nb_definition *next;
} nb_definition;
void nb_forget_definitions(nb_ctx *ctx);
int nb_record_definition(nb_ctx *ctx, const char *name, size_t len, nb_node *value);

/* ---- the one traversal (graph.c) ---- */
/* The nodes reachable from roots, in id order (operands before users);
 * malloc'd, *count entries; NULL with the error set when out of memory. */
nb_node **nb_toposort(nb_ctx *ctx, size_t nroots, nb_node *const *roots, size_t *count);
/* Position of e in a nb_toposort list (binary search by id); n if absent. */
size_t nb_topo_index(nb_node *const *nodes, size_t n, const nb_node *e);
/* rank[i] = position of nodes[i] in the left-to-right depth-first walk from
 * root (nodes = nb_toposort of root).  0 or -1 (out of memory). */
int nb_preorder_ranks(nb_ctx *ctx, const nb_node *root, nb_node *const *nodes, size_t n, uint32_t *rank);

/* ---- printing (print.c) ---- */
typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} nb_strbuf;
void nb_sb_puts(nb_strbuf *sb, const char *s);
void nb_sb_printf(nb_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nb_print_number(nb_strbuf *sb, nb_number c);
/* Short description of an expression for error messages (truncated). */
const char *nb_describe(nb_ctx *ctx, const nb_node *e, char *buf, size_t size);

/* The constant pi (π) of the language: the double nearest π (parse.c, print.c). */
#define NB_PI 3.141592653589793238462643383279502884

/* ---- argument checks of the public functions (expr.c) ---- */
/* Whether e is a node of ctx (checked without dereferencing a foreign pointer). */
bool nb_owns(const nb_ctx *ctx, const nb_node *e);
/* false (with nb_error set, naming fn) when ctx is NULL, an expression is NULL
 * or belongs to another context; a NULL keeps the message already there. */
bool nb_api_exprs(nb_ctx *ctx, const char *fn, size_t n, const nb_node *const *e);
bool nb_api_array(nb_ctx *ctx, const char *fn, size_t n, nb_expr *const *e);
bool nb_api_string(nb_ctx *ctx, const char *fn, const char *s, const char *what);
bool nb_api_layout(nb_ctx *ctx, const char *fn, nb_layout layout);
/* NB_API_OK(ctx, a, b, ...): the check above for the calling function. */
#define NB_API_OK(ctx, ...)                                                                                  \
    nb_api_exprs((ctx), __func__, sizeof((const nb_node *const[]){__VA_ARGS__}) / sizeof(const nb_node *), \
                 (const nb_node *const[]){__VA_ARGS__})

#endif
