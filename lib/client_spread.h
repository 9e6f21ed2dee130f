/* A client's broker endpoints and how requests choose among them
 * (internal to mdp_client_t).
 *
 * Each endpoint is live, avoided (a request timed out on it: put aside
 * until its back-off ends) or probing (its back-off ended and an MMI probe
 * is out; it stays aside until the broker answers).  New requests pick
 * among the live endpoints, as the client's mdp_spread_t says; when none
 * is live, among all of them, since a guess beats a stall.  A retry never
 * picks the endpoint on which its last attempt timed out (unless it is the
 * only one).  This file keeps only the state and the choice; the sockets
 * and the probes themselves are lib/client.c's.
 */
#ifndef MDP_CLIENT_SPREAD_H
#define MDP_CLIENT_SPREAD_H

#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "mdp/client.h"
#include "mdp/codec.h"

enum { MDP__EP_LIVE, MDP__EP_AVOIDED, MDP__EP_PROBING };

/* No endpoint to leave out. */
#define MDP__EP_NONE SIZE_MAX

typedef struct {
  char *url;                /* owned */
  mdp__list_t idle;         /* the client's idle sockets to it */
  int state;
  uint64_t until;           /* loop time: AVOIDED, end of the back-off;
                               PROBING, the probe's deadline */
  uint64_t backoff;         /* the back-off in force; 0 after a reply */
  void *probe;              /* the probe's socket while PROBING */
  size_t sockets;           /* the client's open sockets to it (not
                               discarded ones), the probe's included */
  /* The service of the request that timed out: the probe asks the broker
   * about it (mmi.service), so its answer also says whether it is served. */
  size_t probe_service_size;
  uint8_t probe_service[MDP_SERVICE_MAX];
  mdp_client_endpoint_stats_t stats; /* sent, finals, timeouts,
                                        outstanding; live is `state` */
} mdp__client_endpoint_t;

typedef struct {
  mdp__client_endpoint_t *eps; /* owned, n of them */
  size_t n;
  size_t live;                 /* endpoints in MDP__EP_LIVE */
  size_t cursor;               /* where "in turn" starts next */
  mdp_spread_t policy;
  uint64_t backoff_ms;         /* 0: never avoid an endpoint */
  uint64_t backoff_max_ms;
} mdp__spread_t;

/* Sets up `s` for copies of the `n` urls (all in MDP__EP_LIVE).  0, or
 * MDP_ENOMEM with nothing left allocated. */
int mdp__spread_init(mdp__spread_t *s, const char *const *urls, size_t n,
                     mdp_spread_t policy, uint64_t backoff_ms,
                     uint64_t backoff_max_ms);

/* Frees what mdp__spread_init allocated (not the sockets in the lists). */
void mdp__spread_free(mdp__spread_t *s);

/* 1 if endpoint `i` may take a request that must avoid `exclude`
 * (MDP__EP_NONE: none): it is not `exclude` (unless it is the only
 * endpoint), and it is live, or no endpoint but `exclude` is. */
int mdp__spread_acceptable(const mdp__spread_t *s, size_t i, size_t exclude);

/* The endpoint the policy picks among the acceptable ones, or, if `only`
 * is not NULL, among those of them with only[i] set (MDP__EP_NONE if there
 * is none).  Changes nothing: call mdp__spread_sent() once the request
 * went. */
size_t mdp__spread_pick(const mdp__spread_t *s, size_t exclude,
                        const unsigned char *only);

/* A request was sent to endpoint `i`: counts it outstanding there, and
 * "in turn" goes on after `i`. */
void mdp__spread_sent(mdp__spread_t *s, size_t i);

/* A request sent to `i` is no longer outstanding (answered, timed out,
 * cancelled). */
void mdp__spread_unsent(mdp__spread_t *s, size_t i);

/* A request timed out on `i` at loop time `now`.  A live endpoint is put
 * aside for its back-off (backoff_ms after a reply, else doubled, at most
 * backoff_max_ms); one already aside stays as it is (the requests that
 * were out on it when it was put aside time out one by one, and count
 * once).  Returns 1 if it was put aside now. */
int mdp__spread_failed(mdp__spread_t *s, size_t i, uint64_t now);

/* The probe of `i` went unanswered: aside again, back-off doubled. */
void mdp__spread_probe_failed(mdp__spread_t *s, size_t i, uint64_t now);

/* The probe of `i` is out, due by `deadline`. */
void mdp__spread_probing(mdp__spread_t *s, size_t i, uint64_t deadline);

/* The broker at `i` answered (a probe or a request): live again, back-off
 * reset. */
void mdp__spread_answered(mdp__spread_t *s, size_t i);

/* Ends the back-off of `i` without a probe: live again, the back-off kept
 * (it doubles if the broker fails again before it answers). */
void mdp__spread_return(mdp__spread_t *s, size_t i);

/* The earliest loop time at which an endpoint's back-off or probe ends, or
 * 0 if every endpoint is live. */
uint64_t mdp__spread_due(const mdp__spread_t *s);

#endif /* MDP_CLIENT_SPREAD_H */
