/* libmdp: mdp_worker_t, a Majordomo worker (MDP/0.2, RFC 18; optionally
 * Majortomo's dialect or MDP/0.1) on a caller's libuv loop.
 *
 * A worker connects one DEALER socket to one broker, registers for one
 * service (READY) and hands each REQUEST to the application's callback.  The
 * application answers inside the callback or later, from any callback of the
 * same loop: mdp_worker_partial() any number of times, then mdp_worker_final()
 * exactly once.  One worker serves one request at a time (the protocol's
 * rule); a process serves many at once with many workers on one loop, and
 * may attach workers to several brokers.  docs/worker.md describes the
 * behaviour in full.
 *
 * Heartbeats flow both ways every interval, also while a request is being
 * served (the worker's only when it sent nothing else for an interval).  When the broker is silent for liveness x interval, or sends
 * DISCONNECT, the worker closes its socket, waits (exponential back-off) and
 * connects a new socket, then sends READY again.  A request in progress at
 * that moment is abandoned: its handle becomes stale and replies through it
 * return MDP_ESTATE; nothing is sent and nothing leaks.
 *
 * Request handles: the callback receives a small mdp_request_t value (the
 * worker and a request id that a worker never reuses).  To answer later, copy
 * the struct (not the pointer): the copy stays safe to use as long as the
 * worker exists; a reply through a handle that is not the current request
 * (already finished, abandoned by a reconnect) fails with MDP_ESTATE and
 * changes nothing.
 *
 * Threading: a worker belongs to the thread that runs its loop; call its
 * functions only from that thread (callbacks of the same loop included).
 *
 * Life cycle: mdp_worker_options_init() -> mdp_worker_new() -> ... ->
 * mdp_worker_close(cb).  The worker is freed after its close callback
 * returns.
 */
#ifndef MDP_WORKER_H
#define MDP_WORKER_H

#include "mdp/export.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/log.h"
#include "mdp/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdp_worker_s mdp_worker_t;

/* Bounds of the options' times (about 49.7 days) and of the liveness, so
 * that no arithmetic on them can wrap. */
#define MDP_WORKER_TIME_MAX_MS ((uint64_t)UINT32_MAX)
#define MDP_WORKER_LIVENESS_MAX 65535u

/* A request handle, passed and kept by value (two words: a copy costs
 * nothing, and no pointer into the worker's memory is ever held, so a kept
 * copy cannot dangle while the worker exists).  `id` is never 0 for a real
 * request and never reused by the same worker; {NULL, 0} is no request. */
typedef struct mdp_request_s {
  mdp_worker_t *worker;
  uint64_t id;
} mdp_request_t;

/* A REQUEST arrived.  `body` (one or more frames) belongs to the callback.
 * `req` is the request's handle, by value: keep a copy of it (anywhere, for
 * as long as the worker exists) to answer later.  A copy never dangles: once
 * the request is over, a reply through it fails with MDP_ESTATE.  Called
 * from the loop, never from inside a libmdp call.  The callback may reply,
 * close the worker, or do neither yet. */
typedef void (*mdp_worker_request_cb)(mdp_worker_t *worker,
                                      mdp_request_t req, mdp_msg_t *body);

/* What the worker's connection to its broker did (mdp_worker_event_cb). */
typedef enum {
  /* The broker accepted the READY: its first HEARTBEAT or REQUEST on this
   * connection arrived (a READY that was only sent proves nothing; a broker
   * that refuses it answers DISCONNECT).  Once per connection. */
  MDP_WORKER_REGISTERED = 1,
  /* The connection was given up and a reconnect is scheduled; `err` says
   * why: MDP_ETIMEDOUT (the broker was silent for liveness x interval),
   * MDP_ECANCELED (the broker sent DISCONNECT), or the error that kept a new socket from opening
   * (MDP_ESETUP, MDP_EZMQ, MDP_ENOMEM, ...). */
  MDP_WORKER_BROKER_LOST = 2
} mdp_worker_event_t;

/* Optional life-cycle callback (opts.event_cb).  Called from the loop,
 * never from inside a libmdp call and never once the worker is closing.
 * It may close the worker; a request in progress when the broker was lost
 * is already abandoned (its handle is stale). */
