/* mdp-bench: the load generators, one process each.
 *
 * The same code drives the real broker and the baseline:
 *   client     raw DEALER clients speaking MDP/0.2 (RFC 18 framing);
 *   worker     raw DEALER echo workers (READY, REQUEST -> [PARTIAL...] FINAL,
 *              HEARTBEAT every 2.5 s);
 *   idle       many raw DEALER workers that register and only heartbeat;
 *   libclient  one mdp_client_t with many requests in flight (scenario d);
 *   libworker  mdp_worker_t echo workers on one loop (scenario d).
 *
 * A request body is at least 16 bytes: bytes 0-7 carry the send time (ns,
 * CLOCK_MONOTONIC, shared by all processes), bytes 8-11 the sending slot.
 * Workers echo the body unchanged, moving the frames.  Latency is taken
 * when the FINAL arrives.  Every loop is bounded in count and time.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <mdp.h>

#include "mdp-bench.h"

#define HEARTBEAT_MS BENCH_HEARTBEAT_MS
#define MAX_SAMPLES 2000000
#define MIN_BODY 16

/* ---- common: phases, samples, the report -------------------------------- */

typedef struct {
  uint64_t *samples;
  size_t n_samples;
  uint64_t done;   /* FINALs in this phase */
  uint64_t sent;   /* requests sent in this phase */
  uint64_t errors;
  uint64_t target; /* requests to send (count mode), else 0 */
  uint64_t deadline_ns; /* stop sending after this (duration mode) */
  uint64_t start_ns;
  int measuring;
} phase_t;

static int phase_may_send(const phase_t *p) {
  if (p->target)
    return p->sent < p->target;
  return bench_now_ns() < p->deadline_ns;
}

static void phase_record(phase_t *p, uint64_t sent_ns) {
  p->done++;
  if (p->measuring && p->n_samples < MAX_SAMPLES)
    p->samples[p->n_samples++] = bench_now_ns() - sent_ns;
}

static void phase_report(phase_t *p, uint64_t elapsed) {
  uint64_t p50 = bench_quantile(p->samples, p->n_samples, 0.50);
  uint64_t p99 = bench_quantile(p->samples, p->n_samples, 0.99);
  uint64_t p999 = bench_quantile(p->samples, p->n_samples, 0.999);
  printf("done %llu %llu %llu %llu %llu %llu\n", (unsigned long long)p->done,
         (unsigned long long)elapsed, (unsigned long long)p50,
         (unsigned long long)p99, (unsigned long long)p999,
         (unsigned long long)p->errors);
  fflush(stdout);
}

/* Waits (bounded) for the parent's next command: 'g' runs a measured
 * phase, anything else (or EOF, or 5 minutes) ends.  0 for 'g', else -1. */
static int wait_for_go(void) {
  struct pollfd pfd = {0, POLLIN, 0};
  int rc;
  do
    rc = poll(&pfd, 1, 300000);
  while (rc < 0 && errno == EINTR);
  char c;
  return rc == 1 && read(0, &c, 1) == 1 && c == 'g' ? 0 : -1;
}

static void say_warm(void) {
  printf("warm\n");
  fflush(stdout);
}

static void body_stamp(unsigned char *b, uint32_t slot) {
  uint64_t now = bench_now_ns();
  memcpy(b, &now, 8);
  memcpy(b + 8, &slot, 4);
}

static void body_read(const void *data, size_t size, uint64_t *sent,
                      uint32_t *slot) {
  *sent = 0;
  *slot = 0;
  if (size >= 12) {
    memcpy(sent, data, 8);
    memcpy(slot, (const char *)data + 8, 4);
  }
}

/* ---- raw client --------------------------------------------------------- */

typedef struct {
  void *ctx;
  void **socks;
  zmq_pollitem_t *items;
  int n, k;
  size_t body;
  unsigned char **bufs; /* n*k slot buffers for large bodies */
  int *in_flight;       /* per socket */
  const char *service;
} rclient_t;

