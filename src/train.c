/* The training loop.  One training step is one compiled nabla program:
 *
 *   inputs   X, Y, the step's scalars, the parameters p, the optimiser state
 *   outputs  the loss, the logits Z, the new parameters p', the new state
 *
 * with the gradients g = ∇ₚ loss from nb_gradient and the update written as
 * expressions of them:
 *   sgd       p' = p − η·g
 *   momentum  v' = μ·v + g,  p' = p − η·v'                  (PyTorch's form)
 *   adam      m' = β₁·m + (1 − β₁)·g,  s' = β₂·s + (1 − β₂)·g⊙g,
 *             p' = p − α·m' ⊘ (√s' + ε̂)  with α = η·√(1 − β₂ᵗ)/(1 − β₁ᵗ) and
 *             ε̂ = ε·√(1 − β₂ᵗ) inputs of step t (the bias correction).
 * Outputs must not overlap inputs, so parameters and state live in two buffer
 * sets and each step reads one and writes the other. */
#include "nabla_train.h"
#include "train_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFFERS (6 * NB_MAX_LAYERS) /* parameters and up to two state arrays each */
#define MAX_PROGRAMS 8
#define EVAL_BATCH 1000

typedef enum { PROG_STEP, PROG_EVAL, PROG_LOGITS } prog_kind;

struct nb_trainer {
    nb_train_config cfg;
    nb_ctx *ctx; /* the network's expressions, kept to compile a program per batch size */
    nb_expr *X, *Y, *logits, *loss, *scalars[2];
    nb_expr *step_out[2 + MAX_BUFFERS], *step_in[4 + MAX_BUFFERS];
    size_t step_nin, step_nout;
    struct {
        prog_kind kind;
        int64_t batch;
        nb_program *program;
    } programs[MAX_PROGRAMS];
    int nprograms, threads;
    int nparams, nbuffers; /* parameters; parameters + state arrays */
    int64_t entries[MAX_BUFFERS];
    size_t elem; /* bytes per entry of the dtype */
    void *set[2][MAX_BUFFERS], *backup[MAX_BUFFERS];
    int current; /* the set holding the current values */
    int64_t epochs, steps;
    void *xbuf, *ybuf, *zbuf; /* one batch (at most max(batch, EVAL_BATCH) rows) */
    int64_t buf_rows;
    double loss_value[1];
    float loss_value32[1];
};

const char *nb_optimizer_name(nb_optimizer o) {
    switch (o) {
    case NB_OPT_SGD:
        return "sgd";
    case NB_OPT_MOMENTUM:
        return "momentum";
    case NB_OPT_ADAM:
        return "adam";
    }
    return "?";
}

void nb_train_config_default(nb_train_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->shape.activation = NB_ACT_RELU;
    cfg->optimizer = NB_OPT_SGD;
    cfg->lr = 0.1;
    cfg->momentum = 0.9;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->batch = 128;
    cfg->seed = 1;
    cfg->dtype = NB_F32;
}

static int state_arrays(nb_optimizer o) {
    return o == NB_OPT_SGD ? 0 : o == NB_OPT_MOMENTUM ? 1 : 2;
}

