/* The broker, driven by raw DEALER sockets that speak RFC 18's frames.
 *
 * Each test starts a broker on its own loop and ZeroMQ context, plays
 * clients and workers by hand, and checks every frame the broker sends.
 * Timing behaviour (heartbeats, expiry) runs with intervals of tens of ms and
 * is checked against generous deadlines, never by sleeping and hoping.
 */
#include <unistd.h>

#include "harness.h"
#include "peer.h"
#include "broker_env.h"
#include "../lib/broker_internal.h" /* trims: when the heap was trimmed */
#include "vectors.h"

/* A worker that said READY for `service`, registration confirmed. */
static void *worker_ready(const char *service) {
  void *w = peer();
  size_t before = stats().workers_registered;
  peer_send(w, "MDPW02", "\x01", service, NULL);
  settle_until(stats().workers_registered != before);
  return w;
}

/* The next REQUEST on worker `w`; returns the client address frame in
 * `addr` (caller closes) and checks the header. */
static mdp_msg_t *expect_request(void *w, zmq_msg_t *addr) {
  mdp_msg_t *m = recv_skip_hb(w, 2000);
  zmq_msg_init(addr);
  if (m == NULL || mdp_msg_size(m) < 5 || !mdp_msg_frame_eq(m, 0, "MDPW02", 6) ||
      !mdp_msg_frame_eq(m, 1, "\x02", 1) || mdp_msg_frame_size(m, 3) != 0) {
    msg_dump("expected REQUEST", m);
    mdp_msg_destroy(m);
    return NULL;
  }
  zmq_msg_copy(addr, mdp_msg_frame(m, 2));
  return m;
}

/* Sends a worker reply: [MDPW02, cmd, addr, "", body...]. */
static void worker_reply(void *w, const char *cmd, zmq_msg_t *addr, ...) {
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "MDPW02");
  mdp_msg_append_str(m, cmd);
  mdp_msg_append_mem(m, zmq_msg_data(addr), zmq_msg_size(addr));
  mdp_msg_append_str(m, "");
  va_list ap;
  va_start(ap, addr);
  const char *f;
  while ((f = va_arg(ap, const char *)) != NULL)
    mdp_msg_append_str(m, f);
  va_end(ap);
  peer_send_msg(w, m);
}

static int got_disconnect(void *sock);


/* ---- per-service figures and histograms (mdp_broker_foreach_service) -- */

typedef struct {
  mdp_broker_service_info_t e[8];
  char names[8][32];
  int n;
  int stop_after; /* 0: never */
} svc_list_t;

static int collect_service(const mdp_broker_service_info_t *info, void *data) {
  svc_list_t *l = data;
  if (l->n >= 8)
    return 99;
  l->e[l->n] = *info;
  snprintf(l->names[l->n], sizeof l->names[0], "%.*s", (int)info->name_size,
           (const char *)info->name);
  l->e[l->n].name = NULL; /* valid during the call only */
  l->n++;
  return l->stop_after && l->n >= l->stop_after ? 7 : 0;
}

static svc_list_t services_now(void) {
  svc_list_t l;
  memset(&l, 0, sizeof l);
  mdp_broker_foreach_service(E.broker, collect_service, &l);
  return l;
}

/* The entry named `name` in `l`, or NULL. */
static const mdp_broker_service_info_t *svc(const svc_list_t *l,
                                            const char *name) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->names[i], name) == 0)
      return &l->e[i];
  return NULL;
}

static uint64_t bucket_sum(const mdp_broker_histogram_t *h) {
  uint64_t n = 0;
  for (int i = 0; i <= MDP_BROKER_HISTOGRAM_BUCKETS; i++)
    n += h->counts[i];
  return n;
}

/* One request for `service` from `c`, answered by `w` (with `partials`
 * PARTIALs first). */
static int answered(void *c, void *w, const char *service, int partials) {
  peer_send(c, "MDPC02", "\x01", service, "q", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  if (req == NULL)
    return 0;
  mdp_msg_destroy(req);
  for (int i = 0; i < partials; i++)
    worker_reply(w, "\x03", &addr, "part", NULL);
  worker_reply(w, "\x04", &addr, "a", NULL);
  zmq_msg_close(&addr);
  int ok = 1;
  for (int i = 0; i <= partials; i++) {
    mdp_msg_t *m = recv_on(c, 2000);
    ok &= m != NULL;
    mdp_msg_destroy(m);
  }
  return ok;
}

static void service_figures_bounded(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  CHECK_EQ(o.metrics_max_services, 100); /* the documented default */
  o.metrics_max_services = 2;
  CHECK(env_open(&o, NULL) == 0);
  void *wa = worker_ready("a");
  void *wb = worker_ready("b");
  void *wc = worker_ready("c");          /* beyond the bound: _other */
  void *wo = worker_ready("_other");     /* the reserved name: _other too */
  (void)wb;
  (void)wo;
  void *c = peer();
  for (int i = 0; i < 3; i++)
    CHECK(answered(c, wa, "a", i == 0 ? 2 : 0));
  CHECK(answered(c, wc, "c", 0));
  peer_send(c, "MDPC02", "\x01", "nosuch", "waits", NULL);
  settle_until(stats().queued == 1);
  svc_list_t l = services_now();
  CHECK_EQ(l.n, 3); /* a, b, then _other */
  CHECK(strcmp(l.names[0], "a") == 0 && strcmp(l.names[1], "b") == 0);
  CHECK(strcmp(l.names[2], MDP_BROKER_OTHER_SERVICE) == 0 && l.e[2].other);
  const mdp_broker_service_info_t *a = svc(&l, "a"), *b = svc(&l, "b"),
                                  *other = &l.e[2];
  CHECK_EQ(a->requests, 3);
  CHECK_EQ(a->replies, 3);
  CHECK_EQ(a->partials, 2);
  CHECK_EQ(a->request_duration.count, 3);
  CHECK_EQ(bucket_sum(&a->request_duration), 3);
  CHECK_EQ(a->workers_idle, 1);
  CHECK_EQ(a->workers_busy, 0);
  CHECK_EQ(b->requests, 0);
  CHECK_EQ(b->workers_idle, 1);
  CHECK_EQ(other->requests, 2); /* c's and the one for nosuch */
  CHECK_EQ(other->replies, 1);
  CHECK_EQ(other->queued, 1);
  CHECK_EQ(other->workers_idle, 2); /* c's and _other's */
  mdp_broker_histogram_t qw;
  mdp_broker_get_queue_wait(E.broker, &qw);
  CHECK_EQ(qw.count, 4); /* every dispatched request, once */
  CHECK_EQ(bucket_sum(&qw), 4);
  /* Counters outlive the service: a's worker leaves, a is forgotten by
   * the broker, its figures stay and go on when a worker comes back. */
  peer_send(wa, "MDPW02", "\x06", NULL); /* DISCONNECT */
  settle_until(stats().workers == 3);
  CHECK_EQ(stats().workers, 3);
  l = services_now();
  CHECK_EQ(svc(&l, "a")->requests, 3);
  CHECK_EQ(svc(&l, "a")->workers_idle, 0);
  void *wa2 = worker_ready("a");
  CHECK(answered(c, wa2, "a", 0));
  l = services_now();
  CHECK_EQ(svc(&l, "a")->requests, 4);
  CHECK_EQ(svc(&l, "a")->workers_idle, 1);
  /* The callback's stop value; errors call no callback. */
  l.n = 0;
  l.stop_after = 1;
  CHECK_EQ(mdp_broker_foreach_service(E.broker, collect_service, &l), 7);
  CHECK_EQ(l.n, 1);
  CHECK_EQ(mdp_broker_foreach_service(E.broker, NULL, NULL), MDP_EINVAL);
  CHECK_EQ(env_close(), 0);
}

/* Durations come from the loop's time: a request queued ~100 ms before its
 * worker arrives waits at least that long, and a service a client named
 * first gets its own entry at its first READY. */
static void queue_wait_and_duration_measured(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "late", "q", NULL);
  settle_until(stats().queued == 1);
  CHECK_EQ(stats().queued, 1);
  settle(100);
  void *w = worker_ready("late");
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  settle(60); /* the worker takes its time */
  worker_reply(w, "\x04", &addr, "a", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(rep != NULL);
  mdp_msg_destroy(rep);
  mdp_broker_histogram_t qw;
  mdp_broker_get_queue_wait(E.broker, &qw);
  CHECK_EQ(qw.count, 1);
  CHECK(qw.sum_ms >= 100);
  /* 100 ms is bucket 6's bound: the observation is in bucket 6 or above. */
  CHECK_EQ(mdp_broker_histogram_bounds_ms[6], 100);
  uint64_t low = 0;
  for (int i = 0; i < 6; i++)
    low += qw.counts[i];
  CHECK_EQ(low, 0);
  svc_list_t l = services_now();
  const mdp_broker_service_info_t *late = svc(&l, "late");
  CHECK(late != NULL); /* its own entry since its READY */
  CHECK_EQ(late->replies, 1);
  CHECK_EQ(late->request_duration.count, 1);
  CHECK(late->request_duration.sum_ms >= 160);
  /* The request came before the entry: it is counted in _other. */
  CHECK_EQ(late->requests, 0);
  CHECK_EQ(svc(&l, MDP_BROKER_OTHER_SERVICE)->requests, 1);
  for (int i = 1; i < MDP_BROKER_HISTOGRAM_BUCKETS; i++)
    CHECK(mdp_broker_histogram_bounds_ms[i] >
          mdp_broker_histogram_bounds_ms[i - 1]);
  CHECK_EQ(env_close(), 0);
}

/* ---- round trips ------------------------------------------------------ */

static void roundtrip_exact_frames(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w = worker_ready("echo");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "echo", "hello", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "hello", NULL));
  CHECK(zmq_msg_size(&addr) > 0);
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "world", NULL);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "echo", "world", NULL));
  mdp_msg_destroy(rep);
  zmq_msg_close(&addr);
  mdp_broker_stats_t s = stats();
  CHECK_EQ(s.requests, 1);
  CHECK_EQ(s.dispatched, 1);
  CHECK_EQ(s.replies, 1);
  CHECK_EQ(s.workers, 1);
  CHECK_EQ(s.workers_idle, 1);
  CHECK_EQ(env_close(), 0);
}

