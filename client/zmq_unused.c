/*
 * client/zmq_unused.c: what Debian's static libzmq references but ftctl and
 * ftworker never call, so that their static_zmq links take neither
 * libgssapi_krb5 (and its six shared libraries: krb5, k5crypto, com_err,
 * krb5support, keyutils, resolv) nor OpenPGM, NORM and ProtoKit. Linked only
 * into those static_zmq programs (and their test): beside a shared libzmq
 * these names would interpose on the real libraries', so the top-level
 * meson.build adds this file to no other link.
 *
 * Why nothing here is reached:
 * - GSSAPI runs only on a socket given ZMQ_GSSAPI_* options; both set only
 *   CURVE (or none), and libzmq picks the mechanism from the local options,
 *   refusing a peer that offers another. Should it be called anyway, every
 *   function fails with GSS_S_UNAVAILABLE, which libzmq's GSSAPI code handles
 *   as a failed handshake (the release functions have nothing to release).
 * - pgm://, epgm:// and norm:// are multicast transports that libzmq refuses on
 *   DEALER and PAIR sockets (ENOCOMPATPROTO, before any pgm_ or Norm call), the
 *   only kinds these programs open; ftctl's endpoint check also accepts tcp://,
 *   ipc:// and inproc:// only. The one call libzmq does make is pgm_init (and
 *   pgm_shutdown) from zmq_ctx_new: it succeeds without doing anything, which
 *   also saves each ftctl the NSS lookup of getprotobyname("pgm") that
 *   OpenPGM's own pgm_init does (0.16 of the 0.22 ms zmq_ctx_new took). Any
 *   other pgm_ or Norm function prints which one was called and aborts: a
 *   build bug, never a user's error.
 *
 * Cost: none at run time; the loader maps libc, libm and libcjson instead of
 * twenty shared libraries, and a fork copies ~40 memory maps instead of ~130.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* program_invocation_short_name; meson's link check has no -D */
#endif
#include <errno.h>
#include <gssapi/gssapi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- GSSAPI: every call fails, nothing is ever allocated ---- */

/* The name types libzmq's convert_nametype() hands out; never dereferenced
 * here since gss_import_name refuses every name. */
static gss_OID_desc zmq_unused_oid = {0, NULL};
gss_OID GSS_C_NT_HOSTBASED_SERVICE = &zmq_unused_oid;
gss_OID GSS_C_NT_USER_NAME = &zmq_unused_oid;

static OM_uint32 unavailable(OM_uint32 *minor)
{
    if (minor)
        *minor = 0;
    return GSS_S_UNAVAILABLE;
}

OM_uint32 gss_acquire_cred(OM_uint32 *minor, gss_name_t name, OM_uint32 time_req, gss_OID_set mechs,
                           gss_cred_usage_t usage, gss_cred_id_t *cred, gss_OID_set *actual_mechs,
                           OM_uint32 *time_rec)
{
    if (cred)
        *cred = GSS_C_NO_CREDENTIAL;
    if (actual_mechs)
        *actual_mechs = GSS_C_NO_OID_SET;
    return unavailable(minor);
}

OM_uint32 gss_release_cred(OM_uint32 *minor, gss_cred_id_t *cred)
{
    if (cred)
        *cred = GSS_C_NO_CREDENTIAL;
    return unavailable(minor);
}

OM_uint32 gss_init_sec_context(OM_uint32 *minor, gss_cred_id_t cred, gss_ctx_id_t *ctx,
                               gss_name_t target, gss_OID mech, OM_uint32 req_flags,
                               OM_uint32 time_req, gss_channel_bindings_t bindings,
                               gss_buffer_t input, gss_OID *actual_mech, gss_buffer_t output,
                               OM_uint32 *ret_flags, OM_uint32 *time_rec)
{
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    return unavailable(minor);
}

OM_uint32 gss_accept_sec_context(OM_uint32 *minor, gss_ctx_id_t *ctx, gss_cred_id_t cred,
                                 gss_buffer_t input, gss_channel_bindings_t bindings,
                                 gss_name_t *src_name, gss_OID *mech, gss_buffer_t output,
                                 OM_uint32 *ret_flags, OM_uint32 *time_rec,
                                 gss_cred_id_t *delegated)
{
    if (src_name)
        *src_name = GSS_C_NO_NAME;
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    if (delegated)
        *delegated = GSS_C_NO_CREDENTIAL;
    return unavailable(minor);
}

OM_uint32 gss_delete_sec_context(OM_uint32 *minor, gss_ctx_id_t *ctx, gss_buffer_t output)
{
    if (ctx)
        *ctx = GSS_C_NO_CONTEXT;
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    return unavailable(minor);
}

OM_uint32 gss_wrap(OM_uint32 *minor, gss_ctx_id_t ctx, int conf_req, gss_qop_t qop,
                   gss_buffer_t input, int *conf_state, gss_buffer_t output)
{
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    return unavailable(minor);
}

