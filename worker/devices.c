/*
 * worker/devices.c: device discovery (NVML, CPU, emulated) and the energy hook.
 *
 * NVML is opened with dlopen and its few entry points looked up by name; the
 * types below are the ABI subset we use (opaque handle, int return code, the
 * v1 memory struct), so no nvml.h is needed at build time. A GPU that NVML
 * counts but will not hand out (NO_PERMISSION, lost) is skipped with a warning
 * rather than failing the node.
 * Costs: one dlopen and O(GPUs) NVML calls at start-up; nothing afterwards.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices.h"

/* ---- the NVML ABI subset ---- */
typedef int nvml_return_t;                 /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef struct nvml_device *nvml_device_t; /* nvmlDevice_t: opaque */
typedef struct {
    unsigned long long total; /* bytes */
    unsigned long long free;  /* bytes */
    unsigned long long used;  /* bytes */
} nvml_memory_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_SUPPORTED 3

typedef struct {
    nvml_return_t (*init)(void);
    nvml_return_t (*shutdown)(void);
    const char *(*error_string)(nvml_return_t);
    nvml_return_t (*get_count)(unsigned int *);
    nvml_return_t (*get_handle)(unsigned int, nvml_device_t *);
    nvml_return_t (*get_uuid)(nvml_device_t, char *, unsigned int);
    nvml_return_t (*get_name)(nvml_device_t, char *, unsigned int);
    nvml_return_t (*get_memory)(nvml_device_t, nvml_memory_t *);
    nvml_return_t (*get_energy)(nvml_device_t, unsigned long long *); /* optional */
    nvml_return_t (*get_power)(nvml_device_t, unsigned int *);        /* optional, mW */
} nvml_api_t;

