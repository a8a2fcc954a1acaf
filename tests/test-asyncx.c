/* Issue #7's completion-API calls on every backend: keeping received bytes past the read callback
 * (rs_conn_read_keep, a starved provided-buffer ring), cancelling queued sends by user pointer
 * (rs_conn_send_cancel), wake-ups from other threads (rs_async_*), and the two roles of a conn
 * (listener or connection). Loops run on the test's thread; peers are threads on raw syscalls. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <ringsock/async.h>

#include "t.h"

/* ---- data: every stream is a slice of one pseudo-random pattern ------------------------------- */

#define PAT_LEN (2u << 20) /* > any stream below: no wrapping to think about */
static unsigned char pat[PAT_LEN];

static void pat_setup(void) { t_fill_pattern(pat, PAT_LEN, 0x7a5c1e09u); }

static bool pat_eq(const void *p, size_t off, size_t len)
{
    return off + len <= PAT_LEN && memcmp(p, pat + off, len) == 0;
}

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void shuffle(int *v, int n, uint32_t seed)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd(&seed) % (uint32_t)(i + 1));
        int x = v[i];
        v[i] = v[j];
        v[j] = x;
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- loops and bounded running (the shapes of test-async.c) ----------------------------------- */

static rs_loop *loop_new(unsigned buf_count, unsigned buf_size)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
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

/* A timer that ticks while the loop runs, so that RS_RUN_ONCE returns often enough to see what
 * other threads change, and that ends the run at a deadline. */
struct guard {
    rs_timer *t;
    double end, tick;
    bool running, fired, stopping;
};

static void guard_cb(rs_timer *t, int status, void *user)
{
    struct guard *g = user;
    g->running = false;
    if (t_now() >= g->end)
        g->fired = true;
    else if (status == 0 && !g->stopping && rs_timer_start(t, g->tick, guard_cb, g) == 0)
        g->running = true;
}

static void guard_start(struct guard *g, rs_loop *l, double seconds, double tick)
{
    memset(g, 0, sizeof *g);
    g->end = t_now() + seconds;
    g->tick = tick;
    ASSERT_ERR(rs_timer_new(&g->t, l), 0);
    ASSERT_ERR(rs_timer_start(g->t, seconds < tick ? seconds : tick, guard_cb, g), 0);
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

#define RUN_UNTIL(l, cond, secs)                                                                    \
    do {                                                                                            \
        struct guard g_;                                                                            \
        guard_start(&g_, (l), (secs), 0.01);                                                        \
        long n_ = 0;                                                                                \
        int r_ = 0;                                                                                 \
        while (!(cond) && !g_.fired && n_++ < RUN_CAP && (r_ = rs_loop_run((l), RS_RUN_ONCE)) >= 0) \
            ;                                                                                       \
        bool ok_ = (cond);                                                                          \
        guard_end(&g_, (l));                                                                        \
        ck_assert_msg(r_ >= 0, "rs_loop_run: %s", rs_err_name(r_));                                 \
        ck_assert_msg(ok_, "still false after %.1f s: %s", (double)(secs), #cond);                  \
    } while (0)

static void run_for(rs_loop *l, double secs)
{
    struct guard g;
    guard_start(&g, l, secs, 0.01);
    for (long n = 0; !g.fired && n < RUN_CAP; n++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    guard_end(&g, l);
}

/* rs_loop_run(RS_RUN_DEFAULT) has no deadline of its own: a watchdog thread ends the test process
 * (CK_FORK: the test fails with this exit status) if it does not return in time. */
struct watchdog {
    pthread_t th;
    atomic_bool done;
    double secs;
    const char *what;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    double end = t_now() + w->secs;
    while (!atomic_load(&w->done)) {
        if (t_now() > end) {
            fprintf(stderr, "watchdog: %s did not return within %.1f s\n", w->what, w->secs);
            _exit(3);
        }
        t_sleep(0.005);
    }
    return NULL;
}

static void watchdog_start(struct watchdog *w, double secs, const char *what)
{
    atomic_init(&w->done, false);
    w->secs = secs;
    w->what = what;
    ck_assert_int_eq(pthread_create(&w->th, NULL, watchdog_main, w), 0);
}

static void watchdog_end(struct watchdog *w)
{
    atomic_store(&w->done, true);
    ck_assert_int_eq(pthread_join(w->th, NULL), 0);
}

/* ---- sockets ---------------------------------------------------------------------------------- */

static void set_buf(int fd, int opt, int bytes)
{
    if (bytes)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes), 0);
}

static int listen_fd(int backlog, struct sockaddr_storage *a, socklen_t *len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    t_loopback(AF_INET, 0, a, len);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)a, *len), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    *len = sizeof *a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)a, len), 0);
    return fd;
}

static int dial(const struct sockaddr_storage *a, socklen_t len, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    set_buf(fd, SO_RCVBUF, rcvbuf);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)a, len), 0);
    return fd;
}

static rs_conn *conn_of(rs_loop *l, int fd)
{
    rs_conn *c;
    ASSERT_ERR(rs_conn_open(&c, l, fd), 0);
    return c;
}

/* A connected loopback pair: the server end a conn of l (send buffer srv_snd unless 0), the
 * client end a blocking fd (receive buffer cli_rcv unless 0). */
static rs_conn *pair(rs_loop *l, int *client, int srv_snd, int cli_rcv)
{
    struct sockaddr_storage a;
    socklen_t len;
    int lfd = listen_fd(1, &a, &len);
    *client = dial(&a, len, cli_rcv);
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(s, 0);
    close(lfd);
    set_buf(s, SO_SNDBUF, srv_snd);
    return conn_of(l, s);
}

static void count_close(rs_conn *c, void *user)
{
    (void)c;
    ++*(int *)user;
}

static void close_and_wait(rs_loop *l, rs_conn *c)
{
    int closed = 0;
    ASSERT_ERR(rs_conn_close(c, count_close, &closed), 0);
    RUN_UNTIL(l, closed == 1, 5);
    run_for(l, 0.02);
    ck_assert_int_eq(closed, 1);
}

