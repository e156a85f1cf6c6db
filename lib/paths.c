/*
 * paths.c: canonical paths under configured roots.
 *
 * Invariants: a path that passes ft_path_check_roots names, after every
 * symlink in its existing part is resolved, a file at or below a root; the
 * comparison is by whole components ("/data" does not admit "/database").
 *
 * Cost: one realpath per check plus one per root; each is a few syscalls per
 * component.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/paths.h"

int ft_path_canon(const char *path, char *out, size_t outlen, ft_err_t *err)
{
    char work[PATH_MAX], resolved[PATH_MAX];
    char *cut = NULL;
    size_t n = strlen(path);

    if (n == 0 || path[0] != '/') {
        ft_err_set(err, FT_EBADFIELD, "'%s' is not an absolute path", ft_sanitize(path, 200));
        return -1;
    }
    if (n >= sizeof(work)) {
        ft_err_set(err, FT_ETOOLARGE, "path '%s' is longer than %d bytes", ft_sanitize(path, 64),
                   PATH_MAX - 1);
        return -1;
    }
    memcpy(work, path, n + 1);
    /* Walk up until an existing ancestor resolves; the rest is appended. */
    for (;;) {
        if (realpath(work, resolved))
            break;
        if (errno != ENOENT) {
            ft_err_set(err, FT_EBADFIELD, "cannot resolve '%s': %s", ft_sanitize(path, 200),
                       strerror(errno));
            return -1;
        }
        char *slash = strrchr(work, '/');
        if (!slash || slash == work) {
            ft_err_set(err, FT_EBADFIELD, "cannot resolve '%s'", ft_sanitize(path, 200));
            return -1;
        }
        *slash = '\0';
        cut = slash;
    }
    if (cut) {
        const char *rest = path + (cut - work); /* "/a/b" not yet created */
        char tmp[PATH_MAX];

        /* ".." in a part that does not exist cannot be resolved against the
         * file system, so it is refused rather than interpreted. */
        for (const char *c = rest; *c;) {
            const char *e;
            size_t len;

            while (*c == '/')
                c++;
            e = strchrnul(c, '/');
            len = (size_t)(e - c);
            if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) {
                ft_err_set(err, FT_EBADFIELD, "'%s': '.' or '..' in a part that does not exist",
                           ft_sanitize(path, 200));
                return -1;
            }
            c = e;
        }
        if (snprintf(tmp, sizeof(tmp), "%s%s", strcmp(resolved, "/") == 0 ? "" : resolved, rest) >=
            (int)sizeof(tmp)) {
            ft_err_set(err, FT_ETOOLARGE, "path '%s' is too long", ft_sanitize(path, 64));
            return -1;
        }
        memcpy(resolved, tmp, strlen(tmp) + 1);
        /* Trailing slashes do not change the name. */
        for (size_t l = strlen(resolved); l > 1 && resolved[l - 1] == '/'; l--)
            resolved[l - 1] = '\0';
    }
    if (strlen(resolved) >= outlen) {
        ft_err_set(err, FT_ETOOLARGE, "path '%s' is too long", ft_sanitize(path, 64));
        return -1;
    }
    memcpy(out, resolved, strlen(resolved) + 1);
    return 0;
}

static bool under(const char *p, const char *root)
{
    size_t n = strlen(root);

    if (strcmp(root, "/") == 0)
        return true;
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int ft_path_check_roots(const char *field, const char *path, const char *roots, char *out,
                        size_t outlen, ft_err_t *err)
{
    char canon[PATH_MAX], root[PATH_MAX], rc_root[PATH_MAX];
    ft_err_t e2;
    int nroots = 0;

    if (ft_path_canon(path, canon, sizeof(canon), err) < 0) {
        ft_err_t inner = *err;
        ft_err_set(err, inner.code, "field '%s': %s", field, inner.msg);
        return -1;
    }
    for (const char *r = roots; r && *r;) {
        const char *e = strchrnul(r, ':');
        size_t len = (size_t)(e - r);

        if (len && len < sizeof(root) && nroots++ < FT_ROOTS_MAX) {
            memcpy(root, r, len);
            root[len] = '\0';
            if (ft_path_canon(root, rc_root, sizeof(rc_root), &e2) == 0 && under(canon, rc_root)) {
                if (out)
                    ft_strlcpy(out, canon, outlen);
                return 0;
            }
        }
        r = *e ? e + 1 : e;
    }
    ft_err_set(err, FT_EFORBIDDEN, "field '%s': '%s' is not under an allowed root (%s)", field,
               ft_sanitize(canon, 200), ft_sanitize(roots && *roots ? roots : "none configured", 200));
    return -1;
}
