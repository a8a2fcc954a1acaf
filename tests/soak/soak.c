/* Soak test (issue #9): N concurrent loopback connections on one backend for D seconds — most
 * doing echo on the completion API, every tenth asking for file ranges sent with
 * rs_conn_sendfile, and two pairs of threads on the blocking API (rs_sendfile, rs_recv) — then
 * asserts that every byte came back as sent, that RSS grew less than 5 % after warm-up and that
 * the process holds as many fds as before it started.
 *
 * Usage: soak [--conns N] [--seconds D] [--max-rss-growth PCT]
 * Exit: 0 pass, 1 failure, 77 skip (RLIMIT_NOFILE's hard limit too low and not raisable). One
 * key=value summary line on stdout, the rest on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifndef SOAK_ASAN
#define SOAK_ASAN 0
#endif

/* The file the sendfile connections read from, also kept in memory to compare against. 16 MiB:
 * blocking requests of 9 MiB take io_uring's splice path (>= 8 MiB, socket.h). */
#define FILE_LEN (16u << 20)
#define ECHO_MAX 16384u
#define FILE_REQ_MAX 65536u
#define BIG_REQ (9u << 20)
#define BLOCKING_PAIRS 2
#define TICK 0.05
#define CONNECT_WINDOW 256 /* connects in flight at once: keeps the accept queue short */

static unsigned char *pat;
static int file_fd = -1;
static unsigned short port;

static struct {
    _Atomic unsigned long long echo_msgs, file_msgs, blk_msgs;
    _Atomic unsigned long long echo_bytes, file_bytes, blk_bytes; /* verified by the receiver */
    _Atomic unsigned long long errors;
    _Atomic unsigned long long srv_accepted, srv_closed;
} st;

