/* The compiler: expression DAG -> a program of fused element-wise groups and
 * kernel calls, with a liveness-based buffer plan.
 *
 * Passes (all over arrays, no recursion):
 *  1. collect    nodes reachable from the outputs (explicit stack), in id
 *                order (a topological order); check that every variable is an
 *                input.
 *  2. lower      each node becomes a *value* with a structure — dense, dense
 *                stored transposed, uniform (one number), diagonal (its
 *                vector), scaled identity (one number) — and the low-level
 *                operations ("lops") that compute its data.  Structure is
 *                kept through the operations that preserve it (diag·diag,
 *                diag·A = row scaling, I·A = A, Aᵀ of a vector = the same
 *                memory, Aᵀ·B = gemm with a transpose flag, 1ᵀ·A = column
 *                sums, element-wise work on transposed operands stays
 *                transposed, ...); dense data is materialised only on demand.
 *                Equal lops are made once (a hash table: common
 *                subexpressions the DAG's hash-consing cannot see).
 *  3. outputs    structured outputs stay structured unless NB_COMPILE_DENSE;
 *                results are written straight into the caller's buffers.
 *  4. dead code  lops whose results nobody needs are dropped.
 *  5. scaling    s·(A·B) for a uniform s becomes the product's alpha.
 *  6. hoisting   lops that do not depend on inputs (constants, dimension
 *                values) run once when sizes are bound: constant folding.
 *  7. fusion     element-wise lops over one iteration space are grouped; a
 *                group runs block by block with its internal values in
 *                registers (one pass over memory for a whole chain, forward
 *                and backward alike), scheduled by readiness so that
 *                element-wise work joins open groups before a kernel closes
 *                them.
 *  8. regions    runs of row-local instructions over one dimension (X·w, the
 *                loop after it, Xᵀ·g) execute tile by tile of rows.
 *  9. plan       (when all dimension symbols are bound) sizes, a workspace
 *                laid out by liveness intervals, resolved operand addresses,
 *                tile sizes and thread splits; a run then allocates nothing.
 * Derivatives are never written here: they are expressions made by diff.c. */
#include "kernels.h"
#include "nb_internal.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef NB_HAVE_CBLAS
#include <cblas.h>
#endif

#define NB_MAX_THREADS 64
#define NB_PAR_MIN_WORK ((int64_t)1 << 15) /* element operations worth a second thread */

/* ---- values and low-level operations ------------------------------------ */
enum { VK_WORK, VK_INPUT, VK_CONST, VK_DIM };
enum { ST_DENSE, ST_DENSE_T, ST_FILL, ST_DIAG, ST_SID };
enum { LK_MOP = 100 }; /* lop kinds: LK_MOP or an NB_I_* kernel */
enum { SK_NONE, SK_DIAG, SK_COLUMN };

typedef struct {
    nb_dim rows, cols; /* data shape */
    int32_t parent;    /* alias of parent (-1: owns its storage) */
    int64_t ai, aj;    /* alias offset ai·(parent's cols) + aj */
    uint8_t kind;      /* VK_* */
    uint8_t invariant; /* does not depend on inputs */
    uint8_t is_red;    /* written by a group reduction */
    uint8_t mem;       /* stored in memory (not a group register) */
    int32_t index;     /* VK_INPUT: input index */
    double cval;       /* VK_CONST */
    nb_dim d1, d2;     /* VK_DIM: value d1·d2 */
    int32_t def;       /* defining lop, -1 for leaves and aliases */
    int32_t out;       /* output buffer holding it (roots only), -1 */
    /* plan */
    int64_t r, c, off;
    uint8_t base;
} vinfo;

typedef struct {
    int kind; /* LK_MOP or NB_I_* */
    int op;   /* mop code */
    int32_t dst, src[2];
    uint8_t mode[2];
    nb_dim sr, sc; /* mop iteration space (canonical) */
    int ta, tb, skind;
    int64_t soff; /* SK_COLUMN: column index */
    double alpha;
    int32_t alpha_vid;   /* a uniform value scaling a product's result, -1 */
    int32_t list, nlist; /* NB_I_GATHER: into c->lists */
    int32_t group;       /* mop: group; all: instruction index */
    int32_t inst;
    uint8_t invariant, live, forced;
} lop;

typedef struct {
    uint8_t st, known;
    int32_t vid;
    double cval;
} nval;

typedef struct {
    nb_dim R, C;
    int32_t parent; /* union-find */
    int sealed;     /* emitted: accepts no more lops */
    int32_t *lops;
    size_t n, cap;
    int32_t *deps; /* groups that must run before this one */
    size_t nd, capd;
    uint32_t mark;
} cgroup;

typedef struct {
    int is_group;
    int32_t id; /* group or lop */
} cinst;

/* ---- the program -------------------------------------------------------- */
typedef struct nb_pool nb_pool;

struct nb_program {
    nb_dtype dtype;
    const nb_kernels *k;
    unsigned flags;
    char err[512];
    /* interface */
    size_t nin, nout;
    char **in_names;
    nb_type *in_types, *out_types;
    int32_t *in_vid;
    int32_t *out_vid; /* the value written into output i's buffer */
    uint8_t *out_st;  /* nb_structure */
    size_t ndims;
    char **dim_names;
    nb_dim *dim_ids; /* the context's symbol ids */
    int64_t *dim_vals;
    /* compiled form */
    vinfo *v;
    size_t nv;
    lop *l;
    size_t nl;
    int32_t *lists;
    cinst *ci;
    size_t nci, ninit; /* instructions; the first ninit are input-independent */
    cgroup *g;
    size_t ng;
    nb_instr *ins; /* nci executable instructions */
    /* plan */
    int planned;
    void *work;
    size_t work_bytes;
    size_t scratch_elems, nacc;
    void **bases;
    void **scratch; /* per thread */
    double **acc;   /* per thread */
    int nthreads;
    nb_pool *pool;
    int check_finite;
    /* row-tiled regions (see find_regions) */
    struct region *regions;
    size_t nregions;
    int32_t *inst_region; /* by instruction: region index or -1 */
    size_t *acc_base;     /* by instruction: first accumulator slot */
    int64_t *partial_off; /* by instruction: per-thread partial sums (elements), -1 */
    int64_t *red_len;     /* by instruction: entries of a sum over the rows */
};

/* A row-tiled region: consecutive instructions that are row-local over one
 * dimension D (gemv/gemm over rows, element-wise loops, row-wise softmax) or
 * sum over it (Aᵀx, Aᵀ·B, column sums, reductions).  They run tile by tile of
 * rows, so a matrix read by several of them (X in X·w and Xᵀ·g) streams from
 * memory once and is re-read from cache; each thread takes a range of rows,
 * and its sums over rows go to private partials added at the end. */
typedef struct region {
    size_t start, end; /* instructions [start, end) */
    nb_dim D;
    /* plan */
    int64_t rows, tile;
    int active, nt;
} region;

/* ---- thread pool -------------------------------------------------------- */
typedef struct {
    nb_program *p;
    const nb_instr *in; /* an instruction ... */
    const region *reg;  /* ... or a region */
} nb_task;

struct nb_pool {
    int nworkers;
    pthread_t th[NB_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;
    atomic_int pending;
    atomic_int sleepers;
    atomic_int quit;
    nb_task task;
    int nt;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_region_share(nb_program *p, const struct region *R, int tid, int nt);

static void run_share(const nb_task *t, int tid, int nt) {
    if (t->reg)
        run_region_share(t->p, t->reg, tid, nt);
    else
        t->p->k->exec(t->in, (void *const *)t->p->bases, t->p->scratch[tid], t->p->acc[tid], tid, nt);
}

typedef struct {
    nb_pool *pool;
    int tid;
} worker_ctx;

static void *worker_main(void *arg) {
    worker_ctx *w = arg;
    nb_pool *pool = w->pool;
    unsigned seen = 0; /* the generation the pool was created with */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load(&pool->quit)) {
            if (++spins < (1 << 14)) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        if (atomic_load(&pool->quit)) break;
        seen = g;
        if (w->tid < pool->nt) run_share(&pool->task, w->tid, pool->nt);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
    free(w);
    return NULL;
}

static void pool_free(nb_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nworkers; i++)
        pthread_join(pool->th[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

static nb_pool *pool_new(int nworkers) {
    nb_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->quit, 0);
    for (int i = 0; i < nworkers; i++) {
        worker_ctx *w = malloc(sizeof *w);
        if (w) *w = (worker_ctx){pool, i + 1};
        if (!w || pthread_create(&pool->th[i], NULL, worker_main, w) != 0) {
            free(w);
            pool_free(pool);
            return NULL;
        }
        pool->nworkers = i + 1;
    }
    return pool;
}

/* Runs an instruction or a region on nt threads (the caller is thread 0). */
static void pool_run(nb_program *p, const nb_instr *in, const region *reg, int nt) {
    nb_pool *pool = p->pool;
    pool->task = (nb_task){p, in, reg};
    pool->nt = nt;
    atomic_store(&pool->pending, pool->nworkers);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_seq_cst);
    if (atomic_load(&pool->sleepers)) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    run_share(&pool->task, 0, nt);
    /* wait for the workers; yield the core if one of them is not running */
    for (unsigned spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (spins < (1u << 12))
            cpu_relax();
        else
            sched_yield();
    }
}

/* ---- errors --------------------------------------------------------------- */
static int perr(nb_program *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(nb_program *p, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- compiler state ------------------------------------------------------- */
typedef struct {
    nb_ctx *ctx;
    nb_program *p;
    nb_expr *const *inputs;
    nval *nv;         /* by node id */
    int32_t *dense;   /* by node id: memoised dense materialisation */
    int32_t *diagvec; /* by node id: memoised diagonal gather */
    size_t capv, capl, caplists, nlists;
    int32_t *cse; /* hash table of element-wise lops: index + 1, 0 empty */
    size_t ncse, capcse;
    int no_cse; /* output copies are distinct */
    int failed;
} cstate;

static int cfail(cstate *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cfail(cstate *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->failed) nb_set_error(c->ctx, "compile: %s", msg);
    c->failed = 1;
    return -1;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*arr, nc * elem);
    if (!q) return -1;
    memset((char *)q + *cap * elem, 0, (nc - *cap) * elem);
    *arr = q;
    *cap = nc;
    return 0;
}

static int32_t new_value(cstate *c, nb_dim r, nb_dim cl, int kind) {
    nb_program *p = c->p;
    if (c->failed) return -1;
    if (grow((void **)&p->v, &c->capv, p->nv + 1, sizeof *p->v)) return cfail(c, "out of memory");
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

static int32_t root_of(const nb_program *p, int32_t v) {
    while (p->v[v].parent >= 0)
        v = p->v[v].parent;
    return v;
}

static int32_t const_value(cstate *c, double x) {
    nb_program *p = c->p;
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].kind == VK_CONST && p->v[i].cval == x &&
            (x != 0 || !signbit(x) == !signbit(p->v[i].cval)))
            return (int32_t)i;
    int32_t v = new_value(c, 1, 1, VK_CONST);
    if (v >= 0) p->v[v].cval = x;
    return v;
}

static int32_t dim_value(cstate *c, nb_dim d1, nb_dim d2) {
    nb_program *p = c->p;
    if (d1 > 0 && d2 > 0) return const_value(c, (double)d1 * (double)d2);
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].kind == VK_DIM && p->v[i].d1 == d1 && p->v[i].d2 == d2) return (int32_t)i;
    int32_t v = new_value(c, 1, 1, VK_DIM);
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
    int32_t v = new_value(c, r, cl, p->v[parent].kind == VK_INPUT ? VK_INPUT : VK_WORK);
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
        cfail(c, "out of memory");
        return NULL;
    }
    lop *L = &p->l[p->nl++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->dst = L->src[0] = L->src[1] = -1;
    L->list = -1;
    L->group = -1;
    L->inst = -1;
    L->alpha = 1;
    L->alpha_vid = -1;
    return L;
}

