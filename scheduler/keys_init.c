/*
 * keys_init.c: 'ftsched init DIR': the server key pair, an admin key and a
 * keys file listing the admin, so that a fresh install starts secure.
 *
 * Invariants: never overwrites an existing file (a second init would lock
 * out every key issued since); secret files are 0600, DIR is 0700.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ft/auth.h"
#include "keys_init.h"

int sched_keygen(ft_keypair_t *kp, ft_err_t *err)
{
    memset(kp, 0, sizeof(*kp));
    if (zmq_curve_keypair(kp->pub, kp->secret) != 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot make a CURVE key pair: %s (libzmq built without CURVE?)",
                   zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int sched_keys_init(const char *dir, const char *admin, const char *team, ft_err_t *err)
{
    static const char *const names[] = {"server.key", "server.pub", "admin.key", "keys"};
    char path[4][FT_PATH_MAX];
    ft_keypair_t srv, adm, pub;
    char line[256];
    int n, rc = -1;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        ft_err_set(err, FT_EINTERNAL, "cannot create '%s': %s", ft_sanitize(dir, 200), strerror(errno));
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (snprintf(path[i], sizeof(path[i]), "%s/%s", dir, names[i]) >= (int)sizeof(path[i])) {
            ft_err_set(err, FT_ETOOLARGE, "directory name '%s' is too long", ft_sanitize(dir, 64));
            return -1;
        }
        if (access(path[i], F_OK) == 0) {
            ft_err_set(err, FT_ESTATE, "'%s' already exists: init never overwrites keys",
                       ft_sanitize(path[i], 200));
            return -1;
        }
    }
    if (sched_keygen(&srv, err) < 0 || sched_keygen(&adm, err) < 0)
        goto out;
    pub = srv;
    pub.secret[0] = '\0';
    n = snprintf(line, sizeof(line),
                 "# ft keys file: PUBLIC_KEY USER TEAM ROLE (role: user, lead, admin, worker)\n"
                 "%s %s %s admin\n", adm.pub, admin, team);
    if (ft_keypair_save(path[0], &srv, err) < 0 || ft_keypair_save(path[1], &pub, err) < 0 ||
        ft_keypair_save(path[2], &adm, err) < 0 ||
        ft_write_file_atomic(path[3], line, (size_t)n, err) < 0)
        goto out;
    rc = 0;
out:
    memset(&srv, 0, sizeof(srv));
    memset(&adm, 0, sizeof(adm));
    return rc;
}
