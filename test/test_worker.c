/* mdp_worker_t against a fake broker: a raw ROUTER socket that the test
 * drives frame by frame, so the worker is tested independently of
 * mdp_broker_t.  The last tests use the real broker. */
#include <limits.h>
#include <stdarg.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "mdp.h"

#include "fake_broker.h"

/* Takes the next message that is not a HEARTBEAT. */
static mdp_msg_t *fake_take_cmd(uv_loop_t *loop, fake_t *f, uint64_t ms) {
  uint64_t end = uv_hrtime() + t_slow(ms) * 1000000ull;
  while (uv_hrtime() < end) {
    fake_wait(loop, f, 1, 50);
    mdp_msg_t *m = fake_take(f);
    if (m == NULL)
      continue;
    if (frames_are(m, "MDPW02", "\x05")) {
      mdp_msg_destroy(m);
      continue;
    }
    return m;
  }
  return NULL;
}

/* --- worker side ----------------------------------------------------------- */

typedef struct {
  int requests;
  int closed;
  mdp_request_t req; /* copy of the last handle */
  mdp_msg_t *body;   /* last body, kept when not answered at once */
  int mode;          /* what the request callback does */
  int partials;
  int rc;            /* last reply's result */
} app_t;

enum { M_ECHO, M_KEEP, M_STREAM, M_CLOSE_IN_CB, M_ECHO_CLOSE_WAIT };

static void on_closed(mdp_worker_t *w);
static mdp_msg_t *str_body(const char *s);

static void on_request(mdp_worker_t *w, mdp_request_t req,
                       mdp_msg_t *body) {
  app_t *a = mdp_worker_get_data(w);
  a->requests++;
  a->req = req;
  switch (a->mode) {
  case M_ECHO:
    a->rc = mdp_worker_final(req, body);
    if (a->rc < 0)
      mdp_msg_destroy(body);
    break;
  case M_STREAM:
    for (int i = 0; i < a->partials; i++) {
      mdp_msg_t *part = mdp_msg_new();
      char buf[16];
      snprintf(buf, sizeof buf, "part%d", i);
      mdp_msg_append_str(part, buf);
      if (mdp_worker_partial(req, part) < 0)
        mdp_msg_destroy(part);
    }
    a->rc = mdp_worker_final(req, body);
    if (a->rc < 0)
      mdp_msg_destroy(body);
    break;
  case M_CLOSE_IN_CB:
    mdp_msg_destroy(body);
    mdp_worker_close(w, 0, on_closed);
    break;
  default:
    mdp_msg_destroy(a->body);
    a->body = body;
    break;
  }
}

static void on_closed(mdp_worker_t *w) {
  app_t *a = mdp_worker_get_data(w);
  a->closed = 1;
}

static int is_closed(void *arg) { return ((app_t *)arg)->closed; }
static int has_request(void *arg) { return ((app_t *)arg)->requests > 0; }

/* hb_ms 0: the defaults.  Otherwise heartbeats every hb_ms and a liveness
 * window of `liveness` of them. */
static mdp_worker_t *worker_start_l(uv_loop_t *loop, fake_t *f, app_t *a,
                                    uint64_t hb_ms, unsigned liveness) {
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  if (hb_ms) {
    o.heartbeat_interval_ms = hb_ms;
    o.heartbeat_liveness = liveness;
    o.reconnect_initial_ms = 20;
    o.reconnect_max_ms = 100;
  }
  mdp_worker_t *w = NULL;
  if (mdp_worker_new(loop, f->endpoint, "echo", &o, on_request, &w) != 0)
    return NULL;
  mdp_worker_set_data(w, a);
  return w;
}

static mdp_worker_t *worker_start(uv_loop_t *loop, fake_t *f, app_t *a,
                                  uint64_t hb_ms) {
  return worker_start_l(loop, f, a, hb_ms, 3);
}

static int worker_stop(uv_loop_t *loop, mdp_worker_t *w, app_t *a) {
  mdp_worker_close(w, 0, on_closed);
  int ok = t_run_until(loop, is_closed, a, 2000);
  mdp_msg_destroy(a->body);
  a->body = NULL;
  return ok;
}

/* --- tests ----------------------------------------------------------------- */

static void ready_frames_exact(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x01", "echo"));
  mdp_msg_destroy(m);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 1);
  CHECK_EQ(st.connected, 1);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* REQUEST in, FINAL out, frame for frame; bodies of several and of empty
 * frames. */
static void request_reply_exact(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-exact") == 0);
  app_t a = {0};
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "client-7", "", "hello", "world");
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "client-7", "", "hello", "world"));
  mdp_msg_destroy(m);
  fake_send(&f, ready, "MDPW02", "\x02", "c", "", "");
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "c", "", ""));
  mdp_msg_destroy(m);
  fake_send(&f, ready, "MDPW02", "\x02", "c", "", "", "x", "");
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "c", "", "", "x", ""));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  CHECK_EQ(a.requests, 3);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.finals, 3);
  CHECK_EQ(st.busy, 0);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void partial_stream(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_STREAM;
  a.partials = 3;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "req");
  mdp_msg_destroy(ready);
  const char *parts[] = {"part0", "part1", "part2"};
  for (int i = 0; i < 3; i++) {
    mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
    CHECK(frames_are(m, "MDPW02", "\x03", "cl", "", parts[i]));
    mdp_msg_destroy(m);
  }
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "req"));
  mdp_msg_destroy(m);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.partials, 3);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The application answers from its own timer, after the callback returned,
 * through a copy of the handle. */
static void timer_reply_cb(uv_timer_t *t) {
  app_t *a = t->data;
  mdp_msg_t *part = mdp_msg_new();
  mdp_msg_append_str(part, "later");
  if (mdp_worker_partial(a->req, part) < 0)
    mdp_msg_destroy(part);
  a->rc = mdp_worker_final(a->req, a->body);
  if (a->rc == 0)
    a->body = NULL;
}

static void async_reply_from_timer(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "slow");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  CHECK(mdp_worker_request_active(a.req));
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &a;
  uv_timer_start(&t, timer_reply_cb, 30, 0);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x03", "cl", "", "later"));
  mdp_msg_destroy(m);
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "slow"));
  mdp_msg_destroy(m);
  CHECK_EQ(a.rc, 0);
  CHECK(!mdp_worker_request_active(a.req));
  uv_close((uv_handle_t *)&t, NULL);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The fake answers heartbeats; the worker must stay on its first connection
 * and heartbeat too, also while busy. */
typedef struct {
  fake_t *f;
  mdp_msg_t *id;
  int got_hb;
} hb_t;

static void fake_hb_cb(uv_timer_t *t) {
  hb_t *h = t->data;
  fake_send(h->f, h->id, "MDPW02", "\x05");
  fake_pump(h->f);
  while (h->f->n > 0) {
    mdp_msg_t *m = fake_take(h->f);
    if (frames_are(m, "MDPW02", "\x05"))
      h->got_hb++;
    mdp_msg_destroy(m);
  }
}

