/* The broker's receive path: every message arrives through the reactor's
 * callback as [identity | command frames...], is parsed once (its sender's
 * dialect checked against its READY's), and goes to the handler of its
 * command; its body frames are moved on, never copied. */
#include <string.h>

#include "broker_internal.h"
#include "codec_internal.h"
#include "msg_internal.h"
#include "reactor_internal.h"

void mdp__broker_protocol_error(mdp_broker_t *b, const zmq_msg_t *id,
                           broker_worker_t *w, mdp_dialect_t dialect,
                           const char *why) {
  char buf[64];
  uint64_t n = ++b->protocol_errors;
  if (mdp__broker_log_sampled(n)) {
    mdp_log_field_t fields[] = {
        {"peer", mdp__broker_printable(zmq_msg_data((zmq_msg_t *)id),
                                       zmq_msg_size((zmq_msg_t *)id), buf,
                                       sizeof buf)},
        {"reason", why}};
    BROKER_LOG_FIELDS(b, MDP_LOG_DEBUG, fields,
                      "protocol error from %s: %s (%llu so far)",
                      fields[0].value, why, (unsigned long long)n);
  }
  if (w != NULL)
    mdp__broker_worker_remove(b, w, 1, why);
  else
    mdp__broker_send_disconnect(b, id, dialect);
}

/* Takes `msg`; 1 if it took the identity frame `id` too (the request
 * holds it, or the MMI reply went with it): the caller must not close it. */
static int on_client_request(mdp_broker_t *b, zmq_msg_t *id, size_t id_size,
                             const mdp_cmd_t *cmd, mdp_msg_t *msg) {
  b->stats.requests++;
  if (mdp_is_mmi(cmd->service, cmd->service_size)) {
    uint8_t name[MDP_SERVICE_MAX];
    size_t size = cmd->service_size;
    memcpy(name, cmd->service, size);
    mdp__msg_drop_front(msg, cmd->body);
    b->stats.mmi_requests++;
    return mdp__broker_mmi(b, id, cmd->dialect, name, size, msg);
  }
  broker_service_t *s =
      mdp__broker_service_get(b, cmd->service, cmd->service_size,
                         MDP__BROKER_CREATE_FOR_CLIENT);
  /* The service frame, last before the body, goes with the request: its
   * FINAL sends it back. */
  zmq_msg_t service_frame;
  mdp__msg_drop_front(msg, cmd->body - 1);
  mdp__msg_pop_front(msg, &service_frame);
  int rc = s ? mdp__broker_request_submit(b, s, id, id_size, &service_frame,
                                          cmd->dialect, msg)
             : MDP_ENOBUFS;
  if (rc < 0) {
    zmq_msg_close(&service_frame);
    uint64_t n = rc == MDP_ENOBUFS ? ++b->stats.dropped_queue_full : 1;
    /* A flood must not become a flood of log lines: the first drop and
     * every 1000th.  cmd->service pointed into frames drop_front closed. */
    if (mdp__broker_log_sampled(n)) {
      char svc[MDP__BROKER_NAME_TEXT] = "";
      mdp_log_field_t fields[] = {
          {"service", s ? mdp__broker_printable(s->name, s->name_size, svc,
                                                sizeof svc)
                        : svc},
          {"reason", rc != MDP_ENOBUFS ? mdp_strerror(rc)
                     : s               ? "queue full"
                                       : "too many services"}};
      BROKER_LOG_FIELDS(b, MDP_LOG_WARN, fields,
                        "request for '%s' dropped: %s (%llu so far)",
                        fields[0].value, fields[1].value,
                        (unsigned long long)n);
    }
    mdp_msg_destroy(msg);
    if (s != NULL)
      mdp__broker_service_maybe_free(b, s);
    return 0;
  }
  return 1;
}

void mdp__broker_on_message(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  mdp__broker_handle_sized(mdp_reactor_get_data(reactor), msg,
                           mdp__reactor_rx_sizes(reactor),
                           MDP__REACTOR_RX_SIZES);
}

