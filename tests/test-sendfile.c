/* Suite 'sendfile': rs_sendfile on every backend and through each of its paths (splice,
 * sendfile(2), read + send), the received bytes checked by SHA-256 in a Python peer
 * (py/sendfile_sink.py): socket.py's offset, count and file-position rules; exact accounting when
 * the peer goes away or stops reading (bytes stuck in the pipe are never counted); SIGPIPE at its
 * default disposition; stream sources; CPython's SendfileUsingSendTest and
 * SendfileUsingSendfileTest scenarios. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)

/* Paths as the loop index of a test: AUTO, then the three RINGSOCK_SENDFILE can force. */
enum {
    P_AUTO,
    P_SPLICE,
    P_SENDFILE,
    P_READSEND,
    P_COUNT
};
static const char *const path_name[P_COUNT] = { "auto", "splice", "sendfile", "readsend" };

static char tmpdir[64];

static void setup(void)
{
    t_setup();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rs-sendfile-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE that got through would end the test */
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    unsetenv("RINGSOCK_SENDFILE");
    t_teardown();
}

/* ---- files ------------------------------------------------------------------------------- */

/* tmpdir/name with size bytes of the deterministic pattern of seed; its path in path. */
static void make_file(const char *name, size_t size, uint32_t seed, char path[128])
{
    snprintf(path, 128, "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    size_t chunk = 1 * MIB;
    char *buf = malloc(chunk);
    ck_assert_ptr_nonnull(buf);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        t_fill_pattern(buf, n, seed + (uint32_t)(off / chunk));
        ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    }
    free(buf);
    ck_assert_int_eq(close(fd), 0);
}

/* A sparse 1 GiB file: holes, with patterned islands at the start, across the middle and at the
 * end, so offsets that are off by anything show in the hash. */
static void make_sparse_gib(char path[128])
{
    snprintf(path, 128, "%s/sparse", tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)GIB), 0);
    static const struct {
        unsigned long long off, len;
    } island[] = {
        { 0, 64 * KIB },
        { 512 * MIB - 1000, 70000 },
        { GIB - MIB, MIB },
    };
    char *buf = malloc(MIB);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < sizeof island / sizeof island[0]; i++) {
        t_fill_pattern(buf, island[i].len, (uint32_t)(77 + i));
        ck_assert_int_eq(pwrite(fd, buf, island[i].len, (off_t)island[i].off), (ssize_t)island[i].len);
    }
    free(buf);
    ck_assert_int_eq(close(fd), 0);
}

static int open_ro(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* ---- the Python peer ----------------------------------------------------------------------- */

struct result {
    unsigned long long n;
    char sha[65];
};

static void read_result(struct t_py *py, struct result *r, double timeout)
{
    char line[256];
    ck_assert_int_ge(t_py_readline(py, line, sizeof line, timeout), 0);
    ck_assert_msg(sscanf(line, "%llu %64s", &r->n, r->sha) == 2, "peer said \"%s\"", line);
}

/* SHA-256 of each of k range lists ("off:count+off:count", count 0 = to EOF) of the file. */
static void expect(const char *path, const char *const ranges[], size_t k, struct result *out)
{
    char *argv[40];
    size_t n = 0;
    argv[n++] = (char *)"hash";
    argv[n++] = (char *)path;
    ck_assert_uint_lt(k, 36);
    for (size_t i = 0; i < k; i++)
        argv[n++] = (char *)ranges[i];
    argv[n] = NULL;
    struct t_py py;
    t_py_spawn("sendfile_sink", argv, &py);
    ck_assert_msg(sscanf(py.line, "%llu %64s", &out[0].n, out[0].sha) == 2, "hash said \"%s\"", py.line);
    for (size_t i = 1; i < k; i++)
        read_result(&py, &out[i], 60);
    ck_assert_int_eq(t_py_wait(&py, 10), 0);
}

static void expect1(const char *path, const char *ranges, struct result *out)
{
    expect(path, &ranges, 1, out);
}

/* Start the sink listening on 127.0.0.1 with options (NULL-terminated list, may be empty). */
static void sink_listen(struct t_py *py, const char *opt0, ...)
{
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)"listen";
    argv[n++] = (char *)"4";
    va_list ap;
    va_start(ap, opt0);
    for (const char *o = opt0; o; o = va_arg(ap, const char *)) {
        ck_assert_uint_lt(n, 15);
        argv[n++] = (char *)o;
    }
    va_end(ap);
    argv[n] = NULL;
    t_py_spawn("sendfile_sink", argv, py);
}

static rs_socket *connect_port(unsigned short port)
{
    struct sockaddr_storage a;
    socklen_t al;
    t_loopback(AF_INET, port, &a, &al);
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, AF_INET, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(s, (struct sockaddr *)&a, al), 0);
    return s;
}

