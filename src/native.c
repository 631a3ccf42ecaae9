/* Native code for row-fused regions (nb_compile's NB_COMPILE_NATIVE): a
 * second backend that reads the planned instructions and writes C.
 *
 * A row-tiled region of the shape u = X·w (products over X's rows), an
 * element-wise group on the rows (one column), Xᵀ·g (products summing over
 * the rows of the same X) is turned into one C function that walks X once,
 * row by row: the row's dot products, the group's operations on the row's
 * values in scalar registers, then at once the row's updates of the
 * gradients, which stay in vector registers across all rows when they fit.
 * No interpreter can do this: every dispatch between the dot product and the
 * update clobbers the registers that hold the gradient (bench/README.md, (a),
 * measures the orders).  The source is specialised to the plan's sizes,
 * compiled by the system's C compiler (NABLA_CC, default cc) into a shared
 * object in a private temporary directory, and loaded with dlopen; when that
 * fails the region runs by tiles as without the flag, and the listing says
 * why.  The element-wise operations are printed from their one definition
 * (NB_UNARY, NB_BINARY, NB_FUSED_MOP_LIST in kernels.h; src/scalar.h's text). */
#include "engine.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* the longest the C compiler may run on one region (seconds) */
#define NB_NATIVE_CC_SECONDS 120
/* the most ops of a native region (the run passes their addresses on the stack) */
#define NB_NATIVE_MAX_OPS 96

enum { NV_DOT, NV_LOAD, NV_BCAST, NV_MOP, NV_STORE, NV_RSUM, NV_GRAD };

/* One step of the row loop; op k's result (DOT, LOAD, BCAST, MOP) is the
 * row's value v<k>. */
typedef struct {
    uint8_t kind;              /* NV_* */
    uint16_t op;               /* MOP: nb_mop_code (SINCOS is split into SIN and COS) */
    uint32_t src[NB_MOP_SRCS]; /* MOP: operand ops; STORE, RSUM, GRAD: src[0] */
    size_t inst;               /* the instruction it comes from */
    const nb_arg *from;        /* LOAD, BCAST, STORE: the planned operand it reads or writes */
    uint32_t acc;              /* RSUM: the group's accumulator slot */
} nv_op;

typedef void (*nb_native_fn)(void *const *mem, const double *alpha, double *acc, int64_t r0, int64_t r1);

/* Loaded code, shared by the regions (of any program in the process) whose
 * source is the same: programs compiled again, for another thread count,
 * or bound back to earlier sizes do not run the compiler again. */
typedef struct loaded {
    char *source;
    void *handle;
    nb_native_fn fn;
    size_t refs;
    struct loaded *next;
} loaded;
static loaded *loaded_code;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

struct nb_native {
    nv_op *ops;
    uint32_t nops;
    size_t x_inst; /* the first product: its operand a is X */
    loaded *code;  /* plan: the loaded code, or NULL */
    int declined;  /* the shape fits, but the loop would not pay (why says why) */
    char why[160]; /* when code is NULL: why the region runs by tiles */
};

static const char *const mop_names[NB_M_COUNT] = {
#define NB_X(name, ar) #name,
    NB_MOP_LIST(NB_X)
#undef NB_X
};

/* ---- recognition (compile time) ---------------------------------------- */
typedef struct {
    nb_native *nat;
    size_t cap;
    int32_t *op_of;      /* by root value: the op whose v<k> holds it, made in the region, -1 */
    int32_t *load_of;    /* by value: the op that reads it from memory, -1 */
    const char *libm_op; /* the first operation that calls libm, or NULL */
    uint8_t *kept;       /* by root value: read after the region, or an output */
    int unfit;
} nvbuild;

static uint32_t nv_add(nvbuild *b, nv_op op) {
    if (b->nat->nops >= NB_NATIVE_MAX_OPS ||
        grow((void **)&b->nat->ops, &b->cap, b->nat->nops + 1, sizeof *b->nat->ops)) {
        b->unfit = 1;
        return 0;
    }
    b->nat->ops[b->nat->nops] = op;
    return b->nat->nops++;
}

/* The op holding value v row by row: made in the region (a whole alias of
 * it), else read from memory (`from`): per row (FULL, COLB) or one value
 * (SCAL, ROWB: one column). */
