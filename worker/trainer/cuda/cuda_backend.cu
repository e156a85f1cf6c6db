/*
 * cuda_backend.cu: backend.h on one CUDA device: cuBLAS for every GEMM,
 * small kernels for the rest. Each kernel mirrors the CPU op of the same name
 * in cpu_backend.c (same formulas, same order of the scalar operations where
 * it matters), so the two can be compared number for number within the
 * tolerance of bf16 weights.
 *
 * Types (backend.h): activations marked [act] are bf16 here (act_bytes 2):
 * RMSNorm outputs, q, k, v, the attention output, gate, up, silu(g) * u, the
 * LoRA u products, dropout scratch. Kernels read them into fp32 registers,
 * compute in fp32 and round once on the store. The residual stream, rstd,
 * logits, all gradients, the LoRA parameters and the optimiser state are
 * fp32. gemm_typed runs bf16 x bf16 (fp32 accumulation) whenever an operand
 * is a base weight or the output is bf16, converting any fp32 input; other
 * mixed products convert the smaller operand to the other's type.
 *
 * Invariants: all work is queued on one non-blocking stream (g.stream) and
 * cuBLAS runs on it too, so program order is execution order; host copies
 * (upload, download, token staging) go through that stream. The first
 * failing CUDA or cuBLAS call is recorded with its file:line (sticky) and
 * later ops still queue, so a caller learns of it at the next sync().
 * Costs: GEMMs as in backend.h; attention runs fused (flash-style, the
 * default where head_dim is 64 or 128: only a per-row log-sum-exp and a
 * copy of Y are kept) or materialises the (B, nh, T, T) probabilities in
 * bf16 with one strided batched GEMM per head and pass; every other kernel
 * is one pass over its data (xent: three passes over a row of V logits).
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda_backend.h"
}
#include "../bf16.h"

/* ---- state, errors, memory ---- */

typedef struct {
    void *p;  /* device pointer */
    size_t n; /* bytes */
} dev_alloc_t;

static struct {
    bool ready;          /* backend_cuda succeeded */
    int device;          /* selected device index */
    cudaStream_t stream; /* the training stream */
    cublasHandle_t blas; /* bound to stream */
    bool tf32;           /* fp32 GEMMs may use TF32 tensor cores */
    bool materialised;   /* never the fused attention (FT_CUDA_ATTN=materialised) */
    char err[512];       /* first error, "" when none */
    size_t bytes_now;    /* device bytes held by dev_alloc */
    size_t bytes_peak;   /* high-water mark of bytes_now */
    dev_alloc_t *allocs; /* live allocations (tens of them) */
    size_t n_allocs, cap_allocs;
    void *blas_ws;       /* cuBLAS workspace (tracked here, not by cuBLAS) */
    void *cvt[2];        /* operands A, B of a GEMM converted to the other type */
    size_t cvt_n[2];     /* their bytes */
    __nv_bfloat16 *bf_l; /* xent dlogits in bf16, elements */
    size_t bf_l_n;
    __nv_bfloat16 *pc;    /* params_cache: the LoRA parameters in bf16 */
    size_t pc_n;          /* its capacity, elements */
    const float *pc_src;  /* the fp32 values it copies, NULL when none */
    size_t pc_len;        /* how many */
    float *att_scr; /* (B, T, T) fp32 S or dP of one head; flash: D (B, nh, T), bf16 dY */
    size_t att_scr_n;
    __nv_bfloat16 *att_ds; /* (B, T, T) bf16 dS of one head (materialised backward) */
    size_t att_ds_n;
    __nv_bfloat16 *att_dy; /* (B*T, nh*hd) dY narrowed to bf16 (materialised backward) */
    size_t att_dy_n;
    int32_t *tok; /* (N) staged embedding tokens */
    size_t tok_n;
    int32_t *tgt; /* (N) staged xent targets */
    size_t tgt_n;
    double *row_loss; /* (N) per-row -log p(target) */
    size_t row_loss_n;
    double *part; /* sumsq block partials + total */
    size_t part_n;
    double *host_rl; /* host copy of row_loss */
    size_t host_rl_n;
    float *logits; /* own (chunk, V) logits when larger chunks pay off */
    size_t logits_n;
} g;

#define CUBLAS_WS_BYTES ((size_t)32 << 20)
#define NT 256          /* threads per block of every kernel */
#define MAX_BLOCKS 4096 /* grid-stride kernels use at most this many blocks */

static void record_error(const char *fmt, ...)
{
    if (g.err[0])
        return; /* keep the first one: later errors are usually its echo */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.err, sizeof(g.err), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ft-train: cuda: %s\n", g.err);
}

static bool cu_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess)
        return true;
    record_error("%s:%d: '%s': %s", file, line, what, cudaGetErrorString(e));
    return false;
}

static bool blas_check(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    record_error("%s:%d: '%s': %s", file, line, what, cublasGetStatusString(s));
    return false;
}

#define CU_CHECK(call) cu_check((call), #call, __FILE__, __LINE__)
#define BLAS_CHECK(call) blas_check((call), #call, __FILE__, __LINE__)
#define LAUNCH_CHECK(name) cu_check(cudaGetLastError(), name, __FILE__, __LINE__)

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 16; /* a valid, distinct pointer for empty tensors */
    if (g.n_allocs == g.cap_allocs) {
        size_t cap = g.cap_allocs ? 2 * g.cap_allocs : 64;
        dev_alloc_t *a = (dev_alloc_t *)realloc(g.allocs, cap * sizeof(*a));
        if (!a)
            return NULL;
        g.allocs = a;
        g.cap_allocs = cap;
    }
    if (!CU_CHECK(cudaMalloc(&p, bytes)))
        return NULL;
    if (!CU_CHECK(cudaMemsetAsync(p, 0, bytes, g.stream))) {
        cudaFree(p);
        return NULL;
    }
    g.allocs[g.n_allocs].p = p;
    g.allocs[g.n_allocs].n = bytes;
    g.n_allocs++;
    g.bytes_now += bytes;
    if (g.bytes_now > g.bytes_peak)
        g.bytes_peak = g.bytes_now;
    return p;
}

static void dev_free(void *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < g.n_allocs; i++) {
        if (g.allocs[i].p == p) {
            g.bytes_now -= g.allocs[i].n;
            g.allocs[i] = g.allocs[--g.n_allocs];
            break;
        }
    }
    /* queued kernels may still read p (a scratch buffer being grown) */
    CU_CHECK(cudaStreamSynchronize(g.stream));
    CU_CHECK(cudaFree(p));
}

/* Ensures *p holds at least need elements of size elem; false on failure.
 * Shapes are fixed per run, so this allocates on the first step only. */
static bool grow(void **p, size_t *have, size_t need, size_t elem)
{
    if (*have >= need && *p)
        return true;
    dev_free(*p);
    *p = dev_alloc(need * elem);
    *have = *p ? need : 0;
    return *p != NULL;
}
#define GROW(ptr, have, need) grow((void **)&(ptr), &(have), (need), sizeof(*(ptr)))

static int grid_for(int64_t n)
{
    int64_t b = (n + NT - 1) / NT;
    return (int)(b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : b);
}

/* ---- block reductions (blockDim.x == NT, a multiple of 32) ---- */

template <typename F> __device__ F warp_sum(F v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename F> __device__ F warp_max(F v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block, returned to every thread. The leading
 * barrier lets the shared slots be reused by back-to-back calls. */
template <typename F, bool MAX> __device__ F block_reduce(F v)
{
    __shared__ F sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        F x = lane < nw ? sh[lane] : (MAX ? sh[0] : (F)0);
        x = MAX ? warp_max(x) : warp_sum(x);
        if (lane == 0)
            sh[0] = x;
    }
    __syncthreads();
    return sh[0];
}

/* ---- element-wise and row kernels ---- */

typedef __nv_bfloat16 bf16;

#include "flash_attn.cuh"

/* loads as fp32 and stores rounded to the tensor's type (nearest even) */
__device__ __forceinline__ float to_f32(float x)
{
    return x;
}
__device__ __forceinline__ float to_f32(bf16 x)
{
    return __bfloat162float(x);
}
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x)
{
    return x;
}
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x)
{
    return __float2bfloat16_rn(x);
}

