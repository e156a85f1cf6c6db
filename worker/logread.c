/*
 * worker/logread.c: chunked, UTF-8-safe reads of rank log files.
 *
 * Decoding follows RFC 3629: overlong forms, surrogates and code points above
 * U+10FFFF are invalid; each invalid byte becomes one U+FFFD and decoding
 * resumes at the next byte. Costs: O(bytes read).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logread.h"

/* Bytes allowed after the lead byte, by lead byte range: {first lo, first hi}
 * for the second byte (later bytes are always 0x80..0xBF). */
typedef struct {
    unsigned char lead_lo, lead_hi;     /* lead byte range, inclusive */
    int len;                            /* sequence length in bytes */
    unsigned char second_lo, second_hi; /* allowed second byte, inclusive */
} utf8_row_t;

static const utf8_row_t utf8_table[] = {
    {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF}, /* no overlongs */
    {0xE1, 0xEC, 3, 0x80, 0xBF}, {0xED, 0xED, 3, 0x80, 0x9F}, /* no surrogates */
    {0xEE, 0xEF, 3, 0x80, 0xBF}, {0xF0, 0xF0, 4, 0x90, 0xBF}, /* no overlongs */
    {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F}, /* nothing above U+10FFFF */
};

/* Length of the valid sequence at in[0..avail): >0 valid, 0 invalid (replace
 * one byte), -1 valid so far but cut short by the end of the input. */
static int utf8_seq(const unsigned char *in, size_t avail)
{
    unsigned char b = in[0];
    if (b < 0x80)
        return b == 0 ? 0 : 1;
    for (size_t r = 0; r < sizeof(utf8_table) / sizeof(utf8_table[0]); r++) {
        const utf8_row_t *row = &utf8_table[r];
        if (b < row->lead_lo || b > row->lead_hi)
            continue;
        for (int i = 1; i < row->len; i++) {
            if ((size_t)i >= avail)
                return -1;
            unsigned char lo = i == 1 ? row->second_lo : 0x80;
            unsigned char hi = i == 1 ? row->second_hi : 0xBF;
            if (in[i] < lo || in[i] > hi)
                return 0;
        }
        return row->len;
    }
    return 0;
}

/* Size of one ASCII byte once cJSON escapes it. */
static size_t escaped_size(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f')
        return 2;
    return c < 0x20 ? 6 : 1;
}

size_t logread_sanitize(const unsigned char *in, size_t len, size_t limit, bool more_follows,
                        size_t escaped_max, char *out, size_t *out_len)
{
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    size_t i = 0, o = 0, esc = 0;
    while (i < len) {
        int n = utf8_seq(in + i, len - i);
        if (n < 0 && more_follows && i > 0)
            break; /* leave the cut character for the next chunk */
        size_t take = n > 0 ? (size_t)n : 1;
        size_t cost = n == 1 ? escaped_size(in[i]) : n > 1 ? (size_t)n : 3;
        if (i > 0 && (i + take > limit || esc + cost > escaped_max))
            break;
        if (n > 0) {
            memcpy(out + o, in + i, take);
            o += take;
        } else {
            memcpy(out + o, replacement, 3);
            o += 3;
        }
        esc += cost;
        i += take;
    }
    out[o] = '\0';
    *out_len = o;
    return i;
}

int logread_read(const char *path, int64_t offset, int64_t max_bytes, logread_chunk_t *out,
                 ft_err_t *err)
{
    int rc = -1, fd = -1;
    unsigned char *buf = NULL;
    memset(out, 0, sizeof(*out));
    if (offset < 0 || max_bytes < 1) {
        ft_err_set(err, FT_EBADFIELD, "offset must be >= 0 and max_bytes >= 1");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ft_err_set(err, errno == ENOENT ? FT_ENOTFOUND : FT_EINTERNAL, "cannot open '%s': %s", path,
                   strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot stat '%s': %s", path, strerror(errno));
        goto out;
    }
    if (offset > st.st_size) {
        ft_err_set(err, FT_EBADFIELD, "offset %lld is beyond the end of the log (%lld bytes)",
                   (long long)offset, (long long)st.st_size);
        goto out;
    }
    int64_t avail = st.st_size - offset;
    size_t want = (size_t)(avail < max_bytes + 3 ? avail : max_bytes + 3);
    buf = malloc(want ? want : 1);
    out->data = malloc(3 * want + 1);
    if (!buf || !out->data) {
        ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", path);
        goto out;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, offset + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ft_err_set(err, FT_EINTERNAL, "cannot read '%s': %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    bool more = offset + (int64_t)got < st.st_size;
    size_t used = logread_sanitize(buf, got, (size_t)max_bytes, more, LOGREAD_ESCAPED_MAX,
                                   out->data, &out->len);
    out->next_offset = offset + (int64_t)used;
    out->at_end = out->next_offset >= st.st_size;
    rc = 0;
out:
    if (rc < 0)
        logread_chunk_free(out);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

void logread_chunk_free(logread_chunk_t *c)
{
    free(c->data);
    c->data = NULL;
    c->len = 0;
}
