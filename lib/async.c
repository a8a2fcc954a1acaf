/* The completion API: conns (listeners and connections) and timers driven by callbacks on one
 * loop. Multishot ACCEPT and RECV stay armed across many results; sends on a conn run one
 * operation at a time (a SENDMSG gathering everything queued), so they complete in order — two
 * sends in flight on one TCP socket may not (liburing #1001, #1359). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringsock/async.h"
#include "socket_i.h"
#include "export_i.h"

/* iovecs gathered into one SENDMSG */
#define SEND_BATCH 64
/* -EMFILE / -ENFILE: accepting pauses this long, then tries again */
#define ACCEPT_BACKOFF_NS 50000000

struct send_req {
    struct send_req *next;
    const char *buf;
    size_t len, off;
    size_t report; /* what cb is told on success: len, or a whole rs_conn_sendv's total */
    int file_fd;   /* >= 0: rs_conn_sendfile, len bytes of file_fd from file_off (buf unused) */
    bool more;     /* an rs_conn_sendv piece with more pieces after it (cancelled together) */
    bool shut;     /* rs_conn_shutdown: SHUT_WR once everything before it is sent; report =
                       its result */
    int64_t file_off;
    rs_send_cb cb;
    void *user;
};

/* The iovecs of one gathering SENDMSG: a conn gets them on its first batch, since most conns
 * (ping-pong) never have two sends queued and 1 KB per conn is cache misses at 1000s of conns. */
struct send_batch {
    struct msghdr msg;
    struct iovec iov[SEND_BATCH];
};

/* A conn becomes a listener or a connection at its first accept_start / read_start / send; the
 * two never need each other's state, so it shares memory (a conn is ~2.2 KB -> ~0.6 KB). */
enum {
    ROLE_NONE,
    ROLE_LISTENER,
    ROLE_STREAM
};

struct rs_conn {
    struct rs_loop *loop;
    int fd;
    uint8_t role;
    bool closing;
    unsigned inflight; /* operations of this conn not yet completed */
    uint64_t id;
    void *data;

    struct rs_op close_op;
    rs_close_cb close_cb;
    void *close_user;

    union {
        struct { /* ROLE_LISTENER */
            struct rs_op acc_op, backoff_op;
            bool acc_on, acc_armed, backoff_armed;
            rs_accept_cb acc_cb;
            void *acc_user;
        };
        struct { /* ROLE_STREAM */
            struct rs_op rd_op, stash_op;
            bool rd_on, rd_armed, rd_paused, rd_cancelling;
            rs_read_cb rd_cb;
            void *rd_user;
            char *stash; /* received after read_stop, before the cancel landed */
            size_t stash_len, stash_cap;
            int stash_end; /* 0, 1 = EOF seen while stopped, < 0 = error seen while stopped */
            /* the delivery the read callback is in (rs_conn_read_keep); ring: the backend's */
            const void *cur_data;
            size_t cur_n;
            bool cur_ring, cur_kept;

            struct rs_op snd_op;
            bool snd_armed, in_send_cb;
            bool zc_off; /* the socket refused zero-copy (AF_UNIX): plain sends from now on */
            bool req1_busy;
            struct send_req *sq_head, *sq_tail;
            size_t sq_bytes;
            unsigned sq_inflight;               /* requests from sq_head the operation in flight covers */
            struct send_req *cx_head, *cx_tail; /* cancelled, callbacks due from the loop */
            struct rs_op cx_op;
            bool cx_armed;
            struct send_batch *batch;
            /* one request without malloc: the common case is one send at a time */
            struct send_req req1;
        };
    };
};

/* May c take the role a call needs? It is claimed (c->role = want) only once the call
 * succeeds: a refused call leaves an unclaimed conn free for either. */
static bool role_ok(const struct rs_conn *c, uint8_t want) { return c->role == ROLE_NONE || c->role == want; }

static struct send_req *req_new(struct rs_conn *c)
{
    if (!c->req1_busy) {
        c->req1_busy = true;
        return &c->req1;
    }
    return malloc(sizeof(struct send_req));
}

static void req_free(struct rs_conn *c, struct send_req *q)
{
    if (q == &c->req1)
        c->req1_busy = false;
    else
        free(q);
}

/* Call back and free a detached list of requests, in order, each with status (sendv pieces but
 * the last have no callback). */
static void fail_reqs(struct rs_conn *c, struct send_req *q, ssize_t status)
{
    while (q) {
        struct send_req *next = q->next;
        if (q->cb)
            q->cb(c, status, q->user);
        req_free(c, q);
        q = next;
    }
}

