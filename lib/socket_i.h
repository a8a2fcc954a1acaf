/* The socket object, shared by the socket layer's files. */
#ifndef RS_SOCKET_I_H
#define RS_SOCKET_I_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop_i.h"

/* A call in progress on a socket, on the calling thread's stack: where rs_close finds the loop
 * to wake and the flag that asks the call to end. Linked into its socket under the socket's
 * lock (socket.c). */
struct rs_call {
    struct rs_call *prev, *next;
    struct rs_loop *loop;
    atomic_bool abort;        /* set by rs_close, read by the engine (rs__loop_aborted) */
    unsigned forkgen;         /* rs__forkgen() at entry: in a fork child the call is the parent's */
    const atomic_bool *outer; /* the loop's abort flag of an enclosing call, restored at leave */
};

/* The ownership rule: the object lives while anything holds a reference (the caller's handle
 * until rs_close, each call in progress, each open rs_makefile file); the last drop closes the
 * fd and frees it. */
struct rs_socket {
    int fd;                /* valid until the last reference goes */
    atomic_bool closed;    /* rs_close was called: new calls get -EBADF */
    atomic_uint refs;      /* the owner's, plus one per call in progress and per open file */
    struct rs_call *calls; /* calls in progress (under the socket's lock) */
    int family;
    int type;
    _Atomic double timeout; /* RS_TIMEOUT_NONE, 0, or seconds; any thread may set it */
    uint64_t id;            /* unique per socket: readiness backends key registrations on it */
};

/* Wrap an open fd (closed on failure) in a new socket object. */
int rs__sock_wrap(struct rs_socket **out, int fd, int family, int type, double timeout);

/* Take a reference (an open file holds one); false, and none taken, once s is closed. */
bool rs__sock_hold(struct rs_socket *s);
/* Give it back; the last one closes the fd and frees s. */
void rs__sock_drop(struct rs_socket *s);

/* A call on s begins on the calling thread's default loop (*loop): a reference, and c linked
 * where rs_close finds it; while it lasts, the loop's blocking waits end when rs_close asks.
 * 0, -EBADF once s is closed, or the loop's error. */
int rs__sock_enter(struct rs_socket *s, struct rs_call *c, struct rs_loop **loop);
/* The call ends: c unlinked, the reference dropped (s may be gone after). */
void rs__sock_leave(struct rs_socket *s, struct rs_call *c);
/* enter, run op, leave. -EBADF if s was closed meanwhile and nothing was transferred. */
int rs__sock_run(struct rs_socket *s, struct rs_op *op);

/* Take the fd out of s and free s, if nothing else holds s (-EBUSY otherwise, -EBADF closed). */
int rs__sock_detach(struct rs_socket *s);

static inline double rs__sock_timeout(const struct rs_socket *s)
{
    return atomic_load_explicit(&((struct rs_socket *)s)->timeout, memory_order_relaxed);
}

/* Fill the parts of op every socket operation shares; deadline from the socket's timeout. */
void rs__sock_op(struct rs_op *op, const struct rs_socket *s, int kind, int64_t deadline);
/* The deadline for one call on s. */
int64_t rs__sock_deadline(const struct rs_socket *s);

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
