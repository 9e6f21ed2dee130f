/* mdp_client_t: many requests over a pool of DEALER sockets, one request per
 * socket at a time (MDP's rule).
 *
 * A request is QUEUED (waiting for a socket, in `queue`), SENT (on a socket,
 * in `inflight`) or DONE (unlinked; freed once no callback of it runs).  A
 * socket ("conn") is idle (in its endpoint's idle list), busy (conn->req) or
 * discarded (closing; it counts against max_sockets until its reactor has
 * closed, since ZeroMQ's socket limit counts it too).
 *
 * One timer serves every request: it is armed for the earliest deadline it
 * knows of; deadlines that move later are found when it fires and rescans.
 * Failures that must not be reported from inside mdp_client_request()
 * (a socket that cannot be opened) are parked on the request and reported
 * from the timer, armed for "now".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log_internal.h"
#include "mdp/client.h"
#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/error.h"
#include "mdp/reactor.h"
#include "keys.h"

enum { REQ_QUEUED, REQ_SENT, REQ_DONE };

typedef struct creq_s creq_t;
typedef struct conn_s conn_t;

struct creq_s {
  creq_t *prev, *next; /* in queue or inflight */
  uint64_t id;
  int state;
  int in_cb;           /* callbacks of this request running now */
  int got_partial;
  int fail;            /* parked error, reported from the timer */
  conn_t *conn;
  size_t endpoint;
  mdp_msg_t *body;     /* kept while retries remain; NULL once moved */
  mdp_client_reply_cb cb;
  void *data;
  uint64_t timeout_ms;
  uint64_t part_deadline; /* loop time; while SENT */
  uint64_t deadline;      /* loop time; 0 = none */
  uint64_t drained_at;    /* loop time its socket was last read early */
  unsigned retries_left;
  size_t service_size;
  uint8_t service[MDP_SERVICE_MAX];
};

struct conn_s {
  conn_t *prev, *next; /* in an idle list */
  mdp_client_t *client;
  mdp_reactor_t *reactor;
  size_t endpoint;
  creq_t *req;         /* request in flight, NULL when idle */
  int idle;
  int discarded;
};

typedef struct {
  creq_t *first, *last;
  size_t count;
} req_list_t;

typedef struct {
  conn_t *first, *last;
} conn_list_t;

struct mdp_client_s {
  uv_loop_t *loop;
  void *ctx;
  char **endpoints;
  size_t n_endpoints;
  conn_list_t *idle;   /* one idle list per endpoint */
  mdp_client_options_t opts;
  mdp_client_close_cb close_cb;
  void *data;
  req_list_t queue;
  req_list_t inflight;
  size_t sockets;      /* open or closing */
  uint64_t next_id;
  uv_timer_t timer;
  uint64_t timer_due;  /* loop time the timer fires, 0: not armed */
  int closing;
  int timer_closed;
  int curve;           /* CURVE keys below are set */
  char curve_keys[3][MDP_CURVE_KEY_LEN + 1]; /* server, public, secret */
  mdp_client_stats_t stats;
};

static void client_dispatch(mdp_client_t *c);

/* Loop times are absolute milliseconds; a timeout or deadline so long that
 * now + it would pass the clock's range (UINT64_MAX: "forever") is never
 * due.  Saturating, rather than wrapping, keeps such a request from being
 * due at once. */
#define TIME_NEVER UINT64_MAX

static uint64_t time_after(uint64_t now, uint64_t ms) {
  return ms >= TIME_NEVER - now ? TIME_NEVER : now + ms;
}

#define clog_(c, level, ...)                                                   \
  mdp_log_emit((c)->opts.log_cb, (c)->opts.log_data, (c)->opts.log_level,      \
               (level), "client: ", __VA_ARGS__)

/* --- lists --------------------------------------------------------------- */

