/*
 * cost.c: the cost model (ft/cost.h, docs/cost-model.md): built-in reference
 * figures, the operator's INI-like file read over them, and the rates of one
 * GPU-hour.
 *
 * File syntax: "[site]", "[gpu \"NAME\"]", "[group \"NAME\"]", "[cloud \"NAME\"]",
 * "[budget \"TEAM\"]" sections of "key = value" lines; '#' starts a comment.
 * Every key is a row in a table with its bounds; an unknown key, a bad number,
 * a repeated key in one section or a value out of bounds is an error naming
 * the file, the line and the key.
 * Invariants: gpus[0] is "default"; matching never fails.
 * Costs: parse O(bytes x keys); rates O(groups x patterns + gpus).
 */
#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ft/cost.h"

/* ---- built-in figures (sources in docs/cost-model.md) ---- */

static const cost_gpu_t builtin_gpus[] = {
    /* H100 SXM single price, Epoch's 1.64 server overhead, 5 years, 75% of 700 W */
    {"default", 31250, 1.64, 5, 525},
    {"H100", 31250, 1.64, 5, 525},
    /* HGX H200: ~$39.1k per GPU for the whole server, so no further overhead */
    {"H200", 39100, 1.0, 5, 525},
    /* a CPU device is a share of a host already paid for: energy only */
    {"cpu", 0, 1.0, 5, 100},
};

static const struct {
    const char *offer; /* offer name */
    const char *model; /* model it rents */
    double price;      /* per GPU-hour */
} builtin_clouds[] = {
    {"aws-on-demand", "H100", 12.29},   {"aws-on-demand", "H200", 10.60},
    {"aws-on-demand", "A100", 4.10},    {"gcp-3yr-commit", "H100", 4.86},
    {"lambda-on-demand", "H100", 2.99}, {"lambda-on-demand", "A100", 1.29},
};

static void site_unset(cost_site_t *s)
{
    s->electricity = s->pue = s->maintenance_per_year = s->other_per_year = NAN;
}

static void gpu_unset(cost_gpu_t *g)
{
    g->price = g->server_overhead = g->years = g->power_w = NAN;
}

static cost_cloud_t *cloud_get(cost_model_t *m, const char *name, bool create)
{
    for (int i = 0; i < m->nclouds; i++)
        if (strcmp(m->clouds[i].name, name) == 0)
            return &m->clouds[i];
    if (!create || m->nclouds == COST_MAX_CLOUDS)
        return NULL;
    cost_cloud_t *c = &m->clouds[m->nclouds++];
    memset(c, 0, sizeof(*c));
    ft_strlcpy(c->name, name, sizeof(c->name));
    return c;
}

void cost_model_defaults(cost_model_t *m)
{
    memset(m, 0, sizeof(*m));
    ft_strlcpy(m->currency, "USD", sizeof(m->currency));
    m->site.electricity = 0.0806; /* US industrial 2023 average, $/kWh */
    m->site.pue = 1.5;            /* enterprise room */
    m->site.maintenance_per_year = 0.10;
    m->site.other_per_year = 0;
    for (size_t i = 0; i < sizeof(builtin_gpus) / sizeof(builtin_gpus[0]); i++)
        m->gpus[m->ngpus++] = builtin_gpus[i];
    for (size_t i = 0; i < sizeof(builtin_clouds) / sizeof(builtin_clouds[0]); i++) {
        cost_cloud_t *c = cloud_get(m, builtin_clouds[i].offer, true);

        ft_strlcpy(c->models[c->n], builtin_clouds[i].model, COST_NAME_MAX);
        c->price[c->n++] = builtin_clouds[i].price;
    }
}

/* ---- parsing ---- */

typedef enum { SEC_NONE, SEC_SITE, SEC_GPU, SEC_GROUP, SEC_CLOUD, SEC_BUDGET } sec_t;

static const struct {
    const char *name; /* section word */
    sec_t sec;        /* kind */
    bool named;       /* takes a quoted name */
} sections[] = {
    {"site", SEC_SITE, false},  {"gpu", SEC_GPU, true},       {"group", SEC_GROUP, true},
    {"cloud", SEC_CLOUD, true}, {"budget", SEC_BUDGET, true},
};

typedef enum { K_NUM, K_INT, K_CURRENCY, K_NODES, K_OVER, K_BOOL } kkind_t;

