/* Lowering: the expression DAG becomes *values* with a structure -- dense,
 * dense stored transposed, uniform (one number), diagonal (its vector),
 * scaled identity (one number) -- and the low-level operations ("lops") that
 * compute their data.  Structure is kept through the operations that
 * preserve it (diag·diag, diag·A = row scaling, I·A = A, Aᵀ of a vector = the
 * same memory, Aᵀ·B = gemm with a transpose flag, 1ᵀ·A = column sums,
 * element-wise work on transposed operands stays transposed, ...); dense data
 * is materialised only on demand.  Equal lops are made once (a hash table:
 * common subexpressions the DAG's hash-consing cannot see).  Outputs stay
 * structured unless NB_COMPILE_DENSE, and are written straight into the
 * caller's buffers where possible. */
#include "engine.h"
#include "linalg.h"
#include "matfn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

int nbc_cfail(cstate *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->failed) nb_set_error(c->ctx, "compile: %s", msg);
    c->failed = 1;
    return -1;
}

int32_t nbc_new_value(cstate *c, nb_dim r, nb_dim cl, int kind) {
    nb_program *p = c->p;
    if (c->failed) return -1;
    if (grow((void **)&p->v, &c->capv, p->nv + 1, sizeof *p->v)) return nbc_cfail(c, "out of memory");
    vinfo *v = &p->v[p->nv];
    memset(v, 0, sizeof *v);
    v->rows = r;
    v->cols = cl;
    v->parent = -1;
    v->kind = (uint8_t)kind;
    v->def = -1;
    v->out = -1;
    v->index = -1;
    v->invariant = kind != VK_INPUT;
    return (int32_t)p->nv++;
}

static int32_t const_value(cstate *c, double x) {
    nb_program *p = c->p;
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].kind == VK_CONST && p->v[i].cval == x &&
            (x != 0 || !signbit(x) == !signbit(p->v[i].cval)))
            return (int32_t)i;
    int32_t v = nbc_new_value(c, 1, 1, VK_CONST);
    if (v >= 0) p->v[v].cval = x;
    return v;
}

static int32_t dim_value(cstate *c, nb_dim d1, nb_dim d2) {
    nb_program *p = c->p;
    if (d1 > 0 && d2 > 0) return const_value(c, (double)d1 * (double)d2);
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].kind == VK_DIM && p->v[i].d1 == d1 && p->v[i].d2 == d2) return (int32_t)i;
    int32_t v = nbc_new_value(c, 1, 1, VK_DIM);
    if (v >= 0) {
        p->v[v].d1 = d1;
        p->v[v].d2 = d2;
    }
    return v;
}

static int32_t alias_value(cstate *c, int32_t parent, nb_dim r, nb_dim cl, int64_t ai, int64_t aj) {
    if (parent < 0) return -1;
    nb_program *p = c->p;
    if (ai == 0 && aj == 0 && p->v[parent].rows == r && p->v[parent].cols == cl) return parent;
    int32_t v = nbc_new_value(c, r, cl, p->v[parent].kind == VK_INPUT ? VK_INPUT : VK_WORK);
    if (v < 0) return -1;
    vinfo *x = &p->v[v], *pv = &p->v[parent];
    x->parent = parent;
    x->ai = ai;
    x->aj = aj;
    x->invariant = pv->invariant;
    x->index = pv->index;
    x->kind = pv->kind == VK_INPUT ? VK_INPUT : VK_WORK;
    return v;
}

