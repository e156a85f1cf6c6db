/*
 * test_coll_ring.c: the TCP ring collective and the rendezvous helpers, with
 * real processes on loopback (rendezvous through a directory, FT_RDV_DIR).
 * Checks: all-reduce sums (f32 against a double reference, f64 exactly on
 * integers) for 2, 3 and 4 ranks and sizes smaller than the world; every
 * rank ends with the same bits; broadcast from every root; barrier; a dead
 * peer fails the next operation at once, a hung one within the
 * operation time-out and a stopped one within the heartbeat time-out; base64 round trips; a non-socket event fd is refused.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coll_ring.h"
#include "rdv.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok: ");                                                                        \
        } else {                                                                                   \
            printf("FAIL: ");                                                                      \
            failures++;                                                                            \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static char tmpdir[256];

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static coll_t *join(const char *dir, int rank, int world)
{
    ft_err_t err = {0};
    setenv("FT_RDV_DIR", dir, 1);
    rdv_t *r = rdv_new(-1, rank, world, &err);
    coll_t *c = r ? coll_ring_new(r, rank, world, "127.0.0.1", &err) : NULL;
    rdv_destroy(&r);
    if (!c)
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
    return c;
}

/* Child body for the sums: exit 0 when the results are right; writes the
 * hash of its result to the pipe. */
static int sums_child(const char *dir, int rank, int world, size_t n, int hash_fd)
{
    coll_t *c = join(dir, rank, world);
    if (!c)
        return 10;
    float *x = malloc(n * sizeof(float) + 1);
    double *d = malloc(n * sizeof(double) + 1);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = sinf((float)(i * 7 + (size_t)rank * 13)) * (float)(rank + 1);
        d[i] = (double)(i + 1) * (rank + 1);
    }
    if (c->allreduce_sum_f32(c, x, n) < 0 || c->allreduce_sum_f64(c, d, n) < 0)
        return 11;
    for (size_t i = 0; i < n; i++) {
        double want = 0;
        for (int r = 0; r < world; r++)
            want += (double)(sinf((float)(i * 7 + (size_t)r * 13)) * (float)(r + 1));
        if (fabs(x[i] - want) > 1e-5 * (1 + fabs(want)))
            bad++;
        if (d[i] != (double)(i + 1) * world * (world + 1) / 2)
            bad++;
    }
    /* broadcast from every root, then a barrier */
    for (int root = 0; root < world; root++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%s from %d", rank == root ? "hello" : "garbage", root);
        if (c->broadcast(c, msg, sizeof(msg), root) < 0)
            return 12;
        char want[64];
        snprintf(want, sizeof(want), "hello from %d", root);
        if (strcmp(msg, want) != 0)
            bad++;
    }
    if (c->barrier(c) < 0)
        return 13;
    uint64_t h = fnv(x, n * sizeof(float));
    if (write(hash_fd, &h, sizeof(h)) != sizeof(h))
        return 14;
    coll_destroy(&c);
    free(x);
    free(d);
    return bad ? 15 : 0;
}

static void test_sums(int world, size_t n)
{
    char dir[300];
    int p[2];
    snprintf(dir, sizeof(dir), "%s/sums-%d-%zu", tmpdir, world, n);
    if (pipe(p) < 0)
        exit(1);
    pid_t pids[8];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            close(p[0]);
            _exit(sums_child(dir, r, world, n, p[1]));
        }
    }
    close(p[1]);
    int ok = 1;
    for (int r = 0; r < world; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            ok = 0;
            printf("   rank %d ended with status %d\n", r, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
    }
    uint64_t h[8] = {0}, got = 0;
    while (got < (uint64_t)world && read(p[0], &h[got], sizeof(h[0])) == sizeof(h[0]))
        got++;
    close(p[0]);
    int same = got == (uint64_t)world;
    for (int r = 1; r < (int)got; r++)
        same &= h[r] == h[0];
    CHECK(ok, "world %d, %zu elements: sums (f32 within 1e-5, f64 exact), broadcast from every "
          "root and barrier are right on every rank", world, n);
    CHECK(same, "world %d, %zu elements: every rank holds the same bits", world, n);
}