typedef void (*mdp_worker_event_cb)(mdp_worker_t *worker,
                                    mdp_worker_event_t event, int err,
                                    void *data);

/* Everything the worker held unsent has gone to ZeroMQ (mdp_worker_held()
 * fell to zero after being above it).  See mdp_worker_set_drain_cb(). */
typedef void (*mdp_worker_drain_cb)(mdp_worker_t *worker);

/* The worker is closed; do not use `worker` (or any of its request handles)
 * after this callback returns. */
typedef void (*mdp_worker_close_cb)(mdp_worker_t *worker);

typedef struct {
  /* ZeroMQ context for the DEALER socket; NULL: mdp_zmq_context().  An
   * inproc:// broker must use the same context. */
  void *zmq_context;
  /* A HEARTBEAT is sent when nothing else was sent for an interval (default
   * 2500 ms, Majortomo's; RFC 18: no heartbeats while other commands, such
   * as a stream of PARTIALs, flow); the broker is presumed dead after liveness x interval without any message
   * from it (default liveness 4).  In the Majortomo and MDP/0.1 dialects,
   * whose brokers heartbeat idle workers only, the check is suspended while
   * a request is in progress.  The interval is 1..MDP_WORKER_TIME_MAX_MS,
   * the liveness 1..MDP_WORKER_LIVENESS_MAX. */
  uint64_t heartbeat_interval_ms;
  unsigned heartbeat_liveness;
  /* Delay before reconnecting after the connection was lost: starts at
   * `reconnect_initial_ms` (default 250) and doubles with each reconnect, up
   * to `reconnect_max_ms` (default 10000).  A HEARTBEAT or REQUEST from the
   * broker (it accepted the worker) resets it; a DISCONNECT does not, so a
   * broker that refuses the READY is retried ever more slowly.  Both are
   * 1..MDP_WORKER_TIME_MAX_MS, initial <= max. */
  uint64_t reconnect_initial_ms;
  uint64_t reconnect_max_ms;
  /* Wire dialect, exactly one of: MDP_DIALECT_RFC18 (the default),
   * MDP_DIALECT_MAJORTOMO (to serve behind a Majortomo broker) or
   * MDP_DIALECT_MDP01 (an MDP/0.1 broker; one REPLY per request, so
   * mdp_worker_partial() returns MDP_ENOTSUP).  Anything else (0, a mask of
   * several) makes mdp_worker_new() return MDP_EINVAL.  Messages from the
   * broker in another dialect are dropped and counted (dropped_invalid). */
  mdp_dialect_t dialect;
  /* CURVE (docs/security.md): the broker's public key and this worker's own
   * key pair, each 40 characters of Z85 text (mdp/curve.h, mdp-keygen);
   * copied by mdp_worker_new().  All three NULL (the default): plaintext.
   * Give all three or none: otherwise, or for a malformed key,
   * mdp_worker_new() returns MDP_EINVAL; MDP_ENOTSUP if libzmq has no CURVE.
   * A broker that refuses the key (or whose key is not this one) never
   * answers: the connection shows as silence. */
  const char *curve_server_key;
  const char *curve_public_key;
  const char *curve_secret_key;
  /* Log hook (NULL: silent) and the most verbose level passed to it
   * (default MDP_LOG_INFO). */
  mdp_log_cb log_cb;
  void *log_data;
  mdp_log_level_t log_level;
  /* ZMQ_MAXMSGSIZE of the socket (default 64 MiB, as the broker's; -1 =
   * unlimited; below -1: MDP_EINVAL).  A broker sending a larger frame is
   * disconnected by ZeroMQ for good (tcp, ipc; inproc is not checked): the
   * worker hears nothing more and connects a new socket after liveness x
   * interval, as for a silent broker. */
  int64_t max_msg_size;
  /* Frames in one message from the broker, the MDP envelope (up to 5)
   * included (default 1024, as the broker's): a larger message is discarded
   * whole by the reactor, without holding more than this many frames, and
   * counted in dropped_frames; 0 = unlimited.  1..5: MDP_EINVAL (no
   * REQUEST would fit). */
  size_t max_frames;
  /* Options of the worker's socket (send and receive high-water
   * marks, TCP keepalive, IPv6, a setup hook): see mdp_socket_options_t in
   * mdp/context.h.  A hook that fails makes mdp_worker_new() return MDP_ESETUP;
   * at a reconnect it is logged and retried after the next back-off. */
  mdp_socket_options_t socket;
  /* Life-cycle callback (NULL: none) and its last argument. */
  mdp_worker_event_cb event_cb;
  void *event_data;
  /* Room for options to come (docs/abi.md): 512 bytes in all. */
  unsigned char reserved_[336];
} mdp_worker_options_t;