/* ---- random numbers (splitmix64: every seed, every epoch its own stream) ---- */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) {
    return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* ---- building the training step ---- */
static nb_expr *scaled(nb_ctx *ctx, double c, nb_expr *e) {
    return nb_mul(ctx, nb_num(ctx, c), e);
}

/* Declares the state variable `prefix` + the parameter's name, shaped like p. */
static nb_expr *state_var(nb_ctx *ctx, const char *prefix, int i, nb_expr *p) {
    char name[32];
    snprintf(name, sizeof name, "%s%s%d", prefix, i % 2 == 0 ? "W" : "b", i / 2 + 1);
    return nb_var(ctx, name, nb_type_of(p));
}

static int build_step(nb_trainer *t, nb_expr **params) {
    nb_ctx *ctx = t->ctx;
    const nb_train_config *c = &t->cfg;
    int np = t->nparams, ns = state_arrays(c->optimizer);
    nb_expr *a = t->scalars[0] = nb_var(ctx, "step_size", nb_scalar_type());
    nb_expr *e = t->scalars[1] =
        c->optimizer == NB_OPT_ADAM ? nb_var(ctx, "step_eps", nb_scalar_type()) : NULL;
    size_t nin = 0, nout = 0;
    t->step_in[nin++] = t->X;
    t->step_in[nin++] = t->Y;
    t->step_in[nin++] = a;
    if (e) t->step_in[nin++] = e;
    t->step_out[nout++] = t->loss;
    t->step_out[nout++] = t->logits;
    nb_expr *new_state[2 * MAX_BUFFERS / 3];
    for (int i = 0; i < np; i++) {
        nb_expr *p = params[i], *g = nb_gradient(ctx, t->loss, p), *updated;
        t->step_in[nin + i] = p;
        if (c->optimizer == NB_OPT_SGD) {
            updated = nb_sub(ctx, p, nb_mul(ctx, a, g));
        } else if (c->optimizer == NB_OPT_MOMENTUM) {
            nb_expr *v = state_var(ctx, "v_", i, p);
            nb_expr *v_new = nb_add(ctx, scaled(ctx, c->momentum, v), g);
            t->step_in[nin + np + i] = v;
            new_state[i] = v_new;
            updated = nb_sub(ctx, p, nb_mul(ctx, a, v_new));
        } else {
            nb_expr *m = state_var(ctx, "m_", i, p), *s = state_var(ctx, "s_", i, p);
            nb_expr *m_new = nb_add(ctx, scaled(ctx, c->beta1, m), scaled(ctx, 1 - c->beta1, g));
            nb_expr *s_new =
                nb_add(ctx, scaled(ctx, c->beta2, s), scaled(ctx, 1 - c->beta2, nb_mul(ctx, g, g)));
            t->step_in[nin + np + i] = m;
            t->step_in[nin + 2 * np + i] = s;
            new_state[i] = m_new;
            new_state[np + i] = s_new;
            updated = nb_sub(ctx, p, nb_mul(ctx, a, nb_div(ctx, m_new, nb_add(ctx, nb_sqrt(ctx, s_new), e))));
        }
        t->step_out[nout + i] = updated;
    }
    for (int k = 0; k < ns * np; k++)
        t->step_out[nout + np + k] = new_state[k];
    t->step_nin = nin + (size_t)(np * (1 + ns));
    t->step_nout = nout + (size_t)(np * (1 + ns));
    for (size_t k = 0; k < t->step_nout; k++)
        if (!t->step_out[k]) return -1;
    for (size_t k = 0; k < t->step_nin; k++)
        if (!t->step_in[k]) return -1;
    return 0;
}

/* The program of this kind for batches of `batch` rows, compiled on first use. */
static nb_program *program_for(nb_trainer *t, prog_kind kind, int64_t batch, char *err, size_t errsize) {
    for (int k = 0; k < t->nprograms; k++)
        if (t->programs[k].kind == kind && t->programs[k].batch == batch) return t->programs[k].program;
    if (t->nprograms == MAX_PROGRAMS) { /* evict the oldest of this kind's cache */
        nb_program_free(t->programs[0].program);
        memmove(t->programs, t->programs + 1, sizeof t->programs[0] * (MAX_PROGRAMS - 1));
        t->nprograms--;
    }
    nb_expr *eval_out[2] = {t->loss, t->logits}, *eval_in[2 + MAX_BUFFERS];
    eval_in[0] = t->X;
    eval_in[1] = t->Y;
    for (int i = 0; i < t->nparams; i++)
        eval_in[2 + i] = t->step_in[t->step_nin - (size_t)t->nbuffers + (size_t)i];
    nb_program *p;
    if (kind == PROG_STEP)
        p = nb_compile(t->ctx, t->step_nout, t->step_out, t->step_nin, t->step_in, t->cfg.dtype,
                       NB_COMPILE_DENSE);
    else if (kind == PROG_EVAL)
        p = nb_compile(t->ctx, 2, eval_out, 2 + (size_t)t->nparams, eval_in, t->cfg.dtype, NB_COMPILE_DENSE);
    else {
        eval_in[1] = t->X;
        p = nb_compile(t->ctx, 1, &t->logits, 1 + (size_t)t->nparams, eval_in + 1, t->cfg.dtype,
                       NB_COMPILE_DENSE);
    }
    if (!p) {
        nb_train_fail(err, errsize, "compiling the network: %s", nb_error(t->ctx));
        return NULL;
    }
    if (nb_program_bind_dim(p, "B", batch) != NB_OK || nb_program_set_threads(p, t->threads) != NB_OK) {
        nb_train_fail(err, errsize, "planning the network for batch %lld: %s", (long long)batch,
                      nb_program_error(p));
        nb_program_free(p);
        return NULL;
    }
    t->programs[t->nprograms].kind = kind;
    t->programs[t->nprograms].batch = batch;
    t->programs[t->nprograms++].program = p;
    return p;
}

/* ---- creating and freeing ---- */
static void trainer_free_buffers(nb_trainer *t) {
    for (int k = 0; k < MAX_BUFFERS; k++) {
        free(t->set[0][k]);
        free(t->set[1][k]);
        free(t->backup[k]);
    }
    free(t->xbuf);
    free(t->ybuf);
    free(t->zbuf);
}

void nb_trainer_free(nb_trainer *t) {
    if (!t) return;
    for (int k = 0; k < t->nprograms; k++)
        nb_program_free(t->programs[k].program);
    trainer_free_buffers(t);
    nb_ctx_free(t->ctx);
    free(t);
}

static int config_ok(const nb_train_config *c, char *err, size_t errsize) {
    if (!c) return nb_train_fail(err, errsize, "nb_trainer_new: NULL configuration");
    nb_net_shape s = c->shape;
    if (s.nlayers < 1 || s.nlayers > NB_MAX_LAYERS)
        return nb_train_fail(err, errsize, "a network needs 1 to %d layers, not %d", NB_MAX_LAYERS,
                             s.nlayers);
    for (int i = 0; i <= s.nlayers; i++)
        if (s.sizes[i] <= 0 || s.sizes[i] > (1 << 24))
            return nb_train_fail(err, errsize, "layer size %d is %lld (expected 1..%d)", i,
                                 (long long)s.sizes[i], 1 << 24);
    if (s.sizes[s.nlayers] < 2) return nb_train_fail(err, errsize, "the last layer needs at least 2 classes");
    if ((unsigned)s.activation > NB_ACT_SIGMOID) return nb_train_fail(err, errsize, "unknown activation");
    if ((unsigned)c->optimizer > NB_OPT_ADAM) return nb_train_fail(err, errsize, "unknown optimizer");
    if (c->dtype != NB_F32 && c->dtype != NB_F64) return nb_train_fail(err, errsize, "unknown dtype");
    if (!(c->lr > 0) || !isfinite(c->lr)) return nb_train_fail(err, errsize, "the learning rate must be > 0");
    if (!(c->momentum >= 0 && c->momentum < 1) || !(c->beta1 >= 0 && c->beta1 < 1) ||
        !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0))
        return nb_train_fail(err, errsize, "momentum, beta1, beta2 must be in [0, 1) and eps > 0");
    if (c->batch < 1 || c->batch > (1 << 20))
        return nb_train_fail(err, errsize, "the batch size must be 1..%d", 1 << 20);
    return 0;
}

