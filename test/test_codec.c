/* The codec against the shared wire vectors (test/vectors.txt), plus one
 * hand-written message per error code.
 *
 * The vectors are the ground truth other implementations are checked
 * against, so every valid line must parse to what the line says and encode
 * back to the same bytes, and every invalid line must be rejected.  The
 * expected layout of a valid line (where the service, address and body are)
 * is worked out here from the line's dialect and command, independently of
 * the codec's tables, so a wrong table row cannot agree with itself.
 */
#include <zmq.h>

#include "mdp/codec.h"
#include "mdp/error.h"
#include "mdp/msg.h"

#include "harness.h"

#include "vectors.h"


/* A parser that dropped lines (a bad escape, a missed zero-frame line)
 * would still pass every per-line test, so pin the file's shape. */
static void vectors_count(void) {
  size_t valid[8] = {0}, invalid[8] = {0}, zero = 0;
  for (size_t i = 0; i < nvectors; i++) {
    if (vectors[i].valid)
      valid[vectors[i].dialect]++;
    else
      invalid[vectors[i].dialect]++;
    zero += vectors[i].nframes == 0;
  }
  CHECK_EQ(nvectors, 51);
  CHECK_EQ(valid[MDP_DIALECT_RFC18], 18);
  CHECK_EQ(invalid[MDP_DIALECT_RFC18], 16);
  CHECK_EQ(valid[MDP_DIALECT_MAJORTOMO], 9);
  CHECK_EQ(invalid[MDP_DIALECT_MAJORTOMO], 0);
  CHECK_EQ(valid[MDP_DIALECT_MDP01], 7);
  CHECK_EQ(invalid[MDP_DIALECT_MDP01], 1);
  CHECK_EQ(zero, 1);
}

/* The escapes themselves, on lines known to use them. */
static void vectors_escapes(void) {
  const vector_t *v = NULL;
  for (size_t i = 0; i < nvectors && v == NULL; i++)
    if (vectors[i].nframes == 6 && vectors[i].frames[4].size == 3)
      v = &vectors[i];
  CHECK(v != NULL);
  CHECK(memcmp(v->frames[4].data, "\x00\xff\x00", 3) == 0);
  CHECK_EQ(v->frames[3].size, 0);

  vector_t t;
  CHECK(parse_line("rfc18 client REQUEST valid : \"a\\\\b\" | \"\\\"\" | "
                   "\"\\x4a\\x4B\"",
                   &t) == NULL);
  CHECK_EQ(t.nframes, 3);
  CHECK(t.frames[0].size == 3 && memcmp(t.frames[0].data, "a\\b", 3) == 0);
  CHECK(t.frames[1].size == 1 && t.frames[1].data[0] == '"');
  CHECK(t.frames[2].size == 2 && memcmp(t.frames[2].data, "JK", 2) == 0);
  CHECK(parse_line("rfc18 client REQUEST valid :", &t) == NULL);
  CHECK_EQ(t.nframes, 0);
  CHECK(parse_line("rfc18 client REQUEST valid : \"\\x4\"", &t) != NULL);
  CHECK(parse_line("rfc18 client REQUEST valid : \"\\n\"", &t) != NULL);
  CHECK(parse_line("rfc18 client REQUEST valid : \"a\" |", &t) != NULL);
  CHECK(parse_line("rfc18 client REQUEST valid : \"a", &t) != NULL);
  CHECK(parse_line("rfc19 client REQUEST valid : \"a\"", &t) != NULL);
}


static int msg_equals_vector(mdp_msg_t *msg, const vector_t *v) {
  if (mdp_msg_size(msg) != v->nframes)
    return 0;
  for (size_t i = 0; i < v->nframes; i++)
    if (!mdp_msg_frame_eq(msg, i, v->frames[i].data, v->frames[i].size))
      return 0;
  return 1;
}

/* Where the service, address and body of a valid line are, from WIRE.md
 * (-1: none). */
