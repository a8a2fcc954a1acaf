/* Test-only injected faults (meson -Dfault_injection=true): hooks the engine calls at its choke
 * points. Without the option every RS_FAULT_* macro below is empty (or the plain call it wraps),
 * fault.c is not built, and the library holds no fault code at all.
 *
 * Rules come from RINGSOCK_FAULT (read at loop creation) or rs__fault_set():
 *     rule[,rule...]    rule = SITE:FAULT[=WHEN]  |  seed=N
 *     WHEN = N        every Nth eligible call (default 1: every call)
 *            N/M      with probability N/M (xorshift, seed=N rule; default seed 1: reproducible)
 *            firstN   the first N eligible calls only
 * SITE:FAULT pairs:
 *     send:   eintr eagain short enomem econnreset epipe
 *     recv:   eintr eagain short enomem econnreset enobufs
 *     accept: eintr eagain enomem emfile enobufs
 *     wait:   eintr enomem     sqe: full     ring: tiny     regbuf: fail
 *     kernel: nomultishot
 * e.g. RINGSOCK_FAULT="send:short=3,recv:eintr=1/5,accept:emfile=first2,sqe:full=2,regbuf:fail".
 * What they do (send = SEND, SENDMSG, WRITE_FIXED, SENDFILE; recv = RECV, RECVMSG, READ_FIXED):
 *     eintr, eagain   epoll/poll: the syscall fails so without being made; io_uring: the SQE
 *                     becomes a NOP whose completion carries the error (single-shot ops). The
 *                     engine must go again; "every call" is refused as it could never complete.
 *     short           the length is cut to 1..len-1 before the syscall or SQE (never a
 *                     MSG_WAITALL receive or an io_uring multishot receive: no length to cut)
 *     enomem econnreset epipe emfile   the operation completes with the error, never issued
 *     enobufs         io_uring: a multishot receive or accept ends with -ENOBUFS, nothing taken
 *     wait:eintr      io_uring_enter / epoll_wait / poll fails with EINTR without being made
 *     wait:enomem     the same with ENOMEM, which the engine cannot absorb: the backend's wait
 *                     returns it (wait:enomem=first50: 50 failed waits in a row; no WHEN: every
 *                     blocking wait fails, for as long as the rule is set)
 *     sqe:full        io_uring_get_sqe finds the SQ ring full (only when SQEs are queued)
 *     ring:tiny       loops made from then on get 2 SQ entries (8 CQ): the CQ ring overflows
 *     regbuf:fail     registering the fixed-buffer table, or a slot of it, fails with ENOMEM
 *     kernel:nomultishot  io_uring: the kernel refuses a multishot accept or receive with
 *                     -EINVAL, as kernels before 5.19 / 6.0 do (the SQE gets an ioprio bit no
 *                     kernel knows): the engine's probe must fall back to single-shot
 * Never inside an io_uring link chain, a SPLICE or a zero-copy send (a lost member would break
 * the chain; the notification protocol has no room for a NOP). */
#ifndef RS_FAULT_I_H
#define RS_FAULT_I_H

#ifdef RS_FAULT_INJECTION
#include <errno.h>
#include <stdbool.h>
#include <sys/types.h>

#include "backend/backend.h"

struct rs_loop;
struct rs_loop_opts;
struct ready;
struct io_uring;
struct io_uring_sqe;

/* Replace the rules (NULL or "" = none) and zero the counters. 0, or -EINVAL with a one-line
 * message on stderr naming the bad rule. */
int rs__fault_set(const char *spec);
/* How many times SITE:FAULT was injected since the rules were set (tests assert it is > 0). */
unsigned long rs__fault_count(const char *site, const char *fault);
/* io_uring: times the engine was seen with completions waiting in the kernel's overflow list. */
unsigned long rs__fault_cq_overflows(void);