/* PyTorch's nn.Linear initialisation: W and b uniform in ±1/√fan_in. */
static void init_params(nb_trainer *t) {
    uint64_t rng = t->cfg.seed;
    for (int i = 0; i < t->nparams; i++) {
        double bound = 1 / sqrt((double)t->cfg.shape.sizes[i / 2]);
        for (int64_t k = 0; k < t->entries[i]; k++) {
            double v = (2 * uniform01(&rng) - 1) * bound;
            if (t->cfg.dtype == NB_F32)
                ((float *)t->set[0][i])[k] = (float)v;
            else
                ((double *)t->set[0][i])[k] = v;
        }
    }
}

/* Everything but the parameter values: expressions, buffers (zeroed). */
static nb_trainer *trainer_create(const nb_train_config *cfg, char *err, size_t errsize) {
    if (config_ok(cfg, err, errsize)) return NULL;
    nb_trainer *t = calloc(1, sizeof *t);
    if (!t || !(t->ctx = nb_ctx_new())) {
        free(t);
        nb_train_fail(err, errsize, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    t->threads = 1;
    t->nparams = 2 * cfg->shape.nlayers;
    t->nbuffers = t->nparams * (1 + state_arrays(cfg->optimizer));
    t->elem = cfg->dtype == NB_F32 ? sizeof(float) : sizeof(double);
    nb_expr *params[2 * NB_MAX_LAYERS];
    if (!(t->loss = nb_net_build(t->ctx, &cfg->shape, &t->X, &t->Y, &t->logits, params)) ||
        build_step(t, params)) {
        nb_train_fail(err, errsize, "building the network: %s", nb_error(t->ctx));
        nb_trainer_free(t);
        return NULL;
    }
    bool ok = true;
    for (int k = 0; k < t->nbuffers; k++) {
        int i = k % t->nparams; /* the parameter this buffer (or state array) goes with */
        t->entries[k] = cfg->shape.sizes[i / 2 + 1] * (i % 2 == 0 ? cfg->shape.sizes[i / 2] : 1);
        ok &= (t->set[0][k] = calloc((size_t)t->entries[k], t->elem)) != NULL;
        ok &= (t->set[1][k] = calloc((size_t)t->entries[k], t->elem)) != NULL;
        ok &= (t->backup[k] = calloc((size_t)t->entries[k], t->elem)) != NULL;
    }
    t->buf_rows = cfg->batch > EVAL_BATCH ? cfg->batch : EVAL_BATCH;
    int64_t classes = cfg->shape.sizes[cfg->shape.nlayers];
    ok &= (t->xbuf = malloc((size_t)(t->buf_rows * cfg->shape.sizes[0]) * t->elem)) != NULL;
    ok &= (t->ybuf = malloc((size_t)(t->buf_rows * classes) * t->elem)) != NULL;
    ok &= (t->zbuf = malloc((size_t)(t->buf_rows * classes) * t->elem)) != NULL;
    if (!ok) {
        nb_train_fail(err, errsize, "out of memory allocating the network's buffers");
        nb_trainer_free(t);
        return NULL;
    }
    return t;
}

nb_trainer *nb_trainer_new(const nb_train_config *cfg, char *err, size_t errsize) {
    nb_trainer *t = trainer_create(cfg, err, errsize);
    if (!t) return NULL;
    init_params(t);
    /* compile the full-batch step now, so that errors show before training */
    if (!program_for(t, PROG_STEP, cfg->batch, err, errsize)) {
        nb_trainer_free(t);
        return NULL;
    }
    return t;
}

const nb_train_config *nb_trainer_config(const nb_trainer *t) {
    return t ? &t->cfg : NULL;
}
int64_t nb_trainer_epoch_count(const nb_trainer *t) {
    return t ? t->epochs : -1;
}
int64_t nb_trainer_step_count(const nb_trainer *t) {
    return t ? t->steps : -1;
}

int nb_trainer_set_threads(nb_trainer *t, int threads) {
    if (!t || threads < 1 || threads > 64) return -1;
    t->threads = threads;
    for (int k = 0; k < t->nprograms; k++)
        if (nb_program_set_threads(t->programs[k].program, threads) != NB_OK) return -1;
    return 0;
}

const void *nb_trainer_param(const nb_trainer *t, int i, int64_t *rows, int64_t *cols) {
    if (!t || i < 0 || i >= t->nparams) return NULL;
    if (rows) *rows = i % 2 == 0 ? t->cfg.shape.sizes[i / 2] : t->cfg.shape.sizes[i / 2 + 1];
    if (cols) *cols = i % 2 == 0 ? t->cfg.shape.sizes[i / 2 + 1] : 1;
    return t->set[t->current][i];
}

/* ---- batches ---- */
/* Rows order[0..rows) of x into the batch buffer (dtype), and the one-hot labels. */
static void gather(nb_trainer *t, const nb_dataset *d, const int64_t *order, int64_t rows, bool labels) {
    int64_t f = d->features, k = t->cfg.shape.sizes[t->cfg.shape.nlayers];
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = order ? order[r] : r;
        const float *src = d->x + i * f;
        if (t->cfg.dtype == NB_F32)
            memcpy((float *)t->xbuf + r * f, src, (size_t)f * sizeof(float));
        else
            for (int64_t j = 0; j < f; j++)
                ((double *)t->xbuf)[r * f + j] = src[j];
        if (!labels) continue;
        for (int64_t j = 0; j < k; j++) {
            double v = j == d->label[i];
            if (t->cfg.dtype == NB_F32)
                ((float *)t->ybuf)[r * k + j] = (float)v;
            else
                ((double *)t->ybuf)[r * k + j] = v;
        }
    }
}

static double entry(const nb_trainer *t, const void *buf, int64_t k) {
    return t->cfg.dtype == NB_F32 ? ((const float *)buf)[k] : ((const double *)buf)[k];
}

/* The class with the largest logit in row r of the logits buffer. */
static int32_t argmax_row(const nb_trainer *t, int64_t r) {
    int64_t k = t->cfg.shape.sizes[t->cfg.shape.nlayers];
    int32_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (entry(t, t->zbuf, r * k + j) > entry(t, t->zbuf, r * k + best)) best = (int32_t)j;
    return best;
}

static int check_data(const nb_trainer *t, const nb_dataset *d, char *err, size_t errsize) {
    if (!d || !d->x || (!d->label && d->count > 0) || d->count < 1)
        return nb_train_fail(err, errsize, "no examples");
    int64_t classes = t->cfg.shape.sizes[t->cfg.shape.nlayers];
    if (d->features != t->cfg.shape.sizes[0])
        return nb_train_fail(err, errsize,
                             "the network takes %lld inputs but the data has %lld features per example",
                             (long long)t->cfg.shape.sizes[0], (long long)d->features);
    if (d->classes != classes)
        return nb_train_fail(err, errsize, "the network has %lld outputs but the data has %d classes",
                             (long long)classes, d->classes);
    return 0;
}

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- one epoch ---- */
int nb_trainer_epoch(nb_trainer *t, const nb_dataset *d, nb_progress_fn progress, void *user,
                     nb_epoch_stats *stats, char *err, size_t errsize) {
    if (!t || !stats) return nb_train_fail(err, errsize, "nb_trainer_epoch: NULL argument");
    if (check_data(t, d, err, errsize)) return -1;
    int64_t n = d->count, batch = t->cfg.batch, steps = (n + batch - 1) / batch;
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!order) return nb_train_fail(err, errsize, "out of memory");
    /* Fisher–Yates shuffle from a stream of (seed, epoch) alone, so that a
     * resumed run shuffles exactly as an uninterrupted one */
    uint64_t rng = t->cfg.seed ^ (0x5851f42d4c957f2dULL * (uint64_t)(t->epochs + 1));
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&rng) % (uint64_t)(i + 1));
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    int nb = t->nbuffers, start_current = t->current;
    int64_t start_steps = t->steps;
    for (int k = 0; k < nb; k++)
        memcpy(t->backup[k], t->set[t->current][k], (size_t)t->entries[k] * t->elem);
    double loss_sum = 0, t0 = clock_seconds(CLOCK_MONOTONIC), cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    int64_t correct = 0;
    int status = 0;
    for (int64_t s = 0; s < steps && status == 0; s++) {
        int64_t rows = s == steps - 1 ? n - s * batch : batch;
        nb_program *p = program_for(t, PROG_STEP, rows, err, errsize);
        if (!p) {
            status = -1;
            break;
        }
        gather(t, d, order + s * batch, rows, true);
        double scalar[2];
        if (t->cfg.optimizer == NB_OPT_ADAM) {
            double step = (double)(t->steps + 1);
            double c1 = 1 - pow(t->cfg.beta1, step), c2 = sqrt(1 - pow(t->cfg.beta2, step));
            scalar[0] = t->cfg.lr * c2 / c1;
            scalar[1] = t->cfg.eps * c2;
        } else {
            scalar[0] = t->cfg.lr;
        }
        float scalar32[2] = {(float)scalar[0], (float)scalar[1]};
        const void *in[4 + MAX_BUFFERS];
        void *out[2 + MAX_BUFFERS];
        size_t nin = 0, nout = 0;
        in[nin++] = t->xbuf;
        in[nin++] = t->ybuf;
        for (int k = 0; k < (t->cfg.optimizer == NB_OPT_ADAM ? 2 : 1); k++)
            in[nin++] = t->cfg.dtype == NB_F32 ? (const void *)&scalar32[k] : (const void *)&scalar[k];
        out[nout++] = t->cfg.dtype == NB_F32 ? (void *)t->loss_value32 : (void *)t->loss_value;
        out[nout++] = t->zbuf;
        for (int k = 0; k < nb; k++) {
            in[nin++] = t->set[t->current][k];
            out[nout++] = t->set[1 - t->current][k];
        }
        if (nb_program_run(p, in, out) != NB_OK) {
            status = nb_train_fail(err, errsize, "training step: %s", nb_program_error(p));
            break;
        }
        double loss = t->cfg.dtype == NB_F32 ? t->loss_value32[0] : t->loss_value[0];
        if (!isfinite(loss)) {
            status =
                nb_train_fail(err, errsize, "the loss became %s at step %lld of epoch %lld; stopped",
                              isnan(loss) ? "NaN" : "infinite", (long long)s + 1, (long long)t->epochs + 1);
            break;
        }
        for (int64_t r = 0; r < rows; r++)
            correct += argmax_row(t, r) == d->label[order[s * batch + r]];
        t->current = 1 - t->current;
        t->steps++;
        loss_sum += loss;
        if (progress) progress(user, s + 1, steps, loss_sum / (double)(s + 1));
    }
    free(order);
    if (status) { /* back to the parameters of the epoch's start */
        t->current = start_current;
        t->steps = start_steps;
        for (int k = 0; k < nb; k++)
            memcpy(t->set[t->current][k], t->backup[k], (size_t)t->entries[k] * t->elem);
        return -1;
    }
    t->epochs++;
    stats->seconds = clock_seconds(CLOCK_MONOTONIC) - t0;
    stats->cpu_seconds = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    stats->loss = loss_sum / (double)steps;
    stats->train_accuracy = (double)correct / (double)n;
    return 0;
}