static uint32_t nv_operand(nvbuild *b, const nb_program *p, int32_t v, const nb_arg *from, size_t inst) {
    const int32_t r = root_of(p, v);
    if (b->op_of[r] >= 0) {
        if (!nbc_whole_alias(p, v)) b->unfit = 1;
        return (uint32_t)b->op_of[r];
    }
    if (from->mode == NB_A_REG) { /* a group register not made here: not this shape */
        b->unfit = 1;
        return 0;
    }
    if (b->load_of[v] >= 0) return (uint32_t)b->load_of[v];
    const int one = from->mode == NB_A_SCAL || from->mode == NB_A_ROWB;
    const uint32_t k = nv_add(b, (nv_op){.kind = one ? NV_BCAST : NV_LOAD, .inst = inst, .from = from});
    b->load_of[v] = (int32_t)k;
    return k;
}

/* Records that op k holds value v; stores it when it is read after the
 * region (a product's result is in memory; a group's unless a register). */
static void nv_made(nvbuild *b, const nb_program *p, int32_t v, uint32_t k, const nb_arg *dst, size_t inst) {
    const int32_t r = root_of(p, v);
    b->op_of[r] = (int32_t)k;
    if (b->kept[r] && (!p->ci[inst].is_group || dst->mode != NB_A_REG))
        nv_add(b, (nv_op){.kind = NV_STORE, .src = {k}, .inst = inst, .from = dst});
}

/* Operations that are a call into libm.  Row by row, each is one scalar call
 * that also makes the compiler save and restore the gradients' registers
 * around it; the tiles run them a vector at a time (libmvec), which is
 * faster (measured: logistic regression's f+∇f 480 µs native against 177 µs
 * by tiles, N=10000, n=100).  A region with one of them is left to the tiles. */
static int calls_libm(int op) {
    switch (op) {
    case NB_M_EXP:
    case NB_M_LOG:
    case NB_M_SIN:
    case NB_M_COS:
    case NB_M_TAN:
    case NB_M_TANH:
    case NB_M_SIGMOID:
    case NB_M_SOFTPLUS:
    case NB_M_LOGSIGMOID:
    case NB_M_POW:
    case NB_M_SINCOS:
        return 1;
    default:
        return 0;
    }
}

static void nv_group(nvbuild *b, const nb_program *p, size_t i) {
    const cgroup *G = &p->g[p->ci[i].id];
    const nb_group *g = p->ins[i].g;
    if (G->C != 1) {
        b->unfit = 1;
        return;
    }
    for (size_t k = 0; k < G->n && !b->unfit; k++) {
        const lop *L = &p->l[G->lops[k]];
        const nb_mop *m = &g->mops[k];
        const int nsrc = m->op == NB_M_RSUM ? 1 : nb_mop_arity[m->op];
        if (calls_libm(m->op) && !b->libm_op) b->libm_op = mop_names[m->op];
        uint32_t src[NB_MOP_SRCS] = {0};
        for (int q = 0; q < nsrc; q++)
            src[q] = nv_operand(b, p, L->src[q], &m->src[q], i);
        if (m->op == NB_M_RSUM) {
            nv_add(b, (nv_op){.kind = NV_RSUM, .src = {src[0]}, .inst = i, .acc = m->acc});
        } else if (m->op == NB_M_SINCOS) {
            nv_made(b, p, L->dst,
                    nv_add(b, (nv_op){.kind = NV_MOP, .op = NB_M_SIN, .src = {src[0]}, .inst = i}), &m->dst,
                    i);
            nv_made(b, p, L->dst2,
                    nv_add(b, (nv_op){.kind = NV_MOP, .op = NB_M_COS, .src = {src[0]}, .inst = i}), &m->dst2,
                    i);
        } else {
            nv_op o = {.kind = NV_MOP, .op = (uint16_t)m->op, .inst = i};
            memcpy(o.src, src, sizeof src);
            nv_made(b, p, L->dst, nv_add(b, o), &m->dst, i);
        }
    }
}

