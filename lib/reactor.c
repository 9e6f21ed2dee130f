/* The reactor: one ZeroMQ socket on a libuv loop.  docs/reactor.md tells the
 * whole story; the comments here say why each step is where it is.
 *
 * The one rule everything follows: ZMQ_FD is an edge-triggered hint.  Any
 * ZeroMQ call on the socket (send, receive, ZMQ_EVENTS) may process the
 * socket's pending commands and thereby consume the edge, so the last call
 * of every burst of work must be one whose answer we act on: a receive
 * that returned EAGAIN, or a ZMQ_EVENTS read that we check for work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zmq.h>

#include "mdp/error.h"
#include "mdp/msg.h"
#include "mdp/reactor.h"
#include "msg_internal.h"
#include "reactor_internal.h"

#define DEFAULT_BATCH 64
#define DEFAULT_MAX_PENDING 100000
/* Bytes held at most (frames not yet handed to ZeroMQ): four of the
 * broker's largest frames (max_msg_size, 64 MiB). */
#define DEFAULT_MAX_PENDING_BYTES ((size_t)256 * 1024 * 1024)
#define RING_INITIAL 16
/* Rounds of "work, then ZMQ_EVENTS" in one wake-up.  The batch budget
 * already bounds the work; this only bounds rounds that make no progress
 * while ZMQ_EVENTS keeps promising some. */
#define MAX_ROUNDS 8
/* Held messages and a ROUTER: its POLLOUT is about the socket, not about
 * the peer the held head goes to, and a peer's pipe going away (which turns
 * the head's EAGAIN into EHOSTUNREACH) raises no POLLOUT at all.  So while
 * messages are held the reactor also retries on a timer: soon when
 * ZMQ_EVENTS says POLLOUT but the head still gets EAGAIN, as a slow
 * watchdog otherwise.  For other socket types POLLOUT is exact and the
 * watchdog only costs a few idle wake-ups per second while blocked. */
#define STALL_RETRY_MS 1
#define WATCHDOG_MS 100

enum {
  F_RECEIVING = 1 << 0,
  F_CLOSING = 1 << 1,
  F_IN_PROCESS = 1 << 2,
  F_POLL_ACTIVE = 1 << 3,
  F_IDLE_ACTIVE = 1 << 4,
  F_OWN_SOCKET = 1 << 5,
  F_RX_DROP = 1 << 6, /* out of memory mid-message: discard until !MORE */
  F_DRAIN_DUE = 1 << 7, /* the held ring emptied: drain_cb is owed */
};

/* A held message and the bytes it was counted for in stats.pending_bytes
 * (frames sent before it was held are empty: they hold nothing). */
typedef struct {
  mdp_msg_t *msg;
  size_t bytes;
} held_t;

/* A message that could not be sent, waiting to be handed to fail_cb. */
typedef struct {
  mdp_msg_t *msg;
  int err;
} failed_t;

struct mdp_reactor_s {
  uv_poll_t poll;
  uv_idle_t idle;
  uv_timer_t retry;
  uv_loop_t *loop;
  void *socket;
  mdp_reactor_recv_cb recv_cb;
  mdp_reactor_fail_cb fail_cb;
  mdp_reactor_drain_cb drain_cb;
  mdp_reactor_close_cb close_cb;
  void *data;
  unsigned flags;
  unsigned batch;
  int handles_open;
  /* A message being received; between messages, an empty one kept for the
   * next receive so a wake-up that finds nothing allocates nothing. */
  mdp_msg_t *rx;
  /* Held messages: a ring of pointers, grown by doubling, so holding a
   * message costs no allocation in the steady state.  `head_sent` frames of
   * the head message already went (EAGAIN mid-message). */
  held_t *ring;
  size_t ring_cap;
  size_t ring_head;
  size_t head_sent;
  size_t max_pending;
  size_t max_pending_bytes;
  size_t max_frames; /* 0: no limit */
  /* zmq_msg_recv's answer for the first frames of the message in rx
   * (reactor_internal.h). */
  uint32_t rx_sizes[MDP__REACTOR_RX_SIZES];
  /* Failed messages for fail_cb, delivered from the idle callback, never
   * from inside the call that found the failure (libuv's rule: a call does
   * not run the caller's callbacks).  Entries before `failed_head` have
   * been delivered during the current delivery. */
  failed_t *failed;
  size_t failed_count;
  size_t failed_cap;
  size_t failed_head;
  mdp_reactor_stats_t stats; /* stats.pending is the ring's count */
};

