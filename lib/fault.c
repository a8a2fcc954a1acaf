/* The injected-fault layer (test builds only, -Dfault_injection=true): parses the rules of
 * RINGSOCK_FAULT / rs__fault_set and decides, at each hook the engine calls, whether this call
 * fails, comes back short or finds the ring full. Faults are injected where no byte can be lost:
 * errors replace the operation (nothing is issued), short transfers are clamped before the
 * syscall or SQE. See fault_i.h for the rule syntax. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifdef RS_HAVE_URING
#include <liburing.h>
#endif

#include "ringsock/loop.h"
#include "backend/ready_i.h"
#include "fault_i.h"
#include "loop_i.h"

enum site {
    S_SEND,
    S_RECV,
    S_ACCEPT,
    S_WAIT,
    S_SQE,
    S_RING,
    S_REGBUF,
    S_KERNEL,
    S__COUNT
};
enum fault {
    F_EINTR,
    F_EAGAIN,
    F_SHORT,
    F_ENOMEM,
    F_ECONNRESET,
    F_EPIPE,
    F_ENOBUFS,
    F_EMFILE,
    F_FULL,
    F_TINY,
    F_FAIL,
    F_NOMULTISHOT,
    F__COUNT
};

static const char *const site_names[S__COUNT] = { "send", "recv", "accept", "wait",
                                                  "sqe",  "ring", "regbuf", "kernel" };
static const char *const fault_names[F__COUNT] = { "eintr",      "eagain", "short",   "enomem",
                                                   "econnreset", "epipe",  "enobufs", "emfile",
                                                   "full",       "tiny",   "fail",    "nomultishot" };
static const int fault_errno[F__COUNT] = { EINTR, EAGAIN, 0, ENOMEM, ECONNRESET, EPIPE, ENOBUFS, EMFILE };

/* Which faults each site takes (bit per enum fault). */
#define B(f) (1u << (f))
static const unsigned allowed[S__COUNT] = {
    [S_SEND] = B(F_EINTR) | B(F_EAGAIN) | B(F_SHORT) | B(F_ENOMEM) | B(F_ECONNRESET) | B(F_EPIPE),
    [S_RECV] = B(F_EINTR) | B(F_EAGAIN) | B(F_SHORT) | B(F_ENOMEM) | B(F_ECONNRESET) | B(F_ENOBUFS),
    [S_ACCEPT] = B(F_EINTR) | B(F_EAGAIN) | B(F_ENOMEM) | B(F_EMFILE) | B(F_ENOBUFS),
    [S_WAIT] = B(F_EINTR) | B(F_ENOMEM),
    [S_SQE] = B(F_FULL),
    [S_RING] = B(F_TINY),
    [S_REGBUF] = B(F_FAIL),
    [S_KERNEL] = B(F_NOMULTISHOT),
};
/* Faults the engine must absorb by trying again: "every call" would never complete. */
#define RETRIED (B(F_EINTR) | B(F_EAGAIN) | B(F_FULL))

enum when {
    W_EVERY,
    W_PROB,
    W_FIRST
};

struct rule {
    uint8_t site, fault, when;
    unsigned long n, m;
    unsigned long calls, injected;
};

#define MAX_RULES 16

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static unsigned nrules;
static uint64_t rng = 1;
static char *env_seen; /* the RINGSOCK_FAULT value the rules came from (NULL: none read yet) */
static bool env_read;
static unsigned long cq_overflows; /* io_uring: overflow seen (rs__fault_cq_overflows) */