static void multiframe_and_partials(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w = worker_ready("stream");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "stream", "", "two", "", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "", "two", "", NULL));
  mdp_msg_destroy(req);
  worker_reply(w, "\x03", &addr, "p1", NULL);
  worker_reply(w, "\x03", &addr, "", "p2", NULL);
  worker_reply(w, "\x04", &addr, "end", "", NULL);
  mdp_msg_t *m1 = recv_on(c, 2000), *m2 = recv_on(c, 2000),
            *m3 = recv_on(c, 2000);
  int ok = msg_is(m1, "MDPC02", "\x02", "stream", "p1", NULL) &&
           msg_is(m2, "MDPC02", "\x02", "stream", "", "p2", NULL) &&
           msg_is(m3, "MDPC02", "\x03", "stream", "end", "", NULL);
  mdp_msg_destroy(m1);
  mdp_msg_destroy(m2);
  mdp_msg_destroy(m3);
  zmq_msg_close(&addr);
  CHECK(ok);
  CHECK_EQ(stats().partials, 2);
  CHECK_EQ(env_close(), 0);
}

static void body_not_copied(void) {
  /* A large body frame reaches the worker with its bytes intact: the
   * broker moved it through (copying is checked by the codec and message
   * tests; here, that nothing is lost or reordered on the way). */
  CHECK(env_open(NULL, NULL) == 0);
  void *w = worker_ready("big");
  void *c = peer();
  size_t size = 1 << 20;
  char *big = malloc(size);
  for (size_t i = 0; i < size; i++)
    big[i] = (char)(i * 7);
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "MDPC02");
  mdp_msg_append_str(m, "\x01");
  mdp_msg_append_str(m, "big");
  mdp_msg_append_mem(m, big, size);
  peer_send_msg(c, m);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  int ok = req && mdp_msg_size(req) == 5 &&
           mdp_msg_frame_eq(req, 4, big, size);
  mdp_msg_destroy(req);
  zmq_msg_close(&addr);
  free(big);
  CHECK(ok);
  CHECK_EQ(env_close(), 0);
}

/* ---- dispatch order --------------------------------------------------- */

static void lru_order(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w[3] = {worker_ready("svc"), worker_ready("svc"), worker_ready("svc")};
  void *c = peer();
  zmq_msg_t addr[3];
  /* Three requests go to the workers in the order they became idle. */
  for (int i = 0; i < 3; i++) {
    peer_send(c, "MDPC02", "\x01", "svc", "r", NULL);
    mdp_msg_t *req = expect_request(w[i], &addr[i]);
    CHECK(req != NULL);
    mdp_msg_destroy(req);
  }
  /* They come back idle in the order 1, 0, 2 ... */
  int order[3] = {1, 0, 2};
  for (int i = 0; i < 3; i++) {
    worker_reply(w[order[i]], "\x04", &addr[order[i]], "ok", NULL);
    mdp_msg_t *rep = recv_on(c, 2000);
    CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "ok", NULL));
    mdp_msg_destroy(rep);
    zmq_msg_close(&addr[order[i]]);
  }
  /* ... and the least recently used gets the next request. */
  for (int i = 0; i < 3; i++) {
    peer_send(c, "MDPC02", "\x01", "svc", "again", NULL);
    zmq_msg_t a;
    mdp_msg_t *req = expect_request(w[order[i]], &a);
    CHECK(req != NULL);
    mdp_msg_destroy(req);
    zmq_msg_close(&a);
  }
  CHECK_EQ(env_close(), 0);
}

static void fair_between_clients(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *flood = peer(), *polite = peer();
  /* No worker yet: the flooding client queues 20, then the other one 1. */
  char body[16];
  for (int i = 0; i < 20; i++) {
    snprintf(body, sizeof body, "flood-%d", i);
    peer_send(flood, "MDPC02", "\x01", "svc", body, NULL);
  }
  peer_send(polite, "MDPC02", "\x01", "svc", "polite", NULL);
  for (int i = 0; i < 200; i++) {
    mdp_broker_service_stats_t ss;
    if (mdp_broker_get_service_stats(E.broker, "svc", &ss) == 0 &&
        ss.queued == 21)
      break;
    settle(5);
  }
  void *w = worker_ready("svc");
  /* The polite client's request is served second, not 21st. */
  int polite_at = -1;
  for (int i = 0; i < 21; i++) {
    zmq_msg_t addr;
    mdp_msg_t *req = expect_request(w, &addr);
    CHECK(req != NULL);
    if (mdp_msg_frame_eq(req, 4, "polite", 6))
      polite_at = i;
    else if (i < 5) {
      snprintf(body, sizeof body, "flood-%d", i - (polite_at >= 0));
      CHECK(mdp_msg_frame_eq(req, 4, body, strlen(body))); /* FIFO per client */
    }
    mdp_msg_destroy(req);
    worker_reply(w, "\x04", &addr, "ok", NULL);
    zmq_msg_close(&addr);
  }
  CHECK_EQ(polite_at, 1);
  CHECK_EQ(env_close(), 0);
}

/* ---- queueing and expiry ---------------------------------------------- */

static void queued_until_worker(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "late", "early bird", NULL);
  settle_until(stats().queued == 1);
  CHECK_EQ(stats().queued, 1);
  void *w = worker_ready("late");
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "early bird", NULL));
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "done", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "late", "done", NULL));
  mdp_msg_destroy(rep);
  CHECK_EQ(stats().queued, 0);
  CHECK_EQ(env_close(), 0);
}

static int expired_one(void *arg) {
  (void)arg;
  return stats().dropped_expired >= 1;
}

static void queued_request_expires(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.request_expiry_ms = t_slow(100);
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  uint64_t t0 = uv_hrtime();
  peer_send(c, "MDPC02", "\x01", "nobody", "x", NULL);
  CHECK(t_run_until(&E.loop, expired_one, NULL, 3000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK(ms >= t_slow(100) - 10); /* not before its time */
  CHECK_EQ(stats().queued, 0);
  CHECK_EQ(stats().services, 0); /* an empty service is forgotten */
  /* A worker that arrives afterwards is not given the expired request. */
  void *w = worker_ready("nobody");
  CHECK(quiet(w, 150));
  CHECK_EQ(env_close(), 0);
}

static void queue_limit(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue = 5;
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  for (int i = 0; i < 8; i++)
    peer_send(c, "MDPC02", "\x01", "svc", "x", NULL);
  settle_until(stats().requests >= 8);
  CHECK_EQ(stats().requests, 8);
  CHECK_EQ(stats().queued, 5);
  CHECK_EQ(stats().dropped_queue_full, 3);
  CHECK_EQ(env_close(), 0);
}

static void max_msg_size_enforced(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_msg_size = 1000;
  CHECK(env_open(&o, "tcp://127.0.0.1:*") == 0); /* the limit is a wire one */
  void *w = worker_ready("svc");
  void *big = peer();
  char body[2001];
  memset(body, 'x', 2000);
  body[2000] = '\0';
  peer_send(big, "MDPC02", "\x01", "svc", body, NULL);
  CHECK(quiet(w, 200)); /* never reached the broker's logic */
  CHECK_EQ(stats().requests, 0);
  /* Everyone else carries on, and messages under the limit pass. */
  void *c = peer();
  body[900] = '\0';
  peer_send(c, "MDPC02", "\x01", "svc", body, NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", body, NULL));
  mdp_msg_destroy(req);
  zmq_msg_close(&addr);
  CHECK_EQ(stats().requests, 1);
  CHECK_EQ(env_close(), 0);
}

static void frame_and_count_limits(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_frames = 8;
  o.max_workers_per_service = 2;
  o.max_services = 3;
  o.max_queued_total = 3;
  CHECK(env_open(&o, NULL) == 0);
  /* Frames: a 20-frame message is discarded whole, an 8-frame one is not. */
  void *w = worker_ready("a");
  void *c = peer();
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "MDPC02");
  mdp_msg_append_str(m, "\x01");
  mdp_msg_append_str(m, "a");
  for (int i = 0; i < 17; i++)
    mdp_msg_append_str(m, "x");
  peer_send_msg(c, m);
  peer_send(c, "MDPC02", "\x01", "a", "1", "2", "3", "4", "5", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "1", "2", "3", "4", "5", NULL));
  mdp_msg_destroy(req);
  zmq_msg_close(&addr);
  CHECK_EQ(stats().dropped_frames, 1);
  CHECK_EQ(stats().requests, 1);
  /* Workers per service: the third READY for "b" is refused. */
  worker_ready("b");
  worker_ready("b");
  void *third = peer();
  peer_send(third, "MDPW02", "\x01", "b", NULL);
  CHECK(got_disconnect(third));
  CHECK_EQ(stats().workers_refused, 1);
  /* Services: "a", "b" and one more; a fourth is refused, for a worker and
   * for a request alike. */
  worker_ready("c");
  CHECK_EQ(stats().services, 3);
  void *d = peer();
  peer_send(d, "MDPW02", "\x01", "d", NULL);
  CHECK(got_disconnect(d));
  CHECK_EQ(stats().workers_refused, 2);
  peer_send(c, "MDPC02", "\x01", "e", "x", NULL);
  settle_until(stats().dropped_queue_full >= 1);
  CHECK_EQ(stats().dropped_queue_full, 1);
  CHECK_EQ(stats().services, 3);
  CHECK_EQ(env_close(), 0);
}

static void total_queue_limit(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queued_total = 3;
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "x", "1", NULL);
  peer_send(c, "MDPC02", "\x01", "x", "2", NULL);
  peer_send(c, "MDPC02", "\x01", "y", "3", NULL);
  peer_send(c, "MDPC02", "\x01", "y", "4", NULL);
  settle_until(stats().requests >= 4);
  CHECK_EQ(stats().queued, 3);
  CHECK_EQ(stats().dropped_queue_full, 1);
  CHECK_EQ(env_close(), 0);
}

