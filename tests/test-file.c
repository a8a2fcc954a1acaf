/* Suite 'file': rs_makefile and rs_file_* — CPython's FileObjectClassTestCase and its
 * Unbuffered / LineBuffered / SmallBuffered variants and makefile close/refcount tests, Python
 * peers on both ends, and the fixed-buffer and plain paths giving the same results. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

/* CPython's test_socket MSG: 'Michael Gilfix was here\u1234\r\n' in UTF-8. */
static const char MSG[] = "Michael Gilfix was here\xe1\x88\xb4\r\n";
#define MSGLEN (sizeof MSG - 1)

/* The four CPython classes differ only in bufsize: default, 0, 1 (line-buffered writes here,
 * a 1-byte buffer in Python), 2. */
static const long bufsizes[] = { -1, 0, 1, 2 };
static const char *const class_names[] = {
    "FileObjectClassTestCase",
    "UnbufferedFileObjectClassTestCase",
    "LineBufferedFileObjectClassTestCase",
    "SmallBufferedFileObjectClassTestCase",
};

/* ---- helpers --------------------------------------------------------------------------------- */

static void pair(rs_socket **a, rs_socket **b) { t_tcp_pair(AF_INET, a, b); }

static rs_file *mkfile(rs_socket *s, const char *mode, long bufsize)
{
    rs_file *f;
    int r = rs_makefile(&f, s, mode, bufsize);
    ck_assert_msg(r == 0, "rs_makefile(%s, %ld): %s", mode, bufsize, rs_strerror(r));
    return f;
}

static void write_all_file(rs_file *f, const void *buf, size_t n)
{
    ck_assert_int_eq(rs_file_write(f, buf, n), (ssize_t)n);
    ck_assert_int_eq(rs_file_flush(f), 0);
}

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static unsigned long long fixed_ops(void)
{
    rs_loop *loop;
    struct rs_loop_stats st;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    ck_assert_int_eq(rs_loop_stats(loop, &st), 0);
    return st.fixed_buf_ops;
}

/* Wait (bounded) until s has at least n bytes readable. */
static void wait_readable(rs_socket *s, size_t n)
{
    char tmp[256];
    for (int i = 0; i < 500; i++) {
        ssize_t r = recv(rs_socket_fd(s), tmp, sizeof tmp < n ? sizeof tmp : n, MSG_PEEK | MSG_DONTWAIT);
        if (r >= (ssize_t)n || (r > 0 && (size_t)r == sizeof tmp))
            return;
        t_sleep(0.005);
    }
    ck_abort_msg("data did not arrive");
}

/* A thread that sends pieces with pauses (a slow writer). */
struct slow_writer {
    rs_socket *s;
    const char *data;
    size_t len, piece;
    double pause;
};

static void *slow_writer_main(void *arg)
{
    struct slow_writer *w = arg;
    for (size_t off = 0; off < w->len; off += w->piece) {
        t_sleep(w->pause);
        size_t k = w->len - off < w->piece ? w->len - off : w->piece;
        if (rs_sendall(w->s, w->data + off, k, 0) != (ssize_t)k)
            return (void *)1;
    }
    return NULL;
}

/* ---- the CPython FileObjectClassTestCase family (loop index = class) ------------------------ */

START_TEST(testReadAfterTimeout)
{
    /* bpo-7322: after a read times out, the file refuses every later read; writes still work */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rwb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    write_all_file(wf, MSG, 3);
    ck_assert_int_eq(rs_settimeout(srv, 0.2), 0);
    char buf[16];
    ck_assert_int_eq(rs_file_read(rf, buf, 3), 3);
    ck_assert_int_eq(memcmp(buf, MSG, 3), 0);
    double t0 = t_now();
    ck_assert_int_eq(rs_file_read(rf, buf, 1), -ETIMEDOUT);
    t_assert_took(t0, 0.2, "timed-out read");
    write_all_file(wf, MSG, MSGLEN); /* data now there: still refused */
    wait_readable(srv, MSGLEN);
    ck_assert_int_eq(rs_file_read(rf, buf, 1), -EIO);
    ck_assert_int_eq(rs_file_read1(rf, buf, 1), -EIO);
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), -EIO);
    const void *p;
    ck_assert_int_eq(rs_file_peek(rf, &p), -EIO);
    void *all;
    ck_assert_int_eq(rs_file_read_all(rf, &all), -EIO);
    /* the writing half is not poisoned */
    ck_assert_int_eq(rs_file_write(rf, "ok\n", 3), 3);
    ck_assert_int_eq(rs_file_flush(rf), 0);
    ck_assert_int_eq(rs_recv(cli, buf, 3, MSG_WAITALL), 3);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(testSmallRead)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    write_all_file(wf, MSG, MSGLEN);
    char buf[MSGLEN];
    ck_assert_int_eq(rs_file_read(rf, buf, MSGLEN - 3), (ssize_t)MSGLEN - 3);
    ck_assert_int_eq(rs_file_read(rf, buf + MSGLEN - 3, 3), 3);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(testFullRead)
{
    /* read until EOF after the writer closes its file and socket */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    ck_assert_int_eq(rs_file_write(wf, MSG, MSGLEN), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_file_close(wf), 0); /* close flushes */
    rs_close(cli);
    void *all;
    ck_assert_int_eq(rs_file_read_all(rf, &all), (ssize_t)MSGLEN);
    ck_assert_int_eq(memcmp(all, MSG, MSGLEN), 0);
    free(all);
    char buf[64];
    ck_assert_int_eq(rs_file_read(rf, buf, sizeof buf), 0); /* EOF stays EOF */
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(srv);
}
END_TEST

