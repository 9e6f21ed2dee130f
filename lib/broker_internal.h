/* The broker's internal structures, shared by broker*.c (internal).
 *
 *   service  -- idle workers (LRU list), a retry queue, and a ring of
 *               per-client queues that is served round-robin (fairness);
 *   worker   -- one registered worker; busy while it holds a request;
 *   request  -- one client request, queued or dispatched.
 *
 * Every per-message operation here is O(1): lists are intrusive, lookups go
 * through hash maps, and timeouts through mdp__tlist_t.
 */
#ifndef MDP_BROKER_INTERNAL_H
#define MDP_BROKER_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "list.h"
#include "log_internal.h"
#include "map.h"
#include "mdp.h"
#include "tlist.h"

typedef struct broker_service broker_service_t;
typedef struct broker_worker broker_worker_t;
typedef struct broker_request broker_request_t;
typedef struct broker_client_queue broker_client_queue_t;
typedef struct broker_svc_stats broker_svc_stats_t;

/* Per-service figures (broker_metrics.c), kept for the broker's life: at
 * most opts.metrics_max_services named ones, plus broker.other_stats. */
struct broker_svc_stats {
  broker_svc_stats_t *next; /* creation order */
  uint64_t requests;
  uint64_t replies;
  uint64_t partials;
  mdp_broker_histogram_t duration;
  size_t index;             /* position in the list, from 0 */
  size_t name_size;
  const uint8_t *name;      /* the map key: stored after the struct */
};

struct broker_service {
  mdp__list_t idle_workers;  /* broker_worker_t.idle_link, LRU first */
  size_t n_idle;
  size_t n_busy;
  mdp__list_t retry_queue;   /* broker_request_t.queue_link: re-dispatches */
  mdp__list_t client_ring;   /* broker_client_queue_t.ring_link, round-robin */
  size_t queued;            /* requests in retry_queue and every client queue */
  broker_svc_stats_t *stats; /* its figures: its own or other_stats */
  size_t name_size;
  uint8_t name[];           /* the map key */
};

struct broker_client_queue {
  mdp__list_t ring_link;     /* in service->client_ring */
  mdp__list_t requests;      /* broker_request_t.queue_link, FIFO */
  size_t count;             /* requests in it */
  broker_service_t *service;
  size_t key_size;
  uint8_t key[];            /* service pointer + client identity: map key */
};

struct broker_request {
  mdp__list_t queue_link;    /* in a client queue or the retry queue */
  mdp__tnode_t expiry;       /* in broker.expiry while queued */
  broker_client_queue_t *client_queue; /* NULL unless in a client queue */
  broker_service_t *service;
  zmq_msg_t client;         /* the client's identity frame */
  /* Its bytes, read once when the request is made (the frame stays put
   * until it is sent with the FINAL): the REQUEST's address and the check
   * of the worker's reply need no libzmq call each. */
  const uint8_t *client_id;
  size_t client_id_size;
  /* The REQUEST's service frame, kept (relocated, not copied) for the
   * FINAL, which carries it back: one frame neither closed nor built per
   * request.  Gone once the FINAL took it. */
  zmq_msg_t service_frame;
  int has_service_frame;
  int client_sent;          /* `client` went out with the FINAL: it holds
                               nothing to close */
  mdp_dialect_t client_dialect;
  size_t cost;              /* bytes charged to queued_bytes while queued */
  /* The body, as received, while queued.  Once a worker holds it, what a
   * re-dispatch needs: copies of its frames (by reference count, no body
   * bytes copied) in `kept` if it has at most REQUEST_KEPT_FRAMES, which
   * saves a message per request, else a copy in `body`; neither when
   * max_redispatch is 0. */
  mdp_msg_t *body;
  zmq_msg_t kept[2];
  size_t n_kept;
  unsigned dispatches;      /* times sent to a worker */
  uint64_t accepted_ms;     /* uv_now when accepted: for the histograms */
  int partial_sent;         /* a PARTIAL reached the client: no re-dispatch */
  /* MDP/0.1 clients take exactly one REPLY: the PARTIALs of a 0.2 worker
   * are collected here and sent with the FINAL.  `failed` once the client
   * cannot get the whole reply any more (collected parts over
   * max_msg_size, or a PARTIAL dropped for a client that is not reading):
   * the rest of the reply is swallowed. */
  mdp_msg_t *collected;
  size_t collected_bytes;   /* bytes + per-frame overhead collected so far,
                               charged to stats.queued_bytes until the reply
                               is sent or given up */
  int failed;
};

