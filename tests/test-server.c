/* rs_create_server and rs_has_dualstack_ipv6: ephemeral ports on IPv4, IPv6 and any address, the
 * socket options socket.create_server sets (SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY), the listen
 * backlog, bad input, and a CPython socket.create_connection client exchanging checksummed data. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringsock/net.h>

#include "netns.h"
#include "pypeer.h"
#include "t.h"

static const char *host_of(const struct sockaddr_storage *a, char buf[INET6_ADDRSTRLEN])
{
    if (a->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, buf, INET6_ADDRSTRLEN);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, buf, INET6_ADDRSTRLEN);
    return buf;
}

static void local_addr(const rs_socket *s, struct sockaddr_storage *a)
{
    socklen_t len = sizeof *a;
    ck_assert_int_eq(rs_getsockname(s, a, &len), 0);
}

static unsigned short local_port(const rs_socket *s)
{
    struct sockaddr_storage a;
    local_addr(s, &a);
    return t_port(&a);
}

static int opt_int(const rs_socket *s, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    ck_assert_int_eq(rs_getsockopt((rs_socket *)s, level, name, &v, &len), 0);
    return v;
}

/* A client of family to the loopback address at port: 0 and *out, or the connect error (the
 * client is closed then). */
static int dial(int family, unsigned short port, rs_socket **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    t_loopback(family, port, &ss, &len);
    rs_socket *c;
    ck_assert_int_eq(rs_socket_open(&c, family, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(c, 5.0), 0);
    int r = rs_connect(c, (struct sockaddr *)&ss, len);
    if (r < 0) {
        ck_assert_int_eq(rs_close(c), 0);
        return r;
    }
    *out = c;
    return 0;
}

/* Connect a client of family to server, accept it, check the accepted peer is the client
 * (printing the peer's host into peer_host if given), pass a byte each way, close both. */
static void round_trip(rs_socket *server, int family, char peer_host[INET6_ADDRSTRLEN])
{
    rs_socket *c, *conn;
    int r = dial(family, local_port(server), &c);
    ck_assert_msg(r == 0, "%s client to port %u: %s", family == AF_INET6 ? "IPv6" : "IPv4",
                  local_port(server), rs_err_name(r));
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(rs_settimeout(server, 5.0), 0);
    ck_assert_int_eq(rs_accept(server, &conn, &peer, &pl), 0);
    ck_assert_uint_eq(t_port(&peer), local_port(c));
    if (peer_host)
        host_of(&peer, peer_host);
    char b = 0;
    ck_assert_int_eq(rs_settimeout(conn, 5.0), 0);
    ck_assert_int_eq(rs_sendall(c, "s", 1, 0), 1);
    ck_assert_int_eq(rs_recv(conn, &b, 1, 0), 1);
    ck_assert_int_eq(b, 's');
    ck_assert_int_eq(rs_sendall(conn, "t", 1, 0), 1);
    ck_assert_int_eq(rs_recv(c, &b, 1, 0), 1);
    ck_assert_int_eq(b, 't');
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(c), 0);
}

/* ---- binding -------------------------------------------------------------------------------- */

/* getaddrinfo keeps 16 bits of a numeric port ("99999" would bind 34463): like socket.py, a port
 * above 65535 is refused, for the server, the client and the client's source port alike. */
