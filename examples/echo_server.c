/* echo_server: a line-echo server on the completion API (one loop, one thread): each complete line goes
 * back to its sender, however it was split across reads. Runs until SIGINT/SIGTERM or --max-conns N. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringsock/ringsock.h>

struct client {
    int eof;         /* the peer has finished: close once the last echo is out */
    size_t len;      /* an unfinished line, kept for the next read */
    char line[4096]; /* (a longer one is echoed in pieces) */
};

static void on_closed(rs_conn *c, void *cl) { (void)c, free(cl); }

static void on_sent(rs_conn *c, ssize_t status, void *buf) /* also called by on_read, with no send made */
{
    struct client *cl = rs_conn_get_data(c);
    free(buf);
    if (status < 0 || (cl->eof && rs_conn_send_pending(c) == 0))
        rs_conn_close(c, on_closed, cl); /* -EALREADY, harmless, if it is already closing */
}

static void on_read(rs_conn *c, ssize_t n, const void *data, void *user)
{
    struct client *cl = user;
    char *buf = n > 0 ? malloc(cl->len + (size_t)n) : NULL; /* on_sent frees it, after the send */
    if (!buf) { /* EOF: close once the echoes are out (an unfinished line is dropped); error, ENOMEM: now */
        cl->eof = 1;
        on_sent(c, n > 0 ? -1 : n, NULL);
        return;
    }
    size_t len = cl->len + (size_t)n, end = len;
    memcpy(buf, cl->line, cl->len);
    memcpy(buf + cl->len, data, (size_t)n);
    while (end > 0 && buf[end - 1] != '\n' && len - end < sizeof cl->line) /* through the last '\n' */
        end--; /* (a line longer than line[] goes in pieces) */
    memcpy(cl->line, buf + end, cl->len = len - end);
    if (end == 0 || rs_conn_send(c, buf, end, on_sent, buf) < 0)
        on_sent(c, end ? -1 : 0, buf); /* nothing to send yet, or the send was refused */
}

static void on_accept(rs_conn *listener, rs_conn *c, int status, void *conns_left)
{
    struct client *cl = status == 0 ? calloc(1, sizeof *cl) : NULL;
    if (status < 0)
        fprintf(stderr, "echo_server: accept: %s\n", rs_strerror(status)); /* accepting goes on */
    else if (rs_conn_set_data(c, cl), !cl || rs_conn_read_start(c, on_read, cl) < 0)
        rs_conn_close(c, on_closed, cl);
    if (status == 0 && --*(long *)conns_left == 0) /* -1 (no --max-conns) never gets there */
        rs_conn_close(listener, NULL, NULL);       /* rs_loop_run returns once the others end */
}

int main(int argc, char **argv)
{
    char *end = "", *pend = "";
    int i = argc > 2 && strcmp(argv[1], "--max-conns") == 0 ? 3 : 1; /* argv[i]: the port */
    long max = i == 3 ? strtol(argv[2], &end, 10) : -1, port = i < argc ? strtol(argv[i], &pend, 10) : 0;
    if (argc > i + 1 || *end || *pend || max == 0 || max < -1 || port < 0 || port > 65535) {
        fputs("usage: echo_server [--max-conns N] [port]\n", stderr);
        return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    rs_loop *loop;
    rs_socket *s;
    rs_conn *listener;
    struct sockaddr_storage ss;
    int r = rs_create_server(&s, "127.0.0.1", i < argc ? argv[i] : "0", NULL); /* NULL: every address */
    if (r < 0 || (r = rs_getsockname(s, &ss, &(socklen_t){ sizeof ss })) < 0 ||
        (r = rs_loop_default(&loop)) < 0 || (r = rs_conn_from_socket(&listener, loop, s)) < 0 ||
        (r = rs_conn_accept_start(listener, on_accept, &max)) < 0) {
        fprintf(stderr, "echo_server: %s\n", rs_strerror(r));
        return 1; /* exiting closes what was opened */
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);                               /* the line a test (or a pipe) waits for */
    return rs_loop_run(loop, RS_RUN_DEFAULT) < 0; /* until the listener and every connection are closed */
}