static int hb_enough(void *arg) { return ((hb_t *)arg)->got_hb >= 40; }

static void heartbeats_both_ways(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP; /* busy for the whole test */
  /* Beats every 25 ms, a 500 ms liveness window (room for this machine's
   * stalls), and the test runs until 40 beats: two windows, which a worker
   * deaf to the broker's heartbeats would not survive. */
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, 25, 20);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "busy");
  hb_t h = {&f, ready, 0};
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &h;
  uv_timer_start(&t, fake_hb_cb, 25, 25);
  CHECK(t_run_until(&loop, hb_enough, &h, 10000));
  uv_close((uv_handle_t *)&t, NULL);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 1); /* never thought the broker dead */
  CHECK(st.heartbeats_received >= 20);
  CHECK(st.heartbeats_sent >= 40);
  CHECK_EQ(st.busy, 1);
  CHECK(mdp_worker_request_active(a.req));
  mdp_msg_destroy(ready);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A silent broker: the worker reconnects (a new identity) and sends READY
 * again; the request it had is abandoned and its late reply refused. */
static void silence_reconnects(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  /* a 300 ms window (more under valgrind): the REQUEST must get there
   * before the silence counts */
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, t_slow(50), 6);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "lost");
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_msg_t *again = fake_take_cmd(&loop, &f, 3000);
  CHECK(frames_are(again, "MDPW02", "\x01", "echo"));
  CHECK(!mdp_msg_frame_eq(again, 0, mdp_msg_data(ready, 0),
                          mdp_msg_frame_size(ready, 0)));
  mdp_msg_destroy(ready);
  mdp_msg_destroy(again);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK(st.connects >= 2);
  CHECK_EQ(st.abandoned, 1);
  CHECK_EQ(st.busy, 0);
  /* the stale handle: refused, body still ours, nothing sent */
  CHECK(!mdp_worker_request_active(a.req));
  CHECK_EQ(mdp_worker_final(a.req, a.body), MDP_ESTATE);
  CHECK_EQ(mdp_worker_partial(a.req, a.body), MDP_ESTATE);
  CHECK_EQ(mdp_msg_size(a.body), 1);
  /* the application finished with it: counted once, its FINAL only */
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.late_finals, 1);
  CHECK_EQ(mdp_worker_final(a.req, a.body), MDP_ESTATE);
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.late_finals, 1);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void disconnect_reconnects(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0); /* slow heartbeats */
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x06");
  mdp_msg_t *again = fake_take_cmd(&loop, &f, 3000);
  CHECK(frames_are(again, "MDPW02", "\x01", "echo"));
  /* and it serves on the new connection */
  fake_send(&f, again, "MDPW02", "\x02", "cl", "", "after");
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "after"));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  mdp_msg_destroy(again);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.disconnects_received, 1);
  CHECK_EQ(st.connects, 2);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void on_request_unused(mdp_worker_t *w, mdp_request_t req,
                              mdp_msg_t *body) {
  mdp_msg_destroy(body);
}

static int dropped_one(void *arg) {
  mdp_worker_stats_t st;
  mdp_worker_get_stats(arg, &st);
  return st.dropped_invalid == 1;
}

static void misuse_errors(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  mdp_worker_t *w = NULL;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  CHECK_EQ(o.heartbeat_interval_ms, 2500);
  CHECK_EQ(o.heartbeat_liveness, 4);
  CHECK_EQ(o.reconnect_initial_ms, 250);
  CHECK_EQ(o.reconnect_max_ms, 10000);
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "mmi.service", NULL,
                          on_request_unused, &w), MDP_ESERVICE);
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "", NULL, on_request_unused, &w),
           MDP_ESERVICE);
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "s", NULL, NULL, &w), MDP_EINVAL);
  CHECK(mdp_worker_new(&loop, "nonsense", "s", NULL, on_request_unused, &w) <
        0);
  CHECK_EQ(o.dialect, MDP_DIALECT_RFC18);
  o.dialect = MDP_DIALECT_ALL; /* a mask, not one dialect */
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "s", &o, on_request_unused, &w),
           MDP_EINVAL);
  o.dialect = (mdp_dialect_t)0;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "s", &o, on_request_unused, &w),
           MDP_EINVAL);

  app_t a = {0};
  a.mode = M_KEEP;
  w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_request_t never = {w, 0};
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_str(body, "x");
  CHECK_EQ(mdp_worker_final(never, body), MDP_ESTATE);
  CHECK_EQ(mdp_worker_final((mdp_request_t){NULL, 0}, body), MDP_EINVAL);
  CHECK_EQ(mdp_worker_partial((mdp_request_t){NULL, 7}, body), MDP_EINVAL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  /* a REQUEST while busy is the broker's error: dropped, not delivered */
  fake_send(&f, ready, "MDPW02", "\x02", "cl2", "", "q2");
  CHECK(t_run_until(&loop, dropped_one, w, 2000));
  mdp_msg_t *empty = mdp_msg_new();
  CHECK_EQ(mdp_worker_partial(a.req, empty), MDP_EINVAL);
  mdp_msg_destroy(empty);
  CHECK_EQ(mdp_worker_final(a.req, body), 0); /* body is the library's */
  body = mdp_msg_new();
  mdp_msg_append_str(body, "y");
  CHECK_EQ(mdp_worker_final(a.req, body), MDP_ESTATE);
  CHECK_EQ(mdp_worker_partial(a.req, body), MDP_ESTATE);
  CHECK_EQ(mdp_msg_size(body), 1); /* untouched, still ours */
  CHECK(mdp_msg_frame_eq(body, 0, "y", 1));
  mdp_msg_destroy(body);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "x"));
  mdp_msg_destroy(m);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.requests, 1);
  CHECK_EQ(st.dropped_invalid, 1);
  /* NULL body: one empty frame */
  fake_send(&f, ready, "MDPW02", "\x02", "cl3", "", "q3");
  a.requests = 0;
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  CHECK_EQ(mdp_worker_final(a.req, NULL), 0);
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl3", "", ""));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The options' times and liveness have bounds (MDP_WORKER_TIME_MAX_MS,
 * MDP_WORKER_LIVENESS_MAX) so that no arithmetic on them wraps: one past
 * each is MDP_EINVAL, the bound itself works. */
static int new_rc(uv_loop_t *loop, fake_t *f, const mdp_worker_options_t *o) {
  mdp_worker_t *w = NULL;
  app_t a = {0};
  int rc = mdp_worker_new(loop, f->endpoint, "echo", o, on_request, &w);
  if (rc == 0) {
    mdp_worker_set_data(w, &a);
    if (!worker_stop(loop, w, &a))
      return 1; /* never closed: shows as a wrong rc */
  }
  return rc;
}

