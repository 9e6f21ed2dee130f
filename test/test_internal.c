/* Internal building blocks of the broker: the hash map, timeout lists, and
 * the receive path's recorded frame sizes. */
#include "harness.h"

#include <string.h>

#include "../lib/codec_internal.h"
#include "../lib/map.h"
#include "../lib/msg_internal.h"
#include "../lib/reactor_internal.h"
#include "../lib/tlist.h"
#include <mdp.h>

/* Inserts and deletes many keys in a pattern that forces long probe runs
 * and wrap-around, checking every key after each phase against a shadow
 * array (backward-shift deletion must never lose a displaced entry). */
static void map_matches_shadow(void) {
  mdp__map_t map;
  mdp__map_init(&map);
  enum { N = 5000 };
  static char keys[N][16];
  static int present[N];
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    CHECK_EQ(mdp__map_put(&map, keys[i], strlen(keys[i]), &present[i]), 0);
    present[i] = 1;
  }
  CHECK_EQ(map.count, N);
  for (int round = 0; round < 3; round++) {
    for (int i = round; i < N; i += 3) { /* delete a third */
      void *v = mdp__map_del(&map, keys[i], strlen(keys[i]));
      CHECK(v == (present[i] ? &present[i] : NULL));
      present[i] = 0;
    }
    for (int i = 0; i < N; i++) {
      void *v = mdp__map_get(&map, keys[i], strlen(keys[i]));
      CHECK(v == (present[i] ? &present[i] : NULL));
    }
    for (int i = round; i < N; i += 6) { /* put half of them back */
      CHECK_EQ(mdp__map_put(&map, keys[i], strlen(keys[i]), &present[i]), 0);
      present[i] = 1;
    }
  }
  size_t count = 0;
  for (int i = 0; i < N; i++)
    count += (size_t)present[i];
  CHECK_EQ(map.count, count);
  /* Replacing a value keeps one entry; binary keys with NULs work. */
  CHECK_EQ(mdp__map_put(&map, "\0a\0", 3, &present[0]), 0);
  CHECK_EQ(mdp__map_put(&map, "\0a\0", 3, &present[1]), 0);
  CHECK(mdp__map_get(&map, "\0a\0", 3) == &present[1]);
  CHECK(mdp__map_get(&map, "\0a", 2) == NULL);
  CHECK_EQ(map.count, count + 1);
  /* Deleting nearly everything shrinks the table, and what is left is
   * still found. */
  size_t big = map.cap;
  for (int i = 0; i < N; i++)
    if (present[i] && i % 100 != 0) {
      CHECK(mdp__map_del(&map, keys[i], strlen(keys[i])) == &present[i]);
      present[i] = 0;
    }
  CHECK(map.cap < big / 4);
  for (int i = 0; i < N; i++)
    CHECK(mdp__map_get(&map, keys[i], strlen(keys[i])) ==
          (present[i] ? &present[i] : NULL));
  CHECK(mdp__map_get(&map, "\0a\0", 3) == &present[1]);
  mdp__map_free(&map);
}

typedef struct {
  mdp__tnode_t node;
  int id;
} item_t;

/* What the expiry callback saw: ids in order, and the pass they fired in. */
static int fired[16], n_fired;
static uint64_t fired_in[16], pass_now;
static mdp__tlist_t *retouch_list; /* if set, the callback re-touches id 0 */
static void on_expire(mdp__tlist_t *list, mdp__tnode_t *node) {
  item_t *it = mdp__container_of(node, item_t, node);
  CHECK(!mdp__tlist_linked(node)); /* removed before the callback */
  fired_in[it->id] = pass_now;
  fired[n_fired++] = it->id;
  if (retouch_list && it->id == 0)
    mdp__tlist_touch_at(list, node, pass_now);
}

static uint64_t expire_at(mdp__tlist_t *list, uint64_t now) {
  pass_now = now;
  return mdp__tlist_expire(list, now);
}

static void items_init(item_t *items, int n) {
  for (int i = 0; i < n; i++) {
    items[i].id = i;
    mdp__tnode_init(&items[i].node);
  }
  n_fired = 0;
  retouch_list = NULL;
}

