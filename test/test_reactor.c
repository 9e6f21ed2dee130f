/* Tests for the reactor (lib/reactor.c).
 *
 * Every test that moves traffic is built so that a lost wake-up (an edge of
 * ZMQ_FD consumed and never acted on) leaves messages undelivered, which
 * t_run_until() turns into a failed CHECK at its deadline instead of a hang.
 * Every test ends with the loop closed (no handle left behind) and the
 * context terminated (no socket left behind).
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "harness.h"
#include "mdp/error.h"
#include "mdp/msg.h"
#include "mdp/reactor.h"

/* ---- helpers ---------------------------------------------------------- */

static void *t_socket(void *ctx, int type) {
  void *s = zmq_socket(ctx, type);
  int zero = 0;
  if (s != NULL)
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  return s;
}

static void set_int(void *s, int opt, int v) {
  zmq_setsockopt(s, opt, &v, sizeof v);
}

/* Binds `a` to inproc://name or tcp://127.0.0.1:* and connects `b` to it. */
static int t_connect(void *a, void *b, const char *name, int tcp) {
  char ep[256];
  if (tcp) {
    if (zmq_bind(a, "tcp://127.0.0.1:*") != 0)
      return -1;
    size_t len = sizeof ep;
    if (zmq_getsockopt(a, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
      return -1;
  } else {
    snprintf(ep, sizeof ep, "inproc://%s", name);
    if (zmq_bind(a, ep) != 0)
      return -1;
  }
  return zmq_connect(b, ep);
}

static mdp_msg_t *msg_u32(uint32_t seq) {
  mdp_msg_t *m = mdp_msg_new();
  if (m != NULL && mdp_msg_append_mem(m, &seq, sizeof seq) != 0) {
    mdp_msg_destroy(m);
    m = NULL;
  }
  return m;
}

static uint32_t frame_u32(mdp_msg_t *m, size_t i) {
  uint32_t v = UINT32_MAX;
  if (mdp_msg_frame_size(m, i) == sizeof v)
    memcpy(&v, mdp_msg_data(m, i), sizeof v);
  return v;
}

/* 1 if the fd of `s` is readable now.  poll() only looks; it consumes
 * nothing, unlike any ZeroMQ call. */
static int fd_readable(void *s) {
  int fd;
  size_t len = sizeof fd;
  zmq_getsockopt(s, ZMQ_FD, &fd, &len);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

static int closed_count;
static void count_close(mdp_reactor_t *r) {
  (void)r;
  closed_count++;
}

static int int_at_least_(int *v, int n) { return *v >= n; }
struct wait_int {
  int *v;
  int n;
};
static int wait_int_pred(void *arg) {
  struct wait_int *w = arg;
  return int_at_least_(w->v, w->n);
}
#define RUN_UNTIL_GE(loop, var, n, ms)                                         \
  t_run_until((loop), wait_int_pred, &(struct wait_int){&(var), (n)}, (ms))

static void tick_cb(uv_timer_t *t) { (*(int *)t->data)++; }

/* ---- a) ping-pong on one loop ------------------------------------------ */

/* A DEALER sends numbered messages, keeping WINDOW in flight so that
 * replies arrive while it sends; a ROUTER echoes each one back (the very
 * message object, identity frame included). */
#define WINDOW 8

struct pingpong {
  mdp_reactor_t *dealer;
  mdp_reactor_t *router;
  int total;
  int sent;
  int received;
  int errors;
};

static void pp_send_next(struct pingpong *pp) {
  mdp_msg_t *m = msg_u32((uint32_t)pp->sent);
  if (m == NULL || mdp_reactor_send(pp->dealer, m) != 0) {
    mdp_msg_destroy(m);
    pp->errors++;
    return;
  }
  pp->sent++;
}

static void pp_echo_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct pingpong *pp = mdp_reactor_get_data(r);
  if (mdp_reactor_send(r, msg) != 0) {
    mdp_msg_destroy(msg);
    pp->errors++;
  }
}

static void pp_dealer_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct pingpong *pp = mdp_reactor_get_data(r);
  if (mdp_msg_size(msg) != 1 || frame_u32(msg, 0) != (uint32_t)pp->received)
    pp->errors++;
  mdp_msg_destroy(msg);
  pp->received++;
  if (pp->sent < pp->total)
    pp_send_next(pp);
}

static int pp_done(void *arg) {
  struct pingpong *pp = arg;
  return pp->received >= pp->total || pp->errors > 0;
}

static void pingpong_run(int tcp) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *router = t_socket(ctx, ZMQ_ROUTER);
  void *dealer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(router, dealer, "pingpong", tcp) == 0);

  struct pingpong pp = {.total = t_scale(100000)};
  CHECK(mdp_reactor_new(&loop, router, 1, pp_echo_cb, &pp.router) == 0);
  CHECK(mdp_reactor_new(&loop, dealer, 1, pp_dealer_cb, &pp.dealer) == 0);
  mdp_reactor_set_data(pp.router, &pp);
  mdp_reactor_set_data(pp.dealer, &pp);
  CHECK(mdp_reactor_start(pp.router) == 0);
  CHECK(mdp_reactor_start(pp.dealer) == 0);
  for (int i = 0; i < WINDOW && pp.sent < pp.total; i++)
    pp_send_next(&pp);

  int ok = t_run_until(&loop, pp_done, &pp, 30000);
  printf("# %s: %d of %d round trips\n", tcp ? "tcp" : "inproc", pp.received,
         pp.total);
  CHECK(ok);
  CHECK_EQ(pp.errors, 0);
  CHECK_EQ(pp.received, pp.total);

  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(pp.dealer, &st);
  CHECK_EQ(st.msgs_received, pp.total);
  CHECK_EQ(st.msgs_sent + st.pending, pp.total);
  mdp_reactor_get_stats(pp.router, &st);
  CHECK_EQ(st.msgs_received, pp.total);

  closed_count = 0;
  mdp_reactor_close(pp.router, count_close);
  mdp_reactor_close(pp.dealer, count_close);
  CHECK(t_loop_close(&loop) == 0);
  CHECK_EQ(closed_count, 2);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void pingpong_inproc(void) { pingpong_run(0); }
