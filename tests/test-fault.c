/* Injected faults (lib/fault.c, built with -Dfault_injection=true) on every backend: each fault
 * under a real loopback transfer, which must end with the documented error or with every byte
 * delivered once and in order, and the fd count unchanged (t.h fixture; leaks: ASan, valgrind).
 * Linked with the static library: the test sets the rules itself (rs__fault_set) and reads the
 * injection counters, so every test also proves its fault was injected. Peers of the
 * completion-API tests use raw syscalls, so a library bug cannot hide on both ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/async.h>
#include <ringsock/ringsock.h>

#include "t.h"
#include "fault_i.h"

static const char *spec_now;

static void faults(const char *spec)
{
    ck_assert_int_eq(rs__fault_set(spec), 0);
    spec_now = spec;
}

/* With T_FAULT_REPORT set: what each test injected, one line on stderr (docs/reliability.md). */
static void report(void)
{
    if (!getenv("T_FAULT_REPORT") || !spec_now)
        return;
    static const char *const pairs[][2] = {
        { "send", "eintr" },      { "send", "eagain" },   { "send", "short" },      { "send", "enomem" },
        { "send", "econnreset" }, { "send", "epipe" },    { "recv", "eintr" },      { "recv", "eagain" },
        { "recv", "short" },      { "recv", "enomem" },   { "recv", "econnreset" }, { "recv", "enobufs" },
        { "accept", "eintr" },    { "accept", "eagain" }, { "accept", "enomem" },   { "accept", "emfile" },
        { "accept", "enobufs" },  { "wait", "eintr" },    { "sqe", "full" },        { "ring", "tiny" },
        { "regbuf", "fail" },
    };
    char line[1024];
    int n = snprintf(line, sizeof line, "fault-report %s [%s]:", getenv("RINGSOCK_BACKEND"), spec_now);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0] && n > 0 && (size_t)n < sizeof line; i++) {
        unsigned long k = rs__fault_count(pairs[i][0], pairs[i][1]);
        if (k)
            n += snprintf(line + n, sizeof line - (size_t)n, " %s:%s=%lu", pairs[i][0], pairs[i][1], k);
    }
    if (rs__fault_cq_overflows() && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " cq-overflow-seen=%lu", rs__fault_cq_overflows());
    fprintf(stderr, "%s\n", line);
}

static void injected(const char *site, const char *fault)
{
    ck_assert_msg(rs__fault_count(site, fault) > 0, "%s:%s was never injected", site, fault);
}

static bool on_uring(void)
{
    rs_loop *l;
    ck_assert_int_eq(rs_loop_default(&l), 0);
    return rs_loop_backend(l) == RS_BACKEND_URING;
}

static unsigned char *pattern(size_t len, uint32_t seed)
{
    unsigned char *p = malloc(len);
    ck_assert_ptr_nonnull(p);
    t_fill_pattern(p, len, seed);
    return p;
}

/* ---- blocking API: a sender thread, the receiver on the test's thread ----------------------- */

struct sender {
    rs_socket *s;
    const unsigned char *buf;
    size_t len;
    size_t sent; /* bytes rs_sendall_ex reported sent, over all its calls */
    int errors;  /* calls that ended in an error (resumed where they stopped) */
    int last_err;
    bool use_file; /* rs_sendfile from a temp file holding buf */
};

static void *send_main(void *p)
{
    struct sender *x = p;
    if (x->use_file) {
        char path[] = "/tmp/rs-fault-XXXXXX";
        int fd = mkstemp(path);
        if (fd >= 0) {
            unlink(path);
            if (write(fd, x->buf, x->len) == (ssize_t)x->len) {
                off_t off = 0;
                for (int i = 0; i < 100 && (size_t)off < x->len; i++) {
                    ssize_t r = rs_sendfile(x->s, fd, &off, x->len - (size_t)off);
                    if (r < 0) {
                        x->errors++;
                        x->last_err = (int)r;
                    }
                }
                x->sent = (size_t)off;
            }
            close(fd);
        }
    } else {
        for (int i = 0; i < 1000 && x->sent < x->len; i++) {
            size_t n = 0;
            ssize_t r = rs_sendall_ex(x->s, x->buf + x->sent, x->len - x->sent, 0, &n);
            x->sent += n;
            if (r < 0) {
                x->errors++;
                x->last_err = (int)r;
            }
        }
    }
    rs_shutdown(x->s, SHUT_WR);
    return NULL;
}

enum rx_mode {
    RX_RECV,
    RX_WAITALL
};

struct rx {
    size_t got;
    int errors, last_err;
};

/* Receive until EOF into out (cap bytes). RX_WAITALL: MSG_WAITALL chunks, each of which must be
 * whole but the last. Errors are counted and receiving goes on (an injected error takes nothing). */
