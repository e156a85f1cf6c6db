/*
 * ledger.c: accounting on top of the allocations ledger: checkpoints of open
 * intervals, energy and cost per interval, utilisation, break-even and team
 * budgets (docs/cost-model.md).
 *
 * Invariants: an interval [start_ms, end_ms) is billed once; pieces of it
 * (clipped to a window, split at UTC days) add up to it exactly. Energy is
 * the worker's measurement when one was stored (split over pieces by time),
 * else the configured draw x time, and every figure says which. Time an open
 * interval spent while no ftsched ran is still billed (the device stayed
 * allocated) but reported as unobserved, so a crash is visible.
 * Costs: each report is one pass over the allocations overlapping the window
 * plus a hash table of groups; the checkpoint is one UPDATE of open rows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ledger.h"
#include "keytab.h"
#include "sched_int.h"

struct ledger {
    cost_model_t model;     /* the model in force */
    bool loaded;            /* model holds the file's (or built-in) figures */
    char path[FT_PATH_MAX]; /* file model was read from, "" = built-in */
    struct timespec mtime;  /* its modification time when read */
    bool recovered;         /* the restart gap was recorded */
    int64_t *open_ids;      /* allocations open when this process started */
    int nopen;              /* entries in open_ids */
    int64_t next_check;     /* monotonic ms of the next checkpoint */
    int64_t next_budget;    /* monotonic ms of the next budget evaluation */
};

void ledger_destroy(ledger_t **l)
{
    if (l && *l) {
        free((*l)->open_ids);
        free(*l);
        *l = NULL;
    }
}

static ledger_t *ledger_get(sched_t *s)
{
    if (!s->ledger)
        s->ledger = calloc(1, sizeof(*s->ledger));
    return s->ledger;
}

int ledger_start(sched_t *s, ft_err_t *err)
{
    ledger_t *l = ledger_get(s);
    sqlite3_stmt *st;
    int cap = 0, rc;

    if (!l) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    st = db_stmt(s->db, "SELECT id FROM allocations WHERE end_ms IS NULL", err);
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (l->nopen == cap) {
            int64_t *g = realloc(l->open_ids, (size_t)(cap = cap ? 2 * cap : 64) * sizeof(*g));

            if (!g) {
                sqlite3_reset(st);
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                return -1;
            }
            l->open_ids = g;
        }
        l->open_ids[l->nopen++] = sqlite3_column_int64(st, 0);
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    return 0;
}

const cost_model_t *ledger_model(sched_t *s, ft_err_t *err)
{
    ledger_t *l = ledger_get(s);
    const char *path = s->cfg.cost_file;
    struct stat st;

    if (!l) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    if (!*path) {
        if (!l->loaded || l->path[0]) {
            cost_model_defaults(&l->model);
            l->path[0] = '\0';
            l->loaded = true;
        }
        return &l->model;
    }
    if (stat(path, &st) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cost file '%s': cannot stat", ft_sanitize(path, 200));
        return NULL;
    }
    if (!l->loaded || strcmp(l->path, path) != 0 || st.st_mtim.tv_sec != l->mtime.tv_sec ||
        st.st_mtim.tv_nsec != l->mtime.tv_nsec) {
        l->loaded = false;
        cost_model_defaults(&l->model);
        if (cost_model_load(&l->model, path, err) < 0)
            return NULL;
        ft_strlcpy(l->path, path, sizeof(l->path));
        l->mtime = st.st_mtim;
        l->loaded = true;
    }
    return &l->model;
}

/* ---- one pass over interval pieces ---- */

typedef enum { SPLIT_NONE, SPLIT_DAY, SPLIT_MONTH } split_t;

/* One piece of one interval, with everything a report needs. */
typedef struct {
    int64_t job;             /* job id */
    const char *job_name;    /* job name */
    const char *user, *team; /* owner */
    const char *node;        /* node */
    const char *model;       /* device model */
    char period[16];         /* "YYYY-MM-DD" or "YYYY-MM" (split), else "" */
    double hours;            /* device hours in the piece */
    double kwh;              /* energy at the device in the piece */
    bool measured;           /* kwh came from the worker's counter */
    double unobserved_s;     /* seconds of the piece not observed by a running ftsched */
    cost_rates_t r;          /* rates of this device */
    double capital;          /* hours x r.capital */
    double maintenance;      /* hours x r.maintenance */
    double energy_cost;      /* kwh x PUE x price */
} piece_t;

typedef int (*piece_fn)(void *ctx, const piece_t *p);

static int count_devices(sched_t *s, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db, "SELECT count(*) FROM devices", err);
    int n = 0;

    if (!st)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return n;
}