static void conn_op(struct rs_conn *c, struct rs_op *op, int kind, rs_op_cb cb)
{
    memset(op, 0, sizeof *op);
    op->kind = (uint8_t)kind;
    op->fd = c->fd;
    op->fdgen = c->id;
    op->deadline = RS_DEADLINE_NONE;
    op->cb = cb;
    op->data = c;
}

static int submit(struct rs_conn *c, struct rs_op *op)
{
    int r = rs__loop_submit(c->loop, op);
    if (r == 0)
        c->inflight++;
    return r;
}

static void finish_close(struct rs_conn *c)
{
    if (c->role == ROLE_STREAM) {
        /* sends never handed to the kernel end here, in order */
        if (c->cx_tail) {
            c->cx_tail->next = c->sq_head;
            c->sq_head = c->cx_head;
            c->cx_head = c->cx_tail = NULL;
        }
        struct send_req *q = c->sq_head;
        c->sq_head = c->sq_tail = NULL;
        fail_reqs(c, q, -ECANCELED);
    }
    rs__loop_forget_fd(c->loop, c->fd);
    close(c->fd);
    if (c->close_cb)
        c->close_cb(c, c->close_user);
    if (c->role == ROLE_STREAM) {
        free(c->stash);
        free(c->batch);
    }
    free(c);
}

/* An operation of c completed: true if c is gone (closed) and must not be touched. */
static bool op_done(struct rs_conn *c)
{
    c->inflight--;
    if (c->closing && c->inflight == 0) {
        finish_close(c);
        return true;
    }
    return false;
}

