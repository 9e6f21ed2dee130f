/* libmdp: the ZeroMQ Majordomo Protocol (MDP/0.2, RFC 18, and MMI, RFC 8)
 * as callback objects on a libuv loop.  Include this one header. */
#ifndef MDP_H
#define MDP_H

#define MDP_VERSION_MAJOR 0
#define MDP_VERSION_MINOR 1
#define MDP_VERSION_PATCH 0
#define MDP_VERSION_STRING "0.1.0"

/* Majortomo's defaults, which libmdp shares. */
#define MDP_DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"
#define MDP_DEFAULT_HEARTBEAT_INTERVAL_MS 2500
#define MDP_DEFAULT_HEARTBEAT_LIVENESS 4
#define MDP_DEFAULT_TIMEOUT_MS 10000
#define MDP_DEFAULT_BUSY_WORKER_TIMEOUT_MS 900000

#include "mdp/error.h"
#include "mdp/log.h"
#include "mdp/context.h"
#include "mdp/msg.h"
#include "mdp/codec.h"
#include "mdp/reactor.h"
#include "mdp/broker.h"
#include "mdp/worker.h"
#include "mdp/client.h"
#include "mdp/worker_group.h"
#include "mdp/curve.h"
#include "mdp/malloc.h"

#endif /* MDP_H */
