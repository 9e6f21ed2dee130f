/* libmdp: mdp_client_t, a Majordomo client (MDP/0.2, RFC 18; optionally
 * Majortomo's dialect or MDP/0.1) on a caller's libuv loop, with many
 * requests in flight at once.
 *
 * MDP allows one request in flight per client socket, so a client object
 * keeps a pool of DEALER sockets: a request takes an idle socket (or a new
 * one, up to `max_sockets`), and the socket returns to the pool after the
 * FINAL.  Requests beyond the bound wait in a queue, in order.  No frame
 * beyond the protocol's is ever sent.
 *
 * Each request has its own reply callback, called for every PARTIAL, then
 * for the FINAL, or once with an error.  Between two reply parts (and before
 * the first) at most `timeout_ms` may pass; on timeout the request's socket
 * is discarded (so its late replies can never reach another request) and the
 * request is sent again on a new socket, to another broker if the client has
 * several, up to `retries` more times; then it fails with MDP_ETIMEDOUT.  A
 * request that has already delivered a PARTIAL is not retried (the
 * application has seen part of the reply).  An optional overall deadline
 * bounds the whole request, retries and queueing included.
 *
 * Several brokers (live-live, docs/farm.md): new requests are spread over
 * the brokers that are live (in turn, to the one with the fewest requests
 * outstanding, or to the first: `spread`); a broker on which a request timed
 * out is avoided for a back-off, then probed with an MMI request before it
 * gets traffic again; a retry always goes to another broker than the one
 * that timed out.  docs/client.md describes it.
 *
 * Threading: a client belongs to the thread that runs its loop; call its
 * functions only from that thread (callbacks of the same loop included).
 *
 * Life cycle: mdp_client_options_init() -> mdp_client_new() ->
 * mdp_client_request() (any number) -> ... -> mdp_client_close(cb).  The
 * client is freed after its close callback returns.
 */
#ifndef MDP_CLIENT_H
#define MDP_CLIENT_H

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

typedef struct mdp_client_s mdp_client_t;

/* One part of the reply to request `request_id`, or its failure.
 *   status 0: `body` (one or more frames) is a PARTIAL (`final` 0) or the
 *     FINAL (`final` 1); it belongs to the callback.
 *   status < 0: the request failed; `body` is NULL and `final` is 1:
 *     MDP_ETIMEDOUT (no reply part in time, retries exhausted, or the
 *     deadline passed), MDP_ECANCELED (mdp_client_cancel(), or the client
 *     was closed with the request pending), MDP_ENOMEM, MDP_EZMQ (no socket
 *     could be opened), MDP_EINVAL (the endpoint is malformed or its
 *     transport unknown), MDP_ENOBUFS or MDP_EZMQ (the socket refused the
 *     REQUEST).
 * After the call with `final` 1 the request is over and its id is unknown
 * to the client.  The callback may make new requests, cancel any request
 * (this one included) and close the client. */
typedef void (*mdp_client_reply_cb)(mdp_client_t *client, uint64_t request_id,
                                    int status, int final, mdp_msg_t *body,
                                    void *request_data);

/* Everything the client held unsent has gone to ZeroMQ (mdp_client_held()
 * fell to zero after being above it).  See mdp_client_set_drain_cb(). */
typedef void (*mdp_client_drain_cb)(mdp_client_t *client);

/* The client is closed; do not use `client` after this callback returns. */
typedef void (*mdp_client_close_cb)(mdp_client_t *client);

/* How a client with several broker endpoints picks one for a new request
 * (and for a retry, among the others).  Each picks among the live
 * endpoints; when none is live, among all of them. */
typedef enum {
  /* The live endpoints in turn (the default). */
  MDP_SPREAD_ROUND_ROBIN = 0,
  /* The live endpoint with the fewest requests outstanding on it; ties in
   * turn.  Follows a slow broker's backlog. */
  MDP_SPREAD_FEWEST = 1,
  /* The first live endpoint in the list: a primary and its backups. */
  MDP_SPREAD_FAILOVER = 2
} mdp_spread_t;