EXPORT int rs_conn_open(rs_conn **out, rs_loop *loop, int fd)
{
    if (!out || !loop || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    *out = NULL;
    struct rs_conn *c = calloc(1, sizeof *c);
    int fl = fcntl(fd, F_GETFL);
    if (!c || fl < 0 || ((fl & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        int e = c ? -errno : -ENOMEM;
        free(c);
        close(fd);
        return e;
    }
    c->loop = loop;
    c->fd = fd;
    c->id = rs__fdgen_next();
    *out = c;
    return 0;
}

EXPORT int rs_conn_from_socket(rs_conn **out, rs_loop *loop, rs_socket *s)
{
    if (!out || !loop)
        return -EINVAL;
    int fd = rs__sock_detach(s);
    if (fd < 0)
        return fd;
    return rs_conn_open(out, loop, fd);
}

EXPORT int rs_conn_fd(const rs_conn *c) { return c ? c->fd : -EINVAL; }
EXPORT rs_loop *rs_conn_loop(const rs_conn *c) { return c ? c->loop : NULL; }
EXPORT void rs_conn_set_data(rs_conn *c, void *data)
{
    if (c)
        c->data = data;
}
EXPORT void *rs_conn_get_data(const rs_conn *c) { return c ? c->data : NULL; }

/* ---- accept ---- */

static void accept_arm(struct rs_conn *c);

static void backoff_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    c->backoff_armed = false;
    if (op_done(c))
        return;
    if (c->acc_on && !c->acc_armed)
        accept_arm(c);
}

static void accepted(struct rs_conn *c, int fd)
{
    if (c->closing || !c->acc_on) {
        close(fd);
        return;
    }
    rs_conn *nc;
    int r = rs_conn_open(&nc, c->loop, fd);
    c->acc_cb(c, r == 0 ? nc : NULL, r, c->acc_user);
}

static void accept_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    int res = op->res;
    if (!op->done) { /* one connection of a multishot accept */
        accepted(c, res);
        return;
    }
    c->acc_armed = false;
    if (res >= 0)
        accepted(c, res); /* the kernel ended the multishot with a connection */
    if (op_done(c) || !c->acc_on)
        return;
    if (res >= 0 || (res == -ECANCELED && op->cancelled)) {
        /* ended by the kernel, or our own stop with a start since: go on */
        if (!c->backoff_armed)
            accept_arm(c);
        return;
    }
    c->acc_cb(c, NULL, res, c->acc_user);
    if (c->closing || !c->acc_on)
        return;
    switch (res) {
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
        /* Retrying at once would spin on a full fd table: wait, serving everything else. */
        conn_op(c, &c->backoff_op, RS_OP_TIMER, backoff_cb);
        c->backoff_op.fd = -1;
        c->backoff_op.deadline = rs__now() + ACCEPT_BACKOFF_NS;
        if (submit(c, &c->backoff_op) == 0)
            c->backoff_armed = true;
        break;
    case -ECONNABORTED:
    case -EINTR:
    case -EAGAIN:
    case -EPROTO:
    case -EPERM:
        accept_arm(c); /* this connection is gone; the listener is fine */
        break;
    default: c->acc_on = false; /* the listener itself is broken: stop */
    }
}

static void accept_arm(struct rs_conn *c)
{
    conn_op(c, &c->acc_op, RS_OP_ACCEPT, accept_cb);
    c->acc_op.multishot = true;
    c->acc_op.flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    if (submit(c, &c->acc_op) == 0)
        c->acc_armed = true;
}

EXPORT int rs_conn_accept_start(rs_conn *listener, rs_accept_cb cb, void *data)
{
    if (!listener || !cb)
        return -EINVAL;
    if (listener->closing)
        return -EBADF;
    if (!role_ok(listener, ROLE_LISTENER))
        return -EINVAL;
    if (listener->acc_on)
        return -EALREADY;
    listener->acc_cb = cb;
    listener->acc_user = data;
    if (!listener->acc_armed && !listener->backoff_armed) {
        conn_op(listener, &listener->acc_op, RS_OP_ACCEPT, accept_cb);
        listener->acc_op.multishot = true;
        listener->acc_op.flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        int r = submit(listener, &listener->acc_op);
        if (r < 0)
            return r;
        listener->acc_armed = true;
    }
    /* else a stop's cancel (or a backoff) is in flight: its completion re-arms */
    listener->role = ROLE_LISTENER;
    listener->acc_on = true;
    return 0;
}

EXPORT int rs_conn_accept_stop(rs_conn *listener)
{
    if (!listener)
        return -EINVAL;
    if (listener->role != ROLE_LISTENER || !listener->acc_on)
        return 0;
    listener->acc_on = false;
    /* connections the kernel still hands over before the cancel lands are closed (accepted()) */
    if (listener->acc_armed)
        rs__loop_cancel(listener->loop, &listener->acc_op);
    return 0;
}

/* ---- receive ---- */

static int read_arm(struct rs_conn *c);

/* Bytes the kernel had already taken when reading was stopped (a multishot receive runs on until
 * its cancel lands): kept for the next rs_conn_read_start, never dropped. */
static void stash_add(struct rs_conn *c, const void *data, size_t n)
{
    if (c->stash_len + n > c->stash_cap) {
        size_t cap = c->stash_cap ? c->stash_cap : 4096;
        while (cap < c->stash_len + n)
            cap *= 2;
        char *p = realloc(c->stash, cap);
        if (!p) {
            c->stash_end = -ENOMEM; /* the stream has a hole: report it rather than lie */
            return;
        }
        c->stash = p;
        c->stash_cap = cap;
    }
    memcpy(c->stash + c->stash_len, data, n);
    c->stash_len += n;
}

/* The read callback with bytes, which it may keep (rs_conn_read_keep). */
static void deliver(struct rs_conn *c, const void *data, size_t n, bool ring)
{
    c->cur_data = data;
    c->cur_n = n;
    c->cur_ring = ring;
    c->cur_kept = false;
    c->rd_cb(c, (ssize_t)n, data, c->rd_user);
    c->cur_data = NULL; /* c is alive: every op of c holds it until op_done */
}

/* Data (res > 0) or the end (res <= 0) of the stream for the user, or the stash. */
static void read_result(struct rs_conn *c, int res, const void *data)
{
    if (c->closing)
        return;
    if (res > 0) {
        if (c->rd_on)
            deliver(c, data, (size_t)res, true);
        else
            stash_add(c, data, (size_t)res);
        return;
    }
    if (c->rd_on) {
        c->rd_on = false;
        c->rd_cb(c, res, NULL, c->rd_user);
    } else if (!c->stash_end) {
        c->stash_end = res == 0 ? 1 : res; /* 1 marks EOF */
    }
}

static void read_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    int res = op->res;
    if (!op->done) {
        read_result(c, res, op->mdata);
        return;
    }
    c->rd_armed = false;
    c->rd_cancelling = false;
    if (op_done(c))
        return;
    if (res > 0)
        read_result(c, res, op->mdata);
    else if (!(res == -ECANCELED && op->cancelled))
        read_result(c, res, NULL);
    /* our own cancel (stop, pause) or a multishot the kernel ended with data: go on if wanted */
    if ((res > 0 || (res == -ECANCELED && op->cancelled)) && c->rd_on && !c->rd_paused && !c->closing &&
        !c->rd_armed)
        read_arm(c);
}

static int read_arm(struct rs_conn *c)
{
    conn_op(c, &c->rd_op, RS_OP_RECV, read_cb);
    c->rd_op.multishot = true;
    int r = submit(c, &c->rd_op);
    if (r == 0)
        c->rd_armed = true;
    return r;
}

/* Stop the receive in flight (its completion re-arms if reading is wanted again by then). */
static void read_cancel(struct rs_conn *c)
{
    if (c->rd_armed && !c->rd_cancelling) {
        c->rd_cancelling = true;
        rs__loop_cancel(c->loop, &c->rd_op);
    }
}

