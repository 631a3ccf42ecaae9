/* The program: the nb_compile driver (a sequence of the compiler's stages),
 * binding sizes (which plans), threads, and the public getters.  Every public
 * function checks its arguments and reports errors through nb_program_error
 * (or nb_error of the context for nb_compile). */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#ifdef NB_HAVE_CBLAS
#include <cblas.h>
#endif

#define NB_KNOWN_FLAGS                                                                                       \
    (NB_COMPILE_DENSE | NB_COMPILE_CHECK_FINITE | NB_COMPILE_NO_COMBINE | NB_COMPILE_NATIVE)

int nbc_perr(nb_program *p, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return code;
}

char *nbc_dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

bool nbc_all_bound(const nb_program *p, const char **missing) {
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_vals[j] <= 0) {
            *missing = p->dim_names[j];
            return false;
        }
    return true;
}

int nbc_replan(nb_program *p) {
    const char *missing;
    p->planned = 0;
    if (!nbc_all_bound(p, &missing))
        return nbc_perr(p, NB_ERR_UNBOUND, "dimension %s is not bound (nb_program_bind_dim)", missing);
    int rc = nbc_plan(p);
    if (rc == NB_ERR_UNBOUND) return nbc_perr(p, rc, "a dimension is not bound");
    return rc;
}

/* ---- nb_compile ---------------------------------------------------------- */
static int check_compile_args(nb_ctx *ctx, size_t nout, nb_expr *const *outputs, size_t nin,
                              nb_expr *const *inputs, nb_dtype dtype, unsigned flags) {
    if (nout == 0 || !outputs) return nb_set_error(ctx, "compile: no outputs"), -1;
    if (nin && !inputs) return nb_set_error(ctx, "compile: inputs is NULL"), -1;
    if (dtype != NB_F64 && dtype != NB_F32) return nb_set_error(ctx, "compile: unknown dtype %d", (int)dtype), -1;
    if (flags & ~NB_KNOWN_FLAGS) return nb_set_error(ctx, "compile: unknown flags 0x%x", flags & ~NB_KNOWN_FLAGS), -1;
    if (nin > 254 || nout > 254 || nin + nout > 254)
        return nb_set_error(ctx, "compile: at most 254 inputs and outputs together, got %zu and %zu", nin, nout), -1;
    for (size_t i = 0; i < nout; i++)
        if (!outputs[i]) {
            char prev[sizeof ctx->error];
            snprintf(prev, sizeof prev, "%s", nb_error(ctx));
            nb_set_error(ctx, "compile: output %zu is NULL%s%s", i, prev[0] ? " after: " : "", prev);
            return -1;
        }
    for (size_t i = 0; i < nin; i++) {
        if (!inputs[i] || inputs[i]->op != NB_OP_VAR)
            return nb_set_error(ctx, "compile: input %zu is not a variable", i), -1;
        for (size_t j = 0; j < i; j++)
            if (inputs[j] == inputs[i])
                return nb_set_error(ctx, "compile: input '%s' is listed twice", inputs[i]->a.name), -1;
    }
    return 0;
}

static int add_dims(cstate *c, nb_node *const *nodes, size_t n);

/* A dimension lowering made (a product of the program's dimensions) joins
 * the table. */
int nbc_add_dim(cstate *c, nb_dim d) {
    nb_node *size = nb_dimval(c->ctx, d);
    return size ? add_dims(c, &size, 1) : nbc_cfail(c, "out of memory");
}

/* ---- product dimensions ------------------------------------------------------ */
/* A product dimension "m·n·…" (kron.c's nb_dim_mul) is derived: its size is
 * the product of its factors' sizes, recomputed at every bind. */
static int add_factor(void *arg, const char *f, size_t len) {
    cstate *c = arg;
    if (len == 0 || strspn(f, "0123456789") >= len) return 0; /* a number */
    nb_node *sym = nb_dimval(c->ctx, nb_dim_symbol_len(c->ctx, f, len));
    if (!sym) return nbc_cfail(c, "out of memory");
    return add_dims(c, &sym, 1);
}

/* The symbols a product dimension is made of join the table too, so that
 * binding them re-derives the product. */
static int add_factor_dims(cstate *c, const char *name) {
    return nb_dim_is_product(name) ? nb_dim_each_factor(name, add_factor, c) : 0;
}

/* a factor's size in the program's table (0: not there or unbound) */
static int64_t size_in_table(const void *table, const char *factor, size_t len) {
    const nb_program *p = table;
    for (size_t j = 0; j < p->ndims; j++)
        if (strlen(p->dim_names[j]) == len && strncmp(p->dim_names[j], factor, len) == 0) return p->dim_vals[j];
    return 0;
}

