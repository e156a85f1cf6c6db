/*
 * test_cost.c: the cost model against a worked example computed by hand
 * (docs/cost-model.md uses the same numbers), node-group overrides, model
 * matching, cloud prices, break-even, and the file parser's errors.
 */
#include <math.h>
#include <string.h>

#include "../lib/check.h"
#include "ft/cost.h"

static const char example[] = "# the worked example of docs/cost-model.md\n"
                              "[site]\n"
                              "currency = EUR\n"
                              "electricity_per_kwh = 0.10\n"
                              "pue = 1.25\n"
                              "maintenance_per_year = 0.12\n"
                              "other_per_year = 87660   # staff and space, whole site\n"
                              "site_gpus = 100\n"
                              "[gpu \"H100\"]\n"
                              "price = 30000\n"
                              "server_overhead = 1.5\n"
                              "years = 5\n"
                              "power_w = 800\n"
                              "[group \"east\"]\n"
                              "nodes = east-*, spare\n"
                              "pue = 1.1\n"
                              "H100.price = 20000\n"
                              "[cloud \"test-cloud\"]\n"
                              "H100 = 3.0\n"
                              "[cloud \"aws-on-demand\"]\n"
                              "H100 = 12.29\n"
                              "[budget \"vision\"]\n"
                              "gpu_hours = 100\n"
                              "over = lower_priority\n"
                              "priority_penalty = 50\n";

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static void worked_example(void)
{
    cost_model_t m;
    cost_rates_t r;
    ft_err_t err = {0};

    cost_model_defaults(&m);
    CHECK(cost_model_parse(&m, example, "example.ini", &err) == 0, "example parses (%s)", err.msg);
    CHECK(strcmp(m.currency, "EUR") == 0, "currency EUR");

    /* By hand: capital = 30000 x 1.5 / (5 x 8766) = 45000 / 43830 = 1.02669404517...
     * maintenance = 45000 x 0.12 / 8766 + 87660 / (100 x 8766) = 0.61601642710 + 0.1
     * energy = 0.8 kW x 1.25 x 0.10 = 0.1 per busy hour */
    cost_rates(&m, "west-1", "NVIDIA H100 80GB HBM3", 7, &r);
    CHECK(strcmp(r.gpu, "H100") == 0 && r.group[0] == '\0', "H100 entry, no group: %s '%s'", r.gpu,
          r.group);
    CHECK(NEAR(r.capital, 1.0266940451745379), "capital %.12f = 1.026694045175", r.capital);
    CHECK(NEAR(r.maintenance, 0.7160164271047228), "maintenance %.12f = 0.716016427105",
          r.maintenance);
    CHECK(NEAR(r.fixed, 1.7427104722792608), "fixed %.12f = 1.742710472279", r.fixed);
    CHECK(NEAR(r.energy, 0.1), "energy per busy hour %.12f = 0.1", r.energy);
    /* a 2 h interval with 1.5 kWh measured: 2 x 1.742710472279 + 1.5 x 1.25 x 0.10 */
    CHECK(NEAR(2 * r.fixed + cost_energy(&r, 1.5), 3.6729209445585216),
          "2 h, 1.5 kWh: %.12f = 3.672920944559", 2 * r.fixed + cost_energy(&r, 1.5));
    /* break-even against 3.00/h: 1.742710472279 / (3.0 - 0.1) = 0.600934645614 */
    CHECK(NEAR(cost_break_even(r.fixed, r.energy, cost_cloud_price(&m.clouds[m.nclouds - 1], "x")),
               -1),
          "an offer without the model has no break-even");
    {
        const cost_cloud_t *tc = NULL, *aws = NULL;

        for (int i = 0; i < m.nclouds; i++) {
            if (strcmp(m.clouds[i].name, "test-cloud") == 0)
                tc = &m.clouds[i];
            if (strcmp(m.clouds[i].name, "aws-on-demand") == 0)
                aws = &m.clouds[i];
        }
        CHECK(tc && aws, "both offers present");
        if (tc && aws) {
            double u = cost_break_even(r.fixed, r.energy, cost_cloud_price(tc, "H100 SXM"));

            CHECK(NEAR(u, 0.6009346456135383), "break-even vs 3.00: %.12f = 0.600934645614", u);
            u = cost_break_even(r.fixed, r.energy, cost_cloud_price(aws, "H100 SXM"));
            CHECK(NEAR(u, 0.1429623028941149), "break-even vs 12.29: %.12f = 0.142962302894", u);
            CHECK(aws->n == 1, "a file's offer replaces the built-in one (%d models)", aws->n);
            CHECK(cost_cloud_price(aws, "H200") < 0, "replaced offer no longer rents H200");
            CHECK(m.nclouds == 2 && strcmp(m.clouds[0].name, "test-cloud") == 0,
                  "a file with [cloud] sections lists only its own offers, in file order (%d)",
                  m.nclouds);
            CHECK(cost_break_even(r.fixed, r.energy, 0.05) == -1,
                  "a cloud price below energy never breaks even");
            CHECK(cost_break_even(r.fixed, r.energy, 1.5) == -1,
                  "a cloud price needing > 100%% utilisation never breaks even");
        }
    }

    /* Group east: PUE 1.1, H100 price 20000: capital = 30000 / 43830 = 0.684462696783,
     * maintenance = 3600 / 8766 + 0.1 = 0.510677618070, energy = 0.8 x 1.1 x 0.1 = 0.088 */
    cost_rates(&m, "east-7", "NVIDIA H100 80GB HBM3", 7, &r);
    CHECK(strcmp(r.group, "east") == 0, "east-7 is in group east");
    CHECK(NEAR(r.capital, 0.6844626967830253), "east capital %.12f = 0.684462696783", r.capital);
    CHECK(NEAR(r.maintenance, 0.5106776180698152), "east maintenance %.12f = 0.510677618070",
          r.maintenance);
    CHECK(NEAR(r.energy, 0.088), "east energy %.12f = 0.088", r.energy);
    cost_rates(&m, "spare", "emulated-gpu", 7, &r);
    CHECK(strcmp(r.gpu, "default") == 0 && strcmp(r.group, "east") == 0,
          "unknown model on 'spare' uses default in group east (%s, %s)", r.gpu, r.group);

    {
        const cost_budget_t *b = cost_budget_find(&m, "vision");

        CHECK(b && b->gpu_hours == 100 && b->over == COST_OVER_LOWER_PRIORITY &&
                  b->priority_penalty == 50,
              "budget of vision: 100 GPU-h, lower_priority by 50");
        CHECK(!cost_budget_find(&m, "nlp"), "no budget for nlp");
    }
}

