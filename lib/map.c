/* Byte-string hash map: open addressing, linear probing, backward shift. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "map.h"
#include "mdp/error.h"

static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

/* A keyed multiply-xorshift hash over 8-byte words: fast on the short keys
 * the broker uses (identities, service names) and seeded per map. */
static uint64_t hash_bytes(uint64_t seed, const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = mix(h ^ w);
    p += 8;
    len -= 8;
  }
  /* The last 0-7 bytes, little-endian, without a memcpy call of a
   * variable length (most keys are a 5-byte identity or a short name). */
  uint64_t w = 0;
  switch (len) {
  case 7: w |= (uint64_t)p[6] << 48; /* fall through */
  case 6: w |= (uint64_t)p[5] << 40; /* fall through */
  case 5: w |= (uint64_t)p[4] << 32; /* fall through */
  case 4: w |= (uint64_t)p[3] << 24; /* fall through */
  case 3: w |= (uint64_t)p[2] << 16; /* fall through */
  case 2: w |= (uint64_t)p[1] << 8;  /* fall through */
  case 1: w |= (uint64_t)p[0];       /* fall through */
  default: break;
  }
  h = mix(h ^ w ^ ((uint64_t)len << 56));
  return h ? h : 1; /* 0 marks an empty slot */
}

void mdp__map_init(mdp__map_t *map) {
  map->slots = NULL;
  map->cap = 0;
  map->count = 0;
  uint64_t seed = 0;
  if (uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL) != 0)
    seed = uv_hrtime() ^ (uint64_t)(uintptr_t)map;
  map->seed = seed;
}

void mdp__map_free(mdp__map_t *map) {
  free(map->slots);
  map->slots = NULL;
  map->cap = map->count = 0;
}

static mdp__map_slot_t *find(const mdp__map_t *map, const void *key, size_t len,
                            uint64_t hash) {
  if (map->cap == 0)
    return NULL;
  size_t mask = map->cap - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    mdp__map_slot_t *s = &map->slots[i];
    if (s->hash == 0)
      return NULL;
    if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0)
      return s;
  }
}

void *mdp__map_get(const mdp__map_t *map, const void *key, size_t len) {
  if (map->count == 0)
    return NULL;
  mdp__map_slot_t *s = find(map, key, len, hash_bytes(map->seed, key, len));
  return s ? s->value : NULL;
}

static void place(mdp__map_slot_t *slots, size_t cap, mdp__map_slot_t *entry) {
  size_t mask = cap - 1;
  size_t i = entry->hash & mask;
  while (slots[i].hash != 0)
    i = (i + 1) & mask;
  slots[i] = *entry;
}

static int resize(mdp__map_t *map, size_t cap) {
  mdp__map_slot_t *slots = calloc(cap, sizeof *slots);
  if (slots == NULL)
    return MDP_ENOMEM;
  for (size_t i = 0; i < map->cap; i++)
    if (map->slots[i].hash)
      place(slots, cap, &map->slots[i]);
  free(map->slots);
  map->slots = slots;
  map->cap = cap;
  return 0;
}

int mdp__map_put(mdp__map_t *map, const void *key, size_t len, void *value) {
  uint64_t hash = hash_bytes(map->seed, key, len);
  mdp__map_slot_t *s = find(map, key, len, hash);
  if (s) {
    s->key = key;
    s->value = value;
    return 0;
  }
  /* Keep the load factor at or below 1/2: probes stay short. */
  if ((map->count + 1) * 2 > map->cap &&
      resize(map, map->cap ? map->cap * 2 : 16) < 0)
    return MDP_ENOMEM;
  mdp__map_slot_t entry = {key, len, hash, value};
  place(map->slots, map->cap, &entry);
  map->count++;
  return 0;
}

void *mdp__map_del(mdp__map_t *map, const void *key, size_t len) {
  if (map->count == 0)
    return NULL;
  mdp__map_slot_t *s = find(map, key, len, hash_bytes(map->seed, key, len));
  if (s == NULL)
    return NULL;
  void *value = s->value;
  size_t mask = map->cap - 1;
  size_t hole = (size_t)(s - map->slots);
  /* Backward shift: pull later entries of the probe run into the hole when
   * the hole lies between their home slot and where they sit. */
  for (size_t i = (hole + 1) & mask; map->slots[i].hash; i = (i + 1) & mask) {
    size_t home = map->slots[i].hash & mask;
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      map->slots[hole] = map->slots[i];
      hole = i;
    }
  }
  memset(&map->slots[hole], 0, sizeof map->slots[hole]);
  map->count--;
  /* Shrink after a burst (e.g. thousands of short-lived services), so that
   * walking the map (mmi.services) costs what it holds, not what it once
   * held.  A quarter of the capacity keeps the load at or below 1/2; if
   * memory is short, the map simply stays large. */
  if (map->cap > 64 && map->count * 8 < map->cap)
    (void)resize(map, map->cap / 4);
  return value;
}