static int each_piece(sched_t *s, const cost_model_t *m, int64_t lo, int64_t hi, split_t sp,
                      piece_fn fn, void *ctx, ft_err_t *err)
{
    int64_t now = sched_now_ms(s);
    int site_gpus = count_devices(s, err), rc;
    sqlite3_stmt *st;

    if (site_gpus < 0)
        return -1;
    st = db_stmt(s->db,
                 "SELECT a.job_id, j.name, j.user, j.team, a.node, a.device_model, a.start_ms,"
                 " coalesce(a.end_ms, ?1), l.energy_mj, coalesce(l.unobserved_ms, 0)"
                 " FROM allocations a JOIN jobs j ON j.id = a.job_id"
                 " LEFT JOIN ledger_intervals l ON l.alloc_id = a.id"
                 " WHERE a.start_ms < ?3 AND coalesce(a.end_ms, ?1) > ?2"
                 " ORDER BY a.job_id, a.attempt, a.rank",
                 err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        piece_t p;
        int64_t a0 = sqlite3_column_int64(st, 6), b0 = sqlite3_column_int64(st, 7), a, b;
        bool measured = sqlite3_column_type(st, 8) != SQLITE_NULL;
        double mj = (double)sqlite3_column_int64(st, 8);
        double unobs = (double)sqlite3_column_int64(st, 9) / 1000.0;

        memset(&p, 0, sizeof(p));
        p.job = sqlite3_column_int64(st, 0);
        p.job_name = db_col_text(st, 1);
        p.user = db_col_text(st, 2);
        p.team = db_col_text(st, 3);
        p.node = db_col_text(st, 4);
        p.model = db_col_text(st, 5);
        cost_rates(m, p.node, p.model, site_gpus, &p.r);
        a = a0 < lo ? lo : a0;
        b = b0 > hi ? hi : b0;
        while (a < b) {
            int64_t e = b;
            double frac = b0 > a0 ? (double)(e - a) / (double)(b0 - a0) : 0;

            if (sp != SPLIT_NONE) {
                e = sched_period_end(a, sp == SPLIT_MONTH, p.period, sizeof(p.period));
                if (e > b)
                    e = b;
                frac = b0 > a0 ? (double)(e - a) / (double)(b0 - a0) : 0;
            }
            p.hours = (double)(e - a) / 3600000.0;
            p.measured = measured;
            p.kwh = measured ? mj / 3.6e9 * frac : p.r.power_w / 1000.0 * p.hours;
            p.unobserved_s = unobs * frac;
            p.capital = p.hours * p.r.capital;
            p.maintenance = p.hours * p.r.maintenance;
            p.energy_cost = cost_energy(&p.r, p.kwh);
            if (fn(ctx, &p) < 0) {
                sqlite3_reset(st);
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                return -1;
            }
            a = e;
        }
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    return 0;
}

/* ---- sums by key ---- */

typedef struct {
    keytab_entry_t e;                 /* group key, chain, order: keytab.h */
    double hours;                     /* device hours */
    double kwh, kwh_measured;         /* energy, of which measured */
    double capital, maintenance;      /* cost parts */
    double energy_cost;               /* cost part */
    double unobserved_s;              /* seconds not observed */
    double cloud[COST_MAX_CLOUDS];    /* cloud-equivalent cost per offer */
    double unpriced[COST_MAX_CLOUDS]; /* hours the offer does not price */
    char *label;                      /* extra text (job name, team) */
    char *label2;                     /* more extra text (user) */
} agg_t;

typedef struct {
    keytab_t tab;          /* the rows */
    const cost_model_t *m; /* for cloud prices */
} aggtab_t;

static agg_t *agg_get(aggtab_t *t, const char *key)
{
    return keytab_get(&t->tab, key, sizeof(agg_t));
}

static agg_t *agg_first(const aggtab_t *t)
{
    return (agg_t *)t->tab.first;
}

static agg_t *agg_next(const agg_t *r)
{
    return (agg_t *)r->e.order;
}

static void agg_fields_free(void *row)
{
    agg_t *r = row;

    free(r->label);
    free(r->label2);
}

static void agg_free(aggtab_t *t)
{
    keytab_clear(&t->tab, agg_fields_free);
}

static void agg_add(aggtab_t *t, agg_t *r, const piece_t *p)
{
    r->hours += p->hours;
    r->kwh += p->kwh;
    if (p->measured)
        r->kwh_measured += p->kwh;
    r->capital += p->capital;
    r->maintenance += p->maintenance;
    r->energy_cost += p->energy_cost;
    r->unobserved_s += p->unobserved_s;
    for (int i = 0; i < t->m->nclouds; i++) {
        double price = cost_cloud_price(&t->m->clouds[i], p->model);

        if (price < 0)
            r->unpriced[i] += p->hours;
        else
            r->cloud[i] += price * p->hours;
    }
}

static double cost_of(const agg_t *r)
{
    return r->capital + r->maintenance + r->energy_cost;
}

/* The money and energy columns of r, added to o. ref: offer index. */
static void agg_columns(const aggtab_t *t, const agg_t *r, int ref, cJSON *o)
{
    cJSON *clouds = cJSON_CreateArray();

    cJSON_AddNumberToObject(o, "energy_kwh", r->kwh);
    cJSON_AddNumberToObject(o, "energy_measured_kwh", r->kwh_measured);
    cJSON_AddStringToObject(o, "energy_source",
                            r->kwh_measured <= 0        ? "estimated"
                            : r->kwh_measured >= r->kwh ? "measured"
                                                        : "mixed");
    cJSON_AddNumberToObject(o, "cost", cost_of(r));
    cJSON_AddNumberToObject(o, "cost_capital", r->capital);
    cJSON_AddNumberToObject(o, "cost_maintenance", r->maintenance);
    cJSON_AddNumberToObject(o, "cost_energy", r->energy_cost);
    cJSON_AddNumberToObject(o, "unobserved_seconds", r->unobserved_s);
    for (int i = 0; i < t->m->nclouds; i++) {
        cJSON *c = cJSON_CreateObject();

        cJSON_AddStringToObject(c, "offer", t->m->clouds[i].name);
        cJSON_AddNumberToObject(c, "cost", r->cloud[i]);
        cJSON_AddNumberToObject(c, "unpriced_gpu_hours", r->unpriced[i]);
        cJSON_AddItemToArray(clouds, c);
    }
    cJSON_AddItemToObject(o, "cloud", clouds);
    if (ref >= 0) {
        cJSON_AddStringToObject(o, "cloud_offer", t->m->clouds[ref].name);
        cJSON_AddNumberToObject(o, "cloud_cost", r->cloud[ref]);
        cJSON_AddNumberToObject(o, "difference", r->cloud[ref] - cost_of(r));
    }
}

static int find_offer(const cost_model_t *m, const char *cloud, ft_err_t *err)
{
    if (m->nclouds == 0)
        return -1;
    if (!cloud || !*cloud)
        return 0;
    for (int i = 0; i < m->nclouds; i++)
        if (strcmp(m->clouds[i].name, cloud) == 0)
            return i;
    ft_err_set(err, FT_EBADFIELD, "field 'cloud': no cloud offer '%s' in the cost model",
               ft_sanitize(cloud, 64));
    return -2;
}

static cJSON *budgets_json(const cost_model_t *m, const aggtab_t *month, int64_t month_ms);
static int month_piece(void *vctx, const piece_t *p);
static int64_t month_start_ms(int64_t now_ms);

/* ---- usage columns ---- */

typedef struct {
    aggtab_t t; /* sums */
    int by;     /* index in usage_keys */
} usage_ctx_t;

static const char *const usage_keys[] = {"user",      "team", "job",   "node",
                                         "gpu_model", "day",  "month", NULL};

static int usage_piece(void *vctx, const piece_t *p)
{
    usage_ctx_t *c = vctx;
    char buf[32];
    const char *k = p->period;
    agg_t *r;

    switch (c->by) {
    case 0:
        k = p->user;
        break;
    case 1:
        k = p->team;
        break;
    case 2:
        snprintf(buf, sizeof(buf), "%lld", (long long)p->job);
        k = buf;
        break;
    case 3:
        k = p->node;
        break;
    case 4:
        k = p->model;
        break;
    default:
        break;
    }
    if (!(r = agg_get(&c->t, k)))
        return -1;
    agg_add(&c->t, r, p);
    return 0;
}

int ledger_usage_costs(sched_t *s, cJSON *report, const char *group_by, int64_t since,
                       int64_t until, const char *cloud, ft_err_t *err)
{
    const cost_model_t *m = ledger_model(s, err);
    usage_ctx_t *c;
    cJSON *rows = cJSON_GetObjectItemCaseSensitive(report, "rows"), *row, *names;
    int ref, rc = -1;

    if (!m)
        return -1;
    if ((ref = find_offer(m, cloud, err)) < -1)
        return -1;
    c = calloc(1, sizeof(*c));
    if (!c) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    c->t.m = m;
    for (c->by = 0; usage_keys[c->by] && strcmp(usage_keys[c->by], group_by) != 0; c->by++)
        ;
    if (!usage_keys[c->by]) {
        ft_err_set(err, FT_EBADFIELD, "field 'group_by': '%s' is not known",
                   ft_sanitize(group_by, 32));
        goto out;
    }
    if (each_piece(s, m, since * 1000, until * 1000,
                   c->by == 5   ? SPLIT_DAY
                   : c->by == 6 ? SPLIT_MONTH
                                : SPLIT_NONE,
                   usage_piece, c, err) < 0)
        goto out;
    cJSON_ArrayForEach(row, rows)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "key"));
        agg_t *r = k ? agg_get(&c->t, k) : NULL;

        if (r)
            agg_columns(&c->t, r, ref, row);
    }
    if (m->nbudgets > 0) { /* the burn of every budget this month */
        aggtab_t month;
        int64_t now = sched_now_ms(s);

        memset(&month, 0, sizeof(month));
        month.m = m;
        if (each_piece(s, m, month_start_ms(now), now, SPLIT_NONE, month_piece, &month, err) < 0) {
            agg_free(&month);
            goto out;
        }
        cJSON_AddItemToObject(report, "budgets", budgets_json(m, &month, now));
        agg_free(&month);
    }
    cJSON_AddStringToObject(report, "currency", m->currency);
    names = cJSON_AddArrayToObject(report, "clouds");
    for (int i = 0; i < m->nclouds; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(m->clouds[i].name));
    rc = 0;
