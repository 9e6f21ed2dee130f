/* stream_client: asks for a streamed reply and prints each part as it
 * arrives.
 *
 *   stream_client [BROKER_URL] [PARTS] [SERVICE]   (defaults: 100, stream)
 *
 * Exits 0 once the FINAL arrived after exactly PARTS partials. */
#include <stdio.h>
#include <stdlib.h>

#include "mdp.h"

typedef struct {
  long parts, expected;
  int status;
} progress_t;

static void on_reply(mdp_client_t *client, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  progress_t *p = data;
  if (status < 0) {
    fprintf(stderr, "stream_client: %s\n", mdp_strerror(status));
    p->status = status;
  } else if (!final) {
    p->parts++;
    printf("part %ld: %zu bytes\n", p->parts, mdp_msg_bytes(body));
    fflush(stdout);
  } else {
    printf("final: %.*s bytes in %ld parts\n",
           (int)mdp_msg_frame_size(body, 0),
           (const char *)mdp_msg_data(body, 0), p->parts);
  }
  mdp_msg_destroy(body);
  if (final)
    mdp_client_close(client, NULL); /* the loop ends when it has closed */
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : MDP_DEFAULT_ENDPOINT;
  const char *parts = argc > 2 ? argv[2] : "100";
  const char *service = argc > 3 ? argv[3] : "stream";
  uv_loop_t *loop = uv_default_loop();
  mdp_client_t *client;
  int rc = mdp_client_new(loop, &url, 1, NULL, &client);
  progress_t p = {0, atol(parts), 0};
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_str(body, parts);
  if (rc == 0)
    rc = mdp_client_request(client, service, body, NULL, on_reply, &p, NULL);
  if (rc < 0) {
    fprintf(stderr, "stream_client: %s\n", mdp_strerror(rc));
    return 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  mdp_zmq_context_term();
  return p.status == 0 && p.parts == p.expected ? 0 : 1;
}
