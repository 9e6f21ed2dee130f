/* The broker's per-service figures and histograms (docs/metrics.md).
 *
 * Each service points at one broker_svc_stats_t: its own, created at the
 * first READY for it while fewer than opts.metrics_max_services exist, or
 * the broker's `other_stats`.  Entries live as long as the broker (their
 * counters must not restart when a service's last worker leaves), so the
 * memory is bounded by the option.  Per message the cost is a few
 * increments and, for the two histograms, one uv_now() and a scan of the
 * bucket bounds; nothing is allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

const uint32_t mdp_broker_histogram_bounds_ms[MDP_BROKER_HISTOGRAM_BUCKETS] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000,
    60000, 300000};

void mdp__broker_metrics_init(mdp_broker_t *b) {
  mdp__map_init(&b->svc_stats);
  b->svc_stats_head = NULL;
  b->svc_stats_tail = &b->svc_stats_head;
  b->n_svc_stats = 0;
  memset(&b->other_stats, 0, sizeof b->other_stats);
  b->other_stats.name = (const uint8_t *)MDP_BROKER_OTHER_SERVICE;
  b->other_stats.name_size = sizeof MDP_BROKER_OTHER_SERVICE - 1;
  memset(&b->queue_wait, 0, sizeof b->queue_wait);
}

void mdp__broker_metrics_free(mdp_broker_t *b) {
  broker_svc_stats_t *e = b->svc_stats_head;
  while (e != NULL) {
    broker_svc_stats_t *next = e->next;
    free(e);
    e = next;
  }
  b->svc_stats_head = NULL;
  b->svc_stats_tail = &b->svc_stats_head;
  b->n_svc_stats = 0;
  mdp__map_free(&b->svc_stats);
}

static int is_other_name(const uint8_t *name, size_t size) {
  return size == sizeof MDP_BROKER_OTHER_SERVICE - 1 &&
         memcmp(name, MDP_BROKER_OTHER_SERVICE, size) == 0;
}

broker_svc_stats_t *mdp__broker_svc_stats_for(mdp_broker_t *b,
                                         const broker_service_t *s,
                                         int for_worker) {
  broker_svc_stats_t *e = mdp__map_get(&b->svc_stats, s->name, s->name_size);
  if (e != NULL)
    return e;
  /* Clients may name any service: only a worker's READY earns an entry, so
   * made-up names cannot take the room of real services. */
  if (!for_worker || b->n_svc_stats >= b->opts.metrics_max_services ||
      is_other_name(s->name, s->name_size))
    return &b->other_stats;
  e = calloc(1, sizeof *e + s->name_size);
  if (e == NULL)
    return &b->other_stats; /* out of memory: counted with the rest */
  uint8_t *name = (uint8_t *)(e + 1);
  memcpy(name, s->name, s->name_size);
  e->name = name;
  e->name_size = s->name_size;
  if (mdp__map_put(&b->svc_stats, e->name, e->name_size, e) < 0) {
    free(e);
    return &b->other_stats;
  }
  e->index = b->n_svc_stats;
  *b->svc_stats_tail = e;
  b->svc_stats_tail = &e->next;
  b->n_svc_stats++;
  return e;
}

static void fill_info(mdp_broker_service_info_t *info,
                      const broker_svc_stats_t *e) {
  info->name = e->name;
  info->name_size = e->name_size;
  info->requests = e->requests;
  info->replies = e->replies;
  info->partials = e->partials;
  info->request_duration = e->duration;
}

int mdp_broker_foreach_service(const mdp_broker_t *b, mdp_broker_service_cb cb,
                               void *data) {
  if (cb == NULL)
    return MDP_EINVAL;
  if (b->closing)
    return MDP_ECLOSING;
  /* Gauges are summed from the live services into a scratch array indexed
   * like the entries: one pass over the services, one over the entries.
   * Allocated before any callback, so a failure calls none. */
  size_t n = b->n_svc_stats;
  mdp_broker_service_info_t *infos = calloc(n + 1, sizeof *infos);
  if (infos == NULL)
    return MDP_ENOMEM;
  size_t i = 0;
  for (broker_svc_stats_t *e = b->svc_stats_head; e != NULL; e = e->next)
    fill_info(&infos[i++], e);
  fill_info(&infos[n], &b->other_stats);
  infos[n].other = 1;
  for (size_t k = 0; k < b->services.cap; k++) {
    if (b->services.slots[k].hash == 0)
      continue;
    const broker_service_t *s = b->services.slots[k].value;
    mdp_broker_service_info_t *info =
        s->stats == &b->other_stats ? &infos[n] : &infos[s->stats->index];
    info->workers_idle += s->n_idle;
    info->workers_busy += s->n_busy;
    info->queued += s->queued;
  }
  int rc = 0;
  for (i = 0; i <= n && rc == 0; i++)
    rc = cb(&infos[i], data);
  free(infos);
  return rc;
}

void mdp_broker_get_queue_wait(const mdp_broker_t *b,
                               mdp_broker_histogram_t *out) {
  *out = b->queue_wait;
}
