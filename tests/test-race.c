/* Suite 'race': rs_close from one thread against a call on the same socket in another (issue #14).
 *
 * The contract under test (include/ringsock/socket.h, rs_close): a call blocked on s, or entering
 * it, when another thread closes s returns within a bound (HANG_LIMIT) with -EBADF or a result
 * that is genuinely valid (the byte that arrived, the connection that was queued), without
 * spinning while it waits; a call that begins after rs_close on an object an rs_file still holds
 * returns -EBADF at once; rs_sendall racing rs_close touches no freed memory. rs_shutdown is the
 * documented way to stop a blocked accept/recv and must work on every backend.
 *
 * Using s after rs_close returned is undefined (socket.h), so the two thread hand-offs used here
 * are the only ones the API allows:
 *  - "held": an rs_file made from s keeps the object alive, so B may close at any instant,
 *    before A enters the call, while A is entering it, or while A waits (tcase "race");
 *  - "blocked": no file; B closes only once A is provably inside the call: its thread is asleep
 *    in the kernel (tcase "blocked"), or, for rs_sendall, the peer has received its bytes.
 * Thread A is a worker that stays alive for a whole test (one loop per thread, as in real
 * programs); thread B is the test's own thread, which makes every assertion. A call that never
 * returns is reported by B as a hang after HANG_LIMIT, with whether A slept or spun meanwhile,
 * and fails the forked test process.
 *
 * The gap this suite must find in the entry path (a close between a call's "closed?" check and
 * its registration as busy goes unnoticed) is a few ns wide, so the race loops start A's call
 * from a spin hand-off (both threads running) and steer half of B's delays to the edge between
 * "A saw the close at entry" and "A got in", learnt as the loop goes. Even so it is a matter of
 * chance: on an unfixed library a race test fails in some runs, not all (sanitizer builds, being
 * slower, fail more often); the blocked tests and the UDP, AF_UNIX accept, connect and sendfile
 * cases fail every time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "t.h"

/* A call woken by rs_close must return within this (issue #14's bound; far above any wake-up). */
#define HANG_LIMIT 1.0
/* A call that begins on a closed socket must not wait at all: this only absorbs a loaded CI host. */
#define AT_ONCE 0.25
/* Wall time per race loop: 11 loops stay within ~30 s per backend, and CI runs five configs. */
#define BUDGET 2.5
/* A waits at least this long in the no-spin checks, so that 5 % of it is far above clock noise. */
#define BLOCK_FOR 0.06
#define SPIN_SHARE 0.05

/* ---- what thread A calls ------------------------------------------------------------------- */

enum kind {
    K_RECV_TCP,
    K_RECV_UNIX,
    K_RECV_UDP,
    K_RECVFROM_UDP,
    K_RECVMSG_UDP,
    K_ACCEPT_TCP,
    K_ACCEPT_UNIX,
    K_SEND_TCP,
    K_SENDALL_TCP,
    K_CONNECT_TCP,
    K_SENDFILE_PIPE,
    K_COUNT
};

static const char *const kind_name[K_COUNT] = {
    "recv/tcp",           "recv/unix",   "recv/udp",      "recvfrom/udp",     "recvmsg/udp",
    "accept/tcp",         "accept/unix", "send/tcp-full", "sendall/tcp-full", "connect/tcp-unanswered",
    "sendfile/idle-pipe",
};

#define SEND_LEN (1024u * 1024u)
static const char zeros[SEND_LEN];

/* One round: the socket and what the call needs, and what it returned. B fills the inputs before
 * it starts the round, A the outputs before it reports the round finished (both under the
 * worker's mutex, which orders them). */
struct round {
    enum kind kind;
    rs_socket *s;
    int src_fd;                   /* K_SENDFILE_PIPE: the pipe's read end */
    struct sockaddr_storage addr; /* K_CONNECT_TCP: where to */
    socklen_t addrlen;
    ssize_t r;
    rs_socket *conn;  /* K_ACCEPT_*: the connection accepted, if any */
    double wall, cpu; /* of the call alone, measured by A */
};

static ssize_t do_call(struct round *rd)
{
    char buf[256];
    switch (rd->kind) {
    case K_RECV_TCP:
    case K_RECV_UNIX:
    case K_RECV_UDP: return rs_recv(rd->s, buf, sizeof buf, 0);
    case K_RECVFROM_UDP: {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        return rs_recvfrom(rd->s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    }
    case K_RECVMSG_UDP: {
        struct sockaddr_storage from;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
        struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1 };
        return rs_recvmsg(rd->s, &m, 0);
    }
    case K_ACCEPT_TCP:
    case K_ACCEPT_UNIX: return rs_accept(rd->s, &rd->conn, NULL, NULL);
    case K_SEND_TCP: return rs_send(rd->s, zeros, SEND_LEN, 0);
    case K_SENDALL_TCP: return rs_sendall(rd->s, zeros, SEND_LEN, 0);
    case K_CONNECT_TCP: return rs_connect(rd->s, (struct sockaddr *)&rd->addr, rd->addrlen);
    case K_SENDFILE_PIPE: return rs_sendfile(rd->s, rd->src_fd, NULL, 0);
    case K_COUNT: break;
    }
    return -ENOSYS;
}

/* ---- thread A ------------------------------------------------------------------------------ */