/* Expiry order, touching and removal, on an injected clock: exact. */
static void tlist_order_and_touch(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp__tlist_t list;
  CHECK_EQ(mdp__tlist_init(&loop, &list, 60, on_expire), 0);
  item_t items[3];
  items_init(items, 3);
  for (int i = 0; i < 3; i++)
    mdp__tlist_touch_at(&list, &items[i].node, 1000);
  mdp__tlist_remove(&items[2].node);
  mdp__tlist_touch_at(&list, &items[0].node, 1050); /* item 0 kept alive */
  CHECK_EQ(expire_at(&list, 1059), 1); /* nothing due yet: 1 ms to go */
  CHECK_EQ(n_fired, 0);
  CHECK_EQ(expire_at(&list, 1060), 50); /* item 1 due; item 0 at 1110 */
  CHECK_EQ(n_fired, 1);
  CHECK_EQ(fired[0], 1);
  mdp__tlist_touch_at(&list, &items[0].node, 1100);
  CHECK_EQ(expire_at(&list, 1110), 50); /* touched again: due at 1160 */
  CHECK_EQ(n_fired, 1);
  /* A late pass (the loop stalled) expires what is due, nothing more. */
  CHECK_EQ(expire_at(&list, 5000), MDP__TLIST_NONE);
  CHECK_EQ(n_fired, 2);
  CHECK_EQ(fired[1], 0);
  CHECK(!mdp__tlist_linked(&items[2].node)); /* removed: never fires */
  /* A callback may touch the node it is given: it is due again later. */
  items_init(items, 2);
  retouch_list = &list;
  mdp__tlist_touch_at(&list, &items[0].node, 6000);
  mdp__tlist_touch_at(&list, &items[1].node, 6010);
  CHECK_EQ(expire_at(&list, 6060), 10); /* 0 fired, re-touched at 6060 */
  CHECK_EQ(expire_at(&list, 6070), 50); /* 1 fired; 0 due at 6120 */
  CHECK_EQ(n_fired, 2);
  CHECK_EQ(fired[0], 0);
  CHECK_EQ(fired[1], 1);
  retouch_list = NULL;
  /* *stop set by a callback ends the pass with the rest still listed. */
  int stop = 1;
  list.stop = &stop;
  mdp__tlist_touch_at(&list, &items[1].node, 6060);
  CHECK_EQ(expire_at(&list, 7000), MDP__TLIST_NONE);
  CHECK_EQ(n_fired, 3);
  CHECK(mdp__tlist_linked(&items[1].node));
  list.stop = NULL;
  /* A disabled list (duration 0) never holds anything. */
  mdp__tlist_t off;
  CHECK_EQ(mdp__tlist_init(&loop, &off, 0, on_expire), 0);
  mdp__tlist_touch(&off, &items[2].node);
  CHECK(!mdp__tlist_linked(&items[2].node));
  mdp__tlist_close(&list, NULL);
  mdp__tlist_close(&off, NULL);
  CHECK(!mdp__tlist_linked(&items[1].node));
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* With `early`, deadlines close together expire in one pass; with `late`,
 * the next pass is put off so later ones join it. */
static void tlist_coalesces(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp__tlist_t list;
  CHECK_EQ(mdp__tlist_init(&loop, &list, 60, on_expire), 0);
  item_t items[4];
  items_init(items, 4);
  for (int i = 0; i < 4; i++) /* deadlines 1060, 1068, 1076, 1200 */
    mdp__tlist_touch_at(&list, &items[i].node, i < 3 ? 1000 + 8 * i : 1140);
  /* Without coalescing, one pass per deadline. */
  CHECK_EQ(expire_at(&list, 1060), 8);
  CHECK_EQ(n_fired, 1);
  for (int i = 0; i < 4; i++)
    mdp__tlist_remove(&items[i].node);
  items_init(items, 4);
  for (int i = 0; i < 4; i++)
    mdp__tlist_touch_at(&list, &items[i].node, i < 3 ? 1000 + 8 * i : 1140);
  list.early = 30;
  list.late = 20;
  /* One pass for the three within 30 ms, none for the one beyond; the next
   * pass is 20 ms after the remaining deadline. */
  CHECK_EQ(expire_at(&list, 1060), 1200 - 1060 + 20);
  CHECK_EQ(n_fired, 3);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(fired[i], i);
  CHECK(mdp__tlist_linked(&items[3].node));
  mdp__tlist_close(&list, NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

static int all_fired(void *arg) { return n_fired >= *(int *)arg; }
static void on_expire_now(mdp__tlist_t *list, mdp__tnode_t *node) {
  pass_now = uv_now(list->timer.loop);
  on_expire(list, node);
}

/* On a real loop the timer runs the passes: every node fires once, in
 * order, never before its deadline (lower bounds only: a slow machine may
 * fire late, never early). */
static void tlist_on_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp__tlist_t list;
  CHECK_EQ(mdp__tlist_init(&loop, &list, 30, on_expire_now), 0);
  item_t items[3];
  items_init(items, 3);
  uint64_t t0 = uv_now(&loop);
  for (int i = 0; i < 3; i++)
    mdp__tlist_touch(&list, &items[i].node);
  mdp__tlist_remove(&items[1].node);
  int want = 2;
  CHECK(t_run_until(&loop, all_fired, &want, 5000));
  CHECK_EQ(n_fired, 2);
  CHECK_EQ(fired[0], 0);
  CHECK_EQ(fired[1], 2);
  CHECK(fired_in[0] >= t0 + 30);
  CHECK(fired_in[2] >= t0 + 30);
  mdp__tlist_close(&list, NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}


/* A message emptied from the front again and again and refilled at the back
 * (a receive buffer reused after each dropped message) keeps a bounded
 * array: growing it does not carry the dropped frames' slots along. */
static void msg_reused_after_drop_stays_bounded(void) {
  mdp_msg_t *m = mdp__msg_new_at(MDP_MSG_RX_FRONT_ROOM);
  CHECK(m != NULL);
  size_t most = 0;
  for (int round = 0; round < 2000; round++) {
    for (int i = 0; i < 40; i++)
      CHECK_EQ(mdp_msg_append_mem(m, "f", 1), 0);
    mdp_msg_drop_front(m, (size_t)-1);
    CHECK_EQ(mdp_msg_size(m), 0);
    most = m->cap > most ? m->cap : most;
  }
  /* 40 frames and the front room, with the re-centring's slack. */
  CHECK(most <= 4 * (40 + MDP_MSG_FRONT_ROOM));
  mdp_msg_destroy(m);
}


/* The reactor records each received frame's size (zmq_msg_recv's return)
 * for the first MDP__REACTOR_RX_SIZES frames, and the broker's parser reads
 * those instead of asking libzmq.  Messages go through a real reactor
 * (PAIR over inproc); for each one the recorded sizes must equal the
 * frames' and mdp__parse_sized() must answer exactly as mdp_parse(): frame
 * sizes around ZeroMQ's inline-message limit (33 bytes), at and past
 * MDP_SERVICE_MAX, messages of 7, 8, 9 and 10 frames (past the recorded
 * ones the parser asks libzmq), and valid and invalid MDP messages of
 * every dialect, after longer messages (no stale size may leak in). */
typedef struct {
  int expected;
  int received;
  int bad_size;   /* a recorded size that differs from the frame's */
  int bad_parse;  /* mdp__parse_sized and mdp_parse disagree */
  int parsed_ok;  /* messages both parsed as valid */
} sizes_seen_t;

static void sizes_recv_cb(mdp_reactor_t *reactor, mdp_msg_t *msg) {
  sizes_seen_t *seen = mdp_reactor_get_data(reactor);
  const uint32_t *sizes = mdp__reactor_rx_sizes(reactor);
  size_t n = mdp_msg_size(msg);
  for (size_t i = 0; i < n && i < MDP__REACTOR_RX_SIZES; i++)
    if (sizes[i] != mdp_msg_frame_size(msg, i))
      seen->bad_size++;
  for (int role = MDP_ROLE_BROKER; role <= MDP_ROLE_WORKER; role++) {
    mdp_cmd_t a, b;
    memset(&a, 0x55, sizeof a);
    memset(&b, 0x55, sizeof b);
    int ra = mdp_parse(msg, (mdp_role_t)role, MDP_DIALECT_ALL, &a);
    int rb = mdp__parse_sized(msg, sizes, MDP__REACTOR_RX_SIZES,
                              (mdp_role_t)role, MDP_DIALECT_ALL, &b);
    if (ra != rb || (ra == 0 && (a.dialect != b.dialect ||
                                 a.command != b.command ||
                                 a.service != b.service ||
                                 a.service_size != b.service_size ||
                                 a.address != b.address ||
                                 a.address_size != b.address_size ||
                                 a.body != b.body)))
      seen->bad_parse++;
    else if (ra == 0)
      seen->parsed_ok++;
  }
  seen->received++;
  mdp_msg_destroy(msg);
}

/* Sends the frames of `sizes` (filled with 'x'), or `texts` when given. */
static int send_frames_of(void *s, const size_t *sizes, const char **texts,
                          size_t n) {
  static char fill[70000];
  memset(fill, 'x', sizeof fill);
  for (size_t i = 0; i < n; i++) {
    const char *data = texts && texts[i] ? texts[i] : fill;
    size_t size = texts && texts[i] ? strlen(texts[i]) : sizes[i];
    if (zmq_send(s, data, size, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
      return -1;
  }
  return 0;
}

static int sizes_all_received(void *arg) {
  sizes_seen_t *seen = arg;
  return seen->received >= seen->expected;
}

static void reactor_records_frame_sizes(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  void *ctx = mdp_zmq_context();
  void *in = zmq_socket(ctx, ZMQ_PAIR), *out = zmq_socket(ctx, ZMQ_PAIR);
  CHECK(in != NULL && out != NULL);
  int zero = 0;
  zmq_setsockopt(out, ZMQ_LINGER, &zero, sizeof zero);
  CHECK_EQ(zmq_bind(in, "inproc://rx-sizes"), 0);
  CHECK_EQ(zmq_connect(out, "inproc://rx-sizes"), 0);
  sizes_seen_t seen = {0};
  mdp_reactor_t *r = NULL;
  CHECK_EQ(mdp_reactor_new(&loop, in, 1, sizes_recv_cb, &r), 0);
  mdp_reactor_set_data(r, &seen);
  CHECK_EQ(mdp_reactor_start(r), 0);

  static const size_t around_inline[] = {0, 1, 6, 32, 33, 34, 255, 256};
  static const size_t ten[] = {70000, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  static const size_t long_first[] = {256, 6, 1, 3, 16};
  static const size_t nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 6};
  char svc255[256], svc256[257];
  memset(svc255, 's', 255);
  svc255[255] = '\0';
  memset(svc256, 's', 256);
  svc256[256] = '\0';
  /* NULL text: a frame of the size in sz[] (only the size matters). */
  struct {
    const char *t[8];
    size_t sz[8];
    size_t n;
  } mdp[] = {
      {{MDP_CLIENT_HEADER, "\x01", "echo", "body"}, {0}, 4},
      {{MDP_CLIENT_HEADER, "\x01", svc255, "body"}, {0}, 4},
      {{MDP_CLIENT_HEADER, "\x01", svc256, "body"}, {0}, 4},
      {{MDP_WORKER_HEADER, "\x04", "abcde", "", "body"}, {0}, 5},
      {{MDP_WORKER_HEADER, "\x04", NULL, "", "body"}, {0, 0, 0}, 5},
      {{MDP_WORKER_HEADER, "\x04", "addr", "x", "body"}, {0}, 5},
      {{MDP_WORKER_HEADER, "\x01", "echo"}, {0}, 3},
      {{MDP_WORKER_HEADER, "\x05"}, {0}, 2},
      {{"", MDP_CLIENT_HEADER, "\x02", "echo", "body"}, {0}, 5},
      {{"", MDP_CLIENT_HEADER_01, "echo", "body"}, {0}, 4},
      {{MDP_CLIENT_HEADER, "\x01\x01", "echo", "body"}, {0}, 4},
      {{"MDPC021", "\x01", "echo", "body"}, {0}, 4},
      {{""}, {0}, 1},
  };
  CHECK_EQ(send_frames_of(out, around_inline, NULL, 8), 0);
  CHECK_EQ(send_frames_of(out, ten, NULL, 10), 0);
  CHECK_EQ(send_frames_of(out, nine, NULL, 9), 0);
  CHECK_EQ(send_frames_of(out, long_first, NULL, 5), 0);
  for (size_t i = 0; i < sizeof mdp / sizeof mdp[0]; i++)
    CHECK_EQ(send_frames_of(out, mdp[i].sz, mdp[i].t, mdp[i].n), 0);
  seen.expected = 4 + (int)(sizeof mdp / sizeof mdp[0]);
  CHECK(t_run_until(&loop, sizes_all_received, &seen, 10000));
  CHECK_EQ(seen.received, seen.expected);
  CHECK_EQ(seen.bad_size, 0);
  CHECK_EQ(seen.bad_parse, 0);
  /* Valid for some role: 2 REQUESTs (echo, a 255-byte service), FINAL,
   * READY, HEARTBEAT (the broker and the worker both take it), Majortomo's
   * REQUEST and MDP/0.1's (to a broker, and a REPLY to a client). */
  CHECK_EQ(seen.parsed_ok, 9);
  mdp_reactor_close(r, NULL);
  zmq_close(out);
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  RUN(map_matches_shadow);
  RUN(msg_reused_after_drop_stays_bounded);
  RUN(tlist_order_and_touch);
  RUN(tlist_coalesces);
  RUN(tlist_on_loop);
  RUN(reactor_records_frame_sizes);
  t_context_term();
  return t_done();
}