static _Atomic bool srv_stop, blk_stop, blk_pause;
static _Atomic int blk_paused;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    /* the first few are enough to diagnose; every error is counted */
    if (atomic_fetch_add(&st.errors, 1) < 10) {
        va_list ap;
        va_start(ap, fmt);
        fputs("soak: ERROR: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

/* valgrind's malloc keeps freed blocks aside (--freelist-vol) and ignores malloc_trim, as ASan's
 * quarantine does: RSS then grows however correct the program. Its preload library is in
 * LD_PRELOAD. */
static bool under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Resident set in KiB. Free memory the allocator caches is handed back first (glibc
 * malloc_trim, every arena): the figure is then what is live, so growth means a leak or
 * fragmentation, not a cache that happened to be full at one sample and empty at the other. */
static long rss_kb(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A timer that re-arms itself every TICK while *until says so, so that RS_RUN_ONCE returns often
 * enough to see flags and deadlines. */
struct ticker {
    rs_timer *t;
    bool running, stopping;
};

static void tick_cb(rs_timer *t, int status, void *user)
{
    struct ticker *k = user;
    k->running = false;
    if (status == 0 && !k->stopping && rs_timer_start(t, TICK, tick_cb, k) == 0)
        k->running = true;
}

static int ticker_start(struct ticker *k, rs_loop *l)
{
    memset(k, 0, sizeof *k);
    int r = rs_timer_new(&k->t, l);
    if (r < 0)
        return r;
    r = rs_timer_start(k->t, TICK, tick_cb, k);
    k->running = r == 0;
    return r;
}

static void ticker_end(struct ticker *k, rs_loop *l)
{
    k->stopping = true;
    if (k->running)
        rs_timer_stop(k->t);
    for (int i = 0; k->running && i < 1000; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    if (rs_timer_free(k->t) < 0)
        fail("timer still running at the end");
}

/* ---- server: completion API, one loop on its own thread ------------------------------------- */

/* Each connection's first byte says what it wants: 'E' echo, 'F' file ranges (requests of two
 * uint64: offset, count; each answered with rs_conn_sendfile). */
struct srv {
    int mode;
    unsigned char req[16];
    size_t reqlen;
    bool closing;
};

static void srv_closed(rs_conn *c, void *user)
{
    (void)c;
    free(user);
    atomic_fetch_add(&st.srv_closed, 1);
}

static void srv_close(rs_conn *c, struct srv *s)
{
    if (!s->closing) {
        s->closing = true;
        int r = rs_conn_close(c, srv_closed, s);
        if (r < 0)
            fail("server rs_conn_close: %s", rs_strerror(r));
    }
}

static void srv_echo_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    free(user);
    if (status < 0 && status != -ECANCELED)
        fail("server echo send: %s", rs_strerror((int)status));
}

static void srv_file_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    size_t want = (size_t)(uintptr_t)user;
    if (status < 0 && status != -ECANCELED)
        fail("server rs_conn_sendfile: %s", rs_strerror((int)status));
    else if (status >= 0 && (size_t)status != want)
        fail("server rs_conn_sendfile sent %zd of %zu", status, want);
}

static void srv_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct srv *s = user;
    if (n <= 0) {
        if (n < 0)
            fail("server read: %s", rs_strerror((int)n));
        srv_close(c, s);
        return;
    }
    const unsigned char *p = data;
    size_t len = (size_t)n;
    if (!s->mode) {
        s->mode = *p++;
        len--;
        if (s->mode != 'E' && s->mode != 'F')
            fail("server: unknown mode byte %d", s->mode);
    }
    if (s->mode == 'E' && len) {
        unsigned char *copy = malloc(len);
        if (!copy) {
            fail("server: out of memory");
            return;
        }
        memcpy(copy, p, len);
        int r = rs_conn_send(c, copy, len, srv_echo_sent, copy);
        if (r < 0) {
            free(copy);
            fail("server rs_conn_send: %s", rs_strerror(r));
        }
        return;
    }
    while (s->mode == 'F' && len) {
        size_t k = sizeof s->req - s->reqlen;
        k = k < len ? k : len;
        memcpy(s->req + s->reqlen, p, k);
        s->reqlen += k;
        p += k;
        len -= k;
        if (s->reqlen < sizeof s->req)
            break;
        s->reqlen = 0;
        uint64_t off, count;
        memcpy(&off, s->req, 8);
        memcpy(&count, s->req + 8, 8);
        if (off >= FILE_LEN || count == 0 || count > FILE_LEN - off) {
            fail("server: bad file request %" PRIu64 "+%" PRIu64, off, count);
            continue;
        }
        int r =
            rs_conn_sendfile(c, file_fd, (off_t)off, (size_t)count, srv_file_sent, (void *)(uintptr_t)count);
        if (r < 0)
            fail("server rs_conn_sendfile: %s", rs_strerror(r));
    }
}

static void srv_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    (void)user;
    if (status < 0 || !c) {
        fail("accept: %s", rs_strerror(status));
        return;
    }
    atomic_fetch_add(&st.srv_accepted, 1);
    struct srv *s = calloc(1, sizeof *s);
    if (!s) {
        fail("server: out of memory");
        rs_conn_close(c, NULL, NULL);
        return;
    }
    int r = rs_conn_read_start(c, srv_read, s);
    if (r < 0) {
        fail("server rs_conn_read_start: %s", rs_strerror(r));
        srv_close(c, s);
    }
}

struct srv_thread {
    rs_socket *sock;
    _Atomic int ready; /* 1 accepting, -1 failed */
    double drain_deadline;
};

static void listener_closed(rs_conn *c, void *user)
{
    (void)c;
    *(bool *)user = true;
}

static void *srv_main(void *arg)
{
    struct srv_thread *t = arg;
    rs_loop *l;
    int r = rs_loop_new(&l, NULL);
    if (r < 0) {
        fail("server rs_loop_new: %s", rs_strerror(r));
        rs_close(t->sock);
        atomic_store(&t->ready, -1);
        return NULL;
    }
    rs_conn *lc;
    r = rs_conn_from_socket(&lc, l, t->sock);
    if (r < 0) {
        fail("rs_conn_from_socket: %s", rs_strerror(r));
        rs_close(t->sock);
        rs_loop_free(l);
        atomic_store(&t->ready, -1);
        return NULL;
    }
    struct ticker k;
    bool lclosed = false;
    if ((r = ticker_start(&k, l)) < 0 || (r = rs_conn_accept_start(lc, srv_accept, NULL)) < 0) {
        fail("server start: %s", rs_strerror(r));
        atomic_store(&t->ready, -1);
        atomic_store(&srv_stop, true);
    } else {
        atomic_store(&t->ready, 1);
    }
    /* serve until told to stop and every accepted connection has been closed by its client */
    while (!atomic_load(&srv_stop) || atomic_load(&st.srv_closed) < atomic_load(&st.srv_accepted)) {
        if (atomic_load(&srv_stop) && now() > t->drain_deadline) {
            fail("server: %llu connections still open at the deadline",
                 atomic_load(&st.srv_accepted) - atomic_load(&st.srv_closed));
            break;
        }
        r = rs_loop_run(l, RS_RUN_ONCE);
        if (r < 0) {
            fail("server rs_loop_run: %s", rs_strerror(r));
            break;
        }
    }
    rs_conn_close(lc, listener_closed, &lclosed);
    for (int i = 0; !lclosed && i < 1000; i++)
        rs_loop_run(l, RS_RUN_ONCE);
    ticker_end(&k, l);
    r = rs_loop_free(l);
    if (r < 0)
        fail("server rs_loop_free: %s (%zu pending)", rs_strerror(r), rs_loop_pending(l));
    return NULL;
}

