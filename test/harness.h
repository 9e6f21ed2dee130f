/* A small TAP harness for libmdp's tests.
 *
 * Each test is a `static void name(void)`; CHECK* macros record a failure
 * and return from the test.  main() calls RUN(name) for each and returns
 * t_done(), which prints the TAP plan and "N passed, N failed".
 *
 * Loop helpers never wait forever: t_run_until() runs a loop until a
 * predicate holds or a deadline passes, so a lost wake-up shows as a failed
 * CHECK, not a hung test.
 */
#ifndef MDP_TEST_HARNESS_H
#define MDP_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <mdp/context.h>

static int t_failed_now_;
static int t_passed_;
static int t_failed_;
static int t_count_;
static const char *t_skip_; /* set by t_skip(): the test was skipped */

/* Marks the running test as skipped (TAP "# SKIP why"); it then returns. */
static inline void t_skip(const char *why) { t_skip_ = why; }

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      printf("# %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
      fflush(stdout);                                                          \
      t_failed_now_ = 1;                                                       \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                    \
    if (t_a_ != t_b_) {                                                        \
      printf("# %s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,   \
             __LINE__, #a, t_a_, #b, t_b_);                                    \
      fflush(stdout);                                                          \
      t_failed_now_ = 1;                                                       \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_MEM(ptr, len, str)                                               \
  CHECK((len) == strlen(str) && memcmp((ptr), (str), (len)) == 0)

#define RUN(fn) t_run_(#fn, fn)

static inline void t_run_(const char *name, void (*fn)(void)) {
  t_failed_now_ = 0;
  t_skip_ = NULL;
  uint64_t start = uv_hrtime();
  fn();
  double ms = (double)(uv_hrtime() - start) / 1e6;
  t_count_++;
  if (t_failed_now_) {
    t_failed_++;
    printf("not ok %d - %s (%.1f ms)\n", t_count_, name, ms);
  } else if (t_skip_) {
    t_passed_++;
    printf("ok %d - %s # SKIP %s\n", t_count_, name, t_skip_);
  } else {
    t_passed_++;
    printf("ok %d - %s (%.1f ms)\n", t_count_, name, ms);
  }
  fflush(stdout);
}

/* Terminates the library's shared ZeroMQ context, unless a test failed:
 * a failed CHECK returns early and may leave sockets open, on which
 * zmq_ctx_term() would block forever instead of letting the failure show. */
static inline void t_context_term(void) {
  if (t_failed_ == 0)
    mdp_zmq_context_term();
  else
    printf("# shared ZeroMQ context left open: a test failed\n");
}

static inline int t_done(void) {
  printf("1..%d\n", t_count_);
  printf("# %d passed, %d failed\n", t_passed_, t_failed_);
  return t_failed_ ? 1 : 0;
}

/* 1 in an AddressSanitizer build: its allocator keeps freed memory in
 * quarantine, so RSS-based bounds say nothing there. */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif

/* Divisor for heavy loop counts: MDP_TEST_SCALE=10 under valgrind. */
static inline int t_scale(int n) {
  const char *s = getenv("MDP_TEST_SCALE");
  int d = s ? atoi(s) : 1;
  if (d < 1)
    d = 1;
  n /= d;
  return n < 1 ? 1 : n;
}

/* Multiplier for timing bounds under slow tools (MDP_TEST_SLOW=5). */
static inline uint64_t t_slow(uint64_t ms) {
  const char *s = getenv("MDP_TEST_SLOW");
  int m = s ? atoi(s) : 1;
  return ms * (uint64_t)(m < 1 ? 1 : m);
}

static inline void t_guard_cb_(uv_timer_t *t) { (void)t; }

/* Runs `loop` until pred(arg) is true or `timeout_ms` passed; returns 1 if
 * the predicate held.  pred may be NULL: then runs for the whole time. */
static inline int t_run_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
                              uint64_t timeout_ms) {
  uint64_t deadline = uv_hrtime() + t_slow(timeout_ms) * 1000000ull;
  uv_timer_t guard; /* wakes the loop so the deadline is seen */
  uv_timer_init(loop, &guard);
  int ok = 0;
  for (;;) {
    if (pred && pred(arg)) {
      ok = 1;
      break;
    }
    if (uv_hrtime() >= deadline)
      break;
    uint64_t left = (deadline - uv_hrtime()) / 1000000ull + 1;
    uint64_t tick = left > 20 ? 20 : left;
    /* Repeating: a one-shot guard due by the loop's stale time would fire
     * in uv_run's timer phase and leave its poll phase with no timeout at
     * all (a hang when nothing else is due). */
    uv_timer_start(&guard, t_guard_cb_, tick, tick);
    uv_run(loop, UV_RUN_ONCE);
  }
  uv_timer_stop(&guard);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

/* Runs the loop until every handle is closed, then closes it: 0 on success,
 * UV_EBUSY if handles are still open (a leak of handles). */
static inline int t_loop_close(uv_loop_t *loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); i++)
    uv_run(loop, UV_RUN_NOWAIT);
  return uv_loop_close(loop);
}

#endif /* MDP_TEST_HARNESS_H */
