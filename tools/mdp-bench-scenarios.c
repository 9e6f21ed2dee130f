/* mdp-bench: scenarios (a)-(f) and the cost runs.
 *
 * One run = a broker process (the real mdp-broker, or the baseline), a
 * worker-load process and a client-load process, over tcp://127.0.0.1 or
 * ipc://.  The client warms up, says "warm", and runs one measured phase per
 * 'g' the parent writes; around each phase the parent reads the processes'
 * CPU time from /proc, the broker's RSS, and optionally attaches
 * `perf stat` to the broker.  Under --callgrind the broker runs inside
 * valgrind for a fixed number of round trips, twice (N1 and N2), and the
 * cost per round trip is the difference of the totals over N2 - N1, which
 * cancels start-up, warm-up and shutdown.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "mdp-bench.h"

static int run_seq;

static void make_endpoint(const char *transport, char *buf, size_t size) {
  run_seq++;
  if (strcmp(transport, "ipc") == 0) {
    snprintf(buf, size, "ipc:///tmp/mdp-bench-%d-%d.ipc", (int)getpid(),
             run_seq);
    return;
  }
  /* A free port: bind port 0, read it, close. */
  int port = 20000 + (int)(getpid() % 20000) + run_seq;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0)
    close(fd);
  snprintf(buf, size, "tcp://127.0.0.1:%d", port);
}

static void unlink_endpoint(const char *ep) {
  if (strncmp(ep, "ipc://", 6) == 0)
    unlink(ep + 6);
}

typedef struct {
  char *v[32];
  char store[32][512];
  int n;
} argv_t;

static void av_add(argv_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void av_add(argv_t *a, const char *fmt, ...) {
  if (a->n >= 31)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->store[a->n], sizeof a->store[a->n], fmt, ap);
  va_end(ap);
  a->v[a->n] = a->store[a->n];
  a->n++;
  a->v[a->n] = NULL;
}

static int spawn_broker(const bench_env_t *env, const run_cfg_t *c,
                        const char *ep, const char *cg_file,
                        bench_proc_t *p) {
  argv_t a = {.n = 0};
  if (cg_file) {
    av_add(&a, "%s", env->valgrind);
    av_add(&a, "--tool=callgrind");
    av_add(&a, "--callgrind-out-file=%s", cg_file);
    av_add(&a, "-q");
  }
  if (c->baseline) {
    av_add(&a, "%s", env->self);
    av_add(&a, "--role");
    av_add(&a, "baseline");
    av_add(&a, "endpoint=%s", ep);
    av_add(&a, "service=%s", BENCH_SERVICE);
    if (c->hb_echo)
      av_add(&a, "hb_echo=1");
  } else {
    av_add(&a, "%s", env->broker);
    av_add(&a, "-b");
    av_add(&a, "%s", ep);
    av_add(&a, "-q");
    for (int i = 0; c->broker_args && c->broker_args[i]; i++)
      av_add(&a, "%s", c->broker_args[i]);
  }
  return bench_spawn(p, a.v, 0, c->tunables ? BENCH_GLIBC_TUNABLES : NULL);
}

static int spawn_workers(const bench_env_t *env, const run_cfg_t *c,
                         const char *ep, bench_proc_t *p) {
  argv_t a = {.n = 0};
  av_add(&a, "%s", env->self);
  av_add(&a, "--role");
  av_add(&a, "%s", c->lib_workers ? "libworker" : "worker");
  av_add(&a, "endpoint=%s", ep);
  av_add(&a, "workers=%d", c->workers);
  av_add(&a, "partials=%d", c->partials);
  return bench_spawn(p, a.v, 0, NULL);
}