__global__ void k_f32_to_bf16(bf16 *out, const float *in, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void k_bf16_to_f32(float *out, const bf16 *in, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __bfloat162float(in[i]);
}

/* out (N, C) = emb[tok[i]] (bf16 table) as fp32 (the residual stream) */
__global__ void k_embedding_fwd(float *out, const int32_t *tok, const bf16 *emb, int N, int C)
{
    int64_t n = (int64_t)N * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = i / C, c = i % C;
        out[i] = __bfloat162float(emb[(int64_t)tok[row] * C + c]);
    }
}

__global__ void k_embedding_bwd(float *demb, const int32_t *tok, const float *dout, int N, int C)
{
    int64_t n = (int64_t)N * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = i / C, c = i % C;
        atomicAdd(&demb[(int64_t)tok[row] * C + c], dout[i]);
    }
}

/* one block per row: out (bf16) = w * (x * r), r = 1 / sqrt(mean(x^2) + eps),
 * x the fp32 residual, rstd fp32 */
/* RMSNorm, one block per row. VEC: C is a multiple of 4 and every row
 * starts 16-byte aligned, so each thread moves 4 elements at a time. */
template <bool VEC>
__global__ void k_rmsnorm_fwd(bf16 *out, float *rstd, const float *x, const float *w, int C,
                              float eps)
{
    const float *xi = x + (int64_t)blockIdx.x * C;
    bf16 *oi = out + (int64_t)blockIdx.x * C;
    float ss = 0.0f;
    if (VEC)
        for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
            float4 v = *(const float4 *)(xi + c);
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    else
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            ss += xi[c] * xi[c];
    ss = block_reduce<float, false>(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    if (VEC)
        for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
            float4 v = *(const float4 *)(xi + c), ww = *(const float4 *)(w + c);
            __nv_bfloat162 lo = __floats2bfloat162_rn(ww.x * (v.x * r), ww.y * (v.y * r));
            __nv_bfloat162 hi = __floats2bfloat162_rn(ww.z * (v.z * r), ww.w * (v.w * r));
            uint2 pk;
            pk.x = *(uint32_t *)&lo;
            pk.y = *(uint32_t *)&hi;
            *(uint2 *)(oi + c) = pk;
        }
    else
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            oi[c] = __float2bfloat16_rn(w[c] * (xi[c] * r));
}

/* dx += r * w * dy - x * r^3 / C * sum(w * dy * x) (all fp32) */
template <bool VEC>
__global__ void k_rmsnorm_bwd(float *dx, const float *dout, const float *x, const float *w,
                              const float *rstd, int C)
{
    int64_t off = (int64_t)blockIdx.x * C;
    const float *xi = x + off, *gi = dout + off;
    float *di = dx + off;
    float r = rstd[blockIdx.x];
    float dot = 0.0f;
    if (VEC)
        for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
            float4 ww = *(const float4 *)(w + c), gg = *(const float4 *)(gi + c);
            float4 xx = *(const float4 *)(xi + c);
            dot += ww.x * gg.x * xx.x + ww.y * gg.y * xx.y + ww.z * gg.z * xx.z + ww.w * gg.w * xx.w;
        }
    else
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dot += w[c] * gi[c] * xi[c];
    dot = block_reduce<float, false>(dot);
    float kk = dot * r * r * r / (float)C;
    if (VEC)
        for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
            float4 ww = *(const float4 *)(w + c), gg = *(const float4 *)(gi + c);
            float4 xx = *(const float4 *)(xi + c), d = *(float4 *)(di + c);
            d.x += r * ww.x * gg.x - kk * xx.x;
            d.y += r * ww.y * gg.y - kk * xx.y;
            d.z += r * ww.z * gg.z - kk * xx.z;
            d.w += r * ww.w * gg.w - kk * xx.w;
            *(float4 *)(di + c) = d;
        }
    else
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            di[c] += r * w[c] * gi[c] - kk * xi[c];
}

/* rotate_half on (B*T, nh*hd) of T (bf16 q, k forward; fp32 gradients
 * backward); sign -1 is the transpose. One block per token row (grid-stride
 * over rows), its threads over the row's nh * hd/2 pairs: the 64-bit
 * division happens once per row, not per element. */
template <typename T>
__global__ void k_rope(T *x, const float *cos_t, const float *sin_t, int Tn, int nh, int hd,
                       int64_t rows, float sign)
{
    int half = hd / 2, per_row = nh * half;
    for (int64_t bt = blockIdx.x; bt < rows; bt += gridDim.x) {
        int t = (int)(bt % Tn);
        T *xr = x + bt * (int64_t)nh * hd;
        const float *cr = cos_t + (int64_t)t * half, *sr = sin_t + (int64_t)t * half;
        for (int j = threadIdx.x; j < per_row; j += blockDim.x) {
            int h = j / half, i = j - h * half;
            T *x1 = xr + h * hd + i, *x2 = x1 + half;
            float ct = cr[i], sn = sign * sr[i];
            float a = to_f32(*x1), c = to_f32(*x2);
            *x1 = from_f32<T>(a * ct - c * sn);
            *x2 = from_f32<T>(c * ct + a * sn);
        }
    }
}

/* one block per row (b, i) of head h: softmax over j <= i of the fp32
 * pre-scaled scores scr (B, T, T), written as bf16 probabilities into att
 * (B, nh, T, T), zero above the diagonal */
__global__ void k_softmax_causal(bf16 *att, const float *scr, int h, int nh, int T)
{
    int64_t row = blockIdx.x;
    int64_t b = row / T;
    int i = (int)(row % T);
    const float *s = scr + row * T;
    bf16 *p = att + ((b * nh + h) * T + i) * (int64_t)T;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
        mx = fmaxf(mx, s[j]);
    mx = block_reduce<float, true>(mx);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
        sum += expf(s[j] - mx);
    sum = block_reduce<float, false>(sum);
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < T; j += blockDim.x)
        p[j] = __float2bfloat16_rn(j <= i ? expf(s[j] - mx) * inv : 0.0f);
}

/* one block per row (b, i) of head h: dS = P * (dP - rowsum(P * dP)) * scale
 * from the bf16 P of att and the fp32 dP (B, T, T), written as bf16 into ds
 * (B, T, T), zero above the diagonal */
__global__ void k_softmax_causal_bwd(bf16 *ds, const float *dp, const bf16 *att, int h, int nh,
                                     int T, float scale)
{
    int64_t row = blockIdx.x;
    int64_t b = row / T;
    int i = (int)(row % T);
    const bf16 *p = att + ((b * nh + h) * T + i) * (int64_t)T;
    const float *d = dp + row * T;
    bf16 *o = ds + row * T;
    float dot = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
        dot += __bfloat162float(p[j]) * d[j];
    dot = block_reduce<float, false>(dot);
    for (int j = threadIdx.x; j < T; j += blockDim.x)
        o[j] = __float2bfloat16_rn(j <= i ? __bfloat162float(p[j]) * (d[j] - dot) * scale : 0.0f);
}

/* SwiGLU on element pairs (bf16x2 and float2 accesses; the tensors start
 * on ACT_ALIGN boundaries), an odd last element by itself */
__device__ __forceinline__ float swiglu_h(float x, float u)
{
    return x / (1.0f + expf(-x)) * u;
}

__device__ __forceinline__ void swiglu_d(float dh, float x, float u, float *dg, float *du)
{
    float sig = 1.0f / (1.0f + expf(-x));
    *du = dh * x * sig;
    *dg = dh * u * sig * (1.0f + x * (1.0f - sig));
}

/* h = silu(g) * u, all bf16 */
__global__ void k_swiglu_fwd(bf16 *h, const bf16 *gt, const bf16 *u, int64_t n)
{
    const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)gt, *u2 = (const __nv_bfloat162 *)u;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n / 2;
         i += (int64_t)gridDim.x * blockDim.x) {
        float2 x = __bfloat1622float2(g2[i]), v = __bfloat1622float2(u2[i]);
        ((__nv_bfloat162 *)h)[i] = __floats2bfloat162_rn(swiglu_h(x.x, v.x), swiglu_h(x.y, v.y));
    }
    if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0)
        h[n - 1] = __float2bfloat16_rn(
            swiglu_h(__bfloat162float(gt[n - 1]), __bfloat162float(u[n - 1])));
}

