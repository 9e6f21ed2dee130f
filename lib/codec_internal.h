/* The codec's variants for the broker's per-message path (internal): the
 * parser with frame sizes known in advance, the encoder with a service
 * frame given whole. */
#ifndef MDP_CODEC_INTERNAL_H
#define MDP_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "mdp/codec.h"

/* mdp_parse(), reading the size of frame i < `nsizes` from sizes[i]
 * instead of asking libzmq (the broker passes what its reactor recorded
 * from zmq_msg_recv's return: reactor_internal.h).  A size may be capped at
 * INT_MAX; every check the parser makes of a frame's size is exact for
 * that.  sizes NULL (or nsizes 0) is mdp_parse(). */
int mdp__parse_sized(mdp_msg_t *msg, const uint32_t *sizes, size_t nsizes,
                     mdp_role_t role, unsigned dialects_mask, mdp_cmd_t *cmd);

/* mdp_encode(), with the service frame given whole: `service_frame` (NULL:
 * mdp_encode()) holds cmd->service's bytes, and on success it is taken,
 * relocated into the message rather than copied (the broker sends a
 * request's own service frame back with its FINAL), or closed if this
 * command of this dialect carries no service frame.  On error it is still
 * the caller's.  cmd->service and cmd->service_size must still name the
 * service: they are validated as for mdp_encode(). */
int mdp__encode_service(mdp_msg_t *msg, const mdp_cmd_t *cmd,
                        zmq_msg_t *service_frame);

#endif /* MDP_CODEC_INTERNAL_H */
