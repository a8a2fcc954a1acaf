/* rsbench: ringsock's benchmark tool. `rsbench demo` measures TCP ping-pong round trips over loopback
 * on each backend against plain blocking send/recv, in the same run; `rsbench server` and
 * `rsbench client` (rsbench_server.c, rsbench_client.c) are an echo/stream/connect/sendfile server
 * and its load generator on the completion API. Subcommands are rows of one table (cmds[] at the
 * bottom): a new mode is a function and a row. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "rsbench_common.h"

#define PROG RSB_PROG

/* ---- small helpers ------------------------------------------------------------------------------ */

/* What a usage error points to: the overview, or the running command's own help. */
static const char *help_hint = PROG " --help";

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try '%s')\n", help_hint);
    va_end(ap);
    return 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1234567 -> "1,234,567" (buf of at least 32 bytes). */
static const char *grouped(double v, char *buf)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%.0f", v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- two socket layers with one shape: ringsock, and plain blocking syscalls as the baseline ---- */

struct peer {
    rs_socket *s; /* ringsock layer */
    int fd;       /* plain layer */
};

/* Every function returns >= 0 or -errno, like ringsock itself. */
struct net {
    int (*listen)(struct peer *l, struct sockaddr_storage *addr, socklen_t *len);
    int (*accept)(struct peer *l, struct peer *c);
    int (*connect)(struct peer *c, const struct sockaddr_storage *addr, socklen_t len);
    ssize_t (*sendall)(struct peer *p, const void *buf, size_t n);
    ssize_t (*recv)(struct peer *p, void *buf, size_t n);
    int (*close)(struct peer *p);
};

static struct sockaddr_in loopback(void)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = 0; /* the kernel picks a free port */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int rs_l_listen(struct peer *l, struct sockaddr_storage *addr, socklen_t *len)
{
    struct sockaddr_in a = loopback();
    int r = rs_socket_open(&l->s, AF_INET, SOCK_STREAM, 0);
    if (r < 0)
        return r;
    if ((r = rs_bind(l->s, (struct sockaddr *)&a, sizeof a)) < 0 || (r = rs_listen(l->s, 8)) < 0 ||
        (r = rs_getsockname(l->s, addr, len)) < 0) {
        rs_close(l->s);
        l->s = NULL;
    }
    return r;
}

static int rs_l_nodelay(rs_socket *s)
{
    int one = 1;
    return rs_setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int rs_l_accept(struct peer *l, struct peer *c)
{
    int r = rs_accept(l->s, &c->s, NULL, NULL);
    if (r == 0 && (r = rs_l_nodelay(c->s)) < 0) {
        rs_close(c->s);
        c->s = NULL;
    }
    return r;
}

static int rs_l_connect(struct peer *c, const struct sockaddr_storage *addr, socklen_t len)
{
    int r = rs_socket_open(&c->s, AF_INET, SOCK_STREAM, 0);
    if (r < 0)
        return r;
    if ((r = rs_l_nodelay(c->s)) < 0 || (r = rs_connect(c->s, (const struct sockaddr *)addr, len)) < 0) {
        rs_close(c->s);
        c->s = NULL;
    }
    return r;
}

static ssize_t rs_l_sendall(struct peer *p, const void *buf, size_t n) { return rs_sendall(p->s, buf, n, 0); }
static ssize_t rs_l_recv(struct peer *p, void *buf, size_t n) { return rs_recv(p->s, buf, n, 0); }

static int rs_l_close(struct peer *p)
{
    int r = rs_close(p->s);
    p->s = NULL;
    return r;
}

static const struct net rs_net = {
    .listen = rs_l_listen,
    .accept = rs_l_accept,
    .connect = rs_l_connect,
    .sendall = rs_l_sendall,
    .recv = rs_l_recv,
    .close = rs_l_close,
};

static int neg_errno(void) { return errno ? -errno : -EIO; }

static int plain_listen(struct peer *l, struct sockaddr_storage *addr, socklen_t *len)
{
    struct sockaddr_in a = loopback();
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return neg_errno();
    if (bind(l->fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(l->fd, 8) < 0 ||
        getsockname(l->fd, (struct sockaddr *)addr, len) < 0) {
        int r = neg_errno();
        close(l->fd);
        l->fd = -1;
        return r;
    }
    return 0;
}

static int plain_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ? neg_errno() : 0;
}

static int plain_accept(struct peer *l, struct peer *c)
{
    do
        c->fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    while (c->fd < 0 && errno == EINTR);
    if (c->fd < 0)
        return neg_errno();
    return plain_nodelay(c->fd);
}

static int plain_connect(struct peer *c, const struct sockaddr_storage *addr, socklen_t len)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return neg_errno();
    int r = plain_nodelay(c->fd);
    if (r == 0 && connect(c->fd, (const struct sockaddr *)addr, len) < 0)
        r = neg_errno();
    return r;
}