static int reactor_process(mdp_reactor_t *reactor);
static void deliver_failed(mdp_reactor_t *reactor);

static int is_closing(const mdp_reactor_t *reactor) {
  return (reactor->flags & F_CLOSING) != 0;
}

/* Calls drain_cb if the held ring emptied since the last call and is still
 * empty.  Only from the loop's callbacks (the last thing they do). */
static void deliver_drain(mdp_reactor_t *reactor) {
  if (!(reactor->flags & F_DRAIN_DUE) || is_closing(reactor))
    return;
  reactor->flags &= ~F_DRAIN_DUE;
  if (reactor->stats.pending == 0 && reactor->drain_cb != NULL)
    reactor->drain_cb(reactor);
}

static void idle_cb(uv_idle_t *handle) {
  mdp_reactor_t *reactor = handle->data;
  deliver_failed(reactor);
  reactor_process(reactor);
  deliver_drain(reactor);
}

static void retry_cb(uv_timer_t *handle) {
  reactor_process(handle->data);
  deliver_drain(handle->data);
}

static void poll_cb(uv_poll_t *handle, int status, int events) {
  /* An error status (say EBADF) is passed on to ZeroMQ's own calls, which
   * report it in a form we already handle; `events` is only a hint anyway. */
  (void)status;
  (void)events;
  reactor_process(handle->data);
  deliver_drain(handle->data);
}

/* Resumes processing on the next loop iteration (this one, if called before
 * the loop's idle phase) without waiting for an edge. */
static void kick(mdp_reactor_t *reactor) {
  if (reactor->flags & F_IDLE_ACTIVE)
    return;
  uv_idle_start(&reactor->idle, idle_cb);
  reactor->flags |= F_IDLE_ACTIVE;
}

static void idle_stop(mdp_reactor_t *reactor) {
  /* Failed messages still to be delivered (or a drain) keep it going. */
  if (!(reactor->flags & F_IDLE_ACTIVE) || reactor->failed_count > 0 ||
      (reactor->flags & F_DRAIN_DUE))
    return;
  uv_idle_stop(&reactor->idle);
  reactor->flags &= ~F_IDLE_ACTIVE;
}

/* The poll handle is active only while there is something to wait for, so
 * a stopped reactor with nothing held does not keep the loop alive. */
static void update_poll(mdp_reactor_t *reactor) {
  int want = !is_closing(reactor) &&
             ((reactor->flags & F_RECEIVING) || reactor->stats.pending > 0);
  if (want && !(reactor->flags & F_POLL_ACTIVE)) {
    if (uv_poll_start(&reactor->poll, UV_READABLE, poll_cb) == 0)
      reactor->flags |= F_POLL_ACTIVE;
  } else if (!want && (reactor->flags & F_POLL_ACTIVE)) {
    uv_poll_stop(&reactor->poll);
    reactor->flags &= ~F_POLL_ACTIVE;
  }
}

static void arm_retry(mdp_reactor_t *reactor, int stalled) {
  if (reactor->stats.pending == 0) {
    if (uv_is_active((uv_handle_t *)&reactor->retry))
      uv_timer_stop(&reactor->retry);
  } else if (stalled) {
    uv_timer_start(&reactor->retry, retry_cb, STALL_RETRY_MS, 0);
  } else if (!uv_is_active((uv_handle_t *)&reactor->retry)) {
    uv_timer_start(&reactor->retry, retry_cb, WATCHDOG_MS, 0);
  }
}

static int zmq_error(int e) {
  switch (e) {
  case EAGAIN:
    return MDP_EAGAIN;
  case EHOSTUNREACH:
    return MDP_EHOSTUNREACH;
  default:
    return MDP_EZMQ;
  }
}

/* Sends frames `*next`.. of `msg`.  On return `*next` counts the frames that
 * went, so a message cut short by EAGAIN resumes where it stopped. */