/* ---- evaluation and prediction ---- */
static void param_inputs(const nb_trainer *t, const void **in) {
    for (int i = 0; i < t->nparams; i++)
        in[i] = t->set[t->current][i];
}

int nb_trainer_evaluate(nb_trainer *t, const nb_dataset *d, double *loss, double *accuracy,
                        int64_t *confusion, char *err, size_t errsize) {
    if (!t || !loss || !accuracy) return nb_train_fail(err, errsize, "nb_trainer_evaluate: NULL argument");
    if (check_data(t, d, err, errsize)) return -1;
    int64_t k = t->cfg.shape.sizes[t->cfg.shape.nlayers], correct = 0;
    if (confusion) memset(confusion, 0, (size_t)(k * k) * sizeof *confusion);
    double total = 0;
    for (int64_t start = 0; start < d->count; start += EVAL_BATCH) {
        int64_t rows = d->count - start < EVAL_BATCH ? d->count - start : EVAL_BATCH;
        nb_program *p = program_for(t, PROG_EVAL, rows, err, errsize);
        if (!p) return -1;
        int64_t f = d->features;
        nb_dataset part = *d;
        part.x = d->x + start * f;
        part.label = d->label + start;
        gather(t, &part, NULL, rows, true);
        const void *in[2 + MAX_BUFFERS] = {t->xbuf, t->ybuf};
        param_inputs(t, in + 2);
        void *out[2] = {t->cfg.dtype == NB_F32 ? (void *)t->loss_value32 : (void *)t->loss_value, t->zbuf};
        if (nb_program_run(p, in, out) != NB_OK)
            return nb_train_fail(err, errsize, "evaluating: %s", nb_program_error(p));
        total += (t->cfg.dtype == NB_F32 ? t->loss_value32[0] : t->loss_value[0]) * (double)rows;
        for (int64_t r = 0; r < rows; r++) {
            int32_t guess = argmax_row(t, r), truth = d->label[start + r];
            correct += guess == truth;
            if (confusion) confusion[truth * k + guess]++;
        }
    }
    *loss = total / (double)d->count;
    *accuracy = (double)correct / (double)d->count;
    return 0;
}

