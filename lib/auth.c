/*
 * auth.c: key files, the keys file (public key -> user, team, role) and the
 * role rules used by ftsched's ZAP handler and request checks.
 *
 * Invariants: a loaded ft_keys_t has unique, valid Z85 keys sorted for
 * bsearch; names match [A-Za-z0-9._-]{1,64}. A key file holding a secret is
 * written 0600 and refused when group or others can read it.
 *
 * Cost: loading is O(n log n) in keys; a lookup is O(log n).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft/auth.h"

static const char *const role_names[FT_ROLE__COUNT] = {
    [FT_ROLE_USER] = "user",
    [FT_ROLE_LEAD] = "lead",
    [FT_ROLE_ADMIN] = "admin",
    [FT_ROLE_WORKER] = "worker",
};

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

const char *ft_role_name(ft_role_t r)
{
    return r < FT_ROLE__COUNT ? role_names[r] : "?";
}

ft_role_t ft_role_from_name(const char *name)
{
    for (int i = 0; i < FT_ROLE__COUNT; i++)
        if (strcmp(role_names[i], name) == 0)
            return (ft_role_t)i;
    return FT_ROLE__COUNT;
}

bool ft_z85_key_ok(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (n >= FT_Z85_KEY_LEN || !strchr(z85_chars, s[n]))
            return false;
    return n == FT_Z85_KEY_LEN;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > FT_NAME_MAX)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Splits text into lines in place; skips '#' comment lines and blanks. Calls fn
 * per non-empty line with its 1-based number. */
typedef int (*line_fn)(void *ctx, char *line, int lineno, ft_err_t *err);

static int each_line(char *text, line_fn fn, void *ctx, ft_err_t *err)
{
    int lineno = 0;

    for (char *line = text; line;) {
        char *next = strchr(line, '\n'), *end;

        if (next)
            *next++ = '\0';
        lineno++;
        while (*line == ' ' || *line == '\t' || *line == '\r')
            line++;
        /* Only whole-line comments: '#' is a Z85 digit. */
        if (*line == '#')
            *line = '\0';
        end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            *--end = '\0';
        if (*line && fn(ctx, line, lineno, err) < 0)
            return -1;
        line = next;
    }
    return 0;
}

typedef struct {
    const char *path;  /* for messages */
    ft_keypair_t *kp;  /* filled in */
} kp_ctx_t;

static int keypair_line(void *vctx, char *line, int lineno, ft_err_t *err)
{
    kp_ctx_t *c = vctx;
    char *eq = strchr(line, '='), *k = line, *v, *e;
    char *dst;

    if (!eq) {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: expected 'public = KEY' or 'secret = KEY'",
                   ft_sanitize(c->path, 200), lineno);
        return -1;
    }
    *eq = '\0';
    for (e = eq; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
        e[-1] = '\0';
    for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
        ;
    if (strcmp(k, "public") == 0)
        dst = c->kp->pub;
    else if (strcmp(k, "secret") == 0)
        dst = c->kp->secret;
    else {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: unknown key '%s'", ft_sanitize(c->path, 200),
                   lineno, ft_sanitize(k, 32));
        return -1;
    }
    if (*dst) {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: '%s' given twice", ft_sanitize(c->path, 200),
                   lineno, k);
        return -1;
    }
    if (!ft_z85_key_ok(v)) {
        /* Never echo what may be a secret. */
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: '%s' is not a 40-character Z85 key",
                   ft_sanitize(c->path, 200), lineno, k);
        return -1;
    }
    memcpy(dst, v, FT_Z85_KEY_LEN + 1);
    return 0;
}

