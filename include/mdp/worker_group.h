/* libmdp: mdp_worker_group_t, one service served through several brokers
 * (a live-live broker farm) with a concurrency limit.
 *
 * A group owns C slots; each slot is a real MDP worker connection (an
 * mdp_worker_t, one request at a time, the protocol's rule), so no more
 * than C requests are ever in progress at the brokers: the protocol gives
 * exact credit, nothing is counted on the side.  The slots are spread
 * round-robin over the N broker endpoints.  A broker is judged lost when
 * none of its slots heard from it (a HEARTBEAT or a REQUEST, read from the
 * workers' stats) for `lost_after_ms`, or at once when a slot's worker
 * gives its connection up for silence (MDP_WORKER_BROKER_LOST with
 * MDP_ETIMEDOUT) and no other slot there still hears it; its slots are
 * then moved to the live
 * brokers (a slot's worker is closed and, once it is closed, a new one is
 * made on the live broker with the fewest slots).  A broker without slots
 * is probed with an MMI request (mmi.service) every check interval; when it
 * answers it is live again and the slots are rebalanced, at most one move
 * per check interval (bounded churn).  docs/farm.md describes farms.
 *
 * Requests: one callback for the whole group receives each REQUEST with a
 * request handle of the slot's worker; answer it with mdp_worker_partial()
 * and mdp_worker_final(), now or later, exactly as for a single worker.  A
 * slot is only ever moved while it has no unanswered request (every
 * request it passed on has had its FINAL sent), so a handle stays valid as
 * long as it is unanswered and the group exists (until the group's close
 * callback: the slots' workers are freed with the group).  A request
 * abandoned because its connection was lost still counts against C (the
 * application may still be working on it): its slot stays where it is and
 * its worker does not connect again (so it takes no other request) until
 * the application sends its FINAL anyway (refused with MDP_ESTATE: counted
 * in the worker's late_finals) or the group is closed; within a check
 * interval after that FINAL the slot reconnects, or moves like any other.
 *
 * opts.worker.event_cb, if set, is called for every slot's worker (after
 * the group has looked at the event itself).
 *
 * The group uses its workers' data pointers (mdp_worker_set_data) for
 * itself: use mdp_worker_group_set_data() instead.
 *
 * Threading: a group belongs to the thread that runs its loop; call its
 * functions only from that thread (callbacks of the same loop included).
 *
 * Life cycle: mdp_worker_group_options_init() -> mdp_worker_group_new() ->
 * ... -> mdp_worker_group_close(cb).  The group is freed after its close
 * callback returns.
 */
#ifndef MDP_WORKER_GROUP_H
#define MDP_WORKER_GROUP_H

#include "mdp/export.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mdp/msg.h"
#include "mdp/worker.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdp_worker_group_s mdp_worker_group_t;

/* Bounds of the group's sizes. */
#define MDP_WORKER_GROUP_MAX_BROKERS 256u
#define MDP_WORKER_GROUP_MAX_CONCURRENCY 4096u

/* A REQUEST arrived on one of the group's slots.  `req` is the handle (a
 * value: keep it to answer later; req.worker is the slot's worker); `body`
 * (one or more frames) belongs to the callback.  Answer with
 * mdp_worker_partial(req, ...) and mdp_worker_final(req, ...).  The
 * callback may reply, close the group, or do neither yet. */
typedef void (*mdp_worker_group_request_cb)(mdp_worker_group_t *group,
                                            mdp_request_t req,
                                            mdp_msg_t *body);

/* The group is closed; do not use `group`, its workers or any request
 * handle after this callback returns. */
typedef void (*mdp_worker_group_close_cb)(mdp_worker_group_t *group);

typedef struct {
  /* Options of every slot's worker (mdp_worker_options_init()'s defaults):
   * heartbeats, reconnection, dialect, CURVE keys, log, limits.  The MMI
   * probes use the same context, dialect, CURVE keys and log. */
  mdp_worker_options_t worker;
  /* C, the number of slots: requests in progress at once, all brokers
   * together.  0 (the default): one per broker (n).  At most
   * MDP_WORKER_GROUP_MAX_CONCURRENCY. */
  size_t concurrency;
  /* How often the slots are looked at, lost brokers probed and one slot
   * rebalanced; 0 (the default): the workers' heartbeat interval.
   * Otherwise 1..MDP_WORKER_TIME_MAX_MS. */
  uint64_t check_interval_ms;
  /* A broker none of whose slots heard from it for this long is lost; it
   * is also the MMI probes' timeout.  0 (the default): the workers'
   * liveness x heartbeat interval (when the workers themselves give up and
   * reconnect).  Otherwise 1..MDP_WORKER_TIME_MAX_MS. */
  uint64_t lost_after_ms;
  /* Room for options to come (docs/abi.md): 640 bytes in all. */
  unsigned char reserved_[104];
} mdp_worker_group_options_t;

