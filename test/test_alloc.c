/* Heap allocations per round trip on the broker's hot path, in the steady
 * state (issue #15): none.
 *
 * This program interposes malloc, calloc, realloc, free and the aligned
 * allocators (it defines them; they forward to glibc's __libc_* entry
 * points) and counts the calls made on this thread while the broker's loop
 * runs, so only the broker's own work is counted: its callbacks, the
 * reactor, the codec, and the libzmq calls it makes (zmq_msg_recv/send).
 * The raw peers (DEALERs, frames as zmq_msg_t) run between loop turns and
 * are not counted, nor is libzmq's I/O thread.
 *
 * Each case warms up, then counts over a fixed number of round trips and
 * fails above MAX_PER_RT.  Where interposing cannot work (AddressSanitizer
 * owns malloc; valgrind replaces it) the cases are TAP SKIPs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include <mdp.h>

#include "harness.h"

/* What the broker reaches: 0 in every case (measured; before issue #15,
 * 4.0 per round trip in the first case, 5.0 in the others).  The bound leaves room for a
 * one-off allocation inside libzmq, not for one per 1,000 messages. */
#define MAX_PER_RT 0.001
/* The library's client and workers with the broker, per round trip
 * (lib_client_and_workers): 0 as well (measured; 1.0 before the client
 * recycled its request records). */
#define MAX_LIB_PER_RT 0.001
/* libzmq's message pipes (yqueue_t) take a new chunk of 256 slots with
 * posix_memalign when the one spare chunk is in use: about one per 125
 * round trips here, in zmq_msg_send.  Counted apart: libzmq's, not ours,
 * and the baseline's too.  Bounded loosely so a change there shows. */
#define MAX_ALIGNED_PER_RT 0.05

#if !T_ASAN && defined(__GLIBC__)
#define COUNTING 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
void *memalign(size_t, size_t);

static __thread int counting; /* set on this thread around loop turns */
/* Touched by the counting thread only. */
static unsigned long allocs;  /* malloc, calloc, realloc, (aligned_)alloc */
static unsigned long aligned; /* posix_memalign: libzmq's pipe chunks */

