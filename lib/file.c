/* socket.makefile(): a buffered reader and writer over a socket (BufferedReader / BufferedWriter /
 * BufferedRWPair over SocketIO), with the buffers in the loop's registered fixed buffers. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ringsock/file.h"
#include "ringsock/loop.h"
#include "bufpool_i.h"
#include "loop_i.h"
#include "socket_i.h"
#include "export_i.h"

/* 64 KiB: best of 8/16/64/256 KiB in bench/readline (docs/performance.md); 8 KiB (Python's
 * io.DEFAULT_BUFFER_SIZE) costs eight receives where one would do on a busy connection. */
#define DEFAULT_BUFSIZE (64 * 1024)
/* What one unbuffered peek looks at. */
#define PEEK_SCRATCH 4096

struct rs_file {
    rs_socket *sock; /* one reference held (rs__sock_hold) until rs_file_close */
    bool readable, writable;
    bool line;      /* flush at each '\n' written (buffering 1) */
    bool no_fixed;  /* RINGSOCK_NO_FIXED=1: plain operations even where fixed buffers exist */
    size_t bufsize; /* 0: unbuffered */
    /* Reader and writer share nothing mutable, so one thread may read while another writes
     * (BufferedRWPair's two locks; here: two independent halves). */
    struct rs_buf rbuf; /* made on first read; unbuffered files use it only for peek */
    size_t rpos, rend;  /* unread bytes are rbuf.mem[rpos, rend) */
    bool timed_out;     /* a receive timed out: every later read is -EIO (SocketIO's rule) */
    struct rs_buf wbuf; /* made on first buffered write */
    size_t wlen;        /* buffered, unsent bytes are wbuf.mem[0, wlen) */
};

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* mode: r, w, rw/wr, each letter at most once, plus an optional b anywhere (makefile's rule:
 * only r, w and b). Anything else (t, x, +, a, "", NULL) is refused. */
static bool parse_mode(const char *mode, bool *rd, bool *wr)
{
    if (!mode || !*mode)
        return false;
    int r = 0, w = 0, b = 0;
    for (const char *p = mode; *p; p++) {
        switch (*p) {
        case 'r': r++; break;
        case 'w': w++; break;
        case 'b': b++; break;
        default: return false;
        }
    }
    if (r > 1 || w > 1 || b > 1 || r + w == 0)
        return false;
    *rd = r;
    *wr = w;
    return true;
}

static bool env_no_fixed(void)
{
    const char *e = getenv("RINGSOCK_NO_FIXED");
    return e && *e && strcmp(e, "0") != 0;
}

EXPORT int rs_makefile(rs_file **out, rs_socket *s, const char *mode, long buffering)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    bool rd, wr;
    if (!parse_mode(mode, &rd, &wr) || buffering < -1)
        return -EINVAL;
    if (!s)
        return -EBADF;
    /* Validate everything before taking the reference: CPython leaks an _io_refs increment when
     * buffering validation fails after it. */
    struct rs_file *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    if (!rs__sock_hold(s)) {
        free(f);
        return -EBADF;
    }
    f->sock = s;
    f->readable = rd;
    f->writable = wr;
    f->line = buffering == 1;
    f->bufsize = buffering == -1 || buffering == 1 ? DEFAULT_BUFSIZE : (size_t)buffering;
    f->no_fixed = env_no_fixed();
    f->rbuf.index = f->wbuf.index = -1;
    *out = f;
    return 0;
}

/* ---- one operation on the socket ---------------------------------------------------------- */

/* Flushes shorter than this go by SEND (MSG_NOSIGNAL) even from a registered buffer.
 * WRITE_FIXED goes through the socket's write_iter, which cannot take MSG_NOSIGNAL: a peer that
 * has gone raises SIGPIPE (measured: the process dies), so it needs the engine's SIGPIPE guard
 * (lib/loop.c), two sigprocmask calls. Measured with 100-byte line-buffered flushes: 3 syscalls and +35 % CPU
 * per line against SEND's 1; with 64 KiB flushes the guard is lost in the noise and WRITE_FIXED
 * and SEND are at parity (docs/performance.md). (io_uring's SEND refuses fixed buffers on 6.18,
 * -EINVAL; SEND_ZC takes them but loses on loopback, bench/zc-threshold.) */
