/* libmdp for Node.js: the native half of the binding (index.js is the other).
 *
 * libmdp's broker, worker group and client run on the loop Node gives the
 * addon (napi_get_uv_event_loop): no thread of ours, no polling.  Each
 * environment (the main thread and each worker_threads thread) has its own
 * loop, its own instance data and its own objects (NAPI_MODULE_INIT makes
 * the addon context-aware).
 *
 * Re-entrance: libmdp calls our callbacks from its own code (a reactor's
 * read, a timer, and also from inside mdp_client_cancel() and
 * mdp_client_close(), which fail the requests in flight before returning).
 * None of them calls JavaScript: each pushes an event onto the
 * environment's queue and starts an idle handle; the idle callback, which
 * libuv runs at the top of the loop with no libmdp call on the stack,
 * delivers the queue to JavaScript in one callback scope (so promise
 * continuations run once per batch, when the scope closes).  JavaScript may
 * therefore call anything of ours from anywhere, and a JS callback never
 * runs inside a libmdp call.
 *
 * Buffers: frames arriving from libzmq become Buffers without a copy when
 * they are COPY_BELOW bytes or more (the zmq_msg_t is moved into the
 * Buffer's finaliser); smaller ones are copied, which is cheaper than an
 * external Buffer.  Frames going out of LEND_FROM bytes or more are lent to
 * libzmq (zmq_msg_init_data) with a reference on the Buffer, released on
 * this thread after libzmq lets go (see lender_t); smaller ones are copied
 * once into a zmq_msg_t.  libmdp moves frames from then on.
 *
 * Teardown: an async cleanup hook closes every object still open when the
 * environment goes away (a worker thread ending, the main thread exiting),
 * lets the loop run their close callbacks, then closes the idle handle and
 * releases the hook: the loop is left with no handle of ours.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mdp.h"

#define COPY_BELOW 1024

/* ---- per-environment state --------------------------------------------- */

enum { K_BROKER = 1, K_CLIENT = 2, K_WORKER = 3 };

/* Event kinds, as index.js's dispatch() knows them. */
enum {
  EV_REPLY = 1,   /* client: a, status, final, frames */
  EV_REQUEST = 2, /* worker: a (request id), b (worker), frames */
  EV_WEVENT = 3,  /* worker: status (event), final (err) */
  EV_LOG = 4,     /* any: status (level), text */
  EV_CLOSED = 5,  /* any */
  EV_DRAIN = 6    /* client */
};

typedef struct env_s env_t;
typedef struct obj_s obj_t;

typedef struct ev_s {
  struct ev_s *next;
  int kind;
  uint32_t jsid;
  uint64_t a;
  uint64_t b;
  int status;
  int final;
  mdp_msg_t *msg;
  char *text;
} ev_t;

struct obj_s {
  env_t *e;
  int kind;
  uint32_t jsid;
  int closing;  /* close asked */
  int closed;   /* close callback ran: the libmdp object is freed */
  int js_gone;  /* the JS external was finalised */
  /* Clients only: libmdp's client holds no active handle while it has no
   * request (its sockets open on demand), but an open object must keep the
   * process alive like a server socket does; an async handle that is never
   * sent does that, and follows ref()/unref(). */
  uv_async_t keep;
  int keep_open;
  union {
    mdp_broker_t *broker;
    mdp_client_t *client;
    mdp_worker_group_t *group;
  } u;
  obj_t *prev, *next; /* the environment's open objects */
};

/* Buffers lent to libzmq (frames of LEND_FROM bytes or more going out):
 * libzmq calls lent_free() from whichever thread drops the frame last,
 * often its I/O thread, where no JavaScript value may be touched; the
 * lender takes the reference there and an async handle deletes it on the
 * environment's thread.  The lender outlives the environment if libzmq
 * still holds frames when the environment goes. */
#define LEND_FROM (64 * 1024)

typedef struct lender_s lender_t;
typedef struct lent_s {
  struct lent_s *next;
  lender_t *ld;
  napi_ref ref;
} lent_t;

struct lender_s {
  uv_mutex_t lock;
  lent_t *released;    /* references to delete on the environment's thread */
  uv_async_t *async;   /* the environment's; NULL once it is gone */
  size_t outstanding;  /* frames lent and not yet released by libzmq */
  uint64_t lent_total, released_total;
};

struct env_s {
  napi_env env;
  uv_loop_t *loop;
  uv_idle_t idle;
  uv_async_t release;  /* deletes the references of released lent frames */
  lender_t *ld;
  int handles_open;    /* idle and release: freed when both are closed */
  ev_t *head, *tail;
  napi_ref dispatch;  /* index.js's dispatch function */
  napi_ref resource;  /* async resource object for the callback scope */
  napi_async_context actx;
  obj_t *objs;        /* open objects (not yet closed) */
  size_t open;
  int tearing_down;
  napi_async_cleanup_hook_handle hook;
};

static void obj_maybe_free(obj_t *o) {
  if (o->closed && o->js_gone && !o->keep_open)
    free(o);
}

static void keep_closed(uv_handle_t *h) {
  obj_t *o = h->data;
  o->keep_open = 0;
  obj_maybe_free(o);
}

static void idle_cb(uv_idle_t *h);

static void ev_free(ev_t *ev) {
  mdp_msg_destroy(ev->msg);
  free(ev->text);
  free(ev);
}

/* Queues an event for JavaScript; never calls it. */
static void push(env_t *e, int kind, uint32_t jsid, uint64_t a, uint64_t b,
                 int status, int final, mdp_msg_t *msg, const char *text) {
  if (e->tearing_down) {
    mdp_msg_destroy(msg);
    return;
  }
  ev_t *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    mdp_msg_destroy(msg); /* out of memory: nothing better to do */
    return;
  }
  ev->kind = kind;
  ev->jsid = jsid;
  ev->a = a;
  ev->b = b;
  ev->status = status;
  ev->final = final;
  ev->msg = msg;
  if (text != NULL)
    ev->text = strdup(text);
  if (e->tail != NULL)
    e->tail->next = ev;
  else
    e->head = ev;
  e->tail = ev;
  if (!uv_is_active((uv_handle_t *)&e->idle))
    uv_idle_start(&e->idle, idle_cb);
}

static void obj_unlink(obj_t *o) {
  env_t *e = o->e;
  if (o->prev != NULL)
    o->prev->next = o->next;
  else
    e->objs = o->next;
  if (o->next != NULL)
    o->next->prev = o->prev;
  o->prev = o->next = NULL;
  e->open--;
}

