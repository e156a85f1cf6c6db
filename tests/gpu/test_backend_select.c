/*
 * test_backend_select.c: how ft-train picks its compute backend
 * (train.h): the --backend names, and the rule of "auto": CUDA only when
 * ft-train was built with it, CUDA_VISIBLE_DEVICES is unset or not empty
 * (ftworker sets it empty for CPU ranks) and a device is found. Runs on any
 * machine: where no device is visible, auto must give the CPU whatever the
 * variable says; "cuda" on a build without CUDA is an error naming the flag.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check.h"
#include "train.h"
#ifdef FT_HAVE_CUDA
#include "cuda_backend.h"
#endif

static const char *name(int b)
{
    return b == TRAINER_BACKEND_CPU ? "cpu" : b == TRAINER_BACKEND_CUDA ? "cuda" : "error";
}

int main(void)
{
    static const struct {
        const char *s; /* flag value */
        int want;      /* trainer_backend_parse result */
    } names[] = {
        {"auto", TRAINER_BACKEND_AUTO},
        {"cpu", TRAINER_BACKEND_CPU},
        {"cuda", TRAINER_BACKEND_CUDA},
        {"gpu", -1},
        {"CUDA", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int got = trainer_backend_parse(names[i].s);
        CHECK(got == names[i].want, "parse '%s' -> %d (want %d)", names[i].s, got, names[i].want);
    }

    int devices = 0;
#ifdef FT_HAVE_CUDA
    devices = cuda_backend_device_count();
#endif
    printf("built with CUDA: %s; devices visible: %d\n",
#ifdef FT_HAVE_CUDA
           "yes",
#else
           "no",
#endif
           devices);
    ft_err_t err;
    ft_err_clear(&err);
    int b = trainer_backend_resolve(TRAINER_BACKEND_CPU, &err);
    CHECK(b == TRAINER_BACKEND_CPU, "cpu resolves to %s", name(b));

    /* a CPU rank: the worker hides every GPU with an empty list */
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    b = trainer_backend_resolve(TRAINER_BACKEND_AUTO, &err);
    CHECK(b == TRAINER_BACKEND_CPU, "auto with CUDA_VISIBLE_DEVICES='' resolves to %s", name(b));

    /* unset: the devices found decide (a standalone run) */
    unsetenv("CUDA_VISIBLE_DEVICES");
#ifdef FT_HAVE_CUDA
    devices = cuda_backend_device_count();
#endif
    b = trainer_backend_resolve(TRAINER_BACKEND_AUTO, &err);
    int want = devices > 0 ? TRAINER_BACKEND_CUDA : TRAINER_BACKEND_CPU;
    CHECK(b == want, "auto with CUDA_VISIBLE_DEVICES unset and %d device(s) resolves to %s",
          devices, name(b));

    ft_err_clear(&err);
    b = trainer_backend_resolve(TRAINER_BACKEND_CUDA, &err);
#ifdef FT_HAVE_CUDA
    CHECK(b == TRAINER_BACKEND_CUDA, "cuda resolves to %s (starting it may still fail)", name(b));
#else
    CHECK(b == -1 && strstr(err.msg, "'--backend cuda'"), "cuda on a build without it: %s",
          err.msg);
#endif
    return check_done("test_backend_select");
}
