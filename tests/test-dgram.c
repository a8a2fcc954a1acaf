/* Suite 'dgram': rs_sendto/rs_recvfrom on unconnected UDP sockets (IPv4, IPv6 loopback, and
 * against Python's socket module), rs_sendmsg/rs_recvmsg with iovecs, addresses and SCM_RIGHTS,
 * the three timeout modes on them, rs_detach, and bad input. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* ---- helpers --------------------------------------------------------------------------------- */

/* Loop tests run once per family: _i 0 is IPv4, 1 is IPv6. */
#define FAMILY_OF(i) ((i) ? AF_INET6 : AF_INET)

static const char *err_or(ssize_t r) { return r < 0 ? rs_err_name((int)r) : "bytes"; }

/* ---- UDP: sendto / recvfrom ------------------------------------------------------------------ */

START_TEST(udp_sendto_recvfrom_reports_sender)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);

    ck_assert_int_eq(rs_sendto(s, "hello", 5, 0, (struct sockaddr *)&ra, rl), 5);
    char buf[64];
    struct sockaddr_storage from;
    memset(&from, 0xa5, sizeof from);
    socklen_t fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    ck_assert_msg((fl == sl && t_same_addr(&from, &sa)),
                  "recvfrom's address is not the sender's getsockname");

    /* a reply to the address recvfrom gave reaches the sender */
    ck_assert_int_eq(rs_sendto(r, "back", 4, 0, (struct sockaddr *)&from, fl), 4);
    struct sockaddr_storage from2;
    socklen_t fl2 = sizeof from2;
    ck_assert_int_eq(rs_recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from2, &fl2), 4);
    ck_assert_int_eq(memcmp(buf, "back", 4), 0);
    ck_assert((fl2 == rl && t_same_addr(&from2, &ra)));

    /* room for less than the address: cut to the room, *fromlen says the full length */
    ck_assert_int_eq(rs_sendto(s, "cut", 3, 0, (struct sockaddr *)&ra, rl), 3);
    unsigned char small[sizeof(struct sockaddr_storage)];
    memset(small, 0xa5, sizeof small);
    socklen_t smalllen = 4;
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)small, &smalllen), 3);
    ck_assert_uint_eq(smalllen, sl);
    ck_assert_int_eq(memcmp(small, &sa, 4), 0);
    ck_assert_uint_eq(small[4], 0xa5); /* nothing written past the room */
    rs_close(r);
    rs_close(s);
}
END_TEST

START_TEST(udp_datagrams_keep_boundaries_and_order)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    static const size_t lens[] = { 1, 1000, 0, 7, 1472, 3 };
    const size_t N = sizeof lens / sizeof lens[0];
    char out[2000], in[2000];
    for (size_t i = 0; i < N; i++) {
        t_fill_pattern(out, lens[i], (uint32_t)(i + 1));
        ck_assert_int_eq(rs_sendto(s, out, lens[i], 0, (struct sockaddr *)&ra, rl), (ssize_t)lens[i]);
    }
    for (size_t i = 0; i < N; i++) {
        t_fill_pattern(out, lens[i], (uint32_t)(i + 1));
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = rs_recvfrom(r, in, sizeof in, 0, (struct sockaddr *)&from, &fl);
        ck_assert_msg(n == (ssize_t)lens[i], "datagram %zu: %zd (%s), want %zu", i, n, err_or(n), lens[i]);
        ck_assert_int_eq(memcmp(in, out, lens[i]), 0);
        ck_assert((fl == sl && t_same_addr(&from, &sa)));
    }
    rs_close(r);
    rs_close(s);
}
END_TEST

START_TEST(udp_long_datagram_is_truncated)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    char out[100], in[100];
    t_fill_pattern(out, sizeof out, 42);
    const struct sockaddr *to = (struct sockaddr *)&ra;

    /* recvfrom: the buffer's length; the rest of the datagram is gone (the next receive gets
     * the next datagram) */
    ck_assert_int_eq(rs_sendto(s, out, 100, 0, to, rl), 100);
    ck_assert_int_eq(rs_sendto(s, "next", 4, 0, to, rl), 4);
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, in, 10, 0, (struct sockaddr *)&from, &fl), 10);
    ck_assert_int_eq(memcmp(in, out, 10), 0);
    fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, in, sizeof in, 0, (struct sockaddr *)&from, &fl), 4);
    ck_assert_int_eq(memcmp(in, "next", 4), 0);

    /* recvfrom with MSG_TRUNC: the datagram's real length, as recvfrom(2) */
    ck_assert_int_eq(rs_sendto(s, out, 100, 0, to, rl), 100);
    fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, in, 10, MSG_TRUNC, (struct sockaddr *)&from, &fl), 100);
    ck_assert((fl == sl && t_same_addr(&from, &sa)));

    /* recvmsg: MSG_TRUNC in msg_flags; with MSG_TRUNC in flags the real length */
    for (int trunc = 0; trunc < 2; trunc++) {
        ck_assert_int_eq(rs_sendto(s, out, 100, 0, to, rl), 100);
        struct iovec iov[2] = { { in, 4 }, { in + 4, 6 } };
        struct msghdr msg = {
            .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov, .msg_iovlen = 2
        };
        ssize_t n = rs_recvmsg(r, &msg, trunc ? MSG_TRUNC : 0);
        ck_assert_msg(n == (trunc ? 100 : 10), "recvmsg (flags %s): %zd (%s)", trunc ? "MSG_TRUNC" : "0", n,
                      err_or(n));
        ck_assert_msg(msg.msg_flags & MSG_TRUNC, "msg_flags %#x lacks MSG_TRUNC", (unsigned)msg.msg_flags);
        ck_assert_int_eq(memcmp(in, out, 10), 0);
        ck_assert((msg.msg_namelen == sl && t_same_addr(&from, &sa)));
    }

    /* a datagram that fits: no MSG_TRUNC */
    ck_assert_int_eq(rs_sendto(s, out, 10, 0, to, rl), 10);
    struct iovec iov = { in, sizeof in };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_flags = MSG_TRUNC };
    ck_assert_int_eq(rs_recvmsg(r, &msg, 0), 10);
    ck_assert_int_eq(msg.msg_flags & MSG_TRUNC, 0);
    rs_close(r);
    rs_close(s);
}
END_TEST

