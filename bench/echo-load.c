/* bench/echo-load: the load generator of bench/run-echo. N TCP connections to an echo server, all
 * on one thread with an edge-triggered epoll set, each keeping --depth messages of --size bytes in
 * flight (depth 1 = ping-pong): whenever echoes of k whole messages have come back, k new ones
 * leave in one send. Every echoed byte is checked: a message carries its connection number and
 * sequence number in its first 8 bytes and a fixed pattern after them.
 *
 * After --warmup seconds the measured window of --duration seconds starts; only messages whose
 * echo completes inside it count, and only they enter the latency histogram (send to last echoed
 * byte, 1/64-octave buckets: +-0.8 %). Around the window it samples the server (--server-pid):
 * utime+stime from /proc/<pid>/stat (clock ticks) and the process CPU-time clock (ns); and with
 * --perf PATH it runs `perf stat -e raw_syscalls:sys_enter -p <pid>`, enabled and disabled
 * through perf's --control fds exactly around the window (use it in a separate pass: while the
 * tracepoint is enabled every syscall on the machine takes the slow path).
 *
 * Reads stop at a short read instead of one more read that returns EAGAIN: with edge-triggered
 * epoll a short read of a TCP socket means its receive queue was empty, and any later data raises
 * a new edge. This keeps the client cheap — it is the bottleneck from 64 connections on.
 *
 * Output: one line of key=value on stdout (status=ok, or status=failed and why); exit 1 on any
 * failure (connection refused or closed, an echoed byte wrong, perf failing when asked for).
 *
 * Usage: echo-load --port N [--host ADDR] [--conns N] [--size B] [--depth D] [--duration S]
 *                  [--warmup S] [--server-pid PID] [--perf PATH] [--label TEXT] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RBUF 65536
#define HDR 8
#define MAX_EVENTS 1024
/* latency histogram: values in ns, 64 sub-buckets per power of two */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)

struct lconn {
    int fd;
    uint32_t id;
    uint32_t tx_seq, rx_seq; /* next message to send / to complete */
    uint32_t rx_off;         /* bytes of message rx_seq received so far */
    int64_t *sent;           /* send time of message s at sent[s % depth] */
    char *pend;              /* bytes a send could not take */
    size_t plen, poff;
};

static struct {
    const char *host, *perf, *label;
    int port, conns, depth;
    size_t size;
    double duration, warmup;
    pid_t server;
} cfg = { .host = "127.0.0.1", .label = "", .conns = 1, .depth = 1, .size = 64, .duration = 1.0, .warmup = 0.2 };

static char *tmpl;    /* the message pattern; bytes [0, HDR) are replaced by the header */
static char *txbuf;   /* depth messages, built for one send */
static uint64_t hist[NBUCKETS];
static uint64_t win_msgs;
static bool in_window;
static int64_t now;

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "echo-load: %s\n", msg);
    for (char *p = msg; *p; p++)
        if (*p == ' ')
            *p = '_';
    printf("bench=echo-load label=%s conns=%d size=%zu depth=%d status=failed why=%s\n", cfg.label, cfg.conns,
           cfg.size, cfg.depth, msg);
    fflush(stdout);
    exit(1);
}

static unsigned bucket(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned idx = (e - SUB_BITS + 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
    return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

/* the middle of bucket i, in ns */
static double bucket_value(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned e = i / SUB - 1 + SUB_BITS, sub = i % SUB;
    double lo = (double)((uint64_t)(SUB + sub) << (e - SUB_BITS));
    return lo + (double)(1ull << (e - SUB_BITS)) / 2;
}

static double percentile(double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < NBUCKETS; i++)
        total += hist[i];
    if (!total)
        return -1;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        acc += hist[i];
        if (acc > want)
            return bucket_value(i);
    }
    return -1;
}

static void header(char *h, uint32_t id, uint32_t seq)
{
    memcpy(h, &id, 4);
    memcpy(h + 4, &seq, 4);
}

