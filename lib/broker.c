/* mdp_broker_t: life cycle, the receive path and the send helpers.
 *
 * Every message arrives through the reactor's callback as
 * [identity | command frames...]; it is parsed once, and its body frames are
 * moved on to the peer they are for.
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
#include "zap.h"

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
  opts->tcp_keepalive = opts->tcp_keepalive_idle = -1;
  opts->tcp_keepalive_intvl = opts->tcp_keepalive_cnt = -1;
  opts->metrics_max_services = 100;
}

const char *mdp__broker_printable(const void *data, size_t size, char *buf,
                             size_t buf_size) {
  const unsigned char *p = data;
  int text = size > 0;
  for (size_t i = 0; i < size && text; i++)
    text = p[i] >= 0x20 && p[i] < 0x7f;
  size_t o = 0;
  if (text) {
    o = size < buf_size - 1 ? size : buf_size - 1;
    memcpy(buf, p, o);
  } else {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < size && o + 3 < buf_size; i++) {
      buf[o++] = hex[p[i] >> 4];
      buf[o++] = hex[p[i] & 15];
    }
  }
  buf[o] = '\0';
  return buf;
}

/* ---- sending ---------------------------------------------------------- */

/* Every message the broker sends: the command's header, then the peer's
 * routing identity, in front of `msg` (the body, maybe no frame), sent.
 * 0: `msg` is the reactor's.  On error `msg` holds exactly the frames it
 * came with and is still the caller's. */
static int send_to(mdp_broker_t *b, const void *id, size_t id_size,
                   const mdp_cmd_t *cmd, mdp_msg_t *msg) {
  size_t body_frames = mdp_msg_size(msg);
  int rc = mdp_encode(msg, cmd);
  if (rc == 0)
    rc = mdp_msg_prepend_mem(msg, id, id_size);
  if (rc == 0)
    rc = mdp_reactor_send(b->reactor, msg);
  if (rc < 0)
    mdp_msg_drop_front(msg, mdp_msg_size(msg) - body_frames);
  return rc;
}

int mdp__broker_send_worker(mdp_broker_t *b, broker_worker_t *w,
                       mdp_command_t command, const zmq_msg_t *client,
                       mdp_msg_t *body) {
  mdp_msg_t *msg = body ? body : mdp_msg_new();
  if (msg == NULL)
    return MDP_ENOMEM;
  mdp_cmd_t cmd = {.dialect = w->dialect, .command = command};
  if (client != NULL) {
    cmd.address = zmq_msg_data((zmq_msg_t *)client);
    cmd.address_size = zmq_msg_size((zmq_msg_t *)client);
  }
  int rc = send_to(b, w->id, w->id_size, &cmd, msg);
  if (rc < 0) {
    if (body == NULL)
      mdp_msg_destroy(msg);
    return rc;
  }
  if (command == MDP_WORKER_HEARTBEAT)
    b->stats.heartbeats_sent++;
  /* Anything sent counts as a heartbeat: the next one is due later. */
  mdp__tlist_touch(&b->heartbeat, &w->heartbeat);
  return 0;
}

int mdp__broker_send_client(mdp_broker_t *b, const zmq_msg_t *client,
                        mdp_dialect_t dialect, mdp_command_t command,
                        const uint8_t *service, size_t service_size,
                        mdp_msg_t *body) {
  mdp_cmd_t cmd = {.dialect = dialect,
                   .command = command,
                   .service = service,
                   .service_size = service_size};
  int rc = send_to(b, zmq_msg_data((zmq_msg_t *)client),
                   zmq_msg_size((zmq_msg_t *)client), &cmd, body);
  if (rc < 0) {
    /* With no send queue (max_pending 0), a client whose pipe is full gets
     * ENOBUFS: it is not reading, and holding its replies would stall
     * every other peer behind it. */
    uint64_t n = rc == MDP_ENOBUFS ? ++b->stats.dropped_slow_client
                                   : ++b->stats.dropped_unroutable;
    char buf[64];
    if (mdp__broker_log_sampled(n))
      BROKER_LOG(b, MDP_LOG_DEBUG, "reply to client %s dropped: %s (%llu so "
                 "far)",
                 mdp__broker_printable(zmq_msg_data((zmq_msg_t *)client),
                                  zmq_msg_size((zmq_msg_t *)client), buf,
                                  sizeof buf),
                 mdp_strerror(rc), (unsigned long long)n);
    mdp_msg_destroy(body);
  }
  return rc;
}

