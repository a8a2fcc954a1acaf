/* Peers that misbehave (issue #9), on every backend, through the blocking API and the completion
 * API: a peer that resets mid-stream, one that never reads, half-close in both directions. The
 * peers are CPython programs (tests/py/peer_*.py) on plain sockets, so a library bug cannot hide
 * on both ends of a connection. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "pypeer.h"
#include "t.h"

#define PEER_WAIT 15.0

/* A write to a reset connection must come back as -EPIPE/-ECONNRESET, never kill the process:
 * make sure SIGPIPE has its default (fatal) action, whatever the test runner inherited. */
static void sigpipe_default(void) { signal(SIGPIPE, SIG_DFL); }

static void port_arg(char *buf, size_t cap, const struct sockaddr_storage *a)
{
    unsigned short p = a->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)a)->sin6_port)
                                                : ntohs(((const struct sockaddr_in *)a)->sin_port);
    snprintf(buf, cap, "%u", p);
}

static rs_socket *connect_loopback(int family, unsigned short port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 10.0;
    rs_socket *s;
    ASSERT_ERR(rs_create_connection(&s, family == AF_INET6 ? "::1" : "127.0.0.1", ps, &o), 0);
    return s;
}

/* Start a client peer against a fresh listener and accept its connection (timeout 10 s).
 * bufsize: if not 0, our receive (set on the listener, before the window is agreed) and send
 * buffer sizes. */
static rs_socket *accept_peer(const char *script, char *const *extra, int bufsize, struct t_py *py)
{
    struct sockaddr_storage a;
    socklen_t alen;
    rs_socket *l = t_server_ephemeral(AF_INET, &a, &alen);
    ASSERT_ERR(rs_settimeout(l, 10.0), 0);
    if (bufsize)
        ASSERT_ERR(rs_setsockopt(l, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize), 0);
    char port[16];
    port_arg(port, sizeof port, &a);
    char *argv[8] = { port };
    for (int i = 0; extra[i]; i++)
        argv[i + 1] = extra[i];
    t_py_spawn(script, argv, py);
    rs_socket *c;
    ASSERT_ERR(rs_accept(l, &c, NULL, NULL), 0);
    ASSERT_ERR(rs_close(l), 0);
    ASSERT_ERR(rs_settimeout(c, 10.0), 0);
    if (bufsize)
        ASSERT_ERR(rs_setsockopt(c, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize), 0);
    return c;
}

/* Read exactly n bytes and compare them with stream seed from offset 0. */
static void recv_stream(rs_socket *s, size_t n, uint64_t seed)
{
    unsigned char *got = malloc(n), *want = malloc(n);
    ck_assert(got && want);
    size_t have = 0;
    while (have < n) {
        ssize_t r = rs_recv(s, got + have, n - have, 0);
        ck_assert_msg(r > 0, "recv after %zu of %zu bytes: %zd (%s)", have, n, r,
                      r < 0 ? rs_err_name((int)r) : "EOF");
        have += (size_t)r;
    }
    t_py_stream(seed, 0, want, n);
    ck_assert_msg(memcmp(got, want, n) == 0, "received bytes differ from the stream sent");
    free(got);
    free(want);
}

static void expect_line(struct t_py *py, const char *want)
{
    char line[256];
    ck_assert_int_ge(t_py_readline(py, line, sizeof line, PEER_WAIT), 0);
    ck_assert_str_eq(line, want);
}

/* ---- a peer that resets mid-stream: blocking API --------------------------------------------- */

/* Every byte sent before the reset arrives; the reset then reads as -ECONNRESET, and writes
 * after it fail with -EPIPE or -ECONNRESET — the process is not killed by SIGPIPE. */
