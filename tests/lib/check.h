/*
 * check.h: the tiny assertion kit the lib and scheduler unit tests share.
 * CHECK prints what it checks and counts failures; tests exit non-zero when
 * any check failed. Header-only so each test is one self-contained program.
 */
#ifndef FT_TEST_CHECK_H
#define FT_TEST_CHECK_H

#include <stdio.h>

static int check_failures; /* checks that failed so far */
static int check_count;    /* checks run so far */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        check_count++;                                                                             \
        if (cond) {                                                                                \
            printf("ok   ");                                                                       \
        } else {                                                                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            check_failures++;                                                                      \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

static inline int check_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