START_TEST(testFullReadIntoLargerBuffer)
{
    /* read(n) returns fewer than n only at EOF */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    struct slow_writer w = { cli, MSG, MSGLEN, 5, 0.02 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_writer_main, &w), 0);
    char buf[MSGLEN * 2];
    ck_assert_int_eq(rs_file_read(rf, buf, MSGLEN), (ssize_t)MSGLEN);
    void *ret;
    pthread_join(th, &ret);
    ck_assert_ptr_null(ret);
    rs_shutdown(cli, SHUT_WR);
    ck_assert_int_eq(rs_file_read(rf, buf + MSGLEN, MSGLEN), 0);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(testUnbufferedRead)
{
    /* read(1) loop to EOF */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    ck_assert_int_eq(rs_file_write(wf, MSG, MSGLEN), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    char buf[MSGLEN + 1];
    size_t got = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t r = rs_file_read(rf, buf + got, 1);
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        ck_assert_uint_lt(got, MSGLEN);
        got += (size_t)r;
    }
    ck_assert_uint_eq(got, MSGLEN);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(srv);
}
END_TEST

START_TEST(testReadline)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    write_all_file(wf, MSG, MSGLEN);
    write_all_file(wf, "second\nthird", 12);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    char buf[128];
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), (ssize_t)MSGLEN);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    /* cap stops a line; the rest comes next */
    ck_assert_int_eq(rs_file_readline(rf, buf, 3), 3);
    ck_assert_int_eq(memcmp(buf, "sec", 3), 0);
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 4);
    ck_assert_int_eq(memcmp(buf, "ond\n", 4), 0);
    /* EOF ends a line without '\n' */
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 5);
    ck_assert_int_eq(memcmp(buf, "third", 5), 0);
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 0);
    ck_assert_int_eq(rs_file_readline(rf, buf, 0), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(srv);
}
END_TEST

