/* libFuzzer target: arbitrary sequences of multipart messages from several
 * peers, fed to a real mdp_broker_t through mdp__broker_handle() (the reactor's
 * receive callback), with the loop run between messages so that timers,
 * sends and held sends happen.
 *
 * Input (any byte string is valid; see fuzz/fuzz_input.h for messages):
 *   c0  options: bits 0-2 accepted dialects (0: all); bit 3 fast timers
 *       (heartbeat 1 ms, liveness 2, both busy timeouts 2 ms, expiry 3 ms;
 *       Majortomo and MDP/0.1 workers may be silent while busy, RFC 18
 *       ones may not, as by default);
 *       bits 4-5 max_queue {10000, 1, 2, unlimited}; bit 6 max_redispatch
 *       0 (else 1); bit 7 max_msg_size 64 bytes (MDP/0.1 collection limit)
 *   c1  bits 0-1 send high-water mark of the broker and the peers
 *       {default, 1, 2, 4}; with one set, peers read only on a "drain" op,
 *       so their pipes fill up and sends to them fail; bit 2 reactor batch
 *       1; bit 3 tight limits (max_queued_total 3, max_services 2,
 *       max_workers_per_service 2);
 *       bits 4-7 k: close the broker from inside its k-th log line
 *   then operations, one byte each: peer = op & 7, kind = op >> 3:
 *       0-23, 30-31  a message [identity of peer | frames read from input]
 *       24-25        tick: sleep 1 ms (at most 4 per input), run the loop
 *       26-27        drain: every connected peer reads what it was sent
 *       28           the peer disconnects, or connects again
 *       29           run the loop
 * Peers 0-5 are connected DEALERs on inproc; 6 and 7 never are (until an
 * op connects them): the broker's sends to them fail, as to a peer that
 * vanished.
 *
 * Checked: no crash, no leak, no ASan/UBSan report; every message the broker
 * sends parses (as a client or a worker receives it) in an accepted dialect;
 * the broker's gauges (workers, idle workers, services, queued) agree with
 * its structures after every step, and no empty service is kept; after
 * mdp_broker_close() the close callback runs and uv_loop_close() is 0.
 *
 * Built with -DMDP_FUZZ_NO_MAIN (test/test_fuzz_replay.c) the entry point is
 * mdp_fuzz_broker_one() instead of LLVMFuzzerTestOneInput().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "../lib/broker_internal.h"
#include "../lib/zmq_call.h"
#include "fuzz_input.h"

#ifdef MDP_FUZZ_NO_MAIN
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput mdp_fuzz_broker_one
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FB_CONNECTED 6 /* peers 0..5 connect at the start */
#define FB_TICKS_MAX 4

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *b;
  unsigned dialects;
  void *peers[FUZZ_PEERS];
  int hwm;
  int drain_always;
  unsigned log_lines;
  unsigned close_at_log;
  int closing;
  int closed;
} fb_t;

static void *fb_ctx; /* one per input */
static unsigned fb_seq;
static char fb_endpoint[64];

static void fb_on_closed(mdp_broker_t *b) {
  fb_t *f = mdp_broker_get_data(b);
  f->closed = 1;
}

static void fb_close(fb_t *f) {
  if (f->closing)
    return;
  f->closing = 1;
  mdp_broker_close(f->b, fb_on_closed);
}

static void fb_log(void *data, mdp_log_level_t level, const char *line) {
  fb_t *f = data;
  (void)level;
  FUZZ_ASSERT(strlen(line) < 512);
  f->log_lines++;
  if (f->b != NULL && f->close_at_log && f->log_lines == f->close_at_log)
    fb_close(f); /* closing from inside a log line is allowed */
}

