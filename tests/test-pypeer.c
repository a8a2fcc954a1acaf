/* ringsock against a peer nobody here wrote: CPython's socket module, run as a child process
 * from tests/py, with every byte checksummed in both directions. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pypeer.h"
#include "t.h"

#define PEER_WAIT 10.0 /* seconds a peer gets to finish once our side is done */

static rs_socket *connect_loopback(int family, unsigned short port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(port);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        len = sizeof *a;
    }
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, family, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_settimeout(s, 10.0), 0);
    int r = rs_connect(s, (struct sockaddr *)&ss, len);
    ck_assert_msg(r == 0, "connect to port %u: %s", port, rs_err_name(r));
    return s;
}

/* Receive exactly len bytes (each rs_recv may return fewer). */
static void recv_exact(rs_socket *s, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = rs_recv(s, (char *)buf + got, len - got, 0);
        ck_assert_msg(r > 0, "recv after %zu of %zu bytes: %s", got, len, r ? rs_err_name((int)r) : "EOF");
        got += (size_t)r;
    }
}

static void expect_eof(rs_socket *s)
{
    char c;
    ssize_t r = rs_recv(s, &c, 1, 0);
    ck_assert_msg(r == 0, "expected EOF, got %zd (%s)", r, r < 0 ? rs_err_name((int)r) : "data");
}

static void sha_hex(const void *buf, size_t len, char hex[65])
{
    struct t_py_sha256 c;
    t_py_sha256_init(&c);
    t_py_sha256_update(&c, buf, len);
    t_py_sha256_hex(&c, hex);
}

static void peer_done(struct t_py *py)
{
    char line[256];
    int n = t_py_readline(py, line, sizeof line, PEER_WAIT);
    ck_assert_msg(n >= 0, "peer said nothing more");
    ck_assert_str_eq(line, "ok");
    ck_assert_int_eq(t_py_wait(py, PEER_WAIT), 0);
}

/* Known answers, so that a wrong SHA-256 here cannot agree with itself. */
START_TEST(sha256_known_answers)
{
    char hex[65];
    sha_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* the same message fed in awkward pieces */
    static char big[1000003];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + 3);
    char whole[65];
    sha_hex(big, sizeof big, whole);
    struct t_py_sha256 c;
    t_py_sha256_init(&c);
    for (size_t off = 0, step = 1; off < sizeof big; off += step, step = step * 3 % 1000 + 1)
        t_py_sha256_update(&c, big + off, off + step > sizeof big ? sizeof big - off : step);
    t_py_sha256_hex(&c, hex);
    ck_assert_str_eq(hex, whole);
}
END_TEST

/* A Python server hashes a few MB that ringsock's rs_sendall sends, answers with the digest and a
 * deterministic stream that ringsock's rs_recv must reproduce byte for byte. */
static void python_sha_server(int family)
{
    enum {
        N = 4 * 1024 * 1024 + 11,
        M = 2 * 1024 * 1024 + 17,
        SEED = 7
    };
    char n_arg[32], m_arg[32], seed_arg[32];
    snprintf(n_arg, sizeof n_arg, "%d", N);
    snprintf(m_arg, sizeof m_arg, "%d", M);
    snprintf(seed_arg, sizeof seed_arg, "%d", SEED);
    char *const argv[] = { family == AF_INET6 ? "6" : "4", n_arg, m_arg, seed_arg, NULL };
    struct t_py py;
    t_py_spawn("sha_server", argv, &py);

    rs_socket *s = connect_loopback(family, t_py_port(&py));
    char *out = malloc(N), *in = malloc(M), *want = malloc(M);
    ck_assert(out && in && want);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    t_py_random(&rng, out, N);
    ck_assert_int_eq(rs_sendall(s, out, N, 0), N);

    char mine[65], theirs[65];
    sha_hex(out, N, mine);
    recv_exact(s, theirs, 64);
    theirs[64] = '\0';
    ck_assert_str_eq(theirs, mine);

    recv_exact(s, in, M);
    t_py_stream(SEED, 0, want, M);
    ck_assert_msg(memcmp(in, want, M) == 0, "the stream from Python differs");
    expect_eof(s);
    ck_assert_int_eq(rs_close(s), 0);
    peer_done(&py);
    free(out);
    free(in);
    free(want);
}

START_TEST(python_server_sha256_ipv4) { python_sha_server(AF_INET); }
END_TEST

START_TEST(python_server_sha256_ipv6) { python_sha_server(AF_INET6); }
END_TEST

/* The reverse: ringsock serves (bind/listen/accept), a Python client sends in random-sized pieces
 * with sleeps between some of them. Each side checks the other's digest. */