/* Write len pattern bytes from off on a blocking fd; 0 or -errno (threads cannot ck_assert). */
static int write_pat(int fd, size_t off, size_t len)
{
    while (len) {
        ssize_t w = send(fd, pat + off, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        off += (size_t)w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- keep: kept deliveries stay intact, whatever else the ring does ---------------------------- */

/* Whether kept bytes are the loop's provided buffers, lent: io_uring with multishot receive.
 * Elsewhere (epoll, poll, io_uring without multishot: RINGSOCK_URING_LEGACY=1 or an old kernel)
 * they are a copy. */
static bool lends_ring(rs_loop *l)
{
    return rs_loop_backend(l) == RS_BACKEND_URING && (rs_loop_features(l) & RS_FEAT_MULTISHOT_RECV);
}

#define KEEP_MSGS 200
#define KEEP_MORE 100
#define KEEP_DELS 1024 /* deliveries recorded (more only if the kernel splits messages) */
#define KEEP_CAP 100   /* never more kept at once: the ring (128) needs buffers to receive into */
#define KEEP_RING 128

struct kdel {
    size_t off, n;
    rs_rbuf *b;
};

struct keep {
    bool lends;              /* kept bytes are the ring's own buffers (lends_ring) */
    atomic_size_t delivered; /* bytes so far, for the peer to pace its messages */
    size_t got;
    int deliveries, kept_now, kept_total, longest_run, run;
    bool keeping;
    struct kdel d[KEEP_DELS];
    int bad, not_zero_copy, eof, errors, first_err;
    char why[200];
    int keep_null_res, keep_end_res;
    bool tried_null;
};

static void k_bad(struct keep *k, const char *why, int i)
{
    if (!k->bad++)
        snprintf(k->why, sizeof k->why, "delivery %d (byte %zu): %s", i, k->got, why);
}

/* Every 3rd delivery, and two bursts of many in a row. */
static bool keep_policy(int i) { return i % 3 == 0 || (i >= 50 && i < 80) || (i >= 140 && i < 170); }

static void k_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct keep *k = user;
    if (n <= 0) {
        rs_rbuf *b = NULL;
        k->keep_end_res = rs_conn_read_keep(c, &b);
        if (n == 0)
            k->eof++;
        else if (!k->errors++)
            k->first_err = (int)n;
        return;
    }
    int i = k->deliveries++;
    if (!pat_eq(data, k->got, (size_t)n))
        k_bad(k, "bytes differ from what was sent (lost or reordered)", i);
    if (!k->tried_null) {
        /* a failed keep must not use up the delivery: delivery 0 is kept just below */
        k->tried_null = true;
        k->keep_null_res = rs_conn_read_keep(c, NULL);
    }
    bool kept = false;
    if (i < KEEP_DELS) {
        k->d[i] = (struct kdel){ .off = k->got, .n = (size_t)n, .b = NULL };
        if (k->keeping && keep_policy(i) && k->kept_now < KEEP_CAP) {
            int r = rs_conn_read_keep(c, &k->d[i].b);
            if (r != 0) {
                k_bad(k, rs_err_name(r), i);
            } else {
                kept = true;
                k->kept_now++;
                k->kept_total++;
                if (k->lends && rs_rbuf_data(k->d[i].b) != data)
                    k->not_zero_copy++;
                if (!pat_eq(rs_rbuf_data(k->d[i].b), k->got, (size_t)n))
                    k_bad(k, "kept bytes differ from the delivery", i);
            }
        }
    }
    k->run = kept ? k->run + 1 : 0;
    if (k->run > k->longest_run)
        k->longest_run = k->run;
    k->got += (size_t)n;
    atomic_store(&k->delivered, k->got);
}

static size_t k_len(int i) { return 1 + (((uint32_t)i * 2654435761u) >> 9) % 3000; }

/* The peer: messages first..first+count-1, each after the previous one was delivered (so most
 * are a delivery of their own), except [burst_lo, burst_hi), sent back to back. */
struct kpeer {
    int fd;
    struct keep *k;
    int first, count, burst_lo, burst_hi;
    size_t off;
    int err;
};

static void *k_peer(void *arg)
{
    struct kpeer *p = arg;
    for (int i = p->first; i < p->first + p->count && !p->err; i++) {
        size_t len = k_len(i);
        p->err = write_pat(p->fd, p->off, len);
        p->off += len;
        if (i >= p->burst_lo && i < p->burst_hi)
            continue;
        double end = t_now() + 5;
        while (atomic_load(&p->k->delivered) < p->off && !p->err) {
            if (t_now() > end)
                p->err = -ETIMEDOUT;
            t_sleep(0.0002);
        }
    }
    return NULL;
}

static size_t k_total(int first, int count)
{
    size_t s = 0;
    for (int i = first; i < first + count; i++)
        s += k_len(i);
    return s;
}

static void k_verify(struct keep *k, int i, const char *when)
{
    const void *p = rs_rbuf_data(k->d[i].b);
    ck_assert_ptr_nonnull(p);
    ck_assert_msg(pat_eq(p, k->d[i].off, k->d[i].n), "kept delivery %d (%zu bytes at %zu) changed %s", i,
                  k->d[i].n, k->d[i].off, when);
}

START_TEST(keep_survives_release_scrambled_and_conn_close)
{
    rs_loop *l = loop_new(KEEP_RING, 4096);
    int cfd;
    rs_conn *c = pair(l, &cfd, 0, 0);
    static struct keep k;
    memset(&k, 0, sizeof k);
    atomic_init(&k.delivered, 0);
    k.lends = lends_ring(l);
    k.keeping = true;
    k.keep_null_res = k.keep_end_res = 1;

    rs_rbuf *b = NULL;
    ASSERT_ERR(rs_conn_read_keep(c, &b), -EINVAL); /* no read started: not in a callback */
    ASSERT_ERR(rs_conn_read_start(c, k_read, &k), 0);
    ASSERT_ERR(rs_conn_read_keep(c, &b), -EINVAL); /* reading, but not in its callback */
    ck_assert_ptr_null(b);

    struct kpeer p = { .fd = cfd, .k = &k, .first = 0, .count = KEEP_MSGS, .burst_lo = 100, .burst_hi = 130 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, k_peer, &p), 0);
    size_t total = k_total(0, KEEP_MSGS);
    RUN_UNTIL(l, k.got >= total || k.errors || k.eof || k.bad, 15);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(p.err == 0, "peer: %s", rs_err_name(p.err));
    ck_assert_msg(k.bad == 0, "%d problems, first: %s", k.bad, k.why);
    ck_assert_msg(k.errors == 0 && k.eof == 0, "read callback: %s", rs_err_name(k.first_err));
    ck_assert_uint_eq(k.got, total);
    ASSERT_ERR(k.keep_null_res, -EINVAL);
    ck_assert_ptr_nonnull(k.d[0].b); /* the failed NULL keep did not use delivery 0 up */
    ck_assert_msg(k.deliveries >= 100 && k.deliveries <= KEEP_DELS,
                  "%d deliveries for %d messages: the test shows little", k.deliveries, KEEP_MSGS);
    ck_assert_msg(k.longest_run >= 10, "longest run of kept deliveries %d", k.longest_run);
    ck_assert_msg(k.not_zero_copy == 0,
                  "io_uring (multishot receive): %d kept buffers are copies, not the ring's buffer",
                  k.not_zero_copy);
    ASSERT_ERR(rs_conn_read_keep(c, &b), -EINVAL);
    ASSERT_ERR(rs_conn_read_keep(NULL, &b), -EINVAL);

    /* release half of them, scrambled; then more traffic reuses those buffers */
    int idx[KEEP_DELS], nk = 0;
    for (int i = 0; i < k.deliveries && i < KEEP_DELS; i++)
        if (k.d[i].b)
            idx[nk++] = i;
    ck_assert_int_eq(nk, k.kept_total);
    ck_assert_int_ge(nk, 60);
    shuffle(idx, nk, 0xc0ffeeu);
    for (int j = 0; j < nk / 2; j++) {
        k_verify(&k, idx[j], "before its release");
        rs_rbuf_release(k.d[idx[j]].b);
        k.d[idx[j]].b = NULL;
        k.kept_now--;
    }
    for (int j = nk / 2; j < nk; j++)
        k_verify(&k, idx[j], "when others were released");

    k.keeping = false;
    int dels_before = k.deliveries;
    struct kpeer p2 = { .fd = cfd,
                        .k = &k,
                        .first = KEEP_MSGS,
                        .count = KEEP_MORE,
                        .off = total,
                        .burst_lo = -1,
                        .burst_hi = -1 };
    ck_assert_int_eq(pthread_create(&th, NULL, k_peer, &p2), 0);
    total += k_total(KEEP_MSGS, KEEP_MORE);
    RUN_UNTIL(l, k.got >= total || k.errors || k.eof || k.bad, 15);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(p2.err == 0, "peer: %s", rs_err_name(p2.err));
    ck_assert_msg(k.bad == 0, "%d problems, first: %s", k.bad, k.why);
    ck_assert_uint_eq(k.got, total);
    ck_assert_int_ge(k.deliveries - dels_before, KEEP_MORE / 2);
    for (int j = nk / 2; j < nk; j++)
        k_verify(&k, idx[j], "while later deliveries went through the ring");

    /* EOF: nothing to keep there */
    ck_assert_int_eq(shutdown(cfd, SHUT_WR), 0);
    RUN_UNTIL(l, k.eof == 1 || k.errors, 5);
    ASSERT_ERR(k.keep_end_res, -EINVAL);

    /* kept bytes outlive their conn: the rest is released after the close, scrambled again */
    close_and_wait(l, c);
    shuffle(idx + nk / 2, nk - nk / 2, 0xfeedu);
    for (int j = nk / 2; j < nk; j++) {
        k_verify(&k, idx[j], "after the conn was closed");
        rs_rbuf_release(k.d[idx[j]].b);
        k.d[idx[j]].b = NULL;
    }
    rs_rbuf_release(NULL); /* harmless */
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- keep: a tiny ring, every buffer kept: receiving waits for a release, without spinning ---- */

/* io_uring grows the ring under pressure, up to 8x buf_count (rs_loop_stats.recv_bufs): the
 * callback keeps every delivery, and the ring is starved once every registered buffer is kept
 * and no delivery came for STARVE_HOLD. Where kept bytes are copies (!lends_ring), the test
 * keeps 4 and holds them as long. */
#define STARVE_BUFS 4
#define STARVE_MAX (8 * STARVE_BUFS)
#define STARVE_MSG 1000
#define STARVE_BYTES (256u * 1024)
#define STARVE_HOLD 0.2

struct starve {
    bool lends; /* kept bytes are the ring's own buffers (lends_ring) */
    rs_loop *l;
    size_t got;
    atomic_size_t delivered;
    int kept, deliveries, bad, eof, errors, first_err;
    rs_rbuf *b[STARVE_MAX];
    size_t boff[STARVE_MAX], bn[STARVE_MAX];
    bool released;
    /* since the last keep: the starved period once nothing more comes */
    double t_kept, cpu0;
    struct rs_loop_stats st0;
    long iters, idle;
};

static unsigned long long recv_bufs(rs_loop *l)
{
    struct rs_loop_stats st;
    ASSERT_ERR(rs_loop_stats(l, &st), 0);
    return st.recv_bufs;
}

/* Every buffer the loop can receive into is kept (copying backends: the 4 the test keeps). */
static bool sv_full(struct starve *s)
{
    if (s->kept == 0 || s->released)
        return false;
    return s->lends ? (unsigned long long)s->kept == recv_bufs(s->l) : s->kept == STARVE_BUFS;
}

static void sv_release_all(struct starve *s, uint32_t seed)
{
    int order[STARVE_MAX];
    for (int i = 0; i < s->kept; i++)
        order[i] = i;
    shuffle(order, s->kept, seed);
    for (int j = 0; j < s->kept; j++) {
        int i = order[j];
        if (!pat_eq(rs_rbuf_data(s->b[i]), s->boff[i], s->bn[i]))
            s->bad++;
        rs_rbuf_release(s->b[i]);
        s->b[i] = NULL;
    }
    s->released = true;
}

static void sv_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct starve *s = user;
    if (n <= 0) {
        if (n == 0)
            s->eof++;
        else if (!s->errors++)
            s->first_err = (int)n;
        return;
    }
    s->deliveries++;
    if (!pat_eq(data, s->got, (size_t)n))
        s->bad++;
    if (!s->released && (s->lends || s->kept < STARVE_BUFS)) {
        int i = s->kept;
        if (i == STARVE_MAX || rs_conn_read_keep(c, &s->b[i]) != 0) {
            s->bad++; /* more buffers than 8x buf_count, or keep failed */
        } else {
            s->boff[i] = s->got;
            s->bn[i] = (size_t)n;
            s->kept++;
            s->t_kept = t_now();
            s->cpu0 = cpu_seconds();
            rs_loop_stats(s->l, &s->st0);
            s->iters = s->idle = 0;
        }
    }
    s->got += (size_t)n;
    atomic_store(&s->delivered, s->got);
}

/* The peer: STARVE_MSG-byte messages, each once the previous one was delivered (one buffer each),
 * until one is not delivered within 0.1 s (starved); then the rest of len at once, then EOF. */
struct starve_peer {
    int fd;
    size_t len;
    atomic_size_t *delivered;
    int err;
};

static void *starve_peer(void *arg)
{
    struct starve_peer *p = arg;
    size_t off = 0;
    bool paced = true;
    while (paced && off + STARVE_MSG <= p->len && !p->err) {
        p->err = write_pat(p->fd, off, STARVE_MSG);
        off += STARVE_MSG;
        double end = t_now() + 0.1;
        while (atomic_load(p->delivered) < off && paced)
            if (t_now() > end)
                paced = false;
            else
                t_sleep(0.0002);
    }
    if (!p->err)
        p->err = write_pat(p->fd, off, p->len - off);
    if (!p->err && shutdown(p->fd, SHUT_WR) < 0)
        p->err = -errno;
    return NULL;
}

static void starve_init(struct starve *s, rs_loop *l)
{
    memset(s, 0, sizeof *s);
    s->l = l;
    s->lends = lends_ring(l);
    atomic_init(&s->delivered, 0);
}

START_TEST(keep_all_buffers_starves_without_spinning)
{
    rs_loop *l = loop_new(STARVE_BUFS, 4096);
    int cfd;
    rs_conn *c = pair(l, &cfd, 0, 0);
    static struct starve s;
    starve_init(&s, l);
    ASSERT_ERR(rs_conn_read_start(c, sv_read, &s), 0);
    struct starve_peer p = { .fd = cfd, .len = STARVE_BYTES, .delivered = &s.delivered };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, starve_peer, &p), 0);

    /* the guard's coarse tick bounds the run and lets the test look at the clock; the loop's
     * iterations while every buffer is kept are counted, and those that delivered nothing */
    struct guard g;
    guard_start(&g, l, 15, 0.05);
    long iters = 0, iters_starved = 0, idle_starved = 0;
    double starved_for = 0, cpu = 0;
    int kept = 0;
    unsigned long long bufs = 0, subs = 0, waits = 0;
    while (!((s.eof && s.released) || s.errors || s.bad) && !g.fired && iters++ < RUN_CAP) {
        if (sv_full(&s) && t_now() - s.t_kept >= STARVE_HOLD) {
            struct rs_loop_stats st1;
            rs_loop_stats(l, &st1);
            starved_for = t_now() - s.t_kept;
            cpu = cpu_seconds() - s.cpu0;
            subs = st1.submitted - s.st0.submitted;
            waits = st1.waits - s.st0.waits;
            iters_starved = s.iters;
            idle_starved = s.idle;
            kept = s.kept;
            bufs = st1.recv_bufs;
            sv_release_all(&s, 0x5eedu);
            continue;
        }
        bool full = sv_full(&s);
        int before = s.deliveries;
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
        if (full) {
            s.iters++;
            s.idle += s.deliveries == before;
        }
    }
    guard_end(&g, l);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(p.err == 0, "peer: %s", rs_err_name(p.err));
    ck_assert_msg(s.errors == 0, "read callback: %s", rs_err_name(s.first_err));
    ck_assert_msg(s.bad == 0, "%d bad deliveries or kept buffers (kept %d, recv_bufs %llu)", s.bad, s.kept,
                  recv_bufs(l));
    ck_assert_msg(s.released, "every buffer never stayed kept for %.1f s (kept %d, recv_bufs %llu)",
                  STARVE_HOLD, s.kept, recv_bufs(l));
    ck_assert_msg(s.eof == 1, "no EOF: %zu of %u bytes after 15 s", s.got, STARVE_BYTES);
    ck_assert_uint_eq(s.got, STARVE_BYTES);
    fprintf(stderr,
            "# %d kept (recv_bufs %llu), starved %.3f s: %ld loop iterations (%ld idle), "
            "%llu submissions, %llu waits, %.3f s CPU\n",
            kept, bufs, starved_for, iters_starved, idle_starved, subs, waits, cpu);
    ck_assert_msg(idle_starved < 100, "%ld idle loop iterations while starved: spinning", idle_starved);
    if (s.lends) {
        ck_assert_msg(bufs <= STARVE_MAX, "recv_bufs %llu > 8x buf_count", bufs);
        ck_assert_msg(iters_starved < 100 && subs < 100 && waits < 100,
                      "while starved: %ld iterations, %llu submissions, %llu waits", iters_starved, subs,
                      waits);
        ck_assert_msg(cpu < 0.1, "%.3f s CPU in %.3f s starved", cpu, starved_for);
    }
    close_and_wait(l, c);
    close(cfd);
    loop_free(l);
}
END_TEST

