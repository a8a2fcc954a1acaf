/* Scenarios of CPython's Lib/test/test_socket.py re-created on ringsock, one test per scenario,
 * named Class_method after the CPython test it mirrors. Where ringsock differs from CPython on
 * purpose (PEP 475 retries instead of raising from a signal handler), the comment says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

/* test_socket.py's MSG: 'Michael Gilfix was here\u1234\r\n' in UTF-8 */
static const char MSG[] = "Michael Gilfix was here\xe1\x88\xb4\r\n";
#define MSGLEN (sizeof MSG - 1)

/* Bounded polling: at most POLL_TRIES tries POLL_MS apart (2 s in all). */
#define POLL_TRIES 200
#define POLL_MS 10

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static const char *err(ssize_t r) { return r < 0 ? rs_err_name((int)r) : (r ? "data" : "EOF"); }

#define assert_elapsed(t0, lo, hi)                                                                        \
    do {                                                                                                  \
        double dt_ = t_py_now() - (t0);                                                                   \
        ck_assert_msg(dt_ >= (lo) && dt_ < (hi), "took %.3f s, expected [%.2f, %.2f)", dt_, (double)(lo), \
                      (double)(hi));                                                                      \
    } while (0)

static void recv_msg(rs_socket *s)
{
    char buf[1024];
    size_t got = 0;
    while (got < MSGLEN) {
        ssize_t r = rs_recv(s, buf + got, sizeof buf - got, 0);
        ck_assert_msg(r > 0, "recv: %s", err(r));
        got += (size_t)r;
    }
    ck_assert_uint_eq(got, MSGLEN);
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
}

/* ---- a helper thread that acts on a socket after a delay (its own default loop) ---- */

enum act {
    ACT_SEND,
    ACT_ACCEPT_SLEEP_SEND,
    ACT_RECV_ALL
};

struct helper {
    pthread_t th;
    enum act act;
    rs_socket *s;
    int delay_ms;
    /* ACT_RECV_ALL */
    char *buf;
    size_t want, got;
    ssize_t res;
};

static void *helper_main(void *p)
{
    struct helper *h = p;
    sleep_ms(h->delay_ms);
    switch (h->act) {
    case ACT_SEND: h->res = rs_sendall(h->s, MSG, MSGLEN, 0); break;
    case ACT_ACCEPT_SLEEP_SEND: {
        /* NetworkConnectionBehaviourTest's server: accept, sleep, send "done!" */
        rs_socket *conn;
        h->res = rs_accept(h->s, &conn, NULL, NULL);
        if (h->res == 0) {
            sleep_ms(300);
            h->res = rs_sendall(conn, "done!", 5, 0);
            rs_close(conn);
        }
        break;
    }
    case ACT_RECV_ALL:
        h->res = 0;
        while (h->got < h->want) {
            ssize_t r = rs_recv(h->s, h->buf + h->got, h->want - h->got, 0);
            if (r <= 0) {
                h->res = r ? r : -EPIPE;
                break;
            }
            h->got += (size_t)r;
        }
        break;
    }
    return NULL;
}

/* Start the helper with SIGALRM blocked, so that the signal tests' alarms reach the thread
 * under test. */
static void helper_start(struct helper *h)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    ck_assert_int_eq(pthread_create(&h->th, NULL, helper_main, h), 0);
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

static ssize_t helper_join(struct helper *h)
{
    ck_assert_int_eq(pthread_join(h->th, NULL), 0);
    return h->res;
}

/* ---- timeouts and modes ---- */

/* GeneralModuleTests.testDefaultTimeout: None at start, sockets created afterwards take the
 * default, invalid values are refused (ignored here: the setter returns nothing). */