START_TEST(udp_sendmsg_to_address_and_recvmsg_name)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    struct iovec out[3] = { { "one ", 4 }, { "two ", 4 }, { "three", 5 } };
    struct msghdr m = { .msg_name = &ra, .msg_namelen = rl, .msg_iov = out, .msg_iovlen = 3 };
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), 13);
    char buf[32];
    struct sockaddr_storage from;
    struct iovec iov = { buf, sizeof buf };
    struct msghdr in = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1 };
    ck_assert_int_eq(rs_recvmsg(r, &in, 0), 13);
    ck_assert_int_eq(memcmp(buf, "one two three", 13), 0);
    ck_assert((in.msg_namelen == sl && t_same_addr(&from, &sa)));
    ck_assert_int_eq(in.msg_flags & (MSG_TRUNC | MSG_CTRUNC), 0);
    rs_close(r);
    rs_close(s);
}
END_TEST

/* to NULL is rs_send: refused on an unconnected socket, fine on a connected one; from NULL is
 * rs_recv. */
START_TEST(udp_sendto_null_address_is_send)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    ck_assert_int_eq(rs_sendto(s, "x", 1, 0, NULL, 0), -EDESTADDRREQ);
    ck_assert_int_eq(rs_connect(s, (struct sockaddr *)&ra, rl), 0);
    ck_assert_int_eq(rs_sendto(s, "conn", 4, 0, NULL, 0), 4);
    char buf[8];
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, NULL, NULL), 4);
    ck_assert_int_eq(memcmp(buf, "conn", 4), 0);
    rs_close(r);
    rs_close(s);
}
END_TEST

START_TEST(udp_oversized_datagram_is_emsgsize)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    size_t len = 70000; /* above UDP's 65535 */
    char *big = calloc(1, len);
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(rs_sendto(s, big, len, 0, (struct sockaddr *)&ra, rl), -EMSGSIZE);
    free(big);
    /* the socket still works */
    ck_assert_int_eq(rs_sendto(s, "ok", 2, 0, (struct sockaddr *)&ra, rl), 2);
    char buf[4];
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, NULL, NULL), 2);
    rs_close(r);
    rs_close(s);
}
END_TEST

/* On TCP there is no per-message address: *fromlen comes back 0 (Python's recvfrom: None). */
START_TEST(tcp_recvfrom_gives_empty_address)
{
    rs_socket *c, *sv;
    t_tcp_pair(FAMILY_OF(_i), &c, &sv);
    ck_assert_int_eq(rs_sendto(c, "tcp", 3, 0, NULL, 0), 3);
    char buf[8];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(sv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 3);
    ck_assert_int_eq(memcmp(buf, "tcp", 3), 0);
    ck_assert_uint_eq(fl, 0);
    rs_close(c);
    rs_close(sv);
}
END_TEST

/* ---- timeouts -------------------------------------------------------------------------------- */

START_TEST(recvfrom_timeout_expires)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    ck_assert_int_eq(rs_settimeout(r, 0.2), 0);
    char buf[16];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    double t0 = t_now();
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "recvfrom with timeout 0.2");
    ck_assert_uint_eq(fl, sizeof from); /* untouched on failure */

    struct iovec iov = { buf, sizeof buf };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    t0 = t_now();
    ck_assert_int_eq(rs_recvmsg(r, &msg, 0), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "recvmsg with timeout 0.2");

    /* the timed-out receives took nothing: a datagram sent afterwards arrives whole */
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    ck_assert_int_eq(rs_sendto(s, "late", 4, 0, (struct sockaddr *)&ra, rl), 4);
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 4);
    ck_assert_int_eq(memcmp(buf, "late", 4), 0);
    ck_assert((fl == sl && t_same_addr(&from, &sa)));
    rs_close(r);
    rs_close(s);
}
END_TEST