struct worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned started, finished; /* round numbers, under mu */
    bool quit;
    struct round rd;
    /* The start of a call, timed to the ns: A announces it is ready for round n (armed) and spins
     * until B says go; both threads are then running, so A enters the call a fixed ~100 ns after
     * B's go, and B's delays count from there. */
    atomic_uint armed, go;
    atomic_int tid;
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    atomic_store(&w->tid, (int)syscall(SYS_gettid));
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->started == seen && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        seen = w->started;
        struct round rd = w->rd;
        pthread_mutex_unlock(&w->mu);

        atomic_store_explicit(&w->armed, seen, memory_order_release);
        double give_up = t_now() + 10; /* B failed and its process is going: go anyway */
        for (unsigned spins = 0; atomic_load_explicit(&w->go, memory_order_acquire) != seen; spins++)
            if (spins > 20000) {
                sched_yield(); /* B is not running: 2 CPUs, shared */
                if (t_now() > give_up)
                    break;
            }
        double c0 = cpu_now(), t0 = t_now();
        rd.r = do_call(&rd);
        rd.cpu = cpu_now() - c0;
        rd.wall = t_now() - t0;

        pthread_mutex_lock(&w->mu);
        w->rd = rd;
        w->finished = seen;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

static void worker_start(struct worker *w)
{
    memset(w, 0, sizeof *w);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ck_assert_int_eq(pthread_cond_init(&w->cv, &ca), 0);
    pthread_condattr_destroy(&ca);
    ck_assert_int_eq(pthread_mutex_init(&w->mu, NULL), 0);
    atomic_init(&w->armed, 0);
    atomic_init(&w->go, 0);
    atomic_init(&w->tid, 0);
    ck_assert_int_eq(pthread_create(&w->th, NULL, worker_main, w), 0);
}

/* Only for a worker that finished its last round: a hung one is left to die with the forked test
 * process (its call cannot be cancelled, and joining it would hang the test). */
