/* mdp_client_t: many requests over a pool of DEALER sockets, one request per
 * socket at a time (MDP's rule).
 *
 * A request is QUEUED (waiting for a socket, in `queue`; or, if no socket
 * could be opened for it, in `parked` until its failure is reported), SENT
 * (on a socket, in `in_flight`) or DONE (unlinked; freed once no callback of
 * it runs).  Every pending request is in `by_id`, so cancel finds it in
 * O(1).  A pooled socket is idle (in its endpoint's idle list), busy
 * (sock->req) or discarded (closing; it counts against max_sockets until its
 * reactor has closed, since ZeroMQ's socket limit counts it too).
 *
 * One timer serves every request: requests with something due are in a
 * min-heap by due time, and the timer is armed for the earliest it knows of
 * (a due time that moves later is found when it fires; it re-arms for the
 * heap's top).  Each due request costs O(log n), so thousands timing out
 * together cost O(n log n), not a rescan each.  Failures that must not be
 * reported from inside mdp_client_request() (a socket that cannot be
 * opened, a send that fails) are parked on the request and reported from
 * the timer, due at once.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "mdp/client.h"
#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/error.h"
#include "mdp/reactor.h"
#include "client_internal.h"
#include "client_spread.h"
#include "list.h"
#include "map.h"
#include "peer.h"

enum { REQ_QUEUED, REQ_SENT, REQ_DONE };

typedef struct client_request_s client_request_t;
typedef struct pooled_socket_s pooled_socket_t;

#define NOT_IN_HEAP SIZE_MAX

/* The smallest reply envelope (header, command, service; Majortomo's and
 * 0.1's leading empty frame instead of a service) and one body frame. */
#define MIN_FRAMES 4