/* bf16 dg, du from fp32 dh and bf16 g, u */
__global__ void k_swiglu_bwd(bf16 *dg, bf16 *du, const float *dh, const bf16 *gt, const bf16 *u,
                             int64_t n)
{
    const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)gt, *u2 = (const __nv_bfloat162 *)u;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n / 2;
         i += (int64_t)gridDim.x * blockDim.x) {
        float2 d = ((const float2 *)dh)[i];
        float2 x = __bfloat1622float2(g2[i]), v = __bfloat1622float2(u2[i]);
        float g0, u0, g1, u1;
        swiglu_d(d.x, x.x, v.x, &g0, &u0);
        swiglu_d(d.y, x.y, v.y, &g1, &u1);
        ((__nv_bfloat162 *)dg)[i] = __floats2bfloat162_rn(g0, g1);
        ((__nv_bfloat162 *)du)[i] = __floats2bfloat162_rn(u0, u1);
    }
    if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0) {
        float g0, u0;
        swiglu_d(dh[n - 1], __bfloat162float(gt[n - 1]), __bfloat162float(u[n - 1]), &g0, &u0);
        dg[n - 1] = __float2bfloat16_rn(g0);
        du[n - 1] = __float2bfloat16_rn(u0);
    }
}

/* one block per row of logits (n, V): row_loss = log(sum exp(l - mx)) - (l_t - mx);
 * with dlogits, its row gets dscale * (softmax - onehot(t)) rounded to bf16
 * (the input of the bf16 dx GEMM); ignored rows (t < 0) get loss 0 and a
 * zero gradient row. */
__global__ void k_xent_rows(const float *logits, bf16 *dlogits, const int32_t *tgt,
                            double *row_loss, int V, float dscale)
{
    int64_t r = blockIdx.x;
    const float *row = logits + r * V;
    bf16 *drow = dlogits ? dlogits + r * V : NULL;
    int t = tgt[r];
    if (t < 0) {
        if (threadIdx.x == 0)
            row_loss[r] = 0.0;
        if (drow)
            for (int j = threadIdx.x; j < V; j += blockDim.x)
                drow[j] = __float2bfloat16_rn(0.0f);
        return;
    }
    float lt = row[t];
    /* one pass for the maximum and the sum of exponentials: each thread
     * keeps its own maximum m and sum se of exp(l - m), rescaled when m
     * grows; then the block's maximum and the rescaled sums */
    float m = -INFINITY;
    double se = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float x = row[j];
        if (x > m) {
            se = se * (double)expf(m - x) + 1.0;
            m = x;
        } else {
            se += (double)expf(x - m);
        }
    }
    float mx = block_reduce<float, true>(m);
    double s = m == -INFINITY ? 0.0 : se * (double)expf(m - mx);
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0)
        row_loss[r] = log(s) - (double)(lt - mx);
    if (drow) {
        float k = (float)(dscale / s);
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            drow[j] = __float2bfloat16_rn(expf(row[j] - mx) * k - (j == t ? dscale : 0.0f));
    }
}

/* backend_hash_uniform on the device: the same splitmix64 finaliser */
__device__ double hash_uniform(uint64_t key, uint64_t index)
{
    uint64_t z = key + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* fp32 (gradients) or bf16 ([act] inputs); out may alias x */
template <typename T>
__global__ void k_dropout(T *out, const T *x, int64_t n, float p, float keep_scale, uint64_t key)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = from_f32<T>(hash_uniform(key, (uint64_t)i) < (double)p
                                 ? 0.0f
                                 : to_f32(x[i]) * keep_scale);
}

/* AdamW with the scalars rounded on the host exactly as cpu_adamw does */
__global__ void k_adamw(float *p, const float *gr, float *m, float *v, int64_t n, float step_size,
                        float bc2_sqrt, float decay, float w1, float b2, float w2, float e)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float gi = gr[i];
        float pi = p[i] * decay;
        float mi = m[i] + w1 * (gi - m[i]);
        float vi = v[i] * b2 + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + e;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / denom);
    }
}

/* per-block double partial sums of x^2; part[blockIdx.x] */
__global__ void k_sumsq_part(double *part, const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

/* part[nb] = sum of part[0 .. nb) in a fixed order (deterministic) */
__global__ void k_sum_parts(double *part, int nb)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x)
        s += part[i];
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0)
        part[nb] = s;
}

__global__ void k_scale(float *x, int64_t n, float a)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

__global__ void k_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

/* ---- the backend table ---- */

static void *cu_alloc(size_t bytes)
{
    return dev_alloc(bytes);
}

static void cu_free(void *p)
{
    dev_free(p);
}

