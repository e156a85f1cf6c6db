/*
 * tests/link/test_static_zmq.c: the static_zmq link that ftctl uses, with
 * client/zmq_unused.c standing in for GSSAPI, OpenPGM and NORM. Checks that
 * none of those libraries is mapped, that every GSSAPI call fails with
 * GSS_S_UNAVAILABLE, that the multicast transports are refused on the socket
 * kinds ftctl opens (so the aborting stand-ins are never reached), and that a
 * CURVE DEALER-ROUTER round trip over TCP still works.
 *
 * Built only where ftctl is linked with static_zmq (tests/link/meson.build).
 */
#include <errno.h>
#include <gssapi/gssapi.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "../worker/check.h"

/* True when /proc/self/maps names a file containing any of the names. */
static int mapped(const char *const *names, size_t n, char *which, size_t which_len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    int hit = 0;
    while (!hit && fgets(line, sizeof(line), f))
        for (size_t i = 0; i < n; i++)
            if (strstr(line, names[i])) {
                snprintf(which, which_len, "%s", names[i]);
                hit = 1;
                break;
            }
    fclose(f);
    return hit;
}

static void check_gssapi(void)
{
    OM_uint32 minor = 7;
    gss_buffer_desc in = {5, (void *)"ftctl"}, out = {3, (void *)"xyz"};
    gss_name_t name = (gss_name_t)&in;
    OM_uint32 rc = gss_import_name(&minor, &in, GSS_C_NT_HOSTBASED_SERVICE, &name);
    CHECK(rc == GSS_S_UNAVAILABLE && minor == 0 && name == GSS_C_NO_NAME,
          "gss_import_name fails with GSS_S_UNAVAILABLE and no name (rc %u)", (unsigned)rc);
    gss_cred_id_t cred = (gss_cred_id_t)&in;
    rc = gss_acquire_cred(&minor, GSS_C_NO_NAME, 0, GSS_C_NO_OID_SET, GSS_C_INITIATE, &cred, NULL,
                          NULL);
    CHECK(rc == GSS_S_UNAVAILABLE && cred == GSS_C_NO_CREDENTIAL,
          "gss_acquire_cred fails and hands out no credential");
    gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
    rc = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &ctx, GSS_C_NO_NAME, GSS_C_NO_OID, 0, 0,
                              GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    CHECK(rc == GSS_S_UNAVAILABLE && out.length == 0 && out.value == NULL,
          "gss_init_sec_context fails with an empty output token");
    out = (gss_buffer_desc){3, (void *)"xyz"};
    rc = gss_accept_sec_context(&minor, &ctx, GSS_C_NO_CREDENTIAL, &in, GSS_C_NO_CHANNEL_BINDINGS,
                                &name, NULL, &out, NULL, NULL, NULL);
    CHECK(rc == GSS_S_UNAVAILABLE && out.length == 0, "gss_accept_sec_context fails");
    rc = gss_wrap(&minor, ctx, 1, GSS_C_QOP_DEFAULT, &in, NULL, &out);
    CHECK(rc == GSS_S_UNAVAILABLE, "gss_wrap fails");
    rc = gss_unwrap(&minor, ctx, &in, &out, NULL, NULL);
    CHECK(rc == GSS_S_UNAVAILABLE, "gss_unwrap fails");
    rc = gss_display_name(&minor, GSS_C_NO_NAME, &out, NULL);
    CHECK(rc == GSS_S_UNAVAILABLE && out.value == NULL, "gss_display_name fails");
    ctx = (gss_ctx_id_t)&in;
    rc = gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    CHECK(rc == GSS_S_UNAVAILABLE && ctx == GSS_C_NO_CONTEXT,
          "gss_delete_sec_context clears the handle");
    name = (gss_name_t)&in;
    cred = (gss_cred_id_t)&in;
    out = (gss_buffer_desc){3, (void *)"xyz"};
    rc = gss_release_name(&minor, &name) | gss_release_cred(&minor, &cred) |
         gss_release_buffer(&minor, &out);
    CHECK(rc == GSS_S_UNAVAILABLE && name == GSS_C_NO_NAME && cred == GSS_C_NO_CREDENTIAL &&
              out.value == NULL,
          "the release functions clear their handles");
}

/* ftctl opens DEALER sockets and a PAIR monitor: multicast is refused on both
 * before libzmq calls any pgm_ or Norm function. */
