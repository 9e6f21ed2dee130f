/* mdp_client_t against fake brokers (raw ROUTER sockets driven frame by
 * frame), so the client is tested independently of mdp_broker_t: exact
 * frames, the socket pool, timeouts and retries with late replies, cancel,
 * close, failover, many requests in flight and the blocking helper. */
#include <stdarg.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "mdp.h"

#include "fake_broker.h"
#include "../lib/client_internal.h"
#include "client_helpers.h"

/* --- tests ----------------------------------------------------------------- */

static void request_frames_exact(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 0);
  CHECK(c != NULL);
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_str(body, "a");
  mdp_msg_append_mem(body, NULL, 0);
  rep_t r = {0};
  uint64_t id = 0;
  CHECK_EQ(mdp_client_request(c, "echo", body, NULL, on_reply, &r, &id), 0);
  CHECK(id != 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *m = fake_take(&f);
  CHECK(frames_are(m, "MDPC02", "\x01", "echo", "a", ""));
  fake_reply(&f, m, "\x02", "p1");
  fake_reply(&f, m, "\x02", "p2", "");
  fake_reply(&f, m, "\x03", "f");
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.partials, 2);
  CHECK_EQ(r.finals, 1);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(r.nparts, 3);
  CHECK_EQ(mdp_msg_size(r.parts[0]), 1);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "p1", 2));
  CHECK_EQ(mdp_msg_size(r.parts[1]), 2);
  CHECK(mdp_msg_frame_eq(r.parts[1], 1, "", 0));
  CHECK(mdp_msg_frame_eq(r.parts[2], 0, "f", 1));
  rep_clear(&r);
  /* the socket is reused for the next request */
  CHECK_EQ(mdp_client_request(c, "echo", body_of("b"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  fake_echo(&f);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "b", 1));
  rep_clear(&r);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.sockets_opened, 1);
  CHECK_EQ(st.sent, 2);
  CHECK_EQ(st.finals, 2);
  CHECK_EQ(st.partials, 2);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void bad_arguments(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[] = {"tcp://127.0.0.1:1"};
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 0, NULL, &c), MDP_EINVAL);
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  CHECK_EQ(o.timeout_ms, 10000);
  CHECK_EQ(o.retries, 1);
  CHECK_EQ(o.deadline_ms, 0);
  CHECK_EQ(o.dialect, MDP_DIALECT_RFC18);
  o.dialect = MDP_DIALECT_ALL; /* a mask, not one dialect */
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  o.dialect = (mdp_dialect_t)0;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  c = client_start(&loop, eps, 1, 0, 1, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  mdp_msg_t *empty = mdp_msg_new();
  CHECK_EQ(mdp_client_request(c, "echo", empty, NULL, on_reply, &r, NULL),
           MDP_EINVAL);
  mdp_msg_append_str(empty, "x");
  CHECK_EQ(mdp_client_request(c, "", empty, NULL, on_reply, &r, NULL),
           MDP_ESERVICE);
  char longname[300];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK_EQ(mdp_client_request(c, longname, empty, NULL, on_reply, &r, NULL),
           MDP_ESERVICE);
  CHECK_EQ(mdp_client_request(c, "echo", empty, NULL, NULL, &r, NULL),
           MDP_EINVAL);
  CHECK_EQ(mdp_msg_size(empty), 1); /* still ours */
  mdp_msg_destroy(empty);
  CHECK_EQ(mdp_client_cancel(c, 12345), MDP_EINVAL);
  CHECK_EQ(r.calls, 0);
  CHECK(client_stop(&loop, c));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A pool bounded at 4 sockets: 10 requests, 4 on the wire at once, each on
 * its own socket; the rest wait and reuse sockets as FINALs come back. */
static void pool_and_queue(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 4);
  CHECK(c != NULL);
  rep_t r[10];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 10; i++) {
    char b[8];
    snprintf(b, sizeof b, "%d", i);
    CHECK_EQ(mdp_client_request(c, "echo", body_of(b), NULL, on_reply, &r[i],
                                NULL), 0);
  }
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.in_flight, 4);
  CHECK_EQ(st.queued, 6);
  CHECK(fake_wait(&loop, &f, 4, 2000));
  CHECK(!fake_wait(&loop, &f, 5, 100)); /* never a 5th: one per socket */
  for (size_t i = 0; i < 4; i++)
    for (size_t j = i + 1; j < 4; j++)
      CHECK(!mdp_msg_frame_eq(f.q[i], 0, mdp_msg_data(f.q[j], 0),
                              mdp_msg_frame_size(f.q[j], 0)));
  int echoed = 0;
  uint64_t end = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (echoed < 10 && uv_hrtime() < end) {
    fake_wait(&loop, &f, 1, 20);
    echoed += fake_echo(&f);
  }
  CHECK_EQ(echoed, 10);
  for (int i = 0; i < 10; i++) {
    CHECK(t_run_until(&loop, rep_done, &r[i], 2000));
    char b[8];
    snprintf(b, sizeof b, "%d", i);
    CHECK(mdp_msg_frame_eq(r[i].parts[0], 0, b, strlen(b)));
    rep_clear(&r[i]);
  }
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.sockets_opened, 4);
  CHECK_EQ(st.sockets, 4);
  CHECK_EQ(st.finals, 10);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* No answer in time: the request is sent again on a new socket; the first
 * socket's late reply must be discarded; the retry's reply is delivered. */
static void timeout_retry_late_reply(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-late-reply") == 0);
  const char *eps[] = {f.endpoint};
  /* the retry must outlive the 50 ms "nothing arrives" check below, also
   * when tools slow everything down */
  mdp_client_t *c = client_start(&loop, eps, 1, t_slow(1000), 1, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *first = fake_take(&f);
  CHECK(fake_wait(&loop, &f, 1, 2000)); /* the retry */
  mdp_msg_t *second = fake_take(&f);
  CHECK(frames_are(second, "MDPC02", "\x01", "echo", "q"));
  CHECK(!mdp_msg_frame_eq(first, 0, mdp_msg_data(second, 0),
                          mdp_msg_frame_size(second, 0)));
  CHECK_EQ(r.calls, 0);
  /* a second request now takes a socket too (the first one is gone) */
  rep_t r2 = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("other"), NULL, on_reply,
                              &r2, NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *third = fake_take(&f);
  fake_reply(&f, first, "\x03", "late");  /* must reach nobody */
  fake_reply(&f, first, "\x02", "late");
  CHECK(!t_run_until(&loop, rep_done, &r, 50));
  CHECK(!t_run_until(&loop, rep_done, &r2, 1));
  fake_reply(&f, second, "\x03", "fresh");
  fake_reply(&f, third, "\x03", "other");
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK(t_run_until(&loop, rep_done, &r2, 2000));
  CHECK_EQ(r.calls, 1);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "fresh", 5));
  CHECK_EQ(r2.calls, 1);
  CHECK(mdp_msg_frame_eq(r2.parts[0], 0, "other", 5));
  mdp_msg_destroy(first);
  mdp_msg_destroy(second);
  mdp_msg_destroy(third);
  rep_clear(&r);
  rep_clear(&r2);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.retries, 1);
  CHECK_EQ(st.sockets_discarded, 1);
  CHECK_EQ(st.timeouts, 0);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Retries exhausted: MDP_ETIMEDOUT after 1 + retries attempts.
 * The fakes in the timeout tests are inproc: a send lands in the fake's
 * pipe at once, so a short attempt is never lost to a slow I/O thread. */