/* Every buffer kept and the conn closed before any is released: the close still completes (the
 * starved receive is cancelled); the buffers are released afterwards, intact. */
START_TEST(keep_all_buffers_then_close_before_release)
{
    rs_loop *l = loop_new(STARVE_BUFS, 4096);
    int cfd;
    rs_conn *c = pair(l, &cfd, 0, 0);
    static struct starve s;
    starve_init(&s, l);
    ASSERT_ERR(rs_conn_read_start(c, sv_read, &s), 0);
    struct starve_peer p = { .fd = cfd, .len = 128 * 1024, .delivered = &s.delivered };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, starve_peer, &p), 0);
    RUN_UNTIL(l, (sv_full(&s) && t_now() - s.t_kept >= 0.15) || s.errors || s.bad, 10);
    ck_assert_int_eq(s.bad, 0);
    close_and_wait(l, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(p.err == 0 || p.err == -EPIPE || p.err == -ECONNRESET, "peer: %s", rs_err_name(p.err));
    /* the kept buffers are the loop's memory: freeing it now would unmap them under the caller */
    if (s.lends)
        ASSERT_ERR(rs_loop_free(l), -EBUSY);
    sv_release_all(&s, 0xabcdu);
    ck_assert_int_eq(s.bad, 0);
    close(cfd);
    loop_free(l);
}
END_TEST

/* Two conns share a tiny ring and keep every delivery until every buffer is kept: both receives
 * wait. Closing one of them must not need a release; after the release (the closed conn's kept
 * bytes included) the other reads on to its EOF, in order. */
struct two;

struct two_conn {
    struct two *t;
    int idx;
    size_t got;
    atomic_size_t delivered;
    int eof, errors, first_err, closed;
};

struct two {
    rs_loop *l;
    bool lends;
    int kept, bad;
    rs_rbuf *b[STARVE_MAX];
    size_t boff[STARVE_MAX], bn[STARVE_MAX];
    bool released;
    double t_kept;
    struct two_conn c[2];
};

static void two_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct two_conn *tc = user;
    struct two *t = tc->t;
    if (n <= 0) {
        if (n == 0)
            tc->eof++;
        else if (!tc->errors++)
            tc->first_err = (int)n;
        return;
    }
    if (!pat_eq(data, tc->got, (size_t)n))
        t->bad++;
    if (!t->released && (t->lends || t->kept < STARVE_BUFS)) {
        int i = t->kept;
        if (i == STARVE_MAX || rs_conn_read_keep(c, &t->b[i]) != 0) {
            t->bad++;
        } else {
            t->boff[i] = tc->got;
            t->bn[i] = (size_t)n;
            t->kept++;
            t->t_kept = t_now();
        }
    }
    tc->got += (size_t)n;
    atomic_store(&tc->delivered, tc->got);
}

static bool two_full(struct two *t)
{
    if (t->kept == 0 || t->released)
        return false;
    return t->lends ? (unsigned long long)t->kept == recv_bufs(t->l) : t->kept == STARVE_BUFS;
}

static void two_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct two_conn *)user)->closed++;
}

START_TEST(keep_starves_two_conns_one_closes)
{
    rs_loop *l = loop_new(STARVE_BUFS, 4096);
    static struct two t;
    memset(&t, 0, sizeof t);
    t.l = l;
    t.lends = lends_ring(l);
    int cfd[2];
    rs_conn *c[2];
    struct starve_peer p[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        c[i] = pair(l, &cfd[i], 0, 0);
        t.c[i].t = &t;
        t.c[i].idx = i;
        atomic_init(&t.c[i].delivered, 0);
        ASSERT_ERR(rs_conn_read_start(c[i], two_read, &t.c[i]), 0);
        p[i] = (struct starve_peer){ .fd = cfd[i], .len = 96 * 1024, .delivered = &t.c[i].delivered };
        ck_assert_int_eq(pthread_create(&th[i], NULL, starve_peer, &p[i]), 0);
    }
    RUN_UNTIL(l, (two_full(&t) && t_now() - t.t_kept >= 0.15) || t.bad, 10);
    ck_assert_int_eq(t.bad, 0);
    int kept = t.kept;
    size_t got1 = t.c[1].got;

    /* close conn 0 while every buffer is still out */
    ASSERT_ERR(rs_conn_close(c[0], two_closed, &t.c[0]), 0);
    RUN_UNTIL(l, t.c[0].closed == 1, 5);
    ck_assert_int_eq(t.kept, kept);
    if (t.lends)
        ck_assert_msg(t.c[1].got == got1, "conn 1 received while every buffer was kept");

    int order[STARVE_MAX];
    for (int i = 0; i < t.kept; i++)
        order[i] = i;
    shuffle(order, t.kept, 0x2c0bu);
    for (int j = 0; j < t.kept; j++) {
        int i = order[j];
        ck_assert_msg(pat_eq(rs_rbuf_data(t.b[i]), t.boff[i], t.bn[i]), "kept buffer %d changed", i);
        rs_rbuf_release(t.b[i]);
    }
    t.released = true;
    RUN_UNTIL(l, t.c[1].eof == 1 || t.c[1].errors || t.bad, 10);
    ck_assert_msg(t.c[1].errors == 0, "conn 1: %s", rs_err_name(t.c[1].first_err));
    ck_assert_int_eq(t.bad, 0);
    ck_assert_uint_eq(t.c[1].got, 96 * 1024);
    fprintf(stderr, "# two conns: %d kept, recv_bufs %llu\n", kept, recv_bufs(l));
    close_and_wait(l, c[1]);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_msg(p[i].err == 0 || (i == 0 && (p[i].err == -EPIPE || p[i].err == -ECONNRESET)),
                      "peer %d: %s", i, rs_err_name(p[i].err));
        close(cfd[i]);
    }
    loop_free(l);
}
END_TEST

