/* The Majordomo codec: wire messages <-> mdp_cmd_t, for every dialect.
 *
 * The three dialects differ only in data: whether every message starts with
 * an empty frame, the two header strings, whether the client sub-protocol
 * has a command frame, and which command byte means what in which
 * direction.  So each dialect is a row of `dialects[]` below, each command a
 * row of a spec table, and one parser and one encoder serve them all.
 * Adding a dialect is adding rows (see docs/codec.md).
 *
 * A message's layout after its command frame is one of a handful of shapes
 * (service + body, address + "" + body, ...); the shape is what the parser
 * validates and what the encoder builds.
 */
#include <string.h>
#include <zmq.h>

#include "mdp/codec.h"
#include "mdp/error.h"
#include "codec_internal.h"
#include "mdp/msg.h"
#include "msg_internal.h"

/* What follows the command frame (or the header, when there is none). */
typedef enum {
  SHAPE_SERVICE_BODY, /* service | body... */
  SHAPE_BODY,         /* body... (Majortomo's replies to a client) */
  SHAPE_SERVICE,      /* service, and nothing after it (READY) */
  SHAPE_ADDRESS_BODY, /* client address | "" | body... */
  SHAPE_NONE          /* nothing (HEARTBEAT, DISCONNECT) */
} shape_t;

/* The two sub-protocols; also the index into a dialect's header pair. */
enum { SUB_CLIENT = 0, SUB_WORKER = 1 };

typedef struct {
  /* The command frame's byte (< BYTE_TEMPLATES: mdp_encode() sends the
   * constant frame built for it). */
  uint8_t byte;
  uint8_t role;    /* mdp_role_t that receives this command */
  uint8_t command; /* mdp_command_t */
  uint8_t shape;   /* shape_t */
} cmd_spec_t;

typedef struct {
  mdp_dialect_t id;
  const char *name;
  /* Every message starts with an empty frame (what a REQ socket expects). */
  int leading_empty;
  /* Header strings, by sub-protocol; all headers are HEADER_SIZE bytes. */
  const char *header[2];
  /* Whether a command frame follows the header, by sub-protocol (MDP/0.1's
   * client sub-protocol has none: the direction alone says what it is). */
  int command_frame[2];
  /* Commands, by sub-protocol; each list ends with a zero row. */
  const cmd_spec_t *specs[2];
} dialect_spec_t;

#define HEADER_SIZE (sizeof(MDP_CLIENT_HEADER) - 1)

/* HEARTBEAT and DISCONNECT go both ways, so they have a row per direction;
 * the encoder takes the first row it finds, and both carry the same byte. */
static const cmd_spec_t rfc18_client[] = {
    {0x01, MDP_ROLE_BROKER, MDP_CLIENT_REQUEST, SHAPE_SERVICE_BODY},
    {0x02, MDP_ROLE_CLIENT, MDP_CLIENT_PARTIAL, SHAPE_SERVICE_BODY},
    {0x03, MDP_ROLE_CLIENT, MDP_CLIENT_FINAL, SHAPE_SERVICE_BODY},
    {0, 0, MDP_CMD_NONE, 0}};

/* Majortomo keeps RFC 18's worker sub-protocol, so it shares this table. */
static const cmd_spec_t rfc18_worker[] = {
    {0x01, MDP_ROLE_BROKER, MDP_WORKER_READY, SHAPE_SERVICE},
    {0x02, MDP_ROLE_WORKER, MDP_WORKER_REQUEST, SHAPE_ADDRESS_BODY},
    {0x03, MDP_ROLE_BROKER, MDP_WORKER_PARTIAL, SHAPE_ADDRESS_BODY},
    {0x04, MDP_ROLE_BROKER, MDP_WORKER_FINAL, SHAPE_ADDRESS_BODY},
    {0x05, MDP_ROLE_BROKER, MDP_WORKER_HEARTBEAT, SHAPE_NONE},
    {0x05, MDP_ROLE_WORKER, MDP_WORKER_HEARTBEAT, SHAPE_NONE},
    {0x06, MDP_ROLE_BROKER, MDP_WORKER_DISCONNECT, SHAPE_NONE},
    {0x06, MDP_ROLE_WORKER, MDP_WORKER_DISCONNECT, SHAPE_NONE},
    {0, 0, MDP_CMD_NONE, 0}};

