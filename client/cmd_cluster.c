/*
 * client/cmd_cluster.c: the subcommands about the cluster rather than one job:
 * nodes (devices free/total per node), usage (GPU-hours from the ledger, grouped)
 * and ping (is the scheduler there, and what does it run).
 *
 * Invariants: each is one request and one reply; tables are built from the
 * reply alone. Cost: one round trip, O(reply) formatting.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftctl.h"

static int oom(void)
{
    ftctl_die_msg("out of memory");
    return FTCTL_EXIT_FAILED;
}

/* Options loop for subcommands without options; >0 exit code, -1 help shown. */
static int only_help(const char *cmd, int argc, char **argv)
{
    int rc = ftctl_only_help_opt(cmd, argc, argv);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    if (optind < argc)
        return ftctl_usage_error(cmd, "unexpected argument '%s'", ft_sanitize(argv[optind], 64));
    return FTCTL_EXIT_OK;
}

/* ================================ nodes ================================ */

/* "H100 x8,A100 x2": each model with its count, in order of first appearance. */
static void models_of(const cJSON *devices, char *buf, size_t len)
{
    const char *names[64];
    int counts[64], n = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, devices)
    {
        const char *m = ftctl_get_str(d, "model", "?");
        int i = 0;
        while (i < n && strcmp(names[i], m) != 0)
            i++;
        if (i == n) {
            if (n == 64)
                continue;
            names[n] = m;
            counts[n++] = 0;
        }
        counts[i]++;
    }
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%s x%d", i ? "," : "", names[i], counts[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (!n)
        snprintf(buf, len, "-");
}

int ftctl_cmd_nodes(ftctl_t *c, int argc, char **argv)
{
    int rc = only_help("nodes", argc, argv);
    if (rc != FTCTL_EXIT_OK)
        return rc < 0 ? FTCTL_EXIT_OK : rc;
    cJSON *req = ft_proto_new(FT_MSG_NODES, NULL);
    if (!req)
        return oom();
    cJSON *reply = NULL;
    if ((rc = ftctl_request(c, req, 0, &reply)) != FTCTL_EXIT_OK)
        return rc;
    if (c->output == FTCTL_OUT_JSON) {
        ftctl_print_payload(reply);
        cJSON_Delete(reply);
        return FTCTL_EXIT_OK;
    }
    static const char *const hdr[] = {"NAME",   "STATE",    "DEVICES",
                                      "MODELS", "EMULATED", "LAST_SEEN"};
    ftctl_table_t *t = ftctl_table_new(6, hdr);
    if (!t) {
        cJSON_Delete(reply);
        return oom();
    }
    int64_t now = (int64_t)time(NULL);
    const cJSON *node;
    cJSON_ArrayForEach(node, cJSON_GetObjectItemCaseSensitive(reply, "nodes"))
    {
        const cJSON *devs = cJSON_GetObjectItemCaseSensitive(node, "devices");
        int total = 0, free_n = 0, emulated = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, devs)
        {
            total++;
            free_n += ftctl_is_null_or_absent(d, "job_id");
            emulated += strcmp(ftctl_get_str(d, "kind", ""), "emulated") == 0;
        }
        /* Ready in the database but not yet back after a scheduler restart. */
        char state[48];
        const cJSON *conn = cJSON_GetObjectItemCaseSensitive(node, "connected");
        snprintf(state, sizeof(state), "%s%s", ftctl_get_str(node, "state", "?"),
                 cJSON_IsFalse(conn) ? ",unconnected" : "");
        char devices[48], models[512], seen[32];
        snprintf(devices, sizeof(devices), "%d/%d", free_n, total);
        models_of(devs, models, sizeof(models));
        if (ftctl_is_null_or_absent(node, "last_seen"))
            snprintf(seen, sizeof(seen), "-");
        else {
            ftctl_fmt_duration(now - ftctl_get_int(node, "last_seen", now), seen, sizeof(seen));
            strncat(seen, " ago", sizeof(seen) - strlen(seen) - 1);
        }
        const char *row[] = {ftctl_get_str(node, "name", "?"),
                             state,
                             devices,
                             models,
                             emulated == 0 ? "no" : (emulated == total ? "yes" : "partly"),
                             seen};
        if (ftctl_table_add(t, row) < 0) {
            ftctl_table_destroy(&t);
            cJSON_Delete(reply);
            return oom();
        }
    }
    ftctl_table_print(t, stdout);
    ftctl_table_destroy(&t);
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}

