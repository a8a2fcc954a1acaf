/* rshttpd: a static-file HTTP/1.1 server on ringsock's completion API (rs_serve workers, multishot
 * accept and receive, ordered sends, sendfile). GET and HEAD, keep-alive, pipelining; every path
 * is opened beneath the root with openat2(RESOLVE_BENEATH). docs/tools.md describes it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/openat2.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

#include "http_parse.h"

#define PROG "rshttpd"

/* Files up to this size are read into memory (the per-thread cache) and go out with their header
 * in one send — one syscall per response; larger ones go by sendfile after a header send.
 * Measured (wrk -c64 on a loaded 2-vCPU VM, 3 interleaved reps, requests/s copy vs sendfile):
 * 4 KiB 38-62k vs 21-52k, 16 KiB 12.1-12.6k vs 8-38k (copy won 2 of 3), 64 KiB 5.4-10.6k vs
 * 5.9-13.7k (sendfile won 2 of 3): copying wins up to 16 KiB. */
#define SMALL_FILE (16 * 1024)
/* Per-thread cache slots (direct-mapped: a colliding path replaces the entry; bounded memory of at
 * most CACHE_SLOTS * SMALL_FILE per thread, no eviction bookkeeping on the hot path). */
#define CACHE_SLOTS 1024
/* Responses of pipelined requests gather in one buffer, sent when this full or the input runs
 * dry: a 10-request pipeline is one send. */
#define OUT_MAX (64 * 1024)
/* Received bytes buffered while a response is in flight before reading pauses; a head that
 * fits HTTP_MAX_HEADER plus one receive always fits. */
#define IN_SOFT (HTTP_MAX_HEADER + 4096)
/* sendfile bytes per operation: each completion is a progress point for the send timeout. */
#define FILE_CHUNK (512 * 1024)
/* The timeout check runs this often: one timer per thread instead of one per connection, so a
 * request costs no timer re-arm (on io_uring that would be a TIMEOUT_REMOVE + TIMEOUT per
 * request); every connection's deadline is "now + --timeout", so a list in arrival order is
 * also in deadline order and the check only looks at its head. Precision: 100 ms. */
#define TICK_S 0.1

/* ---- configuration (read-only once the workers run) ----------------------------------------- */

static struct {
    const char *root;
    char root_real[PATH_MAX];
    int root_fd;
    double timeout;
    bool quiet;
    char server_hdr[64]; /* "Server: rshttpd/x.y.z\r\n" */
    size_t server_hdr_len;
} cfg = { .root = ".", .root_fd = -1, .timeout = 10.0 };

/* openat2 missing (ENOSYS): the realpath-prefix fallback is used from then on */
static volatile int no_openat2;

/* ---- per-thread state ------------------------------------------------------------------------ */

struct centry {
    char *key;  /* decoded request path, "/"-suffixed for directory requests; NULL = empty slot */
    char *file; /* the file served, relative to the root (for revalidation) */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
    char *body;
    char hdr[192]; /* Content-Type, Content-Length, Last-Modified lines */
    size_t hdr_len;
    time_t mtime;
};

struct hconn;

struct worker {
    int index;
    rs_loop *loop;
    rs_timer *tick;
    bool ticking, stopping;
    int error;
    struct hconn *all;               /* every open connection (doubly linked) */
    struct hconn *dl_head, *dl_tail; /* the same connections, by deadline */
    time_t date_t;
    char date[30];
    struct centry cache[CACHE_SLOTS];
};

struct hconn {
    rs_conn *c;
    struct worker *w;
    struct hconn *prev, *next;   /* w->all */
    struct hconn *dprev, *dnext; /* w->dl_*: every conn is on it until it closes */
    double deadline;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
    bool out_busy; /* out is being sent: nothing is appended until it completes */
    int file_fd;   /* a large body being sent, or -1 */
    off_t file_off;
    size_t file_left;
    bool file_busy;   /* a sendfile chunk is in flight */
    bool close_after; /* no more requests: close once everything queued is sent */
    bool lingering;   /* our side shut down; discarding input until EOF or the deadline */
    bool peer_eof;
    bool read_paused;
    bool closing;
};

