/*
 * json_arena.h — bump allocation for the jansson tree of one request body.
 *
 * Parsing a 1,000-movement JSON body builds a tree of ~40,000 small jansson
 * nodes, each malloc'd and later freed one by one; with glibc's fastbin
 * consolidation that was about a quarter of the producer's CPU per JSON
 * movement. While a thread has its arena switched on, jansson's allocations
 * on that thread are carved from a few large per-thread blocks instead, and
 * freeing them is a no-op; the blocks are reused by the thread's next request.
 *
 * jansson's allocator is process-wide (json_set_alloc_funcs), so
 * json_arena_install() must run once at startup before any other jansson
 * call; outside an arena its functions are plain malloc/free. Rules for a
 * thread using the arena:
 *   - switch it on only around the parse (json_arena_on/off): every value
 *     made then lives in the arena and must be released (json_decref) on the
 *     same thread before json_arena_reset;
 *   - nothing made while it is on may outlive the request or leave the
 *     thread (json_dumps output, for instance, is freed with free()).
 *
 * @locality every function acts on the calling thread's arena only.
 */
#ifndef INVSYNC_JSON_ARENA_H
#define INVSYNC_JSON_ARENA_H

/* Route jansson's allocations through the arena hooks. Once, at startup. */
void json_arena_install(void);

/* Start / stop carving jansson allocations of this thread from its arena. */
void json_arena_on(void);
void json_arena_off(void);

/*
 * Forget everything allocated in this thread's arena (its values must have
 * been released); keeps up to a few MiB of blocks for the next request.
 */
void json_arena_reset(void);

/*
 * Free every block of this thread's arena (test shutdown). A thread that
 * exits has its blocks freed without this call.
 */
void json_arena_thread_release(void);

#endif
