/* libmdp: the shared ZeroMQ context, and the socket options of the
 * worker's and the client's sockets.
 *
 * Objects created without an explicit `zmq_context` option share one
 * process-wide context, created on first use.  inproc:// endpoints only
 * connect sockets of the same context.
 */
#ifndef MDP_CONTEXT_H
#define MDP_CONTEXT_H

#include "mdp/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shared context, created on the first call (thread-safe).  NULL only if
 * ZeroMQ could not create one.  Owned by libmdp. */
MDP_EXTERN void *mdp_zmq_context(void);

/* Terminates the shared context, if it was created.  Call it once, at the
 * end of the program, after every libmdp object has been closed (all of
 * libmdp's sockets use linger 0, so this does not wait).  A later
 * mdp_zmq_context() creates a new one. */
MDP_EXTERN void mdp_zmq_context_term(void);

/* Called with each ZeroMQ socket a worker or client creates, after libmdp
 * set its options (those below, linger, ZMQ_MAXMSGSIZE, CURVE) and before
 * it connects, on the loop's thread, from inside the call that opens the
 * socket (mdp_worker_new(), a reconnect, a client's dispatch).  It may set
 * any option with zmq_setsockopt (it wins over libmdp's) and read them with
 * zmq_getsockopt; it must not connect, send, receive or close the socket,
 * nor call back into the object.  Return 0 to go on; anything else makes
 * libmdp close the socket and fail with MDP_ESETUP. */
typedef int (*mdp_socket_setup_cb)(void *zmq_socket, void *data);

/* ZeroMQ options of each socket to a broker (the `socket` field at the end
 * of mdp_worker_options_t and mdp_client_options_t; the options_init
 * functions fill it with the defaults below).  Checked by mdp_worker_new()
 * and mdp_client_new() (out of range: MDP_EINVAL). */
typedef struct {
  /* ZMQ_SNDHWM / ZMQ_RCVHWM in messages: 0 (the default) leaves libzmq's
   * default (1000); above 0, that bound; below 0 is MDP_EINVAL.  (libzmq's
   * own 0, no bound, can be set from `setup`.) */
  int sndhwm;
  int rcvhwm;
  /* ZMQ_TCP_KEEPALIVE: -1 (default) the OS's setting, 0 off, 1 on; and
   * ZMQ_TCP_KEEPALIVE_IDLE, _INTVL (seconds) and _CNT (probes): -1 (default)
   * the OS's, else at least 1.  tcp:// only; ignored by other transports. */
  int tcp_keepalive;
  int tcp_keepalive_idle;
  int tcp_keepalive_intvl;
  int tcp_keepalive_cnt;
  /* ZMQ_IPV6: 0 (the default) sets it only for an endpoint whose host is a
   * bracketed IPv6 literal (tcp://[::1]:5555), which libzmq connects to
   * only with ZMQ_IPV6 on; 1 sets it for every endpoint (host names then
   * resolve to IPv6 addresses too).  Other values: MDP_EINVAL. */
  int ipv6;
  /* The hook above (NULL: none) and its `data`. */
  mdp_socket_setup_cb setup;
  void *setup_data;
} mdp_socket_options_t;

/* Checks an endpoint before it reaches libzmq, which takes a tcp:// port
 * modulo 65536 (tcp://127.0.0.1:99999 would bind 34463).  Returns 0, or
 * MDP_EINVAL for an empty endpoint, or a tcp:// one whose port is not a
 * decimal number 1..65535 (when `bind` is non-zero, also 0 or `*`: any free
 * port).  Other transports (ipc://, inproc://) are left to libzmq.
 * mdp_broker_bind(), mdp_worker_new() and mdp_client_new() call it. */
MDP_EXTERN int mdp_endpoint_check(const char *endpoint, int bind);

#ifdef __cplusplus
}
#endif
#endif /* MDP_CONTEXT_H */