/* ================================ usage ================================ */

static const char *const group_keys[] = {"user",      "team", "job",  "node",
                                         "gpu_model", "day",  "month"};

enum { OPT_BY = 256, OPT_SINCE, OPT_UNTIL, OPT_CLOUD };

/* "Budgets this month: vision 12.5/100 GPU-h (12%), ..." when the reply has them. */
static void print_budgets(const cJSON *reply)
{
    const cJSON *b, *arr = cJSON_GetObjectItemCaseSensitive(reply, "budgets");

    if (!cJSON_IsArray(arr) || !arr->child)
        return;
    printf("Budgets this month (%s):", ft_sanitize(ftctl_get_str(arr->child, "month", "?"), 16));
    cJSON_ArrayForEach(b, arr)
    {
        const char *team = ft_sanitize(ftctl_get_str(b, "team", "?"), 64);
        bool over = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "over"));

        if (!ftctl_is_null_or_absent(b, "budget_gpu_hours")) {
            double lim = ftctl_get_num(b, "budget_gpu_hours", 0);
            double used = ftctl_get_num(b, "used_gpu_hours", 0);
            printf(" %s %.4g/%.4g GPU-h (%.0f%%)", team, used, lim, lim > 0 ? 100 * used / lim : 0);
        }
        if (!ftctl_is_null_or_absent(b, "budget_money")) {
            double lim = ftctl_get_num(b, "budget_money", 0);
            double used = ftctl_get_num(b, "used_money", 0);
            printf(" %s %.2f/%.2f (%.0f%%)", team, used, lim, lim > 0 ? 100 * used / lim : 0);
        }
        if (over)
            printf(" OVER: %s",
                   strcmp(ftctl_get_str(b, "action", ""), "hold") == 0 ? "new jobs held"
                                                                       : "lower priority");
        printf(";");
    }
    printf("\n");
}

/* The usage rows with their cost columns, and a TOTAL row. NULL when out of
 * memory. The cost columns are "-" when the scheduler sent none. */