#define FIXED_WRITE_MIN (16 * 1024)

/* One receive (tx false) or send on f's socket with the socket's timeout, from/into p. b is the
 * file buffer p lies in, or NULL for the caller's memory: a buffer registered with the calling
 * thread's loop goes by READ_FIXED / WRITE_FIXED, anything else by plain RECV / SEND on the same
 * memory. The socket may have been rs_close'd: the file's reference keeps the fd open. */
static ssize_t xfer(rs_file *f, bool tx, const struct rs_buf *b, void *p, size_t len, int flags)
{
    struct rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0)
        return r;
    int idx =
        b && !flags && !f->no_fixed && (!tx || len >= FIXED_WRITE_MIN) ? rs__buf_fixed_index(b, loop) : -1;
    int kind = tx ? (idx >= 0 ? RS_OP_WRITE_FIXED : RS_OP_SEND) : (idx >= 0 ? RS_OP_READ_FIXED : RS_OP_RECV);
    struct rs_op op;
    rs__sock_op(&op, f->sock, kind, rs__sock_deadline(f->sock));
    op.u.io.buf = p;
    op.u.io.len = min_sz(len, RS_MAX_IO);
    op.flags = flags;
    op.buf_index = idx >= 0 ? (uint16_t)idx : 0;
    return rs__loop_exec(loop, &op);
}

/* A receive for a read call: a timeout poisons the file's reading side (bpo-7322: what the
 * failed call had already taken is gone, so later reads could not be trusted). */
static ssize_t rx(rs_file *f, const struct rs_buf *b, void *p, size_t len, int flags)
{
    ssize_t r = xfer(f, false, b, p, len, flags);
    if (r == -ETIMEDOUT)
        f->timed_out = true;
    return r;
}

/* ---- reading -------------------------------------------------------------------------------- */

static int read_check(rs_file *f)
{
    if (!f || !f->readable)
        return -EBADF;
    return f->timed_out ? -EIO : 0;
}

/* pooled: registered with the calling thread's loop where it can be (a file buffer); the
 * unbuffered peek's scratch page only ever sees MSG_PEEK receives and takes no pool slot. */
static int rbuf_ensure(rs_file *f, size_t size, bool pooled)
{
    if (f->rbuf.mem)
        return 0;
    struct rs_loop *loop = NULL;
    if (pooled && !f->no_fixed) {
        int r = rs_loop_default(&loop);
        if (r < 0)
            return r;
    }
    return rs__buf_get(loop, size, &f->rbuf);
}

/* One receive into the (empty) buffer. >0 bytes now buffered, 0 EOF, or an error. */
static ssize_t fill(rs_file *f)
{
    int e = rbuf_ensure(f, f->bufsize, true);
    if (e < 0)
        return e;
    f->rpos = f->rend = 0;
    ssize_t r = rx(f, &f->rbuf, f->rbuf.mem, f->bufsize, 0);
    if (r > 0)
        f->rend = (size_t)r;
    return r;
}

static size_t take(rs_file *f, void *dst, size_t n)
{
    size_t k = min_sz(n, f->rend - f->rpos);
    memcpy(dst, (char *)f->rbuf.mem + f->rpos, k);
    f->rpos += k;
    return k;
}

/* What a read call returns when a receive ended it: the bytes it got, except after a timeout
 * (then the error: the file is poisoned and those bytes are lost, as in SocketIO). */
static ssize_t partial(size_t got, ssize_t err)
{
    if (err == -ETIMEDOUT || got == 0)
        return err;
    return (ssize_t)got;
}

EXPORT ssize_t rs_file_read(rs_file *f, void *buf, size_t n)
{
    int e = read_check(f);
    if (e < 0)
        return e;
    if (!buf && n)
        return -EFAULT;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    char *dst = buf;
    size_t got = f->rpos < f->rend ? take(f, dst, n) : 0;
    while (got < n) {
        size_t want = n - got;
        ssize_t r;
        if (want >= f->bufsize) {
            /* BufferedReader: what the buffer cannot hold goes straight to the caller. */
            r = rx(f, NULL, dst + got, want, 0);
            if (r > 0)
                got += (size_t)r;
        } else {
            r = fill(f);
            if (r > 0)
                got += take(f, dst + got, want);
        }
        if (r == 0)
            break;
        if (r < 0)
            return partial(got, r);
    }
    return (ssize_t)got;
}

