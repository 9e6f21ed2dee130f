/* mdp_malloc_tune(): glibc's trim and mmap thresholds for processes that
 * move large messages (include/mdp/malloc.h says why and who calls it). */
#include <limits.h>
#include <stddef.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "mdp/error.h"
#include "mdp/malloc.h"

int mdp_malloc_tune(size_t keep_bytes) {
  if (keep_bytes == 0)
    return MDP_EINVAL;
#ifdef __GLIBC__
  /* glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2, which is
   * 4 MiB * sizeof(long) (DEFAULT_MMAP_THRESHOLD_MAX): 32 MiB on 64-bit. */
  size_t mmap_max = (size_t)4 * 1024 * 1024 * sizeof(long);
  size_t trim = keep_bytes < (size_t)INT_MAX ? keep_bytes : (size_t)INT_MAX;
  /* A block larger than what may be kept would be trimmed away when freed
   * at the top of the heap: map such blocks, and only those, on their own. */
  size_t mmap_thr = trim < mmap_max ? trim : mmap_max;
  /* Setting either threshold also turns off glibc's dynamic adjustment,
   * which is what lowers the trim threshold to twice the largest block
   * freed so far and makes the heap shrink and refault under a steady load
   * of large messages. */
  /* One arena: a thread's own arena (libzmq's I/O thread, which
   * allocates every large frame it receives) grows in heaps of at most
   * 64 MiB that glibc unmaps as soon as one is empty, whatever the trim
   * threshold, so bodies of several MiB came and went with their heaps
   * (measured with 16 MiB bodies: 530-1,600 page faults per round trip,
   * 52 with one arena).  The main arena is trimmed by the threshold only.
   * The price is one lock for every thread's allocations. */
  if (mallopt(M_MMAP_THRESHOLD, (int)mmap_thr) != 1 ||
      mallopt(M_TRIM_THRESHOLD, (int)trim) != 1 ||
      mallopt(M_ARENA_MAX, 1) != 1)
    return MDP_EINVAL;
  return 0;
#else
  return MDP_ENOTSUP;
#endif
}
