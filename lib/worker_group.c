/* mdp_worker_group_t: C worker slots over N brokers (include/mdp/worker_group.h).
 *
 * Built on the public worker and client API only.  A slot is in one of:
 *   EMPTY:  no worker (creating one failed; retried at the next check);
 *   ACTIVE: its worker serves on `broker`;
 *   MOVING: its worker is closing; a new one is made on `broker` (the
 *           target) from the old worker's close callback, so that at most C
 *           workers exist at any time and so at most C requests are ever in
 *           progress.
 * A broker is judged by what its slots heard (the workers' stats: HEARTBEATs
 * and REQUESTs received) or, when it has no active slot, by an MMI probe.
 * The group is freed when its timer, every worker and every probe client
 * have closed.
 */
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "mdp/client.h"
#include "mdp/codec.h"
#include "mdp/error.h"
#include "mdp/worker.h"
#include "mdp/worker_group.h"
#include "worker_internal.h"

/* The worker's request callback takes its handle by value. */
#define MDP__WG_REQ_PARAM mdp_request_t req_in_
#define MDP__WG_REQ_VALUE (req_in_)

enum { SLOT_EMPTY, SLOT_ACTIVE, SLOT_MOVING };

typedef struct {
  mdp_worker_group_t *group;
  mdp_worker_t *worker;  /* NULL when EMPTY */
  size_t broker;         /* where it serves, or where it is going */
  int state;
  /* The last request passed on, and the worker's FINAL count then: the
   * request is answered once the count went up; if it is no longer active
   * and the count did not move, it was abandoned with its connection and
   * the application may still hold the handle. */
  int has_last;
  mdp_request_t last;
  uint64_t finals_mark;
  uint64_t late_mark;    /* the worker's late_finals then: an abandoned
                            request is done once the application sent its
                            FINAL anyway (refused as stale) */
  uint64_t heard_mark;   /* heartbeats_received + requests, last look */
  int held;              /* its worker may not reconnect: the request it
                            abandoned is still the application's */
  mdp_worker_t *retired; /* closed while the group closes: freed with the
                            group, so handles the application holds stay
                            safe until the group's close callback */
} slot_t;

typedef struct {
  char *endpoint;
  int alive;
  size_t slots;          /* slots assigned (ACTIVE here, or MOVING here) */
  uint64_t requests;
  uint64_t last_heard;   /* loop time: a slot or a probe heard from it */
  mdp_client_t *probe;   /* made on first need */
  int probing;
} broker_t;

struct mdp_worker_group_s {
  uv_loop_t *loop;
  char *service;
  mdp_worker_options_t wopts; /* event_cb is the group's; the user's: */
  mdp_worker_event_cb user_event_cb;
  void *user_event_data;
  char *curve[3];        /* copies of the worker options' keys */
  mdp_worker_group_request_cb request_cb;
  mdp_worker_group_close_cb close_cb;
  void *data;
  uint64_t check_ms;
  uint64_t lost_ms;
  broker_t *brokers;
  size_t n;
  slot_t *slots;
  size_t c;
  uv_timer_t timer;
  int timer_open;
  size_t open_workers;
  size_t open_probes;
  int closing;
  int wait_for_request;
  mdp_worker_group_stats_t st;
};

static void slot_on_request(mdp_worker_t *w, MDP__WG_REQ_PARAM,
                            mdp_msg_t *body);
static void slot_worker_closed(mdp_worker_t *w);
static void slot_event(mdp_worker_t *w, mdp_worker_event_t event, int err,
                       void *data);

#define LOG(g, level, ...)                                                     \
  mdp__log_emit((g)->wopts.log_cb, (g)->wopts.log_data, (g)->wopts.log_level, \
                (level), "worker group: ", __VA_ARGS__)

void mdp_worker_group_options_init(mdp_worker_group_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  mdp_worker_options_init(&opts->worker);
  opts->concurrency = 0;
  opts->check_interval_ms = 0;
  opts->lost_after_ms = 0;
}

/* --- freeing ---------------------------------------------------------------*/