static void lender_free(lender_t *ld) {
  uv_mutex_destroy(&ld->lock);
  free(ld);
}

/* From any thread: libzmq has finished with a lent frame. */
static void lent_free(void *data, void *hint) {
  lent_t *l = hint;
  lender_t *ld = l->ld;
  uv_mutex_lock(&ld->lock);
  ld->outstanding--;
  if (ld->async != NULL) {
    l->next = ld->released;
    ld->released = l;
    uv_async_send(ld->async);
    uv_mutex_unlock(&ld->lock);
    return;
  }
  /* The environment is gone, and its references with it. */
  int last = ld->outstanding == 0;
  uv_mutex_unlock(&ld->lock);
  free(l);
  if (last)
    lender_free(ld);
}

/* On the environment's thread: drop the references of released frames. */
static void release_cb(uv_async_t *h) {
  env_t *e = h->data;
  lender_t *ld = e->ld;
  uv_mutex_lock(&ld->lock);
  lent_t *l = ld->released;
  ld->released = NULL;
  uv_mutex_unlock(&ld->lock);
  while (l != NULL) {
    lent_t *next = l->next;
    napi_delete_reference(e->env, l->ref);
    ld->released_total++;
    free(l);
    l = next;
  }
}

static void handle_closed(uv_handle_t *h) {
  env_t *e = h->data;
  if (--e->handles_open > 0)
    return;
  napi_async_cleanup_hook_handle hook = e->hook;
  free(e);
  napi_remove_async_cleanup_hook(hook);
}

static void teardown_maybe_done(env_t *e) {
  if (!e->tearing_down || e->open != 0)
    return;
  ev_t *ev = e->head;
  while (ev != NULL) {
    ev_t *next = ev->next;
    ev_free(ev);
    ev = next;
  }
  e->head = e->tail = NULL;
  /* Frames libzmq still holds are released into nothing from now on. */
  lender_t *ld = e->ld;
  uv_mutex_lock(&ld->lock);
  ld->async = NULL;
  int unused = ld->outstanding == 0;
  uv_mutex_unlock(&ld->lock);
  release_cb(&e->release); /* those released before: references deleted */
  if (unused)
    lender_free(ld);
  e->ld = NULL;
  e->handles_open = 2;
  uv_close((uv_handle_t *)&e->idle, handle_closed);
  uv_close((uv_handle_t *)&e->release, handle_closed);
}

/* A libmdp object finished closing (its close callback). */
static void obj_closed(obj_t *o) {
  env_t *e = o->e;
  o->closed = 1;
  obj_unlink(o);
  push(e, EV_CLOSED, o->jsid, 0, 0, 0, 0, NULL, NULL);
  teardown_maybe_done(e);
  obj_maybe_free(o);
}

/* ---- frames ------------------------------------------------------------ */

static void frame_finalize(napi_env env, void *data, void *hint) {
  zmq_msg_t *m = hint;
  zmq_msg_close(m);
  free(m);
}

/* An array of Buffers holding `msg`'s frames; the frames are moved out. */
static napi_value frames_to_js(napi_env env, mdp_msg_t *msg) {
  size_t n = msg != NULL ? mdp_msg_size(msg) : 0;
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  for (size_t i = 0; i < n; i++) {
    zmq_msg_t *f = mdp_msg_frame(msg, i);
    size_t size = zmq_msg_size(f);
    napi_value buf = NULL;
    if (size >= COPY_BELOW) {
      zmq_msg_t *held = malloc(sizeof *held);
      if (held != NULL) {
        zmq_msg_init(held);
        zmq_msg_move(held, f);
        if (napi_create_external_buffer(env, size, zmq_msg_data(held),
                                        frame_finalize, held,
                                        &buf) != napi_ok) {
          /* Runtimes that forbid external buffers: copy instead. */
          buf = NULL;
          void *out;
          napi_create_buffer_copy(env, size, zmq_msg_data(held), &out, &buf);
          zmq_msg_close(held);
          free(held);
        }
      }
    }
    if (buf == NULL) {
      void *out;
      napi_create_buffer_copy(env, size, zmq_msg_data(f), &out, &buf);
    }
    napi_set_element(env, arr, (uint32_t)i, buf);
  }
  return arr;
}

static napi_value throw_code(napi_env env, int rc) {
  napi_value code, msg, err;
  napi_create_string_utf8(env, mdp_err_name(rc), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, mdp_strerror(rc), NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &err);
  napi_value num;
  napi_create_int32(env, rc, &num);
  napi_set_named_property(env, err, "errno", num);
  napi_throw(env, err);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *what) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
  return NULL;
}

/* Appends one frame per element of `arr` (Buffer, TypedArray or string),
 * copying the bytes once into a zmq_msg_t.  0, or -1 with an exception. */
static env_t *get_env(napi_env env);