/* Where a key's value goes: an offset into the struct of its section. */
typedef struct {
    const char *name; /* key */
    kkind_t kind;     /* value type */
    size_t off;       /* offset into cost_site_t, cost_gpu_t or cost_budget_t */
    double min, max;  /* inclusive bounds for numbers */
} ckey_t;

#define SITE(f) offsetof(cost_site_t, f)
#define GPU(f) offsetof(cost_gpu_t, f)
#define BUD(f) offsetof(cost_budget_t, f)

static const ckey_t site_keys[] = {
    {"electricity_per_kwh", K_NUM, SITE(electricity), 0, 10},
    {"pue", K_NUM, SITE(pue), 1, 5},
    {"maintenance_per_year", K_NUM, SITE(maintenance_per_year), 0, 1},
    {"other_per_year", K_NUM, SITE(other_per_year), 0, 1e12},
};

static const ckey_t gpu_keys[] = {
    {"price", K_NUM, GPU(price), 0, 1e8},
    {"server_overhead", K_NUM, GPU(server_overhead), 1, 10},
    {"years", K_NUM, GPU(years), 1, 20},
    {"power_w", K_NUM, GPU(power_w), 0, 100000},
};

static const ckey_t budget_keys[] = {
    {"gpu_hours", K_NUM, BUD(gpu_hours), 0, 1e9},
    {"money", K_NUM, BUD(money), 0, 1e12},
    {"over", K_OVER, BUD(over), 0, 0},
    {"priority_penalty", K_INT, BUD(priority_penalty), 0, 1000000},
};

#define NKEYS(t) (sizeof(t) / sizeof(t[0]))

static const ckey_t *key_find(const ckey_t *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* Parse state for one file. */
typedef struct {
    cost_model_t *m;  /* model being filled */
    const char *file; /* name for messages */
    int line;         /* current line, from 1 */
    sec_t sec;        /* current section */
    void *obj;        /* cost_gpu_t / cost_group_t / cost_cloud_t / cost_budget_t */
    char seen[64][COST_NAME_MAX + 16]; /* keys set in this section */
    int nseen;                         /* entries used in seen */
    bool had_cloud; /* a [cloud] section was read: the built-in offers are gone */
    ft_err_t *err;  /* where problems go */
} parse_t;

#define FAIL(p, ...)                                                                               \
    do {                                                                                           \
        char msg_[256];                                                                            \
        snprintf(msg_, sizeof(msg_), __VA_ARGS__);                                                 \
        ft_err_set((p)->err, FT_EBADFIELD, "%s:%d: %s", (p)->file, (p)->line, msg_);               \
        return -1;                                                                                 \
    } while (0)

static bool name_ok(const char *s)
{
    if (!*s || strlen(s) >= COST_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isprint((unsigned char)*s) || *s == '"')
            return false;
    return true;
}

static int parse_num(parse_t *p, const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);

    if (end == v || *end || !isfinite(d))
        FAIL(p, "'%s': '%s' is not a number", key, ft_sanitize(v, 40));
    if (d < lo || d > hi)
        FAIL(p, "'%s': %g is outside [%g, %g]", key, d, lo, hi);
    *out = d;
    return 0;
}

static cost_gpu_t *gpu_get(cost_gpu_t *v, int *n, const char *name, bool unset)
{
    for (int i = 0; i < *n; i++)
        if (strcasecmp(v[i].name, name) == 0)
            return &v[i];
    if (*n == COST_MAX_GPUS)
        return NULL;
    cost_gpu_t *g = &v[(*n)++];
    if (unset)
        gpu_unset(g);
    else
        *g = v[0]; /* a new model starts from "default"; the file sets what differs */
    ft_strlcpy(g->name, name, sizeof(g->name));
    return g;
}

