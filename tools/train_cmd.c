/* nabla train / evaluate / predict: networks on Fashion-MNIST or CSV data.
 * The network is an expression in nabla's language, its gradients come from
 * nabla's reverse mode, and every training step is one compiled program
 * (include/nabla_train.h).  Results go to stdout, errors to stderr (exit 2). */
#include "cli.h"
#include "nabla_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRAIN_USAGE                                                                                          \
    "nabla train --data fashion-mnist|FILE.csv [--test FILE.csv] [--data-dir DIR] [--layers 784-256-10] "    \
    "[--activation relu|tanh|sigmoid] [--optimizer sgd|momentum|adam] [--lr R] [--momentum M] [--batch B] "  \
    "[--epochs E] [--seed S] [--threads K] [--dtype f32|f64] [--save FILE.nbm] [--resume FILE.nbm] "         \
    "[--plot FILE.svg] [--log FILE.csv] [--print-model] [--quiet]"
#define EVALUATE_USAGE                                                                                       \
    "nabla evaluate --load FILE.nbm --data fashion-mnist|FILE.csv [--data-dir DIR] [--threads K]"
#define PREDICT_USAGE "nabla predict --load FILE.nbm --input FILE [--threads K]"

static const char train_help[] =
    "usage: " TRAIN_USAGE "\n"
    "\n"
    "Trains a network of dense layers, X*W1 + b1', an activation, ..., and the\n"
    "softmax cross-entropy of the last layer's output.  Gradients come from nabla's\n"
    "symbolic reverse mode; each step (loss, gradients and the optimiser's update)\n"
    "is one compiled program.  Prints one line per epoch: loss, train and test\n"
    "accuracy, seconds (on a terminal, also a progress bar).\n"
    "\n"
    "  --data D        fashion-mnist (the four gzipped IDX files of Debian's\n"
    "                  dataset-fashion-mnist) or a CSV file: features, then the class\n"
    "  --data-dir DIR  where the Fashion-MNIST files are (default " NB_FASHION_MNIST_DIR ")\n"
    "  --test FILE     test examples (CSV) when --data is a CSV file\n"
    "  --layers L      sizes, inputs first: 784-256-10 (the default)\n"
    "  --activation A  relu (default), tanh or sigmoid\n"
    "  --optimizer O   sgd (default), momentum or adam\n"
    "  --lr R          learning rate (default 0.1; 0.001 is usual for adam)\n"
    "  --momentum M    momentum (default 0.9)\n"
    "  --batch B       examples per step (default 128)\n"
    "  --epochs E      train until E epochs are done (default 5)\n"
    "  --seed S        initial weights and shuffling (default 1)\n"
    "  --threads K     threads per step (default 1)\n"
    "  --dtype T       f32 (default) or f64\n"
    "  --save FILE     checkpoint (.nbm) written atomically after every epoch\n"
    "                  (with --epochs 0, the initialised network)\n"
    "  --resume FILE   continue a checkpoint (its network, optimiser, settings)\n"
    "  --plot FILE     loss and accuracy curves as SVG, --log FILE the same as CSV\n"
    "                  (both rewritten after every epoch, with this run's epochs)\n"
    "  --print-model   print the network and its gradients, then stop\n"
    "  --quiet         print only the last epoch's line\n"
    "\n"
    "example: nabla train --data fashion-mnist --layers 784-256-10 --epochs 5 --save model.nbm\n";

static const char evaluate_help[] =
    "usage: " EVALUATE_USAGE "\n"
    "\n"
    "Loss, accuracy and confusion matrix (rows: true class, columns: predicted)\n"
    "of a checkpoint on test data (Fashion-MNIST's test set, or a CSV file).\n";

static const char predict_help[] =
    "usage: " PREDICT_USAGE "\n"
    "\n"
    "Prints the predicted class of each example of FILE, one per line: a CSV file\n"
    "of feature rows, or an IDX images file (pixels scaled to [0, 1]).\n";

#define OPTION(name) nb_cli_option_value(opts, sizeof opts / sizeof opts[0], name)
#define PARSE_OPTIONS(usage)                                                                                 \
    nb_cli_parse_options(argc, argv, opts, sizeof opts / sizeof opts[0], NULL, 0, &npos, usage)