static lop *new_lop(cstate *c, int kind) {
    nb_program *p = c->p;
    if (c->failed) return NULL;
    if (grow((void **)&p->l, &c->capl, p->nl + 1, sizeof *p->l)) {
        nbc_cfail(c, "out of memory");
        return NULL;
    }
    lop *L = &p->l[p->nl++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->dst = L->dst2 = L->src[0] = L->src[1] = L->src[2] = -1;
    L->list = -1;
    L->group = -1;
    L->inst = -1;
    L->alpha = 1;
    L->alpha_vid = -1;
    return L;
}

/* Common lops (the same operation on the same values, e.g. a difference
 * computed once directly and once through its transpose, or one product
 * reached from two layouts) are made once: a hash table over their fields. */
static bool same_lop(const lop *A, const lop *B) {
    return A->kind == B->kind && A->op == B->op && A->src[0] == B->src[0] && A->src[1] == B->src[1] &&
           A->mode[0] == B->mode[0] && A->mode[1] == B->mode[1] && A->sr == B->sr && A->sc == B->sc &&
           A->ta == B->ta && A->tb == B->tb && A->skind == B->skind && A->soff == B->soff &&
           A->alpha == B->alpha && A->alpha_vid == B->alpha_vid && A->nlist == 0 && B->nlist == 0;
}

static uint64_t lop_hash(const lop *L) {
    int64_t parts[10] = {L->kind,
                         L->op,
                         L->src[0],
                         L->src[1],
                         L->sr,
                         L->sc,
                         L->ta * 2 + L->tb,
                         L->skind,
                         L->soff,
                         (int64_t)(L->alpha * 1024)};
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 10; i++)
        h = (h ^ (uint64_t)parts[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static void cse_add(cstate *c, int32_t li) {
    if (2 * (c->ncse + 1) > c->capcse) {
        size_t cap = c->capcse ? 2 * c->capcse : 1024;
        int32_t *t = calloc(cap, sizeof *t);
        if (!t) return; /* an optimisation */
        for (size_t i = 0; i < c->capcse; i++)
            if (c->cse[i]) {
                size_t j = lop_hash(&c->p->l[c->cse[i] - 1]) & (cap - 1);
                while (t[j])
                    j = (j + 1) & (cap - 1);
                t[j] = c->cse[i];
            }
        free(c->cse);
        c->cse = t;
        c->capcse = cap;
    }
    size_t j = lop_hash(&c->p->l[li]) & (c->capcse - 1);
    while (c->cse[j])
        j = (j + 1) & (c->capcse - 1);
    c->cse[j] = li + 1;
    c->ncse++;
}

/* An earlier lop equal to L with a result of shape r x cl, or -1. */
static int32_t cse_find(const cstate *c, const lop *L, nb_dim r, nb_dim cl) {
    if (!c->capcse || c->no_cse || L->nlist) return -1;
    size_t mask = c->capcse - 1;
    for (size_t i = lop_hash(L) & mask; c->cse[i]; i = (i + 1) & mask) {
        const lop *E = &c->p->l[c->cse[i] - 1];
        if (same_lop(E, L) && c->p->v[E->dst].rows == r && c->p->v[E->dst].cols == cl) return E->dst;
    }
    return -1;
}

/* Finishes a lop: its destination, invariance (or an equal earlier lop's). */
static int32_t finish_lop(cstate *c, lop *L, nb_dim r, nb_dim cl) {
    if (!L) return -1;
    nb_program *p = c->p;
    int32_t li = (int32_t)(L - p->l);
    int32_t same = cse_find(c, L, r, cl);
    if (same >= 0 && li == (int32_t)p->nl - 1) {
        p->nl--;
        return same;
    }
    int32_t d = nbc_new_value(c, r, cl, VK_WORK);
    if (d < 0) return -1;
    L = &p->l[li]; /* p->l did not move, but be explicit */
    L->dst = d;
    p->v[d].def = li;
    int inv = 1;
    for (int k = 0; k < lop_nsrc(L); k++)
        if (lop_src(p, L, k) >= 0) inv &= p->v[lop_src(p, L, k)].invariant;
    L->invariant = (uint8_t)inv;
    p->v[d].invariant = (uint8_t)inv;
    if (!c->no_cse && !L->nlist) cse_add(c, li);
    return d;
}

/* How an operand of data shape (r, c) is read in the space (R, C). */
static int arg_mode(nb_dim R, nb_dim C, nb_dim r, nb_dim c) {
    if (r == R && c == C) return NB_A_FULL;
    if (r == 1 && c == 1) return NB_A_SCAL;
    if ((R == 1 || C == 1) && r == C && c == R) return NB_A_FULL; /* a vector read as a row or back */
    if (r == 1 && c == C) return NB_A_ROWB;
    if (r == R && c == 1) return NB_A_COLB;
    return -1;
}

/* Element-wise micro-operation over the space R x C; returns its result. */
int32_t nbc_emit_mop(cstate *c, int op, nb_dim R, nb_dim C, int32_t a, int32_t b) {
    if (c->failed || a < 0 || (nb_mop_arity[op] == 2 && b < 0)) return -1;
    nb_program *p = c->p;
    int32_t srcs[2] = {a, b};
    int modes[2] = {0, 0};
    for (int i = 0; i < (nb_mop_arity[op] == 2 ? 2 : 1); i++) {
        modes[i] = arg_mode(R, C, p->v[srcs[i]].rows, p->v[srcs[i]].cols);
        if (modes[i] < 0)
            return nbc_cfail(c, "internal: operand of data shape %lld x %lld in a %lld x %lld loop",
                         (long long)p->v[srcs[i]].rows, (long long)p->v[srcs[i]].cols, (long long)R,
                         (long long)C);
    }
    if (op == NB_M_RSUM && R == 1 && C == 1) op = NB_M_COPY;
    lop *L = new_lop(c, LK_MOP);
    if (!L) return -1;
    L->op = op;
    L->src[0] = a;
    L->src[1] = nb_mop_arity[op] == 2 ? b : -1;
    L->mode[0] = (uint8_t)modes[0];
    L->mode[1] = (uint8_t)modes[1];
    /* canonical space: a vector or row is a flat loop */
    if (R == 1 || C == 1) {
        L->sr = R == 1 ? C : R;
        L->sc = 1;
    } else {
        L->sr = R;
        L->sc = C;
    }
    int32_t d = op == NB_M_RSUM ? finish_lop(c, L, 1, 1) : finish_lop(c, L, R, C);
    if (d >= 0 && op == NB_M_RSUM) p->v[d].is_red = 1;
    return d;
}

static int32_t emit_kernel(cstate *c, int kind, nb_dim r, nb_dim cl, int32_t a, int32_t b) {
    if (c->failed || a < 0) return -1;
    lop *L = new_lop(c, kind);
    if (!L) return -1;
    L->src[0] = a;
    L->src[1] = b;
    return finish_lop(c, L, r, cl);
}

static lop *lop_of(cstate *c, int32_t vid) {
    return &c->p->l[c->p->v[vid].def];
}

/* ---- lowering helpers ----------------------------------------------------- */
static nval nv_make(int st, int32_t vid) {
    return (nval){(uint8_t)st, 0, vid, 0};
}

/* Dense row-major data of node e (its type's shape). */
static int32_t need_dense(cstate *c, const nb_node *e) {
    nval x = c->nv[e->id];
    if (x.vid < 0) return -1;
    if (x.st == ST_DENSE) return x.vid;
    if (x.st == ST_FILL && e->type.kind == NB_SCALAR) return x.vid;
    if (c->dense[e->id] >= 0) return c->dense[e->id];
    nb_dim R = e->type.rows, C = e->type.cols;
    int32_t d = -1;
    switch (x.st) {
    case ST_DENSE_T:
        d = emit_kernel(c, NB_I_TRANSPOSE, R, C, x.vid, -1);
        break;
    case ST_FILL:
        d = nbc_emit_mop(c, NB_M_COPY, R, C, x.vid, -1);
        break;
    default:
        d = emit_kernel(c, NB_I_DENSE_DIAG, R, C, x.vid, -1);
        break;
    }
    c->dense[e->id] = d;
    return d;
}

/* Operand of an element-wise loop over e's broadcast result: uniform values
 * stay one number, dense data is read in place, structure is materialised. */
static int32_t ew_operand(cstate *c, const nb_node *e) {
    nval x = c->nv[e->id];
    if (x.st == ST_FILL || x.st == ST_DENSE) return x.vid;
    return need_dense(c, e);
}

/* The diagonal of e (a square matrix, or a row/scalar broadcast to one) as
 * data read over the diagonal's flat loop. */
static int32_t diag_operand(cstate *c, const nb_node *e) {
    nval x = c->nv[e->id];
    switch (x.st) {
    case ST_DIAG:
    case ST_SID:
    case ST_FILL:
        return x.vid;
    default:
        break;
    }
    if (e->type.kind != NB_MATRIX) return x.st == ST_DENSE ? x.vid : need_dense(c, e); /* a row: r_i */
    if (c->diagvec[e->id] >= 0) return c->diagvec[e->id];
    lop *L = new_lop(c, NB_I_STRIDED);
    if (!L) return -1;
    L->src[0] = x.vid;
    L->skind = SK_DIAG;
    int32_t d = finish_lop(c, L, e->type.rows, 1);
    c->diagvec[e->id] = d;
    return d;
}

static bool nv_known(nval x, double v) {
    return (x.st == ST_FILL || x.st == ST_SID) && x.known && x.cval == v;
}
static bool nv_zero(nval x) {
    return x.st == ST_FILL && x.known && x.cval == 0;
}

/* A term of a sum: node and sign (a − b is lowered as a subtraction). */
static const nb_node *negated_term(const nb_node *e) {
    if (e->op == NB_OP_MUL && e->nargs == 2 && e->args[0]->op == NB_OP_CONST &&
        e->args[0]->type.kind == NB_SCALAR && e->args[0]->a.c.val == -1)
        return e->args[1];
    return NULL;
}
/* A factor that divides: b^-1. */
static const nb_node *reciprocal_factor(const nb_node *e) {
    if (e->op == NB_OP_POW && e->args[1]->op == NB_OP_CONST && e->args[1]->type.kind == NB_SCALAR &&
        e->args[1]->a.c.val == -1)
        return e->args[0];
    return NULL;
}

typedef int32_t (*operand_fn)(cstate *c, const nb_node *e);

/* Σ or Π of a node's operands over the space R x C, with subtraction for
 * negated terms and division for reciprocal factors.  A product takes its
 * factors from the last: they are in printing order (the coefficient, then
 * variables, functions, sums; ties by age), so products that share their
 * later factors -- a·Π and b·Π, the simplifier's distributed (a + b)·Π --
 * share the partial products of those (one lop each, by CSE). */
static int32_t emit_nary(cstate *c, const nb_node *y, int is_add, nb_dim R, nb_dim C, operand_fn get) {
    size_t n = y->nargs;
    int32_t acc = -1;
    int pass;
    /* first the plain terms, then the inverted ones, keeping order otherwise */
    for (pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < n; k++) {
            const nb_node *e = y->args[is_add ? k : n - 1 - k];
            const nb_node *inv = is_add ? negated_term(e) : reciprocal_factor(e);
            if ((inv != NULL) != (pass == 1)) continue;
            if (inv && c->nv[inv->id].vid < 0) inv = NULL; /* not lowered: use as is */
            int32_t x = get(c, inv ? inv : e);
            if (x < 0) return -1;
            if (acc < 0) {
                acc = inv ? nbc_emit_mop(c, is_add ? NB_M_NEG : NB_M_RECIP, R, C, x, -1) : x;
            } else {
                int op = is_add ? (inv ? NB_M_SUB : NB_M_ADD) : (inv ? NB_M_DIV : NB_M_MUL);
                acc = nbc_emit_mop(c, op, R, C, acc, x);
            }
        }
    if (acc >= 0 && n == 1) acc = nbc_emit_mop(c, NB_M_COPY, R, C, acc, -1);
    return acc;
}

/* x^e for a constant exponent: integer and half-integer exponents up to 4½
 * (those of polynomials and of the derivatives of √u and u^(3/2)) by
 * squarings, products, a square root and a reciprocal instead of pow:
 * x^(n + ½) = xⁿ·√x, x^−e = 1/x^e. */
static int32_t emit_pow_const(cstate *c, nb_dim R, nb_dim C, int32_t a, double e, int32_t evid) {
    const double m = fabs(e);
    if (e == 0 || !(m <= 4.5) || 2 * m != floor(2 * m)) return nbc_emit_mop(c, NB_M_POW, R, C, a, evid);
    const int n = (int)m, half = m != n;
    int32_t r = -1; /* x^n */
    if (n >= 2) {
        const int32_t sq = nbc_emit_mop(c, NB_M_SQUARE, R, C, a, -1);
        r = n == 2 ? sq : n == 3 ? nbc_emit_mop(c, NB_M_MUL, R, C, sq, a) : nbc_emit_mop(c, NB_M_SQUARE, R, C, sq, -1);
    } else if (n == 1) {
        r = a;
    }
    if (half) {
        const int32_t root = nbc_emit_mop(c, NB_M_SQRT, R, C, a, -1);
        r = r < 0 ? root : nbc_emit_mop(c, NB_M_MUL, R, C, root, r);
    }
    return e < 0 ? nbc_emit_mop(c, NB_M_RECIP, R, C, r, -1) : r;
}

/* The micro-operation of each element-wise operator, generated from ops.def:
 * every EW_UNARY and EW_BINARY row runs the micro-operation of its own name
 * (NB_MOP_LIST in kernels.h), so a new element-wise row needs a kernel of
 * that name and nothing here (a missing one fails to compile). */
#define EW_MOP_NB_CLASS_EW_UNARY(id) [NB_OP_##id] = NB_M_##id,
#define EW_MOP_NB_CLASS_EW_BINARY(id) [NB_OP_##id] = NB_M_##id,
#define EW_MOP_NB_CLASS_LEAF(id)
#define EW_MOP_NB_CLASS_EW_NARY(id)
#define EW_MOP_NB_CLASS_LINEAR(id)
#define EW_MOP_NB_CLASS_BILINEAR(id)
#define EW_MOP_NB_CLASS_ROWWISE(id)
#define EW_MOP_NB_CLASS_MATRIX_FN(id)
static const uint16_t elementwise_mop[NB_OP_COUNT] = {
#define OP(id, arity, cls, ...) EW_MOP_##cls(id)
#include "ops.def"
#undef OP
};

/* s·x for a uniform s, keeping x's structure. */
static nval scale_value(cstate *c, nval x, const nb_node *xe, nval s) {
    if (nv_known(s, 1)) return x;
    nb_program *p = c->p;
    switch (x.st) {
    case ST_FILL:
    case ST_SID:
        return nv_make(x.st, nbc_emit_mop(c, NB_M_MUL, 1, 1, s.vid, x.vid));
    case ST_DIAG:
        return nv_make(ST_DIAG, nbc_emit_mop(c, NB_M_MUL, xe->type.rows, 1, s.vid, x.vid));
    default:
        if (x.vid < 0) return nv_make(x.st, -1);
        return nv_make(x.st, nbc_emit_mop(c, NB_M_MUL, p->v[x.vid].rows, p->v[x.vid].cols, s.vid, x.vid));
    }
}

/* Data shape of a dense or transposed value's stored matrix. */
static void stored_shape(const cstate *c, nval x, nb_dim *r, nb_dim *cl) {
    *r = c->p->v[x.vid].rows;
    *cl = c->p->v[x.vid].cols;
}

/* 1ᵀ·B (column sums) or A·1 (row sums) times the uniform value s: one
 * operand of the product is uniform (fill), the other stored (m). */
static nval lower_matmul_by_uniform(cstate *c, const nb_node *y, nval a, nval b) {
    nb_dim R = y->type.rows, C = y->type.cols;
    int left = a.st == ST_FILL;
    nval s = left ? a : b, m = left ? b : a;
    nb_dim mr, mc;
    stored_shape(c, m, &mr, &mc);
    int single = left ? C == 1 : R == 1; /* the result is uniform */
    if (single) {
        int32_t sum = nbc_emit_mop(c, NB_M_RSUM, mr, mc, m.vid, -1);
        return nv_make(ST_FILL, nv_known(s, 1) ? sum : nbc_emit_mop(c, NB_M_MUL, 1, 1, s.vid, sum));
    }
    /* column sums of B = row sums of its stored transpose, and vice versa */
    int colsum = left ? (m.st == ST_DENSE) : (m.st == ST_DENSE_T);
    nb_dim len = left ? C : R;
    lop *L = new_lop(c, colsum ? NB_I_COLSUM : NB_I_ROWSUM);
    if (!L) return nv_make(ST_DENSE, -1);
    L->src[0] = m.vid;
    if (s.known) L->alpha = s.cval;
    int32_t vec = finish_lop(c, L, len, 1);
    if (!s.known) vec = nbc_emit_mop(c, NB_M_MUL, len, 1, s.vid, vec);
    if (left) { /* rows all equal the column sums */
        int32_t row = alias_value(c, vec, 1, C, 0, 0);
        if (R == 1) return nv_make(ST_DENSE, row);
        return nv_make(ST_DENSE, nbc_emit_mop(c, NB_M_COPY, R, C, row, -1));
    }
    if (C == 1) return nv_make(ST_DENSE, vec);
    return nv_make(ST_DENSE, nbc_emit_mop(c, NB_M_COPY, R, C, vec, -1));
}

/* op(M)·v for the stored matrix M (op: its transpose when ta) and the vector
 * data v: a column of len either way (a row result is its alias) and v by
 * the value that owns its data, so that one product reached as a row and as
 * a column (f's xᵀ·A beside its gradient's Aᵀ·x) is made once. */
static int32_t emit_gemv(cstate *c, int32_t m, bool ta, int32_t v, nb_dim len) {
    lop *L = new_lop(c, NB_I_GEMV);
    if (!L) return -1;
    L->src[0] = m;
    L->src[1] = nbc_whole_alias(c->p, v) ? root_of(c->p, v) : v;
    L->ta = ta;
    return finish_lop(c, L, len, 1);
}

/* Dense (or stored transposed) operands: a dot product, gemv or gemm with
 * transpose flags instead of transposed copies. */
static nval lower_matmul_dense(cstate *c, const nb_node *y, nval a, nval b) {
    const nb_node *A = y->args[0], *B = y->args[1];
    nb_dim R = y->type.rows, C = y->type.cols, K = A->type.cols;
    if (a.st != ST_DENSE && a.st != ST_DENSE_T) a = nv_make(ST_DENSE, need_dense(c, A));
    if (b.st != ST_DENSE && b.st != ST_DENSE_T) b = nv_make(ST_DENSE, need_dense(c, B));
    if (a.vid < 0 || b.vid < 0) return nv_make(ST_DENSE, -1);
    if (y->type.kind == NB_SCALAR) { /* row · column: a dot product */
        int32_t prod = nbc_emit_mop(c, NB_M_MUL, K, 1, a.vid, b.vid);
        return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_RSUM, K, 1, prod, -1));
    }
    if (y->type.kind == NB_VECTOR) return nv_make(ST_DENSE, emit_gemv(c, a.vid, a.st == ST_DENSE_T, b.vid, R));
    if (y->type.kind == NB_ROW) {
        const int32_t col = emit_gemv(c, b.vid, b.st == ST_DENSE, a.vid, C);
        return nv_make(ST_DENSE, col < 0 ? -1 : alias_value(c, col, 1, C, 0, 0));
    }
    lop *L = new_lop(c, NB_I_GEMM);
    if (!L) return nv_make(ST_DENSE, -1);
    L->src[0] = a.vid;
    L->src[1] = b.vid;
    L->ta = a.st == ST_DENSE_T;
    L->tb = b.st == ST_DENSE_T;
    return nv_make(ST_DENSE, finish_lop(c, L, R, C));
}

/* ---- Kronecker products kept structured -------------------------------------- */
/* A Kronecker factor of a product: (P ⊗ Q), its transpose Pᵀ ⊗ Qᵀ, or either
 * times a scalar s (scale: s's node, NULL for none). */
typedef struct {
    const nb_node *P, *Q, *scale;
    bool transposed;
} kron_factor;

static bool as_kron(const nb_node *e, kron_factor *k) {
    *k = (kron_factor){0};
    if (e->op == NB_OP_MUL && e->nargs == 2) {
        int s = e->args[0]->type.kind == NB_SCALAR ? 0 : e->args[1]->type.kind == NB_SCALAR ? 1 : -1;
        if (s < 0) return false;
        k->scale = e->args[s];
        e = e->args[1 - s];
    }
    if (e->op == NB_OP_TRANSPOSE) {
        k->transposed = true;
        e = e->args[0];
    }
    if (e->op != NB_OP_KRON) return false;
    k->P = e->args[0];
    k->Q = e->args[1];
    return true;
}

/* a·b (a r x k, b k x cl) with a, b read transposed when ta, tb. */
static int32_t emit_gemm(cstate *c, int32_t a, bool ta, int32_t b, bool tb, nb_dim r, nb_dim cl) {
    if (a < 0 || b < 0) return -1;
    lop *L = new_lop(c, NB_I_GEMM);
    if (!L) return -1;
    L->src[0] = a;
    L->src[1] = b;
    L->ta = ta;
    L->tb = tb;
    return finish_lop(c, L, r, cl);
}

/* Stored data of factor F, *t flipped when F is kept transposed (a product
 * reads it with a transpose flag instead of a transposed copy). */
static int32_t factor_data(cstate *c, const nb_node *F, bool *t) {
    if (c->nv[F->id].st != ST_DENSE_T) return need_dense(c, F);
    *t = !*t;
    return c->nv[F->id].vid;
}

/* Left factor F (r x k as used, Fᵀ when t) times W (k x cl); the identity
 * is skipped. */
static int32_t factor_times(cstate *c, const nb_node *F, bool t, int32_t w, nb_dim r, nb_dim cl) {
    if (F->op == NB_OP_IDENTITY) return w;
    int32_t f = factor_data(c, F, &t);
    return emit_gemm(c, f, t, w, false, r, cl);
}

/* (P ⊗ Q)·v for v of length p·q, P m x p, Q n x q (as used: transposed
 * factors when k->transposed), without forming P ⊗ Q:
 *   (P ⊗ Q)·vec(V) = vec(Q·V·Pᵀ),
 * which on row-major data (W = v as p x q rows, W = Vᵀ) reads
 *   y as m x n rows = P·W·Qᵀ. */
static int32_t kron_times_vector(cstate *c, const kron_factor *k, int32_t v, nb_dim len) {
    bool t = k->transposed;
    nb_dim m = t ? k->P->type.cols : k->P->type.rows, p = t ? k->P->type.rows : k->P->type.cols;
    nb_dim n = t ? k->Q->type.cols : k->Q->type.rows, q = t ? k->Q->type.rows : k->Q->type.cols;
    int32_t w = alias_value(c, v, p, q, 0, 0);
    int32_t pw = factor_times(c, k->P, t, w, m, q); /* P·W, m x q */
    if (k->Q->op == NB_OP_IDENTITY) return alias_value(c, pw, len, 1, 0, 0);
    bool tq = !t;
    int32_t qd = factor_data(c, k->Q, &tq);
    int32_t y = emit_gemm(c, pw, false, qd, tq, m, n);
    return alias_value(c, y, len, 1, 0, 0);
}

/* a·b of two dimensions, a product symbol when either is one (it joins the
 * program's table); 0 on failure. */
static nb_dim dim_product(cstate *c, nb_dim a, nb_dim b) {
    nb_dim d = nb_dim_mul(c->ctx, a, b);
    return d && (d > 0 || nbc_add_dim(c, d) == 0) ? d : 0;
}

/* (P ⊗ Q)·M for M of p·q rows and k columns (P m x p, Q n x q as used), on
 * the factors, with O((m + p)·(n + q)·k) memory.  Row-major, column c of M
 * is vec(V_c), read as p x q rows W_c = V_cᵀ:
 *   T = Mᵀ·Qᵀ  (Mᵀ as k·p x q rows: block c of T is W_c·Qᵀ, p x n)
 *   N = Tᵀ     (T as k x p·n: N is p·n x k, read as p x n·k rows)
 *   Y = P·N    (m x n·k rows = m·n x k): column c is P·W_c·Qᵀ = vec(Q·V_c·Pᵀ). */
static int32_t kron_times_matrix(cstate *c, const kron_factor *k, int32_t M, nb_dim R, nb_dim K) {
    bool t = k->transposed;
    nb_dim m = t ? k->P->type.cols : k->P->type.rows, p = t ? k->P->type.rows : k->P->type.cols;
    nb_dim n = t ? k->Q->type.cols : k->Q->type.rows, q = t ? k->Q->type.rows : k->Q->type.cols;
    nb_dim kp = dim_product(c, K, p), pn = dim_product(c, p, n), nk = dim_product(c, n, K);
    nb_dim pq = dim_product(c, p, q);
    if (!kp || !pn || !nk || !pq || M < 0) return -1;
    int32_t mt = emit_kernel(c, NB_I_TRANSPOSE, K, pq, M, -1);
    int32_t tq = alias_value(c, mt, K, pn, 0, 0); /* Q = I: Mᵀ is T */
    if (k->Q->op != NB_OP_IDENTITY) {
        bool flip = !t;
        int32_t qd = factor_data(c, k->Q, &flip);
        tq = alias_value(c, emit_gemm(c, alias_value(c, mt, kp, q, 0, 0), false, qd, flip, kp, n), K, pn, 0, 0);
    }
    int32_t nt = emit_kernel(c, NB_I_TRANSPOSE, pn, K, tq, -1);
    int32_t y = factor_times(c, k->P, t, alias_value(c, nt, p, nk, 0, 0), m, nk);
    return alias_value(c, y, R, K, 0, 0);
}

/* K·v = vec(Xᵀ) for v = vec(X), X m x n: on row-major data, v is Xᵀ as n x m
 * rows and the result X as m x n rows, a transpose. */
static int32_t commutation_times_vector(cstate *c, nb_dim m, nb_dim n, int32_t v, nb_dim len) {
    int32_t xt = alias_value(c, v, n, m, 0, 0);
    int32_t x = emit_kernel(c, NB_I_TRANSPOSE, m, n, xt, -1);
    return alias_value(c, x, len, 1, 0, 0);
}

/* y = L·v or y = u·L (a row) with L a Kronecker product or the commutation
 * matrix, computed on the factors; false when y is not such a product
 * (then it is formed densely).  uᵀ·(P ⊗ Q) = ((Pᵀ ⊗ Qᵀ)·u)ᵀ and uᵀ·K(m,n) =
 * (K(n,m)·u)ᵀ. */
static bool lower_structured_product(cstate *c, const nb_node *y, nval *out) {
    if (c->p->flags & NB_COMPILE_DENSE) return false;
    bool row = y->type.kind == NB_ROW;
    kron_factor k = {0};
    if (y->type.kind == NB_MATRIX && as_kron(y->args[0], &k)) {
        int32_t r = kron_times_matrix(c, &k, need_dense(c, y->args[1]), y->type.rows, y->type.cols);
        if (k.scale) r = nbc_emit_mop(c, NB_M_MUL, y->type.rows, y->type.cols, ew_operand(c, k.scale), r);
        *out = nv_make(ST_DENSE, r);
        return true;
    }
    if (!row && y->type.kind != NB_VECTOR) return false;
    const nb_node *L = y->args[row ? 1 : 0], *x = y->args[row ? 0 : 1];
    nb_dim len = row ? y->type.cols : y->type.rows;
    int32_t r;
    if (L->op == NB_OP_COMMUTATION) {
        nb_dim m = L->a.index[row ? 1 : 0], n = L->a.index[row ? 0 : 1];
        r = commutation_times_vector(c, m, n, need_dense(c, x), len);
    } else if (as_kron(L, &k)) {
        k.transposed ^= row;
        r = kron_times_vector(c, &k, need_dense(c, x), len);
    } else {
        return false;
    }
    if (row) r = alias_value(c, r, 1, len, 0, 0);
    if (k.scale) r = nbc_emit_mop(c, NB_M_MUL, y->type.rows, y->type.cols, ew_operand(c, k.scale), r);
    *out = nv_make(ST_DENSE, r);
    return true;
}

/* M·v or u·M where M = T₁ + … + Tₖ is read by this product alone and each
 * Tᵢ is stored (or stored transposed): Σ Tᵢ·v, k matrix-vector products on
 * the stored data, instead of forming M (xᵀ·(A + Aᵀ) reads A twice and
 * writes nothing of n²).  False when y is not such a product. */
static bool lower_product_of_sum(cstate *c, const nb_node *y, nval *out) {
    const bool row = y->type.kind == NB_ROW;
    if (!row && y->type.kind != NB_VECTOR) return false;
    const nb_node *M = y->args[row ? 1 : 0], *v = y->args[row ? 0 : 1];
    if (M->op != NB_OP_ADD || M->type.kind != NB_MATRIX || c->uses[M->id] != 1) return false;
    for (size_t i = 0; i < M->nargs; i++) {
        const nval t = c->nv[M->args[i]->id];
        if ((t.st != ST_DENSE && t.st != ST_DENSE_T) || t.vid < 0 || M->args[i]->type.kind != NB_MATRIX)
            return false;
    }
    const nval vn = c->nv[v->id]; /* a vector's data is the same either way round */
    const int32_t vv = vn.st == ST_DENSE || vn.st == ST_DENSE_T ? vn.vid : need_dense(c, v);
    int32_t sum = -1;
    const nb_dim len = row ? y->type.cols : y->type.rows;
    for (size_t i = 0; i < M->nargs && vv >= 0; i++) {
        const nval t = c->nv[M->args[i]->id];
        const int32_t term = emit_gemv(c, t.vid, row ? t.st == ST_DENSE : t.st == ST_DENSE_T, vv, len);
        sum = i == 0 ? term : nbc_emit_mop(c, NB_M_ADD, len, 1, sum, term);
    }
    *out = nv_make(ST_DENSE, row && sum >= 0 ? alias_value(c, sum, 1, len, 0, 0) : sum);
    return true;
}

static nval lower_matmul(cstate *c, const nb_node *y) {
    const nb_node *A = y->args[0], *B = y->args[1];
    nval a = c->nv[A->id], b = c->nv[B->id];
    nb_dim R = y->type.rows, C = y->type.cols, K = A->type.cols;
    if (nv_zero(a) || nv_zero(b)) {
        nval z = nv_make(ST_FILL, const_value(c, 0));
        z.known = 1;
        return z;
    }
    if (a.st == ST_SID) return scale_value(c, b, B, a);
    if (b.st == ST_SID) return scale_value(c, a, A, b);
    nval structured;
    if (lower_structured_product(c, y, &structured)) return structured;
    if (a.st == ST_DIAG && b.st == ST_DIAG)
        return nv_make(ST_DIAG, nbc_emit_mop(c, NB_M_MUL, R, 1, a.vid, b.vid));
    if (K == 1) { /* outer product */
        if (a.st == ST_FILL && b.st == ST_FILL)
            return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_MUL, 1, 1, a.vid, b.vid));
        int32_t av = ew_operand(c, A), bv = ew_operand(c, B);
        if (av < 0 || bv < 0) return nv_make(ST_DENSE, -1);
        int32_t d = nbc_emit_mop(c, NB_M_MUL, R, C, av, bv);
        return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, d);
    }
    if (a.st == ST_DIAG) { /* diag(d)·B: row scaling */
        int32_t bv = b.st == ST_FILL ? b.vid : (b.st == ST_DENSE ? b.vid : need_dense(c, B));
        return nv_make(ST_DENSE, nbc_emit_mop(c, NB_M_MUL, R, C, a.vid, bv));
    }
    if (b.st == ST_DIAG) { /* A·diag(e): column scaling */
        int32_t e = alias_value(c, b.vid, 1, B->type.rows, 0, 0);
        int32_t av = a.st == ST_FILL ? a.vid : (a.st == ST_DENSE ? a.vid : need_dense(c, A));
        return nv_make(ST_DENSE, nbc_emit_mop(c, NB_M_MUL, R, C, av, e));
    }
    if (a.st == ST_FILL && b.st == ST_FILL) {
        int32_t k = dim_value(c, K, 1);
        return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_MUL, 1, 1, nbc_emit_mop(c, NB_M_MUL, 1, 1, a.vid, b.vid), k));
    }
    if (a.st == ST_FILL || b.st == ST_FILL) return lower_matmul_by_uniform(c, y, a, b);
    if (lower_product_of_sum(c, y, &structured)) return structured;
    return lower_matmul_dense(c, y, a, b);
}

