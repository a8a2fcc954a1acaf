/* The completion API (async.h) on every backend: echo under 1000 connections, a tiny provided-
 * buffer ring, ordered sends, close with work in flight, read stop/start, back-pressure, timers,
 * EMFILE without spinning, CQ overflow, bad input. Servers run on a loop of the test's thread;
 * their peers are forked children, threads or idle fds, all on raw syscalls, so that a library
 * bug cannot hide on both ends of a connection. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ringsock/async.h>

#include "t.h"

/* ---- data: every stream is a slice of one pseudo-random pattern (wrapping) ------------------- */

#define PAT_LEN (1u << 21) /* > the largest single send below (1.5 MiB) */
static unsigned char pat[PAT_LEN];

static void pat_setup(void) { t_fill_pattern(pat, PAT_LEN, 0x5eed1234u); }

/* The pattern at stream offset off, and how many bytes follow before it wraps. */
static const unsigned char *pat_at(size_t off, size_t *room)
{
    off %= PAT_LEN;
    *room = PAT_LEN - off;
    return pat + off;
}

static bool pat_eq(const void *p, size_t off, size_t len)
{
    const unsigned char *q = p;
    while (len) {
        size_t room;
        const unsigned char *x = pat_at(off, &room);
        size_t k = len < room ? len : room;
        if (memcmp(q, x, k) != 0)
            return false;
        q += k;
        off += k;
        len -= k;
    }
    return true;
}

static uint64_t pat_fnv(size_t off, size_t len)
{
    uint64_t h = T_FNV_INIT;
    while (len) {
        size_t room;
        const unsigned char *x = pat_at(off, &room);
        size_t k = len < room ? len : room;
        h = t_fnv1a(h, x, k);
        off += k;
        len -= k;
    }
    return h;
}

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* ---- loops and bounded running --------------------------------------------------------------- */

/* A loop of the backend this run asked for (opts.backend AUTO honours RINGSOCK_BACKEND). */
static rs_loop *loop_new(unsigned entries, unsigned buf_count, unsigned buf_size)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.entries = entries;
    o.buf_count = buf_count;
    o.buf_size = buf_size;
    rs_loop *l;
    ASSERT_ERR(rs_loop_new(&l, &o), 0);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rs_loop_backend(l), t_wanted_backend());
    return l;
}

static void loop_free(rs_loop *l)
{
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    ASSERT_ERR(rs_loop_free(l), 0);
}

/* A timer that ticks every 10 ms while the loop runs, so that RS_RUN_ONCE returns often enough to
 * see conditions other threads and processes change, and that ends the run at a deadline. */
#define GUARD_TICK 0.01

struct guard {
    rs_timer *t;
    double end;
    bool running, fired, stopping;
};

static void guard_cb(rs_timer *t, int status, void *user)
{
    struct guard *g = user;
    g->running = false;
    if (t_now() >= g->end)
        g->fired = true;
    else if (status == 0 && !g->stopping && rs_timer_start(t, GUARD_TICK, guard_cb, g) == 0)
        g->running = true;
}

static void guard_start(struct guard *g, rs_loop *l, double seconds)
{
    memset(g, 0, sizeof *g);
    g->end = t_now() + seconds;
    ASSERT_ERR(rs_timer_new(&g->t, l), 0);
    ASSERT_ERR(rs_timer_start(g->t, seconds < GUARD_TICK ? seconds : GUARD_TICK, guard_cb, g), 0);
    g->running = true;
}

static void guard_end(struct guard *g, rs_loop *l)
{
    g->stopping = true;
    if (g->running) {
        ASSERT_ERR(rs_timer_stop(g->t), 0);
        for (int i = 0; g->running && i < 1000; i++)
            ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    }
    ck_assert_msg(!g->running, "guard timer: no callback after rs_timer_stop");
    ASSERT_ERR(rs_timer_free(g->t), 0);
}

#define RUN_CAP 20000000L

/* Run loop l until cond holds or secs have passed; ok (a bool lvalue) says which. */
#define RUN_WAIT(l, cond, secs, ok)                                                                 \
    do {                                                                                            \
        struct guard g_;                                                                            \
        guard_start(&g_, (l), (secs));                                                              \
        long n_ = 0;                                                                                \
        int r_ = 0;                                                                                 \
        while (!(cond) && !g_.fired && n_++ < RUN_CAP && (r_ = rs_loop_run((l), RS_RUN_ONCE)) >= 0) \
            ;                                                                                       \
        (ok) = (cond);                                                                              \
        guard_end(&g_, (l));                                                                        \
        ck_assert_msg(r_ >= 0, "rs_loop_run: %s", rs_err_name(r_));                                 \
    } while (0)

/* Run loop l until cond holds; fail if it does not within secs. */
#define RUN_UNTIL(l, cond, secs)                                                    \
    do {                                                                            \
        bool ok__;                                                                  \
        RUN_WAIT(l, cond, secs, ok__);                                              \
        ck_assert_msg(ok__, "still false after %.1f s: %s", (double)(secs), #cond); \
    } while (0)

/* Run loop l for secs. */
static void run_for(rs_loop *l, double secs)
{
    struct guard g;
    guard_start(&g, l, secs);
    for (long n = 0; !g.fired && n < RUN_CAP; n++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    guard_end(&g, l);
}

/* ---- sockets ---------------------------------------------------------------------------------- */

static void set_buf(int fd, int opt, int bytes)
{
    if (bytes)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes), 0);
}

/* A listening TCP socket on 127.0.0.1, port 0 (rcvbuf, if not 0, is inherited by accepted ones). */
static int listen_fd(int backlog, int rcvbuf, struct sockaddr_storage *a, socklen_t *len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    set_buf(fd, SO_RCVBUF, rcvbuf);
    t_loopback(AF_INET, 0, a, len);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)a, *len), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    *len = sizeof *a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)a, len), 0);
    return fd;
}

/* A blocking client connected to a (-1 on failure: also used in children, which cannot assert). */
static int dial(const struct sockaddr_storage *a, socklen_t len, int sndbuf, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if ((sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0) ||
        (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) ||
        connect(fd, (const struct sockaddr *)a, len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static rs_conn *conn_of(rs_loop *l, int fd)
{
    rs_conn *c;
    ASSERT_ERR(rs_conn_open(&c, l, fd), 0);
    return c;
}

/* Socket buffer sizes for pair() (0 = the kernel's default). */
struct bufs {
    int srv_snd, srv_rcv, cli_snd, cli_rcv;
};

/* A connected loopback pair: the server end as a conn of l, the client end a blocking fd. */
static rs_conn *pair(rs_loop *l, int *client, struct bufs b)
{
    struct sockaddr_storage a;
    socklen_t len;
    int lfd = listen_fd(1, b.srv_rcv, &a, &len);
    *client = dial(&a, len, b.cli_snd, b.cli_rcv);
    ck_assert_int_ge(*client, 0);
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(s, 0);
    close(lfd);
    set_buf(s, SO_SNDBUF, b.srv_snd);
    return conn_of(l, s);
}

static void count_close(rs_conn *c, void *user)
{
    (void)c;
    ++*(int *)user;
}

/* Close c and run l until its close callback has run. */
static void close_and_wait(rs_loop *l, rs_conn *c)
{
    int closed = 0;
    ASSERT_ERR(rs_conn_close(c, count_close, &closed), 0);
    RUN_UNTIL(l, closed == 1, 5);
}

/* ---- children --------------------------------------------------------------------------------- */

struct child {
    pid_t pid;
    bool done;
    int status; /* as t_wait_child */
};

/* Fork a child running fn(arg) (its return value is the exit status) with close_fd closed. */
static void spawn(struct child *ch, int (*fn)(void *), void *arg, int close_fd)
{
    fflush(NULL);
    memset(ch, 0, sizeof *ch);
    pid_t parent = getpid();
    ch->pid = fork();
    ck_assert_int_ge(ch->pid, 0);
    if (ch->pid == 0) {
        /* bounded whatever the parent does: gone with a failed test process, or after 30 s */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(20);
        alarm(30);
        if (close_fd >= 0)
            close(close_fd);
        int st = fn(arg);
        /* what the child inherited or left open is not a leak, but fd trackers (valgrind
         * --track-fds) cannot tell: close it all */
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
        _exit(st);
    }
}

/* Whether the child has exited (reaped without waiting). */
static bool child_exited(struct child *ch)
{
    if (ch->done)
        return true;
    int st;
    if (waitpid(ch->pid, &st, WNOHANG) == ch->pid) {
        ch->done = true;
        ch->status = WIFEXITED(st) ? WEXITSTATUS(st) : 256 + WTERMSIG(st);
    }
    return ch->done;
}

/* Whether the child has exited with a failure (then waiting for its work is pointless). */
static bool child_failed(struct child *ch) { return child_exited(ch) && ch->status != 0; }

static void child_reap(struct child *ch, double timeout)
{
    if (!ch->done) {
        ch->status = t_wait_child(ch->pid, timeout);
        ch->done = true;
    }
    ck_assert_msg(ch->status == 0, "client process failed with status %d (see its stderr)", ch->status);
}

/* ---- an echo server on the completion API ----------------------------------------------------- */

struct echo {
    int accepted, eof, closed, errors, first_err;
    size_t rx, max_pending;
};

struct echo_conn {
    struct echo *e;
    bool eof, closing;
};

/* The copy of received bytes a send owns until its callback. */
struct echo_buf {
    struct echo_conn *ec;
    unsigned char data[];
};

static void echo_closed(rs_conn *c, void *user)
{
    (void)c;
    struct echo_conn *ec = user;
    ec->e->closed++;
    free(ec);
}

static void echo_close(rs_conn *c, struct echo_conn *ec)
{
    if (!ec->closing) {
        ec->closing = true;
        ASSERT_ERR(rs_conn_close(c, echo_closed, ec), 0);
    }
}

static void echo_error(struct echo *e, int err)
{
    if (!e->errors++)
        e->first_err = err;
}

static void echo_sent(rs_conn *c, ssize_t status, void *user)
{
    struct echo_buf *b = user;
    struct echo_conn *ec = b->ec;
    free(b);
    if (status < 0 && status != -ECANCELED)
        echo_error(ec->e, (int)status);
    /* the peer's EOF came while echoes were still queued: close once they are out */
    if (ec->eof && rs_conn_send_pending(c) == 0)
        echo_close(c, ec);
}

static void echo_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct echo_conn *ec = user;
    struct echo *e = ec->e;
    ck_assert_msg(!ec->eof && !ec->closing, "read callback (n %zd) after EOF or close", n);
    if (n < 0) {
        echo_error(e, (int)n);
        echo_close(c, ec);
        return;
    }
    if (n == 0) {
        ec->eof = true;
        e->eof++;
        if (rs_conn_send_pending(c) == 0)
            echo_close(c, ec);
        return;
    }
    e->rx += (size_t)n;
    struct echo_buf *b = malloc(sizeof *b + (size_t)n);
    ck_assert_ptr_nonnull(b);
    b->ec = ec;
    memcpy(b->data, data, (size_t)n);
    int r = rs_conn_send(c, b->data, (size_t)n, echo_sent, b);
    if (r < 0)
        free(b);
    ASSERT_ERR(r, 0);
    size_t p = rs_conn_send_pending(c);
    if (p > e->max_pending)
        e->max_pending = p;
}

static void echo_attach(struct echo *e, rs_conn *c)
{
    struct echo_conn *ec = calloc(1, sizeof *ec);
    ck_assert_ptr_nonnull(ec);
    ec->e = e;
    ASSERT_ERR(rs_conn_read_start(c, echo_read, ec), 0);
}

static void echo_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct echo *e = user;
    ck_assert_msg(status >= 0 && c, "accept callback: %s", rs_err_name(status));
    e->accepted++;
    echo_attach(e, c);
}

/* ---- a verifying sink: each connection sends its index (4 bytes, LE), then its stream ---------- */

#define VMAX 256

struct vsrv {
    size_t expect; /* stream bytes per connection, after the index */
    int accepted, closed, errors, bad;
    char why[200];
    size_t got[VMAX];
    uint64_t fnv[VMAX];
    int eofs[VMAX];
};

struct vconn {
    struct vsrv *s;
    int idx, hdr_got;
    unsigned char hdr[4];
    size_t got;
    uint64_t fnv;
    bool eof;
};

static size_t stream_off(int idx) { return (size_t)idx * 40009u; }

static void v_bad(struct vsrv *s, const char *why, int idx, size_t at)
{
    if (!s->bad++)
        snprintf(s->why, sizeof s->why, "connection %d at byte %zu: %s", idx, at, why);
}

static void v_closed(rs_conn *c, void *user)
{
    (void)c;
    struct vconn *v = user;
    struct vsrv *s = v->s;
    s->closed++;
    if (v->idx >= 0) {
        s->got[v->idx] = v->got;
        s->fnv[v->idx] = v->fnv;
        s->eofs[v->idx] += v->eof;
    } else {
        v_bad(s, "closed before its index arrived", -1, 0);
    }
    free(v);
}

static void v_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct vconn *v = user;
    struct vsrv *s = v->s;
    if (v->eof)
        v_bad(s, "read callback after EOF", v->idx, v->got);
    if (n <= 0) {
        if (n == 0)
            v->eof = true;
        else if (!s->errors++)
            v_bad(s, rs_err_name((int)n), v->idx, v->got);
        ASSERT_ERR(rs_conn_close(c, v_closed, v), 0);
        return;
    }
    const unsigned char *p = data;
    size_t len = (size_t)n;
    while (v->hdr_got < 4 && len) {
        v->hdr[v->hdr_got++] = *p++;
        len--;
        if (v->hdr_got == 4) {
            v->idx = (int)(v->hdr[0] | v->hdr[1] << 8 | v->hdr[2] << 16 | (uint32_t)v->hdr[3] << 24);
            if (v->idx < 0 || v->idx >= VMAX) {
                v_bad(s, "index out of range", v->idx, 0);
                v->idx = -1;
            }
        }
    }
    if (!len || v->idx < 0)
        return;
    if (v->got + len > s->expect)
        v_bad(s, "more bytes than were sent", v->idx, v->got);
    else if (!pat_eq(p, stream_off(v->idx) + v->got, len))
        v_bad(s, "bytes differ from what was sent (lost or reordered)", v->idx, v->got);
    v->fnv = t_fnv1a(v->fnv, p, len);
    v->got += len;
}

