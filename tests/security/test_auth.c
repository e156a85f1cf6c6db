/*
 * test_auth.c: keys files, key files and roles (lib/auth.c), and path
 * confinement under roots (lib/paths.c), including '..' and symlink escapes.
 * Reads as an example of both APIs.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/check.h"
#include "ft/auth.h"
#include "ft/paths.h"

#define K1 "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define K2 "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#define K3 "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

static void test_keys(void)
{
    ft_keys_t k;
    ft_err_t err = {0};
    const ft_identity_t *id;
    const char good[] = "# comment\n" K1 " alice ml user\n\n  " K2 " bob ml lead  \n" K3
                        " node1 nodes worker\n";

    CHECK(ft_z85_key_ok(K1), "a 40-character Z85 key is accepted");
    CHECK(!ft_z85_key_ok("short"), "a short key is refused");
    CHECK(!ft_z85_key_ok(K1 "x"), "a 41-character key is refused");
    CHECK(!ft_z85_key_ok("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf~"), "'~' is not Z85");

    CHECK(ft_keys_parse(&k, good, "keys", &err) == 0 && k.n == 3, "three keys parse (%s)", err.msg);
    id = ft_keys_find(&k, K2);
    CHECK(id && strcmp(id->user, "bob") == 0 && id->role == FT_ROLE_LEAD, "lookup finds bob, lead");
    CHECK(ft_keys_find(&k, "0000000000000000000000000000000000000000") == NULL,
          "an unlisted key is not found");
    {
        ft_identity_t alice = *ft_keys_find(&k, K1), bob = *id, node = *ft_keys_find(&k, K3);
        ft_identity_t root = alice;

        root.role = FT_ROLE_ADMIN;
        CHECK(ft_auth_may_touch(&alice, "alice", "ml"), "a user touches own job");
        CHECK(!ft_auth_may_touch(&alice, "carol", "ml"), "a user cannot touch a teammate's job");
        CHECK(!ft_auth_may_touch(&alice, "alice", "other"), "nor own name in another team");
        CHECK(ft_auth_may_touch(&bob, "carol", "ml"), "a lead touches the team's jobs");
        CHECK(!ft_auth_may_touch(&bob, "dave", "vision"), "a lead cannot touch another team's");
        CHECK(ft_auth_may_touch(&root, "dave", "vision"), "an admin touches everything");
        CHECK(!ft_auth_may_touch(&node, "node1", "nodes"), "a worker key touches no job");
    }
    ft_keys_free(&k);

    static const struct {
        const char *text; /* keys file */
        const char *want; /* substring of the error */
    } bad[] = {
        {K1 " alice ml\n", "expected 'PUBLIC_KEY USER TEAM ROLE'"},
        {K1 " alice ml user extra\n", "expected"},
        {"notakey alice ml user\n", "not a 40-character Z85"},
        {K1 " al/ice ml user\n", "user 'al/ice' is not a name"},
        {K1 " alice m;l user\n", "team 'm;l'"},
        {K1 " alice ml root\n", "role 'root' is not one of"},
        {K1 " alice ml user\n" K1 " eve ml admin\n", "listed twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ft_keys_parse(&k, bad[i].text, "keys", &err) < 0 && strstr(err.msg, bad[i].want),
              "bad keys file %zu refused: %s", i, err.msg);
    }
    memset(&err, 0, sizeof(err));
    CHECK(ft_keys_parse(&k, K1 " alice ml user\nbad\n", "keys", &err) < 0 &&
              strstr(err.msg, "line 2"),
          "the error names the line: %s", err.msg);
}

