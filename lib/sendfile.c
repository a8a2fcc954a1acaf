/* rs_sendfile: socket.sendfile for C. On io_uring a file of 8 MiB or more goes file -> pipe ->
 * socket as linked SPLICE operations through a per-loop pipe pool, smaller ones and everything on
 * the readiness backends through sendfile(2); sources neither can take (pipes, sockets, devices)
 * or a kernel that refuses go read + send. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringsock/loop.h"
#include "ringsock/socket.h"
#include "bufpool_i.h"
#include "pipepool_i.h"
#include "socket_i.h"
#include "export_i.h"

/* file->pipe->socket pairs per submission: in a raw-liburing prototype (1 GiB, 1 MiB pipe) 1, 4
 * and 16 pairs moved about as fast, and 4 needed about half the io_uring_enter calls of 1. */
#define BATCH_PAIRS 4
/* io_uring's automatic choice: splice from this many bytes, sendfile(2) below. bench/run-sendfile
 * (one thread, transfers of 1, 8, 64, 256 MiB; two runs): splice moved 10-36 % more per second
 * from 8 MiB on, for 25-115 % more sender CPU (io-wq round trips); at 1 MiB it was no faster
 * (one run: 19 % slower) for 55-60 % more CPU. */
#define SPLICE_MIN (8u << 20)
/* read + send buffer */
#define READSEND_CHUNK (256u << 10)

/* A batch: a drain of what the pipe holds, the pairs, and a fence. */
#define OPS_MAX (2 + 2 * BATCH_PAIRS)

/* A path the kernel refused (EINVAL, ENOSYS, EOPNOTSUPP): the next path takes over from
 * x->sent. Never returned to the caller. */
#define REFUSED 1

enum path {
    PATH_AUTO,
    PATH_SPLICE,
    PATH_SENDFILE,
    PATH_READSEND
};

/* Per loop: the counters rs_sendfile_stats reports (a loop resource, freed with the loop). */
static const char stats_key = 's';

static struct rs_sendfile_stats *stats_of(struct rs_loop *loop)
{
    struct rs_sendfile_stats *st = rs__loop_res(loop, &stats_key);
    if (!st && (st = calloc(1, sizeof *st)) && rs__loop_res_attach(loop, &stats_key, st, free) < 0) {
        free(st);
        st = NULL;
    }
    return st;
}

/* One rs_sendfile call. */
struct xfer {
    struct rs_socket *s;
    struct rs_loop *loop;
    struct rs_sendfile_stats *st;
    int fd;
    int64_t start; /* file offset of the first byte (0 for a stream source) */
    uint64_t want; /* bytes to send; UINT64_MAX: until EOF */
    uint64_t sent; /* bytes the socket accepted: the only bytes ever counted */
    bool eof;
};

static bool refused(int err) { return err == -EINVAL || err == -ENOSYS || err == -EOPNOTSUPP; }

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* The socket's timeout in ns, or -1 for none. */
static int64_t timeout_ns(const struct rs_socket *s)
{
    double t = rs__sock_timeout(s);
    /* saturates at RS_NS_MAX (146 years), which a clock reading can be added to */
    return t < 0 ? -1 : rs__ns_from_seconds(t);
}

/* ---- splice: file -> pipe -> socket ------------------------------------------------------- */

static void op_fill(struct xfer *x, struct rs_op *op, const struct rs_pipe *p, int64_t off, size_t len)
{
    /* file -> pipe never waits for the peer: no deadline (a slow disk is not a socket timeout,
     * as with sendfile(2)), and no LINK_TIMEOUT SQE to pay for. */
    rs__sock_op(op, x->s, RS_OP_SPLICE, RS_DEADLINE_NONE);
    op->u.splice.fd_in = x->fd;
    op->u.splice.off_in = off;
    op->u.splice.fd_out = p->wr;
    op->u.splice.off_out = -1;
    op->u.splice.len = len;
}

static void op_drain(struct xfer *x, struct rs_op *op, const struct rs_pipe *p, size_t len, int64_t deadline)
{
    rs__sock_op(op, x->s, RS_OP_SPLICE, deadline);
    op->u.splice.fd_in = p->rd;
    op->u.splice.off_in = -1;
    op->u.splice.fd_out = x->s->fd;
    op->u.splice.off_out = -1;
    op->u.splice.len = len;
}

