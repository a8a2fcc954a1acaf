/* Suite 'sigpipe': no send path of the library raises SIGPIPE at its default disposition (death)
 * when the peer has gone — blocking calls, rs_sendfile on each of its paths, makefile writes and
 * flushes, the completion API — over TCP (reset peer) and AF_UNIX stream; each reports -EPIPE or
 * -ECONNRESET and leaves the thread's pending set and mask as they were. Also a caller that blocks
 * SIGPIPE itself: the library must neither unblock it nor consume a SIGPIPE that was already
 * pending (the caller's), nor leave one of its own pending for the caller to die of later.
 * Check's fork mode runs each test in a child: a SIGPIPE that gets through shows as that test
 * dying by signal 13, which is the failure this suite exists to show. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/async.h>
#include <ringsock/file.h>

#include "t.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
/* rs_sendfile's automatic choice on io_uring takes splice from 8 MiB */
#define BIG_FILE (9 * MIB)
#define SMALL_FILE (64 * KIB)

#define EXPECT_PIPE(r, what)                                                                               \
    ck_assert_msg((r) == -EPIPE || (r) == -ECONNRESET, "%s: got %lld (%s), want EPIPE/ECONNRESET", (what), \
                  (long long)(r), rs_err_name((int)(r)))

enum {
    K_TCP,
    K_UNIX,
    K_COUNT
};
static const char *const kind_name[K_COUNT] = { "tcp", "unix" };

static char tmpdir[64];

static void setup(void)
{
    t_setup();
    /* the runner may have inherited SIG_IGN or a blocked SIGPIPE: either would hide the bug */
    signal(SIGPIPE, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rs-sigpipe-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    unsetenv("RINGSOCK_SENDFILE");
    t_teardown();
}

/* ---- signal state ------------------------------------------------------------------------- */

struct sigstate {
    sigset_t pend, mask;
};

static void snap(struct sigstate *st)
{
    ck_assert_int_eq(sigpending(&st->pend), 0);
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &st->mask), 0);
}

/* The pending set and the mask are what they were before the call named what. */
static void same_state(const struct sigstate *before, const char *what)
{
    struct sigstate now;
    snap(&now);
    for (int sig = 1; sig < NSIG; sig++) {
        ck_assert_msg(sigismember(&now.pend, sig) == sigismember(&before->pend, sig),
                      "%s: signal %d (%s) %s pending", what, sig, strsignal(sig),
                      sigismember(&now.pend, sig) ? "left" : "no longer");
        ck_assert_msg(sigismember(&now.mask, sig) == sigismember(&before->mask, sig),
                      "%s: signal %d (%s) %s blocked", what, sig, strsignal(sig),
                      sigismember(&now.mask, sig) ? "left" : "no longer");
    }
}

/* Block SIGPIPE in this thread as a caller would, optionally with one already pending. */
static void caller_blocks(bool pending)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    if (pending) {
        ck_assert_int_eq(pthread_kill(pthread_self(), SIGPIPE), 0);
        sigset_t p;
        ck_assert_int_eq(sigpending(&p), 0);
        ck_assert(sigismember(&p, SIGPIPE));
    }
}

/* Take back whatever SIGPIPE is pending and unblock it (the test's own cleanup). */
static void caller_unblocks(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = { 0, 0 };
    for (int i = 0; i < 4 && sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR; i++)
        ;
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
}

/* ---- a socket whose peer has gone ------------------------------------------------------------ */

/* A stream socket of kind whose peer is gone, primed so that the next send on it fails with EPIPE
 * (which raises SIGPIPE unless MSG_NOSIGNAL): a TCP reset is first reported as ECONNRESET
 * without a signal, so a raw MSG_NOSIGNAL send takes that report before the library's turn.
 * *peer gets the TCP peer's address (for sendto). */
