/* The broker's ZAP handler (RFC 27): see zap.h.
 *
 * Requests arrive on the ROUTER as
 *   [routing id | "" | "1.0" | request id | domain | address | identity |
 *    mechanism | credentials...]
 * (libzmq's side is a REQ-like pipe, hence the empty delimiter) and are
 * answered with
 *   [routing id | "" | "1.0" | request id | status | text | user id | ""]
 * where the user id is the key's NAME when accepted: the base name of its
 * NAME.pub in an allow-list directory, else the key in Z85.  The broker
 * reads it back from each message (ZMQ_MSG_PROPERTY "User-Id") for its
 * access list (mdp_broker_set_access_cb).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log_internal.h"
#include "curve_internal.h"
#include "zmq_call.h"
#include "mdp/error.h"
#include "mdp/msg.h"
#include "mdp/reactor.h"
#include "zap.h"

struct mdp__zap_s {
  uv_loop_t *loop;
  mdp_reactor_t *reactor;   /* NULL until mdp__zap_watch() */
  void *socket;
  mdp__keyset_t allowed;
  mdp_log_cb log_cb;
  void *log_data;
  mdp_log_level_t log_level;
  uint64_t accepted, refused;
  void (*close_cb)(void *data);
  void *close_data;
};

#define ZLOG(z, level, ...)                                                    \
  mdp__log_emit((z)->log_cb, (z)->log_data, (z)->log_level, (level), "zap: ",   \
               __VA_ARGS__)

static int frame_is(mdp_msg_t *m, size_t i, const char *s) {
  return mdp_msg_frame_eq(m, i, s, strlen(s));
}

/* Prints frame `i` (an address or mechanism) for a log line. */
static const char *frame_text(mdp_msg_t *m, size_t i, char *buf, size_t size) {
  size_t n = mdp_msg_frame_size(m, i);
  const unsigned char *p = mdp_msg_data(m, i);
  size_t k = 0;
  for (size_t j = 0; j < n && k + 1 < size; j++)
    buf[k++] = p[j] >= 0x20 && p[j] < 0x7f ? (char)p[j] : '?';
  buf[k] = '\0';
  return buf;
}

static void zap_recv(mdp_reactor_t *reactor, mdp_msg_t *req) {
  mdp__zap_t *z = mdp_reactor_get_data(reactor);
  /* id, "", version, request id, domain, address, identity, mechanism */
  if (mdp_msg_size(req) < 8 || mdp_msg_frame_size(req, 1) != 0 ||
      !frame_is(req, 2, "1.0")) {
    ZLOG(z, MDP_LOG_WARN, "malformed ZAP request dropped");
    mdp_msg_destroy(req);
    return;
  }
  const char *status = "400", *text = "not allowed";
  char user[256] = "";
  char addr[64], mech[16];
  frame_text(req, 5, addr, sizeof addr);
  frame_text(req, 7, mech, sizeof mech);
  if (!frame_is(req, 7, "CURVE")) {
    text = "CURVE required";
    ZLOG(z, MDP_LOG_WARN, "refused mechanism %s from %s", mech, addr);
  } else if (mdp_msg_size(req) != 9 || mdp_msg_frame_size(req, 8) != 32) {
    text = "malformed credentials";
    ZLOG(z, MDP_LOG_WARN, "refused malformed CURVE credentials from %s",
         addr);
  } else {
    const uint8_t *key = mdp_msg_data(req, 8);
    zmq_z85_encode(user, key, 32);
    const char *name = mdp__keyset_find(&z->allowed, key);
    if (name != NULL) {
      status = "200";
      text = "OK";
      ZLOG(z, MDP_LOG_DEBUG, "accepted CURVE key %s (%s) from %s", user,
           name, addr);
      snprintf(user, sizeof user, "%s", name);
    } else {
      /* A refused peer reconnects every ZMQ_RECONNECT_IVL: warn about the
       * first refusal and every 1000th, the rest at debug level. */
      text = "unknown key";
      uint64_t n = z->refused + 1;
      ZLOG(z, n == 1 || n % 1000 == 0 ? MDP_LOG_WARN : MDP_LOG_DEBUG,
           "refused unknown CURVE key %s from %s (%llu refused)", user, addr,
           (unsigned long long)n);
      user[0] = '\0';
    }
  }
  if (status[0] == '2')
    z->accepted++;
  else
    z->refused++;
  /* The reply starts with the routing id, delimiter, version and request
   * id of the request. */
  mdp_msg_t *rep = mdp_msg_new();
  int rc = rep == NULL ? MDP_ENOMEM : 0;
  for (size_t i = 0; rc == 0 && i < 4; i++)
    rc = mdp_msg_append_mem(rep, mdp_msg_data(req, i),
                            mdp_msg_frame_size(req, i));
  mdp_msg_destroy(req);
  if (rc < 0 || mdp_msg_append_str(rep, status) < 0 ||
      mdp_msg_append_str(rep, text) < 0 ||
      mdp_msg_append_str(rep, user) < 0 || mdp_msg_append_mem(rep, NULL, 0) < 0)
    rc = MDP_ENOMEM;
  if (rc == 0)
    rc = mdp_reactor_send(reactor, rep);
  if (rc < 0) {
    /* libzmq then waits for an answer that never comes: the handshake
     * stalls and the peer is not let in. */
    ZLOG(z, MDP_LOG_ERROR, "cannot answer a ZAP request: %s",
         mdp_strerror(rc));
    mdp_msg_destroy(rep);
  }
}

