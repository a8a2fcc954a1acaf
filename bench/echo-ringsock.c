/* bench/echo-ringsock: an echo server on ringsock's completion API, for bench/run-echo.
 *
 * One loop on one thread: rs_conn_accept_start (io_uring: one multishot ACCEPT) on the listener,
 * rs_conn_read_start (one multishot RECV into the loop's provided buffers) on each connection.
 * On io_uring (--keep auto|on) the read callback keeps the provided buffer it was lent
 * (rs_conn_read_keep) and sends straight from it, releasing it when the send completes: no copy;
 * the library gathers the queued sends into one SENDMSG. Otherwise (--keep off, and by default on
 * epoll/poll, where keeping would copy anyway) the bytes are copied into an output buffer:
 * at most one rs_conn_send in flight per connection —
 * bytes that arrive while it is in flight are appended to an accumulating buffer that leaves as
 * one send when the first completes (each rs_conn_send costs the library a malloc'd request and
 * an operation; gathering them ourselves keeps it to one per loop turn). Only past ACC_FLUSH bytes
 * is the accumulating buffer handed over early, so the library's own back-pressure
 * (RS_CONN_SEND_HIGH: reading pauses while sends are pending) bounds memory against a peer that
 * does not read. Output buffers come from one LIFO pool shared by all connections, so the one
 * reused next is the one most recently in cache (with per-connection spare buffers instead, their
 * lookup was 3.6 % of the server's perf samples at 1000 connections: a cold line per message).
 *
 * Usage: echo-ringsock [--backend uring|epoll|poll|auto] [--port N] [--port-file PATH]
 *                      [--host ADDR] [--entries N] [--buf-count N] [--buf-size B]
 * Prints "port=N backend=NAME" on stdout once listening; on SIGINT/SIGTERM prints the loop's
 * counters (rs_loop_stats) on stderr and exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

/* pool buffers: 64 KiB holds what 16 pipelined 4 KiB messages need without a realloc */
#define OBUF_STD 65536
#define POOL_MAX 4096
/* hand the accumulating buffer to rs_conn_send past this many bytes even while a send is in flight */
#define ACC_FLUSH (256u * 1024)

struct obuf {
    struct obuf *next;
    size_t len, cap;
    char data[];
};

struct econn {
    rs_conn *c;
    struct obuf *acc; /* bytes received while a send is in flight; not yet handed over */
    unsigned nflight;
    bool closing;
};

static volatile sig_atomic_t stop_flag;
static rs_loop *loop;
static unsigned long long n_accepted, n_closed, n_bytes, n_sends, n_accept_err;
static bool keep_mode;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "echo-ringsock: %s: %s\n", what, rs_strerror(err));
    exit(1);
}

static struct obuf *pool;
static unsigned pool_n;

static struct obuf *obuf_get(size_t need)
{
    struct obuf *b;
    if (pool && need <= OBUF_STD) {
        b = pool;
        pool = b->next;
        pool_n--;
    } else {
        size_t cap = need < OBUF_STD ? OBUF_STD : need;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        b->cap = cap;
    }
    b->len = 0;
    return b;
}

static void obuf_put(struct obuf *b)
{
    if (b->cap == OBUF_STD && pool_n < POOL_MAX) {
        b->next = pool;
        pool = b;
        pool_n++;
    } else {
        free(b);
    }
}

static void on_close(rs_conn *c, void *user)
{
    (void)c;
    struct econn *e = user;
    if (e->acc)
        obuf_put(e->acc);
    free(e);
    n_closed++;
}

static void econn_close(struct econn *e)
{
    if (e->closing)
        return;
    e->closing = true;
    rs_conn_close(e->c, on_close, e);
}

static void on_sent(rs_conn *c, ssize_t status, void *user);

static void send_buf(struct econn *e, struct obuf *b)
{
    int r = rs_conn_send(e->c, b->data, b->len, on_sent, b);
    if (r < 0) {
        obuf_put(b);
        econn_close(e);
        return;
    }
    e->nflight++;
    n_sends++;
}

static void on_sent(rs_conn *c, ssize_t status, void *user)
{
    struct econn *e = rs_conn_get_data(c);
    struct obuf *b = user;
    e->nflight--;
    obuf_put(b);
    if (status < 0) {
        econn_close(e); /* -ECANCELED after our own close, or a broken stream */
        return;
    }
    if (e->nflight == 0 && e->acc && !e->closing) {
        struct obuf *a = e->acc;
        e->acc = NULL;
        send_buf(e, a);
    }
}

static void on_sent_kept(rs_conn *c, ssize_t status, void *user)
{
    rs_rbuf_release(user);
    if (status < 0)
        econn_close(rs_conn_get_data(c));
}

static void on_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct econn *e = user;
    if (n <= 0) {
        econn_close(e); /* EOF or error: no more read callbacks */
        return;
    }
    if (e->closing)
        return;
    size_t len = (size_t)n;
    n_bytes += len;
    rs_rbuf *kb;
    if (keep_mode && rs_conn_read_keep(c, &kb) == 0) {
        if (rs_conn_send(c, data, len, on_sent_kept, kb) < 0) {
            rs_rbuf_release(kb);
            econn_close(e);
        }
        n_sends++;
        return;
    }
    if (e->nflight == 0) {
        struct obuf *b = obuf_get(len);
        if (!b) {
            econn_close(e);
            return;
        }
        memcpy(b->data, data, len);
        b->len = len;
        send_buf(e, b);
        return;
    }
    struct obuf *a = e->acc;
    if (!a) {
        a = e->acc = obuf_get(len);
        if (!a) {
            econn_close(e);
            return;
        }
    } else if (a->len + len > a->cap) {
        size_t cap = a->cap * 2;
        while (cap < a->len + len)
            cap *= 2;
        a = realloc(a, sizeof *a + cap);
        if (!a) {
            econn_close(e);
            return;
        }
        a->cap = cap;
        e->acc = a;
    }
    memcpy(a->data + a->len, data, len);
    a->len += len;
    if (a->len >= ACC_FLUSH) {
        e->acc = NULL;
        send_buf(e, a);
    }
}