/* The ops of region R when it has the shape (b->unfit otherwise). */
static void nv_build(nvbuild *b, const nb_program *p, const region *R) {
    int32_t x = -1;
    int grads = 0;
    for (size_t i = R->start; i < R->end && !b->unfit; i++) {
        if (p->ci[i].is_group) {
            nv_group(b, p, i);
            continue;
        }
        const lop *L = &p->l[p->ci[i].id];
        const nb_instr *in = &p->ins[i];
        if (L->kind != NB_I_GEMV || !nbc_whole_alias(p, L->src[0])) {
            b->unfit = 1;
            break;
        }
        const int32_t xr = root_of(p, L->src[0]);
        if ((x >= 0 && xr != x) || b->op_of[xr] >= 0) {
            b->unfit = 1;
            break;
        }
        if (x < 0) b->nat->x_inst = i;
        x = xr;
        if (!L->ta) { /* u = X·w: w must come from before the region */
            if (b->op_of[root_of(p, L->src[1])] >= 0) {
                b->unfit = 1;
                break;
            }
            nv_made(b, p, L->dst, nv_add(b, (nv_op){.kind = NV_DOT, .inst = i}), &in->y, i);
        } else { /* Xᵀ·g: g row by row */
            const uint32_t g = nv_operand(b, p, L->src[1], &in->b, i);
            nv_add(b, (nv_op){.kind = NV_GRAD, .src = {g}, .inst = i});
            grads++;
        }
    }
    if (!grads) b->unfit = 1;
}

/* kept[v] for the values made in region R: read by a lop outside it, or an output. */
static int nv_mark_kept(const nb_program *p, const region *R, uint8_t *kept) {
    uint8_t *in_region = calloc(p->nl + 1, 1);
    if (!in_region) return -1;
    for (size_t i = R->start; i < R->end; i++) {
        if (!p->ci[i].is_group) {
            in_region[p->ci[i].id] = 1;
            continue;
        }
        const cgroup *G = &p->g[p->ci[i].id];
        for (size_t k = 0; k < G->n; k++)
            in_region[G->lops[k]] = 1;
    }
    for (size_t v = 0; v < p->nv; v++)
        kept[v] = p->v[v].out >= 0;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live || in_region[li]) continue;
        for (int k = 0; k < lop_nsrc(L); k++)
            if (lop_src(p, L, k) >= 0) kept[root_of(p, lop_src(p, L, k))] = 1;
    }
    free(in_region);
    return 0;
}

int nbc_native_find(nb_program *p, region *R) {
    nvbuild b = {calloc(1, sizeof *b.nat),
                 0,
                 malloc((p->nv + 1) * sizeof *b.op_of),
                 malloc((p->nv + 1) * sizeof *b.load_of),
                 NULL,
                 calloc(p->nv + 1, 1),
                 0};
    int rc = b.nat && b.op_of && b.load_of && b.kept ? 0 : -1;
    if (!rc) {
        for (size_t v = 0; v < p->nv; v++)
            b.op_of[v] = b.load_of[v] = -1;
        rc = nv_mark_kept(p, R, b.kept);
    }
    if (!rc) nv_build(&b, p, R);
    if (!rc && !b.unfit) {
        if (b.libm_op) {
            b.nat->declined = 1;
            snprintf(b.nat->why, sizeof b.nat->why,
                     "%s per row is a libm call; the tiles run it a vector at a time", b.libm_op);
        }
        R->native = b.nat;
        b.nat = NULL;
    }
    nbc_native_free(b.nat);
    free(b.op_of);
    free(b.load_of);
    free(b.kept);
    return rc;
}

static void release(loaded *c) {
    if (!c) return;
    pthread_mutex_lock(&loaded_lock);
    if (--c->refs == 0) {
        loaded **q = &loaded_code;
        while (*q != c)
            q = &(*q)->next;
        *q = c->next;
        dlclose(c->handle);
        free(c->source);
        free(c);
    }
    pthread_mutex_unlock(&loaded_lock);
}

void nbc_native_free(nb_native *nat) {
    if (!nat) return;
    release(nat->code);
    free(nat->ops);
    free(nat);
}

/* ---- the source (plan time) -------------------------------------------- */
static const char scalar_text[] =
#include "scalar_text.inc"
    ;

/* Vector types and the row's dot product and gradient update, for NCOL
 * columns: NV whole vectors, then a tail of a half vector, a quarter vector
 * and single values. */
