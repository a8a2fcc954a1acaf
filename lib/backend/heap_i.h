/* A binary min-heap of operations by deadline: the readiness backends' timers. */
#ifndef RS_HEAP_I_H
#define RS_HEAP_I_H

#include <stddef.h>
#include "backend.h"

struct rs_heap {
    struct rs_op **v;
    size_t len, cap;
};

int rs__heap_push(struct rs_heap *h, struct rs_op *op);    /* 0 or -ENOMEM */
void rs__heap_remove(struct rs_heap *h, struct rs_op *op); /* op must be in h */
static inline struct rs_op *rs__heap_top(const struct rs_heap *h) { return h->len ? h->v[0] : NULL; }
void rs__heap_free(struct rs_heap *h);

#define RS_HEAP_NONE ((size_t)-1)

#endif