static void flooding_client_cannot_lock_out_others(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue = 10;
  o.max_queue_per_client = 4;
  CHECK(env_open(&o, NULL) == 0);
  void *flood = peer(), *other = peer();
  for (int i = 0; i < 20; i++)
    peer_send(flood, "MDPC02", "\x01", "svc", "flood", NULL);
  peer_send(other, "MDPC02", "\x01", "svc", "other", NULL);
  settle_until(stats().requests >= 21);
  CHECK_EQ(stats().queued, 5);
  CHECK_EQ(stats().dropped_queue_full, 16);
  void *w = worker_ready("svc");
  int other_at = -1;
  for (int i = 0; i < 5; i++) {
    zmq_msg_t addr;
    mdp_msg_t *req = expect_request(w, &addr);
    CHECK(req != NULL);
    if (mdp_msg_frame_eq(req, 4, "other", 5))
      other_at = i;
    mdp_msg_destroy(req);
    worker_reply(w, "\x04", &addr, "ok", NULL);
    zmq_msg_close(&addr);
  }
  CHECK_EQ(other_at, 1);
  CHECK_EQ(env_close(), 0);
}

static void queued_bytes_limit(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queued_bytes = 10000;
  o.request_expiry_ms = t_slow(100);
  CHECK(env_open(&o, NULL) == 0);
  /* 3 cost 3 x (2800 bytes + a frame + a request record) <= 10000. */
  char body[2801];
  memset(body, 'b', 2800);
  body[2800] = '\0';
  void *c = peer();
  /* All five are in the broker's socket before it reads any, so it reads
   * them in one batch and no expiry can come between them. */
  for (int i = 0; i < 4; i++)
    peer_send(c, "MDPC02", "\x01", "svc", body, NULL);
  /* Empty frames are not free: 200 of them cost their bookkeeping. */
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "MDPC02");
  mdp_msg_append_str(m, "\x01");
  mdp_msg_append_str(m, "svc");
  for (int i = 0; i < 200; i++)
    mdp_msg_append_str(m, "");
  peer_send_msg(c, m);
  settle_until(stats().requests >= 5);
  CHECK_EQ(stats().queued, 3);
  CHECK_EQ(stats().dropped_queue_full, 2); /* the 4th and the 5th */
  CHECK(stats().queued_bytes > 9000 && stats().queued_bytes <= 10000);
  /* Expiry gives the bytes back. */
  settle_until(stats().queued == 0);
  CHECK_EQ(stats().queued, 0);
  CHECK_EQ(stats().queued_bytes, 0);
  CHECK_EQ(env_close(), 0);
}

static void clients_create_half_the_services(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_services = 4;
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "made-up-1", "x", NULL);
  peer_send(c, "MDPC02", "\x01", "made-up-2", "x", NULL);
  peer_send(c, "MDPC02", "\x01", "made-up-3", "x", NULL);
  settle_until(stats().requests >= 3);
  CHECK_EQ(stats().services, 2);
  CHECK_EQ(stats().dropped_queue_full, 1);
  /* Workers still find room. */
  worker_ready("real-1");
  worker_ready("real-2");
  CHECK_EQ(stats().services, 4);
  CHECK_EQ(stats().workers, 2);
  void *w3 = peer();
  peer_send(w3, "MDPW02", "\x01", "real-3", NULL);
  CHECK(got_disconnect(w3));
  CHECK_EQ(env_close(), 0);
}

/* ---- heartbeats and worker expiry ------------------------------------- */

static void broker_sends_heartbeats(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.heartbeat_interval_ms = t_slow(30);
  o.heartbeat_liveness = 100;
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready("hb");
  int beats = 0;
  uint64_t t0 = uv_hrtime();
  while (beats < 3) {
    mdp_msg_t *m = recv_on(w, 1000);
    CHECK(msg_is(m, "MDPW02", "\x05", NULL));
    mdp_msg_destroy(m);
    beats++;
  }
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK(ms >= 2 * t_slow(30) - 5); /* three beats 30 ms apart */
  CHECK(stats().heartbeats_sent >= 3);
  CHECK_EQ(env_close(), 0);
}

/* RFC 18: peers SHOULD NOT heartbeat while sending other commands.  Every
 * HEARTBEAT a worker gets comes a whole interval after the last message
 * the broker sent it: while requests flow it gets none, and a request sent
 * just after a heartbeat (within the tenth of an interval by which the
 * heartbeat list once fired early) pushes the next one a whole interval on.
 * Times are taken where the worker receives, so each gap is at most the
 * delivery latency short of the broker's; the slack allows for that. */
static void no_heartbeat_within_interval_of_other_commands(void) {
  /* settle() and recv_on() scale their times by MDP_TEST_SLOW themselves:
   * they take fractions of `base`, the checks use the scaled interval. */
  const uint64_t base = 200, H = t_slow(base), slack = H / 40;
  mdp_broker_options_t o;
  test_opts(&o);
  o.heartbeat_interval_ms = H;
  o.heartbeat_liveness = 100;
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready("hbq");
  void *c = peer();
  uint64_t last = uv_hrtime(); /* the last message the worker received */
  int beats = 0, checked = 0, requests = 0;
  uint64_t end = uv_hrtime() + t_slow(10000) * 1000000ull;
  /* Phase 1: after each of 3 heartbeats, one request a fifteenth of an
   * interval later. */
  while (checked < 3 && uv_hrtime() < end) {
    mdp_msg_t *m = recv_on(w, 3 * base);
    CHECK(m != NULL);
    uint64_t now = uv_hrtime();
    if (msg_is(m, "MDPW02", "\x05", NULL)) {
      if (beats++ > 0) {
        CHECK((now - last) / 1000000 + slack >= H);
        checked++;
      }
      last = now;
      mdp_msg_destroy(m);
      settle(base / 15);
      peer_send(c, "MDPC02", "\x01", "hbq", "q", NULL);
      continue;
    }
    CHECK(msg_is(m, "MDPW02", "\x02", ANY, "", "q", NULL));
    last = now;
    zmq_msg_t addr;
    zmq_msg_init(&addr);
    zmq_msg_copy(&addr, mdp_msg_frame(m, 2));
    mdp_msg_destroy(m);
    worker_reply(w, "\x04", &addr, "r", NULL);
    zmq_msg_close(&addr);
    mdp_msg_t *r = recv_on(c, 2000);
    CHECK(msg_is(r, "MDPC02", "\x03", "hbq", "r", NULL));
    mdp_msg_destroy(r);
    requests++;
  }
  CHECK_EQ(checked, 3);
  /* Phase 2: a request every quarter interval for 3 intervals: the worker
   * is never quiet for an interval, so it gets no HEARTBEAT at all. */
  uint64_t hb_before = stats().heartbeats_sent;
  for (int i = 0; i < 12; i++) {
    peer_send(c, "MDPC02", "\x01", "hbq", "q", NULL);
    zmq_msg_t addr;
    mdp_msg_t *m = expect_request(w, &addr);
    CHECK(m != NULL);
    mdp_msg_destroy(m);
    worker_reply(w, "\x04", &addr, "r", NULL);
    zmq_msg_close(&addr);
    mdp_msg_t *r = recv_on(c, 2000);
    CHECK(msg_is(r, "MDPC02", "\x03", "hbq", "r", NULL));
    mdp_msg_destroy(r);
    settle(base / 4);
  }
  CHECK_EQ(stats().heartbeats_sent, hb_before);
  printf("# %d heartbeats, %d requests; none within an interval of another "
         "command\n", beats, requests + 12);
  CHECK_EQ(env_close(), 0);
}

static int no_workers(void *arg) {
  (void)arg;
  return stats().workers == 0;
}

/* keep_alive_until_expired's beat: one RFC 18 worker's HEARTBEAT, and
 * whatever the broker sent it dropped. */
static void beat_rfc18(void *worker) {
  peer_send(worker, "MDPW02", "\x05", NULL);
  mdp_msg_t *m;
  while ((m = peer_recv(NULL, worker, 0)) != NULL)
    mdp_msg_destroy(m);
}

