/* file_server: a blocking server that sends one file to every client. rs_create_server listens,
 * rs_accept takes one connection at a time, rs_sendfile sends the whole file (splice or sendfile(2)
 * inside the library: the bytes never pass through this program), and the connection is closed. */
#define _POSIX_C_SOURCE 200809L /* getopt, inet_ntop, open */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

static const char usage[] =
    "usage: file_server [-p port] [-b address] [-n count] [-t timeout] file\n"
    "  Send file to every client that connects, then close the connection.\n"
    "  -p  port to listen on (default 0: any free one; the port is printed)\n"
    "  -b  address to listen on (default 127.0.0.1; :: or 0.0.0.0 for every address)\n"
    "  -n  exit after serving count connections (default: serve until killed)\n"
    "  -t  seconds a client may leave the transfer stalled before it is dropped (default 30)\n";

/* "127.0.0.1:5000" or "[::1]:5000" */
static const char *describe(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    }
    return buf;
}

/* A whole decimal number in [min, max], or -1. */
static long number(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && errno == 0 && v >= min && v <= max ? v : -1;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return fputs(usage, stdout) == EOF;
    const char *port = "0", *address = "127.0.0.1";
    long count = -1;
    double timeout = 30;
    int opt;
    while ((opt = getopt(argc, argv, "p:b:n:t:")) != -1) {
        char *end = NULL;
        int ok = 1;
        switch (opt) {
        case 'p': ok = number(port = optarg, 0, 65535) >= 0; break;
        case 'b': address = optarg; break;
        case 'n': ok = (count = number(optarg, 1, 1000000000)) > 0; break;
        case 't':
            timeout = strtod(optarg, &end);
            ok = end != optarg && *end == '\0' && isfinite(timeout) && timeout > 0;
            break;
        default: ok = 0; break; /* getopt has said what was wrong */
        }
        if (!ok) {
            if (opt != '?')
                fprintf(stderr, "file_server: bad value for -%c: \"%s\"\n", opt, optarg);
            fputs(usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fputs(usage, stderr);
        return 2;
    }
    const char *path = argv[optind];

    /* Opened once: rs_sendfile with an offset leaves the file position alone, so one fd serves all. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "file_server: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (!S_ISREG(st.st_mode)) { /* a pipe could be sent once, not to every client */
        fprintf(stderr, "file_server: %s: not a regular file\n", path);
        close(fd);
        return 1;
    }

    struct rs_server_opts sopts = RS_SERVER_OPTS_INIT;
    sopts.family = strchr(address, ':') ? AF_INET6 : AF_INET;
    rs_socket *listener;
    int r = rs_create_server(&listener, address, port, &sopts);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char name[INET6_ADDRSTRLEN + 8];
    if (r == 0 && (r = rs_getsockname(listener, &ss, &len)) < 0)
        rs_close(listener);
    if (r < 0) {
        fprintf(stderr, "file_server: listening on %s port %s: %s (%s)\n", address, port, rs_strerror(r),
                rs_err_name(r));
        close(fd);
        return 1;
    }
    printf("listening on %s, serving %s (%lld bytes)\n", describe(&ss, name, sizeof name), path,
           (long long)st.st_size);
    fflush(stdout); /* a script reading the port from a pipe needs it now */

    /* Accepted sockets take the default timeout: every wait for the client to take more bytes is
     * bounded, so a client that stops reading cannot hold this one-at-a-time server forever. */
    rs_setdefaulttimeout(timeout);
    int status = 0;
    for (long served = 0; count < 0 || served < count;) {
        rs_socket *conn;
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        r = rs_accept(listener, &conn, &peer, &peerlen);
        if (r == -ECONNABORTED || r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
            fprintf(stderr, "file_server: accept: %s (going on)\n", rs_strerror(r));
            if (r != -ECONNABORTED)
                sleep(1); /* out of fds or memory: give the system a moment instead of spinning */
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "file_server: accept: %s\n", rs_strerror(r));
            status = 1;
            break;
        }
        off_t offset = 0;
        ssize_t sent = rs_sendfile(conn, fd, &offset, 0); /* 0: to the end of the file */
        describe(&peer, name, sizeof name);
        if (sent < 0) /* one client's failure is not the server's: log it and go on */
            fprintf(stderr, "file_server: %s: %s (%s) after %lld bytes\n", name, rs_strerror((int)sent),
                    rs_err_name((int)sent), (long long)offset);
        else
            fprintf(stderr, "file_server: %s: sent %zd bytes\n", name, sent);
        rs_close(conn); /* the client sees EOF after the last byte */
        served++;
    }
    rs_close(listener);
    close(fd);
    return status;
}