static void stash_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    if (op_done(c))
        return;
    if (c->closing || !c->rd_on)
        return;
    if (c->stash_len) {
        size_t n = c->stash_len;
        c->stash_len = 0;
        deliver(c, c->stash, n, false);
    }
    if (c->stash_end && c->rd_on && !c->closing) {
        int end = c->stash_end == 1 ? 0 : c->stash_end;
        c->stash_end = 0;
        c->rd_on = false;
        c->rd_cb(c, end, NULL, c->rd_user);
        return;
    }
    if (c->rd_on && !c->closing && !c->rd_armed && !c->rd_paused)
        read_arm(c);
}

EXPORT int rs_conn_read_start(rs_conn *c, rs_read_cb cb, void *user)
{
    if (!c || !cb)
        return -EINVAL;
    if (c->closing)
        return -EBADF;
    if (!role_ok(c, ROLE_STREAM))
        return -EINVAL;
    if (c->rd_on)
        return -EALREADY;
    if (c->stash_len || c->stash_end) {
        /* what arrived while stopped comes first, from the loop (never inside this call) */
        conn_op(c, &c->stash_op, RS_OP_DEFER, stash_cb);
        c->stash_op.fd = -1;
        int r = submit(c, &c->stash_op);
        if (r < 0)
            return r;
    } else if (!c->rd_armed && !c->rd_paused) {
        int r = read_arm(c);
        if (r < 0)
            return r;
    }
    /* a cancel still in flight re-arms when it completes (read_cb) */
    c->role = ROLE_STREAM;
    c->rd_cb = cb;
    c->rd_user = user;
    c->rd_on = true;
    return 0;
}

EXPORT int rs_conn_read_stop(rs_conn *c)
{
    if (!c)
        return -EINVAL;
    if (c->role != ROLE_STREAM || !c->rd_on)
        return 0;
    c->rd_on = false;
    read_cancel(c);
    return 0;
}

struct rs_rbuf {
    struct rs_loop *loop;
    const void *data;
    bool ring;   /* the backend's receive buffer, lent (io_uring) */
    char copy[]; /* otherwise the bytes themselves */
};

EXPORT int rs_conn_read_keep(rs_conn *c, rs_rbuf **out)
{
    if (!c || !out || c->role != ROLE_STREAM || !c->cur_data)
        return -EINVAL;
    if (c->cur_kept)
        return -EALREADY;
    struct rs_loop *loop = c->loop;
    struct rs_rbuf *b;
    if (c->cur_ring) {
        /* lend the backend's own buffer, if this is one (not the readiness scratch) */
        if (!(b = malloc(sizeof *b)))
            return -ENOMEM;
        if (rs__loop_buf_keep(loop, c->cur_data) == 0) {
            *b = (struct rs_rbuf){ .loop = loop, .data = c->cur_data, .ring = true };
            c->cur_kept = true;
            *out = b;
            return 0;
        }
        free(b);
    }
    if (!(b = malloc(sizeof *b + c->cur_n)))
        return -ENOMEM;
    b->loop = loop;
    b->ring = false;
    memcpy(b->copy, c->cur_data, c->cur_n);
    b->data = b->copy;
    c->cur_kept = true;
    *out = b;
    return 0;
}

EXPORT const void *rs_rbuf_data(const rs_rbuf *b) { return b ? b->data : NULL; }

EXPORT void rs_rbuf_release(rs_rbuf *b)
{
    if (!b)
        return;
    if (b->ring)
        rs__loop_buf_release(b->loop, b->data);
    free(b);
}

/* ---- send ---- */

static void send_kick(struct rs_conn *c);

static void maybe_resume_reading(struct rs_conn *c)
{
    if (c->rd_paused && c->sq_bytes <= RS_CONN_SEND_HIGH / 2 && !c->closing) {
        c->rd_paused = false;
        if (c->rd_on && !c->rd_armed)
            read_arm(c); /* else the cancel in flight re-arms on completion */
    }
}