START_TEST(python_client_random_pieces)
{
    enum {
        N = 2 * 1024 * 1024 + 5,
        M = 1024 * 1024 + 3,
        SEED = 11
    };
    struct sockaddr_storage addr;
    socklen_t alen;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &alen);
    ck_assert_int_eq(rs_settimeout(l, 10.0), 0);
    char port[16], n_arg[32], seed_arg[32];
    snprintf(port, sizeof port, "%u", ntohs(((struct sockaddr_in *)&addr)->sin_port));
    snprintf(n_arg, sizeof n_arg, "%d", N);
    snprintf(seed_arg, sizeof seed_arg, "%d", SEED);
    char *const argv[] = { port, n_arg, seed_arg, NULL };
    struct t_py py;
    t_py_spawn("chunky_client", argv, &py);
    ck_assert_str_eq(py.line, "started");

    rs_socket *c;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    int r = rs_accept(l, &c, &peer, &plen);
    ck_assert_msg(r == 0, "accept: %s", rs_err_name(r));
    ck_assert_int_eq(peer.ss_family, AF_INET);
    ck_assert_int_eq(rs_close(l), 0);
    ck_assert_int_eq(rs_settimeout(c, 10.0), 0);

    char *in = malloc(N), *want = malloc(N), *out = malloc(M);
    ck_assert(in && want && out);
    recv_exact(c, in, N);
    t_py_stream(SEED, 0, want, N);
    ck_assert_msg(memcmp(in, want, N) == 0, "the bytes from Python differ from its stream");
    char got[65], theirs[65];
    sha_hex(in, N, got);
    recv_exact(c, theirs, 64);
    theirs[64] = '\0';
    ck_assert_str_eq(theirs, got);

    uint64_t rng = 12345;
    t_py_random(&rng, out, M);
    ck_assert_int_eq(rs_sendall(c, got, 64, 0), 64);
    ck_assert_int_eq(rs_sendall(c, out, M, 0), M);
    ck_assert_int_eq(rs_close(c), 0);

    char line[256], expect[128], mine[65];
    sha_hex(out, M, mine);
    snprintf(expect, sizeof expect, "%d %s", M, mine);
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0);
    ck_assert_str_eq(line, expect);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    free(in);
    free(want);
    free(out);
}
END_TEST

/* A Python server that says nothing: a 0.2 s recv timeout fires on time as -ETIMEDOUT and leaves
 * the connection usable; once Python closes, recv sees EOF. */
START_TEST(python_silent_server_timeout_then_eof)
{
    char *const argv[] = { "4", NULL };
    struct t_py py;
    t_py_spawn("silent_server", argv, &py);
    rs_socket *s = connect_loopback(AF_INET, t_py_port(&py));

    ck_assert_int_eq(rs_settimeout(s, 0.2), 0);
    char buf[16];
    double t0 = t_py_now();
    ssize_t r = rs_recv(s, buf, sizeof buf, 0);
    double dt = t_py_now() - t0;
    ck_assert_msg(r == -ETIMEDOUT, "recv: %zd (%s)", r, r < 0 ? rs_err_name((int)r) : "data");
    ck_assert_msg(dt >= 0.19 && dt < 1.5, "timed out after %.3f s, not 0.2", dt);

    ck_assert_int_eq(rs_send(s, "x", 1, 0), 1);
    ck_assert_int_eq(rs_settimeout(s, 5.0), 0);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(rs_recv(s, buf, sizeof buf, 0), 0); /* EOF stays EOF */
    ck_assert_int_eq(rs_close(s), 0);
    peer_done(&py);
}
END_TEST

/* A Python client that shuts down its write side after sending: ringsock reads to EOF, then
 * still sends its reply, which Python reads in full. */
