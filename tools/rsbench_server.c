/* rsbench server: echo, stream (discard), connect (accept and close) and sendfile servers on the
 * completion API. Each of --threads threads owns a loop and its own SO_REUSEPORT listener
 * (rs_create_server), accepts with rs_conn_accept_start and reads with rs_conn_read_start. The main
 * thread only waits for signals and prints: it reads each thread's counters (relaxed atomics,
 * one writer each) once per interval.
 *
 * sendfile: rs_sendfile is a blocking call on an rs_socket, so each accepted connection is handed
 * (as a dup of its fd) to a thread of its own that sends the file over and over until the client
 * goes away. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "rsbench_common.h"

/* Echo output buffers: 64 KiB holds what 16 pipelined 4 KiB messages need without growing. Bytes
 * that arrive while a send is in flight gather in one buffer that leaves when it completes (one
 * rs_conn_send per loop turn rather than one per receive), and early past ACC_FLUSH so that the
 * library's back-pressure (RS_CONN_SEND_HIGH) still bounds what a non-reading client costs. */
#define OBUF_STD 65536
#define POOL_MAX 1024
#define ACC_FLUSH (256u * 1024)
/* how often a loop looks at the stop flag: loops have no cross-thread wake-up call */
#define TICK_S 0.1
/* a sendfile thread's socket timeout: how often it looks at the stop flag while the peer is slow */
#define SF_WAIT_S 0.2

struct obuf {
    struct obuf *next;
    size_t len, cap;
    char data[];
};

struct sthread;

struct sconn {
    struct sthread *t;
    rs_conn *c;
    struct sconn *prev, *next; /* the thread's open connections, closed at shutdown */
    struct obuf *acc;          /* echo: received while a send is in flight */
    unsigned nflight;          /* echo: sends in flight */
    bool closing, eof;
    unsigned char *pbuf; /* sockperf: the message being received */
    size_t plen, pcap;
    uint32_t pneed; /* its length, once its header is in */
};

/* a thread's counters: written by its loop only, read by the main thread */
struct scount {
    _Atomic uint64_t accepted, closed, bytes_in, bytes_out, errors, resets;
};

#define BUMP(field, n)                                                                          \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)
#define READ(field) atomic_load_explicit(&(field), memory_order_relaxed)

struct server;

struct sthread {
    struct server *sv;
    int index;
    pthread_t tid;
    bool started;
    rs_socket *lsock; /* the listener until the thread's loop takes it */
    rs_loop *loop;
    rs_conn *listener;
    rs_timer *tick;
    bool stopping;
    struct sconn *conns;
    struct obuf *pool;
    unsigned pool_n;
    struct scount n;
    int err; /* setup failure */
    char msg[160];
    int first_err; /* first error while serving, for the summary */
    char first_what[48];
    struct rs_loop_stats stats;
    int backend;
};

struct sfworker {
    struct server *sv;
    rs_socket *s;
    pthread_t tid;
    _Atomic bool done;
    struct sfworker *next;
};

struct server {
    const struct rsb_opts *o;
    struct sthread *th;
    int nth;
    _Atomic bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    /* sendfile */
    int file_fd;
    off_t file_size;
    struct sfworker *workers; /* under mu */
    struct scount sf;         /* updated by many threads: fetch_add */
    _Atomic int sf_first_err;
};

static void note_error(struct sthread *t, int err, const char *what)
{
    if (!t->first_err) {
        t->first_err = err;
        snprintf(t->first_what, sizeof t->first_what, "%s", what);
    }
}

static bool is_reset(int err) { return err == -ECONNRESET || err == -EPIPE; }

/* ---- output buffers ---- */

static struct obuf *obuf_get(struct sthread *t, size_t need)
{
    struct obuf *b;
    if (t->pool && need <= OBUF_STD) {
        b = t->pool;
        t->pool = b->next;
        t->pool_n--;
    } else {
        size_t cap = need < OBUF_STD ? OBUF_STD : need;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        b->cap = cap;
    }
    b->len = 0;
    return b;
}

