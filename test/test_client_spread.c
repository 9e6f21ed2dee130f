/* A client over several brokers: new requests spread over the live ones
 * (in turn, to the fewest outstanding, or the first), a broker that timed
 * out avoided for a back-off and probed with MMI before it gets traffic
 * again, a retry always elsewhere.  First the choice itself
 * (lib/client_spread.c, no sockets), then mdp_client_t against fake
 * brokers (raw ROUTER sockets), so nothing depends on mdp_broker_t. */
#include <zmq.h>

#include "harness.h"
#include "mdp.h"

#include "../lib/client_spread.h"
#include "fake_broker.h"
#include "client_helpers.h"

/* --- the choice, without sockets ------------------------------------------ */

static const char *const URLS[] = {"inproc://a", "inproc://b", "inproc://c"};

static void pick_in_turn(void) {
  mdp__spread_t s;
  CHECK_EQ(mdp__spread_init(&s, URLS, 3, MDP_SPREAD_ROUND_ROBIN, 100, 400), 0);
  size_t got[6];
  for (int k = 0; k < 6; k++) {
    got[k] = mdp__spread_pick(&s, MDP__EP_NONE, NULL);
    mdp__spread_sent(&s, got[k]);
  }
  for (int k = 0; k < 6; k++)
    CHECK_EQ(got[k], (size_t)(k % 3));
  /* A retry leaves out where it timed out. */
  for (size_t ex = 0; ex < 3; ex++)
    for (int k = 0; k < 4; k++) {
      size_t i = mdp__spread_pick(&s, ex, NULL);
      CHECK(i != ex);
      mdp__spread_sent(&s, i);
    }
  /* At the pool's bound, in turn among those with an idle socket. */
  mdp__spread_sent(&s, 2); /* in turn, 0 is next */
  const unsigned char only12[3] = {0, 1, 1}, none[3] = {0, 0, 0};
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, only12), 1);
  mdp__spread_sent(&s, 1);
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, only12), 2);
  CHECK_EQ(mdp__spread_pick(&s, 2, only12), 1);
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, none), MDP__EP_NONE);
  mdp__spread_free(&s);
}

static void pick_fewest_and_failover(void) {
  mdp__spread_t s;
  CHECK_EQ(mdp__spread_init(&s, URLS, 3, MDP_SPREAD_FEWEST, 100, 400), 0);
  mdp__spread_sent(&s, 0);
  mdp__spread_sent(&s, 0);
  mdp__spread_sent(&s, 1); /* outstanding 2, 1, 0 */
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 2);
  mdp__spread_sent(&s, 2);
  mdp__spread_sent(&s, 2); /* 2, 1, 2 */
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 1);
  CHECK_EQ(mdp__spread_pick(&s, 1, NULL), 0); /* ties (2, 2) in turn from 0 */
  mdp__spread_unsent(&s, 0);
  mdp__spread_unsent(&s, 0); /* 0, 1, 2 */
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 0);
  mdp__spread_free(&s);

  CHECK_EQ(mdp__spread_init(&s, URLS, 3, MDP_SPREAD_FAILOVER, 100, 400), 0);
  for (int k = 0; k < 3; k++) {
    CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 0);
    mdp__spread_sent(&s, 0);
  }
  CHECK_EQ(mdp__spread_pick(&s, 0, NULL), 1);
  CHECK_EQ(mdp__spread_failed(&s, 0, 1000), 1);
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 1); /* the first live one */
  mdp__spread_answered(&s, 0);
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 0);
  mdp__spread_free(&s);
}

