/* mdp_worker_group_t against in-process mdp_broker_t instances on the same
 * loop (tcp://127.0.0.1): slots spread over the brokers, never more than C
 * requests in progress, slots moving off a closed broker and coming back
 * when it is re-created on the same endpoint, and the API's contracts. */
#include <unistd.h>

#include "harness.h"
#include "mdp.h"

#define HB_MS 50
#define NB 3

/* How many silent heartbeats (of HB_MS) make a broker, a worker or the
 * group judge a peer dead.  The tests of a lost broker need the window
 * short: 3, 150 ms.  Under valgrind a live process stalls for longer than
 * that (more so on a loaded machine), so a live worker was expired by its
 * broker and a live broker judged lost by the group, and the counts of
 * moves and served requests came out wrong.  The window grows by the
 * factor the waits grow by (MDP_TEST_SLOW, t_slow): the waits are scaled
 * once, in t_run_until, and the window here, so each wait stays the same
 * number of windows. */
static unsigned liveness_short(void) { return (unsigned)t_slow(3); }
/* Tests whose promise is not about a loss: 5 s, which no stall reaches. */
static unsigned liveness_long(void) { return (unsigned)t_slow(100); }

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *b[NB];
  char ep[NB][256];
  const char *eps[NB];
  int closed_brokers;
  unsigned liveness; /* brokers' and workers', in heartbeats */
} farm_t;

static void broker_closed(mdp_broker_t *b) {
  farm_t *f = mdp_broker_get_data(b);
  f->closed_brokers++;
}

static int broker_open(farm_t *f, int i, const char *bind) {
  mdp_broker_options_t o;
  mdp_broker_options_init(&o);
  o.heartbeat_interval_ms = HB_MS;
  o.heartbeat_liveness = f->liveness;
  if (mdp_broker_new(&f->loop, &o, &f->b[i]) != 0)
    return -1;
  mdp_broker_set_data(f->b[i], f);
  if (mdp_broker_bind(f->b[i], bind) != 0)
    return -1;
  return mdp_broker_last_endpoint(f->b[i], f->ep[i], sizeof f->ep[i]);
}

static int farm_open(farm_t *f, unsigned liveness) {
  memset(f, 0, sizeof *f);
  f->liveness = liveness;
  uv_loop_init(&f->loop);
  for (int i = 0; i < NB; i++) {
    if (broker_open(f, i, "tcp://127.0.0.1:*") != 0)
      return -1;
    f->eps[i] = f->ep[i];
  }
  return 0;
}

static int brokers_closed(void *arg) {
  farm_t *f = arg;
  int open = 0;
  for (int i = 0; i < NB; i++)
    open += f->b[i] != NULL;
  return f->closed_brokers >= open;
}

static int farm_close(farm_t *f) {
  for (int i = 0; i < NB; i++)
    if (f->b[i] != NULL)
      mdp_broker_close(f->b[i], broker_closed);
  int ok = t_run_until(&f->loop, brokers_closed, f, 3000);
  return ok && t_loop_close(&f->loop) == 0;
}

/* Workers registered for "svc" at broker i (idle + busy). */
static long workers_at(farm_t *f, int i) {
  mdp_broker_service_stats_t s;
  if (f->b[i] == NULL || mdp_broker_get_service_stats(f->b[i], "svc", &s) != 0)
    return 0;
  return (long)(s.workers_idle + s.workers_busy);
}

/* On a failed check: what the brokers and the group saw (a worker expired
 * for silence, a request lost with it, a broker judged lost). */
static void farm_diag(farm_t *f, mdp_worker_group_t *g) {
  for (int i = 0; i < NB; i++) {
    mdp_broker_stats_t s;
    if (f->b[i] == NULL)
      continue;
    mdp_broker_get_stats(f->b[i], &s);
    printf("# broker %d: workers expired %llu, redispatched %llu, lost with "
           "a worker %llu, expired in queue %llu, unroutable %llu\n",
           i, (unsigned long long)s.workers_expired,
           (unsigned long long)s.redispatched,
           (unsigned long long)s.dropped_worker_lost,
           (unsigned long long)s.dropped_expired,
           (unsigned long long)s.dropped_unroutable);
  }
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  printf("# group: brokers lost %llu, back %llu, moves %llu\n",
         (unsigned long long)st.brokers_lost,
         (unsigned long long)st.brokers_back, (unsigned long long)st.moves);
}

