/*
 * flash_attn.cuh: the fused causal attention kernels of the CUDA backend
 * (FlashAttention-2 order), included by cuda_backend.cu, which owns the
 * launches, the plan and the buffers.
 *
 * Layouts (as the model stores them): q, y (B, T, nh*HD) and k, v
 * (B, T, nkv*HD) bf16, row-major; query head h reads kv head
 * h / (nh / nkv). lse (B, nh, T) fp32 is the natural log-sum-exp of the
 * scaled scores of each query row; D (B, nh, T) fp32 = rowsum(dY * Y); dy,
 * dq (B, T, nh*HD) and dk, dv (B, T, nkv*HD) fp32.
 *
 * Work split: a block is 4 warps. Forward: one block per (head, batch row,
 * 64-query tile), warp w owns query rows [16w, 16w + 16) and keeps its
 * Q fragments, the running max, sum and its 16 x HD output in registers;
 * the 64-key K and V tiles go through shared memory. Backward: one block
 * per (kv head, batch row, 64-key tile), warp w owns keys [16w, 16w + 16)
 * and keeps their dK and dV in registers over all the query tiles and all
 * the query heads of the group; each query tile's dQ contribution (dS K) is
 * added to dq with atomics. Both grids start with the tiles that have the
 * most work (the causal triangle makes them uneven).
 *
 * Arithmetic: bf16 tensor-core products (mma.sync m16n8k16, fp32
 * accumulation); softmax in fp32 with exp2; P, dY and dS rounded to bf16 as
 * the products' inputs. Shared-memory rows are padded by 16 bytes so that
 * ldmatrix's eight row addresses fall in distinct banks.
 *
 * Costs: forward 4 T^2 HD / 2 multiply-adds per (b, h) (causal half),
 * backward 2.5 times that; global traffic one read of Q, K, V (K, V once
 * per query tile), one write of Y; backward one read of Q, dY per key tile
 * and HD fp32 atomics per (query, key tile).
 */
#ifndef FT_FLASH_ATTN_CUH
#define FT_FLASH_ATTN_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#define FA_TILE 64    /* queries or keys per tile */
#define FA_THREADS 128 /* 4 warps of 16 rows each */
#define FA_PAD 8      /* bf16 elements of padding after each shared row */

/* query rows per warp in the forward kernel: 32 (two m16 tiles, so every
 * K and V fragment read from shared memory feeds two products) where the
 * registers allow, 16 for head size 128 */
template <int HD> struct fa_fwd_mt {
    static constexpr int mt = HD <= 64 ? 2 : 1;
    static constexpr int rows = 4 * 16 * mt; /* query rows per block */
};

/* shared memory, in bytes, of each kernel for a head size; the tiles that
 * change inside the loop are double-buffered */
template <int HD> struct fa_smem {
    static constexpr int ld = HD + FA_PAD;
    static constexpr int lds = FA_TILE + FA_PAD;
    static constexpr size_t tile = (size_t)FA_TILE * ld * 2; /* one 64 x HD bf16 tile */
    static constexpr size_t fwd = (fa_fwd_mt<HD>::rows / FA_TILE + 4) * tile; /* Q, 2 x (K, V) */
    static constexpr size_t bwd = 6 * tile + (size_t)FA_TILE * lds * 2 +
                                  (size_t)4 * FA_TILE * 4; /* K, V, 2 x (Q, dY), dS^T, 2 x (lse, D) */
};

__device__ __forceinline__ uint32_t fa_saddr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* four 8 x 8 bf16 matrices; lanes 8i..8i+7 give the row addresses of
 * matrix i; register i gets row lane/4, columns 2 (lane%4) and +1 */
__device__ __forceinline__ void fa_ldsm(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_saddr(p)));
}

/* the same, transposed: register i gets column lane/4, rows 2 (lane%4), +1 */
__device__ __forceinline__ void fa_ldsm_t(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_saddr(p)));
}