static bool is_drain(const struct xfer *x, const struct rs_op *op) { return op->u.splice.fd_out == x->s->fd; }

/* Run ops[0..n) in order, each only if the one before moved all it was asked to. On io_uring with
 * nothing else in flight on the loop they go as one linked chain (one submission, and io_uring
 * itself stops at the first short one: the rest complete with -ECANCELED). Otherwise one at a time.
 * Returns how many ran; *last_progress is when bytes last reached the socket.
 *
 * A chain may end in a fence (an RS_OP_TIMER already due). io_uring runs SPLICE in its io-wq
 * workers, and on a DEFER_TASKRUN ring a worker's last reference to a request is dropped by task
 * work that runs only when this thread next waits on the ring: until then the request keeps the
 * socket's file open, and rs_close would not close the connection (the peer would see no FIN;
 * seen here about once per hundred transfers). A linked operation is issued only once the one
 * before it is freed, so the fence's completion proves the last SPLICE let go of the socket. */
static size_t run_ops(struct xfer *x, struct rs_op *ops, size_t n, int64_t *last_progress)
{
    /* An empty loop has an empty submission queue, so the chain cannot be split by a flush. */
    bool chain = rs__loop_chains(x->loop) && rs_loop_pending(x->loop) == 0;
    if (!chain) {
        size_t i = 0;
        while (i < n) {
            struct rs_op *op = &ops[i];
            if (op->kind == RS_OP_TIMER)
                return i; /* fences matter for chains only */
            if (is_drain(x, op))
                op->deadline = rs__sock_deadline(x->s); /* each wait gets the whole timeout */
            int r = rs__loop_exec(x->loop, op);
            i++;
            if (r > 0 && is_drain(x, op))
                *last_progress = rs__now();
            if (r < 0 || (size_t)r < op->u.splice.len)
                break;
        }
        return i;
    }
    size_t sub = 0;
    for (; sub < n; sub++) {
        ops[sub].link = sub + 1 < n;
        if (rs__loop_submit(x->loop, &ops[sub]) < 0)
            break;
        /* The SQE carries the link now. A reissue after -EAGAIN (the engine parks the op on a
         * poll and submits it again) must not link to whatever is submitted next. */
        ops[sub].link = false;
    }
    if (sub == 0)
        return 0;
    bool seen[OPS_MAX] = { false };
    bool aborted = false;
    for (;;) {
        unsigned left = 0;
        for (size_t i = 0; i < sub; i++) {
            if (!ops[i].done) {
                left++;
            } else if (!seen[i]) {
                seen[i] = true;
                if (ops[i].res > 0 && is_drain(x, &ops[i]))
                    *last_progress = rs__now();
            }
        }
        if (!left)
            break;
        /* Each op still out will complete at least once (its result, or -ECANCELED when the
         * chain breaks): wait for all of them in one io_uring_enter. ops live on our stack and
         * the kernel may still write into them: only their completion ends this wait (as in
         * rs__loop_exec). */
        if (!aborted && rs__loop_aborted(x->loop)) {
            /* rs_close on another thread: end the chain (its ops complete with -ECANCELED) */
            aborted = true;
            for (size_t i = 0; i < sub; i++)
                if (!ops[i].done)
                    rs__loop_cancel(x->loop, &ops[i]);
        }
        rs__loop_wait_for(x->loop, aborted ? 1 : left);
    }
    return sub;
}

/* After a transfer whose last SPLICE was not followed by a fence that ran (the chain broke: an
 * error, or a drain the engine parked on a poll after -EAGAIN and issued again on its own), give
 * the worker a moment to drop that request: wait on the ring for SETTLE_NS, running the task work
 * that frees it. The worker drops its reference right after posting the completion, so only a
 * worker descheduled in between for longer than this can still hold the socket afterwards (then
 * until the thread's next wait on the loop). Measured without it: about one transfer in a
 * thousand left the peer waiting for a FIN after rs_close. */
