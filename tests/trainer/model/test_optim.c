/*
 * test_optim.c: AdamW two steps against values worked out by hand from the
 * PyTorch update rule, the learning-rate schedules against their closed
 * forms (HF get_*_schedule_with_warmup), warmup_ratio rounding, gradient
 * clipping, and the world-of-one collective.
 */
#include "coll.h"
#include "mtest.h"
#include "optim.h"

static void expect_close(const char *what, double got, double want, double tol)
{
    double e = fabs(got - want);
    printf("%-44s got %.9g want %.9g err %.2e %s\n", what, got, want, e, e <= tol ? "ok" : "FAIL");
    MT_CHECK(e <= tol, "%s", what);
}

static void test_adamw(void)
{
    const backend_t *be = backend_cpu();
    adamw_t *a = adamw_new(be, 2, 0.9, 0.999, 1e-8, 0.01);
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.0f};
    adamw_step(a, p, g, 0.1f);
    /* step 1 by hand: p = 1 * (1 - 0.1*0.01) = 0.999; m = 0.05; v = 0.00025;
     * m_hat = 0.5, sqrt(v_hat) = 0.5 -> p = 0.999 - 0.1 * 1 = 0.899.
     * p[1]: zero gradient, only the decay: -2 * 0.999 = -1.998 */
    expect_close("adamw step 1, p[0]", p[0], 0.899, 1e-6);
    expect_close("adamw step 1, p[1] (decay only)", p[1], -1.998, 1e-6);
    expect_close("adamw step 1, m[0]", a->m[0], 0.05, 1e-8 + 0.05 * 1.2e-7);
    expect_close("adamw step 1, v[0]", a->v[0], 0.00025, 0.00025 * 3e-7);
    g[0] = -0.2f;
    adamw_step(a, p, g, 0.1f);
    /* step 2 by hand: p = 0.899 * 0.999 = 0.898101; m = 0.045 - 0.02 = 0.025;
     * v = 0.999 * 0.00025 + 0.001 * 0.04 = 0.00028975;
     * bc1 = 0.19, bc2 = 0.001999; update = 0.1/0.19 * 0.025 /
     * (sqrt(0.00028975)/sqrt(0.001999) + 1e-8) */
    double upd = 0.1 / 0.19 * 0.025 / (sqrt(0.00028975) / sqrt(0.001999) + 1e-8);
    expect_close("adamw step 2, p[0]", p[0], 0.898101 - upd, 2e-6);
    expect_close("adamw step 2, t", (double)a->t, 2, 0);
    adamw_destroy(&a);
    MT_CHECK(a == NULL, "adamw_destroy nulls");
}

static void test_schedules(void)
{
    /* total 10, warmup 2 */
    expect_close("warmup step 0 (all schedules start at 0)", lr_lambda(FT_LR_COSINE, 0, 2, 10), 0,
                 0);
    expect_close("warmup step 1 = 1/2", lr_lambda(FT_LR_LINEAR, 1, 2, 10), 0.5, 1e-15);
    expect_close("cosine step 2 = 1", lr_lambda(FT_LR_COSINE, 2, 2, 10), 1.0, 1e-15);
    expect_close("cosine step 6 = 0.5 (half way)", lr_lambda(FT_LR_COSINE, 6, 2, 10), 0.5, 1e-15);
    expect_close("cosine step 4 = (1+cos(pi/4))/2", lr_lambda(FT_LR_COSINE, 4, 2, 10),
                 0.5 * (1 + cos(M_PI / 4)), 1e-15);
    expect_close("cosine step 10 = 0", lr_lambda(FT_LR_COSINE, 10, 2, 10), 0.0, 1e-15);
    expect_close("linear step 6 = 4/8", lr_lambda(FT_LR_LINEAR, 6, 2, 10), 0.5, 1e-15);
    expect_close("linear step 9 = 1/8", lr_lambda(FT_LR_LINEAR, 9, 2, 10), 0.125, 1e-15);
    expect_close("linear past the end clamps at 0", lr_lambda(FT_LR_LINEAR, 12, 2, 10), 0, 0);
    expect_close("constant step 1 (warmup) = 1/2", lr_lambda(FT_LR_CONSTANT, 1, 2, 10), 0.5, 0);
    expect_close("constant step 7 = 1", lr_lambda(FT_LR_CONSTANT, 7, 2, 10), 1, 0);
    expect_close("no warmup: linear step 0 = 1", lr_lambda(FT_LR_LINEAR, 0, 0, 10), 1, 0);
    expect_close("no warmup: cosine step 5 of 10 = 0.5", lr_lambda(FT_LR_COSINE, 5, 0, 10), 0.5,
                 1e-15);
    ft_trainspec_t t;
    memset(&t, 0, sizeof t);
    t.warmup_ratio = 0.1;
    expect_close("warmup_ratio 0.1 of 25 steps = ceil(2.5)", (double)lr_warmup_steps(&t, 25), 3, 0);
    t.warmup_steps = 7;
    expect_close("warmup_steps wins over the ratio", (double)lr_warmup_steps(&t, 25), 7, 0);
}

static void test_clip(void)
{
    const backend_t *be = backend_cpu();
    float g[2] = {3.0f, 4.0f};
    double n = clip_grad_norm(be, g, 2, 1.0);
    expect_close("clip: norm before clipping", n, 5.0, 1e-12);
    expect_close("clip: g[0] = 3 / (5 + 1e-6)", g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    float h[2] = {0.3f, 0.4f};
    clip_grad_norm(be, h, 2, 1.0);
    expect_close("clip: norm under the limit is untouched", h[1], 0.4f, 0);
    float k[2] = {30.0f, 40.0f};
    clip_grad_norm(be, k, 2, 0.0);
    expect_close("clip: max_norm 0 disables clipping", k[1], 40.0f, 0);
}

static void test_coll(void)
{
    coll_t *c = coll_single();
    float x[3] = {1, 2, 3};
    double d[1] = {4.5};
    int rc = c->allreduce_sum_f32(c, x, 3) | c->allreduce_sum_f64(c, d, 1) | c->barrier(c) |
             c->broadcast(c, x, sizeof x, 0);
    printf("%-44s rank %d world %d rc %d x = %g %g %g %s\n", "single collective is the identity",
           c->rank, c->world, rc, x[0], x[1], x[2],
           rc == 0 && x[2] == 3 && d[0] == 4.5 && c->world == 1 ? "ok" : "FAIL");
    MT_CHECK(rc == 0 && x[2] == 3 && d[0] == 4.5 && c->world == 1, "coll single");
    MT_CHECK(c->broadcast(c, x, sizeof x, 1) == -1, "broadcast from a rank that does not exist");
    coll_destroy(&c);
    MT_CHECK(c == NULL, "coll_destroy nulls");
}

int main(void)
{
    test_adamw();
    test_schedules();
    test_clip();
    test_coll();
    printf("%s: %d failure(s)\n", mt_failures ? "FAIL" : "PASS", mt_failures);
    return mt_failures ? 1 : 0;
}
