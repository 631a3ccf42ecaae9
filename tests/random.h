/* Seeded random numbers for the tests (splitmix64): the same sequence on
 * every machine, so that a failing case can be rerun. */
#ifndef NB_TEST_RANDOM_H
#define NB_TEST_RANDOM_H
#include <stdint.h>

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* uniform in 0..n-1 */
static int rnd(uint64_t *s, int n) {
    return (int)(next_u64(s) % (uint64_t)n);
}
/* uniform in [lo, hi) */
static double uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * ((double)(next_u64(s) >> 11) * 0x1.0p-53);
}
#endif
