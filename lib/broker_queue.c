/* The broker's services, queues and dispatch (internal): request
 * records, their queues and expiry, and sending them to idle workers.
 *
 * Fairness: each service keeps one FIFO per client that has requests queued,
 * in a ring; dispatch takes the first request of the client at the front of
 * the ring and moves that client to the back.  A client flooding a service
 * therefore gets one request in turn with every other client, whatever the
 * length of its own queue.  Requests whose worker died go to a retry queue
 * served before the ring, since they are the oldest.
 */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "msg_internal.h"

/* Queued requests (all services) past which an emptied queue gives memory
 * back to the system. */
#define BROKER_TRIM_QUEUED 1000

broker_service_t *mdp__broker_service_get(mdp_broker_t *b, const void *name,
                                     size_t size, int create) {
  /* Most requests in a row name the same service: one compare, no hash. */
  broker_service_t *s = b->last_service;
  if (s != NULL && s->name_size == size && memcmp(s->name, name, size) == 0)
    return s;
  s = mdp__map_get(&b->services, name, size);
  if (s != NULL)
    b->last_service = s;
  if (s != NULL || !create)
    return s;
  /* Clients may create at most half the services (a request for a service
   * no worker offers yet), so requests for made-up names cannot take the
   * room that workers need. */
  size_t max = b->opts.max_services;
  if (max && create == MDP__BROKER_CREATE_FOR_CLIENT)
    max = max / 2 ? max / 2 : 1;
  if (max && b->stats.services >= max)
    return NULL;
  s = malloc(sizeof *s + size);
  if (s == NULL)
    return NULL;
  mdp__list_init(&s->idle_workers);
  mdp__list_init(&s->retry_queue);
  mdp__list_init(&s->client_ring);
  s->n_idle = s->n_busy = s->queued = 0;
  s->name_size = size;
  memcpy(s->name, name, size);
  if (mdp__map_put(&b->services, s->name, size, s) < 0) {
    free(s);
    return NULL;
  }
  s->stats = mdp__broker_svc_stats_for(b, s, create == MDP__BROKER_CREATE_FOR_WORKER);
  b->stats.services++;
  return s;
}

void mdp__broker_service_maybe_free(mdp_broker_t *b, broker_service_t *s) {
  if (s->n_idle || s->n_busy || s->queued || b->closing)
    return;
  mdp__map_del(&b->services, s->name, s->name_size);
  b->stats.services--;
  if (b->last_service == s)
    b->last_service = NULL;
  free(s);
}

/* Client queues are recycled through a short free list too: a queue
 * lives only while its client has requests waiting, so under load one is
 * made and freed per request.  Every queue is allocated for the largest
 * key (service pointer + MDP_ADDRESS_MAX), so any of them can be reused. */
#define CLIENT_QUEUE_CACHE 64
#define CLIENT_QUEUE_SIZE                                                      \
  (sizeof(broker_client_queue_t) + sizeof(broker_service_t *) + MDP_ADDRESS_MAX)

/* An uninitialised client queue of CLIENT_QUEUE_SIZE bytes, the caller's
 * until it is released, or NULL. */
static broker_client_queue_t *client_queue_alloc(mdp_broker_t *b) {
  broker_client_queue_t *cq = b->free_queues;
  if (cq == NULL)
    return malloc(CLIENT_QUEUE_SIZE);
  b->free_queues = *(broker_client_queue_t **)cq;
  b->n_free_queues--;
  return cq;
}

/* Frees `cq` (out of every list and map) or keeps it for reuse. */
void mdp__broker_client_queue_release(mdp_broker_t *b,
                                      broker_client_queue_t *cq) {
  if (b->n_free_queues >= CLIENT_QUEUE_CACHE || b->closing) {
    free(cq);
    return;
  }
  *(broker_client_queue_t **)cq = b->free_queues;
  b->free_queues = cq;
  b->n_free_queues++;
}

/* The client queue of (service, client identity), created on demand. */
static broker_client_queue_t *client_queue_get(mdp_broker_t *b,
                                               broker_service_t *s,
                                               const zmq_msg_t *client) {
  size_t id_size = zmq_msg_size((zmq_msg_t *)client);
  uint8_t key[sizeof s + MDP_ADDRESS_MAX];
  if (id_size > MDP_ADDRESS_MAX)
    return NULL;
  memcpy(key, &s, sizeof s);
  memcpy(key + sizeof s, zmq_msg_data((zmq_msg_t *)client), id_size);
  size_t key_size = sizeof s + id_size;
  broker_client_queue_t *cq = mdp__map_get(&b->client_queues, key, key_size);
  if (cq != NULL)
    return cq;
  cq = client_queue_alloc(b);
  if (cq == NULL)
    return NULL;
  mdp__list_init(&cq->ring_link);
  mdp__list_init(&cq->requests);
  cq->count = 0;
  cq->service = s;
  cq->key_size = key_size;
  memcpy(cq->key, key, key_size);
  if (mdp__map_put(&b->client_queues, cq->key, key_size, cq) < 0) {
    mdp__broker_client_queue_release(b, cq);
    return NULL;
  }
  return cq;
}