static struct rx receive(rs_socket *s, unsigned char *out, size_t cap, enum rx_mode mode)
{
    struct rx r = { 0, 0, 0 };
    const size_t chunk = 10000;
    for (int i = 0; i < 200000; i++) {
        size_t want = cap - r.got < chunk ? cap - r.got : chunk;
        if (want == 0)
            want = 1; /* anything more than cap is a duplicate: read it to see it */
        unsigned char extra;
        ssize_t n =
            rs_recv(s, cap - r.got ? out + r.got : &extra, want, mode == RX_WAITALL ? MSG_WAITALL : 0);
        if (n == 0)
            return r;
        if (n < 0) {
            r.errors++;
            r.last_err = (int)n;
            continue;
        }
        ck_assert_msg(r.got + (size_t)n <= cap, "more bytes than were sent");
        if (mode == RX_WAITALL && (size_t)n < want)
            ck_assert_msg(r.got + (size_t)n == cap, "MSG_WAITALL came back short (%zd of %zu) before the end",
                          n, want);
        r.got += (size_t)n;
    }
    ck_abort_msg("receive did not end");
    return r;
}

struct run {
    struct sender tx;
    struct rx rx;
};

/* One transfer of len bytes client -> server under the faults set, compared byte for byte. */
static struct run transfer(size_t len, enum rx_mode mode, bool use_file)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    unsigned char *buf = pattern(len, (uint32_t)len ^ 0x9e3779b9u);
    unsigned char *out = malloc(len + 1);
    ck_assert_ptr_nonnull(out);
    struct run run;
    memset(&run, 0, sizeof run);
    run.tx.s = c;
    run.tx.buf = buf;
    run.tx.len = len;
    run.tx.use_file = use_file;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, send_main, &run.tx), 0);
    run.rx = receive(s, out, len, mode);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_eq(run.tx.sent, len);
    ck_assert_uint_eq(run.rx.got, len);
    ck_assert_msg(memcmp(out, buf, len) == 0, "received bytes differ from those sent");
    free(buf);
    free(out);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(s), 0);
    return run;
}

START_TEST(spec_errors_reported)
{
    static const char *bad[] = {
        "bogus:eintr",  "send:emfile",       "send:eintr",     "send:eintr=1",  "recv:eagain=2/2",
        "send:short=0", "send:short=first0", "send:short=3/2", "send",          "send:short,",
        ",send:short",  "wait:eintr=x",      "seed=0",         "ring:tiny=1/0", "regbuf:nope",
        "accept:short", "wait:short",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(rs__fault_set(bad[i]) == -EINVAL, "\"%s\" was accepted", bad[i]);
    static const char *good[] = {
        "",
        "send:short",
        "send:short=3,recv:eintr=1/5,accept:emfile=first2,sqe:full=2,regbuf:fail",
        "seed=42,recv:enobufs=1/3",
        "ring:tiny,wait:eintr=2",
        "wait:enomem=first50",
        "wait:enomem",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(rs__fault_set(good[i]) == 0, "\"%s\" was refused", good[i]);
    /* From the environment: a bad value fails loop creation (never runs without its faults) */
    rs_loop *l;
    setenv("RINGSOCK_FAULT", "send:sometimes", 1);
    ASSERT_ERR(rs_loop_new(&l, NULL), -EINVAL);
    ASSERT_ERR(rs_loop_new(&l, NULL), -EINVAL);
    setenv("RINGSOCK_FAULT", "regbuf:fail=first3", 1);
    ASSERT_ERR(rs_loop_new(&l, NULL), 0);
    ck_assert_int_eq(rs_loop_free(l), 0);
    unsetenv("RINGSOCK_FAULT");
    ASSERT_ERR(rs_loop_new(&l, NULL), 0);
    ck_assert_int_eq(rs_loop_free(l), 0);
}
END_TEST

START_TEST(short_send_recv)
{
    faults("send:short,recv:short=2");
    struct run r = transfer(1 << 20, RX_RECV, false);
    ck_assert_int_eq(r.tx.errors + r.rx.errors, 0);
    injected("send", "short");
    injected("recv", "short");
}
END_TEST

START_TEST(short_send_recv_waitall)
{
    /* MSG_WAITALL promises whole chunks: short receives are not injected into it, short sends are */
    faults("seed=7,send:short=2/3,recv:short=1/2");
    struct run r = transfer(1 << 20, RX_WAITALL, false);
    ck_assert_int_eq(r.tx.errors + r.rx.errors, 0);
    injected("send", "short");
}
END_TEST

START_TEST(eintr_absorbed)
{
    /* PEP 475: a blocking call never returns EINTR, whether the wait or the operation saw it */
    faults("send:short,send:eintr=3,recv:eintr=3,wait:eintr=first3,accept:eintr=first1");
    struct run r = transfer(1 << 20, RX_RECV, false);
    ck_assert_msg(r.tx.errors + r.rx.errors == 0, "a call failed: %s / %s", rs_err_name(r.tx.last_err),
                  rs_err_name(r.rx.last_err));
    injected("send", "eintr");
    injected("recv", "eintr");
    injected("wait", "eintr");
    injected("accept", "eintr");
}
END_TEST

struct filler {
    rs_socket *s;
    const unsigned char *buf;
    size_t len, piece;
    volatile int done; /* 1 sent all, -1 failed */
};

static void *fill_main(void *p)
{
    struct filler *f = p;
    for (size_t off = 0; off < f->len; off += f->piece) {
        size_t k = f->len - off < f->piece ? f->len - off : f->piece;
        if (rs_sendall(f->s, f->buf + off, k, 0) != (ssize_t)k) {
            f->done = -1;
            return NULL;
        }
    }
    f->done = 1;
    return NULL;
}

START_TEST(eintr_send_into_busy_buffer)
{
    /* The peer reads only once every send has returned; the sends fit in the send buffer but
     * leave less than a third of it free, where POLLOUT is not reported. An interrupted send must
     * go again at once, as send(2) would take the bytes (io_uring once parked it on a poll: hang). */
    faults("send:eintr=2");
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    int snd = 1 << 20, rcv = 64 * 1024;
    ck_assert_int_eq(rs_setsockopt(c, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd), 0);
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv), 0);
    size_t len = 1600 * 1024; /* of the 2 MiB the kernel makes of SO_SNDBUF 1 MiB */
    unsigned char *buf = pattern(len, 77);
    struct filler f = { c, buf, len, 64 * 1024, 0 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_main, &f), 0);
    double end = t_now() + 5;
    while (!f.done && t_now() < end)
        t_sleep(0.01);
    int done = f.done;
    /* read everything either way, so that a stuck sender gets out and the test can end */
    unsigned char *out = malloc(len);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(rs_recv(s, out, len, MSG_WAITALL), (ssize_t)len);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_msg(done == 1, "the sends did not finish while the peer waited for them (%d)", done);
    ck_assert_int_eq(memcmp(out, buf, len), 0);
    injected("send", "eintr");
    free(out);
    free(buf);
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(eagain_absorbed)
{
    faults("send:short,send:eagain=3,recv:eagain=3,accept:eagain=first1");
    struct run r = transfer(1 << 20, RX_RECV, false);
    ck_assert_msg(r.tx.errors + r.rx.errors == 0, "a call failed: %s / %s", rs_err_name(r.tx.last_err),
                  rs_err_name(r.rx.last_err));
    injected("send", "eagain");
    injected("recv", "eagain");
    injected("accept", "eagain");
}
END_TEST

