/* Fault tests: real processes (tools/mdp-broker, test/fault_worker) killed,
 * restarted, abandoned and flooded over tcp://127.0.0.1.
 *
 * Each test states what is promised and checks it; the figures it measures
 * are printed as TAP comments ("# figure: ...") and recorded in
 * docs/reliability.md.  Clients are raw DEALER sockets speaking RFC 18 (or
 * mdp_request_sync where a client's retry is the point).
 */
#define _GNU_SOURCE 1 /* prlimit */
#include "harness.h"
#include "peer.h"
#include "proc.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>

#define LIVENESS_MS 300 /* --heartbeat-interval 0.1 x --heartbeat-liveness 3 */

typedef struct {
  void *ctx;
  char ep[256];
  proc_t broker;
  proc_t workers[4];
  int n_workers;
  void *socks[64];
  int n_socks;
} fx_t;

static fx_t F;

static int broker_start(const char *const *extra) {
  const char *argv[24] = {build_path("tools/mdp-broker"), "-b", F.ep,
                          "--heartbeat-interval", "0.1",
                          "--heartbeat-liveness", "3", "-q"};
  int n = 8;
  while (extra && *extra && n < 23)
    argv[n++] = *extra++;
  argv[n] = NULL;
  return proc_spawn(&F.broker, argv);
}

static void mmi_workers(const char *service, long out[3]);

/* Waits until the broker just started answers MMI: 0, or -1 if it exited
 * (its endpoint taken, say by another program between free_tcp_endpoint
 * and its bind) or did not answer within 10 s. */
