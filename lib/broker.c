/* mdp_broker_t's life cycle: options, creation, binding, close, stats.
 * The broker's other files: broker_recv.c (the receive path),
 * broker_workers.c, broker_queue.c (services, queues, dispatch),
 * broker_reply.c, broker_send.c, broker_mmi.c, broker_metrics.c.
 *
 * Close is deferred: mdp_broker_close() only closes handles, and the
 * structures are freed in the last close callback, so a close from inside a
 * log callback (i.e. in the middle of handling a message) never leaves the
 * code below touching freed memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "broker_internal.h"
#include "peer.h"
#include "zap.h"
#include "zmq_call.h"

#define BROKER_HANDLES 7 /* reactor + five timeout lists + trim timer */
#define BROKER_LINGER_MS 200

void mdp_broker_options_init(mdp_broker_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->heartbeat_interval_ms = MDP_DEFAULT_HEARTBEAT_INTERVAL_MS;
  opts->heartbeat_liveness = MDP_DEFAULT_HEARTBEAT_LIVENESS;
  opts->silent_busy_dialects = MDP_DIALECT_MAJORTOMO | MDP_DIALECT_MDP01;
  opts->silent_busy_timeout_ms = MDP_DEFAULT_BUSY_WORKER_TIMEOUT_MS;
  opts->busy_timeout_ms = 0;
  opts->request_expiry_ms = 30000;
  opts->max_queue = 10000;
  opts->max_queued_total = 100000;
  opts->max_queue_per_client = 1000;
  opts->max_queued_bytes = 256 * 1024 * 1024;
  opts->max_services = 10000;
  opts->max_workers_per_service = 10000;
  opts->max_frames = 1024;
  opts->max_msg_size = 64 * 1024 * 1024;
  opts->max_redispatch = 1;
  opts->log_level = MDP_LOG_INFO;
  opts->dialects = MDP_DIALECT_ALL;
  opts->disconnect_expired = 0;
  opts->max_mmi_reply_bytes = 64 * 1024;
  mdp__socket_options_default(&opts->socket);
  opts->metrics_max_services = 100;
}

/* After a flood the freed requests are thousands of small blocks that the
 * allocator keeps; hand them back, from a timer (never inside message
 * handling), at most once a second. */
#define TRIM_DELAY_MS 1000

static void on_trim(uv_timer_t *timer) {
  mdp_broker_t *b = timer->data;
  if (b->closing)
    return;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  b->trims++;
}

void mdp__broker_trim_soon(mdp_broker_t *b) {
  if (!b->closing && !uv_is_active((uv_handle_t *)&b->trim_timer))
    uv_timer_start(&b->trim_timer, on_trim, TRIM_DELAY_MS, 0);
}

/* ---- life cycle ------------------------------------------------------- */

static void free_everything(mdp_broker_t *b) {
  for (size_t i = 0; i < b->workers.cap; i++) {
    broker_worker_t *w = b->workers.slots[i].value;
    if (b->workers.slots[i].hash == 0)
      continue;
    if (w->request != NULL)
      mdp__broker_request_free(b, w->request);
    free(w);
  }
  for (size_t i = 0; i < b->services.cap; i++) {
    if (b->services.slots[i].hash == 0)
      continue;
    broker_service_t *s = b->services.slots[i].value;
    mdp__list_t *n;
    while ((n = mdp__list_head(&s->retry_queue)) != NULL) {
      mdp__list_remove(n);
      mdp__broker_request_free(b,
                          mdp__container_of(n, broker_request_t, queue_link));
    }
    while ((n = mdp__list_head(&s->client_ring)) != NULL) {
      broker_client_queue_t *cq =
          mdp__container_of(n, broker_client_queue_t, ring_link);
      mdp__list_t *rn;
      while ((rn = mdp__list_head(&cq->requests)) != NULL) {
        mdp__list_remove(rn);
        mdp__broker_request_free(
            b, mdp__container_of(rn, broker_request_t, queue_link));
      }
      mdp__list_remove(n);
      free(cq); /* closing: not kept */
    }
    free(s);
  }
  b->last_service = NULL;
  mdp__broker_request_cache_free(b);
  mdp__broker_metrics_free(b);
  mdp__map_free(&b->workers);
  mdp__map_free(&b->services);
  mdp__map_free(&b->client_queues);
}

static void on_handle_closed(mdp_broker_t *b) {
  if (--b->pending_closes > 0)
    return;
  free_everything(b);
  if (b->close_cb)
    b->close_cb(b);
  free(b);
}

static void on_timer_closed(uv_handle_t *h) {
  on_handle_closed(h->data);
}

/* A timeout list's drain hook (see tlist.h): reads what waits in the
 * socket, at most DRAIN_BATCHES batches, before the list expires anyone.
 * After a stall the loop runs its timers before it polls, so the
 * heartbeat, reply or READY that would save a worker or a request may be
 * sitting there; a long flood only delays expiry by that many messages. */