static void send_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    int res = op->res;
    c->snd_armed = false;
    if (op->zc && (res == -EOPNOTSUPP || res == -EINVAL) && !c->closing) {
        /* zero-copy is for TCP/UDP: go again, copying, with nothing lost */
        c->zc_off = true;
        c->inflight--;
        send_kick(c);
        return;
    }
    c->in_send_cb = true;
    /* Settle the queue first, then run the callbacks of what finished: a callback may send,
     * cancel or close, and must find the queue and sq_bytes true. */
    struct send_req *done = NULL, **tail = &done;
    ssize_t file_short = -1;
    if (res == 0 && c->sq_head && c->sq_head->file_fd >= 0 && c->sq_head->off < c->sq_head->len) {
        /* the file ended before count: the send completes with what the file had */
        struct send_req *q = c->sq_head;
        c->sq_bytes -= q->len - q->off;
        c->sq_head = q->next;
        q->next = NULL;
        done = q;
        file_short = (ssize_t)q->off;
    } else if (res >= 0) {
        size_t n = (size_t)res;
        c->sq_bytes -= n;
        bool shut_done = op->kind == RS_OP_DEFER;
        while (c->sq_head) {
            struct send_req *q = c->sq_head;
            if (q->shut && !shut_done)
                break; /* its turn comes: send_kick shuts down */
            shut_done = false;
            size_t left = q->len - q->off;
            if (n < left) {
                q->off += n; /* a short send: the rest goes in the next operation */
                break;
            }
            n -= left;
            c->sq_head = q->next;
            q->next = NULL;
            *tail = q;
            tail = &q->next;
        }
    } else {
        /* the stream is broken (or closing): every queued send fails, in order */
        done = c->sq_head;
        c->sq_head = NULL;
        c->sq_bytes = 0;
    }
    if (!c->sq_head)
        c->sq_tail = NULL;
    while (done) {
        struct send_req *q = done;
        done = q->next;
        if (q->cb)
            q->cb(c, res < 0 ? res : file_short >= 0 ? file_short : (ssize_t)q->report, q->user);
        req_free(c, q);
    }
    c->in_send_cb = false;
    if (op_done(c))
        return;
    if (c->sq_head && !c->closing)
        send_kick(c);
    maybe_resume_reading(c);
}

/* The most one sendfile operation moves: a bounded chunk keeps a huge file from holding the
 * conn's only send slot for its whole length without a progress point. */
#define SENDFILE_CHUNK (1u << 30)

static void send_kick(struct rs_conn *c)
{
    struct send_req *q = c->sq_head;
    if (q->shut) {
        /* everything queued before it is sent: shut down now, complete from the loop */
        q->report = shutdown(c->fd, SHUT_WR) < 0 ? -errno : 0;
        conn_op(c, &c->snd_op, RS_OP_DEFER, send_cb);
        c->snd_op.fd = -1;
        c->sq_inflight = 1;
        if (submit(c, &c->snd_op) == 0)
            c->snd_armed = true;
        return;
    }
    if (q->file_fd >= 0) {
        conn_op(c, &c->snd_op, RS_OP_SENDFILE, send_cb);
        c->snd_op.u.splice.fd_in = q->file_fd;
        c->snd_op.u.splice.off_in = q->file_off + (int64_t)q->off;
        size_t left = q->len - q->off;
        c->snd_op.u.splice.len = left > SENDFILE_CHUNK ? SENDFILE_CHUNK : left;
    } else if (!q->next || q->next->file_fd >= 0 || q->next->shut ||
               (!c->batch && !(c->batch = malloc(sizeof *c->batch)))) {
        /* one buffer (or no memory for a batch: the queue drains one send at a time) */
        conn_op(c, &c->snd_op, RS_OP_SEND, send_cb);
        c->snd_op.u.io.buf = (void *)(uintptr_t)(q->buf + q->off);
        c->snd_op.u.io.len = q->len - q->off;
    } else {
        int n = 0;
        for (; q && q->file_fd < 0 && !q->shut && n < SEND_BATCH; q = q->next, n++) {
            c->batch->iov[n].iov_base = (void *)(uintptr_t)(q->buf + q->off);
            c->batch->iov[n].iov_len = q->len - q->off;
        }
        memset(&c->batch->msg, 0, sizeof c->batch->msg);
        c->batch->msg.msg_iov = c->batch->iov;
        c->batch->msg.msg_iovlen = (size_t)n;
        conn_op(c, &c->snd_op, RS_OP_SENDMSG, send_cb);
        c->snd_op.u.msg = &c->batch->msg;
    }
    c->sq_inflight = c->snd_op.kind == RS_OP_SENDMSG ? (unsigned)c->batch->msg.msg_iovlen : 1;
    size_t bytes = c->snd_op.kind == RS_OP_SEND ? c->snd_op.u.io.len : 0;
    for (size_t i = 0; c->snd_op.kind == RS_OP_SENDMSG && i < c->batch->msg.msg_iovlen; i++)
        bytes += c->batch->iov[i].iov_len;
    c->snd_op.zc = !c->zc_off && bytes >= c->loop->zc_threshold;
    if (submit(c, &c->snd_op) < 0) {
        /* fails the queue from the loop, counted as in flight like any op it completes */
        rs__loop_fail(c->loop, &c->snd_op, -EBUSY);
        c->inflight++;
    }
    c->snd_armed = true;
}