static void client_queue_free(mdp_broker_t *b, broker_client_queue_t *cq) {
  mdp__list_remove(&cq->ring_link);
  mdp__map_del(&b->client_queues, cq->key, cq->key_size);
  mdp__broker_client_queue_release(b, cq);
}

/* Takes `r` out of whatever queue holds it (not out of the service). */
static void unqueue(mdp_broker_t *b, broker_request_t *r) {
  broker_client_queue_t *cq = r->client_queue;
  mdp__list_remove(&r->queue_link);
  mdp__tlist_remove(&r->expiry);
  r->client_queue = NULL;
  r->service->queued--;
  b->stats.queued--;
  b->stats.queued_bytes -= r->cost;
  if (cq != NULL)
    cq->count--;
  if (b->stats.queued == 0 && b->trim_armed) {
    /* After a flood, hand the freed requests back so the broker's memory
     * returns to near its start; at most once per flood. */
    b->trim_armed = 0;
    mdp__broker_trim_soon(b);
  }
  if (cq != NULL && mdp__list_empty(&cq->requests))
    client_queue_free(b, cq);
}

/* Request structs are recycled through a short free list, so the steady
 * state allocates none per request. */
#define REQUEST_CACHE 256

/* An uninitialised request struct, the caller's until
 * mdp__broker_request_free, or NULL. */
static broker_request_t *request_alloc(mdp_broker_t *b) {
  broker_request_t *r = b->free_requests;
  if (r == NULL)
    return malloc(sizeof *r);
  b->free_requests = *(broker_request_t **)r;
  b->n_free_requests--;
  return r;
}

#define REQUEST_KEPT_FRAMES (sizeof(((broker_request_t *)0)->kept) / \
                             sizeof(zmq_msg_t))

static void kept_close(broker_request_t *r) {
  for (size_t i = 0; i < r->n_kept; i++)
    zmq_msg_close(&r->kept[i]);
  r->n_kept = 0;
}

/* Copies (by reference count) the frames of `body` into r->kept: 1, or 0
 * (too many frames, or a copy failed) with nothing kept. */
static int kept_copy(broker_request_t *r, mdp_msg_t *body) {
  size_t n = mdp__msg_size(body);
  if (n > REQUEST_KEPT_FRAMES)
    return 0;
  for (size_t i = 0; i < n; i++) {
    zmq_msg_init(&r->kept[i]);
    if (zmq_msg_copy(&r->kept[i], mdp__msg_at(body, i)) != 0) {
      zmq_msg_close(&r->kept[i]);
      r->n_kept = i;
      kept_close(r);
      return 0;
    }
  }
  r->n_kept = n;
  return 1;
}

void mdp__broker_request_free(mdp_broker_t *b, broker_request_t *r) {
  if (!r->client_sent)
    zmq_msg_close(&r->client);
  if (r->has_service_frame)
    zmq_msg_close(&r->service_frame);
  mdp_msg_destroy(r->body);
  kept_close(r);
  if (r->collected != NULL || r->collected_bytes != 0)
    mdp__broker_collected_release(b, r);
  if (b->n_free_requests >= REQUEST_CACHE || b->closing) {
    free(r);
    return;
  }
  *(broker_request_t **)r = b->free_requests;
  b->free_requests = r;
  b->n_free_requests++;
}

void mdp__broker_request_cache_free(mdp_broker_t *b) {
  while (b->free_requests != NULL) {
    broker_request_t *r = b->free_requests;
    b->free_requests = *(broker_request_t **)r;
    free(r);
  }
  b->n_free_requests = 0;
  while (b->free_queues != NULL) {
    broker_client_queue_t *cq = b->free_queues;
    b->free_queues = *(broker_client_queue_t **)cq;
    free(cq);
  }
  b->n_free_queues = 0;
}

static int dispatch_to(mdp_broker_t *b, broker_worker_t *w,
                       broker_request_t *r);

