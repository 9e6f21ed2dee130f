/* One broker for RFC 18, Majortomo and MDP/0.1 peers.
 *
 * Raw sockets send each dialect's exact frames (written out here from
 * WIRE.md, not produced by the codec) and check each frame the broker
 * answers with, for all nine client/worker pairings.
 */
#include <unistd.h>

#include "harness.h"
#include "peer.h"
#include "broker_env.h"

enum { RFC18, MAJORTOMO, MDP01, N_DIALECTS };
static const char *dialect_names[] = {"rfc18", "majortomo", "mdp01"};

/* Worker frames per dialect: leading empty frame, header, command bytes. */
typedef struct {
  const char *lead; /* NULL: no leading empty frame */
  const char *header;
  const char *ready, *request, *partial, *final, *heartbeat, *disconnect;
} worker_wire_t;

static const worker_wire_t worker_wire[N_DIALECTS] = {
    {NULL, "MDPW02", "\x01", "\x02", "\x03", "\x04", "\x05", "\x06"},
    {"", "MDPW02", "\x01", "\x02", "\x03", "\x04", "\x05", "\x06"},
    {"", "MDPW01", "\x01", "\x02", NULL, "\x03", "\x04", "\x05"},
};

/* Appends the worker header of `d` and command `cmd`. */
static mdp_msg_t *worker_msg(int d, const char *cmd) {
  mdp_msg_t *m = mdp_msg_new();
  if (worker_wire[d].lead)
    mdp_msg_append_str(m, "");
  mdp_msg_append_str(m, worker_wire[d].header);
  mdp_msg_append_mem(m, cmd, 1);
  return m;
}

/* Checks `m` is [lead? header cmd rest...] of dialect `d`; rest as
 * msg_is() frames after the header (NULL-terminated array). */
static int is_worker_cmd(mdp_msg_t *m, int d, const char *cmd,
                         const char *const *rest) {
  size_t i = 0;
  if (m == NULL)
    return 0;
  if (worker_wire[d].lead && !mdp_msg_frame_eq(m, i++, "", 0))
    return 0;
  if (!mdp_msg_frame_eq(m, i++, worker_wire[d].header, 6) ||
      !mdp_msg_frame_eq(m, i++, cmd, 1))
    return 0;
  for (; rest && *rest; rest++, i++)
    if (*rest != ANY && !mdp_msg_frame_eq(m, i, *rest, strlen(*rest)))
      return 0;
  return i == mdp_msg_size(m);
}

static void *worker_ready_in(int d, const char *service) {
  void *w = peer();
  size_t before = stats().workers_registered;
  mdp_msg_t *m = worker_msg(d, worker_wire[d].ready);
  mdp_msg_append_str(m, service);
  peer_send_msg(w, m);
  settle_until(stats().workers_registered != before);
  return w;
}

/* Receives on `w` within `ms` (scaled), skipping heartbeats of dialect
 * `d`. */
static mdp_msg_t *worker_recv(int d, void *w, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  do {
    mdp_msg_t *m = recv_on(w, 10);
    if (m != NULL && !is_worker_cmd(m, d, worker_wire[d].heartbeat, NULL))
      return m;
    mdp_msg_destroy(m);
  } while (uv_hrtime() < deadline);
  return NULL;
}

static void worker_send_reply(int d, void *w, const char *cmd,
                              mdp_msg_t *addr_from, size_t addr_index,
                              const char *const *body) {
  mdp_msg_t *m = worker_msg(d, cmd);
  mdp_msg_append_mem(m, mdp_msg_data(addr_from, addr_index),
                     mdp_msg_frame_size(addr_from, addr_index));
  mdp_msg_append_str(m, "");
  for (; *body; body++)
    mdp_msg_append_str(m, *body);
  peer_send_msg(w, m);
}

/* Client frames per dialect. */
static void client_send_request(int d, void *c, const char *service,
                                const char *const *body) {
  mdp_msg_t *m = mdp_msg_new();
  if (d == RFC18) {
    mdp_msg_append_str(m, "MDPC02");
    mdp_msg_append_str(m, "\x01");
  } else if (d == MAJORTOMO) {
    mdp_msg_append_str(m, "");
    mdp_msg_append_str(m, "MDPC02");
    mdp_msg_append_str(m, "\x02");
  } else {
    mdp_msg_append_str(m, "");
    mdp_msg_append_str(m, "MDPC01");
  }
  mdp_msg_append_str(m, service);
  for (; *body; body++)
    mdp_msg_append_str(m, *body);
  peer_send_msg(c, m);
}