struct client_request_s {
  mdp__list_t link;     /* in the client's queue, parked or in_flight list */
  size_t heap_index;   /* in the client's deadline heap, or NOT_IN_HEAP */
  uint64_t due;        /* its key there: loop time to look at the request */
  uint64_t id;         /* also its key in the client's by_id map */
  int state;
  int in_cb;           /* callbacks of this request running now */
  int got_partial;
  int fail;            /* parked error, reported from the timer */
  pooled_socket_t *sock;
  size_t endpoint;     /* while SENT: where it went */
  size_t exclude;      /* the endpoint its last attempt timed out on, or
                          MDP__EP_NONE: the next attempt goes elsewhere */
  mdp_msg_t *body;     /* kept while retries remain; NULL once moved */
  size_t body_bytes;   /* its size, counted in queued_bytes while queued */
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

/* One DEALER socket of the pool, to one endpoint. */
struct pooled_socket_s {
  mdp__list_t idle_link; /* in its endpoint's idle list while idle */
  mdp__list_t all_link;  /* in the client's list of open sockets */
  mdp_client_t *client;
  mdp_reactor_t *reactor;
  size_t endpoint;
  client_request_t *req; /* request in flight, NULL when idle */
  int idle;
  int discarded;
  int probe;             /* carries its endpoint's MMI probe */
};

struct mdp_client_s {
  uv_loop_t *loop;
  mdp__spread_t spread; /* the endpoints, their idle sockets and state */
  unsigned char *has_idle; /* scratch for dispatch: one per endpoint */
  mdp_client_options_t opts;
  mdp_client_close_cb close_cb;
  mdp_client_drain_cb drain_cb;
  void *data;
  mdp__list_t queue;    /* requests waiting for a socket, in order */
  mdp__list_t parked;   /* requests that got no socket: failed, to report */
  mdp__list_t in_flight;
  mdp__list_t open_sockets; /* every pooled socket not yet closed */
  size_t queued;       /* in queue or parked */
  size_t queued_bytes; /* their body_bytes */
  size_t sent;         /* in in_flight */
  mdp__map_t by_id;     /* every pending request, by id */
  /* Pending requests that have something due (a part timeout, a deadline,
   * a parked failure), in a binary min-heap by (due, id): the timer finds
   * each due request in O(log n).  Its capacity is reserved when a request
   * is accepted, so no heap operation can fail later. */
  client_request_t **heap;
  size_t heap_len;
  size_t heap_cap;
  uint64_t steps;      /* bookkeeping steps, for tests (client_internal.h) */
  size_t sockets;      /* open or closing */
  uint64_t next_id;
  uv_timer_t timer;
  uint64_t timer_due;  /* loop time the timer fires, 0: not armed */
  int closing;
  int unref;           /* handles are uv_unref'd (mdp_client_unref) */
  int timer_closed;
  mdp__peer_config_t peer; /* socket options, CURVE keys */
  mdp_client_stats_t stats;
  uint64_t dropped_frames; /* by the reactors of sockets discarded */
  /* Finished request records kept for reuse (linked through `link.next`),
   * so the steady state allocates none per request. */
  client_request_t *free_requests;
  size_t n_free_requests;
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
  mdp__log_emit((c)->opts.log_cb, (c)->opts.log_data, (c)->opts.log_level,      \
               (level), "client: ", __VA_ARGS__)

/* Request records in the client's cache at most. */
#define REQUEST_CACHE 256

/* A zeroed request record (its service bytes excepted), or NULL. */
static client_request_t *request_alloc(mdp_client_t *c) {
  client_request_t *req = c->free_requests;
  if (req == NULL)
    req = malloc(sizeof *req);
  else {
    c->free_requests = (client_request_t *)req->link.next;
    c->n_free_requests--;
  }
  if (req != NULL)
    memset(req, 0, offsetof(client_request_t, service));
  return req;
}

/* Gives a record back to the cache (the system's when the cache is full
 * or the client closing). */
static void request_release(mdp_client_t *c, client_request_t *req) {
  if (c->closing || c->n_free_requests >= REQUEST_CACHE) {
    free(req);
    return;
  }
  req->link.next = (mdp__list_t *)c->free_requests;
  c->free_requests = req;
  c->n_free_requests++;
}

static void request_cache_free(mdp_client_t *c) {
  while (c->free_requests != NULL) {
    client_request_t *req = c->free_requests;
    c->free_requests = (client_request_t *)req->link.next;
    free(req);
  }
  c->n_free_requests = 0;
}

static client_request_t *request_of(mdp__list_t *link) {
  return link ? mdp__container_of(link, client_request_t, link) : NULL;
}

static pooled_socket_t *idle_socket(mdp_client_t *c, size_t endpoint) {
  mdp__list_t *link = mdp__list_head(&c->spread.eps[endpoint].idle);
  return link ? mdp__container_of(link, pooled_socket_t, idle_link) : NULL;
}

static int any_idle_socket(mdp_client_t *c) {
  for (size_t i = 0; i < c->spread.n; i++)
    if (!mdp__list_empty(&c->spread.eps[i].idle))
      return 1;
  return 0;
}

static void socket_make_idle(mdp_client_t *c, pooled_socket_t *sock) {
  sock->req = NULL;
  sock->idle = 1;
  mdp__list_push_back(&c->spread.eps[sock->endpoint].idle, &sock->idle_link);
}

/* --- deadline heap ------------------------------------------------------- */

static int heap_before(mdp_client_t *c, const client_request_t *a,
                       const client_request_t *b) {
  c->steps++;
  return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void heap_place(mdp_client_t *c, size_t i, client_request_t *req) {
  c->heap[i] = req;
  req->heap_index = i;
}

static void heap_sift_up(mdp_client_t *c, size_t i) {
  client_request_t *req = c->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_before(c, req, c->heap[parent]))
      break;
    heap_place(c, i, c->heap[parent]);
    i = parent;
  }
  heap_place(c, i, req);
}

static void heap_sift_down(mdp_client_t *c, size_t i) {
  client_request_t *req = c->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= c->heap_len)
      break;
    if (child + 1 < c->heap_len &&
        heap_before(c, c->heap[child + 1], c->heap[child]))
      child++;
    if (!heap_before(c, c->heap[child], req))
      break;
    heap_place(c, i, c->heap[child]);
    i = child;
  }
  heap_place(c, i, req);
}

static void heap_remove(mdp_client_t *c, client_request_t *req) {
  size_t i = req->heap_index;
  if (i == NOT_IN_HEAP)
    return;
  req->heap_index = NOT_IN_HEAP;
  client_request_t *last = c->heap[--c->heap_len];
  if (i == c->heap_len)
    return;
  heap_place(c, i, last);
  heap_sift_up(c, i);
  heap_sift_down(c, last->heap_index);
}

/* Room in the heap for every pending request and one more. */
static int heap_reserve(mdp_client_t *c) {
  size_t need = c->by_id.count + 1;
  if (need <= c->heap_cap)
    return 0;
  size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
  client_request_t **heap = realloc(c->heap, cap * sizeof *heap);
  if (heap == NULL)
    return MDP_ENOMEM;
  c->heap = heap;
  c->heap_cap = cap;
  return 0;
}

static client_request_t *heap_top(const mdp_client_t *c) {
  return c->heap_len ? c->heap[0] : NULL;
}

/* The queue's gauges follow a request into and out of it (parked ones
 * included: they still hold their body). */
static void queue_enter(mdp_client_t *c, client_request_t *req) {
  c->queued++;
  c->queued_bytes += req->body_bytes;
}

static void queue_leave(mdp_client_t *c, client_request_t *req) {
  c->queued--;
  c->queued_bytes -= req->body_bytes;
}

/* --- life and death ------------------------------------------------------ */

static void client_maybe_free(mdp_client_t *c) {
  if (!c->closing || !c->timer_closed || c->sockets > 0)
    return;
  if (c->close_cb)
    c->close_cb(c);
  mdp__spread_free(&c->spread);
  free(c->has_idle);
  free(c->heap);
  mdp__map_free(&c->by_id);
  request_cache_free(c);
  free(c);
}

