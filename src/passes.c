/* Passes over the lowered lops: dead code (lops whose results no output
 * needs are dropped) and scale folding (s·(A·B) becomes the product's alpha). */
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
