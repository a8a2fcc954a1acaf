/* bench/connect: connections per second (connect + close) to a local TCP server, and how late a
 * connect timeout fires.
 *
 * One server process pinned to CPU 1 accepts and closes connections as fast as it can (blocking
 * accept4 + close; backlog 65535, or 4096 with --no-netns) for the whole run. One client process
 * per variant, pinned to CPU 0, connects to it on 127.0.0.1 and closes, over and over, in slices:
 * the parent runs every variant's client for one slice per round, the order rotating each round
 * (default 51 rounds x 0.1 s, each slice after a 20 ms warm-up). The client processes live for
 * the whole run, so their loops and caches are made once. On this shared 2-vCPU VM, where other
 * sessions' jobs come and go for seconds at a time, many short adjacent slices give steadier
 * medians and paired ratios than a few long runs. Variants:
 *
 *   plain          socket(2) (blocking) + connect(2) + close(2): the baseline
 *   cc-<backend>   rs_create_connection("127.0.0.1", port, timeout None) + rs_close, with
 *                  RINGSOCK_BACKEND=<backend> (uring, epoll, poll) set in the client before any
 *                  ringsock call (the default loop is per thread, made on first use; the client
 *                  checks rs_loop_backend got it)
 *   open-<backend> rs_socket_open + rs_connect (timeout None) + rs_close: the same connect
 *                  without create_connection's resolver and state machine, to separate their cost
 *   liburing       raw liburing, no ringsock (built when liburing is found): socket(2) with
 *                  SOCK_NONBLOCK (as ringsock makes it), one CONNECT SQE and one
 *                  io_uring_submit_and_wait(1) on a ring set up with the uring backend's flags
 *                  (SINGLE_ISSUER|DEFER_TASKRUN), close(2): io_uring's own cost, so that
 *                  open-uring minus liburing is ringsock's
 *   cc-<backend>+t the cc variant with opts.timeout 5 s (io_uring: CONNECT linked to a
 *                  LINK_TIMEOUT; epoll/poll: the timer heap). Not in --quick.
 *
 * TIME_WAIT: every variant sets SO_LINGER {1, 0} on the client socket just before closing it, so
 * the close sends RST and neither side keeps a TIME_WAIT socket (without it ~30k connects/s fill
 * the 28k-port ephemeral range with TIME_WAIT entries within a second, and every later connect
 * pays for the port search: the variants run late in a round would be slower). That setsockopt is
 * one syscall per connect in every variant, counted in sys/conn. --no-linger turns it off; the
 * table then shows the TIME_WAIT count growing (column tw).
 *
 * Figures per variant:
 *   conn/s         connects (+ closes) per second over a slice: median and min-max over the
 *                  rounds, the ratio of the median to plain's median, and the median and range
 *                  of the per-round paired ratios (plain ran in the same round)
 *   cli us/conn    the client's CPU time (CLOCK_PROCESS_CPUTIME_ID: user + system, which on
 *                  loopback includes much of the TCP handshake's softirq work) per connect,
 *                  median over the slices; "cpu x" = median over rounds of (this variant's
 *                  cli us/conn) / (plain's in the same round): the steadier figure here
 *   srv us/conn    the server's CPU time (its CPU-time clock) per connect: the same work in every
 *                  variant, shown as a check that the server kept up
 *   sys/conn       syscalls per connect of the client, counted in a separate pass after the
 *                  rounds (--window seconds per variant) with a raw_syscalls:sys_enter counter the
 *                  client opens on itself (perf_event_open), enabled exactly around its loop;
 *                  not during the timed rounds (a tracepoint counter slows every syscall)
 *   perf sys/conn  (with --perf PATH) the same from `perf stat -e raw_syscalls:sys_enter -p
 *                  <client>` in that pass, enabled/disabled through --control fds
 *   max ms, stalls the slowest single connect + close of the timed slices, and how many took
 *                  > 100 ms (a dropped SYN costs 1 s; anything else that long is the client
 *                  being descheduled)
 *   drops          SYNs the listener dropped during the timed slices (TcpExt ListenDrops): the
 *                  server was descheduled until its accept queue overflowed. In the private
 *                  network namespace the queue is 65535 deep (its own net.core.somaxconn)
 *   tw             TIME_WAIT sockets in the namespace after the variant's last slice
 *                  (/proc/net/sockstat)
 *
 * Network namespace: the whole run moves into a private network namespace (unshare(2), needs
 * root; --no-netns to stay): other processes' sockets then share neither the loopback nor the
 * ephemeral port space and TIME_WAIT table with ours (on this VM concurrent sessions have left
 * 85k TIME_WAIT sockets on loopback, which every connect's port search would wade through).
 *
 * Timeout accuracy (--timeout-tries N, 20; 0 = skip): a listener with backlog 0 whose accept
 * queue is filled by connections nobody accepts drops every further SYN, so a connect to it
 * waits until the client's timeout. rs_create_connection with opts.timeout 0.05 is called N
 * times per backend (in rounds of 5, interleaved across backends, each round in a fresh child
 * pinned to CPU 0); lateness = the call's duration - 50 ms; it must be -ETIMEDOUT. Baselines:
 * "plain-sndtimeo", a blocking connect(2) with SO_SNDTIMEO 50 ms (returns EINPROGRESS when it
 * expires; the kernel's timer there is jiffy-based), and "plain-poll", a non-blocking connect(2)
 * + poll(2) with a 50 ms timeout: the machine's own wake-up lateness for a hrtimer sleep. Each
 * ringsock try is followed by such a plain-poll try in the same process ("paired plain-poll"):
 * on a busy machine the tail (p90, max) is the scheduler's, and the pair shows it.
 * Target (/work/shared/PERFORMANCE.md): within deadline + 5 ms, i.e. max lateness <= 5 ms.
 *
 * Output: progress on stderr; a human table and key=value lines on stdout. Exit status 0 only if
 * every run succeeded.
 *
 * Usage: connect [--rounds N] [--duration S] [--warmup S] [--window S] [--only NAME[,NAME...]]
 *                [--no-timeout-variants] [--timeout-tries N] [--no-linger] [--no-netns]
 *                [--perf PATH] [--quick]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <netinet/in.h>
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "machine.h"

/* bench/meson.build defines PP_HAVE_LIBURING for every benchmark when liburing was found */
#ifdef PP_HAVE_LIBURING
#include <liburing.h>
#endif

#define MAX_ROUNDS 500
#define MAX_TRIES 200
#define TRIES_PER_CHILD 5
#define CHILD_ALARM_S 60
#define STALL_NS 100000000LL
#define TIMEOUT_S 0.05
#define TIMEOUT_TARGET_MS 5.0

/* ---- configuration ------------------------------------------------------------------------ */

enum kind { K_PLAIN, K_CC, K_OPEN, K_LIBURING };

