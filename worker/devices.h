/*
 * worker/devices.h: the devices one node offers to the scheduler, found once at
 * start-up from one of three sources: NVIDIA GPUs through NVML (loaded with
 * dlopen at run time, so a node without the driver still runs ftworker), CPU
 * devices (--cpu-devices), or emulated GPUs (--emulate-gpus) for testing the
 * scheduler without hardware.
 *
 * Invariants: indexes are 0..n-1 in table order; uuids are unique on the node;
 * real GPUs are never mixed with emulated ones (when NVML finds a GPU the
 * emulation and CPU flags are ignored with a warning).
 * Costs: discovery is a few NVML calls per GPU; the energy hook one call.
 */
#ifndef FT_WORKER_DEVICES_H
#define FT_WORKER_DEVICES_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "ft/common.h"

#define WDEV_MAX 64                   /* devices per node, as in docs/protocol.md */
#define WDEV_UUID_MAX 96              /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define WDEV_MODEL_MAX 96             /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define WDEV_CPU_MAX 64               /* largest --cpu-devices */
#define WDEV_EMU_MAX 64               /* largest --emulate-gpus */
#define WDEV_EMU_MEM_GB_MAX 4096.0    /* largest --gpu-mem-gb */
#define WDEV_EMU_MODEL "emulated-gpu" /* --gpu-model when not given */
#define WDEV_EMU_MEM_GB 80.0          /* --gpu-mem-gb when not given, GiB */

typedef enum { WDEV_GPU = 0, WDEV_EMULATED, WDEV_CPU } wdev_kind_t;

typedef struct {
    int index;                  /* position on this node, 0-based */
    char uuid[WDEV_UUID_MAX];   /* "GPU-…" from NVML, "emu-NODE-i", "cpu-NODE-i" */
    char model[WDEV_MODEL_MAX]; /* NVML name, --gpu-model, or "cpu" */
    int64_t memory_mb;          /* total device memory in MiB; host RAM share for cpu */
    wdev_kind_t kind;           /* where it came from */
    int kind_index;    /* index among devices of its kind (CUDA_VISIBLE_DEVICES for emulated) */
    void *nvml_handle; /* nvmlDevice_t for WDEV_GPU, else NULL */
} wdev_t;

/* What the command line asked for. */
typedef struct {
    const char *node_name;    /* used in uuids of cpu and emulated devices */
    int cpu_devices;          /* --cpu-devices N; -1 when not given */
    int emulate_gpus;         /* --emulate-gpus N; 0 when not given */
    const char *gpu_model;    /* --gpu-model for emulated GPUs; NULL = WDEV_EMU_MODEL */
    double gpu_mem_gb;        /* --gpu-mem-gb for emulated GPUs, GiB; 0 = WDEV_EMU_MEM_GB */
    const char *nvml_library; /* library to dlopen; NULL = "libnvidia-ml.so.1", "" = skip NVML */
} wdev_opts_t;

typedef struct wdev_set wdev_set_t;

/* Discovers devices. NULL with err set when the options are inconsistent
 * (e.g. --gpu-model without --emulate-gpus) or no device results. */
wdev_set_t *wdev_set_new(const wdev_opts_t *opts, ft_err_t *err);
void wdev_set_destroy(wdev_set_t **set);

int wdev_count(const wdev_set_t *set);
/* NULL when index is out of range. */
const wdev_t *wdev_get(const wdev_set_t *set, int index);
/* True when NVML was loaded and initialised (whether or not it found GPUs). */
bool wdev_nvml_loaded(const wdev_set_t *set);

const char *wdev_kind_name(wdev_kind_t kind); /* "gpu", "emulated", "cpu" */
/* The hello "devices" array: [{"index","uuid","model","memory_mb","kind"}]. */
cJSON *wdev_to_json(const wdev_set_t *set);
/* One line per device for the log at start-up. */
void wdev_log(const wdev_set_t *set);

/* Energy hook for billing (a later issue): total energy the device has used
 * since its driver loaded, in millijoules (CPU devices: the package's RAPL
 * counter divided by the node's CPU devices). Returns 0 and sets *mj; 1 when the
 * device cannot report energy (emulated, pre-Volta GPU, RAPL unreadable); -1 on an NVML
 * error (err set). Callers take deltas and treat a decrease as a new epoch. */
int wdev_energy_mj(const wdev_set_t *set, int index, uint64_t *mj, ft_err_t *err);
/* Power draw now, milliwatts (NVML), for GPUs without the energy counter: the
 * caller integrates samples. 0, 1 (cannot report) or -1 as wdev_energy_mj. */
int wdev_power_mw(const wdev_set_t *set, int index, uint64_t *mw, ft_err_t *err);

#endif
