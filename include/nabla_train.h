/* nabla training: data readers, networks as nabla expressions, and a
 * training loop whose every step is one compiled nabla program.
 *
 * The gradients come from nb_gradient (nabla's symbolic reverse mode) and the
 * optimiser's update is an output of the same compiled program as the loss:
 * new parameters = F(data, parameters, optimiser state).  Since a program's
 * outputs must not overlap its inputs, a trainer keeps two sets of parameter
 * and state buffers and alternates between them (no allocation per step).
 *
 * Errors: functions return 0 (or a non-NULL object) on success; on failure
 * they return -1 (or NULL) and write one message into err[0..errsize), which
 * names what is wrong (the file, the field, both shapes).  err may be NULL. */
#ifndef NABLA_TRAIN_H
#define NABLA_TRAIN_H

#include "nabla.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- data ---- */
/* An IDX array (the MNIST file format): big-endian magic 0x0000TTDD (TT the
 * element type, only 0x08 unsigned byte is accepted; DD the number of
 * dimensions, 1..4), DD big-endian 32-bit sizes, then the entries.  The file
 * may be gzip-compressed when nabla is built with zlib (NB_HAVE_ZLIB). */
typedef struct {
    int ndims;
    int64_t dims[4];
    int64_t count; /* product of dims */
    uint8_t *data;
} nb_idx;
/* Reads and validates path: the magic, the sizes, and that the file holds
 * exactly count entries (no fewer, no more). */
int nb_idx_read(const char *path, nb_idx *out, char *err, size_t errsize);
void nb_idx_free(nb_idx *a);

/* Examples for classification: count rows of `features` entries and one
 * class label each in [0, classes). */
typedef struct {
    int64_t count, features;
    int classes;
    float *x;       /* count x features, row-major */
    int32_t *label; /* count */
} nb_dataset;
void nb_dataset_free(nb_dataset *d);
/* An images file (count x rows x cols bytes, scaled by 1/255) and a labels
 * file (count bytes, each < classes) of the same count. */
int nb_dataset_load_idx(const char *images_path, const char *labels_path, int classes, nb_dataset *out,
                        char *err, size_t errsize);
/* The directory Debian's dataset-fashion-mnist package installs into. */
#define NB_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* The four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 * t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz of dir. */
int nb_dataset_load_fashion_mnist(const char *dir, nb_dataset *train, nb_dataset *test, char *err,
                                  size_t errsize);

/* A CSV table of numbers: rows separated by newlines, fields by commas, every
 * row with the same number of fields; a first line that is not numeric is a
 * header and skipped; blank lines are skipped. */
typedef struct {
    int64_t rows, cols;
    double *data; /* rows x cols, row-major */
} nb_table;
int nb_csv_read(const char *path, nb_table *out, char *err, size_t errsize);
void nb_table_free(nb_table *t);
/* A table whose last column is the class label (an integer in [0, classes)). */
int nb_dataset_from_table(const nb_table *t, int classes, nb_dataset *out, char *err, size_t errsize);

/* ---- networks ---- */
typedef enum { NB_ACT_RELU, NB_ACT_TANH, NB_ACT_SIGMOID } nb_activation;
#define NB_MAX_LAYERS 16
/* sizes[0] inputs, sizes[1..nlayers-1] hidden, sizes[nlayers] classes. */
typedef struct {
    int nlayers; /* number of dense layers, 1..NB_MAX_LAYERS */
    int64_t sizes[NB_MAX_LAYERS + 1];
    nb_activation activation;
} nb_net_shape;
/* Parses "784-256-10" into shape->sizes (and nlayers). */
int nb_net_parse_layers(const char *text, nb_net_shape *shape, char *err, size_t errsize);
const char *nb_activation_name(nb_activation a); /* "relu", "tanh", "sigmoid" */
/* The network in nabla's language and its declarations (both malloc'd):
 *   H1 = relu(X*W1 + b1'); ...; Z = H1*W2 + b2'; softmax_xent(Z, Y)
 *   X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); ... */
int nb_net_source(const nb_net_shape *shape, char **model, char **decls);
/* Builds the network in ctx: returns the loss softmax_xent(Z, Y) (a scalar,
 * the mean over the B rows), with *logits = Z (B x classes) and params[2i],
 * params[2i+1] = W(i+1), b(i+1); *X, *Y the data variables.  NULL for an invalid
 * shape or argument, or on error (nb_error(ctx)). */
