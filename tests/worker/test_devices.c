/*
 * tests/worker/test_devices.c: device discovery without NVML: emulated GPUs,
 * CPU devices, the defaults, option errors, the hello JSON and the energy
 * hook (which must say "not supported" for devices that are not real GPUs);
 * then the NVML path through a stand-in library given as argv[1].
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "devices.h"

static wdev_opts_t base(void)
{
    /* "" skips NVML so the test is the same on a GPU machine */
    return (wdev_opts_t){.node_name = "n1", .cpu_devices = -1, .nvml_library = ""};
}

int main(int argc, char **argv)
{
    ft_log_init("test_devices", FT_LOG_WARN);
    ft_err_t err = {0};

    wdev_opts_t o = base();
    wdev_set_t *s = wdev_set_new(&o, &err);
    CHECK(s && wdev_count(s) == 1, "no flags, no GPU: one CPU device (%s)", err.msg);
    const wdev_t *d = s ? wdev_get(s, 0) : NULL;
    CHECK(d && d->kind == WDEV_CPU && strcmp(d->uuid, "cpu-n1-0") == 0 &&
              strcmp(d->model, "cpu") == 0 && d->memory_mb > 0,
          "the default device is kind cpu, uuid 'cpu-n1-0', model 'cpu', memory %lld MiB",
          d ? (long long)d->memory_mb : -1LL);
    CHECK(s && !wdev_nvml_loaded(s), "NVML skipped when the library name is empty");
    uint64_t mj = 0;
    setenv("FT_RAPL_ENERGY", "/nonexistent/energy_uj", 1);
    CHECK(s && wdev_energy_mj(s, 0, &mj, &err) == 1,
          "energy hook: cpu devices report none without a readable RAPL counter");
    {
        char path[] = "/tmp/ft-rapl-XXXXXX";
        int fd = mkstemp(path);

        if (fd >= 0) {
            CHECK(write(fd, "5000000\n", 8) == 8, "fake RAPL counter written");
            close(fd);
            setenv("FT_RAPL_ENERGY", path, 1);
            CHECK(s && wdev_energy_mj(s, 0, &mj, &err) == 0 && mj == 5000,
                  "energy hook: a cpu device reads RAPL 5000000 uJ as %llu mJ (one CPU device)",
                  (unsigned long long)mj);
            unlink(path);
        }
        setenv("FT_RAPL_ENERGY", "/nonexistent/energy_uj", 1);
    }
    CHECK(s && wdev_energy_mj(s, 5, &mj, &err) == -1 && err.code == FT_ENOTFOUND,
          "energy hook: unknown device index is not_found (%s)", err.msg);
    wdev_set_destroy(&s);
    CHECK(s == NULL, "wdev_set_destroy nulls the pointer");
    wdev_set_destroy(&s); /* idempotent */

    o = base();
    o.emulate_gpus = 3;
    o.gpu_model = "A100-80GB";
    o.gpu_mem_gb = 80;
    s = wdev_set_new(&o, &err);
    CHECK(s && wdev_count(s) == 3, "--emulate-gpus 3: three devices and no cpu device");
    for (int i = 0; s && i < 3; i++) {
        char uuid[32];
        snprintf(uuid, sizeof(uuid), "emu-n1-%d", i);
        d = wdev_get(s, i);
        CHECK(d->kind == WDEV_EMULATED && d->index == i && d->kind_index == i &&
                  strcmp(d->uuid, uuid) == 0 && strcmp(d->model, "A100-80GB") == 0 &&
                  d->memory_mb == 80 * 1024,
              "emulated device %d: uuid '%s', model, 81920 MiB (got '%s', %lld)", i, uuid, d->uuid,
              (long long)d->memory_mb);
    }
    CHECK(s && wdev_energy_mj(s, 1, &mj, &err) == 1, "energy hook: emulated GPUs report none");
    cJSON *j = s ? wdev_to_json(s) : NULL;
    char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(txt && strstr(txt, "{\"index\":2,\"uuid\":\"emu-n1-2\",\"model\":\"A100-80GB\","
                             "\"memory_mb\":81920,\"kind\":\"emulated\"}"),
          "hello devices JSON carries index, uuid, model, memory_mb, kind: %s", txt);
    cJSON_free(txt);
    cJSON_Delete(j);
    wdev_set_destroy(&s);

    o = base();
    o.emulate_gpus = 2;
    o.gpu_model = "L4";
    o.gpu_mem_gb = 24;
    o.cpu_devices = 2;
    s = wdev_set_new(&o, &err);
    CHECK(s && wdev_count(s) == 4 && wdev_get(s, 2)->kind == WDEV_CPU &&
              strcmp(wdev_get(s, 3)->uuid, "cpu-n1-1") == 0 && wdev_get(s, 3)->index == 3,
          "emulated GPUs first, then cpu devices, indexes continue");
    wdev_set_destroy(&s);

    o = base();
    o.cpu_devices = 4;
    s = wdev_set_new(&o, &err);
    CHECK(s && wdev_count(s) == 4 && strcmp(wdev_get(s, 3)->uuid, "cpu-n1-3") == 0,
          "--cpu-devices 4: four cpu devices");
    wdev_set_destroy(&s);

    o = base();
    o.emulate_gpus = 1;
    s = wdev_set_new(&o, &err);
    CHECK(s && strcmp(wdev_get(s, 0)->model, WDEV_EMU_MODEL) == 0 &&
              wdev_get(s, 0)->memory_mb == (int64_t)(WDEV_EMU_MEM_GB * 1024),
          "--emulate-gpus alone: model '%s', %.0f GiB", WDEV_EMU_MODEL, WDEV_EMU_MEM_GB);
    wdev_set_destroy(&s);

    /* option errors, each naming the flag */
    static const struct {
        int cpu, emu;
        const char *model;
        double mem;
        const char *needle;
    } bad[] = {
        {-1, 2, "A100", 5000, "--gpu-mem-gb"},   {-1, 2, "A100", -1, "--gpu-mem-gb"},
        {-1, 65, "A100", 16, "--emulate-gpus"},  {65, 0, NULL, 0, "--cpu-devices"},
        {0, 0, NULL, 0, "no devices"},           {-1, 0, "A100", 0, "need --emulate-gpus"},
        {-1, 2, "bad\tname", 16, "--gpu-model"}, {40, 40, "A100", 16, "more than 64"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = base();
        o.cpu_devices = bad[i].cpu;
        o.emulate_gpus = bad[i].emu;
        o.gpu_model = bad[i].model;
        o.gpu_mem_gb = bad[i].mem;
        ft_err_clear(&err);
        s = wdev_set_new(&o, &err);
        CHECK(!s && strstr(err.msg, bad[i].needle), "bad options %zu rejected naming '%s': %s", i,
              bad[i].needle, err.msg);
        wdev_set_destroy(&s);
    }

    /* a library that is not there is the same as no GPU */
    o = base();
    o.nvml_library = "libnvidia-ml-not-here.so.1";
    s = wdev_set_new(&o, &err);
    CHECK(s && !wdev_nvml_loaded(s) && wdev_count(s) == 1 && wdev_get(s, 0)->kind == WDEV_CPU,
          "missing NVML library: falls back to one cpu device");
    wdev_set_destroy(&s);

    /* NVML through a stand-in library (tests/worker/fake_nvml.c) */
    if (argc < 2) {
        printf("# no fake NVML library given: NVML path not checked\n");
        return check_exit();
    }
    o = base();
    o.nvml_library = argv[1];
    o.emulate_gpus = 2;
    s = wdev_set_new(&o, &err);
    CHECK(s && wdev_nvml_loaded(s) && wdev_count(s) == 2,
          "NVML with 3 GPUs, one locked: 2 offered, --emulate-gpus ignored (%s)", err.msg);
    d = s ? wdev_get(s, 1) : NULL;
    CHECK(d && d->kind == WDEV_GPU && d->index == 1 && d->kind_index == 1 &&
              strcmp(d->uuid, "GPU-fa4e0000-0000-0000-0000-000000000003") == 0 &&
              strcmp(d->model, "NVIDIA H200") == 0 && d->memory_mb == 141 * 1024,
          "GPU 1 is NVML's device 2: uuid '%s', model '%s', %lld MiB", d ? d->uuid : "",
          d ? d->model : "", d ? (long long)d->memory_mb : -1LL);
    mj = 0;
    CHECK(s && wdev_energy_mj(s, 0, &mj, &err) == 0 && mj == 123456789ULL,
          "energy hook: GPU 0 reports %llu mJ", (unsigned long long)mj);
    CHECK(s && wdev_energy_mj(s, 1, &mj, &err) == 1,
          "energy hook: a GPU without the counter reports none");
    j = s ? wdev_to_json(s) : NULL;
    txt = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(txt && strstr(txt, "\"kind\":\"gpu\""), "hello devices say kind 'gpu'");
    cJSON_free(txt);
    cJSON_Delete(j);
    wdev_set_destroy(&s);

    setenv("FAKE_NVML_COUNT", "0", 1);
    o = base();
    o.nvml_library = argv[1];
    o.emulate_gpus = 2;
    s = wdev_set_new(&o, &err);
    CHECK(s && wdev_nvml_loaded(s) && wdev_count(s) == 2 && wdev_get(s, 0)->kind == WDEV_EMULATED,
          "NVML with 0 GPUs: the emulated GPUs are offered");
    wdev_set_destroy(&s);
    return check_exit();
}