static __thread bool in_try;    /* rs__fault_try is making the clamped call itself */
static __thread bool kick_owed; /* an EAGAIN was injected on a readiness backend */

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int parse_num(const char *s, size_t len, unsigned long *out)
{
    if (len == 0 || len > 9)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int lookup(const char *const *names, int count, const char *s, size_t len)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

static int bad(const char *rule, size_t len, const char *why)
{
    fprintf(stderr, "ringsock: RINGSOCK_FAULT: \"%.*s\": %s\n", (int)len, rule, why);
    return -EINVAL;
}

/* One rule of the spec (not NUL-terminated) into *r, or -EINVAL with the reason on stderr. */
static int parse_rule(const char *s, size_t len, struct rule *r, uint64_t *seed)
{
    if (len > 5 && memcmp(s, "seed=", 5) == 0) {
        unsigned long v;
        if (parse_num(s + 5, len - 5, &v) < 0 || v == 0)
            return bad(s, len, "seed must be a number from 1 to 999999999");
        *seed = v;
        return 1; /* not a rule */
    }
    const char *colon = memchr(s, ':', len);
    if (!colon)
        return bad(s, len, "expected SITE:FAULT[=WHEN] or seed=N");
    int site = lookup(site_names, S__COUNT, s, (size_t)(colon - s));
    if (site < 0)
        return bad(s, len, "unknown site (send, recv, accept, wait, sqe, ring, regbuf)");
    const char *f = colon + 1, *end = s + len;
    const char *eq = memchr(f, '=', (size_t)(end - f));
    int fault = lookup(fault_names, F__COUNT, f, (size_t)((eq ? eq : end) - f));
    if (fault < 0)
        return bad(s, len,
                   "unknown fault (eintr, eagain, short, enomem, econnreset, epipe, enobufs, emfile, full, "
                   "tiny, fail)");
    if (!(allowed[site] & B(fault)))
        return bad(s, len, "this site cannot have this fault (see lib/fault_i.h for the pairs)");
    memset(r, 0, sizeof *r);
    r->site = (uint8_t)site;
    r->fault = (uint8_t)fault;
    r->when = W_EVERY;
    r->n = 1;
    if (eq) {
        const char *w = eq + 1;
        size_t wl = (size_t)(end - w);
        const char *slash = memchr(w, '/', wl);
        if (wl > 5 && memcmp(w, "first", 5) == 0) {
            r->when = W_FIRST;
            if (parse_num(w + 5, wl - 5, &r->n) < 0 || r->n == 0)
                return bad(s, len, "firstN needs N >= 1");
        } else if (slash) {
            r->when = W_PROB;
            if (parse_num(w, (size_t)(slash - w), &r->n) < 0 ||
                parse_num(slash + 1, (size_t)(end - slash - 1), &r->m) < 0 || r->n == 0 || r->m == 0 ||
                r->n > r->m)
                return bad(s, len, "N/M needs 1 <= N <= M");
        } else if (parse_num(w, wl, &r->n) < 0 || r->n == 0) {
            return bad(s, len, "WHEN is N (every Nth call, N >= 1), N/M (probability) or firstN");
        }
    }
    bool always = (r->when == W_EVERY && r->n == 1) || (r->when == W_PROB && r->n == r->m);
    if (always && (RETRIED & B(fault)))
        return bad(s, len,
                   "on every call this fault would never let the operation complete: use N >= 2, N/M < 1 "
                   "or firstN");
    return 0;
}

int rs__fault_set(const char *spec)
{
    struct rule nr[MAX_RULES];
    unsigned n = 0;
    uint64_t seed = 1;
    const char *p = spec ? spec : "";
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return bad(p, 1, "empty rule");
        if (n == MAX_RULES)
            return bad(p, len, "more than 16 rules");
        int r = parse_rule(p, len, &nr[n], &seed);
        if (r < 0)
            return r;
        if (r == 0)
            n++;
        p += len;
        if (*p == ',' && !*++p)
            return bad(p - 1, 1, "empty rule after the last comma");
    }
    pthread_mutex_lock(&mu);
    memcpy(rules, nr, n * sizeof nr[0]);
    nrules = n;
    rng = seed;
    cq_overflows = 0;
    pthread_mutex_unlock(&mu);
    return 0;
}