START_TEST(GeneralModuleTests_testDefaultTimeout)
{
    rs_socket *s;
    ck_assert(rs_getdefaulttimeout() == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(s), 0);

    rs_setdefaulttimeout(10);
    ck_assert_double_eq(rs_getdefaulttimeout(), 10);
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_double_eq(rs_gettimeout(s), 10);
    ck_assert_int_eq(rs_close(s), 0);

    /* invalid values leave the default alone */
    const double bad[] = { -2.0, -0.5, -1e-9, NAN, INFINITY, -INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rs_setdefaulttimeout(bad[i]);
        ck_assert_double_eq(rs_getdefaulttimeout(), 10);
    }

    rs_setdefaulttimeout(0);
    ck_assert_double_eq(rs_getdefaulttimeout(), 0);
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_double_eq(rs_gettimeout(s), 0);
    ck_assert_int_eq(rs_close(s), 0);

    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert(rs_getdefaulttimeout() == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert(rs_gettimeout(s) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* NonBlockingTCPTests.testSetBlocking: settimeout(None/0/10/0) and what gettimeout says; invalid
 * timeouts (socket.py's ValueError) are -EINVAL and change nothing. */
START_TEST(NonBlockingTCPTests_testSetBlocking)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    const double seq[] = { RS_TIMEOUT_NONE, 0.0, RS_TIMEOUT_NONE, 0.0, 10.0, 0.0 };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        ck_assert_int_eq(rs_settimeout(s, seq[i]), 0);
        ck_assert_double_eq(rs_gettimeout(s), seq[i]);
    }
    ck_assert_int_eq(rs_settimeout(s, 2.5), 0);
    const double bad[] = { -2.0, -0.5, NAN, INFINITY, -INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(rs_settimeout(s, bad[i]), -EINVAL);
        ck_assert_double_eq(rs_gettimeout(s), 2.5);
    }
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* NonBlockingTCPTests.testInitNonBlocking: SOCK_NONBLOCK gives timeout 0, and accept on such a
 * listener returns at once. */
START_TEST(NonBlockingTCPTests_testInitNonBlocking)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), 0);
    ck_assert_double_eq(rs_gettimeout(s), 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(rs_listen(s, -1), 0);
    rs_socket *c;
    double t0 = t_py_now();
    ck_assert_int_eq(rs_accept(s, &c, NULL, NULL), -EAGAIN);
    assert_elapsed(t0, 0, 1.0);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* NonBlockingTCPTests.testInheritFlagsBlocking (bpo-7995): default timeout None, listener with a
 * timeout: the accepted socket is blocking. */
START_TEST(NonBlockingTCPTests_testInheritFlagsBlocking)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 10), 0);
    rs_socket *cli, *conn;
    ck_assert_int_eq(rs_socket_open(&cli, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(cli, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), 0);
    ck_assert(rs_gettimeout(conn) == RS_TIMEOUT_NONE);
    /* and it really blocks until data comes */
    struct helper h = { .act = ACT_SEND, .s = cli, .delay_ms = 100 };
    helper_start(&h);
    double t0 = t_py_now();
    recv_msg(conn);
    assert_elapsed(t0, 0.05, 5.0);
    ck_assert_int_eq(helper_join(&h), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* NonBlockingTCPTests.testInheritFlagsTimeout: with a default timeout, the accepted socket gets
 * the default (not the listener's timeout). */
START_TEST(NonBlockingTCPTests_testInheritFlagsTimeout)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    rs_setdefaulttimeout(0.5);
    ck_assert_int_eq(rs_settimeout(l, 10), 0);
    rs_socket *cli, *conn;
    ck_assert_int_eq(rs_socket_open(&cli, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(cli, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), 0);
    ck_assert_double_eq(rs_gettimeout(conn), 0.5);
    /* and it applies */
    char c;
    double t0 = t_py_now();
    ssize_t r = rs_recv(conn, &c, 1, 0);
    ck_assert_msg(r == -ETIMEDOUT, "recv: %s", err(r));
    assert_elapsed(t0, 0.49, 2.0);
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* NonBlockingTCPTests.testAccept: a non-blocking accept fails with would-block (at once) until a
 * client connects, then succeeds; the accepted socket is blocking (default None). */
START_TEST(NonBlockingTCPTests_testAccept)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0), 0);
    rs_socket *conn;
    double t0 = t_py_now();
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), -EAGAIN);
    assert_elapsed(t0, 0, 1.0);

    rs_socket *cli;
    ck_assert_int_eq(rs_socket_open(&cli, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(cli, (struct sockaddr *)&addr, len), 0);
    int r = -EAGAIN;
    for (int i = 0; i < POLL_TRIES && r == -EAGAIN; i++) {
        r = rs_accept(l, &conn, NULL, NULL);
        if (r == -EAGAIN)
            sleep_ms(POLL_MS);
    }
    ck_assert_msg(r == 0, "accept: %s", err(r));
    ck_assert(rs_gettimeout(conn) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* NonBlockingTCPTests.testRecv: a non-blocking recv fails with would-block (at once) until the
 * peer sends, then returns the data. */
START_TEST(NonBlockingTCPTests_testRecv)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_settimeout(conn, 0), 0);
    char buf[1024];
    double t0 = t_py_now();
    ck_assert_int_eq(rs_recv(conn, buf, sizeof buf, 0), -EAGAIN);
    assert_elapsed(t0, 0, 1.0);

    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    ssize_t r = -EAGAIN;
    for (int i = 0; i < POLL_TRIES && r == -EAGAIN; i++) {
        r = rs_recv(conn, buf, sizeof buf, 0);
        if (r == -EAGAIN)
            sleep_ms(POLL_MS);
    }
    ck_assert_msg(r == (ssize_t)MSGLEN, "recv: %zd %s", r, err(r));
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    ck_assert_int_eq(rs_recv(conn, buf, sizeof buf, 0), -EAGAIN);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* TCPTimeoutTest.testTCPTimeout: accept with a timeout and no client times out, on time. */
START_TEST(TCPTimeoutTest_testTCPTimeout)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.2), 0);
    rs_socket *conn;
    double t0 = t_py_now();
    int r = rs_accept(l, &conn, NULL, NULL);
    ck_assert_msg(r == -ETIMEDOUT, "accept: %s", err(r));
    assert_elapsed(t0, 0.19, 1.5);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* TCPTimeoutTest.testTimeoutZero: timeout 0 is non-blocking, a would-block error, not a
 * timeout error. */
