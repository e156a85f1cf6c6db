/*
 * test_util.c: errors, time parsing, strings and files of libftcore, used
 * the way programs use them.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "ft/common.h"
#include "check.h"

static void test_errors(void)
{
    ft_err_t err;

    for (int i = 0; i < FT_ERR__COUNT; i++) {
        const char *n = ft_errcode_name((ft_errcode_t)i);
        CHECK(ft_errcode_from_name(n) == (ft_errcode_t)i, "error code %d round-trips as '%s'", i,
              n);
    }
    CHECK(strcmp(ft_errcode_name(FT_EUNSAT), "unsatisfiable") == 0, "FT_EUNSAT is 'unsatisfiable'");
    CHECK(ft_errcode_from_name("nope") == FT_ERR__COUNT, "unknown name gives FT_ERR__COUNT");
    CHECK(ft_errcode_from_name(NULL) == FT_ERR__COUNT, "NULL name gives FT_ERR__COUNT");
    ft_err_set(&err, FT_ENOTFOUND, "no job %d", 42);
    CHECK(err.code == FT_ENOTFOUND && strcmp(err.msg, "no job 42") == 0, "ft_err_set formats: '%s'",
          err.msg);
    ft_err_clear(&err);
    CHECK(err.code == FT_OK && err.msg[0] == '\0', "ft_err_clear empties the error");
}

static void test_time(void)
{
    int64_t t = 0, now = 1796019311; /* 2026-11-30T06:15:11Z */
    char buf[32];

    ft_fmt_time(now, buf, sizeof(buf));
    CHECK(strcmp(buf, "2026-11-30T06:15:11Z") == 0, "ft_fmt_time gives '%s'", buf);
    CHECK(ft_parse_time("2026-11-30T06:15:11Z", now, &t) == 0 && t == now, "parse full ISO time");
    CHECK(ft_parse_time("2026-11-30", now, &t) == 0 && t == now - (6 * 3600 + 15 * 60 + 11),
          "parse a date");
    CHECK(ft_parse_time("now", now, &t) == 0 && t == now, "parse 'now'");
    CHECK(ft_parse_time("-7d", now, &t) == 0 && t == now - 7 * 86400, "parse '-7d'");
    CHECK(ft_parse_time("-12h", now, &t) == 0 && t == now - 12 * 3600, "parse '-12h'");
    CHECK(ft_parse_time("1700000000", now, &t) == 0 && t == 1700000000, "parse unix seconds");
    CHECK(ft_parse_time("2026-02-31", now, &t) < 0, "refuse 2026-02-31");
    CHECK(ft_parse_time("2026-11-30T25:00:00Z", now, &t) < 0, "refuse hour 25");
    CHECK(ft_parse_time("-7x", now, &t) < 0, "refuse unknown unit");
    CHECK(ft_parse_time("", now, &t) < 0, "refuse empty");
    CHECK(ft_parse_time("2026-11-30junk", now, &t) < 0, "refuse trailing junk");
    CHECK(ft_now_ms() > 1700000000000LL, "ft_now_ms is wall time in ms");
    CHECK(ft_mono_ms() >= 0, "ft_mono_ms is non-negative");
}

static void test_strings(void)
{
    char small[4];
    const char *s;
    char *a;

    CHECK(ft_strlcpy(small, "abcdef", sizeof(small)) == 6 && strcmp(small, "abc") == 0,
          "ft_strlcpy cuts and terminates");
    s = ft_sanitize("a\nb\x01", 64);
    CHECK(strcmp(s, "a?b?") == 0, "ft_sanitize replaces control characters: '%s'", s);
    s = ft_sanitize("abcdefghij", 4);
    CHECK(strcmp(s, "abcd...") == 0, "ft_sanitize cuts long input: '%s'", s);
    {
        const char *s1 = ft_sanitize("first", 64), *s2 = ft_sanitize("second", 64);
        CHECK(strcmp(s1, "first") == 0 && strcmp(s2, "second") == 0,
              "two ft_sanitize results can be used together");
    }
    s = ft_sanitize("\xc3\xa9\xc3\xa9", 3);
    CHECK(strcmp(s, "\xc3\xa9...") == 0, "ft_sanitize does not split a UTF-8 sequence");
    a = ft_asprintf("%s-%d", "x", 7);
    CHECK(a && strcmp(a, "x-7") == 0, "ft_asprintf formats");
    free(a);
}

static void test_files(void)
{
    char dir[] = "/tmp/ft-test-util-XXXXXX";
    char *path, *deep, *buf;
    size_t len = 0;
    ft_err_t err;
    struct stat st;

    CHECK(mkdtemp(dir) != NULL, "make a temp dir");
    deep = ft_asprintf("%s/a/b/c", dir);
    CHECK(ft_mkdir_p(deep, &err) == 0 && stat(deep, &st) == 0 && S_ISDIR(st.st_mode),
          "ft_mkdir_p makes nested dirs");
    CHECK(ft_mkdir_p(deep, &err) == 0, "ft_mkdir_p on an existing dir succeeds");
    path = ft_asprintf("%s/a/file.json", dir);
    CHECK(ft_write_file_atomic(path, "hello", 5, &err) == 0, "atomic write");
    CHECK(ft_write_file_atomic(path, "hello2", 6, &err) == 0, "atomic overwrite");
    buf = ft_read_file(path, 100, &len, &err);
    CHECK(buf && len == 6 && strcmp(buf, "hello2") == 0, "read back what was written");
    free(buf);
    buf = ft_read_file(path, 3, &len, &err);
    CHECK(!buf && err.code == FT_ETOOLARGE, "reading over the limit is too_large: '%s'", err.msg);
    buf = ft_read_file("/nonexistent/x", 100, &len, &err);
    CHECK(!buf && err.code == FT_ENOTFOUND, "missing file is not_found: '%s'", err.msg);
    CHECK(ft_write_file_atomic("/nonexistent/dir/x", "a", 1, &err) < 0,
          "write into a missing dir fails: '%s'", err.msg);
    {
        char *sub = ft_asprintf("%s/a/file.json/sub", dir);
        CHECK(ft_mkdir_p(sub, &err) < 0, "ft_mkdir_p through a file fails: '%s'", err.msg);
        free(sub);
    }
    unlink(path);
    free(path);
    free(deep);
    {
        char *cmd = ft_asprintf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            printf("warning: could not remove %s\n", dir);
        free(cmd);
    }
}

int main(void)
{
    ft_log_init("test_util", FT_LOG_DEBUG);
    ft_info("log line format check %d", 1);
    test_errors();
    test_time();
    test_strings();
    test_files();
    return check_done("test_util");
}