/* `disconnect`: opts.disconnect_expired. */
static void silent_worker_expires_told(int disconnect) {
  mdp_broker_options_t o;
  test_opts(&o);
  /* A 500 ms window: `alive` must not lose it to a stall of this machine
   * between two of its heartbeats. */
  o.heartbeat_interval_ms = t_slow(25);
  o.heartbeat_liveness = 20;
  if (disconnect >= 0)
    o.disconnect_expired = disconnect;
  CHECK(env_open(&o, NULL) == 0);
  void *alive = worker_ready("hb");
  void *silent = worker_ready("hb");
  CHECK_EQ(stats().workers_registered, 2);
  /* `alive` heartbeats every 10 ms until `silent` has expired and for one
   * window more; `silent` says nothing.  Both registered together, so
   * without heartbeats counting `alive` would go first. */
  keep_alive_until_expired(beat_rfc18, alive, 1, 500);
  CHECK_EQ(stats().workers, 1);
  CHECK_EQ(stats().workers_expired, 1);
  /* After its last heartbeat the silent one is sent nothing (RFC 18), or
   * DISCONNECT if the option says so. */
  mdp_msg_t *m;
  int told = 0, last_hb = 0;
  while ((m = recv_on(silent, 100)) != NULL) {
    told |= msg_is(m, "MDPW02", "\x06", NULL);
    last_hb = msg_is(m, "MDPW02", "\x05", NULL);
    mdp_msg_destroy(m);
  }
  CHECK_EQ(told, disconnect == 1);
  CHECK(told || last_hb);
  CHECK_EQ(stats().disconnects_sent, disconnect == 1 ? 1 : 0);
  /* Once `alive` stops too, it goes within a few liveness windows. */
  CHECK(t_run_until(&E.loop, no_workers, NULL, 2000));
  CHECK_EQ(env_close(), 0);
}

/* RFC 18: a worker taken for disconnected is sent nothing more (default);
 * with disconnect_expired it is told, as Majortomo's broker does. */
static void silent_worker_expires(void) {
  silent_worker_expires_told(-1);
  silent_worker_expires_told(1);
}

/* A stalled broker (here: its loop not run for twice the liveness window)
 * does not expire workers whose heartbeats wait unread in its socket, even
 * when they are more than one batch: libuv runs timers before it polls, so
 * the broker reads what waits before it expires anyone. */
static void stall_does_not_expire_heard_workers(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.heartbeat_interval_ms = t_slow(50);
  o.heartbeat_liveness = 4;
  CHECK(env_open(&o, NULL) == 0);
  enum { N = 150 }; /* heartbeats: more than two batches of 64 */
  void *w[N];
  for (int i = 0; i < N; i++) { /* all at once: one registration time */
    w[i] = peer();
    peer_send(w[i], "MDPW02", "\x01", "svc", NULL);
  }
  settle_until(stats().workers_registered == N);
  CHECK_EQ(stats().workers, N);
  for (int i = 0; i < N; i++)
    peer_send(w[i], "MDPW02", "\x05", NULL);
  usleep(t_slow(400) * 1000); /* the stall: all of them overdue */
  /* The first loop iteration runs the overdue heartbeat and liveness
   * passes; the heartbeats going out to all N say the first has run. */
  uint64_t sent = stats().heartbeats_sent;
  settle_until(stats().heartbeats_sent >= sent + N ||
               stats().workers_expired > 0);
  CHECK_EQ(stats().workers_expired, 0);
  CHECK_EQ(stats().workers, N);
  CHECK_EQ(env_close(), 0);
}

/* ---- worker death and re-dispatch ------------------------------------- */

static void redispatch_after_disconnect(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w1 = worker_ready("svc");
  void *w2 = worker_ready("svc");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  zmq_msg_t a1, a2;
  mdp_msg_t *r1 = expect_request(w1, &a1);
  CHECK(r1 != NULL);
  mdp_msg_destroy(r1);
  peer_send(w1, "MDPW02", "\x06", NULL); /* w1 dies before replying */
  mdp_msg_t *r2 = expect_request(w2, &a2);
  CHECK(msg_is(r2, "MDPW02", "\x02", ANY, "", "job", NULL));
  mdp_msg_destroy(r2);
  worker_reply(w2, "\x04", &a2, "done by w2", NULL);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "done by w2", NULL));
  mdp_msg_destroy(rep);
  zmq_msg_close(&a1);
  zmq_msg_close(&a2);
  CHECK_EQ(stats().redispatched, 1);
  CHECK_EQ(stats().workers, 1);
  CHECK_EQ(env_close(), 0);
}

/* The kept copy comes back whole whatever the body's frames: up to 2 are
 * kept beside the request, more in a copied message. */
static void redispatch_keeps_every_body_frame(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *c = peer();
  for (int frames = 1; frames <= 3; frames++) {
    void *w1 = worker_ready("svc");
    void *w2 = worker_ready("svc");
    const char *p2 = frames >= 2 ? "b" : NULL;
    const char *p3 = frames >= 3 ? "c" : NULL;
    peer_send(c, "MDPC02", "\x01", "svc", "a", p2, p3, NULL);
    zmq_msg_t a1, a2;
    mdp_msg_t *r1 = expect_request(w1, &a1);
    CHECK(msg_is(r1, "MDPW02", "\x02", ANY, "", "a", p2, p3, NULL));
    mdp_msg_destroy(r1);
    peer_send(w1, "MDPW02", "\x06", NULL); /* w1 leaves before replying */
    mdp_msg_t *r2 = expect_request(w2, &a2);
    CHECK(msg_is(r2, "MDPW02", "\x02", ANY, "", "a", p2, p3, NULL));
    mdp_msg_destroy(r2);
    worker_reply(w2, "\x04", &a2, "done", NULL);
    mdp_msg_t *rep = recv_on(c, 2000);
    CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "done", NULL));
    mdp_msg_destroy(rep);
    zmq_msg_close(&a1);
    zmq_msg_close(&a2);
    CHECK_EQ(stats().redispatched, (uint64_t)frames);
    peer_send(w2, "MDPW02", "\x06", NULL);
    settle_until(stats().workers == 0);
    CHECK_EQ(stats().workers, 0);
  }
  CHECK_EQ(env_close(), 0);
}

static void redispatch_after_silence_when_worker_arrives(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  /* a 300 ms window, for w2 to take the request and answer in */
  o.heartbeat_interval_ms = t_slow(30);
  o.heartbeat_liveness = 10;
  CHECK(env_open(&o, NULL) == 0);
  /* queued first, so it is dispatched as w1's READY is handled */
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  settle_until(stats().queued == 1);
  void *w1 = worker_ready("svc");
  zmq_msg_t a1, a2;
  mdp_msg_t *r1 = expect_request(w1, &a1);
  CHECK(r1 != NULL);
  mdp_msg_destroy(r1);
  zmq_msg_close(&a1);
  /* w1 falls silent and expires; the request waits for the next worker. */
  CHECK(t_run_until(&E.loop, no_workers, NULL, 2000));
  CHECK_EQ(stats().queued, 1);
  void *w2 = worker_ready("svc");
  mdp_msg_t *r2 = expect_request(w2, &a2);
  CHECK(msg_is(r2, "MDPW02", "\x02", ANY, "", "job", NULL));
  mdp_msg_destroy(r2);
  worker_reply(w2, "\x04", &a2, "ok", NULL);
  zmq_msg_close(&a2);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "ok", NULL));
  mdp_msg_destroy(rep);
  CHECK_EQ(env_close(), 0);
}

/* max_queue bounds what the broker admits; a request it already holds
 * goes back to the front when its worker is lost, even if new requests
 * have filled the queue meanwhile (dropping the oldest request to keep a
 * newer one would lose what the broker had accepted). */
static void redispatch_ignores_full_queue(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue = 2;
  CHECK(env_open(&o, NULL) == 0);
  void *w1 = worker_ready("svc");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "first", NULL);
  zmq_msg_t a1, a2;
  mdp_msg_t *r1 = expect_request(w1, &a1);
  CHECK(msg_is(r1, "MDPW02", "\x02", ANY, "", "first", NULL));
  mdp_msg_destroy(r1);
  zmq_msg_close(&a1);
  peer_send(c, "MDPC02", "\x01", "svc", "second", NULL);
  peer_send(c, "MDPC02", "\x01", "svc", "third", NULL);
  peer_send(c, "MDPC02", "\x01", "svc", "refused", NULL);
  settle_until(stats().requests >= 4);
  CHECK_EQ(stats().queued, 2);
  CHECK_EQ(stats().dropped_queue_full, 1);
  peer_send(w1, "MDPW02", "\x06", NULL); /* w1 dies before replying */
  settle_until(stats().workers == 0);
  CHECK_EQ(stats().redispatched, 1);
  CHECK_EQ(stats().dropped_worker_lost, 0);
  CHECK_EQ(stats().queued, 3); /* over max_queue by the one retry */
  /* While it is over, new requests are still refused. */
  peer_send(c, "MDPC02", "\x01", "svc", "refused too", NULL);
  settle_until(stats().requests >= 5);
  CHECK_EQ(stats().dropped_queue_full, 2);
  /* The next worker gets the oldest first, then the others in order. */
  void *w2 = worker_ready("svc");
  const char *order[] = {"first", "second", "third"};
  for (int i = 0; i < 3; i++) {
    mdp_msg_t *r = expect_request(w2, &a2);
    CHECK(msg_is(r, "MDPW02", "\x02", ANY, "", order[i], NULL));
    mdp_msg_destroy(r);
    worker_reply(w2, "\x04", &a2, order[i], NULL);
    zmq_msg_close(&a2);
    mdp_msg_t *rep = recv_on(c, 2000);
    CHECK(msg_is(rep, "MDPC02", "\x03", "svc", order[i], NULL));
    mdp_msg_destroy(rep);
  }
  CHECK_EQ(stats().queued, 0);
  CHECK_EQ(env_close(), 0);
}