static void pingpong_tcp(void) { pingpong_run(1); }

/* ---- b) many DEALERs against one ROUTER -------------------------------- */

#define NDEALERS 200

struct many {
  mdp_reactor_t *dealers[NDEALERS];
  int done[NDEALERS];
  int rounds;
  int finished;
  int errors;
};

static int many_send(mdp_reactor_t *r, uint32_t seq) {
  mdp_msg_t *m = msg_u32(seq);
  if (m == NULL || mdp_reactor_send(r, m) != 0) {
    mdp_msg_destroy(m);
    return -1;
  }
  return 0;
}

static void many_dealer_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct many *mn = mdp_reactor_get_data(r);
  int *done = NULL;
  for (int i = 0; i < NDEALERS; i++)
    if (mn->dealers[i] == r)
      done = &mn->done[i];
  if (done == NULL || frame_u32(msg, 0) != (uint32_t)*done)
    mn->errors++;
  mdp_msg_destroy(msg);
  if (done == NULL)
    return;
  if (++*done == mn->rounds)
    mn->finished++;
  else if (many_send(r, (uint32_t)*done) != 0)
    mn->errors++;
}

static void many_router_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct many *mn = mdp_reactor_get_data(r);
  if (mdp_reactor_send(r, msg) != 0) {
    mdp_msg_destroy(msg);
    mn->errors++;
  }
}

static int many_pred(void *arg) {
  struct many *mn = arg;
  return mn->finished == NDEALERS || mn->errors > 0;
}

static void many_dealers(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  static struct many mn;
  memset(&mn, 0, sizeof mn);
  mn.rounds = t_scale(100);

  void *rs = t_socket(ctx, ZMQ_ROUTER);
  CHECK(zmq_bind(rs, "tcp://127.0.0.1:*") == 0);
  char ep[256];
  size_t len = sizeof ep;
  CHECK(zmq_getsockopt(rs, ZMQ_LAST_ENDPOINT, ep, &len) == 0);
  mdp_reactor_t *router;
  CHECK(mdp_reactor_new(&loop, rs, 1, many_router_cb, &router) == 0);
  mdp_reactor_set_data(router, &mn);
  CHECK(mdp_reactor_start(router) == 0);

  for (int i = 0; i < NDEALERS; i++) {
    void *ds = t_socket(ctx, ZMQ_DEALER);
    CHECK(ds != NULL);
    CHECK(zmq_connect(ds, ep) == 0);
    CHECK(mdp_reactor_new(&loop, ds, 1, many_dealer_cb, &mn.dealers[i]) == 0);
    mdp_reactor_set_data(mn.dealers[i], &mn);
    CHECK(mdp_reactor_start(mn.dealers[i]) == 0);
    CHECK(many_send(mn.dealers[i], 0) == 0);
  }

  int ok = t_run_until(&loop, many_pred, &mn, 30000);
  int laggard = 0;
  for (int i = 0; i < NDEALERS; i++)
    if (mn.done[i] < mn.done[laggard])
      laggard = i;
  printf("# %d of %d dealers finished %d rounds; slowest did %d\n",
         mn.finished, NDEALERS, mn.rounds, mn.done[laggard]);
  CHECK(ok);
  CHECK_EQ(mn.errors, 0);
  CHECK_EQ(mn.finished, NDEALERS);

  closed_count = 0;
  mdp_reactor_close(router, count_close);
  for (int i = 0; i < NDEALERS; i++)
    mdp_reactor_close(mn.dealers[i], count_close);
  CHECK(t_loop_close(&loop) == 0);
  CHECK_EQ(closed_count, NDEALERS + 1);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* ---- c) a send from outside the reactor's batch ------------------------ */

/* The reactor's socket gets messages while a timer sends on it.  The send
 * processes the socket's commands, which consumes the read edge those
 * messages raised; only the reactor's kick (re-reading ZMQ_EVENTS on the
 * next iteration) can find them, as nothing else will arrive. */
#define OUTSIDE_K 10

struct outside {
  mdp_reactor_t *r;
  void *peer;
  int received;
  int send_rc;
  int fired;
  int edge_before;
  int edge_after;
};

static void outside_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct outside *o = mdp_reactor_get_data(r);
  o->received++;
  mdp_msg_destroy(msg);
}

static void outside_timer_cb(uv_timer_t *t) {
  struct outside *o = t->data;
  /* inproc: the messages are in the reactor's pipe and its fd is signalled
   * before zmq_send returns, all within this callback. */
  for (int i = 0; i < OUTSIDE_K; i++)
    zmq_send(o->peer, "m", 1, ZMQ_DONTWAIT);
  o->edge_before = fd_readable(mdp_reactor_socket(o->r));
  mdp_msg_t *m = msg_u32(7);
  o->send_rc = mdp_reactor_send(o->r, m);
  if (o->send_rc != 0)
    mdp_msg_destroy(m);
  o->edge_after = fd_readable(mdp_reactor_socket(o->r));
  o->fired = 1;
}

static void send_outside_keeps_pending(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "outside", 0) == 0);

  struct outside o = {.peer = peer};
  CHECK(mdp_reactor_new(&loop, rs, 1, outside_recv_cb, &o.r) == 0);
  mdp_reactor_set_data(o.r, &o);
  CHECK(mdp_reactor_start(o.r) == 0);
  /* Settle: one message through, so the pipes are up and the reactor is
   * idle, waiting for an edge. */
  CHECK(zmq_send(peer, "hello", 5, 0) == 5);
  CHECK(RUN_UNTIL_GE(&loop, o.received, 1, 5000));

  /* Fire late enough that libzmq's command throttle (about 1 ms since the
   * socket last processed commands) lets the send process them. */
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &o;
  uv_timer_start(&timer, outside_timer_cb, 30, 0);
  CHECK(RUN_UNTIL_GE(&loop, o.fired, 1, 5000));
  CHECK_EQ(o.send_rc, 0);
  printf("# fd readable before the send: %d, after: %d%s\n", o.edge_before,
         o.edge_after,
         o.edge_before && !o.edge_after ? " (the send consumed the edge)"
                                        : "");

  /* No traffic from now on: the messages must come out anyway. */
  int ok = RUN_UNTIL_GE(&loop, o.received, 1 + OUTSIDE_K, 3000);
  printf("# received %d of %d\n", o.received, 1 + OUTSIDE_K);
  CHECK(ok);
  char buf[8];
  CHECK_EQ(zmq_recv(peer, buf, sizeof buf, 0), 4);

  uv_close((uv_handle_t *)&timer, NULL);
  mdp_reactor_close(o.r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* ---- c2) bind / connect on a watched socket ---------------------------- */