static void socket_closed_cb(mdp_reactor_t *reactor) {
  pooled_socket_t *sock = mdp_reactor_get_data(reactor);
  mdp_client_t *c = sock->client;
  mdp__list_remove(&sock->all_link);
  free(sock);
  c->sockets--;
  if (c->closing)
    client_maybe_free(c);
  else
    client_dispatch(c); /* a socket slot is free again */
}

static uint64_t reactor_dropped(mdp_reactor_t *reactor) {
  mdp_reactor_stats_t rs;
  mdp_reactor_get_stats(reactor, &rs);
  return rs.msgs_dropped;
}

/* Closes a socket for good, so that nothing it receives later is seen. */
static void socket_discard(mdp_client_t *c, pooled_socket_t *sock) {
  if (sock->discarded)
    return;
  if (sock->idle) {
    mdp__list_remove(&sock->idle_link);
    sock->idle = 0;
  }
  if (sock->probe) {
    sock->probe = 0;
    c->spread.eps[sock->endpoint].probe = NULL;
  }
  sock->discarded = 1;
  c->dropped_frames += reactor_dropped(sock->reactor);
  c->spread.eps[sock->endpoint].sockets--;
  sock->req = NULL;
  c->stats.sockets_discarded++;
  mdp_reactor_close(sock->reactor, socket_closed_cb);
}

/* Runs a request's callback; frees the request if it is over and no outer
 * callback of it is still running (a callback may cancel its own request). */
static void req_deliver(mdp_client_t *c, client_request_t *req, int status,
                        int final, mdp_msg_t *body) {
  req->in_cb++;
  req->cb(c, req->id, status, final, body, req->data);
  req->in_cb--;
  if (req->state == REQ_DONE && req->in_cb == 0)
    request_release(c, req);
}

/* Ends a request: unlinks it and detaches (discarding, unless it got its
 * FINAL) its socket, then makes the last callback. */