struct variant {
    const char *name;
    int kind;            /* enum kind */
    const char *backend; /* K_CC, K_OPEN: the RINGSOCK_BACKEND value */
    int backend_id;      /* enum rs_backend expected from rs_loop_backend */
    double timeout;      /* RS_TIMEOUT_NONE or seconds */
    bool timed;          /* a +t variant (off with --no-timeout-variants and in --quick) */
};

static const struct variant variants[] = {
    { "plain", K_PLAIN, NULL, 0, RS_TIMEOUT_NONE, false },
    { "cc-uring", K_CC, "uring", RS_BACKEND_URING, RS_TIMEOUT_NONE, false },
    { "cc-epoll", K_CC, "epoll", RS_BACKEND_EPOLL, RS_TIMEOUT_NONE, false },
    { "cc-poll", K_CC, "poll", RS_BACKEND_POLL, RS_TIMEOUT_NONE, false },
    { "open-uring", K_OPEN, "uring", RS_BACKEND_URING, RS_TIMEOUT_NONE, false },
    { "open-epoll", K_OPEN, "epoll", RS_BACKEND_EPOLL, RS_TIMEOUT_NONE, false },
    { "open-poll", K_OPEN, "poll", RS_BACKEND_POLL, RS_TIMEOUT_NONE, false },
#ifdef PP_HAVE_LIBURING
    { "liburing", K_LIBURING, NULL, 0, RS_TIMEOUT_NONE, false },
#endif
    { "cc-uring+t", K_CC, "uring", RS_BACKEND_URING, 5.0, true },
    { "cc-epoll+t", K_CC, "epoll", RS_BACKEND_EPOLL, 5.0, true },
    { "cc-poll+t", K_CC, "poll", RS_BACKEND_POLL, 5.0, true },
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

/* The timeout-accuracy rows: two plain baselines and rs_create_connection per backend. */
enum tkind { T_SNDTIMEO, T_POLL, T_RS };

struct tvariant {
    const char *name;
    int kind;            /* enum tkind */
    const char *backend; /* T_RS */
    int backend_id;
};

static const struct tvariant tvariants[] = {
    { "plain-sndtimeo", T_SNDTIMEO, NULL, 0 },
    { "plain-poll", T_POLL, NULL, 0 },
    { "uring", T_RS, "uring", RS_BACKEND_URING },
    { "epoll", T_RS, "epoll", RS_BACKEND_EPOLL },
    { "poll", T_RS, "poll", RS_BACKEND_POLL },
};
#define NTVARIANTS (sizeof tvariants / sizeof tvariants[0])

#define CLIENT_CPU 0
#define SERVER_CPU 1

struct cfg {
    int rounds;
    double duration;
    double warmup;
    double window;    /* count pass: seconds per variant */
    bool variant_on[NVARIANTS];
    int timeout_tries;
    bool linger;      /* SO_LINGER {1, 0} before every client close */
    bool netns;       /* run in a private network namespace */
    const char *perf; /* perf binary for the cross-check in the count pass, or NULL */
};

/* ---- results ------------------------------------------------------------------------------ */

/* What the client reports for one run (through a pipe). Counts are -1 when not available. */
struct run_result {
    int ok;
    char err[160];
    uint64_t conns;
    int64_t ns;
    int64_t cli_cpu_ns, srv_cpu_ns;
    int64_t cli_sys;
    int64_t max_ns; /* slowest connect + close */
    uint64_t stalls;
};

struct cell {
    const struct variant *v;
    int n;
    struct run_result r[MAX_ROUNDS];
    bool failed;
    char err[200];
    long tw;           /* TIME_WAIT sockets after the last run; -1 unknown */
    long long drops;   /* SYNs the listener dropped (TcpExt ListenDrops) over the timed runs */
    /* count pass; < 0: not measured */
    double sys_conn, perf_sys_conn;
    char cnt_err[160], perf_err[160];
};

struct tcell {
    const struct tvariant *v;
    int n;
    double late_ms[MAX_TRIES];
    int nbase;
    double base_ms[MAX_TRIES]; /* T_RS: the plain-poll try made right after each of ours */
    bool failed;
    char err[200];
};

/* What a timeout child reports. */
struct tresult {
    int ok;
    char err[160];
    int n;
    double late_ms[TRIES_PER_CHILD];
    double base_ms[TRIES_PER_CHILD];
};

/* Shared with the client in the count pass. */
struct shm {
    _Atomic uint64_t conns;
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

static void wait_pid(pid_t pid, int *status)
{
    while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
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

/* TIME_WAIT sockets in the system ("tw" of /proc/net/sockstat's TCP line), or -1. */
static long tw_count(void)
{
    FILE *f = fopen("/proc/net/sockstat", "re");
    if (!f)
        return -1;
    char line[256];
    long tw = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "TCP:", 4) != 0)
            continue;
        char *p = strstr(line, " tw ");
        if (p)
            tw = strtol(p + 4, NULL, 10);
    }
    fclose(f);
    return tw;
}

/* A TcpExt counter of /proc/net/netstat (this network namespace's), or -1. */
static long long tcpext(const char *name)
{
    FILE *f = fopen("/proc/net/netstat", "re");
    if (!f)
        return -1;
    static char names[8192], values[8192];
    long long v = -1;
    while (fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *s1 = NULL, *s2 = NULL;
        char *n = strtok_r(names, " \n", &s1), *x = strtok_r(values, " \n", &s2);
        while (n && x) {
            if (strcmp(n, name) == 0) {
                v = strtoll(x, NULL, 10);
                break;
            }
            n = strtok_r(NULL, " \n", &s1);
            x = strtok_r(NULL, " \n", &s2);
        }
        break;
    }
    fclose(f);
    return v;
}
static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    return sin;
}

static int listen_backlog = 4096; /* raised in the private network namespace */

/* A listener on 127.0.0.1, ephemeral port; -1 on failure. */
static int listener(int backlog, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof sin;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Move this process (and the children it forks later) into a new network namespace with its
 * loopback up. 0, or -errno (then nothing changed). */
static int private_netns(void)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int r = 0;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        r = -errno;
    } else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
            r = -errno;
    }
    close(fd);
    return r;
}

/* In a child: ask for the backend and check the default loop got it. */
static int backend_setup(const char *backend, int backend_id, char *err, size_t errlen)
{
    if (setenv("RINGSOCK_BACKEND", backend, 1) < 0) {
        snprintf(err, errlen, "setenv: %s", strerror(errno));
        return -errno;
    }
    rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0) {
        snprintf(err, errlen, "rs_loop_default(%s): %s", backend, rs_strerror(r));
        return r;
    }
    if (rs_loop_backend(loop) != backend_id) {
        snprintf(err, errlen, "asked for backend %s, got %s", backend, rs_backend_name(rs_loop_backend(loop)));
        return -EINVAL;
    }
    return 0;
}

/* ---- one connect + close ------------------------------------------------------------------ */

