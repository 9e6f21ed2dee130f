/* libFuzzer target: mdp_parse() and mdp_encode() in every role and dialect.
 *
 * Input (any byte string is valid; see fuzz/fuzz_input.h for messages):
 *   p   parse: role (p & 3) % 3: 0 broker, 1 client, 2 worker;
 *       bits 2-4 the accepted dialects mask (0: all)
 *   e   encode: bits 0-2 the dialect, as a raw value (so 0, 3, 5, 6, 7 are
 *       invalid); bits 3-6 the command, raw (0 and 10-15 are invalid);
 *       bit 7: the service is NULL
 *   a message to parse
 *   a message for the encoder: its first frame is the service, its second
 *   the address, the rest the body (missing frames: NULL/0, empty body)
 *
 * Checked:
 *   - parsing never changes the message;
 *   - whatever parses re-encodes to exactly the same frames (copy service
 *     and address, drop the header, encode the same command);
 *   - an error other than MDP_EDIALECT is the same whatever the mask, and
 *     MDP_EDIALECT means the message parses with every dialect accepted;
 *   - whatever mdp_encode() builds parses back, in the role that receives
 *     that command, to the same command, dialect, service and address, with
 *     the body untouched after the header; when it fails, the message is
 *     unchanged.
 *
 * Built with -DMDP_FUZZ_NO_MAIN the entry point is mdp_fuzz_codec_one().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp/codec.h"
#include "mdp/error.h"
#include "mdp/msg.h"
#include "fuzz_input.h"

#ifdef MDP_FUZZ_NO_MAIN
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput mdp_fuzz_codec_one
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const mdp_role_t fc_roles[3] = {MDP_ROLE_BROKER, MDP_ROLE_CLIENT,
                                       MDP_ROLE_WORKER};

/* Parse, then re-encode: must give back the same frames. */
static void fc_roundtrip(mdp_msg_t *msg, mdp_role_t role, unsigned mask) {
  mdp_msg_t *orig = mdp_msg_dup(msg);
  FUZZ_ASSERT(orig != NULL);
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, role, mask, &cmd);
  FUZZ_ASSERT(fuzz_msg_equal(msg, orig)); /* parse changes nothing */
  mdp_cmd_t all;
  int rc_all = mdp_parse(msg, role, MDP_DIALECT_ALL, &all);
  if (rc == MDP_EDIALECT)
    FUZZ_ASSERT(rc_all == 0 && (all.dialect & mask) == 0);
  else
    FUZZ_ASSERT(rc == rc_all);
  if (rc != 0) {
    FUZZ_ASSERT(rc < 0 && rc != MDP_EINVAL);
    mdp_msg_destroy(orig);
    return;
  }
  FUZZ_ASSERT(cmd.body <= mdp_msg_size(msg));
  FUZZ_ASSERT((cmd.dialect & mask) != 0);
  uint8_t service[MDP_SERVICE_MAX], address[MDP_ADDRESS_MAX];
  FUZZ_ASSERT(cmd.service_size <= sizeof service);
  FUZZ_ASSERT(cmd.address_size <= sizeof address);
  if (cmd.service) {
    memcpy(service, cmd.service, cmd.service_size);
    cmd.service = service;
  }
  if (cmd.address) {
    memcpy(address, cmd.address, cmd.address_size);
    cmd.address = address;
  }
  mdp_msg_drop_front(msg, cmd.body);
  rc = mdp_encode(msg, &cmd);
  if (rc != 0) {
    fprintf(stderr, "parsed %s %s, but encoding it fails: %s\n",
            mdp_dialect_name(cmd.dialect), mdp_command_name(cmd.command),
            mdp_strerror(rc));
    FUZZ_ASSERT(rc == 0);
  }
  FUZZ_ASSERT(fuzz_msg_equal(msg, orig));
  mdp_msg_destroy(orig);
}

/* The role that receives `command` (HEARTBEAT, DISCONNECT: both ways). */
static mdp_role_t fc_receiver(mdp_command_t command, int alt) {
  switch (command) {
  case MDP_CLIENT_REQUEST:
  case MDP_WORKER_READY:
  case MDP_WORKER_PARTIAL:
  case MDP_WORKER_FINAL:
    return MDP_ROLE_BROKER;
  case MDP_CLIENT_PARTIAL:
  case MDP_CLIENT_FINAL:
    return MDP_ROLE_CLIENT;
  case MDP_WORKER_REQUEST:
    return MDP_ROLE_WORKER;
  case MDP_WORKER_HEARTBEAT:
  case MDP_WORKER_DISCONNECT:
    return alt ? MDP_ROLE_WORKER : MDP_ROLE_BROKER;
  default:
    return MDP_ROLE_BROKER;
  }
}