static inline __attribute__((always_inline)) int
send_frames(mdp_reactor_t *reactor, mdp_msg_t *msg, size_t *next) {
  /* The per-frame loop of every message sent: the slot and the count stay
   * in locals (the libzmq call cannot see them, so nothing is reloaded
   * around it), and `*next` is written on the way out.  Inline in its two
   * callers: a call per message costs more than the loop saves. */
  if (*next >= msg->count)
    return 0;
  void *socket = reactor->socket;
  zmq_msg_t *first = mdp__msg_at(msg, 0);
  zmq_msg_t *frame = first + *next;
  zmq_msg_t *last = first + msg->count - 1;
  for (;;) {
    int flags = frame < last ? ZMQ_DONTWAIT | ZMQ_SNDMORE : ZMQ_DONTWAIT;
    if (zmq_msg_send(frame, socket, flags) < 0) {
      if (errno == EINTR)
        continue;
      *next = (size_t)(frame - first);
      return zmq_error(errno);
    }
    if (frame == last)
      break;
    frame++;
  }
  *next = msg->count;
  return 0;
}

/* `msg` went whole, so every frame is an empty message that holds nothing
 * (no close needed).  It becomes the next receive buffer when there is
 * none, which is the common case, as a forwarder receives one message and
 * sends one: that saves a trip through the message cache each way. */
static void sent_whole(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  reactor->stats.msgs_sent++;
  if (reactor->rx == NULL && msg->frames == msg->inline_frames) {
    mdp__msg_reset(msg, MDP_MSG_RX_FRONT_ROOM);
    reactor->rx = msg;
    return;
  }
  mdp__msg_free_sent(msg);
}

static mdp_msg_t *ring_front(const mdp_reactor_t *reactor) {
  return reactor->ring[reactor->ring_head].msg;
}

static mdp_msg_t *ring_pop(mdp_reactor_t *reactor) {
  mdp_msg_t *msg = reactor->ring[reactor->ring_head].msg;
  reactor->stats.pending_bytes -= reactor->ring[reactor->ring_head].bytes;
  reactor->ring_head = (reactor->ring_head + 1) % reactor->ring_cap;
  reactor->stats.pending--;
  reactor->head_sent = 0;
  if (reactor->stats.pending == 0 && reactor->drain_cb != NULL)
    reactor->flags |= F_DRAIN_DUE;
  return msg;
}

static int ring_push(mdp_reactor_t *reactor, mdp_msg_t *msg, size_t bytes) {
  if (reactor->stats.pending == reactor->ring_cap) {
    size_t cap = reactor->ring_cap * 2;
    held_t *ring = malloc(cap * sizeof *ring);
    if (ring == NULL)
      return MDP_ENOMEM;
    for (size_t i = 0; i < reactor->stats.pending; i++)
      ring[i] = reactor->ring[(reactor->ring_head + i) % reactor->ring_cap];
    free(reactor->ring);
    reactor->ring = ring;
    reactor->ring_cap = cap;
    reactor->ring_head = 0;
  }
  size_t slot =
      (reactor->ring_head + reactor->stats.pending) % reactor->ring_cap;
  reactor->ring[slot] = (held_t){msg, bytes};
  reactor->stats.pending++;
  reactor->stats.pending_bytes += bytes;
  return 0;
}

/* Counts a message that cannot be sent and queues it for fail_cb, which
 * runs from the idle callback: the failure may be found inside a caller's
 * mdp_reactor_send() or mdp_reactor_process_now(), and the callback may
 * send, remove the peer or close the reactor, which the caller's frame
 * could not survive.  Without a callback (or memory to queue it) the
 * message is destroyed at once. */
static void fail_msg(mdp_reactor_t *reactor, mdp_msg_t *msg, int err) {
  reactor->stats.msgs_failed++;
  if (reactor->fail_cb == NULL) {
    mdp_msg_destroy(msg);
    return;
  }
  if (reactor->failed_count == reactor->failed_cap) {
    size_t cap = reactor->failed_cap ? reactor->failed_cap * 2 : 8;
    failed_t *f = realloc(reactor->failed, cap * sizeof *f);
    if (f == NULL) {
      mdp_msg_destroy(msg);
      return;
    }
    reactor->failed = f;
    reactor->failed_cap = cap;
  }
  reactor->failed[reactor->failed_count++] = (failed_t){msg, err};
  kick(reactor);
}

