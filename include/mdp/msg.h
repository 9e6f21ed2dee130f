/* libmdp: mdp_msg_t, a multipart message (an ordered list of ZeroMQ frames).
 *
 * A message body in MDP is one or more frames; a whole wire message is also a
 * list of frames.  mdp_msg_t holds both.  Frames are zmq_msg_t values and are
 * moved in and out, never copied, unless a function says it copies.
 *
 * Ownership rule (the same everywhere in libmdp, after nng):
 *   - A message passed to a function that "takes" it belongs to the library
 *     if the call succeeds (returns >= 0) and is still the caller's if it
 *     fails.  The caller must not touch a taken message again.
 *   - A message handed to a callback belongs to the callback, which must
 *     mdp_msg_destroy() it or pass it on.
 *
 * Prepending and removing frames at the front are O(1) amortised, so headers
 * and envelopes can be added to a body and stripped from a wire message
 * without moving the body's frames.
 *
 * An mdp_msg_t is not thread-safe; it may be moved between threads only as a
 * whole, with proper synchronisation.
 */
#ifndef MDP_MSG_H
#define MDP_MSG_H

#include "mdp/export.h"

#include <stddef.h>
#include <zmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdp_msg_s mdp_msg_t;

/* A new, empty message, or NULL if out of memory.  The caller owns it. */
MDP_EXTERN mdp_msg_t *mdp_msg_new(void);

/* Closes every frame and frees the message.  NULL is allowed. */
MDP_EXTERN void mdp_msg_destroy(mdp_msg_t *msg);

/* The number of frames. */
MDP_EXTERN size_t mdp_msg_size(const mdp_msg_t *msg);

/* The frame at `index` (0 is the first), or NULL if out of range.  The frame
 * stays owned by the message; the pointer is valid until the message is
 * changed or destroyed. */
MDP_EXTERN zmq_msg_t *mdp_msg_frame(mdp_msg_t *msg, size_t index);

/* The bytes and length of frame `index`; NULL and 0 when out of range. */
MDP_EXTERN const void *mdp_msg_data(mdp_msg_t *msg, size_t index);
MDP_EXTERN size_t mdp_msg_frame_size(mdp_msg_t *msg, size_t index);

/* Appends / prepends `frame` by moving it: on success `frame` is left as an
 * empty, initialised zmq_msg_t that the caller still closes (as after
 * zmq_msg_move).  0 or MDP_ENOMEM (then nothing changed). */
MDP_EXTERN int mdp_msg_append(mdp_msg_t *msg, zmq_msg_t *frame);
MDP_EXTERN int mdp_msg_prepend(mdp_msg_t *msg, zmq_msg_t *frame);

/* Appends / prepends a frame holding a copy of `size` bytes at `data`
 * (`data` may be NULL when `size` is 0).  0 or MDP_ENOMEM. */
MDP_EXTERN int mdp_msg_append_mem(mdp_msg_t *msg, const void *data, size_t size);
MDP_EXTERN int mdp_msg_prepend_mem(mdp_msg_t *msg, const void *data, size_t size);

/* Appends a frame holding the bytes of the NUL-terminated `str` (without the
 * NUL).  0 or MDP_ENOMEM. */
MDP_EXTERN int mdp_msg_append_str(mdp_msg_t *msg, const char *str);

/* Moves the first frame into `out` (which must be uninitialised or closed;
 * it is initialised by this call and the caller must zmq_msg_close it).
 * 0, or MDP_EFRAMES if the message has no frame. */
MDP_EXTERN int mdp_msg_pop_front(mdp_msg_t *msg, zmq_msg_t *out);

/* Closes and removes the first `n` frames (all of them if n >= size). */
MDP_EXTERN void mdp_msg_drop_front(mdp_msg_t *msg, size_t n);

/* Moves every frame of `src` to the end of `dst`; `src` is left empty (not
 * destroyed).  0 or MDP_ENOMEM (then nothing moved). */
MDP_EXTERN int mdp_msg_append_msg(mdp_msg_t *dst, mdp_msg_t *src);

/* A new message whose frames are copies of `msg`'s frames (zmq_msg_copy:
 * large frames share their buffer by reference count, nothing is memcpy'd).
 * NULL if out of memory. */
MDP_EXTERN mdp_msg_t *mdp_msg_dup(mdp_msg_t *msg);

/* The total number of body bytes over all frames. */
MDP_EXTERN size_t mdp_msg_bytes(const mdp_msg_t *msg);

/* 1 if frame `index` exists and equals the `size` bytes at `data`, else 0. */
MDP_EXTERN int mdp_msg_frame_eq(mdp_msg_t *msg, size_t index, const void *data,
                     size_t size);

#ifdef __cplusplus
}
#endif
#endif /* MDP_MSG_H */