static void zap_free(mdp__zap_t *z) {
  mdp__keyset_free(&z->allowed);
  free(z);
}

static int load_allowed(mdp__zap_t *z, const mdp_broker_options_t *opts) {
  if (opts->curve_allow == NULL && opts->curve_allow_count == 0) {
    ZLOG(z, MDP_LOG_ERROR, "a CURVE secret key needs an allow-list of "
                           "public keys");
    return MDP_EINVAL;
  }
  for (size_t i = 0; i < opts->curve_allow_count; i++) {
    int rc = opts->curve_allow_keys == NULL
                 ? MDP_EINVAL
                 : mdp__keyset_add_z85(&z->allowed, opts->curve_allow_keys[i]);
    if (rc < 0) {
      ZLOG(z, MDP_LOG_ERROR, "allowed key %zu is not a Z85 key", i);
      return rc;
    }
  }
  if (opts->curve_allow != NULL) {
    char where[512];
    size_t line = 0;
    int rc = mdp__keyset_load(&z->allowed, opts->curve_allow, where,
                             sizeof where, &line);
    if (rc < 0) {
      if (rc == MDP_EINVAL && line > 0)
        ZLOG(z, MDP_LOG_ERROR, "%s:%zu: expected 'public-key = <40 Z85 "
             "characters>'", where, line);
      else
        ZLOG(z, MDP_LOG_ERROR, "cannot read the allow-list %s: %s", where,
             mdp_strerror(rc));
      return rc;
    }
  }
  mdp__keyset_finish(&z->allowed);
  return 0;
}