static void req_push_back(req_list_t *l, creq_t *r) {
  r->next = NULL;
  r->prev = l->last;
  if (l->last)
    l->last->next = r;
  else
    l->first = r;
  l->last = r;
  l->count++;
}

static void req_push_front(req_list_t *l, creq_t *r) {
  r->prev = NULL;
  r->next = l->first;
  if (l->first)
    l->first->prev = r;
  else
    l->last = r;
  l->first = r;
  l->count++;
}

static void req_unlink(req_list_t *l, creq_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    l->first = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    l->last = r->prev;
  r->prev = r->next = NULL;
  l->count--;
}

static void conn_push(conn_list_t *l, conn_t *k) {
  k->next = NULL;
  k->prev = l->last;
  if (l->last)
    l->last->next = k;
  else
    l->first = k;
  l->last = k;
}

static void conn_unlink(conn_list_t *l, conn_t *k) {
  if (k->prev)
    k->prev->next = k->next;
  else
    l->first = k->next;
  if (k->next)
    k->next->prev = k->prev;
  else
    l->last = k->prev;
  k->prev = k->next = NULL;
}

/* --- life and death ------------------------------------------------------ */

static void client_maybe_free(mdp_client_t *c) {
  if (!c->closing || !c->timer_closed || c->sockets > 0)
    return;
  if (c->close_cb)
    c->close_cb(c);
  for (size_t i = 0; i < c->n_endpoints; i++)
    free(c->endpoints[i]);
  free(c->endpoints);
  free(c->idle);
  free(c);
}

static void conn_closed_cb(mdp_reactor_t *reactor) {
  conn_t *k = mdp_reactor_get_data(reactor);
  mdp_client_t *c = k->client;
  free(k);
  c->sockets--;
  if (c->closing)
    client_maybe_free(c);
  else
    client_dispatch(c); /* a socket slot is free again */
}

/* Closes a socket for good, so that nothing it receives later is seen. */
static void conn_discard(mdp_client_t *c, conn_t *k) {
  if (k->discarded)
    return;
  if (k->idle) {
    conn_unlink(&c->idle[k->endpoint], k);
    k->idle = 0;
  }
  k->discarded = 1;
  k->req = NULL;
  c->stats.sockets_discarded++;
  mdp_reactor_close(k->reactor, conn_closed_cb);
}

/* Runs a request's callback; frees the request if it is over and no outer
 * callback of it is still running (a callback may cancel its own request). */
static void req_deliver(mdp_client_t *c, creq_t *r, int status, int final,
                        mdp_msg_t *body) {
  r->in_cb++;
  r->cb(c, r->id, status, final, body, r->data);
  r->in_cb--;
  if (r->state == REQ_DONE && r->in_cb == 0)
    free(r);
}

/* Ends a request: unlinks it and detaches (discarding, unless `keep_conn`)
 * its socket, then makes the last callback. */
static void req_finish(mdp_client_t *c, creq_t *r, int status,
                       mdp_msg_t *body) {
  if (r->state == REQ_QUEUED) {
    req_unlink(&c->queue, r);
  } else if (r->state == REQ_SENT) {
    req_unlink(&c->inflight, r);
    conn_t *k = r->conn;
    r->conn = NULL;
    if (k && status == 0) { /* FINAL: the socket is clean, reuse it */
      k->req = NULL;
      k->idle = 1;
      conn_push(&c->idle[k->endpoint], k);
    } else if (k) {
      conn_discard(c, k);
    }
  }
  r->state = REQ_DONE;
  mdp_msg_destroy(r->body);
  r->body = NULL;
  if (status == MDP_ETIMEDOUT)
    c->stats.timeouts++;
  else if (status == MDP_ECANCELED)
    c->stats.cancelled++;
  else if (status == 0)
    c->stats.finals++;
  req_deliver(c, r, status, 1, body);
}

/* --- timer --------------------------------------------------------------- */

static void timer_cb(uv_timer_t *timer);