static const char prelude[] =
    "#if defined(__AVX512F__)\n#define VB 64\n#elif defined(__AVX__)\n#define VB 32\n#else\n#define VB "
    "16\n#endif\n"
    "#define VN (VB / REAL_BYTES)\n"
    "#define HN (VN / 2)\n#define QN (VN / 4)\n"
    "typedef REAL vec __attribute__((vector_size(VB)));\n"
    "typedef REAL hvec __attribute__((vector_size(HN >= 2 ? VB / 2 : 2 * sizeof(REAL))));\n"
    "typedef REAL qvec __attribute__((vector_size(QN >= 2 ? VB / 4 : 2 * sizeof(REAL))));\n"
    "enum { NV = NCOL / VN, NT = NCOL % VN, TH = HN >= 2 && NT >= HN,\n"
    "       TQ = QN >= 2 && NT - TH * HN >= QN, TS = NT - TH * HN - TQ * QN };\n"
    "static inline vec ld(const REAL *p) { vec v; memcpy(&v, p, sizeof v); return v; }\n"
    "static inline hvec ldh(const REAL *p) { hvec v; memcpy(&v, p, sizeof v); return v; }\n"
    "static inline qvec ldq(const REAL *p) { qvec v; memcpy(&v, p, sizeof v); return v; }\n"
    "/* the sum of a vector's lanes, by halves, in registers */\n"
    "typedef REAL v8 __attribute__((vector_size(8 * REAL_BYTES)));\n"
    "typedef REAL v4 __attribute__((vector_size(4 * REAL_BYTES)));\n"
    "typedef REAL v2 __attribute__((vector_size(2 * REAL_BYTES)));\n"
    "#if defined(__clang__) || __GNUC__ >= 12\n"
    "#define SV __builtin_shufflevector\n"
    "static inline REAL hsum(vec v) {\n"
    "#if VN >= 16\n"
    "    const v8 a8 = SV(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + SV(v, v, 8, 9, 10, 11, 12, 13, 14, 15);\n"
    "#elif VN == 8\n"
    "    const v8 a8 = v;\n"
    "#endif\n"
    "#if VN >= 8\n"
    "    const v4 a4 = SV(a8, a8, 0, 1, 2, 3) + SV(a8, a8, 4, 5, 6, 7);\n"
    "#elif VN == 4\n"
    "    const v4 a4 = v;\n"
    "#endif\n"
    "#if VN >= 4\n"
    "    const v2 a2 = SV(a4, a4, 0, 1) + SV(a4, a4, 2, 3);\n"
    "#else\n"
    "    const v2 a2 = v;\n"
    "#endif\n"
    "    return a2[0] + a2[1];\n"
    "}\n"
    "#else\n"
    "static inline REAL hsum(vec v) {\n"
    "    for (int h = VN / 2; h >= 1; h /= 2)\n"
    "        for (int l = 0; l < h; l++) v[l] += v[l + h];\n"
    "    return v[0];\n"
    "}\n"
    "#endif\n"
    "/* the tail of a row's dot product: a half vector, a quarter vector, single values */\n"
    "static inline REAL dot_tail(const REAL *x, const REAL *w) {\n"
    "    REAL t = 0;\n"
    "    if (TH) { const hvec h = ldh(x) * ldh(w); for (int l = 0; l < HN; l++) t += h[l]; x += HN, w += HN; "
    "}\n"
    "    if (TQ) { const qvec q = ldq(x) * ldq(w); for (int l = 0; l < QN; l++) t += q[l]; x += QN, w += QN; "
    "}\n"
    "    for (int l = 0; l < TS; l++) t += x[l] * w[l];\n"
    "    return t;\n"
    "}\n"
    "static inline void dot1(const REAL *x, const REAL *w, REAL *out) {\n"
    "    vec s0 = {0}, s1 = {0};\n"
    "    int k = 0;\n"
    "    for (; k + 1 < NV; k += 2) {\n"
    "        s0 += ld(x + VN * k) * ld(w + VN * k);\n"
    "        s1 += ld(x + VN * k + VN) * ld(w + VN * k + VN);\n"
    "    }\n"
    "    if (k < NV) s0 += ld(x + VN * k) * ld(w + VN * k);\n"
    "    out[0] = hsum(s0 + s1) + dot_tail(x + NV * VN, w + NV * VN);\n"
    "}\n"
    "/* four rows x, x + NCOL, ... sharing the loads of w */\n"
    "static inline void dot4(const REAL *x, const REAL *w, REAL *out) {\n"
    "    vec s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};\n"
    "    for (int k = 0; k < NV; k++) {\n"
    "        const vec wk = ld(w + VN * k);\n"
    "        s0 += ld(x + VN * k) * wk;\n"
    "        s1 += ld(x + NCOL + VN * k) * wk;\n"
    "        s2 += ld(x + 2 * NCOL + VN * k) * wk;\n"
    "        s3 += ld(x + 3 * NCOL + VN * k) * wk;\n"
    "    }\n"
    "    out[0] = hsum(s0) + dot_tail(x + NV * VN, w + NV * VN);\n"
    "    out[1] = hsum(s1) + dot_tail(x + NCOL + NV * VN, w + NV * VN);\n"
    "    out[2] = hsum(s2) + dot_tail(x + 2 * NCOL + NV * VN, w + NV * VN);\n"
    "    out[3] = hsum(s3) + dot_tail(x + 3 * NCOL + NV * VN, w + NV * VN);\n"
    "}\n"
    "typedef struct { vec v[NV + 1]; hvec h; qvec q; REAL s[TS + 1]; } grad;\n"
    "static inline void grad_add1(grad *g, const REAL *x, const REAL *c) {\n"
    "    const vec cv = (vec){0} + c[0];\n"
    "    for (int k = 0; k < NV; k++) g->v[k] += ld(x + VN * k) * cv;\n"
    "    x += NV * VN;\n"
    "    if (TH) { g->h += ldh(x) * ((hvec){0} + c[0]); x += HN; }\n"
    "    if (TQ) { g->q += ldq(x) * ((qvec){0} + c[0]); x += QN; }\n"
    "    for (int l = 0; l < TS; l++) g->s[l] += x[l] * c[0];\n"
    "}\n"
    "static inline void grad_add4(grad *g, const REAL *x, const REAL *c) {\n"
    "    const vec c0 = (vec){0} + c[0], c1 = (vec){0} + c[1], c2 = (vec){0} + c[2], c3 = (vec){0} + c[3];\n"
    "    for (int k = 0; k < NV; k++)\n"
    "        g->v[k] += ld(x + VN * k) * c0 + ld(x + NCOL + VN * k) * c1 + ld(x + 2 * NCOL + VN * k) * c2 +\n"
    "                   ld(x + 3 * NCOL + VN * k) * c3;\n"
    "    for (int r = 0; r < 4; r++) {\n"
    "        const REAL *t = x + r * NCOL + NV * VN;\n"
    "        if (TH) { g->h += ldh(t) * ((hvec){0} + c[r]); t += HN; }\n"
    "        if (TQ) { g->q += ldq(t) * ((qvec){0} + c[r]); t += QN; }\n"
    "        for (int l = 0; l < TS; l++) g->s[l] += t[l] * c[r];\n"
    "    }\n"
    "}\n"
    "static inline void grad_store(const grad *g, REAL *y, REAL alpha) {\n"
    "    for (int k = 0; k < NV; k++) { const vec v = g->v[k] * alpha; memcpy(y + VN * k, &v, sizeof v); }\n"
    "    y += NV * VN;\n"
    "    if (TH) { const hvec h = g->h * alpha; memcpy(y, &h, sizeof h); y += HN; }\n"
    "    if (TQ) { const qvec q = g->q * alpha; memcpy(y, &q, sizeof q); y += QN; }\n"
    "    for (int l = 0; l < TS; l++) y[l] = g->s[l] * alpha;\n"
    "}\n";