/* Timeout 0 and MSG_DONTWAIT: -EAGAIN at once; then, once a datagram is there, it is taken. */
static void nonblocking_case(int family, bool dontwait)
{
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    int flags = 0;
    if (dontwait)
        flags = MSG_DONTWAIT; /* on a blocking socket */
    else
        ck_assert_int_eq(rs_settimeout(r, 0.0), 0);
    char buf[16];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    double t0 = t_now();
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, flags, (struct sockaddr *)&from, &fl), -EAGAIN);
    struct iovec iov = { buf, sizeof buf };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ck_assert_int_eq(rs_recvmsg(r, &msg, flags), -EAGAIN);
    ck_assert_msg(t_now() - t0 < 0.05, "two non-blocking receives took %.3f s", t_now() - t0);

    ck_assert_int_eq(rs_sendto(s, "now", 3, flags, (struct sockaddr *)&ra, rl), 3);
    ssize_t n = -EAGAIN;
    for (int i = 0; i < 200 && n == -EAGAIN; i++) { /* loopback delivery is quick, not instant */
        fl = sizeof from;
        n = rs_recvfrom(r, buf, sizeof buf, flags, (struct sockaddr *)&from, &fl);
        if (n == -EAGAIN)
            t_sleep(0.005);
    }
    ck_assert_int_eq(n, 3);
    ck_assert((fl == sl && t_same_addr(&from, &sa)));
    rs_close(r);
    rs_close(s);
}

START_TEST(recvfrom_timeout_zero_is_eagain_at_once) { nonblocking_case(FAMILY_OF(_i), false); }
END_TEST

START_TEST(recvfrom_msg_dontwait_is_eagain_at_once) { nonblocking_case(FAMILY_OF(_i), true); }
END_TEST

/* ---- a peer nobody here wrote: Python's socket module --------------------------------------- */

START_TEST(python_udp_echo)
{
    int family = FAMILY_OF(_i);
    static const size_t lens[] = { 1, 1200, 60000 };
    const size_t N = sizeof lens / sizeof lens[0];
    char *const argv[] = { family == AF_INET6 ? "6" : "4", "3", NULL };
    struct t_py py;
    t_py_spawn("udp_echo", argv, &py);
    struct sockaddr_storage peer;
    socklen_t pl;
    t_loopback(family, t_py_port(&py), &peer, &pl);

    struct sockaddr_storage sa;
    socklen_t sl;
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    ck_assert_int_eq(rs_settimeout(s, 10), 0);
    char *out = malloc(65536), *in = malloc(65536);
    ck_assert(out && in);
    for (size_t i = 0; i < N; i++) {
        t_fill_pattern(out, lens[i], (uint32_t)(100 + i));
        ck_assert_int_eq(rs_sendto(s, out, lens[i], 0, (struct sockaddr *)&peer, pl), (ssize_t)lens[i]);
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = rs_recvfrom(s, in, 65536, 0, (struct sockaddr *)&from, &fl);
        ck_assert_msg(n == (ssize_t)lens[i], "echo %zu: %zd (%s), want %zu", i, n, err_or(n), lens[i]);
        ck_assert_int_eq(memcmp(in, out, lens[i]), 0);
        ck_assert_msg((fl == pl && t_same_addr(&from, &peer)), "the echo came from elsewhere than the peer");
    }
    char line[256];
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, 10), 0);
    ck_assert_str_eq(line, "ok");
    ck_assert_int_eq(t_py_wait(&py, 10), 0);
    free(out);
    free(in);
    rs_close(s);
}
END_TEST

/* ---- sendmsg / recvmsg on streams ------------------------------------------------------------ */