/* Majortomo numbers client commands differently and sends no service frame
 * in replies (its clients know what they asked for). */
static const cmd_spec_t majortomo_client[] = {
    {0x02, MDP_ROLE_BROKER, MDP_CLIENT_REQUEST, SHAPE_SERVICE_BODY},
    {0x03, MDP_ROLE_CLIENT, MDP_CLIENT_PARTIAL, SHAPE_BODY},
    {0x04, MDP_ROLE_CLIENT, MDP_CLIENT_FINAL, SHAPE_BODY},
    {0, 0, MDP_CMD_NONE, 0}};

/* MDP/0.1 has no command frame on the client side: `byte` is unused.  Its
 * REPLY is our FINAL; it has no PARTIAL, so encoding one fails. */
static const cmd_spec_t mdp01_client[] = {
    {0, MDP_ROLE_BROKER, MDP_CLIENT_REQUEST, SHAPE_SERVICE_BODY},
    {0, MDP_ROLE_CLIENT, MDP_CLIENT_FINAL, SHAPE_SERVICE_BODY},
    {0, 0, MDP_CMD_NONE, 0}};

static const cmd_spec_t mdp01_worker[] = {
    {0x01, MDP_ROLE_BROKER, MDP_WORKER_READY, SHAPE_SERVICE},
    {0x02, MDP_ROLE_WORKER, MDP_WORKER_REQUEST, SHAPE_ADDRESS_BODY},
    {0x03, MDP_ROLE_BROKER, MDP_WORKER_FINAL, SHAPE_ADDRESS_BODY},
    {0x04, MDP_ROLE_BROKER, MDP_WORKER_HEARTBEAT, SHAPE_NONE},
    {0x04, MDP_ROLE_WORKER, MDP_WORKER_HEARTBEAT, SHAPE_NONE},
    {0x05, MDP_ROLE_BROKER, MDP_WORKER_DISCONNECT, SHAPE_NONE},
    {0x05, MDP_ROLE_WORKER, MDP_WORKER_DISCONNECT, SHAPE_NONE},
    {0, 0, MDP_CMD_NONE, 0}};

/* Order matters only for detection, and the headers are disjoint anyway
 * (with or without the leading empty frame, and 01 vs 02). */
static const dialect_spec_t dialects[] = {
    {MDP_DIALECT_RFC18,
     "rfc18",
     0,
     {MDP_CLIENT_HEADER, MDP_WORKER_HEADER},
     {1, 1},
     {rfc18_client, rfc18_worker}},
    {MDP_DIALECT_MAJORTOMO,
     "majortomo",
     1,
     {MDP_CLIENT_HEADER, MDP_WORKER_HEADER},
     {1, 1},
     {majortomo_client, rfc18_worker}},
    {MDP_DIALECT_MDP01,
     "mdp01",
     1,
     {MDP_CLIENT_HEADER_01, MDP_WORKER_HEADER_01},
     {0, 1},
     {mdp01_client, mdp01_worker}},
};

#define DIALECT_COUNT (sizeof(dialects) / sizeof(dialects[0]))

/* The index in dialects[] of dialect `id`, or -1. */
static inline int dialect_index(mdp_dialect_t id) {
  for (size_t i = 0; i < DIALECT_COUNT; i++)
    if (dialects[i].id == id)
      return (int)i;
  return -1;
}

/* The row that builds `command` in dialect `d`, and its sub-protocol.
 * The command alone fixes the row: only HEARTBEAT and DISCONNECT have two,
 * and those are built alike. */
static const cmd_spec_t *spec_find(const dialect_spec_t *d,
                                   mdp_command_t command, int *subp) {
  if (command == MDP_CMD_NONE)
    return NULL;
  /* Each command belongs to one sub-protocol: only its table is searched. */
  int sub = command <= MDP_CLIENT_FINAL ? SUB_CLIENT : SUB_WORKER;
  for (const cmd_spec_t *s = d->specs[sub]; s->command != MDP_CMD_NONE; s++) {
    if ((int)s->command == (int)command) {
      *subp = sub;
      return s;
    }
  }
  return NULL;
}