static void check_same(const struct result *got, const struct result *want, const char *what)
{
    ck_assert_msg(got->n == want->n && strcmp(got->sha, want->sha) == 0,
                  "%s: peer got %llu bytes %.12s..., expected %llu bytes %.12s...", what, got->n, got->sha,
                  want->n, want->sha);
}

/* ---- paths --------------------------------------------------------------------------------- */

static void force(int p)
{
    if (p == P_AUTO)
        unsetenv("RINGSOCK_SENDFILE");
    else
        ck_assert_int_eq(setenv("RINGSOCK_SENDFILE", path_name[p], 1), 0);
}

/* The path a regular file takes for a transfer of n bytes: the forced one, or on io_uring splice
 * from 8 MiB on, else sendfile(2). */
static int effective(int p, unsigned long long n)
{
    if (p != P_AUTO)
        return p;
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    return rs_loop_backend(loop) == RS_BACKEND_URING && n >= 8 * MIB ? P_SPLICE : P_SENDFILE;
}

static unsigned long long path_bytes(int p)
{
    struct rs_sendfile_stats st;
    ck_assert_int_eq(rs_sendfile_stats(&st), 0);
    switch (p) {
    case P_SPLICE: return st.splice_bytes;
    case P_SENDFILE: return st.sendfile_bytes;
    case P_READSEND: return st.readsend_bytes;
    default: return st.splice_bytes + st.sendfile_bytes + st.readsend_bytes;
    }
}

static void assert_no_sigpipe_left(void)
{
    sigset_t pend, cur;
    ck_assert_int_eq(sigpending(&pend), 0);
    ck_assert_msg(!sigismember(&pend, SIGPIPE), "a SIGPIPE is left pending");
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &cur), 0);
    ck_assert_msg(!sigismember(&cur, SIGPIPE), "SIGPIPE is left blocked");
}

/* ---- sizes, offsets, counts ------------------------------------------------------------------ */

/* Files of 0 B, 1 B, 64 KiB and 10 MiB, each with offset/count combinations (past EOF included),
 * through the path of the loop index; every transfer on its own connection. */
START_TEST(sizes_offsets_counts)
{
    int p = _i;
    force(p);
    static const size_t sizes[] = { 0, 1, 64 * KIB, 10 * MIB };
    enum {
        COMBOS = 8
    };
    struct t_py sink;
    char conns[16];
    snprintf(conns, sizeof conns, "%d", (int)(COMBOS * 4));
    sink_listen(&sink, "--conns", conns, NULL);
    unsigned short port = t_py_port(&sink);
    for (size_t f = 0; f < 4; f++) {
        size_t size = sizes[f];
        char path[128], name[32];
        snprintf(name, sizeof name, "f%zu", size);
        make_file(name, size, (uint32_t)f + 1, path);
        const unsigned long long combo[COMBOS][2] = {
            { 0, 0 },
            { 0, 1 },
            { 1, 0 },
            { size / 2, size / 4 + 1 },
            { size ? size - 1 : 0, 0 },
            { 0, size + 1000 },
            { size, 0 },
            { size + 5, 7 },
        };
        char rbuf[COMBOS][48];
        const char *ranges[COMBOS];
        for (int c = 0; c < COMBOS; c++) {
            unsigned long long off = combo[c][0], cnt = combo[c][1];
            unsigned long long n = off >= size ? 0 : size - off;
            if (cnt && cnt < n)
                n = cnt;
            /* an empty range: hash of nothing ("size:1" reads past EOF) */
            snprintf(rbuf[c], sizeof rbuf[c], "%llu:%llu", n ? off : size, n ? n : 1);
            ranges[c] = rbuf[c];
        }
        struct result want[COMBOS];
        expect(path, ranges, COMBOS, want);
        int fd = open_ro(path);
        for (int c = 0; c < COMBOS; c++) {
            off_t off = (off_t)combo[c][0];
            unsigned long long before = path_bytes(effective(p, want[c].n));
            rs_socket *s = connect_port(port);
            ssize_t r = rs_sendfile(s, fd, &off, (size_t)combo[c][1]);
            ck_assert_msg(r == (ssize_t)want[c].n, "size %zu off %llu count %llu: returned %zd, want %llu",
                          size, combo[c][0], combo[c][1], r, want[c].n);
            ck_assert_int_eq(off, (off_t)(combo[c][0] + want[c].n));
            ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0); /* an explicit offset leaves the position */
            ck_assert_uint_eq(path_bytes(effective(p, want[c].n)) - before, want[c].n);
            ck_assert_int_eq(rs_close(s), 0);
            struct result got;
            read_result(&sink, &got, 60);
            check_same(&got, &want[c], path_name[p]);
        }
        close(fd);
    }
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
    assert_no_sigpipe_left();
}
END_TEST

/* A 1 GiB sparse file, whole (offset NULL: from and to the file position) and a range across its
 * middle island, through the backend's automatic path. */
