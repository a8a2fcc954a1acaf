/* The io_uring backend (liburing): every operation is one SQE, a deadline is a linked
 * LINK_TIMEOUT SQE, and a blocking call is one io_uring_enter that submits and waits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "../fault_i.h"

/* user_data of SQEs whose completions carry no news (link timeouts, cancel requests). */
#define UD_IGNORE 0
/* user_data of the read of the loop's wake-up eventfd, always armed (rs__loop_wake) */
#define UD_WAKE 1

static const int needed_ops[] = {
    IORING_OP_CONNECT,      IORING_OP_ACCEPT,          IORING_OP_SEND,       IORING_OP_RECV,
    IORING_OP_SENDMSG,      IORING_OP_RECVMSG,         IORING_OP_TIMEOUT,    IORING_OP_LINK_TIMEOUT,
    IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD,        IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED,
    IORING_OP_SPLICE,       IORING_OP_PROVIDE_BUFFERS, IORING_OP_READ,
};

/* The probe's answer once it is definitive; until then every caller probes again. A failure
 * such as EMFILE, ENFILE, ENOMEM or EAGAIN says this moment was short of something, not that
 * io_uring is unusable: caching it would leave the whole process on epoll for good. */
static pthread_mutex_t probe_mu = PTHREAD_MUTEX_INITIALIZER;
static bool probe_known;
static int probe_known_result;

/* 0 or -errno; *final says whether the answer holds for the life of the process. */
static int probe(bool *final)
{
    *final = true;
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        int v = 0;
        if (fscanf(f, "%d", &v) == 1 && v == 2) {
            fclose(f);
            return -EPERM;
        }
        fclose(f);
    }
    /* 1 means "only for io_uring_group": setup below tells whether we are in it. */
    struct io_uring ring;
    int r = io_uring_queue_init(4, &ring, 0);
    if (r < 0) {
        /* no kernel support, or not allowed (seccomp, io_uring_group): that will not change */
        *final = r == -ENOSYS || r == -EPERM;
        return r;
    }
    /* io_uring_get_probe_ring would say NULL both for a kernel without the probe (before 5.6,
     * which lacks needed opcodes too: final) and for a failed allocation (not final) */
    size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *p = calloc(1, len);
    if (!p) {
        r = -ENOMEM;
        *final = false;
    } else {
        r = io_uring_register_probe(&ring, p, 256);
        if (r < 0) {
            *final = r == -EINVAL || r == -EOPNOTSUPP;
            r = *final ? -EOPNOTSUPP : r;
        } else {
            r = 0;
            for (size_t i = 0; i < sizeof needed_ops / sizeof needed_ops[0]; i++)
                if (!io_uring_opcode_supported(p, needed_ops[i]))
                    r = -EOPNOTSUPP;
        }
        free(p);
    }
    io_uring_queue_exit(&ring);
    return r;
}

struct probe_run {
    int result;
    bool final;
};

static void *probe_thread(void *arg)
{
    struct probe_run *run = arg;
    run->result = probe(&run->final);
    return NULL;
}

/* The probe ring is made and destroyed on a thread of its own: the kernel tears a ring down
 * asynchronously and then interrupts every task that had it (task work with TWA_SIGNAL), which a
 * caller's blocking syscall with SO_RCVTIMEO sees as a spurious EINTR, seconds later under load.
 * A thread that has exited cannot be interrupted. */
static void probe_on_thread(struct probe_run *run)
{
    pthread_t t;
    if (pthread_create(&t, NULL, probe_thread, run) != 0 || pthread_join(t, NULL) != 0)
        run->result = probe(&run->final); /* no thread to spare: probe here, with the caveat above */
}

int rs__uring_probe(void)
{
    /* Held across the probe: concurrent first loops wait for one answer instead of each making a
     * ring. pthread_join under it is safe: the probe thread never takes it. */
    pthread_mutex_lock(&probe_mu);
    if (!probe_known) {
        struct probe_run run = { 0, false };
        probe_on_thread(&run);
        if (run.final) {
            probe_known_result = run.result;
            probe_known = true;
        }
        pthread_mutex_unlock(&probe_mu);
        return run.result;
    }
    int r = probe_known_result;
    pthread_mutex_unlock(&probe_mu);
    return r;
}

/* Provided-buffer rings for multishot receives. A ring cannot be resized, so under pressure
 * (receives keep finding it empty) a ring twice the size is registered as the next buffer group
 * and new receives draw from it; the older rings are retired: their buffers are not put back, so
 * receives still armed on them run dry, end with -ENOBUFS and re-arm on the new one. Buffer ids
 * are unique across generations (a CQE names the buffer, not its group). */
