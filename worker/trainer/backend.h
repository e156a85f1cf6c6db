/*
 * backend.h: the compute operations the model is written against. One table
 * of function pointers per backend (cpu now, cuda later); the model's forward
 * and backward call only these, so a backend slots in without touching
 * model.c.
 *
 * Conventions: every matrix is row-major. Shapes are given in the comments
 * as (rows, cols). N = B*T rows of tokens. "Backward" functions that produce
 * gradients of inputs ADD into the destination (so that several consumers of
 * one activation can accumulate) unless the comment says "writes". Weight
 * gradients of the frozen base model are never computed.
 *
 * Element types: every tensor is float32 except those marked [act], which
 * hold the backend's activation type, act_bytes per element: float32 on the
 * CPU backends, bf16 on CUDA. They are declared float * so that the fp32
 * backends keep plain signatures, but like the device weights they are
 * opaque to the caller: the model addresses them in bytes (backend_act_at)
 * and never reads them itself. Activations that need fp32 stay fp32 on every
 * backend: the residual stream and its gradient, RMSNorm's rstd, softmax
 * statistics, logits and the loss, all activation gradients, the LoRA
 * parameters, their gradients and the optimiser state.
 *
 * Costs: gemm is O(M*N*K); attention is O(B*nh*T*T*hd); every other op is
 * linear in its input, except cross-entropy which is O(N*V*C) through the
 * lm_head GEMMs it runs in row chunks.
 */
#ifndef FT_BACKEND_H
#define FT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"

/* Query rows per attention block: rows [i0, i0 + 64) meet only keys
 * [0, i0 + 64), so the masked upper blocks are never computed. FLOP counts
 * (model_train_flops) follow the same blocking. */
#define BACKEND_ATT_BLOCK 64

/* Rows per lm_head / cross-entropy chunk: a logits scratch of at most
 * 32 MiB, and at least 64 rows so that each pass over W (V, C) serves many
 * rows (every chunk reads all of W twice). */
static inline int backend_xent_chunk(int N, int V)
{
    int64_t rows = ((int64_t)32 << 20) / ((int64_t)sizeof(float) * (V > 0 ? V : 1));
    rows = rows < 64 ? 64 : rows;
    return (int)(rows < N ? rows : N);
}

/* Shape of one attention call. */
typedef struct {
    int B;        /* rows (sequences) in the batch */
    int T;        /* tokens per row */
    int n_heads;  /* query heads */
    int n_kv;     /* key/value heads; divides n_heads */
    int hd;       /* head dimension */
    int path;     /* backend-chosen kernel (attention_plan); 0 where there is no plan */
} attn_shape_t;

/* The backend's activation element (act_bytes wide): opaque to the model,
 * which only offsets pointers to it in bytes. */
typedef void act_t;

/* Element type of one operand of gemm_typed. */
typedef enum {
    BACKEND_F32 = 0,  /* float32 */
    BACKEND_ACT = 1,  /* the backend's activation type ([act]) */
    BACKEND_W = 2,    /* a base weight matrix from weights_upload */
} backend_dtype_t;

