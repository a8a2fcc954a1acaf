/* The blocking socket object with socket.py semantics. Every I/O call builds an operation and runs
 * it on the calling thread's default loop (rs__loop_exec); nothing here calls send/recv itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringsock/socket.h"
#include "ringsock/loop.h"
#include "socket_i.h"
#include "export_i.h"

static _Atomic double default_timeout = RS_TIMEOUT_NONE;

static bool timeout_valid(double t) { return t == RS_TIMEOUT_NONE || (t >= 0 && isfinite(t)); }

EXPORT void rs_setdefaulttimeout(double seconds)
{
    if (timeout_valid(seconds))
        atomic_store(&default_timeout, seconds);
}

EXPORT double rs_getdefaulttimeout(void) { return atomic_load(&default_timeout); }

/* Socket locks, striped by address: a call's entry and exit and rs_close meet under one, so a
 * close either sees a call and wakes it, or the call sees the close. Global stripes rather than a
 * lock per socket so that fork() can take them all (rs__sock_locks): a child never inherits one
 * held by a thread that does not exist there. Spinlocks: held for a few instructions (rs_close:
 * one eventfd write per call it wakes), and a pthread mutex cost ~110 instructions per call
 * (callgrind) where these cost ~10. */
#define NLOCKS 64
static struct {
    _Alignas(64) atomic_bool held; /* a cache line each: unrelated sockets do not contend */
} locks[NLOCKS];

static atomic_bool *lock_of(const struct rs_socket *s)
{
    uintptr_t h = (uintptr_t)s;
    return &locks[(h >> 6 ^ h >> 12) % NLOCKS].held;
}

static __attribute__((noinline)) void lock_slow(atomic_bool *l)
{
    unsigned spins = 0;
    do {
        while (atomic_load_explicit(l, memory_order_relaxed)) {
            if (++spins > 64)
                sched_yield(); /* the holder may be descheduled: do not burn its CPU */
        }
    } while (atomic_exchange_explicit(l, true, memory_order_acquire));
}

static inline void lock(atomic_bool *l)
{
    if (atomic_exchange_explicit(l, true, memory_order_acquire))
        lock_slow(l);
}

static void unlock(atomic_bool *l) { atomic_store_explicit(l, false, memory_order_release); }

static void locks_take(void)
{
    for (int i = 0; i < NLOCKS; i++)
        lock(&locks[i].held);
}

static void locks_give(void)
{
    for (int i = 0; i < NLOCKS; i++)
        unlock(&locks[i].held);
}

/* fork(): no other thread is inside a socket lock when the child's copy is taken. */
__attribute__((constructor)) static void locks_at_fork(void)
{
    pthread_atfork(locks_take, locks_give, locks_give);
}

int rs__sock_wrap(rs_socket **out, int fd, int family, int type, double timeout)
{
    struct rs_socket *s = malloc(sizeof *s);
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->fd = fd;
    atomic_init(&s->closed, false);
    atomic_init(&s->refs, 1);
    s->calls = NULL;
    s->family = family;
    s->type = type;
    atomic_init(&s->timeout, timeout);
    s->id = rs__fdgen_next();
    *out = s;
    return 0;
}

bool rs__sock_hold(struct rs_socket *s)
{
    if (!s || atomic_load(&s->closed))
        return false;
    atomic_fetch_add(&s->refs, 1);
    if (atomic_load(&s->closed)) {
        rs__sock_drop(s);
        return false;
    }
    return true;
}

void rs__sock_drop(struct rs_socket *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    rs__loop_forget_fd(rs__loop_current(), s->fd);
    /* Linux releases the fd even when close(2) says EINTR: never retry. */
    close(s->fd);
    free(s);
}

/* In a child of fork(), the calls its parent's threads had in progress are copies that never
 * end here: unlink them (under s's lock) and return how many references they held. */
