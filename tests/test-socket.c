/* Suite 'socket': the blocking socket API over TCP (IPv4, IPv6 loopback) and AF_UNIX — data
 * integrity, the three timeout modes, peer close/reset, flags, fromfd/socketpair, bad input. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "t.h"

#define MIB (1024u * 1024u)

/* ---- helpers --------------------------------------------------------------------------------- */

/* A connected pair of the given kind: AF_INET / AF_INET6 over loopback TCP, AF_UNIX socketpair. */
static void make_pair(int family, rs_socket **a, rs_socket **b)
{
    if (family == AF_UNIX) {
        rs_socket *sp[2];
        ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
        *a = sp[0];
        *b = sp[1];
    } else {
        t_tcp_pair(family, a, b);
    }
}

/* Receive until EOF (or error/timeout, which fails the test); returns the byte count and folds
 * the data into *sum. Reads in awkward sizes so that boundaries move around. */
static size_t drain(rs_socket *s, uint64_t *sum, size_t max)
{
    static const size_t sizes[] = { 65536, 1, 7777, 4096, 100000, 13 };
    char *buf = malloc(100000);
    ck_assert_ptr_nonnull(buf);
    size_t total = 0;
    for (size_t i = 0; i <= max; i++) {
        ssize_t n = rs_recv(s, buf, sizes[i % 6], 0);
        ck_assert_msg(n >= 0, "recv after %zu bytes: %s", total, rs_err_name((int)n));
        if (n == 0) {
            free(buf);
            return total;
        }
        *sum = t_fnv1a(*sum, buf, (size_t)n);
        total += (size_t)n;
        ck_assert_uint_le(total, max);
    }
    free(buf);
    ck_abort_msg("no EOF after %zu bytes", total);
    return total;
}

struct sender {
    rs_socket *s;
    const void *buf;
    size_t len;
    double delay;     /* sleep first */
    bool shut_wr;     /* rs_shutdown(SHUT_WR) after sending */
    bool close_after; /* rs_close(s) after sending */
    ssize_t result;
    double started, woke; /* t_now() at thread start and after the delay (diagnostics) */
};

static void *sender_main(void *arg)
{
    struct sender *sd = arg;
    sd->started = t_now();
    if (sd->delay > 0)
        t_sleep(sd->delay);
    sd->woke = t_now();
    sd->result = sd->len ? rs_sendall(sd->s, sd->buf, sd->len, 0) : 0;
    if (sd->shut_wr)
        rs_shutdown(sd->s, SHUT_WR);
    if (sd->close_after)
        rs_close(sd->s);
    return NULL;
}

/* ---- connect / accept / send / recv ---------------------------------------------------------- */

static void roundtrip_tcp(int family)
{
    struct sockaddr_storage addr, peer, cname;
    socklen_t len, plen = sizeof peer, clen = sizeof cname;
    rs_socket *l = t_server_ephemeral(family, &addr, &len);
    ck_assert_int_eq(rs_socket_family(l), family);
    ck_assert_int_eq(rs_socket_type(l), SOCK_STREAM);
    ck_assert_uint_ne(t_port(&addr), 0);
    rs_socket *c, *s;
    ck_assert_int_eq(rs_socket_open(&c, family, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &s, &peer, &plen), 0);
    ck_assert_int_eq(rs_socket_family(s), family);
    ck_assert_int_eq(rs_socket_type(s), SOCK_STREAM);
    ck_assert_int_eq(rs_getsockname(c, &cname, &clen), 0);
    ck_assert_msg((plen == clen && t_same_addr(&peer, &cname)), "accept's peer address is the client's name");

    char buf[64];
    ck_assert_int_eq(rs_send(c, "hello", 5, 0), 5);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    ck_assert_int_eq(rs_send(s, "world!", 6, 0), 6);
    ck_assert_int_eq(rs_recv(c, buf, sizeof buf, 0), 6);
    ck_assert_int_eq(memcmp(buf, "world!", 6), 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(rs_close(s), 0);
    ck_assert_int_eq(rs_close(l), 0);
}

START_TEST(tcp4_connect_accept_send_recv) { roundtrip_tcp(AF_INET); }
END_TEST

START_TEST(tcp6_connect_accept_send_recv) { roundtrip_tcp(AF_INET6); }
END_TEST

START_TEST(unix_socketpair_send_recv_both_directions)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    char buf[16];
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(rs_send(sp[i & 1], "abc", 3, 0), 3);
        ck_assert_int_eq(rs_recv(sp[!(i & 1)], buf, sizeof buf, 0), 3);
        ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    }
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(socketpair_defaults_unix_stream)
{
    rs_socket *sp[2] = { NULL, NULL };
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(rs_socket_family(sp[i]), AF_UNIX);
        ck_assert_int_eq(rs_socket_type(sp[i]), SOCK_STREAM);
        int v = 0;
        socklen_t vl = sizeof v;
        ck_assert_int_eq(rs_getsockopt(sp[i], SOL_SOCKET, SO_TYPE, &v, &vl), 0);
        ck_assert_int_eq(v, SOCK_STREAM);
        vl = sizeof v;
        ck_assert_int_eq(rs_getsockopt(sp[i], SOL_SOCKET, SO_DOMAIN, &v, &vl), 0);
        ck_assert_int_eq(v, AF_UNIX);
        ck_assert_int_ne(fcntl(rs_socket_fd(sp[i]), F_GETFD) & FD_CLOEXEC, 0);
        ck_assert(rs_gettimeout(sp[i]) == RS_TIMEOUT_NONE);
    }
    ck_assert_int_ne(rs_socket_fd(sp[0]), rs_socket_fd(sp[1]));
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(socketpair_dgram_keeps_message_boundaries)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_DGRAM, 0), 0);
    ck_assert_int_eq(rs_socket_type(sp[0]), SOCK_DGRAM);
    ck_assert_int_eq(rs_send(sp[0], "one", 3, 0), 3);
    ck_assert_int_eq(rs_send(sp[0], "three", 5, 0), 5);
    char buf[16];
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), 3);
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), 5);
    ck_assert_int_eq(memcmp(buf, "three", 5), 0);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(getsockname_getpeername_match)
{
    for (int f = 0; f < 2; f++) {
        int family = f ? AF_INET6 : AF_INET;
        rs_socket *c, *s;
        t_tcp_pair(family, &c, &s);
        struct sockaddr_storage cn, cp, sn, sp;
        socklen_t cnl = sizeof cn, cpl = sizeof cp, snl = sizeof sn, spl = sizeof sp;
        ck_assert_int_eq(rs_getsockname(c, &cn, &cnl), 0);
        ck_assert_int_eq(rs_getpeername(c, &cp, &cpl), 0);
        ck_assert_int_eq(rs_getsockname(s, &sn, &snl), 0);
        ck_assert_int_eq(rs_getpeername(s, &sp, &spl), 0);
        ck_assert_int_eq(cn.ss_family, family);
        ck_assert((cnl == spl && t_same_addr(&cn, &sp)));
        ck_assert((snl == cpl && t_same_addr(&sn, &cp)));
        rs_close(c);
        rs_close(s);
    }
    /* not connected: getpeername is the kernel's -ENOTCONN */
    rs_socket *u;
    ck_assert_int_eq(rs_socket_open(&u, AF_INET, SOCK_STREAM, 0), 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ck_assert_int_eq(rs_getpeername(u, &ss, &sl), -ENOTCONN);
    rs_close(u);
}
END_TEST

START_TEST(setsockopt_getsockopt_reuseaddr_roundtrip)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    int v = -1;
    socklen_t vl = sizeof v;
    ck_assert_int_eq(rs_getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
    ck_assert_int_eq(v, 0);
    int one = 1;
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    vl = sizeof v;
    ck_assert_int_eq(rs_getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
    ck_assert_int_ne(v, 0);
    ck_assert_uint_eq(vl, sizeof v);
    int zero = 0;
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero), 0);
    vl = sizeof v;
    ck_assert_int_eq(rs_getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
    ck_assert_int_eq(v, 0);
    /* the kernel's errors come back as -errno */
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, 0x7fff, &one, sizeof one), -ENOPROTOOPT);
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, 1), -EINVAL);
    rs_close(s);
}
END_TEST

