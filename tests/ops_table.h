/* The operator registry (src/ops.def) as the random-expression generators
 * see it: every operator with a builder, its class and its flags, so that a
 * new row of ops.def is generated, differentiated and compiled by the
 * property tests without a line here.  Include after nabla.h; needs the
 * internal header for the class and flag names. */
#ifndef NB_TESTS_OPS_TABLE_H
#define NB_TESTS_OPS_TABLE_H
#include "nb_internal.h"

typedef struct {
    const char *id;    /* "EXP" */
    const char *ascii; /* the parse/ASCII spelling: "exp", ">=" */
    int arity;
    nb_opclass cls;
    unsigned flags;
    nb_builder1 unary; /* the public builder, or NULL */
    nb_builder2 binary;
} test_op;

static const test_op test_ops[NB_OP_COUNT] = {
#define OP(id, arity, cls, flags, builder, parse, unicode, ascii, latex) \
    {#id, ascii, arity, cls, flags, NB_BUILDER1(builder), NB_BUILDER2(builder)},
#include "ops.def"
#undef OP
};

/* Can a generator build op on operands of its choosing?  Element-wise
 * functions through their builder; comparisons through nb_compare. */
static inline bool test_op_generated(int op, nb_opclass cls) {
    const test_op *t = &test_ops[op];
    if (t->cls != cls) return false;
    return t->unary || t->binary || (t->flags & NB_F_INDICATOR);
}

/* The k-th (mod count) generated operator of class cls; -1 if there is none. */
static inline int test_op_pick(nb_opclass cls, uint64_t k) {
    int count = 0;
    for (int op = 0; op < NB_OP_COUNT; op++) count += test_op_generated(op, cls);
    if (count == 0) return -1;
    k %= (uint64_t)count;
    for (int op = 0; op < NB_OP_COUNT; op++)
        if (test_op_generated(op, cls) && k-- == 0) return op;
    return -1;
}

/* op applied to its operands (NULL b for a unary operator). */
static inline nb_expr *test_op_apply(nb_ctx *ctx, int op, nb_expr *a, nb_expr *b) {
    const test_op *t = &test_ops[op];
    if (t->unary) return t->unary(ctx, a);
    if (t->binary) return t->binary(ctx, a, b);
    return nb_compare(ctx, t->ascii, a, b);
}
#endif