struct target {
    struct sockaddr_in sin;
    char port[8];
    struct rs_connect_opts opts;
    bool linger;
#ifdef PP_HAVE_LIBURING
    struct io_uring *ring; /* K_LIBURING */
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

/* One CONNECT SQE, one io_uring_submit_and_wait(1): its result. */
static int raw_connect(struct io_uring *ring, int fd, const struct sockaddr_in *sin)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)sin, sizeof *sin);
    io_uring_sqe_set_data64(sqe, 1);
    for (;;) {
        int r = io_uring_submit_and_wait(ring, 1);
        if (r < 0 && r != -EINTR)
            return r;
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(ring, &cqe) == 0) {
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            return res;
        }
    }
}
#endif

static const struct linger rst_on_close = { 1, 0 };

/* One connect + close the variant's way: 0 or -errno. */
static int one_connect(const struct variant *v, const struct target *t)
{
    rs_socket *s = NULL;
    int r;
    switch (v->kind) {
    case K_PLAIN: {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (const struct sockaddr *)&t->sin, sizeof t->sin) < 0) {
            r = -errno;
            close(fd);
            return r;
        }
        if (t->linger)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst_on_close, sizeof rst_on_close);
        close(fd);
        return 0;
    }
    case K_CC:
        r = rs_create_connection(&s, "127.0.0.1", t->port, &t->opts);
        if (r < 0)
            return r;
        break;
#ifdef PP_HAVE_LIBURING
    case K_LIBURING: {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        r = raw_connect(t->ring, fd, &t->sin);
        if (r < 0) {
            close(fd);
            return r;
        }
        if (t->linger)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst_on_close, sizeof rst_on_close);
        close(fd);
        return 0;
    }
#endif
    case K_OPEN:
        r = rs_socket_open(&s, AF_INET, SOCK_STREAM, 0);
        if (r < 0)
            return r;
        if (v->timeout != RS_TIMEOUT_NONE)
            rs_settimeout(s, v->timeout);
        r = rs_connect(s, (const struct sockaddr *)&t->sin, sizeof t->sin);
        if (r < 0) {
            rs_close(s);
            return r;
        }
        break;
    default:
        return -EINVAL;
    }
    if (t->linger)
        rs_setsockopt(s, SOL_SOCKET, SO_LINGER, &rst_on_close, sizeof rst_on_close);
    r = rs_close(s);
    return r;
}

/* ---- the server --------------------------------------------------------------------------- */

/* Accept and close until the parent shuts the listener down (accept then fails with EINVAL). One
 * server serves every variant for the whole run. */
static void server_main(int lfd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pin(SERVER_CPU) < 0) {
        fprintf(stderr, "connect: server: cannot pin to CPU %d\n", SERVER_CPU);
        _exit(2);
    }
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
            continue;
        if (errno == EINVAL)
            _exit(0); /* shut down */
        perror("connect: server: accept4");
        _exit(3);
    }
}

/* ---- the clients -------------------------------------------------------------------------- */

/* One client process per variant lives for the whole run, pinned to CPU 0, its default loop made
 * once: the parent sends it a command byte per slice ('T' timed slice, 'C' count pass, 'Q' quit)
 * and reads back a run_result. */
struct client {
    const struct variant *v;
    pid_t pid;
    int cmd;    /* write end */
    int res;    /* read end */
    bool dead;
};

struct client_args {
    const struct cfg *cfg;
    const struct variant *v;
    uint16_t port;
    pid_t server;
    int cmdfd, resfd;
    struct shm *shm;
};

static void client_fail(int resfd, struct run_result *res, const char *what, int err)
{
    res->ok = 0;
    snprintf(res->err, sizeof res->err, "%s: %s", what, err ? rs_strerror(err) : "");
    write_all(resfd, res, sizeof *res);
    _exit(1);
}

static void client_main(const struct client_args *a)
{
    const struct cfg *cfg = a->cfg;
    const struct variant *v = a->v;
    struct run_result res;
    memset(&res, 0, sizeof res);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pin(CLIENT_CPU) < 0)
        client_fail(a->resfd, &res, "sched_setaffinity", errno);
    bool rs = v->kind == K_CC || v->kind == K_OPEN;
    if (rs && backend_setup(v->backend, v->backend_id, res.err, sizeof res.err) < 0) {
        write_all(a->resfd, &res, sizeof res);
        _exit(1);
    }
    struct target t;
    memset(&t, 0, sizeof t);
#ifdef PP_HAVE_LIBURING
    static struct io_uring ring;
    if (v->kind == K_LIBURING) {
        int rr = raw_ring_init(&ring);
        if (rr < 0)
            client_fail(a->resfd, &res, "io_uring_queue_init_params", -rr);
        t.ring = &ring;
    }
#endif
    t.sin = loopback(a->port);
    snprintf(t.port, sizeof t.port, "%u", (unsigned)a->port);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = v->timeout;
    t.opts = o;
    t.linger = cfg->linger;
    clockid_t scid;
    bool have_scid = clock_getcpuclockid(a->server, &scid) == 0;
    int r;
    char cmd;
    while (read_all(a->cmdfd, &cmd, 1) && cmd != 'Q') {
        alarm(CHILD_ALARM_S);
        memset(&res, 0, sizeof res);
        res.cli_cpu_ns = res.srv_cpu_ns = res.cli_sys = -1;
        /* warm-up: the previous variant's process ran on this CPU meanwhile */
        int64_t wend = now_ns() + (int64_t)(cfg->warmup * 1e9);
        do {
            if ((r = one_connect(v, &t)) < 0)
                client_fail(a->resfd, &res, "warm-up connect", -r);
        } while (now_ns() < wend);

        if (cmd == 'C') {
            /* count pass: a syscall counter on this process, enabled around a loop that runs
             * until the parent says stop (and, with --perf, runs perf on us meanwhile) */
            int cfd = syscall_counter(sys_enter_id(), 0);
            char ready = 'R';
            write_all(a->resfd, &ready, 1);
            if (cfd >= 0)
                ioctl(cfd, PERF_EVENT_IOC_ENABLE, 0); /* counting starts after this call's entry */
            uint64_t n = 0;
            while (!atomic_load_explicit(&a->shm->stop, memory_order_relaxed)) {
                if ((r = one_connect(v, &t)) < 0)
                    client_fail(a->resfd, &res, "connect", -r);
                atomic_store_explicit(&a->shm->conns, ++n, memory_order_relaxed);
            }
            if (cfd >= 0)
                ioctl(cfd, PERF_EVENT_IOC_DISABLE, 0); /* this call's entry is counted */
            int64_t cs = counter_read(cfd);
            if (cfd >= 0)
                close(cfd);
            res.cli_sys = cs >= 1 ? cs - 1 : -1;
            res.conns = n;
        } else {
            int64_t srv0 = have_scid ? clock_ns(scid) : -1;
            int64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
            int64_t t0 = now_ns(), prev = t0, t1;
            int64_t end = t0 + (int64_t)(cfg->duration * 1e9);
            uint64_t n = 0;
            do {
                if ((r = one_connect(v, &t)) < 0)
                    client_fail(a->resfd, &res, "connect", -r);
                n++;
                t1 = now_ns();
                if (t1 - prev > res.max_ns)
                    res.max_ns = t1 - prev;
                if (t1 - prev > STALL_NS)
                    res.stalls++;
                prev = t1;
            } while (t1 < end);
            int64_t cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
            int64_t srv1 = have_scid ? clock_ns(scid) : -1;
            res.conns = n;
            res.ns = t1 - t0;
            if (cpu0 >= 0 && cpu1 >= 0)
                res.cli_cpu_ns = cpu1 - cpu0;
            if (srv0 >= 0 && srv1 >= 0)
                res.srv_cpu_ns = srv1 - srv0;
        }
        res.ok = 1;
        if (!write_all(a->resfd, &res, sizeof res))
            _exit(1);
        alarm(0);
    }
    _exit(0);
}