static int spawn_client(const bench_env_t *env, const run_cfg_t *c,
                        const char *ep, int slow, bench_proc_t *p) {
  argv_t a = {.n = 0};
  av_add(&a, "%s", env->self);
  av_add(&a, "--role");
  av_add(&a, "%s", c->lib_client ? "libclient" : "client");
  av_add(&a, "endpoint=%s", ep);
  av_add(&a, "clients=%d", c->clients);
  av_add(&a, "inflight=%d", c->inflight);
  av_add(&a, "max_sockets=%d", c->max_sockets ? c->max_sockets : 64);
  av_add(&a, "body=%zu", c->body);
  av_add(&a, "warmup=%d", c->warmup);
  av_add(&a, "count=%ld", c->count);
  av_add(&a, "duration_ms=%d", c->duration_ms);
  av_add(&a, "timeout_ms=%d", slow ? 120000 : 10000);
  av_add(&a, "warm_ms=%d", slow ? 300000 : 30000);
  return bench_spawn(p, a.v, 1, NULL);
}

static int spawn_pop(const bench_env_t *env, const char *ep,
                     const char *kind, int n, int services, int offset,
                     int hb, long requests, bench_proc_t *p) {
  argv_t a = {.n = 0};
  av_add(&a, "%s", env->self);
  av_add(&a, "--role");
  av_add(&a, "idle");
  av_add(&a, "kind=%s", kind);
  av_add(&a, "endpoint=%s", ep);
  av_add(&a, "workers=%d", n);
  av_add(&a, "services=%d", services);
  av_add(&a, "offset=%d", offset);
  av_add(&a, "hb=%d", hb);
  av_add(&a, "requests=%ld", requests);
  return bench_spawn(p, a.v, 1, NULL);
}

static int spawn_idle(const bench_env_t *env, const char *ep, int n,
                      int services, int offset, bench_proc_t *p) {
  return spawn_pop(env, ep, "worker", n, services, offset, 1, 0, p);
}

/* perf stat attached to a running process (all its threads). */
static int spawn_perf(const bench_env_t *env, pid_t pid, const char *out,
                      bench_proc_t *p) {
  argv_t a = {.n = 0};
  av_add(&a, "%s", env->perf);
  av_add(&a, "stat");
  av_add(&a, "-x,");
  av_add(&a, "-o");
  av_add(&a, "%s", out);
  av_add(&a, "-e");
  av_add(&a, "raw_syscalls:sys_enter,task-clock");
  av_add(&a, "-p");
  av_add(&a, "%d", (int)pid);
  return bench_spawn(p, a.v, 0, NULL);
}

static void parse_perf(const char *file, double *syscalls, double *task_ms) {
  FILE *f = fopen(file, "r");
  char line[512];
  *syscalls = *task_ms = -1;
  if (f == NULL)
    return;
  while (fgets(line, sizeof line, f)) {
    double v;
    if (sscanf(line, "%lf,", &v) != 1)
      continue;
    if (strstr(line, "raw_syscalls:sys_enter"))
      *syscalls = v;
    else if (strstr(line, "task-clock"))
      *task_ms = v;
  }
  fclose(f);
}

static double parse_callgrind(const char *file) {
  FILE *f = fopen(file, "r");
  char line[512];
  double total = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f)) {
    double v;
    /* "summary" is what was counted since the start, or since the last
     * --zero for a dump; "totals" (the sum of the cost lines) may hold
     * more in a dump, costs of contexts the zeroing did not reach. */
    if (sscanf(line, "summary: %lf", &v) == 1 ||
        (total < 0 && sscanf(line, "totals: %lf", &v) == 1))
      total = v;
  }
  fclose(f);
  return total;
}

/* One measured phase on a running client: 'g', then the "done" line. */
static int client_phase(bench_proc_t *client, int timeout_ms, run_res_t *r) {
  if (write(client->in_fd, "g", 1) != 1)
    return -1;
  char line[256];
  if (bench_read_line(client, line, sizeof line, timeout_ms) < 0) {
    fprintf(stderr, "mdp-bench: the client did not report in time\n");
    return -1;
  }
  unsigned long long n, el, p50, p99, p999, err;
  if (sscanf(line, "done %llu %llu %llu %llu %llu %llu", &n, &el, &p50, &p99,
             &p999, &err) != 6)
    return -1;
  r->count = n;
  r->elapsed_s = (double)el / 1e9;
  r->rt_per_s = el ? (double)n * 1e9 / (double)el : 0;
  r->p50_us = (double)p50 / 1e3;
  r->p99_us = (double)p99 / 1e3;
  r->p999_us = (double)p999 / 1e3;
  r->errors = err;
  return err ? -1 : 0;
}