static unsigned purge_stale(struct rs_socket *s)
{
    unsigned n = 0, gen = rs__forkgen();
    for (struct rs_call *c = s->calls, *next; c; c = next) {
        next = c->next;
        if (c->forkgen == gen)
            continue;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->calls = c->next;
        if (c->next)
            c->next->prev = c->prev;
        n++;
    }
    return n;
}

int rs__sock_detach(struct rs_socket *s)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    atomic_bool *m = lock_of(s);
    lock(m);
    unsigned stale = purge_stale(s);
    unlock(m);
    atomic_fetch_sub(&s->refs, stale);
    unsigned one = 1;
    if (!atomic_compare_exchange_strong(&s->refs, &one, 0))
        return -EBUSY;
    int fd = s->fd;
    rs__loop_forget_fd(rs__loop_current(), fd);
    free(s);
    return fd;
}

int rs__sock_enter(struct rs_socket *s, struct rs_call *c, struct rs_loop **loop)
{
    if (!s)
        return -EBADF;
    if (!(*loop = rs__loop_current())) {
        int r = rs_loop_default(loop);
        if (r < 0)
            return r;
    }
    c->loop = *loop;
    atomic_init(&c->abort, false);
    c->forkgen = rs__forkgen();
    c->prev = NULL;
    atomic_bool *m = lock_of(s);
    lock(m);
    if (atomic_load_explicit(&s->closed, memory_order_relaxed)) {
        unlock(m);
        return -EBADF;
    }
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    unlock(m);
    c->outer = (*loop)->abort;
    (*loop)->abort = &c->abort;
    return 0;
}

void rs__sock_leave(struct rs_socket *s, struct rs_call *c)
{
    c->loop->abort = c->outer;
    atomic_bool *m = lock_of(s);
    lock(m);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    unlock(m);
    rs__sock_drop(s);
}

int rs__sock_run(struct rs_socket *s, struct rs_op *op)
{
    struct rs_call c;
    struct rs_loop *loop;
    int r = rs__sock_enter(s, &c, &loop);
    if (r < 0)
        return r;
    r = rs__loop_exec(loop, op);
    if (r <= 0 && atomic_load(&s->closed))
        r = -EBADF;
    rs__sock_leave(s, &c);
    return r;
}

EXPORT int rs_socket_open(rs_socket **out, int family, int type, int protocol)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    /* The fd is always O_NONBLOCK: the readiness backends need it, and io_uring (which ignores
     * it for socket operations) does not mind. The timeout mode lives in the object. */
    bool nonblock = type & SOCK_NONBLOCK;
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int fd = socket(family, base | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
    return rs__sock_wrap(out, fd, family, base, nonblock ? 0.0 : rs_getdefaulttimeout());
}

EXPORT int rs_socket_fd(const rs_socket *s) { return s && !atomic_load(&s->closed) ? s->fd : -EBADF; }
EXPORT int rs_socket_family(const rs_socket *s) { return s && !atomic_load(&s->closed) ? s->family : -EBADF; }
EXPORT int rs_socket_type(const rs_socket *s) { return s && !atomic_load(&s->closed) ? s->type : -EBADF; }

EXPORT int rs_settimeout(rs_socket *s, double seconds)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (!timeout_valid(seconds))
        return -EINVAL;
    atomic_store_explicit(&s->timeout, seconds, memory_order_relaxed);
    return 0;
}

EXPORT double rs_gettimeout(const rs_socket *s) { return s ? rs__sock_timeout(s) : NAN; }

int64_t rs__sock_deadline(const struct rs_socket *s)
{
    return rs__deadline_from_timeout(rs__sock_timeout(s));
}

void rs__sock_op(struct rs_op *op, const struct rs_socket *s, int kind, int64_t deadline)
{
    memset(op, 0, sizeof *op);
    op->kind = (uint8_t)kind;
    op->fd = s->fd;
    op->fdgen = s->id;
    op->deadline = deadline;
}