#define MAX_GENS 6
/* -ENOBUFS endings (not caused by kept buffers) after which the ring grows */
#define GROW_AFTER 32

struct bufgen {
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *bufs;
    size_t bufs_bytes;
    unsigned nbufs, first_bid;
    unsigned kept; /* lent to rs_conn_read_keep */
};

struct uring_be {
    struct io_uring ring;
    struct bufgen gen[MAX_GENS]; /* none until the first multishot receive; the last is current */
    unsigned ngen, bufsz, nbufs_max, enobufs;
    bool has_zc; /* SEND_ZC and SENDMSG_ZC (6.0 / 6.1) */
    /* Multishot ACCEPT (5.19) and multishot RECV on a buffer ring (6.0). Without them the same
     * ops run as single-shot operations re-armed after each result (RECV into a buffer of the
     * op's own), with the same callbacks: slower, never different. No probe bit exists for
     * them, so the operation itself is the probe (as liburing's tests do): assumed until a
     * kernel refuses the flag with -EINVAL, which the op then retries single-shot; the retry
     * tells a refused flag from the op's own -EINVAL (ms_*_known: settled either way).
     * RINGSOCK_URING_LEGACY=1 forces the single-shot path (how it is tested on a new kernel);
     * the fault rule kernel:nomultishot makes this kernel refuse the flag as an old one does. */
    bool ms_accept, ms_recv, ms_accept_known, ms_recv_known;
    unsigned features; /* RS_FEAT_* granted, but the multishot bits (uring_features) */
    /* buffers lent past their delivery (rs_conn_read_keep), and the multishot receives that
     * found the ring empty because of them: re-armed at a release, not on a timer or at once
     * (that would spin on -ENOBUFS while the buffers stay out) */
    bool keep_now; /* the delivery in progress is being kept */
    struct rs_op *starved;
    uint64_t wakebuf; /* the wake-up read's 8 bytes */
};

static struct io_uring *ring_of(struct rs_engine *loop) { return &((struct uring_be *)loop->be)->ring; }

static struct io_uring_sqe *get_sqe(struct io_uring *ring);

/* The read of the wake-up eventfd: completes when another thread writes it, ending our wait. */
static void arm_wake(struct rs_engine *loop)
{
    struct uring_be *be = loop->be;
    struct io_uring_sqe *sqe = get_sqe(&be->ring);
    if (!sqe)
        return; /* cannot happen after a submit made room; a wake-up then waits for our next turn */
    io_uring_prep_read(sqe, loop->wakefd, &be->wakebuf, sizeof be->wakebuf, 0);
    io_uring_sqe_set_data64(sqe, UD_WAKE);
}

/* The kernel's IORING_MAX_CQ_ENTRIES. */
#define MAX_CQ 65536u

/* 4 CQ entries per SQ entry, as far as the kernel allows: past 16384 SQ entries the CQ ring is
 * 65536, still at least twice the SQ ring (the kernel wants no less than one). */
static unsigned cq_size(unsigned entries) { return entries > MAX_CQ / 4 ? MAX_CQ : entries * 4; }