START_TEST(shutdown_wr_gives_peer_eof_other_way_still_works)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    ck_assert_int_eq(rs_settimeout(c, 2.0), 0);
    ck_assert_int_eq(rs_send(c, "last", 4, 0), 4);
    ck_assert_int_eq(rs_shutdown(c, SHUT_WR), 0);
    char buf[16];
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, MSG_WAITALL), 4);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(rs_send(s, "reply", 5, 0), 5);
    ck_assert_int_eq(rs_recv(c, buf, sizeof buf, 0), 5);
    ck_assert_int_eq(memcmp(buf, "reply", 5), 0);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(recv_len_zero_returns_zero_and_takes_nothing)
{
    /* with data waiting, a 0-byte receive returns 0 at once (not EOF) and consumes nothing */
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 1.0), 0);
    char buf[4];
    ck_assert_int_eq(rs_send(c, "abc", 3, 0), 3);
    ck_assert_int_eq(rs_recv(s, buf, 3, MSG_PEEK | MSG_WAITALL), 3);
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(s, buf, 0, 0), 0);
    ck_assert_msg(t_now() - t0 < t_slack(), "recv of 0 bytes waited %.3f s", t_now() - t0);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 3);
    rs_close(c);
    rs_close(s);
}
END_TEST

/* ---- data integrity -------------------------------------------------------------------------- */

static void integrity_thread(int family, size_t len)
{
    rs_socket *a, *b;
    make_pair(family, &a, &b);
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    t_fill_pattern(data, len, (uint32_t)(len ^ (size_t)family));
    ck_assert_int_eq(rs_settimeout(b, 10.0), 0);
    struct sender sd = { .s = a, .buf = data, .len = len, .shut_wr = true };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    uint64_t sum = T_FNV_INIT;
    size_t got = drain(b, &sum, len);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(sd.result, (ssize_t)len);
    ck_assert_uint_eq(got, len);
    ck_assert_msg(sum == t_fnv1a(T_FNV_INIT, data, len), "checksum mismatch");
    free(data);
    rs_close(a);
    rs_close(b);
}

START_TEST(tcp4_sendall_4mib_from_thread_checksummed) { integrity_thread(AF_INET, 4 * MIB); }
END_TEST

START_TEST(tcp6_sendall_4mib_from_thread_checksummed) { integrity_thread(AF_INET6, 4 * MIB); }
END_TEST

START_TEST(unix_sendall_4mib_from_thread_checksummed) { integrity_thread(AF_UNIX, 4 * MIB + 3); }
END_TEST

START_TEST(tcp4_sendall_4mib_from_forked_child_checksummed)
{
    size_t len = 4 * MIB + 11;
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    t_fill_pattern(data, len, 77);
    rs_socket *a, *b;
    t_tcp_pair(AF_INET, &a, &b);
    ck_assert_int_eq(rs_settimeout(b, 10.0), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        rs_close(b);
        rs_settimeout(a, 10.0);
        ssize_t r = rs_sendall(a, data, len, 0);
        rs_close(a);
        free(data);
        rs_loop_default_release();
        _exit(r == (ssize_t)len ? 0 : 1);
    }
    rs_close(a); /* EOF comes when the child's copy closes */
    uint64_t sum = T_FNV_INIT;
    size_t got = drain(b, &sum, len);
    ck_assert_int_eq(t_wait_child(pid, 10.0), 0);
    ck_assert_uint_eq(got, len);
    ck_assert_msg(sum == t_fnv1a(T_FNV_INIT, data, len), "checksum mismatch");
    free(data);
    rs_close(b);
}
END_TEST

/* ---- timeouts -------------------------------------------------------------------------------- */

START_TEST(recv_timeout_expires)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 0.2), 0);
    char buf[16];
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "recv with timeout 0.2");
    /* the timed-out receive took nothing: data sent afterwards arrives whole */
    ck_assert_int_eq(rs_send(c, "late", 4, 0), 4);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 4);
    ck_assert_int_eq(memcmp(buf, "late", 4), 0);
    ck_assert(rs_gettimeout(s) == 0.2);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(recv_timeout_expires_unix)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert_int_eq(rs_settimeout(sp[1], 0.2), 0);
    char buf[4];
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "unix recv with timeout 0.2");
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(accept_timeout_expires)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.2), 0);
    rs_socket *conn = (rs_socket *)&addr;
    double t0 = t_now();
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "accept with timeout 0.2");
    ck_assert_ptr_null(conn);
    /* still listening: a connection made afterwards is accepted */
    rs_socket *c;
    ck_assert_int_eq(rs_socket_open(&c, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), 0);
    rs_close(conn);
    rs_close(c);
    rs_close(l);
}
END_TEST

