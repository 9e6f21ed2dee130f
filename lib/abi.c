/* The sizes of the public structs that grow, fixed for SONAME 0
 * (docs/abi.md): a new field is taken from the struct's reserved_ bytes,
 * and these checks fail the build if a struct's size moved.  Change a size
 * only with a new SONAME. */
#include <stddef.h>

#include "mdp.h"

#define MDP__FIXED_SIZE(type, bytes)                                           \
  _Static_assert(sizeof(type) == (bytes),                                      \
                 #type " must stay " #bytes " bytes: take new fields from "    \
                 "its reserved_ space (docs/abi.md)")

MDP__FIXED_SIZE(mdp_broker_options_t, 512);
MDP__FIXED_SIZE(mdp_broker_stats_t, 512);
MDP__FIXED_SIZE(mdp_broker_service_stats_t, 128);
MDP__FIXED_SIZE(mdp_reactor_stats_t, 256);
MDP__FIXED_SIZE(mdp_worker_options_t, 512);
MDP__FIXED_SIZE(mdp_worker_stats_t, 512);
MDP__FIXED_SIZE(mdp_client_options_t, 512);
MDP__FIXED_SIZE(mdp_client_stats_t, 512);
MDP__FIXED_SIZE(mdp_client_endpoint_stats_t, 128);
MDP__FIXED_SIZE(mdp_request_options_t, 128);
MDP__FIXED_SIZE(mdp_worker_group_options_t, 640);
MDP__FIXED_SIZE(mdp_worker_group_stats_t, 256);