static void back_off_doubles_and_resets(void) {
  mdp__spread_t s;
  CHECK_EQ(mdp__spread_init(&s, URLS, 3, MDP_SPREAD_ROUND_ROBIN, 100, 350), 0);
  CHECK_EQ(mdp__spread_due(&s), 0);
  CHECK_EQ(mdp__spread_failed(&s, 1, 1000), 1);
  CHECK_EQ(s.live, 2);
  CHECK_EQ(s.eps[1].until, 1100);
  CHECK_EQ(mdp__spread_due(&s), 1100);
  /* Requests that were out on it when it was put aside count once. */
  CHECK_EQ(mdp__spread_failed(&s, 1, 1010), 0);
  CHECK_EQ(s.eps[1].until, 1100);
  CHECK_EQ(s.eps[1].stats.timeouts, 2);
  /* Aside, it gets nothing while another is live. */
  for (int k = 0; k < 4; k++) {
    size_t i = mdp__spread_pick(&s, MDP__EP_NONE, NULL);
    CHECK(i != 1);
    mdp__spread_sent(&s, i);
  }
  mdp__spread_probing(&s, 1, 1200);
  CHECK(mdp__spread_pick(&s, MDP__EP_NONE, NULL) != 1);
  mdp__spread_probe_failed(&s, 1, 1200); /* 200 */
  CHECK_EQ(s.eps[1].until, 1400);
  mdp__spread_probe_failed(&s, 1, 1400); /* 400, capped at 350 */
  CHECK_EQ(s.eps[1].until, 1750);
  mdp__spread_answered(&s, 1);
  CHECK_EQ(s.live, 3);
  CHECK_EQ(s.eps[1].backoff, 0);
  CHECK_EQ(mdp__spread_failed(&s, 1, 2000), 1); /* from 100 again */
  CHECK_EQ(s.eps[1].until, 2100);
  /* Without a probe, a return keeps the back-off: the next failure
   * doubles it. */
  mdp__spread_return(&s, 1);
  CHECK_EQ(mdp__spread_failed(&s, 1, 3000), 1);
  CHECK_EQ(s.eps[1].until, 3200);
  /* All aside: requests go to them anyway, and a retry still elsewhere. */
  CHECK_EQ(mdp__spread_failed(&s, 0, 3000), 1);
  CHECK_EQ(mdp__spread_failed(&s, 2, 3000), 1);
  CHECK_EQ(s.live, 0);
  CHECK_EQ(mdp__spread_pick(&s, 0, NULL) != 0, 1);
  CHECK(mdp__spread_acceptable(&s, 0, MDP__EP_NONE));
  /* One live endpoint, excluded: the others take the retry. */
  mdp__spread_answered(&s, 2);
  CHECK(!mdp__spread_acceptable(&s, 0, MDP__EP_NONE));
  CHECK(mdp__spread_acceptable(&s, 0, 2));
  CHECK_EQ(mdp__spread_pick(&s, MDP__EP_NONE, NULL), 2);
  mdp__spread_free(&s);
  /* One endpoint: never aside, and a retry goes back to it. */
  CHECK_EQ(mdp__spread_init(&s, URLS, 1, MDP_SPREAD_ROUND_ROBIN, 100, 400), 0);
  CHECK_EQ(mdp__spread_failed(&s, 0, 1000), 0);
  CHECK_EQ(s.live, 1);
  CHECK_EQ(mdp__spread_pick(&s, 0, NULL), 0);
  mdp__spread_free(&s);
}

/* --- mdp_client_t against fake brokers ------------------------------------ */

typedef struct {
  fake_t f[3];
  uv_loop_t loop;
  mdp_client_t *c;
  const char *eps[3];
  size_t n;
} farm_t;

static void farm_open(farm_t *t, size_t n, const char *name,
                      const mdp_client_options_t *o) {
  memset(t, 0, sizeof *t);
  uv_loop_init(&t->loop);
  t->n = n;
  for (size_t i = 0; i < n; i++) {
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://spread-%s-%zu", name, i);
    CHECK(fake_open(&t->f[i], ep) == 0);
    t->eps[i] = t->f[i].endpoint;
  }
  CHECK_EQ(mdp_client_new(&t->loop, t->eps, n, o, &t->c), 0);
}

static void farm_close(farm_t *t) {
  CHECK(client_stop(&t->loop, t->c));
  for (size_t i = 0; i < t->n; i++)
    fake_close(&t->f[i]);
  CHECK_EQ(t_loop_close(&t->loop), 0);
}

static mdp_client_endpoint_stats_t ep_stats(farm_t *t, size_t i) {
  mdp_client_endpoint_stats_t s;
  memset(&s, 0xff, sizeof s); /* an index past the list shows as nonsense */
  mdp_client_get_endpoint_stats(t->c, i, &s);
  return s;
}

static mdp_client_stats_t cstats(farm_t *t) {
  mdp_client_stats_t s;
  mdp_client_get_stats(t->c, &s);
  return s;
}

typedef struct {
  farm_t *t;
  rep_t *r;
  size_t n;
  int echo[3]; /* which fakes answer */
} answer_t;