/* ---- the parent: throughput runs ---------------------------------------------------------- */

/* perf stat on the client, enabled through --control fds around cfg->window seconds; returns the
 * client's syscalls per connect in that window, or -1 (with the reason in err). */
static double perf_window(const struct cfg *cfg, pid_t client, struct shm *shm, char *err, size_t errlen)
{
    int ctl[2] = { -1, -1 }, ack[2] = { -1, -1 }, out[2] = { -1, -1 };
    if (pipe(ctl) < 0 || pipe(ack) < 0 || pipe(out) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (ctl[i] >= 0)
                close(ctl[i]);
            if (ack[i] >= 0)
                close(ack[i]);
            if (out[i] >= 0)
                close(out[i]);
        }
        return -1;
    }
    fflush(NULL);
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
        execl(cfg->perf, "perf", "stat", "-x,", "-D", "-1", "--control", ctlarg, "-e", "raw_syscalls:sys_enter",
              "-p", pidarg, (char *)NULL);
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
        c0 = atomic_load(&shm->conns);
        if (ok) {
            sleep_s(cfg->window);
            ok = write_all(ctl[1], "disable\n", 8) && poll(&p, 1, 20000) == 1 && read(ack[0], a, sizeof a) > 0;
        }
        c1 = atomic_load(&shm->conns);
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
        wait_pid(pp, &st);
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
}

/* Start the client of cell c (its process waits for commands). False (reason in c->err) if it
 * could not be started. */
static bool client_start(const struct cfg *cfg, struct client *cl, struct cell *c, uint16_t port, pid_t server,
                         struct shm *shm)
{
    int cmd[2], res[2];
    cl->v = c->v;
    cl->dead = true;
    if (pipe2(cmd, O_CLOEXEC) < 0) {
        snprintf(c->err, sizeof c->err, "pipe: %s", strerror(errno));
        return false;
    }
    if (pipe2(res, O_CLOEXEC) < 0) {
        snprintf(c->err, sizeof c->err, "pipe: %s", strerror(errno));
        close(cmd[0]);
        close(cmd[1]);
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(cmd[1]);
        close(res[0]);
        struct client_args ca = {
            .cfg = cfg, .v = c->v, .port = port, .server = server, .cmdfd = cmd[0], .resfd = res[1], .shm = shm,
        };
        client_main(&ca);
    }
    close(cmd[0]);
    close(res[1]);
    if (pid < 0) {
        snprintf(c->err, sizeof c->err, "fork: %s", strerror(errno));
        close(cmd[1]);
        close(res[0]);
        return false;
    }
    cl->pid = pid;
    cl->cmd = cmd[1];
    cl->res = res[0];
    cl->dead = false;
    return true;
}

/* End a client: 'Q' (or its pipe's EOF) and wait; returns its exit description in buf. */
static const char *client_stop(struct client *cl, char *buf, size_t len)
{
    snprintf(buf, len, "not running");
    if (cl->pid <= 0)
        return buf;
    write_all(cl->cmd, "Q", 1);
    close(cl->cmd);
    close(cl->res);
    int st = 0;
    wait_pid(cl->pid, &st);
    cl->pid = 0;
    cl->dead = true;
    return exit_desc(st, buf, len);
}

/* One slice of one cell on its client: a timed slice (appended to c->r), or with count set the
 * count pass (c->sys_conn and, with --perf, c->perf_sys_conn). Returns false (reason in c->err)
 * if the client failed; it is then stopped. */
static bool run_slice(const struct cfg *cfg, struct cell *c, struct client *cl, struct shm *shm, bool count)
{
    atomic_store(&shm->conns, 0);
    atomic_store(&shm->stop, 0);
    long long drops0 = tcpext("ListenDrops");
    struct run_result rr;
    memset(&rr, 0, sizeof rr);
    bool got = write_all(cl->cmd, count ? "C" : "T", 1);
    if (got && count) {
        char ready;
        if (read_all(cl->res, &ready, 1) && ready == 'R') {
            if (cfg->perf)
                c->perf_sys_conn = perf_window(cfg, cl->pid, shm, c->perf_err, sizeof c->perf_err);
            else
                sleep_s(cfg->window);
        }
        atomic_store(&shm->stop, 1);
    }
    got = got && read_all(cl->res, &rr, sizeof rr);
    long long drops1 = tcpext("ListenDrops");
    c->tw = tw_count();
    if (!got || !rr.ok) {
        char b[32];
        client_stop(cl, b, sizeof b);
        snprintf(c->err, sizeof c->err, "client: %.150s (client %.30s)", got ? rr.err : "no result", b);
        return false;
    }
    if (count) {
        if (rr.conns > 0 && rr.cli_sys >= 0)
            c->sys_conn = (double)rr.cli_sys / (double)rr.conns;
        else
            snprintf(c->cnt_err, sizeof c->cnt_err,
                     "no syscall counter (tracefs not mounted, or perf_event_open refused)");
    } else {
        if (drops0 >= 0 && drops1 >= drops0 && c->drops >= 0)
            c->drops += drops1 - drops0;
        else
            c->drops = -1;
        if (c->n < MAX_ROUNDS)
            c->r[c->n++] = rr;
    }
    return true;
}

/* ---- the timeout test --------------------------------------------------------------------- */

/* A listener with backlog 0 and its accept queue filled by connections nobody accepts: Linux
 * then drops every further SYN (ListenOverflows). The first filler completes the queue, the other
 * two make sure of it whatever the kernel's "full" comparison is. Returns the listener or -1. */