static int broker_answers(void) {
  long w[3] = {-1, -1, -1};
  uint64_t deadline = uv_hrtime() + t_slow(10000) * 1000000ull;
  while (w[0] < 0 && uv_hrtime() < deadline) {
    siginfo_t info = {0}; /* WNOWAIT: fx_close still reaps it */
    if (waitid(P_PID, (id_t)F.broker.pid, &info,
               WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == F.broker.pid) {
      printf("# the broker exited at start: %s\n", proc_stderr(&F.broker));
      return -1;
    }
    mmi_workers("-", w);
  }
  return w[0] < 0 ? -1 : 0;
}

/* The port free_tcp_endpoint() found may be taken by another program
 * before the broker binds it (the broker then exits at start): try again
 * on another, a few times.  `start` spawns the broker on F.ep. */
static int broker_start_answering(int (*start)(const void *), const void *arg) {
  for (int attempt = 0; attempt < 3; attempt++) {
    free_tcp_endpoint(F.ctx, F.ep, sizeof F.ep);
    if (start(arg) < 0)
      return -1;
    if (broker_answers() == 0)
      return 0;
    proc_kill(&F.broker);
    proc_cleanup(&F.broker);
  }
  return -1;
}

static int start_with_extra(const void *extra) {
  return broker_start(extra);
}

/* Starts the broker and waits until it answers MMI. */
static int fx_open(const char *const *broker_extra) {
  memset(&F, 0, sizeof F);
  F.ctx = zmq_ctx_new();
  zmq_ctx_set(F.ctx, ZMQ_MAX_SOCKETS, 30000);
  return broker_start_answering(start_with_extra, broker_extra);
}

static proc_t *worker_start(const char *service, const char *mode) {
  proc_t *w = &F.workers[F.n_workers++];
  const char *argv[] = {build_path("test/fault_worker"), F.ep, service, mode,
                        "100", NULL};
  if (proc_spawn(w, argv) < 0)
    return NULL;
  return proc_wait_output(w, "ready", 5000) ? w : NULL;
}

static void *client(void) {
  void *s = peer_new(F.ctx, ZMQ_DEALER, F.ep);
  F.socks[F.n_socks++] = s;
  return s;
}

static void fx_close(void) {
  for (int i = 0; i < F.n_socks; i++)
    if (F.socks[i])
      zmq_close(F.socks[i]);
  for (int i = 0; i < F.n_workers; i++) {
    proc_kill(&F.workers[i]);
    proc_cleanup(&F.workers[i]);
  }
  proc_kill(&F.broker);
  proc_cleanup(&F.broker);
  zmq_ctx_term(F.ctx);
}

/* mmi.workers for `service` through a fresh socket: idle, busy, queued;
 * -1s when the broker does not answer within 3 s. */
static void mmi_workers(const char *service, long out[3]) {
  peer_mmi_workers(F.ctx, F.ep, service, 3000, out);
}

/* Waits until mmi.workers reports `idle` and `busy` (-1: any). */
static int wait_workers(const char *service, long idle, long busy,
                        uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  long w[3];
  do {
    mmi_workers(service, w);
    if ((idle < 0 || w[0] == idle) && (busy < 0 || w[1] == busy))
      return 1;
    usleep(10000);
  } while (uv_hrtime() < deadline);
  printf("# mmi.workers %s: idle %ld busy %ld queued %ld\n", service, w[0],
         w[1], w[2]);
  return 0;
}

static double ms_since(uint64_t t0) { return (uv_hrtime() - t0) / 1e6; }

/* ---- a worker killed mid-request -------------------------------------- */

/* Promise: a request whose worker dies before any reply part is sent to
 * another worker, and the client gets its answer; the broker forgets the
 * dead worker within the liveness window. */
static void worker_killed_before_reply(void) {
  CHECK(fx_open(NULL) == 0);
  proc_t *hang = worker_start("svc", "hang");
  CHECK(hang != NULL);
  CHECK(wait_workers("svc", 1, 0, 5000));
  void *c = client();
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  /* `hang`, alone, has it; then a worker that would answer arrives. */
  CHECK(proc_wait_output(hang, "request", 5000));
  CHECK(worker_start("svc", "echo") != NULL);
  CHECK(wait_workers("svc", 1, 1, 5000));
  uint64_t t0 = uv_hrtime();
  kill(hang->pid, SIGKILL);
  mdp_msg_t *rep = peer_recv(NULL, c, 5000);
  double answered = ms_since(t0);
  CHECK(msg_is(rep, "MDPC02", "\x03", "svc", "job", NULL));
  mdp_msg_destroy(rep);
  CHECK(wait_workers("svc", 1, 0, 2000));
  double forgotten = ms_since(t0);
  printf("# figure: worker SIGKILLed mid-request: client answered %.0f ms "
         "after the kill, dead worker forgotten after %.0f ms (liveness "
         "window %d ms)\n",
         answered, forgotten, LIVENESS_MS);
  /* The figure above is the measure (docs/reliability.md); this bound only
   * catches an answer that came by some other, much slower way. */
  CHECK(answered < 5 * (LIVENESS_MS + 200) + t_slow(1000));
  fx_close();
}

/* Promise: if a PARTIAL was already forwarded, the request is not
 * replayed (the client would see its parts twice); the client's timeout
 * handles it, and the other worker stays free. */
static void worker_killed_after_partial(void) {
  CHECK(fx_open(NULL) == 0);
  proc_t *half = worker_start("svc", "partial-hang");
  CHECK(half != NULL);
  CHECK(wait_workers("svc", 1, 0, 5000));
  void *c = client();
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  mdp_msg_t *p = peer_recv(NULL, c, 5000);
  CHECK(msg_is(p, "MDPC02", "\x02", "svc", "part", NULL));
  mdp_msg_destroy(p);
  /* `half`, alone, had it; a worker that would answer it arrives. */
  proc_t *echo = worker_start("svc", "echo");
  CHECK(echo != NULL);
  CHECK(wait_workers("svc", 1, 1, 5000));
  kill(half->pid, SIGKILL);
  /* Nothing more reaches the client within 3 liveness windows ... */
  mdp_msg_t *more = peer_recv(NULL, c, 3 * LIVENESS_MS);
  CHECK(more == NULL);
  /* ... the echo worker never saw the request, and the dead one is gone. */
  CHECK(strstr(proc_stdout(echo), "request") == NULL);
  CHECK(wait_workers("svc", 1, 0, 2000));
  fx_close();
}

/* ---- workers that are silent while busy ------------------------------- */

/* Majortomo's broker command line, as its own system tests start it (here
 * with a 0.3 s silence window), plus `extra`. */
static int start_majortomo_style(const void *busy_timeout) {
  const char *argv[] = {build_path("tools/mdp-broker"), "-b", F.ep, "-i",
                        "0.1", "-t", "0.3", "-B", busy_timeout, "-q", NULL};
  return proc_spawn(&F.broker, argv);
}

static int fx_open_majortomo_style(const char *busy_timeout) {
  memset(&F, 0, sizeof F);
  F.ctx = zmq_ctx_new();
  return broker_start_answering(start_majortomo_style, busy_timeout);
}

/* test/silent_worker: heartbeats only while idle, as Majortomo's and the
 * zguide's worker libraries do; each request takes `work_ms`. */
static proc_t *silent_worker_start(const char *dialect, const char *work_ms) {
  proc_t *w = &F.workers[F.n_workers++];
  const char *argv[] = {build_path("test/silent_worker"), F.ep, "svc",
                        dialect, work_ms, "100", NULL};
  if (proc_spawn(w, argv) < 0)
    return NULL;
  return proc_wait_output(w, "ready", 5000) ? w : NULL;
}

/* The FINAL for `c`'s request, within `ms`: 1 if it came from `w` (the
 * silent worker names its pid in the first body frame). */
static int reply_from(void *c, const proc_t *w, uint64_t ms) {
  mdp_msg_t *m = peer_recv(NULL, c, ms);
  char name[32];
  snprintf(name, sizeof name, "pid:%ld", (long)w->pid);
  int ok = msg_is(m, "MDPC02", "\x03", "svc", name, "job", NULL);
  if (!ok)
    msg_dump("reply", m);
  mdp_msg_destroy(m);
  return ok;
}

static const char *const silent_dialects[] = {"majortomo", "mdp01"};

/* Promise: a request three times longer than the silence window, on a
 * worker that sends nothing while it works, is answered, and run once;
 * two in a row on the same worker too. */
static void silent_busy_worker_served_once(void) {
  for (size_t d = 0; d < 2; d++) {
    CHECK(fx_open_majortomo_style("900") == 0);
    proc_t *w = silent_worker_start(silent_dialects[d], "1000");
    CHECK(w != NULL);
    CHECK(wait_workers("svc", 1, 0, 5000));
    void *c = client();
    for (int round = 1; round <= 2; round++) {
      peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
      CHECK(reply_from(c, w, 5000));
    }
    /* Nothing more: each request ran exactly once. */
    CHECK(peer_recv(NULL, c, 300) == NULL);
    const char *out = proc_stdout(w);
    if (strstr(out, "request 3") != NULL || strstr(out, "request 2") == NULL)
      printf("# %s worker's stdout: %s\n", silent_dialects[d], out);
    CHECK(strstr(out, "request 2") != NULL);
    CHECK(strstr(out, "request 3") == NULL);
    /* It was never expired and never re-registered. */
    CHECK(wait_workers("svc", 1, 0, 2000));
    fx_close();
  }
}

/* Promise: a silent busy worker whose process dies is noticed within a few
 * heartbeat intervals, not at the busy timeout (900 s here): its request
 * is answered by another worker.  (RFC 18 workers heartbeat while busy:
 * worker_killed_before_reply; test_interop checks the detection by failed
 * heartbeats in all three dialects.) */
static void silent_busy_worker_killed(void) {
  const char *const *dialects = silent_dialects;
  for (size_t d = 0; d < 2; d++) {
    CHECK(fx_open_majortomo_style("900") == 0);
    proc_t *busy = silent_worker_start(dialects[d], "60000");
    CHECK(busy != NULL);
    CHECK(wait_workers("svc", 1, 0, 5000));
    void *c = client();
    peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
    CHECK(proc_wait_output(busy, "request 1", 5000));
    proc_t *other = silent_worker_start(dialects[d], "0");
    CHECK(other != NULL);
    CHECK(wait_workers("svc", 1, 1, 5000));
    uint64_t t0 = uv_hrtime();
    kill(busy->pid, SIGKILL);
    CHECK(reply_from(c, other, 5000));
    double ms = ms_since(t0);
    printf("# figure: %s worker SIGKILLed while busy and silent: answered "
           "by another %.0f ms after the kill (interval 100 ms)\n",
           dialects[d], ms);
    /* A few intervals, with room for a stall of this machine; the busy
     * timeout would have taken 900 s. */
    CHECK(ms < t_slow(2000));
    fx_close();
  }
}

/* Promise: a frozen busy worker (its connection stays open) is dropped at
 * the busy timeout, and its request goes to another worker. */
static void silent_busy_worker_frozen(void) {
  CHECK(fx_open_majortomo_style("1.0") == 0);
  proc_t *frozen = silent_worker_start("majortomo", "60000");
  CHECK(frozen != NULL);
  CHECK(wait_workers("svc", 1, 0, 5000));
  void *c = client();
  uint64_t t0 = uv_hrtime(); /* before the dispatch: a lower bound */
  peer_send(c, "MDPC02", "\x01", "svc", "job", NULL);
  CHECK(proc_wait_output(frozen, "request 1", 5000));
  kill(frozen->pid, SIGSTOP);
  proc_t *other = silent_worker_start("majortomo", "0");
  CHECK(other != NULL);
  CHECK(reply_from(c, other, 10000));
  double ms = ms_since(t0);
  printf("# figure: frozen (SIGSTOP) busy worker: request re-dispatched "
         "%.0f ms after it was sent (-B 1.0)\n", ms);
  CHECK(ms >= 1000 - 1);
  CHECK(ms < t_slow(5000));
  kill(frozen->pid, SIGCONT);
  fx_close();
}

/* ---- the broker killed and restarted ---------------------------------- */

/* Promise: workers re-register by themselves within their liveness window
 * (plus reconnect back-off), and a client's retries succeed. */
static void broker_killed_and_restarted(void) {
  CHECK(fx_open(NULL) == 0);
  CHECK(worker_start("echo", "echo") != NULL);
  CHECK(wait_workers("echo", 1, 0, 5000));
  mdp_client_options_t copts;
  mdp_client_options_init(&copts);
  copts.zmq_context = F.ctx;
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_str(body, "before");
  mdp_reply_t reply = {0};
  CHECK_EQ(mdp_request_sync(F.ep, "echo", body, 1000, 0, &copts, &reply), 0);
  mdp_reply_free(&reply);
  proc_kill(&F.broker);
  proc_cleanup(&F.broker);
  uint64_t t0 = uv_hrtime();
  CHECK(broker_start(NULL) == 0);
  /* One call with retries: the first attempts may find no worker yet. */
  mdp_msg_destroy(body);
  body = mdp_msg_new();
  mdp_msg_append_str(body, "after");
  int rc = mdp_request_sync(F.ep, "echo", body, 300, 20, &copts, &reply);
  double ms = ms_since(t0);
  int ok = rc == 0 && reply.count == 1 &&
           mdp_msg_frame_eq(reply.parts[0], 0, "after", 5);
  mdp_reply_free(&reply);
  mdp_msg_destroy(body);
  printf("# figure: broker SIGKILLed and restarted: first request served "
         "%.0f ms after the restart (worker liveness window %d ms)\n",
         ms, LIVENESS_MS);
  if (rc != 0)
    printf("# request: %s\n", mdp_strerror(rc));
  CHECK(ok);
  CHECK(ms < t_slow(5000));
  fx_close();
}

/* ---- a client that vanishes mid-stream -------------------------------- */

/* Promise: the broker drops the replies of a vanished client, the worker
 * returns to idle, and nothing grows. */
static void client_vanishes_mid_stream(void) {
  CHECK(fx_open(NULL) == 0);
  CHECK(worker_start("stream", "stream") != NULL);
  CHECK(wait_workers("stream", 1, 0, 5000));
  long rss0 = proc_rss_kb(F.broker.pid);
  for (int round = 0; round < 6; round++) {
    void *c = peer_new(F.ctx, ZMQ_DEALER, F.ep);
    peer_send(c, "MDPC02", "\x01", "stream", "go", NULL);
    for (int i = 0; i < 2; i++) {
      mdp_msg_t *m = peer_recv(NULL, c, 5000);
      CHECK(msg_is(m, "MDPC02", "\x02", "stream", "chunk", NULL));
      mdp_msg_destroy(m);
    }
    zmq_close(c); /* gone, 48 parts and the FINAL still to come */
    CHECK(wait_workers("stream", 1, 0, 5000)); /* the stream ran out */
  }
  long rss1 = proc_rss_kb(F.broker.pid);
  /* The next client is served normally. */
  void *c = client();
  peer_send(c, "MDPC02", "\x01", "stream", "go", NULL);
  int parts = 0, final = 0;
  while (!final) {
    mdp_msg_t *m = peer_recv(NULL, c, 5000);
    CHECK(m != NULL);
    final = msg_is(m, "MDPC02", "\x03", "stream", "end", NULL);
    parts += !final;
    mdp_msg_destroy(m);
  }
  CHECK_EQ(parts, 50);
  printf("# figure: 6 clients vanished mid-stream: broker RSS %ld -> %ld KiB\n",
         rss0, rss1);
  CHECK(T_ASAN || rss1 - rss0 < 2048);
  fx_close();
}

/* ---- floods ----------------------------------------------------------- */

/* Promise: 100,000 requests for a service with one slow worker: the broker
 * stays responsive (MMI within a bound), keeps its queue limit, and its
 * memory comes back down after the flood. */
static void request_flood(void) {
  const char *extra[] = {"--max-queue", "10000", "--request-expiry", "1",
                         NULL};
  CHECK(fx_open(extra) == 0);
  CHECK(worker_start("slow", "slow") != NULL);
  CHECK(wait_workers("slow", 1, 0, 5000));
  long rss0 = proc_rss_kb(F.broker.pid);
  enum { CLIENTS = 10 };
  int per_client = t_scale(10000);
  void *cs[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    cs[i] = client();
    int hwm = 0; /* let the flood through at full speed */
    zmq_setsockopt(cs[i], ZMQ_SNDHWM, &hwm, sizeof hwm);
  }
  for (int n = 0; n < per_client; n++)
    for (int i = 0; i < CLIENTS; i++)
      peer_send(cs[i], "MDPC02", "\x01", "slow", "flood", NULL);
  /* While it is absorbed, MMI keeps answering. */
  double worst = 0;
  long peak_queue = 0, peak_rss = rss0;
  for (int probe = 0; probe < 20; probe++) {
    uint64_t t0 = uv_hrtime();
    long w[3];
    mmi_workers("slow", w);
    double ms = ms_since(t0);
    CHECK(w[0] >= 0); /* answered */
    worst = ms > worst ? ms : worst;
    peak_queue = w[2] > peak_queue ? w[2] : peak_queue;
    long rss = proc_rss_kb(F.broker.pid);
    peak_rss = rss > peak_rss ? rss : peak_rss;
    usleep(50000);
  }
  CHECK(peak_queue <= 10000);
  /* The queue expires (1 s) and memory comes back down. */
  uint64_t t0 = uv_hrtime();
  long w[3];
  do {
    usleep(100000);
    mmi_workers("slow", w);
  } while (w[2] != 0 && ms_since(t0) < t_slow(10000));
  CHECK_EQ(w[2], 0);
  /* The broker trims its heap from a timer, within a second or so of the
   * queue's emptying: wait for that, at most a few seconds. */
  long rss1;
  t0 = uv_hrtime();
  do {
    usleep(100000);
    rss1 = proc_rss_kb(F.broker.pid);
  } while (rss1 - rss0 > (peak_rss - rss0) / 10 + 4096 &&
           ms_since(t0) < t_slow(3000));
  printf("# figure: flood of %d requests on one slow worker: MMI worst "
         "latency %.1f ms, peak queue %ld (limit 10000), broker RSS %ld -> "
         "peak %ld -> %ld KiB after the queue expired\n",
         per_client * CLIENTS, worst, peak_queue, rss0, peak_rss, rss1);
  /* The figure is the measure; the bound is "answered, never blocked"
   * with room for a stall of this shared machine. */
  CHECK(worst < t_slow(3000));
  /* Near its start: within 10% of the peak growth plus 4 MiB of slack for
   * the allocator's retained arenas. */
  CHECK(T_ASAN || rss1 - rss0 <= (peak_rss - rss0) / 10 + 4096);
  fx_close();
}

/* Promise: many peers connecting at once are all served. */
static void connection_flood(void) {
  /* These raw workers do not heartbeat: give them a long liveness. */
  const char *extra[] = {"--heartbeat-interval", "2", "--heartbeat-liveness",
                         "30", NULL};
  CHECK(fx_open(extra) == 0);
  /* 1000 in CI; MDP_FLOOD_PEERS=10000 for the figure in reliability.md
   * (needs `ulimit -n` above 3 x that). */
  const char *env = getenv("MDP_FLOOD_PEERS");
  int n = env ? atoi(env) : t_scale(1000);
  long rss0 = proc_rss_kb(F.broker.pid);
  /* n workers register at once ... */
  void **ws = calloc((size_t)n, sizeof *ws);
  for (int i = 0; i < n; i++) {
    ws[i] = peer_new(F.ctx, ZMQ_DEALER, F.ep);
    peer_send(ws[i], "MDPW02", "\x01", "many", NULL);
  }
  uint64_t t0 = uv_hrtime();
  CHECK(wait_workers("many", n, 0, 20000));
  double reg_ms = ms_since(t0);
  long rss_workers = proc_rss_kb(F.broker.pid);
  /* ... then n clients each send one request at once; every worker
   * answers what it gets. */
  void **cs = calloc((size_t)n, sizeof *cs);
  for (int i = 0; i < n; i++) {
    cs[i] = peer_new(F.ctx, ZMQ_DEALER, F.ep);
    peer_send(cs[i], "MDPC02", "\x01", "many", "hi", NULL);
  }
  int answered = 0;
  t0 = uv_hrtime();
  while (answered < n && ms_since(t0) < t_slow(20000)) {
    for (int i = 0; i < n; i++) {
      mdp_msg_t *m = peer_try_recv(ws[i]);
      if (m && msg_is(m, "MDPW02", "\x02", ANY, "", "hi", NULL)) {
        mdp_msg_t *r = mdp_msg_new();
        mdp_msg_append_str(r, "MDPW02");
        mdp_msg_append_str(r, "\x04");
        mdp_msg_append_mem(r, mdp_msg_data(m, 2), mdp_msg_frame_size(m, 2));
        mdp_msg_append_str(r, "");
        mdp_msg_append_str(r, "ho");
        peer_send_msg(ws[i], r);
      }
      mdp_msg_destroy(m);
      m = peer_try_recv(cs[i]);
      if (m && msg_is(m, "MDPC02", "\x03", "many", "ho", NULL))
        answered++;
      mdp_msg_destroy(m);
    }
  }
  double serve_ms = ms_since(t0);
  printf("# figure: %d workers registered at once in %.0f ms (broker RSS "
         "%ld -> %ld KiB, %.1f KiB per worker); %d clients at once all "
         "answered in %.0f ms\n",
         n, reg_ms, rss0, rss_workers,
         (double)(rss_workers - rss0) / n, n, serve_ms);
  CHECK_EQ(answered, n);
  for (int i = 0; i < n; i++) {
    zmq_close(ws[i]);
    zmq_close(cs[i]);
  }
  free(ws);
  free(cs);
  fx_close();
}


/* ---- a hostile peer's flood of messages the broker drops --------------- */

/* Sends `count` messages of `frames` frames of `size` bytes each (the first
 * `nhead` frames given, the rest filler) from `s`. */
static void flood_send(void *s, int count, const char *const *head, int nhead,
                       int frames, size_t size) {
  static char filler[4096];
  for (int m = 0; m < count; m++)
    for (int f = 0; f < frames; f++) {
      int more = f + 1 < frames ? ZMQ_SNDMORE : 0;
      if (f < nhead)
        zmq_send(s, head[f], strlen(head[f]), more);
      else
        zmq_send(s, filler, size < sizeof filler ? size : sizeof filler,
                 more);
    }
}

/* Promise: no flood of messages the broker drops makes it hold memory
 * without bound or stop answering.  Every drop path, in each dialect: too
 * many frames (the path whose receive buffer grew by ~1,025 slots per
 * dropped message and took the broker to hundreds of MB), a frame over
 * --max-msg-size (the peer is disconnected), a bad header, an unknown
 * command, an empty message.  The broker's RSS stays within RSS_FLOOD_KB
 * of where it started, MMI answers, and a real worker still serves a
 * request through it afterwards. */
#define RSS_FLOOD_KB (32 * 1024)
#define VSZ_ROOM_KB (256 * 1024)
static void hostile_flood_bounded(void) {
  /* libzmq holds up to --rcvhwm messages per peer before the broker reads
   * them, each of up to max_frames 64-byte frame structs: at the default
   * 1000, a sender faster than the broker parks ~70 MB of 1,100-frame
   * messages in libzmq's pipe, which is libzmq's bound, not ours.  100
   * keeps that part at ~7 MB, so what is measured is the broker's own. */
  const char *extra[] = {"--max-msg-size", "65536", "--rcvhwm", "100", NULL};
  CHECK(fx_open(extra) == 0);
  long rss0 = proc_rss_kb(F.broker.pid);
  long peak = rss0;
  /* The defect grew address space, mostly untouched (so not RSS): under a
   * limit, as with strict overcommit, the receive buffer's growth failed
   * and every later message was dropped: the broker went deaf.  Give it
   * VSZ_ROOM_KB of room, which the flood of over-long messages took
   * several times over (~64 KiB each); ASan reserves terabytes of
   * address space, so not there. */
  long vsz0 = proc_vsz_kb(F.broker.pid), vsz_peak = vsz0;
  if (!T_ASAN && vsz0 > 0) {
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(vsz0 + VSZ_ROOM_KB) * 1024;
    CHECK(prlimit(F.broker.pid, RLIMIT_AS, &rl, NULL) == 0);
  }
  int n = t_scale(8000);
  struct {
    const char *what;
    const char *head[4];
    int nhead, frames, count;
    size_t size;
  } floods[] = {
      /* 1,100 empty frames: over --max-frames (1024) */
      {"too many frames (rfc18 client)", {"MDPC02", "\x01", "x"}, 3, 1100, n, 0},
      {"too many frames (rfc18 worker)", {"MDPW02", "\x01", "x"}, 3, 1100, n / 4, 0},
      {"too many frames (majortomo)", {"", "MDPC02", "\x02", "x"}, 4, 1100, n / 4, 0},
      {"too many frames (mdp01)", {"", "MDPC01", "x"}, 3, 1100, n / 4, 0},
      {"bad header", {"MDPX99", "\x01", "x"}, 3, 3, n * 10, 0},
      {"unknown command (rfc18 worker)", {"MDPW02", "\x09"}, 2, 3, n * 10, 0},
      {"unknown command (rfc18 client)", {"MDPC02", "\x07", "x"}, 3, 4, n * 10, 0},
      {"unknown command (majortomo)", {"", "MDPW02", "\x0b"}, 3, 3, n * 10, 0},
      {"unknown command (mdp01 worker)", {"", "MDPW01", "\x09"}, 3, 3, n * 10, 0},
      {"empty body, 1 KiB filler frames", {"MDPC02", "\x01", "mmi.nothing"}, 3, 6, n, 1024},
  };
  for (size_t i = 0; i < sizeof floods / sizeof floods[0]; i++) {
    void *s = client();
    int hwm = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    uint64_t t0 = uv_hrtime();
    flood_send(s, floods[i].count, floods[i].head, floods[i].nhead,
               floods[i].frames, floods[i].size);
    /* MMI on the same connection: its answer comes after the broker has
     * been through the whole flood (ZeroMQ keeps a connection's order). */
    peer_send(s, "MDPC02", "\x01", "mmi.service", "echo", NULL);
    int answered = 0;
    for (mdp_msg_t *m; !answered && (m = peer_recv(NULL, s, 20000)) != NULL;) {
      /* (A flood of requests to an unknown mmi.* service gets its 501s.) */
      answered = msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL);
      mdp_msg_destroy(m);
    }
    CHECK(answered);
    long rss = proc_rss_kb(F.broker.pid), vsz = proc_vsz_kb(F.broker.pid);
    peak = rss > peak ? rss : peak;
    vsz_peak = vsz > vsz_peak ? vsz : vsz_peak;
    printf("# %s: %d messages, %.0f ms, broker RSS %ld KiB, VSZ %ld KiB\n",
           floods[i].what, floods[i].count, ms_since(t0), rss, vsz);
  }
  /* Frames over --max-msg-size: the peer is disconnected each time. */
  for (int i = 0; i < t_scale(50); i++) {
    void *s = peer_new(F.ctx, ZMQ_DEALER, F.ep);
    static char big[128 * 1024];
    zmq_send(s, "MDPC02", 6, ZMQ_SNDMORE);
    zmq_send(s, "\x01", 1, ZMQ_SNDMORE);
    zmq_send(s, "echo", 4, ZMQ_SNDMORE);
    zmq_send(s, big, sizeof big, 0);
    zmq_close(s);
  }
  long w[3];
  mmi_workers("-", w);
  CHECK(w[0] >= 0);
  long rss = proc_rss_kb(F.broker.pid);
  peak = rss > peak ? rss : peak;
  /* Still serving: a real worker answers a request. */
  CHECK(worker_start("echo", "echo") != NULL);
  CHECK(wait_workers("echo", 1, 0, 5000));
  void *c = client();
  peer_send(c, "MDPC02", "\x01", "echo", "after the flood", NULL);
  mdp_msg_t *reply = peer_recv(NULL, c, 5000);
  CHECK(reply != NULL &&
        msg_is(reply, "MDPC02", "\x03", "echo", "after the flood", NULL));
  mdp_msg_destroy(reply);
  printf("# figure: hostile flood of every drop path: broker RSS %ld KiB "
         "before, peak %ld KiB (bound: +%d KiB); address space %ld -> peak "
         "%ld KiB (limit +%d KiB)\n",
         rss0, peak, RSS_FLOOD_KB, vsz0, vsz_peak, VSZ_ROOM_KB);
  CHECK(T_ASAN || peak - rss0 <= RSS_FLOOD_KB);
  CHECK(T_ASAN || vsz_peak - vsz0 <= VSZ_ROOM_KB / 2);
  fx_close();
}