START_TEST(testCloseAfterMakefile)
{
    /* the file keeps the socket open: close the socket first, the file still reads */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    int fd = rs_socket_fd(srv);
    ck_assert_int_eq(rs_close(srv), 0);
    ck_assert(fd_open(fd));
    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    rs_close(cli);
    void *all;
    ck_assert_int_eq(rs_file_read_all(rf, &all), (ssize_t)MSGLEN);
    ck_assert_int_eq(memcmp(all, MSG, MSGLEN), 0);
    free(all);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert(!fd_open(fd));
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(testMakefileAfterMakefileClose)
{
    /* close the file first: the socket still receives, and a new file works */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    char buf[MSGLEN];
    ck_assert_int_eq(rs_recv(srv, buf, MSGLEN, MSG_WAITALL), (ssize_t)MSGLEN);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_sendall(cli, MSG, MSGLEN, 0), (ssize_t)MSGLEN);
    ck_assert_int_eq(rs_file_readline(rf, buf, MSGLEN), (ssize_t)MSGLEN);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(testRealClose)
{
    /* file closed, then the socket: the fd really closes (and in the other order too) */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    int fd = rs_socket_fd(srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert(fd_open(fd));
    ck_assert_int_eq(rs_close(srv), 0);
    ck_assert(!fd_open(fd));
    ck_assert_int_eq(errno, EBADF);

    rs_socket *a, *b;
    pair(&a, &b);
    fd = rs_socket_fd(b);
    rs_file *f1 = mkfile(b, "rb", bufsizes[_i]);
    rs_file *f2 = mkfile(b, "wb", bufsizes[_i]);
    ck_assert_int_eq(rs_close(b), 0);
    ck_assert_int_eq(rs_close(b), -EBADF); /* repeated close is safe (b lives on in its files) */
    ck_assert_int_eq(rs_file_close(f1), 0);
    ck_assert(fd_open(fd));
    ck_assert_int_eq(rs_file_write(f2, "x", 1), 1);
    ck_assert_int_eq(rs_file_close(f2), 0); /* the last one: flushes, then the fd goes */
    ck_assert(!fd_open(fd));
    char c;
    ck_assert_int_eq(rs_recv(a, &c, 1, 0), 1);
    ck_assert_int_eq(rs_recv(a, &c, 1, 0), 0);
    rs_close(a);
    rs_close(cli);
}
END_TEST

START_TEST(testMakefileCloseSocketDestroy)
{
    /* the refcount: every file holds one reference, closing it gives exactly that one back */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    int fd = rs_socket_fd(srv);
    rs_file *f[3];
    for (int i = 0; i < 3; i++)
        f[i] = mkfile(srv, "rwb", bufsizes[_i]);
    ck_assert_int_eq(rs_close(srv), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert(fd_open(fd));
        ck_assert_int_eq(rs_file_close(f[i]), 0);
    }
    ck_assert(!fd_open(fd));
    rs_close(cli);
}
END_TEST

START_TEST(testUnbufferedReadline)
{
    /* a readline leaves the next line intact for a second file (only unbuffered files promise
     * that; buffered ones read ahead, as in Python) */
    if (bufsizes[_i] != 0)
        return;
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    char a[MSGLEN + 3], b[MSGLEN + 3];
    memcpy(a, "A. ", 3);
    memcpy(a + 3, MSG, MSGLEN);
    memcpy(b, "B. ", 3);
    memcpy(b + 3, MSG, MSGLEN);
    ck_assert_int_eq(rs_file_write(wf, a, sizeof a), (ssize_t)sizeof a);
    ck_assert_int_eq(rs_file_write(wf, b, sizeof b), (ssize_t)sizeof b);
    ck_assert_int_eq(rs_file_flush(wf), 0);
    wait_readable(srv, 2 * sizeof a);
    rs_file *r1 = mkfile(srv, "rb", 0);
    char buf[128];
    ck_assert_int_eq(rs_file_readline(r1, buf, sizeof buf), (ssize_t)sizeof a);
    ck_assert_int_eq(memcmp(buf, a, sizeof a), 0);
    rs_file *r2 = mkfile(srv, "rb", 0);
    ck_assert_int_eq(rs_file_readline(r2, buf, sizeof buf), (ssize_t)sizeof b);
    ck_assert_int_eq(memcmp(buf, b, sizeof b), 0);
    ck_assert_int_eq(rs_file_close(r1), 0);
    ck_assert_int_eq(rs_file_close(r2), 0);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(testSmallReadNonBlocking)
{
    /* timeout 0: nothing buffered gives -EAGAIN (Python's None), then the data */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    rs_file *wf = mkfile(cli, "wb", bufsizes[_i]);
    ck_assert_int_eq(rs_settimeout(srv, 0), 0);
    char buf[MSGLEN + 16];
    const void *p;
    ck_assert_int_eq(rs_file_read1(rf, buf, 10), -EAGAIN);
    ck_assert_int_eq(rs_file_read(rf, buf, MSGLEN - 3), -EAGAIN);
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), -EAGAIN);
    ck_assert_int_eq(rs_file_peek(rf, &p), -EAGAIN);
    write_all_file(wf, MSG, MSGLEN);
    wait_readable(srv, MSGLEN);
    ck_assert_int_eq(rs_file_read(rf, buf, MSGLEN - 3), (ssize_t)MSGLEN - 3);
    ck_assert_int_eq(rs_file_read1(rf, buf + MSGLEN - 3, 10), 3);
    ck_assert_int_eq(memcmp(buf, MSG, MSGLEN), 0);
    ck_assert_int_eq(rs_file_read1(rf, buf, 16), -EAGAIN);
    ck_assert_int_eq(rs_file_read(rf, buf, 1), -EAGAIN);
    /* would-block does not poison: more data reads fine */
    write_all_file(wf, "xy\n", 3);
    wait_readable(srv, 3);
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 3);
    ck_assert_int_eq(rs_file_close(rf), 0);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

struct drain_arg {
    rs_socket *s;
    size_t got;
    uint64_t sum;
    atomic_bool go;
};

static void *drain_main(void *arg)
{
    struct drain_arg *d = arg;
    while (!atomic_load(&d->go))
        t_sleep(0.001);
    char *buf = malloc(65536);
    for (;;) {
        ssize_t r = rs_recv(d->s, buf, 65536, 0);
        if (r <= 0)
            break;
        d->sum = t_fnv1a(d->sum, buf, (size_t)r);
        d->got += (size_t)r;
    }
    free(buf);
    return NULL;
}

START_TEST(testWriteNonBlocking)
{
    /* timeout 0: writes fill the socket buffer, then report -EAGAIN; every byte a write said it
     * took (sent or buffered) reaches the peer after a final flush, in order */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *wf = mkfile(srv, "wb", bufsizes[_i]);
    ck_assert_int_eq(rs_settimeout(srv, 0), 0);
    size_t big = 1 << 20;
    char *data = malloc(big * 12);
    t_fill_pattern(data, big * 12, 7);
    size_t taken = 0;
    bool blocked = false;
    for (int i = 0; i < 12 && !blocked; i++) {
        ssize_t r = rs_file_write(wf, data + taken, big);
        if (r == -EAGAIN) {
            blocked = true;
            break;
        }
        ck_assert_int_gt(r, 0);
        if (i == 0)
            ck_assert_int_gt(r, 0); /* the first one always gets somewhere */
        taken += (size_t)r;
    }
    ck_assert_msg(blocked, "12 MiB did not fill the socket buffer");
    struct drain_arg d = { .s = cli, .sum = T_FNV_INIT };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, drain_main, &d), 0);
    atomic_store(&d.go, true);
    ck_assert_int_eq(rs_settimeout(srv, 10.0), 0);
    ck_assert_int_eq(rs_file_flush(wf), 0);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_shutdown(srv, SHUT_WR);
    pthread_join(th, NULL);
    ck_assert_uint_eq(d.got, taken);
    ck_assert_uint_eq(d.sum, t_fnv1a(T_FNV_INIT, data, taken));
    free(data);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

/* ---- makefile arguments -------------------------------------------------------------------- */

