/* rs_create_connection and its completion-API twin rs_conn_connect: socket.create_connection
 * with a total deadline and Happy Eyeballs v2 (RFC 8305). One event-driven state machine serves
 * both: attempts are CONNECT operations on the loop (on io_uring each a CONNECT SQE linked to a
 * LINK_TIMEOUT), several in flight; a timer operation paces new attempts; the first to connect
 * wins and the others are cancelled, awaited and closed, so no path leaks an fd. The blocking
 * call runs the thread's loop until the machine finishes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsock/async.h"
#include "ringsock/loop.h"
#include "ringsock/net.h"
#include "socket_i.h"
#include "export_i.h"

/* More addresses than this are ignored: a name with hundreds of A records (gh-106283) must not
 * make the call unbounded even without a deadline. */
#define MAX_ADDRS 64

struct attempt {
    struct rs_op op;
    struct he *h;
    struct sockaddr_storage sa;
    socklen_t salen;
    int family, protocol;
    int fd;
    bool started, finished;
    int report_idx;
};

struct source {
    int family;
    struct sockaddr_storage sa;
    socklen_t len;
    int err;
};

/* One create_connection in progress. */
struct he {
    struct rs_loop *loop;
    struct rs_connect_opts opts;
    double timeout, delay;
    int64_t deadline;
    int64_t t0;        /* when the call began: the report's times count from it */
    struct attempt *a; /* n of them: the caller's stack (blocking, few addresses) or a_owned */
    bool a_owned;
    size_t n, next, inflight;
    struct source src[2];
    int last_err;
    struct rs_op timer;
    bool timer_armed, timer_fired, deadline_hit, finishing, done;
    int64_t last_start;
    struct attempt *winner;
    int result; /* 0 with fd, or the error */
    int fd;
    void (*finish)(struct he *h);
    /* async only */
    rs_connect_cb cb;
    void *user;
    char *host, *port;
    struct addrinfo *res;
    int gai;
    int gai_errno; /* errno right after getaddrinfo, on the thread that called it (EAI_SYSTEM) */
    /* The resolver thread's results (res, gai, gai_errno) are published by a release store here
     * before it writes to the pipe; the loop acquires it before reading them. The pipe alone
     * orders them too, but not in a way every race detector sees. */
    atomic_bool published;
    int pipefd[2];
    char pipebuf[1];
    struct rs_op wake;
    atomic_int refs; /* the loop side and the resolver thread */
};

/* A blocking call with at most this many addresses (a literal IP, a typical A + AAAA answer)
 * keeps its whole state on the stack: calloc + free of it were ~400 of a numeric connect's
 * ~1,900 user-space instructions (callgrind, bench/connect). A fixed MAX_ADDRS array before that
 * had made every call zero 21 KB. */
#define STACK_ATTEMPTS 4

static void report_add(struct he *h, struct attempt *a, int err)
{
    struct rs_connect_report *rep = h->opts.report;
    if (!rep)
        return;
    if (a->report_idx < 0) {
        if (rep->count >= RS_CONNECT_MAX_ATTEMPTS) {
            rep->count++;
            return;
        }
        a->report_idx = (int)rep->count++;
        memcpy(&rep->attempt[a->report_idx].addr, &a->sa, a->salen);
        rep->attempt[a->report_idx].addrlen = a->salen;
        rep->attempt[a->report_idx].start = (double)(rs__now() - h->t0) / 1e9;
        rep->attempt[a->report_idx].end = -1;
    }
    rep->attempt[a->report_idx].error = err;
    if (err != -EINPROGRESS)
        rep->attempt[a->report_idx].end = (double)(rs__now() - h->t0) / 1e9;
}