static void obuf_put(struct sthread *t, struct obuf *b)
{
    if (b->cap == OBUF_STD && t->pool_n < POOL_MAX) {
        b->next = t->pool;
        t->pool = b;
        t->pool_n++;
    } else {
        free(b);
    }
}

/* ---- connections ---- */

static void on_sconn_closed(rs_conn *c, void *user)
{
    (void)c;
    struct sconn *s = user;
    struct sthread *t = s->t;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->conns = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->acc)
        obuf_put(t, s->acc);
    free(s->pbuf);
    free(s);
    BUMP(t->n.closed, 1);
}

static void sconn_close(struct sconn *s)
{
    if (s->closing)
        return;
    s->closing = true;
    rs_conn_close(s->c, on_sconn_closed, s);
}

/* A read or send failed: EOF and resets are how clients leave; anything else is an error. */
static void sconn_fail(struct sconn *s, int err, const char *what)
{
    if (is_reset(err)) {
        BUMP(s->t->n.resets, 1);
    } else if (err != -ECANCELED) {
        BUMP(s->t->n.errors, 1);
        note_error(s->t, err, what);
    }
    sconn_close(s);
}

static void on_echo_sent(rs_conn *c, ssize_t status, void *user);

static void echo_send(struct sconn *s, struct obuf *b)
{
    int r = rs_conn_send(s->c, b->data, b->len, on_echo_sent, b);
    if (r < 0) {
        obuf_put(s->t, b);
        sconn_fail(s, r, "rs_conn_send");
        return;
    }
    s->nflight++;
}

static void on_echo_sent(rs_conn *c, ssize_t status, void *user)
{
    struct sconn *s = rs_conn_get_data(c);
    struct obuf *b = user;
    s->nflight--;
    obuf_put(s->t, b);
    if (status < 0) {
        if (!s->closing)
            sconn_fail(s, (int)status, "send");
        return;
    }
    BUMP(s->t->n.bytes_out, (uint64_t)status);
    if (s->nflight == 0 && !s->closing) {
        if (s->acc) {
            struct obuf *a = s->acc;
            s->acc = NULL;
            echo_send(s, a);
        } else if (s->eof) {
            sconn_close(s); /* everything the client sent before its EOF went back */
        }
    }
}

/* Queue len bytes (copied: received bytes are borrowed) to go back to the client. */
static void out_append(struct sconn *s, const void *data, size_t len)
{
    struct sthread *t = s->t;
    if (s->nflight == 0) {
        struct obuf *b = obuf_get(t, len);
        if (!b) {
            sconn_fail(s, -ENOMEM, "buffer");
            return;
        }
        memcpy(b->data, data, len);
        b->len = len;
        echo_send(s, b);
        return;
    }
    struct obuf *a = s->acc;
    if (!a) {
        if (!(a = s->acc = obuf_get(t, len))) {
            sconn_fail(s, -ENOMEM, "buffer");
            return;
        }
    } else if (a->len + len > a->cap) {
        size_t cap = a->cap * 2;
        while (cap < a->len + len)
            cap *= 2;
        struct obuf *g = realloc(a, sizeof *g + cap);
        if (!g) {
            sconn_fail(s, -ENOMEM, "buffer");
            return;
        }
        g->cap = cap;
        a = s->acc = g;
    }
    memcpy(a->data + a->len, data, len);
    a->len += len;
    if (a->len >= ACC_FLUSH) {
        s->acc = NULL;
        echo_send(s, a);
    }
}

/* EOF or an error on an echo or sockperf connection. */
static void echo_end(struct sconn *s, ssize_t n)
{
    if (n < 0)
        sconn_fail(s, (int)n, "receive");
    else if (s->nflight == 0 && !s->acc)
        sconn_close(s);
    else
        s->eof = true; /* close once the answers to what came before are out */
}