START_TEST(big_sparse_gib)
{
    char path[128];
    make_sparse_gib(path);
    const char *ranges[] = { "0:0", "536000000:300000000" };
    struct result want[2];
    expect(path, ranges, 2, want);
    ck_assert_uint_eq(want[0].n, GIB);
    struct t_py sink;
    sink_listen(&sink, "--conns", "2", NULL);
    int fd = open_ro(path);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), (ssize_t)GIB);
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), (off_t)GIB);
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 60);
    check_same(&got, &want[0], "1 GiB");
    off_t off = 536000000;
    s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_sendfile(s, fd, &off, 300000000), 300000000);
    ck_assert_int_eq(off, 836000000);
    ck_assert_int_eq(rs_close(s), 0);
    read_result(&sink, &got, 60);
    check_same(&got, &want[1], "1 GiB range");
    ck_assert_uint_eq(path_bytes(effective(P_AUTO, GIB)), GIB + 300000000);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* offset NULL: start at the file position and advance it by what was sent; count beyond EOF
 * stops at EOF; a position past EOF sends nothing and stays. */
START_TEST(position_with_offset_null)
{
    force(_i);
    char path[128];
    make_file("pos", 100000, 9, path);
    struct result want;
    expect1(path, "1000:5000+6000:0", &want);
    struct t_py sink;
    sink_listen(&sink, NULL);
    int fd = open_ro(path);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(lseek(fd, 1000, SEEK_SET), 1000);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 5000), 5000);
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 6000);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 1000000), 94000); /* count beyond EOF */
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 100000);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), 0); /* at EOF */
    ck_assert_int_eq(lseek(fd, 200000, SEEK_SET), 200000);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), 0); /* past EOF */
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 200000);
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    check_same(&got, &want, path_name[_i]);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* Each forced path delivers the same bytes of the same range, and takes that path. */
START_TEST(forced_paths_identical)
{
    char path[128];
    make_file("ten", 10 * MIB, 3, path);
    struct result want;
    expect1(path, "12345:7654321", &want);
    struct t_py sink;
    sink_listen(&sink, "--conns", "3", NULL);
    int fd = open_ro(path);
    for (int p = P_SPLICE; p <= P_READSEND; p++) {
        force(p);
        unsigned long long before = path_bytes(p);
        rs_socket *s = connect_port(t_py_port(&sink));
        off_t off = 12345;
        ck_assert_int_eq(rs_sendfile(s, fd, &off, 7654321), 7654321);
        ck_assert_uint_eq(path_bytes(p) - before, 7654321);
        ck_assert_int_eq(rs_close(s), 0);
        struct result got;
        read_result(&sink, &got, 30);
        check_same(&got, &want, path_name[p]);
    }
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* The loop's pipe pool: one pipe serves transfer after transfer of the splice path. */
START_TEST(pool_reuses_pipe)
{
    force(P_SPLICE);
    char path[128];
    make_file("pool", 3 * MIB, 4, path);
    struct t_py sink;
    sink_listen(&sink, "--conns", "3", NULL);
    int fd = open_ro(path);
    for (int i = 0; i < 3; i++) {
        rs_socket *s = connect_port(t_py_port(&sink));
        off_t off = 0;
        ck_assert_int_eq(rs_sendfile(s, fd, &off, 0), (ssize_t)(3 * MIB));
        ck_assert_int_eq(rs_close(s), 0);
        struct result got;
        read_result(&sink, &got, 30);
        ck_assert_uint_eq(got.n, 3 * MIB);
    }
    struct rs_sendfile_stats st;
    ck_assert_int_eq(rs_sendfile_stats(&st), 0);
    ck_assert_uint_eq(st.calls, 3);
    ck_assert_uint_eq(st.pipes_made, 1);
    ck_assert_uint_eq(st.pipe_misses, 0);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* rs_close right after a transfer closes the connection: the peer sees EOF while this thread
 * waits on something else entirely. (On io_uring, SPLICE runs in io-wq workers, and a worker's
 * last reference to a request — and so to the socket — used to outlive the call until the
 * thread's next wait on its ring: about one transfer in a hundred left the peer hanging.) */
START_TEST(close_after_transfer_reaches_peer)
{
    force(P_SPLICE);
    char path[128];
    make_file("two", 2 * MIB, 14, path);
    enum {
        N = 200
    };
    struct t_py sink;
    sink_listen(&sink, "--conns", "200", NULL);
    int fd = open_ro(path);
    for (int i = 0; i < N; i++) {
        rs_socket *s = connect_port(t_py_port(&sink));
        off_t off = 0;
        ck_assert_int_eq(rs_sendfile(s, fd, &off, 0), (ssize_t)(2 * MIB));
        ck_assert_int_eq(rs_close(s), 0);
        struct result got;
        read_result(&sink, &got, 5);
        ck_assert_uint_eq(got.n, 2 * MIB);
    }
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* ---- the peer goes away ---------------------------------------------------------------------- */

/* AF_UNIX: the peer reads 3 MB, shuts its reading side (our next write fails with EPIPE) and then
 * reads what was already queued to it. Everything the socket accepted reached the peer, so the
 * returned offset must equal the peer's count exactly: bytes left in the pipe were not counted.
 * SIGPIPE is at its default disposition: raising it would end the test. */
START_TEST(peer_shuts_reading_exact)
{
    force(_i);
    char path[128];
    make_file("ten", 10 * MIB, 5, path);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    struct t_py peer;
    char *argv[] = { (char *)"fd", (char *)"--shut-after", (char *)"3000000", NULL };
    t_py_spawn_fd("sendfile_sink", argv, rs_socket_fd(sp[1]), &peer);
    ck_assert_str_eq(peer.line, "ready");
    ck_assert_int_eq(rs_close(sp[1]), 0);
    int fd = open_ro(path);
    off_t off = 0;
    ssize_t r = rs_sendfile(sp[0], fd, &off, 0);
    ck_assert_msg(r == -EPIPE, "returned %zd (%s)", r, rs_strerror((int)r));
    struct result got;
    read_result(&peer, &got, 30);
    ck_assert_msg((unsigned long long)off == got.n, "offset %lld, peer counted %llu", (long long)off, got.n);
    ck_assert_uint_ge(got.n, 3000000);
    char range[48];
    snprintf(range, sizeof range, "0:%llu", got.n);
    struct result want;
    expect1(path, range, &want);
    check_same(&got, &want, path_name[_i]);
    assert_no_sigpipe_left();
    ck_assert_int_eq(rs_close(sp[0]), 0);
    close(fd);
    ck_assert_int_eq(t_py_wait(&peer, 10), 0);
}
END_TEST

/* TCP: the peer reads 3 MB and closes with data unread (a reset). The error comes back; the offset
 * covers what the peer read plus at most what the two socket buffers held (bytes the socket
 * accepted that the reset then discarded, which no sender can see) — never the pipe's 1 MiB. */
START_TEST(peer_closes_tcp)
{
    force(_i);
    char path[128];
    make_file("ten", 10 * MIB, 6, path);
    struct t_py sink;
    sink_listen(&sink, "--close-after", "3000000", "--rcvbuf", "65536", NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    int v = 65536;
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v), 0);
    int sndbuf = 0;
    socklen_t l = sizeof sndbuf;
    ck_assert_int_eq(rs_getsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l), 0);
    int fd = open_ro(path);
    off_t off = 0;
    ssize_t r = rs_sendfile(s, fd, &off, 0);
    ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "returned %zd (%s)", r, rs_strerror((int)r));
    struct result got;
    read_result(&sink, &got, 30);
    ck_assert_uint_eq(got.n, 3000000);
    /* the peer's 64 KiB SO_RCVBUF is doubled by the kernel, as ours is; TCP may queue one
     * (GSO, up to 64 KiB) segment past a full receive buffer (seen once under load: 12,662 bytes
     * over) */
    unsigned long long slack = (unsigned long long)sndbuf + 3 * 65536;
    ck_assert_msg((unsigned long long)off >= got.n && (unsigned long long)off <= got.n + slack,
                  "offset %lld, peer read %llu, buffers %llu", (long long)off, got.n, slack);
    struct result want;
    expect1(path, "0:3000000", &want);
    check_same(&got, &want, path_name[_i]);
    assert_no_sigpipe_left();
    ck_assert_int_eq(rs_close(s), 0);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* A peer that closed before anything was sent: an error, no SIGPIPE, the mask as it was (also
 * when the caller blocks SIGPIPE itself). */
START_TEST(sigpipe_never_raised)
{
    force(_i);
    char path[128];
    make_file("ten", 10 * MIB, 7, path);
    int fd = open_ro(path);
    for (int blocked = 0; blocked < 2; blocked++) {
        sigset_t set, old;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        if (blocked)
            ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
        struct t_py sink;
        sink_listen(&sink, "--close-after", "0", NULL);
        rs_socket *s = connect_port(t_py_port(&sink));
        struct result got;
        read_result(&sink, &got, 30);
        ck_assert_uint_eq(got.n, 0);
        ck_assert_int_eq(t_py_wait(&sink, 10), 0);
        off_t off = 0;
        ssize_t r = rs_sendfile(s, fd, &off, 0);
        ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "returned %zd (%s)", r, rs_strerror((int)r));
        ck_assert_int_lt(off, 10 * MIB);
        if (blocked) {
            sigset_t cur, pend;
            ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, &cur), 0);
            ck_assert(sigismember(&cur, SIGPIPE));
            ck_assert_int_eq(sigpending(&pend), 0);
            ck_assert(!sigismember(&pend, SIGPIPE));
        }
        assert_no_sigpipe_left();
        ck_assert_int_eq(rs_close(s), 0);
    }
    close(fd);
}
END_TEST

