/* rsbench client: --conns connections multiplexed on one completion-API loop per thread
 * (rs_conn_connect, rs_conn_read_start, rs_conn_send), so that one thread can drive a thousand
 * connections. Phases of a thread: connect every connection (all modes but connect), wait for
 * the main thread's start, run until the shared end time, then drain (echo: the answers still on
 * their way are awaited, up to DRAIN_S) and close. Only what completes inside the window counts.
 *
 * echo: message seq of connection id carries an 8-byte header ((id << 40) ^ seq, little-endian)
 * and then bytes of a per-run pattern at an offset that depends on id and seq, so that a lost,
 * repeated, reordered or foreign byte of the echo is seen. Latency is the time from handing a
 * message to rs_conn_send to the arrival of its last echoed byte. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "rsbench_common.h"

/* how long the echo answers still on their way at the end are awaited */
#define DRAIN_NS 3000000000ll
/* how often a running thread looks at the stop flag (SIGINT) */
#define TICK_NS 50000000ll
/* connect mode: pause after a failed attempt, so that a refusing server does not make us spin */
#define RETRY_S 0.01
/* per connect attempt */
#define CONNECT_TIMEOUT_S 5.0
/* stream: bytes queued per connection, so the socket never waits for the next rs_conn_send */
#define STREAM_QUEUE (256u << 10)

#define BUMP(field, n)                                                                          \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)
#define READ(field) atomic_load_explicit(&(field), memory_order_relaxed)

enum phase {
    P_SETUP,
    P_RUN,
    P_DRAIN,
    P_DONE
};

struct cthread;

struct cconn {
    struct cthread *t;
    rs_conn *c; /* NULL until connected and after closed */
    uint32_t id;
    bool closing;
    /* echo */
    uint64_t tx_seq, rx_seq; /* next message to send; message being received */
    size_t rx_off;           /* bytes of rx_seq received */
    bool rx_bad;             /* rx_seq differs from what was sent (counted once) */
    int64_t *sent;           /* send time of message seq at sent[seq % depth] */
    /* connect mode */
    int64_t t0;
    rs_timer *retry;
    bool retry_on;
};

struct txbuf {
    struct txbuf *next;
    unsigned char data[];
};

/* a thread's counters: written by its loop only, read by the main thread for progress lines */
struct ccount {
    _Atomic uint64_t ops, bytes, errors;
};

struct client;

struct cthread {
    struct client *cl;
    int index;
    pthread_t tid;
    bool started;
    rs_loop *loop;
    int backend;
    rs_timer *tick;
    struct cconn *conns;
    long nconns;
    uint32_t first_id;
    long connecting; /* rs_conn_connect calls whose callback has not run */
    long open;       /* conns (or connect-mode sockets) whose close callback has not run */
    long active;     /* open conns not closing */
    enum phase phase;
    int64_t t_end, drain_end;
    struct rsb_hist hist;
    unsigned char *pattern;
    unsigned char *stream_buf;
    struct txbuf *txpool;
    struct ccount n;
    uint64_t connected, connect_errors, data_errors, conn_errors, unanswered;
    char first_err[160];
    int err; /* a failure of the thread itself */
    char msg[160];
    struct rs_loop_stats stats;
};

struct client {
    const struct rsb_opts *o;
    struct rs_connect_opts copts;
    struct cthread *th;
    int nth;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    bool go;
    int64_t t_start, t_end;
    _Atomic bool stop;
};

static void note_error(struct cthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct cthread *t, const char *fmt, ...)
{
    BUMP(t->n.errors, 1);
    if (t->first_err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_err, sizeof t->first_err, fmt, ap);
    va_end(ap);
}

/* ---- connections ---- */

static void on_closed(rs_conn *c, void *user)
{
    (void)c;
    struct cconn *cc = user;
    cc->c = NULL;
    cc->t->open--;
}

static void cconn_close(struct cconn *cc)
{
    if (!cc->c || cc->closing)
        return;
    cc->closing = true;
    cc->t->active--;
    rs_conn_close(cc->c, on_closed, cc);
}

/* A connection broke (not by our own close): an error, and it is closed. */
static void cconn_fail(struct cconn *cc, int err, const char *what)
{
    if (cc->closing)
        return;
    cc->t->conn_errors++;
    if (err)
        note_error(cc->t, "connection %u: %s: %s", cc->id, what, rs_strerror(err));
    else
        note_error(cc->t, "connection %u: %s", cc->id, what);
    cconn_close(cc);
}

static void read_failed(struct cconn *cc, ssize_t n)
{
    if (n == 0)
        cconn_fail(cc, 0, "the server closed the connection");
    else
        cconn_fail(cc, (int)n, "receive");
}

/* ---- echo ---- */

static uint64_t header_of(uint32_t id, uint64_t seq) { return ((uint64_t)id << 40) ^ seq; }

