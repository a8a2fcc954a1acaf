/* Huge and edge arguments on every backend: timeouts far beyond any clock (1e300, DBL_MAX) and
 * invalid ones (NaN, infinities, negatives), Happy Eyeballs delays of centuries, transfers over
 * 2 GiB and lengths around INT_MAX / UINT_MAX, ring sizes at the documented bound, and an
 * io_uring probe made while the fd table is full. Each must give the right result or a clear
 * error: no undefined behaviour (run under UBSan), no lost byte, no sleep past a deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "t.h"

/* The kernel's per-call transfer limit (MAX_RW_COUNT). */
#define MAX_IO 0x7ffff000

struct tval {
    double v;
    bool valid; /* rs_settimeout / rs_setdefaulttimeout take it */
};
static const struct tval tvals[] = {
    { 1e300, true }, { INFINITY, false }, { NAN, false },       { -1.0, true },
    { -0.5, false }, { DBL_MAX, true },   { -INFINITY, false }, { 1e10, true },
};

static const char *tname(double v)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

/* A temporary file with a known pattern; its fd. */
static int small_file(size_t len, unsigned char *content)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    int fd = dup(fileno(f));
    fclose(f);
    ck_assert_int_ge(fd, 0);
    t_fill_pattern(content, len, 99);
    ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
    return fd;
}

/* A file past the size where io_uring's rs_sendfile splices (8 MiB), where the socket timeout
 * also becomes a no-progress limit in ns. */
#define BIG_FILE ((size_t)9 << 20)

struct reader {
    rs_socket *s;
    unsigned char *buf;
    ssize_t got;
};

static void *reader_main(void *p)
{
    struct reader *rd = p;
    rd->got = rs_recv(rd->s, rd->buf, BIG_FILE, MSG_WAITALL);
    rs_loop_default_release();
    return NULL;
}

static void big_sendfile(rs_socket *c, rs_socket *s, const char *what)
{
    unsigned char *content = malloc(BIG_FILE);
    struct reader rd = { .s = s, .buf = malloc(BIG_FILE) };
    ck_assert(content && rd.buf);
    int fd = small_file(BIG_FILE, content);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, reader_main, &rd), 0);
    off_t off = 0;
    ssize_t r = rs_sendfile(c, fd, &off, BIG_FILE);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(r == (ssize_t)BIG_FILE, "%s: big sendfile %zd (%s)", what, r, rs_err_name((int)r));
    ck_assert_msg(rd.got == (ssize_t)BIG_FILE && memcmp(rd.buf, content, BIG_FILE) == 0, "%s: peer got %zd",
                  what, rd.got);
    close(fd);
    free(content);
    free(rd.buf);
}

/* With c's timeout whatever it is now: a blocking recv with data waiting, and sendfiles of a
 * small and a big file, each complete and correct. */
static void recv_and_sendfile(rs_socket *c, rs_socket *s, const char *what)
{
    ck_assert_int_eq(rs_send(s, "hello", 5, 0), 5);
    char buf[16] = { 0 };
    ssize_t r = rs_recv(c, buf, sizeof buf, 0);
    ck_assert_msg(r == 5 && memcmp(buf, "hello", 5) == 0, "%s: recv %zd", what, r);

    unsigned char content[1000], got[1000];
    int fd = small_file(sizeof content, content);
    off_t off = 0;
    r = rs_sendfile(c, fd, &off, sizeof content);
    ck_assert_msg(r == (ssize_t)sizeof content, "%s: sendfile %zd (%s)", what, r, rs_err_name((int)r));
    ck_assert_int_eq(off, (off_t)sizeof content);
    /* SIZE_MAX: "to the end of the file" in effect, never a negative or truncated count */
    off = 0;
    r = rs_sendfile(c, fd, &off, SIZE_MAX);
    ck_assert_msg(r == (ssize_t)sizeof content, "%s: sendfile SIZE_MAX %zd (%s)", what, r,
                  rs_err_name((int)r));
    close(fd);
    ck_assert_int_eq(rs_settimeout(s, 5.0), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(rs_recv(s, got, sizeof got, MSG_WAITALL), (ssize_t)sizeof got);
        ck_assert(memcmp(got, content, sizeof got) == 0);
    }
    big_sendfile(c, s, what);
}