/* ---- send_cancel ------------------------------------------------------------------------------ */

/* Cancelling goes by user pointer, so every send made with user X passes the same pointer X to
 * its callback. The test tells them apart by the contract's orders: a cancel call cancels the
 * last r not-yet-cancelled sends of X (everything of X behind the operation in flight), their
 * -ECANCELED callbacks come in queue order, and successes come in queue order. */
#define SC_MAX 160
#define SC_USERS 26

struct sc;

struct sc_rec {
    int user; /* 'A'.. */
    size_t off, len;
    bool want_cancel; /* a cancel call counted it */
    int calls, seq;
    ssize_t status;
    bool in_cancel_call;
};

struct sc_user {
    struct sc *sc;
    int letter;
};

struct sc {
    struct sc_rec r[SC_MAX];
    struct sc_user u[SC_USERS];
    int n, seq, calls, unexpected, in_cancel;
    bool closing;
    size_t off;
    char why[200];
    /* from the first successful callback of this user (any callback if cancel_any): cancel
     * cancel_user's sends, then make a send of send_len bytes with user send_user (if set) */
    int cancel_from_cb_of, cancel_user, cancel_res, send_user;
    bool cancel_any;
    size_t send_len;
    rs_conn *c;
};

static void sc_init(struct sc *sc, rs_conn *c)
{
    memset(sc, 0, sizeof *sc);
    sc->c = c;
    sc->cancel_res = 1000;
    for (int i = 0; i < SC_USERS; i++)
        sc->u[i] = (struct sc_user){ sc, 'A' + i };
}

static void *sc_u(struct sc *sc, int letter) { return &sc->u[letter - 'A']; }

static void sc_unexpected(struct sc *sc, int letter, ssize_t status)
{
    if (!sc->unexpected++)
        snprintf(sc->why, sizeof sc->why, "a callback for user %c with status %zd (%s) matches no send",
                 letter, status, status < 0 ? rs_err_name((int)status) : "ok");
}

/* Mark the last r sends of user letter that are not marked yet: the ones a cancel took. */
static void sc_mark(struct sc *sc, int letter, int r)
{
    for (int i = sc->n - 1; i >= 0 && r > 0; i--)
        if (sc->r[i].user == letter && !sc->r[i].want_cancel) {
            sc->r[i].want_cancel = true;
            r--;
        }
    ck_assert_msg(r == 0, "rs_conn_send_cancel counted more sends of %c than there are", letter);
}

static int sc_cancel(struct sc *sc, int letter)
{
    sc->in_cancel++;
    int r = rs_conn_send_cancel(sc->c, sc_u(sc, letter));
    sc->in_cancel--;
    if (r > 0)
        sc_mark(sc, letter, r);
    return r;
}

static void sc_send(struct sc *sc, int letter, size_t len);

/* The earliest send of user letter without a callback yet, counted cancelled or not. */
static struct sc_rec *sc_find(struct sc *sc, int letter, bool cancelled)
{
    for (int i = 0; i < sc->n; i++)
        if (sc->r[i].user == letter && sc->r[i].calls == 0 && sc->r[i].want_cancel == cancelled)
            return &sc->r[i];
    return NULL;
}

static void sc_sent(rs_conn *c, ssize_t status, void *user)
{
    struct sc_user *u = user;
    struct sc *sc = u->sc;
    sc->calls++;
    bool cx = status == -ECANCELED;
    struct sc_rec *q = sc_find(sc, u->letter, cx);
    if (!q && cx && sc->closing)
        q = sc_find(sc, u->letter, false); /* ended by the close, not by a cancel call */
    if (!q) {
        sc_unexpected(sc, u->letter, status);
        return;
    }
    q->calls++;
    q->status = status;
    q->seq = ++sc->seq;
    q->in_cancel_call = sc->in_cancel > 0;
    if (sc->cancel_from_cb_of == u->letter && (status >= 0 || sc->cancel_any)) {
        sc->cancel_from_cb_of = 0;
        sc->cancel_res = sc_cancel(sc, sc->cancel_user);
        if (sc->send_user)
            sc_send(sc, sc->send_user, sc->send_len);
    }
    (void)c;
}

static struct sc_rec *sc_rec_new(struct sc *sc, int letter, size_t len)
{
    ck_assert_int_lt(sc->n, SC_MAX);
    ck_assert_uint_le(sc->off + len, PAT_LEN);
    struct sc_rec *q = &sc->r[sc->n++];
    *q = (struct sc_rec){ .user = letter, .off = sc->off, .len = len };
    sc->off += len;
    return q;
}

static void sc_send(struct sc *sc, int letter, size_t len)
{
    struct sc_rec *q = sc_rec_new(sc, letter, len);
    ASSERT_ERR(rs_conn_send(sc->c, pat + q->off, len, sc_sent, sc_u(sc, letter)), 0);
}

/* One vectored send of pieces consecutive pattern slices of piece bytes. */
static void sc_sendv(struct sc *sc, int letter, int pieces, size_t piece)
{
    struct sc_rec *q = sc_rec_new(sc, letter, (size_t)pieces * piece);
    struct iovec iov[64];
    ck_assert_int_le(pieces, 64);
    for (int i = 0; i < pieces; i++)
        iov[i] = (struct iovec){ pat + q->off + (size_t)i * piece, piece };
    ASSERT_ERR(rs_conn_sendv(sc->c, iov, pieces, sc_sent, sc_u(sc, letter)), 0);
}

/* A sendfile of len bytes of pfd, a file holding the whole pattern. */
static void sc_sendfile(struct sc *sc, int letter, int pfd, size_t len)
{
    struct sc_rec *q = sc_rec_new(sc, letter, len);
    ASSERT_ERR(rs_conn_sendfile(sc->c, pfd, (off_t)q->off, len, sc_sent, sc_u(sc, letter)), 0);
}

static int pattern_file(void)
{
    int fd = memfd_create("asyncx-pattern", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, pat, PAT_LEN), (ssize_t)PAT_LEN);
    return fd;
}

static bool sc_all_called(const struct sc *sc)
{
    for (int i = 0; i < sc->n; i++)
        if (sc->r[i].calls == 0)
            return false;
    return true;
}

/* Every send: one callback, never inside rs_conn_send_cancel; -ECANCELED iff a cancel counted it,
 * else its whole length; successes in queue order, and a user's cancellations in queue order. */
static void sc_check(const struct sc *sc)
{
    ck_assert_msg(sc->unexpected == 0, "%d unexpected callbacks, first: %s", sc->unexpected, sc->why);
    int last_ok = 0, last_cx[SC_USERS] = { 0 };
    for (int i = 0; i < sc->n; i++) {
        const struct sc_rec *q = &sc->r[i];
        ck_assert_msg(q->calls == 1, "send %d (user %c): %d callbacks", i, q->user, q->calls);
        ck_assert_msg(!q->in_cancel_call, "send %d's callback ran inside rs_conn_send_cancel", i);
        if (q->want_cancel) {
            ck_assert_msg(q->status == -ECANCELED, "send %d (user %c) was counted cancelled, status %zd", i,
                          q->user, q->status);
            ck_assert_msg(q->seq > last_cx[q->user - 'A'], "user %c: cancellation of send %d out of order",
                          q->user, i);
            last_cx[q->user - 'A'] = q->seq;
        } else if (!sc->closing || q->status != -ECANCELED) {
            ck_assert_msg(q->status == (ssize_t)q->len, "send %d (user %c): status %zd (%s), length %zu", i,
                          q->user, q->status, q->status < 0 ? rs_err_name((int)q->status) : "ok", q->len);
            ck_assert_msg(q->seq > last_ok, "send %d (user %c) completed out of order", i, q->user);
            last_ok = q->seq;
        }
    }
}

/* A peer that reads only as far as it is allowed (SIZE_MAX: to EOF), into buf. */
#define SINK_CAP (4u << 20)

struct sink {
    int fd;
    atomic_size_t allow;
    unsigned char *buf;
    size_t got;
    int err;
    bool eof;
    pthread_t th;
};

static void *sink_main(void *arg)
{
    struct sink *k = arg;
    double end = t_now() + 20;
    while (t_now() < end) {
        size_t allow = atomic_load(&k->allow);
        if (k->got >= allow) {
            t_sleep(0.001);
            continue;
        }
        size_t want = allow - k->got;
        if (want > 65536)
            want = 65536;
        if (want > SINK_CAP - k->got)
            want = SINK_CAP - k->got;
        if (!want) {
            k->err = -EFBIG;
            return NULL;
        }
        struct pollfd pf = { .fd = k->fd, .events = POLLIN };
        if (poll(&pf, 1, 50) == 0)
            continue;
        ssize_t n = recv(k->fd, k->buf + k->got, want, MSG_DONTWAIT);
        if (n == 0) {
            k->eof = true;
            return NULL;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            k->err = -errno;
            return NULL;
        }
        k->got += (size_t)n;
    }
    k->err = -ETIMEDOUT;
    return NULL;
}

static void sink_start(struct sink *k, int fd, size_t allow)
{
    memset(k, 0, sizeof *k);
    k->fd = fd;
    atomic_init(&k->allow, allow);
    k->buf = malloc(SINK_CAP);
    ck_assert_ptr_nonnull(k->buf);
    ck_assert_int_eq(pthread_create(&k->th, NULL, sink_main, k), 0);
}

/* The send-cancel tests' start: a loop, a conn in sc whose peer *cfd reads only what the sink k
 * is allowed to (nothing yet). */