START_TEST(TCPTimeoutTest_testTimeoutZero)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.0), 0);
    rs_socket *conn;
    int r = rs_accept(l, &conn, NULL, NULL);
    ck_assert_msg(r == -EAGAIN, "accept: %s", err(r));
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

static rs_socket *udp_bound(void)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_DGRAM, 0), 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&a, sizeof a), 0);
    return s;
}

/* UDPTimeoutTest.testUDPTimeout: recv with a timeout and no datagram times out, on time. */
START_TEST(UDPTimeoutTest_testUDPTimeout)
{
    rs_socket *s = udp_bound();
    ck_assert_int_eq(rs_settimeout(s, 0.2), 0);
    char buf[64];
    double t0 = t_py_now();
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    ck_assert_msg(r == -ETIMEDOUT, "recv: %s", err(r));
    assert_elapsed(t0, 0.19, 1.5);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* UDPTimeoutTest.testTimeoutZero */
START_TEST(UDPTimeoutTest_testTimeoutZero)
{
    rs_socket *s = udp_bound();
    ck_assert_int_eq(rs_settimeout(s, 0.0), 0);
    char buf[64];
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    ck_assert_msg(r == -EAGAIN, "recv: %s", err(r));
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* NetworkConnectionBehaviourTest.testInsideTimeout / testOutsideTimeout: a server that waits
 * 0.3 s before answering; a client with no timeout gets the answer, one with 0.1 s times out. */
static void slow_server(double client_timeout)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 10), 0);
    struct helper h = { .act = ACT_ACCEPT_SLEEP_SEND, .s = l };
    helper_start(&h);
    rs_socket *cli;
    ck_assert_int_eq(rs_socket_open(&cli, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(cli, client_timeout), 0);
    ck_assert_int_eq(rs_connect(cli, (struct sockaddr *)&addr, len), 0);
    char buf[5];
    double t0 = t_py_now();
    ssize_t r = rs_recv(cli, buf, sizeof buf, MSG_WAITALL);
    if (client_timeout == RS_TIMEOUT_NONE) {
        ck_assert_msg(r == 5, "recv: %zd %s", r, err(r));
        ck_assert(memcmp(buf, "done!", 5) == 0);
        assert_elapsed(t0, 0.2, 5.0);
    } else {
        ck_assert_msg(r == -ETIMEDOUT, "recv: %zd %s", r, err(r));
        assert_elapsed(t0, client_timeout - 0.01, client_timeout + 1.0);
    }
    ck_assert_int_eq(helper_join(&h), 5);
    ck_assert_int_eq(rs_close(cli), 0);
    ck_assert_int_eq(rs_close(l), 0);
}