static void options_ranges(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-ranges") == 0);
  const uint64_t MAX = MDP_WORKER_TIME_MAX_MS;
  mdp_worker_options_t o;
  struct {
    uint64_t interval;
    unsigned liveness;
    uint64_t initial, max;
    int rc;
  } cases[] = {
      {MAX, MDP_WORKER_LIVENESS_MAX, MAX, MAX, 0},
      {MAX + 1, 4, 250, 10000, MDP_EINVAL},
      {UINT64_MAX, 4, 250, 10000, MDP_EINVAL},
      {(uint64_t)1 << 62, 4, 250, 10000, MDP_EINVAL}, /* x4 wraps to 0 */
      {2500, MDP_WORKER_LIVENESS_MAX + 1, 250, 10000, MDP_EINVAL},
      {2500, UINT_MAX, 250, 10000, MDP_EINVAL},
      {2500, 0, 250, 10000, MDP_EINVAL},
      {0, 4, 250, 10000, MDP_EINVAL},
      {2500, 4, 250, MAX + 1, MDP_EINVAL},
      {2500, 4, 250, UINT64_MAX, MDP_EINVAL},
      /* doubling 2^63 wraps to 0: a reconnect loop with no delay */
      {2500, 4, (uint64_t)1 << 63, UINT64_MAX, MDP_EINVAL},
      {2500, 4, MAX + 1, MAX + 1, MDP_EINVAL},
      {2500, 4, 0, 10000, MDP_EINVAL},
      {2500, 4, 10001, 10000, MDP_EINVAL},
      {1, 1, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mdp_worker_options_init(&o);
    o.heartbeat_interval_ms = cases[i].interval;
    o.heartbeat_liveness = cases[i].liveness;
    o.reconnect_initial_ms = cases[i].initial;
    o.reconnect_max_ms = cases[i].max;
    int rc = new_rc(&loop, &f, &o);
    if (rc != cases[i].rc)
      printf("# case %zu: rc %d, expected %d\n", i, rc, cases[i].rc);
    CHECK_EQ(rc, cases[i].rc);
  }

  /* At the bounds it behaves: no heartbeat, no silence verdict, and after
   * a DISCONNECT a back-off of MAX ms (not a wrapped, immediate retry). */
  mdp_msg_t *old;
  while ((old = fake_take(&f)) != NULL) /* the workers above said goodbye */
    mdp_msg_destroy(old);
  mdp_worker_options_init(&o);
  o.heartbeat_interval_ms = MAX;
  o.heartbeat_liveness = MDP_WORKER_LIVENESS_MAX;
  o.reconnect_initial_ms = MAX;
  o.reconnect_max_ms = MAX;
  app_t a = {0};
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  fake_send(&f, ready, "MDPW02", "\x06");
  mdp_msg_destroy(ready);
  mdp_worker_stats_t st;
  t_run_until(&loop, NULL, NULL, 200);
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.disconnects_received, 1);
  CHECK_EQ(st.connects, 1);
  CHECK_EQ(st.heartbeats_sent, 0);
  fake_pump(&f);
  CHECK_EQ(f.n, 0);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Bounded memory: a frame over max_msg_size makes ZeroMQ drop the
 * connection for good (a protocol error: no reconnect), and the request
 * never reaches the application; the worker hears nothing more, gives the
 * broker up after its liveness window and connects a new socket (a new
 * identity at the fake), where it serves. */
typedef struct {
  fake_t *f;
  mdp_msg_t *old_id;
  mdp_msg_t *new_id; /* first message from another identity */
} newid_t;

static int from_new_identity(void *arg) {
  newid_t *n = arg;
  mdp_msg_t *m;
  while (n->new_id == NULL && (m = fake_take(n->f)) != NULL) {
    if (!mdp_msg_frame_eq(m, 0, mdp_msg_data(n->old_id, 0),
                          mdp_msg_frame_size(n->old_id, 0)))
      n->new_id = m;
    else
      mdp_msg_destroy(m);
  }
  return n->new_id != NULL;
}

static void max_msg_size_enforced(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0); /* inproc has no limit */
  app_t a = {0};
  a.mode = M_ECHO;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  CHECK_EQ(o.max_msg_size, 64 * 1024 * 1024);
  o.max_msg_size = 1000;
  o.heartbeat_interval_ms = 50;
  o.heartbeat_liveness = 10;
  o.reconnect_initial_ms = 20;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  static char big[2001];
  memset(big, 'x', 2000);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", big);
  /* The worker's next message comes over a new connection. */
  newid_t n = {&f, ready, NULL};
  int ok = t_run_until(&loop, from_new_identity, &n, 5000);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  printf("# after a %zu-byte frame: %d requests delivered, %s\n",
         strlen(big), a.requests,
         ok ? "a new connection" : "no new connection");
  CHECK_EQ(a.requests, 0);
  CHECK(ok);
  CHECK(frames_are(n.new_id, "MDPW02", "\x01", "echo"));
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 2);
  /* frames up to the limit still pass, on the new connection */
  big[900] = '\0';
  fake_send(&f, n.new_id, "MDPW02", "\x02", "cl", "", big);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", big));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  mdp_msg_destroy(n.new_id);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A message from the broker with more than max_frames frames is discarded
 * whole and counted; the next request is served. */
static void max_frames_enforced(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-max-frames") == 0);
  app_t a = {0};
  a.mode = M_ECHO;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  CHECK_EQ(o.max_frames, 1024);
  o.max_frames = 5; /* no REQUEST fits */
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w),
           MDP_EINVAL);
  o.max_msg_size = -2;
  o.max_frames = 10;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w),
           MDP_EINVAL);
  o.max_msg_size = -1; /* unlimited */
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  /* 4 + 7 = 11 frames: one too many */
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "1", "2", "3", "4", "5",
            "6", "7");
  /* 4 + 6 = 10: at the limit */
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "a", "b", "c", "d", "e",
            "f");
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "a", "b", "c", "d", "e",
                   "f"));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(a.requests, 1);
  CHECK_EQ(st.dropped_frames, 1);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* close(wait): the FINAL goes out first, then DISCONNECT, then close_cb. */
static void close_waits_for_request(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_worker_close(w, 1, on_closed);
  CHECK(!t_run_until(&loop, is_closed, &a, 100)); /* still waiting */
  CHECK(mdp_worker_request_active(a.req));
  CHECK_EQ(mdp_worker_final(a.req, a.body), 0);
  a.body = NULL;
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "q"));
  mdp_msg_destroy(m);
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x06"));
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A close that waits for the request in progress still ends when the
 * broker falls silent: the request is abandoned, close_cb runs (found in
 * review: the silence check once returned early for a closing worker). */