/* The element-wise operations as functions op_<NAME>, printed from their definitions. */
static void print_operations(nb_strbuf *sb) {
#define NB_PRINT_UNARY(name, expr)                                                                           \
    nb_sb_puts(sb, "static inline REAL op_" #name "(REAL x) { return " #expr "; }\n");
    NB_UNARY(NB_PRINT_UNARY)
#undef NB_PRINT_UNARY
#define NB_PRINT_BINARY(name, expr)                                                                          \
    nb_sb_puts(sb, "static inline REAL op_" #name "(REAL a, REAL b) { return " #expr "; }\n");
    NB_BINARY(NB_PRINT_BINARY)
#undef NB_PRINT_BINARY
#define NB_PRINT_FUSED(name, inner, outer)                                                                   \
    nb_sb_puts(sb, "static inline REAL op_" #name "(REAL a, REAL b, REAL c) { return op_" #outer             \
                   "(op_" #inner "(a, b), c); }\n");
    NB_FUSED_MOP_LIST(NB_PRINT_FUSED)
#undef NB_PRINT_FUSED
}

/* Op k's value in row r of a step (a broadcast value is one for all rows). */
static void value_ref(nb_strbuf *sb, const nb_native *nat, uint32_t k) {
    if (nat->ops[k].kind == NV_BCAST)
        nb_sb_printf(sb, "v%u", k);
    else
        nb_sb_printf(sb, "v%u[r]", k);
}

/* The body of the row loop for a step of `rows` rows starting at row i:
 * each op on the step's rows, the dot products and gradient updates of the
 * rows together (X's rows read once from memory, once more from L1). */
static void emit_rows(nb_strbuf *sb, const nb_native *nat, int rows) {
    nb_sb_puts(sb, "        const REAL *const x = X + i * NCOL;\n");
    for (uint32_t k = 0; k < nat->nops; k++) {
        const nv_op *o = &nat->ops[k];
        switch (o->kind) {
        case NV_DOT:
            nb_sb_printf(sb, "        REAL v%u[%d];\n        dot%d(x, w%u, v%u);\n", k, rows, rows, k, k);
            nb_sb_printf(sb, "        for (int r = 0; r < %d; r++) v%u[r] *= al%u;\n", rows, k, k);
            break;
        case NV_LOAD:
            nb_sb_printf(sb,
                         "        REAL v%u[%d];\n        for (int r = 0; r < %d; r++) v%u[r] = l%u[i + r];\n",
                         k, rows, rows, k, k);
            break;
        case NV_MOP:
            nb_sb_printf(sb, "        REAL v%u[%d];\n        for (int r = 0; r < %d; r++) v%u[r] = op_%s(", k,
                         rows, rows, k, mop_names[o->op]);
            for (int q = 0; q < nb_mop_arity[o->op]; q++) {
                if (q) nb_sb_puts(sb, ", ");
                value_ref(sb, nat, o->src[q]);
            }
            nb_sb_puts(sb, ");\n");
            break;
        case NV_STORE:
        case NV_RSUM:
            nb_sb_printf(sb, "        for (int r = 0; r < %d; r++) ", rows);
            nb_sb_printf(sb, o->kind == NV_STORE ? "s%u[i + r] = " : "r%u += (double)", k);
            value_ref(sb, nat, o->src[0]);
            nb_sb_puts(sb, ";\n");
            break;
        case NV_GRAD:
            nb_sb_printf(
                sb,
                "        {\n            REAL c[%d];\n            for (int r = 0; r < %d; r++) c[r] = ", rows,
                rows);
            value_ref(sb, nat, o->src[0]);
            nb_sb_printf(sb, ";\n            grad_add%d(&g%u, x, c);\n        }\n", rows, k);
            break;
        default:
            break;
        }
    }
    nb_sb_puts(sb, "    }\n");
}

/* The region's function, nb_region(mem, alpha, acc, r0, r1): mem[0] is X,
 * mem[1 + k] op k's memory (w, the column it loads, the value it broadcasts,
 * where it stores, the gradient's destination), alpha[k] a product's scale;
 * rows r0..r1. */
static char *native_source(const nb_program *p, const region *R, int64_t ncol) {
    const nb_native *nat = R->native;
    nb_strbuf sb = {NULL, 0, 0, false};
    const int f32 = p->dtype == NB_F32;
    nb_sb_printf(&sb,
                 "/* generated by nabla: a row-fused region */\n#include <math.h>\n#include <stdint.h>\n"
                 "#include <string.h>\ntypedef %s REAL;\n#define REAL_BYTES %d\n#define T(name) "
                 "name\n#define M(fn) fn%s\n",
                 f32 ? "float" : "double", f32 ? 4 : 8, f32 ? "##f" : "");
    nb_sb_puts(&sb, scalar_text);
    nb_sb_printf(&sb, "#define NCOL %lld\n", (long long)ncol);
    nb_sb_puts(&sb, prelude);
    print_operations(&sb);
    nb_sb_puts(
        &sb, "void nb_region(void *const *mem, const double *alpha, double *acc, int64_t r0, int64_t r1) {\n"
             "    const REAL *const X = (const REAL *)mem[0];\n");
    for (uint32_t k = 0; k < nat->nops; k++) {
        const nv_op *o = &nat->ops[k];
        switch (o->kind) {
        case NV_DOT:
            nb_sb_printf(&sb, "    const REAL *const w%u = mem[%u], al%u = (REAL)alpha[%u];\n", k, k + 1, k,
                         k);
            break;
        case NV_LOAD:
            nb_sb_printf(&sb, "    const REAL *const l%u = mem[%u];\n", k, k + 1);
            break;
        case NV_BCAST:
            nb_sb_printf(&sb, "    const REAL v%u = *(const REAL *)mem[%u];\n", k, k + 1);
            break;
        case NV_STORE:
            nb_sb_printf(&sb, "    REAL *const s%u = mem[%u];\n", k, k + 1);
            break;
        case NV_RSUM:
            nb_sb_printf(&sb, "    double r%u = 0;\n", k);
            break;
        case NV_GRAD:
            nb_sb_printf(&sb, "    grad g%u;\n    memset(&g%u, 0, sizeof g%u);\n", k, k, k);
            break;
        default:
            break;
        }
    }
    uint32_t ngrads = 0;
    for (uint32_t k = 0; k < nat->nops; k++)
        ngrads += nat->ops[k].kind == NV_GRAD;
    /* The gradients stay in registers across the rows when they take at
     * most half of them; else each load and store of them in L1 serves
     * four rows (X's four rows read together, twice). */
    nb_sb_printf(&sb,
                 "    enum { NREGS = VB == 64 ? 32 : 16, GRAD_VECS = %u * (NV + (NT > 0)),\n"
                 "           STEP = 2 * GRAD_VECS <= NREGS ? 1 : 4 };\n"
                 "    int64_t i = r0;\n"
                 "    if (STEP == 4)\n"
                 "    for (; i + 4 <= r1; i += 4) {\n",
                 ngrads);
    emit_rows(&sb, nat, 4);
    nb_sb_puts(&sb, "    for (; i < r1; i++) {\n");
    emit_rows(&sb, nat, 1);
    for (uint32_t k = 0; k < nat->nops; k++) {
        const nv_op *o = &nat->ops[k];
        if (o->kind == NV_RSUM)
            nb_sb_printf(&sb, "    acc[%zu] = r%u;\n", p->acc_base[o->inst] + o->acc, k);
        else if (o->kind == NV_GRAD)
            nb_sb_printf(&sb, "    grad_store(&g%u, (REAL *)mem[%u], (REAL)alpha[%u]);\n", k, k + 1, k);
    }
    nb_sb_puts(&sb, "}\n");
    if (sb.failed) {
        free(sb.buf);
        return NULL;
    }
    return sb.buf;
}

/* ---- compiling and loading --------------------------------------------- */
static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f)) rc = -1;
    return rc;
}

