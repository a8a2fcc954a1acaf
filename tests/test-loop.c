/* Suite 'loop': loop creation and backend choice, RINGSOCK_BACKEND, the per-thread default loop
 * (threads, release, fork), version and error-name functions. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"

#ifndef T_HAVE_URING
#define T_HAVE_URING 0
#endif

/* ---- rs_loop_new / rs_loop_free / rs_loop_run ---------------------------------------------- */

/* Whether rs_loop_new must succeed for backend b in this build on this kernel. */
static bool backend_expected(int b)
{
    if (b == RS_BACKEND_URING)
        return T_HAVE_URING && t_kernel_allows_uring();
    return true; /* epoll on Linux, poll everywhere */
}

START_TEST(loop_new_each_explicit_backend_reports_it)
{
    rs_loop *loops[4] = { NULL };
    /* All three at once: loops of different backends coexist in one thread. */
    for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.backend = b;
        int r = rs_loop_new(&loops[b], &o);
        if (backend_expected(b)) {
            ck_assert_msg(r == 0, "backend %s: %s", rs_backend_name(b), rs_err_name(r));
            ck_assert_ptr_nonnull(loops[b]);
            ck_assert_int_eq(rs_loop_backend(loops[b]), b);
            ck_assert_uint_eq(rs_loop_pending(loops[b]), 0);
        } else {
            /* io_uring not built in or refused by the kernel: an error, never another backend */
            ck_assert_msg(r == -ENOSYS || r == -EPERM || r == -EOPNOTSUPP, "uring: %s", rs_err_name(r));
            ck_assert_ptr_null(loops[b]);
        }
    }
    for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++)
        if (loops[b])
            ck_assert_int_eq(rs_loop_free(loops[b]), 0);
}
END_TEST

START_TEST(loop_new_wanted_backend_is_available)
{
    /* The backend this run is for must really work here (a uring run skips earlier if the
     * kernel refuses io_uring, see t_run). */
    int want = t_wanted_backend();
    ck_assert_int_ge(want, RS_BACKEND_AUTO);
    if (want == RS_BACKEND_AUTO)
        return;
    ck_assert(backend_expected(want));
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.backend = want;
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
    ck_assert_int_eq(rs_loop_backend(loop), want);
    ck_assert_int_eq(rs_loop_free(loop), 0);
}
END_TEST

START_TEST(loop_new_null_opts_follows_env)
{
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_new(&loop, NULL), 0);
    int b = rs_loop_backend(loop);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(b, t_wanted_backend());
    ck_assert(b >= RS_BACKEND_URING && b <= RS_BACKEND_POLL);
    ck_assert_int_eq(rs_loop_free(loop), 0);
}
END_TEST

START_TEST(loop_new_null_out_is_einval)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    ck_assert_int_eq(rs_loop_new(NULL, &o), -EINVAL);
    ck_assert_int_eq(rs_loop_new(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(loop_new_bad_backend_is_einval)
{
    const int bad[] = { -1, 4, 100, INT_MAX, INT_MIN };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.backend = bad[i];
        rs_loop *loop = (rs_loop *)&o; /* must be reset to NULL */
        ck_assert_int_eq(rs_loop_new(&loop, &o), -EINVAL);
        ck_assert_ptr_null(loop);
    }
}
END_TEST

START_TEST(loop_new_bad_flags_is_einval)
{
    const unsigned bad[] = { 0x2u, 0x80000000u, ~0u, RS_LOOP_SQPOLL | 0x100u };
    for (int b = RS_BACKEND_AUTO; b <= RS_BACKEND_POLL; b++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
            o.backend = b;
            o.flags = bad[i];
            rs_loop *loop = NULL;
            ck_assert_msg(rs_loop_new(&loop, &o) == -EINVAL, "backend %d flags %#x", b, bad[i]);
            ck_assert_ptr_null(loop);
        }
    }
}
END_TEST

START_TEST(loop_new_absurd_entries_is_einval)
{
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.entries = UINT_MAX;
    rs_loop *loop = NULL;
    ck_assert_int_eq(rs_loop_new(&loop, &o), -EINVAL);
    ck_assert_ptr_null(loop);
    o.entries = 8; /* a small ring is fine */
    ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
    ck_assert_int_eq(rs_loop_free(loop), 0);
}
END_TEST

