/* libmdp: mdp_broker_t, a Majordomo broker (MDP/0.2, RFC 18, with MMI, RFC 8)
 * on a caller's libuv loop.
 *
 * One ROUTER socket bound to one or more endpoints serves clients and
 * workers.  Requests are queued per service and handed to that service's
 * idle workers, least recently used first; clients are served round-robin
 * within a service so one client cannot starve another.  Replies are routed
 * back unchanged, bodies moved, not copied.  docs/broker.md describes the
 * behaviour in full.
 *
 * Threading: a broker belongs to the thread that runs its loop; call its
 * functions only from that thread.
 *
 * Large bodies: a program that embeds the broker and moves bodies of
 * 64 KiB or more should call mdp_malloc_tune() (mdp/malloc.h) once at
 * start, as mdp-broker does.  With glibc's default thresholds the freed
 * frame buffers go back to the kernel and every message faults fresh pages
 * in: measured, 150-250 page faults and 1.5-2.0x the CPU per 1 MiB round
 * trip.  The library does not do it itself: the allocator is the program's.
 *
 * Life cycle: mdp_broker_options_init() -> mdp_broker_new() ->
 * mdp_broker_bind() (one or more) -> ... -> mdp_broker_close(cb).  The broker
 * is freed after its close callback returns.
 */
#ifndef MDP_BROKER_H
#define MDP_BROKER_H

#include "mdp/export.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdp_broker_s mdp_broker_t;

/* Called once the broker is closed; do not use `broker` after it returns. */
typedef void (*mdp_broker_close_cb)(mdp_broker_t *broker);

