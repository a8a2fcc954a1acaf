/* Suite 'fork': what a child of fork() may and may not do with what it inherited (issue #14).
 * A child's rs_close touches only its own descriptor (no shutdown of a connection the parent is
 * blocked on, no fd kept open by the parent's busy count); inherited sockets and files work in the
 * child on fresh loops; the kernel objects of inherited loops are closed in the child, an inherited
 * user loop refuses use and can be freed; and nothing the child does — using, freeing, exiting —
 * disturbs the parent's loops (rings, epoll sets, provided-buffer rings). Children report what
 * went wrong as bits of their exit status, so that one run names every broken promise. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/async.h>
#include <ringsock/file.h>

#include "t.h"

#define KIB 1024u

/* How long a child may take; the parent waits a little longer, then kills it. */
#define CHILD_ALARM 10
#define CHILD_WAIT 15.0

/* ---- children --------------------------------------------------------------------------------- */

/* Fork a child that runs fn(arg) and _exit()s with its result (exit(3) instead when use_exit, so
 * that destructors and atexit handlers run as in a child that ends normally). */
static pid_t spawn(int (*fn)(void *), void *arg, bool use_exit)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* bounded whatever the parent does: gone with a failed test process, or after the alarm */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(120);
        alarm(CHILD_ALARM);
        int st = fn(arg);
        if (use_exit)
            exit(st);
        _exit(st);
    }
    return pid;
}

/* "bit 1 (what), bit 4 (what)" for the bits of st that names describes; st as t_wait_child. */
static const char *describe(int st, const char *const *names, int nnames)
{
    static char buf[1024];
    if (st < 0)
        return "killed after the timeout";
    if (st >= 256) {
        snprintf(buf, sizeof buf, "killed by signal %d (%s)", st - 256, strsignal(st - 256));
        return buf;
    }
    buf[0] = '\0';
    for (int i = 0; i < nnames; i++)
        if (st & (1 << i))
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s[%d] %s", buf[0] ? "; " : "", 1 << i,
                     names[i]);
    if (!buf[0])
        snprintf(buf, sizeof buf, "ok");
    return buf;
}

#define ASSERT_CHILD_OK(st, names) \
    ck_assert_msg((st) == 0, "child: %s", describe((st), (names), (int)(sizeof(names) / sizeof *(names))))

/* ---- raw peers -------------------------------------------------------------------------------- */

/* Receive exactly n bytes on a plain fd within secs; the count received. */
static size_t peer_recv(int fd, void *buf, size_t n, double secs)
{
    size_t got = 0;
    double end = t_now() + secs;
    for (int i = 0; got < n && i < 100000; i++) {
        double left = end - t_now();
        if (left <= 0)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r > 0)
            got += (size_t)r;
        else if (errno != EAGAIN && errno != EINTR)
            break;
    }
    return got;
}

static void peer_send(int fd, const void *buf, size_t n)
{
    ck_assert_int_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A connected pair: TCP over 127.0.0.1 (kind 0) or an AF_UNIX socketpair (kind 1). */
static void make_pair(int kind, rs_socket **a, rs_socket **b)
{
    if (kind == 0) {
        t_tcp_pair(AF_INET, a, b);
        return;
    }
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    *a = sp[0];
    *b = sp[1];
}

static const char *const kind_name[] = { "tcp", "unix" };

/* ---- bounded loop runs ------------------------------------------------------------------------ */

/* Run l until cond holds; fail if it does not within secs. */
#define RUN_UNTIL(l, cond, secs)                                                      \
    do {                                                                              \
        struct t_tick k_;                                                             \
        t_tick_start(&k_, (l));                                                       \
        double end_ = t_now() + (secs);                                               \
        for (long n_ = 0; !(cond) && t_now() < end_ && n_ < 1000000; n_++)            \
            ck_assert_int_ge(rs_loop_run((l), RS_RUN_ONCE), 0);                       \
        t_tick_end(&k_, (l));                                                         \
        ck_assert_msg((cond), "still false after %.1f s: %s", (double)(secs), #cond); \
    } while (0)

/* ---- a receiving conn ------------------------------------------------------------------------- */

struct rx {
    size_t n;
    uint64_t sum;
    int eof, errors, last_err;
    bool closed;
};

static void rx_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct rx *r = user;
    if (n > 0) {
        r->n += (size_t)n;
        r->sum = t_fnv1a(r->sum, data, (size_t)n);
    } else if (n == 0) {
        r->eof++;
    } else {
        r->errors++;
        r->last_err = (int)n;
    }
}

static void rx_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct rx *)user)->closed = true;
}