/* Counters since creation, and gauges (marked "now"). */
typedef struct {
  uint64_t requests;      /* REQUESTs passed to the callback */
  uint64_t moves;         /* slots moved to another broker (loss or
                             rebalancing) */
  uint64_t brokers_lost;  /* times a broker was judged lost */
  uint64_t brokers_back;  /* times a lost broker answered again */
  uint64_t probes;        /* MMI probes sent */
  size_t slots;           /* now: C */
  size_t busy;            /* now: slots with an unanswered request */
  size_t max_busy;        /* most slots with an unanswered request at once
                             (never more than C) */
  size_t brokers_alive;   /* now: brokers judged live */
  /* Room for figures to come (docs/abi.md): 256 bytes in all. */
  unsigned char reserved_[184];
} mdp_worker_group_stats_t;

/* One broker of the group, by index (the order of `endpoints`). */
typedef struct {
  const char *endpoint;   /* the group's copy */
  int alive;              /* now: judged live */
  size_t slots;           /* now: slots assigned to it (moving ones to
                             their new broker) */
  uint64_t requests;      /* REQUESTs received through it */
} mdp_worker_group_broker_t;

/* Fills `opts` with the defaults listed above. */
MDP_EXTERN void mdp_worker_group_options_init(mdp_worker_group_options_t *opts);

/* Creates a group on `loop` serving `service` (1..255 bytes, not "mmi.*")
 * through the `n` broker `endpoints` (1..MDP_WORKER_GROUP_MAX_BROKERS;
 * copied), calling `request_cb` for each REQUEST.  `opts` NULL: defaults;
 * copied.  Every slot's worker is created now (slot i on endpoint i mod
 * n), all brokers presumed live.  Returns 0 and sets `*out`, or MDP_EINVAL
 * (NULL arguments, n out of range, a concurrency or time out of range, or
 * any of mdp_worker_new()'s reasons), MDP_ESERVICE, MDP_ENOTSUP,
 * MDP_ENOMEM, MDP_EZMQ, MDP_EUV.  On failure no callback is made, and the
 * workers already made are closed as the loop runs (run it, as after any
 * close, before uv_loop_close()). */
MDP_EXTERN int mdp_worker_group_new(uv_loop_t *loop,
                                    const char *const *endpoints, size_t n,
                                    const char *service,
                                    mdp_worker_group_request_cb request_cb,
                                    const mdp_worker_group_options_t *opts,
                                    mdp_worker_group_t **out);

/* Starts closing every slot's worker with `wait_for_request` (as
 * mdp_worker_close(): non-zero lets the requests in progress get their
 * FINAL first, as long as their broker is there) and the probes; then
 * `close_cb` (may be NULL) is called from the loop and the group is freed:
 * after that, neither the group, its workers nor any request handle may be
 * used.  No request callback is made after this call.  Safe from the
 * group's own request callback.  A second call is a no-op. */
MDP_EXTERN void mdp_worker_group_close(mdp_worker_group_t *group,
                                       int wait_for_request,
                                       mdp_worker_group_close_cb close_cb);

/* Copies the group's counters and gauges into `*out` (the caller's). */
MDP_EXTERN void mdp_worker_group_get_stats(const mdp_worker_group_t *group,
                                           mdp_worker_group_stats_t *out);

/* Fills `*out` for broker `index` (0..n-1).  0, or MDP_EINVAL for an index
 * out of range (then `*out` is zeroed). */
MDP_EXTERN int mdp_worker_group_get_broker(const mdp_worker_group_t *group,
                                           size_t index,
                                           mdp_worker_group_broker_t *out);

/* The user's pointer (NULL initially); the library never touches it. */
MDP_EXTERN void mdp_worker_group_set_data(mdp_worker_group_t *group, void *data);
MDP_EXTERN void *mdp_worker_group_get_data(const mdp_worker_group_t *group);

/* The loop the group was created on. */
MDP_EXTERN uv_loop_t *mdp_worker_group_loop(const mdp_worker_group_t *group);

#ifdef __cplusplus
}
#endif
#endif /* MDP_WORKER_GROUP_H */
