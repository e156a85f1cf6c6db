/*
 * config.c: ftsched settings: defaults, a "key = value" file and the command
 * line, all through one table of keys with their bounds.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "ft/proto.h"
#include "sched.h"

typedef enum { CK_STR, CK_INT, CK_LEVEL, CK_SYNC } ckind_t;

typedef struct {
    const char *name; /* key in the file */
    ckind_t kind;     /* value type */
    size_t off;       /* offsetof into sched_config_t */
    size_t size;      /* CK_STR: buffer size */
    long min, max;    /* CK_INT: inclusive bounds */
} ckey_t;

#define OFF(f) offsetof(sched_config_t, f)
#define SZ(f) sizeof(((sched_config_t *)0)->f)

static const ckey_t config_keys[] = {
    {"db", CK_STR, OFF(db_path), SZ(db_path), 0, 0},
    {"listen", CK_STR, OFF(listen), SZ(listen), 0, 0},
    {"heartbeat_ms", CK_INT, OFF(heartbeat_ms), 0, 10, 600000},
    {"liveness", CK_INT, OFF(liveness), 0, 1, 1000},
    {"gang_start_timeout_s", CK_INT, OFF(gang_start_timeout_s), 0, 1, 86400},
    {"stop_grace_ms", CK_INT, OFF(stop_grace_ms), 0, 0, 3600000},
    {"relay_timeout_ms", CK_INT, OFF(relay_timeout_ms), 0, 10, 600000},
    {"checkpoint_interval_s", CK_INT, OFF(checkpoint_interval_s), 0, 1, 86400},
    {"schedule_interval_ms", CK_INT, OFF(schedule_interval_ms), 0, 10, 600000},
    {"busy_timeout_ms", CK_INT, OFF(busy_timeout_ms), 0, 0, 600000},
    {"reserve_after_s", CK_INT, OFF(reserve_after_s), 0, 0, 30 * 86400},
    {"cost_file", CK_STR, OFF(cost_file), SZ(cost_file), 0, 0},
    {"log_level", CK_LEVEL, OFF(log_level), 0, 0, 0},
    {"keys_file", CK_STR, OFF(keys_file), SZ(keys_file), 0, 0},
    {"server_key", CK_STR, OFF(server_key), SZ(server_key), 0, 0},
    {"insecure", CK_INT, OFF(insecure), 0, 0, 1},
    {"path_roots", CK_STR, OFF(path_roots), SZ(path_roots), 0, 0},
    {"db_sync", CK_SYNC, OFF(db_sync), 0, 0, 0},
};

static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
/* Index = DB_SYNC_*. */
static const char *const sync_names[] = {"full", "normal", NULL};

void sched_config_defaults(sched_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    ft_strlcpy(cfg->db_path, "ft.db", sizeof(cfg->db_path));
    ft_strlcpy(cfg->listen, FT_DEFAULT_ENDPOINT, sizeof(cfg->listen));
    cfg->heartbeat_ms = FT_HEARTBEAT_MS;
    cfg->liveness = FT_LIVENESS;
    cfg->gang_start_timeout_s = 60;
    cfg->stop_grace_ms = 10000;
    cfg->relay_timeout_ms = 5000;
    cfg->checkpoint_interval_s = 60;
    cfg->schedule_interval_ms = 1000;
    cfg->busy_timeout_ms = 5000;
    cfg->reserve_after_s = 1800;
    cfg->log_level = FT_LOG_INFO;
    cfg->db_sync = DB_SYNC_FULL;
}

int sched_config_set(sched_config_t *cfg, const char *key, const char *value, ft_err_t *err)
{
    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
        const ckey_t *k = &config_keys[i];
        char *base = (char *)cfg;

        if (strcmp(k->name, key) != 0)
            continue;
        switch (k->kind) {
        case CK_STR:
            if (!*value || strlen(value) >= k->size) {
                ft_err_set(err, FT_EBADFIELD, "'%s': expected 1 to %zu bytes", key, k->size - 1);
                return -1;
            }
            ft_strlcpy(base + k->off, value, k->size);
            return 0;
        case CK_INT: {
            char *end;
            long v = strtol(value, &end, 10);

            if (end == value || *end || v < k->min || v > k->max) {
                ft_err_set(err, FT_EBADFIELD, "'%s': expected an integer in [%ld, %ld], got '%s'",
                           key, k->min, k->max, ft_sanitize(value, 64));
                return -1;
            }
            {
                int iv = (int)v;
                memcpy(base + k->off, &iv, sizeof(iv));
            }
            return 0;
        }
        case CK_LEVEL:
            for (int l = 0; level_names[l]; l++) {
                if (strcmp(level_names[l], value) == 0) {
                    ft_log_level_t lv = (ft_log_level_t)l;
                    memcpy(base + k->off, &lv, sizeof(lv));
                    return 0;
                }
            }
            ft_err_set(err, FT_EBADFIELD, "'%s': expected debug, info, warn or error, got '%s'",
                       key, ft_sanitize(value, 64));
            return -1;
        case CK_SYNC:
            for (int l = 0; sync_names[l]; l++) {
                if (strcmp(sync_names[l], value) == 0) {
                    memcpy(base + k->off, &l, sizeof(l));
                    return 0;
                }
            }
            ft_err_set(err, FT_EBADFIELD, "'%s': expected full or normal, got '%s'", key,
                       ft_sanitize(value, 64));
            return -1;
        }
    }
    ft_err_set(err, FT_EBADFIELD, "unknown key '%s'", ft_sanitize(key, 64));
    return -1;
}

int sched_config_load(sched_config_t *cfg, const char *path, ft_err_t *err)
{
    size_t len = 0;
    char *text = ft_read_file(path, 1 << 20, &len, err);
    char *line, *save = NULL;
    int lineno = 0, rc = -1;

    if (!text)
        return -1;
    if (strlen(text) != len) {
        ft_err_set(err, FT_EBADFIELD, "config '%s': contains a NUL byte", path);
        goto out;
    }
    /* strtok_r would skip empty lines and miscount; split by hand. */
    for (line = text; line; line = save) {
        char *eq, *key, *val;
        ft_err_t kerr;

        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        if (strchr(line, '#'))
            *strchr(line, '#') = '\0';
        line = ft_trim(line);
        if (!*line)
            continue;
        eq = strchr(line, '=');
        if (!eq) {
            ft_err_set(err, FT_EBADFIELD, "config '%s' line %d: expected 'key = value'", path,
                       lineno);
            goto out;
        }
        *eq = '\0';
        key = ft_trim(line);
        val = ft_trim(eq + 1);
        if (sched_config_set(cfg, key, val, &kerr) < 0) {
            ft_err_set(err, FT_EBADFIELD, "config '%s' line %d: %s", path, lineno, kerr.msg);
            goto out;
        }
    }
    rc = 0;
out:
    free(text);
    return rc;
}
