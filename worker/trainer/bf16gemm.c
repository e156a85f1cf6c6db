/*
 * bf16gemm.c: bf16 GEMMs against frozen weights (bf16gemm.h).
 *
 * Layouts. A packed operand is a grid of blocks of 32 k by 16 n, each block
 * 512 bf16 in VNNI order [k/2][n][k%2] (one AMX B tile: 16 rows of 64 bytes),
 * the k-blocks of one 16-column block stored one after another, so a column
 * panel is contiguous. W^T (k = cols) feeds bf16_gemm_nt and W (k = rows)
 * feeds bf16_gemm_nn; padding k and n to 32 and 16 is zero. A is converted
 * per call into blocks of 16 m by 32 k (one AMX A tile, row-major).
 *
 * Loops (the driver, shared by all kernels): K in chunks of KC_BLOCKS
 * k-blocks (1024 k), the output columns in panels of at most PANEL_BYTES of
 * packed W (which stays in L2), then 32 rows of A at a time, converted into a
 * per-thread buffer (at most 64 KiB, in L1/L2) while the kernel walks the
 * panel (two such buffers: the AMX kernel fills the second as it goes). The
 * first K chunk writes alpha * acc (+ beta * C), later chunks add to C. The
 * AMX kernel starts its tiles from C or zero and stores them to C
 * when alpha is 1 and beta 0 or 1 (what the trainer calls), else it goes
 * through combine(); the choice depends only on alpha, beta and the chunk, so
 * every column and row gets the same arithmetic whatever the range of a call.
 *
 * Invariants: each per-thread buffer holds 2 x KC_BLOCKS blocks, whatever
 * the shapes, so calls never allocate; padding rows and k of that buffer are
 * zero, so the kernels always run whole blocks and only the writes to C clip
 * to M and [n0, n1).
 *
 * Cost: 2 * M * K * (n1 - n0) flop, plus A converted once per column panel
 * (1 MiB of packed W: 1024 columns at K = 512, 512 at K >= 1024); the AMX
 * kernel converts the next 32 rows between its tile instructions.
 * Measured (bench/trainer/bf16gemm_bench.c, M = 1024, one core): AMX about
 * 1 TFLOP/s on the trainer's shapes; AVX512-BF16 is limited by VDPBF16PS,
 * which this CPU issues at a quarter of its fp32 FMA rate.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "bf16gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BF16_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define BK 32                 /* k per block: one 64-byte tile row of bf16 */
#define BN 16                 /* n per packed block */
#define BM 16                 /* m per A block */
#define BLOCK (BK * BN)       /* bf16 elements per block (BK * BM too) */
#define MR 32                 /* rows of A converted at a time: two A blocks */
#define KC_BLOCKS 32          /* k-blocks per K chunk (1024 k) */
#define PANEL_BYTES (1 << 20) /* packed W per column panel, bytes (L2 is 2 MiB a core) */

struct bf16_mat {
    int rows;         /* out features: W's rows */
    int cols;         /* in features: W's cols */
    int kb_nt;        /* k-blocks of wt: ceil(cols / 32) */
    int kb_nn;        /* k-blocks of w: ceil(rows / 32) */
    uint16_t *wt;     /* (ceil(rows/16), kb_nt, 16, 16, 2) W^T, the nt operand */
    uint16_t *w;      /* (ceil(cols/16), kb_nn, 16, 16, 2) W, the nn operand */
    size_t bytes;     /* memory held, bytes */
};

/* One call, as the driver and kernels see it. */
typedef struct {
    int M;             /* rows of A and C */
    int K;             /* inner dimension */
    const float *A;    /* (M, lda) fp32 */
    int lda;           /* elements */
    const uint16_t *B; /* packed operand, kb blocks per column block */
    int kb;            /* k-blocks of B per column block */
    float alpha, beta; /* C = alpha * A B + beta * C */
    float *C;          /* (M, ldc) fp32 */
    int ldc;           /* elements */
    int n0, n1;        /* output columns written */
} job_t;

