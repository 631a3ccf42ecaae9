/* The derivation side of `nabla diff`: --steps (nb_derivation) and --wrt
 * naming a definition of the expression (nb_parse_keeping). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int nb_cli_wrt_definitions(nb_ctx *ctx, const char *src, nb_expr **f, const char *list) {
    size_t count = nb_definitions(ctx, NULL, NULL, 0);
    const char **names = malloc((count + 1) * sizeof *names);
    if (!names) return nb_cli_error(NULL, -1, "out of memory");
    nb_definitions(ctx, names, NULL, count);
    size_t keep = 0;
    for (size_t i = 0; i < count; i++) {
        /* a name of the list: delimited by the start, the end, ',' or blanks */
        size_t len = strlen(names[i]);
        bool listed = false;
        for (const char *s = strstr(list, names[i]); s && !listed; s = strstr(s + 1, names[i])) {
            char before = s == list ? ',' : s[-1], after = s[len];
            listed = strchr(", \t\r\n", before) && (after == 0 || strchr(", \t\r\n", after));
        }
        bool repeated = false;
        for (size_t k = 0; k < keep && !repeated; k++) repeated = strcmp(names[k], names[i]) == 0;
        if (listed && !repeated) names[keep++] = names[i];
    }
    int status = 0;
    if (keep && !(*f = nb_parse_keeping(ctx, src, keep, names)))
        status = nb_cli_error(src, nb_error_column(ctx), "%s", nb_error(ctx));
    free(names);
    return status;
}

int nb_cli_print_derivation(nb_ctx *ctx, nb_expr *f, size_t nwrt, nb_expr *const *wrt, nb_layout layout,
                            const char *format, const char *lang) {
    char *text = nb_derivation(ctx, f, nwrt, wrt, layout, format, lang);
    if (!text) return nb_cli_error(NULL, -1, "%s", nb_error(ctx));
    fputs(text, stdout);
    free(text);
    return 0;
}