static void worker_stop(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    ck_assert_int_eq(pthread_join(w->th, NULL), 0);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static unsigned round_start(struct worker *w, const struct round *rd)
{
    pthread_mutex_lock(&w->mu);
    w->rd = *rd;
    unsigned n = ++w->started;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Wait until round n finished, at most limit seconds; its results in *out. */
static bool round_wait(struct worker *w, unsigned n, double limit, struct round *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)limit;
    ts.tv_nsec += (long)((limit - (double)(time_t)limit) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (w->finished != n)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    bool done = w->finished == n;
    if (done)
        *out = w->rd;
    pthread_mutex_unlock(&w->mu);
    return done;
}

static double thread_cpu(pthread_t th)
{
    clockid_t c;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &c) != 0 || clock_gettime(c, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* B's wait for round n after it closed (or shut down) A's socket, which happened at tc: the
 * round's results in *out, or a failure naming how A spent the time it hung (asleep in the
 * kernel, nobody to wake it; or spinning). */
static void await_round(struct worker *w, unsigned n, double tc, struct round *out, const char *what)
{
    double c0 = thread_cpu(w->th);
    if (!round_wait(w, n, HANG_LIMIT, out)) {
        double used = thread_cpu(w->th) - c0;
        ck_abort_msg("%s: still blocked %.1f s later (%s: %.0f ms of CPU meanwhile)", what, HANG_LIMIT,
                     used > 0.3 * HANG_LIMIT ? "spinning" : "asleep", used * 1e3);
    }
    ck_assert_msg(t_now() - tc < HANG_LIMIT, "%s: returned %.3f s later", what, t_now() - tc);
}

static bool round_finished(struct worker *w, unsigned n)
{
    pthread_mutex_lock(&w->mu);
    bool done = w->finished == n;
    pthread_mutex_unlock(&w->mu);
    return done;
}

/* Let A into round n's call as soon as it is ready for it. */
static void round_go(struct worker *w, unsigned n)
{
    double end = t_now() + 5;
    for (unsigned spins = 0; atomic_load_explicit(&w->armed, memory_order_acquire) != n; spins++) {
        if (spins > 20000)
            sched_yield();
        ck_assert_msg(t_now() < end, "worker never started round %u", n);
    }
    atomic_store_explicit(&w->go, n, memory_order_release);
}

/* Thread tid's scheduler state letter from /proc ('S' = asleep, waiting for an event), or 0.
 * No stdio: nothing here may take a lock A could be holding. */
static char thread_state(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

/* Wait until A, which announced round n, sleeps in the kernel: then it is past every check at
 * the call's entry and waiting inside it, and closing s from here is allowed without a file.
 * False if the round finished without ever blocking. */
static bool wait_asleep(struct worker *w, unsigned n)
{
    round_go(w, n);
    int tid = atomic_load(&w->tid);
    double end = t_now() + 5;
    for (;;) {
        if (round_finished(w, n))
            return false;
        /* twice, a little apart: a futex wait on a malloc lock is brief, a blocked call is not */
        if (thread_state(tid) == 'S') {
            t_sleep(0.002);
            if (thread_state(tid) == 'S' && !round_finished(w, n))
                return true;
        }
        ck_assert_msg(t_now() < end, "worker never blocked in round %u", n);
        t_sleep(0.0005);
    }
}

/* ---- per-iteration sockets ----------------------------------------------------------------- */

static uint32_t rng_state;

static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static void rnd_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng_state = (uint32_t)ts.tv_nsec | 1u;
    fprintf(stderr, "race seed %u\n", (unsigned)rng_state);
}

static void spin_ns(uint32_t ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < (long)ns);
}

/* Sockets that outlive the iterations of one test. */
struct env {
    struct t_blackhole bh; /* K_CONNECT_TCP: a listener that never answers */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* Everything one iteration opens besides the socket under test (which the test closes). */
struct kit {
    struct round rd;
    rs_socket *peer; /* the other end, or the UDP sender */
    int fds[2];      /* the sendfile pipe; a raw connecting client in fds[0] */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* A TCP connection whose client sends into a nearly closed window: small buffers both ways,
 * and already full. */
static void full_tcp_pair(rs_socket **client, rs_socket **server)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int small = 4096;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &len);
    ck_assert_int_eq(rs_setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    ck_assert_int_eq(rs_socket_open(client, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_setsockopt(*client, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(rs_connect(*client, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, server, NULL, NULL), 0);
    ck_assert_int_eq(rs_close(l), 0);
    /* twice: ACKs still in flight after the first -EAGAIN free a little room */
    for (int pass = 0; pass < 2; pass++) {
        ssize_t n;
        while ((n = rs_send(*client, zeros, 65536, MSG_DONTWAIT)) > 0)
            ;
        ck_assert_int_eq(n, -EAGAIN);
        if (pass == 0)
            t_sleep(0.001);
    }
}

/* For a test that needs the send to block, not just to be likely to: fill until a pause frees
 * no more room (window updates in flight after full_tcp_pair's fill gave a blocked-send test a
 * send that completed, once, under ASan in CI). Bounded: 50 pauses of 5 ms. */
static void settle_full(rs_socket *client)
{
    for (int pass = 0; pass < 50; pass++) {
        ssize_t n, moved = 0;
        while ((n = rs_send(client, zeros, 65536, MSG_DONTWAIT)) > 0)
            moved += n;
        ck_assert_int_eq(n, -EAGAIN);
        if (pass > 0 && moved == 0)
            return;
        t_sleep(0.005);
    }
    ck_abort_msg("the send buffer kept draining for 50 pauses");
}

static rs_socket *unix_listener(void)
{
    rs_socket *l;
    ck_assert_int_eq(rs_socket_open(&l, AF_UNIX, SOCK_STREAM, 0), 0);
    /* autobind: an abstract name the kernel picks, nothing in the file system */
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    ck_assert_int_eq(rs_bind(l, (struct sockaddr *)&un, sizeof(sa_family_t)), 0);
    ck_assert_int_eq(rs_listen(l, 16), 0);
    return l;
}

static void env_init(struct env *e, enum kind k)
{
    memset(e, 0, sizeof *e);
    if (k != K_CONNECT_TCP)
        return;
    /* A peer that never answers, on loopback (t_blackhole: a full accept queue). */
    t_blackhole_open(&e->bh, AF_INET);
    e->addr = e->bh.addr;
    e->addrlen = e->bh.len;
    /* proof that it does not answer: otherwise every connect test below tests nothing */
    rs_socket *probe;
    ck_assert_int_eq(rs_socket_open(&probe, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(probe, 0.2), 0);
    double t0 = t_now();
    ck_assert_int_eq(rs_connect(probe, (struct sockaddr *)&e->addr, e->addrlen), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "connect to the full listener");
    ck_assert_int_eq(rs_close(probe), 0);
}

static void env_free(struct env *e) { t_blackhole_close(&e->bh); }

static void kit_make(struct kit *k, enum kind kind, const struct env *e)
{
    memset(k, 0, sizeof *k);
    k->fds[0] = k->fds[1] = -1;
    k->rd.kind = kind;
    k->rd.src_fd = -1;
    rs_socket *sp[2];
    switch (kind) {
    case K_RECV_TCP: t_tcp_pair(AF_INET, &k->rd.s, &k->peer); break;
    case K_RECV_UNIX:
        ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
        k->rd.s = sp[0];
        k->peer = sp[1];
        break;
    case K_RECV_UDP:
    case K_RECVFROM_UDP:
    case K_RECVMSG_UDP:
        k->rd.s = t_bound(AF_INET, SOCK_DGRAM, &k->addr, &k->addrlen);
        ck_assert_int_eq(rs_socket_open(&k->peer, AF_INET, SOCK_DGRAM, 0), 0);
        break;
    case K_ACCEPT_TCP: k->rd.s = t_server_ephemeral(AF_INET, &k->addr, &k->addrlen); break;
    case K_ACCEPT_UNIX:
        k->rd.s = unix_listener();
        k->addrlen = sizeof k->addr;
        ck_assert_int_eq(rs_getsockname(k->rd.s, &k->addr, &k->addrlen), 0);
        break;
    case K_SEND_TCP:
    case K_SENDALL_TCP: full_tcp_pair(&k->rd.s, &k->peer); break;
    case K_CONNECT_TCP:
        ck_assert_int_eq(rs_socket_open(&k->rd.s, AF_INET, SOCK_STREAM, 0), 0);
        k->rd.addr = e->addr;
        k->rd.addrlen = e->addrlen;
        break;
    case K_SENDFILE_PIPE:
        t_tcp_pair(AF_INET, &k->rd.s, &k->peer);
        /* the write end stays open and idle: the read end never sees EOF */
        ck_assert_int_eq(pipe2(k->fds, O_CLOEXEC), 0);
        k->rd.src_fd = k->fds[0];
        break;
    case K_COUNT: break;
    }
}

/* Give the call something valid to finish with, just before B closes: a byte, a datagram, a
 * connection. Kinds without a peer that can make progress do nothing. */
static void kit_feed(struct kit *k)
{
    switch (k->rd.kind) {
    case K_RECV_TCP:
    case K_RECV_UNIX: ck_assert_int_eq(rs_send(k->peer, "x", 1, 0), 1); break;
    case K_RECV_UDP:
    case K_RECVFROM_UDP:
    case K_RECVMSG_UDP:
        ck_assert_int_eq(rs_sendto(k->peer, "x", 1, 0, (struct sockaddr *)&k->addr, k->addrlen), 1);
        break;
    case K_ACCEPT_TCP:
    case K_ACCEPT_UNIX: {
        /* raw and non-blocking: B must not wait for the handshake */
        int fam = k->rd.kind == K_ACCEPT_TCP ? AF_INET : AF_UNIX;
        k->fds[0] = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(k->fds[0], 0);
        int r = connect(k->fds[0], (struct sockaddr *)&k->addr, k->addrlen);
        ck_assert_msg(r == 0 || errno == EINPROGRESS, "feed connect: %s", strerror(errno));
        break;
    }
    case K_SENDFILE_PIPE:
        /* the call sends it, then waits on the pipe again: a close now lands mid-transfer */
        ck_assert_int_eq(write(k->fds[1], "x", 1), 1);
        break;
    default: break;
    }
}

static void kit_free(struct kit *k)
{
    if (k->peer)
        ck_assert_int_eq(rs_close(k->peer), 0);
    for (int i = 0; i < 2; i++)
        if (k->fds[i] >= 0)
            close(k->fds[i]);
}

/* The result of a round whose socket B closed: -EBADF, or what the call may validly return when
 * it completed first (fed tells whether kit_feed gave it something to complete with). A
 * connection accepted is closed here. */
static void check_result(const struct round *rd, bool fed, const char *what, unsigned iter)
{
    ssize_t r = rd->r;
    if (rd->conn) {
        ck_assert_msg(r == 0, "%s: accept returned %zd with a connection", what, r);
        ck_assert_int_eq(rs_close(rd->conn), 0);
    }
    if (r == -EBADF)
        return;
    bool ok = false;
    switch (rd->kind) {
    case K_RECV_TCP:
    case K_RECV_UNIX:
    case K_RECV_UDP:
    case K_RECVFROM_UDP:
    case K_RECVMSG_UDP: ok = fed && r == 1; break;
    case K_ACCEPT_TCP:
    case K_ACCEPT_UNIX: ok = fed && r == 0 && rd->conn; break;
    case K_SEND_TCP:
        ok = r > 0; /* the peer's window may have opened a little */
        break;
    default:
        break; /* sendall into a window that stays shut, connect unanswered, sendfile from an
                * endless pipe: nothing valid but -EBADF */
    }
    ck_assert_msg(ok,
                  "%s (iteration %u, seed %u): the call returned %zd (%s) after rs_close; "
                  "expected -EBADF%s",
                  what, iter, (unsigned)rng_state, r, r < 0 ? rs_err_name((int)r) : "a result",
                  fed ? " or the data/connection fed to it" : "");
}

static void check_no_spin(const struct round *rd, const char *what)
{
    if (rd->wall >= 0.05)
        ck_assert_msg(rd->cpu < SPIN_SHARE * rd->wall,
                      "%s: the waiting thread used %.1f ms of CPU in %.1f ms blocked (spinning?)", what,
                      rd->cpu * 1e3, rd->wall * 1e3);
}

/* ---- the race loop: B closes at a random instant around A's entry ---------------------------- */

static void race_loop(enum kind kind, unsigned count)
{
    const char *what = kind_name[kind];
    rnd_seed();
    struct env e;
    env_init(&e, kind);
    struct worker w;
    worker_start(&w);
    double t0 = t_now();
    unsigned i, before = 0, blocked = 0;
    int edge = 300; /* ns after go; see below */
    for (i = 0; i < count && (i < 20 || t_now() - t0 < BUDGET); i++) {
        struct kit k;
        kit_make(&k, kind, &e);
        rs_file *f;
        /* the file keeps the object alive whatever the interleaving: see the header */
        ck_assert_int_eq(rs_makefile(&f, k.rd.s, "rb", 0), 0);
        uint32_t dice = rnd();
        bool close_first = dice % 8 == 0;
        bool fed = !close_first && dice % 4 == 1;
        int jitter = edge + (int)(rnd() % 240) - 120;
        struct round out;
        char msg[160];
        if (close_first) {
            /* closed before A enters: -EBADF at once, no waiting at all */
            ck_assert_int_eq(rs_close(k.rd.s), 0);
            unsigned n = round_start(&w, &k.rd);
            round_go(&w, n);
            snprintf(msg, sizeof msg, "%s, socket closed before the call began", what);
            await_round(&w, n, t_now(), &out, msg);
            ck_assert_msg(out.r == -EBADF, "%s: call after rs_close returned %zd, not -EBADF", what, out.r);
            ck_assert_msg(out.wall < AT_ONCE, "%s: call after rs_close took %.3f s", what, out.wall);
            before++;
        } else {
            unsigned n = round_start(&w, &k.rd);
            if (fed)
                kit_feed(&k);
            /* Half the closes aim at the edge: the delay after which A no longer sees the close
             * at its entry check but has got into the call, where a gap between the entry check
             * and the wake-up bookkeeping lets a close go unnoticed. The gap is nanoseconds wide
             * and its distance from go differs per call and backend, so the edge is found as
             * the loop goes (below). The rest land anywhere in A's first µs, or after A sleeps. */
            uint32_t ns = dice % 4 == 3   ? rnd() % 300000
                          : dice % 4 == 2 ? rnd() % 4000
                                          : (uint32_t)(jitter > 0 ? jitter : 0);
            round_go(&w, n);
            spin_ns(ns);
            if (!round_finished(&w, n))
                blocked++;
            double tc = t_now();
            ck_assert_int_eq(rs_close(k.rd.s), 0);
            snprintf(msg, sizeof msg, "%s, rs_close %u ns after go (iteration %u, seed %u)", what, ns, i,
                     (unsigned)rng_state);
            await_round(&w, n, tc, &out, msg);
            check_result(&out, fed, what, i);
            check_no_spin(&out, what);
            /* stochastic approximation of the edge: a call refused at its entry returns in well
             * under a µs; one that got in made at least one system call and was woken */
            if (dice % 4 < 2) {
                bool refused = out.r == -EBADF && out.wall < 1e-6;
                edge += refused ? 8 : -8;
                edge = edge < 0 ? 0 : edge > 20000 ? 20000 : edge;
            }
        }
        ck_assert_int_eq(rs_file_close(f), 0);
        kit_free(&k);
    }
    worker_stop(&w);
    if (kind == K_CONNECT_TCP)
        env_free(&e);
    fprintf(stderr,
            "%s: %u iterations in %.2f s (%u closed before the call, %u closed while in it, edge %d ns)\n",
            what, i, t_now() - t0, before, blocked, edge);
    /* a loop that never once closed under a call in progress proved nothing */
    ck_assert_uint_gt(blocked, 0);
}

START_TEST(race_recv_tcp) { race_loop(K_RECV_TCP, 3000); }
END_TEST
START_TEST(race_recv_unix) { race_loop(K_RECV_UNIX, 10000); }
END_TEST
START_TEST(race_recv_udp) { race_loop(K_RECV_UDP, 6000); }
END_TEST
START_TEST(race_recvfrom_udp) { race_loop(K_RECVFROM_UDP, 6000); }
END_TEST
START_TEST(race_recvmsg_udp) { race_loop(K_RECVMSG_UDP, 6000); }
END_TEST
START_TEST(race_accept_tcp) { race_loop(K_ACCEPT_TCP, 6000); }
END_TEST
START_TEST(race_accept_unix) { race_loop(K_ACCEPT_UNIX, 6000); }
END_TEST
START_TEST(race_send_tcp_full) { race_loop(K_SEND_TCP, 1000); }
END_TEST
START_TEST(race_sendall_tcp_full) { race_loop(K_SENDALL_TCP, 1000); }
END_TEST
START_TEST(race_connect_tcp) { race_loop(K_CONNECT_TCP, 1000); }
END_TEST
START_TEST(race_sendfile_pipe) { race_loop(K_SENDFILE_PIPE, 1000); }
END_TEST

/* ---- blocked: no file; B closes once A sleeps in the call ------------------------------------ */

static void blocked_close(enum kind kind)
{
    const char *what = kind_name[kind];
    struct env e;
    env_init(&e, kind);
    struct worker w;
    worker_start(&w);
    for (unsigned i = 0; i < 3; i++) {
        struct kit k;
        kit_make(&k, kind, &e);
        if (kind == K_SEND_TCP || kind == K_SENDALL_TCP)
            settle_full(k.rd.s);
        unsigned n = round_start(&w, &k.rd);
        ck_assert_msg(wait_asleep(&w, n), "%s: the call returned without blocking", what);
        /* long enough for the CPU check to mean something; the last round closes at once */
        if (i < 2)
            t_sleep(BLOCK_FOR);
        double tc = t_now();
        ck_assert_int_eq(rs_close(k.rd.s), 0);
        struct round out;
        char msg[160];
        snprintf(msg, sizeof msg, "%s, rs_close with the call asleep (round %u)", what, i);
        await_round(&w, n, tc, &out, msg);
        check_result(&out, false, what, i);
        check_no_spin(&out, what);
        kit_free(&k);
    }
    worker_stop(&w);
    if (kind == K_CONNECT_TCP)
        env_free(&e);
}

START_TEST(blocked_recv_tcp) { blocked_close(K_RECV_TCP); }
END_TEST
START_TEST(blocked_recv_unix) { blocked_close(K_RECV_UNIX); }
END_TEST
START_TEST(blocked_recv_udp) { blocked_close(K_RECV_UDP); }
END_TEST
START_TEST(blocked_recvfrom_udp) { blocked_close(K_RECVFROM_UDP); }
END_TEST
START_TEST(blocked_recvmsg_udp) { blocked_close(K_RECVMSG_UDP); }
END_TEST
START_TEST(blocked_accept_tcp) { blocked_close(K_ACCEPT_TCP); }
END_TEST
START_TEST(blocked_accept_unix) { blocked_close(K_ACCEPT_UNIX); }
END_TEST
START_TEST(blocked_send_tcp_full) { blocked_close(K_SEND_TCP); }
END_TEST
START_TEST(blocked_sendall_tcp_full) { blocked_close(K_SENDALL_TCP); }
END_TEST
START_TEST(blocked_connect_tcp) { blocked_close(K_CONNECT_TCP); }
END_TEST
START_TEST(blocked_sendfile_pipe) { blocked_close(K_SENDFILE_PIPE); }
END_TEST

/* ---- rs_sendall in progress, no file: the reference it holds between sends ------------------- */

struct drainer {
    rs_socket *s;
    atomic_ulong got; /* bytes received: > 0 proves A is inside rs_sendall */
};

static void *drainer_main(void *arg)
{
    struct drainer *d = arg;
    char buf[4096];
    ssize_t n;
    /* small reads keep the sender's window opening in small steps: many sends per rs_sendall,
     * so many gaps between them for the close to fall into */
    while ((n = rs_recv(d->s, buf, 1024, 0)) > 0)
        atomic_fetch_add(&d->got, (unsigned long)n);
    return NULL;
}

static void sendall_race(int family, unsigned count)
{
    rnd_seed();
    struct worker w;
    worker_start(&w);
    double t0 = t_now();
    unsigned i, mid = 0;
    for (i = 0; i < count && (i < 20 || t_now() - t0 < BUDGET); i++) {
        struct kit k;
        memset(&k, 0, sizeof k);
        k.fds[0] = k.fds[1] = -1;
        k.rd.kind = K_SENDALL_TCP;
        k.rd.src_fd = -1;
        int small = 4096;
        if (family == AF_UNIX) {
            rs_socket *sp[2];
            ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
            k.rd.s = sp[0];
            k.peer = sp[1];
        } else {
            t_tcp_pair(family, &k.rd.s, &k.peer);
        }
        ck_assert_int_eq(rs_setsockopt(k.rd.s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
        struct drainer d = { .s = k.peer };
        atomic_init(&d.got, 0);
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, drainer_main, &d), 0);

        unsigned n = round_start(&w, &k.rd);
        round_go(&w, n);
        double end = t_now() + 5;
        while (atomic_load(&d.got) == 0)
            ck_assert_msg(t_now() < end, "sendall never sent");
        spin_ns(rnd() % 200000);
        if (!round_finished(&w, n))
            mid++;
        double tc = t_now();
        ck_assert_int_eq(rs_close(k.rd.s), 0);
        struct round out;
        await_round(&w, n, tc, &out, "sendall, rs_close mid-call");
        ck_assert_msg(out.r == -EBADF || out.r == (ssize_t)SEND_LEN,
                      "sendall racing rs_close returned %zd (%s), not -EBADF or the whole length", out.r,
                      out.r < 0 ? rs_err_name((int)out.r) : "bytes");
        /* the drainer sees EOF (or a reset) once our end is gone */
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        kit_free(&k);
    }
    worker_stop(&w);
    fprintf(stderr, "sendall/%s no file: %u iterations in %.2f s (%u closed mid-call)\n",
            family == AF_UNIX ? "unix" : "tcp", i, t_now() - t0, mid);
    ck_assert_uint_gt(mid, 0);
}

START_TEST(sendall_close_race_unix) { sendall_race(AF_UNIX, 2000); }
END_TEST
START_TEST(sendall_close_race_tcp) { sendall_race(AF_INET, 1000); }
END_TEST

/* ---- after rs_close, while an rs_file still holds the object --------------------------------- */

/* Every call on the socket itself: -EBADF at once, even though the fd is still open. */
START_TEST(calls_after_close_with_file_open_are_ebadf)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    rs_socket *s = sp[0];
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, s, "rwb", 0), 0);
    ck_assert_int_eq(rs_close(s), 0);
    /* data waiting and room to send: a call that ignored the close would succeed, not block */
    ck_assert_int_eq(rs_send(sp[1], "abc", 3, 0), 3);

    double t0 = t_now();
    char buf[16];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    int fds[1];
    size_t nfds = 1;
    rs_socket *c = NULL;
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), -EBADF);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, MSG_PEEK), -EBADF);
    ck_assert_int_eq(rs_recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&ss, &sl), -EBADF);
    ck_assert_int_eq(rs_recvmsg(s, &m, 0), -EBADF);
    ck_assert_int_eq(rs_recv_fds(s, buf, sizeof buf, fds, &nfds, 0), -EBADF);
    ck_assert_int_eq(rs_send(s, "x", 1, 0), -EBADF);
    ck_assert_int_eq(rs_sendall(s, "x", 1, 0), -EBADF);
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), -EBADF);
    ck_assert_int_eq(rs_send_fds(s, "x", 1, NULL, 0, 0), -EBADF);
    ck_assert_int_eq(rs_accept(s, &c, NULL, NULL), -EBADF);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(rs_shutdown(s, SHUT_RDWR), -EBADF);
    ck_assert_int_eq(rs_socket_fd(s), -EBADF);
    ck_assert_int_eq(rs_settimeout(s, 1.0), -EBADF);
    ck_assert_int_eq(rs_detach(s), -EBADF);
    ck_assert_int_eq(rs_close(s), -EBADF);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    ck_assert_int_eq(rs_sendfile(s, p[0], NULL, 1), -EBADF);
    close(p[0]);
    close(p[1]);
    ck_assert_msg(t_now() - t0 < AT_ONCE, "calls after rs_close took %.3f s", t_now() - t0);

    /* the file still works (socket.py's _io_refs): the bytes were not taken by any call above */
    ck_assert_int_eq(rs_file_read(f, buf, 3), 3);
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    ck_assert_int_eq(rs_file_close(f), 0);
    ck_assert_int_eq(rs_close(sp[1]), 0);
}
END_TEST

