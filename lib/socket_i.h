/* The socket object, shared by the socket layer's files. */
#ifndef RS_SOCKET_I_H
#define RS_SOCKET_I_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop_i.h"

struct rs_socket {
    int fd;          /* valid until the last reference goes */
    atomic_bool closed;  /* rs_close was called: new calls get -EBADF */
    atomic_uint refs;    /* the owner's, plus one per call in progress and per open file */
    atomic_uint busy;    /* calls in progress: rs_close wakes them */
    int family;
    int type;
    double timeout;  /* RS_TIMEOUT_NONE, 0, or seconds */
    uint64_t id;     /* unique per socket: readiness backends key registrations on it */
};

/* Wrap an open fd (closed on failure) in a new socket object. */
int rs__sock_wrap(struct rs_socket **out, int fd, int family, int type, double timeout);

/* Take a reference (an open file holds one); false, and none taken, once s is closed. */
bool rs__sock_hold(struct rs_socket *s);
/* Give it back; the last one closes the fd and frees s. */
void rs__sock_drop(struct rs_socket *s);
/* A call on s begins: a reference plus the busy count; false once s is closed. */
bool rs__sock_begin(struct rs_socket *s);
/* Run op for a call that began with rs__sock_begin, and end the call. -EBADF if s was closed
 * meanwhile and nothing was transferred. */
int rs__sock_call(struct rs_socket *s, struct rs_op *op);

/* Take the fd out of s and free s, if nothing else holds s (-EBUSY otherwise, -EBADF closed). */
int rs__sock_detach(struct rs_socket *s);

/* Fill the parts of op every socket operation shares; deadline from the socket's timeout. */
void rs__sock_op(struct rs_op *op, const struct rs_socket *s, int kind, int64_t deadline);
/* The deadline for one call on s. */
int64_t rs__sock_deadline(const struct rs_socket *s);
/* Run op on the calling thread's default loop. */
int rs__sock_exec(struct rs_op *op);

/* A port of only digits above 65535: getaddrinfo keeps its low 16 bits ("99999" -> 34463) where
 * socket.py refuses it. Callers answer RS_EAI(EAI_SERVICE). */
static inline bool rs__port_out_of_range(const char *port)
{
    size_t n = 0;
    unsigned long v = 0;
    for (const char *p = port; *p; p++, n++) {
        if (*p < '0' || *p > '9')
            return false; /* a service name, or not a port: getaddrinfo judges */
        if (v <= 65535)
            v = v * 10 + (unsigned long)(*p - '0');
    }
    return n > 0 && v > 65535;
}

#endif