static void timeout_exhausted(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-exhausted-1") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 50, 2, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  uint64_t t0 = uv_hrtime();
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(t_run_until(&loop, rep_done, &r, 3000));
  CHECK((uv_hrtime() - t0) / 1000000 >= 140); /* 3 x 50 ms, some slack */
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  CHECK_EQ(r.nparts, 0);
  CHECK(fake_wait(&loop, &f, 3, 2000));
  CHECK(!fake_wait(&loop, &f, 4, 50));
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.sent, 3);
  CHECK_EQ(st.timeouts, 1);
  CHECK_EQ(st.in_flight, 0);
  /* a PARTIAL then silence: not retried (part of the reply was seen) */
  rep_clear(&r);
  fake_close(&f);
  CHECK(fake_open(&f, "inproc://client-exhausted-2") == 0);
  eps[0] = f.endpoint;
  mdp_client_t *c2 = client_start(&loop, eps, 1, t_slow(300), 3, 0);
  CHECK(c2 != NULL);
  CHECK_EQ(mdp_client_request(c2, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *m = fake_take(&f);
  fake_reply(&f, m, "\x02", "half");
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, rep_done, &r, 3000));
  CHECK_EQ(r.partials, 1);
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  CHECK(!fake_wait(&loop, &f, 1, 50));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  CHECK(client_stop(&loop, c2));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The overall deadline ends a request regardless of retries. */
static void overall_deadline(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 10000, 5, 0);
  CHECK(c != NULL);
  mdp_request_options_t ro;
  mdp_client_request_options_init(c, &ro);
  CHECK_EQ(ro.timeout_ms, 10000);
  ro.deadline_ms = 100;
  rep_t r = {0};
  uint64_t t0 = uv_hrtime();
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), &ro, on_reply, &r,
                              NULL), 0);
  CHECK(t_run_until(&loop, rep_done, &r, 3000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK(ms >= 90 && ms < t_slow(2000));
  CHECK_EQ(r.status, MDP_ETIMEDOUT);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void cancel_requests(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 1);
  CHECK(c != NULL);
  rep_t a = {0}, b = {0};
  uint64_t ida, idb;
  CHECK_EQ(mdp_client_request(c, "echo", body_of("a"), NULL, on_reply, &a,
                              &ida), 0);
  CHECK_EQ(mdp_client_request(c, "echo", body_of("b"), NULL, on_reply, &b,
                              &idb), 0);
  CHECK(ida != idb);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *ma = fake_take(&f);
  /* cancel the queued one, then the one in flight: callbacks at once */
  CHECK_EQ(mdp_client_cancel(c, idb), 0);
  CHECK_EQ(b.calls, 1);
  CHECK_EQ(b.status, MDP_ECANCELED);
  CHECK_EQ(mdp_client_cancel(c, ida), 0);
  CHECK_EQ(a.status, MDP_ECANCELED);
  CHECK_EQ(mdp_client_cancel(c, ida), MDP_EINVAL);
  fake_reply(&f, ma, "\x03", "too late");
  mdp_msg_destroy(ma);
  CHECK(!t_run_until(&loop, NULL, NULL, 50));
  CHECK_EQ(a.calls, 1);
  CHECK_EQ(b.calls, 1);
  /* cancel from inside the request's own PARTIAL callback */
  rep_t p = {0};
  uint64_t idp;
  CHECK_EQ(mdp_client_request(c, "echo", body_of("p"), NULL, on_reply, &p,
                              &idp), 0);
  p.cancel_id = idp;
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *mp = fake_take(&f);
  CHECK(frames_are(mp, "MDPC02", "\x01", "echo", "p"));
  fake_reply(&f, mp, "\x02", "part");
  fake_reply(&f, mp, "\x03", "final");
  mdp_msg_destroy(mp);
  CHECK(t_run_until(&loop, rep_done, &p, 2000));
  CHECK(!t_run_until(&loop, NULL, NULL, 50));
  CHECK_EQ(p.calls, 2);
  CHECK_EQ(p.partials, 1);
  CHECK_EQ(p.status, MDP_ECANCELED);
  rep_clear(&a);
  rep_clear(&b);
  rep_clear(&p);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.cancelled, 3);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Close with requests in flight and queued: all get MDP_ECANCELED before
 * close returns; new requests are refused. */
static void close_with_pending(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 2);
  CHECK(c != NULL);
  rep_t r[5];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 5; i++)
    CHECK_EQ(mdp_client_request(c, "echo", body_of("x"), NULL, on_reply, &r[i],
                                NULL), 0);
  CHECK(fake_wait(&loop, &f, 2, 2000));
  client_closed_flag = 0;
  mdp_client_close(c, on_client_closed);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(r[i].calls, 1);
    CHECK_EQ(r[i].status, MDP_ECANCELED);
  }
  mdp_msg_t *b = body_of("y");
  CHECK_EQ(mdp_client_request(c, "echo", b, NULL, on_reply, &r[0], NULL),
           MDP_ECLOSING);
  mdp_msg_destroy(b);
  CHECK(t_run_until(&loop, is_client_closed, NULL, 2000));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Closing from inside a reply callback. */
static void close_from_callback(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-close-cb") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 0);
  CHECK(c != NULL);
  rep_t a = {0}, b = {0};
  a.close_on_partial = 1;
  CHECK_EQ(mdp_client_request(c, "echo", body_of("a"), NULL, on_reply, &a,
                              NULL), 0);
  CHECK_EQ(mdp_client_request(c, "echo", body_of("b"), NULL, on_reply, &b,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 2, 2000));
  mdp_msg_t *m = fake_take(&f);
  mdp_msg_t *m2 = fake_take(&f);
  mdp_msg_t *ma = mdp_msg_frame_eq(m, 4, "a", 1) ? m : m2;
  fake_reply(&f, ma, "\x02", "part");
  mdp_msg_destroy(m);
  mdp_msg_destroy(m2);
  CHECK(t_run_until(&loop, rep_done, &a, 2000));
  CHECK_EQ(a.partials, 1);
  CHECK_EQ(a.status, MDP_ECANCELED);
  CHECK_EQ(b.status, MDP_ECANCELED);
  rep_clear(&a);
  rep_clear(&b);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0); /* the client freed itself */
}

/* A request made outside the loop's callbacks after the loop sat idle for
 * longer than its timeout: the timeout counts from the call, not from the
 * loop's stale cached time (which would time it out at once). */
static void timeout_counts_from_the_call(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-stale-time") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 1000, 0, 0);
  CHECK(c != NULL);
  usleep(1100 * 1000); /* the loop's cached time is now 1.1 s old */
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  /* One loop iteration before the answer exists: a timeout counted from
   * the stale time fires in it, with nothing on the socket to read first
   * (an answer already waiting would be read before any timeout). */
  uv_run(&loop, UV_RUN_NOWAIT);
  fake_pump(&f); /* inproc: the request is there already */
  mdp_msg_t *m = fake_take(&f);
  CHECK(frames_are(m, "MDPC02", "\x01", "echo", "q"));
  fake_reply(&f, m, "\x03", "in time");
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "in time", 7));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* After a stall of the client's process longer than the timeout, a reply
 * that arrived meanwhile is read before the timeout is judged (libuv runs
 * timers before it polls). */
static void stall_reads_before_timing_out(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-stall") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 200, 0, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  fake_pump(&f); /* inproc: the request is there already */
  mdp_msg_t *m = fake_take(&f);
  CHECK(frames_are(m, "MDPC02", "\x01", "echo", "q"));
  fake_reply(&f, m, "\x03", "meanwhile");
  mdp_msg_destroy(m);
  usleep(400 * 1000); /* the stall: the timeout is long overdue */
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "meanwhile", 9));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Two brokers: the first is silent; the retry goes to the second. */
static void failover(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f1, f2;
  CHECK(fake_open(&f1, "inproc://client-failover-1") == 0);
  CHECK(fake_open(&f2, "inproc://client-failover-2") == 0);
  const char *eps[] = {f1.endpoint, f2.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 2, t_slow(200), 1, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f1, 1, 2000));
  CHECK(fake_wait(&loop, &f2, 1, 2000));
  CHECK_EQ(fake_echo(&f2), 1);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "q", 1));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  fake_close(&f1);
  fake_close(&f2);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* 1,000 requests in flight at once from one client, on 1,000 sockets. */
typedef struct {
  int finals;
  int errors;
} count_t;

static void on_count(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  count_t *n = mdp_client_get_data(c);
  if (status == 0 && final &&
      mdp_msg_frame_eq(body, 0, &id, sizeof id))
    n->finals++;
  else if (final)
    n->errors++;
  mdp_msg_destroy(body);
}