START_TEST(tcp_sendmsg_three_iovecs_arrive_contiguous)
{
    rs_socket *c, *sv;
    t_tcp_pair(FAMILY_OF(_i), &c, &sv);
    struct iovec iov[3] = { { "Hello, ", 7 }, { "", 0 }, { "gathered world", 14 } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
    ck_assert_int_eq(rs_sendmsg(c, &m, 0), 21);
    iov[1] = (struct iovec){ "!", 1 };
    ck_assert_int_eq(rs_sendmsg(c, &m, 0), 22);
    char buf[64];
    ck_assert_int_eq(rs_recv(sv, buf, 43, MSG_WAITALL), 43);
    ck_assert_int_eq(memcmp(buf, "Hello, gathered worldHello, !gathered world", 43), 0);
    rs_close(c);
    rs_close(sv);
}
END_TEST

START_TEST(tcp_recvmsg_two_iovecs_scatter)
{
    rs_socket *c, *sv;
    t_tcp_pair(FAMILY_OF(_i), &c, &sv);
    ck_assert_int_eq(rs_sendall(c, "0123456789AB", 12, 0), 12);
    /* wait until all 12 bytes are queued, so that one receive takes them all */
    char peek[12];
    ck_assert_int_eq(rs_recv(sv, peek, 12, MSG_PEEK | MSG_WAITALL), 12);
    char a[5], b[10];
    memset(b, '-', sizeof b);
    struct iovec iov[2] = { { a, sizeof a }, { b, sizeof b } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2, .msg_flags = -1 };
    ck_assert_int_eq(rs_recvmsg(sv, &m, 0), 12);
    ck_assert_int_eq(memcmp(a, "01234", 5), 0);
    ck_assert_int_eq(memcmp(b, "56789AB---", 10), 0);
    ck_assert_int_eq(m.msg_flags, 0);
    /* EOF is 0 */
    ck_assert_int_eq(rs_shutdown(c, SHUT_WR), 0);
    ck_assert_int_eq(rs_recvmsg(sv, &m, 0), 0);
    rs_close(c);
    rs_close(sv);
}
END_TEST

/* A peer that sends its pieces with pauses between them, so that a receive sees them arrive
 * one at a time. */
struct trickle {
    int fd;
    const char *pieces[4];
    bool shut; /* SHUT_WR after the last piece */
};

static void *trickle_main(void *p)
{
    struct trickle *t = p;
    for (int i = 0; i < 4 && t->pieces[i]; i++) {
        t_sleep(0.05);
        size_t n = strlen(t->pieces[i]);
        if (send(t->fd, t->pieces[i], n, MSG_NOSIGNAL) != (ssize_t)n)
            return (void *)1;
    }
    if (t->shut)
        shutdown(t->fd, SHUT_WR);
    return NULL;
}

/* MSG_WAITALL on a stream: every iovec filled on every backend, though the bytes come in three
 * sends (epoll/poll gather them across readiness waits, io_uring in the kernel); EOF first ends it
 * with what came. */
START_TEST(tcp_recvmsg_waitall_fills_every_iovec)
{
    rs_socket *c, *sv;
    t_tcp_pair(FAMILY_OF(_i), &c, &sv);
    ck_assert_int_eq(rs_settimeout(sv, 5.0), 0);
    struct trickle t = { .fd = rs_socket_fd(c), .pieces = { "abc", "defg", "hij" } };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, trickle_main, &t), 0);
    char a[4], b[6];
    struct iovec iov[2] = { { a, sizeof a }, { b, sizeof b } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2, .msg_flags = -1 };
    ssize_t n = rs_recvmsg(sv, &m, MSG_WAITALL);
    void *tr;
    ck_assert_int_eq(pthread_join(th, &tr), 0);
    ck_assert_ptr_null(tr);
    ck_assert_msg(n == 10, "rs_recvmsg(MSG_WAITALL) gave %zd (%s), want 10", n, err_or(n));
    ck_assert_int_eq(memcmp(a, "abcd", 4), 0);
    ck_assert_int_eq(memcmp(b, "efghij", 6), 0);
    ck_assert_int_eq(m.msg_flags, 0);

    struct trickle t2 = { .fd = rs_socket_fd(c), .pieces = { "xy", "z" }, .shut = true };
    ck_assert_int_eq(pthread_create(&th, NULL, trickle_main, &t2), 0);
    memset(a, 0, sizeof a);
    n = rs_recvmsg(sv, &m, MSG_WAITALL);
    ck_assert_int_eq(pthread_join(th, &tr), 0);
    ck_assert_msg(n == 3, "MSG_WAITALL up to EOF gave %zd (%s), want 3", n, err_or(n));
    ck_assert_int_eq(memcmp(a, "xyz", 3), 0);
    rs_close(c);
    rs_close(sv);
}
END_TEST

/* A datagram socket ignores MSG_WAITALL (recvmsg(2)): one datagram per call on every backend,
 * never two run together and never a wait for more. */
START_TEST(udp_waitall_returns_one_datagram)
{
    int family = FAMILY_OF(_i);
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(family, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(family, SOCK_DGRAM, &sa, &sl);
    ck_assert_int_eq(rs_settimeout(r, 5.0), 0);
    static const char *const dg[] = { "hello", "world!", "third datagram" };
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rs_sendto(s, dg[i], strlen(dg[i]), 0, (struct sockaddr *)&ra, rl),
                         (ssize_t)strlen(dg[i]));
    char buf[100];
    double t0 = t_now();
    ck_assert_int_eq(rs_recv(r, buf, sizeof buf, MSG_WAITALL), 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, MSG_WAITALL, (struct sockaddr *)&from, &fl), 6);
    ck_assert_int_eq(memcmp(buf, "world!", 6), 0);
    ck_assert((fl == sl && t_same_addr(&from, &sa)));
    struct iovec iov = { buf, sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    ck_assert_int_eq(rs_recvmsg(r, &m, MSG_WAITALL), 14);
    ck_assert_int_eq(memcmp(buf, "third datagram", 14), 0);
    ck_assert_msg(t_now() - t0 < t_slack(), "three queued datagrams took %.3f s", t_now() - t0);
    rs_close(r);
    rs_close(s);
}
END_TEST

struct drain_arg {
    rs_socket *s;
    size_t want, got;
    uint64_t sum;
};