/* Hands the queued failed messages to fail_cb, oldest first.  Failures
 * that a callback causes (it may send) wait for the next iteration, so one
 * delivery always ends.  The callback may close the reactor: close
 * destroys what was not delivered yet. */
static void deliver_failed(mdp_reactor_t *reactor) {
  if (reactor->failed_count == 0)
    return;
  size_t end = reactor->failed_count;
  while (reactor->failed_head < end && !is_closing(reactor)) {
    failed_t f = reactor->failed[reactor->failed_head++];
    if (reactor->fail_cb != NULL)
      reactor->fail_cb(reactor, f.msg, f.err);
    else
      mdp_msg_destroy(f.msg);
  }
  if (is_closing(reactor))
    return;
  reactor->failed_count -= reactor->failed_head;
  memmove(reactor->failed, reactor->failed + reactor->failed_head,
          reactor->failed_count * sizeof *reactor->failed);
  reactor->failed_head = 0;
}

static void destroy_failed(mdp_reactor_t *reactor) {
  for (size_t i = reactor->failed_head; i < reactor->failed_count; i++)
    mdp_msg_destroy(reactor->failed[i].msg);
  reactor->failed_head = reactor->failed_count = 0;
}

/* Sends held messages, oldest first, while the socket takes them.  Returns
 * 1 if the head message met EAGAIN.  A message that fails is queued for
 * fail_cb (see fail_msg). */
static int flush_held(mdp_reactor_t *reactor, unsigned *budget, int *progress) {
  while (reactor->stats.pending > 0 && *budget > 0) {
    mdp_msg_t *msg = ring_front(reactor);
    size_t before = reactor->head_sent;
    int err = send_frames(reactor, msg, &reactor->head_sent);
    if (err == MDP_EAGAIN) {
      if (reactor->head_sent != before)
        *progress = 1;
      return 1;
    }
    ring_pop(reactor);
    (*budget)--;
    *progress = 1;
    if (err == 0) {
      sent_whole(reactor, msg);
    } else {
      fail_msg(reactor, msg, err);
    }
  }
  return 0;
}

/* A failed zmq_msg_recv into `frame`, which is closed: 0 for EAGAIN,
 * RECV_RETRY for EINTR (the same slot again), else MDP_EZMQ. */
#define RECV_RETRY 2
static int recv_failed(mdp_reactor_t *reactor, zmq_msg_t *frame) {
  int e = errno;
  zmq_msg_close(frame);
  if (e == EINTR)
    return RECV_RETRY;
  if (e == ETERM) {
    /* The context is going away: its fd may stay readable, and receiving
     * on would only spin until the owner closes us. */
    reactor->flags &= ~F_RECEIVING;
  }
  return e == EAGAIN ? 0 : MDP_EZMQ;
}

/* zmq_msg_more(), without its extra call: in libzmq it only returns
 * zmq_msg_get(frame, ZMQ_MORE), and this runs once per frame received. */
static inline int frame_more(const zmq_msg_t *frame) {
  return zmq_msg_get(frame, ZMQ_MORE);
}

/* Receives a frame into `frame` (initialised here) as frame `index` of the
 * message: 1, or recv_failed's answer.  Its size, zmq_msg_recv's return,
 * is recorded for the parser. */
static inline int recv_frame(mdp_reactor_t *reactor, void *socket,
                             zmq_msg_t *frame, size_t index) {
  zmq_msg_init(frame);
  int size = zmq_msg_recv(frame, socket, ZMQ_DONTWAIT);
  if (size < 0)
    return recv_failed(reactor, frame);
  if (index < MDP__REACTOR_RX_SIZES)
    reactor->rx_sizes[index] = (uint32_t)size;
  return 1;
}

const uint32_t *mdp__reactor_rx_sizes(const mdp_reactor_t *reactor) {
  return reactor->rx_sizes;
}

