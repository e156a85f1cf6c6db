/*
 * client/cmd_report.c: `ftctl report`: the team leads' view of a period:
 * utilisation, idle capacity cost, break-even utilisation against each cloud
 * offer, team budgets and top jobs, as text, JSON or one HTML page (html.c).
 *
 * Invariants: one `report` request; the HTML file is written atomically, so a
 * reader never sees half a page.
 * Cost: the reply is held in memory while printed.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftctl.h"

enum { OPT_SINCE = 256, OPT_UNTIL, OPT_HTML };

static int write_html(const cJSON *reply, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ft_err_t err = {0};
    int rc = -1;

    if (!f) {
        ftctl_die_msg("out of memory");
        return FTCTL_EXIT_FAILED;
    }
    if (ftctl_html_report(reply, f) < 0) {
        fclose(f);
        ftctl_die_msg("cannot render the report");
        goto out;
    }
    fclose(f);
    if (ft_write_file_atomic(path, buf, len, &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc < 0 ? FTCTL_EXIT_FAILED : FTCTL_EXIT_OK;
}

/* Prints one table of the text report after a blank line and frees it; an
 * allocation failure (NULL) leaves the section out. */
static void print_section(ftctl_table_t **t)
{
    if (!*t)
        return;
    printf("\n");
    ftctl_table_print(*t, stdout);
    ftctl_table_destroy(t);
}

static void print_text(const cJSON *r)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "utilisation");
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(r, "totals"), *e;
    const char *cur = ft_sanitize(ftctl_get_str(r, "currency", "?"), 16);
    char s1[32], s2[32];

    ft_fmt_time(ftctl_get_int(r, "since", 0), s1, sizeof(s1));
    ft_fmt_time(ftctl_get_int(r, "until", 0), s2, sizeof(s2));
    printf("Cluster report from %s to %s (money in %s)\n", s1, s2, cur);
    printf("  devices %lld, available %.2f GPU-h, allocated %.2f GPU-h, utilisation %.1f%%\n",
           (long long)ftctl_get_int(u, "devices", 0), ftctl_get_num(u, "available_gpu_hours", 0),
           ftctl_get_num(u, "allocated_gpu_hours", 0), 100 * ftctl_get_num(u, "utilisation", 0));
    {
        static const char *const keys[] = {"cost", "cost_capital", "cost_maintenance",
                                           "cost_energy", "energy_kwh"};
        char a[5][32], idle[32];

        for (int i = 0; i < 5; i++)
            ftctl_fmt_amount(a[i], sizeof(a[i]), ftctl_get_num(tot, keys[i], 0), true, false);
        printf("  cost %s = capital %s + maintenance %s + energy %s (%s kWh, %s)\n", a[0], a[1],
               a[2], a[3], a[4], ft_sanitize(ftctl_get_str(tot, "energy_source", "?"), 16));
        ftctl_fmt_amount(idle, sizeof(idle), ftctl_get_num(u, "idle_cost", 0), true, false);
        printf("  idle capacity cost %s over %.2f idle GPU-h\n", idle,
               ftctl_get_num(u, "idle_gpu_hours", 0));
    }
    if (ftctl_get_num(tot, "unobserved_seconds", 0) > 0)
        printf("  %.1f GPU-s were billed while ftsched was not running (restart)\n",
               ftctl_get_num(tot, "unobserved_seconds", 0));

    const char *bh[] = {"CLOUD_OFFER", "SAME_HOURS_COST", "BREAK_EVEN_UTILISATION"};
    ftctl_table_t *t = ftctl_table_new(3, bh);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "break_even"))
    {
        char cc[32] = "-", be[32] = "never";
        const cJSON *c, *v = cJSON_GetObjectItemCaseSensitive(e, "utilisation");

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(tot, "cloud"))
        {
            if (strcmp(ftctl_get_str(c, "offer", ""), ftctl_get_str(e, "offer", "")) == 0)
                ftctl_fmt_amount(cc, sizeof(cc), ftctl_get_num(c, "cost", 0), true, false);
        }
        if (cJSON_IsNumber(v))
            snprintf(be, sizeof(be), "%.1f%%", 100 * v->valuedouble);
        const char *cells[] = {ftctl_get_str(e, "offer", ""), cc, be};
        if (t)
            ftctl_table_add(t, cells);
    }
    print_section(&t);

    const char *gh[] = {"TEAM",       "MONTH",        "USED_GPU_H", "BUDGET_GPU_H",
                        "USED_MONEY", "BUDGET_MONEY", "STATE"};
    t = ftctl_table_new(7, gh);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "budgets"))
    {
        char uh[32], bhv[32] = "-", um[32], bm[32] = "-", st[48];

        snprintf(uh, sizeof(uh), "%.4g", ftctl_get_num(e, "used_gpu_hours", 0));
        snprintf(um, sizeof(um), "%.2f", ftctl_get_num(e, "used_money", 0));
        if (!ftctl_is_null_or_absent(e, "budget_gpu_hours"))
            snprintf(bhv, sizeof(bhv), "%.4g", ftctl_get_num(e, "budget_gpu_hours", 0));
        if (!ftctl_is_null_or_absent(e, "budget_money"))
            snprintf(bm, sizeof(bm), "%.2f", ftctl_get_num(e, "budget_money", 0));
        snprintf(st, sizeof(st), "%s",
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "over"))
                     ? (strcmp(ftctl_get_str(e, "action", ""), "hold") == 0
                            ? "OVER: held"
                            : "OVER: lower priority")
                     : "within");
        const char *cells[] = {
            ftctl_get_str(e, "team", ""), ftctl_get_str(e, "month", ""), uh, bhv, um, bm, st};
        if (t)
            ftctl_table_add(t, cells);
    }
    print_section(&t);

    const char *jh[] = {"JOB", "NAME", "USER", "GPU_HOURS", "COST"};
    t = ftctl_table_new(5, jh);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "top_jobs"))
    {
        char id[24], h[32], c[32];

        snprintf(id, sizeof(id), "%lld", (long long)ftctl_get_int(e, "job_id", 0));
        snprintf(h, sizeof(h), "%.4f", ftctl_get_num(e, "gpu_hours", 0));
        ftctl_fmt_amount(c, sizeof(c), ftctl_get_num(e, "cost", 0), true, false);
        const char *cells[] = {id, ftctl_get_str(e, "name", ""), ftctl_get_str(e, "user", ""), h,
                               c};
        if (t)
            ftctl_table_add(t, cells);
    }
    print_section(&t);
}

