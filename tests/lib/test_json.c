/*
 * test_json.c: the strict parser and typed getters of ft/json.h.
 */
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "check.h"

static void expect_bad(const char *text, const char *what)
{
    ft_err_t err = {0};
    cJSON *j = ft_json_parse(text, strlen(text), &err);

    CHECK(!j && err.code == FT_EBADJSON, "reject %s: '%s'", what, err.msg);
    cJSON_Delete(j);
}

static void expect_good(const char *text, const char *what)
{
    ft_err_t err = {0};
    cJSON *j = ft_json_parse(text, strlen(text), &err);

    CHECK(j != NULL, "accept %s%s%s", what, j ? "" : ": ", j ? "" : err.msg);
    cJSON_Delete(j);
}

static void test_parse(void)
{
    char deep[200], deep_ok[200];
    int i;

    expect_good("{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":\"\\u00e9\\ud83d\\ude00\"}",
                "an ordinary object");
    expect_good("  [ ]  ", "an empty array with whitespace");
    expect_good("-0.5e+3", "a number with exponent");
    expect_good("\"caf\xc3\xa9\"", "a UTF-8 string");
    expect_bad("{\"a\":1} x", "trailing data");
    expect_bad("{\"a\":1}{}", "two values");
    expect_bad("{\"a\":1,\"a\":2}", "a duplicate key");
    expect_bad("{\"x\":{\"a\":1,\"b\":2,\"a\":3}}", "a nested duplicate key");
    expect_bad("[{\"k\":1,\"k\":1}]", "a duplicate key inside an array");
    expect_bad("01", "a leading zero");
    expect_bad("1.", "a bare decimal point");
    expect_bad("+1", "a leading plus");
    expect_bad("{'a':1}", "single quotes");
    expect_bad("{\"a\":1,}", "a trailing comma");
    expect_bad("\"a\x01\"", "a control character in a string");
    expect_bad("\"\xff\"", "invalid UTF-8");
    expect_bad("\"\xc0\xaf\"", "overlong UTF-8");
    expect_bad("\"\\ud800\"", "a lone surrogate");
    expect_bad("\"\\u0000\"", "an escaped NUL");
    expect_bad("\"\\x\"", "a bad escape");
    expect_bad("", "empty input");
    expect_bad("nul", "a truncated literal");
    expect_bad("NaN", "NaN");
    for (i = 0; i < 65; i++)
        deep[i] = '[';
    for (; i < 130; i++)
        deep[i] = ']';
    deep[i] = '\0';
    expect_bad(deep, "nesting 65 deep");
    for (i = 0; i < 64; i++)
        deep_ok[i] = '[';
    for (; i < 128; i++)
        deep_ok[i] = ']';
    deep_ok[i] = '\0';
    expect_good(deep_ok, "nesting 64 deep");
    {
        ft_err_t err;
        const char buf[] = "{\"a\":1}\0garbage";
        cJSON *j = ft_json_parse(buf, sizeof(buf) - 1, &err);
        CHECK(!j && err.code == FT_EBADJSON, "reject an embedded NUL: '%s'", err.msg);
        j = ft_json_parse(buf, 7, &err);
        CHECK(j != NULL, "parse only len bytes of a longer buffer");
        cJSON_Delete(j);
    }
}