START_TEST(loop_null_arguments)
{
    ck_assert_int_eq(rs_loop_free(NULL), -EINVAL);
    ck_assert_int_eq(rs_loop_backend(NULL), -EINVAL);
    ck_assert_uint_eq(rs_loop_pending(NULL), 0);
    ck_assert_int_eq(rs_loop_run(NULL, RS_RUN_DEFAULT), -EINVAL);
    ck_assert_int_eq(rs_loop_run(NULL, RS_RUN_NOWAIT), -EINVAL);
    ck_assert_int_eq(rs_loop_default(NULL), -EINVAL);
    rs_loop_stop(NULL); /* documented as harmless: must not crash */
}
END_TEST

START_TEST(backend_name_values)
{
    ck_assert_str_eq(rs_backend_name(RS_BACKEND_AUTO), "auto");
    ck_assert_str_eq(rs_backend_name(RS_BACKEND_URING), "uring");
    ck_assert_str_eq(rs_backend_name(RS_BACKEND_EPOLL), "epoll");
    ck_assert_str_eq(rs_backend_name(RS_BACKEND_POLL), "poll");
    ck_assert_ptr_null(rs_backend_name(4));
    ck_assert_ptr_null(rs_backend_name(-1));
    ck_assert_ptr_null(rs_backend_name(INT_MAX));
}
END_TEST

START_TEST(loop_run_empty_returns_zero_at_once)
{
    for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
        if (!backend_expected(b))
            continue;
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.backend = b;
        rs_loop *loop;
        ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
        double t0 = t_now();
        ck_assert_int_eq(rs_loop_run(loop, RS_RUN_DEFAULT), 0);
        ck_assert_int_eq(rs_loop_run(loop, RS_RUN_NOWAIT), 0);
        ck_assert_int_eq(rs_loop_run(loop, RS_RUN_DEFAULT), 0);
        ck_assert_msg(t_now() - t0 < 0.5, "%s: empty loop took %.3f s", rs_backend_name(b), t_now() - t0);
        ck_assert_int_eq(rs_loop_run(loop, 3), -EINVAL);
        ck_assert_int_eq(rs_loop_run(loop, -1), -EINVAL);
        rs_loop_stop(loop);
        /* a stop before run does not make the next run misbehave */
        ck_assert_int_eq(rs_loop_run(loop, RS_RUN_DEFAULT), 0);
        ck_assert_uint_eq(rs_loop_pending(loop), 0);
        ck_assert_int_eq(rs_loop_free(loop), 0);
    }
}
END_TEST

START_TEST(loop_new_free_leaks_no_fd)
{
    int before = t_fd_count();
    for (int i = 0; i < 20; i++) {
        for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
            if (!backend_expected(b))
                continue;
            struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
            o.backend = b;
            rs_loop *loop;
            ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
            ck_assert_int_eq(rs_loop_free(loop), 0);
        }
    }
    ck_assert_int_eq(t_fd_count(), before);
}
END_TEST

/* ---- RINGSOCK_BACKEND ------------------------------------------------------------------------ */

START_TEST(loop_env_unknown_backend_is_einval)
{
    ck_assert_int_eq(setenv("RINGSOCK_BACKEND", "bogus", 1), 0);
    /* the one-line message on stderr: capture it */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(p[1], STDERR_FILENO), 0);
    rs_loop *loop = NULL;
    int r1 = rs_loop_new(&loop, NULL);
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT; /* AUTO */
    int r2 = rs_loop_new(&loop, &o);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    char msg[512] = "";
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    close(p[0]);
    ck_assert_int_eq(r1, -EINVAL);
    ck_assert_int_eq(r2, -EINVAL);
    ck_assert_ptr_null(loop);
    ck_assert_int_gt(n, 0);
    msg[n] = '\0';
    ck_assert_msg(strstr(msg, "bogus") != NULL, "stderr said: %s", msg);

    /* the default loop made from now on fails the same way, and so does a blocking call */
    ck_assert_int_eq(rs_loop_default_release(), 0);
    ck_assert_int_eq(rs_loop_default(&loop), -EINVAL);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, AF_UNIX, SOCK_STREAM, 0), 0);
    ck_assert_int_eq(rs_send(sp[0], "x", 1, 0), -EINVAL);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(loop_env_ignored_by_explicit_backend)
{
    ck_assert_int_eq(setenv("RINGSOCK_BACKEND", "bogus", 1), 0);
    for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
        if (!backend_expected(b))
            continue;
        struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
        o.backend = b;
        rs_loop *loop;
        ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
        ck_assert_int_eq(rs_loop_backend(loop), b);
        ck_assert_int_eq(rs_loop_free(loop), 0);
    }
    /* and an explicit backend wins over a valid but different env value */
    ck_assert_int_eq(setenv("RINGSOCK_BACKEND", "epoll", 1), 0);
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.backend = RS_BACKEND_POLL;
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_new(&loop, &o), 0);
    ck_assert_int_eq(rs_loop_backend(loop), RS_BACKEND_POLL);
    ck_assert_int_eq(rs_loop_free(loop), 0);
}
END_TEST