/* Same for TCP and UDP sockets and the calls only they have. */
START_TEST(inet_calls_after_close_with_file_open_are_ebadf)
{
    struct sockaddr_storage a;
    socklen_t al;
    rs_socket *l = t_server_ephemeral(AF_INET, &a, &al);
    rs_socket *u = t_bound(AF_INET, SOCK_DGRAM, &a, &al);
    rs_socket *c;
    ck_assert_int_eq(rs_socket_open(&c, AF_INET, SOCK_STREAM, 0), 0);
    rs_file *f[3];
    ck_assert_int_eq(rs_makefile(&f[0], l, "rb", 0), 0);
    ck_assert_int_eq(rs_makefile(&f[1], u, "rb", 0), 0);
    ck_assert_int_eq(rs_makefile(&f[2], c, "rb", 0), 0);
    struct sockaddr_storage la;
    socklen_t lal = sizeof la;
    ck_assert_int_eq(rs_getsockname(l, &la, &lal), 0);
    ck_assert_int_eq(rs_close(l), 0);
    ck_assert_int_eq(rs_close(u), 0);
    ck_assert_int_eq(rs_close(c), 0);

    double t0 = t_now();
    rs_socket *conn = NULL;
    char buf[8];
    ck_assert_int_eq(rs_accept(l, &conn, NULL, NULL), -EBADF);
    ck_assert_ptr_null(conn);
    ck_assert_int_eq(rs_recv(u, buf, sizeof buf, 0), -EBADF);
    ck_assert_int_eq(rs_sendto(u, "x", 1, 0, (struct sockaddr *)&a, al), -EBADF);
    ck_assert_int_eq(rs_connect(c, (struct sockaddr *)&la, lal), -EBADF);
    ck_assert_msg(t_now() - t0 < AT_ONCE, "calls after rs_close took %.3f s", t_now() - t0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rs_file_close(f[i]), 0);
}
END_TEST