/* ---- data ---- */
typedef struct {
    nb_dataset train, test;
    bool have_test;
} data_sets;

static void data_free(data_sets *d) {
    nb_dataset_free(&d->train);
    nb_dataset_free(&d->test);
}

static int load_csv_dataset(const char *path, int classes, nb_dataset *out) {
    nb_table table;
    char err[512];
    if (nb_csv_read(path, &table, err, sizeof err)) return nb_cli_error(NULL, -1, "%s", err);
    int status = nb_dataset_from_table(&table, classes, out, err, sizeof err);
    nb_table_free(&table);
    return status ? nb_cli_error(NULL, -1, "'%s': %s", path, err) : 0;
}

/* --data fashion-mnist (train and test) or a CSV file (and --test). */
static int load_data(const char *data, const char *dir, const char *test, int classes, data_sets *d) {
    memset(d, 0, sizeof *d);
    char err[1024];
    if (strcmp(data, "fashion-mnist") == 0) {
        if (test)
            return nb_cli_error(NULL, -1, "--test is for CSV data; Fashion-MNIST brings its own test set");
        if (nb_dataset_load_fashion_mnist(dir ? dir : NB_FASHION_MNIST_DIR, &d->train, &d->test, err,
                                          sizeof err))
            return nb_cli_error(NULL, -1, "%s", err);
        if (classes != 10) {
            data_free(d);
            return nb_cli_error(NULL, -1, "Fashion-MNIST has 10 classes but the network's last layer has %d",
                                classes);
        }
        d->have_test = true;
        return 0;
    }
    if (load_csv_dataset(data, classes, &d->train)) return 2;
    if (test) {
        if (load_csv_dataset(test, classes, &d->test)) {
            data_free(d);
            return 2;
        }
        d->have_test = true;
    }
    return 0;
}

static int check_inputs(const nb_train_config *c, const nb_dataset *d, const char *what) {
    if (d->features != c->shape.sizes[0])
        return nb_cli_error(NULL, -1,
                            "the network's first layer takes %lld inputs but the %s data has %lld features",
                            (long long)c->shape.sizes[0], what, (long long)d->features);
    return 0;
}

/* ---- reports: plot and log ---- */
typedef struct {
    int64_t n, cap;
    double *loss, *train_acc, *test_acc, *seconds,
        *cpu_seconds; /* per epoch; test_acc NaN without test data */
} history;

static int history_add(history *h, const nb_epoch_stats *s, double test_acc) {
    double **arrays[5] = {&h->loss, &h->train_acc, &h->test_acc, &h->seconds, &h->cpu_seconds};
    if (h->n == h->cap) {
        int64_t cap = h->cap ? 2 * h->cap : 16;
        for (int k = 0; k < 5; k++) {
            double *bigger = realloc(*arrays[k], (size_t)cap * sizeof(double));
            if (!bigger) return -1;
            *arrays[k] = bigger;
        }
        h->cap = cap;
    }
    double values[5] = {s->loss, s->train_accuracy, test_acc, s->seconds, s->cpu_seconds};
    for (int k = 0; k < 5; k++)
        (*arrays[k])[h->n] = values[k];
    h->n++;
    return 0;
}

static void history_free(history *h) {
    free(h->loss);
    free(h->train_acc);
    free(h->test_acc);
    free(h->seconds);
    free(h->cpu_seconds);
}

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t len;
    bool failed;
} text;

