/* A network is an expression in nabla's IR: dense layers X·W + 1·bᵀ (written
 * X*W + b', a row broadcast over the rows of the batch), an activation between
 * them, and the fused, numerically stable softmax cross-entropy on top.  Its
 * gradients are nb_gradient's; nothing here differentiates by hand. */
#include "nabla_train.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nb_activation_name(nb_activation a) {
    switch (a) {
    case NB_ACT_RELU:
        return "relu";
    case NB_ACT_TANH:
        return "tanh";
    case NB_ACT_SIGMOID:
        return "sigmoid";
    }
    return "?";
}

int nb_net_parse_layers(const char *text, nb_net_shape *shape, char *err, size_t errsize) {
    if (!text || !shape) {
        if (err && errsize) snprintf(err, errsize, "nb_net_parse_layers: NULL argument");
        return -1;
    }
    int n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        long long v = (*p >= '0' && *p <= '9') ? strtoll(p, &end, 10) : 0;
        if (v <= 0 || v > (1 << 24) || (*end != '-' && *end != '\0') || n > NB_MAX_LAYERS) {
            if (err && errsize)
                snprintf(err, errsize,
                         "invalid --layers '%s' (expected sizes like 784-256-10: 2 to %d positive numbers "
                         "separated by '-')",
                         text, NB_MAX_LAYERS + 1);
            return -1;
        }
        shape->sizes[n++] = v;
        if (*end == '\0') break;
        p = end + 1;
    }
    if (n < 2) {
        if (err && errsize)
            snprintf(err, errsize, "invalid --layers '%s' (expected at least inputs-classes)", text);
        return -1;
    }
    shape->nlayers = n - 1;
    return 0;
}

static int shape_ok(const nb_net_shape *s) {
    if (!s || s->nlayers < 1 || s->nlayers > NB_MAX_LAYERS) return 0;
    if (s->activation != NB_ACT_RELU && s->activation != NB_ACT_TANH && s->activation != NB_ACT_SIGMOID)
        return 0;
    for (int i = 0; i <= s->nlayers; i++)
        if (s->sizes[i] <= 0) return 0;
    return 1;
}

/* Appends printf text to the growing string *s (length *len); -1 when out of memory. */
static int append(char **s, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int append(char **s, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *bigger = n < 0 ? NULL : realloc(*s, *len + (size_t)n + 1);
    if (!bigger) return -1;
    va_start(ap, fmt);
    vsnprintf(bigger + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *s = bigger;
    *len += (size_t)n;
    return 0;
}

/* The logits' definitions "H1 = relu(X*W1 + b1'); ...; Z = H1*W2 + b2'". */
static char *logits_source(const nb_net_shape *s) {
    char *text = NULL;
    size_t len = 0;
    int bad = append(&text, &len, "%s", "");
    for (int i = 1; i <= s->nlayers && !bad; i++) {
        char input[16];
        if (i == 1)
            snprintf(input, sizeof input, "X");
        else
            snprintf(input, sizeof input, "H%d", i - 1);
        if (i < s->nlayers)
            bad = append(&text, &len, "H%d = %s(%s*W%d + b%d'); ", i, nb_activation_name(s->activation),
                         input, i, i);
        else
            bad = append(&text, &len, "Z = %s*W%d + b%d'", input, i, i);
    }
    if (bad) free(text);
    return bad ? NULL : text;
}

int nb_net_source(const nb_net_shape *shape, char **model, char **decls) {
    if (!shape_ok(shape) || !model || !decls) return -1;
    *model = logits_source(shape);
    size_t mlen = *model ? strlen(*model) : 0, dlen = 0;
    *decls = NULL;
    int bad = !*model || append(model, &mlen, "; softmax_xent(Z, Y)");
    if (!bad)
        bad = append(decls, &dlen, "X: matrix(B, %lld); Y: matrix(B, %lld)", (long long)shape->sizes[0],
                     (long long)shape->sizes[shape->nlayers]);
    for (int i = 1; i <= shape->nlayers && !bad; i++)
        bad =
            append(decls, &dlen, "; W%d: matrix(%lld, %lld); b%d: vector(%lld)", i,
                   (long long)shape->sizes[i - 1], (long long)shape->sizes[i], i, (long long)shape->sizes[i]);
    if (bad) {
        free(*model);
        free(*decls);
        *model = *decls = NULL;
        return -1;
    }
    return 0;
}

nb_expr *nb_net_build(nb_ctx *ctx, const nb_net_shape *shape, nb_expr **X, nb_expr **Y, nb_expr **logits,
                      nb_expr **params) {
    if (!ctx) return NULL;
    if (!shape_ok(shape) || !X || !Y || !logits || !params) return NULL;
    char *model, *decls;
    if (nb_net_source(shape, &model, &decls)) return NULL;
    char *zsrc = logits_source(shape);
    size_t zlen = zsrc ? strlen(zsrc) : 0;
    nb_expr *loss = NULL;
    if (zsrc && append(&zsrc, &zlen, "; Z") == 0 && nb_declare(ctx, decls) == 0 &&
        (*logits = nb_parse(ctx, zsrc))) {
        *X = nb_lookup(ctx, "X");
        *Y = nb_lookup(ctx, "Y");
        int ok = 1;
        for (int i = 1; i <= shape->nlayers; i++) {
            char name[16];
            snprintf(name, sizeof name, "W%d", i);
            ok &= (params[2 * i - 2] = nb_lookup(ctx, name)) != NULL;
            snprintf(name, sizeof name, "b%d", i);
            ok &= (params[2 * i - 1] = nb_lookup(ctx, name)) != NULL;
        }
        if (ok) loss = nb_softmax_xent(ctx, *logits, *Y);
    }
    free(zsrc);
    free(model);
    free(decls);
    return loss;
}