/* DISCONNECT to a peer that is not a registered worker. */
static void send_disconnect_to(mdp_broker_t *b, const zmq_msg_t *id,
                               mdp_dialect_t dialect) {
  mdp_msg_t *msg = mdp_msg_new();
  mdp_cmd_t cmd = {.dialect = dialect, .command = MDP_WORKER_DISCONNECT};
  int rc = msg ? send_to(b, zmq_msg_data((zmq_msg_t *)id),
                         zmq_msg_size((zmq_msg_t *)id), &cmd, msg)
               : MDP_ENOMEM;
  if (rc < 0)
    mdp_msg_destroy(msg);
  else
    b->stats.disconnects_sent++;
}

/* ---- receiving -------------------------------------------------------- */

static void protocol_error(mdp_broker_t *b, const zmq_msg_t *id,
                           broker_worker_t *w, mdp_dialect_t dialect,
                           const char *why) {
  char buf[64];
  uint64_t n = ++b->protocol_errors;
  if (mdp__broker_log_sampled(n))
    BROKER_LOG(b, MDP_LOG_DEBUG, "protocol error from %s: %s (%llu so far)",
               mdp__broker_printable(zmq_msg_data((zmq_msg_t *)id),
                                zmq_msg_size((zmq_msg_t *)id), buf,
                                sizeof buf),
               why, (unsigned long long)n);
  if (w != NULL)
    mdp__broker_worker_remove(b, w, 1, why);
  else
    send_disconnect_to(b, id, dialect);
}

static void on_ready(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                     const mdp_cmd_t *cmd) {
  if (w != NULL) {
    protocol_error(b, id, w, cmd->dialect, "READY from a registered worker");
    return;
  }
  if (mdp_is_mmi(cmd->service, cmd->service_size)) {
    protocol_error(b, id, NULL, cmd->dialect, "READY for an mmi.* service");
    return;
  }
  size_t id_size = zmq_msg_size(id);
  broker_service_t *s =
      mdp__broker_service_get(b, cmd->service, cmd->service_size,
                         MDP__BROKER_CREATE_FOR_WORKER);
  if (s == NULL || (b->opts.max_workers_per_service &&
                    s->n_idle + s->n_busy >= b->opts.max_workers_per_service)) {
    b->stats.workers_refused++;
    protocol_error(b, id, NULL, cmd->dialect,
                   s ? "too many workers for the service"
                     : "too many services");
    return;
  }
  w = malloc(sizeof *w + id_size);
  if (w != NULL)
    memcpy(w->id, zmq_msg_data(id), id_size);
  if (w == NULL || mdp__map_put(&b->workers, w->id, id_size, w) < 0) {
    /* Out of memory: refuse the worker; it will try again. */
    free(w);
    mdp__broker_service_maybe_free(b, s);
    send_disconnect_to(b, id, cmd->dialect);
    return;
  }
  w->id_size = id_size;
  w->service = s;
  w->request = NULL;
  w->dialect = cmd->dialect;
  mdp__list_init(&w->idle_link);
  mdp__tnode_init(&w->liveness);
  mdp__tnode_init(&w->heartbeat);
  mdp__tnode_init(&w->busy);
  mdp__tlist_touch(&b->liveness, &w->liveness);
  mdp__tlist_touch(&b->heartbeat, &w->heartbeat);
  b->stats.workers++;
  b->stats.workers_registered++;
  if (s->stats == &b->other_stats) /* created by a client's request */
    s->stats = mdp__broker_svc_stats_for(b, s, 1);
  char buf[64];
  BROKER_LOG(b, MDP_LOG_INFO, "worker %s ready for service '%.*s' (%s)",
             mdp__broker_printable(w->id, id_size, buf, sizeof buf),
             (int)s->name_size, (const char *)s->name,
             mdp_dialect_name(w->dialect));
  mdp__broker_worker_idle(b, w);
}

