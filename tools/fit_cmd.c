/* nabla fit: gradient descent on a model written in nabla's language, by
 * default the paper's ReLU neuron
 *     C(w, b) = 1/N Σᵢ (yᵢ − max(0, w·xᵢ + b))²  =  sum((y - max(0, X*w + b)).^2)/N
 * The derivatives ∂C/∂p are nabla's (printed as `nabla diff` prints them), and
 * each epoch is one run of a compiled program whose outputs are C and the
 * updated parameters p − η·∇ₚC (full-batch gradient descent, as in the paper). */
#include "cli.h"
#include "nabla_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIT_USAGE                                                                                            \
    "nabla fit (--data FILE.csv | --generate N,n [--noise S]) [--model EXPR --params P1,P2 [--let DECLS]] "  \
    "[--lr R] [--epochs E] [--seed S] [--every K] [--no-native]"
#define NEURON_MODEL "sum((y - max(0, X*w + b)).^2)/N"
#define NEURON_DECLS "X: matrix(N, n); y: vector(N); w: vector(n); b: scalar"

static const char fit_help[] =
    "usage: " FIT_USAGE "\n"
    "\n"
    "Fits a model's parameters to data by gradient descent, p ← p − η·∂C/∂p, one\n"
    "step per epoch over all the data.  The model is by default the paper's ReLU\n"
    "neuron, C = " NEURON_MODEL ".  Prints the\n"
    "derivatives it uses (as 'nabla diff' does), the cost of every K-th epoch, and\n"
    "the fitted parameters.\n"
    "\n"
    "  --data FILE     CSV: the features of an example, then its target y\n"
    "  --generate N,n  N examples of n features from a known neuron (X uniform in\n"
    "                  [-1, 1], w and b uniform in [-1, 1]); its weights are printed too\n"
    "  --noise S       add Gaussian noise of standard deviation S to generated y\n"
    "  --model EXPR    the cost, in terms of X (N x n), y (N) and the parameters\n"
    "  --params LIST   the parameters (default w,b)\n"
    "  --let DECLS     types (default '" NEURON_DECLS "')\n"
    "  --lr R          learning rate η (default 0.5)\n"
    "  --epochs E      gradient-descent steps (default 1000)\n"
    "  --seed S        generated data and initial parameters (default 1)\n"
    "  --every K       print the cost every K epochs (default 1)\n"
    "  --no-native     every epoch in nabla's interpreter; by default the pass over X\n"
    "                  (X·w, the rows' residuals, Xᵀ·g) runs as C generated for the\n"
    "                  data's sizes (as in nabla time)\n"
    "\n"
    "example: nabla fit --generate 200,3 --seed 1 --epochs 2000 --every 200\n";

#define OPTION(name) nb_cli_option_value(opts, sizeof opts / sizeof opts[0], name)

