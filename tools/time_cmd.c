/* nabla time: what a formula and its derivative cost when compiled.
 *
 * Compiles f alone and f together with its derivatives (the gradient of a
 * scalar f w.r.t. each listed variable; the Jacobian of a vector f), fills
 * the inputs with seeded random values, and prints the median seconds per
 * run of each and their ratio as exactly three lines on stdout:
 *     f: <seconds>
 *     f+derivative: <seconds>
 *     ratio: <number>
 * Details (sizes, program statistics, output structures) go to stderr. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIME_USAGE                                                                                           \
    "nabla time EXPR --wrt VARS [--let DECLS] [--size 'N=10000, n=100'] [--dtype f32|f64] [--threads K] "    \
    "[--repeat R] [--seed S] [--dense] [--no-native] [--verbose]"

static const char time_help[] =
    "usage: " TIME_USAGE "\n"
    "\n"
    "Compiles EXPR alone and EXPR with its derivatives (the gradient of a scalar\n"
    "EXPR with respect to each of VARS, or the Jacobian of a vector EXPR), runs both\n"
    "on seeded random inputs, and prints the median seconds per run:\n"
    "    f: <seconds>\n"
    "    f+derivative: <seconds>\n"
    "    ratio: <f+derivative / f>\n"
    "Details (program sizes, output structures) go to stderr.\n"
    "\n"
    "  --wrt VARS      the variables to differentiate with respect to: 'W1, b1'\n"
    "  --let DECLS     variable types: 'X: matrix(N, n); w: vector(n); b: scalar'\n"
    "  --size SIZES    dimension sizes: 'N=10000, n=100' (every symbol needs one)\n"
    "  --dtype T       f64 (default) or f32\n"
    "  --threads K     threads per run (default 1)\n"
    "  --repeat R      timed samples of each program (default 15); the median is printed\n"
    "  --seed S        seed of the random inputs (default 1)\n"
    "  --dense         compute structured derivatives (diagonal Jacobians) as dense matrices\n"
    "  --no-native     run everything in nabla's interpreter; by default a pass over a matrix's rows\n"
    "                  that computes X·w, arithmetic on the rows and Xᵀ·g runs as C generated for the\n"
    "                  sizes, compiled by the system's C compiler (NABLA_CC, default cc) when the\n"
    "                  programs are made, before timing (without a compiler: the interpreter)\n"
    "  --verbose       print the compiled programs on stderr\n"
    "\n"
    "example:\n"
    "  nabla time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b \\\n"
    "       --let 'X: matrix(N, n); w: vector(n); y: vector(N); b: scalar' --size 'N=10000, n=100'\n";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The variables e uses, in creation order, in a malloc'd array (*out NULL
 * when out of memory). */
static size_t variables_of(nb_ctx *ctx, const nb_expr *e, nb_expr ***out) {
    size_t nv = nb_variables(ctx, e, NULL, 0);
    *out = malloc((nv ? nv : 1) * sizeof **out);
    return *out ? nb_variables(ctx, e, *out, nv) : 0;
}

typedef struct {
    nb_program *p;
    void **in, **out;
    size_t nout;
    long batch; /* runs per timed sample */
    double *samples;
} timed;

static int run_batch(timed *t, long n, double *seconds) {
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (nb_program_run(t->p, (const void *const *)t->in, t->out) != NB_OK) return -1;
    *seconds = now() - t0;
    return 0;
}

/* Runs per sample so that a sample lasts about 20 ms (at least one run). */
static int calibrate(timed *t) {
    double s;
    if (run_batch(t, 1, &s)) return -1; /* warm-up: first-touch of buffers, BLAS init */
    long n = 1;
    for (;;) {
        if (run_batch(t, n, &s)) return -1;
        if (s >= 0.02 || n >= (1L << 24)) break;
        n = s <= 0 ? n * 16 : (long)fmin((double)n * 16, fmax((double)n * 2, (double)n * 0.025 / s));
    }
    t->batch = n;
    return 0;
}

