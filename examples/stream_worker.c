/* stream_worker: answers "stream" requests with a large reply sent as many
 * PARTIALs, one per loop iteration, so heartbeats and other work go on
 * while it streams.  The request body is the number of parts (default 100);
 * each part is 64 KiB; the FINAL says how many bytes were sent.
 *
 *   stream_worker [BROKER_URL] [SERVICE]      (default service: stream)
 *
 * Shows the asynchronous reply API: the handle is copied out of the
 * callback and used later, from a uv_idle_t; and back-pressure: when the
 * broker reads more slowly than parts are made, the worker stops producing
 * while mdp_worker_held() is above 0 and resumes in the drain callback, so
 * its memory stays at about one part whatever the reply's size.  After
 * each FINAL it prints "streamed N parts, at most M held". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp.h"

#define PART_SIZE 65536

typedef struct {
  mdp_worker_t *worker;
  mdp_request_t req; /* a copy: valid after the callback returned */
  long left, sent;
  size_t most_held; /* the largest mdp_worker_held() seen */
  int paused;       /* waiting for the drain callback */
  uv_idle_t idle;
  uv_signal_t sigint, sigterm;
} streamer_t;

static void send_next(uv_idle_t *idle) {
  streamer_t *s = idle->data;
  mdp_msg_t *part = mdp_msg_new();
  if (s->left > 0) {
    static char chunk[PART_SIZE];
    memset(chunk, 'a' + (int)(s->sent % 26), sizeof chunk);
    mdp_msg_append_mem(part, chunk, sizeof chunk);
    if (mdp_worker_partial(s->req, part) == 0) {
      s->left--;
      s->sent++;
      size_t held = mdp_worker_held(s->worker, NULL);
      if (held > s->most_held)
        s->most_held = held;
      if (held > 0) { /* the pipe is full: wait for the drain */
        s->paused = 1;
        uv_idle_stop(idle);
      }
      return;
    }
  } else {
    char text[32];
    snprintf(text, sizeof text, "%ld", s->sent * PART_SIZE);
    mdp_msg_append_str(part, text);
    if (mdp_worker_final(s->req, part) == 0) {
      uv_idle_stop(idle);
      printf("streamed %ld parts, at most %zu held\n", s->sent, s->most_held);
      fflush(stdout);
      return;
    }
  }
  /* Refused: the connection was lost and the request abandoned (MDP_ESTATE),
   * so stop streaming; the broker may give the request to another worker. */
  mdp_msg_destroy(part);
  uv_idle_stop(idle);
}

/* Everything held went to ZeroMQ: produce again. */
static void on_drain(mdp_worker_t *worker) {
  streamer_t *s = mdp_worker_get_data(worker);
  if (s->paused) {
    s->paused = 0;
    uv_idle_start(&s->idle, send_next);
  }
}

static void on_request(mdp_worker_t *worker, mdp_request_t req,
                       mdp_msg_t *body) {
  streamer_t *s = mdp_worker_get_data(worker);
  char num[32] = "";
  size_t n = mdp_msg_frame_size(body, 0);
  if (n < sizeof num)
    memcpy(num, mdp_msg_data(body, 0), n);
  mdp_msg_destroy(body);
  s->req = req;
  s->left = n > 0 ? atol(num) : 100;
  s->sent = 0;
  s->most_held = 0;
  s->paused = 0;
  uv_idle_start(&s->idle, send_next);
}

static void on_signal(uv_signal_t *sig, int signum) {
  streamer_t *s = sig->data;
  mdp_worker_close(s->worker, 1, NULL);
  uv_close((uv_handle_t *)&s->idle, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : MDP_DEFAULT_ENDPOINT;
  const char *service = argc > 2 ? argv[2] : "stream";
  uv_loop_t *loop = uv_default_loop();
  static streamer_t s;
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.socket.sndhwm = 16; /* ZeroMQ's own queue: 16 parts of 64 KiB, not 1000 */
  int rc = mdp_worker_new(loop, url, service, &o, on_request, &s.worker);
  if (rc < 0) {
    fprintf(stderr, "stream_worker: %s\n", mdp_strerror(rc));
    return 1;
  }
  mdp_worker_set_data(s.worker, &s);
  mdp_worker_set_drain_cb(s.worker, on_drain);
  uv_idle_init(loop, &s.idle);
  s.idle.data = &s;
  uv_signal_init(loop, &s.sigint);
  uv_signal_init(loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  mdp_zmq_context_term();
  return 0;
}