static rs_socket *broken(int kind, struct sockaddr_storage *peer, socklen_t *peerlen)
{
    rs_socket *a, *b;
    if (kind == K_TCP) {
        t_tcp_pair(AF_INET, &a, &b);
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        ck_assert_int_eq(rs_setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    } else {
        rs_socket *sp[2];
        ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
        a = sp[0];
        b = sp[1];
    }
    if (peer) {
        *peerlen = sizeof *peer;
        if (kind == K_TCP)
            ck_assert_int_eq(rs_getpeername(a, peer, peerlen), 0);
        else
            *peerlen = 0;
    }
    ck_assert_int_eq(rs_close(b), 0);
    int fd = rs_socket_fd(a);
    int err = 0;
    for (int i = 0; i < 200 && err != EPIPE; i++) {
        if (send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            err = errno;
        else
            t_sleep(0.005);
    }
    ck_assert_msg(err == EPIPE, "%s: priming send got %s, not EPIPE", kind_name[kind], strerror(err));
    return a;
}

/* tmpdir/name, size bytes of a pattern; an O_RDONLY fd on it. */
static int make_file(const char *name, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    static unsigned char chunk[256 * KIB];
    t_fill_pattern(chunk, sizeof chunk, 7);
    for (size_t done = 0; done < size;) {
        size_t k = size - done < sizeof chunk ? size - done : sizeof chunk;
        ck_assert_int_eq(write(fd, chunk, k), (ssize_t)k);
        done += k;
    }
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* ---- a bounded loop run ------------------------------------------------------------------- */

/* Run l until *done reaches want, at most secs seconds (and a bounded number of turns). */
static void run_until(rs_loop *l, const int *done, int want, double secs)
{
    struct t_tick k;
    t_tick_start(&k, l);
    double end = t_now() + secs;
    for (long n = 0; *done < want && t_now() < end && n < 1000000; n++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    t_tick_end(&k, l);
    ck_assert_msg(*done >= want, "%d of %d callbacks after %.1f s", *done, want, secs);
}

/* ---- the blocking API ------------------------------------------------------------------------ */

/* _i: kind (tcp, unix) x timeout mode (blocking, 2 s, non-blocking). */
START_TEST(blocking_send_paths)
{
    static const double modes[] = { RS_TIMEOUT_NONE, 2.0, 0.0 };
    int kind = _i / 3;
    double timeout = modes[_i % 3];
    struct sockaddr_storage peer;
    socklen_t peerlen;
    rs_socket *s = broken(kind, &peer, &peerlen);
    ck_assert_int_eq(rs_settimeout(s, timeout), 0);
    struct sigstate st;
    snap(&st);
    char what[256];
#define STEP(call)                                                                         \
    do {                                                                                   \
        snprintf(what, sizeof what, "%s timeout %g: %s", kind_name[kind], timeout, #call); \
        ssize_t r_ = (call);                                                               \
        EXPECT_PIPE(r_, what);                                                             \
        same_state(&st, what);                                                             \
    } while (0)
    static char big[256 * KIB];
    STEP(rs_send(s, "hello", 5, 0));
    STEP(rs_send(s, "hello", 5, MSG_DONTWAIT));
    STEP(rs_sendall(s, big, sizeof big, 0));
    size_t sent = 1;
    STEP(rs_sendall_ex(s, "hello", 5, 0, &sent));
    ck_assert_uint_eq(sent, 0);
    /* TCP ignores the address of a connected socket; AF_UNIX stream has none to give */
    STEP(rs_sendto(s, "hello", 5, 0, kind == K_TCP ? (struct sockaddr *)&peer : NULL, peerlen));
    struct iovec iov[2] = { { .iov_base = "hel", .iov_len = 3 }, { .iov_base = "lo", .iov_len = 2 } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
    STEP(rs_sendmsg(s, &msg, 0));
    if (kind == K_UNIX) {
        int pfd[2];
        ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
        STEP(rs_send_fds(s, "fd", 2, pfd, 2, 0));
        STEP(rs_send_fds(s, "nofd", 4, NULL, 0, 0));
        close(pfd[0]);
        close(pfd[1]);
    }
#undef STEP
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* rs_sendfile from a regular file. _i: kind x { auto 64 KiB (sendfile(2)), auto 9 MiB (splice on
 * io_uring), forced sendfile, forced splice, forced read + send }, the timeout alternating between
 * blocking and 2 s. */
START_TEST(sendfile_paths)
{
    static const char *const paths[] = { "auto", "auto", "sendfile", "splice", "readsend" };
    int kind = _i / 5, p = _i % 5;
    size_t size = p == 1 ? BIG_FILE : SMALL_FILE;
    ck_assert_int_eq(setenv("RINGSOCK_SENDFILE", paths[p], 1), 0);
    int fd = make_file("src", size);
    rs_socket *s = broken(kind, NULL, NULL);
    ck_assert_int_eq(rs_settimeout(s, _i % 2 ? 2.0 : RS_TIMEOUT_NONE), 0);
    struct sigstate st;
    snap(&st);
    char what[256];
    snprintf(what, sizeof what, "%s rs_sendfile %s %zu bytes", kind_name[kind], paths[p], size);
    off_t off = 0;
    ssize_t r = rs_sendfile(s, fd, &off, 0);
    EXPECT_PIPE(r, what);
    same_state(&st, what);
    /* and with the file position instead of an offset */
    r = rs_sendfile(s, fd, NULL, 4096);
    EXPECT_PIPE(r, what);
    same_state(&st, what);
    ck_assert_int_eq(rs_close(s), 0);
    close(fd);
}
END_TEST

/* rs_makefile writes. _i: kind x { 10 bytes buffered then flush (SEND), 40 KiB buffered then flush
 * (WRITE_FIXED on io_uring), 100 KiB through a 64 KiB buffer (sent from the caller's memory),
 * unbuffered, line-buffered }. */
START_TEST(makefile_write_flush)
{
    static const char *const vname[] = { "small", "fixed-flush", "direct", "unbuffered", "line" };
    static const size_t sizes[] = { 10, 40 * KIB, 100 * KIB, 10, 2 };
    static const long bufsz[] = { -1, -1, -1, 0, 1 };
    int kind = _i / 5, v = _i % 5;
    rs_socket *s = broken(kind, NULL, NULL);
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, s, "wb", bufsz[v]), 0);
    static char data[100 * KIB];
    memset(data, 'x', sizeof data);
    data[sizes[v] - 1] = '\n';
    struct sigstate st;
    snap(&st);
    char what[256];
    snprintf(what, sizeof what, "%s makefile %s", kind_name[kind], vname[v]);
    ssize_t r = rs_file_write(f, data, sizes[v]);
    same_state(&st, what);
    if (r >= 0)
        r = rs_file_flush(f);
    EXPECT_PIPE(r, what);
    same_state(&st, what);
    data[sizes[v] - 1] = 'x';
    (void)rs_file_close(f); /* reports the unsent bytes, if any: only the signal matters here */
    same_state(&st, what);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* ---- the completion API ---------------------------------------------------------------------- */

struct cres {
    int calls;
    ssize_t status[4];
};

static void on_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct cres *r = user;
    if (r->calls < 4)
        r->status[r->calls] = status;
    r->calls++;
}

static void on_closed(rs_conn *c, void *user)
{
    (void)c;
    ++*(int *)user;
}

enum {
    C_SEND,
    C_SEND_BIG,
    C_SENDV,
    C_SENDS_BATCHED,
    C_SENDFILE,
    C_SENDFILE_BIG,
    C_SEND_THEN_SHUTDOWN,
    C_SHUTDOWN_THEN_SEND,
    C_COUNT
};
static const char *const cname[C_COUNT] = { "send",          "send 1 MiB",      "sendv",
                                            "3 sends",       "sendfile 64 KiB", "sendfile 9 MiB",
                                            "send+shutdown", "shutdown+send" };

/* One completion-API send path on a conn whose peer is gone; every callback's status is checked. */
static void conn_case(int kind, int which, bool blocked_pending)
{
    rs_loop *l;
    ck_assert_int_eq(rs_loop_new(&l, NULL), 0);
    rs_socket *s = broken(kind, NULL, NULL);
    rs_conn *c;
    ck_assert_int_eq(rs_conn_from_socket(&c, l, s), 0);
    int fd = -1;
    if (which == C_SENDFILE || which == C_SENDFILE_BIG)
        fd = make_file("src", which == C_SENDFILE ? SMALL_FILE : BIG_FILE);
    static char big[MIB];
    struct cres res = { 0 };
    int want = 1;
    if (blocked_pending)
        caller_blocks(true);
    struct sigstate st;
    snap(&st);
    char what[256];
    snprintf(what, sizeof what, "%s rs_conn %s", kind_name[kind], cname[which]);
    switch (which) {
    case C_SEND: ck_assert_int_eq(rs_conn_send(c, "hello", 5, on_sent, &res), 0); break;
    case C_SEND_BIG: ck_assert_int_eq(rs_conn_send(c, big, sizeof big, on_sent, &res), 0); break;
    case C_SENDV: {
        struct iovec iov[3] = { { "a", 1 }, { "bc", 2 }, { big, 64 * KIB } };
        ck_assert_int_eq(rs_conn_sendv(c, iov, 3, on_sent, &res), 0);
        break;
    }
    case C_SENDS_BATCHED:
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(rs_conn_send(c, big, 1000, on_sent, &res), 0);
        want = 3;
        break;
    case C_SENDFILE:
    case C_SENDFILE_BIG: ck_assert_int_eq(rs_conn_sendfile(c, fd, 0, 0, on_sent, &res), 0); break;
    case C_SEND_THEN_SHUTDOWN:
        ck_assert_int_eq(rs_conn_send(c, "hello", 5, on_sent, &res), 0);
        ck_assert_int_eq(rs_conn_shutdown(c, on_sent, &res), 0);
        want = 2;
        break;
    case C_SHUTDOWN_THEN_SEND:
        ck_assert_int_eq(rs_conn_shutdown(c, on_sent, &res), 0);
        ck_assert_int_eq(rs_conn_send(c, "hello", 5, on_sent, &res), 0);
        want = 2;
        break;
    default: ck_abort();
    }
    run_until(l, &res.calls, want, 5);
    same_state(&st, what);
    ck_assert_int_eq(res.calls, want);
    for (int i = 0; i < want; i++) {
        /* a shutdown(2) of a reset or closed stream may succeed or say ENOTCONN: the point is
         * that no signal comes of it; every send must fail */
        if (which == C_SHUTDOWN_THEN_SEND && i == 0)
            ck_assert_msg(res.status[0] <= 0, "%s: shutdown reported %zd", what, res.status[0]);
        else
            EXPECT_PIPE(res.status[i], what);
    }
    int closed = 0;
    ck_assert_int_eq(rs_conn_close(c, on_closed, &closed), 0);
    run_until(l, &closed, 1, 5);
    same_state(&st, what);
    if (blocked_pending)
        caller_unblocks();
    ck_assert_int_eq(rs_loop_free(l), 0);
    if (fd >= 0)
        close(fd);
}

/* _i: kind x C_*. */
START_TEST(completion_send_paths) { conn_case(_i / C_COUNT, _i % C_COUNT, false); }
END_TEST

/* ---- a caller that blocks SIGPIPE itself ------------------------------------------------------ */

enum {
    B_SEND,
    B_SENDALL,
    B_SENDMSG,
    B_SENDFILE,
    B_SENDFILE_SPLICE,
    B_SENDFILE_READSEND,
    B_FILE_FIXED_FLUSH,
    B_FILE_SMALL_FLUSH,
    B_CONN_SEND,
    B_CONN_SENDFILE,
    B_COUNT
};
static const char *const bname[B_COUNT] = { "rs_send",
                                            "rs_sendall",
                                            "rs_sendmsg",
                                            "rs_sendfile",
                                            "rs_sendfile splice",
                                            "rs_sendfile readsend",
                                            "makefile 40 KiB flush",
                                            "makefile 10 B flush",
                                            "rs_conn_send",
                                            "rs_conn_sendfile" };

/* One blocking path of B_* on a broken socket of kind; returns its result. */
static ssize_t blocking_path(int kind, int which)
{
    rs_socket *s = broken(kind, NULL, NULL);
    ck_assert_int_eq(rs_settimeout(s, 2.0), 0);
    int fd = -1;
    rs_file *f = NULL;
    static char data[40 * KIB];
    if (which == B_SENDFILE || which == B_SENDFILE_SPLICE || which == B_SENDFILE_READSEND) {
        ck_assert_int_eq(setenv("RINGSOCK_SENDFILE",
                                which == B_SENDFILE          ? "sendfile"
                                : which == B_SENDFILE_SPLICE ? "splice"
                                                             : "readsend",
                                1),
                         0);
        fd = make_file("src", SMALL_FILE);
    }
    if (which == B_FILE_FIXED_FLUSH || which == B_FILE_SMALL_FLUSH)
        ck_assert_int_eq(rs_makefile(&f, s, "wb", -1), 0);
    struct iovec iov = { .iov_base = data, .iov_len = 100 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r;
    switch (which) {
    case B_SEND: r = rs_send(s, data, 100, 0); break;
    case B_SENDALL: r = rs_sendall(s, data, sizeof data, 0); break;
    case B_SENDMSG: r = rs_sendmsg(s, &msg, 0); break;
    case B_SENDFILE:
    case B_SENDFILE_SPLICE:
    case B_SENDFILE_READSEND: {
        off_t off = 0;
        r = rs_sendfile(s, fd, &off, 0);
        break;
    }
    default: {
        size_t n = which == B_FILE_FIXED_FLUSH ? sizeof data : 10;
        r = rs_file_write(f, data, n);
        if (r >= 0)
            r = rs_file_flush(f);
        (void)rs_file_close(f);
    }
    }
    unsetenv("RINGSOCK_SENDFILE");
    ck_assert_int_eq(rs_close(s), 0);
    if (fd >= 0)
        close(fd);
    return r;
}

static void blocked_case(int kind, int which, bool pending)
{
    if (which == B_CONN_SEND || which == B_CONN_SENDFILE) {
        if (!pending)
            caller_blocks(false);
        conn_case(kind, which == B_CONN_SEND ? C_SEND : C_SENDFILE, pending);
        if (!pending)
            caller_unblocks();
        return;
    }
    caller_blocks(pending);
    struct sigstate st;
    snap(&st);
    char what[256];
    snprintf(what, sizeof what, "%s %s with SIGPIPE blocked%s", kind_name[kind], bname[which],
             pending ? " and pending" : "");
    ssize_t r = blocking_path(kind, which);
    EXPECT_PIPE(r, what);
    same_state(&st, what);
    caller_unblocks();
}

/* SIGPIPE blocked by the caller and one pending (raised by the caller before the call): after the
 * library met EPIPE it is still blocked and still pending. _i: kind x B_*. */
START_TEST(caller_blocked_pending_is_kept) { blocked_case(_i / B_COUNT, _i % B_COUNT, true); }
END_TEST

/* SIGPIPE blocked by the caller, none pending: after the library met EPIPE none is pending either
 * (one left there would kill the caller when it unblocks SIGPIPE). _i: kind x B_*. */
START_TEST(caller_blocked_none_left_pending) { blocked_case(_i / B_COUNT, _i % B_COUNT, false); }
END_TEST

/* ---- suite ------------------------------------------------------------------------------------ */

static TCase *tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("sigpipe");
    TCase *tc = tcase(s, "blocking", 20);
    tcase_add_loop_test(tc, blocking_send_paths, 0, K_COUNT * 3);
    tcase_add_loop_test(tc, sendfile_paths, 0, K_COUNT * 5);
    tcase_add_loop_test(tc, makefile_write_flush, 0, K_COUNT * 5);

    tc = tcase(s, "completion", 20);
    tcase_add_loop_test(tc, completion_send_paths, 0, K_COUNT * C_COUNT);

    tc = tcase(s, "caller-blocked", 20);
    tcase_add_loop_test(tc, caller_blocked_pending_is_kept, 0, K_COUNT * B_COUNT);
    tcase_add_loop_test(tc, caller_blocked_none_left_pending, 0, K_COUNT * B_COUNT);
    return s;
}

int main(void) { return t_run(make_suite()); }
