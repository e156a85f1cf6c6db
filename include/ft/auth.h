/*
 * auth.h: who may talk to ftsched. CURVE key files, the keys file that maps
 * each client public key to a user, a team and a role, and the role rules.
 * Free of ZeroMQ: keys are handled as their 40-character Z85 text, which the
 * callers turn into socket options (ZMQ_CURVE_*).
 *
 * Files (docs/operations.md):
 *   key file (0600)   "public = Z85" and "secret = Z85" lines, '#' comment lines;
 *                      a public-only file (the server's public key) is valid
 *   keys file         one "PUBLIC_Z85 USER TEAM ROLE" per line, '#' comment
 *                      lines (a '#' later in a line is part of a key);
 *                      ROLE is user, lead, admin or worker
 */
#ifndef FT_AUTH_H
#define FT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "ft/common.h"
#include "ft/jobspec.h"

#define FT_Z85_KEY_LEN 40       /* Z85 text of a 32-byte CURVE key */
#define FT_KEYS_MAX 10000       /* entries in one keys file */
#define FT_KEYFILE_MAX (1 << 20) /* bytes of a keys file */

typedef enum {
    FT_ROLE_USER,   /* own jobs only */
    FT_ROLE_LEAD,   /* the team's jobs and usage */
    FT_ROLE_ADMIN,  /* everything */
    FT_ROLE_WORKER, /* node keys: worker messages only */
    FT_ROLE__COUNT
} ft_role_t;

/* One authorised key. */
typedef struct {
    char pub[FT_Z85_KEY_LEN + 1]; /* Z85 public key */
    char user[FT_NAME_MAX + 1];   /* user name (node name for workers) */
    char team[FT_NAME_MAX + 1];   /* team name */
    ft_role_t role;               /* what it may do */
} ft_identity_t;

/* A loaded keys file: entries sorted by pub for bsearch. */
typedef struct {
    ft_identity_t *ids; /* n entries, sorted by pub */
    size_t n;           /* entries */
} ft_keys_t;

/* A key pair as text; secret is "" in a public-only file. */
typedef struct {
    char pub[FT_Z85_KEY_LEN + 1];    /* Z85 public key */
    char secret[FT_Z85_KEY_LEN + 1]; /* Z85 secret key, "" when absent */
} ft_keypair_t;

const char *ft_role_name(ft_role_t r);
/* FT_ROLE__COUNT for an unknown name. */
ft_role_t ft_role_from_name(const char *name);

/* True when s is exactly 40 characters of the Z85 alphabet. */
bool ft_z85_key_ok(const char *s);

/* Reads a key file. need_secret: a missing "secret" line is an error. A key
 * file readable by group or others is refused when it holds a secret. */
int ft_keypair_load(const char *path, bool need_secret, ft_keypair_t *kp, ft_err_t *err);
/* Writes a key file with mode 0600 (atomically); secret may be "". */
int ft_keypair_save(const char *path, const ft_keypair_t *kp, ft_err_t *err);

/* Parses a keys file's text; duplicate keys, bad names and roles are errors
 * naming the line. ft_keys_free releases what it allocated. */
int ft_keys_parse(ft_keys_t *k, const char *text, const char *what, ft_err_t *err);
int ft_keys_load(ft_keys_t *k, const char *path, ft_err_t *err);
void ft_keys_free(ft_keys_t *k);
/* The entry for a Z85 public key, or NULL. O(log n). */
const ft_identity_t *ft_keys_find(const ft_keys_t *k, const char *pub);

/* May who act on a job owned by (user, team)? admin: any; lead: same team;
 * user: same user and team; worker: never. */
bool ft_auth_may_touch(const ft_identity_t *who, const char *user, const char *team);

/* A client's CURVE settings from the environment: $FT_KEY (its key file) and
 * $FT_SERVER_KEY (the server's public key file, or the Z85 text itself).
 * Neither set: 0 with *enabled false (plain connection). One set without the
 * other: an error. */
int ft_curve_client_env(ft_keypair_t *mine, char *server_pub, bool *enabled, ft_err_t *err);

#endif
