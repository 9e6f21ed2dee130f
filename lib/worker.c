/* mdp_worker_t: one DEALER socket, one service, one request at a time.
 *
 * States, by the fields that encode them:
 *   connected:  `reactor` != NULL, READY sent, heartbeat timer running;
 *   backing off: `reactor` == NULL, `retry` timer will reconnect;
 *   closing:    `closing` set; first waits for the FINAL (if asked), then
 *               sends DISCONNECT, waits a grace period and closes handles.
 * Old reactors close asynchronously while a new one may already run, so the
 * worker counts them and is freed only when every handle has closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log_internal.h"
#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/error.h"
#include "mdp/reactor.h"
#include "mdp/worker.h"
#include "peer.h"
#include "worker_internal.h"

/* Wait after DISCONNECT before the socket is closed, when nothing is held
 * back by the reactor. */
#define GRACE_MAX_MS 100
/* While the reactor still holds sends (a full pipe), look this often
 * whether they went, up to the liveness window. */
#define GRACE_POLL_MS 10
/* The largest REQUEST envelope (Majortomo's and 0.1's leading empty frame,
 * header, command, client address, empty) and one body frame. */
#define MIN_FRAMES 6

struct mdp_worker_s {
  uv_loop_t *loop;
  char *endpoint;
  char *service;
  mdp_worker_options_t opts;
  mdp_worker_request_cb request_cb;
  mdp_worker_close_cb close_cb;
  mdp_worker_drain_cb drain_cb;
  void *data;

  mdp_reactor_t *reactor;   /* the live connection, or NULL */
  unsigned reactors_closing;/* old reactors not yet closed */
  uv_timer_t heartbeat;     /* repeating while connected */
  uv_timer_t retry;         /* reconnect back-off, then close grace */
  unsigned handles_open;    /* of heartbeat and retry */
  uint64_t last_recv;       /* loop time of the broker's last message */
  uint64_t last_send;       /* loop time of our last message to it */
  uint64_t backoff;         /* next reconnect delay */
  uint64_t dropped_frames;  /* by reactors already closed */
  uint64_t close_deadline;  /* loop time a closing worker stops waiting for
                               a held reply */
  uint64_t reply_seq;       /* the reactor's count of accepted messages
                               when it took our last reply (0: none) */

  uint64_t next_id;         /* request ids are never reused */
  uint64_t cur_id;          /* request in progress, 0: idle */
  uint64_t abandoned_id;    /* the request abandoned last, until the
                               application sends its FINAL (late_finals) */
  uint8_t address[MDP_ADDRESS_MAX];
  size_t address_size;

  mdp__peer_config_t peer;  /* socket options, CURVE keys */

  int registered;           /* the broker accepted this connection */
  int unref;                /* handles are uv_unref'd (mdp_worker_unref) */
  int closing;
  int wait_for_request;     /* close waits for the FINAL */
  int tearing_down;         /* handles are being closed */
  int owned;                /* freed by mdp__worker_free(), not at close */
  int hold;                 /* do not reconnect (mdp__worker_hold) */
  int connect_due;          /* a reconnect came due while held */
  mdp_worker_stats_t stats;
};

static void worker_connect(mdp_worker_t *w);
static void worker_finish_close(mdp_worker_t *w);

