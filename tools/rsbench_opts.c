/* rsbench server/client: command lines and help. Every mistake is one line on stderr and exit
 * status 2; an option that would have no effect in the chosen role or mode is a mistake too, so
 * that nobody believes they measured something they did not. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ringsock/ringsock.h>

#include "rsbench_common.h"

const char *const rsb_mode_name[RSB_MODE_COUNT] = { "echo", "stream", "connect", "sendfile", "sockperf" };

/* what --size, --depth, etc. may be */
#define MAX_SIZE (64ul << 20)
#define MAX_INFLIGHT (64ul << 20) /* echo: size x depth per connection */
#define MAX_THREADS 256
#define MAX_CONNS 1000000

static bool role_server;

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
    const char *role = role_server ? "server" : "client";
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, RSB_PROG ": %s: ", role);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try '" RSB_PROG " %s --help')\n", role);
    va_end(ap);
    return 2;
}

/* "64", "4k", "1M": bytes, k = 1024, m = 1024 * 1024. */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s)
        return false;
    unsigned long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ul << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1ul << 20, end++;
    if (*end || v == 0 || v > MAX_SIZE / mul)
        return false;
    *out = v * mul;
    return true;
}

static int mode_of(const char *s)
{
    for (int m = 0; m < RSB_MODE_COUNT; m++)
        if (strcmp(s, rsb_mode_name[m]) == 0)
            return m;
    return -1;
}

void rsb_server_help(FILE *f)
{
    fputs("usage: " RSB_PROG " server [MODE] [OPTIONS] [HOST [PORT]]\n"
          "\n"
          "Serve rsbench clients on ringsock's completion API (multishot accept, multishot receive into\n"
          "provided buffers, ordered sends), one loop per thread. MODE (default echo):\n"
          "  echo      send back every byte received (rsbench client echo, or any echo client)\n"
          "  stream    receive and discard\n"
          "  connect   accept and close at once\n"
          "  sendfile  send --file over and over with rs_sendfile until the client closes\n"
          "  sockperf  answer sockperf's TCP clients (sockperf ping-pong --tcp, under-load --tcp): its\n"
          "            messages carry a header, and only pong requests are answered, marked as replies\n"
          "HOST defaults to 127.0.0.1 (::1 with -6), PORT to 0: the kernel picks a free port and the first\n"
          "line says which ('listening on HOST port N'). Runs until SIGINT or SIGTERM (or --duration),\n"
          "printing a progress line per interval while clients are connected, then the totals.\n"
          "\n"
          "  --backend B      uring, epoll, poll or auto (default auto: RINGSOCK_BACKEND, else the best)\n"
          "  --threads N      N threads, each with its own loop and SO_REUSEPORT listener (default 1)\n"
          "  --file PATH      sendfile: the file to send (required in that mode)\n"
          "  --duration SECS  exit after SECS seconds (default: run until SIGINT or SIGTERM)\n"
          "  --interval SECS  seconds between progress lines, 0 for none (default 1)\n"
          "  -4, -6           IPv4 or IPv6 (default: from HOST, else IPv4)\n"
          "  --json           one JSON object at exit instead of text (the listening line goes to stderr)\n",
          f);
}

void rsb_client_help(FILE *f)
{
    fputs(
        "usage: " RSB_PROG " client [MODE] [OPTIONS] HOST PORT\n"
        "\n"
        "Load an rsbench server running the same MODE (default echo) and measure it. The connections\n"
        "of a thread are multiplexed on one ringsock loop (completion API).\n"
        "  echo      each connection sends --size byte messages, --depth of them in flight (1 = ping-pong);\n"
        "            every echoed byte is checked (a mismatch is an error); latency p50/p99/p99.9\n"
        "  stream    each connection sends --size byte buffers back to back; the server discards them\n"
        "  connect   --conns connections at a time connect and close; connections/s, connect latency\n"
        "  sendfile  receive and discard what a sendfile server sends\n"
        "A progress line per interval while running, then messages/s, MB/s (1 MB = 10^6 bytes),\n"
        "latency and errors.\n"
        "\n"
        "  --backend B      uring, epoll, poll or auto (default auto: RINGSOCK_BACKEND, else the best)\n"
        "  --threads N      client threads, each with its own loop (default 1)\n"
        "  --conns C        connections in all, spread over the threads (default 1)\n"
        "  --size S         echo message size (default 64) or stream send size (default 128k);\n"
        "                   suffixes k and m (x1024, x1048576)\n"
        "  --depth N        echo: messages in flight per connection (default 1)\n"
        "  --duration SECS  measured seconds (default 10)\n"
        "  --interval SECS  seconds between progress lines, 0 for none (default 1)\n"
        "  -4, -6           connect over IPv4 or IPv6 only\n"
        "  --json           one JSON object at the end instead of text\n"
        "\n"
        "Exit status: 0, 1 if the run failed or counted any error (the results are printed anyway),\n"
        "2 for a usage error.\n",
        f);
}

