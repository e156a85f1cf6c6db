/*
 * ft/cost.h: the cost model (docs/cost-model.md): what one GPU-hour costs on
 * this site, split into capital, energy and maintenance, what the same hour
 * would cost at each named cloud offer, and the team budgets.
 *
 * Invariants: a loaded model always has a "default" GPU entry, so every
 * device gets a price; rates are per GPU-hour in the site currency; a node
 * group overrides only the keys it sets. Figures are doubles: money is
 * reported, never stored as a balance, so rounding never accumulates.
 * Costs: cost_model_load is O(file); cost_rates is O(groups + gpu entries)
 * with a substring test per entry.
 */
#ifndef FT_COST_H
#define FT_COST_H

#include <stdbool.h>
#include <stdint.h>

#include "ft/common.h"

#define COST_NAME_MAX 64           /* bytes in a model, group, offer or team name */
#define COST_MAX_GPUS 32           /* GPU entries */
#define COST_MAX_GROUPS 32         /* node groups */
#define COST_MAX_PATTERNS 16       /* node name patterns per group */
#define COST_MAX_CLOUDS 16         /* cloud offers */
#define COST_MAX_BUDGETS 64        /* team budgets */
#define COST_HOURS_PER_YEAR 8766.0 /* 365.25 days */

/* One GPU model's purchase and power figures. NAN = not set (groups). */
typedef struct {
    char name[COST_NAME_MAX]; /* matched as a case-insensitive substring of the device model */
    double price;             /* purchase price of one GPU, currency */
    double server_overhead;   /* whole-server cost / GPU cost (>= 1) */
    double years;             /* amortisation period, years */
    double power_w;           /* average draw while allocated, W (GPU plus its server share) */
} cost_gpu_t;

/* Site-wide figures (a group may override each). NAN = not set (groups). */
typedef struct {
    double electricity;          /* price of one kWh, currency */
    double pue;                  /* power usage effectiveness (>= 1) */
    double maintenance_per_year; /* support and repair, fraction of capital per year */
    double other_per_year;       /* other yearly costs (staff, space), currency, whole site */
} cost_site_t;

/* A node group: nodes matching any pattern use its overrides. */
typedef struct {
    char name[COST_NAME_MAX];                        /* group name */
    char patterns[COST_MAX_PATTERNS][COST_NAME_MAX]; /* fnmatch patterns of node names */
    int npatterns;                                   /* entries used in patterns */
    cost_site_t site;                                /* overrides; NAN = site value */
    cost_gpu_t gpus[COST_MAX_GPUS];                  /* per-model overrides; NAN = not set */
    int ngpus;                                       /* entries used in gpus */
} cost_group_t;

/* A cloud offer: a price per GPU-hour for each model it rents. */
typedef struct {
    char name[COST_NAME_MAX];                  /* e.g. "aws-on-demand" */
    char models[COST_MAX_GPUS][COST_NAME_MAX]; /* model names, matched like cost_gpu_t.name */
    double price[COST_MAX_GPUS];               /* currency per GPU-hour */
    int n;                                     /* entries used */
} cost_cloud_t;

typedef enum { COST_OVER_HOLD, COST_OVER_LOWER_PRIORITY } cost_over_t;

/* A team's monthly budget (UTC calendar month). */
typedef struct {
    char team[COST_NAME_MAX]; /* team name */
    double gpu_hours;         /* GPU-hours per month; 0 = no limit */
    double money;             /* currency per month; 0 = no limit */
    cost_over_t over;         /* what happens to new jobs when over */
    int priority_penalty;     /* COST_OVER_LOWER_PRIORITY: subtracted from job priority */
} cost_budget_t;

typedef struct {
    char currency[16];                    /* shown next to money, e.g. "USD" */
    cost_site_t site;                     /* site figures */
    int site_gpus;                        /* GPUs other_per_year is spread over; 0 = as counted */
    cost_gpu_t gpus[COST_MAX_GPUS];       /* models; gpus[0] is "default" */
    int ngpus;                            /* entries used */
    cost_group_t groups[COST_MAX_GROUPS]; /* node groups, first match wins */
    int ngroups;                          /* entries used */
    cost_cloud_t clouds[COST_MAX_CLOUDS]; /* cloud offers, in file order */
    int nclouds;                          /* entries used */
    cost_budget_t budgets[COST_MAX_BUDGETS]; /* team budgets */
    int nbudgets;                            /* entries used */
} cost_model_t;

/* The rates for one device: currency per GPU-hour unless said otherwise. */
typedef struct {
    const char *gpu;    /* the GPU entry used (its name) */
    const char *group;  /* the node group used, "" for none */
    double capital;     /* amortised purchase, per hour allocated or not */
    double maintenance; /* support plus share of other yearly costs, per hour */
    double energy;      /* electricity of one busy hour at the configured draw */
    double fixed;       /* capital + maintenance */
    double power_w;     /* configured draw, W */
    double pue;         /* effective PUE */
    double electricity; /* effective price of one kWh */
} cost_rates_t;

/* The built-in defaults (reference figures, docs/cost-model.md). */
void cost_model_defaults(cost_model_t *m);
/* Reads an INI-like file over the defaults. -1 with err naming file, line and
 * key on the first problem; m is then unspecified. */
int cost_model_load(cost_model_t *m, const char *path, ft_err_t *err);
/* Parses text (name is used in messages). */
int cost_model_parse(cost_model_t *m, const char *text, const char *name, ft_err_t *err);

/* The rates of one device of model on node. site_gpus: how many GPUs share
 * other_per_year when the file does not say (at least 1). */
void cost_rates(const cost_model_t *m, const char *node, const char *model, int site_gpus,
                cost_rates_t *r);
/* Cost of energy_kwh (at the device) in one interval: kWh x PUE x price. */
double cost_energy(const cost_rates_t *r, double energy_kwh);
/* Price per GPU-hour of model at cloud offer c; -1 when c does not rent it. */
double cost_cloud_price(const cost_cloud_t *c, const char *model);
/* Break-even utilisation fixed / (cloud - energy) in [0, 1]; -1 when never. */
double cost_break_even(double fixed, double energy, double cloud);
/* The budget of team, or NULL. */
const cost_budget_t *cost_budget_find(const cost_model_t *m, const char *team);

#endif
