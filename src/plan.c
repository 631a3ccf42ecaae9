/* Planning: when every dimension is bound, the sizes of all values, their
 * live intervals, a workspace laid out by liveness (first fit), the resolved
 * operand addresses of every instruction, tile sizes and thread splits; the
 * workspace is allocated and the input-independent instructions run.  A run
 * then allocates nothing.
 *
 * The planned instruction list (p->ins, nb_instr in kernels.h: operation,
 * sizes, operands as (base, offset) pairs) is the one interface a backend
 * reads: the interpreter (run.c) executes it today; generated C will be
 * printed from it. */
#include "engine.h"

#include <limits.h>

typedef struct {
    int64_t off, size, end;
} block;

/* Live interval [first, last] of each memory root in instruction indices
 * (first -2: not in the workspace, -1: from before the first instruction). */
typedef struct {
    int64_t *first, *last;
    int32_t *byfirst;
    block *active;
} liveness;

static void liveness_free(liveness *lv) {
    free(lv->first);
    free(lv->last);
    free(lv->byfirst);
    free(lv->active);
}

/* 1. Every value's bound size, checked against NB_MAX_ENTRIES. */
static int size_values(nb_program *p) {
    for (size_t i = 0; i < p->nv; i++) {
        vinfo *v = &p->v[i];
        v->r = resolve(p, v->rows);
        v->c = resolve(p, v->cols);
        if (v->r <= 0 || v->c <= 0) return NB_ERR_UNBOUND;
        if (nb_entries(v->r, v->c) < 0)
            return nbc_perr(p, NB_ERR_ARG, "a value of %lld x %lld entries is too large (at most 2^40 entries)",
                            (long long)v->r, (long long)v->c);
    }
    return NB_OK;
}

/* 2. The instruction that computes each lop. */
static void assign_instructions(nb_program *p) {
    for (size_t i = 0; i < p->nci; i++) {
        if (p->ci[i].is_group) {
            cgroup *G = &p->g[p->ci[i].id];
            for (size_t k = 0; k < G->n; k++)
                p->l[G->lops[k]].inst = (int32_t)i;
        } else
            p->l[p->ci[i].id].inst = (int32_t)i;
    }
}