int nb_trainer_predict(nb_trainer *t, const float *x, int64_t count, int64_t features, int32_t *classes,
                       char *err, size_t errsize) {
    if (!t || !x || !classes || count < 1)
        return nb_train_fail(err, errsize, "nb_trainer_predict: bad argument");
    if (features != t->cfg.shape.sizes[0])
        return nb_train_fail(err, errsize, "the network takes %lld inputs but the input has %lld per example",
                             (long long)t->cfg.shape.sizes[0], (long long)features);
    nb_dataset all = {count, features, (int)t->cfg.shape.sizes[t->cfg.shape.nlayers], (float *)x, NULL};
    for (int64_t start = 0; start < count; start += EVAL_BATCH) {
        int64_t rows = count - start < EVAL_BATCH ? count - start : EVAL_BATCH;
        nb_program *p = program_for(t, PROG_LOGITS, rows, err, errsize);
        if (!p) return -1;
        nb_dataset part = all;
        part.x = all.x + start * features;
        gather(t, &part, NULL, rows, false);
        const void *in[1 + MAX_BUFFERS] = {t->xbuf};
        param_inputs(t, in + 1);
        void *out[1] = {t->zbuf};
        if (nb_program_run(p, in, out) != NB_OK)
            return nb_train_fail(err, errsize, "predicting: %s", nb_program_error(p));
        for (int64_t r = 0; r < rows; r++)
            classes[start + r] = argmax_row(t, r);
    }
    return 0;
}