/* Symbol table: offset of the pointer in nvml_api_t, names to try in order. */
static const struct {
    size_t offset;        /* offsetof(nvml_api_t, field) */
    const char *names[2]; /* first found wins; NULL ends */
    bool required;        /* discovery fails without it */
} nvml_symbols[] = {
    {offsetof(nvml_api_t, init), {"nvmlInit_v2", "nvmlInit"}, true},
    {offsetof(nvml_api_t, shutdown), {"nvmlShutdown", NULL}, true},
    {offsetof(nvml_api_t, error_string), {"nvmlErrorString", NULL}, true},
    {offsetof(nvml_api_t, get_count), {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"}, true},
    {offsetof(nvml_api_t, get_handle),
     {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"},
     true},
    {offsetof(nvml_api_t, get_uuid), {"nvmlDeviceGetUUID", NULL}, true},
    {offsetof(nvml_api_t, get_name), {"nvmlDeviceGetName", NULL}, true},
    {offsetof(nvml_api_t, get_memory), {"nvmlDeviceGetMemoryInfo", NULL}, true},
    {offsetof(nvml_api_t, get_energy), {"nvmlDeviceGetTotalEnergyConsumption", NULL}, false},
    {offsetof(nvml_api_t, get_power), {"nvmlDeviceGetPowerUsage", NULL}, false},
};

struct wdev_set {
    wdev_t devs[WDEV_MAX]; /* the table, index order */
    int n;                 /* devices in devs */
    void *nvml_lib;        /* dlopen handle, NULL when NVML is not in use */
    bool nvml_inited;      /* nvmlInit succeeded; shutdown owed */
    nvml_api_t nvml;       /* entry points, valid when nvml_lib != NULL */
};

static const char *const kind_names[] = {
    [WDEV_GPU] = "gpu",
    [WDEV_EMULATED] = "emulated",
    [WDEV_CPU] = "cpu",
};

const char *wdev_kind_name(wdev_kind_t kind)
{
    if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
        return "unknown";
    return kind_names[kind];
}

/* Keeps printable ASCII only, so that NVML strings are safe in JSON and logs. */
static void copy_printable(char *dst, size_t len, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 1 < len; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[j] = '\0';
}

static const char *nvml_err(const wdev_set_t *set, nvml_return_t rc)
{
    const char *s = set->nvml.error_string ? set->nvml.error_string(rc) : NULL;
    return s ? s : "unknown NVML error";
}

/* Loads NVML and appends its GPUs. Returns the number of GPUs added; a
 * missing library or a failed init is not an error (0 GPUs). */
static int nvml_discover(wdev_set_t *set, const char *libname)
{
    set->nvml_lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!set->nvml_lib) {
        ft_debug("NVML not loaded from '%s': %s", libname, dlerror());
        return 0;
    }
    for (size_t i = 0; i < sizeof(nvml_symbols) / sizeof(nvml_symbols[0]); i++) {
        void *sym = NULL;
        for (int k = 0; k < 2 && nvml_symbols[i].names[k] && !sym; k++)
            sym = dlsym(set->nvml_lib, nvml_symbols[i].names[k]);
        if (!sym && nvml_symbols[i].required) {
            ft_warn("NVML library '%s' lacks '%s'; not using it", libname,
                    nvml_symbols[i].names[0]);
            goto fail;
        }
        memcpy((char *)&set->nvml + nvml_symbols[i].offset, &sym, sizeof(sym));
    }
    nvml_return_t rc = set->nvml.init();
    if (rc != NVML_SUCCESS) {
        ft_warn("NVML init failed: %s", nvml_err(set, rc));
        goto fail;
    }
    set->nvml_inited = true;
    unsigned int count = 0;
    rc = set->nvml.get_count(&count);
    if (rc != NVML_SUCCESS) {
        ft_warn("NVML device count failed: %s", nvml_err(set, rc));
        return 0;
    }
    int added = 0;
    for (unsigned int i = 0; i < count && set->n < WDEV_MAX; i++) {
        nvml_device_t h = NULL;
        char uuid[WDEV_UUID_MAX] = "", name[WDEV_MODEL_MAX] = "";
        nvml_memory_t mem = {0};
        rc = set->nvml.get_handle(i, &h);
        if (rc == NVML_SUCCESS)
            rc = set->nvml.get_uuid(h, uuid, sizeof(uuid));
        if (rc == NVML_SUCCESS)
            rc = set->nvml.get_name(h, name, sizeof(name));
        if (rc == NVML_SUCCESS)
            rc = set->nvml.get_memory(h, &mem);
        if (rc != NVML_SUCCESS) {
            ft_warn("skipping GPU %u: %s", i, nvml_err(set, rc));
            continue;
        }
        wdev_t *d = &set->devs[set->n];
        d->index = set->n;
        d->kind = WDEV_GPU;
        d->kind_index = added;
        d->nvml_handle = h;
        copy_printable(d->uuid, sizeof(d->uuid), uuid);
        copy_printable(d->model, sizeof(d->model), name);
        d->memory_mb = (int64_t)(mem.total / (1024 * 1024));
        set->n++;
        added++;
    }
    return added;
fail:
    dlclose(set->nvml_lib);
    set->nvml_lib = NULL;
    memset(&set->nvml, 0, sizeof(set->nvml));
    return 0;
}

static int64_t host_memory_mb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return 0;
    return (int64_t)pages * page / (1024 * 1024);
}

static void add_device(wdev_set_t *set, wdev_kind_t kind, int kind_index, const char *node,
                       const char *model, int64_t memory_mb)
{
    wdev_t *d = &set->devs[set->n];
    d->index = set->n;
    d->kind = kind;
    d->kind_index = kind_index;
    snprintf(d->uuid, sizeof(d->uuid), "%s-%s-%d", kind == WDEV_CPU ? "cpu" : "emu", node,
             kind_index);
    ft_strlcpy(d->model, model, sizeof(d->model));
    d->memory_mb = memory_mb;
    set->n++;
}

static int check_opts(const wdev_opts_t *o, ft_err_t *err)
{
    if (!o->node_name || !*o->node_name) {
        ft_err_set(err, FT_EBADFIELD, "node name is empty");
        return -1;
    }
    if (o->cpu_devices > WDEV_CPU_MAX || o->cpu_devices < -1) {
        ft_err_set(err, FT_EBADFIELD, "--cpu-devices: expected an integer in [0, %d]",
                   WDEV_CPU_MAX);
        return -1;
    }
    if (o->emulate_gpus < 0 || o->emulate_gpus > WDEV_EMU_MAX) {
        ft_err_set(err, FT_EBADFIELD, "--emulate-gpus: expected an integer in [0, %d]",
                   WDEV_EMU_MAX);
        return -1;
    }
    if (o->emulate_gpus > 0) {
        if (o->gpu_model && strlen(o->gpu_model) >= WDEV_MODEL_MAX) {
            ft_err_set(err, FT_ETOOLARGE, "--gpu-model: longer than %d bytes", WDEV_MODEL_MAX - 1);
            return -1;
        }
        for (const char *p = o->gpu_model ? o->gpu_model : ""; *p; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
                ft_err_set(err, FT_EBADFIELD, "--gpu-model: '%s' has a non-printable byte",
                           ft_sanitize(o->gpu_model, 64));
                return -1;
            }
        }
        if (!(o->gpu_mem_gb >= 0 && o->gpu_mem_gb <= WDEV_EMU_MEM_GB_MAX)) {
            ft_err_set(err, FT_EBADFIELD, "--gpu-mem-gb: expected a number in (0, %.0f]",
                       WDEV_EMU_MEM_GB_MAX);
            return -1;
        }
    } else if ((o->gpu_model && *o->gpu_model) || o->gpu_mem_gb != 0) {
        ft_err_set(err, FT_EBADFIELD, "--gpu-model and --gpu-mem-gb need --emulate-gpus");
        return -1;
    }
    if ((o->emulate_gpus + (o->cpu_devices > 0 ? o->cpu_devices : 0)) > WDEV_MAX) {
        ft_err_set(err, FT_EBADFIELD, "more than %d devices requested", WDEV_MAX);
        return -1;
    }
    return 0;
}

