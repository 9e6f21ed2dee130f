/* Internal building blocks of the broker: the hash map and timeout lists. */
#include "harness.h"

#include "../lib/map.h"
#include "../lib/tlist.h"
#include <mdp.h>

/* Inserts and deletes many keys in a pattern that forces long probe runs
 * and wrap-around, checking every key after each phase against a shadow
 * array (backward-shift deletion must never lose a displaced entry). */
static void map_matches_shadow(void) {
  mdp_map_t map;
  mdp_map_init(&map);
  enum { N = 5000 };
  static char keys[N][16];
  static int present[N];
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    CHECK_EQ(mdp_map_put(&map, keys[i], strlen(keys[i]), &present[i]), 0);
    present[i] = 1;
  }
  CHECK_EQ(map.count, N);
  for (int round = 0; round < 3; round++) {
    for (int i = round; i < N; i += 3) { /* delete a third */
      void *v = mdp_map_del(&map, keys[i], strlen(keys[i]));
      CHECK(v == (present[i] ? &present[i] : NULL));
      present[i] = 0;
    }
    for (int i = 0; i < N; i++) {
      void *v = mdp_map_get(&map, keys[i], strlen(keys[i]));
      CHECK(v == (present[i] ? &present[i] : NULL));
    }
    for (int i = round; i < N; i += 6) { /* put half of them back */
      CHECK_EQ(mdp_map_put(&map, keys[i], strlen(keys[i]), &present[i]), 0);
      present[i] = 1;
    }
  }
  size_t count = 0;
  for (int i = 0; i < N; i++)
    count += (size_t)present[i];
  CHECK_EQ(map.count, count);
  /* Replacing a value keeps one entry; binary keys with NULs work. */
  CHECK_EQ(mdp_map_put(&map, "\0a\0", 3, &present[0]), 0);
  CHECK_EQ(mdp_map_put(&map, "\0a\0", 3, &present[1]), 0);
  CHECK(mdp_map_get(&map, "\0a\0", 3) == &present[1]);
  CHECK(mdp_map_get(&map, "\0a", 2) == NULL);
  CHECK_EQ(map.count, count + 1);
  /* Deleting nearly everything shrinks the table, and what is left is
   * still found. */
  size_t big = map.cap;
  for (int i = 0; i < N; i++)
    if (present[i] && i % 100 != 0) {
      CHECK(mdp_map_del(&map, keys[i], strlen(keys[i])) == &present[i]);
      present[i] = 0;
    }
  CHECK(map.cap < big / 4);
  for (int i = 0; i < N; i++)
    CHECK(mdp_map_get(&map, keys[i], strlen(keys[i])) ==
          (present[i] ? &present[i] : NULL));
  CHECK(mdp_map_get(&map, "\0a\0", 3) == &present[1]);
  mdp_map_free(&map);
}

typedef struct {
  mdp_tnode_t node;
  int id;
  uint64_t fired_at;
} item_t;

static int fired[16], n_fired;
static uint64_t fire_time[16];
static void on_expire(mdp_tlist_t *list, mdp_tnode_t *node) {
  item_t *it = mdp_container_of(node, item_t, node);
  fire_time[it->id] = uv_now(list->timer.loop);
  fired[n_fired++] = it->id;
}

static int all_fired(void *arg) { return n_fired >= *(int *)arg; }

static void tlist_order_and_touch(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_tlist_t list;
  CHECK_EQ(mdp_tlist_init(&loop, &list, t_slow(60), on_expire), 0);
  item_t items[3];
  n_fired = 0;
  uint64_t t0 = uv_now(&loop);
  for (int i = 0; i < 3; i++) {
    items[i].id = i;
    mdp_tnode_init(&items[i].node);
    mdp_tlist_touch(&list, &items[i].node);
  }
  /* Keep item 0 alive by touching it for a while; remove item 2. */
  mdp_tlist_remove(&items[2].node);
  uint64_t until = uv_hrtime() + t_slow(150) * 1000000ull;
  while (uv_hrtime() < until) {
    mdp_tlist_touch(&list, &items[0].node);
    t_run_until(&loop, NULL, NULL, 10);
  }
  CHECK_EQ(n_fired, 1); /* item 1 only */
  CHECK_EQ(fired[0], 1);
  CHECK(fire_time[1] - t0 >= t_slow(60));
  int want = 2;
  CHECK(t_run_until(&loop, all_fired, &want, 1000));
  CHECK_EQ(fired[1], 0);
  CHECK(!mdp_tlist_linked(&items[2].node));
  /* A disabled list (duration 0) never holds anything. */
  mdp_tlist_t off;
  CHECK_EQ(mdp_tlist_init(&loop, &off, 0, on_expire), 0);
  mdp_tlist_touch(&off, &items[2].node);
  CHECK(!mdp_tlist_linked(&items[2].node));
  mdp_tlist_close(&list, NULL);
  mdp_tlist_close(&off, NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* With `early`, deadlines close together expire in one timer pass. */
static void tlist_coalesces(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_tlist_t list;
  CHECK_EQ(mdp_tlist_init(&loop, &list, t_slow(60), on_expire), 0);
  list.early = t_slow(30);
  item_t items[3];
  n_fired = 0;
  for (int i = 0; i < 3; i++) {
    items[i].id = i;
    mdp_tnode_init(&items[i].node);
    mdp_tlist_touch(&list, &items[i].node);
    t_run_until(&loop, NULL, NULL, 8); /* deadlines ~8 ms apart */
  }
  uint64_t t0 = items[0].node.stamp;
  int want = 3;
  CHECK(t_run_until(&loop, all_fired, &want, 1000));
  /* One pass: all three at the first deadline, none before it. */
  CHECK_EQ(fire_time[0], fire_time[1]);
  CHECK_EQ(fire_time[1], fire_time[2]);
  CHECK(fire_time[0] - t0 >= t_slow(60));
  CHECK(items[2].node.stamp > items[0].node.stamp); /* really spread */
  mdp_tlist_close(&list, NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(map_matches_shadow);
  RUN(tlist_order_and_touch);
  RUN(tlist_coalesces);
  return t_done();
}
