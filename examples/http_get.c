/* http_get: a blocking HTTP/1.0 client. rs_create_connection connects; a buffered file (rs_makefile)
 * sends the request and reads the status line and headers line by line; the body goes to stdout.
 * The status line goes to stderr. Exit status: 0 for a 2xx answer, 1 otherwise, 2 for bad arguments. */
#define _POSIX_C_SOURCE 200809L /* getopt, strncasecmp */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

static const char usage[] = "usage: http_get [-t timeout] host port path\n"
                            "  GET http://host:port/path (HTTP/1.0) and write the body to stdout.\n"
                            "  -t  seconds for each connect attempt, send and receive (default 10)\n";

/* Room for one request or one header line; a longer header line is an error, not a truncation. */
#define LINE_MAX_BYTES 8192

static int reported; /* the error was explained where it happened: main need not name it again */

/* An answer that breaks HTTP: say why, and fail with -EPROTO. */
static int bad_answer(const char *why, const char *line)
{
    reported = 1;
    if (*line)
        fprintf(stderr, "http_get: %s: \"%.80s\"\n", why, line);
    else
        fprintf(stderr, "http_get: %s\n", why);
    return -EPROTO;
}

/* Read one line into line[] as a C string without its line ending ("\r\n" or "\n"). Returns its
 * length, or -EPROTO at EOF (the answer stopped before its headers ended) or for a line too long. */
static ssize_t read_line(rs_file *f, char *line)
{
    ssize_t n = rs_file_readline(f, line, LINE_MAX_BYTES - 1); /* keeps the '\n', adds no NUL */
    if (n <= 0)
        return n < 0 ? n : bad_answer("connection closed before the headers ended", "");
    line[n] = '\0';
    if (line[n - 1] != '\n')
        return bad_answer("header line too long (or cut short by EOF)", line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return n;
}

/* Send the request, then read the status line and the headers. Returns the status code, or an
 * error. *length is the Content-Length, or -1 without one. */
static int request(rs_file *f, const char *host, const char *port, const char *path, long long *length)
{
    char line[LINE_MAX_BYTES];
    const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : ""; /* IPv6 literals: [::1] */
    int len =
        snprintf(line, sizeof line, "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nUser-Agent: http_get\r\n\r\n",
                 path, lb, host, rb, port);
    if (len < 0 || (size_t)len >= sizeof line)
        return -ENAMETOOLONG;
    /* one send: the file buffers the request until the flush */
    ssize_t r = rs_file_write(f, line, (size_t)len);
    if (r < 0 || (r = rs_file_flush(f)) < 0)
        return (int)r;

    if ((r = read_line(f, line)) < 0)
        return (int)r;
    int code = 0, end = 0; /* "HTTP/1.1 200 OK": version, a three-digit code, an optional reason */
    if (sscanf(line, "HTTP/%*1u.%*1u %3d%n", &code, &end) != 1 || code < 100 ||
        (line[end] && line[end] != ' '))
        return bad_answer("not an HTTP status line", line);
    fprintf(stderr, "%s\n", line);

    *length = -1;
    while ((r = read_line(f, line)) > 0) {
        if (strncasecmp(line, "Content-Length:", 15) != 0)
            continue;
        char *end_num;
        errno = 0;
        long long v = strtoll(line + 15, &end_num, 10);
        if (errno || v < 0 || end_num == line + 15 || end_num[strspn(end_num, " \t")] != '\0')
            return bad_answer("bad Content-Length", line);
        *length = v;
    }
    return r < 0 ? (int)r : code; /* r == 0: the empty line that ends the headers */
}

/* The request line and Host header are built from the arguments: no spaces or control bytes. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return fputs(usage, stdout) == EOF;
    double timeout = 10.0;
    int opt;
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        char *end = optarg;
        if (opt == 't')
            timeout = strtod(optarg, &end);
        if (opt != 't' || end == optarg || *end || !isfinite(timeout) || timeout <= 0) {
            if (opt == 't')
                fprintf(stderr, "http_get: -t wants seconds > 0, not \"%s\"\n", optarg);
            fputs(usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 3 || !*argv[optind] || !*argv[optind + 1] || argv[optind + 2][0] != '/' ||
        !printable(argv[optind]) || !printable(argv[optind + 1]) || !printable(argv[optind + 2])) {
        fputs("http_get: want host, port and a path starting with '/', without spaces\n", stderr);
        fputs(usage, stderr);
        return 2;
    }
    const char *host = argv[optind], *port = argv[optind + 1], *path = argv[optind + 2];

    /* Each connect attempt, and then each send and receive on the socket, gets `timeout` seconds.
     * Happy Eyeballs (the default) races IPv6 and IPv4 when host has both. */
    struct rs_connect_opts copts = RS_CONNECT_OPTS_INIT;
    copts.timeout = timeout;
    rs_socket *s;
    int r = rs_create_connection(&s, host, port, &copts);
    if (r < 0) {
        fprintf(stderr, "http_get: %s port %s: %s (%s)\n", host, port, rs_strerror(r), rs_err_name(r));
        return 1;
    }
    rs_file *f;
    if ((r = rs_makefile(&f, s, "rwb", -1)) < 0) {
        fprintf(stderr, "http_get: makefile: %s\n", rs_strerror(r));
        rs_close(s);
        return 1;
    }

    long long length = -1, got = 0;
    int code = request(f, host, port, path, &length);
    r = code < 0 ? code : 1;
    while (r > 0) { /* the body: HTTP/1.0 ends it by closing the connection */
        static char buf[65536];
        ssize_t n = rs_file_read1(f, buf, sizeof buf); /* what one receive brings: no waiting to fill buf */
        if (n > 0 && fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            fprintf(stderr, "http_get: writing the body: %s\n", strerror(errno));
            n = -EIO;
            reported = 1;
        }
        got += n > 0 ? n : 0;
        r = (int)(n > 0 ? 1 : n);
    }
    if (r == 0 && fflush(stdout) == EOF) {
        fprintf(stderr, "http_get: writing the body: %s\n", strerror(errno));
        r = -EIO;
        reported = 1;
    }
    if (r == 0 && length >= 0 && got != length)
        r = bad_answer("the body's length differs from Content-Length", "");
    if (r < 0 && !reported)
        fprintf(stderr, "http_get: %s (%s)\n", rs_strerror(r), rs_err_name(r));
    /* The file holds a reference to the socket: the fd closes with whichever of the two goes last. */
    rs_file_close(f);
    rs_close(s);
    return r == 0 && code >= 200 && code <= 299 ? 0 : 1;
}
