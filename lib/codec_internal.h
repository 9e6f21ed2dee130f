/* The parser with frame sizes known in advance (internal). */
#ifndef MDP_CODEC_INTERNAL_H
#define MDP_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mdp/codec.h"

/* mdp_parse(), reading the size of frame i < `nsizes` from sizes[i]
 * instead of asking libzmq (the broker passes what its reactor recorded
 * from zmq_msg_recv's return: reactor_internal.h).  A size may be capped at
 * INT_MAX; every check the parser makes of a frame's size is exact for
 * that.  sizes NULL (or nsizes 0) is mdp_parse(). */
int mdp__parse_sized(mdp_msg_t *msg, const uint32_t *sizes, size_t nsizes,
                     mdp_role_t role, unsigned dialects_mask, mdp_cmd_t *cmd);

#endif /* MDP_CODEC_INTERNAL_H */