/* Header and command frames over static, read-only bytes, built once:
 * zmq_msg_init_data() with a NULL free function makes a "constant" message
 * (no allocation, no reference count, nothing to free), and libzmq's own
 * zmq_msg_copy() of one is a plain struct copy.  So a header frame is a
 * struct copy of its template: a few instructions instead of a libzmq call
 * per frame on every message.  libzmq never writes to a frame's data, and
 * nobody should write to a header frame they received.  (Every message the
 * broker, the worker and the client send has these frames, and the tests
 * run under valgrind and ASan as well.) */
#define BYTE_TEMPLATES 8 /* every command byte of every dialect is < 8 */
static const uint8_t command_bytes[BYTE_TEMPLATES] = {0, 1, 2, 3, 4, 5, 6, 7};
static zmq_msg_t header_templates[DIALECT_COUNT][2];
static zmq_msg_t byte_templates[BYTE_TEMPLATES];

static void template_init(zmq_msg_t *frame, const void *data, size_t size) {
  int rc = zmq_msg_init_data(frame, (void *)data, size, NULL, NULL);
  /* Cannot fail: a constant message allocates nothing. */
  (void)rc;
}

/* The parser's tables: each header's bytes as one integer (one compare,
 * no memcmp call, per candidate), and the row of each command byte by
 * dialect, sub-protocol and receiving role (NULL: no such command). */
static uint64_t header_keys[DIALECT_COUNT][2];
static const cmd_spec_t *byte_specs[DIALECT_COUNT][2][MDP_ROLE_WORKER + 1]
                                   [BYTE_TEMPLATES];

/* The encoder's: the row for each command by dialect, its sub-protocol
 * and how many header frames it has (0: the dialect has no such command,
 * e.g. PARTIAL in MDP/0.1). */
typedef struct {
  const cmd_spec_t *spec;
  uint8_t sub;
  uint8_t count;
} recipe_t;
static recipe_t recipes[DIALECT_COUNT][MDP_WORKER_DISCONNECT + 1];

static uint64_t header_key(const void *header) {
  uint64_t key = 0;
  memcpy(&key, header, HEADER_SIZE);
  return key;
}

/* At load time, before any thread can parse or encode: the tables are only
 * read after this. */
__attribute__((constructor)) static void tables_init(void) {
  for (size_t i = 0; i < DIALECT_COUNT; i++) {
    const dialect_spec_t *d = &dialects[i];
    for (int sub = SUB_CLIENT; sub <= SUB_WORKER; sub++) {
      template_init(&header_templates[i][sub], d->header[sub], HEADER_SIZE);
      header_keys[i][sub] = header_key(d->header[sub]);
      if (!d->command_frame[sub])
        continue;
      /* The first row wins, as the parser's scan did. */
      for (const cmd_spec_t *spec = d->specs[sub];
           spec->command != MDP_CMD_NONE; spec++)
        if (spec->byte < BYTE_TEMPLATES &&
            byte_specs[i][sub][spec->role][spec->byte] == NULL)
          byte_specs[i][sub][spec->role][spec->byte] = spec;
    }
    for (int command = MDP_CLIENT_REQUEST; command <= MDP_WORKER_DISCONNECT;
         command++) {
      int sub;
      const cmd_spec_t *spec = spec_find(d, (mdp_command_t)command, &sub);
      if (spec == NULL || spec->byte >= BYTE_TEMPLATES)
        continue;
      size_t count = (d->leading_empty ? 1 : 0) + 1 +
                     (d->command_frame[sub] ? 1 : 0);
      if (spec->shape == SHAPE_SERVICE_BODY || spec->shape == SHAPE_SERVICE)
        count += 1;
      else if (spec->shape == SHAPE_ADDRESS_BODY)
        count += 2;
      recipes[i][command] = (recipe_t){spec, (uint8_t)sub, (uint8_t)count};
    }
  }
  for (size_t i = 0; i < BYTE_TEMPLATES; i++)
    template_init(&byte_templates[i], &command_bytes[i], 1);
}

/* The message being parsed, and the sizes of its first frames when the
 * caller knows them (mdp__parse_sized). */
