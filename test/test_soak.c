/* Soak: minutes of mixed traffic through a real mdp-broker process, with
 * workers and clients coming and going.
 *
 * Promises checked:
 *   - every request the clients made ends in exactly one final callback:
 *     a FINAL, or an error (timeout, cancelled by a client's close); none is
 *     silently lost;
 *   - the broker's RSS after the warm-up stays within a stated bound.
 * MDP_SOAK_SECONDS sets the length (default 120; the figure in
 * docs/reliability.md comes from a longer run).
 */
#include "harness.h"
#include "peer.h"
#include "proc.h"

#define MAX_WORKERS 8
#define MAX_CLIENTS 4
#define IN_FLIGHT 40
#define RSS_BOUND_KB 2048

typedef struct {
  mdp_worker_t *w;
  uv_timer_t timer; /* the delayed reply */
  mdp_request_t req;
  mdp_msg_t *body;  /* held until the delayed reply */
  int parts_left;   /* PARTIALs still to send before the FINAL */
  int in_use;
  int closing;
} soak_worker_t;

typedef struct {
  mdp_client_t *c;
  int closing;
} soak_client_t;

static uv_loop_t loop;
static char endpoint[256];
static void *ctx;
static soak_worker_t workers[MAX_WORKERS];
static soak_client_t clients[MAX_CLIENTS];
static uint64_t issued, finals, failed, partials, bad_callbacks;
static uint64_t worker_churn, client_churn;
static int outstanding;
static int stopping;
static unsigned rng = 12345;

static unsigned rnd(unsigned n) {
  rng = rng * 1103515245u + 12345u;
  return (rng >> 8) % n;
}

/* ---- workers ----------------------------------------------------------- */

static void reply_later(uv_timer_t *t) {
  soak_worker_t *sw = t->data;
  if (sw->parts_left > 0) {
    mdp_msg_t *part = mdp_msg_new();
    mdp_msg_append_str(part, "part");
    if (mdp_worker_partial(sw->req, part) < 0)
      mdp_msg_destroy(part); /* the request was abandoned */
    sw->parts_left--;
    uv_timer_start(&sw->timer, reply_later, 1 + rnd(5), 0);
    return;
  }
  if (mdp_worker_final(sw->req, sw->body) < 0)
    mdp_msg_destroy(sw->body);
  sw->body = NULL;
}

static void on_request(mdp_worker_t *w, mdp_request_t req,
                       mdp_msg_t *body) {
  soak_worker_t *sw = mdp_worker_get_data(w);
  mdp_msg_destroy(sw->body); /* a request abandoned before its reply */
  sw->req = req;
  sw->body = body;
  sw->parts_left = rnd(4) == 0 ? 3 : 0;
  uv_timer_start(&sw->timer, reply_later, rnd(15), 0);
}

static void on_worker_timer_closed(uv_handle_t *h) {
  soak_worker_t *sw = h->data;
  mdp_msg_destroy(sw->body);
  sw->body = NULL;
  sw->in_use = 0;
  sw->closing = 0;
}

static void on_worker_closed(mdp_worker_t *w) {
  soak_worker_t *sw = mdp_worker_get_data(w);
  uv_close((uv_handle_t *)&sw->timer, on_worker_timer_closed);
}

static void worker_add(void) {
  for (int i = 0; i < MAX_WORKERS; i++) {
    soak_worker_t *sw = &workers[i];
    if (sw->in_use)
      continue;
    mdp_worker_options_t o;
    mdp_worker_options_init(&o);
    o.zmq_context = ctx;
    o.heartbeat_interval_ms = 200;
    o.heartbeat_liveness = 5;
    o.reconnect_initial_ms = 50;
    o.reconnect_max_ms = 500;
    if (mdp_worker_new(&loop, endpoint, "soak", &o, on_request, &sw->w) != 0)
      return;
    memset(&sw->req, 0, sizeof sw->req);
    sw->body = NULL;
    sw->in_use = 1;
    sw->closing = 0;
    mdp_worker_set_data(sw->w, sw);
    uv_timer_init(&loop, &sw->timer);
    sw->timer.data = sw;
    return;
  }
}

static void worker_remove(int i, int wait) {
  soak_worker_t *sw = &workers[i];
  if (!sw->in_use || sw->closing)
    return;
  sw->closing = 1;
  if (!wait) /* with wait, the pending reply still has to go out */
    uv_timer_stop(&sw->timer);
  worker_churn++;
  mdp_worker_close(sw->w, wait, on_worker_closed);
}

/* ---- clients ----------------------------------------------------------- */

static void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  (void)c;
  (void)id;
  (void)data;
  if (status == 0 && !final) {
    partials++;
    mdp_msg_destroy(body);
    return;
  }
  if (!final)
    bad_callbacks++;
  if (status == 0) {
    if (!mdp_msg_frame_eq(body, 0, "ping", 4))
      bad_callbacks++;
    finals++;
  } else {
    failed++;
  }
  mdp_msg_destroy(body);
  outstanding--;
}

static void on_client_closed(mdp_client_t *c) {
  soak_client_t *sc = mdp_client_get_data(c);
  sc->c = NULL;
  sc->closing = 0;
}

static void client_add(void) {
  for (int i = 0; i < MAX_CLIENTS; i++) {
    soak_client_t *sc = &clients[i];
    if (sc->c || sc->closing)
      continue;
    mdp_client_options_t o;
    mdp_client_options_init(&o);
    o.zmq_context = ctx;
    o.timeout_ms = 1000;
    o.retries = 2;
    const char *eps[] = {endpoint};
    if (mdp_client_new(&loop, eps, 1, &o, &sc->c) == 0)
      mdp_client_set_data(sc->c, sc);
    return;
  }
}