START_TEST(settimeout_extremes)
{
    for (size_t i = 0; i < sizeof tvals / sizeof tvals[0]; i++) {
        rs_socket *c, *s;
        t_tcp_pair(AF_INET, &c, &s);
        ck_assert_int_eq(rs_settimeout(c, 7.0), 0);
        int r = rs_settimeout(c, tvals[i].v);
        if (tvals[i].valid) {
            ck_assert_msg(r == 0, "settimeout(%s): %s", tname(tvals[i].v), rs_err_name(r));
            ck_assert(rs_gettimeout(c) == tvals[i].v);
        } else {
            ck_assert_msg(r == -EINVAL, "settimeout(%s): %s", tname(tvals[i].v), rs_err_name(r));
            ck_assert(rs_gettimeout(c) == 7.0); /* unchanged */
        }
        recv_and_sendfile(c, s, tname(tvals[i].v));
        ck_assert_int_eq(rs_close(c), 0);
        ck_assert_int_eq(rs_close(s), 0);
    }
}
END_TEST

START_TEST(setdefaulttimeout_extremes)
{
    for (size_t i = 0; i < sizeof tvals / sizeof tvals[0]; i++) {
        rs_setdefaulttimeout(7.0);
        rs_setdefaulttimeout(tvals[i].v);
        double want = tvals[i].valid ? tvals[i].v : 7.0;
        ck_assert_msg(rs_getdefaulttimeout() == want, "default after %s: %g", tname(tvals[i].v),
                      rs_getdefaulttimeout());
        rs_socket *c, *s;
        t_tcp_pair(AF_INET, &c, &s);
        ck_assert(rs_gettimeout(c) == want);
        recv_and_sendfile(c, s, tname(tvals[i].v));
        ck_assert_int_eq(rs_close(c), 0);
        ck_assert_int_eq(rs_close(s), 0);
    }
    rs_setdefaulttimeout(RS_TIMEOUT_NONE);
}
END_TEST

/* ---- Happy Eyeballs delays of centuries ---------------------------------------------------- */

/* [black hole, target] with a delay that never ends: the second attempt starts when the first
 * times out (0.3 s), and the call ends then, not at the delay. Also a lone address, and the
 * numeric-host path, which arm no timer between attempts but take the same delay. */
START_TEST(happy_eyeballs_huge_delay)
{
    static const double delays[] = { 1e10, 1e300, DBL_MAX };
    for (size_t d = 0; d < sizeof delays / sizeof delays[0]; d++) {
        for (int listening = 0; listening < 2; listening++) {
            struct t_blackhole bh;
            t_blackhole_open(&bh, AF_INET);
            struct sockaddr_storage ss[2];
            socklen_t len[2];
            ss[0] = bh.addr;
            len[0] = bh.len;
            rs_socket *target = listening ? t_server_ephemeral(AF_INET, &ss[1], &len[1])
                                          : t_refusing_port(AF_INET, &ss[1], &len[1]);
            struct addrinfo ai[2];
            t_ai_chain(ai, ss, len, 2);
            struct rs_connect_opts o = RS_CONNECT_OPTS_INIT;
            o.timeout = 0.3;
            o.happy_eyeballs_delay = delays[d];
            rs_socket *c = NULL;
            double t0 = t_now();
            int r = rs_create_connection_addrs(&c, ai, &o);
            double took = t_now() - t0;
            ck_assert_msg(took < 1.0, "delay %s, %s: took %.3f s", tname(delays[d]),
                          listening ? "listening" : "refusing", took);
            if (listening) {
                ASSERT_ERR(r, 0);
                ck_assert_int_eq(rs_close(c), 0);
            } else {
                ASSERT_ERR(r, -ECONNREFUSED);
            }
            /* one address, by name: the literal path */
            char port[8];
            snprintf(port, sizeof port, "%u", t_port(&ss[1]));
            t0 = t_now();
            r = rs_create_connection(&c, "127.0.0.1", port, &o);
            took = t_now() - t0;
            ck_assert_msg(took < 1.0, "delay %s, one address: took %.3f s", tname(delays[d]), took);
            ASSERT_ERR(r, listening ? 0 : -ECONNREFUSED);
            if (c)
                ck_assert_int_eq(rs_close(c), 0);
            /* a deadline for the whole call instead of a per-attempt timeout */
            o.timeout = RS_TIMEOUT_NONE;
            o.deadline = 0.3;
            t0 = t_now();
            r = rs_create_connection_addrs(&c, ai, &o);
            took = t_now() - t0;
            ck_assert_msg(took < 1.0, "delay %s, deadline: took %.3f s", tname(delays[d]), took);
            ASSERT_ERR(r, -ETIMEDOUT);
            ck_assert_int_eq(rs_close(target), 0);
            t_blackhole_close(&bh);
        }
    }
}
END_TEST

