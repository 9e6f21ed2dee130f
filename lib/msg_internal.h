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

#include "mdp/error.h"
#include "mdp/msg.h"

/* 12 inline frames: a received message of up to 10 frames (every
 * dialect's largest command with a body of 2 or 3 frames) and a new one of
 * up to 6 fit without a heap array. */
#define MDP_MSG_INLINE_FRAMES 12
/* Free slots before the first frame of a new message: room for the largest
 * header (HEADER_FRAMES_MAX, 5: "" | header | command | address | "") plus
 * the ROUTER identity, so encoding and addressing a body never moves it. */
#define MDP_MSG_FRONT_ROOM 6
/* ... and of a received one: its own identity and header frames, dropped
 * before the body is passed on, are at least 3 (a client REQUEST: identity,
 * header, command or service), and the largest header plus identity going
 * out is 6, so 2 more slots suffice in front and the rest is for frames. */
#define MDP_MSG_RX_FRONT_ROOM 2

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

/* Makes `msg` (no frame in use: all closed or sent) an empty message whose
 * frames start `front` slots into its inline array. */
static inline void mdp__msg_reset(mdp_msg_t *msg, size_t front) {
  msg->frames = msg->inline_frames;
  msg->head = front;
  msg->count = 0;
  msg->cap = MDP_MSG_INLINE_FRAMES;
}

/* A new, empty message whose frames start `front` slots into the inline
 * array (mdp_msg_new() is front = MDP_MSG_FRONT_ROOM), from the calling
 * thread's cache of freed messages when it has one.  NULL if out of memory.
 * The caller owns it, as with mdp_msg_new(). */
mdp_msg_t *mdp__msg_new_at(size_t front);

/* Frees a message whose frames were all sent: zmq_msg_send() leaves each
 * one an empty message that holds nothing, so they need no close. */
void mdp__msg_free_sent(mdp_msg_t *msg);

static inline zmq_msg_t *mdp__msg_at(mdp_msg_t *msg, size_t index) {
  return &msg->frames[msg->head + index];
}

/* mdp_msg_size, mdp_msg_drop_front and mdp_msg_pop_front, inline for the
 * broker's per-message path; same contracts (msg.h). */
static inline size_t mdp__msg_size(const mdp_msg_t *msg) { return msg->count; }

static inline void mdp__msg_drop_front(mdp_msg_t *msg, size_t n) {
  if (n > msg->count)
    n = msg->count;
  zmq_msg_t *frame = &msg->frames[msg->head];
  for (zmq_msg_t *end = frame + n; frame < end; frame++)
    zmq_msg_close(frame);
  msg->head += n;
  msg->count -= n;
}

static inline int mdp__msg_pop_front(mdp_msg_t *msg, zmq_msg_t *out) {
  if (msg->count == 0) {
    zmq_msg_init(out); /* callers close `out` either way */
    return MDP_EFRAMES;
  }
  /* `out` is uninitialised or closed: relocating the frame is the whole
   * move, and the vacated slot holds nothing to close. */
  *out = msg->frames[msg->head];
  msg->head++;
  msg->count--;
  return 0;
}

#endif /* MDP_MSG_INTERNAL_H */