typedef struct {
  fake_t *f;
  count_t *n;
  int target;
} echo_wait_t;

static int echo_until(void *arg) {
  echo_wait_t *e = arg;
  fake_echo(e->f);
  return e->n->finals + e->n->errors >= e->target;
}

static void thousand_in_flight(void) {
  int n = t_scale(1000);
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 4096);
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open_ctx(&f, ctx, "inproc://client-thousand") == 0);
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.zmq_context = ctx;
  o.max_sockets = (size_t)n;
  mdp_client_t *c = NULL;
  const char *eps[] = {f.endpoint};
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  count_t cnt = {0};
  mdp_client_set_data(c, &cnt);
  for (int i = 0; i < n; i++) {
    /* the body is the request id, so each reply is matched to its request */
    uint64_t next = (uint64_t)i + 1;
    mdp_msg_t *b = mdp_msg_new();
    mdp_msg_append_mem(b, &next, sizeof next);
    uint64_t id;
    CHECK_EQ(mdp_client_request(c, "echo", b, NULL, on_count, NULL, &id), 0);
    CHECK_EQ(id, next);
  }
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.in_flight, (size_t)n);
  CHECK_EQ(st.queued, 0);
  echo_wait_t e = {&f, &cnt, n};
  CHECK(t_run_until(&loop, echo_until, &e, 30000));
  CHECK_EQ(cnt.finals, n);
  CHECK_EQ(cnt.errors, 0);
  client_closed_flag = 0;
  mdp_client_close(c, on_client_closed);
  CHECK(t_run_until(&loop, is_client_closed, NULL, 5000));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
  zmq_ctx_term(ctx);
}

/* The blocking helper, against a fake broker in another thread. */
typedef struct {
  fake_t f;
  volatile int stop;
  int mode; /* 0: PARTIAL + FINAL, 1: never answer */
} thread_fake_t;

static void fake_thread(void *arg) {
  thread_fake_t *t = arg;
  while (!t->stop) {
    zmq_pollitem_t it = {t->f.sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 10) <= 0)
      continue;
    mdp_msg_t *m = fake_take(&t->f);
    if (m == NULL)
      continue;
    if (t->mode == 0) {
      fake_reply(&t->f, m, "\x02", "one");
      fake_reply(&t->f, m, "\x03", "two", "three");
    }
    mdp_msg_destroy(m);
  }
}

static void sync_helper(void) {
  thread_fake_t t;
  memset(&t, 0, sizeof t);
  CHECK(fake_open(&t.f, "tcp://127.0.0.1:*") == 0);
  uv_thread_t th;
  uv_thread_create(&th, fake_thread, &t);
  mdp_msg_t *body = body_of("hi");
  mdp_reply_t reply;
  int rc = mdp_request_sync(t.f.endpoint, "echo", body, 2000, 0, NULL, &reply);
  CHECK_EQ(mdp_msg_size(body), 1); /* still the caller's */
  t.mode = 1;
  mdp_reply_t none;
  uint64_t t0 = uv_hrtime();
  int rc2 = mdp_request_sync(t.f.endpoint, "echo", body, 50, 1, NULL, &none);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  t.stop = 1;
  uv_thread_join(&th);
  fake_close(&t.f);
  mdp_msg_destroy(body);
  CHECK_EQ(rc, 0);
  CHECK_EQ(reply.count, 2);
  CHECK(mdp_msg_frame_eq(reply.parts[0], 0, "one", 3));
  CHECK_EQ(mdp_msg_size(reply.parts[1]), 2);
  CHECK(mdp_msg_frame_eq(reply.parts[1], 1, "three", 5));
  mdp_reply_free(&reply);
  CHECK_EQ(reply.count, 0);
  CHECK_EQ(rc2, MDP_ETIMEDOUT);
  CHECK_EQ(none.count, 0);
  CHECK(ms >= 90);
}

/* --- dialects: each one's frames, written out by hand from WIRE.md -------- */

typedef struct {
  mdp_dialect_t dialect;
  int lead;              /* every message starts with an empty frame */
  const char *header;
  const char *request;   /* command bytes; NULL: no command frame (0.1) */
  const char *partial;   /* NULL: the dialect has none */
  const char *final;
  int reply_service;     /* replies carry the service frame */
} cd_t;

static const cd_t CD_RFC18 = {MDP_DIALECT_RFC18, 0, "MDPC02", "\x01", "\x02",
                              "\x03", 1};
/* Majortomo: REQUEST 0x02, PARTIAL 0x03, FINAL 0x04, no service in replies */
static const cd_t CD_MAJORTOMO = {MDP_DIALECT_MAJORTOMO, 1, "MDPC02", "\x02",
                                  "\x03", "\x04", 0};
/* MDP/0.1: no command frame; one REPLY with the service */
static const cd_t CD_MDP01 = {MDP_DIALECT_MDP01, 1, "MDPC01", NULL, NULL, NULL,
                              1};

/* [lead?] | header | command? | service? | rest... (NULL-terminated). */
static size_t cd_frames(const cd_t *d, const char *command,
                        const char *service, va_list ap, const char **out,
                        size_t max) {
  size_t n = 0;
  if (d->lead)
    out[n++] = "";
  out[n++] = d->header;
  if (command)
    out[n++] = command;
  if (service)
    out[n++] = service;
  const char *fr;
  while ((fr = va_arg(ap, const char *)) != NULL && n < max)
    out[n++] = fr;
  return n;
}

static int cd_is(mdp_msg_t *m, const cd_t *d, const char *command,
                 const char *service, ...) {
  const char *fr[32];
  va_list ap;
  va_start(ap, service);
  size_t n = cd_frames(d, command, service, ap, fr, 32);
  va_end(ap);
  return frames_are_v(m, fr, n);
}