START_TEST(loop_env_selects_each_backend)
{
    for (int b = RS_BACKEND_URING; b <= RS_BACKEND_POLL; b++) {
        if (!backend_expected(b))
            continue;
        ck_assert_int_eq(setenv("RINGSOCK_BACKEND", rs_backend_name(b), 1), 0);
        rs_loop *loop;
        ck_assert_int_eq(rs_loop_new(&loop, NULL), 0);
        ck_assert_int_eq(rs_loop_backend(loop), b);
        ck_assert_int_eq(rs_loop_free(loop), 0);
    }
}
END_TEST

START_TEST(loop_env_auto_or_unset_probes)
{
    const char *vals[] = { "auto", NULL };
    for (int i = 0; i < 2; i++) {
        if (vals[i])
            ck_assert_int_eq(setenv("RINGSOCK_BACKEND", vals[i], 1), 0);
        else
            ck_assert_int_eq(unsetenv("RINGSOCK_BACKEND"), 0);
        rs_loop *loop;
        ck_assert_int_eq(rs_loop_new(&loop, NULL), 0);
        int b = rs_loop_backend(loop);
        /* the probe prefers io_uring when it works, then epoll */
        ck_assert_int_eq(b, backend_expected(RS_BACKEND_URING) ? RS_BACKEND_URING : RS_BACKEND_EPOLL);
        ck_assert_int_eq(rs_loop_free(loop), 0);
    }
}
END_TEST

/* ---- the per-thread default loop ------------------------------------------------------------- */

START_TEST(default_loop_same_twice)
{
    rs_loop *a, *b;
    ck_assert_int_eq(rs_loop_default(&a), 0);
    ck_assert_int_eq(rs_loop_default(&b), 0);
    ck_assert_ptr_eq(a, b);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rs_loop_backend(a), t_wanted_backend());
}
END_TEST

struct thread_report {
    rs_loop *loop;
    int backend;
    int rc;
    int fds_added; /* fds the thread's default loop opened */
    bool io_ok;
};

static void *thread_default_loop(void *arg)
{
    struct thread_report *rep = arg;
    int before = t_fd_count();
    rep->rc = rs_loop_default(&rep->loop);
    if (rep->rc < 0)
        return NULL;
    rep->fds_added = t_fd_count() - before;
    rep->backend = rs_loop_backend(rep->loop);
    rs_loop *again = NULL;
    if (rs_loop_default(&again) != 0 || again != rep->loop)
        return NULL;
    /* use the loop, so a ring has really been entered from this thread */
    rs_socket *sp[2];
    if (rs_socketpair(sp, 0, 0, 0) != 0)
        return NULL;
    rs_settimeout(sp[1], 2.0);
    char c = 0;
    rep->io_ok = rs_send(sp[0], "t", 1, 0) == 1 && rs_recv(sp[1], &c, 1, 0) == 1 && c == 't';
    rs_close(sp[0]);
    rs_close(sp[1]);
    return NULL;
}

START_TEST(default_loop_differs_per_thread)
{
    rs_loop *mine;
    ck_assert_int_eq(rs_loop_default(&mine), 0);
    struct thread_report rep = { 0 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_default_loop, &rep), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rep.rc, 0);
    /* mine was alive the whole time, so the thread's loop cannot share its address */
    ck_assert_ptr_ne(rep.loop, mine);
    ck_assert(rep.io_ok);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rep.backend, t_wanted_backend());
    rs_loop *again;
    ck_assert_int_eq(rs_loop_default(&again), 0);
    ck_assert_ptr_eq(again, mine);
}
END_TEST

START_TEST(default_loop_freed_at_thread_exit)
{
    int expect = t_backend_fds(t_wanted_backend() == RS_BACKEND_AUTO ? RS_BACKEND_POLL : t_wanted_backend());
    int before = t_fd_count();
    for (int i = 0; i < 5; i++) {
        struct thread_report rep = { 0 };
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, thread_default_loop, &rep), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(rep.rc, 0);
        ck_assert(rep.io_ok);
        if (t_wanted_backend() != RS_BACKEND_AUTO)
            ck_assert_int_eq(rep.fds_added, expect);
        ck_assert_int_eq(t_fd_count(), before);
    }
}
END_TEST