static int uring_init(struct rs_engine *loop, unsigned entries, unsigned flags)
{
    int r = rs__uring_probe();
    if (r < 0)
        return r;
    struct uring_be *be = calloc(1, sizeof *be);
    if (!be)
        return -ENOMEM;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    if (flags & RS_LOOP_SQPOLL) {
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 50;
    } else {
        /* A loop has one thread: SINGLE_ISSUER + DEFER_TASKRUN run completion work only when we
         * wait, in our context, instead of interrupting us with task work. */
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    }
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = cq_size(entries);
    r = io_uring_queue_init_params(entries, &be->ring, &p);
    if (r == -EINVAL && (p.flags & IORING_SETUP_DEFER_TASKRUN)) {
        /* older kernel (< 6.1): fall back to cooperative task work */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_size(entries);
        r = io_uring_queue_init_params(entries, &be->ring, &p);
    }
    if (r < 0) {
        free(be);
        return r;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&be->ring);
    if (probe) {
        be->has_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) &&
                     io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
        io_uring_free_probe(probe);
    }
    const char *legacy = getenv("RINGSOCK_URING_LEGACY");
    bool force_legacy = legacy && *legacy && strcmp(legacy, "0") != 0;
    be->ms_accept = be->ms_recv = !force_legacy;
    be->ms_accept_known = be->ms_recv_known = force_legacy;
    unsigned f = 0;
    if (p.flags & IORING_SETUP_DEFER_TASKRUN)
        f |= RS_FEAT_DEFER_TASKRUN;
    if (p.flags & IORING_SETUP_COOP_TASKRUN)
        f |= RS_FEAT_COOP_TASKRUN;
    if (p.flags & IORING_SETUP_SQPOLL)
        f |= RS_FEAT_SQPOLL;
    if (p.features & IORING_FEAT_NODROP)
        f |= RS_FEAT_CQ_NODROP;
    if (be->has_zc)
        f |= RS_FEAT_SEND_ZC;
    be->features = f | RS_FEAT_FIXED_BUFFERS | RS_FEAT_LINK_TIMEOUT;
    /* The ring fd registered: each io_uring_enter then skips the fd table lookup. Registered
     * ring fds are per task; a DEFER_TASKRUN ring is bound to its creator's task anyway. */
    if (p.flags & IORING_SETUP_DEFER_TASKRUN)
        (void)io_uring_register_ring_fd(&be->ring);
    /* without EXT_ARG liburing would add a TIMEOUT SQE of its own (user_data -1) to each such
     * wait: keep the LINK_TIMEOUT per op there */
    loop->deadline_wait = (p.features & IORING_FEAT_EXT_ARG) != 0;
    loop->be = be;
    /* queued only: it goes to the kernel with the loop's first submission, at no extra cost */
    arm_wake(loop);
    return 0;
}

/* Add a generation of n buffers (liburing 2.3 has no io_uring_setup_buf_ring: map the ring
 * ourselves and register it). */
static int add_gen(struct uring_be *be, unsigned n)
{
    if (be->ngen == MAX_GENS)
        return -ENOSPC;
    struct bufgen *g = &be->gen[be->ngen];
    unsigned first = be->ngen ? be->gen[be->ngen - 1].first_bid + be->gen[be->ngen - 1].nbufs : 0;
    if (first + n > 65536)
        return -ENOSPC; /* buffer ids are 16 bits */
    memset(g, 0, sizeof *g);
    g->nbufs = n;
    g->first_bid = first;
    g->br_bytes = n * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, g->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED)
        return -ENOMEM;
    g->bufs_bytes = (size_t)n * be->bufsz;
    g->bufs = mmap(NULL, g->bufs_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (g->bufs == MAP_FAILED) {
        munmap(br, g->br_bytes);
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br,
                                    .ring_entries = n,
                                    .bgid = (__u16)be->ngen };
    int r = io_uring_register_buf_ring(&be->ring, &reg, 0);
    if (r < 0) {
        munmap(br, g->br_bytes);
        munmap(g->bufs, g->bufs_bytes);
        return r;
    }
    g->br = br;
    io_uring_buf_ring_init(g->br);
    int mask = io_uring_buf_ring_mask(n);
    for (unsigned i = 0; i < n; i++)
        io_uring_buf_ring_add(g->br, g->bufs + (size_t)i * be->bufsz, be->bufsz, (unsigned short)(first + i),
                              mask, (int)i);
    io_uring_buf_ring_advance(g->br, (int)n);
    be->ngen++;
    return 0;
}

static int setup_buf_ring(struct rs_engine *loop, struct uring_be *be)
{
    be->bufsz = loop->buf_size;
    /* growth stops at 8x the configured count (32 MiB with the defaults) or 32768 per ring */
    be->nbufs_max = loop->buf_count * 8;
    return add_gen(be, loop->buf_count);
}

static struct bufgen *cur_gen(struct uring_be *be) { return &be->gen[be->ngen - 1]; }

static struct bufgen *gen_of_bid(struct uring_be *be, unsigned bid)
{
    unsigned k = be->ngen - 1;
    while (k > 0 && bid < be->gen[k].first_bid)
        k--;
    return &be->gen[k];
}

static struct bufgen *gen_of_ptr(struct uring_be *be, const void *data)
{
    const char *p = data;
    for (unsigned k = 0; k < be->ngen; k++)
        if (p >= be->gen[k].bufs && p < be->gen[k].bufs + be->gen[k].bufs_bytes)
            return &be->gen[k];
    return NULL;
}

static void recycle(struct uring_be *be, unsigned bid)
{
    struct bufgen *g = gen_of_bid(be, bid);
    if (g != cur_gen(be))
        return; /* retired: receives armed on it must run dry and move to the current ring */
    unsigned i = bid - g->first_bid;
    io_uring_buf_ring_add(g->br, g->bufs + (size_t)i * be->bufsz, be->bufsz, (unsigned short)bid,
                          io_uring_buf_ring_mask(g->nbufs), 0);
    io_uring_buf_ring_advance(g->br, 1);
}