static ftctl_table_t *usage_table(const cJSON *reply, const char *key_hdr)
{
    const char *hdr[] = {key_hdr,   "GPU_HOURS", "JOBS",      "INTERVALS", "ENERGY_KWH", "SRC",
                         "COST",    "CAPITAL",   "MAINT",     "ENERGY",    "CLOUD",      "CLOUD_COST",
                         "DIFF",    "UNOBSERVED_S"};
    enum { NC = sizeof(hdr) / sizeof(hdr[0]) };
    static const char *const num_cols[] = {"energy_kwh",       "cost",       "cost_capital",
                                           "cost_maintenance", "cost_energy", NULL};
    double sum[NC] = {0};
    int64_t total_iv = 0;
    const cJSON *row;
    ftctl_table_t *t = ftctl_table_new(NC, hdr);

    if (!t)
        return NULL;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(reply, "rows"))
    {
        char cell[NC][64];
        const char *cells[NC];
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(row, "key");
        const char *src = ftctl_get_str(row, "energy_source", "");
        bool costed = !ftctl_is_null_or_absent(row, "cost");

        if (cJSON_IsString(k))
            ft_strlcpy(cell[0], k->valuestring, sizeof(cell[0]));
        else if (cJSON_IsNumber(k))
            snprintf(cell[0], sizeof(cell[0]), "%lld", (long long)k->valuedouble);
        else
            snprintf(cell[0], sizeof(cell[0]), "-");
        double gh = ftctl_get_num(row, "gpu_hours", ftctl_get_num(row, "gpu_seconds", 0) / 3600.0);
        sum[1] += gh;
        total_iv += ftctl_get_int(row, "intervals", 0);
        snprintf(cell[1], sizeof(cell[1]), "%.4f", gh);
        snprintf(cell[2], sizeof(cell[2]), "%lld", (long long)ftctl_get_int(row, "jobs", 0));
        snprintf(cell[3], sizeof(cell[3]), "%lld", (long long)ftctl_get_int(row, "intervals", 0));
        for (int i = 0; num_cols[i]; i++) {
            int col = i == 0 ? 4 : 5 + i;
            double v = ftctl_get_num(row, num_cols[i], 0);

            sum[col] += v;
            ftctl_fmt_amount(cell[col], sizeof(cell[col]), v, costed, false);
        }
        snprintf(cell[5], sizeof(cell[5]), "%s",
                 strcmp(src, "measured") == 0   ? "m"
                 : strcmp(src, "estimated") == 0 ? "e"
                 : strcmp(src, "mixed") == 0     ? "m+e"
                                                 : "-");
        ft_strlcpy(cell[10], ft_sanitize(ftctl_get_str(row, "cloud_offer", "-"), 60),
                   sizeof(cell[10]));
        sum[11] += ftctl_get_num(row, "cloud_cost", 0);
        sum[12] += ftctl_get_num(row, "difference", 0);
        sum[13] += ftctl_get_num(row, "unobserved_seconds", 0);
        ftctl_fmt_amount(cell[11], sizeof(cell[11]), ftctl_get_num(row, "cloud_cost", 0), costed,
                   false);
        ftctl_fmt_amount(cell[12], sizeof(cell[12]), ftctl_get_num(row, "difference", 0), costed,
                   true);
        snprintf(cell[13], sizeof(cell[13]), costed ? "%.1f" : "-",
                 ftctl_get_num(row, "unobserved_seconds", 0));
        for (int i = 0; i < NC; i++)
            cells[i] = cell[i];
        if (ftctl_table_add(t, cells) < 0) {
            ftctl_table_destroy(&t);
            return NULL;
        }
    }
    {
        char cell[NC][64];
        const char *cells[NC];

        for (int i = 0; i < NC; i++) {
            if (i == 1)
                snprintf(cell[i], sizeof(cell[i]), "%.4f", sum[i]);
            else
                ftctl_fmt_amount(cell[i], sizeof(cell[i]), sum[i], true, i == 12);
            cells[i] = cell[i];
        }
        snprintf(cell[0], sizeof(cell[0]), "TOTAL");
        snprintf(cell[2], sizeof(cell[2]), "-");
        snprintf(cell[3], sizeof(cell[3]), "%lld", (long long)total_iv);
        snprintf(cell[5], sizeof(cell[5]), "-");
        snprintf(cell[10], sizeof(cell[10]), "-");
        snprintf(cell[13], sizeof(cell[13]), "%.1f", sum[13]);
        if (ftctl_table_add(t, cells) < 0)
            ftctl_table_destroy(&t);
    }
    return t;
}

