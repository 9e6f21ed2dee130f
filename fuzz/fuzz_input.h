/* Shared by the fuzz targets: reading multipart messages out of the fuzzer's
 * bytes.  Every read is bounds-checked and a short input simply ends early,
 * so any byte string is a valid input.
 *
 * A message is
 *   count  one byte: 0..254 frames; 0xff: a two-byte big-endian count
 *          follows (at most FUZZ_FRAMES_MAX; frames past the input's end
 *          are empty), for huge frame counts from a few bytes;
 *   frames each one length byte L and then
 *          L < 0xfd  L bytes of the input (fewer if the input ends);
 *          0xfd      one byte k: the routing identity of peer k % 8
 *                    (so a worker's reply can name a real client);
 *          0xfe      a two-byte big-endian length n, then n bytes of input,
 *                    padded with 'x' if the input ends (oversize frames);
 *          0xff      a two-byte big-endian length n of 'x' bytes
 *          (padding is limited to FUZZ_FILL_BUDGET bytes per input).
 * See fuzz/gen_corpus.py, which writes seeds in this form.
 */
#ifndef MDP_FUZZ_INPUT_H
#define MDP_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "mdp/msg.h"

#define FUZZ_FRAMES_MAX 4096
#define FUZZ_PEERS 8

/* Padding ('x' bytes that cost no input) per input, in all: big enough for
 * any oversize frame the codec or the broker must refuse, small enough to
 * keep every run fast. */
#define FUZZ_FILL_BUDGET (256 * 1024)

typedef struct {
  const uint8_t *p;
  size_t left;
  size_t fill_left; /* FUZZ_FILL_BUDGET at the start */
} fuzz_in_t;

#define FUZZ_IN(data, size) {(data), (size), FUZZ_FILL_BUDGET}

static inline int fuzz_byte(fuzz_in_t *in, uint8_t *out) {
  if (in->left == 0)
    return 0;
  *out = *in->p++;
  in->left--;
  return 1;
}

/* 0 when the input has ended. */
static inline unsigned fuzz_u8(fuzz_in_t *in) {
  uint8_t b = 0;
  fuzz_byte(in, &b);
  return b;
}

static inline unsigned fuzz_u16(fuzz_in_t *in) {
  unsigned hi = fuzz_u8(in);
  return hi << 8 | fuzz_u8(in);
}

/* The identity of peer k: "p0".."p7" (never starts with a zero byte, which
 * ZeroMQ reserves for identities it generates). */
static inline void fuzz_peer_id(unsigned k, char id[3]) {
  id[0] = 'p';
  id[1] = (char)('0' + k % FUZZ_PEERS);
  id[2] = '\0';
}

/* Appends one frame read from the input.  0, or -1 (out of memory). */
static inline int fuzz_frame(fuzz_in_t *in, mdp_msg_t *msg) {
  unsigned len = fuzz_u8(in);
  size_t take = 0, fill = 0;
  char id[3];
  if (len < 0xfd) {
    take = len;
  } else if (len == 0xfd) {
    fuzz_peer_id(fuzz_u8(in), id);
    return mdp_msg_append_mem(msg, id, 2) == 0 ? 0 : -1;
  } else if (len == 0xfe) {
    take = fuzz_u16(in);
  } else {
    fill = fuzz_u16(in);
  }
  if (take > in->left) {
    fill = take - in->left;
    take = in->left;
  }
  if (fill > in->fill_left)
    fill = in->fill_left;
  in->fill_left -= fill;
  zmq_msg_t frame;
  if (zmq_msg_init_size(&frame, take + fill) != 0)
    return -1;
  uint8_t *d = zmq_msg_data(&frame);
  if (take)
    memcpy(d, in->p, take);
  if (fill)
    memset(d + take, 'x', fill);
  in->p += take;
  in->left -= take;
  int rc = mdp_msg_append(msg, &frame);
  zmq_msg_close(&frame);
  return rc == 0 ? 0 : -1;
}

/* Appends a whole message's frames (count, then frames) to `msg`.  0, or -1
 * (out of memory). */
static inline int fuzz_frames(fuzz_in_t *in, mdp_msg_t *msg) {
  unsigned n = fuzz_u8(in);
  if (n == 0xff) {
    n = fuzz_u16(in);
    if (n > FUZZ_FRAMES_MAX)
      n = FUZZ_FRAMES_MAX;
  }
  for (unsigned i = 0; i < n; i++)
    if (fuzz_frame(in, msg) < 0)
      return -1;
  return 0;
}

/* 1 if the two messages have the same frames, byte for byte. */
static inline int fuzz_msg_equal(mdp_msg_t *a, mdp_msg_t *b) {
  size_t n = mdp_msg_size(a);
  if (n != mdp_msg_size(b))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!mdp_msg_frame_eq(a, i, mdp_msg_data(b, i), mdp_msg_frame_size(b, i)))
      return 0;
  return 1;
}

/* A failed check: abort() so that libFuzzer (and the replay test) report it
 * with a stack trace. */
#define FUZZ_ASSERT(cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__,    \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#endif /* MDP_FUZZ_INPUT_H */