static void on_echo_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct sconn *s = user;
    if (n <= 0) {
        echo_end(s, n);
        return;
    }
    if (s->closing)
        return;
    BUMP(s->t->n.bytes_in, (uint64_t)n);
    out_append(s, data, (size_t)n);
}

/* sockperf's TCP framing: each message starts with a 14-byte header, all big-endian: sequence
 * number (8 bytes), flags (2: CLIENT 1, PONG_REQUEST 2, WARMUP 4), total length with the header
 * (4). Its server answers a pong request with the same message, the CLIENT flag cleared (the
 * client ignores messages still marked as its own), and answers nothing else, warm-up messages
 * included. */
#define SP_HDR 14
#define SP_CLIENT 1u
#define SP_PONG 2u
#define SP_WARMUP 4u
#define SP_MAX (16u << 20)

static void sockperf_message(struct sconn *s, unsigned char *m, uint32_t len)
{
    unsigned flags = (unsigned)m[8] << 8 | m[9];
    if ((flags & SP_WARMUP) || !(flags & SP_PONG))
        return;
    m[9] = (unsigned char)(m[9] & ~SP_CLIENT);
    out_append(s, m, len);
}

static void on_sockperf_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct sconn *s = user;
    if (n <= 0) {
        echo_end(s, n);
        return;
    }
    if (s->closing)
        return;
    BUMP(s->t->n.bytes_in, (uint64_t)n);
    const unsigned char *p = data;
    size_t left = (size_t)n;
    while (left && !s->closing) {
        /* gather the header, then the rest of the message, in the connection's buffer */
        size_t want = s->plen < SP_HDR ? SP_HDR : s->pneed;
        if (want > s->pcap) {
            unsigned char *g = realloc(s->pbuf, want);
            if (!g) {
                sconn_fail(s, -ENOMEM, "buffer");
                return;
            }
            s->pbuf = g;
            s->pcap = want;
        }
        size_t take = want - s->plen < left ? want - s->plen : left;
        memcpy(s->pbuf + s->plen, p, take);
        s->plen += take;
        p += take;
        left -= take;
        if (s->plen < want)
            return;
        if (want == SP_HDR) {
            const unsigned char *h = s->pbuf;
            uint32_t len = (uint32_t)h[10] << 24 | (uint32_t)h[11] << 16 | (uint32_t)h[12] << 8 | h[13];
            if (len < SP_HDR || len > SP_MAX) {
                BUMP(s->t->n.errors, 1);
                note_error(s->t, -EPROTO, "not a sockperf message");
                sconn_close(s);
                return;
            }
            s->pneed = len;
            if (len > SP_HDR)
                continue;
        }
        sockperf_message(s, s->pbuf, s->pneed);
        s->plen = 0;
    }
}

static void on_stream_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct sconn *s = user;
    if (n > 0)
        BUMP(s->t->n.bytes_in, (uint64_t)n);
    else if (n < 0)
        sconn_fail(s, (int)n, "receive");
    else
        sconn_close(s);
}

static void on_plain_closed(rs_conn *c, void *user)
{
    (void)c;
    struct sthread *t = user;
    BUMP(t->n.closed, 1);
}

/* sendfile: the conn's fd is closed, the connection lives on in its worker (which counts its end) */
static void on_handed_over(rs_conn *c, void *user)
{
    (void)c;
    (void)user;
}

/* ---- sendfile: a thread per connection ---- */