/* Binds every dimension of p to the size it was compiled with, which plans the
 * program: a plan rejected (a value too large, no memory for the workspace)
 * is reported here, before any buffer is sized.  Returns 0, or 2 after
 * reporting. */
static int plan_program(nb_program *p) {
    for (size_t k = 0; k < nb_program_num_dims(p); k++) {
        const char *name = nb_program_dim_name(p, k);
        int64_t size = nb_program_dim_value(p, k);
        if (size <= 0)
            return nb_cli_error(NULL, -1, "dimension %s has no size: give it with --size '%s=...'", name,
                                name);
        if (nb_program_bind_dim(p, name, size) != NB_OK)
            return nb_cli_error(NULL, -1, "cannot run with these sizes: %s", nb_program_error(p));
    }
    return 0;
}

/* Bytes of the buffer of a rows x cols value: rows·cols reals of real_size
 * bytes when dense (structured_entries == 0), else structured_entries (a
 * diagonal's n, a uniform value's 1); every product checked for overflow.
 * Returns 0, or 2 after reporting. */
static int buffer_bytes(const char *what, int64_t rows, int64_t cols, int64_t structured_entries,
                        size_t real_size, size_t *bytes) {
    const bool fits =
        rows > 0 && cols > 0 && rows <= INT64_MAX / cols && structured_entries <= rows * cols &&
        (uint64_t)(structured_entries > 0 ? structured_entries : rows * cols) <= SIZE_MAX / real_size;
    if (!fits)
        return nb_cli_error(NULL, -1, "%s: a %lld x %lld value is too large", what, (long long)rows,
                            (long long)cols);
    *bytes = (size_t)(structured_entries > 0 ? structured_entries : rows * cols) * real_size;
    return 0;
}

/* Adds bytes to *total; fails (2, reported) past the machine's memory, so that
 * a run too large is an error rather than the kernel killing the process. */
static int reserve_memory(size_t *total, size_t bytes) {
    static size_t physical;
#ifdef _SC_PHYS_PAGES
    if (!physical) {
        long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
        physical = pages > 0 && page_size > 0 && (size_t)pages <= SIZE_MAX / (size_t)page_size
                       ? (size_t)pages * (size_t)page_size
                       : SIZE_MAX;
    }
#else
    physical = SIZE_MAX;
#endif
    if (bytes > SIZE_MAX - *total || *total + bytes > physical)
        return nb_cli_error(
            NULL, -1,
            "these sizes need more than this machine's %.3g GiB of memory (inputs, outputs and "
            "workspace of both programs)",
            (double)physical / (1u << 30));
    *total += bytes;
    return 0;
}

/* The bytes of every input buffer (in_bytes[i]) and output buffer of the
 * derivative program (out_bytes[k]; f's is out_bytes[0]), checked against
 * overflow and, with both workspaces, against the machine's memory.  Returns
 * 0, or 2 after reporting. */
static int size_buffers(const timed *tf, const timed *td, size_t nvars, nb_expr *const *wrt, size_t real_size,
                        size_t *in_bytes, size_t *out_bytes) {
    size_t total = 0;
    nb_program_stats stats;
    nb_program_get_stats(tf->p, &stats);
    if (reserve_memory(&total, stats.workspace_bytes)) return 2;
    nb_program_get_stats(td->p, &stats);
    if (reserve_memory(&total, stats.workspace_bytes)) return 2;
    char what[96];
    for (size_t i = 0; i < nvars; i++) {
        int64_t r = 0, c = 0;
        nb_program_input_shape(td->p, i, &r, &c);
        snprintf(what, sizeof what, "input '%.64s'", nb_program_input_name(td->p, i));
        if (buffer_bytes(what, r, c, 0, real_size, &in_bytes[i]) || reserve_memory(&total, in_bytes[i]))
            return 2;
    }
    for (size_t k = 0; k < nb_program_num_outputs(td->p); k++) {
        int64_t r = 0, c = 0;
        nb_program_output_shape(td->p, k, &r, &c);
        if (k == 0)
            snprintf(what, sizeof what, "f");
        else
            snprintf(what, sizeof what, "d/d%.64s", nb_var_name(wrt[k - 1]));
        const int64_t structured =
            nb_program_output_structure(td->p, k) == NB_STRUCT_DENSE ? 0 : nb_program_output_size(td->p, k);
        if (buffer_bytes(what, r, c, structured, real_size, &out_bytes[k]) ||
            reserve_memory(&total, out_bytes[k]) ||
            (k == 0 && reserve_memory(&total, out_bytes[0]))) /* f: an output of both programs */
            return 2;
    }
    return 0;
}