static void req_finish(mdp_client_t *c, client_request_t *req, int status,
                       mdp_msg_t *body) {
  if (req->state == REQ_QUEUED) {
    mdp__list_remove(&req->link);
    queue_leave(c, req);
  } else if (req->state == REQ_SENT) {
    mdp__list_remove(&req->link);
    c->sent--;
    mdp__spread_unsent(&c->spread, req->endpoint);
    pooled_socket_t *sock = req->sock;
    req->sock = NULL;
    if (sock && status == 0) { /* FINAL: the socket is clean, reuse it */
      socket_make_idle(c, sock);
    } else if (sock) {
      socket_discard(c, sock);
    }
  }
  heap_remove(c, req);
  c->steps++;
  mdp__map_del(&c->by_id, &req->id, sizeof req->id);
  req->state = REQ_DONE;
  mdp_msg_destroy(req->body);
  req->body = NULL;
  if (status == MDP_ETIMEDOUT)
    c->stats.timeouts++;
  else if (status == MDP_ECANCELED)
    c->stats.cancelled++;
  else if (status == 0)
    c->stats.finals++;
  req_deliver(c, req, status, 1, body);
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

/* When request `req` must be looked at, 0 if it has no deadline. */
static uint64_t req_due(const client_request_t *req) {
  uint64_t due = req->deadline;
  if (req->fail)
    return 1;
  if (req->state == REQ_SENT && (due == 0 || req->part_deadline < due))
    due = req->part_deadline;
  return due == TIME_NEVER ? 0 : due;
}

/* Puts the request where its (new) due time says in the heap, or takes it
 * out if nothing of it is due, and arms the timer for it. */
static void req_schedule(mdp_client_t *c, client_request_t *req) {
  uint64_t due = req_due(req);
  if (due == 0) {
    heap_remove(c, req);
    return;
  }
  uint64_t old = req->due;
  req->due = due;
  if (req->heap_index == NOT_IN_HEAP) {
    heap_place(c, c->heap_len++, req); /* room reserved at acceptance */
    heap_sift_up(c, req->heap_index);
  } else if (due < old) {
    heap_sift_up(c, req->heap_index);
  } else if (due > old) {
    heap_sift_down(c, req->heap_index);
  }
  client_arm(c, due);
}

/* A request timed out on endpoint `i`: the endpoint may be put aside, and
 * the probe will ask about this request's service. */
static void endpoint_timed_out(mdp_client_t *c, client_request_t *req,
                               size_t i, uint64_t now) {
  mdp__client_endpoint_t *ep = &c->spread.eps[i];
  if (!mdp__spread_failed(&c->spread, i, now))
    return;
  c->stats.endpoints_avoided++;
  memcpy(ep->probe_service, req->service, req->service_size);
  ep->probe_service_size = req->service_size;
  clog_(c, MDP_LOG_WARN, "%s: a request timed out; avoided for %llu ms",
        ep->url, (unsigned long long)ep->backoff);
  client_arm(c, ep->until);
}

/* The request's socket was silent too long (or the deadline passed):
 * discard the socket and retry on a new one, at another endpoint. */
static void req_expire(mdp_client_t *c, client_request_t *req, uint64_t now) {
  if (req->fail) {
    req_finish(c, req, req->fail, NULL);
    return;
  }
  int deadline_passed = req->deadline != 0 && req->deadline <= now;
  if (req->state == REQ_SENT && req->part_deadline <= now)
    endpoint_timed_out(c, req, req->endpoint, now);
  if (deadline_passed || req->state != REQ_SENT || req->retries_left == 0 ||
      req->got_partial || req->body == NULL) {
    clog_(c, MDP_LOG_INFO, "request %llu timed out",
          (unsigned long long)req->id);
    req_finish(c, req, MDP_ETIMEDOUT, NULL);
    return;
  }
  mdp__list_remove(&req->link);
  c->sent--;
  mdp__spread_unsent(&c->spread, req->endpoint);
  socket_discard(c, req->sock);
  req->sock = NULL;
  req->retries_left--;
  req->exclude = req->endpoint;
  req->state = REQ_QUEUED;
  mdp__list_push_front(&c->queue, &req->link); /* it has waited long enough */
  queue_enter(c, req);
  req_schedule(c, req);
  c->stats.retries++;
  clog_(c, MDP_LOG_INFO, "request %llu timed out on %s; retrying%s",
        (unsigned long long)req->id, c->spread.eps[req->endpoint].url,
        c->spread.n > 1 ? " on another broker" : "");
}

/* --- probes of endpoints put aside ---------------------------------------- */

static int socket_open(mdp_client_t *c, size_t endpoint,
                       pooled_socket_t **out);

/* Sends endpoint `i` an MMI request, mmi.service for the service that timed
 * out on it, on a socket of its own: the broker answers MMI itself, so any
 * answer says it is back.  A probe socket may take the pool past
 * max_sockets, by one per endpoint at most. */
static void probe_start(mdp_client_t *c, size_t i, uint64_t now) {
  mdp__client_endpoint_t *ep = &c->spread.eps[i];
  pooled_socket_t *sock = NULL;
  int rc = socket_open(c, i, &sock);
  mdp_msg_t *body = rc == 0 ? mdp_msg_new() : NULL;
  if (rc == 0 && (body == NULL ||
                  mdp_msg_append_mem(body, ep->probe_service,
                                 ep->probe_service_size) < 0))
    rc = MDP_ENOMEM;
  if (rc == 0) {
    mdp_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.dialect = c->peer.dialect;
    cmd.command = MDP_CLIENT_REQUEST;
    cmd.service = (const uint8_t *)"mmi.service";
    cmd.service_size = 11;
    rc = mdp__peer_send(sock->reactor, &cmd, body);
    if (rc == 0)
      body = NULL; /* sent: the library's */
  }
  mdp_msg_destroy(body);
  c->stats.probes++;
  if (rc < 0) {
    if (sock != NULL)
      socket_discard(c, sock);
    c->stats.probes_failed++;
    mdp__spread_probe_failed(&c->spread, i, now);
    clog_(c, MDP_LOG_WARN, "%s: cannot probe (%s); avoided for %llu ms",
          ep->url, mdp_strerror(rc), (unsigned long long)ep->backoff);
    return;
  }
  sock->probe = 1;
  ep->probe = sock;
  mdp__spread_probing(&c->spread, i, time_after(now, c->opts.timeout_ms));
  clog_(c, MDP_LOG_DEBUG, "%s: probing", ep->url);
}

/* The probe of endpoint `i` went unanswered within timeout_ms. */
static void probe_timed_out(mdp_client_t *c, size_t i, uint64_t now) {
  mdp__client_endpoint_t *ep = &c->spread.eps[i];
  if (ep->probe != NULL)
    socket_discard(c, ep->probe);
  c->stats.probes_failed++;
  mdp__spread_probe_failed(&c->spread, i, now);
  clog_(c, MDP_LOG_WARN, "%s: no answer to the probe; avoided for %llu ms",
        ep->url, (unsigned long long)ep->backoff);
}

/* Back-offs and probes that end by `now`. */
static void endpoints_due(mdp_client_t *c, uint64_t now) {
  for (size_t i = 0; i < c->spread.n && !c->closing; i++) {
    mdp__client_endpoint_t *ep = &c->spread.eps[i];
    if (ep->state == MDP__EP_LIVE || ep->until > now)
      continue;
    if (ep->state == MDP__EP_PROBING) {
      probe_timed_out(c, i, now);
    } else if (c->opts.probe) {
      probe_start(c, i, now);
    } else {
      mdp__spread_return(&c->spread, i);
      clog_(c, MDP_LOG_INFO, "%s: back-off over, taking requests again",
            ep->url);
    }
  }
}

/* A socket's probe was answered. */
static void probe_answered(mdp_client_t *c, pooled_socket_t *sock,
                           mdp_msg_t *msg) {
  mdp__client_endpoint_t *ep = &c->spread.eps[sock->endpoint];
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, MDP_ROLE_CLIENT, (unsigned)c->opts.dialect, &cmd);
  mdp_msg_destroy(msg);
  if (rc < 0 || cmd.command != MDP_CLIENT_FINAL) {
    c->stats.dropped++;
    return;
  }
  sock->probe = 0;
  ep->probe = NULL;
  mdp__spread_answered(&c->spread, sock->endpoint);
  socket_make_idle(c, sock); /* a clean socket to a live broker */
  clog_(c, MDP_LOG_INFO, "%s: answered the probe, taking requests again",
        ep->url);
  client_dispatch(c);
}

