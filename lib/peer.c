/* The peer layer: the worker's and the client's DEALER sockets (peer.h). */
#include <errno.h>
#include <string.h>
#include <zmq.h>

#include "mdp/context.h"
#include "mdp/error.h"
#include "curve_internal.h"
#include "zmq_call.h"
#include "peer.h"

void mdp__socket_options_default(mdp_socket_options_t *so) {
  memset(so, 0, sizeof *so);
  so->tcp_keepalive = -1;
  so->tcp_keepalive_idle = -1;
  so->tcp_keepalive_intvl = -1;
  so->tcp_keepalive_cnt = -1;
}

/* -1 (the OS's) or a positive value, as libzmq takes them. */
static int keepalive_value_valid(int v) { return v == -1 || v >= 1; }

int mdp__socket_options_valid(const mdp_socket_options_t *so) {
  return so->sndhwm >= 0 && so->rcvhwm >= 0 && so->tcp_keepalive >= -1 &&
         so->tcp_keepalive <= 1 &&
         keepalive_value_valid(so->tcp_keepalive_idle) &&
         keepalive_value_valid(so->tcp_keepalive_intvl) &&
         keepalive_value_valid(so->tcp_keepalive_cnt) &&
         (so->ipv6 == 0 || so->ipv6 == 1);
}

int mdp__peer_config_init(mdp__peer_config_t *cfg, void *zmq_context,
                          mdp_dialect_t dialect, int64_t max_msg_size,
                          const mdp_socket_options_t *socket_options,
                          const char *curve_server_key,
                          const char *curve_public_key,
                          const char *curve_secret_key) {
  memset(cfg, 0, sizeof *cfg);
  if (dialect != MDP_DIALECT_RFC18 && dialect != MDP_DIALECT_MAJORTOMO &&
      dialect != MDP_DIALECT_MDP01)
    return MDP_EINVAL; /* exactly one dialect */
  if (max_msg_size < -1 || !mdp__socket_options_valid(socket_options))
    return MDP_EINVAL;
  int curve = mdp__curve_client_check(curve_server_key, curve_public_key,
                                      curve_secret_key);
  if (curve < 0)
    return curve;
  cfg->zmq_context = zmq_context ? zmq_context : mdp_zmq_context();
  if (cfg->zmq_context == NULL)
    return MDP_EZMQ;
  cfg->dialect = dialect;
  cfg->max_msg_size = max_msg_size;
  cfg->socket = *socket_options;
  if (curve) {
    cfg->curve = 1;
    memcpy(cfg->curve_keys[0], curve_server_key, MDP_CURVE_KEY_LEN + 1);
    memcpy(cfg->curve_keys[1], curve_public_key, MDP_CURVE_KEY_LEN + 1);
    memcpy(cfg->curve_keys[2], curve_secret_key, MDP_CURVE_KEY_LEN + 1);
  }
  return 0;
}

/* A failed zmq_connect: the caller's endpoint, or ZeroMQ. */
static int connect_error(int zmq_err) {
  return zmq_err == EINVAL || zmq_err == EPROTONOSUPPORT ? MDP_EINVAL
                                                         : MDP_EZMQ;
}

/* 1 if `endpoint` is tcp:// to a bracketed IPv6 literal (tcp://[::1]:5555,
 * also after a source address: tcp://[::1]:0;[::1]:5555), which libzmq
 * resolves only with ZMQ_IPV6 on. */
static int endpoint_is_ipv6_literal(const char *endpoint) {
  return strncmp(endpoint, "tcp://", 6) == 0 &&
         strchr(endpoint + 6, '[') != NULL;
}

static int set_int(void *sock, int option, int value) {
  return zmq_setsockopt(sock, option, &value, sizeof value) == 0 ? 0
                                                                 : MDP_EZMQ;
}