typedef struct {
  char ep[128];
  char cg_file[256];
  bench_proc_t broker, workers, client;
  int slow;
} session_t;

static void session_stop(session_t *s) {
  if (s->client.pid > 0) {
    if (s->client.in_fd >= 0 && write(s->client.in_fd, "q", 1) != 1) {
    }
    bench_stop(&s->client, 0, 2000);
    bench_stop(&s->client, SIGTERM, 2000);
  }
  bench_stop(&s->workers, SIGTERM, 5000);
  bench_stop(&s->broker, SIGTERM, s->slow ? 120000 : 10000);
  unlink_endpoint(s->ep);
}

static int session_start(const bench_env_t *env, const run_cfg_t *c,
                         session_t *s) {
  memset(s, 0, sizeof *s);
  s->broker.pid = s->workers.pid = s->client.pid = -1;
  s->broker.in_fd = s->broker.out_fd = -1;
  s->workers.in_fd = s->workers.out_fd = -1;
  s->client.in_fd = s->client.out_fd = -1;
  s->slow = c->callgrind;
  make_endpoint(c->transport, s->ep, sizeof s->ep);
  if (c->callgrind)
    snprintf(s->cg_file, sizeof s->cg_file, "/tmp/mdp-bench-%d-%d.cg",
             (int)getpid(), run_seq);
  if (spawn_broker(env, c, s->ep, c->callgrind ? s->cg_file : NULL,
                   &s->broker) < 0)
    return -1;
  if (spawn_workers(env, c, s->ep, &s->workers) < 0 ||
      spawn_client(env, c, s->ep, s->slow, &s->client) < 0) {
    session_stop(s);
    return -1;
  }
  char line[64];
  if (bench_read_line(&s->client, line, sizeof line,
                      s->slow ? 300000 : 40000) < 0 ||
      strcmp(line, "warm") != 0) {
    fprintf(stderr, "mdp-bench: the client did not warm up (%s, %s)\n",
            c->baseline ? "baseline" : "mdp-broker", s->ep);
    session_stop(s);
    return -1;
  }
  return 0;
}

typedef struct {
  double b, w, c;
} cpu3_t;

static cpu3_t cpu_now(const session_t *s) {
  cpu3_t t = {bench_proc_cpu(s->broker.pid), bench_proc_cpu(s->workers.pid),
              bench_proc_cpu(s->client.pid)};
  return t;
}

/* A measured phase with CPU accounting (and perf, if asked). */
static int measure(const bench_env_t *env, const run_cfg_t *c, session_t *s,
                   run_res_t *r) {
  bench_proc_t perf = {.pid = -1, .in_fd = -1, .out_fd = -1};
  char perf_file[256] = "";
  if (c->perf && env->perf) {
    snprintf(perf_file, sizeof perf_file, "/tmp/mdp-bench-%d-%d.perf",
             (int)getpid(), run_seq);
    if (spawn_perf(env, s->broker.pid, perf_file, &perf) == 0)
      bench_sleep_ms(500); /* let perf attach */
  }
  double faults0 = bench_proc_faults(s->broker.pid);
  cpu3_t before = cpu_now(s);
  int timeout = (c->duration_ms > 0 ? c->duration_ms : 0) +
                (s->slow ? 600000 : 60000);
  int rc = client_phase(&s->client, timeout, r);
  cpu3_t after = cpu_now(s);
  r->cpu_broker = after.b - before.b;
  r->cpu_workers = after.w - before.w;
  r->cpu_client = after.c - before.c;
  r->faults = bench_proc_faults(s->broker.pid) - faults0;
  r->rss_kib = bench_proc_rss_kib(s->broker.pid);
  if (perf.pid > 0) {
    bench_stop(&perf, SIGINT, 10000);
    parse_perf(perf_file, &r->syscalls, &r->task_ms);
    unlink(perf_file);
  }
  return rc;
}