static int section(parse_t *p, char *s)
{
    char *close = strrchr(s, ']'), *word = s + 1, *name = NULL;
    size_t i;

    if (!close || ft_trim(close + 1)[0])
        FAIL(p, "section header '%s' does not end with ']'", ft_sanitize(s, 60));
    *close = '\0';
    word = ft_trim(word);
    char *q = strchr(word, '"');
    if (q) {
        char *q2 = strrchr(q + 1, '"');

        if (!q2 || ft_trim(q2 + 1)[0])
            FAIL(p, "section name in '[%s]' must be one quoted string", ft_sanitize(word, 60));
        *q2 = '\0';
        name = q + 1;
        *q = '\0';
        word = ft_trim(word);
    }
    for (i = 0; i < NKEYS(sections); i++)
        if (strcmp(sections[i].name, word) == 0)
            break;
    if (i == NKEYS(sections))
        FAIL(p, "unknown section '%s' (expected site, gpu, group, cloud or budget)",
             ft_sanitize(word, 40));
    if (sections[i].named != (name != NULL))
        FAIL(p,
             sections[i].named ? "section '%s' needs a quoted name" : "section '%s' takes no name",
             word);
    if (name && !name_ok(name))
        FAIL(p, "'%s': name must be 1 to %d printable bytes", word, COST_NAME_MAX - 1);
    p->sec = sections[i].sec;
    p->nseen = 0;
    p->obj = NULL;
    cost_model_t *m = p->m;
    switch (p->sec) {
    case SEC_GPU:
        p->obj = gpu_get(m->gpus, &m->ngpus, name, false);
        break;
    case SEC_GROUP:
        for (int g = 0; g < m->ngroups; g++)
            if (strcmp(m->groups[g].name, name) == 0)
                FAIL(p, "group '%s' is defined twice", name);
        if (m->ngroups < COST_MAX_GROUPS) {
            cost_group_t *g = &m->groups[m->ngroups++];

            memset(g, 0, sizeof(*g));
            ft_strlcpy(g->name, name, sizeof(g->name));
            site_unset(&g->site);
            p->obj = g;
        }
        break;
    case SEC_CLOUD: {
        cost_cloud_t *c;

        if (!p->had_cloud) { /* the file's offers replace the built-in list */
            m->nclouds = 0;
            p->had_cloud = true;
        }
        c = cloud_get(m, name, true);
        if (c && c->n > 0)
            FAIL(p, "cloud offer '%s' is defined twice", name);
        p->obj = c;
        break;
    }
    case SEC_BUDGET:
        if (cost_budget_find(m, name))
            FAIL(p, "budget for team '%s' is defined twice", name);
        if (m->nbudgets < COST_MAX_BUDGETS) {
            cost_budget_t *b = &m->budgets[m->nbudgets++];

            memset(b, 0, sizeof(*b));
            ft_strlcpy(b->team, name, sizeof(b->team));
            p->obj = b;
        }
        break;
    default:
        p->obj = &m->site;
        break;
    }
    if (!p->obj)
        FAIL(p, "too many '%s' sections", word);
    return 0;
}

static int set_from(parse_t *p, const ckey_t *t, size_t n, void *base, const char *key,
                    const char *v)
{
    const ckey_t *k = key_find(t, n, key);
    double d;

    if (!k)
        return 1;
    switch (k->kind) {
    case K_NUM:
        if (parse_num(p, key, v, k->min, k->max, &d) < 0)
            return -1;
        memcpy((char *)base + k->off, &d, sizeof(d));
        return 0;
    case K_INT: {
        int i;

        if (parse_num(p, key, v, k->min, k->max, &d) < 0)
            return -1;
        if (d != floor(d))
            FAIL(p, "'%s': '%s' is not an integer", key, ft_sanitize(v, 40));
        i = (int)d;
        memcpy((char *)base + k->off, &i, sizeof(i));
        return 0;
    }
    case K_OVER: {
        cost_over_t o;

        if (strcmp(v, "hold") == 0)
            o = COST_OVER_HOLD;
        else if (strcmp(v, "lower_priority") == 0)
            o = COST_OVER_LOWER_PRIORITY;
        else
            FAIL(p, "'%s': '%s' is not hold or lower_priority", key, ft_sanitize(v, 40));
        memcpy((char *)base + k->off, &o, sizeof(o));
        return 0;
    }
    default:
        return 1;
    }
}

static int set_nodes(parse_t *p, cost_group_t *g, char *v)
{
    char *save = NULL;

    for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = ft_trim(tok);
        if (!name_ok(tok))
            FAIL(p, "'nodes': pattern '%s' must be 1 to %d printable bytes", ft_sanitize(tok, 40),
                 COST_NAME_MAX - 1);
        if (g->npatterns == COST_MAX_PATTERNS)
            FAIL(p, "'nodes': more than %d patterns", COST_MAX_PATTERNS);
        ft_strlcpy(g->patterns[g->npatterns++], tok, COST_NAME_MAX);
    }
    if (g->npatterns == 0)
        FAIL(p, "'nodes': expected a comma-separated list of node name patterns");
    return 0;
}

