/*
 * worker/main.c: `ftworker`, the node agent: command line, state dir, trainer
 * lookup, device discovery, then the agent loop (agent.c).
 *
 * Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when start-up fails,
 * 2 on a usage error. Every flag is a row in one table; values are checked
 * there, with messages that name the flag.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "agent.h"
#include "devices.h"
#include "rank.h"
#include "ft/common.h"
#include "ft/jobspec.h"
#include "ft/proto.h"

#define EXIT_USAGE 2

typedef struct {
    const char *scheduler; /* --scheduler */
    const char *name;      /* --name; NULL = hostname */
    const char *state_dir; /* --state-dir; NULL = ./ftworker-NAME */
    const char *trainer;   /* --trainer; NULL = next to ftworker */
    const char *gpu_model; /* --gpu-model */
    const char *log_level; /* --log-level */
    const char *spawn;     /* --spawn: "fork" or "vfork" */
    int64_t cpu_devices;   /* --cpu-devices; -1 = not given */
    int64_t emulate_gpus;  /* --emulate-gpus */
    double gpu_mem_gb;     /* --gpu-mem-gb */
    int64_t stop_grace_ms; /* --stop-grace-ms */
    const char *key;        /* --key: this node's CURVE key pair file; NULL = $FT_KEY */
    const char *server_key; /* --server-key: ftsched's public key file; NULL = $FT_SERVER_KEY */
} cli_t;

typedef enum { ARG_STR, ARG_INT, ARG_NUM } arg_type_t;

static cli_t cli = {
    .scheduler = FT_DEFAULT_ENDPOINT,
    .log_level = "info",
    .spawn = "vfork",
    .cpu_devices = -1,
    .stop_grace_ms = 10000,
};