nb_expr *nb_net_build(nb_ctx *ctx, const nb_net_shape *shape, nb_expr **X, nb_expr **Y, nb_expr **logits,
                      nb_expr **params);

/* ---- training ---- */
typedef enum { NB_OPT_SGD, NB_OPT_MOMENTUM, NB_OPT_ADAM } nb_optimizer;
const char *nb_optimizer_name(nb_optimizer o); /* "sgd", "momentum", "adam" */
typedef struct {
    nb_net_shape shape;
    nb_optimizer optimizer;
    double lr;                /* learning rate η */
    double momentum;          /* μ (momentum): v ← μ·v + ∇, p ← p − η·v */
    double beta1, beta2, eps; /* Adam */
    int64_t batch;
    uint64_t seed; /* initial weights and the shuffle of every epoch */
    nb_dtype dtype;
} nb_train_config;
/* The defaults: relu, sgd, lr 0.1, momentum 0.9, Adam (0.9, 0.999, 1e-8),
 * batch 128, seed 1, f32; shape->nlayers 0 (set it). */
void nb_train_config_default(nb_train_config *cfg);

typedef struct nb_trainer nb_trainer;
/* Compiles the training step and the evaluation program and initialises the
 * weights from cfg->seed (W, b uniform in ±1/√fan_in, as PyTorch's Linear). */
nb_trainer *nb_trainer_new(const nb_train_config *cfg, char *err, size_t errsize);
void nb_trainer_free(nb_trainer *t);
const nb_train_config *nb_trainer_config(const nb_trainer *t);
int nb_trainer_set_threads(nb_trainer *t, int threads);
int64_t nb_trainer_epoch_count(const nb_trainer *t); /* epochs completed */
int64_t nb_trainer_step_count(const nb_trainer *t);  /* steps completed */
/* Parameter i (0 .. 2·nlayers−1: W1, b1, W2, ...): its current values (of the
 * trainer's dtype) and shape. */
const void *nb_trainer_param(const nb_trainer *t, int i, int64_t *rows, int64_t *cols);

/* Called after each step of an epoch (and may be NULL). */
typedef void (*nb_progress_fn)(void *user, int64_t step, int64_t steps, double running_loss);
typedef struct {
    double loss;           /* mean training loss over the epoch's steps */
    double train_accuracy; /* of the predictions made while training (before each step's update) */
    double seconds;        /* the training steps alone, wall-clock */
    double cpu_seconds;    /* the same steps' processor time (all threads of the process) */
} nb_epoch_stats;
/* One epoch over d, shuffled by (seed, epoch number), in batches of cfg.batch
 * (the last one smaller).  Stops at the first step whose loss is NaN or Inf:
 * -1 with the epoch and step in err, and the parameters as they were before
 * the epoch (so a checkpoint is never written from them). */
int nb_trainer_epoch(nb_trainer *t, const nb_dataset *d, nb_progress_fn progress, void *user,
                     nb_epoch_stats *stats, char *err, size_t errsize);
/* Mean loss and accuracy over d; confusion (classes x classes, row = true
 * label, column = prediction) when not NULL. */
int nb_trainer_evaluate(nb_trainer *t, const nb_dataset *d, double *loss, double *accuracy,
                        int64_t *confusion, char *err, size_t errsize);
/* The class predicted for each of the count rows of x (count x features). */
int nb_trainer_predict(nb_trainer *t, const float *x, int64_t count, int64_t features, int32_t *classes,
                       char *err, size_t errsize);

/* Checkpoints (.nbm, docs/nbm.md): the configuration, the epoch and step
 * counters, the parameters and the optimiser state, with a CRC-32.  Saving
 * writes PATH.tmp, fsyncs it and renames it over PATH, so PATH is always
 * either the previous complete checkpoint or the new one. */
int nb_trainer_save(const nb_trainer *t, const char *path, char *err, size_t errsize);
nb_trainer *nb_trainer_load(const char *path, char *err, size_t errsize);
/* Writes data to PATH.tmp, fsyncs, renames it over path: a reader sees the
 * old file or the new one, never a part (the save of checkpoints, plots, logs). */
int nb_write_file_atomic(const char *path, const void *data, size_t size, char *err, size_t errsize);

#ifdef __cplusplus
}
#endif
#endif
