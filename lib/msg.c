/* mdp_msg_t: an array of zmq_msg_t with room at both ends.
 *
 * Frames live in one array, inline in the message for the common case of a
 * few frames and on the heap beyond that.  `head` is the index of the first
 * frame, so dropping or popping at the front is O(1), and a fresh message
 * keeps free slots before `head` for the largest header and the broker's
 * identity frame, so encoding and addressing a body never moves it.
 * A zmq_msg_t may be relocated by a plain struct copy: zmq_msg_move() is
 * nothing more than that plus re-initialising the source.
 *
 * Freed messages go to a small per-thread cache (at most MSG_CACHE_MAX),
 * and new ones come from it, so a loop that receives, forwards and frees
 * messages makes no heap allocation per message in the steady state.
 * Ownership: a cached message belongs to the cache of the thread that
 * freed it, which frees the cache when the thread exits (a pthread key
 * destructor); the process's main thread keeps its cache (still reachable
 * through its thread-local head) until exit.  In debug and sanitizer
 * builds (MDP_MSG_POISON), under AddressSanitizer and valgrind, a cached
 * message is marked inaccessible but for its link (so leak checkers follow
 * the list), so a use after mdp_msg_destroy() is still reported.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mdp/error.h"
#include "mdp/msg.h"
#include "msg_internal.h"

/* Poisoning cached messages is a debugging aid, built in where the tests
 * run (debug builds, sanitizers: MDP_MSG_POISON from lib/meson.build) and
 * left out of release builds, where each valgrind client request would
 * cost its dozen instructions on every message. */
#if defined(MDP_MSG_POISON) && defined(__SANITIZE_ADDRESS__)
#define MSG_ASAN 1
#elif defined(MDP_MSG_POISON) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MSG_ASAN 1
#endif
#endif
#ifdef MSG_ASAN
#include <sanitizer/asan_interface.h>
#define MSG_NOACCESS(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define MSG_UNDEFINED(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(MDP_MSG_POISON) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define MSG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define MSG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef MSG_NOACCESS
#define MSG_NOACCESS(p, n) ((void)(p), (void)(n))
#define MSG_UNDEFINED(p, n) ((void)(p), (void)(n))
#endif

#define INLINE_FRAMES MDP_MSG_INLINE_FRAMES
#define FRONT_ROOM MDP_MSG_FRONT_ROOM

/* Messages kept per thread: more than a loop holds between a receive and
 * the send that frees it, few enough (64 x 800 bytes) to forget. */
#define MSG_CACHE_MAX 64

#ifndef _WIN32
#include <pthread.h>

/* The cache is a list through each message's `frames` field, its first:
 * the rest of a cached message is marked inaccessible. */
_Static_assert(offsetof(mdp_msg_t, frames) == 0, "the cache's link is first");
static __thread mdp_msg_t *cache_head;
static __thread unsigned cache_count;
/* 1 once this thread registered its destructor; 2 once that ran (the
 * thread is exiting: free directly from then on). */
static __thread unsigned char cache_state;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_key_ok;

/* The key's destructor, at this thread's exit: frees every cached message
 * (the cache owns them) and stops caching for the rest of the exit. */
static void cache_drain(void *unused) {
  (void)unused;
  cache_state = 2;
  while (cache_head != NULL) {
    mdp_msg_t *msg = cache_head;
    MSG_UNDEFINED(&msg->head, sizeof *msg - offsetof(mdp_msg_t, head));
    cache_head = (mdp_msg_t *)(void *)msg->frames;
    free(msg);
  }
  cache_count = 0;
}

static void cache_key_create(void) {
  cache_key_ok = pthread_key_create(&cache_key, cache_drain) == 0;
}

/* Takes `msg` (inline frames, no frame in use) into this thread's cache;
 * 0 if the cache is full or cannot be used, and the caller frees it. */