struct broker_worker {
  mdp__list_t idle_link;     /* in service->idle_workers while idle */
  mdp__tnode_t liveness;     /* broker.liveness: touched on every receive */
  mdp__tnode_t heartbeat;    /* broker.heartbeat: touched on every send */
  mdp__tnode_t busy;         /* broker.busy or broker.silent_busy while it
                               holds a request */
  broker_service_t *service;
  broker_request_t *request; /* NULL when idle */
  mdp_dialect_t dialect;
  const char *user;          /* its READY's ZAP user id (in this block,
                                after id), or NULL: for
                                mdp_broker_recheck_access */
  size_t id_size;
  uint8_t id[];             /* routing identity: the map key */
};

typedef struct {
  uint64_t window;     /* loop time the current second began */
  unsigned lines;      /* logged in it */
  uint64_t suppressed; /* since the last line logged */
} mdp__log_rate_t;

struct mdp_broker_s {
  uv_loop_t *loop;
  mdp_broker_options_t opts;
  unsigned dialects;
  void *data;
  void *socket;
  mdp_reactor_t *reactor;
  struct mdp__zap_s *zap;    /* CURVE's ZAP handler (zap.h), or NULL */
  mdp__map_t services;       /* name -> broker_service_t */
  broker_service_t *last_service; /* the last one looked up (a cache; not
                                     an owner), or NULL */
  mdp__map_t workers;        /* identity -> broker_worker_t */
  mdp__map_t client_queues;  /* service ptr + identity -> client queue */
  mdp__tlist_t liveness;     /* workers by last message received */
  mdp__tlist_t heartbeat;    /* workers by last message sent */
  mdp__tlist_t busy;         /* busy workers judged by heartbeats, by
                               dispatch time (busy_timeout_ms) */
  mdp__tlist_t silent_busy;  /* busy workers exempt from the silence rule
                               (silent_busy_timeout_ms) */
  mdp__tlist_t expiry;       /* queued requests by enqueue time */
  mdp_broker_stats_t stats;
  /* Per-service figures (broker_metrics.c). */
  mdp__map_t svc_stats;      /* name -> broker_svc_stats_t */
  broker_svc_stats_t *svc_stats_head, **svc_stats_tail;
  size_t n_svc_stats;
  broker_svc_stats_t other_stats;
  mdp_broker_histogram_t queue_wait;
  int closing;
  int trim_armed;           /* a flood filled the queues: trim when empty */
  uv_timer_t trim_timer;    /* runs malloc_trim outside message handling */
  uint64_t trims;           /* times it ran (tests) */
  uint64_t protocol_errors; /* for sampling their log lines */
  /* Per-peer life-cycle lines, rate-bounded (mdp__broker_log_rate): a
   * peer cycling READY/DISCONNECT must not flood the log. */
  mdp__log_rate_t log_ready, log_leaves, log_lost;
  broker_request_t *free_requests; /* recycled request structs */
  size_t n_free_requests;           /* queues were long: give memory back when empty */
  broker_client_queue_t *free_queues; /* recycled client queues (all of
                                         the largest key size) */
  size_t n_free_queues;
  int pending_closes;       /* handles still closing */
  mdp_broker_close_cb close_cb;
  char last_endpoint[256];
  /* The access hook (broker_ops.c), or NULL; what it denied. */
  mdp_broker_access_cb access_cb;
  void *access_data;
  uint64_t denied_requests, denied_serves;
};

/* 1 if the access hook lets the sender of the message whose identity
 * frame is `id` act as `role` on `service` (always 1 without a hook);
 * else 0, the denial counted and (sampled) logged when `count`. */
int mdp__broker_access(mdp_broker_t *b, const zmq_msg_t *id,
                       mdp_broker_access_t role, const uint8_t *service,
                       size_t service_size, int count);

#define BROKER_LOG(b, level, ...)                                              \
  mdp__log_emit((b)->opts.log_cb, (b)->opts.log_data, (b)->opts.log_level,      \
               (level), NULL, __VA_ARGS__)
/* The same with log fields (an mdp_log_field_t array). */
#define BROKER_LOG_FIELDS(b, level, fields, ...)                               \
  mdp__log_emit_fields((b)->opts.log_cb, (b)->opts.log_data,                   \
                       (b)->opts.log_level, (level), (fields),                 \
                       sizeof(fields) / sizeof((fields)[0]), __VA_ARGS__)
/* Lines of one kind of per-peer event the broker logs in a second; past
 * that they are counted, and the next line logged says how many were
 * suppressed. */
#define MDP__BROKER_LOG_LINES_PER_S 20

/* 1 if a line of the kind `rate` counts may be logged now (the caller
 * checked the log level first), with `*suppressed` set to the lines of the
 * kind suppressed since the last one logged; 0 (counted) if over the
 * rate. */
int mdp__broker_log_rate(mdp_broker_t *b, mdp__log_rate_t *rate,
                         uint64_t *suppressed);

