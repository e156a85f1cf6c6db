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
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            ftctl_usage(cmd, 0);
            return -1;
        }
        return ftctl_usage_error(cmd, "unknown option '%s'", ft_sanitize(argv[optind - 1], 64));
    }
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

enum { OPT_BY = 256, OPT_SINCE, OPT_UNTIL };

int ftctl_cmd_usage(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"by", required_argument, NULL, OPT_BY},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *by = "user";
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
            int64_t v;
            if (ft_parse_time(optarg, now, &v) < 0 || v < 0)
                return ftctl_usage_error("usage",
                                         "bad %s '%s': expected 2026-11-30, "
                                         "2026-11-30T06:00:00Z, now, -7d, -12h or unix seconds",
                                         opt == OPT_SINCE ? "--since" : "--until",
                                         ft_sanitize(optarg, 32));
            if (opt == OPT_SINCE)
                since = v;
            else
                until = v;
            break;
        }
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
        (until >= 0 && !cJSON_AddNumberToObject(req, "until", (double)until))) {
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
    const char *hdr[] = {key_hdr, "GPU_HOURS", "JOBS", "INTERVALS"};
    ftctl_table_t *t = ftctl_table_new(4, hdr);
    if (!t) {
        cJSON_Delete(reply);
        return oom();
    }
    double total_h = 0;
    int64_t total_iv = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(reply, "rows"))
    {
        char key[128], h[32], jobs[24], iv[24];
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(row, "key");
        if (cJSON_IsString(k))
            ft_strlcpy(key, k->valuestring, sizeof(key));
        else if (cJSON_IsNumber(k))
            snprintf(key, sizeof(key), "%lld", (long long)k->valuedouble);
        else
            snprintf(key, sizeof(key), "-");
        double gh = ftctl_get_num(row, "gpu_hours", ftctl_get_num(row, "gpu_seconds", 0) / 3600.0);
        total_h += gh;
        total_iv += ftctl_get_int(row, "intervals", 0);
        snprintf(h, sizeof(h), "%.4f", gh);
        snprintf(jobs, sizeof(jobs), "%lld", (long long)ftctl_get_int(row, "jobs", 0));
        snprintf(iv, sizeof(iv), "%lld", (long long)ftctl_get_int(row, "intervals", 0));
        const char *cells[] = {key, h, jobs, iv};
        if (ftctl_table_add(t, cells) < 0) {
            ftctl_table_destroy(&t);
            cJSON_Delete(reply);
            return oom();
        }
    }
    char th[32], tiv[24];
    snprintf(th, sizeof(th), "%.4f", total_h);
    snprintf(tiv, sizeof(tiv), "%lld", (long long)total_iv);
    const char *total_row[] = {"TOTAL", th, "-", tiv};
    if (ftctl_table_add(t, total_row) < 0) {
        ftctl_table_destroy(&t);
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
    printf("GPU-hours by %s, from %s to %s\n", by, s1, s2);
    ftctl_table_print(t, stdout);
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