/* libzmq's bind, connect, unbind and disconnect process the socket's
 * command mailbox first, as a ZMQ_EVENTS read does, so one made while
 * messages are arriving consumes their read edge.  Phase 1 shows the loss
 * (no kick: the messages wait); phase 2 does the same with
 * mdp_reactor_kick() afterwards, which must bring everything in. */
#define BEHIND_K 5

struct behind {
  mdp_reactor_t *r;
  void *peer;
  int op;   /* 0: zmq_bind, 1: zmq_connect on the watched socket */
  int kick; /* call mdp_reactor_kick() after it */
  int round;
  int received;
  int fired;
  int op_rc;
  int edge_before;
  int edge_after;
};

static void behind_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct behind *b = mdp_reactor_get_data(r);
  b->received++;
  mdp_msg_destroy(msg);
}

static void behind_timer_cb(uv_timer_t *t) {
  struct behind *b = t->data;
  void *s = mdp_reactor_socket(b->r);
  for (int i = 0; i < BEHIND_K; i++)
    zmq_send(b->peer, "m", 1, ZMQ_DONTWAIT);
  b->edge_before = fd_readable(s);
  char ep[64];
  snprintf(ep, sizeof ep, "inproc://behind-%s-%d", b->op ? "to" : "at",
           b->round);
  b->op_rc = b->op ? zmq_connect(s, ep) : zmq_bind(s, ep);
  b->edge_after = fd_readable(s);
  if (b->kick)
    mdp_reactor_kick(b->r);
  b->fired = 1;
}

static void behind_run(int op) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, op ? "behind-c" : "behind-b", 0) == 0);
  struct behind b = {.peer = peer, .op = op};
  CHECK(mdp_reactor_new(&loop, rs, 1, behind_recv_cb, &b.r) == 0);
  mdp_reactor_set_data(b.r, &b);
  CHECK(mdp_reactor_start(b.r) == 0);
  CHECK(zmq_send(peer, "hello", 5, 0) == 5); /* settle: pipes up, idle */
  CHECK(RUN_UNTIL_GE(&loop, b.received, 1, 5000));

  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &b;
  for (b.round = 0; b.round < 2; b.round++) {
    b.kick = b.round == 1;
    b.fired = 0;
    uv_timer_start(&timer, behind_timer_cb, 5, 0);
    CHECK(RUN_UNTIL_GE(&loop, b.fired, 1, 5000));
    CHECK_EQ(b.op_rc, 0);
    printf("# %s%s: fd readable before: %d, after: %d\n",
           op ? "zmq_connect" : "zmq_bind", b.kick ? " + kick" : "",
           b.edge_before, b.edge_after);
    if (!b.kick) {
      /* The lost wake-up: no edge left, nothing else will come. */
      t_run_until(&loop, NULL, NULL, 100);
      printf("# without a kick: %d of %d delivered after 100 ms\n",
             b.received - 1, BEHIND_K);
      CHECK(!b.edge_after);
      CHECK_EQ(b.received, 1);
    }
  }
  /* With the kick, the waiting messages of both rounds come in. */
  int ok = RUN_UNTIL_GE(&loop, b.received, 1 + 2 * BEHIND_K, 3000);
  printf("# with the kick: %d of %d delivered\n", b.received - 1,
         2 * BEHIND_K);
  CHECK(ok);
  CHECK_EQ(mdp_reactor_kick(b.r), 0);

  uv_close((uv_handle_t *)&timer, NULL);
  mdp_reactor_close(b.r, NULL);
  CHECK_EQ(mdp_reactor_kick(b.r), MDP_ECLOSING);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void bind_needs_kick(void) { behind_run(0); }
static void connect_needs_kick(void) { behind_run(1); }

/* ---- d) HWM: held messages, a loop that keeps running, in-order drain -- */

struct hwm {
  mdp_reactor_t *r;
  void *peer;
  int total;
  int ticks;
  int got;
  int errors;
  int empty_run;     /* consecutive drain ticks that found nothing... */
  int max_empty_run; /* ...while the reactor still held messages */
};

static void hwm_drain_cb(uv_timer_t *t) {
  struct hwm *h = t->data;
  /* Reads a bounded chunk per tick: the reactor has to refill the pipe from
   * its held messages many times over, each time on a write edge. */
  for (int i = 0; i < 50 && h->got < h->total; i++) {
    uint32_t seq;
    char body[16];
    int more;
    size_t len = sizeof more;
    int n = zmq_recv(h->peer, &seq, sizeof seq, ZMQ_DONTWAIT);
    if (n < 0) {
      /* Reading raised a write edge for the reactor, and the loop ran its
       * poll phase since: a tick that finds nothing means the reactor
       * missed it (and waits for its slow watchdog timer instead). */
      mdp_reactor_stats_t st;
      mdp_reactor_get_stats(h->r, &st);
      if (i == 0 && st.pending > 0) {
        if (++h->empty_run > h->max_empty_run)
          h->max_empty_run = h->empty_run;
      }
      break;
    }
    h->empty_run = 0;
    zmq_getsockopt(h->peer, ZMQ_RCVMORE, &more, &len);
    if (n != 4 || seq != (uint32_t)h->got || !more)
      h->errors++;
    n = zmq_recv(h->peer, body, sizeof body, ZMQ_DONTWAIT);
    if (n != 4 || memcmp(body, "body", 4) != 0)
      h->errors++;
    h->got++;
  }
}