/* Sets every product dimension to the product of its factors (0 while one is
 * unbound); a product over 2^40 is refused (NB_ERR_ARG). */
static int derive_product_dims(nb_program *p) {
    for (size_t j = 0; j < p->ndims; j++) {
        if (!nb_dim_is_product(p->dim_names[j])) continue;
        bool overflow;
        const int64_t v = nb_dim_factor_product(p->dim_names[j], size_in_table, p, NB_MAX_ENTRIES, &overflow);
        if (overflow) return nbc_perr(p, NB_ERR_ARG, "dimension %s is too large (at most 2^40)", p->dim_names[j]);
        p->dim_vals[j] = v;
    }
    return NB_OK;
}

/* The dimension symbols of nodes' types (and of dimension values, identities)
 * join the program's table, with the context's bound sizes. */
static int add_dims(cstate *c, nb_node *const *nodes, size_t n) {
    nb_program *p = c->p;
    for (size_t i = 0; i < n; i++) {
        nb_dim extra = nodes[i]->op == NB_OP_DIMVAL || nodes[i]->op == NB_OP_IDENTITY ? nodes[i]->a.dim : 1;
        nb_dim all[3] = {nodes[i]->type.rows, nodes[i]->type.cols, extra};
        for (int k = 0; k < 3; k++) {
            nb_dim d = all[k];
            if (d > 0) continue;
            size_t j = 0;
            while (j < p->ndims && p->dim_ids[j] != d)
                j++;
            if (j < p->ndims) continue;
            char number[24];
            const char *name = nb_dim_name(c->ctx, d, number, sizeof number);
            size_t cap = p->ndims;
            if (grow((void **)&p->dim_names, &cap, p->ndims + 1, sizeof *p->dim_names)) goto oom;
            cap = p->ndims;
            if (grow((void **)&p->dim_ids, &cap, p->ndims + 1, sizeof *p->dim_ids)) goto oom;
            cap = p->ndims;
            if (grow((void **)&p->dim_vals, &cap, p->ndims + 1, sizeof *p->dim_vals)) goto oom;
            p->dim_names[p->ndims] = nbc_dupstr(name);
            p->dim_ids[p->ndims] = d;
            p->dim_vals[p->ndims] = nb_dim_value(c->ctx, d);
            if (!p->dim_names[p->ndims]) goto oom;
            p->ndims++;
            if (add_factor_dims(c, name)) return -1;
        }
    }
    return 0;
oom:
    return nbc_cfail(c, "out of memory");
}

/* The program's interface: inputs (names, types, their values), outputs'
 * types, and the dimensions they use. */
static int make_interface(cstate *c, nb_expr *const *outputs, nb_expr *const *inputs) {
    nb_program *p = c->p;
    p->in_names = calloc(p->nin + 1, sizeof *p->in_names);
    p->in_types = calloc(p->nin + 1, sizeof *p->in_types);
    p->in_vid = calloc(p->nin + 1, sizeof *p->in_vid);
    p->out_types = calloc(p->nout, sizeof *p->out_types);
    p->out_vid = calloc(p->nout, sizeof *p->out_vid);
    p->out_st = calloc(p->nout, sizeof *p->out_st);
    if (!p->in_names || !p->in_types || !p->in_vid || !p->out_types || !p->out_vid || !p->out_st)
        return nbc_cfail(c, "out of memory");
    for (size_t i = 0; i < p->nin; i++) {
        p->in_names[i] = nbc_dupstr(inputs[i]->a.name);
        p->in_types[i] = inputs[i]->type;
        if (!p->in_names[i]) return nbc_cfail(c, "out of memory");
        p->in_vid[i] = nbc_new_value(c, inputs[i]->type.rows, inputs[i]->type.cols, VK_INPUT);
        if (p->in_vid[i] < 0) return -1;
        p->v[p->in_vid[i]].index = (int32_t)i;
        p->v[p->in_vid[i]].invariant = 0;
    }
    for (size_t i = 0; i < p->nout; i++)
        p->out_types[i] = outputs[i]->type;
    if (add_dims(c, inputs, p->nin) || add_dims(c, outputs, p->nout)) return -1;
    return 0;
}

/* The nodes the outputs reach, in id order (a topological order); *n
 * receives their count. */
