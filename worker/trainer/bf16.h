/*
 * bf16.h: fp32 <-> bf16 on the host, one definition for every user (the
 * bf16 GEMM kernels, the CUDA backend's weight upload, the tests).
 *
 * Invariants: fp32 -> bf16 rounds to nearest, ties to even; a NaN stays a
 * quiet NaN with its sign; infinities and signed zeros are kept; subnormals
 * round like any other value. bf16 -> fp32 is exact.
 * Cost: a few integer operations; static inline so that loops inline them
 * even in a position-independent build. C and C++.
 */
#ifndef FT_BF16_H
#define FT_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t ft_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float ft_bf16_widen(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof(x));
    return x;
}

#endif
