/* Shared test helpers (see t.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#ifdef __NR_io_uring_setup
#define T_HAVE_IO_URING_H 1
#endif
#endif
#endif
#ifndef T_HAVE_IO_URING_H
#define T_HAVE_IO_URING_H 0
#endif

#include "t.h"

static int fd_start;

int t_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

int t_loop_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], link[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strcmp(link, "anon_inode:[eventpoll]") == 0 || strcmp(link, "anon_inode:[io_uring]") == 0 ||
            strcmp(link, "anon_inode:[eventfd]") == 0)
            n++;
    }
    closedir(d);
    return n;
}

int t_wanted_backend(void)
{
    const char *b = getenv("RINGSOCK_BACKEND");
    if (!b || !*b || strcmp(b, "auto") == 0)
        return RS_BACKEND_AUTO;
    for (int i = RS_BACKEND_URING; i <= RS_BACKEND_POLL; i++)
        if (strcmp(b, rs_backend_name(i)) == 0)
            return i;
    return -1;
}

void t_setup(void)
{
    fd_start = t_fd_count();
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    int want = t_wanted_backend();
    if (want != RS_BACKEND_AUTO)
        ck_assert_str_eq(rs_backend_name(rs_loop_backend(loop)), rs_backend_name(want));
}

void t_teardown(void)
{
    ck_assert_int_eq(rs_loop_default_release(), 0);
    ck_assert_int_eq(t_fd_count(), fd_start);
}

rs_socket *t_server_ephemeral(int family, struct sockaddr_storage *addr, socklen_t *len)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, family, SOCK_STREAM, 0), 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    }
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&ss, sl), 0);
    ck_assert_int_eq(rs_listen(s, 16), 0);
    *len = sizeof *addr;
    ck_assert_int_eq(rs_getsockname(s, addr, len), 0);
    return s;
}

void t_tcp_pair(int family, rs_socket **client, rs_socket **server)
{
    struct sockaddr_storage addr;
    socklen_t len;
    rs_socket *l = t_server_ephemeral(family, &addr, &len);
    ck_assert_int_eq(rs_socket_open(client, family, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_connect(*client, (struct sockaddr *)&addr, len), 0);
    ck_assert_int_eq(rs_accept(l, server, NULL, NULL), 0);
    ck_assert_int_eq(rs_close(l), 0);
}

double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double t_slack(void)
{
    const char *e = getenv("T_SLACK");
    double v = e ? strtod(e, NULL) : 0.0;
    return v > 0 ? v : 0.25;
}

void t_sleep(double seconds)
{
    struct timespec ts = { .tv_sec = (time_t)seconds };
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void t_loopback(int family, unsigned short port, struct sockaddr_storage *addr, socklen_t *len)
{
    memset(addr, 0, sizeof *addr);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(port);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        *len = sizeof *a;
    }
}

unsigned short t_port(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return ntohs(((const struct sockaddr_in *)a)->sin_port);
}

bool t_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family || t_port(a) != t_port(b))
        return false;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

rs_socket *t_bound(int family, int type, struct sockaddr_storage *addr, socklen_t *len)
{
    rs_socket *s;
    ck_assert_int_eq(rs_socket_open(&s, family, type, 0), 0);
    struct sockaddr_storage ss;
    socklen_t sl;
    t_loopback(family, 0, &ss, &sl);
    ck_assert_int_eq(rs_bind(s, (struct sockaddr *)&ss, sl), 0);
    *len = sizeof *addr;
    ck_assert_int_eq(rs_getsockname(s, addr, len), 0);
    return s;
}

rs_socket *t_refusing_port(int family, struct sockaddr_storage *addr, socklen_t *len)
{
    return t_bound(family, SOCK_STREAM, addr, len);
}

int t_backend_fds(int backend)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.backend = backend;
    int before = t_fd_count();
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
    int n = t_fd_count() - before;
    ck_assert_int_eq(rs_loop_free(loop), 0);
    ck_assert_int_eq(t_fd_count(), before);
    return n;
}

int t_wait_child(pid_t pid, double timeout)
{
    double end = t_now() + timeout;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            if (WIFSIGNALED(st))
                return 256 + WTERMSIG(st);
            continue;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (t_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        t_sleep(0.005);
    }
}

void t_fill_pattern(void *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed ? seed : 0x9e3779b9u;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 24);
    }
}

uint64_t t_fnv1a(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Can this process create an io_uring at all? Asked of the kernel directly, not of the library,
 * so that a library bug cannot turn into a skip. */