OM_uint32 gss_unwrap(OM_uint32 *minor, gss_ctx_id_t ctx, gss_buffer_t input, gss_buffer_t output,
                     int *conf_state, gss_qop_t *qop)
{
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    return unavailable(minor);
}

OM_uint32 gss_display_name(OM_uint32 *minor, gss_name_t name, gss_buffer_t output,
                           gss_OID *name_type)
{
    if (output) {
        output->length = 0;
        output->value = NULL;
    }
    return unavailable(minor);
}

OM_uint32 gss_import_name(OM_uint32 *minor, gss_buffer_t input, gss_OID name_type, gss_name_t *name)
{
    if (name)
        *name = GSS_C_NO_NAME;
    return unavailable(minor);
}

OM_uint32 gss_release_name(OM_uint32 *minor, gss_name_t *name)
{
    if (name)
        *name = GSS_C_NO_NAME;
    return unavailable(minor);
}

OM_uint32 gss_release_buffer(OM_uint32 *minor, gss_buffer_t buffer)
{
    if (buffer) {
        buffer->length = 0;
        buffer->value = NULL;
    }
    return unavailable(minor);
}

/* ---- OpenPGM and NORM ---- */

/* OpenPGM's prototypes (pgm/engine.h): bool pgm_init (pgm_error_t **),
 * bool pgm_shutdown (void). The error out-parameter stays untouched: libzmq
 * reads it only after a failure. */
bool pgm_init(void **error);
bool pgm_shutdown(void);

bool pgm_init(void **error)
{
    (void)error;
    return true;
}

bool pgm_shutdown(void)
{
    return true;
}

static _Noreturn void not_linked(const char *name)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg),
                     "%s: libzmq called '%s', which this static_zmq build leaves out\n",
                     program_invocation_short_name, name);
    if (n > 0)
        (void)!write(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    abort();
}

/* One definition per name libzmq.a references; the arguments are ignored and
 * the function never returns, so the declared signature does not matter to the
 * caller's ABI. A libzmq that references a name missing here fails the link
 * check in meson.build, and static_zmq=auto then links ftctl dynamically. */
#define NOT_LINKED(name)                                                                           \
    void name(void);                                                                               \
    void name(void)                                                                                \
    {                                                                                              \
        not_linked(#name);                                                                         \
    }

NOT_LINKED(pgm_bind3)
NOT_LINKED(pgm_close)
NOT_LINKED(pgm_connect)
NOT_LINKED(pgm_error_free)
NOT_LINKED(pgm_free)
NOT_LINKED(pgm_freeaddrinfo)
NOT_LINKED(pgm_getaddrinfo)
NOT_LINKED(pgm_getsockopt)
NOT_LINKED(pgm_gsi_create_from_data)
NOT_LINKED(pgm_recvmsgv)
NOT_LINKED(pgm_send)
NOT_LINKED(pgm_setsockopt)
NOT_LINKED(pgm_socket)
NOT_LINKED(NormCreateInstance)
NOT_LINKED(NormCreateSession)
NOT_LINKED(NormDestroyInstance)
NOT_LINKED(NormDestroySession)
NOT_LINKED(NormGetDescriptor)
NOT_LINKED(NormGetNextEvent)
NOT_LINKED(NormGetRandomSessionId)
NOT_LINKED(NormIsUnicastAddress)
NOT_LINKED(NormNodeDelete)
NOT_LINKED(NormObjectGetType)
NOT_LINKED(NormObjectGetUserData)
NOT_LINKED(NormObjectSetUserData)
NOT_LINKED(NormSetCongestionControl)
NOT_LINKED(NormSetDefaultSyncPolicy)
NOT_LINKED(NormSetDefaultUnicastNack)
NOT_LINKED(NormSetLoopback)
NOT_LINKED(NormSetMulticastInterface)
NOT_LINKED(NormSetRxPortReuse)
NOT_LINKED(NormSetTTL)
NOT_LINKED(NormStartReceiver)
NOT_LINKED(NormStartSender)
NOT_LINKED(NormStopInstance)
NOT_LINKED(NormStopReceiver)
NOT_LINKED(NormStopSender)
NOT_LINKED(NormStreamFlush)
NOT_LINKED(NormStreamOpen)
NOT_LINKED(NormStreamRead)
NOT_LINKED(NormStreamSeekMsgStart)
NOT_LINKED(NormStreamWrite)

/* NORM's handle constants (normApi.h), with NORM's own values. */
extern const void *const NORM_INSTANCE_INVALID;
extern const void *const NORM_SESSION_INVALID;
extern const void *const NORM_OBJECT_INVALID;
extern const unsigned int NORM_NODE_ANY;
const void *const NORM_INSTANCE_INVALID = NULL;
const void *const NORM_SESSION_INVALID = NULL;
const void *const NORM_OBJECT_INVALID = NULL;
const unsigned int NORM_NODE_ANY = 0xffffffffu;