static nb_node **collect_reachable(cstate *c, nb_expr *const *outputs, size_t nout, size_t *n) {
    uint32_t maxid = 0;
    for (size_t i = 0; i < nout; i++)
        maxid = outputs[i]->id > maxid ? outputs[i]->id : maxid;
    size_t nid = (size_t)maxid + 1;
    uint8_t *seen = calloc(nid, 1);
    nb_node **order = malloc(nid * sizeof *order);
    if (!seen || !order) {
        free(seen);
        free(order);
        nbc_cfail(c, "out of memory");
        return NULL;
    }
    size_t top = 0; /* order doubles as the stack */
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
    *n = 0;
    for (size_t id = 0; id < nid; id++)
        if (seen[id]) order[(*n)++] = c->ctx->nodes[id];
    free(seen);
    return order;
}

/* Lowering's side arrays, by node id (uses: over the n reachable nodes and
 * the outputs). */
static int lowering_state(cstate *c, size_t nid, nb_node *const *order, size_t n, nb_expr *const *outputs) {
    c->nv = malloc(nid * sizeof *c->nv);
    c->dense = malloc(nid * sizeof *c->dense);
    c->diagvec = malloc(nid * sizeof *c->diagvec);
    c->uses = calloc(nid, sizeof *c->uses);
    if (!c->nv || !c->dense || !c->diagvec || !c->uses) return nbc_cfail(c, "out of memory");
    for (size_t i = 0; i < nid; i++) {
        c->nv[i] = (nval){ST_DENSE, 0, -1, 0};
        c->dense[i] = c->diagvec[i] = -1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < order[i]->nargs; k++)
            c->uses[order[i]->args[k]->id]++;
    for (size_t i = 0; i < c->p->nout; i++)
        c->uses[outputs[i]->id]++;
    return 0;
}

static void cstate_free(cstate *c) {
    free(c->nv);
    free(c->dense);
    free(c->diagvec);
    free(c->uses);
    free(c->cse);
}

/* After the stages: the executable instructions, the row-tiled regions, the
 * per-thread tables, and the plan when every size is known. */
static int program_init(nb_program *p) {
    if (nbc_build_instructions(p)) return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    p->acc_base = calloc(p->nci + 1, sizeof *p->acc_base);
    p->partial_off = calloc(p->nci + 1, sizeof *p->partial_off);
    p->red_len = calloc(p->nci + 1, sizeof *p->red_len);
    p->scratch = calloc(NB_MAX_THREADS, sizeof *p->scratch);
    p->acc = calloc(NB_MAX_THREADS, sizeof *p->acc);
    if (!p->acc_base || !p->partial_off || !p->red_len || !p->scratch || !p->acc || nbc_find_regions(p))
        return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    const char *missing;
    int rc = derive_product_dims(p);
    if (rc == NB_OK && nbc_all_bound(p, &missing)) return nbc_replan(p);
    return rc;
}

nb_program *nb_compile(nb_ctx *ctx, size_t nout, nb_expr *const *outputs, size_t nin, nb_expr *const *inputs,
                       nb_dtype dtype, unsigned flags) {
    if (!ctx || check_compile_args(ctx, nout, outputs, nin, inputs, dtype, flags)) return NULL;
    nb_program *p = calloc(1, sizeof *p);
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
    cstate c = {.ctx = ctx, .p = p, .inputs = inputs};
    size_t n = 0;
    nb_node **order = NULL;
    int ok = make_interface(&c, outputs, inputs) == 0 && (order = collect_reachable(&c, outputs, nout, &n)) &&
             add_dims(&c, order, n) == 0 && lowering_state(&c, order[n - 1]->id + 1u, order, n, outputs) == 0 &&
             nbc_lower(&c, order, n) == 0 && nbc_lower_outputs(&c, outputs) == 0;
    if (ok && nbc_mark_live(p)) ok = nbc_cfail(&c, "out of memory") == 0;
    if (ok) {
        nbc_fold_scales(&c);
        ok = !c.failed;
    }
    if (ok && nbc_fuse_and_order(p)) ok = nbc_cfail(&c, "out of memory") == 0;
    if (ok && !(flags & NB_COMPILE_NO_COMBINE)) nbc_combine_pairs(p);
    free(order);
    cstate_free(&c);
    if (ok && program_init(p)) {
        nb_set_error(ctx, "compile: %s", p->err);
        c.failed = 1;
        ok = 0;
    }
    if (!ok) {
        if (!c.failed) nb_set_error(ctx, "compile: failed");
        nb_program_free(p);
        return NULL;
    }
#if defined(NB_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
    openblas_set_num_threads(1); /* threads are the program's business (nb_program_set_threads) */
#endif
    return p;
}

/* ---- binding sizes --------------------------------------------------------- */
/* After dimension values changed (old values in saved): plans when all are
 * bound; when that fails the old values come back, with their plan. */