START_TEST(timeout_zero_recv_and_accept_are_eagain_at_once)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.0), 0);
    rs_socket *conn;
    double t0 = t_now();
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), -EAGAIN);
    ck_assert_msg(t_now() - t0 < 0.05, "non-blocking accept took %.3f s", t_now() - t0);
    ck_assert_ptr_null(conn);

    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 0.0), 0);
    char buf[8];
    t0 = t_now();
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), -EAGAIN);
    ck_assert_msg(t_now() - t0 < 0.05, "non-blocking recv took %.3f s", t_now() - t0);
    /* and once data is there, the non-blocking recv gets it (bounded poll for arrival) */
    ck_assert_int_eq(rs_send(c, "now", 3, 0), 3);
    ssize_t n = -EAGAIN;
    for (int i = 0; i < 200 && n == -EAGAIN; i++) {
        n = rs_recv(s, buf, sizeof buf, 0);
        if (n == -EAGAIN)
            t_sleep(0.005);
    }
    ck_assert_int_eq(n, 3);
    rs_close(c);
    rs_close(s);
    rs_close(l);
}
END_TEST

START_TEST(connect_timeout_zero_is_einprogress)
{
    for (int f = 0; f < 2; f++) {
        int family = f ? AF_INET6 : AF_INET;
        struct sockaddr_storage addr;
        socklen_t len;
        rs_socket *l = t_server_ephemeral(family, &addr, &len);
        rs_socket *c;
        ck_assert_int_eq(rs_socket_open(&c, family, SOCK_STREAM, 0), 0);
        ck_assert_int_eq(rs_settimeout(c, 0.0), 0);
        double t0 = t_now();
        /* loopback TCP: the kernel answers a non-blocking connect with EINPROGRESS */
        ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&addr, len), -EINPROGRESS);
        ck_assert_msg(t_now() - t0 < 0.05, "non-blocking connect took %.3f s", t_now() - t0);
        /* the connection completes in the background */
        ck_assert_int_eq(rs_settimeout(l, 2.0), 0);
        rs_socket *s;
        ck_assert_int_eq(rs_accept(l, &s, NULL, NULL), 0);
        int err = -1;
        socklen_t el = sizeof err;
        ck_assert_int_eq(rs_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el), 0);
        ck_assert_int_eq(err, 0);
        ck_assert_int_eq(rs_send(s, "x", 1, 0), 1);
        ck_assert_int_eq(rs_settimeout(c, 2.0), 0);
        char ch;
        ck_assert_int_eq(rs_recv(c, &ch, 1, 0), 1);
        rs_close(s);
        rs_close(c);
        rs_close(l);
    }
}
END_TEST

START_TEST(recv_timeout_none_waits_for_late_sender)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    struct sender sd = { .s = c, .buf = "late", .len = 4, .delay = 0.1 };
    pthread_t th;
    double t0 = t_now();
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    char buf[8];
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 4);
    double el = t_now() - t0;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(el >= 0.1 - T_EARLY, "blocking recv returned after %.3f s, before the data was sent", el);
    ck_assert_int_eq(memcmp(buf, "late", 4), 0);
    ck_assert_int_eq(sd.result, 4);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(accept_timeout_none_waits_for_late_client)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET6, &addr, &len);
    ck_assert(rs_gettimeout(l) == RS_TIMEOUT_NONE);
    double t0 = t_now(); /* before fork: the child's 0.1 s start no earlier than this */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* the child frees what it has, so that valgrind's leak check passes in it too */
        rs_close(l);
        t_sleep(0.1);
        rs_socket *c;
        if (rs_socket_open(&c, AF_INET6, SOCK_STREAM, 0) != 0)
            _exit(1);
        rs_settimeout(c, 5.0);
        int r = rs_connect(c, (struct sockaddr *)&addr, len);
        rs_close(c);
        rs_loop_default_release();
        _exit(r == 0 ? 0 : 2);
    }
    rs_socket *conn;
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), 0);
    ck_assert_msg(t_now() - t0 >= 0.1 - T_EARLY, "accept returned after %.3f s", t_now() - t0);
    ck_assert_int_eq(t_wait_child(pid, 5.0), 0);
    rs_close(conn);
    rs_close(l);
}
END_TEST

static void on_sigusr1(int sig) { (void)sig; }

struct signaller {
    pthread_t target;
    atomic_bool stop;
    int sent;
};

static void *signaller_main(void *arg)
{
    struct signaller *sg = arg;
    for (int i = 0; i < 5 && !atomic_load(&sg->stop); i++) {
        t_sleep(0.05);
        if (atomic_load(&sg->stop))
            break;
        pthread_kill(sg->target, SIGUSR1);
        sg->sent++;
    }
    return NULL;
}