START_TEST(eintr_keeps_timeout)
{
    /* an interrupted wait neither ends a timed receive early nor makes it late */
    faults("wait:eintr=2");
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(s, 0.2), 0);
    char b[4];
    double t0 = t_now();
    ASSERT_ERR(rs_recv(s, b, sizeof b, 0), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "recv with wait:eintr");
    injected("wait", "eintr");
    rs_close(c);
    rs_close(s);
}
END_TEST

START_TEST(epipe_then_resume)
{
    /* an injected EPIPE takes nothing: sendall reports what it had sent, the rest goes after */
    faults("send:short,send:epipe=5");
    struct run r = transfer(1 << 20, RX_RECV, false);
    ck_assert_int_gt(r.tx.errors, 0);
    ASSERT_ERR(r.tx.last_err, -EPIPE);
    ck_assert_int_eq(r.rx.errors, 0);
    injected("send", "epipe");
}
END_TEST

START_TEST(enomem_econnreset_reported)
{
    faults("send:enomem=first1,recv:econnreset=first1");
    struct run r = transfer(256 * 1024, RX_RECV, false);
    ck_assert_int_eq(r.tx.errors, 1);
    ASSERT_ERR(r.tx.last_err, -ENOMEM);
    ck_assert_int_eq(r.rx.errors, 1);
    ASSERT_ERR(r.rx.last_err, -ECONNRESET);
}
END_TEST

START_TEST(accept_emfile_reported)
{
    faults("accept:emfile=first1");
    struct sockaddr_storage a;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(AF_INET, &a, &len);
    rs_socket *c, *s = NULL;
    ck_assert_int_eq(rs_socket_open(&c, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&a, len), 0);
    int fds = t_fd_count();
    ASSERT_ERR(rs_accept(l, &s, NULL, NULL), -EMFILE);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(t_fd_count(), fds);
    /* the connection waited in the backlog: nothing was lost */
    ASSERT_ERR(rs_accept(l, &s, NULL, NULL), 0);
    ck_assert_int_eq(rs_sendall(c, "ok", 2, 0), 2);
    char b[2];
    ck_assert_int_eq(rs_recv(s, b, 2, MSG_WAITALL), 2);
    ck_assert_int_eq(memcmp(b, "ok", 2), 0);
    ck_assert_uint_eq(rs__fault_count("accept", "emfile"), 1);
    rs_close(c);
    rs_close(s);
    rs_close(l);
}
END_TEST

struct lines {
    rs_socket *s;
    int n;
};

static void line_of(int i, char *b, size_t cap) { snprintf(b, cap, "line %06d %0*d\n", i, i % 97, 0); }

static void *write_lines(void *p)
{
    struct lines *x = p;
    rs_file *f;
    if (rs_makefile(&f, x->s, "wb", -1) == 0) {
        char b[160];
        for (int i = 0; i < x->n; i++) {
            line_of(i, b, sizeof b);
            rs_file_write(f, b, strlen(b));
        }
        rs_file_close(f);
    }
    rs_shutdown(x->s, SHUT_WR);
    return NULL;
}