EXPORT ssize_t rs_file_read1(rs_file *f, void *buf, size_t n)
{
    int e = read_check(f);
    if (e < 0)
        return e;
    if (!buf && n)
        return -EFAULT;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (f->rpos < f->rend)
        return (ssize_t)take(f, buf, n);
    if (n >= f->bufsize)
        return rx(f, NULL, buf, n, 0);
    ssize_t r = fill(f);
    return r > 0 ? (ssize_t)take(f, buf, n) : r;
}

/* Unbuffered readline: peek, then take exactly through the '\n', so the socket keeps the rest
 * for whoever reads next (a second file, rs_recv). Two receives per line where SocketIO's
 * readline (RawIOBase: read(1) until '\n') makes one per byte. */
static ssize_t readline_raw(rs_file *f, char *dst, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = rx(f, NULL, dst + got, cap - got, MSG_PEEK);
        if (r <= 0)
            return r == 0 ? (ssize_t)got : partial(got, r);
        char *nl = memchr(dst + got, '\n', (size_t)r);
        size_t k = nl ? (size_t)(nl - (dst + got)) + 1 : (size_t)r;
        /* those k bytes are in the socket's queue: receive them for real (same bytes, same place) */
        size_t end = got + k;
        while (got < end) {
            ssize_t t = rx(f, NULL, dst + got, end - got, 0);
            if (t <= 0)
                return t == 0 ? (ssize_t)got : partial(got, t);
            got += (size_t)t;
        }
        if (nl)
            break;
    }
    return (ssize_t)got;
}

EXPORT ssize_t rs_file_readline(rs_file *f, void *buf, size_t cap)
{
    int e = read_check(f);
    if (e < 0)
        return e;
    if (!buf && cap)
        return -EFAULT;
    if (cap > SSIZE_MAX)
        cap = SSIZE_MAX;
    char *dst = buf;
    if (f->bufsize == 0)
        return readline_raw(f, dst, cap);
    size_t got = 0;
    while (got < cap) {
        if (f->rpos == f->rend) {
            ssize_t r = fill(f);
            if (r == 0)
                break;
            if (r < 0)
                return partial(got, r);
        }
        const char *src = (const char *)f->rbuf.mem + f->rpos;
        size_t avail = min_sz(f->rend - f->rpos, cap - got);
        const char *nl = memchr(src, '\n', avail);
        size_t k = nl ? (size_t)(nl - src) + 1 : avail;
        memcpy(dst + got, src, k);
        f->rpos += k;
        got += k;
        if (nl)
            break;
    }
    return (ssize_t)got;
}

EXPORT ssize_t rs_file_peek(rs_file *f, const void **data)
{
    int e = read_check(f);
    if (e < 0)
        return e;
    if (!data)
        return -EFAULT;
    *data = NULL;
    if (f->bufsize == 0) {
        /* no buffer to show: look at the socket's queue without consuming it */
        e = rbuf_ensure(f, PEEK_SCRATCH, false);
        if (e < 0)
            return e;
        ssize_t r = rx(f, NULL, f->rbuf.mem, PEEK_SCRATCH, MSG_PEEK);
        if (r >= 0)
            *data = f->rbuf.mem;
        return r;
    }
    if (f->rpos == f->rend) {
        ssize_t r = fill(f);
        if (r <= 0)
            return r;
    }
    *data = (const char *)f->rbuf.mem + f->rpos;
    return (ssize_t)(f->rend - f->rpos);
}