static void client_remove(int i) {
  soak_client_t *sc = &clients[i];
  if (sc->c == NULL || sc->closing)
    return;
  sc->closing = 1;
  client_churn++;
  mdp_client_close(sc->c, on_client_closed); /* pending: ECANCELED */
}

static void top_up(void) {
  while (!stopping && outstanding < IN_FLIGHT) {
    soak_client_t *sc = &clients[rnd(MAX_CLIENTS)];
    if (sc->c == NULL || sc->closing)
      return;
    mdp_msg_t *body = mdp_msg_new();
    mdp_msg_append_str(body, "ping");
    if (mdp_client_request(sc->c, "soak", body, NULL, on_reply, NULL,
                           NULL) != 0) {
      mdp_msg_destroy(body);
      return;
    }
    issued++;
    outstanding++;
  }
}

/* ---- the churn --------------------------------------------------------- */

static uv_timer_t churn_timer, traffic_timer;

static void on_churn(uv_timer_t *t) {
  (void)t;
  switch (rnd(6)) {
  case 0:
    worker_remove((int)rnd(MAX_WORKERS), 0); /* abandons its request */
    break;
  case 1:
    worker_remove((int)rnd(MAX_WORKERS), 1); /* finishes it first */
    break;
  case 2:
    client_remove((int)rnd(MAX_CLIENTS));
    break;
  default:
    worker_add();
    client_add();
    break;
  }
}

static void on_traffic(uv_timer_t *t) {
  (void)t;
  top_up();
}

static int all_done(void *arg) {
  (void)arg;
  return outstanding == 0;
}

static int everything_closed(void *arg) {
  (void)arg;
  for (int i = 0; i < MAX_WORKERS; i++)
    if (workers[i].in_use)
      return 0;
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i].c)
      return 0;
  return 1;
}

static void soak(void) {
  const char *env = getenv("MDP_SOAK_SECONDS");
  double seconds = env ? atof(env) : 120;
  uv_loop_init(&loop);
  ctx = zmq_ctx_new();
  free_tcp_endpoint(ctx, endpoint, sizeof endpoint);
  proc_t broker;
  const char *argv[] = {build_path("tools/mdp-broker"), "-b", endpoint,
                        "--heartbeat-interval", "0.2", "--heartbeat-liveness",
                        "5", "-q", NULL};
  CHECK(proc_spawn(&broker, argv) == 0);
  for (int i = 0; i < MAX_WORKERS / 2; i++)
    worker_add();
  for (int i = 0; i < MAX_CLIENTS / 2; i++)
    client_add();
  uv_timer_init(&loop, &churn_timer);
  uv_timer_init(&loop, &traffic_timer);
  uv_timer_start(&churn_timer, on_churn, 100, 100);
  uv_timer_start(&traffic_timer, on_traffic, 1, 1);

  /* RSS in eighths of the run; the first half is the warm-up (allocator
   * arenas and ZeroMQ's buffers reach their working size), the bound
   * applies to the second half. */
  long rss[9];
  uint64_t issued_warm = 0;
  rss[0] = proc_rss_kb(broker.pid);
  for (int i = 1; i <= 8; i++) {
    t_run_until(&loop, NULL, NULL, (uint64_t)(seconds * 1000 / 8));
    rss[i] = proc_rss_kb(broker.pid);
    if (i == 4)
      issued_warm = issued;
  }
  long rss_warm = rss[4], rss_end = rss[8];
  printf("# broker RSS (KiB) by eighths of the run:");
  for (int i = 0; i <= 8; i++)
    printf(" %ld", rss[i]);
  printf("\n");

  /* Stop issuing; every outstanding request must end. */
  stopping = 1;
  uv_timer_stop(&churn_timer);
  uv_timer_stop(&traffic_timer);
  for (int i = 0; i < MAX_WORKERS / 2; i++)
    worker_add(); /* so queued requests get served rather than time out */
  int drained = t_run_until(&loop, all_done, NULL, 10000);
  for (int i = 0; i < MAX_WORKERS; i++)
    worker_remove(i, 0);
  for (int i = 0; i < MAX_CLIENTS; i++)
    client_remove(i);
  int closed = t_run_until(&loop, everything_closed, NULL, 5000);
  uv_close((uv_handle_t *)&churn_timer, NULL);
  uv_close((uv_handle_t *)&traffic_timer, NULL);
  kill(broker.pid, SIGTERM);
  int broker_rc = proc_wait(&broker, 5000);
  proc_cleanup(&broker);
  int loop_rc = t_loop_close(&loop);
  zmq_ctx_term(ctx);

  printf("# figure: soak %.0f s: %llu requests (%llu after warm-up), %llu "
         "answered, %llu failed with an error, %llu partials; %llu worker "
         "and %llu client departures; broker RSS %ld KiB after warm-up, %ld "
         "KiB at the end (bound +%d KiB)\n",
         seconds, (unsigned long long)issued,
         (unsigned long long)(issued - issued_warm),
         (unsigned long long)finals, (unsigned long long)failed,
         (unsigned long long)partials, (unsigned long long)worker_churn,
         (unsigned long long)client_churn, rss_warm, rss_end, RSS_BOUND_KB);
  CHECK(drained);
  CHECK(closed);
  CHECK_EQ(loop_rc, 0);
  CHECK_EQ(broker_rc, 0);
  CHECK_EQ(bad_callbacks, 0);
  CHECK_EQ(issued, finals + failed); /* none silently lost */
  CHECK(issued > 100);
  CHECK(finals * 2 > issued); /* churn causes failures, not a collapse */
  CHECK(T_ASAN || rss_end - rss_warm <= RSS_BOUND_KB);
}

int main(void) {
  RUN(soak);
  t_context_term();
  return t_done();
}
