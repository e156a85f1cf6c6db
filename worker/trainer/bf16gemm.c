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
 * k-blocks, the output columns in panels of NC_BLOCKS column blocks (the
 * panel of packed W stays in L2), then 32 rows of A at a time, converted into
 * a per-thread buffer that stays in L1 while the kernel walks the panel. The
 * first K chunk writes alpha * acc (+ beta * C), later ones add alpha * acc.
 *
 * Invariants: the per-thread buffer holds 2 x KC_BLOCKS blocks, whatever the
 * shapes, so calls never allocate; padding rows and k of that buffer are
 * zero, so the kernels always run whole blocks and only the combine step
 * clips to M and [n0, n1).
 *
 * Cost: 2 * M * K * (n1 - n0) flop, plus A converted once per column panel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
#define KC_BLOCKS 16          /* k-blocks per K chunk (512 k) */
#define NC_BLOCKS 64          /* column blocks per panel (1024 columns) */

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
} part_t;

typedef void convert_fn(const job_t *j, uint16_t *abuf, int m0, int mrows, int kc0, int kcn);
typedef void block_fn(const job_t *j, const part_t *p);

uint16_t bf16_from_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof(x));
    return x;
}

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
            uint16_t h = bf16_from_f32(wr[c]);
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
        const float *arow = acc + (size_t)r * (size_t)ld - base;
        if (!first)
            for (int c = c0; c < c1; c++)
                crow[c] += alpha * arow[c];
        else if (beta == 0.0f)
            for (int c = c0; c < c1; c++)
                crow[c] = alpha * arow[c];
        else
            for (int c = c0; c < c1; c++)
                crow[c] = alpha * arow[c] + beta * crow[c];
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
                dst[t] = src && k < j->K ? bf16_from_f32(src[k]) : 0;
            }
        }
    }
}

static void block_generic(const job_t *j, const part_t *p)
{
    float acc[BM][BN];
    for (int nb = p->nb0; nb < p->nb0 + p->nbn; nb++) {
        for (int mi = 0; mi * BM < p->mrows; mi++) {
            memset(acc, 0, sizeof(acc));
            for (int kbi = 0; kbi < p->kcn; kbi++) {
                const uint16_t *a = p->a + ((size_t)mi * (size_t)p->kcn + (size_t)kbi) * BLOCK;
                const uint16_t *b = j->B + ((size_t)nb * (size_t)j->kb + (size_t)(p->kc0 + kbi)) * BLOCK;
                for (int r = 0; r < BM; r++) {
                    for (int kp = 0; kp < BK / 2; kp++) {
                        float a0 = bf16_to_f32(a[r * BK + 2 * kp]);
                        float a1 = bf16_to_f32(a[r * BK + 2 * kp + 1]);
                        const uint16_t *brow = b + kp * BN * 2;
                        for (int c = 0; c < BN; c++)
                            acc[r][c] += a0 * bf16_to_f32(brow[2 * c]) + a1 * bf16_to_f32(brow[2 * c + 1]);
                    }
                }
            }
            int rows = p->mrows - mi * BM < BM ? p->mrows - mi * BM : BM;
            combine(j, &acc[0][0], BN, p->m0 + mi * BM, rows, nb, p->first);
        }
    }
}

/* ---- kernel table and selection ---- */

typedef struct {
    const char *name;     /* FT_BF16_KERNEL value */
    int (*probe)(void);   /* 1 when this CPU and kernel can run it */
    convert_fn *convert;  /* A rows -> bf16 blocks */
    block_fn *block;      /* one part */
} kernel_t;

static int probe_generic(void) { return 1; }

static const kernel_t kernels[] = {
    {"generic", probe_generic, convert_generic, block_generic},
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

/* Per-thread A buffer: two A blocks for each k-block of a chunk. */
static _Thread_local _Alignas(64) uint16_t abuf_tls[2 * KC_BLOCKS * BLOCK];

static void gemm_run(const job_t *j)
{
    if (j->M <= 0 || j->n1 <= j->n0)
        return;
    pthread_once(&select_once, select_kernel);
    const kernel_t *kern = &kernels[atomic_load(&active)];
    int nb_lo = j->n0 / BN, nb_hi = (j->n1 + BN - 1) / BN;
    for (int kc0 = 0; kc0 < j->kb; kc0 += KC_BLOCKS) {
        int kcn = j->kb - kc0 < KC_BLOCKS ? j->kb - kc0 : KC_BLOCKS;
        for (int pb = nb_lo; pb < nb_hi; pb += NC_BLOCKS) {
            int pbn = nb_hi - pb < NC_BLOCKS ? nb_hi - pb : NC_BLOCKS;
            for (int m0 = 0; m0 < j->M; m0 += MR) {
                int mrows = j->M - m0 < MR ? j->M - m0 : MR;
                kern->convert(j, abuf_tls, m0, mrows, kc0, kcn);
                part_t p = {abuf_tls, m0, mrows, kc0, kcn, pb, pbn, kc0 == 0};
                kern->block(j, &p);
            }
        }
    }
}

void bf16_gemm_nt(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1)
{
    job_t j = {M, W->cols, A, lda, W->wt, W->kb_nt, alpha, beta, C, ldc, n0, n1};
    gemm_run(&j);
}

void bf16_gemm_nn(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1)
{
    job_t j = {M, W->rows, A, lda, W->w, W->kb_nn, alpha, beta, C, ldc, n0, n1};
    gemm_run(&j);
}
