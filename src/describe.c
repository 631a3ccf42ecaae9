/* Diagnostics of a compiled program: statistics (nb_program_get_stats) and
 * the instruction listing (nb_program_describe). */
#include "engine.h"

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
        const int32_t r = p->inst_region ? p->inst_region[i] : -1;
        const region *R = r >= 0 && p->regions[r].start == i ? &p->regions[r] : NULL; /* starting here */
        if (R && nbc_native_why(R))
            nb_sb_printf(&sb, "    region: instructions %zu..%zu: no native code (%s)\n", i, R->end - 1,
                         nbc_native_why(R));
        if (R && R->active && nbc_native_ready(R))
            nb_sb_printf(
                &sb,
                "    region: instructions %zu..%zu as one native row loop over %lld rows, %d thread(s)\n", i,
                R->end - 1, (long long)R->rows, R->nt);
        else if (R && R->active)
            nb_sb_printf(&sb,
                         "    region: instructions %zu..%zu by tiles of %lld rows of %lld, %d thread(s)\n", i,
                         R->end - 1, (long long)R->tile, (long long)R->rows, R->nt);
        nb_sb_printf(&sb, "%s%3zu %s", i < p->ninit ? "init" : "    ", i, nb_instr_names[in->kind]);
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
                    if (m->op == NB_M_SINCOS) {
                        nb_sb_puts(&sb, ", ");
                        describe_arg(&sb, p, &m->dst2);
                    }
                    nb_sb_printf(&sb, " = %s ", nb_mop_names[m->op]);
                    for (int s = 0; s < nb_mop_arity[m->op]; s++) {
                        if (s) nb_sb_puts(&sb, ", ");
                        describe_arg(&sb, p, &m->src[s]);
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