static void v_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct vsrv *s = user;
    ck_assert_msg(status >= 0 && c, "accept callback: %s", rs_err_name(status));
    struct vconn *v = calloc(1, sizeof *v);
    ck_assert_ptr_nonnull(v);
    v->s = s;
    v->idx = -1;
    v->fnv = T_FNV_INIT;
    s->accepted++;
    ASSERT_ERR(rs_conn_read_start(c, v_read, v), 0);
}

static void v_check(const struct vsrv *s, int n)
{
    ck_assert_msg(s->bad == 0, "%d problems, first: %s", s->bad, s->why);
    ck_assert_int_eq(s->errors, 0);
    ck_assert_int_eq(s->accepted, n);
    ck_assert_int_eq(s->closed, n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(s->got[i] == s->expect, "connection %d: %zu of %zu bytes", i, s->got[i], s->expect);
        ck_assert_msg(s->fnv[i] == pat_fnv(stream_off(i), s->expect), "connection %d: checksum differs", i);
        ck_assert_msg(s->eofs[i] == 1, "connection %d: %d EOFs", i, s->eofs[i]);
    }
}

/* Child: n connections each send their index and `bytes` of their stream in pieces of up to
 * `piece` bytes, then close. With go_fd, all connect first, write a byte to ready_fd, and wait
 * for a byte on go_fd before sending anything (so that everything arrives at once). */
struct flood {
    struct sockaddr_storage a;
    socklen_t len;
    int n;
    size_t bytes, piece;
    int ready_fd, go_fd;
};

static int flood_clients(void *arg)
{
    struct flood *f = arg;
    struct pollfd *pf = calloc((size_t)f->n, sizeof *pf);
    size_t *sent = calloc((size_t)f->n, sizeof *sent);
    if (!pf || !sent)
        return 10;
    for (int i = 0; i < f->n; i++) {
        pf[i].fd = dial(&f->a, f->len, 0, 0);
        if (pf[i].fd < 0 || fcntl(pf[i].fd, F_SETFL, O_NONBLOCK) < 0) {
            fprintf(stderr, "flood client %d: connect: %s\n", i, strerror(errno));
            return 11;
        }
        pf[i].events = POLLOUT;
    }
    if (f->go_fd >= 0) {
        char b = 'r';
        if (write(f->ready_fd, &b, 1) != 1 || read(f->go_fd, &b, 1) != 1)
            return 12;
    }
    size_t total = 4 + f->bytes;
    int left = f->n;
    double end = t_now() + 20;
    while (left > 0) {
        if (t_now() > end) {
            fprintf(stderr, "flood clients: %d connections still sending after 20 s\n", left);
            return 13;
        }
        if (poll(pf, (nfds_t)f->n, 100) < 0 && errno != EINTR)
            return 14;
        for (int i = 0; i < f->n; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            if (pf[i].revents & (POLLERR | POLLHUP)) {
                fprintf(stderr, "flood client %d: the server hung up after %zu bytes\n", i, sent[i]);
                return 15;
            }
            unsigned char hdr[4] = { (unsigned char)i, (unsigned char)(i >> 8), (unsigned char)(i >> 16), 0 };
            const void *p;
            size_t k;
            if (sent[i] < 4) {
                p = hdr + sent[i];
                k = 4 - sent[i];
            } else {
                size_t room;
                p = pat_at(stream_off(i) + sent[i] - 4, &room);
                k = total - sent[i];
                if (k > room)
                    k = room;
                if (k > f->piece)
                    k = f->piece;
            }
            ssize_t w = send(pf[i].fd, p, k, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "flood client %d: send: %s\n", i, strerror(errno));
                return 16;
            }
            if (w > 0)
                sent[i] += (size_t)w;
            if (sent[i] == total) {
                close(pf[i].fd);
                pf[i].fd = -1;
                left--;
            }
        }
    }
    free(pf);
    free(sent);
    return 0;
}

/* ---- echo with 1000 connections --------------------------------------------------------------- */

#define ECHO_CONNS 1000
#define ECHO_MAX_BYTES (256 * 1024)

struct echo_clients_arg {
    struct sockaddr_storage a;
    socklen_t len;
    int n;
};

struct ecl {
    size_t off, total, sent, rcvd;
};

#define ECHO_SEED 0xec40u

/* What connection i sends: its length and where in the pattern it starts. */
static void echo_plan(uint32_t *seed, size_t *total, size_t *off)
{
    *total = 1 + rnd(seed) % ECHO_MAX_BYTES;
    *off = rnd(seed) % PAT_LEN;
}

/* Child: n non-blocking connections at once, each sending its slice of the pattern in random
 * pieces while checking the echo byte for byte; a connection closes once all came back. */
static int echo_clients(void *arg)
{
    struct echo_clients_arg *ea = arg;
    int n = ea->n;
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    struct ecl *st = calloc((size_t)n, sizeof *st);
    unsigned char *buf = malloc(65536);
    if (!pf || !st || !buf)
        return 10;
    uint32_t seed = ECHO_SEED;
    for (int i = 0; i < n; i++) {
        echo_plan(&seed, &st[i].total, &st[i].off);
        pf[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (pf[i].fd < 0 ||
            (connect(pf[i].fd, (struct sockaddr *)&ea->a, ea->len) < 0 && errno != EINPROGRESS)) {
            fprintf(stderr, "echo client %d: connect: %s\n", i, strerror(errno));
            return 11;
        }
    }
    int left = n;
    double end = t_now() + 25;
    while (left > 0) {
        if (t_now() > end) {
            fprintf(stderr, "echo clients: %d connections unfinished after 25 s\n", left);
            return 13;
        }
        for (int i = 0; i < n; i++)
            pf[i].events = (short)(POLLIN | (st[i].sent < st[i].total ? POLLOUT : 0));
        if (poll(pf, (nfds_t)n, 1000) < 0 && errno != EINTR)
            return 14;
        for (int i = 0; i < n; i++) {
            struct ecl *e = &st[i];
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            if ((pf[i].revents & POLLOUT) && e->sent < e->total) {
                size_t room;
                const unsigned char *p = pat_at(e->off + e->sent, &room);
                size_t k = 1 + rnd(&seed) % 16384;
                if (k > e->total - e->sent)
                    k = e->total - e->sent;
                if (k > room)
                    k = room;
                ssize_t w = send(pf[i].fd, p, k, MSG_NOSIGNAL);
                if (w > 0)
                    e->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    fprintf(stderr, "echo client %d: send: %s\n", i, strerror(errno));
                    return 16;
                }
            }
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                ssize_t m = recv(pf[i].fd, buf, 65536, 0);
                if (m < 0) {
                    if (errno == EAGAIN || errno == EINTR)
                        continue;
                    fprintf(stderr, "echo client %d: recv: %s\n", i, strerror(errno));
                    return 17;
                }
                if (m == 0) {
                    fprintf(stderr, "echo client %d: EOF after %zu of %zu bytes\n", i, e->rcvd, e->total);
                    return 18;
                }
                if (e->rcvd + (size_t)m > e->sent || !pat_eq(buf, e->off + e->rcvd, (size_t)m)) {
                    fprintf(stderr, "echo client %d: wrong echo at byte %zu\n", i, e->rcvd);
                    return 19;
                }
                e->rcvd += (size_t)m;
                if (e->rcvd == e->total) {
                    close(pf[i].fd);
                    pf[i].fd = -1;
                    left--;
                }
            }
        }
    }
    free(pf);
    free(st);
    free(buf);
    return 0;
}

