/*
 * ft_train.c: the ft-train program, one process per rank. Subcommands (one
 * table): run, check, eval, make-tiny-model, bench; the contract is in
 * docs (trainer contract) and train.h.
 *
 * Exit codes: 0 success, 1 a training or I/O error (message on stderr),
 * 2 a bad spec or bad usage. Events are JSON lines on --event-fd (default
 * stdout); human-readable logs go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "bf16gemm.h"
#include "coll.h"
#include "coll_ring.h"
#ifdef FT_HAVE_CUDA
#include "coll_nccl.h"
#include "cuda_backend.h"
#endif
#include "ft/dist.h"
#include "ft/json.h"
#include "ft/jobspec.h"
#include "llama.h"
#include "model.h"
#include "optim.h"
#include "tinymodel.h"
#include "train.h"

#define EXIT_TRAIN 1
#define EXIT_USAGE 2

/* ---- flags ---- */

/* Value of "--name V" at argv[*i]; advances *i. NULL when argv[*i] is not
 * --name; exits with usage when the value is missing. */
static const char *flag_value(int argc, char **argv, int *i, const char *name)
{
    if (strcmp(argv[*i], name) != 0)
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ft-train: option '%s' needs a value\n", name);
        exit(EXIT_USAGE);
    }
    *i += 1;
    return argv[*i];
}

static int64_t parse_int(const char *name, const char *s, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "ft-train: option '%s': expected an integer in [%lld, %lld], got '%s'\n",
                name, (long long)min, (long long)max, ft_sanitize(s, 40));
        exit(EXIT_USAGE);
    }
    return v;
}

static double parse_num(const char *name, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "ft-train: option '%s': expected a number in [%g, %g], got '%s'\n",
                name, min, max, ft_sanitize(s, 40));
        exit(EXIT_USAGE);
    }
    return v;
}

static void unknown_flag(const char *cmd, const char *arg)
{
    fprintf(stderr, "ft-train %s: unknown argument '%s' (see ft-train -h)\n", cmd,
            ft_sanitize(arg, 60));
    exit(EXIT_USAGE);
}

/* Reads and validates a lora job spec. Exits 2 on any problem. */
static void load_spec(const char *path, ft_jobspec_t *spec)
{
    ft_err_t err;
    ft_err_clear(&err);
    size_t len;
    char *buf = ft_read_file(path, FT_SPEC_MAX_BYTES, &len, &err);
    if (!buf) {
        fprintf(stderr, "ft-train: %s\n", err.msg);
        exit(EXIT_USAGE);
    }
    cJSON *j = ft_json_parse(buf, len, &err);
    free(buf);
    if (!j || ft_jobspec_parse(j, spec, &err) < 0) {
        fprintf(stderr, "ft-train: '%s': %s\n", ft_sanitize(path, 200), err.msg);
        cJSON_Delete(j);
        exit(EXIT_USAGE);
    }
    cJSON_Delete(j);
    if (spec->kind != FT_KIND_LORA) {
        fprintf(stderr, "ft-train: '%s': spec.kind: expected \"lora\"\n",
                ft_sanitize(path, 200));
        exit(EXIT_USAGE);
    }
}

/* ---- run ---- */

/* SIGTERM/SIGINT during run: finish the step, checkpoint, then die of the
 * same signal so that the worker sees what it sent. */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_requested = 1;
    stop_signal = sig;
}

/* --backend auto|cpu|cuda (trainer_backend_t) */
static int parse_backend(const char *s)
{
    int b = trainer_backend_parse(s);
    if (b < 0) {
        fprintf(stderr, "ft-train: option '--backend': expected auto, cpu or cuda, got '%s'\n",
                ft_sanitize(s, 40));
        exit(EXIT_USAGE);
    }
    return b;
}

/* --dtype auto|fp32|bf16 (spec.train.dtype's values) */
static ft_dtype_t parse_dtype(const char *s)
{
    for (int i = 0; ft_dtype_names[i]; i++)
        if (strcmp(s, ft_dtype_names[i]) == 0)
            return (ft_dtype_t)i;
    fprintf(stderr, "ft-train: option '--dtype': expected auto, fp32 or bf16, got '%s'\n",
            ft_sanitize(s, 40));
    exit(EXIT_USAGE);
}