out:
    agg_free(&c->t);
    free(c);
    return rc;
}

/* ---- the team leads' report ---- */

typedef struct {
    aggtab_t days;      /* by day */
    aggtab_t team_days; /* by "team\tday" */
    aggtab_t teams;     /* by team */
    aggtab_t jobs;      /* by job id */
    aggtab_t total;     /* one row "" */
    aggtab_t month;     /* by team, the current UTC month (budgets) */
} report_ctx_t;

static int report_piece(void *vctx, const piece_t *p)
{
    report_ctx_t *c = vctx;
    char key[FT_NAME_MAX + 24];
    agg_t *r;

    if (!(r = agg_get(&c->days, p->period)))
        return -1;
    agg_add(&c->days, r, p);
    snprintf(key, sizeof(key), "%s\t%s", p->team, p->period);
    if (!(r = agg_get(&c->team_days, key)))
        return -1;
    agg_add(&c->team_days, r, p);
    if (!(r = agg_get(&c->teams, p->team)))
        return -1;
    agg_add(&c->teams, r, p);
    snprintf(key, sizeof(key), "%lld", (long long)p->job);
    if (!(r = agg_get(&c->jobs, key)))
        return -1;
    if (!r->label && (!(r->label = strdup(p->job_name)) || !(r->label2 = strdup(p->user))))
        return -1;
    agg_add(&c->jobs, r, p);
    if (!(r = agg_get(&c->total, "")))
        return -1;
    agg_add(&c->total, r, p);
    return 0;
}

