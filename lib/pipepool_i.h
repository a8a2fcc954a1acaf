/* Per-loop pool of splice pipes (L2): rs_sendfile's file -> pipe -> socket path borrows one pipe
 * per transfer; a process-wide cap keeps the pipes within pipe-user-pages-soft. */
#ifndef RS_PIPEPOOL_I_H
#define RS_PIPEPOOL_I_H

#include <stdbool.h>
#include <stddef.h>

struct rs_loop;

struct rs_pipe {
    int rd, wr;
    size_t cap; /* bytes the pipe holds */
};

/* An empty pipe from loop's pool, or a new one (*made then true): 0, or -EAGAIN when the
 * process cap is reached, -ENOBUFS when the kernel gives too small a pipe, -errno of pipe2. */
int rs__pipe_get(struct rs_loop *loop, struct rs_pipe *p, bool *made);
/* Give p back; a pipe that still holds bytes (an error mid-transfer) is closed, which discards
 * them. */
void rs__pipe_put(struct rs_loop *loop, struct rs_pipe *p, bool empty);

#endif