static void vector_layout(const vector_t *v, long *service, long *address,
                          long *body) {
  int client_sub = v->command == MDP_CLIENT_REQUEST ||
                   v->command == MDP_CLIENT_PARTIAL ||
                   v->command == MDP_CLIENT_FINAL;
  long i = v->dialect == MDP_DIALECT_RFC18 ? 0 : 1; /* leading "" */
  i++;                                              /* header */
  if (!(client_sub && v->dialect == MDP_DIALECT_MDP01))
    i++; /* command frame */
  *service = *address = -1;
  if (client_sub) {
    if (!(v->dialect == MDP_DIALECT_MAJORTOMO && v->role == MDP_ROLE_CLIENT))
      *service = i++;
    *body = i;
  } else if (v->command == MDP_WORKER_READY) {
    *service = i++;
    *body = i;
  } else if (v->command == MDP_WORKER_REQUEST ||
             v->command == MDP_WORKER_PARTIAL ||
             v->command == MDP_WORKER_FINAL) {
    *address = i;
    *body = i + 2;
  } else {
    *body = i;
  }
}

static int is_parse_error(int rc) {
  return rc == MDP_EFRAMES || rc == MDP_EHEADER || rc == MDP_ECOMMAND ||
         rc == MDP_EEXTRA || rc == MDP_EDELIM || rc == MDP_ESERVICE ||
         rc == MDP_EADDRESS || rc == MDP_EDIALECT;
}

static const vector_t *current; /* named in the diagnostics of a failure */

static void check_valid(const vector_t *v, mdp_msg_t *msg, unsigned mask) {
  mdp_cmd_t cmd;
  long service, address, body;
  int rc;

  vector_layout(v, &service, &address, &body);
  memset(&cmd, 0xa5, sizeof(cmd)); /* no field may be left unset */
  rc = mdp_parse(msg, v->role, mask, &cmd);
  if (rc != 0)
    printf("# mdp_parse: %s\n", mdp_err_name(rc));
  CHECK_EQ(rc, 0);
  CHECK_EQ(cmd.dialect, v->dialect);
  CHECK_EQ(cmd.command, v->command);
  CHECK_EQ(cmd.body, body);
  if (service < 0) {
    CHECK(cmd.service == NULL);
    CHECK_EQ(cmd.service_size, 0);
  } else {
    /* A pointer into the frame, not a copy. */
    CHECK(cmd.service == mdp_msg_data(msg, (size_t)service));
    CHECK_EQ(cmd.service_size, v->frames[service].size);
  }
  if (address < 0) {
    CHECK(cmd.address == NULL);
    CHECK_EQ(cmd.address_size, 0);
  } else {
    CHECK(cmd.address == mdp_msg_data(msg, (size_t)address));
    CHECK_EQ(cmd.address_size, v->frames[address].size);
  }
  CHECK(msg_equals_vector(msg, v)); /* parsing changed nothing */
}

static void vectors_valid_parse(void) {
  size_t checked = 0;
  for (size_t i = 0; i < nvectors; i++) {
    current = &vectors[i];
    if (!current->valid)
      continue;
    mdp_msg_t *msg = vector_msg(current);
    CHECK(msg != NULL);
    check_valid(current, msg, current->dialect);
    check_valid(current, msg, MDP_DIALECT_ALL);
    mdp_msg_destroy(msg);
    if (t_failed_now_) {
      printf("# ^ vectors.txt line %d\n", current->line);
      return;
    }
    checked++;
  }
  CHECK_EQ(checked, 34);
}

static void check_invalid(const vector_t *v, mdp_msg_t *msg) {
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, v->role, v->dialect, &cmd);
  printf("# line %d: %s\n", v->line, mdp_err_name(rc));
  CHECK(is_parse_error(rc));
  CHECK(msg_equals_vector(msg, v));
}

static void vectors_invalid_rejected(void) {
  size_t checked = 0;
  for (size_t i = 0; i < nvectors; i++) {
    current = &vectors[i];
    if (current->valid)
      continue;
    mdp_msg_t *msg = vector_msg(current);
    CHECK(msg != NULL);
    check_invalid(current, msg);
    mdp_msg_destroy(msg);
    if (t_failed_now_) {
      printf("# ^ vectors.txt line %d\n", current->line);
      return;
    }
    checked++;
  }
  CHECK_EQ(checked, 17);
}

/* Parse, strip the header, encode the same command onto the body: the
 * frames must come back byte for byte. */