static cublasComputeType_t f32_compute(void)
{
    return g.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

/* Optional device time per GEMM shape (cuda_backend_gemm_profile, for
 * ft-gpu-bench): each gemm call is bracketed by events and waited for, and
 * the table adds up the time per (M, N, K, transposes, types), the
 * conversions of fp32 inputs apart. Off by default: costs nothing then. */
enum { GP_MAX = 96 };
typedef struct {
    int M, N, K;       /* shape */
    char ta, tb;       /* 'T' or 'N' */
    char types[4];     /* A, B, C: 'f' fp32, 'b' bf16 */
    int calls;         /* calls seen */
    double ms, cvt_ms; /* GEMM and conversion time, milliseconds */
} gp_entry_t;
static struct {
    bool on;              /* timing enabled */
    int n;                /* entries used */
    cudaEvent_t ev[3];    /* start, after the conversions, end */
    gp_entry_t e[GP_MAX]; /* one per shape */
} gp;

static void gp_begin(void)
{
    if (gp.on)
        cudaEventRecord(gp.ev[0], g.stream);
}

static void gp_mid(void)
{
    if (gp.on)
        cudaEventRecord(gp.ev[1], g.stream);
}

static void gp_end(bool ta, bool tb, int M, int N, int K, char at, char bt, char ct)
{
    if (!gp.on)
        return;
    float all = 0.0f, cvt = 0.0f;
    cudaEventRecord(gp.ev[2], g.stream);
    if (cudaEventSynchronize(gp.ev[2]) != cudaSuccess ||
        cudaEventElapsedTime(&all, gp.ev[0], gp.ev[2]) != cudaSuccess ||
        cudaEventElapsedTime(&cvt, gp.ev[0], gp.ev[1]) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    int i = 0;
    while (i < gp.n && !(gp.e[i].M == M && gp.e[i].N == N && gp.e[i].K == K &&
                         gp.e[i].ta == (ta ? 'T' : 'N') && gp.e[i].tb == (tb ? 'T' : 'N') &&
                         gp.e[i].types[0] == at && gp.e[i].types[1] == bt &&
                         gp.e[i].types[2] == ct))
        i++;
    if (i == gp.n) {
        if (gp.n == GP_MAX)
            return;
        gp.n++;
        gp.e[i].M = M, gp.e[i].N = N, gp.e[i].K = K;
        gp.e[i].ta = ta ? 'T' : 'N', gp.e[i].tb = tb ? 'T' : 'N';
        gp.e[i].types[0] = at, gp.e[i].types[1] = bt, gp.e[i].types[2] = ct;
        gp.e[i].types[3] = 0;
        gp.e[i].calls = 0, gp.e[i].ms = gp.e[i].cvt_ms = 0.0;
    }
    gp.e[i].calls++;
    gp.e[i].ms += all - cvt;
    gp.e[i].cvt_ms += cvt;
}

extern "C" int cuda_backend_gemm_profile(bool on)
{
    if (on && !gp.ev[0])
        for (int i = 0; i < 3; i++)
            if (!CU_CHECK(cudaEventCreate(&gp.ev[i])))
                return -1;
    if (on)
        gp.n = 0;
    gp.on = on;
    return 0;
}

static int gp_cmp(const void *a, const void *b)
{
    double x = ((const gp_entry_t *)a)->ms, y = ((const gp_entry_t *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

extern "C" void cuda_backend_gemm_report(FILE *f)
{
    qsort(gp.e, (size_t)gp.n, sizeof(gp.e[0]), gp_cmp);
    double tot = 0.0, tot_c = 0.0;
    for (int i = 0; i < gp.n; i++)
        tot += gp.e[i].ms, tot_c += gp.e[i].cvt_ms;
    fprintf(f, "GEMMs of the profiled step: %.2f ms, conversions %.2f ms (types A B C: f fp32, b bf16)\n",
            tot, tot_c);
    fprintf(f, "%6s %6s %6s  op  types calls %9s %9s %8s\n", "M", "N", "K", "ms", "cvt ms",
            "TFLOP/s");
    for (int i = 0; i < gp.n; i++) {
        double fl = 2.0 * gp.e[i].M * gp.e[i].N * gp.e[i].K * gp.e[i].calls;
        fprintf(f, "%6d %6d %6d  %c%c  %-5s %5d %9.3f %9.3f %8.1f\n", gp.e[i].M, gp.e[i].N,
                gp.e[i].K, gp.e[i].ta, gp.e[i].tb, gp.e[i].types, gp.e[i].calls, gp.e[i].ms,
                gp.e[i].cvt_ms, gp.e[i].ms > 0 ? fl / (gp.e[i].ms * 1e-3) / 1e12 : 0.0);
    }
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
 * operands and the M/N roles; the transpose flags keep their meaning. */
static void cu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    gp_begin();
    gp_mid();
    BLAS_CHECK(cublasGemmEx(g.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_32F,
                            ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc, f32_compute(),
                            CUBLAS_GEMM_DEFAULT));
    gp_end(trans_a, trans_b, M, N, K, 'f', 'f', 'f');
}

/* strided batched GEMM, row-major as cu_gemm, with the storage type of each
 * operand (CUDA_R_32F or CUDA_R_16BF); fp32 accumulation, TF32 allowed
 * only when both inputs are fp32 */
static void gemm_strided(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                         const void *A, cudaDataType at, int lda, long long sa, const void *B,
                         cudaDataType bt, int ldb, long long sb, float beta, void *C,
                         cudaDataType ct, int ldc, long long sc, int batch)
{
    cublasComputeType_t ctype = at == CUDA_R_32F && bt == CUDA_R_32F ? f32_compute()
                                                                     : CUBLAS_COMPUTE_32F;
    BLAS_CHECK(cublasGemmStridedBatchedEx(
        g.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
        &alpha, B, bt, ldb, sb, A, at, lda, sa, &beta, C, ct, ldc, sc, batch, ctype,
        CUBLAS_GEMM_DEFAULT));
}

/* elements a row-major (rows, cols) matrix with leading dimension ld spans */
static size_t span(int rows, int cols, int ld)
{
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 0;
}

/* n elements of src converted into conversion slot `slot` (0: operand A,
 * 1: operand B): fp32 to bf16 when to_bf, else bf16 to fp32; the gaps
 * between rows are converted too, so the copy keeps the leading dimension */
/* backend.h's params_cache: the LoRA parameters rounded to bf16 once per
 * step, so that every GEMM reading a LoRA matrix skips its own rounding
 * kernel (about 40 small launches per layer) */
static void cu_params_cache(const float *p, size_t n)
{
    g.pc_src = NULL;
    if (n == 0 || !GROW(g.pc, g.pc_n, n))
        return;
    k_f32_to_bf16<<<grid_for((int64_t)n), NT, 0, g.stream>>>(g.pc, p, (int64_t)n);
    if (LAUNCH_CHECK("k_f32_to_bf16"))
        g.pc_src = p, g.pc_len = n;
}

static const void *convert(int slot, const void *src, bool to_bf, size_t n)
{
    const float *f = (const float *)src;
    if (to_bf && g.pc_src && f >= g.pc_src && f + n <= g.pc_src + g.pc_len)
        return g.pc + (f - g.pc_src);
    if (!grow(&g.cvt[slot], &g.cvt_n[slot], n * (to_bf ? sizeof(bf16) : sizeof(float)), 1))
        return NULL;
    if (n == 0)
        return g.cvt[slot];
    if (to_bf) {
        k_f32_to_bf16<<<grid_for((int64_t)n), NT, 0, g.stream>>>((bf16 *)g.cvt[slot],
                                                                 (const float *)src, (int64_t)n);
        LAUNCH_CHECK("k_f32_to_bf16");
    } else {
        k_bf16_to_f32<<<grid_for((int64_t)n), NT, 0, g.stream>>>((float *)g.cvt[slot],
                                                                 (const bf16 *)src, (int64_t)n);
        LAUNCH_CHECK("k_bf16_to_f32");
    }
    return g.cvt[slot];
}

/* backend.h's gemm_typed. [act] and base weights are bf16, the rest fp32.
 * The product runs on bf16 tensor cores with fp32 accumulation when an
 * operand is a base weight (never widened) or C is bf16, any fp32 input
 * being rounded to bf16 first; otherwise, with one input of each type, the
 * smaller one takes the type of the larger (widening is exact, narrowing a
 * LoRA matrix or a du scratch is cheap); two fp32 inputs run as cu_gemm. */
static void cu_gemm_typed(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const void *A, backend_dtype_t at, int lda, const void *B,
                          backend_dtype_t bt, int ldb, float beta, void *C, backend_dtype_t ct,
                          int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    bool a_bf = at != BACKEND_F32, b_bf = bt != BACKEND_F32, c_bf = ct != BACKEND_F32;
    size_t na = trans_a ? span(K, M, lda) : span(M, K, lda);
    size_t nb = trans_b ? span(N, K, ldb) : span(K, N, ldb);
    bool bf;
    if (at == BACKEND_W || bt == BACKEND_W || c_bf)
        bf = true;
    else if (a_bf != b_bf)
        bf = a_bf ? na >= nb : nb >= na;
    else
        bf = a_bf;
    gp_begin();
    if (a_bf != bf && !(A = convert(0, A, bf, na)))
        return;
    if (b_bf != bf && !(B = convert(1, B, bf, nb)))
        return;
    gp_mid();
    cudaDataType it = bf ? CUDA_R_16BF : CUDA_R_32F;
    BLAS_CHECK(cublasGemmEx(g.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, it, ldb, A,
                            it, lda, &beta, C, c_bf ? CUDA_R_16BF : CUDA_R_32F, ldc,
                            bf ? CUBLAS_COMPUTE_32F : f32_compute(), CUBLAS_GEMM_DEFAULT));
    gp_end(trans_a, trans_b, M, N, K, a_bf ? 'b' : 'f', b_bf ? 'b' : 'f', c_bf ? 'b' : 'f');
}

/* bf16 x bf16 GEMM with fp32 accumulation and fp32 output */
static void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const bf16 *A,
                      int lda, const bf16 *B, int ldb, float beta, float *C, int ldc)
{
    gp_begin();
    gp_mid();
    BLAS_CHECK(cublasGemmEx(g.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF,
                            ldb, A, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    gp_end(trans_a, trans_b, M, N, K, 'b', 'b', 'f');
}

/* backend.h's gemm_w: an fp32 A (the model uses gemm_typed instead) */
static void cu_gemm_w(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *W, int ldw, float beta, float *C, int ldc)
{
    cu_gemm_typed(trans_a, trans_b, M, N, K, alpha, A, BACKEND_F32, lda, W, BACKEND_W, ldw, beta,
                  C, BACKEND_F32, ldc);
}

static bool stage_tokens(int32_t **dst, size_t *have, const int32_t *host, int N)
{
    if (!grow((void **)dst, have, (size_t)N, sizeof(int32_t)))
        return false;
    return CU_CHECK(
        cudaMemcpyAsync(*dst, host, sizeof(int32_t) * (size_t)N, cudaMemcpyHostToDevice, g.stream));
}

static void cu_embedding_forward(float *out, const int32_t *tokens, const float *emb, int N, int C)
{
    if (N <= 0 || !stage_tokens(&g.tok, &g.tok_n, tokens, N))
        return;
    int64_t n = (int64_t)N * C;
    k_embedding_fwd<<<grid_for(n), NT, 0, g.stream>>>(out, g.tok, (const bf16 *)emb, N, C);
    LAUNCH_CHECK("k_embedding_fwd");
}

static void cu_embedding_backward(float *demb, const int32_t *tokens, const float *dout, int N,
                                  int C)
{
    if (N <= 0 || !stage_tokens(&g.tok, &g.tok_n, tokens, N))
        return;
    int64_t n = (int64_t)N * C;
    k_embedding_bwd<<<grid_for(n), NT, 0, g.stream>>>(demb, g.tok, dout, N, C);
    LAUNCH_CHECK("k_embedding_bwd");
}

/* out [act] bf16; x, w, rstd fp32 */
/* rows of C elements can move as float4 (and groups of 4 bf16): C a
 * multiple of 4, every base 16-byte aligned */
static bool vec4_ok(int C, const void *a, const void *b, const void *c)
{
    return C % 4 == 0 && (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15) == 0;
}

static void cu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N,
                               int C, float eps)
{
    if (N <= 0)
        return;
    if (vec4_ok(C, x, w, out))
        k_rmsnorm_fwd<true><<<N, NT, 0, g.stream>>>((bf16 *)out, rstd, x, w, C, eps);
    else
        k_rmsnorm_fwd<false><<<N, NT, 0, g.stream>>>((bf16 *)out, rstd, x, w, C, eps);
    LAUNCH_CHECK("k_rmsnorm_fwd");
}

static void cu_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                                const float *rstd, int N, int C)
{
    if (N <= 0)
        return;
    if (vec4_ok(C, x, w, dx) && vec4_ok(C, dout, dout, dout))
        k_rmsnorm_bwd<true><<<N, NT, 0, g.stream>>>(dx, dout, x, w, rstd, C);
    else
        k_rmsnorm_bwd<false><<<N, NT, 0, g.stream>>>(dx, dout, x, w, rstd, C);
    LAUNCH_CHECK("k_rmsnorm_bwd");
}

template <typename E>
static void rope(E *x, const float *cos_t, const float *sin_t, int B, int T, int nh, int hd,
                 float sign)
{
    int64_t rows = (int64_t)B * T;
    if (rows <= 0 || nh * (hd / 2) <= 0)
        return;
    unsigned grid = (unsigned)(rows < 65535 ? rows : 65535);
    k_rope<E><<<grid, NT, 0, g.stream>>>(x, cos_t, sin_t, T, nh, hd, rows, sign);
    LAUNCH_CHECK("k_rope");
}

/* x [act]: the bf16 q or k */
static void cu_rope_forward(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                            int hd)
{
    rope((bf16 *)x, cos_t, sin_t, B, T, nh, hd, 1.0f);
}

/* dx: the fp32 gradient */
static void cu_rope_backward(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                             int nh, int hd)
{
    rope(dx, cos_t, sin_t, B, T, nh, hd, -1.0f);
}

/* ---- attention: two paths, chosen per shape by cu_attention_plan ----
 *
 * ATT_FLASH, the default where it applies: the fused kernels of
 * flash_attn.cuh (FlashAttention-2 order, mma.sync bf16 tensor-core
 * products, online softmax in fp32); the (T, T) probabilities are never
 * stored. att holds what the backward pass needs: the per-row log-sum-exp
 * (B, nh, T) fp32, then, at the next 256-byte boundary, a bf16 copy of Y
 * (B*T, nh*hd) (backward is not handed y). dQ is accumulated with atomics,
 * dK and dV are written by exactly one block each.
 * Used when hd is 64 or 128 and the device grants the shared memory, unless
 * FT_CUDA_ATTN=materialised.
 *
 * ATT_MATERIALISED, the fallback: per head, cuBLAS bf16 GEMMs batched over
 * the B rows; the scores go to an fp32 (B, T, T) scratch, the softmax writes
 * the bf16 probabilities (B, nh, T, T) into att for backward. */
enum { ATT_MATERIALISED = 0, ATT_FLASH = 1 };

/* D (B, nh, T) = rowsum(dY * Y) per head (dY fp32, Y the bf16 copy), and
 * dyb = dY rounded to bf16 for the backward kernel: one warp per (b, t, h) */
__global__ void k_flash_dot(float *D, bf16 *dyb, const float *dy, const bf16 *ysave, int B, int T,
                            int nh, int hd)
{
    int64_t item = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (item >= (int64_t)B * T * nh)
        return;
    int h = (int)(item % nh);
    int64_t bt = item / nh;
    int64_t b = bt / T, t = bt % T;
    int64_t off = bt * (int64_t)nh * hd + (int64_t)h * hd;
    float s = 0.0f;
    for (int i = lane; i < hd; i += 32) {
        float d = dy[off + i];
        s += d * __bfloat162float(ysave[off + i]);
        dyb[off + i] = __float2bfloat16_rn(d);
    }
    s = warp_sum(s);
    if (lane == 0)
        D[(b * nh + h) * T + t] = s;
}

/* mode and shared-memory grants, decided once per head size */
static int flash_ok_hd[2] = {-1, -1}; /* [hd 64, hd 128]: -1 unknown, 0 no, 1 yes */

template <int HD> static bool flash_grant(int slot)
{
    if (flash_ok_hd[slot] < 0) {
        bool ok = cudaFuncSetAttribute(k_fa_fwd<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)fa_smem<HD>::fwd) == cudaSuccess &&
                  cudaFuncSetAttribute(k_fa_bwd<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)fa_smem<HD>::bwd) == cudaSuccess;
        if (!ok) {
            cudaGetLastError(); /* not an error: the materialised path runs instead */
            fprintf(stderr,
                    "ft-train: cuda: no shared memory for fused attention at head size "
                    "%d; using the materialised path\n",
                    HD);
        }
        flash_ok_hd[slot] = ok;
    }
    return flash_ok_hd[slot] == 1;
}

static bool use_flash(const attn_shape_t *s)
{
    if (g.materialised)
        return false;
    if (s->hd == 64)
        return flash_grant<64>(0);
    if (s->hd == 128)
        return flash_grant<128>(1);
    return false;
}

/* flash: byte offset of the Y copy in att, after the (B, nh, T) lse */
static size_t flash_ysave_off(const attn_shape_t *s)
{
    size_t lse = (size_t)s->B * s->n_heads * s->T * sizeof(float);
    return (lse + 255) / 256 * 256;
}

/* backend.h's attention_plan: the fused path where use_flash allows */
static size_t cu_attention_plan(attn_shape_t *s)
{
    size_t rows = (size_t)s->B * s->n_heads * s->T;
    if (use_flash(s)) {
        s->path = ATT_FLASH;
        return flash_ysave_off(s) + rows * (size_t)s->hd * sizeof(bf16);
    }
    s->path = ATT_MATERIALISED;
    return rows * (size_t)s->T * sizeof(bf16);
}

static void flash_forward(bf16 *y, void *att, const bf16 *q, const bf16 *k, const bf16 *v,
                          const attn_shape_t *s)
{
    int rows = s->hd == 64 ? fa_fwd_mt<64>::rows : fa_fwd_mt<128>::rows;
    dim3 grid((unsigned)s->n_heads, (unsigned)s->B, (unsigned)((s->T + rows - 1) / rows));
    float *lse = (float *)att;
    bf16 *ysave = (bf16 *)((char *)att + flash_ysave_off(s));
    float scale = 1.0f / sqrtf((float)s->hd);
    if (s->hd == 64)
        k_fa_fwd<64><<<grid, FA_THREADS, fa_smem<64>::fwd, g.stream>>>(
            y, lse, ysave, q, k, v, s->T, s->n_heads, s->n_kv, scale);
    else
        k_fa_fwd<128><<<grid, FA_THREADS, fa_smem<128>::fwd, g.stream>>>(
            y, lse, ysave, q, k, v, s->T, s->n_heads, s->n_kv, scale);
    LAUNCH_CHECK("k_fa_fwd");
}

static void flash_backward(float *dq, float *dk, float *dv, const float *dy, const void *att,
                           const bf16 *q, const bf16 *k, const bf16 *v, const attn_shape_t *s)
{
    size_t rows = (size_t)s->B * s->n_heads * s->T;
    const float *lse = (const float *)att;
    const bf16 *ysave = (const bf16 *)((const char *)att + flash_ysave_off(s));
    float scale = 1.0f / sqrtf((float)s->hd);
    /* scratch: D (rows floats), then dY in bf16 (rows * hd, 256-byte aligned) */
    size_t d_floats = (rows + 63) / 64 * 64, dyb_floats = (rows * (size_t)s->hd + 1) / 2;
    if (!GROW(g.att_scr, g.att_scr_n, d_floats + dyb_floats))
        return;
    float *D = g.att_scr;
    bf16 *dyb = (bf16 *)(g.att_scr + d_floats);
    k_flash_dot<<<(unsigned)((rows * 32 + NT - 1) / NT), NT, 0, g.stream>>>(
        D, dyb, dy, ysave, s->B, s->T, s->n_heads, s->hd);
    LAUNCH_CHECK("k_flash_dot");
    CU_CHECK(
        cudaMemsetAsync(dq, 0, sizeof(float) * (size_t)s->B * s->T * s->n_heads * s->hd, g.stream));
    dim3 grid((unsigned)s->n_kv, (unsigned)s->B, (unsigned)((s->T + FA_TILE - 1) / FA_TILE));
    if (s->hd == 64)
        k_fa_bwd<64><<<grid, FA_THREADS, fa_smem<64>::bwd, g.stream>>>(
            dq, dk, dv, dyb, lse, D, q, k, v, s->T, s->n_heads, s->n_kv, scale);
    else
        k_fa_bwd<128><<<grid, FA_THREADS, fa_smem<128>::bwd, g.stream>>>(
            dq, dk, dv, dyb, lse, D, q, k, v, s->T, s->n_heads, s->n_kv, scale);
    LAUNCH_CHECK("k_fa_bwd");
}

/* Per query head h (kv head h / group), batched over the B rows:
 * S = scale * Q K^T (bf16 inputs) into the fp32 scratch, its causal softmax
 * as bf16 P into att, Y = P V (bf16 out). The full (T, T) square is
 * computed; the softmax zeroes the upper part. */
static void materialised_forward(bf16 *y, bf16 *att, const bf16 *q, const bf16 *k, const bf16 *v,
                                 const attn_shape_t *s)
{
    int B = s->B, T = s->T, hd = s->hd, nh = s->n_heads, group = s->n_heads / s->n_kv;
    int ldq = nh * hd, ldk = s->n_kv * hd;
    long long sq = (long long)T * ldq, sk = (long long)T * ldk, sp = (long long)nh * T * T;
    long long ss = (long long)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    if (!GROW(g.att_scr, g.att_scr_n, (size_t)B * T * T))
        return;
    for (int h = 0; h < nh; h++) {
        int kvh = h / group;
        gemm_strided(false, true, T, T, hd, scale, q + (size_t)h * hd, CUDA_R_16BF, ldq, sq,
                     k + (size_t)kvh * hd, CUDA_R_16BF, ldk, sk, 0.0f, g.att_scr, CUDA_R_32F, T,
                     ss, B);
        k_softmax_causal<<<(unsigned)((int64_t)B * T), NT, 0, g.stream>>>(att, g.att_scr, h, nh,
                                                                         T);
        LAUNCH_CHECK("k_softmax_causal");
        gemm_strided(false, false, T, hd, T, 1.0f, att + (size_t)h * T * T, CUDA_R_16BF, T, sp,
                     v + (size_t)kvh * hd, CUDA_R_16BF, ldk, sk, 0.0f, y + (size_t)h * hd,
                     CUDA_R_16BF, ldq, sq, B);
    }
}

/* Per query head h, batched over B, with dY rounded to bf16 once: dP = dY
 * V^T (fp32 scratch), dV (+)= P^T dY, dS (bf16 scratch), dQ = dS K, dK (+)=
 * dS^T Q, the gradients fp32. The heads of a kv group are consecutive, so the
 * first one writes dK, dV (beta 0) and the others add. The model's (T, T)
 * scratch is too small for a batched head; the backend owns (B, T, T). */
static void materialised_backward(float *dq, float *dk, float *dv, const float *dy,
                                  const bf16 *att, const bf16 *q, const bf16 *k, const bf16 *v,
                                  const attn_shape_t *s)
{
    int B = s->B, T = s->T, hd = s->hd, nh = s->n_heads, group = s->n_heads / s->n_kv;
    int ldq = nh * hd, ldk = s->n_kv * hd;
    long long sq = (long long)T * ldq, sk = (long long)T * ldk, sp = (long long)nh * T * T;
    long long ss = (long long)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t nq = (int64_t)B * T * ldq;
    if (!GROW(g.att_scr, g.att_scr_n, (size_t)B * T * T) ||
        !GROW(g.att_ds, g.att_ds_n, (size_t)B * T * T) || !GROW(g.att_dy, g.att_dy_n, (size_t)nq))
        return;
    k_f32_to_bf16<<<grid_for(nq), NT, 0, g.stream>>>(g.att_dy, dy, nq);
    LAUNCH_CHECK("k_f32_to_bf16");
    float *dP = g.att_scr;
    for (int h = 0; h < nh; h++) {
        int kvh = h / group;
        float beta = h % group == 0 ? 0.0f : 1.0f;
        const bf16 *P = att + (size_t)h * T * T;
        const bf16 *dyh = g.att_dy + (size_t)h * hd, *qh = q + (size_t)h * hd;
        const bf16 *kk = k + (size_t)kvh * hd, *vv = v + (size_t)kvh * hd;
        gemm_strided(false, true, T, T, hd, 1.0f, dyh, CUDA_R_16BF, ldq, sq, vv, CUDA_R_16BF, ldk,
                     sk, 0.0f, dP, CUDA_R_32F, T, ss, B);
        gemm_strided(true, false, T, hd, T, 1.0f, P, CUDA_R_16BF, T, sp, dyh, CUDA_R_16BF, ldq, sq,
                     beta, dv + (size_t)kvh * hd, CUDA_R_32F, ldk, sk, B);
        k_softmax_causal_bwd<<<(unsigned)((int64_t)B * T), NT, 0, g.stream>>>(g.att_ds, dP, att,
                                                                              h, nh, T, scale);
        LAUNCH_CHECK("k_softmax_causal_bwd");
        gemm_strided(false, false, T, hd, T, 1.0f, g.att_ds, CUDA_R_16BF, T, ss, kk, CUDA_R_16BF,
                     ldk, sk, 0.0f, dq + (size_t)h * hd, CUDA_R_32F, ldq, sq, B);
        gemm_strided(true, false, T, hd, T, 1.0f, g.att_ds, CUDA_R_16BF, T, ss, qh, CUDA_R_16BF,
                     ldq, sq, beta, dk + (size_t)kvh * hd, CUDA_R_32F, ldk, sk, B);
    }
}

/* y, q, k, v [act] bf16; att as cu_attention_plan sized it for s->path (a
 * shape without a plan runs materialised: its att, (B, nh, T, T) floats by
 * default, is more than the bf16 probabilities need) */
static void cu_attention_forward(float *y, float *att, const float *q, const float *k,
                                 const float *v, const attn_shape_t *s)
{
    if (s->path == ATT_FLASH)
        flash_forward((bf16 *)y, att, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, s);
    else
        materialised_forward((bf16 *)y, (bf16 *)att, (const bf16 *)q, (const bf16 *)k,
                             (const bf16 *)v, s);
}

static void cu_attention_backward(float *dq, float *dk, float *dv, const float *dy,
                                  const float *att, const float *q, const float *k, const float *v,
                                  float *scratch, const attn_shape_t *s)
{
    (void)scratch;
    if (s->path == ATT_FLASH)
        flash_backward(dq, dk, dv, dy, att, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, s);
    else
        materialised_backward(dq, dk, dv, dy, (const bf16 *)att, (const bf16 *)q,
                              (const bf16 *)k, (const bf16 *)v, s);
}

/* h, g, u [act] bf16 */
static void cu_swiglu_forward(float *h, const float *gt, const float *u, int64_t n)
{
    if (n <= 0)
        return;
    k_swiglu_fwd<<<grid_for(n / 2 + 1), NT, 0, g.stream>>>((bf16 *)h, (const bf16 *)gt,
                                                           (const bf16 *)u, n);
    LAUNCH_CHECK("k_swiglu_fwd");
}

/* g, u [act] bf16; dg, du, dh fp32 */
/* dg, du [act] bf16 */
static void cu_swiglu_backward(float *dg, float *du, const float *dh, const float *gt,
                               const float *u, int64_t n)
{
    if (n <= 0)
        return;
    k_swiglu_bwd<<<grid_for(n / 2 + 1), NT, 0, g.stream>>>((bf16 *)dg, (bf16 *)du, dh,
                                                           (const bf16 *)gt, (const bf16 *)u, n);
    LAUNCH_CHECK("k_swiglu_bwd");
}

/* fp32 logits budget of the device chunks: about 2000 rows at a 128K vocabulary,
 * so each pass over W (V, C) serves GEMMs big enough to fill the tensor cores */
#define XENT_LOGITS_BYTES ((int64_t)1 << 30)

/* Chunks of rows as cpu_xent: logits = x W^T (x [act] bf16, bf16 GEMM, fp32
 * out), the row kernel, dx (fp32) = dlogits W (dlogits cast to bf16). The
 * model's chunk is sized for host caches; on the device a larger one (own
 * scratch) is used when it fits the budget above. Row losses stay on the
 * device until the end and are summed on the host in row order. */
static double cu_xent(float *dx, const float *x, const float *W, const int32_t *targets, int N,
                      int C, int V, float *logits, int chunk, float dscale, int64_t *n_tok)
{
    *n_tok = 0;
    if (N <= 0 || chunk <= 0)
        return 0.0;
    if (!stage_tokens(&g.tgt, &g.tgt_n, targets, N) || !GROW(g.row_loss, g.row_loss_n, N))
        return NAN;
    int64_t big = XENT_LOGITS_BYTES / ((int64_t)sizeof(float) * V);
    big = big < N ? big : N;
    if (big > chunk) {
        if (!GROW(g.logits, g.logits_n, (size_t)big * V))
            return NAN;
        logits = g.logits;
        chunk = (int)big;
    }
    if (dx && !GROW(g.bf_l, g.bf_l_n, (size_t)chunk * V))
        return NAN;
    const __nv_bfloat16 *Wb = (const __nv_bfloat16 *)W;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        int n = N - r0 < chunk ? N - r0 : chunk;
        int live = 0;
        for (int i = 0; i < n; i++)
            live += targets[r0 + i] >= 0;
        if (live == 0) {
            if (dx)
                CU_CHECK(cudaMemsetAsync(dx + (size_t)r0 * C, 0, sizeof(float) * (size_t)n * C,
                                         g.stream));
            continue;
        }
        const bf16 *xb = (const bf16 *)x + (size_t)r0 * C;
        gemm_bf16(false, true, n, V, C, 1.0f, xb, C, Wb, C, 0.0f, logits, V);
        k_xent_rows<<<n, NT, 0, g.stream>>>(logits, dx ? g.bf_l : NULL, g.tgt + r0,
                                            g.row_loss + r0, V, dscale);
        LAUNCH_CHECK("k_xent_rows");
        if (dx)
            gemm_bf16(false, false, n, C, V, 1.0f, g.bf_l, V, Wb, C, 0.0f, dx + (size_t)r0 * C, C);
    }
    if (g.host_rl_n < (size_t)N) {
        double *h = (double *)realloc(g.host_rl, sizeof(double) * (size_t)N);
        if (!h) {
            record_error("out of host memory for %d row losses", N);
            return NAN;
        }
        g.host_rl = h;
        g.host_rl_n = (size_t)N;
    }
    if (!CU_CHECK(cudaMemcpyAsync(g.host_rl, g.row_loss, sizeof(double) * (size_t)N,
                                  cudaMemcpyDeviceToHost, g.stream)) ||
        !CU_CHECK(cudaStreamSynchronize(g.stream)))
        return NAN;
    double total = 0.0;
    int64_t count = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] >= 0) {
            total += g.host_rl[i];
            count++;
        }
    }
    *n_tok = count;
    return total;
}