static int rclient_send(rclient_t *c, int i, uint32_t slot) {
  void *s = c->socks[i];
  zmq_msg_t body;
  if (c->bufs) {
    /* Large bodies: a constant frame over the slot's buffer, so the client
     * copies nothing (the slot is reused only after its FINAL came back). */
    body_stamp(c->bufs[slot], slot);
    zmq_msg_init_data(&body, c->bufs[slot], c->body, NULL, NULL);
  } else {
    zmq_msg_init_size(&body, c->body);
    memset(zmq_msg_data(&body), 0, c->body);
    body_stamp(zmq_msg_data(&body), slot);
  }
  static const unsigned char request = 0x01;
  if (zmq_send_const(s, "MDPC02", 6, ZMQ_SNDMORE) < 0 ||
      zmq_send_const(s, &request, 1, ZMQ_SNDMORE) < 0 ||
      zmq_send(s, c->service, strlen(c->service), ZMQ_SNDMORE) < 0 ||
      zmq_msg_send(&body, s, 0) < 0) {
    zmq_msg_close(&body);
    return -1;
  }
  c->in_flight[i]++;
  return 0;
}

/* Receives everything waiting on socket i; FINALs complete requests, and
 * each completed slot sends again while the phase allows. */
static void rclient_drain(rclient_t *c, int i, phase_t *p) {
  void *s = c->socks[i];
  for (;;) {
    zmq_msg_t f[8];
    int nf = 0, more = 1;
    while (more) {
      zmq_msg_t *m = &f[nf < 8 ? nf : 7];
      if (nf >= 8)
        zmq_msg_close(m);
      zmq_msg_init(m);
      if (zmq_msg_recv(m, s, nf ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(m);
        break;
      }
      more = zmq_msg_more(m);
      if (nf < 8)
        nf++;
    }
    if (nf == 0)
      return;
    int final = nf >= 4 && zmq_msg_size(&f[1]) == 1 &&
                *(unsigned char *)zmq_msg_data(&f[1]) == 0x03;
    int partial = nf >= 4 && zmq_msg_size(&f[1]) == 1 &&
                  *(unsigned char *)zmq_msg_data(&f[1]) == 0x02;
    if (final) {
      uint64_t sent;
      uint32_t slot;
      body_read(zmq_msg_data(&f[3]), zmq_msg_size(&f[3]), &sent, &slot);
      c->in_flight[i]--;
      phase_record(p, sent);
      if (phase_may_send(p) && rclient_send(c, i, slot) == 0)
        p->sent++;
    } else if (!partial) {
      p->errors++;
    }
    for (int j = 0; j < nf; j++)
      zmq_msg_close(&f[j]);
  }
}

static int total_in_flight(const rclient_t *c) {
  int t = 0;
  for (int i = 0; i < c->n; i++)
    t += c->in_flight[i];
  return t;
}

/* Runs one phase: k requests per socket, refilled on each FINAL until the
 * phase says stop, then drained.  0, or -1 if replies stopped coming for
 * timeout_ms. */
static int rclient_phase(rclient_t *c, phase_t *p, int timeout_ms) {
  p->start_ns = bench_now_ns();
  for (int i = 0; i < c->n; i++)
    for (int j = 0; j < c->k && phase_may_send(p); j++)
      if (rclient_send(c, i, (uint32_t)(i * c->k + j)) == 0)
        p->sent++;
  uint64_t last = bench_now_ns(), done = p->done;
  while (total_in_flight(c) > 0) {
    int rc = zmq_poll(c->items, c->n, 100);
    if (rc < 0 && zmq_errno() != EINTR)
      return -1;
    for (int i = 0; i < c->n; i++)
      if (rc > 0 && (c->items[i].revents & ZMQ_POLLIN))
        rclient_drain(c, i, p);
    uint64_t now = bench_now_ns();
    if (p->done != done) {
      done = p->done;
      last = now;
    } else if (now - last > (uint64_t)timeout_ms * 1000000ull) {
      fprintf(stderr, "client: no reply for %d ms, %d in flight\n",
              timeout_ms, total_in_flight(c));
      p->errors += (uint64_t)total_in_flight(c);
      return -1;
    }
  }
  return 0;
}

int bench_client_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  rclient_t c = {0};
  c.service = bench_arg_str(a, "service", BENCH_SERVICE);
  c.n = (int)bench_arg_int(a, "clients", 1);
  c.k = (int)bench_arg_int(a, "inflight", 1);
  c.body = (size_t)bench_arg_int(a, "body", MIN_BODY);
  long long warmup = bench_arg_int(a, "warmup", 100);
  long long count = bench_arg_int(a, "count", 0);
  long long duration_ms = bench_arg_int(a, "duration_ms", 2000);
  int timeout_ms = (int)bench_arg_int(a, "timeout_ms", 10000);
  int warm_ms = (int)bench_arg_int(a, "warm_ms", 30000);
  if (endpoint == NULL || c.n < 1 || c.k < 1) {
    fprintf(stderr, "client: bad arguments\n");
    return 2;
  }
  if (c.body < MIN_BODY)
    c.body = MIN_BODY;
  bench_raise_nofile();
  c.ctx = zmq_ctx_new();
  zmq_ctx_set(c.ctx, ZMQ_MAX_SOCKETS, 4096);
  c.socks = calloc((size_t)c.n, sizeof *c.socks);
  c.items = calloc((size_t)c.n, sizeof *c.items);
  c.in_flight = calloc((size_t)c.n, sizeof *c.in_flight);
  phase_t p = {0};
  p.samples = malloc(MAX_SAMPLES * sizeof *p.samples);
  int rc = 1;
  if (!c.socks || !c.items || !c.in_flight || !p.samples)
    goto out;
  if (c.body > 256) {
    c.bufs = calloc((size_t)(c.n * c.k), sizeof *c.bufs);
    if (c.bufs == NULL)
      goto out;
    for (int i = 0; i < c.n * c.k; i++)
      if ((c.bufs[i] = calloc(1, c.body)) == NULL)
        goto out;
  }
  for (int i = 0; i < c.n; i++) {
    int linger = 0;
    c.socks[i] = zmq_socket(c.ctx, ZMQ_DEALER);
    zmq_setsockopt(c.socks[i], ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(c.socks[i], endpoint) != 0) {
      fprintf(stderr, "client: cannot connect %s\n", endpoint);
      goto out;
    }
    c.items[i].socket = c.socks[i];
    c.items[i].events = ZMQ_POLLIN;
  }
  p.target = (uint64_t)(warmup > 0 ? warmup : 1);
  if (rclient_phase(&c, &p, warm_ms) < 0)
    goto out;
  say_warm();
  rc = 0;
  while (rc == 0 && wait_for_go() == 0) {
    phase_t m = {0};
    m.samples = p.samples;
    m.measuring = 1;
    m.target = (uint64_t)(count > 0 ? count : 0);
    m.deadline_ns = bench_now_ns() + (uint64_t)duration_ms * 1000000ull;
    int prc = rclient_phase(&c, &m, timeout_ms);
    phase_report(&m, bench_now_ns() - m.start_ns);
    rc = prc < 0 ? 1 : 0;
  }
out:
  for (int i = 0; c.socks && i < c.n; i++)
    if (c.socks[i])
      zmq_close(c.socks[i]);
  if (c.bufs)
    for (int i = 0; i < c.n * c.k; i++)
      free(c.bufs[i]);
  free(c.bufs);
  free(c.socks);
  free(c.items);
  free(c.in_flight);
  free(p.samples);
  zmq_ctx_term(c.ctx);
  return rc;
}