static void timer_cb(uv_timer_t *timer) {
  mdp_client_t *c = timer->data;
  c->timer_due = 0;
  uint64_t now = uv_now(c->loop);
  /* One at a time, from the heap's top: a callback may change anything. */
  for (;;) {
    if (c->closing)
      return;
    client_request_t *req = heap_top(c);
    c->steps++;
    if (req == NULL || req->due > now)
      break;
    if (req->state == REQ_SENT && req->sock != NULL &&
        req->drained_at != now) {
      /* libuv runs timers before it polls: after a stall the reply may be
       * waiting unread on the request's socket.  Read it first, then look
       * again (it may have moved the request, finished it, or anything). */
      req->drained_at = now;
      mdp__peer_read_waiting(req->sock->reactor);
      continue;
    }
    req_expire(c, req, now);
  }
  endpoints_due(c, now);
  client_dispatch(c);
  if (c->closing)
    return;
  client_request_t *next = heap_top(c);
  if (next != NULL)
    client_arm(c, next->due);
  uint64_t ep_due = mdp__spread_due(&c->spread);
  if (ep_due != 0)
    client_arm(c, ep_due);
}

/* --- receiving ----------------------------------------------------------- */

static void socket_recv_cb(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  pooled_socket_t *sock = mdp_reactor_get_data(reactor);
  mdp_client_t *c = sock->client;
  client_request_t *req = sock->req;
  if (sock->probe && !sock->discarded) {
    probe_answered(c, sock, msg);
    return;
  }
  if (sock->discarded || req == NULL) {
    c->stats.dropped++; /* a reply after its request ended */
    mdp_msg_destroy(msg);
    return;
  }
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, MDP_ROLE_CLIENT, (unsigned)c->opts.dialect, &cmd);
  if (rc == 0 && cmd.service != NULL &&
      (cmd.service_size != req->service_size ||
       memcmp(cmd.service, req->service, req->service_size) != 0))
    rc = MDP_ESERVICE;
  if (rc == 0 && cmd.command != MDP_CLIENT_PARTIAL &&
      cmd.command != MDP_CLIENT_FINAL)
    rc = MDP_ECOMMAND;
  if (rc < 0) {
    clog_(c, MDP_LOG_WARN, "reply to request %llu dropped: %s",
          (unsigned long long)req->id, mdp_strerror(rc));
    c->stats.dropped++;
    mdp_msg_destroy(msg);
    return;
  }
  mdp_msg_drop_front(msg, cmd.body);
  /* Any answer resets the broker's back-off; from a broker put aside (the
   * request was sent before it was) it shows it is back, as a probe would,
   * so a probe still out is not needed. */
  mdp__client_endpoint_t *ep = &c->spread.eps[sock->endpoint];
  if (ep->probe != NULL)
    socket_discard(c, ep->probe);
  mdp__spread_answered(&c->spread, sock->endpoint);
  if (cmd.command == MDP_CLIENT_PARTIAL) {
    req->got_partial = 1;
    req->part_deadline = time_after(uv_now(c->loop), req->timeout_ms);
    req_schedule(c, req);
    c->stats.partials++;
    req_deliver(c, req, 0, 0, msg);
    return;
  }
  ep->stats.finals++;
  req_finish(c, req, 0, msg);
  if (!c->closing)
    client_dispatch(c);
}

/* --- sending ------------------------------------------------------------- */

/* A socket's held sends all went: if none is held anywhere now, tell. */
static void socket_drained_cb(mdp_reactor_t *reactor) {
  pooled_socket_t *sock = mdp_reactor_get_data(reactor);
  mdp_client_t *c = sock->client;
  if (c->drain_cb != NULL && !c->closing && mdp_client_held(c, NULL) == 0)
    c->drain_cb(c);
}