/* `fmt` is a string literal at every call. */
#define wlog(w, level, fmt, ...)                                               \
  mdp__log_emit((w)->opts.log_cb, (w)->opts.log_data, (w)->opts.log_level,      \
               (level), NULL, "worker %s: " fmt, (w)->service, ##__VA_ARGS__)

void mdp_worker_options_init(mdp_worker_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->heartbeat_interval_ms = 2500;
  opts->heartbeat_liveness = 4;
  opts->reconnect_initial_ms = 250;
  opts->reconnect_max_ms = 10000;
  opts->dialect = MDP_DIALECT_RFC18;
  opts->log_level = MDP_LOG_INFO;
  opts->max_msg_size = 64 * 1024 * 1024;
  opts->max_frames = 1024;
  mdp__socket_options_default(&opts->socket);
}

/* Prepends the header of `command` to `body` and sends it.  On failure the
 * header is stripped again, so `body` is exactly as the caller gave it. */
static int worker_send(mdp_worker_t *w, mdp_command_t command,
                       mdp_msg_t *body) {
  mdp_cmd_t cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.dialect = w->peer.dialect;
  cmd.command = command;
  if (command == MDP_WORKER_READY) {
    cmd.service = (const uint8_t *)w->service;
    cmd.service_size = strlen(w->service);
  } else if (command == MDP_WORKER_PARTIAL || command == MDP_WORKER_FINAL) {
    cmd.address = w->address;
    cmd.address_size = w->address_size;
  }
  int rc = mdp__peer_send(w->reactor, &cmd, body);
  if (rc < 0)
    return rc;
  w->last_send = uv_now(w->loop); /* any command counts as a heartbeat */
  return 0;
}

/* Sends a command without body (READY, HEARTBEAT, DISCONNECT). */
static int worker_send_command(mdp_worker_t *w, mdp_command_t command) {
  mdp_msg_t *msg = mdp_msg_new();
  if (msg == NULL)
    return MDP_ENOMEM;
  int rc = worker_send(w, command, msg);
  if (rc < 0) {
    wlog(w, MDP_LOG_WARN, "cannot send %s: %s", mdp_command_name(command),
         mdp_strerror(rc));
    mdp_msg_destroy(msg);
  }
  return rc;
}

size_t mdp_worker_held(const mdp_worker_t *w, size_t *bytes) {
  mdp_reactor_stats_t st;
  memset(&st, 0, sizeof st);
  if (w->reactor != NULL)
    mdp_reactor_get_stats(w->reactor, &st);
  if (bytes != NULL)
    *bytes = st.pending_bytes;
  return st.pending;
}

static size_t held_sends(const mdp_worker_t *w) {
  return mdp_worker_held(w, NULL);
}

/* The live connection's held sends all went. */
static void reactor_drained_cb(mdp_reactor_t *reactor) {
  mdp_worker_t *w = mdp_reactor_get_data(reactor);
  if (reactor == w->reactor && w->drain_cb != NULL)
    w->drain_cb(w);
}

void mdp_worker_set_drain_cb(mdp_worker_t *w, mdp_worker_drain_cb cb) {
  w->drain_cb = cb;
}

/* Messages the reactor took from us, and those of them that left its ring
 * (handed to ZeroMQ, or failed): every accepted message ends as one or the
 * other, in order. */
static uint64_t accepted(const mdp_reactor_stats_t *st) {
  return st->msgs_sent + st->msgs_failed + st->pending;
}

/* 1 while our last PARTIAL or FINAL is still in the reactor's ring. */
static int reply_held(const mdp_worker_t *w) {
  if (w->reactor == NULL || w->reply_seq == 0)
    return 0;
  mdp_reactor_stats_t st;
  mdp_reactor_get_stats(w->reactor, &st);
  return st.msgs_sent + st.msgs_failed < w->reply_seq;
}

static void worker_maybe_free(mdp_worker_t *w) {
  if (!w->tearing_down || w->handles_open > 0 || w->reactors_closing > 0)
    return;
  if (w->owned) {
    w->handles_open = 1; /* never again: the owner frees it */
    if (w->close_cb)
      w->close_cb(w); /* may free it: touch nothing after */
    return;
  }
  if (w->close_cb)
    w->close_cb(w);
  mdp__worker_free(w);
}

void mdp__worker_free(mdp_worker_t *w) {
  free(w->endpoint);
  free(w->service);
  free(w);
}

void mdp__worker_set_owned(mdp_worker_t *w) { w->owned = 1; }

void mdp__worker_hold(mdp_worker_t *w, int hold) {
  w->hold = hold;
  if (!hold && w->connect_due && !w->closing && w->reactor == NULL) {
    w->connect_due = 0;
    worker_connect(w);
  }
}

static void reactor_closed_cb(mdp_reactor_t *reactor) {
  mdp_worker_t *w = mdp_reactor_get_data(reactor);
  w->reactors_closing--;
  worker_maybe_free(w);
}

static void timer_closed_cb(uv_handle_t *handle) {
  mdp_worker_t *w = handle->data;
  w->handles_open--;
  worker_maybe_free(w);
}

/* Drops the live connection (its socket is closed with linger 0) and the
 * request in progress, if any. */
static void worker_drop_connection(mdp_worker_t *w) {
  if (w->cur_id != 0) {
    wlog(w, MDP_LOG_WARN, "request %llu abandoned: connection lost",
         (unsigned long long)w->cur_id);
    w->abandoned_id = w->cur_id;
    w->cur_id = 0;
    w->stats.abandoned++;
  }
  if (w->reactor != NULL) {
    mdp_reactor_stats_t rs;
    mdp_reactor_get_stats(w->reactor, &rs);
    w->dropped_frames += rs.msgs_dropped;
    w->reactors_closing++;
    mdp_reactor_close(w->reactor, reactor_closed_cb);
    w->reactor = NULL;
  }
  uv_timer_stop(&w->heartbeat);
  w->stats.connected = 0;
}

/* Tells the application (if it asked) about its connection.  Last thing
 * its caller does: the callback may close the worker. */
static void worker_event(mdp_worker_t *w, mdp_worker_event_t event, int err) {
  if (w->opts.event_cb != NULL && !w->closing)
    w->opts.event_cb(w, event, err, w->opts.event_data);
}

static void retry_cb(uv_timer_t *timer) {
  mdp_worker_t *w = timer->data;
  if (w->closing)
    return;
  if (w->hold) {
    w->connect_due = 1;
    return;
  }
  worker_connect(w);
}

/* The broker is gone (silence, DISCONNECT, or no socket could be opened:
 * `err`): reconnect after a back-off. */
static void worker_lost(mdp_worker_t *w, const char *why, int err) {
  worker_drop_connection(w);
  if (w->closing) {
    worker_finish_close(w);
    return;
  }
  uint64_t delay = w->backoff;
  wlog(w, MDP_LOG_INFO, "%s; reconnecting in %llu ms", why,
       (unsigned long long)delay);
  /* (Written so that it cannot wrap, whatever the bounds.) */
  uint64_t max = w->opts.reconnect_max_ms;
  w->backoff = delay > max / 2 ? max : delay * 2;
  uv_timer_start(&w->retry, retry_cb, delay, 0);
  worker_event(w, MDP_WORKER_BROKER_LOST, err);
}

/* The broker is presumed dead after this much silence. */
static uint64_t liveness_ms(const mdp_worker_t *w) {
  return w->opts.heartbeat_interval_ms * (uint64_t)w->opts.heartbeat_liveness;
}

/* Runs at least once per interval while connected.  One-shot, re-armed
 * first thing: whatever below ends the connection or the worker stops it
 * again, and a close that waits for the request keeps it going. */
static void heartbeat_cb(uv_timer_t *timer) {
  mdp_worker_t *w = timer->data;
  if (w->reactor == NULL)
    return;
  uint64_t interval = w->opts.heartbeat_interval_ms;
  uv_timer_start(timer, heartbeat_cb, interval, 0);
  uint64_t silence = uv_now(w->loop) - w->last_recv;
  /* Majortomo's broker and the zguide's MDP/0.1 broker heartbeat idle
   * workers only: while such a worker is busy, silence says nothing about
   * the broker, and giving up would lose the request. */
  int busy_unheard = w->cur_id != 0 && w->opts.dialect != MDP_DIALECT_RFC18;
  uint64_t limit = liveness_ms(w);
  if (!busy_unheard && silence >= limit) {
    /* libuv runs timers before it polls: after a stall of this process the
     * broker's heartbeat may be waiting unread.  Read before giving up. */
    mdp_reactor_t *connection = w->reactor;
    int was_closing = w->closing; /* (closing, waiting for a request) */
    mdp__peer_read_waiting(connection);
    if (w->reactor != connection || w->closing != was_closing)
      return; /* what it read ended this connection, or the worker */
    silence = uv_now(w->loop) - w->last_recv;
    if (silence >= limit) {
      worker_lost(w, "broker silent", MDP_ETIMEDOUT);
      return;
    }
  }
  /* RFC 18: peers should not heartbeat while they send other commands (a
   * stream of PARTIALs); anything sent tells the broker we live.  Look
   * again when a whole interval has passed since the last send. */
  uint64_t quiet = uv_now(w->loop) - w->last_send;
  if (quiet < interval) {
    uv_timer_start(timer, heartbeat_cb, interval - quiet, 0);
    return;
  }
  if (worker_send_command(w, MDP_WORKER_HEARTBEAT) == 0)
    w->stats.heartbeats_sent++;
}

static void worker_on_request(mdp_worker_t *w, mdp_msg_t *msg,
                              const mdp_cmd_t *cmd) {
  if (w->closing || w->cur_id != 0) {
    /* The broker must not send a second request to a busy worker. */
    wlog(w, MDP_LOG_WARN, "unexpected REQUEST dropped (%s)",
         w->closing ? "closing" : "busy");
    w->stats.dropped_invalid++;
    mdp_msg_destroy(msg);
    return;
  }
  memcpy(w->address, cmd->address, cmd->address_size);
  w->address_size = cmd->address_size;
  w->cur_id = ++w->next_id;
  w->stats.requests++;
  mdp_msg_drop_front(msg, cmd->body);
  mdp_request_t req = {w, w->cur_id};
  w->request_cb(w, req, msg);
}

static void recv_cb(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  mdp_worker_t *w = mdp_reactor_get_data(reactor);
  if (reactor != w->reactor) { /* a closing connection: not ours any more */
    mdp_msg_destroy(msg);
    return;
  }
  w->last_recv = uv_now(w->loop);
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, MDP_ROLE_WORKER, (unsigned)w->opts.dialect, &cmd);
  if (rc < 0) {
    wlog(w, MDP_LOG_WARN, "invalid message dropped: %s", mdp_strerror(rc));
    w->stats.dropped_invalid++;
    mdp_msg_destroy(msg);
    return;
  }
  /* A broker that accepted us: the next loss starts the back-off afresh.
   * Not on DISCONNECT: a broker that refuses the READY answers with one at
   * once, and the worker must back off from it, not hammer it. */
  if (cmd.command == MDP_WORKER_REQUEST ||
      cmd.command == MDP_WORKER_HEARTBEAT) {
    w->backoff = w->opts.reconnect_initial_ms;
    if (!w->registered) {
      w->registered = 1;
      worker_event(w, MDP_WORKER_REGISTERED, 0);
      if (w->reactor != reactor || w->closing) { /* closed from the event */
        mdp_msg_destroy(msg);
        return;
      }
    }
  }
  switch (cmd.command) {
  case MDP_WORKER_REQUEST:
    worker_on_request(w, msg, &cmd);
    return;
  case MDP_WORKER_HEARTBEAT:
    w->stats.heartbeats_received++;
    break;
  case MDP_WORKER_DISCONNECT:
    w->stats.disconnects_received++;
    mdp_msg_destroy(msg);
    worker_lost(w, "DISCONNECT from broker", MDP_ECANCELED);
    return;
  default:
    wlog(w, MDP_LOG_WARN, "unexpected %s dropped",
         mdp_command_name(cmd.command));
    w->stats.dropped_invalid++;
    break;
  }
  mdp_msg_destroy(msg);
}