/* fp32 (the LoRA input gradient) */
static void cu_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t key)
{
    if (n <= 0)
        return;
    k_dropout<float><<<grid_for(n), NT, 0, g.stream>>>(out, x, n, p, 1.0f / (1.0f - p), key);
    LAUNCH_CHECK("k_dropout");
}

/* [act] bf16 (the LoRA input): the same mask as the fp32 one */
static void cu_dropout_act(act_t *out, const act_t *x, int64_t n, float p, uint64_t key)
{
    if (n <= 0)
        return;
    k_dropout<bf16><<<grid_for(n), NT, 0, g.stream>>>((bf16 *)out, (const bf16 *)x, n, p,
                                                      1.0f / (1.0f - p), key);
    LAUNCH_CHECK("k_dropout");
}

static void cu_adamw(float *p, const float *gr, float *m, float *v, int64_t n, double lr,
                     double beta1, double beta2, double eps, double wd, int64_t t)
{
    if (n <= 0)
        return;
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    float decay = (float)(1.0 - lr * wd);
    float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    k_adamw<<<grid_for(n), NT, 0, g.stream>>>(p, gr, m, v, n, step_size, bc2_sqrt, decay, w1, b2,
                                              w2, (float)eps);
    LAUNCH_CHECK("k_adamw");
}