static void fb_peer_open(fb_t *f, unsigned k) {
  char id[3];
  fuzz_peer_id(k, id);
  void *s = zmq_socket(fb_ctx, ZMQ_DEALER);
  FUZZ_ASSERT(s != NULL);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(s, ZMQ_ROUTING_ID, id, 2);
  if (f->hwm) {
    zmq_setsockopt(s, ZMQ_RCVHWM, &f->hwm, sizeof f->hwm);
    zmq_setsockopt(s, ZMQ_SNDHWM, &f->hwm, sizeof f->hwm);
  }
  /* libFuzzer's SIGALRM (-timeout) may interrupt it: the library's retry. */
  FUZZ_ASSERT(mdp__zmq_connect(s, fb_endpoint) == 0);
  f->peers[k] = s;
}

static void fb_peer_close(fb_t *f, unsigned k) {
  zmq_close(f->peers[k]);
  f->peers[k] = NULL;
}

/* Everything the broker sent must be a valid message for a client or a
 * worker, in a dialect the broker accepts. */
static void fb_check_sent(fb_t *f, mdp_msg_t *m) {
  mdp_cmd_t cmd;
  int rc_client = mdp_parse(m, MDP_ROLE_CLIENT, f->dialects, &cmd);
  int rc_worker = mdp_parse(m, MDP_ROLE_WORKER, f->dialects, &cmd);
  if (rc_client != 0 && rc_worker != 0) {
    fprintf(stderr, "broker sent an invalid message (%s / %s), %zu frames\n",
            mdp_strerror(rc_client), mdp_strerror(rc_worker),
            mdp_msg_size(m));
    FUZZ_ASSERT(rc_client == 0 || rc_worker == 0);
  }
}

static void fb_drain(fb_t *f) {
  for (unsigned k = 0; k < FUZZ_PEERS; k++) {
    void *s = f->peers[k];
    if (s == NULL)
      continue;
    mdp_msg_t *m = NULL;
    for (;;) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, s, m ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        FUZZ_ASSERT(m == NULL); /* atomic delivery: never half a message */
        break;
      }
      if (m == NULL)
        m = mdp_msg_new();
      FUZZ_ASSERT(m != NULL);
      int more = zmq_msg_more(&frame);
      FUZZ_ASSERT(mdp_msg_append(m, &frame) == 0);
      zmq_msg_close(&frame);
      if (!more) {
        fb_check_sent(f, m);
        mdp_msg_destroy(m);
        m = NULL;
      }
    }
  }
}

static size_t fb_list_len(const mdp__list_t *l) {
  size_t n = 0;
  for (const mdp__list_t *i = l->next; i != l; i = i->next)
    n++;
  return n;
}

/* The gauges and the structures agree; nothing is kept that should have
 * been freed (a service with no worker and no request, an empty client
 * queue). */