static void *sf_worker_main(void *arg)
{
    struct sfworker *w = arg;
    struct server *sv = w->sv;
    int r = rs_settimeout(w->s, SF_WAIT_S);
    off_t off = 0;
    while (r >= 0 && !atomic_load(&sv->stop)) {
        off_t before = off;
        ssize_t n = rs_sendfile(w->s, sv->file_fd, &off, 0);
        if (off > before)
            atomic_fetch_add(&sv->sf.bytes_out, (uint64_t)(off - before));
        if (n == -ETIMEDOUT)
            continue; /* a slow reader: look at the stop flag, then go on from off */
        if (n < 0) {
            r = (int)n;
            break;
        }
        if (off >= sv->file_size || n == 0)
            off = 0; /* the whole file went: again */
    }
    if (r < 0 && is_reset(r)) {
        atomic_fetch_add(&sv->sf.resets, 1);
    } else if (r < 0) {
        atomic_fetch_add(&sv->sf.errors, 1);
        int zero = 0;
        atomic_compare_exchange_strong(&sv->sf_first_err, &zero, r);
    }
    rs_close(w->s);
    w->s = NULL;
    rs_loop_default_release();
    atomic_fetch_add(&sv->sf.closed, 1);
    atomic_store(&w->done, true);
    return NULL;
}

static void sf_start(struct sthread *t, rs_conn *c)
{
    struct server *sv = t->sv;
    struct sfworker *w = calloc(1, sizeof *w);
    int r = w ? rs_socket_fromfd(&w->s, rs_conn_fd(c)) : -ENOMEM;
    rs_conn_close(c, on_handed_over, t); /* the worker, if any, has its own dup of the fd */
    if (r == 0) {
        w->sv = sv;
        atomic_init(&w->done, false);
        r = -pthread_create(&w->tid, NULL, sf_worker_main, w);
    }
    if (r < 0) {
        BUMP(t->n.errors, 1);
        BUMP(t->n.closed, 1);
        note_error(t, r, "sendfile thread");
        if (w)
            rs_close(w->s);
        free(w);
        return;
    }
    pthread_mutex_lock(&sv->mu);
    w->next = sv->workers;
    sv->workers = w;
    pthread_mutex_unlock(&sv->mu);
}