static void group_free(mdp_worker_group_t *g) {
  for (size_t i = 0; i < g->c; i++)
    if (g->slots[i].retired != NULL)
      mdp__worker_free(g->slots[i].retired);
  for (size_t i = 0; i < g->n; i++)
    free(g->brokers[i].endpoint);
  for (int i = 0; i < 3; i++)
    free(g->curve[i]);
  free(g->brokers);
  free(g->slots);
  free(g->service);
  free(g);
}

/* Frees the group once everything it opened has closed. */
static void maybe_finish(mdp_worker_group_t *g) {
  if (!g->closing || g->timer_open || g->open_workers > 0 ||
      g->open_probes > 0)
    return;
  if (g->close_cb != NULL)
    g->close_cb(g);
  group_free(g);
}

static void timer_closed(uv_handle_t *h) {
  mdp_worker_group_t *g = h->data;
  g->timer_open = 0;
  maybe_finish(g);
}

static void probe_closed(mdp_client_t *c) {
  mdp_worker_group_t *g = mdp_client_get_data(c);
  g->open_probes--;
  maybe_finish(g);
}

/* --- slots -----------------------------------------------------------------*/

/* Makes the slot's worker on its broker: ACTIVE, or EMPTY on failure. */
static int slot_start(mdp_worker_group_t *g, slot_t *s) {
  mdp_worker_t *w = NULL;
  mdp_worker_options_t o = g->wopts;
  o.event_cb = slot_event;
  o.event_data = s;
  int rc = mdp_worker_new(g->loop, g->brokers[s->broker].endpoint, g->service,
                          &o, slot_on_request, &w);
  s->has_last = 0;
  s->heard_mark = 0;
  if (rc < 0) {
    s->state = SLOT_EMPTY;
    s->worker = NULL;
    return rc;
  }
  mdp_worker_set_data(w, s);
  mdp__worker_set_owned(w);
  s->held = 0;
  s->worker = w;
  s->state = SLOT_ACTIVE;
  g->open_workers++;
  return 0;
}

/* 1 while the application may still hold the slot's last request handle:
 * the request is in progress, or it was abandoned unanswered. */
static int slot_unanswered(slot_t *s) {
  if (s->worker == NULL || !s->has_last)
    return 0;
  if (mdp_worker_request_active(s->last))
    return 1;
  mdp_worker_stats_t st;
  mdp_worker_get_stats(s->worker, &st);
  if (st.finals > s->finals_mark || st.late_finals > s->late_mark) {
    s->has_last = 0; /* answered (or answered too late): done with */
    return 0;
  }
  return 1; /* abandoned: the application may still answer it */
}

static size_t count_busy(mdp_worker_group_t *g) {
  size_t busy = 0;
  for (size_t i = 0; i < g->c; i++)
    busy += (size_t)slot_unanswered(&g->slots[i]);
  return busy;
}

static void slot_on_request(mdp_worker_t *w, MDP__WG_REQ_PARAM,
                            mdp_msg_t *body) {
  mdp_request_t req = MDP__WG_REQ_VALUE;
  slot_t *s = mdp_worker_get_data(w);
  mdp_worker_group_t *g = s->group;
  mdp_worker_stats_t st;
  mdp_worker_get_stats(w, &st);
  s->last = req;
  s->has_last = 1;
  s->finals_mark = st.finals;
  s->late_mark = st.late_finals;
  broker_t *b = &g->brokers[s->broker];
  b->requests++;
  b->last_heard = uv_now(g->loop);
  g->st.requests++;
  size_t busy = count_busy(g);
  if (busy > g->st.max_busy)
    g->st.max_busy = busy;
  /* The user may close the group from here: the workers' close callbacks
   * and the group's come later, from the loop, so nothing below is freed
   * under us. */
  g->request_cb(g, req, body);
}