bool t_kernel_allows_uring(void)
{
#if T_HAVE_IO_URING_H
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        int v = 0;
        int n = fscanf(f, "%d", &v);
        fclose(f);
        if (n == 1 && v == 2)
            return false;
    }
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 4, &params);
    if (fd >= 0) {
        close((int)fd);
        return true;
    }
    return !(errno == ENOSYS || errno == EPERM);
#else
    return false;
#endif
}

int t_run(Suite *s)
{
    if (t_wanted_backend() == RS_BACKEND_URING && !t_kernel_allows_uring()) {
        fprintf(stderr, "io_uring is not available to this process: skipping the uring run\n");
        srunner_free(srunner_create(s));
        return 77;
    }
    SRunner *sr = srunner_create(s);
    /* fork mode unless the environment says otherwise (CK_FORK=no for debuggers and valgrind) */
    if (!getenv("CK_FORK"))
        srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

bool t_under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

TCase *t_tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, t_setup, t_teardown);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

static void tick_cb(rs_timer *t, int status, void *user)
{
    struct t_tick *k = user;
    k->running = false;
    if (status == 0 && !k->stopping && rs_timer_start(t, 0.01, tick_cb, k) == 0)
        k->running = true;
}

void t_tick_start(struct t_tick *k, rs_loop *l)
{
    memset(k, 0, sizeof *k);
    ck_assert_int_eq(rs_timer_new(&k->t, l), 0);
    ck_assert_int_eq(rs_timer_start(k->t, 0.01, tick_cb, k), 0);
    k->running = true;
}

void t_tick_end(struct t_tick *k, rs_loop *l)
{
    k->stopping = true;
    if (k->running)
        ck_assert_int_eq(rs_timer_stop(k->t), 0);
    for (int i = 0; k->running && i < 1000; i++)
        ck_assert_int_ge(rs_loop_run(l, RS_RUN_ONCE), 0);
    ck_assert_msg(!k->running, "tick timer: no callback after rs_timer_stop");
    ck_assert_int_eq(rs_timer_free(k->t), 0);
}

void t_ai_chain(struct addrinfo *ai, struct sockaddr_storage *ss, const socklen_t *len, size_t n)
{
    memset(ai, 0, n * sizeof *ai);
    for (size_t i = 0; i < n; i++) {
        ai[i].ai_family = ss[i].ss_family;
        ai[i].ai_socktype = SOCK_STREAM;
        ai[i].ai_protocol = IPPROTO_TCP;
        ai[i].ai_addr = (struct sockaddr *)&ss[i];
        ai[i].ai_addrlen = len[i];
        ai[i].ai_next = i + 1 < n ? &ai[i + 1] : NULL;
    }
}

/* The first filler completes the queue; the other two make sure of it whatever the kernel's
 * "full" comparison is. */
void t_blackhole_open(struct t_blackhole *b, int family)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    t_loopback(family, 0, &ss, &sl);
    ck_assert_int_eq(rs_socket_open(&b->listener, family, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_bind(b->listener, (struct sockaddr *)&ss, sl), 0);
    ck_assert_int_eq(rs_listen(b->listener, 0), 0);
    b->len = sizeof b->addr;
    ck_assert_int_eq(rs_getsockname(b->listener, &b->addr, &b->len), 0);
    for (int i = 0; i < T_BH_FILLERS; i++) {
        ck_assert_int_eq(rs_socket_open(&b->fill[i], family, SOCK_STREAM | SOCK_NONBLOCK, 0), 0);
        int r = rs_connect(b->fill[i], (struct sockaddr *)&b->addr, b->len);
        ck_assert_msg(r == 0 || r == -EINPROGRESS, "filler connect: %s", rs_err_name(r));
        if (i == 0) {
            struct pollfd p = { .fd = rs_socket_fd(b->fill[0]), .events = POLLOUT };
            ck_assert_int_eq(poll(&p, 1, 2000), 1);
            int err = -1;
            socklen_t el = sizeof err;
            ck_assert_int_eq(rs_getsockopt(b->fill[0], SOL_SOCKET, SO_ERROR, &err, &el), 0);
            ck_assert_int_eq(err, 0);
        }
    }
}

void t_blackhole_close(struct t_blackhole *b)
{
    for (int i = 0; i < T_BH_FILLERS; i++)
        ck_assert_int_eq(rs_close(b->fill[i]), 0);
    ck_assert_int_eq(rs_close(b->listener), 0);
}
