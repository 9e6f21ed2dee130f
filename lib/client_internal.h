/* Internals of mdp_client_t that tests look at (not installed). */
#ifndef MDP_CLIENT_INTERNAL_H
#define MDP_CLIENT_INTERNAL_H

#include <stdint.h>

#include "mdp/client.h"

/* Bookkeeping steps the client has taken so far: heap comparisons, id-map
 * operations and per-request visits of its timer, dispatch and cancel.
 * Tests use it to check that the work grows as n log n, not n^2, without
 * timing anything. */
uint64_t mdp__client_steps(const mdp_client_t *client);

#endif /* MDP_CLIENT_INTERNAL_H */