struct file_reader {
    rs_file *f;
    atomic_bool in;
    ssize_t r;
    char buf[8];
};

static void *file_reader_main(void *arg)
{
    struct file_reader *fr = arg;
    atomic_store(&fr->in, true);
    fr->r = rs_file_read1(fr->f, fr->buf, sizeof fr->buf);
    return NULL;
}

/* Python semantics: the file keeps the socket open, so a read blocked in the file goes on after
 * rs_close and gets the data that arrives later. */
START_TEST(file_read_survives_close)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    struct file_reader fr = { .r = -1 };
    atomic_init(&fr.in, false);
    ck_assert_int_eq(rs_makefile(&fr.f, sp[0], "rb", 0), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, file_reader_main, &fr), 0);
    while (!atomic_load(&fr.in))
        sched_yield();
    t_sleep(0.05);
    ck_assert_int_eq(rs_close(sp[0]), 0);
    t_sleep(0.05);
    ck_assert_int_eq(rs_send(sp[1], "late", 4, 0), 4);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(fr.r, 4);
    ck_assert_int_eq(memcmp(fr.buf, "late", 4), 0);
    ck_assert_int_eq(rs_file_close(fr.f), 0);
    ck_assert_int_eq(rs_close(sp[1]), 0);
}
END_TEST