START_TEST(echo_1000_connections_checksummed)
{
    struct echo_clients_arg ea = { .n = ECHO_CONNS };
    int lfd = listen_fd(4096, 0, &ea.a, &ea.len);
    double t0 = t_now();
    struct child ch;
    spawn(&ch, echo_clients, &ea, lfd);

    rs_loop *l = loop_new(0, 0, 0);
    rs_conn *lc = conn_of(l, lfd);
    struct echo e = { 0 };
    ASSERT_ERR(rs_conn_accept_start(lc, echo_accept, &e), 0);
    /* the child exiting early (a wrong echo) closes its connections: we stop there too */
    RUN_UNTIL(l, e.closed == ECHO_CONNS || (child_failed(&ch) && e.closed == e.accepted), 25);
    child_reap(&ch, 5);
    double took = t_now() - t0;
    ck_assert_msg(e.errors == 0, "%d errors, first %s", e.errors, rs_err_name(e.first_err));
    ck_assert_int_eq(e.accepted, ECHO_CONNS);
    ck_assert_int_eq(e.eof, ECHO_CONNS);
    ck_assert_int_eq(e.closed, ECHO_CONNS);
    size_t total = 0, n, off;
    uint32_t seed = ECHO_SEED;
    for (int i = 0; i < ECHO_CONNS; i++, total += n)
        echo_plan(&seed, &n, &off);
    ck_assert_uint_eq(e.rx, total);
    /* only the listener's accept is left */
    ck_assert_uint_eq(rs_loop_pending(l), 1);
    close_and_wait(l, lc);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    loop_free(l);
    ck_assert_msg(took < 10, "1000 echo connections took %.1f s", took);
}
END_TEST

/* ---- a tiny provided-buffer ring ------------------------------------------------------------- */

#define FLOOD_CONNS 32

START_TEST(tiny_buffer_ring_enobufs_no_loss)
{
    static struct vsrv s;
    s.expect = 256 * 1024;
    struct flood f = { .n = FLOOD_CONNS, .bytes = s.expect, .piece = 65536, .ready_fd = -1, .go_fd = -1 };
    int lfd = listen_fd(64, 0, &f.a, &f.len);
    struct child ch;
    spawn(&ch, flood_clients, &f, lfd);

    /* 4 buffers of 256 bytes for 32 connections: io_uring runs out (-ENOBUFS) all the time */
    rs_loop *l = loop_new(0, 4, 256);
    rs_conn *lc = conn_of(l, lfd);
    ASSERT_ERR(rs_conn_accept_start(lc, v_accept, &s), 0);
    RUN_UNTIL(l, s.closed == FLOOD_CONNS || child_failed(&ch), 25);
    child_reap(&ch, 5);
    v_check(&s, FLOOD_CONNS);
    struct rs_loop_stats st;
    ASSERT_ERR(rs_loop_stats(l, &st), 0);
    if (rs_loop_features(l) & RS_FEAT_MULTISHOT_RECV) {
        /* under that pressure the ring grew (4 -> 4+8 -> 4+8+16), and stopped at 8x the 4 asked */
        ck_assert_msg(st.recv_bufs > 4 && st.recv_bufs <= 32, "recv_bufs %llu", st.recv_bufs);
    } else {
        ck_assert_uint_eq(st.recv_bufs, 0);
    }
    ck_assert_uint_eq(rs_loop_pending(l), 1);
    close_and_wait(l, lc);
    loop_free(l);
}
END_TEST

/* What the loop says it was granted matches the backend, and RINGSOCK_URING_LEGACY (the suite's
 * uring-legacy run) takes the multishot operations away without changing any other test. */
/* ---- half-close ---- */

static void late_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    *(ssize_t *)user = status;
}

struct halfclose {
    int sends_done, shut_calls, shut_status, order_bad, eof;
    char got[64];
    size_t got_len;
};

static void hc_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct halfclose *h = user;
    if (status != 5 || h->shut_calls)
        h->order_bad++;
    h->sends_done++;
}

static void hc_shut(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct halfclose *h = user;
    if (h->sends_done != 3)
        h->order_bad++;
    h->shut_calls++;
    h->shut_status = (int)status;
}

static void hc_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct halfclose *h = user;
    if (n > 0 && h->got_len + (size_t)n <= sizeof h->got) {
        memcpy(h->got + h->got_len, data, (size_t)n);
        h->got_len += (size_t)n;
    } else if (n == 0) {
        h->eof++;
    }
}

/* rs_conn_shutdown: after the three queued sends, in order; the peer reads them then EOF, and can
 * still answer, which we receive; a send after the shutdown fails. */
START_TEST(conn_shutdown_half_close_after_queued_sends)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    static struct halfclose h;
    memset(&h, 0, sizeof h);
    ASSERT_ERR(rs_conn_read_start(c, hc_read, &h), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_ERR(rs_conn_send(c, "hello", 5, hc_sent, &h), 0);
    ASSERT_ERR(rs_conn_shutdown(c, hc_shut, &h), 0);
    ck_assert_int_eq(h.shut_calls, 0); /* never inside the call */
    RUN_UNTIL(l, h.shut_calls == 1, 5);
    ck_assert_int_eq(h.shut_status, 0);
    ck_assert_int_eq(h.order_bad, 0);
    /* the peer: 15 bytes, then EOF */
    char buf[32];
    size_t got = 0;
    for (int i = 0; i < 100 && got < sizeof buf; i++) {
        ssize_t n = recv(cfd, buf + got, sizeof buf - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    ck_assert_uint_eq(got, 15);
    ck_assert_int_eq(memcmp(buf, "hellohellohello", 15), 0);
    /* our side still receives */
    ck_assert_int_eq(send(cfd, "bye", 3, 0), 3);
    RUN_UNTIL(l, h.got_len == 3, 5);
    ck_assert_int_eq(memcmp(h.got, "bye", 3), 0);
    /* a send after the shutdown: the stream is closed for writing */
    static ssize_t late = 1;
    late = 1;
    ASSERT_ERR(rs_conn_send(c, "x", 1, late_sent, &late), 0);
    RUN_UNTIL(l, late != 1, 5);
    ck_assert_int_eq(late, -EPIPE);
    close(cfd);
    RUN_UNTIL(l, h.eof == 1, 5);
    close_and_wait(l, c);
    loop_free(l);
}
END_TEST

static void never_cb(rs_conn *c, int status, void *user)
{
    (void)c;
    (void)status;
    (void)user;
    ck_abort_msg("a refused rs_conn_connect called back");
}

/* Non-blocking mode (timeout 0) means nothing when the loop does the waiting: refused, no call. */
START_TEST(conn_connect_timeout_zero_refused)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 0;
    ck_assert_int_eq(rs_conn_connect(l, "127.0.0.1", "9", &o, never_cb, NULL), -EINVAL);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    loop_free(l);
}
END_TEST

START_TEST(features_say_what_was_granted)
{
    rs_loop *l = loop_new(0, 0, 0);
    unsigned f = rs_loop_features(l);
    ck_assert_uint_eq(rs_loop_features(NULL), 0);
    if (rs_loop_backend(l) != RS_BACKEND_URING) {
        ck_assert_uint_eq(f, 0);
    } else {
        const char *legacy = getenv("RINGSOCK_URING_LEGACY");
        bool want_ms = !(legacy && *legacy && strcmp(legacy, "0") != 0);
        /* this kernel (6.x) grants DEFER_TASKRUN; COOP is only the fallback, never both */
        ck_assert_msg((f & RS_FEAT_DEFER_TASKRUN) && !(f & RS_FEAT_COOP_TASKRUN), "features %#x", f);
        ck_assert_msg(f & RS_FEAT_CQ_NODROP, "features %#x", f);
        ck_assert_msg(f & RS_FEAT_LINK_TIMEOUT, "features %#x", f);
        ck_assert_msg(!(f & RS_FEAT_SQPOLL), "features %#x", f);
        ck_assert_msg(!!(f & RS_FEAT_MULTISHOT_RECV) == want_ms &&
                          !!(f & RS_FEAT_MULTISHOT_ACCEPT) == want_ms,
                      "features %#x, legacy %s", f, legacy ? legacy : "unset");
    }
    loop_free(l);
}
END_TEST

/* ---- ordered sends ---------------------------------------------------------------------------- */

#define ORDER_SENDS 1000

struct order {
    size_t len[ORDER_SENDS];
    int calls, next, bad;
    char why[160];
};

struct order_req {
    struct order *o;
    int i;
};

static void order_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct order_req *q = user;
    struct order *o = q->o;
    o->calls++;
    if (q->i != o->next && !o->bad++)
        snprintf(o->why, sizeof o->why, "send %d completed when %d was due", q->i, o->next);
    else if (status != (ssize_t)o->len[q->i] && !o->bad++)
        snprintf(o->why, sizeof o->why, "send %d: status %zd, length %zu", q->i, status, o->len[q->i]);
    o->next = q->i + 1;
}

/* A peer thread: asleep at first, then a byte at a time, then as fast as it can until EOF,
 * checking what arrives against the pattern. */
struct reader {
    int fd;
    size_t got;
    int bad;
};

static void *slow_reader(void *arg)
{
    struct reader *r = arg;
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static unsigned char buf[65536];
    t_sleep(0.3);
    for (;;) {
        size_t want = r->got < 200 ? 1 : sizeof buf;
        ssize_t n = recv(r->fd, buf, want, 0);
        if (n <= 0) {
            if (n < 0)
                r->bad++;
            break;
        }
        if (!pat_eq(buf, r->got, (size_t)n))
            r->bad++;
        r->got += (size_t)n;
        if (r->got < 200)
            t_sleep(0.001);
    }
    return NULL;
}

START_TEST(sends_complete_in_order)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    /* small buffers: most of the queue stays with us while the peer dawdles */
    rs_conn *c = pair(l, &cfd, (struct bufs){ .srv_snd = 4096, .cli_rcv = 4096 });
    struct reader rd = { .fd = cfd };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &rd), 0);

    static struct order o;
    static struct order_req req[ORDER_SENDS];
    uint32_t seed = 77;
    size_t off = 0;
    for (int i = 0; i < ORDER_SENDS; i++) {
        o.len[i] = i % 100 == 50 ? 0 : 1 + rnd(&seed) % 512; /* a few empty ones too */
        req[i] = (struct order_req){ &o, i };
        ASSERT_ERR(rs_conn_send(c, pat + off, o.len[i], order_sent, &req[i]), 0);
        off += o.len[i];
    }
    ck_assert_int_eq(o.calls, 0); /* never inside rs_conn_send */
    ck_assert_uint_eq(rs_conn_send_pending(c), off);
    run_for(l, 0.1);
    ck_assert_msg(o.calls < ORDER_SENDS, "all sends done while the peer slept: the test shows nothing");
    ck_assert_uint_gt(rs_conn_send_pending(c), 0);
    RUN_UNTIL(l, o.calls == ORDER_SENDS, 15);
    ck_assert_msg(o.bad == 0, "%s", o.why);
    ck_assert_uint_eq(rs_conn_send_pending(c), 0);
    close_and_wait(l, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rd.bad, 0);
    ck_assert_uint_eq(rd.got, off);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- close with sends in flight --------------------------------------------------------------- */