/* Opens a new socket, connects it and sends READY.  The heartbeat timer is
 * the caller's to start.  On failure nothing is left open. */
static int worker_open(mdp_worker_t *w) {
  mdp_reactor_t *connection = NULL;
  int rc = mdp__peer_open(&w->peer, w->loop, w->endpoint, recv_cb, w,
                          w->opts.max_frames, &connection);
  if (rc < 0)
    return rc;
  w->reactor = connection;
  mdp_reactor_set_drain_cb(connection, reactor_drained_cb);
  w->registered = 0;
  if (w->unref)
    mdp_reactor_unref(connection);
  w->reply_seq = 0; /* a new reactor counts from 0 */
  /* The loop's cached time is stale if this runs outside a callback after
   * the loop sat idle (say, mdp_worker_new() before uv_run()): silence and
   * heartbeats must count from now, not from then. */
  uv_update_time(w->loop);
  w->last_recv = uv_now(w->loop);
  w->stats.connects++;
  w->stats.connected = 1;
  worker_send_command(w, MDP_WORKER_READY);
  wlog(w, MDP_LOG_DEBUG, "READY sent to %s (%s)", w->endpoint,
       mdp_dialect_name(w->opts.dialect));
  return 0;
}

/* Reconnects after a back-off.  A failure (out of memory, a ZeroMQ error)
 * is retried after the next back-off, as a lost connection would be. */