/* ---- rs_shutdown: the documented way to stop a blocked accept or recv ------------------------- */

/* Not AF_UNIX accept: a non-blocking accept(2) on a shut-down AF_UNIX listener keeps returning
 * EAGAIN (only a blocking one returns EINVAL), so this is not a promise the readiness backends can
 * keep by retrying; rs_close must wake it all the same (blocked_accept_unix). */

static void shutdown_stops(enum kind kind, ssize_t want)
{
    const char *what = kind_name[kind];
    struct env e;
    env_init(&e, kind);
    struct worker w;
    worker_start(&w);
    struct kit k;
    kit_make(&k, kind, &e);
    unsigned n = round_start(&w, &k.rd);
    ck_assert_msg(wait_asleep(&w, n), "%s: the call returned without blocking", what);
    t_sleep(BLOCK_FOR);
    double tc = t_now();
    ck_assert_int_eq(rs_shutdown(k.rd.s, SHUT_RDWR), 0);
    struct round out;
    char msg[160];
    snprintf(msg, sizeof msg, "%s, rs_shutdown(SHUT_RDWR) with the call asleep", what);
    await_round(&w, n, tc, &out, msg);
    ck_assert_msg(out.r == want, "%s after rs_shutdown returned %zd (%s), expected %zd", what, out.r,
                  out.r < 0 ? rs_err_name((int)out.r) : "bytes", want);
    ck_assert_ptr_null(out.conn);
    check_no_spin(&out, what);
    worker_stop(&w);
    ck_assert_int_eq(rs_close(k.rd.s), 0);
    kit_free(&k);
}