static void emit(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *bigger = n < 0 || t->failed ? NULL : realloc(t->s, t->len + (size_t)n + 1);
    if (!bigger) {
        t->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(bigger + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->s = bigger;
    t->len += (size_t)n;
}

static int write_text(const char *path, text *t) {
    char err[512];
    int status = t->failed ? nb_cli_error(NULL, -1, "out of memory writing '%s'", path)
                 : nb_write_file_atomic(path, t->s, t->len, err, sizeof err)
                     ? nb_cli_error(NULL, -1, "%s", err)
                     : 0;
    free(t->s);
    return status;
}

static int write_log(const char *path, const history *h, int64_t first_epoch) {
    text t = {NULL, 0, false};
    emit(&t, "epoch,loss,train_accuracy,test_accuracy,seconds,cpu_seconds\n");
    for (int64_t e = 0; e < h->n; e++)
        emit(&t, "%lld,%.9g,%.6f,%.6f,%.4f,%.4f\n", (long long)(first_epoch + e), h->loss[e], h->train_acc[e],
             h->test_acc[e], h->seconds[e], h->cpu_seconds[e]);
    return write_text(path, &t);
}

/* One panel of the plot: axes, ticks, and a polyline per series (id = name). */
static void plot_panel(text *t, double x0, const char *title, const history *h, int64_t first_epoch,
                       const double *const *series, const char *const *names, const char *const *colors,
                       int nseries) {
    const double w = 420, left = x0 + 60, top = 40, pw = w - 80, ph = 210;
    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int64_t e = 0; e < h->n; e++)
            if (isfinite(series[s][e])) lo = fmin(lo, series[s][e]), hi = fmax(hi, series[s][e]);
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    emit(t,
         "<g id=\"%s-panel\">\n<text x=\"%.1f\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n",
         names[0], left + pw / 2, title);
    emit(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
         left, top, pw, ph);
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4, y = top + ph - ph * k / 4;
        emit(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3f</text>\n", left - 6,
             y + 4, v);
    }
    for (int64_t e = 0; e < h->n; e++) {
        double x = h->n > 1 ? left + pw * (double)e / (double)(h->n - 1) : left + pw / 2;
        if (h->n <= 12 || e % ((h->n + 9) / 10) == 0 || e == h->n - 1)
            emit(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%lld</text>\n", x,
                 top + ph + 16, (long long)(first_epoch + e));
    }
    emit(t, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">epoch</text>\n",
         left + pw / 2, top + ph + 34);
    for (int s = 0; s < nseries; s++) {
        emit(t, "<polyline id=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", names[s],
             colors[s]);
        for (int64_t e = 0; e < h->n; e++) {
            if (!isfinite(series[s][e])) continue;
            double x = h->n > 1 ? left + pw * (double)e / (double)(h->n - 1) : left + pw / 2;
            double y = top + ph - ph * (series[s][e] - lo) / (hi - lo);
            emit(t, "%s%.2f,%.2f", e ? " " : "", x, y);
        }
        emit(t, "\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"%s\">%s</text>\n",
             left + 8 + 120 * s, top + ph + 52, colors[s], names[s]);
    }
    emit(t, "</g>\n");
}

static int write_plot(const char *path, const history *h, int64_t first_epoch, bool have_test) {
    text t = {NULL, 0, false};
    emit(&t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"840\" height=\"320\" viewBox=\"0 0 840 320\" "
             "font-family=\"sans-serif\">\n<rect width=\"840\" height=\"320\" fill=\"white\"/>\n");
    const double *loss[1] = {h->loss}, *acc[2] = {h->train_acc, h->test_acc};
    const char *loss_names[1] = {"loss"}, *acc_names[2] = {"train-accuracy", "test-accuracy"};
    const char *loss_colors[1] = {"#c0392b"}, *acc_colors[2] = {"#2471a3", "#229954"};
    plot_panel(&t, 0, "training loss", h, first_epoch, loss, loss_names, loss_colors, 1);
    plot_panel(&t, 420, "accuracy", h, first_epoch, acc, acc_names, acc_colors, have_test ? 2 : 1);
    emit(&t, "</svg>\n");
    return write_text(path, &t);
}

