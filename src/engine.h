/* The compiler's internal interface: the intermediate representation that
 * flows through its stages, the program object, and each stage's entry point.
 *
 *   lower.c    DAG -> structured values and low-level operations ("lops"),
 *              with common-subexpression elimination; outputs
 *   passes.c   dead code, scale folding (s·(A·B) -> the product's alpha),
 *              and after fusion combining pairs inside groups (SINCOS,
 *              fused pairs of binary operations)
 *   fuse.c     grouping of element-wise lops into fused loops, and the order
 *              of instructions (input-independent ones first)
 *   tile.c     row-tiled regions (X·w and Xᵀ·g over one pass of X's rows)
 *   native.c   generated C for row-fused regions (NB_COMPILE_NATIVE)
 *   instr.c    the executable instructions: kernel calls and fused groups
 *              with their registers allocated
 *   plan.c     sizes, liveness, the workspace, and the planned instruction
 *              list (nb_instr, kernels.h) -- the one interface a backend
 *              reads: the interpreter in run.c, and native.c's generated C
 *   pool.c     worker threads
 *   run.c      executing a plan
 *   program.c  the nb_compile driver, binding sizes, the public getters
 *   describe.c the instruction listing and statistics
 * Derivatives are never written here: they are expressions made by diff.c. */
#ifndef NB_ENGINE_H
#define NB_ENGINE_H

#include "kernels.h"
#include "nb_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NB_MAX_THREADS 64
#define NB_PAR_MIN_WORK ((int64_t)1 << 15) /* element operations worth a second thread */
/* The most entries one value (input, output or intermediate) may have: 2^40
 * (8 TiB of f64).  Larger plans are refused when sizes are bound. */
#define NB_MAX_ENTRIES ((int64_t)1 << 40)

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
    int32_t dst, src[NB_MOP_SRCS];
    int32_t dst2; /* NB_M_SINCOS: the cosine's value, else -1 */
    uint8_t mode[NB_MOP_SRCS];
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
    void **bases;
    void **scratch; /* per thread */
    double **acc;   /* per thread */
    int nthreads;
    nb_pool *pool;
    int check_finite;
    /* row-tiled regions (tile.c) */
    struct region *regions;
    size_t nregions;
    int32_t *inst_region; /* by instruction: region index or -1 */
    size_t *acc_base;     /* by instruction: first accumulator slot */
    int64_t *partial_off; /* by instruction: per-thread partial sums (elements), -1 */
    int64_t *red_len;     /* by instruction: entries of a sum over the rows */
};

/* A row-tiled region (see tile.c). */
typedef struct nb_native nb_native;
typedef struct region {
    size_t start, end; /* instructions [start, end) */
    nb_dim D;
    nb_native *native; /* NB_COMPILE_NATIVE: its row-fused form (native.c), or NULL */
    /* plan */
    int64_t rows, tile;
    int active, nt;
} region;

/* ---- compiler state ------------------------------------------------------- */
/* What lowering keeps while it runs (nb_compile frees it): side arrays by
 * node id (no scratch in the context's shared nodes) and the CSE table. */
typedef struct {
    nb_ctx *ctx;
    nb_program *p;
    nb_expr *const *inputs;
    nval *nv;         /* by node id */
    int32_t *dense;   /* by node id: memoised dense materialisation */
    int32_t *diagvec; /* by node id: memoised diagonal gather */
    uint32_t *uses;   /* by node id: how many nodes and outputs read it */
    size_t capv, capl, caplists, nlists;
    int32_t *cse; /* hash table of element-wise lops: index + 1, 0 empty */
    size_t ncse, capcse;
    int no_cse; /* output copies are distinct */
    int failed;
} cstate;

/* ---- small shared helpers ---------------------------------------------- */
/* Grows *arr (of *cap elements of elem bytes, new ones zeroed) to hold need. */
static inline int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    if (nc > SIZE_MAX / elem) return -1;
    void *q = realloc(*arr, nc * elem);
    if (!q) return -1;
    memset((char *)q + *cap * elem, 0, (nc - *cap) * elem);
    *arr = q;
    *cap = nc;
    return 0;
}

/* The value that owns v's storage. */
static inline int32_t root_of(const nb_program *p, int32_t v) {
    while (p->v[v].parent >= 0)
        v = p->v[v].parent;
    return v;
}