typedef struct {
  /* ZeroMQ context for the sockets; NULL: mdp_zmq_context().  An inproc://
   * broker must use the same context. */
  void *zmq_context;
  /* Longest wait for the next reply part (default 10000 ms, Majortomo's).
   * At least 1 (0 is MDP_EINVAL).  Times are not wrapped: UINT64_MAX, or
   * any value that would pass the loop clock's range when added to it,
   * means "forever" (the request never times out). */
  uint64_t timeout_ms;
  /* Longest time for a whole request, from mdp_client_request() to the
   * FINAL, queueing and retries included; 0 = none (default); UINT64_MAX
   * (or any value too large for the loop clock) = none as well. */
  uint64_t deadline_ms;
  /* Times a timed-out request is sent again, each time to another endpoint
   * than the one that timed out, if there are several (default 1: one
   * retry, so two brokers are each tried once).  Any value; each retry
   * waits its own timeout_ms. */
  unsigned retries;
  /* Sockets open at once, idle ones included (default 64).  ZeroMQ's own
   * default limit is 1023 sockets per context (ZMQ_MAX_SOCKETS). */
  size_t max_sockets;
  /* Requests waiting for a socket (queued); a request that would wait
   * beyond it is refused: mdp_client_request() returns MDP_ENOBUFS and
   * counts it in refused_queue_full (default 10000; 0 = unlimited).  See
   * also max_queued_bytes, at the end. */
  size_t max_queue;
  /* Wire dialect, exactly one of: MDP_DIALECT_RFC18 (the default),
   * MDP_DIALECT_MAJORTOMO (to call a Majortomo broker; its replies carry no
   * service frame) or MDP_DIALECT_MDP01 (an MDP/0.1 broker: one REPLY per
   * request, delivered as the FINAL; no PARTIALs).  Anything else (0, a mask
   * of several) makes mdp_client_new() return MDP_EINVAL.  Replies in
   * another dialect are dropped and counted (dropped). */
  mdp_dialect_t dialect;
  /* CURVE (docs/security.md): the broker's public key and this client's own
   * key pair, each 40 characters of Z85 text (mdp/curve.h, mdp-keygen);
   * copied by mdp_client_new().  All three NULL (the default): plaintext.
   * Give all three or none: otherwise, or for a malformed key,
   * mdp_client_new() returns MDP_EINVAL; MDP_ENOTSUP if libzmq has no CURVE.
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
  /* ZMQ_MAXMSGSIZE of every socket: a broker (or an impostor) sending a
   * larger frame is disconnected by ZeroMQ before the client sees it, so
   * the request shows silence (a timeout, then a retry).  Default 64 MiB,
   * as the broker's; -1 = unlimited; below -1: MDP_EINVAL. */
  int64_t max_msg_size;
  /* Bytes (mdp_msg_bytes() of the bodies) of the requests waiting for a
   * socket; a request that would wait and take them beyond it is refused:
   * MDP_ENOBUFS, counted in refused_queued_bytes (default 64 MiB; 0 =
   * unlimited).  Requests that go straight to a socket are not counted. */
  size_t max_queued_bytes;
  /* Options of the client's sockets (each pooled one) (send and receive high-water
   * marks, TCP keepalive, IPv6, a setup hook): see mdp_socket_options_t in
   * mdp/context.h.  A hook that fails fails the request that needed the socket
   * with MDP_ESETUP (reported from the loop, as for any socket that cannot
   * be opened). */
  mdp_socket_options_t socket;
  /* With several endpoints: how new requests pick one (mdp_spread_t;
   * default MDP_SPREAD_ROUND_ROBIN; another value: MDP_EINVAL). */
  mdp_spread_t spread;
  /* With several endpoints, 1 (default): an endpoint put aside for its
   * back-off is sent an MMI request (mmi.service) when the back-off ends,
   * and gets traffic again only once the broker has answered it; a probe
   * unanswered within timeout_ms doubles the back-off.  0: no probe, the
   * endpoint takes traffic again when its back-off ends (for a broker that
   * does not answer MMI). */
  int probe;
  /* With several endpoints: an endpoint on which a request timed out is
   * avoided for this long (default 1000 ms), doubled after each further
   * failure (a probe or a request timing out) up to backoff_max_ms
   * (default 30000 ms); any reply from it resets it.  0: never avoided
   * (requests are still spread, and a retry still goes elsewhere). */
  uint64_t backoff_ms;
  uint64_t backoff_max_ms;
  /* Frames in one reply message, its envelope (header, command, service)
   * included: a broker (or an impostor on a plaintext path) sending more is
   * not believed; the message is discarded whole unread and counted in
   * dropped_frames, so the request shows silence (a timeout, then a retry).
   * ZMQ_MAXMSGSIZE (max_msg_size) bounds a frame's size, this their count:
   * together they bound what one reply can make the client hold.  Default
   * 1024, as the broker's and the worker's; 0 = unlimited; 1..3:
   * MDP_EINVAL (no reply would fit). */
  size_t max_frames;
  /* Room for options to come (docs/abi.md): 512 bytes in all. */
  unsigned char reserved_[312];
} mdp_client_options_t;

/* Per-request settings; mdp_client_request_options_init() fills them with
 * the client's.  Ranges as for the client's options: timeout_ms at least 1
 * (UINT64_MAX: forever), deadline_ms 0 or UINT64_MAX for none. */
typedef struct {
  uint64_t timeout_ms;
  uint64_t deadline_ms; /* 0 = none */
  unsigned retries;
  /* Room for settings to come (docs/abi.md): 128 bytes in all. */
  unsigned char reserved_[104];
} mdp_request_options_t;