/* Operands of y are uniform or stored transposed (at least one): y is then
 * computed on the stored data, and stays transposed. */
static bool all_transposed(const cstate *c, const nb_node *y) {
    if (y->type.kind != NB_MATRIX) return false;
    bool any = false;
    for (size_t i = 0; i < y->nargs; i++) {
        int st = c->nv[y->args[i]->id].st;
        if (st == ST_DENSE_T)
            any = true;
        else if (st != ST_FILL)
            return false;
    }
    return any;
}

static int32_t stored_operand(cstate *c, const nb_node *e) {
    return c->nv[e->id].vid;
}

static nval lower_add_mul(cstate *c, const nb_node *y) {
    int is_add = y->op == NB_OP_ADD;
    nb_dim R = y->type.rows, C = y->type.cols;
    int nfill = 0, nstruct = 0, ndense = 0, ndiag = 0, nzero = 0;
    for (size_t i = 0; i < y->nargs; i++) {
        nval x = c->nv[y->args[i]->id];
        if (nv_zero(x)) nzero++;
        if (x.st == ST_FILL)
            nfill++;
        else if (x.st == ST_DIAG || x.st == ST_SID) {
            nstruct++;
            ndiag += x.st == ST_DIAG;
        } else
            ndense++;
    }
    if (!is_add && nzero) {
        nval z = nv_make(ST_FILL, const_value(c, 0));
        z.known = 1;
        return z;
    }
    if (nfill == (int)y->nargs) return nv_make(ST_FILL, emit_nary(c, y, is_add, 1, 1, ew_operand));
    if (y->type.kind == NB_MATRIX && nstruct > 0 && (is_add ? (ndense == 0 && nfill == nzero) : 1)) {
        /* diagonal result: work on the diagonals */
        int uniform = ndiag == 0 && (is_add || ndense == 0);
        if (!is_add)
            for (size_t i = 0; i < y->nargs; i++)
                if (y->args[i]->type.kind == NB_ROW) uniform = 0;
        if (uniform) return nv_make(ST_SID, emit_nary(c, y, is_add, 1, 1, diag_operand));
        return nv_make(ST_DIAG, emit_nary(c, y, is_add, R, 1, diag_operand));
    }
    if (all_transposed(c, y)) return nv_make(ST_DENSE_T, emit_nary(c, y, is_add, C, R, stored_operand));
    return nv_make(ST_DENSE, emit_nary(c, y, is_add, R, C, ew_operand));
}

