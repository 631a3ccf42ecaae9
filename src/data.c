/* Data readers for training: IDX arrays (gzipped through zlib when built with
 * NB_HAVE_ZLIB), Fashion-MNIST, CSV tables.  Everything is validated before
 * it is used: a reader either returns the whole, consistent data or an error
 * naming the file and what is wrong with it. */
#include "nabla_train.h"
#include "train_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef NB_HAVE_ZLIB
#include <zlib.h>
#endif

int nb_train_fail(char *err, size_t errsize, const char *fmt, ...) {
    if (err && errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsize, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- reading a whole file, decompressing gzip ---- */
/* Reads up to n bytes from source: the count, 0 at the end, -1 on an error. */
typedef long (*read_chunk_fn)(void *source, uint8_t *buf, size_t n);

static long read_stdio(void *source, uint8_t *buf, size_t n) {
    size_t got = fread(buf, 1, n, source);
    return got ? (long)got : ferror((FILE *)source) ? -1 : 0;
}

#ifdef NB_HAVE_ZLIB
static long read_gzip(void *source, uint8_t *buf, size_t n) {
    int got = gzread(source, buf, n > (1u << 30) ? 1u << 30 : (unsigned)n), code;
    if (got > 0) return got;
    gzerror(source, &code); /* gzread returns 0 both at the end and on a truncated stream */
    return got < 0 || (code != Z_OK && code != Z_STREAM_END) ? -1 : 0;
}
#endif

/* All of source into a malloc'd buffer: 0, -1 (read error) or -2 (out of memory). */
static int read_chunks(read_chunk_fn read, void *source, uint8_t **data, size_t *size) {
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (long got = 1; buf && got > 0; n += (size_t)got) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) break;
            buf = bigger;
            cap *= 2;
        }
        if ((got = read(source, buf + n, cap - n)) < 0) {
            free(buf);
            return -1;
        }
    }
    if (!buf || n == cap) { /* n == cap: the buffer could not grow */
        free(buf);
        return -2;
    }
    *data = buf;
    *size = n;
    return 0;
}

int nb_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t errsize) {
    FILE *f = fopen(path, "rb");
    if (!f) return nb_train_fail(err, errsize, "cannot open '%s': %s", path, strerror(errno));
    int c0 = fgetc(f), c1 = fgetc(f), status;
    if (c0 == 0x1f && c1 == 0x8b) {
        fclose(f);
#ifdef NB_HAVE_ZLIB
        gzFile g = gzopen(path, "rb");
        if (!g) return nb_train_fail(err, errsize, "cannot open '%s': %s", path, strerror(errno));
        status = read_chunks(read_gzip, g, data, size);
        if (status == -1) {
            int code;
            nb_train_fail(err, errsize, "'%s' is a corrupted gzip file: %s", path, gzerror(g, &code));
        }
        gzclose(g);
        if (status == -1) return -1;
#else
        return nb_train_fail(err, errsize,
                             "'%s' is gzip-compressed and nabla was built without zlib "
                             "(install zlib1g-dev and rebuild, or gunzip the file)",
                             path);
#endif
    } else {
        rewind(f);
        status = read_chunks(read_stdio, f, data, size);
        fclose(f);
        if (status == -1) return nb_train_fail(err, errsize, "cannot read '%s'", path);
    }
    return status == -2 ? nb_train_fail(err, errsize, "out of memory reading '%s'", path) : 0;
}

/* ---- IDX ---- */
static uint32_t big_endian32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int nb_idx_read(const char *path, nb_idx *out, char *err, size_t errsize) {
    if (!path || !out) return nb_train_fail(err, errsize, "nb_idx_read: NULL argument");
    memset(out, 0, sizeof *out);
    uint8_t *bytes;
    size_t size;
    if (nb_read_file(path, &bytes, &size, err, errsize)) return -1;
    if (size < 4) {
        nb_train_fail(err, errsize, "'%s' is not an IDX file: %zu bytes, shorter than the 4-byte header",
                      path, size);
        goto invalid;
    }
    uint32_t magic = big_endian32(bytes);
    int type = (int)(magic >> 8), ndims = (int)(magic & 0xff);
    if (type != 0x08 || ndims < 1 || ndims > 4) {
        nb_train_fail(err, errsize,
                      "'%s' is not an IDX file of unsigned bytes: magic 0x%08x (expected 0x000008DD, DD = "
                      "1..4 dimensions)",
                      path, (unsigned)magic);
        goto invalid;
    }
    size_t header = 4 + 4 * (size_t)ndims;
    if (size < header) {
        nb_train_fail(err, errsize, "'%s' is truncated: %zu bytes, shorter than its %zu-byte header", path,
                      size, header);
        goto invalid;
    }
    int64_t count = 1;
    for (int k = 0; k < ndims; k++) {
        uint32_t d = big_endian32(bytes + 4 + 4 * k);
        if (d == 0 || d > (1u << 30) || count > ((int64_t)1 << 40) / d) {
            nb_train_fail(err, errsize, "'%s': dimension %d has an invalid size %u", path, k + 1,
                          (unsigned)d);
            goto invalid;
        }
        out->dims[k] = d;
        count *= d;
    }
    if ((uint64_t)(size - header) != (uint64_t)count) {
        nb_train_fail(err, errsize, "'%s' %s: its header promises %lld entries, it holds %zu", path,
                      (int64_t)(size - header) < count ? "is truncated" : "has trailing data",
                      (long long)count, size - header);
        goto invalid;
    }
    out->ndims = ndims;
    out->count = count;
    memmove(bytes, bytes + header, (size_t)count); /* the entries keep the file's buffer */
    out->data = bytes;
    return 0;
invalid:
    free(bytes);
    memset(out, 0, sizeof *out);
    return -1;
}