/* Sources of a lop: src[0], src[1], the alpha value, the gathered list. */
static int lop_nsrc(const lop *L) {
    return 3 + L->nlist;
}
static int32_t lop_src(const nb_program *p, const lop *L, int k) {
    if (k < 2) return L->src[k];
    if (k == 2) return L->alpha_vid;
    return p->lists[L->list + k - 3];
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
    int32_t d = new_value(c, r, cl, VK_WORK);
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
static int32_t emit_mop(cstate *c, int op, nb_dim R, nb_dim C, int32_t a, int32_t b) {
    if (c->failed || a < 0 || (nb_mop_arity[op] == 2 && b < 0)) return -1;
    nb_program *p = c->p;
    int32_t srcs[2] = {a, b};
    int modes[2] = {0, 0};
    for (int i = 0; i < (nb_mop_arity[op] == 2 ? 2 : 1); i++) {
        modes[i] = arg_mode(R, C, p->v[srcs[i]].rows, p->v[srcs[i]].cols);
        if (modes[i] < 0)
            return cfail(c, "internal: operand of data shape %lld x %lld in a %lld x %lld loop",
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
        d = emit_mop(c, NB_M_COPY, R, C, x.vid, -1);
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
 * negated terms and division for reciprocal factors. */
static int32_t emit_nary(cstate *c, const nb_node *y, int is_add, nb_dim R, nb_dim C, operand_fn get) {
    size_t n = y->nargs;
    int32_t acc = -1;
    int pass;
    /* first the plain terms, then the inverted ones, keeping order otherwise */
    for (pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            const nb_node *e = y->args[i];
            const nb_node *inv = is_add ? negated_term(e) : reciprocal_factor(e);
            if ((inv != NULL) != (pass == 1)) continue;
            if (inv && c->nv[inv->id].vid < 0) inv = NULL; /* not lowered: use as is */
            int32_t x = get(c, inv ? inv : e);
            if (x < 0) return -1;
            if (acc < 0) {
                acc = inv ? emit_mop(c, is_add ? NB_M_NEG : NB_M_RECIP, R, C, x, -1) : x;
            } else {
                int op = is_add ? (inv ? NB_M_SUB : NB_M_ADD) : (inv ? NB_M_DIV : NB_M_MUL);
                acc = emit_mop(c, op, R, C, acc, x);
            }
        }
    if (acc >= 0 && n == 1) acc = emit_mop(c, NB_M_COPY, R, C, acc, -1);
    return acc;
}

/* x^e for a constant exponent. */
static int32_t emit_pow_const(cstate *c, nb_dim R, nb_dim C, int32_t a, double e, int32_t evid) {
    if (e == 1) return a;
    if (e == 2) return emit_mop(c, NB_M_SQUARE, R, C, a, -1);
    if (e == 0.5) return emit_mop(c, NB_M_SQRT, R, C, a, -1);
    if (e == -1) return emit_mop(c, NB_M_RECIP, R, C, a, -1);
    if (e == 3) return emit_mop(c, NB_M_MUL, R, C, emit_mop(c, NB_M_SQUARE, R, C, a, -1), a);
    if (e == -2) return emit_mop(c, NB_M_RECIP, R, C, emit_mop(c, NB_M_SQUARE, R, C, a, -1), -1);
    return emit_mop(c, NB_M_POW, R, C, a, evid);
}

static int unary_mop(int op) {
    switch (op) {
    case NB_OP_EXP:
        return NB_M_EXP;
    case NB_OP_LOG:
        return NB_M_LOG;
    case NB_OP_SIN:
        return NB_M_SIN;
    case NB_OP_COS:
        return NB_M_COS;
    case NB_OP_TAN:
        return NB_M_TAN;
    case NB_OP_TANH:
        return NB_M_TANH;
    case NB_OP_SIGMOID:
        return NB_M_SIGMOID;
    case NB_OP_ABS:
        return NB_M_ABS;
    default:
        return NB_M_SIGN;
    }
}

static int binary_mop(int op) {
    switch (op) {
    case NB_OP_MAX:
        return NB_M_MAX;
    case NB_OP_MIN:
        return NB_M_MIN;
    case NB_OP_GT:
        return NB_M_GT;
    case NB_OP_GE:
        return NB_M_GE;
    case NB_OP_LT:
        return NB_M_LT;
    default:
        return NB_M_LE;
    }
}

/* s·x for a uniform s, keeping x's structure. */
static nval scale_value(cstate *c, nval x, const nb_node *xe, nval s) {
    if (nv_known(s, 1)) return x;
    nb_program *p = c->p;
    switch (x.st) {
    case ST_FILL:
    case ST_SID:
        return nv_make(x.st, emit_mop(c, NB_M_MUL, 1, 1, s.vid, x.vid));
    case ST_DIAG:
        return nv_make(ST_DIAG, emit_mop(c, NB_M_MUL, xe->type.rows, 1, s.vid, x.vid));
    default:
        if (x.vid < 0) return nv_make(x.st, -1);
        return nv_make(x.st, emit_mop(c, NB_M_MUL, p->v[x.vid].rows, p->v[x.vid].cols, s.vid, x.vid));
    }
}

/* Data shape of a dense or transposed value's stored matrix. */
static void stored_shape(const cstate *c, nval x, nb_dim *r, nb_dim *cl) {
    *r = c->p->v[x.vid].rows;
    *cl = c->p->v[x.vid].cols;
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
    if (a.st == ST_DIAG && b.st == ST_DIAG)
        return nv_make(ST_DIAG, emit_mop(c, NB_M_MUL, R, 1, a.vid, b.vid));
    if (K == 1) { /* outer product */
        if (a.st == ST_FILL && b.st == ST_FILL)
            return nv_make(ST_FILL, emit_mop(c, NB_M_MUL, 1, 1, a.vid, b.vid));
        int32_t av = ew_operand(c, A), bv = ew_operand(c, B);
        if (av < 0 || bv < 0) return nv_make(ST_DENSE, -1);
        int32_t d = emit_mop(c, NB_M_MUL, R, C, av, bv);
        return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, d);
    }
    if (a.st == ST_DIAG) { /* diag(d)·B: row scaling */
        int32_t bv = b.st == ST_FILL ? b.vid : (b.st == ST_DENSE ? b.vid : need_dense(c, B));
        return nv_make(ST_DENSE, emit_mop(c, NB_M_MUL, R, C, a.vid, bv));
    }
    if (b.st == ST_DIAG) { /* A·diag(e): column scaling */
        int32_t e = alias_value(c, b.vid, 1, B->type.rows, 0, 0);
        int32_t av = a.st == ST_FILL ? a.vid : (a.st == ST_DENSE ? a.vid : need_dense(c, A));
        return nv_make(ST_DENSE, emit_mop(c, NB_M_MUL, R, C, av, e));
    }
    if (a.st == ST_FILL && b.st == ST_FILL) {
        int32_t k = dim_value(c, K, 1);
        return nv_make(ST_FILL, emit_mop(c, NB_M_MUL, 1, 1, emit_mop(c, NB_M_MUL, 1, 1, a.vid, b.vid), k));
    }
    if (a.st == ST_FILL || b.st == ST_FILL) {
        /* 1ᵀ·B (column sums) or A·1 (row sums), times the uniform value */
        int left = a.st == ST_FILL;
        nval s = left ? a : b, m = left ? b : a;
        nb_dim mr, mc;
        stored_shape(c, m, &mr, &mc);
        int single = left ? C == 1 : R == 1; /* the result is uniform */
        if (single) {
            int32_t sum = emit_mop(c, NB_M_RSUM, mr, mc, m.vid, -1);
            return nv_make(ST_FILL, nv_known(s, 1) ? sum : emit_mop(c, NB_M_MUL, 1, 1, s.vid, sum));
        }
        /* column sums of B = row sums of its stored transpose, and vice versa */
        int colsum = left ? (m.st == ST_DENSE) : (m.st == ST_DENSE_T);
        nb_dim len = left ? C : R;
        lop *L = new_lop(c, colsum ? NB_I_COLSUM : NB_I_ROWSUM);
        if (!L) return nv_make(ST_DENSE, -1);
        L->src[0] = m.vid;
        if (s.known) L->alpha = s.cval;
        int32_t vec = finish_lop(c, L, len, 1);
        if (!s.known) vec = emit_mop(c, NB_M_MUL, len, 1, s.vid, vec);
        if (left) { /* rows all equal the column sums */
            int32_t row = alias_value(c, vec, 1, C, 0, 0);
            if (R == 1) return nv_make(ST_DENSE, row);
            return nv_make(ST_DENSE, emit_mop(c, NB_M_COPY, R, C, row, -1));
        }
        if (C == 1) return nv_make(ST_DENSE, vec);
        return nv_make(ST_DENSE, emit_mop(c, NB_M_COPY, R, C, vec, -1));
    }
    /* dense x dense */
    if (a.st != ST_DENSE && a.st != ST_DENSE_T) a = nv_make(ST_DENSE, need_dense(c, A));
    if (b.st != ST_DENSE && b.st != ST_DENSE_T) b = nv_make(ST_DENSE, need_dense(c, B));
    if (a.vid < 0 || b.vid < 0) return nv_make(ST_DENSE, -1);
    if (y->type.kind == NB_SCALAR) { /* row · column: a dot product */
        int32_t prod = emit_mop(c, NB_M_MUL, K, 1, a.vid, b.vid);
        return nv_make(ST_FILL, emit_mop(c, NB_M_RSUM, K, 1, prod, -1));
    }
    if (y->type.kind == NB_VECTOR) {
        lop *L = new_lop(c, NB_I_GEMV);
        if (!L) return nv_make(ST_DENSE, -1);
        L->src[0] = a.vid;
        L->src[1] = b.vid;
        L->ta = a.st == ST_DENSE_T;
        return nv_make(ST_DENSE, finish_lop(c, L, R, 1));
    }
    if (y->type.kind == NB_ROW) {
        lop *L = new_lop(c, NB_I_GEMV);
        if (!L) return nv_make(ST_DENSE, -1);
        L->src[0] = b.vid;
        L->src[1] = a.vid;
        L->ta = b.st == ST_DENSE;
        return nv_make(ST_DENSE, finish_lop(c, L, 1, C));
    }
    lop *L = new_lop(c, NB_I_GEMM);
    if (!L) return nv_make(ST_DENSE, -1);
    L->src[0] = a.vid;
    L->src[1] = b.vid;
    L->ta = a.st == ST_DENSE_T;
    L->tb = b.st == ST_DENSE_T;
    return nv_make(ST_DENSE, finish_lop(c, L, R, C));
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

static int f_zero_at_zero(int op) {
    return op == NB_OP_SIN || op == NB_OP_TAN || op == NB_OP_TANH || op == NB_OP_ABS || op == NB_OP_SIGN;
}

static nval lower_node(cstate *c, const nb_node *y) {
    nb_program *p = c->p;
    nb_dim R = y->type.rows, C = y->type.cols;
    switch ((nb_op)y->op) {
    case NB_OP_CONST: {
        nval r = nv_make(ST_FILL, const_value(c, y->a.c.val));
        r.known = 1;
        r.cval = y->a.c.val;
        return r;
    }
    case NB_OP_VAR: {
        for (size_t i = 0; i < p->nin; i++)
            if (c->inputs[i] == y)
                return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, p->in_vid[i]);
        cfail(c, "variable '%s' is used but is not an input of the program", y->a.name);
        return nv_make(ST_DENSE, -1);
    }
    case NB_OP_DIMVAL:
        return nv_make(ST_FILL, dim_value(c, y->a.dim, 1));
    case NB_OP_IDENTITY: {
        nval r = nv_make(ST_SID, const_value(c, 1));
        r.known = 1;
        r.cval = 1;
        return r;
    }
    case NB_OP_ADD:
    case NB_OP_MUL:
        return lower_add_mul(c, y);
    case NB_OP_POW: {
        const nb_node *A = y->args[0], *E = y->args[1];
        nval a = c->nv[A->id], e = c->nv[E->id];
        if (e.st == ST_FILL && e.known && E->type.kind == NB_SCALAR) {
            if (a.st == ST_FILL) return nv_make(ST_FILL, emit_pow_const(c, 1, 1, a.vid, e.cval, e.vid));
            if ((a.st == ST_DIAG || a.st == ST_SID) && e.cval > 0)
                return nv_make(a.st, emit_pow_const(c, a.st == ST_DIAG ? R : 1, 1, a.vid, e.cval, e.vid));
            if (a.st == ST_DENSE_T) return nv_make(ST_DENSE_T, emit_pow_const(c, C, R, a.vid, e.cval, e.vid));
            return nv_make(ST_DENSE, emit_pow_const(c, R, C, ew_operand(c, A), e.cval, e.vid));
        }
        if (a.st == ST_FILL && e.st == ST_FILL)
            return nv_make(ST_FILL, emit_mop(c, NB_M_POW, 1, 1, a.vid, e.vid));
        return nv_make(ST_DENSE, emit_mop(c, NB_M_POW, R, C, ew_operand(c, A), ew_operand(c, E)));
    }
    case NB_OP_MATMUL:
        return lower_matmul(c, y);
    case NB_OP_TRANSPOSE: {
        nval a = c->nv[y->args[0]->id];
        if (a.vid < 0) return a;
        switch (a.st) {
        case ST_DENSE:
            if (y->type.kind == NB_MATRIX) return nv_make(ST_DENSE_T, a.vid);
            return nv_make(ST_DENSE, alias_value(c, a.vid, R, C, 0, 0));
        case ST_DENSE_T:
            return nv_make(ST_DENSE, a.vid);
        default:
            return a;
        }
    }
    case NB_OP_SUM: {
        const nb_node *A = y->args[0];
        nval a = c->nv[A->id];
        if (a.vid < 0) return a;
        switch (a.st) {
        case ST_FILL:
            if (A->type.kind == NB_SCALAR) return a;
            return nv_make(ST_FILL,
                           emit_mop(c, NB_M_MUL, 1, 1, a.vid, dim_value(c, A->type.rows, A->type.cols)));
        case ST_SID:
            return nv_make(ST_FILL, emit_mop(c, NB_M_MUL, 1, 1, a.vid, dim_value(c, A->type.rows, 1)));
        default: {
            nb_dim r = p->v[a.vid].rows, cl = p->v[a.vid].cols;
            return nv_make(ST_FILL, emit_mop(c, NB_M_RSUM, r, cl, a.vid, -1));
        }
        }
    }
    case NB_OP_DIAG: {
        nval a = c->nv[y->args[0]->id];
        if (a.vid < 0) return a;
        if (a.st == ST_FILL) {
            a.st = ST_SID;
            return a;
        }
        int32_t d = a.st == ST_DENSE ? a.vid : need_dense(c, y->args[0]);
        return nv_make(ST_DIAG, alias_value(c, d, R, 1, 0, 0));
    }
    case NB_OP_DIAGPART: {
        nval a = c->nv[y->args[0]->id];
        if (a.vid < 0) return a;
        if (a.st == ST_DIAG) return nv_make(ST_DENSE, a.vid);
        if (a.st == ST_SID || a.st == ST_FILL) {
            a.st = ST_FILL;
            return a;
        }
        return nv_make(ST_DENSE, diag_operand(c, y->args[0]));
    }
    case NB_OP_VECLIT:
    case NB_OP_MATLIT: {
        lop *L = new_lop(c, NB_I_GATHER);
        if (!L) return nv_make(ST_DENSE, -1);
        int32_t li = (int32_t)(L - p->l);
        if (grow((void **)&p->lists, &c->caplists, c->nlists + y->nargs, sizeof *p->lists)) {
            cfail(c, "out of memory");
            return nv_make(ST_DENSE, -1);
        }
        p->l[li].list = (int32_t)c->nlists;
        p->l[li].nlist = (int32_t)y->nargs;
        for (size_t i = 0; i < y->nargs; i++)
            p->lists[c->nlists++] = c->nv[y->args[i]->id].vid;
        for (size_t i = 0; i < y->nargs; i++)
            if (c->nv[y->args[i]->id].vid < 0) return nv_make(ST_DENSE, -1);
        return nv_make(ST_DENSE, finish_lop(c, &p->l[li], R, C));
    }
    case NB_OP_COLUMN: {
        const nb_node *A = y->args[0];
        nval a = c->nv[A->id];
        int64_t k = y->a.index[0];
        if (a.vid < 0) return a;
        if (a.st == ST_FILL) return a;
        if (a.st == ST_DENSE_T) {
            int32_t al = alias_value(c, a.vid, R, 1, k, 0);
            return nv_make(y->type.kind == NB_SCALAR ? ST_FILL : ST_DENSE, al);
        }
        int32_t d = a.st == ST_DENSE ? a.vid : need_dense(c, A);
        if (A->type.kind == NB_ROW || A->type.rows == 1)
            return nv_make(ST_FILL, alias_value(c, d, 1, 1, 0, k));
        if (A->type.cols == 1) return nv_make(ST_DENSE, alias_value(c, d, R, 1, 0, 0));
        lop *L = new_lop(c, NB_I_STRIDED);
        if (!L) return nv_make(ST_DENSE, -1);
        L->src[0] = d;
        L->skind = SK_COLUMN;
        L->soff = k;
        return nv_make(ST_DENSE, finish_lop(c, L, R, 1));
    }
    case NB_OP_ENTRY: {
        const nb_node *A = y->args[0];
        nval a = c->nv[A->id];
        int64_t i = y->a.index[0], j = y->a.index[1];
        if (a.vid < 0 || a.st == ST_FILL) return a;
        switch (a.st) {
        case ST_DENSE:
            return nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, i, j));
        case ST_DENSE_T:
            return nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, j, i));
        case ST_DIAG:
            if (i == j) return nv_make(ST_FILL, alias_value(c, a.vid, 1, 1, i, 0));
            break;
        default:
            if (i == j) return nv_make(ST_FILL, a.vid);
            break;
        }
        nval z = nv_make(ST_FILL, const_value(c, 0));
        z.known = 1;
        return z;
    }
    case NB_OP_EXP:
    case NB_OP_LOG:
    case NB_OP_SIN:
    case NB_OP_COS:
    case NB_OP_TAN:
    case NB_OP_TANH:
    case NB_OP_SIGMOID:
    case NB_OP_ABS:
    case NB_OP_SIGN: {
        const nb_node *A = y->args[0];
        nval a = c->nv[A->id];
        int op = unary_mop(y->op);
        if (a.vid < 0) return a;
        if (a.st == ST_FILL) return nv_make(ST_FILL, emit_mop(c, op, 1, 1, a.vid, -1));
        if ((a.st == ST_DIAG || a.st == ST_SID) && f_zero_at_zero(y->op))
            return nv_make(a.st, emit_mop(c, op, a.st == ST_DIAG ? R : 1, 1, a.vid, -1));
        if (a.st == ST_DENSE_T) return nv_make(ST_DENSE_T, emit_mop(c, op, C, R, a.vid, -1));
        return nv_make(ST_DENSE, emit_mop(c, op, R, C, ew_operand(c, A), -1));
    }
    case NB_OP_MAX:
    case NB_OP_MIN:
    case NB_OP_GT:
    case NB_OP_GE:
    case NB_OP_LT:
    case NB_OP_LE: {
        const nb_node *A = y->args[0], *B = y->args[1];
        int op = binary_mop(y->op);
        if (c->nv[A->id].st == ST_FILL && c->nv[B->id].st == ST_FILL)
            return nv_make(ST_FILL, emit_mop(c, op, 1, 1, c->nv[A->id].vid, c->nv[B->id].vid));
        if (all_transposed(c, y))
            return nv_make(ST_DENSE_T, emit_mop(c, op, C, R, c->nv[A->id].vid, c->nv[B->id].vid));
        return nv_make(ST_DENSE, emit_mop(c, op, R, C, ew_operand(c, A), ew_operand(c, B)));
    }
    case NB_OP_SOFTMAX:
    case NB_OP_LOGSOFTMAX: {
        int32_t z = need_dense(c, y->args[0]);
        return nv_make(ST_DENSE,
                       emit_kernel(c, y->op == NB_OP_SOFTMAX ? NB_I_SOFTMAX : NB_I_LOGSOFTMAX, R, C, z, -1));
    }
    case NB_OP_SOFTMAX_XENT: {
        int32_t z = need_dense(c, y->args[0]), t = need_dense(c, y->args[1]);
        if (t < 0) return nv_make(ST_FILL, -1);
        return nv_make(ST_FILL, emit_kernel(c, NB_I_XENT, 1, 1, z, t));
    }
    default:
        break;
    }
    cfail(c, "cannot compile operator %s", y->op < NB_OP_COUNT ? nb_ops[y->op].name : "?");
    return nv_make(ST_DENSE, -1);
}