static int keyval(parse_t *p, char *key, char *v)
{
    int rc = 1;

    for (int i = 0; i < p->nseen; i++)
        if (strcmp(p->seen[i], key) == 0)
            FAIL(p, "'%s' is set twice in this section", ft_sanitize(key, 60));
    if (p->nseen < 64)
        ft_strlcpy(p->seen[p->nseen++], key, sizeof(p->seen[0]));
    if (!*v)
        FAIL(p, "'%s' has no value", ft_sanitize(key, 60));
    switch (p->sec) {
    case SEC_NONE:
        FAIL(p, "'%s' comes before any [section]", ft_sanitize(key, 60));
    case SEC_SITE:
        if (strcmp(key, "currency") == 0) {
            if (strlen(v) >= sizeof(p->m->currency) || !name_ok(v))
                FAIL(p, "'currency': expected 1 to 15 printable bytes");
            ft_strlcpy(p->m->currency, v, sizeof(p->m->currency));
            return 0;
        }
        if (strcmp(key, "site_gpus") == 0) {
            double d;

            if (parse_num(p, key, v, 0, 1e7, &d) < 0)
                return -1;
            p->m->site_gpus = (int)d;
            return 0;
        }
        rc = set_from(p, site_keys, NKEYS(site_keys), p->obj, key, v);
        break;
    case SEC_GPU:
        rc = set_from(p, gpu_keys, NKEYS(gpu_keys), p->obj, key, v);
        break;
    case SEC_BUDGET:
        rc = set_from(p, budget_keys, NKEYS(budget_keys), p->obj, key, v);
        break;
    case SEC_GROUP: {
        cost_group_t *g = p->obj;
        char *dot = strchr(key, '.');

        if (strcmp(key, "nodes") == 0)
            return set_nodes(p, g, v);
        if (dot) { /* MODEL.key: a per-model override in this group */
            cost_gpu_t *gg;

            *dot = '\0';
            if (!name_ok(key))
                FAIL(p, "'%s': bad model name", ft_sanitize(key, 60));
            gg = gpu_get(g->gpus, &g->ngpus, key, true);
            if (!gg)
                FAIL(p, "too many model overrides in group '%s'", g->name);
            rc = set_from(p, gpu_keys, NKEYS(gpu_keys), gg, dot + 1, v);
            *dot = '.';
            break;
        }
        rc = set_from(p, site_keys, NKEYS(site_keys), &g->site, key, v);
        break;
    }
    case SEC_CLOUD: {
        cost_cloud_t *c = p->obj;
        double d;

        if (!name_ok(key))
            FAIL(p, "'%s': bad model name", ft_sanitize(key, 60));
        if (parse_num(p, key, v, 0, 10000, &d) < 0)
            return -1;
        if (c->n == COST_MAX_GPUS)
            FAIL(p, "cloud '%s' lists more than %d models", c->name, COST_MAX_GPUS);
        ft_strlcpy(c->models[c->n], key, COST_NAME_MAX);
        c->price[c->n++] = d;
        return 0;
    }
    }
    if (rc > 0)
        FAIL(p, "unknown key '%s' in this section", ft_sanitize(key, 60));
    return rc;
}

int cost_model_parse(cost_model_t *m, const char *text, const char *name, ft_err_t *err)
{
    parse_t p = {.m = m, .file = name, .err = err};
    const char *s = text;

    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char buf[1024], *line, *eq, *hash;

        p.line++;
        if (len >= sizeof(buf)) {
            ft_err_set(err, FT_ETOOLARGE, "%s:%d: line longer than %zu bytes", name, p.line,
                       sizeof(buf) - 1);
            return -1;
        }
        memcpy(buf, s, len);
        buf[len] = '\0';
        s += len + (nl ? 1 : 0);
        for (char *c = buf; *c; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\r') {
                ft_err_set(err, FT_EBADFIELD, "%s:%d: control byte 0x%02x", name, p.line,
                           (unsigned)(unsigned char)*c);
                return -1;
            }
        if ((hash = strchr(buf, '#')))
            *hash = '\0';
        line = ft_trim(buf);
        if (!*line)
            continue;
        if (*line == '[') {
            if (section(&p, line) < 0)
                return -1;
            continue;
        }
        if (!(eq = strchr(line, '='))) {
            ft_err_set(err, FT_EBADFIELD, "%s:%d: expected 'key = value' or '[section]'", name,
                       p.line);
            return -1;
        }
        *eq = '\0';
        if (keyval(&p, ft_trim(line), ft_trim(eq + 1)) < 0)
            return -1;
    }
    return 0;
}