typedef struct {
  /* ZeroMQ context for the ROUTER socket; NULL: mdp_zmq_context().  Peers
   * on inproc:// endpoints must use the same context. */
  void *zmq_context;
  /* Heartbeat sent to every worker each interval (default 2500 ms), busy
   * or idle; a worker silent for liveness x interval is removed (default
   * liveness 4), unless it is busy and its dialect is in
   * `silent_busy_dialects`.  A heartbeat that finds a worker's connection
   * closed removes the worker at once (its process died): a dead worker,
   * busy or idle, is noticed within about one interval. */
  uint64_t heartbeat_interval_ms;
  unsigned heartbeat_liveness;
  /* Dialects (a mask of mdp_dialect_t) whose workers are not expired for
   * silence while they hold a request: most synchronous worker libraries
   * (Majortomo's, the zguide's, zeromq/majordomo's) send HEARTBEAT only
   * while they wait for one.  Such a busy worker is bounded by
   * `silent_busy_timeout_ms` instead.  Default MDP_DIALECT_MAJORTOMO |
   * MDP_DIALECT_MDP01, as their brokers do; RFC 18 requires workers to
   * heartbeat while busy, so add MDP_DIALECT_RFC18 only for a synchronous
   * RFC 18 worker library.  docs/broker.md has the rule per dialect. */
  unsigned silent_busy_dialects;
  /* Longest time one request may stay with a worker that is exempt from the
   * silence rule (see above) before the worker is dropped (DISCONNECT) and
   * the request re-dispatched (default 900000 ms, Majortomo's busy worker
   * timeout); 0 = no bound (a frozen worker then keeps its request until
   * its connection closes). */
  uint64_t silent_busy_timeout_ms;
  /* The same bound for workers judged by their heartbeats while busy (by
   * default the RFC 18 ones); 0 = off (default). */
  uint64_t busy_timeout_ms;
  /* A queued request for a service with no idle worker is dropped after
   * this long (default 30000 ms); 0 = never. */
  uint64_t request_expiry_ms;
  /* Queued requests per service; new requests beyond it are dropped
   * (default 10000); 0 = unlimited.  This and the other queue limits bound
   * what is admitted: a request whose worker was lost goes back to the
   * front of its queue even over them (it was admitted once, and at most
   * one per busy worker comes back). */
  size_t max_queue;
  /* Queued requests over all services (default 100000); 0 = unlimited. */
  size_t max_queued_total;
  /* Queued requests of one client for one service (default 1000), so one
   * flooding client cannot fill a service's queue; 0 = unlimited. */
  size_t max_queue_per_client;
  /* Bytes held by queued requests, all services, each frame charged its
   * size plus its bookkeeping, and by the replies being collected for
   * MDP/0.1 clients (default 256 MiB); 0 = unlimited.  A request beyond it
   * is dropped (dropped_queue_full); a collection beyond it fails the
   * request (dropped_too_large). */
  size_t max_queued_bytes;
  /* Services known at once (default 10000): a READY that would create one
   * more is refused; requests may create services (for which no worker has
   * registered yet) only up to half of it; 0 = unlimited. */
  size_t max_services;
  /* Workers registered for one service (default 10000); a READY beyond it
   * gets DISCONNECT; 0 = unlimited. */
  size_t max_workers_per_service;
  /* Frames in one message (default 1024): a larger message is discarded
   * whole by the reactor before the broker sees it; 0 = unlimited. */
  size_t max_frames;
  /* ZMQ_MAXMSGSIZE of the socket: a peer sending a larger message is
   * disconnected by ZeroMQ (default 64 MiB); -1 = unlimited. */
  int64_t max_msg_size;
  /* Times a request is sent to another worker after its worker was lost
   * before replying (default 1). */
  unsigned max_redispatch;
  /* Dialects accepted (a mask of mdp_dialect_t, see mdp/codec.h); each peer
   * is answered in its own (default MDP_DIALECT_ALL). */
  unsigned dialects;
  /* CURVE (docs/security.md).  `curve_secret_key`: the broker's secret key,
   * 40 characters of Z85 text (mdp/curve.h); NULL (the default): plaintext,
   * no authentication.  With it, mdp_broker_new() starts a ZAP handler on
   * the broker's loop, in its ZeroMQ context, that lets in only CURVE peers
   * whose public key is in `curve_allow` (a key file of public-key lines,
   * or a directory whose *.pub files are read) or among the
   * `curve_allow_count` Z85 strings of `curve_allow_keys`; at least one of
   * the two must be given.  All are read by mdp_broker_new() only.  ZeroMQ
   * allows one ZAP handler per context: a second CURVE broker in the same
   * context fails with MDP_EADDRINUSE. */
  const char *curve_secret_key;
  const char *curve_allow;
  const char *const *curve_allow_keys;
  size_t curve_allow_count;
  /* Log hook (NULL: silent) and the most verbose level passed to it
   * (default MDP_LOG_INFO).  Lines about single messages (an invalid
   * message, a dropped reply, a protocol error) are sampled: the first of
   * each kind and every 1000th, with the count so far, so a flood does not
   * become a flood of log lines. */
  mdp_log_cb log_cb;
  void *log_data;
  mdp_log_level_t log_level;
  /* A worker removed for silence gets nothing more, as RFC 18 says
   * (default 0).  1: it is sent DISCONNECT first, as Majortomo's and the
   * zguide's brokers do, so a worker that was only slow re-registers at
   * once.  Workers removed for any other reason (busy timeout, protocol
   * error, close) are always told. */
  int disconnect_expired;
  /* Bytes of service names in one mmi.services reply (default 65536), each
   * name charged its size plus 64: a client's small request cannot make the
   * broker send megabytes.  Names beyond it are left out (counted in
   * mmi_truncated). */
  size_t max_mmi_reply_bytes;
  /* The ROUTER's ZeroMQ options (mdp/context.h, as for workers and
   * clients): send/receive high-water marks, TCP keepalive, ZMQ_IPV6 (1:
   * tcp://\* dual-stack; 0, the default: only for a bind to a bracketed
   * IPv6 literal such as tcp://[::1]:5555), and the setup hook, called with
   * the ROUTER after those and before any bind (a refusal makes
   * mdp_broker_new() fail with MDP_ESETUP, nothing left behind).  Out of
   * range: MDP_EINVAL. */
  mdp_socket_options_t socket;
  /* Services that get their own per-service figures (requests, replies,
   * durations, see mdp_broker_foreach_service), default 100.  A service
   * gets its entry at the first READY for it, while fewer than this many
   * exist, and keeps it for the broker's life (the figures are counters:
   * they must not restart when the service's last worker leaves).  Every
   * other service, including those only clients have asked for, is summed
   * into the one entry named MDP_BROKER_OTHER_SERVICE.  0: all of them are
   * summed there.  Memory: one entry (about 0.3 KiB) per service, at most
   * this many. */
  size_t metrics_max_services;
  /* Room for options to come (docs/abi.md): the struct's size is fixed at
   * 512 bytes for SONAME 0; set nothing here. */
  unsigned char reserved_[272];
} mdp_broker_options_t;