static struct worker *workers;

/* ---- messages --------------------------------------------------------------------------------- */

static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s\n", line);
}

static int usage_error(const char *fmt, ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s (try '" PROG " --help')\n", line);
    return 2;
}

static double now_s(void)
{
    struct timespec ts;
    /* the coarse clock is a vDSO read with no hardware counter access; 4 ms resolution is plenty
     * for deadlines checked every 100 ms */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- opening files beneath the root ----------------------------------------------------------- */

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) /* NONBLOCK: a FIFO must not hang us */

/* Fallback without openat2: open, then check where the fd really is (/proc/self/fd) against the
 * root's realpath. Checking the opened fd, not the name, leaves no window for a swapped symlink. */
static int open_checked(int dirfd, const char *path)
{
    int fd = openat(dirfd, path, OPEN_FLAGS);
    if (fd < 0)
        return -errno;
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    real[n] = '\0';
    size_t rl = strlen(cfg.root_real);
    bool inside = strncmp(real, cfg.root_real, rl) == 0 &&
                  (real[rl] == '\0' || real[rl] == '/' || (rl == 1 && cfg.root_real[0] == '/'));
    if (!inside) {
        close(fd);
        return -EXDEV;
    }
    return fd;
}

/* path (relative, no "..") beneath dirfd, which is the root or a directory opened beneath it. */
static int open_beneath(int dirfd, const char *path)
{
    if (!no_openat2) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = OPEN_FLAGS;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
        no_openat2 = 1;
    }
    return open_checked(dirfd, path);
}

static int status_of_errno(int e)
{
    switch (e) {
    case -ENOENT:
    case -ENOTDIR: return 404;
    case -EXDEV: /* RESOLVE_BENEATH: the path (through a symlink) leaves the root */
    case -ELOOP:
    case -EACCES:
    case -EPERM: return 403;
    case -ENAMETOOLONG: return 414;
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM: return 503;
    default: return 500;
    }
}

/* ---- content types ---------------------------------------------------------------------------- */

static const struct {
    const char *ext, *type;
} types[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "txt", "text/plain; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "svg", "image/svg+xml" },
    { "pdf", "application/pdf" },
    { "wasm", "application/wasm" },
};