/* Sources of a lop: src[0..NB_MOP_SRCS), the alpha value, the gathered list. */
static inline int lop_nsrc(const lop *L) {
    return NB_MOP_SRCS + 1 + L->nlist;
}
static inline int32_t lop_src(const nb_program *p, const lop *L, int k) {
    if (k < NB_MOP_SRCS) return L->src[k];
    if (k == NB_MOP_SRCS) return L->alpha_vid;
    return p->lists[L->list + k - NB_MOP_SRCS - 1];
}
/* Results of a lop: dst, and dst2 when it has a second one (-1 when not). */
static inline int32_t lop_dst(const lop *L, int k) {
    return k == 0 ? L->dst : L->dst2;
}

/* The representative of group g (union-find with path halving). */
static inline int32_t gfind(nb_program *p, int32_t g) {
    while (p->g[g].parent != g)
        g = p->g[g].parent = p->g[p->g[g].parent].parent;
    return g;
}

/* The bound size of dimension d (a number, or a symbol's value; 0: unbound). */
static inline int64_t resolve(const nb_program *p, nb_dim d) {
    if (d > 0) return d;
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_ids[j] == d) return p->dim_vals[j];
    return 0;
}

/* a·b when it is at most NB_MAX_ENTRIES (a, b >= 0), else -1. */
static inline int64_t nb_entries(int64_t a, int64_t b) {
    int64_t n;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &n) || n > NB_MAX_ENTRIES) return -1;
    return n;
}

bool nbc_whole_alias(const nb_program *p, int32_t v);

/* The address of a planned operand in memory (any mode but NB_A_REG). */
static inline void *nbc_address(const nb_program *p, const nb_arg *a) {
    return (char *)p->bases[a->base] + (size_t)a->off * p->k->real_size;
}
/* Thread t's (t >= 1) partial sum over the rows of instruction i in a row
 * region (tile.c lays them out in the workspace). */
static inline void *nbc_partial(const nb_program *p, size_t i, int t) {
    return (char *)p->work + (size_t)(p->partial_off[i] + (t - 1) * p->red_len[i]) * p->k->real_size;
}

/* ---- stages ------------------------------------------------------------- */
/* program.c */
int nbc_perr(nb_program *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
char *nbc_dupstr(const char *s);
bool nbc_all_bound(const nb_program *p, const char **missing);
int nbc_shape_of(const nb_program *p, nb_type t, int64_t *rows, int64_t *cols);
int nbc_replan(nb_program *p);
int nbc_add_dim(cstate *c, nb_dim d);
/* lower.c */
int nbc_cfail(cstate *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int32_t nbc_new_value(cstate *c, nb_dim r, nb_dim cl, int kind);
int32_t nbc_emit_mop(cstate *c, int op, nb_dim R, nb_dim C, int32_t a, int32_t b);
int nbc_lower(cstate *c, nb_node *const *order, size_t n);
int nbc_lower_outputs(cstate *c, nb_expr *const *outputs);
/* passes.c */
int nbc_mark_live(nb_program *p);
void nbc_fold_scales(cstate *c);
/* After fusion, inside each group: sin and cos of one operand become one
 * SINCOS, and a binary operation whose result only another one reads joins
 * it as a fused pair (NB_FUSED_MOP_LIST); fewer micro-operations, the same
 * values.  Out of memory, it leaves the program as it is. */
void nbc_combine_pairs(nb_program *p);
/* fuse.c: groups and orders the live lops; the input-independent ones come
 * first (p->ninit of them). */
int nbc_fuse_and_order(nb_program *p);
/* tile.c */
int nbc_find_regions(nb_program *p);
int nbc_plan_regions(nb_program *p, size_t *nacc, int64_t *extra);
void nbc_free_regions(nb_program *p);
/* native.c: NB_COMPILE_NATIVE.  find: when region R has the row-fused shape,
 * gives it its native form (R->native); plan: generates, compiles and loads
 * its code for the bound sizes (on failure ready is false and why says why);
 * run: thread tid's rows r0..r1, its sums over the rows to its partials.
 * find and plan return -1 only when out of memory. */
int nbc_native_find(nb_program *p, region *R);
int nbc_native_plan(nb_program *p, region *R);
int nbc_native_ready(const region *R);
const char *nbc_native_why(const region *R);
void nbc_native_run(nb_program *p, const region *R, int tid, int64_t r0, int64_t r1);
void nbc_native_free(nb_native *nat);
/* plan.c */
int nbc_build_instructions(nb_program *p);
int nbc_plan(nb_program *p);
/* pool.c: runs fn(arg, tid, nt) on nt threads, the caller being thread 0. */
typedef void (*nb_pool_fn)(void *arg, int tid, int nt);
nb_pool *nbc_pool_new(int nworkers);
void nbc_pool_free(nb_pool *pool);
void nbc_pool_run(nb_pool *pool, nb_pool_fn fn, void *arg, int nt);

#endif