/* Receives one whole message into reactor->rx.  1: a message is ready;
 * 0: EAGAIN (a partial message, which ZeroMQ's atomic delivery should never
 * leave, stays in reactor->rx); <0: another error.
 *
 * Each frame is received straight into its slot at the end of reactor->rx:
 * no temporary zmq_msg_t, no move and no extra close per frame.  The
 * message starts MDP_MSG_RX_FRONT_ROOM slots in, so up to 10 frames fit
 * inline and the header frames its receiver drops make the room for the
 * next header (msg_internal.h).  The frames that fit (free slots, and
 * max_frames) are received by a tight loop; the rest one at a time: a
 * frame with no slot (over max_frames, or out of memory) goes to a local
 * zmq_msg_t and the message is dropped whole. */
static int recv_whole(mdp_reactor_t *reactor) {
  if (reactor->rx == NULL &&
      (reactor->rx = mdp__msg_new_at(MDP_MSG_RX_FRONT_ROOM)) == NULL)
    return MDP_ENOMEM;
  mdp_msg_t *rx = reactor->rx;
  void *socket = reactor->socket;
  for (;;) {
    if (!(reactor->flags & F_RX_DROP)) {
      size_t room = rx->cap - rx->head - rx->count;
      if (reactor->max_frames) {
        size_t allowed = rx->count < reactor->max_frames
                             ? reactor->max_frames - rx->count
                             : 0;
        if (room > allowed)
          room = allowed;
      }
      /* The per-frame loop of every message: what it keeps in locals
       * (the slot, the frame count) is stored back on each way out, not
       * reloaded and stored around each libzmq call. */
      zmq_msg_t *frame = mdp__msg_at(rx, rx->count);
      zmq_msg_t *end = frame + room;
      size_t index = rx->count;
      uint32_t *sizes = reactor->rx_sizes;
      while (frame < end) {
        zmq_msg_init(frame);
        int size = zmq_msg_recv(frame, socket, ZMQ_DONTWAIT);
        if (size < 0) {
          rx->count = index;
          int rc = recv_failed(reactor, frame);
          if (rc == RECV_RETRY)
            continue;
          return rc;
        }
        if (index < MDP__REACTOR_RX_SIZES)
          sizes[index] = (uint32_t)size;
        index++;
        if (!frame_more(frame)) {
          rx->count = index;
          return 1;
        }
        frame++;
      }
      rx->count = index;
    }
    /* One frame the loop above had no slot for. */
    zmq_msg_t local;
    zmq_msg_t *frame = &local;
    if (!(reactor->flags & F_RX_DROP) &&
        !(reactor->max_frames && rx->count >= reactor->max_frames) &&
        mdp_msg_reserve_(rx, 0, 1) == 0)
      frame = mdp__msg_at(rx, rx->count);
    int rc = recv_frame(reactor, socket, frame, rx->count);
    if (rc == RECV_RETRY)
      continue;
    if (rc != 1)
      return rc;
    int more = frame_more(frame);
    if (frame == &local) {
      zmq_msg_close(&local);
      if (!(reactor->flags & F_RX_DROP)) {
        /* The frames of a message come together or not at all: drop the
         * rest of this one rather than deliver it cut. */
        reactor->flags |= F_RX_DROP;
        reactor->stats.msgs_dropped++;
        mdp_msg_drop_front(rx, (size_t)-1);
        /* Empty again: start the next message where a new buffer would,
         * not after the dropped frames (the buffer is reused). */
        rx->head = MDP_MSG_RX_FRONT_ROOM;
      }
      if (!more)
        reactor->flags &= ~F_RX_DROP;
      continue;
    }
    rx->count++;
    if (!more)
      return 1;
  }
}

/* One batch.  Returns 1 if it stopped with more work possibly waiting
 * (the budget or the rounds ran out), else 0. */