static double cu_sumsq(const float *x, int64_t n)
{
    if (n <= 0)
        return 0.0;
    int nb = grid_for(n);
    if (!GROW(g.part, g.part_n, (size_t)nb + 1))
        return NAN;
    k_sumsq_part<<<nb, NT, 0, g.stream>>>(g.part, x, n);
    LAUNCH_CHECK("k_sumsq_part");
    k_sum_parts<<<1, NT, 0, g.stream>>>(g.part, nb);
    LAUNCH_CHECK("k_sum_parts");
    double s = NAN;
    if (!CU_CHECK(
            cudaMemcpyAsync(&s, g.part + nb, sizeof(double), cudaMemcpyDeviceToHost, g.stream)) ||
        !CU_CHECK(cudaStreamSynchronize(g.stream)))
        return NAN;
    return s;
}

static void cu_scale(float *x, int64_t n, float a)
{
    if (n <= 0)
        return;
    k_scale<<<grid_for(n), NT, 0, g.stream>>>(x, n, a);
    LAUNCH_CHECK("k_scale");
}

static void cu_add(float *y, const float *x, int64_t n)
{
    if (n <= 0)
        return;
    k_add<<<grid_for(n), NT, 0, g.stream>>>(y, x, n);
    LAUNCH_CHECK("k_add");
}