/* --- the service: answers after a delay, counting overlapping requests -- */

typedef struct {
  uv_timer_t timer;
  mdp_request_t req;
  mdp_msg_t *body;
  struct svc_s *svc;
} job_t;

typedef struct svc_s {
  int in_progress;
  int max_in_progress;
  int requests;
  int answered;
  uint64_t delay_ms; /* 0: answer in the callback */
  int keep;          /* keep the request unanswered */
  mdp_request_t kept;
  mdp_msg_t *kept_body;
  mdp_request_t kept_all[4]; /* every kept request, in order */
  mdp_msg_t *kept_bodies[4];
  int nkept;
  int close_in_cb;
  int closed;
} svc_t;

static void job_freed(uv_handle_t *h) { free(h->data); }

static void job_answer(uv_timer_t *t) {
  job_t *j = t->data;
  j->svc->in_progress--;
  j->svc->answered++;
  if (mdp_worker_final(j->req, j->body) < 0)
    mdp_msg_destroy(j->body);
  uv_close((uv_handle_t *)t, job_freed);
}

static void group_closed(mdp_worker_group_t *g) {
  svc_t *s = mdp_worker_group_get_data(g);
  s->closed = 1;
}

static void on_request(mdp_worker_group_t *g, mdp_request_t req,
                       mdp_msg_t *body) {
  svc_t *s = mdp_worker_group_get_data(g);
  s->requests++;
  s->in_progress++;
  if (s->in_progress > s->max_in_progress)
    s->max_in_progress = s->in_progress;
  if (s->close_in_cb) {
    mdp_msg_destroy(body);
    mdp_worker_group_close(g, 0, group_closed);
    mdp_worker_group_close(g, 0, group_closed); /* a no-op */
    return;
  }
  if (s->keep) {
    s->kept = req;
    s->kept_body = body;
    if (s->nkept < 4) {
      s->kept_all[s->nkept] = req;
      s->kept_bodies[s->nkept++] = body;
    }
    return;
  }
  if (s->delay_ms == 0) {
    s->in_progress--;
    s->answered++;
    if (mdp_worker_final(req, body) < 0)
      mdp_msg_destroy(body);
    return;
  }
  job_t *j = calloc(1, sizeof *j);
  j->req = req;
  j->body = body;
  j->svc = s;
  uv_timer_init(mdp_worker_group_loop(g), &j->timer);
  j->timer.data = j;
  uv_timer_start(&j->timer, job_answer, s->delay_ms, 0);
}

static mdp_worker_group_t *group_start(farm_t *f, svc_t *s, size_t c) {
  mdp_worker_group_options_t o;
  mdp_worker_group_options_init(&o);
  o.worker.heartbeat_interval_ms = HB_MS;
  o.worker.heartbeat_liveness = f->liveness;
  o.worker.reconnect_initial_ms = 20;
  o.worker.reconnect_max_ms = 100;
  o.concurrency = c;
  mdp_worker_group_t *g = NULL;
  if (mdp_worker_group_new(&f->loop, f->eps, NB, "svc", on_request, &o, &g) !=
      0)
    return NULL;
  mdp_worker_group_set_data(g, s);
  return g;
}

static int is_closed(void *arg) { return ((svc_t *)arg)->closed; }

static int group_stop(farm_t *f, mdp_worker_group_t *g, svc_t *s) {
  mdp_worker_group_close(g, 0, group_closed);
  return t_run_until(&f->loop, is_closed, s, 3000);
}

/* --- clients ------------------------------------------------------------ */

typedef struct {
  int ok;
  int failed;
  int sent;
} load_t;