static void *thread_free_default_explicitly(void *arg)
{
    int *rc = arg;
    rs_loop *loop;
    rc[0] = rs_loop_default(&loop);
    if (rc[0] == 0)
        rc[1] = rs_loop_free(loop); /* the thread-exit destructor must not free it again */
    if (rc[2] == 1) {
        /* ...nor the stale pointer after a new default loop was made */
        rc[2] = rs_loop_default(&loop);
    }
    return NULL;
}

START_TEST(default_loop_freed_explicitly_then_thread_exits)
{
    int before = t_fd_count();
    for (int again = 0; again <= 1; again++) {
        int rc[3] = { -1, -1, again };
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, thread_free_default_explicitly, rc), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(rc[0], 0);
        ck_assert_int_eq(rc[1], 0);
        if (again)
            ck_assert_int_eq(rc[2], 0);
        ck_assert_int_eq(t_fd_count(), before);
    }
}
END_TEST

START_TEST(default_loop_remade_after_release)
{
    int b = t_wanted_backend() == RS_BACKEND_AUTO ? RS_BACKEND_POLL : t_wanted_backend();
    int per_loop = t_backend_fds(b);
    rs_loop *loop;
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    int with = t_fd_count();
    ck_assert_int_eq(rs_loop_default_release(), 0);
    ck_assert_int_eq(t_fd_count(), with - per_loop);
    ck_assert_int_eq(rs_loop_default_release(), 0); /* nothing to release: still fine */
    ck_assert_int_eq(rs_loop_default(&loop), 0);
    ck_assert_int_eq(t_fd_count(), with);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rs_loop_backend(loop), t_wanted_backend());
    /* and the new one works for blocking calls */
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert_int_eq(rs_settimeout(sp[1], 2.0), 0);
    char c = 0;
    ck_assert_int_eq(rs_send(sp[0], "r", 1, 0), 1);
    ck_assert_int_eq(rs_recv(sp[1], &c, 1, 0), 1);
    ck_assert_int_eq(c, 'r');
    rs_close(sp[0]);
    rs_close(sp[1]);
    ck_assert_int_eq(rs_loop_default_release(), 0);
    rs_loop *l2;
    ck_assert_int_eq(rs_loop_default(&l2), 0);
}
END_TEST

/* ---- fork ------------------------------------------------------------------------------------ */

/* Child: exit 0 when blocking I/O works on a fresh default loop; a distinct code per failure. */
static int child_io(rs_socket *a, rs_socket *b)
{
    if (t_loop_fd_count() != 0)
        return 10; /* the parent's loop was not dropped in the atfork handler */
    rs_loop *loop;
    if (rs_loop_default(&loop) != 0)
        return 11;
    int want = t_wanted_backend();
    if (want != RS_BACKEND_AUTO && rs_loop_backend(loop) != want)
        return 12;
    if (rs_settimeout(a, 2.0) != 0 || rs_settimeout(b, 2.0) != 0)
        return 13;
    for (int i = 0; i < 3; i++) {
        char buf[16] = "";
        if (rs_send(a, "child", 5, 0) != 5)
            return 14;
        if (rs_recv(b, buf, sizeof buf, 0) != 5 || memcmp(buf, "child", 5) != 0)
            return 15;
    }
    return 0;
}

START_TEST(fork_child_uses_own_default_loop)
{
    int b = t_wanted_backend() == RS_BACKEND_AUTO ? RS_BACKEND_POLL : t_wanted_backend();
    int per_loop = t_backend_fds(b);
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    ck_assert_int_eq(rs_settimeout(sp[1], 2.0), 0);
    /* use the parent's default loop first: a SINGLE_ISSUER ring is now bound to this task */
    char buf[16];
    ck_assert_int_eq(rs_send(sp[0], "parent", 6, 0), 6);
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), 6);
    /* the default loop's epoll fd or ring fd is the only loop object here (none for poll) */
    ck_assert_int_eq(t_loop_fd_count(), per_loop);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int r = child_io(sp[0], sp[1]);
        rs_close(sp[0]);
        rs_close(sp[1]);
        rs_loop_default_release();
        _exit(r);
    }
    int st = t_wait_child(pid, 10.0);
    ck_assert_msg(st == 0, "child status %d (10: inherited loop kept, 11-15: I/O failed)", st);

    /* the parent's loop is unharmed by the child dropping its copy */
    ck_assert_int_eq(rs_send(sp[0], "again", 5, 0), 5);
    ck_assert_int_eq(rs_recv(sp[1], buf, sizeof buf, 0), 5);
    ck_assert_int_eq(memcmp(buf, "again", 5), 0);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