START_TEST(NetworkConnectionBehaviourTest_testInsideTimeout) { slow_server(RS_TIMEOUT_NONE); }
END_TEST

START_TEST(NetworkConnectionBehaviourTest_testOutsideTimeout) { slow_server(0.1); }
END_TEST

/* ---- EOF, shutdown, pairs, fds ---- */

/* TCPCloserTest.testClose: the peer's close is EOF (and stays EOF). */
START_TEST(TCPCloserTest_testClose)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_settimeout(cli, 5), 0);
    char c;
    ck_assert_int_eq(rs_recv(cli, &c, 1, 0), 0);
    ck_assert_int_eq(rs_recv(cli, &c, 1, 0), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* BasicTCPTest.testShutdown: send, then shutdown(SHUT_RDWR) — twice: a repeated shutdown is
 * harmless — and the peer receives the message, then EOF. */
START_TEST(BasicTCPTest_testShutdown)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_sendall(conn, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_shutdown(conn, SHUT_RDWR), 0);
    ck_assert_int_eq(rs_shutdown(conn, SHUT_RDWR), 0);
    ck_assert_int_eq(rs_shutdown(conn, SHUT_WR), 0);
    ck_assert_int_eq(rs_settimeout(cli, 5), 0);
    recv_msg(cli);
    char c;
    ck_assert_int_eq(rs_recv(cli, &c, 1, 0), 0);
    /* after its own shutdown, the shut-down side reads EOF, it does not block */
    ck_assert_int_eq(rs_settimeout(conn, 5), 0);
    ck_assert_int_eq(rs_recv(conn, &c, 1, 0), 0);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

static bool cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    ck_assert_int_ge(fl, 0);
    return fl & FD_CLOEXEC;
}

/* BasicSocketPairTest.testDefaults: AF_UNIX, SOCK_STREAM, protocol 0, default timeout; both ends
 * close-on-exec. */
START_TEST(BasicSocketPairTest_testDefaults)
{
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, 0, 0, 0), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(rs_socket_family(p[i]), AF_UNIX);
        ck_assert_int_eq(rs_socket_type(p[i]), SOCK_STREAM);
        int proto = -1;
        socklen_t pl = sizeof proto;
        ck_assert_int_eq(rs_getsockopt(p[i], SOL_SOCKET, SO_PROTOCOL, &proto, &pl), 0);
        ck_assert_int_eq(proto, 0);
        ck_assert(rs_gettimeout(p[i]) == RS_TIMEOUT_NONE);
        ck_assert(cloexec(rs_socket_fd(p[i])));
    }
    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);

    rs_setdefaulttimeout(3.0);
    ck_assert_int_eq(rs_socketpair(p, AF_UNSPEC, SOCK_STREAM, 0), 0);
    ck_assert_double_eq(rs_gettimeout(p[0]), 3.0);
    ck_assert_double_eq(rs_gettimeout(p[1]), 3.0);
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);
}
END_TEST

/* BasicSocketPairTest.testRecv / testSend: each direction, the receiver blocked before the
 * sender (another thread) sends. */