/* " (N similar lines suppressed)" in `buf`, or "" for 0. */
const char *mdp__broker_suppressed_text(uint64_t n, char *buf, size_t size);

/* 1 for the counts of a repeated event worth a log line: 1, 1000, 2000 ... */
static inline int mdp__broker_log_sampled(uint64_t count) {
  return count == 1 || count % 1000 == 0;
}
/* Room for the printable form of a service name (255 bytes, or hex). */
#define MDP__BROKER_NAME_TEXT 512
/* Printable form of an identity or service name, for logs: hex if binary.
 * Returns `buf`. */
const char *mdp__broker_printable(const void *data, size_t size, char *buf,
                             size_t buf_size);

/* 1 if `w`, busy now, may be silent until it replies: its dialect is one
 * of opts.silent_busy_dialects.  Such a worker is out of the liveness list
 * while it holds a request. */
static inline int mdp__broker_silent_while_busy(const mdp_broker_t *b,
                                           const broker_worker_t *w) {
  return (b->opts.silent_busy_dialects & (unsigned)w->dialect) != 0;
}

/* broker_queue.c: services, request records, queues and dispatch */
/* create: 0 = look up only, MDP__BROKER_CREATE_FOR_WORKER, or
 * MDP__BROKER_CREATE_FOR_CLIENT (may use only half of max_services). */
enum { MDP__BROKER_CREATE_FOR_WORKER = 1, MDP__BROKER_CREATE_FOR_CLIENT = 2 };
broker_service_t *mdp__broker_service_get(mdp_broker_t *b, const void *name,
                                          size_t size, int create);
void mdp__broker_service_maybe_free(mdp_broker_t *b, broker_service_t *s);
/* Queues a new request.  On success (0) it takes `body`, the identity
 * frame `client` and the REQUEST's service frame `service_frame`, which
 * then hold nothing: the caller neither closes nor uses them. */
int mdp__broker_request_submit(mdp_broker_t *b, broker_service_t *s,
                               zmq_msg_t *client, size_t client_size,
                               zmq_msg_t *service_frame, mdp_dialect_t dialect,
                               mdp_msg_t *body);
/* Makes r->body whole again from the frames kept while a worker held the
 * request (before a re-dispatch).  0 (also if r->body is there already),
 * MDP_EINVAL if nothing was kept (max_redispatch 0, or the copy failed),
 * MDP_ENOMEM. */
int mdp__broker_request_restore(broker_request_t *r);
/* Releases `r` and what it holds; the struct is kept for reuse (at most
 * REQUEST_CACHE) unless the broker is closing. */
void mdp__broker_request_free(mdp_broker_t *b, broker_request_t *r);
/* Frees a client queue no list or map holds any more, or keeps it for
 * reuse (at most CLIENT_QUEUE_CACHE) unless the broker is closing. */
void mdp__broker_client_queue_release(mdp_broker_t *b,
                                      broker_client_queue_t *cq);
/* Frees the recycled request structs and client queues (broker close). */
void mdp__broker_request_cache_free(mdp_broker_t *b);
/* Puts a request that must be served next at the front of its service's
 * retry queue. */
void mdp__broker_requeue_front(mdp_broker_t *b, broker_request_t *r);
/* Hands queued requests to idle workers while both exist. */
void mdp__broker_dispatch(mdp_broker_t *b, broker_service_t *s);
/* The request-expiry timeout list's callback. */
void mdp__broker_expire_request(mdp__tlist_t *list, mdp__tnode_t *node);

/* broker_workers.c: registration, idleness, removal, the workers' timers */
/* READY from `id` (w: the registered worker of that identity, or NULL). */
void mdp__broker_on_ready(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                          const mdp_cmd_t *cmd);
/* A worker became idle (READY or FINAL). */
void mdp__broker_worker_idle(mdp_broker_t *b, broker_worker_t *w);
/* Takes an idle worker out of its service's idle list. */
void mdp__broker_worker_unidle(mdp_broker_t *b, broker_worker_t *w);
/* Forgets `w` (DISCONNECT first if `disconnect`); returns its request if it
 * held one, not yet re-queued. */
broker_request_t *mdp__broker_worker_detach(mdp_broker_t *b,
                                            broker_worker_t *w,
                                            int disconnect, const char *why);
/* A worker is gone: forget it and re-dispatch or drop its request.  If
 * `disconnect`, tell it with DISCONNECT first. */
void mdp__broker_worker_remove(mdp_broker_t *b, broker_worker_t *w,
                               int disconnect, const char *why);
/* The timeout lists' callbacks: silence, a heartbeat due, a busy bound. */
void mdp__broker_on_worker_silent(mdp__tlist_t *list, mdp__tnode_t *node);
void mdp__broker_on_heartbeat_due(mdp__tlist_t *list, mdp__tnode_t *node);
void mdp__broker_on_busy_timeout(mdp__tlist_t *list, mdp__tnode_t *node);