#define CLOSE_SENDS 200
#define CLOSE_CHUNK (16 * 1024)

struct closing {
    int seq;                /* callbacks so far, of any kind */
    int calls[CLOSE_SENDS]; /* per send */
    ssize_t status[CLOSE_SENDS];
    int seq_of[CLOSE_SENDS];
    int close_seq, closes;
};

struct closing_req {
    struct closing *s;
    int i;
};

static void closing_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct closing_req *q = user;
    q->s->calls[q->i]++;
    q->s->status[q->i] = status;
    q->s->seq_of[q->i] = ++q->s->seq;
}

static void closing_closed(rs_conn *c, void *user)
{
    (void)c;
    struct closing *s = user;
    s->closes++;
    s->close_seq = ++s->seq;
}

START_TEST(close_with_sends_in_flight)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd; /* a peer that never reads */
    rs_conn *c = pair(l, &cfd, (struct bufs){ .srv_snd = 16384, .cli_rcv = 16384 });
    static struct closing s;
    static struct closing_req req[CLOSE_SENDS];
    for (int i = 0; i < CLOSE_SENDS; i++) {
        req[i] = (struct closing_req){ &s, i };
        ASSERT_ERR(rs_conn_send(c, pat + (size_t)i * 1024, CLOSE_CHUNK, closing_sent, &req[i]), 0);
    }
    run_for(l, 0.2); /* the socket buffers fill up; the rest stays queued */
    int before_close = s.seq;
    ck_assert_int_lt(before_close, CLOSE_SENDS);
    int fds = t_fd_count();
    ASSERT_ERR(rs_conn_close(c, closing_closed, &s), 0);
    ck_assert_int_eq(s.seq, before_close); /* no callback inside rs_conn_close */
    RUN_UNTIL(l, s.closes == 1, 5);
    run_for(l, 0.05); /* nothing more may come */
    ck_assert_int_eq(s.closes, 1);
    int cancelled = 0;
    for (int i = 0; i < CLOSE_SENDS; i++) {
        ck_assert_msg(s.calls[i] == 1, "send %d: %d callbacks", i, s.calls[i]);
        ck_assert_msg(s.seq_of[i] < s.close_seq, "send %d's callback came after the close callback", i);
        if (i > 0)
            ck_assert_msg(s.seq_of[i] > s.seq_of[i - 1], "send %d's callback before send %d's", i, i - 1);
        if (s.status[i] == -ECANCELED) {
            cancelled++;
        } else {
            ck_assert_msg(s.status[i] == CLOSE_CHUNK, "send %d: status %zd (%s)", i, s.status[i],
                          rs_err_name((int)s.status[i]));
            ck_assert_msg(cancelled == 0, "send %d completed after an earlier one was cancelled", i);
        }
    }
    ck_assert_int_gt(cancelled, 0);
    ck_assert_int_eq(t_fd_count(), fds - 1); /* the conn's fd is closed */
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- close cancels read and accept ------------------------------------------------------------ */

struct cc {
    bool closing;
    int reads, accepts, after_close, closes, acc_closed;
    size_t got;
};

static void cc_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct cc *s = user;
    if (s->closing)
        s->after_close++;
    s->reads++;
    if (n > 0)
        s->got += (size_t)n;
}

static void cc_acc_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct cc *)user)->acc_closed++;
}

static void cc_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct cc *s = user;
    if (s->closing)
        s->after_close++;
    s->accepts++;
    ck_assert_msg(status >= 0 && c, "accept callback: %s", rs_err_name(status));
    ASSERT_ERR(rs_conn_close(c, cc_acc_closed, s), 0);
}

static void cc_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct cc *)user)->closes++;
}

START_TEST(close_cancels_read_and_accept)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct sockaddr_storage a;
    socklen_t len;
    rs_conn *lc = conn_of(l, listen_fd(16, 0, &a, &len));
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    struct cc s = { 0 };
    ASSERT_ERR(rs_conn_accept_start(lc, cc_accept, &s), 0);
    ASSERT_ERR(rs_conn_read_start(c, cc_read, &s), 0);

    int k1 = dial(&a, len, 0, 0);
    ck_assert_int_ge(k1, 0);
    ck_assert_int_eq(send(cfd, "x", 1, MSG_NOSIGNAL), 1);
    RUN_UNTIL(l, s.accepts == 1 && s.got == 1 && s.acc_closed == 1, 5);

    /* work arrives that nobody has looked at yet, then both are closed */
    int k2 = dial(&a, len, 0, 0);
    ck_assert_int_ge(k2, 0);
    ck_assert_int_eq(send(cfd, "late", 4, MSG_NOSIGNAL), 4);
    t_sleep(0.05);
    s.closing = true;
    ASSERT_ERR(rs_conn_close(c, cc_closed, &s), 0);
    ASSERT_ERR(rs_conn_close(lc, cc_closed, &s), 0);
    RUN_UNTIL(l, s.closes == 2, 5);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    run_for(l, 0.1);
    ck_assert_msg(s.after_close == 0, "%d read/accept callbacks after rs_conn_close", s.after_close);
    ck_assert_int_eq(s.closes, 2);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    close(k1);
    close(k2);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- read stop / start ------------------------------------------------------------------------ */

struct rds {
    size_t got;
    int calls, errors, first_err, bad;
    size_t stop_at; /* read_stop from the callback once this many bytes arrived (0: never) */
    bool stopped;
};

static void rds_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct rds *s = user;
    s->calls++;
    if (s->stopped)
        s->bad++; /* a callback after read_stop */
    if (n <= 0) {
        if (!s->errors++)
            s->first_err = (int)n;
        return;
    }
    if (!pat_eq(data, s->got, (size_t)n))
        s->bad++;
    s->got += (size_t)n;
    if (s->stop_at && s->got >= s->stop_at) {
        s->stop_at = 0;
        s->stopped = true;
        ASSERT_ERR(rs_conn_read_stop(c), 0);
    }
}

static void send_pat(int fd, size_t off, size_t len)
{
    while (len) {
        size_t room;
        const unsigned char *p = pat_at(off, &room);
        ssize_t w = send(fd, p, len < room ? len : room, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        off += (size_t)w;
        len -= (size_t)w;
    }
}

START_TEST(read_stop_then_start)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    struct rds s = { 0 };
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    send_pat(cfd, 0, 1000);
    RUN_UNTIL(l, s.got == 1000, 5);

    ASSERT_ERR(rs_conn_read_stop(c), 0);
    s.stopped = true;
    send_pat(cfd, 1000, 3000); /* while stopped */
    run_for(l, 0.2);
    ck_assert_int_eq(s.bad, 0);
    ck_assert_uint_eq(s.got, 1000);

    s.stopped = false;
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    RUN_UNTIL(l, s.got >= 4000 || s.errors, 5);
    ck_assert_msg(s.errors == 0, "read callback error %s", rs_err_name(s.first_err));
    ck_assert_int_eq(s.bad, 0);
    ck_assert_uint_eq(s.got, 4000);
    close_and_wait(l, c);
    close(cfd);
    loop_free(l);
}
END_TEST

/* read_stop from inside the read callback while more data is already on its way (a pause), then
 * read_start later: nothing received in between may be lost. */
START_TEST(read_stop_in_callback_loses_nothing)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    /* buffers big enough that all of it is sent (blocking) before the loop runs */
    rs_conn *c = pair(l, &cfd, (struct bufs){ .srv_rcv = 1 << 20, .cli_snd = 1 << 20 });
    struct rds s = { .stop_at = 1 };
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    size_t total = 256 * 1024;
    send_pat(cfd, 0, total);
    RUN_UNTIL(l, s.stopped, 5);
    run_for(l, 0.2);
    ck_assert_int_eq(s.bad, 0);
    size_t at_stop = s.got;
    s.stopped = false;
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    bool ok;
    RUN_WAIT(l, s.got >= total || s.errors || s.bad, 3, ok);
    ck_assert_msg(s.errors == 0, "read callback error %s", rs_err_name(s.first_err));
    ck_assert_msg(ok && s.bad == 0,
                  "read_stop in the callback after %zu bytes, read_start later: %zu of %zu bytes arrived, %s",
                  at_stop, s.got, total,
                  s.bad ? "then wrong ones (some were lost)" : "then nothing (the rest was lost)");
    ck_assert_uint_eq(s.got, total);
    close_and_wait(l, c);
    close(cfd);
    loop_free(l);
}
END_TEST

/* read_stop and read_start again before the loop has run (libuv allows it): reading goes on. */
START_TEST(read_stop_start_same_turn)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    struct rds s = { 0 };
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    send_pat(cfd, 0, 100);
    RUN_UNTIL(l, s.got == 100, 5);
    ASSERT_ERR(rs_conn_read_stop(c), 0);
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    send_pat(cfd, 100, 100);
    RUN_UNTIL(l, s.got >= 200 || s.errors, 5);
    ck_assert_msg(s.errors == 0, "read callback got %s after read_stop + read_start",
                  rs_err_name(s.first_err));
    ck_assert_int_eq(s.bad, 0);
    ck_assert_uint_eq(s.got, 200);
    close_and_wait(l, c);
    close(cfd);
    loop_free(l);
}
END_TEST

static void count_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    ck_assert_msg(status > 0, "send completed with %s", rs_err_name((int)status));
    ++*(int *)user;
}

/* One rs_conn_send above RS_CONN_SEND_HIGH that the kernel takes whole at once (big socket
 * buffers): reading pauses for it and must simply resume once it has completed. */