EXPORT ssize_t rs_file_read_all(rs_file *f, void **out)
{
    if (!out)
        return -EFAULT;
    *out = NULL;
    int e = read_check(f);
    if (e < 0)
        return e;
    size_t cap = f->bufsize > 65536 ? f->bufsize : 65536, len = 0;
    char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    if (f->rpos < f->rend) {
        size_t k = f->rend - f->rpos;
        if (k > cap) {
            char *q = realloc(p, k * 2);
            if (!q) {
                free(p);
                return -ENOMEM;
            }
            p = q;
            cap = k * 2;
        }
        len = take(f, p, k);
    }
    for (;;) {
        if (cap - len < 4096) {
            if (cap > SSIZE_MAX / 2) {
                free(p);
                return -ENOMEM;
            }
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return -ENOMEM;
            }
            p = q;
            cap *= 2;
        }
        ssize_t r = rx(f, NULL, p + len, cap - len, 0);
        if (r == 0)
            break;
        if (r < 0) {
            /* non-blocking: what was there so far (Python's readall does the same) */
            if (r != -ETIMEDOUT && len > 0)
                break;
            free(p);
            return r;
        }
        len += (size_t)r;
    }
    *out = p;
    return (ssize_t)len;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* Send everything buffered. On an error the unsent bytes stay buffered, in order. */
static int flush_buf(rs_file *f)
{
    size_t off = 0;
    int r = 0;
    while (off < f->wlen) {
        ssize_t n = xfer(f, true, &f->wbuf, (char *)f->wbuf.mem + off, f->wlen - off, 0);
        if (n < 0) {
            r = (int)n;
            break;
        }
        off += (size_t)n;
    }
    if (off) {
        memmove(f->wbuf.mem, (char *)f->wbuf.mem + off, f->wlen - off);
        f->wlen -= off;
    }
    return r;
}

static int wbuf_ensure(rs_file *f)
{
    if (f->wbuf.mem)
        return 0;
    struct rs_loop *loop;
    int r = rs_loop_default(&loop);
    if (r < 0)
        return r;
    return rs__buf_get(f->no_fixed ? NULL : loop, f->bufsize, &f->wbuf);
}

/* Send n bytes of the caller's memory directly; the count sent, or the error if none was. */
static ssize_t send_direct(rs_file *f, const char *src, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = xfer(f, true, NULL, (char *)(uintptr_t)src + done, n - done, 0);
        if (r < 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

EXPORT ssize_t rs_file_write(rs_file *f, const void *buf, size_t n)
{
    if (!f || !f->writable)
        return -EBADF;
    if (!buf && n)
        return -EFAULT;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (n == 0)
        return 0;
    const char *src = buf;
    if (f->bufsize == 0)
        return send_direct(f, src, n);
    int e = wbuf_ensure(f);
    if (e < 0)
        return e;
    if (n <= f->bufsize - f->wlen) {
        memcpy((char *)f->wbuf.mem + f->wlen, src, n);
        f->wlen += n;
        if (f->line && memchr(src, '\n', n)) {
            /* the bytes are taken either way; a would-block leaves them for a later flush */
            e = flush_buf(f);
            if (e < 0 && e != -EAGAIN)
                return e;
        }
        return (ssize_t)n;
    }
    /* Does not fit: what is buffered goes first, in order (BufferedWriter). */
    e = flush_buf(f);
    if (e < 0) {
        /* Take what fits behind the unsent bytes; the error only if nothing could be taken. */
        size_t k = min_sz(n, f->bufsize - f->wlen);
        memcpy((char *)f->wbuf.mem + f->wlen, src, k);
        f->wlen += k;
        return k ? (ssize_t)k : e;
    }
    size_t done = 0;
    if (n > f->bufsize) {
        /* larger than the buffer: straight from the caller's memory, no copy */
        ssize_t r = send_direct(f, src, n);
        if (r < 0 || (size_t)r < n)
            return r;
        done = n;
    }
    memcpy(f->wbuf.mem, src + done, n - done);
    f->wlen = n - done;
    if (f->line && f->wlen && memchr(src + done, '\n', n - done)) {
        e = flush_buf(f);
        if (e < 0 && e != -EAGAIN)
            return e;
    }
    return (ssize_t)n;
}

EXPORT int rs_file_flush(rs_file *f)
{
    if (!f)
        return -EBADF;
    if (!f->writable || f->wlen == 0)
        return 0;
    return flush_buf(f);
}

EXPORT int rs_file_close(rs_file *f)
{
    if (!f)
        return 0;
    int r = f->writable ? rs_file_flush(f) : 0;
    rs__buf_put(&f->rbuf);
    rs__buf_put(&f->wbuf);
    rs__sock_drop(f->sock);
    free(f);
    return r;
}