static int reactor_process(mdp_reactor_t *reactor) {
  if (is_closing(reactor))
    return 0;
  if (!(reactor->flags & F_RECEIVING) && reactor->stats.pending == 0) {
    idle_stop(reactor);
    arm_retry(reactor, 0);
    update_poll(reactor);
    return 0;
  }
  int more = 0;
  reactor->stats.wakeups++;
  reactor->flags |= F_IN_PROCESS;
  unsigned budget = reactor->batch;
  unsigned stalls = 0;
  for (unsigned round = 1;; round++) {
    int progress = 0;
    int blocked = 0;
    int rx_error = 0;
    if (reactor->stats.pending > 0) {
      blocked = flush_held(reactor, &budget, &progress);
      if (is_closing(reactor))
        goto out;
    }
    /* Receive until EAGAIN rather than asking ZMQ_EVENTS first: one call
     * per message instead of two. */
    while ((reactor->flags & F_RECEIVING) && budget > 0) {
      int rc = recv_whole(reactor);
      if (rc <= 0) {
        rx_error = rc < 0;
        break;
      }
      mdp_msg_t *msg = reactor->rx;
      reactor->rx = NULL;
      budget--;
      reactor->stats.msgs_received++;
      if (reactor->recv_cb != NULL)
        reactor->recv_cb(reactor, msg);
      else
        mdp_msg_destroy(msg);
      if (is_closing(reactor))
        goto out;
    }
    if (budget == 0) {
      /* More may be waiting, and no edge will say so: resume next
       * iteration, after timers and the other handles had their turn. */
      kick(reactor);
      more = 1;
      goto out;
    }
    if (reactor->stats.pending == 0) {
      /* Nothing held, so only input matters, and the receive that just
       * returned EAGAIN has done what a ZMQ_EVENTS read would: libzmq
       * processes all pending commands (re-arming the edge) and looks
       * again before it reports EAGAIN.  Skipping the read saves a
       * poll() per wake-up.  (Not receiving: nothing to watch at all.) */
      idle_stop(reactor);
      arm_retry(reactor, 0);
      break;
    }
    /* Messages are held: a receive after our sends may have processed the
     * peer's "you may write again" and consumed that edge.  ZMQ_EVENTS
     * reports whatever it and the calls before it consumed, and anything
     * after it signals the fd anew. */
    int events = 0;
    size_t len = sizeof events;
    if (zmq_getsockopt(reactor->socket, ZMQ_EVENTS, &events, &len) != 0)
      events = 0;
    int more_in = (events & ZMQ_POLLIN) && (reactor->flags & F_RECEIVING) &&
                  !rx_error;
    int more_out = (events & ZMQ_POLLOUT) && reactor->stats.pending > 0;
    if (progress)
      stalls = 0;
    int stalled = 0;
    if (more_out && blocked && !progress && ++stalls > 1) {
      /* POLLOUT, yet the head met EAGAIN twice in a row: the socket has
       * room for some peer but not this message's (a ROUTER with
       * ZMQ_ROUTER_MANDATORY reports POLLOUT if any peer has room).
       * Retry on a short timer instead of spinning. */
      more_out = 0;
      stalled = 1;
    }
    if (!more_in && !more_out) {
      idle_stop(reactor);
      arm_retry(reactor, stalled);
      break;
    }
    if (round == MAX_ROUNDS) {
      kick(reactor);
      more = 1;
      break;
    }
  }
out:
  reactor->flags &= ~F_IN_PROCESS;
  if (!is_closing(reactor))
    update_poll(reactor);
  return more && !is_closing(reactor);
}

int mdp_reactor_new(uv_loop_t *loop, void *socket, int own_socket,
                    mdp_reactor_recv_cb recv_cb, mdp_reactor_t **out) {
  if (loop == NULL || socket == NULL || out == NULL)
    return MDP_EINVAL;
#ifdef _WIN32
  SOCKET fd;
#else
  int fd;
#endif
  size_t len = sizeof fd;
  if (zmq_getsockopt(socket, ZMQ_FD, &fd, &len) != 0)
    return MDP_EZMQ;
  mdp_reactor_t *reactor = calloc(1, sizeof *reactor);
  if (reactor == NULL)
    return MDP_ENOMEM;
  reactor->ring_cap = RING_INITIAL;
  reactor->ring = malloc(reactor->ring_cap * sizeof *reactor->ring);
  if (reactor->ring == NULL) {
    free(reactor);
    return MDP_ENOMEM;
  }
  /* The poll handle first: it is the only init that can fail, and an
   * initialised handle could only be undone by a uv_close and a loop turn. */
#ifdef _WIN32
  int rc = uv_poll_init_socket(loop, &reactor->poll, fd);
#else
  int rc = uv_poll_init(loop, &reactor->poll, fd);
#endif
  if (rc != 0) {
    free(reactor->ring);
    free(reactor);
    return MDP_EUV;
  }
  uv_idle_init(loop, &reactor->idle);
  uv_timer_init(loop, &reactor->retry);
  reactor->poll.data = reactor;
  reactor->idle.data = reactor;
  reactor->retry.data = reactor;
  reactor->loop = loop;
  reactor->socket = socket;
  reactor->recv_cb = recv_cb;
  reactor->batch = DEFAULT_BATCH;
  reactor->max_pending = DEFAULT_MAX_PENDING;
  reactor->max_pending_bytes = DEFAULT_MAX_PENDING_BYTES;
  if (own_socket)
    reactor->flags |= F_OWN_SOCKET;
  *out = reactor;
  return 0;
}