static int frames_from_js(napi_env env, napi_value arr, mdp_msg_t *msg) {
  env_t *e = get_env(env);
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) {
    throw_type(env, "frames must be an array");
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, arr, i, &v);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    zmq_msg_t f;
    if (t == napi_string) {
      size_t len;
      napi_get_value_string_utf8(env, v, NULL, 0, &len);
      /* +1: napi writes a terminating NUL, which the frame must not keep */
      char *tmp = NULL;
      if (zmq_msg_init_size(&f, len) != 0) {
        throw_code(env, MDP_ENOMEM);
        return -1;
      }
      if (len > 0) {
        tmp = malloc(len + 1);
        if (tmp == NULL) {
          zmq_msg_close(&f);
          throw_code(env, MDP_ENOMEM);
          return -1;
        }
        napi_get_value_string_utf8(env, v, tmp, len + 1, &len);
        memcpy(zmq_msg_data(&f), tmp, len);
        free(tmp);
      }
    } else {
      void *data = NULL;
      size_t len = 0;
      bool is_buf = false, is_ta = false;
      napi_is_buffer(env, v, &is_buf);
      if (is_buf) {
        napi_get_buffer_info(env, v, &data, &len);
      } else {
        napi_is_typedarray(env, v, &is_ta);
        if (!is_ta) {
          throw_type(env, "a frame must be a Buffer, a TypedArray or a string");
          return -1;
        }
        napi_typedarray_type tt;
        size_t count, off;
        napi_value ab;
        napi_get_typedarray_info(env, v, &tt, &count, &data, &ab, &off);
        size_t esz = 1;
        switch (tt) {
        case napi_int16_array: case napi_uint16_array: esz = 2; break;
        case napi_int32_array: case napi_uint32_array: case napi_float32_array:
          esz = 4; break;
        case napi_float64_array: case napi_bigint64_array:
        case napi_biguint64_array: esz = 8; break;
        default: esz = 1;
        }
        len = count * esz;
      }
      lent_t *l = NULL;
      if (len >= LEND_FROM && e != NULL && e->ld != NULL &&
          (l = calloc(1, sizeof *l)) != NULL) {
        /* Lent, not copied: a reference keeps the Buffer (and its bytes,
         * which V8 never moves) alive until libzmq releases the frame. */
        l->ld = e->ld;
        if (napi_create_reference(env, v, 1, &l->ref) != napi_ok ||
            zmq_msg_init_data(&f, data, len, lent_free, l) != 0) {
          if (l->ref != NULL)
            napi_delete_reference(env, l->ref);
          free(l);
          l = NULL;
        } else {
          uv_mutex_lock(&e->ld->lock);
          e->ld->outstanding++;
          e->ld->lent_total++;
          uv_mutex_unlock(&e->ld->lock);
        }
      }
      if (l == NULL) {
        if (zmq_msg_init_size(&f, len) != 0) {
          throw_code(env, MDP_ENOMEM);
          return -1;
        }
        if (len > 0)
          memcpy(zmq_msg_data(&f), data, len);
      }
    }
    if (mdp_msg_append(msg, &f) != 0) {
      zmq_msg_close(&f);
      throw_code(env, MDP_ENOMEM);
      return -1;
    }
    zmq_msg_close(&f);
  }
  return 0;
}

/* ---- options ----------------------------------------------------------- */

/* Options are read from a plain object whose keys are the C names
 * (index.js maps camelCase to them and checks the types). */
enum { T_U64, T_UINT, T_SIZE, T_INT, T_I64, T_STR };

typedef struct {
  const char *name;
  size_t off;
  int type;
} opt_t;

#define O(S, F, T) {#F, offsetof(S, F), T}
#define OS(S, N, F, T) {N, offsetof(S, F), T}

static const opt_t broker_opts[] = {
    O(mdp_broker_options_t, heartbeat_interval_ms, T_U64),
    O(mdp_broker_options_t, heartbeat_liveness, T_UINT),
    O(mdp_broker_options_t, silent_busy_dialects, T_UINT),
    O(mdp_broker_options_t, silent_busy_timeout_ms, T_U64),
    O(mdp_broker_options_t, busy_timeout_ms, T_U64),
    O(mdp_broker_options_t, request_expiry_ms, T_U64),
    O(mdp_broker_options_t, max_queue, T_SIZE),
    O(mdp_broker_options_t, max_queued_total, T_SIZE),
    O(mdp_broker_options_t, max_queue_per_client, T_SIZE),
    O(mdp_broker_options_t, max_queued_bytes, T_SIZE),
    O(mdp_broker_options_t, max_services, T_SIZE),
    O(mdp_broker_options_t, max_workers_per_service, T_SIZE),
    O(mdp_broker_options_t, max_frames, T_SIZE),
    O(mdp_broker_options_t, max_msg_size, T_I64),
    O(mdp_broker_options_t, max_redispatch, T_UINT),
    O(mdp_broker_options_t, dialects, T_UINT),
    O(mdp_broker_options_t, curve_secret_key, T_STR),
    O(mdp_broker_options_t, curve_allow, T_STR),
    O(mdp_broker_options_t, log_level, T_INT),
    O(mdp_broker_options_t, disconnect_expired, T_INT),
    O(mdp_broker_options_t, max_mmi_reply_bytes, T_SIZE),
    O(mdp_broker_options_t, metrics_max_services, T_SIZE),
    OS(mdp_broker_options_t, "sndhwm", socket.sndhwm, T_INT),
    OS(mdp_broker_options_t, "rcvhwm", socket.rcvhwm, T_INT),
    OS(mdp_broker_options_t, "tcp_keepalive", socket.tcp_keepalive, T_INT),
    OS(mdp_broker_options_t, "tcp_keepalive_idle", socket.tcp_keepalive_idle, T_INT),
    OS(mdp_broker_options_t, "tcp_keepalive_intvl", socket.tcp_keepalive_intvl, T_INT),
    OS(mdp_broker_options_t, "tcp_keepalive_cnt", socket.tcp_keepalive_cnt, T_INT),
    OS(mdp_broker_options_t, "ipv6", socket.ipv6, T_INT),
    {NULL, 0, 0}};

static const opt_t client_opts[] = {
    O(mdp_client_options_t, timeout_ms, T_U64),
    O(mdp_client_options_t, deadline_ms, T_U64),
    O(mdp_client_options_t, retries, T_UINT),
    O(mdp_client_options_t, max_sockets, T_SIZE),
    O(mdp_client_options_t, max_queue, T_SIZE),
    O(mdp_client_options_t, dialect, T_INT),
    O(mdp_client_options_t, curve_server_key, T_STR),
    O(mdp_client_options_t, curve_public_key, T_STR),
    O(mdp_client_options_t, curve_secret_key, T_STR),
    O(mdp_client_options_t, log_level, T_INT),
    O(mdp_client_options_t, max_msg_size, T_I64),
    O(mdp_client_options_t, max_queued_bytes, T_SIZE),
    O(mdp_client_options_t, spread, T_INT),
    O(mdp_client_options_t, probe, T_INT),
    O(mdp_client_options_t, backoff_ms, T_U64),
    O(mdp_client_options_t, backoff_max_ms, T_U64),
    OS(mdp_client_options_t, "sndhwm", socket.sndhwm, T_INT),
    OS(mdp_client_options_t, "rcvhwm", socket.rcvhwm, T_INT),
    OS(mdp_client_options_t, "tcp_keepalive", socket.tcp_keepalive, T_INT),
    OS(mdp_client_options_t, "tcp_keepalive_idle", socket.tcp_keepalive_idle, T_INT),
    OS(mdp_client_options_t, "tcp_keepalive_intvl", socket.tcp_keepalive_intvl, T_INT),
    OS(mdp_client_options_t, "tcp_keepalive_cnt", socket.tcp_keepalive_cnt, T_INT),
    OS(mdp_client_options_t, "ipv6", socket.ipv6, T_INT),
    {NULL, 0, 0}};