static int cmd_run(int argc, char **argv)
{
    const char *spec_path = NULL, *v;
    int rank = 0, world = 1, event_fd = STDOUT_FILENO, backend = TRAINER_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        if ((v = flag_value(argc, argv, &i, "--spec")))
            spec_path = v;
        else if ((v = flag_value(argc, argv, &i, "--backend")))
            backend = parse_backend(v);
        else if ((v = flag_value(argc, argv, &i, "--rank")))
            rank = (int)parse_int("--rank", v, 0, FT_MAX_GPUS_PER_JOB - 1);
        else if ((v = flag_value(argc, argv, &i, "--world-size")))
            world = (int)parse_int("--world-size", v, 1, FT_MAX_GPUS_PER_JOB);
        else if ((v = flag_value(argc, argv, &i, "--event-fd")))
            event_fd = (int)parse_int("--event-fd", v, 0, INT_MAX);
        else
            unknown_flag("run", argv[i]);
    }
    if (!spec_path) {
        fprintf(stderr, "ft-train run: '--spec' is required\n");
        return EXIT_USAGE;
    }
    if (rank >= world) {
        fprintf(stderr, "ft-train run: '--rank' %d is not below '--world-size' %d\n", rank,
                world);
        return EXIT_USAGE;
    }
    if (fcntl(event_fd, F_GETFD) < 0) {
        fprintf(stderr, "ft-train run: '--event-fd' %d is not open\n", event_fd);
        return EXIT_USAGE;
    }
    ft_jobspec_t spec;
    load_spec(spec_path, &spec);
    int rc = EXIT_TRAIN;
    ft_err_t err;
    ft_err_clear(&err);
    trainer_t *t = NULL;
    /* world > 1: the TCP ring, connected through the rendezvous (coll_ring.h);
     * NCCL instead on CUDA ranks, its unique id carried by the same rendezvous */
    coll_t *c = NULL;
#ifdef FT_HAVE_CUDA
    int resolved = trainer_backend_resolve(backend, &err);
    if (resolved == TRAINER_BACKEND_CUDA && world > 1)
        c = coll_nccl_open(event_fd, rank, world, 0, &err);
    else
#endif
        c = coll_open(event_fd, rank, world, &err);
    trainer_opts_t o;
    trainer_opts_defaults(&o);
    o.event_fd = event_fd;
    o.backend = backend;
    o.stop = &stop_requested;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;  /* file writes carry on; the loop polls the flag */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (!c) {
        ft_error("%s", err.msg);
        if (world > 1)
            rc = FT_EXIT_PEER_LOST; /* the gang never formed (ft/dist.h) */
        goto out;
    }
    t = trainer_new(&spec.train, c, &o, &err);
    if (!t) {
        /* the spec itself was valid: a model, data or memory problem */
        ft_error("%s", err.msg);
        goto out;
    }
    int r = trainer_run(t, &err);
    if (world > 1)
        ft_info("rank %d: %.3f s in collectives", rank, coll_ring_take_comm_s(c));
    if (r < 0) {
        ft_error("%s", err.msg);
        bool lost = coll_ring_broken(c);
#ifdef FT_HAVE_CUDA
        lost = lost || coll_nccl_broken(c);
#endif
        if (lost)
            rc = FT_EXIT_PEER_LOST; /* a peer died or hung, not this rank's fault */
        goto out;
    }
    if (r == TRAINER_STOPPED && !stop_requested) {
        /* a peer was asked to stop and the gang stopped with it: not done */
        ft_info("rank %d: stopped with the gang; checkpoint saved", rank);
        rc = FT_EXIT_PEER_LOST;
        goto out;
    }
    rc = 0;
out:
    trainer_destroy(&t);
    coll_destroy(&c);
    ft_jobspec_free(&spec);
    if (stop_requested) {
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return rc;
}

/* ---- check ---- */

/* What check and eval share: the spec (a bad one exits), a one-rank collective
 * (NULL when out of memory) and trainer options without dropout on backend. */
static coll_t *single_rank_setup(const char *spec_path, int backend, ft_jobspec_t *spec,
                                 trainer_opts_t *o)
{
    load_spec(spec_path, spec);
    trainer_opts_defaults(o);
    o->dropout = 0.0;
    o->backend = backend;
    return coll_single();
}

