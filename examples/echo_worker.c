/* echo_worker: answers every request on a service with its own body, the
 * counterpart of Majortomo's `majortomo.echo` worker.
 *
 *   echo_worker [BROKER_URL] [SERVICE]     (defaults: tcp://127.0.0.1:5555, echo)
 *
 * Runs until SIGINT or SIGTERM, then closes cleanly: the request in
 * progress (if any) is finished, DISCONNECT is sent, the loop ends. */
#include <signal.h>
#include <stdio.h>

#include "mdp.h"

static uv_signal_t sigint, sigterm;

/* The body is the reply: ownership moves straight back to the library. */
static void on_request(mdp_worker_t *worker, mdp_request_t req,
                       mdp_msg_t *body) {
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body); /* refused: still ours */
}

static void on_signal(uv_signal_t *sig, int signum) {
  mdp_worker_close(sig->data, 1, NULL); /* wait for the request in progress */
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : MDP_DEFAULT_ENDPOINT;
  const char *service = argc > 2 ? argv[2] : "echo";
  uv_loop_t *loop = uv_default_loop();
  mdp_worker_t *worker;
  int rc = mdp_worker_new(loop, url, service, NULL, on_request, &worker);
  if (rc < 0) {
    fprintf(stderr, "echo_worker: %s\n", mdp_strerror(rc));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  sigint.data = sigterm.data = worker;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT); /* returns once everything is closed */
  uv_loop_close(loop);
  mdp_zmq_context_term();
  return 0;
}