/* n lines through makefile readline; returns the loop's fixed-buffer operations it took */
static unsigned long long readline_run(int n)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    struct lines x = { c, n };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, write_lines, &x), 0);
    rs_loop *l;
    ck_assert_int_eq(rs_loop_default(&l), 0);
    struct rs_loop_stats st0, st1;
    rs_loop_stats(l, &st0);
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, s, "rb", -1), 0);
    char want[160], got[160];
    for (int i = 0; i < n; i++) {
        line_of(i, want, sizeof want);
        ssize_t r = rs_file_readline(f, got, sizeof got);
        ck_assert_int_eq(r, (ssize_t)strlen(want));
        ck_assert_msg(memcmp(got, want, (size_t)r) == 0, "line %d differs", i);
    }
    ck_assert_int_eq(rs_file_readline(f, got, sizeof got), 0);
    rs_loop_stats(l, &st1);
    ck_assert_int_eq(rs_file_close(f), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    rs_close(c);
    rs_close(s);
    return st1.fixed_buf_ops - st0.fixed_buf_ops;
}

START_TEST(makefile_regbuf_fail)
{
    bool uring = on_uring();
    /* without the fault, io_uring reads the file's buffer with READ_FIXED */
    unsigned long long fixed = readline_run(2000);
    if (uring)
        ck_assert_uint_gt(fixed, 0);
    /* a fresh loop whose table registration fails: plain memory, same lines */
    ck_assert_int_eq(rs_loop_default_release(), 0);
    faults("regbuf:fail,recv:short=2");
    fixed = readline_run(2000);
    ck_assert_uint_eq(fixed, 0);
    injected("recv", "short");
    if (uring)
        injected("regbuf", "fail");
}
END_TEST

START_TEST(makefile_short_fixed)
{
    /* short and interrupted READ_FIXED / WRITE_FIXED (io_uring) or reads and writes (elsewhere)
     * under makefile's buffering: every line whole, in order */
    faults("recv:short=2,send:short=2,recv:eintr=5,send:eintr=5,wait:eintr=7");
    unsigned long long fixed = readline_run(20000);
    if (on_uring())
        ck_assert_uint_gt(fixed, 0);
    injected("recv", "short");
    injected("send", "short");
}
END_TEST

START_TEST(sendfile_short)
{
    faults("send:short,send:eintr=5,send:eagain=7");
    struct run r = transfer(1 << 20, RX_RECV, true);
    ck_assert_msg(r.tx.errors == 0, "rs_sendfile failed: %s", rs_err_name(r.tx.last_err));
    if (!on_uring()) /* io_uring splices, and splices are left alone (link chains) */
        injected("send", "short");
}
END_TEST

/* ---- completion API: an echo server on a loop of the test's thread -------------------------- */

struct srv {
    rs_loop *loop;
    int accepted, accept_errors, last_accept_err, closed, read_errors, last_read_err;
    unsigned features; /* rs_loop_features at the end of the run */
};

struct echo_conn {
    struct srv *srv;
    bool eof;
};

static void echo_closed(rs_conn *c, void *user)
{
    (void)c;
    struct echo_conn *e = user;
    e->srv->closed++;
    free(e);
}

static void echo_sent(rs_conn *c, ssize_t status, void *user)
{
    free(user);
    struct echo_conn *e = rs_conn_get_data(c);
    ck_assert_msg(status > 0, "echo send failed: %s", rs_err_name((int)status));
    if (e->eof && rs_conn_send_pending(c) == 0)
        rs_conn_close(c, echo_closed, e);
}

static void echo_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct echo_conn *e = user;
    if (n > 0) {
        void *copy = malloc((size_t)n);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, data, (size_t)n);
        ck_assert_int_eq(rs_conn_send(c, copy, (size_t)n, echo_sent, copy), 0);
        return;
    }
    if (n < 0) {
        e->srv->read_errors++;
        e->srv->last_read_err = (int)n;
    }
    e->eof = true;
    if (rs_conn_send_pending(c) == 0)
        rs_conn_close(c, echo_closed, e);
}

static void on_accept(rs_conn *l, rs_conn *c, int status, void *data)
{
    (void)l;
    struct srv *srv = data;
    if (status < 0) {
        srv->accept_errors++;
        srv->last_accept_err = status;
        return;
    }
    srv->accepted++;
    struct echo_conn *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    e->srv = srv;
    rs_conn_set_data(c, e);
    ck_assert_int_eq(rs_conn_read_start(c, echo_read, e), 0);
}

static void listener_closed(rs_conn *c, void *user)
{
    (void)c;
    *(bool *)user = true;
}

#define MAX_PEERS 64

/* The peer: nconn raw non-blocking sockets, each sending len bytes of its own pattern and
 * reading the echo back, all driven by poll() on a thread of its own. */
struct peer {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int nconn;
    size_t len;
    int ok; /* connections whose echo came back whole and equal */
    const char *fail;
};