static void check_roundtrip(const vector_t *v, mdp_msg_t *msg) {
  uint8_t service[MDP_SERVICE_MAX], address[MDP_ADDRESS_MAX];
  mdp_cmd_t cmd;
  CHECK_EQ(mdp_parse(msg, v->role, v->dialect, &cmd), 0);
  /* The pointers die with the header frames: keep copies. */
  if (cmd.service != NULL) {
    memcpy(service, cmd.service, cmd.service_size);
    cmd.service = service;
  }
  if (cmd.address != NULL) {
    memcpy(address, cmd.address, cmd.address_size);
    cmd.address = address;
  }
  mdp_msg_drop_front(msg, cmd.body);
  CHECK_EQ(mdp_msg_size(msg), v->nframes - cmd.body);
  int rc = mdp_encode(msg, &cmd);
  if (rc != 0)
    printf("# mdp_encode: %s\n", mdp_err_name(rc));
  CHECK_EQ(rc, 0);
  CHECK(msg_equals_vector(msg, v));
}

static void vectors_valid_encode(void) {
  size_t checked = 0;
  for (size_t i = 0; i < nvectors; i++) {
    current = &vectors[i];
    if (!current->valid)
      continue;
    mdp_msg_t *msg = vector_msg(current);
    CHECK(msg != NULL);
    check_roundtrip(current, msg);
    mdp_msg_destroy(msg);
    if (t_failed_now_) {
      printf("# ^ vectors.txt line %d\n", current->line);
      return;
    }
    checked++;
  }
  CHECK_EQ(checked, 34);
}

/* ---- hand-written messages --------------------------------------------- */

typedef struct {
  const void *data;
  size_t size;
} fr_t;

#define S(s) {(s), sizeof(s) - 1}
#define B(n) {big, (n)} /* n bytes of 'x' */
#define MSG(...)                                                               \
  msg_make((const fr_t[]){__VA_ARGS__},                                        \
           sizeof((const fr_t[]){__VA_ARGS__}) / sizeof(fr_t))
#define ADDR "\x00\x6b\x8b\x45\x67"

static char big[1024];

static mdp_msg_t *msg_make(const fr_t *frames, size_t n) {
  mdp_msg_t *msg = mdp_msg_new();
  if (msg == NULL)
    abort();
  for (size_t i = 0; i < n; i++)
    if (mdp_msg_append_mem(msg, frames[i].data, frames[i].size) != 0)
      abort();
  return msg;
}

/* Parses and destroys `msg`, returning mdp_parse's result. */
static int parse_as(mdp_msg_t *msg, mdp_role_t role, unsigned mask) {
  mdp_cmd_t cmd;
  int rc = mdp_parse(msg, role, mask, &cmd);
  mdp_msg_destroy(msg);
  return rc;
}

#define BROKER MDP_ROLE_BROKER
#define CLIENT MDP_ROLE_CLIENT
#define WORKER MDP_ROLE_WORKER
#define ALL MDP_DIALECT_ALL
#define RFC18 MDP_DIALECT_RFC18
#define MAJ MDP_DIALECT_MAJORTOMO
#define MDP01 MDP_DIALECT_MDP01

static void err_frames(void) {
  mdp_msg_t *empty = mdp_msg_new();
  CHECK(empty != NULL);
  CHECK_EQ(parse_as(empty, BROKER, ALL), MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("")), BROKER, ALL), MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPC02")), BROKER, ALL), MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01")), BROKER, ALL), MDP_EFRAMES);
  /* A body is at least one frame. */
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), S("echo")), BROKER, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x03"), S("echo")), CLIENT, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC02"), S("\x04")), CLIENT, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC01"), S("echo")), BROKER, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x01")), BROKER, ALL), MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(ADDR)), BROKER, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(ADDR), S("")), BROKER, ALL),
           MDP_EFRAMES);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x02"), S(ADDR), S("")), WORKER, ALL),
           MDP_EFRAMES);
}