/* Join the workers that are done (all of them when all is set). */
static void sf_reap(struct server *sv, bool all)
{
    pthread_mutex_lock(&sv->mu);
    struct sfworker **pp = &sv->workers;
    while (*pp) {
        struct sfworker *w = *pp;
        if (all || atomic_load(&w->done)) {
            *pp = w->next;
            pthread_mutex_unlock(&sv->mu);
            pthread_join(w->tid, NULL);
            free(w);
            pthread_mutex_lock(&sv->mu);
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&sv->mu);
}

/* ---- accept, shutdown, the thread ---- */

static void on_accept(rs_conn *listener, rs_conn *c, int status, void *data)
{
    (void)listener;
    struct sthread *t = data;
    enum rsb_mode mode = t->sv->o->mode;
    if (status < 0 || !c) {
        BUMP(t->n.errors, 1);
        note_error(t, status, "accept");
        return;
    }
    BUMP(t->n.accepted, 1);
    if (t->stopping || mode == RSB_CONNECT) {
        rs_conn_close(c, on_plain_closed, t);
        return;
    }
    if (mode == RSB_SENDFILE) {
        sf_start(t, c);
        return;
    }
    struct sconn *s = calloc(1, sizeof *s);
    if (!s) {
        BUMP(t->n.errors, 1);
        note_error(t, -ENOMEM, "accept");
        rs_conn_close(c, on_plain_closed, t);
        return;
    }
    s->t = t;
    s->c = c;
    s->next = t->conns;
    if (t->conns)
        t->conns->prev = s;
    t->conns = s;
    rs_conn_set_data(c, s);
    if (mode == RSB_ECHO || mode == RSB_SOCKPERF) {
        /* ping-pong must not wait for Nagle and delayed ACKs */
        int one = 1;
        setsockopt(rs_conn_fd(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    rs_read_cb cb = mode == RSB_ECHO       ? on_echo_read
                    : mode == RSB_SOCKPERF ? on_sockperf_read
                                           : on_stream_read;
    int r = rs_conn_read_start(c, cb, s);
    if (r < 0)
        sconn_fail(s, r, "rs_conn_read_start");
}

static void shutdown_thread(struct sthread *t)
{
    t->stopping = true;
    if (t->listener) {
        rs_conn_close(t->listener, NULL, NULL);
        t->listener = NULL;
    }
    /* sconn_close never frees at once (the close callback comes from the loop): the list holds */
    for (struct sconn *s = t->conns; s; s = s->next)
        sconn_close(s);
}

static void on_tick(rs_timer *tm, int status, void *user)
{
    struct sthread *t = user;
    if (status < 0)
        return;
    if (atomic_load(&t->sv->stop)) {
        shutdown_thread(t); /* and no more ticks: the loop ends when the closes are done */
        return;
    }
    int r = rs_timer_start(tm, TICK_S, on_tick, t);
    if (r < 0) {
        note_error(t, r, "rs_timer_start");
        shutdown_thread(t);
    }
}

static void setup_failed(struct sthread *t, int err, const char *what)
{
    t->err = err;
    snprintf(t->msg, sizeof t->msg, "thread %d: %s: %s", t->index, what, rs_strerror(err));
}

static void ready(struct sthread *t)
{
    pthread_mutex_lock(&t->sv->mu);
    t->sv->ready++;
    pthread_cond_broadcast(&t->sv->cv);
    pthread_mutex_unlock(&t->sv->mu);
}

static void *sthread_main(void *arg)
{
    struct sthread *t = arg;
    const struct rsb_opts *o = t->sv->o;
    struct rs_loop_opts lo = RS_LOOP_OPTS_INIT;
    lo.backend = o->backend;
    if (o->mode == RSB_ECHO || o->mode == RSB_SOCKPERF) {
        /* many connections, small messages: many buffers (bench/echo-ringsock's choice) */
        lo.entries = 1024;
        lo.buf_count = 4096;
        lo.buf_size = 4096;
    } else if (o->mode == RSB_STREAM) {
        lo.buf_count = 256; /* bulk: fewer, larger receives */
        lo.buf_size = 65536;
    }
    int r = rs_loop_new(&t->loop, &lo);
    if (r < 0) {
        setup_failed(t, r, rsb_loop_new_what(o->backend, r));
        rs_close(t->lsock);
        t->lsock = NULL;
        ready(t);
        return NULL;
    }
    t->backend = rs_loop_backend(t->loop);
    r = rs_conn_from_socket(&t->listener, t->loop, t->lsock);
    if (r < 0) {
        rs_close(t->lsock);
        setup_failed(t, r, "rs_conn_from_socket");
    }
    t->lsock = NULL;
    if (r == 0 && (r = rs_conn_accept_start(t->listener, on_accept, t)) < 0)
        setup_failed(t, r, "rs_conn_accept_start");
    if (r == 0 && (r = rs_timer_new(&t->tick, t->loop)) < 0)
        setup_failed(t, r, "rs_timer_new");
    if (r == 0 && (r = rs_timer_start(t->tick, TICK_S, on_tick, t)) < 0)
        setup_failed(t, r, "rs_timer_start");
    if (r < 0)
        shutdown_thread(t);
    ready(t);
    r = rs_loop_run(t->loop, RS_RUN_DEFAULT);
    if (r < 0 && !t->err)
        setup_failed(t, r, "rs_loop_run");
    rs_loop_stats(t->loop, &t->stats);
    if (t->tick)
        rs_timer_free(t->tick);
    while (t->pool) {
        struct obuf *b = t->pool;
        t->pool = b->next;
        free(b);
    }
    if ((r = rs_loop_free(t->loop)) < 0 && !t->err)
        setup_failed(t, r, "rs_loop_free");
    return NULL;
}

/* ---- main thread ---- */

static uint64_t sum(const struct server *sv, size_t off)
{
    uint64_t v = 0;
    for (int i = 0; i < sv->nth; i++)
        v += READ(*(_Atomic uint64_t *)((char *)&sv->th[i].n + off));
    if (sv->o->mode == RSB_SENDFILE)
        v += READ(*(_Atomic uint64_t *)((char *)&sv->sf + off));
    return v;
}
#define SUM(sv, field) sum((sv), offsetof(struct scount, field))

struct totals {
    uint64_t accepted, closed, in, out, errors, resets;
};

static struct totals totals(const struct server *sv)
{
    struct totals t = {
        .accepted = SUM(sv, accepted),
        .closed = SUM(sv, closed),
        .in = SUM(sv, bytes_in),
        .out = SUM(sv, bytes_out),
        .errors = SUM(sv, errors),
        .resets = SUM(sv, resets),
    };
    return t;
}

static void progress(const struct server *sv, struct rsb_progress *pg, double a, double b,
                     const struct totals *prev, const struct totals *now)
{
    double secs = b - a;
    uint64_t open = now->accepted - now->closed;
    char g[32];
    char line[200];
    int len = snprintf(line, sizeof line, "[%7.2f-%7.2f s]  conns %-5llu", a, b, (unsigned long long)open);
    switch (sv->o->mode) {
    case RSB_CONNECT:
        snprintf(line + len, sizeof line - (size_t)len, "  accepts/s %s",
                 rsb_grouped((double)(now->accepted - prev->accepted) / secs, g));
        break;
    case RSB_STREAM:
        snprintf(line + len, sizeof line - (size_t)len, "  in %9.2f MB/s",
                 (double)(now->in - prev->in) / secs / 1e6);
        break;
    case RSB_SENDFILE:
        snprintf(line + len, sizeof line - (size_t)len, "  out %9.2f MB/s",
                 (double)(now->out - prev->out) / secs / 1e6);
        break;
    default:
        snprintf(line + len, sizeof line - (size_t)len, "  in %9.2f MB/s  out %9.2f MB/s",
                 (double)(now->in - prev->in) / secs / 1e6, (double)(now->out - prev->out) / secs / 1e6);
    }
    size_t l2 = strlen(line);
    snprintf(line + l2, sizeof line - l2, "  errors %llu", (unsigned long long)(now->errors - prev->errors));
    rsb_progress_line(pg, "%s", line);
}

static const char *addr_str(const rs_socket *s, char *buf, size_t len, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port = 0;
    if (rs_getsockname(s, &ss, &sl) < 0)
        return "?";
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, (socklen_t)len);
        *port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)len);
        *port = ntohs(a->sin_port);
    }
    return buf;
}

