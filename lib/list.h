/* An intrusive, circular, doubly linked list (internal).
 *
 * The node is embedded in the element; an empty list is a head node pointing
 * at itself.  All operations are O(1) and allocation-free, which is what the
 * broker's per-message bookkeeping needs.
 */
#ifndef MDP_LIST_H
#define MDP_LIST_H

#include <stddef.h>

typedef struct mdp__list_s {
  struct mdp__list_s *prev;
  struct mdp__list_s *next;
} mdp__list_t;

#define mdp__container_of(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void mdp__list_init(mdp__list_t *l) { l->prev = l->next = l; }

static inline int mdp__list_empty(const mdp__list_t *l) { return l->next == l; }

/* A node that is in no list is kept self-linked, so removal is idempotent. */
static inline int mdp__list_linked(const mdp__list_t *n) { return n->next != n; }

static inline void mdp__list_remove(mdp__list_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

static inline void mdp__list_insert_after(mdp__list_t *at, mdp__list_t *n) {
  n->prev = at;
  n->next = at->next;
  at->next->prev = n;
  at->next = n;
}

static inline void mdp__list_push_back(mdp__list_t *l, mdp__list_t *n) {
  mdp__list_insert_after(l->prev, n);
}

static inline void mdp__list_push_front(mdp__list_t *l, mdp__list_t *n) {
  mdp__list_insert_after(l, n);
}

static inline mdp__list_t *mdp__list_head(const mdp__list_t *l) {
  return l->next == l ? NULL : l->next;
}

/* Moves `n` (in any list or none) to the back of `l`. */
static inline void mdp__list_move_back(mdp__list_t *l, mdp__list_t *n) {
  mdp__list_remove(n);
  mdp__list_push_back(l, n);
}

#endif /* MDP_LIST_H */
