/* inflight_client: keeps N requests (default 1000) in flight at once from
 * one client object on one thread, each on its own socket of the client's
 * pool, and checks that every reply matches its request.
 *
 *   inflight_client [BROKER_URL] [N] [SERVICE]   (defaults: 1000, echo)
 *
 * ZeroMQ allows 1023 sockets per context by default, so the client gets a
 * context of its own with room for N sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "mdp.h"

typedef struct {
  long done, ok;
} tally_t;

static void on_reply(mdp_client_t *client, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  tally_t *t = mdp_client_get_data(client);
  if (!final) {
    mdp_msg_destroy(body);
    return;
  }
  /* each body carries the number of its request: a reply for another
   * request would not match */
  if (status == 0 && mdp_msg_frame_eq(body, 0, &data, sizeof data))
    t->ok++;
  mdp_msg_destroy(body);
  t->done++;
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : MDP_DEFAULT_ENDPOINT;
  long n = argc > 2 ? atol(argv[2]) : 1000;
  const char *service = argc > 3 ? argv[3] : "echo";
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)n + 64);
  uv_loop_t *loop = uv_default_loop();
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.zmq_context = ctx;
  o.max_sockets = (size_t)n;
  o.timeout_ms = 30000;
  mdp_client_t *client;
  if (mdp_client_new(loop, &url, 1, &o, &client) < 0)
    return 1;
  tally_t t = {0, 0};
  mdp_client_set_data(client, &t);
  for (long i = 1; i <= n; i++) {
    mdp_msg_t *body = mdp_msg_new();
    void *tag = (void *)(uintptr_t)i;
    mdp_msg_append_mem(body, &tag, sizeof tag);
    if (mdp_client_request(client, service, body, NULL, on_reply, tag,
                           NULL) < 0)
      return 1;
  }
  mdp_client_stats_t st;
  mdp_client_get_stats(client, &st);
  printf("%zu requests in flight on %zu sockets\n", st.in_flight, st.sockets);
  while (t.done < n)
    uv_run(loop, UV_RUN_ONCE);
  printf("%ld replies, %ld matched\n", t.done, t.ok);
  mdp_client_close(client, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  zmq_ctx_term(ctx);
  return t.ok == n ? 0 : 1;
}