static void hwm_count_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  (void)r;
  mdp_msg_destroy(msg);
}

/* `receiving`: with the reactor receiving, its receives (which process the
 * socket's commands) come after its sends in each batch and can consume
 * the write edge the peer's reading raised; only the final ZMQ_EVENTS
 * read catches that.  Not receiving, the held messages must still go. */
static void hwm_run(int receiving) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_SNDHWM, 5);
  set_int(peer, ZMQ_RCVHWM, 5);
  CHECK(t_connect(rs, peer, "hwm", 0) == 0);

  struct hwm h = {.peer = peer, .total = 2000};
  CHECK(mdp_reactor_new(&loop, rs, 1, hwm_count_cb, &h.r) == 0);
  if (receiving)
    CHECK(mdp_reactor_start(h.r) == 0);
  for (int i = 0; i < h.total; i++) {
    mdp_msg_t *m = msg_u32((uint32_t)i);
    CHECK(m != NULL);
    CHECK(mdp_msg_append_str(m, "body") == 0);
    CHECK_EQ(mdp_reactor_send(h.r, m), 0);
  }
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(h.r, &st);
  printf("# %zu of %d held\n", st.pending, h.total);
  CHECK(st.pending > 0);
  CHECK(st.msgs_sent < (uint64_t)h.total);

  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  tick.data = &h.ticks;
  uv_timer_start(&tick, tick_cb, 1, 1);
  CHECK(RUN_UNTIL_GE(&loop, h.ticks, 20, 5000));
  mdp_reactor_get_stats(h.r, &st);
  CHECK(st.pending > 0); /* nobody read: still held, and nothing lost */
  CHECK_EQ(st.msgs_sent + st.pending, h.total);

  uv_timer_t drain;
  uv_timer_init(&loop, &drain);
  drain.data = &h;
  uv_timer_start(&drain, hwm_drain_cb, 1, 1);
  int ok = RUN_UNTIL_GE(&loop, h.got, h.total, 20000);
  printf("# peer got %d of %d; at most %d drain ticks in a row found "
         "nothing\n", h.got, h.total, h.max_empty_run);
  CHECK(ok);
  CHECK_EQ(h.errors, 0);
  CHECK(h.max_empty_run <= 3);
  mdp_reactor_get_stats(h.r, &st);
  CHECK_EQ(st.pending, 0);
  CHECK_EQ(st.msgs_sent, h.total);
  CHECK(st.msgs_held > 0);
  CHECK_EQ(st.msgs_failed, 0);
  CHECK(h.ticks > 20);

  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&drain, NULL);
  mdp_reactor_close(h.r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void hwm_holds_and_drains(void) { hwm_run(1); }
static void hwm_not_receiving(void) { hwm_run(0); }

/* ---- e) batch fairness -------------------------------------------------- */

struct fair {
  mdp_reactor_t *r1;
  mdp_reactor_t *r2;
  int n1;
  int n2;
  int got1;
  int got2;
  int ticks;
  int ticks_at_first1;
  int ticks_at_last1;
  int got2_at_last1;
};

static void fair_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct fair *f = mdp_reactor_get_data(r);
  mdp_msg_destroy(msg);
  if (r == f->r2) {
    f->got2++;
    return;
  }
  /* Each flood message costs at least 2 us, so the flood takes at least
   * n1 * 2 us however fast the machine: long enough for the 1 ms timer to
   * fire several times, if the reactor lets it. */
  uint64_t until = uv_hrtime() + 2000;
  while (uv_hrtime() < until)
    ;
  if (f->got1++ == 0)
    f->ticks_at_first1 = f->ticks;
  if (f->got1 == f->n1) {
    f->ticks_at_last1 = f->ticks;
    f->got2_at_last1 = f->got2;
  }
}

static void batch_fairness(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *s1 = t_socket(ctx, ZMQ_DEALER);
  void *p1 = t_socket(ctx, ZMQ_DEALER);
  void *s2 = t_socket(ctx, ZMQ_DEALER);
  void *p2 = t_socket(ctx, ZMQ_DEALER);
  set_int(s1, ZMQ_RCVHWM, 0);
  set_int(p1, ZMQ_SNDHWM, 0);
  CHECK(t_connect(s1, p1, "fair1", 0) == 0);
  CHECK(t_connect(s2, p2, "fair2", 0) == 0);

  struct fair f = {.n1 = t_scale(50000), .n2 = 10};
  if (f.n1 < 64 * 32)
    f.n1 = 64 * 32;
  /* Everything is queued before the reactors start: one edge at most, so
   * finishing the flood proves that a resumed batch needs none. */
  for (int i = 0; i < f.n1; i++)
    CHECK(zmq_send(p1, "flood", 5, 0) == 5);
  for (int i = 0; i < f.n2; i++)
    CHECK(zmq_send(p2, "other", 5, 0) == 5);

  CHECK(mdp_reactor_new(&loop, s1, 1, fair_cb, &f.r1) == 0);
  CHECK(mdp_reactor_new(&loop, s2, 1, fair_cb, &f.r2) == 0);
  mdp_reactor_set_data(f.r1, &f);
  mdp_reactor_set_data(f.r2, &f);
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  tick.data = &f.ticks;
  uv_timer_start(&tick, tick_cb, 1, 1);
  CHECK(mdp_reactor_start(f.r1) == 0);
  CHECK(mdp_reactor_start(f.r2) == 0);

  int ok = RUN_UNTIL_GE(&loop, f.got1, f.n1, 20000);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(f.r1, &st);
  printf("# flood of %d: %llu wake-ups, timer fired %d times meanwhile, "
         "other socket had %d of %d by then\n",
         f.n1, (unsigned long long)st.wakeups,
         f.ticks_at_last1 - f.ticks_at_first1, f.got2_at_last1, f.n2);
  CHECK(ok);
  CHECK_EQ(f.got2_at_last1, f.n2);
  CHECK(f.ticks_at_last1 - f.ticks_at_first1 >= 2);
  CHECK(st.wakeups >= (uint64_t)f.n1 / 64);
  CHECK_EQ(st.msgs_received, f.n1);

  uv_close((uv_handle_t *)&tick, NULL);
  mdp_reactor_close(f.r1, NULL);
  mdp_reactor_close(f.r2, NULL);
  zmq_close(p1);
  zmq_close(p2);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* ---- f) life cycle, errors and counters -------------------------------- */

