/*
 * main.c: ftsched's command line. Settings come from defaults, then the
 * config file, then options, the later winning.
 */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/common.h"
#include "db.h"
#include "ft/cost.h"
#include "keys_init.h"
#include "server.h"

static const char usage_text[] =
    "usage: ftsched [--db PATH] [--listen ENDPOINT] [--config FILE]\n"
    "               [--heartbeat-ms N] [--liveness N] [--log-level LEVEL]\n"
    "               (--keys FILE --server-key FILE | --insecure)\n"
    "       ftsched init DIR [ADMIN_USER [TEAM]]\n"
    "\n"
    "The ft scheduler: keeps the job queue, allocations and ledger in SQLite and\n"
    "serves ftctl and ftworker over ZeroMQ.\n"
    "\n"
    "  --db PATH            database file (default ft.db)\n"
    "  --listen ENDPOINT    ZeroMQ endpoint to bind (default "
    "tcp://127.0.0.1:7461"
    ")\n"
    "  --config FILE        'key = value' settings: db, listen, heartbeat_ms, liveness,\n"
    "                       gang_start_timeout_s, stop_grace_ms, relay_timeout_ms,\n"
    "                       checkpoint_interval_s, schedule_interval_ms,\n"
    "                       busy_timeout_ms, reserve_after_s, log_level, db_sync\n"
    "  --heartbeat-ms N     heartbeat interval (default 1000)\n"
    "  --liveness N         missed heartbeats before a worker is lost (default 5)\n"
    "  --log-level LEVEL    debug, info, warn or error (default info)\n"
    "  --cost FILE          cost model: prices, power, budgets (docs/cost-model.md)\n"
    "  --keys FILE          authorised keys: 'PUBLIC USER TEAM ROLE' lines\n"
    "  --server-key FILE    the server's CURVE key pair (from 'ftsched init')\n"
    "  --insecure           no CURVE, no authentication (loopback experiments only)\n"
    "  --path-roots DIRS    ':'-separated roots that spec paths must lie under\n"
    "  --db-sync MODE       full (default): synced before anything is sent, nothing\n"
    "                       acknowledged is lost at a power cut; normal: no syncs but at\n"
    "                       checkpoints, survives a crash of ftsched, not a power loss\n"
    "  init DIR             create DIR/server.key, server.pub, admin.key and keys\n"
    "  -h, --help           show this help\n"
    "  --version            show the version\n";