/* Makes sure the timer fires no later than `due` (loop time). */
static void client_arm(mdp_client_t *c, uint64_t due) {
  if (c->closing)
    return;
  if (c->timer_due != 0 && c->timer_due <= due)
    return;
  uint64_t now = uv_now(c->loop);
  c->timer_due = due;
  uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
}

/* When request `r` must be looked at, 0 if it has no deadline. */
static uint64_t req_due(const creq_t *r) {
  uint64_t due = r->deadline;
  if (r->fail)
    return 1;
  if (r->state == REQ_SENT && (due == 0 || r->part_deadline < due))
    due = r->part_deadline;
  return due == TIME_NEVER ? 0 : due;
}

/* The request's socket was silent too long (or the deadline passed):
 * discard the socket and retry on a new one, at the next endpoint. */
static void req_expire(mdp_client_t *c, creq_t *r, uint64_t now) {
  if (r->fail) {
    req_finish(c, r, r->fail, NULL);
    return;
  }
  int deadline_passed = r->deadline != 0 && r->deadline <= now;
  if (deadline_passed || r->state != REQ_SENT || r->retries_left == 0 ||
      r->got_partial || r->body == NULL) {
    clog_(c, MDP_LOG_INFO, "request %llu timed out",
          (unsigned long long)r->id);
    req_finish(c, r, MDP_ETIMEDOUT, NULL);
    return;
  }
  req_unlink(&c->inflight, r);
  conn_discard(c, r->conn);
  r->conn = NULL;
  r->retries_left--;
  r->endpoint = (r->endpoint + 1) % c->n_endpoints;
  r->state = REQ_QUEUED;
  req_push_front(&c->queue, r); /* it has waited long enough already */
  c->stats.retries++;
  clog_(c, MDP_LOG_INFO, "request %llu timed out; retrying on %s",
        (unsigned long long)r->id, c->endpoints[r->endpoint]);
}

static creq_t *find_due(req_list_t *l, uint64_t now) {
  for (creq_t *r = l->first; r; r = r->next) {
    uint64_t due = req_due(r);
    if (due != 0 && due <= now)
      return r;
  }
  return NULL;
}

static void timer_cb(uv_timer_t *timer) {
  mdp_client_t *c = timer->data;
  c->timer_due = 0;
  uint64_t now = uv_now(c->loop);
  /* One at a time, rescanning after each: a callback may change anything. */
  for (;;) {
    if (c->closing)
      return;
    creq_t *r = find_due(&c->inflight, now);
    if (r != NULL && r->conn != NULL && r->drained_at != now) {
      /* libuv runs timers before it polls: after a stall the reply may be
       * waiting unread on the request's socket.  Read it first, then look
       * again (it may have moved the request, finished it, or anything). */
      r->drained_at = now;
      mdp_reactor_process_now(r->conn->reactor);
      continue;
    }
    if (r == NULL)
      r = find_due(&c->queue, now);
    if (r == NULL)
      break;
    req_expire(c, r, now);
  }
  client_dispatch(c);
  if (c->closing)
    return;
  uint64_t next = 0;
  req_list_t *lists[2] = {&c->inflight, &c->queue};
  for (int i = 0; i < 2; i++)
    for (creq_t *r = lists[i]->first; r; r = r->next) {
      uint64_t due = req_due(r);
      if (due != 0 && (next == 0 || due < next))
        next = due;
    }
  if (next != 0)
    client_arm(c, next);
}

/* --- receiving ----------------------------------------------------------- */