struct lc {
  int received;
  int closed;
  mdp_reactor_stats_t at_close;
};

static void lc_close_cb(mdp_reactor_t *r) {
  struct lc *l = mdp_reactor_get_data(r);
  mdp_reactor_get_stats(r, &l->at_close);
  l->closed++;
}

static void close_in_recv_cb_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct lc *l = mdp_reactor_get_data(r);
  l->received++;
  mdp_msg_destroy(msg);
  mdp_reactor_close(r, lc_close_cb);
  mdp_reactor_close(r, lc_close_cb); /* twice: a no-op */
}

static void close_in_recv_cb(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "closecb", 0) == 0);
  for (int i = 0; i < 10; i++)
    CHECK(zmq_send(peer, "x", 1, 0) == 1);

  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, close_in_recv_cb_cb, &r) == 0);
  mdp_reactor_set_data(r, &l);
  CHECK(mdp_reactor_start(r) == 0);
  CHECK(RUN_UNTIL_GE(&loop, l.closed, 1, 5000));
  CHECK_EQ(l.received, 1);
  CHECK_EQ(l.closed, 1);
  CHECK_EQ(l.at_close.msgs_received, 1);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK_EQ(l.closed, 1);
  CHECK(zmq_ctx_term(ctx) == 0); /* the reactor closed its socket */
}

static void close_with_held(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_SNDHWM, 2);
  set_int(peer, ZMQ_RCVHWM, 2);
  CHECK(t_connect(rs, peer, "held", 0) == 0);

  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 0, NULL, &r) == 0); /* not owned */
  mdp_reactor_set_data(r, &l);
  CHECK(mdp_reactor_start(r) == 0);
  for (int i = 0; i < 100; i++) {
    mdp_msg_t *m = msg_u32((uint32_t)i);
    CHECK(mdp_msg_append_mem(m, NULL, 0) == 0);
    CHECK(mdp_msg_append_str(m, "three frames, one held message") == 0);
    CHECK_EQ(mdp_reactor_send(r, m), 0);
  }
  CHECK(t_run_until(&loop, NULL, NULL, 20) == 0);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  CHECK(st.pending > 0);
  mdp_reactor_close(r, lc_close_cb);
  mdp_msg_t *m = msg_u32(1);
  CHECK_EQ(mdp_reactor_send(r, m), MDP_ECLOSING); /* still ours */
  mdp_msg_destroy(m);
  CHECK_EQ(mdp_reactor_start(r), MDP_ECLOSING);
  CHECK(t_loop_close(&loop) == 0);
  CHECK_EQ(l.closed, 1);
  CHECK_EQ(l.at_close.pending, 0);
  CHECK_EQ(l.at_close.msgs_failed, st.pending);
  CHECK_EQ(l.at_close.msgs_sent + l.at_close.msgs_failed, 100);
  zmq_close(rs); /* after the close callback, as documented */
  zmq_close(peer);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void count_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct lc *l = mdp_reactor_get_data(r);
  l->received++;
  mdp_msg_destroy(msg);
}

static void start_after_arrival(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "early", 0) == 0);
  for (int i = 0; i < 5; i++)
    CHECK(zmq_send(peer, "early", 5, 0) == 5);

  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, count_recv_cb, &r) == 0);
  mdp_reactor_set_data(r, &l);
  /* Someone looked at the socket before the reactor started: the edge for
   * these messages is gone, only start's own check can find them. */
  int events;
  size_t len = sizeof events;
  CHECK(zmq_getsockopt(rs, ZMQ_EVENTS, &events, &len) == 0);
  CHECK(events & ZMQ_POLLIN);
  CHECK(!fd_readable(rs));
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ(l.received, 0); /* not started: nothing delivered */

  CHECK(mdp_reactor_start(r) == 0);
  CHECK_EQ(l.received, 0); /* never from inside start */
  CHECK(RUN_UNTIL_GE(&loop, l.received, 5, 5000));

  /* stop / start again: messages sent while stopped wait, then come. */
  CHECK(mdp_reactor_stop(r) == 0);
  for (int i = 0; i < 3; i++)
    CHECK(zmq_send(peer, "later", 5, 0) == 5);
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ(l.received, 5);
  CHECK(mdp_reactor_start(r) == 0);
  CHECK(RUN_UNTIL_GE(&loop, l.received, 8, 5000));

  mdp_reactor_close(r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* mdp_reactor_process_now(): a batch at a time, outside the loop (as from
 * a timer), 1 while more may wait; from its own callback a no-op. */
static int pn_inner = -1;
static void pn_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct lc *l = mdp_reactor_get_data(r);
  if (l->received++ == 0)
    pn_inner = mdp_reactor_process_now(r); /* re-entered: must do nothing */
  mdp_msg_destroy(msg);
}

static void process_now_batches(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "process-now", 0) == 0);
  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, pn_recv_cb, &r) == 0);
  mdp_reactor_set_data(r, &l);
  mdp_reactor_set_batch(r, 10);
  CHECK(mdp_reactor_start(r) == 0);
  for (int i = 0; i < 25; i++)
    CHECK(zmq_send(peer, "m", 1, 0) == 1);
  /* The loop has not run: only process_now can deliver these. */
  CHECK_EQ(mdp_reactor_process_now(r), 1);
  CHECK_EQ(l.received, 10);
  CHECK_EQ(pn_inner, 0);
  CHECK_EQ(mdp_reactor_process_now(r), 1);
  CHECK_EQ(l.received, 20);
  CHECK_EQ(mdp_reactor_process_now(r), 0); /* the last 5, then EAGAIN */
  CHECK_EQ(l.received, 25);
  CHECK_EQ(mdp_reactor_process_now(r), 0);
  CHECK_EQ(l.received, 25);
  mdp_reactor_close(r, NULL);
  CHECK_EQ(mdp_reactor_process_now(r), 0); /* closing: nothing */
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