/* ---- files written whole or not at all ---- */
int nb_write_file_atomic(const char *path, const void *data, size_t size, char *err, size_t errsize) {
    if (!path || (!data && size)) return nb_train_fail(err, errsize, "nb_write_file_atomic: NULL argument");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5), *dir_copy = strdup(path);
    int status = -1, fd = -1;
    if (!tmp || !dir_copy) {
        nb_train_fail(err, errsize, "out of memory writing '%s'", path);
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        nb_train_fail(err, errsize, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, (const uint8_t *)data + off, size - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            nb_train_fail(err, errsize, "cannot write '%s': %s", tmp, n < 0 ? strerror(errno) : "disk full");
            goto done;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0) {
        nb_train_fail(err, errsize, "cannot write '%s': fsync: %s", tmp, strerror(errno));
        goto done;
    }
    int closed = close(fd);
    fd = -1;
    if (closed != 0) {
        nb_train_fail(err, errsize, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        nb_train_fail(err, errsize, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto done;
    }
    int dfd = open(dirname(dir_copy), O_RDONLY);
    if (dfd >= 0) { /* make the rename itself durable */
        fsync(dfd);
        close(dfd);
    }
    status = 0;
done:
    if (fd >= 0) close(fd);
    if (status && tmp) unlink(tmp);
    free(tmp);
    free(dir_copy);
    return status;
}

/* ---- checkpoints (docs/nbm.md) ---- */
#define NBM_MAGIC "NABLANBM"
#define NBM_VERSION 1u

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib's crc32. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Little-endian writer/reader over a byte buffer. */
typedef struct {
    uint8_t *p;
    size_t pos, size;
} cursor;
static void put_le(cursor *c, uint64_t v, int bytes) {
    for (int k = 0; k < bytes; k++)
        c->p[c->pos++] = (uint8_t)(v >> (8 * k));
}
static uint64_t get_le(cursor *c, int bytes) {
    uint64_t v = 0;
    for (int k = 0; k < bytes; k++)
        v |= (uint64_t)c->p[c->pos++] << (8 * k);
    return v;
}
static void put_f64(cursor *c, double x) {
    uint64_t v;
    memcpy(&v, &x, 8);
    put_le(c, v, 8);
}
static double get_f64(cursor *c) {
    uint64_t v = get_le(c, 8);
    double x;
    memcpy(&x, &v, 8);
    return x;
}

static size_t header_size(int nlayers) {
    return 8 + 5 * 4 + 8 * (size_t)(nlayers + 1) + 5 * 8 + 4 * 8;
}

static size_t checkpoint_size(const nb_trainer *t) {
    size_t n = header_size(t->cfg.shape.nlayers);
    for (int k = 0; k < t->nbuffers; k++)
        n += (size_t)t->entries[k] * t->elem;
    return n + 4;
}

int nb_trainer_save(const nb_trainer *t, const char *path, char *err, size_t errsize) {
    if (!t || !path) return nb_train_fail(err, errsize, "nb_trainer_save: NULL argument");
    const nb_train_config *c = &t->cfg;
    cursor w = {NULL, 0, checkpoint_size(t)};
    if (!(w.p = malloc(w.size))) return nb_train_fail(err, errsize, "out of memory saving '%s'", path);
    memcpy(w.p, NBM_MAGIC, 8);
    w.pos = 8;
    put_le(&w, NBM_VERSION, 4);
    put_le(&w, c->dtype == NB_F32 ? 1 : 0, 4);
    put_le(&w, (uint64_t)c->shape.activation, 4);
    put_le(&w, (uint64_t)c->optimizer, 4);
    put_le(&w, (uint64_t)c->shape.nlayers, 4);
    for (int i = 0; i <= c->shape.nlayers; i++)
        put_le(&w, (uint64_t)c->shape.sizes[i], 8);
    put_f64(&w, c->lr);
    put_f64(&w, c->momentum);
    put_f64(&w, c->beta1);
    put_f64(&w, c->beta2);
    put_f64(&w, c->eps);
    put_le(&w, (uint64_t)c->batch, 8);
    put_le(&w, c->seed, 8);
    put_le(&w, (uint64_t)t->epochs, 8);
    put_le(&w, (uint64_t)t->steps, 8);
    for (int k = 0; k < t->nbuffers; k++)
        for (int64_t e = 0; e < t->entries[k]; e++) {
            if (c->dtype == NB_F32) {
                uint32_t v;
                memcpy(&v, (const float *)t->set[t->current][k] + e, 4);
                put_le(&w, v, 4);
            } else {
                put_f64(&w, ((const double *)t->set[t->current][k])[e]);
            }
        }
    put_le(&w, crc32_of(w.p, w.pos), 4);

    int status = nb_write_file_atomic(path, w.p, w.pos, err, errsize);
    free(w.p);
    return status;
}

nb_trainer *nb_trainer_load(const char *path, char *err, size_t errsize) {
    if (!path) {
        nb_train_fail(err, errsize, "nb_trainer_load: NULL path");
        return NULL;
    }
    uint8_t *bytes;
    size_t size;
    if (nb_read_file(path, &bytes, &size, err, errsize)) return NULL;
    cursor r = {bytes, 0, size};
    nb_trainer *t = NULL;
    nb_train_config c;
    nb_train_config_default(&c);
    const char *problem = NULL;
    if (size < 8 || memcmp(bytes, NBM_MAGIC, 8) != 0) {
        problem = "not a nabla checkpoint (no NABLANBM magic)";
        goto done;
    }
    if (size < header_size(0) + 4) {
        problem = "truncated (shorter than a header)";
        goto done;
    }
    r.pos = 8;
    uint32_t version = (uint32_t)get_le(&r, 4), dtype = (uint32_t)get_le(&r, 4),
             act = (uint32_t)get_le(&r, 4), opt = (uint32_t)get_le(&r, 4), nlayers = (uint32_t)get_le(&r, 4);
    if (version != NBM_VERSION) {
        problem = "unsupported version (this nabla reads version 1)";
        goto done;
    }
    if (dtype > 1 || act > NB_ACT_SIGMOID || opt > NB_OPT_ADAM || nlayers < 1 || nlayers > NB_MAX_LAYERS) {
        problem = "corrupted header (dtype, activation, optimizer or layer count out of range)";
        goto done;
    }
    if (size < header_size((int)nlayers) + 4) {
        problem = "truncated header";
        goto done;
    }
    cursor tail = {bytes, size - 4, size};
    uint32_t stored_crc = (uint32_t)get_le(&tail, 4);
    c.dtype = dtype ? NB_F32 : NB_F64;
    c.shape.activation = (nb_activation)act;
    c.optimizer = (nb_optimizer)opt;
    c.shape.nlayers = (int)nlayers;
    for (uint32_t i = 0; i <= nlayers; i++) {
        uint64_t s = get_le(&r, 8);
        c.shape.sizes[i] = s > (1u << 24) ? -1 : (int64_t)s;
    }
    c.lr = get_f64(&r);
    c.momentum = get_f64(&r);
    c.beta1 = get_f64(&r);
    c.beta2 = get_f64(&r);
    c.eps = get_f64(&r);
    c.batch = (int64_t)get_le(&r, 8);
    c.seed = get_le(&r, 8);
    int64_t epochs = (int64_t)get_le(&r, 8), steps = (int64_t)get_le(&r, 8);
    /* the sizes must agree with the length before anything is allocated */
    size_t want = header_size((int)nlayers) + 4;
    for (uint32_t i = 0; i < nlayers && want <= size; i++) {
        int64_t a = c.shape.sizes[i], b = c.shape.sizes[i + 1];
        if (a <= 0 || b <= 0) break;
        want += (size_t)((a + 1) * b) * (dtype ? 4u : 8u) * (size_t)(1 + state_arrays(c.optimizer));
    }
    if (want != size) {
        problem = want > size ? "truncated (shorter than its layer sizes say)"
                              : "corrupted (layer sizes do not match its length)";
        goto done;
    }
    if (crc32_of(bytes, size - 4) != stored_crc) {
        problem = "corrupted (CRC-32 mismatch)";
        goto done;
    }
    char cfg_err[256];
    if (epochs < 0 || steps < 0 || !(t = trainer_create(&c, cfg_err, sizeof cfg_err))) {
        nb_train_fail(err, errsize, "'%s': corrupted checkpoint: %s", path,
                      epochs < 0 || steps < 0 ? "negative counters" : cfg_err);
        goto done;
    }
    t->epochs = epochs;
    t->steps = steps;
    for (int k = 0; k < t->nbuffers; k++)
        for (int64_t e = 0; e < t->entries[k]; e++) {
            if (c.dtype == NB_F32) {
                uint32_t v = (uint32_t)get_le(&r, 4);
                memcpy((float *)t->set[0][k] + e, &v, 4);
            } else {
                ((double *)t->set[0][k])[e] = get_f64(&r);
            }
        }
    if (!program_for(t, PROG_STEP, c.batch, cfg_err, sizeof cfg_err)) {
        nb_train_fail(err, errsize, "'%s': %s", path, cfg_err);
        nb_trainer_free(t);
        t = NULL;
    }
done:
    if (problem) nb_train_fail(err, errsize, "'%s' is %s", path, problem);
    free(bytes);
    return t;
}