START_TEST(fork_child_waits_with_timeout_on_own_loop)
{
    /* The child blocks in a recv that must wait for its parent: the child's loop really waits
     * (io_uring_enter / epoll_wait / poll) instead of completing on the first attempt. */
    rs_socket *sp[2];
    ck_assert_int_eq(rs_socketpair(sp, 0, 0, 0), 0);
    char buf[8];
    ck_assert_int_eq(rs_settimeout(sp[1], 2.0), 0);
    ck_assert_int_eq(rs_send(sp[0], "p", 1, 0), 1);
    ck_assert_int_eq(rs_recv(sp[1], buf, 1, 0), 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        rs_close(sp[0]);
        int code = 0;
        ssize_t n = rs_recv(sp[1], buf, sizeof buf, 0);
        if (n != 4 || memcmp(buf, "ping", 4) != 0)
            code = 20;
        else if (rs_send(sp[1], "pong", 4, 0) != 4)
            code = 21;
        /* and a timeout still fires in the child */
        else if (rs_settimeout(sp[1], 0.1) != 0 || rs_recv(sp[1], buf, sizeof buf, 0) != -ETIMEDOUT)
            code = 22;
        rs_close(sp[1]);
        rs_loop_default_release();
        _exit(code);
    }
    t_sleep(0.1);
    ck_assert_int_eq(rs_send(sp[0], "ping", 4, 0), 4);
    ck_assert_int_eq(rs_settimeout(sp[0], 5.0), 0);
    ck_assert_int_eq(rs_recv(sp[0], buf, sizeof buf, 0), 4);
    ck_assert_int_eq(memcmp(buf, "pong", 4), 0);
    int st = t_wait_child(pid, 10.0);
    ck_assert_msg(st == 0, "child status %d", st);
    rs_close(sp[0]);
    rs_close(sp[1]);
}
END_TEST

/* ---- version and errors ---------------------------------------------------------------------- */

START_TEST(version_matches_headers)
{
    ck_assert_uint_eq(rs_version(), RS_VERSION_HEX);
    ck_assert_uint_eq(rs_version(),
                      (unsigned)((RS_VERSION_MAJOR << 16) | (RS_VERSION_MINOR << 8) | RS_VERSION_PATCH));
    ck_assert_str_eq(rs_version_string(), RS_VERSION_STRING);
    char s[32];
    snprintf(s, sizeof s, "%d.%d.%d", RS_VERSION_MAJOR, RS_VERSION_MINOR, RS_VERSION_PATCH);
    ck_assert_str_eq(rs_version_string(), s);
    ck_assert(RS_CHECK_VERSION(0, 1, 0));
    ck_assert(RS_CHECK_VERSION(RS_VERSION_MAJOR, RS_VERSION_MINOR, RS_VERSION_PATCH));
    ck_assert(!RS_CHECK_VERSION(RS_VERSION_MAJOR, RS_VERSION_MINOR, RS_VERSION_PATCH + 1));
    ck_assert(!RS_CHECK_VERSION(RS_VERSION_MAJOR + 1, 0, 0));
}
END_TEST

START_TEST(strerror_etimedout)
{
    ck_assert_str_eq(rs_err_name(-ETIMEDOUT), "ETIMEDOUT");
    ck_assert_str_eq(rs_err_name(ETIMEDOUT), "ETIMEDOUT");
    const char *m = rs_strerror(-ETIMEDOUT);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_gt(strlen(m), 0);
    ck_assert_str_ne(m, "unknown error");
    ck_assert_str_eq(rs_strerror(ETIMEDOUT), m);
}
END_TEST