START_TEST(recv_timeout_is_deadline_across_signals)
{
    /* Signals every 50 ms interrupt the wait; the call neither returns -EINTR nor restarts its
     * clock (which would make it last about 0.5 s). No SA_RESTART: the kernel really says EINTR. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 0.3), 0);
    struct signaller sg = { .target = pthread_self() };
    atomic_init(&sg.stop, false);
    pthread_t th;
    char buf[8];
    double t0 = t_now();
    ck_assert_int_eq(pthread_create(&th, NULL, signaller_main, &sg), 0);
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    double el = t_now() - t0;
    atomic_store(&sg.stop, true);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(r == -ETIMEDOUT, "recv returned %s", rs_err_name((int)r));
    ck_assert_int_ge(sg.sent, 3);
    ck_assert_msg(el >= 0.3 - T_EARLY && el <= 0.3 + t_slack(), "took %.3f s", el);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(connect_timeout_full_backlog)
{
    /* Linux drops a SYN while the listener's accept queue is full; backlog 0 holds one
     * connection, so by the second or third attempt a connect must time out. */
    rs_socket *l;
    ck_assert_int_eq(rs_socket_open(&l, AF_INET, SOCK_STREAM, 0), 0);
    struct sockaddr_storage addr;
    socklen_t len;
    t_loopback(AF_INET, 0, &addr, &len);
    ck_assert_int_eq(rs_bind(l, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_listen(l, 0), 0);
    len = sizeof addr;
    ck_assert_int_eq(rs_getsockname(l, &addr, &len), 0);

    rs_socket *c[10] = { NULL };
    int connected = 0, timed_out = -1;
    double took = 0;
    for (int i = 0; i < 10 && timed_out < 0; i++) {
        ck_assert_int_eq(rs_socket_open(&c[i], AF_INET, SOCK_STREAM, 0), 0);
        ck_assert_int_eq(rs_settimeout(c[i], 0.3), 0);
        double t0 = t_now();
        int r = rs_connect(c[i], (struct sockaddr *)&addr, len);
        if (r == 0) {
            connected++;
        } else {
            ck_assert_msg(r == -ETIMEDOUT, "attempt %d: %s", i, rs_err_name(r));
            took = t_now() - t0;
            timed_out = i;
        }
    }
    ck_assert_msg(timed_out >= 1, "no connect timed out (%d connected)", connected);
    ck_assert_int_ge(connected, 1);
    ck_assert_msg(took >= 0.3 - T_EARLY && took <= 0.3 + t_slack(), "timed-out connect took %.3f s", took);
    for (int i = 0; i < 10; i++)
        rs_close(c[i]);
    rs_close(l);
}
END_TEST

START_TEST(recv_huge_timeout_saturates_instead_of_overflowing)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 1e12), 0);
    ck_assert(rs_gettimeout(s) == 1e12);
    ck_assert_int_eq(rs_settimeout(c, DBL_MAX), 0);
    struct sender sd = { .s = c, .buf = "big", .len = 3, .delay = 0.1 };
    pthread_t th;
    double t0 = t_now();
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    char buf[8];
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(r == 3, "recv with timeout 1e12 returned %s", rs_err_name((int)r));
    double el = t_now() - t0;
    ck_assert_msg(el >= 0.1 - T_EARLY, "returned after %.4f s; sender started %+.4f woke %+.4f", el,
                  sd.started - t0, sd.woke - t0);
    ck_assert_int_eq(sd.result, 3);
    rs_close(c);
    rs_close(s);
}
END_TEST

/* A TCP pair where the receiving side (*quiet) never reads and both buffers are small, so that a
 * large send stalls quickly. */
static void stalled_pair(rs_socket **sender, rs_socket **quiet)
{
    rs_socket *l;
    ck_assert_int_eq(rs_socket_open(&l, AF_INET, SOCK_STREAM, 0), 0);
    int small = 32 * 1024;
    /* set before listen: accepted sockets inherit the receive buffer */
    ck_assert_int_eq(rs_setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_storage addr;
    socklen_t len;
    t_loopback(AF_INET, 0, &addr, &len);
    ck_assert_int_eq(rs_bind(l, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_listen(l, 4), 0);
    len = sizeof addr;
    ck_assert_int_eq(rs_getsockname(l, &addr, &len), 0);
    ck_assert_int_eq(rs_socket_open(sender, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_setsockopt(*sender, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(rs_connect(*sender, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, quiet, NULL, NULL), 0);
    rs_close(l);
}

static void sendall_stalls(double timeout, int expect)
{
    rs_socket *a, *b;
    stalled_pair(&a, &b);
    size_t len = 1 * MIB; /* far more than the two 64 KiB buffers hold */
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    t_fill_pattern(data, len, 5);
    ck_assert_int_eq(rs_settimeout(a, timeout), 0);
    size_t sent = (size_t)-1;
    double t0 = t_now();
    ssize_t r = rs_sendall_ex(a, data, len, 0, &sent);
    double el = t_now() - t0;
    ck_assert_msg(r == expect, "sendall_ex returned %s", rs_err_name((int)r));
    ck_assert_uint_gt(sent, 0);
    ck_assert_uint_lt(sent, len);
    if (timeout > 0)
        ck_assert_msg(el >= timeout - T_EARLY && el <= timeout + t_slack(), "took %.3f s", el);
    else
        ck_assert_msg(el < t_slack(), "non-blocking sendall took %.3f s", el);
    /* exactly *sent bytes reach the peer, and they are the first *sent bytes of data */
    ck_assert_int_eq(rs_shutdown(a, SHUT_WR), 0);
    ck_assert_int_eq(rs_settimeout(b, 5.0), 0);
    uint64_t sum = T_FNV_INIT;
    size_t got = drain(b, &sum, len);
    ck_assert_uint_eq(got, sent);
    ck_assert_msg(sum == t_fnv1a(T_FNV_INIT, data, sent), "the peer got other bytes than the first %zu",
                  sent);
    free(data);
    rs_close(a);
    rs_close(b);
}

START_TEST(sendall_ex_timeout_reports_bytes_peer_reads) { sendall_stalls(0.3, -ETIMEDOUT); }
END_TEST

START_TEST(sendall_ex_nonblocking_reports_bytes_peer_reads) { sendall_stalls(0.0, -EAGAIN); }
END_TEST

START_TEST(send_timeout_zero_full_buffer_is_eagain)
{
    rs_socket *a, *b;
    stalled_pair(&a, &b);
    ck_assert_int_eq(rs_settimeout(a, 0.0), 0);
    static char chunk[65536];
    ssize_t r = 0;
    size_t total = 0;
    for (int i = 0; i < 1000 && r >= 0; i++) {
        r = rs_send(a, chunk, sizeof chunk, 0);
        if (r > 0)
            total += (size_t)r;
    }
    ck_assert_msg(r == -EAGAIN, "send returned %s", rs_err_name((int)r));
    ck_assert_uint_gt(total, 0);
    /* with a timeout instead, sending on into the full buffer times out (space freed by
     * segments still in flight may let a few sends through first) */
    ck_assert_int_eq(rs_settimeout(a, 0.2), 0);
    double t0 = 0;
    r = 0;
    for (int i = 0; i < 40 && r >= 0; i++) {
        t0 = t_now();
        r = rs_send(a, chunk, sizeof chunk, 0);
    }
    ck_assert_msg(r == -ETIMEDOUT, "send returned %s", rs_err_name((int)r));
    t_assert_took(t0, 0.2, "send on a full buffer with timeout 0.2");
    rs_close(a);
    rs_close(b);
}
END_TEST

/* ---- peer close, reset, refused -------------------------------------------------------------- */

START_TEST(connect_refused_port_is_econnrefused)
{
    for (int f = 0; f < 2; f++) {
        int family = f ? AF_INET6 : AF_INET;
        struct sockaddr_storage addr;
        socklen_t len;
        rs_socket *hold = t_refusing_port(family, &addr, &len);
        const double timeouts[] = { RS_TIMEOUT_NONE, 2.0 };
        for (int t = 0; t < 2; t++) {
            rs_socket *c;
            ck_assert_int_eq(rs_socket_open(&c, family, SOCK_STREAM, 0), 0);
            ck_assert_int_eq(rs_settimeout(c, timeouts[t]), 0);
            double t0 = t_now();
            int r = rs_connect(c, (struct sockaddr *)&addr, len);
            ck_assert_msg(r == -ECONNREFUSED, "family %d timeout %g: %s", family, timeouts[t],
                          rs_err_name(r));
            ck_assert_double_lt(t_now() - t0, 1.0);
            rs_close(c);
        }
        rs_close(hold);
    }
}
END_TEST

START_TEST(recv_after_peer_close_is_eof)
{
    for (int f = 0; f < 3; f++) {
        int family = f == 0 ? AF_INET : f == 1 ? AF_INET6 : AF_UNIX;
        rs_socket *a, *b;
        make_pair(family, &a, &b);
        ck_assert_int_eq(rs_settimeout(b, 2.0), 0);
        ck_assert_int_eq(rs_send(a, "bye", 3, 0), 3);
        ck_assert_int_eq(rs_close(a), 0);
        char buf[8];
        ck_assert_int_eq(rs_recv(b, buf, sizeof buf, 0), 3);
        ck_assert_int_eq(rs_recv(b, buf, sizeof buf, 0), 0);
        ck_assert_int_eq(rs_recv(b, buf, sizeof buf, 0), 0); /* EOF stays EOF */
        rs_close(b);
    }
}
END_TEST

START_TEST(recv_blocked_then_peer_closes_is_eof)
{
    rs_socket *a, *b;
    t_tcp_pair(AF_INET, &a, &b);
    struct sender sd = { .s = a, .delay = 0.1, .close_after = true };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    char buf[8];
    ck_assert_int_eq(rs_settimeout(b, 5.0), 0);
    ck_assert_int_eq(rs_recv(b, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    rs_close(b);
}
END_TEST

static void reset_peer(rs_socket *s)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(rs_close(s), 0); /* RST */
}

START_TEST(send_after_peer_reset_is_epipe_without_sigpipe)
{
    /* SIGPIPE keeps its default action (terminate): were it raised, the test would die. */
    signal(SIGPIPE, SIG_DFL);
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(c, 2.0), 0);
    reset_peer(s);
    ssize_t r = 0;
    for (int i = 0; i < 100 && r >= 0; i++) {
        r = rs_send(c, "data", 4, 0);
        if (r >= 0)
            t_sleep(0.01);
    }
    ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "send after reset: %s", rs_err_name((int)r));
    /* after the reset has been reported, every further send is EPIPE */
    ck_assert_int_eq(rs_send(c, "data", 4, 0), -EPIPE);
    size_t sent = 99;
    ck_assert_int_eq(rs_sendall_ex(c, "more", 4, 0, &sent), -EPIPE);
    ck_assert_uint_eq(sent, 0);
    rs_close(c);
}
END_TEST

START_TEST(send_after_peer_close_unix_is_epipe_without_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert_int_eq(rs_close(sp[1]), 0);
    ck_assert_int_eq(rs_send(sp[0], "x", 1, 0), -EPIPE);
    ck_assert_int_eq(rs_sendall(sp[0], "xyz", 3, 0), -EPIPE);
    rs_close(sp[0]);
}
END_TEST

START_TEST(recv_after_peer_reset_is_econnreset)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(c, 2.0), 0);
    reset_peer(s);
    char buf[8];
    ck_assert_int_eq(rs_recv(c, buf, sizeof buf, 0), -ECONNRESET);
    rs_close(c);
}
END_TEST

START_TEST(accept_on_unlistened_socket_is_einval)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(s, 1.0), 0);
    rs_socket *conn;
    double t0 = t_now();
    ck_assert_int_eq(rs_accept(s, &conn, NULL, NULL), -EINVAL);
    ck_assert_double_lt(t_now() - t0, 0.5);
    ck_assert_ptr_null(conn);
    rs_close(s);
}
END_TEST

