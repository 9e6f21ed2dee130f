/* libmdp._native: the C shim between Python and libmdp.
 *
 * One libuv loop thread per process runs every libmdp object (clients and
 * worker groups).  Python threads never touch a libmdp object: they post
 * commands to a locked queue and wake the loop with a uv_async_t.  The loop
 * thread never touches Python (it never takes the GIL): what it produces
 * (reply parts, requests for a worker, "closed") goes as plain C structs into
 * a Channel, a locked queue that Python threads wait on with the GIL
 * released, or that an asyncio loop reads through an eventfd (add_reader).
 * Bodies cross threads whole as mdp_msg_t (moved, never shared); bytes are
 * copied into frames on the calling Python thread and out of them on the
 * thread that takes the event.
 *
 * Fork: a child process inherits the parent's memory but not its loop
 * thread, and libzmq contexts do not survive a fork.  The per-process state
 * (loop, thread, ZeroMQ context) records the pid that made it; a call from
 * another pid starts a fresh state and leaves the parent's untouched (its
 * memory is abandoned in the child, never freed or locked).  Objects made
 * before the fork refuse to work in the child (StateError).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <mdp.h>

/* ------------------------------------------------------------------ errors */

/* Python's libmdp.errors.from_code(code, message) -> exception instance;
 * set once at import by libmdp/__init__.py. */
static PyObject *g_err_factory;

static PyObject *raise_code(int code, const char *what) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s: %s (%s)", what, mdp_strerror(code),
           mdp_err_name(code));
  if (!g_err_factory) {
    PyErr_SetString(PyExc_RuntimeError, buf);
    return NULL;
  }
  PyObject *exc = PyObject_CallFunction(g_err_factory, "is", code, buf);
  if (!exc)
    return NULL;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

/* ------------------------------------------------------------------ clock */

static void deadline_after(struct timespec *ts, double seconds) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  time_t s = (time_t)seconds;
  long ns = (long)((seconds - (double)s) * 1e9);
  ts->tv_sec += s;
  ts->tv_nsec += ns;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec ||
         (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
}

/* ---------------------------------------------------------------- channel */

enum { EV_REPLY = 1, EV_REQUEST = 2, EV_CLOSED = 3 };

typedef struct ev_s {
  struct ev_s *next;
  uint64_t tag;
  int kind;
  int status;
  int final;
  mdp_msg_t *body;
  uint64_t h1, h2; /* EV_REQUEST: the request handle (worker, id) */
} ev_t;

typedef struct channel_s {
  int refs; /* atomic */
  pid_t pid;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ev_t *head, *tail;
  int waiters;
  int efd; /* -1 until fileno() asks for it */
} channel_t;

static channel_t *channel_new(void) {
  channel_t *ch = calloc(1, sizeof *ch);
  if (!ch)
    return NULL;
  ch->refs = 1;
  ch->pid = getpid();
  pthread_mutex_init(&ch->mu, NULL);
  cond_init_monotonic(&ch->cv);
  ch->efd = -1;
  return ch;
}

static void channel_ref(channel_t *ch) {
  __atomic_add_fetch(&ch->refs, 1, __ATOMIC_RELAXED);
}

static void ev_free(ev_t *ev) {
  if (ev->body)
    mdp_msg_destroy(ev->body);
  free(ev);
}