static int month_piece(void *vctx, const piece_t *p)
{
    aggtab_t *t = vctx;
    agg_t *r = agg_get(t, p->team);

    if (!r)
        return -1;
    agg_add(t, r, p);
    return 0;
}

static int cmp_hours_desc(const void *a, const void *b)
{
    double x = (*(agg_t *const *)a)->hours, y = (*(agg_t *const *)b)->hours;

    return x < y ? 1 : x > y ? -1 : strcmp((*(agg_t *const *)a)->e.key, (*(agg_t *const *)b)->e.key);
}

static int64_t month_start_ms(int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm) * 1000;
}

/* Device capacity: fixed cost per hour of every registered device, and the
 * break-even sums per offer (sum of fixed, sum of cloud - energy). */
typedef struct {
    int devices;                       /* registered devices */
    int64_t *first_ms;                 /* (devices) when each was first seen, unix ms */
    double *rate;                      /* (devices) fixed cost per hour of each */
    double be_fixed[COST_MAX_CLOUDS];  /* sum of fixed over devices the offer prices */
    double be_margin[COST_MAX_CLOUDS]; /* sum of (cloud - energy) over them */
    int be_devices[COST_MAX_CLOUDS];   /* devices the offer prices */
} capacity_t;

static int capacity(sched_t *s, const cost_model_t *m, capacity_t *cap, ft_err_t *err)
{
    int n = count_devices(s, err), rc;
    sqlite3_stmt *st;

    memset(cap, 0, sizeof(*cap));
    if (n < 0)
        return -1;
    cap->first_ms = calloc((size_t)n + 1, sizeof(*cap->first_ms));
    cap->rate = calloc((size_t)n + 1, sizeof(*cap->rate));
    if (!cap->first_ms || !cap->rate) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    st = db_stmt(s->db,
                 "SELECT d.node, d.model, coalesce(l.first_ms, ?1) FROM devices d"
                 " LEFT JOIN ledger_devices l ON l.node = d.node AND l.idx = d.idx"
                 " ORDER BY d.node, d.idx",
                 err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, sched_now_ms(s));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cost_rates_t r;
        const char *model = db_col_text(st, 1);

        if (cap->devices >= n) { /* a device registered since the count: next time */
            rc = SQLITE_DONE;
            break;
        }
        cost_rates(m, db_col_text(st, 0), model, n, &r);
        cap->first_ms[cap->devices] = sqlite3_column_int64(st, 2);
        cap->rate[cap->devices] = r.fixed;
        cap->devices++;
        for (int i = 0; i < m->nclouds; i++) {
            double price = cost_cloud_price(&m->clouds[i], model);

            if (price >= 0) {
                cap->be_fixed[i] += r.fixed;
                cap->be_margin[i] += price - r.energy;
                cap->be_devices[i]++;
            }
        }
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    return 0;
}