static int cmd_check(int argc, char **argv)
{
    const char *spec_path = NULL, *out_path = NULL, *v;
    double b_std = 0.02;
    int backend = TRAINER_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        if ((v = flag_value(argc, argv, &i, "--spec")))
            spec_path = v;
        else if ((v = flag_value(argc, argv, &i, "--backend")))
            backend = parse_backend(v);
        else if ((v = flag_value(argc, argv, &i, "--out")))
            out_path = v;
        else if ((v = flag_value(argc, argv, &i, "--init-b-std")))
            b_std = parse_num("--init-b-std", v, 0.0, 10.0);
        else
            unknown_flag("check", argv[i]);
    }
    if (!spec_path || !out_path) {
        fprintf(stderr, "ft-train check: '--spec' and '--out' are required\n");
        return EXIT_USAGE;
    }
    ft_jobspec_t spec;
    trainer_opts_t o;
    coll_t *c = single_rank_setup(spec_path, backend, &spec, &o);
    ft_err_t err;
    ft_err_clear(&err);
    int rc = EXIT_TRAIN;
    o.init_b_std = b_std;
    trainer_t *t = c ? trainer_new(&spec.train, c, &o, &err) : NULL;
    if (!t || trainer_check(t, out_path, &err) < 0)
        ft_error("%s", err.msg);
    else
        rc = 0;
    trainer_destroy(&t);
    coll_destroy(&c);
    ft_jobspec_free(&spec);
    return rc;
}

/* ---- eval ---- */

/* r, alpha, use_rslora, target_modules of DIR/adapter_config.json */
static int read_adapter_shape(const char *dir, trainer_opts_t *o, ft_err_t *err)
{
    char *path = ft_asprintf("%s/adapter_config.json", dir);
    size_t len;
    char *buf = path ? ft_read_file(path, 1 << 20, &len, err) : NULL;
    cJSON *j = buf ? ft_json_parse(buf, len, err) : NULL;
    int rc = -1;
    if (!j)
        goto out;
    int64_t r;
    double alpha;
    bool rs = false;
    const char *ctx = "adapter_config.json";
    if (ft_json_get_int(j, ctx, "r", true, 1, 4096, &r, err) < 0 ||
        ft_json_get_num(j, ctx, "lora_alpha", true, -1e9, 1e9, &alpha, err) < 0 ||
        ft_json_get_bool(j, ctx, "use_rslora", false, &rs, err) < 0)
        goto out;
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    uint32_t mask = 0;
    if (cJSON_IsString(tm) && strcmp(tm->valuestring, "all-linear") == 0) {
        mask = (1u << FT_N_TARGET_MODULES) - 1;
    } else if (cJSON_IsArray(tm)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, tm) {
            int found = -1;
            for (int m = 0; m < FT_N_TARGET_MODULES && cJSON_IsString(e); m++)
                if (strcmp(e->valuestring, ft_target_module_names[m]) == 0)
                    found = m;
            if (found < 0) {
                ft_err_set(err, FT_EBADFIELD, "'%s': target_modules: unsupported entry", path);
                goto out;
            }
            mask |= 1u << found;
        }
    }
    if (!mask) {
        ft_err_set(err, FT_EBADFIELD, "'%s': target_modules: expected a non-empty list", path);
        goto out;
    }
    o->adapter_r = (int)r;
    o->adapter_alpha = alpha;
    o->adapter_rslora = rs;
    o->adapter_mask = mask;
    rc = 0;
out:
    cJSON_Delete(j);
    free(buf);
    free(path);
    return rc;
}

static int cmd_eval(int argc, char **argv)
{
    const char *spec_path = NULL, *dir = NULL, *dump = NULL, *v;
    int backend = TRAINER_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        if ((v = flag_value(argc, argv, &i, "--spec")))
            spec_path = v;
        else if ((v = flag_value(argc, argv, &i, "--backend")))
            backend = parse_backend(v);
        else if ((v = flag_value(argc, argv, &i, "--adapter")))
            dir = v;
        else if ((v = flag_value(argc, argv, &i, "--dump-rows")))
            dump = v;
        else
            unknown_flag("eval", argv[i]);
    }
    if (!spec_path || !dir) {
        fprintf(stderr, "ft-train eval: '--spec' and '--adapter' are required\n");
        return EXIT_USAGE;
    }
    ft_jobspec_t spec;
    trainer_opts_t o;
    coll_t *c = single_rank_setup(spec_path, backend, &spec, &o);
    ft_err_t err;
    ft_err_clear(&err);
    int rc = EXIT_TRAIN;
    trainer_t *t = NULL;
    double loss;
    int64_t n;
    if (!c || read_adapter_shape(dir, &o, &err) < 0 ||
        !(t = trainer_new(&spec.train, c, &o, &err)) || trainer_load_adapter(t, dir, &err) < 0 ||
        (dump && trainer_dump_eval_rows(t, dump, &err) < 0) ||
        trainer_eval(t, &loss, &n, &err) < 0) {
        ft_error("%s", err.msg);
        goto out;
    }
    printf("{\"eval_loss\": %.17g, \"eval_tokens\": %lld}\n", loss, (long long)n);
    rc = 0;