static const unsigned char *body_of(const struct cthread *t, uint32_t id, uint64_t seq)
{
    return t->pattern + ((id + seq) & 255);
}

static void fill(const struct cthread *t, uint32_t id, uint64_t seq, unsigned char *p)
{
    size_t size = t->cl->o->size;
    uint64_t h = header_of(id, seq);
    for (size_t j = 0; j < 8 && j < size; j++)
        p[j] = (unsigned char)(h >> (8 * j));
    if (size > 8)
        memcpy(p + 8, body_of(t, id, seq), size - 8);
}

/* Are len bytes at offset off of message seq what was sent? */
static bool check(const struct cthread *t, uint32_t id, uint64_t seq, size_t off, const unsigned char *p,
                  size_t len)
{
    uint64_t h = header_of(id, seq);
    for (; len && off < 8; p++, off++, len--)
        if (*p != (unsigned char)(h >> (8 * off)))
            return false;
    return len == 0 || memcmp(p, body_of(t, id, seq) + (off - 8), len) == 0;
}

static struct txbuf *tx_get(struct cthread *t)
{
    struct txbuf *b = t->txpool;
    if (b) {
        t->txpool = b->next;
        return b;
    }
    return malloc(sizeof *b + t->cl->o->size * (size_t)t->cl->o->depth);
}

static void tx_put(struct cthread *t, struct txbuf *b)
{
    b->next = t->txpool;
    t->txpool = b;
}

static void on_echo_sent(rs_conn *c, ssize_t status, void *user)
{
    struct cconn *cc = rs_conn_get_data(c);
    tx_put(cc->t, user);
    if (status < 0)
        cconn_fail(cc, (int)status, "send");
}

/* Send k messages in one rs_conn_send (a buffer of the pool, back when the send completes). */
static void send_msgs(struct cconn *cc, long k, int64_t now)
{
    struct cthread *t = cc->t;
    size_t size = t->cl->o->size;
    long depth = t->cl->o->depth;
    struct txbuf *b = tx_get(t);
    if (!b) {
        cconn_fail(cc, -ENOMEM, "send buffer");
        return;
    }
    unsigned char *p = b->data;
    for (long i = 0; i < k; i++, p += size) {
        uint64_t seq = cc->tx_seq++;
        fill(t, cc->id, seq, p);
        cc->sent[seq % (uint64_t)depth] = now;
    }
    int r = rs_conn_send(cc->c, b->data, size * (size_t)k, on_echo_sent, b);
    if (r < 0) {
        tx_put(t, b);
        cconn_fail(cc, r, "rs_conn_send");
    }
}

static void on_echo_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct cconn *cc = user;
    struct cthread *t = cc->t;
    if (n <= 0) {
        read_failed(cc, n);
        return;
    }
    if (cc->closing)
        return;
    const struct rsb_opts *o = t->cl->o;
    size_t size = o->size;
    int64_t now = rsb_now_ns();
    if (cc->rx_seq * size + cc->rx_off + (size_t)n > cc->tx_seq * size) {
        t->data_errors++;
        note_error(t, "connection %u: more bytes came back than were sent", cc->id);
        cconn_close(cc);
        return;
    }
    bool counting = t->phase == P_RUN && now < t->t_end;
    const unsigned char *p = data;
    size_t left = (size_t)n;
    long done = 0;
    uint64_t good = 0;
    while (left) {
        size_t take = size - cc->rx_off < left ? size - cc->rx_off : left;
        if (!cc->rx_bad && !check(t, cc->id, cc->rx_seq, cc->rx_off, p, take))
            cc->rx_bad = true;
        cc->rx_off += take;
        p += take;
        left -= take;
        if (cc->rx_off < size)
            break;
        if (cc->rx_bad) {
            t->data_errors++;
            note_error(t, "connection %u: message %llu came back changed", cc->id,
                       (unsigned long long)cc->rx_seq);
        } else if (counting) {
            good++;
            rsb_hist_add(&t->hist, (uint64_t)(now - cc->sent[cc->rx_seq % (uint64_t)o->depth]));
        }
        cc->rx_seq++;
        cc->rx_off = 0;
        cc->rx_bad = false;
        done++;
    }
    if (good) {
        BUMP(t->n.ops, good);
        BUMP(t->n.bytes, good * size);
    }
    if (!done)
        return;
    if (counting)
        send_msgs(cc, done, now); /* keep depth in flight */
    else if (cc->rx_seq == cc->tx_seq)
        cconn_close(cc); /* the end: everything came back */
}

static void echo_start(struct cconn *cc, int64_t now)
{
    int r = rs_conn_read_start(cc->c, on_echo_read, cc);
    if (r < 0) {
        cconn_fail(cc, r, "rs_conn_read_start");
        return;
    }
    send_msgs(cc, cc->t->cl->o->depth, now);
}

