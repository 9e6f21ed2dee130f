/* libmdp: error codes.
 *
 * Every libmdp function that can fail returns 0 (or a non-negative count) on
 * success and a negative error code on failure, as libuv does.  Codes that
 * mirror a system condition are the negated errno value (MDP_ENOMEM ==
 * -ENOMEM); codes that only libmdp produces live in the range -5000..-5099.
 *
 * A function that returns an error never calls its callback, and never takes
 * ownership of what it was given.
 */
#ifndef MDP_ERROR_H
#define MDP_ERROR_H

#include "mdp/export.h"

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, message) */
#define MDP_ERRNO_MAP(XX)                                                      \
  XX(EINVAL, -EINVAL, "invalid argument")                                      \
  XX(ENOMEM, -ENOMEM, "out of memory")                                         \
  XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                      \
  XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                       \
  XX(ECANCELED, -ECANCELED, "operation cancelled")                             \
  XX(EHOSTUNREACH, -EHOSTUNREACH, "peer is unreachable")                       \
  XX(EMSGSIZE, -EMSGSIZE, "message too long")                                  \
  XX(ENOBUFS, -ENOBUFS, "send queue is full")                                  \
  XX(EADDRINUSE, -EADDRINUSE, "address already in use")                        \
  XX(EPROTO, -EPROTO, "protocol error")                                        \
  XX(EBUSY, -EBUSY, "resource busy")                                           \
  XX(ENOTSUP, -ENOTSUP, "operation not supported")                             \
  XX(ECLOSING, -5000, "object is closing")                                     \
  XX(ESTATE, -5001, "operation not allowed in the current state")              \
  XX(ESETUP, -5002, "the socket setup hook refused the socket")                \
  XX(EHEADER, -5010, "wrong protocol header frame")                            \
  XX(ECOMMAND, -5011, "unknown or malformed command frame")                    \
  XX(EFRAMES, -5012, "message is missing frames")                              \
  XX(EEXTRA, -5013, "message has unexpected extra frames")                     \
  XX(EDELIM, -5014, "empty delimiter frame expected")                          \
  XX(ESERVICE, -5015, "service name is empty or too long")                     \
  XX(EADDRESS, -5016, "client address is empty or too long")                   \
  XX(EDIALECT, -5017, "dialect not accepted")                                  \
  XX(EZMQ, -5020, "unexpected ZeroMQ error")                                   \
  XX(EUV, -5021, "unexpected libuv error")

enum {
#define MDP_ERR_ENUM_(name, value, msg) MDP_##name = (value),
  MDP_ERRNO_MAP(MDP_ERR_ENUM_)
#undef MDP_ERR_ENUM_
  MDP_ERRNO_MAX_ = -5099
};

/* A static English description of `err`.  Never NULL: unknown codes give
 * "unknown error"; a negated errno value not in the map above is described by
 * strerror(). */
MDP_EXTERN const char *mdp_strerror(int err);

/* The symbolic name of `err` ("EHEADER"), or "UNKNOWN". */
MDP_EXTERN const char *mdp_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* MDP_ERROR_H */