START_TEST(python_client_shut_wr_then_reply)
{
    enum {
        N = 300 * 1000 + 1,
        M = 500 * 1000 + 7,
        SEED = 21
    };
    struct sockaddr_storage addr;
    socklen_t alen;
    rs_socket *l = t_server_ephemeral(AF_INET, &addr, &alen);
    ck_assert_int_eq(rs_settimeout(l, 10.0), 0);
    char port[16], n_arg[32], m_arg[32], seed_arg[32];
    snprintf(port, sizeof port, "%u", ntohs(((struct sockaddr_in *)&addr)->sin_port));
    snprintf(n_arg, sizeof n_arg, "%d", N);
    snprintf(m_arg, sizeof m_arg, "%d", M);
    snprintf(seed_arg, sizeof seed_arg, "%d", SEED);
    char *const argv[] = { port, n_arg, m_arg, seed_arg, NULL };
    struct t_py py;
    t_py_spawn("halfclose_client", argv, &py);

    rs_socket *c;
    ck_assert_int_eq(rs_accept(l, &c, NULL, NULL), 0);
    ck_assert_int_eq(rs_close(l), 0);
    ck_assert_int_eq(rs_settimeout(c, 10.0), 0);

    /* read to EOF, in odd-sized reads, without knowing the size in advance */
    char *in = malloc(N + 4096), *want = malloc(N);
    ck_assert(in && want);
    size_t got = 0;
    for (;;) {
        size_t room = N + 4096 - got;
        ck_assert_uint_gt(room, 0);
        ssize_t r = rs_recv(c, in + got, room < 7777 ? room : 7777, 0);
        ck_assert_msg(r >= 0, "recv after %zu bytes: %s", got, rs_err_name((int)r));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    ck_assert_uint_eq(got, N);
    t_py_stream(SEED, 0, want, N);
    ck_assert(memcmp(in, want, N) == 0);

    char hex[65];
    sha_hex(in, N, hex);
    char *reply = malloc(M);
    ck_assert_ptr_nonnull(reply);
    t_py_stream(SEED + 1, 0, reply, M);
    ck_assert_int_eq(rs_sendall(c, hex, 64, 0), 64);
    ck_assert_int_eq(rs_sendall(c, reply, M, 0), M);
    ck_assert_int_eq(rs_close(c), 0);
    peer_done(&py);
    free(in);
    free(want);
    free(reply);
}
END_TEST

/* fd passing with a peer nobody here wrote: Python's socket.send_fds sends 10 pipe read ends
 * over an AF_UNIX pair (its end inherited as fd 3); ringsock's rs_recv_fds gets them, close-on-exec
 * and readable. */
START_TEST(python_send_fds_to_ringsock)
{
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, AF_UNIX, SOCK_STREAM, 0), 0);
    char *const argv[] = { "send", "10", NULL };
    struct t_py py;
    t_py_spawn_fd("fdpass_peer", argv, rs_socket_fd(p[1]), &py);
    ck_assert_str_eq(py.line, "ready");
    ck_assert_int_eq(rs_close(p[1]), 0);
    ck_assert_int_eq(rs_settimeout(p[0], 10), 0);

    char buf[64];
    int fds[20];
    size_t n = 20;
    ssize_t r = rs_recv_fds(p[0], buf, sizeof buf, fds, &n, 0);
    ck_assert_msg(r == 3, "recv_fds: %zd (%s)", r, r < 0 ? rs_err_name((int)r) : "data");
    ck_assert(memcmp(buf, "fds", 3) == 0);
    ck_assert_uint_eq(n, 10);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_ne(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, 0);
        char want[16], got[16];
        int wl = snprintf(want, sizeof want, "py%zu", i);
        ck_assert_int_eq(read(fds[i], got, sizeof got), wl);
        ck_assert(memcmp(got, want, (size_t)wl) == 0);
        ck_assert_int_eq(close(fds[i]), 0);
    }
    peer_done(&py);
    ck_assert_int_eq(rs_recv(p[0], buf, sizeof buf, 0), 0);
    ck_assert_int_eq(rs_close(p[0]), 0);
}
END_TEST

/* The reverse: rs_send_fds sends 10 pipe read ends, Python's socket.recv_fds reads them. */
START_TEST(ringsock_send_fds_to_python)
{
    rs_socket *p[2];
    ck_assert_int_eq(rs_socketpair(p, AF_UNIX, SOCK_STREAM, 0), 0);
    char *const argv[] = { "recv", "10", NULL };
    struct t_py py;
    t_py_spawn_fd("fdpass_peer", argv, rs_socket_fd(p[1]), &py);
    ck_assert_str_eq(py.line, "ready");
    ck_assert_int_eq(rs_close(p[1]), 0);

    int pipes[10][2], rfds[10];
    char expect[256] = "";
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(pipe2(pipes[i], O_CLOEXEC), 0);
        char tag[16];
        int tl = snprintf(tag, sizeof tag, "c%d", i);
        ck_assert_int_eq(write(pipes[i][1], tag, (size_t)tl), tl);
        ck_assert_int_eq(close(pipes[i][1]), 0);
        rfds[i] = pipes[i][0];
        if (i)
            strcat(expect, ",");
        strcat(expect, tag);
    }
    ck_assert_int_eq(rs_send_fds(p[0], "fds", 3, rfds, 10, 0), 3);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(close(rfds[i]), 0);

    char line[256];
    ck_assert_int_ge(t_py_readline(&py, line, sizeof line, PEER_WAIT), 0);
    ck_assert_str_eq(line, expect);
    ck_assert_int_eq(t_py_wait(&py, PEER_WAIT), 0);
    ck_assert_int_eq(rs_close(p[0]), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("pypeer");
    TCase *tc = t_tcase(s, "python", 30);
    tcase_add_test(tc, sha256_known_answers);
    tcase_add_test(tc, python_server_sha256_ipv4);
    tcase_add_test(tc, python_server_sha256_ipv6);
    tcase_add_test(tc, python_client_random_pieces);
    tcase_add_test(tc, python_silent_server_timeout_then_eof);
    tcase_add_test(tc, python_client_shut_wr_then_reply);
    tcase_add_test(tc, python_send_fds_to_ringsock);
    tcase_add_test(tc, ringsock_send_fds_to_python);
    return s;
}

int main(void) { return t_run(make_suite()); }
