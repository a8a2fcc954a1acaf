/* Operations as single non-blocking syscalls (what the readiness backends retry on readiness),
 * the monotonic clock, and timeout-to-deadline conversion. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "fault_i.h"

static _Atomic uint64_t fdgen_counter = 1;

uint64_t rs__fdgen_next(void) { return atomic_fetch_add(&fdgen_counter, 1); }

int64_t rs__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rs__ns_from_seconds(double seconds)
{
    /* NaN compares false everywhere: tested first so that it cannot reach the cast */
    if (!(seconds > 0))
        return 0;
    /* RS_NS_MAX / 1e9 rounds up to exactly 2^62 / 1e9 as a double: anything below it converts
     * to less than 2^62 */
    if (seconds >= (double)RS_NS_MAX / 1e9)
        return RS_NS_MAX;
    return (int64_t)(seconds * 1e9);
}

int64_t rs__ns_add(int64_t t, int64_t ns)
{
    if (ns <= 0)
        return t;
    return t > RS_DEADLINE_NONE - ns ? RS_DEADLINE_NONE : t + ns;
}

int64_t rs__deadline_from_timeout(double seconds)
{
    if (seconds < 0)
        return RS_DEADLINE_NONE;
    int64_t ns = rs__ns_from_seconds(seconds);
    if (ns == 0)
        return RS_DEADLINE_NOW;
    /* Timeouts of 146 years or more are no timeout (Python's gh-126876 class): no clock will
     * reach them, and an io_uring LINK_TIMEOUT for them would be an SQE for nothing. */
    if (ns == RS_NS_MAX)
        return RS_DEADLINE_NONE;
    int64_t d = rs__ns_add(rs__now(), ns);
    return d > RS_DEADLINE_NOW ? d : RS_DEADLINE_NOW + 1;
}

static int neg_errno(void) { return errno ? -errno : -EIO; }

/* Whether fd is a byte stream: MSG_WAITALL means something only there (the kernel ignores it for
 * datagram and seqpacket sockets, which return one message). Asked once per op, only when its
 * first receive came back short: a MSG_WAITALL receive satisfied at once costs nothing extra. */
static bool is_stream(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type == SOCK_STREAM;
}

/* One op transfers at most what one recv(2) can (RS_MAX_IO): its result must fit in an int
 * (struct rs_op.res, an io_uring CQE), and a gathered MSG_WAITALL receive must not end up
 * reporting more than the single call it stands for could. */
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* After one non-blocking receive of a MSG_WAITALL op returned r: true to receive again, or false
 * with the op's result in *res (the bytes so far, -EAGAIN to wait for more, or the error). want is
 * at most RS_MAX_IO, so the bytes so far always fit in *res. */
static bool waitall_more(struct rs_op *op, ssize_t r, size_t want, int *res)
{
    if (r > 0) {
        op->xfer += (size_t)r;
        /* asked after the first chunk only: a second one means the first found a stream */
        if (op->xfer < want && (op->xfer != (size_t)r || is_stream(op->fd)))
            return true;
        *res = (int)op->xfer; /* all of it, or one datagram: the whole answer, as on io_uring */
        return false;
    }
    if (r < 0 && errno == EINTR)
        return true;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        *res = -EAGAIN;
    else /* EOF, or an error: what was received is returned even if an error follows */
        *res = r < 0 && op->xfer == 0 ? neg_errno() : (int)op->xfer;
    return false;
}

/* MSG_WAITALL means nothing to a non-blocking recv: gather the bytes across readiness waits. */
static int recv_waitall(struct rs_op *op)
{
    char *buf = op->u.io.buf;
    size_t want = min_size(op->u.io.len, RS_MAX_IO);
    int res;
    ssize_t r;
    do
        r = recv(op->fd, buf + op->xfer, want - op->xfer, (op->flags & ~MSG_WAITALL) | MSG_DONTWAIT);
    while (waitall_more(op, r, want, &res));
    return res;
}

/* The same for recvmsg: each call gets the iovecs not yet filled (the caller's array, its first
 * entry entered part-way for the call and put back after). Address and ancillary data come with
 * the first bytes only; msg_flags gathers every call's. */
