/* The broker's replies: PARTIAL and FINAL from a worker, forwarded to the
 * client in the request's dialect; for an MDP/0.1 client, which takes one
 * REPLY, the parts are collected (bounded) and sent with the FINAL. */
#include <string.h>

#include "broker_internal.h"
#include "msg_internal.h"

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
  size_t frames = mdp__msg_size(msg);
  size_t cost = mdp_msg_bytes(msg) + frames * sizeof(zmq_msg_t);
  size_t total_frames = frames + (r->collected ? mdp__msg_size(r->collected)
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

/* The request's service frame for its FINAL, which takes it (NULL if it
 * has none). */
static zmq_msg_t *final_service(broker_request_t *r) {
  if (!r->has_service_frame)
    return NULL;
  r->has_service_frame = 0;
  return &r->service_frame;
}

void mdp__broker_on_reply(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                     const mdp_cmd_t *cmd, mdp_msg_t *msg) {
  broker_request_t *r = w ? w->request : NULL;
  if (w == NULL) {
    mdp__broker_protocol_error(b, id, NULL, cmd->dialect, "reply from an unknown worker");
    mdp_msg_destroy(msg);
    return;
  }
  if (r == NULL || r->client_id_size != cmd->address_size ||
      memcmp(r->client_id, cmd->address, cmd->address_size)) {
    mdp__broker_protocol_error(b, id, w, cmd->dialect,
                   "reply for a client the worker does not serve");
    mdp_msg_destroy(msg);
    return;
  }
  broker_service_t *s = w->service;
  mdp__msg_drop_front(msg, cmd->body);
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
    if (mdp__broker_send_client(b, &r->client, 0, r->client_dialect,
                                MDP_CLIENT_PARTIAL, s->name, s->name_size,
                                NULL, msg) < 0)
      r->failed = 1;
    else {
      b->stats.partials++;
      s->stats->partials++;
    }
  } else if (/* the request is freed below: its identity frame is moved,
                and its service frame goes back with the reply */
             mdp__broker_send_client(b, &r->client, 1, r->client_dialect,
                                     MDP_CLIENT_FINAL, s->name, s->name_size,
                                     final_service(r), msg) == 0) {
    r->client_sent = 1;
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

void mdp__broker_collected_release(mdp_broker_t *b, broker_request_t *r) {
  b->stats.queued_bytes -= r->collected_bytes;
  r->collected_bytes = 0;
  mdp_msg_destroy(r->collected);
  r->collected = NULL;
}
