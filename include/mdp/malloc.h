/* libmdp: the C allocator and large messages (docs/performance.md, "Large
 * bodies and the allocator").
 *
 * Every frame ZeroMQ receives is a malloc'd buffer that is freed once the
 * frame is sent on.  With glibc's default (dynamic) thresholds, a process
 * that moves large bodies (64 KiB and up) hands freed buffers back to the
 * kernel (munmap, or trimming the heap) and faults fresh pages in for the
 * next message: measured in mdp-broker (docs/performance.md, round three),
 * 150-250 page faults and 1.5-2.0x the CPU of a raw-libzmq forwarder per
 * 1 MiB round trip, 1,400-1,500 faults at 16 MiB.  Keeping the freed memory
 * removes that cost (at most 1.1 page faults, 0.9-1.1x the CPU).
 *
 * The library never changes the process's allocator by itself: the
 * allocator belongs to the program, which may have its own reasons (memory
 * limits, another allocator).  A program that moves large messages through
 * libmdp (a broker, a client or worker sending files or frames) calls
 * mdp_malloc_tune() once at start, before it creates threads or contexts.
 * mdp-broker does, by default (--malloc-keep).
 */
#ifndef MDP_MALLOC_H
#define MDP_MALLOC_H

#include "mdp/export.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* mdp-broker's default for mdp_malloc_tune(): 256 MiB. */
#define MDP_MALLOC_KEEP_DEFAULT ((size_t)256 << 20)

/* Sets glibc's allocator so that freed message buffers are reused rather
 * than returned to the kernel, keeping at most about `keep_bytes` of free
 * memory at the top of each heap (glibc's M_TRIM_THRESHOLD: an arena whose
 * free top grows beyond it is trimmed back).  Blocks up to `keep_bytes`, or
 * up to glibc's largest mmap threshold (32 MiB on 64-bit systems) if that
 * is smaller, come from the heap instead of their own mmap (M_MMAP_THRESHOLD);
 * larger ones are still mapped and unmapped each time.  This turns off
 * glibc's dynamic thresholds for the whole process.  It also puts every
 * thread on one arena (M_ARENA_MAX 1): a thread's own arena (libzmq's I/O
 * thread receives every frame) grows in heaps of 64 MiB that glibc unmaps
 * as soon as one is empty, whatever the trim threshold, so bodies of
 * several MiB would still be faulted in again; the price is one allocator
 * lock for all threads, which a program with many allocating threads of
 * its own should weigh.
 *
 * The cost is resident memory: what the process held at its busiest stays
 * mapped, up to `keep_bytes` free, for reuse by the next messages
 * (measured in mdp-broker with 4 x 4 peers: 19 MiB with 1 MiB bodies
 * against 13-15 MiB untuned, 138 MiB with 16 MiB bodies against 42-58).
 *
 * Call it once, early (before threads); it is process-wide and not tied to
 * any libmdp object.  Returns 0, MDP_EINVAL if keep_bytes is 0 (to keep
 * glibc's defaults, do not call it), or MDP_ENOTSUP where the C library is
 * not glibc (nothing is changed). */
MDP_EXTERN int mdp_malloc_tune(size_t keep_bytes);

#ifdef __cplusplus
}
#endif
#endif /* MDP_MALLOC_H */
