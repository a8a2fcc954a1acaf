/* Running the loop again from inside a completion callback (issue #14 item 9), on every backend:
 * a nested rs_loop_run (RS_RUN_NOWAIT, RS_RUN_ONCE), or a blocking call (rs_recv with a timeout)
 * on the thread's default loop when the conns live on that loop. The contract: completions are
 * delivered in order, and none is handled after its object was freed — whatever the nested run
 * handled first.
 *
 * The shapes that break an engine which copies a batch of completions (io_uring: up to 64 CQEs,
 * the CQ advanced past them) or of readiness events (epoll's event array, poll's ready snapshot,
 * the scratch receive buffer) and then lets a callback run a nested wait:
 *   - two conns whose data is already waiting when the loop first runs, so that both
 *     completions come in one wait; the first callback closes the other conn and runs the loop
 *     (the close completes in the nested run: the outer batch still holds a completion of the
 *     freed conn — ASan reports it);
 *   - one conn with several completions in one wait; the first callback makes the peer send more
 *     and runs the loop: the bytes seen across all callbacks must be the stream, in order, and the
 *     bytes the first callback borrowed must still be its own after the nested run;
 *   - the same two levels deep (a callback of the nested run runs the loop again), closing a conn
 *     of the outermost batch at depth 2.
 * Peers are raw fds on the test's thread; the checks are bounded (guard timers, deadlines). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringsock/async.h>

#include "t.h"

/* ---- how a callback runs the loop again ------------------------------------------------------- */

enum nest {
    NEST_NOWAIT,   /* rs_loop_run(loop, RS_RUN_NOWAIT) */
    NEST_ONCE,     /* rs_loop_run(loop, RS_RUN_ONCE) (a guard timer bounds it) */
    NEST_BLOCKING, /* rs_recv with a 20 ms timeout on an idle socket: the default loop's turns */
};

static const char *nest_name(enum nest m)
{
    return m == NEST_NOWAIT ? "rs_loop_run(NOWAIT)"
           : m == NEST_ONCE ? "rs_loop_run(ONCE)"
                            : "blocking rs_recv";
}

/* The idle socket of NEST_BLOCKING (its peer never writes), with a 20 ms timeout. */
static rs_socket *idle[2];

static void idle_open(void)
{
    ASSERT_ERR(rs_socketpair(idle, AF_UNIX, SOCK_STREAM, 0), 0);
    ASSERT_ERR(rs_settimeout(idle[0], 0.02), 0);
}

static void idle_close(void)
{
    ASSERT_ERR(rs_close(idle[0]), 0);
    ASSERT_ERR(rs_close(idle[1]), 0);
}

static void nest(rs_loop *l, enum nest m)
{
    if (m == NEST_BLOCKING) {
        char b;
        ssize_t n = rs_recv(idle[0], &b, 1, 0);
        ck_assert_msg(n == -ETIMEDOUT || n == -EAGAIN, "nested rs_recv: %zd (%s)", n, rs_err_name((int)n));
    } else {
        int r = rs_loop_run(l, m == NEST_NOWAIT ? RS_RUN_NOWAIT : RS_RUN_ONCE);
        ck_assert_msg(r >= 0, "nested rs_loop_run: %s", rs_err_name(r));
    }
}

/* The loop a case runs on: the default loop for NEST_BLOCKING (the blocking call must turn the
 * conns' loop), else a loop of its own with buf_size bytes per provided buffer. */
static rs_loop *case_loop(enum nest m, unsigned buf_size)
{
    rs_loop *l;
    if (m == NEST_BLOCKING) {
        ASSERT_ERR(rs_loop_default(&l), 0);
        return l;
    }
    struct rs_loop_opts o = RS_LOOP_OPTS_INIT;
    o.buf_size = buf_size;
    ASSERT_ERR(rs_loop_new(&l, &o), 0);
    if (t_wanted_backend() != RS_BACKEND_AUTO)
        ck_assert_int_eq(rs_loop_backend(l), t_wanted_backend());
    return l;
}

static void case_loop_done(rs_loop *l, enum nest m)
{
    ck_assert_uint_eq(rs_loop_pending(l), 0);
    if (m != NEST_BLOCKING)
        ASSERT_ERR(rs_loop_free(l), 0);
}

/* ---- bounded running -------------------------------------------------------------------------- */

/* Run l (RS_RUN_ONCE turns) until cond, at most secs; a t_tick timer (tests/support) is already
 * running, so RS_RUN_ONCE, outer or nested, always returns. */
