/*
 * gtest.h: helpers of the GPU tests: a seeded generator, the skip rule (exit
 * 77 when no CUDA device is visible), bf16 rounding and conversion of host
 * data (so that the CPU reference sees the same weights and activations the
 * device stores), and the comparison every test prints.
 *
 * The comparison metric is max_i |gpu_i - cpu_i| / max_i |cpu_i| (the error
 * relative to the tensor's scale, so tiny entries do not blow up a per-element
 * ratio) plus the cosine of the two vectors; each test states its bounds.
 */
#ifndef FT_GTEST_H
#define FT_GTEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#include "cuda_backend.h"

static int gt_failures;

#define GT_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            gt_failures++;                                                                         \
        }                                                                                          \
    } while (0)

static uint64_t gt_state = 0x5eed0fc0dau;

static inline uint64_t gt_next(void)
{
    uint64_t z = (gt_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double gt_uniform(void)
{
    return (double)(gt_next() >> 11) * (1.0 / 9007199254740992.0);
}

static inline void gt_fill(float *x, size_t n, double std)
{
    for (size_t i = 0; i < n; i++) {
        double u1 = gt_uniform(), u2 = gt_uniform();
        x[i] = (float)(std * sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2));
    }
}

/* x rounded to the nearest bf16 (ties to even), kept as fp32 */
static inline void gt_round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof(u));
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
        memcpy(&x[i], &u, sizeof(u));
    }
}

/* bf16 storage on the host (the device's [act] and weight format) */
#define gt_to_bf16 ft_bf16_round
#define gt_from_bf16 ft_bf16_widen

typedef struct {
    double rel_max; /* max |a - b| / max |b| */
    double cosine;  /* <a, b> / (|a| |b|); 1 when both are zero */
} gt_cmp_t;

static inline gt_cmp_t gt_compare(const float *gpu, const float *cpu, size_t n)
{
    double md = 0.0, mref = 0.0, ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - cpu[i]);
        if (d > md || isnan(d))
            md = isnan(d) ? INFINITY : d;
        if (fabs(cpu[i]) > mref)
            mref = fabs(cpu[i]);
        ab += (double)gpu[i] * cpu[i];
        aa += (double)gpu[i] * gpu[i];
        bb += (double)cpu[i] * cpu[i];
    }
    gt_cmp_t c;
    c.rel_max = mref > 0.0 ? md / mref : md;
    c.cosine = (aa == 0.0 && bb == 0.0) ? 1.0 : ab / (sqrt(aa) * sqrt(bb) + 1e-300);
    return c;
}

/* compares, prints one line, counts a failure beyond the bounds */
static inline gt_cmp_t gt_expect(const char *what, const float *gpu, const float *cpu, size_t n,
                                 double max_rel, double min_cos)
{
    gt_cmp_t c = gt_compare(gpu, cpu, n);
    bool ok = c.rel_max <= max_rel && c.cosine >= min_cos;
    printf("%-4s %-34s n %-8zu rel_max %.3e (<= %.1e) cos %.6f (>= %.4f)\n", ok ? "ok" : "FAIL",
           what, n, c.rel_max, max_rel, c.cosine, min_cos);
    if (!ok)
        gt_failures++;
    return c;
}

/* The skip rule: 0 with *out the CUDA backend of device 0; 77 (said) when no
 * CUDA device is visible; 1 (FAIL printed) when it cannot be opened. main
 * returns any non-zero value as its exit status. */
static inline int gt_open_cuda(const backend_t **out)
{
    ft_err_t err;

    if (cuda_backend_device_count() < 1) {
        printf("no CUDA device visible: skipped\n");
        return 77;
    }
    ft_err_clear(&err);
    *out = backend_cuda(0, &err);
    if (!*out) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    return 0;
}

#endif
