/* Timing helpers shared by the one-process benchmarks (header only: each
 * benchmark is one C file built on its own). */
#ifndef NB_BENCH_TIMING_H
#define NB_BENCH_TIMING_H

#include <time.h>

/* seconds on the monotonic clock */
static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort comparison of doubles (for medians) */
static inline int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