/* ---- outputs ---------------------------------------------------------------- */
/* Is alias v the whole of its storage (offset 0, same number of entries)? */
static bool whole_alias(const nb_program *p, int32_t v) {
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

static int lower_outputs(cstate *c, nb_expr *const *outputs) {
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
                     whole_alias(p, vid);
        if (!place) {
            nb_dim vr = p->v[vid].rows, vc = p->v[vid].cols;
            c->no_cse = 1;
            int32_t cp = emit_mop(c, NB_M_COPY, vr, vc, vid, -1);
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

/* ---- dead lops ---------------------------------------------------------------- */
static void mark_live(nb_program *p) {
    uint8_t *need = calloc(p->nv, 1);
    if (!need) return; /* everything stays live */
    for (size_t i = 0; i < p->nout; i++)
        need[root_of(p, p->out_vid[i])] = 1;
    for (size_t li = p->nl; li-- > 0;) {
        lop *L = &p->l[li];
        L->live = need[L->dst] || L->forced;
        if (!L->live) continue;
        for (int k = 0; k < lop_nsrc(L); k++)
            if (lop_src(p, L, k) >= 0) need[root_of(p, lop_src(p, L, k))] = 1;
    }
    free(need);
}

/* ---- scale folding ------------------------------------------------------------ */
/* Marks the lops computing v live again (v may be an equal earlier result). */
static void revive(nb_program *p, int32_t v) {
    int32_t *stack = malloc((p->nl + 1) * sizeof *stack);
    size_t top = 0;
    if (!stack) return;
    int32_t d = p->v[root_of(p, v)].def;
    if (d >= 0 && !p->l[d].live) {
        p->l[d].live = 1;
        stack[top++] = d;
    }
    while (top) {
        const lop *L = &p->l[stack[--top]];
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t s = lop_src(p, L, k);
            if (s < 0) continue;
            int32_t e = p->v[root_of(p, s)].def;
            if (e >= 0 && !p->l[e].live) {
                p->l[e].live = 1;
                stack[top++] = e;
            }
        }
    }
    free(stack);
}

/* s·(A·B) and (A·B)/s for a uniform s: the product's alpha instead of a pass
 * over its result (the gradient (1/B)·Xᵀ·G is one gemm).  Runs after dead-
 * code marking; the scalar lops it adds are live. */
static void fold_scales(cstate *c) {
    nb_program *p = c->p;
    int32_t *uses = calloc(p->nv, sizeof *uses);
    if (!uses) return; /* an optimisation: skip it */
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live) continue;
        for (int k = 0; k < lop_nsrc(L); k++)
            if (lop_src(p, L, k) >= 0) uses[root_of(p, lop_src(p, L, k))]++;
    }
    for (size_t i = 0; i < p->nout; i++)
        uses[root_of(p, p->out_vid[i])] += 2;
    const size_t nl = p->nl;
    for (size_t li = 0; li < nl && !c->failed; li++) {
        if (!p->l[li].live || p->l[li].kind != LK_MOP || (p->l[li].op != NB_M_MUL && p->l[li].op != NB_M_DIV))
            continue;
        for (int k = 0; k < 2; k++) {
            const lop *L = &p->l[li];
            int32_t x = L->src[k], sc = L->src[1 - k];
            if ((L->op == NB_M_DIV && k != 0) || L->mode[k] != NB_A_FULL || L->mode[1 - k] != NB_A_SCAL)
                continue;
            if (p->v[x].parent >= 0 || p->v[x].def < 0 || uses[x] != 1) continue;
            int32_t ki = p->v[x].def;
            int kind = p->l[ki].kind;
            if (kind != NB_I_GEMM && kind != NB_I_GEMV && kind != NB_I_COLSUM && kind != NB_I_ROWSUM)
                continue;
            int op = L->op;
            int32_t dst = L->dst;
            uint8_t inv = L->invariant;
            int32_t a = sc;
            size_t before = p->nl;
            if (op == NB_M_DIV) a = emit_mop(c, NB_M_RECIP, 1, 1, sc, -1);
            if (p->l[ki].alpha_vid >= 0) a = emit_mop(c, NB_M_MUL, 1, 1, p->l[ki].alpha_vid, a);
            if (a < 0) return;
            (void)before;
            revive(p, a);
            lop *K = &p->l[ki];
            K->alpha_vid = a;
            K->dst = dst;
            K->invariant = inv;
            p->v[dst].def = ki;
            p->v[x].def = -1;
            p->l[li].live = 0;
            break;
        }
    }
    free(uses);
}

/* ---- fusion ------------------------------------------------------------------- */
/* Element-wise lops over the same iteration space join one group when they
 * read each other's values element by element.  A value read any other way
 * (broadcast, reduction result, other space) makes the reader's group depend
 * on the producer's; groups stay open until a kernel needs their values, and
 * a join that would close a dependency cycle is refused.  Emitting a group
 * first emits the groups it depends on. */
static int32_t gfind(nb_program *p, int32_t g) {
    while (p->g[g].parent != g)
        g = p->g[g].parent = p->g[p->g[g].parent].parent;
    return g;
}

typedef struct {
    nb_program *p;
    size_t capg, capci;
    int32_t *stack;
    size_t capstack;
    uint32_t stamp;
    int oom;
} fstate;

static void emit_inst(fstate *f, int is_group, int32_t id) {
    nb_program *p = f->p;
    if (grow((void **)&p->ci, &f->capci, p->nci + 1, sizeof *p->ci)) {
        f->oom = 1;
        return;
    }
    p->ci[p->nci++] = (cinst){is_group, id};
}

static int push(fstate *f, size_t *top, int32_t g) {
    if (grow((void **)&f->stack, &f->capstack, *top + 1, sizeof *f->stack)) return f->oom = 1, -1;
    f->stack[(*top)++] = g;
    return 0;
}