/* Device-hours available in [a, b) (each device from when it was first seen)
 * and their fixed cost. */
static double available(const capacity_t *cap, int64_t a, int64_t b, double *fixed)
{
    double h = 0;

    *fixed = 0;
    for (int i = 0; i < cap->devices; i++) {
        int64_t s0 = a > cap->first_ms[i] ? a : cap->first_ms[i];

        if (b > s0) {
            h += (double)(b - s0) / 3600000.0;
            *fixed += cap->rate[i] * (double)(b - s0) / 3600000.0;
        }
    }
    return h;
}

static void capacity_free(capacity_t *cap)
{
    free(cap->first_ms);
    free(cap->rate);
    cap->first_ms = NULL;
    cap->rate = NULL;
}

static cJSON *budgets_json(const cost_model_t *m, const aggtab_t *month, int64_t month_ms)
{
    cJSON *arr = cJSON_CreateArray();
    char key[16];

    sched_period_end(month_ms, true, key, sizeof(key));
    for (int i = 0; i < m->nbudgets; i++) {
        const cost_budget_t *b = &m->budgets[i];
        cJSON *o = cJSON_CreateObject();
        double h = 0, money = 0;
        bool over;

        for (const agg_t *r = agg_first(month); r; r = agg_next(r))
            if (strcmp(r->e.key, b->team) == 0) {
                h = r->hours;
                money = cost_of(r);
            }
        over = (b->gpu_hours > 0 && h >= b->gpu_hours) || (b->money > 0 && money >= b->money);
        cJSON_AddStringToObject(o, "team", b->team);
        cJSON_AddStringToObject(o, "month", key);
        if (b->gpu_hours > 0)
            cJSON_AddNumberToObject(o, "budget_gpu_hours", b->gpu_hours);
        else
            cJSON_AddNullToObject(o, "budget_gpu_hours");
        if (b->money > 0)
            cJSON_AddNumberToObject(o, "budget_money", b->money);
        else
            cJSON_AddNullToObject(o, "budget_money");
        cJSON_AddNumberToObject(o, "used_gpu_hours", h);
        cJSON_AddNumberToObject(o, "used_money", money);
        cJSON_AddBoolToObject(o, "over", over);
        cJSON_AddStringToObject(o, "action", b->over == COST_OVER_HOLD ? "hold" : "lower_priority");
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

cJSON *ledger_report(sched_t *s, int64_t since, int64_t until, ft_err_t *err)
{
    const cost_model_t *m = ledger_model(s, err);
    report_ctx_t *c = NULL;
    capacity_t cap;
    int64_t now = sched_now_ms(s), lo = since * 1000, hi = until * 1000, mstart;
    cJSON *out = NULL, *o, *arr;
    agg_t **v = NULL;
    double avail_h, alloc_h, alloc_fixed, avail_fixed, day_fixed;

    if (!m)
        return NULL;
    if (hi > now)
        hi = now;
    if (hi < lo)
        hi = lo;
    c = calloc(1, sizeof(*c));
    if (!c) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    c->days.m = c->team_days.m = c->teams.m = c->jobs.m = c->total.m = c->month.m = m;
    memset(&cap, 0, sizeof(cap));
    mstart = month_start_ms(now);
    if (capacity(s, m, &cap, err) < 0 ||
        each_piece(s, m, lo, hi, SPLIT_DAY, report_piece, c, err) < 0 ||
        each_piece(s, m, mstart, now, SPLIT_NONE, month_piece, &c->month, err) < 0)
        goto out;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "currency", m->currency);
    cJSON_AddNumberToObject(out, "since", (double)since);
    cJSON_AddNumberToObject(out, "until", (double)(hi / 1000));
    {
        agg_t zero, *t = agg_first(&c->total) ? agg_first(&c->total) : &zero;

        memset(&zero, 0, sizeof(zero));
        o = cJSON_AddObjectToObject(out, "totals");
        cJSON_AddNumberToObject(o, "gpu_hours", t->hours);
        agg_columns(&c->total, t, m->nclouds ? 0 : -1, o);
        alloc_h = t->hours;
        alloc_fixed = t->capital + t->maintenance;
    }
    avail_h = available(&cap, lo, hi, &avail_fixed);
    o = cJSON_AddObjectToObject(out, "utilisation");
    cJSON_AddNumberToObject(o, "devices", cap.devices);
    cJSON_AddNumberToObject(o, "available_gpu_hours", avail_h);
    cJSON_AddNumberToObject(o, "allocated_gpu_hours", alloc_h);
    cJSON_AddNumberToObject(o, "utilisation", avail_h > 0 ? alloc_h / avail_h : 0);
    cJSON_AddNumberToObject(o, "idle_gpu_hours", avail_h > alloc_h ? avail_h - alloc_h : 0);
    {
        double idle = avail_fixed - alloc_fixed;

        cJSON_AddNumberToObject(o, "idle_cost", idle > 0 ? idle : 0);
    }
    arr = cJSON_AddArrayToObject(out, "break_even");
    for (int i = 0; i < m->nclouds; i++) {
        cJSON *b = cJSON_CreateObject();
        double u = cap.be_devices[i] ? cost_break_even(cap.be_fixed[i], 0, cap.be_margin[i]) : -1;

        cJSON_AddStringToObject(b, "offer", m->clouds[i].name);
        cJSON_AddNumberToObject(b, "devices_priced", cap.be_devices[i]);
        if (u >= 0)
            cJSON_AddNumberToObject(b, "utilisation", u);
        else
            cJSON_AddNullToObject(b, "utilisation");
        cJSON_AddItemToArray(arr, b);
    }
    arr = cJSON_AddArrayToObject(out, "days");
    for (const agg_t *r = agg_first(&c->days); r; r = agg_next(r)) {
        cJSON *d = cJSON_CreateObject();
        char key[16];
        struct tm tm;
        int64_t d0, d1;

        memset(&tm, 0, sizeof(tm));
        if (sscanf(r->e.key, "%d-%d-%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
            continue;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        d0 = (int64_t)timegm(&tm) * 1000;
        d1 = sched_period_end(d0, false, key, sizeof(key));
        if (d0 < lo)
            d0 = lo;
        if (d1 > hi)
            d1 = hi;
        cJSON_AddStringToObject(d, "day", r->e.key);
        cJSON_AddNumberToObject(d, "gpu_hours", r->hours);
        cJSON_AddNumberToObject(d, "available_gpu_hours", available(&cap, d0, d1, &day_fixed));
        cJSON_AddNumberToObject(d, "cost", cost_of(r));
        cJSON_AddItemToArray(arr, d);
    }
    arr = cJSON_AddArrayToObject(out, "team_days");
    for (const agg_t *r = agg_first(&c->team_days); r; r = agg_next(r)) {
        cJSON *d = cJSON_CreateObject();
        const char *tab = strchr(r->e.key, '\t'); /* keys are "team\tday" */
        char team[FT_NAME_MAX + 1];
        size_t n = tab ? (size_t)(tab - r->e.key) : strlen(r->e.key);

        if (n > FT_NAME_MAX)
            n = FT_NAME_MAX;
        memcpy(team, r->e.key, n);
        team[n] = '\0';
        cJSON_AddStringToObject(d, "team", team);
        cJSON_AddStringToObject(d, "day", tab ? tab + 1 : "");
        cJSON_AddNumberToObject(d, "gpu_hours", r->hours);
        cJSON_AddNumberToObject(d, "cost", cost_of(r));
        cJSON_AddItemToArray(arr, d);
    }
    arr = cJSON_AddArrayToObject(out, "teams");
    for (const agg_t *r = agg_first(&c->teams); r; r = agg_next(r)) {
        cJSON *d = cJSON_CreateObject();

        cJSON_AddStringToObject(d, "team", r->e.key);
        cJSON_AddNumberToObject(d, "gpu_hours", r->hours);
        agg_columns(&c->teams, r, m->nclouds ? 0 : -1, d);
        cJSON_AddItemToArray(arr, d);
    }
    v = calloc((size_t)c->jobs.tab.n + 1, sizeof(*v));
    if (!v) {
        cJSON_Delete(out);
        out = NULL;
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    {
        int n = 0;

        for (agg_t *r = agg_first(&c->jobs); r; r = agg_next(r))
            v[n++] = r;
        qsort(v, (size_t)n, sizeof(*v), cmp_hours_desc);
        arr = cJSON_AddArrayToObject(out, "top_jobs");
        for (int i = 0; i < n && i < 10; i++) {
            cJSON *d = cJSON_CreateObject();

            cJSON_AddNumberToObject(d, "job_id", strtod(v[i]->e.key, NULL));
            cJSON_AddStringToObject(d, "name", v[i]->label ? v[i]->label : "");
            cJSON_AddStringToObject(d, "user", v[i]->label2 ? v[i]->label2 : "");
            cJSON_AddNumberToObject(d, "gpu_hours", v[i]->hours);
            cJSON_AddNumberToObject(d, "cost", cost_of(v[i]));
            cJSON_AddItemToArray(arr, d);
        }
    }
    cJSON_AddItemToObject(out, "budgets", budgets_json(m, &c->month, now));
out:
    free(v);
    capacity_free(&cap);
    if (c) {
        agg_free(&c->days);
        agg_free(&c->team_days);
        agg_free(&c->teams);
        agg_free(&c->jobs);
        agg_free(&c->total);
        agg_free(&c->month);
        free(c);
    }
    return out;
}

/* ---- checkpoints, restart gap, energy ---- */

int ledger_note_energy(sched_t *s, int64_t job, int attempt, int rank, int64_t energy_mj,
                       ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(
        s->db,
        "INSERT INTO ledger_intervals (alloc_id, checked_ms, energy_mj)"
        " SELECT id, ?4, ?5 FROM allocations WHERE job_id = ?1 AND attempt = ?2 AND rank = ?3"
        " ON CONFLICT (alloc_id) DO UPDATE SET energy_mj = excluded.energy_mj",
        err);

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_int(st, 3, rank);
    sqlite3_bind_int64(st, 4, sched_now_ms(s));
    sqlite3_bind_int64(st, 5, energy_mj);
    return db_step_done(s->db, st, err);
}

/* After a restart: each interval open when this process started was not
 * observed from its last checkpoint (or start) until now, or until it closed
 * if that came first (a hello reconciliation may close it before this runs).
 * Recorded once per process. */
static int recover(sched_t *s, ledger_t *l, ft_err_t *err)
{
    int64_t now = sched_now_ms(s);
    sqlite3_stmt *st;
    int n = 0;
    double worst = 0;

    for (int i = 0; i < l->nopen; i++) {
        st = db_stmt(s->db,
                     "INSERT INTO ledger_intervals (alloc_id, checked_ms, unobserved_ms)"
                     " SELECT a.id, ?1, max(0, min(coalesce(a.end_ms, ?1), ?1)"
                     " - max(a.start_ms, coalesce(l.checked_ms, a.start_ms)))"
                     " FROM allocations a LEFT JOIN ledger_intervals l ON l.alloc_id = a.id"
                     " WHERE a.id = ?2"
                     " ON CONFLICT (alloc_id) DO UPDATE SET"
                     " unobserved_ms = unobserved_ms + excluded.unobserved_ms,"
                     " checked_ms = excluded.checked_ms"
                     " RETURNING unobserved_ms",
                     err);
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, l->open_ids[i]);
        if (sqlite3_step(st) == SQLITE_ROW) {
            double g = (double)sqlite3_column_int64(st, 0) / 1000.0;

            n++;
            if (g > worst)
                worst = g;
        }
        if (sqlite3_reset(st) != SQLITE_OK) {
            ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(s->db->conn));
            return -1;
        }
    }
    if (n > 0)
        return sched_event(s, 0, NULL, "ledger", err,
                           "ftsched started with %d open interval(s); up to %.1f s of each was"
                           " not observed (billed, reported as unobserved)",
                           n, worst);
    return 0;
}

static int checkpoint(sched_t *s, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db,
                               "INSERT INTO ledger_intervals (alloc_id, checked_ms)"
                               " SELECT id, ?1 FROM allocations WHERE end_ms IS NULL"
                               " ON CONFLICT (alloc_id) DO UPDATE SET checked_ms = ?1",
                               err);

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, sched_now_ms(s));
    if (db_step_done(s->db, st, err) < 0)
        return -1;
    /* Capacity counts from when a device was first seen (an allocation on it
     * may be older, e.g. from before this table existed). */
    st =
        db_stmt(s->db,
                "INSERT OR IGNORE INTO ledger_devices (node, idx, first_ms)"
                " SELECT d.node, d.idx, min(?1, coalesce((SELECT min(a.start_ms) FROM allocations a"
                " WHERE a.node = d.node AND a.device_index = d.idx), ?1)) FROM devices d",
                err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, sched_now_ms(s));
    return db_step_done(s->db, st, err);
}