START_TEST(mode_validation)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    static const char *const good[] = { "r", "rb", "br", "rw", "wr", "rwb", "wrb", "bwr", "w", "wb", "bw" };
    static const char *const bad[] = { "rt", "x",  "+",  "a", "",    "r+", "w+", "rb+",
                                       "ab", "rr", "bb", "b", "rwr", "wt", "U",  "rU" };
    int fd = rs_socket_fd(srv);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        rs_file *f;
        ck_assert_msg(rs_makefile(&f, srv, good[i], -1) == 0, "mode %s refused", good[i]);
        ck_assert_int_eq(rs_file_close(f), 0);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rs_file *f = (rs_file *)1;
        ck_assert_msg(rs_makefile(&f, srv, bad[i], -1) == -EINVAL, "mode \"%s\" accepted", bad[i]);
        ck_assert_ptr_null(f);
    }
    rs_file *f;
    ck_assert_int_eq(rs_makefile(&f, srv, NULL, -1), -EINVAL);
    ck_assert_int_eq(rs_makefile(&f, srv, "r", -2), -EINVAL);
    ck_assert_int_eq(rs_makefile(NULL, srv, "r", -1), -EINVAL);
    ck_assert_int_eq(rs_makefile(&f, NULL, "r", -1), -EBADF);
    /* a read on a write-only file and the reverse */
    f = mkfile(srv, "w", -1);
    char c;
    const void *p;
    ck_assert_int_eq(rs_file_read(f, &c, 1), -EBADF);
    ck_assert_int_eq(rs_file_readline(f, &c, 1), -EBADF);
    ck_assert_int_eq(rs_file_peek(f, &p), -EBADF);
    ck_assert_int_eq(rs_file_close(f), 0);
    f = mkfile(srv, "r", -1);
    ck_assert_int_eq(rs_file_write(f, "x", 1), -EBADF);
    ck_assert_int_eq(rs_file_flush(f), 0);
    ck_assert_int_eq(rs_file_close(f), 0);
    /* failed calls took no reference (CPython leaks an _io_refs here): the fd closes at once */
    ck_assert_int_eq(rs_close(srv), 0);
    ck_assert(!fd_open(fd));
    ck_assert_int_eq(rs_file_close(NULL), 0);
    ck_assert_int_eq(rs_file_read(NULL, &c, 1), -EBADF);
    ck_assert_int_eq(rs_file_write(NULL, &c, 1), -EBADF);
    rs_close(cli);
}
END_TEST

START_TEST(makefile_on_closed_socket_is_ebadf)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *f = mkfile(srv, "r", -1);
    ck_assert_int_eq(rs_close(srv), 0);
    rs_file *g = (rs_file *)1;
    ck_assert_int_eq(rs_makefile(&g, srv, "r", -1), -EBADF); /* srv alive only through f */
    ck_assert_ptr_null(g);
    ck_assert_int_eq(rs_file_close(f), 0);
    rs_close(cli);
}
END_TEST

/* ---- buffering behaviour ------------------------------------------------------------------- */