static void *drain_main(void *p)
{
    struct drain_arg *d = p;
    char *buf = malloc(65536);
    if (!buf)
        return NULL;
    while (d->got < d->want) {
        /* scatter into two uneven pieces so that iovec boundaries move around */
        size_t left = d->want - d->got;
        struct iovec iov[2] = { { buf, 1000 }, { buf + 1000, 64536 } };
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
        ssize_t n = rs_recvmsg(d->s, &m, 0);
        if (n <= 0)
            break;
        if ((size_t)n > left)
            n = (ssize_t)left;
        d->sum = t_fnv1a(d->sum, buf, (size_t)n);
        d->got += (size_t)n;
    }
    free(buf);
    return NULL;
}

/* Short sends: a caller resumes a large gathered send by advancing its iovecs; the receiver
 * gets every byte in order. */
START_TEST(tcp_sendmsg_large_gather_resumed_checksummed)
{
    rs_socket *c, *sv;
    t_tcp_pair(AF_INET, &c, &sv);
    ck_assert_int_eq(rs_settimeout(c, 10), 0);
    ck_assert_int_eq(rs_settimeout(sv, 10), 0);
    static const size_t sizes[3] = { 300000, 1, 700001 };
    size_t total = sizes[0] + sizes[1] + sizes[2];
    char *all = malloc(total);
    ck_assert_ptr_nonnull(all);
    t_fill_pattern(all, total, 7);
    /* three separate buffers, so that the gather is real */
    char *part[3];
    struct iovec iov[3];
    for (size_t i = 0, off = 0; i < 3; off += sizes[i], i++) {
        part[i] = malloc(sizes[i]);
        ck_assert_ptr_nonnull(part[i]);
        memcpy(part[i], all + off, sizes[i]);
        iov[i] = (struct iovec){ part[i], sizes[i] };
    }
    struct drain_arg d = { .s = sv, .want = total, .sum = T_FNV_INIT };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, drain_main, &d), 0);
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
    size_t sent = 0;
    int calls = 0;
    while (sent < total && calls < 100000) {
        ssize_t n = rs_sendmsg(c, &m, 0);
        ck_assert_msg(n > 0, "sendmsg after %zu bytes: %zd (%s)", sent, n, err_or(n));
        sent += (size_t)n;
        calls++;
        size_t k = (size_t)n;
        while (m.msg_iovlen && k >= m.msg_iov[0].iov_len) {
            k -= m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (k) {
            m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + k;
            m.msg_iov[0].iov_len -= k;
        }
    }
    ck_assert_uint_eq(sent, total);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_uint_eq(d.got, total);
    ck_assert_msg(d.sum == t_fnv1a(T_FNV_INIT, all, total), "checksum differs");
    for (int i = 0; i < 3; i++)
        free(part[i]);
    free(all);
    rs_close(c);
    rs_close(sv);
}
END_TEST

/* ---- sendmsg / recvmsg with SCM_RIGHTS ------------------------------------------------------- */

union ctl {
    char buf[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
};

static void send_fds_msg(rs_socket *s, const int *fds, size_t n)
{
    union ctl ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { "x", 1 };
    struct msghdr m = { .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), 1);
}

