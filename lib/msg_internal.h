/* mdp_msg_t's layout, for the hot paths of the reactor and the codec
 * (internal).
 *
 * Frames live in one array, inline in the message for the common case of a
 * few frames and on the heap beyond that; `head` is the index of the first
 * frame.  A zmq_msg_t may be relocated by a plain struct copy (that is all
 * zmq_msg_move() does besides re-initialising the source), so frames can be
 * received, built and sent in place: no temporary zmq_msg_t, no move, no
 * extra close per frame.
 */
#ifndef MDP_MSG_INTERNAL_H
#define MDP_MSG_INTERNAL_H

#include <stddef.h>
#include <zmq.h>

#include "mdp/msg.h"

#define MDP_MSG_INLINE_FRAMES 10
#define MDP_MSG_FRONT_ROOM 4 /* free slots kept before the first frame */

struct mdp_msg_s {
  zmq_msg_t *frames; /* inline_frames or a heap array of `cap` */
  size_t head;       /* index of the first frame */
  size_t count;      /* frames in use, from head */
  size_t cap;
  zmq_msg_t inline_frames[MDP_MSG_INLINE_FRAMES];
};

/* Makes room for `front` free slots before the first frame and `back` after
 * the last.  0 or MDP_ENOMEM (then nothing changed).  The check is inline;
 * only moving or growing the array is a call. */
int mdp__msg_grow(mdp_msg_t *msg, size_t front, size_t back);

static inline int mdp_msg_reserve_(mdp_msg_t *msg, size_t front,
                                   size_t back) {
  if (msg->head >= front && msg->cap - msg->head - msg->count >= back)
    return 0;
  return mdp__msg_grow(msg, front, back);
}

/* Frees a message whose frames were all sent: zmq_msg_send() leaves each
 * one an empty message that holds nothing, so they need no close. */
void mdp__msg_free_sent(mdp_msg_t *msg);

static inline zmq_msg_t *mdp__msg_at(mdp_msg_t *msg, size_t index) {
  return &msg->frames[msg->head + index];
}

#endif /* MDP_MSG_INTERNAL_H */