static void conn_recv_cb(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  conn_t *k = mdp_reactor_get_data(reactor);
  mdp_client_t *c = k->client;
  creq_t *r = k->req;
  if (k->discarded || r == NULL) {
    c->stats.dropped++; /* a reply after its request ended */
    mdp_msg_destroy(msg);
    return;
  }
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, MDP_ROLE_CLIENT, (unsigned)c->opts.dialect, &cmd);
  if (rc == 0 && cmd.service != NULL &&
      (cmd.service_size != r->service_size ||
       memcmp(cmd.service, r->service, r->service_size) != 0))
    rc = MDP_ESERVICE;
  if (rc == 0 && cmd.command != MDP_CLIENT_PARTIAL &&
      cmd.command != MDP_CLIENT_FINAL)
    rc = MDP_ECOMMAND;
  if (rc < 0) {
    clog_(c, MDP_LOG_WARN, "reply to request %llu dropped: %s",
          (unsigned long long)r->id, mdp_strerror(rc));
    c->stats.dropped++;
    mdp_msg_destroy(msg);
    return;
  }
  mdp_msg_drop_front(msg, cmd.body);
  if (cmd.command == MDP_CLIENT_PARTIAL) {
    r->got_partial = 1;
    r->part_deadline = time_after(uv_now(c->loop), r->timeout_ms);
    c->stats.partials++;
    req_deliver(c, r, 0, 0, msg);
    return;
  }
  req_finish(c, r, 0, msg);
  if (!c->closing)
    client_dispatch(c);
}

/* --- sending ------------------------------------------------------------- */

static int conn_open(mdp_client_t *c, size_t endpoint, conn_t **out) {
  conn_t *k = calloc(1, sizeof *k);
  if (k == NULL)
    return MDP_ENOMEM;
  void *sock = zmq_socket(c->ctx, ZMQ_DEALER);
  if (sock == NULL) {
    free(k);
    return MDP_EZMQ;
  }
  int linger = 0;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
  int rc = MDP_EZMQ;
  if ((c->curve && mdp_curve_client_setup(sock, c->curve_keys[0],
                                          c->curve_keys[1],
                                          c->curve_keys[2]) < 0) ||
      zmq_connect(sock, c->endpoints[endpoint]) != 0 ||
      (rc = mdp_reactor_new(c->loop, sock, 1, conn_recv_cb, &k->reactor)) !=
          0) {
    zmq_close(sock);
    free(k);
    return rc;
  }
  k->client = c;
  k->endpoint = endpoint;
  mdp_reactor_set_data(k->reactor, k);
  mdp_reactor_start(k->reactor);
  c->sockets++;
  c->stats.sockets_opened++;
  *out = k;
  return 0;
}

/* Sends queued request `r` on idle socket `k`. */
static void req_send(mdp_client_t *c, creq_t *r, conn_t *k) {
  req_unlink(&c->queue, r);
  mdp_msg_t *msg;
  if (r->retries_left > 0) {
    msg = mdp_msg_dup(r->body); /* kept for the retry */
  } else {
    msg = r->body; /* last attempt: move it */
    r->body = NULL;
  }
  int rc = MDP_ENOMEM;
  if (msg != NULL) {
    mdp_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.dialect = c->opts.dialect;
    cmd.command = MDP_CLIENT_REQUEST;
    cmd.service = r->service;
    cmd.service_size = r->service_size;
    rc = mdp_encode(msg, &cmd);
    if (rc == 0)
      rc = mdp_reactor_send(k->reactor, msg);
  }
  r->state = REQ_SENT;
  r->conn = k;
  k->req = r;
  req_push_back(&c->inflight, r);
  if (rc < 0) {
    mdp_msg_destroy(msg);
    r->fail = rc;
    client_arm(c, uv_now(c->loop));
    return;
  }
  c->stats.sent++;
  r->part_deadline = time_after(uv_now(c->loop), r->timeout_ms);
  if (r->part_deadline != TIME_NEVER)
    client_arm(c, r->part_deadline);
}