START_TEST(close_from_other_thread_wakes_blocked_recv)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 5.0), 0);
    struct sender sd = { .s = s, .delay = 0.1, .close_after = true };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    char buf[8];
    double t0 = t_now();
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    double el = t_now() - t0;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(r == -EBADF, "recv on a socket closed by another thread: %s", rs_err_name((int)r));
    ck_assert_msg(el < 2.0, "woke after %.3f s", el);
    rs_close(c); /* s was closed by the thread */
}
END_TEST

/* ---- flags ----------------------------------------------------------------------------------- */

START_TEST(msg_peek_then_recv_same_bytes)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    ck_assert_int_eq(rs_sendall(c, "peekaboo", 8, 0), 8);
    char p[8], r[8];
    /* peek until all 8 bytes have arrived (bounded), then once more for the start */
    ssize_t n = 0;
    for (int i = 0; i < 200 && n < 8; i++) {
        n = rs_recv(s, p, 8, MSG_PEEK);
        ck_assert_int_gt(n, 0);
        if (n < 8)
            t_sleep(0.005);
    }
    ck_assert_int_eq(n, 8);
    ck_assert_int_eq(memcmp(p, "peekaboo", 8), 0);
    ck_assert_int_eq(rs_recv(s, p, 4, MSG_PEEK), 4); /* peeking twice sees the same start */
    ck_assert_int_eq(rs_recv(s, r, 8, MSG_WAITALL), 8);
    ck_assert_int_eq(memcmp(p, "peek", 4), 0);
    ck_assert_int_eq(memcmp(r, "peekaboo", 8), 0);
    /* consumed: nothing left */
    ck_assert_int_eq(rs_recv(s, r, 8, MSG_DONTWAIT), -EAGAIN);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(msg_dontwait_on_blocking_socket_is_eagain)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    char buf[8];
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, MSG_DONTWAIT), -EAGAIN);
    ck_assert_msg(t_now() - t0 < 0.05, "took %.3f s", t_now() - t0);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE); /* the socket's mode is untouched */
    /* a blocking recv afterwards still blocks until data comes */
    struct sender sd = { .s = c, .buf = "ok", .len = 2, .delay = 0.05 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 2);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(msg_waitall_gathers_across_sends)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    ck_assert_int_eq(rs_send(c, "abc", 3, 0), 3);
    struct sender sd = { .s = c, .buf = "defgh", .len = 5, .delay = 0.1 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
    char buf[8];
    ck_assert_int_eq(rs_recv(s, buf, 8, MSG_WAITALL), 8);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(memcmp(buf, "abcdefgh", 8), 0);
    rs_close(c);
    rs_close(s);
}
END_TEST