static int plan_or_restore(nb_program *p, const int64_t *saved) {
    const char *missing;
    p->planned = 0;
    int rc = derive_product_dims(p);
    if (rc == NB_OK && !nbc_all_bound(p, &missing)) return NB_OK;
    if (rc == NB_OK) rc = nbc_replan(p);
    if (rc == NB_OK) return NB_OK;
    memcpy(p->dim_vals, saved, p->ndims * sizeof *saved);
    if (nbc_all_bound(p, &missing)) {
        char err[sizeof p->err];
        memcpy(err, p->err, sizeof err);
        nbc_replan(p);
        memcpy(p->err, err, sizeof err);
    }
    return rc;
}

/* Sets dimension d (a number is checked instead) to size. */
static int bind_one(nb_program *p, nb_dim d, int64_t size, const char *what) {
    if (d > 0) {
        if (d != size)
            return nbc_perr(p, NB_ERR_SIZE, "%s has %lld entries, expected %lld", what, (long long)size,
                            (long long)d);
        return NB_OK;
    }
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_ids[j] == d) {
            if (!nb_dim_is_product(p->dim_names[j])) {
                p->dim_vals[j] = size;
                return NB_OK;
            }
            int rc = derive_product_dims(p);
            if (rc) return rc;
            if (p->dim_vals[j] == 0)
                return nbc_perr(p, NB_ERR_UNBOUND, "%s is %s: bind its factors first (nb_program_bind_dim)", what,
                                p->dim_names[j]);
            if (p->dim_vals[j] != size)
                return nbc_perr(p, NB_ERR_SIZE, "%s has %lld entries, expected %s = %lld", what, (long long)size,
                                p->dim_names[j], (long long)p->dim_vals[j]);
            return NB_OK;
        }
    return nbc_perr(p, NB_ERR_ARG, "internal: unknown dimension");
}

static bool is_product_dim_id(const nb_program *p, nb_dim d) {
    for (size_t j = 0; j < p->ndims; j++)
        if (p->dim_ids[j] == d) return nb_dim_is_product(p->dim_names[j]);
    return false;
}

static int check_size(nb_program *p, const char *what, int64_t size) {
    if (size <= 0) return nbc_perr(p, NB_ERR_ARG, "size of %s must be positive, got %lld", what, (long long)size);
    if (size > NB_MAX_ENTRIES)
        return nbc_perr(p, NB_ERR_ARG, "size of %s is too large: %lld (at most 2^40)", what, (long long)size);
    return NB_OK;
}

int nb_program_bind_dim(nb_program *p, const char *name, int64_t size) {
    if (!p) return NB_ERR_ARG;
    if (!name) return nbc_perr(p, NB_ERR_ARG, "dimension name is NULL");
    int rc = check_size(p, name, size);
    if (rc) return rc;
    for (size_t j = 0; j < p->ndims; j++)
        if (strcmp(p->dim_names[j], name) == 0) {
            if (nb_dim_is_product(name))
                return nbc_perr(p, NB_ERR_ARG, "dimension %s is the product of its factors: bind them instead", name);
            if (p->dim_vals[j] == size && p->planned) return NB_OK;
            int64_t *saved = malloc((p->ndims + 1) * sizeof *saved);
            if (!saved) return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
            memcpy(saved, p->dim_vals, p->ndims * sizeof *saved);
            p->dim_vals[j] = size;
            rc = plan_or_restore(p, saved);
            free(saved);
            return rc;
        }
    return nbc_perr(p, NB_ERR_ARG, "the program has no dimension named '%s'", name);
}

int nb_program_bind_input(nb_program *p, size_t i, int64_t rows, int64_t cols) {
    if (!p) return NB_ERR_ARG;
    if (i >= p->nin)
        return nbc_perr(p, NB_ERR_ARG, "input %zu out of range (the program has %zu)", i, p->nin);
    int rc = check_size(p, "the rows", rows);
    if (!rc) rc = check_size(p, "the columns", cols);
    if (rc) return rc;
    if (nb_entries(rows, cols) < 0)
        return nbc_perr(p, NB_ERR_ARG, "input '%s' of %lld x %lld entries is too large (at most 2^40 entries)",
                        p->in_names[i], (long long)rows, (long long)cols);
    int64_t *saved = malloc((p->ndims + 1) * sizeof *saved);
    if (!saved) return nbc_perr(p, NB_ERR_NOMEM, "out of memory");
    memcpy(saved, p->dim_vals, p->ndims * sizeof *saved);
    /* plain symbols first: a product of them is then checked against them */
    char what[160];
    const nb_type t = p->in_types[i];
    bool rows_derived = t.rows < 0 && is_product_dim_id(p, t.rows);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        if (rows_derived == (pass == 1)) {
            snprintf(what, sizeof what, "input '%s' (rows)", p->in_names[i]);
            rc = bind_one(p, t.rows, rows, what);
        }
        if (!rc && (t.cols < 0 && is_product_dim_id(p, t.cols)) == (pass == 1)) {
            snprintf(what, sizeof what, "input '%s' (columns)", p->in_names[i]);
            rc = bind_one(p, t.cols, cols, what);
        }
    }
    if (rc) {
        memcpy(p->dim_vals, saved, p->ndims * sizeof *saved);
    } else if (memcmp(saved, p->dim_vals, p->ndims * sizeof *saved) != 0 || !p->planned) {
        rc = plan_or_restore(p, saved);
    }
    free(saved);
    return rc;
}