unsigned long rs__fault_count(const char *site, const char *fault)
{
    int s = lookup(site_names, S__COUNT, site, strlen(site));
    int f = lookup(fault_names, F__COUNT, fault, strlen(fault));
    unsigned long n = 0;
    pthread_mutex_lock(&mu);
    for (unsigned i = 0; i < nrules; i++)
        if (rules[i].site == s && rules[i].fault == f)
            n += rules[i].injected;
    pthread_mutex_unlock(&mu);
    return n;
}

/* An eligible call at site for fault: does the fault hit it? */
static bool hit(int site, int fault)
{
    bool yes = false;
    pthread_mutex_lock(&mu);
    for (unsigned i = 0; i < nrules && !yes; i++) {
        struct rule *r = &rules[i];
        if (r->site != site || r->fault != fault)
            continue;
        r->calls++;
        switch (r->when) {
        case W_EVERY: yes = r->calls % r->n == 0; break;
        case W_FIRST: yes = r->calls <= r->n; break;
        default: yes = next_rand() % r->m < r->n; break;
        }
        if (yes)
            r->injected++;
    }
    pthread_mutex_unlock(&mu);
    return yes;
}

/* A length in 1..len-1 for a short transfer (len >= 2). */
static size_t short_len(size_t len)
{
    pthread_mutex_lock(&mu);
    size_t n = 1 + (size_t)(next_rand() % (len - 1));
    pthread_mutex_unlock(&mu);
    return n;
}

static int site_of(const struct rs_op *op)
{
    switch (op->kind) {
    case RS_OP_SEND:
    case RS_OP_SENDMSG:
    case RS_OP_WRITE_FIXED:
    case RS_OP_SENDFILE: return S_SEND;
    case RS_OP_RECV:
    case RS_OP_RECVMSG:
    case RS_OP_READ_FIXED: return S_RECV;
    case RS_OP_ACCEPT: return S_ACCEPT;
    case RS_OP_SPLICE: /* only into the socket, and only as a non-blocking syscall (rs__fault_try) */
        return op->u.splice.fd_out == op->fd ? S_SEND : -1;
    default: return -1;
    }
}

int rs__fault_loop_new(const struct rs_loop_opts **opts, struct rs_loop_opts *copy)
{
    const char *env = getenv("RINGSOCK_FAULT");
    pthread_mutex_lock(&mu);
    bool changed = !env_read || (env == NULL) != (env_seen == NULL) || (env && strcmp(env, env_seen) != 0);
    pthread_mutex_unlock(&mu);
    if (changed) {
        /* a bad value fails every loop creation until it is fixed, never runs without faults */
        int r = rs__fault_set(env);
        if (r < 0)
            return r;
        pthread_mutex_lock(&mu);
        free(env_seen);
        env_seen = env ? strdup(env) : NULL;
        env_read = true;
        pthread_mutex_unlock(&mu);
    }
    if (hit(S_RING, F_TINY)) {
        *copy = **opts;
        copy->entries = 2; /* the CQ ring gets 4x: 8 entries, which a busy loop overflows */
        *opts = copy;
    }
    return 0;
}

bool rs__fault_submit(struct rs_loop *loop, struct rs_op *op)
{
    int site = site_of(op);
    if (site < 0 || op->kind == RS_OP_SPLICE || op->link)
        return false; /* a link chain must not lose a member: the next SQE would join it */
    static const uint8_t errs[] = { F_ENOMEM, F_ECONNRESET, F_EPIPE, F_EMFILE };
    for (size_t i = 0; i < sizeof errs; i++) {
        if ((allowed[site] & B(errs[i])) && hit(site, errs[i])) {
            rs__loop_defer(loop, op, -fault_errno[errs[i]]);
            return true;
        }
    }
    return false;
}