/* A receive ended with -ENOBUFS: grow the buffers if that keeps happening or every buffer of the
 * current ring is kept. Returns true if the receive can be re-armed now, false if it must wait
 * for a kept buffer to come back. */
static bool on_enobufs(struct rs_engine *loop, struct uring_be *be)
{
    if (be->ngen == 0)
        return true; /* no ring to grow: an ACCEPT's -ENOBUFS (out of memory), or a legacy RECV */
    struct bufgen *g = cur_gen(be);
    bool starved = g->kept >= g->nbufs;
    if (starved || ++be->enobufs >= GROW_AFTER) {
        be->enobufs = 0;
        unsigned total = g->first_bid + g->nbufs, n = g->nbufs * 2;
        if (n <= 32768 && total + n <= be->nbufs_max && add_gen(be, n) == 0) {
            loop->stats->recv_bufs = total + n;
            return true;
        }
    }
    return !starved;
}

static void uring_fini(struct rs_engine *loop)
{
    struct uring_be *be = loop->be;
    for (unsigned k = 0; k < be->ngen; k++) {
        io_uring_unregister_buf_ring(&be->ring, (int)k);
        munmap(be->gen[k].br, be->gen[k].br_bytes);
        munmap(be->gen[k].bufs, be->gen[k].bufs_bytes);
    }
    io_uring_queue_exit(&be->ring);
    free(be);
    loop->be = NULL;
}

/* In a fork child: io_uring_queue_exit only unmaps the rings and closes the fd (the ring fd is
 * not registered); the buffer rings are unmapped without unregistering them from the parent's
 * ring. */
static void uring_abandon(struct rs_engine *loop)
{
    struct uring_be *be = loop->be;
    for (unsigned k = 0; k < be->ngen; k++) {
        munmap(be->gen[k].br, be->gen[k].br_bytes);
        munmap(be->gen[k].bufs, be->gen[k].bufs_bytes);
    }
    /* liburing's INT_FLAG_REG_RING (1): the registration belongs to the parent's task; without
     * the flag io_uring_queue_exit does not try to unregister it here */
    be->ring.int_flags &= (__u8)~1u;
    io_uring_queue_exit(&be->ring);
    free(be);
    loop->be = NULL;
}

/* A submission outside the engine's guarded wait (the SQ ring is full): the kernel may issue a
 * SPLICE or WRITE_FIXED inline here, so under the SIGPIPE guard. Rare: not worth a check. */