EXPORT int rs_bind(rs_socket *s, const struct sockaddr *sa, socklen_t len)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (!sa || len < sizeof(sa_family_t))
        return -EINVAL;
    /* bind(2) never blocks; there is nothing for a ring to wait on. */
    return bind(s->fd, sa, len) < 0 ? -errno : 0;
}

EXPORT int rs_listen(rs_socket *s, int backlog)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (backlog < 0)
        backlog = RS_DEFAULT_BACKLOG;
    return listen(s->fd, backlog) < 0 ? -errno : 0;
}

EXPORT int rs_connect(rs_socket *s, const struct sockaddr *sa, socklen_t len)
{
    if (!sa || len < sizeof(sa_family_t))
        return s ? -EINVAL : -EBADF;
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    struct rs_op op;
    rs__sock_op(&op, s, RS_OP_CONNECT, rs__sock_deadline(s));
    op.u.connect.sa = sa;
    op.u.connect.len = len;
    return rs__sock_run(s, &op);
}

EXPORT int rs_accept(rs_socket *s, rs_socket **conn, struct sockaddr_storage *peer, socklen_t *peerlen)
{
    if (!conn)
        return -EINVAL;
    *conn = NULL;
    if ((peer == NULL) != (peerlen == NULL))
        return s ? -EINVAL : -EBADF;
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    struct rs_op op;
    rs__sock_op(&op, s, RS_OP_ACCEPT, rs__sock_deadline(s));
    op.u.accept.sa = (struct sockaddr *)&ss;
    op.u.accept.len = &sslen;
    op.flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    int family = s->family, type = s->type;
    int fd = rs__sock_run(s, &op);
    if (fd < 0)
        return fd;
    if (peer) {
        socklen_t n = sslen < *peerlen ? sslen : *peerlen;
        memcpy(peer, &ss, n);
        *peerlen = sslen;
    }
    /* socket.py: a blocking default makes accepted sockets blocking even from a listener with a
     * timeout; otherwise they get the default timeout. */
    return rs__sock_wrap(conn, fd, family, type, rs_getdefaulttimeout());
}

static ssize_t io_op(rs_socket *s, int kind, void *buf, size_t len, int flags, int64_t deadline)
{
    if (!buf && len)
        return s ? -EFAULT : -EBADF;
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    struct rs_op op;
    /* MSG_DONTWAIT asks for this one call what timeout 0 asks for every call. */
    rs__sock_op(&op, s, kind, (flags & MSG_DONTWAIT) ? RS_DEADLINE_NOW : deadline);
    op.u.io.buf = buf;
    op.u.io.len = len > RS_MAX_IO ? RS_MAX_IO : len;
    op.flags = flags;
    return rs__sock_run(s, &op);
}

EXPORT ssize_t rs_send(rs_socket *s, const void *buf, size_t len, int flags)
{
    return io_op(s, RS_OP_SEND, (void *)(uintptr_t)buf, len, flags, s ? rs__sock_deadline(s) : 0);
}

EXPORT ssize_t rs_recv(rs_socket *s, void *buf, size_t len, int flags)
{
    return io_op(s, RS_OP_RECV, buf, len, flags, s ? rs__sock_deadline(s) : 0);
}

EXPORT ssize_t rs_sendall_ex(rs_socket *s, const void *buf, size_t len, int flags, size_t *sent)
{
    size_t done = 0;
    ssize_t r = 0;
    struct rs_call c;
    struct rs_loop *loop = NULL;
    if (!buf && len)
        r = s ? -EFAULT : -EBADF;
    else if (len > SSIZE_MAX)
        r = s ? -EINVAL : -EBADF;
    else
        r = rs__sock_enter(s, &c, &loop);
    if (r == 0) {
        /* One call from entry to return, sends and all: one reference held throughout (a close
         * from another thread cannot free s under us) and one deadline, as socket.py >= 3.5. */
        int64_t deadline = (flags & MSG_DONTWAIT) ? RS_DEADLINE_NOW : rs__sock_deadline(s);
        while (r >= 0 && done < len) {
            struct rs_op op;
            rs__sock_op(&op, s, RS_OP_SEND, deadline);
            op.u.io.buf = (char *)(uintptr_t)buf + done;
            op.u.io.len = len - done > RS_MAX_IO ? RS_MAX_IO : len - done;
            op.flags = flags;
            r = rs__loop_exec(loop, &op);
            if (r > 0)
                done += (size_t)r;
            else if (atomic_load(&s->closed))
                r = -EBADF; /* rs_close on another thread ended the wait */
        }
        rs__sock_leave(s, &c);
    }
    if (sent)
        *sent = done;
    return r < 0 ? r : (ssize_t)done;
}

