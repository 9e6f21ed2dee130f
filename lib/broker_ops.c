/* Run-time changes to a running broker, for an operator's reload (SIGHUP
 * in mdp-broker): the limits, the log level, the CURVE allow-list.  Kept
 * apart from the message paths: nothing here runs per message. */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker_internal.h"
#include "zap.h"

int mdp_broker_set_limits(mdp_broker_t *b, const mdp_broker_options_t *o) {
  if (b == NULL || o == NULL)
    return MDP_EINVAL;
  if (b->closing)
    return MDP_ECLOSING;
  /* Each is read where it is enforced (b->opts), so the new value holds
   * from the next message on; what is held already (queued requests over
   * a lowered max_queue, workers over max_workers_per_service) stays, as
   * a running broker cannot un-accept it. */
  b->opts.max_queue = o->max_queue;
  b->opts.max_queued_total = o->max_queued_total;
  b->opts.max_queue_per_client = o->max_queue_per_client;
  b->opts.max_queued_bytes = o->max_queued_bytes;
  b->opts.max_services = o->max_services;
  b->opts.max_workers_per_service = o->max_workers_per_service;
  b->opts.max_redispatch = o->max_redispatch;
  b->opts.max_mmi_reply_bytes = o->max_mmi_reply_bytes;
  b->opts.disconnect_expired = o->disconnect_expired;
  b->opts.max_frames = o->max_frames;
  /* The limit is on what a peer sends; the ROUTER adds the identity. */
  mdp_reactor_set_max_frames(b->reactor,
                             o->max_frames ? o->max_frames + 1 : 0);
  return 0;
}

void mdp_broker_set_log_level(mdp_broker_t *b, mdp_log_level_t level) {
  if (b != NULL)
    b->opts.log_level = level;
}

int mdp_broker_reload_curve_allow(mdp_broker_t *b,
                                  const mdp_broker_options_t *o) {
  if (b == NULL || o == NULL)
    return MDP_EINVAL;
  if (b->closing)
    return MDP_ECLOSING;
  if (b->zap == NULL)
    return MDP_ENOTSUP;
  return mdp__zap_reload(b->zap, o);
}

/* The oldest accepted_ms at the head of a list of queued requests. */
static uint64_t oldest_in(const mdp__list_t *l, uint64_t oldest) {
  const mdp__list_t *head = mdp__list_head(l);
  if (head == NULL)
    return oldest;
  const broker_request_t *r =
      mdp__container_of(head, broker_request_t, queue_link);
  return r->accepted_ms < oldest ? r->accepted_ms : oldest;
}

int mdp_broker_oldest_queued_ms(const mdp_broker_t *b, const void *name,
                                size_t size, uint64_t *age_ms) {
  if (b == NULL || age_ms == NULL || (name == NULL && size > 0))
    return MDP_EINVAL;
  *age_ms = 0;
  const broker_service_t *s = mdp__map_get(&b->services, name, size);
  if (s == NULL)
    return MDP_EINVAL;
  /* Each client queue and the retry queue are FIFO: their heads are the
   * candidates, so the cost is the number of clients queueing. */
  uint64_t oldest = UINT64_MAX;
  oldest = oldest_in(&s->retry_queue, oldest);
  for (const mdp__list_t *n = s->client_ring.next; n != &s->client_ring;
       n = n->next) {
    const broker_client_queue_t *q =
        mdp__container_of(n, broker_client_queue_t, ring_link);
    oldest = oldest_in(&q->requests, oldest);
  }
  uint64_t now = uv_now(b->loop);
  if (oldest != UINT64_MAX && now > oldest)
    *age_ms = now - oldest;
  return 0;
}

size_t mdp_broker_waiting_clients(const mdp_broker_t *b) {
  return b == NULL ? 0 : b->client_queues.count;
}

void mdp_broker_set_access_cb(mdp_broker_t *b, mdp_broker_access_cb cb,
                              void *data) {
  if (b == NULL)
    return;
  b->access_cb = cb;
  b->access_data = data;
}