int bench_run(const bench_env_t *env, const run_cfg_t *c, run_res_t *r) {
  memset(r, 0, sizeof *r);
  r->syscalls = r->task_ms = r->ir = -1;
  session_t s;
  if (session_start(env, c, &s) < 0)
    return -1;
  int rc = measure(env, c, &s, r);
  session_stop(&s);
  if (c->callgrind) {
    r->ir = parse_callgrind(s.cg_file);
    unlink(s.cg_file);
    if (r->ir < 0)
      rc = -1;
  }
  r->ok = rc == 0;
  return rc;
}

/* ---- scenario (e): scale ------------------------------------------------ */

/* Waits until the broker's RSS has not changed for `quiet_ms` (every READY
 * handled), at most `max_ms`. */
static void wait_rss_settle(pid_t pid, int quiet_ms, int max_ms) {
  long last = -1;
  int still = 0;
  for (int t = 0; t < max_ms && still < quiet_ms; t += 100) {
    bench_sleep_ms(100);
    long now = bench_proc_rss_kib(pid);
    if (now == last)
      still += 100;
    else
      still = 0;
    last = now;
  }
}

/* One figure of mdp-broker's mmi.workers reply for `name`:
 * [hdr | 0x03 | mmi.workers | "200" | idle | busy | queued], `frame` 4
 * (idle) to 6 (queued); -1 on error. */
static long mmi_workers_figure(void *sock, const char *name, int frame_wanted);

/* Idle workers registered with mdp-broker, summed over the services'
 * mmi.workers replies; -1 on error. */
static long mmi_idle_workers(void *sock, int services) {
  long total = 0;
  for (int i = 0; i < services; i++) {
    char name[32];
    snprintf(name, sizeof name, "idle-%d", i);
    long n = mmi_workers_figure(sock, name, 4);
    if (n < 0)
      return -1;
    total += n;
  }
  return total;
}

static long mmi_workers_figure(void *sock, const char *name,
                               int frame_wanted) {
  static const unsigned char request = 0x01;
  long total = 0;
  {
    int len = (int)strlen(name);
    zmq_send_const(sock, "MDPC02", 6, ZMQ_SNDMORE);
    zmq_send_const(sock, &request, 1, ZMQ_SNDMORE);
    zmq_send_const(sock, "mmi.workers", 11, ZMQ_SNDMORE);
    zmq_send(sock, name, (size_t)len, 0);
    /* [hdr | 0x03 | mmi.workers | "200" | idle | busy | queued] */
    int frame = 0, more = 1;
    while (more) {
      char buf[64];
      int n = zmq_recv(sock, buf, sizeof buf - 1, 0);
      if (n < 0)
        return -1;
      buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = '\0';
      if (frame == frame_wanted)
        total += atol(buf);
      frame++;
      size_t sz = sizeof more;
      zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    }
  }
  return total;
}

/* Waits until mmi.workers for `name` reports at least `want` in `frame`
 * (4 idle, 6 queued), at most max_ms.  One request per poll, so that the
 * wait adds almost nothing to a broker under callgrind.  0, or -1. */
static int wait_mmi(const char *ep, const char *name, int frame, long want,
                    int max_ms) {
  void *ctx = zmq_ctx_new();
  void *sock = zmq_socket(ctx, ZMQ_DEALER);
  int linger = 0, timeout = 60000, rc = -1;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  uint64_t deadline = bench_now_ns() + (uint64_t)max_ms * 1000000ull;
  if (zmq_connect(sock, ep) == 0) {
    while (bench_now_ns() < deadline) {
      long n = mmi_workers_figure(sock, name, frame);
      if (n < 0)
        break;
      if (n >= want) {
        rc = 0;
        break;
      }
      bench_sleep_ms(500);
    }
  }
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return rc;
}

/* Waits until mdp-broker has registered `idle` idle workers (at most
 * max_ms).  0, or -1. */
static int wait_registered(const char *ep, int idle, int services,
                           int max_ms) {
  void *ctx = zmq_ctx_new();
  void *sock = zmq_socket(ctx, ZMQ_DEALER);
  int linger = 0, timeout = 5000, rc = -1;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  uint64_t deadline = bench_now_ns() + (uint64_t)max_ms * 1000000ull;
  if (zmq_connect(sock, ep) == 0) {
    while (bench_now_ns() < deadline) {
      long n = mmi_idle_workers(sock, services);
      if (n < 0)
        break;
      if (n >= idle) {
        rc = 0;
        break;
      }
      bench_sleep_ms(200);
    }
  }
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return rc;
}

