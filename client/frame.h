/*
 * client/frame.h: the framing between ftctl and its agent on a Unix stream
 * socket: a 4-byte big-endian length, then that many bytes of one JSON
 * message (docs/protocol.md, "The agent").
 *
 * Invariants: both sides work on non-blocking descriptors and never wait
 * inside the codec: a read or a write that would block returns
 * FTCTL_FRAME_AGAIN with its progress kept, so the caller's poll loop decides
 * how long to wait. EINTR is retried. A length of 0 or over the receiver's
 * limit is an error before any of the body is read.
 *
 * Cost: two read(2) calls per frame when it arrives whole (length, body),
 * one send(2) per flush; one malloc per received frame.
 */
#ifndef FTCTL_FRAME_H
#define FTCTL_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ft/common.h"

#define FTCTL_FRAME_HDR 4 /* bytes of the length prefix */

typedef enum {
    FTCTL_FRAME_ERROR = -1, /* err says why; the connection is unusable */
    FTCTL_FRAME_AGAIN = 0,  /* would block; progress kept, call again when ready */
    FTCTL_FRAME_DONE = 1,   /* a whole frame arrived (rx) / everything was written (tx) */
    FTCTL_FRAME_EOF = 2,    /* rx: the peer closed between two frames */
} ftctl_frame_rc_t;

/* One connection's receive state. */
typedef struct {
    uint8_t hdr[FTCTL_FRAME_HDR];       /* the length prefix as received */
    size_t hdr_got;                     /* bytes of hdr received, 0..4 */
    char *body;                         /* len + 1 bytes (NUL after a complete frame) */
    size_t len;                         /* body length from the prefix, bytes */
    size_t got;                         /* bytes of body received */
    size_t max;                         /* largest accepted body, bytes */
    ssize_t (*rd)(int, void *, size_t); /* read(2), or a test's stand-in */
} ftctl_frame_rx_t;

/* One connection's queue of outgoing frames. */
typedef struct {
    char *buf;                                /* queued bytes, prefixes included */
    size_t len;                               /* bytes queued in buf */
    size_t off;                               /* bytes of buf already written */
    size_t cap;                               /* bytes allocated for buf */
    size_t max;                               /* most bytes queued at once (back-pressure bound) */
    ssize_t (*wr)(int, const void *, size_t); /* send(2) without SIGPIPE, or a stand-in */
} ftctl_frame_tx_t;

/* Receive state accepting bodies of 1..max bytes. */
void ftctl_frame_rx_init(ftctl_frame_rx_t *rx, size_t max);
/* Reads what is available of the current frame. DONE: rx->body holds
 * rx->len bytes and a NUL; take it with ftctl_frame_take before the next
 * read. EOF only between frames; a close inside a frame is an error. */
ftctl_frame_rc_t ftctl_frame_read(ftctl_frame_rx_t *rx, int fd, ft_err_t *err);
/* Hands over the completed body (caller frees) and readies rx for the next frame. */
char *ftctl_frame_take(ftctl_frame_rx_t *rx, size_t *len);
void ftctl_frame_rx_free(ftctl_frame_rx_t *rx);

/* Send queue holding at most max bytes. */
void ftctl_frame_tx_init(ftctl_frame_tx_t *tx, size_t max);
/* Queues one frame (prefix and a copy of msg). -1 when len is 0 or over
 * UINT32_MAX, when the queue would exceed its bound, or out of memory. */
int ftctl_frame_push(ftctl_frame_tx_t *tx, const void *msg, size_t len, ft_err_t *err);
/* Writes what the socket takes: DONE when the queue is empty, AGAIN when
 * bytes are left, ERROR when the peer is gone. */
ftctl_frame_rc_t ftctl_frame_flush(ftctl_frame_tx_t *tx, int fd, ft_err_t *err);
/* Bytes still to be written. */
size_t ftctl_frame_pending(const ftctl_frame_tx_t *tx);
void ftctl_frame_tx_free(ftctl_frame_tx_t *tx);

#endif