START_TEST(large_send_does_not_end_reading)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    int big_buf = 8 << 20;
    /* FORCE (root) goes past net.core.wmem_max; without it the send is short, which is fine too */
    if (setsockopt(rs_conn_fd(c), SOL_SOCKET, SO_SNDBUFFORCE, &big_buf, sizeof big_buf) < 0)
        set_buf(rs_conn_fd(c), SO_SNDBUF, big_buf);
    struct rds s = { 0 };
    ASSERT_ERR(rs_conn_read_start(c, rds_read, &s), 0);
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_NOWAIT), 0);
    size_t big = RS_CONN_SEND_HIGH + RS_CONN_SEND_HIGH / 2;
    int sent = 0;
    ASSERT_ERR(rs_conn_send(c, pat, big, count_sent, &sent), 0);
    struct reader rd = { .fd = cfd };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &rd), 0);
    RUN_UNTIL(l, sent == 1, 5);
    ck_assert_uint_eq(rs_conn_send_pending(c), 0);
    /* the peer speaks: we must hear it */
    send_pat(cfd, 0, 100);
    bool ok;
    RUN_WAIT(l, s.got >= 100 || s.errors, 2, ok);
    ck_assert_msg(s.errors == 0, "the read callback got %s once a %zu-byte send had completed",
                  rs_err_name(s.first_err), big);
    ck_assert_msg(ok, "nothing read after a %zu-byte send completed (%zu bytes)", big, s.got);
    ck_assert_int_eq(s.bad, 0);
    ck_assert_uint_eq(s.got, 100);
    close_and_wait(l, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rd.bad, 0);
    ck_assert_uint_eq(rd.got, big);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- back-pressure ---------------------------------------------------------------------------- */

#define BP_TOTAL (4u << 20)

/* A peer thread: floods the echo server without reading until its sends make no progress for
 * 0.5 s (phase 1), waits for the go (phase 2), then reads every echo while sending the rest,
 * shuts its side down and reads to EOF (phase 3). */
struct bp {
    int fd;
    _Atomic int phase;
    size_t sent_at_stall, sent, echoed;
    int fail;
    char why[160];
};

static void *bp_peer(void *arg)
{
    struct bp *b = arg;
    static unsigned char buf[65536];
    fcntl(b->fd, F_SETFL, O_NONBLOCK);
    double last = t_now();
    while (b->sent < BP_TOTAL) {
        size_t room;
        const unsigned char *p = pat_at(b->sent, &room);
        size_t k = BP_TOTAL - b->sent;
        k = k < room ? k : room;
        k = k < 65536 ? k : 65536;
        ssize_t w = send(b->fd, p, k, MSG_NOSIGNAL);
        if (w > 0) {
            b->sent += (size_t)w;
            last = t_now();
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(b->why, sizeof b->why, "send: %s", strerror(errno));
            b->fail = 1;
            break;
        }
        if (t_now() - last > 0.5)
            break;
        struct pollfd pf = { .fd = b->fd, .events = POLLOUT };
        poll(&pf, 1, 20);
    }
    b->sent_at_stall = b->sent;
    atomic_store(&b->phase, 1);
    for (double end = t_now() + 20; atomic_load(&b->phase) != 2 && t_now() < end;)
        t_sleep(0.005);
    bool shut = false, eof = false;
    double end = t_now() + 20;
    while (!b->fail && !eof && t_now() < end) {
        if (b->sent == BP_TOTAL && !shut) {
            shutdown(b->fd, SHUT_WR);
            shut = true;
        }
        struct pollfd pf = { .fd = b->fd, .events = (short)(POLLIN | (b->sent < BP_TOTAL ? POLLOUT : 0)) };
        poll(&pf, 1, 100);
        if ((pf.revents & POLLOUT) && b->sent < BP_TOTAL) {
            size_t room;
            const unsigned char *p = pat_at(b->sent, &room);
            size_t k = BP_TOTAL - b->sent;
            k = k < room ? k : room;
            ssize_t w = send(b->fd, p, k, MSG_NOSIGNAL);
            if (w > 0)
                b->sent += (size_t)w;
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(b->fd, buf, sizeof buf, 0);
            if (n == 0) {
                eof = true;
            } else if (n > 0) {
                if (b->echoed + (size_t)n > b->sent || !pat_eq(buf, b->echoed, (size_t)n)) {
                    snprintf(b->why, sizeof b->why, "wrong echo at byte %zu", b->echoed);
                    b->fail = 1;
                }
                b->echoed += (size_t)n;
            } else if (errno != EAGAIN && errno != EINTR) {
                snprintf(b->why, sizeof b->why, "recv: %s", strerror(errno));
                b->fail = 1;
            }
        }
    }
    if (!b->fail && !eof) {
        snprintf(b->why, sizeof b->why, "no EOF: %zu sent, %zu echoed", b->sent, b->echoed);
        b->fail = 1;
    }
    atomic_store(&b->phase, 3);
    return NULL;
}

START_TEST(backpressure_pauses_reading)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    /* small socket buffers, so that the kernel holds little and the test is about our queue */
    rs_conn *c = pair(
        l, &cfd, (struct bufs){ .srv_snd = 65536, .srv_rcv = 65536, .cli_snd = 65536, .cli_rcv = 65536 });
    struct echo e = { 0 };
    echo_attach(&e, c);
    static struct bp b;
    b.fd = cfd;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bp_peer, &b), 0);

    RUN_UNTIL(l, atomic_load(&b.phase) == 1, 15);
    ck_assert_msg(!b.fail, "peer: %s", b.why);
    ck_assert_msg(b.sent_at_stall < BP_TOTAL,
                  "the peer sent all %u bytes to a server whose echoes nobody reads", BP_TOTAL);
    size_t bound = 2 * (size_t)RS_CONN_SEND_HIGH + 65536;
    /* reading paused above RS_CONN_SEND_HIGH and resumes only at half of it */
    ck_assert_msg(e.max_pending > RS_CONN_SEND_HIGH, "peer stalled with at most %zu bytes pending",
                  e.max_pending);
    ck_assert_msg(rs_conn_send_pending(c) > RS_CONN_SEND_HIGH / 2, "peer stalled with only %zu bytes pending",
                  rs_conn_send_pending(c));
    ck_assert_msg(e.max_pending <= bound, "send_pending reached %zu (bound %zu)", e.max_pending, bound);
    size_t rx = e.rx;
    run_for(l, 0.3);
    ck_assert_msg(e.rx == rx, "the server read %zu more bytes while its sends were %zu bytes behind",
                  e.rx - rx, rs_conn_send_pending(c));

    atomic_store(&b.phase, 2); /* the peer reads: everything flows again */
    RUN_UNTIL(l, atomic_load(&b.phase) == 3 && e.closed == 1, 25);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(!b.fail, "peer: %s", b.why);
    ck_assert_msg(e.errors == 0, "%d errors, first %s", e.errors, rs_err_name(e.first_err));
    ck_assert_uint_eq(b.echoed, BP_TOTAL);
    ck_assert_uint_eq(e.rx, BP_TOTAL);
    ck_assert_msg(e.max_pending <= bound, "send_pending reached %zu (bound %zu)", e.max_pending, bound);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- timers ----------------------------------------------------------------------------------- */

struct tmr {
    int calls, status, restarts;
    double at;
    rs_timer *t;
};

static void tm_cb(rs_timer *t, int status, void *user)
{
    (void)t;
    struct tmr *s = user;
    s->calls++;
    s->status = status;
    s->at = t_now();
}

/* Run l until cond or `secs` passed, with no timer of our own (these tests are about timers). */
#define SPIN_UNTIL(l, cond, secs)                                                     \
    do {                                                                              \
        double end_ = t_now() + (secs);                                               \
        for (long n_ = 0; !(cond) && t_now() < end_ && n_ < RUN_CAP; n_++)            \
            ck_assert_int_ge(rs_loop_run((l), RS_RUN_NOWAIT), 0);                     \
        ck_assert_msg((cond), "still false after %.1f s: %s", (double)(secs), #cond); \
    } while (0)

START_TEST(timer_fires)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    double t0 = t_now();
    ASSERT_ERR(rs_timer_start(s.t, 0.1, tm_cb, &s), 0);
    ck_assert_uint_eq(rs_loop_pending(l), 1);
    for (int i = 0; s.calls == 0 && i < 100; i++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.status, 0);
    ck_assert_msg(s.at - t0 >= 0.1 - 0.001 && s.at - t0 <= 0.1 + t_slack(),
                  "a 0.1 s timer fired after %.3f s", s.at - t0);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    ck_assert_int_eq(rs_loop_run(l, RS_RUN_DEFAULT), 0); /* nothing left */
    ck_assert_int_eq(s.calls, 1);
    ASSERT_ERR(rs_timer_free(s.t), 0);
    loop_free(l);
}
END_TEST

START_TEST(timer_stop_gives_ECANCELED)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    ASSERT_ERR(rs_timer_start(s.t, 10, tm_cb, &s), 0);
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_NOWAIT), 0);
    double t0 = t_now();
    ASSERT_ERR(rs_timer_stop(s.t), 0);
    ck_assert_int_eq(s.calls, 0);           /* never inside rs_timer_stop */
    ASSERT_ERR(rs_timer_free(s.t), -EBUSY); /* running until its callback */
    SPIN_UNTIL(l, s.calls == 1, 2);
    ck_assert_msg(t_now() - t0 < 0.5, "the cancel took %.3f s", t_now() - t0);
    ASSERT_ERR(s.status, -ECANCELED);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    ASSERT_ERR(rs_timer_stop(s.t), -EALREADY);
    run_for(l, 0.05);
    ck_assert_int_eq(s.calls, 1);
    ASSERT_ERR(rs_timer_free(s.t), 0);
    loop_free(l);
}
END_TEST

static void tm_restart_cb(rs_timer *t, int status, void *user)
{
    struct tmr *s = user;
    s->calls++;
    s->status = status;
    if (status == -ECANCELED || s->restarts < 5) {
        s->restarts++;
        ASSERT_ERR(rs_timer_start(t, 0.01, tm_restart_cb, s), 0);
    }
}

START_TEST(timer_restart_from_callback)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    double t0 = t_now();
    ASSERT_ERR(rs_timer_start(s.t, 0.01, tm_restart_cb, &s), 0);
    SPIN_UNTIL(l, rs_loop_pending(l) == 0, 2);
    ck_assert_int_eq(s.calls, 6); /* the first run and five restarts */
    ck_assert_int_eq(s.status, 0);
    ck_assert_msg(t_now() - t0 >= 0.06 - 0.001, "six 10 ms timers in a row took %.3f s", t_now() - t0);

    /* restarted from its -ECANCELED callback, as the API suggests */
    s = (struct tmr){ .t = s.t, .restarts = 5 };
    ASSERT_ERR(rs_timer_start(s.t, 10, tm_restart_cb, &s), 0);
    ASSERT_ERR(rs_timer_stop(s.t), 0);
    SPIN_UNTIL(l, rs_loop_pending(l) == 0, 2);
    ck_assert_int_eq(s.calls, 2);
    ck_assert_int_eq(s.status, 0);
    ASSERT_ERR(rs_timer_free(s.t), 0);
    loop_free(l);
}
END_TEST

START_TEST(timer_zero_fires_next_turn)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    ASSERT_ERR(rs_timer_start(s.t, 0, tm_cb, &s), 0);
    ck_assert_int_eq(s.calls, 0); /* not inside rs_timer_start */
    double t0 = t_now();
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 1);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.status, 0);
    ck_assert_msg(t_now() - t0 < 0.05, "a zero timer took %.3f s", t_now() - t0);
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    ASSERT_ERR(rs_timer_free(s.t), 0);
    loop_free(l);
}
END_TEST

