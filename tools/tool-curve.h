/* The client-side CURVE options of the command-line tools (mdp-request,
 * mdp-worker): --curve-server-key FILE and --curve-key FILE, mdp-keygen's
 * files. */
#ifndef MDP_TOOL_CURVE_H
#define MDP_TOOL_CURVE_H

#include "mdp.h"

/* Reads the broker's public key from `server_file` and this program's key
 * pair from `own_file` (a NAME.secret) into the caller's `server` and
 * `own`, both zeroed first.  Both files or neither (then the keys stay
 * empty: plaintext).  0, or -1 after a message on standard error prefixed
 * with `prog` (the secret key is wiped again on failure). */
int tool_curve_load(const char *prog, const char *server_file,
                    const char *own_file, mdp_curve_keypair_t *server,
                    mdp_curve_keypair_t *own);

#endif