void *malloc(size_t n) {
  if (counting)
    allocs++;
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  if (counting)
    allocs++;
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  if (counting)
    allocs++;
  return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
void *aligned_alloc(size_t a, size_t n) {
  if (counting)
    allocs++;
  return __libc_memalign(a, n);
}
void *memalign(size_t a, size_t n) {
  if (counting)
    allocs++;
  return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n) {
  if (counting)
    aligned++;
  void *p = __libc_memalign(a, n);
  if (p == NULL)
    return 12; /* ENOMEM */
  *out = p;
  return 0;
}
#else
#define COUNTING 0
static int counting;
static unsigned long allocs, aligned;
#endif

/* 1 if malloc is not ours to count here (a TAP SKIP). */
static int cannot_count(void) {
  if (!COUNTING) {
    t_skip("AddressSanitizer (or a libc without __libc_malloc) owns malloc");
    return 1;
  }
  const char *pre = getenv("LD_PRELOAD");
  if (pre != NULL && strstr(pre, "vgpreload") != NULL) {
    t_skip("valgrind replaces malloc");
    return 1;
  }
  return 0;
}

typedef struct {
  const char *worker_header; /* "MDPW02" or "MDPW01" */
  int mdp01;                 /* the worker speaks MDP/0.1 ("" first) */
  int workers;
  int clients;
  int body_frames;           /* in each request and reply */
} case_t;

typedef struct {
  uv_loop_t loop;
  void *ctx;
  mdp_broker_t *broker;
  void *w[16];
  void *c[16];
  int closed;
} rig_t;

static void on_closed(mdp_broker_t *b) {
  rig_t *r = mdp_broker_get_data(b);
  r->closed = 1;
}

static int is_closed(void *arg) { return ((rig_t *)arg)->closed; }

/* A loop, a context and a broker bound on tcp://127.0.0.1:* (its endpoint
 * in `ep`), heartbeats out of the way: the request path is what is
 * counted.  0, or -1 (close what was made with rig_close). */
static int rig_open(rig_t *r, char *ep, size_t ep_size) {
  memset(r, 0, sizeof *r);
  uv_loop_init(&r->loop);
  r->ctx = zmq_ctx_new();
  mdp_broker_options_t o;
  mdp_broker_options_init(&o);
  o.zmq_context = r->ctx;
  o.heartbeat_interval_ms = 10000;
  if (mdp_broker_new(&r->loop, &o, &r->broker) != 0)
    return -1;
  mdp_broker_set_data(r->broker, r);
  if (mdp_broker_bind(r->broker, "tcp://127.0.0.1:*") != 0)
    return -1;
  return mdp_broker_last_endpoint(r->broker, ep, ep_size) == 0 ? 0 : -1;
}

/* Runs the loop until `workers` are registered and idle, so the figures
 * are the steady state's from the first request.  1, or 0 on timeout. */
static int rig_wait_workers(rig_t *r, int workers) {
  uint64_t end = uv_hrtime() + t_slow(5000) * 1000000ull;
  mdp_broker_stats_t st;
  do {
    uv_run(&r->loop, UV_RUN_NOWAIT);
    uv_sleep(1);
    mdp_broker_get_stats(r->broker, &st);
  } while (st.workers_idle < (uint64_t)workers && uv_hrtime() < end);
  return st.workers_idle >= (uint64_t)workers;
}

/* Closes the broker, the raw peers, the loop and the context. */
static void rig_close(rig_t *r) {
  if (r->broker != NULL) {
    mdp_broker_close(r->broker, on_closed);
    t_run_until(&r->loop, is_closed, r, 2000);
  }
  for (int i = 0; i < 16; i++) {
    if (r->w[i])
      zmq_close(r->w[i]);
    if (r->c[i])
      zmq_close(r->c[i]);
  }
  t_loop_close(&r->loop);
  zmq_ctx_term(r->ctx);
}

/* One loop turn without blocking, counted. */
static void turn(rig_t *r) {
  counting = 1;
  uv_run(&r->loop, UV_RUN_NOWAIT);
  counting = 0;
}

static int send_frames(void *sock, zmq_msg_t *frames, int n) {
  for (int i = 0; i < n; i++)
    if (zmq_msg_send(&frames[i], sock, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
      return -1;
  return 0;
}

static int send_strs(void *sock, const char **f, int n) {
  for (int i = 0; i < n; i++)
    if (zmq_send(sock, f[i], strlen(f[i]), i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
      return -1;
  return 0;
}

/* Receives one whole message (at most 16 frames) without blocking; the
 * frame count, 0 if none. */
static int recv_frames(void *sock, zmq_msg_t *frames) {
  int n = 0;
  for (;;) {
    zmq_msg_init(&frames[n]);
    if (zmq_msg_recv(&frames[n], sock, n ? 0 : ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frames[n]);
      return n;
    }
    int more = zmq_msg_more(&frames[n]);
    n++;
    if (!more || n == 16)
      return n;
  }
}

static void close_frames(zmq_msg_t *frames, int n) {
  for (int i = 0; i < n; i++)
    zmq_msg_close(&frames[i]);
}

static int client_request(void *c, int body_frames) {
  const char *f[8] = {"MDPC02", "\x01", "echo"};
  for (int i = 0; i < body_frames; i++)
    f[3 + i] = "0123456789abcdef"; /* 16 B, as in mdp-bench (b) */
  return send_strs(c, f, 3 + body_frames);
}

/* A worker's REQUEST in, its FINAL out with the same client and body: the
 * frames after the header are moved back as they came. */
static int worker_echo(const case_t *k, void *w) {
  zmq_msg_t f[16];
  int n = recv_frames(w, f);
  if (n == 0)
    return 0;
  int h = k->mdp01 ? 1 : 0; /* frames before the header */
  int ok = n >= h + 4 && zmq_msg_size(&f[h + 1]) == 1;
  if (ok && *(const char *)zmq_msg_data(&f[h + 1]) == 0x02) {
    /* MDP/0.1 has no FINAL: REPLY is 0x03; RFC 18's FINAL is 0x04. */
    zmq_msg_close(&f[h + 1]);
    zmq_msg_init_size(&f[h + 1], 1);
    *(char *)zmq_msg_data(&f[h + 1]) = k->mdp01 ? 0x03 : 0x04;
    ok = send_frames(w, f, n) == 0;
  } else {
    ok = 0; /* a HEARTBEAT: not expected at this interval */
  }
  close_frames(f, n);
  return ok ? 1 : -1;
}

/* A FINAL at a client: 1, or 0 if none. */
static int client_reply(void *c) {
  zmq_msg_t f[16];
  int n = recv_frames(c, f);
  close_frames(f, n);
  return n > 0;
}

/* Runs `k` and returns the broker's allocations per round trip over `n`
 * round trips after `warm` round trips, or -1 if the load did not run;
 * libzmq's posix_memalign calls per round trip in `*aligned_per_rt`. */
static double run_case(const case_t *k, long warm, long n,
                       double *aligned_per_rt) {
  *aligned_per_rt = -1;
  rig_t r;
  char ep[256];
  double result = -1;
  if (rig_open(&r, ep, sizeof ep) < 0)
    goto out;
  int zero = 0;
  for (int i = 0; i < k->workers; i++) {
    r.w[i] = zmq_socket(r.ctx, ZMQ_DEALER);
    zmq_setsockopt(r.w[i], ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(r.w[i], ep);
    const char *ready02[] = {k->worker_header, "\x01", "echo"};
    const char *ready01[] = {"", k->worker_header, "\x01", "echo"};
    send_strs(r.w[i], k->mdp01 ? ready01 : ready02, k->mdp01 ? 4 : 3);
  }
  for (int i = 0; i < k->clients; i++) {
    r.c[i] = zmq_socket(r.ctx, ZMQ_DEALER);
    zmq_setsockopt(r.c[i], ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(r.c[i], ep);
  }
  if (!rig_wait_workers(&r, k->workers))
    goto out;
  for (int i = 0; i < k->clients; i++)
    client_request(r.c[i], k->body_frames);
  long done = 0;
  unsigned long at_start = 0, at_end = 0, aligned_start = 0, aligned_end = 0;
  uint64_t end = uv_hrtime() + t_slow(30000) * 1000000ull;
  while (done < warm + n && uv_hrtime() < end) {
    int idle = 1;
    turn(&r);
    for (int i = 0; i < k->workers; i++) {
      int rc = worker_echo(k, r.w[i]);
      if (rc < 0)
        goto out;
      idle &= rc == 0;
    }
    turn(&r);
    for (int i = 0; i < k->clients; i++) {
      if (!client_reply(r.c[i]))
        continue;
      idle = 0;
      if (++done == warm) {
        at_start = allocs;
        aligned_start = aligned;
      }
      if (done == warm + n) {
        at_end = allocs;
        aligned_end = aligned;
      }
      if (done < warm + n)
        client_request(r.c[i], k->body_frames);
    }
    if (idle) {
      /* Frames on their way through the I/O threads: wait for any. */
      zmq_pollitem_t items[32];
      int m = 0;
      for (int i = 0; i < k->workers; i++)
        items[m++] = (zmq_pollitem_t){r.w[i], 0, ZMQ_POLLIN, 0};
      for (int i = 0; i < k->clients; i++)
        items[m++] = (zmq_pollitem_t){r.c[i], 0, ZMQ_POLLIN, 0};
      zmq_poll(items, m, 1);
    }
  }
  if (done >= warm + n)
    result = (double)(at_end - at_start) / (double)n;
  if (done >= warm + n)
    *aligned_per_rt = (double)(aligned_end - aligned_start) / (double)n;
  printf("# %d worker(s) %s x %d client(s), %d body frame(s): %ld round "
         "trips, %lu allocations on the broker's loop (%.4f per round trip), "
         "%lu libzmq pipe chunks (%.4f)\n",
         k->workers, k->worker_header, k->clients, k->body_frames, n,
         at_end - at_start, result, aligned_end - aligned_start,
         *aligned_per_rt);
out:
  rig_close(&r);
  return result;
}

static void check_case(const case_t *k) {
  if (cannot_count())
    return;
  double aligned_per_rt;
  double per_rt = run_case(k, t_scale(300), t_scale(2000), &aligned_per_rt);
  CHECK(per_rt >= 0);
  CHECK(per_rt <= MAX_PER_RT);
  CHECK(aligned_per_rt <= MAX_ALIGNED_PER_RT);
}

/* mdp-bench (b): 8 clients, 8 RFC 18 workers, 16 B, one request each in
 * flight: every request finds an idle worker (the direct path). */
static void rfc18_8x8(void) {
  case_t k = {"MDPW02", 0, 8, 8, 1};
  check_case(&k);
}

/* More clients than workers: requests wait in the per-client queues. */
static void queued_4x1(void) {
  case_t k = {"MDPW02", 0, 1, 4, 1};
  check_case(&k);
}

/* Two body frames: RFC 18 replies of 7 frames as the broker receives them
 * ([identity | MDPW02 | 04 | client | "" | body | body]), which regrew the
 * frame array while being read before issue #15. */
static void rfc18_two_frames(void) {
  case_t k = {"MDPW02", 0, 2, 2, 2};
  check_case(&k);
}

/* MDP/0.1 workers: a reply of 7 frames with a single body frame, and the
 * largest header the broker sends (6 frames with the identity). */
static void mdp01_workers(void) {
  case_t k = {"MDPW01", 1, 2, 2, 1};
  check_case(&k);
}

/* --- the library's own client and worker -------------------------------- */

/* One mdp_client_t with `inflight` requests in flight and `workers`
 * mdp_worker_t echo workers, through an mdp_broker_t, all on one loop: the
 * allocations per round trip of the three together (the broker's are 0,
 * above), counted while the loop runs.  The reply callback makes the next
 * request, so its body (mdp_msg_new, one 16 B frame) is counted too. */
typedef struct {
  mdp_client_t *client;
  long done, target, sent;
  int failed;
} lib_load_t;

static void lib_echo(mdp_worker_t *w, mdp_request_t req, mdp_msg_t *body) {
  (void)w;
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static void lib_reply(mdp_client_t *c, uint64_t id, int status, int final,
                      mdp_msg_t *body, void *data);

static int lib_send(lib_load_t *l) {
  mdp_msg_t *m = mdp_msg_new();
  if (m == NULL || mdp_msg_append_mem(m, "0123456789abcdef", 16) < 0 ||
      mdp_client_request(l->client, "echo", m, NULL, lib_reply, l, NULL) < 0) {
    mdp_msg_destroy(m);
    return -1;
  }
  l->sent++;
  return 0;
}

static void lib_reply(mdp_client_t *c, uint64_t id, int status, int final,
                      mdp_msg_t *body, void *data) {
  (void)c;
  (void)id;
  lib_load_t *l = data;
  mdp_msg_destroy(body);
  if (!final)
    return;
  if (status != 0)
    l->failed = 1;
  l->done++;
  if (l->sent < l->target && lib_send(l) < 0)
    l->failed = 1;
}

static int lib_closing; /* client and workers not closed yet */
static void lib_client_closed(mdp_client_t *c) {
  (void)c;
  lib_closing--;
}
static void lib_worker_closed(mdp_worker_t *w) {
  (void)w;
  lib_closing--;
}
static int lib_all_closed(void *arg) {
  (void)arg;
  return lib_closing == 0;
}

static double run_lib(int workers, int inflight, long warm, long n) {
  rig_t r;
  mdp_worker_t *w[8] = {0};
  lib_load_t l = {0};
  double result = -1;
  char ep[256];
  if (rig_open(&r, ep, sizeof ep) < 0)
    goto out;
  mdp_worker_options_t wo;
  mdp_worker_options_init(&wo);
  wo.zmq_context = r.ctx;
  wo.heartbeat_interval_ms = 10000;
  for (int i = 0; i < workers; i++)
    if (mdp_worker_new(&r.loop, ep, "echo", &wo, lib_echo, &w[i]) != 0)
      goto out;
  mdp_client_options_t co;
  mdp_client_options_init(&co);
  co.zmq_context = r.ctx;
  co.max_sockets = (size_t)inflight;
  const char *eps[] = {ep};
  if (mdp_client_new(&r.loop, eps, 1, &co, &l.client) != 0)
    goto out;
  if (!rig_wait_workers(&r, workers))
    goto out;
  l.target = warm + n;
  for (int i = 0; i < inflight; i++)
    if (lib_send(&l) < 0)
      goto out;
  unsigned long at_start = 0;
  int started = 0;
  uint64_t end = uv_hrtime() + t_slow(30000) * 1000000ull;
  while (l.done < warm + n && !l.failed && uv_hrtime() < end) {
    turn(&r);
    if (!started && l.done >= warm) {
      started = 1;
      at_start = allocs;
    }
  }
  if (l.done >= warm + n && !l.failed && started)
    result = (double)(allocs - at_start) / (double)(l.done - warm);
  printf("# mdp_client_t (%d in flight) x %d mdp_worker_t through "
         "mdp_broker_t, one loop: %ld round trips, %.4f allocations per round "
         "trip\n", inflight, workers, l.done - warm, result);
out:
  lib_closing = 0;
  if (l.client != NULL) {
    lib_closing++;
    mdp_client_close(l.client, lib_client_closed);
  }
  for (int i = 0; i < 8; i++)
    if (w[i] != NULL) {
      lib_closing++;
      mdp_worker_close(w[i], 0, lib_worker_closed);
    }
  /* Their sockets close from the loop; the context waits for them. */
  t_run_until(&r.loop, lib_all_closed, NULL, 3000);
  rig_close(&r);
  return result;
}

static void lib_client_and_workers(void) {
  if (cannot_count())
    return;
  double per_rt = run_lib(4, 16, t_scale(300), t_scale(2000));
  CHECK(per_rt >= 0);
  CHECK(per_rt <= MAX_LIB_PER_RT);
}

/* ---- mdp_malloc_tune (issue #21) ----------------------------------------
 * Large bodies: with glibc's dynamic thresholds, a process that holds a few
 * 1 MiB buffers at once and frees them trims its heap and faults every page
 * in again for the next messages (the broker's pattern: 8 frames of 1 MiB in
 * flight, then all sent).  mdp_malloc_tune keeps them.  Each side runs in
 * its own child process: the thresholds are process-wide and glibc's
 * dynamic ones depend on what the process freed before. */
enum { BIG_BLOCKS = 8, BIG_BLOCK = 1 << 20, BIG_ROUNDS = 20 };

typedef struct {
  int blocks;
  size_t size;
  int rounds;
  long per; /* page faults per round after the first */
} big_load_t;

static long minflt_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt + ru.ru_majflt;
}

/* One round: `blocks` blocks of `size`, every page written, freed. */
static void big_round(const big_load_t *l) {
  static char *volatile blocks[BIG_BLOCKS];
  for (int i = 0; i < l->blocks; i++) {
    blocks[i] = malloc(l->size);
    if (blocks[i] == NULL)
      _exit(3);
    for (size_t off = 0; off < l->size; off += 4096)
      blocks[i][off] = (char)off;
  }
  for (int i = 0; i < l->blocks; i++)
    free(blocks[i]);
}

static void *big_rounds(void *arg) {
  big_load_t *l = arg;
  big_round(l);
  long f0 = minflt_now();
  for (int i = 0; i < l->rounds; i++)
    big_round(l);
  l->per = (minflt_now() - f0) / l->rounds;
  return NULL;
}

/* Page faults per round after a warm-up round, in a child process that
 * calls mdp_malloc_tune(keep) first unless keep is 0, on its main thread
 * or (in_thread) on a thread of its own, which glibc gives its own arena,
 * as libzmq's I/O thread has; -1 on error. */
static long faults_per_round(size_t keep, int blocks, size_t size,
                             int in_thread) {
  int fd[2];
  if (pipe(fd) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    if (keep && mdp_malloc_tune(keep) != 0)
      _exit(2);
    big_load_t l = {blocks, size, in_thread ? 8 : BIG_ROUNDS, -1};
    pthread_t t;
    if (!in_thread)
      big_rounds(&l);
    else if (pthread_create(&t, NULL, big_rounds, &l) != 0 ||
             pthread_join(t, NULL) != 0)
      _exit(5);
    _exit(write(fd[1], &l.per, sizeof l.per) == sizeof l.per ? 0 : 4);
  }
  close(fd[1]);
  long per = -1;
  if (pid < 0 || read(fd[0], &per, sizeof per) != sizeof per)
    per = -1;
  close(fd[0]);
  int status = 0;
  if (pid > 0)
    waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? per : -1;
}

static void malloc_tune_keeps_large_buffers(void) {
  CHECK_EQ(mdp_malloc_tune(0), MDP_EINVAL);
  if (cannot_count())
    return;
  long plain = faults_per_round(0, BIG_BLOCKS, BIG_BLOCK, 0);
  long tuned = faults_per_round((size_t)64 << 20, BIG_BLOCKS, BIG_BLOCK, 0);
  printf("# page faults per round of %d x %d bytes: %ld with glibc's "
         "defaults, %ld after mdp_malloc_tune(64 MiB)\n", BIG_BLOCKS,
         BIG_BLOCK, plain, tuned);
  CHECK(plain >= 0);
  CHECK(tuned >= 0);
  /* The pages of one round: 2,048.  glibc's defaults fault most of them
   * (measured: 2,017, the heap trimmed to its 128 KiB pad each round);
   * tuned, none: the bound leaves room for the odd page of the stack. */
  CHECK(plain >= BIG_BLOCKS * (BIG_BLOCK / 4096) / 4);
  CHECK(tuned <= 16);
}

/* 16 MiB bodies received by another thread than main (libzmq's I/O
 * thread): its arena's heaps are 64 MiB pieces that glibc unmaps once
 * empty, whatever the trim threshold; mdp_malloc_tune keeps every thread on
 * the main arena. */
static void malloc_tune_keeps_large_buffers_of_threads(void) {
  if (cannot_count())
    return;
  size_t size = (size_t)16 << 20;
  long plain = faults_per_round(0, 4, size, 1);
  long tuned = faults_per_round((size_t)256 << 20, 4, size, 1);
  printf("# page faults per round of 4 x 16 MiB on a thread: %ld with "
         "glibc's defaults, %ld after mdp_malloc_tune(256 MiB)\n", plain,
         tuned);
  CHECK(plain >= 0);
  CHECK(tuned >= 0);
  CHECK(plain >= 4096); /* of 16,384 pages */
  CHECK(tuned <= 16);
}

int main(void) {
  RUN(malloc_tune_keeps_large_buffers);
  RUN(malloc_tune_keeps_large_buffers_of_threads);
  RUN(rfc18_8x8);
  RUN(queued_4x1);
  RUN(rfc18_two_frames);
  RUN(mdp01_workers);
  RUN(lib_client_and_workers);
  t_context_term();
  return t_done();
}