/* Long options and the config key each one sets ("" = handled here). */
static const struct {
    struct option opt; /* getopt_long row */
    const char *key;   /* config key it sets */
} options[] = {
    {{"db", required_argument, NULL, 'd'}, "db"},
    {{"listen", required_argument, NULL, 'l'}, "listen"},
    {{"config", required_argument, NULL, 'c'}, ""},
    {{"heartbeat-ms", required_argument, NULL, 'b'}, "heartbeat_ms"},
    {{"liveness", required_argument, NULL, 'v'}, "liveness"},
    {{"log-level", required_argument, NULL, 'L'}, "log_level"},
    {{"cost", required_argument, NULL, 'C'}, "cost_file"},
    {{"keys", required_argument, NULL, 'K'}, "keys_file"},
    {{"server-key", required_argument, NULL, 'S'}, "server_key"},
    {{"insecure", no_argument, NULL, 'I'}, "insecure"},
    {{"path-roots", required_argument, NULL, 'P'}, "path_roots"},
    {{"db-sync", required_argument, NULL, 'Y'}, "db_sync"},
    {{"help", no_argument, NULL, 'h'}, ""},
    {{"version", no_argument, NULL, 'V'}, ""},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* An option seen on the command line, applied after the config file. */
typedef struct {
    const char *key;   /* config key */
    const char *value; /* its text */
} opt_set_t;

int main(int argc, char **argv)
{
    struct option longopts[N_OPTIONS + 1];
    sched_config_t cfg;
    const char *config = NULL;
    ft_err_t err;
    sched_t *s;
    int c, rc;
    opt_set_t set[16];
    int nset = 0;

    /* glibc gives the top of the heap back whenever 128 KiB lie free there,
     * and SQLite's transactions free and take that much again every few
     * jobs: each round trip was a brk shrink (a TLB flush sent to libzmq's
     * I/O thread) and page faults to grow back, 5% of the CPU in a drain.
     * Keep up to 8 MiB; blocks up to 1 MiB come from the heap (setting one
     * threshold fixes the other, which glibc would otherwise adapt). */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    for (size_t i = 0; i < N_OPTIONS; i++)
        longopts[i] = options[i].opt;
    memset(&longopts[N_OPTIONS], 0, sizeof(longopts[0]));
    sched_config_defaults(&cfg);
    ft_log_init("ftsched", FT_LOG_INFO);
    if (argc >= 3 && argc <= 5 && strcmp(argv[1], "init") == 0) {
        const char *admin = argc > 3 ? argv[3] : "admin", *team = argc > 4 ? argv[4] : "admins";

        if (sched_keys_init(argv[2], admin, team, &err) < 0) {
            fprintf(stderr, "ftsched: init: %s\n", err.msg);
            return 1;
        }
        printf("created %s/server.key (keep secret), %s/server.pub (give to workers and users),\n"
               "%s/admin.key (user '%s', team '%s', role admin) and %s/keys\n"
               "start: ftsched --keys %s/keys --server-key %s/server.key\n",
               argv[2], argv[2], argv[2], admin, team, argv[2], argv[2], argv[2]);
        return 0;
    }
    /* First pass: collect; the config file is read before options apply. */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            return 0;
        }
        if (c == 'V') {
            printf("ftsched %s\n", FT_VERSION_STRING);
            return 0;
        }
        if (c == 'c') {
            config = optarg;
            continue;
        }
        if (c == '?') {
            fputs(usage_text, stderr);
            return 2;
        }
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (options[i].opt.val == c && options[i].key[0] && nset < 16)
                set[nset++] = (opt_set_t){options[i].key, optarg ? optarg : "1"};
    }
    if (optind < argc) {
        fprintf(stderr, "ftsched: unexpected argument '%s'\n", ft_sanitize(argv[optind], 64));
        fputs(usage_text, stderr);
        return 2;
    }
    if (config && sched_config_load(&cfg, config, &err) < 0) {
        fprintf(stderr, "ftsched: %s\n", err.msg);
        return 2;
    }
    for (int i = 0; i < nset; i++) {
        if (sched_config_set(&cfg, set[i].key, set[i].value, &err) < 0) {
            fprintf(stderr, "ftsched: option --%s: %s\n", set[i].key, err.msg);
            return 2;
        }
    }
    ft_log_init("ftsched", cfg.log_level);
    if (cfg.cost_file[0]) { /* a bad cost model stops start-up, like a bad setting */
        cost_model_t *cm = malloc(sizeof(*cm));

        if (cm)
            cost_model_defaults(cm);
        if (!cm || cost_model_load(cm, cfg.cost_file, &err) < 0) {
            fprintf(stderr, "ftsched: cost model: %s\n", cm ? err.msg : "out of memory");
            free(cm);
            return 2;
        }
        free(cm);
    }
    s = sched_new(&cfg, &err);
    if (!s) {
        ft_error("%s", err.msg);
        return 1;
    }
    ft_info("ftsched %s: database '%s' (db_sync %s), heartbeat %d ms x %d", FT_VERSION_STRING,
            cfg.db_path, cfg.db_sync == DB_SYNC_NORMAL ? "normal" : "full", cfg.heartbeat_ms,
            cfg.liveness);
    rc = server_run(s, cfg.listen, &err);
    if (rc < 0)
        ft_error("%s", err.msg);
    sched_destroy(&s);
    return rc < 0 ? 1 : 0;
}