#define SETTLE_NS 200000

static void settle(struct xfer *x)
{
    struct rs_op op;
    rs__sock_op(&op, x->s, RS_OP_TIMER, rs__now() + SETTLE_NS);
    rs__loop_exec(x->loop, &op);
}

static int via_splice(struct xfer *x, const struct rs_pipe *p, uint64_t *inpipe, bool *fenced)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    int64_t tmo = timeout_ns(x->s);
    int64_t deadline = rs__sock_deadline(x->s);
    int64_t last_progress = rs__now();
    for (;;) {
        uint64_t taken = x->sent + *inpipe; /* bytes read from the file so far */
        if (*inpipe == 0 && (x->eof || taken >= x->want))
            return 0;
        struct rs_op ops[OPS_MAX];
        size_t n = 0;
        if (*inpipe)
            op_drain(x, &ops[n++], p, *inpipe, deadline);
        for (int k = 0; k < BATCH_PAIRS && !x->eof && taken < x->want; k++) {
            int64_t pos = x->start + (int64_t)taken;
            /* a page of the file is a pipe slot: an unaligned start would need one slot more
             * than the pipe has and come back short, breaking the chain */
            size_t len = p->cap - (size_t)pos % pg;
            len = (size_t)min_u64(len, x->want - taken);
            op_fill(x, &ops[n++], p, pos, len);
            op_drain(x, &ops[n++], p, len, deadline);
            taken += len;
        }
        size_t fence = n;
        if (x->eof || taken >= x->want) {
            /* The last chain of the transfer ends in a fence: see run_ops. */
            rs__sock_op(&ops[n], x->s, RS_OP_TIMER, RS_DEADLINE_NOW);
            n++;
        }
        int64_t batch_start = rs__now();
        size_t ran = run_ops(x, ops, n, &last_progress);
        *fenced = fence < n && fence < ran && ops[fence].res == 0;
        int err = 0;
        for (size_t i = 0; i < ran; i++) {
            struct rs_op *op = &ops[i];
            int r = op->res;
            if (op->kind == RS_OP_TIMER)
                break; /* the fence */
            if (r < 0) {
                /* A drain the engine parked on a poll after -EAGAIN (and then finished) broke
                 * the chain all the same: the fill after it was cancelled without running. Fills
                 * have no deadline, so their -ECANCELED is never mistaken for a timeout. */
                if (r != -ECANCELED || is_drain(x, op))
                    err = r;
                break;
            }
            if (is_drain(x, op)) {
                *inpipe -= (uint64_t)r;
                x->sent += (uint64_t)r;
                x->st->splice_bytes += (uint64_t)r;
            } else {
                *inpipe += (uint64_t)r;
                if (r == 0)
                    x->eof = true; /* the file shrank since fstat */
            }
            /* short: io_uring cancelled the rest of the chain (their results mean nothing) */
            if ((size_t)r < op->u.splice.len)
                break;
        }
        if (ran == 0)
            err = -EBUSY;
        /* an io-wq worker interrupted (a cancel racing the op) moved nothing: go again; a
         * deadline that passed meanwhile ends the next op at once */
        if (err == -EINTR)
            err = 0;
        if (err == 0) {
            if (last_progress > batch_start)
                deadline = rs__sock_deadline(x->s);
            continue;
        }
        if (err == -ETIMEDOUT && tmo > 0 && last_progress > batch_start && last_progress + tmo > rs__now()) {
            /* A chain's operations share the deadline of its submission; an op that waited after
             * others of the chain made progress did not wait the whole timeout. socket.py's
             * timeout bounds each wait, so go on with the deadline counted from that progress. */
            deadline = last_progress + tmo;
            continue;
        }
        return refused(err) ? REFUSED : err;
    }
}

/* ---- sendfile(2) ---------------------------------------------------------------------------- */

