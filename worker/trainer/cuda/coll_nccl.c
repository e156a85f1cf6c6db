/*
 * coll_nccl.c: coll.h over NCCL with non-blocking communicators and the
 * fail-fast wait of nccl_wait.c (see coll_nccl.h for the contract).
 *
 * Invariants: after an abort (error or time-out) the communicator is gone
 * and `dead` is set; no NCCL call is made on it again. Sums are ncclSum: the
 * training loop already scales each micro-batch by 1 / (global target
 * count), so the summed gradient is the global mean (train.h).
 * Costs: a ring all-reduce moves about 2 * n * (world-1)/world elements per
 * rank; host buffers add two PCIe copies of n elements.
 */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll_nccl.h"
#include "cuda_backend.h"
#include "nccl_wait.h"
#include "rdv.h"

typedef struct {
    ncclComm_t comm;     /* NULL before init or after abort */
    cudaStream_t stream; /* the cuda backend's training stream (borrowed) */
    double timeout_s;    /* per call */
    bool dead;           /* aborted: every call fails */
    void *stage;         /* device staging for host buffers */
    size_t stage_bytes;  /* its size */
    ft_err_t err;        /* last failure */
} nccl_impl_t;

/* ---- nccl_wait glue ---- */

static int comm_state(void *ctx, char *msg, size_t len)
{
    nccl_impl_t *im = ctx;
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(im->comm, &async);
    if (r != ncclSuccess) {
        snprintf(msg, len, "ncclCommGetAsyncError: %s", ncclGetErrorString(r));
        return -1;
    }
    if (async == ncclInProgress)
        return 1;
    if (async != ncclSuccess) {
        snprintf(msg, len, "%s (%s)", ncclGetErrorString(async), ncclGetLastError(im->comm));
        return -1;
    }
    return 0;
}

static int work_state(void *ctx, char *msg, size_t len)
{
    nccl_impl_t *im = ctx;
    cudaError_t e = cudaStreamQuery(im->stream);
    if (e == cudaSuccess)
        return 0;
    if (e == cudaErrorNotReady)
        return 1;
    snprintf(msg, len, "cudaStreamQuery: %s", cudaGetErrorString(e));
    return -1;
}

static void comm_abort(void *ctx)
{
    nccl_impl_t *im = ctx;
    if (im->comm)
        ncclCommAbort(im->comm);
    im->comm = NULL;
    im->dead = true;
}

static double mono_now(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void short_pause(void *ctx)
{
    struct timespec ts = {0, 50 * 1000}; /* 50 us: far below a step, cheap on a core */
    (void)ctx;
    nanosleep(&ts, NULL);
}

static const nccl_wait_ops_t wait_init = {comm_state, NULL, comm_abort, mono_now, short_pause};
static const nccl_wait_ops_t wait_work = {comm_state, work_state, comm_abort, mono_now,
                                          short_pause};

/* Checks the immediate result of a non-blocking NCCL call, then waits. */
static int finish(nccl_impl_t *im, ncclResult_t r, const char *what)
{
    if (r != ncclSuccess && r != ncclInProgress) {
        ft_err_set(&im->err, FT_EINTERNAL, "nccl: '%s': %s (%s)", what, ncclGetErrorString(r),
                   ncclGetLastError(im->comm));
        comm_abort(im);
        ft_error("%s", im->err.msg);
        return -1;
    }
    if (nccl_wait(&wait_work, im, what, im->timeout_s, &im->err) != NCCL_WAIT_DONE) {
        ft_error("%s", im->err.msg);
        return -1;
    }
    return 0;
}

static bool is_device_ptr(const void *p)
{
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* Runs op on buf (bytes), through the staging buffer when buf is host memory. */
typedef ncclResult_t (*nccl_op_fn)(nccl_impl_t *im, void *dbuf, void *arg);

static int run_op(nccl_impl_t *im, void *buf, size_t bytes, nccl_op_fn op, void *arg,
                  const char *what)
{
    if (im->dead) {
        ft_err_set(&im->err, FT_EUNAVAIL, "nccl: '%s': communicator was aborted", what);
        return -1;
    }
    if (bytes == 0)
        return 0;
    bool host = !is_device_ptr(buf);
    void *d = buf;
    if (host) {
        if (im->stage_bytes < bytes) {
            cudaFree(im->stage);
            im->stage = NULL;
            im->stage_bytes = 0;
            if (cudaMalloc(&im->stage, bytes) != cudaSuccess) {
                cudaGetLastError();
                ft_err_set(&im->err, FT_EINTERNAL,
                           "nccl: '%s': no device memory for %zu "
                           "staging bytes",
                           what, bytes);
                return -1;
            }
            im->stage_bytes = bytes;
        }
        d = im->stage;
        if (cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, im->stream) != cudaSuccess) {
            ft_err_set(&im->err, FT_EINTERNAL, "nccl: '%s': staging copy failed: %s", what,
                       cudaGetErrorString(cudaGetLastError()));
            return -1;
        }
    }
    if (finish(im, op(im, d, arg), what) < 0)
        return -1;
    if (host) {
        if (cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, im->stream) != cudaSuccess ||
            cudaStreamSynchronize(im->stream) != cudaSuccess) {
            ft_err_set(&im->err, FT_EINTERNAL, "nccl: '%s': copy back failed: %s", what,
                       cudaGetErrorString(cudaGetLastError()));
            return -1;
        }
    }
    return 0;
}

