/* Run-time changes to a running broker, for an operator's reload (SIGHUP
 * in mdp-broker): the limits, the log level, the CURVE allow-list.  Kept
 * apart from the message paths: nothing here runs per message. */
#include <string.h>

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