/* A conn of l reading into *r, its peer a plain fd in *peer. */
static rs_conn *rx_conn(rs_loop *l, int kind, struct rx *r, int *peer, rs_socket **peer_sock)
{
    rs_socket *a, *b;
    make_pair(kind, &a, &b);
    rs_conn *c;
    ck_assert_int_eq(rs_conn_from_socket(&c, l, a), 0);
    memset(r, 0, sizeof *r);
    r->sum = T_FNV_INIT;
    ck_assert_int_eq(rs_conn_read_start(c, rx_read, r), 0);
    *peer_sock = b;
    *peer = rs_socket_fd(b);
    return c;
}

static void rx_close(rs_loop *l, rs_conn *c, struct rx *r)
{
    ck_assert_int_eq(rs_conn_close(c, rx_closed, r), 0);
    RUN_UNTIL(l, r->closed, 5);
}

/* The peer sends len bytes of pattern seed (non-blocking, so that the loop keeps draining) while l
 * runs; all of it must arrive, intact and without an error. */
static void stream_through(rs_loop *l, int peer, struct rx *r, size_t len, uint32_t seed, const char *what)
{
    unsigned char *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    t_fill_pattern(buf, len, seed);
    uint64_t want = t_fnv1a(r->sum, buf, len);
    size_t start = r->n, sent = 0;
    struct t_tick k;
    t_tick_start(&k, l);
    double end = t_now() + 10;
    for (long n = 0;
         (sent < len || r->n - start < len) && !r->errors && !r->eof && t_now() < end && n < 1000000; n++) {
        if (sent < len) {
            ssize_t w = send(peer, buf + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else
                ck_assert_msg(errno == EAGAIN, "%s: peer send: %s", what, strerror(errno));
        }
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    }
    t_tick_end(&k, l);
    ck_assert_msg(!r->errors, "%s: read callback got %s after %zu of %zu bytes", what,
                  rs_err_name(r->last_err), r->n - start, len);
    ck_assert_msg(!r->eof, "%s: read callback got EOF after %zu of %zu bytes", what, r->n - start, len);
    ck_assert_msg(r->n - start == len, "%s: %zu of %zu bytes arrived (%zu sent)", what, r->n - start, len,
                  sent);
    ck_assert_msg(r->sum == want, "%s: the bytes differ", what);
    free(buf);
}

/* ---- a child's rs_close of a socket a parent thread is blocked on ----------------------------- */

struct blocked {
    rs_socket *s;
    char buf[16];
    _Atomic ssize_t res;
    atomic_bool done;
};

static void *blocked_recv(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->res, rs_recv(b->s, b->buf, sizeof b->buf, 0));
    atomic_store(&b->done, true);
    rs_loop_default_release();
    return NULL;
}

struct close_arg {
    rs_socket *a, *b;
};

static const char *const close_bits[] = {
    "loop fds inherited (the blocked thread's or the main thread's loop) are open in the child",
    "rs_close of the blocked-on socket did not return 0",
    "the child's fd of the blocked-on socket is still open after rs_close (leaked)",
    "rs_close of the peer socket did not return 0, or left its fd open",
};

static int close_child(void *arg)
{
    struct close_arg *ca = arg;
    int bits = 0;
    if (t_loop_fd_count() != 0)
        bits |= 1;
    int fa = rs_socket_fd(ca->a), fb = rs_socket_fd(ca->b);
    if (rs_close(ca->a) != 0)
        bits |= 2;
    if (fcntl(fa, F_GETFD) != -1 || errno != EBADF)
        bits |= 4;
    if (rs_close(ca->b) != 0 || fcntl(fb, F_GETFD) != -1)
        bits |= 8;
    return bits;
}

