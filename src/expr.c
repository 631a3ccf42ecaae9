/* The context: arena, hash-consing table, dimension symbols, variables,
 * exact numbers and error reporting. */
#include "nb_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------ */
struct nb_arena_block {
    nb_arena_block *next;
    size_t used, size;
    max_align_t data[];
};

/* Blocks double in size (64 KiB, 128 KiB, … up to 64 MiB), so a context
 * holds few of them and nb_arena_owns stays cheap. */
#define ARENA_FIRST_BLOCK ((size_t)1 << 16)
#define ARENA_LARGEST_BLOCK ((size_t)1 << 26)

void *nb_arena_alloc(nb_arena *a, size_t size) {
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    nb_arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t cap = b ? (b->size < ARENA_LARGEST_BLOCK ? 2 * b->size : b->size) : ARENA_FIRST_BLOCK;
        if (cap < size) cap = size;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->size = cap;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

/* Whether p points into one of the arena's blocks.  Compares addresses as
 * integers, so a pointer from elsewhere is never dereferenced. */
bool nb_arena_owns(const nb_arena *a, const void *p) {
    uintptr_t at = (uintptr_t)p;
    for (const nb_arena_block *b = a->head; b; b = b->next) {
        uintptr_t start = (uintptr_t)b->data;
        if (at >= start && at < start + b->used) return true;
    }
    return false;
}

void nb_arena_free(nb_arena *a) {
    for (nb_arena_block *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->head = NULL;
}

/* ---- context and errors ----------------------------------------------- */
nb_ctx *nb_ctx_new(void) {
    nb_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->nbuckets = 1024;
    ctx->buckets = calloc(ctx->nbuckets, sizeof *ctx->buckets);
    if (!ctx->buckets) {
        free(ctx);
        return NULL;
    }
    ctx->error_column = -1;
    return ctx;
}

void nb_ctx_free(nb_ctx *ctx) {
    if (!ctx) return;
    for (size_t i = 0; i < ctx->ndims; i++) free(ctx->dims[i].name);
    for (size_t i = 0; i < ctx->nvars; i++) free(ctx->vars[i].value.data);
    free(ctx->dims);
    free(ctx->vars);
    free(ctx->nodes);
    free(ctx->buckets);
    free(ctx->memo);
    nb_arena_free(&ctx->arena);
    free(ctx);
}

int nb_set_error(nb_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    return -1;
}

const char *nb_error(const nb_ctx *ctx) { return ctx ? ctx->error : "no context (NULL nb_ctx)"; }
int nb_error_column(const nb_ctx *ctx) { return ctx ? ctx->error_column : -1; }
void nb_clear_error(nb_ctx *ctx) {
    if (!ctx) return;
    ctx->error[0] = 0;
    ctx->error_column = -1;
}

/* ---- argument checks of the public functions ---------------------------- */
bool nb_owns(const nb_ctx *ctx, const nb_node *e) {
    return nb_arena_owns(&ctx->arena, e) && e->id < ctx->nnodes && ctx->nodes[e->id] == e;
}

bool nb_api_exprs(nb_ctx *ctx, const char *fn, size_t n, const nb_node *const *e) {
    if (!ctx) return false;
    for (size_t i = 0; i < n; i++) {
        if (!e[i]) {
            /* a NULL from a failed builder keeps that builder's message */
            if (!ctx->error[0]) nb_set_error(ctx, "%s: expression argument %zu is NULL", fn, i + 1);
            return false;
        }
        if (!nb_owns(ctx, e[i])) {
            nb_set_error(ctx, "%s: expression argument %zu belongs to another (or a freed) context", fn, i + 1);
            return false;
        }
    }
    return true;
}

bool nb_api_array(nb_ctx *ctx, const char *fn, size_t n, nb_expr *const *e) {
    if (!ctx) return false;
    if (n && !e) {
        nb_set_error(ctx, "%s: the array of %zu expressions is NULL", fn, n);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!nb_api_exprs(ctx, fn, 1, (const nb_node *const *)&e[i])) return false;
    return true;
}

bool nb_api_layout(nb_ctx *ctx, const char *fn, nb_layout layout) {
    if (!ctx) return false;
    if (layout != NB_NUMERATOR && layout != NB_DENOMINATOR) nb_set_error(ctx, "%s: invalid layout %d", fn, (int)layout);
    return layout == NB_NUMERATOR || layout == NB_DENOMINATOR;
}

bool nb_api_string(nb_ctx *ctx, const char *fn, const char *s, const char *what) {
    if (!ctx) return false;
    if (!s) nb_set_error(ctx, "%s: %s is NULL", fn, what);
    return s != NULL;
}

/* ---- exact numbers ---------------------------------------------------- */
static int64_t gcd64(int64_t a, int64_t b) {
    uint64_t x = a < 0 ? -(uint64_t)a : (uint64_t)a, y = b < 0 ? -(uint64_t)b : (uint64_t)b;
    while (y) {
        uint64_t t = x % y;
        x = y;
        y = t;
    }
    return (int64_t)x; /* gcd(num, den) with den >= 1 is at most den */
}

static nb_int gcd128(nb_int a, nb_int b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        nb_int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Exact numbers stay below 2^125 in magnitude, so that a sum of two cannot
 * overflow nb_int; products are checked by bit length. */
#define EXACT_BITS 125
static int bit_length(nb_int v) {
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    uint64_t high = (uint64_t)(u >> 64), low = (uint64_t)u;
    return high ? 128 - __builtin_clzll(high) : low ? 64 - __builtin_clzll(low) : 0;
}
static bool exact_range(nb_int v) { return bit_length(v) <= EXACT_BITS; }
static bool fits_int64(nb_int v) { return v >= INT64_MIN && v <= INT64_MAX; }

/* num/den reduced, den > 0; inexact when out of range.  The common small
 * case stays in 64-bit arithmetic. */
static nb_number make_exact(nb_int num, nb_int den) {
    if (den < 0) num = -num, den = -den;
    nb_int g = den == 1 ? 1 : fits_int64(num) && fits_int64(den) ? (nb_int)gcd64((int64_t)num, (int64_t)den) : gcd128(num, den);
    if (g > 1) num /= g, den /= g;
    if (!exact_range(num) || !exact_range(den)) return nb_number_double((double)num / (double)den);
    double val = fits_int64(num) && fits_int64(den) ? (double)(int64_t)num / (double)(int64_t)den : (double)num / (double)den;
    nb_number n = {true, num, den, val};
    return n;
}

nb_number nb_number_double(double v) {
    nb_number n = {false, 0, 1, v};
    return n;
}

nb_number nb_number_rational(int64_t num, int64_t den) {
    if (den == 0) return nb_number_double(num == 0 ? NAN : (num > 0 ? INFINITY : -INFINITY));
    return make_exact(num, den);
}

nb_number nb_number_int(int64_t v) {
    nb_number n = {true, v, 1, (double)v};
    return n;
}

/* a·b when it stays in the exact range. */
static bool exact_product(nb_int a, nb_int b, nb_int *out) {
    if (bit_length(a) + bit_length(b) > EXACT_BITS) return false;
    *out = a * b;
    return true;
}

nb_number nb_number_add(nb_number a, nb_number b) {
    nb_int t1, t2, den;
    if (a.exact && b.exact && exact_product(a.num, b.den, &t1) && exact_product(b.num, a.den, &t2) &&
        exact_product(a.den, b.den, &den)) {
        nb_number r = make_exact(t1 + t2, den);
        if (r.exact) return r;
    }
    return nb_number_double(a.val + b.val);
}

nb_number nb_number_mul(nb_number a, nb_number b) {
    nb_int num, den;
    if (a.exact && b.exact && exact_product(a.num, b.num, &num) && exact_product(a.den, b.den, &den)) {
        nb_number r = make_exact(num, den);
        if (r.exact) return r;
    }
    return nb_number_double(a.val * b.val);
}

nb_number nb_number_inverse(nb_number a) {
    if (a.exact && a.num != 0) return make_exact(a.den, a.num);
    return nb_number_double(1 / a.val);
}

/* base^k for an exact base and integer k >= 0, by squaring; inexact once it
 * leaves the exact range. */
static nb_number int_power(nb_number base, nb_int k) {
    if (base.den == 1 && (base.num == 1 || base.num == -1)) /* (±1)^k: the parity of k */
        return nb_number_int(base.num == -1 && (k & 1) ? -1 : 1);
    nb_number r = nb_number_int(1), b = base;
    for (; k && r.exact; k >>= 1) {
        if (k & 1) r = nb_number_mul(r, b);
        if (k > 1) b = nb_number_mul(b, b);
    }
    return r;
}

/* The exact q-th root of v >= 0 (q >= 2), if v is a perfect q-th power. */
static bool int_root(nb_int v, nb_int q, nb_int *root) {
    if (q > 128) return v == 0 || v == 1 ? (*root = v, true) : false;
    nb_int r = (nb_int)llround(pow((double)v, 1.0 / (double)q));
    for (nb_int c = r > 0 ? r - 1 : 0; c <= r + 1; c++) {
        nb_number p = int_power(nb_number_int((int64_t)c), q);
        if (p.exact && p.num == v) return *root = c, true;
    }
    return false;
}

bool nb_number_power(nb_number base, nb_number e, nb_number *out) {
    if (!base.exact || !e.exact || (base.num == 0 && e.num < 0)) return false;
    nb_number b = base;
    if (e.den != 1) { /* base^(p/q) = (q-th root of base)^p, for a root of a non-negative base */
        nb_int num, den;
        if (base.num < 0 || !int_root(base.num, e.den, &num) || !int_root(base.den, e.den, &den)) return false;
        b = make_exact(num, den);
    }
    nb_number r = int_power(b, e.num < 0 ? -e.num : e.num);
    if (!r.exact) return false;
    *out = e.num < 0 ? nb_number_inverse(r) : r;
    return true;
}

nb_number nb_number_neg(nb_number a) { return nb_number_mul(a, nb_number_int(-1)); }
bool nb_number_is(nb_number a, int64_t v) { return a.exact ? (a.den == 1 && a.num == (nb_int)v) : a.val == (double)v; }
bool nb_number_is_int(nb_number a) { return a.exact ? a.den == 1 : (a.val == floor(a.val) && fabs(a.val) < 1e15); }

/* ---- dimensions and types --------------------------------------------- */
nb_dim nb_dim_symbol(nb_ctx *ctx, const char *name) {
    if (!nb_api_string(ctx, __func__, name, "the name")) return 0;
    if (!*name) return nb_set_error(ctx, "nb_dim_symbol: empty name"), 0;
    for (size_t i = 0; i < ctx->ndims; i++)
        if (strcmp(ctx->dims[i].name, name) == 0) return -(nb_dim)(i + 1);
    if (ctx->ndims == ctx->cap_dims) {
        size_t cap = ctx->cap_dims ? 2 * ctx->cap_dims : 8;
        nb_dimsym *d = realloc(ctx->dims, cap * sizeof *d);
        if (!d) return 0;
        ctx->dims = d;
        ctx->cap_dims = cap;
    }
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (!copy) return 0;
    memcpy(copy, name, len);
    ctx->dims[ctx->ndims].name = copy;
    ctx->dims[ctx->ndims].bound = 0;
    return -(nb_dim)(++ctx->ndims);
}

const char *nb_dim_name(const nb_ctx *ctx, nb_dim d, char *buf, size_t size) {
    if (d < 0 && ctx && (size_t)(-d) <= ctx->ndims) return ctx->dims[-d - 1].name;
    if (d > 0 || !ctx) snprintf(buf, size, "%lld", (long long)d);
    else snprintf(buf, size, "?");
    return buf;
}

int64_t nb_dim_value(const nb_ctx *ctx, nb_dim d) {
    if (d > 0) return d;
    if (d < 0 && (size_t)(-d) <= ctx->ndims) {
        const nb_dimsym *s = &ctx->dims[-d - 1];
        return s->bound ? s->bound : nb_dim_product_value(ctx, s->name); /* "m·n" (kron.c) */
    }
    return 0;
}

int nb_bind_dim(nb_ctx *ctx, nb_dim d, int64_t size) {
    char name[64];
    if (!ctx) return -1;
    if (size <= 0) return nb_set_error(ctx, "dimension %s must be positive, got %lld", nb_dim_name(ctx, d, name, sizeof name), (long long)size);
    /* sizes up to 2^31 - 1, so that the entry count of any matrix fits in int64 */
    if (size > INT32_MAX)
        return nb_set_error(ctx, "dimension %s is %lld, more than the largest size %d", nb_dim_name(ctx, d, name, sizeof name),
                            (long long)size, INT32_MAX);
    if (d > 0) {
        if (d != size) return nb_set_error(ctx, "size %lld does not match the declared %lld", (long long)size, (long long)d);
        return 0;
    }
    if (d == 0 || (size_t)(-d) > ctx->ndims) return nb_set_error(ctx, "unknown dimension");
    nb_dimsym *s = &ctx->dims[-d - 1];
    if (s->bound && s->bound != size)
        return nb_set_error(ctx, "dimension %s is %lld elsewhere but %lld here", s->name, (long long)s->bound, (long long)size);
    s->bound = size;
    return 0;
}

void nb_unbind_all(nb_ctx *ctx) {
    if (!ctx) return;
    for (size_t i = 0; i < ctx->ndims; i++) ctx->dims[i].bound = 0;
    for (size_t i = 0; i < ctx->nvars; i++) {
        free(ctx->vars[i].value.data);
        ctx->vars[i].value.data = NULL;
    }
}

nb_type nb_scalar_type(void) { return (nb_type){NB_SCALAR, 1, 1}; }
nb_type nb_vector_type(nb_dim n) { return (nb_type){NB_VECTOR, n, 1}; }
nb_type nb_row_type(nb_dim n) { return (nb_type){NB_ROW, 1, n}; }
nb_type nb_matrix_type(nb_dim rows, nb_dim cols) { return (nb_type){NB_MATRIX, rows, cols}; }
nb_type nb_type_of(const nb_expr *e) { return e ? e->type : (nb_type){NB_SCALAR, 0, 0}; }
bool nb_type_eq(nb_type a, nb_type b) { return a.kind == b.kind && a.rows == b.rows && a.cols == b.cols; }
nb_dim nb_type_length(nb_type t) { return t.kind == NB_ROW ? t.cols : t.rows; }

const char *nb_type_str(const nb_ctx *ctx, nb_type t, char *buf, size_t size) {
    char rb[24], cb[24];
    if (!buf || !size) return "";
    const char *r = nb_dim_name(ctx, t.rows, rb, sizeof rb), *c = nb_dim_name(ctx, t.cols, cb, sizeof cb);
    switch (t.kind) {
    case NB_SCALAR: snprintf(buf, size, "scalar"); break;
    case NB_VECTOR: snprintf(buf, size, "vector(%s)", r); break;
    case NB_ROW: snprintf(buf, size, "row(%s)", c); break;
    case NB_MATRIX: snprintf(buf, size, "matrix(%s, %s)", r, c); break;
    default: snprintf(buf, size, "(invalid type kind %d)", (int)t.kind); break;
    }
    return buf;
}

/* ---- hash-consing ------------------------------------------------------ */
static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

static bool grow_table(nb_ctx *ctx) {
    size_t n = ctx->nbuckets * 2;
    nb_node **b = calloc(n, sizeof *b);
    if (!b) return false;
    for (size_t i = 0; i < ctx->nbuckets; i++) {
        for (nb_node *e = ctx->buckets[i], *next; e; e = next) {
            next = e->hash_next;
            e->hash_next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(ctx->buckets);
    ctx->buckets = b;
    ctx->nbuckets = n;
    return true;
}

/* Attributes compare by value: VAR names by string, numbers by exact value. */
static bool same_attr(const nb_node *e, nb_op op, const void *attr, size_t attr_size) {
    if (!attr_size) return true;
    if (op == NB_OP_VAR) return strcmp(e->a.name, *(const char *const *)attr) == 0;
    if (op == NB_OP_CONST) {
        const nb_number *c = attr;
        if (c->exact != e->a.c.exact) return false;
        return c->exact ? (c->num == e->a.c.num && c->den == e->a.c.den)
                        : memcmp(&c->val, &e->a.c.val, sizeof c->val) == 0;
    }
    return memcmp(&e->a, attr, attr_size) == 0;
}

nb_node *nb_make(nb_ctx *ctx, nb_op op, nb_type type, size_t nargs, nb_node *const *args, const void *attr,
                 size_t attr_size) {
    if (ctx->oom) return NULL;
    for (size_t i = 0; i < nargs; i++)
        if (!args[i]) return NULL;
    if (nargs > UINT16_MAX) {
        nb_set_error(ctx, "too many operands (%zu)", nargs);
        return NULL;
    }
    uint64_t h = mix(op, (uint64_t)type.kind);
    h = mix(h, (uint64_t)type.rows);
    h = mix(h, (uint64_t)type.cols);
    for (size_t i = 0; i < nargs; i++) h = mix(h, args[i]->id);
    if (op == NB_OP_VAR) h = hash_bytes(h, *(const char *const *)attr, strlen(*(const char *const *)attr));
    else if (op == NB_OP_CONST) {
        const nb_number *c = attr;
        h = c->exact ? mix(mix(mix(h, (uint64_t)c->num), (uint64_t)(c->num >> 64)), (uint64_t)c->den)
                     : hash_bytes(h, &c->val, sizeof c->val);
    } else if (attr_size) h = hash_bytes(h, attr, attr_size);

    for (nb_node *e = ctx->buckets[h & (ctx->nbuckets - 1)]; e; e = e->hash_next) {
        if (e->hash != h || e->op != op || e->nargs != nargs || !nb_type_eq(e->type, type)) continue;
        if (nargs && memcmp(e->args, args, nargs * sizeof *args) != 0) continue;
        if (same_attr(e, op, attr, attr_size)) return e;
    }
    if (ctx->nnodes == ctx->cap_nodes) {
        size_t cap = ctx->cap_nodes ? 2 * ctx->cap_nodes : 1024;
        nb_node **nodes = realloc(ctx->nodes, cap * sizeof *nodes);
        if (!nodes) goto oom;
        ctx->nodes = nodes;
        ctx->cap_nodes = cap;
    }
    if (ctx->nnodes >= UINT32_MAX) goto oom;
    nb_node *e = nb_arena_alloc(&ctx->arena, sizeof *e + nargs * sizeof *args);
    if (!e) goto oom;
    memset(e, 0, sizeof *e);
    e->id = (uint32_t)ctx->nnodes;
    e->op = (uint16_t)op;
    e->nargs = (uint16_t)nargs;
    e->type = type;
    e->hash = h;
    if (nargs) memcpy(e->args, args, nargs * sizeof *args);
    if (op == NB_OP_VAR) {
        const char *name = *(const char *const *)attr;
        size_t len = strlen(name) + 1;
        char *copy = nb_arena_alloc(&ctx->arena, len);
        if (!copy) goto oom;
        memcpy(copy, name, len);
        e->a.name = copy;
    } else if (attr_size) memcpy(&e->a, attr, attr_size);
    ctx->nodes[ctx->nnodes++] = e;
    size_t slot = h & (ctx->nbuckets - 1);
    e->hash_next = ctx->buckets[slot];
    ctx->buckets[slot] = e;
    if (ctx->nnodes > ctx->nbuckets) grow_table(ctx);
    return e;
oom:
    ctx->oom = true;
    nb_set_error(ctx, "out of memory");
    return NULL;
}

/* ---- memo of recursive rewrites ------------------------------------------ */
static size_t memo_slot(const nb_memo_slot *memo, size_t mask, int kind, const nb_node *arg, int64_t i, int64_t j) {
    size_t h = (size_t)mix(mix(mix(arg->hash, (uint64_t)kind), (uint64_t)i), (uint64_t)j) & mask;
    while (memo[h].arg && !(memo[h].arg == arg && memo[h].kind == kind && memo[h].i == i && memo[h].j == j))
        h = (h + 1) & mask;
    return h;
}

nb_node *nb_memo_get(nb_ctx *ctx, int kind, const nb_node *arg, int64_t i, int64_t j) {
    if (!ctx->memo) return NULL;
    nb_memo_slot *s = &ctx->memo[memo_slot(ctx->memo, ctx->memo_cap - 1, kind, arg, i, j)];
    return s->arg ? s->result : NULL;
}

nb_node *nb_memo_put(nb_ctx *ctx, int kind, const nb_node *arg, int64_t i, int64_t j, nb_node *result) {
    if (!result) return NULL;
    if (2 * (ctx->memo_count + 1) > ctx->memo_cap) {
        size_t cap = ctx->memo_cap ? 2 * ctx->memo_cap : 256;
        nb_memo_slot *m = calloc(cap, sizeof *m);
        if (!m) return result; /* the memo is an optimisation only */
        for (size_t k = 0; k < ctx->memo_cap; k++) {
            const nb_memo_slot *o = &ctx->memo[k];
            if (o->arg) m[memo_slot(m, cap - 1, o->kind, o->arg, o->i, o->j)] = *o;
        }
        free(ctx->memo);
        ctx->memo = m;
        ctx->memo_cap = cap;
    }
    size_t h = memo_slot(ctx->memo, ctx->memo_cap - 1, kind, arg, i, j);
    if (!ctx->memo[h].arg) ctx->memo_count++;
    ctx->memo[h] = (nb_memo_slot){arg, kind, i, j, result};
    return result;
}

/* ---- leaves ------------------------------------------------------------ */
nb_node *nb_const(nb_ctx *ctx, nb_number c, nb_type t) { return nb_make(ctx, NB_OP_CONST, t, 0, NULL, &c, sizeof c); }
nb_node *nb_zero(nb_ctx *ctx, nb_type t) { return nb_const(ctx, nb_number_int(0), t); }
nb_node *nb_ones(nb_ctx *ctx, nb_type t) { return nb_const(ctx, nb_number_int(1), t); }
bool nb_is_const(const nb_node *e, int64_t v) { return e && e->op == NB_OP_CONST && nb_number_is(e->a.c, v); }
bool nb_is_zero(const nb_node *e) { return nb_is_const(e, 0); }

nb_expr *nb_num(nb_ctx *ctx, double v) {
    if (!ctx) return NULL;
    if (!isfinite(v)) return nb_set_error(ctx, "nb_num: %g is not a finite number", v), NULL;
    if (v == floor(v) && fabs(v) < 9e15) return nb_const(ctx, nb_number_int((int64_t)v), nb_scalar_type());
    return nb_const(ctx, nb_number_double(v), nb_scalar_type());
}

nb_expr *nb_rational(nb_ctx *ctx, int64_t num, int64_t den) {
    if (!ctx) return NULL;
    if (den == 0) {
        nb_set_error(ctx, "division by zero in the constant %lld/0", (long long)num);
        return NULL;
    }
    return nb_const(ctx, nb_number_rational(num, den), nb_scalar_type());
}

static bool valid_dim(const nb_ctx *ctx, nb_dim d) { return d > 0 || (d < 0 && (size_t)(-d) <= ctx->ndims); }

static bool api_dim(nb_ctx *ctx, const char *fn, nb_dim d) {
    if (!ctx) return false;
    if (!valid_dim(ctx, d)) nb_set_error(ctx, "%s: %lld is neither a size nor a dimension symbol of this context", fn, (long long)d);
    return valid_dim(ctx, d);
}

nb_expr *nb_dimval(nb_ctx *ctx, nb_dim d) {
    if (!api_dim(ctx, __func__, d)) return NULL;
    if (d > 0) return nb_const(ctx, nb_number_int(d), nb_scalar_type());
    return nb_make(ctx, NB_OP_DIMVAL, nb_scalar_type(), 0, NULL, &d, sizeof d);
}

nb_expr *nb_identity(nb_ctx *ctx, nb_dim n) {
    if (!api_dim(ctx, __func__, n)) return NULL;
    return nb_make(ctx, NB_OP_IDENTITY, nb_matrix_type(n, n), 0, NULL, &n, sizeof n);
}

static nb_binding *find_binding(nb_ctx *ctx, const char *name) {
    for (size_t i = 0; i < ctx->nvars; i++)
        if (strcmp(ctx->vars[i].var->a.name, name) == 0) return &ctx->vars[i];
    return NULL;
}

nb_expr *nb_lookup(nb_ctx *ctx, const char *name) {
    if (!nb_api_string(ctx, __func__, name, "the name")) return NULL;
    nb_binding *b = find_binding(ctx, name);
    return b ? b->var : NULL;
}

nb_expr *nb_var(nb_ctx *ctx, const char *name, nb_type t) {
    char a[64], b[64];
    if (!ctx) return NULL;
    if (!name || !*name) {
        nb_set_error(ctx, "a variable needs a name");
        return NULL;
    }
    if ((t.kind != NB_SCALAR && t.kind != NB_VECTOR && t.kind != NB_ROW && t.kind != NB_MATRIX) ||
        !valid_dim(ctx, t.rows) || !valid_dim(ctx, t.cols) || (t.kind == NB_SCALAR && (t.rows != 1 || t.cols != 1)) ||
        (t.kind == NB_VECTOR && t.cols != 1) || (t.kind == NB_ROW && t.rows != 1)) {
        nb_set_error(ctx, "invalid type for variable '%s'", name);
        return NULL;
    }
    nb_binding *old = find_binding(ctx, name);
    if (old) {
        if (nb_type_eq(old->var->type, t)) return old->var;
        nb_set_error(ctx, "'%s' is declared as %s, not %s", name, nb_type_str(ctx, old->var->type, a, sizeof a),
                     nb_type_str(ctx, t, b, sizeof b));
        return NULL;
    }
    if (ctx->nvars == ctx->cap_vars) {
        size_t cap = ctx->cap_vars ? 2 * ctx->cap_vars : 16;
        nb_binding *v = realloc(ctx->vars, cap * sizeof *v);
        if (!v) {
            nb_set_error(ctx, "out of memory");
            return NULL;
        }
        ctx->vars = v;
        ctx->cap_vars = cap;
    }
    nb_node *e = nb_make(ctx, NB_OP_VAR, t, 0, NULL, &name, sizeof name);
    if (!e) return NULL;
    ctx->vars[ctx->nvars++] = (nb_binding){e, {0, 0, NULL}};
    return e;
}

/* ---- values -------------------------------------------------------------- */
int nb_set_value(nb_ctx *ctx, const char *name, int64_t rows, int64_t cols, const double *data) {
    char a[64];
    if (!nb_api_string(ctx, __func__, name, "the name")) return -1;
    if (rows > 0 && cols > 0 && rows > INT64_MAX / cols / (int64_t)sizeof(double))
        return nb_set_error(ctx, "nb_set_value: %lld x %lld entries is too large", (long long)rows, (long long)cols);
    if (!data && rows > 0 && cols > 0) return nb_set_error(ctx, "nb_set_value: the data of '%s' is NULL", name);
    nb_binding *b = find_binding(ctx, name);
    if (!b) return nb_set_error(ctx, "'%s' is not a variable of the expression", name);
    nb_type t = b->var->type;
    int64_t want_rows = rows, want_cols = cols;
    /* A vector may be given as a column or a row of numbers. */
    if (t.kind == NB_VECTOR && rows == 1 && cols != 1) want_rows = cols, want_cols = 1;
    if (t.kind == NB_ROW && cols == 1 && rows != 1) want_cols = rows, want_rows = 1;
    if (rows <= 0 || cols <= 0 || (t.kind == NB_SCALAR && (rows != 1 || cols != 1)) ||
        (t.kind == NB_VECTOR && want_cols != 1) || (t.kind == NB_ROW && want_rows != 1))
        return nb_set_error(ctx, "'%s' is %s but the value given is %lldx%lld", name, nb_type_str(ctx, t, a, sizeof a),
                            (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(data[i])) return nb_set_error(ctx, "the value of '%s' contains %g", name, data[i]);
    if ((t.rows < 0 || t.rows == want_rows) && (t.cols < 0 || t.cols == want_cols)) {
        if (nb_bind_dim(ctx, t.rows, want_rows) || nb_bind_dim(ctx, t.cols, want_cols)) return -1;
    } else {
        return nb_set_error(ctx, "'%s' is %s but the value given is %lldx%lld", name, nb_type_str(ctx, t, a, sizeof a),
                            (long long)rows, (long long)cols);
    }
    size_t n = (size_t)(rows * cols);
    double *copy = malloc(n * sizeof *copy);
    if (!copy) return nb_set_error(ctx, "out of memory");
    memcpy(copy, data, n * sizeof *copy);
    free(b->value.data);
    b->value = (nb_matrix){want_rows, want_cols, copy};
    return 0;
}

void nb_matrix_free(nb_matrix *m) {
    if (!m) return;
    free(m->data);
    m->data = NULL;
}
