/* libmdp: the reactor, a ZeroMQ socket on a libuv loop.
 *
 * An mdp_reactor_t watches one ZeroMQ socket's ZMQ_FD with a uv_poll_t and
 * delivers whole multipart messages to a callback, and sends messages without
 * ever blocking.  Every MDP object (broker, worker, client) is built on it.
 * docs/reactor.md explains the rules it follows and why:
 *   - ZMQ_FD is edge-triggered and only hints that ZMQ_EVENTS may have
 *     changed; the reactor receives until EAGAIN and re-reads ZMQ_EVENTS
 *     after the sends and receives it does, so no wake-up is lost;
 *   - at most `batch` messages are handled per wake-up, so a busy socket
 *     cannot starve timers or other sockets; the rest is resumed on the next
 *     loop iteration (a uv_idle_t) without waiting for a new edge;
 *   - a send that finds the socket full (EAGAIN) is held, in order, until the
 *     socket is writable again;
 *   - close goes through the libuv close-callback life cycle.
 *
 * Threading: a reactor belongs to the thread that runs its loop.  Call its
 * functions only from that thread (callbacks of the same loop included).
 */
#ifndef MDP_REACTOR_H
#define MDP_REACTOR_H

#include "mdp/export.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mdp/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdp_reactor_s mdp_reactor_t;

/* A whole message was received.  `msg` belongs to the callback.  The callback
 * may send, stop receiving, or close the reactor (then no further message is
 * delivered). */
typedef void (*mdp_reactor_recv_cb)(mdp_reactor_t *reactor, mdp_msg_t *msg);

/* A message that mdp_reactor_send() accepted could not be sent after all:
 * its peer is gone (ROUTER with ZMQ_ROUTER_MANDATORY: EHOSTUNREACH) or `err`
 * says why.  `msg` (the whole message, identity frame included) belongs to
 * the callback.  It is called from the loop (an idle callback), never from
 * inside mdp_reactor_send() or mdp_reactor_process_now(), so it may send,
 * forget the peer or close the reactor.  The failure is counted in
 * msgs_failed when it is found; messages not yet handed over when the
 * reactor is closed are destroyed.  When no such callback is set, the
 * message is destroyed at once. */
typedef void (*mdp_reactor_fail_cb)(mdp_reactor_t *reactor, mdp_msg_t *msg,
                                    int err);

/* The messages held waiting for POLLOUT (stats.pending) have all been
 * handed to ZeroMQ (or failed): the count fell to zero after being above
 * it.  Called from the loop, never from inside a reactor call (after
 * mdp_reactor_process_now() emptied the ring, on the next iteration), and
 * only if nothing is held again by then; not when close drops held
 * messages.  As libuv's write callback: the moment to produce more.  It may
 * send or close the reactor. */
typedef void (*mdp_reactor_drain_cb)(mdp_reactor_t *reactor);

/* The reactor is closed: its handles are closed, the socket is closed (if the
 * reactor owns it) and the memory of the reactor is about to be freed.  Do not
 * use `reactor` after this callback returns. */
typedef void (*mdp_reactor_close_cb)(mdp_reactor_t *reactor);

typedef struct {
  uint64_t msgs_received; /* whole messages delivered */
  uint64_t msgs_sent;     /* whole messages handed to ZeroMQ */
  uint64_t msgs_held;     /* messages that had to wait for POLLOUT */
  uint64_t msgs_failed;   /* held messages that could not be sent later */
  uint64_t msgs_dropped;  /* received messages discarded whole: more frames
                             than max_frames, or out of memory */
  uint64_t wakeups;       /* times the reactor ran its batch */
  size_t pending;         /* messages held now */
  size_t pending_bytes;   /* bytes of the held messages' frames now */
  /* Room for figures to come (docs/abi.md): 256 bytes in all. */
  unsigned char reserved_[192];
} mdp_reactor_stats_t;

/* Creates a reactor for `socket` on `loop` and stores it in `*out`.
 * If `own_socket` is non-zero the reactor takes the socket and zmq_close()s
 * it when it is closed (after its poll handle is closed, as libuv demands);
 * otherwise the caller closes it after the close callback.  The reactor does
 * not receive until mdp_reactor_start().  Returns 0, MDP_EINVAL, MDP_ENOMEM,
 * MDP_EZMQ (ZMQ_FD could not be read) or a libuv error as MDP_EUV; on failure
 * nothing was created and the socket is still the caller's. */
MDP_EXTERN int mdp_reactor_new(uv_loop_t *loop, void *socket, int own_socket,
                    mdp_reactor_recv_cb recv_cb, mdp_reactor_t **out);

/* Starts / stops delivering received messages.  Sending works either way.
 * Starting schedules a check of the socket on the next loop iteration, since
 * messages may be waiting from before the first edge; no callback runs from
 * inside mdp_reactor_start().  0, or MDP_ECLOSING. */
MDP_EXTERN int mdp_reactor_start(mdp_reactor_t *reactor);

/* Stops receiving: no recv callback runs until mdp_reactor_start() again;
 * sends and held sends go on.  Safe from inside a recv callback (the batch
 * ends there).  0, or MDP_ECLOSING. */
MDP_EXTERN int mdp_reactor_stop(mdp_reactor_t *reactor);

/* Sends `msg` (at least one frame) with ZMQ_DONTWAIT.
 * Returns 0: the message was sent or is held until the socket is writable;
 *   it belongs to the reactor.
 * Returns an error: the message is still the caller's and nothing was sent.
 *   MDP_EHOSTUNREACH: a ROUTER with ZMQ_ROUTER_MANDATORY has no such peer;
 *   MDP_ENOBUFS: `max_pending` messages are already held, or holding it
 *     would take the held bytes over `max_pending_bytes`;
 *   MDP_ECLOSING: the reactor is closing; MDP_EINVAL: empty message;
 *   MDP_EZMQ: another ZeroMQ error (zmq_errno() tells which).
 * Messages are sent in the order they were given. */