/* The source address for a family, resolved once per call. */
static int source_for(struct he *h, int family, const struct sockaddr **sa, socklen_t *len)
{
    struct source *s = &h->src[family == AF_INET6];
    if (!s->family) {
        struct addrinfo hints = { .ai_family = family,
                                  .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
        struct addrinfo *res = NULL;
        int e = h->opts.source_port && rs__port_out_of_range(h->opts.source_port)
                    ? EAI_SERVICE
                    : getaddrinfo(h->opts.source_host, h->opts.source_port, &hints, &res);
        int sys = errno;
        s->family = family;
        if (e != 0) {
            s->err = rs__gai_err(e, sys);
        } else {
            memcpy(&s->sa, res->ai_addr, res->ai_addrlen);
            s->len = res->ai_addrlen;
            freeaddrinfo(res);
        }
    }
    *sa = (const struct sockaddr *)&s->sa;
    *len = s->len;
    return s->err;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void step(struct he *h);

static void close_attempt(struct he *h, struct attempt *a)
{
    rs__loop_forget_fd(h->loop, a->fd);
    close(a->fd);
    a->fd = -1;
}

static void attempt_cb(struct rs_op *op)
{
    struct attempt *a = op->data;
    struct he *h = a->h;
    h->inflight--;
    a->finished = true;
    int res = op->res;
    if (res == 0 && !h->winner && !h->finishing) {
        h->winner = a;
        report_add(h, a, 0);
    } else {
        /* A rival that connected after the winner, or was cancelled for it, lost (-ECANCELED);
         * one cut off by the call's deadline timed out. */
        if ((res == 0 || res == -ECANCELED) && h->deadline_hit && !h->winner)
            res = -ETIMEDOUT;
        report_add(h, a, res == 0 ? -ECANCELED : res);
        if (res != 0 && res != -ECANCELED)
            h->last_err = res;
        if (res == -ETIMEDOUT && h->deadline != RS_DEADLINE_NONE && rs__now() >= h->deadline)
            h->deadline_hit = true;
        close_attempt(h, a);
    }
    step(h);
}

static void timer_cb(struct rs_op *op)
{
    struct he *h = op->data;
    h->inflight--;
    h->timer_armed = false;
    /* an attempt that failed early restarted the clock: the timer may be early for the new one */
    if (op->res == 0 && rs__now() >= rs__ns_add(h->last_start, rs__ns_from_seconds(h->delay)))
        h->timer_fired = true;
    step(h);
}

/* Start one attempt: socket, optional bind, CONNECT with its deadline. A failure before the
 * CONNECT is recorded and the attempt is over at once. */
static void start(struct he *h, struct attempt *a)
{
    a->started = true;
    int err;
    a->fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, a->protocol);
    if (a->fd < 0) {
        err = -errno;
        goto fail;
    }
    if (h->opts.source_host || h->opts.source_port) {
        const struct sockaddr *sa;
        socklen_t len;
        err = source_for(h, a->family, &sa, &len);
        if (err == 0 && bind(a->fd, sa, len) < 0)
            err = -errno;
        if (err < 0)
            goto fail;
    }
    memset(&a->op, 0, sizeof a->op);
    a->op.kind = RS_OP_CONNECT;
    a->op.fd = a->fd;
    a->op.fdgen = rs__fdgen_next(); /* the fd number and this memory are reused across calls */
    a->op.deadline =
        h->timeout == 0 ? RS_DEADLINE_NOW : min64(rs__deadline_from_timeout(h->timeout), h->deadline);
    a->op.u.connect.sa = (const struct sockaddr *)&a->sa;
    a->op.u.connect.len = a->salen;
    a->op.cb = attempt_cb;
    a->op.data = a;
    err = rs__loop_submit(h->loop, &a->op);
    if (err < 0)
        goto fail;
    h->inflight++;
    report_add(h, a, -EINPROGRESS);
    return;
fail:
    if (a->fd >= 0)
        close_attempt(h, a);
    a->finished = true;
    h->last_err = err;
    report_add(h, a, err);
}

static void finalize(struct he *h)
{
    h->done = true;
    if (h->winner) {
        h->result = 0;
        h->fd = h->winner->fd;
    } else {
        h->result = h->deadline_hit ? -ETIMEDOUT : h->last_err;
        h->fd = -1;
    }
    h->finish(h);
}

/* Advance the machine after any event. */
static void step(struct he *h)
{
    if (h->done)
        return;
    if (!h->finishing) {
        if (!h->winner && h->deadline != RS_DEADLINE_NONE && rs__now() >= h->deadline)
            h->deadline_hit = true;
        /* RFC 8305 section 5: the next attempt starts when the last one failed, or once the
         * attempt delay has passed since it started */
        while (!h->winner && !h->deadline_hit && h->next < h->n &&
               (h->inflight - h->timer_armed == 0 || h->timer_fired)) {
            h->timer_fired = false;
            h->last_start = rs__now();
            start(h, &h->a[h->next++]);
        }
        if (h->winner || h->deadline_hit || (h->inflight - h->timer_armed == 0 && h->next >= h->n)) {
            h->finishing = true;
            if (h->timer_armed)
                rs__loop_cancel(h->loop, &h->timer);
            for (size_t i = 0; i < h->next; i++)
                if (h->a[i].started && !h->a[i].finished)
                    rs__loop_cancel(h->loop, &h->a[i].op);
        } else if (h->delay >= 0 && !h->timer_armed && h->next < h->n) {
            memset(&h->timer, 0, sizeof h->timer);
            h->timer.kind = RS_OP_TIMER;
            h->timer.fd = -1;
            h->timer.deadline = min64(rs__ns_add(h->last_start, rs__ns_from_seconds(h->delay)), h->deadline);
            h->timer.cb = timer_cb;
            h->timer.data = h;
            if (rs__loop_submit(h->loop, &h->timer) == 0) {
                h->timer_armed = true;
                h->inflight++;
            }
        }
    }
    if (h->finishing && h->inflight == 0)
        finalize(h);
}

/* RFC 8305 section 4: alternate address families, starting with `first` addresses of the family
 * the resolver put first. */
static bool usable(const struct addrinfo *ai)
{
    return (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) && ai->ai_addr &&
           (!ai->ai_socktype || ai->ai_socktype == SOCK_STREAM) &&
           ai->ai_addrlen <= sizeof(struct sockaddr_storage);
}

/* How many attempts list makes (order() takes the same ones). */
static size_t count_addrs(const struct addrinfo *list)
{
    size_t n = 0;
    for (const struct addrinfo *ai = list; ai && n < MAX_ADDRS; ai = ai->ai_next)
        n += usable(ai);
    return n;
}

static size_t order(const struct addrinfo *list, struct attempt *out, int interleave)
{
    const struct addrinfo *fam[2][MAX_ADDRS];
    size_t cnt[2] = { 0, 0 }, n = 0;
    int fam1 = AF_UNSPEC;
    for (const struct addrinfo *ai = list; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        if (!usable(ai))
            continue;
        if (fam1 == AF_UNSPEC)
            fam1 = ai->ai_family;
        int f = ai->ai_family != fam1;
        fam[f][cnt[f]++] = ai;
        n++;
    }
    const struct addrinfo *seq[MAX_ADDRS];
    size_t idx[2] = { 0, 0 }, k = 0;
    size_t take = interleave > 0 ? (size_t)interleave : 1;
    while (k < n) {
        for (size_t j = 0; j < take && idx[0] < cnt[0]; j++)
            seq[k++] = fam[0][idx[0]++];
        if (idx[1] < cnt[1])
            seq[k++] = fam[1][idx[1]++];
        take = 1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct addrinfo *ai = seq[i];
        struct attempt *a = &out[i];
        memset(a, 0, sizeof *a);
        memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
        a->salen = ai->ai_addrlen;
        a->family = ai->ai_family;
        a->protocol = ai->ai_protocol;
        a->fd = -1;
        a->report_idx = -1;
    }
    return n;
}

/* A report says 0 attempts whenever the call fails before one: bad arguments, resolution, no
 * loop (its count was left as the caller's stack had it). */
static void report_reset(const struct rs_connect_opts *opts)
{
    if (opts && opts->report)
        opts->report->count = 0;
}

static bool timeout_ok(double t) { return t == RS_TIMEOUT_NONE || (t >= 0 && isfinite(t)); }

/* Validate opts and fill h's settings. */
static int he_init(struct he *h, struct rs_loop *loop, const struct rs_connect_opts *opts)
{
    static const struct rs_connect_opts defaults = RS_CONNECT_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    double timeout = opts->timeout == RS_TIMEOUT_DEFAULT ? rs_getdefaulttimeout() : opts->timeout;
    if (!timeout_ok(timeout) || !timeout_ok(opts->deadline) || !timeout_ok(opts->happy_eyeballs_delay) ||
        opts->interleave < 0)
        return -EINVAL;
    if (opts->family != AF_UNSPEC && opts->family != AF_INET && opts->family != AF_INET6)
        return -EAFNOSUPPORT;
    h->loop = loop;
    h->t0 = rs__now();
    h->opts = *opts;
    h->timeout = timeout;
    h->delay = opts->happy_eyeballs_delay;
    h->deadline = opts->deadline == RS_TIMEOUT_NONE ? RS_DEADLINE_NONE
                  : opts->deadline == 0             ? rs__now()
                                                    : rs__deadline_from_timeout(opts->deadline);
    h->last_err = -EADDRNOTAVAIL; /* an empty list (Python: "getaddrinfo returns an empty list") */
    h->fd = -1;
    h->pipefd[0] = h->pipefd[1] = -1;
    if (opts->report)
        opts->report->count = 0;
    return 0;
}

static void he_start(struct he *h, const struct addrinfo *list)
{
    if (!h->a) {
        size_t n = count_addrs(list);
        if (n && !(h->a = malloc(n * sizeof *h->a))) {
            h->last_err = -ENOMEM; /* no attempt: the machine finishes with this */
            step(h);
            return;
        }
        h->a_owned = true;
    }
    h->n = order(list, h->a, h->opts.interleave);
    for (size_t i = 0; i < h->n; i++)
        h->a[i].h = h;
    step(h);
}

static void blocking_finish(struct he *h) { (void)h; }

EXPORT int rs_create_connection_addrs(rs_socket **out, const struct addrinfo *list,
                                      const struct rs_connect_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    report_reset(opts);
    struct rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0)
        return r;
    struct he hs;
    struct attempt as[STACK_ATTEMPTS];
    struct he *h = &hs;
    memset(h, 0, sizeof *h); /* the attempts: order() fills each */
    size_t n = count_addrs(list);
    h->a = n <= STACK_ATTEMPTS ? as : malloc(n * sizeof *h->a);
    if (!h->a)
        return -ENOMEM;
    h->a_owned = h->a != as;
    r = he_init(h, loop, opts);
    if (r == 0) {
        h->finish = blocking_finish;
        he_start(h, list);
        unsigned ms = 0;
        while (!h->done)
            if (rs_loop_run(loop, RS_RUN_ONCE) < 0)
                rs__loop_backoff(&ms); /* the attempts' timers still end it */
        r = h->result == 0 ? rs__sock_wrap(out, h->fd, h->winner->family, SOCK_STREAM, h->timeout)
                           : h->result;
    }
    if (h->a_owned)
        free(h->a);
    return r;
}