/* Every duration option (heartbeat interval, interval x liveness, the busy
 * timeouts, request expiry) is at most this many ms (about 49.7 days);
 * mdp_broker_new() refuses more with MDP_EINVAL, so no deadline can wrap. */
#define MDP_BROKER_TIME_MAX_MS ((uint64_t)UINT32_MAX)

/* Counters since creation, and gauges (marked "now"). */
typedef struct {
  uint64_t requests;           /* client requests accepted (MMI included) */
  uint64_t mmi_requests;       /* answered by the broker itself */
  uint64_t dispatched;         /* requests sent to a worker */
  uint64_t partials;           /* PARTIALs forwarded to clients */
  uint64_t replies;            /* FINALs forwarded to clients */
  uint64_t redispatched;       /* requests re-sent after their worker died */
  uint64_t dropped_invalid;    /* malformed messages */
  uint64_t dropped_expired;    /* requests expired in a queue */
  uint64_t dropped_queue_full; /* requests refused by max_queue,
                                  max_queue_per_client, max_queued_total,
                                  max_queued_bytes or max_services */
  uint64_t dropped_unroutable; /* replies for clients that are gone */
  uint64_t dropped_worker_lost;/* requests lost with their worker (after a
                                  PARTIAL, or past max_redispatch) */
  uint64_t dropped_slow_client; /* replies for clients whose pipe is full
                                   (they are not reading) */
  uint64_t dropped_too_large; /* MDP/0.1 replies collected over max_msg_size */
  uint64_t dropped_frames;     /* messages with more than max_frames frames */
  uint64_t workers_refused;    /* READYs refused by max_workers_per_service
                                  or max_services */
  uint64_t disconnects_sent;   /* DISCONNECTs for protocol errors & expiry */
  uint64_t workers_registered; /* READYs accepted */
  uint64_t workers_expired;    /* removed for silence or busy timeout */
  uint64_t workers_unreachable;/* removed because a send found them gone
                                  (connection closed) or not reading */
  uint64_t heartbeats_sent;
  uint64_t curve_accepted;     /* CURVE handshakes let in by the ZAP handler */
  uint64_t curve_refused;      /* ... and refused (unknown key, not CURVE) */
  uint64_t dropped_dialect;    /* messages from a registered worker in
                                  another dialect than its READY's (the
                                  worker is removed, as for an invalid
                                  message; also counted in dropped_invalid) */
  uint64_t mmi_truncated;      /* mmi.services replies cut at
                                  max_mmi_reply_bytes */
  size_t workers;              /* now: registered workers */
  size_t workers_idle;         /* now: idle workers */
  size_t services;             /* now: services known */
  size_t queued;               /* now: requests waiting, all services */
  size_t queued_bytes;         /* now: what they hold, and what is being
                                  collected for MDP/0.1 clients (see
                                  max_queued_bytes) */
  /* Room for figures to come (docs/abi.md): 512 bytes in all. */
  unsigned char reserved_[280];
} mdp_broker_stats_t;

/* Per-service figures (what mmi.workers reports). */
typedef struct {
  size_t workers_idle;
  size_t workers_busy;
  size_t queued;
  /* Room for figures to come (docs/abi.md): 128 bytes in all. */
  unsigned char reserved_[104];
} mdp_broker_service_stats_t;