static void fb_check_state(fb_t *f) {
  mdp_broker_t *b = f->b;
  if (f->closing)
    return;
  size_t workers = 0, idle = 0, queued = 0, services = 0, cqs = 0,
         all_retries = 0;
  for (size_t i = 0; i < b->workers.cap; i++) {
    if (b->workers.slots[i].hash == 0)
      continue;
    broker_worker_t *w = b->workers.slots[i].value;
    workers++;
    FUZZ_ASSERT(mdp__broker_service_get(b, w->service->name, w->service->name_size,
                                   0) == w->service);
    FUZZ_ASSERT((w->request == NULL) == mdp__list_linked(&w->idle_link));
    /* A busy worker that may be silent is judged by the busy bound only. */
    if (w->request != NULL && mdp__broker_silent_while_busy(b, w)) {
      FUZZ_ASSERT(!mdp__tlist_linked(&w->liveness));
      FUZZ_ASSERT(mdp__tlist_linked(&w->busy) ||
                  b->silent_busy.duration == 0);
    } else {
      FUZZ_ASSERT(mdp__tlist_linked(&w->liveness) ||
                  b->liveness.duration == 0);
    }
    if (w->request == NULL)
      FUZZ_ASSERT(!mdp__tlist_linked(&w->busy));
    if (w->request != NULL)
      FUZZ_ASSERT(w->request->service == w->service);
  }
  for (size_t i = 0; i < b->services.cap; i++) {
    if (b->services.slots[i].hash == 0)
      continue;
    broker_service_t *s = b->services.slots[i].value;
    services++;
    FUZZ_ASSERT(s->n_idle + s->n_busy + s->queued > 0);
    FUZZ_ASSERT(fb_list_len(&s->idle_workers) == s->n_idle);
    size_t busy = 0;
    for (size_t j = 0; j < b->workers.cap; j++) {
      broker_worker_t *w = b->workers.slots[j].value;
      if (b->workers.slots[j].hash != 0 && w->service == s && w->request)
        busy++;
    }
    FUZZ_ASSERT(busy == s->n_busy);
    FUZZ_ASSERT(!b->opts.max_workers_per_service ||
                s->n_idle + s->n_busy <= b->opts.max_workers_per_service);
    size_t n = fb_list_len(&s->retry_queue);
    for (mdp__list_t *r = s->client_ring.next; r != &s->client_ring;
         r = r->next) {
      broker_client_queue_t *cq =
          mdp__container_of(r, broker_client_queue_t, ring_link);
      FUZZ_ASSERT(cq->service == s);
      FUZZ_ASSERT(!mdp__list_empty(&cq->requests));
      n += fb_list_len(&cq->requests);
      cqs++;
    }
    FUZZ_ASSERT(n == s->queued);
    /* The limits bound what is admitted; retries of requests whose worker
     * was lost come back over them (docs/broker.md, Limits). */
    size_t retries = fb_list_len(&s->retry_queue);
    FUZZ_ASSERT(!b->opts.max_queue ||
                s->queued - retries <= b->opts.max_queue);
    idle += s->n_idle;
    queued += s->queued;
    all_retries += retries;
  }
  FUZZ_ASSERT(cqs == b->client_queues.count);
  FUZZ_ASSERT(workers == b->stats.workers);
  FUZZ_ASSERT(idle == b->stats.workers_idle);
  FUZZ_ASSERT(queued == b->stats.queued);
  FUZZ_ASSERT(services == b->stats.services);
  FUZZ_ASSERT(!b->opts.max_queued_total ||
              b->stats.queued - all_retries <= b->opts.max_queued_total);
  FUZZ_ASSERT(!b->opts.max_services ||
              b->stats.services <= b->opts.max_services);
}