/* The descriptors in m's SCM_RIGHTS messages, into out (at most cap); returns how many. */
static size_t fds_of(struct msghdr *m, int *out, size_t cap)
{
    size_t k = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            ck_assert_uint_lt(k, cap);
            memcpy(&out[k++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    return k;
}

START_TEST(unix_sendmsg_scm_rights_fd_is_usable)
{
    for (int type = 0; type < 2; type++) {
        rs_socket *p[2];
        ck_assert_int_eq(rs_socketpair(p, AF_UNIX, type ? SOCK_DGRAM : SOCK_STREAM, 0), 0);
        int pipefd[2];
        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        send_fds_msg(p[0], &pipefd[1], 1);
        ck_assert_int_eq(close(pipefd[1]), 0); /* the one in flight keeps the pipe open */

        union ctl ctl;
        char c;
        struct iovec iov = { &c, 1 };
        struct msghdr m = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf
        };
        ck_assert_int_eq(rs_recvmsg(p[1], &m, 0), 1);
        ck_assert_int_eq(c, 'x');
        ck_assert_int_eq(m.msg_flags & MSG_CTRUNC, 0);
        int got[2];
        ck_assert_uint_eq(fds_of(&m, got, 2), 1);
        ck_assert_msg(fcntl(got[0], F_GETFD) & FD_CLOEXEC, "received fd is not close-on-exec");
        ck_assert_int_eq(write(got[0], "via", 3), 3);
        ck_assert_int_eq(close(got[0]), 0);
        char buf[8];
        ck_assert_int_eq(read(pipefd[0], buf, sizeof buf), 3);
        ck_assert_int_eq(memcmp(buf, "via", 3), 0);
        ck_assert_int_eq(read(pipefd[0], buf, sizeof buf), 0); /* every write end is closed */
        ck_assert_int_eq(close(pipefd[0]), 0);
        rs_close(p[0]);
        rs_close(p[1]);
    }
}
END_TEST

/* Room for one descriptor, two sent: MSG_CTRUNC, one received (and closed here), the other
 * discarded by the kernel — nothing leaks (t_teardown counts fds). CMSG_LEN, not CMSG_SPACE:
 * the padding of CMSG_SPACE(sizeof(int)) on 64-bit is room for a second int. */
START_TEST(unix_recvmsg_short_control_is_ctrunc)
{
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, AF_UNIX, SOCK_STREAM, 0), 0);
    int pipefd[2];
    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    send_fds_msg(p[0], pipefd, 2);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    char c;
    struct iovec iov = { &c, 1 };
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = CMSG_LEN(sizeof(int))
    };
    ck_assert_int_eq(rs_recvmsg(p[1], &m, 0), 1);
    ck_assert_msg(m.msg_flags & MSG_CTRUNC, "msg_flags %#x lacks MSG_CTRUNC", (unsigned)m.msg_flags);
    int got[2];
    size_t n = fds_of(&m, got, 2);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_ne(fcntl(got[0], F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(m.msg_flags & MSG_CMSG_CLOEXEC, 0); /* not asked for, not reported */
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(close(got[i]), 0);
    ck_assert_int_eq(close(pipefd[0]), 0);
    ck_assert_int_eq(close(pipefd[1]), 0);
    rs_close(p[0]);
    rs_close(p[1]);
}
END_TEST

/* ---- detach ---------------------------------------------------------------------------------- */

START_TEST(detach_returns_fd_that_still_works)
{
    rs_socket *c, *sv;
    t_tcp_pair(FAMILY_OF(_i), &c, &sv);
    int fd = rs_socket_fd(c);
    ck_assert_int_ge(fd, 0);
    ck_assert(rs_gettimeout(c) == RS_TIMEOUT_NONE);
    ck_assert_int_eq(rs_detach(c), fd);
    /* blocking again, as socket.py leaves a socket whose timeout was None; still close-on-exec */
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(send(fd, "after", 5, MSG_NOSIGNAL), 5);
    char buf[8];
    ck_assert_int_eq(rs_recv(sv, buf, 5, MSG_WAITALL), 5);
    ck_assert_int_eq(memcmp(buf, "after", 5), 0);
    ck_assert_int_eq(rs_send(sv, "back", 4, 0), 4);
    ck_assert_int_eq(recv(fd, buf, 4, MSG_WAITALL), 4);
    ck_assert_int_eq(memcmp(buf, "back", 4), 0);
    ck_assert_int_eq(close(fd), 0); /* the caller's; the peer sees EOF */
    ck_assert_int_eq(rs_recv(sv, buf, sizeof buf, 0), 0);
    rs_close(sv);
}
END_TEST

START_TEST(detach_with_timeout_keeps_fd_nonblocking)
{
    struct sockaddr_storage a;
    socklen_t al;
    rs_socket *u = t_bound(AF_INET, SOCK_DGRAM, &a, &al);
    ck_assert_int_eq(rs_settimeout(u, 0.5), 0);
    int fd = rs_socket_fd(u);
    ck_assert_int_eq(rs_detach(u), fd);
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    char c;
    ck_assert_int_eq(recv(fd, &c, 1, 0), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(close(fd), 0);
}
END_TEST

START_TEST(detach_busy_while_file_open_then_ebadf_after_close)
{
    rs_socket *c, *sv;
    t_tcp_pair(AF_INET, &c, &sv);
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, c, "r", -1), 0);
    ck_assert_int_eq(rs_detach(c), -EBUSY);
    /* refused without harm: the socket and its file still work */
    ck_assert_int_eq(rs_send(c, "s", 1, 0), 1);
    ck_assert_int_eq(rs_send(sv, "file\n", 5, 0), 5);
    char line[16];
    ck_assert_int_eq(rs_file_readline(f, line, sizeof line), 5);
    ck_assert_int_eq(memcmp(line, "file\n", 5), 0);
    ck_assert_int_eq(rs_file_close(f), 0);
    /* the file gone, detach works */
    int fd = rs_socket_fd(c);
    ck_assert_int_eq(rs_detach(c), fd);
    ck_assert_int_eq(close(fd), 0);

    /* rs_close with a file open leaves s alive but closed: detach is -EBADF */
    rs_socket *c2, *sv2;
    t_tcp_pair(AF_INET, &c2, &sv2);
    ck_assert_int_eq(rs_makefile(&f, c2, "r", -1), 0);
    ck_assert_int_eq(rs_close(c2), 0);
    ck_assert_int_eq(rs_detach(c2), -EBADF);
    ck_assert_int_eq(rs_file_close(f), 0); /* the last reference: the fd closes */
    char b;
    ck_assert_int_eq(rs_recv(sv2, &b, 1, 0), 0);
    rs_close(sv2);
    rs_close(sv);
}
END_TEST

struct blocker {
    rs_socket *s;
    _Atomic pid_t tid;
    ssize_t r;
    char buf[8];
};

