/* mdp-bench: the baseline, a minimal single-threaded forwarder written
 * directly on libzmq.
 *
 * It makes the same hops as an MDP broker with the same framing, and
 * nothing else:
 *   client -> [c | "MDPC02" | 0x01 | service | body...]
 *          -> worker [w | "MDPW02" | 0x02 | c | "" | body...]
 *   worker -> [w | "MDPW02" | 0x03/0x04 | c | "" | body...]
 *          -> client [c | "MDPC02" | 0x02/0x03 | service | body...]
 * One ROUTER (ZMQ_ROUTER_MANDATORY, as the broker), blocking receives, frames
 * moved from socket to socket as zmq_msg_t (no memcpy), header frames sent
 * from constant memory.  Workers that send READY for the benchmark's service
 * are kept in a FIFO of idle identities; a request that finds none waits in
 * a FIFO.  HEARTBEAT, DISCONNECT and READY for other services are dropped:
 * no liveness, no heartbeats, no MMI, no fairness, no validation beyond what
 * routing needs.  It stands for what raw libzmq does on this machine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "mdp-bench.h"

#define MAX_FRAMES 32

typedef struct {
  zmq_msg_t f[MAX_FRAMES];
  int n;
} frames_t;

/* A FIFO of pointers, grown by doubling. */
typedef struct {
  void **v;
  size_t cap, head, count;
} fifo_t;

static int fifo_push(fifo_t *q, void *p) {
  if (q->count == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 64;
    void **v = malloc(cap * sizeof *v);
    if (v == NULL)
      return -1;
    for (size_t i = 0; i < q->count; i++)
      v[i] = q->v[(q->head + i) % q->cap];
    free(q->v);
    q->v = v;
    q->cap = cap;
    q->head = 0;
  }
  q->v[(q->head + q->count++) % q->cap] = p;
  return 0;
}