MDP_EXTERN int mdp_reactor_send(mdp_reactor_t *reactor, mdp_msg_t *msg);

/* Tells the reactor that its socket was used behind its back: the caller
 * made a ZeroMQ call on it (zmq_bind, zmq_connect, zmq_unbind,
 * zmq_disconnect, a ZMQ_EVENTS read, a send or receive of its own).  libzmq
 * processes the socket's pending commands in those calls, which can consume
 * the edge of messages that just arrived (or of room to send); without a
 * kick they would wait for some unrelated later event.  The reactor looks
 * at the socket again on the next loop iteration; no callback runs from
 * inside this call.  Cheap and idempotent.  0, or MDP_ECLOSING. */
MDP_EXTERN int mdp_reactor_kick(mdp_reactor_t *reactor);

/* Does now what the next wake-up would: one batch of receiving (calling
 * the receive callback) and of sending held messages (a held message that
 * fails is handed to the fail callback later, from the loop).  For a timer callback
 * about to act on a peer's silence: libuv runs timers before it polls, so
 * after the loop stalled (a busy callback, a descheduled process) the
 * message that ends the silence may be waiting unread.  Returns 1 if the
 * batch ran out with more possibly waiting (call again to go on), else 0;
 * also 0, doing nothing, when called from the reactor's own callbacks or
 * while it is closing. */
MDP_EXTERN int mdp_reactor_process_now(mdp_reactor_t *reactor);

/* Closes the reactor: stops receiving, drops held messages (they are
 * destroyed and counted in msgs_failed) and failed messages not yet handed
 * to the fail callback (destroyed; counted when they failed), closes its libuv handles and then,
 * in a later loop iteration, calls `close_cb` (may be NULL) and frees the
 * reactor.  Safe to call from the reactor's own callbacks.  Calling it twice
 * is a no-op. */
MDP_EXTERN void mdp_reactor_close(mdp_reactor_t *reactor, mdp_reactor_close_cb close_cb);

/* Handles at most `batch` messages (received and sent) per wake-up; the
 * default is 64.  0 is taken as 1. */
MDP_EXTERN void mdp_reactor_set_batch(mdp_reactor_t *reactor, unsigned batch);

/* At most `max` messages are held waiting for POLLOUT (default 100000). */
MDP_EXTERN void mdp_reactor_set_max_pending(mdp_reactor_t *reactor, size_t max);

/* At most `max` bytes (the frames' sizes) are held waiting for POLLOUT
 * (default 256 MiB); a send beyond it returns MDP_ENOBUFS and the message
 * is still the caller's.  When nothing is held, one message of any size
 * may be held (a message cut short by EAGAIN must be), so memory is bounded
 * by `max` plus one message.  SIZE_MAX: no byte bound. */
MDP_EXTERN void mdp_reactor_set_max_pending_bytes(mdp_reactor_t *reactor, size_t max);

/* Received messages with more than `max` frames are discarded whole and
 * counted (msgs_dropped), without holding more than `max` frames in memory:
 * ZMQ_MAXMSGSIZE bounds a frame, this bounds a message.  0 (the default)
 * means no limit. */
MDP_EXTERN void mdp_reactor_set_max_frames(mdp_reactor_t *reactor, size_t max);

/* Callback for accepted messages that fail later (see mdp_reactor_fail_cb). */
MDP_EXTERN void mdp_reactor_set_fail_cb(mdp_reactor_t *reactor, mdp_reactor_fail_cb cb);

/* libuv's ref/unref idiom for the reactor's handles (poll, idle, timer):
 * an unref'd reactor does not keep uv_run(UV_RUN_DEFAULT) going on its own,
 * though it goes on working while something else keeps the loop alive.
 * New reactors are ref'd.  Loop thread only; never fails. */
MDP_EXTERN void mdp_reactor_ref(mdp_reactor_t *reactor);
MDP_EXTERN void mdp_reactor_unref(mdp_reactor_t *reactor);

/* Callback for a held queue that emptied (see mdp_reactor_drain_cb); NULL
 * (the default): none. */
MDP_EXTERN void mdp_reactor_set_drain_cb(mdp_reactor_t *reactor,
                                         mdp_reactor_drain_cb cb);

/* The user's pointer (NULL initially). */
MDP_EXTERN void mdp_reactor_set_data(mdp_reactor_t *reactor, void *data);
MDP_EXTERN void *mdp_reactor_get_data(const mdp_reactor_t *reactor);

/* The ZeroMQ socket and the loop.  The socket stays the reactor's to read
 * and write: after any ZeroMQ call of your own on it (bind, connect,
 * unbind, disconnect, getsockopt(ZMQ_EVENTS), ...), call mdp_reactor_kick()
 * before returning to the loop, or a message that arrived meanwhile may
 * wait unseen.  (In libzmq 4.3 zmq_setsockopt and the other getsockopt
 * options do not process the socket's commands; when in doubt, kick: it
 * never hurts.) */
MDP_EXTERN void *mdp_reactor_socket(const mdp_reactor_t *reactor);

/* The loop the reactor was created on. */
MDP_EXTERN uv_loop_t *mdp_reactor_loop(const mdp_reactor_t *reactor);

/* Counters, copied into `*stats`. */
MDP_EXTERN void mdp_reactor_get_stats(const mdp_reactor_t *reactor,
                           mdp_reactor_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif /* MDP_REACTOR_H */