static const char *structure_name(nb_structure s) {
    switch (s) {
    case NB_STRUCT_DIAGONAL:
        return "diagonal";
    case NB_STRUCT_SCALED_IDENTITY:
        return "scaled identity";
    case NB_STRUCT_UNIFORM:
        return "uniform";
    default:
        return "dense";
    }
}

static void describe_program(const char *label, nb_program *p, int verbose) {
    nb_program_stats s;
    nb_program_get_stats(p, &s);
    fprintf(stderr,
            "%s: %zu instructions (%zu fused loops with %zu operations, %zu products), %zu at bind time, "
            "workspace %.1f KiB\n",
            label, s.instructions, s.groups, s.fused_ops, s.products, s.init_instructions,
            (double)s.workspace_bytes / 1024.0);
    if (verbose) {
        char *d = nb_program_describe(p);
        if (d) fputs(d, stderr);
        free(d);
    }
}

int nb_cmd_time(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL},      {"let", true, NULL},     {"wrt", true, NULL},
                            {"size", true, NULL},       {"dtype", true, NULL},   {"threads", true, NULL},
                            {"repeat", true, NULL},     {"seed", true, NULL},    {"dense", false, NULL},
                            {"no-native", false, NULL}, {"verbose", false, NULL}};
    const size_t nopts = sizeof opts / sizeof *opts;
    const char *positional[1];
    size_t npos = 0;
    if (nb_cli_parse_options(argc, argv, opts, nopts, positional, 1, &npos, TIME_USAGE)) return 2;
