/*
 * tests/worker/test_logread.c: the log reader: U+FFFD for invalid UTF-8 and
 * NUL, characters never split across chunks, offsets that chain, the escaped
 * size budget, and errors for a missing file and an offset past the end.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "logread.h"

#define FFFD "\xEF\xBF\xBD"

static char tmpdir[] = "/tmp/ft-test-logread-XXXXXX";

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* sanitize in one go, no limit */
static size_t scan(const char *in, size_t len, bool more, char *out, size_t *out_len)
{
    return logread_sanitize((const unsigned char *)in, len, len, more, 1 << 20, out, out_len);
}

int main(void)
{
    char out[4096];
    size_t olen, used;
    ft_err_t err = {0};

    static const struct {
        const char *in;
        size_t len;
        const char *want;
        const char *what;
    } cases[] = {
        {"hello\n", 6, "hello\n", "ASCII passes through"},
        {"caf\xC3\xA9", 5, "caf\xC3\xA9", "2-byte character kept"},
        {"\xE2\x82\xAC\xF0\x9F\x98\x80", 7, "\xE2\x82\xAC\xF0\x9F\x98\x80", "3- and 4-byte kept"},
        {"a\xFFz", 3, "a" FFFD "z", "0xFF becomes U+FFFD"},
        {"a\x80z", 3, "a" FFFD "z", "lone continuation byte becomes U+FFFD"},
        {"\xC0\xAF", 2, FFFD FFFD, "overlong 2-byte form: two U+FFFD"},
        {"\xE0\x80\xAF", 3, FFFD FFFD FFFD, "overlong 3-byte form rejected"},
        {"\xED\xA0\x80", 3, FFFD FFFD FFFD, "UTF-16 surrogate rejected"},
        {"\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD, "above U+10FFFF rejected"},
        {"a\0b", 3, "a" FFFD "b", "NUL becomes U+FFFD"},
        {"x\xC3", 2, "x" FFFD, "cut sequence at the very end of the file replaced"},
        {"\xE2\x82z", 3, FFFD FFFD "z", "truncated 3-byte sequence then ASCII"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        used = scan(cases[i].in, cases[i].len, false, out, &olen);
        CHECK(used == cases[i].len && olen == strlen(cases[i].want) &&
                  memcmp(out, cases[i].want, olen) == 0,
              "sanitize: %s", cases[i].what);
    }

    used = scan("ab\xE2\x82", 4, true, out, &olen);
    CHECK(used == 2 && strcmp(out, "ab") == 0,
          "a character cut by the chunk end is left for the next chunk (used %zu)", used);
    used = logread_sanitize((const unsigned char *)"\xE2\x82\xAC", 3, 1, true, 1 << 20, out, &olen);
    CHECK(used == 3 && strcmp(out, "\xE2\x82\xAC") == 0,
          "max_bytes 1: the first character is still returned whole");
    used =
        logread_sanitize((const unsigned char *)"abc\xE2\x82\xAC", 6, 4, true, 1 << 20, out, &olen);
    CHECK(used == 3 && strcmp(out, "abc") == 0,
          "a character that would cross max_bytes is not started (used %zu)", used);
    used = logread_sanitize((const unsigned char *)"\x01\x01\x01\x01", 4, 4, false, 13, out, &olen);
    CHECK(used == 2, "escaped budget: control bytes count 6 each, 13 allows 2 (used %zu)", used);

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof(path), "%s/rank-0.log", tmpdir);
    const char content[] = "line one\nsm\xC3\xB6rg\xE5sbord \xFF end\n";
    size_t clen = sizeof(content) - 1;
    write_file(path, content, clen);

    logread_chunk_t c;
    CHECK(logread_read(path, 0, 65536, &c, &err) == 0 && c.next_offset == (int64_t)clen &&
              c.at_end && strstr(c.data, "sm\xC3\xB6rg" FFFD "sbord " FFFD " end"),
          "whole file: offset %lld, at end, invalid bytes replaced", (long long)c.next_offset);
    logread_chunk_free(&c);

    /* read in 4-byte chunks: offsets chain, the concatenation equals one read */
    char joined[256] = "";
    int64_t off = 0;
    int chunks = 0;
    bool ok = true;
    while (ok && chunks < 100) {
        ok = logread_read(path, off, 4, &c, &err) == 0;
        if (!ok)
            break;
        ok = c.next_offset > off && c.next_offset - off <= 4;
        strcat(joined, c.data);
        off = c.next_offset;
        chunks++;
        bool end = c.at_end;
        logread_chunk_free(&c);
        if (end)
            break;
    }
    CHECK(ok && off == (int64_t)clen &&
              strcmp(joined, "line one\nsm\xC3\xB6rg" FFFD "sbord " FFFD " end\n") == 0,
          "4-byte chunks chain to the same text (%d chunks, ö never split)", chunks);

    CHECK(logread_read(path, (int64_t)clen, 100, &c, &err) == 0 && c.len == 0 && c.at_end &&
              c.next_offset == (int64_t)clen,
          "reading at the end: empty data, same offset, at end");
    logread_chunk_free(&c);
    CHECK(logread_read(path, (int64_t)clen + 1, 100, &c, &err) == -1 &&
              strstr(err.msg, "beyond the end"),
          "offset past the end is an error: %s", err.msg);
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope.log", tmpdir);
    CHECK(logread_read(missing, 0, 100, &c, &err) == -1 && err.code == FT_ENOTFOUND &&
              strstr(err.msg, "nope.log"),
          "missing file is not_found naming the file: %s", err.msg);

    /* a big file of control bytes stays under the escaped budget */
    size_t big = 300 * 1024;
    char *buf = malloc(big);
    memset(buf, 0x01, big);
    write_file(path, buf, big);
    free(buf);
    CHECK(logread_read(path, 0, 256 * 1024, &c, &err) == 0 &&
              c.next_offset <= LOGREAD_ESCAPED_MAX / 6 + 1 && c.next_offset > 0 && !c.at_end,
          "256 KiB of control bytes: cut at %lld bytes so the JSON stays under %d",
          (long long)c.next_offset, LOGREAD_ESCAPED_MAX);
    logread_chunk_free(&c);

    unlink(path);
    rmdir(tmpdir);
    return check_exit();
}