static void err_header(void) {
  CHECK_EQ(parse_as(MSG(S("MDPC2"), S("\x01"), S("echo"), S("hi")), BROKER,
                    ALL),
           MDP_EHEADER);
  /* 0.1's header without its leading empty frame belongs to no dialect. */
  CHECK_EQ(parse_as(MSG(S("MDPC01"), S("\x01"), S("echo"), S("hi")), BROKER,
                    ALL),
           MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S("MDPW01"), S("\x01"), S("echo")), BROKER, ALL),
           MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPX02"), S("\x01"), S("echo")), BROKER,
                    ALL),
           MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S(""), S(""), S("MDPW02"), S("\x05")), BROKER, ALL),
           MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S("mdpw02"), S("\x05")), BROKER, ALL), MDP_EHEADER);
  /* The right header for the wrong receiver. */
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x05")), CLIENT, ALL), MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x03"), S("echo"), S("hi")), WORKER,
                    ALL),
           MDP_EHEADER);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC01"), S("echo"), S("hi")), WORKER, ALL),
           MDP_EHEADER);
}

static void err_command(void) {
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x09"), S("echo"), S("hi")), BROKER,
                    ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01\x01"), S("echo"), S("hi")),
                    BROKER, ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("")), BROKER, ALL), MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x07")), BROKER, ALL), MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x00")), WORKER, ALL), MDP_ECOMMAND);
  /* Valid commands, wrong direction. */
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x02"), S("echo"), S("hi")), BROKER,
                    ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), S("echo"), S("hi")), CLIENT,
                    ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x02"), S(ADDR), S(""), S("hi")),
                    BROKER, ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x01"), S("echo")), WORKER, ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(ADDR), S(""), S("hi")),
                    WORKER, ALL),
           MDP_ECOMMAND);
  /* Command bytes of another dialect. */
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC02"), S("\x01"), S("echo"), S("hi")),
                    BROKER, ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW01"), S("\x06")), BROKER, ALL),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW01"), S("\x03"), S(ADDR), S(""),
                        S("hi")),
                    WORKER, ALL),
           MDP_ECOMMAND);
}

static void err_extra(void) {
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x05"), S("")), BROKER, ALL),
           MDP_EEXTRA);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x06"), S("bye")), WORKER, ALL),
           MDP_EEXTRA);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x01"), S("echo"), S("")), BROKER,
                    ALL),
           MDP_EEXTRA);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW01"), S("\x04"), S("x")), WORKER, ALL),
           MDP_EEXTRA);
}

static void err_delim(void) {
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(ADDR), S("x"), S("hi")),
                    BROKER, ALL),
           MDP_EDELIM);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(ADDR), S("hi")), BROKER,
                    ALL),
           MDP_EDELIM);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x02"), S(ADDR), S("\x00"), S("hi")),
                    WORKER, ALL),
           MDP_EDELIM);
}

static void err_service(void) {
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), S(""), S("hi")), BROKER, ALL),
           MDP_ESERVICE);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), B(MDP_SERVICE_MAX + 1),
                        S("hi")),
                    BROKER, ALL),
           MDP_ESERVICE);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x01"), S("")), BROKER, ALL),
           MDP_ESERVICE);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC01"), S(""), S("hi")), CLIENT, ALL),
           MDP_ESERVICE);
  /* The limit itself is fine. */
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), B(MDP_SERVICE_MAX), S("hi")),
                    BROKER, ALL),
           0);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x01"), B(MDP_SERVICE_MAX)), BROKER,
                    ALL),
           0);
}

static void err_address(void) {
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x04"), S(""), S(""), S("hi")),
                    BROKER, ALL),
           MDP_EADDRESS);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x02"), B(MDP_ADDRESS_MAX + 1), S(""),
                        S("hi")),
                    WORKER, ALL),
           MDP_EADDRESS);
  CHECK_EQ(parse_as(MSG(S("MDPW02"), S("\x02"), B(MDP_ADDRESS_MAX), S(""),
                        S("hi")),
                    WORKER, ALL),
           0);
}