void nb_idx_free(nb_idx *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

void nb_dataset_free(nb_dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->label);
    memset(d, 0, sizeof *d);
}

static int dataset_alloc(nb_dataset *d, int64_t count, int64_t features, int classes) {
    d->count = count;
    d->features = features;
    d->classes = classes;
    d->x = malloc((size_t)(count * features) * sizeof *d->x);
    d->label = malloc((size_t)count * sizeof *d->label);
    if (d->x && d->label) return 0;
    nb_dataset_free(d);
    return -1;
}

int nb_dataset_load_idx(const char *images_path, const char *labels_path, int classes, nb_dataset *out,
                        char *err, size_t errsize) {
    if (!images_path || !labels_path || !out || classes < 2 || classes > 256)
        return nb_train_fail(err, errsize, "nb_dataset_load_idx: NULL argument or classes outside 2..256");
    memset(out, 0, sizeof *out);
    nb_idx images, labels;
    if (nb_idx_read(images_path, &images, err, errsize)) return -1;
    if (nb_idx_read(labels_path, &labels, err, errsize)) {
        nb_idx_free(&images);
        return -1;
    }
    int status = -1;
    if (images.ndims != 3) {
        nb_train_fail(err, errsize,
                      "'%s' is not an images file: %d dimensions (expected 3: count, rows, columns)",
                      images_path, images.ndims);
    } else if (labels.ndims != 1) {
        nb_train_fail(err, errsize, "'%s' is not a labels file: %d dimensions (expected 1)", labels_path,
                      labels.ndims);
    } else if (images.dims[0] != labels.dims[0]) {
        nb_train_fail(err, errsize, "'%s' holds %lld images but '%s' %lld labels", images_path,
                      (long long)images.dims[0], labels_path, (long long)labels.dims[0]);
    } else if (dataset_alloc(out, images.dims[0], images.dims[1] * images.dims[2], classes)) {
        nb_train_fail(err, errsize, "out of memory loading '%s'", images_path);
    } else {
        status = 0;
        for (int64_t i = 0; i < out->count && status == 0; i++) {
            if (labels.data[i] >= classes) {
                status = nb_train_fail(err, errsize, "'%s': label %d of example %lld is out of range 0..%d",
                                       labels_path, labels.data[i], (long long)i, classes - 1);
                nb_dataset_free(out);
            } else {
                out->label[i] = labels.data[i];
            }
        }
        for (int64_t k = 0; status == 0 && k < images.count; k++)
            out->x[k] = (float)images.data[k] / 255.0f;
    }
    nb_idx_free(&images);
    nb_idx_free(&labels);
    return status;
}

int nb_dataset_load_fashion_mnist(const char *dir, nb_dataset *train, nb_dataset *test, char *err,
                                  size_t errsize) {
    if (!dir || !train || !test)
        return nb_train_fail(err, errsize, "nb_dataset_load_fashion_mnist: NULL argument");
    static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    char paths[4][4096];
    char missing[sizeof paths + 16] = "";
    for (int k = 0; k < 4; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/%s", dir, names[k]);
        FILE *f = fopen(paths[k], "rb");
        if (f)
            fclose(f);
        else
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                     *missing ? ", " : "", paths[k]);
    }
    if (*missing)
        return nb_train_fail(
            err, errsize,
            "Fashion-MNIST not found: missing %s (install it with 'apt-get install dataset-fashion-mnist', "
            "or point --data-dir at a directory holding the four files)",
            missing);
    memset(test, 0, sizeof *test);
    if (nb_dataset_load_idx(paths[0], paths[1], 10, train, err, errsize)) return -1;
    if (nb_dataset_load_idx(paths[2], paths[3], 10, test, err, errsize)) {
        nb_dataset_free(train);
        return -1;
    }
    if (train->features != test->features) {
        nb_train_fail(err, errsize, "'%s' has %lld features per image but '%s' %lld", paths[0],
                      (long long)train->features, paths[2], (long long)test->features);
        nb_dataset_free(train);
        nb_dataset_free(test);
        return -1;
    }
    return 0;
}