/* Sends to the sender of `req` (its identity frame). */
static void cd_send(fake_t *f, mdp_msg_t *req, const cd_t *d,
                    const char *command, const char *service, ...) {
  const char *fr[32];
  va_list ap;
  va_start(ap, service);
  size_t n = cd_frames(d, command, service, ap, fr, 32);
  va_end(ap);
  zmq_send(f->sock, mdp_msg_data(req, 0), mdp_msg_frame_size(req, 0),
           ZMQ_SNDMORE);
  for (size_t i = 0; i < n; i++)
    zmq_send(f->sock, fr[i], strlen(fr[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
}

static int dropped_some(void *arg) {
  mdp_client_stats_t st;
  mdp_client_get_stats(arg, &st);
  return st.dropped >= 1;
}

/* A client of dialect `d` against a raw ROUTER speaking `d`: the REQUEST
 * frame for frame, PARTIALs (0.2) and the FINAL/REPLY with multi-frame
 * bodies, a reply in another dialect dropped, and the socket reused. */
static void client_dialect(const cd_t *d, const cd_t *other) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.dialect = d->dialect;
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  mdp_msg_t *body = body_of("a");
  mdp_msg_append_mem(body, NULL, 0);
  mdp_msg_append_str(body, "b");
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body, NULL, on_reply, &r, NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  mdp_msg_t *m = fake_take(&f);
  CHECK(cd_is(m, d, d->request, "echo", "a", "", "b", NULL));
  const char *svc = d->reply_service ? "echo" : NULL;
  int partials = 0;
  if (d->partial) {
    cd_send(&f, m, d, d->partial, svc, "p1", NULL);
    cd_send(&f, m, d, d->partial, svc, "p2", "", NULL);
    partials = 2;
  }
  /* in another dialect: not this client's language, dropped */
  cd_send(&f, m, other, other->final, other->reply_service ? "echo" : NULL,
          "wrong", NULL);
  CHECK(t_run_until(&loop, dropped_some, c, 2000));
  CHECK_EQ(r.calls, partials);
  cd_send(&f, m, d, d->final, svc, "f", "", "g", NULL);
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK_EQ(r.partials, partials);
  CHECK_EQ(r.finals, 1);
  CHECK_EQ(r.nparts, partials + 1);
  if (partials) {
    CHECK_EQ(mdp_msg_size(r.parts[0]), 1);
    CHECK(mdp_msg_frame_eq(r.parts[0], 0, "p1", 2));
    CHECK_EQ(mdp_msg_size(r.parts[1]), 2);
    CHECK(mdp_msg_frame_eq(r.parts[1], 0, "p2", 2));
    CHECK(mdp_msg_frame_eq(r.parts[1], 1, "", 0));
  }
  mdp_msg_t *fin = r.parts[partials];
  CHECK_EQ(mdp_msg_size(fin), 3);
  CHECK(mdp_msg_frame_eq(fin, 0, "f", 1));
  CHECK(mdp_msg_frame_eq(fin, 1, "", 0));
  CHECK(mdp_msg_frame_eq(fin, 2, "g", 1));
  rep_clear(&r);
  /* the socket is clean after the FINAL and is reused */
  CHECK_EQ(mdp_client_request(c, "other", body_of("x"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  m = fake_take(&f);
  CHECK(cd_is(m, d, d->request, "other", "x", NULL));
  if (d->reply_service) { /* a reply naming another service: dropped */
    cd_send(&f, m, d, d->final, "echo", "stale", NULL);
    CHECK(t_run_until(&loop, rep_done, &r, 100) == 0);
  }
  cd_send(&f, m, d, d->final, d->reply_service ? "other" : NULL, "y", NULL);
  mdp_msg_destroy(m);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK_EQ(r.nparts, 1);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "y", 1));
  rep_clear(&r);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.sockets_opened, 1);
  CHECK_EQ(st.finals, 2);
  CHECK_EQ(st.partials, (uint64_t)partials);
  CHECK_EQ(st.dropped, d->reply_service ? 2 : 1);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void dialect_rfc18(void) { client_dialect(&CD_RFC18, &CD_MDP01); }
static void dialect_majortomo(void) {
  client_dialect(&CD_MAJORTOMO, &CD_RFC18);
}
static void dialect_mdp01(void) { client_dialect(&CD_MDP01, &CD_MAJORTOMO); }

/* --- against the real broker ----------------------------------------------- */

typedef struct {
  int closed;
} bclose_t;

static void broker_closed(mdp_broker_t *b) {
  bclose_t *c = mdp_broker_get_data(b);
  c->closed = 1;
}

static int b_closed(void *arg) { return ((bclose_t *)arg)->closed; }

/* An echo worker that streams the body back as one PARTIAL per frame and an
 * empty FINAL. */
static void on_echo(mdp_worker_t *w, mdp_request_t req,
                    mdp_msg_t *body) {
  zmq_msg_t frame;
  while (mdp_msg_size(body) > 1) {
    mdp_msg_pop_front(body, &frame);
    mdp_msg_t *part = mdp_msg_new();
    mdp_msg_append(part, &frame);
    zmq_msg_close(&frame);
    if (mdp_worker_partial(req, part) < 0)
      mdp_msg_destroy(part);
  }
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static int workers_closed;
static void on_worker_closed(mdp_worker_t *w) { workers_closed++; }
static int three_closed(void *arg) { return workers_closed == 3; }

static int registered(void *arg) {
  mdp_broker_service_stats_t st;
  return mdp_broker_get_service_stats(arg, "echo", &st) == 0 &&
         st.workers_idle >= 3;
}

typedef struct {
  rep_t *r;
  int n;
} all_t;

static int all_done(void *arg) {
  all_t *a = arg;
  for (int i = 0; i < a->n; i++)
    if (!a->r[i].done)
      return 0;
  return 1;
}

static void via_broker(const char *bind) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_t *b = NULL;
  CHECK_EQ(mdp_broker_new(&loop, NULL, &b), 0);
  CHECK_EQ(mdp_broker_bind(b, bind), 0);
  bclose_t bc = {0};
  mdp_broker_set_data(b, &bc);
  char ep[256];
  CHECK_EQ(mdp_broker_last_endpoint(b, ep, sizeof ep), 0);
  mdp_worker_t *w[3];
  workers_closed = 0;
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mdp_worker_new(&loop, ep, "echo", NULL, on_echo, &w[i]), 0);
  CHECK(t_run_until(&loop, registered, b, 3000));
  const char *eps[] = {ep};
  mdp_client_t *c = client_start(&loop, eps, 1, 0, 1, 8);
  CHECK(c != NULL);
  enum { N = 20 };
  rep_t r[N];
  memset(r, 0, sizeof r);
  for (int i = 0; i < N; i++) {
    mdp_msg_t *body = body_of("a");
    mdp_msg_append_str(body, "b");
    mdp_msg_append_mem(body, NULL, 0);
    CHECK_EQ(mdp_client_request(c, "echo", body, NULL, on_reply, &r[i], NULL),
             0);
  }
  rep_t mmi = {0};
  CHECK_EQ(mdp_client_request(c, "mmi.service", body_of("echo"), NULL,
                              on_reply, &mmi, NULL), 0);
  all_t all = {r, N};
  CHECK(t_run_until(&loop, all_done, &all, 5000));
  CHECK(t_run_until(&loop, rep_done, &mmi, 2000));
  for (int i = 0; i < N; i++) {
    CHECK_EQ(r[i].status, 0);
    CHECK_EQ(r[i].partials, 2);
    CHECK(mdp_msg_frame_eq(r[i].parts[0], 0, "a", 1));
    CHECK(mdp_msg_frame_eq(r[i].parts[1], 0, "b", 1));
    CHECK(mdp_msg_frame_eq(r[i].parts[2], 0, "", 0));
    rep_clear(&r[i]);
  }
  CHECK_EQ(mmi.status, 0);
  CHECK(mdp_msg_frame_eq(mmi.parts[0], 0, "200", 3));
  rep_clear(&mmi);
  CHECK(client_stop(&loop, c));
  for (int i = 0; i < 3; i++)
    mdp_worker_close(w[i], 1, on_worker_closed);
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  CHECK(t_run_until(&loop, three_closed, NULL, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void broker_inproc(void) { via_broker("inproc://client-broker"); }
static void broker_ipc(void) {
  char ep[128];
  snprintf(ep, sizeof ep, "ipc:///tmp/mdp-test-client-%d", (int)getpid());
  via_broker(ep);
}
static void broker_tcp(void) { via_broker("tcp://127.0.0.1:*"); }

typedef struct {
  mdp_broker_t *b;
  const char *ep;
} rebind_t;

static int rebind(void *arg) {
  rebind_t *r = arg;
  return mdp_broker_bind(r->b, r->ep) == 0;
}

/* The broker goes away and a new one is bound on the same endpoint: the
 * worker re-registers and a client request (retried as needed) succeeds. */
static void broker_restart(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_options_t bo;
  mdp_broker_options_init(&bo);
  bo.heartbeat_interval_ms = t_slow(50);
  mdp_broker_t *b = NULL;
  CHECK_EQ(mdp_broker_new(&loop, &bo, &b), 0);
  CHECK_EQ(mdp_broker_bind(b, "tcp://127.0.0.1:*"), 0);
  bclose_t bc = {0};
  mdp_broker_set_data(b, &bc);
  char ep[256];
  CHECK_EQ(mdp_broker_last_endpoint(b, ep, sizeof ep), 0);
  mdp_worker_options_t wo;
  mdp_worker_options_init(&wo);
  wo.heartbeat_interval_ms = t_slow(50);
  wo.heartbeat_liveness = 3;
  wo.reconnect_initial_ms = 20;
  wo.reconnect_max_ms = 100;
  mdp_worker_t *w[3];
  workers_closed = 0;
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mdp_worker_new(&loop, ep, "echo", &wo, on_echo, &w[i]), 0);
  CHECK(t_run_until(&loop, registered, b, 3000));
  const char *eps[] = {ep};
  /* retries enough for a restart on a slow day (workers may flap) */
  mdp_client_t *c = client_start(&loop, eps, 1, t_slow(300), 20, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("one"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(t_run_until(&loop, rep_done, &r, 3000));
  CHECK_EQ(r.status, 0);
  rep_clear(&r);
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  /* asked while no broker is there */
  CHECK_EQ(mdp_client_request(c, "echo", body_of("two"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(!t_run_until(&loop, rep_done, &r, 100));
  bc.closed = 0;
  CHECK_EQ(mdp_broker_new(&loop, &bo, &b), 0);
  mdp_broker_set_data(b, &bc);
  rebind_t rb = {b, ep};
  CHECK(t_run_until(&loop, rebind, &rb, 3000));
  CHECK(t_run_until(&loop, rep_done, &r, 10000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "two", 3));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  for (int i = 0; i < 3; i++)
    mdp_worker_close(w[i], 0, on_worker_closed);
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  CHECK(t_run_until(&loop, three_closed, NULL, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* All nine client/worker dialect pairings through mdp_broker_t, with
 * mdp_client_t and mdp_worker_t objects: one worker per dialect (service
 * "echo-<dialect>"), one client per dialect, each client calling each
 * worker with a multi-frame body.  0.2 workers stream one PARTIAL per frame
 * but the last, which is the FINAL; an MDP/0.1 worker answers with one
 * REPLY; an MDP/0.1 client gets one REPLY holding every frame (the broker
 * collects the PARTIALs).  MMI answers each client in its own dialect. */
static void on_echo_dialect(mdp_worker_t *w, mdp_request_t req,
                            mdp_msg_t *body) {
  int stream = mdp_worker_get_data(w) != NULL;
  zmq_msg_t frame;
  while (stream && mdp_msg_size(body) > 1) {
    mdp_msg_pop_front(body, &frame);
    mdp_msg_t *part = mdp_msg_new();
    mdp_msg_append(part, &frame);
    zmq_msg_close(&frame);
    if (mdp_worker_partial(req, part) < 0)
      mdp_msg_destroy(part);
  }
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static int three_services(void *arg) {
  static const char *const names[] = {"echo-rfc18", "echo-majortomo",
                                      "echo-mdp01"};
  for (int i = 0; i < 3; i++) {
    mdp_broker_service_stats_t st;
    if (mdp_broker_get_service_stats(arg, names[i], &st) != 0 ||
        st.workers_idle < 1)
      return 0;
  }
  return 1;
}

static void nine_pairings(void) {
  static const mdp_dialect_t ds[3] = {MDP_DIALECT_RFC18, MDP_DIALECT_MAJORTOMO,
                                      MDP_DIALECT_MDP01};
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_t *b = NULL;
  CHECK_EQ(mdp_broker_new(&loop, NULL, &b), 0);
  CHECK_EQ(mdp_broker_bind(b, "tcp://127.0.0.1:*"), 0);
  bclose_t bc = {0};
  mdp_broker_set_data(b, &bc);
  char ep[256];
  CHECK_EQ(mdp_broker_last_endpoint(b, ep, sizeof ep), 0);
  mdp_worker_t *w[3];
  mdp_client_t *c[3];
  workers_closed = 0;
  for (int i = 0; i < 3; i++) {
    mdp_worker_options_t wo;
    mdp_worker_options_init(&wo);
    wo.dialect = ds[i];
    char svc[64];
    snprintf(svc, sizeof svc, "echo-%s", mdp_dialect_name(ds[i]));
    CHECK_EQ(mdp_worker_new(&loop, ep, svc, &wo, on_echo_dialect, &w[i]), 0);
    if (ds[i] != MDP_DIALECT_MDP01)
      mdp_worker_set_data(w[i], w[i]); /* non-NULL: stream */
    mdp_client_options_t co;
    mdp_client_options_init(&co);
    co.dialect = ds[i];
    const char *eps[] = {ep};
    CHECK_EQ(mdp_client_new(&loop, eps, 1, &co, &c[i]), 0);
  }
  CHECK(t_run_until(&loop, three_services, b, 3000));
  rep_t r[3][3], mmi[3];
  memset(r, 0, sizeof r);
  memset(mmi, 0, sizeof mmi);
  for (int ci = 0; ci < 3; ci++) {
    for (int wi = 0; wi < 3; wi++) {
      char svc[64];
      snprintf(svc, sizeof svc, "echo-%s", mdp_dialect_name(ds[wi]));
      mdp_msg_t *body = body_of("a");
      mdp_msg_append_mem(body, NULL, 0);
      mdp_msg_append_str(body, "b");
      CHECK_EQ(mdp_client_request(c[ci], svc, body, NULL, on_reply,
                                  &r[ci][wi], NULL), 0);
    }
    CHECK_EQ(mdp_client_request(c[ci], "mmi.service", body_of("echo-mdp01"),
                                NULL, on_reply, &mmi[ci], NULL), 0);
  }
  all_t all = {&r[0][0], 9};
  CHECK(t_run_until(&loop, all_done, &all, 5000));
  all_t all_mmi = {mmi, 3};
  CHECK(t_run_until(&loop, all_done, &all_mmi, 2000));
  for (int ci = 0; ci < 3; ci++) {
    for (int wi = 0; wi < 3; wi++) {
      rep_t *x = &r[ci][wi];
      int streamed = ds[ci] != MDP_DIALECT_MDP01 && ds[wi] != MDP_DIALECT_MDP01;
      printf("# client %s, worker %s: %d part(s)\n", mdp_dialect_name(ds[ci]),
             mdp_dialect_name(ds[wi]), x->nparts);
      CHECK_EQ(x->status, 0);
      CHECK_EQ(x->finals, 1);
      CHECK_EQ(x->partials, streamed ? 2 : 0);
      /* the frames of every part, in order, are the body sent */
      const char *want[] = {"a", "", "b"};
      int k = 0;
      for (int p = 0; p < x->nparts; p++)
        for (size_t fi = 0; fi < mdp_msg_size(x->parts[p]); fi++, k++) {
          CHECK(k < 3);
          CHECK(mdp_msg_frame_eq(x->parts[p], fi, want[k], strlen(want[k])));
        }
      CHECK_EQ(k, 3);
      rep_clear(x);
    }
    CHECK_EQ(mmi[ci].status, 0);
    CHECK(mdp_msg_frame_eq(mmi[ci].parts[0], 0, "200", 3));
    rep_clear(&mmi[ci]);
  }
  mdp_broker_stats_t bs;
  mdp_broker_get_stats(b, &bs);
  CHECK_EQ(bs.dropped_invalid, 0);
  for (int i = 0; i < 3; i++) {
    mdp_client_stats_t cs;
    mdp_client_get_stats(c[i], &cs);
    CHECK_EQ(cs.dropped, 0);
    mdp_worker_stats_t ws;
    mdp_worker_get_stats(w[i], &ws);
    CHECK_EQ(ws.requests, 3);
    CHECK_EQ(ws.dropped_invalid, 0);
    CHECK(client_stop(&loop, c[i]));
    mdp_worker_close(w[i], 1, on_worker_closed);
  }
  CHECK(t_run_until(&loop, three_closed, NULL, 3000));
  mdp_broker_close(b, broker_closed);
  CHECK(t_run_until(&loop, b_closed, &bc, 3000));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Time edges: timeouts and deadlines of 0, 1, UINT64_MAX, and values that
 * overflow when added to the loop's time.  A sum past the clock's range
 * saturates to "never" (UINT64_MAX means forever); it must not wrap into
 * the past and time the request out at once. */
static void time_edges(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-time-edges") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = NULL;
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = 0; /* no wait at all is not a timeout */
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  o.timeout_ms = UINT64_MAX; /* forever, as is the deadline */
  o.deadline_ms = UINT64_MAX;
  o.max_sockets = 8;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  mdp_request_options_t ro;
  mdp_client_request_options_init(c, &ro);
  CHECK(ro.timeout_ms == UINT64_MAX && ro.deadline_ms == UINT64_MAX);
  ro.timeout_ms = 0;
  mdp_msg_t *b = body_of("x");
  CHECK_EQ(mdp_client_request(c, "echo", b, &ro, on_reply, NULL, NULL),
           MDP_EINVAL);
  mdp_msg_destroy(b);
  uv_update_time(&loop);
  uint64_t now = uv_now(&loop);
  /* Requests that must stay pending: [timeout, deadline] */
  const uint64_t forever[][2] = {
      {UINT64_MAX, UINT64_MAX},          /* the client's options */
      {UINT64_MAX, 0},                   /* no deadline */
      {10000, UINT64_MAX},               /* deadline forever */
      {UINT64_MAX - now + 5, UINT64_MAX - now + 1}, /* both overflow */
      {UINT64_MAX - 1, UINT64_MAX - 1},
  };
  enum { NF = sizeof forever / sizeof forever[0] };
  rep_t r[NF];
  memset(r, 0, sizeof r);
  for (int i = 0; i < NF; i++) {
    ro.timeout_ms = forever[i][0];
    ro.deadline_ms = forever[i][1];
    CHECK_EQ(mdp_client_request(c, "echo", body_of("f"), i ? &ro : NULL,
                                on_reply, &r[i], NULL), 0);
  }
  /* ... and the shortest: 1 ms, as a timeout and as a deadline */
  rep_t t1 = {0}, d1 = {0};
  ro.timeout_ms = 1;
  ro.deadline_ms = 0;
  ro.retries = 0;
  CHECK_EQ(mdp_client_request(c, "echo", body_of("t"), &ro, on_reply, &t1,
                              NULL), 0);
  ro.timeout_ms = UINT64_MAX;
  ro.deadline_ms = 1;
  CHECK_EQ(mdp_client_request(c, "echo", body_of("d"), &ro, on_reply, &d1,
                              NULL), 0);
  CHECK(t_run_until(&loop, rep_done, &t1, 2000));
  CHECK(t_run_until(&loop, rep_done, &d1, 2000));
  CHECK_EQ(t1.status, MDP_ETIMEDOUT);
  CHECK_EQ(d1.status, MDP_ETIMEDOUT);
  CHECK(fake_wait(&loop, &f, NF, 2000)); /* all sent, also t and d */
  t_run_until(&loop, NULL, NULL, 50);
  for (int i = 0; i < NF; i++)
    CHECK_EQ(r[i].calls, 0);
  /* still pending, and answered */
  mdp_msg_t *m;
  while ((m = fake_take(&f)) != NULL) {
    if (mdp_msg_frame_eq(m, 4, "f", 1))
      fake_reply(&f, m, "\x03", "ok");
    mdp_msg_destroy(m);
  }
  all_t all = {r, NF};
  CHECK(t_run_until(&loop, all_done, &all, 2000));
  for (int i = 0; i < NF; i++) {
    CHECK_EQ(r[i].status, 0);
    rep_clear(&r[i]);
  }
  rep_clear(&t1);
  rep_clear(&d1);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.timeouts, 2);
  CHECK_EQ(st.finals, NF);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Scale: n requests wait behind n others and time out together (their
 * deadline), then the others are cancelled, newest first.  The client's
 * bookkeeping must grow as n log n: 10x the requests may cost at most 25x
 * the steps (n log n gives about 13x; rescanning per request, 100x).  The
 * count is the client's own (client_internal.h), so a slow machine cannot
 * make the test flaky; the wall-clock bound is only a generous backstop. */
typedef struct {
  int done;
  int timeouts;
  int cancelled;
} many_t;

static void on_many(mdp_client_t *c, uint64_t id, int status, int final,
                    mdp_msg_t *body, void *data) {
  many_t *m = mdp_client_get_data(c);
  mdp_msg_destroy(body);
  if (!final)
    return;
  m->done++;
  m->timeouts += status == MDP_ETIMEDOUT;
  m->cancelled += status == MDP_ECANCELED;
}

typedef struct {
  many_t *m;
  int n;
} many_wait_t;

static int many_timed_out(void *arg) {
  many_wait_t *w = arg;
  return w->m->timeouts >= w->n;
}

/* The steps taken for n requests timing out at once plus n cancels, or 0. */
static uint64_t steps_for(int n, uint64_t *ms_out) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f; /* a broker that never answers */
  char ep[64];
  snprintf(ep, sizeof ep, "inproc://client-many-%d", n);
  if (fake_open(&f, ep) != 0) {
    printf("# cannot bind %s\n", ep);
    return 0;
  }
  const char *eps[] = {f.endpoint};
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = UINT64_MAX; /* only the deadlines below expire */
  o.max_sockets = 1;
  o.max_queue = 0;
  mdp_client_t *c = NULL;
  uint64_t steps = 0;
  if (mdp_client_new(&loop, eps, 1, &o, &c) != 0)
    goto out;
  many_t m = {0};
  mdp_client_set_data(c, &m);
  uint64_t *ids = calloc((size_t)n, sizeof *ids);
  uint64_t t0 = uv_hrtime();
  int ok = ids != NULL;
  for (int i = 0; ok && i < n; i++) /* first: no deadline */
    ok = mdp_client_request(c, "echo", body_of("x"), NULL, on_many, NULL,
                            &ids[i]) == 0;
  mdp_request_options_t ro;
  mdp_client_request_options_init(c, &ro);
  ro.deadline_ms = 50;
  for (int i = 0; ok && i < n; i++) /* then: all due together */
    ok = mdp_client_request(c, "echo", body_of("y"), &ro, on_many, NULL,
                            NULL) == 0;
  many_wait_t w = {&m, n};
  ok = ok && t_run_until(&loop, many_timed_out, &w, 30000);
  for (int i = n - 1; ok && i >= 0; i--)
    ok = mdp_client_cancel(c, ids[i]) == 0;
  *ms_out = (uv_hrtime() - t0) / 1000000;
  if (ok && m.timeouts == n && m.cancelled == n)
    steps = mdp__client_steps(c);
  printf("# %d requests: %llu steps, %llu ms\n", n, (unsigned long long)steps,
         (unsigned long long)*ms_out);
  free(ids);
  client_stop(&loop, c);
out:
  fake_close(&f);
  t_loop_close(&loop);
  return steps;
}

static void many_time_out_together(void) {
  int small = t_scale(1000), large = 10 * small;
  uint64_t ms_small = 0, ms_large = 0;
  uint64_t s_small = steps_for(small, &ms_small);
  uint64_t s_large = steps_for(large, &ms_large);
  CHECK(s_small > 0 && s_large > 0);
  CHECK(s_large <= 25 * s_small);
  CHECK(ms_large < t_slow(20000));
}

/* Bounded memory, 1: a reply frame over max_msg_size never reaches the
 * client (ZeroMQ drops the connection: the request times out), one within
 * it does.  tcp: ZMQ_MAXMSGSIZE is not enforced over inproc. */
static void max_msg_size_bound(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  CHECK_EQ(o.max_msg_size, 64 * 1024 * 1024);
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = NULL;
  o.max_msg_size = -2;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  o.max_msg_size = 1000;
  o.timeout_ms = t_slow(300);
  o.retries = 0;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  static char big[2001], small[901];
  memset(big, 'b', sizeof big - 1);
  memset(small, 's', sizeof small - 1);
  const char *frames[] = {big, small};
  for (int i = 0; i < 2; i++) {
    rep_t r = {0};
    CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                                NULL), 0);
    CHECK(fake_wait(&loop, &f, 1, 2000));
    mdp_msg_t *m = fake_take(&f);
    fake_reply(&f, m, "\x03", frames[i]);
    mdp_msg_destroy(m);
    CHECK(t_run_until(&loop, rep_done, &r, 3000));
    CHECK_EQ(r.status, i == 0 ? MDP_ETIMEDOUT : 0);
    CHECK_EQ(r.nparts, i == 0 ? 0 : 1);
    rep_clear(&r);
  }
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}


/* Bounded memory, 1b: a reply of more than max_frames frames (default
 * 1024) is discarded whole and counted, so the request times out; one
 * within the bound is delivered.  Without the bound a broker answering one
 * FINAL of millions of empty frames made the client hold them all. */
static void max_frames_bound(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  CHECK_EQ(o.max_frames, 1024);
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = NULL;
  o.max_frames = 3;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  o.max_frames = 0; /* unlimited is allowed */
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  CHECK(client_stop(&loop, c));
  mdp_client_options_init(&o);
  o.timeout_ms = t_slow(300);
  o.retries = 0;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  /* 3 envelope frames + this many body frames: 1 over, then exactly 1024. */
  size_t bodies[] = {1022, 1021};
  for (int i = 0; i < 2; i++) {
    rep_t r = {0};
    CHECK_EQ(mdp_client_request(c, "echo", body_of("q"), NULL, on_reply, &r,
                                NULL), 0);
    CHECK(fake_wait(&loop, &f, 1, 2000));
    mdp_msg_t *m = fake_take(&f);
    zmq_send(f.sock, mdp_msg_data(m, 0), mdp_msg_frame_size(m, 0),
             ZMQ_SNDMORE);
    zmq_send(f.sock, "MDPC02", 6, ZMQ_SNDMORE);
    zmq_send(f.sock, "\x03", 1, ZMQ_SNDMORE);
    zmq_send(f.sock, "echo", 4, ZMQ_SNDMORE);
    for (size_t k = 0; k < bodies[i]; k++)
      zmq_send(f.sock, "", 0, k + 1 < bodies[i] ? ZMQ_SNDMORE : 0);
    mdp_msg_destroy(m);
    CHECK(t_run_until(&loop, rep_done, &r, 3000));
    CHECK_EQ(r.status, i == 0 ? MDP_ETIMEDOUT : 0);
    CHECK_EQ(r.nparts, i == 0 ? 0 : 1);
    rep_clear(&r);
    mdp_client_stats_t st;
    mdp_client_get_stats(c, &st);
    CHECK_EQ(st.dropped_frames, 1); /* counted, also once the socket went */
  }
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static int queued_bytes_are(void *arg) {
  mdp_client_stats_t st;
  mdp_client_get_stats(arg, &st);
  return st.queued == 0 && st.queued_bytes == 0;
}

/* Bounded memory, 2: requests that would wait beyond max_queue (count) or
 * max_queued_bytes are refused with MDP_ENOBUFS, counted, the body still
 * the caller's and no callback; requests that go straight to a socket are
 * not counted against the queue. */
static void queue_bounds(void) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  CHECK_EQ(o.max_queue, 10000);
  CHECK_EQ(o.max_queued_bytes, 64 * 1024 * 1024);
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "inproc://client-queue-bounds") == 0);
  const char *eps[] = {f.endpoint};
  o.max_sockets = 1;
  o.max_queue = 3;
  o.max_queued_bytes = 100;
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  static char b1000[1001], b60[61], b40[41], b1[2];
  memset(b1000, 'a', 1000);
  memset(b60, 'a', 60);
  memset(b40, 'a', 40);
  b1[0] = 'a';
  rep_t r[8];
  memset(r, 0, sizeof r);
  /* in flight at once: more than max_queued_bytes, not queued */
  CHECK_EQ(mdp_client_request(c, "echo", body_of(b1000), NULL, on_reply, &r[0],
                              NULL), 0);
  uint64_t id60;
  CHECK_EQ(mdp_client_request(c, "echo", body_of(b60), NULL, on_reply, &r[1],
                              &id60), 0);
  mdp_msg_t *over = body_of(b60); /* 120 > 100 bytes */
  CHECK_EQ(mdp_client_request(c, "echo", over, NULL, on_reply, &r[7], NULL),
           MDP_ENOBUFS);
  CHECK_EQ(mdp_msg_size(over), 1); /* still ours */
  CHECK_EQ(mdp_client_request(c, "echo", body_of(b40), NULL, on_reply, &r[2],
                              NULL), 0); /* exactly 100 */
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.queued, 2);
  CHECK_EQ(st.queued_bytes, 100);
  CHECK_EQ(st.refused_queued_bytes, 1);
  CHECK_EQ(st.refused_queue_full, 0);
  /* a cancelled queued request gives its bytes back */
  CHECK_EQ(mdp_client_cancel(c, id60), 0);
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.queued_bytes, 40);
  mdp_msg_destroy(over);
  CHECK_EQ(mdp_client_request(c, "echo", body_of(b1), NULL, on_reply, &r[3],
                              NULL), 0);
  CHECK_EQ(mdp_client_request(c, "echo", body_of(b1), NULL, on_reply, &r[4],
                              NULL), 0); /* 3 queued: the count bound */
  mdp_msg_t *fourth = body_of(b1);
  CHECK_EQ(mdp_client_request(c, "echo", fourth, NULL, on_reply, &r[7], NULL),
           MDP_ENOBUFS);
  CHECK_EQ(mdp_msg_size(fourth), 1);
  mdp_msg_destroy(fourth);
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.queued, 3);
  CHECK_EQ(st.queued_bytes, 42);
  CHECK_EQ(st.refused_queue_full, 1);
  CHECK_EQ(st.refused_queued_bytes, 1);
  CHECK_EQ(st.requests, 5);
  CHECK_EQ(r[7].calls, 0);
  /* served one by one, the queue empties */
  int echoed = 0;
  uint64_t end = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (echoed < 4 && uv_hrtime() < end) {
    fake_wait(&loop, &f, 1, 20);
    echoed += fake_echo(&f);
  }
  CHECK_EQ(echoed, 4);
  CHECK(t_run_until(&loop, queued_bytes_are, c, 2000));
  all_t all = {r, 5};
  CHECK(t_run_until(&loop, all_done, &all, 2000));
  CHECK_EQ(r[1].status, MDP_ECANCELED);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(r[i].calls, 1);
    rep_clear(&r[i]);
  }
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A malformed endpoint is found when the first socket to it is opened: the
 * request fails with MDP_EINVAL, from the loop, not from the call. */
/* A port out of range (which libzmq would take modulo 65536) or missing is
 * refused at once by mdp_client_new() and mdp_worker_new(), and by
 * mdp_endpoint_check() for every tool. */
static void endpoint_port_checked(void) {
  const char *bad_connect[] = {"tcp://127.0.0.1:99999", "tcp://127.0.0.1:70000",
                               "tcp://127.0.0.1:-1", "tcp://127.0.0.1:0",
                               "tcp://127.0.0.1:*", "tcp://127.0.0.1:",
                               "tcp://no-port-here", "tcp://[::1]",
                               "tcp://127.0.0.1:5555x", "tcp://127.0.0.1:000001",
                               "tcp://10.0.0.1:1;127.0.0.1:65536", "", NULL};
  for (size_t i = 0; i < sizeof bad_connect / sizeof *bad_connect; i++)
    CHECK_EQ(mdp_endpoint_check(bad_connect[i], 0), MDP_EINVAL);
  const char *good[] = {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:65535",
                        "tcp://[::1]:1", "tcp://localhost:5555",
                        "tcp://127.0.0.1:0;127.0.0.1:5555", "ipc:///tmp/x",
                        "inproc://x"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    CHECK_EQ(mdp_endpoint_check(good[i], 0), 0);
    CHECK_EQ(mdp_endpoint_check(good[i], 1), 0);
  }
  CHECK_EQ(mdp_endpoint_check("tcp://*:*", 1), 0);
  CHECK_EQ(mdp_endpoint_check("tcp://127.0.0.1:0", 1), 0);
  CHECK_EQ(mdp_endpoint_check("tcp://127.0.0.1:65536", 1), MDP_EINVAL);
  CHECK_EQ(mdp_endpoint_check("tcp://127.0.0.1:99999", 1), MDP_EINVAL);
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_client_t *c = NULL;
  const char *eps[] = {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:99999"};
  CHECK_EQ(mdp_client_new(&loop, eps, 2, NULL, &c), MDP_EINVAL);
  CHECK(c == NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static void malformed_endpoint_reported(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* Passes mdp_endpoint_check (not tcp://); libzmq refuses the transport
   * when the socket is opened, from the loop. */
  const char *eps[] = {"nosuch://transport"};
  mdp_client_t *c = client_start(&loop, eps, 1, 5000, 0, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  mdp_msg_t *body = body_of("x");
  CHECK_EQ(mdp_client_request(c, "echo", body, NULL, on_reply, &r, NULL), 0);
  CHECK_EQ(r.calls, 0);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, MDP_EINVAL);
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* Each pooled socket goes through the setup hook with the options set. */
static void socket_options_each_pooled_socket(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  probe_t probe = {0};
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.max_msg_size = 8192;
  probe_options(&o.socket, &probe);
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  CHECK_EQ(probe.calls, 0); /* sockets are opened on demand */
  rep_t r[3];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mdp_client_request(c, "echo", body_of("x"), NULL, on_reply, &r[i],
                                NULL), 0);
  CHECK_EQ(probe.calls, 3); /* three in flight: three sockets */
  CHECK(probe_saw_options(&probe));
  CHECK_EQ(probe.maxmsgsize, 8192);
  int echoed = 0;
  uint64_t end = uv_hrtime() + t_slow(3000) * 1000000ull;
  while (echoed < 3 && uv_hrtime() < end) {
    fake_wait(&loop, &f, 1, 20);
    echoed += fake_echo(&f);
  }
  CHECK_EQ(echoed, 3);
  for (int i = 0; i < 3; i++) {
    CHECK(t_run_until(&loop, rep_done, &r[i], 2000));
    CHECK_EQ(r[i].status, 0);
    rep_clear(&r[i]);
  }
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A hook that refuses the socket fails the request with MDP_ESETUP (from
 * the loop); out-of-range socket options fail mdp_client_new. */
static void socket_setup_failure_reported(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[] = {"tcp://127.0.0.1:9"};
  probe_t probe = {0};
  probe.fail = -1;
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.socket.setup = probe_setup;
  o.socket.setup_data = &probe;
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("x"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK_EQ(r.calls, 0);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, MDP_ESETUP);
  CHECK_EQ(probe.calls, 1);
  mdp_client_stats_t st;
  mdp_client_get_stats(c, &st);
  CHECK_EQ(st.sockets, 0);
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  mdp_client_options_init(&o);
  o.socket.rcvhwm = -1;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  mdp_client_options_init(&o);
  o.socket.tcp_keepalive_cnt = 0;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), MDP_EINVAL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A request over tcp://[::1]:PORT, ZMQ_IPV6 set for the literal. */
static void ipv6_literal_endpoint(void) {
  fake_t f;
  if (fake_open_ipv6(&f) != 0)
    return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 5000, 0, 0);
  CHECK(c != NULL);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("v6"), NULL, on_reply, &r,
                              NULL), 0);
  CHECK(fake_wait(&loop, &f, 1, 2000));
  CHECK_EQ(fake_echo(&f), 1);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  CHECK(mdp_msg_frame_eq(r.parts[0], 0, "v6", 2));
  rep_clear(&r);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* An unref'd client, even with a request pending on an open socket, does
 * not keep uv_run(UV_RUN_DEFAULT) going; sockets opened later are unref'd
 * too; mdp_client_is_closing follows mdp_client_close. */
static void ref_unref_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  CHECK(fake_open(&f, "tcp://127.0.0.1:*") == 0);
  const char *eps[] = {f.endpoint};
  mdp_client_t *c = client_start(&loop, eps, 1, 60000, 0, 0);
  CHECK(c != NULL);
  rep_t r[2];
  memset(r, 0, sizeof r);
  CHECK_EQ(mdp_client_request(c, "echo", body_of("a"), NULL, on_reply, &r[0],
                              NULL), 0);
  CHECK(!run_default_returns(&loop, 300)); /* ref'd: the watchdog stops it */
  mdp_client_unref(c);
  CHECK(run_default_returns(&loop, 5000));
  CHECK_EQ(mdp_client_request(c, "echo", body_of("b"), NULL, on_reply, &r[1],
                              NULL), 0); /* a second socket, unref'd too */
  CHECK(run_default_returns(&loop, 5000));
  mdp_client_ref(c);
  CHECK(!run_default_returns(&loop, 300));
  CHECK(!mdp_client_is_closing(c));
  client_closed_flag = 0;
  mdp_client_close(c, on_client_closed);
  CHECK(mdp_client_is_closing(c));
  CHECK(t_run_until(&loop, is_client_closed, NULL, 2000));
  CHECK_EQ(r[0].status, MDP_ECANCELED);
  rep_clear(&r[0]);
  rep_clear(&r[1]);
  fake_close(&f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static int set_immediate(void *sock, void *data) {
  int on = 1;
  return zmq_setsockopt(sock, ZMQ_IMMEDIATE, &on, sizeof on);
}

static int drains;
static void on_drain(mdp_client_t *c) {
  drains++;
  CHECK(mdp_client_held(c, NULL) == 0);
}
static int drained(void *arg) { return drains > 0; }

typedef struct {
  fake_t *f;
  const char *ep;
} fake_rebind_t;

/* Binds the fake broker (tried until it works). */
static int rebound(void *arg) {
  fake_rebind_t *rb = arg;
  if (fake_open(rb->f, rb->ep) == 0)
    return 1;
  zmq_close(rb->f->sock);
  return 0;
}

/* With ZMQ_IMMEDIATE (set by the hook) and no broker yet, the REQUEST is
 * held: mdp_client_held counts it (and its bytes); when the broker appears
 * it goes, and the drain callback runs once, from the loop. */
static void held_and_drain(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_t f;
  /* An ipc path nobody has bound yet: a tcp port freed by closing a fake
   * broker could still accept (ZeroMQ closes listeners from its I/O
   * thread), taking the request into a dead pipe once in a while. */
  char ep[256];
  snprintf(ep, sizeof ep, "ipc:///tmp/mdp-test-held-%d", (int)getpid());
  unlink(ep + strlen("ipc://"));
  const char *eps[] = {ep};
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.socket.setup = set_immediate;
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&loop, eps, 1, &o, &c), 0);
  drains = 0;
  mdp_client_set_drain_cb(c, on_drain);
  rep_t r = {0};
  CHECK_EQ(mdp_client_request(c, "echo", body_of("held"), NULL, on_reply, &r,
                              NULL), 0);
  size_t bytes = 0;
  CHECK_EQ(mdp_client_held(c, &bytes), 1);
  CHECK(bytes >= 4 + 6 + 1 + 4); /* body, header, command, service */
  CHECK_EQ(drains, 0);
  fake_rebind_t rb = {&f, ep};
  CHECK(t_run_until(&loop, rebound, &rb, 5000));
  CHECK(t_run_until(&loop, drained, NULL, 5000));
  CHECK_EQ(drains, 1);
  CHECK_EQ(mdp_client_held(c, &bytes), 0);
  CHECK_EQ(bytes, 0);
  CHECK(fake_wait(&loop, &f, 1, 5000));
  CHECK_EQ(fake_echo(&f), 1);
  CHECK(t_run_until(&loop, rep_done, &r, 2000));
  CHECK_EQ(r.status, 0);
  rep_clear(&r);
  CHECK_EQ(drains, 1);
  CHECK(client_stop(&loop, c));
  fake_close(&f);
  unlink(ep + strlen("ipc://"));
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(request_frames_exact);
  RUN(bad_arguments);
  RUN(pool_and_queue);
  RUN(timeout_retry_late_reply);
  RUN(timeout_exhausted);
  RUN(overall_deadline);
  RUN(cancel_requests);
  RUN(close_with_pending);
  RUN(close_from_callback);
  RUN(timeout_counts_from_the_call);
  RUN(stall_reads_before_timing_out);
  RUN(failover);
  RUN(thousand_in_flight);
  RUN(sync_helper);
  RUN(dialect_rfc18);
  RUN(dialect_majortomo);
  RUN(dialect_mdp01);
  RUN(broker_inproc);
  RUN(broker_ipc);
  RUN(broker_tcp);
  RUN(broker_restart);
  RUN(nine_pairings);
  RUN(time_edges);
  RUN(many_time_out_together);
  RUN(max_msg_size_bound);
  RUN(max_frames_bound);
  RUN(queue_bounds);
  RUN(endpoint_port_checked);
  RUN(malformed_endpoint_reported);
  RUN(socket_options_each_pooled_socket);
  RUN(socket_setup_failure_reported);
  RUN(ipv6_literal_endpoint);
  RUN(ref_unref_loop);
  RUN(held_and_drain);
  t_context_term();
  return t_done();
}