/* ---- timeouts ------------------------------------------------------------------------------ */

/* The peer reads 1 MiB and stops. With a 0.5 s timeout: -ETIMEDOUT about 0.5 s after the socket
 * stopped taking bytes. Then we close (an orderly FIN after the queued bytes) and let the peer read
 * to EOF: it must have received exactly *offset bytes, the right ones. */
START_TEST(timeout_stalled_peer)
{
    force(_i);
    char path[128];
    make_file("big", 32 * MIB, 8, path);
    struct t_py sink;
    sink_listen(&sink, "--stall-after", "1048576", NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_settimeout(s, 0.5), 0);
    int fd = open_ro(path);
    off_t off = 0;
    double t0 = t_now();
    ssize_t r = rs_sendfile(s, fd, &off, 0);
    double took = t_now() - t0;
    ck_assert_msg(r == -ETIMEDOUT, "returned %zd (%s)", r, rs_strerror((int)r));
    ck_assert_msg(took >= 0.499 && took <= 1.5 + t_slack(), "timed out after %.3f s", took);
    ck_assert_int_gt(off, 1048576);
    ck_assert_int_lt(off, 32 * MIB);
    char line[64];
    ck_assert_int_ge(t_py_readline(&sink, line, sizeof line, 10), 0);
    ck_assert_str_eq(line, "stalled");
    ck_assert_int_eq(rs_close(s), 0);
    ck_assert_int_eq(kill(sink.pid, SIGUSR1), 0);
    struct result got;
    read_result(&sink, &got, 30);
    ck_assert_msg((unsigned long long)off == got.n, "offset %lld, peer received %llu", (long long)off, got.n);
    char range[48];
    snprintf(range, sizeof range, "0:%llu", got.n);
    struct result want;
    expect1(path, range, &want);
    check_same(&got, &want, path_name[_i]);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* A slow reader that keeps making progress never trips a timeout shorter than the transfer: the
 * timeout bounds each wait, not the call (socket.py). 3 MiB at 64 KiB per 20 ms ~ 1 s with a
 * 0.4 s timeout. */
START_TEST(timeout_bounds_each_wait)
{
    force(_i);
    char path[128];
    make_file("three", 3 * MIB, 10, path);
    struct result want;
    expect1(path, "0:0", &want);
    struct t_py sink;
    /* small buffers on both ends: with loopback's autotuned megabytes, one wait for room behind
     * a slow reader can itself take most of a second */
    sink_listen(&sink, "--slow", "65536:0.02", "--rcvbuf", "65536", NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    int v = 65536;
    ck_assert_int_eq(rs_setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v), 0);
    ck_assert_int_eq(rs_settimeout(s, 0.4), 0);
    int fd = open_ro(path);
    double t0 = t_now();
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), (ssize_t)(3 * MIB));
    ck_assert_msg(t_now() - t0 > 0.4, "the transfer should outlast the timeout");
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    check_same(&got, &want, path_name[_i]);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* ---- stream sources ---------------------------------------------------------------------------- */

