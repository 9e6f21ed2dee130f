/* fault_worker: a worker process for fault tests.
 *
 *   fault_worker ENDPOINT SERVICE MODE [HEARTBEAT_MS]
 *
 * MODE:
 *   echo          FINAL = the request body
 *   hang          never replies (but keeps heartbeating): the test kills it
 *   partial-hang  one PARTIAL "part", then nothing
 *   stream        50 PARTIALs 10 ms apart, then a FINAL "end"
 *   slow          FINAL "done" 20 ms after each request
 *
 * Prints "ready" on stdout once the worker object exists, and "request" for
 * each request it is given, so a test can synchronise on it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mdp.h>

static const char *mode;
static mdp_request_t current;
static uv_timer_t stream_timer;
static int stream_sent;

static void on_stream_tick(uv_timer_t *t) {
  mdp_msg_t *m = mdp_msg_new();
  if (stream_sent < 50) {
    mdp_msg_append_str(m, "chunk");
    if (mdp_worker_partial(current, m) < 0) {
      mdp_msg_destroy(m);
      uv_timer_stop(t);
      return;
    }
    stream_sent++;
    return;
  }
  mdp_msg_append_str(m, "end");
  if (mdp_worker_final(current, m) < 0)
    mdp_msg_destroy(m);
  uv_timer_stop(t);
}

static void on_slow_done(uv_timer_t *t) {
  (void)t;
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, "done");
  if (mdp_worker_final(current, m) < 0)
    mdp_msg_destroy(m);
}

static void on_request(mdp_worker_t *w, mdp_request_t req,
                       mdp_msg_t *body) {
  (void)w;
  if (strcmp(mode, "slow") != 0) { /* slow serves floods: stay quiet */
    printf("request\n");
    fflush(stdout);
  }
  current = req;
  if (strcmp(mode, "echo") == 0) {
    if (mdp_worker_final(req, body) == 0)
      return;
  } else if (strcmp(mode, "partial-hang") == 0) {
    mdp_msg_t *m = mdp_msg_new();
    mdp_msg_append_str(m, "part");
    if (mdp_worker_partial(req, m) < 0)
      mdp_msg_destroy(m);
  } else if (strcmp(mode, "stream") == 0) {
    stream_sent = 0;
    uv_timer_start(&stream_timer, on_stream_tick, 10, 10);
  } else if (strcmp(mode, "slow") == 0) {
    uv_timer_start(&stream_timer, on_slow_done, 20, 0);
  }
  mdp_msg_destroy(body);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  mdp_worker_close(sig->data, 0, NULL);
  uv_close((uv_handle_t *)sig, NULL);
  uv_close((uv_handle_t *)&stream_timer, NULL);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: fault_worker ENDPOINT SERVICE MODE [HB_MS]\n");
    return 2;
  }
  mode = argv[3];
  mdp_worker_options_t opts;
  mdp_worker_options_init(&opts);
  if (argc > 4)
    opts.heartbeat_interval_ms = strtoull(argv[4], NULL, 10);
  opts.heartbeat_liveness = 3;
  opts.reconnect_initial_ms = 50;
  opts.reconnect_max_ms = 200;
  uv_loop_t *loop = uv_default_loop();
  mdp_worker_t *w;
  int rc = mdp_worker_new(loop, argv[1], argv[2], &opts, on_request, &w);
  if (rc < 0) {
    fprintf(stderr, "fault_worker: %s\n", mdp_strerror(rc));
    return 1;
  }
  uv_timer_init(loop, &stream_timer);
  uv_signal_t sigterm;
  uv_signal_init(loop, &sigterm);
  sigterm.data = w;
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("ready\n");
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  mdp_zmq_context_term();
  return 0;
}
