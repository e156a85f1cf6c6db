/*
 * client/html.c: the team leads' report as one self-contained HTML page:
 * inline CSS and inline SVG charts (GPU-hours per team per day, cost
 * breakdown, utilisation per day, top jobs) and the tables behind them. No
 * script, no external resource, so it opens offline and prints.
 *
 * Invariants: every string from the reply is HTML-escaped; every chart has an
 * id (chart-*) and a <title>, and is drawn from the numbers in the reply only.
 * Cost: O(days x teams) SVG elements.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftctl.h"

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
#define NPAL (sizeof(palette) / sizeof(palette[0]))

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20 && *s != 0x7f)
                fputc(*s, f);
        }
    }
}

static const cJSON *arr(const cJSON *o, const char *name)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsArray(a) ? a : NULL;
}

/* Distinct strings of field name in array a, in first-seen order (at most max). */
static int distinct(const cJSON *a, const char *name, const char **out, int max)
{
    int n = 0;
    const cJSON *e;

    cJSON_ArrayForEach(e, a)
    {
        const char *v = ftctl_get_str(e, name, "");
        int i;

        for (i = 0; i < n && strcmp(out[i], v) != 0; i++)
            ;
        if (i == n && n < max)
            out[n++] = v;
    }
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A round axis maximum at or above v. */
static double nice_max(double v)
{
    double p = 1, m;

    if (!(v > 1e-300) || v > 1e300) /* zero, negative, NaN or absurd */
        return 1;
    /* p: the power of ten at or below v */
    while (p * 10 <= v)
        p *= 10;
    while (p > v)
        p /= 10;
    m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

#define W 760
#define H 300
#define ML 60 /* left margin for the axis labels */
#define MB 60 /* bottom margin for the day labels */
#define MT 20

static void axis(FILE *f, double ymax, const char *unit)
{
    for (int i = 0; i <= 4; i++) {
        double y = MT + (H - MT - MB) * (1 - i / 4.0);

        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>", ML, y,
                W - 10, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"yl\">%.3g%s</text>", ML - 6, y + 4,
                ymax * i / 4, unit);
    }
}

/* GPU-hours per team per day: stacked bars. */
static void chart_team_days(FILE *f, const cJSON *r)
{
    const cJSON *td = arr(r, "team_days"), *e;
    const char *days[400], *teams[NPAL * 4];
    int nd = distinct(td, "day", days, 400), nt = distinct(td, "team", teams, (int)(NPAL * 4));
    double ymax = 0;

    qsort(days, (size_t)nd, sizeof(days[0]), cmp_str);
    for (int d = 0; d < nd; d++) {
        double sum = 0;

        cJSON_ArrayForEach(e, td)
        {
            if (strcmp(ftctl_get_str(e, "day", ""), days[d]) == 0)
                sum += ftctl_get_num(e, "gpu_hours", 0);
        }
        if (sum > ymax)
            ymax = sum;
    }
    ymax = nice_max(ymax);
    fprintf(f,
            "<svg id=\"chart-team-days\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\"><title>GPU-hours per team per day</title>",
            W, H, W, H);
    axis(f, ymax, "");
    for (int d = 0; d < nd; d++) {
        double slot = (double)(W - 10 - ML) / (nd ? nd : 1), x = ML + slot * d + slot * 0.15;
        double y = H - MB;

        for (int t = 0; t < nt; t++)
            cJSON_ArrayForEach(e, td)
            {
                double h;

                if (strcmp(ftctl_get_str(e, "day", ""), days[d]) != 0 ||
                    strcmp(ftctl_get_str(e, "team", ""), teams[t]) != 0)
                    continue;
                h = ftctl_get_num(e, "gpu_hours", 0) / ymax * (H - MT - MB);
                y -= h;
                fprintf(f,
                        "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"%s\"><title>",
                        x, y, slot * 0.7, h, palette[t % NPAL]);
                esc(f, teams[t]);
                fprintf(f, " on %s: %.3f GPU-h</title></rect>", days[d],
                        ftctl_get_num(e, "gpu_hours", 0));
            }
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"xl\" transform=\"rotate(-40 %.1f %d)\">",
                x + slot * 0.35, H - MB + 14, x + slot * 0.35, H - MB + 14);
        esc(f, days[d]);
        fputs("</text>", f);
    }
    fputs("</svg><p class=\"legend\">", f);
    for (int t = 0; t < nt; t++) {
        fprintf(f, "<span><i style=\"background:%s\"></i>", palette[t % NPAL]);
        esc(f, teams[t]);
        fputs("</span> ", f);
    }
    if (nd == 0)
        fputs("no device time in this period", f);
    fputs("</p>\n", f);
}