/* Starts moving slot `s` to broker `to`. */
static void slot_move(mdp_worker_group_t *g, slot_t *s, size_t to) {
  LOG(g, MDP_LOG_INFO, "slot moves from %s to %s",
      g->brokers[s->broker].endpoint, g->brokers[to].endpoint);
  g->brokers[s->broker].slots--;
  g->brokers[to].slots++;
  g->brokers[to].last_heard = uv_now(g->loop);
  s->broker = to;
  s->state = SLOT_MOVING;
  g->st.moves++;
  mdp_worker_close(s->worker, 1, slot_worker_closed);
}

static void slot_worker_closed(mdp_worker_t *w) {
  slot_t *s = mdp_worker_get_data(w);
  mdp_worker_group_t *g = s->group;
  s->worker = NULL;
  s->has_last = 0;
  g->open_workers--;
  if (g->closing) {
    s->retired = w;
    s->state = SLOT_EMPTY;
    maybe_finish(g);
    return;
  }
  /* Moved: slot_move() takes only a slot with no unanswered handle. */
  mdp__worker_free(w);
  if (s->state == SLOT_MOVING && slot_start(g, s) < 0)
    LOG(g, MDP_LOG_WARN, "cannot make a worker for %s; retrying",
        g->brokers[s->broker].endpoint);
}

/* --- judging brokers ---------------------------------------------------- */

static void on_check(uv_timer_t *t);

/* 1 if another active slot on broker `b` heard from it since the last
 * check. */
static int others_heard(mdp_worker_group_t *g, slot_t *self, size_t b) {
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s == self || s->state != SLOT_ACTIVE || s->broker != b)
      continue;
    mdp_worker_stats_t st;
    mdp_worker_get_stats(s->worker, &st);
    if (st.heartbeats_received + st.requests != s->heard_mark || st.busy)
      return 1;
  }
  return 0;
}

/* A slot's worker reports its connection's life cycle.  Registered is news
 * from the broker.  Lost for silence (the liveness window, which is the
 * group's lost_after_ms by default) judges the broker now unless another
 * of its slots still hears it: the check, due at once, moves the slots
 * away instead of a check interval later.  (A DISCONNECT is not a dead
 * broker: the worker reconnects by itself.)  Then the user's callback. */
static void slot_event(mdp_worker_t *w, mdp_worker_event_t event, int err,
                       void *data) {
  slot_t *s = data;
  mdp_worker_group_t *g = s->group;
  if (!g->closing && s->state == SLOT_ACTIVE && s->worker == w) {
    broker_t *b = &g->brokers[s->broker];
    uint64_t now = uv_now(g->loop);
    if (event == MDP_WORKER_BROKER_LOST && !s->held && slot_unanswered(s)) {
      /* Its request was abandoned with the connection, and the application
       * may still be working on it: the slot takes no other until it is
       * answered (it still counts against C), so its worker must not
       * register again meanwhile (on_check releases it). */
      s->held = 1;
      mdp__worker_hold(w, 1);
      LOG(g, MDP_LOG_INFO, "slot on %s waits for its abandoned request's "
          "FINAL before it reconnects", b->endpoint);
    }
    if (event == MDP_WORKER_REGISTERED) {
      b->last_heard = now;
    } else if (event == MDP_WORKER_BROKER_LOST && err == MDP_ETIMEDOUT &&
               !others_heard(g, s, s->broker)) {
      if (now - b->last_heard < g->lost_ms)
        b->last_heard = now > g->lost_ms ? now - g->lost_ms : 0;
      uv_timer_start(&g->timer, on_check, 0, g->check_ms);
    }
  }
  if (g->user_event_cb != NULL)
    g->user_event_cb(w, event, err, g->user_event_data);
}

static void mark_alive(mdp_worker_group_t *g, broker_t *b, int alive) {
  if (b->alive == alive)
    return;
  b->alive = alive;
  if (alive) {
    g->st.brokers_back++;
    LOG(g, MDP_LOG_INFO, "broker %s answers again", b->endpoint);
  } else {
    g->st.brokers_lost++;
    LOG(g, MDP_LOG_WARN, "broker %s lost", b->endpoint);
  }
}

