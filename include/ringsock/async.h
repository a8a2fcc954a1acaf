/* ringsock completion API for servers: multishot accept, multishot receive into the loop's
 * provided buffers, ordered whole-buffer sends, timers, cancellation and close — the same
 * callbacks and guarantees on io_uring, epoll and poll.
 *
 * Rules (libuv's): every object belongs to one loop and is used from that loop's thread only.
 * If a call that takes a callback returns an error, that callback is never called; otherwise it
 * is called exactly once per completion — including -ECANCELED when the object is closed. */
#ifndef RINGSOCK_ASYNC_H
#define RINGSOCK_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ringsock/loop.h>
#include <ringsock/net.h>
#include <ringsock/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A socket driven by callbacks, owned by one loop: its first successful rs_conn_accept_start makes
 * it a listener, its first successful read_start / send / sendv / sendfile a connection; the
 * other role's calls then return -EINVAL (read_stop, accept_stop and send_cancel return 0). */
typedef struct rs_conn rs_conn;

/* A new connection (conn, to be started with rs_conn_read_start etc.) or an error (conn NULL,
 * status < 0). Accepting continues after an error; -EMFILE/-ENFILE pause accepting (existing
 * connections keep being served) and it resumes by itself once fds are free (retried every
 * 50 ms) — the CPU never spins on a full fd table. */
typedef void (*rs_accept_cb)(rs_conn *listener, rs_conn *conn, int status, void *data);

/* Bytes received (n > 0, data borrowed until the callback returns), end of stream (n == 0, no
 * more calls), or an error (n < 0, no more calls). */
typedef void (*rs_read_cb)(rs_conn *c, ssize_t n, const void *data, void *user);

/* A send finished: status is the whole length, or an error (-ECANCELED on close). */
typedef void (*rs_send_cb)(rs_conn *c, ssize_t status, void *user);

/* After rs_conn_close: every other callback of c has run; c is freed when this returns. */
typedef void (*rs_close_cb)(rs_conn *c, void *user);

/* Wrap an fd (ownership passes to the conn, even on error; it is made non-blocking). */
int rs_conn_open(rs_conn **out, rs_loop *loop, int fd);
/* Move an rs_socket's fd into a conn; s is freed (as if closed) on success. */
int rs_conn_from_socket(rs_conn **out, rs_loop *loop, rs_socket *s);

int rs_conn_fd(const rs_conn *c);
rs_loop *rs_conn_loop(const rs_conn *c);
void rs_conn_set_data(rs_conn *c, void *data);
void *rs_conn_get_data(const rs_conn *c);

/* Accept connections on a listening conn until stopped or closed (io_uring: one multishot
 * ACCEPT, re-armed when the kernel ends it). Accepted conns belong to the same loop. */
int rs_conn_accept_start(rs_conn *listener, rs_accept_cb cb, void *data);

/* Receive until EOF, error, stop or close (io_uring: one multishot RECV into the loop's
 * provided-buffer ring; running out of buffers (-ENOBUFS) re-arms without losing or reordering
 * data). While sends of c are pending beyond RS_CONN_SEND_HIGH bytes, receiving pauses and
 * resumes once they drain: a peer that does not read cannot make us buffer without bound. */
int rs_conn_read_start(rs_conn *c, rs_read_cb cb, void *user);
/* Stop receiving (no more read callbacks; no -ECANCELED call either). */
int rs_conn_read_stop(rs_conn *c);

#define RS_CONN_SEND_HIGH (1u << 20)

/* Send all of buf (it must stay valid until cb); sends on one conn complete in the order they
 * were made, each with its full length, short sends continued internally. cb may be NULL. */
int rs_conn_send(rs_conn *c, const void *buf, size_t len, rs_send_cb cb, void *user);
/* Half-close (socket.py's shutdown(SHUT_WR)), ordered with the sends: once every send made before
 * it is written, the write side is shut down (the peer reads EOF; we can still receive). cb (may
 * be NULL) gets 0 or the shutdown(2) error; later sends fail (-EPIPE). */
