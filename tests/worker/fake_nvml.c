/*
 * tests/worker/fake_nvml.c: a stand-in for libnvidia-ml.so.1 with the few
 * entry points ftworker looks up, so that the NVML discovery path runs on
 * machines without a GPU. It reports FAKE_NVML_COUNT devices (default 3);
 * device 1 answers NVML_ERROR_NO_PERMISSION (4) as a real locked GPU does;
 * only the first device has an energy counter (others: NOT_SUPPORTED, 3).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    unsigned long long total, free, used; /* bytes */
} fake_memory_t;

int nvmlInit_v2(void);
int nvmlShutdown(void);
const char *nvmlErrorString(int rc);
int nvmlDeviceGetCount_v2(unsigned int *count);
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h);
int nvmlDeviceGetUUID(void *h, char *buf, unsigned int len);
int nvmlDeviceGetName(void *h, char *buf, unsigned int len);
int nvmlDeviceGetMemoryInfo(void *h, fake_memory_t *m);
int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *mj);
int nvmlDeviceGetPowerUsage(void *h, unsigned int *mw);

static int init_count; /* nvmlInit minus nvmlShutdown */

int nvmlInit_v2(void)
{
    init_count++;
    return 0;
}

int nvmlShutdown(void)
{
    init_count--;
    return init_count < 0 ? 1 : 0;
}

const char *nvmlErrorString(int rc)
{
    return rc == 4 ? "Insufficient Permissions" : rc == 3 ? "Not Supported" : "Unknown Error";
}

int nvmlDeviceGetCount_v2(unsigned int *count)
{
    const char *s = getenv("FAKE_NVML_COUNT");
    *count = s ? (unsigned int)atoi(s) : 3;
    return init_count > 0 ? 0 : 1;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h)
{
    if (i == 1)
        return 4;
    *h = (void *)(uintptr_t)(i + 1);
    return 0;
}

int nvmlDeviceGetUUID(void *h, char *buf, unsigned int len)
{
    snprintf(buf, len, "GPU-fa4e0000-0000-0000-0000-00000000000%d", (int)(uintptr_t)h);
    return 0;
}

int nvmlDeviceGetName(void *h, char *buf, unsigned int len)
{
    snprintf(buf, len, "NVIDIA H200");
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *h, fake_memory_t *m)
{
    m->total = 141ULL << 30;
    m->free = m->total;
    m->used = 0;
    return 0;
}

/* 123456789 mJ, plus FAKE_NVML_POWER_W watts (W = mJ per ms) since the first
 * call when that is set, so billing tests see a known delta. */
int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *mj)
{
    static struct timespec t0;
    const char *w = getenv("FAKE_NVML_POWER_W");
    struct timespec t;

    if ((uintptr_t)h != 1)
        return 3;
    *mj = 123456789ULL;
    if (w && *w) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t0.tv_sec == 0)
            t0 = t;
        *mj += (unsigned long long)(atof(w) * ((double)(t.tv_sec - t0.tv_sec) * 1000.0 +
                                               (double)(t.tv_nsec - t0.tv_nsec) / 1e6));
    }
    return 0;
}

/* Every device draws FAKE_NVML_POWER_W when that is set; else NOT_SUPPORTED. */
int nvmlDeviceGetPowerUsage(void *h, unsigned int *mw)
{
    const char *w = getenv("FAKE_NVML_POWER_W");

    (void)h;
    if (!w || !*w)
        return 3;
    *mw = (unsigned int)(atof(w) * 1000.0);
    return 0;
}