/* ---- clients: completion API, the main thread's own loop ----------------------------------- */

struct cli {
    rs_conn *c;
    int mode;
    uint32_t rng;
    size_t off, len, got; /* the answer being read: pattern bytes [off, off + len) */
    uint64_t req[2];
    bool busy, closing, closed;
};

static struct {
    struct cli *v;
    size_t n, connected, connecting, started, idle, closed;
    double end;
    bool running, pausing, closing; /* closing: teardown has begun */
} cl;

static void cli_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct cli *k = user;
    if (status < 0 && !(status == -ECANCELED && k->closing))
        fail("client send: %s", rs_strerror((int)status));
}

static void cli_next(struct cli *k)
{
    if (!cl.running || cl.pausing || now() >= cl.end) {
        k->busy = false;
        cl.idle++;
        return;
    }
    k->busy = true;
    k->got = 0;
    int r;
    if (k->mode == 'E') {
        k->len = 1 + rnd(&k->rng) % ECHO_MAX;
        k->off = rnd(&k->rng) % (FILE_LEN - k->len);
        r = rs_conn_send(k->c, pat + k->off, k->len, cli_sent, k);
    } else {
        k->len = 1 + rnd(&k->rng) % FILE_REQ_MAX;
        k->off = rnd(&k->rng) % (FILE_LEN - k->len);
        k->req[0] = k->off;
        k->req[1] = k->len;
        r = rs_conn_send(k->c, k->req, sizeof k->req, cli_sent, k);
    }
    if (r < 0) {
        fail("client rs_conn_send: %s", rs_strerror(r));
        k->busy = false;
        cl.idle++;
    }
}

static void cli_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct cli *k = user;
    if (n <= 0) {
        if (!k->closing)
            fail("client read: %s", n == 0 ? "unexpected EOF" : rs_strerror((int)n));
        if (k->busy) {
            k->busy = false;
            cl.idle++;
        }
        return;
    }
    if (!k->busy || k->got + (size_t)n > k->len) {
        fail("client: %zd bytes nobody asked for (%zu of %zu read)", n, k->got, k->len);
        return;
    }
    if (memcmp(data, pat + k->off + k->got, (size_t)n) != 0)
        fail("client (%c): wrong bytes at %zu of a %zu-byte answer", k->mode, k->got, k->len);
    k->got += (size_t)n;
    if (k->got == k->len) {
        if (k->mode == 'E') {
            atomic_fetch_add(&st.echo_msgs, 1);
            atomic_fetch_add(&st.echo_bytes, k->len);
        } else {
            atomic_fetch_add(&st.file_msgs, 1);
            atomic_fetch_add(&st.file_bytes, k->len);
        }
        cli_next(k);
    }
}

static void cli_closed(rs_conn *c, void *user)
{
    (void)c;
    struct cli *k = user;
    k->closed = true;
    cl.closed++;
}

static void cli_connected(rs_conn *c, int status, void *user)
{
    struct cli *k = user;
    cl.connecting--;
    if (status < 0 || !c) {
        fail("client connect: %s", rs_strerror(status));
        k->closed = true;
        cl.closed++;
        return;
    }
    k->c = c;
    cl.connected++;
    if (cl.closing) { /* a connect that outlived a failed start: close it at once */
        k->closing = true;
        if (rs_conn_close(c, cli_closed, k) < 0)
            fail("client rs_conn_close");
        return;
    }
    static const char mode_e = 'E', mode_f = 'F';
    int r = rs_conn_read_start(c, cli_read, k);
    if (r == 0)
        r = rs_conn_send(c, k->mode == 'E' ? &mode_e : &mode_f, 1, cli_sent, k);
    if (r < 0)
        fail("client start: %s", rs_strerror(r));
    k->busy = false;
    cl.idle++; /* idle until the run starts */
}

