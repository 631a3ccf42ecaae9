/* Row tiling.  A region is a run of consecutive instructions that are
 * row-local over one dimension D (gemv/gemm over rows, element-wise loops,
 * row-wise softmax) or sum over it (Aᵀx, Aᵀ·B, column sums, reductions).
 * They run tile by tile of rows, so a matrix read by several of them (X in
 * X·w and Xᵀ·g) streams from memory once and is re-read from cache; each
 * thread takes a range of rows, and its sums over rows go to private
 * partials added at the end (run.c).  This file finds the regions after
 * fusion and sizes their tiles when the plan is made; with NB_COMPILE_NATIVE
 * a region of the row-fused shape runs as generated code instead (native.c). */
#include "engine.h"

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
            for (int q = 0; q < NB_MOP_SRCS; q++)
                if (L->src[q] >= 0 && m->src[q].mode != NB_A_REG)
                    t_read(t, L->src[q], m->src[q].mode == NB_A_FULL || m->src[q].mode == NB_A_COLB);
            if (L->op == NB_M_RSUM)
                t_prod(t, L->dst, 1);
            else if (m->dst.mode != NB_A_REG)
                t_prod(t, L->dst, 0);
            if (L->dst2 >= 0 && m->dst2.mode != NB_A_REG) t_prod(t, L->dst2, 0);
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
int nbc_find_regions(nb_program *p) {
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
                p->regions[p->nregions] = (region){.start = start, .end = i, .D = D, .active = 1};
                for (size_t j = start; j < i; j++)
                    p->inst_region[j] = (int32_t)p->nregions;
                if ((p->flags & NB_COMPILE_NATIVE) && nbc_native_find(p, &p->regions[p->nregions])) goto oom;
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
int nbc_plan_regions(nb_program *p, size_t *nacc, int64_t *extra_out) {
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
        /* accumulator slots: the region's instructions' in order (generated code names them) */
        size_t base = 0;
        for (size_t i = R->start; i < R->end; i++) {
            p->acc_base[i] = base;
            base += nb_instr_accs(&p->ins[i]);
        }
        if (R->native && nbc_native_plan(p, R)) t.oom = 1;
        if (nbc_native_ready(R)) { /* one pass; a thread's share: at least NB_PAR_MIN_WORK entries */
            R->active = t.oom == 0;
            R->nt = p->nthreads > 1 && (double)R->rows * per_row >= (double)NB_PAR_MIN_WORK * p->nthreads
                        ? p->nthreads
                        : 1;
        } else {
            R->active = t.oom == 0 && R->tile >= 32 && R->rows >= 2 * R->tile;
            R->nt = R->active && p->nthreads > 1 && R->rows >= 2 * R->tile * p->nthreads ? p->nthreads : 1;
        }
        if (!R->active) continue;
        for (size_t i = R->start; i < R->end; i++) {
            nb_instr *in = &p->ins[i];
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
    *extra_out = extra;
    return t.oom ? -1 : 0;
}

void nbc_free_regions(nb_program *p) {
    for (size_t r = 0; r < p->nregions; r++)
        nbc_native_free(p->regions[r].native);
    free(p->regions);
}