static void test_keypair(const char *dir)
{
    char path[512], pub[512];
    ft_keypair_t kp = {K1, K2}, back, p2;
    ft_err_t err = {0};
    struct stat st;

    snprintf(path, sizeof(path), "%s/me.key", dir);
    snprintf(pub, sizeof(pub), "%s/server.pub", dir);
    CHECK(ft_keypair_save(path, &kp, &err) == 0, "key pair saved (%s)", err.msg);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "key file mode is 0600 (%03o)",
          (unsigned)(st.st_mode & 0777));
    CHECK(ft_keypair_load(path, true, &back, &err) == 0 && strcmp(back.pub, K1) == 0 &&
              strcmp(back.secret, K2) == 0,
          "key pair reads back");
    chmod(path, 0644);
    memset(&err, 0, sizeof(err));
    CHECK(ft_keypair_load(path, true, &back, &err) < 0 && strstr(err.msg, "others can read"),
          "a secret readable by others is refused: %s", err.msg);
    p2 = kp;
    p2.secret[0] = '\0';
    CHECK(ft_keypair_save(pub, &p2, &err) == 0, "public-only file saved");
    memset(&err, 0, sizeof(err));
    CHECK(ft_keypair_load(pub, true, &back, &err) < 0 && strstr(err.msg, "no 'secret'"),
          "a public file is refused where a secret is needed: %s", err.msg);
    CHECK(ft_keypair_load(pub, false, &back, &err) == 0 && strcmp(back.pub, K1) == 0,
          "a public file reads where only the public key is needed");

    /* $FT_KEY / $FT_SERVER_KEY */
    {
        ft_keypair_t mine;
        char spub[FT_Z85_KEY_LEN + 1];
        bool on = true;

        chmod(path, 0600);
        unsetenv("FT_KEY");
        unsetenv("FT_SERVER_KEY");
        CHECK(ft_curve_client_env(&mine, spub, &on, &err) == 0 && !on, "no env: plain");
        setenv("FT_KEY", path, 1);
        memset(&err, 0, sizeof(err));
        CHECK(ft_curve_client_env(&mine, spub, &on, &err) < 0 && strstr(err.msg, "FT_SERVER_KEY"),
              "FT_KEY alone is an error: %s", err.msg);
        setenv("FT_SERVER_KEY", pub, 1);
        CHECK(ft_curve_client_env(&mine, spub, &on, &err) == 0 && on && strcmp(spub, K1) == 0,
              "FT_KEY + FT_SERVER_KEY (file): CURVE on");
        setenv("FT_SERVER_KEY", K3, 1);
        CHECK(ft_curve_client_env(&mine, spub, &on, &err) == 0 && on && strcmp(spub, K3) == 0,
              "FT_SERVER_KEY may be the Z85 text itself");
        /* a 40-character path is also valid Z85 text: the file wins */
        char cwd[512];
        const char *name40 = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk.pub";
        if (getcwd(cwd, sizeof(cwd)) && chdir(dir) == 0) {
            CHECK(strlen(name40) == FT_Z85_KEY_LEN && ft_z85_key_ok(name40) &&
                      ft_keypair_save(name40, &p2, &err) == 0,
                  "a public key saved under a 40-character name that is valid Z85");
            setenv("FT_SERVER_KEY", name40, 1);
            CHECK(ft_curve_client_env(&mine, spub, &on, &err) == 0 && on && strcmp(spub, K1) == 0,
                  "FT_SERVER_KEY naming an existing file reads the file, not the name (%s)",
                  spub);
            CHECK(chdir(cwd) == 0, "back in %s", cwd);
        }
        unsetenv("FT_KEY");
        unsetenv("FT_SERVER_KEY");
    }
}

static void test_paths(const char *dir)
{
    char root[512], other[512], p[1024], out[1024], roots[1100];
    ft_err_t err = {0};

    snprintf(root, sizeof(root), "%s/data", dir);
    snprintf(other, sizeof(other), "%s/secret", dir);
    mkdir(root, 0755);
    mkdir(other, 0755);
    snprintf(roots, sizeof(roots), "/nonexistent-root:%s", root);

    snprintf(p, sizeof(p), "%s/model", root);
    mkdir(p, 0755);
    CHECK(ft_path_check_roots("spec.train.base_model", p, roots, out, sizeof(out), &err) == 0,
          "a directory under the root passes (%s)", err.msg);
    snprintf(p, sizeof(p), "%s/out/run1/", root);
    CHECK(ft_path_check_roots("spec.train.output_dir", p, roots, out, sizeof(out), &err) == 0 &&
              strstr(out, "/data/out/run1") && out[strlen(out) - 1] == '1',
          "a not-yet-existing output dir passes, trailing '/' dropped: %s", out);

    snprintf(p, sizeof(p), "%s/../secret", root);
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.base_model", p, roots, NULL, 0, &err) < 0 &&
              strstr(err.msg, "spec.train.base_model") && strstr(err.msg, "not under"),
          "'..' out of the root is refused: %s", err.msg);
    snprintf(p, sizeof(p), "%s/new/../../secret", root);
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.output_dir", p, roots, NULL, 0, &err) < 0,
          "'..' in a part that does not exist is refused: %s", err.msg);
    snprintf(p, sizeof(p), "%s/link", root);
    CHECK(symlink(other, p) == 0, "made a symlink from the root to outside");
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.datasets[0].path", p, roots, NULL, 0, &err) < 0 &&
              strstr(err.msg, "/secret"),
          "a symlink escaping the root is refused: %s", err.msg);
    snprintf(p, sizeof(p), "%s/link/newdir", root);
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.output_dir", p, roots, NULL, 0, &err) < 0,
          "an output dir below an escaping symlink is refused: %s", err.msg);
    snprintf(p, sizeof(p), "%s/data2", dir);
    mkdir(p, 0755);
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.base_model", p, roots, NULL, 0, &err) < 0,
          "a sibling sharing the root's prefix ('data2') is refused");
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.base_model", "data/model", roots, NULL, 0, &err) < 0 &&
              strstr(err.msg, "not an absolute path"),
          "a relative path is refused: %s", err.msg);
    memset(&err, 0, sizeof(err));
    CHECK(ft_path_check_roots("spec.train.base_model", root, "", NULL, 0, &err) < 0,
          "no roots configured: nothing passes the check");
}

int main(void)
{
    char tmpl[] = "/tmp/ft-test-auth-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char cmd[600];

    if (!dir)
        return 1;
    test_keys();
    test_keypair(dir);
    test_paths(dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    return check_done("test_auth");
}