static void err_dialect(void) {
  /* Well formed Majortomo, refused by an RFC 18-only reader. */
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW02"), S("\x01"), S("echo")), BROKER,
                    RFC18),
           MDP_EDIALECT);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW02"), S("\x01"), S("echo")), BROKER,
                    RFC18 | MAJ),
           0);
  CHECK_EQ(parse_as(MSG(S("MDPC02"), S("\x01"), S("echo"), S("hi")), BROKER,
                    MAJ | MDP01),
           MDP_EDIALECT);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC01"), S("echo"), S("hi")), BROKER,
                    RFC18 | MAJ),
           MDP_EDIALECT);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPC02"), S("\x04"), S("hi")), CLIENT,
                    MDP01),
           MDP_EDIALECT);
  /* A broken message gets its own error whatever the mask, so EDIALECT
   * always means "valid, in a dialect you did not enable". */
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW02"), S("\x09")), BROKER, RFC18),
           MDP_ECOMMAND);
  CHECK_EQ(parse_as(MSG(S(""), S("MDPW02"), S("\x09")), BROKER, ALL),
           MDP_ECOMMAND);
}

static void err_parse_args(void) {
  mdp_msg_t *msg = MSG(S("MDPW02"), S("\x05"));
  mdp_cmd_t cmd;
  CHECK_EQ(mdp_parse(NULL, BROKER, ALL, &cmd), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, BROKER, ALL, NULL), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, (mdp_role_t)0, ALL, &cmd), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, (mdp_role_t)4, ALL, &cmd), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, BROKER, 0, &cmd), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, BROKER, 8, &cmd), MDP_EINVAL);
  CHECK_EQ(mdp_parse(msg, BROKER, ALL, &cmd), 0);
  mdp_msg_destroy(msg);
}

/* ---- encoding ---------------------------------------------------------- */

/* What a message looked like, to prove a failed call left it alone: the
 * same frames, holding the same bytes at the same addresses. */
typedef struct {
  size_t n;
  const void *data[4];
  size_t size[4];
} snap_t;

static snap_t snap(mdp_msg_t *msg) {
  snap_t s;
  memset(&s, 0, sizeof(s));
  s.n = mdp_msg_size(msg);
  for (size_t i = 0; i < s.n && i < 4; i++) {
    s.data[i] = mdp_msg_data(msg, i);
    s.size[i] = mdp_msg_frame_size(msg, i);
  }
  return s;
}

static int snap_same(mdp_msg_t *msg, const snap_t *s) {
  snap_t now = snap(msg);
  return memcmp(&now, s, sizeof(now)) == 0;
}

static mdp_cmd_t mkcmd(mdp_dialect_t dialect, mdp_command_t command,
                       const char *service, const char *address) {
  mdp_cmd_t cmd;
  memset(&cmd, 0, sizeof(cmd));
  cmd.dialect = dialect;
  cmd.command = command;
  if (service != NULL) {
    cmd.service = (const uint8_t *)service;
    cmd.service_size = strlen(service);
  }
  if (address != NULL) {
    cmd.address = (const uint8_t *)address;
    cmd.address_size = strlen(address);
  }
  return cmd;
}