START_TEST(reset_after_data_blocking)
{
    sigpipe_default();
    enum {
        N = 200 * 1000 + 3
    };
    struct t_py py;
    rs_socket *c = accept_peer("peer_reset", (char *[]){ "200003", "7", "ack", NULL }, 0, &py);
    recv_stream(c, N, 7);
    ck_assert_int_eq(rs_send(c, "k", 1, 0), 1);
    expect_line(&py, "reset");
    char buf[64];
    ASSERT_ERR(rs_recv(c, buf, sizeof buf, 0), -ECONNRESET);
    ssize_t r = rs_send(c, "x", 1, 0);
    ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "send after reset: %zd (%s)", r, rs_err_name((int)r));
    static unsigned char big[1 << 20];
    size_t sent = 12345;
    r = rs_sendall_ex(c, big, sizeof big, 0, &sent);
    ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "sendall after reset: %zd (%s)", r, rs_err_name((int)r));
    ck_assert_uint_eq(sent, 0);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
}
END_TEST

/* The reset arrives while rs_recv is waiting (timeout 5 s): it returns -ECONNRESET at once. */
START_TEST(reset_while_waiting_blocking)
{
    sigpipe_default();
    struct t_py py;
    rs_socket *c = accept_peer("peer_reset", (char *[]){ "5000", "8", "sleep", NULL }, 0, &py);
    recv_stream(c, 5000, 8);
    ASSERT_ERR(rs_settimeout(c, 5.0), 0);
    char buf[64];
    double t0 = t_now();
    ASSERT_ERR(rs_recv(c, buf, sizeof buf, 0), -ECONNRESET);
    ck_assert_msg(t_now() - t0 < 2.0, "the reset took %.2f s to be seen", t_now() - t0);
    expect_line(&py, "reset");
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
}
END_TEST

/* ---- the completion API: a loop, and bounded runs of it ------------------------------------- */

static rs_loop *loop_new(struct t_tick *k)
{
    rs_loop *l;
    ASSERT_ERR(rs_loop_new(&l, NULL), 0);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rs_loop_backend(l), t_wanted_backend());
    t_tick_start(k, l);
    return l;
}

static void loop_free(rs_loop *l, struct t_tick *k)
{
    t_tick_end(k, l);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    ASSERT_ERR(rs_loop_free(l), 0);
}

/* Run l (which has a ticking timer) until cond or secs pass; assert cond. */
#define RUN_UNTIL(l, cond, secs)                                                      \
    do {                                                                              \
        double end_ = t_now() + (secs);                                               \
        while (!(cond) && t_now() < end_)                                             \
            ck_assert_int_ge(rs_loop_run((l), RS_RUN_ONCE), 0);                       \
        ck_assert_msg((cond), "still false after %.1f s: %s", (double)(secs), #cond); \
    } while (0)

static void run_for(rs_loop *l, double secs)
{
    for (double end = t_now() + secs; t_now() < end;)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
}

static bool readable(int fd)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    return poll(&pf, 1, 0) == 1;
}

static rs_conn *conn_of(rs_loop *l, rs_socket *s)
{
    rs_conn *c;
    ASSERT_ERR(rs_conn_from_socket(&c, l, s), 0);
    return c;
}

static void count_cb(rs_conn *c, void *user)
{
    (void)c;
    ++*(int *)user;
}

/* A reader that compares what arrives with stream seed and records how the stream ended. */
struct reader {
    uint64_t seed;
    size_t got;
    bool bad;
    int ends;    /* callbacks with n <= 0: must be exactly one */
    ssize_t end; /* that callback's n */
    int after;   /* callbacks after it (must stay 0) */
};

static void reader_cb(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct reader *r = user;
    if (r->ends) {
        r->after++;
        return;
    }
    if (n <= 0) {
        r->ends++;
        r->end = n;
        return;
    }
    unsigned char *want = malloc((size_t)n);
    ck_assert_ptr_nonnull(want);
    t_py_stream(r->seed, r->got, want, (size_t)n);
    if (memcmp(want, data, (size_t)n) != 0)
        r->bad = true;
    free(want);
    r->got += (size_t)n;
}

struct sent {
    int calls;
    ssize_t status;
};