/* A parent thread is blocked in rs_recv when the process forks; the child rs_closes its copies
 * and exits. The connection must be untouched: the peer sees no EOF, and the parent's receive
 * gets the peer's next bytes, not a false EOF. _i: tcp, unix. */
START_TEST(child_close_leaves_parent_connection)
{
    rs_socket *a, *b;
    make_pair(_i, &a, &b);
    ck_assert_int_eq(rs_settimeout(a, 10.0), 0);
    static struct blocked bl;
    memset(&bl, 0, sizeof bl);
    bl.s = a;
    atomic_store(&bl.res, 12345);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, blocked_recv, &bl), 0);
    /* the thread is in its receive once the loop waits; nothing to observe but time */
    t_sleep(0.2);
    ck_assert_msg(!atomic_load(&bl.done), "the receive returned %zd before the fork", atomic_load(&bl.res));
    struct close_arg ca = { a, b };
    pid_t pid = spawn(close_child, &ca, false);
    int st = t_wait_child(pid, CHILD_WAIT);
    t_sleep(0.05); /* a FIN or a shutdown would have reached both ends by now */
    const char *child = describe(st, close_bits, 4);
    bool early = atomic_load(&bl.done);
    char c;
    ssize_t r = recv(rs_socket_fd(b), &c, 1, MSG_DONTWAIT);
    int e = errno;
    /* both ends judged before either assertion, so that one failure does not hide the other */
    char parent[64];
    if (early)
        snprintf(parent, sizeof parent, "returned %zd", atomic_load(&bl.res));
    else
        snprintf(parent, sizeof parent, "is still blocked (ok)");
    ck_assert_msg(
        !early && r < 0 && e == EAGAIN,
        "%s: after the child's rs_close the parent's blocked rs_recv %s; the peer's recv got %zd (%s), "
        "want EAGAIN (child: %s)",
        kind_name[_i], parent, r, r < 0 ? strerror(e) : "EOF or data", child);
    peer_send(rs_socket_fd(b), "hello", 5);
    for (int i = 0; i < 1000 && !atomic_load(&bl.done); i++)
        t_sleep(0.005);
    ck_assert_msg(atomic_load(&bl.done), "the parent's rs_recv did not return within 5 s of the peer's send");
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(atomic_load(&bl.res) == 5 && memcmp(bl.buf, "hello", 5) == 0, "parent's rs_recv: %zd",
                  atomic_load(&bl.res));
    ASSERT_CHILD_OK(st, close_bits);
    ck_assert_int_eq(rs_close(a), 0);
    ck_assert_int_eq(rs_close(b), 0);
}
END_TEST

/* ---- a child uses inherited sockets and files ------------------------------------------------- */

#define BULK (200 * KIB)
#define FBULK (20 * KIB) /* >= 16 KiB: the file flushes it with WRITE_FIXED on io_uring */

struct use_arg {
    rs_socket *a, *b;
    rs_file *f;
};

static const char *const use_bits[] = {
    "rs_recv of bytes queued before the fork failed",
    "rs_send failed",
    "rs_sendall of 200 KiB failed",
    "makefile write + flush (5 B + 20 KiB) failed",
    "makefile readline did not read \"ping\\n\"",
    "rs_sendall of the reply failed",
    "rs_file_close / rs_close did not return 0",
    "loop fds still open after rs_loop_default_release",
};

static int use_child(void *arg)
{
    struct use_arg *u = arg;
    int bits = 0;
    char buf[32];
    if (rs_recv(u->a, buf, 8, MSG_WAITALL) != 8 || memcmp(buf, "to-child", 8) != 0)
        bits |= 1;
    if (rs_send(u->a, "C1", 2, 0) != 2)
        bits |= 2;
    static unsigned char bulk[BULK], fbulk[FBULK];
    t_fill_pattern(bulk, sizeof bulk, 11);
    t_fill_pattern(fbulk, sizeof fbulk, 12);
    if (rs_sendall(u->a, bulk, sizeof bulk, 0) != (ssize_t)sizeof bulk)
        bits |= 4;
    if (rs_file_write(u->f, "line\n", 5) != 5 ||
        rs_file_write(u->f, fbulk, sizeof fbulk) != (ssize_t)sizeof fbulk || rs_file_flush(u->f) != 0)
        bits |= 8;
    if (rs_file_readline(u->f, buf, sizeof buf) != 5 || memcmp(buf, "ping\n", 5) != 0)
        bits |= 16;
    if (rs_sendall(u->a, "pong", 4, 0) != 4)
        bits |= 32;
    if (rs_file_close(u->f) != 0 || rs_close(u->a) != 0 || rs_close(u->b) != 0)
        bits |= 64;
    if (rs_loop_default_release() != 0 || t_loop_fd_count() != 0)
        bits |= 128;
    return bits;
}

