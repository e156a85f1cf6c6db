/*
 * client/main.c: ftctl's entry point: global options, the config file, and the
 * subcommand table that dispatch, `-h` and `help CMD` all read.
 *
 * Precedence for every setting: command-line flag, then environment, then the
 * config file ($FT_CONFIG or ~/.config/ft/ftctl.conf), then the built-in default.
 * The config file is `key = value` lines; '#' starts a comment; an unknown key or
 * a bad value is a usage error naming the file, the line and the key.
 *
 * Cost: one linear scan of the tables below; nothing else happens before the
 * handler sends its request.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftctl.h"

/* ---- the subcommand table ---- */

typedef struct {
    const char *name;                              /* subcommand word */
    int (*run)(ftctl_t *c, int argc, char **argv); /* argv[0] is the name */
    const char *usage;                             /* arguments, after the name */
    const char *summary;                           /* one line for `ftctl -h` */
    const char *options;                           /* option lines, or NULL */
} ftctl_cmd_t;

static const ftctl_cmd_t commands[] = {
    {"submit", ftctl_cmd_submit,
     "[--team T] [--gpus N] [--name X] [--priority P] [--cpu] [--array N] JOB.json\n"
     "   or: ftctl submit [--team T] [--gpus N] [--name X] [--priority P] [--cpu] [--array N]\n"
     "                    -- CMD [ARG...]",
     "submit a job spec file, or wrap a command in an exec job; prints the job id(s)",
     "  --team T       team to bill (default: $FT_TEAM, config 'team', else 'default')\n"
     "  --gpus N       ranks, one device each (default 1; overrides the file)\n"
     "  --name X       job name (default: the command's first word)\n"
     "  --priority P   -1000..1000, higher runs first (default 0)\n"
     "  --cpu          run on CPU devices only (spec \"device\": \"cpu\")\n"
     "  --array N      N jobs of this spec in one request, 1..1000; each rank gets\n"
     "                 FT_ARRAY_INDEX (0..N-1) and FT_ARRAY_JOB_ID (the first job's id)\n"},
    {"ls", ftctl_cmd_ls, "[--all] [--state S[,S...]] [--user U]",
     "list jobs: pending and running ones, and the last 20 finished",
     "  --all          every job (newest 10000)\n"
     "  --state S      only these states (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)\n"
     "  --user U       only jobs of user U\n"},
    {"show", ftctl_cmd_show, "ID", "show one job: spec, ranks, allocations, progress, events",
     NULL},
    {"logs", ftctl_cmd_logs, "ID [--rank R] [-f]", "print the output of a job's rank",
     "  --rank R       rank to read (default 0)\n"
     "  -f, --follow   keep printing new output until the rank ends\n"},
    {"watch", ftctl_cmd_watch, "ID",
     "follow a job's progress (step, loss, tokens/s, ETA) until it ends; exits like wait", NULL},
    {"cancel", ftctl_cmd_cancel, "[--reason TEXT] ID...", "cancel jobs",
     "  --reason TEXT  recorded with the cancellation (default 'cancelled by USER')\n"},
    {"wait", ftctl_cmd_wait, "[--timeout S] ID...",
     "wait until jobs end; exit 0 only if all COMPLETED, else 4",
     "  --timeout S    give up after S seconds (exit 4; default: wait for ever)\n"},
    {"nodes", ftctl_cmd_nodes, "", "list worker nodes and their devices", NULL},
    {"usage", ftctl_cmd_usage, "[--by KEY] [--since T] [--until T] [--cloud OFFER]",
     "GPU-hours, energy and cost from the ledger, grouped; -o csv for spreadsheets",
     "  --by KEY       user, team, job, node, gpu_model, day or month (default user)\n"
     "  --since T      start: 2026-11-30, 2026-11-30T06:00:00Z, -7d, -12h, unix seconds\n"
     "  --until T      end, same forms (default now)\n"
     "  --cloud OFFER  cloud offer the difference is computed against (default the first)\n"},
    {"report", ftctl_cmd_report, "[--since T] [--until T] [--html FILE]",
     "utilisation, break-even against cloud offers, budgets and top jobs (default 30 days)",
     "  --since T      start (default 30 days before --until)\n"
     "  --until T      end (default now)\n"
     "  --html FILE    write one self-contained page with charts for team leads\n"},
    {"ping", ftctl_cmd_ping, "", "check that the scheduler answers; prints its version", NULL},
    {"keygen", ftctl_cmd_keygen, "FILE [USER TEAM ROLE]",
     "make a CURVE key pair (0600) and print its keys-file line", NULL},
    {"agent", ftctl_cmd_agent,
     "start [--persist S] [--log FILE] | run [--persist S] | stop | status",
     "hold one scheduler connection for this user's ftctl calls (like ssh-agent)",
     "  start          start one in the background; prints its socket path\n"
     "  run            run one in the foreground (logs on stderr; for systemd --user)\n"
     "  stop           stop this endpoint's agent\n"
     "  status         socket, pid, scheduler, requests relayed, uptime (-o json)\n"
     "  --persist S    exit after S seconds without a client (default 600; 0 = never)\n"
     "  --log FILE     start: append the agent's log to FILE (default /dev/null)\n"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char exit_codes_text[] =
    "exit codes: 0 ok, 1 request failed, 2 usage error, 3 scheduler unreachable,\n"
    "            4 wait/watch: a job did not complete (FAILED, CANCELLED or time-out)\n";

static const char global_options_text[] =
    "  --scheduler E  scheduler endpoint (default: $FT_SCHEDULER, config 'scheduler',\n"
    "                 else " FT_DEFAULT_ENDPOINT ")\n"
    "  -o, --output F table, json or csv (default table; config 'output')\n"
    "  --timeout S    seconds to wait for each reply (default 5)\n"
    "  --user U       user name (default: config 'user', else $USER)\n"
    "  --key FILE     own CURVE key file (default: $FT_KEY, config 'key')\n"
    "  --server-key K the scheduler's public key, a file or its 40-character text\n"
    "                 (default: $FT_SERVER_KEY, config 'server_key')\n"
    "  --agent M      auto (use a running agent), off (always direct), persist (start\n"
    "                 one when none runs) (default: $FT_AGENT, config 'agent', else auto)\n"
    "  -h, --help     this help; `ftctl help CMD` for one subcommand\n"
    "  --version      print ftctl's version\n";

static const ftctl_cmd_t *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Exact name, else a unique prefix ("sh" for show). NULL when unknown or
 * ambiguous; the message (naming the candidates) is printed. */
static const ftctl_cmd_t *lookup_command(const char *name)
{
    const ftctl_cmd_t *e = find_command(name);
    if (e)
        return e;
    char cands[256] = "";
    int n = 0;
    size_t len = strlen(name);
    for (size_t i = 0; len && i < N_COMMANDS; i++) {
        if (strncmp(commands[i].name, name, len) != 0)
            continue;
        e = &commands[i];
        size_t off = strlen(cands);
        snprintf(cands + off, sizeof(cands) - off, "%s%s", n ? ", " : "", commands[i].name);
        n++;
    }
    if (n == 1)
        return e;
    if (n > 1)
        ftctl_die_msg("ambiguous command '%s', could be: %s", ft_sanitize(name, 64), cands);
    else
        ftctl_die_msg("unknown command '%s'; see 'ftctl -h'", ft_sanitize(name, 64));
    return NULL;
}

static void print_main_help(FILE *f)
{
    fprintf(f,
            "usage: ftctl [--scheduler E] [-o table|json|csv] [--timeout S] [--user U]\n"
            "             [--key FILE] [--server-key K] [--agent M] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\noptions:\n%s\n%s", global_options_text, exit_codes_text);
}

int ftctl_usage(const char *cmd, int status)
{
    const ftctl_cmd_t *e = find_command(cmd);
    FILE *f = status ? stderr : stdout;
    if (!e) {
        print_main_help(f);
        return status;
    }
    fprintf(f, "usage: ftctl %s %s\n", e->name, e->usage);
    if (status == 0) {
        fprintf(f, "\n%s\n", e->summary);
        if (e->options)
            fprintf(f, "\noptions:\n%s", e->options);
        fprintf(f, "  -h, --help     this help\n\n%s", exit_codes_text);
    }
    return status;
}

int ftctl_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ftctl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return ftctl_usage(cmd, FTCTL_EXIT_USAGE);
}

int ftctl_only_help_opt(const char *cmd, int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            ftctl_usage(cmd, 0);
            return -1;
        }
        return ftctl_usage_error(cmd, "unknown option '%s'", ft_sanitize(argv[optind - 1], 64));
    }
    return FTCTL_EXIT_OK;
}