START_TEST(timer_start_busy_is_EBUSY)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 }, other = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    ASSERT_ERR(rs_timer_start(s.t, 0.05, tm_cb, &s), 0);
    ASSERT_ERR(rs_timer_start(s.t, 0.01, tm_cb, &other), -EBUSY);
    ASSERT_ERR(rs_timer_free(s.t), -EBUSY);
    SPIN_UNTIL(l, rs_loop_pending(l) == 0, 2);
    run_for(l, 0.05);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.status, 0);
    ck_assert_int_eq(other.calls, 0);                 /* a refused start never calls back */
    ASSERT_ERR(rs_timer_start(s.t, 0, tm_cb, &s), 0); /* idle again: may start */
    SPIN_UNTIL(l, s.calls == 2, 1);
    ASSERT_ERR(rs_timer_free(s.t), 0);
    loop_free(l);
}
END_TEST

static void tm_free_cb(rs_timer *t, int status, void *user)
{
    struct tmr *s = user;
    s->calls++;
    s->status = status;
    ASSERT_ERR(rs_timer_free(t), 0); /* not running any more inside its callback */
}

START_TEST(timer_free_in_callback)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct tmr s = { 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    ASSERT_ERR(rs_timer_start(s.t, 0.01, tm_free_cb, &s), 0);
    SPIN_UNTIL(l, s.calls == 1, 2);
    ck_assert_int_eq(s.status, 0);
    ck_assert_uint_eq(rs_loop_pending(l), 0);

    s = (struct tmr){ 0 };
    ASSERT_ERR(rs_timer_new(&s.t, l), 0);
    ASSERT_ERR(rs_timer_start(s.t, 10, tm_free_cb, &s), 0);
    ASSERT_ERR(rs_timer_stop(s.t), 0);
    SPIN_UNTIL(l, s.calls == 1, 2);
    ASSERT_ERR(s.status, -ECANCELED);
    run_for(l, 0.05);
    ck_assert_int_eq(s.calls, 1);
    loop_free(l);
}
END_TEST

/* ---- EMFILE ----------------------------------------------------------------------------------- */

#define EMFILE_CLIENTS 4

struct emfile_arg {
    struct sockaddr_storage a;
    socklen_t len;
    int ready_fd;
};

/* Child: connect, say so, and wait for the server to close each connection. */
static int emfile_clients(void *arg)
{
    struct emfile_arg *ea = arg;
    int fd[EMFILE_CLIENTS];
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        fd[i] = dial(&ea->a, ea->len, 0, 0);
        if (fd[i] < 0) {
            fprintf(stderr, "emfile client %d: connect: %s\n", i, strerror(errno));
            return 11;
        }
    }
    if (write(ea->ready_fd, "r", 1) != 1)
        return 12;
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        char b;
        ssize_t n = recv(fd[i], &b, 1, 0); /* alarm() bounds it */
        if (n != 0) {
            fprintf(stderr, "emfile client %d: expected EOF, got %zd\n", i, n);
            return 13;
        }
        close(fd[i]);
    }
    return 0;
}

struct em {
    int emfile, other_err, accepted, closed;
};

static void em_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct em *)user)->closed++;
}

static void em_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct em *s = user;
    if (status == -EMFILE) {
        ck_assert_ptr_null(c);
        s->emfile++;
        return;
    }
    if (status < 0 || !c) {
        s->other_err++;
        return;
    }
    s->accepted++;
    ASSERT_ERR(rs_conn_close(c, em_closed, s), 0);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

START_TEST(emfile_does_not_spin)
{
    if (t_under_valgrind()) {
        /* valgrind emulates RLIMIT_NOFILE and keeps the lowered limit: nothing to learn here */
        fprintf(stderr, "emfile_does_not_spin: skipped under valgrind\n");
        return;
    }
    struct emfile_arg ea;
    int lfd = listen_fd(64, 0, &ea.a, &ea.len);
    int pp[2];
    ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
    ea.ready_fd = pp[1];
    struct child ch;
    spawn(&ch, emfile_clients, &ea, lfd);
    close(pp[1]);
    char b;
    struct pollfd pf = { .fd = pp[0], .events = POLLIN };
    ck_assert_int_eq(poll(&pf, 1, 5000), 1);
    ck_assert_int_eq(read(pp[0], &b, 1), 1); /* all clients wait in the backlog */
    close(pp[0]);

    rs_loop *l = loop_new(0, 0, 0);
    rs_conn *lc = conn_of(l, lfd);
    struct em s = { 0 };

    /* The limit is lowered and the table filled before the accept starts (io_uring reads the
     * limit when an accept is prepared). */
    struct rlimit old, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)t_fd_count() + 16;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int fill[4096];
    int nfill = 0;
    while (nfill < 4096 && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;
    int fill_errno = errno;

    ASSERT_ERR(rs_conn_accept_start(lc, em_accept, &s), 0);
    RUN_UNTIL(l, s.emfile > 0 || s.accepted > 0, 5);
    double c0 = cpu_seconds(), t0 = t_now();
    int emfile0 = s.emfile;
    run_for(l, 0.5);
    double cpu = cpu_seconds() - c0, wall = t_now() - t0;
    int emfile_calls = s.emfile - emfile0;

    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(fill_errno, EMFILE);
    ck_assert_int_eq(s.accepted, 0);
    ck_assert_int_eq(s.other_err, 0);
    ck_assert_int_gt(s.emfile, 0);
    ck_assert_msg(cpu < 0.2, "%.3f s of CPU in %.3f s with a full fd table (%d EMFILE callbacks)", cpu, wall,
                  emfile_calls);
    ck_assert_msg(emfile_calls <= 50, "%d EMFILE callbacks in %.3f s: accept is not backing off",
                  emfile_calls, wall);

    /* fds are free again: the waiting connections are accepted */
    RUN_UNTIL(l, s.closed == EMFILE_CLIENTS, 5);
    ck_assert_int_eq(s.accepted, EMFILE_CLIENTS);
    child_reap(&ch, 5);
    close_and_wait(l, lc);
    loop_free(l);
}
END_TEST

/* ---- accept basics ---------------------------------------------------------------------------- */

struct basic {
    rs_loop *loop;
    rs_conn *listener;
    int accepts, closed, status;
    unsigned short peer_port;
    char got[16];
    size_t ngot;
    bool replied;
};

struct basic_client {
    struct sockaddr_storage a;
    socklen_t len;
    unsigned short port;
    char reply[8];
    int fail;
};

static void *basic_client(void *arg)
{
    struct basic_client *bc = arg;
    int fd = dial(&bc->a, bc->len, 0, 0);
    if (fd < 0) {
        bc->fail = 1;
        return NULL;
    }
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    getsockname(fd, (struct sockaddr *)&me, &ml);
    bc->port = ntohs(me.sin_port);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (send(fd, "hello", 5, MSG_NOSIGNAL) != 5)
        bc->fail = 2;
    size_t n = 0;
    while (!bc->fail && n < 5) {
        ssize_t r = recv(fd, bc->reply + n, 5 - n, 0);
        if (r <= 0)
            bc->fail = 3;
        else
            n += (size_t)r;
    }
    close(fd);
    return NULL;
}

static void basic_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct basic *)user)->closed++;
}

static void basic_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct basic *s = user;
    if (n <= 0) {
        ASSERT_ERR(rs_conn_close(c, basic_closed, s), 0);
        return;
    }
    ck_assert_uint_le(s->ngot + (size_t)n, sizeof s->got);
    memcpy(s->got + s->ngot, data, (size_t)n);
    s->ngot += (size_t)n;
    if (s->ngot == 5 && !s->replied) {
        s->replied = true;
        ASSERT_ERR(rs_conn_send(c, "world", 5, NULL, NULL), 0);
    }
}

static void basic_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    struct basic *s = user;
    s->accepts++;
    s->status = status;
    ck_assert_ptr_eq(l, s->listener);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_ge(status, 0);
    ck_assert_ptr_eq(rs_conn_loop(c), s->loop);
    ck_assert_ptr_null(rs_conn_get_data(c));
    rs_conn_set_data(c, s);
    ck_assert_ptr_eq(rs_conn_get_data(c), s);
    int fd = rs_conn_fd(c);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ne(fd, rs_conn_fd(l));
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(getpeername(fd, (struct sockaddr *)&peer, &pl), 0);
    s->peer_port = ntohs(peer.sin_port);
    ASSERT_ERR(rs_conn_read_start(c, basic_read, s), 0);
}

START_TEST(accept_callback_gets_new_conn_and_peer_data)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct basic_client bc = { 0 };
    struct basic s = { .loop = l };
    s.listener = conn_of(l, listen_fd(16, 0, &bc.a, &bc.len));
    ck_assert_ptr_eq(rs_conn_loop(s.listener), l);
    ASSERT_ERR(rs_conn_accept_start(s.listener, basic_accept, &s), 0);
    ck_assert_int_eq(s.accepts, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, basic_client, &bc), 0);
    RUN_UNTIL(l, s.closed == 1, 5);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(bc.fail, 0);
    ck_assert_int_eq(s.accepts, 1);
    ck_assert_uint_eq(s.ngot, 5);
    ck_assert_int_eq(memcmp(s.got, "hello", 5), 0);
    ck_assert_int_eq(memcmp(bc.reply, "world", 5), 0);
    ck_assert_uint_eq(s.peer_port, bc.port);
    close_and_wait(l, s.listener);
    loop_free(l);
}
END_TEST

/* ---- CQ overflow ------------------------------------------------------------------------------ */

#define CQ_CONNS 200

START_TEST(cq_overflow_no_lost_completion)
{
    static struct vsrv s;
    s.expect = 1000;
    int ready[2], go[2];
    ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
    struct flood f = {
        .n = CQ_CONNS, .bytes = s.expect, .piece = 65536, .ready_fd = ready[1], .go_fd = go[0]
    };
    int lfd = listen_fd(256, 0, &f.a, &f.len);
    struct child ch;
    spawn(&ch, flood_clients, &f, lfd);
    close(ready[1]);
    close(go[0]);

    /* 4 submission entries, so a completion queue of 16 for 200 connections */
    rs_loop *l = loop_new(4, 0, 0);
    rs_conn *lc = conn_of(l, lfd);
    ASSERT_ERR(rs_conn_accept_start(lc, v_accept, &s), 0);
    RUN_UNTIL(l, s.accepted == CQ_CONNS || child_failed(&ch), 10);
    ck_assert_int_eq(s.accepted, CQ_CONNS);
    char b;
    struct pollfd pf = { .fd = ready[0], .events = POLLIN };
    ck_assert_int_eq(poll(&pf, 1, 5000), 1);
    ck_assert_int_eq(read(ready[0], &b, 1), 1);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    t_sleep(0.3); /* every connection's data and FIN arrive while nobody reaps */
    RUN_UNTIL(l, s.closed == CQ_CONNS || child_failed(&ch), 10);
    child_reap(&ch, 5);
    v_check(&s, CQ_CONNS);
    close(ready[0]);
    close(go[1]);
    close_and_wait(l, lc);
    loop_free(l);
}
END_TEST

