/* ringsock sockets: the blocking API of Python's socket module, every I/O call through the
 * calling thread's loop (io_uring, or the epoll/poll fallback).
 *
 * Timeouts are seconds as double, exactly socket.py's: RS_TIMEOUT_NONE blocks, 0 is non-blocking
 * (-EAGAIN, or -EINPROGRESS from rs_connect), > 0 bounds each call (-ETIMEDOUT). A timeout is a
 * deadline: a signal that interrupts the wait does not restart the clock. */
#ifndef RINGSOCK_SOCKET_H
#define RINGSOCK_SOCKET_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rs_socket rs_socket;

/* socket.py's None: block without a timeout. */
#define RS_TIMEOUT_NONE (-1.0)

/* Open a socket (close-on-exec). type may include SOCK_NONBLOCK (sets timeout 0) and
 * SOCK_CLOEXEC (always on). The timeout is rs_getdefaulttimeout(). Returns 0 and *out, or the
 * -errno of socket(2) (-EAFNOSUPPORT, -EPROTONOSUPPORT, -EMFILE, ...), -EINVAL for NULL out. */
int rs_socket_open(rs_socket **out, int family, int type, int protocol);

/* Wrap a dup() of fd (like socket.fromfd); fd stays the caller's. Family and type are read from
 * the fd. Returns 0, -EBADF, -ENOTSOCK, -EMFILE, -EINVAL. */
int rs_socket_fromfd(rs_socket **out, int fd);

/* A connected pair. family AF_UNSPEC or 0 means AF_UNIX, type 0 means SOCK_STREAM. */
int rs_socketpair(rs_socket *out[2], int family, int type, int protocol);

/* The socket's fd (owned by the socket), or -EBADF after rs_close / for NULL. */
int rs_socket_fd(const rs_socket *s);
/* AF_INET, AF_INET6, AF_UNIX, ... or -EBADF. */
int rs_socket_family(const rs_socket *s);
/* SOCK_STREAM, SOCK_DGRAM, ... or -EBADF. */
int rs_socket_type(const rs_socket *s);

/* Set the timeout mode: RS_TIMEOUT_NONE, 0, or > 0 seconds. NaN, infinities and other negative
 * values are -EINVAL. */
int rs_settimeout(rs_socket *s, double seconds);
/* The timeout, RS_TIMEOUT_NONE for blocking; NaN for NULL. */
double rs_gettimeout(const rs_socket *s);
/* The timeout given to sockets created afterwards (open, accept, socketpair, fromfd). Invalid
 * values (as rs_settimeout) are ignored; the initial value is RS_TIMEOUT_NONE. Process-wide. */
void rs_setdefaulttimeout(double seconds);
double rs_getdefaulttimeout(void);

int rs_bind(rs_socket *s, const struct sockaddr *sa, socklen_t len);
/* backlog < 0 picks min(SOMAXCONN, 128), as Python's listen(). */
int rs_listen(rs_socket *s, int backlog);

/* Connect. Blocking or with a timeout: 0 once connected, -ETIMEDOUT, or the connect error
 * (-ECONNREFUSED, ...). Non-blocking: 0, or -EINPROGRESS; completion is then seen as
 * writability and SO_ERROR, as with connect(2). */
int rs_connect(rs_socket *s, const struct sockaddr *sa, socklen_t len);

/* Accept a connection: *conn is a new close-on-exec socket whose timeout follows socket.py: the
 * default timeout, except blocking when the default is RS_TIMEOUT_NONE. peer/peerlen may be NULL.
 * -EAGAIN (non-blocking), -ETIMEDOUT, -EINVAL (not listening), -EMFILE. */
int rs_accept(rs_socket *s, rs_socket **conn, struct sockaddr_storage *peer, socklen_t *peerlen);

/* One send: bytes sent (possibly fewer than len), -EAGAIN, -ETIMEDOUT, -EPIPE (never SIGPIPE),
 * -ECONNRESET. flags are send(2)'s. */
ssize_t rs_send(rs_socket *s, const void *buf, size_t len, int flags);

/* Send all of buf. The timeout bounds the whole call (socket.py >= 3.5). Returns len, or the
 * error; rs_sendall_ex also reports how much was sent before an error in *sent. */