#define RUN_UNTIL(l, cond, secs)                                                      \
    do {                                                                              \
        double end_ = t_now() + (secs);                                               \
        while (!(cond) && t_now() < end_) {                                           \
            int r_ = rs_loop_run((l), RS_RUN_ONCE);                                   \
            ck_assert_msg(r_ >= 0, "rs_loop_run: %s", rs_err_name(r_));               \
        }                                                                             \
        ck_assert_msg((cond), "still false after %.1f s: %s", (double)(secs), #cond); \
    } while (0)

/* ---- sockets ---------------------------------------------------------------------------------- */

/* A connected loopback TCP pair: the server end as a conn of l, the client end a blocking fd. */
static rs_conn *pair(rs_loop *l, int *client)
{
    struct sockaddr_storage a;
    socklen_t len;
    rs_socket *ls = t_server_ephemeral(AF_INET, &a, &len);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, len), 0);
    int s = accept4(rs_socket_fd(ls), NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(s, 0);
    ASSERT_ERR(rs_close(ls), 0);
    *client = fd;
    rs_conn *c;
    ASSERT_ERR(rs_conn_open(&c, l, s), 0);
    return c;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* The stream's byte at offset i. */
static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + i / 251); }

static void send_pat(int fd, size_t off, size_t len)
{
    unsigned char b[65536];
    ck_assert_uint_le(len, sizeof b);
    for (size_t i = 0; i < len; i++)
        b[i] = pat(off + i);
    send_all(fd, b, len);
}

/* ---- 1, 2: a callback closes a conn whose completion is in the same batch, then nests -------- */

struct cc;

struct cconn {
    struct cc *t;
    rs_conn *c;
    struct cconn *other;
    int client;
    size_t got;      /* bytes delivered before the close was asked for */
    int after_close; /* read callbacks after rs_conn_close (there must be none) */
    int closed;      /* close callbacks (exactly one) */
    bool close_asked;
};

struct cc {
    rs_loop *l;
    enum nest mode;
    bool nested; /* the first callback has closed the other conn and run the loop */
};

static void cc_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct cconn *)user)->closed++;
}

static void count_closed(rs_conn *c, void *user)
{
    (void)c;
    ++*(int *)user;
}

static void cc_close(struct cconn *x)
{
    if (!x->close_asked) {
        x->close_asked = true;
        ASSERT_ERR(rs_conn_close(x->c, cc_closed, x), 0);
    }
}

static void cc_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)data;
    struct cconn *x = user;
    if (x->close_asked) {
        x->after_close++;
        return;
    }
    if (n <= 0)
        return;
    x->got += (size_t)n;
    if (!x->t->nested) {
        x->t->nested = true;
        cc_close(x->other); /* its completion may be in this very batch */
        nest(x->t->l, x->t->mode);
        cc_close(x);
    }
}

static void close_in_batch(enum nest mode, int iters)
{
    if (mode == NEST_BLOCKING)
        idle_open();
    for (int it = 0; it < iters; it++) {
        struct cc t = { .l = case_loop(mode, 0), .mode = mode };
        struct cconn x[2];
        memset(x, 0, sizeof x);
        for (int i = 0; i < 2; i++) {
            x[i].t = &t;
            x[i].other = &x[1 - i];
            x[i].c = pair(t.l, &x[i].client);
        }
        /* both peers send before the loop runs: both receives complete in the first wait */
        send_all(x[0].client, "a", 1);
        send_all(x[1].client, "b", 1);
        for (int i = 0; i < 2; i++)
            ASSERT_ERR(rs_conn_read_start(x[i].c, cc_read, &x[i]), 0);
        struct t_tick g;
        t_tick_start(&g, t.l);
        RUN_UNTIL(t.l, x[0].closed && x[1].closed, 5);
        /* a few more turns: a stale completion would show up as a second close or a late read */
        for (int i = 0; i < 5; i++)
            ck_assert_int_ge(rs_loop_run(t.l, RS_RUN_NOWAIT), 0);
        t_tick_end(&g, t.l);
        for (int i = 0; i < 2; i++) {
            ck_assert_msg(x[i].closed == 1, "%s, iteration %d: conn %d's close callback ran %d times",
                          nest_name(mode), it, i, x[i].closed);
            ck_assert_msg(x[i].after_close == 0,
                          "%s, iteration %d: conn %d got %d read callbacks after its close", nest_name(mode),
                          it, i, x[i].after_close);
            close(x[i].client);
        }
        ck_assert(t.nested);
        case_loop_done(t.l, mode);
    }
    if (mode == NEST_BLOCKING)
        idle_close();
}

/* (1) on the default loop, the callback's nested turn is a blocking call */
START_TEST(close_other_then_blocking_call) { close_in_batch(NEST_BLOCKING, 20); }
END_TEST

/* (2) the callback runs the loop itself */
START_TEST(close_other_then_run_nowait) { close_in_batch(NEST_NOWAIT, 20); }
END_TEST

