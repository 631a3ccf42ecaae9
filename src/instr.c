/* The executable instruction list, built once after fusion: one nb_instr per
 * kernel lop, and for each fused group its micro-operations with registers
 * allocated (values that live only inside the group occupy a block-long
 * register, reused once their last reader ran).  Addresses and sizes are
 * filled in by plan.c when the dimensions are bound. */
#include "engine.h"

/* Which values live in memory rather than in a group register: leaves,
 * kernel results, values read outside their group or not element by element,
 * outputs, reduction results. */
static void mark_memory_values(nb_program *p) {
    for (size_t i = 0; i < p->nv; i++)
        if (p->v[i].def < 0) p->v[i].mem = 1;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live) continue;
        for (int k = 0; k < 2; k++) {
            int32_t d = lop_dst(L, k);
            if (d >= 0 && (L->kind != LK_MOP || p->v[d].is_red || p->v[d].out >= 0)) p->v[d].mem = 1;
        }
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t s = lop_src(p, L, k);
            if (s < 0) continue;
            int32_t r = root_of(p, s);
            int32_t d = p->v[r].def;
            if (d < 0) continue;
            const lop *D = &p->l[d];
            if (D->kind != LK_MOP || L->kind != LK_MOP || gfind(p, D->group) != gfind(p, L->group) ||
                !nbc_whole_alias(p, s))
                p->v[r].mem = 1;
        }
    }
}

/* Register allocation scratch, by value id (reg, lastuse) and a free list. */
typedef struct {
    int32_t *lastuse, *reg, *freeregs;
} regstate;

static void operand_modes(const nb_program *p, const lop *L, nb_mop *m, nb_group *g, const regstate *rs) {
    for (int s = 0; s < NB_MOP_SRCS; s++) {
        if (L->src[s] < 0) continue;
        int32_t r = root_of(p, L->src[s]);
        if (!p->v[r].mem) {
            m->src[s].mode = NB_A_REG;
            m->src[s].reg = (uint32_t)rs->reg[r];
        } else {
            m->src[s].mode = L->mode[s];
            if (L->mode[s] == NB_A_ROWB || L->mode[s] == NB_A_COLB) g->rowwise = 1;
        }
    }
}

/* A fused group: micro-operations in order, registers reused after the
 * last read of their value. */
static int build_group(nb_program *p, nb_instr *in, const cgroup *G, regstate *rs) {
    nb_group *g = calloc(1, sizeof *g);
    if (!g) return -1;
    in->kind = NB_I_GROUP;
    in->g = g;
    g->nmops = (uint32_t)G->n;
    g->mops = calloc(G->n, sizeof *g->mops);
    if (!g->mops) return -1;
    for (size_t k = 0; k < G->n; k++) {
        const lop *L = &p->l[G->lops[k]];
        for (int s = 0; s < NB_MOP_SRCS; s++)
            if (L->src[s] >= 0) rs->lastuse[root_of(p, L->src[s])] = (int32_t)k;
        if (L->op == NB_M_RSUM) g->nred++;
    }
    g->red_dst = calloc(g->nred ? g->nred : 1, sizeof *g->red_dst);
    if (!g->red_dst) return -1;
    uint32_t nfree = 0, nregs = 0, nred = 0;
    for (size_t k = 0; k < G->n; k++) {
        const lop *L = &p->l[G->lops[k]];
        nb_mop *m = &g->mops[k];
        m->op = (uint16_t)L->op;
        operand_modes(p, L, m, g, rs);
        if (L->op == NB_M_RSUM) {
            m->acc = nred;
            g->red_dst[nred++].mode = NB_A_FULL;
        } else {
            for (int d = 0; d < 2; d++) {
                int32_t v = lop_dst(L, d);
                nb_arg *dst = d ? &m->dst2 : &m->dst;
                if (v < 0) continue;
                if (!p->v[v].mem) {
                    int32_t rg = nfree ? rs->freeregs[--nfree] : (int32_t)nregs++;
                    rs->reg[v] = rg;
                    dst->mode = NB_A_REG;
                    dst->reg = (uint32_t)rg;
                } else {
                    dst->mode = NB_A_FULL;
                }
            }
        }
        for (int s = 0; s < NB_MOP_SRCS; s++) { /* registers read for the last time are free (once each) */
            if (L->src[s] < 0) continue;
            int32_t r = root_of(p, L->src[s]);
            if (!p->v[r].mem && rs->lastuse[r] == (int32_t)k) {
                rs->freeregs[nfree++] = rs->reg[r];
                rs->lastuse[r] = -1;
            }
        }
    }
    g->nregs = nregs;
    return 0;
}

int nbc_build_instructions(nb_program *p) {
    p->ins = calloc(p->nci ? p->nci : 1, sizeof *p->ins);
    p->bases = calloc(1 + p->nin + p->nout, sizeof *p->bases);
    if (!p->ins || !p->bases) return -1;
    mark_memory_values(p);
    regstate rs = {calloc(p->nv + 1, sizeof *rs.lastuse), malloc((p->nv + 1) * sizeof *rs.reg),
                   malloc((p->nl + 1) * sizeof *rs.freeregs)};
    int rc = rs.lastuse && rs.reg && rs.freeregs ? 0 : -1;
    for (size_t i = 0; i < p->nci && !rc; i++) {
        nb_instr *in = &p->ins[i];
        if (p->ci[i].is_group) {
            rc = build_group(p, in, &p->g[p->ci[i].id], &rs);
            continue;
        }
        const lop *L = &p->l[p->ci[i].id];
        in->kind = L->kind;
        in->fn = L->op;
        if (L->kind == NB_I_GATHER) {
            in->list = calloc((size_t)L->nlist, sizeof *in->list);
            in->nlist = (size_t)L->nlist;
            if (!in->list) rc = -1;
        }
    }
    free(rs.lastuse);
    free(rs.reg);
    free(rs.freeregs);
    return rc;
}