static void *peer_main(void *p)
{
    struct peer *x = p;
    struct {
        int fd;
        unsigned char *tx, *rx;
        size_t sent, got;
        bool done;
    } c[MAX_PEERS];
    memset(c, 0, sizeof c);
    for (int i = 0; i < x->nconn; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&x->addr, x->addrlen) < 0) {
            x->fail = "connect";
            return NULL;
        }
        fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
        c[i].tx = malloc(x->len);
        c[i].rx = malloc(x->len);
        t_fill_pattern(c[i].tx, x->len, 1000u + (uint32_t)i);
    }
    int left = x->nconn;
    double end = t_now() + 15;
    while (left > 0 && t_now() < end) {
        struct pollfd pf[MAX_PEERS];
        for (int i = 0; i < x->nconn; i++) {
            pf[i].fd = c[i].done ? -1 : c[i].fd;
            pf[i].events = (short)(POLLIN | (c[i].sent < x->len ? POLLOUT : 0));
        }
        if (poll(pf, (nfds_t)x->nconn, 100) < 0)
            continue;
        for (int i = 0; i < x->nconn; i++) {
            if (c[i].done)
                continue;
            if (c[i].sent < x->len && (pf[i].revents & POLLOUT)) {
                /* odd-sized writes so that the server sees many small receives */
                size_t n = x->len - c[i].sent < 7000 ? x->len - c[i].sent : 7000;
                ssize_t w = send(c[i].fd, c[i].tx + c[i].sent, n, MSG_NOSIGNAL);
                if (w > 0 && (c[i].sent += (size_t)w) == x->len)
                    shutdown(c[i].fd, SHUT_WR);
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                unsigned char dummy[1];
                size_t room = x->len - c[i].got;
                ssize_t r = recv(c[i].fd, room ? c[i].rx + c[i].got : dummy, room ? room : 1, 0);
                if (r > 0 && room == 0) {
                    x->fail = "more bytes echoed than sent";
                    c[i].done = true;
                    left--;
                } else if (r > 0) {
                    c[i].got += (size_t)r;
                } else if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    c[i].done = true;
                    left--;
                    if (c[i].got == x->len && memcmp(c[i].tx, c[i].rx, x->len) == 0)
                        x->ok++;
                }
            }
        }
    }
    for (int i = 0; i < x->nconn; i++) {
        close(c[i].fd);
        free(c[i].tx);
        free(c[i].rx);
    }
    return NULL;
}

/* An echo server on a new loop (opts), nconn peers of len bytes each; returns the server's
 * counters. The loop is freed, everything closed. */
static struct srv echo_run(const struct rs_loop_opts *opts, int nconn, size_t len, int *ok)
{
    struct srv srv;
    memset(&srv, 0, sizeof srv);
    ck_assert_int_eq(rs_loop_new(&srv.loop, opts), 0);
    rs_socket *ls;
    struct peer peer;
    memset(&peer, 0, sizeof peer);
    ls = t_server_ephemeral(AF_INET, &peer.addr, &peer.addrlen);
    rs_conn *l;
    ck_assert_int_eq(rs_conn_from_socket(&l, srv.loop, ls), 0);
    ck_assert_int_eq(rs_conn_accept_start(l, on_accept, &srv), 0);
    peer.nconn = nconn;
    peer.len = len;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, peer_main, &peer), 0);
    double end = t_now() + 20;
    while ((srv.closed < nconn) && t_now() < end)
        ck_assert_int_ge(rs_loop_run(srv.loop, RS_RUN_ONCE), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    bool lclosed = false;
    ck_assert_int_eq(rs_conn_close(l, listener_closed, &lclosed), 0);
    while (!lclosed && t_now() < end + 5)
        rs_loop_run(srv.loop, RS_RUN_ONCE);
    ck_assert(lclosed);
    srv.features = rs_loop_features(srv.loop);
    ck_assert_int_eq(rs_loop_free(srv.loop), 0);
    ck_assert_msg(peer.fail == NULL, "peer: %s", peer.fail ? peer.fail : "");
    *ok = peer.ok;
    return srv;
}

static void echo_check(const char *spec, const struct rs_loop_opts *opts, int nconn, size_t len)
{
    faults(spec);
    int ok;
    struct srv srv = echo_run(opts, nconn, len, &ok);
    ck_assert_int_eq(srv.accepted, nconn);
    ck_assert_int_eq(srv.closed, nconn);
    ck_assert_msg(srv.read_errors == 0, "read error %s", rs_err_name(srv.last_read_err));
    ck_assert_int_eq(ok, nconn);
}

START_TEST(async_short_eintr_eagain)
{
    echo_check("send:short=2,recv:short=3,recv:eintr=4,send:eintr=6,send:eagain=5,recv:eagain=7,wait:eintr=3",
               NULL, 16, 64 * 1024);
    injected("send", "short");
    injected("send", "eagain");
    injected("wait", "eintr");
    if (!on_uring()) { /* io_uring's multishot receive has no length to shorten and no EINTR */
        injected("recv", "short");
        injected("recv", "eintr");
        injected("recv", "eagain");
    }
}
END_TEST

START_TEST(async_enobufs_rearms)
{
    echo_check("recv:enobufs=2", NULL, 16, 64 * 1024);
    if (on_uring()) /* the readiness backends receive into a scratch buffer: no ENOBUFS there */
        injected("recv", "enobufs");
}
END_TEST