/* Starts `idle` idle workers over `services` services against session
 * `s`, in processes of at most 2,500 sockets each (every socket costs that
 * process a TCP fd and a mailbox eventfd), and waits until they are all
 * there: registered, as mdp-broker's MMI says, or, for the baseline,
 * which keeps nothing per worker, its RSS settled (every connection
 * accepted).  0 or -1; the processes are in procs[0..*nprocs) either way. */
static int start_fleet(const bench_env_t *env, const run_cfg_t *c,
                       session_t *s, int idle, int services,
                       bench_proc_t *procs, int max_procs, int *nprocs) {
  enum { PER_PROC = 2500 };
  int rc = 0;
  *nprocs = 0;
  for (int off = 0; off < idle && *nprocs < max_procs; off += PER_PROC) {
    int n = idle - off < PER_PROC ? idle - off : PER_PROC;
    if (spawn_idle(env, s->ep, n, services, off, &procs[*nprocs]) < 0) {
      rc = -1;
      break;
    }
    (*nprocs)++;
  }
  for (int i = 0; rc == 0 && i < *nprocs; i++) {
    char line[32];
    if (bench_read_line(&procs[i], line, sizeof line, 60000) < 0) {
      fprintf(stderr, "mdp-bench: idle workers did not start\n");
      rc = -1;
    }
  }
  if (rc == 0 && !c->baseline &&
      wait_registered(s->ep, idle, services, 120000) < 0) {
    fprintf(stderr, "mdp-bench: the idle workers did not all register\n");
    rc = -1;
  }
  if (rc == 0 && c->baseline)
    wait_rss_settle(s->broker.pid, 1000, 10000);
  return rc;
}

int bench_scale(const bench_env_t *env, const run_cfg_t *c, int idle,
                int services, int idle_ms, scale_res_t *out) {
  memset(out, 0, sizeof *out);
  session_t s;
  if (session_start(env, c, &s) < 0)
    return -1;
  int rc = 0;
  int reps = c->reps > 0 ? c->reps : 1;
  double *tp = calloc((size_t)reps, sizeof *tp);
  run_res_t r;
  for (int i = 0; i < reps && rc == 0; i++) {
    rc = measure(env, c, &s, &r);
    tp[i] = r.rt_per_s;
  }
  out->rt_without = bench_median(tp, (size_t)reps);
  long rss0 = bench_proc_rss_kib(s.broker.pid);
  enum { MAX_PROCS = 16 };
  bench_proc_t procs[MAX_PROCS];
  int nprocs = 0;
  if (rc == 0)
    rc = start_fleet(env, c, &s, idle, services, procs, MAX_PROCS, &nprocs);
  if (rc == 0) {
    long rss1 = bench_proc_rss_kib(s.broker.pid);
    out->rss_before_kib = rss0;
    out->rss_after_kib = rss1;
    out->bytes_per_idle = idle ? (double)(rss1 - rss0) * 1024.0 / idle : 0;
    for (int i = 0; i < reps && rc == 0; i++) {
      rc = measure(env, c, &s, &r);
      tp[i] = r.rt_per_s;
    }
    out->rt_with = bench_median(tp, (size_t)reps);
  }
  if (rc == 0) {
    /* The broker with every worker idle: only heartbeats both ways. */
    double c0 = bench_proc_cpu(s.broker.pid);
    uint64_t t0 = bench_now_ns();
    bench_sleep_ms((unsigned)idle_ms);
    double c1 = bench_proc_cpu(s.broker.pid);
    double wall = (double)(bench_now_ns() - t0) / 1e9;
    out->idle_cpu_pct = 100.0 * (c1 - c0) / wall;
  }
  for (int i = 0; i < nprocs; i++)
    bench_stop(&procs[i], SIGTERM, 10000);
  session_stop(&s);
  free(tp);
  out->ok = rc == 0;
  return rc;
}