typedef struct {
  mdp_msg_t *msg;
  const uint32_t *sizes;
  size_t nsizes;
} parse_t;

/* Frame `i` of the message, which the caller has checked exists: direct
 * access, at most one libzmq call each (the parser runs on every message a
 * broker gets), none for a size recorded at receive. */
static inline size_t fsize(const parse_t *p, size_t i) {
  return i < p->nsizes ? p->sizes[i] : zmq_msg_size(mdp__msg_at(p->msg, i));
}

static inline const void *fdata(const parse_t *p, size_t i) {
  return zmq_msg_data(mdp__msg_at(p->msg, i));
}

/* Finds the dialect whose header the message carries, and which
 * sub-protocol.  Returns 0, MDP_EFRAMES (a lone empty frame: the header is
 * missing rather than wrong) or MDP_EHEADER.  `msg` has a frame.
 *
 * The header is frame 0, or frame 1 after a leading empty frame, and every
 * header is HEADER_SIZE bytes: one size check and one compare per
 * candidate. */
static int detect(const parse_t *p, const dialect_spec_t **dp, int *subp,
                  size_t *headerp) {
  size_t n = p->msg->count;
  size_t size0 = fsize(p, 0);
  int empty_first = size0 == 0;
  size_t h = empty_first ? 1 : 0;

  if (h < n && (h == 0 ? size0 : fsize(p, h)) == HEADER_SIZE) {
    uint64_t key = header_key(fdata(p, h));
    for (size_t i = 0; i < DIALECT_COUNT; i++) {
      if ((dialects[i].leading_empty ? 1u : 0u) != h)
        continue;
      for (int sub = SUB_CLIENT; sub <= SUB_WORKER; sub++) {
        if (key == header_keys[i][sub]) {
          *dp = &dialects[i];
          *subp = sub;
          *headerp = h;
          return 0;
        }
      }
    }
  }
  return empty_first && n == 1 ? MDP_EFRAMES : MDP_EHEADER;
}

/* Service names and addresses are length-checked, never content-checked:
 * RFC 18 allows any bytes, and addresses are binary ROUTER identities. */
static int check_name(const parse_t *p, size_t index, size_t max, int err,
                      size_t *sizep) {
  size_t size = fsize(p, index);
  *sizep = size;
  return size == 0 || size > max ? err : 0;
}

int mdp_parse(mdp_msg_t *msg, mdp_role_t role, unsigned dialects_mask,
              mdp_cmd_t *cmd) {
  return mdp__parse_sized(msg, NULL, 0, role, dialects_mask, cmd);
}