/* Holds or lowers the priority of teams over their monthly budget. */
static int budgets(sched_t *s, ft_err_t *err)
{
    const cost_model_t *m = ledger_model(s, err);
    aggtab_t month;
    int64_t now = sched_now_ms(s);
    sqlite3_stmt *st;
    int rc = -1;

    if (!m)
        return -1;
    memset(&month, 0, sizeof(month));
    month.m = m;
    /* the month's pass only when some team has a budget */
    if (m->nbudgets > 0 &&
        each_piece(s, m, month_start_ms(now), now, SPLIT_NONE, month_piece, &month, err) < 0)
        goto out;
    if (db_exec(s->db, "DELETE FROM budget_state", err) < 0)
        goto out;
    for (int i = 0; i < m->nbudgets; i++) {
        const cost_budget_t *b = &m->budgets[i];
        double h = 0, money = 0;
        char why[256];

        for (const agg_t *r = agg_first(&month); r; r = agg_next(r))
            if (strcmp(r->e.key, b->team) == 0) {
                h = r->hours;
                money = cost_of(r);
            }
        if (b->gpu_hours > 0 && h >= b->gpu_hours)
            snprintf(why, sizeof(why), "team '%s' used %.4g of %.4g GPU-hours this month", b->team,
                     h, b->gpu_hours);
        else if (b->money > 0 && money >= b->money)
            snprintf(why, sizeof(why), "team '%s' spent %.4g of %.4g %s this month", b->team, money,
                     b->money, m->currency);
        else
            continue;
        if (db_run(s->db, err,
                   "INSERT INTO budget_state (team, held, penalty, reason) VALUES (?, ?, ?, ?)",
                   "tddt", b->team, (int)(b->over == COST_OVER_HOLD),
                   (int)(b->over == COST_OVER_HOLD ? 0 : b->priority_penalty), why) < 0)
            goto out;
    }
    /* The visible reason on pending jobs: set for held teams, cleared when
     * the hold is lifted (a new month or a raised budget). */
    st = db_stmt(s->db,
                 "UPDATE jobs SET reason = CASE WHEN b.held THEN 'held: over budget: ' || b.reason"
                 " ELSE 'waiting at lower priority: over budget: ' || b.reason END"
                 " FROM budget_state b WHERE b.team = jobs.team AND jobs.state = 'PENDING'",
                 err);
    if (!st || db_step_done(s->db, st, err) < 0)
        goto out;
    st = db_stmt(
        s->db,
        "UPDATE jobs SET reason = '' WHERE state = 'PENDING' AND reason LIKE '%over budget: %'"
        " AND team NOT IN (SELECT team FROM budget_state)",
        err);
    if (!st || db_step_done(s->db, st, err) < 0)
        goto out;
    rc = 0;
out:
    agg_free(&month);
    return rc;
}