static void fb_step(fb_t *f) {
  uv_run(&f->loop, UV_RUN_NOWAIT);
  if (f->drain_always)
    fb_drain(f);
  if (!f->closed)
    fb_check_state(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in_t in = FUZZ_IN(data, size);
  fb_t f;
  memset(&f, 0, sizeof f);
  /* A context per input, terminated at its end: everything ZeroMQ
   * allocated is freed before the input ends, so a leak is ours. */
  fb_ctx = zmq_ctx_new();
  FUZZ_ASSERT(fb_ctx != NULL);
  snprintf(fb_endpoint, sizeof fb_endpoint, "inproc://fuzz-broker-%u",
           ++fb_seq);

  unsigned c0 = fuzz_u8(&in), c1 = fuzz_u8(&in);
  mdp_broker_options_t o;
  mdp_broker_options_init(&o);
  o.zmq_context = fb_ctx;
  o.dialects = (c0 & 7) ? (c0 & 7) : MDP_DIALECT_ALL;
  if (c0 & 8) {
    o.heartbeat_interval_ms = 1;
    o.heartbeat_liveness = 2;
    o.busy_timeout_ms = 2;
    o.silent_busy_timeout_ms = 2;
    o.request_expiry_ms = 3;
  } else {
    o.heartbeat_interval_ms = 1000;
    o.heartbeat_liveness = 10;
  }
  static const size_t queues[4] = {10000, 1, 2, 0};
  o.max_queue = queues[(c0 >> 4) & 3];
  o.max_redispatch = (c0 & 0x40) ? 0 : 1;
  if (c0 & 0x80)
    o.max_msg_size = 64;
  if (c1 & 8) {
    o.max_queued_total = 3;
    o.max_services = 2;
    o.max_workers_per_service = 2;
  }
  o.log_cb = fb_log;
  o.log_data = &f;
  o.log_level = MDP_LOG_DEBUG;
  static const int hwms[4] = {0, 1, 2, 4};
  f.hwm = hwms[c1 & 3];
  f.drain_always = f.hwm == 0;
  f.close_at_log = c1 >> 4;
  f.dialects = o.dialects;

  FUZZ_ASSERT(uv_loop_init(&f.loop) == 0);
  FUZZ_ASSERT(mdp_broker_new(&f.loop, &o, &f.b) == 0);
  mdp_broker_set_data(f.b, &f);
  /* Nothing waits for the broker's last DISCONNECTs here, and a linger
   * would make zmq_ctx_term() below wait for them. */
  int zero = 0;
  zmq_setsockopt(f.b->socket, ZMQ_LINGER, &zero, sizeof zero);
  if (f.hwm)
    zmq_setsockopt(f.b->socket, ZMQ_SNDHWM, &f.hwm, sizeof f.hwm);
  if (c1 & 4)
    mdp_reactor_set_batch(f.b->reactor, 1);
  FUZZ_ASSERT(mdp_broker_bind(f.b, fb_endpoint) == 0 || f.closing);
  for (unsigned k = 0; k < FB_CONNECTED; k++)
    fb_peer_open(&f, k);

  /* A message without even an identity frame: never from a ROUTER, but the
   * entry point must take it. */
  if (!f.closing)
    mdp__broker_handle(f.b, mdp_msg_new());

  unsigned ticks = 0;
  uint8_t op;
  while (!f.closed && fuzz_byte(&in, &op)) {
    unsigned peer = op & 7, kind = op >> 3;
    if (kind == 24 || kind == 25) {
      if (ticks++ < FB_TICKS_MAX)
        uv_sleep(1);
    } else if (kind == 26 || kind == 27) {
      fb_drain(&f);
    } else if (kind == 28) {
      if (f.peers[peer])
        fb_peer_close(&f, peer);
      else
        fb_peer_open(&f, peer);
    } else if (kind == 29) {
      /* just run the loop */
    } else {
      mdp_msg_t *msg = mdp_msg_new();
      char id[3];
      fuzz_peer_id(peer, id);
      if (msg == NULL || mdp_msg_append_mem(msg, id, 2) != 0 ||
          fuzz_frames(&in, msg) != 0) {
        mdp_msg_destroy(msg);
        break;
      }
      mdp__broker_handle(f.b, msg);
    }
    fb_step(&f);
  }

  if (!f.closed) {
    fb_close(&f);
    /* After close and before the loop ran: dropped, not handled. */
    mdp_msg_t *late = mdp_msg_new();
    if (late != NULL) {
      mdp_msg_append_mem(late, "p0", 2);
      mdp_msg_append_str(late, MDP_WORKER_HEADER);
      mdp_msg_append_mem(late, "\x05", 1);
      mdp__broker_handle(f.b, late);
    }
  }
  uv_run(&f.loop, UV_RUN_DEFAULT);
  FUZZ_ASSERT(f.closed);
  fb_drain(&f);
  for (unsigned k = 0; k < FUZZ_PEERS; k++)
    if (f.peers[k])
      fb_peer_close(&f, k);
  FUZZ_ASSERT(uv_loop_close(&f.loop) == 0);
  /* libFuzzer's timeout alarm (SIGALRM, every second) interrupts it. */
  while (zmq_ctx_term(fb_ctx) != 0)
    FUZZ_ASSERT(zmq_errno() == EINTR);
  fb_ctx = NULL;
  return 0;
}