/* ---- fromfd ---------------------------------------------------------------------------------- */

START_TEST(fromfd_dups_and_original_stays_usable)
{
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    rs_socket *w;
    ck_assert_int_eq(rs_socket_fromfd(&w, fds[0]), 0);
    ck_assert_int_ge(rs_socket_fd(w), 0);
    ck_assert_int_ne(rs_socket_fd(w), fds[0]);
    ck_assert_int_eq(rs_socket_family(w), AF_UNIX);
    ck_assert_int_eq(rs_socket_type(w), SOCK_STREAM);
    ck_assert_int_ne(fcntl(rs_socket_fd(w), F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(rs_settimeout(w, 2.0), 0);
    ck_assert_int_eq(rs_send(w, "via", 3, 0), 3);
    char buf[8];
    ck_assert_int_eq(read(fds[1], buf, sizeof buf), 3);
    ck_assert_int_eq(write(fds[1], "back", 4), 4);
    ck_assert_int_eq(rs_recv(w, buf, sizeof buf, 0), 4);
    ck_assert_int_eq(rs_close(w), 0);
    /* the caller's fd is still open and still the same connection */
    ck_assert_int_ge(fcntl(fds[0], F_GETFD), 0);
    ck_assert_int_eq(write(fds[0], "orig", 4), 4);
    ck_assert_int_eq(read(fds[1], buf, sizeof buf), 4);
    ck_assert_int_eq(memcmp(buf, "orig", 4), 0);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(fromfd_tcp_reads_family_and_type)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET6, &c, &s);
    rs_socket *w;
    ck_assert_int_eq(rs_socket_fromfd(&w, rs_socket_fd(c)), 0);
    ck_assert_int_eq(rs_socket_family(w), AF_INET6);
    ck_assert_int_eq(rs_socket_type(w), SOCK_STREAM);
    ck_assert_int_eq(rs_send(w, "6", 1, 0), 1);
    rs_close(w);
    char ch;
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    ck_assert_int_eq(rs_recv(s, &ch, 1, 0), 1);
    ck_assert_int_eq(rs_send(c, "7", 1, 0), 1); /* the original wrapper is unaffected */
    ck_assert_int_eq(rs_recv(s, &ch, 1, 0), 1);
    ck_assert_int_eq(ch, '7');
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(fromfd_bad_fds)
{
    rs_socket *w = (rs_socket *)&w;
    ck_assert_int_eq(rs_socket_fromfd(&w, -1), -EBADF);
    ck_assert_ptr_null(w);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(rs_socket_fromfd(&w, p[0]), -ENOTSOCK);
    ck_assert_ptr_null(w);
    int closed = p[1];
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(rs_socket_fromfd(&w, closed), -EBADF);
    ck_assert_int_eq(rs_socket_fromfd(NULL, 0), -EINVAL);
}
END_TEST

/* ---- timeout values -------------------------------------------------------------------------- */

START_TEST(settimeout_invalid_values_are_einval)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(s, 1.5), 0);
    const double bad[] = { -2.0, -0.5, -1e-9, NAN, INFINITY, -INFINITY, -DBL_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(rs_settimeout(s, bad[i]) == -EINVAL, "settimeout(%g) accepted", bad[i]);
        ck_assert(rs_gettimeout(s) == 1.5);
    }
    const double good[] = { 0.0, RS_TIMEOUT_NONE, 0.25, 1e-9, 1e12, DBL_MAX };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(rs_settimeout(s, good[i]) == 0, "settimeout(%g) refused", good[i]);
        ck_assert(rs_gettimeout(s) == good[i]);
    }
    ck_assert(isnan(rs_gettimeout(NULL)));
    ck_assert_int_eq(rs_settimeout(NULL, 1.0), -EBADF);
    rs_close(s);
}
END_TEST

START_TEST(setdefaulttimeout_applies_to_later_sockets)
{
    ck_assert(rs_getdefaulttimeout() == RS_TIMEOUT_NONE); /* the initial value */
    rs_socket *before;
    ck_assert_int_eq(rs_socket_open(&before, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert(rs_gettimeout(before) == RS_TIMEOUT_NONE);
    rs_setdefaulttimeout(0.5);
    ck_assert(rs_getdefaulttimeout() == 0.5);
    ck_assert(rs_gettimeout(before) == RS_TIMEOUT_NONE); /* not retroactive */
    /* invalid values are ignored */
    rs_setdefaulttimeout(-2.0);
    rs_setdefaulttimeout(NAN);
    rs_setdefaulttimeout(INFINITY);
    ck_assert(rs_getdefaulttimeout() == 0.5);

    rs_socket *after, *sp[2], *dup;
    ck_assert_int_eq(rs_socket_open(&after, AF_INET6, SOCK_STREAM, 0), 0);
    ck_assert(rs_gettimeout(after) == 0.5);
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert(rs_gettimeout(sp[0]) == 0.5 && rs_gettimeout(sp[1]) == 0.5);
    ck_assert_int_eq(rs_socket_fromfd(&dup, rs_socket_fd(before)), 0);
    ck_assert(rs_gettimeout(dup) == 0.5);
    /* and it is really used: a recv on the new pair times out after 0.5 s */
    char ch;
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(sp[0], &ch, 1, 0), -ETIMEDOUT);
    t_assert_took(t0, 0.5, "recv with the default timeout 0.5");
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert(rs_getdefaulttimeout() == RS_TIMEOUT_NONE);
    rs_setdefaulttimeout(0.0);
    ck_assert(rs_getdefaulttimeout() == 0.0);
    rs_close(before);
    rs_close(after);
    rs_close(sp[0]);
    rs_close(sp[1]);
    rs_close(dup);
}
END_TEST

START_TEST(setdefaulttimeout_applies_to_accepted_sockets)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len); /* opened with the default NONE */
    rs_setdefaulttimeout(0.5);
    ck_assert(rs_gettimeout(l) == RS_TIMEOUT_NONE);
    rs_socket *c, *s;
    ck_assert_int_eq(rs_socket_open(&c, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &s, NULL, NULL), 0);
    ck_assert(rs_gettimeout(s) == 0.5);
    rs_close(s);
    rs_close(c);
    rs_close(l);
}
END_TEST