/* ---- progress ---- */
typedef struct {
    bool bar;
    double start, last_draw;
    int64_t batch, epoch, epochs;
} progress_state;

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void draw_progress(void *user, int64_t step, int64_t steps, double running_loss) {
    progress_state *p = user;
    double now = wall_seconds();
    if (step < steps && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    double elapsed = now - p->start, rate = (double)(step * p->batch) / fmax(elapsed, 1e-9);
    double eta = elapsed / (double)step * (double)(steps - step);
    char bar[31];
    int filled = (int)(30 * step / steps);
    for (int k = 0; k < 30; k++)
        bar[k] = k < filled ? '#' : '-';
    bar[30] = '\0';
    printf("\r\033[Kepoch %lld/%lld [%s] %lld/%lld  %.0f ex/s  loss %.4f  ETA %.0fs", (long long)p->epoch,
           (long long)p->epochs, bar, (long long)step, (long long)steps, rate, running_loss, eta);
    fflush(stdout);
}

/* ---- nabla train ---- */
static int parse_choice(const char *option, const char *value, const char *const *names, int n, int *out) {
    for (int k = 0; k < n; k++)
        if (strcmp(value, names[k]) == 0) return *out = k, 0;
    return nb_cli_error(NULL, -1, "invalid --%s '%s'", option, value);
}

static int print_model(const nb_net_shape *shape) {
    char *model, *decls;
    if (nb_net_source(shape, &model, &decls)) return nb_cli_error(NULL, -1, "invalid network");
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *X, *Y, *Z, *params[2 * NB_MAX_LAYERS];
    nb_expr *loss = ctx ? nb_net_build(ctx, shape, &X, &Y, &Z, params) : NULL;
    int status =
        loss ? 0 : nb_cli_error(NULL, -1, "building the network: %s", ctx ? nb_error(ctx) : "out of memory");
    if (status == 0) {
        printf("network:  %s\ntypes:    %s\n", model, decls);
        for (int i = 0; i < 2 * shape->nlayers && status == 0; i++) {
            nb_expr *d = nb_derivative(ctx, loss, 1, &params[i], NB_NUMERATOR);
            char *s = d ? nb_derivative_to_string(ctx, d, NB_FMT_UNICODE) : NULL;
            if (!s)
                status = nb_cli_error(NULL, -1, "differentiating: %s", nb_error(ctx));
            else
                printf("∂loss/∂%s%d = %s\n", i % 2 == 0 ? "W" : "b", i / 2 + 1, s);
            free(s);
        }
    }
    nb_ctx_free(ctx);
    free(model);
    free(decls);
    return status;
}

/* The configuration from the options (everything but --resume). */
static int train_config(const nb_cli_option *opts, size_t nopts, nb_train_config *c) {
#define OPT(name) nb_cli_option_value(opts, nopts, name)
    static const char *const activations[] = {"relu", "tanh", "sigmoid"},
                             *const optimizers[] = {"sgd", "momentum", "adam"},
                             *const dtypes[] = {"f64", "f32"};
    nb_train_config_default(c);
    char err[512];
    if (nb_net_parse_layers(OPT("layers") ? OPT("layers") : "784-256-10", &c->shape, err, sizeof err))
        return nb_cli_error(NULL, -1, "%s", err);
    int choice = 0;
    if (OPT("activation")) {
        if (parse_choice("activation", OPT("activation"), activations, 3, &choice)) return 2;
        c->shape.activation = (nb_activation)choice;
    }
    if (OPT("optimizer")) {
        if (parse_choice("optimizer", OPT("optimizer"), optimizers, 3, &choice)) return 2;
        c->optimizer = (nb_optimizer)choice;
        if (c->optimizer == NB_OPT_ADAM) c->lr = 0.001;
    }
    if (OPT("dtype")) {
        if (parse_choice("dtype", OPT("dtype"), dtypes, 2, &choice)) return 2;
        c->dtype = choice ? NB_F32 : NB_F64;
    }
    uint64_t u;
    if (OPT("lr") && nb_cli_parse_double("lr", OPT("lr"), &c->lr)) return 2;
    if (OPT("momentum") && nb_cli_parse_double("momentum", OPT("momentum"), &c->momentum)) return 2;
    if (OPT("seed") && nb_cli_parse_u64("seed", OPT("seed"), &c->seed)) return 2;
    if (OPT("batch")) {
        if (nb_cli_parse_u64("batch", OPT("batch"), &u)) return 2;
        c->batch = u > (1u << 20) ? 0 : (int64_t)u;
    }
    return 0;
#undef OPT
}

int nb_cmd_train(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL},        {"data", true, NULL},   {"data-dir", true, NULL},
                            {"test", true, NULL},         {"layers", true, NULL}, {"activation", true, NULL},
                            {"optimizer", true, NULL},    {"lr", true, NULL},     {"momentum", true, NULL},
                            {"batch", true, NULL},        {"epochs", true, NULL}, {"seed", true, NULL},
                            {"threads", true, NULL},      {"dtype", true, NULL},  {"save", true, NULL},
                            {"resume", true, NULL},       {"plot", true, NULL},   {"log", true, NULL},
                            {"print-model", false, NULL}, {"quiet", false, NULL}};
    size_t npos;
    if (PARSE_OPTIONS(TRAIN_USAGE)) return 2;
    if (OPTION("help")) return fputs(train_help, stdout), 0;
    static const char *const fixed_by_checkpoint[] = {"layers",   "activation", "optimizer", "lr",
                                                      "momentum", "batch",      "seed",      "dtype"};
    nb_train_config cfg;
    char err[1024];
    nb_trainer *t = NULL;
    if (OPTION("resume")) {
        for (size_t k = 0; k < sizeof fixed_by_checkpoint / sizeof *fixed_by_checkpoint; k++)
            if (OPTION(fixed_by_checkpoint[k]))
                return nb_cli_usage_error(TRAIN_USAGE, "--%s cannot change a resumed checkpoint's settings",
                                          fixed_by_checkpoint[k]);
        if (!(t = nb_trainer_load(OPTION("resume"), err, sizeof err)))
            return nb_cli_error(NULL, -1, "%s", err);
        cfg = *nb_trainer_config(t);
    } else if (train_config(opts, sizeof opts / sizeof opts[0], &cfg)) {
        return 2;
    }
    if (cfg.shape.sizes[cfg.shape.nlayers] < 2) {
        nb_trainer_free(t);
        return nb_cli_error(NULL, -1, "the last layer needs at least 2 classes, not %lld",
                            (long long)cfg.shape.sizes[cfg.shape.nlayers]);
    }
    if (OPTION("print-model")) {
        nb_trainer_free(t);
        return print_model(&cfg.shape);
    }
    if (!OPTION("data")) {
        nb_trainer_free(t);
        return nb_cli_usage_error(TRAIN_USAGE, "missing --data");
    }
    uint64_t epochs = 5, threads = 1;
    if ((OPTION("epochs") && nb_cli_parse_u64("epochs", OPTION("epochs"), &epochs)) ||
        (OPTION("threads") && nb_cli_parse_u64("threads", OPTION("threads"), &threads))) {
        nb_trainer_free(t);
        return 2;
    }
    if (threads < 1 || threads > 64) {
        nb_trainer_free(t);
        return nb_cli_error(NULL, -1, "invalid --threads value '%s' (expected 1..64)", OPTION("threads"));
    }
    data_sets data;
    int classes = (int)cfg.shape.sizes[cfg.shape.nlayers];
    if (load_data(OPTION("data"), OPTION("data-dir"), OPTION("test"), classes, &data)) {
        nb_trainer_free(t);
        return 2;
    }
    int status = check_inputs(&cfg, &data.train, "training");
    if (status == 0 && data.have_test) status = check_inputs(&cfg, &data.test, "test");
    if (status == 0 && !t && !(t = nb_trainer_new(&cfg, err, sizeof err)))
        status = nb_cli_error(NULL, -1, "%s", err);
    if (status == 0) nb_trainer_set_threads(t, (int)threads);

    bool quiet = OPTION("quiet") != NULL;
    progress_state progress = {isatty(STDOUT_FILENO) && !quiet, 0, 0, cfg.batch, 0, (int64_t)epochs};
    history h = {0, 0, NULL, NULL, NULL, NULL, NULL};
    int64_t first_epoch = t ? nb_trainer_epoch_count(t) + 1 : 1;
    char line[256] = "";
    while (status == 0 && nb_trainer_epoch_count(t) < (int64_t)epochs) {
        nb_epoch_stats stats;
        progress.epoch = nb_trainer_epoch_count(t) + 1;
        progress.start = progress.last_draw = wall_seconds();
        if (nb_trainer_epoch(t, &data.train, progress.bar ? draw_progress : NULL, &progress, &stats, err,
                             sizeof err)) {
            if (progress.bar) printf("\r\033[K");
            fflush(stdout);
            status = nb_cli_error(NULL, -1, "%s%s", err,
                                  OPTION("save") ? "; the last good checkpoint is kept" : "");
            break;
        }
        double test_loss, test_acc = NAN;
        if (data.have_test &&
            nb_trainer_evaluate(t, &data.test, &test_loss, &test_acc, NULL, err, sizeof err)) {
            status = nb_cli_error(NULL, -1, "%s", err);
            break;
        }
        if (history_add(&h, &stats, test_acc)) {
            status = nb_cli_error(NULL, -1, "out of memory");
            break;
        }
        if (data.have_test)
            snprintf(line, sizeof line,
                     "epoch %lld/%lld  loss %.4f  train accuracy %.4f  test accuracy %.4f  %.2f s",
                     (long long)progress.epoch, (long long)epochs, stats.loss, stats.train_accuracy, test_acc,
                     stats.seconds);
        else
            snprintf(line, sizeof line, "epoch %lld/%lld  loss %.4f  train accuracy %.4f  %.2f s",
                     (long long)progress.epoch, (long long)epochs, stats.loss, stats.train_accuracy,
                     stats.seconds);
        if (progress.bar) printf("\r\033[K");
        if (!quiet) printf("%s\n", line);
        fflush(stdout);
        if (OPTION("save") && nb_trainer_save(t, OPTION("save"), err, sizeof err))
            status = nb_cli_error(NULL, -1, "%s", err);
        if (status == 0 && OPTION("log")) status = write_log(OPTION("log"), &h, first_epoch);
        if (status == 0 && OPTION("plot"))
            status = write_plot(OPTION("plot"), &h, first_epoch, data.have_test);
    }
    /* no epoch to run (--epochs 0, or a checkpoint that has them all): --save
     * still writes the network as it stands, e.g. freshly initialised */
    if (status == 0 && nb_trainer_epoch_count(t) < first_epoch && OPTION("save") &&
        nb_trainer_save(t, OPTION("save"), err, sizeof err))
        status = nb_cli_error(NULL, -1, "%s", err);
    if (status == 0 && quiet && *line) printf("%s\n", line);
    history_free(&h);
    nb_trainer_free(t);
    data_free(&data);
    return status;
}

