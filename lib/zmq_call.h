/* zmq_connect and zmq_bind, tried again on EINTR (internal).
 *
 * Both start by processing the socket's pending commands, and a signal
 * that lands meanwhile (a worker tool's SIGCHLD, a timer's SIGALRM) fails
 * them with EINTR before they did anything; the call is then simply made
 * again.  0, or -1 with zmq_errno() set, as libzmq's own. */
#ifndef MDP_ZMQ_CALL_H
#define MDP_ZMQ_CALL_H

#include <errno.h>
#include <zmq.h>

static inline int mdp__zmq_connect(void *socket, const char *endpoint) {
  int rc;
  do
    rc = zmq_connect(socket, endpoint);
  while (rc != 0 && zmq_errno() == EINTR);
  return rc;
}

static inline int mdp__zmq_bind(void *socket, const char *endpoint) {
  int rc;
  do
    rc = zmq_bind(socket, endpoint);
  while (rc != 0 && zmq_errno() == EINTR);
  return rc;
}

#endif /* MDP_ZMQ_CALL_H */