static int via_sendfile(struct xfer *x)
{
    while (!x->eof && x->sent < x->want) {
        struct rs_op op;
        rs__sock_op(&op, x->s, RS_OP_SENDFILE, rs__sock_deadline(x->s));
        op.u.splice.fd_in = x->fd;
        op.u.splice.off_in = x->start + (int64_t)x->sent;
        op.u.splice.len = (size_t)min_u64(x->want - x->sent, RS_MAX_IO);
        int r = rs__loop_exec(x->loop, &op);
        if (r < 0)
            return refused(r) ? REFUSED : r;
        if (r == 0)
            x->eof = true;
        x->sent += (uint64_t)r;
        x->st->sendfile_bytes += (uint64_t)r;
    }
    return 0;
}

/* ---- read + send ---------------------------------------------------------------------------- */

/* Read from a stream source (pipe, socket, device) without ever blocking past the socket's
 * timeout: a blocking source is read only after the engine says it has data (an RS_OP_POLL, so
 * that rs_close on another thread ends the wait as it ends any other). */
static ssize_t read_stream(struct xfer *x, bool nonblock, void *buf, size_t n)
{
    int64_t deadline = rs__sock_deadline(x->s);
    bool ready = nonblock;
    for (;;) {
        if (ready) {
            ssize_t r = read(x->fd, buf, n);
            if (r >= 0)
                return r;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
        }
        struct rs_op op;
        rs__sock_op(&op, x->s, RS_OP_POLL, deadline);
        op.fd = x->fd;
        op.fdgen = rs__fdgen_next(); /* not the socket's fd: its own registration */
        op.flags = POLLIN;
        int r = rs__loop_exec(x->loop, &op);
        if (r < 0)
            return r;
        if (r & POLLNVAL)
            return -EBADF;
        ready = true;
    }
}

static int via_readsend(struct xfer *x, bool seekable)
{
    bool nonblock = false;
    if (!seekable) {
        int fl = fcntl(x->fd, F_GETFL);
        nonblock = fl >= 0 && (fl & O_NONBLOCK);
    }
    struct rs_buf b;
    if (rs__buf_get(x->loop, READSEND_CHUNK, &b) < 0)
        return -ENOMEM;
    int fixed = rs__buf_fixed_index(&b, x->loop);
    int err = 0;
    while (!x->eof && x->sent < x->want) {
        size_t n = (size_t)min_u64(b.size, x->want - x->sent);
        ssize_t got;
        if (seekable) {
            do
                got = pread(x->fd, b.mem, n, (off_t)(x->start + (int64_t)x->sent));
            while (got < 0 && errno == EINTR);
            if (got < 0)
                got = -errno;
        } else {
            got = read_stream(x, nonblock, b.mem, n);
        }
        if (got < 0) {
            err = (int)got;
            break;
        }
        if (got == 0) {
            x->eof = true;
            break;
        }
        /* Bytes read but not sent are not counted: a file is read again from x->sent next
         * time; from a stream they are gone, as with any read + send. */
        size_t done = 0;
        while (done < (size_t)got) {
            struct rs_op op;
            rs__sock_op(&op, x->s, fixed >= 0 ? RS_OP_WRITE_FIXED : RS_OP_SEND, rs__sock_deadline(x->s));
            op.u.io.buf = (char *)b.mem + done;
            op.u.io.len = (size_t)got - done;
            if (fixed >= 0)
                op.buf_index = (uint16_t)fixed;
            int r = rs__loop_exec(x->loop, &op);
            if (r < 0) {
                err = r;
                break;
            }
            done += (size_t)r;
            x->sent += (uint64_t)r;
            x->st->readsend_bytes += (uint64_t)r;
        }
        if (err)
            break;
    }
    rs__buf_put(&b);
    return err;
}

/* ---- the call ------------------------------------------------------------------------------- */

static int path_from_env(enum path *p)
{
    static const char *const names[] = { "auto", "splice", "sendfile", "readsend" };
    const char *e = getenv("RINGSOCK_SENDFILE");
    *p = PATH_AUTO;
    if (!e || !*e)
        return 0;
    for (int i = 0; i < 4; i++) {
        if (strcmp(e, names[i]) == 0) {
            *p = (enum path)i;
            return 0;
        }
    }
    static atomic_bool warned;
    if (!atomic_exchange(&warned, true))
        fprintf(stderr, "ringsock: RINGSOCK_SENDFILE=\"%s\" is not one of splice, sendfile, readsend, auto\n",
                e);
    return -EINVAL;
}