/* 1 if `m` is a client reply of dialect `d` (final or partial) to
 * `service` with exactly `body`. */
static int is_client_reply(mdp_msg_t *m, int d, int final,
                           const char *service, const char *const *body) {
  const char *head[4];
  int n = 0;
  if (d == RFC18) {
    head[n++] = "MDPC02";
    head[n++] = final ? "\x03" : "\x02";
    head[n++] = service;
  } else if (d == MAJORTOMO) {
    head[n++] = "";
    head[n++] = "MDPC02";
    head[n++] = final ? "\x04" : "\x03"; /* and no service frame */
  } else {
    head[n++] = "";
    head[n++] = "MDPC01";
    head[n++] = service;
  }
  if (m == NULL)
    return 0;
  size_t i = 0;
  for (int k = 0; k < n; k++, i++)
    if (!mdp_msg_frame_eq(m, i, head[k], strlen(head[k])))
      return 0;
  for (; *body; body++, i++)
    if (!mdp_msg_frame_eq(m, i, *body, strlen(*body)))
      return 0;
  return i == mdp_msg_size(m);
}

/* ---- all nine pairings ------------------------------------------------ */

static void pairing(int cd, int wd) {
  void *w = worker_ready_in(wd, "svc");
  void *c = peer();
  const char *body[] = {"a", "", "c", NULL};
  client_send_request(cd, c, "svc", body);
  mdp_msg_t *req = worker_recv(wd, w, 2000);
  const char *req_rest[] = {ANY, "", "a", "", "c", NULL};
  int ok = is_worker_cmd(req, wd, worker_wire[wd].request, req_rest);
  if (!ok)
    msg_dump("REQUEST", req);
  CHECK(ok);
  size_t addr_index = worker_wire[wd].lead ? 3 : 2;
  /* A stream: two PARTIALs (0.2 workers only), then the FINAL. */
  const char *p1[] = {"p1", NULL}, *p2[] = {"p2a", "", NULL},
             *fin[] = {"end", NULL};
  int partials = worker_wire[wd].partial != NULL;
  if (partials) {
    worker_send_reply(wd, w, worker_wire[wd].partial, req, addr_index, p1);
    worker_send_reply(wd, w, worker_wire[wd].partial, req, addr_index, p2);
  }
  worker_send_reply(wd, w, worker_wire[wd].final, req, addr_index, fin);
  mdp_msg_destroy(req);
  if (cd == MDP01) {
    /* Exactly one REPLY, with every part in order. */
    const char *all[] = {"p1", "p2a", "", "end", NULL};
    mdp_msg_t *rep = recv_on(c, 2000);
    ok = is_client_reply(rep, cd, 1, "svc", partials ? all : fin);
    if (!ok)
      msg_dump("REPLY", rep);
    mdp_msg_destroy(rep);
    CHECK(ok);
    CHECK(quiet(c, 50));
  } else {
    if (partials) {
      mdp_msg_t *r1 = recv_on(c, 2000), *r2 = recv_on(c, 2000);
      ok = is_client_reply(r1, cd, 0, "svc", p1) &&
           is_client_reply(r2, cd, 0, "svc", p2);
      if (!ok) {
        msg_dump("PARTIAL 1", r1);
        msg_dump("PARTIAL 2", r2);
      }
      mdp_msg_destroy(r1);
      mdp_msg_destroy(r2);
      CHECK(ok);
    }
    mdp_msg_t *rep = recv_on(c, 2000);
    ok = is_client_reply(rep, cd, 1, "svc", fin);
    if (!ok)
      msg_dump("FINAL", rep);
    mdp_msg_destroy(rep);
    CHECK(ok);
  }
  /* The worker is idle again and serves a second request. */
  const char *again[] = {"again", NULL};
  client_send_request(cd, c, "svc", again);
  req = worker_recv(wd, w, 2000);
  const char *again_rest[] = {ANY, "", "again", NULL};
  ok = is_worker_cmd(req, wd, worker_wire[wd].request, again_rest);
  mdp_msg_destroy(req);
  CHECK(ok);
}