static void *blocker_main(void *p)
{
    struct blocker *b = p;
    atomic_store(&b->tid, (pid_t)syscall(SYS_gettid));
    b->r = rs_recv(b->s, b->buf, sizeof b->buf, 0);
    return NULL;
}

/* Whether thread tid sits in the syscall a backend waits in (/proc/.../syscall's first field):
 * only a call in progress does that, so the call has begun. */
static bool in_backend_wait(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    long nr = -1;
    if (fscanf(f, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    static const long waits[] = {
#ifdef SYS_io_uring_enter
        SYS_io_uring_enter,
#endif
#ifdef SYS_epoll_wait
        SYS_epoll_wait,
#endif
#ifdef SYS_epoll_pwait
        SYS_epoll_pwait,
#endif
#ifdef SYS_epoll_pwait2
        SYS_epoll_pwait2,
#endif
#ifdef SYS_poll
        SYS_poll,
#endif
#ifdef SYS_ppoll
        SYS_ppoll,
#endif
    };
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++)
        if (nr == waits[i])
            return true;
    return false;
}

START_TEST(detach_busy_while_call_in_progress)
{
    rs_socket *c, *sv;
    t_tcp_pair(AF_INET, &c, &sv);
    ck_assert_int_eq(rs_settimeout(c, 10), 0); /* the blocked call ends on its own if all else fails */
    struct blocker b = { .s = c };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, blocker_main, &b), 0);
    bool waiting = false;
    for (int i = 0; i < 1000 && !waiting; i++) {
        pid_t tid = atomic_load(&b.tid);
        waiting = tid > 0 && in_backend_wait(tid);
        if (!waiting)
            t_sleep(0.005);
    }
    ck_assert_msg(waiting, "the receiving thread never reached its wait");
    ck_assert_int_eq(rs_detach(c), -EBUSY);
    ck_assert_int_eq(rs_send(sv, "wake", 4, 0), 4);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(b.r, 4);
    ck_assert_int_eq(memcmp(b.buf, "wake", 4), 0);
    int fd = rs_socket_fd(c);
    ck_assert_int_eq(rs_detach(c), fd);
    ck_assert_int_eq(close(fd), 0);
    rs_close(sv);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------- */