static void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  (void)c;
  (void)id;
  load_t *l = data;
  mdp_msg_destroy(body);
  if (final) {
    if (status == 0)
      l->ok++;
    else
      l->failed++;
  }
}

/* One client per broker, `per` requests each. */
static int send_load(farm_t *f, mdp_client_t **cl, load_t *l, int per) {
  for (int i = 0; i < NB; i++) {
    mdp_client_options_t o;
    mdp_client_options_init(&o);
    o.timeout_ms = t_slow(5000);
    o.retries = 0;
    if (mdp_client_new(&f->loop, &f->eps[i], 1, &o, &cl[i]) != 0)
      return -1;
    for (int k = 0; k < per; k++) {
      mdp_msg_t *m = mdp_msg_new();
      mdp_msg_append_str(m, "job");
      if (mdp_client_request(cl[i], "svc", m, NULL, on_reply, l, NULL) != 0)
        return -1;
      l->sent++;
    }
  }
  return 0;
}

static int load_done(void *arg) {
  load_t *l = arg;
  return l->ok + l->failed == l->sent;
}

static void close_clients(mdp_client_t **cl) {
  for (int i = 0; i < NB; i++)
    if (cl[i] != NULL)
      mdp_client_close(cl[i], NULL);
}

/* --- spread and the limit --------------------------------------------- */

typedef struct {
  farm_t *f;
  long want[NB];
} spread_t;

static int spread_is(void *arg) {
  spread_t *s = arg;
  for (int i = 0; i < NB; i++)
    if (workers_at(s->f, i) != s->want[i])
      return 0;
  return 1;
}

/* Promise: C slots are spread round-robin over the brokers, each a real
 * worker connection; the load of all brokers together never has more
 * than C requests in progress, and every broker's requests are served. */
static void slots_spread_and_limit(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_long()) == 0);
  svc_t s = {0};
  s.delay_ms = 5;
  mdp_worker_group_t *g = group_start(&f, &s, 5);
  CHECK(g != NULL);
  spread_t sp = {&f, {2, 2, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  mdp_client_t *cl[NB] = {0};
  load_t l = {0};
  CHECK(send_load(&f, cl, &l, 40) == 0);
  CHECK(t_run_until(&f.loop, load_done, &l, 20000));
  if (l.ok != 3 * 40)
    farm_diag(&f, g);
  CHECK_EQ(l.ok, 3 * 40);
  printf("# max in progress %d (C = 5)\n", s.max_in_progress);
  CHECK(s.max_in_progress <= 5);
  CHECK(s.max_in_progress >= 2); /* the load did overlap */
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.requests, 3 * 40);
  CHECK_EQ(st.slots, 5);
  CHECK(st.max_busy <= 5 && st.max_busy >= 2);
  if (st.moves != 0 || st.brokers_alive != NB)
    farm_diag(&f, g);
  CHECK_EQ(st.brokers_alive, NB);
  CHECK_EQ(st.moves, 0);
  for (size_t i = 0; i < NB; i++) {
    mdp_worker_group_broker_t b;
    CHECK_EQ(mdp_worker_group_get_broker(g, i, &b), 0);
    CHECK(strcmp(b.endpoint, f.ep[i]) == 0);
    CHECK_EQ(b.requests, 40); /* each client used its own broker */
    CHECK(b.alive);
  }
  mdp_worker_group_broker_t none;
  CHECK_EQ(mdp_worker_group_get_broker(g, NB, &none), MDP_EINVAL);
  CHECK(none.endpoint == NULL);
  close_clients(cl);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

typedef struct {
  mdp_worker_group_t *g;
  uint64_t probes;
} probes_t;

static int probes_at_least(void *arg) {
  probes_t *p = arg;
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(p->g, &st);
  return st.probes >= p->probes;
}

typedef struct {
  mdp_worker_group_t *g;
  uint64_t lost;
} lost_t;

static int lost_at_least(void *arg) {
  lost_t *l = arg;
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(l->g, &st);
  return st.brokers_lost >= l->lost;
}

/* Promise: with C below the number of brokers the slot-less broker gets
 * no worker (the group never makes more than C), it is probed (MMI) and
 * judged live, and nothing moves while the spread is as even as it can
 * be. */
static void fewer_slots_than_brokers(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_long()) == 0);
  svc_t s = {0};
  s.delay_ms = 2;
  mdp_worker_group_t *g = group_start(&f, &s, 2);
  CHECK(g != NULL);
  spread_t sp = {&f, {1, 1, 0}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  /* Over several check intervals the slot-less broker is probed, never
   * given a third worker.  One probe is in flight at a time, so a third
   * probe sent means two were answered. */
  probes_t pr = {g, 3};
  CHECK(t_run_until(&f.loop, probes_at_least, &pr, 5000));
  CHECK(spread_is(&sp));
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.brokers_alive, NB); /* the probes found broker 2 alive */
  CHECK_EQ(st.brokers_lost, 0);
  CHECK_EQ(st.moves, 0);
  CHECK(s.max_in_progress <= 2);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