/* ---- raw workers -------------------------------------------------------- */

static const unsigned char w_ready = 0x01, w_partial = 0x03, w_final = 0x04,
                           w_heartbeat = 0x05;

static int send_cmd(void *s, const unsigned char *cmd, int more) {
  if (zmq_send_const(s, "MDPW02", 6, ZMQ_SNDMORE) < 0)
    return -1;
  return zmq_send_const(s, cmd, 1, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

static void send_ready(void *s, const char *service) {
  if (send_cmd(s, &w_ready, 1) == 0)
    zmq_send(s, service, strlen(service), 0);
}

/* [hdr | 0x02 | client | "" | body...]: echo body as `partials` PARTIALs
 * (copies by reference count) and a FINAL (moved). */
static void worker_reply(void *s, zmq_msg_t *f, int nf, int partials) {
  for (int r = 0; r <= partials; r++) {
    int final = r == partials;
    zmq_msg_t client;
    zmq_msg_init(&client);
    zmq_msg_copy(&client, &f[2]);
    send_cmd(s, final ? &w_final : &w_partial, 1);
    if (zmq_msg_send(&client, s, ZMQ_SNDMORE) < 0)
      zmq_msg_close(&client);
    zmq_send_const(s, "", 0, ZMQ_SNDMORE);
    for (int i = 4; i < nf; i++) {
      zmq_msg_t b;
      zmq_msg_init(&b);
      if (final)
        zmq_msg_move(&b, &f[i]);
      else
        zmq_msg_copy(&b, &f[i]);
      if (zmq_msg_send(&b, s, i + 1 < nf ? ZMQ_SNDMORE : 0) < 0)
        zmq_msg_close(&b);
    }
  }
}

static void worker_drain(void *s, int partials, const char *service) {
  for (;;) {
    zmq_msg_t f[16];
    int nf = 0, more = 1;
    while (more) {
      if (nf == 16) {
        zmq_msg_close(&f[15]);
        nf--;
      }
      zmq_msg_init(&f[nf]);
      if (zmq_msg_recv(&f[nf], s, nf ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f[nf]);
        break;
      }
      more = zmq_msg_more(&f[nf]);
      nf++;
    }
    if (nf == 0)
      return;
    unsigned char cmd =
        nf >= 2 && zmq_msg_size(&f[1]) == 1 ? *(unsigned char *)zmq_msg_data(
                                                  &f[1])
                                            : 0;
    if (cmd == 0x02 && nf >= 5)
      worker_reply(s, f, nf, partials);
    else if (cmd == 0x06) /* DISCONNECT: register again */
      send_ready(s, service);
    for (int i = 0; i < nf; i++)
      zmq_msg_close(&f[i]);
  }
}

int bench_worker_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  const char *service = bench_arg_str(a, "service", BENCH_SERVICE);
  int n = (int)bench_arg_int(a, "workers", 1);
  int partials = (int)bench_arg_int(a, "partials", 0);
  if (endpoint == NULL || n < 1)
    return 2;
  volatile int stop = 0;
  bench_on_term(&stop);
  bench_raise_nofile();
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 4096);
  void **socks = calloc((size_t)n, sizeof *socks);
  zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
  int rc = 1;
  if (!socks || !items)
    goto out;
  for (int i = 0; i < n; i++) {
    int linger = 0;
    socks[i] = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(socks[i], endpoint) != 0)
      goto out;
    send_ready(socks[i], service);
    items[i].socket = socks[i];
    items[i].events = ZMQ_POLLIN;
  }
  uint64_t next_hb = bench_now_ns() + HEARTBEAT_MS * 1000000ull;
  while (!stop) {
    uint64_t now = bench_now_ns();
    if (now >= next_hb) {
      for (int i = 0; i < n; i++)
        send_cmd(socks[i], &w_heartbeat, 0);
      next_hb = now + HEARTBEAT_MS * 1000000ull;
    }
    int r = zmq_poll(items, n, (long)((next_hb - now) / 1000000ull) + 1);
    if (r < 0 && zmq_errno() != EINTR)
      break;
    for (int i = 0; r > 0 && i < n; i++)
      if (items[i].revents & ZMQ_POLLIN)
        worker_drain(socks[i], partials, service);
  }
  rc = 0;