START_TEST(peek_shows_without_consuming)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_sendall(cli, "hello\nworld\n", 12, 0), 12);
    wait_readable(srv, 12);
    const void *p;
    ssize_t n = rs_file_peek(rf, &p);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(memcmp(p, "hello\nworld\n", (size_t)n), 0);
    ck_assert_int_eq(rs_file_peek(rf, &p), n); /* again: the same bytes */
    char buf[16];
    ck_assert_int_eq(rs_file_readline(rf, buf, sizeof buf), 6);
    ck_assert_int_eq(memcmp(buf, "hello\n", 6), 0);
    n = rs_file_peek(rf, &p);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(memcmp(p, "world\n", (size_t)n), 0);
    ck_assert_int_eq(rs_file_read(rf, buf, 6), 6);
    ck_assert_int_eq(memcmp(buf, "world\n", 6), 0);
    rs_shutdown(cli, SHUT_WR);
    ck_assert_int_eq(rs_file_peek(rf, &p), 0); /* EOF */
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(read1_does_one_receive)
{
    /* read1 returns what one receive got, without waiting for n */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_settimeout(srv, 5.0), 0);
    ck_assert_int_eq(rs_sendall(cli, "abc", 3, 0), 3);
    char buf[100];
    /* one receive: into the buffer, or straight into buf when n >= the buffer (CPython) */
    ck_assert_int_eq(rs_file_read1(rf, buf, sizeof buf), 3);
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    ck_assert_int_eq(rs_file_read1(rf, buf, 0), 0);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(timeout_applies_to_each_receive)
{
    /* 4 pieces 0.3 s apart under a 1 s timeout: read(all) takes ~1.2 s and succeeds (the
     * margin per piece, 0.7 s, keeps a loaded machine from failing it) */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    ck_assert_int_eq(rs_settimeout(srv, 1.0), 0);
    struct slow_writer w = { cli, "aaaabbbbccccdddd", 16, 4, 0.3 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_writer_main, &w), 0);
    char buf[16];
    double t0 = t_now();
    ck_assert_int_eq(rs_file_read(rf, buf, 16), 16);
    ck_assert_double_ge(t_now() - t0, 1.1);
    ck_assert_int_eq(memcmp(buf, "aaaabbbbccccdddd", 16), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(writes_buffer_until_flush)
{
    /* default and small buffers hold small writes; line buffering flushes at '\n'; unbuffered
     * sends at once */
    long bs = bufsizes[_i];
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    ck_assert_int_eq(rs_settimeout(cli, 0), 0);
    rs_file *wf = mkfile(srv, "wb", bs == 2 ? 64 : bs);
    char buf[64];
    ck_assert_int_eq(rs_file_write(wf, "abc", 3), 3);
    if (bs == 0) {
        wait_readable(cli, 3);
        ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), 3);
    } else {
        t_sleep(0.02);
        ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), -EAGAIN);
    }
    ck_assert_int_eq(rs_file_write(wf, "def\nxyz", 7), 7);
    if (bs == 0 || bs == 1) {
        wait_readable(cli, bs == 0 ? 7 : 10);
        ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), bs == 0 ? 7 : 10);
        ck_assert_int_eq(memcmp(buf, bs == 0 ? "def\nxyz" : "abcdef\nxyz", bs == 0 ? 7 : 10), 0);
    } else {
        t_sleep(0.02);
        ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), -EAGAIN);
        ck_assert_int_eq(rs_file_flush(wf), 0);
        wait_readable(cli, 10);
        ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), 10);
        ck_assert_int_eq(memcmp(buf, "abcdef\nxyz", 10), 0);
    }
    ck_assert_int_eq(rs_file_flush(wf), 0); /* nothing buffered: nothing sent */
    /* close flushes; the socket stays usable */
    ck_assert_int_eq(rs_file_write(wf, "tail", 4), 4);
    ck_assert_int_eq(rs_file_close(wf), 0);
    ck_assert_int_eq(rs_sendall(srv, "!", 1, 0), 1);
    wait_readable(cli, 5);
    ck_assert_int_eq(rs_recv(cli, buf, sizeof buf, 0), 5);
    ck_assert_int_eq(memcmp(buf, "tail!", 5), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(large_write_goes_after_buffered_bytes_in_order)
{
    /* 16-byte buffer: 5 buffered bytes, then a 100 KiB write (sent directly from the caller's
     * memory after the 5), then 3 more buffered */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *wf = mkfile(srv, "wb", 16);
    size_t n = 100 * 1024;
    char *big = malloc(n + 8);
    t_fill_pattern(big, n, 3);
    ck_assert_int_eq(rs_file_write(wf, "12345", 5), 5);
    ck_assert_int_eq(rs_file_write(wf, big, n), (ssize_t)n);
    ck_assert_int_eq(rs_file_write(wf, "xyz", 3), 3);
    ck_assert_int_eq(rs_file_close(wf), 0);
    rs_shutdown(srv, SHUT_WR);
    rs_file *rf = mkfile(cli, "rb", -1);
    void *all;
    ck_assert_int_eq(rs_file_read_all(rf, &all), (ssize_t)(n + 8));
    ck_assert_int_eq(memcmp(all, "12345", 5), 0);
    ck_assert_int_eq(memcmp((char *)all + 5, big, n), 0);
    ck_assert_int_eq(memcmp((char *)all + 5 + n, "xyz", 3), 0);
    free(all);
    free(big);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(rw_file_reads_and_writes_independently)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *a = mkfile(cli, "rw", bufsizes[_i]);
    rs_file *b = mkfile(srv, "rwb", bufsizes[_i]);
    char buf[64];
    for (int i = 0; i < 20; i++) {
        int n = snprintf(buf, sizeof buf, "ping %d\n", i);
        write_all_file(a, buf, (size_t)n);
        char line[64];
        ck_assert_int_eq(rs_file_readline(b, line, sizeof line), n);
        line[0] = 'P';
        write_all_file(b, line, (size_t)n);
        ck_assert_int_eq(rs_file_readline(a, buf, sizeof buf), n);
        ck_assert_int_eq(buf[0], 'P');
    }
    ck_assert_int_eq(rs_file_close(a), 0);
    ck_assert_int_eq(rs_file_close(b), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(read_all_grows_past_buffer)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *rf = mkfile(srv, "rb", bufsizes[_i]);
    size_t n = 3 * 1024 * 1024 + 17;
    char *data = malloc(n);
    t_fill_pattern(data, n, 11);
    struct slow_writer w = { cli, data, n, 256 * 1024, 0.0 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_writer_main, &w), 0);
    char first[10];
    ck_assert_int_eq(rs_file_read(rf, first, 10), 10); /* something buffered before read_all */
    pthread_join(th, NULL);
    rs_shutdown(cli, SHUT_WR);
    void *all;
    ck_assert_int_eq(rs_file_read_all(rf, &all), (ssize_t)(n - 10));
    ck_assert_int_eq(memcmp(first, data, 10), 0);
    ck_assert_int_eq(memcmp(all, data + 10, n - 10), 0);
    free(all);
    ck_assert_int_eq(rs_file_read_all(rf, &all), 0); /* at EOF: an empty buffer, still freed */
    free(all);
    free(data);
    ck_assert_int_eq(rs_file_close(rf), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

/* ---- fixed buffers --------------------------------------------------------------------------- */

static bool on_uring(void)
{
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    return rs_loop_backend(loop) == RS_BACKEND_URING;
}

/* Read one line and write one line through f; returns what was read in buf. */
static void line_through(rs_socket *peer, rs_file *f, int k, char *buf, size_t cap)
{
    char line[64];
    int n = snprintf(line, sizeof line, "line %d of a file\n", k);
    ck_assert_int_eq(rs_sendall(peer, line, (size_t)n, 0), n);
    ck_assert_int_eq(rs_file_readline(f, buf, cap), n);
    ck_assert_int_eq(memcmp(buf, line, (size_t)n), 0);
    write_all_file(f, buf, (size_t)n);
    char back[64];
    ck_assert_int_eq(rs_recv(peer, back, (size_t)n, MSG_WAITALL), n);
    ck_assert_int_eq(memcmp(back, line, (size_t)n), 0);
}

START_TEST(fixed_buffers_used_on_uring_only)
{
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *f = mkfile(srv, "rwb", -1);
    unsigned long long before = fixed_ops();
    char buf[64];
    for (int i = 0; i < 10; i++)
        line_through(cli, f, i, buf, sizeof buf);
    unsigned long long used = fixed_ops() - before;
    if (on_uring())
        ck_assert_uint_ge(used, 10); /* 10 READ_FIXED (short flushes go by SEND) */
    else
        ck_assert_uint_eq(used, 0);
    /* a flush of >= 16 KiB from the registered buffer: WRITE_FIXED */
    size_t n = 40000;
    char *big = malloc(n), *back = malloc(n);
    t_fill_pattern(big, n, 5);
    before = fixed_ops();
    ck_assert_int_eq(rs_file_write(f, big, n), (ssize_t)n);
    ck_assert_uint_eq(fixed_ops(), before); /* buffered, nothing sent yet */
    ck_assert_int_eq(rs_file_flush(f), 0);
    ck_assert_int_eq(rs_recv(cli, back, n, MSG_WAITALL), (ssize_t)n);
    ck_assert_int_eq(memcmp(big, back, n), 0);
    if (on_uring())
        ck_assert_uint_ge(fixed_ops() - before, 1);
    else
        ck_assert_uint_eq(fixed_ops(), before);
    free(big);
    free(back);
    ck_assert_int_eq(rs_file_close(f), 0);
    /* unbuffered files have no buffer to register */
    f = mkfile(srv, "rwb", 0);
    before = fixed_ops();
    for (int i = 0; i < 3; i++)
        line_through(cli, f, i, buf, sizeof buf);
    ck_assert_uint_eq(fixed_ops(), before);
    ck_assert_int_eq(rs_file_close(f), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(fixed_buffers_off_by_environment)
{
    setenv("RINGSOCK_NO_FIXED", "1", 1);
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *f = mkfile(srv, "rwb", -1);
    unsigned long long before = fixed_ops();
    char buf[64];
    for (int i = 0; i < 10; i++)
        line_through(cli, f, i, buf, sizeof buf);
    ck_assert_uint_eq(fixed_ops(), before);
    ck_assert_int_eq(rs_file_close(f), 0);
    unsetenv("RINGSOCK_NO_FIXED");
    rs_close(cli);
    rs_close(srv);
}
END_TEST

START_TEST(flush_to_closed_peer_is_epipe_without_sigpipe)
{
    /* WRITE_FIXED cannot say MSG_NOSIGNAL: the file must keep SIGPIPE (default action: death)
     * from reaching the process, leave none pending and restore the thread's signal mask */
    for (int kind = 0; kind < 2; kind++) {
        rs_socket *a, *b;
        if (kind == 0) {
            rs_socket *sp[2];
            ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
            a = sp[0];
            b = sp[1];
        } else {
            pair(&a, &b);
        }
        rs_file *f = mkfile(b, "wb", -1);
        rs_close(a);
        size_t n = 40000;
        char *big = calloc(1, n);
        int err = 0;
        for (int i = 0; i < 50 && err == 0; i++) {
            ck_assert_int_eq(rs_file_write(f, big, n), (ssize_t)n);
            err = rs_file_flush(f);
            if (err == 0)
                t_sleep(0.01);
        }
        ck_assert_msg(err == -EPIPE || err == -ECONNRESET, "flush: %s", rs_strerror(err));
        sigset_t pending, mask;
        ck_assert_int_eq(sigpending(&pending), 0);
        ck_assert(!sigismember(&pending, SIGPIPE));
        ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
        ck_assert(!sigismember(&mask, SIGPIPE));
        ck_assert_int_ne(rs_file_close(f), 0); /* the unsent bytes: close reports the error */
        free(big);
        rs_close(b);
    }
}
END_TEST

#define NFILES 70 /* more than RS_BUFPOOL_SLOTS (64): the last ones fall back to plain memory */

START_TEST(pool_exhausted_falls_back_with_identical_results)
{
    rs_socket *peer[NFILES], *s[NFILES];
    rs_file *f[NFILES];
    for (int i = 0; i < NFILES; i++) {
        rs_socket *sp[2];
        ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
        peer[i] = sp[0];
        s[i] = sp[1];
        f[i] = mkfile(s[i], "rb", 4096);
        char line[64];
        int n = snprintf(line, sizeof line, "file %d says hello\n", i);
        ck_assert_int_eq(rs_sendall(peer[i], line, (size_t)n, 0), n);
    }
    unsigned long long before = fixed_ops();
    for (int i = 0; i < NFILES; i++) {
        char want[64], got[64];
        int n = snprintf(want, sizeof want, "file %d says hello\n", i);
        ck_assert_int_eq(rs_file_readline(f[i], got, sizeof got), n);
        ck_assert_int_eq(memcmp(got, want, (size_t)n), 0);
    }
    unsigned long long used = fixed_ops() - before;
    if (on_uring())
        ck_assert_uint_eq(used, 64); /* one READ_FIXED per pooled file, data already there */
    else
        ck_assert_uint_eq(used, 0);
    /* a second round with data arriving later, both kinds of file still agree */
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_eq(rs_sendall(peer[i], "again\n", 6, 0), 6);
    for (int i = 0; i < NFILES; i++) {
        char got[16];
        ck_assert_int_eq(rs_file_readline(f[i], got, sizeof got), 6);
        ck_assert_int_eq(memcmp(got, "again\n", 6), 0);
        ck_assert_int_eq(rs_file_close(f[i]), 0);
        rs_close(s[i]);
        rs_close(peer[i]);
    }
}
END_TEST

struct thread_use {
    rs_socket *peer;
    rs_file *f;
    unsigned long long fixed;
    int backend;
};

static void *other_thread_main(void *arg)
{
    struct thread_use *u = arg;
    char buf[64];
    for (int i = 0; i < 5; i++)
        line_through(u->peer, u->f, 100 + i, buf, sizeof buf);
    rs_loop *loop;
    struct rs_loop_stats st;
    rs_loop_default(&loop);
    rs_loop_stats(loop, &st);
    u->fixed = st.fixed_buf_ops;
    u->backend = rs_loop_backend(loop);
    return NULL;
}

START_TEST(file_used_from_another_thread_uses_plain_operations)
{
    /* the buffers are registered with the main thread's loop; in another thread (its own loop)
     * the same memory goes by plain RECV/SEND, with the same results */
    rs_socket *cli, *srv;
    pair(&cli, &srv);
    rs_file *f = mkfile(srv, "rwb", -1);
    char buf[64];
    line_through(cli, f, 0, buf, sizeof buf); /* buffers made here, on the main loop */
    unsigned long long main_before = fixed_ops();
    struct thread_use u = { cli, f, 0, 0 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, other_thread_main, &u), 0);
    pthread_join(th, NULL);
    ck_assert_uint_eq(u.fixed, 0);
    ck_assert_uint_eq(fixed_ops(), main_before);
    line_through(cli, f, 1, buf, sizeof buf); /* back home: fixed again on io_uring */
    if (on_uring())
        ck_assert_uint_ge(fixed_ops() - main_before, 1);
    ck_assert_int_eq(rs_file_close(f), 0);
    rs_close(cli);
    rs_close(srv);
}
END_TEST

/* ---- Python peers ---------------------------------------------------------------------------- */

static rs_socket *connect_port(unsigned short port)
{
    rs_socket *s;
    struct sockaddr_storage addr;
    socklen_t len;
    t_loopback(AF_INET, port, &addr, &len);
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(s, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_settimeout(s, 10.0), 0);
    return s;
}

START_TEST(python_random_splits_read_with_readline_and_read)
{
    /* a Python peer sends lines in random-sized send() pieces; we mix readline (assorted caps),
     * read, read1 and peek, and must see exactly its bytes and its line count */
    long bs = bufsizes[_i];
    /* fewer lines for the 2-byte buffer: one receive per 2 bytes */
    char *argv[] = { bs == 2 ? "200" : "3000", "42", NULL };
    struct t_py py;
    t_py_spawn("file_lines_server", argv, &py);
    rs_socket *s = connect_port(t_py_port(&py));
    rs_file *f = mkfile(s, "rb", bs);
    struct t_py_sha256 h;
    t_py_sha256_init(&h);
    size_t cap = 16384, total = 0;
    char *buf = malloc(cap);
    long lines = 0;
    bool midline = false;
    uint64_t rng = 0x1234567887654321ull;
    for (int iter = 0; iter < 1000000; iter++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int how = (int)(rng % 8);
        ssize_t r;
        if (how < 5) {
            size_t c = how == 0 ? 1 + (size_t)(rng >> 32) % 50 : cap;
            r = rs_file_readline(f, buf, c);
            ck_assert_int_ge(r, 0);
            if (r > 0) {
                char *nl = memchr(buf, '\n', (size_t)r);
                /* the only '\n' may be the last byte; a line without one stopped at cap or EOF */
                ck_assert(nl == NULL || nl == buf + r - 1);
                const void *p;
                ck_assert(nl || (size_t)r == c || rs_file_peek(f, &p) == 0);
                if (nl)
                    lines++;
                midline = !nl;
            }
        } else if (how == 5) {
            r = rs_file_read(f, buf, 1 + (size_t)(rng >> 40) % 5000);
        } else if (how == 6) {
            r = rs_file_read1(f, buf, 1 + (size_t)(rng >> 40) % 5000);
        } else {
            const void *p;
            r = rs_file_peek(f, &p);
            ck_assert_int_ge(r, 0);
            continue;
        }
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        if (how >= 5) {
            for (ssize_t k = 0; k < r; k++)
                if (buf[k] == '\n')
                    lines++;
            midline = buf[r - 1] != '\n';
        }
        t_py_sha256_update(&h, buf, (size_t)r);
        total += (size_t)r;
    }
    ck_assert(!midline);
    char line[256], hex[65];
    ck_assert_int_gt(t_py_readline(&py, line, sizeof line, 10), 0);
    t_py_sha256_hex(&h, hex);
    char want[256];
    snprintf(want, sizeof want, "sent %ld %zu %s", lines, total, hex);
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(t_py_wait(&py, 10), 0);
    free(buf);
    ck_assert_int_eq(rs_file_close(f), 0);
    rs_close(s);
}
END_TEST

START_TEST(python_makefile_reads_what_rs_file_write_sent)
{
    /* the reverse: rs_file_write in assorted sizes (below, at and above the buffer size), a
     * Python makefile('rb').readline() reader, checksums compared */
    long bs = bufsizes[_i];
    struct t_py py;
    t_py_spawn("file_lines_reader", NULL, &py);
    rs_socket *s = connect_port(t_py_port(&py));
    rs_file *f = mkfile(s, "wb", bs);
    struct t_py_sha256 h;
    t_py_sha256_init(&h);
    size_t n = 4 * 1024 * 1024, total = 0;
    char *data = malloc(n);
    uint64_t st = 99;
    t_py_random(&st, data, n);
    for (size_t i = 0; i < n; i++) {
        data[i] = (char)(32 + (unsigned char)data[i] % 96); /* printable, and '\x7f' -> '\n' */
        if (data[i] == 127)
            data[i] = '\n';
    }
    data[n - 1] = '\n';
    long lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += data[i] == '\n';
    static const size_t sizes[] = { 1, 7, 100, 4095, 65536, 65537, 200000, 3 };
    for (size_t off = 0, k = 0; off < n; k++) {
        size_t c = sizes[k % 8];
        if (c > n - off)
            c = n - off;
        ck_assert_int_eq(rs_file_write(f, data + off, c), (ssize_t)c);
        t_py_sha256_update(&h, data + off, c);
        off += c;
        total += c;
    }
    ck_assert_int_eq(rs_file_close(f), 0);
    rs_close(s);
    char line[256], hex[65], want[256];
    ck_assert_int_gt(t_py_readline(&py, line, sizeof line, 20), 0);
    t_py_sha256_hex(&h, hex);
    snprintf(want, sizeof want, "got %ld %zu %s", lines, total, hex);
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(t_py_wait(&py, 10), 0);
    free(data);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------------ */

static Suite *make_suite(void)
{
    Suite *s = suite_create("file");
    for (int v = 0; v < 4; v++) {
        /* one tcase per CPython class, each test run with that class's bufsize */
        TCase *tc = t_tcase(s, class_names[v], 30);
        tcase_add_loop_test(tc, testReadAfterTimeout, v, v + 1);
        tcase_add_loop_test(tc, testSmallRead, v, v + 1);
        tcase_add_loop_test(tc, testFullRead, v, v + 1);
        tcase_add_loop_test(tc, testFullReadIntoLargerBuffer, v, v + 1);
        tcase_add_loop_test(tc, testUnbufferedRead, v, v + 1);
        tcase_add_loop_test(tc, testReadline, v, v + 1);
        tcase_add_loop_test(tc, testCloseAfterMakefile, v, v + 1);
        tcase_add_loop_test(tc, testMakefileAfterMakefileClose, v, v + 1);
        tcase_add_loop_test(tc, testRealClose, v, v + 1);
        tcase_add_loop_test(tc, testMakefileCloseSocketDestroy, v, v + 1);
        tcase_add_loop_test(tc, testUnbufferedReadline, v, v + 1);
        tcase_add_loop_test(tc, testSmallReadNonBlocking, v, v + 1);
        tcase_add_loop_test(tc, testWriteNonBlocking, v, v + 1);
        tcase_add_loop_test(tc, peek_shows_without_consuming, v, v + 1);
        tcase_add_loop_test(tc, read1_does_one_receive, v, v + 1);
        tcase_add_loop_test(tc, timeout_applies_to_each_receive, v, v + 1);
        tcase_add_loop_test(tc, writes_buffer_until_flush, v, v + 1);
        tcase_add_loop_test(tc, rw_file_reads_and_writes_independently, v, v + 1);
        tcase_add_loop_test(tc, read_all_grows_past_buffer, v, v + 1);
        tcase_add_loop_test(tc, python_random_splits_read_with_readline_and_read, v, v + 1);
        tcase_add_loop_test(tc, python_makefile_reads_what_rs_file_write_sent, v, v + 1);
    }
    TCase *tc = t_tcase(s, "makefile", 15);
    tcase_add_test(tc, mode_validation);
    tcase_add_test(tc, makefile_on_closed_socket_is_ebadf);
    tcase_add_test(tc, large_write_goes_after_buffered_bytes_in_order);

    tc = t_tcase(s, "fixed_buffers", 30);
    tcase_add_test(tc, fixed_buffers_used_on_uring_only);
    tcase_add_test(tc, fixed_buffers_off_by_environment);
    tcase_add_test(tc, flush_to_closed_peer_is_epipe_without_sigpipe);
    tcase_add_test(tc, pool_exhausted_falls_back_with_identical_results);
    tcase_add_test(tc, file_used_from_another_thread_uses_plain_operations);
    return s;
}

int main(void) { return t_run(make_suite()); }
