/* rshttpd (tools/rshttpd.c) run as a child on port 0 over a temporary root: bodies compared byte
 * for byte, keep-alive and pipelining, every error status, a table of escape attempts (each must
 * get its status and never show the secret file outside the root), slow clients timed out while
 * others are served, the CLI contract, and real peers nobody here wrote: curl and Python's
 * http.client. RINGSOCK_BACKEND passes through to the child, which must report that backend. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_parse.h"
#include "pypeer.h"
#include "t.h"

extern char **environ;

#define KB 1024u
#define MB (1024u * 1024u)

/* ---- the temporary tree ------------------------------------------------------------------------ */

static char top[256]; /* mkdtemp: root/ and outside/ beneath it */
static char root[512];
static char secret_path[512];
static char secret[64]; /* the outside file's content: must never be in a response */

static void write_file(const char *rel, const void *data, size_t len)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "create %s: %s", p, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        ck_assert_int_gt(n, 0);
        off += (size_t)n;
    }
    ck_assert_int_eq(close(fd), 0);
}

static unsigned char *pattern(size_t len, uint32_t seed)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    t_fill_pattern(p, len, seed);
    return p;
}

static const size_t sizes[] = { 0, 1, KB, 16 * KB + 1, MB };
static const char *const size_names[] = { "s0.bin", "s1.bin", "s1k.bin", "s16k1.bin", "s1m.bin" };

static void make_tree(void)
{
    snprintf(top, sizeof top, "%s/rshttpd-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(top));
    snprintf(root, sizeof root, "%s/root", top);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/outside", top);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(secret_path, sizeof secret_path, "%s/outside/secret.txt", top);
    snprintf(secret, sizeof secret, "TOP-SECRET-%ld-%d", (long)time(NULL), (int)getpid());
    int fd = open(secret_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, secret, strlen(secret)), (ssize_t)strlen(secret));
    close(fd);

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *d = pattern(sizes[i], (uint32_t)i + 1);
        write_file(size_names[i], d, sizes[i]);
        free(d);
    }
    static const char *const typed[] = { "t.html", "t.txt", "t.css", "t.js",   "t.json", "t.png", "t.jpg",
                                         "t.gif",  "t.svg", "t.pdf", "t.wasm", "t.xyz",  "noext", "T.HTML" };
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++)
        write_file(typed[i], "x", 1);
    write_file("index.html", "<p>root index</p>\n", 18);
    snprintf(p, sizeof p, "%s/sub", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    write_file("sub/index.html", "<p>sub index</p>\n", 17);
    write_file("sub/a.txt", "sub a\n", 6);
    snprintf(p, sizeof p, "%s/a", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/emptydir", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    write_file("%2e%2e", "literal-name\n", 13); /* what /%252e%252e must reach */
    snprintf(p, sizeof p, "%s/fifo", root);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    /* symlinks: to the secret (absolute), to the outside dir (relative), and one that stays in */
    snprintf(p, sizeof p, "%s/leak", root);
    ck_assert_int_eq(symlink(secret_path, p), 0);
    snprintf(p, sizeof p, "%s/leakdir", root);
    ck_assert_int_eq(symlink("../outside", p), 0);
    snprintf(p, sizeof p, "%s/inlink", root);
    ck_assert_int_eq(symlink("sub/a.txt", p), 0);
    write_file("unreadable.txt", "no\n", 3);
    snprintf(p, sizeof p, "%s/unreadable.txt", root);
    ck_assert_int_eq(chmod(p, 0), 0);
    /* a fixed mtime for Last-Modified: 2020-01-01T00:00:00Z */
    write_file("old.txt", "old\n", 4);
    snprintf(p, sizeof p, "%s/old.txt", root);
    struct timespec ts[2] = { { 1577836800, 0 }, { 1577836800, 0 } };
    ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p) < 0 ? -1 : 0;
}

static void remove_tree(void)
{
    if (top[0])
        nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    top[0] = '\0';
}

/* ---- running rshttpd -------------------------------------------------------------------------- */

static const char *rshttpd_path(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("RSHTTPD");
    if (env && *env)
        return env;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    ck_assert_int_gt(n, 0);
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    ck_assert_ptr_nonnull(slash);
    strcpy(slash + 1, "rshttpd");
    return path;
}

struct srv {
    pid_t pid;
    int out, err; /* read ends of its stdout, stderr */
    int port;
    char line1[256], line2[256];
};

/* One line from fd (blocking with a deadline); its length or -1. */
static int read_line(int fd, char *buf, size_t cap, double timeout)
{
    size_t n = 0;
    double end = t_now() + timeout;
    while (n + 1 < cap) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        double left = end - t_now();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            return -1;
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k <= 0)
            return -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return (int)n;
}

/* Start rshttpd with --root <root> --port 0 and args (NULL-terminated). Returns its exit status
 * if it ended at once (CLI errors), else -1 with s running and s->port set. */