static const char *content_type(const char *file)
{
    const char *slash = strrchr(file, '/');
    const char *dot = strrchr(slash ? slash + 1 : file, '.');
    if (dot) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

/* ---- the per-thread file cache ---------------------------------------------------------------- */

/* Why a cache: a hit costs one fstatat (revalidation) instead of openat2 + fstat + read + close.
 * Why revalidate every time: an edited file is served fresh at once, like a server without a
 * cache. Safety: the cached bytes were read through open_beneath; fstatat only decides whether
 * they are still the same file (device, inode, size, mtime, ctime all equal). If the path now
 * resolves elsewhere (a symlink swapped to point outside) the inode differs, the entry is
 * dropped and the slow path's openat2 judges the new target. */

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static void centry_clear(struct centry *e)
{
    free(e->key);
    free(e->file);
    free(e->body);
    memset(e, 0, sizeof *e);
}

static bool same_file(const struct centry *e, const struct stat *st)
{
    return st->st_dev == e->dev && st->st_ino == e->ino && st->st_size == e->size &&
           st->st_mtim.tv_sec == e->mtim.tv_sec && st->st_mtim.tv_nsec == e->mtim.tv_nsec &&
           st->st_ctim.tv_sec == e->ctim.tv_sec && st->st_ctim.tv_nsec == e->ctim.tv_nsec;
}

/* What a request resolved to: a cached small file, a large file's fd, or an error status. */
struct found {
    int status;       /* 200, or an error status */
    struct centry *e; /* small: the cache entry (valid until the next lookup) */
    int fd;           /* large: the open file (the caller closes it) */
    struct stat st;
    char hdr[192];
    size_t hdr_len;
};

static size_t entity_headers(char *out, size_t cap, const char *file, off_t size, time_t mtime)
{
    char date[30];
    http_date(mtime, date);
    int n = snprintf(out, cap, "Content-Type: %s\r\nContent-Length: %lld\r\nLast-Modified: %s\r\n",
                     content_type(file), (long long)size, date);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void lookup(struct worker *w, const char *path, size_t plen, bool dir, struct found *f)
{
    f->status = 200;
    f->e = NULL;
    f->fd = -1;
    char key[HTTP_MAX_PATH + 2];
    memcpy(key, path, plen);
    size_t klen = plen;
    if (dir)
        key[klen++] = '/';
    key[klen] = '\0';
    struct centry *e = &w->cache[hash_str(key, klen) % CACHE_SLOTS];
    if (e->key && strcmp(e->key, key) == 0) {
        struct stat st;
        if (fstatat(cfg.root_fd, e->file, &st, 0) == 0 && same_file(e, &st)) {
            f->e = e;
            return;
        }
        centry_clear(e);
    }

    int fd = open_beneath(cfg.root_fd, plen ? path : ".");
    if (fd < 0) {
        f->status = status_of_errno(fd);
        return;
    }
    char file[HTTP_MAX_PATH + 16];
    snprintf(file, sizeof file, "%s", plen ? path : "");
    if (fstat(fd, &f->st) < 0) {
        f->status = 500;
        close(fd);
        return;
    }
    if (S_ISDIR(f->st.st_mode)) {
        int fd2 = open_beneath(fd, "index.html");
        close(fd);
        if (fd2 < 0) {
            f->status = fd2 == -ENOENT ? 404 : status_of_errno(fd2);
            return;
        }
        fd = fd2;
        snprintf(file, sizeof file, "%s%sindex.html", path, plen ? "/" : "");
        if (fstat(fd, &f->st) < 0) {
            f->status = 500;
            close(fd);
            return;
        }
    } else if (dir) {
        close(fd); /* "/file.txt/": not a directory */
        f->status = 404;
        return;
    }
    if (!S_ISREG(f->st.st_mode)) {
        close(fd);
        f->status = 403;
        return;
    }
    if (f->st.st_size > SMALL_FILE) {
        f->fd = fd;
        f->hdr_len = entity_headers(f->hdr, sizeof f->hdr, file, f->st.st_size, f->st.st_mtim.tv_sec);
        return;
    }
    /* small: read it whole into a fresh entry */
    size_t size = (size_t)f->st.st_size;
    char *body = malloc(size ? size : 1);
    char *k = strdup(key), *fl = strdup(file[0] ? file : ".");
    size_t got = 0;
    while (body && got < size) {
        ssize_t n = pread(fd, body + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!body || !k || !fl || got != size) {
        free(body);
        free(k);
        free(fl);
        f->status = body && k && fl ? 500 : 503; /* shrank under us, or out of memory */
        return;
    }
    e->key = k;
    e->file = fl;
    e->dev = f->st.st_dev;
    e->ino = f->st.st_ino;
    e->size = f->st.st_size;
    e->mtim = f->st.st_mtim;
    e->ctim = f->st.st_ctim;
    e->mtime = f->st.st_mtim.tv_sec;
    e->body = body;
    e->hdr_len = entity_headers(e->hdr, sizeof e->hdr, fl, e->size, e->mtime);
    f->e = e;
}

static void cache_free(struct worker *w)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        centry_clear(&w->cache[i]);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void run(struct hconn *h);
static void on_read(rs_conn *c, ssize_t n, const void *data, void *user);

static void dl_remove(struct hconn *h)
{
    struct worker *w = h->w;
    if (h->dprev)
        h->dprev->dnext = h->dnext;
    else if (w->dl_head == h)
        w->dl_head = h->dnext;
    if (h->dnext)
        h->dnext->dprev = h->dprev;
    else if (w->dl_tail == h)
        w->dl_tail = h->dprev;
    h->dprev = h->dnext = NULL;
}

/* Restart h's clock: a request head (or the rest of a send) now has --timeout seconds. */
static void touch(struct hconn *h)
{
    struct worker *w = h->w;
    h->deadline = now_s() + cfg.timeout;
    if (w->dl_tail == h)
        return;
    dl_remove(h);
    h->dprev = w->dl_tail;
    if (w->dl_tail)
        w->dl_tail->dnext = h;
    else
        w->dl_head = h;
    w->dl_tail = h;
}

static void on_closed(rs_conn *c, void *user)
{
    (void)c;
    struct hconn *h = user;
    if (h->file_fd >= 0)
        close(h->file_fd);
    free(h->in);
    free(h->out);
    free(h);
}

static void conn_close(struct hconn *h)
{
    if (h->closing)
        return;
    h->closing = true;
    struct worker *w = h->w;
    dl_remove(h);
    if (h->prev)
        h->prev->next = h->next;
    else
        w->all = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
    if (rs_conn_close(h->c, on_closed, h) < 0)
        on_closed(h->c, h);
}

/* Make room for n more bytes of output. */
static bool out_reserve(struct hconn *h, size_t n)
{
    if (h->out_len + n <= h->out_cap)
        return true;
    size_t cap = h->out_cap ? h->out_cap : 4096;
    while (cap < h->out_len + n)
        cap *= 2;
    char *p = realloc(h->out, cap);
    if (!p)
        return false;
    h->out = p;
    h->out_cap = cap;
    return true;
}

static void out_put(struct hconn *h, const void *p, size_t n)
{
    memcpy(h->out + h->out_len, p, n);
    h->out_len += n;
}

static const char *current_date(struct worker *w)
{
    time_t t = time(NULL);
    if (t != w->date_t) {
        w->date_t = t;
        http_date(t, w->date);
    }
    return w->date;
}

/* Status line, Server, Date. */
static void put_common(struct hconn *h, int status)
{
    if (status == 200) { /* the common case without snprintf (about 1% of CPU per request in perf) */
        out_put(h, "HTTP/1.1 200 OK\r\n", 17);
    } else {
        char line[64];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
        out_put(h, line, (size_t)n);
    }
    out_put(h, cfg.server_hdr, cfg.server_hdr_len);
    out_put(h, "Date: ", 6);
    out_put(h, current_date(h->w), 29);
    out_put(h, "\r\n", 2);
}

static void put_connection(struct hconn *h, const struct http_req *req)
{
    if (h->close_after)
        out_put(h, "Connection: close\r\n\r\n", 21);
    else if (req && req->minor == 0)
        out_put(h, "Connection: keep-alive\r\n\r\n", 26);
    else
        out_put(h, "\r\n", 2);
}

/* An error response with a one-line text body; close: the stream cannot go on after it. */
static void error_response(struct hconn *h, int status, const struct http_req *req, bool close)
{
    if (close || (req && !req->keep_alive))
        h->close_after = true;
    char body[96];
    int blen = snprintf(body, sizeof body, "%d %s\n", status, http_reason(status));
    if (!out_reserve(h, 512 + (size_t)blen)) {
        conn_close(h);
        return;
    }
    put_common(h, status);
    if (status == 405)
        out_put(h, "Allow: GET, HEAD\r\n", 18);
    char hdr[96];
    int n =
        snprintf(hdr, sizeof hdr, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n", blen);
    out_put(h, hdr, (size_t)n);
    put_connection(h, req);
    if (!req || req->method != HTTP_HEAD)
        out_put(h, body, (size_t)blen);
}

static void respond(struct hconn *h, const struct http_req *req)
{
    if (req->method == HTTP_OTHER) {
        /* the body (if any) is not read, so the stream ends here when there is one */
        error_response(h, 405, req, req->has_body);
        return;
    }
    if (req->has_body) {
        error_response(h, 413, req, true); /* GET/HEAD take no body: refused, not skipped */
        return;
    }
    char path[HTTP_MAX_PATH + 1];
    bool dir;
    int plen = http_target_path(req->target, req->target_len, path, sizeof path, &dir);
    if (plen < 0) {
        error_response(h, -plen, req, false);
        return;
    }
    struct found f;
    lookup(h->w, path, (size_t)plen, dir, &f);
    if (f.status != 200) {
        error_response(h, f.status, req, f.status >= 500);
        return;
    }
    if (!req->keep_alive)
        h->close_after = true;
    const char *ehdr = f.e ? f.e->hdr : f.hdr;
    size_t ehdr_len = f.e ? f.e->hdr_len : f.hdr_len;
    time_t mtime = f.e ? f.e->mtime : f.st.st_mtim.tv_sec;
    off_t size = f.e ? f.e->size : f.st.st_size;
    bool not_modified = req->has_ims && mtime <= req->ims;
    bool body_in_out = f.e && req->method == HTTP_GET && !not_modified;
    if (!out_reserve(h, 256 + ehdr_len + (body_in_out ? (size_t)size : 0))) {
        if (f.fd >= 0)
            close(f.fd);
        conn_close(h);
        return;
    }
    if (not_modified) {
        /* 304: no Content-Type/Length (RFC 9110 15.4.5 lets them go), Last-Modified kept */
        put_common(h, 304);
        char lm[64];
        char date[30];
        http_date(mtime, date);
        int n = snprintf(lm, sizeof lm, "Last-Modified: %s\r\n", date);
        out_put(h, lm, (size_t)n);
    } else {
        put_common(h, 200);
        out_put(h, ehdr, ehdr_len);
    }
    put_connection(h, req);
    if (body_in_out) {
        out_put(h, f.e->body, (size_t)size);
    } else if (f.fd >= 0 && req->method == HTTP_GET && !not_modified) {
        h->file_fd = f.fd;
        h->file_off = 0;
        h->file_left = (size_t)size;
        return;
    }
    if (f.fd >= 0)
        close(f.fd);
}

static void on_out_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct hconn *h = user;
    h->out_busy = false;
    h->out_len = 0;
    if (h->closing)
        return;
    if (status < 0) {
        conn_close(h);
        return;
    }
    touch(h);
    run(h);
}

static void file_next(struct hconn *h);

static void on_file_sent(rs_conn *c, ssize_t status, void *user)
{
    (void)c;
    struct hconn *h = user;
    h->file_busy = false;
    if (h->closing)
        return; /* the fd is closed with the conn (on_closed) */
    size_t want = h->file_left < FILE_CHUNK ? h->file_left : FILE_CHUNK;
    if (status < 0 || (size_t)status < want) {
        /* an error, or the file shrank: the promised Content-Length cannot be kept */
        conn_close(h);
        return;
    }
    h->file_off += status;
    h->file_left -= (size_t)status;
    touch(h);
    if (h->file_left)
        file_next(h);
    else {
        close(h->file_fd);
        h->file_fd = -1;
        run(h);
    }
}

static void file_next(struct hconn *h)
{
    size_t n = h->file_left < FILE_CHUNK ? h->file_left : FILE_CHUNK;
    int r = rs_conn_sendfile(h->c, h->file_fd, h->file_off, n, on_file_sent, h);
    if (r < 0)
        conn_close(h);
    else
        h->file_busy = true;
}

/* Answer what can be answered, send it, and decide what the connection does next.
 * Back-pressure: a connection has at most one gathered send (about OUT_MAX) or one sendfile step
 * (FILE_CHUNK) queued, and parses nothing more until it completes, so rs_conn_send_pending stays
 * below RS_CONN_SEND_HIGH by construction; a client that stops reading stalls only its own
 * connection, and reading pauses once IN_SOFT bytes wait. */
static void run(struct hconn *h)
{
    if (h->closing)
        return;
    size_t off = 0;
    while (!h->close_after && !h->out_busy && h->file_fd < 0 && off < h->in_len) {
        if (h->out_len && h->out_len + SMALL_FILE + 1024 > OUT_MAX)
            break; /* send what is gathered; the rest waits for its completion */
        struct http_req req;
        int r = http_parse_request(h->in + off, h->in_len - off, &req);
        if (r == 0)
            break;
        if (r < 0) {
            error_response(h, -r, NULL, true);
            break;
        }
        off += (size_t)r;
        respond(h, &req);
        if (h->closing)
            return;
    }
    if (off) {
        memmove(h->in, h->in + off, h->in_len - off);
        h->in_len -= off;
    }
    if (h->out_len && !h->out_busy) {
        int r = rs_conn_send(h->c, h->out, h->out_len, on_out_sent, h);
        if (r < 0) {
            conn_close(h);
            return;
        }
        h->out_busy = true;
    }
    if (h->file_fd >= 0 && !h->file_busy) {
        file_next(h);
        if (h->closing)
            return;
    }
    bool idle = !h->out_busy && h->file_fd < 0;
    if (idle && h->peer_eof) {
        conn_close(h); /* nothing more can arrive: a partial request stays unanswered */
        return;
    }
    if (idle && h->close_after && !h->lingering) {
        /* Lingering close: shut our side, then read and drop whatever the client still sends
         * until its EOF or the deadline. Closing with unread input would reset the connection,
         * and a reset can destroy the response before the client reads it. */
        h->lingering = true;
        h->in_len = 0;
        shutdown(rs_conn_fd(h->c), SHUT_WR);
        touch(h);
    }
    if (h->peer_eof)
        return; /* reading has ended for good */
    bool want_read = h->lingering || h->in_len < IN_SOFT;
    if (want_read && h->read_paused) {
        if (rs_conn_read_start(h->c, on_read, h) < 0) {
            conn_close(h);
            return;
        }
        h->read_paused = false;
    } else if (!want_read && !h->read_paused) {
        rs_conn_read_stop(h->c); /* bounded buffering while a response is in flight */
        h->read_paused = true;
    }
}

static void on_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    (void)c;
    struct hconn *h = user;
    if (h->closing)
        return;
    if (n < 0) {
        conn_close(h);
        return;
    }
    if (n == 0) {
        h->peer_eof = true;
        if (h->lingering) {
            conn_close(h);
            return;
        }
        run(h);
        return;
    }
    if (h->close_after)
        return; /* input after the last request we answer is dropped */
    if (h->in_len + (size_t)n > h->in_cap) {
        size_t cap = h->in_cap ? h->in_cap : 4096;
        while (cap < h->in_len + (size_t)n)
            cap *= 2;
        char *p = cap <= 4 * IN_SOFT + RS_CONN_SEND_HIGH ? realloc(h->in, cap) : NULL;
        if (!p) {
            conn_close(h);
            return;
        }
        h->in = p;
        h->in_cap = cap;
    }
    memcpy(h->in + h->in_len, data, (size_t)n);
    h->in_len += (size_t)n;
    run(h);
}

static void tick_start(struct worker *w);

static void on_tick(rs_timer *t, int status, void *user)
{
    struct worker *w = user;
    w->ticking = false;
    if (status < 0 || w->stopping) {
        rs_timer_free(t);
        w->tick = NULL;
        return;
    }
    double now = now_s();
    while (w->dl_head && w->dl_head->deadline <= now)
        conn_close(w->dl_head); /* silently: a slow or idle client gets no 408, just the FIN */
    if (w->all)
        tick_start(w);
}

static void tick_start(struct worker *w)
{
    if (w->ticking || w->stopping || !w->tick)
        return;
    if (rs_timer_start(w->tick, TICK_S, on_tick, w) == 0)
        w->ticking = true;
}

static void on_accept(rs_conn *l, rs_conn *c, int status, void *user)
{
    (void)l;
    struct worker *w = user;
    if (status < 0) {
        if (!cfg.quiet)
            say("accept: %s", rs_strerror(status));
        return;
    }
    struct hconn *h = calloc(1, sizeof *h);
    if (!h) {
        rs_conn_close(c, NULL, NULL);
        return;
    }
    h->c = c;
    h->w = w;
    h->file_fd = -1;
    int one = 1;
    /* a response is one send already; Nagle would only hold back the tail of a large one */
    setsockopt(rs_conn_fd(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h->next = w->all;
    if (w->all)
        w->all->prev = h;
    w->all = h;
    touch(h);
    tick_start(w);
    if (rs_conn_read_start(c, on_read, h) < 0)
        conn_close(h);
}

static void on_start(rs_loop *loop, rs_conn *listener, int index, void *user)
{
    (void)user;
    struct worker *w = &workers[index];
    w->index = index;
    w->loop = loop;
    int r = rs_timer_new(&w->tick, loop);
    if (r == 0)
        r = rs_conn_accept_start(listener, on_accept, w);
    w->error = r;
}

static void on_stop(rs_loop *loop, int index, void *user)
{
    (void)loop;
    (void)user;
    struct worker *w = &workers[index];
    w->stopping = true;
    while (w->all)
        conn_close(w->all);
    if (w->tick) {
        if (w->ticking)
            rs_timer_stop(w->tick); /* on_tick frees it */
        else {
            rs_timer_free(w->tick);
            w->tick = NULL;
        }
    }
    cache_free(w); /* safe: responses copy small bodies, nothing in flight points into the cache */
}

/* ---- main ---------------------------------------------------------------------------------------- */

static void help(void)
{
    printf("usage: " PROG " [--root DIR] [--host H] [--port P] [--threads N] [--backend B] [-4|-6]\n"
           "               [--timeout S] [--quiet]\n"
           "       " PROG " --help | --version\n"
           "Serve the files under DIR over HTTP/1.1 (GET and HEAD, keep-alive, pipelining).\n"
           "  --root DIR     directory to serve (default: the current directory)\n"
           "  --host H       address to listen on (default 127.0.0.1, ::1 with -6)\n"
           "  --port P       port (default 8080; 0 = any free port, printed at startup)\n"
           "  --threads N    worker threads, each with its own loop and SO_REUSEPORT listener\n"
           "                 (default 1; 0 = one per online CPU)\n"
           "  --backend B    uring, epoll, poll or auto (default auto: RINGSOCK_BACKEND, else the best)\n"
           "  -4, -6         IPv4 (default) or IPv6\n"
           "  --timeout S    seconds a client has to send a request head, idle keep-alive time and\n"
           "                 the longest wait for send progress (default 10)\n"
           "  --quiet        print nothing but the 'listening on' line and fatal errors\n"
           "  -h, --help     this help\n"
           "  -V, --version  the version\n"
           "Stops cleanly on SIGINT or SIGTERM. Exit status: 0 stopped by a signal, 1 could not start,\n"
           "2 bad arguments.\n");
}

struct opts {
    const char *host, *port;
    int threads, backend, family;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        { "root", required_argument, NULL, 'r' },    { "host", required_argument, NULL, 'H' },
        { "port", required_argument, NULL, 'p' },    { "threads", required_argument, NULL, 't' },
        { "backend", required_argument, NULL, 'b' }, { "timeout", required_argument, NULL, 'T' },
        { "quiet", no_argument, NULL, 'q' },         { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },       { NULL, 0, NULL, 0 },
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":46hV", lo, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'r': cfg.root = optarg; break;
        case 'H': o->host = optarg; break;
        case 'p': {
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 65535)
                return usage_error("--port wants 0-65535, not '%s'", optarg);
            o->port = optarg;
            break;
        }
        case 't': {
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 1024)
                return usage_error("--threads wants 0-1024, not '%s'", optarg);
            o->threads = (int)v;
            break;
        }
        case 'b': {
            int b = RS_BACKEND_AUTO;
            while (b <= RS_BACKEND_POLL && strcmp(optarg, rs_backend_name(b)) != 0)
                b++;
            if (b > RS_BACKEND_POLL)
                return usage_error("--backend wants uring, epoll, poll or auto, not '%s'", optarg);
            o->backend = b;
            break;
        }
        case 'T': {
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(v > 0) || v > 86400)
                return usage_error("--timeout wants seconds in (0, 86400], not '%s'", optarg);
            cfg.timeout = v;
            break;
        }
        case 'q': cfg.quiet = true; break;
        case '4': o->family = AF_INET; break;
        case '6': o->family = AF_INET6; break;
        case 'h': help(); return 0;
        case 'V': printf(PROG " (ringsock) %s\n", rs_version_string()); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt)
                return usage_error("unknown option '-%c'", optopt);
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return -1;
}