static void close_waiting_ends_on_silence(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-close-silence") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 50); /* 150 ms window */
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_worker_close(w, 1, on_closed);
  /* the broker says nothing; the worker (and its request handles) are gone
   * once close_cb has run */
  CHECK(t_run_until(&loop, is_closed, &a, 3000));
  mdp_msg_destroy(a.body);
  a.body = NULL;
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A fake broker whose socket has a receive high-water mark of `rcvhwm`
 * (set before the bind: inproc takes the binder's options from then). */
static int fake_open_hwm(fake_t *f, const char *bind, int rcvhwm) {
  memset(f, 0, sizeof *f);
  f->sock = zmq_socket(mdp_zmq_context(), ZMQ_ROUTER);
  int linger = 0;
  zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(f->sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
  if (zmq_bind(f->sock, bind) != 0)
    return -1;
  size_t len = sizeof f->endpoint;
  zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len);
  return 0;
}

/* What a fake broker read of a streamed reply. */
typedef struct {
  fake_t *f;
  int partials;
  int finals;
  int disconnects;
  int other;
  app_t *a;
} stream_read_t;

static int stream_read_all(void *arg) {
  stream_read_t *r = arg;
  mdp_msg_t *m;
  while ((m = fake_take(r->f)) != NULL) {
    if (mdp_msg_size(m) >= 3 && mdp_msg_frame_eq(m, 2, "\x03", 1))
      r->partials++;
    else if (frames_are(m, "MDPW02", "\x04", "cl", "", "q"))
      r->finals++;
    else if (frames_are(m, "MDPW02", "\x06"))
      r->disconnects++;
    else if (!frames_are(m, "MDPW02", "\x05"))
      r->other++;
    mdp_msg_destroy(m);
  }
  return r->a->closed && r->disconnects > 0;
}

#define STREAM_N 1500 /* more than the pipe holds (1000 + the fake's 1) */

/* A worker streams PARTIALs into a pipe the broker does not read, then its
 * FINAL, and closes waiting for the request: the FINAL is held back by the
 * reactor.  The close must wait for it instead of destroying it after the
 * usual 100 ms grace (the PARTIALs reached the client, so nobody would
 * send the request again). */
static int stream_then_close(uv_loop_t *loop, fake_t *f, app_t *a,
                             mdp_worker_t *w) {
  mdp_msg_t *ready = fake_take_cmd(loop, f, 2000);
  if (ready == NULL)
    return -1;
  fake_send(f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  if (!t_run_until(loop, has_request, a, 2000))
    return -1;
  for (int i = 0; i < STREAM_N; i++) {
    mdp_msg_t *part = str_body("part");
    if (mdp_worker_partial(a->req, part) != 0) {
      mdp_msg_destroy(part);
      return -1;
    }
  }
  mdp_worker_close(w, 1, on_closed);
  if (mdp_worker_final(a->req, a->body) != 0)
    return -1;
  a->body = NULL;
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  printf("# %d PARTIALs and the FINAL: %zu held by the reactor\n", STREAM_N,
         st.pending);
  return st.pending > 0 ? 0 : -1;
}

static void close_delivers_held_final(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open_hwm(&f, "inproc://worker-held-final", 1) == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0); /* 10 s liveness */
  CHECK(w != NULL);
  CHECK(stream_then_close(&loop, &f, &a, w) == 0);
  /* Well past the 100 ms grace, the broker still not reading: the worker
   * still waits (the old close had destroyed the FINAL by now). */
  CHECK(!t_run_until(&loop, is_closed, &a, 400));
  /* The broker reads again: everything arrives, then the close ends. */
  stream_read_t r = {.f = &f, .a = &a};
  int ok = t_run_until(&loop, stream_read_all, &r, 5000);
  printf("# broker read %d PARTIALs, %d FINAL, %d DISCONNECT\n", r.partials,
         r.finals, r.disconnects);
  CHECK(ok);
  CHECK_EQ(r.partials, STREAM_N);
  CHECK_EQ(r.finals, 1);
  CHECK_EQ(r.disconnects, 1);
  CHECK_EQ(r.other, 0);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The same with a broker that never reads again: the close still ends,
 * after about the liveness window (4 x 50 ms). */
static void close_held_bounded(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open_hwm(&f, "inproc://worker-held-bounded", 1) == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, 50, 4);
  CHECK(w != NULL);
  CHECK(stream_then_close(&loop, &f, &a, w) == 0);
  uint64_t start = uv_hrtime();
  CHECK(t_run_until(&loop, is_closed, &a, 3000));
  printf("# closed after %.0f ms with the pipe still full\n",
         (double)(uv_hrtime() - start) / 1e6);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* close(no wait) abandons the request; a reply before close_cb is refused. */
static void close_abandons_request(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_worker_close(w, 0, on_closed);
  mdp_worker_close(w, 0, on_closed); /* no-op */
  CHECK_EQ(mdp_worker_final(a.req, a.body), MDP_ESTATE);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x06"));
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  mdp_msg_destroy(a.body);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void close_from_callback(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-close-cb") == 0);
  app_t a = {0};
  a.mode = M_CLOSE_IN_CB;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x06"));
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* --- dialects: each one's frames, written out by hand from WIRE.md -------- */

typedef struct {
  mdp_dialect_t dialect;
  int lead;            /* every message starts with an empty frame */
  const char *header;
  const char *ready, *request, *partial, *final, *heartbeat, *disconnect;
  const char *other;   /* the header of a REQUEST in some other dialect */
  int other_lead;
} wd_t;

static const wd_t WD_RFC18 = {MDP_DIALECT_RFC18, 0, "MDPW02", "\x01", "\x02",
                              "\x03", "\x04", "\x05", "\x06", "MDPW01", 1};
static const wd_t WD_MAJORTOMO = {MDP_DIALECT_MAJORTOMO, 1, "MDPW02", "\x01",
                                  "\x02", "\x03", "\x04", "\x05", "\x06",
                                  "MDPW02", 0};
/* MDP/0.1: READY 1, REQUEST 2, REPLY 3, HEARTBEAT 4, DISCONNECT 5; no
 * PARTIAL. */
static const wd_t WD_MDP01 = {MDP_DIALECT_MDP01, 1, "MDPW01", "\x01", "\x02",
                              NULL, "\x03", "\x04", "\x05", "MDPW02", 1};

/* Builds [lead?] | header | command | rest... (rest NULL-terminated). */
static size_t wd_frames(const wd_t *d, const char *command, va_list ap,
                        const char **out, size_t max) {
  size_t n = 0;
  if (d->lead)
    out[n++] = "";
  out[n++] = d->header;
  out[n++] = command;
  const char *fr;
  while ((fr = va_arg(ap, const char *)) != NULL && n < max)
    out[n++] = fr;
  return n;
}

/* 1 if `m` is [identity | the dialect's frames for command, rest...]. */
static int wd_is(mdp_msg_t *m, const wd_t *d, const char *command, ...) {
  const char *fr[32];
  va_list ap;
  va_start(ap, command);
  size_t n = wd_frames(d, command, ap, fr, 32);
  va_end(ap);
  return frames_are_v(m, fr, n);
}

static void wd_send(fake_t *f, mdp_msg_t *id, const wd_t *d,
                    const char *command, ...) {
  const char *fr[32];
  va_list ap;
  va_start(ap, command);
  size_t n = wd_frames(d, command, ap, fr, 32);
  va_end(ap);
  fake_send_v(f, id, fr, n);
}

/* The next message that is not one of the dialect's HEARTBEATs; counts the
 * heartbeats skipped in `*hb` (may be NULL). */
static mdp_msg_t *wd_take_cmd(uv_loop_t *loop, fake_t *f, const wd_t *d,
                              int *hb, uint64_t ms) {
  uint64_t end = uv_hrtime() + t_slow(ms) * 1000000ull;
  while (uv_hrtime() < end) {
    fake_wait(loop, f, 1, 50);
    mdp_msg_t *m = fake_take(f);
    if (m == NULL)
      continue;
    if (wd_is(m, d, d->heartbeat, NULL)) {
      if (hb)
        (*hb)++;
      mdp_msg_destroy(m);
      continue;
    }
    return m;
  }
  return NULL;
}

/* Waits (at most 3 s, scaled) for `n` more of the dialect's HEARTBEATs; 1
 * if they came and nothing else did. */
static int wd_await_heartbeats(uv_loop_t *loop, fake_t *f, const wd_t *d,
                               int n) {
  int hb = 0;
  uint64_t end = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (hb < n && uv_hrtime() < end) {
    mdp_msg_t *m = wd_take_cmd(loop, f, d, &hb, 50);
    if (m != NULL) {
      printf("# a message of %zu frames instead of a heartbeat\n",
             mdp_msg_size(m));
      mdp_msg_destroy(m);
      return 0;
    }
  }
  return hb >= n;
}

static mdp_msg_t *str_body(const char *s) {
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, s);
  return m;
}

static int wd_dropped(void *arg) {
  mdp_worker_stats_t st;
  mdp_worker_get_stats(arg, &st);
  return st.dropped_invalid >= 1;
}

static int wd_heard(void *arg) {
  mdp_worker_stats_t st;
  mdp_worker_get_stats(arg, &st);
  return st.heartbeats_received >= 1;
}

/* A worker of dialect `d` against a raw ROUTER speaking `d`: READY,
 * HEARTBEATs both ways, REQUEST with a multi-frame body, PARTIALs (or
 * MDP_ENOTSUP for 0.1), FINAL/REPLY, a message of another dialect dropped,
 * DISCONNECT and re-registration, and the DISCONNECT of a closing worker:
 * every frame checked. */
static void worker_dialect(const wd_t *d) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.dialect = d->dialect;
  o.heartbeat_interval_ms = 50;
  o.heartbeat_liveness = 1000; /* the fake heartbeats only when told to */
  o.reconnect_initial_ms = 20;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(ready, d, d->ready, "echo", NULL));
  /* the worker's own heartbeats, in its dialect (and nothing else) */
  CHECK(wd_await_heartbeats(&loop, &f, d, 2));
  mdp_msg_t *m;
  wd_send(&f, ready, d, d->heartbeat, NULL);
  CHECK(t_run_until(&loop, wd_heard, w, 2000));

  wd_send(&f, ready, d, d->request, "client-7", "", "hello", "", "world",
          NULL);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  CHECK_EQ(mdp_msg_size(a.body), 3);
  CHECK(mdp_msg_frame_eq(a.body, 0, "hello", 5));
  CHECK(mdp_msg_frame_eq(a.body, 1, "", 0));
  CHECK(mdp_msg_frame_eq(a.body, 2, "world", 5));
  mdp_msg_t *part = str_body("p1");
  if (d->partial == NULL) {
    CHECK_EQ(mdp_worker_partial(a.req, part), MDP_ENOTSUP);
    CHECK_EQ(mdp_msg_size(part), 1); /* still ours */
    mdp_msg_destroy(part);
  } else {
    CHECK_EQ(mdp_worker_partial(a.req, part), 0);
    mdp_msg_t *two = str_body("p2");
    mdp_msg_append_mem(two, NULL, 0);
    CHECK_EQ(mdp_worker_partial(a.req, two), 0);
    m = wd_take_cmd(&loop, &f, d, NULL, 2000);
    CHECK(wd_is(m, d, d->partial, "client-7", "", "p1", NULL));
    mdp_msg_destroy(m);
    m = wd_take_cmd(&loop, &f, d, NULL, 2000);
    CHECK(wd_is(m, d, d->partial, "client-7", "", "p2", "", NULL));
    mdp_msg_destroy(m);
  }
  CHECK(mdp_worker_request_active(a.req));
  CHECK_EQ(mdp_worker_final(a.req, a.body), 0);
  a.body = NULL;
  m = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(m, d, d->final, "client-7", "", "hello", "", "world", NULL));
  mdp_msg_destroy(m);

  /* A REQUEST in another dialect is not this broker's language: dropped. */
  wd_t other = *d;
  other.header = d->other;
  other.lead = d->other_lead;
  wd_send(&f, ready, &other, "\x02", "c", "", "x", NULL);
  CHECK(t_run_until(&loop, wd_dropped, w, 2000));

  /* DISCONNECT in the dialect: a new socket, READY again */
  wd_send(&f, ready, d, d->disconnect, NULL);
  mdp_msg_t *again = wd_take_cmd(&loop, &f, d, NULL, 3000);
  CHECK(wd_is(again, d, d->ready, "echo", NULL));
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.requests, 1);
  CHECK_EQ(st.finals, 1);
  CHECK_EQ(st.partials, d->partial ? 2 : 0);
  CHECK_EQ(st.dropped_invalid, 1);
  CHECK_EQ(st.disconnects_received, 1);
  CHECK_EQ(st.connects, 2);
  /* serves on the new connection, then says goodbye in its dialect */
  a.mode = M_ECHO;
  wd_send(&f, again, d, d->request, "c2", "", "again", NULL);
  m = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(m, d, d->final, "c2", "", "again", NULL));
  mdp_msg_destroy(m);
  mdp_worker_close(w, 0, on_closed);
  m = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(m, d, d->disconnect, NULL));
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  mdp_msg_destroy(ready);
  mdp_msg_destroy(again);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* RFC 18: no HEARTBEAT while other commands flow.  A worker streams a
 * PARTIAL every interval/4 for several intervals: the fake broker counts
 * the HEARTBEATs meanwhile, which must be none, except where the machine
 * stalled the stream for a whole interval (then one is right); idle again,
 * the heartbeats resume. */
