/* Running a planned program: the interpreter of the instruction list (a
 * loop over p->ins calling the kernels, row-tiled regions tile by tile,
 * threads through the pool), and the public run entry points. */
#include "engine.h"

/* Thread tid's share (of nt) of a row-tiled region: its rows, tile by tile,
 * every instruction of the region on each tile (or its generated code in one
 * call, native.c). */
static void run_region_share(nb_program *p, const region *R, int tid, int nt) {
    const int64_t r0 = R->rows * tid / nt, r1 = R->rows * (tid + 1) / nt;
    if (nbc_native_ready(R)) {
        nbc_native_run(p, R, tid, r0, r1);
        return;
    }
    int first = 1;
    for (int64_t a = r0; a < r1; a += R->tile) {
        const int64_t b = a + R->tile < r1 ? a + R->tile : r1;
        for (size_t i = R->start; i < R->end; i++) {
            void *red = NULL;
            if (tid > 0 && p->partial_off[i] >= 0) red = nbc_partial(p, i, tid);
            p->k->exec_rows(&p->ins[i], (void *const *)p->bases, p->scratch[tid],
                            p->acc[tid] + p->acc_base[i], a, b, first, red);
        }
        first = 0;
    }
}

typedef struct {
    nb_program *p;
    const nb_instr *in; /* an instruction ... */
    const region *reg;  /* ... or a region */
} task;

static void run_task_share(void *arg, int tid, int nt) {
    const task *t = arg;
    if (t->reg)
        run_region_share(t->p, t->reg, tid, nt);
    else
        t->p->k->exec(t->in, (void *const *)t->p->bases, t->p->scratch[tid], t->p->acc[tid], tid, nt);
}

/* A region: its tiles (split over threads), then the threads' partial sums
 * and accumulators combined. */
static void run_region(nb_program *p, const region *R) {
    if (R->nt > 1)
        nbc_pool_run(p->pool, run_task_share, &(task){p, NULL, R}, R->nt);
    else
        run_region_share(p, R, 0, 1);
    for (size_t i = R->start; i < R->end; i++) {
        const nb_instr *in = &p->ins[i];
        if (p->partial_off[i] >= 0)
            for (int t = 1; t < R->nt; t++)
                p->k->accumulate(nbc_address(p, &in->y), nbc_partial(p, i, t), p->red_len[i]);
        if (nb_instr_accs(in)) {
            double *acc[NB_MAX_THREADS];
            for (int t = 0; t < R->nt; t++)
                acc[t] = p->acc[t] + p->acc_base[i];
            p->k->finish(in, (void *const *)p->bases, acc, R->nt);
        }
    }
}

static int not_ready(nb_program *p) {
    const char *missing;
    if (!nbc_all_bound(p, &missing))
        return nbc_perr(p, NB_ERR_UNBOUND, "dimension %s is not bound (nb_program_bind_dim)", missing);
    return nbc_replan(p);
}

int nb_program_run(nb_program *p, const void *const *inputs, void *const *outputs) {
    if (!p) return NB_ERR_ARG;
    if (!p->planned) {
        int rc = not_ready(p);
        if (rc) return rc;
    }
    if (p->nin && !inputs) return nbc_perr(p, NB_ERR_ARG, "inputs is NULL");
    if (!outputs) return nbc_perr(p, NB_ERR_ARG, "outputs is NULL");
    for (size_t i = 0; i < p->nin; i++) {
        if (!inputs[i]) return nbc_perr(p, NB_ERR_ARG, "input %zu ('%s') is NULL", i, p->in_names[i]);
        p->bases[1 + i] = (void *)inputs[i];
    }
    for (size_t i = 0; i < p->nout; i++) {
        if (!outputs[i]) return nbc_perr(p, NB_ERR_ARG, "output %zu is NULL", i);
        p->bases[1 + p->nin + i] = outputs[i];
    }
    if (p->check_finite)
        for (size_t i = 0; i < p->nin; i++) {
            int64_t r, c;
            nbc_shape_of(p, p->in_types[i], &r, &c);
            int64_t bad = p->k->find_nonfinite(inputs[i], r * c);
            if (bad >= 0) {
                double x;
                if (p->dtype == NB_F64)
                    x = ((const double *)inputs[i])[bad];
                else
                    x = ((const float *)inputs[i])[bad];
                return nbc_perr(p, NB_ERR_NONFINITE, "input '%s' holds %g at entry (%lld, %lld)", p->in_names[i],
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
            nbc_pool_run(p->pool, run_task_share, &(task){p, in, NULL}, in->nt);
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
    if ((p->nin && !input_sizes) || !output_sizes) return nbc_perr(p, NB_ERR_ARG, "buffer sizes are NULL");
    for (size_t i = 0; i < p->nin; i++)
        if ((int64_t)input_sizes[i] != nb_program_input_size(p, i))
            return nbc_perr(p, NB_ERR_SIZE, "input %zu ('%s') has %zu entries, expected %lld", i, p->in_names[i],
                        input_sizes[i], (long long)nb_program_input_size(p, i));
    for (size_t i = 0; i < p->nout; i++)
        if ((int64_t)output_sizes[i] != nb_program_output_size(p, i))
            return nbc_perr(p, NB_ERR_SIZE, "output %zu has %zu entries, expected %lld", i, output_sizes[i],
                        (long long)nb_program_output_size(p, i));
    return nb_program_run(p, inputs, outputs);
}

int nb_program_expand_output(nb_program *p, size_t i, const void *src, void *dst) {
    if (!p) return NB_ERR_ARG;
    if (i >= p->nout) return nbc_perr(p, NB_ERR_ARG, "output %zu out of range (the program has %zu)", i, p->nout);
    if (!src || !dst) return nbc_perr(p, NB_ERR_ARG, "buffer is NULL");
    int64_t r, c;
    if (nbc_shape_of(p, p->out_types[i], &r, &c))
        return nbc_perr(p, NB_ERR_UNBOUND, "output %zu has an unbound dimension", i);
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