static void flush(struct io_uring *ring)
{
    struct rs_sigpipe_guard g;
    rs__sigpipe_block(&g);
    io_uring_submit(ring);
    rs__sigpipe_unblock(&g);
}

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = RS_FAULT_GET_SQE(ring);
    if (!sqe) {
        flush(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

/* io_uring lengths are 32-bit; larger requests become short transfers, never truncated silently
 * into something smaller than asked without the caller seeing a short count. */
static unsigned clamp_len(size_t len) { return (unsigned)(len > RS_MAX_IO ? RS_MAX_IO : len); }

/* op->bstate: the operation is parked on a POLL_ADD until its fd is ready, then reissued. Used
 * when the kernel hands back -EAGAIN for a blocking operation (SPLICE into a non-blocking socket
 * is not pollable inside io_uring; older kernels honour O_NONBLOCK on sockets) and for
 * SENDFILE, which io_uring has no opcode for. */
#define POLLING 0x1
/* op->bstate: a zero-copy send has its result and waits for the notification CQE */
#define ZC_NOTIF 0x2
/* op->bstate: the op's SQE asked for multishot; a single-shot retry probes a refused flag */
#define MS_FORM 0x4
#define MS_PROBE 0x8

/* Put op's SQE(s) in the ring: the operation (or its poll), plus a LINK_TIMEOUT for a deadline. */
static int queue(struct rs_engine *loop, struct rs_op *op)
{
    struct io_uring *ring = ring_of(loop);
    bool linked = op->deadline != RS_DEADLINE_NONE && op->kind != RS_OP_TIMER && op->dmode == RS_DMODE_OP;
    if (io_uring_sq_space_left(ring) < (linked ? 2u : 1u) && !op->link)
        flush(ring);
    struct io_uring_sqe *sqe = get_sqe(ring);
    if (!sqe)
        return -EBUSY;
    struct __kernel_timespec *ts = (struct __kernel_timespec *)op->bts;
    if (op->bstate & POLLING) {
        short ev;
        rs__op_try_events(op, &ev);
        io_uring_prep_poll_add(sqe, op->fd, (unsigned)ev);
    } else {
        switch (op->kind) {
        case RS_OP_CONNECT: io_uring_prep_connect(sqe, op->fd, op->u.connect.sa, op->u.connect.len); break;
        case RS_OP_ACCEPT:
            op->bstate &= (uint8_t)~MS_FORM;
            if (op->multishot && ((struct uring_be *)loop->be)->ms_accept) {
                io_uring_prep_multishot_accept(sqe, op->fd, op->u.accept.sa, op->u.accept.len, op->flags);
                op->bstate |= MS_FORM;
            } else {
                io_uring_prep_accept(sqe, op->fd, op->u.accept.sa, op->u.accept.len, op->flags);
            }
            break;
        case RS_OP_SEND:
            if (op->zc && ((struct uring_be *)loop->be)->has_zc)
                io_uring_prep_send_zc(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len),
                                      op->flags | MSG_NOSIGNAL, 0);
            else
                io_uring_prep_send(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len),
                                   op->flags | MSG_NOSIGNAL);
            break;
        case RS_OP_RECV:
            op->bstate &= (uint8_t)~MS_FORM;
            if (op->multishot && !((struct uring_be *)loop->be)->ms_recv) {
                /* legacy: one RECV at a time into the op's own buffer (in bts[0]) */
                char *b = (char *)(uintptr_t)op->bts[0];
                if (!b && !(b = malloc(loop->buf_size))) {
                    io_uring_prep_nop(sqe);
                    io_uring_sqe_set_data64(sqe, UD_IGNORE);
                    return -ENOMEM;
                }
                op->bts[0] = (int64_t)(uintptr_t)b;
                io_uring_prep_recv(sqe, op->fd, b, loop->buf_size, op->flags);
            } else if (op->multishot) {
                struct uring_be *be = loop->be;
                if (!be->ngen) {
                    int r = setup_buf_ring(loop, be);
                    if (r < 0) {
                        io_uring_prep_nop(sqe);
                        io_uring_sqe_set_data64(sqe, UD_IGNORE);
                        return r;
                    }
                    loop->stats->recv_bufs = loop->buf_count;
                }
                io_uring_prep_recv_multishot(sqe, op->fd, NULL, 0, op->flags);
                op->bstate |= MS_FORM;
                sqe->flags |= IOSQE_BUFFER_SELECT;
                sqe->buf_group = (__u16)(be->ngen - 1);
            } else {
                io_uring_prep_recv(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len), op->flags);
            }
            break;
        case RS_OP_SENDMSG:
            if (op->zc && ((struct uring_be *)loop->be)->has_zc)
                io_uring_prep_sendmsg_zc(sqe, op->fd, op->u.msg, (unsigned)(op->flags | MSG_NOSIGNAL));
            else
                io_uring_prep_sendmsg(sqe, op->fd, op->u.msg, (unsigned)(op->flags | MSG_NOSIGNAL));
            break;
        case RS_OP_RECVMSG: io_uring_prep_recvmsg(sqe, op->fd, op->u.msg, (unsigned)op->flags); break;
        case RS_OP_READ_FIXED:
            loop->stats->fixed_buf_ops++;
            io_uring_prep_read_fixed(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len), 0, op->buf_index);
            break;
        case RS_OP_WRITE_FIXED:
            loop->stats->fixed_buf_ops++;
            io_uring_prep_write_fixed(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len), 0, op->buf_index);
            break;
        case RS_OP_SPLICE:
            io_uring_prep_splice(sqe, op->u.splice.fd_in, op->u.splice.off_in, op->u.splice.fd_out,
                                 op->u.splice.off_out, clamp_len(op->u.splice.len), op->u.splice.flags);
            break;
        case RS_OP_READ:
            io_uring_prep_read(sqe, op->fd, op->u.io.buf, clamp_len(op->u.io.len), (__u64)-1);
            break;
        case RS_OP_POLL: io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->flags); break;
        case RS_OP_TIMER:
            ts->tv_sec = op->deadline / 1000000000;
            ts->tv_nsec = op->deadline % 1000000000;
            io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
            break;
        default:
            /* the SQE is already taken: turn it into a no-op nobody waits for */
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
            return -EINVAL;
        }
        RS_FAULT_SQE(ring, op, sqe);
    }
    io_uring_sqe_set_data(sqe, op);
    if (op->link && !linked)
        sqe->flags |= IOSQE_IO_LINK;
    if (linked) {
        sqe->flags |= IOSQE_IO_LINK;
        struct io_uring_sqe *t = get_sqe(ring);
        if (!t) {
            /* cannot happen: space for two was made above */
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
            return -EBUSY;
        }
        /* The relative timeout is copied by the kernel when the SQE is submitted; ts lives in op
         * until then. A deadline already past still gets one attempt (1 ns), as poll(0) would. */
        int64_t left = op->deadline - rs__now();
        if (left < 1)
            left = 1;
        ts->tv_sec = left / 1000000000;
        ts->tv_nsec = left % 1000000000;
        io_uring_prep_link_timeout(t, ts, 0);
        io_uring_sqe_set_data64(t, UD_IGNORE);
        if (op->link)
            t->flags |= IOSQE_IO_LINK;
    }
    return 0;
}

