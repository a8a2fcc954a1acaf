/* bench/pingpong: blocking ping-pong round trips per second over TCP loopback.
 *
 * One client and one echo server, each in its own forked process, exchange messages of --size
 * bytes (64) one at a time: the client sends, the server receives and sends the bytes back, the
 * client receives them. Variants, all in the same run and interleaved round by round:
 *
 *   plain           both ends plain blocking send(2)/recv(2) on blocking fds: the baseline
 *   uring, epoll, poll
 *                   both ends ringsock's blocking rs_send/rs_recv, RINGSOCK_BACKEND set in the
 *                   child before any ringsock call (the default loop is per thread, made on first
 *                   use), timeout None
 *   <backend>+timeout
 *                   the same with rs_settimeout(s, 5.0) on both ends (io_uring: linked
 *                   LINK_TIMEOUT; epoll/poll: the timer heap)
 *
 * and, with --with-liburing (not in the default set, to keep the run under two minutes):
 *
 *   liburing, liburing+timeout
 *                   both ends raw liburing, no ringsock: one SEND/RECV SQE (plus a LINK_TIMEOUT
 *                   SQE of 5 s) and io_uring_submit_and_wait(1) per call, on a ring made with the
 *                   flags ringsock's uring backend uses: what io_uring itself costs, so that
 *                   ringsock-uring minus liburing is the abstraction's cost
 *
 * and two placements: "cross" (client pinned to CPU 0, server to CPU 1) and "same" (both on CPU
 * 0; on this VM waking an idle vCPU dominates a cross-CPU round trip, see
 * /work/shared/PERFORMANCE.md).
 *
 * Figures per variant:
 *   rt/s            round trips per second over the client's timed interval: median and min-max
 *                   over the rounds, and the ratio of the median to the plain baseline's median of
 *                   the same placement and run (plus the range of the per-round paired ratios)
 *   srv CPU us/rt   utime+stime of the server from /proc/<pid>/stat (10 ms ticks) over the
 *                   client's timed interval, per round trip (median over rounds); the key=value
 *                   line also has the same from the server's CPU-time clock (clock_getcpuclockid,
 *                   ns resolution)
 *   cli CPU us/rt   the client's own CPU time (CLOCK_PROCESS_CPUTIME_ID) per round trip
 *   sys/rt          syscalls per round trip of the client process, counted in a separate pass
 *                   after the rounds (--window seconds per variant): a raw_syscalls:sys_enter
 *                   tracepoint counter the client opens on itself with perf_event_open(2),
 *                   enabled exactly around its loop. sys/call = sys/rt / 2 (one send, one recv).
 *                   Not counted during the timed rounds: while such a counter exists every syscall
 *                   of every process takes the slow (traced) entry path, which in a trial here
 *                   added about a fifth to the plain baseline's CPU time per round trip.
 *   srv sys/rt      the same for the server process (a counter on the server's pid)
 *   perf sys/rt     (with --perf PATH) the client's figure again, from the perf tool in the same
 *                   pass: `perf stat -e raw_syscalls:sys_enter -p <client>`, enabled and disabled
 *                   through its --control fds around the window
 *
 * Output: progress on stderr, then a human table per placement and one key=value line per
 * variant on stdout. Exit status 0 only if every run of every variant succeeded.
 *
 * Usage: pingpong [--rounds N] [--duration S] [--warmup S] [--size B] [--placement cross|same|both]
 *                 [--only NAME[,NAME...]] [--with-liburing] [--window S] [--perf PATH] [--quick]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "machine.h"

#ifdef PP_HAVE_LIBURING
#include <liburing.h>
#endif

#define MAX_SIZE 65536
#define MAX_ROUNDS 100
#define CHILD_ALARM_S 60

/* ---- configuration ------------------------------------------------------------------------ */

enum kind { K_PLAIN, K_RINGSOCK, K_LIBURING };

struct variant {
    const char *name;
    int kind;            /* enum kind */
    const char *backend; /* K_RINGSOCK: the RINGSOCK_BACKEND value */
    int backend_id;      /* K_RINGSOCK: enum rs_backend expected from rs_loop_backend */
    double timeout;      /* RS_TIMEOUT_NONE or seconds */
    bool optional;       /* only with --with-liburing or --only */
};

