/*
 * client/output.c: how ftctl shows things: aligned text tables for people, the
 * reply payload as one JSON document for scripts, durations, and the small
 * parsers and getters the subcommands share.
 *
 * Invariants: every cell printed in a table has its control characters replaced
 * by '?', so a job name cannot move the cursor or recolour the terminal.
 *
 * Cost: a table holds all its cells until printed: O(rows x cols) memory, one
 * pass to size the columns and one to print.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftctl.h"

struct ftctl_table {
    int ncols;     /* columns, fixed at creation */
    int nrows;     /* rows added so far, header excluded */
    int cap;       /* rows allocated */
    char **cells;  /* (nrows + 1, ncols) owned strings; row 0 is the header */
    size_t *width; /* (ncols) widest cell per column, bytes */
};

static char *clean_copy(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        return NULL;
    for (char *p = d; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return d;
}

ftctl_table_t *ftctl_table_new(int ncols, const char *const *headers)
{
    ftctl_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->width = calloc((size_t)ncols, sizeof(size_t));
    t->cap = 16;
    t->cells = calloc((size_t)t->cap * (size_t)ncols, sizeof(char *));
    if (!t->width || !t->cells)
        goto fail;
    for (int i = 0; i < ncols; i++) {
        t->cells[i] = clean_copy(headers[i]);
        if (!t->cells[i])
            goto fail;
        t->width[i] = strlen(t->cells[i]);
    }
    return t;
fail:
    ftctl_table_destroy(&t);
    return NULL;
}

int ftctl_table_add(ftctl_table_t *t, const char *const *cells)
{
    /* Row r lives at cells[(r + 1) * ncols]; the header is row 0 there. */
    if (t->nrows + 2 > t->cap) {
        int cap = t->cap * 2;
        char **n = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(char *));
        if (!n)
            return -1;
        t->cells = n;
        t->cap = cap;
    }
    char **row = t->cells + (size_t)(t->nrows + 1) * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        row[i] = clean_copy(cells[i]);
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return -1;
        }
        size_t w = strlen(row[i]);
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->nrows++;
    return 0;
}

void ftctl_table_print(const ftctl_table_t *t, FILE *f)
{
    for (int r = 0; r <= t->nrows; r++) {
        char **row = t->cells + (size_t)r * (size_t)t->ncols;
        for (int i = 0; i < t->ncols; i++) {
            if (i == t->ncols - 1)
                fprintf(f, "%s\n", row[i]);
            else
                fprintf(f, "%-*s  ", (int)t->width[i], row[i]);
        }
    }
}

void ftctl_table_print_csv(const ftctl_table_t *t, FILE *f)
{
    for (int r = 0; r <= t->nrows; r++) {
        char **row = t->cells + (size_t)r * (size_t)t->ncols;
        for (int i = 0; i < t->ncols; i++) {
            const char *c = row[i];
            if (strpbrk(c, ",\"\n\r")) {
                fputc('"', f);
                for (; *c; c++) {
                    if (*c == '"')
                        fputc('"', f);
                    fputc(*c, f);
                }
                fputc('"', f);
            } else {
                fputs(c, f);
            }
            fputs(i == t->ncols - 1 ? "\r\n" : ",", f);
        }
    }
}

void ftctl_table_destroy(ftctl_table_t **tp)
{
    ftctl_table_t *t = *tp;
    if (!t)
        return;
    if (t->cells)
        for (size_t i = 0; i < (size_t)(t->nrows + 1) * (size_t)t->ncols; i++)
            free(t->cells[i]);
    free(t->cells);
    free(t->width);
    free(t);
    *tp = NULL;
}

void ftctl_fmt_duration(int64_t s, char *buf, size_t len)
{
    if (s < 0)
        snprintf(buf, len, "-");
    else if (s < 60)
        snprintf(buf, len, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

/* Seconds as a double (an ETA from the wire), rounded to the nearest second;
 * NaN or negative shows as "-", anything past a million days as that. Done
 * without libm: its pow and llround were all that made ftctl load it. */
void ftctl_fmt_duration_f(double s, char *buf, size_t len)
{
    const double cap = 86400.0 * 1e6;

    if (!(s >= 0)) {
        ftctl_fmt_duration(-1, buf, len);
        return;
    }
    ftctl_fmt_duration((int64_t)((s < cap ? s : cap) + 0.5), buf, len);
}

void ftctl_print_payload(const cJSON *reply)
{
    cJSON *copy = cJSON_Duplicate(reply, 1);
    if (!copy) {
        ftctl_die_msg("out of memory");
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "v");
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "type");
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "re");
    char *s = cJSON_Print(copy);
    if (s)
        printf("%s\n", s);
    else
        ftctl_die_msg("out of memory");
    free(s);
    cJSON_Delete(copy);
}

int64_t ftctl_get_int(const cJSON *obj, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

double ftctl_get_num(const cJSON *obj, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

const char *ftctl_get_str(const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

bool ftctl_is_null_or_absent(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return !v || cJSON_IsNull(v);
}

bool ftctl_state_is_final(const char *state)
{
    static const char *const finals[] = {"COMPLETED", "FAILED", "CANCELLED"};
    for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
        if (strcmp(state, finals[i]) == 0)
            return true;
    return false;
}

int ftctl_parse_job_id(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)s[0])) {
        ftctl_die_msg("bad job id '%s': expected a positive integer", ft_sanitize(s, 64));
        return -1;
    }
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0) {
        ftctl_die_msg("bad job id '%s': expected a positive integer", ft_sanitize(s, 64));
        return -1;
    }
    *out = v;
    return 0;
}

int ftctl_parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Money and energy for people: cents (or 0.01 kWh) for amounts of 1 and up,
 * six decimals below that, so that a short job's cost reads
 * "0.000213" rather than "0.00"; "-" when the row has no cost model. */
void ftctl_fmt_amount(char *buf, size_t len, double v, bool costed, bool sign)
{
    if (!costed)
        snprintf(buf, len, "-");
    else if (v == 0 || fabs(v) >= 1)
        snprintf(buf, len, sign ? "%+.2f" : "%.2f", v);
    else
        snprintf(buf, len, sign ? "%+.6f" : "%.6f", v);
}
