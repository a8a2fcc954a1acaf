/* rs_strerror and rs_err_name from one table (libuv's UV_ERRNO_MAP pattern), so a name and its
 * message can never disagree. Messages are ours, not strerror(3)'s, so they are thread-safe and
 * the same on every libc. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stddef.h>

#include "ringsock/error.h"
#include "ringsock/net.h"
#include "export_i.h"

#define RS_ERRNO_MAP(X)                                         \
    X(EPERM, "operation not permitted")                         \
    X(ENOENT, "no such file or directory")                      \
    X(EINTR, "interrupted system call")                         \
    X(EIO, "input/output error")                                \
    X(EBADF, "bad file descriptor")                             \
    X(EAGAIN, "resource temporarily unavailable (would block)") \
    X(ENOMEM, "out of memory")                                  \
    X(EACCES, "permission denied")                              \
    X(EFAULT, "bad address")                                    \
    X(EBUSY, "resource busy")                                   \
    X(EEXIST, "file exists")                                    \
    X(EINVAL, "invalid argument")                               \
    X(ENFILE, "too many open files in system")                  \
    X(EMFILE, "too many open files")                            \
    X(ENOSPC, "no space left on device")                        \
    X(EPIPE, "broken pipe")                                     \
    X(ERANGE, "result out of range")                            \
    X(ENOSYS, "function not implemented")                       \
    X(ENOTSOCK, "socket operation on non-socket")               \
    X(EDESTADDRREQ, "destination address required")             \
    X(EMSGSIZE, "message too long")                             \
    X(EPROTOTYPE, "protocol wrong type for socket")             \
    X(ENOPROTOOPT, "protocol not available")                    \
    X(EPROTONOSUPPORT, "protocol not supported")                \
    X(ESOCKTNOSUPPORT, "socket type not supported")             \
    X(EOPNOTSUPP, "operation not supported")                    \
    X(EAFNOSUPPORT, "address family not supported by protocol") \
    X(EADDRINUSE, "address already in use")                     \
    X(EADDRNOTAVAIL, "cannot assign requested address")         \
    X(ENETDOWN, "network is down")                              \
    X(ENETUNREACH, "network is unreachable")                    \
    X(ECONNABORTED, "connection aborted")                       \
    X(ECONNRESET, "connection reset by peer")                   \
    X(ENOBUFS, "no buffer space available")                     \
    X(EISCONN, "socket is already connected")                   \
    X(ENOTCONN, "socket is not connected")                      \
    X(ETIMEDOUT, "timed out")                                   \
    X(ECONNREFUSED, "connection refused")                       \
    X(EHOSTUNREACH, "no route to host")                         \
    X(EALREADY, "operation already in progress")                \
    X(EINPROGRESS, "operation in progress")                     \
    X(ECANCELED, "operation canceled")                          \
    X(ETIME, "timer expired")                                   \
    X(EOVERFLOW, "value too large")                             \
    X(ESPIPE, "illegal seek")                                   \
    X(EXDEV, "invalid cross-device link")                       \
    X(ENOTDIR, "not a directory")                               \
    X(EISDIR, "is a directory")                                 \
    X(ELOOP, "too many levels of symbolic links")               \
    X(ENAMETOOLONG, "file name too long")                       \
    X(EHOSTDOWN, "host is down")                                \
    X(ESHUTDOWN, "cannot send after transport endpoint shutdown")

struct entry {
    int code;
    const char *name;
    const char *msg;
};

static const struct entry table[] = {
#define X(code, msg) { code, #code, msg },
    RS_ERRNO_MAP(X)
#undef X
};

/* clang-format 14 reflows this list differently on every run */
/* clang-format off */
#define RS_EAI_MAP(X) \
    X(EAI_BADFLAGS) X(EAI_NONAME) X(EAI_AGAIN) X(EAI_FAIL) X(EAI_FAMILY) X(EAI_SOCKTYPE) \
    X(EAI_SERVICE) X(EAI_MEMORY) X(EAI_SYSTEM) X(EAI_OVERFLOW)
/* clang-format on */

static const struct entry eai_table[] = {
#define X(code) { RS_EAI(code), #code, NULL },
    RS_EAI_MAP(X)
#ifdef EAI_NODATA
        X(EAI_NODATA)
#endif
#ifdef EAI_ADDRFAMILY
            X(EAI_ADDRFAMILY)
#endif
#undef X
};

/* The getaddrinfo code behind an RS_EAI value, or 0. */
static int eai_of(int err, const char **name)
{
    for (size_t i = 0; i < sizeof eai_table / sizeof eai_table[0]; i++) {
        if (eai_table[i].code == err) {
            *name = eai_table[i].name;
            int mag = RS_EAI_BASE - err;
            return EAI_NONAME < 0 ? -mag : mag;
        }
    }
    return 0;
}

static const struct entry *find(int err)
{
    if (err == INT_MIN)
        return NULL; /* -INT_MIN overflows */
    if (err < 0)
        err = -err;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == err)
            return &table[i];
    return NULL;
}

EXPORT const char *rs_strerror(int err)
{
    if (err == 0)
        return "success";
    const char *name;
    int eai = RS_IS_EAI(err) ? eai_of(err, &name) : 0;
    if (eai)
        return gai_strerror(eai); /* static strings in glibc and musl */
    const struct entry *e = find(err);
    return e ? e->msg : "unknown error";
}

EXPORT const char *rs_err_name(int err)
{
    if (err == 0)
        return "OK";
    const char *name;
    if (RS_IS_EAI(err) && eai_of(err, &name))
        return name;
    const struct entry *e = find(err);
    return e ? e->name : "UNKNOWN";
}
