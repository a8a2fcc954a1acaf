/* hello: the smallest complete ringsock program. A listener on 127.0.0.1 (port 0), a client that
 * connects to it, "hello" sent one way and read back on the other, everything closed. Uses only the
 * public API; build it with `cc hello.c $(pkg-config --cflags --libs ringsock)`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringsock/ringsock.h>

static int fail(const char *what, int err)
{
    fprintf(stderr, "hello: %s: %s (%s)\n", what, rs_strerror(err), rs_err_name(err));
    return EXIT_FAILURE;
}

int main(void)
{
    rs_socket *listener, *client, *conn;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = rs_socket_open(&listener, AF_INET, SOCK_STREAM, 0);
    if (r < 0)
        return fail("socket", r);
    if ((r = rs_bind(listener, (struct sockaddr *)&sin, sizeof sin)) < 0 || (r = rs_listen(listener, -1)) < 0)
        return fail("bind/listen", r);

    /* Port 0 asked the kernel for a free port: read back which one it chose. */
    struct sockaddr_storage addr;
    socklen_t addrlen = sizeof addr;
    if ((r = rs_getsockname(listener, &addr, &addrlen)) < 0)
        return fail("getsockname", r);

    /* A loopback connect completes from the backlog, before accept: one thread is enough. */
    if ((r = rs_socket_open(&client, AF_INET, SOCK_STREAM, 0)) < 0)
        return fail("socket", r);
    if ((r = rs_connect(client, (struct sockaddr *)&addr, addrlen)) < 0)
        return fail("connect", r);
    if ((r = rs_accept(listener, &conn, NULL, NULL)) < 0)
        return fail("accept", r);

    static const char msg[] = "hello";
    char buf[64];
    ssize_t n = rs_sendall(client, msg, strlen(msg), 0);
    if (n < 0)
        return fail("sendall", (int)n);
    size_t got = 0;
    while (got < strlen(msg)) { /* TCP is a byte stream: a message may arrive in pieces */
        n = rs_recv(conn, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            return fail("recv", n == 0 ? -ECONNRESET : (int)n);
        got += (size_t)n;
    }
    buf[got] = '\0';

    rs_loop *loop;
    if ((r = rs_loop_default(&loop)) < 0)
        return fail("loop", r);
    printf("ringsock %s, backend %s: received \"%s\"\n", rs_version_string(),
           rs_backend_name(rs_loop_backend(loop)), buf);

    rs_socket *all[] = { conn, client, listener };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) /* close every one, even after an error */
        if ((n = rs_close(all[i])) < 0)
            r = (int)n;
    if (r < 0)
        return fail("close", r);
    /* Not needed before exit, but it shows the last fd (the loop's) going away. */
    if ((r = rs_loop_default_release()) < 0)
        return fail("loop release", r);
    return strcmp(buf, msg) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