/* Runs the C compiler on src into so, its messages into log; 0 when it succeeded. */
static int run_compiler(char *src, char *so, const char *log, char *why, size_t nwhy) {
    const char *cc = getenv("NABLA_CC");
    if (!cc || !*cc) cc = "cc";
    char *const argv[] = {(char *)cc,
                          "-O3",
                          "-march=native",
                          "-fno-math-errno",
                          "-ffp-contract=fast",
                          "-fPIC",
                          "-shared",
                          "-w",
                          "-o",
                          so,
                          src,
                          NULL};
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa)) return -1;
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, cc, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        snprintf(why, nwhy, "the C compiler '%.60s' could not be run (NABLA_CC)", cc);
        return -1;
    }
    /* wait, polling, at most NB_NATIVE_CC_SECONDS; then the compiler is killed */
    int status = 0;
    for (long waited_ms = 0;; waited_ms += 5) {
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, nwhy, "waiting for the C compiler failed");
            return -1;
        }
        if (waited_ms >= NB_NATIVE_CC_SECONDS * 1000L) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            snprintf(why, nwhy, "the C compiler '%.60s' ran for more than %d s", cc, NB_NATIVE_CC_SECONDS);
            return -1;
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char first[72] = "";
        FILE *f = fopen(log, "r");
        if (f) {
            if (fgets(first, sizeof first, f)) first[strcspn(first, "\n")] = 0;
            fclose(f);
        }
        snprintf(why, nwhy, "the C compiler '%.40s' failed on the generated code: %s", cc, first);
        return -1;
    }
    return 0;
}