int ft_keypair_load(const char *path, bool need_secret, ft_keypair_t *kp, ft_err_t *err)
{
    struct stat st;
    kp_ctx_t c = {path, kp};
    char *text;
    int rc = -1;

    memset(kp, 0, sizeof(*kp));
    if (!(text = ft_read_file(path, 64 * 1024, NULL, err)))
        return -1;
    if (each_line(text, keypair_line, &c, err) < 0)
        goto out;
    if (!kp->pub[0]) {
        ft_err_set(err, FT_EMISSING, "'%s': no 'public' key", ft_sanitize(path, 200));
        goto out;
    }
    if (need_secret && !kp->secret[0]) {
        ft_err_set(err, FT_EMISSING, "'%s': no 'secret' key (is this a public key file?)",
                   ft_sanitize(path, 200));
        goto out;
    }
    if (kp->secret[0] && stat(path, &st) == 0 && (st.st_mode & 077)) {
        ft_err_set(err, FT_EFORBIDDEN,
                   "'%s' holds a secret key but others can read it (mode %03o): chmod 600 it",
                   ft_sanitize(path, 200), (unsigned)(st.st_mode & 0777));
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        memset(kp, 0, sizeof(*kp));
    free(text);
    return rc;
}

int ft_keypair_save(const char *path, const ft_keypair_t *kp, ft_err_t *err)
{
    char buf[256];
    int n;
    mode_t old;
    int rc;

    if (!ft_z85_key_ok(kp->pub) || (kp->secret[0] && !ft_z85_key_ok(kp->secret))) {
        ft_err_set(err, FT_EINTERNAL, "refusing to write a malformed key to '%s'",
                   ft_sanitize(path, 200));
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "# ft CURVE key%s\npublic = %s\n%s%s%s",
                 kp->secret[0] ? " pair: keep this file private" : " (public)", kp->pub,
                 kp->secret[0] ? "secret = " : "", kp->secret, kp->secret[0] ? "\n" : "");
    /* The temporary file is created under this umask, so the secret is never
     * readable by others, not even between create and rename. */
    old = umask(077);
    rc = ft_write_file_atomic(path, buf, (size_t)n, err);
    umask(old);
    if (rc == 0 && chmod(path, kp->secret[0] ? 0600 : 0644) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot chmod '%s': %s", ft_sanitize(path, 200),
                   strerror(errno));
        return -1;
    }
    return rc;
}

typedef struct {
    const char *what; /* file name for messages */
    ft_keys_t *k;     /* growing */
    size_t cap;       /* allocated entries */
} keys_ctx_t;

static int keys_line(void *vctx, char *line, int lineno, ft_err_t *err)
{
    keys_ctx_t *c = vctx;
    char *f[5];
    int nf = 0;
    ft_identity_t *id;

    for (char *save = NULL, *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        if (nf < 5)
            f[nf++] = t;
        else
            nf = 5;
    if (nf != 4) {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: expected 'PUBLIC_KEY USER TEAM ROLE'",
                   ft_sanitize(c->what, 200), lineno);
        return -1;
    }
    if (!ft_z85_key_ok(f[0])) {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: '%s' is not a 40-character Z85 public key",
                   ft_sanitize(c->what, 200), lineno, ft_sanitize(f[0], 48));
        return -1;
    }
    for (int i = 1; i <= 2; i++)
        if (!name_ok(f[i])) {
            ft_err_set(err, FT_EBADFIELD, "'%s' line %d: %s '%s' is not a name ([A-Za-z0-9._-]{1,64})",
                       ft_sanitize(c->what, 200), lineno, i == 1 ? "user" : "team",
                       ft_sanitize(f[i], 70));
            return -1;
        }
    if (ft_role_from_name(f[3]) == FT_ROLE__COUNT) {
        ft_err_set(err, FT_EBADFIELD, "'%s' line %d: role '%s' is not one of user, lead, admin, worker",
                   ft_sanitize(c->what, 200), lineno, ft_sanitize(f[3], 32));
        return -1;
    }
    if (c->k->n >= FT_KEYS_MAX) {
        ft_err_set(err, FT_ETOOLARGE, "'%s': more than %d keys", ft_sanitize(c->what, 200),
                   FT_KEYS_MAX);
        return -1;
    }
    if (c->k->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        ft_identity_t *ids = realloc(c->k->ids, cap * sizeof(*ids));

        if (!ids) {
            ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", ft_sanitize(c->what, 200));
            return -1;
        }
        c->k->ids = ids;
        c->cap = cap;
    }
    id = &c->k->ids[c->k->n++];
    memset(id, 0, sizeof(*id));
    memcpy(id->pub, f[0], FT_Z85_KEY_LEN + 1);
    ft_strlcpy(id->user, f[1], sizeof(id->user));
    ft_strlcpy(id->team, f[2], sizeof(id->team));
    id->role = ft_role_from_name(f[3]);
    return 0;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(((const ft_identity_t *)a)->pub, ((const ft_identity_t *)b)->pub);
}