static void all_nine_pairings(void) {
  for (int cd = 0; cd < N_DIALECTS; cd++) {
    for (int wd = 0; wd < N_DIALECTS; wd++) {
      CHECK(env_open(NULL, NULL) == 0);
      int failed_before = t_failed_now_;
      pairing(cd, wd);
      if (t_failed_now_ && !failed_before)
        printf("# pairing: %s client, %s worker\n", dialect_names[cd],
               dialect_names[wd]);
      CHECK_EQ(env_close(), 0);
      CHECK(!t_failed_now_);
    }
  }
}

/* ---- worker rules in every dialect ------------------------------------ */

static void heartbeats_in_each_dialect(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.heartbeat_interval_ms = t_slow(30);
  o.heartbeat_liveness = 100;
  CHECK(env_open(&o, NULL) == 0);
  for (int d = 0; d < N_DIALECTS; d++) {
    void *w = worker_ready_in(d, dialect_names[d]);
    mdp_msg_t *m = recv_on(w, 1000);
    int ok = is_worker_cmd(m, d, worker_wire[d].heartbeat, NULL);
    if (!ok)
      msg_dump(dialect_names[d], m);
    mdp_msg_destroy(m);
    CHECK(ok);
  }
  CHECK_EQ(env_close(), 0);
}

/* keep_alive_until_expired's beat: a HEARTBEAT from one worker of each
 * dialect, and whatever the broker sent them dropped. */
static void beat_each_dialect(void *workers) {
  void **w = workers;
  for (int d = 0; d < N_DIALECTS; d++) {
    peer_send_msg(w[d], worker_msg(d, worker_wire[d].heartbeat));
    mdp_msg_t *m;
    while ((m = peer_recv(NULL, w[d], 0)) != NULL)
      mdp_msg_destroy(m);
  }
}

static void expiry_and_keepalive_in_each_dialect(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  /* A 500 ms window: the `alive` workers must not lose it to a stall of
   * this machine between two of their heartbeats. */
  o.heartbeat_interval_ms = t_slow(25);
  o.heartbeat_liveness = 20;
  o.disconnect_expired = 1; /* so each is told, in its dialect */
  CHECK(env_open(&o, NULL) == 0);
  void *alive[N_DIALECTS], *silent[N_DIALECTS];
  for (int d = 0; d < N_DIALECTS; d++) {
    alive[d] = worker_ready_in(d, "svc");
    silent[d] = worker_ready_in(d, "svc");
  }
  CHECK_EQ(stats().workers_registered, 6);
  /* Heartbeats in each dialect keep `alive` registered until the silent
   * ones, registered at the same time, have expired, and one window more. */
  keep_alive_until_expired(beat_each_dialect, alive, 3, 500);
  CHECK_EQ(stats().workers, 3);
  CHECK_EQ(stats().workers_expired, 3);
  /* Each silent worker was told, in its own dialect. */
  for (int d = 0; d < N_DIALECTS; d++) {
    int told = 0;
    mdp_msg_t *m;
    while ((m = peer_recv(&E.loop, silent[d], 50)) != NULL) {
      told |= is_worker_cmd(m, d, worker_wire[d].disconnect, NULL);
      mdp_msg_destroy(m);
    }
    if (!told)
      printf("# %s worker got no DISCONNECT\n", dialect_names[d]);
    CHECK(told);
  }
  CHECK_EQ(env_close(), 0);
}

/* ---- busy workers, by dialect ----------------------------------------- */

/* A request from an RFC 18 client to `w` (of dialect `d`), received by `w`;
 * the REQUEST (the caller's), or NULL. */
static mdp_msg_t *dispatch_job(int d, void *c, void *w) {
  const char *body[] = {"job", NULL};
  client_send_request(RFC18, c, "svc", body);
  mdp_msg_t *req = worker_recv(d, w, 2000);
  const char *rest[] = {ANY, "", "job", NULL};
  if (!is_worker_cmd(req, d, worker_wire[d].request, rest)) {
    msg_dump("REQUEST", req);
    mdp_msg_destroy(req);
    return NULL;
  }
  return req;
}

