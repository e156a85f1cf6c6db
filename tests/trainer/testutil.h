/*
 * testutil.h: the few helpers the trainer I/O tests share: CHECK prints each
 * check with its outcome and counts failures; a scratch folder per test that
 * is removed when everything passed.
 */
#ifndef FT_TEST_TRAINER_UTIL_H
#define FT_TEST_TRAINER_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failures;
static int test_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (cond) {                                                                                \
            printf("ok: ");                                                                        \
        } else {                                                                                   \
            printf("FAIL (%s:%d): ", __FILE__, __LINE__);                                          \
            test_failures++;                                                                       \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static inline void test_tmpdir(char *buf, size_t len, const char *tag)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/ft-test-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
}

static inline void test_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static inline int test_finish(const char *dir)
{
    printf("%d checks, %d failed\n", test_checks, test_failures);
    if (test_failures == 0 && dir && dir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    } else if (dir && dir[0]) {
        printf("scratch files kept in %s\n", dir);
    }
    return test_failures ? 1 : 0;
}

#endif
