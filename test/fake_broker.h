/* A fake broker for worker and client tests: a raw ROUTER socket that a
 * test reads without blocking (from t_run_until predicates) and answers
 * frame by frame, so the objects are tested independently of
 * mdp_broker_t.  Include after harness.h and mdp.h. */
#ifndef MDP_TEST_FAKE_BROKER_H
#define MDP_TEST_FAKE_BROKER_H

#include <string.h>
#include <zmq.h>

#define FAKE_MAX 256

typedef struct {
  void *sock;
  char endpoint[256];
  mdp_msg_t *q[FAKE_MAX]; /* received, identity frame first */
  size_t n;
} fake_t;

static inline int fake_open_ctx(fake_t *f, void *ctx, const char *bind) {
  memset(f, 0, sizeof *f);
  f->sock = zmq_socket(ctx, ZMQ_ROUTER);
  int linger = 0;
  zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(f->sock, bind) != 0)
    return -1;
  size_t len = sizeof f->endpoint;
  zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len);
  return 0;
}

static inline int fake_open(fake_t *f, const char *bind) {
  return fake_open_ctx(f, mdp_zmq_context(), bind);
}

static inline void fake_close(fake_t *f) {
  for (size_t i = 0; i < f->n; i++)
    mdp_msg_destroy(f->q[i]);
  f->n = 0;
  zmq_close(f->sock);
}

/* Moves every message waiting on the socket into the queue. */
static inline void fake_pump(fake_t *f) {
  while (f->n < FAKE_MAX) {
    mdp_msg_t *m = mdp_msg_new();
    int more = 1, got = 0;
    while (more) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, f->sock, got ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        break;
      }
      got = 1;
      more = zmq_msg_more(&frame);
      mdp_msg_append(m, &frame);
      zmq_msg_close(&frame);
    }
    if (!got) {
      mdp_msg_destroy(m);
      return;
    }
    f->q[f->n++] = m;
  }
}

/* Removes and returns the first queued message (NULL if none). */
static inline mdp_msg_t *fake_take(fake_t *f) {
  fake_pump(f);
  if (f->n == 0)
    return NULL;
  mdp_msg_t *m = f->q[0];
  memmove(f->q, f->q + 1, (f->n - 1) * sizeof *f->q);
  f->n--;
  return m;
}

/* Sends `id` then the NULL-terminated string frames; "\x01"-style command
 * bytes are one-byte strings. */