int ftctl_cmd_report(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"html", required_argument, NULL, OPT_HTML},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t since = -1, until = -1, now = (int64_t)time(NULL);
    const char *html = NULL;
    cJSON *req, *reply = NULL;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_SINCE:
        case OPT_UNTIL:
            if ((rc = ftctl_time_opt("report", opt == OPT_SINCE ? "--since" : "--until", optarg,
                                     now, opt == OPT_SINCE ? &since : &until)) != FTCTL_EXIT_OK)
                return rc;
            break;
        case OPT_HTML:
            if (!*optarg)
                return ftctl_usage_error("report", "--html needs a file name");
            html = optarg;
            break;
        case 'h':
            return ftctl_usage("report", 0);
        case ':':
            return ftctl_usage_error("report", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("report", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind < argc)
        return ftctl_usage_error("report", "unexpected argument '%s'",
                                 ft_sanitize(argv[optind], 64));
    if (since >= 0 && until >= 0 && since > until)
        return ftctl_usage_error("report", "--since is after --until");
    req = ft_proto_new(FT_MSG_REPORT, NULL);
    if (!req || (since >= 0 && !cJSON_AddNumberToObject(req, "since", (double)since)) ||
        (until >= 0 && !cJSON_AddNumberToObject(req, "until", (double)until))) {
        cJSON_Delete(req);
        ftctl_die_msg("out of memory");
        return FTCTL_EXIT_FAILED;
    }
    if ((rc = ftctl_request(c, req, 1, &reply)) != FTCTL_EXIT_OK)
        return rc;
    if (html)
        rc = write_html(reply, html);
    else if (c->output == FTCTL_OUT_JSON)
        ftctl_print_payload(reply);
    else
        print_text(reply);
    cJSON_Delete(reply);
    return rc;
}
