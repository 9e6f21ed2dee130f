/* The reactor's internals that the broker's receive path reads (internal).
 *
 * zmq_msg_recv() returns the size of the frame it received, so the reactor
 * records it: the parser then checks each header frame's size without a
 * zmq_msg_size() call per frame (about twenty instructions each, seven
 * header frames per round trip in the broker).
 */
#ifndef MDP_REACTOR_INTERNAL_H
#define MDP_REACTOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mdp/reactor.h"

/* Frames whose sizes are recorded: the identity and every header frame of
 * the largest command (identity, "", header, command, address, "": 6). */
#define MDP__REACTOR_RX_SIZES 8

/* The sizes of the first MDP__REACTOR_RX_SIZES frames of the message the
 * reactor's receive callback is handling, by frame index as received (an
 * entry past the message's last frame means nothing).  Valid only inside
 * the callback, and only until the message's frames are changed.  A frame
 * of INT_MAX bytes or more reads INT_MAX (zmq_msg_recv's cap): exact for
 * every check the parser makes of a header frame. */
const uint32_t *mdp__reactor_rx_sizes(const mdp_reactor_t *reactor);

#endif /* MDP_REACTOR_INTERNAL_H */