out:
  for (int i = 0; socks && i < n; i++)
    if (socks[i])
      zmq_close(socks[i]);
  free(socks);
  free(items);
  zmq_ctx_term(ctx);
  return rc;
}

/* Idle workers: `workers` sockets registered round-robin over `services`
 * services named "idle-N"; they heartbeat every 2.5 s, spread evenly, and
 * never read (the broker's HEARTBEATs wait in their pipes).  Prints "ready"
 * once every READY is queued. */
/* (h)'s idle clients: each asks mmi.service once and reads the answer, so
 * the broker has seen every one; then they stay connected, silent. */
static int idle_client_once(void *s) {
  static const unsigned char request = 0x01;
  if (zmq_send_const(s, "MDPC02", 6, ZMQ_SNDMORE) < 0 ||
      zmq_send_const(s, &request, 1, ZMQ_SNDMORE) < 0 ||
      zmq_send_const(s, "mmi.service", 11, ZMQ_SNDMORE) < 0 ||
      zmq_send_const(s, BENCH_SERVICE, strlen(BENCH_SERVICE), 0) < 0)
    return -1;
  return 0;
}

static int idle_client_answer(void *s) {
  int more = 1;
  while (more) {
    char buf[64];
    if (zmq_recv(s, buf, sizeof buf, 0) < 0)
      return -1;
    size_t sz = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &sz);
  }
  return 0;
}