int ftctl_time_opt(const char *cmd, const char *opt, const char *arg, int64_t now, int64_t *out)
{
    int64_t v;

    if (ft_parse_time(arg, now, &v) < 0 || v < 0)
        return ftctl_usage_error(cmd,
                                 "bad %s '%s': expected 2026-11-30, "
                                 "2026-11-30T06:00:00Z, now, -7d, -12h or unix seconds",
                                 opt, ft_sanitize(arg, 32));
    *out = v;
    return FTCTL_EXIT_OK;
}

/* ---- phase trace ($FTCTL_TRACE) ---- */

static bool trace_on;     /* $FTCTL_TRACE is set and not "0" */
static double trace_t0;   /* ms (CLOCK_MONOTONIC) at ftctl_trace_init */
static double trace_last; /* ms of the previous trace line */

static double mono_ms_frac(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void ftctl_trace_init(void)
{
    const char *v = getenv("FTCTL_TRACE");
    trace_on = v && *v && strcmp(v, "0") != 0;
    if (trace_on)
        trace_t0 = trace_last = mono_ms_frac();
}

void ftctl_trace(const char *phase)
{
    if (!trace_on)
        return;
    double now = mono_ms_frac();
    fprintf(stderr, "ftctl: trace: %-12s %8.3f ms  +%.3f ms\n", phase, now - trace_t0,
            now - trace_last);
    trace_last = now;
}

void ftctl_die_msg(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout); /* keep the order of stdout and stderr lines when both are one file */
    fputs("ftctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- settings: validation shared by flags, environment and config ---- */

static int set_endpoint(ftctl_t *c, const char *v, const char *origin)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strncmp(v, schemes[i], strlen(schemes[i])) == 0 && v[strlen(schemes[i])])
            ok = true;
    if (!ok || strlen(v) >= sizeof(c->endpoint)) {
        ftctl_die_msg("%s: bad scheduler endpoint '%s': expected tcp://HOST:PORT or ipc://PATH",
                      origin, ft_sanitize(v, 64));
        return -1;
    }
    ft_strlcpy(c->endpoint, v, sizeof(c->endpoint));
    return 0;
}