static void sent_cb(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct sent *s = user;
    s->calls++;
    s->status = status;
}

/* ---- a peer that resets mid-stream: completion API ------------------------------------------- */

/* The read callback gets every byte, then the error exactly once (-ECONNRESET), and no call
 * after it; a send afterwards fails (-EPIPE/-ECONNRESET, through the call or its callback);
 * close still calls its callback once. */
START_TEST(reset_read_error_once_async)
{
    sigpipe_default();
    enum {
        N = 300 * 1000 + 11
    };
    struct t_tick k;
    rs_loop *l = loop_new(&k);
    struct t_py py;
    rs_socket *s = accept_peer("peer_reset", (char *[]){ "300011", "9", "sleep", NULL }, 0, &py);
    rs_conn *c = conn_of(l, s);
    struct reader rd = { .seed = 9 };
    ASSERT_ERR(rs_conn_read_start(c, reader_cb, &rd), 0);
    RUN_UNTIL(l, rd.ends == 1, 10);
    ck_assert_msg(!rd.bad, "wrong bytes before the reset");
    ck_assert_uint_eq(rd.got, N);
    ASSERT_ERR(rd.end, -ECONNRESET);
    run_for(l, 0.2);
    ck_assert_int_eq(rd.ends, 1);
    ck_assert_int_eq(rd.after, 0);

    struct sent sn = { 0 };
    static const char x[4096];
    int r = rs_conn_send(c, x, sizeof x, sent_cb, &sn);
    if (r == 0) {
        RUN_UNTIL(l, sn.calls == 1, 5);
        r = (int)sn.status;
    }
    ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "send after reset: %d (%s)", r, rs_err_name(r));
    int closed = 0;
    ASSERT_ERR(rs_conn_close(c, count_cb, &closed), 0);
    RUN_UNTIL(l, closed == 1, 5);
    run_for(l, 0.05);
    ck_assert_int_eq(closed, 1);
    ck_assert_int_le(sn.calls, 1);
    expect_line(&py, "reset");
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    loop_free(l, &k);
}
END_TEST

/* ---- a peer that never reads ----------------------------------------------------------------- */

/* rs_sendall / rs_sendall_ex to a peer that does not read: -ETIMEDOUT once the timeout (the
 * whole call's) has passed, *sent > 0; a non-blocking send to the full socket is -EAGAIN. What
 * the peer later reads is a prefix of the data, at least *sent bytes long (the second timed-out
 * call adds an unknown amount; the exact count is the next test's). */
START_TEST(never_reads_sendall_timeout)
{
    sigpipe_default();
    enum {
        N = 32 << 20
    };
    /* the data first (cheap bytes: only a digest of them is compared), then the peer, whose
     * wait for the go signal is bounded */
    unsigned char *data = malloc(N);
    ck_assert_ptr_nonnull(data);
    t_fill_pattern(data, N, 31);
    struct t_py py;
    t_py_spawn("peer_silent_sink", (char *[]){ "4", NULL }, &py);
    unsigned short port = t_py_port(&py);
    rs_socket *s = connect_loopback(AF_INET, port);
    int small = 65536;
    ASSERT_ERR(rs_setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);

    ASSERT_ERR(rs_settimeout(s, 0.5), 0);
    size_t sent = 0;
    double t0 = t_now();
    ssize_t r = rs_sendall_ex(s, data, N, 0, &sent);
    ASSERT_ERR(r, -ETIMEDOUT);
    t_assert_took(t0, 0.5, "rs_sendall_ex to a peer that never reads");
    ck_assert_msg(sent > 0 && sent < N, "sent %zu of %d", sent, N);
    /* the plain call's contract is the same: timeout, not a short count */
    ASSERT_ERR(rs_settimeout(s, 0.2), 0);
    ASSERT_ERR(rs_sendall(s, data + sent, N - sent, 0), -ETIMEDOUT);
    /* ... but it cannot say how much went out, so from here on only a non-blocking send, which
     * the full socket must refuse whole */
    ASSERT_ERR(rs_settimeout(s, 0.0), 0);
    ASSERT_ERR(rs_send(s, data, 1, 0), -EAGAIN);

    ASSERT_ERR(rs_close(s), 0);
    rs_socket *go = connect_loopback(AF_INET, port);
    ASSERT_ERR(rs_close(go), 0);
    char line[256];
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0);
    size_t got = strtoul(line, NULL, 10);
    /* what the two timed-out calls left in the socket is all the peer may see: more than the
     * first reported (the second sent some too), and a prefix of the stream */
    ck_assert_msg(got >= sent && got <= N, "the peer read %zu bytes; the first call reported %zu", got, sent);
    struct t_py_sha256 h;
    char hex[65];
    t_py_sha256_init(&h);
    t_py_sha256_update(&h, data, got);
    t_py_sha256_hex(&h, hex);
    ck_assert_str_eq(strchr(line, ' ') + 1, hex);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    free(data);
}
END_TEST