int mdp__parse_sized(mdp_msg_t *msg, const uint32_t *sizes, size_t nsizes,
                     mdp_role_t role, unsigned dialects_mask, mdp_cmd_t *cmd) {
  const dialect_spec_t *d;
  const cmd_spec_t *spec;
  size_t n, i;
  int sub, err;

  if (msg == NULL || cmd == NULL)
    return MDP_EINVAL;
  if (role != MDP_ROLE_BROKER && role != MDP_ROLE_CLIENT &&
      role != MDP_ROLE_WORKER)
    return MDP_EINVAL;
  if (dialects_mask == 0 || (dialects_mask & ~(unsigned)MDP_DIALECT_ALL))
    return MDP_EINVAL;

  n = msg->count;
  if (n == 0)
    return MDP_EFRAMES;
  const parse_t p = {msg, sizes, sizes != NULL ? nsizes : 0};

  err = detect(&p, &d, &sub, &i);
  if (err != 0)
    return err;
  i++; /* past the header */

  /* A client never receives worker commands and a worker never receives
   * client commands, so the header itself is wrong for this receiver. */
  if ((role == MDP_ROLE_CLIENT && sub != SUB_CLIENT) ||
      (role == MDP_ROLE_WORKER && sub != SUB_WORKER))
    return MDP_EHEADER;

  if (d->command_frame[sub]) {
    if (i >= n)
      return MDP_EFRAMES;
    if (fsize(&p, i) != 1)
      return MDP_ECOMMAND;
    uint8_t byte = *(const uint8_t *)fdata(&p, i);
    if (byte >= BYTE_TEMPLATES ||
        (spec = byte_specs[d - dialects][sub][role][byte]) == NULL)
      return MDP_ECOMMAND;
    i++;
  } else {
    for (spec = d->specs[sub]; spec->command != MDP_CMD_NONE; spec++)
      if (spec->role == role)
        break;
  }
  /* Also catches a valid byte sent the wrong way (PARTIAL to a broker). */
  if (spec->command == MDP_CMD_NONE)
    return MDP_ECOMMAND;

  memset(cmd, 0, sizeof(*cmd));
  cmd->dialect = d->id;
  cmd->command = (mdp_command_t)spec->command;

  /* Frames are checked front to back, so the error names the first frame
   * that is wrong. */
  switch ((shape_t)spec->shape) {
  case SHAPE_SERVICE_BODY:
  case SHAPE_SERVICE:
    if (i >= n)
      return MDP_EFRAMES;
    err = check_name(&p, i, MDP_SERVICE_MAX, MDP_ESERVICE,
                     &cmd->service_size);
    if (err != 0) {
      cmd->service_size = 0;
      return err;
    }
    cmd->service = fdata(&p, i);
    i++;
    if (spec->shape == SHAPE_SERVICE) {
      if (i < n)
        return MDP_EEXTRA;
      break;
    }
    if (i >= n)
      return MDP_EFRAMES; /* a body is one frame or more */
    break;
  case SHAPE_BODY:
    if (i >= n)
      return MDP_EFRAMES;
    break;
  case SHAPE_ADDRESS_BODY:
    if (i >= n)
      return MDP_EFRAMES;
    err = check_name(&p, i, MDP_ADDRESS_MAX, MDP_EADDRESS,
                     &cmd->address_size);
    if (err != 0) {
      cmd->address_size = 0;
      return err;
    }
    cmd->address = fdata(&p, i);
    i++;
    if (i >= n)
      return MDP_EFRAMES;
    if (fsize(&p, i) != 0)
      return MDP_EDELIM;
    i++;
    if (i >= n)
      return MDP_EFRAMES;
    break;
  case SHAPE_NONE:
    if (i < n)
      return MDP_EEXTRA;
    break;
  }
  cmd->body = i;

  /* Checked last so that EDIALECT means "valid, but not a dialect we
   * accept" (the peer should be configured differently), while a broken
   * message gets the same error whatever the mask. */
  if ((dialects_mask & (unsigned)d->id) == 0)
    return MDP_EDIALECT;
  return 0;
}

static int frame_copy(zmq_msg_t *frame, const void *data, size_t size) {
  if (zmq_msg_init_size(frame, size) != 0)
    return MDP_ENOMEM;
  memcpy(zmq_msg_data(frame), data, size);
  return 0;
}

static int name_ok(const uint8_t *name, size_t size, size_t max) {
  return name != NULL && size > 0 && size <= max;
}

/* The most header frames any command has: "" | header | command |
 * address | "". */
#define HEADER_FRAMES_MAX 5

int mdp_encode(mdp_msg_t *msg, const mdp_cmd_t *cmd) {
  return mdp__encode_service(msg, cmd, NULL);
}