static void pair_direction(int from)
{
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, 0, 0, 0), 0);
    struct helper h = { .act = ACT_SEND, .s = p[from], .delay_ms = 50 };
    helper_start(&h);
    recv_msg(p[1 - from]);
    ck_assert_int_eq(helper_join(&h), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);
}

START_TEST(BasicSocketPairTest_testRecv) { pair_direction(1); }
END_TEST

START_TEST(BasicSocketPairTest_testSend) { pair_direction(0); }
END_TEST

/* BasicTCPTest.testSendAll, over a socketpair and at 10 MB: one rs_sendall while a reader thread
 * drains the other end; every byte arrives in order. */
START_TEST(BasicSocketPairTest_testSendAll)
{
    enum {
        N = 10 * 1024 * 1024
    };
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, 0, 0, 0), 0);
    char *out = malloc(N), *in = malloc(N);
    ck_assert(out && in);
    uint64_t rng = 42;
    t_py_random(&rng, out, N);
    struct helper h = { .act = ACT_RECV_ALL, .s = p[1], .buf = in, .want = N };
    helper_start(&h);
    ck_assert_int_eq(rs_sendall(p[0], out, N, 0), N);
    ck_assert_int_eq(helper_join(&h), 0);
    ck_assert_uint_eq(h.got, N);
    ck_assert(memcmp(in, out, N) == 0);
    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);
    free(out);
    free(in);
}
END_TEST

/* RecvmsgGenericTests.testRecvmsgPeek, with recv: MSG_PEEK shows part, then all of the pending
 * data without consuming it; a plain recv then gets it. A peek that has to wait for data waits. */
START_TEST(RecvmsgGenericTests_testRecvmsgPeek)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_settimeout(conn, 5), 0);
    struct helper h = { .act = ACT_SEND, .s = cli, .delay_ms = 100 };
    helper_start(&h);
    char buf[1024];
    /* waits for the data, leaves it there */
    ssize_t r = rs_recv(conn, buf, MSGLEN - 3, MSG_PEEK);
    ck_assert_msg(r == (ssize_t)MSGLEN - 3, "peek: %zd %s", r, err(r));
    ck_assert(memcmp(buf, MSG, MSGLEN - 3) == 0);
    ck_assert_int_eq(helper_join(&h), (ssize_t)MSGLEN);
    /* the whole message is there to peek at (a stream socket may have it in one piece) */
    r = 0;
    for (int i = 0; i < POLL_TRIES; i++) {
        r = rs_recv(conn, buf, sizeof buf, MSG_PEEK);
        if (r == (ssize_t)MSGLEN)
            break;
        sleep_ms(POLL_MS);
    }
    ck_assert_msg(r == (ssize_t)MSGLEN, "peek: %zd %s", r, err(r));
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(rs_recv(conn, buf, sizeof buf, 0), (ssize_t)MSGLEN);
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    ck_assert_int_eq(rs_settimeout(conn, 0), 0);
    ck_assert_int_eq(rs_recv(conn, buf, sizeof buf, MSG_PEEK), -EAGAIN);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* BasicTCPTest.testFromFd: a socket made from the accepted socket's fd receives what the peer
 * sent; it has its own fd, same family and type; closing it leaves the original working. */
START_TEST(BasicTCPTest_testFromFd)
{
    rs_socket *cli, *conn, *f;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_socket_fromfd(&f, rs_socket_fd(conn)), 0);
    ck_assert_int_ne(rs_socket_fd(f), rs_socket_fd(conn));
    ck_assert(cloexec(rs_socket_fd(f)));
    ck_assert_int_eq(rs_socket_family(f), AF_INET);
    ck_assert_int_eq(rs_socket_type(f), SOCK_STREAM);
    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    recv_msg(f);
    ck_assert_int_eq(rs_close(f), 0);
    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    recv_msg(conn);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* BasicTCPTest.testDup: receive through a duplicate after the original has been waited on (so a
 * backend has it registered) and closed: the duplicate keeps the connection and gets the data. */