/* One worker per dialect gets a request and sends nothing at all for three
 * silence windows, as synchronous worker libraries do; then it answers.
 * `silent_busy_dialects`: the option's value, or -1 for its default;
 * `lenient`: the dialects expected to be let off. */
static void busy_silence_judged(unsigned silent_busy_dialects,
                                unsigned lenient) {
  mdp_broker_options_t o;
  test_opts(&o);
  /* A window of 300 ms (scaled under valgrind): the silence below is three
   * of them. */
  o.heartbeat_interval_ms = t_slow(100);
  o.heartbeat_liveness = 3;
  if (silent_busy_dialects != (unsigned)-1)
    o.silent_busy_dialects = silent_busy_dialects;
  static const unsigned bit[] = {MDP_DIALECT_RFC18, MDP_DIALECT_MAJORTOMO,
                                 MDP_DIALECT_MDP01};
  for (int d = 0; d < N_DIALECTS; d++) {
    CHECK(env_open(&o, NULL) == 0);
    void *w = worker_ready_in(d, "svc");
    void *c = peer();
    mdp_msg_t *req = dispatch_job(d, c, w);
    CHECK(req != NULL);
    /* Three windows: settle() scales its time as the interval was. */
    settle(3 * 100 * 3);
    int expired = stats().workers_expired == 1;
    int let_off = (lenient & bit[d]) != 0;
    if (expired == let_off)
      printf("# %s worker silent while busy: %s\n", dialect_names[d],
             expired ? "expired" : "kept");
    CHECK_EQ(expired, !let_off);
    if (req != NULL && let_off) {
      /* Its late FINAL reaches the client, once. */
      const char *fin[] = {"done", NULL};
      worker_send_reply(d, w, worker_wire[d].final, req,
                        worker_wire[d].lead ? 3 : 2, fin);
      mdp_msg_t *rep = recv_on(c, 2000);
      CHECK(is_client_reply(rep, RFC18, 1, "svc", fin));
      mdp_msg_destroy(rep);
      /* Idle again, and judged by its silence from here on: it answered
       * once, and its request never went anywhere else. */
      CHECK_EQ(stats().workers_expired, 0);
      CHECK_EQ(stats().redispatched, 0);
      CHECK_EQ(stats().dispatched, 1);
    } else if (req != NULL) {
      /* Expired as RFC 18 says: told, and its request queued again. */
      CHECK_EQ(stats().redispatched, 1);
      CHECK_EQ(stats().workers, 0);
    }
    mdp_msg_destroy(req);
    CHECK_EQ(env_close(), 0);
  }
}

/* Majortomo and MDP/0.1 workers may be silent while busy; RFC 18 ones are
 * expired (the default). */
static void busy_silence_by_dialect(void) {
  busy_silence_judged((unsigned)-1, MDP_DIALECT_MAJORTOMO | MDP_DIALECT_MDP01);
}

/* The option judges RFC 18 workers the lenient way too. */
static void busy_silence_rfc18_lenient_by_option(void) {
  busy_silence_judged(MDP_DIALECT_ALL, MDP_DIALECT_ALL);
}

/* A worker of any dialect whose connection closes while it is busy is
 * noticed by the next heartbeat the broker sends it (ROUTER_MANDATORY:
 * unreachable), long before any silence window (100 s here) or the busy
 * timeout (900 s): its request goes to another worker. */
static void dead_busy_worker_noticed_by_heartbeat(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.heartbeat_interval_ms = 50;
  o.heartbeat_liveness = 2000;
  o.silent_busy_dialects = MDP_DIALECT_ALL;
  for (int d = 0; d < N_DIALECTS; d++) {
    CHECK(env_open(&o, "tcp://127.0.0.1:*") == 0);
    int dead_index = E.n_peers;
    void *dead = worker_ready_in(d, "svc");
    void *c = peer();
    mdp_msg_t *req = dispatch_job(d, c, dead);
    CHECK(req != NULL);
    mdp_msg_destroy(req);
    void *other = worker_ready_in(d, "svc");
    uint64_t t0 = uv_hrtime();
    /* Its connection closes, as when its process dies. */
    zmq_close(dead);
    E.peers[dead_index] = NULL;
    req = worker_recv(d, other, 3000);
    double ms = (uv_hrtime() - t0) / 1e6;
    const char *rest[] = {ANY, "", "job", NULL};
    CHECK(is_worker_cmd(req, d, worker_wire[d].request, rest));
    mdp_msg_destroy(req);
    printf("# %s: busy worker's closed connection noticed, request "
           "re-dispatched after %.0f ms (interval 50 ms)\n",
           dialect_names[d], ms);
    CHECK_EQ(stats().workers_unreachable, 1);
    CHECK_EQ(stats().workers_expired, 0);
    CHECK_EQ(stats().redispatched, 1);
    CHECK_EQ(env_close(), 0);
  }
}