/* ---- per-service figures and histograms (docs/metrics.md) -------------
 *
 * Durations are measured in whole milliseconds of the loop's cached time
 * (uv_now), so recording one costs no system call: a request answered
 * within the loop iteration that received it measures 0 ms. */

#define MDP_BROKER_HISTOGRAM_BUCKETS 16

/* Upper bounds (inclusive, ms) of the histogram buckets, ascending; a last
 * bucket above them all (+Inf) follows.  Read-only, the library's. */
MDP_EXTERN extern const uint32_t
    mdp_broker_histogram_bounds_ms[MDP_BROKER_HISTOGRAM_BUCKETS];

typedef struct {
  /* Observations per bucket, NOT cumulative: counts[i] holds those in
   * (bounds[i-1], bounds[i]] ms, counts[MDP_BROKER_HISTOGRAM_BUCKETS] those
   * above the last bound. */
  uint64_t counts[MDP_BROKER_HISTOGRAM_BUCKETS + 1];
  uint64_t count;  /* all observations: the sum of counts[] */
  uint64_t sum_ms; /* their sum */
} mdp_broker_histogram_t;

/* The name of the entry that sums the services beyond
 * opts.metrics_max_services (a service of this very name is summed there
 * too). */
#define MDP_BROKER_OTHER_SERVICE "_other"

typedef struct {
  const uint8_t *name;   /* the service name (not NUL-terminated; binary
                            allowed), or MDP_BROKER_OTHER_SERVICE */
  size_t name_size;
  int other;             /* 1 for the entry that sums the rest */
  /* Counters since the broker's creation. */
  uint64_t requests;     /* requests accepted (queued or sent at once);
                            not the refused ones, nor MMI */
  uint64_t replies;      /* FINALs forwarded to clients */
  uint64_t partials;     /* PARTIALs forwarded to clients */
  /* Request accepted -> its FINAL forwarded to the client. */
  mdp_broker_histogram_t request_duration;
  /* Gauges, now (summed over the services of the entry): */
  size_t workers_idle;
  size_t workers_busy;
  size_t queued;
} mdp_broker_service_info_t;

/* Called by mdp_broker_foreach_service() once per entry; `info` and what it
 * points to are valid during the call only.  Return 0 to go on, anything
 * else to stop (that value is then returned). */
typedef int (*mdp_broker_service_cb)(const mdp_broker_service_info_t *info,
                                     void *data);

/* Calls `cb` synchronously, before returning, for each per-service entry:
 * first the named ones (in the order they were created), then the
 * MDP_BROKER_OTHER_SERVICE entry (always, even if it is all zeros).  `cb`
 * must not call other functions of this broker (it may read `info` and
 * copy it).  Cost: O(services known + entries), one allocation.  Returns 0,
 * or the non-zero value `cb` returned to stop (use a positive one to tell
 * it from the errors); or MDP_EINVAL (`cb` NULL), MDP_ECLOSING (the broker
 * is closing) or MDP_ENOMEM, and then `cb` was never called. */
MDP_EXTERN int mdp_broker_foreach_service(const mdp_broker_t *broker,
                               mdp_broker_service_cb cb, void *data);

/* Request accepted -> first sent to a worker, over all services (a request
 * re-dispatched after its worker died is counted once, at its first
 * dispatch).  Copies into `*out`; never fails. */
MDP_EXTERN void mdp_broker_get_queue_wait(const mdp_broker_t *broker,
                               mdp_broker_histogram_t *out);

/* Fills `opts` with the defaults listed above. */
MDP_EXTERN void mdp_broker_options_init(mdp_broker_options_t *opts);

/* Creates a broker on `loop` (opts NULL: defaults).  Returns 0 and sets
 * `*out`, or MDP_EINVAL, MDP_ENOMEM, MDP_EZMQ, MDP_EUV; with CURVE also
 * MDP_ENOTSUP (no CURVE in libzmq), MDP_EADDRINUSE (a ZAP handler is
 * already bound in the context) or a negated errno value (allow-list
 * unreadable).  On failure nothing is left behind.  The options are
 * copied. */