static int socket_open(mdp_client_t *c, size_t endpoint,
                       pooled_socket_t **out) {
  pooled_socket_t *sock = calloc(1, sizeof *sock);
  if (sock == NULL)
    return MDP_ENOMEM;
  int rc = mdp__peer_open(&c->peer, c->loop, c->spread.eps[endpoint].url,
                          socket_recv_cb, sock, c->opts.max_frames,
                          &sock->reactor);
  if (rc < 0) {
    free(sock);
    return rc;
  }
  if (c->unref)
    mdp_reactor_unref(sock->reactor);
  mdp_reactor_set_drain_cb(sock->reactor, socket_drained_cb);
  mdp__list_init(&sock->idle_link);
  sock->client = c;
  sock->endpoint = endpoint;
  mdp__list_push_back(&c->open_sockets, &sock->all_link);
  c->sockets++;
  c->spread.eps[endpoint].sockets++;
  c->stats.sockets_opened++;
  *out = sock;
  return 0;
}

/* Sends queued request `req` on idle socket `sock`. */
static void req_send(mdp_client_t *c, client_request_t *req,
                     pooled_socket_t *sock) {
  mdp__list_remove(&req->link);
  queue_leave(c, req);
  mdp_msg_t *msg;
  if (req->retries_left > 0) {
    msg = mdp_msg_dup(req->body); /* kept for the retry */
  } else {
    msg = req->body; /* last attempt: move it */
    req->body = NULL;
  }
  int rc = MDP_ENOMEM;
  if (msg != NULL) {
    mdp_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.dialect = c->peer.dialect;
    cmd.command = MDP_CLIENT_REQUEST;
    cmd.service = req->service;
    cmd.service_size = req->service_size;
    rc = mdp__peer_send(sock->reactor, &cmd, msg);
  }
  req->state = REQ_SENT;
  req->sock = sock;
  req->endpoint = sock->endpoint;
  sock->req = req;
  mdp__list_push_back(&c->in_flight, &req->link);
  c->sent++;
  mdp__spread_sent(&c->spread, sock->endpoint);
  if (rc < 0) {
    mdp_msg_destroy(msg);
    req->fail = rc; /* reported from the timer, never from the caller */
    req_schedule(c, req);
    return;
  }
  c->stats.sent++;
  req->part_deadline = time_after(uv_now(c->loop), req->timeout_ms);
  req_schedule(c, req);
}

/* A queued request that cannot get a socket: parked until the timer
 * reports `err` (never from inside mdp_client_request()). */
static void req_park(mdp_client_t *c, client_request_t *req, int err) {
  mdp__list_move_back(&c->parked, &req->link); /* still counted as queued */
  req->fail = err;
  req_schedule(c, req);
}

/* At the pool's bound, a request the policy sent to `wanted` (which has no
 * idle socket) could go out on an idle socket to `other`.  1 if that would
 * keep the pool bent: `other` holds two sockets or more than `wanted` (a
 * broker that was lost and came back, whose sockets went to the others;
 * or the primary, for MDP_SPREAD_FAILOVER).  The caller then closes that
 * socket instead, and the request opens one to `wanted` once it is closed:
 * the pool drifts back to what the policy wants, one socket per request
 * at most, instead of staying with the brokers that stayed up. */
static int pool_bent(const mdp_client_t *c, size_t wanted, size_t other) {
  return c->spread.eps[other].sockets > c->spread.eps[wanted].sockets + 1;
}

/* Sends queued requests while sockets are available, in queue order, each
 * to the endpoint the spread policy picks. */
static void client_dispatch(mdp_client_t *c) {
  while (!c->closing) {
    client_request_t *req = request_of(mdp__list_head(&c->queue));
    if (req == NULL)
      return;
    c->steps++;
    size_t ep = mdp__spread_pick(&c->spread, req->exclude, NULL);
    pooled_socket_t *sock = idle_socket(c, ep);
    if (sock == NULL && c->sockets >= c->opts.max_sockets) {
      /* At the bound: the policy picks again among the brokers with an idle
       * socket (closing one to open another per request would cost a
       * connection each); if none may take the request, an idle socket to
       * any other broker makes room. */
      size_t wanted = ep;
      for (size_t i = 0; i < c->spread.n; i++)
        c->has_idle[i] = !mdp__list_empty(&c->spread.eps[i].idle);
      ep = mdp__spread_pick(&c->spread, req->exclude, c->has_idle);
      if (ep == MDP__EP_NONE) {
        for (size_t i = 0; i < c->spread.n && sock == NULL; i++)
          sock = idle_socket(c, i);
        if (sock != NULL)
          socket_discard(c, sock); /* its close callback dispatches again */
        return;
      }
      sock = idle_socket(c, ep);
      if (pool_bent(c, wanted, ep)) {
        socket_discard(c, sock); /* its close callback dispatches again */
        return;
      }
      mdp__list_remove(&sock->idle_link);
      sock->idle = 0;
    } else if (sock != NULL) {
      mdp__list_remove(&sock->idle_link);
      sock->idle = 0;
    } else {
      int rc = socket_open(c, ep, &sock);
      if (rc < 0) {
        clog_(c, MDP_LOG_ERROR, "cannot open a socket to %s: %s",
              c->spread.eps[ep].url, mdp_strerror(rc));
        req_park(c, req, rc);
        continue;
      }
    }
    req_send(c, req, sock);
  }
}

