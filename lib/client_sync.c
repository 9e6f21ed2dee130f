/* mdp_request_sync(): one request, blocking, on a private loop.
 *
 * Built on mdp_client_t so that it has the same timeouts, retries and
 * ownership rules; the private loop makes it usable from any thread that
 * does not run a loop of its own at that moment.
 */
#include <stdlib.h>
#include <string.h>

#include "mdp/client.h"
#include "mdp/error.h"

typedef struct {
  mdp_reply_t *reply;
  int status;
  int done;
} sync_state_t;

void mdp_reply_free(mdp_reply_t *reply) {
  if (reply == NULL)
    return;
  for (size_t i = 0; i < reply->count; i++)
    mdp_msg_destroy(reply->parts[i]);
  free(reply->parts);
  reply->parts = NULL;
  reply->count = 0;
}

static void sync_reply_cb(mdp_client_t *client, uint64_t request_id,
                          int status, int final, mdp_msg_t *body,
                          void *data) {
  sync_state_t *s = data;
  if (status == 0 && s->status == 0) {
    mdp_msg_t **parts = realloc(s->reply->parts,
                                (s->reply->count + 1) * sizeof *parts);
    if (parts == NULL) {
      mdp_msg_destroy(body);
      s->status = MDP_ENOMEM;
    } else {
      s->reply->parts = parts;
      parts[s->reply->count++] = body;
    }
  } else if (status == 0) {
    mdp_msg_destroy(body); /* already failed: keep the first error */
  } else {
    s->status = status;
  }
  if (final)
    s->done = 1;
  if (s->status != 0 && !s->done)
    mdp_client_cancel(client, request_id); /* re-enters with ECANCELED */
}

int mdp_request_sync(const char *endpoint, const char *service,
                     mdp_msg_t *body, uint64_t timeout_ms, unsigned retries,
                     const mdp_client_options_t *opts, mdp_reply_t *reply) {
  if (endpoint == NULL || service == NULL || body == NULL || reply == NULL)
    return MDP_EINVAL;
  memset(reply, 0, sizeof *reply);
  mdp_client_options_t o;
  if (opts)
    o = *opts;
  else
    mdp_client_options_init(&o);
  o.timeout_ms = timeout_ms;
  o.retries = retries;
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    return MDP_EUV;
  mdp_client_t *client = NULL;
  int rc = mdp_client_new(&loop, &endpoint, 1, &o, &client);
  mdp_msg_t *copy = NULL;
  sync_state_t s = {reply, 0, 0};
  if (rc == 0) {
    copy = mdp_msg_dup(body);
    rc = copy ? mdp_client_request(client, service, copy, NULL, sync_reply_cb,
                                   &s, NULL)
              : MDP_ENOMEM;
    if (rc < 0)
      mdp_msg_destroy(copy);
    while (rc == 0 && !s.done)
      uv_run(&loop, UV_RUN_ONCE);
    if (rc == 0)
      rc = s.status;
    mdp_client_close(client, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* lets every handle close */
  uv_loop_close(&loop);
  if (rc < 0)
    mdp_reply_free(reply);
  return rc;
}