MDP_EXTERN int mdp_broker_new(uv_loop_t *loop, const mdp_broker_options_t *opts,
                   mdp_broker_t **out);

/* Binds the broker's socket to `endpoint` (tcp://, ipc://, inproc://;
 * "tcp://127.0.0.1:*" picks a free port, see mdp_broker_last_endpoint).
 * A tcp:// endpoint names an IPv4 or bracketed IPv6 address
 * (tcp://[::1]:5555, which turns ZMQ_IPV6 on), an interface name (eth0,
 * lo) or * for all; libzmq resolves no host name for a bind, so
 * tcp://localhost:5555 is MDP_EINVAL (the log line says so).  May be called
 * while the loop runs.  Returns 0, MDP_EADDRINUSE, MDP_EINVAL (malformed or
 * unsupported endpoint, or no such address or interface), MDP_ECLOSING or
 * MDP_EZMQ. */
MDP_EXTERN int mdp_broker_bind(mdp_broker_t *broker, const char *endpoint);

/* Copies the last bound endpoint, NUL-terminated, into `buf`.  0, or
 * MDP_ENOBUFS if it does not fit. */
MDP_EXTERN int mdp_broker_last_endpoint(mdp_broker_t *broker, char *buf, size_t size);

/* Starts closing: sends DISCONNECT to every registered worker, drops queued
 * requests, closes the socket and timers, then calls `close_cb` (may be NULL)
 * from the loop and frees the broker.  Safe from the broker's own log
 * callback.  A second call is a no-op. */
MDP_EXTERN void mdp_broker_close(mdp_broker_t *broker, mdp_broker_close_cb close_cb);

/* 1 once mdp_broker_close() was called (the broker still exists until its
 * close callback has run), else 0. */
MDP_EXTERN int mdp_broker_is_closing(const mdp_broker_t *broker);

/* Copies the broker's counters and gauges into `*out` (the caller's).
 * Cheap: no allocation, no ZeroMQ call. */
MDP_EXTERN void mdp_broker_get_stats(const mdp_broker_t *broker, mdp_broker_stats_t *out);

/* Figures for one service.  0, or MDP_EINVAL if the broker knows no such
 * service (then `*out` is zeroed). */
MDP_EXTERN int mdp_broker_get_service_stats(const mdp_broker_t *broker,
                                 const char *service,
                                 mdp_broker_service_stats_t *out);

/* The user's pointer (NULL initially); the library never touches it. */
MDP_EXTERN void mdp_broker_set_data(mdp_broker_t *broker, void *data);
MDP_EXTERN void *mdp_broker_get_data(const mdp_broker_t *broker);

/* The loop the broker was created on. */
MDP_EXTERN uv_loop_t *mdp_broker_loop(const mdp_broker_t *broker);

/* Run-time changes (an operator's reload; mdp-broker does them on SIGHUP).
 * Loop thread only.  What they do not cover (endpoints, heartbeats,
 * expiry, dialects, socket options, the secret key) needs a new broker. */

/* Takes these limits of `opts` from the next message on: max_queue,
 * max_queued_total, max_queue_per_client, max_queued_bytes, max_services,
 * max_workers_per_service, max_frames, max_redispatch,
 * max_mmi_reply_bytes, disconnect_expired.  What the broker holds already
 * stays (a lowered max_queue drops nothing queued).  0, MDP_EINVAL or
 * MDP_ECLOSING. */
MDP_EXTERN int mdp_broker_set_limits(mdp_broker_t *broker,
                                     const mdp_broker_options_t *opts);

/* The most verbose level passed to the log hook from now on. */
MDP_EXTERN void mdp_broker_set_log_level(mdp_broker_t *broker,
                                         mdp_log_level_t level);