static void no_redispatch_after_partial(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w1 = worker_ready("svc");
  void *w2 = worker_ready("svc");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  zmq_msg_t a1;
  mdp_msg_t *r1 = expect_request(w1, &a1);
  CHECK(r1 != NULL);
  mdp_msg_destroy(r1);
  worker_reply(w1, "\x03", &a1, "half", NULL);
  mdp_msg_t *p = recv_on(c, 2000);
  CHECK(msg_is(p, "MDPC02", "\x02", "svc", "half", NULL));
  mdp_msg_destroy(p);
  peer_send(w1, "MDPW02", "\x06", NULL);
  zmq_msg_close(&a1);
  CHECK(quiet(w2, 150)); /* not re-sent: the client saw part of a reply */
  CHECK_EQ(stats().dropped_worker_lost, 1);
  CHECK_EQ(stats().redispatched, 0);
  CHECK_EQ(env_close(), 0);
}

static void redispatch_limit(void) {
  CHECK(env_open(NULL, NULL) == 0); /* max_redispatch 1 by default */
  void *w1 = worker_ready("svc");
  void *w2 = worker_ready("svc");
  void *w3 = worker_ready("svc");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "poison", NULL);
  zmq_msg_t a;
  mdp_msg_t *r = expect_request(w1, &a);
  CHECK(r != NULL);
  mdp_msg_destroy(r);
  zmq_msg_close(&a);
  peer_send(w1, "MDPW02", "\x06", NULL);
  r = expect_request(w2, &a);
  CHECK(r != NULL);
  mdp_msg_destroy(r);
  zmq_msg_close(&a);
  peer_send(w2, "MDPW02", "\x06", NULL);
  CHECK(quiet(w3, 150));
  CHECK_EQ(stats().redispatched, 1);
  CHECK_EQ(stats().dropped_worker_lost, 1);
  CHECK_EQ(env_close(), 0);
}

static void busy_timeout(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.busy_timeout_ms = t_slow(100);
  CHECK(env_open(&o, NULL) == 0);
  void *w1 = worker_ready("svc");
  void *w2 = worker_ready("svc");
  void *c = peer();
  uint64_t t0 = uv_hrtime(); /* before the dispatch: a lower bound */
  peer_send(c, "MDPC02", "\x01", "svc", "slow", NULL);
  zmq_msg_t a1, a2;
  mdp_msg_t *r1 = expect_request(w1, &a1);
  CHECK(r1 != NULL);
  mdp_msg_destroy(r1);
  /* w1 heartbeats but never replies: after the busy timeout it is told to
   * go and the request goes to w2. */
  mdp_msg_t *r2 = NULL;
  while (r2 == NULL && uv_hrtime() - t0 < t_slow(3000) * 1000000ull) {
    peer_send(w1, "MDPW02", "\x05", NULL);
    r2 = peer_recv(&E.loop, w2, 20);
    if (r2 && msg_is(r2, "MDPW02", "\x05", NULL)) {
      mdp_msg_destroy(r2);
      r2 = NULL;
    }
  }
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK(msg_is(r2, "MDPW02", "\x02", ANY, "", "slow", NULL));
  CHECK(ms >= t_slow(100) - 1); /* loop time is in whole ms */
  mdp_msg_destroy(r2);
  mdp_msg_t *d = recv_skip_hb(w1, 1000);
  CHECK(msg_is(d, "MDPW02", "\x06", NULL));
  mdp_msg_destroy(d);
  zmq_msg_close(&a1);
  (void)a2;
  CHECK_EQ(stats().workers_expired, 1);
  CHECK_EQ(env_close(), 0);
}

/* ---- protocol errors -------------------------------------------------- */

static int got_disconnect(void *sock) {
  mdp_msg_t *m = recv_skip_hb(sock, 2000);
  int ok = msg_is(m, "MDPW02", "\x06", NULL);
  if (!ok)
    msg_dump("expected DISCONNECT", m);
  mdp_msg_destroy(m);
  return ok;
}

static void protocol_errors_get_disconnect(void) {
  CHECK(env_open(NULL, NULL) == 0);
  /* A second READY. */
  void *twice = worker_ready("svc");
  peer_send(twice, "MDPW02", "\x01", "svc", NULL);
  CHECK(got_disconnect(twice));
  /* HEARTBEAT, PARTIAL and FINAL from workers the broker does not know. */
  void *u1 = peer(), *u2 = peer(), *u3 = peer();
  peer_send(u1, "MDPW02", "\x05", NULL);
  CHECK(got_disconnect(u1));
  peer_send(u2, "MDPW02", "\x04", "\x01\x6b\x8b\x45\x67", "", "x", NULL);
  CHECK(got_disconnect(u2));
  peer_send(u3, "MDPW02", "\x03", "abc", "", "x", NULL);
  CHECK(got_disconnect(u3));
  /* READY for an mmi.* service (RFC 8). */
  void *mmi = peer();
  peer_send(mmi, "MDPW02", "\x01", "mmi.service", NULL);
  CHECK(got_disconnect(mmi));
  settle_until(stats().workers == 0);
  CHECK_EQ(stats().workers, 0);
  /* A reply for a client the worker does not serve. */
  void *w = worker_ready("svc");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "q", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  zmq_msg_close(&addr);
  zmq_msg_t other;
  zmq_msg_init_size(&other, 5);
  memcpy(zmq_msg_data(&other), "\x00zzzz", 5);
  worker_reply(w, "\x04", &other, "forged", NULL);
  zmq_msg_close(&other);
  CHECK(got_disconnect(w));
  CHECK(quiet(c, 100)); /* the forged reply went nowhere */
  /* An idle worker sending a FINAL is also serving no such client. */
  void *idle = worker_ready("svc2");
  zmq_msg_t any;
  zmq_msg_init_size(&any, 5);
  memcpy(zmq_msg_data(&any), "\x00zzzz", 5);
  worker_reply(idle, "\x04", &any, "unasked", NULL);
  zmq_msg_close(&any);
  CHECK(got_disconnect(idle));
  CHECK(stats().disconnects_sent >= 7);
  CHECK_EQ(env_close(), 0);
}

static void invalid_vectors_then_roundtrip(void) {
  vectors_load();
  CHECK(nvectors > 0);
  /* Strictly RFC 18: some of its invalid lines are valid Majortomo
   * (e.g. a HEARTBEAT with a leading empty frame). */
  mdp_broker_options_t o;
  test_opts(&o);
  o.dialects = MDP_DIALECT_RFC18;
  CHECK(env_open(&o, NULL) == 0);
  size_t sent = 0;
  for (size_t i = 0; i < nvectors; i++) {
    const vector_t *v = &vectors[i];
    if (v->valid || v->dialect != MDP_DIALECT_RFC18 ||
        v->role != MDP_ROLE_BROKER || v->nframes == 0)
      continue; /* a zero-frame message cannot be sent */
    void *s = peer();
    CHECK_EQ(peer_send_msg(s, vector_msg(v)), 0);
    sent++;
  }
  CHECK(sent >= 14);
  settle_until(stats().dropped_invalid >= sent);
  CHECK_EQ(stats().dropped_invalid, sent);
  CHECK_EQ(stats().workers, 0);
  CHECK_EQ(stats().requests, 0);
  /* The broker still works. */
  void *w = worker_ready("echo");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "echo", "still alive", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "yes", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "echo", "yes", NULL));
  mdp_msg_destroy(rep);
  CHECK_EQ(env_close(), 0);
}

static void invalid_from_worker_forgets_it(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w = worker_ready("svc");
  peer_send(w, "MDPW02", "\x09", NULL); /* unknown command */
  CHECK(got_disconnect(w));
  CHECK_EQ(stats().workers, 0);
  CHECK_EQ(stats().dropped_invalid, 1);
  CHECK_EQ(env_close(), 0);
}

/* ---- MMI -------------------------------------------------------------- */

static mdp_msg_t *mmi(void *c, const char *service, const char *arg) {
  peer_send(c, "MDPC02", "\x01", service, arg, NULL);
  return recv_on(c, 2000);
}

static void mmi_services(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *c = peer();
  mdp_msg_t *m = mmi(c, "mmi.service", "echo");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL));
  mdp_msg_destroy(m);
  m = mmi(c, "mmi.services", "");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.services", "", NULL));
  mdp_msg_destroy(m);
  void *w = worker_ready("echo");
  worker_ready("other");
  (void)w;
  m = mmi(c, "mmi.service", "echo");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "200", NULL));
  mdp_msg_destroy(m);
  m = mmi(c, "mmi.nosuch", "echo");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.nosuch", "501", NULL));
  mdp_msg_destroy(m);
  m = mmi(c, "mmi.services", "");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.services", ANY, ANY, NULL));
  int echo = 0, other = 0;
  for (size_t i = 3; i < mdp_msg_size(m); i++) {
    echo |= mdp_msg_frame_eq(m, i, "echo", 4);
    other |= mdp_msg_frame_eq(m, i, "other", 5);
  }
  mdp_msg_destroy(m);
  CHECK(echo && other);
  /* mmi.workers: idle, busy, queued. */
  void *c2 = peer();
  peer_send(c2, "MDPC02", "\x01", "echo", "busy it", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  peer_send(c2, "MDPC02", "\x01", "echo", "queued", NULL);
  settle_until(stats().queued == 1);
  m = mmi(c, "mmi.workers", "echo");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.workers", "200", "0", "1", "1",
               NULL));
  mdp_msg_destroy(m);
  m = mmi(c, "mmi.workers", "nosuch");
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.workers", "404", NULL));
  mdp_msg_destroy(m);
  zmq_msg_close(&addr);
  CHECK_EQ(stats().mmi_requests, 7);
  CHECK_EQ(env_close(), 0);
}

/* mmi.services answers with at most max_mmi_reply_bytes of names, so a
 * small request cannot buy a reply of megabytes. */