int mdp_reactor_start(mdp_reactor_t *reactor) {
  if (is_closing(reactor))
    return MDP_ECLOSING;
  reactor->flags |= F_RECEIVING;
  update_poll(reactor);
  /* Messages that arrived before now may have had their edge consumed
   * already (by a send, or before the poll handle existed).  Check on the
   * next iteration rather than here, so that no callback runs from inside
   * this call (the caller may be half-way through setting up). */
  kick(reactor);
  return 0;
}

int mdp_reactor_stop(mdp_reactor_t *reactor) {
  if (is_closing(reactor))
    return MDP_ECLOSING;
  reactor->flags &= ~F_RECEIVING;
  /* Inside process, the batch sees the flag and the poll is updated on the
   * way out. */
  if (!(reactor->flags & F_IN_PROCESS))
    update_poll(reactor);
  return 0;
}

int mdp_reactor_send(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  if (is_closing(reactor))
    return MDP_ECLOSING;
  if (msg == NULL || mdp__msg_size(msg) == 0)
    return MDP_EINVAL;
  if (reactor->stats.pending > 0) {
    /* Order is kept by never overtaking held messages.  No ZeroMQ call is
     * made here, so no edge can be lost. */
    size_t bytes = mdp_msg_bytes(msg);
    /* (pending_bytes may exceed the bound: one large message alone, or a
     * bound lowered since.) */
    if (reactor->stats.pending >= reactor->max_pending ||
        reactor->stats.pending_bytes > reactor->max_pending_bytes ||
        bytes > reactor->max_pending_bytes - reactor->stats.pending_bytes)
      return MDP_ENOBUFS;
    int rc = ring_push(reactor, msg, bytes);
    if (rc != 0)
      return rc;
    reactor->stats.msgs_held++;
    return 0;
  }
  size_t sent = 0;
  int err = send_frames(reactor, msg, &sent);
  /* The send may have processed the socket's commands and consumed a read
   * (or write) edge.  Inside process the closing ZMQ_EVENTS read covers it;
   * from anywhere else (a timer, another socket's callback) look again on
   * the next iteration. */
  if (!(reactor->flags & F_IN_PROCESS) && (reactor->flags & F_RECEIVING))
    kick(reactor);
  if (err == 0) {
    sent_whole(reactor, msg);
    return 0;
  }
  if (err == MDP_EAGAIN) {
    /* A partly sent message must be held whatever the limit: it cannot be
     * handed back.  The ring always has room for one (RING_INITIAL).
     * Nothing else is held, so the byte bound does not apply: one message
     * of any size may wait its turn. */
    if (sent == 0 && reactor->max_pending == 0)
      return MDP_ENOBUFS;
    int rc = ring_push(reactor, msg, mdp_msg_bytes(msg));
    if (rc != 0)
      return rc; /* only when sent == 0: the ring is empty here */
    reactor->head_sent = sent;
    reactor->stats.msgs_held++;
    update_poll(reactor);
    if (!(reactor->flags & F_IN_PROCESS))
      kick(reactor); /* the EAGAIN may have come after the write edge
                        was used */
    return 0;
  }
  if (sent == 0)
    return err; /* zmq_msg_send left the frame untouched: still the caller's */
  /* Some frames went before the error: the message cannot be returned
   * whole, so it takes the failed-message path. */
  fail_msg(reactor, msg, err);
  return 0;
}