int ft_keys_parse(ft_keys_t *k, const char *text, const char *what, ft_err_t *err)
{
    keys_ctx_t c = {what, k, 0};
    char *copy = strdup(text);
    int rc = -1;

    memset(k, 0, sizeof(*k));
    if (!copy) {
        ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", ft_sanitize(what, 200));
        return -1;
    }
    if (each_line(copy, keys_line, &c, err) < 0)
        goto out;
    if (k->n) /* qsort on NULL is undefined even for 0 entries */
        qsort(k->ids, k->n, sizeof(*k->ids), id_cmp);
    for (size_t i = 1; i < k->n; i++)
        if (strcmp(k->ids[i - 1].pub, k->ids[i].pub) == 0) {
            ft_err_set(err, FT_EBADFIELD, "'%s': key '%s' is listed twice", ft_sanitize(what, 200),
                       k->ids[i].pub);
            goto out;
        }
    rc = 0;
out:
    free(copy);
    if (rc < 0)
        ft_keys_free(k);
    return rc;
}

int ft_keys_load(ft_keys_t *k, const char *path, ft_err_t *err)
{
    char *text = ft_read_file(path, FT_KEYFILE_MAX, NULL, err);
    int rc;

    memset(k, 0, sizeof(*k));
    if (!text)
        return -1;
    rc = ft_keys_parse(k, text, path, err);
    free(text);
    return rc;
}

void ft_keys_free(ft_keys_t *k)
{
    free(k->ids);
    k->ids = NULL;
    k->n = 0;
}

const ft_identity_t *ft_keys_find(const ft_keys_t *k, const char *pub)
{
    ft_identity_t key;

    if (!k->n || !ft_z85_key_ok(pub))
        return NULL;
    memcpy(key.pub, pub, FT_Z85_KEY_LEN + 1);
    return bsearch(&key, k->ids, k->n, sizeof(*k->ids), id_cmp);
}

bool ft_auth_may_touch(const ft_identity_t *who, const char *user, const char *team)
{
    switch (who->role) {
    case FT_ROLE_ADMIN:
        return true;
    case FT_ROLE_LEAD:
        return team && strcmp(team, who->team) == 0;
    case FT_ROLE_USER:
        return user && team && strcmp(user, who->user) == 0 && strcmp(team, who->team) == 0;
    default:
        return false;
    }
}

int ft_curve_client_env(ft_keypair_t *mine, char *server_pub, bool *enabled, ft_err_t *err)
{
    const char *kf = getenv("FT_KEY"), *sk = getenv("FT_SERVER_KEY");
    ft_keypair_t srv;

    *enabled = false;
    memset(mine, 0, sizeof(*mine));
    server_pub[0] = '\0';
    if ((!kf || !*kf) && (!sk || !*sk))
        return 0;
    if (!kf || !*kf || !sk || !*sk) {
        ft_err_set(err, FT_EMISSING, "%s is set but %s is not: CURVE needs both",
                   kf && *kf ? "$FT_KEY" : "$FT_SERVER_KEY", kf && *kf ? "$FT_SERVER_KEY" : "$FT_KEY");
        return -1;
    }
    if (ft_keypair_load(kf, true, mine, err) < 0)
        return -1;
    /* A file that exists wins: a 40-character path can be valid Z85 text
     * too ("/tmp/..." uses only Z85 characters) */
    struct stat st;
    if (ft_z85_key_ok(sk) && stat(sk, &st) != 0) {
        memcpy(server_pub, sk, FT_Z85_KEY_LEN + 1);
    } else {
        if (ft_keypair_load(sk, false, &srv, err) < 0)
            return -1;
        memcpy(server_pub, srv.pub, FT_Z85_KEY_LEN + 1);
    }
    *enabled = true;
    return 0;
}
