/* libmdp: the shared ZeroMQ context.
 *
 * Objects created without an explicit `zmq_context` option share one
 * process-wide context, created on first use.  inproc:// endpoints only
 * connect sockets of the same context.
 */
#ifndef MDP_CONTEXT_H
#define MDP_CONTEXT_H

#include "mdp/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shared context, created on the first call (thread-safe).  NULL only if
 * ZeroMQ could not create one.  Owned by libmdp. */
MDP_EXTERN void *mdp_zmq_context(void);

/* Terminates the shared context, if it was created.  Call it once, at the
 * end of the program, after every libmdp object has been closed (all of
 * libmdp's sockets use linger 0, so this does not wait).  A later
 * mdp_zmq_context() creates a new one. */
MDP_EXTERN void mdp_zmq_context_term(void);

#ifdef __cplusplus
}
#endif
#endif /* MDP_CONTEXT_H */