static inline void fake_send_v(fake_t *f, mdp_msg_t *id, const char *const *frames,
                        size_t n) {
  zmq_send(f->sock, mdp_msg_data(id, 0), mdp_msg_frame_size(id, 0),
           ZMQ_SNDMORE);
  for (size_t i = 0; i < n; i++)
    zmq_send(f->sock, frames[i], strlen(frames[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
}
#define fake_send(f, id, ...)                                                  \
  do {                                                                         \
    const char *fr_[] = {__VA_ARGS__};                                         \
    fake_send_v((f), (id), fr_, sizeof fr_ / sizeof fr_[0]);                   \
  } while (0)

typedef struct {
  fake_t *f;
  size_t n;
} fake_wait_t;

static inline int fake_has(void *arg) {
  fake_wait_t *w = arg;
  fake_pump(w->f);
  return w->f->n >= w->n;
}

/* Runs the loop until `n` messages are queued. */
static inline int fake_wait(uv_loop_t *loop, fake_t *f, size_t n, uint64_t ms) {
  fake_wait_t w = {f, n};
  return t_run_until(loop, fake_has, &w, ms);
}

/* 1 if `m` is [identity | frames...] with exactly these frames. */
static inline int frames_are_v(mdp_msg_t *m, const char *const *frames, size_t n) {
  if (m == NULL || mdp_msg_size(m) != n + 1)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!mdp_msg_frame_eq(m, i + 1, frames[i], strlen(frames[i])))
      return 0;
  return 1;
}
#define frames_are(m, ...)                                                     \
  ({                                                                           \
    const char *fa_[] = {__VA_ARGS__};                                         \
    frames_are_v((m), fa_, sizeof fa_ / sizeof fa_[0]);                        \
  })

/* --- socket options, read back through the setup hook -------------------- */

/* What a setup hook saw: how often it ran and the last socket's options. */
typedef struct {
  int calls;
  int fail;    /* return this from the hook (0: accept) */
  int type, sndhwm, rcvhwm, keepalive, idle, intvl, cnt, ipv6;
  int64_t maxmsgsize;
  int linger;
} probe_t;

static inline int probe_get_int(void *sock, int option) {
  int v = -99;
  size_t len = sizeof v;
  zmq_getsockopt(sock, option, &v, &len);
  return v;
}

static inline int probe_setup(void *sock, void *data) {
  probe_t *p = data;
  p->calls++;
  p->type = probe_get_int(sock, ZMQ_TYPE);
  p->sndhwm = probe_get_int(sock, ZMQ_SNDHWM);
  p->rcvhwm = probe_get_int(sock, ZMQ_RCVHWM);
  p->keepalive = probe_get_int(sock, ZMQ_TCP_KEEPALIVE);
  p->idle = probe_get_int(sock, ZMQ_TCP_KEEPALIVE_IDLE);
  p->intvl = probe_get_int(sock, ZMQ_TCP_KEEPALIVE_INTVL);
  p->cnt = probe_get_int(sock, ZMQ_TCP_KEEPALIVE_CNT);
  p->ipv6 = probe_get_int(sock, ZMQ_IPV6);
  p->linger = probe_get_int(sock, ZMQ_LINGER);
  size_t len = sizeof p->maxmsgsize;
  zmq_getsockopt(sock, ZMQ_MAXMSGSIZE, &p->maxmsgsize, &len);
  return p->fail;
}

/* Socket options that differ from every default, and the probe hook. */
static inline void probe_options(mdp_socket_options_t *so, probe_t *p) {
  so->sndhwm = 123;
  so->rcvhwm = 456;
  so->tcp_keepalive = 1;
  so->tcp_keepalive_idle = 30;
  so->tcp_keepalive_intvl = 5;
  so->tcp_keepalive_cnt = 3;
  so->ipv6 = 1;
  so->setup = probe_setup;
  so->setup_data = p;
}

/* 1 if the probe saw exactly what probe_options() asked for. */
static inline int probe_saw_options(const probe_t *p) {
  return p->type == ZMQ_DEALER && p->sndhwm == 123 && p->rcvhwm == 456 &&
         p->keepalive == 1 && p->idle == 30 && p->intvl == 5 && p->cnt == 3 &&
         p->ipv6 == 1 && p->linger == 0;
}

/* A fake broker on the IPv6 loopback (ZMQ_IPV6 set, as a broker bound
 * there must), or -1 if this machine has no ::1: then the running test is
 * marked skipped (the caller returns). */
static inline int fake_open_ipv6(fake_t *f) {
  memset(f, 0, sizeof *f);
  f->sock = zmq_socket(mdp_zmq_context(), ZMQ_ROUTER);
  int on = 1, linger = 0;
  zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(f->sock, ZMQ_IPV6, &on, sizeof on);
  if (zmq_bind(f->sock, "tcp://[::1]:*") != 0) {
    zmq_close(f->sock);
    t_skip("no ::1 on this machine");
    return -1;
  }
  size_t len = sizeof f->endpoint;
  zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len);
  return 0;
}

/* uv_run(UV_RUN_DEFAULT) with a watchdog that does not itself keep the loop
 * alive (unref'd): 1 if uv_run returned on its own, 0 if the watchdog had
 * to stop it after `ms`. */
static inline void t_watchdog_cb_(uv_timer_t *t) {
  *(int *)t->data = 1;
  uv_stop(t->loop);
}

static inline int run_default_returns(uv_loop_t *loop, uint64_t ms) {
  int fired = 0;
  uv_timer_t dog;
  uv_timer_init(loop, &dog);
  dog.data = &fired;
  uv_timer_start(&dog, t_watchdog_cb_, t_slow(ms), 0);
  uv_unref((uv_handle_t *)&dog);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&dog, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return !fired;
}

#endif /* MDP_TEST_FAKE_BROKER_H */