wdev_set_t *wdev_set_new(const wdev_opts_t *opts, ft_err_t *err)
{
    wdev_set_t *set = NULL;
    if (check_opts(opts, err) < 0)
        goto fail;
    set = calloc(1, sizeof(*set));
    if (!set) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto fail;
    }
    const char *lib = opts->nvml_library ? opts->nvml_library : "libnvidia-ml.so.1";
    int gpus = *lib ? nvml_discover(set, lib) : 0;
    if (gpus > 0) {
        if (opts->emulate_gpus > 0 || opts->cpu_devices >= 0)
            ft_warn("NVML found %d GPU(s): ignoring --emulate-gpus and --cpu-devices", gpus);
        return set;
    }
    const char *model = opts->gpu_model && *opts->gpu_model ? opts->gpu_model : WDEV_EMU_MODEL;
    double mem_gb = opts->gpu_mem_gb > 0 ? opts->gpu_mem_gb : WDEV_EMU_MEM_GB;
    for (int i = 0; i < opts->emulate_gpus; i++)
        add_device(set, WDEV_EMULATED, i, opts->node_name, model, (int64_t)(mem_gb * 1024.0));
    int ncpu = opts->cpu_devices;
    if (ncpu < 0)
        ncpu = opts->emulate_gpus > 0 ? 0 : 1; /* default: one CPU device */
    int64_t share = ncpu > 0 ? host_memory_mb() / ncpu : 0;
    for (int i = 0; i < ncpu; i++)
        add_device(set, WDEV_CPU, i, opts->node_name, "cpu", share);
    if (set->n == 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "no devices: no GPU found and --cpu-devices 0 without --emulate-gpus");
        goto fail;
    }
    return set;
fail:
    wdev_set_destroy(&set);
    return NULL;
}

void wdev_set_destroy(wdev_set_t **pset)
{
    if (!pset || !*pset)
        return;
    wdev_set_t *set = *pset;
    if (set->nvml_inited && set->nvml.shutdown)
        set->nvml.shutdown();
    if (set->nvml_lib)
        dlclose(set->nvml_lib);
    free(set);
    *pset = NULL;
}

int wdev_count(const wdev_set_t *set)
{
    return set->n;
}