/* Shorten msg's data to at most n bytes in copy/iov (msg untouched). false if it cannot. */
static bool clamp_msg(const struct msghdr *msg, size_t n, struct msghdr *copy, struct iovec *iov, size_t cap)
{
    if (msg->msg_iovlen == 0 || msg->msg_iovlen > cap)
        return false;
    *copy = *msg;
    size_t k = 0;
    for (; k < msg->msg_iovlen && n > 0; k++) {
        iov[k] = msg->msg_iov[k];
        if (iov[k].iov_len > n)
            iov[k].iov_len = n;
        n -= iov[k].iov_len;
    }
    copy->msg_iov = iov;
    copy->msg_iovlen = k;
    return k > 0;
}

static size_t op_len(const struct rs_op *op)
{
    switch (op->kind) {
    case RS_OP_SENDMSG:
    case RS_OP_RECVMSG: {
        size_t n = 0;
        for (size_t i = 0; i < op->u.msg->msg_iovlen; i++)
            n += op->u.msg->msg_iov[i].iov_len;
        return n;
    }
    case RS_OP_SENDFILE:
    case RS_OP_SPLICE: return op->u.splice.len;
    case RS_OP_ACCEPT: return 0;
    default: return op->u.io.len;
    }
}

#define MAX_IOV 64 /* iovecs a clamped msghdr copy holds (async.c gathers at most 64) */

/* Can op's transfer be made short without breaking a promise (MSG_WAITALL means "all of it")?
 * Checked before the fault is counted, so that every count is a fault that happened. */
static bool can_short(const struct rs_op *op)
{
    if ((op->kind == RS_OP_SENDMSG || op->kind == RS_OP_RECVMSG) &&
        (op->u.msg->msg_iovlen == 0 || op->u.msg->msg_iovlen > MAX_IOV))
        return false;
    if (op->kind == RS_OP_ACCEPT || (op->flags & MSG_WAITALL) || op_len(op) < 2)
        return false;
    /* a shorter datagram is a different datagram (or one cut short), not a short transfer */
    int type = SOCK_STREAM;
    socklen_t tl = sizeof type;
    if (op->kind != RS_OP_SPLICE && op->kind != RS_OP_SENDFILE && op->kind != RS_OP_READ)
        getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &tl);
    return type == SOCK_STREAM;
}

bool rs__fault_try(struct rs_op *op, short *events, ssize_t *r)
{
    int site = site_of(op);
    if (in_try || site < 0 || op->kind == RS_OP_CONNECT)
        return false;
    if (hit(site, F_EINTR)) {
        *r = -1;
        errno = EINTR;
        return true;
    }
    if (hit(site, F_EAGAIN)) {
        rs__op_try_events(op, events);
        kick_owed = true;
        *r = -1;
        errno = EAGAIN;
        return true;
    }
    if (!can_short(op) || !hit(site, F_SHORT))
        return false;
    /* Make the call ourselves with a smaller length, then put the op back as it was. */
    size_t n = short_len(op_len(op));
    int res;
    in_try = true;
    if (op->kind == RS_OP_SENDMSG || op->kind == RS_OP_RECVMSG) {
        struct msghdr *orig = op->u.msg, copy;
        struct iovec iov[MAX_IOV];
        if (!clamp_msg(orig, n, &copy, iov, MAX_IOV)) {
            in_try = false;
            return false;
        }
        op->u.msg = &copy;
        res = rs__op_try(op, events);
        op->u.msg = orig;
        /* what recvmsg(2) wrote into the copy is the caller's answer */
        orig->msg_namelen = copy.msg_namelen;
        orig->msg_controllen = copy.msg_controllen;
        orig->msg_flags = copy.msg_flags;
    } else if (op->kind == RS_OP_SENDFILE || op->kind == RS_OP_SPLICE) {
        size_t len = op->u.splice.len;
        op->u.splice.len = n;
        res = rs__op_try(op, events);
        op->u.splice.len = len;
    } else {
        size_t len = op->u.io.len;
        op->u.io.len = n;
        res = rs__op_try(op, events);
        op->u.io.len = len;
    }
    in_try = false;
    if (res < 0) {
        errno = -res;
        *r = -1;
    } else {
        *r = res;
    }
    return true;
}

