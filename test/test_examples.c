/* Runs every example program and tools/mdp-request as child processes
 * (uv_spawn) against a broker, and in-process echo workers, that live on this
 * test's loop, so the loop serves them while the children run. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "harness.h"
#include "mdp.h"
#include <zmq.h>

#include "fake_broker.h"

typedef struct {
  uv_process_t proc;
  int exited;
  int64_t status;
  int signal;
  char out[4096]; /* what it printed on stdout */
  char path[64];
} child_t;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  child_t *c = p->data;
  c->exited = 1;
  c->status = status;
  c->signal = sig;
  uv_close((uv_handle_t *)p, NULL);
}

static int child_exited(void *arg) { return ((child_t *)arg)->exited; }

/* Starts build/<dir>/<name> with the NULL-terminated arguments. */
static int spawn(uv_loop_t *loop, child_t *c, const char *dir,
                 const char *name, const char **args) {
  memset(c, 0, sizeof *c);
  char file[512];
  const char *build = getenv("MDP_BUILD_DIR");
  snprintf(file, sizeof file, "%s/%s/%s", build ? build : ".", dir, name);
  char *argv[16];
  int n = 0;
  argv[n++] = file;
  while (args && *args && n < 15)
    argv[n++] = (char *)*args++;
  argv[n] = NULL;
  snprintf(c->path, sizeof c->path, "/tmp/mdp-test-ex-%d-XXXXXX", (int)getpid());
  int fd = mkstemp(c->path);
  if (fd < 0)
    return -1;
  uv_stdio_container_t stdio[3] = {{UV_IGNORE, {0}},
                                   {UV_INHERIT_FD, {.fd = fd}},
                                   {UV_INHERIT_FD, {.fd = 2}}};
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = file;
  o.args = argv;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  c->proc.data = c;
  int rc = uv_spawn(loop, &c->proc, &o);
  close(fd);
  if (rc < 0) {
    unlink(c->path);
    printf("# spawn %s: %s\n", file, uv_strerror(rc));
  }
  return rc;
}

/* Waits for the child and reads what it printed. */
static int child_wait(uv_loop_t *loop, child_t *c, uint64_t ms) {
  if (!t_run_until(loop, child_exited, c, ms)) {
    uv_process_kill(&c->proc, SIGKILL);
    t_run_until(loop, child_exited, c, 2000);
    unlink(c->path);
    return -1;
  }
  FILE *f = fopen(c->path, "r");
  if (f) {
    size_t n = fread(c->out, 1, sizeof c->out - 1, f);
    c->out[n] = '\0';
    fclose(f);
  }
  unlink(c->path);
  return (int)c->status;
}

/* --- the broker and in-process workers ------------------------------------- */

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *broker;
  mdp_worker_t *workers[8];
  int nworkers;
  char ep[256];
  int closed;
} env_t;

static void on_echo(mdp_worker_t *w, mdp_request_t req,
                    mdp_msg_t *body) {
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static int env_start(env_t *e, int workers) {
  memset(e, 0, sizeof *e);
  uv_loop_init(&e->loop);
  if (mdp_broker_new(&e->loop, NULL, &e->broker) < 0 ||
      mdp_broker_bind(e->broker, "tcp://127.0.0.1:*") < 0 ||
      mdp_broker_last_endpoint(e->broker, e->ep, sizeof e->ep) < 0)
    return -1;
  for (int i = 0; i < workers; i++)
    if (mdp_worker_new(&e->loop, e->ep, "echo", NULL, on_echo,
                       &e->workers[e->nworkers++]) < 0)
      return -1;
  return 0;
}

typedef struct {
  env_t *e;
  const char *service;
  size_t n;
} reg_t;

static int has_workers(void *arg) {
  reg_t *r = arg;
  mdp_broker_service_stats_t st;
  return mdp_broker_get_service_stats(r->e->broker, r->service, &st) == 0 &&
         st.workers_idle + st.workers_busy >= r->n;
}

static int env_wait_workers(env_t *e, const char *service, size_t n) {
  reg_t r = {e, service, n};
  return t_run_until(&e->loop, has_workers, &r, 5000);
}

static void env_closed(mdp_broker_t *b) {
  env_t *e = mdp_broker_get_data(b);
  e->closed++;
}
static void env_worker_closed(mdp_worker_t *w) {
  env_t *e = mdp_worker_get_data(w);
  e->closed++;
}
static int env_all_closed(void *arg) {
  env_t *e = arg;
  return e->closed == e->nworkers + 1;
}

static int env_stop(env_t *e) {
  for (int i = 0; i < e->nworkers; i++) {
    mdp_worker_set_data(e->workers[i], e);
    mdp_worker_close(e->workers[i], 0, env_worker_closed);
  }
  mdp_broker_set_data(e->broker, e);
  mdp_broker_close(e->broker, env_closed);
  if (!t_run_until(&e->loop, env_all_closed, e, 3000))
    return -1;
  return t_loop_close(&e->loop);
}

/* --- tests ----------------------------------------------------------------- */

static void echo_worker_and_client(void) {
  env_t e;
  CHECK_EQ(env_start(&e, 0), 0);
  child_t w, c;
  const char *wargs[] = {e.ep, "echo", NULL};
  CHECK_EQ(spawn(&e.loop, &w, "examples", "echo_worker", wargs), 0);
  CHECK(env_wait_workers(&e, "echo", 1));
  const char *cargs[] = {e.ep, "echo", "hi", "there", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "examples", "echo_client", cargs), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strcmp(c.out, "hi\nthere\n") == 0);
  uv_process_kill(&w.proc, SIGTERM);
  CHECK_EQ(child_wait(&e.loop, &w, 5000), 0);
  CHECK_EQ(w.signal, 0); /* it exited by itself, cleanly */
  CHECK_EQ(env_stop(&e), 0);
}