/* The part of a job one kernel call covers. */
typedef struct {
    const uint16_t *a; /* (2, kcn, 16, 32) bf16 A blocks: rows m0.., k-blocks kc0.. */
    int m0;            /* first row */
    int mrows;         /* valid rows, 1..32 */
    int kc0, kcn;      /* k-blocks kc0 .. kc0 + kcn - 1 */
    int nb0, nbn;      /* column blocks nb0 .. nb0 + nbn - 1 */
    int first;         /* first K chunk: apply beta, else accumulate */
    uint16_t *next;    /* buffer for the next rows of A, for a kernel that converts them */
    int next_rows;     /* rows of A after these ones, at most 32 (0: none) */
} part_t;

typedef void convert_fn(const job_t *j, uint16_t *abuf, int m0, int mrows, int kc0, int kcn);
typedef void block_fn(const job_t *j, const part_t *p);

/* The conversions (bf16.h) under short names. */
#define round_bf16 ft_bf16_round
#define widen_bf16 ft_bf16_widen

/* Offset of element (k, n) of a packed operand with kb k-blocks per column block. */
static size_t pack_index(int k, int n, int kb)
{
    return ((size_t)(n / BN) * (size_t)kb + (size_t)(k / BK)) * BLOCK + (size_t)(k % BK / 2) * (BN * 2)
           + (size_t)(n % BN) * 2 + (size_t)(k & 1);
}

bf16_mat_t *bf16_mat_new(const float *W, int rows, int cols)
{
    if (!W || rows < 1 || cols < 1) {
        errno = EINVAL;
        return NULL;
    }
    bf16_mat_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->rows = rows;
    m->cols = cols;
    m->kb_nt = (cols + BK - 1) / BK;
    m->kb_nn = (rows + BK - 1) / BK;
    size_t n_nt = (size_t)((rows + BN - 1) / BN) * (size_t)m->kb_nt * BLOCK;
    size_t n_nn = (size_t)((cols + BN - 1) / BN) * (size_t)m->kb_nn * BLOCK;
    m->wt = aligned_alloc(64, n_nt * sizeof(uint16_t));
    m->w = aligned_alloc(64, n_nn * sizeof(uint16_t));
    if (!m->wt || !m->w) {
        bf16_mat_destroy(&m);
        errno = ENOMEM;
        return NULL;
    }
    memset(m->wt, 0, n_nt * sizeof(uint16_t));
    memset(m->w, 0, n_nn * sizeof(uint16_t));
    for (int r = 0; r < rows; r++) {
        const float *wr = W + (size_t)r * (size_t)cols;
        for (int c = 0; c < cols; c++) {
            uint16_t h = round_bf16(wr[c]);
            m->wt[pack_index(c, r, m->kb_nt)] = h; /* W^T: k = c, n = r */
            m->w[pack_index(r, c, m->kb_nn)] = h;  /* W:   k = r, n = c */
        }
    }
    m->bytes = sizeof(*m) + (n_nt + n_nn) * sizeof(uint16_t);
    return m;
}

void bf16_mat_destroy(bf16_mat_t **pm)
{
    bf16_mat_t *m = *pm;
    if (!m)
        return;
    free(m->wt);
    free(m->w);
    free(m);
    *pm = NULL;
}

size_t bf16_mat_bytes(const bf16_mat_t *m) { return m ? m->bytes : 0; }
int bf16_mat_rows(const bf16_mat_t *m) { return m->rows; }
int bf16_mat_cols(const bf16_mat_t *m) { return m->cols; }

/* Writes a (rows, 16) accumulator block for column block nb into C, clipped
 * to the job's [n0, n1): the first K chunk sets alpha * acc + beta * C (beta 0
 * reads nothing), later chunks add alpha * acc. */
static inline void combine(const job_t *j, const float *acc, int ld, int m0, int rows, int nb,
                           int first)
{
    int base = nb * BN;
    int c0 = j->n0 > base ? j->n0 : base;
    int c1 = j->n1 < base + BN ? j->n1 : base + BN;
    float alpha = j->alpha, beta = j->beta;
    for (int r = 0; r < rows; r++) {
        float *crow = j->C + (size_t)(m0 + r) * (size_t)j->ldc;
        const float *arow = acc + (size_t)r * (size_t)ld;
        if (!first)
            for (int c = c0; c < c1; c++)
                crow[c] += alpha * arow[c - base];
        else if (beta == 0.0f)
            for (int c = c0; c < c1; c++)
                crow[c] = alpha * arow[c - base];
        else
            for (int c = c0; c < c1; c++)
                crow[c] = alpha * arow[c - base] + beta * crow[c];
    }
}