/* Cost breakdown: one horizontal bar per team split into capital,
 * maintenance and energy, plus the cluster total. */
static void chart_cost(FILE *f, const cJSON *r, const char *cur)
{
    static const char *const parts[] = {"cost_capital", "cost_maintenance", "cost_energy"};
    static const char *const labels[] = {"capital", "maintenance", "energy"};
    const cJSON *teams = arr(r, "teams"), *e, *tot = cJSON_GetObjectItemCaseSensitive(r, "totals");
    int n = cJSON_GetArraySize(teams) + 1, i = 0, h = 40 + n * 34;
    double xmax = nice_max(ftctl_get_num(tot, "cost", 0));

    fprintf(f,
            "<svg id=\"chart-cost\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\"><title>Cost breakdown (%s)</title>",
            W, h, W, h, "capital, maintenance, energy");
    /* the cluster total first, then each team */
    for (const cJSON *row = tot; row; row = (i == 1 ? (teams ? teams->child : NULL) : row->next)) {
        double x = 160;
        const char *name = i == 0 ? "cluster" : ftctl_get_str(row, "team", "");

        fprintf(f, "<text x=\"150\" y=\"%d\" class=\"yl\">", 30 + i * 34);
        esc(f, name);
        fputs("</text>", f);
        for (int p = 0; p < 3; p++) {
            double v = ftctl_get_num(row, parts[p], 0), w = v / xmax * (W - 200);

            fprintf(f,
                    "<rect class=\"bar\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"22\" "
                    "fill=\"%s\"><title>%s: %.2f ",
                    x, 14 + i * 34, w, palette[p], labels[p], v);
            esc(f, cur);
            fputs("</title></rect>", f);
            x += w;
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"val\">%.2f</text>", x + 4, 30 + i * 34,
                ftctl_get_num(row, "cost", 0));
        i++;
    }
    (void)e;
    fputs("</svg><p class=\"legend\">", f);
    for (int p = 0; p < 3; p++)
        fprintf(f, "<span><i style=\"background:%s\"></i>%s</span> ", palette[p], labels[p]);
    fputs("</p>\n", f);
}

/* Utilisation per day: allocated against available GPU-hours. */
static void chart_util(FILE *f, const cJSON *r)
{
    const cJSON *days = arr(r, "days"), *e;
    int nd = cJSON_GetArraySize(days), d = 0;
    double ymax = 0;

    cJSON_ArrayForEach(e, days)
    {
        double v = ftctl_get_num(e, "available_gpu_hours", 0);

        if (v > ymax)
            ymax = v;
        if (ftctl_get_num(e, "gpu_hours", 0) > ymax)
            ymax = ftctl_get_num(e, "gpu_hours", 0);
    }
    ymax = nice_max(ymax);
    fprintf(f,
            "<svg id=\"chart-util\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\"><title>Utilisation per day</title>",
            W, H, W, H);
    axis(f, ymax, "");
    cJSON_ArrayForEach(e, days)
    {
        double slot = (double)(W - 10 - ML) / (nd ? nd : 1), x = ML + slot * d + slot * 0.15;
        double av = ftctl_get_num(e, "available_gpu_hours", 0),
               al = ftctl_get_num(e, "gpu_hours", 0);
        double ha = av / ymax * (H - MT - MB), hl = al / ymax * (H - MT - MB);

        fprintf(f,
                "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"#d7dde5\"><title>available %.3f GPU-h</title></rect>",
                x, H - MB - ha, slot * 0.7, ha, av);
        fprintf(f,
                "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"%s\"><title>allocated %.3f GPU-h (%.0f%%)</title></rect>",
                x + slot * 0.1, H - MB - hl, slot * 0.5, hl, palette[0], al,
                av > 0 ? 100 * al / av : 0);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"xl\" transform=\"rotate(-40 %.1f %d)\">",
                x + slot * 0.35, H - MB + 14, x + slot * 0.35, H - MB + 14);
        esc(f, ftctl_get_str(e, "day", ""));
        fputs("</text>", f);
        d++;
    }
    fprintf(f,
            "</svg><p class=\"legend\"><span><i style=\"background:#d7dde5\"></i>available"
            "</span> <span><i style=\"background:%s\"></i>allocated</span></p>\n",
            palette[0]);
}