/* getaddrinfo: numeric first (no resolver, never blocks), then the resolver. *sys is errno as
 * the last getaddrinfo left it: what EAI_SYSTEM means, read on the thread that got it. */
static int resolve(const char *host, const char *port, int family, bool numeric_only, struct addrinfo **res,
                   int *sys)
{
    *sys = 0;
    if (rs__port_out_of_range(port))
        return EAI_SERVICE;
    struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
    int e = getaddrinfo(host, port, &hints, res);
    *sys = errno;
    if (e == EAI_NONAME && !numeric_only) {
        hints.ai_flags = 0;
        e = getaddrinfo(host, port, &hints, res);
        *sys = errno;
    }
    return e;
}

/* A numeric port, or -1. */
static int numeric_port(const char *port)
{
    long v = 0;
    for (const char *p = port; *p; p++) {
        if (*p < '0' || *p > '9' || p - port >= 5)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= 65535 ? (int)v : -1;
}

/* A literal IPv4 or IPv6 (no scope) host with a numeric port needs no getaddrinfo, whose
 * allocation and service lookup cost more than the rest of a loopback connect. Anything else
 * (names, "127.1", "fe80::1%eth0", services) goes to the resolver. */
static bool literal_addr(const char *host, const char *port, int family, struct sockaddr_storage *ss,
                         struct addrinfo *ai)
{
    int p = numeric_port(port);
    if (p < 0)
        return false;
    memset(ai, 0, sizeof *ai);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (family != AF_INET6 && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        ai->ai_addrlen = sizeof *sin;
    } else if (family != AF_INET && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        ai->ai_addrlen = sizeof *sin6;
    } else {
        return false;
    }
    ai->ai_family = ss->ss_family;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_protocol = IPPROTO_TCP;
    ai->ai_addr = (struct sockaddr *)ss;
    return true;
}

int rs__gai_err(int gai, int sys_errno)
{
    if (gai != EAI_SYSTEM)
        return RS_EAI(gai);
    /* an errno that is no errno (0, or out of range) is still a failure */
    return sys_errno > 0 && sys_errno < 4096 ? -sys_errno : -EIO;
}

EXPORT int rs_create_connection(rs_socket **out, const char *host, const char *port,
                                const struct rs_connect_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    report_reset(opts);
    if (!host || !port || !*host || !*port)
        return -EINVAL;
    int family = opts ? opts->family : AF_UNSPEC;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    struct sockaddr_storage ss;
    struct addrinfo lit;
    if (literal_addr(host, port, family, &ss, &lit))
        return rs_create_connection_addrs(out, &lit, opts);
    struct addrinfo *res = NULL;
    int sys;
    int e = resolve(host, port, family, false, &res, &sys);
    if (e != 0)
        return rs__gai_err(e, sys);
    int r = rs_create_connection_addrs(out, res, opts);
    freeaddrinfo(res);
    return r;
}

/* ---- the completion-API twin ---- */

static void he_free(struct he *h)
{
    if (atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    if (h->res)
        freeaddrinfo(h->res);
    if (h->pipefd[0] >= 0)
        close(h->pipefd[0]);
    if (h->pipefd[1] >= 0)
        close(h->pipefd[1]);
    free(h->host);
    free(h->port);
    if (h->a_owned)
        free(h->a);
    free(h);
}

static void async_finish(struct he *h)
{
    rs_conn *c = NULL;
    int r = h->result;
    if (r == 0)
        r = rs_conn_open(&c, h->loop, h->fd);
    h->cb(c, r, h->user);
    he_free(h);
}

static void resolved(struct he *h)
{
    if (!atomic_load_explicit(&h->published, memory_order_acquire)) {
        /* cannot happen: the wake comes after the publication */
        h->gai = EAI_SYSTEM;
        h->gai_errno = EIO;
    }
    if (h->gai != 0) {
        h->done = true;
        h->cb(NULL, rs__gai_err(h->gai, h->gai_errno), h->user);
        he_free(h);
        return;
    }
    he_start(h, h->res);
}

static void *resolver_thread(void *p)
{
    struct he *h = p;
    h->gai = resolve(h->host, h->port, h->opts.family, false, &h->res, &h->gai_errno);
    atomic_store_explicit(&h->published, true, memory_order_release);
    /* wake the loop; its read operation owns the rest */
    ssize_t w;
    do
        w = write(h->pipefd[1], "x", 1);
    while (w < 0 && errno == EINTR);
    he_free(h);
    return NULL;
}

static void wake_cb(struct rs_op *op)
{
    struct he *h = op->data;
    resolved(h);
}

EXPORT int rs_conn_connect(rs_loop *loop, const char *host, const char *port,
                           const struct rs_connect_opts *opts, rs_connect_cb cb, void *user)
{
    report_reset(opts);
    if (!loop || !cb || !host || !port || !*host || !*port)
        return -EINVAL;
    struct he *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    int r = he_init(h, loop, opts);
    if (r < 0) {
        free(h);
        return r;
    }
    if (h->timeout == 0) {
        /* a non-blocking connect has no meaning when the loop does the waiting */
        free(h);
        return -EINVAL;
    }
    h->finish = async_finish;
    h->cb = cb;
    h->user = user;
    atomic_init(&h->refs, 1);
    /* Numeric hosts resolve here without blocking; the machine still starts from the loop (a
     * deferred op, no system call) so that cb never runs inside this call. */
    h->gai = resolve(host, port, h->opts.family, true, &h->res, &h->gai_errno);
    bool numeric = h->gai == 0 || h->gai != EAI_NONAME;
    /* this thread's own results; the resolver thread, if any, overwrites them */
    atomic_init(&h->published, numeric);
    if (numeric) {
        memset(&h->wake, 0, sizeof h->wake);
        h->wake.kind = RS_OP_DEFER;
        h->wake.fd = -1;
    } else {
        h->host = strdup(host);
        h->port = strdup(port);
        if (!h->host || !h->port || pipe2(h->pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
            he_free(h);
            return -ENOMEM;
        }
        memset(&h->wake, 0, sizeof h->wake);
        h->wake.kind = RS_OP_READ;
        h->wake.fd = h->pipefd[0];
        h->wake.fdgen = rs__fdgen_next();
        h->wake.deadline = RS_DEADLINE_NONE;
        h->wake.u.io.buf = h->pipebuf;
        h->wake.u.io.len = 1;
    }
    h->wake.cb = wake_cb;
    h->wake.data = h;
    r = rs__loop_submit(loop, &h->wake);
    if (r < 0) {
        he_free(h);
        return r;
    }
    if (!numeric) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        atomic_fetch_add(&h->refs, 1);
        r = pthread_create(&t, &attr, resolver_thread, h);
        pthread_attr_destroy(&attr);
        if (r != 0) {
            atomic_fetch_sub(&h->refs, 1);
            /* the wake operation is in flight: fail through it rather than free under it */
            h->gai = EAI_AGAIN;
            atomic_store_explicit(&h->published, true, memory_order_release);
            ssize_t w = write(h->pipefd[1], "x", 1);
            (void)w;
        }
    }
    return 0;
}