/* c (16 x 8 fp32) += a (16 x 16 bf16, row) b (16 x 8 bf16, col) */
__device__ __forceinline__ void fa_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* two floats as a bf16 pair, lo in the low half (the lower column) */
__device__ __forceinline__ uint32_t fa_pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Fragment addressing within a warp (lane = 32 threads, g = lane / 4, t =
 * lane % 4): an m16n8 accumulator c holds rows g (c0, c1) and g + 8 (c2,
 * c3), columns 2t and 2t + 1. The A operand of rows [r0, r0 + 16) and
 * columns [k0, k0 + 16) of a row-major shared matrix, and the B operands
 * of two n-tiles of 8: */

/* A from a row-major (rows, ld) matrix */
__device__ __forceinline__ const bf16 *fa_a_addr(const bf16 *s, int ld, int r0, int k0)
{
    int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    return s + (size_t)(r0 + (m & 1) * 8 + r) * ld + k0 + (m >> 1) * 8;
}

/* B = M^T where M is row-major (n, k), n-tiles n0 and n0 + 8: registers
 * 0, 1 are b0, b1 of the first, 2, 3 of the second (use fa_ldsm) */
__device__ __forceinline__ const bf16 *fa_bt_addr(const bf16 *s, int ld, int n0, int k0)
{
    int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    return s + (size_t)(n0 + (m >> 1) * 8 + r) * ld + k0 + (m & 1) * 8;
}

/* B = M where M is row-major (k, n), n-tiles n0 and n0 + 8 (use fa_ldsm_t):
 * the same eight-row groups as an A operand of rows [k0, k0 + 16) */
__device__ __forceinline__ const bf16 *fa_b_addr(const bf16 *s, int ld, int k0, int n0)
{
    return fa_a_addr(s, ld, k0, n0);
}

/* A = M^T where M is row-major (k, m): rows [m0, m0 + 16), k [k0, k0 + 16)
 * (use fa_ldsm_t): the same groups as a B^T operand of n-tiles k0, k0 + 8 */
__device__ __forceinline__ const bf16 *fa_at_addr(const bf16 *s, int ld, int m0, int k0)
{
    return fa_bt_addr(s, ld, k0, m0);
}

/* 16 bytes global -> shared without passing through registers; with ok
 * false nothing is read and the 16 bytes are zeroed */