#define HBQ_MS 40

typedef struct {
  app_t *a;
  fake_t *f;
  int sent;        /* PARTIALs sent */
  int stalls;      /* gaps of a whole interval between two of them */
  uint64_t prev;   /* loop time of the last one */
  int heartbeats;  /* seen by the fake while streaming */
  int partials;    /* seen by the fake */
} hbq_t;

static void hbq_tick(uv_timer_t *t) {
  hbq_t *q = t->data;
  uint64_t now = uv_now(t->loop);
  if (q->sent > 0 && now - q->prev >= HBQ_MS)
    q->stalls++;
  q->prev = now;
  mdp_msg_t *part = str_body("chunk");
  if (mdp_worker_partial(q->a->req, part) == 0)
    q->sent++;
  else
    mdp_msg_destroy(part);
}

static int hbq_streamed(void *arg) {
  hbq_t *q = arg;
  mdp_msg_t *m;
  while ((m = fake_take(q->f)) != NULL) {
    if (frames_are(m, "MDPW02", "\x05"))
      q->heartbeats++;
    else if (frames_are(m, "MDPW02", "\x03", "cl", "", "chunk"))
      q->partials++;
    mdp_msg_destroy(m);
  }
  return q->sent >= 40; /* 10 intervals */
}

static void no_heartbeat_while_streaming(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-hb-quiet") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  /* the fake never heartbeats: a liveness window it cannot exhaust */
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, HBQ_MS, 10000);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "cl", "", "q");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, has_request, &a, 2000));

  hbq_t q = {.a = &a, .f = &f};
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &q;
  uv_timer_start(&t, hbq_tick, HBQ_MS / 4, HBQ_MS / 4);
  CHECK(t_run_until(&loop, hbq_streamed, &q, 20000));
  uv_timer_stop(&t);
  printf("# %d PARTIALs over about %d intervals: %d HEARTBEATs, %d stalls "
         "of an interval\n", q.sent, q.sent / 4, q.heartbeats, q.stalls);
  CHECK(q.heartbeats <= q.stalls);

  /* Idle again (the FINAL is the last send): heartbeats resume. */
  CHECK_EQ(mdp_worker_final(a.req, a.body), 0);
  a.body = NULL;
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  while (m != NULL && frames_are(m, "MDPW02", "\x03", "cl", "", "chunk")) {
    mdp_msg_destroy(m);
    m = fake_take_cmd(&loop, &f, 2000);
  }
  CHECK(frames_are(m, "MDPW02", "\x04", "cl", "", "q"));
  mdp_msg_destroy(m);
  CHECK(wd_await_heartbeats(&loop, &f, &WD_RFC18, 2));
  uv_close((uv_handle_t *)&t, NULL);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Majortomo's and the zguide's brokers heartbeat idle workers only: a busy
 * worker of those dialects must not take their silence for death, and must
 * still deliver its FINAL (issue found in review). */