static void queue_send(struct rs_conn *c, struct send_req *q)
{
    c->role = ROLE_STREAM;
    if (c->sq_tail)
        c->sq_tail->next = q;
    else
        c->sq_head = q;
    c->sq_tail = q;
    c->sq_bytes += q->len;
}

/* After queueing: start sending if idle, and pause reading above the high-water mark. */
static void after_queue(struct rs_conn *c)
{
    if (!c->snd_armed && !c->in_send_cb)
        send_kick(c);
    if (c->sq_bytes > RS_CONN_SEND_HIGH && !c->rd_paused) {
        c->rd_paused = true;
        read_cancel(c);
    }
}

/* May c take a send (or shutdown) now? 0, or why not. */
static int send_ok(const struct rs_conn *c)
{
    if (c->closing)
        return -EBADF;
    return role_ok(c, ROLE_STREAM) ? 0 : -EINVAL;
}

/* Queue one request made from r (a send, a sendfile or a shutdown). */
static int send_one(struct rs_conn *c, const struct send_req *r)
{
    struct send_req *q = req_new(c);
    if (!q)
        return -ENOMEM;
    *q = *r;
    queue_send(c, q);
    after_queue(c);
    return 0;
}

EXPORT int rs_conn_send(rs_conn *c, const void *buf, size_t len, rs_send_cb cb, void *user)
{
    if (!c || (!buf && len))
        return -EINVAL;
    int r = send_ok(c);
    return r < 0 ? r
                 : send_one(
                       c, &(struct send_req){
                              .buf = buf, .len = len, .report = len, .file_fd = -1, .cb = cb, .user = user });
}

EXPORT int rs_conn_sendv(rs_conn *c, const struct iovec *iov, int iovcnt, rs_send_cb cb, void *user)
{
    if (!c || !iov || iovcnt <= 0 || iovcnt > SEND_BATCH)
        return -EINVAL;
    int r = send_ok(c);
    if (r < 0)
        return r;
    struct send_req *q[SEND_BATCH];
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    /* all or nothing: allocate every piece before queueing any */
    for (int i = 0; i < iovcnt; i++) {
        q[i] = req_new(c);
        if (!q[i]) {
            while (i--)
                req_free(c, q[i]);
            return -ENOMEM;
        }
        /* one callback, on the last piece, with the total */
        bool last = i == iovcnt - 1;
        *q[i] = (struct send_req){ .buf = iov[i].iov_base,
                                   .len = iov[i].iov_len,
                                   .report = total,
                                   .file_fd = -1,
                                   .more = !last,
                                   .cb = last ? cb : NULL,
                                   .user = user };
    }
    for (int i = 0; i < iovcnt; i++)
        queue_send(c, q[i]);
    after_queue(c);
    return 0;
}

EXPORT int rs_conn_sendfile(rs_conn *c, int fd, off_t offset, size_t count, rs_send_cb cb, void *user)
{
    if (!c || fd < 0 || offset < 0)
        return -EINVAL;
    int r = send_ok(c);
    if (r < 0)
        return r;
    if (count == 0) {
        struct stat st;
        if (fstat(fd, &st) < 0)
            return -errno;
        if (!S_ISREG(st.st_mode))
            return -EINVAL; /* "to EOF" needs a size; for pipes give a count */
        count = st.st_size > offset ? (size_t)(st.st_size - offset) : 0;
    }
    return send_one(
        c, &(struct send_req){
               .len = count, .report = count, .file_fd = fd, .file_off = offset, .cb = cb, .user = user });
}

static void cancelled_cb(struct rs_op *op)
{
    struct rs_conn *c = op->data;
    c->cx_armed = false;
    struct send_req *q = c->cx_head;
    c->cx_head = c->cx_tail = NULL;
    fail_reqs(c, q, -ECANCELED);
    op_done(c);
}