static bool f_zero_at_zero(int op) { return (nb_ops[op].flags & NB_F_ZERO_AT_ZERO) != 0; }

static nval known_fill(cstate *c, double v) {
    nval r = nv_make(ST_FILL, const_value(c, v));
    r.known = 1;
    r.cval = v;
    return r;
}

static nval lower_leaf(cstate *c, const nb_node *y) {
    nb_program *p = c->p;
    switch (y->op) {
    case NB_OP_CONST:
        return known_fill(c, y->a.c.val);
    case NB_OP_DIMVAL:
        return nv_make(ST_FILL, dim_value(c, y->a.dim, 1));
    case NB_OP_IDENTITY: {
        nval r = known_fill(c, 1);
        r.st = ST_SID;
        return r;
    }
    default: /* NB_OP_VAR */
        for (size_t i = 0; i < p->nin; i++)
            if (c->inputs[i] == y) return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, p->in_vid[i]);
        nbc_cfail(c, "variable '%s' is used but is not an input of the program", y->a.name);
        return nv_make(ST_DENSE, -1);
    }
}

static nval lower_pow(cstate *c, const nb_node *y) {
    nb_dim R = y->type.rows, C = y->type.cols;
    const nb_node *A = y->args[0], *E = y->args[1];
    nval a = c->nv[A->id], e = c->nv[E->id];
    if (e.st == ST_FILL && e.known && E->type.kind == NB_SCALAR) {
        if (a.st == ST_FILL) return nv_make(ST_FILL, emit_pow_const(c, 1, 1, a.vid, e.cval, e.vid));
        if ((a.st == ST_DIAG || a.st == ST_SID) && e.cval > 0)
            return nv_make(a.st, emit_pow_const(c, a.st == ST_DIAG ? R : 1, 1, a.vid, e.cval, e.vid));
        if (a.st == ST_DENSE_T) return nv_make(ST_DENSE_T, emit_pow_const(c, C, R, a.vid, e.cval, e.vid));
        return nv_make(ST_DENSE, emit_pow_const(c, R, C, ew_operand(c, A), e.cval, e.vid));
    }
    if (a.st == ST_FILL && e.st == ST_FILL) return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_POW, 1, 1, a.vid, e.vid));
    return nv_make(ST_DENSE, nbc_emit_mop(c, NB_M_POW, R, C, ew_operand(c, A), ew_operand(c, E)));
}