#define WG mdp_worker_group_options_t
static const opt_t worker_opts[] = {
    OS(WG, "heartbeat_interval_ms", worker.heartbeat_interval_ms, T_U64),
    OS(WG, "heartbeat_liveness", worker.heartbeat_liveness, T_UINT),
    OS(WG, "reconnect_initial_ms", worker.reconnect_initial_ms, T_U64),
    OS(WG, "reconnect_max_ms", worker.reconnect_max_ms, T_U64),
    OS(WG, "dialect", worker.dialect, T_INT),
    OS(WG, "curve_server_key", worker.curve_server_key, T_STR),
    OS(WG, "curve_public_key", worker.curve_public_key, T_STR),
    OS(WG, "curve_secret_key", worker.curve_secret_key, T_STR),
    OS(WG, "log_level", worker.log_level, T_INT),
    OS(WG, "max_msg_size", worker.max_msg_size, T_I64),
    OS(WG, "max_frames", worker.max_frames, T_SIZE),
    OS(WG, "sndhwm", worker.socket.sndhwm, T_INT),
    OS(WG, "rcvhwm", worker.socket.rcvhwm, T_INT),
    OS(WG, "tcp_keepalive", worker.socket.tcp_keepalive, T_INT),
    OS(WG, "tcp_keepalive_idle", worker.socket.tcp_keepalive_idle, T_INT),
    OS(WG, "tcp_keepalive_intvl", worker.socket.tcp_keepalive_intvl, T_INT),
    OS(WG, "tcp_keepalive_cnt", worker.socket.tcp_keepalive_cnt, T_INT),
    OS(WG, "ipv6", worker.socket.ipv6, T_INT),
    O(WG, concurrency, T_SIZE),
    O(WG, check_interval_ms, T_U64),
    O(WG, lost_after_ms, T_U64),
    {NULL, 0, 0}};

/* Strings read for the options; freed after the object's creation (libmdp
 * copies what it keeps). */
typedef struct {
  char *s[8];
  int n;
} strs_t;

static void strs_free(strs_t *st) {
  for (int i = 0; i < st->n; i++)
    free(st->s[i]);
  st->n = 0;
}

static char *get_str(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
    return NULL;
  char *s = malloc(len + 1);
  if (s != NULL)
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

/* Reads every option of `table` present in `obj` into `base`.  0, or -1
 * with an exception. */
static int read_opts(napi_env env, napi_value obj, const opt_t *table,
                     void *base, strs_t *st) {
  for (const opt_t *o = table; o->name != NULL; o++) {
    bool has = false;
    napi_has_named_property(env, obj, o->name, &has);
    if (!has)
      continue;
    napi_value v;
    napi_get_named_property(env, obj, o->name, &v);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    if (t == napi_undefined)
      continue;
    char *p = (char *)base + o->off;
    if (o->type == T_STR) {
      if (t == napi_null)
        continue;
      if (t != napi_string || st->n >= 8) {
        throw_type(env, "a string option is not a string");
        return -1;
      }
      char *s = get_str(env, v);
      if (s == NULL) {
        throw_code(env, MDP_ENOMEM);
        return -1;
      }
      st->s[st->n++] = s;
      memcpy(p, &s, sizeof s);
      continue;
    }
    if (t != napi_number) {
      throw_type(env, "a numeric option is not a number");
      return -1;
    }
    double d;
    napi_get_value_double(env, v, &d);
    /* Infinity means "no bound" for times: the largest value, which libmdp
     * reads as forever where it allows it. */
    switch (o->type) {
    case T_U64: {
      uint64_t x = d >= 18446744073709551615.0 ? UINT64_MAX
                   : d <= 0 ? 0 : (uint64_t)d;
      memcpy(p, &x, sizeof x);
      break;
    }
    case T_UINT: {
      unsigned x = d >= 4294967295.0 ? UINT32_MAX : d <= 0 ? 0 : (unsigned)d;
      memcpy(p, &x, sizeof x);
      break;
    }
    case T_SIZE: {
      size_t x = d >= 18446744073709551615.0 ? SIZE_MAX
                 : d <= 0 ? 0 : (size_t)d;
      memcpy(p, &x, sizeof x);
      break;
    }
    case T_INT: {
      int x = d >= 2147483647.0 ? INT32_MAX : d <= -2147483648.0 ? INT32_MIN
              : (int)d;
      memcpy(p, &x, sizeof x);
      break;
    }
    case T_I64: {
      int64_t x = d >= 9223372036854775807.0 ? INT64_MAX
                  : d <= -9223372036854775808.0 ? INT64_MIN : (int64_t)d;
      memcpy(p, &x, sizeof x);
      break;
    }
    }
  }
  return 0;
}

/* ---- callbacks from libmdp (queue only) -------------------------------- */

static void log_cb(void *data, mdp_log_level_t level, const char *line) {
  obj_t *o = data;
  push(o->e, EV_LOG, o->jsid, 0, 0, (int)level, 0, NULL, line);
}

static void broker_closed(mdp_broker_t *b) { obj_closed(mdp_broker_get_data(b)); }
static void client_closed(mdp_client_t *c) { obj_closed(mdp_client_get_data(c)); }
static void group_closed(mdp_worker_group_t *g) {
  obj_closed(mdp_worker_group_get_data(g));
}

static void client_reply(mdp_client_t *c, uint64_t id, int status, int final,
                         mdp_msg_t *body, void *data) {
  obj_t *o = mdp_client_get_data(c);
  push(o->e, EV_REPLY, o->jsid, id, 0, status, final, body, NULL);
}

static void client_drain(mdp_client_t *c) {
  obj_t *o = mdp_client_get_data(c);
  push(o->e, EV_DRAIN, o->jsid, 0, 0, 0, 0, NULL, NULL);
}

static void group_request(mdp_worker_group_t *g, mdp_request_t req,
                          mdp_msg_t *body) {
  obj_t *o = mdp_worker_group_get_data(g);
  push(o->e, EV_REQUEST, o->jsid, req.id, (uint64_t)(uintptr_t)req.worker, 0,
       0, body, NULL);
}

static void worker_event(mdp_worker_t *w, mdp_worker_event_t event, int err,
                         void *data) {
  obj_t *o = data;
  push(o->e, EV_WEVENT, o->jsid, 0, 0, (int)event, err, NULL, NULL);
}

/* ---- delivery to JavaScript -------------------------------------------- */

static void deliver(env_t *e, napi_value fn, napi_value recv, ev_t *ev) {
  napi_env env = e->env;
  napi_value argv[6];
  napi_create_int32(env, ev->kind, &argv[0]);
  napi_create_uint32(env, ev->jsid, &argv[1]);
  napi_create_double(env, (double)ev->a, &argv[2]);
  napi_get_undefined(env, &argv[3]);
  napi_get_undefined(env, &argv[4]);
  napi_get_undefined(env, &argv[5]);
  switch (ev->kind) {
  case EV_REPLY:
    napi_create_int32(env, ev->status, &argv[3]);
    napi_get_boolean(env, ev->final != 0, &argv[4]);
    if (ev->msg != NULL)
      argv[5] = frames_to_js(env, ev->msg);
    break;
  case EV_REQUEST:
    napi_create_bigint_uint64(env, ev->b, &argv[3]);
    argv[5] = frames_to_js(env, ev->msg);
    break;
  case EV_WEVENT:
    napi_create_int32(env, ev->status, &argv[3]);
    napi_create_int32(env, ev->final, &argv[4]);
    break;
  case EV_LOG:
    napi_create_int32(env, ev->status, &argv[3]);
    napi_create_string_utf8(env, ev->text != NULL ? ev->text : "",
                            NAPI_AUTO_LENGTH, &argv[4]);
    break;
  default:
    break;
  }
  napi_value result;
  if (napi_call_function(env, recv, fn, 6, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc); /* 'uncaughtException', as Node does */
    }
  }
}