EXPORT ssize_t rs_sendfile(rs_socket *s, int fd, off_t *offset, size_t count)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (s->type != SOCK_STREAM || rs__sock_timeout(s) == 0 || (offset && *offset < 0))
        return -EINVAL;
    enum path path;
    int r = path_from_env(&path);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* Files and block devices have positions and go through splice or sendfile(2); anything
     * else (pipe, socket, character device) is a stream: read + send, and *offset, which must
     * start at 0, only counts what was sent. */
    bool regular = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    int64_t start = 0;
    if (!regular) {
        if (offset && *offset != 0)
            return -ESPIPE;
    } else if (offset) {
        start = *offset;
    } else {
        off_t cur = lseek(fd, 0, SEEK_CUR);
        if (cur < 0)
            return -errno;
        start = cur;
    }
    uint64_t want = count ? count : UINT64_MAX;
    if (S_ISREG(st.st_mode)) {
        /* to the size at the call, as socket.py; past EOF sends nothing */
        uint64_t left = start < st.st_size ? (uint64_t)(st.st_size - start) : 0;
        want = min_u64(want, left);
    }
    want = min_u64(want, SSIZE_MAX);
    if (want == 0)
        return 0;

    struct rs_loop *loop;
    r = rs_loop_default(&loop);
    if (r < 0)
        return r;
    struct rs_sendfile_stats *sst = stats_of(loop);
    if (!sst)
        return -ENOMEM;

    struct rs_call call;
    r = rs__sock_enter(s, &call, &loop);
    if (r < 0)
        return r;
    struct xfer x = { .s = s, .loop = loop, .st = sst, .fd = fd, .start = start, .want = want };
    sst->calls++;
    bool uring = rs__loop_chains(loop); /* io_uring: splice chains, and the io-wq fence */
    if (!regular)
        path = PATH_READSEND; /* nothing but read(2) takes every stream source */
    else if (path == PATH_AUTO)
        path = uring && want >= SPLICE_MIN ? PATH_SPLICE : PATH_SENDFILE;

    r = 0;
    if (path == PATH_SPLICE) {
        struct rs_pipe p;
        bool made = false;
        int pr = rs__pipe_get(loop, &p, &made);
        if (made)
            sst->pipes_made++;
        if (pr < 0) {
            sst->pipe_misses++;
            path = PATH_SENDFILE;
        } else {
            uint64_t inpipe = 0;
            bool fenced = false;
            r = via_splice(&x, &p, &inpipe, &fenced);
            if (uring && !fenced)
                settle(&x);
            rs__pipe_put(loop, &p, inpipe == 0);
            if (r == REFUSED) {
                /* what splice refuses (a file without splice_read, a socket that takes no
                 * pages) sendfile(2) refuses too: straight to read + send */
                sst->fallbacks++;
                path = PATH_READSEND;
            }
        }
    }
    if (path == PATH_SENDFILE) {
        r = via_sendfile(&x);
        if (r == REFUSED) {
            sst->fallbacks++;
            path = PATH_READSEND;
        }
    }
    if (path == PATH_READSEND) {
        r = via_readsend(&x, regular);
    }

    if (offset)
        *offset = (off_t)(start + (int64_t)x.sent);
    else if (regular && x.sent > 0 && lseek(fd, (off_t)(start + (int64_t)x.sent), SEEK_SET) < 0 && r == 0)
        r = -errno;
    if (r < 0 && atomic_load(&s->closed))
        r = -EBADF; /* rs_close from another thread woke us */
    rs__sock_leave(s, &call);
    return r < 0 ? r : (ssize_t)x.sent;
}

EXPORT int rs_sendfile_stats(struct rs_sendfile_stats *st)
{
    if (!st)
        return -EINVAL;
    struct rs_loop *loop = rs__loop_current();
    struct rs_sendfile_stats *sst = loop ? rs__loop_res(loop, &stats_key) : NULL;
    if (sst)
        *st = *sst;
    else
        memset(st, 0, sizeof *st);
    return 0;
}