int rs_conn_shutdown(rs_conn *c, rs_send_cb cb, void *user);

/* Bytes accepted by rs_conn_send and not yet completed. */
size_t rs_conn_send_pending(const rs_conn *c);

/* Cancel everything in flight (each callback once, -ECANCELED), close the fd, then cb. */
int rs_conn_close(rs_conn *c, rs_close_cb cb, void *user);

/* Connected (status 0, c a new conn on the loop) or failed (c NULL, status as
 * rs_create_connection would return). */
typedef void (*rs_connect_cb)(rs_conn *c, int status, void *user);

/* The completion-API twin of rs_create_connection: the same attempts, deadline and Happy
 * Eyeballs, run on loop; host names are resolved on a helper thread so the loop never blocks
 * (numeric hosts need none). opts (copied) may be NULL; opts->report, strings included, must
 * stay valid until cb. Returns 0 (cb follows, from the loop) or -EINVAL (also for a timeout of 0:
 * non-blocking mode means nothing when the loop waits) / -ENOMEM. */
int rs_conn_connect(rs_loop *loop, const char *host, const char *port, const struct rs_connect_opts *opts,
                    rs_connect_cb cb, void *user);

/* Send the iovcnt buffers of iov as one ordered send (the buffers, not the iov array, must stay
 * valid until cb; at most 64). cb gets the total length. */
int rs_conn_sendv(rs_conn *c, const struct iovec *iov, int iovcnt, rs_send_cb cb, void *user);

/* A server on N threads: each thread has its own loop and its own SO_REUSEPORT listener, so the
 * kernel spreads connections over them (one loop per thread, never shared). */
typedef struct rs_serve rs_serve;

/* Called on each worker thread once its loop and listener exist: start accepting there
 * (rs_conn_accept_start). The listener belongs to the worker; it is closed at rs_serve_stop. */
typedef void (*rs_serve_start_cb)(rs_loop *loop, rs_conn *listener, int index, void *user);

struct rs_serve_opts {
    int threads;                /* workers; 0 = one per online CPU */
    const char *host, *port;    /* as rs_create_server; port "0" = one ephemeral port for all */
    int family;                 /* AF_INET (default) or AF_INET6 */
    int backlog;                /* < 0: the default */
    bool steer_by_cpu;          /* a classic-BPF reuseport program sends each connection to the
                                   listener of the CPU that received it; workers are pinned to
                                   CPUs 0..threads-1 (needs threads <= online CPUs) */
    struct rs_loop_opts loop;   /* for every worker's loop */
    rs_serve_start_cb on_start; /* required */
    /* optional: at rs_serve_stop, on each worker after its listener is closed: close the conns
     * you made on that loop; the worker then runs its loop until nothing is pending (at most
     * 5 s; a loop still busy after that is abandoned, not freed under its operations) */
    void (*on_stop)(rs_loop *loop, int index, void *user);
    void *user;
};
#define RS_SERVE_OPTS_INIT { .threads = 0, .host = NULL, .port = "0", .family = AF_INET, .backlog = -1, \
                             .steer_by_cpu = false, .loop = RS_LOOP_OPTS_INIT, .on_start = NULL, .on_stop = NULL, \
                             .user = NULL }

/* Start the workers. Returns 0 once every worker is accepting, or the first error (nothing is
 * left running). */
int rs_serve_start(rs_serve **out, const struct rs_serve_opts *opts);
/* The port all workers listen on. */
int rs_serve_port(const rs_serve *sv);
/* Stop every worker (listener closed, on_stop, loop drained and freed), join them, free sv.
 * From any thread but a worker's. */
int rs_serve_stop(rs_serve *sv);