struct unreach {
  int failed;
  int bad;
  mdp_reactor_t *r;
  int received;
};

static void unreach_fail_cb(mdp_reactor_t *r, mdp_msg_t *msg, int err) {
  struct unreach *u = mdp_reactor_get_data(r);
  if (err != MDP_EHOSTUNREACH || !mdp_msg_frame_eq(msg, 0, "D", 1) ||
      frame_u32(msg, 1) != (uint32_t)u->failed)
    u->bad++;
  u->failed++;
  mdp_msg_destroy(msg);
}

static void unreach_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  struct unreach *u = mdp_reactor_get_data(r);
  u->received++;
  mdp_msg_destroy(msg);
}

static void router_unreachable(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_ROUTER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_ROUTER_MANDATORY, 1);
  set_int(rs, ZMQ_SNDHWM, 2);
  set_int(peer, ZMQ_RCVHWM, 2);
  zmq_setsockopt(peer, ZMQ_ROUTING_ID, "D", 1);
  CHECK(t_connect(rs, peer, "unreach", 0) == 0);

  struct unreach u = {0};
  CHECK(mdp_reactor_new(&loop, rs, 1, unreach_recv_cb, &u.r) == 0);
  mdp_reactor_set_data(u.r, &u);
  mdp_reactor_set_fail_cb(u.r, unreach_fail_cb);
  CHECK(mdp_reactor_start(u.r) == 0);

  /* An immediate send to nobody: an error, and the message comes back
   * whole. */
  mdp_msg_t *m = mdp_msg_new();
  CHECK(mdp_msg_append_str(m, "nobody") == 0);
  CHECK(mdp_msg_append_str(m, "payload") == 0);
  CHECK_EQ(mdp_reactor_send(u.r, m), MDP_EHOSTUNREACH);
  CHECK_EQ(mdp_msg_size(m), 2);
  CHECK(mdp_msg_frame_eq(m, 0, "nobody", 6));
  CHECK(mdp_msg_frame_eq(m, 1, "payload", 7));
  mdp_msg_destroy(m);

  /* Held messages whose peer goes away fail later, through the callback. */
  CHECK(zmq_send(peer, "hi", 2, 0) == 2);
  CHECK(RUN_UNTIL_GE(&loop, u.received, 1, 5000));
  int n = 50;
  for (int i = 0; i < n; i++) {
    m = mdp_msg_new();
    CHECK(mdp_msg_append_str(m, "D") == 0);
    uint32_t seq = (uint32_t)i;
    CHECK(mdp_msg_append_mem(m, &seq, sizeof seq) == 0);
    CHECK_EQ(mdp_reactor_send(u.r, m), 0);
  }
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(u.r, &st);
  CHECK(st.pending > 0);
  int sent = (int)st.msgs_sent;
  u.failed = sent; /* the first ones went: failures start after them */
  int held = (int)st.pending;
  zmq_close(peer);
  int ok = RUN_UNTIL_GE(&loop, u.failed, sent + held, 5000);
  mdp_reactor_get_stats(u.r, &st);
  printf("# %d sent, %d held, %llu failed later\n", sent, held,
         (unsigned long long)st.msgs_failed);
  CHECK(ok);
  CHECK_EQ(u.bad, 0);
  CHECK_EQ(st.msgs_failed, held);
  CHECK_EQ(st.pending, 0);

  mdp_reactor_close(u.r, NULL);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* The fail callback runs from the loop, never from inside the call that
 * found the failure: here mdp_reactor_process_now() finds held messages to
 * a vanished peer, with the loop not running at all.  `close_at`: the
 * callback closes the reactor at that delivery, and the failures not yet
 * delivered are freed by the close (ASan/valgrind check). */
struct defer {
  int in_call;   /* the test is inside mdp_reactor_send/process_now */
  int inside;    /* deliveries made while in_call: must stay 0 */
  int delivered;
  int bad;
  int close_at;
  int closed;
  int resend_rc;
};

static void defer_closed(mdp_reactor_t *r) {
  struct defer *d = mdp_reactor_get_data(r);
  d->closed++;
}

static void defer_fail_cb(mdp_reactor_t *r, mdp_msg_t *msg, int err) {
  struct defer *d = mdp_reactor_get_data(r);
  if (d->in_call)
    d->inside++;
  if (err != MDP_EHOSTUNREACH)
    d->bad++;
  if (d->delivered++ == 0) {
    /* may send from here: the peer is gone, so it comes back at once */
    d->resend_rc = mdp_reactor_send(r, msg);
    if (d->resend_rc == 0)
      msg = NULL;
  }
  mdp_msg_destroy(msg);
  if (d->delivered == d->close_at)
    mdp_reactor_close(r, defer_closed);
}