/* ---- stream and sendfile ---- */

static void on_stream_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct cconn *cc = user;
    struct cthread *t = cc->t;
    if (status < 0) {
        cconn_fail(cc, (int)status, "send");
        return;
    }
    if (t->phase != P_RUN || rsb_now_ns() >= t->t_end)
        return;
    BUMP(t->n.ops, 1);
    BUMP(t->n.bytes, (uint64_t)status);
    int r = rs_conn_send(cc->c, t->stream_buf, t->cl->o->size, on_stream_sent, cc);
    if (r < 0)
        cconn_fail(cc, r, "rs_conn_send");
}

static void on_stream_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct cconn *cc = user;
    if (n > 0)
        cconn_fail(cc, 0, "the server sent data in stream mode (is it a stream server?)");
    else
        read_failed(cc, n);
}

static void stream_start(struct cconn *cc)
{
    struct cthread *t = cc->t;
    size_t size = t->cl->o->size;
    int r = rs_conn_read_start(cc->c, on_stream_read, cc); /* to see the server go away */
    if (r < 0) {
        cconn_fail(cc, r, "rs_conn_read_start");
        return;
    }
    size_t queue = STREAM_QUEUE / size;
    queue = queue < 2 ? 2 : queue > 64 ? 64 : queue;
    for (size_t i = 0; i < queue && r == 0; i++)
        if ((r = rs_conn_send(cc->c, t->stream_buf, size, on_stream_sent, cc)) < 0)
            cconn_fail(cc, r, "rs_conn_send");
}

static void on_sendfile_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct cconn *cc = user;
    struct cthread *t = cc->t;
    if (n <= 0) {
        read_failed(cc, n);
        return;
    }
    if (t->phase == P_RUN && rsb_now_ns() < t->t_end) {
        BUMP(t->n.ops, 1);
        BUMP(t->n.bytes, (uint64_t)n);
    }
}

/* ---- connect mode: each slot connects, closes, connects again ---- */

static void cm_start(struct cconn *cc);

static void on_cm_closed(rs_conn *c, void *user)
{
    (void)c;
    struct cthread *t = user;
    t->open--;
}

static void on_cm_retry(rs_timer *tm, int status, void *user)
{
    (void)tm;
    struct cconn *cc = user;
    cc->retry_on = false;
    if (status == 0 && cc->t->phase == P_RUN)
        cm_start(cc);
}

static void cm_retry_later(struct cconn *cc)
{
    struct cthread *t = cc->t;
    int r = cc->retry ? 0 : rs_timer_new(&cc->retry, t->loop);
    if (r == 0 && (r = rs_timer_start(cc->retry, RETRY_S, on_cm_retry, cc)) == 0)
        cc->retry_on = true;
    if (r < 0)
        note_error(t, "connect mode: timer: %s", rs_strerror(r)); /* this slot stops */
}

static void on_cm_connected(rs_conn *c, int status, void *user)
{
    struct cconn *cc = user;
    struct cthread *t = cc->t;
    t->connecting--;
    int64_t now = rsb_now_ns();
    if (status < 0) {
        t->connect_errors++;
        note_error(t, "connect to %s port %s: %s", t->cl->o->host, t->cl->o->port, rs_strerror(status));
        if (t->phase == P_RUN)
            cm_retry_later(cc);
        return;
    }
    bool counting = t->phase == P_RUN && now < t->t_end;
    if (counting) {
        BUMP(t->n.ops, 1);
        rsb_hist_add(&t->hist, (uint64_t)(now - cc->t0));
    }
    t->open++;
    rs_conn_close(c, on_cm_closed, t);
    if (counting)
        cm_start(cc);
}

static void cm_start(struct cconn *cc)
{
    struct cthread *t = cc->t;
    const struct rsb_opts *o = t->cl->o;
    cc->t0 = rsb_now_ns();
    int r = rs_conn_connect(t->loop, o->host, o->port, &t->cl->copts, on_cm_connected, cc);
    if (r < 0) {
        t->connect_errors++;
        note_error(t, "rs_conn_connect: %s", rs_strerror(r));
        cm_retry_later(cc);
        return;
    }
    t->connecting++;
}

/* ---- setup connects (echo, stream, sendfile) ---- */