/* A silent busy worker that never answers (frozen, its connection open) is
 * dropped at silent_busy_timeout_ms, and its request re-dispatched. */
static void silent_busy_timeout_bounds_frozen(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.silent_busy_timeout_ms = 300;
  for (int d = MAJORTOMO; d <= MDP01; d++) {
    CHECK(env_open(&o, NULL) == 0);
    void *frozen = worker_ready_in(d, "svc");
    void *c = peer();
    uint64_t t0 = uv_hrtime(); /* before the dispatch: a lower bound */
    mdp_msg_t *req = dispatch_job(d, c, frozen);
    CHECK(req != NULL);
    mdp_msg_destroy(req);
    void *other = worker_ready_in(d, "svc");
    req = worker_recv(d, other, 3000);
    double ms = (uv_hrtime() - t0) / 1e6;
    const char *rest[] = {ANY, "", "job", NULL};
    CHECK(is_worker_cmd(req, d, worker_wire[d].request, rest));
    CHECK(ms >= 300 - 1);
    mdp_msg_destroy(req);
    mdp_msg_t *m = worker_recv(d, frozen, 1000);
    CHECK(is_worker_cmd(m, d, worker_wire[d].disconnect, NULL));
    mdp_msg_destroy(m);
    CHECK_EQ(stats().workers_expired, 1);
    CHECK_EQ(env_close(), 0);
  }
}

static void disconnect_rules_in_each_dialect(void) {
  CHECK(env_open(NULL, NULL) == 0);
  for (int d = 0; d < N_DIALECTS; d++) {
    /* A second READY gets DISCONNECT in the worker's dialect. */
    void *w = worker_ready_in(d, "svc");
    mdp_msg_t *m = worker_msg(d, worker_wire[d].ready);
    mdp_msg_append_str(m, "svc");
    peer_send_msg(w, m);
    m = worker_recv(d, w, 2000);
    int ok = is_worker_cmd(m, d, worker_wire[d].disconnect, NULL);
    mdp_msg_destroy(m);
    CHECK(ok);
    /* A HEARTBEAT from an unknown worker, likewise. */
    void *u = peer();
    peer_send_msg(u, worker_msg(d, worker_wire[d].heartbeat));
    m = worker_recv(d, u, 2000);
    ok = is_worker_cmd(m, d, worker_wire[d].disconnect, NULL);
    mdp_msg_destroy(m);
    CHECK(ok);
    /* A worker's DISCONNECT in its dialect removes it, with its request
     * re-sent to the next worker. */
    void *w1 = worker_ready_in(d, "job"), *w2 = worker_ready_in(d, "job");
    void *c = peer();
    const char *body[] = {"x", NULL};
    client_send_request(RFC18, c, "job", body);
    mdp_msg_t *r1 = worker_recv(d, w1, 2000);
    CHECK(r1 != NULL);
    mdp_msg_destroy(r1);
    peer_send_msg(w1, worker_msg(d, worker_wire[d].disconnect));
    mdp_msg_t *r2 = worker_recv(d, w2, 2000);
    const char *rest[] = {ANY, "", "x", NULL};
    ok = is_worker_cmd(r2, d, worker_wire[d].request, rest);
    mdp_msg_destroy(r2);
    CHECK(ok);
    peer_send_msg(w2, worker_msg(d, worker_wire[d].disconnect));
    settle_until(stats().workers == 0);
    CHECK_EQ(stats().workers, 0);
  }
  CHECK_EQ(env_close(), 0);
}