static void fail_cb_run(int close_at) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_ROUTER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_ROUTER_MANDATORY, 1);
  set_int(rs, ZMQ_SNDHWM, 2);
  set_int(peer, ZMQ_RCVHWM, 2);
  zmq_setsockopt(peer, ZMQ_ROUTING_ID, "D", 1);
  CHECK(t_connect(rs, peer, close_at ? "defer-close" : "defer", 0) == 0);

  struct defer d = {.close_at = close_at};
  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, count_recv_cb, &r) == 0);
  mdp_reactor_set_data(r, &l);
  CHECK(mdp_reactor_start(r) == 0);
  CHECK(zmq_send(peer, "hi", 2, 0) == 2); /* the ROUTER learns "D" */
  CHECK(RUN_UNTIL_GE(&loop, l.received, 1, 5000));
  mdp_reactor_set_data(r, &d);
  mdp_reactor_set_fail_cb(r, defer_fail_cb);
  for (int i = 0; i < 50; i++) {
    mdp_msg_t *m = mdp_msg_new();
    CHECK(mdp_msg_append_str(m, "D") == 0);
    CHECK(mdp_msg_append_str(m, "payload") == 0);
    d.in_call = 1;
    int rc = mdp_reactor_send(r, m);
    d.in_call = 0;
    CHECK_EQ(rc, 0);
  }
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  int held = (int)st.pending;
  CHECK(held > 0);
  zmq_close(peer);

  /* The loop does not run: only process_now can meet the failures. */
  uint64_t end = uv_hrtime() + t_slow(5000) * 1000000ull;
  do {
    d.in_call = 1;
    mdp_reactor_process_now(r);
    d.in_call = 0;
    mdp_reactor_get_stats(r, &st);
    if (st.msgs_failed < (uint64_t)held)
      usleep(1000);
  } while (st.msgs_failed < (uint64_t)held && uv_hrtime() < end);
  printf("# %d held, %llu failed inside process_now, %d delivered there\n",
         held, (unsigned long long)st.msgs_failed, d.inside);
  CHECK_EQ(d.inside, 0);
  CHECK_EQ(st.msgs_failed, held);
  CHECK_EQ(d.delivered, 0); /* not yet: the loop delivers them */
  CHECK_EQ(st.pending, 0);

  if (close_at) {
    CHECK(t_loop_close(&loop) == 0);
    CHECK_EQ(d.delivered, close_at); /* the rest: freed by the close */
    CHECK_EQ(d.closed, 1);
  } else {
    CHECK(RUN_UNTIL_GE(&loop, d.delivered, held, 5000));
    CHECK_EQ(d.inside, 0);
    CHECK_EQ(d.resend_rc, MDP_EHOSTUNREACH);
    mdp_reactor_close(r, defer_closed);
    CHECK(t_loop_close(&loop) == 0);
    CHECK_EQ(d.delivered, held);
  }
  CHECK_EQ(d.bad, 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void fail_cb_from_loop(void) { fail_cb_run(0); }
static void fail_cb_closes(void) { fail_cb_run(3); }

static void max_pending_enobufs(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_SNDHWM, 1);
  set_int(peer, ZMQ_RCVHWM, 1);
  CHECK(t_connect(rs, peer, "enobufs", 0) == 0);

  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, NULL, &r) == 0);
  mdp_reactor_set_max_pending(r, 5);
  int accepted = 0, rc = 0;
  mdp_msg_t *m = NULL;
  for (int i = 0; i < 100; i++) {
    m = msg_u32((uint32_t)i);
    rc = mdp_reactor_send(r, m);
    if (rc != 0)
      break;
    accepted++;
    m = NULL;
  }
  CHECK_EQ(rc, MDP_ENOBUFS);
  CHECK(m != NULL);
  CHECK_EQ(frame_u32(m, 0), accepted); /* untouched, still ours */
  mdp_msg_destroy(m);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  CHECK_EQ(st.pending, 5);
  CHECK_EQ(st.msgs_held, 5);
  CHECK_EQ(st.msgs_sent + st.pending, accepted);

  /* Empty messages are refused. */
  m = mdp_msg_new();
  CHECK_EQ(mdp_reactor_send(r, m), MDP_EINVAL);
  mdp_msg_destroy(m);

  mdp_reactor_close(r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* The held ring is bounded in bytes too: a send that would take the held
 * bytes over the bound is refused (MDP_ENOBUFS, message untouched), the
 * stat follows, and one message of any size may wait when nothing else
 * does. */
static mdp_msg_t *msg_sized(uint32_t seq, size_t size) {
  mdp_msg_t *m = msg_u32(seq);
  static char buf[8192];
  if (m != NULL && mdp_msg_append_mem(m, buf, size) != 0) {
    mdp_msg_destroy(m);
    m = NULL;
  }
  return m;
}

static int drain_peer(void *peer) {
  char buf[8192];
  while (zmq_recv(peer, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
    ;
  return 0;
}

struct pb {
  mdp_reactor_t *r;
  void *peer;
};
static int pb_drained(void *arg) {
  struct pb *p = arg;
  drain_peer(p->peer);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(p->r, &st);
  return st.pending == 0 && st.pending_bytes == 0;
}

/* Sends messages of `size` payload bytes until one is refused; returns how
 * many were held. */
static int fill_until_enobufs(mdp_reactor_t *r, size_t size, int *refused,
                              size_t *refused_frame) {
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  uint64_t held0 = st.msgs_held;
  *refused = 0;
  for (uint32_t i = 0; i < 1000; i++) {
    mdp_msg_t *m = msg_sized(i, size);
    int rc = mdp_reactor_send(r, m);
    if (rc != 0) {
      *refused = rc;
      *refused_frame = mdp_msg_size(m) == 2 ? mdp_msg_frame_size(m, 1) : 0;
      mdp_msg_destroy(m);
      break;
    }
  }
  mdp_reactor_get_stats(r, &st);
  return (int)(st.msgs_held - held0);
}

static void max_pending_bytes_enobufs(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  set_int(rs, ZMQ_SNDHWM, 1);
  set_int(peer, ZMQ_RCVHWM, 1);
  CHECK(t_connect(rs, peer, "pending-bytes", 0) == 0);
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, NULL, &r) == 0);
  mdp_reactor_set_max_pending_bytes(r, 1000);

  /* 304-byte messages: three fit in 1000 bytes, the fourth is refused. */
  int refused;
  size_t frame;
  int held = fill_until_enobufs(r, 300, &refused, &frame);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  printf("# 304-byte messages: %d held (%zu bytes), then %s\n", held,
         st.pending_bytes, mdp_err_name(refused));
  CHECK_EQ(refused, MDP_ENOBUFS);
  CHECK_EQ(frame, 300); /* the refused message came back whole */
  CHECK_EQ(held, 3);
  CHECK_EQ(st.pending, 3);
  CHECK_EQ(st.pending_bytes, 3 * 304);

  /* Drained, the stat is back to 0. */
  struct pb p = {r, peer};
  CHECK(t_run_until(&loop, pb_drained, &p, 5000));

  /* Nothing held: one message larger than the bound may wait, nothing
   * after it. */
  held = fill_until_enobufs(r, 5000, &refused, &frame);
  mdp_reactor_get_stats(r, &st);
  CHECK_EQ(refused, MDP_ENOBUFS);
  CHECK_EQ(held, 1);
  CHECK_EQ(st.pending_bytes, 5004);
  mdp_msg_t *small = msg_sized(0, 1);
  CHECK_EQ(mdp_reactor_send(r, small), MDP_ENOBUFS);
  mdp_msg_destroy(small);
  CHECK(t_run_until(&loop, pb_drained, &p, 5000));

  /* SIZE_MAX: only the count bound is left. */
  mdp_reactor_set_max_pending_bytes(r, SIZE_MAX);
  mdp_reactor_set_max_pending(r, 20);
  held = fill_until_enobufs(r, 5000, &refused, &frame);
  CHECK_EQ(refused, MDP_ENOBUFS);
  CHECK_EQ(held, 20);

  mdp_reactor_close(r, NULL); /* held ones freed: ASan/valgrind */
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

/* A message with more frames than max_frames is discarded whole; the
 * messages around it arrive intact. */
static int mf_got;
static size_t mf_sizes[4];
static void mf_recv_cb(mdp_reactor_t *r, mdp_msg_t *msg) {
  (void)r;
  if (mf_got < 4)
    mf_sizes[mf_got] = mdp_msg_size(msg);
  mf_got++;
  mdp_msg_destroy(msg);
}

static void max_frames_drops_whole(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "maxframes", 0) == 0);
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, mf_recv_cb, &r) == 0);
  mdp_reactor_set_max_frames(r, 4);
  CHECK_EQ(mdp_reactor_start(r), 0);
  int sizes[] = {3, 1000, 4, 5, 1};
  for (size_t m = 0; m < 5; m++)
    for (int i = 0; i < sizes[m]; i++)
      zmq_send(peer, "f", 1, i + 1 < sizes[m] ? ZMQ_SNDMORE : 0);
  mf_got = 0;
  int want = 3;
  struct wait_int w = {&mf_got, want};
  CHECK(t_run_until(&loop, wait_int_pred, &w, 2000));
  t_run_until(&loop, NULL, NULL, 20);
  CHECK_EQ(mf_got, 3);
  CHECK_EQ(mf_sizes[0], 3);
  CHECK_EQ(mf_sizes[1], 4);
  CHECK_EQ(mf_sizes[2], 1);
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  CHECK_EQ(st.msgs_dropped, 2);
  CHECK_EQ(st.msgs_received, 3);
  mdp_reactor_close(r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

static void stats_counters(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  void *ctx = zmq_ctx_new();
  void *rs = t_socket(ctx, ZMQ_DEALER);
  void *peer = t_socket(ctx, ZMQ_DEALER);
  CHECK(t_connect(rs, peer, "stats", 0) == 0);

  struct lc l = {0};
  mdp_reactor_t *r;
  CHECK(mdp_reactor_new(&loop, rs, 1, count_recv_cb, &r) == 0);
  mdp_reactor_set_data(r, &l);
  CHECK(mdp_reactor_get_data(r) == &l);
  CHECK(mdp_reactor_socket(r) == rs);
  CHECK(mdp_reactor_loop(r) == &loop);
  mdp_reactor_set_batch(r, 0); /* taken as 1 */
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(r, &st);
  CHECK_EQ(st.msgs_received + st.msgs_sent + st.msgs_held + st.msgs_failed +
               st.wakeups + st.pending,
           0);

  for (int i = 0; i < 3; i++)
    CHECK(zmq_send(peer, "in", 2, 0) == 2);
  for (int i = 0; i < 4; i++) {
    mdp_msg_t *m = msg_u32((uint32_t)i);
    CHECK(mdp_msg_append_str(m, "out") == 0);
    CHECK_EQ(mdp_reactor_send(r, m), 0);
  }
  CHECK(mdp_reactor_start(r) == 0);
  CHECK(RUN_UNTIL_GE(&loop, l.received, 3, 5000));
  mdp_reactor_get_stats(r, &st);
  CHECK_EQ(st.msgs_received, 3);
  CHECK_EQ(st.msgs_sent, 4);
  CHECK_EQ(st.msgs_held, 0);
  CHECK_EQ(st.msgs_failed, 0);
  CHECK_EQ(st.pending, 0);
  CHECK(st.wakeups >= 3); /* a batch of 1: one message per wake-up */
  for (int i = 0; i < 4; i++) {
    char buf[8];
    CHECK_EQ(zmq_recv(peer, buf, sizeof buf, 0), 4);
    CHECK_EQ(zmq_recv(peer, buf, sizeof buf, 0), 3);
  }

  mdp_reactor_close(r, NULL);
  zmq_close(peer);
  CHECK(t_loop_close(&loop) == 0);
  CHECK(zmq_ctx_term(ctx) == 0);
}

int main(void) {
  RUN(pingpong_inproc);
  RUN(pingpong_tcp);
  RUN(many_dealers);
  RUN(send_outside_keeps_pending);
  RUN(bind_needs_kick);
  RUN(connect_needs_kick);
  RUN(hwm_holds_and_drains);
  RUN(hwm_not_receiving);
  RUN(batch_fairness);
  RUN(close_in_recv_cb);
  RUN(close_with_held);
  RUN(start_after_arrival);
  RUN(process_now_batches);
  RUN(router_unreachable);
  RUN(fail_cb_from_loop);
  RUN(fail_cb_closes);
  RUN(max_pending_enobufs);
  RUN(max_pending_bytes_enobufs);
  RUN(max_frames_drops_whole);
  RUN(stats_counters);
  return t_done();
}