/* Operations io_uring cannot run itself: one non-blocking syscall now, a poll if it would block. */
static int try_then_poll(struct rs_engine *loop, struct rs_op *op)
{
    short ev;
    int res = rs__op_try(op, &ev);
    if (res != -EAGAIN || op->deadline == RS_DEADLINE_NOW) {
        rs__eng_defer(loop, op, res);
        return 0;
    }
    op->bstate |= POLLING;
    return queue(loop, op);
}

static int uring_submit(struct rs_engine *loop, struct rs_op *op)
{
    if ((op->deadline == RS_DEADLINE_NOW && op->kind != RS_OP_TIMER) || op->kind == RS_OP_SENDFILE) {
        /* Non-blocking mode is one non-blocking syscall on every backend: an SQE would cost the
         * same io_uring_enter, and io_uring cannot express a non-blocking connect (it waits). */
        return try_then_poll(loop, op);
    }
    return queue(loop, op);
}

/* A multishot CQE: deliver it; when the kernel ended the operation, re-arm it unless it ended
 * for good (EOF, an error, a cancel). */
/* The multishot probe (see struct uring_be): true when this CQE was a probe step and op has been
 * re-queued single-shot, so there is nothing to deliver. */
static bool ms_probe(struct rs_engine *loop, struct uring_be *be, struct rs_op *op, int res)
{
    bool *ms = op->kind == RS_OP_ACCEPT ? &be->ms_accept : &be->ms_recv;
    bool *known = op->kind == RS_OP_ACCEPT ? &be->ms_accept_known : &be->ms_recv_known;
    if (op->bstate & MS_FORM) {
        if (res != -EINVAL) {
            *known = true; /* the kernel took the flag */
            return false;
        }
        if (*known || op->cancelled)
            return false;
        /* refused: the flag, or the op itself? The single-shot retry tells */
        *ms = false;
        op->bstate |= MS_PROBE;
        if (queue(loop, op) == 0)
            return true;
        *ms = true;
        op->bstate &= (uint8_t)~MS_PROBE;
        return false;
    }
    if (op->bstate & MS_PROBE) {
        op->bstate &= (uint8_t)~MS_PROBE;
        if (res == -EINVAL)
            *ms = true; /* the op's own error: the flag is still untested */
        else
            *known = true; /* single-shot works where multishot was refused: an older kernel */
    }
    return false;
}

static void handle_multishot(struct rs_engine *loop, struct rs_op *op, int res, unsigned flags)
{
    struct uring_be *be = loop->be;
    if ((op->bstate & (MS_FORM | MS_PROBE)) && ms_probe(loop, be, op, res))
        return;
    bool more = flags & IORING_CQE_F_MORE;
    const void *data = NULL;
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    struct bufgen *g = NULL;
    if (flags & IORING_CQE_F_BUFFER) {
        g = gen_of_bid(be, bid);
        data = g->bufs + (size_t)(bid - g->first_bid) * be->bufsz;
    }
    char *own = op->kind == RS_OP_RECV ? (char *)(uintptr_t)op->bts[0] : NULL; /* legacy RECV */
    if (own && res > 0)
        data = own;
    /* -ENOBUFS took nothing: re-armed, or ended as asked (-ECANCELED, below) if a cancel is on
     * its way, never reported as an error of the stream */
    bool rearm = !more && (res == -ENOBUFS || (!op->cancelled && ((op->kind == RS_OP_RECV && res > 0) ||
                                                                  (op->kind == RS_OP_ACCEPT && res >= 0))));
    if (more || rearm) {
        /* -ENOBUFS carries no data: the buffers come back as callbacks return, so re-arming at
         * once loses nothing and keeps order (the kernel queued nothing past the stop). */
        if (res != -ENOBUFS)
            rs__op_deliver(loop, op, res, data);
    } else {
        op->mdata = data;
        if (own) {
            /* the op is over: its buffer goes, after the callback has seen the bytes */
            op->bts[0] = 0;
            rs__op_complete(loop, op, res);
            free(own);
            own = NULL;
            data = NULL;
        } else {
            rs__op_complete(loop, op, res);
        }
    }
    if (own) {
        data = NULL; /* not a ring buffer: nothing to recycle */
        be->keep_now = false;
    }
    if (data) {
        if (be->keep_now) {
            be->keep_now = false;
            g->kept++;
        } else {
            recycle(be, bid);
        }
    }
    /* the callback may have stopped it meanwhile (op->cancelled): then it ends here */
    if (rearm && !op->done) {
        bool stopped = op->cancelled;
        if (!stopped && res == -ENOBUFS && !on_enobufs(loop, be)) {
            op->next = be->starved;
            be->starved = op;
        } else if (stopped || queue(loop, op) < 0) {
            if (own) {
                /* a legacy receive's buffer ends with it (nothing is left in it) */
                op->bts[0] = 0;
                free(own);
            }
            rs__op_complete(loop, op, stopped ? -ECANCELED : -EBUSY);
        }
    }
}