static rs_loop *sc_start(struct sc *sc, struct sink *k, int *cfd)
{
    rs_loop *l = loop_new(0, 0);
    sc_init(sc, pair(l, cfd, 4096, 4096));
    sink_start(k, *cfd, 0);
    return l;
}

/* After the conn was closed: the peer read exactly the sends no cancel took, in order. */
static void sink_check(struct sink *k, const struct sc *sc)
{
    atomic_store(&k->allow, SIZE_MAX);
    ck_assert_int_eq(pthread_join(k->th, NULL), 0);
    ck_assert_msg(k->err == 0, "peer: %s", rs_err_name(k->err));
    ck_assert_msg(k->eof, "peer: no EOF");
    size_t at = 0;
    for (int i = 0; i < sc->n; i++) {
        const struct sc_rec *q = &sc->r[i];
        if (q->status == -ECANCELED)
            continue;
        ck_assert_msg(at + q->len <= k->got,
                      "peer got %zu bytes: send %d (user %c, %zu bytes at %zu) missing", k->got, i, q->user,
                      q->len, at);
        ck_assert_msg(pat_eq(k->buf + at, q->off, q->len),
                      "peer's bytes at %zu are not send %d (user %c): a cancelled send went out, or a hole",
                      at, i, q->user);
        at += q->len;
    }
    ck_assert_msg(at == k->got, "peer got %zu bytes, the completed sends hold %zu: a cancelled send went out",
                  k->got, at);
    free(k->buf);
}

static size_t sc_bytes(const struct sc *sc, bool cancelled)
{
    size_t s = 0;
    for (int i = 0; i < sc->n; i++)
        if (sc->r[i].want_cancel == cancelled)
            s += sc->r[i].len;
    return s;
}

/* A peer that does not read: a 1 MiB send F is in flight (the conn was idle), then ten sends
 * A,B,A,C,A,B,A,C,A,B, a vectored A, a C, a vectored B, a sendfile A and a sendfile C queue
 * behind it. Cancelling A takes the seven A's, from the loop; the rest goes out whole once the
 * peer reads. */
START_TEST(send_cancel_queued_by_user)
{
    static struct sc sc;
    struct sink k;
    int cfd;
    rs_loop *l = sc_start(&sc, &k, &cfd);
    rs_conn *c = sc.c;

    sc_send(&sc, 'F', 1u << 20);
    const char *who = "ABACABACAB";
    for (int i = 0; i < 10; i++)
        sc_send(&sc, who[i], 1000 + 37 * (size_t)i);
    sc_sendv(&sc, 'A', 3, 500);
    sc_send(&sc, 'C', 700);
    sc_sendv(&sc, 'B', 2, 300);
    int pfd = pattern_file();
    sc_sendfile(&sc, 'A', pfd, 5000);
    sc_sendfile(&sc, 'C', pfd, 3000);
    ck_assert_int_eq(sc.calls, 0);

    ck_assert_int_eq(sc_cancel(&sc, 'A'), 7);
    ck_assert_int_eq(sc_cancel(&sc, 'D'), 0); /* no send has that user */
    ck_assert_int_eq(sc_cancel(&sc, 'F'), 0); /* in flight: goes on */
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 0); /* already taken */
    ASSERT_ERR(rs_conn_send_cancel(NULL, sc_u(&sc, 'A')), -EINVAL);
    ck_assert_msg(sc.calls == 0, "%d callbacks inside rs_conn_send_cancel", sc.calls);

    run_for(l, 0.1);
    ck_assert_msg(sc.calls == 7, "%d callbacks while the peer does not read, want the 7 cancelled", sc.calls);
    for (int i = 0; i < sc.n; i++)
        ck_assert_int_eq(sc.r[i].calls, sc.r[i].want_cancel ? 1 : 0);
    ck_assert_uint_ge(sc_bytes(&sc, false), rs_conn_send_pending(c));

    atomic_store(&k.allow, SIZE_MAX);
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 15);
    sc_check(&sc);
    ck_assert_uint_eq(rs_conn_send_pending(c), 0);
    close_and_wait(l, c);
    sink_check(&k, &sc);
    close(pfd);
    close(cfd);
    loop_free(l);
}
END_TEST

/* What the operation in flight covers is never cancelled: the 1 MiB A1 goes on when A is
 * cancelled; once the peer has read part of it, the next operation may gather what is queued
 * (so a vectored V may be split across it): V is then cancelled whole or not at all. */
START_TEST(send_cancel_spares_sends_in_flight)
{
    static struct sc sc;
    struct sink k;
    int cfd;
    rs_loop *l = sc_start(&sc, &k, &cfd);
    rs_conn *c = sc.c;

    sc_send(&sc, 'A', 1u << 20);
    sc_send(&sc, 'A', 1000);
    sc_send(&sc, 'B', 1000);
    sc_sendv(&sc, 'A', 2, 400);
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 2);
    ck_assert_msg(!sc.r[0].want_cancel, "the send in flight was counted as cancelled");
    run_for(l, 0.05);
    ck_assert_int_eq(sc.calls, 2);

    for (int i = 0; i < 61; i++)
        sc_send(&sc, 'S', 100);
    sc_sendv(&sc, 'V', 10, 100);
    sc_send(&sc, 'T', 500);
    atomic_store(&k.allow, 100 * 1024);
    run_for(l, 0.3);
    ck_assert_int_eq(sc.r[0].calls, 0); /* A1 is still being written */
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 0);
    int rv = sc_cancel(&sc, 'V');
    int rb = sc_cancel(&sc, 'B');
    int rt = sc_cancel(&sc, 'T');
    ck_assert_int_ge(rv, 0);
    ck_assert_int_le(rv, 1);
    ck_assert_int_ge(rb, 0);
    ck_assert_int_le(rb, 1);
    ck_assert_int_eq(rt, 1);
    fprintf(stderr,
            "# after a partial write: cancel(V) = %d, cancel(B) = %d (0: part of the operation in flight)\n",
            rv, rb);

    atomic_store(&k.allow, SIZE_MAX);
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 15);
    sc_check(&sc);
    ck_assert_int_eq(sc.r[0].status, 1 << 20);
    ck_assert_uint_eq(rs_conn_send_pending(c), 0);
    close_and_wait(l, c);
    sink_check(&k, &sc);
    close(cfd);
    loop_free(l);
}
END_TEST

/* P goes out alone; X, Y(A), Z(B), W(C) queue behind it and the next operation carries all four.
 * X's callback cancels B: Z's bytes are already on the wire, so either nothing is cancelled, or
 * (were it not sent) Z may be — the peer's bytes and the callbacks must agree either way. */
START_TEST(send_cancel_from_send_callback)
{
    rs_loop *l = loop_new(0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, 0, 0);
    static struct sc sc;
    sc_init(&sc, c);
    struct sink k;
    sink_start(&k, cfd, SIZE_MAX);
    sc_send(&sc, 'P', 100);
    sc_send(&sc, 'X', 100);
    sc_send(&sc, 'A', 100);
    sc_send(&sc, 'B', 100);
    sc_send(&sc, 'C', 100);
    sc.cancel_from_cb_of = 'X';
    sc.cancel_user = 'B';
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 5);
    run_for(l, 0.05);
    fprintf(stderr, "# cancel(B) from X's callback returned %d\n", sc.cancel_res);
    ck_assert_int_ge(sc.cancel_res, 0);
    ck_assert_int_le(sc.cancel_res, 1);
    sc_check(&sc);
    size_t pending = rs_conn_send_pending(c);
    close_and_wait(l, c);
    sink_check(&k, &sc);
    ck_assert_msg(pending == 0, "rs_conn_send_pending %zu after every send completed", pending);
    close(cfd);
    loop_free(l);
}
END_TEST

/* From a cancelled send's callback: cancel another user's sends and queue a new send. The
 * cancellations run in a loop of their own; they must leave the queue whole. (64 sends S stand
 * between F and the rest: what an operation after a partial write of F may gather.) */
START_TEST(send_cancel_from_cancelled_callback)
{
    static struct sc sc;
    struct sink k;
    int cfd;
    rs_loop *l = sc_start(&sc, &k, &cfd);
    rs_conn *c = sc.c;
    sc_send(&sc, 'F', 1u << 20);
    /* once F is partly written, the next operation gathers up to 64 sends: these */
    for (int i = 0; i < 64; i++)
        sc_send(&sc, 'S', 100);
    const char *who = "ABCABCAB";
    for (int i = 0; i < 8; i++)
        sc_send(&sc, who[i], 2000 + (size_t)i);
    sc.cancel_from_cb_of = 'A';
    sc.cancel_any = true;
    sc.cancel_user = 'B';
    sc.send_user = 'D';
    sc.send_len = 1234;
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 3);
    run_for(l, 0.1);
    ck_assert_int_eq(sc.cancel_res, 3); /* the B's: nothing but F has started */
    ck_assert_int_eq(sc.calls, 6);
    atomic_store(&k.allow, SIZE_MAX);
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 15);
    sc_check(&sc);
    ck_assert_int_eq(sc.r[sc.n - 1].user, 'D');
    ck_assert_int_eq(sc.r[sc.n - 1].status, 1234);
    size_t pending = rs_conn_send_pending(c);
    close_and_wait(l, c);
    sink_check(&k, &sc);
    ck_assert_msg(pending == 0, "rs_conn_send_pending %zu after every send completed", pending);
    close(cfd);
    loop_free(l);
}
END_TEST

/* Reading pauses while more than RS_CONN_SEND_HIGH bytes of sends are pending; cancelling them
 * drains the queue as surely as sending does, so reading resumes. (64 sends S stand between F
 * and the A's: what an operation after a partial write of F may gather.) */
struct bp_read {
    size_t got;
    int errors;
};

