/* Suite 'seccomp': a process whose seccomp profile makes io_uring_setup fail with ENOSYS (as
 * Docker's default profile does) still gets a working loop: AUTO falls back to epoll, an explicit
 * io_uring loop fails with an error. The filter is installed in a forked child (and, for a
 * process that never probed io_uring before, in a re-executed copy of this program); the child
 * reports through its exit status. Registered once per backend like every suite: the parent's
 * state (which backend it already used) differs per run, the child ignores RINGSOCK_BACKEND. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"

#if defined(__x86_64__)
#define T_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define T_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#if defined(T_AUDIT_ARCH) && defined(__NR_io_uring_setup)

/* Child exit codes: which step failed. */
enum {
    C_OK = 0,
    C_NO_NEW_PRIVS = 2,
    C_SECCOMP = 3,
    C_FILTER_INEFFECTIVE = 4, /* raw io_uring_setup was not refused with ENOSYS */
    C_DEFAULT_LOOP = 5,       /* rs_loop_default failed */
    C_NOT_EPOLL = 6,          /* AUTO picked something other than epoll */
    C_URING_SUCCEEDED = 7,    /* explicit io_uring loop was created anyway */
    C_URING_NOT_ERRNO = 8,    /* ... or failed with something that is not a negative errno */
    C_ECHO = 9,               /* the TCP echo round trip failed */
    C_NEW_AUTO = 10,          /* rs_loop_new(NULL) did not give a working epoll loop */
    C_ENV_URING_SILENT = 11,  /* RINGSOCK_BACKEND=uring gave a loop instead of an error */
};

static const char *code_name(int st)
{
    switch (st) {
    case C_OK: return "ok";
    case C_NO_NEW_PRIVS: return "prctl(PR_SET_NO_NEW_PRIVS) failed";
    case C_SECCOMP: return "prctl(PR_SET_SECCOMP) failed";
    case C_FILTER_INEFFECTIVE: return "the filter did not make io_uring_setup ENOSYS";
    case C_DEFAULT_LOOP: return "rs_loop_default failed under seccomp (no fallback from io_uring)";
    case C_NOT_EPOLL: return "AUTO did not pick epoll";
    case C_URING_SUCCEEDED: return "an explicit io_uring loop was created";
    case C_URING_NOT_ERRNO: return "explicit io_uring failed with a non-errno value";
    case C_ECHO: return "TCP echo failed";
    case C_NEW_AUTO: return "rs_loop_new(NULL) did not give epoll";
    case C_ENV_URING_SILENT: return "RINGSOCK_BACKEND=uring did not fail";
    case -1: return "timed out";
    default: return st > 255 ? "killed by a signal" : "unexpected status";
    }
}

/* io_uring_setup -> ENOSYS, everything else allowed; a foreign architecture is killed (as
 * Docker's profile does), which would show up as a signal in the child's status. */
static int install_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return C_NO_NEW_PRIVS;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return C_SECCOMP;
    /* the premise: io_uring_setup itself is refused the way Docker refuses it */
    errno = 0;
    long r = syscall(__NR_io_uring_setup, 4, NULL);
    if (r != -1 || errno != ENOSYS)
        return C_FILTER_INEFFECTIVE;
    return C_OK;
}

/* One TCP echo over loopback with the calling thread's default loop; bounded by timeouts. */
static bool echo_roundtrip(void)
{
    bool ok = false;
    rs_socket *l = NULL, *c = NULL, *s = NULL;
    struct sockaddr_storage addr;
    socklen_t len;
    t_loopback(AF_INET, 0, &addr, &len);
    char buf[16];
    if (rs_socket_open(&l, AF_INET, SOCK_STREAM, 0) != 0 || rs_bind(l, (struct sockaddr *)&addr, len) != 0 ||
        rs_listen(l, 4) != 0)
        goto out;
    len = sizeof addr;
    if (rs_getsockname(l, &addr, &len) != 0 || rs_settimeout(l, 2.0) != 0)
        goto out;
    if (rs_socket_open(&c, AF_INET, SOCK_STREAM, 0) != 0 || rs_settimeout(c, 2.0) != 0 ||
        rs_connect(c, (struct sockaddr *)&addr, len) != 0)
        goto out;
    if (rs_accept(l, &s, NULL, NULL) != 0 || rs_settimeout(s, 2.0) != 0)
        goto out;
    if (rs_sendall(c, "echo?", 5, 0) != 5)
        goto out;
    ssize_t n = rs_recv(s, buf, 5, MSG_WAITALL);
    if (n != 5 || rs_sendall(s, buf, (size_t)n, 0) != 5)
        goto out;
    if (rs_recv(c, buf, 5, MSG_WAITALL) != 5 || memcmp(buf, "echo?", 5) != 0)
        goto out;
    /* a wait that must go through the backend: a timeout */
    rs_settimeout(c, 0.05);
    ok = rs_recv(c, buf, 1, 0) == -ETIMEDOUT;
out:
    rs_close(s);
    rs_close(c);
    rs_close(l);
    return ok;
}