static void busy_silence_tolerated(const wd_t *d) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.dialect = d->dialect;
  /* a 300 ms window (more under valgrind): the REQUEST must get there
   * while the worker is idle and the silence still counts */
  o.heartbeat_interval_ms = t_slow(30);
  o.heartbeat_liveness = 10;
  o.reconnect_initial_ms = 20;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(ready, d, d->ready, "echo", NULL));
  wd_send(&f, ready, d, d->request, "cl", "", "long job", NULL);
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  /* The broker says nothing for 3 liveness windows while the job runs. */
  int hb = 0;
  mdp_msg_t *m = wd_take_cmd(&loop, &f, d, &hb, 3 * 10 * 30);
  CHECK(m == NULL); /* no READY again: it did not reconnect */
  CHECK(hb > 0);    /* and it kept heartbeating */
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 1);
  CHECK_EQ(st.abandoned, 0);
  CHECK_EQ(mdp_worker_final(a.req, a.body), 0);
  a.body = NULL;
  m = wd_take_cmd(&loop, &f, d, NULL, 2000);
  CHECK(wd_is(m, d, d->final, "cl", "", "long job", NULL));
  mdp_msg_destroy(m);
  /* Idle again, silence counts once more: it reconnects. */
  m = wd_take_cmd(&loop, &f, d, NULL, 3000);
  CHECK(wd_is(m, d, d->ready, "echo", NULL));
  mdp_msg_destroy(m);
  mdp_msg_destroy(ready);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void busy_silence_majortomo(void) { busy_silence_tolerated(&WD_MAJORTOMO); }
static void busy_silence_mdp01(void) { busy_silence_tolerated(&WD_MDP01); }

/* After a stall of the worker's process longer than its liveness window,
 * the broker's heartbeat that arrived meanwhile is read before the silence
 * is judged (libuv runs timers before it polls). */
static void stall_reads_before_giving_up(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-stall") == 0);
  app_t a = {0};
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, 50, 4); /* 200 ms */
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  fake_send(&f, ready, "MDPW02", "\x05"); /* waits in the worker's pipe */
  mdp_msg_destroy(ready);
  usleep(400 * 1000); /* the stall: its heartbeat tick is long overdue */
  /* The tick reads the broker's heartbeat and sends its own; a worker that
   * judged the silence first would reconnect and send READY instead. */
  mdp_msg_t *m = NULL;
  uint64_t end = uv_hrtime() + t_slow(2000) * 1000000ull;
  while (m == NULL && uv_hrtime() < end) {
    fake_wait(&loop, &f, 1, 50);
    m = fake_take(&f);
  }
  CHECK(frames_are(m, "MDPW02", "\x05"));
  mdp_msg_destroy(m);
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 1);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A worker created outside the loop's callbacks after the loop sat idle
 * for longer than the liveness window: its silence counts from its
 * connect, not from the loop's stale cached time (which would make it give
 * up on the broker at its first heartbeat tick). */
