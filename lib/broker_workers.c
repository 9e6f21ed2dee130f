/* The broker's workers: registration (READY), becoming idle, removal (with
 * the re-dispatch or drop of the request a removed worker held), and the
 * timers that judge them: silence, heartbeats due, the busy bounds. */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

void mdp__broker_on_ready(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                     const mdp_cmd_t *cmd) {
  if (w != NULL) {
    mdp__broker_protocol_error(b, id, w, cmd->dialect, "READY from a registered worker");
    return;
  }
  if (mdp_is_mmi(cmd->service, cmd->service_size)) {
    mdp__broker_protocol_error(b, id, NULL, cmd->dialect, "READY for an mmi.* service");
    return;
  }
  size_t id_size = zmq_msg_size(id);
  broker_service_t *s =
      mdp__broker_service_get(b, cmd->service, cmd->service_size,
                         MDP__BROKER_CREATE_FOR_WORKER);
  if (s == NULL || (b->opts.max_workers_per_service &&
                    s->n_idle + s->n_busy >= b->opts.max_workers_per_service)) {
    b->stats.workers_refused++;
    mdp__broker_protocol_error(b, id, NULL, cmd->dialect,
                   s ? "too many workers for the service"
                     : "too many services");
    return;
  }
  /* The ZAP user id (CURVE: the key's name) is kept for the access list's
   * later changes (mdp_broker_recheck_access): libzmq gives it only with
   * the connection's messages. */
  const char *user = zmq_msg_gets(id, "User-Id");
  size_t user_size = user != NULL ? strlen(user) + 1 : 0;
  w = malloc(sizeof *w + id_size + user_size);
  if (w != NULL) {
    memcpy(w->id, zmq_msg_data(id), id_size);
    w->user = user != NULL ? memcpy(w->id + id_size, user, user_size) : NULL;
  }
  if (w == NULL || mdp__map_put(&b->workers, w->id, id_size, w) < 0) {
    /* Out of memory: refuse the worker; it will try again. */
    free(w);
    mdp__broker_service_maybe_free(b, s);
    mdp__broker_send_disconnect(b, id, cmd->dialect);
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
  uint64_t quiet;
  if (b->opts.log_cb != NULL && b->opts.log_level >= MDP_LOG_INFO &&
      mdp__broker_log_rate(b, &b->log_ready, &quiet)) {
    char buf[64], svc[MDP__BROKER_NAME_TEXT], more[64];
    mdp_log_field_t fields[] = {
        {"service", mdp__broker_printable(s->name, s->name_size, svc,
                                          sizeof svc)},
        {"worker", mdp__broker_printable(w->id, id_size, buf, sizeof buf)},
        {"dialect", mdp_dialect_name(w->dialect)}};
    BROKER_LOG_FIELDS(b, MDP_LOG_INFO, fields,
                      "worker %s ready for service '%s' (%s)%s",
                      fields[1].value, fields[0].value, fields[2].value,
                      mdp__broker_suppressed_text(quiet, more, sizeof more));
  }
  mdp__broker_worker_idle(b, w);
}

void mdp__broker_worker_unidle(mdp_broker_t *b, broker_worker_t *w) {
  mdp__list_remove(&w->idle_link);
  w->service->n_idle--;
  b->stats.workers_idle--;
}

void mdp__broker_worker_idle(mdp_broker_t *b, broker_worker_t *w) {
  broker_service_t *s = w->service;
  mdp__list_push_back(&s->idle_workers, &w->idle_link);
  s->n_idle++;
  b->stats.workers_idle++;
  mdp__broker_dispatch(b, s);
}

/* Forgets `w`; returns its request if it held one (not yet re-queued). */
broker_request_t *mdp__broker_worker_detach(mdp_broker_t *b, broker_worker_t *w,
                                       int disconnect, const char *why) {
  broker_service_t *s = w->service;
  uint64_t quiet;
  if (b->opts.log_cb != NULL && b->opts.log_level >= MDP_LOG_INFO &&
      mdp__broker_log_rate(b, &b->log_leaves, &quiet)) {
    char id[64], svc[MDP__BROKER_NAME_TEXT], more[64];
    mdp_log_field_t fields[] = {
        {"service", mdp__broker_printable(s->name, s->name_size, svc,
                                          sizeof svc)},
        {"worker", mdp__broker_printable(w->id, w->id_size, id, sizeof id)},
        {"reason", why}};
    BROKER_LOG_FIELDS(b, MDP_LOG_INFO, fields,
                      "worker %s of service '%s' leaves: %s%s",
                      fields[1].value, fields[0].value, why,
                      mdp__broker_suppressed_text(quiet, more, sizeof more));
  }
  if (disconnect && !b->closing) {
    if (mdp__broker_send_worker(b, w, MDP_WORKER_DISCONNECT, NULL, 0,
                                NULL) == 0)
      b->stats.disconnects_sent++;
  }
  mdp__map_del(&b->workers, w->id, w->id_size);
  mdp__tlist_remove(&w->liveness);
  mdp__tlist_remove(&w->heartbeat);
  mdp__tlist_remove(&w->busy);
  if (mdp__list_linked(&w->idle_link))
    mdp__broker_worker_unidle(b, w);
  broker_request_t *r = w->request;
  if (r != NULL)
    s->n_busy--;
  b->stats.workers--;
  free(w);
  return r;
}

/* A request whose worker is gone: re-dispatch it if no reply part reached
 * the client yet and it has retries left, else drop it. */
static void redispatch_or_drop(mdp_broker_t *b, broker_request_t *r) {
  if (r->partial_sent || r->failed ||
      r->dispatches > b->opts.max_redispatch ||
      mdp__broker_request_restore(r) != 0) {
    b->stats.dropped_worker_lost++;
    uint64_t quiet;
    if (b->opts.log_cb != NULL && b->opts.log_level >= MDP_LOG_WARN &&
        mdp__broker_log_rate(b, &b->log_lost, &quiet)) {
      char more[64];
      BROKER_LOG(b, MDP_LOG_WARN,
                 "request for '%.*s' lost with its worker (%s)%s",
                 (int)r->service->name_size, (const char *)r->service->name,
                 r->partial_sent ? "a partial reply was already sent"
                                 : "no re-dispatch left",
                 mdp__broker_suppressed_text(quiet, more, sizeof more));
    }
    mdp__broker_request_free(b, r);
    return;
  }
  b->stats.redispatched++;
  /* Parts collected for an MDP/0.1 client never reached it: the next
   * worker starts the reply afresh. */
  mdp__broker_collected_release(b, r);
  r->failed = 0;
  mdp__broker_requeue_front(b, r);
}

void mdp__broker_worker_remove(mdp_broker_t *b, broker_worker_t *w, int disconnect,
                          const char *why) {
  broker_service_t *s = w->service;
  broker_request_t *r = mdp__broker_worker_detach(b, w, disconnect, why);
  if (r != NULL)
    redispatch_or_drop(b, r);
  mdp__broker_dispatch(b, s);
  mdp__broker_service_maybe_free(b, s);
}

void mdp__broker_on_worker_silent(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = mdp__container_of(list, mdp_broker_t, liveness);
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, liveness);
  b->stats.workers_expired++;
  /* RFC 18: a peer taken for disconnected is sent nothing more. */
  mdp__broker_worker_remove(b, w, b->opts.disconnect_expired,
                       "silent for too long");
}

void mdp__broker_on_heartbeat_due(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = mdp__container_of(list, mdp_broker_t, heartbeat);
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, heartbeat);
  int rc = mdp__broker_send_worker(b, w, MDP_WORKER_HEARTBEAT, NULL, 0, NULL);
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
void mdp__broker_on_busy_timeout(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = list->timer.data;
  broker_worker_t *w = mdp__container_of(node, broker_worker_t, busy);
  b->stats.workers_expired++;
  mdp__broker_worker_remove(b, w, 1, "busy for longer than the busy timeout");
}