START_TEST(async_enobufs_legacy)
{
    /* io_uring without multishot receive (RINGSOCK_URING_LEGACY: each receive into a buffer of
     * its own, no buffer ring): an -ENOBUFS ending still re-arms (it once read a ring that did
     * not exist: SIGSEGV). The same -ENOBUFS comes from accept(2) short of memory. */
    setenv("RINGSOCK_URING_LEGACY", "1", 1);
    echo_check("recv:enobufs=2", NULL, 8, 32 * 1024);
    unsetenv("RINGSOCK_URING_LEGACY");
    if (on_uring())
        injected("recv", "enobufs");
}
END_TEST

START_TEST(async_accept_enobufs)
{
    /* the kernel ends a multishot accept with -ENOBUFS (no memory) before any receive made the
     * buffer ring: accepting goes on, every connection is served */
    echo_check("accept:enobufs=first2", NULL, 4, 4096);
    if (on_uring())
        ck_assert_uint_eq(rs__fault_count("accept", "enobufs"), 2);
}
END_TEST

START_TEST(async_tiny_ring_sqe_full)
{
    /* 2 SQ entries and 8 CQ entries for 48 busy connections: the CQ overflows, the SQ fills */
    echo_check("ring:tiny,sqe:full=3", NULL, 48, 32 * 1024);
    injected("ring", "tiny");
    if (on_uring()) {
        injected("sqe", "full");
        ck_assert_msg(rs__fault_cq_overflows() > 0, "the CQ ring never overflowed");
    }
}
END_TEST

/* A kernel that refuses multishot accept and receive (before 5.19 / 6.0): the first multishot op
 * of each kind comes back -EINVAL, is retried single-shot, and the loop settles on single-shot
 * (its features say so); the echo is exact. Without the rule the same run keeps multishot. */
START_TEST(multishot_refused_falls_back)
{
    echo_check("kernel:nomultishot", NULL, 8, 64 * 1024);
    rs_loop *d;
    ck_assert_int_eq(rs_loop_default(&d), 0);
    if (!on_uring() || !(rs_loop_features(d) & RS_FEAT_MULTISHOT_ACCEPT))
        return; /* readiness, or single-shot forced (uring-legacy): no multishot flag to refuse */
    injected("kernel", "nomultishot");
    int ok;
    faults("kernel:nomultishot");
    struct srv srv = echo_run(NULL, 4, 4096, &ok);
    ck_assert_int_eq(ok, 4);
    ck_assert_msg(!(srv.features & (RS_FEAT_MULTISHOT_ACCEPT | RS_FEAT_MULTISHOT_RECV)),
                  "features 0x%x after the kernel refused multishot", srv.features);
    faults("");
    srv = echo_run(NULL, 4, 4096, &ok);
    ck_assert_int_eq(ok, 4);
    ck_assert_msg((srv.features & (RS_FEAT_MULTISHOT_ACCEPT | RS_FEAT_MULTISHOT_RECV)) ==
                      (RS_FEAT_MULTISHOT_ACCEPT | RS_FEAT_MULTISHOT_RECV),
                  "features 0x%x with multishot granted", srv.features);
}
END_TEST

static void accept_status(rs_conn *l, rs_conn *c, int status, void *data)
{
    (void)l;
    (void)c;
    *(int *)data = status;
}

/* The probe tells a refused flag from the op's own -EINVAL: a multishot accept on a socket that
 * is not listening fails with -EINVAL on every kernel, and multishot stays granted. */
START_TEST(multishot_probe_keeps_own_einval)
{
    faults("");
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_new(&loop, NULL), 0);
    rs_socket *s;
    struct sockaddr_storage a;
    socklen_t alen;
    s = t_bound(AF_INET, SOCK_STREAM, &a, &alen); /* bound, not listening */
    rs_conn *l;
    ck_assert_int_eq(rs_conn_from_socket(&l, loop, s), 0);
    int status = 1;
    unsigned before = rs_loop_features(loop);
    ck_assert_int_eq(rs_conn_accept_start(l, accept_status, &status), 0);
    double end = t_now() + 5;
    while (status == 1 && t_now() < end)
        ck_assert_int_ge(rs_loop_run(loop, RS_RUN_ONCE), 0);
    ASSERT_ERR(status, -EINVAL);
    if (before & RS_FEAT_MULTISHOT_ACCEPT)
        ck_assert_msg(rs_loop_features(loop) & RS_FEAT_MULTISHOT_ACCEPT,
                      "the op's own EINVAL turned multishot off");
    bool closed = false;
    ck_assert_int_eq(rs_conn_close(l, listener_closed, &closed), 0);
    while (!closed && t_now() < end + 5)
        rs_loop_run(loop, RS_RUN_ONCE);
    ck_assert(closed);
    ck_assert_int_eq(rs_loop_free(loop), 0);
}
END_TEST

START_TEST(async_accept_emfile_backs_off)
{
    faults("accept:emfile=first2,accept:enomem=first1");
    int ok;
    double t0 = t_now();
    struct srv srv = echo_run(NULL, 4, 4096, &ok);
    ck_assert_int_eq(srv.accept_errors, 3);
    ck_assert_int_eq(srv.accepted, 4);
    ck_assert_int_eq(ok, 4);
    /* each error paused accepting 50 ms rather than spinning */
    ck_assert_msg(t_now() - t0 >= 0.15 - T_EARLY, "3 accept errors took only %.3f s", t_now() - t0);
    ck_assert_uint_eq(rs__fault_count("accept", "emfile"), 2);
    ck_assert_uint_eq(rs__fault_count("accept", "enomem"), 1);
}
END_TEST

