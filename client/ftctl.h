/*
 * client/ftctl.h: what the files of ftctl share: the session (endpoint, user,
 * output format, the one ZeroMQ socket), the request/reply call, output helpers
 * (aligned tables, durations, JSON payloads) and the subcommand handlers.
 *
 * Invariants: ftctl is stateless; every subcommand is one request and one reply,
 * or a loop of them (wait, watch, logs -f) over the same socket, or over the
 * same connection to a per-user agent that holds the scheduler connection
 * (`ftctl agent`); on that path no ZeroMQ context is created. Nothing ever
 * blocks longer than the request time-out: the socket has ZMQ_LINGER 0 and every
 * receive is a zmq_poll with a bound.
 *
 * Exit codes (docs/cli.md): FTCTL_EXIT_* below; handlers return one of them.
 */
#ifndef FTCTL_H
#define FTCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <cjson/cJSON.h>

#include "ft/auth.h"
#include "ft/common.h"
#include "ft/jobspec.h"
#include "ft/proto.h"

/* Polling loops (wait, watch, logs -f) ride out a scheduler restart: each read
 * is resent this many times before the scheduler counts as unreachable. */
#define FTCTL_POLL_RETRIES 2

/* The largest reply we accept: a 256 KiB log chunk, JSON-escaped, fits easily. */
#define FTCTL_REPLY_MAX_BYTES (8 * 1024 * 1024)

/* The `agent` setting: how requests travel (docs/cli.md). */
typedef enum {
    FTCTL_AGENT_AUTO = 0, /* through a running agent for this endpoint and key, else direct */
    FTCTL_AGENT_OFF,      /* always direct */
    FTCTL_AGENT_PERSIST,  /* like auto, starting an agent in the background when none runs */
} ftctl_agent_mode_t;

/* Where this process stands with its agent. */
typedef enum {
    FTCTL_AGENT_UNTRIED = 0, /* no connection tried yet (or a fresh one is due) */
    FTCTL_AGENT_USED,        /* agent_fd is a checked connection */
    FTCTL_AGENT_DIRECT,      /* none, refused or gone: direct for the rest of the process */
} ftctl_agent_state_t;

/* An agent started by `agent start` or the persist setting exits after this
 * many seconds without a client. */
#define FTCTL_AGENT_PERSIST_S 600

enum {
    FTCTL_EXIT_OK = 0,          /* the request succeeded */
    FTCTL_EXIT_FAILED = 1,      /* an error reply, or a local check of the input failed */
    FTCTL_EXIT_USAGE = 2,       /* bad command line or config file */
    FTCTL_EXIT_UNREACHABLE = 3, /* no reply within the time-out */
    FTCTL_EXIT_INCOMPLETE = 4,  /* wait/watch: a job ended FAILED or CANCELLED, or time ran out */
};

/* csv: comma-separated values (RFC 4180) where a command supports it (usage), else table */
typedef enum { FTCTL_OUT_TABLE = 0, FTCTL_OUT_JSON, FTCTL_OUT_CSV } ftctl_output_t;

/* The session: settled once from flags, environment and config file. */
typedef struct {
    char endpoint[FT_PATH_MAX];     /* scheduler endpoint, e.g. tcp://127.0.0.1:7461 */
    char user[FT_NAME_MAX + 1];     /* submitting user */
    char team[FT_NAME_MAX + 1];     /* default team for submit */
    ftctl_output_t output;          /* table (people) or json (scripts) */
    int timeout_ms;                 /* per-request reply time-out, ms */
    void *zctx;                     /* ZeroMQ context, created on first request */
    void *sock;                     /* DEALER socket, connected on first request */
    uint64_t seq;                   /* request counter, part of each message "id" */
    int tries;                      /* sends of the last call (for the unreachable message) */
    int read_retries;               /* resends of an idempotent read after a time-out */
    void *mon;                      /* PAIR socket receiving sock's handshake failures, or NULL */
    char handshake[256];            /* why the last handshake failed, for messages; "" = none */
    bool refused;                   /* the scheduler refused our security settings: do not resend */
    ftctl_agent_mode_t agent;       /* the agent setting */
    char agent_socket[FT_PATH_MAX]; /* agent socket path set by the user; "" = derived */
    int agent_fd;                   /* non-blocking connection to the agent, -1 when none */
    ftctl_agent_state_t agent_state; /* whether the agent path is (still) taken */
    bool agent_warned;               /* the "not using the agent" warning was printed */
    int keys_state;                  /* 0 not read yet, 1 read, -1 reading failed (keys_err) */
    ft_err_t keys_err;               /* why reading them failed */
    bool curve_on;                   /* $FT_KEY and $FT_SERVER_KEY are set (keys below) */
    ft_keypair_t keys;               /* our key pair, when curve_on */
    char server_pub[FT_Z85_KEY_LEN + 1]; /* the scheduler's public key, when curve_on */
} ftctl_t;

/* Outcome of one call. */
typedef enum {
    FTCTL_RPC_OK = 0,  /* *reply is the matching *_reply message */
    FTCTL_RPC_ERROR,   /* *reply is an "error" message (code, message) */
    FTCTL_RPC_TIMEOUT, /* nothing came back within the time-out (and retries) */
    FTCTL_RPC_BROKEN,  /* local failure or an invalid reply; already printed */
} ftctl_rpc_t;

/* Sends req (takes ownership; "id" is added here) and waits for its reply.
 * retries: how many times to resend after a time-out on a fresh socket (the
 * Lazy Pirate pattern; only for requests that are safe to repeat). */
