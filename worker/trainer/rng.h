/*
 * rng.h: the trainer's deterministic pseudo-random streams, shared by the data
 * shuffle (data.c), the LoRA init (lora.c) and the tiny test model
 * (tinymodel.c): splitmix64 (Steele, Lea, Flood 2014) and xoshiro256**
 * (Blackman, Vigna 2018) seeded through it.
 *
 * Invariants: the streams depend on the seed alone (no global state), so a
 * resumed run redraws exactly what it drew before; an xoshiro state is never
 * all zero. Cost: a few integer operations per draw.
 */
#ifndef FT_RNG_H
#define FT_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* xoshiro256** state, never all zero */
} rng_t;

/* Next value of the splitmix64 stream whose state is *x (advanced). */
static inline uint64_t rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seeds r with four splitmix64 draws from seed. */
static inline void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_splitmix64(&seed);
}

static inline uint64_t rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Next xoshiro256** value. */
static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t out = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return out;
}

#endif