static int answered_all(void *arg) {
  answer_t *a = arg;
  for (size_t i = 0; i < a->t->n; i++)
    if (a->echo[i])
      fake_echo(&a->t->f[i]);
  for (size_t k = 0; k < a->n; k++)
    if (!a->r[k].done)
      return 0;
  return 1;
}

static void send_n(farm_t *t, rep_t *r, size_t n) {
  for (size_t k = 0; k < n; k++)
    CHECK_EQ(mdp_client_request(t->c, "echo", body_of("q"), NULL, on_reply,
                                &r[k], NULL),
             0);
}

/* Nine requests over three brokers: three each, all answered. */
static void spread_over_three(void) {
  farm_t t;
  farm_open(&t, 3, "three", NULL);
  rep_t r[9];
  memset(r, 0, sizeof r);
  send_n(&t, r, 9);
  answer_t a = {&t, r, 9, {1, 1, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &a, 3000));
  for (size_t i = 0; i < 3; i++) {
    CHECK_EQ(ep_stats(&t, i).sent, 3);
    CHECK_EQ(ep_stats(&t, i).finals, 3);
    CHECK_EQ(ep_stats(&t, i).outstanding, 0);
    CHECK_EQ(ep_stats(&t, i).live, 1);
  }
  for (size_t k = 0; k < 9; k++) {
    CHECK_EQ(r[k].status, 0);
    rep_clear(&r[k]);
  }
  mdp_client_endpoint_stats_t none;
  CHECK_EQ(mdp_client_get_endpoint_stats(t.c, 3, &none), MDP_EINVAL);
  CHECK_EQ(cstats(&t).endpoints_live, 3);
  farm_close(&t);
}

/* MDP_SPREAD_FEWEST: a broker that holds its requests gets no more while
 * the other answers. */
static void fewest_outstanding(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.spread = MDP_SPREAD_FEWEST;
  farm_t t;
  farm_open(&t, 2, "fewest", &o);
  rep_t r[6];
  memset(r, 0, sizeof r);
  send_n(&t, r, 1); /* to 0, which never answers */
  CHECK(fake_wait(&t.loop, &t.f[0], 1, 2000));
  for (size_t k = 1; k < 6; k++) {
    send_n(&t, &r[k], 1);
    answer_t a = {&t, &r[k], 1, {0, 1}};
    CHECK(t_run_until(&t.loop, answered_all, &a, 2000));
  }
  CHECK_EQ(ep_stats(&t, 0).sent, 1);
  CHECK_EQ(ep_stats(&t, 0).outstanding, 1);
  CHECK_EQ(ep_stats(&t, 1).sent, 5);
  for (size_t k = 0; k < 6; k++)
    rep_clear(&r[k]);
  farm_close(&t);
}

static void failover_policy(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.spread = MDP_SPREAD_FAILOVER;
  farm_t t;
  farm_open(&t, 2, "failover", &o);
  rep_t r[4];
  memset(r, 0, sizeof r);
  send_n(&t, r, 4);
  answer_t a = {&t, r, 4, {1, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &a, 2000));
  CHECK_EQ(ep_stats(&t, 0).sent, 4);
  CHECK_EQ(ep_stats(&t, 1).sent, 0);
  for (size_t k = 0; k < 4; k++)
    rep_clear(&r[k]);
  farm_close(&t);
}

static int all_live(void *arg) {
  farm_t *t = arg;
  return cstats(t).endpoints_live == t->n;
}

/* Takes the next message from fake `f` if it is the probe,
 * [id | MDPC02 | 0x01 | mmi.service | echo]; NULL if none came within `ms`
 * or the next one is something else. */
static mdp_msg_t *expect_probe(farm_t *t, fake_t *f, uint64_t ms) {
  if (!fake_wait(&t->loop, f, 1, ms))
    return NULL;
  mdp_msg_t *m = fake_take(f);
  if (!frames_are(m, "MDPC02", "\x01", "mmi.service", "echo")) {
    mdp_msg_destroy(m);
    return NULL;
  }
  return m;
}

/* Broker 0 is silent: the request that timed out there is retried on 1,
 * 0 is avoided for its back-off (new requests all go to 1), then probed;
 * while the probe waits it still gets nothing; once it answers, requests
 * spread over both again. */
