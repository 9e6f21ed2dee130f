/* The peer layer (internal): what the worker and the client both do with
 * their DEALER sockets to a broker, written once.
 *
 *   mdp__peer_config_init()  checks and copies the options both share (the
 *                            dialect, the ZeroMQ context, ZMQ_MAXMSGSIZE,
 *                            the CURVE client keys);
 *   mdp__peer_open()         opens a DEALER with them, connects it and puts
 *                            it on a started reactor;
 *   mdp__peer_send()         encodes a command in front of a body and sends
 *                            it; on failure the body is exactly as given;
 *   mdp__peer_read_waiting() reads what waits on a socket before a timer
 *                            judges its peer's silence.
 *
 * Threading: as the objects that use it, the loop's thread only.
 */
#ifndef MDP_PEER_H
#define MDP_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mdp/codec.h"
#include "mdp/context.h"
#include "mdp/curve.h"
#include "mdp/msg.h"
#include "mdp/reactor.h"

typedef struct {
  void *zmq_context;
  mdp_dialect_t dialect;
  int64_t max_msg_size; /* ZMQ_MAXMSGSIZE; -1 = unlimited */
  mdp_socket_options_t socket; /* hwm, keepalive, IPv6, the setup hook */
  int curve;            /* the CURVE client keys below are set */
  char curve_keys[3][MDP_CURVE_KEY_LEN + 1]; /* server, public, secret */
} mdp__peer_config_t;

/* The defaults of mdp_socket_options_t (mdp/context.h). */
void mdp__socket_options_default(mdp_socket_options_t *so);
/* 1 if every field is in range. */
int mdp__socket_options_valid(const mdp_socket_options_t *so);
/* Sets the HWMs, TCP keepalive and ZMQ_IPV6 (if so->ipv6 or `ipv6`) on a
 * socket not yet bound or connected.  0 or MDP_EZMQ. */
int mdp__socket_options_apply(void *sock, const mdp_socket_options_t *so,
                              int ipv6);
/* Runs the setup hook, if any: 0, or MDP_ESETUP when it refused. */
int mdp__socket_options_setup(void *sock, const mdp_socket_options_t *so);

/* Checks the shared options and copies them (keys included) into `cfg`:
 * exactly one dialect, max_msg_size >= -1, the socket options in their
 * ranges (mdp/context.h), all three CURVE keys or none.
 * `zmq_context` NULL: mdp_zmq_context().  0, or MDP_EINVAL, MDP_ENOTSUP
 * (keys given, libzmq has no CURVE), MDP_EZMQ (no context). */
int mdp__peer_config_init(mdp__peer_config_t *cfg, void *zmq_context,
                          mdp_dialect_t dialect, int64_t max_msg_size,
                          const mdp_socket_options_t *socket_options,
                          const char *curve_server_key,
                          const char *curve_public_key,
                          const char *curve_secret_key);

/* mdp__peer_config_init() from an options struct with the usual field
 * names (mdp_worker_options_t, mdp_client_options_t). */
#define mdp__peer_config_from_options(cfg, opts)                               \
  mdp__peer_config_init((cfg), (opts)->zmq_context, (opts)->dialect,           \
                        (opts)->max_msg_size, &(opts)->socket,                 \
                        (opts)->curve_server_key,                              \
                        (opts)->curve_public_key, (opts)->curve_secret_key)

/* Opens a DEALER socket with `cfg`'s options (linger 0, ZMQ_MAXMSGSIZE,
 * the high-water marks, TCP keepalive, ZMQ_IPV6 (also when `endpoint` has a
 * bracketed IPv6 literal), CURVE), calls the setup hook, connects it to `endpoint` and hands it to a new reactor that owns
 * it, with `data`, `max_frames` (0: no limit) and `recv_cb`, started (so
 * the first check of the socket is kicked to the next loop iteration; no
 * callback runs from here but the setup hook).  0 and `*out`, or MDP_EINVAL
 * (a malformed endpoint or unknown transport), MDP_ESETUP (the hook
 * returned non-zero), MDP_EZMQ, MDP_ENOMEM, MDP_EUV; on failure
 * nothing is left open. */
int mdp__peer_open(const mdp__peer_config_t *cfg, uv_loop_t *loop,
                   const char *endpoint, mdp_reactor_recv_cb recv_cb,
                   void *data, size_t max_frames, mdp_reactor_t **out);

/* Prepends `cmd`'s header to `body` and sends it on `reactor`.  0: the
 * message is the reactor's.  On failure (mdp_encode's or mdp_reactor_send's
 * error) the header is stripped again: `body` is exactly as the caller gave
 * it, and still the caller's. */
int mdp__peer_send(mdp_reactor_t *reactor, const mdp_cmd_t *cmd,
                   mdp_msg_t *body);

/* For a timer about to act on a peer's silence: libuv runs timers before it
 * polls, so after a stall of this process the message that ends the silence
 * may be waiting unread.  Reads (one batch, calling the reactor's receive
 * callback, which may end the connection or close the object) before the
 * caller judges.  The caller must look again at its state afterwards. */
void mdp__peer_read_waiting(mdp_reactor_t *reactor);

#endif /* MDP_PEER_H */