/* (h)'s queued requests: `per` requests for BENCH_PARKED (a service no
 * worker offers), never answered. */
static int park_requests(void *s, int per) {
  static const unsigned char request = 0x01;
  unsigned char body[16] = {0};
  for (int i = 0; i < per; i++)
    if (zmq_send_const(s, "MDPC02", 6, ZMQ_SNDMORE) < 0 ||
        zmq_send_const(s, &request, 1, ZMQ_SNDMORE) < 0 ||
        zmq_send_const(s, BENCH_PARKED, strlen(BENCH_PARKED), ZMQ_SNDMORE) <
            0 ||
        zmq_send(s, body, sizeof body, 0) < 0)
      return -1;
  return 0;
}

/* Idle peers: kind=worker (READY for idle-K, then heartbeats unless
 * hb=0), kind=client (idle_client_once), kind=parked (`requests` requests
 * spread over the `workers` sockets).  Prints "ready" once all is sent (and,
 * for clients, answered). */
int bench_idle_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  const char *kind = bench_arg_str(a, "kind", "worker");
  int n = (int)bench_arg_int(a, "workers", 100);
  int services = (int)bench_arg_int(a, "services", 10);
  int offset = (int)bench_arg_int(a, "offset", 0);
  int hb = (int)bench_arg_int(a, "hb", 1);
  long requests = bench_arg_int(a, "requests", 0);
  int is_worker = strcmp(kind, "worker") == 0;
  int is_client = strcmp(kind, "client") == 0;
  int is_parked = strcmp(kind, "parked") == 0;
  if (endpoint == NULL || n < 1 || services < 1 ||
      !(is_worker || is_client || is_parked))
    return 2;
  volatile int stop = 0;
  bench_on_term(&stop);
  bench_raise_nofile();
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 16);
  void **socks = calloc((size_t)n, sizeof *socks);
  int rc = 1;
  if (!socks)
    goto out;
  for (int i = 0; i < n && !stop; i++) {
    int linger = 0;
    char name[32];
    socks[i] = zmq_socket(ctx, ZMQ_DEALER);
    if (socks[i] == NULL) {
      fprintf(stderr, "idle: socket %d: %s\n", i, zmq_strerror(zmq_errno()));
      goto out;
    }
    zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(socks[i], endpoint) != 0)
      goto out;
    if (is_worker) {
      snprintf(name, sizeof name, "idle-%d", (offset + i) % services);
      send_ready(socks[i], name);
    } else if (is_client) {
      int timeout = 120000;
      zmq_setsockopt(socks[i], ZMQ_RCVTIMEO, &timeout, sizeof timeout);
      if (idle_client_once(socks[i]) < 0)
        goto out;
    } else {
      long per = requests / n + (i < requests % n);
      if (park_requests(socks[i], (int)per) < 0)
        goto out;
    }
  }
  for (int i = 0; is_client && i < n && !stop; i++)
    if (idle_client_answer(socks[i]) < 0) {
      fprintf(stderr, "idle: client %d got no answer\n", i);
      goto out;
    }
  printf("ready\n");
  fflush(stdout);
  if (!is_worker || !hb) {
    while (!stop)
      bench_sleep_ms(50);
    rc = 0;
    goto out;
  }
  /* Every 10 ms, the heartbeats due by then at exactly n per interval
   * (from the clock, so that neither rounding nor the sleep's drift moves
   * the rate that (e)'s cost per heartbeat is divided by). */
  uint64_t t0 = bench_now_ns(), sent = 0;
  int next = 0;
  while (!stop) {
    bench_sleep_ms(10);
    uint64_t due =
        (bench_now_ns() - t0) / 1000000u * (uint64_t)n / BENCH_HEARTBEAT_MS;
    for (; sent < due; sent++) {
      send_cmd(socks[next], &w_heartbeat, 0);
      next = (next + 1) % n;
    }
  }
  rc = 0;