START_TEST(BasicTCPTest_testDup)
{
    rs_socket *cli, *conn, *d;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_settimeout(conn, 0.05), 0);
    char c;
    ck_assert_int_eq(rs_recv(conn, &c, 1, 0), -ETIMEDOUT);
    ck_assert_int_eq(rs_socket_fromfd(&d, rs_socket_fd(conn)), 0);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_settimeout(d, 5), 0);
    struct helper h = { .act = ACT_SEND, .s = cli, .delay_ms = 50 };
    helper_start(&h);
    recv_msg(d);
    ck_assert_int_eq(helper_join(&h), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_close(d), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* ---- signals (PEP 475) ---- */

static atomic_int alarms;

static void on_alarm(int sig)
{
    (void)sig;
    atomic_fetch_add(&alarms, 1);
}

/* SIGALRM after first_ms, then every period_ms (0: once); no SA_RESTART, so every wait the
 * signal lands in really is interrupted with EINTR. */
static void alarm_start(int first_ms, int period_ms)
{
    atomic_store(&alarms, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {
        .it_value = { .tv_sec = first_ms / 1000, .tv_usec = (first_ms % 1000) * 1000 },
        .it_interval = { .tv_sec = period_ms / 1000, .tv_usec = (period_ms % 1000) * 1000 },
    };
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static void alarm_stop(void)
{
    struct itimerval it;
    memset(&it, 0, sizeof it);
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
    signal(SIGALRM, SIG_DFL);
}

/* TCPTimeoutTest.testInterruptedTimeout, PEP 475 style: signals during a 0.3 s timed accept
 * neither end it early nor surface as -EINTR; it times out on time and the handler ran. */
START_TEST(TCPTimeoutTest_testInterruptedTimeout)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_settimeout(l, 0.3), 0);
    rs_socket *conn;
    alarm_start(100, 50);
    double t0 = t_py_now();
    int r = rs_accept(l, &conn, NULL, NULL);
    double dt = t_py_now() - t0;
    alarm_stop();
    ck_assert_msg(r == -ETIMEDOUT, "accept: %s", err(r));
    ck_assert_msg(dt >= 0.29 && dt < 1.3, "timed out after %.3f s, not 0.3", dt);
    ck_assert_int_ge(atomic_load(&alarms), 1);
    ck_assert_int_eq(rs_close(l), 0);
}
END_TEST

/* InterruptedRecvTimeoutTest.testInterruptedRecvTimeout, PEP 475 style: CPython's test raises
 * from the handler; here the handler only counts, and the signals (the first at 0.1 s, then every
 * 0.05 s) neither end the 0.4 s timed recv early, nor turn into -EINTR, nor restart its clock. */
START_TEST(InterruptedRecvTimeoutTest_testInterruptedRecvTimeout)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_settimeout(conn, 0.4), 0);
    char buf[16];
    alarm_start(100, 50);
    double t0 = t_py_now();
    ssize_t r = rs_recv(conn, buf, sizeof buf, 0);
    double dt = t_py_now() - t0;
    alarm_stop();
    ck_assert_msg(r == -ETIMEDOUT, "recv: %zd %s", r, err(r));
    ck_assert_msg(dt >= 0.39 && dt < 1.4, "timed out after %.3f s, not 0.4", dt);
    ck_assert_int_ge(atomic_load(&alarms), 1);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* InterruptedSendTimeoutTest.testInterruptedSendTimeout, PEP 475 style, with rs_sendall into a
 * peer that never reads: the 0.4 s budget holds through the signals, and what was sent before
 * the timeout is reported. */