static const struct variant variants[] = {
    { "plain", K_PLAIN, NULL, 0, RS_TIMEOUT_NONE, false },
    { "uring", K_RINGSOCK, "uring", RS_BACKEND_URING, RS_TIMEOUT_NONE, false },
    { "uring+timeout", K_RINGSOCK, "uring", RS_BACKEND_URING, 5.0, false },
    { "epoll", K_RINGSOCK, "epoll", RS_BACKEND_EPOLL, RS_TIMEOUT_NONE, false },
    { "epoll+timeout", K_RINGSOCK, "epoll", RS_BACKEND_EPOLL, 5.0, false },
    { "poll", K_RINGSOCK, "poll", RS_BACKEND_POLL, RS_TIMEOUT_NONE, false },
    { "poll+timeout", K_RINGSOCK, "poll", RS_BACKEND_POLL, 5.0, false },
    { "liburing", K_LIBURING, NULL, 0, RS_TIMEOUT_NONE, true },
    { "liburing+timeout", K_LIBURING, NULL, 0, 5.0, true },
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

struct placement {
    const char *name;
    const char *desc;
    int client_cpu, server_cpu;
};

static const struct placement placements[] = {
    { "cross", "client CPU 0, server CPU 1", 0, 1 },
    { "same", "client and server both on CPU 0", 0, 0 },
};
#define NPLACEMENTS (sizeof placements / sizeof placements[0])

struct cfg {
    int rounds;
    double duration;
    double warmup;
    size_t size;
    bool placement_on[NPLACEMENTS];
    bool variant_on[NVARIANTS];
    double window;      /* count pass: seconds per variant */
    const char *perf;   /* perf binary for the cross-check in the count pass, or NULL */
};

/* ---- results ------------------------------------------------------------------------------ */

/* What the client reports for one run (through a pipe). Counts are -1 when not available. */
struct run_result {
    int ok;
    char err[160];
    uint64_t rts;
    int64_t ns;
    int64_t cli_sys, srv_sys;
    int64_t cli_cpu_ns;
    int64_t srv_cpu_ns;    /* server CPU-time clock */
    int64_t srv_ticks;     /* /proc/<pid>/stat utime+stime */
};

struct cell {
    const struct placement *pl;
    const struct variant *v;
    int n;
    struct run_result r[MAX_ROUNDS];
    bool failed;
    char err[200];
    /* count pass; < 0: not measured */
    double sys_rt, srv_sys_rt, perf_sys_rt;
    char cnt_err[160], perf_err[160];
};

/* Shared with the client in the count pass. */
struct shm {
    _Atomic uint64_t rts;
    _Atomic int stop;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((unsigned)cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) < 0 ? -errno : 0;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c += r;
        n -= (size_t)r;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c += r;
        n -= (size_t)r;
    }
    return true;
}

/* utime + stime of pid from /proc/<pid>/stat, in clock ticks; -1 on failure. */
static int64_t proc_stat_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
    if (!p)
        return -1;
    p++;
    /* after ')': field 3 (state) is token 0; utime (14) is token 11, stime (15) token 12 */
    unsigned long long ut = 0, st = 0;
    char *save = NULL;
    int i = 0;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), i++) {
        if (i == 11)
            ut = strtoull(tok, NULL, 10);
        if (i == 12) {
            st = strtoull(tok, NULL, 10);
            return (int64_t)(ut + st);
        }
    }
    return -1;
}
/* ---- the connection, plain or ringsock ---------------------------------------------------- */

struct conn {
    int fd;          /* plain and liburing */
    rs_socket *s;    /* ringsock, or NULL */
    double timeout;  /* liburing: RS_TIMEOUT_NONE or seconds */
#ifdef PP_HAVE_LIBURING
    struct io_uring *ring; /* liburing, or NULL */
#endif
};

#ifdef PP_HAVE_LIBURING
/* A ring as ringsock's uring backend makes it (lib/backend/uring.c): SINGLE_ISSUER|DEFER_TASKRUN,
 * COOP_TASKRUN before 6.1. */
static int raw_ring_init(struct io_uring *ring)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int r = io_uring_queue_init_params(64, ring, &p);
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN;
        r = io_uring_queue_init_params(64, ring, &p);
    }
    return r;
}

/* One blocking send or recv: one SQE (+ LINK_TIMEOUT), one io_uring_submit_and_wait. */
static ssize_t raw_op(struct conn *c, bool send_op, void *buf, size_t len)
{
    struct io_uring *ring = c->ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (send_op)
        io_uring_prep_send(sqe, c->fd, buf, len, MSG_NOSIGNAL);
    else
        io_uring_prep_recv(sqe, c->fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, 1);
    struct __kernel_timespec ts;
    if (c->timeout >= 0) {
        sqe->flags |= IOSQE_IO_LINK;
        ts.tv_sec = (long long)c->timeout;
        ts.tv_nsec = (long long)((c->timeout - (double)ts.tv_sec) * 1e9);
        struct io_uring_sqe *t = io_uring_get_sqe(ring);
        io_uring_prep_link_timeout(t, &ts, 0);
        io_uring_sqe_set_data64(t, 0);
    }
    for (;;) {
        int r = io_uring_submit_and_wait(ring, 1);
        if (r < 0 && r != -EINTR && r != -ETIME)
            return r;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        bool done = false;
        int res = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            seen++;
            if (cqe->user_data == 1) {
                res = cqe->res;
                done = true;
            }
        }
        io_uring_cq_advance(ring, seen);
        if (done)
            return res == -ECANCELED ? -ETIMEDOUT : res;
    }
}
#endif

static ssize_t conn_send(struct conn *c, const void *buf, size_t len)
{
    if (c->s)
        return rs_send(c->s, buf, len, 0);
#ifdef PP_HAVE_LIBURING
    if (c->ring)
        return raw_op(c, true, (void *)(uintptr_t)buf, len);
#endif
    ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL);
    return r < 0 ? -errno : r;
}

static ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
    if (c->s)
        return rs_recv(c->s, buf, len, 0);
#ifdef PP_HAVE_LIBURING
    if (c->ring)
        return raw_op(c, false, buf, len);
#endif
    ssize_t r = recv(c->fd, buf, len, 0);
    return r < 0 ? -errno : r;
}

