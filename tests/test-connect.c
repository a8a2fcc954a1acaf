/* rs_create_connection and rs_create_connection_addrs: refusals reported per address, resolver
 * errors, the per-attempt timeout and the total deadline, Happy Eyeballs (RFC 8305) pacing and
 * family interleaving, source addresses, and a CPython socket.create_server peer. Everything runs
 * over loopback; connections that never complete come from listeners whose accept queue is full
 * (the kernel then drops SYNs), so no test needs a route to nowhere. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringsock/net.h>

#include "netns.h"
#include "pypeer.h"
#include "t.h"

#define ASSERT_BETWEEN(x, lo, hi)                                                                            \
    ck_assert_msg((x) >= (lo) && (x) <= (hi), "%s = %.3f, want %.3f .. %.3f", #x, (double)(x), (double)(lo), \
                  (double)(hi))

/* ---- addresses ---------------------------------------------------------------------------- */

static void port_str(const struct sockaddr_storage *a, char buf[8]) { snprintf(buf, 8, "%u", t_port(a)); }

static const char *addr_str(const struct sockaddr_storage *a, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, host, sizeof host);
    else if (a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, host, sizeof host);
    snprintf(buf, cap, a->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, t_port(a));
    return buf;
}

static void assert_attempt(const struct rs_connect_report *rep, size_t i, const struct sockaddr_storage *addr,
                           int err)
{
    char want[64], got[64];
    ck_assert_msg(i < rep->count, "attempt %zu missing: the report has %zu", i, rep->count);
    const struct rs_connect_attempt *a = &rep->attempt[i];
    addr_str(&a->addr, got, sizeof got);
    addr_str(addr, want, sizeof want);
    ck_assert_msg(t_same_addr(&a->addr, addr), "attempt %zu went to %s, want %s", i, got, want);
    ck_assert_uint_eq(a->addrlen,
                      addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    ck_assert_msg(a->error == err, "attempt %zu (%s): error %d (%s), want %s", i, got, a->error,
                  rs_err_name(a->error), rs_err_name(err));
    /* times from the call's start: an attempt with a result ended after it started */
    ck_assert_msg(a->start >= 0 && (err == -EINPROGRESS ? a->end < 0 : a->end >= a->start),
                  "attempt %zu: start %.6f end %.6f", i, a->start, a->end);
}

/* Accept one connection on l and check it is the one c made (its peer is c's local address). */
static rs_socket *accept_from(rs_socket *l, rs_socket *c)
{
    rs_socket *conn;
    struct sockaddr_storage peer, local;
    socklen_t pl = sizeof peer, ll = sizeof local;
    ck_assert_int_eq(rs_settimeout(l, 5.0), 0);
    int r = rs_accept(l, &conn, &peer, &pl);
    ASSERT_ERR(r, 0);
    ck_assert_int_eq(rs_getsockname(c, &local, &ll), 0);
    char a[64], b[64];
    ck_assert_msg(t_same_addr(&peer, &local), "accepted %s, but the client is %s",
                  addr_str(&peer, a, sizeof a), addr_str(&local, b, sizeof b));
    return conn;
}

/* One byte each way: the connection is real and both ends are wired to each other. */
static void ping(rs_socket *a, rs_socket *b)
{
    char c = 'x';
    ck_assert_int_eq(rs_settimeout(a, 5.0), 0);
    ck_assert_int_eq(rs_settimeout(b, 5.0), 0);
    ck_assert_int_eq(rs_sendall(a, "p", 1, 0), 1);
    ck_assert_int_eq(rs_recv(b, &c, 1, 0), 1);
    ck_assert_int_eq(c, 'p');
    ck_assert_int_eq(rs_sendall(b, "q", 1, 0), 1);
    ck_assert_int_eq(rs_recv(a, &c, 1, 0), 1);
    ck_assert_int_eq(c, 'q');
}

/* ---- errors --------------------------------------------------------------------------------- */

START_TEST(connect_refused_port)
{
    struct sockaddr_storage addr;
    socklen_t len;
    /* bound but not listening: the kernel answers SYN with RST, and nobody else can take the port
     * while it stays bound */
    rs_socket *hold = t_refusing_port(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);

    struct rs_connect_report rep;
    memset(&rep, 0xa5, sizeof rep);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.report = &rep;
    rs_socket *s = NULL;
    int fds = t_fd_count();
    int r = rs_create_connection(&s, "127.0.0.1", port, &o);
    ASSERT_ERR(r, -ECONNREFUSED);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(rep.count, 1);
    assert_attempt(&rep, 0, &addr, -ECONNREFUSED);

    /* and the same without a report or options */
    r = rs_create_connection(&s, "127.0.0.1", port, NULL);
    ASSERT_ERR(r, -ECONNREFUSED);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_int_eq(rs_close(hold), 0);
}
END_TEST

/* A call that fails before any attempt (bad arguments, a port the resolver refuses, an empty
 * list) says so in its report: count 0, not whatever the caller's memory held (the man page's
 * EXAMPLE printed 16 garbage attempts for an unresolvable host). */
START_TEST(connect_report_zero_when_no_attempt)
{
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.report = &rep;
    rs_socket *s = NULL;
    memset(&rep, 0xa5, sizeof rep);
    ASSERT_ERR(rs_create_connection(&s, "", "80", &o), -EINVAL);
    ck_assert_uint_eq(rep.count, 0);
    memset(&rep, 0xa5, sizeof rep);
    ASSERT_ERR(rs_create_connection(&s, "127.0.0.1", "99999", &o), RS_EAI(EAI_SERVICE));
    ck_assert_uint_eq(rep.count, 0);
    memset(&rep, 0xa5, sizeof rep);
    o.timeout = NAN;
    ASSERT_ERR(rs_create_connection(&s, "127.0.0.1", "80", &o), -EINVAL);
    ck_assert_uint_eq(rep.count, 0);
    o.timeout = RS_TIMEOUT_DEFAULT;
    memset(&rep, 0xa5, sizeof rep);
    ASSERT_ERR(rs_create_connection_addrs(&s, NULL, &o), -EADDRNOTAVAIL);
    ck_assert_uint_eq(rep.count, 0);
    memset(&rep, 0xa5, sizeof rep);
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    ASSERT_ERR(rs_conn_connect(loop, "", "80", &o, NULL, NULL), -EINVAL);
    ck_assert_uint_eq(rep.count, 0);
    ck_assert_ptr_null(s);
}
END_TEST

/* all_errors: every address of the list is tried in order and reported with its own error. */
START_TEST(connect_refused_every_address_reported)
{
    struct sockaddr_storage ss[3];
    socklen_t len[3];
    rs_socket *hold[3];
    hold[0] = t_refusing_port(AF_INET, &ss[0], &len[0]);
    hold[1] = t_refusing_port(AF_INET, &ss[1], &len[1]);
    hold[2] = t_refusing_port(AF_INET, &ss[2], &len[2]);
    struct addrinfo ai[3];
    t_ai_chain(ai, ss, len, 3);

    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.report = &rep;
    rs_socket *s = NULL;
    int fds = t_fd_count();
    int r = rs_create_connection_addrs(&s, ai, &o);
    ASSERT_ERR(r, -ECONNREFUSED);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_uint_eq(rep.count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_attempt(&rep, i, &ss[i], -ECONNREFUSED);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rs_close(hold[i]), 0);
}
END_TEST

/* Many calls on one loop: every attempt's socket is new to the backend even when its fd number
 * and memory are reused from an earlier call (a readiness backend must register it afresh). */
START_TEST(connect_repeated_calls)
{
    struct sockaddr_storage refused, addr;
    socklen_t rlen, len;
    rs_socket *hold = t_refusing_port(AF_INET, &refused, &rlen);
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char rport[8], port[8];
    port_str(&refused, rport);
    port_str(&addr, port);
    int fds = t_fd_count();
    for (int i = 0; i < 6; i++) {
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 2.0;
        rs_socket *c = NULL;
        double t0 = t_now();
        int r = rs_create_connection(&c, "127.0.0.1", rport, &o);
        double took = t_now() - t0;
        ck_assert_msg(r == -ECONNREFUSED, "call %d to a refusing port: %s after %.3f s", i, rs_err_name(r),
                      took);
        ck_assert_int_eq(t_fd_count(), fds);
        r = rs_create_connection(&c, "127.0.0.1", port, &o);
        ck_assert_msg(r == 0, "call %d to a listener: %s", i, rs_err_name(r));
        rs_socket *conn = accept_from(l, c);
        ping(c, conn);
        ck_assert_int_eq(rs_close(conn), 0);
        ck_assert_int_eq(rs_close(c), 0);
    }
    ck_assert_int_eq(rs_close(l), 0);
    ck_assert_int_eq(rs_close(hold), 0);
}
END_TEST

START_TEST(connect_bad_args)
{
    struct sockaddr_storage ss;
    socklen_t len;
    rs_socket *hold = t_refusing_port(AF_INET, &ss, &len);
    struct addrinfo ai;
    t_ai_chain(&ai, &ss, &len, 1);
    rs_socket *s = NULL;
    int fds = t_fd_count();

    ASSERT_ERR(rs_create_connection(NULL, "127.0.0.1", "80", NULL), -EINVAL);
    ck_assert_int_eq(t_fd_count(), fds);
    ASSERT_ERR(rs_create_connection(&s, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_ptr_null(s);
    ASSERT_ERR(rs_create_connection_addrs(NULL, &ai, NULL), -EINVAL);
    ck_assert_int_eq(t_fd_count(), fds);

    /* timeouts as rs_settimeout validates them */
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = -5.0;
    ASSERT_ERR(rs_create_connection_addrs(&s, &ai, &o), -EINVAL);
    o.timeout = NAN;
    ASSERT_ERR(rs_create_connection_addrs(&s, &ai, &o), -EINVAL);
    o = (struct rs_connect_opts)RS_CONNECT_OPTS_INIT;
    o.deadline = -3.0;
    ASSERT_ERR(rs_create_connection_addrs(&s, &ai, &o), -EINVAL);
    ck_assert_int_eq(t_fd_count(), fds);

    /* an empty list is an error (socket.py: "getaddrinfo returns an empty list"), never a socket */
    int r = rs_create_connection_addrs(&s, NULL, NULL);
    ck_assert_msg(r < 0, "empty list: %d", r);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_int_eq(rs_close(hold), 0);
}
END_TEST

/* ---- resolving -------------------------------------------------------------------------------- */

START_TEST(connect_numeric_hosts)
{
    static const struct {
        int family;
        const char *host;
    } cases[] = { { AF_INET, "127.0.0.1" }, { AF_INET6, "::1" } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage addr;
        socklen_t len;
        rs_socket *l = t_server_ephemeral(cases[i].family, &addr, &len);
        char port[8];
        port_str(&addr, port);
        struct rs_connect_report rep;
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 5.0;
        o.report = &rep;
        rs_socket *c = NULL;
        int r = rs_create_connection(&c, cases[i].host, port, &o);
        ck_assert_msg(r == 0, "%s port %s: %s", cases[i].host, port, rs_err_name(r));
        ck_assert_int_eq(rs_socket_family(c), cases[i].family);
        ck_assert_int_eq(rs_socket_type(c), SOCK_STREAM);
        ck_assert_uint_eq(rep.count, 1);
        assert_attempt(&rep, 0, &addr, 0);
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        ck_assert_int_eq(rs_getpeername(c, &peer, &pl), 0);
        ck_assert(t_same_addr(&peer, &addr));
        rs_socket *conn = accept_from(l, c);
        ping(c, conn);
        ck_assert_int_eq(rs_close(conn), 0);
        ck_assert_int_eq(rs_close(c), 0);
        ck_assert_int_eq(rs_close(l), 0);
    }
}
END_TEST

/* Connect to "localhost" with a server on 127.0.0.1 only; whatever the resolver lists first. */
static void connect_localhost_v4_server(bool expect_v6_first)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.report = &rep;
    rs_socket *c = NULL;
    int r = rs_create_connection(&c, "localhost", port, &o);
    ASSERT_ERR(r, 0);
    ck_assert_int_eq(rs_socket_family(c), AF_INET);
    ck_assert_uint_ge(rep.count, 1);
    ck_assert_uint_le(rep.count, 2);
    if (expect_v6_first)
        ck_assert_uint_eq(rep.count, 2);
    if (rep.count == 2) {
        /* ::1 was tried first: nothing listens there on this port, so it was refused */
        struct sockaddr_storage v6;
        socklen_t v6len;
        t_loopback(AF_INET6, t_port(&addr), &v6, &v6len);
        assert_attempt(&rep, 0, &v6, -ECONNREFUSED);
    }
    assert_attempt(&rep, rep.count - 1, &addr, 0);
    rs_socket *conn = accept_from(l, c);
    ping(c, conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(l), 0);
}

/* The system's own /etc/hosts, whatever order it gives. */
START_TEST(connect_localhost_system_resolver) { connect_localhost_v4_server(false); }
END_TEST

/* An /etc/hosts that lists ::1 before 127.0.0.1 (as most distributions do), inside a private
 * network namespace so that no other process can be listening on [::1]:port. */
START_TEST(connect_localhost_ipv6_listed_first)
{
    if (!t_netns_isolated() || !t_netns_hosts("::1 localhost\n127.0.0.1 localhost\n")) {
        fprintf(stderr, "note: connect_localhost_ipv6_listed_first: no namespaces, using an address list\n");
        /* the same situation built by hand: [::1]:refused, then 127.0.0.1:listening */
        struct sockaddr_storage ss[2];
        socklen_t len[2];
        rs_socket *hold = t_refusing_port(AF_INET6, &ss[0], &len[0]);
        rs_socket *l = t_server_ephemeral(AF_INET, &ss[1], &len[1]);
        struct addrinfo ai[2];
        t_ai_chain(ai, ss, len, 2);
        struct rs_connect_report rep;
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 5.0;
        o.report = &rep;
        rs_socket *c = NULL;
        ASSERT_ERR(rs_create_connection_addrs(&c, ai, &o), 0);
        ck_assert_uint_eq(rep.count, 2);
        assert_attempt(&rep, 0, &ss[0], -ECONNREFUSED);
        assert_attempt(&rep, 1, &ss[1], 0);
        rs_socket *conn = accept_from(l, c);
        ck_assert_int_eq(rs_close(conn), 0);
        ck_assert_int_eq(rs_close(c), 0);
        ck_assert_int_eq(rs_close(l), 0);
        ck_assert_int_eq(rs_close(hold), 0);
        return;
    }
    connect_localhost_v4_server(true);
}
END_TEST

START_TEST(connect_unknown_host)
{
    rs_socket *s = NULL;
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.report = &rep;
    int fds = t_fd_count();
    /* .invalid never resolves (RFC 6761); without a network this is EAI_AGAIN, also a resolver error */
    int r = rs_create_connection(&s, "no-such-host.invalid", "80", &o);
    ck_assert_msg(RS_IS_EAI(r), "got %d (%s), want a resolver error", r, rs_err_name(r));
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_ptr_null(s);
    const char *msg = rs_strerror(r);
    ck_assert_ptr_nonnull(msg);
    ck_assert_uint_gt(strlen(msg), 0);
    ck_assert_str_ne(msg, "unknown error");
    ck_assert_str_ne(rs_err_name(r), "UNKNOWN");

    /* a service name that does not exist is the resolver's error too */
    r = rs_create_connection(&s, "127.0.0.1", "notaport", &o);
    ck_assert_msg(RS_IS_EAI(r), "bad port: got %d (%s), want a resolver error", r, rs_err_name(r));
    ck_assert_str_ne(rs_strerror(r), "unknown error");
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

/* opts.family restricts the addresses tried, as getaddrinfo's family argument. */
START_TEST(connect_family_option)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.family = AF_INET;
    o.report = &rep;
    rs_socket *c = NULL;
    ASSERT_ERR(rs_create_connection(&c, "localhost", port, &o), 0);
    ck_assert_int_eq(rs_socket_family(c), AF_INET);
    ck_assert_uint_eq(rep.count, 1);
    assert_attempt(&rep, 0, &addr, 0);
    rs_socket *conn = accept_from(l, c);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);

    int fds = t_fd_count();
    o.family = AF_INET6;
    int r = rs_create_connection(&c, "127.0.0.1", port, &o);
    ck_assert_msg(RS_IS_EAI(r), "IPv4 literal with AF_INET6: got %d (%s)", r, rs_err_name(r));
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* ---- timeout and deadline ------------------------------------------------------------------ */

START_TEST(connect_timeout_full_backlog)
{
    static const int fams[] = { AF_INET, AF_INET6 };
    for (size_t i = 0; i < 2; i++) {
        struct t_blackhole bh;
        t_blackhole_open(&bh, fams[i]);
        char port[8];
        port_str(&bh.addr, port);
        struct rs_connect_report rep;
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 0.3;
        o.report = &rep;
        rs_socket *s = NULL;
        int fds = t_fd_count();
        double t0 = t_now();
        int r = rs_create_connection(&s, fams[i] == AF_INET6 ? "::1" : "127.0.0.1", port, &o);
        double took = t_now() - t0;
        ASSERT_ERR(r, -ETIMEDOUT);
        ASSERT_BETWEEN(took, 0.15, 0.45);
        ck_assert_int_eq(t_fd_count(), fds);
        ck_assert_uint_eq(rep.count, 1);
        assert_attempt(&rep, 0, &bh.addr, -ETIMEDOUT);
        t_blackhole_close(&bh);
    }
}
END_TEST

/* The per-attempt timeout is 0.4 s, three addresses would take 1.2 s in socket.py (gh-123793);
 * the 0.5 s deadline ends the call during the second attempt. */
START_TEST(connect_deadline_bounds_address_list)
{
    struct t_blackhole bh[3];
    struct sockaddr_storage ss[3];
    socklen_t len[3];
    for (int i = 0; i < 3; i++) {
        t_blackhole_open(&bh[i], AF_INET);
        ss[i] = bh[i].addr;
        len[i] = bh[i].len;
    }
    struct addrinfo ai[3];
    t_ai_chain(ai, ss, len, 3);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 0.4;
    o.deadline = 0.5;
    o.happy_eyeballs_delay = RS_TIMEOUT_NONE;
    o.report = &rep;
    rs_socket *s = NULL;
    int fds = t_fd_count();
    double t0 = t_now();
    int r = rs_create_connection_addrs(&s, ai, &o);
    double took = t_now() - t0;
    ASSERT_ERR(r, -ETIMEDOUT);
    ASSERT_BETWEEN(took, 0.35, 0.8);
    ck_assert_int_eq(t_fd_count(), fds);
    /* sequential: the first attempt timed out at 0.4 s, the second was cut by the deadline, the
     * third never started */
    ck_assert_uint_eq(rep.count, 2);
    assert_attempt(&rep, 0, &ss[0], -ETIMEDOUT);
    assert_attempt(&rep, 1, &ss[1], -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        t_blackhole_close(&bh[i]);
}
END_TEST

/* A deadline alone bounds an attempt that has no timeout of its own. */
START_TEST(connect_deadline_without_timeout)
{
    struct t_blackhole bh;
    t_blackhole_open(&bh, AF_INET);
    char port[8];
    port_str(&bh.addr, port);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = RS_TIMEOUT_NONE;
    o.deadline = 0.3;
    rs_socket *s = NULL;
    int fds = t_fd_count();
    double t0 = t_now();
    int r = rs_create_connection(&s, "127.0.0.1", port, &o);
    double took = t_now() - t0;
    ASSERT_ERR(r, -ETIMEDOUT);
    ASSERT_BETWEEN(took, 0.15, 0.45);
    ck_assert_int_eq(t_fd_count(), fds);
    t_blackhole_close(&bh);
}
END_TEST

/* The returned socket's timeout is opts.timeout; RS_TIMEOUT_DEFAULT means the default timeout at
 * call time (socket.py's _GLOBAL_DEFAULT_TIMEOUT). */
START_TEST(connect_socket_timeout_attribute)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);
    static const struct {
        double dflt, opt, want;
    } cases[] = {
        { RS_TIMEOUT_NONE, 2.5, 2.5 },
        { 7.5, RS_TIMEOUT_NONE, RS_TIMEOUT_NONE },
        { 7.5, RS_TIMEOUT_DEFAULT, 7.5 },
        { RS_TIMEOUT_NONE, RS_TIMEOUT_DEFAULT, RS_TIMEOUT_NONE },
        { 3.0, 0.75, 0.75 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rs_setdefaulttimeout(cases[i].dflt);
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = cases[i].opt;
        rs_socket *c = NULL;
        int r = rs_create_connection(&c, "127.0.0.1", port, &o);
        ck_assert_msg(r == 0, "case %zu: %s", i, rs_err_name(r));
        ck_assert_msg(rs_gettimeout(c) == cases[i].want, "case %zu: timeout %g, want %g", i, rs_gettimeout(c),
                      cases[i].want);
        rs_setdefaulttimeout(RS_TIMEOUT_NONE);
        rs_socket *conn = accept_from(l, c);
        ck_assert_int_eq(rs_close(conn), 0);
        ck_assert_int_eq(rs_close(c), 0);
    }
    /* NULL opts: the default timeout too */
    rs_setdefaulttimeout(4.0);
    rs_socket *c = NULL;
    ASSERT_ERR(rs_create_connection(&c, "127.0.0.1", port, NULL), 0);
    ck_assert(rs_gettimeout(c) == 4.0);
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    rs_socket *conn = accept_from(l, c);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* ---- Happy Eyeballs -------------------------------------------------------------------------- */

/* [black hole, listening server]: with a 0.1 s attempt delay the second attempt starts at 0.1 s
 * and wins long before the first one's 2 s timeout; the first is then cancelled. */
static void second_wins_after_delay(int bh_family)
{
    struct t_blackhole bh;
    t_blackhole_open(&bh, bh_family);
    struct sockaddr_storage ss[2];
    socklen_t len[2];
    ss[0] = bh.addr;
    len[0] = bh.len;
    rs_socket *l = t_server_ephemeral(AF_INET, &ss[1], &len[1]);
    struct addrinfo ai[2];
    t_ai_chain(ai, ss, len, 2);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 2.0;
    o.happy_eyeballs_delay = 0.1;
    o.report = &rep;
    rs_socket *c = NULL;
    int fds = t_fd_count();
    double t0 = t_now();
    int r = rs_create_connection_addrs(&c, ai, &o);
    double took = t_now() - t0;
    ASSERT_ERR(r, 0);
    ASSERT_BETWEEN(took, 0.08, 0.6);
    /* exactly one new fd: the winner; the black-holed attempt's socket is closed */
    ck_assert_int_eq(t_fd_count(), fds + 1);
    ck_assert_uint_eq(rep.count, 2);
    ck_assert_msg(rep.attempt[0].error == -ECANCELED || rep.attempt[0].error == -ETIMEDOUT,
                  "the loser's error: %s", rs_err_name(rep.attempt[0].error));
    ck_assert(t_same_addr(&rep.attempt[0].addr, &ss[0]));
    assert_attempt(&rep, 1, &ss[1], 0);
    /* the report's clock: the first attempt started at once, the second after the 0.1 s delay,
     * and the loser ended (cancelled) no earlier than the winner connected */
    ck_assert_msg(rep.attempt[0].start < 0.05, "first start %.3f", rep.attempt[0].start);
    ASSERT_BETWEEN(rep.attempt[1].start, 0.09, 0.6);
    ck_assert_msg(rep.attempt[0].end >= rep.attempt[1].end, "loser ended %.3f, winner %.3f",
                  rep.attempt[0].end, rep.attempt[1].end);
    ck_assert(rs_gettimeout(c) == 2.0);
    rs_socket *conn = accept_from(l, c);
    ping(c, conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(l), 0);
    t_blackhole_close(&bh);
}

START_TEST(he_second_address_wins_after_delay) { second_wins_after_delay(AF_INET); }
END_TEST

/* The usual Happy Eyeballs case: IPv6 is black-holed, IPv4 answers. */
START_TEST(he_ipv6_blackholed_ipv4_wins) { second_wins_after_delay(AF_INET6); }
END_TEST

/* happy_eyeballs_delay = RS_TIMEOUT_NONE is socket.py: the first attempt runs to its timeout. */
START_TEST(he_disabled_waits_out_first_attempt)
{
    struct t_blackhole bh;
    t_blackhole_open(&bh, AF_INET);
    struct sockaddr_storage ss[2];
    socklen_t len[2];
    ss[0] = bh.addr;
    len[0] = bh.len;
    rs_socket *l = t_server_ephemeral(AF_INET, &ss[1], &len[1]);
    struct addrinfo ai[2];
    t_ai_chain(ai, ss, len, 2);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 0.5;
    o.happy_eyeballs_delay = RS_TIMEOUT_NONE;
    o.report = &rep;
    rs_socket *c = NULL;
    double t0 = t_now();
    int r = rs_create_connection_addrs(&c, ai, &o);
    double took = t_now() - t0;
    ASSERT_ERR(r, 0);
    ASSERT_BETWEEN(took, 0.4, 0.9);
    ck_assert_uint_eq(rep.count, 2);
    assert_attempt(&rep, 0, &ss[0], -ETIMEDOUT);
    assert_attempt(&rep, 1, &ss[1], 0);
    rs_socket *conn = accept_from(l, c);
    ping(c, conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(l), 0);
    t_blackhole_close(&bh);
}
END_TEST

/* RFC 8305 section 4: the families alternate, starting with `interleave` addresses of the family
 * listed first. All addresses refuse, so every attempt is made and reported in start order. */
START_TEST(he_interleave_order)
{
    struct sockaddr_storage ss[3];
    socklen_t len[3];
    rs_socket *hold[3];
    hold[0] = t_refusing_port(AF_INET6, &ss[0], &len[0]); /* v6a */
    hold[1] = t_refusing_port(AF_INET6, &ss[1], &len[1]); /* v6b */
    hold[2] = t_refusing_port(AF_INET, &ss[2], &len[2]);  /* v4a */
    struct addrinfo ai[3];
    t_ai_chain(ai, ss, len, 3);
    static const struct {
        int interleave;
        size_t order[3];
    } cases[] = {
        { 0, { 0, 2, 1 } }, /* 0 means 1 */
        { 1, { 0, 2, 1 } },
        { 2, { 0, 1, 2 } },
    };
    int fds = t_fd_count();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct rs_connect_report rep;
        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 5.0;
        o.interleave = cases[k].interleave;
        o.report = &rep;
        rs_socket *c = NULL;
        ASSERT_ERR(rs_create_connection_addrs(&c, ai, &o), -ECONNREFUSED);
        ck_assert_int_eq(t_fd_count(), fds);
        ck_assert_uint_eq(rep.count, 3);
        for (size_t i = 0; i < 3; i++)
            assert_attempt(&rep, i, &ss[cases[k].order[i]], -ECONNREFUSED);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rs_close(hold[i]), 0);
}
END_TEST

/* Parallel attempts that all hang: the deadline still ends the call, every attempt is reported
 * and every socket is closed. */
START_TEST(he_deadline_with_attempts_in_flight)
{
    struct t_blackhole bh[3];
    struct sockaddr_storage ss[3];
    socklen_t len[3];
    for (int i = 0; i < 3; i++) {
        t_blackhole_open(&bh[i], i == 1 ? AF_INET6 : AF_INET);
        ss[i] = bh[i].addr;
        len[i] = bh[i].len;
    }
    struct addrinfo ai[3];
    t_ai_chain(ai, ss, len, 3);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 2.0;
    o.deadline = 0.5;
    o.happy_eyeballs_delay = 0.1;
    o.report = &rep;
    rs_socket *c = NULL;
    int fds = t_fd_count();
    double t0 = t_now();
    int r = rs_create_connection_addrs(&c, ai, &o);
    double took = t_now() - t0;
    ASSERT_ERR(r, -ETIMEDOUT);
    ASSERT_BETWEEN(took, 0.4, 0.8);
    ck_assert_int_eq(t_fd_count(), fds);
    /* started at 0, 0.1 and 0.2 s; none lost to a winner, so each ended by the deadline */
    ck_assert_uint_eq(rep.count, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(rep.attempt[i].error == -ETIMEDOUT, "attempt %zu: %s, want ETIMEDOUT", i,
                      rs_err_name(rep.attempt[i].error));
    for (int i = 0; i < 3; i++)
        t_blackhole_close(&bh[i]);
}
END_TEST

/* ---- source address ------------------------------------------------------------------------ */

START_TEST(connect_source_address)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);

    /* 127.0.0.0/8 is all loopback on Linux */
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.source_host = "127.0.0.2";
    rs_socket *c = NULL;
    ASSERT_ERR(rs_create_connection(&c, "127.0.0.1", port, &o), 0);
    rs_socket *conn;
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(rs_settimeout(l, 5.0), 0);
    ck_assert_int_eq(rs_accept(l, &conn, &peer, &pl), 0);
    char host[INET_ADDRSTRLEN];
    ck_assert_int_eq(peer.ss_family, AF_INET);
    inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, host, sizeof host);
    ck_assert_str_eq(host, "127.0.0.2");
    ping(c, conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);

    /* and a source port: take a free one on 127.0.0.2 and give it back (a bound, unconnected
     * socket leaves no TIME_WAIT behind) */
    struct sockaddr_storage src;
    socklen_t sl;
    rs_socket *tmp = t_refusing_port(AF_INET, &src, &sl);
    ck_assert_int_eq(rs_close(tmp), 0);
    char sport[8];
    port_str(&src, sport);
    o.source_port = sport;
    o.source_host = "127.0.0.1";
    ASSERT_ERR(rs_create_connection(&c, "127.0.0.1", port, &o), 0);
    pl = sizeof peer;
    ck_assert_int_eq(rs_accept(l, &conn, &peer, &pl), 0);
    ck_assert_uint_eq(t_port(&peer), t_port(&src));
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* A source address the host does not have: bind fails, the attempt reports it, nothing leaks. */
START_TEST(connect_source_address_unavailable)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    char port[8];
    port_str(&addr, port);
    struct rs_connect_report rep;
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 5.0;
    o.source_host = "192.0.2.1"; /* TEST-NET-1, never local */
    o.report = &rep;
    rs_socket *c = NULL;
    int fds = t_fd_count();
    int r = rs_create_connection(&c, "127.0.0.1", port, &o);
    ASSERT_ERR(r, -EADDRNOTAVAIL);
    ck_assert_int_eq(t_fd_count(), fds);
    ck_assert_ptr_null(c);
    ck_assert_uint_eq(rep.count, 1);
    assert_attempt(&rep, 0, &addr, -EADDRNOTAVAIL);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* ---- a CPython peer ------------------------------------------------------------------------- */

#define ECHO_TOTAL (1u << 20)
#define ECHO_CHUNK (64u << 10)

/* socket.create_server in CPython (tests/py/pyconnect_echo_server.py) accepts our connection and
 * echoes 1 MiB back; it reports the peer address it saw, which must be our socket's. */
START_TEST(connect_python_create_server_echo)
{
    static const struct {
        const char *mode, *host;
        int family;
    } cases[] = {
        { "4", "127.0.0.1", AF_INET },
        { "6", "::1", AF_INET6 },
        { "dual", "127.0.0.1", AF_INET }, /* create_server(dualstack_ipv6=True), IPv4 client */
    };
    unsigned char *out = malloc(ECHO_CHUNK), *in = malloc(ECHO_CHUNK);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(in);
    uint64_t rnd = 0x5eed0001;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *argv[] = { (char *)cases[k].mode, NULL };
        struct t_py py;
        t_py_spawn("pyconnect_echo_server", argv, &py);
        char port[8];
        snprintf(port, sizeof port, "%u", t_py_port(&py));

        struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
        o.timeout = 10.0;
        rs_socket *c = NULL;
        int r = rs_create_connection(&c, cases[k].host, port, &o);
        ck_assert_msg(r == 0, "%s: %s", cases[k].mode, rs_err_name(r));
        ck_assert_int_eq(rs_socket_family(c), cases[k].family);

        /* the peer says whom it accepted: our local port */
        char line[256];
        ck_assert_int_ge(t_py_readline(&py, line, sizeof line, 10.0), 0);
        struct sockaddr_storage local;
        socklen_t ll = sizeof local;
        ck_assert_int_eq(rs_getsockname(c, &local, &ll), 0);
        char want[32];
        snprintf(want, sizeof want, "peer %u", t_port(&local));
        ck_assert_str_eq(line, want);

        /* one chunk at a time, so neither side can block on a full buffer */
        for (size_t done = 0; done < ECHO_TOTAL; done += ECHO_CHUNK) {
            t_py_random(&rnd, out, ECHO_CHUNK);
            ck_assert_int_eq(rs_sendall(c, out, ECHO_CHUNK, 0), (ssize_t)ECHO_CHUNK);
            size_t got = 0;
            while (got < ECHO_CHUNK) {
                ssize_t n = rs_recv(c, in + got, ECHO_CHUNK - got, 0);
                ck_assert_msg(n > 0, "echo after %zu bytes: %s", done + got, n ? rs_err_name((int)n) : "EOF");
                got += (size_t)n;
            }
            ck_assert_msg(memcmp(in, out, ECHO_CHUNK) == 0, "echo differs in chunk at %zu", done);
        }
        ck_assert_int_eq(rs_shutdown(c, SHUT_WR), 0);
        char b;
        ck_assert_int_eq(rs_recv(c, &b, 1, 0), 0);
        ck_assert_int_eq(rs_close(c), 0);
        ck_assert_int_ge(t_py_readline(&py, line, sizeof line, 10.0), 0);
        snprintf(want, sizeof want, "ok %u", ECHO_TOTAL);
        ck_assert_str_eq(line, want);
        ck_assert_int_eq(t_py_wait(&py, 10.0), 0);
    }
    free(out);
    free(in);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------------- */

static Suite *make_suite(void)
{
    Suite *s = suite_create("connect");
    TCase *tc = t_tcase(s, "errors", 10);
    tcase_add_test(tc, connect_refused_port);
    tcase_add_test(tc, connect_report_zero_when_no_attempt);
    tcase_add_test(tc, connect_refused_every_address_reported);
    tcase_add_test(tc, connect_repeated_calls);
    tcase_add_test(tc, connect_bad_args);

    /* a resolver without a network may take its full retry time for .invalid */
    tc = t_tcase(s, "resolve", 40);
    tcase_add_test(tc, connect_numeric_hosts);
    tcase_add_test(tc, connect_localhost_system_resolver);
    tcase_add_test(tc, connect_unknown_host);
    tcase_add_test(tc, connect_family_option);

    /* own network namespace, entered before t_setup creates the loop */
    tc = tcase_create("localhost_ns");
    tcase_add_checked_fixture(tc, t_netns_setup, NULL);
    tcase_add_checked_fixture(tc, t_setup, t_teardown);
    tcase_set_timeout(tc, 10);
    suite_add_tcase(s, tc);
    tcase_add_test(tc, connect_localhost_ipv6_listed_first);

    tc = t_tcase(s, "timeout", 15);
    tcase_add_test(tc, connect_timeout_full_backlog);
    tcase_add_test(tc, connect_deadline_bounds_address_list);
    tcase_add_test(tc, connect_deadline_without_timeout);
    tcase_add_test(tc, connect_socket_timeout_attribute);

    tc = t_tcase(s, "happy_eyeballs", 15);
    tcase_add_test(tc, he_second_address_wins_after_delay);
    tcase_add_test(tc, he_ipv6_blackholed_ipv4_wins);
    tcase_add_test(tc, he_disabled_waits_out_first_attempt);
    tcase_add_test(tc, he_interleave_order);
    tcase_add_test(tc, he_deadline_with_attempts_in_flight);

    tc = t_tcase(s, "source", 10);
    tcase_add_test(tc, connect_source_address);
    tcase_add_test(tc, connect_source_address_unavailable);

    tc = t_tcase(s, "python", 60);
    tcase_add_test(tc, connect_python_create_server_echo);
    return s;
}

int main(void) { return t_run(make_suite()); }