START_TEST(InterruptedSendTimeoutTest_testInterruptedSendTimeout)
{
    enum {
        N = 64 * 1024 * 1024
    };
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert_int_eq(rs_settimeout(cli, 0.4), 0);
    char *big = calloc(1, N);
    ck_assert_ptr_nonnull(big);
    size_t sent = 0;
    alarm_start(100, 50);
    double t0 = t_py_now();
    ssize_t r = rs_sendall_ex(cli, big, N, 0, &sent);
    double dt = t_py_now() - t0;
    alarm_stop();
    ck_assert_msg(r == -ETIMEDOUT, "sendall: %zd %s", r, err(r));
    ck_assert_msg(dt >= 0.39 && dt < 1.4, "timed out after %.3f s, not 0.4", dt);
    ck_assert_int_ge(atomic_load(&alarms), 1);
    ck_assert_uint_gt(sent, 0);
    ck_assert_uint_lt(sent, N);
    free(big);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* _test_eintr.py's SocketEINTRTest.test_recv: a blocking recv interrupted by signals (the first at
 * 0.1 s, then every 0.05 s) keeps waiting and returns the data a thread sends at 0.3 s. */
START_TEST(SocketEINTRTest_test_recv)
{
    rs_socket *cli, *conn;
    t_tcp_pair(AF_INET, &cli, &conn);
    ck_assert(rs_gettimeout(conn) == RS_TIMEOUT_NONE);
    struct helper h = { .act = ACT_SEND, .s = cli, .delay_ms = 300 };
    helper_start(&h); /* with SIGALRM blocked: the signals go to this thread */
    alarm_start(100, 50);
    double t0 = t_py_now();
    recv_msg(conn);
    double dt = t_py_now() - t0;
    alarm_stop();
    ck_assert_int_eq(helper_join(&h), (ssize_t)MSGLEN);
    ck_assert_msg(dt >= 0.25 && dt < 5.0, "recv returned after %.3f s", dt);
    ck_assert_int_ge(atomic_load(&alarms), 1);
    ck_assert_int_eq(rs_close(conn), 0);
    ck_assert_int_eq(rs_close(cli), 0);
}
END_TEST

/* ---- fd passing (socket.send_fds / recv_fds) ---- */

enum {
    NPIPES = 10
};

static void pipes_open(int pipes[NPIPES][2], int rfds[NPIPES])
{
    for (int i = 0; i < NPIPES; i++) {
        ck_assert_int_eq(pipe2(pipes[i], O_CLOEXEC), 0);
        rfds[i] = pipes[i][0];
    }
}

static void pipes_close(int pipes[NPIPES][2])
{
    for (int i = 0; i < NPIPES; i++) {
        ck_assert_int_eq(close(pipes[i][0]), 0);
        ck_assert_int_eq(close(pipes[i][1]), 0);
    }
}

/* Each received fd is a new, close-on-exec descriptor of pipe number first + i's read end. */
static void check_received(int pipes[NPIPES][2], const int *got, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < NPIPES; j++)
            ck_assert_int_ne(got[i], pipes[j][0]);
        ck_assert(cloexec(got[i]));
        char tag[8], back[8];
        int tl = snprintf(tag, sizeof tag, "%zu", i);
        ck_assert_int_eq(write(pipes[i][1], tag, (size_t)tl), tl);
        ck_assert_int_eq(read(got[i], back, sizeof back), tl);
        ck_assert(memcmp(back, tag, (size_t)tl) == 0);
    }
}

/* SendRecvFdsTests.testSendAndRecvFds (SCMRightsTest's shape): 10 pipe read ends in one message
 * over a socketpair, received with room for more data and more fds than sent; each received fd
 * reads what is written into its pipe. */
START_TEST(SendRecvFdsTests_testSendAndRecvFds)
{
    int pipes[NPIPES][2], fds[NPIPES];
    pipes_open(pipes, fds);
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(p[1], 5), 0);
    ck_assert_int_eq(rs_send_fds(p[0], MSG, MSGLEN, fds, NPIPES, 0), (ssize_t)MSGLEN);

    char buf[2 * MSGLEN];
    int got[2 * NPIPES];
    size_t n = 2 * NPIPES;
    ssize_t r = rs_recv_fds(p[1], buf, sizeof buf, got, &n, 0);
    ck_assert_msg(r == (ssize_t)MSGLEN, "recv_fds: %zd %s", r, err(r));
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    ck_assert_uint_eq(n, NPIPES);
    check_received(pipes, got, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(close(got[i]), 0);
    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);
    pipes_close(pipes);
}
END_TEST