__device__ __forceinline__ void fa_cp16(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(fa_saddr(dst)), "l"(src),
                 "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void fa_cp_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}
/* waits until at most N of this thread's committed groups are in flight */
template <int N> __device__ __forceinline__ void fa_cp_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* starts copying rows [r0, r0 + 64) x HD of a (rows, ld) bf16 matrix into
 * shared rows of ld_s, rows at or past T as zeros; 16-byte pieces (ld and
 * the column offset of src are multiples of 8 elements) */
template <int HD>
__device__ __forceinline__ void fa_load(bf16 *dst, int ld_s, const bf16 *src, int ld, int r0, int T)
{
    constexpr int VPR = HD / 8; /* pieces per row */
    for (int e = threadIdx.x; e < FA_TILE * VPR; e += FA_THREADS) {
        int r = e / VPR, c = (e % VPR) * 8, t = r0 + r;
        fa_cp16(dst + (size_t)r * ld_s + c, src + (size_t)(t < T ? t : 0) * ld + c, t < T);
    }
}

/* starts copying 64 floats from v + r0 (entries at or past T as zeros;
 * v + r0 is 16-byte aligned where T is a multiple of 4, else it is copied
 * through registers) */
__device__ __forceinline__ void fa_load_row(float *dst, const float *v, int r0, int T)
{
    if ((T & 3) == 0) {
        if (threadIdx.x < FA_TILE / 4) {
            int t = r0 + 4 * threadIdx.x;
            fa_cp16(dst + 4 * threadIdx.x, v + (t < T ? t : 0), t < T);
        }
    } else if (threadIdx.x < FA_TILE) {
        int t = r0 + threadIdx.x;
        dst[threadIdx.x] = t < T ? v[t] : 0.0f;
    }
}

#define FA_LOG2E 1.4426950408889634f

/* acc (16 x 64, fp32) = A B^T: A the rows [r0, r0 + 16) x HD of shared
 * matrix sA, B the 64 x HD shared tile sB (both row-major, row length LD) */
template <int HD>
__device__ __forceinline__ void fa_rows_bt(float acc[8][4], const bf16 *sA, int r0, const bf16 *sB)
{
    constexpr int LD = HD + FA_PAD;
#pragma unroll
    for (int j = 0; j < 8; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a[4];
        fa_ldsm(a, fa_a_addr(sA, LD, r0, 16 * kk));
#pragma unroll
        for (int j = 0; j < 8; j += 2) {
            uint32_t b[4];
            fa_ldsm(b, fa_bt_addr(sB, LD, 8 * j, 16 * kk));
            fa_mma(acc[j], a, b[0], b[1]);
            fa_mma(acc[j + 1], a, b[2], b[3]);
        }
    }
}

/* acc (16 x HD, fp32) += A B: A (16 x 64) given as the A operands of its 4
 * k-steps, B the 64 x HD shared tile sB (row-major, row length LD) */
template <int HD>
__device__ __forceinline__ void fa_frags_b(float acc[HD / 8][4], const uint32_t a[4][4],
                                           const bf16 *sB)
{
    constexpr int LD = HD + FA_PAD;
#pragma unroll
    for (int ks = 0; ks < 4; ks++)
#pragma unroll
        for (int n = 0; n < HD / 8; n += 2) {
            uint32_t b[4];
            fa_ldsm_t(b, fa_b_addr(sB, LD, 16 * ks, 8 * n));
            fa_mma(acc[n], a[ks], b[0], b[1]);
            fa_mma(acc[n + 1], a[ks], b[2], b[3]);
        }
}

/* the A operands of the 4 k-steps of a 16 x 64 fp32 accumulator, in bf16
 * (an m16n8 accumulator's layout is that of half an m16k16 operand) */
__device__ __forceinline__ void fa_acc_to_a(uint32_t a[4][4], const float acc[8][4])
{
#pragma unroll
    for (int j = 0; j < 8; j++) {
        a[j / 2][(j & 1) * 2] = fa_pack(acc[j][0], acc[j][1]);
        a[j / 2][(j & 1) * 2 + 1] = fa_pack(acc[j][2], acc[j][3]);
    }
}

/* grid (nh, B, query tiles of fa_fwd_mt<HD>::rows): the last tiles, with
 * the most keys, first */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_fa_fwd(bf16 *y, float *lse, bf16 *ysave, const bf16 *q, const bf16 *k, const bf16 *v, int T,
             int nh, int nkv, float scale)
{
    constexpr int LD = fa_smem<HD>::ld, NT8 = HD / 8, MT = fa_fwd_mt<HD>::mt;
    constexpr int BR = fa_fwd_mt<HD>::rows;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    /* Q (BR rows), then per buffer K, V (64 rows each) (pointer arithmetic,
     * not an array indexed at run time: that would live in local memory) */
    bf16 *sQ = reinterpret_cast<bf16 *>(fa_sm), *sKV = sQ + BR * LD;
#define FA_FWD_K(i) (sKV + 2 * (i) * FA_TILE * LD)
#define FA_FWD_V(i) (sKV + (2 * (i) + 1) * FA_TILE * LD)
    const int n_qt = (T + BR - 1) / BR, qt = n_qt - 1 - (int)blockIdx.z;
    const int h = blockIdx.x, b = blockIdx.y, g = h / (nh / nkv);
    const int ldq = nh * HD, ldk = nkv * HD, q0 = qt * BR;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, gr = lane >> 2, tg = lane & 3;
    const bf16 *qb = q + (size_t)b * T * ldq + (size_t)h * HD;
    const bf16 *kb = k + (size_t)b * T * ldk + (size_t)g * HD;
    const bf16 *vb = v + (size_t)b * T * ldk + (size_t)g * HD;
    const float sl2 = scale * FA_LOG2E;
    const int wr0 = q0 + 16 * MT * w; /* this warp's first query row */
    /* the last key tile any row of the block sees */
    const int kt_last = min(q0 + BR - 1, T - 1) / FA_TILE;

#pragma unroll
    for (int part = 0; part < BR / FA_TILE; part++)
        fa_load<HD>(sQ + part * FA_TILE * LD, LD, qb, ldq, q0 + part * FA_TILE, T);
    fa_load<HD>(FA_FWD_K(0), LD, kb, ldk, 0, T);
    fa_load<HD>(FA_FWD_V(0), LD, vb, ldk, 0, T);
    fa_cp_commit();
    uint32_t qf[MT][HD / 16][4];

    float o[MT][NT8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < NT8; n++)
            o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    /* per m-tile, rows gr and gr + 8: raw running max, partial sum */
    float m_r[MT][2], l_r[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        m_r[mt][0] = m_r[mt][1] = -INFINITY, l_r[mt][0] = l_r[mt][1] = 0.0f;

    for (int kt = 0; kt <= kt_last; kt++) { /* causal: up to the last row's key tile */
        const int k0 = kt * FA_TILE, buf = kt & 1;
        const bf16 *cK = FA_FWD_K(buf), *cV = FA_FWD_V(buf);
        if (kt < kt_last) { /* the next K, V into the other buffers, behind this tile's work */
            fa_load<HD>(FA_FWD_K(buf ^ 1), LD, kb, ldk, k0 + FA_TILE, T);
            fa_load<HD>(FA_FWD_V(buf ^ 1), LD, vb, ldk, k0 + FA_TILE, T);
            fa_cp_commit();
            fa_cp_wait<1>();
        } else {
            fa_cp_wait<0>();
        }
        __syncthreads(); /* this tile's K, V (and at first Q) are in shared memory */
        if (kt == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++)
                    fa_ldsm(qf[mt][kk], fa_a_addr(sQ, LD, 16 * MT * w + 16 * mt, 16 * kk));
        }
        /* a warp whose rows all precede this key tile has nothing to add */
        if (k0 <= wr0 + 16 * MT - 1) {
            float s[MT][8][4]; /* per m-tile 16 queries x 64 keys of raw scores */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
                for (int j = 0; j < 8; j += 2) {
                    uint32_t bk[4];
                    fa_ldsm(bk, fa_bt_addr(cK, LD, 8 * j, 16 * kk));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        fa_mma(s[mt][j], qf[mt][kk], bk[0], bk[1]);
                        fa_mma(s[mt][j + 1], qf[mt][kk], bk[2], bk[3]);
                    }
                }
            uint32_t pf[MT][4][4]; /* P as the A operand of 4 k-steps of 16 keys */
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int row0 = wr0 + 16 * mt + gr, row1 = row0 + 8;
                if (k0 + FA_TILE - 1 > wr0 + 16 * mt || k0 + FA_TILE > T) {
                    /* the tile crosses the diagonal of these rows, or is partial */
#pragma unroll
                    for (int j = 0; j < 8; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int key = k0 + 8 * j + 2 * tg + (e & 1), row = e < 2 ? row0 : row1;
                            if (key > row || key >= T)
                                s[mt][j][e] = -INFINITY;
                        }
                }
                float mx[2] = {m_r[mt][0], m_r[mt][1]};
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    mx[0] = fmaxf(mx[0], fmaxf(s[mt][j][0], s[mt][j][1]));
                    mx[1] = fmaxf(mx[1], fmaxf(s[mt][j][2], s[mt][j][3]));
                }
                float alpha[2], mu[2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
                    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
                    mu[i] = mx[i] == -INFINITY ? 0.0f : mx[i]; /* a row with nothing yet */
                    alpha[i] = m_r[mt][i] == -INFINITY ? 0.0f : exp2f((m_r[mt][i] - mu[i]) * sl2);
                    m_r[mt][i] = mx[i];
                }
                float ps[2] = {0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float p0 = exp2f((s[mt][j][0] - mu[0]) * sl2);
                    float p1 = exp2f((s[mt][j][1] - mu[0]) * sl2);
                    float p2 = exp2f((s[mt][j][2] - mu[1]) * sl2);
                    float p3 = exp2f((s[mt][j][3] - mu[1]) * sl2);
                    ps[0] += p0 + p1;
                    ps[1] += p2 + p3;
                    pf[mt][j / 2][(j & 1) * 2] = fa_pack(p0, p1);
                    pf[mt][j / 2][(j & 1) * 2 + 1] = fa_pack(p2, p3);
                }
                l_r[mt][0] = l_r[mt][0] * alpha[0] + ps[0];
                l_r[mt][1] = l_r[mt][1] * alpha[1] + ps[1];
#pragma unroll
                for (int n = 0; n < NT8; n++) {
                    o[mt][n][0] *= alpha[0];
                    o[mt][n][1] *= alpha[0];
                    o[mt][n][2] *= alpha[1];
                    o[mt][n][3] *= alpha[1];
                }
            }
#pragma unroll
            for (int ks = 0; ks < 4; ks++) /* O += P V */
#pragma unroll
                for (int n = 0; n < NT8; n += 2) {
                    uint32_t bv[4];
                    fa_ldsm_t(bv, fa_b_addr(cV, LD, 16 * ks, 8 * n));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        fa_mma(o[mt][n], pf[mt][ks], bv[0], bv[1]);
                        fa_mma(o[mt][n + 1], pf[mt][ks], bv[2], bv[3]);
                    }
                }
        }
        __syncthreads(); /* every warp is done with these K, V before they are refilled */
    }