static void encode_einval(void) {
  mdp_msg_t *body = MSG(S("hello"), B(200));
  mdp_msg_t *empty = mdp_msg_new();
  snap_t sb, se;
  mdp_cmd_t c;
  CHECK(empty != NULL);
  sb = snap(body);
  se = snap(empty);

#define EINVAL_ON(msg, s, cmd)                                                 \
  do {                                                                         \
    c = (cmd);                                                                 \
    CHECK_EQ(mdp_encode((msg), &c), MDP_EINVAL);                               \
    CHECK(snap_same((msg), &(s)));                                             \
  } while (0)

  /* Commands the dialect lacks, and nonsense. */
  EINVAL_ON(body, sb, mkcmd(MDP01, MDP_CLIENT_PARTIAL, "echo", NULL));
  EINVAL_ON(body, sb, mkcmd(MDP01, MDP_WORKER_PARTIAL, NULL, "a"));
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_CMD_NONE, "echo", "a"));
  EINVAL_ON(body, sb, mkcmd(RFC18, (mdp_command_t)99, "echo", "a"));
  EINVAL_ON(body, sb, mkcmd((mdp_dialect_t)0, MDP_CLIENT_REQUEST, "e", NULL));
  EINVAL_ON(body, sb, mkcmd(ALL, MDP_CLIENT_REQUEST, "echo", NULL));
  EINVAL_ON(body, sb, mkcmd((mdp_dialect_t)8, MDP_CLIENT_REQUEST, "e", NULL));
  /* Missing or oversized names. */
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_CLIENT_REQUEST, NULL, NULL));
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_CLIENT_FINAL, "", NULL));
  EINVAL_ON(empty, se, mkcmd(RFC18, MDP_WORKER_READY, NULL, NULL));
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_WORKER_FINAL, NULL, NULL));
  EINVAL_ON(body, sb, mkcmd(MAJ, MDP_WORKER_REQUEST, NULL, ""));
  c = mkcmd(RFC18, MDP_CLIENT_REQUEST, NULL, NULL);
  c.service = (const uint8_t *)big;
  c.service_size = MDP_SERVICE_MAX + 1;
  CHECK_EQ(mdp_encode(body, &c), MDP_EINVAL);
  CHECK(snap_same(body, &sb));
  c = mkcmd(RFC18, MDP_WORKER_REQUEST, NULL, NULL);
  c.address = (const uint8_t *)big;
  c.address_size = MDP_ADDRESS_MAX + 1;
  CHECK_EQ(mdp_encode(body, &c), MDP_EINVAL);
  CHECK(snap_same(body, &sb));
  /* A body where there must be one, and none where there must not. */
  EINVAL_ON(empty, se, mkcmd(RFC18, MDP_CLIENT_REQUEST, "echo", NULL));
  EINVAL_ON(empty, se, mkcmd(MAJ, MDP_CLIENT_FINAL, "echo", NULL));
  EINVAL_ON(empty, se, mkcmd(MDP01, MDP_WORKER_FINAL, NULL, "a"));
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_WORKER_READY, "echo", NULL));
  EINVAL_ON(body, sb, mkcmd(RFC18, MDP_WORKER_HEARTBEAT, NULL, NULL));
  EINVAL_ON(body, sb, mkcmd(MDP01, MDP_WORKER_DISCONNECT, NULL, NULL));
  /* Bad arguments. */
  c = mkcmd(RFC18, MDP_WORKER_HEARTBEAT, NULL, NULL);
  CHECK_EQ(mdp_encode(NULL, &c), MDP_EINVAL);
  CHECK_EQ(mdp_encode(empty, NULL), MDP_EINVAL);
  CHECK(snap_same(empty, &se));
#undef EINVAL_ON

  mdp_msg_destroy(body);
  mdp_msg_destroy(empty);
}

/* Every command of every dialect, built and read back by its receiver. */
static void encode_parse_all(void) {
  static const struct {
    mdp_command_t command;
    mdp_role_t receiver;
  } all[] = {
      {MDP_CLIENT_REQUEST, BROKER},    {MDP_CLIENT_PARTIAL, CLIENT},
      {MDP_CLIENT_FINAL, CLIENT},      {MDP_WORKER_READY, BROKER},
      {MDP_WORKER_REQUEST, WORKER},    {MDP_WORKER_PARTIAL, BROKER},
      {MDP_WORKER_FINAL, BROKER},      {MDP_WORKER_HEARTBEAT, BROKER},
      {MDP_WORKER_HEARTBEAT, WORKER},  {MDP_WORKER_DISCONNECT, BROKER},
      {MDP_WORKER_DISCONNECT, WORKER},
  };
  static const mdp_dialect_t ds[] = {RFC18, MAJ, MDP01};
  size_t built = 0;

  for (size_t d = 0; d < COUNT(ds); d++) {
    for (size_t i = 0; i < COUNT(all); i++) {
      mdp_command_t command = all[i].command;
      int has_body = command != MDP_WORKER_READY &&
                     command != MDP_WORKER_HEARTBEAT &&
                     command != MDP_WORKER_DISCONNECT;
      mdp_msg_t *msg = has_body ? MSG(S("a"), S(""), B(100)) : mdp_msg_new();
      CHECK(msg != NULL);
      mdp_cmd_t c = mkcmd(ds[d], command, "svc", "client-7");
      int rc = mdp_encode(msg, &c);
      if (ds[d] == MDP01 && (command == MDP_CLIENT_PARTIAL ||
                             command == MDP_WORKER_PARTIAL)) {
        mdp_msg_destroy(msg);
        CHECK_EQ(rc, MDP_EINVAL);
        continue;
      }
      if (rc != 0)
        mdp_msg_destroy(msg);
      CHECK_EQ(rc, 0);
      built++;

      mdp_cmd_t p;
      rc = mdp_parse(msg, all[i].receiver, ds[d], &p);
      size_t n = mdp_msg_size(msg);
      mdp_msg_destroy(msg);
      CHECK_EQ(rc, 0);
      CHECK_EQ(p.dialect, ds[d]);
      CHECK_EQ(p.command, command);
      CHECK_EQ(p.body, has_body ? n - 3 : n);
      int want_service = command == MDP_WORKER_READY ||
                         ((command == MDP_CLIENT_REQUEST ||
                           command == MDP_CLIENT_PARTIAL ||
                           command == MDP_CLIENT_FINAL) &&
                          !(ds[d] == MAJ && all[i].receiver == CLIENT));
      int want_address = command == MDP_WORKER_REQUEST ||
                         command == MDP_WORKER_PARTIAL ||
                         command == MDP_WORKER_FINAL;
      CHECK_EQ(p.service_size, want_service ? 3 : 0);
      CHECK_EQ(p.address_size, want_address ? 8 : 0);
    }
  }
  CHECK_EQ(built, 31);
}