static void silence_counts_from_connect(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-stale-time") == 0);
  usleep(700 * 1000); /* the loop's cached time is now 0.7 s old */
  app_t a = {0};
  mdp_worker_t *w = worker_start_l(&loop, &f, &a, 50, 10); /* 500 ms */
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  fake_send(&f, ready, "MDPW02", "\x05");
  mdp_msg_destroy(ready);
  /* Two heartbeat ticks later it is still on its first connection (a
   * worker that gave up at its first tick would have reconnected by now). */
  CHECK(wd_await_heartbeats(&loop, &f, &WD_RFC18, 2));
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK_EQ(st.connects, 1);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A broker that refuses the READY (DISCONNECT at once) is retried ever more
 * slowly, not at the initial delay forever (issue found in review). */
static void refused_worker_backs_off(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.reconnect_initial_ms = 20;
  o.reconnect_max_ms = 1000;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  /* Refuse every READY for 1.2 s. */
  uint64_t end = uv_hrtime() + 1200 * 1000000ull;
  int readies = 0;
  while (uv_hrtime() < end) {
    mdp_msg_t *m = fake_take_cmd(&loop, &f, 20);
    if (m && frames_are(m, "MDPW02", "\x01", "echo")) {
      readies++;
      fake_send(&f, m, "MDPW02", "\x06");
    }
    mdp_msg_destroy(m);
  }
  /* Doubling from 20 ms: 20+40+80+160+320+640 > 1200, so at most ~6
   * attempts (plus the first READY); without the back-off, about 40. */
  printf("# READYs in 1.2 s while refused: %d\n", readies);
  CHECK(readies <= 8);
  /* and it does keep trying (however slow this machine is right now) */
  end = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (readies < 2 && uv_hrtime() < end) {
    mdp_msg_t *m = fake_take_cmd(&loop, &f, 20);
    if (m && frames_are(m, "MDPW02", "\x01", "echo"))
      readies++;
    mdp_msg_destroy(m);
  }
  CHECK(readies >= 2);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void dialect_rfc18(void) { worker_dialect(&WD_RFC18); }
static void dialect_majortomo(void) { worker_dialect(&WD_MAJORTOMO); }
static void dialect_mdp01(void) { worker_dialect(&WD_MDP01); }

/* --- against the real broker ----------------------------------------------- */

typedef struct {
  int closed;
} bclose_t;

static void broker_closed(mdp_broker_t *b) {
  bclose_t *c = mdp_broker_get_data(b);
  c->closed = 1;
}

static int b_closed(void *arg) { return ((bclose_t *)arg)->closed; }

static int worker_registered(void *arg) {
  mdp_broker_stats_t st;
  mdp_broker_get_stats(arg, &st);
  return st.workers_idle >= 1;
}

typedef struct {
  mdp_broker_t *b;
  const char *ep;
} rebind_t;

static int rebind(void *arg) {
  rebind_t *r = arg;
  return mdp_broker_bind(r->b, r->ep) == 0;
}

/* A worker registers with a real broker, and again with a new broker bound
 * on the same endpoint after the first one was closed. */
static void broker_restart(const char *bind) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_options_t bo;
  mdp_broker_options_init(&bo);
  bo.heartbeat_interval_ms = 50;
  mdp_broker_t *b = NULL;
  CHECK_EQ(mdp_broker_new(&loop, &bo, &b), 0);
  CHECK_EQ(mdp_broker_bind(b, bind), 0);
  char ep[256];
  CHECK_EQ(mdp_broker_last_endpoint(b, ep, sizeof ep), 0);
  bclose_t bc = {0};
  mdp_broker_set_data(b, &bc);
  app_t a = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.heartbeat_interval_ms = 50;
  o.heartbeat_liveness = 3;
  o.reconnect_initial_ms = 20;
  o.reconnect_max_ms = 100;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, ep, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  CHECK(t_run_until(&loop, worker_registered, b, 3000));
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  bc.closed = 0;
  CHECK_EQ(mdp_broker_new(&loop, &bo, &b), 0);
  mdp_broker_set_data(b, &bc);
  /* ZeroMQ unbinds the old socket from its I/O thread: retry a while */
  rebind_t rb = {b, ep};
  CHECK(t_run_until(&loop, rebind, &rb, 3000));
  CHECK(t_run_until(&loop, worker_registered, b, 5000));
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  CHECK(st.connects >= 2);
  CHECK(worker_stop(&loop, w, &a));
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void broker_restart_inproc(void) { broker_restart("inproc://w-restart"); }
static void broker_restart_ipc(void) {
  char ep[128];
  snprintf(ep, sizeof ep, "ipc:///tmp/mdp-test-worker-%d", (int)getpid());
  broker_restart(ep);
}
static void broker_restart_tcp(void) { broker_restart("tcp://127.0.0.1:*"); }

static int two_requests(void *arg) { return ((app_t *)arg)->requests >= 2; }

/* A kept copy of a finished request's handle is stale: it never answers the
 * next request (ids are not reused), and the newer request is untouched. */
static void stale_handle_kept_by_value(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://worker-stale") == 0);
  app_t a = {0};
  a.mode = M_KEEP;
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x02", "c1", "", "one");
  CHECK(t_run_until(&loop, has_request, &a, 2000));
  mdp_request_t first = a.req; /* kept by value */
  CHECK_EQ(mdp_worker_final(first, a.body), 0);
  a.body = NULL;
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "c1", "", "one"));
  mdp_msg_destroy(m);
  fake_send(&f, ready, "MDPW02", "\x02", "c2", "", "two");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, two_requests, &a, 2000));
  CHECK(a.req.id != first.id);
  CHECK(!mdp_worker_request_active(first));
  CHECK(mdp_worker_request_active(a.req));
  mdp_msg_t *late = str_body("late");
  CHECK_EQ(mdp_worker_final(first, late), MDP_ESTATE);
  CHECK_EQ(mdp_worker_partial(first, late), MDP_ESTATE);
  CHECK(mdp_worker_request_active(a.req)); /* the newer request is intact */
  CHECK_EQ(mdp_worker_final(a.req, late), 0);
  m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "c2", "", "late"));
  mdp_msg_destroy(m);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The setup hook runs for every socket (the first and each reconnect's),
 * after the socket options are set, so it reads them back. */
static void socket_options_reach_socket(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  probe_t probe = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.reconnect_initial_ms = 20;
  o.max_msg_size = 4096;
  probe_options(&o.socket, &probe);
  app_t a = {0};
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  CHECK_EQ(probe.calls, 1);
  CHECK(probe_saw_options(&probe));
  CHECK_EQ(probe.maxmsgsize, 4096);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  memset(&probe, 0, sizeof probe);
  fake_send(&f, ready, "MDPW02", "\x06");
  mdp_msg_destroy(ready);
  ready = fake_take_cmd(&loop, &f, 2000); /* the new socket's READY */
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  mdp_msg_destroy(ready);
  CHECK_EQ(probe.calls, 1);
  CHECK(probe_saw_options(&probe));
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Defaults leave libzmq's values; a failing hook fails mdp_worker_new with
 * MDP_ESETUP and leaves nothing behind; out-of-range options: MDP_EINVAL. */
static void socket_setup_failure_and_ranges(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  probe_t probe = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.socket.setup = probe_setup;
  o.socket.setup_data = &probe;
  mdp_worker_t *w = NULL;
  probe.fail = 1;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w),
           MDP_ESETUP);
  CHECK_EQ(probe.calls, 1);
  CHECK_EQ(probe.sndhwm, 1000); /* libzmq's defaults, untouched */
  CHECK_EQ(probe.rcvhwm, 1000);
  CHECK_EQ(probe.keepalive, -1);
  CHECK_EQ(probe.ipv6, 0);
  CHECK(strcmp(mdp_strerror(MDP_ESETUP), "unknown error") != 0);
  int bad[][2] = {{0, -1}, {1, -1}, {2, 2}, {2, -2}, {3, 0}, {4, 0}, {5, -3},
                  {6, 2}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mdp_worker_options_init(&o);
    int *field[] = {&o.socket.sndhwm, &o.socket.rcvhwm, &o.socket.tcp_keepalive,
                    &o.socket.tcp_keepalive_idle, &o.socket.tcp_keepalive_intvl,
                    &o.socket.tcp_keepalive_cnt, &o.socket.ipv6};
    *field[bad[i][0]] = bad[i][1];
    CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w),
             MDP_EINVAL);
  }
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* tcp://[::1]:PORT just works: ZMQ_IPV6 is set for a bracketed literal. */
static void ipv6_literal_endpoint(void) {
  fake_t f;
  if (fake_open_ipv6(&f) != 0)
    return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  CHECK(strncmp(f.endpoint, "tcp://[::1]:", 12) == 0);
  probe_t probe = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.socket.setup = probe_setup;
  o.socket.setup_data = &probe;
  app_t a = {0};
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  CHECK_EQ(probe.ipv6, 1);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(ready, "MDPW02", "\x01", "echo"));
  fake_send(&f, ready, "MDPW02", "\x02", "c6", "", "over v6");
  mdp_msg_destroy(ready);
  mdp_msg_t *m = fake_take_cmd(&loop, &f, 2000);
  CHECK(frames_are(m, "MDPW02", "\x04", "c6", "", "over v6"));
  mdp_msg_destroy(m);
  CHECK(worker_stop(&loop, w, &a));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