#define FILLERS 3
static int blackhole(uint16_t *port, int fill[FILLERS], char *err, size_t errlen)
{
    int lfd = listener(0, port);
    if (lfd < 0) {
        snprintf(err, errlen, "listener: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in sin = loopback(*port);
    for (int i = 0; i < FILLERS; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fill[i] < 0 || (connect(fill[i], (struct sockaddr *)&sin, sizeof sin) < 0 && errno != EINPROGRESS)) {
            snprintf(err, errlen, "filler: %s", strerror(errno));
            return -1;
        }
        if (i == 0) {
            struct pollfd p = { .fd = fill[0], .events = POLLOUT };
            int e = -1;
            socklen_t el = sizeof e;
            if (poll(&p, 1, 2000) != 1 || getsockopt(fill[0], SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0) {
                snprintf(err, errlen, "first filler did not connect");
                return -1;
            }
        }
    }
    return lfd;
}

/* What a hand-written timeout connect does: a non-blocking connect(2) + poll(2) with the timeout.
 * 0 and its lateness in ms, or -1 with err. */
static int plain_poll_try(const struct sockaddr_in *sin, double *late_ms, char *err, size_t errlen)
{
    int64_t t0 = now_ns();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = fd < 0 || connect(fd, (const struct sockaddr *)sin, sizeof *sin) < 0 ? -errno : 0;
    if (r == -EINPROGRESS) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int pr = poll(&p, 1, (int)(TIMEOUT_S * 1e3));
        r = pr == 0 ? -ETIMEDOUT : pr < 0 ? -errno : 0;
    }
    int64_t t1 = now_ns();
    if (fd >= 0)
        close(fd);
    if (r != -ETIMEDOUT) {
        snprintf(err, errlen, "connect + poll returned %s, want a timeout", r == 0 ? "0" : strerror(-r));
        return -1;
    }
    *late_ms = (double)(t1 - t0) / 1e6 - TIMEOUT_S * 1e3;
    return 0;
}

/* One child: `tries` timed-out connects, their lateness in ms (and for ringsock, a plain-poll
 * try after each). */
static void timeout_child(const struct tvariant *v, int tries, int resfd)
{
    struct tresult res;
    memset(&res, 0, sizeof res);
    alarm(CHILD_ALARM_S);
    if (pin(CLIENT_CPU) < 0) {
        snprintf(res.err, sizeof res.err, "sched_setaffinity: %s", strerror(errno));
        goto out;
    }
    if (v->kind == T_RS && backend_setup(v->backend, v->backend_id, res.err, sizeof res.err) < 0)
        goto out;
    uint16_t port;
    int fill[FILLERS];
    if (blackhole(&port, fill, res.err, sizeof res.err) < 0)
        goto out;
    struct sockaddr_in sin = loopback(port);
    char ports[8];
    snprintf(ports, sizeof ports, "%u", (unsigned)port);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = TIMEOUT_S;
    for (int i = 0; i < tries; i++) {
        double late;
        if (v->kind == T_RS) {
            rs_socket *s = NULL;
            int64_t t0 = now_ns();
            int r = rs_create_connection(&s, "127.0.0.1", ports, &o);
            late = (double)(now_ns() - t0) / 1e6 - TIMEOUT_S * 1e3;
            if (r == 0)
                rs_close(s);
            if (r != -ETIMEDOUT) {
                snprintf(res.err, sizeof res.err, "rs_create_connection returned %s, want ETIMEDOUT",
                         r == 0 ? "0" : rs_err_name(r));
                goto out;
            }
        } else if (v->kind == T_SNDTIMEO) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct timeval tv = { .tv_sec = 0, .tv_usec = (suseconds_t)(TIMEOUT_S * 1e6) };
            if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
                snprintf(res.err, sizeof res.err, "socket/SO_SNDTIMEO: %s", strerror(errno));
                goto out;
            }
            int64_t t0 = now_ns();
            int r = connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ? -errno : 0;
            late = (double)(now_ns() - t0) / 1e6 - TIMEOUT_S * 1e3;
            close(fd);
            if (r != -EINPROGRESS) {
                snprintf(res.err, sizeof res.err, "connect with SO_SNDTIMEO returned %s, want EINPROGRESS",
                         r == 0 ? "0" : strerror(-r));
                goto out;
            }
        } else if (plain_poll_try(&sin, &late, res.err, sizeof res.err) < 0) {
            goto out;
        }
        res.late_ms[res.n] = late;
        /* the machine's own lateness at about the same moment, for the ringsock rows */
        if (v->kind == T_RS && plain_poll_try(&sin, &res.base_ms[res.n], res.err, sizeof res.err) < 0)
            goto out;
        res.n++;
    }
    res.ok = 1;
out:
    write_all(resfd, &res, sizeof res);
    _exit(res.ok ? 0 : 1);
}