/* ---- nabla evaluate ---- */
static int load_model(const char *path, const char *threads_text, nb_trainer **t) {
    char err[1024];
    uint64_t threads = 1;
    if (threads_text && nb_cli_parse_u64("threads", threads_text, &threads)) return 2;
    if (threads < 1 || threads > 64)
        return nb_cli_error(NULL, -1, "invalid --threads value '%s' (expected 1..64)", threads_text);
    if (!(*t = nb_trainer_load(path, err, sizeof err))) return nb_cli_error(NULL, -1, "%s", err);
    nb_trainer_set_threads(*t, (int)threads);
    return 0;
}

int nb_cmd_evaluate(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL},
                            {"load", true, NULL},
                            {"data", true, NULL},
                            {"data-dir", true, NULL},
                            {"threads", true, NULL}};
    size_t npos;
    if (PARSE_OPTIONS(EVALUATE_USAGE)) return 2;
    if (OPTION("help")) return fputs(evaluate_help, stdout), 0;
    if (!OPTION("load")) return nb_cli_usage_error(EVALUATE_USAGE, "missing --load");
    if (!OPTION("data")) return nb_cli_usage_error(EVALUATE_USAGE, "missing --data");
    nb_trainer *t;
    if (load_model(OPTION("load"), OPTION("threads"), &t)) return 2;
    const nb_train_config *c = nb_trainer_config(t);
    int classes = (int)c->shape.sizes[c->shape.nlayers];
    data_sets data;
    int status = 2;
    if (strcmp(OPTION("data"), "fashion-mnist") == 0) {
        status = load_data(OPTION("data"), OPTION("data-dir"), NULL, classes, &data);
    } else {
        memset(&data, 0, sizeof data);
        status = load_csv_dataset(OPTION("data"), classes, &data.test);
    }
    const nb_dataset *d = &data.test;
    if (status == 0) status = check_inputs(c, d, "test");
    int64_t *confusion = status == 0 ? calloc((size_t)classes * (size_t)classes, sizeof *confusion) : NULL;
    double loss, accuracy;
    char err[1024];
    if (status == 0 && !confusion) status = nb_cli_error(NULL, -1, "out of memory");
    if (status == 0 && nb_trainer_evaluate(t, d, &loss, &accuracy, confusion, err, sizeof err))
        status = nb_cli_error(NULL, -1, "%s", err);
    if (status == 0) {
        printf("examples: %lld\naccuracy: %.4f\nloss: %.6f\nconfusion matrix (rows: true class, columns: "
               "predicted):\n",
               (long long)d->count, accuracy, loss);
        for (int i = 0; i < classes; i++) {
            for (int j = 0; j < classes; j++)
                printf("%s%6lld", j ? " " : "", (long long)confusion[i * classes + j]);
            printf("\n");
        }
    }
    free(confusion);
    data_free(&data);
    nb_trainer_free(t);
    return status;
}