int mdp__broker_request_submit(mdp_broker_t *b, broker_service_t *s,
                               zmq_msg_t *client, size_t client_size,
                               zmq_msg_t *service_frame, mdp_dialect_t dialect,
                               mdp_msg_t *body) {
  /* Fast path: nothing waits and a worker is idle, so the request goes
   * straight out with no client queue to create and tear down. */
  int direct = s->queued == 0 && s->n_idle > 0 && !b->closing;
  /* What holding the request costs: its bytes, plus a frame's bookkeeping
   * per frame (so empty frames are not free), plus the request itself. */
  size_t cost = direct ? 0
                       : mdp_msg_bytes(body) +
                             mdp_msg_size(body) * sizeof(zmq_msg_t) +
                             sizeof(broker_request_t);
  if (!direct &&
      ((b->opts.max_queue && s->queued >= b->opts.max_queue) ||
       (b->opts.max_queued_total &&
        b->stats.queued >= b->opts.max_queued_total) ||
       (b->opts.max_queued_bytes &&
        b->stats.queued_bytes + cost > b->opts.max_queued_bytes)))
    return MDP_ENOBUFS;
  broker_client_queue_t *cq = direct ? NULL : client_queue_get(b, s, client);
  /* One client may hold only its share of a service's queue, so a flood
   * from one client cannot lock the others out. */
  if (cq != NULL && b->opts.max_queue_per_client &&
      cq->count >= b->opts.max_queue_per_client)
    return MDP_ENOBUFS; /* cq is not empty: it stays */
  broker_request_t *r = direct || cq ? request_alloc(b) : NULL;
  if (r == NULL) {
    if (cq != NULL && mdp__list_empty(&cq->requests))
      client_queue_free(b, cq);
    return MDP_ENOMEM;
  }
  r->cost = cost;
  mdp__list_init(&r->queue_link);
  mdp__tnode_init(&r->expiry);
  /* Taken by relocation, as zmq_msg_move does, minus closing an empty
   * destination (msg_internal.h) and re-initialising the source, which
   * the caller then leaves alone. */
  r->client = *client;
  r->client_sent = 0;
  r->client_id = zmq_msg_data(&r->client);
  r->client_id_size = client_size;
  r->service_frame = *service_frame;
  r->has_service_frame = 1;
  r->client_dialect = dialect;
  r->body = body;
  r->n_kept = 0;
  r->service = s;
  r->dispatches = 0;
  r->accepted_ms = uv_now(b->loop);
  s->stats->requests++;
  r->partial_sent = 0;
  r->collected = NULL;
  r->collected_bytes = 0;
  r->failed = 0;
  r->client_queue = cq;
  if (direct) {
    broker_worker_t *w = mdp__container_of(mdp__list_head(&s->idle_workers),
                                          broker_worker_t, idle_link);
    mdp__broker_worker_unidle(b, w);
    if (dispatch_to(b, w, r) < 0)
      mdp__broker_dispatch(b, s); /* `r` is in the retry queue: the slow path */
    return 0;
  }
  mdp__list_push_back(&cq->requests, &r->queue_link);
  if (!mdp__list_linked(&cq->ring_link))
    mdp__list_push_back(&s->client_ring, &cq->ring_link);
  cq->count++;
  s->queued++;
  b->stats.queued++;
  b->stats.queued_bytes += cost;
  if (b->stats.queued >= BROKER_TRIM_QUEUED)
    b->trim_armed = 1;
  mdp__tlist_touch(&b->expiry, &r->expiry);
  mdp__broker_dispatch(b, s);
  return 0;
}

/* Puts a request that must be served next at the front of the retry queue. */
void mdp__broker_requeue_front(mdp_broker_t *b, broker_request_t *r) {
  broker_service_t *s = r->service;
  mdp__list_push_front(&s->retry_queue, &r->queue_link);
  if (r->cost == 0) /* it came by the fast path */
    r->cost = mdp_msg_bytes(r->body) +
              mdp_msg_size(r->body) * sizeof(zmq_msg_t) +
              sizeof(broker_request_t);
  s->queued++;
  b->stats.queued++;
  b->stats.queued_bytes += r->cost;
  mdp__tlist_touch(&b->expiry, &r->expiry);
}

/* The next request to serve: retries first, then round-robin over clients. */
static broker_request_t *next_request(mdp_broker_t *b, broker_service_t *s) {
  mdp__list_t *n = mdp__list_head(&s->retry_queue);
  if (n == NULL) {
    mdp__list_t *ring = mdp__list_head(&s->client_ring);
    if (ring == NULL)
      return NULL;
    broker_client_queue_t *cq =
        mdp__container_of(ring, broker_client_queue_t, ring_link);
    n = mdp__list_head(&cq->requests);
    /* This client has had its turn. */
    mdp__list_move_back(&s->client_ring, &cq->ring_link);
  }
  broker_request_t *r = mdp__container_of(n, broker_request_t, queue_link);
  unqueue(b, r);
  return r;
}

int mdp__broker_request_restore(broker_request_t *r) {
  if (r->body != NULL || r->n_kept == 0)
    return r->body != NULL ? 0 : MDP_EINVAL;
  mdp_msg_t *body = mdp_msg_new();
  if (body == NULL || mdp_msg_reserve_(body, 0, r->n_kept) != 0) {
    mdp_msg_destroy(body);
    return MDP_ENOMEM;
  }
  /* Relocated, as zmq_msg_move does (msg_internal.h). */
  for (size_t i = 0; i < r->n_kept; i++)
    *mdp__msg_at(body, i) = r->kept[i];
  body->count = r->n_kept;
  r->n_kept = 0;
  r->body = body;
  return 0;
}