static void timed_out_broker_avoided_then_probed(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(100);
  o.backoff_ms = t_slow(300);
  farm_t t;
  farm_open(&t, 2, "avoid", &o);
  rep_t r[8];
  memset(r, 0, sizeof r);
  uv_update_time(&t.loop);
  uint64_t sent_at = uv_now(&t.loop); /* no later than the client's clock */
  send_n(&t, r, 1);
  CHECK(fake_wait(&t.loop, &t.f[0], 1, 2000)); /* went to 0: in turn */
  mdp_msg_t *lost = fake_take(&t.f[0]);
  CHECK(lost != NULL);
  mdp_msg_destroy(lost);
  answer_t a = {&t, r, 1, {0, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &a, 3000));
  CHECK_EQ(r[0].status, 0); /* the retry, on 1 */
  CHECK_EQ(cstats(&t).endpoints_avoided, 1);
  CHECK_EQ(cstats(&t).endpoints_live, 1);
  CHECK_EQ(ep_stats(&t, 0).live, 0);
  CHECK_EQ(ep_stats(&t, 0).timeouts, 1);
  /* During the back-off every new request goes to 1. */
  send_n(&t, &r[1], 3);
  answer_t b = {&t, &r[1], 3, {0, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &b, 2000));
  CHECK_EQ(ep_stats(&t, 1).sent, 4);
  CHECK_EQ(ep_stats(&t, 0).sent, 1);
  /* The back-off ends: a probe, not a request, reaches 0, and not
   * before the back-off is over (timers never fire early: it was put aside
   * no sooner than the timeout after the send). */
  mdp_msg_t *probe = expect_probe(&t, &t.f[0], 3000);
  CHECK(probe != NULL);
  CHECK(uv_now(&t.loop) - sent_at >= o.timeout_ms + o.backoff_ms);
  CHECK_EQ(cstats(&t).probes, 1);
  send_n(&t, &r[4], 2); /* while the probe waits: still to 1 */
  answer_t c = {&t, &r[4], 2, {0, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &c, 2000));
  CHECK_EQ(ep_stats(&t, 0).sent, 1);
  /* 0 answers the probe ("200": echo has a worker there). */
  fake_reply(&t.f[0], probe, "\x03", "200");
  mdp_msg_destroy(probe);
  /* It is live again, and requests spread over both. */
  CHECK(t_run_until(&t.loop, all_live, &t, 2000));
  CHECK_EQ(cstats(&t).probes_failed, 0);
  send_n(&t, &r[6], 2);
  answer_t d = {&t, &r[6], 2, {1, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &d, 2000));
  CHECK_EQ(ep_stats(&t, 0).sent, 2);
  CHECK_EQ(ep_stats(&t, 0).finals, 1);
  CHECK_EQ(ep_stats(&t, 1).sent, 7);
  for (size_t k = 0; k < 8; k++) {
    CHECK_EQ(r[k].status, 0);
    rep_clear(&r[k]);
  }
  farm_close(&t);
}

/* A probe that goes unanswered doubles the back-off: the next probe comes
 * no sooner than twice the first back-off after the first probe failed. */