static int fc_eq(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
  return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Encode an arbitrary command; what comes out must parse back. */
static void fc_encode(fuzz_in_t *in, unsigned e) {
  mdp_msg_t *parts = mdp_msg_new();
  FUZZ_ASSERT(parts != NULL);
  FUZZ_ASSERT(fuzz_frames(in, parts) == 0);
  mdp_cmd_t cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.dialect = (mdp_dialect_t)(e & 7);
  cmd.command = (mdp_command_t)((e >> 3) & 15);
  cmd.body = 12345; /* ignored */
  /* Take service and address out of `parts` (copies: they must outlive the
   * frames); the rest is the body. */
  uint8_t service[1024], address[1024];
  size_t n = mdp_msg_size(parts);
  if (n > 0 && !(e & 0x80)) {
    cmd.service_size = mdp_msg_frame_size(parts, 0);
    if (cmd.service_size > sizeof service)
      cmd.service_size = sizeof service;
    if (cmd.service_size)
      memcpy(service, mdp_msg_data(parts, 0), cmd.service_size);
    cmd.service = service;
  }
  if (n > 1) {
    cmd.address_size = mdp_msg_frame_size(parts, 1);
    if (cmd.address_size > sizeof address)
      cmd.address_size = sizeof address;
    if (cmd.address_size)
      memcpy(address, mdp_msg_data(parts, 1), cmd.address_size);
    cmd.address = address;
  }
  mdp_msg_drop_front(parts, 2);
  mdp_msg_t *body = mdp_msg_dup(parts);
  FUZZ_ASSERT(body != NULL);
  size_t body_frames = mdp_msg_size(parts);

  int rc = mdp_encode(parts, &cmd);
  if (rc != 0) {
    FUZZ_ASSERT(rc == MDP_EINVAL || rc == MDP_ENOMEM);
    FUZZ_ASSERT(fuzz_msg_equal(parts, body)); /* unchanged on failure */
  } else {
    size_t header = mdp_msg_size(parts) - body_frames;
    for (int alt = 0; alt < 2; alt++) {
      mdp_cmd_t got;
      int prc = mdp_parse(parts, fc_receiver(cmd.command, alt),
                          MDP_DIALECT_ALL, &got);
      if (prc != 0) {
        fprintf(stderr, "encoded %s %s does not parse: %s\n",
                mdp_dialect_name(cmd.dialect), mdp_command_name(cmd.command),
                mdp_strerror(prc));
        FUZZ_ASSERT(prc == 0);
      }
      FUZZ_ASSERT(got.dialect == cmd.dialect);
      FUZZ_ASSERT(got.command == cmd.command);
      FUZZ_ASSERT(got.body == header);
      if (got.service != NULL)
        FUZZ_ASSERT(fc_eq(got.service, got.service_size, cmd.service,
                          cmd.service_size));
      if (got.address != NULL)
        FUZZ_ASSERT(fc_eq(got.address, got.address_size, cmd.address,
                          cmd.address_size));
    }
    mdp_msg_drop_front(parts, header);
    FUZZ_ASSERT(fuzz_msg_equal(parts, body));
  }
  mdp_msg_destroy(body);
  mdp_msg_destroy(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in_t in = FUZZ_IN(data, size);
  unsigned p = fuzz_u8(&in), e = fuzz_u8(&in);
  mdp_role_t role = fc_roles[(p & 3) % 3];
  unsigned mask = (p >> 2) & 7 ? (p >> 2) & 7 : MDP_DIALECT_ALL;

  mdp_msg_t *msg = mdp_msg_new();
  FUZZ_ASSERT(msg != NULL);
  FUZZ_ASSERT(fuzz_frames(&in, msg) == 0);
  fc_roundtrip(msg, role, mask);
  mdp_msg_destroy(msg);

  fc_encode(&in, e);

  /* Bad arguments are refused, not crashed on. */
  mdp_cmd_t cmd;
  mdp_msg_t *empty = mdp_msg_new();
  FUZZ_ASSERT(empty != NULL);
  FUZZ_ASSERT(mdp_parse(NULL, role, mask, &cmd) == MDP_EINVAL);
  FUZZ_ASSERT(mdp_parse(empty, role, mask, NULL) == MDP_EINVAL);
  FUZZ_ASSERT(mdp_parse(empty, (mdp_role_t)(p & 0xf0), mask, &cmd) ==
              MDP_EINVAL);
  FUZZ_ASSERT(mdp_parse(empty, role, 0, &cmd) == MDP_EINVAL);
  FUZZ_ASSERT(mdp_parse(empty, role, mask, &cmd) == MDP_EFRAMES);
  mdp_msg_destroy(empty);
  return 0;
}