static int set_name(char *dst, const char *v, const char *what, const char *origin)
{
    size_t n = strlen(v);
    if (n == 0 || n > FT_NAME_MAX ||
        strspn(v, "abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
        ftctl_die_msg("%s: bad %s '%s': expected 1..%d of [A-Za-z0-9._-]", origin, what,
                      ft_sanitize(v, 64), FT_NAME_MAX);
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

static int set_user(ftctl_t *c, const char *v, const char *origin)
{
    return set_name(c->user, v, "user", origin);
}

static int set_team(ftctl_t *c, const char *v, const char *origin)
{
    return set_name(c->team, v, "team", origin);
}

static int set_output(ftctl_t *c, const char *v, const char *origin)
{
    if (strcmp(v, "table") == 0)
        c->output = FTCTL_OUT_TABLE;
    else if (strcmp(v, "json") == 0)
        c->output = FTCTL_OUT_JSON;
    else if (strcmp(v, "csv") == 0)
        c->output = FTCTL_OUT_CSV;
    else {
        ftctl_die_msg("%s: bad output format '%s': expected table, json or csv", origin,
                      ft_sanitize(v, 64));
        return -1;
    }
    return 0;
}

static int set_timeout(ftctl_t *c, const char *v, const char *origin)
{
    double s;
    if (ftctl_parse_seconds(v, 3600, &s) < 0) {
        ftctl_die_msg("%s: bad timeout '%s': expected seconds in (0, 3600]", origin,
                      ft_sanitize(v, 64));
        return -1;
    }
    c->timeout_ms = (int)(s * 1000.0 + 0.5);
    if (c->timeout_ms < 1)
        c->timeout_ms = 1;
    return 0;
}

/* The agent setting: a table of its words. */
static const struct {
    const char *name;        /* value in flags, $FT_AGENT and the config */
    ftctl_agent_mode_t mode; /* what it selects */
} agent_modes[] = {
    {"auto", FTCTL_AGENT_AUTO},
    {"off", FTCTL_AGENT_OFF},
    {"persist", FTCTL_AGENT_PERSIST},
};

static int set_agent(ftctl_t *c, const char *v, const char *origin)
{
    for (size_t i = 0; i < sizeof(agent_modes) / sizeof(agent_modes[0]); i++)
        if (strcmp(agent_modes[i].name, v) == 0) {
            c->agent = agent_modes[i].mode;
            return 0;
        }
    ftctl_die_msg("%s: bad agent setting '%s': expected auto, off or persist", origin,
                  ft_sanitize(v, 64));
    return -1;
}

static int set_agent_socket(ftctl_t *c, const char *v, const char *origin)
{
    /* sun_path holds 108 bytes with its NUL */
    if (v[0] != '/' || strlen(v) > 107) {
        ftctl_die_msg("%s: bad agent socket '%s': expected an absolute path of at most 107 bytes",
                      origin, ft_sanitize(v, 64));
        return -1;
    }
    ft_strlcpy(c->agent_socket, v, sizeof(c->agent_socket));
    return 0;
}

/* CURVE settings travel in $FT_KEY and $FT_SERVER_KEY, which the shared
 * client code (ft_curve_client_env) reads; a flag overrides the environment,
 * a config file line only fills it in. */
static int set_curve_env(const char *name, const char *v, const char *origin, bool override)
{
    if (!*v || strlen(v) >= FT_PATH_MAX) {
        ftctl_die_msg("%s: expected a key file or key text of 1 to %d characters", origin,
                      FT_PATH_MAX - 1);
        return -1;
    }
    const char *cur = getenv(name);
    if (!override && cur && *cur)
        return 0; /* the environment wins over the config file */
    if (setenv(name, v, 1) < 0) {
        ftctl_die_msg("%s: cannot set %s: %s", origin, name, strerror(errno));
        return -1;
    }
    return 0;
}

static int conf_key(ftctl_t *c, const char *v, const char *origin)
{
    (void)c;
    return set_curve_env("FT_KEY", v, origin, false);
}

static int conf_server_key(ftctl_t *c, const char *v, const char *origin)
{
    (void)c;
    return set_curve_env("FT_SERVER_KEY", v, origin, false);
}

/* The config keys: one row each. */
typedef struct {
    const char *key;                                           /* name in the file */
    int (*set)(ftctl_t *c, const char *v, const char *origin); /* validates and stores */
} ftctl_conf_key_t;

static const ftctl_conf_key_t conf_keys[] = {
    {"scheduler", set_endpoint},     {"user", set_user},       {"team", set_team},
    {"output", set_output},          {"timeout", set_timeout}, {"key", conf_key},
    {"server_key", conf_server_key}, {"agent", set_agent},     {"agent_socket", set_agent_socket},
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Reads the config file. A missing default file is fine; a missing $FT_CONFIG is
 * not (the user asked for it). Returns 0 or -1 (message printed). */
static int load_config(ftctl_t *c)
{
    char path[FT_PATH_MAX];
    const char *env = getenv("FT_CONFIG");
    bool explicit_path = env && *env;
    if (explicit_path) {
        ft_strlcpy(path, env, sizeof(path));
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home)
            return 0;
        snprintf(path, sizeof(path), "%s/.config/ft/ftctl.conf", home);
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && !explicit_path)
            return 0;
        ftctl_die_msg("cannot open config '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char origin[FT_PATH_MAX + 32];
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            ftctl_die_msg("%s: line too long", origin);
            rc = -1;
            goto out;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        s = trim(s);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            ftctl_die_msg("%s: expected 'key = value'", origin);
            rc = -1;
            goto out;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        const ftctl_conf_key_t *k = NULL;
        for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++)
            if (strcmp(conf_keys[i].key, key) == 0)
                k = &conf_keys[i];
        if (!k) {
            ftctl_die_msg(
                "%s: unknown key '%s' (known: scheduler, user, team, output, timeout, key, "
                "server_key, agent, agent_socket)",
                origin, ft_sanitize(key, 64));
            rc = -1;
            goto out;
        }
        if (k->set(c, val, origin) < 0) {
            rc = -1;
            goto out;
        }
    }
    if (ferror(f)) {
        ftctl_die_msg("cannot read config '%s': %s", path, strerror(errno));
        rc = -1;
    }
out:
    fclose(f);
    return rc;
}

/* `-o F` / `--output F` may also follow the subcommand (`ftctl nodes -o json`),
 * as scripts often write it; they are taken out of argv here, up to a "--"
 * (what follows belongs to a wrapped command). Returns the new argc, or -1. */
static int take_output_option(ftctl_t *c, int argc, char **argv)
{
    int out = 1;
    bool rest = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (!rest && strcmp(a, "--") == 0)
            rest = true;
        if (!rest && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)) {
            if (i + 1 >= argc) {
                ftctl_die_msg("option '%s' needs a value", a);
                return -1;
            }
            val = argv[++i];
        } else if (!rest && strncmp(a, "--output=", 9) == 0) {
            val = a + 9;
        } else if (!rest && (strcmp(a, "-ojson") == 0 || strcmp(a, "-otable") == 0)) {
            val = a + 2;
        }
        if (val) {
            if (set_output(c, val, a[1] == 'o' ? "-o" : "--output") < 0)
                return -1;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

/* ---- main ---- */

enum {
    OPT_SCHEDULER = 256,
    OPT_TIMEOUT,
    OPT_USER,
    OPT_VERSION,
    OPT_KEY,
    OPT_SERVER_KEY,
    OPT_AGENT
};

int main(int argc, char **argv)
{
    ftctl_t c;
    ftctl_trace_init();
    memset(&c, 0, sizeof(c));
    ft_strlcpy(c.endpoint, FT_DEFAULT_ENDPOINT, sizeof(c.endpoint));
    ft_strlcpy(c.team, "default", sizeof(c.team));
    c.timeout_ms = 5000;
    c.output = FTCTL_OUT_TABLE;
    c.agent = FTCTL_AGENT_AUTO;
    c.agent_fd = -1;

    /* Built-in defaults, then the config file, then the environment. */
    const char *user = getenv("USER");
    if (!user || !*user) {
        struct passwd *pw = getpwuid(getuid());
        user = pw ? pw->pw_name : "unknown";
    }
    if (set_user(&c, user, "$USER") < 0)
        return FTCTL_EXIT_USAGE;
    if (load_config(&c) < 0)
        return FTCTL_EXIT_USAGE;
    const char *env = getenv("FT_SCHEDULER");
    if (env && *env && set_endpoint(&c, env, "$FT_SCHEDULER") < 0)
        return FTCTL_EXIT_USAGE;
    env = getenv("FT_TEAM");
    if (env && *env && set_team(&c, env, "$FT_TEAM") < 0)
        return FTCTL_EXIT_USAGE;
    env = getenv("FT_AGENT");
    if (env && *env && set_agent(&c, env, "$FT_AGENT") < 0)
        return FTCTL_EXIT_USAGE;
    env = getenv("FT_AGENT_SOCKET");
    if (env && *env && set_agent_socket(&c, env, "$FT_AGENT_SOCKET") < 0)
        return FTCTL_EXIT_USAGE;

    static const struct option opts[] = {
        {"scheduler", required_argument, NULL, OPT_SCHEDULER},
        {"output", required_argument, NULL, 'o'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"user", required_argument, NULL, OPT_USER},
        {"key", required_argument, NULL, OPT_KEY},
        {"server-key", required_argument, NULL, OPT_SERVER_KEY},
        {"agent", required_argument, NULL, OPT_AGENT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "+:o:h", opts, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case OPT_SCHEDULER:
            rc = set_endpoint(&c, optarg, "--scheduler");
            break;
        case 'o':
            rc = set_output(&c, optarg, "--output");
            break;
        case OPT_TIMEOUT:
            rc = set_timeout(&c, optarg, "--timeout");
            break;
        case OPT_USER:
            rc = set_user(&c, optarg, "--user");
            break;
        case OPT_KEY:
            rc = set_curve_env("FT_KEY", optarg, "--key", true);
            break;
        case OPT_SERVER_KEY:
            rc = set_curve_env("FT_SERVER_KEY", optarg, "--server-key", true);
            break;
        case OPT_AGENT:
            rc = set_agent(&c, optarg, "--agent");
            break;
        case 'h':
            print_main_help(stdout);
            return FTCTL_EXIT_OK;
        case OPT_VERSION:
            printf("ftctl %s (protocol %d)\n", FT_VERSION_STRING, FT_PROTO_VERSION);
            return FTCTL_EXIT_OK;
        case ':':
            ftctl_die_msg("option '%s' needs a value", argv[optind - 1]);
            rc = -1;
            break;
        default:
            ftctl_die_msg("unknown option '%s'", ft_sanitize(argv[optind - 1], 64));
            rc = -1;
            break;
        }
        if (rc < 0) {
            fputs("usage: ftctl [OPTIONS] COMMAND [ARGS]  (ftctl -h for help)\n", stderr);
            return FTCTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        print_main_help(stderr);
        return FTCTL_EXIT_USAGE;
    }
    ftctl_trace("settings");
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        if (optind + 1 >= argc) {
            print_main_help(stdout);
            return FTCTL_EXIT_OK;
        }
        const ftctl_cmd_t *h = lookup_command(argv[optind + 1]);
        if (!h)
            return FTCTL_EXIT_USAGE;
        return ftctl_usage(h->name, 0);
    }
    const ftctl_cmd_t *cmd = lookup_command(name);
    if (!cmd)
        return FTCTL_EXIT_USAGE;
    /* Handlers parse their own options with getopt_long from a fresh start
     * (optind 0 re-initialises glibc's getopt); argv[0] is the command word. */
    int first = optind;
    int sub_argc = take_output_option(&c, argc - first, argv + first);
    if (sub_argc < 0)
        return FTCTL_EXIT_USAGE;
    optind = 0;
    opterr = 0;
    int rc = cmd->run(&c, sub_argc, argv + first);
    ftctl_trace("handler");
    ftctl_close(&c);
    ftctl_trace("closed");
    return rc;
}