/* ---- MDP/0.1 collection limit, dialect restriction -------------------- */

static void mdp01_reply_over_limit_fails(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_msg_size = 1000;
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready_in(RFC18, "big");
  void *c = peer();
  const char *body[] = {"q", NULL};
  client_send_request(MDP01, c, "big", body);
  mdp_msg_t *req = worker_recv(RFC18, w, 2000);
  CHECK(req != NULL);
  char chunk[601];
  memset(chunk, 'z', 600);
  chunk[600] = '\0';
  const char *part[] = {chunk, NULL}, *fin[] = {"end", NULL};
  worker_send_reply(RFC18, w, "\x03", req, 2, part);
  worker_send_reply(RFC18, w, "\x03", req, 2, part); /* 1200 > 1000 */
  worker_send_reply(RFC18, w, "\x04", req, 2, fin);
  mdp_msg_destroy(req);
  CHECK(quiet(c, 150)); /* the 0.1 client gets no truncated REPLY */
  CHECK_EQ(stats().dropped_too_large, 1);
  CHECK_EQ(stats().workers_idle, 1);
  CHECK_EQ(env_close(), 0);
}

/* Empty PARTIALs are not free: each is charged its bookkeeping, and the
 * collection is bounded in frames too. */
static void mdp01_empty_partials_bounded(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_msg_size = 1000;
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready_in(RFC18, "svc");
  void *c = peer();
  const char *body[] = {"q", NULL};
  client_send_request(MDP01, c, "svc", body);
  mdp_msg_t *req = worker_recv(RFC18, w, 2000);
  CHECK(req != NULL);
  const char *empty[] = {"", NULL}, *fin[] = {"end", NULL};
  for (int i = 0; i < 100; i++)
    worker_send_reply(RFC18, w, "\x03", req, 2, empty);
  worker_send_reply(RFC18, w, "\x04", req, 2, fin);
  mdp_msg_destroy(req);
  CHECK(quiet(c, 150));
  CHECK_EQ(stats().dropped_too_large, 1);
  CHECK_EQ(stats().workers_idle, 1);
  CHECK_EQ(env_close(), 0);
  /* By frame count alone: max_frames 10, 12 one-byte parts. */
  test_opts(&o);
  o.max_frames = 10;
  CHECK(env_open(&o, NULL) == 0);
  w = worker_ready_in(RFC18, "svc");
  c = peer();
  client_send_request(MDP01, c, "svc", body);
  req = worker_recv(RFC18, w, 2000);
  CHECK(req != NULL);
  const char *one[] = {"1", NULL};
  for (int i = 0; i < 12; i++)
    worker_send_reply(RFC18, w, "\x03", req, 2, one);
  worker_send_reply(RFC18, w, "\x04", req, 2, fin);
  mdp_msg_destroy(req);
  CHECK(quiet(c, 150));
  CHECK_EQ(stats().dropped_too_large, 1);
  CHECK_EQ(env_close(), 0);
}

/* A registered worker speaks its READY's dialect: a message in another is
 * dropped, counted, and the worker removed as for any invalid message. */
static void dialect_switch_dropped(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready_in(RFC18, "svc");
  peer_send_msg(w, worker_msg(MAJORTOMO, worker_wire[MAJORTOMO].heartbeat));
  settle_until(stats().dropped_dialect == 1);
  CHECK_EQ(stats().dropped_dialect, 1);
  CHECK_EQ(stats().dropped_invalid, 1);
  CHECK_EQ(stats().workers, 0);
  /* Told in the dialect it registered with. */
  mdp_msg_t *m = worker_recv(RFC18, w, 1000);
  CHECK(is_worker_cmd(m, RFC18, worker_wire[RFC18].disconnect, NULL));
  mdp_msg_destroy(m);
  /* The same for an MDP/0.1 worker sending an RFC 18 reply. */
  void *w01 = worker_ready_in(MDP01, "svc");
  peer_send_msg(w01, worker_msg(RFC18, worker_wire[RFC18].heartbeat));
  settle_until(stats().dropped_dialect == 2);
  CHECK_EQ(stats().dropped_dialect, 2);
  CHECK_EQ(stats().workers, 0);
  CHECK_EQ(env_close(), 0);
}