/* 0, or -errno (-EPIPE for EOF). */
static int send_all(struct conn *c, const char *buf, size_t len)
{
    while (len) {
        ssize_t r = conn_send(c, buf, len);
        if (r == -EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -EPIPE : (int)r;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

/* 0, or -errno (-ECONNRESET for EOF). */
static int recv_exact(struct conn *c, char *buf, size_t len)
{
    while (len) {
        ssize_t r = conn_recv(c, buf, len);
        if (r == -EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -ECONNRESET : (int)r;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* In a child, once c holds a connected socket: check that ringsock got the backend asked for and
 * set the timeout, or make the raw ring. */
static int variant_setup(struct conn *c, const struct variant *v, char *err, size_t errlen)
{
    c->timeout = v->timeout;
    if (v->kind == K_LIBURING) {
#ifdef PP_HAVE_LIBURING
        static struct io_uring ring;
        int r = raw_ring_init(&ring);
        if (r < 0) {
            snprintf(err, errlen, "io_uring_queue_init_params: %s", strerror(-r));
            return r;
        }
        c->ring = &ring;
        return 0;
#else
        snprintf(err, errlen, "built without liburing");
        return -ENOSYS;
#endif
    }
    if (v->kind != K_RINGSOCK)
        return 0;
    rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0) {
        snprintf(err, errlen, "rs_loop_default(%s): %s", v->backend, rs_strerror(r));
        return r;
    }
    if (rs_loop_backend(loop) != v->backend_id) {
        snprintf(err, errlen, "asked for backend %s, got %s", v->backend,
                 rs_backend_name(rs_loop_backend(loop)));
        return -EINVAL;
    }
    r = rs_settimeout(c->s, v->timeout);
    if (r < 0) {
        snprintf(err, errlen, "rs_settimeout: %s", rs_strerror(r));
        return r;
    }
    return 0;
}

/* ---- the server --------------------------------------------------------------------------- */

static void server_main(const struct cfg *cfg, const struct variant *v, int cpu, int lfd)
{
    alarm(CHILD_ALARM_S);
    if (pin(cpu) < 0) {
        fprintf(stderr, "pingpong: server: cannot pin to CPU %d\n", cpu);
        _exit(2);
    }
    if (v->kind == K_RINGSOCK && setenv("RINGSOCK_BACKEND", v->backend, 1) < 0)
        _exit(2);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        perror("pingpong: server: accept4");
        _exit(2);
    }
    close(lfd);
    set_nodelay(fd);
    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = fd;
    char err[160];
    if (v->kind == K_RINGSOCK) {
        int r = rs_socket_fromfd(&c.s, fd);
        if (r < 0) {
            fprintf(stderr, "pingpong: server: rs_socket_fromfd: %s\n", rs_strerror(r));
            _exit(2);
        }
        close(fd);
        c.fd = -1;
    }
    if (variant_setup(&c, v, err, sizeof err) < 0) {
        fprintf(stderr, "pingpong: server: %s\n", err);
        _exit(2);
    }
    static char buf[MAX_SIZE];
    for (;;) {
        ssize_t n = conn_recv(&c, buf, cfg->size);
        if (n == -EINTR)
            continue;
        if (n == 0 || n == -ECONNRESET)
            break;
        if (n < 0) {
            fprintf(stderr, "pingpong: server (%s): recv: %s\n", v->name, strerror((int)-n));
            _exit(3);
        }
        int r = send_all(&c, buf, (size_t)n);
        if (r == -EPIPE || r == -ECONNRESET)
            break;
        if (r < 0) {
            fprintf(stderr, "pingpong: server (%s): send: %s\n", v->name, strerror(-r));
            _exit(3);
        }
    }
    if (c.s)
        rs_close(c.s);
    else
        close(c.fd);
    _exit(0);
}

/* ---- the client --------------------------------------------------------------------------- */

struct client_args {
    const struct cfg *cfg;
    const struct variant *v;
    int cpu;
    uint16_t port;
    pid_t server;
    int resfd;          /* run_result goes here; in perf mode a 'R' byte first */
    struct shm *shm;    /* perf mode, or NULL */
};

static void client_fail(int resfd, struct run_result *res, const char *fmt, const char *what, int err)
{
    res->ok = 0;
    snprintf(res->err, sizeof res->err, fmt, what, err ? strerror(err) : "");
    write_all(resfd, res, sizeof *res);
    _exit(1);
}

static void client_main(const struct client_args *a)
{
    const struct cfg *cfg = a->cfg;
    const struct variant *v = a->v;
    struct run_result res;
    memset(&res, 0, sizeof res);
    res.cli_sys = res.srv_sys = res.cli_cpu_ns = res.srv_cpu_ns = res.srv_ticks = -1;
    alarm(CHILD_ALARM_S);
    if (pin(a->cpu) < 0)
        client_fail(a->resfd, &res, "%s: %s", "sched_setaffinity", errno);
    if (v->kind == K_RINGSOCK && setenv("RINGSOCK_BACKEND", v->backend, 1) < 0)
        client_fail(a->resfd, &res, "%s: %s", "setenv", errno);

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(a->port);
    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    if (v->kind != K_RINGSOCK) {
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&sin, sizeof sin) < 0)
            client_fail(a->resfd, &res, "%s: %s", "socket/connect", errno);
        set_nodelay(c.fd);
    } else {
        int r = rs_socket_open(&c.s, AF_INET, SOCK_STREAM, 0);
        if (r < 0)
            client_fail(a->resfd, &res, "%s: %s", "rs_socket_open", -r);
        int one = 1;
        rs_setsockopt(c.s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        r = rs_connect(c.s, (struct sockaddr *)&sin, sizeof sin);
        if (r < 0)
            client_fail(a->resfd, &res, "%s: %s", "rs_connect", -r);
    }
    if (variant_setup(&c, v, res.err, sizeof res.err) < 0) {
        write_all(a->resfd, &res, sizeof res);
        _exit(1);
    }

    static char msg[MAX_SIZE], back[MAX_SIZE];
    for (size_t i = 0; i < cfg->size; i++)
        msg[i] = (char)('a' + i % 26);
    int r = 0;
#define ROUND_TRIP()                                                                     \
    do {                                                                                 \
        r = send_all(&c, msg, cfg->size);                                                \
        if (r == 0)                                                                      \
            r = recv_exact(&c, back, cfg->size);                                         \
        if (r < 0)                                                                       \
            client_fail(a->resfd, &res, "%s: %s", "round trip", -r);                     \
    } while (0)

    /* warm-up: the default loop, the connection and the caches settle */
    int64_t wend = now_ns() + (int64_t)(cfg->warmup * 1e9);
    do
        ROUND_TRIP();
    while (now_ns() < wend);
    if (memcmp(msg, back, cfg->size) != 0)
        client_fail(a->resfd, &res, "%s%s", "echo mismatch", 0);

    if (a->shm) {
        /* count pass: syscall counters on this process and on the server, enabled around a loop
         * that runs until the parent says stop (and, with --perf, runs perf on us meanwhile) */
        long id = sys_enter_id();
        int cfd = syscall_counter(id, 0);
        int sfd = syscall_counter(id, a->server);
        char ready = 'R';
        write_all(a->resfd, &ready, 1);
        if (sfd >= 0)
            ioctl(sfd, PERF_EVENT_IOC_ENABLE, 0);
        if (cfd >= 0)
            ioctl(cfd, PERF_EVENT_IOC_ENABLE, 0); /* counting starts after this call's entry */
        uint64_t n = 0;
        while (!atomic_load_explicit(&a->shm->stop, memory_order_relaxed)) {
            ROUND_TRIP();
            atomic_store_explicit(&a->shm->rts, ++n, memory_order_relaxed);
        }
        if (cfd >= 0)
            ioctl(cfd, PERF_EVENT_IOC_DISABLE, 0); /* this call's entry is counted */
        if (sfd >= 0)
            ioctl(sfd, PERF_EVENT_IOC_DISABLE, 0);
        res.ok = 1;
        res.rts = n;
        int64_t cs = counter_read(cfd);
        res.cli_sys = cs >= 1 ? cs - 1 : -1;
        res.srv_sys = counter_read(sfd);
    } else {
        /* timed round: no syscall counter exists (one costs ~0.1-0.3 us per syscall of every
         * process here), only clocks read before and after */
        clockid_t scid;
        bool have_scid = clock_getcpuclockid(a->server, &scid) == 0;
        int64_t srv_cpu0 = have_scid ? clock_ns(scid) : -1;
        int64_t srv_ticks0 = proc_stat_ticks(a->server);
        int64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        int64_t t0 = now_ns(), t1;
        int64_t end = t0 + (int64_t)(cfg->duration * 1e9);
        uint64_t n = 0;
        do {
            ROUND_TRIP();
            n++;
        } while ((t1 = now_ns()) < end);
        int64_t cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        int64_t srv_ticks1 = proc_stat_ticks(a->server);
        int64_t srv_cpu1 = have_scid ? clock_ns(scid) : -1;
        res.ok = 1;
        res.rts = n;
        res.ns = t1 - t0;
        if (cpu0 >= 0 && cpu1 >= 0)
            res.cli_cpu_ns = cpu1 - cpu0;
        if (srv_cpu0 >= 0 && srv_cpu1 >= 0)
            res.srv_cpu_ns = srv_cpu1 - srv_cpu0;
        if (srv_ticks0 >= 0 && srv_ticks1 >= 0)
            res.srv_ticks = srv_ticks1 - srv_ticks0;
    }
#undef ROUND_TRIP
    if (c.s)
        rs_close(c.s);
    else
        close(c.fd);
    write_all(a->resfd, &res, sizeof res);
    _exit(0);
}

/* ---- the parent --------------------------------------------------------------------------- */

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

static const char *exit_desc(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "status %d", status);
    return buf;
}


/* perf stat on the client, enabled through --control fds around cfg->window seconds; returns the
 * client's syscalls per round trip in that window, or -1 (with the reason in err). */
static double perf_window(const struct cfg *cfg, pid_t client, struct shm *shm, char *err, size_t errlen)
{
    int ctl[2], ack[2], out[2];
    if (pipe(ctl) < 0)
        goto pipe_fail;
    if (pipe(ack) < 0) {
        close(ctl[0]);
        close(ctl[1]);
        goto pipe_fail;
    }
    if (pipe(out) < 0) {
        close(ctl[0]);
        close(ctl[1]);
        close(ack[0]);
        close(ack[1]);
        goto pipe_fail;
    }
    pid_t pp = fork();
    if (pp == 0) {
        close(ctl[1]);
        close(ack[0]);
        close(out[0]);
        dup2(out[1], 2);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0)
            dup2(dn, 1);
        char ctlarg[64], pidarg[32];
        snprintf(ctlarg, sizeof ctlarg, "fd:%d,%d", ctl[0], ack[1]);
        snprintf(pidarg, sizeof pidarg, "%d", (int)client);
        execl(cfg->perf, "perf", "stat", "-x,", "-D", "-1", "--control", ctlarg, "-e",
              "raw_syscalls:sys_enter", "-p", pidarg, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", cfg->perf, strerror(errno));
        _exit(127);
    }
    close(ctl[0]);
    close(ack[1]);
    close(out[1]);
    uint64_t c0 = 0, c1 = 0;
    bool ok = false;
    if (pp > 0) {
        /* perf acknowledges each command once the events are enabled / disabled */
        struct pollfd p = { .fd = ack[0], .events = POLLIN };
        char a[8];
        ok = write_all(ctl[1], "enable\n", 7) && poll(&p, 1, 20000) == 1 && read(ack[0], a, sizeof a) > 0;
        c0 = atomic_load(&shm->rts);
        if (ok) {
            sleep_s(cfg->window);
            ok = write_all(ctl[1], "disable\n", 8) && poll(&p, 1, 20000) == 1 &&
                 read(ack[0], a, sizeof a) > 0;
        }
        c1 = atomic_load(&shm->rts);
        if (!ok)
            snprintf(err, errlen, "no ack from perf --control (perf too old, or it failed)");
        kill(pp, SIGINT);
    } else {
        snprintf(err, errlen, "fork: %s", strerror(errno));
    }
    close(ctl[1]);
    char buf[4096];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(out[0], buf + used, sizeof buf - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == sizeof buf - 1)
            break;
    }
    buf[used] = '\0';
    close(out[0]);
    close(ack[0]);
    if (pp > 0) {
        int st;
        while (waitpid(pp, &st, 0) < 0 && errno == EINTR) {
        }
    }
    if (!ok) {
        if (used) /* perf's own complaint is the better reason */
            snprintf(err, errlen, "perf: %.140s", buf);
        return -1;
    }
    char *line = strstr(buf, "raw_syscalls:sys_enter");
    if (!line) {
        snprintf(err, errlen, "no count in perf output: %.100s", buf);
        return -1;
    }
    while (line > buf && line[-1] != '\n')
        line--;
    char *endp;
    unsigned long long count = strtoull(line, &endp, 10);
    if (endp == line || c1 <= c0) {
        snprintf(err, errlen, "perf: %.100s", line);
        return -1;
    }
    return (double)count / (double)(c1 - c0);
pipe_fail:
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return -1;
}

/* One run of one cell: fork the server and the client and collect the client's figures: a timed
 * round (appended to c->r), or with count set the count pass (c->sys_rt, c->srv_sys_rt and, with
 * --perf, c->perf_sys_rt). Returns false (reason in c->err) if the run failed. */
static bool run_one(const struct cfg *cfg, struct cell *c, struct shm *shm, bool count)
{
    uint16_t port;
    int lfd = listener(&port);
    if (lfd < 0) {
        snprintf(c->err, sizeof c->err, "listener: %s", strerror(errno));
        return false;
    }
    int res[2];
    if (pipe2(res, O_CLOEXEC) < 0) {
        close(lfd);
        snprintf(c->err, sizeof c->err, "pipe: %s", strerror(errno));
        return false;
    }
    atomic_store(&shm->rts, 0);
    atomic_store(&shm->stop, 0);
    fflush(NULL);
    pid_t srv = fork();
    if (srv == 0) {
        close(res[0]);
        close(res[1]);
        server_main(cfg, c->v, c->pl->server_cpu, lfd);
    }
    struct client_args ca = {
        .cfg = cfg, .v = c->v, .cpu = c->pl->client_cpu, .port = port, .server = srv,
        .resfd = res[1], .shm = count ? shm : NULL,
    };
    pid_t cli = srv > 0 ? fork() : -1;
    if (cli == 0) {
        close(res[0]);
        close(lfd);
        client_main(&ca);
    }
    close(lfd);
    close(res[1]);
    struct run_result rr;
    memset(&rr, 0, sizeof rr);
    bool got = false;
    if (cli > 0) {
        if (count) {
            char ready;
            if (read_all(res[0], &ready, 1) && ready == 'R') {
                if (cfg->perf)
                    c->perf_sys_rt = perf_window(cfg, cli, shm, c->perf_err, sizeof c->perf_err);
                else
                    sleep_s(cfg->window);
            }
            atomic_store(&shm->stop, 1);
        }
        got = read_all(res[0], &rr, sizeof rr);
    }
    close(res[0]);
    int cst = 0, sst = 0;
    if (cli > 0)
        while (waitpid(cli, &cst, 0) < 0 && errno == EINTR) {
        }
    if (srv > 0) {
        if (cli <= 0)
            kill(srv, SIGKILL);
        while (waitpid(srv, &sst, 0) < 0 && errno == EINTR) {
        }
    }
    char b1[32], b2[32];
    if (srv < 0 || cli < 0) {
        snprintf(c->err, sizeof c->err, "fork: %s", strerror(errno));
        return false;
    }
    if (!got || !rr.ok) {
        /* a cut message is still the message: the result is looked at only to say so to gcc's
         * -Wformat-truncation, which -O3 turns on */
        if (snprintf(c->err, sizeof c->err, "client: %s (client %s, server %s)", got ? rr.err : "no result",
                     exit_desc(cst, b1, sizeof b1), exit_desc(sst, b2, sizeof b2)) >= (int)sizeof c->err)
            c->err[sizeof c->err - 2] = '~';
        return false;
    }
    if (!WIFEXITED(sst) || WEXITSTATUS(sst) != 0) {
        snprintf(c->err, sizeof c->err, "server %s", exit_desc(sst, b2, sizeof b2));
        return false;
    }
    if (count) {
        if (rr.rts > 0 && rr.cli_sys >= 0)
            c->sys_rt = (double)rr.cli_sys / (double)rr.rts;
        if (rr.rts > 0 && rr.srv_sys >= 0)
            c->srv_sys_rt = (double)rr.srv_sys / (double)rr.rts;
        if (rr.cli_sys < 0)
            snprintf(c->cnt_err, sizeof c->cnt_err,
                     "no syscall counter (tracefs not mounted, or perf_event_open refused)");
    } else {
        c->r[c->n++] = rr;
    }
    return true;
}

/* ---- statistics and output ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stat3 {
    double med, min, max; /* -1 when n == 0 */
    int n;
};