struct feeder {
    int src; /* file to copy */
    int pipe_wr;
    size_t len;
};

static void *feed(void *p)
{
    struct feeder *f = p;
    char *buf = malloc(100000);
    size_t done = 0;
    while (buf && done < f->len) {
        ssize_t n = pread(f->src, buf, 100000, (off_t)done);
        if (n <= 0)
            break;
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(f->pipe_wr, buf + w, (size_t)(n - w));
            if (k <= 0)
                goto out;
            w += k;
        }
        done += (size_t)n;
    }
out:
    free(buf);
    close(f->pipe_wr);
    return NULL;
}

/* A pipe as source, whatever path is forced: read + send, identical bytes; a count leaves the
 * rest in the pipe; a nonzero offset into a pipe is -ESPIPE. */
START_TEST(pipe_source)
{
    force(_i);
    char path[128];
    make_file("ten", 10 * MIB, 11, path);
    const char *ranges[] = { "0:0", "0:3000000" };
    struct result want[2];
    expect(path, ranges, 2, want);
    struct t_py sink;
    sink_listen(&sink, "--conns", "2", NULL);
    for (int limited = 0; limited < 2; limited++) {
        int pfd[2];
        ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
        struct feeder f = { .src = open_ro(path), .pipe_wr = pfd[1], .len = 10 * MIB };
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, feed, &f), 0);
        rs_socket *s = connect_port(t_py_port(&sink));
        off_t bad = 5;
        ck_assert_int_eq(rs_sendfile(s, pfd[0], &bad, 0), -ESPIPE);
        unsigned long long before = path_bytes(P_READSEND);
        off_t off = 0;
        ssize_t r = rs_sendfile(s, pfd[0], limited ? &off : NULL, limited ? 3000000 : 0);
        ck_assert_int_eq(r, (ssize_t)want[limited].n);
        if (limited)
            ck_assert_int_eq(off, 3000000);
        ck_assert_uint_eq(path_bytes(P_READSEND) - before, want[limited].n);
        ck_assert_int_eq(rs_close(s), 0);
        struct result got;
        read_result(&sink, &got, 30);
        check_same(&got, &want[limited], path_name[_i]);
        /* nothing beyond count was taken from the pipe */
        size_t rest = 0;
        char buf[65536];
        ssize_t n;
        while ((n = read(pfd[0], buf, sizeof buf)) > 0)
            rest += (size_t)n;
        ck_assert_uint_eq(rest, 10 * MIB - want[limited].n);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        close(pfd[0]);
        close(f.src);
    }
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* A stream source with no data: the socket's timeout bounds the wait for it too. */
START_TEST(stream_source_timeout)
{
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(sp[0], 0.3), 0);
    int pfd[2];
    ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
    ck_assert_int_eq(write(pfd[1], "abc", 3), 3);
    double t0 = t_now();
    off_t off = 0;
    ck_assert_int_eq(rs_sendfile(sp[0], pfd[0], &off, 10), -ETIMEDOUT);
    t_assert_took(t0, 0.3, "waiting for a silent pipe");
    ck_assert_int_eq(off, 3); /* what was sent before the wait */
    char buf[8];
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), 3);
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    close(pfd[0]);
    close(pfd[1]);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

