/* happy_eyeballs: connect to host:port with rs_create_connection (RFC 8305 Happy Eyeballs) and show
 * every attempt it made, from the connect report: family, address, when it could have started at
 * the latest, and how it ended; then which one won. Exit status 0 connected, 1 failed, 2 usage. */
#define _POSIX_C_SOURCE 200809L /* getopt, clock_gettime, inet_ntop */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ringsock/ringsock.h>

static const char usage[] =
    "usage: happy_eyeballs [-d delay] host port [timeout]\n"
    "  Connect to host:port as rs_create_connection does and print each attempt it made.\n"
    "  -d       seconds between attempt starts while earlier ones are pending (default 0.25; RFC 8305)\n"
    "  timeout  seconds for the whole call and for each attempt (default 10)\n";

/* A number of seconds >= 0 (> 0 if positive), or NAN. */
static double seconds(const char *s, int positive)
{
    char *end;
    double v = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(v) && v >= 0 && (v > 0 || !positive) ? v : NAN;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "IPv4 127.0.0.1:80" or "IPv6 [::1]:80" */
static const char *describe(const struct rs_connect_attempt *a, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        port = ntohs(sin6->sin6_port);
        snprintf(buf, cap, "IPv6 [%s]:%u", host, port);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addr;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        port = ntohs(sin->sin_port);
        snprintf(buf, cap, "IPv4 %s:%u", host, port);
    }
    return buf;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return fputs(usage, stdout) == EOF;
    double delay = 0.25, timeout = 10;
    int opt;
    while ((opt = getopt(argc, argv, "d:")) != -1) {
        if (opt != 'd' || isnan(delay = seconds(optarg, 0))) {
            if (opt == 'd')
                fprintf(stderr, "happy_eyeballs: -d wants seconds >= 0, not \"%s\"\n", optarg);
            fputs(usage, stderr);
            return 2;
        }
    }
    if (argc - optind < 2 || argc - optind > 3 ||
        (argc - optind == 3 && isnan(timeout = seconds(argv[optind + 2], 1)))) {
        fputs(usage, stderr);
        return 2;
    }
    const char *host = argv[optind], *port = argv[optind + 1];

    struct rs_connect_report report;
    struct rs_connect_opts opts = RS_CONNECT_OPTS_INIT;
    opts.timeout = timeout;  /* each attempt (and the socket's timeout afterwards) */
    opts.deadline = timeout; /* and the whole call */
    opts.happy_eyeballs_delay = delay;
    opts.report = &report;
    printf("connecting to %s port %s: attempt delay %.3f s, timeout %.3f s\n", host, port, delay, timeout);

    rs_socket *s = NULL;
    double t0 = now();
    int r = rs_create_connection(&s, host, port, &opts);
    double took = now() - t0;
    if (RS_IS_EAI(r)) { /* the resolver failed: there were no attempts */
        printf("resolving %s: %s (%s)\n", host, rs_strerror(r), rs_err_name(r));
        return 1;
    }

    /* The report lists the attempts in the order they started, with their start and end times
     * from the start of the call: attempt k starts when attempt k-1 fails or `delay` after it
     * started, whichever comes first. */
    size_t shown = report.count < RS_CONNECT_MAX_ATTEMPTS ? report.count : RS_CONNECT_MAX_ATTEMPTS;
    char addr[80];
    int winner = -1;
    for (size_t k = 0; k < shown; k++) {
        const struct rs_connect_attempt *a = &report.attempt[k];
        printf("attempt %zu  %-28s  start=%.3fs end=%.3fs  ", k + 1, describe(a, addr, sizeof addr), a->start,
               a->end);
        if (a->error == 0) {
            printf("connected\n");
            winner = (int)k;
        } else {
            printf("%s  %s\n", rs_err_name(a->error), rs_strerror(a->error));
        }
    }
    if (report.count > shown)
        printf("(%zu more attempts, not recorded)\n", report.count - shown);
    if (r < 0) {
        printf("failed after %.3f s: %s (%s)\n", took, rs_err_name(r), rs_strerror(r));
        return 1;
    }
    if (winner >= 0)
        printf("winner: attempt %d, %s, after %.3f s\n", winner + 1,
               describe(&report.attempt[winner], addr, sizeof addr), took);
    else /* the winner was past the attempts recorded */
        printf("winner: an attempt past the first %d, after %.3f s\n", RS_CONNECT_MAX_ATTEMPTS, took);
    rs_close(s);
    return 0;
}
