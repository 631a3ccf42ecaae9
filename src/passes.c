/* Passes over the lowered lops: dead code (lops whose results no output
 * needs are dropped), scale folding (s·(A·B) becomes the product's alpha),
 * and, after fusion, combining pairs of element-wise lops of one group
 * (sin and cos of one operand; an operation and the one reading its result). */
#include "engine.h"

/* ---- dead lops ---------------------------------------------------------------- */
int nbc_mark_live(nb_program *p) {
    uint8_t *need = calloc(p->nv + 1, 1);
    if (!need) return -1;
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
    return 0;
}

/* Readers of each value's storage (live lops' sources, outputs twice). */
static int32_t *count_uses(const nb_program *p) {
    int32_t *uses = calloc(p->nv + 1, sizeof *uses);
    if (!uses) return NULL;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live) continue;
        for (int k = 0; k < lop_nsrc(L); k++)
            if (lop_src(p, L, k) >= 0) uses[root_of(p, lop_src(p, L, k))]++;
    }
    for (size_t i = 0; i < p->nout; i++)
        uses[root_of(p, p->out_vid[i])] += 2;
    return uses;
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
void nbc_fold_scales(cstate *c) {
    nb_program *p = c->p;
    int32_t *uses = count_uses(p);
    if (!uses) return; /* an optimisation: skip it */
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
            if (op == NB_M_DIV) a = nbc_emit_mop(c, NB_M_RECIP, 1, 1, sc, -1);
            if (p->l[ki].alpha_vid >= 0) a = nbc_emit_mop(c, NB_M_MUL, 1, 1, p->l[ki].alpha_vid, a);
            if (a < 0) return;
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

/* ---- combining pairs inside groups ------------------------------------------- */
/* sin(u) and cos(u) in one group: the first of the two becomes SINCOS
 * (dst sin, dst2 cos), the second goes.  trig[u]: the group position + 1 of
 * the first unpaired sin or cos of u (zero elsewhere, and again after). */
static void pair_sincos(nb_program *p, const cgroup *G, int32_t *trig) {
    for (size_t k = 0; k < G->n; k++) {
        lop *L = &p->l[G->lops[k]];
        if (L->op != NB_M_SIN && L->op != NB_M_COS) continue;
        int32_t u = L->src[0];
        if (!trig[u]) {
            trig[u] = (int32_t)k + 1;
            continue;
        }
        lop *E = &p->l[G->lops[trig[u] - 1]];
        if (E->op == L->op || E->op == NB_M_SINCOS || E->mode[0] != L->mode[0]) continue;
        const int32_t vs = E->op == NB_M_SIN ? E->dst : L->dst, vc = E->op == NB_M_SIN ? L->dst : E->dst;
        E->op = NB_M_SINCOS;
        E->dst = vs;
        E->dst2 = vc;
        p->v[vs].def = p->v[vc].def = G->lops[trig[u] - 1];
        L->live = 0;
    }
    for (size_t k = 0; k < G->n; k++) {
        const lop *L = &p->l[G->lops[k]];
        if (L->src[0] >= 0) trig[L->src[0]] = 0;
    }
}

static bool commutes(int op) {
    return op == NB_M_ADD || op == NB_M_MUL;
}

/* The fused operation for outer reading inner's result as its operand pos
 * (NB_FUSED_MOP_LIST: the first, or either of a commutative operation), or -1. */
static int fused_op(int inner, int outer, int pos) {
#define NB_X(name, in, out)                                                                                  \
    if (inner == NB_M_##in && outer == NB_M_##out && (pos == 0 || commutes(outer))) return NB_M_##name;
    NB_FUSED_MOP_LIST(NB_X)
#undef NB_X
    return -1;
}

/* The lop defining operand pos of L when it can join L as the inner half of
 * a fused pair: a binary element-wise lop of the same group whose result
 * only L reads, element by element, from a group register. */
static int32_t inner_candidate(const nb_program *p, const lop *L, int pos, const int32_t *uses) {
    int32_t x = L->src[pos];
    if (x < 0 || p->v[x].parent >= 0 || p->v[x].def < 0 || uses[x] != 1 || p->v[x].out >= 0 || p->v[x].is_red ||
        L->mode[pos] != NB_A_FULL)
        return -1;
    int32_t d = p->v[x].def;
    const lop *I = &p->l[d];
    if (!I->live || I->forced || I->kind != LK_MOP || I->dst != x || nb_mop_arity[I->op] != 2 ||
        I->group != L->group)
        return -1;
    return d;
}

/* An element-wise binary lop reading the result of another (inner) that
 * nothing else reads becomes their fused pair; of two candidates, the one
 * computed later (its operands are the most recent values).  at[li]: the
 * position of lop li in G. */
static void fuse_pairs(nb_program *p, const cgroup *G, int32_t *uses, int32_t *at) {
    for (size_t k = 0; k < G->n; k++)
        at[G->lops[k]] = (int32_t)k;
    for (size_t k = 0; k < G->n; k++) {
        lop *L = &p->l[G->lops[k]];
        if (!L->live || nb_mop_arity[L->op] != 2) continue;
        int best = -1, op = -1;
        int32_t inner = -1;
        for (int pos = 0; pos < 2; pos++) {
            int32_t d = inner_candidate(p, L, pos, uses);
            int f = d >= 0 ? fused_op(p->l[d].op, L->op, pos) : -1;
            if (f >= 0 && (inner < 0 || at[d] > at[inner])) {
                best = pos;
                op = f;
                inner = d;
            }
        }
        if (inner < 0) continue;
        lop *I = &p->l[inner];
        const int32_t other = L->src[1 - best];
        const uint8_t other_mode = L->mode[1 - best];
        uses[L->src[best]] = 0;
        L->op = op;
        L->src[0] = I->src[0];
        L->src[1] = I->src[1];
        L->src[2] = other;
        L->mode[0] = I->mode[0];
        L->mode[1] = I->mode[1];
        L->mode[2] = other_mode;
        I->live = 0;
    }
}

void nbc_combine_pairs(nb_program *p) {
    int32_t *uses = count_uses(p), *trig = calloc(p->nv + 1, sizeof *trig), *at = malloc((p->nl + 1) * sizeof *at);
    if (!uses || !trig || !at) { /* an optimisation: skip it */
        free(uses);
        free(trig);
        free(at);
        return;
    }
    for (size_t i = 0; i < p->nci; i++) {
        if (!p->ci[i].is_group) continue;
        cgroup *G = &p->g[p->ci[i].id];
        for (size_t k = 0; k < G->n; k++)
            p->l[G->lops[k]].group = p->ci[i].id;
        pair_sincos(p, G, trig);
        fuse_pairs(p, G, uses, at);
        size_t n = 0; /* the lops that went leave the group */
        for (size_t k = 0; k < G->n; k++)
            if (p->l[G->lops[k]].live) G->lops[n++] = G->lops[k];
        G->n = n;
    }
    free(uses);
    free(trig);
    free(at);
}