const wdev_t *wdev_get(const wdev_set_t *set, int index)
{
    if (index < 0 || index >= set->n)
        return NULL;
    return &set->devs[index];
}

bool wdev_nvml_loaded(const wdev_set_t *set)
{
    return set->nvml_inited;
}

cJSON *wdev_to_json(const wdev_set_t *set)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return NULL;
    for (int i = 0; i < set->n; i++) {
        const wdev_t *d = &set->devs[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddNumberToObject(o, "index", d->index) ||
            !cJSON_AddStringToObject(o, "uuid", d->uuid) ||
            !cJSON_AddStringToObject(o, "model", d->model) ||
            !cJSON_AddNumberToObject(o, "memory_mb", (double)d->memory_mb) ||
            !cJSON_AddStringToObject(o, "kind", wdev_kind_name(d->kind))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

void wdev_log(const wdev_set_t *set)
{
    for (int i = 0; i < set->n; i++) {
        const wdev_t *d = &set->devs[i];
        ft_info("device %d: %s%s '%s' uuid '%s' %lld MiB", d->index, wdev_kind_name(d->kind),
                d->kind == WDEV_EMULATED ? " (EMULATED, no real GPU)" : "", d->model, d->uuid,
                (long long)d->memory_mb);
    }
}

/* CPU devices: the package's RAPL counter (FT_RAPL_ENERGY overrides the
 * path, for tests), shared equally by the node's CPU devices. 1 when it is
 * missing or unreadable (often root-only): the ledger then estimates. */
static int rapl_energy_mj(const wdev_set_t *set, uint64_t *mj)
{
    const char *path = getenv("FT_RAPL_ENERGY");
    char buf[64];
    unsigned long long uj;
    int ncpu = 0;
    char *end;
    FILE *f;

    if (!path || !*path)
        path = "/sys/class/powercap/intel-rapl:0/energy_uj";
    if (!(f = fopen(path, "r")))
        return 1;
    if (!fgets(buf, sizeof(buf), f)) {
        fclose(f);
        return 1;
    }
    fclose(f);
    uj = strtoull(buf, &end, 10);
    if (end == buf || (*end && *end != '\n'))
        return 1;
    for (int i = 0; i < set->n; i++)
        ncpu += set->devs[i].kind == WDEV_CPU;
    *mj = uj / 1000 / (unsigned long long)(ncpu > 0 ? ncpu : 1);
    return 0;
}

int wdev_energy_mj(const wdev_set_t *set, int index, uint64_t *mj, ft_err_t *err)
{
    const wdev_t *d = wdev_get(set, index);
    if (!d) {
        ft_err_set(err, FT_ENOTFOUND, "no device %d", index);
        return -1;
    }
    if (d->kind == WDEV_CPU)
        return rapl_energy_mj(set, mj);
    if (d->kind != WDEV_GPU || !set->nvml.get_energy)
        return 1;
    unsigned long long v = 0;
    nvml_return_t rc = set->nvml.get_energy((nvml_device_t)d->nvml_handle, &v);
    if (rc == NVML_ERROR_NOT_SUPPORTED)
        return 1;
    if (rc != NVML_SUCCESS) {
        ft_err_set(err, FT_EINTERNAL, "energy of GPU %d: %s", index, nvml_err(set, rc));
        return -1;
    }
    *mj = v;
    return 0;
}

int wdev_power_mw(const wdev_set_t *set, int index, uint64_t *mw, ft_err_t *err)
{
    const wdev_t *d = wdev_get(set, index);
    if (!d) {
        ft_err_set(err, FT_ENOTFOUND, "no device %d", index);
        return -1;
    }
    if (d->kind != WDEV_GPU || !set->nvml.get_power)
        return 1;
    unsigned int v = 0;
    nvml_return_t rc = set->nvml.get_power((nvml_device_t)d->nvml_handle, &v);
    if (rc == NVML_ERROR_NOT_SUPPORTED)
        return 1;
    if (rc != NVML_SUCCESS) {
        ft_err_set(err, FT_EINTERNAL, "power of GPU %d: %s", index, nvml_err(set, rc));
        return -1;
    }
    *mw = v;
    return 0;
}