static void bp_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct bp_read *r = user;
    if (n <= 0) {
        r->errors++;
        return;
    }
    if (!pat_eq(data, r->got, (size_t)n))
        r->errors++;
    r->got += (size_t)n;
}

START_TEST(send_cancel_resumes_paused_reading)
{
    rs_loop *l = loop_new(0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, 4096, 4096);
    static struct sc sc;
    sc_init(&sc, c);
    struct bp_read rd = { 0, 0 };
    ASSERT_ERR(rs_conn_read_start(c, bp_read, &rd), 0);
    sc_send(&sc, 'F', 256 * 1024);
    for (int i = 0; i < 64; i++)
        sc_send(&sc, 'S', 100);
    for (int i = 0; i < 4; i++)
        sc_send(&sc, 'A', 256 * 1024);
    ck_assert_uint_gt(rs_conn_send_pending(c), RS_CONN_SEND_HIGH);
    run_for(l, 0.1); /* the pause takes effect (the receive in flight is cancelled) */
    ck_assert_int_eq(write_pat(cfd, 0, 100), 0);
    run_for(l, 0.2);
    ck_assert_msg(rd.got == 0, "%zu bytes received with %zu bytes of sends pending", rd.got,
                  rs_conn_send_pending(c));
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 4);
    ck_assert_uint_le(rs_conn_send_pending(c), RS_CONN_SEND_HIGH / 2);
    RUN_UNTIL(l, rd.got == 100 || rd.errors, 5);
    ck_assert_int_eq(rd.errors, 0);
    struct sink k;
    sink_start(&k, cfd, SIZE_MAX);
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 15);
    sc_check(&sc);
    close_and_wait(l, c);
    sink_check(&k, &sc);
    close(cfd);
    loop_free(l);
}
END_TEST

/* Cancel, then close before the loop ran the cancellations: every callback still exactly once,
 * all before the close callback. */
struct sc_close {
    struct sc *sc;
    int closes, seq;
};

static void sc_closed(rs_conn *c, void *user)
{
    (void)c;
    struct sc_close *s = user;
    s->closes++;
    s->seq = ++s->sc->seq;
}

START_TEST(send_cancel_then_close)
{
    rs_loop *l = loop_new(0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, 4096, 4096);
    static struct sc sc;
    sc_init(&sc, c);
    sc_send(&sc, 'F', 1u << 20);
    for (int i = 0; i < 5; i++)
        sc_send(&sc, i % 2 ? 'B' : 'A', 1000);
    ck_assert_int_eq(sc_cancel(&sc, 'A'), 3);
    sc.closing = true;
    struct sc_close cl = { &sc, 0, 0 };
    ASSERT_ERR(rs_conn_close(c, sc_closed, &cl), 0);
    ck_assert_int_eq(sc.calls, 0);
    RUN_UNTIL(l, cl.closes == 1, 5);
    run_for(l, 0.05);
    ck_assert_int_eq(cl.closes, 1);
    ck_assert_int_eq(sc.calls, sc.n);
    sc_check(&sc);
    for (int i = 0; i < sc.n; i++)
        ck_assert_msg(sc.r[i].seq < cl.seq, "send %d's callback after the close callback", i);
    close(cfd);
    loop_free(l);
}
END_TEST

static int null_user_calls;
static void null_user_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    (void)status;
    (void)user;
    null_user_calls++;
}

/* Bad input, and NULL as a user pointer: sends made without one (cb NULL) are cancellable too. */
START_TEST(send_cancel_bad_input_and_null_user)
{
    rs_loop *l = loop_new(0, 0);
    int cfd;
    rs_conn *c = pair(l, &cfd, 4096, 4096);
    static struct sc sc;
    sc_init(&sc, c);
    ASSERT_ERR(rs_conn_send_cancel(NULL, NULL), -EINVAL);
    ASSERT_ERR(rs_conn_send_cancel(c, NULL), 0); /* nothing queued */
    ASSERT_ERR(rs_conn_send_cancel(c, &sc), 0);
    struct sink k;
    sink_start(&k, cfd, 0);
    sc_send(&sc, 'F', 1u << 20);
    /* user NULL, and a callback that is given NULL */
    size_t off = sc.off;
    sc.off += 300;
    ASSERT_ERR(rs_conn_send(c, pat + off, 100, NULL, NULL), 0);
    ASSERT_ERR(rs_conn_send(c, pat + off + 100, 100, null_user_sent, NULL), 0);
    sc_send(&sc, 'A', 300);
    ASSERT_ERR(rs_conn_send(c, pat + off + 200, 100, NULL, NULL), 0);
    ASSERT_ERR(rs_conn_send_cancel(c, NULL), 3);
    ck_assert_int_eq(null_user_calls, 0);
    atomic_store(&k.allow, SIZE_MAX);
    RUN_UNTIL(l, sc_all_called(&sc) || sc.unexpected, 15);
    run_for(l, 0.02);
    ck_assert_int_eq(null_user_calls, 1);
    sc_check(&sc);
    close_and_wait(l, c);
    sink_check(&k, &sc); /* F then A: the NULL-user sends are not on the wire */
    close(cfd);
    loop_free(l);
}
END_TEST

/* ---- rs_async: wake-ups from other threads ---------------------------------------------------- */

#define ASYNC_THREADS 4
#define ASYNC_SENDS 10000

struct asy {
    rs_async *a;
    atomic_long begun; /* sends started (counted before each call) */
    atomic_int threads_done, send_errors;
    atomic_long calls;
    long calls_seeing_all;    /* callbacks that started after every send had begun */
    long total;               /* sends the threads make */
    int closes, close_inside; /* close callbacks, and those inside rs_async_close */
    bool in_close;
    long close_at; /* the callback closes the handle at this call (0: never) */
    long calls_after_close;
    long resend_until; /* the callback sends again while calls < this */
    bool closed;
};

static void asy_closed(rs_async *a, void *user)
{
    (void)a;
    struct asy *s = user;
    s->closes++;
    if (s->in_close)
        s->close_inside++;
}

static void asy_close(struct asy *s)
{
    s->in_close = true;
    ASSERT_ERR(rs_async_close(s->a, asy_closed, s), 0);
    s->in_close = false;
    s->closed = true;
}

static void asy_cb(rs_async *a, void *user)
{
    struct asy *s = user;
    ck_assert_ptr_eq(a, s->a);
    if (s->closed)
        s->calls_after_close++;
    long n = atomic_fetch_add(&s->calls, 1) + 1;
    if (s->total && atomic_load(&s->begun) == s->total)
        s->calls_seeing_all++;
    if (s->close_at && n == s->close_at)
        asy_close(s);
    else if (n < s->resend_until)
        ck_assert_int_eq(rs_async_send(a), 0);
}

static void *asy_sender(void *arg)
{
    struct asy *s = arg;
    for (int i = 0; i < ASYNC_SENDS; i++) {
        atomic_fetch_add(&s->begun, 1);
        if (rs_async_send(s->a) != 0)
            atomic_fetch_add(&s->send_errors, 1);
        if (i % 1000 == 999)
            sched_yield();
    }
    atomic_fetch_add(&s->threads_done, 1);
    return NULL;
}

static void asy_init(struct asy *s)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->begun, 0);
    atomic_init(&s->threads_done, 0);
    atomic_init(&s->send_errors, 0);
    atomic_init(&s->calls, 0);
}

/* 4 threads x 10,000 sends: at least one callback starts after the last send began, calls
 * coalesce (never more calls than sends), and afterwards every lone send still gets its call. */