int rs__fault_kick(struct ready *r)
{
    if (!kick_owed)
        return 0;
    kick_owed = false;
    int n = 0;
    /* r->fds may move (a callback submits on a new fd): index it afresh every time */
    for (size_t fd = 0; fd < r->nfds; fd++)
        if (r->fds[fd].rhead || r->fds[fd].whead)
            n += rs__ready_event(r, (int)fd, POLLIN | POLLOUT);
    return n;
}

_Thread_local int rs__fault_wait_res;

bool rs__fault_wait(void)
{
    if (hit(S_WAIT, F_EINTR))
        rs__fault_wait_res = -EINTR;
    else if (hit(S_WAIT, F_ENOMEM))
        rs__fault_wait_res = -ENOMEM;
    else
        return false;
    return true;
}

bool rs__fault_regbuf(void) { return hit(S_REGBUF, F_FAIL); }

/* ---- io_uring: SQ full, injected completions, clamped SQEs ---- */

/* What the layer keeps for an op in flight on io_uring until it completes. */
struct pend {
    struct rs_op *op;
    int res; /* the error its NOP stands for */
    bool has_res;
    struct msghdr *msg; /* clamped copy the SQE points at (the iovecs follow it), or NULL */
};
#define MAX_PEND 256
static struct pend pend[MAX_PEND];
static unsigned npend;

