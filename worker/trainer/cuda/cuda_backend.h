/*
 * cuda_backend.h: the CUDA implementation of backend.h (cuBLAS GEMMs plus
 * the kernels of cuda_backend.cu), for one device per process.
 *
 * Precision (docs/gpu.md): base weights and the activations marked [act] in
 * backend.h live on the device in bf16 (act_bytes 2); every GEMM accumulates
 * in fp32; the residual stream, activation gradients, LoRA parameters, their
 * gradients and AdamW moments are fp32; LoRA GEMMs with two fp32 operands
 * use TF32 tensor cores (FT_CUDA_TF32=0 turns TF32 off). Every op is queued
 * on one stream; errors
 * are sticky: the first failed CUDA/cuBLAS call is kept with its file:line
 * and reported by sync() and cuda_backend_error().
 * Memory: plain cudaMalloc (no managed memory); scratch buffers grow only on
 * the first step of a fixed shape, so the high-water mark is reached at once.
 */
#ifndef FT_CUDA_BACKEND_H
#define FT_CUDA_BACKEND_H

#include <stdbool.h>
#include <stdio.h>

#include "backend.h"
#include "ft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices this process sees; 0 when there is no driver, no
 * device, or CUDA_VISIBLE_DEVICES hides them all (never an error). */
int cuda_backend_device_count(void);

/* Selects device `device` (an index among the visible ones), creates the
 * stream and the cuBLAS handle. NULL with err when that fails. Calling it
 * again returns the same table (one device per process). */
const backend_t *backend_cuda(int device, ft_err_t *err);

/* The training stream (a cudaStream_t), for the NCCL collectives; NULL
 * before backend_cuda succeeded. */
void *cuda_backend_stream(void);

/* The first error the backend met ("" when none). */
const char *cuda_backend_error(void);

/* Bytes of device memory held by the backend's allocations now, and the
 * device's free and total memory (cudaMemGetInfo); -1 on failure. */
size_t cuda_backend_bytes_now(void);
int cuda_backend_mem_info(size_t *free_b, size_t *total_b);

/* Attention mode: "flash" (default: the fused bf16 tensor-core kernels,
 * online softmax, nothing of size T x T stored, where head_dim is 64 or 128
 * and the device grants the shared memory; the materialised path otherwise)
 * or "materialised" (always cuBLAS bf16 GEMMs over the stored (B, nh, T, T)
 * bf16 probabilities). The environment variable FT_CUDA_ATTN sets it at
 * start. It takes effect at the next attention_plan (model_new): a model
 * keeps the path it was planned with. -1 for an unknown name. */
int cuda_backend_set_attention(const char *mode);

/* The device's name and compute capability, for reports. */
int cuda_backend_device_name(char *buf, size_t len, int *major, int *minor);

/* Device time per GEMM shape, for the benchmark: with on, every GEMM is
 * timed (and waited for) and the table restarts; the report prints it to f,
 * largest first. */
int cuda_backend_gemm_profile(bool on);
void cuda_backend_gemm_report(FILE *f);

#ifdef __cplusplus
}
#endif

#endif