/* Sends queued requests while sockets are available, in queue order. */
static void client_dispatch(mdp_client_t *c) {
  while (!c->closing) {
    creq_t *r = c->queue.first;
    while (r != NULL && r->fail != 0)
      r = r->next;
    if (r == NULL)
      return;
    conn_t *k = c->idle[r->endpoint].first;
    if (k != NULL) {
      conn_unlink(&c->idle[r->endpoint], k);
      k->idle = 0;
    } else if (c->sockets < c->opts.max_sockets) {
      int rc = conn_open(c, r->endpoint, &k);
      if (rc < 0) {
        clog_(c, MDP_LOG_ERROR, "cannot open a socket to %s: %s",
              c->endpoints[r->endpoint], mdp_strerror(rc));
        r->fail = rc;
        client_arm(c, uv_now(c->loop));
        continue;
      }
    } else {
      /* At the bound: an idle socket to another broker makes room. */
      for (size_t i = 0; i < c->n_endpoints && k == NULL; i++)
        k = c->idle[i].first;
      if (k != NULL)
        conn_discard(c, k); /* its close callback dispatches again */
      return;
    }
    req_send(c, r, k);
  }
}

/* --- public API ---------------------------------------------------------- */

void mdp_client_options_init(mdp_client_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->timeout_ms = 10000;
  opts->retries = 1;
  opts->max_sockets = 64;
  opts->dialect = MDP_DIALECT_RFC18;
  opts->log_level = MDP_LOG_INFO;
}

int mdp_client_new(uv_loop_t *loop, const char *const *endpoints, size_t n,
                   const mdp_client_options_t *opts, mdp_client_t **out) {
  if (loop == NULL || endpoints == NULL || n == 0 || out == NULL)
    return MDP_EINVAL;
  mdp_client_options_t o;
  if (opts)
    o = *opts;
  else
    mdp_client_options_init(&o);
  if (o.dialect != MDP_DIALECT_RFC18 && o.dialect != MDP_DIALECT_MAJORTOMO &&
      o.dialect != MDP_DIALECT_MDP01)
    return MDP_EINVAL; /* exactly one dialect */
  if (o.timeout_ms == 0 || o.max_sockets == 0)
    return MDP_EINVAL;
  int curve = mdp_curve_client_check(o.curve_server_key, o.curve_public_key,
                                     o.curve_secret_key);
  if (curve < 0)
    return curve;
  for (size_t i = 0; i < n; i++)
    if (endpoints[i] == NULL || endpoints[i][0] == '\0')
      return MDP_EINVAL;
  void *ctx = o.zmq_context ? o.zmq_context : mdp_zmq_context();
  if (ctx == NULL)
    return MDP_EZMQ;
  mdp_client_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return MDP_ENOMEM;
  c->endpoints = calloc(n, sizeof *c->endpoints);
  c->idle = calloc(n, sizeof *c->idle);
  int ok = c->endpoints != NULL && c->idle != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    size_t len = strlen(endpoints[i]) + 1;
    c->endpoints[i] = malloc(len);
    if (c->endpoints[i] == NULL)
      ok = 0;
    else
      memcpy(c->endpoints[i], endpoints[i], len);
  }
  if (!ok) {
    for (size_t i = 0; c->endpoints && i < n; i++)
      free(c->endpoints[i]);
    free(c->endpoints);
    free(c->idle);
    free(c);
    return MDP_ENOMEM;
  }
  c->n_endpoints = n;
  c->loop = loop;
  c->ctx = ctx;
  if (curve) {
    c->curve = 1;
    memcpy(c->curve_keys[0], o.curve_server_key, MDP_CURVE_KEY_LEN + 1);
    memcpy(c->curve_keys[1], o.curve_public_key, MDP_CURVE_KEY_LEN + 1);
    memcpy(c->curve_keys[2], o.curve_secret_key, MDP_CURVE_KEY_LEN + 1);
  }
  o.curve_server_key = o.curve_public_key = o.curve_secret_key = NULL;
  c->opts = o;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  *out = c;
  return 0;
}

void mdp_client_request_options_init(const mdp_client_t *c,
                                     mdp_request_options_t *ro) {
  ro->timeout_ms = c->opts.timeout_ms;
  ro->deadline_ms = c->opts.deadline_ms;
  ro->retries = c->opts.retries;
}