static void mmi_services_bounded(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  /* Each 9-byte name costs 9 + 64 bytes: three fit in 250. */
  o.max_mmi_reply_bytes = 250;
  CHECK(env_open(&o, NULL) == 0);
  char name[16];
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "service-%d", i);
    worker_ready(name);
  }
  void *c = peer();
  mdp_msg_t *m = mmi(c, "mmi.services", "");
  CHECK(m != NULL);
  size_t names = m ? mdp_msg_size(m) - 3 : 0;
  if (names != 3)
    msg_dump("mmi.services", m);
  CHECK_EQ(names, 3);
  mdp_msg_destroy(m);
  CHECK_EQ(stats().mmi_truncated, 1);
  CHECK_EQ(env_close(), 0);
  /* 0: all of them. */
  o.max_mmi_reply_bytes = 0;
  CHECK(env_open(&o, NULL) == 0);
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "service-%d", i);
    worker_ready(name);
  }
  c = peer();
  m = mmi(c, "mmi.services", "");
  CHECK(m != NULL && mdp_msg_size(m) == 13);
  mdp_msg_destroy(m);
  CHECK_EQ(stats().mmi_truncated, 0);
  CHECK_EQ(env_close(), 0);
}

/* ---- peers that vanish ------------------------------------------------ */

static void reply_to_vanished_client(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w = worker_ready("svc");
  void *gone = zmq_socket(E.ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(gone, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(gone, E.endpoint);
  E.peers[E.n_peers++] = gone; /* closed by env_close */
  peer_send(gone, "MDPC02", "\x01", "svc", "q", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  /* Vanish: disconnecting an inproc pipe hands its termination to the
   * broker's socket at once, from this thread (zmq_close would leave it to
   * the context's reaper thread, whenever that is scheduled).  The settle
   * lets the broker's loop process it; no other thread is involved. */
  zmq_disconnect(gone, E.endpoint);
  settle(50);
  worker_reply(w, "\x04", &addr, "nobody listens", NULL);
  zmq_msg_close(&addr);
  settle_until(stats().dropped_unroutable >= 1);
  CHECK_EQ(stats().dropped_unroutable, 1);
  CHECK_EQ(stats().replies, 0); /* dropped, so not counted as forwarded */
  CHECK_EQ(stats().workers_idle, 1); /* the worker is free again */
  /* and serves the next client */
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "svc", "next", NULL);
  req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "ok", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "ok", NULL));
  mdp_msg_destroy(rep);
  CHECK_EQ(env_close(), 0);
}

static void request_to_vanished_worker(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *gone = zmq_socket(E.ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(gone, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(gone, E.endpoint);
  E.peers[E.n_peers++] = gone; /* closed by env_close */
  size_t before = stats().workers_registered;
  peer_send(gone, "MDPW02", "\x01", "svc", NULL);
  settle_until(stats().workers_registered != before);
  /* gone without DISCONNECT (see reply_to_vanished_client) */
  zmq_disconnect(gone, E.endpoint);
  settle(50);
  void *w2 = worker_ready("svc");
  void *c = peer();
  /* The request goes first to the vanished worker (least recently used),
   * is found unroutable, and goes to w2 instead. */
  peer_send(c, "MDPC02", "\x01", "svc", "q", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w2, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "q", NULL));
  mdp_msg_destroy(req);
  zmq_msg_close(&addr);
  CHECK_EQ(stats().workers, 1);
  CHECK_EQ(stats().workers_unreachable, 1);
  CHECK_EQ(env_close(), 0);
}

static void slow_client_does_not_block_others(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue_per_client = 0; /* this client may queue all it sends */
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready("svc");
  /* A client that never reads, with the smallest pipe it can have. */
  void *slow = zmq_socket(E.ctx, ZMQ_DEALER);
  int one = 1, zero = 0;
  zmq_setsockopt(slow, ZMQ_RCVHWM, &one, sizeof one);
  zmq_setsockopt(slow, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(slow, E.endpoint);
  E.peers[E.n_peers++] = slow;
  void *fast = peer();
  /* More replies than the broker's pipe to it can hold (SNDHWM 1000). */
  int n = 1500;
  for (int i = 0; i < n; i++)
    peer_send(slow, "MDPC02", "\x01", "svc", "q", NULL);
  for (int i = 0; i < n; i++) {
    zmq_msg_t addr;
    mdp_msg_t *req = expect_request(w, &addr);
    CHECK(req != NULL);
    mdp_msg_destroy(req);
    worker_reply(w, "\x04", &addr, "r", NULL);
    zmq_msg_close(&addr);
  }
  /* The fast client is served at once, not queued behind the slow one. */
  peer_send(fast, "MDPC02", "\x01", "svc", "me too", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "me too", NULL));
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "served", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(fast, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "served", NULL));
  mdp_msg_destroy(rep);
  mdp_broker_stats_t s = stats();
  printf("# slow client: %llu replies dropped of %d\n",
         (unsigned long long)s.dropped_slow_client, n);
  CHECK(s.dropped_slow_client > 0);
  /* Counted once each: delivered or dropped. */
  CHECK_EQ(s.replies + s.dropped_slow_client, (uint64_t)n + 1);
  CHECK_EQ(env_close(), 0);
}

/* ---- endpoints, close, logging ---------------------------------------- */

static void tcp_and_ipc_endpoints(void) {
  CHECK(env_open(NULL, "tcp://127.0.0.1:*") == 0);
  CHECK(strncmp(E.endpoint, "tcp://127.0.0.1:", 16) == 0);
  char ipc[128];
  snprintf(ipc, sizeof ipc, "ipc:///tmp/mdp-test-broker-%d.ipc", (int)getpid());
  CHECK_EQ(mdp_broker_bind(E.broker, ipc), 0);
  void *w = worker_ready("svc"); /* over tcp */
  void *c = peer_new(E.ctx, ZMQ_DEALER, ipc);
  E.peers[E.n_peers++] = c;
  peer_send(c, "MDPC02", "\x01", "svc", "via ipc", NULL);
  zmq_msg_t addr;
  mdp_msg_t *req = expect_request(w, &addr);
  CHECK(req != NULL);
  mdp_msg_destroy(req);
  worker_reply(w, "\x04", &addr, "via tcp", NULL);
  zmq_msg_close(&addr);
  mdp_msg_t *rep = recv_on(c, 2000);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "via tcp", NULL));
  mdp_msg_destroy(rep);
  /* Binding what is taken or malformed fails with a clear code. */
  CHECK_EQ(mdp_broker_bind(E.broker, E.endpoint), MDP_EADDRINUSE);
  CHECK_EQ(mdp_broker_bind(E.broker, "nonsense://x"), MDP_EINVAL);
  char small[4];
  CHECK_EQ(mdp_broker_last_endpoint(E.broker, small, sizeof small),
           MDP_ENOBUFS);
  CHECK_EQ(env_close(), 0);
  unlink(ipc + 6);
}

static void close_disconnects_workers(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *w1 = worker_ready("a");
  void *w2 = worker_ready("b");
  void *c = peer();
  peer_send(c, "MDPC02", "\x01", "queued-forever", "x", NULL);
  settle_until(stats().queued == 1);
  CHECK_EQ(mdp_broker_is_closing(E.broker), 0);
  mdp_broker_close(E.broker, on_closed);
  CHECK_EQ(mdp_broker_is_closing(E.broker), 1);
  CHECK(t_run_until(&E.loop, is_closed, &E.closed, 2000));
  E.broker = NULL;
  /* (a HEARTBEAT may come first if this machine is slow today) */
  mdp_msg_t *d1 = recv_skip_hb(w1, 1000), *d2 = recv_skip_hb(w2, 1000);
  int ok = msg_is(d1, "MDPW02", "\x06", NULL) &&
           msg_is(d2, "MDPW02", "\x06", NULL);
  mdp_msg_destroy(d1);
  mdp_msg_destroy(d2);
  CHECK(ok);
  CHECK_EQ(env_close(), 0);
}

static int log_lines, log_debug_lines;
static void count_log(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  (void)line;
  log_lines++;
  log_debug_lines += level == MDP_LOG_DEBUG;
}

/* Lines about a worker carry its service and identity as fields. */
static char field_service[64], field_dialect[16];
static size_t field_count;
static void keep_fields(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  (void)level;
  if (strstr(line, "ready for service") == NULL)
    return;
  const mdp_log_field_t *f = mdp_log_fields(&field_count);
  for (size_t i = 0; i < field_count; i++) {
    if (strcmp(f[i].key, "service") == 0)
      snprintf(field_service, sizeof field_service, "%s", f[i].value);
    if (strcmp(f[i].key, "dialect") == 0)
      snprintf(field_dialect, sizeof field_dialect, "%s", f[i].value);
  }
}

static void log_fields(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = keep_fields;
  CHECK(env_open(&o, NULL) == 0);
  worker_ready("fields");
  CHECK_EQ(field_count, 3);
  CHECK(strcmp(field_service, "fields") == 0);
  CHECK(strcmp(field_dialect, "rfc18") == 0);
  size_t n = 99;
  CHECK(mdp_log_fields(&n) == NULL); /* outside a callback */
  CHECK_EQ(n, 0);
  CHECK_EQ(env_close(), 0);
}

static void log_callback(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = count_log;
  o.log_level = MDP_LOG_DEBUG;
  log_lines = log_debug_lines = 0;
  CHECK(env_open(&o, NULL) == 0);
  CHECK(log_lines >= 1); /* "bound to ..." */
  CHECK_EQ(log_debug_lines, 0);
  void *p = peer();
  peer_send(p, "garbage", NULL);
  settle_until(stats().dropped_invalid >= 1);
  CHECK_EQ(stats().dropped_invalid, 1);
  CHECK(log_debug_lines >= 1); /* invalid messages are logged at debug */
  CHECK_EQ(env_close(), 0);
  /* Above the level, nothing is even formatted. */
  o.log_level = MDP_LOG_WARN;
  log_lines = 0;
  CHECK(env_open(&o, NULL) == 0);
  CHECK_EQ(log_lines, 0);
  CHECK_EQ(env_close(), 0);
}