int ftctl_cmd_usage(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"by", required_argument, NULL, OPT_BY},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"cloud", required_argument, NULL, OPT_CLOUD},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *by = "user", *cloud = NULL;
    int64_t since = -1, until = -1, now = (int64_t)time(NULL);
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_BY: {
            bool ok = false;
            for (size_t i = 0; i < sizeof(group_keys) / sizeof(group_keys[0]); i++)
                ok |= strcmp(group_keys[i], optarg) == 0;
            if (!ok)
                return ftctl_usage_error("usage",
                                         "bad --by '%s': expected user, team, job, node, "
                                         "gpu_model, day or month",
                                         ft_sanitize(optarg, 32));
            by = optarg;
            break;
        }
        case OPT_SINCE:
        case OPT_UNTIL: {
            int trc = ftctl_time_opt("usage", opt == OPT_SINCE ? "--since" : "--until", optarg,
                                     now, opt == OPT_SINCE ? &since : &until);
            if (trc != FTCTL_EXIT_OK)
                return trc;
            break;
        }
        case OPT_CLOUD:
            if (!*optarg || strlen(optarg) > 64)
                return ftctl_usage_error("usage", "bad --cloud '%s': expected 1 to 64 bytes",
                                         ft_sanitize(optarg, 32));
            cloud = optarg;
            break;
        case 'h':
            return ftctl_usage("usage", 0);
        case ':':
            return ftctl_usage_error("usage", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("usage", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind < argc)
        return ftctl_usage_error("usage", "unexpected argument '%s'",
                                 ft_sanitize(argv[optind], 64));
    if (since >= 0 && until >= 0 && since > until)
        return ftctl_usage_error("usage", "--since is after --until");

    cJSON *req = ft_proto_new(FT_MSG_USAGE, NULL);
    if (!req || !cJSON_AddStringToObject(req, "group_by", by) ||
        (since >= 0 && !cJSON_AddNumberToObject(req, "since", (double)since)) ||
        (until >= 0 && !cJSON_AddNumberToObject(req, "until", (double)until)) ||
        (cloud && !cJSON_AddStringToObject(req, "cloud", cloud))) {
        cJSON_Delete(req);
        return oom();
    }
    cJSON *reply = NULL;
    int rc = ftctl_request(c, req, 0, &reply);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    if (c->output == FTCTL_OUT_JSON) {
        ftctl_print_payload(reply);
        cJSON_Delete(reply);
        return FTCTL_EXIT_OK;
    }
    char key_hdr[32];
    size_t i = 0;
    for (; by[i] && i + 1 < sizeof(key_hdr); i++)
        key_hdr[i] = (char)(by[i] >= 'a' && by[i] <= 'z' ? by[i] - 'a' + 'A' : by[i]);
    key_hdr[i] = '\0';
    ftctl_table_t *t = usage_table(reply, key_hdr);
    if (!t) {
        cJSON_Delete(reply);
        return oom();
    }
    char s1[32], s2[32];
    if (ftctl_get_int(reply, "since", 0) <= 0)
        snprintf(s1, sizeof(s1), "the start");
    else
        ft_fmt_time(ftctl_get_int(reply, "since", 0), s1, sizeof(s1));
    if (ftctl_is_null_or_absent(reply, "until"))
        snprintf(s2, sizeof(s2), "now");
    else
        ft_fmt_time(ftctl_get_int(reply, "until", 0), s2, sizeof(s2));
    if (c->output == FTCTL_OUT_CSV) {
        ftctl_table_print_csv(t, stdout);
    } else {
        print_budgets(reply);
        printf("GPU-hours by %s, from %s to %s; money in %s, energy measured (m), estimated (e)"
               " or mixed (m+e)\n",
               by, s1, s2, ft_sanitize(ftctl_get_str(reply, "currency", "?"), 16));
        ftctl_table_print(t, stdout);
    }
    ftctl_table_destroy(&t);
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}

/* ================================ ping ================================ */

int ftctl_cmd_ping(ftctl_t *c, int argc, char **argv)
{
    int rc = only_help("ping", argc, argv);
    if (rc != FTCTL_EXIT_OK)
        return rc < 0 ? FTCTL_EXIT_OK : rc;
    cJSON *req = ft_proto_new(FT_MSG_PING, NULL);
    if (!req)
        return oom();
    int64_t t0 = ft_mono_ms();
    cJSON *reply = NULL;
    if ((rc = ftctl_request(c, req, 0, &reply)) != FTCTL_EXIT_OK)
        return rc;
    int64_t rtt = ft_mono_ms() - t0;
    if (c->output == FTCTL_OUT_JSON)
        ftctl_print_payload(reply);
    else
        printf("ftsched %s (protocol %lld) at %s: %lld pending, %lld running, %lld nodes ready, "
               "%lld ms\n",
               ft_sanitize(ftctl_get_str(reply, "version", "?"), 32),
               (long long)ftctl_get_int(reply, "proto", 0), c->endpoint,
               (long long)ftctl_get_int(reply, "jobs_pending", 0),
               (long long)ftctl_get_int(reply, "jobs_running", 0),
               (long long)ftctl_get_int(reply, "nodes_ready", 0), (long long)rtt);
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}