/* ---- nabla predict ---- */
/* Examples to classify: an IDX images file (gzipped or not) or a CSV of feature rows. */
static int load_inputs(const char *path, float **x, int64_t *count, int64_t *features) {
    char err[1024];
    FILE *f = fopen(path, "rb");
    if (!f) return nb_cli_error(NULL, -1, "cannot open '%s'", path);
    int c0 = fgetc(f), c1 = fgetc(f);
    fclose(f);
    if ((c0 == 0x1f && c1 == 0x8b) || (c0 == 0 && c1 == 0)) {
        nb_idx a;
        if (nb_idx_read(path, &a, err, sizeof err)) return nb_cli_error(NULL, -1, "%s", err);
        *count = a.dims[0];
        *features = a.count / a.dims[0];
        if (!(*x = malloc((size_t)a.count * sizeof **x))) {
            nb_idx_free(&a);
            return nb_cli_error(NULL, -1, "out of memory");
        }
        for (int64_t k = 0; k < a.count; k++)
            (*x)[k] = (float)a.data[k] / 255.0f;
        nb_idx_free(&a);
        return 0;
    }
    nb_table table;
    if (nb_csv_read(path, &table, err, sizeof err)) return nb_cli_error(NULL, -1, "%s", err);
    *count = table.rows;
    *features = table.cols;
    if (!(*x = malloc((size_t)(table.rows * table.cols) * sizeof **x))) {
        nb_table_free(&table);
        return nb_cli_error(NULL, -1, "out of memory");
    }
    for (int64_t k = 0; k < table.rows * table.cols; k++)
        (*x)[k] = (float)table.data[k];
    nb_table_free(&table);
    return 0;
}