/* An MDP/0.1 client expects one REPLY: PARTIAL bodies are appended to
 * r->collected, and the FINAL's body is returned with them in front.  Over
 * max_msg_size bytes the request fails: counted, and nothing is sent.
 * Returns the message to send, or NULL (taken). */
static mdp_msg_t *collect_for_mdp01(mdp_broker_t *b, broker_request_t *r,
                                   mdp_command_t command, mdp_msg_t *msg) {
  if (!r->failed && r->collected == NULL && command == MDP_WORKER_FINAL)
    return msg; /* a single-part reply: nothing to collect */
  if (r->failed) {
    mdp_msg_destroy(msg);
    return NULL;
  }
  size_t limit = b->opts.max_msg_size < 0 ? SIZE_MAX
                                          : (size_t)b->opts.max_msg_size;
  /* A running total, so each PARTIAL costs its own size only; every frame
   * is charged what it costs the broker to hold, so a stream of empty
   * frames is bounded too, and so is the frame count.  What is held counts
   * against max_queued_bytes like a queued request. */
  size_t frames = mdp_msg_size(msg);
  size_t cost = mdp_msg_bytes(msg) + frames * sizeof(zmq_msg_t);
  size_t total_frames = frames + (r->collected ? mdp_msg_size(r->collected)
                                               : 0);
  size_t held_max = b->opts.max_queued_bytes;
  int fits = r->collected_bytes + cost <= limit &&
             (!b->opts.max_frames || total_frames <= b->opts.max_frames) &&
             (!held_max || b->stats.queued_bytes + cost <= held_max);
  if (fits && (r->collected || (r->collected = mdp_msg_new())) &&
      mdp_msg_append_msg(r->collected, msg) == 0) {
    mdp_msg_destroy(msg);
    r->collected_bytes += cost;
    b->stats.queued_bytes += cost;
    if (command == MDP_WORKER_PARTIAL)
      return NULL;
    msg = r->collected;
    r->collected = NULL;
    mdp__broker_collected_release(b, r); /* the bytes leave with the reply */
    return msg;
  }
  /* Over a bound (or out of memory): the client cannot get the whole
   * reply; what was collected is freed now, the rest swallowed. */
  r->failed = 1;
  uint64_t n = ++b->stats.dropped_too_large;
  if (mdp__broker_log_sampled(n))
    BROKER_LOG(b, MDP_LOG_WARN,
               "reply for an MDP/0.1 client over %zu bytes, %zu frames or "
               "the held-bytes limit: request failed (%llu so far)",
               limit, b->opts.max_frames, (unsigned long long)n);
  mdp__broker_collected_release(b, r);
  mdp_msg_destroy(msg);
  return NULL;
}

