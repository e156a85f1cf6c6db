/*
 * tests/worker/check.h: a minimal TAP-like checker for the worker tests.
 * Each CHECK prints "ok" or "FAIL" with what it checks; main returns
 * check_exit() (1 when anything failed).
 */
#ifndef FT_TESTS_WORKER_CHECK_H
#define FT_TESTS_WORKER_CHECK_H

#include <stdio.h>

static int check_failures; /* CHECKs that failed so far */
static int check_count;    /* CHECKs run so far */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        check_count++;                                                                             \
        if (cond) {                                                                                \
            printf("ok %d - ", check_count);                                                       \
        } else {                                                                                   \
            check_failures++;                                                                      \
            printf("FAIL %d (%s:%d) - ", check_count, __FILE__, __LINE__);                         \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static inline int check_exit(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