typedef struct backend {
    const char *name;   /* "cpu" */

    /* memory the ops work on (host memory for cpu) */
    void *(*alloc)(size_t bytes);      /* zeroed; NULL on failure */
    void (*free)(void *p);

    /* C(M,N) = alpha * op(A) op(B) + beta * C, row-major with leading
     * dimensions; op(A) is (M,K), op(B) is (K,N). */
    void (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc);

    /* out (N,C) = emb[tokens[i]] rows; tokens checked by the caller */
    void (*embedding_forward)(float *out, const int32_t *tokens, const float *emb, int N,
                              int C);
    /* demb (V,C) += scatter of dout (N,C) by tokens (used only by tests: the
     * embedding is frozen in LoRA training) */
    void (*embedding_backward)(float *demb, const int32_t *tokens, const float *dout, int N,
                               int C);

    /* out [act] (N,C) = x * rsqrt(mean(x^2) + eps) * w; rstd (N) saved for
     * backward; x is the fp32 residual stream */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *x, const float *w, int N,
                            int C, float eps);
    /* dx (N,C) += d/dx of the above given dout (N,C); w not trained */
    void (*rmsnorm_backward)(float *dx, const float *dout, const float *x, const float *w,
                             const float *rstd, int N, int C);

    /* In place on x [act] (B*T, nh*hd): rotate_half RoPE with cos/sin tables
     * (T, hd/2) at positions 0..T-1 of every row. Backward applies the
     * transpose to the fp32 gradient dx. */
    void (*rope_forward)(float *x, const float *cos_t, const float *sin_t, int B, int T,
                         int nh, int hd);
    void (*rope_backward)(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                          int nh, int hd);

    /* Causal softmax attention with GQA. q [act] (B*T, nh*hd), k, v [act]
     * (B*T, nkv*hd); writes y [act] (B*T, nh*hd) and att, what backward
     * needs: without attention_plan the (B, nh, T, T) fp32 probabilities
     * (upper triangle zero), else the layout of s->path in the bytes the plan
     * gave. scale = 1/sqrt(hd). Blocked by BACKEND_ATT_BLOCK. */
    void (*attention_forward)(float *y, float *att, const float *q, const float *k,
                              const float *v, const attn_shape_t *s);
    /* Writes dq, dk, dv (fp32, same shapes as q, k, v) from dy (fp32); q, k,
     * v [act] and att as forward left them; scratch is (T, T) floats. */
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dy,
                               const float *att, const float *q, const float *k,
                               const float *v, float *scratch, const attn_shape_t *s);

    /* h [act] (N,I) = silu(g) * u, g and u [act] */
    void (*swiglu_forward)(float *h, const float *g, const float *u, int64_t n);
    /* writes dg, du [act] (N,I) from dh (fp32); g, u [act] */
    void (*swiglu_backward)(float *dg, float *du, const float *dh, const float *g,
                            const float *u, int64_t n);

    /* Fused lm_head + cross-entropy over N rows of x [act] (N,C) against W (V,C),
     * in chunks of `chunk` rows using logits scratch (chunk, V). Returns the
     * SUM of -log p(target) over rows with target != -100, its count in
     * *n_tok. When dx is not NULL also WRITES dx (N,C) = d(dscale * sum)/dx,
     * i.e. the gradient of dscale times the summed loss (rows ignored get 0). */
    double (*xent_forward_backward)(float *dx, const float *x, const float *W,
                                    const int32_t *targets, int N, int C, int V,
                                    float *logits, int chunk, float dscale, int64_t *n_tok);

    /* Dropout mask on the LoRA branch input: out (N,C) = x * keep / (1 - p),
     * keep drawn from a counter-based hash of (key, element index) so that
     * backward can regenerate the same mask without storing it. */
    void (*dropout_forward)(float *out, const float *x, int64_t n, float p, uint64_t key);

    /* AdamW on n parameters (PyTorch semantics: decoupled decay p -= lr*wd*p,
     * then the bias-corrected Adam update). t is the 1-based step. Scalars
     * are doubles, as PyTorch's Python floats are, cast to float where the
     * kernel would. */
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                  double beta1, double beta2, double eps, double wd, int64_t t);
    /* sum of squares of n floats, in double */
    double (*sumsq)(const float *x, int64_t n);
    /* x *= a */
    void (*scale)(float *x, int64_t n, float a);
    /* y += x */
    void (*add)(float *y, const float *x, int64_t n);

    void (*set_threads)(int n);

    /* ---- Optional members. A backend on host memory with fp32 base weights
     * (cpu) leaves them NULL and the model falls back to memcpy/memset and
     * the host weights as given. A device backend (cuda) sets them all.
     * Token ids (embedding tokens, xent targets) are always HOST arrays: the
     * backend stages them itself. ---- */
    /* dst = src, n floats of backend memory */
    void (*copy)(float *dst, const float *src, int64_t n);
    /* x = 0 over n floats of backend memory */
    void (*zero)(float *x, int64_t n);
    /* bytes from host to backend memory and back; 0 or -1 */
    int (*upload)(void *dst, const void *src, size_t bytes);
    int (*download)(void *dst, const void *src, size_t bytes);
    /* Copies the frozen base weights into backend memory in the backend's
     * own weight format (cuda: bf16 matrices, fp32 norm vectors) and fills
     * *dev with pointers of the same layout. The matrices behind dev (embed,
     * lm_head, q .. down) are opaque: only gemm_w, embedding_forward and
     * xent_forward_backward read them. Free with weights_free. */
    int (*weights_upload)(const llama_config_t *cfg, const llama_weights_t *host,
                          llama_weights_t *dev);
    void (*weights_free)(llama_weights_t *dev);
    /* gemm whose B operand is a base weight matrix from weights_upload */
    void (*gemm_w)(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *W, int ldw, float beta, float *C,
                   int ldc);
    /* waits for all queued work; -1 when the device reported an error */
    int (*sync)(void);
    /* high-water mark of backend memory held, bytes */
    size_t (*peak_bytes)(void);

    /* ---- Optional members of a backend whose activations are not fp32
     * (act_bytes != 4); NULL elsewhere, where the model calls gemm, gemm_w,
     * dropout_forward instead and sizes att as (B, nh, T, T) floats. ---- */
    /* bytes per [act] element: 4 (fp32) or 2 (bf16); 0 reads as 4 */
    size_t act_bytes;
    /* gemm with a declared type per operand (A, B, C); accumulation is
     * always fp32, the backend converts operands as its comment says */
    void (*gemm_typed)(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                       const void *A, backend_dtype_t at, int lda, const void *B,
                       backend_dtype_t bt, int ldb, float beta, void *C, backend_dtype_t ct,
                       int ldc);
    /* dropout_forward on [act] tensors (out and x both [act]) */
    void (*dropout_act)(act_t *out, const act_t *x, int64_t n, float p, uint64_t key);
    /* Chooses the attention kernel for shape s (sets s->path, to be passed
     * unchanged to forward and backward) and returns the bytes of att that
     * one layer's forward leaves for backward. */
    size_t (*attention_plan)(attn_shape_t *s);
    /* The n fp32 values at p (the LoRA parameters) hold still until the next
     * call: the backend may round them to its GEMM input type once, and a
     * gemm_typed operand inside [p, p + n) then reads that copy. The model
     * calls it at the start of every step. NULL: no such copy. */
    void (*params_cache)(const float *p, size_t n);
} backend_t;