out:
    trainer_destroy(&t);
    coll_destroy(&c);
    ft_jobspec_free(&spec);
    return rc;
}

/* ---- make-tiny-model ---- */

static int cmd_make_tiny(int argc, char **argv)
{
    tinymodel_opts_t o;
    tinymodel_defaults(&o);
    const char *dir = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if ((v = flag_value(argc, argv, &i, "--hidden")))
            o.hidden = (int)parse_int("--hidden", v, 2, 65536);
        else if ((v = flag_value(argc, argv, &i, "--layers")))
            o.layers = (int)parse_int("--layers", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--heads")))
            o.heads = (int)parse_int("--heads", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--kv-heads")))
            o.kv_heads = (int)parse_int("--kv-heads", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--intermediate")))
            o.intermediate = (int)parse_int("--intermediate", v, 1, 1 << 20);
        else if ((v = flag_value(argc, argv, &i, "--vocab")))
            o.vocab = (int)parse_int("--vocab", v, 1, 1 << 22);
        else if ((v = flag_value(argc, argv, &i, "--max-pos")))
            o.max_pos = (int)parse_int("--max-pos", v, 1, 1 << 24);
        else if ((v = flag_value(argc, argv, &i, "--seed")))
            o.seed = (uint64_t)parse_int("--seed", v, 0, INT64_MAX);
        else if ((v = flag_value(argc, argv, &i, "--init-std")))
            o.init_std = parse_num("--init-std", v, 1e-6, 10.0);
        else if ((v = flag_value(argc, argv, &i, "--dtype"))) {
            if (strcmp(v, "f32") == 0)
                o.dtype = ST_F32;
            else if (strcmp(v, "bf16") == 0)
                o.dtype = ST_BF16;
            else if (strcmp(v, "f16") == 0)
                o.dtype = ST_F16;
            else {
                fprintf(stderr, "ft-train make-tiny-model: '--dtype': expected f32, bf16 or "
                        "f16, got '%s'\n", ft_sanitize(v, 20));
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--tie") == 0)
            o.tie = true;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            unknown_flag("make-tiny-model", argv[i]);
    }
    if (!dir) {
        fprintf(stderr, "ft-train make-tiny-model: the folder DIR is required\n");
        return EXIT_USAGE;
    }
    ft_err_t err;
    ft_err_clear(&err);
    llama_config_t cfg;
    if (tinymodel_config(&o, &cfg, &err) < 0) {
        fprintf(stderr, "ft-train make-tiny-model: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (tinymodel_write(dir, &o, &err) < 0) {
        fprintf(stderr, "ft-train make-tiny-model: %s\n", err.msg);
        return EXIT_TRAIN;
    }
    return 0;
}

/* ---- bench ---- */

static int cmd_bench(int argc, char **argv)
{
    int hidden = 512, layers = 8, heads = 8, kv = 8, inter = 1376, vocab = 8192, seq = 256;
    int batch = 4, r = 16, steps = 3, threads = 2, backend = TRAINER_BACKEND_CPU;
    ft_dtype_t dtype = FT_DTYPE_AUTO;
    const char *v;
    for (int i = 1; i < argc; i++) {
        if ((v = flag_value(argc, argv, &i, "--backend")))
            backend = parse_backend(v);
        else if ((v = flag_value(argc, argv, &i, "--dtype")))
            dtype = parse_dtype(v);
        else if ((v = flag_value(argc, argv, &i, "--hidden")))
            hidden = (int)parse_int("--hidden", v, 2, 65536);
        else if ((v = flag_value(argc, argv, &i, "--layers")))
            layers = (int)parse_int("--layers", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--heads")))
            heads = (int)parse_int("--heads", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--kv-heads")))
            kv = (int)parse_int("--kv-heads", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--intermediate")))
            inter = (int)parse_int("--intermediate", v, 1, 1 << 20);
        else if ((v = flag_value(argc, argv, &i, "--vocab")))
            vocab = (int)parse_int("--vocab", v, 2, 1 << 22);
        else if ((v = flag_value(argc, argv, &i, "--seq")))
            seq = (int)parse_int("--seq", v, 1, 1 << 16);
        else if ((v = flag_value(argc, argv, &i, "--batch")))
            batch = (int)parse_int("--batch", v, 1, 4096);
        else if ((v = flag_value(argc, argv, &i, "--r")))
            r = (int)parse_int("--r", v, 1, 1024);
        else if ((v = flag_value(argc, argv, &i, "--steps")))
            steps = (int)parse_int("--steps", v, 1, 100000);
        else if ((v = flag_value(argc, argv, &i, "--threads")))
            threads = (int)parse_int("--threads", v, 1, 1024);
        else
            unknown_flag("bench", argv[i]);
    }
    if (hidden % heads != 0 || heads % kv != 0 || (hidden / heads) % 2 != 0) {
        fprintf(stderr, "ft-train bench: '--hidden' must be a multiple of '--heads' with an "
                "even head size, and '--heads' a multiple of '--kv-heads'\n");
        return EXIT_USAGE;
    }
    ft_err_t berr;
    ft_err_clear(&berr);
    int resolved = trainer_backend_resolve(backend, &berr);
    int prec = resolved < 0 ? -1 : trainer_dtype_resolve(resolved, dtype, &berr);
    if (prec < 0) {
        fprintf(stderr, "ft-train bench: %s\n", berr.msg);
        return EXIT_USAGE;
    }
    const backend_t *be = trainer_backend_open(resolved, dtype, &berr);
    if (!be) {
        fprintf(stderr, "ft-train bench: %s\n", berr.msg);
        return EXIT_TRAIN;
    }
    bool cpu_bf16 = be == backend_cpu_bf16();
    be->set_threads(threads);
    llama_config_t cfg;
    tinymodel_bench_config(&cfg, vocab, hidden, inter, layers, heads, kv, seq, 10000.0);
    llama_weights_t w;
    if (llama_weights_alloc(&cfg, &w) < 0) {
        fprintf(stderr, "ft-train bench: out of memory for the weights\n");
        return EXIT_TRAIN;
    }
    tinymodel_fill(&cfg, &w, 1, 0.02);
    ft_err_t err;
    ft_err_clear(&err);
    model_opts_t mo = {.r = r, .alpha = 2.0 * r, .mask = (1u << FT_N_TARGET_MODULES) - 1,
                       .B = batch, .T = seq};
    model_t *m = model_new(&cfg, &w, be, &mo, &err);
    adamw_t *opt = m ? adamw_new(be, model_lora_layout(m)->n_params, 0.9, 0.999, 1e-8, 0.0)
                     : NULL;
    size_t n = (size_t)batch * seq;
    int32_t *in = malloc(n * sizeof(int32_t)), *tg = malloc(n * sizeof(int32_t));
    int rc = EXIT_TRAIN;
    if (!m || !opt || !in || !tg) {
        fprintf(stderr, "ft-train bench: %s\n", m ? "out of memory" : err.msg);
        goto out;
    }
    if (be->upload) {
        /* a device backend: initialise on the host, then copy over */
        size_t np = model_lora_layout(m)->n_params;
        float *hp = malloc(np * sizeof(float));
        if (!hp) {
            fprintf(stderr, "ft-train bench: out of memory\n");
            goto out;
        }
        lora_init_params(model_lora_layout(m), hp, 1, 0.0);
        int up = be->upload(model_lora_params(m), hp, np * sizeof(float));
        free(hp);
        if (up < 0) {
            fprintf(stderr, "ft-train bench: cannot copy the LoRA parameters to '%s'\n",
                    be->name);
            goto out;
        }
    } else {
        lora_init_params(model_lora_layout(m), model_lora_params(m), 1, 0.0);
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
    for (size_t i = 0; i < n; i++)
        tg[i] = (i + 1) % (size_t)seq == 0 ? -100 : in[i + 1];
    int64_t ntok_t = 0;
    for (size_t i = 0; i < n; i++)
        ntok_t += tg[i] >= 0;
    int64_t t0 = 0, ts = 0, best = INT64_MAX;
    bool prof = getenv("FT_PROFILE") != NULL;
    for (int k = 0; k <= steps; k++) {
        if (k == 1) {
            t0 = ft_mono_ms();  /* step 0 is the warm-up */
            model_profile_enable(prof);
        }
        if (k >= 2 && ft_mono_ms() - ts < best)
            best = ft_mono_ms() - ts;
        ts = ft_mono_ms();
        double ls;
        int64_t nt;
        model_zero_grad(m);
        if (model_step(m, in, tg, true, 1.0f / (float)ntok_t, (uint64_t)k, &ls, &nt, &err) < 0) {
            fprintf(stderr, "ft-train bench: %s\n", err.msg);
            goto out;
        }
        clip_grad_norm(be, model_lora_grads(m), model_lora_layout(m)->n_params, 1.0);
        adamw_step(opt, model_lora_params(m), model_lora_grads(m), 1e-4);
        if (be->sync && be->sync() < 0) {
            fprintf(stderr, "ft-train bench: the '%s' backend failed\n", be->name);
            goto out;
        }
    }
    if (ft_mono_ms() - ts < best)
        best = ft_mono_ms() - ts;
    double secs = (double)(ft_mono_ms() - t0) / 1000.0 / steps;
    double flops = model_train_flops(&cfg, r, mo.mask, batch, seq);
    /* the host sgemm rate (cuda: ft-gpu-bench measures its own) */
    double gg = be->upload ? 0.0 : backend_cpu_gemm_rate(false, 2048);
    /* the bf16 kernel's own rate on the same square shape */
    double gw = cpu_bf16 ? backend_cpu_gemm_rate(true, 2048) : 0.0;
    char pbuf[512] = "";
    if (prof) {
        pbuf[0] = ',';
        pbuf[1] = ' ';
        model_profile_report(pbuf + 2, sizeof(pbuf) - 2);
    }
    printf("{\"tokens_per_s\": %.1f, \"step_ms\": %.1f, \"step_ms_min\": %lld, "
           "\"gflops\": %.1f, \"flops_per_step\": %.0f, \"gemm_gflops\": %.1f, "
           "\"backend\": \"%s\", \"dtype\": \"%s\", \"kernel\": \"%s\", "
           "\"gemm_w_gflops\": %.1f, \"threads\": %d, \"batch\": %d, \"seq\": %d%s}\n",
           (double)n / secs, secs * 1000.0, (long long)best, flops / secs / 1e9, flops, gg,
           be->name, ft_dtype_names[prec], cpu_bf16 ? bf16_gemm_kernel()
                                         : (be->upload ? "cublas" : "openblas"),
           cpu_bf16 ? gw : gg, threads, batch, seq, pbuf);
    rc = 0;
out:
    adamw_destroy(&opt);
    model_destroy(&m);
    llama_weights_free(&w);
    free(in);
    free(tg);
    return rc;
}

/* ---- table ---- */

typedef struct {
    const char *name;               /* subcommand */
    int (*fn)(int argc, char **argv);
    const char *usage;              /* one line */
} subcmd_t;

static const subcmd_t subcmds[] = {
    {"run", cmd_run, "run --spec SPEC.json [--rank R --world-size W] [--event-fd N] "
     "[--backend auto|cpu|cuda]"},
    {"check", cmd_check, "check --spec SPEC.json --out OUT.safetensors [--init-b-std S] "
     "[--backend auto|cpu|cuda]"},
    {"eval", cmd_eval, "eval --spec SPEC.json --adapter DIR [--dump-rows ROWS.safetensors] "
     "[--backend auto|cpu|cuda]"},
    {"make-tiny-model", cmd_make_tiny,
     "make-tiny-model DIR [--hidden H --layers L --heads N --kv-heads K --intermediate I "
     "--vocab V --max-pos P --dtype f32|bf16|f16 --seed S --init-std X --tie]"},
    {"bench", cmd_bench,
     "bench [--hidden 512 --layers 8 --heads 8 --kv-heads 8 --intermediate 1376 --vocab 8192 "
     "--seq 256 --batch 4 --r 16 --steps N --threads 2 --backend cpu|cuda|auto "
     "--dtype auto|fp32|bf16]"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ft-train SUBCOMMAND [options]\n");
    for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
        fprintf(f, "  ft-train %s\n", subcmds[i].usage);
    fprintf(f, "exit codes: 0 ok, 1 training error, 2 bad spec or usage\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);  /* a closed event pipe is reported by write */
    const char *lvl = getenv("FT_LOG_LEVEL");
    ft_log_init("ft-train", lvl && strcmp(lvl, "debug") == 0 ? FT_LOG_DEBUG : FT_LOG_INFO);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
        if (strcmp(argv[1], subcmds[i].name) == 0)
            return subcmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ft-train: '%s' is not a subcommand\n", ft_sanitize(argv[1], 40));
    usage(stderr);
    return EXIT_USAGE;
}