/* Send count bytes of file fd from offset (count 0: to the end of a regular file), ordered
 * with the conn's other sends; fd must stay open until cb, which gets count — or fewer if the
 * file ended first. Runs as sendfile(2) operations (on io_uring: a non-blocking sendfile and a
 * poll when the socket is full). -EINVAL for a bad fd/offset, or count 0 on a non-regular file. */
int rs_conn_sendfile(rs_conn *c, int fd, off_t offset, size_t count, rs_send_cb cb, void *user);

/* Stop accepting (no more accept callbacks); rs_conn_accept_start resumes. */
int rs_conn_accept_stop(rs_conn *listener);

/* Keeping received bytes past the read callback (zero-copy on io_uring). */
typedef struct rs_rbuf rs_rbuf;

/* Only inside a read callback with n > 0: keep the bytes just delivered. rs_rbuf_data(*out) (n
 * bytes) stays valid until rs_rbuf_release(*out). With io_uring's multishot receive
 * (RS_FEAT_MULTISHOT_RECV) it is data itself, the loop's provided buffer, lent — no copy; it
 * returns to the ring at release. While many are kept the ring grows (up to 8x buf_count), and a
 * receive that then finds it empty waits for a release (no spin, nothing lost). Elsewhere the
 * bytes are copied once here. -EINVAL outside a read callback (or n <= 0), -EALREADY if this
 * delivery is already kept, -ENOMEM. */
int rs_conn_read_keep(rs_conn *c, rs_rbuf **out);
/* The kept bytes' address. */
const void *rs_rbuf_data(const rs_rbuf *b);
/* Give the bytes back (on the loop's thread; before the loop is freed). */
void rs_rbuf_release(rs_rbuf *b);

/* Cancel queued sends of c that the kernel has not started (made with this user pointer): each
 * callback runs with -ECANCELED, from the loop, in queue order. A send already being written
 * (part of the operation in flight) goes on: the bytes on the wire cannot be recalled, and the
 * stream stays whole. A vectored send is cancelled whole or not at all. Returns how many sends
 * were cancelled (0 if none matched), or -EINVAL. */
int rs_conn_send_cancel(rs_conn *c, void *user);

/* A wake-up from any thread (libuv's uv_async_t): rs_async_send may be called from any thread;
 * the callback then runs on the loop's thread at least once after it. Sends before the callback
 * runs coalesce into one call. The loop is kept alive (rs_loop_run does not return for lack of
 * work) until rs_async_close. */
typedef struct rs_async rs_async;
typedef void (*rs_async_cb)(rs_async *a, void *user);
/* On the loop's thread. */
int rs_async_new(rs_async **out, rs_loop *loop, rs_async_cb cb, void *user);
/* Any thread; async-signal-safe. Not after rs_async_close. */
int rs_async_send(rs_async *a);
/* On the loop's thread: no more callbacks; close_cb (may be NULL) runs from the loop, after which
 * a is freed. -EALREADY if already closing. */
int rs_async_close(rs_async *a, void (*close_cb)(rs_async *a, void *user), void *user);

/* Timers. */
typedef struct rs_timer rs_timer;
/* Fired (status 0) or cancelled (-ECANCELED). The timer may be restarted from its callback. */
typedef void (*rs_timer_cb)(rs_timer *t, int status, void *user);
int rs_timer_new(rs_timer **out, rs_loop *loop);
/* Fire once after seconds (>= 0). -EBUSY while it is running (stop it, and restart it from the
 * -ECANCELED callback or later); -EINVAL for a negative or NaN delay. */
int rs_timer_start(rs_timer *t, double seconds, rs_timer_cb cb, void *user);
/* Cancel a running timer: its callback runs with -ECANCELED. -EALREADY if not running. */
int rs_timer_stop(rs_timer *t);
/* Free a timer that is not running (stop it and let the callback run first). -EBUSY otherwise. */
int rs_timer_free(rs_timer *t);

#ifdef __cplusplus
}
#endif
#endif