static ssize_t plain_sendall(struct peer *p, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(p->fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return neg_errno();
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static ssize_t plain_recv(struct peer *p, void *buf, size_t n)
{
    ssize_t r;
    do
        r = recv(p->fd, buf, n, 0);
    while (r < 0 && errno == EINTR);
    return r < 0 ? neg_errno() : r;
}

static int plain_close(struct peer *p)
{
    int r = p->fd >= 0 && close(p->fd) < 0 ? neg_errno() : 0;
    p->fd = -1;
    return r;
}

static const struct net plain_net = {
    .listen = plain_listen,
    .accept = plain_accept,
    .connect = plain_connect,
    .sendall = plain_sendall,
    .recv = plain_recv,
    .close = plain_close,
};

/* ---- variants, placements, one measurement in a child process ---------------------------------- */

/* Variant 0 is the plain baseline; the others are ringsock backends (enum rs_backend values). */
enum {
    V_PLAIN,
    V_URING,
    V_EPOLL,
    V_POLL,
    V_COUNT
};
static const char *const variant_name[V_COUNT] = { "plain", "uring", "epoll", "poll" };
static const int variant_backend[V_COUNT] = { 0, RS_BACKEND_URING, RS_BACKEND_EPOLL, RS_BACKEND_POLL };

enum {
    P_CROSS,
    P_SAME,
    P_COUNT
};
static const char *const placement_name[P_COUNT] = { "cross-CPU", "same-CPU" };

/* What a child reports through its pipe (well under PIPE_BUF, so one atomic write). */
struct result {
    int err;       /* 0, or -errno of the first failure */
    char msg[120]; /* what failed */
    uint64_t trips;
    double secs;
};

struct pingpong {
    const struct net *net;
    int backend; /* for ringsock variants: the backend each thread's loop must use */
    size_t size; /* message bytes */
    int cpu[2];  /* server, client; -1 = unpinned */
    struct peer listener;
    struct result server; /* the server thread's own errors */
};

static void fail(struct result *res, int err, const char *fmt, ...)
{
    if (res->err)
        return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    res->err = err;
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
}

static int pin(pthread_t t, int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(t, sizeof set, &set);
}

/* A ringsock thread must get the backend that was asked for: a silent fallback would mislabel the
 * figures. */
static int check_backend(const struct pingpong *pp, struct result *res)
{
    if (pp->net != &rs_net)
        return 0;
    rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0) {
        fail(res, r, "%s", rs_strerror(r));
        return r;
    }
    if (rs_loop_backend(loop) != pp->backend) {
        fail(res, -ENOSYS, "asked for %s, got %s", rs_backend_name(pp->backend),
             rs_backend_name(rs_loop_backend(loop)));
        return -ENOSYS;
    }
    return 0;
}

static void *echo_server(void *arg)
{
    struct pingpong *pp = arg;
    const struct net *net = pp->net;
    struct result *res = &pp->server;
    struct peer conn = { .s = NULL, .fd = -1 };
    char *buf = malloc(pp->size);
    int r = pin(pthread_self(), pp->cpu[0]);
    if (r < 0)
        fail(res, r, "server: pthread_setaffinity_np: %s", rs_strerror(r));
    /* Accept even after a failure, so the client's connect does not wait forever. */
    r = net->accept(&pp->listener, &conn);
    net->close(&pp->listener);
    if (r < 0) {
        fail(res, r, "server: accept: %s", rs_strerror(r));
    } else if (check_backend(pp, res) == 0 && buf) {
        for (;;) {
            ssize_t n = net->recv(&conn, buf, pp->size);
            if (n == 0)
                break; /* the client is done */
            if (n < 0) {
                fail(res, (int)n, "server: recv: %s", rs_strerror((int)n));
                break;
            }
            if ((n = net->sendall(&conn, buf, (size_t)n)) < 0) {
                fail(res, (int)n, "server: sendall: %s", rs_strerror((int)n));
                break;
            }
        }
    }
    if (r == 0)
        net->close(&conn);
    free(buf);
    return NULL;
}

static int round_trip(const struct net *net, struct peer *c, char *buf, size_t size, struct result *res)
{
    ssize_t n = net->sendall(c, buf, size);
    if (n < 0) {
        fail(res, (int)n, "client: sendall: %s", rs_strerror((int)n));
        return -1;
    }
    for (size_t got = 0; got < size; got += (size_t)n) {
        n = net->recv(c, buf + got, size - got);
        if (n <= 0) {
            int e = n == 0 ? -ECONNRESET : (int)n;
            fail(res, e, "client: recv: %s", n == 0 ? "unexpected EOF" : rs_strerror(e));
            return -1;
        }
    }
    return 0;
}

/* The client failed before the server accepted: a plain connection (closed at once) ends the
 * server's accept, so that the thread can be joined. */
static void unblock_accept(const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        (void)connect(fd, (const struct sockaddr *)addr, len);
        close(fd);
    }
}