static void idle_cb(uv_idle_t *h) {
  env_t *e = h->data;
  ev_t *ev = e->head;
  e->head = e->tail = NULL;
  uv_idle_stop(h);
  if (ev == NULL)
    return;
  napi_env env = e->env;
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value fn, res, recv;
  napi_get_reference_value(env, e->dispatch, &fn);
  napi_get_reference_value(env, e->resource, &res);
  napi_get_undefined(env, &recv);
  napi_callback_scope cs;
  napi_open_callback_scope(env, res, e->actx, &cs);
  while (ev != NULL) {
    ev_t *next = ev->next;
    napi_handle_scope inner;
    napi_open_handle_scope(env, &inner);
    deliver(e, fn, recv, ev);
    napi_close_handle_scope(env, inner);
    ev_free(ev);
    ev = next;
  }
  /* Runs process.nextTick callbacks and promise continuations, here at the
   * top of the loop. */
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

/* ---- teardown ---------------------------------------------------------- */

static void obj_start_close(obj_t *o) {
  if (o->closing)
    return;
  o->closing = 1;
  switch (o->kind) {
  case K_BROKER: mdp_broker_close(o->u.broker, broker_closed); break;
  case K_CLIENT:
    /* The client's own handles keep the loop running until it is closed. */
    if (o->keep_open && !uv_is_closing((uv_handle_t *)&o->keep))
      uv_close((uv_handle_t *)&o->keep, keep_closed);
    mdp_client_close(o->u.client, client_closed);
    break;
  case K_WORKER: mdp_worker_group_close(o->u.group, 0, group_closed); break;
  }
}

static void cleanup_hook(napi_async_cleanup_hook_handle hook, void *arg) {
  env_t *e = arg;
  e->hook = hook;
  e->tearing_down = 1;
  /* JavaScript is gone: drop what was queued for it. */
  ev_t *ev = e->head;
  while (ev != NULL) {
    ev_t *next = ev->next;
    ev_free(ev);
    ev = next;
  }
  e->head = e->tail = NULL;
  uv_idle_stop(&e->idle);
  for (obj_t *o = e->objs; o != NULL; o = o->next)
    obj_start_close(o);
  teardown_maybe_done(e);
}

/* ---- helpers for the exported functions -------------------------------- */

static env_t *get_env(napi_env env) {
  void *d = NULL;
  napi_get_instance_data(env, &d);
  return d;
}

static void obj_finalize(napi_env env, void *data, void *hint) {
  obj_t *o = data;
  o->js_gone = 1;
  obj_maybe_free(o);
}

static napi_value obj_wrap(napi_env env, obj_t *o) {
  env_t *e = o->e;
  o->next = e->objs;
  if (e->objs != NULL)
    e->objs->prev = o;
  e->objs = o;
  e->open++;
  napi_value ext;
  napi_create_external(env, o, obj_finalize, NULL, &ext);
  return ext;
}

/* The object behind argument `v`, of `kind`, still usable (not closing). */
static obj_t *get_obj(napi_env env, napi_value v, int kind, int allow_closing) {
  void *p = NULL;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
      p == NULL || ((obj_t *)p)->kind != kind) {
    throw_type(env, "not a libmdp handle of the right kind");
    return NULL;
  }
  obj_t *o = p;
  if (o->closed || (o->closing && !allow_closing)) {
    throw_code(env, MDP_ECLOSING);
    return NULL;
  }
  return o;
}

#define ARGS(n)                                                                \
  size_t argc = n;                                                             \
  napi_value argv[n];                                                          \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                        \
  if (argc < n)                                                                \
    return throw_type(env, "missing arguments");