START_TEST(close_other_then_run_once) { close_in_batch(NEST_ONCE, 20); }
END_TEST

/* ---- 3, 4: streams with several completions per wait, callbacks that run the loop ------------ */

#define MAXDEPTH 2
#define MAXCONNS 3
#define STREAM_MAX (1u << 19)

struct oc;

/* One stream: its peer sends pattern bytes; every delivery is recorded in order. */
struct ostream {
    struct oc *t;
    rs_conn *c;
    int client;
    size_t sent;         /* stream bytes the peer has sent */
    unsigned char *seen; /* STREAM_MAX bytes */
    size_t nseen;        /* stream bytes delivered, in delivery order */
    int clobbered;       /* callbacks whose borrowed bytes changed during their nested run */
    size_t clobbered_at;
    int closed;
};

struct oc {
    rs_loop *l;
    enum nest mode;
    int depth, max_depth; /* how deep callbacks nest: 1 (case 3) or 2 (case 4) */
    size_t chunk;         /* bytes a peer sends each time (several provided buffers' worth) */
    int n;
    struct ostream s[MAXCONNS];
    int nested[MAXDEPTH]; /* nested runs made from depth i */
    /* case 4: a conn with data in the outermost batch, closed just before the depth-2 run */
    rs_conn *d;
    int d_client, d_closed, d_after_close;
    bool d_close_asked;
};

static void d_closed(rs_conn *c, void *user)
{
    (void)c;
    ((struct oc *)user)->d_closed++;
}

static void d_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    (void)n;
    (void)data;
    struct oc *t = user;
    if (t->d_close_asked)
        t->d_after_close++;
}

static void oc_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct ostream *x = user;
    struct oc *t = x->t;
    if (n <= 0)
        return;
    ck_assert_uint_le(x->nseen + (size_t)n, STREAM_MAX);
    memcpy(x->seen + x->nseen, data, (size_t)n);
    size_t at = x->nseen;
    x->nseen += (size_t)n;
    int d = t->depth;
    /* once per depth; the outermost again if no callback ran one level down yet (a nested
     * NOWAIT run that found nothing; a legacy io_uring receive is not armed during its own
     * callback, so only another stream can deliver there) */
    if (d >= t->max_depth ||
        !(t->nested[d] == 0 || (d == 0 && !t->nested[t->max_depth - 1] && t->nested[0] < 5)))
        return;
    t->nested[d]++;
    /* more bytes on every stream now: the nested run sees newer completions than those the outer
     * wait may still hold */
    for (int i = 0; i < t->n; i++) {
        send_pat(t->s[i].client, t->s[i].sent, t->chunk);
        t->s[i].sent += t->chunk;
    }
    if (d == t->max_depth - 1 && t->d && !t->d_close_asked) {
        t->d_close_asked = true;
        ASSERT_ERR(rs_conn_close(t->d, d_closed, t), 0);
    }
    t->depth++;
    nest(t->l, t->mode);
    t->depth--;
    /* the bytes are borrowed until this callback returns: the nested run must not reuse them */
    if (memcmp(data, x->seen + at, (size_t)n) != 0 && !x->clobbered++)
        x->clobbered_at = at;
}

/* The first byte where x's deliveries differ from the stream, or nseen. */
static size_t first_bad(const struct ostream *x)
{
    for (size_t i = 0; i < x->nseen; i++)
        if (x->seen[i] != pat(i))
            return i;
    return x->nseen;
}

static bool all_seen(const struct oc *t)
{
    for (int i = 0; i < t->n; i++)
        if (t->s[i].nseen < t->s[i].sent)
            return false;
    return true;
}

