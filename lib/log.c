/*
 * log.c: one-line log records on stderr,
 *   "2026-11-30T06:15:11Z ftsched[1234] info: message".
 *
 * Each record is formatted into one buffer and written with a single write(2)
 * so that lines from several processes sharing a stderr do not interleave.
 * Records longer than the buffer are cut. Cost: one clock read, one write.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ft/common.h"

static char ft_log_prog[32] = "ft";             /* program name in each record */
static ft_log_level_t ft_log_min = FT_LOG_INFO; /* records below this are dropped */

/* Index = ft_log_level_t. */
static const char *const ft_log_level_names[] = {"debug", "info", "warn", "error"};

void ft_log_init(const char *progname, ft_log_level_t min_level)
{
    if (progname && *progname)
        ft_strlcpy(ft_log_prog, progname, sizeof(ft_log_prog));
    if (min_level >= FT_LOG_DEBUG && min_level <= FT_LOG_ERROR)
        ft_log_min = min_level;
}

void ft_log(ft_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    char ts[32];
    va_list ap;
    int n, m;
    int saved_errno = errno;

    if (level < ft_log_min || level > FT_LOG_ERROR)
        return;
    ft_fmt_time(ft_now_ms() / 1000, ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "%s %s[%ld] %s: ", ts, ft_log_prog, (long)getpid(),
                 ft_log_level_names[level]);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    while (write(STDERR_FILENO, line, (size_t)n) < 0 && errno == EINTR)
        ;
    errno = saved_errno;
}