/* Emits group g after every group it depends on (iterative post-order). */
static void seal(fstate *f, int32_t g) {
    nb_program *p = f->p;
    size_t top = 0;
    g = gfind(p, g);
    if (p->g[g].sealed || push(f, &top, g)) return;
    while (top) {
        int32_t x = gfind(p, f->stack[top - 1]);
        if (p->g[x].sealed) {
            top--;
            continue;
        }
        int32_t next = -1;
        for (size_t k = 0; k < p->g[x].nd && next < 0; k++) {
            int32_t d = gfind(p, p->g[x].deps[k]);
            if (d != x && !p->g[d].sealed) next = d;
        }
        if (next >= 0) {
            if (push(f, &top, next)) return;
            continue;
        }
        p->g[x].sealed = 1;
        emit_inst(f, 1, x);
        top--;
    }
}

/* Does group from (transitively) depend on group to?  Only open groups can
 * lead to an open group. */
static bool reaches(fstate *f, int32_t from, int32_t to) {
    nb_program *p = f->p;
    size_t top = 0;
    from = gfind(p, from);
    to = gfind(p, to);
    if (from == to) return true;
    f->stamp++;
    if (push(f, &top, from)) return true;
    p->g[from].mark = f->stamp;
    while (top) {
        int32_t x = f->stack[--top];
        for (size_t k = 0; k < p->g[x].nd; k++) {
            int32_t d = gfind(p, p->g[x].deps[k]);
            if (d == to) return true;
            if (p->g[d].sealed || p->g[d].mark == f->stamp) continue;
            p->g[d].mark = f->stamp;
            if (push(f, &top, d)) return true;
        }
    }
    return false;
}

static void add_dep(fstate *f, int32_t g, int32_t d) {
    nb_program *p = f->p;
    g = gfind(p, g);
    d = gfind(p, d);
    if (g == d) return;
    cgroup *G = &p->g[g];
    for (size_t k = 0; k < G->nd; k++)
        if (G->deps[k] == d) return;
    if (grow((void **)&G->deps, &G->capd, G->nd + 1, sizeof *G->deps)) {
        f->oom = 1;
        return;
    }
    G->deps[G->nd++] = d;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int32_t merge_groups(fstate *f, int32_t a, int32_t b) {
    nb_program *p = f->p;
    cgroup *A = &p->g[a], *B = &p->g[b];
    if (A->n < B->n) return merge_groups(f, b, a);
    if (grow((void **)&A->lops, &A->cap, A->n + B->n, sizeof *A->lops)) {
        f->oom = 1;
        return a;
    }
    memcpy(A->lops + A->n, B->lops, B->n * sizeof *B->lops);
    A->n += B->n;
    qsort(A->lops, A->n, sizeof *A->lops, cmp_i32);
    B->parent = a;
    for (size_t k = 0; k < B->nd; k++)
        add_dep(f, a, B->deps[k]);
    free(B->lops);
    free(B->deps);
    B->lops = B->deps = NULL;
    B->n = B->cap = B->nd = B->capd = 0;
    return a;
}

/* The open group that produced value s, or -1. */
static int32_t open_group_of(nb_program *p, int32_t s) {
    int32_t d = p->v[root_of(p, s)].def;
    if (d < 0 || p->l[d].kind != LK_MOP || p->l[d].group < 0) return -1;
    int32_t G = gfind(p, p->l[d].group);
    return p->g[G].sealed ? -1 : G;
}

/* Ready lops in a binary heap keyed by (is a kernel, index): element-wise
 * work that is ready goes before products and gathers, so that it can join
 * the open groups before a kernel closes them. */
static int64_t ready_key(const nb_program *p, int32_t li) {
    return (int64_t)(p->l[li].kind != LK_MOP) << 32 | li;
}

static void heap_push(const nb_program *p, int32_t *h, size_t *n, int32_t li) {
    size_t i = (*n)++;
    h[i] = li;
    while (i > 0 && ready_key(p, h[(i - 1) / 2]) > ready_key(p, h[i])) {
        int32_t t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static int32_t heap_pop(const nb_program *p, int32_t *h, size_t *n) {
    int32_t top = h[0];
    h[0] = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < *n && ready_key(p, h[a]) < ready_key(p, h[m])) m = a;
        if (b < *n && ready_key(p, h[b]) < ready_key(p, h[m])) m = b;
        if (m == i) break;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

/* The lop that defines source k of L when it is live and of class inv. */
static int32_t source_lop(const nb_program *p, const lop *L, int k, int inv) {
    int32_t s = lop_src(p, L, k);
    if (s < 0) return -1;
    int32_t d = p->v[root_of(p, s)].def;
    if (d < 0 || !p->l[d].live || p->l[d].invariant != inv) return -1;
    return d;
}

/* Groups the live lops whose invariance is inv; emits instructions. */
static void fuse(fstate *f, int inv) {
    nb_program *p = f->p;
    size_t first_group = p->ng;
    /* users of each lop (CSR) and pending source counts */
    int32_t *pending = calloc(p->nl + 1, sizeof *pending), *ustart = calloc(p->nl + 2, sizeof *ustart);
    int32_t *users = NULL, *heap = malloc((p->nl + 1) * sizeof *heap);
    size_t nusers = 0, nheap = 0;
    if (!pending || !ustart || !heap) goto oom;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live || L->invariant != inv) continue;
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t d = source_lop(p, L, k, inv);
            if (d < 0) continue;
            pending[li]++;
            ustart[d + 1]++;
            nusers++;
        }
    }
    for (size_t li = 0; li < p->nl; li++)
        ustart[li + 1] += ustart[li];
    users = malloc((nusers + 1) * sizeof *users);
    if (!users) goto oom;
    {
        int32_t *fill = calloc(p->nl + 1, sizeof *fill);
        if (!fill) goto oom;
        for (size_t li = 0; li < p->nl; li++) {
            const lop *L = &p->l[li];
            if (!L->live || L->invariant != inv) continue;
            for (int k = 0; k < lop_nsrc(L); k++) {
                int32_t d = source_lop(p, L, k, inv);
                if (d >= 0) users[ustart[d] + fill[d]++] = (int32_t)li;
            }
        }
        free(fill);
    }
    for (size_t li = 0; li < p->nl; li++)
        if (p->l[li].live && p->l[li].invariant == inv && pending[li] == 0)
            heap_push(p, heap, &nheap, (int32_t)li);
    while (nheap && !f->oom) {
        size_t li = (size_t)heap_pop(p, heap, &nheap);
        lop *L = &p->l[li];
        for (int32_t u = ustart[li]; u < ustart[li + 1]; u++)
            if (--pending[users[u]] == 0) heap_push(p, heap, &nheap, users[u]);
        if (L->kind != LK_MOP) {
            for (int k = 0; k < lop_nsrc(L); k++) {
                int32_t s = lop_src(p, L, k);
                int32_t G = s >= 0 ? open_group_of(p, s) : -1;
                if (G >= 0) seal(f, G);
            }
            emit_inst(f, 0, (int32_t)li);
            continue;
        }
        int32_t cand[2], deps[2];
        int nc = 0, nd = 0;
        for (int k = 0; k < 2; k++) {
            int32_t s = L->src[k];
            int32_t G = s >= 0 ? open_group_of(p, s) : -1;
            if (G < 0) continue;
            int32_t r = root_of(p, s);
            bool aligned = p->g[G].R == L->sr && p->g[G].C == L->sc && !p->v[r].is_red &&
                           L->mode[k] == NB_A_FULL && whole_alias(p, s);
            if (aligned)
                cand[nc++] = G;
            else
                deps[nd++] = G;
        }
        /* a candidate is out if a group we must run after depends on it */
        int32_t gsel = -1;
        for (int i = 0; i < nc; i++) {
            bool viable = true;
            for (int j = 0; j < nd && viable; j++)
                viable = !reaches(f, deps[j], cand[i]);
            if (!viable) {
                deps[nd++] = cand[i];
                continue;
            }
            if (gsel < 0 || gfind(p, gsel) == gfind(p, cand[i])) {
                gsel = gfind(p, cand[i]);
            } else if (reaches(f, cand[i], gsel)) {
                add_dep(f, cand[i], gsel);
                gsel = gfind(p, cand[i]);
            } else if (reaches(f, gsel, cand[i])) {
                add_dep(f, gsel, cand[i]);
            } else {
                gsel = merge_groups(f, gfind(p, gsel), gfind(p, cand[i]));
            }
        }
        if (gsel < 0) /* a recent open group over the same space (loop fusion) */
            for (size_t g = p->ng, tries = 0; g-- > first_group && tries < 8;) {
                if (p->g[g].parent != (int32_t)g || p->g[g].sealed) continue;
                tries++;
                if (p->g[g].R != L->sr || p->g[g].C != L->sc) continue;
                bool viable = true;
                for (int j = 0; j < nd && viable; j++)
                    viable = !reaches(f, deps[j], (int32_t)g);
                if (viable) {
                    gsel = (int32_t)g;
                    break;
                }
            }
        if (gsel < 0) {
            if (grow((void **)&p->g, &f->capg, p->ng + 1, sizeof *p->g)) {
                f->oom = 1;
                return;
            }
            gsel = (int32_t)p->ng++;
            p->g[gsel] = (cgroup){L->sr, L->sc, gsel, 0, NULL, 0, 0, NULL, 0, 0, 0};
        }
        for (int j = 0; j < nd; j++)
            add_dep(f, gsel, deps[j]);
        for (int i = 0; i < nc; i++)
            if (gfind(p, cand[i]) != gfind(p, gsel)) add_dep(f, gsel, cand[i]);
        cgroup *G = &p->g[gfind(p, gsel)];
        if (grow((void **)&G->lops, &G->cap, G->n + 1, sizeof *G->lops)) {
            f->oom = 1;
            return;
        }
        G->lops[G->n++] = (int32_t)li;
        L->group = gfind(p, gsel);
    }
    for (size_t g = first_group; g < p->ng && !f->oom; g++)
        if (p->g[g].parent == (int32_t)g && !p->g[g].sealed) seal(f, (int32_t)g);
    free(pending);
    free(ustart);
    free(users);
    free(heap);
    return;
oom:
    f->oom = 1;
    free(pending);
    free(ustart);
    free(users);
    free(heap);
}

/* ---- compile ---------------------------------------------------------------- */
static void program_free_compiled(nb_program *p);

static int copy_dims(cstate *c, const nb_node *const *nodes, size_t n) {
    nb_program *p = c->p;
    for (size_t i = 0; i < n; i++) {
        nb_dim ds[2] = {nodes[i]->type.rows, nodes[i]->type.cols};
        nb_dim extra = nodes[i]->op == NB_OP_DIMVAL || nodes[i]->op == NB_OP_IDENTITY ? nodes[i]->a.dim : 1;
        nb_dim all[3] = {ds[0], ds[1], extra};
        for (int k = 0; k < 3; k++) {
            nb_dim d = all[k];
            if (d > 0) continue;
            size_t j = 0;
            while (j < p->ndims && p->dim_ids[j] != d)
                j++;
            if (j < p->ndims) continue;
            char name[128];
            nb_dim_name(c->ctx, d, name, sizeof name);
            char **nn = realloc(p->dim_names, (p->ndims + 1) * sizeof *nn);
            if (nn) p->dim_names = nn;
            nb_dim *ni = realloc(p->dim_ids, (p->ndims + 1) * sizeof *ni);
            if (ni) p->dim_ids = ni;
            int64_t *nvv = realloc(p->dim_vals, (p->ndims + 1) * sizeof *nvv);
            if (nvv) p->dim_vals = nvv;
            if (!nn || !ni || !nvv) return cfail(c, "out of memory");
            p->dim_names[p->ndims] = dupstr(name);
            p->dim_ids[p->ndims] = d;
            p->dim_vals[p->ndims] = nb_dim_value(c->ctx, d);
            if (!p->dim_names[p->ndims]) return cfail(c, "out of memory");
            p->ndims++;
        }
    }
    return 0;
}

static int program_init(nb_program *p);