static struct stat3 stats(double *v, int n)
{
    struct stat3 s = { -1, -1, -1, n };
    if (n <= 0)
        return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

enum fig { F_RTS, F_SRV_TICKS_US, F_SRV_CPU_US, F_CLI_CPU_US };

/* One figure over the rounds of a cell; rounds where it is unavailable are skipped. */
static struct stat3 cell_stat(const struct cell *c, enum fig f)
{
    double v[MAX_ROUNDS];
    int n = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < c->n; i++) {
        const struct run_result *r = &c->r[i];
        if (r->rts == 0 || r->ns <= 0)
            continue;
        double rts = (double)r->rts;
        switch (f) {
        case F_RTS:
            v[n++] = rts / ((double)r->ns / 1e9);
            break;
        case F_SRV_TICKS_US:
            if (r->srv_ticks >= 0 && hz > 0)
                v[n++] = (double)r->srv_ticks * 1e6 / (double)hz / rts;
            break;
        case F_SRV_CPU_US:
            if (r->srv_cpu_ns >= 0)
                v[n++] = (double)r->srv_cpu_ns / 1e3 / rts;
            break;
        case F_CLI_CPU_US:
            if (r->cli_cpu_ns >= 0)
                v[n++] = (double)r->cli_cpu_ns / 1e3 / rts;
            break;
        }
    }
    return stats(v, n);
}