EXPORT ssize_t rs_sendall(rs_socket *s, const void *buf, size_t len, int flags)
{
    return rs_sendall_ex(s, buf, len, flags, NULL);
}

EXPORT int rs_close(rs_socket *s)
{
    if (!s)
        return 0;
    atomic_bool *m = lock_of(s);
    lock(m);
    if (atomic_exchange(&s->closed, true)) {
        unlock(m);
        return -EBADF;
    }
    /* Calls in progress on other threads are asked to end: each one's loop cancels its
     * operation and the call returns -EBADF (or what it transferred); the last reference
     * closes the fd. Never shutdown(): the socket may be shared with another process (fork)
     * or another handle (dup), and an open rs_makefile file keeps it working, as socket.py's
     * _io_refs do. A child of fork() drops the references of its parent's calls. */
    unsigned stale = purge_stale(s);
    for (struct rs_call *c = s->calls; c; c = c->next) {
        atomic_store_explicit(&c->abort, true, memory_order_release);
        rs__loop_wake(c->loop);
    }
    unlock(m);
    atomic_fetch_sub(&s->refs, stale);
    rs__sock_drop(s);
    return 0;
}

static int sock_type_of(int fd, int *family, int *type)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    socklen_t tl = sizeof *type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &tl) < 0)
        return -errno;
    int dom = 0;
    socklen_t dl = sizeof dom;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0) {
        *family = dom;
        return 0;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    *family = ss.ss_family;
    return 0;
}

EXPORT int rs_socket_fromfd(rs_socket **out, int fd)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    int family = AF_UNSPEC, type = 0;
    int r = sock_type_of(fd, &family, &type);
    if (r < 0)
        return r;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    /* O_NONBLOCK lives on the open file description, shared with the caller's fd: the same
     * trade socket.fromfd makes when it applies a timeout. */
    int fl = fcntl(nfd, F_GETFL);
    if (fl < 0 || fcntl(nfd, F_SETFL, fl | O_NONBLOCK) < 0) {
        r = -errno;
        close(nfd);
        return r;
    }
    return rs__sock_wrap(out, nfd, family, type, rs_getdefaulttimeout());
}

EXPORT int rs_socketpair(rs_socket *out[2], int family, int type, int protocol)
{
    if (!out)
        return -EINVAL;
    out[0] = out[1] = NULL;
    if (family == AF_UNSPEC)
        family = AF_UNIX;
    bool nonblock = type & SOCK_NONBLOCK;
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (base == 0)
        base = SOCK_STREAM;
    int fds[2];
    if (socketpair(family, base | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol, fds) < 0)
        return -errno;
    double t = nonblock ? 0.0 : rs_getdefaulttimeout();
    int r = rs__sock_wrap(&out[0], fds[0], family, base, t);
    if (r < 0) {
        close(fds[1]);
        return r;
    }
    r = rs__sock_wrap(&out[1], fds[1], family, base, t);
    if (r < 0) {
        rs_close(out[0]);
        out[0] = NULL;
    }
    return r;
}

typedef int (*name_fn)(int, struct sockaddr *, socklen_t *);

static int get_name(const rs_socket *s, struct sockaddr_storage *addr, socklen_t *len, name_fn fn)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (!addr || !len)
        return -EINVAL;
    return fn(s->fd, (struct sockaddr *)addr, len) < 0 ? -errno : 0;
}

