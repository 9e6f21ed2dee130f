/* A broker on its own loop and ZeroMQ context, for tests that drive it with
 * raw peers (test/peer.h).  One environment at a time: `E`.  Include after
 * harness.h and peer.h. */
#ifndef MDP_TEST_BROKER_ENV_H
#define MDP_TEST_BROKER_ENV_H

typedef struct {
  uv_loop_t loop;
  void *ctx;
  mdp_broker_t *broker;
  char endpoint[256];
  int closed;
  void *peers[256];
  int n_peers;
} env_t;

static env_t E;
static int env_seq;

static void test_opts(mdp_broker_options_t *o) {
  mdp_broker_options_init(o);
  o->heartbeat_interval_ms = 1000; /* out of the way unless a test wants it */
  o->heartbeat_liveness = 10;
}

static int env_open(const mdp_broker_options_t *opts, const char *endpoint) {
  memset(&E, 0, sizeof E);
  uv_loop_init(&E.loop);
  E.ctx = zmq_ctx_new();
  mdp_broker_options_t o;
  if (opts)
    o = *opts;
  else
    test_opts(&o);
  o.zmq_context = E.ctx;
  if (mdp_broker_new(&E.loop, &o, &E.broker) != 0)
    return -1;
  char ep[256];
  if (endpoint == NULL) {
    snprintf(ep, sizeof ep, "inproc://broker-test-%d", ++env_seq);
    endpoint = ep;
  }
  if (mdp_broker_bind(E.broker, endpoint) != 0)
    return -1;
  mdp_broker_last_endpoint(E.broker, E.endpoint, sizeof E.endpoint);
  return 0;
}

static void *peer(void) {
  void *s = peer_new(E.ctx, ZMQ_DEALER, E.endpoint);
  E.peers[E.n_peers++] = s;
  return s;
}

static void on_closed(mdp_broker_t *b) {
  (void)b;
  E.closed = 1;
}

static int is_closed(void *arg) { return *(int *)arg; }

/* Closes the broker and every peer; 0 if all was released. */
static int env_close(void) {
  if (E.broker)
    mdp_broker_close(E.broker, on_closed);
  int ok = t_run_until(&E.loop, is_closed, &E.closed, 2000);
  for (int i = 0; i < E.n_peers; i++)
    zmq_close(E.peers[i]);
  int rc = t_loop_close(&E.loop);
  zmq_ctx_term(E.ctx);
  return ok && rc == 0 ? 0 : -1;
}

static mdp_msg_t *recv_on(void *sock, uint64_t ms) {
  return peer_recv(&E.loop, sock, ms);
}

/* Like recv_on, but skips broker HEARTBEATs. */
static mdp_msg_t *recv_skip_hb(void *sock, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  for (;;) {
    uint64_t now = uv_hrtime();
    uint64_t left = now < deadline ? (deadline - now) / 1000000ull : 0;
    mdp_msg_t *m = peer_recv(&E.loop, sock, 0);
    if (m == NULL && left > 0) {
      zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
      zmq_poll(&item, 1, 1);
      continue;
    }
    if (m == NULL || !msg_is(m, "MDPW02", "\x05", NULL))
      return m;
    mdp_msg_destroy(m);
  }
}

/* Nothing but heartbeats arrives within `ms`. */
static int quiet(void *sock, uint64_t ms) {
  mdp_msg_t *m = recv_skip_hb(sock, ms);
  if (m != NULL)
    msg_dump("unexpected", m);
  mdp_msg_destroy(m);
  return m == NULL;
}

static mdp_broker_stats_t stats(void) {
  mdp_broker_stats_t s;
  mdp_broker_get_stats(E.broker, &s);
  return s;
}

static void settle(uint64_t ms) { t_run_until(&E.loop, NULL, NULL, ms); }

/* Runs the loop until `cond` holds, for at most about 2 s (scaled by
 * MDP_TEST_SLOW); the CHECK after it says whether it did. */
#define settle_until(cond)                                                     \
  do {                                                                         \
    uint64_t settle_end_ = uv_hrtime() + t_slow(2000) * 1000000ull;           \
    while (!(cond) && uv_hrtime() < settle_end_)                               \
      settle(1);                                                               \
  } while (0)

/* Expiry tests: every 10 ms (whatever MDP_TEST_SLOW says) calls `beat(arg)`,
 * which sends the heartbeats of the workers to keep, while the broker's loop
 * runs; goes on until `expired` workers have expired and then for one more
 * `window_ms` (scaled), at most 10 s (scaled) in all.  Whatever the broker
 * sends the kept workers stays in their sockets: `beat` may drain it. */
static void keep_alive_until_expired(void (*beat)(void *), void *arg,
                                     uint64_t expired, uint64_t window_ms) {
  uint64_t end = uv_hrtime() + t_slow(10000) * 1000000ull, more_until = 0;
  while (uv_hrtime() < end) {
    if (more_until == 0 && stats().workers_expired >= expired)
      more_until = uv_hrtime() + t_slow(window_ms) * 1000000ull;
    if (more_until != 0 && uv_hrtime() >= more_until)
      break;
    beat(arg);
    uint64_t next = uv_hrtime() + 10 * 1000000ull;
    while (uv_hrtime() < next) {
      uv_run(&E.loop, UV_RUN_NOWAIT);
      uv_sleep(1);
    }
  }
}

#endif /* MDP_TEST_BROKER_ENV_H */