/* mode 0: rank 1 exits after connecting; mode 1: its main thread hangs
 * (caught by the 1 s operation time-out); mode 2: the whole process is
 * stopped (caught by the 1 s heartbeat while the operation time-out is 60 s). */
static void test_peer_failure(int mode)
{
    static const char *const what[] = {"dead", "hung", "stopped"};
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/fail-%d", tmpdir, mode);
    setenv("FT_COLL_TIMEOUT_S", mode == 2 ? "60" : "1", 1);
    setenv("FT_COLL_HEARTBEAT_S", mode == 2 ? "1" : "30", 1);
    pid_t peer = fork();
    if (peer == 0) {
        coll_t *c = join(dir, 1, 2);
        if (!c)
            _exit(10);
        if (mode == 1)
            pause();
        if (mode == 2)
            raise(SIGSTOP);
        _exit(0);
    }
    coll_t *c = join(dir, 0, 2);
    float buf[1000] = {0};
    int64_t t0 = ft_mono_ms();
    int rc = c ? c->allreduce_sum_f32(c, buf, 1000) : 0;
    int64_t took = ft_mono_ms() - t0;
    CHECK(c && rc < 0 && coll_ring_broken(c),
          "a %s peer fails the all-reduce (took %lld ms) and marks the ring broken", what[mode],
          (long long)took);
    if (mode == 0)
        CHECK(took < 900, "a dead peer is noticed at once, not after the time-out");
    else if (mode == 1)
        CHECK(took >= 900 && took < 5000, "a hung peer is given up on after the 1 s time-out");
    else
        CHECK(took >= 900 && took < 5000,
              "a stopped peer is given up on after 1 s without heartbeat, long before the "
              "60 s operation time-out");
    CHECK(c && c->barrier(c) < 0, "a broken ring fails every later operation at once");
    coll_destroy(&c);
    kill(peer, SIGKILL);
    waitpid(peer, NULL, 0);
    unsetenv("FT_COLL_TIMEOUT_S");
    unsetenv("FT_COLL_HEARTBEAT_S");
}

static void test_b64(void)
{
    const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        char enc[32], dec[32];
        long n = rdv_b64_encode(cases[i], strlen(cases[i]), enc, sizeof(enc));
        long m = rdv_b64_decode(enc, dec, sizeof(dec));
        ok &= n >= 0 && strcmp(enc, want[i]) == 0 && m == (long)strlen(cases[i]) &&
              memcmp(dec, cases[i], (size_t)m) == 0;
    }
    CHECK(ok, "base64 matches RFC 4648's test vectors both ways");
    char d[8];
    CHECK(rdv_b64_decode("Zm9v!", d, 8) < 0 && rdv_b64_decode("Zg=a", d, 8) < 0 &&
              rdv_b64_decode("Zm9vYmFy", d, 5) < 0,
          "base64 refuses a bad character, data after '=' and output over the cap");
}