/* (this cell's rt/s) / (baseline's rt/s) round by round: the same round ran both. */
static struct stat3 paired_ratio(const struct cell *c, const struct cell *base)
{
    double v[MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < c->n && i < base->n; i++) {
        if (c->r[i].ns <= 0 || base->r[i].ns <= 0 || base->r[i].rts == 0)
            continue;
        double a = (double)c->r[i].rts / ((double)c->r[i].ns / 1e9);
        double b = (double)base->r[i].rts / ((double)base->r[i].ns / 1e9);
        v[n++] = a / b;
    }
    return stats(v, n);
}

static const char *fig(char *buf, size_t len, double v, const char *fmt)
{
    if (v < 0)
        snprintf(buf, len, "n/a");
    else
        snprintf(buf, len, fmt, v);
    return buf;
}

static const struct cell *baseline_of(const struct cell *cells, size_t ncells, const struct placement *pl)
{
    for (size_t i = 0; i < ncells; i++)
        if (cells[i].pl == pl && cells[i].v->kind == K_PLAIN && !cells[i].failed && cells[i].n > 0)
            return &cells[i];
    return NULL;
}

static void report(const struct cfg *cfg, const struct cell *cells, size_t ncells)
{
    static const struct stat3 none = { -1, -1, -1, 0 };
    for (size_t p = 0; p < NPLACEMENTS; p++) {
        if (!cfg->placement_on[p])
            continue;
        const struct cell *base = baseline_of(cells, ncells, &placements[p]);
        struct stat3 bs = base ? cell_stat(base, F_RTS) : none;
        printf("\nplacement %s (%s), %zu-byte messages, %d rounds x %.2f s interleaved; "
               "syscalls from a %.2f s count pass\n",
               placements[p].name, placements[p].desc, cfg->size, cfg->rounds, cfg->duration, cfg->window);
        printf("%-16s %9s %17s %6s %11s %6s %8s %9s %8s %9s %9s %9s\n", "variant", "rt/s med", "min - max",
               "ratio", "paired", "sys/rt", "sys/call", "perf s/rt", "srv s/rt", "srv us/rt", "(clock)",
               "cli us/rt");
        for (size_t i = 0; i < ncells; i++) {
            const struct cell *c = &cells[i];
            if (c->pl != &placements[p])
                continue;
            if (c->failed) {
                printf("%-16s FAILED: %s\n", c->v->name, c->err);
                continue;
            }
            struct stat3 rt = cell_stat(c, F_RTS), st = cell_stat(c, F_SRV_TICKS_US),
                         sc = cell_stat(c, F_SRV_CPU_US), cc = cell_stat(c, F_CLI_CPU_US);
            struct stat3 pr = base ? paired_ratio(c, base) : none;
            char b[9][32];
            if (pr.n > 0)
                snprintf(b[1], sizeof b[1], "%.2f-%.2f", pr.min, pr.max);
            else
                snprintf(b[1], sizeof b[1], "n/a");
            printf("%-16s %9.0f %8.0f - %-6.0f %6s %11s %6s %8s %9s %8s %9s %9s %9s\n", c->v->name, rt.med,
                   rt.min, rt.max, fig(b[0], sizeof b[0], bs.med > 0 ? rt.med / bs.med : -1, "%.3f"), b[1],
                   fig(b[2], sizeof b[2], c->sys_rt, "%.3f"),
                   fig(b[3], sizeof b[3], c->sys_rt >= 0 ? c->sys_rt / 2 : -1, "%.3f"),
                   fig(b[4], sizeof b[4], c->perf_sys_rt, "%.3f"), fig(b[5], sizeof b[5], c->srv_sys_rt, "%.3f"),
                   fig(b[6], sizeof b[6], st.med, "%.2f"), fig(b[7], sizeof b[7], sc.med, "%.2f"),
                   fig(b[8], sizeof b[8], cc.med, "%.2f"));
        }
    }
    printf("\n");
    for (size_t i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];
        printf("bench=pingpong placement=%s variant=%s backend=%s timeout=%s size=%zu rounds=%d "
               "duration_s=%.2f",
               c->pl->name, c->v->name,
               c->v->kind == K_RINGSOCK ? c->v->backend : c->v->kind == K_LIBURING ? "liburing" : "plain",
               c->v->timeout < 0 ? "none" : "5", cfg->size, c->n, cfg->duration);
        if (c->failed) {
            printf(" status=failed\n");
            continue;
        }
        const struct cell *base = baseline_of(cells, ncells, c->pl);
        struct stat3 rt = cell_stat(c, F_RTS), st = cell_stat(c, F_SRV_TICKS_US),
                     sc = cell_stat(c, F_SRV_CPU_US), cc = cell_stat(c, F_CLI_CPU_US);
        struct stat3 bs = base ? cell_stat(base, F_RTS) : none;
        struct stat3 pr = base ? paired_ratio(c, base) : none;
        printf(" status=ok rt_per_s_median=%.0f rt_per_s_min=%.0f rt_per_s_max=%.0f", rt.med, rt.min, rt.max);
        printf(" ratio_vs_plain=%.3f", bs.med > 0 ? rt.med / bs.med : -1.0);
        printf(" paired_ratio_median=%.3f paired_ratio_min=%.3f paired_ratio_max=%.3f", pr.med, pr.min,
               pr.max);
        printf(" cli_sys_per_rt=%.3f cli_sys_per_call=%.3f", c->sys_rt, c->sys_rt >= 0 ? c->sys_rt / 2 : -1.0);
        printf(" perf_cli_sys_per_rt=%.3f srv_sys_per_rt=%.3f", c->perf_sys_rt, c->srv_sys_rt);
        printf(" srv_cpu_us_per_rt=%.3f srv_cpu_us_per_rt_min=%.3f srv_cpu_us_per_rt_max=%.3f", st.med,
               st.min, st.max);
        printf(" srv_cpu_us_per_rt_clock=%.3f cli_cpu_us_per_rt=%.3f\n", sc.med, cc.med);
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pingpong [--rounds N] [--duration S] [--warmup S] [--size BYTES]\n"
            "                [--placement cross|same|both] [--only NAME[,NAME...]]\n"
            "                [--with-liburing] [--window S] [--perf PATH] [--quick]\n"
            "variants: plain uring uring+timeout epoll epoll+timeout poll poll+timeout\n"
            "          liburing liburing+timeout (raw liburing: only with --with-liburing or --only)\n"
            "(plain, the baseline, always runs)\n");
}