/* Transposes, sums and diagonals mostly change the structure, not the data. */
static nval lower_structural(cstate *c, const nb_node *y) {
    nb_dim R = y->type.rows, C = y->type.cols;
    const nb_node *A = y->args[0];
    nval a = c->nv[A->id];
    if (a.vid < 0) return a;
    switch (y->op) {
    case NB_OP_TRANSPOSE:
        if (a.st == ST_DENSE)
            return y->type.kind == NB_MATRIX ? nv_make(ST_DENSE_T, a.vid)
                                             : nv_make(ST_DENSE, alias_value(c, a.vid, R, C, 0, 0));
        return a.st == ST_DENSE_T ? nv_make(ST_DENSE, a.vid) : a;
    case NB_OP_SUM:
        if (a.st == ST_FILL && A->type.kind == NB_SCALAR) return a;
        if (a.st == ST_FILL)
            return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_MUL, 1, 1, a.vid, dim_value(c, A->type.rows, A->type.cols)));
        if (a.st == ST_SID)
            return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_MUL, 1, 1, a.vid, dim_value(c, A->type.rows, 1)));
        return nv_make(ST_FILL, nbc_emit_mop(c, NB_M_RSUM, c->p->v[a.vid].rows, c->p->v[a.vid].cols, a.vid, -1));
    case NB_OP_DIAG:
        if (a.st == ST_FILL) {
            a.st = ST_SID;
            return a;
        }
        return nv_make(ST_DIAG, alias_value(c, a.st == ST_DENSE ? a.vid : need_dense(c, A), R, 1, 0, 0));
    default: /* NB_OP_DIAGPART */
        if (a.st == ST_DIAG) return nv_make(ST_DENSE, a.vid);
        if (a.st == ST_SID || a.st == ST_FILL) {
            a.st = ST_FILL;
            return a;
        }
        return nv_make(ST_DENSE, diag_operand(c, A));
    }
}