#define DRAIN_BATCHES 16
static void broker_drain(mdp__tlist_t *list) {
  mdp_broker_t *b = list->timer.data;
  for (int i = 0; i < DRAIN_BATCHES && !b->closing; i++)
    if (mdp_reactor_process_now(b->reactor) == 0)
      break;
}

static void on_reactor_closed(mdp_reactor_t *reactor) {
  on_handle_closed(mdp_reactor_get_data(reactor));
}

static void on_zap_closed(void *b) { on_handle_closed(b); }

static int zmq_error(void) {
  switch (zmq_errno()) {
  case EADDRINUSE:
    return MDP_EADDRINUSE;
  case EINVAL:
  case EPROTONOSUPPORT:
  case ENOCOMPATPROTO:
  case EADDRNOTAVAIL:
  case ENODEV:
    return MDP_EINVAL;
  case ENOMEM:
    return MDP_ENOMEM;
  default:
    return MDP_EZMQ;
  }
}

/* The ROUTER's options: the broker's own, then the caller's (the same
 * setting code as the workers' and clients' sockets, lib/peer.c). */
static int set_socket_options(void *socket, const mdp_broker_options_t *o) {
  int one = 1, linger = BROKER_LINGER_MS;
  int64_t maxmsg = o->max_msg_size;
  if (zmq_setsockopt(socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
      zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger) ||
      zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg))
    return MDP_EZMQ;
  return mdp__socket_options_apply(socket, &o->socket, 0);
}

/* Every duration within MDP_BROKER_TIME_MAX_MS, so loop time + duration
 * cannot wrap; the silence window (interval x liveness) too. */
static int options_valid(const mdp_broker_options_t *o) {
  const uint64_t max = MDP_BROKER_TIME_MAX_MS;
  return o->heartbeat_interval_ms > 0 && o->heartbeat_interval_ms <= max &&
         o->heartbeat_liveness > 0 &&
         o->heartbeat_liveness <= max / o->heartbeat_interval_ms &&
         o->silent_busy_timeout_ms <= max && o->busy_timeout_ms <= max &&
         o->request_expiry_ms <= max && o->dialects != 0 &&
         (o->dialects & ~(unsigned)MDP_DIALECT_ALL) == 0 &&
         (o->silent_busy_dialects & ~(unsigned)MDP_DIALECT_ALL) == 0 &&
         o->max_msg_size >= -1 && mdp__socket_options_valid(&o->socket);
}