int mdp__socket_options_apply(void *sock, const mdp_socket_options_t *so,
                              int ipv6) {
  int rc = 0;
  if (rc == 0 && so->sndhwm > 0)
    rc = set_int(sock, ZMQ_SNDHWM, so->sndhwm);
  if (rc == 0 && so->rcvhwm > 0)
    rc = set_int(sock, ZMQ_RCVHWM, so->rcvhwm);
  if (rc == 0 && so->tcp_keepalive != -1)
    rc = set_int(sock, ZMQ_TCP_KEEPALIVE, so->tcp_keepalive);
  if (rc == 0 && so->tcp_keepalive_idle != -1)
    rc = set_int(sock, ZMQ_TCP_KEEPALIVE_IDLE, so->tcp_keepalive_idle);
  if (rc == 0 && so->tcp_keepalive_intvl != -1)
    rc = set_int(sock, ZMQ_TCP_KEEPALIVE_INTVL, so->tcp_keepalive_intvl);
  if (rc == 0 && so->tcp_keepalive_cnt != -1)
    rc = set_int(sock, ZMQ_TCP_KEEPALIVE_CNT, so->tcp_keepalive_cnt);
  if (rc == 0 && (so->ipv6 || ipv6))
    rc = set_int(sock, ZMQ_IPV6, 1);
  return rc;
}

int mdp__socket_options_setup(void *sock, const mdp_socket_options_t *so) {
  return so->setup != NULL && so->setup(sock, so->setup_data) != 0
             ? MDP_ESETUP
             : 0;
}

/* Sets the options of a new socket, before it connects; then the hook. */
static int socket_configure(const mdp__peer_config_t *cfg, void *sock,
                            const char *endpoint) {
  const mdp_socket_options_t *so = &cfg->socket;
  int64_t max_msg_size = cfg->max_msg_size;
  int rc = set_int(sock, ZMQ_LINGER, 0); /* a dead connection keeps nothing */
  /* Bounded memory: ZeroMQ bounds a frame, the reactor a message. */
  if (rc == 0 && zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_msg_size,
                                sizeof max_msg_size) != 0)
    rc = MDP_EZMQ;
  if (rc == 0)
    rc = mdp__socket_options_apply(sock, so,
                                   endpoint_is_ipv6_literal(endpoint));
  if (rc == 0 && cfg->curve)
    rc = mdp__curve_client_setup(sock, cfg->curve_keys[0],
                                 cfg->curve_keys[1], cfg->curve_keys[2]);
  if (rc == 0)
    rc = mdp__socket_options_setup(sock, so);
  return rc;
}

int mdp__peer_open(const mdp__peer_config_t *cfg, uv_loop_t *loop,
                   const char *endpoint, mdp_reactor_recv_cb recv_cb,
                   void *data, size_t max_frames, mdp_reactor_t **out) {
  void *sock = zmq_socket(cfg->zmq_context, ZMQ_DEALER);
  if (sock == NULL)
    return MDP_EZMQ;
  mdp_reactor_t *reactor = NULL;
  int rc = socket_configure(cfg, sock, endpoint);
  if (rc == 0 && mdp__zmq_connect(sock, endpoint) != 0)
    rc = connect_error(zmq_errno());
  if (rc == 0)
    rc = mdp_reactor_new(loop, sock, 1, recv_cb, &reactor);
  if (rc < 0) {
    zmq_close(sock);
    return rc;
  }
  mdp_reactor_set_data(reactor, data);
  mdp_reactor_set_max_frames(reactor, max_frames);
  mdp_reactor_start(reactor);
  *out = reactor;
  return 0;
}

int mdp__peer_send(mdp_reactor_t *reactor, const mdp_cmd_t *cmd,
                   mdp_msg_t *body) {
  size_t before = mdp_msg_size(body);
  int rc = mdp_encode(body, cmd);
  if (rc < 0)
    return rc;
  rc = mdp_reactor_send(reactor, body);
  if (rc < 0)
    mdp_msg_drop_front(body, mdp_msg_size(body) - before);
  return rc;
}

void mdp__peer_read_waiting(mdp_reactor_t *reactor) {
  mdp_reactor_process_now(reactor);
}
