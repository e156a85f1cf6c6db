/*
 * test_frame.c: the agent's framing (client/frame.c) as an example of its API:
 * a frame read one byte at a time between EAGAIN and EINTR, written one byte
 * at a time, two frames in one read, the length limits, end of file between
 * and inside frames, the send queue's bound, and a 1 MiB frame through a real
 * non-blocking socket pair.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/check.h"
#include "frame.h"

/* A scripted descriptor: the bytes it holds, and what each call does. */
static struct {
    const char *data; /* bytes the fake descriptor holds */
    size_t len;       /* of data */
    size_t pos;       /* bytes handed out (read) or taken (write) */
    unsigned calls;   /* calls so far */
    bool eof;         /* after data: end of file instead of EAGAIN */
    char out[256];    /* what the fake writer received */
} fake;

/* One byte per call; every third call EINTR, every fifth EAGAIN. */
static ssize_t fake_read(int fd, void *buf, size_t n)
{
    (void)fd;
    fake.calls++;
    if (fake.calls % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    if (fake.calls % 5 == 0 || (fake.pos == fake.len && !fake.eof)) {
        errno = EAGAIN;
        return -1;
    }
    if (fake.pos == fake.len || n == 0)
        return 0;
    memcpy(buf, fake.data + fake.pos++, 1);
    return 1;
}

static ssize_t fake_write(int fd, const void *buf, size_t n)
{
    (void)fd;
    fake.calls++;
    if (fake.calls % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    if (fake.calls % 4 == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (n == 0 || fake.pos >= sizeof(fake.out))
        return 0;
    fake.out[fake.pos++] = *(const char *)buf;
    return 1;
}

static void fake_set(const char *data, size_t len, bool eof)
{
    memset(&fake, 0, sizeof(fake));
    fake.data = data;
    fake.len = len;
    fake.eof = eof;
}

/* Reads until DONE/EOF/ERROR, counting AGAINs. */
static ftctl_frame_rc_t read_all(ftctl_frame_rx_t *rx, ft_err_t *err, int *agains)
{
    ftctl_frame_rc_t r;
    *agains = 0;
    while ((r = ftctl_frame_read(rx, -1, err)) == FTCTL_FRAME_AGAIN && *agains < 1000)
        (*agains)++;
    return r;
}

int main(void)
{
    ftctl_frame_rx_t rx;
    ftctl_frame_tx_t tx;
    ft_err_t err;
    int agains;
    size_t len;
    char *body;

    /* write one frame, one byte per call, through EINTR and EAGAIN */
    ftctl_frame_tx_init(&tx, 1024);
    tx.wr = fake_write;
    fake_set(NULL, 0, false);
    ft_err_clear(&err);
    CHECK(ftctl_frame_push(&tx, "{\"id\":\"1\"}", 10, &err) == 0, "push a 10-byte message");
    CHECK(ftctl_frame_pending(&tx) == 14, "14 bytes queued (4-byte length + body)");
    ftctl_frame_rc_t w;
    int n_again = 0;
    while ((w = ftctl_frame_flush(&tx, -1, &err)) == FTCTL_FRAME_AGAIN && n_again < 1000)
        n_again++;
    CHECK(w == FTCTL_FRAME_DONE && fake.pos == 14, "flush wrote all 14 bytes (%d AGAINs)", n_again);
    CHECK(memcmp(fake.out, "\0\0\0\x0a{\"id\":\"1\"}", 14) == 0,
          "big-endian length 10, then the body");
    ftctl_frame_tx_free(&tx);

    /* read it back one byte per call */
    char wire[64];
    memcpy(wire, "\0\0\0\x0a{\"id\":\"1\"}\0\0\0\x02{}", 20);
    fake_set(wire, 20, true);
    ftctl_frame_rx_init(&rx, 100);
    rx.rd = fake_read;
    ft_err_clear(&err);
    ftctl_frame_rc_t r = read_all(&rx, &err, &agains);
    body = ftctl_frame_take(&rx, &len);
    CHECK(r == FTCTL_FRAME_DONE && len == 10 && strcmp(body, "{\"id\":\"1\"}") == 0,
          "the first frame arrives whole and NUL-terminated (%d AGAINs on the way)", agains);
    CHECK(agains > 0, "the reader really saw AGAIN (%d) and EINTR in between", agains);
    free(body);
    r = read_all(&rx, &err, &agains);
    body = ftctl_frame_take(&rx, &len);
    CHECK(r == FTCTL_FRAME_DONE && len == 2 && strcmp(body, "{}") == 0,
          "the second frame from the same bytes");
    free(body);
    r = read_all(&rx, &err, &agains);
    CHECK(r == FTCTL_FRAME_EOF, "end of file between frames is EOF");
    ftctl_frame_rx_free(&rx);

    /* limits: refused from the length alone */
    static const struct {
        const char *what;  /* the case */
        const char *wire;  /* bytes on the wire */
        size_t len;        /* of wire */
        ft_errcode_t code; /* expected error */
    } bad[] = {
        {"length 0", "\0\0\0\0{}", 6, FT_EBADFIELD},
        {"length 101 over a limit of 100", "\0\0\0\x65{", 5, FT_ETOOLARGE},
        {"length 4 GiB - 1", "\xff\xff\xff\xff", 4, FT_ETOOLARGE},
        {"end of file inside the length", "\0\0", 2, FT_EBADFIELD},
        {"end of file inside the body", "\0\0\0\x05{}", 6, FT_EBADFIELD},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fake_set(bad[i].wire, bad[i].len, true);
        ftctl_frame_rx_init(&rx, 100);
        rx.rd = fake_read;
        ft_err_clear(&err);
        r = read_all(&rx, &err, &agains);
        CHECK(r == FTCTL_FRAME_ERROR && err.code == bad[i].code, "%s: error %s (%s)", bad[i].what,
              ft_errcode_name(err.code), err.msg);
        CHECK(bad[i].code != FT_ETOOLARGE || rx.body == NULL, "%s: nothing allocated", bad[i].what);
        ftctl_frame_rx_free(&rx);
    }

    /* the send queue's bound */
    ftctl_frame_tx_init(&tx, 20);
    ft_err_clear(&err);
    CHECK(ftctl_frame_push(&tx, "0123456789", 10, &err) == 0,
          "a 14-byte frame fits a 20-byte queue");
    CHECK(ftctl_frame_push(&tx, "0123456789", 10, &err) < 0 && err.code == FT_ETOOLARGE,
          "a second one is refused (%s)", err.msg);
    CHECK(ftctl_frame_push(&tx, "", 0, &err) < 0, "an empty message cannot be framed");
    ftctl_frame_tx_free(&tx);

    /* 1 MiB through a real non-blocking socket pair: many partial writes and reads */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0, "socketpair");
    size_t big = 1024 * 1024;
    char *msg = malloc(big);
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)('a' + i % 26);
    ftctl_frame_tx_init(&tx, 2 * big);
    ftctl_frame_rx_init(&rx, big);
    CHECK(ftctl_frame_push(&tx, msg, big, &err) == 0, "push 1 MiB");
    int turns = 0;
    r = FTCTL_FRAME_AGAIN;
    while (r == FTCTL_FRAME_AGAIN && turns < 100000) {
        turns++;
        if (ftctl_frame_flush(&tx, sv[0], &err) == FTCTL_FRAME_ERROR)
            break;
        r = ftctl_frame_read(&rx, sv[1], &err);
    }
    body = ftctl_frame_take(&rx, &len);
    CHECK(r == FTCTL_FRAME_DONE && len == big && memcmp(body, msg, big) == 0,
          "1 MiB arrives intact after %d write/read turns", turns);
    CHECK(turns > 1, "the socket took it in more than one turn (%d)", turns);
    free(body);
    close(sv[0]);
    r = ftctl_frame_read(&rx, sv[1], &err);
    CHECK(r == FTCTL_FRAME_EOF, "the peer's close reads as EOF");
    ftctl_frame_tx_free(&tx);
    ftctl_frame_tx_init(&tx, 64);
    ftctl_frame_push(&tx, "{}", 2, &err);
    CHECK(ftctl_frame_flush(&tx, sv[1], &err) == FTCTL_FRAME_ERROR,
          "writing to a closed peer is an error, not SIGPIPE (%s)", err.msg);
    ftctl_frame_tx_free(&tx);
    ftctl_frame_rx_free(&rx);
    close(sv[1]);
    free(msg);
    return check_done("test_frame");
}