/* Reads the CURVE allow-list of `opts` again (curve_allow, and
 * curve_allow_keys/curve_allow_count) and uses it for every handshake from
 * now on; peers already connected keep their connection.  All or nothing:
 * if the list does not load whole, the old one stays and the error is
 * logged.  0; MDP_ENOTSUP if the broker has no CURVE; MDP_EINVAL (a
 * malformed file: the log line names it and the line), MDP_ENOMEM,
 * MDP_ECLOSING or a negated errno value. */
MDP_EXTERN int mdp_broker_reload_curve_allow(mdp_broker_t *broker,
                                             const mdp_broker_options_t *opts);

/* How long the oldest request queued for the service `name` (`size`
 * bytes) has waited, in ms of loop time, into `*age_ms` (0 if none is
 * queued).  Cost: the number of clients with requests queued for it.  0,
 * or MDP_EINVAL if the broker knows no such service. */
MDP_EXTERN int mdp_broker_oldest_queued_ms(const mdp_broker_t *broker,
                                           const void *name, size_t size,
                                           uint64_t *age_ms);

/* ---- access control (an operator's access list; docs/security.md) ---- */

typedef enum {
  MDP_BROKER_ACCESS_REQUEST = 1, /* a client's REQUEST (and mmi.service) */
  MDP_BROKER_ACCESS_SERVE = 2    /* a worker's READY */
} mdp_broker_access_t;

/* Asked for each REQUEST for a service (not mmi.*), each READY, and each
 * mmi.service question, before the broker acts on it.  `user_id` is the
 * peer's ZAP user id (with CURVE: the NAME of its key, see
 * docs/security.md), or NULL on a connection without one.  Return 1 to
 * allow, 0 to deny: a denied REQUEST is dropped and counted, a denied READY
 * gets DISCONNECT, and mmi.service answers "404" for a service the asker
 * may not request.  Runs on the loop, in the message's handling: it must
 * not block, nor call the broker's functions. */
typedef int (*mdp_broker_access_cb)(void *data, mdp_broker_access_t role,
                                    const uint8_t *service,
                                    size_t service_size, const char *user_id);

/* Sets (or, with NULL, removes) the access hook.  Loop thread only. */
MDP_EXTERN void mdp_broker_set_access_cb(mdp_broker_t *broker,
                                         mdp_broker_access_cb cb, void *data);

/* Asks the access hook again about every registered worker (its service,
 * and the user id its READY came with): each one it now denies is sent
 * DISCONNECT and removed, and the request it held, if any, is re-dispatched
 * or dropped as for a worker lost.  For after the hook's answers changed
 * (mdp-broker calls it when a reload changed the access list or the
 * allow-list); requests already accepted are not judged again.  Returns
 * the number of workers removed (each also counted as a READY denied),
 * MDP_ENOMEM or MDP_EINVAL.  Loop thread only; not from the hook. */
MDP_EXTERN int mdp_broker_recheck_access(mdp_broker_t *broker);

/* What the access hook denied so far: REQUESTs dropped, READYs refused
 * (and workers removed by mdp_broker_recheck_access). */
MDP_EXTERN void mdp_broker_get_denied(const mdp_broker_t *broker,
                                      uint64_t *requests, uint64_t *serves);

/* zmq_socket_monitor() on the broker's ROUTER: its events (`events`, a
 * mask of ZMQ_EVENT_*) are published on the inproc:// `endpoint` of the
 * broker's ZeroMQ context, for a ZMQ_PAIR socket of the caller's to read
 * (mdp-broker counts connected peers this way).  NULL stops it.  0,
 * MDP_EINVAL, MDP_ECLOSING or MDP_EZMQ. */
MDP_EXTERN int mdp_broker_monitor(mdp_broker_t *broker, const char *endpoint,
                                  int events);

/* Clients with requests waiting in a queue now, counted once per service
 * they wait for (a ROUTER knows no more of its clients: one that is
 * connected but has nothing queued is not seen). */
MDP_EXTERN size_t mdp_broker_waiting_clients(const mdp_broker_t *broker);

#ifdef __cplusplus
}
#endif
#endif /* MDP_BROKER_H */