static void ordered(enum nest mode, int max_depth, int nconns, bool close_d, int iters)
{
    /* 1-byte provided buffers on a loop of our own: every byte is a completion of its own; the
     * default loop's are 4 KiB, so chunks of 3 x 4 KiB make 3 completions per wait */
    unsigned buf_size = mode == NEST_BLOCKING ? 4096 : 1;
    if (mode == NEST_BLOCKING)
        idle_open();
    struct oc *t = malloc(sizeof *t);
    ck_assert_ptr_nonnull(t);
    unsigned char *seen = malloc((size_t)nconns * STREAM_MAX);
    ck_assert_ptr_nonnull(seen);
    int out_of_order = 0, clobbered = 0;
    char first[200] = "";
    for (int it = 0; it < iters; it++) {
        memset(t, 0, sizeof *t);
        t->l = case_loop(mode, buf_size);
        t->mode = mode;
        t->max_depth = max_depth;
        t->chunk = buf_size == 1 ? 3 : 3 * 4096;
        t->n = nconns;
        for (int i = 0; i < nconns; i++) {
            t->s[i].t = t;
            t->s[i].seen = seen + (size_t)i * STREAM_MAX;
            t->s[i].c = pair(t->l, &t->s[i].client);
        }
        if (close_d)
            t->d = pair(t->l, &t->d_client);
        /* the first chunks wait before the loop runs: several completions in one wait */
        for (int i = 0; i < nconns; i++) {
            send_pat(t->s[i].client, 0, t->chunk);
            t->s[i].sent = t->chunk;
        }
        if (close_d)
            send_all(t->d_client, "d", 1);
        for (int i = 0; i < nconns; i++)
            ASSERT_ERR(rs_conn_read_start(t->s[i].c, oc_read, &t->s[i]), 0);
        if (close_d)
            ASSERT_ERR(rs_conn_read_start(t->d, d_read, t), 0);
        struct t_tick g;
        t_tick_start(&g, t->l);
        RUN_UNTIL(t->l, t->nested[max_depth - 1] && all_seen(t) && (!close_d || t->d_closed), 5);
        for (int i = 0; i < 5; i++)
            ck_assert_int_ge(rs_loop_run(t->l, RS_RUN_NOWAIT), 0);
        for (int i = 0; i < nconns; i++)
            ASSERT_ERR(rs_conn_close(t->s[i].c, count_closed, &t->s[i].closed), 0);
        RUN_UNTIL(t->l, t->s[0].closed && t->s[nconns - 1].closed && (nconns < 3 || t->s[1].closed), 5);
        t_tick_end(&g, t->l);
        if (close_d) {
            ck_assert_msg(t->d_closed == 1, "iteration %d: the closed conn's close callback ran %d times", it,
                          t->d_closed);
            ck_assert_msg(t->d_after_close == 0, "iteration %d: %d read callbacks after close", it,
                          t->d_after_close);
            close(t->d_client);
        }
        bool ooo = false, clob = false;
        for (int i = 0; i < nconns; i++) {
            struct ostream *x = &t->s[i];
            ck_assert_int_eq(x->closed, 1);
            ck_assert_uint_eq(x->nseen, x->sent);
            close(x->client);
            size_t bad = first_bad(x);
            if (bad < x->nseen && !ooo) {
                ooo = true;
                if (!out_of_order && !first[0])
                    snprintf(first, sizeof first, "iteration %d: stream %d's byte %zu of %zu out of order",
                             it, i, bad, x->nseen);
            }
            if (x->clobbered && !clob) {
                clob = true;
                if (!first[0])
                    snprintf(first, sizeof first,
                             "iteration %d: stream %d's borrowed bytes at %zu overwritten by the nested run",
                             it, i, x->clobbered_at);
            }
        }
        out_of_order += ooo;
        clobbered += clob;
        case_loop_done(t->l, mode);
    }
    free(seen);
    free(t);
    if (mode == NEST_BLOCKING)
        idle_close();
    ck_assert_msg(!out_of_order && !clobbered,
                  "%s, depth %d: %d of %d iterations delivered a stream out of order, %d had a callback's "
                  "borrowed bytes overwritten (first: %s)",
                  nest_name(mode), max_depth, out_of_order, iters, clobbered, first);
}

/* (3) ordering, one stream, one level of nesting */
START_TEST(order_nested_nowait) { ordered(NEST_NOWAIT, 1, 1, false, 50); }
END_TEST

START_TEST(order_nested_once) { ordered(NEST_ONCE, 1, 1, false, 50); }
END_TEST

START_TEST(order_nested_blocking_call) { ordered(NEST_BLOCKING, 1, 1, false, 50); }
END_TEST

/* (4) a callback of the nested run runs the loop again (depth 2) and closes a conn whose
 * completion waits in the outermost batch; three streams, so that a callback is there to run at
 * each depth (on legacy io_uring a stream's receive is re-armed only after its callback) */
START_TEST(depth2_order_and_close)
{
    ordered(NEST_NOWAIT, 2, 3, true, 25);
    ordered(NEST_ONCE, 2, 3, true, 25);
}
END_TEST

START_TEST(depth2_blocking_calls) { ordered(NEST_BLOCKING, 2, 3, true, 25); }
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("reentry");
    TCase *tc = t_tcase(s, "close", 30);
    tcase_add_test(tc, close_other_then_blocking_call);
    tcase_add_test(tc, close_other_then_run_nowait);
    tcase_add_test(tc, close_other_then_run_once);
    tc = t_tcase(s, "order", 60);
    tcase_add_test(tc, order_nested_nowait);
    tcase_add_test(tc, order_nested_once);
    tcase_add_test(tc, order_nested_blocking_call);
    tc = t_tcase(s, "depth2", 60);
    tcase_add_test(tc, depth2_order_and_close);
    tcase_add_test(tc, depth2_blocking_calls);
    return s;
}

int main(void) { return t_run(make_suite()); }