/* Counters since creation, and gauges (marked "now"). */
typedef struct {
  uint64_t requests;       /* accepted by mdp_client_request() */
  uint64_t sent;           /* REQUESTs sent, retries included */
  uint64_t retries;        /* retries decided (counted when scheduled, so
                              one cancelled before it went is included) */
  uint64_t partials;       /* PARTIALs delivered */
  uint64_t finals;         /* FINALs delivered */
  uint64_t timeouts;       /* requests failed with MDP_ETIMEDOUT */
  uint64_t cancelled;      /* requests failed with MDP_ECANCELED */
  uint64_t dropped;        /* replies discarded: unexpected or invalid
                              (late replies never arrive: their socket was
                              closed at the timeout) */
  uint64_t sockets_opened;
  uint64_t sockets_discarded; /* closed: after a timeout or cancel, to stay
                                 within max_sockets, or at close */
  size_t in_flight;        /* now: requests sent, waiting for replies */
  size_t queued;           /* now: requests waiting for a socket */
  size_t sockets;          /* now: open sockets, idle ones included */
  uint64_t refused_queue_full;   /* MDP_ENOBUFS: max_queue reached */
  uint64_t refused_queued_bytes; /* MDP_ENOBUFS: max_queued_bytes reached */
  size_t queued_bytes;     /* now: body bytes of the queued requests */
  uint64_t endpoints_avoided; /* times an endpoint was put aside after a
                                 timeout (or a failed probe) */
  uint64_t probes;         /* MMI probes sent to endpoints put aside */
  uint64_t probes_failed;  /* of them, unanswered within timeout_ms */
  size_t endpoints_live;   /* now: endpoints not put aside */
  uint64_t dropped_frames; /* reply messages over max_frames (or that found
                              no memory), discarded whole unread */
  /* Room for figures to come (docs/abi.md): 512 bytes in all. */
  unsigned char reserved_[344];
} mdp_client_stats_t;

/* One broker endpoint of a client, as mdp_client_get_endpoint_stats()
 * reports it. */
typedef struct {
  uint64_t sent;        /* REQUESTs sent to it, retries included */
  uint64_t finals;      /* FINALs received from it */
  uint64_t timeouts;    /* requests that timed out on it */
  size_t outstanding;   /* now: requests sent to it, not yet answered */
  int live;             /* now: 1 if not put aside (avoided or probing) */
  /* Room for figures to come (docs/abi.md): 128 bytes in all. */
  unsigned char reserved_[92];
} mdp_client_endpoint_stats_t;

/* Fills `opts` with the defaults listed above. */
MDP_EXTERN void mdp_client_options_init(mdp_client_options_t *opts);

/* Creates a client on `loop` for the `n` broker `endpoints` (tcp://, ipc://,
 * inproc://; at least one; copied).  New requests are spread over them as
 * `opts->spread` says; a retry goes to another endpoint than the one that
 * timed out.  Sockets are opened on demand, so an unreachable broker shows
 * as timeouts, not here.  `opts` NULL: defaults; copied.  Returns 0 and
 * sets `*out`, or MDP_EINVAL (also: timeout_ms or max_sockets 0,
 * max_msg_size below -1, an unknown dialect or spread, backoff_max_ms below
 * backoff_ms, incomplete or malformed CURVE keys), MDP_ENOTSUP (CURVE keys
 * given, libzmq has no CURVE), MDP_ENOMEM, MDP_EZMQ, MDP_EUV; on failure
 * nothing is left behind. */
MDP_EXTERN int mdp_client_new(uv_loop_t *loop, const char *const *endpoints, size_t n,
                   const mdp_client_options_t *opts, mdp_client_t **out);

/* Fills `ro` with the client's timeout, deadline and retries. */
MDP_EXTERN void mdp_client_request_options_init(const mdp_client_t *client,
                                     mdp_request_options_t *ro);

/* Sends `body` (one or more frames) to `service` (1..255 bytes) and calls
 * `reply_cb` with `request_data` for each reply part, as described above.
 * `ro` NULL: the client's settings.  On success returns 0, the body belongs
 * to the library, and `*request_id` (may be NULL) is set to an id, never 0
 * nor reused, for mdp_client_cancel().  The callback is never called from
 * within this function.  On error the body is still the caller's and no
 * callback will be made: MDP_EINVAL (NULL arguments, a body with no frame,
 * ro->timeout_ms 0), MDP_ESERVICE, MDP_ENOBUFS (the request would wait and
 * the queue is full: max_queue or max_queued_bytes; counted in the stats),
 * MDP_ECLOSING, MDP_ENOMEM. */