/* Majortomo's replies carry no service, even when the caller supplies one,
 * so a broker can fill in one reply for any client. */
static void encode_majortomo_reply(void) {
  mdp_msg_t *msg = MSG(S("hello"));
  mdp_cmd_t c = mkcmd(MAJ, MDP_CLIENT_FINAL, "echo", NULL);
  CHECK_EQ(mdp_encode(msg, &c), 0);
  CHECK_EQ(mdp_msg_size(msg), 4);
  CHECK(mdp_msg_frame_eq(msg, 0, "", 0));
  CHECK(mdp_msg_frame_eq(msg, 1, "MDPC02", 6));
  CHECK(mdp_msg_frame_eq(msg, 2, "\x04", 1));
  CHECK(mdp_msg_frame_eq(msg, 3, "hello", 5));
  mdp_msg_destroy(msg);

  msg = MSG(S("hello"));
  c = mkcmd(MAJ, MDP_CLIENT_PARTIAL, NULL, NULL);
  CHECK_EQ(mdp_encode(msg, &c), 0);
  CHECK_EQ(mdp_msg_size(msg), 4);
  CHECK(mdp_msg_frame_eq(msg, 2, "\x03", 1));
  mdp_msg_destroy(msg);
}

/* The body is never copied: a large frame keeps its buffer through
 * parse + drop_front and through encode.  (Small frames live inside the
 * zmq_msg_t, so only a large one can show this.) */
static void body_not_copied(void) {
  mdp_msg_t *msg = MSG(S("MDPW02"), S("\x04"), S(ADDR), S(""), B(1000),
                       S("tail"));
  mdp_cmd_t cmd;
  const void *before = mdp_msg_data(msg, 4);

  CHECK_EQ(mdp_parse(msg, BROKER, RFC18, &cmd), 0);
  CHECK_EQ(cmd.body, 4);
  CHECK(cmd.address == mdp_msg_data(msg, 2));
  CHECK(mdp_msg_data(msg, 4) == before);

  uint8_t address[sizeof(ADDR) - 1];
  memcpy(address, cmd.address, cmd.address_size);
  cmd.address = address;
  mdp_msg_drop_front(msg, cmd.body);
  CHECK_EQ(mdp_msg_size(msg), 2);
  CHECK(mdp_msg_data(msg, 0) == before);

  cmd.command = MDP_WORKER_REQUEST;
  CHECK_EQ(mdp_encode(msg, &cmd), 0);
  CHECK_EQ(mdp_msg_size(msg), 6);
  CHECK(mdp_msg_data(msg, 4) == before);
  CHECK(mdp_msg_frame_eq(msg, 1, "\x02", 1));
  CHECK(mdp_msg_frame_eq(msg, 2, ADDR, sizeof(ADDR) - 1));
  CHECK(mdp_msg_frame_eq(msg, 5, "tail", 4));
  mdp_msg_destroy(msg);
}