/* One timed-out rs_sendall_ex only: the peer reads exactly *sent bytes, and they are the first
 * *sent bytes of the data (SHA-256): nothing lost, nothing sent twice. */
START_TEST(never_reads_sendall_ex_reports_sent)
{
    sigpipe_default();
    enum {
        N = 32 << 20
    };
    unsigned char *data = malloc(N);
    ck_assert_ptr_nonnull(data);
    t_fill_pattern(data, N, 32);
    struct t_py py;
    t_py_spawn("peer_silent_sink", (char *[]){ "4", NULL }, &py);
    unsigned short port = t_py_port(&py);
    rs_socket *s = connect_loopback(AF_INET, port);
    ASSERT_ERR(rs_settimeout(s, 0.3), 0);
    size_t sent = 0;
    double t0 = t_now();
    ASSERT_ERR(rs_sendall_ex(s, data, N, 0, &sent), -ETIMEDOUT);
    t_assert_took(t0, 0.3, "rs_sendall_ex to a peer that never reads");
    ck_assert_msg(sent > 0 && sent < N, "sent %zu of %d", sent, N);
    ASSERT_ERR(rs_close(s), 0);
    rs_socket *go = connect_loopback(AF_INET, port);
    ASSERT_ERR(rs_close(go), 0);
    struct t_py_sha256 h;
    char want[256], hex[65];
    t_py_sha256_init(&h);
    t_py_sha256_update(&h, data, sent);
    t_py_sha256_hex(&h, hex);
    snprintf(want, sizeof want, "%zu %s", sent, hex);
    expect_line(&py, want);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    free(data);
}
END_TEST

/* An echo server on the completion API whose peer floods it and does not read: once the echo
 * sends pending pass RS_CONN_SEND_HIGH, reading pauses (the peer stalls, our receive count stops,
 * our queue stays bounded); once the peer reads, everything flows and the echo is exact. */
struct echo {
    size_t rx, max_pending;
    int ends, errors, closed;
    bool eof;
};

static void echo_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct echo *e = *(struct echo **)user;
    free(user);
    if (status < 0)
        e->errors++;
}

static void echo_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct echo *e = user;
    if (n <= 0) {
        e->ends++;
        if (n < 0)
            e->errors++;
        e->eof = n == 0;
        return;
    }
    e->rx += (size_t)n;
    /* the copy a send owns until its callback: a back pointer, then the bytes */
    unsigned char *b = malloc(sizeof e + (size_t)n);
    ck_assert_ptr_nonnull(b);
    memcpy(b, &e, sizeof e);
    memcpy(b + sizeof e, data, (size_t)n);
    ASSERT_ERR(rs_conn_send(c, b + sizeof e, (size_t)n, echo_sent, b), 0);
    size_t p = rs_conn_send_pending(c);
    if (p > e->max_pending)
        e->max_pending = p;
}

