/* ringsock buffered files over sockets: socket.makefile() (BufferedReader / BufferedWriter /
 * BufferedRWPair over SocketIO), with the buffers in io_uring registered fixed buffers. */
#ifndef RINGSOCK_FILE_H
#define RINGSOCK_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include <ringsock/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rs_file rs_file;

/* Make a buffered file on s. mode: "r", "w", "rw" (also "wr"), each optionally with "b"; anything
 * else is -EINVAL. buffering: -1 the default size (64 KiB), 0 unbuffered (no buffer: data goes
 * straight between the socket and the caller's memory; readline never takes bytes past its
 * '\n'), 1 line-buffered writes (flush at each '\n'; Python's makefile gives a 1-byte buffer
 * here, open() gives line buffering: we follow open()), > 1 the buffer size in bytes.
 * The file holds a reference: rs_close(s) is deferred until every file on s is closed, and the
 * file goes on working meanwhile. Returns 0 and *out, -EINVAL, -EBADF, -ENOMEM.
 *
 * Every call below applies the socket's timeout to each receive/send it makes. Reads: after a
 * receive timed out (-ETIMEDOUT), every later read call on the file returns -EIO (SocketIO's
 * "cannot read from timed out object"); with timeout 0 a read that finds nothing returns
 * -EAGAIN (Python's None), one that finds some returns it. A read on a file without "r", or a
 * write without "w", is -EBADF. The reading and writing halves may be used by two threads at
 * once; each half by one thread at a time. */
int rs_makefile(rs_file **out, rs_socket *s, const char *mode, long buffering);

/* Read up to n bytes: returns n, or fewer only at EOF (0 = EOF with nothing read) or when a
 * non-blocking receive would block after some bytes. */
ssize_t rs_file_read(rs_file *f, void *buf, size_t n);
/* Read at most n bytes with at most one receive (buffered bytes first). */
ssize_t rs_file_read1(rs_file *f, void *buf, size_t n);
/* Read through '\n' (kept), cap bytes, or EOF; returns the length (0 = EOF). Never NUL-terminates. */
ssize_t rs_file_readline(rs_file *f, void *buf, size_t cap);
/* Point *data at the buffered bytes without consuming them (one receive if none are buffered).
 * Valid until the next call on f. Returns their count, 0 at EOF. */
ssize_t rs_file_peek(rs_file *f, const void **data);
/* Read everything to EOF into a malloc'd buffer *out (caller frees, even for length 0); returns
 * its length. Non-blocking: what was available, or -EAGAIN if nothing. */
ssize_t rs_file_read_all(rs_file *f, void **out);
/* Buffer (or, when larger than the buffer, send directly from buf after the buffered bytes)
 * n bytes; returns n or an error. When a non-blocking or timed-out send stops it after some
 * bytes were taken (sent or buffered), returns that count instead: bytes [0, count) will go out,
 * the rest were not taken. Unbuffered files send directly, looping over short sends. */
ssize_t rs_file_write(rs_file *f, const void *buf, size_t n);
/* Send everything buffered. On an error the unsent bytes stay buffered, in order. */
int rs_file_flush(rs_file *f);
/* Flush, release the buffers, drop the file's reference to the socket (never closes it unless
 * rs_close was already called and this was the last file). Returns the flush's error, if any. */
int rs_file_close(rs_file *f);

#ifdef __cplusplus
}
#endif
#endif