/* Write what is pending, then (if all went) n fresh bytes from p. */
static void conn_write(struct lconn *c, const char *p, size_t n)
{
    if (c->plen == c->poff) {
        while (n) {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                fail("conn %u: send: %s", c->id, strerror(errno));
            }
            p += w;
            n -= (size_t)w;
        }
        if (!n)
            return;
        c->plen = c->poff = 0;
    }
    /* keep the rest for EPOLLOUT (at most depth messages: the buffer is depth * size) */
    if (c->poff) {
        memmove(c->pend, c->pend + c->poff, c->plen - c->poff);
        c->plen -= c->poff;
        c->poff = 0;
    }
    memcpy(c->pend + c->plen, p, n);
    c->plen += n;
}

static void conn_flush(struct lconn *c)
{
    while (c->poff < c->plen) {
        ssize_t w = send(c->fd, c->pend + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            fail("conn %u: send: %s", c->id, strerror(errno));
        }
        c->poff += (size_t)w;
    }
    c->plen = c->poff = 0;
}

static void send_msgs(struct lconn *c, int k)
{
    size_t S = cfg.size;
    for (int i = 0; i < k; i++) {
        char *m = txbuf + (size_t)i * S;
        memcpy(m, tmpl, S);
        header(m, c->id, c->tx_seq);
        c->sent[c->tx_seq % (uint32_t)cfg.depth] = now;
        c->tx_seq++;
    }
    conn_write(c, txbuf, (size_t)k * S);
}

/* Check n echoed bytes; returns the number of messages they completed. */
static int consume(struct lconn *c, const char *p, size_t n)
{
    size_t S = cfg.size;
    int done = 0;
    char h[HDR];
    header(h, c->id, c->rx_seq);
    while (n) {
        size_t off = c->rx_off, m = S - off < n ? S - off : n;
        size_t hend = off < HDR ? (HDR < off + m ? HDR : off + m) : off;
        if (off < HDR && memcmp(p, h + off, hend - off) != 0)
            fail("conn %u: message %u: wrong header (reordered, lost or foreign bytes)", c->id, c->rx_seq);
        if (memcmp(p + (hend - off), tmpl + hend, off + m - hend) != 0)
            fail("conn %u: message %u: wrong bytes at %zu..%zu", c->id, c->rx_seq, hend, off + m);
        p += m;
        n -= m;
        c->rx_off += (uint32_t)m;
        if (c->rx_off == S) {
            if (in_window) {
                int64_t lat = now - c->sent[c->rx_seq % (uint32_t)cfg.depth];
                hist[bucket(lat > 0 ? (uint64_t)lat : 0)]++;
                win_msgs++;
            }
            c->rx_seq++;
            c->rx_off = 0;
            done++;
            header(h, c->id, c->rx_seq);
        }
    }
    return done;
}

static void on_readable(struct lconn *c, char *buf, bool sending)
{
    int done = 0;
    for (;;) {
        ssize_t n = recv(c->fd, buf, RBUF, 0);
        if (n > 0) {
            if ((uint64_t)c->rx_seq * cfg.size + c->rx_off + (uint64_t)n > (uint64_t)c->tx_seq * cfg.size)
                fail("conn %u: more bytes echoed than sent", c->id);
            done += consume(c, buf, (size_t)n);
            if (n < RBUF)
                break; /* short read: the queue is empty, a new edge will come (see the top) */
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        fail("conn %u: %s", c->id, n == 0 ? "closed by the server" : strerror(errno));
    }
    if (done && sending)
        send_msgs(c, done);
}

/* ---- the server's figures ---------------------------------------------------------------- */

static int64_t proc_ticks(pid_t pid)
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
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut, st;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)(ut + st);
}

struct perfctl {
    pid_t pid;
    int ctl, ack, out;
};

static bool perf_cmd(struct perfctl *p, const char *cmd)
{
    size_t len = strlen(cmd);
    if (write(p->ctl, cmd, len) != (ssize_t)len)
        return false;
    struct pollfd pf = { .fd = p->ack, .events = POLLIN };
    char a[16];
    return poll(&pf, 1, 20000) == 1 && read(p->ack, a, sizeof a) > 0;
}

