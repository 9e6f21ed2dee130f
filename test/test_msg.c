/* mdp_msg_t: frames move in and out without copies, both ends grow. */
#include "harness.h"

#include <mdp.h>

static void append_prepend_order(void) {
  mdp_msg_t *m = mdp_msg_new();
  CHECK(m != NULL);
  char name[16];
  /* More than the inline capacity at both ends. */
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "b%d", i);
    CHECK_EQ(mdp_msg_append_str(m, name), 0);
  }
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "f%d", i);
    CHECK_EQ(mdp_msg_prepend_mem(m, name, strlen(name)), 0);
  }
  CHECK_EQ(mdp_msg_size(m), 40);
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "f%d", 19 - i);
    CHECK(mdp_msg_frame_eq(m, (size_t)i, name, strlen(name)));
    snprintf(name, sizeof name, "b%d", i);
    CHECK(mdp_msg_frame_eq(m, (size_t)(20 + i), name, strlen(name)));
  }
  CHECK(mdp_msg_frame(m, 40) == NULL);
  CHECK(mdp_msg_data(m, 40) == NULL);
  CHECK_EQ(mdp_msg_frame_size(m, 40), 0);
  mdp_msg_destroy(m);
}

static void move_not_copy(void) {
  mdp_msg_t *m = mdp_msg_new();
  zmq_msg_t big;
  CHECK_EQ(zmq_msg_init_size(&big, 4096), 0);
  memset(zmq_msg_data(&big), 'x', 4096);
  void *data = zmq_msg_data(&big);
  CHECK_EQ(mdp_msg_append(m, &big), 0);
  CHECK_EQ(zmq_msg_size(&big), 0); /* moved out, left empty */
  zmq_msg_close(&big);
  for (int i = 0; i < 30; i++) /* force re-allocations around it */
    CHECK_EQ(mdp_msg_prepend_mem(m, "h", 1), 0);
  CHECK(mdp_msg_data(m, 30) == data);
  mdp_msg_drop_front(m, 30);
  CHECK_EQ(mdp_msg_size(m), 1);
  zmq_msg_t out;
  CHECK_EQ(mdp_msg_pop_front(m, &out), 0);
  CHECK(zmq_msg_data(&out) == data);
  CHECK_EQ(zmq_msg_size(&out), 4096);
  zmq_msg_close(&out);
  CHECK_EQ(mdp_msg_pop_front(m, &out), MDP_EFRAMES);
  zmq_msg_close(&out);
  mdp_msg_destroy(m);
}

static void append_msg_and_dup(void) {
  mdp_msg_t *a = mdp_msg_new(), *b = mdp_msg_new();
  CHECK_EQ(mdp_msg_append_str(a, "a0"), 0);
  for (int i = 0; i < 15; i++)
    CHECK_EQ(mdp_msg_append_str(b, "b"), 0);
  CHECK_EQ(mdp_msg_append_mem(b, NULL, 0), 0);
  CHECK_EQ(mdp_msg_append_msg(a, b), 0);
  CHECK_EQ(mdp_msg_size(a), 17);
  CHECK_EQ(mdp_msg_size(b), 0);
  CHECK_EQ(mdp_msg_bytes(a), 2 + 15);
  CHECK(mdp_msg_frame_eq(a, 16, "", 0));
  /* b is still usable after being emptied */
  CHECK_EQ(mdp_msg_append_str(b, "again"), 0);
  CHECK(mdp_msg_frame_eq(b, 0, "again", 5));
  mdp_msg_t *c = mdp_msg_dup(a);
  CHECK(c != NULL);
  CHECK_EQ(mdp_msg_size(c), 17);
  CHECK(mdp_msg_frame_eq(c, 0, "a0", 2));
  mdp_msg_drop_front(a, 100);
  CHECK_EQ(mdp_msg_size(a), 0);
  CHECK(mdp_msg_frame_eq(c, 1, "b", 1)); /* copies survive the original */
  mdp_msg_destroy(a);
  mdp_msg_destroy(b);
  mdp_msg_destroy(c);
  mdp_msg_destroy(NULL);
}

static void errors_have_names(void) {
  CHECK(strcmp(mdp_err_name(MDP_EHEADER), "EHEADER") == 0);
  CHECK(strcmp(mdp_strerror(MDP_EDELIM), "empty delimiter frame expected") == 0);
  CHECK(strcmp(mdp_strerror(MDP_ENOMEM), "out of memory") == 0);
  CHECK(strcmp(mdp_strerror(-EPIPE), "Broken pipe") == 0); /* via strerror */
  CHECK(strcmp(mdp_strerror(-4999999), "unknown error") == 0);
  CHECK(strcmp(mdp_err_name(12345), "UNKNOWN") == 0);
  CHECK(MDP_EHOSTUNREACH == -EHOSTUNREACH);
}

int main(void) {
  RUN(append_prepend_order);
  RUN(move_not_copy);
  RUN(append_msg_and_dup);
  RUN(errors_have_names);
  return t_done();
}