/* A socket as source (AF_UNIX pair): read + send until the source's EOF. */
START_TEST(socket_source)
{
    rs_socket *src[2], *dst[2];
    ck_assert_int_eq(rs_socketpair(src, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_socketpair(dst, AF_UNIX, SOCK_STREAM, 0), 0);
    char msg[3000];
    t_fill_pattern(msg, sizeof msg, 12);
    ck_assert_int_eq(rs_sendall(src[1], msg, sizeof msg, 0), (ssize_t)sizeof msg);
    ck_assert_int_eq(rs_shutdown(src[1], SHUT_WR), 0);
    ck_assert_int_eq(rs_sendfile(dst[0], rs_socket_fd(src[0]), NULL, 0), (ssize_t)sizeof msg);
    char back[sizeof msg];
    ck_assert_int_eq(rs_recv(dst[1], back, sizeof back, MSG_WAITALL), (ssize_t)sizeof msg);
    ck_assert_int_eq(memcmp(back, msg, sizeof msg), 0);
    for (int i = 0; i < 2; i++) {
        rs_close(src[i]);
        rs_close(dst[i]);
    }
}
END_TEST

/* ---- many at once ------------------------------------------------------------------------------ */

#define THREADS 80
static pthread_barrier_t all_sent;

struct worker {
    unsigned short port;
    int fd;
    ssize_t r;
    struct rs_sendfile_stats st;
};

static void *worker(void *p)
{
    struct worker *w = p;
    struct sockaddr_storage a;
    socklen_t al;
    t_loopback(AF_INET, w->port, &a, &al);
    rs_socket *s = NULL;
    w->r = rs_socket_open(&s, AF_INET, SOCK_STREAM, 0);
    if (w->r == 0)
        w->r = rs_connect(s, (struct sockaddr *)&a, al);
    if (w->r == 0) {
        off_t off = 0;
        w->r = rs_sendfile(s, w->fd, &off, 0);
    }
    rs_sendfile_stats(&w->st);
    rs_close(s);
    /* every loop (and the pipe it keeps) stays until all transfers are done */
    pthread_barrier_wait(&all_sent);
    return NULL; /* the thread's loop and its pipes go at thread exit */
}

/* 80 threads at once on the splice path, more than the process's 64 pool pipes: each transfer is
 * whole and right, those that found no pipe used sendfile(2), and every fd comes back. */
START_TEST(many_threads)
{
    force(P_SPLICE);
    char path[128];
    make_file("one", 1 * MIB, 13, path);
    struct result want;
    expect1(path, "0:0", &want);
    struct t_py sink;
    char conns[8];
    snprintf(conns, sizeof conns, "%d", THREADS);
    sink_listen(&sink, "--conns", conns, NULL);
    int fd = open_ro(path);
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    ck_assert_int_eq(pthread_barrier_init(&all_sent, NULL, THREADS), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .port = t_py_port(&sink), .fd = fd };
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        struct result got;
        read_result(&sink, &got, 60);
        check_same(&got, &want, "thread");
    }
    unsigned long long pipes = 0, misses = 0, bytes = 0;
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(w[i].r, (ssize_t)MIB);
        pipes += w[i].st.pipes_made;
        misses += w[i].st.pipe_misses;
        bytes += w[i].st.splice_bytes + w[i].st.sendfile_bytes;
    }
    pthread_barrier_destroy(&all_sent);
    ck_assert_uint_eq(bytes, THREADS * MIB);
    ck_assert_uint_eq(pipes, 64);
    ck_assert_uint_eq(misses, THREADS - 64);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* ---- CPython's SendfileUsingSendTest / SendfileUsingSendfileTest --------------------------------
 * test_socket.py runs each scenario once through socket._sendfile_use_send (read + send) and once
 * through _sendfile_use_sendfile; here each tcase forces its path (the loop index), and a third
 * runs them through splice. FILESIZE is 10 MiB as there. */