nb_program *nb_compile(nb_ctx *ctx, size_t nout, nb_expr *const *outputs, size_t nin, nb_expr *const *inputs,
                       nb_dtype dtype, unsigned flags) {
    if (!ctx) return NULL;
    if (nout == 0 || !outputs) {
        nb_set_error(ctx, "compile: no outputs");
        return NULL;
    }
    if (nin && !inputs) {
        nb_set_error(ctx, "compile: inputs is NULL");
        return NULL;
    }
    if (dtype != NB_F64 && dtype != NB_F32) {
        nb_set_error(ctx, "compile: unknown dtype %d", (int)dtype);
        return NULL;
    }
    if (nin + nout + 1 > 255) {
        nb_set_error(ctx, "compile: at most 254 inputs and outputs together, got %zu", nin + nout);
        return NULL;
    }
    for (size_t i = 0; i < nout; i++)
        if (!outputs[i]) {
            char prev[sizeof ctx->error];
            snprintf(prev, sizeof prev, "%s", nb_error(ctx));
            nb_set_error(ctx, "compile: output %zu is NULL%s%s", i, prev[0] ? " after: " : "", prev);
            return NULL;
        }
    for (size_t i = 0; i < nin; i++) {
        if (!inputs[i] || inputs[i]->op != NB_OP_VAR) {
            nb_set_error(ctx, "compile: input %zu is not a variable", i);
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (inputs[j] == inputs[i]) {
                nb_set_error(ctx, "compile: input '%s' is listed twice", inputs[i]->a.name);
                return NULL;
            }
    }
    nb_program *p = calloc(1, sizeof *p);
    cstate c = {ctx, p, inputs, NULL, NULL, NULL, 0, 0, 0, 0, NULL, 0, 0, 0, 0};
    nb_node **order = NULL;
    uint8_t *seen = NULL;
    if (!p) {
        nb_set_error(ctx, "out of memory");
        return NULL;
    }
    p->dtype = dtype;
    p->k = dtype == NB_F64 ? &nb_kernels_f64 : &nb_kernels_f32;
    p->flags = flags;
    p->check_finite = (flags & NB_COMPILE_CHECK_FINITE) != 0;
    p->nthreads = 1;
    p->nin = nin;
    p->nout = nout;
    p->in_names = calloc(nin + 1, sizeof *p->in_names);
    p->in_types = calloc(nin + 1, sizeof *p->in_types);
    p->in_vid = calloc(nin + 1, sizeof *p->in_vid);
    p->out_types = calloc(nout, sizeof *p->out_types);
    p->out_vid = calloc(nout, sizeof *p->out_vid);
    p->out_st = calloc(nout, sizeof *p->out_st);
    if (!p->in_names || !p->in_types || !p->in_vid || !p->out_types || !p->out_vid || !p->out_st) {
        cfail(&c, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nin; i++) {
        p->in_names[i] = dupstr(inputs[i]->a.name);
        p->in_types[i] = inputs[i]->type;
        if (!p->in_names[i]) {
            cfail(&c, "out of memory");
            goto fail;
        }
        p->in_vid[i] = new_value(&c, inputs[i]->type.rows, inputs[i]->type.cols, VK_INPUT);
        if (p->in_vid[i] < 0) goto fail;
        p->v[p->in_vid[i]].index = (int32_t)i;
        p->v[p->in_vid[i]].invariant = 0;
    }
    for (size_t i = 0; i < nout; i++)
        p->out_types[i] = outputs[i]->type;
    if (copy_dims(&c, (const nb_node *const *)inputs, nin) ||
        copy_dims(&c, (const nb_node *const *)outputs, nout))
        goto fail;

    /* 1. reachable nodes, in id order */
    uint32_t maxid = 0;
    for (size_t i = 0; i < nout; i++)
        maxid = outputs[i]->id > maxid ? outputs[i]->id : maxid;
    size_t n = (size_t)maxid + 1;
    seen = calloc(n, 1);
    order = malloc(n * sizeof *order);
    c.nv = malloc(n * sizeof *c.nv);
    c.dense = malloc(n * sizeof *c.dense);
    c.diagvec = malloc(n * sizeof *c.diagvec);
    if (!seen || !order || !c.nv || !c.dense || !c.diagvec) {
        cfail(&c, "out of memory");
        goto fail;
    }
    size_t top = 0;
    for (size_t i = 0; i < nout; i++)
        if (!seen[outputs[i]->id]) {
            seen[outputs[i]->id] = 1;
            order[top++] = outputs[i];
        }
    while (top) {
        const nb_node *x = order[--top];
        for (size_t k = 0; k < x->nargs; k++)
            if (!seen[x->args[k]->id]) {
                seen[x->args[k]->id] = 1;
                order[top++] = x->args[k];
            }
    }
    size_t nn = 0;
    for (size_t id = 0; id < n; id++)
        if (seen[id]) order[nn++] = ctx->nodes[id];
    if (copy_dims(&c, (const nb_node *const *)order, nn)) goto fail;

    /* 2. lower */
    for (size_t i = 0; i < n; i++) {
        c.nv[i] = nv_make(ST_DENSE, -1);
        c.dense[i] = c.diagvec[i] = -1;
    }
    for (size_t i = 0; i < nn && !c.failed; i++) {
        nval r = lower_node(&c, order[i]);
        if (r.vid < 0 && !c.failed) cfail(&c, "internal: could not lower %s", nb_ops[order[i]->op].name);
        c.nv[order[i]->id] = r;
    }
    if (c.failed) goto fail;
    /* 3. outputs, 4. dead code */
    if (lower_outputs(&c, outputs)) goto fail;
    mark_live(p);
    fold_scales(&c);
    if (c.failed) goto fail;
    /* 5./6. hoisting and fusion */
    {
        fstate f = {p, 0, 0, NULL, 0, 0, 0};
        fuse(&f, 1);
        p->ninit = p->nci;
        fuse(&f, 0);
        free(f.stack);
        if (f.oom) {
            cfail(&c, "out of memory");
            goto fail;
        }
    }
    free(seen);
    free(order);
    free(c.nv);
    free(c.dense);
    free(c.diagvec);
    free(c.cse);
    c.cse = NULL;
    seen = NULL;
    order = NULL;
    c.nv = NULL;
    c.dense = c.diagvec = NULL;
    if (program_init(p) == NB_ERR_NOMEM) {
        nb_set_error(ctx, "compile: %s", p->err);
        goto fail_quiet;
    }
#if defined(NB_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
    openblas_set_num_threads(1); /* threads are the program's business (nb_program_set_threads) */
#endif
    return p;
fail:
    if (!c.failed) nb_set_error(ctx, "compile: failed");
fail_quiet:
    free(c.cse);
    free(seen);
    free(order);
    free(c.nv);
    free(c.dense);
    free(c.diagvec);
    nb_program_free(p);
    return NULL;
}

/* ---- planning ------------------------------------------------------------------ */
static int64_t resolve(const nb_program *p, nb_dim d) {
    if (d > 0) return d;
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_ids[j] == d) return p->dim_vals[j];
    return 0;
}

typedef struct {
    int64_t off, size, end;
} block;

static int64_t plan_regions(nb_program *p, size_t *nacc);

/* Instruction index of each lop, and each root's live interval. */
static int plan(nb_program *p) {
    const size_t rs = p->k->real_size;
    const int64_t align = (int64_t)(64 / rs);
    int rc = NB_ERR_NOMEM;
    int64_t *first = NULL, *last = NULL;
    int32_t *byfirst = NULL;
    block *active = NULL;
    /* sizes */
    for (size_t i = 0; i < p->nv; i++) {
        vinfo *v = &p->v[i];
        v->r = resolve(p, v->rows);
        v->c = resolve(p, v->cols);
        if (v->r <= 0 || v->c <= 0) return NB_ERR_UNBOUND;
        if (v->r > ((int64_t)1 << 40) / v->c)
            return perr(p, NB_ERR_ARG, "a value of %lld x %lld is too large", (long long)v->r,
                        (long long)v->c);
    }
    /* lop -> instruction */
    for (size_t i = 0; i < p->nci; i++) {
        if (p->ci[i].is_group) {
            cgroup *G = &p->g[p->ci[i].id];
            for (size_t k = 0; k < G->n; k++)
                p->l[G->lops[k]].inst = (int32_t)i;
        } else
            p->l[p->ci[i].id].inst = (int32_t)i;
    }
    /* live intervals of memory roots */
    first = malloc(p->nv * sizeof *first);
    last = malloc(p->nv * sizeof *last);
    byfirst = malloc(p->nv * sizeof *byfirst);
    active = malloc((p->nv + 1) * sizeof *active);
    if (!first || !last || !byfirst || !active) goto done;
    const int64_t forever = (int64_t)p->nci + 1;
    for (size_t i = 0; i < p->nv; i++) {
        vinfo *v = &p->v[i];
        first[i] = -2; /* not in the workspace */
        last[i] = -1;
        if (v->parent >= 0 || v->kind == VK_INPUT || v->out >= 0) continue;
        if (v->kind == VK_CONST || v->kind == VK_DIM) {
            first[i] = -1;
            last[i] = forever;
            continue;
        }
        if (v->def < 0 || !p->l[v->def].live || !v->mem) continue;
        first[i] = p->l[v->def].inst;
        last[i] = v->invariant ? forever : first[i];
        /* inside a row-tiled region every value lives for the whole region */
        int32_t reg = p->inst_region[first[i]];
        if (reg >= 0) {
            first[i] = (int64_t)p->regions[reg].start;
            if (last[i] < (int64_t)p->regions[reg].end - 1) last[i] = (int64_t)p->regions[reg].end - 1;
        }
    }
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live) continue;
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t s = lop_src(p, L, k);
            if (s < 0) continue;
            int32_t r = root_of(p, s);
            int64_t use = L->inst;
            if (p->inst_region[use] >= 0) use = (int64_t)p->regions[p->inst_region[use]].end - 1;
            if (first[r] >= -1 && use > last[r]) last[r] = use;
        }
    }
    /* first-fit by start time; blocks sorted by offset */
    size_t nr = 0;
    for (size_t i = 0; i < p->nv; i++)
        if (first[i] >= -1) byfirst[nr++] = (int32_t)i;
    /* stable order by first */
    for (size_t i = 1; i < nr; i++) {
        int32_t x = byfirst[i];
        size_t j = i;
        while (j > 0 && first[byfirst[j - 1]] > first[x]) {
            byfirst[j] = byfirst[j - 1];
            j--;
        }
        byfirst[j] = x;
    }
    size_t na = 0;
    int64_t total = 0;
    for (size_t q = 0; q < nr; q++) {
        int32_t i = byfirst[q];
        vinfo *v = &p->v[i];
        int64_t need = (v->r * v->c + align - 1) / align * align;
        size_t w = 0;
        for (size_t k = 0; k < na; k++)
            if (active[k].end >= first[i]) active[w++] = active[k];
        na = w;
        int64_t off = 0;
        size_t pos = 0;
        for (; pos < na; pos++) {
            if (active[pos].off - off >= need) break;
            off = active[pos].off + active[pos].size;
        }
        memmove(active + pos + 1, active + pos, (na - pos) * sizeof *active);
        active[pos] = (block){off, need, last[i]};
        na++;
        v->off = off;
        v->base = 0;
        if (off + need > total) total = off + need;
    }
    /* addresses of aliases, inputs, outputs */
    for (size_t i = 0; i < p->nv; i++) {
        vinfo *v = &p->v[i];
        if (v->parent >= 0) {
            const vinfo *q = &p->v[v->parent];
            v->base = q->base;
            v->off = q->off + v->ai * q->c + v->aj;
        } else if (v->kind == VK_INPUT) {
            v->base = (uint8_t)(1 + v->index);
            v->off = 0;
        } else if (v->out >= 0) {
            v->base = (uint8_t)(1 + p->nin + (size_t)v->out);
            v->off = 0;
        }
    }
    /* executable instructions */
    size_t scratch = 0, nacc = 1;
    for (size_t i = 0; i < p->nci; i++) {
        nb_instr *in = &p->ins[i];
        if (p->ci[i].is_group) {
            nb_group *g = in->g;
            cgroup *G = &p->g[p->ci[i].id];
            g->rows = resolve(p, G->R);
            g->cols = resolve(p, G->C);
            int64_t span = g->rowwise ? g->cols : g->rows * g->cols;
            g->blen = span < NB_BLOCK ? span : NB_BLOCK;
            for (uint32_t k = 0; k < g->nmops; k++) {
                nb_mop *m = &g->mops[k];
                const lop *L = &p->l[G->lops[k]];
                for (int s = 0; s < 2; s++)
                    if (L->src[s] >= 0 && m->src[s].mode != NB_A_REG) {
                        m->src[s].base = p->v[L->src[s]].base;
                        m->src[s].off = p->v[L->src[s]].off;
                    }
                if (m->dst.mode != NB_A_REG) {
                    m->dst.base = p->v[L->dst].base;
                    m->dst.off = p->v[L->dst].off;
                }
                if (m->op == NB_M_RSUM) {
                    g->red_dst[m->acc].base = p->v[L->dst].base;
                    g->red_dst[m->acc].off = p->v[L->dst].off;
                }
            }
            in->nt = 1;
            if (p->nthreads > 1 && g->rows * g->cols * (int64_t)g->nmops >= NB_PAR_MIN_WORK &&
                (!g->rowwise || g->rows >= p->nthreads))
                in->nt = p->nthreads;
        } else {
            const lop *L = &p->l[p->ci[i].id];
            const vinfo *y = &p->v[L->dst], *a = L->src[0] >= 0 ? &p->v[L->src[0]] : y;
            const vinfo *b = L->src[1] >= 0 ? &p->v[L->src[1]] : NULL;
            in->y = (nb_arg){NB_A_FULL, y->base, 0, y->off};
            in->a = (nb_arg){NB_A_FULL, a->base, 0, a->off};
            if (b) in->b = (nb_arg){NB_A_FULL, b->base, 0, b->off};
            in->ta = L->ta;
            in->tb = L->tb;
            in->alpha = L->alpha;
            if (L->alpha_vid >= 0) {
                in->has_alpha = 1;
                in->alpha_arg = (nb_arg){NB_A_FULL, p->v[L->alpha_vid].base, 0, p->v[L->alpha_vid].off};
            }
            int64_t work = 0;
            switch (L->kind) {
            case NB_I_GEMM:
                in->m = L->ta ? a->c : a->r;
                in->k = L->ta ? a->r : a->c;
                in->n = L->tb ? b->r : b->c;
                in->lda = a->c;
                in->ldb = b->c;
                work = in->m * in->n * in->k / 8;
                break;
            case NB_I_GEMV:
            case NB_I_COLSUM:
            case NB_I_ROWSUM:
            case NB_I_TRANSPOSE:
            case NB_I_SOFTMAX:
            case NB_I_LOGSOFTMAX:
            case NB_I_XENT:
                in->m = a->r;
                in->n = a->c;
                work = in->m * in->n * (L->kind == NB_I_SOFTMAX || L->kind == NB_I_XENT ? 8 : 1);
                break;
            case NB_I_STRIDED:
                in->m = y->r * y->c;
                in->stride = L->skind == SK_DIAG ? a->c + 1 : a->c;
                in->a.off += L->skind == SK_COLUMN ? L->soff : 0;
                break;
            case NB_I_DENSE_DIAG:
                in->m = y->r;
                in->stride = a->r * a->c > 1 ? 1 : 0;
                work = y->r * y->c;
                break;
            case NB_I_GATHER:
                for (int32_t k = 0; k < L->nlist; k++) {
                    const vinfo *e = &p->v[p->lists[L->list + k]];
                    in->list[k] = (nb_arg){NB_A_FULL, e->base, 0, e->off};
                }
                break;
            default:
                break;
            }
            int64_t split = L->kind == NB_I_GEMM ? (in->m > in->n ? in->m : in->n) : in->m;
            if (L->kind == NB_I_GEMV && L->ta) split = in->n;
            if (L->kind == NB_I_COLSUM || L->kind == NB_I_TRANSPOSE) split = in->n;
            in->nt = p->nthreads > 1 && work >= NB_PAR_MIN_WORK && split >= 2 * p->nthreads ? p->nthreads : 1;
        }
        size_t s = nb_instr_scratch(in, rs);
        if (s > scratch) scratch = s;
        if (nb_instr_accs(in) > nacc) nacc = nb_instr_accs(in);
    }
    /* allocate */
    int64_t extra = plan_regions(p, &nacc);
    for (size_t i = 0; i < p->nci; i++)
        if (p->partial_off[i] >= 0) p->partial_off[i] += total;
    total += extra;
    size_t work_bytes = (size_t)total * rs;
    size_t scr_bytes = (scratch + 63) / 64 * 64, acc_bytes = (nacc * sizeof(double) + 63) / 64 * 64;
    size_t all = work_bytes + (size_t)p->nthreads * (scr_bytes + acc_bytes);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, all ? all : 64)) {
        rc = perr(p, NB_ERR_NOMEM, "out of memory: the workspace needs %zu bytes", all);
        goto done;
    }
    free(p->work);
    p->work = mem;
    p->work_bytes = all;
    p->bases[0] = mem;
    for (int t = 0; t < p->nthreads; t++) {
        p->scratch[t] = (char *)mem + work_bytes + (size_t)t * (scr_bytes + acc_bytes);
        p->acc[t] = (double *)((char *)p->scratch[t] + scr_bytes);
    }
    /* constants, dimension values, then the input-independent instructions */
    for (size_t i = 0; i < p->nv; i++) {
        const vinfo *v = &p->v[i];
        if (v->parent >= 0) continue;
        if (v->kind == VK_CONST) p->k->store(mem, v->off, v->cval);
        if (v->kind == VK_DIM)
            p->k->store(mem, v->off, (double)resolve(p, v->d1) * (double)resolve(p, v->d2));
    }
    for (size_t i = 0; i < p->ninit; i++) {
        nb_instr *in = &p->ins[i];
        p->k->exec(in, (void *const *)p->bases, p->scratch[0], p->acc[0], 0, 1);
        p->k->finish(in, (void *const *)p->bases, p->acc, 1);
    }
    p->planned = 1;
    rc = NB_OK;