int nb_program_set_threads(nb_program *p, int nthreads) {
    if (!p) return NB_ERR_ARG;
    if (nthreads < 1 || nthreads > NB_MAX_THREADS)
        return nbc_perr(p, NB_ERR_ARG, "threads must be 1..%d, got %d", NB_MAX_THREADS, nthreads);
    if (nthreads == p->nthreads) return NB_OK;
    nbc_pool_free(p->pool);
    p->pool = NULL;
    p->nthreads = 1;
    if (nthreads > 1) {
        p->pool = nbc_pool_new(nthreads - 1);
        if (!p->pool) {
            if (p->planned) nbc_replan(p);
            return nbc_perr(p, NB_ERR_THREAD, "could not start %d threads", nthreads - 1);
        }
        p->nthreads = nthreads;
    }
    if (p->planned) return nbc_replan(p);
    return NB_OK;
}

void nb_program_check_finite(nb_program *p, int on) {
    if (p) p->check_finite = on != 0;
}

/* ---- freeing ---------------------------------------------------------------- */
static void free_instructions(nb_program *p) {
    if (p->ins)
        for (size_t i = 0; i < p->nci; i++) {
            if (p->ins[i].g) {
                free(p->ins[i].g->mops);
                free(p->ins[i].g->red_dst);
                free(p->ins[i].g->sops);
                free(p->ins[i].g->fixups);
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
    nbc_pool_free(p->pool);
    free_instructions(p);
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
    nbc_free_regions(p);
    free(p->inst_region);
    free(p->acc_base);
    free(p->partial_off);
    free(p->red_len);
    free(p->bases);
    free(p->scratch);
    free(p->acc);
    free(p);
}

/* ---- getters ------------------------------------------------------------------ */
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

int nbc_shape_of(const nb_program *p, nb_type t, int64_t *rows, int64_t *cols) {
    int64_t r = resolve(p, t.rows), c = resolve(p, t.cols);
    if (rows) *rows = r;
    if (cols) *cols = c;
    return r > 0 && c > 0 ? NB_OK : NB_ERR_UNBOUND;
}

int nb_program_input_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols) {
    if (!p || i >= p->nin) return NB_ERR_ARG;
    return nbc_shape_of(p, p->in_types[i], rows, cols);
}

int nb_program_output_shape(const nb_program *p, size_t i, int64_t *rows, int64_t *cols) {
    if (!p || i >= p->nout) return NB_ERR_ARG;
    return nbc_shape_of(p, p->out_types[i], rows, cols);
}

nb_structure nb_program_output_structure(const nb_program *p, size_t i) {
    return p && i < p->nout ? (nb_structure)p->out_st[i] : NB_STRUCT_DENSE;
}

/* Entries r·c, 0 when unbound or beyond NB_MAX_ENTRIES (binding refuses
 * such sizes). */
int64_t nb_program_input_size(const nb_program *p, size_t i) {
    int64_t r, c;
    if (!p || i >= p->nin || nbc_shape_of(p, p->in_types[i], &r, &c)) return 0;
    int64_t n = nb_entries(r, c);
    return n < 0 ? 0 : n;
}

int64_t nb_program_output_size(const nb_program *p, size_t i) {
    int64_t r, c;
    if (!p || i >= p->nout || nbc_shape_of(p, p->out_types[i], &r, &c)) return 0;
    switch (p->out_st[i]) {
    case NB_STRUCT_DIAGONAL:
        return r;
    case NB_STRUCT_SCALED_IDENTITY:
    case NB_STRUCT_UNIFORM:
        return 1;
    default: {
        int64_t n = nb_entries(r, c);
        return n < 0 ? 0 : n;
    }
    }
}
