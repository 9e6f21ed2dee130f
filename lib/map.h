/* A hash map from byte strings to pointers (internal).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so a map that churns does not degrade).  The map does not copy
 * keys: a key must stay valid, unchanged, while its entry is in the map
 * (elements keep their own key, e.g. a worker's identity).  Hashes are keyed
 * with a per-map random seed so that peers, who choose their own identities,
 * cannot predict collisions.
 */
#ifndef MDP_MAP_H
#define MDP_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const void *key;
  size_t len;
  uint64_t hash; /* 0 marks an empty slot */
  void *value;
} mdp__map_slot_t;

typedef struct {
  mdp__map_slot_t *slots;
  size_t cap; /* a power of two, or 0 */
  size_t count;
  uint64_t seed;
} mdp__map_t;

void mdp__map_init(mdp__map_t *map);
void mdp__map_free(mdp__map_t *map); /* frees the table, not the values */

/* The value stored under the key, or NULL. */
void *mdp__map_get(const mdp__map_t *map, const void *key, size_t len);

/* Stores `value` (not NULL) under the key, replacing any old value.
 * 0 or MDP_ENOMEM. */
int mdp__map_put(mdp__map_t *map, const void *key, size_t len, void *value);

/* Removes the key; returns its value, or NULL if it was absent. */
void *mdp__map_del(mdp__map_t *map, const void *key, size_t len);

/* Iteration: for (size_t i = 0; i < map->cap; i++) if (map->slots[i].hash)
 * ...; do not change the map while iterating. */

#endif /* MDP_MAP_H */
