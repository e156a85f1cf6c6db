/*
 * test_safetensors.c: the safetensors reader and writer: a round trip, the
 * byte layout of the writer, every malformed case the reader must reject (with
 * the message it gives), and the 16-bit float conversions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static char dir[256];

static void write_raw(const char *path, const char *hdr, size_t data_len)
{
    size_t n = strlen(hdr);
    FILE *f = fopen(path, "wb");
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, n, f);
    for (size_t i = 0; i < data_len; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Writes a file with the given header and data_len data bytes and expects
 * st_open to fail with a message containing want. */
static void expect_reject(const char *what, const char *hdr, size_t data_len, const char *want)
{
    char path[300];
    ft_err_t err = {0};
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    write_raw(path, hdr, data_len);
    st_file_t *f = st_open(path, &err);
    CHECK(f == NULL, "%s: rejected", what);
    CHECK(strstr(err.msg, want) != NULL, "%s: message '%s' contains '%s'", what, err.msg, want);
    st_close(&f);
}

static void test_round_trip(void)
{
    char path[300];
    ft_err_t err = {0};
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    int32_t ids[4] = {5, -100, 7, 2147483647};
    float h[3] = {1.0f, -0.333333f, 65504.0f};
    int64_t sa[2] = {2, 3}, si[1] = {4}, sh[1] = {3}, sz[2] = {0, 5};
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);

    st_writer_t *w = st_writer_new();
    CHECK(w != NULL, "writer created");
    CHECK(st_writer_add(w, "b.ids", ST_I32, 1, si, ids, &err) == 0, "add I32");
    CHECK(st_writer_add(w, "a.w", ST_F32, 2, sa, a, &err) == 0, "add F32");
    CHECK(st_writer_add_f32(w, "c.half", ST_F16, 1, sh, h, &err) == 0, "add F16 from floats");
    CHECK(st_writer_add_f32(w, "d.bf", ST_BF16, 1, sh, h, &err) == 0, "add BF16 from floats");
    CHECK(st_writer_add(w, "e.empty", ST_F32, 2, sz, NULL, &err) == 0, "add empty tensor");
    CHECK(st_writer_add(w, "a.w", ST_F32, 2, sa, a, &err) < 0 && strstr(err.msg, "added twice"),
          "duplicate name refused: %s", err.msg);
    CHECK(st_writer_set_metadata(w, "step", "12", &err) == 0, "metadata set");
    CHECK(st_writer_save(w, path, &err) == 0, "saved: %s", err.msg);
    st_writer_destroy(&w);
    CHECK(w == NULL, "destroy nulls the pointer");

    /* Header length is a multiple of 8 and padded with spaces. */
    FILE *fp = fopen(path, "rb");
    unsigned char b8[8];
    CHECK(fread(b8, 1, 8, fp) == 8, "read the length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | b8[i];
    char *hdr = calloc(1, n + 1);
    CHECK(fread(hdr, 1, n, fp) == n, "read the header");
    fclose(fp);
    CHECK(n % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)n);
    CHECK(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\",\"step\":\"12\"}") != NULL,
          "metadata written with format pt: %s", hdr);
    /* Sorted by descending alignment then name: a.w, b.ids (4 bytes) first. */
    char *pa = strstr(hdr, "\"a.w\""), *pb = strstr(hdr, "\"b.ids\""),
         *pc = strstr(hdr, "\"c.half\""), *pd = strstr(hdr, "\"d.bf\"");
    CHECK(pa && pb && pc && pd && pa < pb && pb < pc && pc < pd,
          "writer order: 4-byte dtypes by name, then 2-byte ones");
    CHECK(strstr(hdr, "\"a.w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"),
          "a.w entry exact");
    free(hdr);

    st_file_t *f = st_open(path, &err);
    CHECK(f != NULL, "reopened: %s", err.msg);
    CHECK(st_count(f) == 5, "5 tensors");
    CHECK(strcmp(st_metadata(f, "format"), "pt") == 0, "metadata format pt");
    CHECK(strcmp(st_metadata(f, "step"), "12") == 0, "metadata step");
    const st_tensor_t *t = st_find(f, "a.w");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3,
          "a.w dtype and shape");
    float back[6];
    CHECK(st_read_f32(f, "a.w", 2, sa, back, &err) == 0 && memcmp(back, a, sizeof a) == 0,
          "a.w values equal");
    int32_t ib[4];
    CHECK(st_read_i32(f, "b.ids", 1, si, ib, &err) == 0 && memcmp(ib, ids, sizeof ids) == 0,
          "b.ids values equal");
    float hb[3];
    CHECK(st_read_f32(f, "c.half", 1, sh, hb, &err) == 0, "c.half read");
    CHECK(hb[0] == 1.0f && fabsf(hb[1] + 0.333333f) < 2e-4f && hb[2] == 65504.0f,
          "f16 values %g %g %g", hb[0], hb[1], hb[2]);
    CHECK(st_read_f32(f, "d.bf", 1, sh, hb, &err) == 0 && hb[0] == 1.0f &&
              fabsf(hb[1] + 0.333333f) < 2e-3f && hb[2] == 65536.0f,
          "bf16 values %g %g %g", hb[0], hb[1], hb[2]);
    int64_t wrong[2] = {3, 2};
    CHECK(st_read_f32(f, "a.w", 2, wrong, back, &err) < 0 &&
              strstr(err.msg, "tensor 'a.w' has shape [2, 3], expected [3, 2]"),
          "shape mismatch message: %s", err.msg);
    CHECK(st_read_f32(f, "zz", 2, wrong, back, &err) < 0 &&
              strstr(err.msg, "tensor 'zz' is missing"),
          "missing tensor message: %s", err.msg);
    CHECK(st_read_f32(f, "b.ids", 1, si, back, &err) < 0 && strstr(err.msg, "I32"),
          "I32 is not read as floats: %s", err.msg);
    t = st_find(f, "e.empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0, "empty tensor kept");
    st_close(&f);
    CHECK(f == NULL, "close nulls the pointer");
}

