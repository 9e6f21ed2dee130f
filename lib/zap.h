/* The broker's ZAP handler (RFC 27) for CURVE (internal).
 *
 * A ROUTER socket bound to inproc://zeromq.zap.01 in the broker's ZeroMQ
 * context, run by an mdp_reactor_t on the broker's own loop.  libzmq asks
 * it about every CURVE handshake on any socket of that context; it answers
 * 200 for mechanism CURVE with a public key in the allow-list and 400 for
 * everything else.  ZeroMQ allows one ZAP endpoint per context, so a second
 * handler in the same context fails with MDP_EADDRINUSE. */
#ifndef MDP_ZAP_H
#define MDP_ZAP_H

#include <stdint.h>
#include <uv.h>

#include "mdp/broker.h"

#define MDP__ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct mdp__zap_s mdp__zap_t;

/* Reads the CURVE options of `opts` (curve_secret_key, curve_allow,
 * curve_allow_keys), loads the allow-list, binds the handler in `ctx` and
 * makes `server_socket` a CURVE server with the secret key.  Call before
 * the server socket binds: until the handler exists libzmq would let any
 * key in.  No libuv handle is created yet (see mdp__zap_watch), so a caller
 * that fails later can undo this with mdp__zap_close() at once, leaving
 * nothing for the loop to close.  Returns 0 and sets `*out`; or MDP_EINVAL (a malformed key or
 * allow-list file, no allow-list at all), MDP_ENOTSUP (libzmq has no
 * CURVE), MDP_EADDRINUSE (a ZAP handler is already bound in `ctx`),
 * MDP_ENOMEM, MDP_EZMQ, a negated errno value (allow-list unreadable);
 * on failure nothing is left behind and the error is logged through the
 * options' log hook. */
int mdp__zap_start(uv_loop_t *loop, void *ctx, void *server_socket,
                  const mdp_broker_options_t *opts, mdp__zap_t **out);

/* Puts the handler's socket on the loop (once; later calls return 0).  Call
 * before the server socket binds, since handshakes start then.  0, or
 * MDP_ENOMEM / MDP_EUV with nothing changed. */
int mdp__zap_watch(mdp__zap_t *zap);

/* Unbinds the handler at once (a new one may bind in the same context right
 * away) and closes its socket.  Returns 1 if it was watched: then, from the
 * loop, it calls `cb(data)` (may be NULL) and frees it; 0 if it never was
 * (or `zap` is NULL): it is freed now and `cb` is not called. */
int mdp__zap_close(mdp__zap_t *zap, void (*cb)(void *data), void *data);

/* Loads the allow-list of `opts` again (curve_allow, curve_allow_keys)
 * and, if it loads whole, uses it for the handshakes from now on; else the
 * old one stays and the error is logged.  0, MDP_EINVAL, MDP_ENOMEM or a
 * negated errno value. */
int mdp__zap_reload(mdp__zap_t *zap, const mdp_broker_options_t *opts);

/* Handshakes accepted and refused so far; the keys allowed. */
void mdp__zap_counts(const mdp__zap_t *zap, uint64_t *accepted,
                    uint64_t *refused);
size_t mdp__zap_allowed(const mdp__zap_t *zap);

#endif /* MDP_ZAP_H */