START_TEST(null_socket_is_ebadf)
{
    struct sockaddr_storage a;
    socklen_t al;
    t_loopback(AF_INET, 9, &a, &al);
    char buf[4] = "abc";
    struct iovec iov = { buf, 3 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    socklen_t fl = sizeof a;
    ck_assert_int_eq(rs_sendto(NULL, buf, 3, 0, (struct sockaddr *)&a, al), -EBADF);
    ck_assert_int_eq(rs_sendto(NULL, buf, 3, 0, NULL, 0), -EBADF);
    ck_assert_int_eq(rs_sendto(NULL, NULL, 3, 0, (struct sockaddr *)&a, 0), -EBADF);
    ck_assert_int_eq(rs_recvfrom(NULL, buf, 3, 0, (struct sockaddr *)&a, &fl), -EBADF);
    ck_assert_int_eq(rs_recvfrom(NULL, buf, 3, 0, NULL, NULL), -EBADF);
    ck_assert_int_eq(rs_recvfrom(NULL, NULL, 3, 0, (struct sockaddr *)&a, NULL), -EBADF);
    ck_assert_int_eq(rs_sendmsg(NULL, &m, 0), -EBADF);
    ck_assert_int_eq(rs_sendmsg(NULL, NULL, 0), -EBADF);
    ck_assert_int_eq(rs_recvmsg(NULL, &m, 0), -EBADF);
    ck_assert_int_eq(rs_recvmsg(NULL, NULL, 0), -EBADF);
    ck_assert_int_eq(rs_detach(NULL), -EBADF);
}
END_TEST

START_TEST(bad_arguments_are_refused_and_socket_stays_usable)
{
    struct sockaddr_storage ra, sa;
    socklen_t rl, sl;
    rs_socket *r = t_bound(AF_INET, SOCK_DGRAM, &ra, &rl);
    rs_socket *s = t_bound(AF_INET, SOCK_DGRAM, &sa, &sl);
    const struct sockaddr *to = (struct sockaddr *)&ra;
    char buf[16] = "b";
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;

    /* sendto / recvfrom */
    ck_assert_int_eq(rs_sendto(s, NULL, 3, 0, to, rl), -EFAULT);
    ck_assert_int_eq(rs_sendto(s, "x", 1, 0, to, 0), -EINVAL);
    ck_assert_int_eq(rs_sendto(s, "x", 1, 0, to, 1), -EINVAL);
    ck_assert_int_eq(rs_sendto(s, "x", 1, 0, to, 4), -EINVAL); /* the kernel's: short for AF_INET */
    ck_assert_int_eq(rs_recvfrom(r, NULL, 3, 0, (struct sockaddr *)&from, &fl), -EFAULT);
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, NULL), -EINVAL);
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, NULL, &fl), -EINVAL);
    ck_assert_uint_eq(fl, sizeof from);

    /* sendmsg / recvmsg */
    ck_assert_int_eq(rs_sendmsg(s, NULL, 0), -EINVAL);
    ck_assert_int_eq(rs_recvmsg(r, NULL, 0), -EINVAL);
    struct iovec *many = calloc(IOV_MAX + 1, sizeof *many);
    ck_assert_ptr_nonnull(many);
    char ones[IOV_MAX];
    memset(ones, '1', sizeof ones);
    for (size_t i = 0; i <= IOV_MAX; i++)
        many[i] = (struct iovec){ &ones[i % IOV_MAX], 1 };
    struct msghdr m = { .msg_name = &ra, .msg_namelen = rl, .msg_iov = many, .msg_iovlen = IOV_MAX + 1 };
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), -EINVAL);
    ck_assert_int_eq(rs_recvmsg(r, &m, 0), -EINVAL);
    m.msg_iovlen = IOV_MAX; /* the limit itself is fine: one datagram of IOV_MAX bytes */
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), IOV_MAX);
    m.msg_iov = NULL;
    m.msg_iovlen = 1;
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), -EFAULT);
    ck_assert_int_eq(rs_recvmsg(r, &m, 0), -EFAULT);
    struct iovec holes[2] = { { buf, 1 }, { NULL, 5 } };
    m.msg_iov = holes;
    m.msg_iovlen = 2;
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), -EFAULT);
    ck_assert_int_eq(rs_recvmsg(r, &m, 0), -EFAULT);
    holes[1] = (struct iovec){ NULL, 0 }; /* no length: no buffer needed */
    m.msg_namelen = 1;
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), -EINVAL);
    m.msg_namelen = rl;
    m.msg_control = NULL;
    m.msg_controllen = 64;
    ck_assert_int_lt(rs_sendmsg(s, &m, 0), 0); /* the kernel's refusal, whatever the backend */
    m.msg_controllen = 0;
    ck_assert_int_eq(rs_sendmsg(s, &m, 0), 1);

    /* nothing above broke either socket: the two datagrams that went out arrive */
    fl = sizeof from;
    ck_assert_int_eq(rs_recvfrom(r, ones, sizeof ones, 0, (struct sockaddr *)&from, &fl), IOV_MAX);
    ck_assert((fl == sl && t_same_addr(&from, &sa)));
    ck_assert_int_eq(rs_recvfrom(r, buf, sizeof buf, 0, NULL, NULL), 1);
    free(many);
    rs_close(r);
    rs_close(s);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("dgram");
    TCase *tc = t_tcase(s, "udp", 10);
    tcase_add_loop_test(tc, udp_sendto_recvfrom_reports_sender, 0, 2);
    tcase_add_loop_test(tc, udp_datagrams_keep_boundaries_and_order, 0, 2);
    tcase_add_loop_test(tc, udp_long_datagram_is_truncated, 0, 2);
    tcase_add_loop_test(tc, udp_sendmsg_to_address_and_recvmsg_name, 0, 2);
    tcase_add_loop_test(tc, udp_sendto_null_address_is_send, 0, 2);
    tcase_add_loop_test(tc, udp_oversized_datagram_is_emsgsize, 0, 2);
    tcase_add_loop_test(tc, tcp_recvfrom_gives_empty_address, 0, 2);

    tc = t_tcase(s, "timeout", 10);
    tcase_add_loop_test(tc, recvfrom_timeout_expires, 0, 2);
    tcase_add_loop_test(tc, recvfrom_timeout_zero_is_eagain_at_once, 0, 2);
    tcase_add_loop_test(tc, recvfrom_msg_dontwait_is_eagain_at_once, 0, 2);

    tc = t_tcase(s, "python", 30);
    tcase_add_loop_test(tc, python_udp_echo, 0, 2);

    tc = t_tcase(s, "msg", 30);
    tcase_add_loop_test(tc, tcp_sendmsg_three_iovecs_arrive_contiguous, 0, 2);
    tcase_add_loop_test(tc, tcp_recvmsg_two_iovecs_scatter, 0, 2);
    tcase_add_loop_test(tc, tcp_recvmsg_waitall_fills_every_iovec, 0, 2);
    tcase_add_loop_test(tc, udp_waitall_returns_one_datagram, 0, 2);
    tcase_add_test(tc, tcp_sendmsg_large_gather_resumed_checksummed);
    tcase_add_test(tc, unix_sendmsg_scm_rights_fd_is_usable);
    tcase_add_test(tc, unix_recvmsg_short_control_is_ctrunc);

    tc = t_tcase(s, "detach", 15);
    tcase_add_loop_test(tc, detach_returns_fd_that_still_works, 0, 2);
    tcase_add_test(tc, detach_with_timeout_keeps_fd_nonblocking);
    tcase_add_test(tc, detach_busy_while_file_open_then_ebadf_after_close);
    tcase_add_test(tc, detach_busy_while_call_in_progress);

    tc = t_tcase(s, "bad_input", 5);
    tcase_add_test(tc, null_socket_is_ebadf);
    tcase_add_test(tc, bad_arguments_are_refused_and_socket_stays_usable);
    return s;
}

int main(void) { return t_run(make_suite()); }