/* A signal that lands while libzmq processes a socket's commands, which
 * zmq_connect and zmq_bind do first, fails them with EINTR having done
 * nothing (a worker tool's SIGCHLD, a timer's SIGALRM): the library tries
 * again instead of failing the new worker or the bind.  A SIGALRM every
 * 20 us, without SA_RESTART, through 400 workers made and 40 binds (without
 * the retries about 1 in 12 failed). */
static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  alarms++;
}

static void on_sig_worker(mdp_worker_t *w, mdp_request_t req, mdp_msg_t *body) {
  (void)w;
  (void)req;
  mdp_msg_destroy(body);
}

static void on_sig_worker_closed(mdp_worker_t *w) { (void)w; }
static void on_sig_broker_closed(mdp_broker_t *b) { (void)b; }

static void connect_and_bind_under_signals(void) {
  uv_loop_t loop;
  CHECK_EQ(uv_loop_init(&loop), 0);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART */
  sigemptyset(&sa.sa_mask);
  CHECK_EQ(sigaction(SIGALRM, &sa, &old), 0);
  struct itimerval it = {{0, 20}, {0, 20}}, stop = {{0, 0}, {0, 0}};
  alarms = 0;
  CHECK_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
  int failed = 0;
  for (int i = 0; i < 40; i++) {
    mdp_broker_options_t bo;
    mdp_broker_options_init(&bo);
    mdp_broker_t *b = NULL;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://signals-%d", i);
    CHECK_EQ(mdp_broker_new(&loop, &bo, &b), 0);
    if (mdp_broker_bind(b, ep) != 0)
      failed++;
    for (int j = 0; j < 10; j++) {
      mdp_worker_t *w = NULL;
      if (mdp_worker_new(&loop, ep, "svc", NULL, on_sig_worker, &w) != 0) {
        failed++;
        continue;
      }
      mdp_worker_close(w, 0, on_sig_worker_closed);
    }
    mdp_broker_close(b, on_sig_broker_closed);
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0)
      ;
  }
  CHECK_EQ(setitimer(ITIMER_REAL, &stop, NULL), 0);
  sigaction(SIGALRM, &old, NULL);
  printf("# %d SIGALRMs during 40 binds and 400 workers made; %d failed\n",
         (int)alarms, failed);
  CHECK(alarms > 100);
  CHECK_EQ(failed, 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

int main(void) {
  RUN(worker_killed_before_reply);
  RUN(worker_killed_after_partial);
  RUN(silent_busy_worker_served_once);
  RUN(silent_busy_worker_killed);
  RUN(silent_busy_worker_frozen);
  RUN(broker_killed_and_restarted);
  RUN(client_vanishes_mid_stream);
  RUN(request_flood);
  RUN(connection_flood);
  RUN(hostile_flood_bounded);
  RUN(connect_and_bind_under_signals);
  t_context_term();
  return t_done();
}