out:
  for (int i = 0; socks && i < n; i++)
    if (socks[i])
      zmq_close(socks[i]);
  free(socks);
  zmq_ctx_term(ctx);
  return rc;
}

/* ---- the library's client and workers (scenario d) --------------------- */

typedef struct {
  uv_loop_t loop;
  mdp_client_t *client;
  phase_t *p;
  const char *service;
  size_t body;
  uint64_t in_flight;
  int failed;
} lclient_t;

static void lclient_reply(mdp_client_t *client, uint64_t id, int status,
                          int final, mdp_msg_t *body, void *data);

static int lclient_send(lclient_t *c) {
  mdp_msg_t *m = mdp_msg_new();
  unsigned char b[MIN_BODY] = {0};
  body_stamp(b, 0);
  if (m == NULL || mdp_msg_append_mem(m, b, sizeof b) != 0 ||
      mdp_client_request(c->client, c->service, m, NULL, lclient_reply, c,
                         NULL) != 0) {
    mdp_msg_destroy(m);
    return -1;
  }
  c->in_flight++;
  c->p->sent++;
  return 0;
}

static void lclient_reply(mdp_client_t *client, uint64_t id, int status,
                          int final, mdp_msg_t *body, void *data) {
  (void)client;
  (void)id;
  lclient_t *c = data;
  if (status < 0) {
    c->p->errors++;
    c->failed = 1;
  } else if (final) {
    uint64_t sent;
    uint32_t slot;
    body_read(mdp_msg_data(body, 0), mdp_msg_frame_size(body, 0), &sent,
              &slot);
    phase_record(c->p, sent);
  }
  mdp_msg_destroy(body);
  if (!final)
    return;
  c->in_flight--;
  if (!c->failed && phase_may_send(c->p))
    lclient_send(c);
  if (c->in_flight == 0)
    uv_stop(&c->loop);
}

static int lclient_phase(lclient_t *c, phase_t *p, int k) {
  c->p = p;
  p->start_ns = bench_now_ns();
  for (int j = 0; j < k && phase_may_send(p); j++)
    if (lclient_send(c) < 0)
      return -1;
  if (c->in_flight > 0)
    uv_run(&c->loop, UV_RUN_DEFAULT);
  return c->failed ? -1 : 0;
}