/* Where A's element (r, k) of the converted rows goes in the buffer. */
static inline size_t abuf_index(int r, int kbi, int kcn)
{
    return ((size_t)(r / BM) * (size_t)kcn + (size_t)kbi) * BLOCK + (size_t)(r % BM) * BK;
}

/* ---- generic: plain C, any CPU ---- */

static void convert_generic(const job_t *j, uint16_t *abuf, int m0, int mrows, int kc0, int kcn)
{
    int k0 = kc0 * BK;
    for (int r = 0; r < MR; r++) {
        const float *src = r < mrows ? j->A + (size_t)(m0 + r) * (size_t)j->lda : NULL;
        for (int kbi = 0; kbi < kcn; kbi++) {
            uint16_t *dst = abuf + abuf_index(r, kbi, kcn);
            for (int t = 0; t < BK; t++) {
                int k = k0 + kbi * BK + t;
                dst[t] = src && k < j->K ? round_bf16(src[k]) : 0;
            }
        }
    }
}

/* Compiled for AVX-512F, AVX2 and baseline x86-64, the best chosen at load
 * time; without FMA contraction (ISO C mode) every clone rounds alike. */
#if defined(BF16_X86) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void block_generic(const job_t *j, const part_t *p)
{
    float acc[BM][BN];
    float be[BK / 2][BN], bo[BK / 2][BN]; /* the block's even and odd k, fp32 */
    for (int nb = p->nb0; nb < p->nb0 + p->nbn; nb++) {
        for (int mi = 0; mi * BM < p->mrows; mi++) {
            memset(acc, 0, sizeof(acc));
            for (int kbi = 0; kbi < p->kcn; kbi++) {
                const uint16_t *a = p->a + ((size_t)mi * (size_t)p->kcn + (size_t)kbi) * BLOCK;
                const uint16_t *b = j->B + ((size_t)nb * (size_t)j->kb + (size_t)(p->kc0 + kbi)) * BLOCK;
                for (int kp = 0; kp < BK / 2; kp++) {
                    for (int c = 0; c < BN; c++) {
                        be[kp][c] = widen_bf16(b[kp * BN * 2 + 2 * c]);
                        bo[kp][c] = widen_bf16(b[kp * BN * 2 + 2 * c + 1]);
                    }
                }
                for (int r = 0; r < BM; r++) {
                    for (int kp = 0; kp < BK / 2; kp++) {
                        float a0 = widen_bf16(a[r * BK + 2 * kp]);
                        float a1 = widen_bf16(a[r * BK + 2 * kp + 1]);
                        for (int c = 0; c < BN; c++)
                            acc[r][c] += a0 * be[kp][c] + a1 * bo[kp][c];
                    }
                }
            }
            int rows = p->mrows - mi * BM < BM ? p->mrows - mi * BM : BM;
            combine(j, &acc[0][0], BN, p->m0 + mi * BM, rows, nb, p->first);
        }
    }
}

/* ---- x86: AVX512-BF16 and AMX ---- */

#ifdef BF16_X86
#define TARGET_AVX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define TARGET_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define ARCH_REQ_XCOMP_PERM 0x1023 /* arch_prctl: ask for an XSAVE feature */
#define XFEATURE_XTILEDATA 18      /* the AMX tile data state */

static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* AVX-512 F/BW with BF16, and the OS saving the ZMM and mask state. */
static int probe_avx512bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return 0;
    if ((xcr0() & 0xe6) != 0xe6) /* SSE, AVX, opmask, ZMM0-15 upper, ZMM16-31 */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16)) || !(b & (1u << 30)) || a < 1)
        return 0;
    __get_cpuid_count(7, 1, &a, &b, &c, &d);
    return (a >> 5) & 1;
}

/* AMX-TILE and AMX-BF16, the OS offering the tile state, and this process
 * granted it (Linux asks once; until then a tile instruction faults). */
