/*
 * client/frame.c: the length-prefixed framing of client/frame.h.
 *
 * Invariants: rx never allocates more than max + 1 bytes, and refuses a bad
 * length before reading a byte of the body; tx never holds more than max
 * bytes. Both keep their progress across AGAIN, so a frame split over many
 * reads or writes (or interrupted by signals) comes out whole.
 *
 * Cost: O(frame) copies: one into the body buffer on receive, one into the
 * queue on send (the queue is compacted when it empties or runs out of room).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"

static ssize_t send_nosignal(int fd, const void *buf, size_t n)
{
    return send(fd, buf, n, MSG_NOSIGNAL);
}

void ftctl_frame_rx_init(ftctl_frame_rx_t *rx, size_t max)
{
    memset(rx, 0, sizeof(*rx));
    rx->max = max;
    rx->rd = read;
}

/* Reads into buf until want bytes are in (*got) or the descriptor would block.
 * 1 complete, 0 would block, 2 end of file, -1 error (errno). */
static int read_some(ftctl_frame_rx_t *rx, int fd, void *buf, size_t want, size_t *got)
{
    while (*got < want) {
        ssize_t n = rx->rd(fd, (char *)buf + *got, want - *got);
        if (n > 0) {
            *got += (size_t)n;
            continue;
        }
        if (n == 0)
            return 2;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
    return 1;
}

ftctl_frame_rc_t ftctl_frame_read(ftctl_frame_rx_t *rx, int fd, ft_err_t *err)
{
    int r;

    if (rx->hdr_got < FTCTL_FRAME_HDR) {
        size_t before = rx->hdr_got;
        r = read_some(rx, fd, rx->hdr, FTCTL_FRAME_HDR, &rx->hdr_got);
        if (r == 2 && before == 0 && rx->hdr_got == 0)
            return FTCTL_FRAME_EOF;
        if (r != 1)
            goto io;
        rx->len = (size_t)rx->hdr[0] << 24 | (size_t)rx->hdr[1] << 16 | (size_t)rx->hdr[2] << 8 |
                  (size_t)rx->hdr[3];
        if (rx->len == 0) {
            ft_err_set(err, FT_EBADFIELD, "frame length 0: every frame holds one JSON message");
            return FTCTL_FRAME_ERROR;
        }
        if (rx->len > rx->max) {
            ft_err_set(err, FT_ETOOLARGE, "frame of %zu bytes is over the limit of %zu", rx->len,
                       rx->max);
            return FTCTL_FRAME_ERROR;
        }
        rx->body = malloc(rx->len + 1);
        if (!rx->body) {
            ft_err_set(err, FT_EINTERNAL, "out of memory for a frame of %zu bytes", rx->len);
            return FTCTL_FRAME_ERROR;
        }
        rx->got = 0;
    }
    r = read_some(rx, fd, rx->body, rx->len, &rx->got);
    if (r != 1)
        goto io;
    rx->body[rx->len] = '\0';
    return FTCTL_FRAME_DONE;
io:
    if (r == 0)
        return FTCTL_FRAME_AGAIN;
    if (r == 2)
        ft_err_set(err, FT_EBADFIELD, "connection closed inside a frame");
    else
        ft_err_set(err, FT_EINTERNAL, "cannot read a frame: %s", strerror(errno));
    return FTCTL_FRAME_ERROR;
}

char *ftctl_frame_take(ftctl_frame_rx_t *rx, size_t *len)
{
    char *b = rx->body;
    if (len)
        *len = rx->len;
    rx->body = NULL;
    rx->hdr_got = rx->got = rx->len = 0;
    return b;
}

void ftctl_frame_rx_free(ftctl_frame_rx_t *rx)
{
    free(rx->body);
    rx->body = NULL;
    rx->hdr_got = rx->got = rx->len = 0;
}

void ftctl_frame_tx_init(ftctl_frame_tx_t *tx, size_t max)
{
    memset(tx, 0, sizeof(*tx));
    tx->max = max;
    tx->wr = send_nosignal;
}

int ftctl_frame_push(ftctl_frame_tx_t *tx, const void *msg, size_t len, ft_err_t *err)
{
    if (len == 0 || len > UINT32_MAX) {
        ft_err_set(err, FT_EBADFIELD, "cannot frame a message of %zu bytes", len);
        return -1;
    }
    if (tx->off == tx->len)
        tx->off = tx->len = 0;
    size_t need = FTCTL_FRAME_HDR + len;
    if (tx->len - tx->off + need > tx->max) {
        ft_err_set(err, FT_ETOOLARGE, "send queue full: %zu bytes waiting, the limit is %zu",
                   tx->len - tx->off, tx->max);
        return -1;
    }
    if (tx->len + need > tx->cap) {
        if (tx->off) { /* compact before growing */
            memmove(tx->buf, tx->buf + tx->off, tx->len - tx->off);
            tx->len -= tx->off;
            tx->off = 0;
        }
        if (tx->len + need > tx->cap) {
            size_t cap = tx->cap ? tx->cap : 4096;
            while (cap < tx->len + need)
                cap *= 2;
            char *nb = realloc(tx->buf, cap);
            if (!nb) {
                ft_err_set(err, FT_EINTERNAL, "out of memory for a send queue of %zu bytes", cap);
                return -1;
            }
            tx->buf = nb;
            tx->cap = cap;
        }
    }
    uint8_t *h = (uint8_t *)tx->buf + tx->len;
    h[0] = (uint8_t)(len >> 24);
    h[1] = (uint8_t)(len >> 16);
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    memcpy(tx->buf + tx->len + FTCTL_FRAME_HDR, msg, len);
    tx->len += need;
    return 0;
}

ftctl_frame_rc_t ftctl_frame_flush(ftctl_frame_tx_t *tx, int fd, ft_err_t *err)
{
    while (tx->off < tx->len) {
        ssize_t n = tx->wr(fd, tx->buf + tx->off, tx->len - tx->off);
        if (n > 0) {
            tx->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return FTCTL_FRAME_AGAIN;
        ft_err_set(err, FT_EINTERNAL, "cannot write a frame: %s",
                   n < 0 ? strerror(errno) : "nothing written");
        return FTCTL_FRAME_ERROR;
    }
    tx->off = tx->len = 0;
    return FTCTL_FRAME_DONE;
}

size_t ftctl_frame_pending(const ftctl_frame_tx_t *tx)
{
    return tx->len - tx->off;
}

void ftctl_frame_tx_free(ftctl_frame_tx_t *tx)
{
    free(tx->buf);
    tx->buf = NULL;
    tx->len = tx->off = tx->cap = 0;
}