/* The parent used the socket and a makefile on it (buffers registered with its loop on io_uring);
 * the child reads and writes through both, on its own loop, while the parent's peer checks every
 * byte; the parent's socket, file and loop work afterwards. _i: tcp, unix. */
START_TEST(child_uses_inherited_socket_and_file)
{
    rs_socket *a, *b;
    make_pair(_i, &a, &b);
    int peer = rs_socket_fd(b);
    ck_assert_int_eq(rs_settimeout(a, 5.0), 0);
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, a, "rwb", -1), 0);
    /* the parent's own use first: its loop, its registered buffers */
    char buf[FBULK + 64];
    ck_assert_int_eq(rs_send(a, "p0", 2, 0), 2);
    ck_assert_uint_eq(peer_recv(peer, buf, 2, 5), 2);
    memset(buf, 'q', FBULK);
    ck_assert_int_eq(rs_file_write(f, buf, FBULK), FBULK);
    ck_assert_int_eq(rs_file_flush(f), 0);
    ck_assert_uint_eq(peer_recv(peer, buf, FBULK, 5), FBULK);
    peer_send(peer, "x\n", 2);
    ck_assert_int_eq(rs_file_readline(f, buf, sizeof buf), 2);
    peer_send(peer, "to-child", 8);

    struct use_arg u = { a, b, f };
    pid_t pid = spawn(use_child, &u, false);
    /* the peer checks the child's bytes as they come */
    static unsigned char got[BULK], want[BULK];
    bool ok = peer_recv(peer, buf, 2, 10) == 2 && memcmp(buf, "C1", 2) == 0;
    t_fill_pattern(want, BULK, 11);
    ok = ok && peer_recv(peer, got, BULK, 10) == BULK && memcmp(got, want, BULK) == 0;
    t_fill_pattern(want, FBULK, 12);
    ok = ok && peer_recv(peer, buf, 5, 10) == 5 && memcmp(buf, "line\n", 5) == 0;
    ok = ok && peer_recv(peer, got, FBULK, 10) == FBULK && memcmp(got, want, FBULK) == 0;
    if (ok) {
        peer_send(peer, "ping\n", 5);
        ok = peer_recv(peer, buf, 4, 10) == 4 && memcmp(buf, "pong", 4) == 0;
    }
    int st = t_wait_child(pid, CHILD_WAIT);
    ck_assert_msg(ok, "%s: the peer did not receive the child's bytes intact (child: %s)", kind_name[_i],
                  describe(st, use_bits, 8));
    ASSERT_CHILD_OK(st, use_bits);

    /* the parent's socket, file and loop are unharmed */
    ck_assert_int_eq(rs_file_write(f, "after\n", 6), 6);
    ck_assert_int_eq(rs_file_flush(f), 0);
    ck_assert_uint_eq(peer_recv(peer, buf, 6, 5), 6);
    ck_assert_int_eq(memcmp(buf, "after\n", 6), 0);
    peer_send(peer, "again\n", 6);
    ck_assert_int_eq(rs_file_readline(f, buf, sizeof buf), 6);
    ck_assert_int_eq(memcmp(buf, "again\n", 6), 0);
    peer_send(peer, "raw", 3);
    ck_assert_int_eq(rs_recv(a, buf, sizeof buf, 0), 3);
    ck_assert_int_eq(rs_file_close(f), 0);
    ck_assert_int_eq(rs_close(a), 0);
    ck_assert_int_eq(rs_close(b), 0);
}
END_TEST

/* ---- inherited loops in the child ------------------------------------------------------------- */

struct loops_arg {
    rs_loop *l, *l2;
    rs_socket *sp[2];
};