#define CQ_TIMERS 200

struct many {
    int calls[CQ_TIMERS];
    int status[CQ_TIMERS];
    int total;
};

struct many_t {
    struct many *m;
    int i;
};

static void many_cb(rs_timer *t, int status, void *user)
{
    (void)t;
    struct many_t *mt = user;
    mt->m->calls[mt->i]++;
    mt->m->status[mt->i] = status;
    mt->m->total++;
}

START_TEST(cq_overflow_timers_all_fire)
{
    rs_loop *l = loop_new(4, 0, 0);
    static struct many m;
    static struct many_t mt[CQ_TIMERS];
    static rs_timer *t[CQ_TIMERS];
    for (int i = 0; i < CQ_TIMERS; i++) {
        mt[i] = (struct many_t){ &m, i };
        ASSERT_ERR(rs_timer_new(&t[i], l), 0);
        ASSERT_ERR(rs_timer_start(t[i], 0.05, many_cb, &mt[i]), 0);
    }
    t_sleep(0.15); /* all expire together */
    SPIN_UNTIL(l, m.total >= CQ_TIMERS, 5);
    run_for(l, 0.05);
    for (int i = 0; i < CQ_TIMERS; i++) {
        ck_assert_msg(m.calls[i] == 1, "timer %d: %d callbacks", i, m.calls[i]);
        ck_assert_int_eq(m.status[i], 0);
        ASSERT_ERR(rs_timer_free(t[i]), 0);
    }
    loop_free(l);
}
END_TEST

/* ---- bad input -------------------------------------------------------------------------------- */

static void never_read(rs_conn *c, ssize_t n, const void *d, void *u)
{
    (void)c;
    (void)n;
    (void)d;
    ++*(int *)u;
}

static void never_accept(rs_conn *l, rs_conn *c, int st, void *u)
{
    (void)l;
    (void)c;
    (void)st;
    ++*(int *)u;
}

static void never_sent(rs_conn *c, ssize_t st, void *u)
{
    (void)c;
    (void)st;
    ++*(int *)u;
}

static void count_timer(rs_timer *t, int st, void *u)
{
    (void)t;
    (void)st;
    ++*(int *)u;
}

START_TEST(bad_input)
{
    rs_loop *l = loop_new(0, 0, 0);
    int calls = 0, sends = 0, closes = 0, timer_calls = 0;
    rs_conn *c = NULL;
    ASSERT_ERR(rs_conn_open(NULL, l, -1), -EINVAL);
    ASSERT_ERR(rs_conn_open(&c, NULL, -1), -EINVAL);
    ASSERT_ERR(rs_conn_open(&c, l, -1), -EINVAL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ASSERT_ERR(rs_conn_open(&c, NULL, fd), -EINVAL);
    errno = 0;
    ck_assert_msg(fcntl(fd, F_GETFD) < 0 && errno == EBADF,
                  "rs_conn_open took the fd but did not close it on error");
    rs_socket *sock;
    ck_assert_int_eq(rs_socket_open(&sock, AF_INET, SOCK_STREAM, 0), 0);
    ASSERT_ERR(rs_conn_from_socket(NULL, l, sock), -EINVAL);
    ASSERT_ERR(rs_conn_from_socket(&c, NULL, sock), -EINVAL);
    ck_assert_int_eq(rs_close(sock), 0);

    ASSERT_ERR(rs_conn_accept_start(NULL, never_accept, &calls), -EINVAL);
    ASSERT_ERR(rs_conn_read_start(NULL, never_read, &calls), -EINVAL);
    ASSERT_ERR(rs_conn_read_stop(NULL), -EINVAL);
    ASSERT_ERR(rs_conn_send(NULL, "x", 1, never_sent, &sends), -EINVAL);
    ASSERT_ERR(rs_conn_close(NULL, count_close, &closes), -EINVAL);
    ASSERT_ERR(rs_conn_fd(NULL), -EINVAL);
    ck_assert_ptr_null(rs_conn_loop(NULL));
    ck_assert_ptr_null(rs_conn_get_data(NULL));
    ck_assert_uint_eq(rs_conn_send_pending(NULL), 0);

    rs_timer *t;
    ASSERT_ERR(rs_timer_new(NULL, l), -EINVAL);
    ASSERT_ERR(rs_timer_new(&t, NULL), -EINVAL);
    ASSERT_ERR(rs_timer_start(NULL, 1, count_timer, &timer_calls), -EINVAL);
    ASSERT_ERR(rs_timer_stop(NULL), -EINVAL);
    ASSERT_ERR(rs_timer_free(NULL), -EINVAL);
    ASSERT_ERR(rs_timer_new(&t, l), 0);
    ASSERT_ERR(rs_timer_start(t, -1, count_timer, &timer_calls), -EINVAL);
    ASSERT_ERR(rs_timer_start(t, NAN, count_timer, &timer_calls), -EINVAL);
    ASSERT_ERR(rs_timer_start(t, INFINITY, count_timer, &timer_calls), -EINVAL);
    ASSERT_ERR(rs_timer_start(t, 1, NULL, &timer_calls), -EINVAL);
    ASSERT_ERR(rs_timer_stop(t), -EALREADY);
    ASSERT_ERR(rs_timer_start(t, 10, count_timer, &timer_calls), 0);
    ASSERT_ERR(rs_timer_free(t), -EBUSY);
    ASSERT_ERR(rs_timer_stop(t), 0);

    int cfd;
    c = pair(l, &cfd, (struct bufs){ 0 });
    struct sockaddr_storage a;
    socklen_t len;
    rs_conn *lc = conn_of(l, listen_fd(4, 0, &a, &len));
    ASSERT_ERR(rs_conn_read_start(c, NULL, &calls), -EINVAL);
    ASSERT_ERR(rs_conn_accept_start(lc, NULL, &calls), -EINVAL);
    ASSERT_ERR(rs_conn_send(c, NULL, 1, never_sent, &sends), -EINVAL);
    ASSERT_ERR(rs_conn_read_start(c, never_read, &calls), 0);
    ASSERT_ERR(rs_conn_read_start(c, never_read, &calls), -EALREADY);
    ASSERT_ERR(rs_conn_accept_start(lc, never_accept, &calls), 0);
    ASSERT_ERR(rs_conn_accept_start(lc, never_accept, &calls), -EALREADY);
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_NOWAIT), 0);

    ASSERT_ERR(rs_conn_close(c, count_close, &closes), 0);
    ASSERT_ERR(rs_conn_close(lc, count_close, &closes), 0);
    ASSERT_ERR(rs_conn_close(c, count_close, &closes), -EALREADY);
    ASSERT_ERR(rs_conn_send(c, "x", 1, never_sent, &sends), -EBADF);
    ASSERT_ERR(rs_conn_read_start(c, never_read, &calls), -EBADF);
    ASSERT_ERR(rs_conn_accept_start(lc, never_accept, &calls), -EBADF);
    SPIN_UNTIL(l, closes == 2 && timer_calls == 1, 5);
    run_for(l, 0.05);
    ck_assert_int_eq(closes, 2);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_eq(sends, 0); /* a refused send never calls back */
    ck_assert_int_eq(timer_calls, 1);
    ASSERT_ERR(rs_timer_free(t), 0);
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- vectored send and multi-thread serving ------------------------------------------------- */

struct sv_result {
    int calls;
    ssize_t status;
};

static void sv_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct sv_result *r = user;
    r->calls++;
    r->status = status;
}

/* rs_conn_sendv: one callback with the total, the pieces arrive in order and whole. */
START_TEST(sendv_one_callback_with_total_in_order)
{
    rs_loop *l = loop_new(0, 0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ 0 });
    struct iovec iov[3] = { { pat, 10 }, { pat + 10, 70000 }, { pat + 70010, 5 } };
    struct sv_result r = { 0, 0 };
    ASSERT_ERR(rs_conn_sendv(c, iov, 3, sv_sent, &r), 0);
    ck_assert_int_eq(r.calls, 0); /* never inside the call */
    struct reader rd = { .fd = cfd };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &rd), 0);
    RUN_UNTIL(l, r.calls == 1, 5);
    ck_assert_int_eq(r.status, 70015);
    close_and_wait(l, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rd.bad, 0);
    ck_assert_uint_eq(rd.got, 70015);
    close(cfd);
    struct iovec bad[1] = { { NULL, 3 } };
    rs_conn *c2 = pair(l, &cfd, (struct bufs){ 0 });
    ASSERT_ERR(rs_conn_sendv(c2, bad, 1, sv_sent, &r), -EINVAL);
    ASSERT_ERR(rs_conn_sendv(c2, iov, 0, sv_sent, &r), -EINVAL);
    ASSERT_ERR(rs_conn_sendv(c2, iov, 65, sv_sent, &r), -EINVAL);
    close_and_wait(l, c2);
    close(cfd);
    loop_free(l);
}
END_TEST

/* Zero-copy sends (zc_threshold 1 forces them on io_uring; elsewhere plain sends): data intact,
 * one callback each, in order; on AF_UNIX the kernel refuses zero-copy and the conn falls back
 * to copying without losing a send. */
START_TEST(zero_copy_sends_intact_and_unix_falls_back)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.zc_threshold = 1;
    rs_loop *l;
    ASSERT_ERR(rs_loop_new(&l, &o), 0);
    for (int unix_pair = 0; unix_pair <= 1; unix_pair++) {
        int cfd;
        rs_conn *c;
        if (unix_pair) {
            int sv[2];
            ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
            cfd = sv[1];
            ASSERT_ERR(rs_conn_open(&c, l, sv[0]), 0);
        } else {
            c = pair(l, &cfd, (struct bufs){ 0 });
        }
        struct sv_result r[8];
        memset(r, 0, sizeof r);
        size_t total = 0;
        for (int i = 0; i < 8; i++) {
            size_t n = 1000 + (size_t)i * 30000;
            ASSERT_ERR(rs_conn_send(c, pat + total, n, sv_sent, &r[i]), 0);
            total += n;
        }
        struct reader rd = { .fd = cfd };
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &rd), 0);
        RUN_UNTIL(l, r[7].calls == 1, 5);
        for (int i = 0; i < 8; i++) {
            ck_assert_int_eq(r[i].calls, 1);
            ck_assert_int_eq(r[i].status, (ssize_t)(1000 + (size_t)i * 30000));
        }
        close_and_wait(l, c);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(rd.bad, 0);
        ck_assert_uint_eq(rd.got, total);
        close(cfd);
    }
    loop_free(l);
}
END_TEST