/* [a, b, ...] and [[a, b], ...]: a gather of scalars. */
static nval lower_literal(cstate *c, const nb_node *y) {
    nb_program *p = c->p;
    lop *L = new_lop(c, NB_I_GATHER);
    if (!L) return nv_make(ST_DENSE, -1);
    int32_t li = (int32_t)(L - p->l);
    if (grow((void **)&p->lists, &c->caplists, c->nlists + y->nargs, sizeof *p->lists)) {
        nbc_cfail(c, "out of memory");
        return nv_make(ST_DENSE, -1);
    }
    p->l[li].list = (int32_t)c->nlists;
    p->l[li].nlist = (int32_t)y->nargs;
    for (size_t i = 0; i < y->nargs; i++)
        p->lists[c->nlists++] = c->nv[y->args[i]->id].vid;
    for (size_t i = 0; i < y->nargs; i++)
        if (c->nv[y->args[i]->id].vid < 0) return nv_make(ST_DENSE, -1);
    return nv_make(ST_DENSE, finish_lop(c, &p->l[li], y->type.rows, y->type.cols));
}

/* Column k of a matrix, or entry (i, j): aliases where the memory allows. */
static nval lower_part(cstate *c, const nb_node *y) {
    nb_dim R = y->type.rows;
    const nb_node *A = y->args[0];
    nval a = c->nv[A->id];
    if (a.vid < 0 || a.st == ST_FILL) return a;
    if (y->op == NB_OP_ENTRY) {
        int64_t i = y->a.index[0], j = y->a.index[1];
        switch (a.st) {
        case ST_DENSE:
            return nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, i, j));
        case ST_DENSE_T:
            return nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, j, i));
        case ST_DIAG:
            return i == j ? nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, i, 0)) : known_fill(c, 0);
        default:
            return i == j ? nv_make(ST_FILL, a.vid) : known_fill(c, 0);
        }
    }
    int64_t k = y->a.index[0]; /* NB_OP_COLUMN */
    if (a.st == ST_DENSE_T)
        return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, alias_value(c, a.vid, R, 1, k, 0));
    int32_t d = a.st == ST_DENSE ? a.vid : need_dense(c, A);
    if (A->type.kind == NB_ROW || A->type.rows == 1) return nv_make(ST_FILL, alias_value(c, d, 1, 1, 0, k));
    if (A->type.cols == 1) return nv_make(ST_DENSE, alias_value(c, d, R, 1, 0, 0));
    lop *L = new_lop(c, NB_I_STRIDED);
    if (!L) return nv_make(ST_DENSE, -1);
    L->src[0] = d;
    L->skind = SK_COLUMN;
    L->soff = k;
    return nv_make(ST_DENSE, finish_lop(c, L, R, 1));
}