START_TEST(accepted_socket_blocking_when_default_none)
{
    /* socket.py:288 — a listener with a timeout still hands out blocking sockets when the
     * default timeout is None */
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 2.0), 0);
    rs_socket *c, *s;
    ck_assert_int_eq(rs_socket_open(&c, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &s, NULL, NULL), 0);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    rs_close(s);
    rs_close(c);
    rs_close(l);
}
END_TEST

START_TEST(sock_nonblock_type_gives_timeout_zero)
{
    rs_setdefaulttimeout(0.5); /* SOCK_NONBLOCK wins over the default */
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), 0);
    ck_assert(rs_gettimeout(s) == 0.0);
    ck_assert_int_eq(rs_socket_type(s), SOCK_STREAM);
    ck_assert_int_ne(fcntl(rs_socket_fd(s), F_GETFD) & FD_CLOEXEC, 0);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 0);
    ck_assert(rs_gettimeout(sp[0]) == 0.0 && rs_gettimeout(sp[1]) == 0.0);
    ck_assert_int_eq(rs_socket_type(sp[0]), SOCK_STREAM);
    char ch;
    ck_assert_int_eq(rs_recv(sp[0], &ch, 1, 0), -EAGAIN);
    rs_socket *t;
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_socket_open(&t, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
    ck_assert(rs_gettimeout(t) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_socket_type(t), SOCK_STREAM);
    rs_close(s);
    rs_close(t);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------- */

START_TEST(null_socket_is_ebadf)
{
    char buf[4] = "abc";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    t_loopback(AF_INET, 1, &ss, &sl);
    size_t sent = 7;
    rs_socket *conn = (rs_socket *)&ss;
    int one = 1;
    socklen_t ol = sizeof one;
    ck_assert_int_eq(rs_send(NULL, buf, 3, 0), -EBADF);
    ck_assert_int_eq(rs_recv(NULL, buf, 3, 0), -EBADF);
    ck_assert_int_eq(rs_sendall(NULL, buf, 3, 0), -EBADF);
    ck_assert_int_eq(rs_sendall_ex(NULL, buf, 3, 0, &sent), -EBADF);
    ck_assert_uint_eq(sent, 0);
    ck_assert_int_eq(rs_connect(NULL, (struct sockaddr *)&ss, sl), -EBADF);
    ck_assert_int_eq(rs_accept(NULL, &conn, NULL, NULL), -EBADF);
    ck_assert_ptr_null(conn);
    ck_assert_int_eq(rs_bind(NULL, (struct sockaddr *)&ss, sl), -EBADF);
    ck_assert_int_eq(rs_listen(NULL, 1), -EBADF);
    ck_assert_int_eq(rs_shutdown(NULL, SHUT_RDWR), -EBADF);
    ck_assert_int_eq(rs_getsockname(NULL, &ss, &sl), -EBADF);
    ck_assert_int_eq(rs_getpeername(NULL, &ss, &sl), -EBADF);
    ck_assert_int_eq(rs_setsockopt(NULL, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), -EBADF);
    ck_assert_int_eq(rs_getsockopt(NULL, SOL_SOCKET, SO_REUSEADDR, &one, &ol), -EBADF);
    ck_assert_int_eq(rs_settimeout(NULL, 0.0), -EBADF);
    ck_assert_int_eq(rs_socket_fd(NULL), -EBADF);
    ck_assert_int_eq(rs_socket_family(NULL), -EBADF);
    ck_assert_int_eq(rs_socket_type(NULL), -EBADF);
}
END_TEST

START_TEST(null_out_pointers_are_einval)
{
    ck_assert_int_eq(rs_socket_open(NULL, AF_INET, SOCK_STREAM, 0), -EINVAL);
    ck_assert_int_eq(rs_socketpair(NULL, 0, 0, 0), -EINVAL);
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.0), 0);
    ck_assert_int_eq(rs_accept(l, NULL, NULL, NULL), -EINVAL);
    rs_socket *conn;
    socklen_t pl = sizeof addr;
    ck_assert_int_eq(rs_accept(l, &conn, &addr, NULL), -EINVAL);
    ck_assert_int_eq(rs_accept(l, &conn, NULL, &pl), -EINVAL);
    ck_assert_int_eq(rs_getsockname(l, NULL, &len), -EINVAL);
    ck_assert_int_eq(rs_getsockname(l, &addr, NULL), -EINVAL);
    ck_assert_int_eq(rs_getpeername(l, NULL, &len), -EINVAL);
    int v;
    socklen_t vl = sizeof v;
    ck_assert_int_eq(rs_getsockopt(l, SOL_SOCKET, SO_REUSEADDR, NULL, &vl), -EINVAL);
    ck_assert_int_eq(rs_getsockopt(l, SOL_SOCKET, SO_REUSEADDR, &v, NULL), -EINVAL);
    rs_close(l);
}
END_TEST

START_TEST(bind_and_connect_null_address_are_einval)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    struct sockaddr_storage ss;
    socklen_t sl;
    t_loopback(AF_INET, 0, &ss, &sl);
    ck_assert_int_eq(rs_bind(s, NULL, sl), -EINVAL);
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&ss, 0), -EINVAL);
    ck_assert_int_eq(rs_connect(s, NULL, sl), -EINVAL);
    ck_assert_int_eq(rs_connect(s, (struct sockaddr *)&ss, 0), -EINVAL);
    /* the socket is still fine */
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&ss, sl), 0);
    /* binding twice is the kernel's -EINVAL */
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&ss, sl), -EINVAL);
    rs_close(s);
}
END_TEST

START_TEST(shutdown_bad_how_is_einval)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_shutdown(c, 3), -EINVAL);
    ck_assert_int_eq(rs_shutdown(c, -1), -EINVAL);
    ck_assert_int_eq(rs_shutdown(c, 42), -EINVAL);
    ck_assert_int_eq(rs_shutdown(c, SHUT_RDWR), 0);
    rs_close(c);
    rs_close(s);
    /* not connected: the kernel's -ENOTCONN */
    rs_socket *u;
    ck_assert_int_eq(rs_socket_open(&u, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_shutdown(u, SHUT_RD), -ENOTCONN);
    rs_close(u);
}
END_TEST

START_TEST(close_null_is_zero) { ck_assert_int_eq(rs_close(NULL), 0); }
END_TEST