static void test_empty_file_bytes(void)
{
    /* An empty writer gives the header {"__metadata__":{"format":"pt"}} padded to 8. */
    char path[300];
    ft_err_t err = {0};
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    st_writer_t *w = st_writer_new();
    CHECK(st_writer_save(w, path, &err) == 0, "empty saved");
    st_writer_destroy(&w);
    st_file_t *f = st_open(path, &err);
    CHECK(f && st_count(f) == 0, "empty file opens with 0 tensors");
    st_close(&f);
    /* The reference test vector: {} padded with 6 spaces. */
    snprintf(path, sizeof path, "%s/empty2.safetensors", dir);
    write_raw(path, "{}      ", 0);
    f = st_open(path, &err);
    CHECK(f && st_count(f) == 0, "reference empty file '{}' + 6 spaces opens: %s", err.msg);
    st_close(&f);
}

static void test_rejects(void)
{
    char path[300];
    ft_err_t err = {0};
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\x00\x00", 1, 3, fp);
    fclose(fp);
    st_file_t *f = st_open(path, &err);
    CHECK(!f && strstr(err.msg, "truncated"), "3-byte file: %s", err.msg);

    /* header length says 200 but 20 bytes follow */
    snprintf(path, sizeof path, "%s/trunc.safetensors", dir);
    fp = fopen(path, "wb");
    unsigned char len[8] = {200, 0, 0, 0, 0, 0, 0, 0};
    fwrite(len, 1, 8, fp);
    fwrite("{\"a\":{\"dtype\":\"F32\",", 1, 20, fp);
    fclose(fp);
    f = st_open(path, &err);
    CHECK(!f && strstr(err.msg, "truncated: header length 200"), "truncated header: %s", err.msg);

    /* header length over 100 MB */
    snprintf(path, sizeof path, "%s/huge.safetensors", dir);
    fp = fopen(path, "wb");
    unsigned char big[8] = {0x00, 0xe2, 0xf5, 0x05, 0, 0, 0, 0}; /* 100,000,512 */
    fwrite(big, 1, 8, fp);
    fwrite("{}", 1, 2, fp);
    fclose(fp);
    f = st_open(path, &err);
    CHECK(!f && strstr(err.msg, "over the 100000000-byte limit"), "header too large: %s", err.msg);

    expect_reject("wrong size",
                  "{\"x.y\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,10]}}", 10,
                  "tensor 'x.y': data_offsets [0, 10] do not match shape [3] of F32 (12 bytes)");
    expect_reject("overlap",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  12, "overlap the previous tensor");
    expect_reject("gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                  "leave a gap");
    expect_reject("trailing bytes",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9,
                  "1 trailing bytes after the last tensor");
    expect_reject("missing data",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                  "truncated: tensors need 8 data bytes but the file has 4");
    expect_reject("duplicate key",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "duplicate key 'a'");
    expect_reject("bad dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  4, "tensor 'a': unknown dtype 'F33'");
    expect_reject("negative shape",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                  "shape entries must be non-negative integers");
    expect_reject("offsets reversed",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
                  "data_offsets must be [begin, end]");
    expect_reject("unknown entry key",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"offsets\":[0,4]}}", 4,
                  "unknown key 'offsets'");
    expect_reject("not JSON", "{\"a\":", 0, "bad header");
    expect_reject("bad UTF-8", "{\"a\xff\":{}}", 0, "bad header");
    expect_reject("metadata not strings", "{\"__metadata__\":{\"n\":1}}", 0,
                  "__metadata__ 'n': expected a string value");
    expect_reject("header is an array", "[]", 0, "expected a JSON object");
    expect_reject("shape overflow",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                  "\"data_offsets\":[0,4]}}",
                  4, "do not match shape");
    f = st_open("/nonexistent/x.safetensors", &err);
    CHECK(!f && strstr(err.msg, "cannot open '/nonexistent/x.safetensors'"), "missing file: %s",
          err.msg);
}

static void test_conversions(void)
{
    /* f16: 1.0 = 0x3c00, -2 = 0xc000, 65504 = 0x7bff, smallest subnormal 0x0001 = 2^-24,
     * largest subnormal 0x03ff, smallest normal 0x0400 = 2^-14, inf 0x7c00, nan 0x7e00. */
    CHECK(st_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(st_f16_to_f32(0xc000) == -2.0f, "f16 -2");
    CHECK(st_f16_to_f32(0x7bff) == 65504.0f, "f16 max 65504");
    CHECK(st_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 min subnormal 2^-24");
    CHECK(st_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24), "f16 max subnormal");
    CHECK(st_f16_to_f32(0x8001) == -ldexpf(1.0f, -24), "f16 negative subnormal");
    CHECK(st_f16_to_f32(0x0400) == ldexpf(1.0f, -14), "f16 min normal");
    CHECK(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0x7c00) > 0, "f16 +inf");
    CHECK(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0, "f16 -inf");
    CHECK(isnan(st_f16_to_f32(0x7e00)), "f16 nan");
    CHECK(signbit(st_f16_to_f32(0x8000)) && st_f16_to_f32(0x8000) == 0.0f, "f16 -0");
    /* every f16 survives f16 -> f32 -> f16 (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float v = st_f16_to_f32((uint16_t)h);
        uint16_t back = st_f32_to_f16(v);
        if (isnan(v) ? !isnan(st_f16_to_f32(back)) : back != h)
            bad++;
    }
    CHECK(bad == 0, "all 65536 f16 values round-trip through f32 (%d failures)", bad);
    CHECK(st_f32_to_f16(65520.0f) == 0x7c00, "f32 65520 overflows to f16 inf");
    CHECK(st_f32_to_f16(65519.0f) == 0x7bff, "f32 65519 rounds to f16 max");
    CHECK(st_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "2^-25 ties to even: 0");
    CHECK(st_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "3*2^-25 ties to even: 2 * 2^-24");
    CHECK(st_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00, "1 + 2^-11 ties to even: 1");
    CHECK(st_f32_to_f16(1.0f + ldexpf(3.0f, -11)) == 0x3c02, "1 + 3*2^-11 ties to even up");

    /* bf16 */
    CHECK(st_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(st_bf16_to_f32(0xc040) == -3.0f, "bf16 -3");
    CHECK(st_bf16_to_f32(0x0001) == ldexpf(1.0f, -133), "bf16 min subnormal 2^-133");
    CHECK(isinf(st_bf16_to_f32(0x7f80)), "bf16 inf");
    CHECK(isnan(st_bf16_to_f32(0x7fc0)), "bf16 nan");
    CHECK(st_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80, "bf16 tie to even down");
    CHECK(st_f32_to_bf16(1.0f + ldexpf(3.0f, -8)) == 0x3f82, "bf16 tie to even up");
    CHECK(st_f32_to_bf16(3.4e38f) == 0x7f80, "bf16 overflow rounds to inf");
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))), "bf16 nan stays nan");
    bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float v = st_bf16_to_f32((uint16_t)h);
        if (!isnan(v) && st_f32_to_bf16(v) != h)
            bad++;
    }
    CHECK(bad == 0, "all non-NaN bf16 values round-trip (%d failures)", bad);
    CHECK(st_dtype_from_name("BF16") == ST_BF16 && st_dtype_size(ST_I64) == 8 &&
              st_dtype_from_name("Q4") == ST_DTYPE__COUNT,
          "dtype table");
}