static void stream_worker_and_client(void) {
  env_t e;
  CHECK_EQ(env_start(&e, 0), 0);
  child_t w, c;
  const char *wargs[] = {e.ep, NULL};
  CHECK_EQ(spawn(&e.loop, &w, "examples", "stream_worker", wargs), 0);
  CHECK(env_wait_workers(&e, "stream", 1));
  const char *cargs[] = {e.ep, "20", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "examples", "stream_client", cargs), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 20000), 0);
  CHECK(strstr(c.out, "part 20: 65536 bytes\n") != NULL);
  CHECK(strstr(c.out, "final: 1310720 bytes in 20 parts") != NULL);
  uv_process_kill(&w.proc, SIGTERM);
  CHECK_EQ(child_wait(&e.loop, &w, 5000), 0);
  CHECK_EQ(env_stop(&e), 0);
}

static void inflight_client(void) {
  env_t e;
  CHECK_EQ(env_start(&e, 8), 0);
  CHECK(env_wait_workers(&e, "echo", 8));
  char n[16];
  snprintf(n, sizeof n, "%d", t_scale(1000));
  child_t c;
  const char *args[] = {e.ep, n, NULL};
  CHECK_EQ(spawn(&e.loop, &c, "examples", "inflight_client", args), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 40000), 0);
  char want[64];
  snprintf(want, sizeof want, "%s replies, %s matched", n, n);
  CHECK(strstr(c.out, want) != NULL);
  CHECK_EQ(env_stop(&e), 0);
}

static void all_in_one(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  child_t c;
  CHECK_EQ(spawn(&loop, &c, "examples", "all_in_one", NULL), 0);
  CHECK_EQ(child_wait(&loop, &c, 40000), 0);
  CHECK(strstr(c.out, "1000 of 1000 replies correct") != NULL);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* The gateway, with this test as its TCP client. */
typedef struct {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wr;
  int connected; /* 1 ok, <0 error */
  char got[256];
  size_t len;
} tcp_client_t;

static void tc_connected(uv_connect_t *req, int status) {
  tcp_client_t *t = req->data;
  t->connected = status == 0 ? 1 : status;
}
static void tc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tcp_client_t *t = h->data;
  *buf = uv_buf_init(t->got + t->len, (unsigned)(sizeof t->got - 1 - t->len));
}
static void tc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  tcp_client_t *t = s->data;
  if (n > 0)
    t->len += (size_t)n;
  t->got[t->len] = '\0';
}
static int tc_done_connecting(void *arg) {
  return ((tcp_client_t *)arg)->connected != 0;
}
static int tc_has_replies(void *arg) {
  return strcmp(((tcp_client_t *)arg)->got, "hello\nworld\n\n") == 0;
}

static int free_port(uv_loop_t *loop) {
  uv_tcp_t t;
  uv_tcp_init(loop, &t);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ntohs(got.sin_port);
}