/* Counters since creation, and gauges (marked "now"). */
typedef struct {
  uint64_t requests;          /* REQUESTs delivered to the callback */
  uint64_t partials;          /* PARTIALs sent */
  uint64_t finals;            /* FINALs sent */
  uint64_t abandoned;         /* requests lost with their connection */
  uint64_t heartbeats_sent;
  uint64_t heartbeats_received;
  uint64_t disconnects_received;
  uint64_t connects;          /* sockets connected (READY sent), first too */
  uint64_t dropped_invalid;   /* malformed or unexpected messages */
  int busy;                   /* now: a request is in progress */
  int connected;              /* now: a socket is open and READY sent */
  size_t pending;             /* now: messages (replies, commands) held by
                                 the reactor until the socket takes them */
  uint64_t dropped_frames;    /* messages over max_frames (or that found no
                                 memory), discarded whole unread */
  uint64_t late_finals;       /* FINALs through the handle of the request
                                 abandoned last, refused (MDP_ESTATE): the
                                 application has finished with it (once per
                                 abandoned request) */
  /* Room for figures to come (docs/abi.md): 512 bytes in all. */
  unsigned char reserved_[408];
} mdp_worker_stats_t;

/* Fills `opts` with the defaults listed above. */
MDP_EXTERN void mdp_worker_options_init(mdp_worker_options_t *opts);

/* Creates a worker on `loop` for `service` (1..255 bytes, not "mmi.*") at
 * the broker `endpoint` (tcp://, ipc://, inproc://), connects and sends
 * READY (ZeroMQ queues it until the connection is up).  `opts` NULL:
 * defaults; the options and strings are copied.  Returns 0 and sets `*out`,
 * or MDP_EINVAL (also: an unknown dialect, incomplete or malformed CURVE
 * keys, a time or liveness out of its range), MDP_ESERVICE, MDP_ENOTSUP (CURVE keys given, libzmq has no CURVE),
 * MDP_ENOMEM, MDP_EZMQ (e.g. a malformed endpoint), MDP_EUV; on failure
 * nothing is left behind. */
MDP_EXTERN int mdp_worker_new(uv_loop_t *loop, const char *endpoint, const char *service,
                   const mdp_worker_options_t *opts,
                   mdp_worker_request_cb request_cb, mdp_worker_t **out);

/* Sends `body` (one or more frames; NULL sends one empty frame) as a
 * PARTIAL reply to `req` (a copy of the handle the request callback got).
 * Any number of times before the FINAL.  Call from the worker's loop thread.
 * Returns 0: the body belongs to the library.  On error the body is still
 * the caller's and nothing was sent:
 *   MDP_ESTATE: `req` is stale: not the request in progress (already
 *     finished, abandoned after a reconnect or by a close, or never valid);
 *     nothing of the worker's state is touched but the id compare;
 *   MDP_EINVAL: a handle with no worker, or a body with no frame;
 *   MDP_ENOTSUP: the worker speaks MDP/0.1, which has no partial replies
 *     (checked first, whatever the handle's state); send the whole reply
 *     with mdp_worker_final();
 *   MDP_ENOBUFS, MDP_EZMQ: the socket refused it (see mdp_reactor_send). */
MDP_EXTERN int mdp_worker_partial(mdp_request_t req, mdp_msg_t *body);

/* Sends `body` as the FINAL reply and ends the request; the worker is ready
 * for the next one.  Same returns and ownership as mdp_worker_partial().
 * A second FINAL returns MDP_ESTATE. */