START_TEST(never_reads_backpressure_async)
{
    enum {
        TOTAL = 8 << 20
    };
    struct t_tick k;
    rs_loop *l = loop_new(&k);
    struct t_py py;
    rs_socket *s = accept_peer("peer_flood", (char *[]){ "8388608", "41", "1.0", NULL }, 65536, &py);
    rs_conn *c = conn_of(l, s);
    struct echo e = { 0 };
    ASSERT_ERR(rs_conn_read_start(c, echo_read, &e), 0);
    /* until the peer says it is stuck */
    RUN_UNTIL(l, readable(py.out) || e.ends, 15);
    ck_assert_int_eq(e.ends, 0);
    char line[256];
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0);
    ck_assert_msg(strncmp(line, "stalled ", 8) == 0, "peer said %s", line);
    size_t bound = 2 * (size_t)RS_CONN_SEND_HIGH + 65536;
    ck_assert_msg(rs_conn_send_pending(c) > RS_CONN_SEND_HIGH / 2, "peer stalled with only %zu bytes pending",
                  rs_conn_send_pending(c));
    ck_assert_msg(e.max_pending <= bound, "send_pending reached %zu (bound %zu)", e.max_pending, bound);
    size_t rx = e.rx;
    run_for(l, 0.3); /* the peer keeps not reading for 1 s */
    ck_assert_msg(e.rx == rx, "read %zu more bytes while %zu bytes of sends were pending", e.rx - rx,
                  rs_conn_send_pending(c));
    /* the peer reads now: it sends the rest, shuts down, and we close once our echo is out */
    RUN_UNTIL(l, e.ends == 1 && rs_conn_send_pending(c) == 0, 20);
    ck_assert_msg(e.eof && e.errors == 0, "stream ended with %d errors", e.errors);
    ck_assert_uint_eq(e.rx, TOTAL);
    ck_assert_msg(e.max_pending <= bound, "send_pending reached %zu (bound %zu)", e.max_pending, bound);
    ASSERT_ERR(rs_conn_close(c, count_cb, &e.closed), 0);
    RUN_UNTIL(l, e.closed == 1, 5);
    expect_line(&py, "ok 8388608");
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    loop_free(l, &k);
}
END_TEST

/* ---- half-close ------------------------------------------------------------------------------ */

/* Our rs_shutdown(SHUT_WR) reaches the Python peer as EOF; the connection stays open the other
 * way, so its reply (a digest of what it read, then its own stream) arrives whole; a send after
 * our shutdown is -EPIPE. IPv4 and IPv6. */
START_TEST(our_shut_wr_peer_sees_eof_blocking)
{
    sigpipe_default();
    enum {
        N = 400 * 1000 + 1,
        M = 300 * 1000 + 5
    };
    for (int v6 = 0; v6 < 2; v6++) {
        struct t_py py;
        t_py_spawn("peer_shutwr_server", (char *[]){ v6 ? "6" : "4", "300005", "51", NULL }, &py);
        rs_socket *s = connect_loopback(v6 ? AF_INET6 : AF_INET, t_py_port(&py));
        unsigned char *data = malloc(N), *reply = malloc(64 + M + 1), *want = malloc(M);
        ck_assert(data && reply && want);
        t_py_stream(51, 0, data, N);
        ck_assert_int_eq(rs_sendall(s, data, N, 0), N);
        ASSERT_ERR(rs_shutdown(s, SHUT_WR), 0);
        ssize_t r = rs_send(s, "x", 1, 0);
        ASSERT_ERR(r, -EPIPE);
        size_t got = 0;
        for (;;) {
            ck_assert_uint_lt(got, 64 + M + 1);
            r = rs_recv(s, reply + got, 64 + M - got + (got == 64 + M), 0);
            ck_assert_msg(r >= 0, "recv after %zu bytes: %s", got, rs_err_name((int)r));
            if (r == 0)
                break;
            got += (size_t)r;
        }
        ck_assert_uint_eq(got, 64 + M);
        struct t_py_sha256 h;
        char hex[65];
        t_py_sha256_init(&h);
        t_py_sha256_update(&h, data, N);
        t_py_sha256_hex(&h, hex);
        ck_assert(memcmp(reply, hex, 64) == 0);
        t_py_stream(52, 0, want, M);
        ck_assert(memcmp(reply + 64, want, M) == 0);
        char line[64];
        snprintf(line, sizeof line, "eof %d", N);
        expect_line(&py, line);
        ck_assert_int_eq(rs_close(s), 0);
        ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
        free(data);
        free(reply);
        free(want);
        if (!v6 && !rs_has_dualstack_ipv6())
            break; /* no IPv6 here */
    }
}
END_TEST