static void channel_unref(channel_t *ch) {
  if (__atomic_sub_fetch(&ch->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  ev_t *ev = ch->head;
  while (ev) {
    ev_t *n = ev->next;
    ev_free(ev);
    ev = n;
  }
  if (ch->efd >= 0)
    close(ch->efd);
  pthread_mutex_destroy(&ch->mu);
  pthread_cond_destroy(&ch->cv);
  free(ch);
}

/* Any thread.  Takes `body` (may be NULL).  Out of memory: the event is
 * lost, so that is reported as a failed reply part where it can be. */
static void channel_push(channel_t *ch, uint64_t tag, int kind, int status,
                         int final, mdp_msg_t *body, uint64_t h1,
                         uint64_t h2) {
  ev_t *ev = malloc(sizeof *ev);
  if (!ev) {
    if (body)
      mdp_msg_destroy(body);
    return;
  }
  ev->next = NULL;
  ev->tag = tag;
  ev->kind = kind;
  ev->status = status;
  ev->final = final;
  ev->body = body;
  ev->h1 = h1;
  ev->h2 = h2;
  pthread_mutex_lock(&ch->mu);
  int was_empty = ch->head == NULL;
  if (ch->tail)
    ch->tail->next = ev;
  else
    ch->head = ev;
  ch->tail = ev;
  int wake = ch->waiters > 0;
  int efd = ch->efd;
  pthread_mutex_unlock(&ch->mu);
  /* After the unlock: a waiter woken while the lock is still held would
   * only block again on it.  (It re-checks the queue under the lock, so
   * nothing is missed.) */
  if (wake)
    pthread_cond_signal(&ch->cv);
  /* One wake-up per batch: the reader reads the eventfd before it drains,
   * so an event pushed after its drain finds the queue empty and writes. */
  if (was_empty && efd >= 0) {
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;
  }
}

static ev_t *channel_pop_locked(channel_t *ch) {
  ev_t *ev = ch->head;
  if (ev) {
    ch->head = ev->next;
    if (!ch->head)
      ch->tail = NULL;
  }
  return ev;
}

/* ------------------------------------------------------- per-process state */

typedef struct cmd_s cmd_t;

typedef struct state_s {
  pid_t pid;
  uv_loop_t loop;
  uv_async_t async;
  uv_thread_t thread;
  pthread_mutex_t mu;
  cmd_t *head, *tail;
  void *zctx;
} state_t;

/* Guarded by the GIL (every caller holds it). */
static state_t *g_state;

static void on_async(uv_async_t *h);

static void loop_main(void *arg) {
  state_t *st = arg;
  uv_run(&st->loop, UV_RUN_DEFAULT);
}

static state_t *get_state(void) {
  pid_t pid = getpid();
  if (g_state && g_state->pid == pid)
    return g_state;
  /* First use, or a child after fork: a fresh state.  The parent's (if
   * any) is abandoned as it is: its thread does not exist here, and its
   * locks may have been held at the fork. */
  state_t *st = calloc(1, sizeof *st);
  if (!st) {
    PyErr_NoMemory();
    return NULL;
  }
  st->pid = pid;
  if (uv_loop_init(&st->loop) != 0) {
    free(st);
    return (state_t *)raise_code(MDP_EUV, "uv_loop_init");
  }
  uv_async_init(&st->loop, &st->async, on_async);
  st->async.data = st;
  pthread_mutex_init(&st->mu, NULL);
  st->zctx = zmq_ctx_new();
  if (!st->zctx) {
    free(st);
    return (state_t *)raise_code(MDP_EZMQ, "zmq_ctx_new");
  }
  /* The loop thread takes no signals: they go to Python's threads, where
   * Python's handlers can run. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = uv_thread_create(&st->thread, loop_main, st);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    free(st);
    return (state_t *)raise_code(MDP_EUV, "uv_thread_create");
  }
  g_state = st;
  return st;
}

/* ------------------------------------------------------------ native objs */

enum { K_CLIENT = 1, K_WORKER = 2 };

typedef struct sync_s {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int rc;
} sync_t;

static void sync_init(sync_t *s) {
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->done = 0;
  s->rc = 0;
}

static void sync_signal(sync_t *s, int rc) {
  pthread_mutex_lock(&s->mu);
  s->rc = rc;
  s->done = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Called with the GIL released. */
static int sync_wait(sync_t *s) {
  pthread_mutex_lock(&s->mu);
  while (!s->done)
    pthread_cond_wait(&s->cv, &s->mu);
  int rc = s->rc;
  pthread_mutex_unlock(&s->mu);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  return rc;
}

typedef struct creq_s {
  struct creq_s *prev, *next;
  uint64_t tag;
  uint64_t id;
  channel_t *ch;
  struct nobj_s *obj;
} creq_t;

typedef struct nobj_s {
  int refs; /* atomic: the Python object, and the loop while open */
  state_t *st;
  int kind;
  channel_t *ch; /* events of the object itself (requests, closed) */
  mdp_client_t *client;
  mdp_worker_group_t *group;
  int closing; /* loop thread */
  sync_t *close_sync;
  creq_t *reqs; /* loop thread: client requests in flight */
  /* creation arguments (owned) */
  char **endpoints;
  size_t n;
  char *service;
  char *keys[3];
  mdp_client_options_t copts;
  mdp_worker_group_options_t wopts;
} nobj_t;

static void nobj_unref(nobj_t *o) {
  if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  for (size_t i = 0; i < o->n; i++)
    free(o->endpoints[i]);
  free(o->endpoints);
  free(o->service);
  for (int i = 0; i < 3; i++)
    free(o->keys[i]);
  if (o->ch)
    channel_unref(o->ch);
  free(o);
}

enum {
  C_NEW = 1,
  C_REQUEST,
  C_CANCEL,
  C_CLOSE,
  C_REPLY,
};

struct cmd_s {
  cmd_t *next;
  int type;
  nobj_t *obj; /* a reference, dropped after the command ran */
  channel_t *ch; /* C_REQUEST: a reference, passed on to the request */
  uint64_t tag;
  char *service;
  mdp_msg_t *body;
  uint64_t timeout_ms;
  uint64_t deadline_ms;
  long retries;
  int final;
  int wait;
  mdp_request_t req;
  sync_t *sync;
};

/* Any thread with the GIL.  Hands the list `head`..`tail` (linked by
 * `next`, `n` commands) to the loop thread, with one wake-up for the whole
 * list. */
static unsigned long long g_posts, g_posted; /* GIL-guarded; post_counts() */

static void post_list(state_t *st, cmd_t *head, cmd_t *tail, size_t n) {
  tail->next = NULL;
  g_posts++;
  g_posted += n;
  pthread_mutex_lock(&st->mu);
  if (st->tail)
    st->tail->next = head;
  else
    st->head = head;
  st->tail = tail;
  pthread_mutex_unlock(&st->mu);
  uv_async_send(&st->async);
}

static void post(state_t *st, cmd_t *c) { post_list(st, c, c, 1); }

/* ---- loop thread ---- */

static void client_reply_cb(mdp_client_t *client, uint64_t request_id,
                            int status, int final, mdp_msg_t *body,
                            void *data) {
  (void)client;
  (void)request_id;
  creq_t *r = data;
  channel_push(r->ch, r->tag, EV_REPLY, status, final, body, 0, 0);
  if (final) {
    nobj_t *o = r->obj;
    if (r->prev)
      r->prev->next = r->next;
    else
      o->reqs = r->next;
    if (r->next)
      r->next->prev = r->prev;
    channel_unref(r->ch);
    free(r);
  }
}

static void group_request_cb(mdp_worker_group_t *group, mdp_request_t req,
                             mdp_msg_t *body) {
  nobj_t *o = mdp_worker_group_get_data(group);
  channel_push(o->ch, 0, EV_REQUEST, 0, 0, body, (uint64_t)(uintptr_t)req.worker,
               req.id);
}

static void closed_common(nobj_t *o) {
  channel_push(o->ch, 0, EV_CLOSED, 0, 1, NULL, 0, 0);
  if (o->close_sync) {
    sync_t *s = o->close_sync;
    o->close_sync = NULL;
    sync_signal(s, 0);
  }
  o->client = NULL;
  o->group = NULL;
  nobj_unref(o); /* the loop's reference */
}

static void client_close_cb(mdp_client_t *client) {
  closed_common(mdp_client_get_data(client));
}

static void group_close_cb(mdp_worker_group_t *group) {
  closed_common(mdp_worker_group_get_data(group));
}

static void run_cmd(state_t *st, cmd_t *c) {
  nobj_t *o = c->obj;
  switch (c->type) {
  case C_NEW: {
    int rc;
    if (o->kind == K_CLIENT) {
      o->copts.zmq_context = st->zctx;
      rc = mdp_client_new(&st->loop, (const char *const *)o->endpoints, o->n,
                          &o->copts, &o->client);
      if (rc == 0)
        mdp_client_set_data(o->client, o);
    } else {
      o->wopts.worker.zmq_context = st->zctx;
      rc = mdp_worker_group_new(&st->loop, (const char *const *)o->endpoints,
                                o->n, o->service, group_request_cb, &o->wopts,
                                &o->group);
      if (rc == 0)
        mdp_worker_group_set_data(o->group, o);
    }
    if (rc == 0)
      __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED); /* the loop's */
    else
      o->closing = 1;
    sync_signal(c->sync, rc);
    break;
  }
  case C_REQUEST: {
    int rc = MDP_ECLOSING;
    creq_t *r = NULL;
    if (!o->closing && o->client) {
      r = calloc(1, sizeof *r);
      rc = MDP_ENOMEM;
      if (r) {
        mdp_request_options_t ro;
        mdp_client_request_options_init(o->client, &ro);
        if (c->timeout_ms)
          ro.timeout_ms = c->timeout_ms;
        if (c->deadline_ms)
          ro.deadline_ms = c->deadline_ms;
        if (c->retries >= 0)
          ro.retries = (unsigned)c->retries;
        r->tag = c->tag;
        r->ch = c->ch;
        r->obj = o;
        /* Linked before the call: the reply callback is never called from
         * inside mdp_client_request(), but cancel may look it up later. */
        r->next = o->reqs;
        if (o->reqs)
          o->reqs->prev = r;
        o->reqs = r;
        rc = mdp_client_request(o->client, c->service, c->body, &ro,
                                client_reply_cb, r, &r->id);
        if (rc == 0) {
          c->body = NULL;
          c->ch = NULL; /* now the request's */
        } else {
          o->reqs = r->next;
          if (r->next)
            r->next->prev = NULL;
          free(r);
        }
      }
    }
    if (rc != 0)
      channel_push(c->ch, c->tag, EV_REPLY, rc, 1, NULL, 0, 0);
    break;
  }
  case C_CANCEL:
    if (o->client && !o->closing) {
      for (creq_t *r = o->reqs; r; r = r->next)
        if (r->tag == c->tag) {
          mdp_client_cancel(o->client, r->id);
          break;
        }
    }
    break;
  case C_REPLY:
    /* A handle stays valid while its request is unanswered and the group
     * exists; the Python side passes only unanswered ones. */
    if (o->group && !o->closing) {
      int rc = c->final ? mdp_worker_final(c->req, c->body)
                        : mdp_worker_partial(c->req, c->body);
      if (rc == 0)
        c->body = NULL;
    }
    break;
  case C_CLOSE:
    if (o->closing) {
      if (c->sync)
        sync_signal(c->sync, 0);
      break;
    }
    o->closing = 1;
    o->close_sync = c->sync;
    if (o->client)
      mdp_client_close(o->client, client_close_cb);
    else if (o->group)
      mdp_worker_group_close(o->group, c->wait, group_close_cb);
    else if (c->sync) {
      o->close_sync = NULL;
      sync_signal(c->sync, 0);
    }
    break;
  }
  if (c->body)
    mdp_msg_destroy(c->body);
  if (c->ch)
    channel_unref(c->ch);
  free(c->service);
  nobj_unref(o);
  free(c);
}

static void on_async(uv_async_t *h) {
  state_t *st = h->data;
  pthread_mutex_lock(&st->mu);
  cmd_t *c = st->head;
  st->head = st->tail = NULL;
  pthread_mutex_unlock(&st->mu);
  while (c) {
    cmd_t *n = c->next;
    run_cmd(st, c);
    c = n;
  }
}

/* ------------------------------------------------------ Python: Channel */

typedef struct {
  PyObject_HEAD channel_t *ch;
} ChannelObject;

static PyTypeObject ChannelType;

static PyObject *Channel_new(PyTypeObject *type, PyObject *args,
                             PyObject *kw) {
  (void)args;
  (void)kw;
  ChannelObject *self = (ChannelObject *)type->tp_alloc(type, 0);
  if (!self)
    return NULL;
  self->ch = channel_new();
  if (!self->ch) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  return (PyObject *)self;
}

static void Channel_dealloc(ChannelObject *self) {
  if (self->ch && self->ch->pid == getpid())
    channel_unref(self->ch);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_pid(pid_t pid) {
  if (pid != getpid()) {
    raise_code(MDP_ESTATE, "this object was made in another process (before "
                           "a fork); make a new one in this process");
    return -1;
  }
  return 0;
}

static PyObject *frames_to_list(mdp_msg_t *m) {
  size_t n = m ? mdp_msg_size(m) : 0;
  PyObject *l = PyList_New((Py_ssize_t)n);
  if (!l)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    PyObject *b = PyBytes_FromStringAndSize(mdp_msg_data(m, i),
                                            (Py_ssize_t)mdp_msg_frame_size(m, i));
    if (!b) {
      Py_DECREF(l);
      return NULL;
    }
    PyList_SET_ITEM(l, (Py_ssize_t)i, b);
  }
  return l;
}

/* (tag, kind, status, final, frames or None, h1, h2); frees the event. */
static PyObject *ev_to_tuple(ev_t *ev) {
  PyObject *frames;
  if (ev->body) {
    frames = frames_to_list(ev->body);
    if (!frames) {
      ev_free(ev);
      return NULL;
    }
  } else {
    frames = Py_None;
    Py_INCREF(frames);
  }
  PyObject *t = Py_BuildValue("(KiiiNKK)", (unsigned long long)ev->tag,
                              ev->kind, ev->status, ev->final, frames,
                              (unsigned long long)ev->h1,
                              (unsigned long long)ev->h2);
  ev_free(ev);
  return t;
}

/* get(timeout=None): the next event, or None when `timeout` seconds passed.
 * Waits with the GIL released, in slices so that signal handlers (Ctrl-C,
 * a SIGTERM handler that closes a worker) run in the main thread. */
static PyObject *Channel_get(ChannelObject *self, PyObject *args) {
  PyObject *tobj = Py_None;
  if (!PyArg_ParseTuple(args, "|O", &tobj))
    return NULL;
  channel_t *ch = self->ch;
  if (check_pid(ch->pid) < 0)
    return NULL;
  double timeout = -1;
  if (tobj != Py_None) {
    timeout = PyFloat_AsDouble(tobj);
    if (timeout == -1 && PyErr_Occurred())
      return NULL;
    if (timeout < 0 || timeout != timeout) {
      PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0");
      return NULL;
    }
  }
  struct timespec deadline;
  if (timeout >= 0)
    deadline_after(&deadline, timeout);
  for (;;) {
    ev_t *ev;
    pthread_mutex_lock(&ch->mu);
    ev = channel_pop_locked(ch);
    pthread_mutex_unlock(&ch->mu);
    if (ev)
      return ev_to_tuple(ev);
    struct timespec now, until;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (timeout >= 0 && !ts_before(&now, &deadline))
      Py_RETURN_NONE;
    deadline_after(&until, 0.1);
    if (timeout >= 0 && ts_before(&deadline, &until))
      until = deadline;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&ch->mu);
    ch->waiters++;
    while (!ch->head) {
      if (pthread_cond_timedwait(&ch->cv, &ch->mu, &until) == ETIMEDOUT)
        break;
    }
    ch->waiters--;
    ev = channel_pop_locked(ch);
    pthread_mutex_unlock(&ch->mu);
    Py_END_ALLOW_THREADS
    if (ev)
      return ev_to_tuple(ev);
    if (PyErr_CheckSignals() < 0)
      return NULL;
  }
}

/* drain(): every event waiting, as a list (never blocks). */
static PyObject *Channel_drain(ChannelObject *self, PyObject *unused) {
  (void)unused;
  channel_t *ch = self->ch;
  if (check_pid(ch->pid) < 0)
    return NULL;
  if (ch->efd >= 0) {
    uint64_t v;
    ssize_t r = read(ch->efd, &v, sizeof v);
    (void)r;
  }
  pthread_mutex_lock(&ch->mu);
  ev_t *ev = ch->head;
  ch->head = ch->tail = NULL;
  pthread_mutex_unlock(&ch->mu);
  PyObject *l = PyList_New(0);
  if (!l)
    goto fail;
  while (ev) {
    ev_t *n = ev->next;
    PyObject *t = ev_to_tuple(ev);
    ev = n;
    if (!t || PyList_Append(l, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(l);
      l = NULL;
      goto fail;
    }
    Py_DECREF(t);
  }
  return l;
fail:
  while (ev) {
    ev_t *n = ev->next;
    ev_free(ev);
    ev = n;
  }
  return NULL;
}

/* fileno(): an eventfd that becomes readable when events arrive (for
 * asyncio's add_reader); made on first use. */
static PyObject *Channel_fileno(ChannelObject *self, PyObject *unused) {
  (void)unused;
  channel_t *ch = self->ch;
  if (check_pid(ch->pid) < 0)
    return NULL;
  pthread_mutex_lock(&ch->mu);
  if (ch->efd < 0) {
    ch->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ch->efd >= 0 && ch->head) {
      uint64_t one = 1;
      ssize_t r = write(ch->efd, &one, sizeof one);
      (void)r;
    }
  }
  int fd = ch->efd;
  pthread_mutex_unlock(&ch->mu);
  if (fd < 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  return PyLong_FromLong(fd);
}

static PyMethodDef Channel_methods[] = {
    {"get", (PyCFunction)Channel_get, METH_VARARGS, "get(timeout=None)"},
    {"drain", (PyCFunction)Channel_drain, METH_NOARGS, "drain()"},
    {"fileno", (PyCFunction)Channel_fileno, METH_NOARGS, "fileno()"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libmdp._native.Channel",
    .tp_basicsize = sizeof(ChannelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Channel_new,
    .tp_dealloc = (destructor)Channel_dealloc,
    .tp_methods = Channel_methods,
    .tp_doc = "A queue of events from libmdp's loop thread.",
};

/* ------------------------------------------------------- Python: Handle */

typedef struct {
  PyObject_HEAD nobj_t *o;
  int closed; /* close() was called */
  /* hold(True) keeps this handle's commands here, in order, until
   * hold(False) posts them at once: an asyncio loop turn that sends many
   * requests or replies wakes the loop thread once, not once each. */
  int held;
  cmd_t *held_head, *held_tail;
  size_t held_n;
} HandleObject;

static PyTypeObject HandleType;

/* Posts the held commands (if any); the caller holds the GIL. */
static void handle_flush(HandleObject *self) {
  if (self->held_head) {
    post_list(self->o->st, self->held_head, self->held_tail, self->held_n);
    self->held_head = self->held_tail = NULL;
    self->held_n = 0;
  }
}

static void handle_post(HandleObject *self, cmd_t *c) {
  if (!self->held) {
    post(self->o->st, c);
    return;
  }
  c->next = NULL;
  if (self->held_tail)
    self->held_tail->next = c;
  else
    self->held_head = c;
  self->held_tail = c;
  self->held_n++;
}

static void Handle_dealloc(HandleObject *self) {
  nobj_t *o = self->o;
  if (o && o->st->pid == getpid()) {
    handle_flush(self);
    if (!self->closed) {
      /* Dropped without close(): close it in the background. */
      cmd_t *c = calloc(1, sizeof *c);
      if (c) {
        c->type = C_CLOSE;
        c->obj = o; /* the Python reference passes to the command */
        post(o->st, c);
        o = NULL;
      }
    }
    if (o)
      nobj_unref(o);
  }
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int handle_ok(HandleObject *self) {
  if (check_pid(self->o->st->pid) < 0)
    return -1;
  if (self->closed) {
    raise_code(MDP_ECLOSING, "closed");
    return -1;
  }
  return 0;
}

static cmd_t *cmd_for(HandleObject *self, int type) {
  cmd_t *c = calloc(1, sizeof *c);
  if (!c) {
    PyErr_NoMemory();
    return NULL;
  }
  c->type = type;
  c->obj = self->o;
  __atomic_add_fetch(&self->o->refs, 1, __ATOMIC_RELAXED);
  return c;
}

/* Frames from a sequence of bytes-like objects; NULL with an exception. */
static mdp_msg_t *msg_from_seq(PyObject *seq, int allow_empty) {
  PyObject *fast = PySequence_Fast(seq, "frames must be a sequence of bytes");
  if (!fast)
    return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  if (n == 0 && !allow_empty) {
    Py_DECREF(fast);
    PyErr_SetString(PyExc_ValueError, "a request needs at least one frame");
    return NULL;
  }
  mdp_msg_t *m = mdp_msg_new();
  if (!m) {
    Py_DECREF(fast);
    PyErr_NoMemory();
    return NULL;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
    Py_buffer view;
    if (PyUnicode_Check(item) ||
        PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0) {
      if (!PyErr_Occurred() || PyUnicode_Check(item)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "frame %zd must be bytes-like, not %.100s", i,
                     Py_TYPE(item)->tp_name);
      }
      mdp_msg_destroy(m);
      Py_DECREF(fast);
      return NULL;
    }
    int rc = mdp_msg_append_mem(m, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (rc < 0) {
      mdp_msg_destroy(m);
      Py_DECREF(fast);
      PyErr_NoMemory();
      return NULL;
    }
  }
  Py_DECREF(fast);
  return m;
}

/* request(channel, tag, service: bytes, frames, timeout_ms=0 (the client's),
 *         retries=-1 (the client's), deadline_ms=0 (the client's)) */
static PyObject *Handle_request(HandleObject *self, PyObject *args) {
  ChannelObject *cho;
  unsigned long long tag, timeout_ms = 0, deadline_ms = 0;
  const char *service;
  Py_ssize_t slen;
  PyObject *frames;
  long retries = -1;
  if (!PyArg_ParseTuple(args, "O!Ky#O|KlK", &ChannelType, &cho, &tag,
                        &service, &slen, &frames, &timeout_ms, &retries,
                        &deadline_ms))
    return NULL;
  if (handle_ok(self) < 0 || check_pid(cho->ch->pid) < 0)
    return NULL;
  if (self->o->kind != K_CLIENT) {
    PyErr_SetString(PyExc_TypeError, "not a client");
    return NULL;
  }
  if (slen < 1 || slen > 255 || memchr(service, 0, (size_t)slen)) {
    return raise_code(MDP_ESERVICE, "service name must be 1..255 bytes, no NUL");
  }
  mdp_msg_t *body = msg_from_seq(frames, 0);
  if (!body)
    return NULL;
  cmd_t *c = cmd_for(self, C_REQUEST);
  char *svc = c ? strndup(service, (size_t)slen) : NULL;
  if (!c || !svc) {
    mdp_msg_destroy(body);
    if (c) {
      nobj_unref(c->obj);
      free(c);
    }
    return PyErr_NoMemory();
  }
  c->tag = tag;
  c->service = svc;
  c->body = body;
  c->timeout_ms = timeout_ms;
  c->deadline_ms = deadline_ms;
  c->retries = retries;
  c->ch = cho->ch;
  channel_ref(cho->ch);
  handle_post(self, c);
  Py_RETURN_NONE;
}

static PyObject *Handle_cancel(HandleObject *self, PyObject *args) {
  unsigned long long tag;
  if (!PyArg_ParseTuple(args, "K", &tag))
    return NULL;
  if (check_pid(self->o->st->pid) < 0)
    return NULL;
  if (self->closed)
    Py_RETURN_NONE;
  cmd_t *c = cmd_for(self, C_CANCEL);
  if (!c)
    return NULL;
  c->tag = tag;
  handle_post(self, c);
  Py_RETURN_NONE;
}

/* reply(h1, h2, final, frames): a PARTIAL or the FINAL for a request handle
 * that the Python side knows to be unanswered. */
static PyObject *Handle_reply(HandleObject *self, PyObject *args) {
  unsigned long long h1, h2;
  int final;
  PyObject *frames;
  if (!PyArg_ParseTuple(args, "KKpO", &h1, &h2, &final, &frames))
    return NULL;
  if (handle_ok(self) < 0)
    return NULL;
  if (self->o->kind != K_WORKER) {
    PyErr_SetString(PyExc_TypeError, "not a worker");
    return NULL;
  }
  mdp_msg_t *body = msg_from_seq(frames, 1);
  if (!body)
    return NULL;
  if (mdp_msg_size(body) == 0 && mdp_msg_append_mem(body, NULL, 0) < 0) {
    mdp_msg_destroy(body);
    return PyErr_NoMemory();
  }
  cmd_t *c = cmd_for(self, C_REPLY);
  if (!c) {
    mdp_msg_destroy(body);
    return NULL;
  }
  c->req.worker = (mdp_worker_t *)(uintptr_t)h1;
  c->req.id = h2;
  c->final = final;
  c->body = body;
  handle_post(self, c);
  Py_RETURN_NONE;
}

/* close(wait_for_request=False): closes and waits until libmdp has closed
 * the object (its sockets are gone).  A second call does nothing. */
static PyObject *Handle_close(HandleObject *self, PyObject *args) {
  int wait = 0;
  if (!PyArg_ParseTuple(args, "|p", &wait))
    return NULL;
  if (check_pid(self->o->st->pid) < 0)
    return NULL;
  if (self->closed)
    Py_RETURN_NONE;
  self->closed = 1;
  self->held = 0;
  handle_flush(self); /* what was sent before close() goes first */
  cmd_t *c = cmd_for(self, C_CLOSE);
  if (!c)
    return NULL;
  sync_t s;
  sync_init(&s);
  c->sync = &s;
  c->wait = wait;
  post(self->o->st, c);
  Py_BEGIN_ALLOW_THREADS
  sync_wait(&s);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

/* hold(flag): True keeps this handle's request/cancel/reply commands until
 * hold(False), which posts them together (in order).  close() posts them
 * first.  For one asyncio loop turn; never left on. */
static PyObject *Handle_hold(HandleObject *self, PyObject *arg) {
  int flag = PyObject_IsTrue(arg);
  if (flag < 0)
    return NULL;
  if (check_pid(self->o->st->pid) < 0)
    return NULL;
  self->held = flag && !self->closed;
  if (!self->held)
    handle_flush(self);
  Py_RETURN_NONE;
}

static PyObject *Handle_closed(HandleObject *self, void *unused) {
  (void)unused;
  return PyBool_FromLong(self->closed);
}

static PyMethodDef Handle_methods[] = {
    {"request", (PyCFunction)Handle_request, METH_VARARGS, NULL},
    {"cancel", (PyCFunction)Handle_cancel, METH_VARARGS, NULL},
    {"reply", (PyCFunction)Handle_reply, METH_VARARGS, NULL},
    {"close", (PyCFunction)Handle_close, METH_VARARGS, NULL},
    {"hold", (PyCFunction)Handle_hold, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Handle_getset[] = {
    {"closed", (getter)Handle_closed, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libmdp._native.Handle",
    .tp_basicsize = sizeof(HandleObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Handle_dealloc,
    .tp_methods = Handle_methods,
    .tp_getset = Handle_getset,
    .tp_doc = "A libmdp client or worker group on the loop thread.",
};

/* Common part of client_new/worker_new: endpoints and keys copied into a
 * new nobj.  NULL with an exception. */
static nobj_t *nobj_make(int kind, ChannelObject *cho, PyObject *endpoints,
                         const char *sk, const char *pk, const char *sec) {
  state_t *st = get_state();
  if (!st)
    return NULL;
  if (check_pid(cho->ch->pid) < 0)
    return NULL;
  PyObject *fast = PySequence_Fast(endpoints, "endpoints must be a sequence");
  if (!fast)
    return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  if (n < 1) {
    Py_DECREF(fast);
    PyErr_SetString(PyExc_ValueError, "at least one broker endpoint is needed");
    return NULL;
  }
  nobj_t *o = calloc(1, sizeof *o);
  if (!o || !(o->endpoints = calloc((size_t)n, sizeof(char *)))) {
    free(o);
    Py_DECREF(fast);
    PyErr_NoMemory();
    return NULL;
  }
  o->refs = 1;
  o->st = st;
  o->kind = kind;
  o->ch = cho->ch;
  channel_ref(o->ch);
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *e = PySequence_Fast_GET_ITEM(fast, i);
    const char *s = PyUnicode_Check(e) ? PyUnicode_AsUTF8(e) : NULL;
    if (!s) {
      if (!PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "an endpoint must be a str");
      Py_DECREF(fast);
      nobj_unref(o);
      return NULL;
    }
    o->endpoints[i] = strdup(s);
    o->n = (size_t)i + 1;
    if (!o->endpoints[i]) {
      Py_DECREF(fast);
      nobj_unref(o);
      PyErr_NoMemory();
      return NULL;
    }
  }
  Py_DECREF(fast);
  const char *k[3] = {sk, pk, sec};
  for (int i = 0; i < 3; i++)
    if (k[i] && !(o->keys[i] = strdup(k[i]))) {
      nobj_unref(o);
      PyErr_NoMemory();
      return NULL;
    }
  return o;
}

/* Runs C_NEW on the loop thread and waits for it. */
static PyObject *nobj_start(nobj_t *o, const char *what) {
  cmd_t *c = calloc(1, sizeof *c);
  if (!c) {
    nobj_unref(o);
    return PyErr_NoMemory();
  }
  c->type = C_NEW;
  c->obj = o;
  __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
  sync_t s;
  sync_init(&s);
  c->sync = &s;
  int rc;
  post(o->st, c);
  Py_BEGIN_ALLOW_THREADS
  rc = sync_wait(&s);
  Py_END_ALLOW_THREADS
  if (rc < 0) {
    nobj_unref(o);
    return raise_code(rc, what);
  }
  HandleObject *h = PyObject_New(HandleObject, &HandleType);
  if (!h) {
    /* Close it: the loop holds its own reference until closed. */
    cmd_t *cc = calloc(1, sizeof *cc);
    if (cc) {
      cc->type = C_CLOSE;
      cc->obj = o;
      post(o->st, cc);
    } else
      nobj_unref(o);
    return NULL;
  }
  h->o = o;
  h->closed = 0;
  h->held = 0;
  h->held_head = h->held_tail = NULL;
  h->held_n = 0;
  return (PyObject *)h;
}

/* client_new(channel, endpoints, dialect, timeout_ms, retries, spread,
 *            max_sockets, server_key, public_key, secret_key) */
static PyObject *py_client_new(PyObject *mod, PyObject *args) {
  (void)mod;
  ChannelObject *cho;
  PyObject *endpoints;
  int dialect, spread;
  unsigned long long timeout_ms;
  unsigned int retries;
  Py_ssize_t max_sockets;
  const char *sk = NULL, *pk = NULL, *sec = NULL;
  if (!PyArg_ParseTuple(args, "O!OiKIin|zzz", &ChannelType, &cho, &endpoints,
                        &dialect, &timeout_ms, &retries, &spread, &max_sockets,
                        &sk, &pk, &sec))
    return NULL;
  if (max_sockets < 1) {
    PyErr_SetString(PyExc_ValueError, "max_sockets must be >= 1");
    return NULL;
  }
  nobj_t *o = nobj_make(K_CLIENT, cho, endpoints, sk, pk, sec);
  if (!o)
    return NULL;
  mdp_client_options_init(&o->copts);
  o->copts.dialect = (mdp_dialect_t)dialect;
  o->copts.timeout_ms = timeout_ms;
  o->copts.retries = retries;
  o->copts.spread = (mdp_spread_t)spread;
  o->copts.max_sockets = (size_t)max_sockets;
  o->copts.curve_server_key = o->keys[0];
  o->copts.curve_public_key = o->keys[1];
  o->copts.curve_secret_key = o->keys[2];
  return nobj_start(o, "client");
}

/* worker_new(channel, endpoints, service: bytes, dialect, interval_ms,
 *            liveness, concurrency, server_key, public_key, secret_key) */
static PyObject *py_worker_new(PyObject *mod, PyObject *args) {
  (void)mod;
  ChannelObject *cho;
  PyObject *endpoints;
  const char *service;
  Py_ssize_t slen;
  int dialect;
  unsigned long long interval_ms;
  unsigned int liveness;
  Py_ssize_t concurrency;
  const char *sk = NULL, *pk = NULL, *sec = NULL;
  if (!PyArg_ParseTuple(args, "O!Oy#iKIn|zzz", &ChannelType, &cho, &endpoints,
                        &service, &slen, &dialect, &interval_ms, &liveness,
                        &concurrency, &sk, &pk, &sec))
    return NULL;
  if (slen < 1 || slen > 255 || memchr(service, 0, (size_t)slen))
    return raise_code(MDP_ESERVICE, "service name must be 1..255 bytes, no NUL");
  if (concurrency < 0) {
    PyErr_SetString(PyExc_ValueError, "concurrency must be >= 0");
    return NULL;
  }
  nobj_t *o = nobj_make(K_WORKER, cho, endpoints, sk, pk, sec);
  if (!o)
    return NULL;
  o->service = strndup(service, (size_t)slen);
  if (!o->service) {
    nobj_unref(o);
    return PyErr_NoMemory();
  }
  mdp_worker_group_options_init(&o->wopts);
  o->wopts.worker.dialect = (mdp_dialect_t)dialect;
  o->wopts.worker.heartbeat_interval_ms = interval_ms;
  o->wopts.worker.heartbeat_liveness = liveness;
  o->wopts.worker.curve_server_key = o->keys[0];
  o->wopts.worker.curve_public_key = o->keys[1];
  o->wopts.worker.curve_secret_key = o->keys[2];
  o->wopts.concurrency = (size_t)concurrency;
  return nobj_start(o, "worker");
}

static PyObject *py_set_error_factory(PyObject *mod, PyObject *f) {
  (void)mod;
  Py_XDECREF(g_err_factory);
  Py_INCREF(f);
  g_err_factory = f;
  Py_RETURN_NONE;
}

/* post_counts() -> (hand-overs to the loop thread, commands handed over):
 * for tests that the asyncio API batches a loop turn's commands. */
static PyObject *py_post_counts(PyObject *mod, PyObject *unused) {
  (void)mod;
  (void)unused;
  return Py_BuildValue("(KK)", g_posts, g_posted);
}

static PyObject *py_strerror(PyObject *mod, PyObject *args) {
  (void)mod;
  int code;
  if (!PyArg_ParseTuple(args, "i", &code))
    return NULL;
  return PyUnicode_FromString(mdp_strerror(code));
}

/* curve_keypair() -> (public, secret), Z85 text, for tests and tools. */
static PyObject *py_curve_keypair(PyObject *mod, PyObject *unused) {
  (void)mod;
  (void)unused;
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0)
    return raise_code(MDP_ENOTSUP, "zmq_curve_keypair");
  return Py_BuildValue("(ss)", pub, sec);
}

static PyMethodDef module_methods[] = {
    {"client_new", py_client_new, METH_VARARGS, NULL},
    {"worker_new", py_worker_new, METH_VARARGS, NULL},
    {"set_error_factory", py_set_error_factory, METH_O, NULL},
    {"post_counts", py_post_counts, METH_NOARGS, NULL},
    {"strerror", py_strerror, METH_VARARGS, NULL},
    {"curve_keypair", py_curve_keypair, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "libmdp._native",
    "The C shim between Python and libmdp's loop thread.", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
  if (PyType_Ready(&ChannelType) < 0 || PyType_Ready(&HandleType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&moduledef);
  if (!m)
    return NULL;
  Py_INCREF(&ChannelType);
  PyModule_AddObject(m, "Channel", (PyObject *)&ChannelType);
  Py_INCREF(&HandleType);
  PyModule_AddObject(m, "Handle", (PyObject *)&HandleType);
#define K(name, v) PyModule_AddIntConstant(m, name, v)
  K("EV_REPLY", EV_REPLY);
  K("EV_REQUEST", EV_REQUEST);
  K("EV_CLOSED", EV_CLOSED);
  K("DIALECT_RFC18", MDP_DIALECT_RFC18);
  K("DIALECT_MAJORTOMO", MDP_DIALECT_MAJORTOMO);
  K("DIALECT_MDP01", MDP_DIALECT_MDP01);
  K("SPREAD_ROUND_ROBIN", MDP_SPREAD_ROUND_ROBIN);
  K("SPREAD_FEWEST", MDP_SPREAD_FEWEST);
  K("SPREAD_FAILOVER", MDP_SPREAD_FAILOVER);
  K("ETIMEDOUT", MDP_ETIMEDOUT);
  K("ECANCELED", MDP_ECANCELED);
  K("ECLOSING", MDP_ECLOSING);
  K("ESTATE", MDP_ESTATE);
  K("EINVAL", MDP_EINVAL);
  K("ESERVICE", MDP_ESERVICE);
#undef K
  return m;
}