EXPORT int rs_conn_send_cancel(rs_conn *c, void *user)
{
    if (!c)
        return -EINVAL;
    if (c->role != ROLE_STREAM || c->closing)
        return 0;
    /* Untouchable: what the operation in flight covers, a request partly written already (a
     * short send being continued), and the rest of a vectored send either of them began. */
    unsigned skip = c->snd_armed ? c->sq_inflight : 0, i = 0;
    struct send_req **pp = &c->sq_head, *prev = NULL;
    while (*pp && (i < skip || (*pp)->off > 0 || (prev && prev->more))) {
        prev = *pp;
        pp = &(*pp)->next;
        i++;
    }
    int n = 0;
    while (*pp) {
        struct send_req *first = *pp, *last = first;
        while (last->more && last->next)
            last = last->next;
        if (last->user != user) {
            pp = &last->next;
            continue;
        }
        *pp = last->next;
        last->next = NULL;
        for (struct send_req *q = first; q; q = q->next)
            c->sq_bytes -= q->len - q->off;
        if (c->cx_tail)
            c->cx_tail->next = first;
        else
            c->cx_head = first;
        c->cx_tail = last;
        n++;
    }
    if (n == 0)
        return 0;
    c->sq_tail = NULL;
    for (struct send_req *q = c->sq_head; q; q = q->next)
        c->sq_tail = q;
    if (!c->cx_armed) {
        /* the callbacks run from the loop, never inside this call (a deferred op cannot fail
         * to submit; were it to, finish_close still runs them) */
        conn_op(c, &c->cx_op, RS_OP_DEFER, cancelled_cb);
        c->cx_op.fd = -1;
        if (submit(c, &c->cx_op) == 0)
            c->cx_armed = true;
    }
    maybe_resume_reading(c);
    return n;
}

EXPORT int rs_conn_shutdown(rs_conn *c, rs_send_cb cb, void *user)
{
    if (!c)
        return -EINVAL;
    int r = send_ok(c);
    return r < 0 ? r : send_one(c, &(struct send_req){ .file_fd = -1, .shut = true, .cb = cb, .user = user });
}

EXPORT size_t rs_conn_send_pending(const rs_conn *c) { return c && c->role == ROLE_STREAM ? c->sq_bytes : 0; }

/* ---- close ---- */

static void close_cb_op(struct rs_op *op) { op_done(op->data); }

EXPORT int rs_conn_close(rs_conn *c, rs_close_cb cb, void *user)
{
    if (!c)
        return -EINVAL;
    if (c->closing)
        return -EALREADY;
    c->closing = true;
    c->close_cb = cb;
    c->close_user = user;
    /* close(2) would not end operations in flight (a pending receive even keeps the socket
     * open, liburing #932): cancel each, and close the fd when the last has completed. */
    if (c->role == ROLE_LISTENER) {
        c->acc_on = false;
        if (c->acc_armed)
            rs__loop_cancel(c->loop, &c->acc_op);
        if (c->backoff_armed)
            rs__loop_cancel(c->loop, &c->backoff_op);
    } else if (c->role == ROLE_STREAM) {
        c->rd_on = false;
        if (c->rd_armed && !c->rd_cancelling)
            rs__loop_cancel(c->loop, &c->rd_op);
        if (c->snd_armed)
            rs__loop_cancel(c->loop, &c->snd_op);
    }
    /* A deferred op brings the final callback into the loop even when nothing was in flight. */
    conn_op(c, &c->close_op, RS_OP_DEFER, close_cb_op);
    c->close_op.fd = -1;
    int r = submit(c, &c->close_op);
    if (r < 0 && c->inflight == 0) {
        finish_close(c); /* cannot defer: finish now rather than leak */
        return 0;
    }
    return 0;
}

/* ---- wake-ups from other threads ---- */

struct rs_async {
    struct rs_loop *loop;
    int fd; /* eventfd: a counter the kernel keeps, one fd, writes never block */
    uint64_t id;
    atomic_bool pending; /* a wake-up is on its way: further sends need no write */
    /* rs_async_send calls between their exchange of pending and the end of their write(2): the
     * close waits for 0, so the fd is never closed (and its number reused) under a send. It is
     * also the hand-off a thread sanitizer can see: the kernel's eventfd read through io_uring
     * is not, and without it the close looked unordered with the sender's write. */
    atomic_uint senders;
    bool armed, closing, in_cb;
    uint64_t val;
    struct rs_op op;
    rs_async_cb cb;
    void *user;
    void (*close_cb)(rs_async *a, void *user);
    void *close_user;
};

static void async_arm(struct rs_async *a);

static void async_finish(struct rs_async *a)
{
    /* a send that began before the close (the callback that closes may run while another
     * thread's send is between its exchange and its write) ends within one write(2) */
    while (atomic_load_explicit(&a->senders, memory_order_acquire))
        sched_yield();
    rs__loop_forget_fd(a->loop, a->fd);
    close(a->fd);
    if (a->close_cb)
        a->close_cb(a, a->close_user);
    free(a);
}

static void async_op_cb(struct rs_op *op)
{
    struct rs_async *a = op->data;
    a->armed = false;
    if (a->closing) {
        async_finish(a);
        return;
    }
    /* cleared before the callback: a send from now on writes again, so none is lost. An
     * exchange, not a store: reading the senders' exchange is what orders what they did before
     * rs_async_send before the callback (the eventfd read the kernel did is invisible to TSan). */
    (void)atomic_exchange(&a->pending, false);
    if (op->res > 0) {
        a->in_cb = true;
        a->cb(a, a->user);
        a->in_cb = false;
    }
    if (!a->closing)
        async_arm(a);
    else if (!a->armed)
        async_finish(a);
}