#undef FA_FWD_K
#undef FA_FWD_V
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int row0 = wr0 + 16 * mt + gr, row1 = row0 + 8;
        float l0 = l_r[mt][0], l1 = l_r[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
        for (int n = 0; n < NT8; n++) {
            int c = h * HD + 8 * n + 2 * tg;
            if (row0 < T) {
                size_t off = ((size_t)b * T + row0) * ldq + c;
                uint32_t val = fa_pack(o[mt][n][0] * inv0, o[mt][n][1] * inv0);
                *reinterpret_cast<uint32_t *>(y + off) = val;
                *reinterpret_cast<uint32_t *>(ysave + off) = val;
            }
            if (row1 < T) {
                size_t off = ((size_t)b * T + row1) * ldq + c;
                uint32_t val = fa_pack(o[mt][n][2] * inv1, o[mt][n][3] * inv1);
                *reinterpret_cast<uint32_t *>(y + off) = val;
                *reinterpret_cast<uint32_t *>(ysave + off) = val;
            }
        }
        if (tg == 0) {
            float *lb = lse + ((size_t)b * nh + h) * T;
            if (row0 < T)
                lb[row0] = m_r[mt][0] * scale + logf(l0);
            if (row1 < T)
                lb[row1] = m_r[mt][1] * scale + logf(l1);
        }
    }
}