static void on_probe(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  (void)c;
  (void)id;
  broker_t *b = data;
  mdp_worker_group_t *g = mdp_client_get_data(c);
  mdp_msg_destroy(body);
  if (!final)
    return;
  b->probing = 0;
  if (g->closing)
    return;
  uint64_t now = uv_now(g->loop);
  if (status == 0) {
    b->last_heard = now;
    mark_alive(g, b, 1);
  } else if (now - b->last_heard >= g->lost_ms) {
    mark_alive(g, b, 0);
  }
}

static void probe(mdp_worker_group_t *g, broker_t *b) {
  if (b->probing)
    return;
  if (b->probe == NULL) {
    mdp_client_options_t o;
    mdp_client_options_init(&o);
    o.zmq_context = g->wopts.zmq_context;
    o.timeout_ms = g->lost_ms;
    o.retries = 0;
    o.max_sockets = 1;
    o.dialect = g->wopts.dialect;
    o.curve_server_key = g->wopts.curve_server_key;
    o.curve_public_key = g->wopts.curve_public_key;
    o.curve_secret_key = g->wopts.curve_secret_key;
    o.log_cb = g->wopts.log_cb;
    o.log_data = g->wopts.log_data;
    o.log_level = g->wopts.log_level;
    const char *ep = b->endpoint;
    if (mdp_client_new(g->loop, &ep, 1, &o, &b->probe) < 0) {
      b->probe = NULL;
      return;
    }
    mdp_client_set_data(b->probe, g);
    g->open_probes++;
  }
  mdp_msg_t *body = mdp_msg_new();
  if (body == NULL || mdp_msg_append_str(body, g->service) < 0) {
    mdp_msg_destroy(body);
    return;
  }
  if (mdp_client_request(b->probe, MDP_MMI_PREFIX "service", body, NULL,
                         on_probe, b, NULL) < 0) {
    mdp_msg_destroy(body);
    return;
  }
  b->probing = 1;
  g->st.probes++;
}

/* The live broker with the fewest slots, or g->n if none is live. */
static size_t least_loaded(mdp_worker_group_t *g) {
  size_t best = g->n;
  for (size_t i = 0; i < g->n; i++)
    if (g->brokers[i].alive &&
        (best == g->n || g->brokers[i].slots < g->brokers[best].slots))
      best = i;
  return best;
}

static void on_check(uv_timer_t *t) {
  mdp_worker_group_t *g = t->data;
  uint64_t now = uv_now(g->loop);
  /* 1. What each slot heard since the last look (slot_event has already
   * judged a broker whose connection a slot gave up). */
  size_t active[MDP_WORKER_GROUP_MAX_BROKERS] = {0};
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s->state != SLOT_ACTIVE)
      continue;
    mdp_worker_stats_t st;
    mdp_worker_get_stats(s->worker, &st);
    uint64_t heard = st.heartbeats_received + st.requests;
    broker_t *b = &g->brokers[s->broker];
    if (heard != s->heard_mark || st.busy) {
      s->heard_mark = heard;
      b->last_heard = now;
    }
    active[s->broker]++;
  }
  /* 2. Judge the brokers: by their slots, or by a probe. */
  for (size_t i = 0; i < g->n; i++) {
    broker_t *b = &g->brokers[i];
    if (active[i] > 0) {
      mark_alive(g, b, now - b->last_heard < g->lost_ms);
    } else {
      probe(g, b);
      if (b->alive && !b->probing && now - b->last_heard >= g->lost_ms)
        mark_alive(g, b, 0);
    }
  }
  /* 3. Slots that could not be made, then the slots of lost brokers, all at
   * once; otherwise rebalance one slot. */
  size_t moved = 0;
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s->state == SLOT_EMPTY) {
      size_t to = g->brokers[s->broker].alive ? s->broker : least_loaded(g);
      if (to < g->n) {
        g->brokers[s->broker].slots--;
        g->brokers[to].slots++;
        s->broker = to;
      }
      slot_start(g, s);
      continue;
    }
    if (s->state != SLOT_ACTIVE || g->brokers[s->broker].alive ||
        slot_unanswered(s))
      continue;
    size_t to = least_loaded(g);
    if (to == g->n)
      break; /* no live broker: stay, the workers reconnect by themselves */
    slot_move(g, s, to);
    moved++;
  }
  /* Slots whose abandoned request is answered now and that stay: their
   * workers may connect again. */
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s->state == SLOT_ACTIVE && s->held && !slot_unanswered(s)) {
      s->held = 0;
      mdp__worker_hold(s->worker, 0);
    }
  }
  if (moved > 0)
    return;
  size_t lo = least_loaded(g), hi = g->n;
  for (size_t i = 0; i < g->n; i++)
    if (g->brokers[i].alive &&
        (hi == g->n || g->brokers[i].slots > g->brokers[hi].slots))
      hi = i;
  if (lo == g->n || g->brokers[hi].slots <= g->brokers[lo].slots + 1)
    return;
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s->state == SLOT_ACTIVE && s->broker == hi && !slot_unanswered(s)) {
      slot_move(g, s, lo);
      return;
    }
  }
}

