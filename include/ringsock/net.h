/* ringsock connection helpers: socket.create_connection (getaddrinfo loop with a total deadline and
 * Happy Eyeballs, RFC 8305) and socket.create_server. */
#ifndef RINGSOCK_NET_H
#define RINGSOCK_NET_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <ringsock/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Resolver failures are distinct negative codes, never errno values: RS_EAI(EAI_NONAME) etc.
 * (whatever the sign of the platform's EAI_ constants). rs_strerror gives gai_strerror's text,
 * rs_err_name "EAI_NONAME" and so on. */
#define RS_EAI_BASE (-10000)
#define RS_EAI(eai) (RS_EAI_BASE - ((eai) < 0 ? -(eai) : (eai)))
/* True if err is a resolver error. */
#define RS_IS_EAI(err) ((err) <= RS_EAI_BASE && (err) > RS_EAI_BASE - 1000)

/* netdb.h declares it only with POSIX feature macros; a declaration keeps -std=c17 users building */
struct addrinfo;

#define RS_CONNECT_MAX_ATTEMPTS 16

/* socket.py's "use the default timeout": rs_getdefaulttimeout() at call time. */
#define RS_TIMEOUT_DEFAULT (-2.0)

struct rs_connect_attempt {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int error; /* 0 for the attempt that connected, else its -errno (-ETIMEDOUT, -ECANCELED for
                  a Happy Eyeballs loser) */
    double start, end; /* seconds from the start of the call to the attempt's start and to its
                          result (end < 0: no result recorded, e.g. -EINPROGRESS) */
};

struct rs_connect_report {
    size_t count; /* attempts made (at most RS_CONNECT_MAX_ATTEMPTS recorded) */
    struct rs_connect_attempt attempt[RS_CONNECT_MAX_ATTEMPTS];
};

struct rs_connect_opts {
    double timeout;              /* per attempt, like socket.py; RS_TIMEOUT_DEFAULT = the default
                                    timeout at call time; also the returned socket's timeout */
    double deadline;             /* whole call; RS_TIMEOUT_NONE = none */
    const char *source_host;     /* bind before connect (source_address); NULL = none */
    const char *source_port;     /* NULL = any */
    int family;                  /* AF_UNSPEC, AF_INET, AF_INET6 */
    double happy_eyeballs_delay; /* RFC 8305 connection attempt delay (seconds); RS_TIMEOUT_NONE =
                                    sequential, as socket.py */
    int interleave;              /* RFC 8305 "First Address Family Count"; 0 = 1 */
    struct rs_connect_report *report; /* optional: every attempt and its error (all_errors) */
};

#define RS_CONNECT_OPTS_INIT                                                                    \
    {                                                                                           \
        .timeout = RS_TIMEOUT_DEFAULT, .deadline = RS_TIMEOUT_NONE, .source_host = NULL,        \
        .source_port = NULL, .family = AF_UNSPEC, .happy_eyeballs_delay = 0.25, .interleave = 0, \
        .report = NULL                                                                          \
    }

/* Resolve host/port (numeric hosts skip the resolver) and connect to the first address that
 * answers; every other socket is closed. opts NULL = RS_CONNECT_OPTS_INIT. Returns 0 and *out,
 * the last attempt's error (all of them in opts->report), -ETIMEDOUT when the deadline passes,
 * a resolver error (RS_EAI(...)), or -EINVAL for bad arguments. */
int rs_create_connection(rs_socket **out, const char *host, const char *port, const struct rs_connect_opts *opts);

/* The same over an address list the caller resolved (SOCK_STREAM entries are used). */
int rs_create_connection_addrs(rs_socket **out, const struct addrinfo *list, const struct rs_connect_opts *opts);

struct rs_server_opts {
    int family;          /* AF_INET (default), AF_INET6 */
    int backlog;         /* < 0: min(SOMAXCONN, 128), as Python's listen() */
    bool reuse_port;     /* SO_REUSEPORT (-ENOPROTOOPT where missing) */
    bool dualstack_ipv6; /* AF_INET6 with IPV6_V6ONLY 0 (-EINVAL for other families) */
};
#define RS_SERVER_OPTS_INIT { .family = AF_INET, .backlog = -1, .reuse_port = false, .dualstack_ipv6 = false }

/* socket.create_server: SO_REUSEADDR, optional SO_REUSEPORT, IPV6_V6ONLY 1 for AF_INET6 unless
 * dualstack_ipv6, bind (host NULL or "" = any address; port "0" = ephemeral), listen. Returns 0
 * and *out, or the failing step's error; the socket is closed on any failure. */
int rs_create_server(rs_socket **out, const char *host, const char *port, const struct rs_server_opts *opts);

/* True if IPv6 is available and an AF_INET6 socket accepts IPV6_V6ONLY 0. */
bool rs_has_dualstack_ipv6(void);

#ifdef __cplusplus
}
#endif
#endif