START_TEST(socket_open_bad_type_fails_without_fd_leak)
{
    int before = t_fd_count();
    rs_socket *s = (rs_socket *)&before;
    int r = rs_socket_open(&s, AF_INET, 12345, 0);
    ck_assert_msg(r < 0 && r > -4096, "rs_socket_open(AF_INET, 12345) = %d", r);
    ck_assert_ptr_null(s);
    s = (rs_socket *)&before;
    r = rs_socket_open(&s, 12345, SOCK_STREAM, 0);
    ck_assert_int_eq(r, -EAFNOSUPPORT);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rs_socketpair((rs_socket *[2]){ NULL, NULL }, AF_INET, SOCK_STREAM, 0), -EOPNOTSUPP);
    ck_assert_int_eq(t_fd_count(), before);
}
END_TEST

START_TEST(recv_null_buffer_is_an_error)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert_int_eq(rs_send(sp[0], "x", 1, 0), 1);
    ck_assert_int_lt(rs_recv(sp[1], NULL, 1, 0), 0);
    ck_assert_int_lt(rs_send(sp[0], NULL, 1, 0), 0);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

/* A second rs_connect after one timed out: the kernel's connect is still in progress, and
 * socket.py raises EALREADY at once (the readiness backends waited the whole timeout again). */
START_TEST(connect_again_after_timeout_is_ealready)
{
    /* a peer that never answers, on loopback */
    struct t_blackhole bh;
    t_blackhole_open(&bh, AF_INET);
    rs_socket *s;
    struct sockaddr *a = (struct sockaddr *)&bh.addr;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(s, 0.2), 0);
    double t0 = t_now();
    ck_assert_int_eq(rs_connect(s, a, bh.len), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "the first connect");
    t0 = t_now();
    int r = rs_connect(s, a, bh.len);
    ck_assert_msg(r == -EALREADY, "second connect returned %d (%s)", r, rs_err_name(r));
    ck_assert_msg(t_now() - t0 < 0.1, "second connect took %.3f s", t_now() - t0);
    ck_assert_int_eq(rs_close(s), 0);
    t_blackhole_close(&bh);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("socket");
    TCase *tc = t_tcase(s, "basic", 10);
    tcase_add_test(tc, tcp4_connect_accept_send_recv);
    tcase_add_test(tc, tcp6_connect_accept_send_recv);
    tcase_add_test(tc, unix_socketpair_send_recv_both_directions);
    tcase_add_test(tc, socketpair_defaults_unix_stream);
    tcase_add_test(tc, socketpair_dgram_keeps_message_boundaries);
    tcase_add_test(tc, getsockname_getpeername_match);
    tcase_add_test(tc, setsockopt_getsockopt_reuseaddr_roundtrip);
    tcase_add_test(tc, shutdown_wr_gives_peer_eof_other_way_still_works);
    tcase_add_test(tc, recv_len_zero_returns_zero_and_takes_nothing);

    tc = t_tcase(s, "integrity", 30);
    tcase_add_test(tc, tcp4_sendall_4mib_from_thread_checksummed);
    tcase_add_test(tc, tcp6_sendall_4mib_from_thread_checksummed);
    tcase_add_test(tc, unix_sendall_4mib_from_thread_checksummed);
    tcase_add_test(tc, tcp4_sendall_4mib_from_forked_child_checksummed);

    tc = t_tcase(s, "timeout", 15);
    tcase_add_test(tc, recv_timeout_expires);
    tcase_add_test(tc, recv_timeout_expires_unix);
    tcase_add_test(tc, accept_timeout_expires);
    tcase_add_test(tc, timeout_zero_recv_and_accept_are_eagain_at_once);
    tcase_add_test(tc, connect_timeout_zero_is_einprogress);
    tcase_add_test(tc, connect_again_after_timeout_is_ealready);
    tcase_add_test(tc, recv_timeout_none_waits_for_late_sender);
    tcase_add_test(tc, accept_timeout_none_waits_for_late_client);
    tcase_add_test(tc, recv_timeout_is_deadline_across_signals);
    tcase_add_test(tc, connect_timeout_full_backlog);
    tcase_add_test(tc, recv_huge_timeout_saturates_instead_of_overflowing);
    tcase_add_test(tc, sendall_ex_timeout_reports_bytes_peer_reads);
    tcase_add_test(tc, sendall_ex_nonblocking_reports_bytes_peer_reads);
    tcase_add_test(tc, send_timeout_zero_full_buffer_is_eagain);

    tc = t_tcase(s, "peer", 10);
    tcase_add_test(tc, connect_refused_port_is_econnrefused);
    tcase_add_test(tc, recv_after_peer_close_is_eof);
    tcase_add_test(tc, recv_blocked_then_peer_closes_is_eof);
    tcase_add_test(tc, send_after_peer_reset_is_epipe_without_sigpipe);
    tcase_add_test(tc, send_after_peer_close_unix_is_epipe_without_sigpipe);
    tcase_add_test(tc, recv_after_peer_reset_is_econnreset);
    tcase_add_test(tc, accept_on_unlistened_socket_is_einval);
    tcase_add_test(tc, close_from_other_thread_wakes_blocked_recv);

    tc = t_tcase(s, "flags", 10);
    tcase_add_test(tc, msg_peek_then_recv_same_bytes);
    tcase_add_test(tc, msg_dontwait_on_blocking_socket_is_eagain);
    tcase_add_test(tc, msg_waitall_gathers_across_sends);

    tc = t_tcase(s, "fromfd", 10);
    tcase_add_test(tc, fromfd_dups_and_original_stays_usable);
    tcase_add_test(tc, fromfd_tcp_reads_family_and_type);
    tcase_add_test(tc, fromfd_bad_fds);

    tc = t_tcase(s, "timeout_values", 10);
    tcase_add_test(tc, settimeout_invalid_values_are_einval);
    tcase_add_test(tc, setdefaulttimeout_applies_to_later_sockets);
    tcase_add_test(tc, setdefaulttimeout_applies_to_accepted_sockets);
    tcase_add_test(tc, accepted_socket_blocking_when_default_none);
    tcase_add_test(tc, sock_nonblock_type_gives_timeout_zero);

    tc = t_tcase(s, "bad_input", 5);
    tcase_add_test(tc, null_socket_is_ebadf);
    tcase_add_test(tc, null_out_pointers_are_einval);
    tcase_add_test(tc, bind_and_connect_null_address_are_einval);
    tcase_add_test(tc, shutdown_bad_how_is_einval);
    tcase_add_test(tc, close_null_is_zero);
    tcase_add_test(tc, socket_open_bad_type_fails_without_fd_leak);
    tcase_add_test(tc, recv_null_buffer_is_an_error);
    return s;
}

int main(void) { return t_run(make_suite()); }
