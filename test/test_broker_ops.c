/* The run-time side of mdp_broker_t that an operator's reload and access
 * list use (lib/broker_ops.c): the access hook on REQUEST, READY and
 * mmi.service; mdp_broker_set_limits and mdp_broker_set_log_level from the
 * next message on; the queue figures of /status.  In-process, with raw
 * peers (test/peer.h); the CURVE side (user ids from the ZAP handler) is
 * tested with the real tools in test/test_operating.py. */
#include "harness.h"
#include "peer.h"
#include "broker_env.h"

typedef struct {
  int calls;
  mdp_broker_access_t last_role;
  char last_service[64];
  int user_seen; /* a non-NULL user id was passed (never, in plaintext) */
} hook_t;

/* Denies everything about services named "secret*", and serving "ro". */
static int deny_secret(void *data, mdp_broker_access_t role,
                       const uint8_t *service, size_t size,
                       const char *user) {
  hook_t *h = data;
  h->calls++;
  h->last_role = role;
  snprintf(h->last_service, sizeof h->last_service, "%.*s", (int)size,
           (const char *)service);
  if (user != NULL)
    h->user_seen = 1;
  if (size >= 6 && memcmp(service, "secret", 6) == 0)
    return 0;
  if (role == MDP_BROKER_ACCESS_SERVE && size == 2 &&
      memcmp(service, "ro", 2) == 0)
    return 0;
  return 1;
}

static void *worker_ready(const char *service) {
  void *w = peer();
  peer_send(w, "MDPW02", "\x01", service, NULL);
  return w;
}

static void access_hook(void) {
  CHECK(env_open(NULL, NULL) == 0);
  hook_t h = {0};
  mdp_broker_set_access_cb(E.broker, deny_secret, &h);
  /* A READY for a denied service: DISCONNECT, not registered, counted. */
  void *w = worker_ready("secret.db");
  mdp_msg_t *m = recv_skip_hb(w, 2000);
  CHECK(msg_is(m, "MDPW02", "\x06", NULL)); /* DISCONNECT */
  mdp_msg_destroy(m);
  CHECK_EQ(h.last_role, MDP_BROKER_ACCESS_SERVE);
  CHECK(strcmp(h.last_service, "secret.db") == 0);
  CHECK_EQ(stats().workers, 0);
  /* Serving "ro" denied, requesting it allowed (roles apart). */
  void *wro = worker_ready("ro");
  m = recv_skip_hb(wro, 2000);
  CHECK(msg_is(m, "MDPW02", "\x06", NULL)); /* DISCONNECT */
  mdp_msg_destroy(m);
  uint64_t req = 9, serve = 9;
  mdp_broker_get_denied(E.broker, &req, &serve);
  CHECK_EQ(req, 0);
  CHECK_EQ(serve, 2);
  /* An allowed worker registers; its service answers. */
  void *ok = worker_ready("open");
  void *c = peer();
  settle_until(stats().workers == 1);
  CHECK_EQ(stats().workers, 1);
  peer_send(c, "MDPC02", "\x01", "open", "hi", NULL);
  m = recv_skip_hb(ok, 2000);
  CHECK(msg_is(m, "MDPW02", "\x02", ANY, "", "hi", NULL));
  mdp_msg_destroy(m);
  /* A REQUEST for a denied service: dropped (no reply, not queued),
   * counted, not among the accepted requests. */
  uint64_t before = stats().requests;
  peer_send(c, "MDPC02", "\x01", "secret.db", "x", NULL);
  settle_until((mdp_broker_get_denied(E.broker, &req, NULL), req == 1));
  CHECK_EQ(req, 1);
  CHECK_EQ(stats().requests, before);
  CHECK_EQ(stats().queued, 0);
  CHECK(quiet(c, 100));
  /* mmi.service: 404 for a service the asker may not request, though a
   * worker serves it?  None can here; so make one: allow serving
   * secret.x by switching the hook off, then on again. */
  mdp_broker_set_access_cb(E.broker, NULL, NULL);
  void *ws = worker_ready("secret.x");
  settle_until(stats().workers == 2);
  peer_send(c, "MDPC02", "\x01", "mmi.service", "secret.x", NULL);
  m = recv_on(c, 2000);
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "200", NULL));
  mdp_msg_destroy(m);
  mdp_broker_set_access_cb(E.broker, deny_secret, &h);
  int calls = h.calls;
  peer_send(c, "MDPC02", "\x01", "mmi.service", "secret.x", NULL);
  m = recv_on(c, 2000);
  CHECK(msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL));
  mdp_msg_destroy(m);
  CHECK(h.calls > calls);
  /* A question is not a request: not counted as denied. */
  mdp_broker_get_denied(E.broker, &req, NULL);
  CHECK_EQ(req, 1);
  /* mmi.* itself is never asked about: always open. */
  calls = h.calls;
  peer_send(c, "MDPC02", "\x01", "mmi.services", "", NULL);
  m = recv_on(c, 2000);
  CHECK(m != NULL);
  mdp_msg_destroy(m);
  CHECK_EQ(h.calls, calls);
  CHECK(!h.user_seen); /* plaintext: no ZAP user id */
  (void)ws;
  CHECK_EQ(env_close(), 0);
}

/* mdp_broker_recheck_access: registered workers judged again by the hook
 * (as after a reload changed the lists): the denied ones, idle or busy, are
 * sent DISCONNECT and removed, counted as denied serves; the others stay
 * and serve. */
static int strict_x(void *data, mdp_broker_access_t role,
                    const uint8_t *service, size_t size, const char *user) {
  (void)user;
  int strict = *(int *)data;
  return !(strict && role == MDP_BROKER_ACCESS_SERVE && size >= 1 &&
           service[0] == 'x');
}