/* --- public API ---------------------------------------------------------- */

void mdp_client_options_init(mdp_client_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->timeout_ms = 10000;
  opts->retries = 1;
  opts->max_sockets = 64;
  opts->max_queue = 10000;
  opts->max_msg_size = 64 * 1024 * 1024;
  opts->max_queued_bytes = 64 * 1024 * 1024;
  opts->dialect = MDP_DIALECT_RFC18;
  opts->log_level = MDP_LOG_INFO;
  mdp__socket_options_default(&opts->socket);
  opts->spread = MDP_SPREAD_ROUND_ROBIN;
  opts->probe = 1;
  opts->backoff_ms = 1000;
  opts->backoff_max_ms = 30000;
  opts->max_frames = 1024;
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
  if (o.timeout_ms == 0 || o.max_sockets == 0 ||
      (o.spread != MDP_SPREAD_ROUND_ROBIN && o.spread != MDP_SPREAD_FEWEST &&
       o.spread != MDP_SPREAD_FAILOVER) ||
      (o.backoff_ms != 0 && o.backoff_max_ms < o.backoff_ms) ||
      (o.max_frames > 0 && o.max_frames < MIN_FRAMES))
    return MDP_EINVAL;
  mdp__peer_config_t peer;
  int rc = mdp__peer_config_from_options(&peer, &o);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < n; i++)
    if (mdp_endpoint_check(endpoints[i], 0) < 0)
      return MDP_EINVAL;
  mdp_client_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return MDP_ENOMEM;
  c->has_idle = malloc(n);
  if (c->has_idle == NULL ||
      mdp__spread_init(&c->spread, endpoints, n, o.spread, o.backoff_ms,
                       o.backoff_max_ms) < 0) {
    free(c->has_idle);
    free(c);
    return MDP_ENOMEM;
  }
  c->loop = loop;
  c->peer = peer;
  o.curve_server_key = o.curve_public_key = o.curve_secret_key = NULL;
  c->opts = o;
  mdp__list_init(&c->queue);
  mdp__list_init(&c->parked);
  mdp__list_init(&c->in_flight);
  mdp__list_init(&c->open_sockets);
  mdp__map_init(&c->by_id);
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

/* 1 if a new request would wait in the queue: others wait before it, or no
 * socket is free for it (none idle, none to open). */
static int request_would_wait(mdp_client_t *c) {
  return !mdp__list_empty(&c->queue) ||
         (c->sockets >= c->opts.max_sockets && !any_idle_socket(c));
}

/* 0 if a request of `body_bytes` may be accepted, MDP_ENOBUFS (counted) if
 * it would wait in a queue that is full by count or by bytes.  A request
 * that goes straight to a socket is never refused: the queue bounds what
 * waits, max_sockets what is in flight. */
static int queue_admits(mdp_client_t *c, size_t body_bytes) {
  if (!request_would_wait(c))
    return 0;
  if (c->opts.max_queue != 0 && c->queued >= c->opts.max_queue) {
    c->stats.refused_queue_full++;
    return MDP_ENOBUFS;
  }
  if (c->opts.max_queued_bytes != 0 &&
      (body_bytes > c->opts.max_queued_bytes ||
       c->queued_bytes > c->opts.max_queued_bytes - body_bytes)) {
    c->stats.refused_queued_bytes++;
    return MDP_ENOBUFS;
  }
  return 0;
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
  size_t body_bytes = mdp_msg_bytes(body);
  int rc = queue_admits(c, body_bytes);
  if (rc < 0)
    return rc;
  client_request_t *req = request_alloc(c);
  if (req == NULL)
    return MDP_ENOMEM;
  req->id = c->next_id + 1;
  c->steps++;
  if (heap_reserve(c) < 0 ||
      mdp__map_put(&c->by_id, &req->id, sizeof req->id, req) < 0) {
    request_release(c, req);
    return MDP_ENOMEM;
  }
  c->next_id++;
  /* Called outside a callback after the loop sat idle (or before it ever
   * ran), the loop's cached time is stale: a timeout counted from it would
   * fire at once. */
  uv_update_time(c->loop);
  uint64_t now = uv_now(c->loop);
  req->heap_index = NOT_IN_HEAP;
  req->state = REQ_QUEUED;
  req->body = body;
  req->body_bytes = body_bytes;
  req->cb = reply_cb;
  req->data = request_data;
  req->timeout_ms = o.timeout_ms;
  req->deadline = o.deadline_ms ? time_after(now, o.deadline_ms) : 0;
  if (req->deadline == TIME_NEVER)
    req->deadline = 0; /* forever is no deadline */
  req->retries_left = o.retries;
  req->exclude = MDP__EP_NONE;
  req->service_size = slen;
  memcpy(req->service, service, slen);
  mdp__list_push_back(&c->queue, &req->link);
  queue_enter(c, req);
  c->stats.requests++;
  req_schedule(c, req);
  if (request_id)
    *request_id = req->id;
  client_dispatch(c);
  return 0;
}

