/* rs_create_server and rs_has_dualstack_ipv6: socket.create_server's steps, each failure closing
 * the socket and returning that step's error. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "ringsock/net.h"
#include "socket_i.h"
#include "export_i.h"

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v) < 0 ? -errno : 0;
}

EXPORT int rs_create_server(rs_socket **out, const char *host, const char *port,
                            const struct rs_server_opts *opts)
{
    static const struct rs_server_opts defaults = RS_SERVER_OPTS_INIT;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->family != AF_INET && opts->family != AF_INET6)
        return -EAFNOSUPPORT;
    if (opts->dualstack_ipv6 && opts->family != AF_INET6)
        return -EINVAL;
    struct addrinfo hints = { .ai_family = opts->family,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
    if (host && !*host)
        host = NULL;
    if (!port || !*port)
        port = "0";
    if (rs__port_out_of_range(port))
        return RS_EAI(EAI_SERVICE);
    struct addrinfo *res = NULL;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e == EAI_NONAME && host) {
        hints.ai_flags = AI_PASSIVE;
        e = getaddrinfo(host, port, &hints, &res);
    }
    if (e != 0)
        return e == EAI_SYSTEM ? (errno ? -errno : -EIO) : RS_EAI(e);

    int r;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (r == 0 && opts->reuse_port) {
#ifdef SO_REUSEPORT
        r = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#else
        r = -ENOPROTOOPT;
#endif
    }
    if (r == 0 && res->ai_family == AF_INET6)
        r = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts->dualstack_ipv6 ? 0 : 1);
    if (r == 0 && bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        r = -errno;
    int backlog = opts->backlog < 0 ? RS_DEFAULT_BACKLOG : opts->backlog;
    if (r == 0 && listen(fd, backlog) < 0)
        r = -errno;
    if (r == 0) {
        r = rs__sock_wrap(out, fd, res->ai_family, SOCK_STREAM, rs_getdefaulttimeout());
        fd = -1; /* owned by *out now, or closed by the wrap's failure */
    }
    if (fd >= 0)
        close(fd);
out:
    freeaddrinfo(res);
    return r;
}

EXPORT bool rs_has_dualstack_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) == 0;
    close(fd);
    return ok;
}