static int cache_put(mdp_msg_t *msg) {
  if (cache_count >= MSG_CACHE_MAX || cache_state == 2)
    return 0;
  if (cache_state == 0) {
    /* The destructor runs only for a non-NULL key value. */
    pthread_once(&cache_once, cache_key_create);
    if (!cache_key_ok || pthread_setspecific(cache_key, &cache_head) != 0)
      return 0;
    cache_state = 1;
  }
  msg->frames = (zmq_msg_t *)(void *)cache_head;
  cache_head = msg;
  cache_count++;
  /* All but the link, which leak checkers must be able to follow. */
  MSG_NOACCESS(&msg->head, sizeof *msg - offsetof(mdp_msg_t, head));
  return 1;
}

/* A cached message, now the caller's (its fields to be set), or NULL. */
static mdp_msg_t *cache_get(void) {
  mdp_msg_t *msg = cache_head;
  if (msg == NULL)
    return NULL;
  MSG_UNDEFINED(&msg->head, sizeof *msg - offsetof(mdp_msg_t, head));
  cache_head = (mdp_msg_t *)(void *)msg->frames;
  cache_count--;
  return msg;
}
#else
static int cache_put(mdp_msg_t *msg) { (void)msg; return 0; }
/* A cached message, now the caller's (its fields to be set), or NULL. */
static mdp_msg_t *cache_get(void) { return NULL; }
#endif

mdp_msg_t *mdp__msg_new_at(size_t front) {
  mdp_msg_t *msg = cache_get();
  if (msg == NULL && (msg = malloc(sizeof *msg)) == NULL)
    return NULL;
  mdp__msg_reset(msg, front);
  return msg;
}

mdp_msg_t *mdp_msg_new(void) { return mdp__msg_new_at(FRONT_ROOM); }

/* Frees the message itself (its frames are closed or empty). */
static void msg_free(mdp_msg_t *msg) {
  if (msg->frames != msg->inline_frames)
    free(msg->frames);
  if (!cache_put(msg))
    free(msg);
}

void mdp_msg_destroy(mdp_msg_t *msg) {
  if (msg == NULL)
    return;
  for (size_t i = 0; i < msg->count; i++)
    zmq_msg_close(&msg->frames[msg->head + i]);
  msg_free(msg);
}

void mdp__msg_free_sent(mdp_msg_t *msg) { msg_free(msg); }

size_t mdp_msg_size(const mdp_msg_t *msg) { return msg->count; }

zmq_msg_t *mdp_msg_frame(mdp_msg_t *msg, size_t index) {
  return index < msg->count ? &msg->frames[msg->head + index] : NULL;
}

const void *mdp_msg_data(mdp_msg_t *msg, size_t index) {
  zmq_msg_t *f = mdp_msg_frame(msg, index);
  return f ? zmq_msg_data(f) : NULL;
}

size_t mdp_msg_frame_size(mdp_msg_t *msg, size_t index) {
  zmq_msg_t *f = mdp_msg_frame(msg, index);
  return f ? zmq_msg_size(f) : 0;
}

/* Makes room for `front` free slots before head and `back` after the last
 * frame, moving frames (and growing the array) only when needed. */
int mdp__msg_grow(mdp_msg_t *msg, size_t front, size_t back) {
  size_t tail_free = msg->cap - msg->head - msg->count;
  if (msg->head >= front && tail_free >= back)
    return 0;
  /* Re-centre with generous room on the side that ran out, so a run of
   * prepends (or appends) costs O(1) amortised. */
  /* With no front room asked for, keep the head only while it is small:
   * a message whose front frames are dropped again and again (a receive
   * buffer reused after each drop) would otherwise carry its ever larger
   * head into every new array. */
  size_t want_front = front ? front + msg->count + FRONT_ROOM
                      : msg->head < FRONT_ROOM ? msg->head
                                               : FRONT_ROOM;
  size_t want_back = back ? back + msg->count : tail_free;
  size_t need = want_front + msg->count + want_back;
  zmq_msg_t *frames = msg->frames;
  if (need > msg->cap) {
    frames = malloc(need * sizeof *frames);
    if (frames == NULL)
      return MDP_ENOMEM;
  }
  memmove(&frames[want_front], &msg->frames[msg->head],
          msg->count * sizeof *frames);
  if (frames != msg->frames) {
    if (msg->frames != msg->inline_frames)
      free(msg->frames);
    msg->frames = frames;
    msg->cap = need;
  }
  msg->head = want_front;
  return 0;
}