/* broker_reply.c: PARTIAL/FINAL from a worker */
void mdp__broker_on_reply(mdp_broker_t *b, zmq_msg_t *id, broker_worker_t *w,
                          const mdp_cmd_t *cmd, mdp_msg_t *msg);
/* Frees what was collected for an MDP/0.1 client and gives its bytes back
 * to queued_bytes. */
void mdp__broker_collected_release(mdp_broker_t *b, broker_request_t *r);

/* broker_send.c */
/* Sends a worker command (header built here) to `w`, taking `body` (may be
 * NULL for HEARTBEAT/DISCONNECT); a REQUEST carries the client address
 * `client` of `client_size` bytes (else NULL, 0).  0, or an error with
 * `body` still the caller's; MDP_EHOSTUNREACH means the worker is gone. */
int mdp__broker_send_worker(mdp_broker_t *b, broker_worker_t *w,
                            mdp_command_t command, const void *client,
                            size_t client_size, mdp_msg_t *body);
/* Sends a client command to the identity in `client`, taking `body` (and
 * `service_frame`, unless NULL: the request's own service frame, sent
 * instead of a copy of `service`) either way: failures are counted, the
 * body destroyed, and the error returned (MDP_ENOBUFS: the client is not
 * reading).  With `move`, the identity frame itself goes into the
 * message: if it was sent (0), it was taken, and `client` holds nothing to
 * close or use (a FINAL, after which the request is freed); on error it is
 * still the caller's.  Without `move`, it is copied and stays the
 * caller's. */
int mdp__broker_send_client(mdp_broker_t *b, zmq_msg_t *client, int move,
                            mdp_dialect_t dialect, mdp_command_t command,
                            const uint8_t *service, size_t service_size,
                            zmq_msg_t *service_frame, mdp_msg_t *body);
/* DISCONNECT to a peer that is not a registered worker. */
void mdp__broker_send_disconnect(mdp_broker_t *b, const zmq_msg_t *id,
                                 mdp_dialect_t dialect);
/* The reactor's send-failure callback (from the loop). */
void mdp__broker_on_send_failed(mdp_reactor_t *reactor, mdp_msg_t *msg,
                                int err);

/* broker_recv.c */
/* One message as the ROUTER delivers it, [identity | frames...] (taken).
 * Also the fuzz target's entry point. */
void mdp__broker_handle(mdp_broker_t *b, mdp_msg_t *msg);
/* The same, with the sizes of the first `nsizes` frames as received
 * (identity first) known: mdp__parse_sized. */
void mdp__broker_handle_sized(mdp_broker_t *b, mdp_msg_t *msg,
                              const uint32_t *sizes, size_t nsizes);
/* The reactor's receive callback. */
void mdp__broker_on_message(mdp_reactor_t *reactor, mdp_msg_t *msg);
/* A valid but unexpected command: DISCONNECT to the sender (RFC 18), and a
 * registered worker `w` is removed. */
void mdp__broker_protocol_error(mdp_broker_t *b, const zmq_msg_t *id,
                                broker_worker_t *w, mdp_dialect_t dialect,
                                const char *why);

/* broker.c */
/* Hands freed memory back to the system soon, from a timer. */
void mdp__broker_trim_soon(mdp_broker_t *b);

/* broker_metrics.c */
void mdp__broker_metrics_init(mdp_broker_t *b);
void mdp__broker_metrics_free(mdp_broker_t *b);
/* The figures for service `s`: its own entry if it has or may get one
 * (`for_worker`: a READY, which may create it), else other_stats.  O(1). */
broker_svc_stats_t *mdp__broker_svc_stats_for(mdp_broker_t *b,
                                         const broker_service_t *s,
                                         int for_worker);
/* Records `ms` in `h`: O(buckets), no allocation. */
static inline void mdp__broker_histogram_add(mdp_broker_histogram_t *h,
                                        uint64_t ms) {
  size_t i = 0;
  while (i < MDP_BROKER_HISTOGRAM_BUCKETS &&
         ms > mdp_broker_histogram_bounds_ms[i])
    i++;
  h->counts[i]++;
  h->count++;
  h->sum_ms += ms;
}

/* broker_mmi.c */
/* Answers an MMI request (takes `body`).  1 if the reply went and took the
 * identity frame `client` with it (the caller must not close it), else 0. */
int mdp__broker_mmi(mdp_broker_t *b, zmq_msg_t *client, mdp_dialect_t dialect,
                    const uint8_t *service, size_t service_size,
                    mdp_msg_t *body);

#endif /* MDP_BROKER_INTERNAL_H */