static void unanswered_probe_doubles_back_off(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(60);
  o.backoff_ms = t_slow(100);
  o.retries = 0;
  farm_t t;
  farm_open(&t, 2, "doubling", &o);
  rep_t r = {0};
  uv_update_time(&t.loop);
  uint64_t sent_at = uv_now(&t.loop);
  send_n(&t, &r, 1);
  CHECK(t_run_until(&t.loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  rep_clear(&r);
  mdp_msg_destroy(fake_take(&t.f[0])); /* the request that timed out */
  mdp_msg_t *p1 = expect_probe(&t, &t.f[0], 3000);
  CHECK(p1 != NULL);
  mdp_msg_destroy(p1);
  mdp_msg_t *p2 = expect_probe(&t, &t.f[0], 5000);
  CHECK(p2 != NULL);
  mdp_msg_destroy(p2);
  /* The request's timeout and the back-off, then the probe's timeout and
   * the doubled back-off (timers never fire early). */
  CHECK(uv_now(&t.loop) - sent_at >= 2 * o.timeout_ms + 3 * o.backoff_ms);
  CHECK(cstats(&t).probes >= 2);
  CHECK(cstats(&t).probes_failed >= 1);
  CHECK_EQ(cstats(&t).endpoints_avoided, 1);
  farm_close(&t);
}

/* probe 0: a broker that does not answer MMI takes requests again when its
 * back-off ends, without a probe. */
static void no_probe_returns_after_back_off(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(60);
  o.backoff_ms = t_slow(100);
  o.retries = 0;
  o.probe = 0;
  farm_t t;
  farm_open(&t, 2, "noprobe", &o);
  rep_t r = {0};
  send_n(&t, &r, 1);
  CHECK(t_run_until(&t.loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  rep_clear(&r);
  CHECK_EQ(cstats(&t).endpoints_live, 1);
  CHECK(t_run_until(&t.loop, all_live, &t, 3000));
  CHECK_EQ(cstats(&t).probes, 0);
  farm_close(&t);
}

static int four_sockets(void *arg) {
  farm_t *t = arg;
  return cstats(t).sockets == 4;
}

/* A full pool whose sockets all went to one broker while the other was
 * avoided drifts back: once the other is live, requests the policy sends
 * there close an idle socket of the first and open one to it, instead of
 * all going out on the first broker's idle sockets for ever. */
static void full_pool_drifts_back(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(80);
  o.backoff_ms = t_slow(300);
  o.probe = 0;
  o.max_sockets = 4;
  farm_t t;
  farm_open(&t, 2, "drift", &o);
  rep_t r[11];
  memset(r, 0, sizeof r);
  send_n(&t, r, 1); /* to 0, silent: times out, retried on 1 */
  answer_t a = {&t, r, 1, {0, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &a, 3000));
  CHECK_EQ(cstats(&t).endpoints_live, 1);
  /* While 0 is avoided, four at once: the pool fills with sockets to 1. */
  send_n(&t, &r[1], 4);
  answer_t b = {&t, &r[1], 4, {0, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &b, 3000));
  CHECK(t_run_until(&t.loop, four_sockets, &t, 2000));
  CHECK(t_run_until(&t.loop, all_live, &t, 3000)); /* back-off over */
  uint64_t sent0 = ep_stats(&t, 0).sent;
  for (size_t k = 5; k < 11; k++) { /* one at a time, both answer */
    send_n(&t, &r[k], 1);
    answer_t c = {&t, &r[k], 1, {1, 1}};
    CHECK(t_run_until(&t.loop, answered_all, &c, 3000));
  }
  CHECK(ep_stats(&t, 0).sent - sent0 >= 2);
  CHECK(cstats(&t).sockets <= 4);
  for (size_t k = 0; k < 11; k++) {
    CHECK_EQ(r[k].status, 0);
    rep_clear(&r[k]);
  }
  farm_close(&t);
}

typedef struct {
  farm_t *t;
  size_t order[8];
  size_t got;
} attempts_t;

static int five_attempts(void *arg) {
  attempts_t *a = arg;
  for (size_t i = 0; i < a->t->n; i++) {
    mdp_msg_t *m;
    while (a->got < 8 && (m = fake_take(&a->t->f[i])) != NULL) {
      a->order[a->got++] = i;
      mdp_msg_destroy(m);
    }
  }
  return a->got >= 5;
}

/* With every broker silent, a retry still goes to another broker than the
 * one it timed out on, and new requests still go out (to brokers put
 * aside: nothing is live) rather than wait. */
static void retries_go_elsewhere_when_all_fail(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(60);
  o.backoff_ms = 60000; /* no probe during the test */
  o.backoff_max_ms = 60000;
  o.retries = 4;
  farm_t t;
  farm_open(&t, 3, "allfail", &o);
  rep_t r = {0};
  send_n(&t, &r, 1);
  /* Five attempts (each after the last timed out); which fake got each. */
  attempts_t at = {&t, {0}, 0};
  CHECK(t_run_until(&t.loop, five_attempts, &at, 5000));
  CHECK(t_run_until(&t.loop, rep_done, &r, 3000));
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  CHECK_EQ(at.got, 5);
  for (size_t k = 1; k < at.got; k++)
    CHECK(at.order[k] != at.order[k - 1]);
  CHECK_EQ(cstats(&t).endpoints_live, 0);
  rep_clear(&r);
  /* Nothing is live: a new request still goes out. */
  rep_t n = {0};
  send_n(&t, &n, 1);
  answer_t a = {&t, &n, 1, {1, 1, 1}};
  CHECK(t_run_until(&t.loop, answered_all, &a, 2000));
  CHECK_EQ(n.status, 0);
  /* ... and the broker that answered is live again. */
  CHECK_EQ(cstats(&t).endpoints_live, 1);
  rep_clear(&n);
  farm_close(&t);
}

static int workers_closed_;
static void on_worker_closed_(mdp_worker_t *w) {
  (void)w;
  workers_closed_++;
}
static int worker_is_closed(void *arg) {
  (void)arg;
  return workers_closed_ == 1;
}

/* Against real brokers, in each client dialect: broker 0 has no worker for
 * the service, so the request times out there and is answered through
 * broker 1; broker 0 is probed, answers the probe itself (mmi.service:
 * "404") in the client's dialect, and is live again. */
static void on_echo_final(mdp_worker_t *w, mdp_request_t req,
                          mdp_msg_t *body) {
  (void)w;
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static void probe_real_broker(mdp_dialect_t dialect) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_t *b[2];
  char ep[2][256];
  for (int i = 0; i < 2; i++) {
    CHECK_EQ(mdp_broker_new(&loop, NULL, &b[i]), 0);
    CHECK_EQ(mdp_broker_bind(b[i], "tcp://127.0.0.1:*"), 0);
    CHECK_EQ(mdp_broker_last_endpoint(b[i], ep[i], sizeof ep[i]), 0);
  }
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&loop, ep[1], "echo", NULL, on_echo_final, &w), 0);
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.dialect = dialect;
  o.timeout_ms = t_slow(150);
  o.backoff_ms = t_slow(100);
  const char *eps[] = {ep[0], ep[1]};
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 2, &o, &c), 0);
  farm_t view; /* for all_live() and cstats() */
  memset(&view, 0, sizeof view);
  view.c = c;
  view.n = 2;
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(t_run_until(&loop, rep_done, &r, 3000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[r.nparts - 1], 0, "q", 1));
  rep_clear(&r);
  CHECK_EQ(cstats(&view).endpoints_avoided, 1);
  CHECK(t_run_until(&loop, all_live, &view, 3000));
  CHECK_EQ(cstats(&view).probes, 1);
  CHECK_EQ(cstats(&view).probes_failed, 0);
  CHECK(client_stop(&loop, c));
  workers_closed_ = 0;
  mdp_worker_close(w, 1, on_worker_closed_);
  for (int i = 0; i < 2; i++)
    mdp_broker_close(b[i], NULL);
  CHECK(t_run_until(&loop, worker_is_closed, NULL, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void probe_rfc18(void) { probe_real_broker(MDP_DIALECT_RFC18); }
static void probe_majortomo(void) { probe_real_broker(MDP_DIALECT_MAJORTOMO); }
static void probe_mdp01(void) { probe_real_broker(MDP_DIALECT_MDP01); }

static void options_checked(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[] = {"inproc://x", "inproc://y"};
  mdp_client_options_t o;
  mdp_client_t *c = NULL;
  mdp_client_options_init(&o);
  CHECK_EQ(o.spread, MDP_SPREAD_ROUND_ROBIN);
  CHECK_EQ(o.probe, 1);
  CHECK_EQ(o.backoff_ms, 1000);
  CHECK_EQ(o.backoff_max_ms, 30000);
  o.spread = (mdp_spread_t)3;
  CHECK_EQ(mdp_client_new(&loop, eps, 2, &o, &c), MDP_EINVAL);
  mdp_client_options_init(&o);
  o.backoff_max_ms = 999;
  CHECK_EQ(mdp_client_new(&loop, eps, 2, &o, &c), MDP_EINVAL);
  o.backoff_ms = 0; /* never avoid: the maximum does not matter */
  CHECK_EQ(mdp_client_new(&loop, eps, 2, &o, &c), 0);
  CHECK(client_stop(&loop, c));
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(pick_in_turn);
  RUN(pick_fewest_and_failover);
  RUN(back_off_doubles_and_resets);
  RUN(spread_over_three);
  RUN(fewest_outstanding);
  RUN(failover_policy);
  RUN(timed_out_broker_avoided_then_probed);
  RUN(unanswered_probe_doubles_back_off);
  RUN(no_probe_returns_after_back_off);
  RUN(retries_go_elsewhere_when_all_fail);
  RUN(full_pool_drifts_back);
  RUN(probe_rfc18);
  RUN(probe_majortomo);
  RUN(probe_mdp01);
  RUN(options_checked);
  t_context_term();
  return t_done();
}
