/* all_in_one: one process, one thread, one loop: a broker, 50 workers and
 * 50 clients, talking over inproc://.  Each client makes 20 requests, one
 * after the other; the program exits 0 when all 1,000 replies came back
 * right, and everything closed.
 *
 *   all_in_one [WORKERS] [CLIENTS] [REQUESTS_PER_CLIENT]   (50 50 20) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp.h"

#define ENDPOINT "inproc://all-in-one"

typedef struct {
  mdp_client_t *client;
  int left;
  int ok;
} user_t;

static int clients_left;
static int replies_ok;
static mdp_broker_t *broker;
static mdp_worker_t **workers;
static int nworkers;

static void on_request(mdp_worker_t *w, mdp_request_t req,
                       mdp_msg_t *body) {
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static void ask(user_t *u);

static void shut_down(void) {
  for (int i = 0; i < nworkers; i++)
    mdp_worker_close(workers[i], 0, NULL);
  mdp_broker_close(broker, NULL);
}

static void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  user_t *u = data;
  if (status == 0 && final && mdp_msg_frame_eq(body, 0, &u, sizeof u))
    replies_ok++;
  mdp_msg_destroy(body);
  if (!final)
    return;
  if (status == 0 && --u->left > 0) {
    ask(u); /* the next request, from the reply callback */
    return;
  }
  mdp_client_close(c, NULL);
  if (--clients_left == 0)
    shut_down();
}

static void ask(user_t *u) {
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_mem(body, &u, sizeof u); /* who asked: checked on reply */
  if (mdp_client_request(u->client, "echo", body, NULL, on_reply, u, NULL) < 0)
    abort();
}

int main(int argc, char **argv) {
  nworkers = argc > 1 ? atoi(argv[1]) : 50;
  int nclients = argc > 2 ? atoi(argv[2]) : 50;
  int per = argc > 3 ? atoi(argv[3]) : 20;
  uv_loop_t *loop = uv_default_loop();
  if (mdp_broker_new(loop, NULL, &broker) < 0 ||
      mdp_broker_bind(broker, ENDPOINT) < 0)
    return 1;
  workers = calloc((size_t)nworkers, sizeof *workers);
  for (int i = 0; i < nworkers; i++)
    if (mdp_worker_new(loop, ENDPOINT, "echo", NULL, on_request,
                       &workers[i]) < 0)
      return 1;
  user_t *users = calloc((size_t)nclients, sizeof *users);
  const char *ep = ENDPOINT;
  clients_left = nclients;
  for (int i = 0; i < nclients; i++) {
    users[i].left = per;
    if (mdp_client_new(loop, &ep, 1, NULL, &users[i].client) < 0)
      return 1;
    ask(&users[i]); /* queued by the broker until a worker is READY */
  }
  uv_run(loop, UV_RUN_DEFAULT); /* ends when every object has closed */
  int rc = uv_loop_close(loop);
  printf("%d of %d replies correct\n", replies_ok, nclients * per);
  free(users);
  free(workers);
  mdp_zmq_context_term();
  return rc == 0 && replies_ok == nclients * per ? 0 : 1;
}