static int recvmsg_waitall(struct rs_op *op)
{
    struct msghdr *m = op->u.msg;
    size_t want = 0;
    for (size_t i = 0; i < m->msg_iovlen && want < RS_MAX_IO; i++)
        want += min_size(m->msg_iov[i].iov_len, RS_MAX_IO);
    want = min_size(want, RS_MAX_IO);
    int res;
    bool more;
    do {
        size_t skip = op->xfer, i = 0;
        while (i + 1 < m->msg_iovlen && skip >= m->msg_iov[i].iov_len) {
            skip -= m->msg_iov[i].iov_len;
            i++;
        }
        struct msghdr part = *m;
        struct iovec saved = { 0 }, saved_last = { 0 };
        size_t last = i;
        if (m->msg_iovlen) {
            saved = m->msg_iov[i];
            m->msg_iov[i].iov_base = (char *)saved.iov_base + skip;
            m->msg_iov[i].iov_len = saved.iov_len - skip;
            /* the call gets no more room than the op may still take: the last iovec it sees is
             * cut (and put back after, as the first), the ones past it left out */
            size_t room = want - op->xfer, sum = 0;
            while (last + 1 < m->msg_iovlen && sum + m->msg_iov[last].iov_len < room) {
                sum += m->msg_iov[last].iov_len;
                last++;
            }
            saved_last = m->msg_iov[last];
            m->msg_iov[last].iov_len = min_size(m->msg_iov[last].iov_len, room - sum);
            part.msg_iov = m->msg_iov + i;
            part.msg_iovlen = last - i + 1;
        }
        bool first = op->xfer == 0;
        if (!first) {
            part.msg_name = NULL;
            part.msg_namelen = 0;
            part.msg_control = NULL;
            part.msg_controllen = 0;
        }
        ssize_t r = recvmsg(op->fd, &part, (op->flags & ~MSG_WAITALL) | MSG_DONTWAIT);
        int e = errno;
        if (m->msg_iovlen) {
            m->msg_iov[last] = saved_last;
            m->msg_iov[i] = saved; /* after: when last == i, saved is the original */
        }
        if (r >= 0 && first) {
            m->msg_namelen = part.msg_namelen;
            m->msg_controllen = part.msg_controllen;
            m->msg_flags = part.msg_flags;
        } else if (r > 0) {
            m->msg_flags |= part.msg_flags;
        }
        errno = e;
        more = waitall_more(op, r, want, &res);
    } while (more);
    return res;
}

/* The one SIGPIPE guard: SIGPIPE blocked in this thread around a call that may raise it, and the
 * one it raised (thread-directed, so pending on us) taken back. io_uring raises it in the task
 * that runs the request: inline or in task work, both inside io_uring_enter on this thread with
 * DEFER_TASKRUN (io-wq workers block every signal). A caller that blocks SIGPIPE itself keeps
 * its mask, and its pending signal. */
static bool sigpipe_pending(void)
{
    sigset_t pend;
    return sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
}

void rs__sigpipe_block(struct rs_sigpipe_guard *g)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    g->armed = pthread_sigmask(SIG_BLOCK, &set, &g->old) == 0 && !sigismember(&g->old, SIGPIPE);
    /* A caller that blocks SIGPIPE may have one pending of its own: that one is not ours. */
    g->pending = !g->armed && sigpipe_pending();
}