void mdp_broker_get_denied(const mdp_broker_t *b, uint64_t *requests,
                           uint64_t *serves) {
  if (requests != NULL)
    *requests = b ? b->denied_requests : 0;
  if (serves != NULL)
    *serves = b ? b->denied_serves : 0;
}

int mdp__broker_access(mdp_broker_t *b, const zmq_msg_t *id,
                       mdp_broker_access_t role, const uint8_t *service,
                       size_t service_size, int count) {
  if (b->access_cb == NULL)
    return 1;
  /* The ZAP handler's user id travels with every frame of a message from
   * an authenticated connection; libzmq gives NULL (EINVAL) without. */
  const char *user = zmq_msg_gets((zmq_msg_t *)id, "User-Id");
  if (b->access_cb(b->access_data, role, service, service_size, user))
    return 1;
  if (!count)
    return 0;
  uint64_t n = role == MDP_BROKER_ACCESS_SERVE ? ++b->denied_serves
                                               : ++b->denied_requests;
  /* One line for the first denial and every 1000th of each role: a
   * denied peer that retries must not flood the log. */
  if (mdp__broker_log_sampled(n)) {
    char svc[MDP__BROKER_NAME_TEXT];
    mdp_log_field_t fields[] = {
        {"service", mdp__broker_printable(service, service_size, svc,
                                          sizeof svc)},
        {"key", user != NULL ? user : "(none)"}};
    BROKER_LOG_FIELDS(b, MDP_LOG_WARN, fields,
                      "%s for '%s' from key %s denied by the access list "
                      "(%llu %s denied so far)",
                      role == MDP_BROKER_ACCESS_SERVE ? "READY" : "request",
                      fields[0].value, fields[1].value, (unsigned long long)n,
                      role == MDP_BROKER_ACCESS_SERVE ? "READYs" : "requests");
  }
  return 0;
}

int mdp_broker_recheck_access(mdp_broker_t *b) {
  if (b == NULL)
    return MDP_EINVAL;
  if (b->access_cb == NULL || b->closing || b->workers.count == 0)
    return 0;
  /* The denied workers' identities are copied out first: the map must not
   * change while it is walked, and removing one worker dispatches queued
   * requests, which may lose others, so each is looked up again. */
  broker_worker_t **denied = malloc(b->workers.count * sizeof *denied);
  if (denied == NULL)
    return MDP_ENOMEM;
  size_t n = 0, bytes = 0;
  for (size_t i = 0; i < b->workers.cap && n < b->workers.count; i++) {
    broker_worker_t *w = b->workers.slots[i].hash ? b->workers.slots[i].value
                                                  : NULL;
    if (w != NULL &&
        !b->access_cb(b->access_data, MDP_BROKER_ACCESS_SERVE,
                      w->service->name, w->service->name_size, w->user)) {
      denied[n++] = w;
      bytes += sizeof(size_t) + w->id_size;
    }
  }
  uint8_t *ids = n > 0 ? malloc(bytes) : NULL;
  if (n > 0 && ids == NULL) {
    free(denied);
    return MDP_ENOMEM;
  }
  uint8_t *end = ids;
  for (size_t i = 0; i < n; i++) {
    memcpy(end, &denied[i]->id_size, sizeof(size_t));
    memcpy(end + sizeof(size_t), denied[i]->id, denied[i]->id_size);
    end += sizeof(size_t) + denied[i]->id_size;
  }
  free(denied);
  int removed = 0;
  for (uint8_t *q = ids; q < end;) {
    size_t len;
    memcpy(&len, q, sizeof len);
    broker_worker_t *w = mdp__map_get(&b->workers, q + sizeof len, len);
    q += sizeof len + len;
    if (w == NULL)
      continue;
    b->denied_serves++;
    removed++;
    mdp__broker_worker_remove(b, w, 1, "no longer allowed by the access list");
  }
  free(ids);
  return removed;
}

int mdp_broker_monitor(mdp_broker_t *b, const char *endpoint, int events) {
  if (b == NULL)
    return MDP_EINVAL;
  if (b->closing)
    return MDP_ECLOSING;
  return zmq_socket_monitor(b->socket, endpoint, events) == 0 ? 0 : MDP_EZMQ;
}