static double num_arg(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* Endpoints from an array of strings; NULL with an exception on error. */
static char **endpoints_arg(napi_env env, napi_value arr, uint32_t *n) {
  bool is_arr = false;
  napi_is_array(env, arr, &is_arr);
  if (!is_arr || napi_get_array_length(env, arr, n) != napi_ok || *n == 0) {
    throw_type(env, "endpoints must be a non-empty array of strings");
    return NULL;
  }
  char **eps = calloc(*n, sizeof *eps);
  for (uint32_t i = 0; eps != NULL && i < *n; i++) {
    napi_value v;
    napi_get_element(env, arr, i, &v);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    if (t != napi_string || (eps[i] = get_str(env, v)) == NULL) {
      for (uint32_t j = 0; j < i; j++)
        free(eps[j]);
      free(eps);
      throw_type(env, "endpoints must be a non-empty array of strings");
      return NULL;
    }
  }
  return eps;
}

static void endpoints_free(char **eps, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    free(eps[i]);
  free(eps);
}

/* ---- broker ------------------------------------------------------------ */

/* brokerNew(jsid, opts, wantLog) -> handle */
static napi_value broker_new(napi_env env, napi_callback_info info) {
  ARGS(3);
  env_t *e = get_env(env);
  mdp_broker_options_t opts;
  mdp_broker_options_init(&opts);
  strs_t st = {0};
  if (read_opts(env, argv[1], broker_opts, &opts, &st) != 0) {
    strs_free(&st);
    return NULL;
  }
  /* curve_allow_keys: an array of Z85 public keys (copied by libmdp). */
  char **keys = NULL;
  uint32_t nkeys = 0;
  bool has_keys = false;
  napi_has_named_property(env, argv[1], "curve_allow_keys", &has_keys);
  if (has_keys) {
    napi_value arr;
    napi_get_named_property(env, argv[1], "curve_allow_keys", &arr);
    keys = endpoints_arg(env, arr, &nkeys);
    if (keys == NULL) {
      strs_free(&st);
      return NULL;
    }
    opts.curve_allow_keys = (const char *const *)keys;
    opts.curve_allow_count = nkeys;
  }
  obj_t *o = calloc(1, sizeof *o);
  if (o == NULL) {
    strs_free(&st);
    if (keys != NULL)
      endpoints_free(keys, nkeys);
    return throw_code(env, MDP_ENOMEM);
  }
  o->e = e;
  o->kind = K_BROKER;
  o->jsid = (uint32_t)num_arg(env, argv[0]);
  bool want_log = false;
  napi_get_value_bool(env, argv[2], &want_log);
  if (want_log) {
    opts.log_cb = log_cb;
    opts.log_data = o;
  }
  int rc = mdp_broker_new(e->loop, &opts, &o->u.broker);
  strs_free(&st);
  if (keys != NULL)
    endpoints_free(keys, nkeys);
  if (rc != 0) {
    free(o);
    return throw_code(env, rc);
  }
  mdp_broker_set_data(o->u.broker, o);
  return obj_wrap(env, o);
}

/* brokerBind(handle, endpoint) -> the endpoint bound (port resolved) */
static napi_value broker_bind(napi_env env, napi_callback_info info) {
  ARGS(2);
  obj_t *o = get_obj(env, argv[0], K_BROKER, 0);
  if (o == NULL)
    return NULL;
  char *ep = get_str(env, argv[1]);
  if (ep == NULL)
    return throw_type(env, "endpoint must be a string");
  int rc = mdp_broker_bind(o->u.broker, ep);
  free(ep);
  if (rc != 0)
    return throw_code(env, rc);
  char buf[1024];
  if (mdp_broker_last_endpoint(o->u.broker, buf, sizeof buf) != 0)
    buf[0] = 0;
  napi_value out;
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &out);
  return out;
}

static void set_num(napi_env env, napi_value obj, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, k, n);
}

static napi_value broker_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  obj_t *o = get_obj(env, argv[0], K_BROKER, 1);
  if (o == NULL)
    return NULL;
  mdp_broker_stats_t s;
  mdp_broker_get_stats(o->u.broker, &s);
  napi_value r;
  napi_create_object(env, &r);
#define S(f, js) set_num(env, r, js, (double)s.f)
  S(requests, "requests"); S(mmi_requests, "mmiRequests");
  S(dispatched, "dispatched"); S(partials, "partials");
  S(replies, "replies"); S(redispatched, "redispatched");
  S(dropped_invalid, "droppedInvalid"); S(dropped_expired, "droppedExpired");
  S(dropped_queue_full, "droppedQueueFull");
  S(dropped_unroutable, "droppedUnroutable");
  S(dropped_worker_lost, "droppedWorkerLost");
  S(workers_registered, "workersRegistered");
  S(workers_expired, "workersExpired"); S(heartbeats_sent, "heartbeatsSent");
  S(workers, "workers"); S(workers_idle, "workersIdle");
  S(services, "services"); S(queued, "queued");
#undef S
  return r;
}

/* ---- client ------------------------------------------------------------ */

/* clientNew(jsid, endpoints, opts, wantLog) -> handle */
static napi_value client_new(napi_env env, napi_callback_info info) {
  ARGS(4);
  env_t *e = get_env(env);
  uint32_t n;
  char **eps = endpoints_arg(env, argv[1], &n);
  if (eps == NULL)
    return NULL;
  mdp_client_options_t opts;
  mdp_client_options_init(&opts);
  strs_t st = {0};
  if (read_opts(env, argv[2], client_opts, &opts, &st) != 0) {
    strs_free(&st);
    endpoints_free(eps, n);
    return NULL;
  }
  obj_t *o = calloc(1, sizeof *o);
  if (o == NULL) {
    strs_free(&st);
    endpoints_free(eps, n);
    return throw_code(env, MDP_ENOMEM);
  }
  o->e = e;
  o->kind = K_CLIENT;
  o->jsid = (uint32_t)num_arg(env, argv[0]);
  bool want_log = false;
  napi_get_value_bool(env, argv[3], &want_log);
  if (want_log) {
    opts.log_cb = log_cb;
    opts.log_data = o;
  }
  int rc = mdp_client_new(e->loop, (const char *const *)eps, n, &opts,
                          &o->u.client);
  strs_free(&st);
  endpoints_free(eps, n);
  if (rc != 0) {
    free(o);
    return throw_code(env, rc);
  }
  mdp_client_set_data(o->u.client, o);
  mdp_client_set_drain_cb(o->u.client, client_drain);
  if (uv_async_init(e->loop, &o->keep, NULL) == 0) {
    o->keep.data = o;
    o->keep_open = 1;
  }
  return obj_wrap(env, o);
}

/* clientRequest(handle, service, frames, timeoutMs, deadlineMs, retries)
 * -> request id.  A negative (or undefined) setting keeps the client's. */