static void on_reply(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                     const mdp_cmd_t *cmd, mdp_msg_t *msg) {
  broker_request_t *r = w ? w->request : NULL;
  if (w == NULL) {
    protocol_error(b, id, NULL, cmd->dialect, "reply from an unknown worker");
    mdp_msg_destroy(msg);
    return;
  }
  if (r == NULL ||
      zmq_msg_size(&r->client) != cmd->address_size ||
      memcmp(zmq_msg_data(&r->client), cmd->address, cmd->address_size)) {
    protocol_error(b, id, w, cmd->dialect,
                   "reply for a client the worker does not serve");
    mdp_msg_destroy(msg);
    return;
  }
  broker_service_t *s = w->service;
  mdp_msg_drop_front(msg, cmd->body);
  if (r->failed) {
    /* The client already missed part of this reply: swallow the rest. */
    mdp_msg_destroy(msg);
    msg = NULL;
  } else if (r->client_dialect == MDP_DIALECT_MDP01) {
    msg = collect_for_mdp01(b, r, cmd->command, msg);
  }
  if (msg == NULL) {
    /* collected, or swallowed */
  } else if (cmd->command == MDP_WORKER_PARTIAL) {
    r->partial_sent = 1;
    if (mdp__broker_send_client(b, &r->client, r->client_dialect,
                           MDP_CLIENT_PARTIAL, s->name, s->name_size, msg) < 0)
      r->failed = 1;
    else {
      b->stats.partials++;
      s->stats->partials++;
    }
  } else if (mdp__broker_send_client(b, &r->client, r->client_dialect,
                                MDP_CLIENT_FINAL, s->name, s->name_size,
                                msg) == 0) {
    b->stats.replies++;
    s->stats->replies++;
    mdp__broker_histogram_add(&s->stats->duration,
                         uv_now(b->loop) - r->accepted_ms);
  }
  if (cmd->command == MDP_WORKER_PARTIAL)
    return;
  w->request = NULL;
  s->n_busy--;
  mdp__tlist_remove(&w->busy);
  /* Judged by its silence again from its FINAL on (a no-op for a worker
   * that stayed in the list while busy). */
  mdp__tlist_touch(&b->liveness, &w->liveness);
  mdp__broker_request_free(b, r);
  mdp__broker_worker_idle(b, w);
}

static void on_client_request(mdp_broker_t *b, zmq_msg_t *id,
                              const mdp_cmd_t *cmd, mdp_msg_t *msg) {
  b->stats.requests++;
  if (mdp_is_mmi(cmd->service, cmd->service_size)) {
    uint8_t name[MDP_SERVICE_MAX];
    size_t size = cmd->service_size;
    memcpy(name, cmd->service, size);
    mdp_msg_drop_front(msg, cmd->body);
    b->stats.mmi_requests++;
    mdp__broker_mmi(b, id, cmd->dialect, name, size, msg);
    return;
  }
  broker_service_t *s =
      mdp__broker_service_get(b, cmd->service, cmd->service_size,
                         MDP__BROKER_CREATE_FOR_CLIENT);
  mdp_msg_drop_front(msg, cmd->body);
  int rc = s ? mdp__broker_request_submit(b, s, id, cmd->dialect, msg) : MDP_ENOBUFS;
  if (rc < 0) {
    uint64_t n = rc == MDP_ENOBUFS ? ++b->stats.dropped_queue_full : 1;
    /* A flood must not become a flood of log lines: the first drop and
     * every 1000th.  cmd->service pointed into frames drop_front closed. */
    if (mdp__broker_log_sampled(n))
      BROKER_LOG(b, MDP_LOG_WARN,
                 "request for '%.*s' dropped: %s (%llu so far)",
                 s ? (int)s->name_size : 0, s ? (const char *)s->name : "",
                 rc != MDP_ENOBUFS ? mdp_strerror(rc)
                 : s               ? "queue full"
                                   : "too many services",
                 (unsigned long long)n);
    mdp_msg_destroy(msg);
    if (s != NULL)
      mdp__broker_service_maybe_free(b, s);
  }
}

static void on_message(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  mdp__broker_handle(mdp_reactor_get_data(reactor), msg);
}

