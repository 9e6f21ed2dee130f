/* A timeout list: one uv_timer_t for any number of equal-length timeouts
 * (internal).
 *
 * Every node of a list expires `duration` ms after it was last touched.
 * Since the duration is the same for all and loop time only grows, touching a
 * node moves it to the back and the list stays in expiry order: a touch is
 * O(1) and allocation-free, and the one timer is re-armed only when it fires,
 * for the node at the front.  This is how the broker tracks liveness,
 * heartbeats, request expiry and busy timeouts of thousands of peers without
 * a heap operation per message.
 */
#ifndef MDP_TLIST_H
#define MDP_TLIST_H

#include <stdint.h>
#include <uv.h>

#include "list.h"

typedef struct {
  mdp__list_t link;
  uint64_t stamp; /* loop time of the last touch */
} mdp__tnode_t;

typedef struct mdp__tlist_s mdp__tlist_t;

/* Called for each expired node, already removed from the list.  It may touch
 * or remove any node, the expired one included. */
typedef void (*mdp__tlist_cb)(mdp__tlist_t *list, mdp__tnode_t *node);

struct mdp__tlist_s {
  uv_timer_t timer;
  mdp__list_t nodes;
  uint64_t duration; /* 0: disabled, touches do nothing */
  mdp__tlist_cb cb;
  int *stop; /* if set and non-zero after a callback, stop expiring */
  /* Coalescing: when the timer fires, nodes due within `early` ms are
   * expired too, and the timer is re-armed `late` ms after the next
   * deadline, so thousands of spread-out deadlines cost a few wake-ups per
   * duration instead of one each.  Both 0 after init. */
  uint64_t early;
  uint64_t late;
  /* If set, called by the timer before a pass that will expire something,
   * to read what already waits in the owner's socket (libuv runs timers
   * before it polls: after a stall, a peer's word may sit unread).  It may
   * touch, remove or close anything; then the pass runs at the same time.
   * NULL after init. */
  void (*drain)(mdp__tlist_t *list);
  /* The timer's state as this list set it, so a touch needs no libuv
   * call: started and not yet fired or stopped; closed. */
  int armed;
  int closing;
};

int mdp__tlist_init(uv_loop_t *loop, mdp__tlist_t *list, uint64_t duration,
                   mdp__tlist_cb cb);
static inline void mdp__tnode_init(mdp__tnode_t *node) {
  mdp__list_init(&node->link);
  node->stamp = 0;
}
/* Starts the timer of a list that has a node now (tlist.c). */
void mdp__tlist_arm(mdp__tlist_t *list);

/* (Re)starts the node's timeout at `now`, which must not be earlier than
 * any stamp already in the list (the list is kept in expiry order by
 * touching at the back).  Tests use it, with mdp__tlist_expire(), as an
 * injectable clock.  Inline, as the broker touches a list or two per
 * message. */
static inline void mdp__tlist_touch_at(mdp__tlist_t *list, mdp__tnode_t *node,
                                       uint64_t now) {
  /* A disabled list, or one whose timer is closing (a close from a
   * callback while work is still unwinding): nothing to arm. */
  if (list->duration == 0 || list->closing)
    return;
  /* Already the newest node, touched at this same loop time (a worker's
   * message received, then its FINAL handled): nothing would change. */
  if (node->stamp == now && node->link.next == &list->nodes)
    return;
  node->stamp = now;
  mdp__list_move_back(&list->nodes, &node->link);
  /* Invariant: the timer runs whenever the list is non-empty (a removal may
   * leave it running for nothing, which costs one harmless wake-up). */
  if (!list->armed)
    mdp__tlist_arm(list);
}

/* The same from now (the loop's time). */
static inline void mdp__tlist_touch(mdp__tlist_t *list, mdp__tnode_t *node) {
  mdp__tlist_touch_at(list, node, uv_now(list->timer.loop));
}

#define MDP__TLIST_NONE UINT64_MAX
/* One expiry pass at time `now`, as the timer runs it: calls the callback
 * for every node due by now + early, in order, and returns the delay (ms)
 * until the next pass is due, or MDP__TLIST_NONE if the list is empty or a
 * callback set *stop.  It does not arm the timer. */
uint64_t mdp__tlist_expire(mdp__tlist_t *list, uint64_t now);
static inline void mdp__tlist_remove(mdp__tnode_t *node) {
  mdp__list_remove(&node->link);
}
static inline int mdp__tlist_linked(const mdp__tnode_t *node) {
  return mdp__list_linked(&node->link);
}
/* Unlinks every node and closes the timer (close_cb gets the timer handle). */
void mdp__tlist_close(mdp__tlist_t *list, uv_close_cb close_cb);

#endif /* MDP_TLIST_H */