/* The hooks (one call each in the engine; see the macros). */
int rs__fault_loop_new(const struct rs_loop_opts **opts, struct rs_loop_opts *copy);
bool rs__fault_submit(struct rs_loop *loop, struct rs_op *op);
bool rs__fault_try(struct rs_op *op, short *events, ssize_t *r);
int rs__fault_kick(struct ready *r);
/* true: the blocking wait fails, with rs__fault_wait_res (-EINTR or -ENOMEM), this thread's */
bool rs__fault_wait(void);
extern _Thread_local int rs__fault_wait_res;
void rs__fault_op_done(struct rs_op *op);
bool rs__fault_regbuf(void);
bool rs__fault_sq_full(struct io_uring *ring);
void rs__fault_sqe(struct io_uring *ring, struct rs_op *op, struct io_uring_sqe *sqe);
int rs__fault_cqe(struct rs_op *op, int res);

/* loop.c rs_loop_new: RINGSOCK_FAULT is (re)read; a bad one fails loop creation with -EINVAL;
 * ring:tiny swaps opts for a copy with a 2-entry ring (8 CQ entries). */
#define RS_FAULT_LOOP_NEW(opts)                                         \
    struct rs_loop_opts rs_fault_opts_;                                 \
    do {                                                                \
        int rs_fault_r_ = rs__fault_loop_new(&(opts), &rs_fault_opts_); \
        if (rs_fault_r_ < 0)                                            \
            return rs_fault_r_;                                         \
    } while (0)
/* loop.c rs__loop_submit: an error fault completes op with the error instead of issuing it. */
#define RS_FAULT_SUBMIT(loop, op)             \
    do {                                      \
        if (rs__fault_submit((loop), (op))) { \
            (loop)->pending++;                \
            (loop)->stats.submitted++;        \
            return 0;                         \
        }                                     \
    } while (0)
/* loop.c rs__op_complete: drop what the layer kept for op (a clamped msghdr copy). */
#define RS_FAULT_OP_DONE(op) rs__fault_op_done(op)
/* op.c rs__op_try: the syscall "returned" r (and errno) without being made, or was made shorter;
 * the code at label handles r as it would a real result (EINTR: try again, EAGAIN: wait). */
#define RS_FAULT_TRY(op, events, r, label)       \
    do {                                         \
        if (rs__fault_try((op), (events), &(r))) \
            goto label;                          \
    } while (0)
#define RS_FAULT_LABEL(label) \
    label:
/* ready.c rs__ready_wait: fds whose operation got an injected EAGAIN are tried again without an
 * edge from the poller (an injected EAGAIN had data waiting; a real one would get a new edge). */
#define RS_FAULT_KICK(r, kicked) ((kicked) += rs__fault_kick(r))
/* ready.c / uring.c: the blocking wait syscall fails (EINTR, ENOMEM) without being made. */
#define RS_FAULT_WAIT(call) (rs__fault_wait() ? rs__fault_wait_res : (call))
/* bufpool.c: registering the fixed-buffer table (or a slot) fails with ENOMEM. */
#define RS_FAULT_REGBUF(call) (rs__fault_regbuf() ? -ENOMEM : (call))
/* uring.c get_sqe: the SQ ring looks full (never inside a link chain). */
#define RS_FAULT_GET_SQE(ring) (rs__fault_sq_full(ring) ? NULL : io_uring_get_sqe(ring))
/* uring.c queue: the SQE becomes a NOP whose completion carries an error, or gets a shorter length. */
#define RS_FAULT_SQE(ring, op, sqe) rs__fault_sqe((ring), (op), (sqe))
/* uring.c wait: the result an injected NOP stands for. */
#define RS_FAULT_CQE(op, res) rs__fault_cqe((op), (res))

#else

#define RS_FAULT_LOOP_NEW(opts) ((void)0)
#define RS_FAULT_SUBMIT(loop, op) ((void)0)
#define RS_FAULT_OP_DONE(op) ((void)0)
#define RS_FAULT_TRY(op, events, r, label) ((void)0)
#define RS_FAULT_LABEL(label)
#define RS_FAULT_KICK(r, kicked) ((void)0)
#define RS_FAULT_WAIT(call) (call)
#define RS_FAULT_REGBUF(call) (call)
#define RS_FAULT_GET_SQE(ring) io_uring_get_sqe(ring)
#define RS_FAULT_SQE(ring, op, sqe) ((void)0)
#define RS_FAULT_CQE(op, res) (res)

#endif
#endif
