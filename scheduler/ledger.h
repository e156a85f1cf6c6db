/*
 * ledger.h: the accounting side of the allocations ledger (ledger.c):
 * checkpoints of open intervals, the cost model applied to every interval,
 * cluster utilisation and break-even, and team budgets.
 *
 * Invariants: the allocations table stays the one record of device time;
 * the ledger adds facts about its rows (last checkpoint, time not observed
 * while ftsched was down, measured energy) in ledger_intervals and never
 * moves an interval's start or end.
 */
#ifndef FT_SCHED_LEDGER_H
#define FT_SCHED_LEDGER_H

#include <cjson/cJSON.h>

#include "ft/cost.h"
#include "sched.h"

#define LEDGER_CHECK_MS 2000   /* checkpoint period of open intervals */
#define LEDGER_BUDGET_MS 10000 /* budget evaluation period */

typedef struct ledger ledger_t;

void ledger_destroy(ledger_t **l);

/* At scheduler start, before any message: notes the intervals still open
 * from the previous process, whose unobserved time the first ledger_cron
 * records (even if some close before it runs). */
int ledger_start(sched_t *s, ft_err_t *err);

/* Periodic work (own transactions): after a restart, records the unobserved
 * time of every open interval (once); checkpoints open intervals; evaluates
 * team budgets. Cheap when nothing is due. */
void ledger_cron(sched_t *s);

/* The cost model in force (the cost file, reloaded when it changes, else
 * the built-in figures). NULL with err set when the file is bad. */
const cost_model_t *ledger_model(sched_t *s, ft_err_t *err);

/* Adds cost columns to the rows of a usage report (sched_usage_report's
 * object) for the same group_by and window; cloud: the offer the difference
 * is computed against (NULL = the first). */
int ledger_usage_costs(sched_t *s, cJSON *report, const char *group_by, int64_t since,
                       int64_t until, const char *cloud, ft_err_t *err);

/* The team leads' report over [since, until) (unix seconds): totals,
 * utilisation, break-even per cloud offer, per-day and per-team-per-day
 * series, top jobs, budgets. NULL with err set on failure. */
cJSON *ledger_report(sched_t *s, int64_t since, int64_t until, ft_err_t *err);

/* Stores the device energy a worker measured for one rank's interval. */
int ledger_note_energy(sched_t *s, int64_t job, int attempt, int rank, int64_t energy_mj,
                       ft_err_t *err);

#endif
