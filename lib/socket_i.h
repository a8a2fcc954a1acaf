/* The socket object, shared by the socket layer's files. */
#ifndef RS_SOCKET_I_H
#define RS_SOCKET_I_H

#include <stdint.h>

#include "loop_i.h"

struct rs_socket {
    int fd;          /* -1 once closed */
    int family;
    int type;
    double timeout;  /* RS_TIMEOUT_NONE, 0, or seconds */
    uint64_t id;     /* unique per socket: readiness backends key registrations on it */
};

/* Fill the parts of op every socket operation shares; deadline from the socket's timeout. */
void rs__sock_op(struct rs_op *op, const struct rs_socket *s, int kind, int64_t deadline);
/* The deadline for one call on s. */
int64_t rs__sock_deadline(const struct rs_socket *s);
/* Run op on the calling thread's default loop. */
int rs__sock_exec(struct rs_op *op);

#endif