/* Top jobs by GPU-hours: horizontal bars. */
static void chart_top_jobs(FILE *f, const cJSON *r)
{
    const cJSON *jobs = arr(r, "top_jobs"), *e;
    int n = cJSON_GetArraySize(jobs), i = 0, h = 20 + (n ? n : 1) * 28;
    double xmax = nice_max(jobs && jobs->child ? ftctl_get_num(jobs->child, "gpu_hours", 0) : 0);

    fprintf(f,
            "<svg id=\"chart-top-jobs\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\"><title>Top jobs by GPU-hours</title>",
            W, h, W, h);
    cJSON_ArrayForEach(e, jobs)
    {
        double v = ftctl_get_num(e, "gpu_hours", 0), w = v / xmax * (W - 300);

        fprintf(f, "<text x=\"210\" y=\"%d\" class=\"yl\">#%lld ", 30 + i * 28,
                (long long)ftctl_get_int(e, "job_id", 0));
        esc(f, ftctl_get_str(e, "name", ""));
        fprintf(f,
                "</text><rect class=\"bar\" x=\"220\" y=\"%d\" width=\"%.1f\" height=\"20\" "
                "fill=\"%s\"><title>%.3f GPU-h</title></rect>"
                "<text x=\"%.1f\" y=\"%d\" class=\"val\">%.3f GPU-h, %.2f</text>",
                15 + i * 28, w, palette[4], v, 224 + w, 30 + i * 28, v,
                ftctl_get_num(e, "cost", 0));
        i++;
    }
    fputs("</svg>\n", f);
}

static void fmt_util(char *buf, size_t len, const cJSON *v)
{
    if (cJSON_IsNumber(v))
        snprintf(buf, len, "%.1f%%", 100 * v->valuedouble);
    else
        snprintf(buf, len, "never");
}