static void on_accept(rs_conn *listener, rs_conn *c, int status, void *data)
{
    (void)listener;
    (void)data;
    if (status < 0 || !c) {
        n_accept_err++;
        return;
    }
    struct econn *e = calloc(1, sizeof *e);
    if (!e) {
        rs_conn_close(c, NULL, NULL);
        return;
    }
    e->c = c;
    rs_conn_set_data(c, e);
    n_accepted++;
    int r = rs_conn_read_start(c, on_read, e);
    if (r < 0)
        econn_close(e);
}

/* The loop's wait is not interrupted by signals (it retries EINTR): look at the flag 5 times a second. */
static void on_tick(rs_timer *t, int status, void *user)
{
    (void)user;
    if (status < 0)
        return;
    if (stop_flag) {
        rs_loop_stop(loop);
        return;
    }
    rs_timer_start(t, 0.2, on_tick, NULL);
}

static int listen_on(const char *host, int port, const char *port_file)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", -errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "echo-ringsock: bad address %s\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind", -errno);
    if (listen(fd, 4096) < 0)
        die("listen", -errno);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    if (port_file) {
        FILE *f = fopen(port_file, "we");
        if (!f)
            die(port_file, -errno);
        fprintf(f, "%d\n", ntohs(sa.sin_port));
        fclose(f);
    }
    return fd;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port_file = NULL, *backend = "auto", *keep = "auto";
    int port = 0;
    struct rs_loop_opts opts = RS_LOOP_OPTS_INIT;
    /* the same ring and buffers as bench/echo-uring-raw (see there for why these sizes) */
    opts.entries = 1024;
    opts.buf_count = 1024;
    opts.buf_size = 16384;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--port") == 0 && v)
            port = atoi(v);
        else if (strcmp(a, "--port-file") == 0 && v)
            port_file = v;
        else if (strcmp(a, "--host") == 0 && v)
            host = v;
        else if (strcmp(a, "--backend") == 0 && v)
            backend = v;
        else if (strcmp(a, "--entries") == 0 && v)
            opts.entries = (unsigned)atoi(v);
        else if (strcmp(a, "--buf-count") == 0 && v)
            opts.buf_count = (unsigned)atoi(v);
        else if (strcmp(a, "--buf-size") == 0 && v)
            opts.buf_size = (unsigned)atoi(v);
        else if (strcmp(a, "--keep") == 0 && v && (!strcmp(v, "auto") || !strcmp(v, "on") || !strcmp(v, "off")))
            keep = v;
        else {
            fprintf(stderr, "usage: echo-ringsock [--backend uring|epoll|poll|auto] [--port N] [--port-file PATH] "
                            "[--host ADDR] [--entries N] [--buf-count N] [--buf-size B] [--keep auto|on|off]\n");
            return 2;
        }
    }
    opts.backend = -1;
    for (int b = RS_BACKEND_AUTO; b <= RS_BACKEND_POLL; b++)
        if (strcmp(backend, rs_backend_name(b)) == 0)
            opts.backend = b;
    if (opts.backend < 0) {
        fprintf(stderr, "echo-ringsock: unknown backend %s\n", backend);
        return 2;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int r = rs_loop_new(&loop, &opts);
    if (r < 0)
        die("rs_loop_new", r);
    keep_mode = !strcmp(keep, "on") || (!strcmp(keep, "auto") && rs_loop_backend(loop) == RS_BACKEND_URING);
    int lfd = listen_on(host, port, port_file);
    rs_conn *listener;
    r = rs_conn_open(&listener, loop, lfd);
    if (r < 0)
        die("rs_conn_open", r);
    r = rs_conn_accept_start(listener, on_accept, NULL);
    if (r < 0)
        die("rs_conn_accept_start", r);
    rs_timer *tick;
    if ((r = rs_timer_new(&tick, loop)) < 0 || (r = rs_timer_start(tick, 0.2, on_tick, NULL)) < 0)
        die("rs_timer", r);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    printf("port=%d backend=%s keep=%s\n", ntohs(sin.sin_port), rs_backend_name(rs_loop_backend(loop)),
           keep_mode ? "on" : "off");
    fflush(stdout);

    r = rs_loop_run(loop, RS_RUN_DEFAULT);
    if (r < 0)
        die("rs_loop_run", r);
    struct rs_loop_stats st;
    rs_loop_stats(loop, &st);
    fprintf(stderr,
            "echo-ringsock: backend=%s accepted=%llu closed=%llu accept_errors=%llu bytes=%llu sends=%llu "
            "submitted=%llu completed=%llu waits=%llu recv_bufs=%llu\n",
            rs_backend_name(rs_loop_backend(loop)), n_accepted, n_closed, n_accept_err, n_bytes, n_sends, st.submitted,
            st.completed, st.waits, st.recv_bufs);
    return 0;
}