done:
    free(first);
    free(last);
    free(byfirst);
    free(active);
    return rc;
}

/* Builds the executable groups (mops, registers) once; addresses come later. */
static int build_instructions(nb_program *p) {
    p->ins = calloc(p->nci ? p->nci : 1, sizeof *p->ins);
    p->bases = calloc(1 + p->nin + p->nout, sizeof *p->bases);
    if (!p->ins || !p->bases) return -1;
    /* which group values live in memory: leaves, kernel results, values read
     * outside their group, outputs, reduction results */
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].def < 0) p->v[i].mem = 1;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live) continue;
        if (L->kind != LK_MOP || p->v[L->dst].is_red || p->v[L->dst].out >= 0) p->v[L->dst].mem = 1;
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t s = lop_src(p, L, k);
            if (s < 0) continue;
            int32_t r = root_of(p, s);
            int32_t d = p->v[r].def;
            if (d < 0) continue;
            const lop *D = &p->l[d];
            if (D->kind != LK_MOP || L->kind != LK_MOP || gfind(p, D->group) != gfind(p, L->group) ||
                !whole_alias(p, s))
                p->v[r].mem = 1;
        }
    }
    int32_t *lastuse = calloc(p->nv, sizeof *lastuse);
    int32_t *reg = malloc(p->nv * sizeof *reg);
    int32_t *freeregs = malloc((p->nl + 1) * sizeof *freeregs);
    if (!lastuse || !reg || !freeregs) {
        free(lastuse);
        free(reg);
        free(freeregs);
        return -1;
    }
    for (size_t i = 0; i < p->nci; i++) {
        nb_instr *in = &p->ins[i];
        if (!p->ci[i].is_group) {
            const lop *L = &p->l[p->ci[i].id];
            in->kind = L->kind;
            if (L->kind == NB_I_GATHER) {
                in->list = calloc((size_t)L->nlist, sizeof *in->list);
                in->nlist = (size_t)L->nlist;
                if (!in->list) goto oom;
            }
            continue;
        }
        cgroup *G = &p->g[p->ci[i].id];
        nb_group *g = calloc(1, sizeof *g);
        if (!g) goto oom;
        in->kind = NB_I_GROUP;
        in->g = g;
        g->nmops = (uint32_t)G->n;
        g->mops = calloc(G->n, sizeof *g->mops);
        if (!g->mops) goto oom;
        for (size_t k = 0; k < G->n; k++) {
            const lop *L = &p->l[G->lops[k]];
            for (int s = 0; s < 2; s++)
                if (L->src[s] >= 0) lastuse[root_of(p, L->src[s])] = (int32_t)k;
            if (L->op == NB_M_RSUM) g->nred++;
        }
        g->red_dst = calloc(g->nred ? g->nred : 1, sizeof *g->red_dst);
        if (!g->red_dst) goto oom;
        uint32_t nfree = 0, nregs = 0, nred = 0;
        for (size_t k = 0; k < G->n; k++) {
            const lop *L = &p->l[G->lops[k]];
            nb_mop *m = &g->mops[k];
            m->op = (uint16_t)L->op;
            for (int s = 0; s < 2; s++) {
                if (L->src[s] < 0) continue;
                int32_t r = root_of(p, L->src[s]);
                if (!p->v[r].mem) {
                    m->src[s].mode = NB_A_REG;
                    m->src[s].reg = (uint32_t)reg[r];
                } else {
                    m->src[s].mode = L->mode[s];
                    if (L->mode[s] == NB_A_ROWB || L->mode[s] == NB_A_COLB) g->rowwise = 1;
                }
            }
            if (L->op == NB_M_RSUM) {
                m->acc = (uint16_t)nred;
                g->red_dst[nred++].mode = NB_A_FULL;
            } else if (!p->v[L->dst].mem) {
                int32_t rg = nfree ? freeregs[--nfree] : (int32_t)nregs++;
                reg[L->dst] = rg;
                m->dst.mode = NB_A_REG;
                m->dst.reg = (uint32_t)rg;
            } else {
                m->dst.mode = NB_A_FULL;
            }
            for (int s = 0; s < 2; s++) {
                if (L->src[s] < 0) continue;
                int32_t r = root_of(p, L->src[s]);
                if (!p->v[r].mem && lastuse[r] == (int32_t)k && (s == 0 || root_of(p, L->src[0]) != r)) {
                    freeregs[nfree++] = reg[r];
                    lastuse[r] = -1;
                }
            }
        }
        g->nregs = nregs;
    }
    free(lastuse);
    free(reg);
    free(freeregs);
    return 0;
oom:
    free(lastuse);
    free(reg);
    free(freeregs);
    return -1;
}

/* ---- row-tiled regions ------------------------------------------------------------- */
typedef struct {
    int32_t *vid;
    uint8_t *tiled;
    size_t n, cap;
    int32_t *prod;
    uint8_t *red;
    size_t np, capp, capr, capt;
    int oom;
} tinfo;

static void t_read(tinfo *t, int32_t v, int tiled) {
    if (v < 0) return;
    if (grow((void **)&t->vid, &t->cap, t->n + 1, sizeof *t->vid) ||
        grow((void **)&t->tiled, &t->capt, t->n + 1, sizeof *t->tiled)) {
        t->oom = 1;
        return;
    }
    t->vid[t->n] = v;
    t->tiled[t->n++] = (uint8_t)tiled;
}

static void t_prod(tinfo *t, int32_t v, int red) {
    if (grow((void **)&t->prod, &t->capp, t->np + 1, sizeof *t->prod) ||
        grow((void **)&t->red, &t->capr, t->np + 1, sizeof *t->red)) {
        t->oom = 1;
        return;
    }
    t->prod[t->np] = v;
    t->red[t->np++] = (uint8_t)red;
}

/* How instruction i meets row tiling: its row dimension D, what it reads
 * (tiled: by rows of D), what it writes (by rows, or a sum over them).
 * Returns 0 when it cannot run by rows. */
static int tile_info(const nb_program *p, size_t i, nb_dim *D, tinfo *t, int *is_product) {
    t->n = t->np = 0;
    *is_product = 0;
    if (i < p->ninit) return 0;
    if (p->ci[i].is_group) {
        const cgroup *G = &p->g[p->ci[i].id];
        const nb_group *g = p->ins[i].g;
        if (G->R == 1) return 0;
        *D = G->R;
        for (size_t k = 0; k < G->n; k++) {
            const lop *L = &p->l[G->lops[k]];
            const nb_mop *m = &g->mops[k];
            for (int q = 0; q < 2; q++)
                if (L->src[q] >= 0 && m->src[q].mode != NB_A_REG)
                    t_read(t, L->src[q], m->src[q].mode == NB_A_FULL || m->src[q].mode == NB_A_COLB);
            if (L->op == NB_M_RSUM)
                t_prod(t, L->dst, 1);
            else if (m->dst.mode != NB_A_REG)
                t_prod(t, L->dst, 0);
        }
        return 1;
    }
    const lop *L = &p->l[p->ci[i].id];
    if (L->src[0] < 0) return 0;
    *D = p->v[L->src[0]].rows;
    t_read(t, L->alpha_vid, 0);
    switch (L->kind) {
    case NB_I_GEMV:
    case NB_I_GEMM:
        t_read(t, L->src[0], 1);
        t_read(t, L->src[1], L->ta && !L->tb);
        t_prod(t, L->dst, L->ta);
        *is_product = 1;
        break;
    case NB_I_COLSUM:
    case NB_I_XENT:
        t_read(t, L->src[0], 1);
        t_read(t, L->src[1], 1);
        t_prod(t, L->dst, 1);
        break;
    case NB_I_ROWSUM:
    case NB_I_SOFTMAX:
    case NB_I_LOGSOFTMAX:
        t_read(t, L->src[0], 1);
        t_prod(t, L->dst, 0);
        break;
    default:
        return 0;
    }
    return *D != 1;
}

static void tinfo_free(tinfo *t) {
    free(t->vid);
    free(t->tiled);
    free(t->prod);
    free(t->red);
}

/* Regions are maximal runs of instructions that can run by rows of one D,
 * where no instruction reads a row-local result of the run other than by its
 * own rows, nor a sum over rows of the run; kept when a product is among them
 * and an outside matrix is read by rows more than once (the reuse tiling buys). */