START_TEST(shutdown_stops_recv_tcp) { shutdown_stops(K_RECV_TCP, 0); }
END_TEST
START_TEST(shutdown_stops_recv_unix) { shutdown_stops(K_RECV_UNIX, 0); }
END_TEST
/* accept(2) on a listener that was shut down: EINVAL, as Python's socket.accept raises */
START_TEST(shutdown_stops_accept_tcp) { shutdown_stops(K_ACCEPT_TCP, -EINVAL); }
END_TEST
/* An AF_UNIX listener that was shut down polls as hung up while accept(2) says EAGAIN: the
 * engine must end the accept (EINVAL, as a blocking accept(2)) instead of re-arming it (it spun
 * a CPU on uring and poll and slept forever on epoll). */
START_TEST(shutdown_stops_accept_unix) { shutdown_stops(K_ACCEPT_UNIX, -EINVAL); }
END_TEST

/* ---- a timeout set while another thread's call reads it --------------------------------------- */

/* rs_settimeout from one thread while another thread's calls read the timeout: each call sees one
 * of the values set, never a torn one (the TSan step reports the plain double this used to be). */
struct flip {
    rs_socket *s;
    atomic_bool stop;
};

static void *flip_timeout(void *p)
{
    struct flip *f = p;
    for (unsigned i = 0; i < 1000000 && !atomic_load(&f->stop); i++)
        ck_assert_int_eq(rs_settimeout(f->s, (i & 1) ? 0.002 : 0.004), 0);
    return NULL;
}

