/* libmdp: the Majordomo codec.
 *
 * Parses wire messages (lists of frames, without the ROUTER identity frame)
 * into commands and builds wire messages from commands, for three dialects:
 *   - MDP_DIALECT_RFC18:     MDP/0.2 as RFC 18 states it (the default);
 *   - MDP_DIALECT_MAJORTOMO: the 0.2 dialect that Majortomo (Python) speaks;
 *   - MDP_DIALECT_MDP01:     MDP/0.1 (RFC 7).
 * The frames of each are listed in docs/codec.md and ../shared/protocol/WIRE.md.
 *
 * Parsing never copies or moves anything: it validates the message and fills
 * an mdp_cmd_t whose service and address point into the message's frames and
 * whose `body` is the index of the first body frame.  The caller then strips
 * the header with mdp_msg_drop_front(msg, cmd.body), which leaves exactly the
 * body in `msg`, frames untouched.
 *
 * Building is the reverse: mdp_encode() prepends the header frames of a
 * command to a message that already holds the body.
 *
 * Both are pure functions on their arguments; they may be called from any
 * thread on messages that thread owns.
 */
#ifndef MDP_CODEC_H
#define MDP_CODEC_H

#include "mdp/export.h"

#include <stddef.h>
#include <stdint.h>

#include "mdp/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Dialects are bit flags so a reader can accept a set of them. */
typedef enum {
  MDP_DIALECT_RFC18 = 1,
  MDP_DIALECT_MAJORTOMO = 2,
  MDP_DIALECT_MDP01 = 4,
  MDP_DIALECT_ALL = 7
} mdp_dialect_t;

/* Who receives the message being parsed: this fixes the direction, which
 * RFC 18 needs to tell commands apart (0x02 is PARTIAL towards a client but
 * REQUEST towards a worker). */
typedef enum {
  MDP_ROLE_BROKER = 1, /* messages from clients and workers */
  MDP_ROLE_CLIENT = 2, /* messages from a broker to a client */
  MDP_ROLE_WORKER = 3  /* messages from a broker to a worker */
} mdp_role_t;

/* Commands, named by sub-protocol.  MDP/0.1's REPLY is a FINAL. */
typedef enum {
  MDP_CMD_NONE = 0,
  MDP_CLIENT_REQUEST,   /* client -> broker:  service, body */
  MDP_CLIENT_PARTIAL,   /* broker -> client:  service, body (not in 0.1) */
  MDP_CLIENT_FINAL,     /* broker -> client:  service, body */
  MDP_WORKER_READY,     /* worker -> broker:  service */
  MDP_WORKER_REQUEST,   /* broker -> worker:  address, body */
  MDP_WORKER_PARTIAL,   /* worker -> broker:  address, body (not in 0.1) */
  MDP_WORKER_FINAL,     /* worker -> broker:  address, body */
  MDP_WORKER_HEARTBEAT, /* both ways */
  MDP_WORKER_DISCONNECT /* both ways */
} mdp_command_t;

/* Longest service name and client address the codec accepts. */
#define MDP_SERVICE_MAX 255
#define MDP_ADDRESS_MAX 255

/* Protocol header frames. */
#define MDP_CLIENT_HEADER "MDPC02"
#define MDP_WORKER_HEADER "MDPW02"
#define MDP_CLIENT_HEADER_01 "MDPC01"
#define MDP_WORKER_HEADER_01 "MDPW01"

/* MMI (RFC 8) */
#define MDP_MMI_PREFIX "mmi."
#define MDP_MMI_OK "200"
#define MDP_MMI_NOT_FOUND "404"
#define MDP_MMI_NOT_IMPLEMENTED "501"

typedef struct mdp_cmd_s {
  mdp_dialect_t dialect;
  mdp_command_t command;
  /* Service name (CLIENT_* and READY; NULL/0 otherwise, and for Majortomo's
   * replies to a client, which carry none). */
  const uint8_t *service;
  size_t service_size;
  /* Client address (WORKER_REQUEST/PARTIAL/FINAL; NULL/0 otherwise). */
  const uint8_t *address;
  size_t address_size;
  /* Index of the first body frame; equals the frame count when the command
   * has no body. */
  size_t body;
} mdp_cmd_t;

/* Parses `msg` as received by `role`, accepting only the dialects in
 * `dialects` (a mask of mdp_dialect_t).  On success returns 0 and fills
 * `cmd`; its pointers are valid until `msg` changes.  On failure returns one
 * of MDP_EFRAMES, MDP_EHEADER, MDP_ECOMMAND, MDP_EEXTRA, MDP_EDELIM,
 * MDP_ESERVICE, MDP_EADDRESS, MDP_EDIALECT (the message is well formed in a
 * dialect not in `dialects`) or MDP_EINVAL (bad arguments), and `cmd` is
 * unspecified.  `msg` is never changed and stays the caller's. */
MDP_EXTERN int mdp_parse(mdp_msg_t *msg, mdp_role_t role, unsigned dialects,
              mdp_cmd_t *cmd);

/* Prepends the header frames of `cmd` (dialect, command, service, address;
 * `cmd->body` is ignored) to `msg`, which holds the body frames.  Service and
 * address bytes are copied into new frames.  Returns 0, MDP_EINVAL (a command
 * that this dialect lacks, a command that needs a body given an empty `msg`,
 * a missing or oversized service or address), or MDP_ENOMEM; on failure
 * `msg` is unchanged.  The message stays the caller's either way. */
MDP_EXTERN int mdp_encode(mdp_msg_t *msg, const mdp_cmd_t *cmd);

/* Convenience: 1 if the service name starts with "mmi.". */
MDP_EXTERN int mdp_is_mmi(const void *service, size_t size);

/* The command's name ("REQUEST", "PARTIAL", ...), for logs. */
MDP_EXTERN const char *mdp_command_name(mdp_command_t command);

/* The dialect's name ("rfc18", "majortomo", "mdp01"), for logs. */
MDP_EXTERN const char *mdp_dialect_name(mdp_dialect_t dialect);

#ifdef __cplusplus
}
#endif
#endif /* MDP_CODEC_H */