/* What is collected for an MDP/0.1 client is charged to max_queued_bytes
 * while it is held, and given back when the request ends. */
static void mdp01_collection_charged_to_queued_bytes(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.max_queued_bytes = 8000;
  CHECK(env_open(&o, NULL) == 0);
  void *w = worker_ready_in(RFC18, "svc");
  void *c = peer();
  const char *body[] = {"go", NULL};
  client_send_request(MDP01, c, "svc", body);
  mdp_msg_t *req = worker_recv(RFC18, w, 2000);
  CHECK(req != NULL);
  static char chunk[1001];
  memset(chunk, 'x', 1000);
  const char *part[] = {chunk, NULL};
  /* Two parts: held, and counted in queued_bytes. */
  for (int i = 0; i < 2; i++)
    worker_send_reply(RFC18, w, worker_wire[RFC18].partial, req, 2, part);
  settle_until(stats().queued_bytes >= 2000);
  CHECK(stats().queued_bytes >= 2000 && stats().queued_bytes < 3000);
  /* Past 8000 bytes the request fails and what it held is given back. */
  for (int i = 0; i < 8; i++)
    worker_send_reply(RFC18, w, worker_wire[RFC18].partial, req, 2, part);
  settle_until(stats().dropped_too_large == 1);
  CHECK_EQ(stats().dropped_too_large, 1);
  CHECK_EQ(stats().queued_bytes, 0);
  const char *fin[] = {"end", NULL};
  worker_send_reply(RFC18, w, worker_wire[RFC18].final, req, 2, fin);
  CHECK(quiet(c, 100)); /* nothing, not a reply with a hole in it */
  CHECK_EQ(stats().queued_bytes, 0);
  /* The next collection that fits is delivered, and leaves nothing. */
  client_send_request(MDP01, c, "svc", body);
  mdp_msg_destroy(req);
  req = worker_recv(RFC18, w, 2000);
  CHECK(req != NULL);
  worker_send_reply(RFC18, w, worker_wire[RFC18].partial, req, 2, part);
  worker_send_reply(RFC18, w, worker_wire[RFC18].final, req, 2, fin);
  mdp_msg_t *rep = recv_on(c, 2000);
  const char *all[] = {chunk, "end", NULL};
  CHECK(is_client_reply(rep, MDP01, 1, "svc", all));
  mdp_msg_destroy(rep);
  mdp_msg_destroy(req);
  CHECK_EQ(stats().queued_bytes, 0);
  CHECK_EQ(env_close(), 0);
}

static void dialects_can_be_restricted(void) {
  mdp_broker_options_t o;
  test_opts(&o);
  o.dialects = MDP_DIALECT_RFC18 | MDP_DIALECT_MAJORTOMO;
  CHECK(env_open(&o, NULL) == 0);
  void *w01 = worker_ready_in(MDP01, "svc");
  CHECK_EQ(stats().workers, 0); /* refused: dropped as invalid */
  CHECK_EQ(stats().dropped_invalid, 1);
  void *c = peer();
  const char *body[] = {"x", NULL};
  client_send_request(MDP01, c, "svc", body);
  settle_until(stats().dropped_invalid >= 2);
  CHECK_EQ(stats().requests, 0);
  CHECK_EQ(stats().dropped_invalid, 2);
  (void)w01;
  worker_ready_in(MAJORTOMO, "svc");
  CHECK_EQ(stats().workers, 1);
  CHECK_EQ(env_close(), 0);
}

int main(void) {
  RUN(all_nine_pairings);
  RUN(heartbeats_in_each_dialect);
  RUN(expiry_and_keepalive_in_each_dialect);
  RUN(busy_silence_by_dialect);
  RUN(busy_silence_rfc18_lenient_by_option);
  RUN(dead_busy_worker_noticed_by_heartbeat);
  RUN(silent_busy_timeout_bounds_frozen);
  RUN(disconnect_rules_in_each_dialect);
  RUN(mdp01_reply_over_limit_fails);
  RUN(mdp01_empty_partials_bounded);
  RUN(dialects_can_be_restricted);
  RUN(dialect_switch_dropped);
  RUN(mdp01_collection_charged_to_queued_bytes);
  t_context_term();
  return t_done();
}
