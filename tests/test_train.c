/* Training: the IDX and CSV readers on good and corrupted files, the
 * network's compiled gradient against central finite differences (f64), a
 * tiny run whose loss falls for every optimiser, checkpoints (bit-exact round
 * trip and resume, corrupt and truncated files, a save killed midway), and a
 * NaN loss stopping training. */
#include "nabla_train.h"
#include "test.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef NB_HAVE_ZLIB
#include <zlib.h>
#endif

static char dir[] = "/tmp/nabla_test_train_XXXXXX";
static char err[1024];

static const char *path_of(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* An IDX header: magic 0x000008DD and the sizes, big-endian. */
static size_t idx_header(uint8_t *p, int ndims, const uint32_t *dims) {
    p[0] = p[1] = 0, p[2] = 8, p[3] = (uint8_t)ndims;
    for (int k = 0; k < ndims; k++)
        for (int b = 0; b < 4; b++)
            p[4 + 4 * k + b] = (uint8_t)(dims[k] >> (24 - 8 * b));
    return 4 + 4 * (size_t)ndims;
}

static void test_idx(void) {
    uint8_t img[16 + 3 * 2 * 2], lab[8 + 3];
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    size_t h = idx_header(img, 3, idims);
    for (int k = 0; k < 12; k++)
        img[h + k] = (uint8_t)(k * 20);
    size_t hl = idx_header(lab, 1, ldims);
    lab[hl] = 0, lab[hl + 1] = 9, lab[hl + 2] = 4;
    write_bytes("img", img, sizeof img);
    write_bytes("lab", lab, sizeof lab);
    nb_dataset d;
    CHECK(nb_dataset_load_idx(path_of("img"), path_of("lab"), 10, &d, err, sizeof err) == 0, "load: %s", err);
    CHECK(d.count == 3 && d.features == 4 && d.classes == 10, "shape %lld x %lld", (long long)d.count,
          (long long)d.features);
    CHECK(d.x[5] == 100.0f / 255.0f && d.label[1] == 9 && d.label[2] == 4, "values");
    nb_dataset_free(&d);

    /* wrong magic */
    uint8_t bad[sizeof img];
    memcpy(bad, img, sizeof img);
    bad[2] = 0x0d;
    write_bytes("bad_magic", bad, sizeof bad);
    CHECK(nb_dataset_load_idx(path_of("bad_magic"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "magic 0x00000d03"),
          "%s", err);
    /* truncated and trailing data */
    write_bytes("short", img, sizeof img - 1);
    CHECK(nb_dataset_load_idx(path_of("short"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "is truncated: its header promises 12 entries, it holds 11"),
          "%s", err);
    uint8_t longer[sizeof img + 1];
    memcpy(longer, img, sizeof img);
    longer[sizeof img] = 7;
    write_bytes("long", longer, sizeof longer);
    CHECK(nb_dataset_load_idx(path_of("long"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "has trailing data"),
          "%s", err);
    write_bytes("tiny", img, 6);
    CHECK(nb_dataset_load_idx(path_of("tiny"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "shorter than its 16-byte header"),
          "%s", err);
    /* label out of range, count mismatch, wrong dimensions */
    lab[hl + 1] = 10;
    write_bytes("lab_range", lab, sizeof lab);
    CHECK(nb_dataset_load_idx(path_of("img"), path_of("lab_range"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "label 10 of example 1 is out of range 0..9"),
          "%s", err);
    uint8_t lab2[8 + 2];
    uint32_t two[1] = {2};
    idx_header(lab2, 1, two);
    lab2[8] = lab2[9] = 1;
    write_bytes("lab2", lab2, sizeof lab2);
    CHECK(nb_dataset_load_idx(path_of("img"), path_of("lab2"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "holds 3 images but") && strstr(err, "2 labels"),
          "%s", err);
    CHECK(nb_dataset_load_idx(path_of("lab"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "not an images file"),
          "%s", err);
    CHECK(nb_dataset_load_idx(path_of("missing"), path_of("lab"), 10, &d, err, sizeof err) == -1 &&
              strstr(err, "cannot open") && strstr(err, "missing"),
          "%s", err);
    /* Fashion-MNIST directory without the files: names them and says how to install */
    nb_dataset test;
    CHECK(nb_dataset_load_fashion_mnist(dir, &d, &test, err, sizeof err) == -1 &&
              strstr(err, "train-images-idx3-ubyte.gz") && strstr(err, "t10k-labels-idx1-ubyte.gz") &&
              strstr(err, "apt-get install dataset-fashion-mnist"),
          "%s", err);
#ifdef NB_HAVE_ZLIB
    /* gzipped: read through zlib; a truncated gzip stream is an error */
    gzFile g = gzopen(path_of("img.gz"), "wb");
    gzwrite(g, img, sizeof img);
    gzclose(g);
    nb_idx a;
    CHECK(nb_idx_read(path_of("img.gz"), &a, err, sizeof err) == 0 && a.count == 12 && a.data[11] == 220,
          "gz: %s", err);
    nb_idx_free(&a);
    FILE *f = fopen(path_of("img.gz"), "rb");
    uint8_t gzbytes[256];
    size_t n = fread(gzbytes, 1, sizeof gzbytes, f);
    fclose(f);
    write_bytes("cut.gz", gzbytes, n - 6);
    CHECK(nb_idx_read(path_of("cut.gz"), &a, err, sizeof err) == -1 && strstr(err, "cut.gz"), "%s", err);
#endif
}

static void test_csv(void) {
    const char *good = "x1,x2,label\n0.5, -1e-3, 1\n\n2,3,0\r\n";
    write_bytes("good.csv", good, strlen(good));
    nb_table t;
    CHECK(nb_csv_read(path_of("good.csv"), &t, err, sizeof err) == 0 && t.rows == 2 && t.cols == 3 &&
              t.data[1] == -1e-3 && t.data[5] == 0,
          "%s", err);
    nb_dataset d;
    CHECK(nb_dataset_from_table(&t, 2, &d, err, sizeof err) == 0 && d.features == 2 && d.label[0] == 1, "%s",
          err);
    nb_dataset_free(&d);
    CHECK(nb_dataset_from_table(&t, 1, &d, err, sizeof err) == -1, "one class");
    t.data[2] = 1.5;
    CHECK(nb_dataset_from_table(&t, 2, &d, err, sizeof err) == -1 && strstr(err, "row 1: label 1.5"), "%s",
          err);
    nb_table_free(&t);
    const char *ragged = "1,2,3\n4,5\n";
    write_bytes("ragged.csv", ragged, strlen(ragged));
    CHECK(nb_csv_read(path_of("ragged.csv"), &t, err, sizeof err) == -1 &&
              strstr(err, "ragged.csv:2: 2 fields, but the first row has 3"),
          "%s", err);
    const char *word = "1,2\n3,x\n";
    write_bytes("word.csv", word, strlen(word));
    CHECK(nb_csv_read(path_of("word.csv"), &t, err, sizeof err) == -1 && strstr(err, "word.csv:2: field 2"),
          "%s", err);
    write_bytes("empty.csv", "", 0);
    CHECK(nb_csv_read(path_of("empty.csv"), &t, err, sizeof err) == -1 && strstr(err, "no rows"), "%s", err);
}

/* The compiled gradient of the whole network (every layer's W and b) against
 * central differences of the compiled loss, in f64. */
static void test_network_gradient(nb_activation act) {
    nb_net_shape s = {3, {4, 5, 3, 3}, act};
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *X, *Y, *Z, *params[6];
    nb_expr *loss = nb_net_build(ctx, &s, &X, &Y, &Z, params);
    CHECK(loss != NULL, "build: %s", nb_error(ctx));
    nb_expr *outs[7] = {loss}, *ins[8] = {X, Y};
    for (int i = 0; i < 6; i++) {
        outs[1 + i] = nb_gradient(ctx, loss, params[i]);
        ins[2 + i] = params[i];
    }
    nb_program *p = nb_compile(ctx, 7, outs, 8, ins, NB_F64, NB_COMPILE_DENSE);
    CHECK(p && nb_program_bind_dim(p, "B", 6) == NB_OK, "compile: %s", nb_error(ctx));
    if (!p) return;
    double *buf[8], *grad[7];
    uint64_t rng = 7;
    for (int i = 0; i < 8; i++) {
        int64_t n = nb_program_input_size(p, (size_t)i);
        buf[i] = malloc((size_t)n * sizeof(double));
        for (int64_t k = 0; k < n; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            buf[i][k] = (double)(rng >> 11) * 0x1.0p-53 * 2 - 1;
        }
    }
    for (int r = 0; r < 6; r++) /* one-hot Y */
        for (int j = 0; j < 3; j++)
            buf[1][r * 3 + j] = j == r % 3;
    for (int i = 0; i < 7; i++)
        grad[i] = malloc((size_t)nb_program_output_size(p, (size_t)i) * sizeof(double));
    nb_program_run(p, (const void *const *)buf, (void *const *)grad);
    double worst = 0;
    for (int i = 0; i < 6; i++)
        for (int64_t k = 0; k < nb_program_input_size(p, (size_t)(2 + i)); k++) {
            double keep = buf[2 + i][k], h = 1e-6, up, down;
            double loss_value, *tmp[7];
            for (int o = 0; o < 7; o++)
                tmp[o] = malloc((size_t)nb_program_output_size(p, (size_t)o) * sizeof(double));
            buf[2 + i][k] = keep + h;
            nb_program_run(p, (const void *const *)buf, (void *const *)tmp);
            up = tmp[0][0];
            buf[2 + i][k] = keep - h;
            nb_program_run(p, (const void *const *)buf, (void *const *)tmp);
            down = tmp[0][0];
            buf[2 + i][k] = keep;
            loss_value = (up - down) / (2 * h);
            double rel = fabs(loss_value - grad[1 + i][k]) / fmax(1, fabs(loss_value));
            worst = fmax(worst, rel);
            for (int o = 0; o < 7; o++)
                free(tmp[o]);
        }
    CHECK(worst < 1e-7, "%s network gradient vs finite differences: max relative error %g",
          nb_activation_name(act), worst);
    for (int i = 0; i < 8; i++)
        free(buf[i]);
    for (int i = 0; i < 7; i++)
        free(grad[i]);
    nb_program_free(p);
    nb_ctx_free(ctx);
}

/* Two noisy blobs in 4 dimensions, classes 0 and 1. */
static void make_blobs(nb_dataset *d, int64_t n) {
    d->count = n, d->features = 4, d->classes = 2;
    d->x = malloc((size_t)(n * 4) * sizeof(float));
    d->label = malloc((size_t)n * sizeof(int32_t));
    uint64_t rng = 3;
    for (int64_t i = 0; i < n; i++) {
        d->label[i] = (int32_t)(i % 2);
        for (int j = 0; j < 4; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            double noise = (double)(rng >> 11) * 0x1.0p-53 - 0.5;
            d->x[i * 4 + j] = (float)((d->label[i] ? 0.6 : -0.6) * (j % 2 ? 1 : -1) + noise);
        }
    }
}

static nb_train_config tiny_config(nb_optimizer opt, nb_dtype dtype) {
    nb_train_config c;
    nb_train_config_default(&c);
    nb_net_parse_layers("4-8-2", &c.shape, err, sizeof err);
    c.optimizer = opt;
    c.dtype = dtype;
    c.batch = 16;
    c.lr = opt == NB_OPT_ADAM ? 0.01 : 0.1;
    return c;
}

static void test_training_falls(const nb_dataset *d) {
    for (int opt = NB_OPT_SGD; opt <= NB_OPT_ADAM; opt++)
        for (int dt = 0; dt < 2; dt++) {
            nb_train_config c = tiny_config((nb_optimizer)opt, dt ? NB_F32 : NB_F64);
            nb_trainer *t = nb_trainer_new(&c, err, sizeof err);
            CHECK(t != NULL, "new: %s", err);
            if (!t) continue;
            nb_epoch_stats first, last;
            nb_trainer_epoch(t, d, NULL, NULL, &first, err, sizeof err);
            for (int e = 0; e < 5; e++)
                CHECK(nb_trainer_epoch(t, d, NULL, NULL, &last, err, sizeof err) == 0, "epoch: %s", err);
            double loss, acc;
            nb_trainer_evaluate(t, d, &loss, &acc, NULL, err, sizeof err);
            CHECK(last.loss < 0.5 * first.loss && acc > 0.95, "%s %s: loss %g -> %g, accuracy %g",
                  nb_optimizer_name((nb_optimizer)opt), dt ? "f32" : "f64", first.loss, last.loss, acc);
            CHECK(nb_trainer_epoch_count(t) == 6 && nb_trainer_step_count(t) == 6 * 13, "counters");
            nb_trainer_free(t);
        }
}

/* The update each optimiser's compiled step makes equals its textbook formula
 * (PyTorch's SGD, SGD with momentum, Adam) applied to nabla's gradient:
 * two steps on the whole data set (one batch), in f64. */
static void test_optimizer_updates(const nb_dataset *d) {
    nb_net_shape shape;
    nb_net_parse_layers("4-3-2", &shape, err, sizeof err);
    shape.activation = NB_ACT_TANH;
    nb_ctx *ctx = nb_ctx_new();
    nb_expr *X, *Y, *Z, *params[4];
    nb_expr *loss = nb_net_build(ctx, &shape, &X, &Y, &Z, params);
    nb_expr *outs[4], *ins[6] = {X, Y, params[0], params[1], params[2], params[3]};
    for (int i = 0; i < 4; i++)
        outs[i] = nb_gradient(ctx, loss, params[i]);
    nb_program *grad = nb_compile(ctx, 4, outs, 6, ins, NB_F64, NB_COMPILE_DENSE);
    CHECK(grad && nb_program_bind_dim(grad, "B", d->count) == NB_OK, "gradient program: %s", nb_error(ctx));
    double *x = malloc((size_t)(d->count * 4) * sizeof *x), *y = calloc((size_t)(d->count * 2), sizeof *y);
    for (int64_t k = 0; k < d->count * 4; k++)
        x[k] = d->x[k];
    for (int64_t i = 0; i < d->count; i++)
        y[i * 2 + d->label[i]] = 1;
    const int64_t n[4] = {12, 3, 6, 2};
    for (int opt = NB_OPT_SGD; opt <= NB_OPT_ADAM; opt++) {
        nb_train_config c = tiny_config((nb_optimizer)opt, NB_F64);
        c.shape = shape;
        c.batch = d->count;
        c.lr = 0.05;
        nb_trainer *t = nb_trainer_new(&c, err, sizeof err);
        double p[4][12], g[4][12], m[4][12] = {{0}}, s[4][12] = {{0}}, worst = 0;
        for (int i = 0; i < 4; i++)
            memcpy(p[i], nb_trainer_param(t, i, NULL, NULL), (size_t)n[i] * sizeof(double));
        for (int step = 1; step <= 2; step++) {
            const void *in[6] = {x, y, p[0], p[1], p[2], p[3]};
            void *out[4] = {g[0], g[1], g[2], g[3]};
            nb_program_run(grad, in, out);
            nb_epoch_stats st;
            nb_trainer_epoch(t, d, NULL, NULL, &st, err, sizeof err);
            for (int i = 0; i < 4; i++)
                for (int64_t k = 0; k < n[i]; k++) {
                    if (opt == NB_OPT_SGD) {
                        p[i][k] -= c.lr * g[i][k];
                    } else if (opt == NB_OPT_MOMENTUM) {
                        m[i][k] = c.momentum * m[i][k] + g[i][k];
                        p[i][k] -= c.lr * m[i][k];
                    } else {
                        m[i][k] = c.beta1 * m[i][k] + (1 - c.beta1) * g[i][k];
                        s[i][k] = c.beta2 * s[i][k] + (1 - c.beta2) * g[i][k] * g[i][k];
                        double mhat = m[i][k] / (1 - pow(c.beta1, step)),
                               shat = s[i][k] / (1 - pow(c.beta2, step));
                        p[i][k] -= c.lr * mhat / (sqrt(shat) + c.eps);
                    }
                    double got = ((const double *)nb_trainer_param(t, i, NULL, NULL))[k];
                    worst = fmax(worst, fabs(got - p[i][k]));
                }
        }
        CHECK(worst < 1e-12, "%s update differs from its formula by %g", nb_optimizer_name((nb_optimizer)opt),
              worst);
        nb_trainer_free(t);
    }
    free(x);
    free(y);
    nb_program_free(grad);
    nb_ctx_free(ctx);
}

static int params_equal(const nb_trainer *a, const nb_trainer *b) {
    for (int i = 0; i < 2 * nb_trainer_config(a)->shape.nlayers; i++) {
        int64_t r, c;
        const void *pa = nb_trainer_param(a, i, &r, &c), *pb = nb_trainer_param(b, i, NULL, NULL);
        size_t elem = nb_trainer_config(a)->dtype == NB_F32 ? 4 : 8;
        if (!pb || memcmp(pa, pb, (size_t)(r * c) * elem) != 0) return 0;
    }
    return 1;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void test_checkpoints(const nb_dataset *d) {
    nb_train_config c = tiny_config(NB_OPT_ADAM, NB_F32);
    nb_trainer *a = nb_trainer_new(&c, err, sizeof err);
    nb_epoch_stats s;
    nb_trainer_epoch(a, d, NULL, NULL, &s, err, sizeof err);
    char path[256];
    snprintf(path, sizeof path, "%s", path_of("model.nbm"));
    CHECK(nb_trainer_save(a, path, err, sizeof err) == 0, "save: %s", err);
    CHECK(access(path_of("model.nbm.tmp"), F_OK) != 0, "no temporary file left");
    nb_trainer *b = nb_trainer_load(path, err, sizeof err);
    CHECK(b && params_equal(a, b) && nb_trainer_epoch_count(b) == 1 && nb_trainer_step_count(b) == 13,
          "round trip: %s", err);
    if (!b) return;
    /* resume continues bit-exactly: the same losses and parameters */
    nb_epoch_stats sa, sb;
    nb_trainer_epoch(a, d, NULL, NULL, &sa, err, sizeof err);
    nb_trainer_epoch(b, d, NULL, NULL, &sb, err, sizeof err);
    CHECK(sa.loss == sb.loss && params_equal(a, b), "resume: loss %.17g vs %.17g", sa.loss, sb.loss);
    nb_trainer_free(b);

    /* corrupt: one flipped bit anywhere is caught; truncation; wrong magic */
    FILE *f = fopen(path, "rb");
    long n = file_size(path);
    uint8_t *bytes = malloc((size_t)n);
    CHECK(fread(bytes, 1, (size_t)n, f) == (size_t)n, "read");
    fclose(f);
    bytes[n / 2] ^= 4;
    write_bytes("flip.nbm", bytes, (size_t)n);
    CHECK(!nb_trainer_load(path_of("flip.nbm"), err, sizeof err) && strstr(err, "CRC-32 mismatch"), "%s",
          err);
    bytes[n / 2] ^= 4;
    write_bytes("cut.nbm", bytes, (size_t)n - 100);
    CHECK(!nb_trainer_load(path_of("cut.nbm"), err, sizeof err) && strstr(err, "truncated"), "%s", err);
    write_bytes("cut2.nbm", bytes, 30);
    CHECK(!nb_trainer_load(path_of("cut2.nbm"), err, sizeof err) && strstr(err, "cut2.nbm"), "%s", err);
    bytes[0] = 'X';
    write_bytes("magic.nbm", bytes, (size_t)n);
    CHECK(!nb_trainer_load(path_of("magic.nbm"), err, sizeof err) && strstr(err, "not a nabla checkpoint"),
          "%s", err);
    free(bytes);

    /* a save killed at a random moment leaves the previous checkpoint readable */
    int loads = 0;
    for (int trial = 0; trial < 6; trial++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) {
                nb_trainer_epoch(a, d, NULL, NULL, &s, NULL, 0);
                nb_trainer_save(a, path, NULL, 0);
            }
        }
        struct timespec pause = {0, 2000000L + 1500000L * trial};
        nanosleep(&pause, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        nb_trainer *r = nb_trainer_load(path, err, sizeof err);
        loads += r != NULL;
        CHECK(r != NULL, "after a kill during saves: %s", err);
        nb_trainer_free(r);
    }
    CHECK(loads == 6, "checkpoint survives kills");
    nb_trainer_free(a);
}

static void test_nan_stops(const nb_dataset *d) {
    nb_train_config c = tiny_config(NB_OPT_SGD, NB_F64);
    c.lr = 1e300;
    nb_trainer *t = nb_trainer_new(&c, err, sizeof err);
    int64_t r, cols;
    const double *w = nb_trainer_param(t, 0, &r, &cols);
    double before[32];
    memcpy(before, w, sizeof before);
    nb_epoch_stats s;
    CHECK(nb_trainer_epoch(t, d, NULL, NULL, &s, err, sizeof err) == -1 && strstr(err, "of epoch 1") &&
              strstr(err, "at step "),
          "%s", err);
    CHECK(memcmp(before, nb_trainer_param(t, 0, NULL, NULL), sizeof before) == 0 &&
              nb_trainer_epoch_count(t) == 0 && nb_trainer_step_count(t) == 0,
          "parameters restored after NaN");
    nb_trainer_free(t);
}

static void test_bad_arguments(const nb_dataset *d) {
    nb_net_shape s;
    CHECK(nb_net_parse_layers("784-0-10", &s, err, sizeof err) == -1 && strstr(err, "784-0-10"), "%s", err);
    CHECK(nb_net_parse_layers("784", &s, err, sizeof err) == -1, "one size");
    CHECK(nb_net_parse_layers("4-x", &s, err, sizeof err) == -1, "not a number");
    CHECK(nb_net_parse_layers("784-256-10", &s, err, sizeof err) == 0 && s.nlayers == 2 && s.sizes[1] == 256,
          "ok");
    nb_train_config c = tiny_config(NB_OPT_SGD, NB_F32);
    c.lr = -1;
    CHECK(!nb_trainer_new(&c, err, sizeof err) && strstr(err, "learning rate"), "%s", err);
    CHECK(!nb_trainer_new(NULL, err, sizeof err), "NULL config");
    c = tiny_config(NB_OPT_SGD, NB_F32);
    nb_net_parse_layers("5-3-2", &c.shape, err, sizeof err);
    nb_trainer *t = nb_trainer_new(&c, err, sizeof err);
    nb_epoch_stats st;
    CHECK(nb_trainer_epoch(t, d, NULL, NULL, &st, err, sizeof err) == -1 &&
              strstr(err, "takes 5 inputs but the data has 4 features"),
          "%s", err);
    nb_trainer_free(t);
    char *model, *decls;
    nb_net_parse_layers("784-256-10", &s, err, sizeof err);
    s.activation = NB_ACT_RELU;
    CHECK(nb_net_source(&s, &model, &decls) == 0, "source");
    CHECK_STR(model, "H1 = relu(X*W1 + b1'); Z = H1*W2 + b2'; softmax_xent(Z, Y)");
    CHECK_STR(decls, "X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); "
                     "W2: matrix(256, 10); b2: vector(10)");
    free(model);
    free(decls);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_idx();
    test_csv();
    test_network_gradient(NB_ACT_TANH);
    test_network_gradient(NB_ACT_SIGMOID);
    test_network_gradient(NB_ACT_RELU);
    nb_dataset blobs;
    make_blobs(&blobs, 200);
    test_training_falls(&blobs);
    test_optimizer_updates(&blobs);
    test_checkpoints(&blobs);
    test_nan_stops(&blobs);
    test_bad_arguments(&blobs);
    nb_dataset_free(&blobs);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    TEST_MAIN_END();
}