/* The body of a measurement child: warm up, then count round trips for secs seconds. */
static void pingpong_run(struct pingpong *pp, double warmup, double secs, struct result *res)
{
    const struct net *net = pp->net;
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int r = pin(pthread_self(), pp->cpu[1]);
    if (r < 0) {
        fail(res, r, "client: pthread_setaffinity_np: %s", rs_strerror(r));
        return;
    }
    if (check_backend(pp, res) < 0)
        return;
    if ((r = net->listen(&pp->listener, &addr, &len)) < 0) {
        fail(res, r, "listen: %s", rs_strerror(r));
        return;
    }
    pthread_t server;
    if ((r = -pthread_create(&server, NULL, echo_server, pp)) < 0) {
        net->close(&pp->listener);
        fail(res, r, "pthread_create: %s", rs_strerror(r));
        return;
    }
    struct peer c = { .s = NULL, .fd = -1 };
    char *buf = calloc(1, pp->size);
    if (!buf)
        fail(res, -ENOMEM, "out of memory");
    else if ((r = net->connect(&c, &addr, len)) < 0)
        fail(res, r, "client: connect: %s", rs_strerror(r));
    if (res->err)
        unblock_accept(&addr, len);
    if (!res->err) {
        double t0 = now_s();
        while (now_s() - t0 < warmup && round_trip(net, &c, buf, pp->size, res) == 0)
            ;
        uint64_t trips = 0;
        t0 = now_s();
        double t = t0;
        while (!res->err && t - t0 < secs) {
            if (round_trip(net, &c, buf, pp->size, res) == 0)
                trips++;
            t = now_s();
        }
        res->trips = trips;
        res->secs = t - t0;
    }
    net->close(&c); /* EOF ends the server's loop */
    pthread_join(server, NULL);
    /* A server failure is the cause of whatever the client then saw (EOF, a reset): report it. */
    if (pp->server.err)
        *res = pp->server;
    free(buf);
    if (pp->net == &rs_net && (r = rs_loop_default_release()) < 0)
        fail(res, r, "rs_loop_default_release: %s", rs_strerror(r));
}

/* Run one measurement in a child process: each child starts with no loop, so RINGSOCK_BACKEND
 * (set before the first ringsock call) picks its backend, and no run inherits another's state.
 * secs 0 only checks that the backend is available. */
