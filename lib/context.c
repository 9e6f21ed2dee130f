/* The process-wide ZeroMQ context shared by objects created without one. */
#include <stdlib.h>
#include <uv.h>
#include <zmq.h>

#include "mdp/context.h"

static uv_mutex_t context_lock;
static uv_once_t context_once = UV_ONCE_INIT;
static void *context;

static void context_lock_init(void) {
  if (uv_mutex_init(&context_lock) != 0)
    abort();
}

void *mdp_zmq_context(void) {
  uv_once(&context_once, context_lock_init);
  uv_mutex_lock(&context_lock);
  if (context == NULL)
    context = zmq_ctx_new();
  void *ctx = context;
  uv_mutex_unlock(&context_lock);
  return ctx;
}

void mdp_zmq_context_term(void) {
  uv_once(&context_once, context_lock_init);
  uv_mutex_lock(&context_lock);
  void *ctx = context;
  context = NULL;
  uv_mutex_unlock(&context_lock);
  if (ctx != NULL)
    zmq_ctx_term(ctx);
}