int mdp_client_cancel(mdp_client_t *c, uint64_t request_id) {
  if (c == NULL || request_id == 0)
    return MDP_EINVAL;
  c->steps++;
  client_request_t *req =
      mdp__map_get(&c->by_id, &request_id, sizeof request_id);
  if (req == NULL)
    return MDP_EINVAL; /* finished, failed or never existed */
  req_finish(c, req, MDP_ECANCELED, NULL);
  return 0;
}

static void timer_closed_cb(uv_handle_t *handle) {
  mdp_client_t *c = handle->data;
  c->timer_closed = 1;
  client_maybe_free(c);
}

/* The first pending request: in flight, else queued, else parked. */
static client_request_t *first_pending(mdp_client_t *c) {
  mdp__list_t *link = mdp__list_head(&c->in_flight);
  if (link == NULL)
    link = mdp__list_head(&c->queue);
  if (link == NULL)
    link = mdp__list_head(&c->parked);
  return request_of(link);
}

void mdp_client_close(mdp_client_t *c, mdp_client_close_cb close_cb) {
  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  c->close_cb = close_cb;
  /* Callbacks may cancel other requests: always take the current first. */
  client_request_t *req;
  while ((req = first_pending(c)) != NULL)
    req_finish(c, req, MDP_ECANCELED, NULL);
  for (size_t i = 0; i < c->spread.n; i++) {
    pooled_socket_t *sock;
    while ((sock = idle_socket(c, i)) != NULL)
      socket_discard(c, sock);
    if (c->spread.eps[i].probe != NULL)
      socket_discard(c, c->spread.eps[i].probe);
  }
  uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

void mdp_client_get_stats(const mdp_client_t *c, mdp_client_stats_t *out) {
  *out = c->stats;
  out->in_flight = c->sent;
  out->queued = c->queued;
  out->queued_bytes = c->queued_bytes;
  out->sockets = c->sockets;
  out->endpoints_live = c->spread.live;
  out->dropped_frames = c->dropped_frames;
  for (mdp__list_t *link = c->open_sockets.next; link != &c->open_sockets;
       link = link->next) {
    pooled_socket_t *sock = mdp__container_of(link, pooled_socket_t, all_link);
    if (!sock->discarded)
      out->dropped_frames += reactor_dropped(sock->reactor);
  }
}

int mdp_client_get_endpoint_stats(const mdp_client_t *c, size_t index,
                                  mdp_client_endpoint_stats_t *out) {
  if (c == NULL || out == NULL || index >= c->spread.n)
    return MDP_EINVAL;
  *out = c->spread.eps[index].stats;
  out->live = c->spread.eps[index].state == MDP__EP_LIVE;
  return 0;
}

size_t mdp_client_held(const mdp_client_t *c, size_t *bytes) {
  size_t messages = 0, total_bytes = 0;
  for (mdp__list_t *link = c->open_sockets.next; link != &c->open_sockets;
       link = link->next) {
    pooled_socket_t *sock = mdp__container_of(link, pooled_socket_t, all_link);
    mdp_reactor_stats_t st;
    mdp_reactor_get_stats(sock->reactor, &st);
    messages += st.pending;
    total_bytes += st.pending_bytes;
  }
  if (bytes != NULL)
    *bytes = total_bytes;
  return messages;
}

void mdp_client_set_drain_cb(mdp_client_t *c, mdp_client_drain_cb cb) {
  c->drain_cb = cb;
}

int mdp_client_is_closing(const mdp_client_t *c) { return c->closing; }

static void client_set_ref(mdp_client_t *c, int ref) {
  c->unref = !ref;
  (ref ? uv_ref : uv_unref)((uv_handle_t *)&c->timer);
  for (mdp__list_t *link = c->open_sockets.next; link != &c->open_sockets;
       link = link->next) {
    pooled_socket_t *sock = mdp__container_of(link, pooled_socket_t, all_link);
    (ref ? mdp_reactor_ref : mdp_reactor_unref)(sock->reactor);
  }
}

void mdp_client_ref(mdp_client_t *c) { client_set_ref(c, 1); }
void mdp_client_unref(mdp_client_t *c) { client_set_ref(c, 0); }

uint64_t mdp__client_steps(const mdp_client_t *c) { return c->steps; }

void mdp_client_set_data(mdp_client_t *c, void *data) { c->data = data; }
void *mdp_client_get_data(const mdp_client_t *c) { return c->data; }
uv_loop_t *mdp_client_loop(const mdp_client_t *c) { return c->loop; }