static struct result measure(int variant, const int cpu[2], size_t size, double warmup, double secs)
{
    struct result res = { 0 };
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        fail(&res, neg_errno(), "pipe: %s", strerror(errno));
        return res;
    }
    fflush(NULL); /* the child exits through exit(): nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        fail(&res, neg_errno(), "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return res;
    }
    if (pid == 0) {
        close(fds[0]);
        struct pingpong pp = {
            .net = variant == V_PLAIN ? &plain_net : &rs_net,
            .backend = variant_backend[variant],
            .size = size,
            .cpu = { cpu[0], cpu[1] },
            .listener = { .s = NULL, .fd = -1 },
        };
        if (variant != V_PLAIN)
            setenv("RINGSOCK_BACKEND", variant_name[variant], 1);
        if (secs > 0) {
            pingpong_run(&pp, warmup, secs, &res);
        } else if (check_backend(&pp, &res) == 0) {
            int r = rs_loop_default_release();
            if (r < 0)
                fail(&res, r, "rs_loop_default_release: %s", rs_strerror(r));
        }
        ssize_t w = write(fds[1], &res, sizeof res);
        close(fds[1]);
        /* exit(), not _exit(): sanitizers and the library's destructors run as in a real program */
        exit(w == (ssize_t)sizeof res ? 0 : 1);
    }
    close(fds[1]);
    /* A hung child (a library bug) must not hang the tool: give it its time plus a margin. */
    struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
    int timeout_ms = (int)((warmup + secs) * 1000) + 20000;
    int pr;
    do
        pr = poll(&pfd, 1, timeout_ms);
    while (pr < 0 && errno == EINTR);
    ssize_t n = pr > 0 ? read(fds[0], &res, sizeof res) : -1;
    close(fds[0]);
    if (pr == 0)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (pr == 0) {
        memset(&res, 0, sizeof res);
        fail(&res, -ETIMEDOUT, "no result after %d s: killed", timeout_ms / 1000);
    } else if (n != (ssize_t)sizeof res) {
        memset(&res, 0, sizeof res);
        if (WIFSIGNALED(st))
            fail(&res, -EIO, "child killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        else
            fail(&res, -EIO, "child exited with status %d and no result", WEXITSTATUS(st));
    } else if (!res.err && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        /* a result, then a failure at exit: a sanitizer report, for instance */
        if (WIFSIGNALED(st))
            fail(&res, -EIO, "child killed by signal %d at exit", WTERMSIG(st));
        else
            fail(&res, -EIO, "child exited with status %d after its run", WEXITSTATUS(st));
    }
    return res;
}

/* ---- rsbench demo --------------------------------------------------------------------------- */

static void demo_help(FILE *f)
{
    fputs("usage: " PROG " demo [--time SECS] [--reps N] [--size BYTES] [--backends LIST]\n"
          "                    [--no-same-cpu] [--kv]\n"
          "\n"
          "TCP ping-pong over 127.0.0.1: a client thread sends a message and waits for its echo from a\n"
          "server thread, on each ringsock backend and on plain blocking send/recv (the baseline), each\n"
          "in its own process. Runs are interleaved; figures are the median [min-max] of the reps.\n"
          "\n"
          "  --time SECS      measured seconds per run (default 0.6; 0.01-60)\n"
          "  --reps N         runs per backend and placement (default 5; 1-100; at least 3 for a spread)\n"
          "  --size BYTES     message size (default 64; 1-65536)\n"
          "  --backends LIST  comma-separated, from uring,epoll,poll (default all; plain always runs)\n"
          "  --no-same-cpu    skip the runs with both threads on one CPU\n"
          "  --kv             also print one key=value line per row, for scripts\n",
          f);
}

struct demo_opts {
    double secs;
    long reps;
    long size;
    bool want[V_COUNT];
    bool same_cpu;
    bool kv;
};

static int demo_parse(int argc, char **argv, struct demo_opts *o)
{
    /* one option a line */
    /* clang-format off */
    static const struct option longopts[] = {
        { "time", required_argument, NULL, 't' },
        { "reps", required_argument, NULL, 'r' },
        { "size", required_argument, NULL, 's' },
        { "backends", required_argument, NULL, 'b' },
        { "no-same-cpu", no_argument, NULL, 'S' },
        { "kv", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* clang-format on */
    opterr = 0; /* our own one-line messages */
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!rsb_parse_double(optarg, 0.01, 60, &o->secs))
                return usage_error("demo: --time wants seconds from 0.01 to 60, not '%s'", optarg);
            break;
        case 'r':
            if (!rsb_parse_long(optarg, 1, 100, &o->reps))
                return usage_error("demo: --reps wants 1 to 100, not '%s'", optarg);
            break;
        case 's':
            if (!rsb_parse_long(optarg, 1, 65536, &o->size))
                return usage_error("demo: --size wants 1 to 65536 bytes, not '%s'", optarg);
            break;
        case 'b': {
            for (int v = V_URING; v < V_COUNT; v++)
                o->want[v] = false;
            char *list = strdup(optarg), *save = NULL;
            if (!list)
                return usage_error("out of memory");
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int v = V_URING;
                while (v < V_COUNT && strcmp(t, variant_name[v]) != 0)
                    v++;
                if (v == V_COUNT) {
                    int rc = usage_error("demo: unknown backend '%s' in --backends (uring, epoll, poll)", t);
                    free(list);
                    return rc;
                }
                o->want[v] = true;
            }
            free(list);
            break;
        }
        case 'S': o->same_cpu = false; break;
        case 'k': o->kv = true; break;
        case 'h': demo_help(stdout); return 0;
        case ':': return usage_error("demo: option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("demo: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("demo: unexpected argument '%s'", argv[optind]);
    return -1; /* go on */
}

/* The CPUs this process may run on, up to max. */
static int usable_cpus(int *cpus, int max)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        return 0;
    int n = 0;
    for (int i = 0; i < CPU_SETSIZE && n < max; i++)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    return n;
}