START_TEST(async_many_threads_coalesce)
{
    int fds = t_fd_count();
    rs_loop *l = loop_new(0, 0);
    int fds_loop = t_fd_count();
    (void)fds_loop;
    static struct asy s;
    asy_init(&s);
    s.total = (long)ASYNC_THREADS * ASYNC_SENDS;
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    pthread_t th[ASYNC_THREADS];
    for (int i = 0; i < ASYNC_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, asy_sender, &s), 0);
    RUN_UNTIL(l, atomic_load(&s.threads_done) == ASYNC_THREADS && s.calls_seeing_all >= 1, 20);
    for (int i = 0; i < ASYNC_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    run_for(l, 0.05);
    long calls = atomic_load(&s.calls);
    fprintf(stderr, "# %ld sends from %d threads: %ld callbacks\n", s.total, ASYNC_THREADS, calls);
    ck_assert_int_eq(atomic_load(&s.send_errors), 0);
    ck_assert_int_ge(calls, 1);
    ck_assert_int_le(calls, s.total);

    /* quiet now: each send from the loop's own thread, then from another, gets a call */
    for (int i = 0; i < 50; i++) {
        long before = atomic_load(&s.calls);
        ASSERT_ERR(rs_async_send(s.a), 0);
        RUN_UNTIL(l, atomic_load(&s.calls) > before, 2);
    }
    /* sends before the callback runs coalesce into one call */
    run_for(l, 0.02);
    long before = atomic_load(&s.calls);
    for (int i = 0; i < 100; i++)
        ASSERT_ERR(rs_async_send(s.a), 0);
    RUN_UNTIL(l, atomic_load(&s.calls) > before, 2);
    run_for(l, 0.05);
    ck_assert_int_eq(atomic_load(&s.calls), before + 1);

    asy_close(&s);
    ck_assert_int_eq(s.closes, 0); /* from the loop, not inside rs_async_close */
    RUN_UNTIL(l, s.closes == 1, 5);
    run_for(l, 0.05);
    ck_assert_int_eq(s.closes, 1);
    ck_assert_int_eq(s.close_inside, 0);
    ck_assert_int_eq(s.calls_after_close, 0);
    loop_free(l);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

/* A helper thread sends, waiting for each call before the next; the third call closes the
 * handle. rs_loop_run(RS_RUN_DEFAULT) must wait for the sends (the handle keeps the loop alive)
 * and return once the close is done. */
struct asy_stepper {
    struct asy *s;
    int steps, err;
};

static void *asy_step(void *arg)
{
    struct asy_stepper *p = arg;
    for (int i = 0; i < p->steps; i++) {
        t_sleep(0.03);
        atomic_fetch_add(&p->s->begun, 1);
        if (rs_async_send(p->s->a) != 0)
            p->err++;
        double end = t_now() + 5;
        while (atomic_load(&p->s->calls) <= i) {
            if (t_now() > end) {
                p->err++;
                return NULL;
            }
            t_sleep(0.001);
        }
    }
    return NULL;
}

START_TEST(async_close_from_callback_ends_run_default)
{
    int fds = t_fd_count();
    rs_loop *l = loop_new(0, 0);
    int fds_loop = t_fd_count();
    static struct asy s;
    asy_init(&s);
    s.close_at = 3;
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    ck_assert_int_eq(t_fd_count(), fds_loop + 1); /* its eventfd: the fd count below means something */
    struct asy_stepper p = { &s, 3, 0 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, asy_step, &p), 0);
    struct watchdog w;
    watchdog_start(&w, 10, "rs_loop_run(RS_RUN_DEFAULT) after rs_async_close");
    int r = rs_loop_run(l, RS_RUN_DEFAULT);
    watchdog_end(&w);
    ck_assert_int_ge(r, 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(p.err, 0);
    ck_assert_msg(atomic_load(&s.calls) == 3,
                  "rs_loop_run returned after %ld calls: the handle did not keep "
                  "the loop alive",
                  atomic_load(&s.calls));
    ck_assert_int_eq(s.closes, 1);
    ck_assert_int_eq(s.close_inside, 0);
    ck_assert_int_eq(s.calls_after_close, 0);
    loop_free(l);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

/* Closing with a send pending: no callback after rs_async_close, close_cb once from the loop,
 * and RS_RUN_DEFAULT returns; a NULL close_cb is fine too. */
START_TEST(async_close_pending_send_and_null_close_cb)
{
    int fds = t_fd_count();
    rs_loop *l = loop_new(0, 0);
    int fds_loop = t_fd_count();
    static struct asy s;
    asy_init(&s);
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    ASSERT_ERR(rs_async_send(s.a), 0);
    asy_close(&s);
    ck_assert_int_eq(s.closes, 0);
    struct watchdog w;
    watchdog_start(&w, 5, "rs_loop_run(RS_RUN_DEFAULT) after rs_async_close");
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_DEFAULT), 0);
    watchdog_end(&w);
    ck_assert_int_eq(s.closes, 1);
    ck_assert_int_eq(s.close_inside, 0);
    ck_assert_int_eq(atomic_load(&s.calls), 0);
    ck_assert_int_eq(t_fd_count(), fds_loop);

    rs_async *a;
    ASSERT_ERR(rs_async_new(&a, l, asy_cb, &s), 0);
    ASSERT_ERR(rs_async_close(a, NULL, NULL), 0);
    watchdog_start(&w, 5, "rs_loop_run(RS_RUN_DEFAULT) after rs_async_close(NULL close_cb)");
    ck_assert_int_ge(rs_loop_run(l, RS_RUN_DEFAULT), 0);
    watchdog_end(&w);
    loop_free(l);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

static rs_async *sig_async;
static void sig_send(int sig)
{
    (void)sig;
    rs_async_send(sig_async);
}

/* rs_async_send is async-signal-safe: sent from a signal handler; sends before the callback
 * coalesce into one call. */
START_TEST(async_send_from_signal_handler)
{
    rs_loop *l = loop_new(0, 0);
    static struct asy s;
    asy_init(&s);
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    run_for(l, 0.03);
    ck_assert_int_eq(atomic_load(&s.calls), 0); /* no send, no call */
    sig_async = s.a;
    struct sigaction sa = { .sa_handler = sig_send }, old;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(raise(SIGUSR1), 0);
    RUN_UNTIL(l, atomic_load(&s.calls) >= 1, 2);
    run_for(l, 0.05);
    ck_assert_int_eq(atomic_load(&s.calls), 1);
    ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
    asy_close(&s);
    RUN_UNTIL(l, s.closes == 1, 5);
    loop_free(l);
}
END_TEST

/* A send from inside the callback comes after that callback began: it gets a call of its own. */
START_TEST(async_send_from_callback_calls_again)
{
    rs_loop *l = loop_new(0, 0);
    static struct asy s;
    asy_init(&s);
    s.resend_until = 5;
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    ASSERT_ERR(rs_async_send(s.a), 0);
    RUN_UNTIL(l, atomic_load(&s.calls) >= 5, 5);
    run_for(l, 0.05);
    ck_assert_int_eq(atomic_load(&s.calls), 5);
    asy_close(&s);
    RUN_UNTIL(l, s.closes == 1, 5);
    loop_free(l);
}
END_TEST

/* 64 handles on one loop, each sent once from another thread: each gets its own call. */
#define ASYNC_HANDLES 64

struct asy_many {
    struct asy s[ASYNC_HANDLES];
    int err;
};

static void *asy_many_sender(void *arg)
{
    struct asy_many *m = arg;
    for (int i = ASYNC_HANDLES - 1; i >= 0; i--)
        if (rs_async_send(m->s[i].a) != 0)
            m->err++;
    return NULL;
}

static bool asy_many_called(struct asy_many *m)
{
    for (int i = 0; i < ASYNC_HANDLES; i++)
        if (atomic_load(&m->s[i].calls) == 0)
            return false;
    return true;
}

static bool asy_many_closed(struct asy_many *m)
{
    for (int i = 0; i < ASYNC_HANDLES; i++)
        if (m->s[i].closes == 0)
            return false;
    return true;
}

START_TEST(async_many_handles_one_loop)
{
    int fds = t_fd_count();
    rs_loop *l = loop_new(0, 0);
    static struct asy_many m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < ASYNC_HANDLES; i++) {
        asy_init(&m.s[i]);
        ASSERT_ERR(rs_async_new(&m.s[i].a, l, asy_cb, &m.s[i]), 0);
    }
    run_for(l, 0.02);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, asy_many_sender, &m), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(m.err, 0);
    RUN_UNTIL(l, asy_many_called(&m), 5);
    run_for(l, 0.05);
    for (int i = 0; i < ASYNC_HANDLES; i++) {
        ck_assert_msg(atomic_load(&m.s[i].calls) == 1, "handle %d: %ld calls for one send", i,
                      atomic_load(&m.s[i].calls));
        asy_close(&m.s[i]);
    }
    RUN_UNTIL(l, asy_many_closed(&m), 5);
    run_for(l, 0.02);
    for (int i = 0; i < ASYNC_HANDLES; i++) {
        ck_assert_int_eq(m.s[i].closes, 1);
        ck_assert_int_eq(m.s[i].close_inside, 0);
    }
    loop_free(l);
    ck_assert_int_eq(t_fd_count(), fds);
}
END_TEST

START_TEST(async_bad_input)
{
    rs_loop *l = loop_new(0, 0);
    rs_async *a = NULL;
    ASSERT_ERR(rs_async_new(NULL, l, asy_cb, NULL), -EINVAL);
    ASSERT_ERR(rs_async_new(&a, NULL, asy_cb, NULL), -EINVAL);
    ASSERT_ERR(rs_async_new(&a, l, NULL, NULL), -EINVAL);
    ck_assert_ptr_null(a);
    ASSERT_ERR(rs_async_send(NULL), -EINVAL);
    ASSERT_ERR(rs_async_close(NULL, asy_closed, NULL), -EINVAL);
    ASSERT_ERR(rs_async_close(NULL, NULL, NULL), -EINVAL);
    /* an open handle is work in flight: the loop cannot be freed under it */
    static struct asy s;
    asy_init(&s);
    ASSERT_ERR(rs_async_new(&s.a, l, asy_cb, &s), 0);
    ASSERT_ERR(rs_loop_free(l), -EBUSY);
    asy_close(&s);
    RUN_UNTIL(l, s.closes == 1, 5);
    loop_free(l);
}
END_TEST

/* ---- roles: a conn is a listener or a connection, never both ---------------------------------- */

struct roles {
    rs_conn *acc[4];
    int accepted, acc_err, reads, closes;
    size_t got;
    int sent;
    ssize_t sent_status;
};

static void ro_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct roles *r = user;
    if (status < 0 || !c || r->accepted >= 4) {
        r->acc_err++;
        if (c)
            rs_conn_close(c, NULL, NULL);
        return;
    }
    r->acc[r->accepted++] = c;
}

static void ro_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct roles *r = user;
    r->reads++;
    if (n > 0)
        r->got += (size_t)n;
}

static void ro_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct roles *r = user;
    r->sent++;
    r->sent_status = status;
}

static int memfd_with(size_t len)
{
    int fd = memfd_create("asyncx", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, pat, len), (ssize_t)len);
    return fd;
}