static void worker_connect(mdp_worker_t *w) {
  int rc = worker_open(w);
  if (rc < 0) {
    wlog(w, MDP_LOG_ERROR, "cannot connect to %s: %s", w->endpoint,
         mdp_strerror(rc));
    worker_lost(w, "cannot connect", rc);
    return;
  }
  uv_timer_start(&w->heartbeat, heartbeat_cb, w->opts.heartbeat_interval_ms,
                 0);
}

/* Every time is 1..MDP_WORKER_TIME_MAX_MS and the liveness
 * 1..MDP_WORKER_LIVENESS_MAX, so interval x liveness (< 2^48), the doubled
 * back-off (< 2^33) and the loop time plus either cannot wrap. */
static int times_valid(const mdp_worker_options_t *o) {
  return o->heartbeat_interval_ms >= 1 &&
         o->heartbeat_interval_ms <= MDP_WORKER_TIME_MAX_MS &&
         o->heartbeat_liveness >= 1 &&
         o->heartbeat_liveness <= MDP_WORKER_LIVENESS_MAX &&
         o->reconnect_initial_ms >= 1 &&
         o->reconnect_max_ms <= MDP_WORKER_TIME_MAX_MS &&
         o->reconnect_initial_ms <= o->reconnect_max_ms;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int mdp_worker_new(uv_loop_t *loop, const char *endpoint, const char *service,
                   const mdp_worker_options_t *opts,
                   mdp_worker_request_cb request_cb, mdp_worker_t **out) {
  if (loop == NULL || endpoint == NULL || service == NULL ||
      request_cb == NULL || out == NULL ||
      mdp_endpoint_check(endpoint, 0) < 0)
    return MDP_EINVAL;
  size_t slen = strlen(service);
  if (slen == 0 || slen > MDP_SERVICE_MAX || mdp_is_mmi(service, slen))
    return MDP_ESERVICE;
  mdp_worker_options_t o;
  if (opts)
    o = *opts;
  else
    mdp_worker_options_init(&o);
  if (!times_valid(&o) || (o.max_frames > 0 && o.max_frames < MIN_FRAMES))
    return MDP_EINVAL;
  mdp__peer_config_t peer;
  int rc = mdp__peer_config_from_options(&peer, &o);
  if (rc < 0)
    return rc;

  mdp_worker_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    return MDP_ENOMEM;
  w->endpoint = dup_str(endpoint);
  w->service = dup_str(service);
  if (w->endpoint == NULL || w->service == NULL) {
    free(w->endpoint);
    free(w->service);
    free(w);
    return MDP_ENOMEM;
  }
  w->loop = loop;
  w->peer = peer;
  o.curve_server_key = o.curve_public_key = o.curve_secret_key = NULL;
  w->opts = o;
  w->request_cb = request_cb;
  w->backoff = o.reconnect_initial_ms;

  /* Connect first so that a malformed endpoint fails the call cleanly,
   * before any libuv handle exists. */
  rc = worker_open(w);
  if (rc < 0) {
    free(w->endpoint);
    free(w->service);
    free(w);
    return rc;
  }
  uv_timer_init(loop, &w->heartbeat);
  uv_timer_init(loop, &w->retry);
  w->heartbeat.data = w;
  w->retry.data = w;
  w->handles_open = 2;
  uv_timer_start(&w->heartbeat, heartbeat_cb, o.heartbeat_interval_ms, 0);
  *out = w;
  return 0;
}

/* The worker whose request in progress `req` is, or NULL: the handle is
 * stale (that request finished or was abandoned) or was never valid.  Only
 * the handle's fields are compared, so any copy of it is safe to test for
 * as long as the worker exists. */
static mdp_worker_t *request_worker(mdp_request_t req) {
  if (req.worker == NULL || req.id == 0)
    return NULL;
  mdp_worker_t *w = req.worker;
  if (req.id != w->cur_id || w->reactor == NULL)
    return NULL;
  return w;
}

int mdp_worker_request_active(mdp_request_t req) {
  return request_worker(req) != NULL;
}

static int worker_reply(mdp_request_t req, mdp_msg_t *body,
                        mdp_command_t command) {
  if (req.worker == NULL)
    return MDP_EINVAL;
  /* MDP/0.1 has one REPLY per request and no partial replies. */
  if (command == MDP_WORKER_PARTIAL &&
      req.worker->opts.dialect == MDP_DIALECT_MDP01)
    return MDP_ENOTSUP;
  mdp_worker_t *w = request_worker(req);
  if (w == NULL) {
    /* The application is done with an abandoned request: a worker group
     * may now move its slot (it counts it in progress until then). */
    if (command == MDP_WORKER_FINAL && req.id == req.worker->abandoned_id) {
      req.worker->abandoned_id = 0;
      req.worker->stats.late_finals++;
    }
    return MDP_ESTATE;
  }
  mdp_msg_t *own = NULL;
  if (body == NULL) { /* one empty frame: a body needs at least one */
    own = body = mdp_msg_new();
    if (own == NULL || mdp_msg_append_mem(own, NULL, 0) < 0) {
      mdp_msg_destroy(own);
      return MDP_ENOMEM;
    }
  } else if (mdp_msg_size(body) == 0) {
    return MDP_EINVAL;
  }
  int rc = worker_send(w, command, body);
  if (rc < 0) {
    mdp_msg_destroy(own);
    return rc;
  }
  mdp_reactor_stats_t rs;
  mdp_reactor_get_stats(w->reactor, &rs);
  w->reply_seq = accepted(&rs);
  if (command == MDP_WORKER_PARTIAL) {
    w->stats.partials++;
    return 0;
  }
  w->stats.finals++;
  w->cur_id = 0;
  /* The silence check was suspended while busy for dialects whose brokers
   * do not heartbeat busy workers: count afresh from here. */
  if (w->opts.dialect != MDP_DIALECT_RFC18)
    w->last_recv = uv_now(w->loop);
  if (w->closing && w->wait_for_request)
    worker_finish_close(w);
  return 0;
}

int mdp_worker_partial(mdp_request_t req, mdp_msg_t *body) {
  return worker_reply(req, body, MDP_WORKER_PARTIAL);
}

int mdp_worker_final(mdp_request_t req, mdp_msg_t *body) {
  return worker_reply(req, body, MDP_WORKER_FINAL);
}

static void worker_teardown(mdp_worker_t *w) {
  if (w->tearing_down)
    return;
  w->tearing_down = 1;
  if (w->reactor != NULL) {
    /* Closing on purpose: what the grace did not see leave (a FINAL, the
     * DISCONNECT) may still go while the I/O thread gets to it, for a
     * bounded time (linger 0 is for a connection given up as dead). */
    int linger = GRACE_MAX_MS;
    zmq_setsockopt(mdp_reactor_socket(w->reactor), ZMQ_LINGER, &linger,
                   sizeof linger);
  }
  worker_drop_connection(w);
  uv_close((uv_handle_t *)&w->heartbeat, timer_closed_cb);
  uv_close((uv_handle_t *)&w->retry, timer_closed_cb);
}

/* The grace is over once our last reply has left the reactor (ZeroMQ has
 * it; the linger covers its I/O thread).  A full pipe, typical after a
 * stream of PARTIALs, may still hold the FINAL: closing now would destroy
 * it, and since the PARTIALs reached the client nobody would send the
 * request again.  So wait while it is held, but no longer than the
 * liveness window: a broker that reads nothing for that long is dead.
 * Held heartbeats or a held READY (a connection never made) are not worth
 * waiting for. */
static void grace_cb(uv_timer_t *timer) {
  mdp_worker_t *w = timer->data;
  if (reply_held(w)) {
    if (uv_now(w->loop) < w->close_deadline) {
      uv_timer_start(&w->retry, grace_cb, GRACE_POLL_MS, 0);
      return;
    }
    wlog(w, MDP_LOG_WARN, "closing with a reply unsent (%zu messages held): "
         "broker not reading", held_sends(w));
  }
  worker_teardown(w);
}

/* The request (if any) is done or given up: say goodbye and close. */
static void worker_finish_close(mdp_worker_t *w) {
  w->wait_for_request = 0;
  uv_timer_stop(&w->retry);
  if (w->reactor == NULL) {
    worker_teardown(w);
    return;
  }
  if (w->cur_id != 0) {
    w->abandoned_id = w->cur_id;
    w->cur_id = 0;
    w->stats.abandoned++;
  }
  uv_timer_stop(&w->heartbeat);
  worker_send_command(w, MDP_WORKER_DISCONNECT);
  /* ZeroMQ sends from its I/O thread; closing a linger-0 socket at once
   * could drop the DISCONNECT.  A short grace lets it leave, and the linger
   * set at teardown bounds how long mdp_zmq_context_term() can wait for
   * whatever is still queued (at most GRACE_MAX_MS, and only if the broker
   * is unreachable). */
  uint64_t grace = w->opts.heartbeat_interval_ms < GRACE_MAX_MS
                       ? w->opts.heartbeat_interval_ms
                       : GRACE_MAX_MS;
  w->close_deadline = uv_now(w->loop) + liveness_ms(w);
  uv_timer_start(&w->retry, grace_cb, grace, 0);
}

void mdp_worker_close(mdp_worker_t *w, int wait_for_request,
                      mdp_worker_close_cb close_cb) {
  if (w == NULL || w->closing)
    return;
  w->closing = 1;
  w->close_cb = close_cb;
  if (wait_for_request && w->cur_id != 0 && w->reactor != NULL) {
    w->wait_for_request = 1; /* mdp_worker_final() finishes the close */
    return;
  }
  worker_finish_close(w);
}

void mdp_worker_get_stats(const mdp_worker_t *w, mdp_worker_stats_t *out) {
  *out = w->stats;
  out->busy = w->cur_id != 0;
  out->connected = w->reactor != NULL;
  out->pending = held_sends(w);
  out->dropped_frames = w->dropped_frames;
  if (w->reactor != NULL) {
    mdp_reactor_stats_t rs;
    mdp_reactor_get_stats(w->reactor, &rs);
    out->dropped_frames += rs.msgs_dropped;
  }
}

int mdp_worker_is_closing(const mdp_worker_t *w) { return w->closing; }

static void worker_set_ref(mdp_worker_t *w, int ref) {
  w->unref = !ref;
  void (*handle_ref)(uv_handle_t *) = ref ? uv_ref : uv_unref;
  handle_ref((uv_handle_t *)&w->heartbeat);
  handle_ref((uv_handle_t *)&w->retry);
  if (w->reactor != NULL)
    (ref ? mdp_reactor_ref : mdp_reactor_unref)(w->reactor);
}

void mdp_worker_ref(mdp_worker_t *w) { worker_set_ref(w, 1); }
void mdp_worker_unref(mdp_worker_t *w) { worker_set_ref(w, 0); }

void mdp_worker_set_data(mdp_worker_t *w, void *data) { w->data = data; }
void *mdp_worker_get_data(const mdp_worker_t *w) { return w->data; }
uv_loop_t *mdp_worker_loop(const mdp_worker_t *w) { return w->loop; }
const char *mdp_worker_service(const mdp_worker_t *w) { return w->service; }