static napi_value client_request(napi_env env, napi_callback_info info) {
  ARGS(6);
  obj_t *o = get_obj(env, argv[0], K_CLIENT, 0);
  if (o == NULL)
    return NULL;
  char service[257];
  size_t slen = 0;
  if (napi_get_value_string_utf8(env, argv[1], service, sizeof service,
                                 &slen) != napi_ok)
    return throw_type(env, "service must be a string");
  if (slen == 0 || slen > 255)
    return throw_code(env, MDP_ESERVICE);
  mdp_msg_t *body = mdp_msg_new();
  if (body == NULL)
    return throw_code(env, MDP_ENOMEM);
  if (frames_from_js(env, argv[2], body) != 0) {
    mdp_msg_destroy(body);
    return NULL;
  }
  if (mdp_msg_size(body) == 0)
    mdp_msg_append_mem(body, NULL, 0); /* MDP needs one frame at least */
  mdp_request_options_t ro;
  mdp_client_request_options_init(o->u.client, &ro);
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t == napi_number) {
    double d = num_arg(env, argv[3]);
    if (d >= 0)
      ro.timeout_ms = d >= 1.8e19 ? UINT64_MAX : (uint64_t)d;
  }
  napi_typeof(env, argv[4], &t);
  if (t == napi_number) {
    double d = num_arg(env, argv[4]);
    if (d >= 0)
      ro.deadline_ms = d >= 1.8e19 ? UINT64_MAX : (uint64_t)d;
  }
  napi_typeof(env, argv[5], &t);
  if (t == napi_number) {
    double d = num_arg(env, argv[5]);
    if (d >= 0)
      ro.retries = d >= 4294967295.0 ? UINT32_MAX : (unsigned)d;
  }
  uint64_t id = 0;
  int rc = mdp_client_request(o->u.client, service, body, &ro, client_reply,
                              NULL, &id);
  if (rc != 0) {
    mdp_msg_destroy(body);
    return throw_code(env, rc);
  }
  napi_value out;
  napi_create_double(env, (double)id, &out);
  return out;
}

/* clientCancel(handle, id) -> 0 or a negative code (no such request) */
static napi_value client_cancel(napi_env env, napi_callback_info info) {
  ARGS(2);
  obj_t *o = get_obj(env, argv[0], K_CLIENT, 1);
  if (o == NULL)
    return NULL;
  int rc = o->closing ? MDP_ECLOSING
                      : mdp_client_cancel(o->u.client,
                                          (uint64_t)num_arg(env, argv[1]));
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

static napi_value client_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  obj_t *o = get_obj(env, argv[0], K_CLIENT, 1);
  if (o == NULL)
    return NULL;
  mdp_client_stats_t s;
  mdp_client_get_stats(o->u.client, &s);
  napi_value r;
  napi_create_object(env, &r);
#define S(f, js) set_num(env, r, js, (double)s.f)
  S(requests, "requests"); S(sent, "sent"); S(retries, "retries");
  S(partials, "partials"); S(finals, "finals"); S(timeouts, "timeouts");
  S(cancelled, "cancelled"); S(dropped, "dropped");
  S(sockets_opened, "socketsOpened"); S(in_flight, "inFlight");
  S(queued, "queued"); S(sockets, "sockets");
  S(endpoints_live, "endpointsLive");
#undef S
  return r;
}

/* ---- worker (a worker group) ------------------------------------------- */

/* workerNew(jsid, endpoints, service, opts, wantLog) -> handle */
static napi_value worker_new(napi_env env, napi_callback_info info) {
  ARGS(5);
  env_t *e = get_env(env);
  uint32_t n;
  char **eps = endpoints_arg(env, argv[1], &n);
  if (eps == NULL)
    return NULL;
  char *service = get_str(env, argv[2]);
  if (service == NULL) {
    endpoints_free(eps, n);
    return throw_type(env, "service must be a string");
  }
  mdp_worker_group_options_t opts;
  mdp_worker_group_options_init(&opts);
  strs_t st = {0};
  obj_t *o = NULL;
  if (read_opts(env, argv[3], worker_opts, &opts, &st) != 0)
    goto fail;
  o = calloc(1, sizeof *o);
  if (o == NULL) {
    throw_code(env, MDP_ENOMEM);
    goto fail;
  }
  o->e = e;
  o->kind = K_WORKER;
  o->jsid = (uint32_t)num_arg(env, argv[0]);
  bool want_log = false;
  napi_get_value_bool(env, argv[4], &want_log);
  if (want_log) {
    opts.worker.log_cb = log_cb;
    opts.worker.log_data = o;
  }
  opts.worker.event_cb = worker_event;
  opts.worker.event_data = o;
  int rc = mdp_worker_group_new(e->loop, (const char *const *)eps, n, service,
                                group_request, &opts, &o->u.group);
  if (rc != 0) {
    throw_code(env, rc);
    goto fail;
  }
  strs_free(&st);
  endpoints_free(eps, n);
  free(service);
  mdp_worker_group_set_data(o->u.group, o);
  return obj_wrap(env, o);
fail:
  free(o);
  strs_free(&st);
  endpoints_free(eps, n);
  free(service);
  return NULL;
}

/* workerReply(handle, worker, id, final, frames) -> 0 or a negative code.
 * `worker` and `id` are the request handle that EV_REQUEST carried; the
 * group keeps a handle valid while it is unanswered and the group exists,
 * and index.js sends at most one FINAL per handle, so `worker` is live. */
static napi_value worker_reply(napi_env env, napi_callback_info info) {
  ARGS(5);
  obj_t *o = get_obj(env, argv[0], K_WORKER, 1);
  if (o == NULL)
    return NULL;
  uint64_t wp = 0;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, argv[1], &wp, &lossless) != napi_ok)
    return throw_type(env, "bad request handle");
  mdp_request_t req = {(mdp_worker_t *)(uintptr_t)wp,
                       (uint64_t)num_arg(env, argv[2])};
  bool final = false;
  napi_get_value_bool(env, argv[3], &final);
  mdp_msg_t *body = mdp_msg_new();
  if (body == NULL)
    return throw_code(env, MDP_ENOMEM);
  if (frames_from_js(env, argv[4], body) != 0) {
    mdp_msg_destroy(body);
    return NULL;
  }
  if (mdp_msg_size(body) == 0) {
    mdp_msg_destroy(body);
    body = NULL; /* one empty frame */
  }
  int rc = final ? mdp_worker_final(req, body) : mdp_worker_partial(req, body);
  if (rc != 0)
    mdp_msg_destroy(body);
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

static napi_value worker_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  obj_t *o = get_obj(env, argv[0], K_WORKER, 1);
  if (o == NULL)
    return NULL;
  mdp_worker_group_stats_t s;
  mdp_worker_group_get_stats(o->u.group, &s);
  napi_value r;
  napi_create_object(env, &r);
#define S(f, js) set_num(env, r, js, (double)s.f)
  S(requests, "requests"); S(moves, "moves"); S(brokers_lost, "brokersLost");
  S(brokers_back, "brokersBack"); S(slots, "slots"); S(busy, "busy");
  S(max_busy, "maxBusy"); S(brokers_alive, "brokersAlive");
#undef S
  return r;
}