/* --- public ------------------------------------------------------------- */

static int service_ok(const char *service) {
  size_t len = strlen(service);
  return len >= 1 && len <= MDP_SERVICE_MAX &&
         strncmp(service, MDP_MMI_PREFIX, strlen(MDP_MMI_PREFIX)) != 0;
}

static char *dup_or_null(const char *s, int *failed) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *failed = 1;
  return d;
}

/* Closes what a failed mdp_worker_group_new() made; freed from the loop. */
static int fail_new(mdp_worker_group_t *g, int rc) {
  g->closing = 1;
  g->close_cb = NULL;
  for (size_t i = 0; i < g->c; i++)
    if (g->slots[i].state == SLOT_ACTIVE) {
      g->slots[i].state = SLOT_MOVING;
      mdp_worker_close(g->slots[i].worker, 0, slot_worker_closed);
    }
  uv_close((uv_handle_t *)&g->timer, timer_closed);
  return rc;
}

int mdp_worker_group_new(uv_loop_t *loop, const char *const *endpoints,
                         size_t n, const char *service,
                         mdp_worker_group_request_cb request_cb,
                         const mdp_worker_group_options_t *opts,
                         mdp_worker_group_t **out) {
  if (loop == NULL || endpoints == NULL || service == NULL ||
      request_cb == NULL || out == NULL || n == 0 ||
      n > MDP_WORKER_GROUP_MAX_BROKERS)
    return MDP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (endpoints[i] == NULL || endpoints[i][0] == '\0')
      return MDP_EINVAL;
  if (!service_ok(service))
    return MDP_ESERVICE;
  mdp_worker_group_options_t o;
  if (opts != NULL)
    o = *opts;
  else
    mdp_worker_group_options_init(&o);
  size_t c = o.concurrency ? o.concurrency : n;
  if (c > MDP_WORKER_GROUP_MAX_CONCURRENCY)
    return MDP_EINVAL;
  uint64_t hb = o.worker.heartbeat_interval_ms;
  if (hb == 0 || hb > MDP_WORKER_TIME_MAX_MS || o.worker.heartbeat_liveness == 0 ||
      o.worker.heartbeat_liveness > MDP_WORKER_LIVENESS_MAX)
    return MDP_EINVAL; /* before the products below */
  uint64_t check = o.check_interval_ms ? o.check_interval_ms : hb;
  uint64_t lost = o.lost_after_ms ? o.lost_after_ms
                                  : hb * o.worker.heartbeat_liveness;
  if (check > MDP_WORKER_TIME_MAX_MS || o.lost_after_ms > MDP_WORKER_TIME_MAX_MS)
    return MDP_EINVAL;

  mdp_worker_group_t *g = calloc(1, sizeof *g);
  if (g == NULL)
    return MDP_ENOMEM;
  int nomem = 0;
  g->loop = loop;
  g->request_cb = request_cb;
  g->check_ms = check;
  g->lost_ms = lost;
  g->n = n;
  g->c = c;
  g->wopts = o.worker;
  g->user_event_cb = o.worker.event_cb;
  g->user_event_data = o.worker.event_data;
  g->service = dup_or_null(service, &nomem);
  g->curve[0] = dup_or_null(o.worker.curve_server_key, &nomem);
  g->curve[1] = dup_or_null(o.worker.curve_public_key, &nomem);
  g->curve[2] = dup_or_null(o.worker.curve_secret_key, &nomem);
  g->wopts.curve_server_key = g->curve[0];
  g->wopts.curve_public_key = g->curve[1];
  g->wopts.curve_secret_key = g->curve[2];
  g->brokers = calloc(n, sizeof *g->brokers);
  g->slots = calloc(c, sizeof *g->slots);
  if (g->brokers == NULL || g->slots == NULL)
    nomem = 1;
  if (!nomem)
    for (size_t i = 0; i < n; i++) {
      g->brokers[i].endpoint = dup_or_null(endpoints[i], &nomem);
      g->brokers[i].alive = 1;
      g->brokers[i].last_heard = uv_now(loop);
    }
  if (nomem) {
    if (g->brokers == NULL)
      g->n = 0;
    group_free(g);
    return MDP_ENOMEM;
  }
  if (uv_timer_init(loop, &g->timer) != 0) {
    group_free(g);
    return MDP_EUV;
  }
  g->timer.data = g;
  g->timer_open = 1;
  for (size_t i = 0; i < c; i++) {
    slot_t *s = &g->slots[i];
    s->group = g;
    s->broker = i % n;
    g->brokers[s->broker].slots++;
    int rc = slot_start(g, s);
    if (rc < 0)
      return fail_new(g, rc);
  }
  if (uv_timer_start(&g->timer, on_check, check, check) != 0)
    return fail_new(g, MDP_EUV);
  g->st.slots = c;
  *out = g;
  return 0;
}

