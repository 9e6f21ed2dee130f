/* Helpers of the client tests (test_client.c, test_client_spread.c): a
 * fake broker's replies, and an application side that records what its
 * reply callback got.  Include after fake_broker.h. */
#ifndef MDP_TEST_CLIENT_HELPERS_H
#define MDP_TEST_CLIENT_HELPERS_H

/* Replies to message `req` ([id | MDPC02 | 0x01 | service | body...]) with
 * `command` and the given frames. */
static inline void fake_reply_v(fake_t *f, mdp_msg_t *req, const char *command,
                         const char *const *frames, size_t n) {
  zmq_send(f->sock, mdp_msg_data(req, 0), mdp_msg_frame_size(req, 0),
           ZMQ_SNDMORE);
  zmq_send(f->sock, "MDPC02", 6, ZMQ_SNDMORE);
  zmq_send(f->sock, command, 1, ZMQ_SNDMORE);
  zmq_send(f->sock, mdp_msg_data(req, 3), mdp_msg_frame_size(req, 3),
           n ? ZMQ_SNDMORE : 0);
  for (size_t i = 0; i < n; i++)
    zmq_send(f->sock, frames[i], strlen(frames[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
}
#define fake_reply(f, req, cmd, ...)                                           \
  do {                                                                         \
    const char *fr_[] = {__VA_ARGS__};                                         \
    fake_reply_v((f), (req), (cmd), fr_, sizeof fr_ / sizeof fr_[0]);          \
  } while (0)

/* Echoes every REQUEST waiting on the socket as a FINAL, frames moved. */
static inline int fake_echo(fake_t *f) {
  int n = 0;
  mdp_msg_t *m;
  while ((m = fake_take(f)) != NULL) {
    /* [id | MDPC02 | 0x01 | service | body...] -> same with 0x03 */
    size_t count = mdp_msg_size(m);
    for (size_t i = 0; i < count; i++) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (i == 2) { /* received frames may be read-only: send a new one */
        zmq_msg_close(&frame);
        zmq_msg_init_size(&frame, 1);
        *(uint8_t *)zmq_msg_data(&frame) = 0x03;
      } else {
        zmq_msg_copy(&frame, mdp_msg_frame(m, i));
      }
      zmq_msg_send(&frame, f->sock, i + 1 < count ? ZMQ_SNDMORE : 0);
      zmq_msg_close(&frame);
    }
    mdp_msg_destroy(m);
    n++;
  }
  return n;
}

/* --- the application side -------------------------------------------------- */

#define REPLIES_MAX 16

typedef struct {
  int calls;       /* callbacks made */
  int partials;
  int finals;
  int status;      /* of the last callback */
  int done;        /* final seen */
  mdp_msg_t *parts[REPLIES_MAX];
  int nparts;
  /* actions from the callback */
  mdp_client_t *client;
  uint64_t cancel_id; /* cancel this id on the first partial */
  int close_on_partial;
} rep_t;

static inline void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  rep_t *r = data;
  r->calls++;
  r->status = status;
  if (status == 0 && final)
    r->finals++;
  else if (status == 0)
    r->partials++;
  if (final)
    r->done = 1;
  if (body && r->nparts < REPLIES_MAX)
    r->parts[r->nparts++] = body;
  else
    mdp_msg_destroy(body);
  if (status == 0 && !final && r->cancel_id) {
    uint64_t cid = r->cancel_id;
    r->cancel_id = 0;
    mdp_client_cancel(c, cid);
  }
  if (status == 0 && !final && r->close_on_partial)
    mdp_client_close(c, NULL);
}

static inline void rep_clear(rep_t *r) {
  for (int i = 0; i < r->nparts; i++)
    mdp_msg_destroy(r->parts[i]);
  memset(r, 0, sizeof *r);
}

static inline int rep_done(void *arg) { return ((rep_t *)arg)->done; }

static inline mdp_msg_t *body_of(const char *s) {
  mdp_msg_t *m = mdp_msg_new();
  mdp_msg_append_str(m, s);
  return m;
}

static int client_closed_flag;
static inline void on_client_closed(mdp_client_t *c) { client_closed_flag = 1; }
static inline int is_client_closed(void *arg) { return client_closed_flag; }

static inline int client_stop(uv_loop_t *loop, mdp_client_t *c) {
  client_closed_flag = 0;
  mdp_client_close(c, on_client_closed);
  return t_run_until(loop, is_client_closed, NULL, 2000);
}

static inline mdp_client_t *client_start(uv_loop_t *loop, const char *const *eps,
                                  size_t n, uint64_t timeout_ms,
                                  unsigned retries, size_t max_sockets) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  if (timeout_ms)
    o.timeout_ms = timeout_ms;
  o.retries = retries;
  if (max_sockets)
    o.max_sockets = max_sockets;
  mdp_client_t *c = NULL;
  if (mdp_client_new(loop, eps, n, &o, &c) != 0)
    return NULL;
  return c;
}

#endif