static bool parse_only(struct cfg *cfg, char *list)
{
    for (size_t i = 0; i < NVARIANTS; i++)
        cfg->variant_on[i] = variants[i].kind == K_PLAIN; /* the baseline always runs */
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < NVARIANTS; i++) {
            if (strcmp(t, variants[i].name) == 0) {
                cfg->variant_on[i] = true;
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "pingpong: unknown variant '%s'\n", t);
            return false;
        }
    }
    return true;
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end)
        return false;
    *out = d;
    return true;
}

int main(int argc, char **argv)
{
    struct cfg cfg = {
        .rounds = 7, .duration = 1.0, .warmup = 0.03, .size = 64, .window = 0.3, .perf = NULL,
    };
    for (size_t i = 0; i < NPLACEMENTS; i++)
        cfg.placement_on[i] = true;
    for (size_t i = 0; i < NVARIANTS; i++)
        cfg.variant_on[i] = !variants[i].optional;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--with-liburing") == 0) {
            for (size_t k = 0; k < NVARIANTS; k++)
                if (variants[k].kind == K_LIBURING)
                    cfg.variant_on[k] = true;
            continue;
        }
        if (strcmp(a, "--quick") == 0) {
            cfg.duration = 0.12;
            cfg.window = 0.15;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        const char *val = i + 1 < argc ? argv[++i] : NULL;
        bool ok = val != NULL;
        double d = 0;
        if (!ok) {
        } else if (strcmp(a, "--rounds") == 0) {
            ok = parse_double(val, &d) && d >= 1 && d <= MAX_ROUNDS && d == (int)d;
            cfg.rounds = (int)d;
        } else if (strcmp(a, "--duration") == 0) {
            ok = parse_double(val, &cfg.duration) && cfg.duration > 0 && cfg.duration < 3600;
        } else if (strcmp(a, "--warmup") == 0) {
            ok = parse_double(val, &cfg.warmup) && cfg.warmup >= 0 && cfg.warmup < 60;
        } else if (strcmp(a, "--window") == 0) {
            ok = parse_double(val, &cfg.window) && cfg.window > 0 && cfg.window < 60;
        } else if (strcmp(a, "--size") == 0) {
            ok = parse_double(val, &d) && d >= 1 && d <= MAX_SIZE && d == (int)d;
            cfg.size = (size_t)d;
        } else if (strcmp(a, "--perf") == 0) {
            cfg.perf = *val ? val : NULL;
        } else if (strcmp(a, "--placement") == 0) {
            ok = false;
            for (size_t p = 0; p < NPLACEMENTS; p++) {
                cfg.placement_on[p] = strcmp(val, "both") == 0 || strcmp(val, placements[p].name) == 0;
                ok |= cfg.placement_on[p];
            }
        } else if (strcmp(a, "--only") == 0) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", val);
            ok = parse_only(&cfg, tmp);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "pingpong: bad option %s%s%s\n", a, val ? " " : "", val ? val : "");
            usage(stderr);
            return 2;
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0 || !CPU_ISSET(0, &allowed) ||
        !CPU_ISSET(1, &allowed)) {
        fprintf(stderr, "pingpong: needs CPUs 0 and 1 (%ld online)\n", ncpu);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    struct cell *cells = calloc(NPLACEMENTS * NVARIANTS, sizeof *cells);
    struct shm *shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!cells || shm == MAP_FAILED) {
        perror("pingpong: out of memory");
        return 1;
    }
    size_t ncells = 0;
    for (size_t p = 0; p < NPLACEMENTS; p++) {
        if (!cfg.placement_on[p])
            continue;
        for (size_t v = 0; v < NVARIANTS; v++) {
            if (!cfg.variant_on[v])
                continue;
            struct cell *c = &cells[ncells++];
            c->pl = &placements[p];
            c->v = &variants[v];
            c->sys_rt = c->srv_sys_rt = c->perf_sys_rt = -1;
        }
    }

    struct utsname u;
    uname(&u);
    double load[3] = { -1, -1, -1 };
    if (getloadavg(load, 3) < 3)
        load[0] = load[1] = load[2] = -1;
    printf("pingpong: kernel %s, %ld CPUs online, loadavg %.2f %.2f %.2f at start, syscall counter: %s, "
           "perf: %s\n",
           u.release, ncpu, load[0], load[1], load[2],
           sys_enter_id() >= 0 ? "tracepoint" : "unavailable (tracefs not mounted)", cfg.perf ? cfg.perf : "no");
    fflush(stdout);

    bool all_ok = true;
    struct cpu_ticks ct0 = cpu_ticks_now();
    size_t nps0 = 0;
    struct proc_cpu *ps0 = proc_snapshot(&nps0);
    int64_t t_start = now_ns();
    for (int round = 0; round < cfg.rounds; round++) {
        fprintf(stderr, "pingpong: round %d/%d ...", round + 1, cfg.rounds);
        /* interleaved; the order rotates each round so that no variant always runs first */
        for (size_t k = 0; k < ncells; k++) {
            struct cell *c = &cells[(k + (size_t)round) % ncells];
            if (c->failed)
                continue;
            if (!run_one(&cfg, c, shm, false)) {
                c->failed = true;
                all_ok = false;
                fprintf(stderr, "\npingpong: %s/%s failed: %s\n", c->pl->name, c->v->name, c->err);
            }
        }
        fprintf(stderr, " %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    }
    fprintf(stderr, "pingpong: count pass (%.2f s per variant%s) ...", cfg.window, cfg.perf ? ", with perf" : "");
    for (size_t k = 0; k < ncells; k++) {
        struct cell *c = &cells[k];
        if (c->failed)
            continue;
        if (!run_one(&cfg, c, shm, true)) {
            all_ok = false;
            fprintf(stderr, "\npingpong: count %s/%s failed: %s", c->pl->name, c->v->name, c->err);
            continue;
        }
        if (c->sys_rt < 0)
            fprintf(stderr, "\npingpong: count %s/%s: %s", c->pl->name, c->v->name, c->cnt_err);
        if (cfg.perf && c->perf_sys_rt < 0)
            fprintf(stderr, "\npingpong: perf %s/%s: %s", c->pl->name, c->v->name, c->perf_err);
    }
    fprintf(stderr, " %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    double wall = (double)(now_ns() - t_start) / 1e9;
    struct cpu_ticks ct1 = cpu_ticks_now();
    size_t nps1 = 0;
    struct proc_cpu *ps1 = proc_snapshot(&nps1);
    report(&cfg, cells, ncells);
    getloadavg(load, 3);
    printf("\npingpong: loadavg %.2f %.2f %.2f at end, %.1f s\n", load[0], load[1], load[2], wall);
    /* Whatever else ran meanwhile. /proc/stat splits softirq time (loopback TCP's receive path)
     * out of process time, while our children's CPU time includes what ran in their context, so
     * the two do not subtract cleanly: the per-process line below names the others. */
    struct rusage ru;
    long hz = sysconf(_SC_CLK_TCK);
    if (ct0.ok && ct1.ok && hz > 0 && getrusage(RUSAGE_CHILDREN, &ru) == 0) {
        double task = (double)(ct1.task - ct0.task) / (double)hz;
        double irq = (double)(ct1.irq - ct0.irq) / (double)hz;
        double steal = (double)(ct1.steal - ct0.steal) / (double)hz;
        double ours = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        double others = task + irq > ours ? task + irq - ours : 0;
        printf("pingpong: machine during the run: %.1f s wall x %ld CPUs; busy %.1f CPU-s (processes %.1f, "
               "irq+softirq %.1f), of it our children %.1f, so everything else ~%.1f (%.0f %% of the "
               "machine); steal %.1f s\n",
               wall, ncpu, task + irq, task, irq, ours, others, 100 * others / (wall * (double)ncpu), steal);
        printf("bench=pingpong-machine wall_s=%.1f busy_cpu_s=%.1f process_cpu_s=%.1f irq_cpu_s=%.1f "
               "ours_cpu_s=%.1f others_cpu_s=%.1f steal_s=%.1f\n",
               wall, task + irq, task, irq, ours, others, steal);
    }
    if (ps1)
        print_other_cpu("pingpong", ps0, nps0, ps1, nps1);
    free(ps0);
    free(ps1);
    free(cells);
    return all_ok ? 0 : 1;
}
