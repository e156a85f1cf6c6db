/*
 * util.c: time, strings and files shared by every ft program.
 *
 * ft_write_file_atomic gives "old or new, never half": it writes a temporary
 * file in the same directory, fsyncs it, renames it over the target and fsyncs
 * the directory so that the rename itself survives a power loss.
 * Costs: O(len) for writes and reads; ft_mkdir_p is one mkdir per component.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ft/common.h"

/* ---- time ---- */

int64_t ft_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ft_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double ft_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ft_fmt_time(int64_t unix_s, char *buf, size_t len)
{
    struct tm tm;
    time_t t = (time_t)unix_s;

    if (!buf || len == 0)
        return;
    if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        ft_strlcpy(buf, "?", len);
}

/* Parses exactly ndigits decimal digits at *p; advances *p. */
static int parse_digits(const char **p, int ndigits, int *out)
{
    int v = 0;

    for (int i = 0; i < ndigits; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += ndigits;
    *out = v;
    return 0;
}

/* Suffix of a relative time ("-7d") and its length in seconds. */
static const struct {
    char suffix;  /* the unit letter */
    int64_t secs; /* seconds per unit */
} ft_rel_units[] = {
    {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400},
};

int ft_parse_time(const char *s, int64_t now_s, int64_t *out)
{
    const char *p = s;
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, se = 0;
    time_t t;

    if (!s || !*s || !out)
        return -1;
    if (strcmp(s, "now") == 0) {
        *out = now_s;
        return 0;
    }
    if (s[0] == '-' && isdigit((unsigned char)s[1])) {
        char *end;
        long long n;

        errno = 0;
        n = strtoll(s + 1, &end, 10);
        if (errno || end == s + 1 || n > 100LL * 366 * 86400)
            return -1;
        for (size_t i = 0; i < sizeof(ft_rel_units) / sizeof(ft_rel_units[0]); i++) {
            if (end[0] == ft_rel_units[i].suffix && end[1] == '\0') {
                *out = now_s - (int64_t)n * ft_rel_units[i].secs;
                return 0;
            }
        }
        return -1;
    }
    /* A plain unix time: digits only. */
    {
        size_t i = 0;

        while (isdigit((unsigned char)s[i]))
            i++;
        if (s[i] == '\0' && i > 0 && i <= 12) {
            *out = strtoll(s, NULL, 10);
            return 0;
        }
    }
    if (parse_digits(&p, 4, &y) < 0 || *p++ != '-' || parse_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
        parse_digits(&p, 2, &d) < 0)
        return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &mi) < 0 ||
            *p++ != ':' || parse_digits(&p, 2, &se) < 0)
            return -1;
        if (*p == 'Z')
            p++;
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    t = timegm(&tm);
    /* timegm normalises 2026-02-31 into March; refuse instead. */
    if (tm.tm_mday != d || tm.tm_mon != mo - 1)
        return -1;
    *out = (int64_t)t;
    return 0;
}

/* ---- strings ---- */

char *ft_trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

size_t ft_strlcpy(char *dst, const char *src, size_t len)
{
    size_t n = strlen(src);

    if (len > 0) {
        size_t c = n < len - 1 ? n : len - 1;

        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

const char *ft_sanitize(const char *s, size_t max)
{
    /* A few buffers in turn, so that one message may sanitize several
     * arguments: ft_err_set(e, c, "'%s' vs '%s'", ft_sanitize(a), ft_sanitize(b)). */
    static _Thread_local char bufs[FT_SANITIZE_SLOTS][1024];
    static _Thread_local unsigned slot;
    char *buf = bufs[slot++ % FT_SANITIZE_SLOTS];
    size_t n, i;
    bool cut = false;

    if (!s)
        return "(null)";
    if (max > sizeof(bufs[0]) - 4)
        max = sizeof(bufs[0]) - 4;
    n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        cut = true;
        /* Do not leave half a UTF-8 sequence before the "...". */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (cut) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

char *ft_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    return s;
}

/* ---- files ---- */

/* Writes all of len bytes, retrying short writes and EINTR. */
static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int ft_write_file_atomic(const char *path, const void *data, size_t len, ft_err_t *err)
{
    char *tmp = NULL, *dir = NULL, *slash;
    int fd = -1, dfd = -1, rc = -1;

    tmp = ft_asprintf("%s.tmp.%ld", path, (long)getpid());
    dir = strdup(path);
    if (!tmp || !dir) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot write '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        ft_err_set(err, FT_EINTERNAL, "cannot close '%s': %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing left to unlink */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot sync directory '%s': %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    return rc;
}

char *ft_read_file(const char *path, size_t max, size_t *len_out, ft_err_t *err)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ft_err_set(err, errno == ENOENT ? FT_ENOTFOUND : FT_EINTERNAL, "cannot open '%s': %s", path,
                   strerror(errno));
        return NULL;
    }
    for (;;) {
        ssize_t r;

        if (len + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;

            if (ncap > max + 2)
                ncap = max + 2;
            if (ncap <= len + 1) {
                ft_err_set(err, FT_ETOOLARGE, "file '%s' is larger than %zu bytes", path, max);
                goto fail;
            }
            nb = realloc(buf, ncap);
            if (!nb) {
                ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", path);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ft_err_set(err, FT_EINTERNAL, "cannot read '%s': %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            ft_err_set(err, FT_ETOOLARGE, "file '%s' is larger than %zu bytes", path, max);
            goto fail;
        }
    }
    close(fd);
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", path);
            return NULL;
        }
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}

int ft_mkdir_p(const char *path, ft_err_t *err)
{
    char *p = NULL, *s;
    int rc = -1;

    if (!path || !*path) {
        ft_err_set(err, FT_EBADFIELD, "empty directory path");
        return -1;
    }
    p = strdup(path);
    if (!p) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    for (s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            struct stat st;

            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                ft_err_set(err, FT_EINTERNAL, "cannot create directory '%s': %s", p,
                           strerror(errno));
                goto out;
            }
            if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
                ft_err_set(err, FT_EINTERNAL, "'%s' exists and is not a directory", p);
                goto out;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    rc = 0;
out:
    free(p);
    return rc;
}