void mdp__broker_handle(mdp_broker_t *b, mdp_msg_t *msg) {
  zmq_msg_t id;
  if (mdp_msg_pop_front(msg, &id) < 0 || b->closing) {
    zmq_msg_close(&id);
    mdp_msg_destroy(msg);
    return;
  }
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, MDP_ROLE_BROKER, b->dialects, &cmd);
  broker_worker_t *w =
      mdp__map_get(&b->workers, zmq_msg_data(&id), zmq_msg_size(&id));
  if (rc == 0 && w != NULL && cmd.dialect != w->dialect) {
    /* A worker speaks the dialect of its READY: a switch is a broken or
     * forged peer, and its message is invalid. */
    b->stats.dropped_dialect++;
    rc = MDP_EDIALECT;
  }
  if (rc < 0) {
    char buf[64];
    uint64_t n = ++b->stats.dropped_invalid;
    if (mdp__broker_log_sampled(n))
      BROKER_LOG(b, MDP_LOG_DEBUG, "invalid message from %s dropped: %s "
                 "(%llu so far)",
                 mdp__broker_printable(zmq_msg_data(&id), zmq_msg_size(&id), buf,
                                  sizeof buf),
                 mdp_strerror(rc), (unsigned long long)n);
    /* RFC 18: the sender of an invalid message is treated as invalid; a
     * worker is forgotten (its request goes to another worker). */
    if (w != NULL)
      mdp__broker_worker_remove(b, w, 1, "sent an invalid message");
    mdp_msg_destroy(msg);
    zmq_msg_close(&id);
    return;
  }
  /* Any command but DISCONNECT counts as a heartbeat; a busy worker that
   * may be silent stays out of the liveness list until its FINAL. */
  if (w != NULL && cmd.command != MDP_WORKER_DISCONNECT &&
      mdp__tlist_linked(&w->liveness))
    mdp__tlist_touch(&b->liveness, &w->liveness);
  switch (cmd.command) {
  case MDP_CLIENT_REQUEST:
    on_client_request(b, &id, &cmd, msg);
    msg = NULL;
    break;
  case MDP_WORKER_READY:
    on_ready(b, &id, w, &cmd);
    break;
  case MDP_WORKER_PARTIAL:
  case MDP_WORKER_FINAL:
    on_reply(b, &id, w, &cmd, msg);
    msg = NULL;
    break;
  case MDP_WORKER_HEARTBEAT:
    if (w == NULL)
      protocol_error(b, &id, NULL, cmd.dialect,
                     "HEARTBEAT from an unknown worker");
    break;
  case MDP_WORKER_DISCONNECT:
    if (w != NULL)
      mdp__broker_worker_remove(b, w, 0, "sent DISCONNECT");
    break;
  default:
    b->stats.dropped_invalid++;
    break;
  }
  zmq_msg_close(&id);
  mdp_msg_destroy(msg);
}

/* A message the reactor accepted could not be sent after all (its peer has
 * gone).  It comes from the loop, a turn after the send, so the identity
 * may name a new worker by now: nobody is removed here.  A gone worker is
 * found by the next heartbeat to it (within an interval), which removes it
 * and re-dispatches its request. */
static void on_send_failed(mdp_reactor_t *reactor, mdp_msg_t *msg, int err) {
  mdp_broker_t *b = mdp_reactor_get_data(reactor);
  b->stats.dropped_unroutable++;
  (void)err;
  mdp_msg_destroy(msg);
}

/* ---- timers ----------------------------------------------------------- */

static void on_worker_silent(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = mdp__container_of(list, mdp_broker_t, liveness);
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, liveness);
  b->stats.workers_expired++;
  /* RFC 18: a peer taken for disconnected is sent nothing more. */
  mdp__broker_worker_remove(b, w, b->opts.disconnect_expired,
                       "silent for too long");
}

static void on_heartbeat_due(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = mdp__container_of(list, mdp_broker_t, heartbeat);
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, heartbeat);
  int rc = mdp__broker_send_worker(b, w, MDP_WORKER_HEARTBEAT, NULL, NULL);
  if (rc == MDP_EHOSTUNREACH) {
    b->stats.workers_unreachable++;
    mdp__broker_worker_remove(b, w, 0, "unreachable");
  } else if (rc < 0) {
    /* A full pipe (the worker reads nothing) or no memory: try again next
     * interval; a worker that reads nothing also sends nothing, and its
     * liveness runs out. */
    mdp__tlist_touch(&b->heartbeat, &w->heartbeat);
  }
}