int nb_cmd_predict(int argc, char **argv) {
    nb_cli_option opts[] = {
        {"help", false, NULL}, {"load", true, NULL}, {"input", true, NULL}, {"threads", true, NULL}};
    size_t npos;
    if (PARSE_OPTIONS(PREDICT_USAGE)) return 2;
    if (OPTION("help")) return fputs(predict_help, stdout), 0;
    if (!OPTION("load")) return nb_cli_usage_error(PREDICT_USAGE, "missing --load");
    if (!OPTION("input")) return nb_cli_usage_error(PREDICT_USAGE, "missing --input");
    nb_trainer *t;
    if (load_model(OPTION("load"), OPTION("threads"), &t)) return 2;
    float *x = NULL;
    int64_t count = 0, features = 0;
    int32_t *classes = NULL;
    char err[1024];
    int status = load_inputs(OPTION("input"), &x, &count, &features);
    if (status == 0 && !(classes = malloc((size_t)count * sizeof *classes)))
        status = nb_cli_error(NULL, -1, "out of memory");
    if (status == 0 && nb_trainer_predict(t, x, count, features, classes, err, sizeof err))
        status = nb_cli_error(NULL, -1, "'%s': %s", OPTION("input"), err);
    for (int64_t i = 0; status == 0 && i < count; i++)
        printf("%d\n", classes[i]);
    free(classes);
    free(x);
    nb_trainer_free(t);
    return status;
}
