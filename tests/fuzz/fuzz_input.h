/* The input format shared by the fuzz targets: the first line is a
 * declaration list for nb_declare (may be empty), the rest an expression
 * program for nb_parse. */
#ifndef NB_FUZZ_INPUT_H
#define NB_FUZZ_INPUT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A NUL-terminated copy of data (free it), split into *decls and *src;
 * NULL when out of memory. */
static char *fuzz_split_input(const uint8_t *data, size_t size, const char **decls, const char **src) {
    char *text = malloc(size + 1);
    if (!text) return NULL;
    memcpy(text, data, size);
    text[size] = '\0';
    char *nl = strchr(text, '\n');
    *decls = "";
    *src = text;
    if (nl) {
        *nl = '\0';
        *decls = text;
        *src = nl + 1;
    }
    return text;
}

#endif