/* 3. Live intervals of the workspace's values. */
static int live_intervals(nb_program *p, liveness *lv) {
    lv->first = malloc((p->nv + 1) * sizeof *lv->first);
    lv->last = malloc((p->nv + 1) * sizeof *lv->last);
    lv->byfirst = malloc((p->nv + 1) * sizeof *lv->byfirst);
    lv->active = malloc((p->nv + 1) * sizeof *lv->active);
    if (!lv->first || !lv->last || !lv->byfirst || !lv->active) return -1;
    int64_t *first = lv->first, *last = lv->last;
    const int64_t forever = (int64_t)p->nci + 1;
    for (size_t i = 0; i < p->nv; i++) {
        vinfo *v = &p->v[i];
        first[i] = -2;
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
    return 0;
}

/* 4. Workspace offsets: first fit by start time over blocks sorted by
 * offset; *total receives the workspace's entries. */
static int lay_out_workspace(nb_program *p, liveness *lv, int64_t *total) {
    const int64_t align = (int64_t)(64 / p->k->real_size);
    int64_t *first = lv->first, *last = lv->last;
    int32_t *byfirst = lv->byfirst;
    block *active = lv->active;
    size_t nr = 0;
    for (size_t i = 0; i < p->nv; i++)
        if (first[i] >= -1) byfirst[nr++] = (int32_t)i;
    for (size_t i = 1; i < nr; i++) { /* stable insertion sort by first */
        int32_t x = byfirst[i];
        size_t j = i;
        while (j > 0 && first[byfirst[j - 1]] > first[x]) {
            byfirst[j] = byfirst[j - 1];
            j--;
        }
        byfirst[j] = x;
    }
    size_t na = 0;
    *total = 0;
    for (size_t q = 0; q < nr; q++) {
        int32_t i = byfirst[q];
        vinfo *v = &p->v[i];
        int64_t need = (v->r * v->c + align - 1) / align * align; /* <= 2^40 + align */
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
        if (off + need > *total) *total = off + need;
        if (*total > NB_MAX_ENTRIES)
            return nbc_perr(p, NB_ERR_ARG, "the workspace needs more than 2^40 entries");
    }
    return NB_OK;
}

/* 5. Addresses of aliases (inside their parent), inputs and outputs (the
 * caller's buffers: base 1 + input index, 1 + nin + output index). */
static void resolve_addresses(nb_program *p) {
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
}

static nb_arg memory_arg(const vinfo *v) {
    return (nb_arg){NB_A_FULL, v->base, 0, v->off};
}

/* 6a. A fused group: its space, block length, operand addresses, threads;
 * a one-element group gets room for its resolved straight-line form. */
/* Points a memory operand at value v's place in the workspace or a buffer. */
static void locate(const nb_program *p, nb_arg *a, int32_t v) {
    a->base = p->v[v].base;
    a->off = p->v[v].off;
}

static int plan_group(nb_program *p, nb_instr *in, const cgroup *G) {
    nb_group *g = in->g;
    g->rows = resolve(p, G->R);
    g->cols = resolve(p, G->C);
    if (g->rows * g->cols == 1 && !g->sops) {
        g->sops = calloc(g->nmops + 1, sizeof *g->sops);
        g->fixups = calloc(NB_SOP_PLACES * (size_t)g->nmops + 1, sizeof *g->fixups);
        if (!g->sops || !g->fixups) return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    }
    int64_t span = g->rowwise ? g->cols : g->rows * g->cols;
    g->blen = span < NB_BLOCK ? span : NB_BLOCK;
    for (uint32_t k = 0; k < g->nmops; k++) {
        nb_mop *m = &g->mops[k];
        const lop *L = &p->l[G->lops[k]];
        for (int s = 0; s < NB_MOP_SRCS; s++)
            if (L->src[s] >= 0 && m->src[s].mode != NB_A_REG) locate(p, &m->src[s], L->src[s]);
        if (m->dst.mode != NB_A_REG) locate(p, &m->dst, L->dst);
        if (L->dst2 >= 0 && m->dst2.mode != NB_A_REG) locate(p, &m->dst2, L->dst2);
        if (m->op == NB_M_RSUM) locate(p, &g->red_dst[m->acc], L->dst);
    }
    in->nt = 1;
    if (p->nthreads > 1 && (double)g->rows * (double)g->cols * g->nmops >= NB_PAR_MIN_WORK &&
        (!g->rowwise || g->rows >= p->nthreads))
        in->nt = p->nthreads;
    return NB_OK;
}

/* 6b. A kernel instruction: operands, sizes, threads.  Products pass their
 * sizes to BLAS as int: a dimension above INT_MAX is refused. */
static int plan_kernel(nb_program *p, nb_instr *in, const lop *L) {
    const vinfo *y = &p->v[L->dst], *a = L->src[0] >= 0 ? &p->v[L->src[0]] : y;
    const vinfo *b = L->src[1] >= 0 ? &p->v[L->src[1]] : NULL;
    in->y = memory_arg(y);
    in->a = memory_arg(a);
    if (b) in->b = memory_arg(b);
    in->ta = L->ta;
    in->tb = L->tb;
    in->alpha = L->alpha;
    if (L->alpha_vid >= 0) {
        in->has_alpha = 1;
        in->alpha_arg = memory_arg(&p->v[L->alpha_vid]);
    }
    double work = 0; /* element operations, to decide on threads */
    int64_t split;   /* the extent threads divide */
    switch (L->kind) {
    case NB_I_GEMM:
        in->m = L->ta ? a->c : a->r;
        in->k = L->ta ? a->r : a->c;
        in->n = L->tb ? b->r : b->c;
        in->lda = a->c;
        in->ldb = b->c;
        if (in->m > INT_MAX || in->n > INT_MAX || in->k > INT_MAX || in->lda > INT_MAX || in->ldb > INT_MAX)
            return nbc_perr(p, NB_ERR_ARG,
                            "a product of %lld x %lld by %lld x %lld is too large (dimensions at most %d)",
                            (long long)in->m, (long long)in->k, (long long)in->k, (long long)in->n, INT_MAX);
        work = (double)in->m * (double)in->n * (double)in->k / 8;
        split = in->m > in->n ? in->m : in->n;
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
        work = (double)in->m * (double)in->n * (L->kind == NB_I_SOFTMAX || L->kind == NB_I_XENT ? 8 : 1);
        split = (L->kind == NB_I_GEMV && L->ta) || L->kind == NB_I_COLSUM || L->kind == NB_I_TRANSPOSE ? in->n
                                                                                                       : in->m;
        break;
    case NB_I_MATFN: /* sizes of a and b; the commutation matrix K(m, n) has m in soff */
        in->m = L->src[0] >= 0 ? a->r : resolve(p, L->soff);
        in->n = L->src[0] >= 0 ? a->c : y->r / in->m;
        in->ldb = b ? b->r : 0;
        in->k = b ? b->c : 0;
        split = 1;
        break;
    case NB_I_STRIDED:
        in->m = y->r * y->c;
        in->stride = L->skind == SK_DIAG ? a->c + 1 : a->c;
        in->a.off += L->skind == SK_COLUMN ? L->soff : 0;
        split = in->m;
        break;
    case NB_I_DENSE_DIAG:
        in->m = y->r;
        in->stride = a->r * a->c > 1 ? 1 : 0;
        work = (double)y->r * (double)y->c;
        split = in->m;
        break;
    default: /* NB_I_GATHER */
        for (int32_t k = 0; k < L->nlist; k++)
            in->list[k] = memory_arg(&p->v[p->lists[L->list + k]]);
        split = 1;
        break;
    }
    in->nt = p->nthreads > 1 && work >= NB_PAR_MIN_WORK && split >= 2 * p->nthreads ? p->nthreads : 1;
    return NB_OK;
}

/* 6. Every instruction; *scratch and *nacc receive the per-thread needs. */
static int plan_instructions(nb_program *p, size_t *scratch, size_t *nacc) {
    *scratch = 0;
    *nacc = 1;
    for (size_t i = 0; i < p->nci; i++) {
        nb_instr *in = &p->ins[i];
        int rc = p->ci[i].is_group ? plan_group(p, in, &p->g[p->ci[i].id]) : plan_kernel(p, in, &p->l[p->ci[i].id]);
        if (rc) return rc;
        size_t s = nb_instr_scratch(in, p->k->real_size);
        if (s > *scratch) *scratch = s;
        if (nb_instr_accs(in) > *nacc) *nacc = nb_instr_accs(in);
    }
    return NB_OK;
}

/* 7. One allocation: the workspace of total entries, then per thread its
 * scratch and accumulators. */
static int allocate_workspace(nb_program *p, int64_t total, size_t scratch, size_t nacc) {
    const size_t rs = p->k->real_size;
    size_t work_bytes = (size_t)total * rs; /* total <= 2^40 + regions' partials */
    size_t scr_bytes = (scratch + 63) / 64 * 64, acc_bytes = (nacc * sizeof(double) + 63) / 64 * 64;
    size_t all = work_bytes + (size_t)p->nthreads * (scr_bytes + acc_bytes);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, all ? all : 64))
        return nbc_perr(p, NB_ERR_NOMEM, "out of memory: the workspace needs %zu bytes", all);
    free(p->work);
    p->work = mem;
    p->work_bytes = all;
    p->bases[0] = mem;
    for (int t = 0; t < p->nthreads; t++) {
        p->scratch[t] = (char *)mem + work_bytes + (size_t)t * (scr_bytes + acc_bytes);
        p->acc[t] = (double *)((char *)p->scratch[t] + scr_bytes);
    }
    return NB_OK;
}