/* --- a broker lost and back ------------------------------------------- */

typedef struct {
  farm_t *f;
  mdp_worker_group_t *g;
  int idx;
  size_t slots;
  long max_total; /* most workers registered at once, all brokers */
} watch_t;

static long total_workers(farm_t *f) {
  long t = 0;
  for (int i = 0; i < NB; i++)
    t += workers_at(f, i);
  return t;
}

static int broker_has_slots(void *arg) {
  watch_t *w = arg;
  long t = total_workers(w->f);
  if (t > w->max_total)
    w->max_total = t;
  mdp_worker_group_broker_t b;
  mdp_worker_group_get_broker(w->g, (size_t)w->idx, &b);
  return b.slots == w->slots;
}

/* Promise: when a broker goes away, its slots move to the live ones (the
 * requests they get are served there); when it is back on the same
 * endpoint, slots move back to it, one per check interval, and at no time
 * are more than C workers registered. */
static void broker_lost_and_back(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_short()) == 0);
  svc_t s = {0};
  mdp_worker_group_t *g = group_start(&f, &s, 4);
  CHECK(g != NULL);
  spread_t sp = {&f, {2, 1, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  /* Broker 0 (two slots) closes. */
  mdp_broker_close(f.b[0], broker_closed);
  f.b[0] = NULL;
  watch_t w = {&f, g, 0, 0, 0};
  uint64_t t0 = uv_hrtime();
  CHECK(t_run_until(&f.loop, broker_has_slots, &w, 5000));
  spread_t moved = {&f, {0, 2, 2}};
  CHECK(t_run_until(&f.loop, spread_is, &moved, 3000));
  printf("# figure: broker closed -> its slots registered elsewhere after "
         "%.0f ms (heartbeat %d ms x %u)\n",
         (uv_hrtime() - t0) / 1e6, HB_MS, f.liveness);
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.moves, 2);
  CHECK_EQ(st.brokers_lost, 1);
  CHECK_EQ(st.brokers_alive, NB - 1);
  /* The live brokers serve. */
  mdp_client_t *cl[NB] = {0};
  load_t l = {0};
  for (int i = 1; i < NB; i++) {
    CHECK_EQ(mdp_client_new(&f.loop, &f.eps[i], 1, NULL, &cl[i]), 0);
    mdp_msg_t *m = mdp_msg_new();
    mdp_msg_append_str(m, "x");
    CHECK_EQ(mdp_client_request(cl[i], "svc", m, NULL, on_reply, &l, NULL), 0);
    l.sent++;
  }
  CHECK(t_run_until(&f.loop, load_done, &l, 5000));
  CHECK_EQ(l.ok, 2);
  /* Broker 0 is back on its endpoint: a slot returns to it. */
  char ep0[256];
  snprintf(ep0, sizeof ep0, "%s", f.ep[0]);
  CHECK(broker_open(&f, 0, ep0) == 0);
  CHECK(strcmp(f.ep[0], ep0) == 0);
  t0 = uv_hrtime();
  spread_t back = {&f, {1, 2, 1}};
  spread_t back2 = {&f, {1, 1, 2}};
  int ok = 0;
  uint64_t deadline = uv_hrtime() + t_slow(5000) * 1000000ull;
  while (!ok && uv_hrtime() < deadline) {
    t_run_until(&f.loop, NULL, NULL, 10);
    long t = total_workers(&f);
    if (t > w.max_total)
      w.max_total = t;
    ok = spread_is(&back) || spread_is(&back2);
  }
  CHECK(ok);
  printf("# figure: broker back -> a slot registered there after %.0f ms\n",
         (uv_hrtime() - t0) / 1e6);
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.brokers_back, 1);
  CHECK_EQ(st.brokers_alive, NB);
  CHECK_EQ(st.moves, 3); /* bounded churn: one move back, then balanced */
  /* Stays balanced: no further moves. */
  t_run_until(&f.loop, NULL, NULL, 6 * HB_MS);
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.moves, 3);
  printf("# most workers registered at once: %ld (C = 4)\n", w.max_total);
  CHECK(w.max_total <= 4);
  close_clients(cl);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