static void *fifo_pop(fifo_t *q) {
  if (q->count == 0)
    return NULL;
  void *p = q->v[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  return p;
}

static void frames_close(frames_t *m, int from) {
  for (int i = from; i < m->n; i++)
    zmq_msg_close(&m->f[i]);
  m->n = 0;
}

static int send_const(void *s, const void *p, size_t n, int more) {
  return zmq_send_const(s, p, n, more ? ZMQ_SNDMORE : 0);
}

/* Sends a frame; on failure the frame is still the caller's. */
static int send_frame(void *s, zmq_msg_t *f, int more) {
  return zmq_msg_send(f, s, more ? ZMQ_SNDMORE : 0);
}

/* Sends frames from..n-1 of `m` (the rest of a message); each is closed if
 * it could not go. */
static void send_rest(void *s, frames_t *m, int from) {
  for (int i = from; i < m->n; i++)
    if (send_frame(s, &m->f[i], i + 1 < m->n) < 0)
      zmq_msg_close(&m->f[i]);
}

static const char wheader[] = "MDPW02", cheader[] = "MDPC02";
static const unsigned char cmd_bytes[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05};

/* Request frames: [c | hdr | cmd | service | body...] (body from 4). */
static void to_worker(void *s, zmq_msg_t *worker, frames_t *m) {
  if (send_frame(s, worker, 1) < 0) { /* the worker is gone */
    zmq_msg_close(worker);
    frames_close(m, 0);
    return;
  }
  send_const(s, wheader, 6, 1);
  send_const(s, &cmd_bytes[2], 1, 1);
  if (send_frame(s, &m->f[0], 1) < 0)
    zmq_msg_close(&m->f[0]);
  send_const(s, "", 0, 1);
  send_rest(s, m, 4);
  zmq_msg_close(&m->f[1]);
  zmq_msg_close(&m->f[2]);
  zmq_msg_close(&m->f[3]);
  m->n = 0;
}

int bench_baseline_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  const char *service = bench_arg_str(a, "service", BENCH_SERVICE);
  /* hb_echo=1: each worker HEARTBEAT is answered at once with one, the
   * protocol's floor (RFC 18: one each way per interval) in raw libzmq,
   * for scenario (e)'s cost per heartbeat handled. */
  int hb_echo = (int)bench_arg_int(a, "hb_echo", 0);
  size_t service_size = strlen(service);
  if (endpoint == NULL) {
    fprintf(stderr, "baseline: endpoint= is required\n");
    return 2;
  }
  volatile int stop = 0;
  bench_on_term(&stop);
  bench_raise_nofile();
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 4096);
  void *s = zmq_socket(ctx, ZMQ_ROUTER);
  /* The receive timeout only matters when idle: it lets the loop see a
   * SIGTERM that did not interrupt the wait (under valgrind it may not). */
  int one = 1, linger = 200, rcvtimeo = 200;
  zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(s, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
  if (zmq_bind(s, endpoint) != 0) {
    fprintf(stderr, "baseline: cannot bind %s: %s\n", endpoint,
            zmq_strerror(zmq_errno()));
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 1;
  }
  fifo_t idle = {0}, queue = {0};
  frames_t m = {.n = 0};
  while (!stop) {
    /* One whole message. */
    int more = 1;
    m.n = 0;
    while (more) {
      if (m.n == MAX_FRAMES) { /* too many frames: drop the last */
        zmq_msg_close(&m.f[MAX_FRAMES - 1]);
        m.n--;
      }
      zmq_msg_t *f = &m.f[m.n];
      zmq_msg_init(f);
      if (zmq_msg_recv(f, s, 0) < 0) {
        zmq_msg_close(f);
        int e = zmq_errno();
        if ((e == EINTR || e == EAGAIN) && !stop && m.n > 0)
          continue;
        break;
      }
      more = zmq_msg_more(f);
      m.n++;
    }
    if (more) { /* interrupted */
      frames_close(&m, 0);
      continue;
    }
    if (m.n < 3 || zmq_msg_size(&m.f[1]) != 6 || zmq_msg_size(&m.f[2]) != 1) {
      frames_close(&m, 0);
      continue;
    }
    const char *hdr = zmq_msg_data(&m.f[1]);
    unsigned char cmd = *(unsigned char *)zmq_msg_data(&m.f[2]);
    if (memcmp(hdr, cheader, 6) == 0 && cmd == 0x01 && m.n >= 5) {
      zmq_msg_t *w = fifo_pop(&idle);
      if (w != NULL) {
        to_worker(s, w, &m);
        free(w);
      } else {
        frames_t *q = malloc(sizeof *q);
        if (q == NULL || fifo_push(&queue, q) < 0) {
          free(q);
          frames_close(&m, 0);
          continue;
        }
        memcpy(q, &m, sizeof m); /* zmq_msg_t relocate by copy */
        m.n = 0;
      }
    } else if (memcmp(hdr, wheader, 6) == 0) {
      int final = cmd == 0x04;
      if (hb_echo && cmd == 0x05 && m.n == 3) {
        /* [w | hdr | 05] -> [w | hdr | 05] */
        if (send_frame(s, &m.f[0], 1) >= 0) {
          send_const(s, wheader, 6, 1);
          send_const(s, &cmd_bytes[5], 1, 0);
        }
        frames_close(&m, 0);
        continue;
      }
      if ((cmd == 0x03 || final) && m.n >= 6) {
        /* [w | hdr | cmd | c | "" | body...] -> [c | hdr | cmd-1 | service |
         * body...] */
        if (send_frame(s, &m.f[3], 1) < 0) { /* the client is gone */
          frames_close(&m, 0);
          continue;
        }
        send_const(s, cheader, 6, 1);
        send_const(s, &cmd_bytes[cmd - 1], 1, 1);
        send_const(s, service, service_size, 1);
        send_rest(s, &m, 5);
        zmq_msg_close(&m.f[1]);
        zmq_msg_close(&m.f[2]);
        zmq_msg_close(&m.f[4]);
        if (!final) {
          zmq_msg_close(&m.f[0]);
          m.n = 0;
          continue;
        }
      } else if (!(cmd == 0x01 && m.n == 4 &&
                   zmq_msg_size(&m.f[3]) == service_size &&
                   memcmp(zmq_msg_data(&m.f[3]), service, service_size) ==
                       0)) {
        frames_close(&m, 0); /* HEARTBEAT, DISCONNECT, other services */
        continue;
      } else {
        zmq_msg_close(&m.f[1]);
        zmq_msg_close(&m.f[2]);
        zmq_msg_close(&m.f[3]);
      }
      /* The worker is idle: serve a waiting request, or remember it. */
      frames_t *q = fifo_pop(&queue);
      if (q != NULL) {
        to_worker(s, &m.f[0], q);
        free(q);
      } else {
        zmq_msg_t *w = malloc(sizeof *w);
        if (w == NULL || fifo_push(&idle, w) < 0) {
          free(w);
          zmq_msg_close(&m.f[0]);
        } else {
          zmq_msg_init(w);
          zmq_msg_move(w, &m.f[0]);
          zmq_msg_close(&m.f[0]);
        }
      }
      m.n = 0;
    } else {
      frames_close(&m, 0);
    }
  }
  zmq_msg_t *w;
  while ((w = fifo_pop(&idle)) != NULL) {
    zmq_msg_close(w);
    free(w);
  }
  frames_t *q;
  while ((q = fifo_pop(&queue)) != NULL) {
    frames_close(q, 0);
    free(q);
  }
  free(idle.v);
  free(queue.v);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}
