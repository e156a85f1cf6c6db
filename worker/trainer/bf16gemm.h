/*
 * bf16gemm.h: GEMMs against frozen base weights held in bf16 (issue #3).
 *
 * A frozen W (rows, cols) = (out features, in features) is packed once into
 * the two VNNI-blocked layouts its products need (W^T for the forward pass,
 * W for the backward pass); the activation operand stays fp32 in the caller
 * and is rounded to bf16 inside each call. Products accumulate in fp32.
 *
 * Kernels: "amx" (Intel AMX tiles), "avx512bf16" (VDPBF16PS) and "generic"
 * (plain C, any x86-64); the best one the CPU and kernel allow is chosen once
 * per process, FT_BF16_KERNEL=amx|avx512bf16|generic overrides it.
 *
 * Rounding: fp32 -> bf16 is round-to-nearest-even with NaN kept NaN. The
 * amx and avx512bf16 kernels use the CPU's conversion and dot products,
 * which treat fp32 and bf16 subnormals (|x| < 1.2e-38) as zero; the generic
 * kernel keeps them. Nothing else differs beyond fp32 summation order.
 *
 * Threads: every function is safe to call from several threads at once on
 * disjoint parts of C; each thread keeps its own scratch (static TLS, 128
 * KiB). Results never depend on the split: a column range or a range of rows
 * (A + m0 * lda, C + m0 * ldc, fewer M) gives exactly the bits of one call.
 * Splitting ROWS is the faster way for two threads: each converts only its
 * rows of A, where with column ranges every thread converts all of A (2
 * threads on 1024x512x512: about 2.1 TFLOP/s by rows, 1.6 by columns). Split
 * columns on multiples of 32: a 16- or 32-column block shared by two ranges
 * is computed by both.
 *
 * Cost of one call: 2 * M * K * (n1 - n0) flop, plus converting all of A
 * (M * K elements, where K = cols for nt and rows for nn) once per 1 MiB
 * panel of packed W (1024 columns at K = 512: 8 times for all 8192 of the
 * lm_head), overlapped with the tile instructions on AMX.
 *
 * Interface addition beyond the brief's: bf16_gemm_use_kernel() (tests).
 */
#ifndef FT_BF16GEMM_H
#define FT_BF16GEMM_H

#include <stddef.h>
#include <stdint.h>

/* A frozen (rows, cols) matrix held as bf16 in the kernels' packed layouts. */
typedef struct bf16_mat bf16_mat_t;

/* Packs W (rows, cols), row-major fp32, rows = out features, cols = in
 * features, rounding to nearest even. NULL on allocation failure or when
 * rows or cols is below 1 (errno ENOMEM or EINVAL). Cost: O(rows * cols),
 * 4 bytes per element held (two bf16 layouts, padded to 16 x 32 blocks). */
bf16_mat_t *bf16_mat_new(const float *W, int rows, int cols);
void bf16_mat_destroy(bf16_mat_t **m);
size_t bf16_mat_bytes(const bf16_mat_t *m); /* memory held */
int bf16_mat_rows(const bf16_mat_t *m);
int bf16_mat_cols(const bf16_mat_t *m);

/* Forward: C(M, rows) = alpha * bf16(A)(M, cols) * W^T + beta * C, only the
 * output columns [n0, n1) (0 <= n0 <= n1 <= rows). A is fp32 row-major with
 * leading dimension lda >= cols, C has ldc >= rows. beta 0 never reads C. */
void bf16_gemm_nt(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1);
/* Backward: C(M, cols) = alpha * bf16(A)(M, rows) * W + beta * C, only the
 * output columns [n0, n1) of cols; lda >= rows, ldc >= cols. */
void bf16_gemm_nn(int M, const float *A, int lda, const bf16_mat_t *W, float alpha, float beta,
                  float *C, int ldc, int n0, int n1);

/* The kernel in use: "amx", "avx512bf16" or "generic". */
const char *bf16_gemm_kernel(void);
/* Switches to kernel `name` (tests and benchmarks, not while other calls run).
 * 0 when it is in use, -1 when the name is unknown or the CPU lacks it
 * (the kernel in use stays). */
int bf16_gemm_use_kernel(const char *name);

/* fp32 <-> bf16 (round-to-nearest-even, NaN kept NaN): bf16.h's
 * ft_bf16_round and ft_bf16_widen, which the kernels use too. */

#endif