/* Promise: a slot whose request is unanswered is never moved (its handle
 * stays valid: answering it after its broker went away is MDP_ESTATE, not
 * a use after free); once the application has sent that FINAL anyway, the
 * slot is free and moves to a live broker. */
static void unanswered_slot_stays(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_short()) == 0);
  svc_t s = {0};
  s.keep = 1;
  mdp_worker_group_t *g = group_start(&f, &s, NB);
  CHECK(g != NULL);
  spread_t sp = {&f, {1, 1, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  mdp_client_t *cl = NULL;
  load_t l = {0};
  CHECK_EQ(mdp_client_new(&f.loop, &f.eps[0], 1, NULL, &cl), 0);
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "x");
  CHECK_EQ(mdp_client_request(cl, "svc", m, NULL, on_reply, &l, NULL), 0);
  uint64_t deadline = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (s.requests == 0 && uv_hrtime() < deadline)
    t_run_until(&f.loop, NULL, NULL, 10);
  CHECK_EQ(s.requests, 1);
  mdp_client_close(cl, NULL);
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.busy, 1);
  mdp_broker_close(f.b[0], broker_closed);
  f.b[0] = NULL;
  /* Judged lost (the same check moves the slots it can), then a few more
   * check intervals: the unanswered slot stayed. */
  lost_t lw = {g, 1};
  CHECK(t_run_until(&f.loop, lost_at_least, &lw, 5000));
  t_run_until(&f.loop, NULL, NULL, 4 * HB_MS);
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.brokers_lost, 1);
  CHECK_EQ(st.moves, 0);
  CHECK_EQ(st.busy, 1);
  CHECK(mdp_worker_request_active(s.kept) == 0);
  CHECK_EQ(mdp_worker_final(s.kept, s.kept_body), MDP_ESTATE);
  mdp_msg_destroy(s.kept_body);
  s.kept_body = NULL;
  /* Done with: the slot moves off the lost broker. */
  spread_t moved = {&f, {0, 2, 1}}, moved2 = {&f, {0, 1, 2}};
  uint64_t until = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (!spread_is(&moved) && !spread_is(&moved2) && uv_hrtime() < until)
    t_run_until(&f.loop, NULL, NULL, 10);
  CHECK(spread_is(&moved) || spread_is(&moved2));
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.moves, 1);
  CHECK_EQ(st.busy, 0);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

typedef struct {
  int registered;
  int lost;
} events_t;

static void count_events(mdp_worker_t *w, mdp_worker_event_t event, int err,
                         void *data) {
  (void)w;
  (void)err;
  events_t *e = data;
  if (event == MDP_WORKER_REGISTERED)
    e->registered++;
  else if (event == MDP_WORKER_BROKER_LOST)
    e->lost++;
}

/* Promise: a slot whose worker gives its connection up for silence judges
 * its broker at once (the worker's life-cycle event), not when the group's
 * own lost_after_ms of silence has passed, and the user's event callback
 * still sees every slot's events. */