/* ---- common ------------------------------------------------------------ */

/* close(handle, waitForRequests): starts closing; EV_CLOSED follows. */
static napi_value obj_close(napi_env env, napi_callback_info info) {
  ARGS(2);
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL)
    return throw_type(env, "not a libmdp handle");
  obj_t *o = p;
  bool wait = false;
  napi_get_value_bool(env, argv[1], &wait);
  if (!o->closing && !o->closed) {
    if (o->kind == K_WORKER) {
      o->closing = 1;
      mdp_worker_group_close(o->u.group, wait ? 1 : 0, group_closed);
    } else {
      obj_start_close(o);
    }
  }
  return NULL;
}

/* ref(handle, on): the libuv ref/unref idiom (clients and workers). */
static napi_value obj_ref(napi_env env, napi_callback_info info) {
  ARGS(2);
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL)
    return throw_type(env, "not a libmdp handle");
  obj_t *o = p;
  bool on = true;
  napi_get_value_bool(env, argv[1], &on);
  if (o->closed)
    return NULL;
  if (o->kind == K_CLIENT) {
    if (on)
      mdp_client_ref(o->u.client);
    else
      mdp_client_unref(o->u.client);
    if (o->keep_open && !uv_is_closing((uv_handle_t *)&o->keep)) {
      if (on)
        uv_ref((uv_handle_t *)&o->keep);
      else
        uv_unref((uv_handle_t *)&o->keep);
    }
  } else if (o->kind == K_WORKER) {
    /* A group has no ref/unref of its own: apply it to each slot's worker
     * is not possible from outside, so the JS side refuses it. */
  }
  return NULL;
}

static napi_value js_strerror(napi_env env, napi_callback_info info) {
  ARGS(1);
  int rc = (int)num_arg(env, argv[0]);
  napi_value out[2], arr;
  napi_create_string_utf8(env, mdp_err_name(rc), NAPI_AUTO_LENGTH, &out[0]);
  napi_create_string_utf8(env, mdp_strerror(rc), NAPI_AUTO_LENGTH, &out[1]);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, out[0]);
  napi_set_element(env, arr, 1, out[1]);
  return arr;
}

/* curveKeypair() -> { publicKey, secretKey } (Z85), or throws ENOTSUP. */
static napi_value curve_keypair(napi_env env, napi_callback_info info) {
  mdp_curve_keypair_t kp;
  int rc = mdp_curve_keypair_new(&kp);
  if (rc != 0)
    return throw_code(env, rc);
  napi_value r, pub, sec;
  napi_create_object(env, &r);
  napi_create_string_utf8(env, kp.public_key, NAPI_AUTO_LENGTH, &pub);
  napi_create_string_utf8(env, kp.secret_key, NAPI_AUTO_LENGTH, &sec);
  napi_set_named_property(env, r, "publicKey", pub);
  napi_set_named_property(env, r, "secretKey", sec);
  memset(&kp, 0, sizeof kp);
  return r;
}

/* lentFrames() -> { lent, released, outstanding }: frames lent to libzmq
 * without a copy (for the tests and docs/node.md). */
static napi_value lent_frames(napi_env env, napi_callback_info info) {
  env_t *e = get_env(env);
  napi_value r;
  napi_create_object(env, &r);
  uv_mutex_lock(&e->ld->lock);
  double lent = (double)e->ld->lent_total, out = (double)e->ld->outstanding;
  uv_mutex_unlock(&e->ld->lock);
  set_num(env, r, "lent", lent);
  set_num(env, r, "released", (double)e->ld->released_total);
  set_num(env, r, "outstanding", out);
  return r;
}

/* setDispatch(fn): index.js's event function, once per environment. */
static napi_value set_dispatch(napi_env env, napi_callback_info info) {
  ARGS(1);
  env_t *e = get_env(env);
  if (e->dispatch != NULL)
    napi_delete_reference(env, e->dispatch);
  napi_create_reference(env, argv[0], 1, &e->dispatch);
  return NULL;
}

static void env_finalize(napi_env env, void *data, void *hint) {
  /* Nothing: the env_t is freed by the cleanup hook once its idle handle is
   * closed (after this finaliser may have run). */
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  env_t *e = calloc(1, sizeof *e);
  if (e == NULL) {
    napi_throw_error(env, "ENOMEM", "libmdp: out of memory");
    return NULL;
  }
  e->env = env;
  if (napi_get_uv_event_loop(env, &e->loop) != napi_ok) {
    free(e);
    napi_throw_error(env, NULL, "libmdp: no event loop");
    return NULL;
  }
  uv_idle_init(e->loop, &e->idle);
  e->idle.data = e;
  e->ld = calloc(1, sizeof *e->ld);
  if (e->ld == NULL || uv_mutex_init(&e->ld->lock) != 0 ||
      uv_async_init(e->loop, &e->release, release_cb) != 0) {
    napi_throw_error(env, "ENOMEM", "libmdp: cannot set up");
    return NULL; /* (leaks the little set up so far; the module is unusable) */
  }
  e->release.data = e;
  e->ld->async = &e->release;
  /* Lent frames being released must not keep the process alive. */
  uv_unref((uv_handle_t *)&e->release);
  /* The idle handle is active only while events wait for JavaScript; it
   * must not keep the process alive by itself otherwise (it is inactive
   * then anyway), and while active the events' object keeps it alive. */
  napi_value res, name;
  napi_create_object(env, &res);
  napi_create_reference(env, res, 1, &e->resource);
  napi_create_string_utf8(env, "libmdp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, res, name, &e->actx);
  napi_set_instance_data(env, e, env_finalize, NULL);
  napi_add_async_cleanup_hook(env, cleanup_hook, e, NULL);

  napi_property_descriptor props[] = {
#define F(n, f) {n, NULL, f, NULL, NULL, NULL, napi_enumerable, NULL}
      F("setDispatch", set_dispatch), F("strerror", js_strerror),
      F("brokerNew", broker_new), F("brokerBind", broker_bind),
      F("brokerStats", broker_stats), F("clientNew", client_new),
      F("clientRequest", client_request), F("clientCancel", client_cancel),
      F("clientStats", client_stats), F("workerNew", worker_new),
      F("workerReply", worker_reply), F("workerStats", worker_stats),
      F("close", obj_close), F("ref", obj_ref),
      F("curveKeypair", curve_keypair), F("lentFrames", lent_frames),
#undef F
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