void mdp_worker_group_close(mdp_worker_group_t *g, int wait_for_request,
                            mdp_worker_group_close_cb close_cb) {
  if (g == NULL || g->closing)
    return;
  g->closing = 1;
  g->close_cb = close_cb;
  uv_timer_stop(&g->timer);
  for (size_t i = 0; i < g->c; i++) {
    slot_t *s = &g->slots[i];
    if (s->state == SLOT_ACTIVE)
      mdp_worker_close(s->worker, wait_for_request, slot_worker_closed);
    /* MOVING: already closing; its close callback sees `closing` */
  }
  for (size_t i = 0; i < g->n; i++)
    if (g->brokers[i].probe != NULL) {
      mdp_client_close(g->brokers[i].probe, probe_closed);
      g->brokers[i].probe = NULL;
    }
  uv_close((uv_handle_t *)&g->timer, timer_closed);
}

void mdp_worker_group_get_stats(const mdp_worker_group_t *g,
                                mdp_worker_group_stats_t *out) {
  mdp_worker_group_t *mg = (mdp_worker_group_t *)g; /* answered marks */
  *out = g->st;
  out->busy = count_busy(mg);
  out->brokers_alive = 0;
  for (size_t i = 0; i < g->n; i++)
    out->brokers_alive += (size_t)g->brokers[i].alive;
}

int mdp_worker_group_get_broker(const mdp_worker_group_t *g, size_t index,
                                mdp_worker_group_broker_t *out) {
  memset(out, 0, sizeof *out);
  if (index >= g->n)
    return MDP_EINVAL;
  const broker_t *b = &g->brokers[index];
  out->endpoint = b->endpoint;
  out->alive = b->alive;
  out->slots = b->slots;
  out->requests = b->requests;
  return 0;
}

void mdp_worker_group_set_data(mdp_worker_group_t *g, void *data) {
  g->data = data;
}

void *mdp_worker_group_get_data(const mdp_worker_group_t *g) {
  return g->data;
}

uv_loop_t *mdp_worker_group_loop(const mdp_worker_group_t *g) {
  return g->loop;
}