static char cp_path[128];

static void cp_setup(void)
{
    setup();
    make_file("cpython", 10 * MIB, 21, cp_path);
}

/* Send with (offset, count) through path, check the return value, offset/position and bytes. */
static void cp_send(int p, bool use_null, off_t offset, size_t count, unsigned long long want_n)
{
    force(p);
    char range[48];
    snprintf(range, sizeof range, "%lld:%llu", (long long)offset, want_n);
    struct result want;
    expect1(cp_path, range, &want);
    struct t_py sink;
    sink_listen(&sink, NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    int fd = open_ro(cp_path);
    off_t off = offset;
    ssize_t r;
    if (use_null) {
        ck_assert_int_eq(lseek(fd, offset, SEEK_SET), offset);
        r = rs_sendfile(s, fd, NULL, count);
        ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), offset + (off_t)want_n); /* file.tell() */
    } else {
        r = rs_sendfile(s, fd, &off, count);
        ck_assert_int_eq(off, offset + (off_t)want_n);
    }
    ck_assert_int_eq(r, (ssize_t)want_n);
    ck_assert_uint_eq(path_bytes(p), want_n);
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    check_same(&got, &want, path_name[p]);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}

START_TEST(testRegularFile) { cp_send(_i, true, 0, 0, 10 * MIB); }
END_TEST

START_TEST(testOffset) { cp_send(_i, true, 5000, 0, 10 * MIB - 5000); }
END_TEST

START_TEST(testCount) { cp_send(_i, true, 0, 5000007, 5000007); }
END_TEST

START_TEST(testCountSmall) { cp_send(_i, true, 0, 1, 1); }
END_TEST

START_TEST(testCountWithOffset) { cp_send(_i, true, 2007, 5000007, 5000007); }
END_TEST

START_TEST(testEmptyFileSend)
{
    force(_i);
    char path[128];
    make_file("empty", 0, 1, path);
    struct t_py sink;
    sink_listen(&sink, NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    int fd = open_ro(path);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), 0);
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    ck_assert_uint_eq(got.n, 0);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* socket.py sends a non-regular file (io.BytesIO) with send(); ours: a pipe, read + send. */
START_TEST(testNonRegularFile)
{
    force(_i);
    struct result want;
    expect1(cp_path, "0:0", &want);
    struct t_py sink;
    sink_listen(&sink, NULL);
    int pfd[2];
    ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
    struct feeder f = { .src = open_ro(cp_path), .pipe_wr = pfd[1], .len = 10 * MIB };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, feed, &f), 0);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_sendfile(s, pfd[0], NULL, 0), (ssize_t)(10 * MIB));
    ck_assert_uint_eq(path_bytes(P_READSEND), 10 * MIB);
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    check_same(&got, &want, "pipe");
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    close(pfd[0]);
    close(f.src);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

START_TEST(testNonBlocking)
{
    force(_i);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0), 0);
    int fd = open_ro(cp_path);
    ck_assert_int_eq(rs_sendfile(sp[0], fd, NULL, 0), -EINVAL);
    ck_assert_int_eq(rs_settimeout(sp[0], 0), 0);
    ck_assert_int_eq(rs_sendfile(sp[0], fd, NULL, 0), -EINVAL);
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);
    close(fd);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

/* A timeout long enough for the whole transfer. */
START_TEST(testWithTimeout)
{
    force(_i);
    struct result want;
    expect1(cp_path, "0:0", &want);
    struct t_py sink;
    sink_listen(&sink, NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_settimeout(s, 20.0), 0);
    int fd = open_ro(cp_path);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), (ssize_t)(10 * MIB));
    ck_assert_int_eq(rs_close(s), 0);
    struct result got;
    read_result(&sink, &got, 30);
    check_same(&got, &want, path_name[_i]);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* A 0.01 s timeout and a receiver that does not read: TimeoutError there, -ETIMEDOUT here, with
 * the file position at what was sent. */