/* A CQE for op: finish it, or (polling / an unexpected EAGAIN) go round again. */
static bool handle(struct rs_engine *loop, struct rs_op *op, int res, unsigned flags)
{
    if (op->multishot) {
        handle_multishot(loop, op, res, flags);
        return true;
    }
    if (op->zc && !(op->bstate & POLLING)) {
        if (flags & IORING_CQE_F_NOTIF) {
            /* the kernel is done with the buffer: now the result counts */
            op->bstate &= (uint8_t)~ZC_NOTIF;
            res = op->res;
        } else if (flags & IORING_CQE_F_MORE) {
            op->res = res;
            op->bstate |= ZC_NOTIF;
            return false;
        }
    }
    if (op->bstate & POLLING) {
        op->bstate &= (uint8_t)~POLLING;
        if (res >= 0 && op->kind == RS_OP_ACCEPT && (res & POLLHUP)) {
            /* an AF_UNIX listener that was shut down polls as hung up yet accept says EAGAIN
             * without end: a blocking accept(2) says EINVAL, and re-arming would spin */
            res = -EINVAL;
        } else if (res >= 0 && !op->cancelled) {
            if (op->kind == RS_OP_SENDFILE) {
                if (try_then_poll(loop, op) == 0)
                    return false;
            } else if (queue(loop, op) == 0) {
                return false;
            }
            res = -EBUSY;
        }
    } else if (res == -EINTR && op->kind != RS_OP_CONNECT && op->kind != RS_OP_TIMER && !op->cancelled) {
        /* A signal interrupted the request where the kernel blocked for it (an io-wq worker):
         * as PEP 475 has it, it goes again instead of failing the caller's call. At once, not
         * after a poll: POLLOUT needs a third of the send buffer free, a send only some room, and
         * a peer that waits for this send before it reads would never give us the third. */
        if (queue(loop, op) == 0)
            return false;
        res = -EBUSY;
    } else if (res == -EAGAIN && op->kind != RS_OP_TIMER && op->deadline != RS_DEADLINE_NOW &&
               !(op->flags & MSG_DONTWAIT) && !op->cancelled) {
        op->bstate |= POLLING;
        if (queue(loop, op) == 0)
            return false;
        res = -EBUSY;
    }
    if (op->kind == RS_OP_TIMER && res == -ETIME)
        res = 0;
    if (op->kind == RS_OP_SPLICE && res > 0) {
        /* keep the offsets meaning "where the next byte comes from", as splice(2) does */
        if (op->u.splice.off_in >= 0)
            op->u.splice.off_in += res;
        if (op->u.splice.off_out >= 0)
            op->u.splice.off_out += res;
    }
    rs__op_complete(loop, op, res);
    return true;
}