static void lost_connection_moves_at_once(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_short()) == 0);
  svc_t s = {0};
  events_t ev = {0};
  mdp_worker_group_options_t o;
  mdp_worker_group_options_init(&o);
  o.worker.heartbeat_interval_ms = HB_MS;
  o.worker.heartbeat_liveness = f.liveness;
  o.worker.reconnect_initial_ms = 20;
  o.worker.reconnect_max_ms = 100;
  o.worker.event_cb = count_events;
  o.worker.event_data = &ev;
  o.concurrency = NB;
  o.check_interval_ms = 60000; /* only the event can act in time */
  o.lost_after_ms = 60000;
  mdp_worker_group_t *g = NULL;
  CHECK_EQ(mdp_worker_group_new(&f.loop, f.eps, NB, "svc", on_request, &o, &g),
           0);
  mdp_worker_group_set_data(g, &s);
  spread_t sp = {&f, {1, 1, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  uint64_t until = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (ev.registered < NB && uv_hrtime() < until)
    t_run_until(&f.loop, NULL, NULL, 10);
  CHECK_EQ(ev.registered, NB);
  mdp_broker_close(f.b[0], broker_closed);
  f.b[0] = NULL;
  spread_t moved = {&f, {0, 2, 1}}, moved2 = {&f, {0, 1, 2}};
  until = uv_hrtime() + t_slow(5000) * 1000000ull;
  while (!spread_is(&moved) && !spread_is(&moved2) && uv_hrtime() < until)
    t_run_until(&f.loop, NULL, NULL, 10);
  CHECK(spread_is(&moved) || spread_is(&moved2));
  CHECK(ev.lost >= 1);
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.brokers_lost, 1);
  CHECK_EQ(st.moves, 1);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

/* --- the API's contracts ---------------------------------------------- */

static void count_handle(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    (*(int *)arg)++;
}

static int loop_idle(void *arg) {
  /* only t_run_until's own guard timer left */
  uv_loop_t *loop = arg;
  int handles = 0;
  uv_walk(loop, count_handle, &handles);
  return handles <= 1;
}

static void errors_call_no_callback(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[2] = {"tcp://127.0.0.1:1", "tcp://127.0.0.1:2"};
  mdp_worker_group_t *g = NULL;
  mdp_worker_group_options_t o;
  mdp_worker_group_options_init(&o);
  CHECK_EQ(o.concurrency, 0);
  CHECK_EQ(o.worker.heartbeat_interval_ms, MDP_DEFAULT_HEARTBEAT_INTERVAL_MS);
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 0, "svc", on_request, NULL, &g),
           MDP_EINVAL);
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "svc", NULL, NULL, &g),
           MDP_EINVAL);
  CHECK_EQ(mdp_worker_group_new(NULL, eps, 2, "svc", on_request, NULL, &g),
           MDP_EINVAL);
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "mmi.x", on_request, NULL, &g),
           MDP_ESERVICE);
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "", on_request, NULL, &g),
           MDP_ESERVICE);
  o.concurrency = MDP_WORKER_GROUP_MAX_CONCURRENCY + 1;
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "svc", on_request, &o, &g),
           MDP_EINVAL);
  mdp_worker_group_options_init(&o);
  o.check_interval_ms = MDP_WORKER_TIME_MAX_MS + 1;
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "svc", on_request, &o, &g),
           MDP_EINVAL);
  mdp_worker_group_options_init(&o);
  o.worker.dialect = 0; /* mdp_worker_new's reason */
  CHECK_EQ(mdp_worker_group_new(&loop, eps, 2, "svc", on_request, &o, &g),
           MDP_EINVAL);
  /* The second endpoint is malformed: the first slot's worker was made and
   * is closed as the loop runs; nothing is left. */
  const char *bad[2] = {"tcp://127.0.0.1:1", "nonsense"};
  CHECK(mdp_worker_group_new(&loop, bad, 2, "svc", on_request, NULL, &g) < 0);
  CHECK(g == NULL);
  CHECK(t_run_until(&loop, loop_idle, &loop, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Promise: the request callback may close the group; no request callback
 * comes after, the close callback runs once and nothing leaks. */
static void close_from_request_callback(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_long()) == 0);
  svc_t s = {0};
  s.close_in_cb = 1;
  mdp_worker_group_t *g = group_start(&f, &s, 3);
  CHECK(g != NULL);
  CHECK(mdp_worker_group_get_data(g) == &s);
  CHECK(mdp_worker_group_loop(g) == &f.loop);
  spread_t sp = {&f, {1, 1, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  mdp_client_t *cl[NB] = {0};
  load_t l = {0};
  CHECK(send_load(&f, cl, &l, 2) == 0);
  CHECK(t_run_until(&f.loop, is_closed, &s, 3000));
  CHECK_EQ(s.requests, 1);
  close_clients(cl);
  CHECK(farm_close(&f));
}



/* Re-creates broker i on `ep` once the old one has closed; ZeroMQ frees a
 * closed socket's port from its I/O thread, so a bind may need retries. */
static int broker_reopen(farm_t *f, int i, const char *ep, int closed_before) {
  uint64_t deadline = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (f->closed_brokers <= closed_before && uv_hrtime() < deadline)
    t_run_until(&f->loop, NULL, NULL, 10);
  while (uv_hrtime() < deadline) {
    if (broker_open(f, i, ep) == 0)
      return 0;
    if (f->b[i] != NULL) {
      int closed = f->closed_brokers;
      mdp_broker_close(f->b[i], broker_closed);
      f->b[i] = NULL;
      while (f->closed_brokers == closed && uv_hrtime() < deadline)
        t_run_until(&f->loop, NULL, NULL, 10);
    }
    t_run_until(&f->loop, NULL, NULL, 20);
  }
  return -1;
}

static int abandoned(void *arg) {
  return !mdp_worker_request_active(*(mdp_request_t *)arg);
}

static mdp_client_t *request_at(farm_t *f, int i, load_t *l) {
  mdp_client_t *c = NULL;
  if (mdp_client_new(&f->loop, &f->eps[i], 1, NULL, &c) != 0)
    return NULL;
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "x");
  if (mdp_client_request(c, "svc", m, NULL, on_reply, l, NULL) != 0)
    return NULL;
  l->sent++;
  return c;
}

static int nkept_is(svc_t *s, uv_loop_t *loop, int n) {
  uint64_t deadline = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (s->nkept < n && uv_hrtime() < deadline)
    t_run_until(loop, NULL, NULL, 10);
  return s->nkept == n;
}

/* Promise (worker_group.h): a request abandoned with its connection still
 * counts against C until the application answers it.  So the slot's
 * worker does not register again while the request is unanswered, even
 * when its broker comes back at once and requests wait at every broker
 * (it did: `mdp-worker -c 1` ran two commands at once); once the late
 * FINAL is sent, the slot serves again, one request at a time. */
static void abandoned_request_holds_its_slot(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_short()) == 0);
  svc_t s = {0};
  s.keep = 1;
  mdp_worker_group_t *g = group_start(&f, &s, 1);
  CHECK(g != NULL);
  spread_t sp = {&f, {1, 0, 0}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  load_t l = {0};
  mdp_client_t *cl[NB + 1] = {0};
  CHECK((cl[NB] = request_at(&f, 0, &l)) != NULL);
  CHECK(nkept_is(&s, &f.loop, 1));
  /* Broker 0 goes away and comes back on the same endpoint. */
  char ep0[256];
  snprintf(ep0, sizeof ep0, "%s", f.ep[0]);
  int closed = f.closed_brokers;
  mdp_broker_close(f.b[0], broker_closed);
  f.b[0] = NULL;
  CHECK(t_run_until(&f.loop, abandoned, &s.kept_all[0], 3000));
  CHECK(broker_reopen(&f, 0, ep0, closed) == 0);
  for (int i = 0; i < NB; i++)
    CHECK((cl[i] = request_at(&f, i, &l)) != NULL);
  /* Many reconnect back-offs (at most 100 ms) and check intervals: the
   * slot takes nothing while its request is the application's. */
  t_run_until(&f.loop, NULL, NULL, 20 * HB_MS);
  CHECK_EQ(s.requests, 1);
  CHECK_EQ(s.max_in_progress, 1);
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(g, &st);
  CHECK_EQ(st.busy, 1);
  /* Answered late: refused as stale, and the slot is free again. */
  CHECK_EQ(mdp_worker_final(s.kept_all[0], s.kept_bodies[0]), MDP_ESTATE);
  mdp_msg_destroy(s.kept_bodies[0]);
  s.kept_body = NULL;
  s.in_progress--;
  s.keep = 0;
  uint64_t deadline = uv_hrtime() + t_slow(5000) * 1000000ull;
  while (s.requests < 2 && uv_hrtime() < deadline)
    t_run_until(&f.loop, NULL, NULL, 10);
  CHECK(s.requests >= 2);
  CHECK_EQ(s.max_in_progress, 1);
  for (int i = 0; i <= NB; i++)
    if (cl[i] != NULL)
      mdp_client_close(cl[i], NULL);
  CHECK(group_stop(&f, g, &s));
  CHECK(farm_close(&f));
}