static void tcp_gateway(void) {
  env_t e;
  CHECK_EQ(env_start(&e, 2), 0);
  CHECK(env_wait_workers(&e, "echo", 2));
  char port[16];
  snprintf(port, sizeof port, "%d", free_port(&e.loop));
  child_t g;
  const char *args[] = {e.ep, "echo", port, NULL};
  CHECK_EQ(spawn(&e.loop, &g, "examples", "tcp_gateway", args), 0);
  tcp_client_t t;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", atoi(port), &a);
  int ok = 0;
  for (int attempt = 0; attempt < 100 && !ok; attempt++) {
    memset(&t, 0, sizeof t);
    uv_tcp_init(&e.loop, &t.tcp);
    t.tcp.data = t.conn.data = &t;
    uv_tcp_connect(&t.conn, &t.tcp, (const struct sockaddr *)&a,
                   tc_connected);
    t_run_until(&e.loop, tc_done_connecting, &t, 2000);
    ok = t.connected == 1;
    if (!ok) { /* not listening yet */
      uv_close((uv_handle_t *)&t.tcp, NULL);
      t_run_until(&e.loop, NULL, NULL, 50);
    }
  }
  CHECK(ok);
  uv_read_start((uv_stream_t *)&t.tcp, tc_alloc, tc_read);
  char lines[] = "hello\nworld\r\n\n"; /* the empty line is a request too */
  uv_buf_t b = uv_buf_init(lines, sizeof lines - 1);
  uv_write(&t.wr, (uv_stream_t *)&t.tcp, &b, 1, NULL);
  CHECK(t_run_until(&e.loop, tc_has_replies, &t, 5000));
  uv_close((uv_handle_t *)&t.tcp, NULL);
  uv_process_kill(&g.proc, SIGTERM);
  CHECK_EQ(child_wait(&e.loop, &g, 5000), 0);
  CHECK_EQ(env_stop(&e), 0);
}

static void mdp_request_tool(void) {
  env_t e;
  CHECK_EQ(env_start(&e, 1), 0);
  CHECK(env_wait_workers(&e, "echo", 1));
  child_t c;
  const char *a1[] = {"-b", e.ep, "echo", "a", "", "b", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a1), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strcmp(c.out, "a\n\nb\n") == 0);
  const char *a2[] = {"-b", e.ep, "--json", "echo", "x\"y", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a2), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strcmp(c.out, "{\"part\":0,\"final\":true,\"frames\":[\"x\\\"y\"]}\n") ==
        0);
  const char *a3[] = {"-b", e.ep, "--hex", "echo", "AB", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a3), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strcmp(c.out, "4142\n") == 0);
  const char *a4[] = {"-b", e.ep, "--mmi", "service", "echo", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a4), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strcmp(c.out, "200\n") == 0);
  const char *a5[] = {"-b", e.ep, "--mmi", "service", "nobody", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a5), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 1);
  const char *a6[] = {"-b", e.ep, "-t", "0.1", "-r", "1", "nobody", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a6), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 75);
  const char *a6b[] = {"-b", e.ep, "-t", "0.2", "-r", "0", "--max-msg-size",
                       "3", "echo", "four", NULL}; /* the reply is refused */
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a6b), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 75);
  const char *a6c[] = {"-b", e.ep, "--max-msg-size", "-2", "echo", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a6c), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 2);
  const char *a7[] = {"-b", e.ep, NULL}; /* no service */
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a7), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 2);
  const char *a8[] = {"--version", NULL};
  CHECK_EQ(spawn(&e.loop, &c, "tools", "mdp-request", a8), 0);
  CHECK_EQ(child_wait(&e.loop, &c, 10000), 0);
  CHECK(strstr(c.out, MDP_VERSION_STRING) != NULL);
  CHECK_EQ(env_stop(&e), 0);
}

/* --- mdp-request against a raw ROUTER -------------------------------------- */

typedef struct {
  uv_pipe_t pipe;
  int eof;
} out_pipe_t;

static void op_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char sink[65536];
  (void)h;
  (void)size;
  *buf = uv_buf_init(sink, sizeof sink);
}

static void op_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0)
    ((out_pipe_t *)s->data)->eof = 1;
}

static int op_readable(void *arg) {
  out_pipe_t *o = arg;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&o->pipe, &fd) != 0)
    return 0;
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