static bool timeout_run(struct tcell *c, int tries)
{
    int res[2];
    if (pipe2(res, O_CLOEXEC) < 0) {
        snprintf(c->err, sizeof c->err, "pipe: %s", strerror(errno));
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(res[0]);
        timeout_child(c->v, tries, res[1]);
    }
    close(res[1]);
    struct tresult tr;
    memset(&tr, 0, sizeof tr);
    bool got = pid > 0 && read_all(res[0], &tr, sizeof tr);
    close(res[0]);
    int st = 0;
    if (pid > 0)
        wait_pid(pid, &st);
    char b[32];
    if (!got || !tr.ok) {
        snprintf(c->err, sizeof c->err, "%s (%s)", got ? tr.err : "no result",
                 pid > 0 ? exit_desc(st, b, sizeof b) : "fork failed");
        return false;
    }
    for (int i = 0; i < tr.n && c->n < MAX_TRIES; i++) {
        c->late_ms[c->n++] = tr.late_ms[i];
        if (c->v->kind == T_RS)
            c->base_ms[c->nbase++] = tr.base_ms[i];
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

/* The 90th percentile (nearest rank) of v[0..n), already sorted; -1 when n == 0. */
static double p90(const double *v, int n)
{
    if (n <= 0)
        return -1;
    int k = (9 * n + 9) / 10; /* ceil(0.9 n) */
    return v[k - 1];
}

enum fig { F_CPS, F_CLI_CPU_US, F_SRV_CPU_US, F_MAX_MS };

/* One figure over the rounds of a cell; rounds where it is unavailable are skipped. */
static struct stat3 cell_stat(const struct cell *c, enum fig f)
{
    double v[MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < c->n; i++) {
        const struct run_result *r = &c->r[i];
        if (r->conns == 0 || r->ns <= 0)
            continue;
        double k = (double)r->conns;
        switch (f) {
        case F_CPS:
            v[n++] = k / ((double)r->ns / 1e9);
            break;
        case F_CLI_CPU_US:
            if (r->cli_cpu_ns >= 0)
                v[n++] = (double)r->cli_cpu_ns / 1e3 / k;
            break;
        case F_SRV_CPU_US:
            if (r->srv_cpu_ns >= 0)
                v[n++] = (double)r->srv_cpu_ns / 1e3 / k;
            break;
        case F_MAX_MS:
            v[n++] = (double)r->max_ns / 1e6;
            break;
        }
    }
    return stats(v, n);
}

static uint64_t cell_stalls(const struct cell *c)
{
    uint64_t s = 0;
    for (int i = 0; i < c->n; i++)
        s += c->r[i].stalls;
    return s;
}

/* (this cell's conn/s) / (baseline's conn/s) round by round: the same round ran both. */
static struct stat3 paired_ratio(const struct cell *c, const struct cell *base)
{
    double v[MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < c->n && i < base->n; i++) {
        if (c->r[i].ns <= 0 || base->r[i].ns <= 0 || base->r[i].conns == 0)
            continue;
        double a = (double)c->r[i].conns / ((double)c->r[i].ns / 1e9);
        double b = (double)base->r[i].conns / ((double)base->r[i].ns / 1e9);
        v[n++] = a / b;
    }
    return stats(v, n);
}

/* (this cell's client CPU per connect) / (baseline's) round by round. */
static struct stat3 paired_cpu_ratio(const struct cell *c, const struct cell *base)
{
    double v[MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < c->n && i < base->n; i++) {
        const struct run_result *a = &c->r[i], *b = &base->r[i];
        if (a->conns == 0 || b->conns == 0 || a->cli_cpu_ns <= 0 || b->cli_cpu_ns <= 0)
            continue;
        v[n++] = ((double)a->cli_cpu_ns / (double)a->conns) / ((double)b->cli_cpu_ns / (double)b->conns);
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

static const struct cell *baseline_of(const struct cell *cells, size_t ncells)
{
    for (size_t i = 0; i < ncells; i++)
        if (cells[i].v->kind == K_PLAIN && !cells[i].failed && cells[i].n > 0)
            return &cells[i];
    return NULL;
}

static const char *kind_name(int kind)
{
    return kind == K_PLAIN      ? "plain"
           : kind == K_CC       ? "create_connection"
           : kind == K_LIBURING ? "liburing"
                                : "socket_open+connect";
}

static void report(const struct cfg *cfg, const struct cell *cells, size_t ncells, const struct tcell *tcells,
                   size_t ntcells)
{
    static const struct stat3 none = { -1, -1, -1, 0 };
    const struct cell *base = baseline_of(cells, ncells);
    struct stat3 bs = base ? cell_stat(base, F_CPS) : none;
    printf("\nconnect + close to 127.0.0.1 (client CPU %d, server CPU %d: blocking accept4 + close, backlog %d), "
           "%d rounds x %.2f s interleaved, %s; syscalls from a %.2f s count pass\n",
           CLIENT_CPU, SERVER_CPU, listen_backlog, cfg->rounds, cfg->duration,
           cfg->linger ? "SO_LINGER 0 on every client close (RST, no TIME_WAIT)" : "normal close (TIME_WAIT)",
           cfg->window);
    printf("%-12s %8s %15s %6s %16s %9s %6s %9s %8s %9s %7s %6s %6s %4s\n", "variant", "conn/s", "min - max",
           "ratio", "paired med min-max", "cli us/c", "cpu x", "srv us/c", "sys/c", "perf s/c", "max ms", "stalls",
           "drops", "tw");
    for (size_t i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];
        if (c->failed) {
            printf("%-12s FAILED: %s\n", c->v->name, c->err);
            continue;
        }
        struct stat3 cp = cell_stat(c, F_CPS), cc = cell_stat(c, F_CLI_CPU_US), sc = cell_stat(c, F_SRV_CPU_US),
                     mx = cell_stat(c, F_MAX_MS);
        struct stat3 pr = base ? paired_ratio(c, base) : none, pc = base ? paired_cpu_ratio(c, base) : none;
        char b[8][32];
        if (pr.n > 0)
            snprintf(b[1], sizeof b[1], "%.2f %.2f-%.2f", pr.med, pr.min, pr.max);
        else
            snprintf(b[1], sizeof b[1], "n/a");
        printf("%-12s %8.0f %7.0f-%-7.0f %6s %16s %9s %6s %9s %8s %9s %7.1f %6" PRIu64 " %6lld %4ld\n", c->v->name,
               cp.med, cp.min, cp.max, fig(b[0], sizeof b[0], bs.med > 0 ? cp.med / bs.med : -1, "%.3f"), b[1],
               fig(b[2], sizeof b[2], cc.med, "%.2f"), fig(b[6], sizeof b[6], pc.med, "%.3f"),
               fig(b[3], sizeof b[3], sc.med, "%.2f"),
               fig(b[4], sizeof b[4], c->sys_conn, "%.3f"), fig(b[5], sizeof b[5], c->perf_sys_conn, "%.3f"),
               mx.max, cell_stalls(c), c->drops, c->tw);
    }
    if (ntcells) {
        printf("\ntimeout accuracy: opts.timeout %.0f ms to a listener whose full accept queue drops SYNs; "
               "lateness = duration - %.0f ms (target: max <= %.0f ms)\n",
               TIMEOUT_S * 1e3, TIMEOUT_S * 1e3, TIMEOUT_TARGET_MS);
        printf("%-14s %5s %10s %10s %10s %10s %8s   %s\n", "backend", "tries", "late med", "min", "p90", "max",
               "target", "paired plain-poll: med / p90 / max");
        for (size_t i = 0; i < ntcells; i++) {
            const struct tcell *c = &tcells[i];
            if (c->failed) {
                printf("%-14s FAILED: %s\n", c->v->name, c->err);
                continue;
            }
            double v[MAX_TRIES];
            memcpy(v, c->late_ms, sizeof(double) * (size_t)c->n);
            struct stat3 s = stats(v, c->n);
            printf("%-14s %5d %7.3f ms %7.3f ms %7.3f ms %7.3f ms %8s", c->v->name, c->n, s.med, s.min,
                   p90(v, c->n), s.max, s.n > 0 && s.max <= TIMEOUT_TARGET_MS ? "met" : "MISSED");
            if (c->nbase > 0) {
                double w[MAX_TRIES];
                memcpy(w, c->base_ms, sizeof(double) * (size_t)c->nbase);
                struct stat3 b = stats(w, c->nbase);
                printf("   %.3f / %.3f / %.3f ms", b.med, p90(w, c->nbase), b.max);
            }
            printf("\n");
        }
    }
    printf("\n");
    for (size_t i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];
        printf("bench=connect variant=%s api=%s backend=%s timeout=%s linger0=%d rounds=%d duration_s=%.2f",
               c->v->name, kind_name(c->v->kind), c->v->backend ? c->v->backend : kind_name(c->v->kind),
               c->v->timeout < 0 ? "none" : "5", cfg->linger, c->n, cfg->duration);
        if (c->failed) {
            printf(" status=failed\n");
            continue;
        }
        struct stat3 cp = cell_stat(c, F_CPS), cc = cell_stat(c, F_CLI_CPU_US), sc = cell_stat(c, F_SRV_CPU_US),
                     mx = cell_stat(c, F_MAX_MS);
        struct stat3 pr = base ? paired_ratio(c, base) : none;
        printf(" status=ok conn_per_s_median=%.0f conn_per_s_min=%.0f conn_per_s_max=%.0f", cp.med, cp.min,
               cp.max);
        printf(" ratio_vs_plain=%.3f paired_ratio_median=%.3f paired_ratio_min=%.3f paired_ratio_max=%.3f",
               bs.med > 0 ? cp.med / bs.med : -1.0, pr.med, pr.min, pr.max);
        printf(" cli_cpu_us_per_conn=%.3f cli_cpu_us_per_conn_min=%.3f cli_cpu_us_per_conn_max=%.3f", cc.med,
               cc.min, cc.max);
        struct stat3 pc = base ? paired_cpu_ratio(c, base) : none;
        printf(" cli_cpu_paired_ratio_median=%.3f cli_cpu_paired_ratio_min=%.3f cli_cpu_paired_ratio_max=%.3f",
               pc.med, pc.min, pc.max);
        printf(" srv_cpu_us_per_conn=%.3f cli_sys_per_conn=%.3f perf_cli_sys_per_conn=%.3f", sc.med, c->sys_conn,
               c->perf_sys_conn);
        printf(" max_conn_ms=%.3f stalls=%" PRIu64 " listen_drops=%lld time_wait=%ld\n", mx.max, cell_stalls(c),
               c->drops, c->tw);
    }
    for (size_t i = 0; i < ntcells; i++) {
        const struct tcell *c = &tcells[i];
        printf("bench=connect-timeout backend=%s timeout_ms=%.0f", c->v->name,
               TIMEOUT_S * 1e3);
        if (c->failed) {
            printf(" status=failed\n");
            continue;
        }
        double v[MAX_TRIES];
        memcpy(v, c->late_ms, sizeof(double) * (size_t)c->n);
        struct stat3 s = stats(v, c->n);
        printf(" status=ok tries=%d late_ms_median=%.3f late_ms_min=%.3f late_ms_p90=%.3f late_ms_max=%.3f "
               "target_met=%d",
               c->n, s.med, s.min, p90(v, c->n), s.max, s.n > 0 && s.max <= TIMEOUT_TARGET_MS);
        if (c->nbase > 0) {
            double w[MAX_TRIES];
            memcpy(w, c->base_ms, sizeof(double) * (size_t)c->nbase);
            struct stat3 b = stats(w, c->nbase);
            printf(" paired_plain_poll_late_ms_median=%.3f paired_plain_poll_late_ms_p90=%.3f "
                   "paired_plain_poll_late_ms_max=%.3f",
                   b.med, p90(w, c->nbase), b.max);
        }
        printf("\n");
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: connect [--rounds N] [--duration S] [--warmup S] [--window S] [--only NAME[,NAME...]]\n"
               "               [--no-timeout-variants] [--timeout-tries N] [--no-linger] [--no-netns] [--perf PATH]\n"
               "               [--quick]\n"
               "variants:");
    for (size_t i = 0; i < NVARIANTS; i++)
        fprintf(f, " %s", variants[i].name);
    fprintf(f, "\n(plain, the baseline, always runs; --quick: 15 rounds x 0.05 s, no +t variants)\n");
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
            fprintf(stderr, "connect: unknown variant '%s'\n", t);
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
        .rounds = 51, .duration = 0.1, .warmup = 0.02, .window = 0.3, .timeout_tries = 20, .linger = true, .netns = true,
        .perf = NULL,
    };
    for (size_t i = 0; i < NVARIANTS; i++)
        cfg.variant_on[i] = true;
    bool only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            cfg.rounds = 15;
            cfg.duration = 0.05;
            cfg.window = 0.15;
            if (!only)
                for (size_t k = 0; k < NVARIANTS; k++)
                    cfg.variant_on[k] = !variants[k].timed;
            continue;
        }
        if (strcmp(a, "--no-timeout-variants") == 0) {
            for (size_t k = 0; k < NVARIANTS; k++)
                if (variants[k].timed)
                    cfg.variant_on[k] = false;
            continue;
        }
        if (strcmp(a, "--no-linger") == 0) {
            cfg.linger = false;
            continue;
        }
        if (strcmp(a, "--no-netns") == 0) {
            cfg.netns = false;
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
        } else if (strcmp(a, "--timeout-tries") == 0) {
            ok = parse_double(val, &d) && d >= 0 && d <= MAX_TRIES && d == (int)d;
            cfg.timeout_tries = (int)d;
        } else if (strcmp(a, "--perf") == 0) {
            cfg.perf = *val ? val : NULL;
        } else if (strcmp(a, "--only") == 0) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", val);
            ok = parse_only(&cfg, tmp);
            only = true;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "connect: bad option %s%s%s\n", a, val ? " " : "", val ? val : "");
            usage(stderr);
            return 2;
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0 || !CPU_ISSET(CLIENT_CPU, &allowed) ||
        !CPU_ISSET(SERVER_CPU, &allowed)) {
        fprintf(stderr, "connect: needs CPUs %d and %d (%ld online)\n", CLIENT_CPU, SERVER_CPU, ncpu);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    long tw_outside = tw_count();
    const char *netns_desc = "the machine's (--no-netns)";
    if (cfg.netns) {
        int r = private_netns();
        if (r < 0) {
            fprintf(stderr, "connect: no private network namespace (%s); sharing the machine's\n", strerror(-r));
            netns_desc = "the machine's (unshare failed)";
        } else {
            netns_desc = "a private one (unshare CLONE_NEWNET, lo up)";
            /* net.core.somaxconn is the namespace's own: a deeper accept queue lets the server
             * be descheduled for ~1 s instead of ~0.1 s before SYNs are dropped */
            FILE *f = fopen("/proc/sys/net/core/somaxconn", "we");
            if (f) {
                bool ok = fprintf(f, "65535\n") > 0;
                ok = fclose(f) == 0 && ok;
                if (ok)
                    listen_backlog = 65535;
            }
        }
    }

    struct cell *cells = calloc(NVARIANTS, sizeof *cells);
    struct tcell *tcells = calloc(NTVARIANTS, sizeof *tcells);
    struct shm *shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!cells || !tcells || shm == MAP_FAILED) {
        perror("connect: out of memory");
        return 1;
    }
    size_t ncells = 0, ntcells = 0;
    for (size_t v = 0; v < NVARIANTS; v++) {
        if (!cfg.variant_on[v])
            continue;
        struct cell *c = &cells[ncells++];
        c->v = &variants[v];
        c->sys_conn = c->perf_sys_conn = -1;
        c->tw = -1;
    }
    if (cfg.timeout_tries > 0)
        for (size_t v = 0; v < NTVARIANTS; v++)
            tcells[ntcells++].v = &tvariants[v];

    struct utsname u;
    uname(&u);
    double load[3] = { -1, -1, -1 };
    if (getloadavg(load, 3) < 3)
        load[0] = load[1] = load[2] = -1;
    char twdesc[96];
    if (strncmp(netns_desc, "a private", 9) == 0)
        snprintf(twdesc, sizeof twdesc, "%ld outside it, %ld in it", tw_outside, tw_count());
    else
        snprintf(twdesc, sizeof twdesc, "%ld", tw_outside);
    printf("connect: kernel %s, %ld CPUs online, loadavg %.2f %.2f %.2f at start, network namespace: %s, "
           "TIME_WAIT sockets %s, syscall counter: %s, perf: %s\n",
           u.release, ncpu, load[0], load[1], load[2], netns_desc, twdesc,
           sys_enter_id() >= 0 ? "tracepoint" : "unavailable (tracefs not mounted)", cfg.perf ? cfg.perf : "no");
    fflush(stdout);

    bool all_ok = true;
    struct cpu_ticks ct0 = cpu_ticks_now();
    size_t nps0 = 0;
    struct proc_cpu *ps0 = proc_snapshot(&nps0);
    int64_t t_start = now_ns();

    /* one server for the whole run, one client process per variant */
    uint16_t port;
    int lfd = listener(listen_backlog, &port);
    if (lfd < 0) {
        fprintf(stderr, "connect: listener: %s\n", strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t srv = fork();
    if (srv == 0)
        server_main(lfd);
    if (srv < 0) {
        fprintf(stderr, "connect: fork: %s\n", strerror(errno));
        return 1;
    }
    struct client *clients = calloc(NVARIANTS, sizeof *clients);
    if (!clients) {
        perror("connect: out of memory");
        return 1;
    }
    for (size_t k = 0; k < ncells; k++) {
        if (!client_start(&cfg, &clients[k], &cells[k], port, srv, shm)) {
            cells[k].failed = true;
            all_ok = false;
            fprintf(stderr, "connect: %s: %s\n", cells[k].v->name, cells[k].err);
        }
    }
    for (int round = 0; round < cfg.rounds; round++) {
        if (round % 10 == 0)
            fprintf(stderr, "connect: rounds %d-%d of %d ...", round + 1,
                    round + 10 < cfg.rounds ? round + 10 : cfg.rounds, cfg.rounds);
        /* interleaved; the order rotates each round so that no variant always runs first */
        for (size_t k = 0; k < ncells; k++) {
            size_t i = (k + (size_t)round) % ncells;
            struct cell *c = &cells[i];
            if (c->failed)
                continue;
            if (!run_slice(&cfg, c, &clients[i], shm, false)) {
                c->failed = true;
                all_ok = false;
                fprintf(stderr, "\nconnect: %s failed: %s\n", c->v->name, c->err);
            }
        }
        if (round % 10 == 9 || round == cfg.rounds - 1)
            fprintf(stderr, " %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    }
    fprintf(stderr, "connect: count pass (%.2f s per variant%s) ...", cfg.window, cfg.perf ? ", with perf" : "");
    for (size_t k = 0; k < ncells; k++) {
        struct cell *c = &cells[k];
        if (c->failed)
            continue;
        if (!run_slice(&cfg, c, &clients[k], shm, true)) {
            c->failed = true;
            all_ok = false;
            fprintf(stderr, "\nconnect: count %s failed: %s", c->v->name, c->err);
            continue;
        }
        if (c->sys_conn < 0)
            fprintf(stderr, "\nconnect: count %s: %s", c->v->name, c->cnt_err);
        if (cfg.perf && c->perf_sys_conn < 0)
            fprintf(stderr, "\nconnect: perf %s: %s", c->v->name, c->perf_err);
    }
    fprintf(stderr, " %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    for (size_t k = 0; k < ncells; k++) {
        char b[32];
        if (clients[k].pid > 0 && strcmp(client_stop(&clients[k], b, sizeof b), "exit 0") != 0) {
            fprintf(stderr, "connect: client %s ended with %s\n", cells[k].v->name, b);
            all_ok = false;
        }
    }
    free(clients);
    /* the server's blocking accept4 returns EINVAL once the listener is shut down */
    shutdown(lfd, SHUT_RDWR);
    close(lfd);
    int sst = 0;
    wait_pid(srv, &sst);
    if (!WIFEXITED(sst) || WEXITSTATUS(sst) != 0) {
        char b[32];
        fprintf(stderr, "connect: server ended with %s\n", exit_desc(sst, b, sizeof b));
        all_ok = false;
    }
    if (ntcells) {
        int trounds = (cfg.timeout_tries + TRIES_PER_CHILD - 1) / TRIES_PER_CHILD;
        fprintf(stderr, "connect: timeout accuracy (%d tries per backend in %d interleaved rounds) ...",
                cfg.timeout_tries, trounds);
        for (int round = 0; round < trounds; round++) {
            int tries = cfg.timeout_tries - round * TRIES_PER_CHILD;
            if (tries > TRIES_PER_CHILD)
                tries = TRIES_PER_CHILD;
            for (size_t k = 0; k < ntcells; k++) {
                struct tcell *c = &tcells[(k + (size_t)round) % ntcells];
                if (c->failed)
                    continue;
                if (!timeout_run(c, tries)) {
                    c->failed = true;
                    all_ok = false;
                    fprintf(stderr, "\nconnect: timeout %s failed: %s", c->v->name, c->err);
                }
            }
        }
        fprintf(stderr, " %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    }
    double wall = (double)(now_ns() - t_start) / 1e9;
    struct cpu_ticks ct1 = cpu_ticks_now();
    size_t nps1 = 0;
    struct proc_cpu *ps1 = proc_snapshot(&nps1);
    report(&cfg, cells, ncells, tcells, ntcells);
    getloadavg(load, 3);
    printf("\nconnect: loadavg %.2f %.2f %.2f at end, %.1f s, TIME_WAIT sockets %ld\n", load[0], load[1], load[2],
           wall, tw_count());
    /* Whatever else ran meanwhile (see bench/pingpong.c for why the two lines differ). */
    struct rusage ru;
    long hz = sysconf(_SC_CLK_TCK);
    if (ct0.ok && ct1.ok && hz > 0 && getrusage(RUSAGE_CHILDREN, &ru) == 0) {
        double task = (double)(ct1.task - ct0.task) / (double)hz;
        double irq = (double)(ct1.irq - ct0.irq) / (double)hz;
        double steal = (double)(ct1.steal - ct0.steal) / (double)hz;
        double ours = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                      (double)ru.ru_stime.tv_usec / 1e6;
        double others = task + irq > ours ? task + irq - ours : 0;
        printf("connect: machine during the run: %.1f s wall x %ld CPUs; busy %.1f CPU-s (processes %.1f, "
               "irq+softirq %.1f), of it our children %.1f, so everything else ~%.1f (%.0f %% of the "
               "machine); steal %.1f s\n",
               wall, ncpu, task + irq, task, irq, ours, others, 100 * others / (wall * (double)ncpu), steal);
        printf("bench=connect-machine wall_s=%.1f busy_cpu_s=%.1f process_cpu_s=%.1f irq_cpu_s=%.1f "
               "ours_cpu_s=%.1f others_cpu_s=%.1f steal_s=%.1f\n",
               wall, task + irq, task, irq, ours, others, steal);
    }
    if (ps1)
        print_other_cpu("connect", ps0, nps0, ps1, nps1);
    free(ps0);
    free(ps1);
    free(cells);
    free(tcells);
    return all_ok ? 0 : 1;
}