int mdp_reactor_kick(mdp_reactor_t *reactor) {
  if (is_closing(reactor))
    return MDP_ECLOSING;
  /* The caller's ZeroMQ call may have processed the socket's commands and
   * consumed an edge: look again on the next iteration, not from here. */
  kick(reactor);
  return 0;
}

int mdp_reactor_process_now(mdp_reactor_t *reactor) {
  if (is_closing(reactor) || (reactor->flags & F_IN_PROCESS))
    return 0;
  /* Failed messages it finds, and a drain, are delivered from the loop,
   * not from here. */
  int more = reactor_process(reactor);
  if ((reactor->flags & F_DRAIN_DUE) && !is_closing(reactor))
    kick(reactor);
  return more;
}

static void close_cb(uv_handle_t *handle) {
  mdp_reactor_t *reactor = handle->data;
  if (--reactor->handles_open > 0)
    return;
  /* Only now: libuv must have stopped polling the fd before ZeroMQ closes
   * it. */
  if (reactor->flags & F_OWN_SOCKET)
    zmq_close(reactor->socket);
  if (reactor->close_cb != NULL)
    reactor->close_cb(reactor);
  mdp_msg_destroy(reactor->rx);
  free(reactor->failed);
  free(reactor->ring);
  free(reactor);
}

void mdp_reactor_close(mdp_reactor_t *reactor, mdp_reactor_close_cb cb) {
  if (reactor == NULL || is_closing(reactor))
    return;
  reactor->flags |= F_CLOSING;
  reactor->flags &= ~F_RECEIVING;
  reactor->close_cb = cb;
  while (reactor->stats.pending > 0) {
    mdp_msg_destroy(ring_pop(reactor));
    reactor->stats.msgs_failed++;
  }
  destroy_failed(reactor); /* counted when they failed */
  reactor->handles_open = 3;
  uv_close((uv_handle_t *)&reactor->poll, close_cb);
  uv_close((uv_handle_t *)&reactor->idle, close_cb);
  uv_close((uv_handle_t *)&reactor->retry, close_cb);
}

void mdp_reactor_set_batch(mdp_reactor_t *reactor, unsigned batch) {
  reactor->batch = batch ? batch : 1;
}

void mdp_reactor_set_max_frames(mdp_reactor_t *reactor, size_t max) {
  reactor->max_frames = max;
}

void mdp_reactor_set_max_pending(mdp_reactor_t *reactor, size_t max) {
  reactor->max_pending = max;
}

void mdp_reactor_set_max_pending_bytes(mdp_reactor_t *reactor, size_t max) {
  reactor->max_pending_bytes = max;
}

void mdp_reactor_set_fail_cb(mdp_reactor_t *reactor, mdp_reactor_fail_cb cb) {
  reactor->fail_cb = cb;
}

void mdp_reactor_ref(mdp_reactor_t *reactor) {
  uv_ref((uv_handle_t *)&reactor->poll);
  uv_ref((uv_handle_t *)&reactor->idle);
  uv_ref((uv_handle_t *)&reactor->retry);
}

void mdp_reactor_unref(mdp_reactor_t *reactor) {
  uv_unref((uv_handle_t *)&reactor->poll);
  uv_unref((uv_handle_t *)&reactor->idle);
  uv_unref((uv_handle_t *)&reactor->retry);
}

void mdp_reactor_set_drain_cb(mdp_reactor_t *reactor, mdp_reactor_drain_cb cb) {
  reactor->drain_cb = cb;
}

void mdp_reactor_set_data(mdp_reactor_t *reactor, void *data) {
  reactor->data = data;
}

void *mdp_reactor_get_data(const mdp_reactor_t *reactor) {
  return reactor->data;
}

void *mdp_reactor_socket(const mdp_reactor_t *reactor) {
  return reactor->socket;
}

uv_loop_t *mdp_reactor_loop(const mdp_reactor_t *reactor) {
  return reactor->loop;
}

void mdp_reactor_get_stats(const mdp_reactor_t *reactor,
                           mdp_reactor_stats_t *stats) {
  *stats = reactor->stats;
}