typedef struct {
    size_t n;            /* elements */
    ncclDataType_t type; /* element type */
    int root;            /* broadcast root */
} op_arg_t;

static ncclResult_t op_allreduce(nccl_impl_t *im, void *d, void *arg)
{
    op_arg_t *a = arg;
    return ncclAllReduce(d, d, a->n, a->type, ncclSum, im->comm, im->stream);
}

static ncclResult_t op_broadcast(nccl_impl_t *im, void *d, void *arg)
{
    op_arg_t *a = arg;
    return ncclBroadcast(d, d, a->n, a->type, a->root, im->comm, im->stream);
}

static int nccl_allreduce_f32(coll_t *c, float *buf, size_t n)
{
    op_arg_t a = {n, ncclFloat32, 0};
    char what[64];
    snprintf(what, sizeof(what), "all-reduce of %zu floats", n);
    return run_op(c->impl, buf, n * sizeof(float), op_allreduce, &a, what);
}

static int nccl_allreduce_f64(coll_t *c, double *buf, size_t n)
{
    op_arg_t a = {n, ncclFloat64, 0};
    char what[64];
    snprintf(what, sizeof(what), "all-reduce of %zu doubles", n);
    return run_op(c->impl, buf, n * sizeof(double), op_allreduce, &a, what);
}

static int nccl_broadcast(coll_t *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->world)
        return -1;
    op_arg_t a = {bytes, ncclUint8, root};
    char what[64];
    snprintf(what, sizeof(what), "broadcast of %zu bytes from rank %d", bytes, root);
    return run_op(c->impl, buf, bytes, op_broadcast, &a, what);
}

static int nccl_barrier(coll_t *c)
{
    float one = 1.0f;
    return nccl_allreduce_f32(c, &one, 1);
}

static void nccl_destroy(coll_t *c)
{
    nccl_impl_t *im = c->impl;
    if (im) {
        if (im->comm && !im->dead) {
            /* finalize flushes outstanding work; bounded by the same deadline */
            ncclResult_t r = ncclCommFinalize(im->comm);
            if ((r == ncclSuccess || r == ncclInProgress) &&
                nccl_wait(&wait_init, im, "finalize", im->timeout_s, &im->err) == NCCL_WAIT_DONE)
                ncclCommDestroy(im->comm);
            else if (im->comm)
                comm_abort(im);
        }
        cudaFree(im->stage);
        free(im);
    }
    free(c);
}