static nval lower_unary(cstate *c, const nb_node *y) {
    nb_dim R = y->type.rows, C = y->type.cols;
    const nb_node *A = y->args[0];
    nval a = c->nv[A->id];
    int op = elementwise_mop[y->op];
    if (a.vid < 0) return a;
    if (a.st == ST_FILL) return nv_make(ST_FILL, nbc_emit_mop(c, op, 1, 1, a.vid, -1));
    if ((a.st == ST_DIAG || a.st == ST_SID) && f_zero_at_zero(y->op))
        return nv_make(a.st, nbc_emit_mop(c, op, a.st == ST_DIAG ? R : 1, 1, a.vid, -1));
    if (a.st == ST_DENSE_T) return nv_make(ST_DENSE_T, nbc_emit_mop(c, op, C, R, a.vid, -1));
    return nv_make(ST_DENSE, nbc_emit_mop(c, op, R, C, ew_operand(c, A), -1));
}

static nval lower_binary(cstate *c, const nb_node *y) {
    nb_dim R = y->type.rows, C = y->type.cols;
    const nb_node *A = y->args[0], *B = y->args[1];
    int op = elementwise_mop[y->op];
    if (c->nv[A->id].st == ST_FILL && c->nv[B->id].st == ST_FILL)
        return nv_make(ST_FILL, nbc_emit_mop(c, op, 1, 1, c->nv[A->id].vid, c->nv[B->id].vid));
    if (all_transposed(c, y))
        return nv_make(ST_DENSE_T, nbc_emit_mop(c, op, C, R, c->nv[A->id].vid, c->nv[B->id].vid));
    return nv_make(ST_DENSE, nbc_emit_mop(c, op, R, C, ew_operand(c, A), ew_operand(c, B)));
}

static nval lower_rowwise(cstate *c, const nb_node *y) {
    int32_t z = need_dense(c, y->args[0]);
    if (y->op == NB_OP_SOFTMAX_XENT) {
        int32_t t = need_dense(c, y->args[1]);
        if (t < 0) return nv_make(ST_FILL, -1);
        return nv_make(ST_FILL, emit_kernel(c, NB_I_XENT, 1, 1, z, t));
    }
    int kind = y->op == NB_OP_SOFTMAX ? NB_I_SOFTMAX : NB_I_LOGSOFTMAX;
    return nv_make(ST_DENSE, emit_kernel(c, kind, y->type.rows, y->type.cols, z, -1));
}