typedef struct {
  void *sock;
  mdp_msg_t *req; /* [identity | MDPC02 | 0x01 | service | body...] */
} raw_router_t;

static int raw_has_request(void *arg) {
  raw_router_t *r = arg;
  if (r->req != NULL)
    return 1;
  mdp_msg_t *m = mdp_msg_new();
  int more = 1, got = 0;
  while (more) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, r->sock, got ? 0 : ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      break;
    }
    got = 1;
    more = zmq_msg_more(&frame);
    mdp_msg_append(m, &frame);
    zmq_msg_close(&frame);
  }
  if (!got) {
    mdp_msg_destroy(m);
    return 0;
  }
  r->req = m;
  return 1;
}

/* Sends [identity of the request | frames...] (sizes given). */
static void raw_send(raw_router_t *r, const void *const *frames,
                     const size_t *sizes, size_t n) {
  zmq_send(r->sock, mdp_msg_data(r->req, 0), mdp_msg_frame_size(r->req, 0),
           ZMQ_SNDMORE);
  for (size_t i = 0; i < n; i++)
    zmq_send(r->sock, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* A malformed reply read in the same loop iteration as the timeout it
 * precedes: mdp-request must still report the protocol error (76), which it
 * takes from the reply callback, not from stats read before the iteration.
 * The broker sends a PARTIAL larger than a pipe's buffer and then the
 * malformed reply; the test does not read the tool's stdout, so the tool
 * blocks printing the PARTIAL, inside its loop iteration, until well past
 * its timeout; then it reads the malformed reply (still in the same
 * iteration) and its timer times the request out. */
static void mdp_request_protocol_error_with_timeout(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  raw_router_t rr = {0};
  rr.sock = zmq_socket(mdp_zmq_context(), ZMQ_ROUTER);
  CHECK(rr.sock != NULL);
  int linger = 0;
  zmq_setsockopt(rr.sock, ZMQ_LINGER, &linger, sizeof linger);
  CHECK_EQ(zmq_bind(rr.sock, "tcp://127.0.0.1:*"), 0);
  char ep[256];
  size_t eplen = sizeof ep;
  zmq_getsockopt(rr.sock, ZMQ_LAST_ENDPOINT, ep, &eplen);
  out_pipe_t out = {0};
  uv_pipe_init(&loop, &out.pipe, 0);
  out.pipe.data = &out;
  child_t c;
  memset(&c, 0, sizeof c);
  char file[512];
  const char *build = getenv("MDP_BUILD_DIR");
  snprintf(file, sizeof file, "%s/tools/mdp-request", build ? build : ".");
  char *argv[] = {file, "-b", ep, "-t", "0.2", "-r", "0", "echo", "x", NULL};
  uv_stdio_container_t stdio[3] = {
      {UV_IGNORE, {0}},
      {UV_CREATE_PIPE | UV_WRITABLE_PIPE, {.stream = (uv_stream_t *)&out.pipe}},
      {UV_INHERIT_FD, {.fd = 2}}};
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = file;
  o.args = argv;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  c.proc.data = &c;
  CHECK_EQ(uv_spawn(&loop, &c.proc, &o), 0);
  CHECK(t_run_until(&loop, raw_has_request, &rr, 10000));
  enum { BIG = 4 << 20 }; /* far more than a pipe holds */
  char *big = malloc(BIG);
  CHECK(big != NULL);
  memset(big, 'p', BIG);
  const void *partial[] = {"MDPC02", "\x02", "echo", big};
  const size_t partial_sizes[] = {6, 1, 4, BIG};
  raw_send(&rr, partial, partial_sizes, 4);
  const void *bad[] = {"MDPC02", "\x03"}; /* a FINAL without its service */
  const size_t bad_sizes[] = {6, 1};
  raw_send(&rr, bad, bad_sizes, 2);
  free(big);
  /* The tool has started printing the PARTIAL and is blocked: keep it so
   * for several of its timeouts. */
  CHECK(t_run_until(&loop, op_readable, &out, 10000));
  t_run_until(&loop, NULL, NULL, 1000);
  uv_read_start((uv_stream_t *)&out.pipe, op_alloc, op_read);
  CHECK(t_run_until(&loop, child_exited, &c, 10000));
  CHECK_EQ(c.status, 76);
  t_run_until(&loop, NULL, NULL, 0);
  uv_close((uv_handle_t *)&out.pipe, NULL);
  mdp_msg_destroy(rr.req);
  zmq_close(rr.sock);
  CHECK_EQ(t_loop_close(&loop), 0);
}

/* A slow reader for stream_worker: a raw ROUTER with small buffers that
 * takes at most 4 messages per loop wake-up (about every 20 ms) and checks
 * that the parts come in order. */
typedef struct {
  fake_t f;
  long parts;     /* PARTIALs read, each checked */
  int final;      /* FINAL read, its byte count checked */
  int bad;        /* a message out of order or malformed */
} slow_reader_t;

static int slow_read(void *arg) {
  slow_reader_t *sr = arg;
  for (int i = 0; i < 4 && !sr->final; i++) {
    mdp_msg_t *m = fake_take(&sr->f);
    if (m == NULL)
      break;
    if (frames_are(m, "MDPW02", "\x05")) {
      mdp_msg_destroy(m);
      continue;
    }
    int partial = mdp_msg_size(m) == 6 &&
                  mdp_msg_frame_eq(m, 2, "\x03", 1) &&
                  mdp_msg_frame_size(m, 5) == 65536 &&
                  ((const char *)mdp_msg_data(m, 5))[0] ==
                      'a' + (int)(sr->parts % 26);
    if (partial)
      sr->parts++;
    else if (frames_are(m, "MDPW02", "\x04", "cl", "", "19660800"))
      sr->final = 1;
    else
      sr->bad = 1;
    mdp_msg_destroy(m);
  }
  return sr->final || sr->bad;
}

/* stream_worker paces itself: 300 parts of 64 KiB (19 MB, far beyond the
 * pipe's buffers) to a slow reader arrive whole and in order while the
 * worker never holds more than a couple of parts. */
static void stream_worker_paced(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  slow_reader_t sr;
  memset(&sr, 0, sizeof sr);
  sr.f.sock = zmq_socket(mdp_zmq_context(), ZMQ_ROUTER);
  int small = 4, linger = 0, rcvbuf = 65536;
  zmq_setsockopt(sr.f.sock, ZMQ_RCVHWM, &small, sizeof small);
  zmq_setsockopt(sr.f.sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
  zmq_setsockopt(sr.f.sock, ZMQ_LINGER, &linger, sizeof linger);
  CHECK_EQ(zmq_bind(sr.f.sock, "tcp://127.0.0.1:*"), 0);
  size_t len = sizeof sr.f.endpoint;
  zmq_getsockopt(sr.f.sock, ZMQ_LAST_ENDPOINT, sr.f.endpoint, &len);
  child_t w;
  const char *wargs[] = {sr.f.endpoint, NULL};
  CHECK_EQ(spawn(&loop, &w, "examples", "stream_worker", wargs), 0);
  CHECK(fake_wait(&loop, &sr.f, 1, 10000));
  mdp_msg_t *ready = fake_take(&sr.f);
  CHECK(frames_are(ready, "MDPW02", "\x01", "stream"));
  fake_send(&sr.f, ready, "MDPW02", "\x02", "cl", "", "300");
  mdp_msg_destroy(ready);
  CHECK(t_run_until(&loop, slow_read, &sr, 60000));
  CHECK_EQ(sr.bad, 0);
  CHECK_EQ(sr.parts, 300);
  uv_process_kill(&w.proc, SIGTERM);
  CHECK_EQ(child_wait(&loop, &w, 10000), 0);
  unsigned long parts = 0, most_held = 99;
  const char *line = strstr(w.out, "streamed ");
  CHECK(line != NULL);
  CHECK_EQ(sscanf(line, "streamed %lu parts, at most %lu held", &parts,
                  &most_held), 2);
  printf("# %lu parts to a slow reader, at most %lu held\n", parts, most_held);
  CHECK_EQ(parts, 300);
  CHECK(most_held >= 1); /* the reader was slow enough to matter */
  CHECK(most_held <= 2);
  fake_close(&sr.f);
  CHECK_EQ(t_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(echo_worker_and_client);
  RUN(stream_worker_and_client);
  RUN(stream_worker_paced);
  RUN(inflight_client);
  RUN(all_in_one);
  RUN(tcp_gateway);
  RUN(mdp_request_tool);
  RUN(mdp_request_protocol_error_with_timeout);
  t_context_term();
  return t_done();
}