static void defaults(void)
{
    cost_model_t m;
    cost_rates_t r;

    cost_model_defaults(&m);
    /* 31250 x 1.64 / 43830 = 1.169290440338; x 0.10 x 5 = 0.584645220169 maintenance */
    cost_rates(&m, "n1", "NVIDIA H100 PCIe", 8, &r);
    CHECK(NEAR(r.capital, 31250 * 1.64 / 43830.0), "default H100 capital %.6f", r.capital);
    CHECK(NEAR(r.maintenance, 31250 * 1.64 * 0.10 / 8766.0), "default maintenance %.6f",
          r.maintenance);
    CHECK(NEAR(r.energy, 0.525 * 1.5 * 0.0806), "default energy %.6f", r.energy);
    cost_rates(&m, "n1", "NVIDIA H200", 8, &r);
    CHECK(strcmp(r.gpu, "H200") == 0, "H200 matched");
    cost_rates(&m, "n1", "cpu", 8, &r);
    CHECK(strcmp(r.gpu, "cpu") == 0 && r.fixed == 0, "cpu device: no capital, fixed %.3f", r.fixed);
    CHECK(m.nclouds >= 3, "built-in cloud offers: %d", m.nclouds);
}

static void bad(const char *text, const char *want)
{
    cost_model_t m;
    ft_err_t err = {0};
    int rc;

    cost_model_defaults(&m);
    rc = cost_model_parse(&m, text, "c.ini", &err);
    CHECK(rc < 0 && strstr(err.msg, want), "rejected with '%s': %s", want, err.msg);
}

int main(void)
{
    worked_example();
    defaults();
    bad("pue = 1.2\n", "c.ini:1: 'pue' comes before any [section]");
    bad("[site]\npue = 0.5\n", "c.ini:2: 'pue': 0.5 is outside [1, 5]");
    bad("[site]\npue = fast\n", "'pue': 'fast' is not a number");
    bad("[site]\npue = 1.2\npue = 1.3\n", "c.ini:3: 'pue' is set twice");
    bad("[site]\nwatts = 3\n", "unknown key 'watts'");
    bad("[gpu]\n", "section 'gpu' needs a quoted name");
    bad("[site \"x\"]\n", "section 'site' takes no name");
    bad("[rack \"x\"]\n", "unknown section 'rack'");
    bad("[gpu \"A100\"\n", "does not end with ']'");
    bad("[gpu \"A100\"]\nyears = 0\n", "'years': 0 is outside [1, 20]");
    bad("[group \"g\"]\nnodes = ,\n", "'nodes'");
    bad("[group \"g\"]\nnodes = a\n[group \"g\"]\n", "group 'g' is defined twice");
    bad("[group \"g\"]\nH100.watts = 3\n", "unknown key 'H100.watts'");
    bad("[cloud \"c\"]\nH100 = -1\n", "'H100': -1 is outside");
    bad("[budget \"t\"]\nover = panic\n", "'over': 'panic' is not hold or lower_priority");
    bad("[budget \"t\"]\npriority_penalty = 1.5\n", "not an integer");
    bad("[site]\njust words\n", "c.ini:2: expected 'key = value'");
    bad("[site]\nelectricity_per_kwh =\n", "'electricity_per_kwh' has no value");
    bad("[cloud \"c\"]\nH100 = 1\n[cloud \"c\"]\n", "cloud offer 'c' is defined twice");
    return check_done("test_cost");
}