static int open_file(struct server *sv, const char *path)
{
    sv->file_fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (sv->file_fd < 0 || fstat(sv->file_fd, &st) < 0) {
        fprintf(stderr, RSB_PROG ": server: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0) {
        fprintf(stderr, RSB_PROG ": server: %s: %s\n", path,
                S_ISREG(st.st_mode) ? "empty file: nothing to send" : "not a regular file");
        return -1;
    }
    sv->file_size = st.st_size;
    return 0;
}

int rsb_run_server(const struct rsb_opts *o)
{
    sigset_t sigs;
    rsb_block_signals(&sigs);
    rsb_raise_nofile();
    /* sendfile threads use their default loop: it must be the backend asked for too */
    if (o->backend != RS_BACKEND_AUTO)
        setenv("RINGSOCK_BACKEND", rs_backend_name(o->backend), 1);

    static struct server sv; /* static: the threads hold pointers into it until joined */
    memset(&sv, 0, sizeof sv);
    sv.o = o;
    sv.file_fd = -1;
    sv.nth = o->threads;
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.cv, NULL);
    int rc = 1;
    if (o->mode == RSB_SENDFILE && open_file(&sv, o->file) < 0)
        goto out;
    sv.th = calloc((size_t)o->threads, sizeof *sv.th);
    if (!sv.th) {
        fprintf(stderr, RSB_PROG ": server: out of memory\n");
        goto out;
    }

    /* The listeners, made here so that a bind error is reported at once: the first on the port
     * asked for (0: the kernel picks), the others on the same port with SO_REUSEPORT. */
    struct rs_server_opts so = RS_SERVER_OPTS_INIT;
    so.family = o->family;
    so.backlog = 4096; /* the kernel caps it at somaxconn; 1000 clients connect at once */
    so.reuse_port = o->threads > 1;
    char host[INET6_ADDRSTRLEN] = "?", portbuf[16];
    unsigned port = 0;
    int made = 0;
    for (int i = 0; i < o->threads; i++, made++) {
        int r = rs_create_server(&sv.th[i].lsock, o->host, i == 0 ? o->port : portbuf, &so);
        if (r < 0) {
            fprintf(stderr, RSB_PROG ": server: cannot listen on %s port %s: %s\n", o->host,
                    i == 0 ? o->port : portbuf, rs_strerror(r));
            break;
        }
        if (i == 0) {
            addr_str(sv.th[0].lsock, host, sizeof host, &port);
            snprintf(portbuf, sizeof portbuf, "%u", port);
        }
    }
    if (made < o->threads) {
        for (int i = 0; i < made; i++)
            rs_close(sv.th[i].lsock);
        goto out;
    }

    int started = 0;
    for (int i = 0; i < o->threads; i++) {
        struct sthread *t = &sv.th[i];
        t->sv = &sv;
        t->index = i;
        int r = -pthread_create(&t->tid, NULL, sthread_main, t);
        if (r < 0) {
            fprintf(stderr, RSB_PROG ": server: pthread_create: %s\n", rs_strerror(r));
            for (int j = i; j < o->threads; j++)
                rs_close(sv.th[j].lsock);
            break;
        }
        t->started = true;
        started++;
    }
    pthread_mutex_lock(&sv.mu);
    while (sv.ready < started)
        pthread_cond_wait(&sv.cv, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    bool ok = started == o->threads;
    for (int i = 0; i < started; i++)
        if (sv.th[i].err) {
            fprintf(stderr, RSB_PROG ": server: %s\n", sv.th[i].msg);
            ok = false;
        }

    double t0 = (double)rsb_now_ns() * 1e-9, elapsed = 0;
    int sig = 0;
    struct rsb_cpu cpu0 = rsb_cpu_now();
    if (ok) {
        FILE *f = o->json ? stderr : stdout;
        fprintf(f, RSB_PROG " server: %s, listening on %s port %u, backend %s, %d thread%s",
                rsb_mode_name[o->mode], host, port, rsb_backend_str(sv.th[0].backend), o->threads,
                o->threads == 1 ? "" : "s");
        if (o->mode == RSB_SENDFILE)
            fprintf(f, ", file %s (%lld bytes)", o->file, (long long)sv.file_size);
        fprintf(f, "\n");
        fflush(f);

        struct rsb_progress pg;
        rsb_progress_init(&pg);
        struct totals prev = totals(&sv);
        double last = 0, step = o->interval > 0 ? o->interval : 1.0;
        for (;;) {
            double now = (double)rsb_now_ns() * 1e-9 - t0;
            double next = last + step;
            if (o->duration > 0 && next > o->duration)
                next = o->duration;
            if ((sig = rsb_wait_signal(&sigs, next - now)) != 0)
                break;
            now = (double)rsb_now_ns() * 1e-9 - t0;
            if (o->mode == RSB_SENDFILE)
                sf_reap(&sv, false);
            struct totals cur = totals(&sv);
            bool active = memcmp(&cur, &prev, sizeof cur) != 0 || cur.accepted != cur.closed;
            if (o->interval > 0 && !o->json && active && now - last > 1e-3)
                progress(&sv, &pg, last, now, &prev, &cur);
            prev = cur;
            last = now;
            if (o->duration > 0 && now >= o->duration - 1e-6)
                break;
        }
        rsb_progress_end(&pg);
        elapsed = (double)rsb_now_ns() * 1e-9 - t0;
    }

    atomic_store(&sv.stop, true);
    for (int i = 0; i < o->threads; i++)
        if (sv.th[i].started)
            pthread_join(sv.th[i].tid, NULL);
    sf_reap(&sv, true);
    if (!ok)
        goto out;
    rc = 0;
    for (int i = 0; i < o->threads; i++)
        if (sv.th[i].err) {
            fprintf(stderr, RSB_PROG ": server: %s\n", sv.th[i].msg);
            rc = 1;
        }

    struct rsb_cpu cpu1 = rsb_cpu_now();
    struct totals tot = totals(&sv);
    struct rs_loop_stats ls;
    memset(&ls, 0, sizeof ls);
    int first_err = atomic_load(&sv.sf_first_err);
    const char *first_what = "sendfile";
    for (int i = 0; i < o->threads; i++) {
        ls.submitted += sv.th[i].stats.submitted;
        ls.completed += sv.th[i].stats.completed;
        ls.waits += sv.th[i].stats.waits;
        if (!first_err && sv.th[i].first_err) {
            first_err = sv.th[i].first_err;
            first_what = sv.th[i].first_what;
        }
    }
    const char *why = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "--duration";
    double user = cpu1.user - cpu0.user, sys = cpu1.sys - cpu0.sys;
    if (o->json) {
        printf("{\"rsbench\":\"server\",\"version\":");
        rsb_json_str(stdout, rs_version_string());
        printf(",\"mode\":\"%s\",\"backend\":\"%s\",\"host\":", rsb_mode_name[o->mode],
               rsb_backend_str(sv.th[0].backend));
        rsb_json_str(stdout, host);
        printf(",\"port\":%u,\"threads\":%d,\"elapsed_s\":%.3f,\"stopped_by\":\"%s\"", port, o->threads,
               elapsed, why);
        printf(",\"accepted\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"errors\":%llu,\"resets\":%llu",
               (unsigned long long)tot.accepted, (unsigned long long)tot.in, (unsigned long long)tot.out,
               (unsigned long long)tot.errors, (unsigned long long)tot.resets);
        if (first_err) {
            printf(",\"first_error\":");
            char e[120];
            snprintf(e, sizeof e, "%s: %s", first_what, rs_strerror(first_err));
            rsb_json_str(stdout, e);
        }
        printf(",\"accepted_per_thread\":[");
        for (int i = 0; i < o->threads; i++)
            printf("%s%llu", i ? "," : "", (unsigned long long)READ(sv.th[i].n.accepted));
        printf("],\"cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f}", user, sys);
        printf(",\"loop\":{\"submitted\":%llu,\"completed\":%llu,\"waits\":%llu}}\n", ls.submitted,
               ls.completed, ls.waits);
    } else {
        char g1[32], g2[32], g3[32];
        printf("- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n");
        printf("stopped by %s after %.2f s\n", why, elapsed);
        printf("accepted    %s connections", rsb_grouped((double)tot.accepted, g1));
        if (o->threads > 1) {
            printf(" (per thread:");
            for (int i = 0; i < o->threads; i++)
                printf(" %llu", (unsigned long long)READ(sv.th[i].n.accepted));
            printf(")");
        }
        printf("\nbytes       in %s, out %s\n", rsb_grouped((double)tot.in, g2),
               rsb_grouped((double)tot.out, g3));
        printf("errors      %llu (client resets %llu)", (unsigned long long)tot.errors,
               (unsigned long long)tot.resets);
        if (first_err)
            printf("; first: %s: %s", first_what, rs_strerror(first_err));
        printf("\ncpu         user %.2f s, sys %.2f s\n", user, sys);
        printf("loop        submitted %s, completed %s, waits %s\n", rsb_grouped((double)ls.submitted, g1),
               rsb_grouped((double)ls.completed, g2), rsb_grouped((double)ls.waits, g3));
    }
    fflush(stdout);
out:
    free(sv.th);
    if (sv.file_fd >= 0)
        close(sv.file_fd);
    pthread_mutex_destroy(&sv.mu);
    pthread_cond_destroy(&sv.cv);
    return rc;
}