/* ---- CSV ---- */
void nb_table_free(nb_table *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* Parses one line's comma-separated numbers into row (cap entries); returns
 * the count, or -1 with *bad_field at the first field that is not a number. */
static int64_t parse_row(char *line, double *row, int64_t cap, int64_t *bad_field) {
    int64_t n = 0;
    char *p = line;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r')
            end++;
        if (end == p || (*end != ',' && *end != '\0') || !isfinite(v)) {
            *bad_field = n + 1;
            return -1;
        }
        if (n < cap) row[n] = v;
        n++;
        if (*end == '\0') return n;
        p = end + 1;
    }
}

int nb_csv_read(const char *path, nb_table *out, char *err, size_t errsize) {
    if (!path || !out) return nb_train_fail(err, errsize, "nb_csv_read: NULL argument");
    memset(out, 0, sizeof *out);
    uint8_t *bytes;
    size_t size;
    if (nb_read_file(path, &bytes, &size, err, errsize)) return -1;
    if (memchr(bytes, 0, size)) {
        free(bytes);
        return nb_train_fail(err, errsize, "'%s' is not a CSV text file (it holds a NUL byte)", path);
    }
    char *text = realloc(bytes, size + 1);
    if (!text) {
        free(bytes);
        return nb_train_fail(err, errsize, "out of memory reading '%s'", path);
    }
    text[size] = '\0';
    int64_t cap = 0, rows = 0, cols = -1, lineno = 0;
    double *data = NULL;
    int status = 0;
    for (char *line = text; line && status == 0;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (*s != '\0') {
            int64_t bad = 0, want = cols < 0 ? 1 << 20 : cols;
            if (rows * (cols < 0 ? 0 : cols) + want > cap) {
                int64_t new_cap = cap ? cap * 2 : 1024;
                while (new_cap < rows * (cols < 0 ? 0 : cols) + want)
                    new_cap *= 2;
                double *bigger = realloc(data, (size_t)new_cap * sizeof *data);
                if (!bigger) {
                    status = nb_train_fail(err, errsize, "out of memory reading '%s'", path);
                    break;
                }
                data = bigger;
                cap = new_cap;
            }
            int64_t n = parse_row(s, data + rows * (cols < 0 ? 0 : cols), want, &bad);
            if (n < 0 && rows == 0 && cols < 0 && lineno == 1) {
                /* a header line */
            } else if (n < 0) {
                status = nb_train_fail(err, errsize, "%s:%lld: field %lld is not a finite number", path,
                                       (long long)lineno, (long long)bad);
            } else if (cols >= 0 && n != cols) {
                status = nb_train_fail(err, errsize, "%s:%lld: %lld fields, but the first row has %lld", path,
                                       (long long)lineno, (long long)n, (long long)cols);
            } else if (n > want) {
                status = nb_train_fail(err, errsize, "%s:%lld: more than %lld fields", path,
                                       (long long)lineno, (long long)want);
            } else {
                cols = n;
                rows++;
            }
        }
        line = next;
    }
    free(text);
    if (status == 0 && rows == 0) status = nb_train_fail(err, errsize, "'%s' holds no rows of numbers", path);
    if (status) {
        free(data);
        return -1;
    }
    out->rows = rows;
    out->cols = cols;
    out->data = data;
    return 0;
}

int nb_dataset_from_table(const nb_table *t, int classes, nb_dataset *out, char *err, size_t errsize) {
    if (!t || !out || classes < 2)
        return nb_train_fail(err, errsize, "nb_dataset_from_table: NULL argument or classes < 2");
    memset(out, 0, sizeof *out);
    if (t->cols < 2)
        return nb_train_fail(err, errsize,
                             "a classification table needs features and a label: it has %lld column(s)",
                             (long long)t->cols);
    for (int64_t i = 0; i < t->rows; i++) {
        double label = t->data[i * t->cols + t->cols - 1];
        if (label != floor(label) || label < 0 || label >= classes)
            return nb_train_fail(err, errsize, "row %lld: label %g is not a class in 0..%d", (long long)i + 1,
                                 label, classes - 1);
    }
    if (dataset_alloc(out, t->rows, t->cols - 1, classes))
        return nb_train_fail(err, errsize, "out of memory");
    for (int64_t i = 0; i < t->rows; i++) {
        for (int64_t j = 0; j < out->features; j++)
            out->x[i * out->features + j] = (float)t->data[i * t->cols + j];
        out->label[i] = (int32_t)t->data[i * t->cols + t->cols - 1];
    }
    return 0;
}