int mdp__encode_service(mdp_msg_t *msg, const mdp_cmd_t *cmd,
                        zmq_msg_t *service_frame) {
  size_t count, body_frames, i;
  int err = 0;

  if (msg == NULL || cmd == NULL)
    return MDP_EINVAL;
  int di = dialect_index(cmd->dialect);
  if (di < 0 || (unsigned)cmd->command > MDP_WORKER_DISCONNECT)
    return MDP_EINVAL;
  const recipe_t *recipe = &recipes[di][cmd->command];
  if (recipe->count == 0)
    return MDP_EINVAL; /* e.g. PARTIAL in MDP/0.1 */
  const dialect_spec_t *d = &dialects[di];
  const cmd_spec_t *spec = recipe->spec;
  int sub = recipe->sub;

  /* Validate everything before building anything, so that a failure never
   * needs undoing; the encoder must not write what the parser rejects. */
  body_frames = msg->count;
  switch ((shape_t)spec->shape) {
  case SHAPE_SERVICE_BODY:
    if (!name_ok(cmd->service, cmd->service_size, MDP_SERVICE_MAX))
      return MDP_EINVAL;
    if (body_frames == 0)
      return MDP_EINVAL;
    break;
  case SHAPE_BODY:
    /* The service is not sent; a caller may fill it in regardless, so a
     * broker can build one reply for any dialect. */
    if (body_frames == 0)
      return MDP_EINVAL;
    break;
  case SHAPE_SERVICE:
    if (!name_ok(cmd->service, cmd->service_size, MDP_SERVICE_MAX))
      return MDP_EINVAL;
    if (body_frames != 0)
      return MDP_EINVAL;
    break;
  case SHAPE_ADDRESS_BODY:
    if (!name_ok(cmd->address, cmd->address_size, MDP_ADDRESS_MAX))
      return MDP_EINVAL;
    if (body_frames == 0)
      return MDP_EINVAL;
    break;
  case SHAPE_NONE:
    if (body_frames != 0)
      return MDP_EINVAL;
    break;
  }

  /* Build the header frames in wire order, in place: in the free slots
   * before the body's first frame, which become part of the message only
   * once every frame is built (so a failure leaves `msg` as it was).  Past
   * this point nothing fails but the copy of a name, which a service frame
   * given by the caller replaces. */
  count = recipe->count;
  if (count > HEADER_FRAMES_MAX || mdp_msg_reserve_(msg, count, 0) != 0)
    return MDP_ENOMEM;
  zmq_msg_t *frames = &msg->frames[msg->head - count];
  size_t built = 0;
  if (d->leading_empty)
    zmq_msg_init(&frames[built++]);
  frames[built++] = header_templates[di][sub];
  if (d->command_frame[sub])
    frames[built++] = byte_templates[spec->byte];
  switch ((shape_t)spec->shape) {
  case SHAPE_SERVICE_BODY:
  case SHAPE_SERVICE:
    if (service_frame != NULL) {
      /* Relocated, as zmq_msg_move does (msg_internal.h); taken below. */
      frames[built++] = *service_frame;
      break;
    }
    err = frame_copy(&frames[built], cmd->service, cmd->service_size);
    if (err == 0)
      built++;
    break;
  case SHAPE_ADDRESS_BODY:
    err = frame_copy(&frames[built], cmd->address, cmd->address_size);
    if (err == 0) {
      built++;
      zmq_msg_init(&frames[built++]);
    }
    break;
  case SHAPE_BODY:
  case SHAPE_NONE:
    break;
  }
  if (err != 0) {
    for (i = 0; i < built; i++)
      zmq_msg_close(&frames[i]);
    return err;
  }
  /* Taken either way: sent with the message, or not wanted (this command
   * of this dialect has no service frame, as Majortomo's replies). */
  if (service_frame != NULL && spec->shape != SHAPE_SERVICE_BODY &&
      spec->shape != SHAPE_SERVICE)
    zmq_msg_close(service_frame);
  msg->head -= count;
  msg->count += count;
  return 0;
}

int mdp_is_mmi(const void *service, size_t size) {
  size_t len = sizeof(MDP_MMI_PREFIX) - 1;
  return service != NULL && size >= len &&
         memcmp(service, MDP_MMI_PREFIX, len) == 0;
}

const char *mdp_command_name(mdp_command_t command) {
  switch (command) {
  case MDP_CMD_NONE:
    return "NONE";
  case MDP_CLIENT_REQUEST:
  case MDP_WORKER_REQUEST:
    return "REQUEST";
  case MDP_CLIENT_PARTIAL:
  case MDP_WORKER_PARTIAL:
    return "PARTIAL";
  case MDP_CLIENT_FINAL:
  case MDP_WORKER_FINAL:
    return "FINAL";
  case MDP_WORKER_READY:
    return "READY";
  case MDP_WORKER_HEARTBEAT:
    return "HEARTBEAT";
  case MDP_WORKER_DISCONNECT:
    return "DISCONNECT";
  }
  return "UNKNOWN";
}

const char *mdp_dialect_name(mdp_dialect_t dialect) {
  int di = dialect_index(dialect);
  if (di >= 0)
    return dialects[di].name;
  return dialect == MDP_DIALECT_ALL ? "all" : "unknown";
}
