/*
 * json_arena.c — per-thread bump allocator behind jansson's allocation hooks
 * (see json_arena.h for the contract).
 *
 * A thread's arena is a list of blocks; allocation bumps an offset in the
 * newest block and opens a new block when it is full. Frees of pointers
 * inside the thread's blocks are ignored; anything else goes to free(), so
 * values made outside an arena (or by other threads) are unaffected. Load: a
 * request body of up to http.max_items movements needs a few MiB. A thread's
 * blocks are freed when the thread exits (a pthread key's destructor), so
 * the HTTP daemon's pool threads do not leak theirs at shutdown.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "json_arena.h"

#define BLOCK_MIN  ((size_t)1 << 20) /* 1 MiB */
#define KEEP_BYTES ((size_t)8 << 20) /* kept across requests per thread */
#define ALIGN      16

typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(ALIGN) unsigned char data[];
} block_t;

typedef struct arena {
    block_t *head; /* oldest first */
    block_t *cur;  /* where allocation goes on */
    block_t *tail;
    int on;
} arena_t;

static _Thread_local arena_t tl_arena;

/* Its destructor frees an exiting thread's blocks; set on a thread's first block. */
static pthread_key_t release_key;
static pthread_once_t release_once = PTHREAD_ONCE_INIT;
static int release_key_ok;

static void release_at_thread_exit(void *unused) {
    (void)unused;
    json_arena_thread_release();
}

static void make_release_key(void) {
    release_key_ok = pthread_key_create(&release_key, release_at_thread_exit) == 0;
}

static int in_arena(const arena_t *a, const void *p) {
    const block_t *b;
    for (b = a->head; b; b = b->next) {
        if ((const unsigned char *)p >= b->data && (const unsigned char *)p < b->data + b->cap)
            return 1;
    }
    return 0;
}

static void *arena_malloc(size_t n) {
    arena_t *a = &tl_arena;
    block_t *b;
    size_t need;

    if (!a->on)
        return malloc(n);
    need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < n)
        return NULL;
    for (b = a->cur; b && b->cap - b->used < need; b = b->next)
        ;
    if (!b) {
        size_t cap = need > BLOCK_MIN ? need : BLOCK_MIN;
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = NULL;
        if (a->tail) {
            a->tail->next = b;
        } else {
            a->head = b;
            if (release_key_ok)
                pthread_setspecific(release_key, a);
        }
        a->tail = b;
    }
    a->cur = b;
    b->used += need;
    return b->data + b->used - need;
}

static void arena_free(void *p) {
    if (!p || in_arena(&tl_arena, p))
        return;
    free(p);
}

void json_arena_install(void) {
    pthread_once(&release_once, make_release_key);
    json_set_alloc_funcs(arena_malloc, arena_free);
}

void json_arena_on(void) {
    tl_arena.on = 1;
}

void json_arena_off(void) {
    tl_arena.on = 0;
}

void json_arena_reset(void) {
    arena_t *a = &tl_arena;
    block_t *b, *last = NULL;
    size_t kept = 0;

    a->on = 0;
    for (b = a->head; b && kept + b->cap <= KEEP_BYTES; b = b->next) {
        b->used = 0;
        kept += b->cap;
        last = b;
    }
    while (b) {
        block_t *next = b->next;
        free(b);
        b = next;
    }
    if (last)
        last->next = NULL;
    else
        a->head = NULL;
    a->tail = last;
    a->cur = a->head;
}

void json_arena_thread_release(void) {
    arena_t *a = &tl_arena;
    while (a->head) {
        block_t *next = a->head->next;
        free(a->head);
        a->head = next;
    }
    a->cur = a->tail = NULL;
    a->on = 0;
}