int mdp__zap_start(uv_loop_t *loop, void *ctx, void *server_socket,
                  const mdp_broker_options_t *opts, mdp__zap_t **out) {
  mdp__zap_t *z = calloc(1, sizeof *z);
  if (z == NULL)
    return MDP_ENOMEM;
  z->log_cb = opts->log_cb;
  z->log_data = opts->log_data;
  z->log_level = opts->log_level;
  if (!mdp_curve_available()) {
    ZLOG(z, MDP_LOG_ERROR, "this libzmq has no CURVE support");
    zap_free(z);
    return MDP_ENOTSUP;
  }
  if (!mdp_curve_key_valid(opts->curve_secret_key)) {
    ZLOG(z, MDP_LOG_ERROR, "the CURVE secret key is not 40 Z85 characters");
    zap_free(z);
    return MDP_EINVAL;
  }
  int rc = load_allowed(z, opts);
  if (rc < 0) {
    zap_free(z);
    return rc;
  }
  z->socket = zmq_socket(ctx, ZMQ_ROUTER);
  if (z->socket == NULL) {
    zap_free(z);
    return MDP_EZMQ;
  }
  int linger = 0, one = 1;
  zmq_setsockopt(z->socket, ZMQ_LINGER, &linger, sizeof linger);
  if (mdp__zmq_bind(z->socket, MDP__ZAP_ENDPOINT) != 0) {
    rc = zmq_errno() == EADDRINUSE ? MDP_EADDRINUSE : MDP_EZMQ;
    ZLOG(z, MDP_LOG_ERROR, "cannot bind the ZAP handler (%s): %s",
         MDP__ZAP_ENDPOINT,
         rc == MDP_EADDRINUSE ? "another ZAP handler is already bound in this "
                                "ZeroMQ context (one CURVE broker per context)"
                              : zmq_strerror(zmq_errno()));
    zmq_close(z->socket);
    zap_free(z);
    return rc;
  }
  if (zmq_setsockopt(server_socket, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
      zmq_setsockopt(server_socket, ZMQ_CURVE_SECRETKEY,
                     opts->curve_secret_key, MDP_CURVE_KEY_LEN) != 0) {
    zmq_unbind(z->socket, MDP__ZAP_ENDPOINT);
    zmq_close(z->socket);
    zap_free(z);
    return MDP_EZMQ;
  }
  z->loop = loop;
  ZLOG(z, MDP_LOG_INFO, "CURVE on: %zu public key(s) allowed",
       z->allowed.n);
  *out = z;
  return 0;
}

int mdp__zap_reload(mdp__zap_t *z, const mdp_broker_options_t *opts) {
  mdp__keyset_t old = z->allowed;
  memset(&z->allowed, 0, sizeof z->allowed);
  int rc = load_allowed(z, opts);
  if (rc < 0) { /* all or nothing: the old list stays */
    mdp__keyset_free(&z->allowed);
    z->allowed = old;
    return rc;
  }
  mdp__keyset_free(&old);
  ZLOG(z, MDP_LOG_INFO, "allow-list reloaded: %zu public key(s) allowed",
       z->allowed.n);
  return 0;
}

int mdp__zap_watch(mdp__zap_t *z) {
  if (z->reactor != NULL)
    return 0;
  int rc = mdp_reactor_new(z->loop, z->socket, 1, zap_recv, &z->reactor);
  if (rc < 0) {
    z->reactor = NULL;
    ZLOG(z, MDP_LOG_ERROR, "cannot watch the ZAP handler's socket: %s",
         mdp_strerror(rc));
    return rc;
  }
  mdp_reactor_set_data(z->reactor, z);
  /* The handler's socket has been bound since mdp__zap_start(): a request
   * may already wait, and start checks for one. */
  return mdp_reactor_start(z->reactor);
}

static void zap_closed(mdp_reactor_t *reactor) {
  mdp__zap_t *z = mdp_reactor_get_data(reactor);
  if (z->close_cb)
    z->close_cb(z->close_data);
  zap_free(z);
}

int mdp__zap_close(mdp__zap_t *z, void (*cb)(void *data), void *data) {
  if (z == NULL)
    return 0;
  /* inproc endpoints are released at unbind, synchronously; a closed socket
   * releases its own only when the reaper gets to it. */
  zmq_unbind(z->socket, MDP__ZAP_ENDPOINT);
  if (z->reactor == NULL) { /* never watched: no handle to wait for */
    zmq_close(z->socket);
    zap_free(z);
    return 0;
  }
  z->close_cb = cb;
  z->close_data = data;
  mdp_reactor_close(z->reactor, zap_closed);
  return 1;
}

void mdp__zap_counts(const mdp__zap_t *z, uint64_t *accepted,
                    uint64_t *refused) {
  *accepted = z->accepted;
  *refused = z->refused;
}

size_t mdp__zap_allowed(const mdp__zap_t *z) { return z->allowed.n; }