static void test_getters(void)
{
    const char *text = "{\"n\":5,\"f\":2.5,\"big\":1e300,\"b\":true,\"s\":\"hey\",\"neg\":-3}";
    ft_err_t err;
    cJSON *j = ft_json_parse(text, strlen(text), &err);
    int64_t i = 99;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    static const char *const allowed[] = {"n", "f", "big", "b", "s", "neg", NULL};
    static const char *const fewer[] = {"n", NULL};

    CHECK(j != NULL, "parse the getter fixture");
    CHECK(ft_json_get_int(j, "spec", "n", true, 1, 10, &i, &err) == 0 && i == 5, "int in bounds");
    CHECK(ft_json_get_int(j, "spec", "n", true, 6, 10, &i, &err) < 0 && err.code == FT_EBADFIELD &&
              strcmp(err.msg, "spec.n: expected an integer in [6, 10]") == 0,
          "int out of bounds names the field: '%s'", err.msg);
    CHECK(ft_json_get_int(j, NULL, "f", true, 0, 10, &i, &err) < 0 && strstr(err.msg, "field 'f'"),
          "fraction is not an integer: '%s'", err.msg);
    CHECK(ft_json_get_int(j, NULL, "big", true, INT64_MIN, INT64_MAX, &i, &err) < 0,
          "1e300 is not an int64");
    CHECK(ft_json_get_int(j, NULL, "s", true, 0, 10, &i, &err) < 0, "a string is not an integer");
    i = 77;
    CHECK(ft_json_get_int(j, NULL, "absent", false, 0, 10, &i, &err) == 1 && i == 77,
          "absent optional returns 1, out untouched");
    CHECK(ft_json_get_int(j, "spec", "absent", true, 0, 10, &i, &err) < 0 &&
              err.code == FT_EMISSING,
          "absent required is missing_field: '%s'", err.msg);
    CHECK(ft_json_get_num(j, NULL, "f", true, 0, 3, &d, &err) == 0 && d == 2.5, "number in bounds");
    CHECK(ft_json_get_num(j, NULL, "f", true, 0, 2, &d, &err) < 0, "number out of bounds: '%s'",
          err.msg);
    CHECK(ft_json_get_num(j, NULL, "n", true, 0, 10, &d, &err) == 0 && d == 5,
          "an integer is a number");
    CHECK(ft_json_get_bool(j, NULL, "b", true, &b, &err) == 0 && b, "bool");
    CHECK(ft_json_get_bool(j, NULL, "n", true, &b, &err) < 0, "number is not a bool: '%s'",
          err.msg);
    CHECK(ft_json_get_str(j, NULL, "s", true, 3, &s, &err) == 0 && strcmp(s, "hey") == 0,
          "string within length");
    CHECK(ft_json_get_str(j, NULL, "s", true, 2, &s, &err) < 0 && err.code == FT_ETOOLARGE,
          "string too long: '%s'", err.msg);
    CHECK(ft_json_get_str(j, NULL, "n", true, 2, &s, &err) < 0 && err.code == FT_EBADFIELD,
          "number is not a string");
    CHECK(ft_json_check_keys(j, "spec", allowed, &err) == 0, "all keys allowed");
    CHECK(ft_json_check_keys(j, "spec", fewer, &err) < 0 &&
              strcmp(err.msg, "spec.f: unknown key") == 0,
          "unknown key named: '%s'", err.msg);
    {
        char *p = ft_json_print(j);
        CHECK(p && strstr(p, "\"s\":\"hey\""), "print compact: %s", p ? p : "(null)");
        free(p);
    }
    cJSON_Delete(j);
}

/* Mutated and truncated inputs never crash the parser, and whatever it
 * accepts prints back to text that it accepts again with the same meaning. */
static void test_fuzz(void)
{
    static const char *const seeds[] = {
        "{\"v\":1,\"type\":\"submit\",\"spec\":{\"command\":[\"a\",\"b\"],\"gpus\":2,\"env\":{"
        "\"A\":\"x\"}}}",
        "[1,-2.5e3,true,false,null,\"\\u00e9\\n\",{\"k\":[[],{}]}]",
        "\"caf\xc3\xa9 \\ud83d\\ude00\"",
    };
    unsigned seed = 99;
    int accepted = 0, rejected = 0, roundtrip_bad = 0;
    char buf[512];

    for (int it = 0; it < 30000; it++) {
        const char *base = seeds[it % 3];
        size_t n = strlen(base);
        ft_err_t err;
        cJSON *j;

        memcpy(buf, base, n + 1);
        switch (rand_r(&seed) % 3) {
        case 0:
            buf[rand_r(&seed) % n] = (char)(rand_r(&seed) % 256);
            break;
        case 1:
            n = rand_r(&seed) % n;
            break;
        default:
            buf[rand_r(&seed) % n] = "{}[],:\"\\0-e."[rand_r(&seed) % 12];
            break;
        }
        j = ft_json_parse(buf, n, &err);
        if (!j) {
            rejected++;
            continue;
        }
        accepted++;
        {
            char *t = ft_json_print(j);
            cJSON *k = t ? ft_json_parse(t, strlen(t), &err) : NULL;

            if (!k || !cJSON_Compare(j, k, true))
                roundtrip_bad++;
            cJSON_Delete(k);
            free(t);
        }
        cJSON_Delete(j);
    }
    CHECK(accepted > 100 && rejected > 1000,
          "30000 mutated inputs: %d accepted, %d rejected, no crash", accepted, rejected);
    CHECK(roundtrip_bad == 0, "every accepted input prints and parses back the same (%d did not)",
          roundtrip_bad);
}

int main(void)
{
    test_parse();
    test_getters();
    test_fuzz();
    return check_done("test_json");
}