/* ---- blocking pairs: rs_sendfile / rs_recv on threads of their own --------------------------- */

struct blk {
    rs_socket *lsock;
    unsigned short port;
    uint32_t rng;
};

static void *blk_server(void *arg)
{
    struct blk *b = arg;
    rs_socket *s = NULL;
    int r = rs_accept(b->lsock, &s, NULL, NULL);
    rs_close(b->lsock);
    if (r < 0) {
        fail("blocking accept: %s", rs_strerror(r));
        goto out;
    }
    rs_settimeout(s, 20.0);
    for (;;) {
        uint64_t req[2];
        ssize_t n = rs_recv(s, req, sizeof req, MSG_WAITALL);
        if (n == 0)
            break;
        if (n != (ssize_t)sizeof req) {
            fail("blocking server recv: %zd (%s)", n, n < 0 ? rs_strerror((int)n) : "short");
            break;
        }
        off_t off = (off_t)req[0];
        ssize_t w = rs_sendfile(s, file_fd, &off, (size_t)req[1]);
        if (w != (ssize_t)req[1]) {
            fail("rs_sendfile: %zd (%s) of %" PRIu64, w, w < 0 ? rs_strerror((int)w) : "short", req[1]);
            break;
        }
    }
out:
    rs_close(s);
    rs_loop_default_release();
    return NULL;
}

static void *blk_client(void *arg)
{
    struct blk *b = arg;
    char ps[16];
    snprintf(ps, sizeof ps, "%u", b->port);
    struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
    o.timeout = 20.0;
    rs_socket *s;
    int r = rs_create_connection(&s, "127.0.0.1", ps, &o);
    if (r < 0) {
        fail("blocking rs_create_connection: %s", rs_strerror(r));
        rs_loop_default_release();
        return NULL;
    }
    static _Thread_local unsigned char buf[65536];
    for (unsigned i = 0; !atomic_load(&blk_stop); i++) {
        if (atomic_load(&blk_pause)) {
            atomic_fetch_add(&blk_paused, 1);
            while (atomic_load(&blk_pause) && !atomic_load(&blk_stop))
                usleep(1000);
            atomic_fetch_sub(&blk_paused, 1);
            continue;
        }
        size_t len = i % 8 == 7 ? BIG_REQ : 1 + rnd(&b->rng) % FILE_REQ_MAX;
        size_t off = rnd(&b->rng) % (FILE_LEN - len);
        uint64_t req[2] = { off, len };
        ssize_t w = rs_sendall(s, req, sizeof req, 0);
        if (w != (ssize_t)sizeof req) {
            fail("blocking rs_sendall: %s", rs_strerror((int)w));
            break;
        }
        size_t got = 0;
        while (got < len) {
            size_t want = len - got < sizeof buf ? len - got : sizeof buf;
            ssize_t n = rs_recv(s, buf, want, 0);
            if (n <= 0) {
                fail("blocking rs_recv: %s", n == 0 ? "EOF" : rs_strerror((int)n));
                goto out;
            }
            if (memcmp(buf, pat + off + got, (size_t)n) != 0)
                fail("blocking: wrong bytes at %zu of a %zu-byte file range", got, len);
            got += (size_t)n;
        }
        atomic_fetch_add(&st.blk_msgs, 1);
        atomic_fetch_add(&st.blk_bytes, len);
    }
out:
    rs_close(s);
    rs_loop_default_release();
    return NULL;
}

/* ---- main: the server in a child process, the clients in this one --------------------------- */

/* Each process holds one end of every connection: conns + slack fds, which fits under a hard
 * limit that a container may forbid raising (CAP_SYS_RESOURCE) where 2 x conns would not. */