static int spawn(struct srv *s, const char *const args[], bool with_root)
{
    memset(s, 0, sizeof *s);
    char *argv[40];
    size_t n = 0;
    argv[n++] = (char *)"rshttpd";
    if (with_root) {
        argv[n++] = (char *)"--root";
        argv[n++] = root;
        argv[n++] = (char *)"--port";
        argv[n++] = (char *)"0";
    }
    for (size_t i = 0; args && args[i]; i++) {
        ck_assert_uint_lt(n, 38);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    int po[2], pe[2];
    ck_assert_int_eq(pipe2(po, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pe, O_CLOEXEC), 0);
    const char *exe = rshttpd_path();
    pid_t parent = getpid();
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int dn = open("/dev/null", O_RDONLY);
        if (dn < 0 || dup2(dn, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
            _exit(127);
        execve(exe, argv, environ);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    s->out = po[0];
    s->err = pe[0];
    return -1;
}

static void srv_start(struct srv *s, const char *const args[])
{
    spawn(s, args, true);
    ck_assert_msg(read_line(s->out, s->line1, sizeof s->line1, 20) > 0, "rshttpd printed no line");
    const char *colon = strrchr(s->line1, ':');
    ck_assert_msg(strncmp(s->line1, "listening on ", 13) == 0 && colon, "first line: %s", s->line1);
    s->port = atoi(colon + 1);
    ck_assert_int_gt(s->port, 0);
    ck_assert_int_gt(read_line(s->out, s->line2, sizeof s->line2, 10), 0);
    int want = t_wanted_backend();
    if (want != RS_BACKEND_AUTO) {
        char b[64];
        snprintf(b, sizeof b, "backend %s,", rs_backend_name(want));
        ck_assert_msg(strncmp(s->line2, b, strlen(b)) == 0, "wanted '%s', got '%s'", b, s->line2);
    }
}

/* Stop with sig; it must exit 0 promptly. */
static void srv_stop_sig(struct srv *s, int sig)
{
    ck_assert_int_eq(kill(s->pid, sig), 0);
    int st = t_wait_child(s->pid, 10);
    char err[1024] = "";
    ssize_t n = read(s->err, err, sizeof err - 1);
    if (n > 0)
        err[n] = '\0';
    ck_assert_msg(st == 0, "rshttpd exited %d; stderr: %s", st, err);
    close(s->out);
    close(s->err);
}

static void srv_stop(struct srv *s) { srv_stop_sig(s, SIGTERM); }

/* ---- a tiny HTTP client on plain sockets ------------------------------------------------------- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        off += (size_t)n;
    }
}

static void send_str(int fd, const char *s) { send_all(fd, s, strlen(s)); }

/* What came back on one connection, accumulated across responses. */
struct rbuf {
    unsigned char *d;
    size_t len, cap, pos; /* pos: where the next response starts */
    bool eof;
};

static bool fill(int fd, struct rbuf *b)
{
    if (b->eof)
        return false;
    if (b->cap - b->len < 64 * KB) {
        b->cap = b->cap ? b->cap * 2 : 256 * KB;
        b->d = realloc(b->d, b->cap);
        ck_assert_ptr_nonnull(b->d);
    }
    ssize_t n = recv(fd, b->d + b->len, b->cap - b->len, 0);
    if (n <= 0) {
        b->eof = true; /* EOF, reset or the 10 s timeout: all end the stream for the test */
        return false;
    }
    b->len += (size_t)n;
    return true;
}

struct resp {
    int status;
    char head[16 * 1024];
    const unsigned char *body; /* into the rbuf */
    size_t body_len;
    long long clen;
};

/* The value of header name in r (case-insensitive), copied to out; false if absent. */
static bool header(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
    }
    return false;
}

/* Read the next response (head; body by Content-Length unless head_only or a 304). False at EOF
 * before a whole response. */
static bool next_response(int fd, struct rbuf *b, bool head_only, struct resp *r)
{
    memset(r, 0, sizeof *r);
    r->clen = -1;
    unsigned char *end;
    while (!(end = memmem(b->d ? b->d + b->pos : (unsigned char *)"", b->len - b->pos, "\r\n\r\n", 4)))
        if (!fill(fd, b))
            return false;
    size_t hl = (size_t)(end - (b->d + b->pos)) + 4;
    ck_assert_uint_lt(hl, sizeof r->head);
    memcpy(r->head, b->d + b->pos, hl);
    r->head[hl] = '\0';
    ck_assert_msg(sscanf(r->head, "HTTP/1.1 %d ", &r->status) == 1, "status line: %.80s", r->head);
    char v[64];
    if (header(r, "Content-Length", v, sizeof v))
        r->clen = atoll(v);
    size_t want = head_only || r->status == 304 || r->clen < 0 ? 0 : (size_t)r->clen;
    while (b->len - b->pos - hl < want)
        if (!fill(fd, b))
            return false;
    r->body = b->d + b->pos + hl;
    r->body_len = want;
    b->pos += hl + want;
    return true;
}

/* Read until the server closes (at most 10 s): true if it did. */
static bool drain_to_eof(int fd, struct rbuf *b)
{
    double end = t_now() + 10;
    while (!b->eof && t_now() < end)
        fill(fd, b);
    return b->eof;
}

static bool contains(const struct rbuf *b, const char *s)
{
    return b->len && memmem(b->d, b->len, s, strlen(s)) != NULL;
}

/* One request (with "Connection: close") on a fresh connection; the whole exchange, to the
 * server's EOF, in *b (the caller frees b->d). */
static void exchange(int port, const void *req, size_t len, struct rbuf *b, struct resp *r, bool head_only)
{
    memset(b, 0, sizeof *b);
    int fd = dial(port);
    send_all(fd, req, len);
    ck_assert_msg(next_response(fd, b, head_only, r), "no response to %.60s", (const char *)req);
    ck_assert_msg(drain_to_eof(fd, b), "not closed after %.60s", (const char *)req);
    close(fd);
}

/* GET target on a fresh connection with "Connection: close". */
static void get(int port, const char *target, const char *extra, struct rbuf *b, struct resp *r)
{
    char req[20 * 1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n", target,
                     extra ? extra : "");
    ck_assert_int_lt(n, (int)sizeof req);
    exchange(port, req, (size_t)n, b, r, false);
}

static struct srv S;

static void setup(void)
{
    t_setup();
    make_tree();
    srv_start(&S, (const char *const[]){ NULL });
}

static void teardown(void)
{
    srv_stop(&S);
    remove_tree();
    t_teardown();
}

/* ---- bodies, keep-alive, pipelining ---------------------------------------------------------- */

/* GET then HEAD of every size on one keep-alive connection: bytes and lengths exact. */
START_TEST(get_and_head_every_size)
{
    int fd = dial(S.port);
    struct rbuf b = { 0 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *want = pattern(sizes[i], (uint32_t)i + 1);
        char req[256];
        struct resp r;
        snprintf(req, sizeof req, "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", size_names[i]);
        send_str(fd, req);
        ck_assert_msg(next_response(fd, &b, false, &r), "GET %s: no response", size_names[i]);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.clen, (long long)sizes[i]);
        ck_assert_uint_eq(r.body_len, sizes[i]);
        ck_assert_msg(memcmp(r.body, want, sizes[i]) == 0, "GET %s: body differs", size_names[i]);
        snprintf(req, sizeof req, "HEAD /%s HTTP/1.1\r\nHost: t\r\n\r\n", size_names[i]);
        send_str(fd, req);
        ck_assert(next_response(fd, &b, true, &r));
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.clen, (long long)sizes[i]);
        free(want);
    }
    /* HEAD sent no body: the connection is in step, and the next GET still lines up */
    send_str(fd, "GET /s1.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 1);
    ck_assert_uint_eq(b.pos, b.len); /* nothing extra arrived */
    close(fd);
    free(b.d);
}
END_TEST

/* Keep-alive: HTTP/1.1 by default, HTTP/1.0 only when asked; "Connection: close" closes. */
START_TEST(keep_alive_rules)
{
    int fd = dial(S.port);
    struct rbuf b = { 0 };
    struct resp r;
    for (int i = 0; i < 5; i++) {
        send_str(fd, "GET /sub/a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert(next_response(fd, &b, false, &r));
        ck_assert_int_eq(r.status, 200);
        ck_assert_mem_eq(r.body, "sub a\n", 6);
        char v[64];
        ck_assert(!header(&r, "Connection", v, sizeof v) || strcasecmp(v, "close") != 0);
    }
    send_str(fd, "GET /sub/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ck_assert(next_response(fd, &b, false, &r));
    char v[64];
    ck_assert(header(&r, "Connection", v, sizeof v));
    ck_assert_str_eq(v, "close");
    ck_assert(drain_to_eof(fd, &b));
    ck_assert_uint_eq(b.pos, b.len);
    close(fd);
    free(b.d);

    /* HTTP/1.0 with keep-alive: stays open, says so */
    memset(&b, 0, sizeof b);
    fd = dial(S.port);
    for (int i = 0; i < 3; i++) {
        send_str(fd, "GET /sub/a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        ck_assert(next_response(fd, &b, false, &r));
        ck_assert_int_eq(r.status, 200);
        ck_assert(header(&r, "Connection", v, sizeof v));
        ck_assert_str_eq(v, "keep-alive");
    }
    /* HTTP/1.0 without it: closed after the response */
    send_str(fd, "GET /sub/a.txt HTTP/1.0\r\n\r\n");
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert(drain_to_eof(fd, &b));
    close(fd);
    free(b.d);
}
END_TEST

/* Ten requests in one write: ten responses, in order, bodies right. */
START_TEST(pipelining_in_order)
{
    char req[4096] = "";
    static const int pick[10] = { 2, 0, 3, 1, 2, 4, 1, 3, 0, 2 };
    for (int i = 0; i < 10; i++) {
        char one[128];
        snprintf(one, sizeof one, "%s /%s HTTP/1.1\r\nHost: t\r\n\r\n", i == 6 ? "HEAD" : "GET",
                 size_names[pick[i]]);
        strcat(req, one);
    }
    int fd = dial(S.port);
    send_str(fd, req);
    struct rbuf b = { 0 };
    for (int i = 0; i < 10; i++) {
        struct resp r;
        ck_assert_msg(next_response(fd, &b, i == 6, &r), "response %d missing", i);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.clen, (long long)sizes[pick[i]]);
        if (i != 6) {
            unsigned char *want = pattern(sizes[pick[i]], (uint32_t)pick[i] + 1);
            ck_assert_msg(memcmp(r.body, want, r.body_len) == 0, "response %d: wrong body", i);
            free(want);
        }
    }
    /* and the connection is still good */
    send_str(fd, "GET /s1k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    struct resp r;
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert(drain_to_eof(fd, &b));
    close(fd);
    free(b.d);
}
END_TEST

/* A client that half-closes after its request (printf ... | nc) still gets the answer, then EOF. */
START_TEST(half_closed_client_answered)
{
    int fd = dial(S.port);
    send_str(fd, "GET /s1k.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    struct rbuf b = { 0 };
    struct resp r;
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, KB);
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_mem_eq(r.body, "sub a\n", 6);
    ck_assert(drain_to_eof(fd, &b));
    ck_assert_uint_eq(b.pos, b.len);
    close(fd);
    free(b.d);
}
END_TEST

/* 300 pipelined requests for 16 KiB + 1 (about 5 MB of answers) sent while not reading: the server
 * stops reading instead of buffering without bound, and once we read, every answer comes, in
 * order. */
START_TEST(pipelined_flood_while_not_reading)
{
    int fd = dial(S.port);
    const char *one = "GET /s16k1.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t ol = strlen(one), n = 300;
    char *req = malloc(ol * n);
    ck_assert_ptr_nonnull(req);
    for (size_t i = 0; i < n; i++)
        memcpy(req + i * ol, one, ol);
    /* the send may block once both socket buffers are full: do it non-blocking, reading later */
    size_t off = 0;
    double end = t_now() + 1.0;
    while (off < ol * n && t_now() < end) {
        ssize_t k = send(fd, req + off, ol * n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0)
            off += (size_t)k;
        else
            t_sleep(0.01);
    }
    unsigned char *want = pattern(16 * KB + 1, 4);
    struct rbuf b = { 0 };
    for (size_t i = 0; i < n; i++) {
        while (off < ol * n) { /* the rest of the requests, as the server drains */
            ssize_t k = send(fd, req + off, ol * n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k <= 0)
                break;
            off += (size_t)k;
        }
        struct resp r;
        ck_assert_msg(next_response(fd, &b, false, &r), "response %zu missing", i);
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(r.body_len, 16 * KB + 1);
        ck_assert(memcmp(r.body, want, r.body_len) == 0);
        /* keep the client's buffer small: drop what has been checked */
        memmove(b.d, b.d + b.pos, b.len - b.pos);
        b.len -= b.pos;
        b.pos = 0;
    }
    ck_assert_uint_eq(off, ol * n);
    free(want);
    free(req);
    free(b.d);
    close(fd);
}
END_TEST

/* A request split across many small writes is put together. */
START_TEST(request_in_pieces)
{
    const char *req = "GET /sub/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int fd = dial(S.port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t len = strlen(req);
    for (size_t i = 0; i < len; i += 3) {
        send_all(fd, req + i, len - i < 3 ? len - i : 3);
        t_sleep(0.002);
    }
    struct rbuf b = { 0 };
    struct resp r;
    ck_assert(next_response(fd, &b, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, "sub a\n", 6);
    close(fd);
    free(b.d);
}
END_TEST

/* ---- headers ---------------------------------------------------------------------------------- */

START_TEST(content_types)
{
    static const char *const t[][2] = {
        { "t.html", "text/html; charset=utf-8" },
        { "t.txt", "text/plain; charset=utf-8" },
        { "t.css", "text/css; charset=utf-8" },
        { "t.js", "text/javascript; charset=utf-8" },
        { "t.json", "application/json" },
        { "t.png", "image/png" },
        { "t.jpg", "image/jpeg" },
        { "t.gif", "image/gif" },
        { "t.svg", "image/svg+xml" },
        { "t.pdf", "application/pdf" },
        { "t.wasm", "application/wasm" },
        { "t.xyz", "application/octet-stream" },
        { "noext", "application/octet-stream" },
        { "T.HTML", "text/html; charset=utf-8" },
        { "", "text/html; charset=utf-8" },
        { "sub/", "text/html; charset=utf-8" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char target[64], v[128];
        snprintf(target, sizeof target, "/%s", t[i][0]);
        struct rbuf b;
        struct resp r;
        get(S.port, target, NULL, &b, &r);
        ck_assert_msg(r.status == 200, "%s: %d", target, r.status);
        ck_assert(header(&r, "Content-Type", v, sizeof v));
        ck_assert_msg(strcmp(v, t[i][1]) == 0, "%s: Content-Type '%s', wanted '%s'", target, v, t[i][1]);
        free(b.d);
    }
}
END_TEST

/* Directories: index.html when there is one (the right one), else 404 — never a listing. */
START_TEST(directory_index)
{
    struct rbuf b;
    struct resp r;
    get(S.port, "/", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, "<p>root index</p>\n", 18);
    free(b.d);
    get(S.port, "/sub", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, "<p>sub index</p>\n", 17);
    free(b.d);
    get(S.port, "/emptydir/", NULL, &b, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert(!contains(&b, "index"));
    free(b.d);
    get(S.port, "/sub/a.txt/", NULL, &b, &r);
    ck_assert_int_eq(r.status, 404);
    free(b.d);
}
END_TEST

/* Date, Server, Last-Modified as IMF-fixdate; If-Modified-Since gives 304 when not newer. */
START_TEST(last_modified_and_304)
{
    struct rbuf b;
    struct resp r;
    char v[128];
    get(S.port, "/old.txt", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(header(&r, "Last-Modified", v, sizeof v));
    ck_assert_str_eq(v, "Wed, 01 Jan 2020 00:00:00 GMT");
    ck_assert(header(&r, "Server", v, sizeof v));
    ck_assert_str_eq(v, "rshttpd/" RS_VERSION_STRING);
    ck_assert(header(&r, "Date", v, sizeof v));
    time_t dt;
    ck_assert_int_eq(http_parse_date(v, strlen(v), &dt), 0);
    ck_assert_msg(llabs((long long)(dt - time(NULL))) < 5, "Date %s is not now", v);
    free(b.d);

    static const struct {
        const char *ims;
        int status;
    } c[] = {
        { "Wed, 01 Jan 2020 00:00:00 GMT", 304 }, { "Thu, 02 Jan 2020 00:00:00 GMT", 304 },
        { "Tue, 31 Dec 2019 23:59:59 GMT", 200 }, { "Wednesday, 01-Jan-20 00:00:00 GMT", 304 },
        { "Wed Jan  1 00:00:00 2020", 304 },      { "not a date", 200 },
        { "Wed, 01 Jan 2020 00:00:00 XYZ", 200 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "If-Modified-Since: %s\r\n", c[i].ims);
        get(S.port, "/old.txt", extra, &b, &r);
        ck_assert_msg(r.status == c[i].status, "IMS '%s': %d", c[i].ims, r.status);
        if (r.status == 304) {
            ck_assert(header(&r, "Last-Modified", v, sizeof v));
            ck_assert_uint_eq(b.len - b.pos, 0); /* no body after a 304 */
        }
        free(b.d);
    }
    /* a file newer than the date: 200 */
    get(S.port, "/sub/a.txt", "If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT\r\n", &b, &r);
    ck_assert_int_eq(r.status, 200);
    free(b.d);
}
END_TEST

/* An edited file is served fresh at once (the cache revalidates by mtime/size/ctime). */
START_TEST(edited_file_served_fresh)
{
    struct rbuf b;
    struct resp r;
    write_file("edit.txt", "first\n", 6);
    get(S.port, "/edit.txt", NULL, &b, &r);
    ck_assert_mem_eq(r.body, "first\n", 6);
    free(b.d);
    write_file("edit.txt", "second!\n", 8);
    get(S.port, "/edit.txt", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 8);
    ck_assert_mem_eq(r.body, "second!\n", 8);
    free(b.d);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/edit.txt", root);
    ck_assert_int_eq(unlink(p), 0);
    get(S.port, "/edit.txt", NULL, &b, &r);
    ck_assert_int_eq(r.status, 404);
    free(b.d);
}
END_TEST

/* ---- error statuses --------------------------------------------------------------------------- */

struct bad {
    const char *name;
    const char *req;
    size_t len; /* 0: strlen */
    int status;
    bool closes;
};

#define LIT(s) s, sizeof(s) - 1

static void check_bad(const struct bad *c)
{
    struct rbuf b;
    struct resp r;
    size_t len = c->len ? c->len : strlen(c->req);
    memset(&b, 0, sizeof b);
    int fd = dial(S.port);
    send_all(fd, c->req, len);
    ck_assert_msg(next_response(fd, &b, false, &r), "%s: no response", c->name);
    ck_assert_msg(r.status == c->status, "%s: status %d, wanted %d", c->name, r.status, c->status);
    ck_assert_msg(r.body_len > 0, "%s: no body", c->name);
    char v[64];
    if (c->closes) {
        ck_assert_msg(header(&r, "Connection", v, sizeof v) && strcmp(v, "close") == 0,
                      "%s: no Connection: close", c->name);
        ck_assert_msg(drain_to_eof(fd, &b), "%s: not closed", c->name);
    } else {
        /* the stream goes on: a good request on the same connection works */
        send_str(fd, "GET /s1.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_msg(next_response(fd, &b, false, &r) && r.status == 200, "%s: connection unusable after",
                      c->name);
    }
    close(fd);
    free(b.d);
}

START_TEST(error_statuses)
{
    static char long_target[HTTP_MAX_TARGET + 64], big_head[HTTP_MAX_HEADER + 2048],
        many[HTTP_MAX_FIELDS * 8 + 64];
    int n = snprintf(long_target, sizeof long_target, "GET /");
    memset(long_target + n, 'a', HTTP_MAX_TARGET + 8);
    strcpy(long_target + n + HTTP_MAX_TARGET + 8, " HTTP/1.1\r\nHost: t\r\n\r\n");
    n = snprintf(big_head, sizeof big_head, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(big_head + n, 'b', HTTP_MAX_HEADER);
    strcpy(big_head + n + HTTP_MAX_HEADER, "\r\n\r\n");
    n = snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < HTTP_MAX_FIELDS + 1; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "X%d: 1\r\n", i % 10);
    strcpy(many + n, "\r\n");

    const struct bad cases[] = {
        { "bare LF", "GET / HTTP/1.1\nHost: t\n\n", 0, 400, true },
        { "bare CR", "GET / HTTP/1.1\rHost: t\r\n\r\n", 0, 400, true },
        { "NUL in a field", LIT("GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n"), 400, true },
        { "NUL in the target", LIT("GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n"), 400, true },
        { "obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n  folded\r\n\r\n", 0, 400, true },
        { "space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 0, 400, true },
        { "two spaces", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400, true },
        { "no version", "GET /\r\nHost: t\r\n\r\n", 0, 400, true },
        { "lowercase version", "GET / http/1.1\r\nHost: t\r\n\r\n", 0, 400, true },
        { "CL and TE", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
          0, 400, true },
        { "TE alone", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400,
          true },
        { "TE identity", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n", 0, 400, true },
        { "duplicate CL", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 0,
          400, true },
        { "CL list", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0, 0\r\n\r\n", 0, 400, true },
        { "CL not a number", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 0, 400, true },
        { "CL negative", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 0, 400, true },
        { "no Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 0, 400, true },
        { "two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400, true },
        { "control byte in target", "GET /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400, true },
        { "bad escape", "GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400, false },
        { "asterisk-form", "GET * HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400, false },
        { "fifo", "GET /fifo HTTP/1.1\r\nHost: t\r\n\r\n", 0, 403, false },
        { "missing", "GET /nope.txt HTTP/1.1\r\nHost: t\r\n\r\n", 0, 404, false },
        { "POST", "POST /s1.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 0, 405, false },
        { "DELETE", "DELETE /s1.bin HTTP/1.1\r\nHost: t\r\n\r\n", 0, 405, false },
        { "POST with a body", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 0, 405, true },
        { "lowercase get", "get / HTTP/1.1\r\nHost: t\r\n\r\n", 0, 405, false },
        { "GET with a body", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 0, 413, true },
        { "long target", long_target, 0, 414, true },
        { "big head", big_head, 0, 431, true },
        { "too many fields", many, 0, 431, true },
        { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 0, 505, true },
        { "HTTP/1.2", "GET / HTTP/1.2\r\nHost: t\r\n\r\n", 0, 505, true },
        { "HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 0, 505, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_bad(&cases[i]);
    if (geteuid() != 0) { /* root reads a mode-000 file anyway */
        const struct bad u = { "unreadable", "GET /unreadable.txt HTTP/1.1\r\nHost: t\r\n\r\n", 0, 403,
                               false };
        check_bad(&u);
    }
}
END_TEST

/* 405 says what is allowed. */
START_TEST(method_not_allowed_has_allow)
{
    struct rbuf b;
    struct resp r;
    const char *req = "PUT /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    exchange(S.port, req, strlen(req), &b, &r, false);
    ck_assert_int_eq(r.status, 405);
    char v[64];
    ck_assert(header(&r, "Allow", v, sizeof v));
    ck_assert_str_eq(v, "GET, HEAD");
    free(b.d);
}
END_TEST

/* ---- escapes ------------------------------------------------------------------------------------ */

static void escape_table(int port)
{
    char abs_target[PATH_MAX + 64], abs_form[PATH_MAX + 64];
    snprintf(abs_target, sizeof abs_target, "/%s", secret_path); /* "//tmp/.../secret.txt" */
    snprintf(abs_form, sizeof abs_form, "http://t%s", secret_path);
    const struct {
        const char *target;
        int status;
    } t[] = {
        { "/../outside/secret.txt", 403 },
        { "/%2e%2e/outside/secret.txt", 403 },
        { "/%2E%2e%2f../outside/secret.txt", 403 },
        { "/..%2foutside/secret.txt", 403 },
        { "/%2e%2e%2foutside%2fsecret.txt", 403 },
        { "/a/../../outside/secret.txt", 403 },
        { "/a/..", 403 },
        { "/sub/../s1.bin", 403 },
        { "http://t/../outside/secret.txt", 403 },
        { "HTTP://t/%2e%2e/outside/secret.txt", 403 },
        { "//etc/passwd", 404 },
        { abs_target, 404 },
        { abs_form, 404 },
        { "/..\\outside\\secret.txt", 403 },
        { "/%5c..%5coutside%5csecret.txt", 403 },
        { "/sub\\a.txt", 403 },
        { "/s1.bin%00", 400 },
        { "/leak%00.txt", 400 },
        { "/%252e%252e/outside/secret.txt", 404 },
        { "/leak", 403 },
        { "/leakdir/secret.txt", 403 },
        { "/leakdir/", 403 },
        { "/./leak", 403 },
        { "/sub/../leak", 403 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct rbuf b;
        struct resp r;
        get(port, t[i].target, NULL, &b, &r);
        ck_assert_msg(r.status == t[i].status, "%s: status %d, wanted %d", t[i].target, r.status,
                      t[i].status);
        ck_assert_msg(!contains(&b, secret), "%s: the secret leaked", t[i].target);
        free(b.d);
    }
    /* double encoding stays a literal name: /%252e%252e is the file called "%2e%2e" */
    struct rbuf b;
    struct resp r;
    get(port, "/%252e%252e", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, "literal-name\n", 13);
    free(b.d);
    /* a symlink that stays inside the root is served */
    get(port, "/inlink", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_mem_eq(r.body, "sub a\n", 6);
    free(b.d);
    /* the secret really is readable where it is (so the checks above could have failed) */
    FILE *fp = fopen(secret_path, "r");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
}

START_TEST(escape_attempts_table) { escape_table(S.port); }
END_TEST

/* The same table on the fallback for kernels without openat2 (realpath of the opened fd checked
 * against the root's). */
START_TEST(escape_attempts_table_realpath_fallback)
{
    struct srv s;
    ck_assert_int_eq(setenv("RSHTTPD_NO_OPENAT2", "1", 1), 0);
    srv_start(&s, (const char *const[]){ NULL });
    escape_table(s.port);
    srv_stop(&s);
}
END_TEST

/* A symlink swapped from an inside file to the outside secret after it was served (and cached)
 * must not keep serving, nor serve the secret. */
START_TEST(swapped_symlink_not_served_from_cache)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/swap", root);
    ck_assert_int_eq(symlink("s1k.bin", p), 0);
    struct rbuf b;
    struct resp r;
    get(S.port, "/swap", NULL, &b, &r);
    ck_assert_int_eq(r.status, 200);
    free(b.d);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(symlink(secret_path, p), 0);
    get(S.port, "/swap", NULL, &b, &r);
    ck_assert_int_eq(r.status, 403);
    ck_assert(!contains(&b, secret));
    free(b.d);
}
END_TEST

/* ---- timeouts ---------------------------------------------------------------------------------- */

static struct srv S1;

static void setup_t1(void)
{
    t_setup();
    make_tree();
    srv_start(&S1, (const char *const[]){ "--timeout", "1", NULL });
}

static void teardown_t1(void)
{
    srv_stop(&S1);
    remove_tree();
    t_teardown();
}

/* A client dribbling its head a byte every 200 ms is dropped after --timeout 1, while another
 * client is served all along. */
START_TEST(slowloris_dropped_others_served)
{
    const char *req =
        "GET /s1k.bin HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    int slow = dial(S1.port);
    double t0 = t_now(), next = t0, dropped = 0;
    size_t sent = 0;
    int served = 0;
    while (t_now() - t0 < 4.0 && !dropped) {
        if (t_now() >= next && sent < strlen(req)) {
            if (send(slow, req + sent, 1, MSG_NOSIGNAL) == 1)
                sent++;
            next += 0.2;
        }
        /* is the slow one closed? */
        char c;
        ssize_t n = recv(slow, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            dropped = t_now() - t0;
            break;
        }
        ck_assert_msg(n < 0, "the slow client got a response byte");
        /* meanwhile, a normal client */
        struct rbuf b;
        struct resp r;
        get(S1.port, "/s1k.bin", NULL, &b, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(r.body_len, KB);
        free(b.d);
        served++;
        t_sleep(0.02);
    }
    ck_assert_msg(dropped > 0, "the slow client was not dropped within 4 s (%zu bytes sent)", sent);
    ck_assert_msg(dropped >= 0.85 && dropped <= 1.0 + 0.2 + t_slack() + 0.5, "dropped after %.2f s", dropped);
    ck_assert_uint_lt(sent, strlen(req)); /* it never got its head in */
    ck_assert_int_ge(served, 5);
    close(slow);
}
END_TEST

/* An idle keep-alive connection is closed after --timeout, and one in use is not. */
START_TEST(idle_keepalive_closed)
{
    int fd = dial(S1.port);
    struct rbuf b = { 0 };
    struct resp r;
    /* requests every 0.4 s for 1.6 s: never idle for 1 s, so never closed */
    for (int i = 0; i < 5; i++) {
        send_str(fd, "GET /s1.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        ck_assert_msg(next_response(fd, &b, false, &r), "request %d: closed early", i);
        ck_assert_int_eq(r.status, 200);
        t_sleep(0.4);
    }
    double t0 = t_now();
    ck_assert(drain_to_eof(fd, &b));
    double took = t_now() - t0;
    ck_assert_msg(took >= 0.4 && took <= 1.0 + 0.2 + t_slack() + 0.5, "idle close after %.2f s", took);
    ck_assert_uint_eq(b.pos, b.len);
    close(fd);
    free(b.d);
}
END_TEST

/* ---- threads, signals, CLI --------------------------------------------------------------------- */

START_TEST(two_threads_serve_many_connections)
{
    make_tree();
    struct srv s;
    srv_start(&s, (const char *const[]){ "--threads", "2", NULL });
    ck_assert_msg(strstr(s.line2, "2 threads"), "%s", s.line2);
    int fds[16];
    for (int i = 0; i < 16; i++)
        fds[i] = dial(s.port);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 16; i++)
            send_str(fds[i], "GET /s16k1.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    unsigned char *want = pattern(16 * KB + 1, 4);
    for (int i = 0; i < 16; i++) {
        struct rbuf b = { 0 };
        for (int round = 0; round < 3; round++) {
            struct resp r;
            ck_assert(next_response(fds[i], &b, false, &r));
            ck_assert_int_eq(r.status, 200);
            ck_assert_uint_eq(r.body_len, 16 * KB + 1);
            ck_assert(memcmp(r.body, want, r.body_len) == 0);
        }
        close(fds[i]);
        free(b.d);
    }
    free(want);
    srv_stop_sig(&s, SIGINT);
    remove_tree();
}
END_TEST

/* Stopping with connections open (one mid-download) still exits 0 at once. */
START_TEST(stop_with_open_connections)
{
    make_tree();
    struct srv s;
    srv_start(&s, (const char *const[]){ NULL });
    int idle = dial(s.port);
    int busy = dial(s.port);
    int rcv = 4096;
    setsockopt(busy, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    send_str(busy, "GET /s1m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    t_sleep(0.2);
    double t0 = t_now();
    srv_stop(&s);
    ck_assert_msg(t_now() - t0 < 3, "stop took %.2f s", t_now() - t0);
    close(idle);
    close(busy);
    remove_tree();
}
END_TEST

static int run_cli(const char *const args[], char *out, size_t outcap, char *err, size_t errcap)
{
    struct srv s;
    spawn(&s, args, false);
    int st = t_wait_child(s.pid, 10);
    ssize_t n = read(s.out, out, outcap - 1);
    out[n > 0 ? n : 0] = '\0';
    n = read(s.err, err, errcap - 1);
    err[n > 0 ? n : 0] = '\0';
    close(s.out);
    close(s.err);
    return st;
}

START_TEST(cli_contract)
{
    char out[4096], err[4096];
    static const char *const bad[][4] = {
        { "--port", "abc", NULL },    { "--port", "70000", NULL },
        { "--threads", "-1", NULL },  { "--timeout", "0", NULL },
        { "--timeout", "x", NULL },   { "--backend", "kqueue", NULL },
        { "--no-such-option", NULL }, { "extra", NULL },
        { "--port", NULL },           { "-x", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = run_cli(bad[i], out, sizeof out, err, sizeof err);
        ck_assert_msg(st == 2, "%s %s: exit %d", bad[i][0], bad[i][1] ? bad[i][1] : "", st);
        ck_assert_msg(strncmp(err, "rshttpd: ", 9) == 0 && strchr(err, '\n') == err + strlen(err) - 1,
                      "%s: stderr is not one line: %s", bad[i][0], err);
        ck_assert_str_eq(out, "");
    }
    ck_assert_int_eq(run_cli((const char *const[]){ "--help", NULL }, out, sizeof out, err, sizeof err), 0);
    ck_assert(strncmp(out, "usage: rshttpd", 14) == 0);
    ck_assert_int_eq(run_cli((const char *const[]){ "--version", NULL }, out, sizeof out, err, sizeof err),
                     0);
    ck_assert_str_eq(out, "rshttpd (ringsock) " RS_VERSION_STRING "\n");
    /* a root that does not exist: status 1, one line */
    ck_assert_int_eq(run_cli((const char *const[]){ "--root", "/nonexistent/rshttpd", "--port", "0", NULL },
                             out, sizeof out, err, sizeof err),
                     1);
    ck_assert(strstr(err, "/nonexistent/rshttpd"));
}
END_TEST

/* ---- real peers --------------------------------------------------------------------------------- */

static bool have_prog(const char *name)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, name);
        if (access(buf, X_OK) == 0)
            return true;
        p += n + (e ? 1 : 0);
    }
    return false;
}

/* Run argv with stdout captured (up to cap); its exit status. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (dup2(p[1], 1) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        if (poll(&pf, 1, 20000) <= 0)
            break;
        ssize_t k = read(p[0], out + n, cap - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    out[n] = '\0';
    close(p[0]);
    return t_wait_child(pid, 20);
}

static bool same_file_content(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = false;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

START_TEST(curl_downloads)
{
    ck_assert_msg(have_prog("curl"), "curl is not installed (the CI image must have it)");
    char url1[128], url2[128], f1[PATH_MAX], f2[PATH_MAX], want1[PATH_MAX], want2[PATH_MAX], out[512];
    snprintf(url1, sizeof url1, "http://127.0.0.1:%d/s1m.bin", S.port);
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/s16k1.bin", S.port);
    snprintf(f1, sizeof f1, "%s/c1", top);
    snprintf(f2, sizeof f2, "%s/c2", top);
    snprintf(want1, sizeof want1, "%s/s1m.bin", root);
    snprintf(want2, sizeof want2, "%s/s16k1.bin", root);
    char *const one[] = { "curl", "-sS", "-o", f1, "-w", "%{http_code}", url1, NULL };
    ck_assert_int_eq(run_capture(one, out, sizeof out), 0);
    ck_assert_str_eq(out, "200");
    ck_assert(same_file_content(f1, want1));
    unlink(f1);
    /* two URLs in one run: the second reuses the connection (num_connects 0) */
    char *const two[] = { "curl", "-sS", "-o", f1, "-o", f2, "-w", "%{http_code} %{num_connects}\\n",
                          url1,   url2,  NULL };
    ck_assert_int_eq(run_capture(two, out, sizeof out), 0);
    ck_assert_str_eq(out, "200 1\n200 0\n");
    ck_assert(same_file_content(f1, want1));
    ck_assert(same_file_content(f2, want2));
    /* a 404 and a HEAD */
    char url3[128];
    snprintf(url3, sizeof url3, "http://127.0.0.1:%d/missing", S.port);
    char *const nf[] = { "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url3, NULL };
    ck_assert_int_eq(run_capture(nf, out, sizeof out), 0);
    ck_assert_str_eq(out, "404");
    char *const head[] = { "curl", "-sS", "-I", url2, NULL };
    ck_assert_int_eq(run_capture(head, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "Content-Length: 16385\r\n"), "%s", out);
}
END_TEST

static void sha_hex_of(const char *rel, char hex[65])
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *fp = fopen(p, "rb");
    ck_assert_ptr_nonnull(fp);
    struct t_py_sha256 c;
    t_py_sha256_init(&c);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        t_py_sha256_update(&c, buf, n);
    fclose(fp);
    t_py_sha256_hex(&c, hex);
}

START_TEST(python_http_client_keepalive)
{
    char port[16];
    snprintf(port, sizeof port, "%d", S.port);
    char args[8][128];
    char *argv[10];
    int n = 0;
    argv[n++] = port;
    static const char *const files[] = { "s1m.bin", "s1k.bin", "s0.bin", "s16k1.bin", "sub/a.txt" };
    for (size_t i = 0; i < 5; i++) {
        char hex[65];
        sha_hex_of(files[i], hex);
        snprintf(args[i], sizeof args[i], "/%s=%s", files[i], hex);
        argv[n++] = args[i];
    }
    snprintf(args[5], sizeof args[5], "/missing=-");
    argv[n++] = args[5];
    argv[n] = NULL;
    struct t_py py;
    t_py_spawn("http_client_peer", argv, &py);
    ck_assert_str_eq(py.line, "ok 7");
    ck_assert_int_eq(t_py_wait(&py, 20), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("rshttpd");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, get_and_head_every_size);
    tcase_add_test(tc, keep_alive_rules);
    tcase_add_test(tc, pipelining_in_order);
    tcase_add_test(tc, request_in_pieces);
    tcase_add_test(tc, half_closed_client_answered);
    tcase_add_test(tc, pipelined_flood_while_not_reading);
    tcase_add_test(tc, content_types);
    tcase_add_test(tc, directory_index);
    tcase_add_test(tc, last_modified_and_304);
    tcase_add_test(tc, edited_file_served_fresh);
    tcase_add_test(tc, error_statuses);
    tcase_add_test(tc, method_not_allowed_has_allow);
    tcase_add_test(tc, escape_attempts_table);
    tcase_add_test(tc, escape_attempts_table_realpath_fallback);
    tcase_add_test(tc, swapped_symlink_not_served_from_cache);
    tcase_add_test(tc, curl_downloads);
    tcase_add_test(tc, python_http_client_keepalive);
    suite_add_tcase(s, tc);

    TCase *tt = tcase_create("timeouts");
    tcase_add_checked_fixture(tt, setup_t1, teardown_t1);
    tcase_set_timeout(tt, 30);
    tcase_add_test(tt, slowloris_dropped_others_served);
    tcase_add_test(tt, idle_keepalive_closed);
    suite_add_tcase(s, tt);

    TCase *tp = t_tcase(s, "process", 30);
    tcase_add_test(tp, two_threads_serve_many_connections);
    tcase_add_test(tp, stop_with_open_connections);
    tcase_add_test(tp, cli_contract);
    return s;
}

int main(void) { return t_run(make_suite()); }