/* Sends `r` to idle worker `w`.  0, or the send error with `r` back in the
 * retry queue and `w` still not in the idle list. */
static int send_request(mdp_broker_t *b, broker_worker_t *w,
                        broker_request_t *r) {
  /* Keep the body while a re-dispatch is possible: the copies share the
   * frames' buffers by reference count, no body bytes are copied.  The
   * received message itself goes to the worker. */
  mdp_msg_t *body = r->body;
  mdp_msg_t *copy = NULL;
  if (b->opts.max_redispatch > 0 && !kept_copy(r, body))
    copy = mdp_msg_dup(body); /* NULL: sent without a copy, as with 0 */
  if (copy != NULL)
    body = copy;
  else
    r->body = NULL;
  int rc = mdp__broker_send_worker(b, w, MDP_WORKER_REQUEST, r->client_id,
                                   r->client_id_size, body);
  if (rc < 0) {
    if (copy != NULL) {
      mdp_msg_destroy(copy);
    } else {
      r->body = body;
      kept_close(r);
    }
    mdp__broker_requeue_front(b, r);
    return rc;
  }
  w->request = r;
  w->service->n_busy++;
  if (r->dispatches++ == 0)
    mdp__broker_histogram_add(&b->queue_wait, uv_now(b->loop) - r->accepted_ms);
  b->stats.dispatched++;
  if (mdp__broker_silent_while_busy(b, w)) {
    /* Its library heartbeats only while it waits for work: its silence
     * means nothing until it replies.  A dead process is still noticed by
     * the heartbeats we keep sending (they fail once its connection has
     * closed); a frozen one by the busy timeout. */
    mdp__tlist_remove(&w->liveness);
    mdp__tlist_touch(&b->silent_busy, &w->busy);
  } else {
    mdp__tlist_touch(&b->busy, &w->busy);
  }
  return 0;
}

/* Sends `r` to `w`, which the caller took out of the idle list.  On
 * failure `r` is back in the retry queue and `w` is either forgotten (gone,
 * or not reading: its pipe is full) or idle again; returns the error. */
static int dispatch_to(mdp_broker_t *b, broker_worker_t *w,
                       broker_request_t *r) {
  broker_service_t *s = w->service;
  int rc = send_request(b, w, r);
  if (rc == MDP_EHOSTUNREACH || rc == MDP_ENOBUFS) {
    b->stats.workers_unreachable++;
    mdp__broker_worker_detach(b, w, 0, rc == MDP_ENOBUFS ? "not reading" : "unreachable");
  } else if (rc < 0) {
    /* Not the worker's fault (out of memory): keep it idle and try again
     * when the next message arrives. */
    mdp__list_push_front(&s->idle_workers, &w->idle_link);
    s->n_idle++;
    b->stats.workers_idle++;
    BROKER_LOG(b, MDP_LOG_WARN, "cannot dispatch to '%.*s': %s",
               (int)s->name_size, (const char *)s->name, mdp_strerror(rc));
  }
  return rc;
}

void mdp__broker_dispatch(mdp_broker_t *b, broker_service_t *s) {
  while (!b->closing && s->n_idle > 0 && s->queued > 0) {
    broker_worker_t *w = mdp__container_of(mdp__list_head(&s->idle_workers),
                                          broker_worker_t, idle_link);
    broker_request_t *r = next_request(b, s);
    mdp__broker_worker_unidle(b, w);
    int rc = dispatch_to(b, w, r);
    if (rc < 0 && rc != MDP_EHOSTUNREACH && rc != MDP_ENOBUFS)
      break;
  }
}

void mdp__broker_expire_request(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp_broker_t *b = mdp__container_of(list, mdp_broker_t, expiry);
  broker_request_t *r = mdp__container_of(node, broker_request_t, expiry);
  broker_service_t *s = r->service;
  unqueue(b, r);
  uint64_t n = ++b->stats.dropped_expired;
  if (mdp__broker_log_sampled(n)) {
    char svc[MDP__BROKER_NAME_TEXT];
    mdp_log_field_t fields[] = {
        {"service", mdp__broker_printable(s->name, s->name_size, svc,
                                          sizeof svc)},
        {"reason", "expired"}};
    BROKER_LOG_FIELDS(b, MDP_LOG_WARN, fields,
                      "request for '%s' expired after %llu ms in the queue "
                      "(%llu so far)",
                      fields[0].value,
                      (unsigned long long)b->opts.request_expiry_ms,
                      (unsigned long long)n);
  }
  mdp__broker_request_free(b, r);
  mdp__broker_service_maybe_free(b, s);
}