static const char *const loops_bits[] = {
    "loop fds (io_uring rings / epoll instances) are open in the child before it did anything",
    "rs_loop_run(RS_RUN_NOWAIT) on an inherited loop did not refuse",
    "rs_loop_run(RS_RUN_ONCE) on an inherited loop did not refuse",
    "an inherited loop accepted a timer (rs_timer_new + rs_timer_start)",
    "rs_loop_free of an inherited loop did not return 0",
    "loop fds still open after the inherited loops were freed",
    "I/O on an inherited socketpair failed in the child",
    "loop fds open after the child released its own default loop",
};

static void never_cb(rs_timer *t, int status, void *user)
{
    (void)t;
    (void)status;
    (void)user;
}

static int loops_child(void *arg)
{
    struct loops_arg *la = arg;
    int bits = 0;
    if (t_loop_fd_count() != 0)
        bits |= 1;
    if (rs_loop_run(la->l, RS_RUN_NOWAIT) >= 0)
        bits |= 2;
    if (rs_loop_run(la->l, RS_RUN_ONCE) >= 0)
        bits |= 4;
    rs_timer *t = NULL;
    bool timer_armed = false;
    if (rs_timer_new(&t, la->l2) == 0) {
        if (rs_timer_start(t, 0.001, never_cb, NULL) == 0) {
            bits |= 8;
            timer_armed = true; /* freeing l2 would then be refused for a good reason: skipped */
        } else if (rs_timer_free(t) != 0) {
            bits |= 16;
        }
    }
    if (rs_loop_free(la->l) != 0 || (!timer_armed && rs_loop_free(la->l2) != 0))
        bits |= 16;
    if (!timer_armed && t_loop_fd_count() != 0)
        bits |= 32;
    char buf[8];
    if (rs_send(la->sp[0], "kid", 3, 0) != 3 || rs_recv(la->sp[1], buf, sizeof buf, 0) != 3)
        bits |= 64;
    if (rs_close(la->sp[0]) != 0 || rs_close(la->sp[1]) != 0 || rs_loop_default_release() != 0 ||
        (!timer_armed && t_loop_fd_count() != 0))
        bits |= 128;
    return bits;
}

static void fired_cb(rs_timer *t, int status, void *user)
{
    (void)t;
    *(int *)user = status == 0 ? 1 : -1;
}