static int find_regions(nb_program *p) {
    tinfo t = {0};
    uint8_t *mark = calloc(p->nv + 1, 1); /* 1 row-local product, 2 sum over rows, of the open run */
    int32_t *count = calloc(p->nv + 1, sizeof *count); /* tiled reads in the open run */
    int32_t *touched = malloc((p->nv + 1) * sizeof *touched);
    size_t ntouched = 0, capr = 0;
    p->inst_region = malloc((p->nci + 1) * sizeof *p->inst_region);
    if (!mark || !count || !touched || !p->inst_region) goto oom;
    for (size_t i = 0; i < p->nci; i++)
        p->inst_region[i] = -1;
    size_t start = 0;
    nb_dim D = 0;
    int open = 0, has_product = 0;
    for (size_t i = p->ninit; i <= p->nci; i++) {
        nb_dim d = 0;
        int prod = 0;
        int ok = i < p->nci && tile_info(p, i, &d, &t, &prod);
        if (t.oom) goto oom;
        bool fits = ok && open && d == D;
        for (size_t k = 0; k < t.n && fits; k++) {
            int32_t r = root_of(p, t.vid[k]);
            if (mark[r] == 2 || (mark[r] == 1 && !t.tiled[k])) fits = false;
        }
        if (open && !fits) { /* close the run */
            bool reuse = false;
            for (size_t k = 0; k < ntouched; k++)
                if (count[touched[k]] >= 2 && mark[touched[k]] == 0) reuse = true;
            if (i - start >= 2 && has_product && reuse) {
                if (grow((void **)&p->regions, &capr, p->nregions + 1, sizeof *p->regions)) goto oom;
                p->regions[p->nregions] = (region){start, i, D, 0, 0, 0, 1};
                for (size_t j = start; j < i; j++)
                    p->inst_region[j] = (int32_t)p->nregions;
                p->nregions++;
            }
            for (size_t k = 0; k < ntouched; k++)
                mark[touched[k]] = 0, count[touched[k]] = 0;
            ntouched = 0;
            open = 0;
        }
        if (!ok) continue;
        if (!open) {
            open = 1;
            start = i;
            D = d;
            has_product = 0;
        }
        has_product |= prod;
        for (size_t k = 0; k < t.n; k++) {
            int32_t r = root_of(p, t.vid[k]);
            if (!t.tiled[k]) continue;
            if (!mark[r] && !count[r]) touched[ntouched++] = r;
            count[r]++;
        }
        for (size_t k = 0; k < t.np; k++) {
            int32_t r = t.prod[k];
            if (!mark[r] && !count[r]) touched[ntouched++] = r;
            mark[r] = t.red[k] ? 2 : 1;
        }
    }
    free(mark);
    free(count);
    free(touched);
    tinfo_free(&t);
    return 0;
oom:
    free(mark);
    free(count);
    free(touched);
    tinfo_free(&t);
    return -1;
}

/* Tile sizes, threads, accumulator slots and partial sums of the regions. */
#define NB_TILE_BYTES (256 * 1024)
static int64_t plan_regions(nb_program *p, size_t *nacc) {
    const size_t rs = p->k->real_size;
    int64_t extra = 0;
    tinfo t = {0};
    uint32_t *seen = p->nregions ? calloc(p->nv, sizeof *seen) : NULL, stamp = 1;
    if (p->nregions && !seen) t.oom = 1;
    for (size_t i = 0; i < p->nci; i++) {
        p->acc_base[i] = 0;
        p->partial_off[i] = -1;
        p->red_len[i] = 0;
    }
    for (size_t r = 0; r < p->nregions; r++) {
        region *R = &p->regions[r];
        R->rows = resolve(p, R->D);
        /* bytes per row of everything the region touches by rows (each root once) */
        double per_row = 0;
        for (size_t i = R->start; i < R->end && seen; i++) {
            nb_dim d;
            int prod;
            tile_info(p, i, &d, &t, &prod);
            for (size_t k = 0; k < t.n + t.np; k++) {
                int32_t v = k < t.n ? root_of(p, t.vid[k]) : t.prod[k - t.n];
                if (k < t.n ? !t.tiled[k] : t.red[k - t.n]) continue;
                if (seen[v] == stamp) continue;
                seen[v] = stamp;
                per_row += (double)(p->v[v].r * p->v[v].c) / (double)R->rows;
            }
        }
        stamp++;
        int64_t tile = (int64_t)((double)NB_TILE_BYTES / (per_row * (double)rs + 1)) / 8 * 8;
        R->tile = tile < 8 ? 8 : tile;
        R->active = t.oom == 0 && R->tile >= 32 && R->rows >= 2 * R->tile;
        R->nt = R->active && p->nthreads > 1 && R->rows >= 2 * R->tile * p->nthreads ? p->nthreads : 1;
        if (!R->active) continue;
        size_t base = 0;
        for (size_t i = R->start; i < R->end; i++) {
            nb_instr *in = &p->ins[i];
            p->acc_base[i] = base;
            base += nb_instr_accs(in);
            int reduce = (in->kind == NB_I_GEMV || in->kind == NB_I_GEMM) ? in->ta : in->kind == NB_I_COLSUM;
            if (reduce) {
                p->red_len[i] = in->kind == NB_I_GEMM ? in->m * in->n : in->n;
                if (R->nt > 1) {
                    p->partial_off[i] = extra;
                    extra += ((int64_t)(R->nt - 1) * p->red_len[i] + 15) / 16 * 16;
                }
            }
        }
        if (base > *nacc) *nacc = base;
    }
    tinfo_free(&t);
    free(seen);
    return extra;
}

static void run_region_share(nb_program *p, const region *R, int tid, int nt) {
    const size_t rs = p->k->real_size;
    const int64_t r0 = R->rows * tid / nt, r1 = R->rows * (tid + 1) / nt;
    int first = 1;
    for (int64_t a = r0; a < r1; a += R->tile) {
        const int64_t b = a + R->tile < r1 ? a + R->tile : r1;
        for (size_t i = R->start; i < R->end; i++) {
            void *red = NULL;
            if (tid > 0 && p->partial_off[i] >= 0)
                red = (char *)p->work + (size_t)(p->partial_off[i] + (tid - 1) * p->red_len[i]) * rs;
            p->k->exec_rows(&p->ins[i], (void *const *)p->bases, p->scratch[tid],
                            p->acc[tid] + p->acc_base[i], a, b, first, red);
        }
        first = 0;
    }
}

static void run_region(nb_program *p, const region *R) {
    const size_t rs = p->k->real_size;
    if (R->nt > 1)
        pool_run(p, NULL, R, R->nt);
    else
        run_region_share(p, R, 0, 1);
    for (size_t i = R->start; i < R->end; i++) {
        const nb_instr *in = &p->ins[i];
        if (p->partial_off[i] >= 0) {
            void *y = (char *)p->bases[in->y.base] + (size_t)in->y.off * rs;
            for (int t = 1; t < R->nt; t++)
                p->k->accumulate(y,
                                 (char *)p->work + (size_t)(p->partial_off[i] + (t - 1) * p->red_len[i]) * rs,
                                 p->red_len[i]);
        }
        if (nb_instr_accs(in)) {
            double *acc[NB_MAX_THREADS];
            for (int t = 0; t < R->nt; t++)
                acc[t] = p->acc[t] + p->acc_base[i];
            p->k->finish(in, (void *const *)p->bases, acc, R->nt);
        }
    }
}

/* ---- public API ------------------------------------------------------------------ */
static bool all_bound(nb_program *p, const char **missing) {
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_vals[j] <= 0) {
            *missing = p->dim_names[j];
            return false;
        }
    return true;
}

static int replan(nb_program *p) {
    const char *missing;
    p->planned = 0;
    if (!all_bound(p, &missing))
        return perr(p, NB_ERR_UNBOUND, "dimension %s is not bound (nb_program_bind_dim)", missing);
    int rc = plan(p);
    if (rc == NB_ERR_UNBOUND) return perr(p, rc, "a dimension is not bound");
    return rc;
}

/* After compilation: executable instructions, and a plan when sizes are known. */
static int program_init(nb_program *p) {
    if (build_instructions(p)) return perr(p, NB_ERR_NOMEM, "out of memory");
    p->acc_base = calloc(p->nci + 1, sizeof *p->acc_base);
    p->partial_off = calloc(p->nci + 1, sizeof *p->partial_off);
    p->red_len = calloc(p->nci + 1, sizeof *p->red_len);
    if (!p->acc_base || !p->partial_off || !p->red_len || find_regions(p))
        return perr(p, NB_ERR_NOMEM, "out of memory");
    p->scratch = calloc(NB_MAX_THREADS, sizeof *p->scratch);
    p->acc = calloc(NB_MAX_THREADS, sizeof *p->acc);
    if (!p->scratch || !p->acc) return perr(p, NB_ERR_NOMEM, "out of memory");
    const char *missing;
    if (all_bound(p, &missing)) return replan(p);
    return NB_OK;
}

int nb_program_bind_dim(nb_program *p, const char *name, int64_t size) {
    if (!p) return NB_ERR_ARG;
    if (!name) return perr(p, NB_ERR_ARG, "dimension name is NULL");
    if (size <= 0) return perr(p, NB_ERR_ARG, "size of %s must be positive, got %lld", name, (long long)size);
    for (size_t j = 0; j < p->ndims; j++)
        if (strcmp(p->dim_names[j], name) == 0) {
            if (p->dim_vals[j] == size && p->planned) return NB_OK;
            p->dim_vals[j] = size;
            const char *missing;
            if (all_bound(p, &missing)) return replan(p);
            p->planned = 0;
            return NB_OK;
        }
    return perr(p, NB_ERR_ARG, "the program has no dimension named '%s'", name);
}

static int bind_one(nb_program *p, nb_dim d, int64_t size, const char *what) {
    if (d > 0) {
        if (d != size)
            return perr(p, NB_ERR_SIZE, "%s has %lld entries, expected %lld", what, (long long)size,
                        (long long)d);
        return NB_OK;
    }
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_ids[j] == d) {
            if (p->dim_vals[j] != size) {
                p->dim_vals[j] = size;
                p->planned = 0;
            }
            return NB_OK;
        }
    return perr(p, NB_ERR_ARG, "internal: unknown dimension");
}

int nb_program_bind_input(nb_program *p, size_t i, int64_t rows, int64_t cols) {
    if (!p) return NB_ERR_ARG;
    if (i >= p->nin) return perr(p, NB_ERR_ARG, "input %zu out of range (the program has %zu)", i, p->nin);
    if (rows <= 0 || cols <= 0)
        return perr(p, NB_ERR_ARG, "sizes must be positive, got %lld x %lld", (long long)rows,
                    (long long)cols);
    char what[160];
    snprintf(what, sizeof what, "input '%s' (rows)", p->in_names[i]);
    int rc = bind_one(p, p->in_types[i].rows, rows, what);
    snprintf(what, sizeof what, "input '%s' (columns)", p->in_names[i]);
    if (!rc) rc = bind_one(p, p->in_types[i].cols, cols, what);
    if (rc) return rc;
    const char *missing;
    if (!p->planned && all_bound(p, &missing)) return replan(p);
    return NB_OK;
}

static void program_free_compiled(nb_program *p) {
    if (p->ins)
        for (size_t i = 0; i < p->nci; i++) {
            if (p->ins[i].g) {
                free(p->ins[i].g->mops);
                free(p->ins[i].g->red_dst);
                free(p->ins[i].g);
            }
            free(p->ins[i].list);
        }
    free(p->ins);
    for (size_t g = 0; g < p->ng; g++) {
        free(p->g[g].lops);
        free(p->g[g].deps);
    }
    free(p->g);
    free(p->ci);
    free(p->v);
    free(p->l);
    free(p->lists);
}

void nb_program_free(nb_program *p) {
    if (!p) return;
    pool_free(p->pool);
    program_free_compiled(p);
    for (size_t i = 0; i < p->nin; i++)
        free(p->in_names ? p->in_names[i] : NULL);
    free(p->in_names);
    free(p->in_types);
    free(p->in_vid);
    free(p->out_types);
    free(p->out_vid);
    free(p->out_st);
    for (size_t j = 0; j < p->ndims; j++)
        free(p->dim_names[j]);
    free(p->dim_names);
    free(p->dim_ids);
    free(p->dim_vals);
    free(p->work);
    free(p->regions);
    free(p->inst_region);
    free(p->acc_base);
    free(p->partial_off);
    free(p->red_len);
    free(p->bases);
    free(p->scratch);
    free(p->acc);
    free(p);
}

