/* echo_client: sends one request and prints the reply, one frame a line;
 * the counterpart of Majortomo's `majortomo.echo` client.
 *
 *   echo_client [BROKER_URL] [SERVICE] [FRAME...]
 *
 * Uses the blocking helper, the simplest way to make one request. */
#include <stdio.h>

#include "mdp.h"

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : MDP_DEFAULT_ENDPOINT;
  const char *service = argc > 2 ? argv[2] : "echo";
  mdp_msg_t *body = mdp_msg_new();
  for (int i = 3; i < argc; i++)
    mdp_msg_append_str(body, argv[i]);
  if (argc <= 3)
    mdp_msg_append_str(body, "Hello, world");
  mdp_reply_t reply;
  int rc = mdp_request_sync(url, service, body, 5000, 1, NULL, &reply);
  mdp_msg_destroy(body); /* the helper sent a copy */
  if (rc < 0) {
    fprintf(stderr, "echo_client: %s\n", mdp_strerror(rc));
    mdp_zmq_context_term();
    return 1;
  }
  for (size_t p = 0; p < reply.count; p++)
    for (size_t f = 0; f < mdp_msg_size(reply.parts[p]); f++)
      printf("%.*s\n", (int)mdp_msg_frame_size(reply.parts[p], f),
             (const char *)mdp_msg_data(reply.parts[p], f));
  mdp_reply_free(&reply);
  mdp_zmq_context_term();
  return 0;
}