static void async_arm(struct rs_async *a)
{
    memset(&a->op, 0, sizeof a->op);
    a->op.kind = RS_OP_READ;
    a->op.fd = a->fd;
    a->op.fdgen = a->id;
    a->op.deadline = RS_DEADLINE_NONE;
    a->op.u.io.buf = &a->val;
    a->op.u.io.len = sizeof a->val;
    a->op.cb = async_op_cb;
    a->op.data = a;
    if (rs__loop_submit(a->loop, &a->op) == 0)
        a->armed = true;
}

EXPORT int rs_async_new(rs_async **out, rs_loop *loop, rs_async_cb cb, void *user)
{
    if (!out || !loop || !cb)
        return -EINVAL;
    *out = NULL;
    struct rs_async *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->fd < 0) {
        int e = -errno;
        free(a);
        return e;
    }
    a->loop = loop;
    a->id = rs__fdgen_next();
    a->cb = cb;
    a->user = user;
    atomic_init(&a->pending, false);
    atomic_init(&a->senders, 0);
    async_arm(a);
    if (!a->armed) {
        close(a->fd);
        free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

EXPORT int rs_async_send(rs_async *a)
{
    if (!a)
        return -EINVAL;
    atomic_fetch_add_explicit(&a->senders, 1, memory_order_relaxed);
    int r = 0;
    if (!atomic_exchange(&a->pending, true)) {
        uint64_t one = 1;
        for (;;) {
            if (write(a->fd, &one, sizeof one) == (ssize_t)sizeof one)
                break;
            if (errno == EAGAIN)
                break; /* the counter is saturated: a wake-up is certainly pending */
            if (errno != EINTR) {
                r = -errno;
                break;
            }
        }
    }
    /* release: the write is over before async_finish can see 0 and close the fd */
    atomic_fetch_sub_explicit(&a->senders, 1, memory_order_release);
    return r;
}

EXPORT int rs_async_close(rs_async *a, void (*close_cb)(rs_async *a, void *user), void *user)
{
    if (!a)
        return -EINVAL;
    if (a->closing)
        return -EALREADY;
    a->closing = true;
    a->close_cb = close_cb;
    a->close_user = user;
    if (a->armed) {
        rs__loop_cancel(a->loop, &a->op); /* its completion finishes the close */
        return 0;
    }
    if (a->in_cb)
        return 0; /* async_op_cb finishes once the callback returns */
    /* not armed (a failed re-arm): finish from the loop, never inside this call */
    memset(&a->op, 0, sizeof a->op);
    a->op.kind = RS_OP_DEFER;
    a->op.fd = -1;
    a->op.cb = async_op_cb;
    a->op.data = a;
    int r = rs__loop_submit(a->loop, &a->op);
    if (r < 0)
        async_finish(a);
    return 0;
}

/* ---- timers ---- */

struct rs_timer {
    struct rs_loop *loop;
    struct rs_op op;
    bool running;
    rs_timer_cb cb;
    void *user;
};

static void timer_cb(struct rs_op *op)
{
    struct rs_timer *t = op->data;
    t->running = false;
    t->cb(t, op->res, t->user);
}

EXPORT int rs_timer_new(rs_timer **out, rs_loop *loop)
{
    if (!out || !loop)
        return -EINVAL;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    (*out)->loop = loop;
    return 0;
}

EXPORT int rs_timer_start(rs_timer *t, double seconds, rs_timer_cb cb, void *user)
{
    if (!t || !cb || !(seconds >= 0) || !isfinite(seconds))
        return -EINVAL;
    if (t->running)
        return -EBUSY;
    memset(&t->op, 0, sizeof t->op);
    t->op.kind = RS_OP_TIMER;
    t->op.fd = -1;
    int64_t d = rs__deadline_from_timeout(seconds);
    t->op.deadline = seconds == 0 ? rs__now() : d;
    t->op.cb = timer_cb;
    t->op.data = t;
    t->cb = cb;
    t->user = user;
    int r = rs__loop_submit(t->loop, &t->op);
    if (r == 0)
        t->running = true;
    return r;
}

EXPORT int rs_timer_stop(rs_timer *t)
{
    if (!t)
        return -EINVAL;
    if (!t->running)
        return -EALREADY;
    return rs__loop_cancel(t->loop, &t->op);
}

EXPORT int rs_timer_free(rs_timer *t)
{
    if (!t)
        return -EINVAL;
    if (t->running)
        return -EBUSY;
    free(t);
    return 0;
}