static void on_setup_connected(rs_conn *c, int status, void *user)
{
    struct cconn *cc = user;
    struct cthread *t = cc->t;
    t->connecting--;
    if (status < 0) {
        t->connect_errors++;
        note_error(t, "connect to %s port %s: %s", t->cl->o->host, t->cl->o->port, rs_strerror(status));
        return;
    }
    cc->c = c;
    rs_conn_set_data(c, cc);
    t->open++;
    t->active++;
    t->connected++;
    if (t->cl->o->mode == RSB_ECHO) {
        /* ping-pong must not wait for Nagle and delayed ACKs */
        int one = 1;
        setsockopt(rs_conn_fd(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

/* ---- phases ---- */

static void finish(struct cthread *t, int64_t now)
{
    if (now < t->t_end)
        t->t_end = now; /* stopped early (SIGINT) */
    enum rsb_mode mode = t->cl->o->mode;
    t->phase = mode == RSB_ECHO ? P_DRAIN : P_DONE;
    t->drain_end = now + DRAIN_NS;
    for (long i = 0; i < t->nconns; i++) {
        struct cconn *cc = &t->conns[i];
        if (mode == RSB_CONNECT) {
            if (cc->retry_on)
                rs_timer_stop(cc->retry);
        } else if (mode != RSB_ECHO || cc->rx_seq == cc->tx_seq) {
            cconn_close(cc);
        }
    }
}

static void end_drain(struct cthread *t)
{
    t->phase = P_DONE;
    for (long i = 0; i < t->nconns; i++) {
        struct cconn *cc = &t->conns[i];
        if (cc->c && !cc->closing) {
            uint64_t missing = cc->tx_seq - cc->rx_seq;
            t->unanswered += missing;
            note_error(t, "connection %u: %llu message(s) not answered %.0f s after the end", cc->id,
                       (unsigned long long)missing, (double)DRAIN_NS / 1e9);
            cconn_close(cc);
        }
    }
}

static void on_tick(rs_timer *tm, int status, void *user)
{
    struct cthread *t = user;
    if (status < 0)
        return;
    int64_t now = rsb_now_ns();
    if (t->phase == P_RUN && (now >= t->t_end || atomic_load(&t->cl->stop)))
        finish(t, now);
    if (t->phase == P_DRAIN && (now >= t->drain_end || t->active == 0))
        end_drain(t);
    int64_t wait = 0;
    if (t->phase == P_RUN)
        wait = t->t_end - now < TICK_NS ? t->t_end - now : TICK_NS;
    else if (t->phase == P_DRAIN)
        wait = TICK_NS / 2;
    else
        return; /* P_DONE: the loop ends when the last close (and connect) has completed */
    int r = rs_timer_start(tm, (double)(wait > 0 ? wait : 0) * 1e-9, on_tick, t);
    if (r < 0) {
        note_error(t, "rs_timer_start: %s", rs_strerror(r));
        finish(t, now);
        end_drain(t);
    }
}

static void thread_failed(struct cthread *t, int err, const char *what)
{
    if (t->err)
        return;
    t->err = err;
    snprintf(t->msg, sizeof t->msg, "thread %d: %s: %s", t->index, what, rs_strerror(err));
}

static void *cthread_main(void *arg)
{
    struct cthread *t = arg;
    struct client *cl = t->cl;
    const struct rsb_opts *o = cl->o;
    struct rs_loop_opts lo = RS_LOOP_OPTS_INIT;
    lo.backend = o->backend;
    switch (o->mode) {
    case RSB_ECHO:
        lo.entries = 1024;
        lo.buf_count = 4096;
        lo.buf_size = 4096;
        break;
    case RSB_SENDFILE:
        /* 256 KiB receives, not 64 KiB (same 16 MiB in all): a sendfile server's splice path hands
         * TCP up to 1 MiB at a time, and the larger buffers cut this receiver's CPU per MiB by
         * 17-28 % in two interleaved A/B runs (9 reps x 1.5 s, sender and receiver pinned apart,
         * busy machine); a stream server's receiver showed no difference, so it keeps 64 KiB. */
        lo.buf_count = 64;
        lo.buf_size = 256 * 1024;
        break;
    default: lo.buf_count = 64; /* receives only to see the server go away */
    }
    if (t->nconns > 256 && lo.entries < 1024)
        lo.entries = 1024;
    int r = rs_loop_new(&t->loop, &lo);
    if (r < 0) {
        thread_failed(t, r, rsb_loop_new_what(o->backend, r));
    } else {
        t->backend = rs_loop_backend(t->loop);
        t->conns = calloc((size_t)t->nconns, sizeof *t->conns);
        if (o->mode == RSB_ECHO)
            t->pattern = malloc(o->size + 256);
        if (o->mode == RSB_STREAM)
            t->stream_buf = calloc(1, o->size);
        if (!t->conns || (o->mode == RSB_ECHO && !t->pattern) || (o->mode == RSB_STREAM && !t->stream_buf))
            thread_failed(t, -ENOMEM, "setup");
        else if ((r = rs_timer_new(&t->tick, t->loop)) < 0)
            thread_failed(t, r, "rs_timer_new");
    }
    if (!t->err) {
        if (t->pattern) { /* the same on every thread: any byte from any connection can be checked */
            uint32_t x = 0x9e3779b9u;
            for (size_t i = 0; i < o->size + 256; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                t->pattern[i] = (unsigned char)x;
            }
        }
        for (long i = 0; i < t->nconns; i++) {
            struct cconn *cc = &t->conns[i];
            cc->t = t;
            cc->id = t->first_id + (uint32_t)i;
            if (o->mode == RSB_ECHO && !(cc->sent = calloc((size_t)o->depth, sizeof *cc->sent))) {
                thread_failed(t, -ENOMEM, "setup");
                break;
            }
            if (o->mode == RSB_CONNECT)
                continue;
            if ((r = rs_conn_connect(t->loop, o->host, o->port, &cl->copts, on_setup_connected, cc)) < 0) {
                t->connect_errors++;
                note_error(t, "rs_conn_connect: %s", rs_strerror(r));
                continue;
            }
            t->connecting++;
        }
        while (t->connecting > 0 && (r = rs_loop_run(t->loop, RS_RUN_ONCE)) >= 0)
            ;
        if (r < 0)
            thread_failed(t, r, "rs_loop_run");
    }

    pthread_mutex_lock(&cl->mu);
    cl->ready++;
    pthread_cond_broadcast(&cl->cv);
    while (!cl->go)
        pthread_cond_wait(&cl->cv, &cl->mu);
    pthread_mutex_unlock(&cl->mu);
    if (!t->loop)
        return NULL;

    int64_t now = rsb_now_ns();
    t->t_end = cl->t_end;
    if (t->err || atomic_load(&cl->stop)) {
        t->phase = P_DONE;
        for (long i = 0; t->conns && i < t->nconns; i++)
            cconn_close(&t->conns[i]);
    } else {
        t->phase = P_RUN;
        for (long i = 0; i < t->nconns; i++) {
            struct cconn *cc = &t->conns[i];
            if (o->mode == RSB_CONNECT)
                cm_start(cc);
            else if (cc->c && o->mode == RSB_ECHO)
                echo_start(cc, now);
            else if (cc->c && o->mode == RSB_STREAM)
                stream_start(cc);
            else if (cc->c && (r = rs_conn_read_start(cc->c, on_sendfile_read, cc)) < 0)
                cconn_fail(cc, r, "rs_conn_read_start");
        }
        if ((r = rs_timer_start(t->tick, 0, on_tick, t)) < 0) {
            thread_failed(t, r, "rs_timer_start");
            finish(t, now);
            end_drain(t);
        }
    }
    if ((r = rs_loop_run(t->loop, RS_RUN_DEFAULT)) < 0)
        thread_failed(t, r, "rs_loop_run");
    rs_loop_stats(t->loop, &t->stats);
    if (t->tick)
        rs_timer_free(t->tick);
    for (long i = 0; t->conns && i < t->nconns; i++) {
        free(t->conns[i].sent);
        if (t->conns[i].retry)
            rs_timer_free(t->conns[i].retry);
    }
    while (t->txpool) {
        struct txbuf *b = t->txpool;
        t->txpool = b->next;
        free(b);
    }
    if ((r = rs_loop_free(t->loop)) < 0)
        thread_failed(t, r, "rs_loop_free");
    return NULL;
}

/* ---- main thread: start, progress, report ---- */

struct interval {
    double a, b;
    uint64_t ops, bytes, errors;
};

struct sums {
    uint64_t ops, bytes, errors;
};

static struct sums sums(const struct client *cl)
{
    struct sums s = { 0, 0, 0 };
    for (int i = 0; i < cl->nth; i++) {
        s.ops += READ(cl->th[i].n.ops);
        s.bytes += READ(cl->th[i].n.bytes);
        s.errors += READ(cl->th[i].n.errors);
    }
    return s;
}

/* what one operation is called, per mode */
static const char *const ops_name[RSB_MODE_COUNT] = { "messages", "sends", "connections", "receives",
                                                      "messages" };

static void progress(const struct rsb_opts *o, struct rsb_progress *pg, const struct interval *iv)
{
    double secs = iv->b - iv->a;
    char g[32];
    if (o->mode == RSB_ECHO)
        rsb_progress_line(pg, "[%7.2f-%7.2f s]  %12s msg/s  %9.2f MB/s  errors %llu", iv->a, iv->b,
                          rsb_grouped((double)iv->ops / secs, g), (double)iv->bytes / secs / 1e6,
                          (unsigned long long)iv->errors);
    else if (o->mode == RSB_CONNECT)
        rsb_progress_line(pg, "[%7.2f-%7.2f s]  %12s conn/s  errors %llu", iv->a, iv->b,
                          rsb_grouped((double)iv->ops / secs, g), (unsigned long long)iv->errors);
    else
        rsb_progress_line(pg, "[%7.2f-%7.2f s]  %9.2f MB/s  errors %llu", iv->a, iv->b,
                          (double)iv->bytes / secs / 1e6, (unsigned long long)iv->errors);
}

struct report {
    double secs;
    uint64_t ops, bytes, errors, connected;
    uint64_t connect_errors, data_errors, conn_errors, unanswered;
    const char *first_err;
    struct rsb_hist *hist;
    struct rsb_cpu cpu;
    struct rs_loop_stats loop;
    int backend;
};

static void print_text(const struct rsb_opts *o, const struct report *r)
{
    char g1[32], g2[32], g3[32];
    double secs = r->secs > 0 ? r->secs : 1e-9;
    printf("- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n");
    if (o->mode == RSB_CONNECT)
        printf("%-12s%.2f s, %ld at a time", rsb_mode_name[o->mode], r->secs, o->conns);
    else
        printf("%-12s%.2f s, %llu of %ld connections", rsb_mode_name[o->mode], r->secs,
               (unsigned long long)r->connected, o->conns);
    if (o->mode == RSB_ECHO)
        printf(", %zu-byte messages, depth %ld", o->size, o->depth);
    else if (o->mode == RSB_STREAM)
        printf(", %zu-byte sends", o->size);
    printf(", %d thread%s, backend %s\n", o->threads, o->threads == 1 ? "" : "s",
           rsb_backend_str(r->backend));
    printf("%-12s%s (%s/s)\n", ops_name[o->mode], rsb_grouped((double)r->ops, g1),
           rsb_grouped((double)r->ops / secs, g2));
    if (o->mode != RSB_CONNECT)
        printf("%-12s%.2f MB/s (%s bytes %s; 1 MB = 10^6 bytes)\n", "throughput",
               (double)r->bytes / secs / 1e6, rsb_grouped((double)r->bytes, g1),
               o->mode == RSB_ECHO     ? "echoed"
               : o->mode == RSB_STREAM ? "sent"
                                       : "received");
    if (r->hist) {
        const struct rsb_hist *h = r->hist;
        if (h->count)
            printf(
                "%-12sp50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs (min %.1f, mean %.1f, max %.1f µs; %s samples)\n",
                "latency", rsb_hist_quantile(h, 0.5) / 1e3, rsb_hist_quantile(h, 0.99) / 1e3,
                rsb_hist_quantile(h, 0.999) / 1e3, (double)h->min / 1e3, h->sum / (double)h->count / 1e3,
                (double)h->max / 1e3, rsb_grouped((double)h->count, g3));
        else
            printf("%-12sno samples\n", "latency");
    }
    printf("%-12s%llu", "errors", (unsigned long long)r->errors);
    if (r->errors) {
        printf(" (connect %llu, data %llu, connection %llu, unanswered messages %llu); first: %s",
               (unsigned long long)r->connect_errors, (unsigned long long)r->data_errors,
               (unsigned long long)r->conn_errors, (unsigned long long)r->unanswered, r->first_err);
    }
    printf("\n%-12suser %.2f s, sys %.2f s (%.0f%% of one CPU)\n", "cpu", r->cpu.user, r->cpu.sys,
           (r->cpu.user + r->cpu.sys) / secs * 100);
    printf("%-12ssubmitted %s, completed %s, waits %s", "loop", rsb_grouped((double)r->loop.submitted, g1),
           rsb_grouped((double)r->loop.completed, g2), rsb_grouped((double)r->loop.waits, g3));
    if (r->ops)
        printf(" (%.3f waits per %s)", (double)r->loop.waits / (double)r->ops,
               o->mode == RSB_ECHO      ? "message"
               : o->mode == RSB_CONNECT ? "connection"
                                        : "operation");
    printf("\n");
}

static void print_json(const struct rsb_opts *o, const struct report *r, const struct interval *iv,
                       size_t niv)
{
    double secs = r->secs > 0 ? r->secs : 1e-9;
    printf("{\"rsbench\":\"client\",\"version\":");
    rsb_json_str(stdout, rs_version_string());
    printf(",\"mode\":\"%s\",\"backend\":\"%s\",\"host\":", rsb_mode_name[o->mode],
           rsb_backend_str(r->backend));
    rsb_json_str(stdout, o->host);
    printf(",\"port\":%s,\"threads\":%d,\"conns\":%ld,\"connected\":%llu", o->port, o->threads, o->conns,
           (unsigned long long)r->connected);
    if (o->mode == RSB_ECHO || o->mode == RSB_STREAM)
        printf(",\"size\":%zu", o->size);
    if (o->mode == RSB_ECHO)
        printf(",\"depth\":%ld", o->depth);
    printf(",\"duration_s\":%.6f,\"ops\":%llu,\"ops_per_s\":%.3f,\"ops_are\":\"%s\"", r->secs,
           (unsigned long long)r->ops, (double)r->ops / secs, ops_name[o->mode]);
    if (o->mode == RSB_ECHO)
        printf(",\"messages\":%llu,\"messages_per_s\":%.3f", (unsigned long long)r->ops,
               (double)r->ops / secs);
    if (o->mode == RSB_CONNECT)
        printf(",\"connections\":%llu,\"connections_per_s\":%.3f", (unsigned long long)r->ops,
               (double)r->ops / secs);
    printf(",\"bytes\":%llu,\"mb_per_s\":%.6f", (unsigned long long)r->bytes, (double)r->bytes / secs / 1e6);
    printf(",\"latency_us\":");
    if (r->hist && r->hist->count) {
        const struct rsb_hist *h = r->hist;
        printf(
            "{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"min\":%.3f,\"mean\":%.3f,\"max\":%.3f,\"samples\":%llu}",
            rsb_hist_quantile(h, 0.5) / 1e3, rsb_hist_quantile(h, 0.99) / 1e3,
            rsb_hist_quantile(h, 0.999) / 1e3, (double)h->min / 1e3, h->sum / (double)h->count / 1e3,
            (double)h->max / 1e3, (unsigned long long)h->count);
    } else {
        printf("null");
    }
    printf(
        ",\"errors\":%llu,\"error_counts\":{\"connect\":%llu,\"data\":%llu,\"connection\":%llu,\"unanswered\":%llu}",
        (unsigned long long)r->errors, (unsigned long long)r->connect_errors,
        (unsigned long long)r->data_errors, (unsigned long long)r->conn_errors,
        (unsigned long long)r->unanswered);
    printf(",\"first_error\":");
    if (r->first_err)
        rsb_json_str(stdout, r->first_err);
    else
        printf("null");
    printf(",\"cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f}", r->cpu.user, r->cpu.sys);
    printf(",\"loop\":{\"submitted\":%llu,\"completed\":%llu,\"waits\":%llu}", r->loop.submitted,
           r->loop.completed, r->loop.waits);
    printf(",\"intervals\":[");
    for (size_t i = 0; i < niv; i++) {
        double s = iv[i].b - iv[i].a;
        printf(
            "%s{\"start\":%.3f,\"end\":%.3f,\"ops\":%llu,\"ops_per_s\":%.3f,\"mb_per_s\":%.6f,\"errors\":%llu}",
            i ? "," : "", iv[i].a, iv[i].b, (unsigned long long)iv[i].ops, (double)iv[i].ops / s,
            (double)iv[i].bytes / s / 1e6, (unsigned long long)iv[i].errors);
    }
    printf("]}\n");
}

int rsb_run_client(const struct rsb_opts *o)
{
    sigset_t sigs;
    rsb_block_signals(&sigs);
    rsb_raise_nofile();

    static struct client cl; /* static: the threads hold pointers into it until joined */
    memset(&cl, 0, sizeof cl);
    cl.o = o;
    cl.copts = (struct rs_connect_opts)RS_CONNECT_OPTS_INIT;
    cl.copts.timeout = CONNECT_TIMEOUT_S;
    cl.copts.family = o->family;
    cl.nth = o->threads;
    pthread_mutex_init(&cl.mu, NULL);
    pthread_cond_init(&cl.cv, NULL);
    struct interval *iv = NULL;
    size_t niv = 0, cap = 0;
    struct rsb_hist *hist = NULL;
    int rc = 1;
    cl.th = calloc((size_t)o->threads, sizeof *cl.th);
    if (!cl.th) {
        fprintf(stderr, RSB_PROG ": client: out of memory\n");
        goto out;
    }
    int started = 0;
    uint32_t id = 0;
    for (int i = 0; i < o->threads; i++) {
        struct cthread *t = &cl.th[i];
        t->cl = &cl;
        t->index = i;
        t->nconns = o->conns / o->threads + (i < o->conns % o->threads);
        t->first_id = id;
        id += (uint32_t)t->nconns;
        int r = -pthread_create(&t->tid, NULL, cthread_main, t);
        if (r < 0) {
            fprintf(stderr, RSB_PROG ": client: pthread_create: %s\n", rs_strerror(r));
            break;
        }
        t->started = true;
        started++;
    }

    /* every thread has made its connections (or failed): start them all at once */
    pthread_mutex_lock(&cl.mu);
    while (cl.ready < started)
        pthread_cond_wait(&cl.cv, &cl.mu);
    bool ok = started == o->threads;
    uint64_t connected = 0;
    for (int i = 0; i < started; i++) {
        if (cl.th[i].err) {
            fprintf(stderr, RSB_PROG ": client: %s\n", cl.th[i].msg);
            ok = false;
        }
        connected += cl.th[i].connected;
    }
    if (ok && o->mode != RSB_CONNECT && connected == 0) {
        const char *why = "";
        for (int i = 0; i < started && !*why; i++)
            why = cl.th[i].first_err;
        fprintf(stderr, RSB_PROG ": client: no connection: %s\n", *why ? why : "?");
        ok = false;
    }
    int backend = started ? cl.th[0].backend : 0;
    if (ok && !o->json) {
        printf(RSB_PROG " client: %s to %s port %s, backend %s, %d thread%s, %ld connection%s",
               rsb_mode_name[o->mode], o->host, o->port, rsb_backend_str(backend), o->threads,
               o->threads == 1 ? "" : "s", o->conns, o->conns == 1 ? "" : "s");
        if (o->mode == RSB_ECHO)
            printf(", %zu-byte messages, depth %ld", o->size, o->depth);
        else if (o->mode == RSB_STREAM)
            printf(", %zu-byte sends", o->size);
        printf(", %.2f s\n", o->duration);
        fflush(stdout);
    }
    struct rsb_cpu cpu0 = rsb_cpu_now();
    cl.t_start = rsb_now_ns();
    cl.t_end = cl.t_start + (int64_t)(o->duration * 1e9);
    if (!ok)
        atomic_store(&cl.stop, true);
    cl.go = true;
    pthread_cond_broadcast(&cl.cv);
    pthread_mutex_unlock(&cl.mu);

    int64_t t_stop = cl.t_end;
    if (ok) {
        struct rsb_progress pg;
        rsb_progress_init(&pg);
        struct sums prev = sums(&cl);
        double last = 0, step = o->interval > 0 ? o->interval : o->duration;
        for (;;) {
            double now = (double)(rsb_now_ns() - cl.t_start) * 1e-9;
            double next = last + step < o->duration ? last + step : o->duration;
            int sig = rsb_wait_signal(&sigs, next - now);
            int64_t tn = rsb_now_ns();
            if (sig) {
                atomic_store(&cl.stop, true);
                t_stop = tn;
            }
            now = (double)(tn - cl.t_start) * 1e-9;
            if (now > o->duration)
                now = o->duration;
            struct sums cur = sums(&cl);
            if (o->interval > 0 && now - last > 1e-3) {
                if (niv == cap) {
                    cap = cap ? cap * 2 : 64;
                    struct interval *g = realloc(iv, cap * sizeof *iv);
                    if (!g)
                        break;
                    iv = g;
                }
                iv[niv] = (struct interval){ last, now, cur.ops - prev.ops, cur.bytes - prev.bytes,
                                             cur.errors - prev.errors };
                if (!o->json)
                    progress(o, &pg, &iv[niv]);
                niv++;
            }
            prev = cur;
            last = now;
            if (sig || now >= o->duration - 1e-6)
                break;
        }
        rsb_progress_end(&pg);
    }
    for (int i = 0; i < started; i++)
        pthread_join(cl.th[i].tid, NULL);
    if (!ok)
        goto out;

    struct report r = { 0 };
    r.secs = (double)((t_stop < cl.t_end ? t_stop : cl.t_end) - cl.t_start) * 1e-9;
    r.backend = backend;
    struct rsb_cpu cpu1 = rsb_cpu_now();
    r.cpu.user = cpu1.user - cpu0.user;
    r.cpu.sys = cpu1.sys - cpu0.sys;
    if (o->mode == RSB_ECHO || o->mode == RSB_CONNECT) {
        hist = calloc(1, sizeof *hist);
        r.hist = hist;
    }
    rc = 0;
    for (int i = 0; i < o->threads; i++) {
        struct cthread *t = &cl.th[i];
        r.ops += READ(t->n.ops);
        r.bytes += READ(t->n.bytes);
        r.errors += READ(t->n.errors);
        r.connected += t->connected;
        r.connect_errors += t->connect_errors;
        r.data_errors += t->data_errors;
        r.conn_errors += t->conn_errors;
        r.unanswered += t->unanswered;
        if (!r.first_err && t->first_err[0])
            r.first_err = t->first_err;
        r.loop.submitted += t->stats.submitted;
        r.loop.completed += t->stats.completed;
        r.loop.waits += t->stats.waits;
        if (hist)
            rsb_hist_merge(hist, &t->hist);
        if (t->err) {
            fprintf(stderr, RSB_PROG ": client: %s\n", t->msg);
            rc = 1;
        }
    }
    if (o->mode == RSB_CONNECT)
        r.connected = r.ops;
    if (o->json)
        print_json(o, &r, iv, niv);
    else
        print_text(o, &r);
    fflush(stdout);
    if (r.errors)
        rc = 1;
    if (r.ops == 0) {
        fprintf(stderr, RSB_PROG ": client: nothing was measured (is the server in %s mode?)\n",
                rsb_mode_name[o->mode]);
        rc = 1;
    }
out:
    for (int i = 0; cl.th && i < o->threads; i++) {
        free(cl.th[i].conns);
        free(cl.th[i].pattern);
        free(cl.th[i].stream_buf);
    }
    free(cl.th);
    free(iv);
    free(hist);
    pthread_mutex_destroy(&cl.mu);
    pthread_cond_destroy(&cl.cv);
    return rc;
}