int mdp_broker_new(uv_loop_t *loop, const mdp_broker_options_t *opts,
                   mdp_broker_t **out) {
  mdp_broker_options_t defaults;
  if (opts == NULL) {
    mdp_broker_options_init(&defaults);
    opts = &defaults;
  }
  if (loop == NULL || out == NULL || !options_valid(opts))
    return MDP_EINVAL;
  void *ctx = opts->zmq_context ? opts->zmq_context : mdp_zmq_context();
  if (ctx == NULL)
    return MDP_EZMQ;
  mdp_broker_t *b = calloc(1, sizeof *b);
  if (b == NULL)
    return MDP_ENOMEM;
  b->loop = loop;
  b->opts = *opts;
  b->dialects = opts->dialects;
  b->socket = zmq_socket(ctx, ZMQ_ROUTER);
  if (b->socket == NULL) {
    free(b);
    return MDP_EZMQ;
  }
  int rc = set_socket_options(b->socket, opts);
  if (rc == 0)
    rc = mdp__socket_options_setup(b->socket, &opts->socket);
  if (rc < 0) {
    zmq_close(b->socket);
    free(b);
    return rc;
  }
  rc = 0;
  if (opts->curve_secret_key != NULL) { /* before any bind: see zap.h */
    rc = mdp__zap_start(loop, ctx, b->socket, opts, &b->zap);
    if (rc < 0) {
      zmq_close(b->socket);
      free(b);
      return rc;
    }
  }
  /* The only libuv handle init that can fail: after it nothing does, so a
   * failure leaves no handle for the caller's loop to close (the ZAP
   * handler has none until the first bind). */
  rc = mdp_reactor_new(loop, b->socket, 1, mdp__broker_on_message, &b->reactor);
  if (rc < 0) {
    mdp__zap_close(b->zap, NULL, NULL);
    zmq_close(b->socket);
    free(b);
    return rc;
  }
  mdp_reactor_set_data(b->reactor, b);
  /* Never hold messages: on a ROUTER one full peer would block the queue
   * for all.  A full peer's send fails at once (MDP_ENOBUFS) and is handled
   * per peer: replies dropped, requests re-queued. */
  mdp_reactor_set_max_pending(b->reactor, 0);
  /* The limit is on what a peer sends; the ROUTER adds the identity. */
  mdp_reactor_set_max_frames(b->reactor,
                             opts->max_frames ? opts->max_frames + 1 : 0);
  mdp_reactor_set_fail_cb(b->reactor, mdp__broker_on_send_failed);
  mdp__map_init(&b->services);
  mdp__map_init(&b->workers);
  mdp__map_init(&b->client_queues);
  mdp__broker_metrics_init(b);
  /* uv_timer_init cannot fail on a valid loop. */
  uint64_t liveness_ms = opts->heartbeat_interval_ms * opts->heartbeat_liveness;
  mdp__tlist_init(loop, &b->liveness, liveness_ms, mdp__broker_on_worker_silent);
  mdp__tlist_init(loop, &b->heartbeat, opts->heartbeat_interval_ms,
                 mdp__broker_on_heartbeat_due);
  mdp__tlist_init(loop, &b->busy, opts->busy_timeout_ms, mdp__broker_on_busy_timeout);
  mdp__tlist_init(loop, &b->silent_busy, opts->silent_busy_timeout_ms,
                 mdp__broker_on_busy_timeout);
  mdp__tlist_init(loop, &b->expiry, opts->request_expiry_ms,
                 mdp__broker_expire_request);
  mdp__tlist_t *lists[] = {&b->liveness, &b->heartbeat, &b->busy,
                          &b->silent_busy, &b->expiry};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    lists[i]->timer.data = b;
    lists[i]->stop = &b->closing;
  }
  uv_timer_init(loop, &b->trim_timer);
  b->trim_timer.data = b;
  /* Nobody is expired for silence or slowness, and no request for want of
   * a worker, while what would prove otherwise waits unread. */
  b->liveness.drain = broker_drain;
  b->busy.drain = broker_drain;
  b->silent_busy.drain = broker_drain;
  b->expiry.drain = broker_drain;
  /* Thousands of workers register at scattered times, so their deadlines
   * are scattered too: batch them.  A heartbeat may go up to a tenth of an
   * interval late, never early: RFC 18 peers SHOULD NOT heartbeat while
   * they send other commands, so a worker that was sent anything within
   * the interval gets no HEARTBEAT (each send restarts its deadline; the
   * worker's liveness spans several intervals).  Expiries may come up to a
   * tenth of an interval (at most 1 s for the others) late. */
  b->heartbeat.late = opts->heartbeat_interval_ms / 10;
  b->liveness.late = opts->heartbeat_interval_ms / 10;
  b->busy.late = opts->busy_timeout_ms / 10 < 1000 ? opts->busy_timeout_ms / 10
                                                   : 1000;
  b->silent_busy.late = opts->silent_busy_timeout_ms / 10 < 1000
                            ? opts->silent_busy_timeout_ms / 10
                            : 1000;
  b->expiry.late = opts->request_expiry_ms / 10 < 1000
                       ? opts->request_expiry_ms / 10
                       : 1000;
  rc = mdp_reactor_start(b->reactor);
  if (rc < 0) { /* cannot happen on a fresh reactor; keep it honest */
    b->close_cb = NULL;
    mdp_broker_close(b, NULL);
    return rc;
  }
  *out = b;
  return 0;
}

/* What libzmq's "No such device" means for a tcp:// bind. */
static const char *bind_hint(const char *endpoint, int err) {
  if (err != ENODEV || strncmp(endpoint, "tcp://", 6) != 0)
    return "";
  return " (a tcp:// bind takes an IP address such as 127.0.0.1 or [::1], "
         "an interface name such as lo or eth0, or * for all; libzmq "
         "resolves no host name for a bind)";
}

int mdp_broker_bind(mdp_broker_t *b, const char *endpoint) {
  if (b->closing)
    return MDP_ECLOSING;
  if (mdp_endpoint_check(endpoint, 1) < 0) {
    BROKER_LOG(b, MDP_LOG_ERROR, "cannot bind to %s: not a valid endpoint "
               "(a tcp:// port is 1..65535, 0 or *)",
               endpoint ? endpoint : "(null)");
    return MDP_EINVAL;
  }
  /* Handshakes start with the first bind: CURVE's must find the handler
   * watched. */
  int rc = b->zap ? mdp__zap_watch(b->zap) : 0;
  if (rc < 0)
    return rc;
  /* An IPv6 literal needs ZMQ_IPV6, or libzmq says "No such device". */
  if (strncmp(endpoint, "tcp://[", 7) == 0) {
    int one = 1;
    zmq_setsockopt(b->socket, ZMQ_IPV6, &one, sizeof one);
  }
  rc = mdp__zmq_bind(b->socket, endpoint);
  int err = zmq_errno();
  /* zmq_bind processes the socket's commands, as reading ZMQ_EVENTS does:
   * a read activation it consumed must not leave messages waiting, whether
   * the bind worked or not. */
  mdp_reactor_kick(b->reactor);
  if (rc != 0) {
    errno = err;
    rc = zmq_error();
    BROKER_LOG(b, MDP_LOG_ERROR, "cannot bind to %s: %s%s", endpoint,
               zmq_strerror(err), bind_hint(endpoint, err));
    errno = err;
    return rc;
  }
  size_t size = sizeof b->last_endpoint;
  if (zmq_getsockopt(b->socket, ZMQ_LAST_ENDPOINT, b->last_endpoint, &size))
    snprintf(b->last_endpoint, sizeof b->last_endpoint, "%s", endpoint);
  BROKER_LOG(b, MDP_LOG_INFO, "bound to %s", b->last_endpoint);
  return 0;
}