static int probe_amx(void)
{
    unsigned a, b, c, d;
    if (!probe_avx512bf16()) /* A is converted with AVX512-BF16 */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22)))
        return 0;
    if ((xcr0() & (3ull << 17)) != (3ull << 17)) /* XTILECFG, XTILEDATA */
        return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* One unit of conversion: k-block kbi of row r (of the rows from m0), zero
 * past mrows and past K. */
TARGET_AVX static inline void convert_unit_avx(const job_t *j, uint16_t *abuf, int m0, int mrows,
                                               int kc0, int kcn, int r, int kbi)
{
    uint16_t *dst = abuf + abuf_index(r, kbi, kcn);
    if (r >= mrows) {
        _mm512_store_si512(dst, _mm512_setzero_si512());
        return;
    }
    const float *src = j->A + (size_t)(m0 + r) * (size_t)j->lda;
    int k = (kc0 + kbi) * BK, left = j->K - k;
    __m512 lo, hi;
    if (left >= BK) {
        lo = _mm512_loadu_ps(src + k);
        hi = _mm512_loadu_ps(src + k + 16);
    } else {
        __mmask16 mlo = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        __mmask16 mhi = left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
        lo = _mm512_maskz_loadu_ps(mlo, src + k);
        hi = _mm512_maskz_loadu_ps(mhi, src + k + 16);
    }
    _mm512_store_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

TARGET_AVX static void convert_avx(const job_t *j, uint16_t *abuf, int m0, int mrows, int kc0,
                                   int kcn)
{
    for (int r = 0; r < MR; r++)
        for (int kbi = 0; kbi < kcn; kbi++)
            convert_unit_avx(j, abuf, m0, mrows, kc0, kcn, r, kbi);
}

/* 8 rows x 32 columns per step: 16 accumulators, each k pair of a row
 * broadcast against a 16-column row of two packed blocks. */
TARGET_AVX static void block_avx(const job_t *j, const part_t *p)
{
    _Alignas(64) float acc[8 * 2 * BN];
    size_t col_stride = (size_t)j->kb * BLOCK;
    for (int nb = p->nb0; nb < p->nb0 + p->nbn; nb += 2) {
        int two = nb + 1 < p->nb0 + p->nbn;
        const uint16_t *b0 = j->B + (size_t)nb * col_stride + (size_t)p->kc0 * BLOCK;
        const uint16_t *b1 = two ? b0 + col_stride : b0;
        for (int rg = 0; rg * 8 < p->mrows; rg++) {
            const uint16_t *ag = p->a + (size_t)(rg / 2) * (size_t)p->kcn * BLOCK + (size_t)(rg % 2) * 8 * BK;
            __m512 c[8][2];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                c[r][0] = c[r][1] = _mm512_setzero_ps();
            for (int kbi = 0; kbi < p->kcn; kbi++) {
                const uint16_t *a = ag + (size_t)kbi * BLOCK;
                const uint16_t *w0 = b0 + (size_t)kbi * BLOCK, *w1 = b1 + (size_t)kbi * BLOCK;
                for (int kp = 0; kp < BK / 2; kp++) {
                    __m512bh v0 = (__m512bh)_mm512_load_si512(w0 + kp * 2 * BN);
                    __m512bh v1 = (__m512bh)_mm512_load_si512(w1 + kp * 2 * BN);
#pragma GCC unroll 8
                    for (int r = 0; r < 8; r++) {
                        int32_t pair;
                        memcpy(&pair, a + r * BK + 2 * kp, sizeof(pair));
                        __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
                        c[r][0] = _mm512_dpbf16_ps(c[r][0], av, v0);
                        c[r][1] = _mm512_dpbf16_ps(c[r][1], av, v1);
                    }
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                _mm512_store_ps(acc + r * 2 * BN, c[r][0]);
                _mm512_store_ps(acc + r * 2 * BN + BN, c[r][1]);
            }
            int rows = p->mrows - rg * 8 < 8 ? p->mrows - rg * 8 : 8;
            combine(j, acc, 2 * BN, p->m0 + rg * 8, rows, nb, p->first);
            if (two)
                combine(j, acc + BN, 2 * BN, p->m0 + rg * 8, rows, nb + 1, p->first);
        }
    }
}

/* Tile configuration, palette 1: tiles 0-3 the 2x2 C blocks (16 x 16
 * fp32), 4-5 the two A blocks (16 x 32 bf16), 6-7 the two B blocks (16 k
 * pairs x 16 x 2 bf16); every tile 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette;      /* 1 */
    uint8_t start_row;    /* 0: restart from the top */
    uint8_t reserved[14]; /* zero */
    uint16_t colsb[16];   /* bytes per row, tiles 0-7 */
    uint8_t rows[16];     /* rows, tiles 0-7 */
} tilecfg_t;

TARGET_AMX static void amx_begin(void)
{
    _Alignas(64) tilecfg_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    /* GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes, which
     * lets it drop the stores above; this operand is the whole struct. */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

/* Back to the init state so that context switches do not save 8 KiB of tiles. */
TARGET_AMX static void amx_end(void) { _tile_release(); }

/* Where the accumulator tiles of one 32 x 32 block of C start and end. */
typedef enum {
    AMX_ZERO_COMBINE, /* from zero; combine() scales and writes (any alpha, beta) */
    AMX_ZERO_STORE,   /* from zero, stored as C (alpha 1, beta 0, first chunk) */
    AMX_C_STORE,      /* from C, stored as C (alpha 1, beta 1 or a later chunk) */
} amx_mode_t;

/* Loads (C_STORE) and stores (both *_STORE) the four accumulator tiles of
 * the block at rows m0.., column blocks nb, nb + 1: straight from C when the
 * block lies inside M and [n0, n1), else through `edge`, a padded copy. */
TARGET_AMX static void amx_c_tiles(const job_t *j, int load, float *edge, int m0, int mrows, int nb)
{
    int c0 = nb * BN, ldb = 2 * BN * 4;
    if (mrows == 2 * BM && c0 >= j->n0 && c0 + 2 * BN <= j->n1) {
        float *c = j->C + (size_t)m0 * (size_t)j->ldc + c0;
        size_t ld = (size_t)j->ldc * 4, down = (size_t)BM * (size_t)j->ldc;
        if (load) {
            _tile_loadd(0, c, ld);
            _tile_loadd(1, c + BN, ld);
            _tile_loadd(2, c + down, ld);
            _tile_loadd(3, c + down + BN, ld);
        } else {
            _tile_stored(0, c, ld);
            _tile_stored(1, c + BN, ld);
            _tile_stored(2, c + down, ld);
            _tile_stored(3, c + down + BN, ld);
        }
        return;
    }
    int lo = j->n0 > c0 ? j->n0 : c0, hi = j->n1 < c0 + 2 * BN ? j->n1 : c0 + 2 * BN;
    if (load) {
        memset(edge, 0, sizeof(float) * 2 * BM * 2 * BN);
        for (int r = 0; r < mrows; r++)
            memcpy(edge + r * 2 * BN + (lo - c0), j->C + (size_t)(m0 + r) * (size_t)j->ldc + lo,
                   sizeof(float) * (size_t)(hi - lo));
        _tile_loadd(0, edge, ldb);
        _tile_loadd(1, edge + BN, ldb);
        _tile_loadd(2, edge + BM * 2 * BN, ldb);
        _tile_loadd(3, edge + BM * 2 * BN + BN, ldb);
        return;
    }
    _tile_stored(0, edge, ldb);
    _tile_stored(1, edge + BN, ldb);
    _tile_stored(2, edge + BM * 2 * BN, ldb);
    _tile_stored(3, edge + BM * 2 * BN + BN, ldb);
    for (int r = 0; r < mrows; r++)
        memcpy(j->C + (size_t)(m0 + r) * (size_t)j->ldc + lo, edge + r * 2 * BN + (lo - c0),
               sizeof(float) * (size_t)(hi - lo));
}

/* 32 rows x 32 columns per step in four accumulator tiles; a missing second
 * row or column block repeats the first and is not written back. The mode
 * depends on alpha, beta and the chunk only, never on the block, so a column
 * gets the same arithmetic whatever range or rows a call covers. */
TARGET_AMX static void block_amx(const job_t *j, const part_t *p)
{
    _Alignas(64) float acc[2 * BM * 2 * BN];
    size_t col_stride = (size_t)j->kb * BLOCK;
    const uint16_t *a0 = p->a;
    const uint16_t *a1 = p->mrows > BM ? p->a + (size_t)p->kcn * BLOCK : p->a;
    int rows0 = p->mrows < BM ? p->mrows : BM, rows1 = p->mrows - rows0;
    /* The next 32 rows of A are converted between the tile instructions,
     * `step` units (one row's k-block each) after every k-block, spread over
     * the panel's column pairs, so that the core does it while the tile unit
     * computes. */
    int units = p->next_rows > 0 ? MR * p->kcn : 0, pairs = (p->nbn + 1) / 2;
    int step = (units + pairs * p->kcn - 1) / (pairs * p->kcn), ur = 0, uk = 0;
    amx_mode_t mode = AMX_ZERO_COMBINE;
    if (j->alpha == 1.0f && p->first && j->beta == 0.0f)
        mode = AMX_ZERO_STORE;
    else if (j->alpha == 1.0f && (!p->first || j->beta == 1.0f))
        mode = AMX_C_STORE;
    for (int nb = p->nb0; nb < p->nb0 + p->nbn; nb += 2) {
        int two = nb + 1 < p->nb0 + p->nbn;
        const uint16_t *b0 = j->B + (size_t)nb * col_stride + (size_t)p->kc0 * BLOCK;
        const uint16_t *b1 = two ? b0 + col_stride : b0;
        if (mode == AMX_C_STORE) {
            amx_c_tiles(j, 1, acc, p->m0, p->mrows, nb);
        } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        }
        for (int kbi = 0; kbi < p->kcn; kbi++) {
            size_t off = (size_t)kbi * BLOCK;
            _tile_loadd(4, a0 + off, 64);
            _tile_loadd(5, a1 + off, 64);
            _tile_loadd(6, b0 + off, 64);
            _tile_loadd(7, b1 + off, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
            for (int u = 0; u < step && ur < MR && units; u++) {
                convert_unit_avx(j, p->next, p->m0 + p->mrows, p->next_rows, p->kc0, p->kcn, ur, uk);
                if (++uk == p->kcn) {
                    uk = 0;
                    ur++;
                }
            }
        }
        if (mode != AMX_ZERO_COMBINE) {
            amx_c_tiles(j, 0, acc, p->m0, p->mrows, nb);
            continue;
        }
        _tile_stored(0, acc, 2 * BN * 4);
        _tile_stored(1, acc + BN, 2 * BN * 4);
        _tile_stored(2, acc + BM * 2 * BN, 2 * BN * 4);
        _tile_stored(3, acc + BM * 2 * BN + BN, 2 * BN * 4);
        combine(j, acc, 2 * BN, p->m0, rows0, nb, p->first);
        if (two)
            combine(j, acc + BN, 2 * BN, p->m0, rows0, nb + 1, p->first);
        if (rows1 > 0) {
            combine(j, acc + BM * 2 * BN, 2 * BN, p->m0 + BM, rows1, nb, p->first);
            if (two)
                combine(j, acc + BM * 2 * BN + BN, 2 * BN, p->m0 + BM, rows1, nb + 1, p->first);
        }
    }
}
#endif

/* ---- kernel table and selection ---- */

typedef struct {
    const char *name;     /* FT_BF16_KERNEL value */
    int (*probe)(void);   /* 1 when this CPU and kernel can run it */
    void (*begin)(void);  /* per-call set-up on the calling thread, or NULL */
    void (*end)(void);    /* per-call tear-down, or NULL */
    convert_fn *convert;  /* A rows -> bf16 blocks */
    block_fn *block;      /* one part */
    int converts_next;    /* block() also converts the next rows into part.next */
} kernel_t;

static int probe_generic(void) { return 1; }

/* In order of preference, the last usable one wins. */
static const kernel_t kernels[] = {
    {"generic", probe_generic, NULL, NULL, convert_generic, block_generic, 0},
#ifdef BF16_X86
    {"avx512bf16", probe_avx512bf16, NULL, NULL, convert_avx, block_avx, 0},
    {"amx", probe_amx, amx_begin, amx_end, convert_avx, block_amx, 1},
#endif
};
#define N_KERNELS ((int)(sizeof(kernels) / sizeof(kernels[0])))

static pthread_once_t select_once = PTHREAD_ONCE_INIT;
static atomic_int active;          /* index into kernels */
static int usable[N_KERNELS];      /* probe results, set once */

static void select_kernel(void)
{
    int best = 0;
    for (int i = 0; i < N_KERNELS; i++) {
        usable[i] = kernels[i].probe();
        if (usable[i])
            best = i;
    }
    const char *want = getenv("FT_BF16_KERNEL");
    if (want && *want) {
        int i = 0;
        while (i < N_KERNELS && strcmp(kernels[i].name, want) != 0)
            i++;
        if (i == N_KERNELS)
            fprintf(stderr, "bf16gemm: unknown FT_BF16_KERNEL '%s' (amx, avx512bf16 or generic); "
                            "using '%s'\n", want, kernels[best].name);
        else if (!usable[i])
            fprintf(stderr, "bf16gemm: FT_BF16_KERNEL '%s' is not supported on this CPU; using '%s'\n",
                    want, kernels[best].name);
        else
            best = i;
    }
    atomic_store(&active, best);
}

const char *bf16_gemm_kernel(void)
{
    pthread_once(&select_once, select_kernel);
    return kernels[atomic_load(&active)].name;
}

int bf16_gemm_use_kernel(const char *name)
{
    pthread_once(&select_once, select_kernel);
    for (int i = 0; i < N_KERNELS; i++) {
        if (name && strcmp(kernels[i].name, name) == 0 && usable[i]) {
            atomic_store(&active, i);
            return 0;
        }
    }
    return -1;
}

/* ---- driver ---- */

/* Per-thread A buffers: two A blocks for each k-block of a chunk, twice (the
 * rows in use and the next ones, for a kernel that converts ahead). */
static _Thread_local _Alignas(64) uint16_t abuf_tls[2][2 * KC_BLOCKS * BLOCK];

static void gemm_run(const job_t *j)
{
    if (j->M <= 0 || j->n1 <= j->n0)
        return;
    pthread_once(&select_once, select_kernel);
    const kernel_t *kern = &kernels[atomic_load(&active)];
    int nb_lo = j->n0 / BN, nb_hi = (j->n1 + BN - 1) / BN;
    if (kern->begin)
        kern->begin();
    for (int kc0 = 0; kc0 < j->kb; kc0 += KC_BLOCKS) {
        int kcn = j->kb - kc0 < KC_BLOCKS ? j->kb - kc0 : KC_BLOCKS;
        int nc = PANEL_BYTES / (kcn * BLOCK * (int)sizeof(uint16_t)) / 2 * 2;
        for (int pb = nb_lo; pb < nb_hi; pb += nc) {
            int pbn = nb_hi - pb < nc ? nb_hi - pb : nc;
            int cur = 0, ready = 0;
            for (int m0 = 0; m0 < j->M; m0 += MR) {
                int mrows = j->M - m0 < MR ? j->M - m0 : MR;
                int next = j->M - m0 - mrows < MR ? j->M - m0 - mrows : MR;
                if (!ready)
                    kern->convert(j, abuf_tls[cur], m0, mrows, kc0, kcn);
                part_t p = {abuf_tls[cur], m0, mrows, kc0, kcn, pb, pbn, kc0 == 0,
                            abuf_tls[cur ^ 1], next};
                kern->block(j, &p);
                ready = kern->converts_next && next > 0;
                cur ^= 1;
            }
        }
    }
    if (kern->end)
        kern->end();
}

void bf16_gemm_nt(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1)
{
    assert(W && M >= 0 && lda >= W->cols && ldc >= W->rows && 0 <= n0 && n0 <= n1 && n1 <= W->rows);
    job_t j = {M, W->cols, A, lda, W->wt, W->kb_nt, alpha, beta, C, ldc, n0, n1};
    gemm_run(&j);
}

void bf16_gemm_nn(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1)
{
    assert(W && M >= 0 && lda >= W->rows && ldc >= W->cols && 0 <= n0 && n0 <= n1 && n1 <= W->cols);
    job_t j = {M, W->rows, A, lda, W->w, W->kb_nn, alpha, beta, C, ldc, n0, n1};
    gemm_run(&j);
}