static uint64_t next_random(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * (double)(next_random(s) >> 11) * 0x1.0p-53;
}
static double gaussian(uint64_t *s) { /* Box–Muller */
    double u = uniform(s, 0x1.0p-53, 1), v = uniform(s, 0, 1);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

typedef struct {
    int64_t N, n;
    double *X, *y;
    double *w_true, b_true; /* generated data only */
} fit_data;

static int generate(const char *spec, double noise, uint64_t *rng, fit_data *d) {
    long long N, n;
    char tail;
    if (sscanf(spec, "%lld,%lld%c", &N, &n, &tail) != 2 || N < 1 || n < 1 || N > 10000000 || n > 100000 ||
        N * n > 100000000)
        return nb_cli_error(NULL, -1, "invalid --generate '%s' (expected N,n: examples, features)", spec);
    d->N = N;
    d->n = n;
    d->X = malloc((size_t)(N * n) * sizeof *d->X);
    d->y = malloc((size_t)N * sizeof *d->y);
    d->w_true = malloc((size_t)n * sizeof *d->w_true);
    if (!d->X || !d->y || !d->w_true) return nb_cli_error(NULL, -1, "out of memory");
    for (int64_t j = 0; j < n; j++)
        d->w_true[j] = uniform(rng, -1, 1);
    d->b_true = uniform(rng, -1, 1);
    for (int64_t i = 0; i < N; i++) {
        double u = d->b_true;
        for (int64_t j = 0; j < n; j++)
            u += (d->X[i * n + j] = uniform(rng, -1, 1)) * d->w_true[j];
        d->y[i] = (u > 0 ? u : 0) + (noise > 0 ? noise * gaussian(rng) : 0);
    }
    return 0;
}

static int read_csv(const char *path, fit_data *d) {
    nb_table t;
    char err[1024];
    if (nb_csv_read(path, &t, err, sizeof err)) return nb_cli_error(NULL, -1, "%s", err);
    if (t.cols < 2) {
        nb_table_free(&t);
        return nb_cli_error(NULL, -1, "'%s': need features and a target y in each row, found %lld column(s)",
                            path, (long long)t.cols);
    }
    d->N = t.rows;
    d->n = t.cols - 1;
    d->X = malloc((size_t)(d->N * d->n) * sizeof *d->X);
    d->y = malloc((size_t)d->N * sizeof *d->y);
    if (d->X && d->y)
        for (int64_t i = 0; i < d->N; i++) {
            memcpy(d->X + i * d->n, t.data + i * t.cols, (size_t)d->n * sizeof(double));
            d->y[i] = t.data[i * t.cols + d->n];
        }
    nb_table_free(&t);
    return d->X && d->y ? 0 : nb_cli_error(NULL, -1, "out of memory");
}

static void print_values(const char *label, const double *v, int64_t rows, int64_t cols) {
    printf("%s", label);
    if (rows * cols == 1) {
        printf("%.6g\n", v[0]);
        return;
    }
    printf("[");
    for (int64_t k = 0; k < rows * cols; k++)
        printf("%s%.6g", k ? ", " : "", v[k]);
    printf("]\n");
}

/* Prints the model and ∂C/∂p for each parameter, as `nabla diff` does. */
static int print_derivatives(nb_ctx *ctx, nb_expr *C, nb_expr **params, size_t nparams, char **names) {
    char *text = nb_to_string(ctx, C, NB_FMT_UNICODE);
    if (!text) return nb_cli_error(NULL, -1, "out of memory");
    printf("C = %s\n", text);
    free(text);
    for (size_t k = 0; k < nparams; k++) {
        nb_expr *d = nb_derivative(ctx, C, 1, &params[k], NB_NUMERATOR);
        if (!d || !(text = nb_derivative_to_string(ctx, d, NB_FMT_UNICODE)))
            return nb_cli_error(NULL, -1, "differentiating with respect to %s: %s", names[k], nb_error(ctx));
        printf("∂C/∂%s = %s\n", names[k], text);
        free(text);
    }
    return 0;
}

#define MAX_PARAMS 16

int nb_cmd_fit(int argc, char **argv) {
    nb_cli_option opts[] = {{"help", false, NULL}, {"data", true, NULL},  {"generate", true, NULL},
                            {"noise", true, NULL}, {"model", true, NULL}, {"params", true, NULL},
                            {"let", true, NULL},   {"lr", true, NULL},    {"epochs", true, NULL},
                            {"seed", true, NULL},  {"every", true, NULL}, {"no-native", false, NULL}};
    size_t npos;
    if (nb_cli_parse_options(argc, argv, opts, sizeof opts / sizeof opts[0], NULL, 0, &npos, FIT_USAGE))
        return 2;
    if (OPTION("help")) return fputs(fit_help, stdout), 0;
    if (!OPTION("data") == !OPTION("generate"))
        return nb_cli_usage_error(FIT_USAGE, "give exactly one of --data and --generate");
    uint64_t seed = 1, epochs = 1000, every = 1;
    double lr = 0.5, noise = 0;
    if ((OPTION("seed") && nb_cli_parse_u64("seed", OPTION("seed"), &seed)) ||
        (OPTION("epochs") && nb_cli_parse_u64("epochs", OPTION("epochs"), &epochs)) ||
        (OPTION("every") && nb_cli_parse_u64("every", OPTION("every"), &every)) ||
        (OPTION("lr") && nb_cli_parse_double("lr", OPTION("lr"), &lr)) ||
        (OPTION("noise") && nb_cli_parse_double("noise", OPTION("noise"), &noise)))
        return 2;
    if (!(lr > 0))
        return nb_cli_error(NULL, -1, "invalid --lr value '%s' (expected a number > 0)", OPTION("lr"));
    if (noise < 0)
        return nb_cli_error(NULL, -1, "invalid --noise value '%s' (expected >= 0)", OPTION("noise"));
    if (every < 1)
        return nb_cli_error(NULL, -1, "invalid --every value '%s' (expected >= 1)", OPTION("every"));
    if (OPTION("noise") && !OPTION("generate"))
        return nb_cli_usage_error(FIT_USAGE, "--noise needs --generate");

    uint64_t rng = seed;
    fit_data d = {0, 0, NULL, NULL, NULL, 0};
    const char *model = OPTION("model") ? OPTION("model") : NEURON_MODEL;
    const char *let = OPTION("let") ? OPTION("let") : NEURON_DECLS;
    nb_ctx *ctx = nb_ctx_new();
    nb_expr **params = NULL, *C = NULL, *X, *y;
    size_t np = 0;
    nb_program *prog = NULL;
    double *buffers[2][MAX_PARAMS] = {{NULL}}, cost = 0;
    int64_t rows[MAX_PARAMS], cols[MAX_PARAMS];
    char *names[MAX_PARAMS] = {NULL};
    int status = ctx ? 0 : nb_cli_error(NULL, -1, "out of memory");
    if (status == 0)
        status =
            OPTION("generate") ? generate(OPTION("generate"), noise, &rng, &d) : read_csv(OPTION("data"), &d);
    if (status == 0) status = nb_cli_declare(ctx, let);
    if (status == 0 && !(C = nb_cli_parse(ctx, model))) status = 2;
    if (status == 0 && nb_type_of(C).kind != NB_SCALAR)
        status = nb_cli_error(NULL, -1, "the model must be a scalar cost");
    if (status == 0)
        status = nb_cli_wrt(ctx, model, let, OPTION("params") ? OPTION("params") : "w, b", &params, &np);
    if (status == 0 && np > MAX_PARAMS) status = nb_cli_error(NULL, -1, "at most %d parameters", MAX_PARAMS);
    X = nb_lookup(ctx, "X");
    y = nb_lookup(ctx, "y");
    if (status == 0 && (!X || !y))
        status = nb_cli_error(NULL, -1,
                              "the model's declarations must declare the data X (matrix) and y (vector)");
    for (size_t k = 0; status == 0 && k < np; k++) {
        if (!(names[k] = nb_to_string(ctx, params[k], NB_FMT_ASCII)))
            status = nb_cli_error(NULL, -1, "out of memory");
        if (params[k] == X || params[k] == y)
            status = nb_cli_error(NULL, -1, "X and y are data, not parameters");
    }
    if (status == 0) status = print_derivatives(ctx, C, params, np, names);

    /* one program: the cost, and each parameter's gradient-descent update */
    nb_expr *outs[1 + MAX_PARAMS], *ins[3 + MAX_PARAMS];
    if (status == 0) {
        nb_expr *eta = nb_var(ctx, "learning_rate", nb_scalar_type());
        outs[0] = C;
        ins[0] = X, ins[1] = y, ins[2] = eta;
        for (size_t k = 0; k < np; k++) {
            outs[1 + k] = nb_sub(ctx, params[k], nb_mul(ctx, eta, nb_gradient(ctx, C, params[k])));
            ins[3 + k] = params[k];
        }
        if (!(prog = nb_compile(ctx, 1 + np, outs, 3 + np, ins, NB_F64,
                                NB_COMPILE_DENSE | (OPTION("no-native") ? 0u : NB_COMPILE_NATIVE))))
            status = nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    }
    if (status == 0 && (nb_program_bind_input(prog, 0, d.N, d.n) != NB_OK ||
                        nb_program_bind_input(prog, 1, d.N, 1) != NB_OK))
        status = nb_cli_error(NULL, -1, "the data (%lld x %lld and %lld targets) does not fit the model: %s",
                              (long long)d.N, (long long)d.n, (long long)d.N, nb_program_error(prog));
    for (size_t k = 0; status == 0 && k < np; k++) {
        if (nb_program_input_shape(prog, 3 + k, &rows[k], &cols[k]) != NB_OK)
            status = nb_cli_error(NULL, -1, "the size of parameter %s is unknown: %s", names[k],
                                  nb_program_error(prog));
        for (int s = 0; s < 2 && status == 0; s++)
            if (!(buffers[s][k] = malloc((size_t)(rows[k] * cols[k]) * sizeof(double))))
                status = nb_cli_error(NULL, -1, "out of memory");
        for (int64_t e = 0; status == 0 && e < rows[k] * cols[k]; e++)
            buffers[0][k][e] = uniform(&rng, 0, 0.2); /* small and positive: a ReLU starts active */
    }
    /* gradient descent: each run reads set `cur` and writes the other */
    int cur = 0;
    for (uint64_t epoch = 1; status == 0 && epoch <= epochs; epoch++) {
        const void *in[3 + MAX_PARAMS] = {d.X, d.y, &lr};
        void *out[1 + MAX_PARAMS] = {&cost};
        for (size_t k = 0; k < np; k++) {
            in[3 + k] = buffers[cur][k];
            out[1 + k] = buffers[1 - cur][k];
        }
        if (nb_program_run(prog, in, out) != NB_OK) {
            status = nb_cli_error(NULL, -1, "%s", nb_program_error(prog));
            break;
        }
        if (!isfinite(cost)) {
            status = nb_cli_error(NULL, -1, "the cost became %s at epoch %llu (try a smaller --lr)",
                                  isnan(cost) ? "NaN" : "infinite", (unsigned long long)epoch);
            break;
        }
        cur = 1 - cur;
        if (epoch % every == 0 || epoch == epochs)
            printf("epoch %llu  C = %.9g\n", (unsigned long long)epoch, cost);
    }
    if (status == 0) {
        for (size_t k = 0; k < np; k++) {
            char *label = malloc(strlen(names[k]) + sizeof " = ");
            if (!label) break;
            print_values(strcat(strcpy(label, names[k]), " = "), buffers[cur][k], rows[k], cols[k]);
            free(label);
        }
        if (d.w_true) { /* generated: compare with the known neuron when the parameters are w and b */
            print_values("true w = ", d.w_true, d.n, 1);
            print_values("true b = ", &d.b_true, 1, 1);
            double err = -1;
            for (size_t k = 0; k < np; k++) {
                bool is_w = strcmp(names[k], "w") == 0 && rows[k] == d.n && cols[k] == 1;
                bool is_b = strcmp(names[k], "b") == 0 && rows[k] * cols[k] == 1;
                for (int64_t e = 0; (is_w || is_b) && e < rows[k] * cols[k]; e++)
                    err = fmax(err, fabs(buffers[cur][k][e] - (is_w ? d.w_true[e] : d.b_true)));
            }
            if (err >= 0) printf("largest parameter error: %.3g\n", err);
        }
    }
    for (size_t k = 0; k < np && k < MAX_PARAMS; k++) {
        free(buffers[0][k]);
        free(buffers[1][k]);
        free(names[k]);
    }
    nb_program_free(prog);
    free(params);
    nb_ctx_free(ctx);
    free(d.X);
    free(d.y);
    free(d.w_true);
    return status;
}
