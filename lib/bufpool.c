/* The fixed-buffer pool: a sparse table of RS_BUFPOOL_SLOTS registered buffers per io_uring loop,
 * filled and emptied one slot at a time (IORING_REGISTER_BUFFERS_UPDATE), so buffers come and go
 * with files instead of being registered once up front. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bufpool_i.h"
#include "loop_i.h"
#include "fault_i.h"

struct rs_bufpool {
    bool usable; /* the sparse table was registered */
    bool used[RS_BUFPOOL_SLOTS];
};

static size_t page_round(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

static const char pool_key = 'b'; /* this file's per-loop resource */

/* (the ring's teardown unregisters the table) */
static void pool_free(void *p) { free(p); }

static struct rs_bufpool *pool_of(struct rs_loop *loop)
{
    struct rs_bufpool *p = rs__loop_res(loop, &pool_key);
    if (!p) {
        if (!(p = calloc(1, sizeof *p)))
            return NULL;
        if (rs__loop_res_attach(loop, &pool_key, p, pool_free) < 0) {
            free(p);
            return NULL;
        }
        /* One try per loop: a backend without fixed buffers, or a kernel/RLIMIT_MEMLOCK that
         * refuses the table, means plain memory for this loop's whole life. */
        p->usable = RS_FAULT_REGBUF(rs__loop_buffers_init(loop, RS_BUFPOOL_SLOTS)) == 0;
    }
    return p;
}

int rs__buf_get(struct rs_loop *loop, size_t size, struct rs_buf *b)
{
    b->size = page_round(size ? size : 1);
    b->index = -1;
    b->loop_id = loop ? loop->id : 0;
    /* Page-aligned memory of its own: a registered range pins whole pages. */
    b->mem = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->mem == MAP_FAILED) {
        b->mem = NULL;
        return -ENOMEM;
    }
    struct rs_bufpool *p = loop ? pool_of(loop) : NULL;
    if (!p || !p->usable)
        return 0;
    for (int i = 0; i < RS_BUFPOOL_SLOTS; i++) {
        if (p->used[i])
            continue;
        struct iovec iov = { .iov_base = b->mem, .iov_len = b->size };
        if (RS_FAULT_REGBUF(rs__loop_buffer_update(loop, (unsigned)i, &iov)) == 0) {
            p->used[i] = true;
            b->index = i;
        }
        break;
    }
    return 0;
}

int rs__buf_fixed_index(const struct rs_buf *b, const struct rs_loop *loop)
{
    return b->index >= 0 && loop && loop->id == b->loop_id ? b->index : -1;
}

void rs__buf_put(struct rs_buf *b)
{
    if (!b->mem)
        return;
    struct rs_loop *loop = rs__loop_current();
    struct rs_bufpool *p = loop && loop->id == b->loop_id ? rs__loop_res(loop, &pool_key) : NULL;
    if (b->index >= 0 && p) {
        struct iovec empty = { .iov_base = NULL, .iov_len = 0 };
        if (rs__loop_buffer_update(loop, (unsigned)b->index, &empty) == 0)
            p->used[b->index] = false;
    }
    /* Still registered elsewhere? The kernel holds its own pin on the pages; unmapping only
     * drops ours, and nobody can name that slot with this memory again. */
    munmap(b->mem, b->size);
    b->mem = NULL;
    b->index = -1;
}