void ledger_cron(sched_t *s)
{
    ledger_t *l = ledger_get(s);
    int64_t mono = sched_mono_ms(s);
    ft_err_t err = {0};
    bool check, budget;

    if (!l)
        return;
    check = mono >= l->next_check;
    budget = mono >= l->next_budget;
    if (!check && !budget)
        return;
    if (sched_tx_begin(s, &err) < 0)
        goto fail;
    if (!l->recovered && recover(s, l, &err) < 0)
        goto abort;
    if (check && checkpoint(s, &err) < 0)
        goto abort;
    if (budget && budgets(s, &err) < 0)
        goto abort;
    if (sched_tx_commit(s, &err) < 0)
        goto fail;
    if (!l->recovered) {
        l->recovered = true;
        free(l->open_ids);
        l->open_ids = NULL;
        l->nopen = 0;
    }
    if (check)
        l->next_check = mono + LEDGER_CHECK_MS;
    if (budget) {
        l->next_budget = mono + LEDGER_BUDGET_MS;
        s->dirty = true; /* a lifted hold may let jobs start */
    }
    return;
abort:
    sched_tx_abort(s);
fail:
    ft_warn("ledger: %s (next try in %d s)", err.msg, LEDGER_BUDGET_MS / 1000);
    l->next_check = l->next_budget = mono + LEDGER_BUDGET_MS;
}