/* ---- transfers over 2 GiB, lengths around INT_MAX and UINT_MAX ----------------------------- */

#define CHUNK ((size_t)64 << 20)
#define NCHUNK 34 /* 2176 MiB: past 2^31 and past MAX_IO */

struct pump {
    rs_socket *s;
    size_t chunks;
    ssize_t err;
};

static void *pump_main(void *p)
{
    struct pump *pm = p;
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        pm->err = -ENOMEM;
        return NULL;
    }
    t_fill_pattern(buf, CHUNK, 5);
    for (size_t i = 0; i < pm->chunks && pm->err == 0; i++) {
        ssize_t r = rs_sendall(pm->s, buf, CHUNK, 0);
        if (r != (ssize_t)CHUNK)
            pm->err = r < 0 ? r : -EIO;
    }
    rs_shutdown(pm->s, SHUT_WR);
    free(buf);
    rs_loop_default_release();
    return NULL;
}

/* MSG_WAITALL with iovecs totalling 2176 MiB (all aliasing one 64 MiB buffer): one call returns
 * at most MAX_IO bytes, as one recvmsg(2) would, and what it did not take is still there. */
START_TEST(recvmsg_waitall_over_2g)
{
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(c, 20.0), 0);
    ck_assert_int_eq(rs_settimeout(s, 20.0), 0);
    unsigned char *buf =
        mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_ptr_ne(buf, MAP_FAILED);
    struct iovec iov[NCHUNK];
    for (size_t i = 0; i < NCHUNK; i++)
        iov[i] = (struct iovec){ buf, CHUNK };
    struct pump pm = { .s = s, .chunks = NCHUNK };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, pump_main, &pm), 0);
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = NCHUNK };
    double t0 = t_now();
    ssize_t r = rs_recvmsg(c, &m, MSG_WAITALL);
    ck_assert_msg(r > 0 && r <= MAX_IO, "recvmsg MSG_WAITALL over 2 GiB: %zd (%s)", r, rs_err_name((int)r));
    /* The readiness backends gather to the limit. io_uring's own MSG_WAITALL may stop short on
     * an O_NONBLOCK socket with more than a few iovecs (seen on 6.18), which recvmsg(2) allows. */
    rs_loop *l;
    ck_assert_int_eq(rs_loop_default(&l), 0);
    if (rs_loop_backend(l) != RS_BACKEND_URING)
        ck_assert_msg(r == MAX_IO, "short of the per-call limit: %zd", r);
    size_t rest = 0;
    for (int k = 0; k < 100000; k++) {
        ssize_t n = rs_recv(c, buf, CHUNK, 0);
        ck_assert_msg(n >= 0, "recv after: %s", rs_err_name((int)n));
        if (n == 0)
            break;
        rest += (size_t)n;
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(pm.err == 0, "sender: %s", rs_err_name((int)pm.err));
    ck_assert_uint_eq((size_t)r + rest, NCHUNK * CHUNK);
    fprintf(stderr, "recvmsg_waitall_over_2g: %.2f s\n", t_now() - t0);
    munmap(buf, CHUNK);
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(s), 0);
}
END_TEST