START_TEST(strerror_common_codes_named)
{
    const struct {
        int code;
        const char *name;
    } v[] = {
        { EAGAIN, "EAGAIN" },
        { EINVAL, "EINVAL" },
        { EBADF, "EBADF" },
        { EPIPE, "EPIPE" },
        { ECONNREFUSED, "ECONNREFUSED" },
        { ECONNRESET, "ECONNRESET" },
        { EINPROGRESS, "EINPROGRESS" },
        { ENOSYS, "ENOSYS" },
        { EPERM, "EPERM" },
        { EBUSY, "EBUSY" },
        { ECANCELED, "ECANCELED" },
        { ENOTSOCK, "ENOTSOCK" },
        { EMFILE, "EMFILE" },
        { EAFNOSUPPORT, "EAFNOSUPPORT" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ck_assert_str_eq(rs_err_name(-v[i].code), v[i].name);
        ck_assert_str_eq(rs_err_name(v[i].code), v[i].name);
        ck_assert_str_ne(rs_strerror(-v[i].code), "unknown error");
        ck_assert_str_eq(rs_strerror(-v[i].code), rs_strerror(v[i].code));
    }
}
END_TEST

START_TEST(strerror_unknown_and_zero)
{
    const int unknown[] = { 4095, -4095, 99999, -99999, INT_MAX, -INT_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_str_eq(rs_err_name(unknown[i]), "UNKNOWN");
        ck_assert_str_eq(rs_strerror(unknown[i]), "unknown error");
    }
    ck_assert_str_eq(rs_err_name(0), "OK");
    ck_assert_ptr_nonnull(rs_strerror(0));
    ck_assert_int_gt(strlen(rs_strerror(0)), 0);
    ck_assert_str_ne(rs_strerror(0), "unknown error");
}
END_TEST

START_TEST(strerror_int_min_is_unknown)
{
    /* Any int is accepted; negating INT_MIN is undefined behaviour (UBSan reports it). */
    ck_assert_str_eq(rs_err_name(INT_MIN), "UNKNOWN");
    ck_assert_str_eq(rs_strerror(INT_MIN), "unknown error");
}
END_TEST

START_TEST(strerror_name_and_message_agree)
{
    /* One table: a code has both a name and a message, or neither. */
    for (int e = 1; e < 200; e++) {
        bool named = strcmp(rs_err_name(-e), "UNKNOWN") != 0;
        bool messaged = strcmp(rs_strerror(-e), "unknown error") != 0;
        ck_assert_msg(named == messaged, "errno %d: name %s, message %s", e, rs_err_name(-e),
                      rs_strerror(-e));
        ck_assert_ptr_nonnull(rs_strerror(-e));
        if (named)
            ck_assert_msg(rs_err_name(-e)[0] == 'E', "errno %d named %s", e, rs_err_name(-e));
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = t_tcase(s, "new", 10);
    tcase_add_test(tc, loop_new_each_explicit_backend_reports_it);
    tcase_add_test(tc, loop_new_wanted_backend_is_available);
    tcase_add_test(tc, loop_new_null_opts_follows_env);
    tcase_add_test(tc, loop_new_null_out_is_einval);
    tcase_add_test(tc, loop_new_bad_backend_is_einval);
    tcase_add_test(tc, loop_new_bad_flags_is_einval);
    tcase_add_test(tc, loop_new_absurd_entries_is_einval);
    tcase_add_test(tc, loop_null_arguments);
    tcase_add_test(tc, backend_name_values);
    tcase_add_test(tc, loop_run_empty_returns_zero_at_once);
    tcase_add_test(tc, loop_new_free_leaks_no_fd);

    tc = t_tcase(s, "env", 10);
    tcase_add_test(tc, loop_env_unknown_backend_is_einval);
    tcase_add_test(tc, loop_env_ignored_by_explicit_backend);
    tcase_add_test(tc, loop_env_selects_each_backend);
    tcase_add_test(tc, loop_env_auto_or_unset_probes);

    tc = t_tcase(s, "default", 10);
    tcase_add_test(tc, default_loop_same_twice);
    tcase_add_test(tc, default_loop_differs_per_thread);
    tcase_add_test(tc, default_loop_freed_at_thread_exit);
    tcase_add_test(tc, default_loop_freed_explicitly_then_thread_exits);
    tcase_add_test(tc, default_loop_remade_after_release);

    tc = t_tcase(s, "fork", 15);
    tcase_add_test(tc, fork_child_uses_own_default_loop);
    tcase_add_test(tc, fork_child_waits_with_timeout_on_own_loop);

    tc = t_tcase(s, "version", 5);
    tcase_add_test(tc, version_matches_headers);

    tc = t_tcase(s, "error", 5);
    tcase_add_test(tc, strerror_etimedout);
    tcase_add_test(tc, strerror_common_codes_named);
    tcase_add_test(tc, strerror_unknown_and_zero);
    tcase_add_test(tc, strerror_int_min_is_unknown);
    tcase_add_test(tc, strerror_name_and_message_agree);
    return s;
}

int main(void) { return t_run(make_suite()); }