static void cu_set_threads(int n)
{
    (void)n; /* host threads do not matter here */
}

static void cu_copy(float *dst, const float *src, int64_t n)
{
    if (n > 0)
        CU_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice,
                                 g.stream));
}

static void cu_zero(float *x, int64_t n)
{
    if (n > 0)
        CU_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * (size_t)n, g.stream));
}

/* bytes between host and device on the training stream, waited for */
static int copy_sync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0)
        return 0;
    if (!CU_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, g.stream)) ||
        !CU_CHECK(cudaStreamSynchronize(g.stream)))
        return -1;
    return 0;
}

static int cu_upload(void *dst, const void *src, size_t bytes)
{
    return copy_sync(dst, src, bytes, cudaMemcpyHostToDevice);
}

static int cu_download(void *dst, const void *src, size_t bytes)
{
    return copy_sync(dst, src, bytes, cudaMemcpyDeviceToHost);
}

static int cu_sync(void)
{
    CU_CHECK(cudaStreamSynchronize(g.stream));
    return g.err[0] ? -1 : 0;
}

static size_t cu_peak_bytes(void)
{
    return g.bytes_peak;
}

/* converts n floats through a host staging buffer into dst (bf16) */
static int upload_bf16(__nv_bfloat16 *dst, const float *src, size_t n, uint16_t *stage,
                       size_t stage_n)
{
    for (size_t off = 0; off < n; off += stage_n) {
        size_t k = n - off < stage_n ? n - off : stage_n;
        for (size_t i = 0; i < k; i++)
            stage[i] = ft_bf16_round(src[off + i]);
        if (cu_upload(dst + off, stage, k * sizeof(uint16_t)) < 0)
            return -1;
    }
    return 0;
}

static void cu_weights_free(llama_weights_t *dev)
{
    dev_free(dev->embed); /* the start of the bf16 block */
    dev_free(dev->mem);   /* the fp32 norms */
    free(dev->layers);
    memset(dev, 0, sizeof(*dev));
}

/* Device layout: one bf16 block with embed, per layer q k v o gate up down,
 * then lm_head unless tied; one fp32 block with the norms (attn, mlp per
 * layer, then final). dev->mem is the fp32 block, dev->n_floats its size. */