struct row {
    bool run;         /* still being measured */
    bool unavailable; /* the backend is not in this build or not allowed here */
    int err;          /* a run failed: err and msg say how */
    char msg[120];
    double rate[100]; /* round trips per second, one per rep */
    int n;
};

static void row_stats(const struct row *r, double *med, double *lo, double *hi)
{
    double v[100];
    memcpy(v, r->rate, (size_t)r->n * sizeof v[0]);
    qsort(v, (size_t)r->n, sizeof v[0], cmp_double);
    *lo = v[0];
    *hi = v[r->n - 1];
    *med = r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
}

static int cmd_demo(int argc, char **argv)
{
    struct demo_opts o = { .secs = 0.6, .reps = 5, .size = 64, .same_cpu = true };
    for (int v = 0; v < V_COUNT; v++)
        o.want[v] = true;
    int rc = demo_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    const double warmup = 0.05;

    int cpus[2];
    int ncpu = usable_cpus(cpus, 2);
    int cpu[P_COUNT][2];
    bool placed[P_COUNT] = { false, false };
    if (ncpu >= 2) {
        cpu[P_CROSS][0] = cpus[0], cpu[P_CROSS][1] = cpus[1];
        placed[P_CROSS] = true;
    }
    if (ncpu >= 1 && (o.same_cpu || ncpu < 2)) {
        cpu[P_SAME][0] = cpu[P_SAME][1] = cpus[ncpu - 1];
        placed[P_SAME] = true;
    }
    if (ncpu == 0) { /* affinity unknown: one unpinned run, labelled as such */
        cpu[P_CROSS][0] = cpu[P_CROSS][1] = -1;
        placed[P_CROSS] = true;
    }

    printf("rsbench demo: TCP ping-pong over 127.0.0.1, %ld-byte messages, ringsock %s\n", o.size,
           rs_version_string());
    if (ncpu >= 2)
        printf("cross-CPU: server on CPU %d, client on CPU %d", cpus[0], cpus[1]);
    else if (ncpu == 1)
        printf("one usable CPU (%d): same-CPU runs only", cpus[0]);
    else
        printf("CPU affinity unknown: threads not pinned");
    if (placed[P_SAME] && ncpu >= 2)
        printf("; same-CPU: both on CPU %d", cpu[P_SAME][0]);
    printf("\n");

    /* Which backends this machine and build have (a cheap child per backend, before the clock
     * matters). */
    static struct row rows[P_COUNT][V_COUNT];
    memset(rows, 0, sizeof rows);
    const int nocpu[2] = { -1, -1 };
    int nvariants = 0;
    for (int v = 0; v < V_COUNT; v++) {
        if (!o.want[v])
            continue;
        struct result res = v == V_PLAIN ? (struct result){ 0 } : measure(v, nocpu, 1, 0, 0);
        for (int p = 0; p < P_COUNT; p++) {
            rows[p][v].run = placed[p] && res.err == 0;
            rows[p][v].unavailable = res.err != 0;
            snprintf(rows[p][v].msg, sizeof rows[p][v].msg, "%s", res.msg);
        }
        if (res.err)
            printf("%s: not available here (%s)\n", variant_name[v], res.msg);
        else
            nvariants++;
    }
    int nplaced = placed[P_CROSS] + placed[P_SAME];
    printf("%ld interleaved runs of %.2f s (+%.2f s warm-up) per row, %d rows: about %.0f s\n\n", o.reps,
           o.secs, warmup, nvariants * nplaced,
           (double)(nvariants * nplaced * o.reps) * (o.secs + warmup + 0.01));
    fflush(stdout);

    /* Interleave: every rep visits every row once, the order rotating from rep to rep, so drift
     * (thermal, other load) spreads over all rows instead of landing on one. */
    for (long rep = 0; rep < o.reps; rep++) {
        for (int k = 0; k < P_COUNT * V_COUNT; k++) {
            int idx = (int)((k + rep) % (P_COUNT * V_COUNT));
            int p = idx / V_COUNT, v = idx % V_COUNT;
            struct row *r = &rows[p][v];
            if (!r->run)
                continue;
            struct result res = measure(v, cpu[p], (size_t)o.size, warmup, o.secs);
            if (res.err) {
                r->run = false;
                r->err = res.err;
                snprintf(r->msg, sizeof r->msg, "%s", res.msg);
                fprintf(stderr, PROG ": %s %s: %s\n", placement_name[p], variant_name[v], res.msg);
                continue;
            }
            r->rate[r->n++] = (double)res.trips / res.secs;
        }
    }

    int failed = 0;
    char kv[P_COUNT * V_COUNT][320];
    int nkv = 0;
    /* "µs" is two columns but three bytes: the header is spelled out rather than padded by printf */
    printf("placement  backend  round trips/s: median [min-max]     vs plain  µs/round trip\n");
    for (int p = 0; p < P_COUNT; p++) {
        if (!placed[p])
            continue;
        const char *pname = ncpu == 0 ? "unpinned" : placement_name[p];
        double base = 0, lo, hi;
        if (rows[p][V_PLAIN].n)
            row_stats(&rows[p][V_PLAIN], &base, &lo, &hi);
        for (int v = 0; v < V_COUNT; v++) {
            struct row *r = &rows[p][v];
            if (!o.want[v])
                continue;
            if (r->unavailable) {
                printf("%-9s  %-7s  not available (%s)\n", pname, variant_name[v], r->msg);
                continue;
            }
            if (r->err || !r->n) {
                printf("%-9s  %-7s  FAILED: %s\n", pname, variant_name[v], r->msg);
                failed = 1;
                continue;
            }
            double med;
            row_stats(r, &med, &lo, &hi);
            char a[32], b[32], c[32], range[100];
            snprintf(range, sizeof range, "%s [%s-%s]", grouped(med, a), grouped(lo, b), grouped(hi, c));
            char ratio[16] = "-";
            if (base > 0)
                snprintf(ratio, sizeof ratio, "%.2fx", med / base);
            printf("%-9s  %-7s  %-34s  %8s  %13.2f\n", pname, variant_name[v], range, ratio, 1e6 / med);
            const char *kvplace = ncpu == 0 ? "unpinned" : p == P_CROSS ? "cross" : "same";
            snprintf(kv[nkv++], sizeof kv[0],
                     "rsbench=demo placement=%s backend=%s size=%ld reps=%d secs=%.2f rt_per_s_median=%.0f "
                     "rt_per_s_min=%.0f rt_per_s_max=%.0f vs_plain=%.3f us_per_rt=%.3f",
                     kvplace, variant_name[v], o.size, r->n, o.secs, med, lo, hi, base > 0 ? med / base : 0.0,
                     1e6 / med);
        }
    }
    if (o.kv) {
        printf("\n");
        for (int i = 0; i < nkv; i++)
            printf("%s\n", kv[i]);
    }
    if (failed)
        fprintf(stderr, PROG ": demo: some runs failed (see FAILED above)\n");
    return failed;
}

