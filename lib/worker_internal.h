/* Internals of mdp_worker_t that the worker group uses (not installed). */
#ifndef MDP_WORKER_INTERNAL_H
#define MDP_WORKER_INTERNAL_H

#include "mdp/worker.h"

/* The worker's memory is its owner's to free: after its close callback the
 * worker is closed (every handle, every socket) but not freed, so request
 * handles an application still holds stay safe to use (they are stale:
 * replies return MDP_ESTATE) until the owner calls mdp__worker_free().  The
 * close callback may call it.  Call before mdp_worker_close(). */
void mdp__worker_set_owned(mdp_worker_t *worker);
void mdp__worker_free(mdp_worker_t *worker);

/* While held, a worker whose connection was lost does not reconnect (its
 * back-off ends without a connection); releasing it connects at once if a
 * reconnect came due meanwhile.  A worker group holds a slot whose request
 * was abandoned unanswered, so that the slot does not take a second
 * request while the application still works on the first. */
void mdp__worker_hold(mdp_worker_t *worker, int hold);

#endif /* MDP_WORKER_INTERNAL_H */