void mdp__broker_handle(mdp_broker_t *b, mdp_msg_t *msg) {
  mdp__broker_handle_sized(b, msg, NULL, 0);
}

void mdp__broker_handle_sized(mdp_broker_t *b, mdp_msg_t *msg,
                              const uint32_t *sizes, size_t nsizes) {
  zmq_msg_t id;
  if (mdp__msg_pop_front(msg, &id) < 0 || b->closing) {
    zmq_msg_close(&id);
    mdp_msg_destroy(msg);
    return;
  }
  /* The sizes are by frame index as received: the identity was frame 0. */
  size_t id_size;
  if (sizes != NULL && nsizes > 0) {
    id_size = sizes[0];
    sizes++;
    nsizes--;
  } else {
    id_size = zmq_msg_size(&id);
    nsizes = 0;
  }
  mdp_cmd_t cmd;
  int rc = mdp__parse_sized(msg, sizes, nsizes, MDP_ROLE_BROKER, b->dialects,
                            &cmd);
  /* A client's REQUEST needs no worker: the lookup (a hash of the
   * identity) is for worker commands and for invalid messages, whose
   * sender, if a worker, is forgotten. */
  broker_worker_t *w =
      rc == 0 && cmd.command == MDP_CLIENT_REQUEST
          ? NULL
          : mdp__map_get(&b->workers, zmq_msg_data(&id), id_size);
  if (rc == 0 && w != NULL && cmd.dialect != w->dialect) {
    /* A worker speaks the dialect of its READY: a switch is a broken or
     * forged peer, and its message is invalid. */
    b->stats.dropped_dialect++;
    rc = MDP_EDIALECT;
  }
  if (rc < 0) {
    char buf[64];
    uint64_t n = ++b->stats.dropped_invalid;
    if (mdp__broker_log_sampled(n)) {
      mdp_log_field_t fields[] = {
          {"peer", mdp__broker_printable(zmq_msg_data(&id), zmq_msg_size(&id),
                                         buf, sizeof buf)},
          {"reason", mdp_strerror(rc)}};
      BROKER_LOG_FIELDS(b, MDP_LOG_DEBUG, fields,
                        "invalid message from %s dropped: %s (%llu so far)",
                        fields[0].value, fields[1].value,
                        (unsigned long long)n);
    }
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
  /* The operator's access list (mdp_broker_set_access_cb): a REQUEST the
   * sender's key may not make is dropped; a READY for a service it may
   * not serve gets DISCONNECT.  MMI stays open to every key. */
  if (b->access_cb != NULL &&
      ((cmd.command == MDP_CLIENT_REQUEST &&
        !mdp_is_mmi(cmd.service, cmd.service_size) &&
        !mdp__broker_access(b, &id, MDP_BROKER_ACCESS_REQUEST, cmd.service,
                            cmd.service_size, 1)) ||
       (cmd.command == MDP_WORKER_READY && w == NULL &&
        !mdp__broker_access(b, &id, MDP_BROKER_ACCESS_SERVE, cmd.service,
                            cmd.service_size, 1)))) {
    if (cmd.command == MDP_WORKER_READY)
      mdp__broker_send_disconnect(b, &id, cmd.dialect);
    zmq_msg_close(&id);
    mdp_msg_destroy(msg);
    return;
  }
  int id_taken = 0;
  switch (cmd.command) {
  case MDP_CLIENT_REQUEST:
    id_taken = on_client_request(b, &id, id_size, &cmd, msg);
    msg = NULL;
    break;
  case MDP_WORKER_READY:
    mdp__broker_on_ready(b, &id, w, &cmd);
    break;
  case MDP_WORKER_PARTIAL:
  case MDP_WORKER_FINAL:
    mdp__broker_on_reply(b, &id, w, &cmd, msg);
    msg = NULL;
    break;
  case MDP_WORKER_HEARTBEAT:
    if (w == NULL)
      mdp__broker_protocol_error(b, &id, NULL, cmd.dialect,
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
  if (!id_taken)
    zmq_msg_close(&id);
  mdp_msg_destroy(msg);
}