/* ---- the command table and main ------------------------------------------------------------- */

struct cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
    void (*help)(FILE *f);
    const char *summary;
};

static const struct cmd cmds[] = {
    { "demo", cmd_demo, demo_help, "TCP ping-pong on each backend against plain send/recv" },
    { "server", rsb_cmd_server, rsb_server_help,
      "an echo, stream, connect or sendfile server (completion API)" },
    { "client", rsb_cmd_client, rsb_client_help,
      "load a server: messages/s, MB/s, latency percentiles, errors" },
};

static void help(FILE *f)
{
    fputs("usage: " PROG " COMMAND [OPTIONS]\n"
          "       " PROG " --help | --version\n"
          "\n"
          "ringsock's benchmark tool. Commands:\n",
          f);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
    fputs("\n'" PROG " COMMAND --help' describes a command. RINGSOCK_BACKEND is set by rsbench itself for\n"
          "each run; see docs/tools.md.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("no command given");
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
        if (argc > 2 && strcmp(a, "help") == 0) {
            for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
                if (strcmp(argv[2], cmds[i].name) == 0) {
                    cmds[i].help(stdout);
                    return 0;
                }
            return usage_error("no command '%s'", argv[2]);
        }
        help(stdout);
        return 0;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
        printf(PROG " (ringsock) %s\n", rs_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(a, cmds[i].name) == 0) {
            static char hint[64];
            snprintf(hint, sizeof hint, PROG " %s --help", cmds[i].name);
            help_hint = hint;
            return cmds[i].run(argc - 1, argv + 1);
        }
    if (a[0] == '-')
        return usage_error("unknown option '%s'", a);
    return usage_error("unknown command '%s'", a);
}
