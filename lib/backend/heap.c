/* Deadline heap for the readiness backends (io_uring uses linked LINK_TIMEOUT SQEs instead). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "heap_i.h"

static void place(struct rs_heap *h, size_t i, struct rs_op *op)
{
    h->v[i] = op;
    op->heap_idx = i;
}

static void sift_up(struct rs_heap *h, size_t i)
{
    struct rs_op *op = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p]->deadline <= op->deadline)
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, op);
}

static void sift_down(struct rs_heap *h, size_t i)
{
    struct rs_op *op = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->v[c + 1]->deadline < h->v[c]->deadline)
            c++;
        if (op->deadline <= h->v[c]->deadline)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, op);
}

int rs__heap_push(struct rs_heap *h, struct rs_op *op)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct rs_op **v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->len] = op;
    op->heap_idx = h->len;
    h->len++;
    sift_up(h, h->len - 1);
    return 0;
}

void rs__heap_remove(struct rs_heap *h, struct rs_op *op)
{
    size_t i = op->heap_idx;
    op->heap_idx = RS_HEAP_NONE;
    h->len--;
    if (i == h->len)
        return;
    struct rs_op *moved = h->v[h->len];
    place(h, i, moved);
    sift_down(h, i);
    sift_up(h, moved->heap_idx);
}

void rs__heap_free(struct rs_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->len = h->cap = 0;
}
