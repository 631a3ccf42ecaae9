/* Minimal test harness: CHECK records a failure with its location and goes
 * on; TEST_MAIN_END prints "N passed, N failed" and sets the exit status. */
#ifndef NB_TEST_H
#define NB_TEST_H
#include <stdio.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) test_passed++;                                                                                       \
        else {                                                                                                         \
            test_failed++;                                                                                             \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                                                    \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                                                           \
    do {                                                                                                               \
        const char *g_ = (got), *w_ = (want);                                                                          \
        CHECK(g_ && strcmp(g_, w_) == 0, "got \"%s\", want \"%s\"", g_ ? g_ : "(null)", w_);                           \
    } while (0)

#define TEST_MAIN_END()                                                                                                \
    do {                                                                                                               \
        printf("%d passed, %d failed\n", test_passed, test_failed);                                                    \
        return test_failed ? 1 : 0;                                                                                    \
    } while (0)
#endif