/* A listener that accepted refuses the calls of a connection, and keeps accepting. */
START_TEST(roles_listener_refuses_connection_calls)
{
    rs_loop *l = loop_new(0, 0);
    struct sockaddr_storage a;
    socklen_t len;
    rs_conn *lc = conn_of(l, listen_fd(8, &a, &len));
    static struct roles r;
    memset(&r, 0, sizeof r);
    ASSERT_ERR(rs_conn_accept_start(lc, ro_accept, &r), 0);
    int c1 = dial(&a, len, 0);
    RUN_UNTIL(l, r.accepted == 1 || r.acc_err, 5);

    int mfd = memfd_with(1000);
    struct iovec iov[1] = { { pat, 10 } };
    rs_rbuf *b = NULL;
    ASSERT_ERR(rs_conn_read_start(lc, ro_read, &r), -EINVAL);
    ASSERT_ERR(rs_conn_send(lc, pat, 10, ro_sent, &r), -EINVAL);
    ASSERT_ERR(rs_conn_sendv(lc, iov, 1, ro_sent, &r), -EINVAL);
    ASSERT_ERR(rs_conn_sendfile(lc, mfd, 0, 1000, ro_sent, &r), -EINVAL);
    ASSERT_ERR(rs_conn_read_stop(lc), 0);
    ASSERT_ERR(rs_conn_read_keep(lc, &b), -EINVAL);
    int rc = rs_conn_send_cancel(lc, &r);
    ck_assert_msg(rc == 0 || rc == -EINVAL, "rs_conn_send_cancel on a listener: %d", rc);
    ck_assert_uint_eq(rs_conn_send_pending(lc), 0);
    ASSERT_ERR(rs_conn_accept_start(lc, ro_accept, &r), -EALREADY); /* still a listener, still on */

    /* it still accepts; what it accepted are connections */
    int c2 = dial(&a, len, 0);
    RUN_UNTIL(l, r.accepted == 2 || r.acc_err, 5);
    ck_assert_int_eq(r.acc_err, 0);
    ASSERT_ERR(rs_conn_read_start(r.acc[0], ro_read, &r), 0);
    ASSERT_ERR(rs_conn_accept_start(r.acc[0], ro_accept, &r), -EINVAL);
    ck_assert_int_eq(send(c1, "hello", 5, 0), 5);
    RUN_UNTIL(l, r.got == 5, 5);
    ck_assert_int_eq(r.sent, 0); /* the refused calls' callbacks never run */

    int closed = 0;
    ASSERT_ERR(rs_conn_close(lc, count_close, &closed), 0);
    ASSERT_ERR(rs_conn_close(r.acc[0], count_close, &closed), 0);
    ASSERT_ERR(rs_conn_close(r.acc[1], count_close, &closed), 0);
    RUN_UNTIL(l, closed == 3, 5);
    run_for(l, 0.02);
    ck_assert_int_eq(closed, 3);
    ck_assert_int_eq(r.sent, 0);
    close(mfd);
    close(c1);
    close(c2);
    loop_free(l);
}
END_TEST

/* A conn that read, sent, sent a vector or a file is a connection: accept_start is refused (and
 * accept_stop is a no-op), and what it started goes on. */
START_TEST(roles_connection_refuses_accept)
{
    rs_loop *l = loop_new(0, 0);
    static struct roles r;
    int mfd = memfd_with(1000);
    for (int how = 0; how < 4; how++) {
        memset(&r, 0, sizeof r);
        int cfd;
        rs_conn *c = pair(l, &cfd, 0, 0);
        struct iovec iov[2] = { { pat, 600 }, { pat + 600, 400 } };
        switch (how) {
        case 0: ASSERT_ERR(rs_conn_read_start(c, ro_read, &r), 0); break;
        case 1: ASSERT_ERR(rs_conn_send(c, pat, 1000, ro_sent, &r), 0); break;
        case 2: ASSERT_ERR(rs_conn_sendv(c, iov, 2, ro_sent, &r), 0); break;
        default: ASSERT_ERR(rs_conn_sendfile(c, mfd, 0, 1000, ro_sent, &r), 0);
        }
        ASSERT_ERR(rs_conn_accept_start(c, ro_accept, &r), -EINVAL);
        ASSERT_ERR(rs_conn_accept_stop(c), 0);
        if (how == 0) {
            ck_assert_int_eq(send(cfd, "abc", 3, 0), 3);
            RUN_UNTIL(l, r.got == 3, 5);
        } else {
            RUN_UNTIL(l, r.sent == 1, 5);
            ck_assert_int_eq(r.sent_status, 1000);
            unsigned char buf[1000];
            size_t got = 0;
            while (got < sizeof buf) {
                ssize_t n = recv(cfd, buf + got, sizeof buf - got, 0);
                ck_assert_int_gt(n, 0);
                got += (size_t)n;
            }
            ck_assert(pat_eq(buf, 0, sizeof buf));
        }
        ck_assert_int_eq(r.accepted + r.acc_err, 0);
        close_and_wait(l, c);
        close(cfd);
    }
    close(mfd);
    loop_free(l);
}
END_TEST

/* Calls that claim no role (stops, cancel, keep), and calls refused for bad arguments, leave a
 * fresh conn free to become a listener (each call on a conn of its own); and a conn refused a
 * listener's call for a bad argument can still become a connection. */
START_TEST(roles_unclaimed_until_a_call_succeeds)
{
    rs_loop *l = loop_new(0, 0);
    static struct roles r;
    memset(&r, 0, sizeof r);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    struct iovec bad[2] = { { pat, 10 }, { NULL, 5 } };
    char fails[600] = "";
    for (int k = 0; k < 9; k++) {
        struct sockaddr_storage a;
        socklen_t len;
        rs_conn *lc = conn_of(l, listen_fd(8, &a, &len));
        rs_rbuf *b = NULL;
        const char *what;
        int got, want = -EINVAL;
        switch (k) {
        case 0:
            what = "rs_conn_read_stop";
            got = rs_conn_read_stop(lc);
            want = 0;
            break;
        case 1:
            what = "rs_conn_accept_stop";
            got = rs_conn_accept_stop(lc);
            want = 0;
            break;
        case 2:
            what = "rs_conn_send_cancel";
            got = rs_conn_send_cancel(lc, NULL);
            want = 0;
            break;
        case 3:
            what = "rs_conn_read_keep";
            got = rs_conn_read_keep(lc, &b);
            break;
        case 4:
            what = "rs_conn_read_start(cb NULL)";
            got = rs_conn_read_start(lc, NULL, NULL);
            break;
        case 5:
            what = "rs_conn_send(buf NULL, len 5)";
            got = rs_conn_send(lc, NULL, 5, ro_sent, &r);
            break;
        case 6:
            what = "rs_conn_sendv(a NULL piece)";
            got = rs_conn_sendv(lc, bad, 2, ro_sent, &r);
            break;
        case 7:
            what = "rs_conn_sendfile(fd -1)";
            got = rs_conn_sendfile(lc, -1, 0, 10, ro_sent, &r);
            break;
        default:
            what = "rs_conn_sendfile(a pipe, count 0)";
            got = rs_conn_sendfile(lc, p[0], 0, 0, ro_sent, &r);
        }
        ck_assert_msg(got == want, "%s on a fresh conn: %s, want %s", what, rs_err_name(got),
                      rs_err_name(want));
        int ra = rs_conn_accept_start(lc, ro_accept, &r);
        if (ra != 0)
            snprintf(fails + strlen(fails), sizeof fails - strlen(fails), "%s%s", *fails ? ", " : "", what);
        close_and_wait(l, lc);
    }
    ck_assert_msg(!*fails,
                  "rs_conn_accept_start refused (EINVAL) after these calls returned an error or "
                  "claimed nothing: %s",
                  fails);
    ck_assert_int_eq(r.sent, 0);

    /* the other way round */
    struct sockaddr_storage a;
    socklen_t len;
    rs_conn *lc = conn_of(l, listen_fd(8, &a, &len));
    ASSERT_ERR(rs_conn_accept_start(lc, ro_accept, &r), 0);
    int c1 = dial(&a, len, 0);
    RUN_UNTIL(l, r.accepted == 1 || r.acc_err, 5);
    rs_conn *c = r.acc[0];
    ASSERT_ERR(rs_conn_accept_stop(c), 0);
    ASSERT_ERR(rs_conn_read_stop(c), 0);
    ASSERT_ERR(rs_conn_accept_start(c, NULL, NULL), -EINVAL);
    ASSERT_ERR(rs_conn_read_start(c, ro_read, &r), 0);
    ck_assert_int_eq(send(c1, "xyz", 3, 0), 3);
    RUN_UNTIL(l, r.got == 3, 5);
    close_and_wait(l, c);
    close_and_wait(l, lc);
    close(c1);
    close(p[0]);
    close(p[1]);
    loop_free(l);
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
    Suite *s = suite_create("asyncx");
    TCase *tc = tcase(s, "keep", 40);
    tcase_add_test(tc, keep_survives_release_scrambled_and_conn_close);
    tcase_add_test(tc, keep_all_buffers_starves_without_spinning);
    tcase_add_test(tc, keep_all_buffers_then_close_before_release);
    tcase_add_test(tc, keep_starves_two_conns_one_closes);

    tc = tcase(s, "send_cancel", 40);
    tcase_add_test(tc, send_cancel_queued_by_user);
    tcase_add_test(tc, send_cancel_spares_sends_in_flight);
    tcase_add_test(tc, send_cancel_from_send_callback);
    tcase_add_test(tc, send_cancel_from_cancelled_callback);
    tcase_add_test(tc, send_cancel_resumes_paused_reading);
    tcase_add_test(tc, send_cancel_then_close);
    tcase_add_test(tc, send_cancel_bad_input_and_null_user);

    tc = tcase(s, "async", 40);
    tcase_add_test(tc, async_many_threads_coalesce);
    tcase_add_test(tc, async_close_from_callback_ends_run_default);
    tcase_add_test(tc, async_close_pending_send_and_null_close_cb);
    tcase_add_test(tc, async_send_from_signal_handler);
    tcase_add_test(tc, async_many_handles_one_loop);
    tcase_add_test(tc, async_send_from_callback_calls_again);
    tcase_add_test(tc, async_bad_input);

    tc = tcase(s, "roles", 20);
    tcase_add_test(tc, roles_listener_refuses_connection_calls);
    tcase_add_test(tc, roles_connection_refuses_accept);
    tcase_add_test(tc, roles_unclaimed_until_a_call_succeeds);
    return s;
}

int main(void) { return t_run(make_suite()); }