/* Many encodes on one message (a broker adds an identity after the codec's
 * header): frames stay intact whatever room the message had in front. */
static void encode_repeated(void) {
  mdp_msg_t *msg = MSG(S("x"));
  mdp_cmd_t c = mkcmd(RFC18, MDP_WORKER_REQUEST, NULL, "addr");
  for (int i = 0; i < 20; i++)
    CHECK_EQ(mdp_encode(msg, &c), 0);
  CHECK_EQ(mdp_msg_size(msg), 81);
  for (size_t i = 0; i < 80; i += 4) {
    CHECK(mdp_msg_frame_eq(msg, i, "MDPW02", 6));
    CHECK(mdp_msg_frame_eq(msg, i + 1, "\x02", 1));
    CHECK(mdp_msg_frame_eq(msg, i + 2, "addr", 4));
    CHECK(mdp_msg_frame_eq(msg, i + 3, "", 0));
  }
  CHECK(mdp_msg_frame_eq(msg, 80, "x", 1));
  mdp_msg_destroy(msg);
}

/* ---- helpers ----------------------------------------------------------- */

static void is_mmi(void) {
  CHECK_EQ(mdp_is_mmi("mmi.service", 11), 1);
  CHECK_EQ(mdp_is_mmi("mmi.", 4), 1);
  CHECK_EQ(mdp_is_mmi("mmi.service", 3), 0);
  CHECK_EQ(mdp_is_mmi("mmi", 3), 0);
  CHECK_EQ(mdp_is_mmi("MMI.service", 11), 0);
  CHECK_EQ(mdp_is_mmi("echo", 4), 0);
  CHECK_EQ(mdp_is_mmi(NULL, 0), 0);
  CHECK_EQ(mdp_is_mmi("", 0), 0);
}

static void names(void) {
  CHECK(strcmp(mdp_command_name(MDP_CLIENT_REQUEST), "REQUEST") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_REQUEST), "REQUEST") == 0);
  CHECK(strcmp(mdp_command_name(MDP_CLIENT_PARTIAL), "PARTIAL") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_PARTIAL), "PARTIAL") == 0);
  CHECK(strcmp(mdp_command_name(MDP_CLIENT_FINAL), "FINAL") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_FINAL), "FINAL") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_READY), "READY") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_HEARTBEAT), "HEARTBEAT") == 0);
  CHECK(strcmp(mdp_command_name(MDP_WORKER_DISCONNECT), "DISCONNECT") == 0);
  CHECK(strcmp(mdp_command_name(MDP_CMD_NONE), "NONE") == 0);
  CHECK(strcmp(mdp_command_name((mdp_command_t)99), "UNKNOWN") == 0);
  CHECK(strcmp(mdp_dialect_name(RFC18), "rfc18") == 0);
  CHECK(strcmp(mdp_dialect_name(MAJ), "majortomo") == 0);
  CHECK(strcmp(mdp_dialect_name(MDP01), "mdp01") == 0);
  CHECK(strcmp(mdp_dialect_name(ALL), "all") == 0);
  CHECK(strcmp(mdp_dialect_name((mdp_dialect_t)0), "unknown") == 0);
  /* The vectors file and the codec name dialects alike. */
  for (size_t i = 0; i < COUNT(dialect_names); i++)
    CHECK(strcmp(mdp_dialect_name(dialect_names[i].dialect),
                 dialect_names[i].name) == 0);
}

int main(void) {
  memset(big, 'x', sizeof(big));
  RUN(vectors_load);
  RUN(vectors_count);
  RUN(vectors_escapes);
  RUN(vectors_valid_parse);
  RUN(vectors_invalid_rejected);
  RUN(vectors_valid_encode);
  RUN(err_frames);
  RUN(err_header);
  RUN(err_command);
  RUN(err_extra);
  RUN(err_delim);
  RUN(err_service);
  RUN(err_address);
  RUN(err_dialect);
  RUN(err_parse_args);
  RUN(encode_einval);
  RUN(encode_parse_all);
  RUN(encode_majortomo_reply);
  RUN(body_not_copied);
  RUN(encode_repeated);
  RUN(is_mmi);
  RUN(names);
  return t_done();
}