/* rs_conn_sendfile between memory sends: everything arrives in order; count 0 sends to EOF; a
 * count past EOF completes with what the file had. */
START_TEST(sendfile_ordered_with_memory_sends)
{
    rs_loop *l = loop_new(0, 0, 0);
    char path[] = "/tmp/rs-async-sendfile-XXXXXX";
    int ffd = mkstemp(path);
    ck_assert_int_ge(ffd, 0);
    unlink(path);
    size_t flen = 300000;
    ck_assert_int_eq(write(ffd, pat, flen), (ssize_t)flen);
    int cfd;
    rs_conn *c = pair(l, &cfd, (struct bufs){ .cli_rcv = 4096 });
    struct sv_result r[5];
    memset(r, 0, sizeof r);
    /* pattern bytes [0, 1000) from memory, [1000, 201000) from the file, [201000, 202000) from
     * memory, then the file from 202000 to its end (count 0), then 10 past-EOF bytes asked for
     * 100: the peer sees pat[0..flen) and the last send reports 0 of 100 */
    ASSERT_ERR(rs_conn_send(c, pat, 1000, sv_sent, &r[0]), 0);
    ASSERT_ERR(rs_conn_sendfile(c, ffd, 1000, 200000, sv_sent, &r[1]), 0);
    ASSERT_ERR(rs_conn_send(c, pat + 201000, 1000, sv_sent, &r[2]), 0);
    ASSERT_ERR(rs_conn_sendfile(c, ffd, 202000, 0, sv_sent, &r[3]), 0);
    ASSERT_ERR(rs_conn_sendfile(c, ffd, (off_t)flen, 100, sv_sent, &r[4]), 0);
    struct reader rd = { .fd = cfd };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &rd), 0);
    RUN_UNTIL(l, r[4].calls == 1, 10);
    ck_assert_int_eq(r[0].status, 1000);
    ck_assert_int_eq(r[1].status, 200000);
    ck_assert_int_eq(r[2].status, 1000);
    ck_assert_int_eq(r[3].status, (ssize_t)(flen - 202000));
    ck_assert_int_eq(r[4].status, 0);
    close_and_wait(l, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rd.bad, 0);
    ck_assert_uint_eq(rd.got, flen);
    close(cfd);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    rs_conn *c2 = pair(l, &cfd, (struct bufs){ 0 });
    ASSERT_ERR(rs_conn_sendfile(c2, p[0], 0, 0, sv_sent, &r[0]), -EINVAL); /* to EOF of a pipe */
    ASSERT_ERR(rs_conn_sendfile(c2, -1, 0, 10, sv_sent, &r[0]), -EINVAL);
    ASSERT_ERR(rs_conn_sendfile(c2, ffd, -1, 10, sv_sent, &r[0]), -EINVAL);
    close_and_wait(l, c2);
    close(p[0]);
    close(p[1]);
    close(cfd);
    close(ffd);
    loop_free(l);
}
END_TEST

struct acc_count {
    int n;
};

static void acc_count_closed(rs_conn *c, void *u)
{
    (void)c;
    (void)u;
}

static void acc_count_cb(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    if (status == 0 && c) {
        ((struct acc_count *)user)->n++;
        rs_conn_close(c, acc_count_closed, NULL);
    }
}

/* accept_stop: a connection made while stopped waits in the backlog and is accepted after
 * accept_start; start right after stop (the cancel still in flight) keeps accepting. */
START_TEST(accept_stop_then_start)
{
    rs_loop *l = loop_new(0, 0, 0);
    struct sockaddr_storage a;
    socklen_t len;
    int lfd = listen_fd(16, 0, &a, &len);
    rs_conn *lc = conn_of(l, lfd);
    struct acc_count n = { 0 };
    ASSERT_ERR(rs_conn_accept_start(lc, acc_count_cb, &n), 0);
    int c1 = dial(&a, len, 0, 0);
    RUN_UNTIL(l, n.n == 1, 5);
    ASSERT_ERR(rs_conn_accept_stop(lc), 0);
    run_for(l, 0.1);
    int c2 = dial(&a, len, 0, 0);
    run_for(l, 0.2);
    ck_assert_int_eq(n.n, 1); /* stopped: c2 waits in the backlog */
    ASSERT_ERR(rs_conn_accept_start(lc, acc_count_cb, &n), 0);
    RUN_UNTIL(l, n.n == 2, 5);
    ASSERT_ERR(rs_conn_accept_stop(lc), 0);
    ASSERT_ERR(rs_conn_accept_start(lc, acc_count_cb, &n), 0); /* same turn */
    int c3 = dial(&a, len, 0, 0);
    RUN_UNTIL(l, n.n == 3, 5);
    close_and_wait(l, lc);
    close(c1);
    close(c2);
    close(c3);
    loop_free(l);
}
END_TEST

static atomic_int serve_accepted[2];

static void serve_conn_closed(rs_conn *c, void *u)
{
    (void)c;
    (void)u;
}

static void serve_on_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    if (status < 0 || !c)
        return;
    atomic_fetch_add(&serve_accepted[(int)(intptr_t)user], 1);
    rs_conn_close(c, serve_conn_closed, NULL); /* the client sees EOF: its recv returns */
}

static void serve_on_start(rs_loop *loop, rs_conn *listener, int index, void *user)
{
    (void)loop;
    (void)user;
    ck_assert_int_eq(rs_conn_accept_start(listener, serve_on_accept, (void *)(intptr_t)index), 0);
}

/* Connect from a thread pinned to cpu; returns after each connection was accepted and closed. */
static void serve_connect_from(int cpu, int port, int n)
{
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof set, &set), 0);
    }
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < n; i++) {
        int fd = dial((struct sockaddr_storage *)&a, sizeof a, 0, 0);
        ck_assert_int_ge(fd, 0);
        char b;
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t rr;
        /* a ring this thread had, once torn down, interrupts it asynchronously (io_uring's exit
         * work, TWA_SIGNAL), which SO_RCVTIMEO turns into EINTR: retry, as any caller must */
        do
            rr = recv(fd, &b, 1, 0);
        while (rr < 0 && errno == EINTR);
        ck_assert_int_eq(rr, 0);
        close(fd);
    }
}

/* rs_serve: every worker accepts (kernel hash), and with steer_by_cpu a client on CPU k lands on
 * worker k. */
START_TEST(serve_workers_share_and_steer_by_cpu)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (int steer = 0; steer <= (cpus >= 2); steer++) {
        atomic_store(&serve_accepted[0], 0);
        atomic_store(&serve_accepted[1], 0);
        struct rs_serve_opts o = RS_SERVE_OPTS_INIT;
        o.threads = 2;
        o.host = "127.0.0.1";
        o.steer_by_cpu = steer;
        o.on_start = serve_on_start;
        rs_serve *sv;
        ASSERT_ERR(rs_serve_start(&sv, &o), 0);
        int port = rs_serve_port(sv);
        ck_assert_int_gt(port, 0);
        if (steer) {
            serve_connect_from(0, port, 20);
            ck_assert_int_eq(atomic_load(&serve_accepted[0]), 20);
            ck_assert_int_eq(atomic_load(&serve_accepted[1]), 0);
            serve_connect_from(1, port, 20);
            ck_assert_int_eq(atomic_load(&serve_accepted[1]), 20);
        } else {
            /* the kernel's hash: with 64 connections both get some (a miss is ~2^-63) */
            serve_connect_from(-1, port, 64);
            ck_assert_int_eq(atomic_load(&serve_accepted[0]) + atomic_load(&serve_accepted[1]), 64);
            ck_assert_int_gt(atomic_load(&serve_accepted[0]), 0);
            ck_assert_int_gt(atomic_load(&serve_accepted[1]), 0);
        }
        ASSERT_ERR(rs_serve_stop(sv), 0);
    }
    struct rs_serve_opts bad = RS_SERVE_OPTS_INIT;
    rs_serve *sv;
    ASSERT_ERR(rs_serve_start(&sv, &bad), -EINVAL); /* no on_start */
    bad.on_start = serve_on_start;
    bad.threads = (int)cpus + 1;
    bad.steer_by_cpu = true;
    ASSERT_ERR(rs_serve_start(&sv, &bad), -EINVAL);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------------ */

static TCase *tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = t_tcase(s, name, timeout);
    tcase_add_checked_fixture(tc, pat_setup, NULL);
    return tc;
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("async");
    TCase *tc = tcase(s, "echo", 60);
    tcase_add_test(tc, echo_1000_connections_checksummed);
    tcase_add_test(tc, accept_callback_gets_new_conn_and_peer_data);

    tc = tcase(s, "receive", 60);
    tcase_add_test(tc, tiny_buffer_ring_enobufs_no_loss);
    tcase_add_test(tc, features_say_what_was_granted);
    tcase_add_test(tc, conn_connect_timeout_zero_refused);
    tcase_add_test(tc, conn_shutdown_half_close_after_queued_sends);
    tcase_add_test(tc, read_stop_then_start);
    tcase_add_test(tc, read_stop_in_callback_loses_nothing);
    tcase_add_test(tc, read_stop_start_same_turn);
    tcase_add_test(tc, large_send_does_not_end_reading);
    tcase_add_test(tc, backpressure_pauses_reading);

    tc = tcase(s, "send", 30);
    tcase_add_test(tc, sends_complete_in_order);
    tcase_add_test(tc, sendv_one_callback_with_total_in_order);
    tcase_add_test(tc, zero_copy_sends_intact_and_unix_falls_back);
    tcase_add_test(tc, sendfile_ordered_with_memory_sends);
    tcase_add_test(tc, accept_stop_then_start);

    tc = tcase(s, "serve", 30);
    tcase_add_test(tc, serve_workers_share_and_steer_by_cpu);

    tc = tcase(s, "close", 20);
    tcase_add_test(tc, close_with_sends_in_flight);
    tcase_add_test(tc, close_cancels_read_and_accept);

    tc = tcase(s, "timers", 20);
    tcase_add_test(tc, timer_fires);
    tcase_add_test(tc, timer_stop_gives_ECANCELED);
    tcase_add_test(tc, timer_restart_from_callback);
    tcase_add_test(tc, timer_zero_fires_next_turn);
    tcase_add_test(tc, timer_start_busy_is_EBUSY);
    tcase_add_test(tc, timer_free_in_callback);

    tc = tcase(s, "limits", 30);
    tcase_add_test(tc, emfile_does_not_spin);
    tcase_add_test(tc, cq_overflow_no_lost_completion);
    tcase_add_test(tc, cq_overflow_timers_all_fire);

    tc = tcase(s, "errors", 20);
    tcase_add_test(tc, bad_input);
    return s;
}

int main(void) { return t_run(make_suite()); }