START_TEST(testWithTimeoutTriggeredSend)
{
    force(_i);
    struct t_py sink;
    /* as there: the receiver takes 88192 bytes, then nothing (a small SO_RCVBUF, so that the
     * buffers cannot swallow the whole file) */
    sink_listen(&sink, "--stall-after", "88192", "--rcvbuf", "65536", NULL);
    rs_socket *s = connect_port(t_py_port(&sink));
    ck_assert_int_eq(rs_settimeout(s, 0.01), 0);
    int fd = open_ro(cp_path);
    ck_assert_int_eq(rs_sendfile(s, fd, NULL, 0), -ETIMEDOUT);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    ck_assert_int_lt(pos, 10 * MIB);
    ck_assert_int_eq(rs_close(s), 0);
    ck_assert_int_eq(kill(sink.pid, SIGUSR1), 0);
    char line[64];
    ck_assert_int_ge(t_py_readline(&sink, line, sizeof line, 10), 0);
    ck_assert_str_eq(line, "stalled");
    struct result got;
    read_result(&sink, &got, 30);
    ck_assert_int_eq((off_t)got.n, pos);
    close(fd);
    ck_assert_int_eq(t_py_wait(&sink, 10), 0);
}
END_TEST

/* socket.py's argument errors that exist in C, and ours. */
START_TEST(testErrors)
{
    force(_i);
    int fd = open_ro(cp_path);
    rs_socket *d;
    ck_assert_int_eq(rs_socket_open(&d, AF_INET, SOCK_DGRAM, 0), 0);
    ck_assert_int_eq(rs_sendfile(d, fd, NULL, 0), -EINVAL); /* only SOCK_STREAM */
    rs_close(d);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    off_t neg = -1;
    ck_assert_int_eq(rs_sendfile(sp[0], fd, &neg, 0), -EINVAL);
    ck_assert_int_eq(rs_sendfile(NULL, fd, NULL, 0), -EBADF);
    ck_assert_int_eq(rs_sendfile(sp[0], -1, NULL, 0), -EBADF);
    int wo = open(cp_path, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(wo, 0);
    ck_assert_int_eq(rs_sendfile(sp[0], wo, NULL, 0), -EBADF);
    close(wo);
    int dir = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dir, 0);
    ck_assert_int_eq(rs_sendfile(sp[0], dir, NULL, 0), -EISDIR);
    close(dir);
    ck_assert_int_eq(setenv("RINGSOCK_SENDFILE", "zerocopy", 1), 0);
    ck_assert_int_eq(rs_sendfile(sp[0], fd, NULL, 0), -EINVAL);
    force(_i);
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);
    rs_close(sp[0]);
    rs_close(sp[1]);
    close(fd);
}
END_TEST

static TCase *cpython_case(const char *name, int p)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, cp_setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, testRegularFile, p, p + 1);
    tcase_add_loop_test(tc, testOffset, p, p + 1);
    tcase_add_loop_test(tc, testCount, p, p + 1);
    tcase_add_loop_test(tc, testCountSmall, p, p + 1);
    tcase_add_loop_test(tc, testCountWithOffset, p, p + 1);
    tcase_add_loop_test(tc, testEmptyFileSend, p, p + 1);
    tcase_add_loop_test(tc, testNonRegularFile, p, p + 1);
    tcase_add_loop_test(tc, testNonBlocking, p, p + 1);
    tcase_add_loop_test(tc, testWithTimeout, p, p + 1);
    tcase_add_loop_test(tc, testWithTimeoutTriggeredSend, p, p + 1);
    tcase_add_loop_test(tc, testErrors, p, p + 1);
    return tc;
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("sendfile");

    TCase *tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, sizes_offsets_counts, P_AUTO, P_COUNT);
    tcase_add_loop_test(tc, position_with_offset_null, P_AUTO, P_COUNT);
    tcase_add_test(tc, forced_paths_identical);
    tcase_add_test(tc, pool_reuses_pipe);
    tcase_add_test(tc, close_after_transfer_reaches_peer);
    suite_add_tcase(s, tc);

    tc = tcase_create("gib");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, big_sparse_gib);
    suite_add_tcase(s, tc);

    tc = tcase_create("peer_gone");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, peer_shuts_reading_exact, P_AUTO, P_COUNT);
    tcase_add_loop_test(tc, peer_closes_tcp, P_AUTO, P_COUNT);
    tcase_add_loop_test(tc, sigpipe_never_raised, P_AUTO, P_COUNT);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeout");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, timeout_stalled_peer, P_AUTO, P_COUNT);
    tcase_add_loop_test(tc, timeout_bounds_each_wait, P_AUTO, P_COUNT);
    tcase_add_test(tc, stream_source_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("streams");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, pipe_source, P_AUTO, P_COUNT);
    tcase_add_test(tc, socket_source);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, many_threads);
    suite_add_tcase(s, tc);

    suite_add_tcase(s, cpython_case("SendfileUsingSendTest", P_READSEND));
    suite_add_tcase(s, cpython_case("SendfileUsingSendfileTest", P_SENDFILE));
    suite_add_tcase(s, cpython_case("SendfileUsingSpliceTest", P_SPLICE));
    return s;
}

int main(void) { return t_run(make_suite()); }
