/* Helpers shared by the training sources (data.c, train.c); not public. */
#ifndef NB_TRAIN_INTERNAL_H
#define NB_TRAIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Writes the message into err[0..errsize) (when err is not NULL); returns -1. */
int nb_train_fail(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The whole of the file at path (decompressed when it starts with the gzip
 * magic), malloc'd into *data.  Returns 0, or -1 with the reason in err. */
int nb_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t errsize);

#endif