MDP_EXTERN int mdp_client_request(mdp_client_t *client, const char *service,
                       mdp_msg_t *body, const mdp_request_options_t *ro,
                       mdp_client_reply_cb reply_cb, void *request_data,
                       uint64_t *request_id);

/* Cancels a pending request: its callback is called with MDP_ECANCELED
 * before this returns (even from inside that request's own callback), and
 * its socket, if the request was sent, is discarded.  0, or MDP_EINVAL if no
 * request with this id is pending (finished, failed, never existed). */
MDP_EXTERN int mdp_client_cancel(mdp_client_t *client, uint64_t request_id);

/* Starts closing: every pending request's callback is called with
 * MDP_ECANCELED before this returns, sockets and timers are closed, then
 * `close_cb` (may be NULL) is called from the loop and the client is freed.
 * mdp_client_request() returns MDP_ECLOSING from now on.  Safe from reply
 * callbacks.  A second call is a no-op. */
MDP_EXTERN void mdp_client_close(mdp_client_t *client, mdp_client_close_cb close_cb);

/* Back-pressure: the messages (returned) and bytes (`*bytes`, if not NULL)
 * held unsent because a socket's pipe to its broker is full, summed over
 * the pooled sockets.  A request accepted by mdp_client_request() may be
 * held; a non-zero count says some are.  Held messages of a socket that is
 * discarded (its request timed out, was cancelled or retried) are dropped
 * with it. */
MDP_EXTERN size_t mdp_client_held(const mdp_client_t *client, size_t *bytes);

/* Sets (NULL: clears) the callback called from the loop when the held
 * count falls to zero after being above it, because the held messages were
 * sent (not when they are dropped with a discarded socket: the request's
 * own callback tells).  Never called from inside a libmdp call.  It may
 * make requests or close the client. */
MDP_EXTERN void mdp_client_set_drain_cb(mdp_client_t *client,
                                        mdp_client_drain_cb cb);

/* 1 once mdp_client_close() was called, else 0. */
MDP_EXTERN int mdp_client_is_closing(const mdp_client_t *client);

/* libuv's ref/unref idiom: an unref'd client's handles (its timer and every
 * pooled socket's reactor, also those opened later) are uv_unref'd, so
 * uv_run(UV_RUN_DEFAULT) returns when nothing else is active, even with
 * requests pending (they go on while something else runs the loop).
 * Clients start ref'd.  Loop thread only; never fails; idempotent. */
MDP_EXTERN void mdp_client_ref(mdp_client_t *client);
MDP_EXTERN void mdp_client_unref(mdp_client_t *client);

/* Copies the client's counters and gauges into `*out` (the caller's). */
MDP_EXTERN void mdp_client_get_stats(const mdp_client_t *client, mdp_client_stats_t *out);

/* Copies the figures of endpoint `index` (its position in the list given
 * to mdp_client_new()) into `*out` (the caller's).  0, or MDP_EINVAL for
 * an index past the list. */
MDP_EXTERN int mdp_client_get_endpoint_stats(const mdp_client_t *client,
                                             size_t index,
                                             mdp_client_endpoint_stats_t *out);

/* The user's pointer (NULL initially). */
MDP_EXTERN void mdp_client_set_data(mdp_client_t *client, void *data);
MDP_EXTERN void *mdp_client_get_data(const mdp_client_t *client);

/* The loop the client was created on. */
MDP_EXTERN uv_loop_t *mdp_client_loop(const mdp_client_t *client);

/* --- blocking helper ----------------------------------------------------- */

/* The parts of a whole reply, in arrival order (PARTIALs, then the FINAL). */
typedef struct {
  mdp_msg_t **parts;
  size_t count;
} mdp_reply_t;

/* Destroys every part and frees the array; `reply` is left empty. */
MDP_EXTERN void mdp_reply_free(mdp_reply_t *reply);

/* Sends one request to `endpoint` and waits for the whole reply, with a
 * client on a private loop (opts NULL: defaults; `timeout_ms` and `retries`
 * override the options' values).  Blocks the calling thread; do not call it
 * from a loop's callback.  Any thread may call it; inproc:// needs the
 * broker's context in `opts->zmq_context` (or the shared one).
 * Returns 0 and fills `*reply` (the caller frees it with mdp_reply_free),
 * or an error as for the reply callback, or one of mdp_client_new()'s or
 * mdp_client_request()'s errors (then `*reply` is empty).  `body` stays the
 * caller's in every case: the helper sends a copy (mdp_msg_dup shares large
 * frames, it does not copy their bytes). */
MDP_EXTERN int mdp_request_sync(const char *endpoint, const char *service,
                     mdp_msg_t *body, uint64_t timeout_ms, unsigned retries,
                     const mdp_client_options_t *opts, mdp_reply_t *reply);

#ifdef __cplusplus
}
#endif
#endif /* MDP_CLIENT_H */