/* Both busy lists' callback. */
static void on_busy_timeout(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = list->timer.data;
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, busy);
  b->stats.workers_expired++;
  mdp__broker_worker_remove(b, w, 1, "busy for longer than the busy timeout");
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
      free(cq);
    }
    free(s);
  }
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

/* The ROUTER's options: the broker's own, then the caller's first-class
 * ones (0 or -1 where the default is to leave libzmq's). */
static int set_socket_options(void *socket, const mdp_broker_options_t *o) {
  int one = 1, linger = BROKER_LINGER_MS, ipv6 = o->ipv6 ? 1 : 0;
  int64_t maxmsg = o->max_msg_size;
  if (zmq_setsockopt(socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
      zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger) ||
      zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
      zmq_setsockopt(socket, ZMQ_IPV6, &ipv6, sizeof ipv6))
    return -1;
  struct {
    int option, value;
  } ints[] = {{ZMQ_SNDHWM, o->sndhwm < 0 ? 0 : o->sndhwm},
              {ZMQ_RCVHWM, o->rcvhwm < 0 ? 0 : o->rcvhwm},
              {ZMQ_TCP_KEEPALIVE, o->tcp_keepalive},
              {ZMQ_TCP_KEEPALIVE_IDLE, o->tcp_keepalive_idle},
              {ZMQ_TCP_KEEPALIVE_INTVL, o->tcp_keepalive_intvl},
              {ZMQ_TCP_KEEPALIVE_CNT, o->tcp_keepalive_cnt}};
  int given[] = {o->sndhwm != 0, o->rcvhwm != 0, o->tcp_keepalive != -1,
                 o->tcp_keepalive_idle != -1, o->tcp_keepalive_intvl != -1,
                 o->tcp_keepalive_cnt != -1};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (given[i] && zmq_setsockopt(socket, ints[i].option, &ints[i].value,
                                   sizeof ints[i].value))
      return -1;
  return 0;
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
         o->max_msg_size >= -1 && o->sndhwm >= -1 && o->rcvhwm >= -1 &&
         o->tcp_keepalive >= -1 && o->tcp_keepalive <= 1;
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
  if (set_socket_options(b->socket, opts) < 0 ||
      (opts->socket_setup != NULL &&
       opts->socket_setup(b->socket, opts->socket_setup_data) != 0)) {
    zmq_close(b->socket);
    free(b);
    return MDP_EZMQ;
  }
  int rc = 0;
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
  rc = mdp_reactor_new(loop, b->socket, 1, on_message, &b->reactor);
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
  mdp_reactor_set_fail_cb(b->reactor, on_send_failed);
  mdp__map_init(&b->services);
  mdp__map_init(&b->workers);
  mdp__map_init(&b->client_queues);
  mdp__broker_metrics_init(b);
  /* uv_timer_init cannot fail on a valid loop. */
  uint64_t liveness_ms = opts->heartbeat_interval_ms * opts->heartbeat_liveness;
  mdp__tlist_init(loop, &b->liveness, liveness_ms, on_worker_silent);
  mdp__tlist_init(loop, &b->heartbeat, opts->heartbeat_interval_ms,
                 on_heartbeat_due);
  mdp__tlist_init(loop, &b->busy, opts->busy_timeout_ms, on_busy_timeout);
  mdp__tlist_init(loop, &b->silent_busy, opts->silent_busy_timeout_ms,
                 on_busy_timeout);
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
   * interval early (the worker only needs one per interval); expiries may
   * come up to a tenth of an interval (at most 1 s for the others) late. */
  b->heartbeat.early = opts->heartbeat_interval_ms / 10;
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
  if (endpoint == NULL)
    return MDP_EINVAL;
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
  rc = zmq_bind(b->socket, endpoint);
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
    if (mdp__broker_send_worker(b, w, MDP_WORKER_DISCONNECT, NULL, NULL) == 0)
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