static void test_rdv_refusals(void)
{
    ft_err_t err = {0};
    unsetenv("FT_RDV_DIR");
    int p[2];
    if (pipe(p) < 0)
        exit(1);
    rdv_t *r = rdv_new(p[1], 0, 2, &err);
    CHECK(!r && strstr(err.msg, "not a stream socket"),
          "a pipe as event fd is refused: '%s'", err.msg);
    close(p[0]);
    close(p[1]);
    setenv("FT_RDV_TIMEOUT_S", "soon", 1);
    setenv("FT_RDV_DIR", tmpdir, 1);
    r = rdv_new(-1, 0, 2, &err);
    CHECK(!r && strstr(err.msg, "FT_RDV_TIMEOUT_S"), "a bad time-out setting is named: '%s'",
          err.msg);
    unsetenv("FT_RDV_TIMEOUT_S");
    setenv("FT_RDV_TIMEOUT_S", "1", 1);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/alone", tmpdir);
    setenv("FT_RDV_DIR", dir, 1);
    r = rdv_new(-1, 0, 2, &err);
    char **blobs = NULL;
    int rc = r ? rdv_exchange(r, "YQ==", &blobs, &err) : 0;
    CHECK(r && rc < 0 && strstr(err.msg, "no blob from rank 1"),
          "a rendezvous whose peer never comes times out: '%s'", err.msg);
    rc = r ? rdv_exchange(r, "not base64", &blobs, &err) : 0;
    CHECK(rc < 0 && strstr(err.msg, "base64"), "an own blob that is not base64 is refused");
    rdv_destroy(&r);
    unsetenv("FT_RDV_TIMEOUT_S");
    unsetenv("FT_RDV_DIR");
}

/* The rank side over ftworker's event socket: the request line, a stale
 * reply skipped, the reply of this attempt taken; the socket wins over a
 * stray FT_RDV_DIR. */
static void test_rdv_socket(void)
{
    ft_err_t err = {0};
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
        exit(1);
    setenv("FT_RDV_DIR", tmpdir, 1);
    setenv("FT_ATTEMPT", "2", 1);
    const char *replies = "{\"event\":\"rendezvous_reply\",\"attempt\":1,\"blobs\":[\"AA==\","
                          "\"AA==\"]}\n{\"event\":\"rendezvous_reply\",\"attempt\":2,"
                          "\"blobs\":[\"QUFB\",\"QkJC\"]}\n";
    if (write(sp[1], replies, strlen(replies)) != (ssize_t)strlen(replies))
        exit(1);
    rdv_t *r = rdv_new(sp[0], 1, 2, &err);
    char **blobs = NULL;
    int rc = r ? rdv_exchange(r, "QkJC", &blobs, &err) : -1;
    char line[256] = "";
    ssize_t n = read(sp[1], line, sizeof(line) - 1);
    CHECK(n > 0 && strcmp(line, "{\"event\":\"rendezvous\",\"blob\":\"QkJC\"}\n") == 0,
          "the rank writes its request line on the event socket, not into FT_RDV_DIR: %s", line);
    CHECK(rc == 0 && blobs && strcmp(blobs[0], "QUFB") == 0 && strcmp(blobs[1], "QkJC") == 0,
          "the reply of attempt 1 is skipped, attempt 2's blobs come back in rank order%s%s",
          rc ? ": " : "", rc ? err.msg : "");
    rdv_blobs_free(&blobs, 2);
    const char *bad = "{\"event\":\"rendezvous_reply\",\"attempt\":2,\"blobs\":[\"QUFB\"]}\n";
    if (write(sp[1], bad, strlen(bad)) != (ssize_t)strlen(bad))
        exit(1);
    rc = rdv_exchange(r, "QkJC", &blobs, &err);
    CHECK(rc < 0 && strstr(err.msg, "'blobs'"), "a reply with the wrong number of blobs is "
          "refused: '%s'", err.msg);
    close(sp[1]);
    rc = rdv_exchange(r, "QkJC", &blobs, &err);
    CHECK(rc < 0, "a closed event socket ends the wait at once: '%s'", err.msg);
    rdv_destroy(&r);
    close(sp[0]);
    unsetenv("FT_RDV_DIR");
    unsetenv("FT_ATTEMPT");
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ft-coll-ring-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    ft_log_init("test_coll_ring", FT_LOG_ERROR);
    test_b64();
    test_sums(2, 1000);
    test_sums(3, 100003);
    test_sums(4, 3);
    test_sums(2, 1 << 20);
    test_peer_failure(0);
    test_peer_failure(1);
    test_peer_failure(2);
    test_rdv_refusals();
    test_rdv_socket();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tmpdir);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