int mdp_client_request(mdp_client_t *c, const char *service, mdp_msg_t *body,
                       const mdp_request_options_t *ro,
                       mdp_client_reply_cb reply_cb, void *request_data,
                       uint64_t *request_id) {
  if (c == NULL || service == NULL || body == NULL || reply_cb == NULL ||
      mdp_msg_size(body) == 0)
    return MDP_EINVAL;
  if (c->closing)
    return MDP_ECLOSING;
  size_t slen = strlen(service);
  if (slen == 0 || slen > MDP_SERVICE_MAX)
    return MDP_ESERVICE;
  mdp_request_options_t o;
  if (ro)
    o = *ro;
  else
    mdp_client_request_options_init(c, &o);
  if (o.timeout_ms == 0)
    return MDP_EINVAL;
  if (c->opts.max_queue != 0 && c->queue.count >= c->opts.max_queue &&
      c->sockets >= c->opts.max_sockets)
    return MDP_ENOBUFS;
  creq_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return MDP_ENOMEM;
  /* Called outside a callback after the loop sat idle (or before it ever
   * ran), the loop's cached time is stale: a timeout counted from it would
   * fire at once. */
  uv_update_time(c->loop);
  uint64_t now = uv_now(c->loop);
  r->id = ++c->next_id;
  r->state = REQ_QUEUED;
  r->body = body;
  r->cb = reply_cb;
  r->data = request_data;
  r->timeout_ms = o.timeout_ms;
  r->deadline = o.deadline_ms ? time_after(now, o.deadline_ms) : 0;
  if (r->deadline == TIME_NEVER)
    r->deadline = 0; /* forever is no deadline */
  r->retries_left = o.retries;
  r->service_size = slen;
  memcpy(r->service, service, slen);
  req_push_back(&c->queue, r);
  c->stats.requests++;
  if (r->deadline)
    client_arm(c, r->deadline);
  if (request_id)
    *request_id = r->id;
  client_dispatch(c);
  return 0;
}

static creq_t *find_request(req_list_t *l, uint64_t id) {
  for (creq_t *r = l->first; r; r = r->next)
    if (r->id == id)
      return r;
  return NULL;
}

int mdp_client_cancel(mdp_client_t *c, uint64_t request_id) {
  if (c == NULL || request_id == 0)
    return MDP_EINVAL;
  creq_t *r = find_request(&c->inflight, request_id);
  if (r == NULL)
    r = find_request(&c->queue, request_id);
  if (r == NULL)
    return MDP_EINVAL;
  req_finish(c, r, MDP_ECANCELED, NULL);
  return 0;
}

static void timer_closed_cb(uv_handle_t *handle) {
  mdp_client_t *c = handle->data;
  c->timer_closed = 1;
  client_maybe_free(c);
}

void mdp_client_close(mdp_client_t *c, mdp_client_close_cb close_cb) {
  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  c->close_cb = close_cb;
  /* Callbacks may cancel other requests: always take the current first. */
  for (;;) {
    creq_t *r = c->inflight.first ? c->inflight.first : c->queue.first;
    if (r == NULL)
      break;
    req_finish(c, r, MDP_ECANCELED, NULL);
  }
  for (size_t i = 0; i < c->n_endpoints; i++)
    while (c->idle[i].first)
      conn_discard(c, c->idle[i].first);
  uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

void mdp_client_get_stats(const mdp_client_t *c, mdp_client_stats_t *out) {
  *out = c->stats;
  out->in_flight = c->inflight.count;
  out->queued = c->queue.count;
  out->sockets = c->sockets;
}

void mdp_client_set_data(mdp_client_t *c, void *data) { c->data = data; }
void *mdp_client_get_data(const mdp_client_t *c) { return c->data; }
uv_loop_t *mdp_client_loop(const mdp_client_t *c) { return c->loop; }