/* Random corruptions and truncations of a valid file: st_open either
 * refuses the file or yields tensors that lie inside it (run under the
 * sanitizer build to catch any out-of-bounds read). */
static void test_mutations(void)
{
    char src[300], path[300];
    ft_err_t err = {0};
    snprintf(src, sizeof src, "%s/rt.safetensors", dir);
    snprintf(path, sizeof path, "%s/mut.safetensors", dir);
    size_t len = 0;
    char *orig = ft_read_file(src, 1 << 20, &len, &err);
    CHECK(orig != NULL && len > 64, "valid file read for mutation (%zu bytes)", len);
    if (!orig)
        return;
    char *buf = malloc(len);
    uint64_t s = 12345;
    int opened = 0, refused = 0, bad = 0;
    for (int it = 0; it < 1000; it++) {
        memcpy(buf, orig, len);
        size_t n = len;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)((s >> 33) % 4);
        if (kind == 0) {
            n = (size_t)((s >> 40) % len); /* truncate */
        } else {
            int flips = 1 + kind;
            for (int k = 0; k < flips; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                /* mostly inside the 8-byte length and the header */
                size_t at = (s >> 20) % 4 ? (size_t)((s >> 33) % 200) : (size_t)((s >> 33) % len);
                buf[at % len] = (char)(s >> 56);
            }
        }
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        st_file_t *sf = st_open(path, &err);
        if (!sf) {
            refused++;
            bad += err.msg[0] == '\0';
            continue;
        }
        opened++;
        for (int i = 0; i < st_count(sf); i++) {
            const st_tensor_t *t = st_tensor_at(sf, i);
            const char *lo = (const char *)t->data;
            /* the span must lie in the data area of a file of n bytes */
            if (t->nbytes > n) {
                bad++;
                continue;
            }
            volatile unsigned char acc = 0;
            for (size_t b = 0; b < t->nbytes; b++)
                acc ^= (unsigned char)lo[b];
            (void)acc;
        }
        st_close(&sf);
    }
    CHECK(bad == 0, "1000 mutated files: %d refused with a message, %d still valid, 0 bad", refused,
          opened);
    free(buf);
    free(orig);
}

int main(void)
{
    test_tmpdir(dir, sizeof dir, "st");
    test_round_trip();
    test_empty_file_bytes();
    test_rejects();
    test_conversions();
    test_mutations();
    return test_finish(dir);
}
