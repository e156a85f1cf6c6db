/*
 * cmd_keys.c: 'ftctl keygen FILE': a CURVE key pair for a user or a node,
 * written 0600. The public half is printed as the line an operator appends
 * to ftsched's keys file (docs/operations.md); nothing is sent anywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ft/auth.h"
#include "ftctl.h"

static const char keygen_usage[] =
    "usage: ftctl keygen FILE [USER TEAM ROLE]\n"
    "Writes a new CURVE key pair to FILE (mode 0600; never overwrites) and prints\n"
    "the keys-file line for it: 'PUBLIC USER TEAM ROLE' (role: user, lead, admin,\n"
    "worker; defaults: $USER, default, user). Use it with FT_KEY=FILE.\n";

int ftctl_cmd_keygen(ftctl_t *c, int argc, char **argv)
{
    ft_keypair_t kp;
    ft_err_t err = {0};
    const char *user, *team = "default", *role = "user";
    FILE *f;

    (void)c;
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(keygen_usage, stdout);
        return FTCTL_EXIT_OK;
    }
    if (argc != 2 && argc != 5) {
        fputs(keygen_usage, stderr);
        return FTCTL_EXIT_USAGE;
    }
    user = getenv("USER") && *getenv("USER") ? getenv("USER") : "user";
    if (argc == 5) {
        user = argv[2];
        team = argv[3];
        role = argv[4];
    }
    if (ft_role_from_name(role) == FT_ROLE__COUNT) {
        fprintf(stderr, "ftctl: keygen: role '%s' is not one of user, lead, admin, worker\n",
                ft_sanitize(role, 32));
        return FTCTL_EXIT_USAGE;
    }
    if ((f = fopen(argv[1], "r"))) {
        fclose(f);
        fprintf(stderr, "ftctl: keygen: '%s' already exists; not overwriting a key\n",
                ft_sanitize(argv[1], 200));
        return FTCTL_EXIT_FAILED;
    }
    memset(&kp, 0, sizeof(kp));
    if (zmq_curve_keypair(kp.pub, kp.secret) != 0) {
        fprintf(stderr, "ftctl: keygen: cannot make a key pair: %s\n", zmq_strerror(zmq_errno()));
        return FTCTL_EXIT_FAILED;
    }
    if (ft_keypair_save(argv[1], &kp, &err) < 0) {
        fprintf(stderr, "ftctl: keygen: %s\n", err.msg);
        memset(&kp, 0, sizeof(kp));
        return FTCTL_EXIT_FAILED;
    }
    printf("%s %s %s %s\n", kp.pub, ft_sanitize(user, 64), ft_sanitize(team, 64), role);
    memset(&kp, 0, sizeof(kp));
    return FTCTL_EXIT_OK;
}