/* recv/send with lengths around INT_MAX and UINT_MAX on a mapping that large (never touched
 * beyond what the kernel writes): a short transfer, never 0 (EOF), a negative or a truncated
 * length. */
START_TEST(lengths_near_int_uint_max)
{
    static const size_t lens[] = {
        (size_t)INT_MAX,  (size_t)INT_MAX + 1,  (size_t)UINT_MAX - 1,
        (size_t)UINT_MAX, (size_t)UINT_MAX + 1, (size_t)UINT_MAX + 4097,
    };
    size_t maplen = ((size_t)UINT_MAX + 1) * 2;
    unsigned char *map =
        mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_ptr_ne(map, MAP_FAILED);
    rs_socket *c, *s;
    t_tcp_pair(AF_INET, &c, &s);
    ck_assert_int_eq(rs_settimeout(c, 5.0), 0);
    ck_assert_int_eq(rs_settimeout(s, 5.0), 0);
    int small = 64 * 1024;
    ck_assert_int_eq(rs_setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    unsigned char got[100];
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        ck_assert_int_eq(rs_send(s, "0123456789", 10, 0), 10);
        ssize_t r = rs_recv(c, map, lens[i], 0);
        ck_assert_msg(r == 10 && memcmp(map, "0123456789", 10) == 0, "recv len %zu: %zd (%s)", lens[i], r,
                      rs_err_name((int)r));
        r = rs_send(c, map + 4096, lens[i], 0);
        ck_assert_msg(r > 0 && r <= MAX_IO, "send len %zu: %zd (%s)", lens[i], r, rs_err_name((int)r));
        /* drain what was sent, so the next send finds room */
        for (ssize_t left = r; left > 0;) {
            ssize_t n = rs_recv(s, got, sizeof got < (size_t)left ? sizeof got : (size_t)left, 0);
            ck_assert_msg(n > 0, "drain: %zd", n);
            left -= n;
        }
    }
    ck_assert_int_eq(rs_close(c), 0);
    ck_assert_int_eq(rs_close(s), 0);
    munmap(map, maplen);
}
END_TEST

/* ---- ring sizes ----------------------------------------------------------------------------- */

/* Every entries value rs_loop_new accepts makes a ring (loop.h documents 0..32768); one more is
 * -EINVAL on every backend. AUTO must not fall back to epoll for a value it accepted. */
START_TEST(loop_entries_bound)
{
    static const struct {
        unsigned entries;
        int want;
    } cases[] = {
        { 0, 0 },     { 1, 0 },           { 16384, 0 },          { 16385, 0 },
        { 32768, 0 }, { 32769, -EINVAL }, { UINT_MAX, -EINVAL },
    };
    bool uring = T_HAVE_URING && t_kernel_allows_uring();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int backends[] = { RS_BACKEND_URING, RS_BACKEND_EPOLL, RS_BACKEND_POLL, RS_BACKEND_AUTO };
        for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++) {
            if (backends[b] == RS_BACKEND_URING && !uring)
                continue;
            struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
            o.backend = backends[b];
            o.entries = cases[i].entries;
            rs_loop *l = NULL;
            int r = rs_loop_new(&l, &o);
            if (r == -ENOSYS && backends[b] == RS_BACKEND_EPOLL)
                continue; /* not built in */
            ck_assert_msg(r == cases[i].want, "entries %u on %s: %s", cases[i].entries,
                          rs_backend_name(backends[b]) ? rs_backend_name(backends[b]) : "auto",
                          rs_err_name(r));
            if (r == 0) {
                /* AUTO follows RINGSOCK_BACKEND; on a uring run it must get io_uring */
                if (backends[b] == RS_BACKEND_AUTO && t_wanted_backend() == RS_BACKEND_URING)
                    ck_assert_msg(rs_loop_backend(l) == RS_BACKEND_URING, "entries %u: AUTO got %s",
                                  cases[i].entries, rs_backend_name(rs_loop_backend(l)));
                ck_assert_int_eq(rs_loop_free(l), 0);
            }
        }
    }
}
END_TEST