static int cu_weights_upload(const llama_config_t *cfg, const llama_weights_t *host,
                             llama_weights_t *dev)
{
    size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size;
    size_t V = (size_t)cfg->vocab_size, L = (size_t)cfg->n_layers;
    size_t Hq = (size_t)cfg->n_heads * cfg->head_dim, Hkv = (size_t)cfg->n_kv_heads * cfg->head_dim;
    bool tied = host->lm_head == host->embed;
    size_t per_layer = Hq * C + 2 * Hkv * C + C * Hq + 3 * I * C;
    size_t n_bf = V * C + L * per_layer + (tied ? 0 : V * C);
    size_t n_norm = C * (2 * L + 1);
    size_t stage_n = (size_t)1 << 22;
    uint16_t *stage = (uint16_t *)malloc(stage_n * sizeof(uint16_t));
    float *nstage = (float *)malloc(n_norm * sizeof(float));
    __nv_bfloat16 *bf = NULL;
    float *nf = NULL;
    int rc = -1;
    memset(dev, 0, sizeof(*dev));
    dev->layers = (llama_layer_weights_t *)calloc(L, sizeof(*dev->layers));
    if (!stage || !nstage || !dev->layers)
        goto out;
    bf = (__nv_bfloat16 *)dev_alloc(n_bf * sizeof(*bf));
    nf = (float *)dev_alloc(n_norm * sizeof(float));
    if (!bf || !nf)
        goto out;
    {
        __nv_bfloat16 *p = bf;
        /* (dst slot, source, elements) in device order */
#define PUT(slot, src, n)                                                                          \
    do {                                                                                           \
        if (upload_bf16(p, (src), (n), stage, stage_n) < 0)                                        \
            goto out;                                                                              \
        (slot) = (float *)(void *)p;                                                               \
        p += (n);                                                                                  \
    } while (0)
        PUT(dev->embed, host->embed, V * C);
        for (size_t l = 0; l < L; l++) {
            const llama_layer_weights_t *hl = &host->layers[l];
            llama_layer_weights_t *dl = &dev->layers[l];
            PUT(dl->q, hl->q, Hq * C);
            PUT(dl->k, hl->k, Hkv * C);
            PUT(dl->v, hl->v, Hkv * C);
            PUT(dl->o, hl->o, C * Hq);
            PUT(dl->gate, hl->gate, I * C);
            PUT(dl->up, hl->up, I * C);
            PUT(dl->down, hl->down, C * I);
        }
        if (tied)
            dev->lm_head = dev->embed;
        else
            PUT(dev->lm_head, host->lm_head, V * C);
#undef PUT
    }
    for (size_t l = 0; l < L; l++) {
        memcpy(nstage + (2 * l) * C, host->layers[l].attn_norm, C * sizeof(float));
        memcpy(nstage + (2 * l + 1) * C, host->layers[l].mlp_norm, C * sizeof(float));
        dev->layers[l].attn_norm = nf + (2 * l) * C;
        dev->layers[l].mlp_norm = nf + (2 * l + 1) * C;
    }
    memcpy(nstage + 2 * L * C, host->final_norm, C * sizeof(float));
    dev->final_norm = nf + 2 * L * C;
    if (cu_upload(nf, nstage, n_norm * sizeof(float)) < 0)
        goto out;
    dev->mem = nf;
    dev->n_floats = n_norm;
    rc = 0;
out:
    if (rc < 0) {
        dev_free(bf);
        dev_free(nf);
        free(dev->layers);
        memset(dev, 0, sizeof(*dev));
    }
    free(stage);
    free(nstage);
    return rc;
}

static const backend_t cuda_backend = {
    /* .name = */ "cuda",
    /* .alloc = */ cu_alloc,
    /* .free = */ cu_free,
    /* .gemm = */ cu_gemm,
    /* .embedding_forward = */ cu_embedding_forward,
    /* .embedding_backward = */ cu_embedding_backward,
    /* .rmsnorm_forward = */ cu_rmsnorm_forward,
    /* .rmsnorm_backward = */ cu_rmsnorm_backward,
    /* .rope_forward = */ cu_rope_forward,
    /* .rope_backward = */ cu_rope_backward,
    /* .attention_forward = */ cu_attention_forward,
    /* .attention_backward = */ cu_attention_backward,
    /* .swiglu_forward = */ cu_swiglu_forward,
    /* .swiglu_backward = */ cu_swiglu_backward,
    /* .xent_forward_backward = */ cu_xent,
    /* .dropout_forward = */ cu_dropout_forward,
    /* .adamw = */ cu_adamw,
    /* .sumsq = */ cu_sumsq,
    /* .scale = */ cu_scale,
    /* .add = */ cu_add,
    /* .set_threads = */ cu_set_threads,
    /* .copy = */ cu_copy,
    /* .zero = */ cu_zero,
    /* .upload = */ cu_upload,
    /* .download = */ cu_download,
    /* .weights_upload = */ cu_weights_upload,
    /* .weights_free = */ cu_weights_free,
    /* .gemm_w = */ cu_gemm_w,
    /* .sync = */ cu_sync,
    /* .peak_bytes = */ cu_peak_bytes,
    /* .act_bytes = */ sizeof(bf16),
    /* .gemm_typed = */ cu_gemm_typed,
    /* .dropout_act = */ cu_dropout_act,
    /* .attention_plan = */ cu_attention_plan,
    /* .params_cache = */ cu_params_cache,
};

/* ---- public entry points ---- */

extern "C" int cuda_backend_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear it: no driver or no device is not an error here */
        return 0;
    }
    return n;
}

extern "C" const backend_t *backend_cuda(int device, ft_err_t *err)
{
    if (g.ready) {
        if (device != g.device) {
            ft_err_set(err, FT_EINTERNAL, "cuda backend already bound to device %d, not %d",
                       g.device, device);
            return NULL;
        }
        return &cuda_backend;
    }
    int n = cuda_backend_device_count();
    if (device < 0 || device >= n) {
        ft_err_set(err, FT_ENOTFOUND, "no CUDA device %d (%d visible)", device, n);
        return NULL;
    }
    const char *tf = getenv("FT_CUDA_TF32");
    g.tf32 = !(tf && strcmp(tf, "0") == 0);
    const char *am = getenv("FT_CUDA_ATTN");
    if (am && cuda_backend_set_attention(am) < 0)
        fprintf(stderr,
                "ft-train: cuda: 'FT_CUDA_ATTN': expected flash or materialised, got "
                "'%.40s'; using flash where the shape allows\n",
                am);
    g.err[0] = '\0';
    cublasStatus_t bs;
    if (!CU_CHECK(cudaSetDevice(device)) ||
        !CU_CHECK(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking)))
        goto fail;
    bs = cublasCreate(&g.blas);
    if (!BLAS_CHECK(bs))
        goto fail;
    if (!BLAS_CHECK(cublasSetStream(g.blas, g.stream)))
        goto fail;
    g.blas_ws = dev_alloc(CUBLAS_WS_BYTES);
    if (!g.blas_ws || !BLAS_CHECK(cublasSetWorkspace(g.blas, g.blas_ws, CUBLAS_WS_BYTES)))
        goto fail;
    g.device = device;
    g.ready = true;
    return &cuda_backend;
fail:
    ft_err_set(err, FT_EINTERNAL, "cannot start the cuda backend on device %d: %s", device, g.err);
    return NULL;
}

extern "C" int cuda_backend_set_attention(const char *mode)
{
    if (strcmp(mode, "flash") == 0)
        g.materialised = false;
    else if (strcmp(mode, "materialised") == 0)
        g.materialised = true;
    else
        return -1;
    return 0;
}

extern "C" void *cuda_backend_stream(void)
{
    return g.ready ? (void *)g.stream : NULL;
}

extern "C" const char *cuda_backend_error(void)
{
    return g.err;
}

extern "C" size_t cuda_backend_bytes_now(void)
{
    return g.bytes_now;
}

extern "C" int cuda_backend_mem_info(size_t *free_b, size_t *total_b)
{
    return cudaMemGetInfo(free_b, total_b) == cudaSuccess ? 0 : -1;
}

extern "C" int cuda_backend_device_name(char *buf, size_t len, int *major, int *minor)
{
    cudaDeviceProp p;
    int dev = g.ready ? g.device : 0;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess)
        return -1;
    snprintf(buf, len, "%s", p.name);
    *major = p.major;
    *minor = p.minor;
    return 0;
}