/* The flag table: long name, value type, where it goes, bounds, help. */
static const struct {
    const char *name; /* --name */
    arg_type_t type;  /* value type */
    void *dst;        /* const char **, int64_t * or double * */
    double min, max;  /* bounds for ARG_INT and ARG_NUM */
    const char *meta; /* value placeholder in the help */
    const char *help; /* one line */
} flags[] = {
    {"scheduler", ARG_STR, &cli.scheduler, 0, 0, "ENDPOINT",
     "ftsched's ZeroMQ endpoint (default " FT_DEFAULT_ENDPOINT ")"},
    {"name", ARG_STR, &cli.name, 0, 0, "NAME", "node name, [A-Za-z0-9._-]+ (default: hostname)"},
    {"state-dir", ARG_STR, &cli.state_dir, 0, 0, "DIR",
     "rank logs and working files (default ./ftworker-NAME)"},
    {"cpu-devices", ARG_INT, &cli.cpu_devices, 0, 64, "N",
     "offer N CPU devices when there is no GPU (default 1)"},
    {"emulate-gpus", ARG_INT, &cli.emulate_gpus, 0, 64, "N",
     "offer N emulated GPUs when there is no GPU (for testing)"},
    {"gpu-model", ARG_STR, &cli.gpu_model, 0, 0, "NAME",
     "model name of the emulated GPUs (default " WDEV_EMU_MODEL ")"},
    {"gpu-mem-gb", ARG_NUM, &cli.gpu_mem_gb, 0.001, 4096, "G",
     "memory of each emulated GPU in GiB (default 80)"},
    {"trainer", ARG_STR, &cli.trainer, 0, 0, "PATH",
     "ft-train binary for lora jobs (default: next to ftworker)"},
    {"stop-grace-ms", ARG_INT, &cli.stop_grace_ms, 0, 3600000, "MS",
     "SIGTERM to SIGKILL for ranks when ftworker stops (default 10000)"},
    {"log-level", ARG_STR, &cli.log_level, 0, 0, "L", "debug, info, warn or error (default info)"},
    {"spawn", ARG_STR, &cli.spawn, 0, 0, "MODE",
     "vfork (a thread clones each rank without copying ftworker's memory) or fork (default "
     "vfork)"},
    {"key", ARG_STR, &cli.key, 0, 0, "FILE",
     "this node's CURVE key pair (ftctl keygen FILE NODE nodes worker; default $FT_KEY)"},
    {"server-key", ARG_STR, &cli.server_key, 0, 0, "FILE",
     "ftsched's public key, server.pub (default $FT_SERVER_KEY)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void usage(FILE *f)
{
    fprintf(f, "usage: ftworker [options]\n\n"
               "The ft node agent: offers this node's devices to ftsched and runs ranks.\n\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", flags[i].name, flags[i].meta);
        fprintf(f, "  %-24s %s\n", left, flags[i].help);
    }
    fprintf(f, "  %-24s %s\n  %-24s %s\n", "-h, --help", "show this help", "--version",
            "print the version");
    fprintf(f,
            "\nenvironment:\n  %-24s %s\n\nSIGTERM or SIGINT stops every rank, reports it and "
            "exits 0.\nSee docs/operations.md.\n",
            "FT_NVML_LIBRARY", "NVML library to load (\"\" skips NVML)");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ftworker: %s\nrun 'ftworker --help' for usage\n", msg);
    return -1;
}

static int set_flag(size_t i, const char *val)
{
    char *end = NULL;
    if (flags[i].type == ARG_STR) {
        if (!*val || strlen(val) >= FT_PATH_MAX)
            return usage_error("--%s: '%s' is empty or too long", flags[i].name,
                               ft_sanitize(val, 64));
        *(const char **)flags[i].dst = val;
        return 0;
    }
    errno = 0;
    double v = flags[i].type == ARG_INT ? (double)strtoll(val, &end, 10) : strtod(val, &end);
    if (errno || end == val || *end || v < flags[i].min || v > flags[i].max) {
        char range[64];
        snprintf(range, sizeof(range), "[%g, %g]", flags[i].min, flags[i].max);
        fprintf(stderr, "ftworker: --%s: '%s' is not %s in %s\n", flags[i].name,
                ft_sanitize(val, 64), flags[i].type == ARG_INT ? "an integer" : "a number", range);
        return -1;
    }
    if (flags[i].type == ARG_INT)
        *(int64_t *)flags[i].dst = (int64_t)v;
    else
        *(double *)flags[i].dst = v;
    return 0;
}

/* 0: run; 1: exit 0 (help, version); -1: usage error. */
static int parse_args(int argc, char **argv)
{
    struct option longopts[N_FLAGS + 3];
    for (size_t i = 0; i < N_FLAGS; i++)
        longopts[i] = (struct option){flags[i].name, required_argument, NULL, (int)(i + 256)};
    longopts[N_FLAGS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_FLAGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_FLAGS + 2] = (struct option){0};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("ftworker %s\n", FT_VERSION_STRING);
            return 1;
        }
        if (c == ':')
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        if (c == '?')
            return usage_error("unknown option '%s'", ft_sanitize(argv[optind - 1], 64));
        if (set_flag((size_t)(c - 256), optarg) < 0)
            return -1;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", ft_sanitize(argv[optind], 64));
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FT_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* --trainer made absolute, else ft-train next to ftworker or in its build
 * tree (worker/trainer/ft-train), else "ft-train" found through PATH. */
static char *find_trainer(const char *given)
{
    char buf[PATH_MAX];
    if (given) {
        if (!strchr(given, '/'))
            return strdup(given);
        if (!realpath(given, buf)) {
            ft_warn("--trainer '%s': %s; lora jobs will fail to launch", given, strerror(errno));
            return strdup(given);
        }
        return strdup(buf);
    }
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        char *slash = strrchr(buf, '/');
        if (slash)
            *slash = '\0';
        static const char *const rel[] = {"ft-train", "trainer/ft-train",
                                          "../worker/trainer/ft-train"};
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            char cand[PATH_MAX + 64], real[PATH_MAX];
            snprintf(cand, sizeof(cand), "%s/%s", buf, rel[i]);
            if (is_executable(cand) && realpath(cand, real))
                return strdup(real);
        }
    }
    ft_info("no ft-train next to ftworker; lora jobs use 'ft-train' from PATH");
    return strdup("ft-train");
}

/* Children inherit 0, 1, 2; make sure they are open so pipes never get them. */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