int mdp_broker_last_endpoint(mdp_broker_t *b, char *buf, size_t size) {
  size_t n = strlen(b->last_endpoint);
  if (n + 1 > size)
    return MDP_ENOBUFS;
  memcpy(buf, b->last_endpoint, n + 1);
  return 0;
}

void mdp_broker_close(mdp_broker_t *b, mdp_broker_close_cb close_cb) {
  if (b->closing)
    return;
  /* Closing first: nothing below may remove a worker (and so change the
   * map walked here), and a close from a callback is a no-op. */
  b->closing = 1;
  /* Tell workers first, while the socket is still open; the socket's linger
   * gives the DISCONNECTs time to leave. */
  for (size_t i = 0; i < b->workers.cap; i++) {
    if (b->workers.slots[i].hash == 0)
      continue;
    broker_worker_t *w = b->workers.slots[i].value;
    if (mdp__broker_send_worker(b, w, MDP_WORKER_DISCONNECT, NULL, 0,
                                NULL) == 0)
      b->stats.disconnects_sent++;
  }
  b->close_cb = close_cb;
  b->pending_closes = BROKER_HANDLES;
  if (mdp__zap_close(b->zap, on_zap_closed, b))
    b->pending_closes++;
  b->zap = NULL;
  uv_close((uv_handle_t *)&b->trim_timer, on_timer_closed);
  mdp__tlist_close(&b->liveness, on_timer_closed);
  mdp__tlist_close(&b->heartbeat, on_timer_closed);
  mdp__tlist_close(&b->busy, on_timer_closed);
  mdp__tlist_close(&b->silent_busy, on_timer_closed);
  mdp__tlist_close(&b->expiry, on_timer_closed);
  mdp_reactor_close(b->reactor, on_reactor_closed);
}

void mdp_broker_get_stats(const mdp_broker_t *b, mdp_broker_stats_t *out) {
  *out = b->stats;
  mdp_reactor_stats_t rs;
  mdp_reactor_get_stats(b->reactor, &rs);
  out->dropped_frames = rs.msgs_dropped;
  if (b->zap != NULL)
    mdp__zap_counts(b->zap, &out->curve_accepted, &out->curve_refused);
  else
    out->curve_accepted = out->curve_refused = 0;
}

int mdp_broker_get_service_stats(const mdp_broker_t *b, const char *service,
                                 mdp_broker_service_stats_t *out) {
  memset(out, 0, sizeof *out);
  broker_service_t *s =
      b->closing ? NULL
                 : mdp__broker_service_get((mdp_broker_t *)b, service,
                                      strlen(service), 0);
  if (s == NULL)
    return MDP_EINVAL;
  out->workers_idle = s->n_idle;
  out->workers_busy = s->n_busy;
  out->queued = s->queued;
  return 0;
}

int mdp_broker_is_closing(const mdp_broker_t *b) { return b->closing != 0; }

void mdp_broker_set_data(mdp_broker_t *b, void *data) { b->data = data; }
void *mdp_broker_get_data(const mdp_broker_t *b) { return b->data; }
uv_loop_t *mdp_broker_loop(const mdp_broker_t *b) { return b->loop; }

int mdp__broker_log_rate(mdp_broker_t *b, mdp__log_rate_t *rate,
                         uint64_t *suppressed) {
  uint64_t now = uv_now(b->loop);
  if (now - rate->window >= 1000) {
    rate->window = now;
    rate->lines = 0;
  }
  if (rate->lines >= MDP__BROKER_LOG_LINES_PER_S) {
    rate->suppressed++;
    return 0;
  }
  rate->lines++;
  *suppressed = rate->suppressed;
  rate->suppressed = 0;
  return 1;
}

const char *mdp__broker_suppressed_text(uint64_t n, char *buf, size_t size) {
  if (n == 0)
    return "";
  snprintf(buf, size, " (%llu similar lines suppressed)",
           (unsigned long long)n);
  return buf;
}