/* 8. One-element groups' addresses; constants, dimension values, then the
 * input-independent instructions. */
static void run_init(nb_program *p) {
    for (size_t i = 0; i < p->nci; i++) {
        nb_group *g = p->ins[i].g;
        if (g && g->sops && g->rows * g->cols == 1) p->k->prepare_scalar(g, (void *const *)p->bases, p->scratch[0]);
    }
    for (size_t i = 0; i < p->nv; i++) {
        const vinfo *v = &p->v[i];
        if (v->parent >= 0) continue;
        if (v->kind == VK_CONST) p->k->store(p->work, v->off, v->cval);
        if (v->kind == VK_DIM)
            p->k->store(p->work, v->off, (double)resolve(p, v->d1) * (double)resolve(p, v->d2));
    }
    for (size_t i = 0; i < p->ninit; i++) {
        nb_instr *in = &p->ins[i];
        p->k->exec(in, (void *const *)p->bases, p->scratch[0], p->acc[0], 0, 1);
        p->k->finish(in, (void *const *)p->bases, p->acc, 1);
    }
}

int nbc_plan(nb_program *p) {
    liveness lv = {0};
    int64_t total = 0, extra = 0;
    size_t scratch = 0, nacc = 0;
    int rc = size_values(p);
    if (rc) return rc;
    assign_instructions(p);
    if (live_intervals(p, &lv)) rc = nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    if (!rc) rc = lay_out_workspace(p, &lv, &total);
    liveness_free(&lv);
    if (rc) return rc;
    resolve_addresses(p);
    rc = plan_instructions(p, &scratch, &nacc);
    if (rc) return rc;
    if (nbc_plan_regions(p, &nacc, &extra)) return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->nci; i++)
        if (p->partial_off[i] >= 0) p->partial_off[i] += total;
    if (total + extra > NB_MAX_ENTRIES)
        return nbc_perr(p, NB_ERR_ARG, "the workspace needs more than 2^40 entries");
    rc = allocate_workspace(p, total + extra, scratch, nacc);
    if (rc) return rc;
    run_init(p);
    p->planned = 1;
    return NB_OK;
}