/* Everything the child checks once the filter is in place. */
static int child_checks(void)
{
    unsetenv("RINGSOCK_BACKEND");
    rs_loop *loop;
    if (rs_loop_default(&loop) != 0)
        return C_DEFAULT_LOOP;
    if (rs_loop_backend(loop) != RS_BACKEND_EPOLL)
        return C_NOT_EPOLL;
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.backend = RS_BACKEND_URING;
    rs_loop *u = NULL;
    int r = rs_loop_new(&u, &o);
    if (r == 0) {
        rs_loop_free(u);
        return C_URING_SUCCEEDED;
    }
    if (r >= 0 || r < -4095 || u != NULL)
        return C_URING_NOT_ERRNO;
    if (!echo_roundtrip())
        return C_ECHO;
    rs_loop *n = NULL;
    if (rs_loop_new(&n, NULL) != 0 || rs_loop_backend(n) != RS_BACKEND_EPOLL || rs_loop_free(n) != 0)
        return C_NEW_AUTO;
    return C_OK;
}

/* The environment forcing io_uring must fail loudly, never fall back silently. */
static int child_env_uring(void)
{
    setenv("RINGSOCK_BACKEND", "uring", 1);
    rs_loop *n = NULL;
    int r = rs_loop_new(&n, NULL);
    if (r == 0) {
        rs_loop_free(n);
        return C_ENV_URING_SILENT;
    }
    if (r < -4095 || n != NULL)
        return C_URING_NOT_ERRNO;
    if (rs_loop_default_release() != 0 || rs_loop_default(&n) >= 0)
        return C_ENV_URING_SILENT;
    return C_OK;
}

static int run_child(int (*checks)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int r = install_filter();
        if (r == C_OK)
            r = checks();
        rs_loop_default_release();
        _exit(r);
    }
    return t_wait_child(pid, 10.0);
}

START_TEST(seccomp_auto_falls_back_to_epoll_in_forked_child)
{
    /* The parent (this test process) already made its default loop on the run's backend, so in
     * the uring run it has used io_uring before forking. */
    int st = run_child(child_checks);
    ck_assert_msg(st == C_OK, "child status %d: %s (run backend %s)", st, code_name(st),
                  rs_backend_name(t_wanted_backend()));
}
END_TEST

START_TEST(seccomp_env_uring_fails_with_error)
{
    int st = run_child(child_env_uring);
    ck_assert_msg(st == C_OK, "child status %d: %s", st, code_name(st));
}
END_TEST

static const char *self_arg = "--seccomp-child";

START_TEST(seccomp_auto_falls_back_to_epoll_in_fresh_process)
{
    /* The filter survives execve (NO_NEW_PRIVS), so the re-executed program starts with no
     * library state at all: nothing probed, no loop. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int r = install_filter();
        if (r != C_OK)
            _exit(r);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            _exit(120);
        self[n] = '\0';
        execl(self, self, self_arg, (char *)NULL);
        _exit(121);
    }
    int st = t_wait_child(pid, 10.0);
    ck_assert_msg(st == C_OK, "re-executed child status %d: %s", st, code_name(st));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("seccomp");
    TCase *tc = tcase_create("seccomp");
    tcase_add_checked_fixture(tc, t_setup, t_teardown);
    tcase_set_timeout(tc, 15);
    tcase_add_test(tc, seccomp_auto_falls_back_to_epoll_in_forked_child);
    tcase_add_test(tc, seccomp_env_uring_fails_with_error);
    tcase_add_test(tc, seccomp_auto_falls_back_to_epoll_in_fresh_process);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], self_arg) == 0)
        return child_checks();
    return t_run(make_suite());
}

#else

int main(void)
{
    fprintf(stderr, "seccomp suite: no audit arch for this machine, skipping\n");
    return 77;
}

#endif