int rsb_parse(int argc, char **argv, bool server, struct rsb_opts *o)
{
    role_server = server;
    /* clang-format off */
    static const struct option longopts[] = {
        { "backend", required_argument, NULL, 'b' },
        { "threads", required_argument, NULL, 't' },
        { "conns", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "depth", required_argument, NULL, 'd' },
        { "duration", required_argument, NULL, 'D' },
        { "interval", required_argument, NULL, 'i' },
        { "file", required_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* clang-format on */
    *o = (struct rsb_opts){
        .server = server,
        .mode = RSB_ECHO,
        .backend = RS_BACKEND_AUTO,
        .threads = 1,
        .conns = 1,
        .depth = 1,
        .duration = server ? 0 : 10,
        .interval = 1,
        .family = AF_UNSPEC,
    };
    bool given_conns = false, given_size = false, given_depth = false, v4 = false, v6 = false;
    long l;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":46h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': {
            int b = RS_BACKEND_AUTO;
            while (b <= RS_BACKEND_POLL && strcmp(optarg, rs_backend_name(b)) != 0)
                b++;
            if (b > RS_BACKEND_POLL)
                return usage("--backend wants uring, epoll, poll or auto, not '%s'", optarg);
            o->backend = b;
            break;
        }
        case 't':
            if (!rsb_parse_long(optarg, 1, MAX_THREADS, &l))
                return usage("--threads wants 1 to %d, not '%s'", MAX_THREADS, optarg);
            o->threads = (int)l;
            break;
        case 'c':
            if (!rsb_parse_long(optarg, 1, MAX_CONNS, &o->conns))
                return usage("--conns wants 1 to %d, not '%s'", MAX_CONNS, optarg);
            given_conns = true;
            break;
        case 's':
            if (!parse_size(optarg, &o->size))
                return usage("--size wants 1 byte to 64m (suffixes k, m), not '%s'", optarg);
            given_size = true;
            break;
        case 'd':
            if (!rsb_parse_long(optarg, 1, 4096, &o->depth))
                return usage("--depth wants 1 to 4096, not '%s'", optarg);
            given_depth = true;
            break;
        case 'D':
            if (!rsb_parse_double(optarg, server ? 0 : 0.01, 1e6, &o->duration))
                return usage("--duration wants seconds from %s to 1e6, not '%s'", server ? "0" : "0.01",
                             optarg);
            break;
        case 'i':
            if (!rsb_parse_double(optarg, 0, 3600, &o->interval) || (o->interval > 0 && o->interval < 0.05))
                return usage("--interval wants 0 or seconds from 0.05 to 3600, not '%s'", optarg);
            break;
        case 'f': o->file = optarg; break;
        case 'j': o->json = true; break;
        case '4': v4 = true; break;
        case '6': v6 = true; break;
        case 'h': (server ? rsb_server_help : rsb_client_help)(stdout); return 0;
        case ':': return usage("option '%s' needs a value", argv[optind - 1]);
        default: return usage("unknown option '%s'", argv[optind - 1]);
        }
    }

    /* [MODE] HOST PORT, the mode optional (echo) */
    char **args = argv + optind;
    int nargs = argc - optind, i = 0;
    if (nargs > 0 && mode_of(args[0]) >= 0)
        o->mode = (enum rsb_mode)mode_of(args[i++]);
    int rest = nargs - i;
    if (rest > 2) {
        if (i == 0)
            return usage("unknown mode '%s' (echo, stream, connect, sendfile%s)", args[0],
                         server ? ", sockperf" : "");
        return usage("unexpected argument '%s'", args[i + 2]);
    }
    if (!server && rest < 2)
        return usage("HOST and PORT are required");
    if (rest >= 1)
        o->host = args[i];
    if (rest >= 2)
        o->port = args[i + 1];
    if (o->host && !*o->host)
        return usage("empty HOST");
    if (o->port && !rsb_parse_long(o->port, server ? 0 : 1, 65535, &l))
        return usage("PORT wants a number from %d to 65535, not '%s'", server ? 0 : 1, o->port);

    if (v4 && v6)
        return usage("-4 and -6 exclude each other");
    o->family = v4 ? AF_INET : v6 ? AF_INET6 : AF_UNSPEC;
    const char *mode = rsb_mode_name[o->mode];
    if (server) {
        if (given_conns || given_size || given_depth)
            return usage("%s is a client option", given_conns  ? "--conns"
                                                  : given_size ? "--size"
                                                               : "--depth");
        if (o->file && o->mode != RSB_SENDFILE)
            return usage("--file is for sendfile mode, not %s", mode);
        if (o->mode == RSB_SENDFILE && !o->file)
            return usage("sendfile mode needs --file PATH");
        if (!o->host)
            o->host = o->family == AF_INET6 ? "::1" : "127.0.0.1";
        if (!o->port)
            o->port = "0";
        if (o->family == AF_UNSPEC)
            o->family = strchr(o->host, ':') ? AF_INET6 : AF_INET;
        return -1;
    }
    if (o->file)
        return usage("--file is a server option");
    if (o->mode == RSB_SOCKPERF)
        return usage("sockperf is a server mode: load it with 'sockperf ping-pong --tcp'");
    if (given_depth && o->mode != RSB_ECHO)
        return usage("--depth is for echo mode, not %s", mode);
    if (given_size && o->mode != RSB_ECHO && o->mode != RSB_STREAM)
        return usage("--size has no meaning in %s mode", mode);
    if (o->conns < o->threads)
        return usage("--conns (%ld) must be at least --threads (%d)", o->conns, o->threads);
    if (!given_size)
        o->size = o->mode == RSB_STREAM ? 128u << 10 : 64;
    if (o->mode == RSB_ECHO && o->size * (size_t)o->depth > MAX_INFLIGHT)
        return usage("--size x --depth is over 64m in flight per connection");
    return -1;
}

int rsb_cmd_server(int argc, char **argv)
{
    struct rsb_opts o;
    int rc = rsb_parse(argc, argv, true, &o);
    return rc >= 0 ? rc : rsb_run_server(&o);
}

int rsb_cmd_client(int argc, char **argv)
{
    struct rsb_opts o;
    int rc = rsb_parse(argc, argv, false, &o);
    return rc >= 0 ? rc : rsb_run_client(&o);
}