int mdp_msg_append(mdp_msg_t *msg, zmq_msg_t *frame) {
  int rc = mdp_msg_reserve_(msg, 0, 1);
  if (rc < 0)
    return rc;
  /* What zmq_msg_move does, without closing an empty destination. */
  msg->frames[msg->head + msg->count] = *frame;
  zmq_msg_init(frame);
  msg->count++;
  return 0;
}

int mdp_msg_prepend(mdp_msg_t *msg, zmq_msg_t *frame) {
  int rc = mdp_msg_reserve_(msg, 1, 0);
  if (rc < 0)
    return rc;
  msg->head--;
  msg->frames[msg->head] = *frame;
  zmq_msg_init(frame);
  msg->count++;
  return 0;
}

static int frame_from_mem(zmq_msg_t *frame, const void *data, size_t size) {
  if (zmq_msg_init_size(frame, size) != 0)
    return MDP_ENOMEM;
  if (size)
    memcpy(zmq_msg_data(frame), data, size);
  return 0;
}

/* Both build the frame in its slot: no temporary, no move, no close. */
int mdp_msg_append_mem(mdp_msg_t *msg, const void *data, size_t size) {
  int rc = mdp_msg_reserve_(msg, 0, 1);
  if (rc == 0)
    rc = frame_from_mem(&msg->frames[msg->head + msg->count], data, size);
  if (rc == 0)
    msg->count++;
  return rc;
}

int mdp_msg_prepend_mem(mdp_msg_t *msg, const void *data, size_t size) {
  int rc = mdp_msg_reserve_(msg, 1, 0);
  if (rc == 0)
    rc = frame_from_mem(&msg->frames[msg->head - 1], data, size);
  if (rc == 0) {
    msg->head--;
    msg->count++;
  }
  return rc;
}

int mdp_msg_append_str(mdp_msg_t *msg, const char *str) {
  return mdp_msg_append_mem(msg, str, strlen(str));
}

int mdp_msg_pop_front(mdp_msg_t *msg, zmq_msg_t *out) {
  return mdp__msg_pop_front(msg, out);
}

void mdp_msg_drop_front(mdp_msg_t *msg, size_t n) {
  mdp__msg_drop_front(msg, n);
}

int mdp_msg_append_msg(mdp_msg_t *dst, mdp_msg_t *src) {
  int rc = mdp_msg_reserve_(dst, 0, src->count);
  if (rc < 0)
    return rc;
  /* Relocating whole zmq_msg_t structs is what zmq_msg_move does. */
  memcpy(&dst->frames[dst->head + dst->count], &src->frames[src->head],
         src->count * sizeof(zmq_msg_t));
  dst->count += src->count;
  src->head = src->frames == src->inline_frames ? FRONT_ROOM : 0;
  src->count = 0;
  return 0;
}

mdp_msg_t *mdp_msg_dup(mdp_msg_t *msg) {
  mdp_msg_t *copy = mdp_msg_new();
  if (copy == NULL || mdp_msg_reserve_(copy, 0, msg->count) < 0)
    goto fail;
  for (size_t i = 0; i < msg->count; i++) {
    zmq_msg_t *slot = &copy->frames[copy->head + i];
    zmq_msg_init(slot);
    if (zmq_msg_copy(slot, &msg->frames[msg->head + i]) != 0) {
      zmq_msg_close(slot);
      goto fail;
    }
    copy->count++;
  }
  return copy;
fail:
  mdp_msg_destroy(copy);
  return NULL;
}

size_t mdp_msg_bytes(const mdp_msg_t *msg) {
  size_t total = 0;
  for (size_t i = 0; i < msg->count; i++)
    total += zmq_msg_size((zmq_msg_t *)&msg->frames[msg->head + i]);
  return total;
}

int mdp_msg_frame_eq(mdp_msg_t *msg, size_t index, const void *data,
                     size_t size) {
  zmq_msg_t *f = mdp_msg_frame(msg, index);
  return f != NULL && zmq_msg_size(f) == size &&
         (size == 0 || memcmp(zmq_msg_data(f), data, size) == 0);
}