int cost_model_load(cost_model_t *m, const char *path, ft_err_t *err)
{
    size_t len;
    char *text = ft_read_file(path, 1 << 20, &len, err);
    int rc;

    if (!text)
        return -1;
    if (strlen(text) != len) {
        free(text);
        ft_err_set(err, FT_EBADFIELD, "%s: contains a NUL byte", path);
        return -1;
    }
    rc = cost_model_parse(m, text, path, err);
    free(text);
    return rc;
}

/* ---- rates ---- */

/* The entry whose name is the longest case-insensitive substring of model;
 * "default" (index 0 of the main table) when none. -1 in a group table. */
static int gpu_match(const cost_gpu_t *v, int n, const char *model)
{
    int best = -1;
    size_t blen = 0;

    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i].name);

        if (strcmp(v[i].name, "default") != 0 && l > blen && strcasestr(model, v[i].name)) {
            best = i;
            blen = l;
        }
    }
    return best;
}

static double pick(double over, double base)
{
    return isnan(over) ? base : over;
}

void cost_rates(const cost_model_t *m, const char *node, const char *model, int site_gpus,
                cost_rates_t *r)
{
    const cost_group_t *grp = NULL;
    int gi = gpu_match(m->gpus, m->ngpus, model);
    cost_gpu_t g = m->gpus[gi < 0 ? 0 : gi];
    cost_site_t s = m->site;
    double capex;

    for (int i = 0; i < m->ngroups && !grp; i++)
        for (int k = 0; k < m->groups[i].npatterns; k++)
            if (fnmatch(m->groups[i].patterns[k], node, 0) == 0) {
                grp = &m->groups[i];
                break;
            }
    if (grp) {
        int oi = gpu_match(grp->gpus, grp->ngpus, model);

        s.electricity = pick(grp->site.electricity, s.electricity);
        s.pue = pick(grp->site.pue, s.pue);
        s.maintenance_per_year = pick(grp->site.maintenance_per_year, s.maintenance_per_year);
        s.other_per_year = pick(grp->site.other_per_year, s.other_per_year);
        if (oi >= 0) {
            g.price = pick(grp->gpus[oi].price, g.price);
            g.server_overhead = pick(grp->gpus[oi].server_overhead, g.server_overhead);
            g.years = pick(grp->gpus[oi].years, g.years);
            g.power_w = pick(grp->gpus[oi].power_w, g.power_w);
        }
    }
    if (m->site_gpus > 0)
        site_gpus = m->site_gpus;
    if (site_gpus < 1)
        site_gpus = 1;
    capex = g.price * g.server_overhead;
    memset(r, 0, sizeof(*r));
    r->gpu = m->gpus[gi < 0 ? 0 : gi].name;
    r->group = grp ? grp->name : "";
    r->capital = capex / (g.years * COST_HOURS_PER_YEAR);
    r->maintenance = capex * s.maintenance_per_year / COST_HOURS_PER_YEAR +
                     s.other_per_year / ((double)site_gpus * COST_HOURS_PER_YEAR);
    r->fixed = r->capital + r->maintenance;
    r->power_w = g.power_w;
    r->pue = s.pue;
    r->electricity = s.electricity;
    r->energy = g.power_w / 1000.0 * s.pue * s.electricity;
}

double cost_energy(const cost_rates_t *r, double energy_kwh)
{
    return energy_kwh * r->pue * r->electricity;
}

double cost_cloud_price(const cost_cloud_t *c, const char *model)
{
    size_t blen = 0;
    double best = -1;

    for (int i = 0; i < c->n; i++) {
        size_t l = strlen(c->models[i]);

        if (l > blen && strcasestr(model, c->models[i])) {
            best = c->price[i];
            blen = l;
        }
    }
    return best;
}

double cost_break_even(double fixed, double energy, double cloud)
{
    double u;

    if (cloud <= energy)
        return -1;
    u = fixed / (cloud - energy);
    return u > 1 ? -1 : u;
}

const cost_budget_t *cost_budget_find(const cost_model_t *m, const char *team)
{
    for (int i = 0; i < m->nbudgets; i++)
        if (strcmp(m->budgets[i].team, team) == 0)
            return &m->budgets[i];
    return NULL;
}