/* Compiles source into a shared object and loads it into c. */
static int compile_and_load(loaded *c, const char *source, char *why, size_t nwhy) {
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/nabla-XXXXXX", tmp && *tmp ? tmp : "/tmp") >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        snprintf(why, nwhy, "no temporary directory for the generated code");
        return -1;
    }
    char src[4200], so[4200], log[4200];
    snprintf(src, sizeof src, "%s/region.c", dir);
    snprintf(so, sizeof so, "%s/region.so", dir);
    snprintf(log, sizeof log, "%s/cc.log", dir);
    int rc = write_file(src, source);
    if (rc) snprintf(why, nwhy, "the generated code could not be written");
    if (!rc) rc = run_compiler(src, so, log, why, nwhy);
    if (!rc) {
        c->handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        void *sym = c->handle ? dlsym(c->handle, "nb_region") : NULL;
        memcpy(&c->fn, &sym, sizeof sym); /* a data pointer to a function pointer, as POSIX allows */
        if (!c->fn) {
            snprintf(why, nwhy, "the compiled code could not be loaded");
            if (c->handle) dlclose(c->handle);
            rc = -1;
        }
    }
    unlink(src);
    unlink(so);
    unlink(log);
    rmdir(dir);
    return rc;
}

int nbc_native_plan(nb_program *p, region *R) {
    nb_native *nat = R->native;
    if (nat->declined) return 0;
    char *source = native_source(p, R, p->ins[nat->x_inst].n);
    if (!source) return -1;
    release(nat->code);
    nat->code = NULL;
    nat->why[0] = 0;
    /* the lock is held while compiling: one compiler run per source */
    pthread_mutex_lock(&loaded_lock);
    loaded *c = loaded_code;
    while (c && strcmp(c->source, source) != 0)
        c = c->next;
    int rc = 0;
    if (c) {
        c->refs++;
        free(source);
    } else if (!(c = calloc(1, sizeof *c))) {
        free(source);
        rc = -1;
    } else if (compile_and_load(c, source, nat->why, sizeof nat->why)) {
        free(source);
        free(c);
        c = NULL;
    } else {
        c->source = source;
        c->refs = 1;
        c->next = loaded_code;
        loaded_code = c;
    }
    pthread_mutex_unlock(&loaded_lock);
    nat->code = c;
    return rc;
}