struct sendres {
    int calls;
    ssize_t status[4];
};

static void send_done(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct sendres *r = user;
    if (r->calls < 4)
        r->status[r->calls] = status;
    r->calls++;
}

static void read_err(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    *(ssize_t *)user = n;
}

START_TEST(async_epipe_econnreset_reported)
{
    faults("send:epipe=first1,recv:econnreset=first1");
    rs_loop *l;
    ck_assert_int_eq(rs_loop_new(&l, NULL), 0);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    rs_conn *c;
    ck_assert_int_eq(rs_conn_open(&c, l, sv[0]), 0);
    /* the first send fails whole and sends nothing; the next one goes through alone */
    struct sendres sr = { 0, { 0 } };
    ck_assert_int_eq(rs_conn_send(c, "AAAA", 4, send_done, &sr), 0);
    for (int i = 0; i < 100 && sr.calls < 1; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ck_assert_int_eq(sr.calls, 1);
    ASSERT_ERR(sr.status[0], -EPIPE);
    ck_assert_int_eq(rs_conn_send(c, "BB", 2, send_done, &sr), 0);
    for (int i = 0; i < 100 && sr.calls < 2; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ck_assert_int_eq(sr.status[1], 2);
    char b[8];
    ck_assert_int_eq(recv(sv[1], b, sizeof b, 0), 2);
    ck_assert_int_eq(memcmp(b, "BB", 2), 0);
    /* the receive fails with ECONNRESET before taking anything */
    ssize_t rd = 1;
    ck_assert_int_eq(rs_conn_read_start(c, read_err, &rd), 0);
    for (int i = 0; i < 100 && rd > 0; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ASSERT_ERR(rd, -ECONNRESET);
    bool closed = false;
    ck_assert_int_eq(rs_conn_close(c, listener_closed, &closed), 0);
    for (int i = 0; i < 100 && !closed; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ck_assert(closed);
    ck_assert_int_eq(rs_loop_free(l), 0);
    close(sv[1]);
}
END_TEST

struct got {
    char buf[16];
    size_t n;
    ssize_t err;
};

static void read_into(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct got *g = user;
    if (n <= 0) {
        g->err = n ? n : -1;
        return;
    }
    size_t k = (size_t)n < sizeof g->buf - g->n ? (size_t)n : sizeof g->buf - g->n;
    memcpy(g->buf + g->n, data, k);
    g->n += k;
}

START_TEST(async_enobufs_during_stop)
{
    /* The receive runs dry (-ENOBUFS) while a stop's cancel is on its way, and reading is started
     * again: the stream must go on, not end in an error nobody caused. */
    faults("recv:enobufs=first1");
    rs_loop *l;
    ck_assert_int_eq(rs_loop_new(&l, NULL), 0);
    rs_socket *a, *b;
    t_tcp_pair(AF_INET, &a, &b);
    rs_conn *c;
    ck_assert_int_eq(rs_conn_from_socket(&c, l, b), 0);
    struct got g;
    memset(&g, 0, sizeof g);
    ck_assert_int_eq(rs_conn_read_start(c, read_into, &g), 0);
    ck_assert_int_eq(rs_conn_read_stop(c), 0);
    ck_assert_int_eq(rs_conn_read_start(c, read_into, &g), 0);
    ck_assert_int_eq(rs_sendall(a, "hello", 5, 0), 5);
    for (int i = 0; i < 200 && g.n < 5 && !g.err; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ck_assert_msg(g.err == 0, "the receive ended with %s", rs_err_name((int)g.err));
    ck_assert_uint_eq(g.n, 5);
    ck_assert_int_eq(memcmp(g.buf, "hello", 5), 0);
    if (on_uring())
        injected("recv", "enobufs");
    bool closed = false;
    ck_assert_int_eq(rs_conn_close(c, listener_closed, &closed), 0);
    for (int i = 0; i < 100 && !closed; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ck_assert(closed);
    ck_assert_int_eq(rs_loop_free(l), 0);
    rs_close(a);
}
END_TEST

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The backend's wait fails with ENOMEM 50 times in a row under a blocking recv on an idle
 * socket. The engine's contract (rs__loop_exec): the call cancels its op, backs off rather than
 * spins, and returns the wait's error once the op is reaped. The 5 s socket timeout is only a
 * bound for an engine without the contract (it would return -ETIMEDOUT then, or never). */
START_TEST(wait_enomem_returns)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(c, 5.0), 0);
    faults("wait:enomem=first50");
    char buf[16];
    double cpu0 = thread_cpu(), t0 = t_now();
    ssize_t r = rs_recv(c, buf, sizeof buf, 0);
    double wall = t_now() - t0, cpu = thread_cpu() - cpu0;
    injected("wait", "enomem");
    faults("");
    ck_assert_msg(r == -ENOMEM && wall < 2.0, "rs_recv: %s after %.3f s (want ENOMEM within 2 s)",
                  rs_err_name((int)r), wall);
    /* a return within 20 ms cannot have spun for long; beyond that, waiting must be sleeping */
    ck_assert_msg(wall < 0.02 || cpu < 0.2 * wall, "spun: %.3f s CPU over %.3f s", cpu, wall);
    /* nothing was taken from the socket: it still works */
    ck_assert_int_eq(rs_send(s, "x", 1, 0), 1);
    ck_assert_int_eq(rs_recv(c, buf, sizeof buf, 0), 1);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* The one seconds -> ns conversion (lib/op.c): saturating, never undefined. */
START_TEST(ns_from_seconds_saturates)
{
    ck_assert(rs__ns_from_seconds(NAN) == 0);
    ck_assert(rs__ns_from_seconds(-1.0) == 0);
    ck_assert(rs__ns_from_seconds(-INFINITY) == 0);
    ck_assert(rs__ns_from_seconds(0.0) == 0);
    ck_assert(rs__ns_from_seconds(1.5) == 1500000000);
    ck_assert(rs__ns_from_seconds(1e-10) == 0);
    ck_assert(rs__ns_from_seconds(4.6e9) < RS_NS_MAX);
    ck_assert(rs__ns_from_seconds(4.7e9) == RS_NS_MAX);
    ck_assert(rs__ns_from_seconds(1e300) == RS_NS_MAX);
    ck_assert(rs__ns_from_seconds(INFINITY) == RS_NS_MAX);
    ck_assert(rs__ns_from_seconds(DBL_MAX) == RS_NS_MAX);
    ck_assert(rs__ns_add(RS_NS_MAX, RS_NS_MAX) == RS_DEADLINE_NONE - 1);
    ck_assert(rs__ns_add(RS_DEADLINE_NONE - 5, 10) == RS_DEADLINE_NONE);
    ck_assert(rs__ns_add(100, -5) == 100);
    ck_assert(rs__deadline_from_timeout(-1.0) == RS_DEADLINE_NONE);
    ck_assert(rs__deadline_from_timeout(0.0) == RS_DEADLINE_NOW);
    ck_assert(rs__deadline_from_timeout(NAN) == RS_DEADLINE_NOW);
    ck_assert(rs__deadline_from_timeout(1e300) == RS_DEADLINE_NONE);
    ck_assert(rs__deadline_from_timeout(INFINITY) == RS_DEADLINE_NONE);
    int64_t d = rs__deadline_from_timeout(1.0), now = rs__now();
    ck_assert(d > now && d <= now + 1000000000);
}
END_TEST

/* EAI_SYSTEM takes the errno it is given (the resolver thread's, captured after getaddrinfo),
 * never the caller's. glibc gives no deterministic way to make getaddrinfo itself say
 * EAI_SYSTEM (with no fd free it says EAI_NONAME), so the mapping is tested here. */
START_TEST(gai_err_mapping)
{
    errno = EINTR; /* what the loop thread happens to hold must not matter */
    ck_assert_int_eq(rs__gai_err(EAI_SYSTEM, EMFILE), -EMFILE);
    ck_assert_int_eq(rs__gai_err(EAI_SYSTEM, 0), -EIO);
    ck_assert_int_eq(rs__gai_err(EAI_SYSTEM, -3), -EIO);
    ck_assert_int_eq(rs__gai_err(EAI_NONAME, EMFILE), RS_EAI(EAI_NONAME));
    ck_assert_int_eq(rs__gai_err(EAI_AGAIN, 0), RS_EAI(EAI_AGAIN));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("fault");
    struct {
        const char *name;
        const TTest *t;
    } tests[] = {
        { "spec", spec_errors_reported },
        { "short", short_send_recv },
        { "short_waitall", short_send_recv_waitall },
        { "eintr", eintr_absorbed },
        { "eagain", eagain_absorbed },
        { "eintr_busy_buffer", eintr_send_into_busy_buffer },
        { "eintr_timeout", eintr_keeps_timeout },
        { "epipe", epipe_then_resume },
        { "enomem_econnreset", enomem_econnreset_reported },
        { "accept_emfile", accept_emfile_reported },
        { "regbuf", makefile_regbuf_fail },
        { "makefile_short", makefile_short_fixed },
        { "sendfile", sendfile_short },
        { "async_short", async_short_eintr_eagain },
        { "async_enobufs", async_enobufs_rearms },
        { "async_enobufs_legacy", async_enobufs_legacy },
        { "async_accept_enobufs", async_accept_enobufs },
        { "async_tiny_ring", async_tiny_ring_sqe_full },
        { "multishot_refused", multishot_refused_falls_back },
        { "multishot_own_einval", multishot_probe_keeps_own_einval },
        { "async_emfile", async_accept_emfile_backs_off },
        { "async_errors", async_epipe_econnreset_reported },
        { "async_enobufs_stop", async_enobufs_during_stop },
        { "wait_enomem", wait_enomem_returns },
        { "ns_from_seconds", ns_from_seconds_saturates },
        { "gai_err", gai_err_mapping },
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_add_checked_fixture(tc, t_setup, t_teardown);
        tcase_add_checked_fixture(tc, NULL, report);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, tests[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) { return t_run(make_suite()); }