int main(int argc, char **argv)
{
    int rc = 1;
    char host[256] = "", name[FT_NAME_MAX + 1], *state_dir = NULL, *trainer = NULL;
    char *dir_abs = NULL;
    wdev_set_t *devs = NULL;
    agent_t *agent = NULL;
    ft_err_t err = {0};

    ensure_std_fds();
    int p = parse_args(argc, argv);
    if (p != 0)
        return p > 0 ? 0 : EXIT_USAGE;
    /* The agent reads its CURVE settings from these (include/ft/curve.h). */
    if ((cli.key && setenv("FT_KEY", cli.key, 1) < 0) ||
        (cli.server_key && setenv("FT_SERVER_KEY", cli.server_key, 1) < 0))
        return EXIT_USAGE;
    size_t lvl = 0;
    while (lvl < 4 && strcmp(level_names[lvl], cli.log_level) != 0)
        lvl++;
    if (lvl == 4) {
        usage_error("--log-level: '%s' is not one of debug, info, warn, error",
                    ft_sanitize(cli.log_level, 32));
        return EXIT_USAGE;
    }
    ft_log_init("ftworker", (ft_log_level_t)lvl);
    if (strcmp(cli.spawn, "fork") != 0 && strcmp(cli.spawn, "vfork") != 0) {
        usage_error("--spawn: '%s' is not one of fork, vfork", ft_sanitize(cli.spawn, 32));
        return EXIT_USAGE;
    }
    /* Test hook, for tests only (tests/worker): the children of the rank spawner
     * sleep this long before their exec, as if it hung on a dead mount. Read once. */
    int64_t exec_delay_ms = 0;
    const char *delay = getenv("FT_TEST_EXEC_DELAY_MS");
    if (delay && *delay) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(delay, &end, 10);
        if (errno || end == delay || *end || v < 0 || v > 600000) {
            usage_error("FT_TEST_EXEC_DELAY_MS: '%s' is not an integer in [0, 600000]",
                        ft_sanitize(delay, 32));
            return EXIT_USAGE;
        }
        exec_delay_ms = v;
        if (v > 0)
            ft_warn("FT_TEST_EXEC_DELAY_MS=%lld (a test hook): ranks started by the spawner "
                    "wait %lld ms before their exec",
                    v, v);
    }
    if (gethostname(host, sizeof(host) - 1) < 0)
        ft_strlcpy(host, "localhost", sizeof(host));
    const char *nm = cli.name ? cli.name : host;
    if (!valid_name(nm)) {
        usage_error("--name: '%s' is not a valid node name (1-64 of [A-Za-z0-9._-])%s",
                    ft_sanitize(nm, 80), cli.name ? "" : "; the hostname needs --name");
        return EXIT_USAGE;
    }
    ft_strlcpy(name, nm, sizeof(name));

    const char *nvml = getenv("FT_NVML_LIBRARY");
    wdev_opts_t dopts = {
        .node_name = name,
        .cpu_devices = (int)cli.cpu_devices,
        .emulate_gpus = (int)cli.emulate_gpus,
        .gpu_model = cli.gpu_model,
        .gpu_mem_gb = cli.gpu_mem_gb,
        .nvml_library = nvml,
    };
    devs = wdev_set_new(&dopts, &err);
    if (!devs) {
        fprintf(stderr, "ftworker: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out;
    }
    state_dir = cli.state_dir ? strdup(cli.state_dir) : ft_asprintf("ftworker-%s", name);
    if (!state_dir || ft_mkdir_p(state_dir, &err) < 0) {
        ft_error("state dir: %s", state_dir ? err.msg : "out of memory");
        goto out;
    }
    dir_abs = realpath(state_dir, NULL);
    char *jobs = dir_abs ? ft_asprintf("%s/jobs", dir_abs) : NULL;
    int jobs_rc = jobs ? ft_mkdir_p(jobs, &err) : -1;
    free(jobs);
    if (!dir_abs || jobs_rc < 0) {
        ft_error("cannot use state dir '%s': %s", state_dir, dir_abs ? err.msg : strerror(errno));
        goto out;
    }
    rank_kill_leftovers(dir_abs);
    trainer = find_trainer(cli.trainer);
    ft_info("ftworker %s: node '%s' on '%s', scheduler '%s', state dir '%s', trainer '%s'",
            FT_VERSION_STRING, name, host, cli.scheduler, dir_abs, trainer);
    wdev_log(devs);

    agent_opts_t aopts = {
        .endpoint = cli.scheduler,
        .name = name,
        .hostname = host,
        .state_dir = dir_abs,
        .trainer = trainer,
        .shutdown_grace_ms = (int)cli.stop_grace_ms,
        .spawn_vfork = strcmp(cli.spawn, "vfork") == 0,
        .exec_delay_ms = exec_delay_ms,
    };
    agent = agent_new(&aopts, devs, &err);
    if (!agent) {
        fprintf(stderr, "ftworker: %s\n", err.msg);
        rc = err.code == FT_EBADFIELD ? EXIT_USAGE : 1;
        goto out;
    }
    devs = NULL; /* the agent owns it now */
    rc = agent_run(agent) == 0 ? 0 : 1;
    rank_spawn_counts_t sc;
    rank_spawn_counts(&sc);
    if (sc.forked > 0)
        ft_info("ranks started by the spawner: %llu, by fork while it was busy: %llu",
                (unsigned long long)sc.spawned, (unsigned long long)sc.forked);
out:
    agent_destroy(&agent);
    wdev_set_destroy(&devs);
    free(state_dir);
    free(dir_abs);
    free(trainer);
    return rc;
}