MDP_EXTERN int mdp_worker_final(mdp_request_t req, mdp_msg_t *body);

/* 1 if `req` is the request in progress (a reply would not be refused with
 * MDP_ESTATE), else 0 (stale, or no request). */
MDP_EXTERN int mdp_worker_request_active(mdp_request_t req);

/* Starts closing.  With `wait_for_request` non-zero and a request in
 * progress, the worker keeps heartbeating and waits for its FINAL (or for the
 * connection to be lost), so the broker still routes the reply; otherwise a
 * request in progress is abandoned (also when the broker falls silent
 * while it waits).  Then it sends DISCONNECT, gives the socket a short grace
 * period (at most 100 ms, then a linger of 100 ms, so DISCONNECT can leave;
 * it is best effort) and closes its handles.  The grace goes on while the
 * last reply is still held back by a full pipe (a broker reading slowly),
 * so a FINAL that mdp_worker_final() accepted is not dropped, for at most
 * liveness x interval from the start of the grace.  `close_cb` (may be NULL) is
 * called from the loop and the worker is freed: after that, neither the
 * worker nor any request handle of it may be used.  No request callback is
 * made after this call.  Safe from the worker's own callbacks.  A second
 * call is a no-op. */
MDP_EXTERN void mdp_worker_close(mdp_worker_t *worker, int wait_for_request,
                      mdp_worker_close_cb close_cb);

/* Back-pressure: the messages (returned) and bytes (`*bytes`, if not NULL)
 * the worker holds unsent because its socket's pipe to the broker is full
 * (a broker, or a client behind it, reading slowly).  mdp_worker_partial()
 * and mdp_worker_final() return 0 for a reply that was sent or held alike;
 * a non-zero count right after the call says it was held.  A producer
 * that stops while this is above 0 and resumes in the drain callback keeps
 * the worker's memory to about one message.  Held messages are dropped
 * with a lost connection (the request is abandoned). */
MDP_EXTERN size_t mdp_worker_held(const mdp_worker_t *worker, size_t *bytes);

/* Sets (NULL: clears) the callback called from the loop when the held
 * count falls to zero after being above it, as libuv's write callback; not
 * when held messages are dropped with the connection (the event callback's
 * MDP_WORKER_BROKER_LOST says that).  It may reply, close the worker, etc.
 * Never called from inside mdp_worker_partial() or mdp_worker_final(). */
MDP_EXTERN void mdp_worker_set_drain_cb(mdp_worker_t *worker,
                                        mdp_worker_drain_cb cb);

/* 1 once mdp_worker_close() was called (the worker may still be sending
 * its last reply or DISCONNECT), else 0. */
MDP_EXTERN int mdp_worker_is_closing(const mdp_worker_t *worker);

/* libuv's ref/unref idiom: an unref'd worker's handles (its timers and its
 * socket's reactor, also after reconnects) are uv_unref'd, so
 * uv_run(UV_RUN_DEFAULT) returns when nothing else is active; the worker
 * goes on serving while something else keeps the loop running.  Workers
 * start ref'd.  Loop thread only; never fails; idempotent. */
MDP_EXTERN void mdp_worker_ref(mdp_worker_t *worker);
MDP_EXTERN void mdp_worker_unref(mdp_worker_t *worker);

/* Copies the worker's counters into `*out` (the caller's). */
MDP_EXTERN void mdp_worker_get_stats(const mdp_worker_t *worker, mdp_worker_stats_t *out);

/* The user's pointer (NULL initially). */
MDP_EXTERN void mdp_worker_set_data(mdp_worker_t *worker, void *data);
MDP_EXTERN void *mdp_worker_get_data(const mdp_worker_t *worker);

/* The loop the worker was created on. */
MDP_EXTERN uv_loop_t *mdp_worker_loop(const mdp_worker_t *worker);

/* The service name the worker serves (the worker's copy, valid until it is
 * freed). */
MDP_EXTERN const char *mdp_worker_service(const mdp_worker_t *worker);

#ifdef __cplusplus
}
#endif
#endif /* MDP_WORKER_H */