int bench_scale_ab(const bench_env_t *env, const run_cfg_t *a,
                   const run_cfg_t *b, int idle, int services, int rounds,
                   scale_ab_res_t *out) {
  memset(out, 0, sizeof *out);
  if (rounds > BENCH_AB_MAX_ROUNDS)
    rounds = BENCH_AB_MAX_ROUNDS;
  enum { MAX_PROCS = 16 };
  const run_cfg_t *cfg[2] = {a, b};
  session_t s[2];
  bench_proc_t procs[2][MAX_PROCS];
  int nprocs[2] = {0, 0}, started[2] = {0, 0};
  int rc = 0;
  for (int k = 0; k < 2 && rc == 0; k++) {
    rc = session_start(env, cfg[k], &s[k]);
    started[k] = rc == 0;
    if (rc == 0)
      rc = start_fleet(env, cfg[k], &s[k], idle, services, procs[k],
                       MAX_PROCS, &nprocs[k]);
  }
  /* Pairs of phases, the order alternating: a machine that slows down or
   * speeds up during a round affects both members of the next one the
   * other way round. */
  run_res_t r;
  for (int i = 0; i < rounds && rc == 0; i++) {
    for (int j = 0; j < 2 && rc == 0; j++) {
      int k = (i % 2 == 0) ? j : 1 - j;
      rc = measure(env, cfg[k], &s[k], &r);
      if (rc == 0)
        (k == 0 ? out->rt_a : out->rt_b)[i] = r.rt_per_s;
    }
    if (rc == 0)
      out->rounds = i + 1;
  }
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < nprocs[k]; i++)
      bench_stop(&procs[k][i], SIGTERM, 10000);
    if (started[k])
      session_stop(&s[k]);
  }
  out->ok = rc == 0;
  return rc;
}

/* ---- (h): scaling curves ------------------------------------------------ */

/* Heartbeats off (an hour) and no queue bounds, so that the population
 * costs nothing per unit of time and every queued request stays: what is
 * left is its effect on the busy load's cost per round trip. */
static const char *const curve_broker_args[] = {
    "--heartbeat-interval", "3600", "--request-expiry", "3600",
    "--max-queue", "0", "--max-queue-per-client", "0",
    "--max-queued-total", "0", "--max-queued-bytes", "0",
    "--max-services", "0", "--max-workers-per-service", "0", NULL};

enum { POP_PER_PROC = 2500, POP_MAX_PROCS = 16 };

/* Adds the population to a running session and waits until the broker has
 * taken all of it.  `cheap`: under callgrind, one MMI request per poll.
 * 0, or -1; the processes are left in procs[0..*nprocs). */
static int add_population(const bench_env_t *env, session_t *s,
                          curve_kind_t kind, int n, int cheap,
                          bench_proc_t *procs, int *nprocs) {
  *nprocs = 0;
  if (n <= 0)
    return 0;
  int rc = 0;
  if (kind == CURVE_QUEUED) {
    int socks = n < 100 ? n : 100;
    if (spawn_pop(env, s->ep, "parked", socks, 1, 0, 0, n, &procs[0]) < 0)
      return -1;
    *nprocs = 1;
  } else {
    const char *what = kind == CURVE_CLIENTS ? "client" : "worker";
    int services = kind == CURVE_SERVICES ? n : 1;
    for (int off = 0; off < n && *nprocs < POP_MAX_PROCS;
         off += POP_PER_PROC) {
      int k = n - off < POP_PER_PROC ? n - off : POP_PER_PROC;
      if (spawn_pop(env, s->ep, what, k, services, off, 0, 0,
                    &procs[*nprocs]) < 0)
        return -1;
      (*nprocs)++;
    }
  }
  int wait_ms = s->slow ? 600000 : 120000;
  for (int i = 0; rc == 0 && i < *nprocs; i++) {
    char line[32];
    if (bench_read_line(&procs[i], line, sizeof line, wait_ms) < 0) {
      fprintf(stderr, "mdp-bench: the population did not start\n");
      rc = -1;
    }
  }
  if (rc == 0 && kind == CURVE_QUEUED)
    rc = wait_mmi(s->ep, BENCH_PARKED, 6, n, wait_ms);
  else if (rc == 0 && kind == CURVE_WORKERS)
    rc = wait_mmi(s->ep, "idle-0", 4, n, wait_ms);
  else if (rc == 0 && kind == CURVE_SERVICES) {
    /* Every service asked, so that no READY is still on its way when the
     * phase starts (under callgrind the asking is not counted: the counters
     * are zeroed after it).  First the last service of each process's
     * range, one request per poll, then all of them. */
    for (int off = 0; rc == 0 && off < n && cheap; off += POP_PER_PROC) {
      int last = (off + POP_PER_PROC < n ? off + POP_PER_PROC : n) - 1;
      char name[32];
      snprintf(name, sizeof name, "idle-%d", last);
      rc = wait_mmi(s->ep, name, 4, 1, wait_ms);
    }
    if (rc == 0)
      rc = wait_registered(s->ep, n, n, wait_ms);
  }
  if (rc < 0)
    fprintf(stderr, "mdp-bench: the broker did not take the population\n");
  return rc;
}

