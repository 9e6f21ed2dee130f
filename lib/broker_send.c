/* The broker's sending: every message it sends gets its command header and
 * the peer's routing identity put in front of the body here, and failures
 * are counted here.  The ROUTER never holds a message (max_pending 0): a
 * full peer's send fails at once and is handled per peer by the caller. */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "codec_internal.h"
#include "msg_internal.h"

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

/* Every message the broker sends: the command's header, then the peer's
 * routing identity, in front of `msg` (the body, maybe no frame), sent.
 * The identity is `id_frame`, moved into the message, or else a copy of
 * the `id_size` bytes at `id`.  0: `msg` is the reactor's, and a moved
 * `id_frame` was taken with it: it holds nothing now and is neither closed
 * nor used again (not even re-initialised: that and the caller's close
 * were two libzmq calls per reply for an empty frame).  On error `msg`
 * holds exactly the frames it came with and is still the caller's, and a
 * moved `id_frame` is back where it was.  A `service_frame` (else NULL)
 * is taken either way (mdp__encode_service). */
static int send_to(mdp_broker_t *b, zmq_msg_t *id_frame, const void *id,
                   size_t id_size, const mdp_cmd_t *cmd,
                   zmq_msg_t *service_frame, mdp_msg_t *msg) {
  size_t body_frames = mdp__msg_size(msg);
  int rc = mdp__encode_service(msg, cmd, service_frame);
  if (rc != 0 && service_frame != NULL)
    zmq_msg_close(service_frame);
  if (rc == 0 && id_frame != NULL) {
    rc = mdp_msg_reserve_(msg, 1, 0);
    if (rc == 0) {
      /* A relocation, as in mdp_msg_prepend, without re-initialising the
       * caller's frame until the send has taken it. */
      msg->head--;
      msg->count++;
      *mdp__msg_at(msg, 0) = *id_frame;
      rc = mdp_reactor_send(b->reactor, msg);
      if (rc == 0)
        return 0;
      /* Not sent: zmq_msg_send left every frame as it was. */
      *id_frame = *mdp__msg_at(msg, 0);
      msg->head++;
      msg->count--;
    }
  } else if (rc == 0) {
    rc = mdp_msg_prepend_mem(msg, id, id_size);
    if (rc == 0)
      rc = mdp_reactor_send(b->reactor, msg);
  }
  if (rc < 0)
    mdp__msg_drop_front(msg, mdp__msg_size(msg) - body_frames);
  return rc;
}

int mdp__broker_send_worker(mdp_broker_t *b, broker_worker_t *w,
                            mdp_command_t command, const void *client,
                            size_t client_size, mdp_msg_t *body) {
  mdp_msg_t *msg = body ? body : mdp_msg_new();
  if (msg == NULL)
    return MDP_ENOMEM;
  mdp_cmd_t cmd = {.dialect = w->dialect,
                   .command = command,
                   .address = client,
                   .address_size = client_size};
  int rc = send_to(b, NULL, w->id, w->id_size, &cmd, NULL, msg);
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

int mdp__broker_send_client(mdp_broker_t *b, zmq_msg_t *client, int move,
                            mdp_dialect_t dialect, mdp_command_t command,
                            const uint8_t *service, size_t service_size,
                            zmq_msg_t *service_frame, mdp_msg_t *body) {
  mdp_cmd_t cmd = {.dialect = dialect,
                   .command = command,
                   .service = service,
                   .service_size = service_size};
  int rc = move ? send_to(b, client, NULL, 0, &cmd, service_frame, body)
                : send_to(b, NULL, zmq_msg_data(client), zmq_msg_size(client),
                          &cmd, service_frame, body);
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
void mdp__broker_send_disconnect(mdp_broker_t *b, const zmq_msg_t *id,
                               mdp_dialect_t dialect) {
  mdp_msg_t *msg = mdp_msg_new();
  mdp_cmd_t cmd = {.dialect = dialect, .command = MDP_WORKER_DISCONNECT};
  int rc = msg ? send_to(b, NULL, zmq_msg_data((zmq_msg_t *)id),
                         zmq_msg_size((zmq_msg_t *)id), &cmd, NULL, msg)
               : MDP_ENOMEM;
  if (rc < 0)
    mdp_msg_destroy(msg);
  else
    b->stats.disconnects_sent++;
}

/* A message the reactor accepted could not be sent after all (its peer has
 * gone).  It comes from the loop, a turn after the send, so the identity
 * may name a new worker by now: nobody is removed here.  A gone worker is
 * found by the next heartbeat to it (within an interval), which removes it
 * and re-dispatches its request. */
void mdp__broker_on_send_failed(mdp_reactor_t *reactor, mdp_msg_t *msg, int err) {
  mdp_broker_t *b = mdp_reactor_get_data(reactor);
  b->stats.dropped_unroutable++;
  (void)err;
  mdp_msg_destroy(msg);
}