const char *nb_program_error(const nb_program *p) {
    return p ? p->err : "no program";
}
nb_dtype nb_program_dtype(const nb_program *p) {
    return p ? p->dtype : NB_F64;
}
size_t nb_program_num_inputs(const nb_program *p) {
    return p ? p->nin : 0;
}
size_t nb_program_num_outputs(const nb_program *p) {
    return p ? p->nout : 0;
}
const char *nb_program_input_name(const nb_program *p, size_t i) {
    return p && i < p->nin ? p->in_names[i] : NULL;
}
size_t nb_program_num_dims(const nb_program *p) {
    return p ? p->ndims : 0;
}
const char *nb_program_dim_name(const nb_program *p, size_t k) {
    return p && k < p->ndims ? p->dim_names[k] : NULL;
}
int64_t nb_program_dim_value(const nb_program *p, size_t k) {
    return p && k < p->ndims ? p->dim_vals[k] : 0;
}

static int shape_of(const nb_program *p, nb_type t, int64_t *rows, int64_t *cols) {
    int64_t r = resolve(p, t.rows), c = resolve(p, t.cols);
    if (rows) *rows = r;
    if (cols) *cols = c;
    return r > 0 && c > 0 ? NB_OK : NB_ERR_UNBOUND;
}

int nb_program_input_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols) {
    if (!p || i >= p->nin) return NB_ERR_ARG;
    return shape_of(p, p->in_types[i], rows, cols);
}

int nb_program_output_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols) {
    if (!p || i >= p->nout) return NB_ERR_ARG;
    return shape_of(p, p->out_types[i], rows, cols);
}

nb_structure nb_program_output_structure(const nb_program *p, size_t i) {
    return p && i < p->nout ? (nb_structure)p->out_st[i] : NB_STRUCT_DENSE;
}

int64_t nb_program_input_size(const nb_program *p, size_t i) {
    int64_t r, c;
    if (!p || i >= p->nin || shape_of(p, p->in_types[i], &r, &c)) return 0;
    return r * c;
}

int64_t nb_program_output_size(const nb_program *p, size_t i) {
    int64_t r, c;
    if (!p || i >= p->nout || shape_of(p, p->out_types[i], &r, &c)) return 0;
    switch (p->out_st[i]) {
    case NB_STRUCT_DIAGONAL:
        return r;
    case NB_STRUCT_SCALED_IDENTITY:
    case NB_STRUCT_UNIFORM:
        return 1;
    default:
        return r * c;
    }
}

int nb_program_set_threads(nb_program *p, int nthreads) {
    if (!p) return NB_ERR_ARG;
    if (nthreads < 1 || nthreads > NB_MAX_THREADS)
        return perr(p, NB_ERR_ARG, "threads must be 1..%d, got %d", NB_MAX_THREADS, nthreads);
    if (nthreads == p->nthreads) return NB_OK;
    pool_free(p->pool);
    p->pool = NULL;
    p->nthreads = 1;
    if (nthreads > 1) {
        p->pool = pool_new(nthreads - 1);
        if (!p->pool) {
            if (p->planned) replan(p);
            return perr(p, NB_ERR_THREAD, "could not start %d threads", nthreads - 1);
        }
        p->nthreads = nthreads;
    }
    if (p->planned) return replan(p);
    return NB_OK;
}

void nb_program_check_finite(nb_program *p, int on) {
    if (p) p->check_finite = on != 0;
}

static int not_ready(nb_program *p) {
    const char *missing;
    if (!all_bound(p, &missing))
        return perr(p, NB_ERR_UNBOUND, "dimension %s is not bound (nb_program_bind_dim)", missing);
    return replan(p);
}

int nb_program_run(nb_program *p, const void *const *inputs, void *const *outputs) {
    if (!p) return NB_ERR_ARG;
    if (!p->planned) {
        int rc = not_ready(p);
        if (rc) return rc;
    }
    if (p->nin && !inputs) return perr(p, NB_ERR_ARG, "inputs is NULL");
    if (!outputs) return perr(p, NB_ERR_ARG, "outputs is NULL");
    for (size_t i = 0; i < p->nin; i++) {
        if (!inputs[i]) return perr(p, NB_ERR_ARG, "input %zu ('%s') is NULL", i, p->in_names[i]);
        p->bases[1 + i] = (void *)inputs[i];
    }
    for (size_t i = 0; i < p->nout; i++) {
        if (!outputs[i]) return perr(p, NB_ERR_ARG, "output %zu is NULL", i);
        p->bases[1 + p->nin + i] = outputs[i];
    }
    if (p->check_finite)
        for (size_t i = 0; i < p->nin; i++) {
            int64_t r, c;
            shape_of(p, p->in_types[i], &r, &c);
            int64_t bad = p->k->find_nonfinite(inputs[i], r * c);
            if (bad >= 0) {
                double x;
                if (p->dtype == NB_F64)
                    x = ((const double *)inputs[i])[bad];
                else
                    x = ((const float *)inputs[i])[bad];
                return perr(p, NB_ERR_NONFINITE, "input '%s' holds %g at entry (%lld, %lld)", p->in_names[i],
                            x, (long long)(bad / c), (long long)(bad % c));
            }
        }
    for (size_t i = p->ninit; i < p->nci; i++) {
        const nb_instr *in = &p->ins[i];
        int32_t r = p->inst_region[i];
        if (r >= 0 && p->regions[r].active) {
            run_region(p, &p->regions[r]);
            i = p->regions[r].end - 1;
            continue;
        }
        if (in->nt > 1)
            pool_run(p, in, NULL, in->nt);
        else
            p->k->exec(in, (void *const *)p->bases, p->scratch[0], p->acc[0], 0, 1);
        if (in->kind == NB_I_GROUP ? in->g->nred > 0 : in->kind == NB_I_XENT)
            p->k->finish(in, (void *const *)p->bases, p->acc, in->nt);
    }
    p->err[0] = 0;
    return NB_OK;
}

int nb_program_run_sized(nb_program *p, const void *const *inputs, const size_t *input_sizes,
                         void *const *outputs, const size_t *output_sizes) {
    if (!p) return NB_ERR_ARG;
    if (!p->planned) {
        int rc = not_ready(p);
        if (rc) return rc;
    }
    if ((p->nin && !input_sizes) || !output_sizes) return perr(p, NB_ERR_ARG, "buffer sizes are NULL");
    for (size_t i = 0; i < p->nin; i++)
        if ((int64_t)input_sizes[i] != nb_program_input_size(p, i))
            return perr(p, NB_ERR_SIZE, "input %zu ('%s') has %zu entries, expected %lld", i, p->in_names[i],
                        input_sizes[i], (long long)nb_program_input_size(p, i));
    for (size_t i = 0; i < p->nout; i++)
        if ((int64_t)output_sizes[i] != nb_program_output_size(p, i))
            return perr(p, NB_ERR_SIZE, "output %zu has %zu entries, expected %lld", i, output_sizes[i],
                        (long long)nb_program_output_size(p, i));
    return nb_program_run(p, inputs, outputs);
}

int nb_program_expand_output(nb_program *p, size_t i, const void *src, void *dst) {
    if (!p) return NB_ERR_ARG;
    if (i >= p->nout) return perr(p, NB_ERR_ARG, "output %zu out of range (the program has %zu)", i, p->nout);
    if (!src || !dst) return perr(p, NB_ERR_ARG, "buffer is NULL");
    int64_t r, c;
    if (shape_of(p, p->out_types[i], &r, &c))
        return perr(p, NB_ERR_UNBOUND, "output %zu has an unbound dimension", i);
    const size_t rs = p->k->real_size;
    int st = p->out_st[i];
    for (int64_t a = 0; a < r; a++)
        for (int64_t b = 0; b < c; b++) {
            int64_t from;
            bool zero = false;
            switch (st) {
            case NB_STRUCT_DIAGONAL:
                from = a;
                zero = a != b;
                break;
            case NB_STRUCT_SCALED_IDENTITY:
                from = 0;
                zero = a != b;
                break;
            case NB_STRUCT_UNIFORM:
                from = 0;
                break;
            default:
                from = a * c + b;
                break;
            }
            char *to = (char *)dst + (size_t)(a * c + b) * rs;
            if (zero)
                memset(to, 0, rs);
            else
                memmove(to, (const char *)src + (size_t)from * rs, rs);
        }
    return NB_OK;
}

void nb_program_get_stats(const nb_program *p, nb_program_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    if (!p || !p->ins) return;
    for (size_t i = 0; i < p->nci; i++) {
        const nb_instr *in = &p->ins[i];
        if (i < p->ninit) {
            s->init_instructions++;
            continue;
        }
        s->instructions++;
        if (in->kind == NB_I_GROUP) {
            s->groups++;
            s->fused_ops += in->g->nmops;
        }
        if (in->kind == NB_I_GEMM || in->kind == NB_I_GEMV) s->products++;
    }
    s->workspace_bytes = p->planned ? p->work_bytes : 0;
}

/* ---- description ------------------------------------------------------------------ */
static const char *const instr_names[] = {"group",      "gemm",      "gemv",       "colsum",
                                          "rowsum",     "transpose", "strided",    "gather",
                                          "dense_diag", "softmax",   "logsoftmax", "xent"};

static void describe_arg(nb_strbuf *sb, const nb_program *p, const nb_arg *a) {
    static const char *const modes[] = {"r", "", "s:", "row:", "col:"};
    if (a->mode == NB_A_REG) {
        nb_sb_printf(sb, "r%u", a->reg);
        return;
    }
    const char *where = "w";
    size_t idx = 0;
    if (a->base >= 1 && a->base <= p->nin) {
        where = "in";
        idx = a->base - 1u;
    } else if (a->base > p->nin) {
        where = "out";
        idx = a->base - 1u - p->nin;
    }
    if (a->base == 0)
        nb_sb_printf(sb, "%s%s[%lld]", modes[a->mode], where, (long long)a->off);
    else
        nb_sb_printf(sb, "%s%s%zu[%lld]", modes[a->mode], where, idx, (long long)a->off);
}

char *nb_program_describe(const nb_program *p) {
    nb_strbuf sb = {NULL, 0, 0, false};
    if (!p) return NULL;
    nb_sb_printf(&sb, "program: %zu inputs, %zu outputs, %s, %d thread(s)%s\n", p->nin, p->nout,
                 p->dtype == NB_F64 ? "f64" : "f32", p->nthreads, p->planned ? "" : " (sizes unbound)");
    for (size_t i = 0; i < p->nci; i++) {
        const nb_instr *in = &p->ins[i];
        int32_t r = p->inst_region ? p->inst_region[i] : -1;
        if (r >= 0 && p->regions[r].start == i && p->regions[r].active)
            nb_sb_printf(&sb,
                         "    region: instructions %zu..%zu by tiles of %lld rows of %lld, %d thread(s)\n", i,
                         p->regions[r].end - 1, (long long)p->regions[r].tile, (long long)p->regions[r].rows,
                         p->regions[r].nt);
        nb_sb_printf(&sb, "%s%3zu %s", i < p->ninit ? "init" : "    ", i, instr_names[in->kind]);
        if (in->kind == NB_I_GROUP) {
            const nb_group *g = in->g;
            nb_sb_printf(&sb, " %lldx%lld%s regs=%u threads=%d\n", (long long)g->rows, (long long)g->cols,
                         g->rowwise ? " rowwise" : "", g->nregs, in->nt);
            for (uint32_t k = 0; k < g->nmops; k++) {
                const nb_mop *m = &g->mops[k];
                nb_sb_puts(&sb, "        ");
                if (m->op == NB_M_RSUM) {
                    nb_sb_printf(&sb, "acc%u += sum ", m->acc);
                    describe_arg(&sb, p, &m->src[0]);
                    nb_sb_puts(&sb, " -> ");
                    describe_arg(&sb, p, &g->red_dst[m->acc]);
                } else {
                    describe_arg(&sb, p, &m->dst);
                    nb_sb_printf(&sb, " = %s ", nb_mop_names[m->op]);
                    describe_arg(&sb, p, &m->src[0]);
                    if (nb_mop_arity[m->op] == 2) {
                        nb_sb_puts(&sb, ", ");
                        describe_arg(&sb, p, &m->src[1]);
                    }
                }
                nb_sb_puts(&sb, "\n");
            }
            continue;
        }
        nb_sb_puts(&sb, " ");
        describe_arg(&sb, p, &in->y);
        nb_sb_puts(&sb, " <- ");
        describe_arg(&sb, p, &in->a);
        if (in->kind == NB_I_GEMM || in->kind == NB_I_GEMV || in->kind == NB_I_XENT) {
            nb_sb_puts(&sb, ", ");
            describe_arg(&sb, p, &in->b);
        }
        nb_sb_printf(&sb, " m=%lld n=%lld k=%lld%s%s alpha=%g", (long long)in->m, (long long)in->n,
                     (long long)in->k, in->ta ? " ta" : "", in->tb ? " tb" : "", in->alpha);
        if (in->has_alpha) {
            nb_sb_puts(&sb, "*");
            describe_arg(&sb, p, &in->alpha_arg);
        }
        nb_sb_printf(&sb, " threads=%d\n", in->nt);
    }
    if (sb.failed) {
        free(sb.buf);
        return NULL;
    }
    return sb.buf;
}