/* callgrind_control ACTION on the broker (valgrind's gdbserver reaches it
 * even while it waits in epoll).  0, or -1. */
static int cg_control(const bench_env_t *env, pid_t pid, const char *action) {
  char ctl[PATH_MAX];
  snprintf(ctl, sizeof ctl, "%s", env->valgrind);
  char *slash = strrchr(ctl, '/');
  if (slash == NULL)
    return -1;
  snprintf(slash + 1, sizeof ctl - (size_t)(slash + 1 - ctl),
           "callgrind_control");
  argv_t a = {.n = 0};
  av_add(&a, "%s", ctl);
  av_add(&a, "%s", action);
  av_add(&a, "%d", (int)pid);
  bench_proc_t p = {.pid = -1, .in_fd = -1, .out_fd = -1};
  if (bench_spawn(&p, a.v, 1, NULL) < 0)
    return -1;
  char line[256];
  int ok = 0;
  /* "PID N: ...", then "  OK." */
  while (bench_read_line(&p, line, sizeof line, 60000) == 0)
    if (strstr(line, "OK"))
      ok = 1;
  int status = bench_stop(&p, SIGTERM, 5000);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int curve_session(const bench_env_t *env, const run_cfg_t *c0,
                         curve_kind_t kind, int n, int callgrind, long count,
                         curve_res_t *out, double *ir, uint64_t *done) {
  run_cfg_t c = *c0;
  c.broker_args = curve_broker_args;
  c.callgrind = callgrind;
  c.count = callgrind ? count : 0;
  c.duration_ms = callgrind ? 0 : c0->duration_ms;
  session_t s;
  if (session_start(env, &c, &s) < 0)
    return -1;
  long rss0 = bench_proc_rss_kib(s.broker.pid);
  bench_proc_t procs[POP_MAX_PROCS];
  int nprocs = 0;
  int rc = add_population(env, &s, kind, n, callgrind, procs, &nprocs);
  run_res_t r;
  memset(&r, 0, sizeof r);
  if (rc == 0) {
    long rss1 = bench_proc_rss_kib(s.broker.pid);
    /* Under callgrind, the counts cover the measured phase only: zeroed
     * before it, dumped after it (to cg_file.1). */
    if (callgrind && cg_control(env, s.broker.pid, "--zero") < 0)
      rc = -1;
    if (rc == 0)
      rc = measure(env, &c, &s, &r);
    if (rc == 0 && callgrind &&
        cg_control(env, s.broker.pid, "--dump=phase") < 0)
      rc = -1;
    if (!callgrind) {
      out->rss_before_kib = rss0;
      out->rss_after_kib = rss1;
      out->rt_per_s = r.rt_per_s;
      out->cpu_us_rt = r.count ? r.cpu_broker * 1e6 / (double)r.count : 0;
    }
  }
  for (int i = 0; i < nprocs; i++)
    bench_stop(&procs[i], SIGTERM, 10000);
  session_stop(&s);
  if (callgrind) {
    char dump[300];
    snprintf(dump, sizeof dump, "%s.1", s.cg_file);
    *ir = parse_callgrind(dump);
    *done = r.count;
    /* MDP_BENCH_KEEP_CG=DIR keeps each phase's profile for
     * callgrind_annotate, named after the population. */
    const char *keep = getenv("MDP_BENCH_KEEP_CG");
    char kept[PATH_MAX];
    snprintf(kept, sizeof kept, "%s/curve-%d-%d.cg", keep ? keep : ".",
             (int)kind, n);
    if (keep == NULL || rename(dump, kept) != 0)
      unlink(dump);
    unlink(s.cg_file);
    if (*ir < 0)
      rc = -1;
  }
  return rc;
}

int bench_curve(const bench_env_t *env, const run_cfg_t *c, curve_kind_t kind,
                int n, long n1, long n2, curve_res_t *out) {
  memset(out, 0, sizeof *out);
  out->ir_rt = -1;
  double ir1 = -1, ir2 = -1;
  uint64_t d1 = 0, d2 = 0;
  int rc = curve_session(env, c, kind, n, 0, 0, out, NULL, NULL);
  (void)n1; /* one run: the dump covers the phase alone */
  (void)ir1;
  (void)d1;
  if (rc == 0 && env->valgrind) {
    rc = curve_session(env, c, kind, n, 1, n2, out, &ir2, &d2);
    if (rc == 0 && d2 > 0)
      out->ir_rt = ir2 / (double)d2;
  }
  out->ok = rc == 0;
  return rc;
}

/* ---- (i): instructions per heartbeat handled ------------------------------
 * The broker (or the baseline answering each HEARTBEAT) under callgrind,
 * with `idle` idle workers heartbeating and the busy load silent; the
 * counters cover `seconds` of only heartbeats.  The rate is low enough
 * (idle * 2 / 2.5 s handled) for valgrind to keep up. */
int bench_hb_cost(const bench_env_t *env, const run_cfg_t *c0, int idle,
                  int services, int seconds, double *ir_per_hb) {
  *ir_per_hb = -1;
  run_cfg_t c = *c0;
  c.callgrind = 1;
  session_t s;
  if (session_start(env, &c, &s) < 0)
    return -1;
  bench_proc_t procs[POP_MAX_PROCS];
  int nprocs = 0, rc = 0;
  for (int off = 0; off < idle && nprocs < POP_MAX_PROCS && rc == 0;
       off += POP_PER_PROC) {
    int k = idle - off < POP_PER_PROC ? idle - off : POP_PER_PROC;
    if (spawn_idle(env, s.ep, k, services, off, &procs[nprocs]) < 0)
      rc = -1;
    else
      nprocs++;
  }
  for (int i = 0; rc == 0 && i < nprocs; i++) {
    char line[32];
    if (bench_read_line(&procs[i], line, sizeof line, 300000) < 0)
      rc = -1;
  }
  if (rc == 0 && !c.baseline)
    rc = wait_registered(s.ep, idle, services, 300000);
  if (rc == 0 && c.baseline)
    wait_rss_settle(s.broker.pid, 3000, 60000);
  /* A full interval first, so that every worker's heartbeat timer runs. */
  bench_sleep_ms(2 * BENCH_HEARTBEAT_MS);
  uint64_t t0 = 0, t1 = 0;
  if (rc == 0 && cg_control(env, s.broker.pid, "--zero") < 0)
    rc = -1;
  if (rc == 0) {
    t0 = bench_now_ns();
    bench_sleep_ms((unsigned)seconds * 1000u);
    if (cg_control(env, s.broker.pid, "--dump=heartbeats") < 0)
      rc = -1;
    t1 = bench_now_ns();
  }
  for (int i = 0; i < nprocs; i++)
    bench_stop(&procs[i], SIGTERM, 10000);
  session_stop(&s);
  char dump[300];
  snprintf(dump, sizeof dump, "%s.1", s.cg_file);
  double ir = parse_callgrind(dump);
  unlink(dump);
  unlink(s.cg_file);
  if (rc == 0 && ir > 0) {
    /* Handled: one received and one sent per worker per interval. */
    double secs = (double)(t1 - t0) / 1e9;
    double handled = 2.0 * idle * secs * 1000.0 / BENCH_HEARTBEAT_MS;
    *ir_per_hb = ir / handled;
  }
  return rc == 0 && ir > 0 ? 0 : -1;
}
