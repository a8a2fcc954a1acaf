/* Per-loop registered ("fixed") buffers for makefile: memory io_uring can read into and write
 * from without mapping the pages on every operation. */
#ifndef RS_BUFPOOL_I_H
#define RS_BUFPOOL_I_H

#include <stddef.h>
#include <stdint.h>

struct rs_loop;

/* A buffer handed out by the pool. */
struct rs_buf {
    void *mem;
    size_t size;      /* usable bytes (the request rounded up to pages) */
    int index;        /* registered slot in the owning loop, or -1: plain memory */
    uint64_t loop_id; /* the loop whose table holds index */
};

/* A buffer of at least size bytes. Registered with loop when its backend has fixed buffers and
 * a slot is free (RS_BUFPOOL_SLOTS per loop); plain memory otherwise. 0 or -ENOMEM. */
int rs__buf_get(struct rs_loop *loop, size_t size, struct rs_buf *b);
/* Give it back. The slot is released only by its own loop's thread (io_uring registration
 * belongs to the ring's task); elsewhere it stays taken until that loop is freed. */
void rs__buf_put(struct rs_buf *b);
/* Can b be used as a fixed buffer on loop? */
int rs__buf_fixed_index(const struct rs_buf *b, const struct rs_loop *loop);

#define RS_BUFPOOL_SLOTS 64

#endif