#define OPT(name) nb_cli_option_value(opts, nopts, name)
    if (OPT("help")) return fputs(time_help, stdout), 0;
    if (npos == 0) return nb_cli_usage_error(TIME_USAGE, "missing EXPR");
    if (!OPT("wrt")) return nb_cli_usage_error(TIME_USAGE, "missing --wrt");
    nb_dtype dtype = NB_F64;
    if (OPT("dtype")) {
        if (strcmp(OPT("dtype"), "f64") == 0)
            dtype = NB_F64;
        else if (strcmp(OPT("dtype"), "f32") == 0)
            dtype = NB_F32;
        else
            return nb_cli_error(NULL, -1, "invalid --dtype value '%s' (expected f32 or f64)", OPT("dtype"));
    }
    uint64_t threads = 1, repeat = 15, seed = 1;
    if (OPT("threads") && nb_cli_parse_u64("threads", OPT("threads"), &threads)) return 2;
    if (OPT("repeat") && nb_cli_parse_u64("repeat", OPT("repeat"), &repeat)) return 2;
    if (OPT("seed") && nb_cli_parse_u64("seed", OPT("seed"), &seed)) return 2;
    if (threads < 1 || threads > 64)
        return nb_cli_error(NULL, -1, "invalid --threads value '%s' (1..64)", OPT("threads"));
    if (repeat < 1 || repeat > 100000)
        return nb_cli_error(NULL, -1, "invalid --repeat value '%s' (1..100000)", OPT("repeat"));
    const int verbose = OPT("verbose") != NULL;
    const unsigned flags =
        (OPT("dense") ? NB_COMPILE_DENSE : 0u) | (OPT("no-native") ? 0u : NB_COMPILE_NATIVE);

    int status = 2;
    char *src = NULL;
    nb_ctx *ctx = NULL;
    nb_expr **wrt = NULL, **vars = NULL, **outs = NULL;
    size_t nwrt = 0, nvars = 0, nout = 0, *in_bytes = NULL, *out_bytes = NULL;
    timed tf = {0}, td = {0};
    if (!(src = nb_cli_read_expr(positional[0]))) goto done;
    if (!(ctx = nb_ctx_new())) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    if (OPT("let") && nb_cli_declare(ctx, OPT("let"))) goto done;
    nb_expr *f = nb_cli_parse(ctx, src);
    if (!f) goto done;
    if (nb_cli_wrt(ctx, src, OPT("let"), OPT("wrt"), &wrt, &nwrt)) goto done;
    if (OPT("size") && nb_cli_bind_sizes(ctx, OPT("size"))) goto done;
    nb_type ft = nb_type_of(f);
    if (ft.kind == NB_MATRIX) {
        nb_cli_error(NULL, -1, "EXPR is a matrix; time a scalar or vector function");
        goto done;
    }
    /* outputs: f, then the derivatives */
    outs = malloc((nwrt + 1) * sizeof *outs);
    if (!outs) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    outs[nout++] = f;
    for (size_t k = 0; k < nwrt; k++) {
        nb_expr *d = ft.kind == NB_SCALAR ? nb_gradient(ctx, f, wrt[k])
                                          : nb_derivative(ctx, f, 1, &wrt[k], NB_NUMERATOR);
        if (!d) {
            nb_cli_error(NULL, -1, "%s", nb_error(ctx));
            goto done;
        }
        outs[nout++] = d;
    }
    /* inputs: the variables f uses, then the listed ones it does not use */
    nvars = variables_of(ctx, f, &vars);
    if (!vars) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    {
        nb_expr **more = realloc(vars, (nvars + nwrt + 1) * sizeof *more);
        if (!more) {
            nb_cli_error(NULL, -1, "out of memory");
            goto done;
        }
        vars = more;
        for (size_t k = 0; k < nwrt; k++) {
            size_t j = 0;
            while (j < nvars && vars[j] != wrt[k])
                j++;
            if (j == nvars) vars[nvars++] = wrt[k];
        }
    }
    tf.p = nb_compile(ctx, 1, outs, nvars, vars, dtype, flags);
    td.p = tf.p ? nb_compile(ctx, nout, outs, nvars, vars, dtype, flags) : NULL;
    if (!tf.p || !td.p) {
        nb_cli_error(NULL, -1, "%s", nb_error(ctx));
        goto done;
    }
    if (plan_program(td.p) || plan_program(tf.p)) goto done;
    if (nb_program_set_threads(tf.p, (int)threads) || nb_program_set_threads(td.p, (int)threads)) {
        nb_cli_error(NULL, -1, "%s",
                     nb_program_error(tf.p)[0] ? nb_program_error(tf.p) : nb_program_error(td.p));
        goto done;
    }
    /* seeded random inputs in [-1, 1], shared by both programs */
    const size_t rs = dtype == NB_F64 ? sizeof(double) : sizeof(float);
    void **in = calloc(nvars + 1, sizeof *in);
    tf.in = td.in = in;
    tf.out = calloc(2, sizeof *tf.out);
    td.out = calloc(nout + 1, sizeof *td.out);
    in_bytes = calloc(nvars + 1, sizeof *in_bytes);
    out_bytes = calloc(nout + 1, sizeof *out_bytes);
    if (!in || !tf.out || !td.out || !in_bytes || !out_bytes) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    if (size_buffers(&tf, &td, nvars, wrt, rs, in_bytes, out_bytes)) goto done;
    uint64_t rng = seed;
    for (size_t i = 0; i < nvars; i++) {
        const size_t n = in_bytes[i] / rs;
        in[i] = malloc(in_bytes[i]);
        if (!in[i]) {
            nb_cli_error(NULL, -1, "out of memory for input '%s'", nb_program_input_name(td.p, i));
            goto done;
        }
        for (size_t e = 0; e < n; e++) {
            double v = 2.0 * ((double)(splitmix(&rng) >> 11) * 0x1.0p-53) - 1.0;
            if (dtype == NB_F64)
                ((double *)in[i])[e] = v;
            else
                ((float *)in[i])[e] = (float)v;
        }
    }
    tf.nout = 1;
    td.nout = nout;
    for (size_t k = 0; k < nout; k++) {
        td.out[k] = malloc(out_bytes[k]);
        if (!td.out[k]) {
            nb_cli_error(NULL, -1, "out of memory for output %zu", k);
            goto done;
        }
    }
    tf.out[0] = malloc(out_bytes[0]); /* f: the first output of both programs */
    if (!tf.out[0]) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    /* report */
    fprintf(stderr, "sizes:");
    for (size_t k = 0; k < nb_program_num_dims(td.p); k++)
        fprintf(stderr, " %s=%lld", nb_program_dim_name(td.p, k), (long long)nb_program_dim_value(td.p, k));
    fprintf(stderr, "%s; %s, %llu thread(s)\n", nb_program_num_dims(td.p) ? "" : " (none)",
            dtype == NB_F64 ? "f64" : "f32", (unsigned long long)threads);
    for (size_t k = 1; k < nout; k++) {
        int64_t r, c;
        nb_program_output_shape(td.p, k, &r, &c);
        fprintf(stderr, "d/d%s: %lld x %lld, %s (%lld entries computed)\n", nb_var_name(wrt[k - 1]), (long long)r,
                (long long)c, structure_name(nb_program_output_structure(td.p, k)),
                (long long)nb_program_output_size(td.p, k));
    }
    describe_program("f", tf.p, verbose);
    describe_program("f+derivative", td.p, verbose);
    if (calibrate(&tf) || calibrate(&td)) {
        nb_cli_error(NULL, -1, "run failed: %s",
                     nb_program_error(tf.p)[0] ? nb_program_error(tf.p) : nb_program_error(td.p));
        goto done;
    }
    tf.samples = malloc(repeat * sizeof *tf.samples);
    td.samples = malloc(repeat * sizeof *td.samples);
    if (!tf.samples || !td.samples) {
        nb_cli_error(NULL, -1, "out of memory");
        goto done;
    }
    /* interleaved samples, so that drift on a noisy machine hits both */
    for (uint64_t r = 0; r < repeat; r++) {
        double s;
        if (run_batch(&tf, tf.batch, &s)) goto run_failed;
        tf.samples[r] = s / (double)tf.batch;
        if (run_batch(&td, td.batch, &s)) goto run_failed;
        td.samples[r] = s / (double)td.batch;
    }
    qsort(tf.samples, repeat, sizeof *tf.samples, cmp_double);
    qsort(td.samples, repeat, sizeof *td.samples, cmp_double);
    double mf = tf.samples[repeat / 2], md = td.samples[repeat / 2];
    if (repeat % 2 == 0) {
        mf = 0.5 * (mf + tf.samples[repeat / 2 - 1]);
        md = 0.5 * (md + td.samples[repeat / 2 - 1]);
    }
    fprintf(stderr, "samples: %llu x %ld runs (f), %llu x %ld runs (f+derivative); min %.4g / %.4g s\n",
            (unsigned long long)repeat, tf.batch, (unsigned long long)repeat, td.batch, tf.samples[0],
            td.samples[0]);
    printf("f: %.6g\n", mf);
    printf("f+derivative: %.6g\n", md);
    printf("ratio: %.4g\n", mf > 0 ? md / mf : 0.0);
    status = 0;
    goto done;
run_failed:
    nb_cli_error(NULL, -1, "run failed: %s",
                 nb_program_error(tf.p)[0] ? nb_program_error(tf.p) : nb_program_error(td.p));
done:
    if (tf.in)
        for (size_t i = 0; i < nvars; i++)
            free(tf.in[i]);
    free(tf.in);
    if (td.out)
        for (size_t k = 0; k < nout; k++)
            free(td.out[k]);
    if (tf.out) free(tf.out[0]);
    free(td.out);
    free(tf.out);
    free(tf.samples);
    free(td.samples);
    free(in_bytes);
    free(out_bytes);
    nb_program_free(tf.p);
    nb_program_free(td.p);
    free(outs);
    free(vars);
    free(wrt);
    nb_ctx_free(ctx);
    free(src);
    return status;
#undef OPT
}