/* ---- the io_uring probe under a full fd table ---------------------------------------------- */

/* In a fresh process (no loop yet, so no probe yet): with no fd free, io_uring_setup fails with
 * EMFILE. That says nothing about io_uring: once fds are free again a new loop must get it. */
START_TEST(probe_emfile_not_cached)
{
    if (!T_HAVE_URING || !t_kernel_allows_uring())
        return;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        unsetenv("RINGSOCK_BACKEND");
        struct rlimit saved, lo;
        if (getrlimit(RLIMIT_NOFILE, &saved) < 0)
            _exit(10);
        int lowest = dup(0);
        if (lowest < 0)
            _exit(11);
        close(lowest);
        lo = saved;
        lo.rlim_cur = (rlim_t)lowest; /* the next fd would be `lowest`: none is free */
        if (setrlimit(RLIMIT_NOFILE, &lo) < 0)
            _exit(12);
        rs_loop *l = NULL;
        int r = rs_loop_new(&l, NULL);
        if (r == 0) {
            if (rs_loop_backend(l) == RS_BACKEND_URING)
                _exit(13); /* the limit did not bite: the test proves nothing */
            rs_loop_free(l);
        }
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.backend = RS_BACKEND_URING;
        r = rs_loop_new(&l, &o);
        if (r != -EMFILE)
            _exit(14);
        if (setrlimit(RLIMIT_NOFILE, &saved) < 0)
            _exit(15);
        r = rs_loop_new(&l, NULL);
        if (r < 0)
            _exit(16);
        int b = rs_loop_backend(l);
        rs_loop_free(l);
        r = rs_loop_new(&l, &o);
        if (r == 0)
            rs_loop_free(l);
        _exit(b != RS_BACKEND_URING ? 17 : r != 0 ? 18 : 0);
    }
    int st = t_wait_child(pid, 10);
    static const char *const why[] = {
        [10] = "getrlimit",
        [11] = "dup",
        [12] = "setrlimit",
        [13] = "io_uring worked with no fd free",
        [14] = "forced uring with no fd free did not give -EMFILE",
        [15] = "restoring the limit",
        [16] = "AUTO loop after restoring the limit failed",
        [17] = "AUTO loop after restoring the limit is not io_uring: the EMFILE probe was cached",
        [18] = "forced uring after restoring the limit failed: the EMFILE probe was cached",
    };
    ck_assert_msg(st == 0, "child: %d %s", st, st >= 10 && st <= 18 ? why[st] : "");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("edge");
    tcase_add_test(t_tcase(s, "settimeout", 20), settimeout_extremes);
    tcase_add_test(t_tcase(s, "setdefaulttimeout", 20), setdefaulttimeout_extremes);
    tcase_add_test(t_tcase(s, "happy_eyeballs_delay", 30), happy_eyeballs_huge_delay);
    tcase_add_test(t_tcase(s, "recvmsg_waitall_2g", 60), recvmsg_waitall_over_2g);
    tcase_add_test(t_tcase(s, "lengths", 20), lengths_near_int_uint_max);
    tcase_add_test(t_tcase(s, "entries", 20), loop_entries_bound);
    /* no fixture: the fixture's default loop would run the probe before the test */
    TCase *tc = tcase_create("probe_emfile");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, probe_emfile_not_cached);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return t_run(make_suite()); }