/* Promise (worker_group.h): a handle stays valid while it is unanswered
 * and the group exists.  A slot whose request was abandoned is closed at
 * once when the group closes, while the group waits for another slot's
 * FINAL; the application's late FINAL through the abandoned handle then
 * is refused as stale (it wrote into the freed worker: ASan's
 * heap-use-after-free in mdp-worker at SIGTERM). */
static void close_keeps_abandoned_handle_valid(void) {
  farm_t f;
  CHECK(farm_open(&f, liveness_short()) == 0);
  svc_t s = {0};
  s.keep = 1;
  mdp_worker_group_t *g = group_start(&f, &s, NB);
  CHECK(g != NULL);
  spread_t sp = {&f, {1, 1, 1}};
  CHECK(t_run_until(&f.loop, spread_is, &sp, 3000));
  load_t l = {0};
  mdp_client_t *c0 = request_at(&f, 0, &l);
  CHECK(c0 != NULL);
  CHECK(nkept_is(&s, &f.loop, 1));
  mdp_client_t *c1 = request_at(&f, 1, &l);
  CHECK(c1 != NULL);
  CHECK(nkept_is(&s, &f.loop, 2));
  mdp_broker_close(f.b[0], broker_closed);
  f.b[0] = NULL;
  CHECK(t_run_until(&f.loop, abandoned, &s.kept_all[0], 3000));
  CHECK(mdp_worker_request_active(s.kept_all[1]));
  mdp_worker_group_close(g, 1, group_closed);
  /* The abandoned slot's worker closes at once (its grace is at most one
   * heartbeat, HB_MS); the group waits for the other's FINAL. */
  CHECK(mdp_worker_is_closing(s.kept_all[0].worker));
  t_run_until(&f.loop, NULL, NULL, 10 * HB_MS);
  CHECK(!s.closed);
  CHECK_EQ(mdp_worker_final(s.kept_all[0], s.kept_bodies[0]), MDP_ESTATE);
  mdp_msg_destroy(s.kept_bodies[0]);
  CHECK_EQ(mdp_worker_final(s.kept_all[1], s.kept_bodies[1]), 0);
  CHECK(t_run_until(&f.loop, is_closed, &s, 3000));
  mdp_client_close(c0, NULL);
  mdp_client_close(c1, NULL);
  CHECK(farm_close(&f));
}

int main(void) {
  RUN(slots_spread_and_limit);
  RUN(fewer_slots_than_brokers);
  RUN(broker_lost_and_back);
  RUN(unanswered_slot_stays);
  RUN(lost_connection_moves_at_once);
  RUN(errors_call_no_callback);
  RUN(close_from_request_callback);
  RUN(abandoned_request_holds_its_slot);
  RUN(close_keeps_abandoned_handle_valid);
  t_context_term();
  return t_done();
}