/* Bytes per [act] element of be. */
static inline size_t backend_act_bytes(const backend_t *be)
{
    return be->act_bytes ? be->act_bytes : sizeof(float);
}

/* p advanced by n [act] elements of be (the model's only arithmetic on them) */
static inline act_t *backend_act_at(const backend_t *be, const act_t *p, size_t n)
{
    return (act_t *)((const char *)p + n * backend_act_bytes(be));
}

/* gemm with typed operands: gemm_typed where the backend has one, else the
 * fp32 gemm (gemm_w for a base weight B), where every type is fp32 */
static inline void backend_gemm(const backend_t *be, bool trans_a, bool trans_b, int M, int N,
                                int K, float alpha, const void *A, backend_dtype_t at, int lda,
                                const void *B, backend_dtype_t bt, int ldb, float beta, void *C,
                                backend_dtype_t ct, int ldc)
{
    if (be->gemm_typed)
        be->gemm_typed(trans_a, trans_b, M, N, K, alpha, A, at, lda, B, bt, ldb, beta, C, ct,
                       ldc);
    else if (bt == BACKEND_W && be->gemm_w)
        be->gemm_w(trans_a, trans_b, M, N, K, alpha, (const float *)A, lda, (const float *)B,
                   ldb, beta, (float *)C, ldc);
    else
        be->gemm(trans_a, trans_b, M, N, K, alpha, (const float *)A, lda, (const float *)B, ldb,
                 beta, (float *)C, ldc);
}

/* dropout on [act] tensors: dropout_act where the backend has one */
static inline void backend_dropout_act(const backend_t *be, act_t *out, const act_t *x,
                                       int64_t n, float p, uint64_t key)
{
    if (be->dropout_act)
        be->dropout_act(out, x, n, p, key);
    else
        be->dropout_forward((float *)out, (const float *)x, n, p, key);
}

/* The CPU backend (OpenBLAS sgemm, plain C loops for the rest). */
const backend_t *backend_cpu(void);

/* The CPU backend with the frozen base matrices in bf16 ("dtype": "bf16"):
 * bf16 x bf16 GEMMs with fp32 accumulation (bf16gemm.h: AMX, AVX512-BF16 or
 * portable C) for the projections and lm_head, the embedding held in bf16,
 * everything else the cpu backend's. */
const backend_t *backend_cpu_bf16(void);
/* Bytes of base weights its weights_upload holds for dev. */
size_t backend_cpu_bf16_weights_bytes(const llama_weights_t *dev);
/* Best of three after a warm-up: GFLOP/s of an (n, n) x (n, n) product on
 * the cpu backends' threads, by sgemm or (bf16) the cpu-bf16 weight kernel
 * (benchmarks: what a step's GEMMs could reach). */
double backend_cpu_gemm_rate(bool bf16, int n);

/* The counter-based generator behind dropout: uniform in [0,1) from
 * (key, index); splitmix64 finaliser of key + index * golden ratio. */
static inline double backend_hash_uniform(uint64_t key, uint64_t index)
{
    uint64_t z = key + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

#endif