void rs__sigpipe_unblock(struct rs_sigpipe_guard *g)
{
    /* Asked, not inferred from -EPIPE: sendfile(2) and splice raise it inside a transfer that
     * still returns the bytes it moved before the peer went (strace: sendfile = 65536, then
     * SIGPIPE). One pending now that was not before is ours. */
    int saved = errno;
    if (!g->pending && sigpipe_pending()) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    if (g->armed)
        pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

int rs__op_try(struct rs_op *op, short *events)
{
    ssize_t r;
again:
    *events = POLLIN;
    RS_FAULT_TRY(op, events, r, fault_out);
    switch (op->kind) {
    case RS_OP_CONNECT:
        /* Retrying connect(2) tells the states apart: EALREADY while in progress, EISCONN once
         * connected, the failure (ECONNREFUSED, ...) otherwise. SO_ERROR alone cannot tell
         * "in progress" from "connected". */
        r = connect(op->fd, op->u.connect.sa, op->u.connect.len);
        if (r == 0)
            return 0;
        *events = POLLOUT;
        if (errno == EISCONN && op->bstate)
            return 0;
        if (errno == EINTR && !op->bstate) {
            /* the connect goes on in the background (POSIX), as if EINPROGRESS */
            op->bstate = 1;
            return op->deadline == RS_DEADLINE_NOW ? -EINPROGRESS : -EAGAIN;
        }
        if (errno == EALREADY && !op->bstate)
            return -EALREADY; /* an earlier call's connect is still in progress: socket.py raises
                                 EALREADY at once, as io_uring's CONNECT says */
        if (errno == EINPROGRESS || errno == EALREADY || errno == EAGAIN) {
            op->bstate = 1;
            if (op->deadline == RS_DEADLINE_NOW)
                return errno == EAGAIN ? -EAGAIN : -EINPROGRESS;
            return -EAGAIN;
        }
        return neg_errno();
    case RS_OP_ACCEPT: r = accept4(op->fd, op->u.accept.sa, op->u.accept.len, op->flags); break;
    case RS_OP_SEND:
        *events = POLLOUT;
        r = send(op->fd, op->u.io.buf, min_size(op->u.io.len, RS_MAX_IO),
                 op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    case RS_OP_RECV:
        if ((op->flags & MSG_WAITALL) && op->deadline != RS_DEADLINE_NOW)
            return recv_waitall(op);
        r = recv(op->fd, op->u.io.buf, min_size(op->u.io.len, RS_MAX_IO), op->flags | MSG_DONTWAIT);
        break;
    case RS_OP_SENDMSG:
        *events = POLLOUT;
        r = sendmsg(op->fd, op->u.msg, op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    case RS_OP_RECVMSG:
        if ((op->flags & MSG_WAITALL) && op->deadline != RS_DEADLINE_NOW)
            return recvmsg_waitall(op);
        r = recvmsg(op->fd, op->u.msg, op->flags | MSG_DONTWAIT);
        break;
    case RS_OP_READ_FIXED: /* the memory is ordinary memory too */
        r = recv(op->fd, op->u.io.buf, min_size(op->u.io.len, RS_MAX_IO), MSG_DONTWAIT);
        break;
    case RS_OP_WRITE_FIXED:
        *events = POLLOUT;
        r = send(op->fd, op->u.io.buf, min_size(op->u.io.len, RS_MAX_IO), MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    case RS_OP_SPLICE: {
        if (op->u.splice.fd_out == op->fd)
            *events = POLLOUT;
        int64_t *oi = op->u.splice.off_in >= 0 ? &op->u.splice.off_in : NULL;
        int64_t *oo = op->u.splice.off_out >= 0 ? &op->u.splice.off_out : NULL;
        /* splice advances the offsets it is given: the op's copy tracks progress. Into the
         * socket it has no MSG_NOSIGNAL. */
        struct rs_sigpipe_guard g;
        if (*events == POLLOUT)
            rs__sigpipe_block(&g);
        r = splice(op->u.splice.fd_in, (loff_t *)oi, op->u.splice.fd_out, (loff_t *)oo,
                   min_size(op->u.splice.len, RS_MAX_IO), op->u.splice.flags | SPLICE_F_NONBLOCK);
        if (*events == POLLOUT)
            rs__sigpipe_unblock(&g);
        break;
    }
    case RS_OP_SENDFILE: {
        *events = POLLOUT;
        off_t off = (off_t)op->u.splice.off_in;
        struct rs_sigpipe_guard g; /* sendfile(2) has no MSG_NOSIGNAL */
        rs__sigpipe_block(&g);
        r = sendfile(op->fd, op->u.splice.fd_in, &off, min_size(op->u.splice.len, RS_MAX_IO));
        rs__sigpipe_unblock(&g);
        if (r > 0)
            op->u.splice.off_in = off;
        break;
    }
    case RS_OP_READ: r = read(op->fd, op->u.io.buf, min_size(op->u.io.len, RS_MAX_IO)); break;
    case RS_OP_POLL: {
        struct pollfd p = { .fd = op->fd, .events = (short)op->flags };
        *events = (op->flags & POLLOUT) ? POLLOUT : POLLIN;
        r = poll(&p, 1, 0);
        if (r == 0)
            return -EAGAIN;
        if (r > 0)
            return p.revents;
        break;
    }
    case RS_OP_TIMER: *events = 0; return -EAGAIN;
    default: return -EINVAL;
    }
    RS_FAULT_LABEL(fault_out)
    if (r >= 0) /* every length above was capped at RS_MAX_IO (recvmsg/sendmsg: by the kernel) */
        return (int)r;
    if (errno == EWOULDBLOCK)
        return -EAGAIN;
    if (errno == EINTR)
        goto again;
    return neg_errno();
}

void rs__op_try_events(const struct rs_op *op, short *events)
{
    switch (op->kind) {
    case RS_OP_CONNECT:
    case RS_OP_SEND:
    case RS_OP_SENDMSG:
    case RS_OP_WRITE_FIXED:
    case RS_OP_SENDFILE: *events = POLLOUT; break;
    case RS_OP_SPLICE: *events = op->u.splice.fd_out == op->fd ? POLLOUT : POLLIN; break;
    case RS_OP_POLL: *events = (op->flags & POLLOUT) ? POLLOUT : POLLIN; break;
    default: *events = POLLIN;
    }
}
