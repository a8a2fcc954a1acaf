/* rs_create_connection: socket.create_connection with a total deadline and Happy Eyeballs v2
 * (RFC 8305). Attempts are CONNECT operations on the thread's loop (on io_uring each one a CONNECT
 * SQE linked to a LINK_TIMEOUT), several in flight at once; the first to connect wins and the
 * others are cancelled, waited for, and closed, so no path leaks an fd. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsock/loop.h"
#include "ringsock/net.h"
#include "socket_i.h"

#define EXPORT __attribute__((visibility("default")))

/* More addresses than this are ignored: a name with hundreds of A records (gh-106283) must not
 * make the call unbounded even without a deadline. */
#define MAX_ADDRS 64

struct attempt {
    struct rs_op op;
    struct sockaddr_storage sa;
    socklen_t salen;
    int family, socktype, protocol;
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

struct conn {
    struct attempt *a;
    size_t n, next, active;
    const struct rs_connect_opts *opts;
    double timeout;
    int64_t deadline;
    struct source src[2];
    int last_err;
};

static void report_add(struct conn *c, struct attempt *a, int err)
{
    struct rs_connect_report *rep = c->opts->report;
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
    }
    rep->attempt[a->report_idx].error = err;
}

/* The source address for a family, resolved once per call. */
static int source_for(struct conn *c, int family, const struct sockaddr **sa, socklen_t *len)
{
    struct source *s = &c->src[family == AF_INET6];
    if (!s->family) {
        struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
        struct addrinfo *res = NULL;
        int e = getaddrinfo(c->opts->source_host, c->opts->source_port, &hints, &res);
        s->family = family;
        if (e != 0) {
            s->err = e == EAI_SYSTEM ? -errno : RS_EAI(e);
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

/* Start attempt i: socket, optional bind, CONNECT with its deadline. A failure before the
 * CONNECT is recorded and the attempt counts as finished. */
static void start(struct conn *c, struct rs_loop *loop, struct attempt *a)
{
    a->started = true;
    int err;
    a->fd = socket(a->family, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->protocol);
    if (a->fd < 0) {
        err = -errno;
        goto fail;
    }
    if (c->opts->source_host || c->opts->source_port) {
        const struct sockaddr *sa;
        socklen_t len;
        err = source_for(c, a->family, &sa, &len);
        if (err == 0 && bind(a->fd, sa, len) < 0)
            err = -errno;
        if (err < 0)
            goto fail;
    }
    memset(&a->op, 0, sizeof a->op);
    a->op.kind = RS_OP_CONNECT;
    a->op.fd = a->fd;
    a->op.fdgen = (uint64_t)(uintptr_t)a; /* not an rs_socket: any value unique while in flight */
    a->op.deadline = min64(rs__deadline_from_timeout(c->timeout), c->deadline);
    if (c->timeout == 0)
        a->op.deadline = RS_DEADLINE_NOW;
    a->op.u.connect.sa = (const struct sockaddr *)&a->sa;
    a->op.u.connect.len = a->salen;
    err = rs__loop_submit(loop, &a->op);
    if (err < 0)
        goto fail;
    c->active++;
    report_add(c, a, -EINPROGRESS);
    return;
fail:
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    a->finished = true;
    c->last_err = err;
    report_add(c, a, err);
}

/* RFC 8305 section 4: alternate address families, starting with `first` addresses of the family
 * the resolver put first. */
static size_t order(const struct addrinfo *list, struct attempt *out, int interleave)
{
    const struct addrinfo *fam[2][MAX_ADDRS];
    size_t cnt[2] = { 0, 0 }, n = 0;
    int fam1 = AF_UNSPEC;
    for (const struct addrinfo *ai = list; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || !ai->ai_addr)
            continue;
        if ((ai->ai_socktype && ai->ai_socktype != SOCK_STREAM) || ai->ai_addrlen > sizeof(struct sockaddr_storage))
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
        a->socktype = SOCK_STREAM;
        a->protocol = ai->ai_protocol;
        a->fd = -1;
        a->report_idx = -1;
    }
    return n;
}

EXPORT int rs_create_connection_addrs(rs_socket **out, const struct addrinfo *list,
                                      const struct rs_connect_opts *opts)
{
    static const struct rs_connect_opts defaults = RS_CONNECT_OPTS_INIT;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    double timeout = opts->timeout == RS_TIMEOUT_DEFAULT ? rs_getdefaulttimeout() : opts->timeout;
    if (!(timeout == RS_TIMEOUT_NONE || (timeout >= 0 && isfinite(timeout))))
        return -EINVAL;
    if (!(opts->deadline == RS_TIMEOUT_NONE || (opts->deadline >= 0 && isfinite(opts->deadline))))
        return -EINVAL;
    double delay = opts->happy_eyeballs_delay;
    if (!(delay == RS_TIMEOUT_NONE || (delay >= 0 && isfinite(delay))) || opts->interleave < 0)
        return -EINVAL;
    if (opts->report)
        opts->report->count = 0;
    struct rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0)
        return r;
    struct conn c = { .opts = opts, .timeout = timeout, .last_err = -EADDRNOTAVAIL };
    c.deadline = opts->deadline == RS_TIMEOUT_NONE ? RS_DEADLINE_NONE : rs__deadline_from_timeout(opts->deadline);
    if (opts->deadline == 0)
        c.deadline = rs__now();
    c.a = calloc(MAX_ADDRS, sizeof *c.a);
    if (!c.a)
        return -ENOMEM;
    c.n = order(list, c.a, opts->interleave);

    /* The Happy Eyeballs delay is a timer operation on the same loop. */
    struct rs_op timer;
    bool timer_armed = false;
    struct attempt *winner = NULL;
    bool deadline_hit = false;
    /* Timeout 0 makes every attempt a non-blocking connect that ends in -EINPROGRESS, and so
     * the call fails, exactly as socket.create_connection(timeout=0) does. */
    while (!winner) {
        if (c.deadline != RS_DEADLINE_NONE && rs__now() >= c.deadline) {
            deadline_hit = true;
            break;
        }
        if (c.active == 0 && c.next < c.n) {
            start(&c, loop, &c.a[c.next++]);
            continue;
        }
        if (c.active == 0)
            break;
        if (delay >= 0 && !timer_armed && c.next < c.n) {
            memset(&timer, 0, sizeof timer);
            timer.kind = RS_OP_TIMER;
            timer.fd = -1;
            timer.deadline = min64(rs__now() + (int64_t)(delay * 1e9), c.deadline);
            if (rs__loop_submit(loop, &timer) == 0)
                timer_armed = true;
        }
        rs_loop_run(loop, RS_RUN_ONCE);
        for (size_t i = 0; i < c.next; i++) {
            struct attempt *a = &c.a[i];
            if (!a->started || a->finished || !a->op.done)
                continue;
            a->finished = true;
            c.active--;
            int res = a->op.res;
            if (res == 0 && !winner) {
                winner = a;
                report_add(&c, a, 0);
                continue;
            }
            if (res == -ETIMEDOUT && c.deadline != RS_DEADLINE_NONE && rs__now() >= c.deadline)
                deadline_hit = true;
            report_add(&c, a, res == 0 ? -ECANCELED : res);
            c.last_err = res == 0 ? c.last_err : res;
            close(a->fd);
            a->fd = -1;
        }
        if (timer_armed && timer.done) {
            timer_armed = false;
            /* the delay passed with attempts still pending: start the next one (RFC 8305 5) */
            if (!winner && c.next < c.n && !deadline_hit)
                start(&c, loop, &c.a[c.next++]);
        }
        if (deadline_hit)
            break;
    }
    /* Cancel what is still in flight and wait for it: the operations live in c.a. */
    if (timer_armed)
        rs__loop_cancel(loop, &timer);
    for (size_t i = 0; i < c.next; i++)
        if (c.a[i].started && !c.a[i].finished)
            rs__loop_cancel(loop, &c.a[i].op);
    for (;;) {
        bool busy = timer_armed && !timer.done;
        for (size_t i = 0; i < c.next && !busy; i++)
            busy = c.a[i].started && !c.a[i].finished && !c.a[i].op.done;
        if (!busy)
            break;
        rs_loop_run(loop, RS_RUN_ONCE);
    }
    for (size_t i = 0; i < c.next; i++) {
        struct attempt *a = &c.a[i];
        if (!a->started || a->finished)
            continue;
        a->finished = true;
        int res = a->op.res;
        if (res == 0 && !winner) {
            winner = a;
            report_add(&c, a, 0);
            continue;
        }
        report_add(&c, a, res == 0 ? -ECANCELED : res);
        close(a->fd);
        a->fd = -1;
    }
    if (winner) {
        r = rs__sock_wrap(out, winner->fd, winner->family, SOCK_STREAM, timeout);
    } else if (deadline_hit) {
        r = -ETIMEDOUT;
    } else {
        r = c.last_err;
    }
    free(c.a);
    return r;
}

EXPORT int rs_create_connection(rs_socket **out, const char *host, const char *port,
                                const struct rs_connect_opts *opts)
{
    static const struct rs_connect_opts defaults = RS_CONNECT_OPTS_INIT;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!host || !port || !*host || !*port)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    if (opts->family != AF_UNSPEC && opts->family != AF_INET && opts->family != AF_INET6)
        return -EAFNOSUPPORT;
    struct addrinfo hints = { .ai_family = opts->family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
    struct addrinfo *res = NULL;
    /* Numeric hosts skip the resolver (no DNS, no /etc/hosts); names go to getaddrinfo. */
    int e = getaddrinfo(host, port, &hints, &res);
    if (e == EAI_NONAME) {
        hints.ai_flags = 0;
        e = getaddrinfo(host, port, &hints, &res);
    }
    if (e != 0)
        return e == EAI_SYSTEM ? (errno ? -errno : -EIO) : RS_EAI(e);
    int r = rs_create_connection_addrs(out, res, opts);
    freeaddrinfo(res);
    return r;
}
