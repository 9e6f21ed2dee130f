/* Raw ZeroMQ peers for tests: sockets that speak MDP's frames directly, so a
 * test checks the wire format itself, not what libmdp thinks it is.
 *
 * Peers are not on the loop.  peer_recv() alternates between running the
 * loop once without blocking (so the objects under test make progress in
 * this same thread) and a 1 ms zmq_poll() on the peer, until a message or
 * the deadline.  Include after harness.h.
 */
#ifndef MDP_TEST_PEER_H
#define MDP_TEST_PEER_H

#include <stdarg.h>
#include <stdlib.h>
#include <zmq.h>

#include <mdp.h>

/* A wildcard for msg_is(): any frame content. */
#define ANY ((const char *)1)

/* A DEALER (or `type`) connected to `endpoint`, linger 0. */
static inline void *peer_new(void *ctx, int type, const char *endpoint) {
  void *s = zmq_socket(ctx, type);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  if (zmq_connect(s, endpoint) != 0) {
    zmq_close(s);
    return NULL;
  }
  return s;
}

/* Sends the NUL-terminated strings given (NULL ends the list) as frames. */
static inline int peer_send(void *sock, ...) {
  const char *frames[64];
  int n = 0;
  va_list ap;
  va_start(ap, sock);
  const char *f;
  while ((f = va_arg(ap, const char *)) != NULL && n < 64)
    frames[n++] = f;
  va_end(ap);
  for (int i = 0; i < n; i++)
    if (zmq_send(sock, frames[i], strlen(frames[i]),
                 i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
      return -1;
  return 0;
}

/* Sends `msg` (frames moved) and destroys it. */
static inline int peer_send_msg(void *sock, mdp_msg_t *msg) {
  size_t n = mdp_msg_size(msg);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    if (zmq_msg_send(mdp_msg_frame(msg, i), sock,
                     i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
      rc = -1;
  mdp_msg_destroy(msg);
  return rc;
}

static inline mdp_msg_t *peer_try_recv(void *sock) {
  mdp_msg_t *msg = NULL;
  for (;;) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, sock, msg ? 0 : ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      return msg;
    }
    if (msg == NULL)
      msg = mdp_msg_new();
    int more = zmq_msg_more(&frame);
    mdp_msg_append(msg, &frame);
    zmq_msg_close(&frame);
    if (!more)
      return msg;
  }
}

/* The next whole message on `sock`, running `loop` meanwhile; NULL when
 * `timeout_ms` passed first. */
static inline mdp_msg_t *peer_recv(uv_loop_t *loop, void *sock,
                                   uint64_t timeout_ms) {
  uint64_t deadline = uv_hrtime() + t_slow(timeout_ms) * 1000000ull;
  for (;;) {
    if (loop)
      uv_run(loop, UV_RUN_NOWAIT);
    mdp_msg_t *msg = peer_try_recv(sock);
    if (msg != NULL || uv_hrtime() >= deadline)
      return msg;
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, 1);
  }
}

/* 1 if `msg` has exactly the frames given (NULL-terminated; ANY matches any
 * frame). */
static inline int msg_is(mdp_msg_t *msg, ...) {
  if (msg == NULL)
    return 0;
  va_list ap;
  va_start(ap, msg);
  size_t i = 0;
  const char *f;
  int ok = 1;
  while ((f = va_arg(ap, const char *)) != NULL) {
    if (i >= mdp_msg_size(msg) ||
        (f != ANY && !mdp_msg_frame_eq(msg, i, f, strlen(f))))
      ok = 0;
    i++;
  }
  va_end(ap);
  return ok && i == mdp_msg_size(msg);
}

/* Prints a message's frames as a TAP comment (for failing checks). */
static inline void msg_dump(const char *what, mdp_msg_t *msg) {
  printf("# %s:", what);
  if (msg == NULL) {
    printf(" (none)\n");
    return;
  }
  for (size_t i = 0; i < mdp_msg_size(msg); i++) {
    const unsigned char *p = mdp_msg_data(msg, i);
    size_t n = mdp_msg_frame_size(msg, i);
    printf(" \"");
    for (size_t j = 0; j < n && j < 40; j++)
      printf(p[j] >= 0x20 && p[j] < 0x7f ? "%c" : "\\x%02x", p[j]);
    printf("\"");
  }
  printf("\n");
}

/* mmi.workers for `service` at `endpoint` through a fresh DEALER of `ctx`:
 * idle, busy, queued in `out`; -1s when the broker does not answer within
 * `timeout_ms` (scaled), 0s for a 404 (no such service yet). */
static inline void peer_mmi_workers(void *ctx, const char *endpoint,
                                    const char *service, uint64_t timeout_ms,
                                    long out[3]) {
  out[0] = out[1] = out[2] = -1;
  void *s = peer_new(ctx, ZMQ_DEALER, endpoint);
  peer_send(s, "MDPC02", "\x01", "mmi.workers", service, NULL);
  mdp_msg_t *m = peer_recv(NULL, s, timeout_ms);
  if (msg_is(m, "MDPC02", "\x03", "mmi.workers", "200", ANY, ANY, ANY,
             NULL)) {
    for (int i = 0; i < 3; i++) {
      char num[32] = {0};
      size_t n = mdp_msg_frame_size(m, 4 + (size_t)i);
      memcpy(num, mdp_msg_data(m, 4 + (size_t)i), n < 31 ? n : 31);
      out[i] = atol(num);
    }
  } else if (m != NULL) {
    out[0] = out[1] = out[2] = 0; /* 404: no such service (yet) */
  }
  mdp_msg_destroy(m);
  zmq_close(s);
}

#endif /* MDP_TEST_PEER_H */