int bench_libclient_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  lclient_t c = {0};
  c.service = bench_arg_str(a, "service", BENCH_SERVICE);
  int k = (int)bench_arg_int(a, "inflight", 1000);
  long long warmup = bench_arg_int(a, "warmup", 100);
  long long count = bench_arg_int(a, "count", 0);
  long long duration_ms = bench_arg_int(a, "duration_ms", 2000);
  if (endpoint == NULL || k < 1)
    return 2;
  bench_raise_nofile();
  uv_loop_init(&c.loop);
  mdp_client_options_t opts;
  mdp_client_options_init(&opts);
  opts.max_sockets = (size_t)bench_arg_int(a, "max_sockets", 64);
  opts.timeout_ms = (uint64_t)bench_arg_int(a, "timeout_ms", 10000);
  opts.retries = 0;
  opts.max_queue = 0; /* all of --lib-inflight may wait for a socket */
  phase_t p = {0};
  p.samples = malloc(MAX_SAMPLES * sizeof *p.samples);
  int rc = 1;
  if (p.samples == NULL ||
      mdp_client_new(&c.loop, &endpoint, 1, &opts, &c.client) != 0)
    goto out;
  p.target = (uint64_t)(warmup > 0 ? warmup : 1);
  if (lclient_phase(&c, &p, k) < 0)
    goto out;
  say_warm();
  rc = 0;
  while (rc == 0 && wait_for_go() == 0) {
    phase_t m = {0};
    m.samples = p.samples;
    m.measuring = 1;
    m.target = (uint64_t)(count > 0 ? count : 0);
    m.deadline_ns = bench_now_ns() + (uint64_t)duration_ms * 1000000ull;
    int prc = lclient_phase(&c, &m, k);
    phase_report(&m, bench_now_ns() - m.start_ns);
    rc = prc < 0 ? 1 : 0;
  }
out:
  if (c.client)
    mdp_client_close(c.client, NULL);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  uv_loop_close(&c.loop);
  mdp_zmq_context_term();
  free(p.samples);
  return rc;
}

typedef struct {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  mdp_worker_t **workers;
  int n;
  int partials;
} lworkers_t;

static void lworker_request(mdp_worker_t *worker, mdp_request_t req,
                            mdp_msg_t *body) {
  lworkers_t *w = mdp_worker_get_data(worker);
  for (int i = 0; i < w->partials; i++) {
    mdp_msg_t *copy = mdp_msg_dup(body);
    if (copy && mdp_worker_partial(req, copy) != 0)
      mdp_msg_destroy(copy);
  }
  if (mdp_worker_final(req, body) != 0)
    mdp_msg_destroy(body);
}

static void lworkers_stop(uv_signal_t *sig, int signum) {
  (void)signum;
  lworkers_t *w = sig->data;
  for (int i = 0; i < w->n; i++)
    if (w->workers[i])
      mdp_worker_close(w->workers[i], 0, NULL);
  uv_close((uv_handle_t *)&w->sigterm, NULL);
  uv_close((uv_handle_t *)&w->sigint, NULL);
}

int bench_libworker_main(const bench_args_t *a) {
  const char *endpoint = bench_arg_str(a, "endpoint", NULL);
  const char *service = bench_arg_str(a, "service", BENCH_SERVICE);
  lworkers_t w = {0};
  w.n = (int)bench_arg_int(a, "workers", 1);
  w.partials = (int)bench_arg_int(a, "partials", 0);
  if (endpoint == NULL || w.n < 1)
    return 2;
  bench_raise_nofile();
  uv_loop_init(&w.loop);
  w.workers = calloc((size_t)w.n, sizeof *w.workers);
  int rc = 0;
  for (int i = 0; w.workers && i < w.n; i++) {
    if (mdp_worker_new(&w.loop, endpoint, service, NULL, lworker_request,
                       &w.workers[i]) != 0) {
      rc = 1;
      break;
    }
    mdp_worker_set_data(w.workers[i], &w);
  }
  uv_signal_init(&w.loop, &w.sigterm);
  uv_signal_init(&w.loop, &w.sigint);
  w.sigterm.data = w.sigint.data = &w;
  uv_signal_start(&w.sigterm, lworkers_stop, SIGTERM);
  uv_signal_start(&w.sigint, lworkers_stop, SIGINT);
  if (rc != 0 || w.workers == NULL)
    lworkers_stop(&w.sigterm, SIGTERM);
  uv_run(&w.loop, UV_RUN_DEFAULT);
  uv_loop_close(&w.loop);
  mdp_zmq_context_term();
  free(w.workers);
  return rc;
}
