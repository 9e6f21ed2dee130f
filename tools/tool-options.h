/* Options the peer-side command-line tools share (mdp-request,
 * mdp-worker): --dialect NAME, and the CURVE options --curve-server-key
 * FILE and --curve-key FILE (mdp-keygen's files). */
#ifndef MDP_TOOL_OPTIONS_H
#define MDP_TOOL_OPTIONS_H

#include "mdp.h"

/* Reads the broker's public key from `server_file` and this program's key
 * pair from `own_file` (a NAME.secret) into the caller's `server` and
 * `own`, both zeroed first.  Both files or neither (then the keys stay
 * empty: plaintext).  0, or -1 after a message on standard error prefixed
 * with `prog` (the secret key is wiped again on failure). */
int tool_curve_load(const char *prog, const char *server_file,
                    const char *own_file, mdp_curve_keypair_t *server,
                    mdp_curve_keypair_t *own);

/* The dialect called `name` (rfc18, majortomo, mdp01: mdp_dialect_name's
 * names) into `*out`.  0, or -1 after a message on standard error
 * prefixed with `prog`. */
int tool_dialect(const char *prog, const char *name, mdp_dialect_t *out);

/* 0, or -1 after a message naming `endpoint` on standard error (prefixed
 * with `prog`) when mdp_endpoint_check() refuses it as a connect endpoint
 * (a tcp:// port missing or out of 1 to 65535). */
int tool_check_endpoint(const char *prog, const char *endpoint);

#endif