static void perf_start(struct perfctl *p)
{
    int ctl[2], ack[2], out[2];
    if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        fail("pipe: %s", strerror(errno));
    p->pid = fork();
    if (p->pid < 0)
        fail("fork: %s", strerror(errno));
    if (p->pid == 0) {
        /* perf needs the control fds without CLOEXEC */
        int c0 = dup(ctl[0]), a1 = dup(ack[1]);
        dup2(out[1], 2);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0)
            dup2(dn, 1);
        char ctlarg[64], pidarg[32];
        snprintf(ctlarg, sizeof ctlarg, "fd:%d,%d", c0, a1);
        snprintf(pidarg, sizeof pidarg, "%d", (int)cfg.server);
        execl(cfg.perf, "perf", "stat", "-x,", "-D", "-1", "--control", ctlarg, "-e", "raw_syscalls:sys_enter", "-p",
              pidarg, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", cfg.perf, strerror(errno));
        _exit(127);
    }
    close(ctl[0]);
    close(ack[1]);
    close(out[1]);
    p->ctl = ctl[1];
    p->ack = ack[0];
    p->out = out[0];
}

/* Stop perf and return the count, or -1. */
static int64_t perf_finish(struct perfctl *p)
{
    kill(p->pid, SIGINT);
    close(p->ctl);
    char buf[4096];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(p->out, buf + used, sizeof buf - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == sizeof buf - 1)
            break;
    }
    buf[used] = '\0';
    close(p->out);
    close(p->ack);
    int st;
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
    }
    char *line = strstr(buf, "raw_syscalls:sys_enter");
    if (!line)
        return -1;
    while (line > buf && line[-1] != '\n')
        line--;
    char *end;
    long long v = strtoll(line, &end, 10);
    return end == line ? -1 : v;
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: echo-load --port N [--host ADDR] [--conns N] [--size B] [--depth D] [--duration S]\n"
               "                 [--warmup S] [--server-pid PID] [--perf PATH] [--label TEXT]\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--port") == 0)
            cfg.port = atoi(v);
        else if (strcmp(a, "--host") == 0)
            cfg.host = v;
        else if (strcmp(a, "--conns") == 0)
            cfg.conns = atoi(v);
        else if (strcmp(a, "--size") == 0)
            cfg.size = (size_t)atol(v);
        else if (strcmp(a, "--depth") == 0)
            cfg.depth = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            cfg.duration = atof(v);
        else if (strcmp(a, "--warmup") == 0)
            cfg.warmup = atof(v);
        else if (strcmp(a, "--server-pid") == 0)
            cfg.server = (pid_t)atoi(v);
        else if (strcmp(a, "--perf") == 0)
            cfg.perf = *v ? v : NULL;
        else if (strcmp(a, "--label") == 0)
            cfg.label = v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (cfg.port <= 0 || cfg.conns < 1 || cfg.depth < 1 || cfg.size < HDR || cfg.size > (1u << 20) ||
        cfg.duration <= 0 || cfg.warmup < 0 || (cfg.perf && cfg.server <= 0)) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    size_t S = cfg.size;
    tmpl = malloc(S);
    txbuf = malloc(S * (size_t)cfg.depth);
    static char rbuf[RBUF];
    struct lconn *conns = calloc((size_t)cfg.conns, sizeof *conns);
    if (!tmpl || !txbuf || !conns)
        fail("out of memory");
    for (size_t i = 0; i < S; i++)
        tmpl[i] = (char)(i * 131 + 7);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        fail("epoll_create1: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port) };
    if (inet_pton(AF_INET, cfg.host, &sa.sin_addr) != 1)
        fail("bad address %s", cfg.host);
    for (int i = 0; i < cfg.conns; i++) {
        struct lconn *c = &conns[i];
        c->id = (uint32_t)i;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            fail("socket: %s", strerror(errno));
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            fail("connect %d: %s", i, strerror(errno));
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        c->sent = calloc((size_t)cfg.depth, sizeof *c->sent);
        c->pend = malloc(S * (size_t)cfg.depth);
        if (!c->sent || !c->pend)
            fail("out of memory");
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            fail("epoll_ctl: %s", strerror(errno));
    }

    struct perfctl perf = { .pid = -1 };
    if (cfg.perf)
        perf_start(&perf);

    now = clock_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < cfg.conns; i++)
        send_msgs(&conns[i], cfg.depth);

    int64_t t_win = now + (int64_t)(cfg.warmup * 1e9), t_end = t_win + (int64_t)(cfg.duration * 1e9);
    int64_t w0 = 0, w1 = 0, tk0 = -1, tk1 = -1, sc0 = -1, sc1 = -1, cc0 = 0, cc1 = 0;
    clockid_t scid;
    bool have_sclock = cfg.server > 0 && clock_getcpuclockid(cfg.server, &scid) == 0;
    static struct epoll_event evs[MAX_EVENTS];
    int phase = 0; /* 0 warmup, 1 window, 2 done */
    while (phase < 2) {
        int64_t until = phase == 0 ? t_win : t_end;
        int64_t left = until - now;
        int timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        int n = epoll_wait(ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            fail("epoll_wait: %s", strerror(errno));
        now = clock_ns(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++) {
            struct lconn *c = evs[i].data.ptr;
            uint32_t ev = evs[i].events;
            if ((ev & EPOLLOUT) && c->plen)
                conn_flush(c);
            if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                on_readable(c, rbuf, true);
        }
        if (now >= until) {
            if (phase == 0) {
                /* the window opens: sample the server, then count */
                if (cfg.perf && !perf_cmd(&perf, "enable\n"))
                    fail("perf --control did not answer 'enable' (perf too old, or it failed)");
                if (cfg.server > 0) {
                    tk0 = proc_ticks(cfg.server);
                    sc0 = have_sclock ? clock_ns(scid) : -1;
                }
                cc0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
                now = w0 = clock_ns(CLOCK_MONOTONIC);
                t_end = now + (int64_t)(cfg.duration * 1e9);
                in_window = true;
            } else {
                w1 = now;
                in_window = false;
                cc1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
                if (cfg.server > 0) {
                    tk1 = proc_ticks(cfg.server);
                    sc1 = have_sclock ? clock_ns(scid) : -1;
                }
                if (cfg.perf && !perf_cmd(&perf, "disable\n"))
                    fail("perf --control did not answer 'disable'");
            }
            phase++;
        }
    }
    int64_t sys = cfg.perf ? perf_finish(&perf) : -1;
    if (cfg.perf && sys < 0)
        fail("no count in perf's output");

    /* Close with RST (SO_LINGER 0): no TIME_WAIT left behind for the next cell. */
    for (int i = 0; i < cfg.conns; i++) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(conns[i].fd);
    }
    if (!win_msgs)
        fail("no message completed in the window");
    double secs = (double)(w1 - w0) / 1e9;
    long hz = sysconf(_SC_CLK_TCK);
    double srv_cpu_us = tk0 >= 0 && tk1 >= 0 ? (double)(tk1 - tk0) * 1e6 / (double)hz : -1;
    double srv_clock_us = sc0 >= 0 && sc1 >= 0 ? (double)(sc1 - sc0) / 1e3 : -1;
    printf("bench=echo-load label=%s conns=%d size=%zu depth=%d status=ok msgs=%" PRIu64 " secs=%.4f msgs_per_s=%.1f "
           "p50_us=%.2f p99_us=%.2f srv_cpu_us=%.0f srv_cpu_us_per_msg=%.4f srv_clock_us_per_msg=%.4f "
           "srv_cpu_frac=%.3f cli_cpu_us_per_msg=%.4f cli_cpu_frac=%.3f srv_syscalls=%" PRId64
           " srv_sys_per_msg=%.4f\n",
           cfg.label, cfg.conns, S, cfg.depth, win_msgs, secs, (double)win_msgs / secs, percentile(0.50) / 1e3,
           percentile(0.99) / 1e3, srv_cpu_us, srv_cpu_us >= 0 ? srv_cpu_us / (double)win_msgs : -1,
           srv_clock_us >= 0 ? srv_clock_us / (double)win_msgs : -1, srv_cpu_us >= 0 ? srv_cpu_us / 1e6 / secs : -1,
           (double)(cc1 - cc0) / 1e3 / (double)win_msgs, (double)(cc1 - cc0) / 1e9 / secs, sys,
           sys >= 0 ? (double)sys / (double)win_msgs : -1);
    return 0;
}