int main(int argc, char **argv)
{
    struct opts o = { .host = NULL, .port = "8080", .threads = 1, .backend = RS_BACKEND_AUTO, .family = 0 };
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (!o.family)
        o.family = o.host && strchr(o.host, ':') ? AF_INET6 : AF_INET;
    if (!o.host)
        o.host = o.family == AF_INET6 ? "::1" : "127.0.0.1";

    cfg.root_fd = open(cfg.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cfg.root_fd < 0 || !realpath(cfg.root, cfg.root_real)) {
        say("--root %s: %s", cfg.root, strerror(errno));
        if (cfg.root_fd >= 0)
            close(cfg.root_fd);
        return 1;
    }
    /* tests run the escape checks on the fallback as well (kernels before 5.6 have no openat2) */
    const char *fb = getenv("RSHTTPD_NO_OPENAT2");
    if (fb && strcmp(fb, "1") == 0)
        no_openat2 = 1;
    int n = snprintf(cfg.server_hdr, sizeof cfg.server_hdr, "Server: " PROG "/%s\r\n", rs_version_string());
    cfg.server_hdr_len = (size_t)n;

    /* the workers inherit this mask: only the main thread's sigwait sees SIGINT/SIGTERM */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* no SIGPIPE handling needed: the library never raises it (docs/api.md) */

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = o.threads ? o.threads : (int)(cpus > 0 ? cpus : 1);
    workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) {
        say("out of memory");
        close(cfg.root_fd);
        return 1;
    }
    struct rs_serve_opts so = RS_SERVE_OPTS_INIT;
    so.threads = threads;
    so.host = o.host;
    so.port = o.port;
    so.family = o.family;
    so.loop.backend = o.backend;
    so.on_start = on_start;
    so.on_stop = on_stop;
    rs_serve *sv;
    int r = rs_serve_start(&sv, &so);
    for (int i = 0; r == 0 && i < threads; i++)
        if (workers[i].error < 0) {
            r = workers[i].error;
            rs_serve_stop(sv);
        }
    if (r < 0) {
        say("cannot serve on %s port %s: %s", o.host, o.port, rs_strerror(r));
        free(workers);
        close(cfg.root_fd);
        return 1;
    }
    int port = rs_serve_port(sv);
    if (o.family == AF_INET6)
        printf("listening on [%s]:%d\n", o.host, port);
    else
        printf("listening on %s:%d\n", o.host, port);
    if (!cfg.quiet)
        printf("backend %s, %d thread%s, root %s, timeout %g s\n",
               rs_backend_name(rs_loop_backend(workers[0].loop)), threads, threads == 1 ? "" : "s",
               cfg.root_real, cfg.timeout);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    rs_serve_stop(sv);
    if (!cfg.quiet)
        say("stopped by %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    free(workers);
    close(cfg.root_fd);
    return 0;
}