/* The peer's SHUT_WR on the completion API: the read callback sees every byte then EOF (n == 0,
 * once), and sends on the same conn still reach the peer in full. */
struct halfclose {
    struct t_py_sha256 h;
    size_t got;
    bool bad;
    int ends, after;
    ssize_t end;
};

static void halfclose_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct halfclose *hc = user;
    if (hc->ends) {
        hc->after++;
        return;
    }
    if (n <= 0) {
        hc->ends++;
        hc->end = n;
        return;
    }
    unsigned char *want = malloc((size_t)n);
    ck_assert_ptr_nonnull(want);
    t_py_stream(61, hc->got, want, (size_t)n);
    hc->bad |= memcmp(want, data, (size_t)n) != 0;
    free(want);
    t_py_sha256_update(&hc->h, data, (size_t)n);
    hc->got += (size_t)n;
}

START_TEST(peer_shut_wr_then_reply_async)
{
    enum {
        N = 250 * 1000 + 9,
        M = 700 * 1000 + 3
    };
    struct t_tick k;
    rs_loop *l = loop_new(&k);
    struct t_py py;
    rs_socket *s = accept_peer("halfclose_client", (char *[]){ "250009", "700003", "61", NULL }, 0, &py);
    rs_conn *c = conn_of(l, s);
    struct halfclose hc = { 0 };
    t_py_sha256_init(&hc.h);
    ASSERT_ERR(rs_conn_read_start(c, halfclose_read, &hc), 0);
    RUN_UNTIL(l, hc.ends == 1, 10);
    ASSERT_ERR(hc.end, 0);
    ck_assert_uint_eq(hc.got, N);
    ck_assert(!hc.bad);
    char hex[65];
    t_py_sha256_hex(&hc.h, hex);
    unsigned char *reply = malloc(M);
    ck_assert_ptr_nonnull(reply);
    t_py_stream(62, 0, reply, M);
    struct sent s1 = { 0 }, s2 = { 0 };
    ASSERT_ERR(rs_conn_send(c, hex, 64, sent_cb, &s1), 0);
    ASSERT_ERR(rs_conn_send(c, reply, M, sent_cb, &s2), 0);
    RUN_UNTIL(l, s1.calls == 1 && s2.calls == 1, 10);
    ck_assert_int_eq(s1.status, 64);
    ck_assert_int_eq(s2.status, M);
    int closed = 0;
    ASSERT_ERR(rs_conn_close(c, count_cb, &closed), 0);
    RUN_UNTIL(l, closed == 1, 5);
    ck_assert_int_eq(hc.after, 0);
    expect_line(&py, "ok");
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    free(reply);
    loop_free(l, &k);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("peers");
    TCase *tc = t_tcase(s, "peers", 40);
    tcase_add_test(tc, reset_after_data_blocking);
    tcase_add_test(tc, reset_while_waiting_blocking);
    tcase_add_test(tc, reset_read_error_once_async);
    tcase_add_test(tc, never_reads_sendall_timeout);
    tcase_add_test(tc, never_reads_sendall_ex_reports_sent);
    tcase_add_test(tc, never_reads_backpressure_async);
    tcase_add_test(tc, our_shut_wr_peer_sees_eof_blocking);
    tcase_add_test(tc, peer_shut_wr_then_reply_async);
    return s;
}

int main(void) { return t_run(make_suite()); }