int nbc_native_ready(const region *R) {
    return R->native && R->native->code;
}

const char *nbc_native_why(const region *R) {
    return R->native && !R->native->code ? R->native->why : NULL;
}

/* the value of a product's scale: alpha, times the value at alpha_arg */
static double product_alpha(const nb_program *p, const nb_instr *in) {
    if (!in->has_alpha) return in->alpha;
    const void *a = nbc_address(p, &in->alpha_arg);
    return in->alpha * (p->dtype == NB_F32 ? (double)*(const float *)a : *(const double *)a);
}

void nbc_native_run(nb_program *p, const region *R, int tid, int64_t r0, int64_t r1) {
    const nb_native *nat = R->native;
    void *mem[1 + NB_NATIVE_MAX_OPS];
    double alpha[NB_NATIVE_MAX_OPS];
    mem[0] = nbc_address(p, &p->ins[nat->x_inst].a);
    for (uint32_t k = 0; k < nat->nops; k++) {
        const nv_op *o = &nat->ops[k];
        const nb_instr *in = &p->ins[o->inst];
        mem[k + 1] = NULL;
        alpha[k] = 1;
        switch (o->kind) {
        case NV_DOT:
            mem[k + 1] = nbc_address(p, &in->b);
            alpha[k] = product_alpha(p, in);
            break;
        case NV_GRAD: /* the thread's partial sum, or the output */
            mem[k + 1] = tid > 0 && p->partial_off[o->inst] >= 0 ? nbc_partial(p, o->inst, tid)
                                                                 : nbc_address(p, &in->y);
            alpha[k] = product_alpha(p, in);
            break;
        case NV_LOAD:
        case NV_BCAST:
        case NV_STORE:
            mem[k + 1] = nbc_address(p, o->from);
            break;
        default:
            break;
        }
    }
    nat->code->fn(mem, alpha, p->acc[tid], r0, r1);
}