/* SCMRightsTest.testCmsgTrunc0 / testCmsgTrunc2Int: room for no fd, then for two, out of ten
 * sent: the data still arrives, the fds that fit work, and the others are not leaked (the
 * fixture counts this process's fds). */
START_TEST(SCMRightsTest_testCmsgTrunc)
{
    int pipes[NPIPES][2], fds[NPIPES];
    pipes_open(pipes, fds);
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(p[1], 5), 0);
    int before = t_fd_count();

    ck_assert_int_eq(rs_send_fds(p[0], MSG, MSGLEN, fds, NPIPES, 0), (ssize_t)MSGLEN);
    char buf[MSGLEN];
    size_t n = 0;
    ck_assert_int_eq(rs_recv_fds(p[1], buf, sizeof buf, NULL, &n, 0), (ssize_t)MSGLEN);
    ck_assert_uint_eq(n, 0);
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    ck_assert_int_eq(t_fd_count(), before);

    ck_assert_int_eq(rs_send_fds(p[0], MSG, MSGLEN, fds, NPIPES, 0), (ssize_t)MSGLEN);
    int got[2];
    n = 2;
    ck_assert_int_eq(rs_recv_fds(p[1], buf, sizeof buf, got, &n, 0), (ssize_t)MSGLEN);
    ck_assert_uint_eq(n, 2);
    ck_assert(memcmp(buf, MSG, MSGLEN) == 0);
    check_received(pipes, got, n);
    ck_assert_int_eq(t_fd_count(), before + 2);
    ck_assert_int_eq(close(got[0]), 0);
    ck_assert_int_eq(close(got[1]), 0);

    ck_assert_int_eq(rs_close(p[0]), 0);
    ck_assert_int_eq(rs_close(p[1]), 0);
    pipes_close(pipes);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("scenarios");
    struct {
        const char *name;
        const TTest *tests[16];
    } groups[] = {
        { "timeouts",
          { GeneralModuleTests_testDefaultTimeout, NonBlockingTCPTests_testSetBlocking,
            NonBlockingTCPTests_testInitNonBlocking, NonBlockingTCPTests_testInheritFlagsBlocking,
            NonBlockingTCPTests_testInheritFlagsTimeout, NonBlockingTCPTests_testAccept,
            NonBlockingTCPTests_testRecv, TCPTimeoutTest_testTCPTimeout, TCPTimeoutTest_testTimeoutZero,
            UDPTimeoutTest_testUDPTimeout, UDPTimeoutTest_testTimeoutZero,
            NetworkConnectionBehaviourTest_testInsideTimeout,
            NetworkConnectionBehaviourTest_testOutsideTimeout, NULL } },
        { "streams",
          { TCPCloserTest_testClose, BasicTCPTest_testShutdown, BasicSocketPairTest_testDefaults,
            BasicSocketPairTest_testRecv, BasicSocketPairTest_testSend, BasicSocketPairTest_testSendAll,
            RecvmsgGenericTests_testRecvmsgPeek, BasicTCPTest_testFromFd, BasicTCPTest_testDup, NULL } },
        { "signals",
          { TCPTimeoutTest_testInterruptedTimeout, InterruptedRecvTimeoutTest_testInterruptedRecvTimeout,
            InterruptedSendTimeoutTest_testInterruptedSendTimeout, SocketEINTRTest_test_recv, NULL } },
        { "fds", { SendRecvFdsTests_testSendAndRecvFds, SCMRightsTest_testCmsgTrunc, NULL } },
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = t_tcase(s, groups[g].name, 15);
        for (size_t i = 0; groups[g].tests[i]; i++)
            tcase_add_test(tc, groups[g].tests[i]);
    }
    return s;
}

int main(void) { return t_run(make_suite()); }