/* Fire one timer on l (binds an io_uring to this task, as real use does). */
static void fire_timer(rs_loop *l)
{
    rs_timer *t;
    ck_assert_int_eq(rs_timer_new(&t, l), 0);
    int fired = 0;
    ck_assert_int_eq(rs_timer_start(t, 0.001, fired_cb, &fired), 0);
    for (int i = 0; fired == 0 && i < 1000; i++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    ck_assert_int_eq(fired, 1);
    ck_assert_int_eq(rs_timer_free(t), 0);
}

/* The parent has its default loop and two user loops, all used. The child holds no loop fd
 * before doing anything, its inherited user loops refuse use and free with 0, its own default
 * loop works; afterwards the parent's loops receive, send and fire timers as before. */
START_TEST(child_closes_and_refuses_inherited_loops)
{
    struct loops_arg la;
    ck_assert_int_eq(rs_socketpair(la.sp, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(la.sp[1], 5.0), 0);
    char buf[16];
    ck_assert_int_eq(rs_send(la.sp[0], "p", 1, 0), 1);
    ck_assert_int_eq(rs_recv(la.sp[1], buf, sizeof buf, 0), 1);
    ck_assert_int_eq(rs_loop_new(&la.l, NULL), 0);
    ck_assert_int_eq(rs_loop_new(&la.l2, NULL), 0);
    fire_timer(la.l);
    fire_timer(la.l2);
    int before = t_loop_fd_count();

    pid_t pid = spawn(loops_child, &la, false);
    int st = t_wait_child(pid, CHILD_WAIT);
    ck_assert_int_eq(t_loop_fd_count(), before);

    /* the parent's loops after the child used, freed and closed its copies */
    rs_loop *ls[2] = { la.l, la.l2 };
    for (int i = 0; i < 2; i++) {
        fire_timer(ls[i]);
        struct rx r;
        int peer;
        rs_socket *ps;
        rs_conn *c = rx_conn(ls[i], 0, &r, &peer, &ps);
        char what[256];
        snprintf(what, sizeof what, "parent's user loop %d after the child", i + 1);
        stream_through(ls[i], peer, &r, 64 * KIB, 21, what);
        rx_close(ls[i], c, &r);
        ck_assert_int_eq(rs_close(ps), 0);
        ck_assert_int_eq(rs_loop_free(ls[i]), 0);
    }
    ck_assert_int_eq(rs_send(la.sp[0], "parent", 6, 0), 6);
    ck_assert_int_eq(rs_recv(la.sp[1], buf, sizeof buf, 0), 6);
    ck_assert_int_eq(rs_close(la.sp[0]), 0);
    ck_assert_int_eq(rs_close(la.sp[1]), 0);
    ASSERT_CHILD_OK(st, loops_bits);
}
END_TEST

/* ---- provided-buffer rings survive a child ---------------------------------------------------- */

enum {
    V_USER_FREE,
    V_USER_EXIT,
    V_DEFAULT_EXIT,
    V_DEFAULT_UNDERSCORE_EXIT,
    V_COUNT
};
static const char *const vname[V_COUNT] = { "user loop, child rs_loop_free", "user loop, child exit()",
                                            "default loop, child exit()", "default loop, child _exit()" };

static const char *const ring_bits[] = { "rs_loop_free of the inherited loop did not return 0" };

static int ring_child(void *arg)
{
    rs_loop *l = arg;
    return l && rs_loop_free(l) != 0 ? 1 : 0;
}

/* The parent receives on a conn (io_uring: multishot RECV on the loop's provided-buffer ring,
 * registered by then); a child frees its copy of the loop or just exits; the parent's receive goes
 * on, through the same ring, with every byte intact. _i: V_*. */
START_TEST(child_keeps_parent_buffer_ring)
{
    rs_loop *l;
    bool user = _i == V_USER_FREE || _i == V_USER_EXIT;
    if (user) {
        /* a small ring: the stream after the fork must recycle its buffers many times */
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.buf_count = 4;
        o.buf_size = 4096;
        ck_assert_int_eq(rs_loop_new(&l, &o), 0);
    } else {
        ck_assert_int_eq(rs_loop_default(&l), 0);
    }
    struct rx r;
    int peer;
    rs_socket *ps;
    rs_conn *c = rx_conn(l, 0, &r, &peer, &ps);
    stream_through(l, peer, &r, 10 * KIB, 31, "before the fork");
    struct rs_loop_stats s0;
    ck_assert_int_eq(rs_loop_stats(l, &s0), 0);
    if (rs_loop_backend(l) == RS_BACKEND_URING && (rs_loop_features(l) & RS_FEAT_MULTISHOT_RECV))
        ck_assert_uint_gt(s0.recv_bufs, 0);

    pid_t pid = spawn(ring_child, _i == V_USER_FREE ? l : NULL, _i == V_USER_EXIT || _i == V_DEFAULT_EXIT);
    int st = t_wait_child(pid, CHILD_WAIT);
    char what[256];
    snprintf(what, sizeof what, "after the fork (%s; child: %s)", vname[_i], describe(st, ring_bits, 1));
    stream_through(l, peer, &r, 512 * KIB, 32, what);
    ASSERT_CHILD_OK(st, ring_bits);
    rx_close(l, c, &r);
    ck_assert_int_eq(rs_close(ps), 0);
    if (user)
        ck_assert_int_eq(rs_loop_free(l), 0);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------------ */

static Suite *make_suite(void)
{
    Suite *s = suite_create("fork");
    TCase *tc = t_tcase(s, "close", 30);
    tcase_add_loop_test(tc, child_close_leaves_parent_connection, 0, 2);

    tc = t_tcase(s, "use", 30);
    tcase_add_loop_test(tc, child_uses_inherited_socket_and_file, 0, 2);

    tc = t_tcase(s, "loops", 30);
    tcase_add_test(tc, child_closes_and_refuses_inherited_loops);
    tcase_add_loop_test(tc, child_keeps_parent_buffer_ring, 0, V_COUNT);
    return s;
}

int main(void) { return t_run(make_suite()); }