START_TEST(port_above_65535_refused)
{
    int fds = t_fd_count();
    rs_socket *s = NULL;
    ck_assert_int_eq(rs_create_server(&s, "127.0.0.1", "99999", NULL), RS_EAI(EAI_SERVICE));
    ck_assert_int_eq(rs_create_server(&s, "127.0.0.1", "65536", NULL), RS_EAI(EAI_SERVICE));
    ck_assert_int_eq(rs_create_server(&s, "127.0.0.1", "000000000000000000000099999", NULL),
                     RS_EAI(EAI_SERVICE));
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rs_create_connection(&s, "127.0.0.1", "99999", NULL), RS_EAI(EAI_SERVICE));
    ck_assert_int_eq(rs_create_connection(&s, "::1", "70000", NULL), RS_EAI(EAI_SERVICE));
    ck_assert_ptr_null(s);
    /* the source port: the attempt fails with it, the call with the last attempt's error */
    rs_socket *l = NULL;
    ASSERT_ERR(rs_create_server(&l, "127.0.0.1", "0", NULL), 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_ERR(rs_getsockname(l, &ss, &len), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.source_host = "127.0.0.1";
    o.source_port = "99999";
    ck_assert_int_eq(rs_create_connection(&s, "127.0.0.1", port, &o), RS_EAI(EAI_SERVICE));
    ck_assert_ptr_null(s);
    /* and the same call with an ordinary source port works */
    o.source_port = "0";
    ASSERT_ERR(rs_create_connection(&s, "127.0.0.1", port, &o), 0);
    ck_assert_int_eq(rs_close(s), 0);
    ck_assert_int_eq(rs_close(l), 0);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

START_TEST(server_ephemeral_port)
{
    static const struct {
        int family;
        const char *host;
    } cases[] = { { AF_INET, "127.0.0.1" }, { AF_INET6, "::1" } };
    for (size_t i = 0; i < 2; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.family = cases[i].family;
        rs_socket *s = NULL;
        int r = rs_create_server(&s, cases[i].host, "0", &o);
        ck_assert_msg(r == 0, "%s: %s", cases[i].host, rs_err_name(r));
        ck_assert_int_eq(rs_socket_family(s), cases[i].family);
        ck_assert_int_eq(rs_socket_type(s), SOCK_STREAM);
        struct sockaddr_storage a;
        local_addr(s, &a);
        char h[INET6_ADDRSTRLEN];
        ck_assert_int_eq(a.ss_family, cases[i].family);
        ck_assert_str_eq(host_of(&a, h), cases[i].host);
        ck_assert_uint_ne(t_port(&a), 0);
        ck_assert_int_eq(opt_int(s, SOL_SOCKET, SO_ACCEPTCONN), 1);
        round_trip(s, cases[i].family, NULL);
        ck_assert_int_eq(rs_close(s), 0);
    }
    /* NULL opts: AF_INET */
    rs_socket *s = NULL;
    ASSERT_ERR(rs_create_server(&s, "127.0.0.1", "0", NULL), 0);
    ck_assert_int_eq(rs_socket_family(s), AF_INET);
    ck_assert_uint_ne(local_port(s), 0);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* host NULL or "" binds the any address of the family, reachable over loopback. */
START_TEST(server_any_address)
{
    static const struct {
        int family;
        const char *host, *want;
    } cases[] = {
        { AF_INET, NULL, "0.0.0.0" },
        { AF_INET, "", "0.0.0.0" },
        { AF_INET6, NULL, "::" },
        { AF_INET6, "", "::" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.family = cases[i].family;
        rs_socket *s = NULL;
        int r = rs_create_server(&s, cases[i].host, "0", &o);
        ck_assert_msg(r == 0, "case %zu: %s", i, rs_err_name(r));
        struct sockaddr_storage a;
        local_addr(s, &a);
        char h[INET6_ADDRSTRLEN];
        ck_assert_int_eq(a.ss_family, cases[i].family);
        ck_assert_str_eq(host_of(&a, h), cases[i].want);
        ck_assert_uint_ne(t_port(&a), 0);
        round_trip(s, cases[i].family, NULL);
        ck_assert_int_eq(rs_close(s), 0);
    }
}
END_TEST

/* Like socket.create_server, the listener gets the default timeout of the moment. */
START_TEST(server_socket_timeout_is_default)
{
    rs_setdefaulttimeout(3.5);
    rs_socket *s = NULL;
    ASSERT_ERR(rs_create_server(&s, "127.0.0.1", "0", NULL), 0);
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert(rs_gettimeout(s) == 3.5);
    ck_assert_int_eq(rs_close(s), 0);
    ASSERT_ERR(rs_create_server(&s, "127.0.0.1", "0", NULL), 0);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* ---- socket options ------------------------------------------------------------------------- */

START_TEST(server_reuseaddr_set_reuseport_off)
{
    static const int fams[] = { AF_INET, AF_INET6 };
    for (size_t i = 0; i < 2; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.family = fams[i];
        rs_socket *s = NULL;
        ASSERT_ERR(rs_create_server(&s, fams[i] == AF_INET6 ? "::1" : "127.0.0.1", "0", &o), 0);
        ck_assert_int_ne(opt_int(s, SOL_SOCKET, SO_REUSEADDR), 0);
        ck_assert_int_eq(opt_int(s, SOL_SOCKET, SO_REUSEPORT), 0);
        ck_assert_int_eq(rs_close(s), 0);
    }
}
END_TEST

/* reuse_port: SO_REUSEPORT on, and a second such server binds the same port; both accept. */
START_TEST(server_reuseport_shares_port)
{
    struct rs_server_opts o = RS_SERVER_OPTS_INIT;
    o.reuse_port = true;
    rs_socket *a = NULL, *b = NULL;
    ASSERT_ERR(rs_create_server(&a, "127.0.0.1", "0", &o), 0);
    ck_assert_int_ne(opt_int(a, SOL_SOCKET, SO_REUSEPORT), 0);
    ck_assert_int_ne(opt_int(a, SOL_SOCKET, SO_REUSEADDR), 0);
    char port[8];
    snprintf(port, sizeof port, "%u", local_port(a));
    ASSERT_ERR(rs_create_server(&b, "127.0.0.1", port, &o), 0);
    ck_assert_uint_eq(local_port(b), local_port(a));
    ck_assert_int_ne(opt_int(b, SOL_SOCKET, SO_REUSEPORT), 0);
    /* with a listener gone, the other still takes every connection on the port */
    ck_assert_int_eq(rs_close(a), 0);
    round_trip(b, AF_INET, NULL);
    ck_assert_int_eq(rs_close(b), 0);
}
END_TEST

/* Without reuse_port on both, the second bind fails with EADDRINUSE and leaves no socket open. */
START_TEST(server_port_in_use)
{
    static const struct {
        bool first, second;
    } cases[] = { { false, false }, { true, false }, { false, true } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.reuse_port = cases[i].first;
        rs_socket *a = NULL, *b = NULL;
        ASSERT_ERR(rs_create_server(&a, "127.0.0.1", "0", &o), 0);
        char port[8];
        snprintf(port, sizeof port, "%u", local_port(a));
        o.reuse_port = cases[i].second;
        int fds = t_fd_count();
        int r = rs_create_server(&b, "127.0.0.1", port, &o);
        ck_assert_msg(r == -EADDRINUSE, "case %zu: got %d (%s), want EADDRINUSE", i, r, rs_err_name(r));
        ck_assert_ptr_null(b);
        ck_assert_int_eq(t_fd_count(), fds);
        ck_assert_int_eq(rs_close(a), 0);
    }
}
END_TEST

/* AF_INET6 servers are IPv6-only unless asked: an IPv4 client to the port is refused. Runs in
 * its own network namespace where possible, so that no other test's IPv4 socket can hold the
 * port number the IPv6 server got. */
START_TEST(server_ipv6_only_by_default)
{
    struct rs_server_opts o = RS_SERVER_OPTS_INIT;
    o.family = AF_INET6;
    rs_socket *s = NULL;
    ASSERT_ERR(rs_create_server(&s, "::", "0", &o), 0);
    ck_assert_int_eq(opt_int(s, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    rs_socket *c = NULL;
    int fds = t_fd_count();
    int r = dial(AF_INET, local_port(s), &c);
    ASSERT_ERR(r, -ECONNREFUSED);
    ck_assert_int_eq(t_fd_count(), fds);
    round_trip(s, AF_INET6, NULL);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* dualstack_ipv6: V6ONLY 0 on "::", IPv4 clients arrive as ::ffff:127.0.0.1, IPv6 ones as ::1. */
START_TEST(server_dualstack_ipv6)
{
    ck_assert(rs_has_dualstack_ipv6());
    static const char *hosts[] = { "::", NULL };
    for (size_t i = 0; i < 2; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.family = AF_INET6;
        o.dualstack_ipv6 = true;
        rs_socket *s = NULL;
        ASSERT_ERR(rs_create_server(&s, hosts[i], "0", &o), 0);
        ck_assert_int_eq(rs_socket_family(s), AF_INET6);
        ck_assert_int_eq(opt_int(s, IPPROTO_IPV6, IPV6_V6ONLY), 0);
        char peer[INET6_ADDRSTRLEN];
        round_trip(s, AF_INET, peer);
        ck_assert_str_eq(peer, "::ffff:127.0.0.1");
        round_trip(s, AF_INET6, peer);
        ck_assert_str_eq(peer, "::1");
        ck_assert_int_eq(rs_close(s), 0);
    }
}
END_TEST

START_TEST(server_dualstack_needs_ipv6)
{
    struct rs_server_opts o = RS_SERVER_OPTS_INIT;
    o.family = AF_INET;
    o.dualstack_ipv6 = true;
    rs_socket *s = NULL;
    int fds = t_fd_count();
    ASSERT_ERR(rs_create_server(&s, NULL, "0", &o), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

/* ---- backlog -------------------------------------------------------------------------------- */

/* A listener's accept-queue limit, as TCP_INFO reports it (tcpi_sacked is sk_max_ack_backlog
 * for a socket in LISTEN state). */
static unsigned listen_backlog(const rs_socket *s)
{
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    socklen_t len = sizeof ti;
    ck_assert_int_eq(rs_getsockopt((rs_socket *)s, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    ck_assert_int_eq(ti.tcpi_state, TCP_LISTEN);
    return ti.tcpi_sacked;
}

START_TEST(server_backlog)
{
    /* the kernel caps every backlog at net.core.somaxconn */
    unsigned cap = 4096;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");
    if (f) {
        ck_assert_int_eq(fscanf(f, "%u", &cap), 1);
        fclose(f);
    }
    unsigned dflt = SOMAXCONN < 128 ? SOMAXCONN : 128; /* socket.py's listen() default */
    static const int asked[] = { -1, 0, 5, 100 };
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.backlog = asked[i];
        rs_socket *s = NULL;
        ASSERT_ERR(rs_create_server(&s, "127.0.0.1", "0", &o), 0);
        unsigned want = asked[i] < 0 ? dflt : (unsigned)asked[i];
        if (want > cap)
            want = cap;
        ck_assert_msg(listen_backlog(s) == want, "backlog %d: the kernel has %u, want %u", asked[i],
                      listen_backlog(s), want);
        ck_assert_int_eq(rs_close(s), 0);
    }
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------ */

START_TEST(server_bad_input)
{
    rs_socket *s = NULL;
    int fds = t_fd_count();
    ASSERT_ERR(rs_create_server(NULL, "127.0.0.1", "0", NULL), -EINVAL);
    ck_assert_int_eq(t_fd_count(), fds);

    int r = rs_create_server(&s, "127.0.0.1", "notaport", NULL);
    ck_assert_msg(RS_IS_EAI(r), "port \"notaport\": got %d (%s), want a resolver error", r, rs_err_name(r));
    ck_assert_uint_gt(strlen(rs_strerror(r)), 0);
    ck_assert_str_ne(rs_strerror(r), "unknown error");
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);

    struct rs_server_opts o = RS_SERVER_OPTS_INIT;
    o.family = AF_UNIX;
    r = rs_create_server(&s, NULL, "0", &o);
    ck_assert_msg(r == -EAFNOSUPPORT || r == -EINVAL, "AF_UNIX: got %d (%s)", r, rs_err_name(r));
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);

    /* fails at bind, after the socket exists: it must be closed */
    r = rs_create_server(&s, "192.0.2.1", "0", NULL); /* TEST-NET-1, never local */
    ASSERT_ERR(r, -EADDRNOTAVAIL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);

    /* an IPv6 literal for an AF_INET server is not an address of that family */
    r = rs_create_server(&s, "::1", "0", NULL);
    ck_assert_msg(r < 0, "::1 with AF_INET: got %d", r);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

/* ---- a CPython client ----------------------------------------------------------------------- */

#define UP_BYTES (3u << 20)   /* client to server: the seeded stream */
#define DOWN_BYTES (2u << 20) /* server to client: our own random bytes */
#define CHUNK (64u << 10)

/* CPython's socket.create_connection (tests/py/pyconnect_client.py) connects to our server, sends
 * 3 MiB of the seeded stream and half-closes; we check every byte, answer with 2 MiB whose
 * SHA-256 it reports back. */
START_TEST(server_python_create_connection_client)
{
    static const struct {
        int family;
        bool dual;
        const char *bind, *connect, *peer;
    } cases[] = {
        { AF_INET, false, "127.0.0.1", "127.0.0.1", "127.0.0.1" },
        { AF_INET6, false, "::1", "::1", "::1" },
        { AF_INET6, true, "::", "127.0.0.1", "::ffff:127.0.0.1" },
    };
    unsigned char *buf = malloc(CHUNK), *want = malloc(CHUNK);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(want);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct rs_server_opts o = RS_SERVER_OPTS_INIT;
        o.family = cases[k].family;
        o.dualstack_ipv6 = cases[k].dual;
        rs_socket *srv = NULL;
        ASSERT_ERR(rs_create_server(&srv, cases[k].bind, "0", &o), 0);
        char port[8], up[16], down[16], seed[24];
        snprintf(port, sizeof port, "%u", local_port(srv));
        snprintf(up, sizeof up, "%u", UP_BYTES);
        snprintf(down, sizeof down, "%u", DOWN_BYTES);
        uint64_t sd = 1000 + k;
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)sd);
        char *argv[] = { (char *)cases[k].connect, port, up, down, seed, NULL };
        struct t_py py;
        t_py_spawn("pyconnect_client", argv, &py); /* first line: "local <its port>" */

        rs_socket *conn;
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        ck_assert_int_eq(rs_settimeout(srv, 10.0), 0);
        ASSERT_ERR(rs_accept(srv, &conn, &peer, &pl), 0);
        char h[INET6_ADDRSTRLEN], line[256];
        ck_assert_str_eq(host_of(&peer, h), cases[k].peer);
        snprintf(line, sizeof line, "local %u", t_port(&peer));
        ck_assert_str_eq(py.line, line);
        ck_assert_int_eq(rs_settimeout(conn, 10.0), 0);

        for (size_t off = 0; off < UP_BYTES;) {
            ssize_t n = rs_recv(conn, buf, CHUNK, 0);
            ck_assert_msg(n > 0, "after %zu of %u bytes: %s", off, UP_BYTES, n ? rs_err_name((int)n) : "EOF");
            t_py_stream(sd, off, want, (size_t)n);
            ck_assert_msg(memcmp(buf, want, (size_t)n) == 0, "stream differs in bytes %zu..%zu", off,
                          off + (size_t)n);
            off += (size_t)n;
        }
        ck_assert_int_eq(rs_recv(conn, buf, 1, 0), 0); /* the client's half-close */

        struct t_py_sha256 sha;
        t_py_sha256_init(&sha);
        uint64_t rnd = 0x9e3779b97f4a7c15ull + k;
        for (size_t off = 0; off < DOWN_BYTES; off += CHUNK) {
            t_py_random(&rnd, buf, CHUNK);
            t_py_sha256_update(&sha, buf, CHUNK);
            ck_assert_int_eq(rs_sendall(conn, buf, CHUNK, 0), (ssize_t)CHUNK);
        }
        ck_assert_int_eq(rs_close(conn), 0);
        ck_assert_int_eq(rs_close(srv), 0);
        char hex[65];
        t_py_sha256_hex(&sha, hex);
        char expect[128];
        snprintf(expect, sizeof expect, "got %u %s", DOWN_BYTES, hex);
        ck_assert_int_ge(t_py_readline(&py, line, sizeof line, 10.0), 0);
        ck_assert_str_eq(line, expect);
        ck_assert_int_eq(t_py_wait(&py, 10.0), 0);
    }
    free(buf);
    free(want);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, double timeout, bool own_netns)
{
    TCase *tc = tcase_create(name);
    if (own_netns)
        tcase_add_checked_fixture(tc, t_netns_setup, NULL); /* before t_setup creates the loop */
    tcase_add_checked_fixture(tc, t_setup, t_teardown);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase(s, "bind", 10, false);
    tcase_add_test(tc, server_ephemeral_port);
    tcase_add_test(tc, port_above_65535_refused);
    tcase_add_test(tc, server_any_address);
    tcase_add_test(tc, server_socket_timeout_is_default);

    tc = tcase(s, "options", 10, false);
    tcase_add_test(tc, server_reuseaddr_set_reuseport_off);
    tcase_add_test(tc, server_reuseport_shares_port);
    tcase_add_test(tc, server_port_in_use);
    tcase_add_test(tc, server_dualstack_ipv6);
    tcase_add_test(tc, server_dualstack_needs_ipv6);
    tcase_add_test(tc, server_backlog);

    tc = tcase(s, "v6only", 10, true);
    tcase_add_test(tc, server_ipv6_only_by_default);

    tc = tcase(s, "errors", 30, false);
    tcase_add_test(tc, server_bad_input);

    tc = tcase(s, "python", 60, false);
    tcase_add_test(tc, server_python_create_connection_client);
    return s;
}

int main(void) { return t_run(make_suite()); }
