/* The Majordomo Management Interface (RFC 8), answered by the broker.
 *
 *   mmi.service  body [name]  -> ["200"] if a worker serves `name`, ["404"]
 *   mmi.services body [any]   -> one frame per service that has a worker,
 *                                sorted by nothing, at most
 *                                max_mmi_reply_bytes of them; a single empty
 *                                frame if there is none (a body has at least
 *                                one frame)
 *   mmi.workers  body [name]  -> ["200", idle, busy, queued] as decimal text,
 *                                or ["404"] if the broker knows no `name`
 *   any other mmi.*           -> ["501"]
 * Replies are FINALs whose service frame is the mmi.* name asked for.
 */
#include <stdio.h>
#include <string.h>

#include "broker_internal.h"

static int is(const uint8_t *name, size_t size, const char *want) {
  return size == strlen(want) && memcmp(name, want, size) == 0;
}

static int append_count(mdp_msg_t *msg, size_t n) {
  char text[32];
  int len = snprintf(text, sizeof text, "%zu", n);
  return mdp_msg_append_mem(msg, text, (size_t)len);
}

/* What one name costs in the reply: its bytes and a frame's bookkeeping. */
#define MMI_NAME_COST(size) ((size) + sizeof(zmq_msg_t))

static int answer_services(mdp_broker_t *b, mdp_msg_t *reply) {
  int rc = 0;
  size_t bytes = 0, max = b->opts.max_mmi_reply_bytes;
  for (size_t i = 0; i < b->services.cap && rc == 0; i++) {
    if (b->services.slots[i].hash == 0)
      continue;
    broker_service_t *s = b->services.slots[i].value;
    if (s->n_idle + s->n_busy == 0)
      continue;
    /* A small request must not buy a reply of megabytes. */
    if (max && bytes + MMI_NAME_COST(s->name_size) > max) {
      b->stats.mmi_truncated++;
      break;
    }
    bytes += MMI_NAME_COST(s->name_size);
    rc = mdp_msg_append_mem(reply, s->name, s->name_size);
  }
  if (rc == 0 && mdp_msg_size(reply) == 0)
    rc = mdp_msg_append_mem(reply, NULL, 0);
  return rc;
}

int mdp__broker_mmi(mdp_broker_t *b, zmq_msg_t *client, mdp_dialect_t dialect,
                    const uint8_t *service, size_t service_size,
                    mdp_msg_t *body) {
  /* The request body's first frame is the argument; the same message is
   * reused for the reply. */
  broker_service_t *s = NULL;
  if (mdp_msg_size(body) > 0)
    s = mdp__broker_service_get(b, mdp_msg_data(body, 0),
                           mdp_msg_frame_size(body, 0), 0);
  /* A service the asker may not request is not there for it (no denial
   * counted: a question is not a request). */
  if (s != NULL && is(service, service_size, "mmi.service") &&
      !mdp__broker_access(b, client, MDP_BROKER_ACCESS_REQUEST,
                          mdp_msg_data(body, 0), mdp_msg_frame_size(body, 0),
                          0))
    s = NULL;
  mdp_msg_drop_front(body, mdp_msg_size(body));
  int rc;
  if (is(service, service_size, "mmi.service")) {
    rc = mdp_msg_append_str(body, s && s->n_idle + s->n_busy > 0
                                      ? MDP_MMI_OK
                                      : MDP_MMI_NOT_FOUND);
  } else if (is(service, service_size, "mmi.services")) {
    rc = answer_services(b, body);
  } else if (is(service, service_size, "mmi.workers")) {
    if (s == NULL) {
      rc = mdp_msg_append_str(body, MDP_MMI_NOT_FOUND);
    } else {
      rc = mdp_msg_append_str(body, MDP_MMI_OK);
      if (rc == 0)
        rc = append_count(body, s->n_idle);
      if (rc == 0)
        rc = append_count(body, s->n_busy);
      if (rc == 0)
        rc = append_count(body, s->queued);
    }
  } else {
    rc = mdp_msg_append_str(body, MDP_MMI_NOT_IMPLEMENTED);
  }
  if (rc < 0) {
    b->stats.dropped_unroutable++;
    mdp_msg_destroy(body);
    return 0;
  }
  /* Its frame is moved, not copied: taken if the reply went. */
  return mdp__broker_send_client(b, client, 1, dialect, MDP_CLIENT_FINAL,
                                 service, service_size, NULL, body) == 0;
}