ftctl_rpc_t ftctl_call(ftctl_t *c, cJSON *req, int retries, cJSON **reply);
/* ftctl_call, then turns every outcome but FTCTL_RPC_OK into a printed
 * message and an exit code (returned); 0 with *reply set on success. */
int ftctl_request(ftctl_t *c, cJSON *req, int retries, cJSON **reply);
/* Prints "ftctl: <code>: <message>" for an error reply; returns FTCTL_EXIT_FAILED. */
int ftctl_print_error_reply(const cJSON *reply);
/* Prints the unreachable message; returns FTCTL_EXIT_UNREACHABLE. */
int ftctl_print_unreachable(const ftctl_t *c);
void ftctl_close(ftctl_t *c);

/* What the agent (client/agent.c) shares with the direct path: the DEALER
 * socket with its keys, options and handshake monitor (c->zctx is created on
 * the first call); its closing; one monitor event read into c->handshake, true
 * when it means the scheduler will never accept this connection as configured. */
int ftctl_open_socket(ftctl_t *c);
void ftctl_close_socket(ftctl_t *c);
/* The CURVE settings of $FT_KEY and $FT_SERVER_KEY, read once per process
 * (the agent's socket name and every socket the call opens use them). 0, or
 * -1 with err set (again on each call). */
int ftctl_keys(ftctl_t *c, ft_err_t *err);
bool ftctl_read_monitor_event(ftctl_t *c);

/* ---- the agent (client/agent.c) ---- */
/* Client side: 0 with c->agent_fd connected to an agent that passed the
 * checks (directory owner and mode, the peer's uid), starting one first under
 * the persist setting; -1 when the call goes direct (a failed security check
 * is warned about once). Sets c->agent_state. */
int ftctl_agent_connect(ftctl_t *c);
/* Closes the connection (the next ftctl_agent_connect makes a fresh one). */
void ftctl_agent_disconnect(ftctl_t *c);

/* $FTCTL_TRACE=1: one line per phase on stderr ("ftctl: trace: PHASE T ms
 * +D ms", T since main), to find where a call's time goes. ftctl_trace_init
 * reads the variable once; ftctl_trace costs one branch when it is off. */
void ftctl_trace_init(void);
void ftctl_trace(const char *phase);

/* Error for people on stderr, prefixed "ftctl: ". */
void ftctl_die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- output ---- */
typedef struct ftctl_table ftctl_table_t;
ftctl_table_t *ftctl_table_new(int ncols, const char *const *headers);
/* Adds a row of ncols cells (copied; control characters shown as '?'). */
int ftctl_table_add(ftctl_table_t *t, const char *const *cells);
/* Money or energy for people: "%.2f" from 1 up (and 0), six decimals below,
 * "-" when !costed; sign prints "+" on positives. */
void ftctl_fmt_amount(char *buf, size_t len, double v, bool costed, bool sign);
/* Prints the header and rows with columns aligned by two spaces. */
void ftctl_table_print(const ftctl_table_t *t, FILE *f);
/* Prints the header and rows as CSV (RFC 4180 quoting). */
void ftctl_table_print_csv(const ftctl_table_t *t, FILE *f);
void ftctl_table_destroy(ftctl_table_t **t);

/* "42s", "12m05s", "3h04m", "2d03h"; "-" for a negative value. */
void ftctl_fmt_duration(int64_t s, char *buf, size_t len);
void ftctl_fmt_duration_f(double s, char *buf, size_t len);
/* Prints the reply without its envelope (v, type, re) as one JSON document. */
void ftctl_print_payload(const cJSON *reply);
/* Field getters for replies that passed validation; defaults when absent/null. */
int64_t ftctl_get_int(const cJSON *obj, const char *name, int64_t dflt);
double ftctl_get_num(const cJSON *obj, const char *name, double dflt);
const char *ftctl_get_str(const cJSON *obj, const char *name, const char *dflt);
bool ftctl_is_null_or_absent(const cJSON *obj, const char *name);
/* True for COMPLETED, FAILED, CANCELLED. */
bool ftctl_state_is_final(const char *state);
/* Parses a positive job id; -1 with a message on stderr when s is not one. */
int ftctl_parse_job_id(const char *s, int64_t *out);
/* Parses a number of seconds in (0, max]; -1 when s is not one. */
int ftctl_parse_seconds(const char *s, double max, double *out);

/* ---- subcommands (client/cmd_*.c); each returns an FTCTL_EXIT_* code ---- */
int ftctl_cmd_submit(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_ls(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_show(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_logs(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_watch(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_cancel(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_wait(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_nodes(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_usage(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_ping(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_keygen(ftctl_t *c, int argc, char **argv);
int ftctl_cmd_agent(ftctl_t *c, int argc, char **argv);  /* agent.c */
int ftctl_cmd_report(ftctl_t *c, int argc, char **argv); /* cmd_report.c */
/* Writes the team leads' report (a report_reply) as one self-contained HTML page. */
int ftctl_html_report(const cJSON *reply, FILE *f);

/* Prints the usage of a subcommand to stdout (status 0) or stderr and returns
 * status; used by handlers for -h and for misuse. */
int ftctl_usage(const char *cmd, int status);
/* Usage error: "ftctl CMD: <message>" and the usage line on stderr; returns 2. */
int ftctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Options loop for subcommands whose only option is -h: 0 to go on, -1 when
 * the help was shown (the caller exits 0), else a usage exit code. Positional
 * arguments are left to the caller (from optind). */
int ftctl_only_help_opt(const char *cmd, int argc, char **argv);
/* Parses a --since/--until value (opt names it) against now into *out (>= 0):
 * 0, or the usage exit code after saying why. */
int ftctl_time_opt(const char *cmd, const char *opt, const char *arg, int64_t now, int64_t *out);

#endif
