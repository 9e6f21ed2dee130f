/* A program of the previous release: built against test/abi/old_layout.py's
 * broker.h (the last option and the last gauge unknown), linked with the
 * current library.  docs/abi.md's promise: it keeps working, the option it
 * does not know takes its default, and the library writes nothing past the
 * struct the program allocated.  Prints TAP. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "old_broker.h" /* generated in the build directory */
#include <mdp/error.h>

#define CANARY 0x5a

static int n, failed;
static void check(int ok, const char *what) {
  n++;
  failed += !ok;
  printf("%s %d - %s\n", ok ? "ok" : "not ok", n, what);
}

/* The struct, then bytes the library must not touch. */
typedef struct {
  mdp_broker_options_t opts;
  unsigned char after[64];
} guarded_opts_t;
typedef struct {
  mdp_broker_stats_t stats;
  unsigned char after[64];
} guarded_stats_t;

static int untouched(const unsigned char *p, size_t size) {
  for (size_t i = 0; i < size; i++)
    if (p[i] != CANARY)
      return 0;
  return 1;
}

static void on_closed(mdp_broker_t *b) { *(int *)mdp_broker_get_data(b) = 1; }

int main(void) {
  guarded_opts_t o;
  memset(&o, CANARY, sizeof o);
  mdp_broker_options_init(&o.opts);
  check(untouched(o.after, sizeof o.after),
        "options_init writes nothing past the old struct");
  check(o.opts.heartbeat_interval_ms == 2500 && o.opts.heartbeat_liveness == 4,
        "the fields it knows have their defaults");
  /* The option this program does not know lies in what it thought were
   * reserved bytes (old_layout.py names them reserved_was_*): the library's
   * init wrote its default there. */
  unsigned char *folded = (unsigned char *)&o.opts +
                          offsetof(mdp_broker_options_t,
                                   reserved_was_metrics_max_services_);
  check(!untouched(folded, sizeof(size_t)),
        "init gave the option it does not know its default");
  o.opts.heartbeat_interval_ms = 100;
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_t *b = NULL;
  int rc = mdp_broker_new(&loop, &o.opts, &b);
  check(rc == 0, "mdp_broker_new takes the old options");
  if (rc != 0)
    return 1;
  int closed = 0;
  mdp_broker_set_data(b, &closed);
  check(mdp_broker_bind(b, "tcp://127.0.0.1:*") == 0, "it binds");
  guarded_stats_t s;
  memset(&s, CANARY, sizeof s);
  mdp_broker_get_stats(b, &s.stats);
  check(untouched(s.after, sizeof s.after),
        "get_stats writes nothing past the old struct");
  check(s.stats.workers == 0 && s.stats.requests == 0,
        "the counters it knows read right");
  mdp_broker_close(b, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  check(closed && uv_loop_close(&loop) == 0, "it closes cleanly");
  printf("1..%d\n# %d passed, %d failed\n", n, n - failed, failed);
  return failed != 0;
}