typedef struct {
  int n;
  mdp_worker_event_t event[8];
  int err[8];
  int close_on_lost;
  int closing_after_close; /* mdp_worker_is_closing right after the close */
} events_t;

static void on_event(mdp_worker_t *w, mdp_worker_event_t event, int err,
                     void *data) {
  events_t *e = data;
  if (e->n < 8) {
    e->event[e->n] = event;
    e->err[e->n] = err;
  }
  e->n++;
  if (event == MDP_WORKER_BROKER_LOST && e->close_on_lost) {
    CHECK(!mdp_worker_is_closing(w));
    mdp_worker_close(w, 0, on_closed);
    e->closing_after_close = mdp_worker_is_closing(w);
  }
}

static int events_at_least(void *arg) { return ((events_t *)arg)->n >= 2; }
static int events_three(void *arg) { return ((events_t *)arg)->n >= 3; }
static int events_four(void *arg) { return ((events_t *)arg)->n >= 4; }
static int events_one(void *arg) { return ((events_t *)arg)->n >= 1; }

/* REGISTERED at the broker's first HEARTBEAT (not at READY); BROKER_LOST
 * with the reason: DISCONNECT, silence; a callback may close the worker. */
static void life_cycle_events(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  events_t ev = {0};
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.heartbeat_interval_ms = 50;
  o.heartbeat_liveness = 3;
  o.reconnect_initial_ms = 20;
  o.event_cb = on_event;
  o.event_data = &ev;
  app_t a = {0};
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, f.endpoint, "echo", &o, on_request, &w), 0);
  mdp_worker_set_data(w, &a);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  CHECK_EQ(ev.n, 0); /* READY sent is not registered */
  fake_send(&f, ready, "MDPW02", "\x05");
  CHECK(t_run_until(&loop, events_one, &ev, 2000));
  CHECK_EQ(ev.event[0], MDP_WORKER_REGISTERED);
  fake_send(&f, ready, "MDPW02", "\x05"); /* once per connection */
  fake_send(&f, ready, "MDPW02", "\x06");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, events_at_least, &ev, 2000));
  CHECK_EQ(ev.n, 2);
  CHECK_EQ(ev.event[1], MDP_WORKER_BROKER_LOST);
  CHECK_EQ(ev.err[1], MDP_ECANCELED);
  ready = fake_take_cmd(&loop, &f, 2000); /* reconnected */
  CHECK(ready != NULL);
  fake_send(&f, ready, "MDPW02", "\x05");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, events_three, &ev, 2000));
  CHECK_EQ(ev.event[2], MDP_WORKER_REGISTERED);
  ev.close_on_lost = 1; /* then silence: lost, and closed from the event */
  CHECK(t_run_until(&loop, events_four, &ev, 5000));
  CHECK_EQ(ev.event[3], MDP_WORKER_BROKER_LOST);
  CHECK_EQ(ev.err[3], MDP_ETIMEDOUT);
  CHECK(ev.closing_after_close); /* (the worker may be freed by now) */
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  CHECK_EQ(ev.n, 4); /* none while closing */
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* An unref'd worker does not keep uv_run(UV_RUN_DEFAULT) going; ref'd it
 * does; mdp_worker_is_closing follows mdp_worker_close. */
static void ref_unref_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  app_t a = {0};
  mdp_worker_t *w = worker_start(&loop, &f, &a, 0);
  CHECK(w != NULL);
  mdp_msg_t *ready = fake_take_cmd(&loop, &f, 2000);
  CHECK(ready != NULL);
  mdp_msg_destroy(ready);
  CHECK(uv_loop_alive(&loop));
  CHECK(!run_default_returns(&loop, 300)); /* ref'd: the watchdog stops it */
  mdp_worker_unref(w);
  CHECK(run_default_returns(&loop, 5000));
  CHECK(!mdp_worker_is_closing(w));
  mdp_worker_ref(w);
  CHECK(uv_loop_alive(&loop));
  mdp_worker_unref(w); /* closing still runs to the end */
  mdp_worker_close(w, 0, on_closed);
  CHECK(mdp_worker_is_closing(w));
  CHECK(t_run_until(&loop, is_closed, &a, 2000));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(ready_frames_exact);
  RUN(request_reply_exact);
  RUN(partial_stream);
  RUN(async_reply_from_timer);
  RUN(heartbeats_both_ways);
  RUN(silence_reconnects);
  RUN(disconnect_reconnects);
  RUN(misuse_errors);
  RUN(stale_handle_kept_by_value);
  RUN(socket_options_reach_socket);
  RUN(socket_setup_failure_and_ranges);
  RUN(ipv6_literal_endpoint);
  RUN(life_cycle_events);
  RUN(ref_unref_loop);
  RUN(options_ranges);
  RUN(max_msg_size_enforced);
  RUN(max_frames_enforced);
  RUN(close_waits_for_request);
  RUN(close_abandons_request);
  RUN(close_waiting_ends_on_silence);
  RUN(close_from_callback);
  RUN(close_delivers_held_final);
  RUN(close_held_bounded);
  RUN(dialect_rfc18);
  RUN(dialect_majortomo);
  RUN(no_heartbeat_while_streaming);
  RUN(busy_silence_majortomo);
  RUN(busy_silence_mdp01);
  RUN(refused_worker_backs_off);
  RUN(silence_counts_from_connect);
  RUN(stall_reads_before_giving_up);
  RUN(dialect_mdp01);
  RUN(broker_restart_inproc);
  RUN(broker_restart_ipc);
  RUN(broker_restart_tcp);
  t_context_term();
  return t_done();
}