static void check_multicast_refused(void *zctx)
{
    static const int kinds[] = {ZMQ_DEALER, ZMQ_PAIR};
    static const char *const eps[] = {"pgm://127.0.0.1;239.192.1.1:5555",
                                      "epgm://127.0.0.1;239.192.1.1:5555",
                                      "norm://1,127.0.0.1:5555"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        void *s = zmq_socket(zctx, kinds[k]);
        for (size_t e = 0; e < sizeof(eps) / sizeof(eps[0]); e++) {
            errno = 0;
            int rc = zmq_connect(s, eps[e]);
            int err = errno;
            CHECK(rc == -1 && (err == ENOCOMPATPROTO || err == EPROTONOSUPPORT),
                  "%s socket refuses '%s' (%s)", kinds[k] == ZMQ_DEALER ? "DEALER" : "PAIR", eps[e],
                  zmq_strerror(err));
        }
        zmq_close(s);
    }
}

static void check_curve_round_trip(void *zctx)
{
    char spub[41], ssec[41], cpub[41], csec[41];
    int ok = zmq_curve_keypair(spub, ssec) == 0 && zmq_curve_keypair(cpub, csec) == 0;
    CHECK(ok, "libsodium makes CURVE key pairs");
    void *srv = zmq_socket(zctx, ZMQ_ROUTER), *cli = zmq_socket(zctx, ZMQ_DEALER);
    int one = 1, linger = 0, tmo = 5000;
    ok = zmq_setsockopt(srv, ZMQ_CURVE_SERVER, &one, sizeof(one)) == 0 &&
         zmq_setsockopt(srv, ZMQ_CURVE_SECRETKEY, ssec, 40) == 0 &&
         zmq_setsockopt(srv, ZMQ_LINGER, &linger, sizeof(linger)) == 0 &&
         zmq_setsockopt(srv, ZMQ_RCVTIMEO, &tmo, sizeof(tmo)) == 0 &&
         zmq_bind(srv, "tcp://127.0.0.1:*") == 0;
    char ep[128];
    size_t ep_len = sizeof(ep);
    ok = ok && zmq_getsockopt(srv, ZMQ_LAST_ENDPOINT, ep, &ep_len) == 0;
    ok = ok && zmq_setsockopt(cli, ZMQ_CURVE_SERVERKEY, spub, 40) == 0 &&
         zmq_setsockopt(cli, ZMQ_CURVE_PUBLICKEY, cpub, 40) == 0 &&
         zmq_setsockopt(cli, ZMQ_CURVE_SECRETKEY, csec, 40) == 0 &&
         zmq_setsockopt(cli, ZMQ_LINGER, &linger, sizeof(linger)) == 0 &&
         zmq_setsockopt(cli, ZMQ_RCVTIMEO, &tmo, sizeof(tmo)) == 0 && zmq_connect(cli, ep) == 0;
    CHECK(ok, "CURVE ROUTER bound on %s, DEALER connected", ok ? ep : "?");
    char buf[64];
    int n = -1;
    if (ok && zmq_send(cli, "ping", 4, 0) == 4) {
        char id[256];
        int idn = zmq_recv(srv, id, sizeof(id), 0);
        n = idn > 0 ? zmq_recv(srv, buf, sizeof(buf), 0) : -1;
        if (n == 4 && memcmp(buf, "ping", 4) == 0 &&
            zmq_send(srv, id, (size_t)idn, ZMQ_SNDMORE) == idn)
            zmq_send(srv, "pong", 4, 0);
        n = zmq_recv(cli, buf, sizeof(buf), 0);
    }
    CHECK(n == 4 && memcmp(buf, "pong", 4) == 0,
          "a request and its reply cross the CURVE connection");
    zmq_close(cli);
    zmq_close(srv);
}

int main(void)
{
    static const char *const left_out[] = {"libgssapi", "libkrb5",     "libk5crypto",
                                           "libpgm",    "libnorm",     "libprotokit",
                                           "libzmq.so", "libsodium.so"};
    char which[32] = "";
    int m = mapped(left_out, sizeof(left_out) / sizeof(left_out[0]), which, sizeof(which));
    CHECK(m == 0, "no GSSAPI, Kerberos, OpenPGM, NORM or shared libzmq mapped%s%s",
          m > 0 ? ": found " : "", which);
    check_gssapi();
    void *zctx = zmq_ctx_new();
    CHECK(zctx != NULL, "zmq_ctx_new succeeds (pgm_init stands in)");
    if (!zctx)
        return check_exit();
    check_multicast_refused(zctx);
    check_curve_round_trip(zctx);
    CHECK(zmq_ctx_term(zctx) == 0, "zmq_ctx_term succeeds (pgm_shutdown stands in)");
    return check_exit();
}
