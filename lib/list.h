/* An intrusive, circular, doubly linked list (internal).
 *
 * The node is embedded in the element; an empty list is a head node pointing
 * at itself.  All operations are O(1) and allocation-free, which is what the
 * broker's per-message bookkeeping needs.
 */
#ifndef MDP_LIST_H
#define MDP_LIST_H

#include <stddef.h>

typedef struct mdp_list_s {
  struct mdp_list_s *prev;
  struct mdp_list_s *next;
} mdp_list_t;

#define mdp_container_of(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void mdp_list_init(mdp_list_t *l) { l->prev = l->next = l; }

static inline int mdp_list_empty(const mdp_list_t *l) { return l->next == l; }

/* A node that is in no list is kept self-linked, so removal is idempotent. */
static inline int mdp_list_linked(const mdp_list_t *n) { return n->next != n; }

static inline void mdp_list_remove(mdp_list_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

static inline void mdp_list_insert_after(mdp_list_t *at, mdp_list_t *n) {
  n->prev = at;
  n->next = at->next;
  at->next->prev = n;
  at->next = n;
}

static inline void mdp_list_push_back(mdp_list_t *l, mdp_list_t *n) {
  mdp_list_insert_after(l->prev, n);
}

static inline void mdp_list_push_front(mdp_list_t *l, mdp_list_t *n) {
  mdp_list_insert_after(l, n);
}

static inline mdp_list_t *mdp_list_head(const mdp_list_t *l) {
  return l->next == l ? NULL : l->next;
}

/* Moves `n` (in any list or none) to the back of `l`. */
static inline void mdp_list_move_back(mdp_list_t *l, mdp_list_t *n) {
  mdp_list_remove(n);
  mdp_list_push_back(l, n);
}

#endif /* MDP_LIST_H */