static void recheck_removes_denied_workers(void) {
  CHECK(env_open(NULL, NULL) == 0);
  CHECK_EQ(mdp_broker_recheck_access(NULL), MDP_EINVAL);
  CHECK_EQ(mdp_broker_recheck_access(E.broker), 0); /* no hook */
  int strict = 0;
  mdp_broker_set_access_cb(E.broker, strict_x, &strict);
  void *wx1 = worker_ready("x1");
  void *wx2 = worker_ready("x2");
  void *wo = worker_ready("open");
  void *c = peer();
  settle_until(stats().workers == 3);
  CHECK_EQ(stats().workers, 3);
  peer_send(c, "MDPC02", "\x01", "x2", "busy", NULL);
  mdp_msg_t *m = recv_skip_hb(wx2, 2000);
  CHECK(msg_is(m, "MDPW02", "\x02", ANY, "", "busy", NULL));
  mdp_msg_destroy(m);
  /* Nothing changed: nobody goes. */
  CHECK_EQ(mdp_broker_recheck_access(E.broker), 0);
  CHECK_EQ(stats().workers, 3);
  /* Serving x* denied now: the idle x1 and the busy x2 go. */
  strict = 1;
  CHECK_EQ(mdp_broker_recheck_access(E.broker), 2);
  CHECK_EQ(stats().workers, 1);
  m = recv_skip_hb(wx1, 2000);
  CHECK(msg_is(m, "MDPW02", "\x06", NULL));
  mdp_msg_destroy(m);
  m = recv_skip_hb(wx2, 2000);
  CHECK(msg_is(m, "MDPW02", "\x06", NULL));
  mdp_msg_destroy(m);
  uint64_t serve = 0;
  mdp_broker_get_denied(E.broker, NULL, &serve);
  CHECK_EQ(serve, 2);
  /* The allowed worker still serves. */
  peer_send(c, "MDPC02", "\x01", "open", "still", NULL);
  m = recv_skip_hb(wo, 2000);
  CHECK(msg_is(m, "MDPW02", "\x02", ANY, "", "still", NULL));
  mdp_msg_destroy(m);
  CHECK_EQ(mdp_broker_recheck_access(E.broker), 0);
  CHECK_EQ(env_close(), 0);
}

static void limits_at_run_time(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queue = 2;
  CHECK(env_open(&o, NULL) == 0);
  void *c = peer();
  for (int i = 0; i < 4; i++)
    peer_send(c, "MDPC02", "\x01", "svc", "x", NULL);
  settle_until(stats().requests >= 4);
  CHECK_EQ(stats().queued, 2);
  CHECK_EQ(stats().dropped_queue_full, 2);
  /* Raised: from the next message on. */
  o.max_queue = 10;
  CHECK_EQ(mdp_broker_set_limits(E.broker, &o), 0);
  for (int i = 0; i < 4; i++)
    peer_send(c, "MDPC02", "\x01", "svc", "x", NULL);
  settle_until(stats().requests >= 8);
  CHECK_EQ(stats().queued, 6);
  CHECK_EQ(stats().dropped_queue_full, 2);
  /* Lowered: nothing queued is dropped, new requests are. */
  o.max_queue = 3;
  CHECK_EQ(mdp_broker_set_limits(E.broker, &o), 0);
  peer_send(c, "MDPC02", "\x01", "svc", "x", NULL);
  settle_until(stats().requests >= 9);
  CHECK_EQ(stats().queued, 6);
  CHECK_EQ(stats().dropped_queue_full, 3);
  /* The oldest queued request's age, and the waiting clients. */
  settle(60);
  uint64_t age = 0;
  CHECK_EQ(mdp_broker_oldest_queued_ms(E.broker, "svc", 3, &age), 0);
  CHECK(age >= 50);
  CHECK_EQ(mdp_broker_oldest_queued_ms(E.broker, "nope", 4, &age),
           MDP_EINVAL);
  CHECK_EQ(mdp_broker_waiting_clients(E.broker), 1);
  void *c2 = peer();
  peer_send(c2, "MDPC02", "\x01", "other", "x", NULL);
  settle_until(mdp_broker_waiting_clients(E.broker) == 2);
  CHECK_EQ(mdp_broker_waiting_clients(E.broker), 2);
  CHECK_EQ(mdp_broker_set_limits(NULL, &o), MDP_EINVAL);
  /* Without CURVE there is no allow-list to reload. */
  CHECK_EQ(mdp_broker_reload_curve_allow(E.broker, &o), MDP_ENOTSUP);
  CHECK_EQ(env_close(), 0);
}

typedef struct {
  int info_lines;
} logs_t;

static void count_log(void *data, mdp_log_level_t level, const char *line) {
  (void)line;
  if (level == MDP_LOG_INFO)
    ((logs_t *)data)->info_lines++;
}

static void log_level_at_run_time(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  logs_t logs = {0};
  o.log_cb = count_log;
  o.log_data = &logs;
  o.log_level = MDP_LOG_WARN;
  CHECK(env_open(&o, NULL) == 0);
  worker_ready("a"); /* "ready for service": an INFO line, not passed */
  settle_until(stats().workers == 1);
  CHECK_EQ(logs.info_lines, 0);
  mdp_broker_set_log_level(E.broker, MDP_LOG_INFO);
  worker_ready("b");
  settle_until(stats().workers == 2);
  CHECK(logs.info_lines >= 1);
  CHECK_EQ(env_close(), 0);
}

int main(void) {
  (void)keep_alive_until_expired; /* broker_env.h's, unused here */
  RUN(access_hook);
  RUN(recheck_removes_denied_workers);
  RUN(limits_at_run_time);
  RUN(log_level_at_run_time);
  return t_done();
}