static int raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max < need) {
        struct rlimit up = { need, need };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return 0;
        fprintf(stderr,
                "soak: SKIP: needs %llu fds per process but RLIMIT_NOFILE's hard limit is %llu and cannot be"
                " raised (%s); run with fewer --conns or a higher hard limit\n",
                (unsigned long long)need, (unsigned long long)rl.rlim_max, strerror(errno));
        return 77;
    }
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : 1;
}

static int make_file(void)
{
    char path[] = "/tmp/rs-soak-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    unlink(path);
    for (size_t done = 0; done < FILE_LEN;) {
        ssize_t w = write(fd, pat + done, FILE_LEN - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -EIO;
        }
        done += (size_t)w;
    }
    return fd;
}

static unsigned short sock_port(rs_socket *s)
{
    struct sockaddr_storage a;
    socklen_t alen = sizeof a;
    if (rs_getsockname(s, &a, &alen) < 0)
        return 0;
    return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

/* What the server process reports when it is done. */
struct srv_report {
    unsigned long long errors, accepted, closed;
    long rss_warm, rss_end;
    int fd_start, fd_end;
};

/* The server process: the completion-API server and the blocking servers on threads; this
 * thread follows the parent's commands on ctl ('w' warm-up done, 'e' run over, EOF: stop). */
static int server_process(struct srv_thread *srv, struct blk *blk, int nblk, int ctl, int res)
{
    /* the listeners (and so their fds) pass to the threads, which close them */
    struct srv_report rep = { .rss_warm = -1, .rss_end = -1 };
    rep.fd_start = fd_count() - 1 - nblk;
    pthread_t srv_th, blk_th[BLOCKING_PAIRS];
    if (pthread_create(&srv_th, NULL, srv_main, srv) != 0)
        return 1;
    for (int i = 0; i < nblk; i++)
        if (pthread_create(&blk_th[i], NULL, blk_server, &blk[i]) != 0)
            return 1;
    for (;;) {
        char cmd;
        ssize_t n = read(ctl, &cmd, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (cmd != 'w' && cmd != 'e')
            continue;
        /* the parent has every client idle: let the last send callbacks (which free the echo
         * copies) run before the sample */
        usleep(100000);
        *(cmd == 'w' ? &rep.rss_warm : &rep.rss_end) = rss_kb();
        if (write(res, "a", 1) != 1)
            return 1;
    }
    srv->drain_deadline = now() + 30;
    atomic_store(&srv_stop, true);
    pthread_join(srv_th, NULL);
    for (int i = 0; i < nblk; i++)
        pthread_join(blk_th[i], NULL);
    rs_loop_default_release();
    rep.errors = atomic_load(&st.errors);
    rep.accepted = atomic_load(&st.srv_accepted);
    rep.closed = atomic_load(&st.srv_closed);
    rep.fd_end = fd_count();
    return write(res, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 1;
}

/* Wait for pid at most timeout seconds, then SIGKILL. Its exit status, or -1. */
static int reap(pid_t pid, double timeout)
{
    int status;
    for (double end = now() + timeout; now() < end; usleep(10000)) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0 && errno != EINTR)
            return -1;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* Ask the server process for an RSS sample and wait until it has taken it. */
static void server_sample(int ctl, int res, char cmd)
{
    char ack;
    struct pollfd pf = { .fd = res, .events = POLLIN };
    if (write(ctl, &cmd, 1) != 1 || poll(&pf, 1, 10000) != 1 || read(res, &ack, 1) != 1 || ack != 'a')
        fail("RSS sample of the server process: no answer");
}

/* Bring all traffic to a stop (every client has its last answer, the blocking clients wait
 * between requests), so that RSS is compared between two quiet moments and not two random
 * amounts of data in flight. Bounded by 30 s. */
static void quiesce(rs_loop *l, int nblk)
{
    cl.pausing = true;
    atomic_store(&blk_pause, true);
    double end = now() + 30;
    while ((cl.idle != cl.connected || atomic_load(&blk_paused) != nblk) && now() < end)
        if (rs_loop_run(l, RS_RUN_ONCE) < 0)
            break;
    if (cl.idle != cl.connected || atomic_load(&blk_paused) != nblk)
        fail("traffic did not stop within 30 s: %zu clients busy", cl.connected - cl.idle);
    for (double t = now() + 0.1; now() < t;)
        if (rs_loop_run(l, RS_RUN_ONCE) < 0)
            break;
}

static void resume(void)
{
    cl.pausing = false;
    atomic_store(&blk_pause, false);
    for (size_t i = 0; i < cl.n; i++) {
        cl.idle--;
        cli_next(&cl.v[i]);
    }
}

int main(int argc, char **argv)
{
    long conns = 2000;
    double secs = 8, max_growth = 5.0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--conns") == 0)
            conns = strtol(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            secs = strtod(argv[++i], NULL);
        else if (i + 1 < argc && strcmp(argv[i], "--max-rss-growth") == 0)
            max_growth = strtod(argv[++i], NULL);
        else {
            fprintf(stderr, "usage: soak [--conns N] [--seconds D] [--max-rss-growth PCT]\n");
            return 2;
        }
    }
    if (conns < 10 || conns > 100000 || !(secs >= 1 && secs <= 3600)) {
        fprintf(stderr, "soak: --conns 10..100000, --seconds 1..3600\n");
        return 2;
    }
    int r = raise_nofile((rlim_t)(conns + 256));
    if (r)
        return r;
    int fd_start = fd_count();

    pat = malloc(FILE_LEN);
    if (!pat)
        return 1;
    uint32_t seed = 0x50a4c0deu;
    for (size_t i = 0; i < FILE_LEN; i += 4) {
        uint32_t v = rnd(&seed);
        memcpy(pat + i, &v, 4);
    }
    file_fd = make_file();
    if (file_fd < 0) {
        fprintf(stderr, "soak: temp file: %s\n", strerror(-file_fd));
        return 1;
    }

    /* listeners first, so that the server process has them before any client dials */
    struct rs_server_opts so = RS_SERVER_OPTS_INIT;
    so.backlog = 4096;
    struct srv_thread srv = { 0 };
    r = rs_create_server(&srv.sock, "127.0.0.1", "0", &so);
    if (r < 0) {
        fprintf(stderr, "soak: rs_create_server: %s\n", rs_strerror(r));
        return 1;
    }
    port = sock_port(srv.sock);
    struct blk blk[BLOCKING_PAIRS];
    for (int i = 0; i < BLOCKING_PAIRS; i++) {
        blk[i].rng = 0x1234567u + (uint32_t)i;
        if ((r = rs_create_server(&blk[i].lsock, "127.0.0.1", "0", NULL)) < 0) {
            fprintf(stderr, "soak: rs_create_server: %s\n", rs_strerror(r));
            return 1;
        }
        blk[i].port = sock_port(blk[i].lsock);
        rs_settimeout(blk[i].lsock, 60.0);
    }
    int ctl[2], res[2];
    if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        /* bounded whatever happens to the parent */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm((unsigned)(secs + 240));
        close(ctl[1]);
        close(res[0]);
        int st_ = server_process(&srv, blk, BLOCKING_PAIRS, ctl[0], res[1]);
        close(file_fd);
        close(ctl[0]);
        close(res[1]);
        free(pat);
        /* exit, not _exit: under ASan its leak check runs at exit and fails the status */
        exit(st_);
    }
    close(ctl[0]);
    close(res[1]);
    close(file_fd); /* the clients compare with pat */
    rs_close(srv.sock);
    for (int i = 0; i < BLOCKING_PAIRS; i++)
        rs_close(blk[i].lsock);

    /* the client loop: connect all, with at most CONNECT_WINDOW in flight */
    rs_loop *l;
    r = rs_loop_new(&l, NULL);
    if (r < 0) {
        fprintf(stderr, "soak: rs_loop_new: %s\n", rs_strerror(r));
        return 1;
    }
    const char *backend = rs_backend_name(rs_loop_backend(l));
    struct ticker k;
    ticker_start(&k, l);
    cl.n = (size_t)conns;
    cl.v = calloc(cl.n, sizeof *cl.v);
    if (!cl.v)
        return 1;
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    struct rs_connect_opts co = RS_CONNECT_OPTS_INIT;
    co.timeout = 20.0;
    double t0 = now(), deadline = t0 + 60;
    while (cl.connected + cl.closed < cl.n && now() < deadline && atomic_load(&st.errors) == 0) {
        while (cl.started < cl.n && cl.connecting < CONNECT_WINDOW) {
            struct cli *c = &cl.v[cl.started];
            c->mode = cl.started % 10 == 9 ? 'F' : 'E';
            c->rng = 0x9e3779b9u * (uint32_t)(cl.started + 1);
            cl.connecting++;
            r = rs_conn_connect(l, "127.0.0.1", ps, &co, cli_connected, c);
            cl.started++;
            if (r < 0) {
                cl.connecting--;
                fail("rs_conn_connect: %s", rs_strerror(r));
                c->closed = true;
                cl.closed++;
            }
        }
        if ((r = rs_loop_run(l, RS_RUN_ONCE)) < 0) {
            fail("client rs_loop_run: %s", rs_strerror(r));
            break;
        }
    }
    fprintf(stderr, "soak: %s: %zu of %zu connected in %.2f s\n", backend, cl.connected, cl.n, now() - t0);

    pthread_t blk_th[BLOCKING_PAIRS];
    int nblk = 0;
    for (int i = 0; i < BLOCKING_PAIRS && cl.connected == cl.n; i++, nblk++)
        if (pthread_create(&blk_th[i], NULL, blk_client, &blk[i]) != 0)
            break;

    /* the run: warm-up (a fifth of it, at least 1 s), a pause for the RSS samples of both
     * processes, the rest, another pause and samples while every connection is still open */
    long rss_warm = -1, rss_end = -1;
    if (cl.connected == cl.n) {
        cl.running = true;
        cl.end = now() + secs;
        double warm_at = now() + (secs / 5 > 1 ? secs / 5 : 1);
        resume();
        while (now() < warm_at)
            if ((r = rs_loop_run(l, RS_RUN_ONCE)) < 0)
                break;
        double p0 = now();
        quiesce(l, nblk);
        rss_warm = rss_kb();
        server_sample(ctl[1], res[0], 'w');
        cl.end += now() - p0; /* the pause does not count as run time */
        resume();
        while (!(now() >= cl.end && cl.idle == cl.connected) && now() < cl.end + 30) {
            if ((r = rs_loop_run(l, RS_RUN_ONCE)) < 0) {
                fail("client rs_loop_run: %s", rs_strerror(r));
                break;
            }
        }
        if (cl.idle != cl.connected)
            fail("%zu connections still waiting for an answer 30 s after the end", cl.connected - cl.idle);
        quiesce(l, nblk);
        rss_end = rss_kb();
        server_sample(ctl[1], res[0], 'e');
    }
    cl.running = false;
    atomic_store(&blk_stop, true);
    for (int i = 0; i < nblk; i++)
        pthread_join(blk_th[i], NULL);
    /* blocking servers whose client never started (a failed start) wait in accept: release them
     * with a connection that ends at once rather than let them wait out their timeout */
    for (int i = nblk; i < BLOCKING_PAIRS; i++) {
        char bp[16];
        snprintf(bp, sizeof bp, "%u", blk[i].port);
        rs_socket *s;
        if (rs_create_connection(&s, "127.0.0.1", bp, &co) == 0)
            rs_close(s);
    }

    /* teardown: clients close, the server sees EOF and closes, everything is freed */
    size_t connected = cl.connected;
    for (size_t i = 0; i < cl.n; i++) {
        struct cli *c = &cl.v[i];
        if (c->c && !c->closed) {
            c->closing = true;
            if ((r = rs_conn_close(c->c, cli_closed, c)) < 0)
                fail("client rs_conn_close: %s", rs_strerror(r));
        }
    }
    cl.closing = true;
    /* every connection started ends closed: those still connecting close as they connect */
    for (double t = now() + 30; (cl.closed < cl.started || cl.connecting) && now() < t;)
        if (rs_loop_run(l, RS_RUN_ONCE) < 0)
            break;
    if (cl.closed < cl.started)
        fail("%zu client connections not closed", cl.started - cl.closed);
    ticker_end(&k, l);
    if ((r = rs_loop_free(l)) < 0)
        fail("client rs_loop_free: %s (%zu pending)", rs_strerror(r), rs_loop_pending(l));
    close(ctl[1]); /* the server process stops */
    struct srv_report rep = { .errors = 1, .rss_warm = -1, .rss_end = -1, .fd_start = -1, .fd_end = -2 };
    struct pollfd pf = { .fd = res[0], .events = POLLIN };
    if (poll(&pf, 1, 60000) != 1 || read(res[0], &rep, sizeof rep) != (ssize_t)sizeof rep)
        fail("no report from the server process");
    close(res[0]);
    int child = reap(pid, 30);
    if (child != 0)
        fail("server process exit status %d", child);
    rs_loop_default_release();
    free(cl.v);
    free(pat);
    int fd_end = fd_count();

    double growth = rss_warm > 0 ? 100.0 * (double)(rss_end - rss_warm) / (double)rss_warm : 0;
    double sgrowth =
        rep.rss_warm > 0 ? 100.0 * (double)(rep.rss_end - rep.rss_warm) / (double)rep.rss_warm : 0;
    unsigned long long errors = atomic_load(&st.errors) + rep.errors;
    unsigned long long bytes =
        atomic_load(&st.echo_bytes) + atomic_load(&st.file_bytes) + atomic_load(&st.blk_bytes);
    printf(
        "soak backend=%s conns=%zu seconds=%.0f echo_msgs=%llu file_msgs=%llu blocking_msgs=%llu bytes=%llu "
        "echo_bytes=%llu file_bytes=%llu blocking_bytes=%llu data_errors=%llu "
        "client_rss_warm_kb=%ld client_rss_end_kb=%ld client_rss_growth_pct=%.2f "
        "server_rss_warm_kb=%ld server_rss_end_kb=%ld server_rss_growth_pct=%.2f "
        "client_fd_start=%d client_fd_end=%d server_fd_start=%d server_fd_end=%d accepted=%llu asan=%d\n",
        backend, connected, secs, atomic_load(&st.echo_msgs), atomic_load(&st.file_msgs),
        atomic_load(&st.blk_msgs), bytes, atomic_load(&st.echo_bytes), atomic_load(&st.file_bytes),
        atomic_load(&st.blk_bytes), errors, rss_warm, rss_end, growth, rep.rss_warm, rep.rss_end, sgrowth,
        fd_start, fd_end, rep.fd_start, rep.fd_end, rep.accepted, SOAK_ASAN);
    fflush(stdout);

    int bad = 0;
    if (errors) {
        fprintf(stderr, "soak: FAIL: %llu errors\n", errors);
        bad = 1;
    }
    if (connected != (size_t)conns || rep.accepted != (unsigned long long)conns ||
        rep.closed != rep.accepted) {
        fprintf(stderr, "soak: FAIL: %zu connected, %llu accepted, %llu closed by the server, %ld wanted\n",
                connected, rep.accepted, rep.closed, conns);
        bad = 1;
    }
    if (atomic_load(&st.echo_msgs) == 0 || atomic_load(&st.file_msgs) == 0 ||
        atomic_load(&st.blk_msgs) == 0) {
        fprintf(stderr, "soak: FAIL: some kind of traffic never completed a message\n");
        bad = 1;
    }
    if (fd_end != fd_start || rep.fd_end != rep.fd_start) {
        fprintf(stderr, "soak: FAIL: fds at start/end: client %d/%d, server %d/%d\n", fd_start, fd_end,
                rep.fd_start, rep.fd_end);
        bad = 1;
    }
    const struct {
        const char *who;
        long warm, end;
        double g;
    } rs[2] = { { "client", rss_warm, rss_end, growth }, { "server", rep.rss_warm, rep.rss_end, sgrowth } };
    for (int i = 0; i < 2; i++) {
        if (rs[i].warm <= 0 || rs[i].end <= 0) {
            fprintf(stderr, "soak: FAIL: %s RSS not sampled\n", rs[i].who);
            bad = 1;
        } else if (rs[i].g >= max_growth) {
            if (SOAK_ASAN || under_valgrind()) {
                /* ASan's quarantine and valgrind's freed-block queue hold freed memory by
                 * design: RSS grows however correct the program; their leak checkers cover
                 * leaks there */
                fprintf(stderr, "soak: %s RSS grew %.2f %% (not enforced under ASan or valgrind)\n",
                        rs[i].who, rs[i].g);
            } else {
                fprintf(stderr, "soak: FAIL: %s RSS grew %.2f %% after warm-up (limit %.1f %%)\n", rs[i].who,
                        rs[i].g, max_growth);
                bad = 1;
            }
        }
    }
    if (!bad)
        fprintf(stderr, "soak: PASS\n");
    return bad;
}