static struct pend *pend_find(struct rs_op *op, bool create)
{
    struct pend *free_slot = NULL;
    for (unsigned i = 0; i < MAX_PEND; i++) {
        if (pend[i].op == op)
            return &pend[i];
        if (!pend[i].op && !free_slot)
            free_slot = &pend[i];
    }
    if (!create || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->op = op;
    npend++;
    return free_slot;
}

static void pend_drop(struct pend *p)
{
    free(p->msg);
    memset(p, 0, sizeof *p);
    npend--;
}

void rs__fault_op_done(struct rs_op *op)
{
    pthread_mutex_lock(&mu);
    struct pend *p = npend ? pend_find(op, false) : NULL;
    if (p)
        pend_drop(p);
    pthread_mutex_unlock(&mu);
}

#ifdef RS_HAVE_URING
/* The SQE about to be filled would join a link chain (the one before it links forward). */
static bool mid_chain(struct io_uring *ring)
{
    unsigned queued = ring->sq.sqe_tail - ring->sq.sqe_head;
    if (queued == 0)
        return false;
    struct io_uring_sqe *prev = &ring->sq.sqes[(ring->sq.sqe_tail - 1) & ring->sq.ring_mask];
    return prev->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
}

unsigned long rs__fault_cq_overflows(void)
{
    pthread_mutex_lock(&mu);
    unsigned long n = cq_overflows;
    pthread_mutex_unlock(&mu);
    return n;
}

bool rs__fault_sq_full(struct io_uring *ring)
{
    /* Seen between completions (callbacks queue new SQEs): the kernel is holding completions the
     * CQ ring had no room for, which the engine must still reap (ring:tiny makes it happen). */
    if (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_CQ_OVERFLOW) {
        pthread_mutex_lock(&mu);
        cq_overflows++;
        pthread_mutex_unlock(&mu);
    }
    /* Only when there is something to flush and no chain is open: that is when a real full SQ
     * happens to a correct engine, which then submits what is queued and takes a fresh entry. */
    if (ring->sq.sqe_tail == ring->sq.sqe_head || mid_chain(ring))
        return false;
    return hit(S_SQE, F_FULL);
}

void rs__fault_sqe(struct io_uring *ring, struct rs_op *op, struct io_uring_sqe *sqe)
{
    /* A kernel before 5.19 (accept) / 6.0 (recv) refuses the multishot flag in ioprio with
     * -EINVAL; so does this one for an ioprio bit it does not know (bit 15). */
    if (op->multishot && (sqe->ioprio & (IORING_ACCEPT_MULTISHOT | IORING_RECV_MULTISHOT)) &&
        hit(S_KERNEL, F_NOMULTISHOT)) {
        sqe->ioprio |= 0x8000;
        return;
    }
    int site = site_of(op);
    if (site < 0 || op->link || op->kind == RS_OP_SPLICE || op->kind == RS_OP_SENDFILE || op->zc)
        return;
    /* sqe is already taken: the one before it is at tail - 2 */
    unsigned queued = ring->sq.sqe_tail - ring->sq.sqe_head;
    if (queued >= 2 && (ring->sq.sqes[(ring->sq.sqe_tail - 2) & ring->sq.ring_mask].flags & IOSQE_IO_LINK))
        return;
    int err = 0;
    if (op->multishot) {
        if (hit(site, F_ENOBUFS))
            err = -ENOBUFS; /* RECV: the buffer ring ran dry; ACCEPT: no memory. Nothing taken */
    } else if (hit(site, F_EINTR)) {
        err = -EINTR;
    } else if (hit(site, F_EAGAIN)) {
        err = -EAGAIN;
    }
    if (err) {
        /* A NOP in its place: a real completion, through the real CQE path, with nothing done. */
        pthread_mutex_lock(&mu);
        struct pend *p = pend_find(op, true);
        if (p) {
            p->res = err;
            p->has_res = true;
        }
        pthread_mutex_unlock(&mu);
        if (p)
            io_uring_prep_nop(sqe);
        return;
    }
    if (op->multishot || !can_short(op) || !hit(site, F_SHORT))
        return;
    size_t n = short_len(op_len(op));
    if (op->kind != RS_OP_SENDMSG && op->kind != RS_OP_RECVMSG) {
        sqe->len = (unsigned)n < sqe->len ? (unsigned)n : sqe->len;
        return;
    }
    /* The kernel reads the msghdr when the SQE is submitted, later: point it at a clamped copy
     * that lives until the op completes (rs__fault_op_done). */
    size_t cap = op->u.msg->msg_iovlen;
    struct msghdr *m = malloc(sizeof *m + cap * sizeof(struct iovec));
    if (!m)
        return;
    struct iovec *iov = (struct iovec *)(m + 1);
    struct msghdr copy;
    if (!clamp_msg(op->u.msg, n, &copy, iov, cap)) {
        free(m);
        return;
    }
    *m = copy;
    m->msg_iov = iov;
    pthread_mutex_lock(&mu);
    struct pend *p = pend_find(op, true);
    if (p) {
        free(p->msg); /* a reissue after EAGAIN: the new copy replaces the old one */
        p->msg = m;
    }
    pthread_mutex_unlock(&mu);
    if (!p) {
        free(m);
        return;
    }
    sqe->addr = (unsigned long)m;
}

int rs__fault_cqe(struct rs_op *op, int res)
{
    pthread_mutex_lock(&mu);
    struct pend *p = npend ? pend_find(op, false) : NULL;
    if (p && p->has_res) {
        res = p->res;
        p->has_res = false;
        if (!p->msg)
            pend_drop(p);
    }
    pthread_mutex_unlock(&mu);
    return res;
}
#else
unsigned long rs__fault_cq_overflows(void) { return 0; }

bool rs__fault_sq_full(struct io_uring *ring)
{
    (void)ring;
    return false;
}

void rs__fault_sqe(struct io_uring *ring, struct rs_op *op, struct io_uring_sqe *sqe)
{
    (void)ring;
    (void)op;
    (void)sqe;
}

int rs__fault_cqe(struct rs_op *op, int res)
{
    (void)op;
    return res;
}
#endif