START_TEST(settimeout_while_another_thread_waits)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(sp[0], 0.004), 0);
    struct flip f = { .s = sp[0] };
    atomic_init(&f.stop, false);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, flip_timeout, &f), 0);
    double end = t_now() + 0.3;
    int calls = 0;
    while (t_now() < end && calls < 1000) {
        char b;
        double t0 = t_now();
        ssize_t r = rs_recv(sp[0], &b, 1, 0);
        ck_assert_msg(r == -ETIMEDOUT, "recv returned %zd", r);
        /* one of the two timeouts, never 0 (non-blocking) or a torn value */
        ck_assert_msg(t_now() - t0 >= 0.002 - T_EARLY && t_now() - t0 <= 0.004 + t_slack(), "took %.4f s",
                      t_now() - t0);
        calls++;
    }
    atomic_store(&f.stop, true);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_gt(calls, 10);
    ck_assert_int_eq(rs_close(sp[0]), 0);
    ck_assert_int_eq(rs_close(sp[1]), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("race");
    /* CK timeouts only catch what the hang checks above cannot: a close that itself blocks */
    TCase *tc = t_tcase(s, "race", 30);
    tcase_add_test(tc, race_recv_tcp);
    tcase_add_test(tc, race_recv_unix);
    tcase_add_test(tc, race_recv_udp);
    tcase_add_test(tc, race_recvfrom_udp);
    tcase_add_test(tc, race_recvmsg_udp);
    tcase_add_test(tc, race_accept_tcp);
    tcase_add_test(tc, race_accept_unix);
    tcase_add_test(tc, race_send_tcp_full);
    tcase_add_test(tc, race_sendall_tcp_full);
    tcase_add_test(tc, race_connect_tcp);
    tcase_add_test(tc, race_sendfile_pipe);

    tc = t_tcase(s, "blocked", 20);
    tcase_add_test(tc, blocked_recv_tcp);
    tcase_add_test(tc, blocked_recv_unix);
    tcase_add_test(tc, blocked_recv_udp);
    tcase_add_test(tc, blocked_recvfrom_udp);
    tcase_add_test(tc, blocked_recvmsg_udp);
    tcase_add_test(tc, blocked_accept_tcp);
    tcase_add_test(tc, blocked_accept_unix);
    tcase_add_test(tc, blocked_send_tcp_full);
    tcase_add_test(tc, blocked_sendall_tcp_full);
    tcase_add_test(tc, blocked_connect_tcp);
    tcase_add_test(tc, blocked_sendfile_pipe);

    tc = t_tcase(s, "sendall", 30);
    tcase_add_test(tc, sendall_close_race_unix);
    tcase_add_test(tc, sendall_close_race_tcp);

    tc = t_tcase(s, "closed", 10);
    tcase_add_test(tc, calls_after_close_with_file_open_are_ebadf);
    tcase_add_test(tc, inet_calls_after_close_with_file_open_are_ebadf);
    tcase_add_test(tc, file_read_survives_close);

    tc = t_tcase(s, "shutdown", 10);
    tcase_add_test(tc, shutdown_stops_recv_tcp);
    tcase_add_test(tc, shutdown_stops_recv_unix);
    tcase_add_test(tc, shutdown_stops_accept_tcp);
    tcase_add_test(tc, shutdown_stops_accept_unix);

    tc = t_tcase(s, "timeout", 10);
    tcase_add_test(tc, settimeout_while_another_thread_waits);
    return s;
}

int main(void) { return t_run(make_suite()); }
