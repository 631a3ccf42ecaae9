/* Fusion and order.
 * Element-wise lops over the same iteration space join one group when they
 * read each other's values element by element.  A value read any other way
 * (broadcast, reduction result, other space) makes the reader's group depend
 * on the producer's; groups stay open until a kernel needs their values, and
 * a join that would close a dependency cycle is refused.  Emitting a group
 * first emits the groups it depends on.
 * Input-independent lops (constants, dimension values, and what only depends
 * on them) are grouped and ordered first: they run once when sizes are bound. */
#include "engine.h"

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

/* Users of each live lop of class inv (CSR: users[ustart[d] .. ustart[d+1]))
 * and each lop's count of pending sources. */
typedef struct {
    int32_t *pending, *ustart, *users;
} usergraph;

static void usergraph_free(usergraph *u) {
    free(u->pending);
    free(u->ustart);
    free(u->users);
}

static int build_users(const nb_program *p, int inv, usergraph *u) {
    u->pending = calloc(p->nl + 1, sizeof *u->pending);
    u->ustart = calloc(p->nl + 2, sizeof *u->ustart);
    int32_t *fill = calloc(p->nl + 1, sizeof *fill);
    size_t nusers = 0;
    if (!u->pending || !u->ustart || !fill) goto oom;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live || L->invariant != inv) continue;
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t d = source_lop(p, L, k, inv);
            if (d < 0) continue;
            u->pending[li]++;
            u->ustart[d + 1]++;
            nusers++;
        }
    }
    for (size_t li = 0; li < p->nl; li++)
        u->ustart[li + 1] += u->ustart[li];
    u->users = malloc((nusers + 1) * sizeof *u->users);
    if (!u->users) goto oom;
    for (size_t li = 0; li < p->nl; li++) {
        const lop *L = &p->l[li];
        if (!L->live || L->invariant != inv) continue;
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t d = source_lop(p, L, k, inv);
            if (d >= 0) u->users[u->ustart[d] + fill[d]++] = (int32_t)li;
        }
    }
    free(fill);
    return 0;
oom:
    free(fill);
    return -1;
}

/* The group an element-wise lop joins: an open group it reads element by
 * element (merging candidates where no dependency forbids it), else a recent
 * open group over the same space, else a new one; the groups it reads
 * otherwise become dependencies. */
static void place_mop(fstate *f, size_t first_group, int32_t li) {
    nb_program *p = f->p;
    lop *L = &p->l[li];
    int32_t cand[2], deps[4];
    int nc = 0, nd = 0;
    for (int k = 0; k < 2; k++) {
        int32_t s = L->src[k];
        int32_t G = s >= 0 ? open_group_of(p, s) : -1;
        if (G < 0) continue;
        int32_t r = root_of(p, s);
        bool aligned = p->g[G].R == L->sr && p->g[G].C == L->sc && !p->v[r].is_red && L->mode[k] == NB_A_FULL &&
                       nbc_whole_alias(p, s);
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
    G->lops[G->n++] = li;
    L->group = gfind(p, gsel);
}

/* Before a kernel: the open one-element groups whose values are ready (every
 * group they depend on emitted) are emitted now.  Kept open, such a group
 * would take in later scalar work that waits for the kernel's results (a
 * cost's final division), and a later product that reads the group's first
 * value (its scale, η·2/N) would then wait for it too: a scalar instruction
 * between X·w and Xᵀ·g, which splits their row region (tile.c). */
static void seal_ready_scalars(fstate *f, size_t first_group) {
    nb_program *p = f->p;
    for (size_t g = first_group; g < p->ng && !f->oom; g++) {
        cgroup *G = &p->g[g];
        if (G->parent != (int32_t)g || G->sealed || G->R != 1 || G->C != 1) continue;
        bool ready = true;
        for (size_t k = 0; k < G->nd && ready; k++)
            ready = p->g[gfind(p, G->deps[k])].sealed;
        if (ready) seal(f, (int32_t)g);
    }
}

/* Groups the live lops whose invariance is inv, taking them in readiness
 * order; a kernel lop seals the open groups it reads and is emitted. */
static void fuse(fstate *f, int inv) {
    nb_program *p = f->p;
    size_t first_group = p->ng, nheap = 0;
    usergraph u = {0};
    int32_t *heap = malloc((p->nl + 1) * sizeof *heap);
    if (!heap || build_users(p, inv, &u)) {
        f->oom = 1;
        goto done;
    }
    for (size_t li = 0; li < p->nl; li++)
        if (p->l[li].live && p->l[li].invariant == inv && u.pending[li] == 0) heap_push(p, heap, &nheap, (int32_t)li);
    while (nheap && !f->oom) {
        int32_t li = heap_pop(p, heap, &nheap);
        const lop *L = &p->l[li];
        for (int32_t k = u.ustart[li]; k < u.ustart[li + 1]; k++)
            if (--u.pending[u.users[k]] == 0) heap_push(p, heap, &nheap, u.users[k]);
        if (L->kind == LK_MOP) {
            place_mop(f, first_group, li);
            continue;
        }
        seal_ready_scalars(f, first_group);
        for (int k = 0; k < lop_nsrc(L); k++) {
            int32_t s = lop_src(p, L, k);
            int32_t G = s >= 0 ? open_group_of(p, s) : -1;
            if (G >= 0) seal(f, G);
        }
        emit_inst(f, 0, li);
    }
    for (size_t g = first_group; g < p->ng && !f->oom; g++)
        if (p->g[g].parent == (int32_t)g && !p->g[g].sealed) seal(f, (int32_t)g);
done:
    usergraph_free(&u);
    free(heap);
}

int nbc_fuse_and_order(nb_program *p) {
    fstate f = {p, 0, 0, NULL, 0, 0, 0};
    fuse(&f, 1);
    p->ninit = p->nci;
    fuse(&f, 0);
    free(f.stack);
    return f.oom ? -1 : 0;
}