/* A matrix function: one NB_I_MATFN kernel (linalg.h) on dense operands. */
static nval lower_matfn(cstate *c, const nb_node *y) {
    /* tr(A·B) = Σ A ⊙ Bᵀ: n² work instead of the n³ product (which dead-code
     * elimination drops when nothing else reads it) */
    const nb_node *P = y->op == NB_OP_TRACE ? y->args[0] : NULL;
    bool product = P && P->op == NB_OP_MATMUL && P->args[0]->type.kind == NB_MATRIX && P->args[1]->type.kind == NB_MATRIX;
    const nb_node *A = product ? P->args[0] : y->nargs ? y->args[0] : NULL, *B = product ? P->args[1] : y->nargs > 1 ? y->args[1] : NULL;
    int32_t a = A ? need_dense(c, A) : -1, b = B ? need_dense(c, B) : -1;
    bool scalar = y->type.kind == NB_SCALAR;
    if ((A && a < 0) || (B && b < 0)) return nv_make(ST_DENSE, -1);
    lop *L = new_lop(c, NB_I_MATFN);
    if (!L) return nv_make(ST_DENSE, -1);
    L->op = product ? NB_LA_TRACE_PRODUCT : nb_matfn_code(y->op);
    if (y->op == NB_OP_COMMUTATION) L->soff = y->a.index[0]; /* the dimension m, resolved when planned */
    L->src[0] = a;
    L->src[1] = b;
    return nv_make(scalar ? ST_FILL : ST_DENSE, finish_lop(c, L, y->type.rows, y->type.cols));
}

/* softmax of a vector: the row-wise kernel on its entries as one row. */
static nval lower_vector_softmax(cstate *c, const nb_node *y) {
    nb_dim n = y->type.rows;
    int32_t row = alias_value(c, need_dense(c, y->args[0]), 1, n, 0, 0);
    return nv_make(ST_DENSE, alias_value(c, emit_kernel(c, NB_I_SOFTMAX, 1, n, row, -1), n, 1, 0, 0));
}

static nval lower_node(cstate *c, const nb_node *y) {
    switch ((nb_op)y->op) {
    case NB_OP_CONST:
    case NB_OP_VAR:
    case NB_OP_DIMVAL:
    case NB_OP_IDENTITY:
        return lower_leaf(c, y);
    case NB_OP_ADD:
    case NB_OP_MUL:
        return lower_add_mul(c, y);
    case NB_OP_POW:
        return lower_pow(c, y);
    case NB_OP_MATMUL:
        return lower_matmul(c, y);
    case NB_OP_TRANSPOSE:
    case NB_OP_SUM:
    case NB_OP_DIAG:
    case NB_OP_DIAGPART:
        return lower_structural(c, y);
    case NB_OP_VECLIT:
    case NB_OP_MATLIT:
        return lower_literal(c, y);
    case NB_OP_COLUMN:
    case NB_OP_ENTRY:
        return lower_part(c, y);
    case NB_OP_SOFTMAX:
    case NB_OP_LOGSOFTMAX:
    case NB_OP_SOFTMAX_XENT:
        return lower_rowwise(c, y);
    case NB_OP_VSOFTMAX:
        return lower_vector_softmax(c, y);
    case NB_OP_TRACE:
    case NB_OP_DET:
    case NB_OP_LOGDET:
    case NB_OP_INV:
    case NB_OP_SOLVE:
    case NB_OP_NORM1:
    case NB_OP_NORM2:
    case NB_OP_LOGSUMEXP:
    case NB_OP_BCE:
    case NB_OP_VEC:
    case NB_OP_KRON:
    case NB_OP_COMMUTATION:
        return lower_matfn(c, y);
    default:
        if (nb_ops[y->op].cls == NB_CLASS_EW_UNARY) return lower_unary(c, y);
        if (nb_ops[y->op].cls == NB_CLASS_EW_BINARY) return lower_binary(c, y);
        break;
    }
    nbc_cfail(c, "cannot compile operator %s", y->op < NB_OP_COUNT ? nb_ops[y->op].name : "?");
    return nv_make(ST_DENSE, -1);
}

/* ---- outputs ---------------------------------------------------------------- */
/* Is alias v the whole of its storage (offset 0, same number of entries)? */
bool nbc_whole_alias(const nb_program *p, int32_t v) {
    while (p->v[v].parent >= 0) {
        const vinfo *x = &p->v[v], *q = &p->v[x->parent];
        if (x->ai || x->aj) return false;
        bool same = (x->rows == q->rows && x->cols == q->cols) ||
                    (x->rows == q->cols && x->cols == q->rows && (x->rows == 1 || x->cols == 1));
        if (!same) return false;
        v = x->parent;
    }
    return true;
}

int nbc_lower_outputs(cstate *c, nb_expr *const *outputs) {
    nb_program *p = c->p;
    for (size_t i = 0; i < p->nout; i++) {
        const nb_node *e = outputs[i];
        nval x = c->nv[e->id];
        int32_t vid;
        int st;
        bool dense = (p->flags & NB_COMPILE_DENSE) || e->type.kind == NB_SCALAR;
        if (x.st == ST_DENSE) {
            vid = x.vid;
            st = NB_STRUCT_DENSE;
        } else if (dense || x.st == ST_DENSE_T) {
            vid = need_dense(c, e);
            st = NB_STRUCT_DENSE;
        } else {
            vid = x.vid;
            st = x.st == ST_DIAG  ? NB_STRUCT_DIAGONAL
                 : x.st == ST_SID ? NB_STRUCT_SCALED_IDENTITY
                                  : NB_STRUCT_UNIFORM;
        }
        if (vid < 0 || c->failed) return -1;
        /* write into the caller's buffer directly when the value is computed
         * by this program each run and owns its storage; otherwise copy */
        int32_t r = root_of(p, vid);
        bool place = p->v[r].kind == VK_WORK && !p->v[r].invariant && p->v[r].def >= 0 && p->v[r].out < 0 &&
                     nbc_whole_alias(p, vid);
        if (!place) {
            nb_dim vr = p->v[vid].rows, vc = p->v[vid].cols;
            c->no_cse = 1;
            int32_t cp = nbc_emit_mop(c, NB_M_COPY, vr, vc, vid, -1);
            c->no_cse = 0;
            if (cp < 0) return -1;
            lop *L = lop_of(c, cp);
            L->forced = 1;
            L->invariant = 0;
            p->v[cp].invariant = 0;
            vid = r = cp;
        }
        p->v[r].out = (int32_t)i;
        p->out_vid[i] = vid;
        p->out_st[i] = (uint8_t)st;
    }
    return 0;
}

/* Lowers the reachable nodes, in topological (id) order. */
int nbc_lower(cstate *c, nb_node *const *order, size_t n) {
    for (size_t i = 0; i < n && !c->failed; i++) {
        nval r = lower_node(c, order[i]);
        if (r.vid < 0 && !c->failed) nbc_cfail(c, "internal: could not lower %s", nb_ops[order[i]->op].name);
        c->nv[order[i]->id] = r;
    }
    return c->failed ? -1 : 0;
}