static mdp_broker_t *log_broker;
static void close_on_ready(void *data, mdp_log_level_t level,
                           const char *line) {
  (void)data;
  (void)level;
  log_lines++;
  if (strstr(line, "ready for service") != NULL && log_broker)
    mdp_broker_close(log_broker, on_closed);
}

static void close_inside_message_handling(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = close_on_ready;
  o.log_level = MDP_LOG_INFO;
  CHECK(env_open(&o, NULL) == 0);
  log_broker = E.broker;
  void *w = peer();
  peer_send(w, "MDPW02", "\x01", "svc", NULL);
  /* The broker closes itself from the log line of this READY; handling
   * must finish without touching freed memory (ASan/valgrind watch). */
  CHECK(t_run_until(&E.loop, is_closed, &E.closed, 2000));
  log_broker = NULL;
  E.broker = NULL;
  CHECK_EQ(env_close(), 0);
}

/* libzmq's bind processes the socket's commands as reading ZMQ_EVENTS
 * does: a bind while a message waits must not leave it waiting. */
static void bind_at_run_time_loses_no_wakeup(void) {
  CHECK(env_open(NULL, NULL) == 0);
  void *c = peer();
  for (int round = 0; round < 5; round++) {
    /* The request reaches the broker's pipe at once (inproc), and signals
     * its socket; the bind below then consumes that signal. */
    peer_send(c, "MDPC02", "\x01", "mmi.service", "echo", NULL);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://late-bind-%d", round);
    CHECK_EQ(mdp_broker_bind(E.broker, ep), 0);
    /* Well within a heartbeat interval (1 s, whose send would also look). */
    mdp_msg_t *m = recv_on(c, 300);
    CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL));
    mdp_msg_destroy(m);
  }
  /* A failed bind processes them too. */
  peer_send(c, "MDPC02", "\x01", "mmi.service", "echo", NULL);
  CHECK_EQ(mdp_broker_bind(E.broker, "inproc://late-bind-0"),
           MDP_EADDRINUSE);
  mdp_msg_t *m = recv_on(c, 300);
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL));
  mdp_msg_destroy(m);
  CHECK_EQ(env_close(), 0);
}

/* Lines about single messages are sampled: the first and every 1000th. */
static int invalid_lines;
static void count_invalid_lines(void *data, mdp_log_level_t level,
                                const char *line) {
  (void)data;
  (void)level;
  invalid_lines += strstr(line, "invalid message") != NULL;
}

static void message_logs_sampled(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = count_invalid_lines;
  o.log_level = MDP_LOG_DEBUG;
  invalid_lines = 0;
  CHECK(env_open(&o, NULL) == 0);
  void *p = peer();
  for (int i = 0; i < 3000; i++) {
    peer_send(p, "garbage", NULL);
    if (i % 250 == 249) /* within the pipe's high-water mark */
      settle_until(stats().dropped_invalid >= (uint64_t)i + 1);
  }
  settle_until(stats().dropped_invalid >= 3000);
  CHECK_EQ(stats().dropped_invalid, 3000);
  CHECK_EQ(invalid_lines, 4); /* 1, 1000, 2000, 3000 */
  CHECK_EQ(env_close(), 0);
}


/* Per-peer life-cycle lines are rate-bounded: one connection cycling READY
 * and DISCONNECT 5,000 times gave 10,006 INFO lines; now at most
 * MDP__BROKER_LOG_LINES_PER_S (20) per second of each kind, and the next
 * line logged says how many were suppressed.  Likewise the WARN for
 * requests lost with their workers. */
static int ready_lines, leave_lines, lost_lines;
static char last_ready[512];
static void count_peer_lines(void *data, mdp_log_level_t level,
                             const char *line) {
  (void)data;
  (void)level;
  if (strstr(line, "ready for service")) {
    ready_lines++;
    size_t n = strlen(line);
    n = n < sizeof last_ready ? n : sizeof last_ready - 1;
    memcpy(last_ready, line, n);
    last_ready[n] = '\0';
  }
  leave_lines += strstr(line, "leaves:") != NULL;
  lost_lines += strstr(line, "lost with its worker") != NULL;
}

static void peer_lines_rate_bounded(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = count_peer_lines;
  o.log_level = MDP_LOG_INFO;
  o.max_redispatch = 0;
  ready_lines = leave_lines = lost_lines = 0;
  CHECK(env_open(&o, NULL) == 0);
  void *w = peer();
  uint64_t t0 = uv_hrtime();
  int n = 5000;
  for (int i = 0; i < n; i++) {
    peer_send(w, "MDPW02", "\x01", "svc", NULL);
    peer_send(w, "MDPW02", "\x06", NULL);
    if (i % 200 == 199)
      settle_until(stats().workers_registered >= (uint64_t)i + 1);
  }
  settle_until(stats().workers_registered >= (uint64_t)n &&
               stats().workers == 0);
  CHECK_EQ(stats().workers_registered, (uint64_t)n);
  double secs = (uv_hrtime() - t0) / 1e9;
  int bound = 20 * ((int)secs + 2);
  printf("# %d READY/DISCONNECT pairs in %.2f s: %d ready and %d leave "
         "lines (bound %d each)\n", n, secs, ready_lines, leave_lines, bound);
  CHECK(ready_lines >= 1 && ready_lines <= bound);
  CHECK(leave_lines >= 1 && leave_lines <= bound);
  /* Requests lost with their workers (no re-dispatch). */
  void *c = peer();
  for (int i = 0; i < 100; i++) {
    void *wk = peer();
    peer_send(wk, "MDPW02", "\x01", "lost", NULL);
    peer_send(c, "MDPC02", "\x01", "lost", "x", NULL);
    zmq_msg_t a;
    mdp_msg_t *r = expect_request(wk, &a);
    CHECK(r != NULL);
    mdp_msg_destroy(r);
    zmq_msg_close(&a);
    peer_send(wk, "MDPW02", "\x06", NULL);
    settle_until(stats().dropped_worker_lost >= (uint64_t)i + 1);
    zmq_close(wk);
    E.n_peers--; /* closed here */
  }
  CHECK_EQ(stats().dropped_worker_lost, 100);
  CHECK(lost_lines >= 1 && lost_lines <= 20 * ((int)((uv_hrtime() - t0) / 1e9) + 2));
  /* A second later the next line carries the count of those suppressed. */
  settle(1100);
  peer_send(w, "MDPW02", "\x01", "svc", NULL);
  settle_until(stats().workers == 1);
  printf("# then: %s\n", last_ready);
  CHECK(strstr(last_ready, "similar lines suppressed") != NULL);
  CHECK_EQ(env_close(), 0);
}

/* After a flood, memory is handed back from a timer, never inside the
 * message handling that empties the queue. */
static void trim_after_flood_from_timer(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue_per_client = 0;
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  for (int i = 0; i < 1200; i++) {
    peer_send(c, "MDPC02", "\x01", "svc", "x", NULL);
    if (i % 250 == 249) /* within the pipe's high-water mark */
      settle_until(stats().queued >= (size_t)i + 1);
  }
  settle_until(stats().queued == 1200);
  CHECK_EQ(stats().queued, 1200);
  /* A worker drains the queue: each FINAL brings the next request. */
  void *w = worker_ready("svc");
  for (int i = 0; i < 1200; i++) {
    zmq_msg_t a;
    mdp_msg_t *r = expect_request(w, &a);
    CHECK(r != NULL);
    mdp_msg_destroy(r);
    if (i + 1 < 1200 || E.broker->trims == 0) /* not yet, inside handling */
      worker_reply(w, "\x04", &a, "y", NULL);
    zmq_msg_close(&a);
    if (r == NULL)
      break;
  }
  settle_until(stats().queued == 0);
  CHECK_EQ(stats().queued, 0);
  CHECK_EQ(E.broker->trims, 0);
  settle_until(E.broker->trims == 1);
  CHECK_EQ(E.broker->trims, 1);
  CHECK_EQ(env_close(), 0);
}

/* The socket-setup hook sees the ROUTER after the first-class options are
 * set and before any bind; its failure fails mdp_broker_new() cleanly. */
typedef struct {
  int calls, sndhwm, rcvhwm, keepalive, keepalive_idle, ipv6, fail;
} setup_seen_t;

static int record_setup(void *socket, void *data) {
  setup_seen_t *seen = data;
  size_t len = sizeof(int);
  seen->calls++;
  zmq_getsockopt(socket, ZMQ_SNDHWM, &seen->sndhwm, &len);
  zmq_getsockopt(socket, ZMQ_RCVHWM, &seen->rcvhwm, &len);
  zmq_getsockopt(socket, ZMQ_TCP_KEEPALIVE, &seen->keepalive, &len);
  zmq_getsockopt(socket, ZMQ_TCP_KEEPALIVE_IDLE, &seen->keepalive_idle, &len);
  zmq_getsockopt(socket, ZMQ_IPV6, &seen->ipv6, &len);
  char ep[256];
  len = sizeof ep;
  zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, ep, &len);
  if (ep[0] != '\0')
    seen->fail = 2; /* bound already: too late */
  return seen->fail;
}