EXPORT int rs_getsockname(const rs_socket *s, struct sockaddr_storage *addr, socklen_t *len)
{
    return get_name(s, addr, len, getsockname);
}

EXPORT int rs_getpeername(const rs_socket *s, struct sockaddr_storage *addr, socklen_t *len)
{
    return get_name(s, addr, len, getpeername);
}

EXPORT int rs_setsockopt(rs_socket *s, int level, int name, const void *val, socklen_t len)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    return setsockopt(s->fd, level, name, val, len) < 0 ? -errno : 0;
}

EXPORT int rs_getsockopt(rs_socket *s, int level, int name, void *val, socklen_t *len)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (!val || !len)
        return -EINVAL;
    return getsockopt(s->fd, level, name, val, len) < 0 ? -errno : 0;
}

EXPORT int rs_shutdown(rs_socket *s, int how)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    return shutdown(s->fd, how) < 0 ? -errno : 0;
}

EXPORT ssize_t rs_send_fds(rs_socket *s, const void *buf, size_t len, const int *fds, size_t nfds, int flags)
{
    if ((!buf && len) || (!fds && nfds) || nfds > RS_MAX_FDS)
        return s ? -EINVAL : -EBADF;
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    union {
        char buf[CMSG_SPACE(RS_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len > RS_MAX_IO ? RS_MAX_IO : len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    struct rs_op op;
    rs__sock_op(&op, s, RS_OP_SENDMSG, (flags & MSG_DONTWAIT) ? RS_DEADLINE_NOW : rs__sock_deadline(s));
    op.u.msg = &msg;
    op.flags = flags;
    return rs__sock_run(s, &op);
}

EXPORT ssize_t rs_recv_fds(rs_socket *s, void *buf, size_t len, int *fds, size_t *nfds, int flags)
{
    if ((!buf && len) || !nfds || (!fds && *nfds) || *nfds > RS_MAX_FDS)
        return s ? -EINVAL : -EBADF;
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    union {
        char buf[CMSG_SPACE(RS_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    size_t cap = *nfds;
    *nfds = 0;
    struct iovec iov = { .iov_base = buf, .iov_len = len > RS_MAX_IO ? RS_MAX_IO : len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (cap) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(cap * sizeof(int));
    }
    struct rs_op op;
    rs__sock_op(&op, s, RS_OP_RECVMSG, (flags & MSG_DONTWAIT) ? RS_DEADLINE_NOW : rs__sock_deadline(s));
    op.u.msg = &msg;
    op.flags = flags | MSG_CMSG_CLOEXEC;
    int r = rs__sock_run(s, &op);
    if (r < 0)
        return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfds < cap)
                fds[(*nfds)++] = fd;
            else
                close(fd); /* cannot happen with one cmsg sized to cap; never leak one */
        }
    }
    return r;
}

/* ---- datagrams and general messages: sendto, recvfrom, sendmsg, recvmsg; detach ---------------- */

#ifndef IOV_MAX
#define IOV_MAX 1024 /* Linux's UIO_MAXIOV, for libcs that do not say */
#endif

/* One message operation on s: the same deadline rules as io_op. The backends hand msg to
 * sendmsg(2)/recvmsg(2) (or IORING_OP_SENDMSG/RECVMSG) as it is, so the kernel writes
 * msg_namelen and msg_flags back into the caller's msghdr on every backend. */
static ssize_t msg_op(rs_socket *s, int kind, struct msghdr *msg, int flags)
{
    if (!s || atomic_load(&s->closed))
        return -EBADF;
    struct rs_op op;
    rs__sock_op(&op, s, kind, (flags & MSG_DONTWAIT) ? RS_DEADLINE_NOW : rs__sock_deadline(s));
    op.u.msg = msg;
    op.flags = flags;
    return rs__sock_run(s, &op);
}

/* Refused here rather than by the kernel: the fault-injection layer walks msg_iov before any
 * syscall sees it, and a NULL buffer is -EFAULT as for rs_send. */
static int msg_check(const struct msghdr *msg)
{
    if (!msg || (size_t)msg->msg_iovlen > IOV_MAX)
        return -EINVAL;
    if (!msg->msg_iov && msg->msg_iovlen)
        return -EFAULT;
    for (size_t i = 0; i < (size_t)msg->msg_iovlen; i++)
        if (!msg->msg_iov[i].iov_base && msg->msg_iov[i].iov_len)
            return -EFAULT;
    return 0;
}

EXPORT ssize_t rs_sendto(rs_socket *s, const void *buf, size_t len, int flags, const struct sockaddr *to,
                         socklen_t tolen)
{
    if (!to)
        return rs_send(s, buf, len, flags);
    if (!buf && len)
        return s ? -EFAULT : -EBADF;
    if (tolen < sizeof(sa_family_t))
        return s ? -EINVAL : -EBADF;
    struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len > RS_MAX_IO ? RS_MAX_IO : len };
    struct msghdr msg = {
        .msg_name = (void *)(uintptr_t)to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1
    };
    return msg_op(s, RS_OP_SENDMSG, &msg, flags);
}

EXPORT ssize_t rs_recvfrom(rs_socket *s, void *buf, size_t len, int flags, struct sockaddr *from,
                           socklen_t *fromlen)
{
    if ((from == NULL) != (fromlen == NULL))
        return s ? -EINVAL : -EBADF;
    if (!from)
        return rs_recv(s, buf, len, flags);
    if (!buf && len)
        return s ? -EFAULT : -EBADF;
    struct iovec iov = { .iov_base = buf, .iov_len = len > RS_MAX_IO ? RS_MAX_IO : len };
    /* The kernel copies at most *fromlen bytes of the address and stores its full length. */
    struct msghdr msg = { .msg_name = from, .msg_namelen = *fromlen, .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r = msg_op(s, RS_OP_RECVMSG, &msg, flags);
    if (r >= 0)
        *fromlen = msg.msg_namelen;
    return r;
}

EXPORT ssize_t rs_sendmsg(rs_socket *s, const struct msghdr *msg, int flags)
{
    int r = msg_check(msg);
    if (r < 0)
        return s ? r : -EBADF;
    if (msg->msg_name && msg->msg_namelen && msg->msg_namelen < sizeof(sa_family_t))
        return s ? -EINVAL : -EBADF;
    /* sendmsg(2) only reads the msghdr; the kernel caps the iovecs' total at RS_MAX_IO itself. */
    return msg_op(s, RS_OP_SENDMSG, (struct msghdr *)(uintptr_t)msg, flags);
}

EXPORT ssize_t rs_recvmsg(rs_socket *s, struct msghdr *msg, int flags)
{
    int r = msg_check(msg);
    if (r < 0)
        return s ? r : -EBADF;
    /* as rs_recv_fds: descriptors that arrive must not leak into a child's exec */
    ssize_t n = msg_op(s, RS_OP_RECVMSG, msg, flags | MSG_CMSG_CLOEXEC);
    /* recvmsg(2) echoes MSG_CMSG_CLOEXEC into msg_flags: show only what the caller asked for */
    if (n >= 0 && !(flags & MSG_CMSG_CLOEXEC))
        msg->msg_flags &= ~MSG_CMSG_CLOEXEC;
    return n;
}

EXPORT int rs_detach(rs_socket *s)
{
    if (!s)
        return -EBADF;
    /* read before the detach frees s */
    bool blocking = rs__sock_timeout(s) == RS_TIMEOUT_NONE;
    int fd = rs__sock_detach(s);
    if (fd >= 0 && blocking) {
        /* The object kept the fd O_NONBLOCK for the backends; socket.py hands out a blocking
         * fd when the timeout is None, and the caller's plain read/send expect one. */
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return fd;
}