/* ---- set-up ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int coll_nccl_make_id(char *buf, size_t len, ft_err_t *err)
{
    ncclUniqueId id;
    _Static_assert(sizeof(id.internal) * 2 == COLL_NCCL_ID_HEX, "ncclUniqueId size");
    if (len <= COLL_NCCL_ID_HEX) {
        ft_err_set(err, FT_EINTERNAL, "nccl id buffer too small (%zu bytes)", len);
        return -1;
    }
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
        ft_err_set(err, FT_EINTERNAL, "ncclGetUniqueId: %s", ncclGetErrorString(r));
        return -1;
    }
    for (size_t i = 0; i < sizeof(id.internal); i++)
        snprintf(buf + 2 * i, 3, "%02x", (unsigned char)id.internal[i]);
    return 0;
}

coll_t *coll_nccl_new(const coll_nccl_opts_t *o, ft_err_t *err)
{
    coll_t *c = NULL;
    nccl_impl_t *im = NULL;
    ncclUniqueId id;
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world) {
        ft_err_set(err, FT_EBADFIELD, "'rank': %d is outside world %d", o->rank, o->world);
        return NULL;
    }
    if (!o->id_hex || strlen(o->id_hex) != COLL_NCCL_ID_HEX) {
        ft_err_set(err, FT_EBADFIELD, "'nccl_id': expected %d hex characters, got %zu",
                   COLL_NCCL_ID_HEX, o->id_hex ? strlen(o->id_hex) : (size_t)0);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(id.internal); i++) {
        int hi = hexval(o->id_hex[2 * i]), lo = hexval(o->id_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            ft_err_set(err, FT_EBADFIELD, "'nccl_id': character %zu is not a hex digit",
                       2 * i + (hi < 0 ? 0 : 1));
            return NULL;
        }
        id.internal[i] = (char)(hi * 16 + lo);
    }
    c = calloc(1, sizeof(*c));
    im = calloc(1, sizeof(*im));
    if (!c || !im) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto fail;
    }
    c->impl = im;
    im->timeout_s = o->timeout_s;
    if (cudaSetDevice(o->device) != cudaSuccess) {
        ft_err_set(err, FT_EINTERNAL, "cannot select CUDA device %d: %s", o->device,
                   cudaGetErrorString(cudaGetLastError()));
        goto fail;
    }
    /* the collectives must run on the training stream, so that an all-reduce
     * is ordered after the backward pass: start the backend now if the
     * collective comes first (ft-train run opens it before the trainer) */
    if (!cuda_backend_stream() && !backend_cuda(o->device, err))
        goto fail;
    im->stream = (cudaStream_t)cuda_backend_stream();
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&im->comm, o->world, id, o->rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        ft_err_set(err, FT_EINTERNAL, "ncclCommInitRankConfig (rank %d of %d): %s", o->rank,
                   o->world, ncclGetErrorString(r));
        if (im->comm)
            comm_abort(im);
        goto fail;
    }
    char what[64];
    snprintf(what, sizeof(what), "init of rank %d of %d", o->rank, o->world);
    if (nccl_wait(&wait_init, im, what, o->timeout_s, err) != NCCL_WAIT_DONE)
        goto fail;
    c->name = "nccl";
    c->rank = o->rank;
    c->world = o->world;
    c->allreduce_sum_f32 = nccl_allreduce_f32;
    c->allreduce_sum_f64 = nccl_allreduce_f64;
    c->broadcast = nccl_broadcast;
    c->barrier = nccl_barrier;
    c->destroy = nccl_destroy;
    return c;
fail:
    free(im);
    free(c);
    return NULL;
}

const char *coll_nccl_error(const coll_t *c)
{
    const nccl_impl_t *im = c->impl;
    return im ? im->err.msg : "";
}

bool coll_nccl_broken(const coll_t *c)
{
    return c && strcmp(c->name, "nccl") == 0 && ((const nccl_impl_t *)c->impl)->dead;
}

coll_t *coll_nccl_open(int event_fd, int rank, int world, int device, ft_err_t *err)
{
    if (world == 1) {
        coll_t *c = coll_single();
        if (!c)
            ft_err_set(err, FT_EINTERNAL, "out of memory");
        return c;
    }
    double timeout = COLL_NCCL_DEFAULT_TIMEOUT_S;
    const char *tv = getenv("FT_NCCL_TIMEOUT_S");
    if (tv) {
        char *end;
        timeout = strtod(tv, &end);
        if (*tv == '\0' || *end != '\0' || !(timeout > 0.0 && timeout <= 86400.0)) {
            ft_err_set(err, FT_EBADFIELD,
                       "'FT_NCCL_TIMEOUT_S': expected seconds in (0, 86400], "
                       "got '%.40s'",
                       tv);
            return NULL;
        }
    }
    coll_t *c = NULL;
    char **blobs = NULL;
    char hex[COLL_NCCL_ID_HEX + 1], b64[COLL_NCCL_ID_HEX]; /* base64 of 128 bytes: 172 chars */
    unsigned char raw[COLL_NCCL_ID_HEX / 2];
    snprintf(b64, sizeof(b64), "AA=="); /* ranks > 0: a placeholder byte */
    rdv_t *r = rdv_new(event_fd, rank, world, err);
    if (!r)
        return NULL;
    if (rank == 0) {
        if (coll_nccl_make_id(hex, sizeof(hex), err) < 0)
            goto out;
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
        if (rdv_b64_encode(raw, sizeof(raw), b64, sizeof(b64)) < 0) {
            ft_err_set(err, FT_EINTERNAL, "cannot encode the nccl id");
            goto out;
        }
    }
    if (rdv_exchange(r, b64, &blobs, err) < 0)
        goto out;
    if (rdv_b64_decode(blobs[0], raw, sizeof(raw)) != (long)sizeof(raw)) {
        ft_err_set(err, FT_EBADFIELD,
                   "rendezvous: rank 0's blob is not an nccl id (%zu "
                   "base64 characters)",
                   strlen(blobs[0]));
        goto out;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    coll_nccl_opts_t o = {
        .rank = rank, .world = world, .device = device, .id_hex = hex, .timeout_s = timeout};
    c = coll_nccl_new(&o, err);
out:
    if (blobs)
        rdv_blobs_free(&blobs, world);
    rdv_destroy(&r);
    return c;
}