static void socket_setup_hook_and_options(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  setup_seen_t seen = {0};
  o.socket.setup = record_setup;
  o.socket.setup_data = &seen;
  o.socket.sndhwm = 123;
  o.socket.rcvhwm = 77;
  o.socket.tcp_keepalive = 1;
  o.socket.tcp_keepalive_idle = 30;
  o.socket.ipv6 = 1;
  CHECK(env_open(&o, NULL) == 0);
  CHECK_EQ(seen.calls, 1);
  CHECK_EQ(seen.sndhwm, 123);
  CHECK_EQ(seen.rcvhwm, 77);
  CHECK_EQ(seen.keepalive, 1);
  CHECK_EQ(seen.keepalive_idle, 30);
  CHECK_EQ(seen.ipv6, 1);
  CHECK_EQ(seen.fail, 0);
  CHECK_EQ(env_close(), 0);
  /* Defaults leave libzmq's own. */
  test_opts(&o);
  memset(&seen, 0, sizeof seen);
  o.socket.setup = record_setup;
  o.socket.setup_data = &seen;
  CHECK(env_open(&o, NULL) == 0);
  CHECK_EQ(seen.sndhwm, 1000);
  CHECK_EQ(seen.keepalive, -1);
  CHECK_EQ(seen.ipv6, 0);
  CHECK_EQ(env_close(), 0);
  /* A failing hook: MDP_ESETUP, and nothing left for the loop to close. */
  uv_loop_t loop;
  uv_loop_init(&loop);
  test_opts(&o);
  memset(&seen, 0, sizeof seen);
  seen.fail = 1;
  o.socket.setup = record_setup;
  o.socket.setup_data = &seen;
  mdp_broker_t *b = NULL;
  CHECK_EQ(mdp_broker_new(&loop, &o, &b), MDP_ESETUP);
  CHECK(b == NULL);
  CHECK_EQ(uv_loop_close(&loop), 0);
  o.socket.sndhwm = -1;
  o.socket.setup = NULL;
  CHECK_EQ(mdp_broker_new(&loop, &o, &b), MDP_EINVAL);
}

/* An IPv6 literal endpoint just works (ZMQ_IPV6 is turned on for it);
 * opts.ipv6 makes tcp://\* dual-stack; a host name is refused with a log
 * line that says what a bind accepts. */
static char bind_error_line[512];
static void keep_error_line(void *data, mdp_log_level_t level,
                            const char *line) {
  (void)data;
  if (level == MDP_LOG_ERROR)
    snprintf(bind_error_line, sizeof bind_error_line, "%s", line);
}

static int mmi_answers(void *ctx, const char *endpoint) {
  void *c = zmq_socket(ctx, ZMQ_DEALER);
  int one = 1, zero = 0;
  zmq_setsockopt(c, ZMQ_IPV6, &one, sizeof one);
  zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(c, endpoint);
  peer_send(c, "MDPC02", "\x01", "mmi.service", "echo", NULL);
  mdp_msg_t *m = recv_on(c, 3000);
  int ok = msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL);
  mdp_msg_destroy(m);
  zmq_close(c);
  return ok;
}

static void ipv6_and_bind_errors(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.log_cb = keep_error_line;
  CHECK(env_open(&o, "tcp://[::1]:*") == 0);
  CHECK(strncmp(E.endpoint, "tcp://[::1]:", 12) == 0);
  CHECK(mmi_answers(E.ctx, E.endpoint));
  bind_error_line[0] = '\0';
  CHECK_EQ(mdp_broker_bind(E.broker, "tcp://localhost:5555"), MDP_EINVAL);
  CHECK(strstr(bind_error_line, "resolves no host name") != NULL);
  CHECK(strstr(bind_error_line, "tcp://localhost:5555") != NULL);
  CHECK_EQ(env_close(), 0);
  /* Dual stack: one tcp://\* bind, reached over IPv4 and IPv6. */
  test_opts(&o);
  o.socket.ipv6 = 1;
  CHECK(env_open(&o, "tcp://*:*") == 0);
  const char *port = strrchr(E.endpoint, ':') + 1;
  char v4[64], v6[64];
  snprintf(v4, sizeof v4, "tcp://127.0.0.1:%s", port);
  snprintf(v6, sizeof v6, "tcp://[::1]:%s", port);
  CHECK(mmi_answers(E.ctx, v4));
  CHECK(mmi_answers(E.ctx, v6));
  CHECK_EQ(env_close(), 0);
}

static void options_validated(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_options_t o;
  mdp_broker_t *b = NULL;
  mdp_broker_options_init(&o);
  CHECK_EQ(o.heartbeat_interval_ms, 2500);
  CHECK_EQ(o.heartbeat_liveness, 4);
  CHECK_EQ(o.request_expiry_ms, 30000);
  CHECK_EQ(o.max_queue, 10000);
  CHECK_EQ(o.max_redispatch, 1);
  CHECK_EQ(o.busy_timeout_ms, 0);
  CHECK_EQ(o.silent_busy_timeout_ms, 900000);
  CHECK_EQ(o.silent_busy_dialects, MDP_DIALECT_MAJORTOMO | MDP_DIALECT_MDP01);
  CHECK_EQ(o.disconnect_expired, 0);
  CHECK_EQ(o.max_mmi_reply_bytes, 65536);
  o.heartbeat_interval_ms = 0;
  CHECK_EQ(mdp_broker_new(&loop, &o, &b), MDP_EINVAL);
  mdp_broker_options_init(&o);
  o.heartbeat_liveness = 0;
  CHECK_EQ(mdp_broker_new(&loop, &o, &b), MDP_EINVAL);
  mdp_broker_options_init(&o);
  o.silent_busy_dialects = 8; /* no such dialect */
  CHECK_EQ(mdp_broker_new(&loop, &o, &b), MDP_EINVAL);
  /* Durations: none over MDP_BROKER_TIME_MAX_MS, so none can wrap. */
  struct {
    uint64_t interval;
    unsigned liveness;
    uint64_t silent_busy, busy, expiry;
    int ok;
  } edges[] = {
      {UINT64_MAX, 4, 0, 0, 0, 0},
      {MDP_BROKER_TIME_MAX_MS + 1, 1, 0, 0, 0, 0},
      {MDP_BROKER_TIME_MAX_MS, 1, 0, 0, 0, 1},
      {MDP_BROKER_TIME_MAX_MS, 2, 0, 0, 0, 0}, /* the window would wrap */
      {1ull << 31, 2, 0, 0, 0, 0},
      {1000, UINT32_MAX, 0, 0, 0, 0},
      {1, UINT32_MAX, 0, 0, 0, 1},
      {1000, 4, UINT64_MAX, 0, 0, 0},
      {1000, 4, 0, UINT64_MAX, 0, 0},
      {1000, 4, 0, 0, UINT64_MAX, 0},
      {1000, 4, MDP_BROKER_TIME_MAX_MS, MDP_BROKER_TIME_MAX_MS,
       MDP_BROKER_TIME_MAX_MS, 1},
  };
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
    mdp_broker_options_init(&o);
    o.heartbeat_interval_ms = edges[i].interval;
    o.heartbeat_liveness = edges[i].liveness;
    o.silent_busy_timeout_ms = edges[i].silent_busy;
    o.busy_timeout_ms = edges[i].busy;
    o.request_expiry_ms = edges[i].expiry;
    b = NULL;
    int rc = mdp_broker_new(&loop, &o, &b);
    if ((rc == 0) != edges[i].ok)
      printf("# edge %zu: %s\n", i, mdp_strerror(rc));
    CHECK_EQ(rc == 0, edges[i].ok);
    CHECK_EQ(rc == 0 || rc == MDP_EINVAL, 1);
    if (b != NULL) {
      mdp_broker_close(b, NULL);
      uv_run(&loop, UV_RUN_DEFAULT);
      b = NULL;
    }
  }
  CHECK_EQ(mdp_broker_new(NULL, NULL, &b), MDP_EINVAL);
  CHECK(b == NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(options_validated);
  RUN(log_fields);
  RUN(bind_at_run_time_loses_no_wakeup);
  RUN(message_logs_sampled);
  RUN(peer_lines_rate_bounded);
  RUN(trim_after_flood_from_timer);
  RUN(mmi_services_bounded);
  RUN(socket_setup_hook_and_options);
  RUN(ipv6_and_bind_errors);
  RUN(roundtrip_exact_frames);
  RUN(service_figures_bounded);
  RUN(queue_wait_and_duration_measured);
  RUN(multiframe_and_partials);
  RUN(body_not_copied);
  RUN(lru_order);
  RUN(fair_between_clients);
  RUN(queued_until_worker);
  RUN(queued_request_expires);
  RUN(queue_limit);
  RUN(max_msg_size_enforced);
  RUN(frame_and_count_limits);
  RUN(total_queue_limit);
  RUN(flooding_client_cannot_lock_out_others);
  RUN(queued_bytes_limit);
  RUN(clients_create_half_the_services);
  RUN(broker_sends_heartbeats);
  RUN(no_heartbeat_within_interval_of_other_commands);
  RUN(silent_worker_expires);
  RUN(redispatch_after_disconnect);
  RUN(redispatch_keeps_every_body_frame);
  RUN(redispatch_after_silence_when_worker_arrives);
  RUN(redispatch_ignores_full_queue);
  RUN(no_redispatch_after_partial);
  RUN(redispatch_limit);
  RUN(busy_timeout);
  RUN(protocol_errors_get_disconnect);
  RUN(invalid_vectors_then_roundtrip);
  RUN(invalid_from_worker_forgets_it);
  RUN(mmi_services);
  RUN(reply_to_vanished_client);
  RUN(request_to_vanished_worker);
  RUN(slow_client_does_not_block_others);
  RUN(tcp_and_ipc_endpoints);
  RUN(close_disconnects_workers);
  RUN(log_callback);
  RUN(close_inside_message_handling);
  RUN(stall_does_not_expire_heard_workers);
  t_context_term();
  return t_done();
}