ssize_t rs_sendall(rs_socket *s, const void *buf, size_t len, int flags);
ssize_t rs_sendall_ex(rs_socket *s, const void *buf, size_t len, int flags, size_t *sent);

/* One receive: bytes received, 0 = orderly EOF (or len 0), -EAGAIN, -ETIMEDOUT. flags are
 * recv(2)'s (MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT, MSG_OOB pass through). */
ssize_t rs_recv(rs_socket *s, void *buf, size_t len, int flags);

/* Send buf with nfds file descriptors in one SCM_RIGHTS message (socket.send_fds). AF_UNIX only.
 * nfds may be 0; at most RS_MAX_FDS. Returns bytes sent (the fds travel with the first byte). */
#define RS_MAX_FDS 253
ssize_t rs_send_fds(rs_socket *s, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/* Receive into buf and up to *nfds descriptors (socket.recv_fds): on entry *nfds is the capacity
 * of fds (at most RS_MAX_FDS), on return the number received (close-on-exec, owned by the caller).
 * Descriptors beyond the capacity are discarded by the kernel (MSG_CTRUNC), as in Python. Returns
 * bytes received, 0 at EOF, or an error as rs_recv. */
ssize_t rs_recv_fds(rs_socket *s, void *buf, size_t len, int *fds, size_t *nfds, int flags);

/* Send one message to the address to (socket.sendto), on an unconnected datagram socket for
 * instance; to NULL is rs_send (tolen ignored). MSG_NOSIGNAL is always added; the timeout and
 * MSG_DONTWAIT apply as for rs_send. Returns bytes sent, or rs_send's errors and -EINVAL (tolen
 * below sizeof(sa_family_t), or too short for the family), -EFAULT (buf NULL, len > 0),
 * -EMSGSIZE (datagram too large), -EDESTADDRREQ, -EISCONN. */
ssize_t rs_sendto(rs_socket *s, const void *buf, size_t len, int flags, const struct sockaddr *to,
                  socklen_t tolen);

/* Receive one message and its sender's address (socket.recvfrom_into): from/fromlen both NULL
 * (then exactly rs_recv) or both set; on entry *fromlen is the room in from, on return the
 * address's full length as recvfrom(2) gives it (the address is cut to the room; 0 when the
 * socket has no peer address to give, as for TCP). A datagram longer than len is truncated and
 * the rest discarded: the return is len, or the datagram's real length with MSG_TRUNC in flags.
 * Errors as rs_recv: -EAGAIN, -ETIMEDOUT, -EFAULT (buf NULL, len > 0), -EINVAL (one of
 * from/fromlen NULL). */
ssize_t rs_recvfrom(rs_socket *s, void *buf, size_t len, int flags, struct sockaddr *from,
                    socklen_t *fromlen);

/* sendmsg(2) through the socket's loop (socket.sendmsg): msg's iovecs, msg_name (NULL or
 * namelen 0 for a connected socket) and ancillary data as the caller built them; msg is only
 * read. MSG_NOSIGNAL is always added; the timeout and MSG_DONTWAIT apply as for rs_send.
 * Returns bytes sent (at most 0x7ffff000 per call, the kernel's cap), or -EINVAL (msg NULL,
 * msg_iovlen above IOV_MAX, msg_namelen 1), -EFAULT (msg_iov NULL, or an iovec with a NULL
 * base and a length), and sendmsg(2)'s errors as rs_send. */
ssize_t rs_sendmsg(rs_socket *s, const struct msghdr *msg, int flags);

/* recvmsg(2) through the socket's loop (socket.recvmsg_into): scatters into msg's iovecs and
 * fills msg_name/msg_namelen, msg_control/msg_controllen and msg_flags (MSG_TRUNC, MSG_CTRUNC,
 * ...) as recvmsg(2) does. MSG_CMSG_CLOEXEC is always added (and kept out of msg_flags unless
 * the caller passed it): descriptors received (SCM_RIGHTS) are close-on-exec and the caller's
 * to close. The timeout and MSG_DONTWAIT apply as for rs_recv; MSG_WAITALL on a stream waits
 * for every iovec to fill (or EOF, an error, the deadline) on every backend, and is ignored by
 * datagram sockets, as recvmsg(2) does. Returns bytes
 * received, 0 at EOF, or -EINVAL/-EFAULT as rs_sendmsg and the errors of rs_recv. */
ssize_t rs_recvmsg(rs_socket *s, struct msghdr *msg, int flags);

/* socket.detach(): free s without closing its fd, and return the fd (now the caller's to
 * close). The fd stays close-on-exec; it is left blocking when the timeout was RS_TIMEOUT_NONE
 * and O_NONBLOCK otherwise, as socket.py leaves it. -EBUSY (s unchanged) while a call on s is
 * in progress in another thread or an rs_file made from s is open; -EBADF for NULL or a socket
 * rs_close has closed (while a file still holds it). */
int rs_detach(rs_socket *s);

/* Send count bytes (0 = to EOF) of file fd from *offset, or from fd's file position when offset is
 * NULL (and advance it), like socket.sendfile. Returns the bytes sent: fewer than count only at
 * EOF (the file's size when the call began); 0 for an offset at or past EOF.
 *
 * How: on io_uring, transfers of 8 MiB or more go file -> pipe -> socket by linked SPLICE
 * operations (pipes from a per-loop pool; when the process has none to spare, sendfile(2)) and
 * smaller ones by sendfile(2); on epoll/poll sendfile(2); a read + send loop for sources that are
 * not regular files or block devices (pipes, sockets, character devices: their data is sent,
 * unlike CPython; offset must then be NULL or point to 0, and only counts) and whenever the
 * kernel refuses splice/sendfile (-EINVAL, -ENOSYS). The environment variable
 * RINGSOCK_SENDFILE=splice|sendfile|readsend|auto picks the path for regular files (tests,
 * benchmarks); another value makes every call fail with -EINVAL.
 *
 * The socket's timeout bounds each wait for the peer (not the whole call), as socket.py's.
 * Errors: -EINVAL for a non-stream or non-blocking (timeout 0) socket or a negative offset,
 * -EBADF, -ESPIPE (nonzero offset into a stream source), -ETIMEDOUT, -EPIPE, -ECONNRESET, and
 * read errors of fd. On an error after some bytes went out, the error is returned and *offset (or
 * the file position) says exactly how many bytes the socket accepted from this call — bytes
 * still in the pipe are never counted — so the caller can resume from there. SIGPIPE is never
 * raised. */
ssize_t rs_sendfile(rs_socket *s, int fd, off_t *offset, size_t count);

/* How rs_sendfile moved bytes on the calling thread's default loop, for tests and benchmarks. */
struct rs_sendfile_stats {
    unsigned long long calls;          /* rs_sendfile calls that got as far as sending */
    unsigned long long splice_bytes;   /* bytes sent file -> pipe -> socket (SPLICE) */
    unsigned long long sendfile_bytes; /* bytes sent by sendfile(2) */
    unsigned long long readsend_bytes; /* bytes sent by read + send */
    unsigned long long fallbacks;      /* a path the kernel refused, finished by the next one */
    unsigned long long pipes_made;     /* pool pipes created */
    unsigned long long pipe_misses;    /* splice wanted but no pool pipe to be had: sendfile(2) */
};
/* Copy the counters into *st (zeros when the thread has no default loop). 0, or -EINVAL. */
int rs_sendfile_stats(struct rs_sendfile_stats *st);

int rs_getsockname(const rs_socket *s, struct sockaddr_storage *addr, socklen_t *len);
int rs_getpeername(const rs_socket *s, struct sockaddr_storage *addr, socklen_t *len);
int rs_setsockopt(rs_socket *s, int level, int name, const void *val, socklen_t len);
int rs_getsockopt(rs_socket *s, int level, int name, void *val, socklen_t *len);
/* SHUT_RD, SHUT_WR, SHUT_RDWR. */
int rs_shutdown(rs_socket *s, int how);

/* Close s: 0 (NULL is accepted). Calls blocked on s in other threads are woken (shutdown) and
 * return -EBADF; the fd is closed when the last of them, and the last rs_file made from s, lets
 * go (socket.py's _io_refs). A second rs_close while another thread still holds s returns
 * -EBADF. Using s after its close returned is undefined, as with free(). */
int rs_close(rs_socket *s);

#ifdef __cplusplus
}
#endif
#endif