static int uring_wait(struct rs_engine *loop, bool block, unsigned min, int64_t deadline)
{
    struct io_uring *ring = ring_of(loop);
    int r;
    do {
        if (block && deadline != RS_DEADLINE_NONE) {
            /* the blocking call's deadline on the wait (EXT_ARG): relative, so recomputed per
             * enter; at least 1 ns, as a deadline just past still gets its one look */
            int64_t left = deadline - rs__now();
            if (left < 1)
                left = 1;
            struct __kernel_timespec ts = { .tv_sec = left / 1000000000, .tv_nsec = left % 1000000000 };
            struct io_uring_cqe *cqe;
            r = RS_FAULT_WAIT(io_uring_submit_and_wait_timeout(ring, &cqe, min ? min : 1, &ts, NULL));
        } else if (block) {
            r = RS_FAULT_WAIT(io_uring_submit_and_wait(ring, min ? min : 1));
        } else {
            r = io_uring_submit_and_get_events(ring);
        }
    } while (r == -EINTR && block && !io_uring_cq_ready(ring));
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN && r != -ETIME)
        return r;
    int n = 0;
    /* One CQE at a time, consumed before it is handled: a callback may run the loop again, and
     * the nested run must find the completions after this one still in the ring, in order (a
     * batch copied out first would hand the outer run stale ones: bytes out of order, or an op
     * a nested run freed). Walked inline rather than with io_uring_peek_batch_cqe, a library
     * call with its own barriers that callgrind put at ~35 instructions per blocking call. */
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, got = 0;
        uint64_t ud = UD_IGNORE;
        int res = 0;
        unsigned flags = 0;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            ud = cqe->user_data;
            res = cqe->res;
            flags = cqe->flags;
            got = 1;
            break;
        }
        if (!got)
            break;
        io_uring_cq_advance(ring, 1);
        if (ud == UD_WAKE) {
            if (res != -ECANCELED)
                arm_wake(loop);
        } else if (ud != UD_IGNORE) {
            struct rs_op *op = (struct rs_op *)(uintptr_t)ud;
            n += handle(loop, op, RS_FAULT_CQE(op, res), flags);
        }
    }
    return n;
}

static int uring_cancel(struct rs_engine *loop, struct rs_op *op)
{
    struct uring_be *be = loop->be;
    for (struct rs_op **pp = &be->starved; *pp; pp = &(*pp)->next) {
        if (*pp == op) { /* waiting for a buffer, not in the kernel */
            *pp = op->next;
            rs__eng_defer(loop, op, -ECANCELED);
            return 0;
        }
    }
    struct io_uring *ring = ring_of(loop);
    if (op->deadline == RS_DEADLINE_NOW && op->kind != RS_OP_TIMER)
        return 0; /* completes on the next turn anyway */
    struct io_uring_sqe *sqe = get_sqe(ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_cancel(sqe, op, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return 0;
}

static void uring_forget_fd(struct rs_engine *loop, int fd)
{
    (void)loop;
    (void)fd;
}

static unsigned uring_features(struct rs_engine *loop)
{
    struct uring_be *be = loop->be;
    return be->features | (be->ms_accept ? RS_FEAT_MULTISHOT_ACCEPT : 0) |
           (be->ms_recv ? RS_FEAT_MULTISHOT_RECV : 0);
}

static int uring_buf_keep(struct rs_engine *loop, const void *data)
{
    struct uring_be *be = loop->be;
    if (!gen_of_ptr(be, data))
        return -EINVAL;
    be->keep_now = true;
    return 0;
}

static void uring_buf_release(struct rs_engine *loop, const void *data)
{
    struct uring_be *be = loop->be;
    struct bufgen *g = gen_of_ptr(be, data);
    g->kept--;
    recycle(be, g->first_bid + (unsigned)(((const char *)data - g->bufs) / be->bufsz));
    struct rs_op *op = be->starved;
    be->starved = NULL;
    while (op) {
        struct rs_op *next = op->next;
        op->next = NULL;
        if (queue(loop, op) < 0)
            rs__eng_defer(loop, op, -EBUSY);
        op = next;
    }
}

static int uring_buffers_init(struct rs_engine *loop, unsigned nslots)
{
    return io_uring_register_buffers_sparse(ring_of(loop), nslots);
}

static int uring_buffer_update(struct rs_engine *loop, unsigned slot, const struct iovec *iov)
{
    __u64 tag = 0;
    int r = io_uring_register_buffers_update_tag(ring_of(loop), slot, iov, &tag, 1);
    return r < 0 ? r : 0;
}

const struct rs_backend_ops rs__uring_ops = {
    .name = "uring",
    .chains = true,
    .kernel_io = true,
    .init = uring_init,
    .fini = uring_fini,
    .abandon = uring_abandon,
    .submit = uring_submit,
    .wait = uring_wait,
    .cancel = uring_cancel,
    .forget_fd = uring_forget_fd,
    .buffers_init = uring_buffers_init,
    .buffer_update = uring_buffer_update,
    .buf_keep = uring_buf_keep,
    .features = uring_features,
    .buf_release = uring_buf_release,
};