int ftctl_html_report(const cJSON *r, FILE *f)
{
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(r, "totals");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "utilisation"), *e;
    const char *cur = ftctl_get_str(r, "currency", "");
    char s1[32], s2[32], buf[32];

    ft_fmt_time(ftctl_get_int(r, "since", 0), s1, sizeof(s1));
    ft_fmt_time(ftctl_get_int(r, "until", 0), s2, sizeof(s2));
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>ft cluster report</title><style>"
          "body{font-family:sans-serif;margin:2em;color:#222;max-width:820px}"
          "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}"
          "table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;"
          "text-align:right}td:first-child,th:first-child{text-align:left}"
          ".grid{stroke:#e4e4e4}.yl{font-size:11px;text-anchor:end}.xl{font-size:11px;"
          "text-anchor:end}.val{font-size:11px}.legend span{margin-right:1em}"
          ".legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em}"
          ".kpi{display:flex;gap:1em}.kpi div{background:#f3f5f8;padding:.6em 1em}"
          ".kpi b{display:block;font-size:1.3em}"
          "</style></head><body>\n",
          f);
    fprintf(f, "<h1>GPU cluster report</h1><p>From %s to %s. Money in ", s1, s2);
    esc(f, cur);
    fputs(", from the cost model (docs/cost-model.md).</p>\n<div class=\"kpi\">", f);
    fprintf(f, "<div>GPU-hours<b id=\"kpi-gpu-hours\">%.2f</b></div>",
            ftctl_get_num(tot, "gpu_hours", 0));
    fprintf(f, "<div>cost<b id=\"kpi-cost\">%.2f</b></div>", ftctl_get_num(tot, "cost", 0));
    fprintf(f, "<div>energy<b>%.2f kWh</b>%s</div>", ftctl_get_num(tot, "energy_kwh", 0),
            ftctl_get_str(tot, "energy_source", ""));
    fprintf(f, "<div>utilisation<b id=\"kpi-util\">%.1f%%</b></div>",
            100 * ftctl_get_num(u, "utilisation", 0));
    fprintf(f, "<div>idle capacity cost<b>%.2f</b></div></div>\n",
            ftctl_get_num(u, "idle_cost", 0));

    fputs("<h2>GPU-hours per team per day</h2>\n", f);
    chart_team_days(f, r);
    fputs("<h2>Cost breakdown</h2>\n", f);
    chart_cost(f, r, cur);
    fputs("<h2>Utilisation over time</h2>\n", f);
    fprintf(f, "<p>%.2f of %.2f available GPU-hours allocated on %lld devices.</p>\n",
            ftctl_get_num(u, "allocated_gpu_hours", 0), ftctl_get_num(u, "available_gpu_hours", 0),
            (long long)ftctl_get_int(u, "devices", 0));
    chart_util(f, r);
    fputs("<h2>Top jobs</h2>\n", f);
    chart_top_jobs(f, r);

    fputs("<h2>Owning against renting</h2><table id=\"break-even\"><tr><th>cloud offer</th>"
          "<th>same hours in the cloud</th><th>break-even utilisation</th></tr>\n",
          f);
    cJSON_ArrayForEach(e, arr(r, "break_even"))
    {
        const cJSON *c;
        double cc = 0;

        cJSON_ArrayForEach(c, arr(tot, "cloud"))
        {
            if (strcmp(ftctl_get_str(c, "offer", ""), ftctl_get_str(e, "offer", "")) == 0)
                cc = ftctl_get_num(c, "cost", 0);
        }
        fmt_util(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(e, "utilisation"));
        fputs("<tr><td>", f);
        esc(f, ftctl_get_str(e, "offer", ""));
        fprintf(f, "</td><td>%.2f</td><td>%s</td></tr>\n", cc, buf);
    }
    fputs("</table><p>Owning is cheaper than the offer when utilisation stays above its "
          "break-even.</p>\n",
          f);

    fputs("<h2>Team budgets this month</h2><table id=\"budgets\"><tr><th>team</th><th>used "
          "GPU-h</th><th>budget GPU-h</th><th>used money</th><th>budget money</th><th>state</th>"
          "</tr>\n",
          f);
    cJSON_ArrayForEach(e, arr(r, "budgets"))
    {
        fputs("<tr><td>", f);
        esc(f, ftctl_get_str(e, "team", ""));
        fprintf(f, "</td><td>%.2f</td><td>", ftctl_get_num(e, "used_gpu_hours", 0));
        if (ftctl_is_null_or_absent(e, "budget_gpu_hours"))
            fputs("-", f);
        else
            fprintf(f, "%.2f", ftctl_get_num(e, "budget_gpu_hours", 0));
        fprintf(f, "</td><td>%.2f</td><td>", ftctl_get_num(e, "used_money", 0));
        if (ftctl_is_null_or_absent(e, "budget_money"))
            fputs("-", f);
        else
            fprintf(f, "%.2f", ftctl_get_num(e, "budget_money", 0));
        fputs("</td><td>", f);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "over"))) {
            fputs("over: ", f);
            esc(f, ftctl_get_str(e, "action", ""));
        } else {
            fputs("within", f);
        }
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<p>Generated by ftctl report.</p></body></html>\n", f);
    return ferror(f) ? -1 : 0;
}