/* adds a pair of fp32 values to global memory (one vector atomic on sm_90) */
__device__ __forceinline__ void fa_atomic_add2(float *p, float a, float b)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(p), make_float2(a, b));
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
#endif
}

/* grid (nkv, B, key tiles): the first tiles, with the most queries, first;
 * dyb is dY rounded to bf16 (k_flash_dot writes it); dq must be zero on
 * entry, dk and dv are written. The (query head, query tile) rounds of a
 * block are one flat loop so that the next round's Q, dY, lse and D load
 * while this one computes. */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_fa_bwd(float *dq, float *dk, float *dv, const bf16 *dyb, const float *lse, const float *D,
             const bf16 *q, const bf16 *k, const bf16 *v, int T, int nh, int nkv, float scale)
{
    constexpr int LD = fa_smem<HD>::ld, LDS = fa_smem<HD>::lds, NT8 = HD / 8;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    bf16 *sK = reinterpret_cast<bf16 *>(fa_sm), *sV = sK + FA_TILE * LD;
    /* per buffer i (pointer arithmetic, as in the forward kernel): Q at
     * sQ0 + 2i tiles, dY after it; lse and D at sLD + 128i floats */
    bf16 *sQ0 = sV + FA_TILE * LD, *sdS = sV + 5 * FA_TILE * LD;
    float *sLD = reinterpret_cast<float *>(sdS + FA_TILE * LDS);
#define FA_BWD_Q(i) (sQ0 + 2 * (i) * FA_TILE * LD)
#define FA_BWD_DY(i) (sQ0 + (2 * (i) + 1) * FA_TILE * LD)
#define FA_BWD_LSE(i) (sLD + 2 * FA_TILE * (i))
#define FA_BWD_D(i) (sLD + 2 * FA_TILE * (i) + FA_TILE)
    const int n_t = (T + FA_TILE - 1) / FA_TILE, kt = (int)blockIdx.z;
    const int g = blockIdx.x, b = blockIdx.y, group = nh / nkv;
    const int ldq = nh * HD, ldk = nkv * HD, k0 = kt * FA_TILE;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, gr = lane >> 2, tg = lane & 3;
    const int key0 = k0 + 16 * w + gr, key1 = key0 + 8; /* this thread's accumulator rows */
    const int per_head = n_t - kt, rounds = group * per_head;

    /* round it: query head g * group + it / per_head, query tile kt + it % per_head */
    auto load_round = [&](int it, int buf) {
        int h = g * group + it / per_head, q0 = (kt + it % per_head) * FA_TILE;
        fa_load<HD>(FA_BWD_Q(buf), LD, q + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
        fa_load<HD>(FA_BWD_DY(buf), LD, dyb + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
        fa_load_row(FA_BWD_LSE(buf), lse + ((size_t)b * nh + h) * T, q0, T);
        fa_load_row(FA_BWD_D(buf), D + ((size_t)b * nh + h) * T, q0, T);
        fa_cp_commit();
    };
    fa_load<HD>(sK, LD, k + (size_t)b * T * ldk + (size_t)g * HD, ldk, k0, T);
    fa_load<HD>(sV, LD, v + (size_t)b * T * ldk + (size_t)g * HD, ldk, k0, T);
    load_round(0, 0); /* one group with K and V */

    float dka[NT8][4], dva[NT8][4];
#pragma unroll
    for (int n = 0; n < NT8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dka[n][e] = dva[n][e] = 0.0f;

    for (int it = 0; it < rounds; it++) {
        const int buf = it & 1, h = g * group + it / per_head;
        const int qt = kt + it % per_head, q0 = qt * FA_TILE;
        const bf16 *cQ = FA_BWD_Q(buf), *cdY = FA_BWD_DY(buf);
        const float *cLse = FA_BWD_LSE(buf), *cD = FA_BWD_D(buf);
        if (it + 1 < rounds) {
            load_round(it + 1, buf ^ 1);
            fa_cp_wait<1>();
        } else {
            fa_cp_wait<0>();
        }
        __syncthreads(); /* this round's tiles are in; every warp is done with dS^T */

        /* S^T (16 keys x 64 queries) = K Q^T, then P^T */
        float st[8][4];
        fa_rows_bt<HD>(st, sK, 16 * w, cQ);
        const bool edge = qt == kt || q0 + FA_TILE > T || k0 + FA_TILE > T;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = 8 * j + 2 * tg + (e & 1), qi = q0 + col, key = e < 2 ? key0 : key1;
                float p = exp2f((st[j][e] * scale - cLse[col]) * FA_LOG2E);
                st[j][e] = edge && (key > qi || qi >= T || key >= T) ? 0.0f : p;
            }

        /* dV += P^T dY (A = P^T, k = queries) */
        uint32_t pa[4][4];
        fa_acc_to_a(pa, st);
        fa_frags_b<HD>(dva, pa, cdY);

        /* dP^T (16 keys x 64 queries) = V dY^T */
        float dpt[8][4];
        fa_rows_bt<HD>(dpt, sV, 16 * w, cdY);

        /* dS^T = P^T (dP^T - D) scale (into dpt): as A operand for dK, and
         * into shared memory for dQ */
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int col = 8 * j + 2 * tg;
            float d0 = cD[col], d1 = cD[col + 1];
            dpt[j][0] = st[j][0] * (dpt[j][0] - d0) * scale;
            dpt[j][1] = st[j][1] * (dpt[j][1] - d1) * scale;
            dpt[j][2] = st[j][2] * (dpt[j][2] - d0) * scale;
            dpt[j][3] = st[j][3] * (dpt[j][3] - d1) * scale;
        }
        uint32_t da[4][4];
        fa_acc_to_a(da, dpt);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int col = 8 * j + 2 * tg;
            *reinterpret_cast<uint32_t *>(sdS + (size_t)(16 * w + gr) * LDS + col) =
                da[j / 2][(j & 1) * 2];
            *reinterpret_cast<uint32_t *>(sdS + (size_t)(16 * w + gr + 8) * LDS + col) =
                da[j / 2][(j & 1) * 2 + 1];
        }
        /* dK += dS^T Q (k = queries) */
        fa_frags_b<HD>(dka, da, cQ);
        __syncthreads(); /* all of dS^T is in shared memory */

        /* dQ rows [16w, 16w + 16) of the tile = dS K (k = the 64 keys) */
        float dqa[NT8][4];
#pragma unroll
        for (int n = 0; n < NT8; n++)
            dqa[n][0] = dqa[n][1] = dqa[n][2] = dqa[n][3] = 0.0f;
        uint32_t sa[4][4];
#pragma unroll
        for (int ks = 0; ks < 4; ks++)
            fa_ldsm_t(sa[ks], fa_at_addr(sdS, LDS, 16 * w, 16 * ks));
        fa_frags_b<HD>(dqa, sa, sK);
        const int qr0 = q0 + 16 * w + gr, qr1 = qr0 + 8;
#pragma unroll
        for (int n = 0; n < NT8; n++) {
            int c = h * HD + 8 * n + 2 * tg;
            if (qr0 < T)
                fa_atomic_add2(dq + ((size_t)b * T + qr0) * ldq + c, dqa[n][0], dqa[n][1]);
            if (qr1 < T)
                fa_atomic_add2(dq + ((size_t)b * T + qr1) * ldq + c, dqa[n][2], dqa[n][3]);
        }
    }
#undef FA_BWD_Q
#undef FA_BWD_DY
#undef FA_BWD_LSE
#undef FA_BWD_D
#pragma unroll
    for (int n = 0; n < NT8; n++) {
        int c = g * HD + 8 * n + 2 * tg;
        if (key0 < T) {
            size_t off = ((size_t)b * T + key0) * ldk + c;
            *reinterpret_cast<float2 *>(dk + off) = make_float2(dka[n][0], dka[n][1]);
            *reinterpret_cast<float2 *>(dv + off) = make_float2(dva[n][0], dva[n][1]);
        }
        if (key1 < T) {
            size_t off = ((size_t)b * T + key1) * ldk + c;
            *reinterpret_cast<float2 *>(dk + off) = make_float2(dka[n][2], dka[n][3]);
            *reinterpret_cast<float2 *>(dv + off) = make_float2(dva[n][2], dva[n][3]);
        }
    }
}

#endif
