/* mdp-bench: libmdp's broker against a raw-libzmq baseline, in one run.
 *
 * Scenarios (docs/performance.md has the figures and how to read them):
 *   a  16-byte bodies, 1 client x 1 worker, one request in flight (latency)
 *   b  16-byte bodies, 8 clients x 8 workers (throughput)
 *   c  1 MiB bodies, 4 clients x 4 workers (copying costs)
 *   d  the library's mdp_client_t (1,000 requests in flight from one object; --lib-inflight)
 *      and mdp_worker_t x 8, against raw sockets, both via mdp-broker
 *   e  10,000 idle workers over 1,000 services next to one busy service;
 *      the broker's CPU while they only heartbeat, per heartbeat handled,
 *      against the baseline and the baseline answering each HEARTBEAT
 *      (hb_echo=1); RSS per idle worker
 *   f  10 PARTIALs and a FINAL per request (streaming), 8 x 8
 *   g  large bodies (--bodies, default 64 KiB, 1 MiB, 16 MiB), 4 x 4: broker
 *      CPU and page faults per round trip and RSS, for the baseline with
 *      glibc's default thresholds, the baseline with them raised
 *      (BENCH_GLIBC_TUNABLES: the reference), mdp-broker as it starts
 *      (mdp_malloc_tune) and mdp-broker --malloc-keep 0
 *   h  scaling curves: the (b) load's cost per round trip (instructions
 *      from callgrind, CPU) next to 1/100/10,000 services, 1/100/10,000
 *      idle workers, 1/1,000/10,000 connected clients and 0/10,000/100,000
 *      queued requests; RSS per unit of each (--curve-max caps the sizes)
 *   i  instructions per heartbeat handled, mdp-broker against the baseline
 *      answering each HEARTBEAT, with --hb-idle idle workers (default 500,
 *      a rate valgrind keeps up with), 3 runs each, interleaved
 * Cost per round trip (--cost): broker system calls and task-clock
 * (perf stat -e raw_syscalls:sys_enter,task-clock), page faults (/proc) and
 * instructions (valgrind --tool=callgrind, fixed workloads N1 and N2,
 * difference); (c) also runs the baseline with raised glibc thresholds.
 *
 * Every load loop is bounded in count and time; loopback only.
 */
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "mdp-bench.h"

static const char usage_text[] =
    "Usage: mdp-bench [OPTION]...\n"
    "Benchmark mdp-broker against a minimal raw-libzmq forwarder (the\n"
    "baseline), with client load, worker load and broker as separate\n"
    "processes over tcp://127.0.0.1 and ipc://.\n"
    "\n"
    "  -s, --scenarios LIST   scenarios to run, from abcdefghij (default\n"
    "                         abcdef; g: large bodies, page faults;\n"
    "                         h: scaling curves; i: instructions per\n"
    "                         heartbeat; j: (e) side by side, -r pairs\n"
    "                         of -d phases alternated)\n"
    "  -t, --transports LIST  tcp,ipc (default both; (e) runs on tcp)\n"
    "  -r, --reps N           interleaved repetitions per figure (default 5)\n"
    "  -d, --duration S       seconds per measured phase (default 2)\n"
    "      --cost             also measure cost per round trip: perf stat\n"
    "                         (syscalls, task-clock) and callgrind\n"
    "                         (instructions), scenarios a b c f\n"
    "      --no-callgrind     with --cost: skip the callgrind runs\n"
    "      --bodies LIST      body sizes in bytes for (g), comma-separated\n"
    "                         (default 65536,1048576,16777216)\n"
    "      --curve-max N      (h): largest population size run (default\n"
    "                         100000)\n"
    "      --curves LIST      (h): which curves, from swcq (services,\n"
    "                         idle workers, clients, queued; default all)\n"
    "      --hb-idle N        (i): idle workers (default 500)\n"
    "      --ab-control       (j): the answering baseline on both sides,\n"
    "                         for the method's own spread\n"
    "      --ab-swap          (j): the answering baseline's session started\n"
    "                         and measured first (mdp-broker's otherwise)\n"
    "      --lib-inflight N   requests in flight on the one mdp_client_t of\n"
    "                         (d) (default 1000)\n"
    "      --idle N           idle workers in (e) (default 10000)\n"
    "      --idle-services N  services they spread over (default 1000)\n"
    "      --idle-seconds S   idle CPU measurement (default 10)\n"
    "      --smoke            every scenario for about a second, no cost\n"
    "                         runs; exit 0 if everything ran\n"
    "      --json             machine-readable output on stdout\n"
    "      --broker PATH      mdp-broker to run (default: next to mdp-bench)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Progress goes to stderr; the results table (or JSON) to stdout.\n";

/* ---- results ------------------------------------------------------------ */

typedef struct {
  char scenario[4];
  char transport[4];
  const char *impl; /* baseline, mdp-broker, raw, lib */
  int reps, ok;
  double rt, p50, p99, p999;       /* medians of the reps */
  double cpu_b, cpu_w, cpu_c;      /* seconds per phase, medians */
  double cpu_b_rt;                 /* broker CPU us per round trip */
  double rss_mib;
  double ratio_rt, ratio_p50;      /* against the row's reference; 0: none */
} row_t;

typedef struct {
  char scenario[4];
  char transport[4];
  const char *impl;
  double syscalls_rt, task_us_rt, ir_rt; /* -1: not measured */
  double faults_rt;                      /* -1: not measured */
  double r_sys, r_task, r_ir, r_faults;  /* against the reference */
} cost_t;

/* (g): one body size on one transport, four implementations. */
enum { BIG_BASE, BIG_BASE_TUN, BIG_MDP, BIG_MDP_KEEP0, BIG_IMPLS };
static const char *const big_names[BIG_IMPLS] = {
    "baseline", "baseline+tun", "mdp-broker", "mdp --malloc-keep 0"};
typedef struct {
  size_t body;
  char transport[4];
  int reps[BIG_IMPLS];
  double rt[BIG_IMPLS], cpu_us_rt[BIG_IMPLS], faults_rt[BIG_IMPLS];
  double rss_mib[BIG_IMPLS];
} big_t;
#define MAX_BIG 16

typedef struct {
  curve_kind_t kind;
  int n;
  curve_res_t r;
} curve_pt_t;
#define MAX_CURVE 16
static curve_pt_t curve_pts[MAX_CURVE];
static int n_curve;
static double hb_ir[2][8]; /* (i): mdp-broker, baseline+echo */
static int hb_runs;
static const char *const curve_names[] = {"services", "idle workers",
                                          "clients", "queued requests"};
static big_t bigs[MAX_BIG];
static int n_bigs;

#define MAX_ROWS 64
static row_t rows[MAX_ROWS];
static int n_rows;
static cost_t costs[MAX_ROWS];
static int n_costs;
static scale_res_t scale_mdp, scale_base, scale_echo;
static int have_scale;
static scale_ab_res_t scale_ab; /* (j) */
static int have_scale_ab;
static int failures;

typedef struct {
  int reps;
  int duration_ms;
  int smoke, json, cost, callgrind;
  int idle, idle_services, idle_ms;
  int lib_inflight;
  const char *bodies; /* (g) */
  int curve_max;      /* (h) */
  const char *curves; /* (h): which curves, from "swcq" */
  int hb_idle;        /* (i) */
  int ab_control;     /* (j): both sides the answering baseline */
  int ab_swap;        /* (j): the answering baseline's side started first */
} opts_t;

static row_t *summarise(const char *sc, const char *tr, const char *impl,
                        run_res_t *r, int n) {
  row_t *row = &rows[n_rows < MAX_ROWS ? n_rows++ : MAX_ROWS - 1];
  memset(row, 0, sizeof *row);
  snprintf(row->scenario, sizeof row->scenario, "%s", sc);
  snprintf(row->transport, sizeof row->transport, "%s", tr);
  row->impl = impl;
  double v[7][64];
  int k = 0;
  row->ok = 1;
  for (int i = 0; i < n && k < 64; i++) {
    if (!r[i].ok) {
      row->ok = 0;
      continue;
    }
    v[0][k] = r[i].rt_per_s;
    v[1][k] = r[i].p50_us;
    v[2][k] = r[i].p99_us;
    v[3][k] = r[i].p999_us;
    v[4][k] = r[i].cpu_broker;
    v[5][k] = r[i].cpu_workers;
    v[6][k] = r[i].cpu_client;
    row->rss_mib = (double)r[i].rss_kib / 1024.0;
    k++;
  }
  row->reps = k;
  if (k == 0)
    return row;
  row->rt = bench_median(v[0], (size_t)k);
  row->p50 = bench_median(v[1], (size_t)k);
  row->p99 = bench_median(v[2], (size_t)k);
  row->p999 = bench_median(v[3], (size_t)k);
  row->cpu_b = bench_median(v[4], (size_t)k);
  row->cpu_w = bench_median(v[5], (size_t)k);
  row->cpu_c = bench_median(v[6], (size_t)k);
  /* Broker CPU per round trip: per-phase CPU over per-phase count. */
  double per[64];
  for (int i = 0, j = 0; i < n && j < 64; i++)
    if (r[i].ok && r[i].count)
      per[j++] = r[i].cpu_broker * 1e6 / (double)r[i].count, k = j;
  row->cpu_b_rt = bench_median(per, (size_t)k);
  return row;
}

static void progress(const opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void progress(const opts_t *o, const char *fmt, ...) {
  (void)o;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mdp-bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* Interleaved repetitions of two configurations (A is the reference). */
static void compare(const bench_env_t *env, const opts_t *o, const char *sc,
                    const char *tr, run_cfg_t *a, const char *a_name,
                    run_cfg_t *b, const char *b_name) {
  run_res_t ra[64], rb[64];
  int reps = o->reps < 64 ? o->reps : 64;
  for (int i = 0; i < reps; i++) {
    run_cfg_t *first = i % 2 ? b : a, *second = i % 2 ? a : b;
    run_res_t *rf = i % 2 ? &rb[i] : &ra[i], *rs = i % 2 ? &ra[i] : &rb[i];
    if (bench_run(env, first, rf) < 0)
      failures++;
    if (bench_run(env, second, rs) < 0)
      failures++;
    progress(o, "(%s) %s rep %d: %s %.0f rt/s p50 %.0f us | %s %.0f rt/s "
             "p50 %.0f us", sc, tr, i + 1, a_name, ra[i].rt_per_s,
             ra[i].p50_us, b_name, rb[i].rt_per_s, rb[i].p50_us);
  }
  row_t *ref = summarise(sc, tr, a_name, ra, reps);
  row_t *row = summarise(sc, tr, b_name, rb, reps);
  if (ref->rt > 0)
    row->ratio_rt = row->rt / ref->rt;
  if (ref->p50 > 0)
    row->ratio_p50 = row->p50 / ref->p50;
}

static void set_load(run_cfg_t *c, char sc, const opts_t *o) {
  memset(c, 0, sizeof *c);
  c->workers = c->clients = c->inflight = 1;
  c->body = 16;
  c->warmup = 200;
  c->duration_ms = o->duration_ms;
  switch (sc) {
  case 'b':
  case 'e':
    c->workers = c->clients = 8;
    break;
  case 'c':
    c->workers = c->clients = 4;
    c->body = 1 << 20;
    c->warmup = 20;
    break;
  case 'd':
    c->workers = 8;
    c->clients = 64;
    break;
  case 'f':
    c->workers = c->clients = 8;
    c->partials = 10;
    break;
  }
}

static void run_scenario(const bench_env_t *env, const opts_t *o, char sc,
                         const char *tr) {
  run_cfg_t a, b;
  char name[2] = {sc, 0};
  set_load(&a, sc, o);
  a.transport = tr;
  b = a;
  if (sc == 'd') {
    /* Raw DEALERs (64 sockets, one request each) against the library's
     * client (--lib-inflight in flight, 1,000 by default, over its default
     * pool of 64 sockets) and workers; both through mdp-broker. */
    b.lib_client = b.lib_workers = 1;
    b.clients = 1;
    b.inflight = o->lib_inflight;
    b.max_sockets = 64;
    compare(env, o, name, tr, &a, "raw", &b, "lib");
    return;
  }
  a.baseline = 1;
  compare(env, o, name, tr, &a, "baseline", &b, "mdp-broker");
}

/* (e)'s heartbeats handled per second while idle, by implementation (0
 * mdp-broker, 1 baseline, 2 baseline+echo): the idle workers send one per
 * interval each; mdp-broker and the echoing baseline also send one. */
static double heartbeats_per_s(const opts_t *o, int impl) {
  double in = o->idle * 1000.0 / BENCH_HEARTBEAT_MS;
  return impl == 1 ? in : 2 * in;
}

static double us_per_heartbeat(const opts_t *o, const scale_res_t *s,
                               int impl) {
  double rate = heartbeats_per_s(o, impl);
  return rate > 0 ? s->idle_cpu_pct / 100.0 * 1e6 / rate : 0;
}

static void run_scale(const bench_env_t *env, const opts_t *o) {
  run_cfg_t c;
  set_load(&c, 'e', o);
  c.transport = "tcp";
  c.reps = o->smoke ? 1 : 3;
  progress(o, "(e) mdp-broker: %d idle workers over %d services", o->idle,
           o->idle_services);
  if (bench_scale(env, &c, o->idle, o->idle_services, o->idle_ms,
                  &scale_mdp) < 0)
    failures++;
  c.baseline = 1;
  c.reps = 1;
  progress(o, "(e) baseline: %d idle connections", o->idle);
  if (bench_scale(env, &c, o->idle, o->idle_services, o->idle_ms,
                  &scale_base) < 0)
    failures++;
  /* The protocol's floor in raw libzmq: a HEARTBEAT each way per worker
   * per interval, as mdp-broker handles. */
  c.hb_echo = 1;
  progress(o, "(e) baseline answering each heartbeat: %d idle connections",
           o->idle);
  if (bench_scale(env, &c, o->idle, o->idle_services, o->idle_ms,
                  &scale_echo) < 0)
    failures++;
  have_scale = 1;
}

/* (j): mdp-broker and the baseline answering each heartbeat, both up with
 * a fleet each, their busy phases alternated (bench_scale_ab). */
static void run_scale_ab(const bench_env_t *env, const opts_t *o) {
  run_cfg_t a, b;
  set_load(&a, 'e', o);
  a.transport = "tcp";
  b = a;
  b.baseline = 1;
  b.hb_echo = 1;
  if (o->ab_control)
    a = b; /* A/A: what the alternation itself measures as a difference */
  int rounds = o->smoke ? 1 : o->reps;
  progress(o, "(j) mdp-broker and the baseline answering each heartbeat, "
           "%d idle workers over %d services each, %d pairs of %d ms phases",
           o->idle, o->idle_services, rounds, o->duration_ms);
  /* Swapped, the sides' places (which session starts first, which phase
   * comes first in odd rounds) are exchanged; the columns stay. */
  if (bench_scale_ab(env, o->ab_swap ? &b : &a, o->ab_swap ? &a : &b,
                     o->idle, o->idle_services, rounds, &scale_ab) < 0)
    failures++;
  if (o->ab_swap)
    for (int i = 0; i < scale_ab.rounds; i++) {
      double t = scale_ab.rt_a[i];
      scale_ab.rt_a[i] = scale_ab.rt_b[i];
      scale_ab.rt_b[i] = t;
    }
  have_scale_ab = 1;
}

/* The median of the first n of v (a copy is sorted). */
static double median_of(const double *v, int n) {
  double tmp[BENCH_AB_MAX_ROUNDS];
  for (int i = 0; i < n; i++)
    tmp[i] = v[i];
  return n > 0 ? bench_median(tmp, (size_t)n) : 0;
}

/* (g) large bodies: per round trip, the broker process's CPU (from /proc)
 * and page faults, for four implementations run interleaved (the order
 * rotates each repetition), medians of the repetitions. */
static void run_big(const bench_env_t *env, const opts_t *o, size_t body,
                    const char *tr) {
  if (n_bigs >= MAX_BIG)
    return;
  big_t *g = &bigs[n_bigs++];
  memset(g, 0, sizeof *g);
  g->body = body;
  snprintf(g->transport, sizeof g->transport, "%s", tr);
  run_cfg_t cfg[BIG_IMPLS];
  for (int i = 0; i < BIG_IMPLS; i++) {
    set_load(&cfg[i], 'c', o);
    cfg[i].transport = tr;
    cfg[i].body = body;
    /* Enough round trips before measuring that the heap has grown to what
     * the load holds at its busiest (16 MiB bodies: about 150 MiB, at tens
     * of round trips a second); the faults of that growth are start-up. */
    cfg[i].warmup = body >= (8u << 20) ? 40 : 20;
  }
  cfg[BIG_BASE].baseline = cfg[BIG_BASE_TUN].baseline = 1;
  cfg[BIG_BASE_TUN].tunables = 1;
  static const char *const keep0[] = {"--malloc-keep=0", NULL};
  cfg[BIG_MDP_KEEP0].broker_args = keep0;
  double rt[BIG_IMPLS][64], cpu[BIG_IMPLS][64], flt[BIG_IMPLS][64],
      rss[BIG_IMPLS][64];
  int reps = o->reps < 64 ? o->reps : 64;
  for (int i = 0; i < reps; i++) {
    for (int j = 0; j < BIG_IMPLS; j++) {
      int k = (i + j) % BIG_IMPLS;
      run_res_t r;
      if (bench_run(env, &cfg[k], &r) < 0 || r.count == 0) {
        failures++;
        continue;
      }
      int n = g->reps[k]++;
      rt[k][n] = r.rt_per_s;
      cpu[k][n] = r.cpu_broker * 1e6 / (double)r.count;
      flt[k][n] = r.faults / (double)r.count;
      rss[k][n] = (double)r.rss_kib / 1024.0;
    }
    progress(o, "(g) %zu B %s rep %d: faults/rt %.1f %.1f %.1f %.1f", body,
             tr, i + 1, g->reps[0] ? flt[0][g->reps[0] - 1] : -1,
             g->reps[1] ? flt[1][g->reps[1] - 1] : -1,
             g->reps[2] ? flt[2][g->reps[2] - 1] : -1,
             g->reps[3] ? flt[3][g->reps[3] - 1] : -1);
  }
  for (int k = 0; k < BIG_IMPLS; k++) {
    size_t n = (size_t)g->reps[k];
    g->rt[k] = n ? bench_median(rt[k], n) : 0;
    g->cpu_us_rt[k] = n ? bench_median(cpu[k], n) : 0;
    g->faults_rt[k] = n ? bench_median(flt[k], n) : -1;
    g->rss_mib[k] = n ? bench_median(rss[k], n) : 0;
  }
}

static void run_bigs(const bench_env_t *env, const opts_t *o,
                     const char *transports) {
  for (const char *b = o->bodies; *b;) {
    size_t body = (size_t)strtoull(b, NULL, 10);
    b += strcspn(b, ",");
    if (*b == ',')
      b++;
    if (body == 0)
      continue;
    for (const char *t = transports; *t;) {
      size_t len = strcspn(t, ",");
      char tr[8];
      snprintf(tr, sizeof tr, "%.*s", (int)len, t);
      if (strcmp(tr, "tcp") == 0 || strcmp(tr, "ipc") == 0)
        run_big(env, o, body, tr);
      t += len;
      if (*t == ',')
        t++;
    }
  }
}

/* (h): each curve's points, the (b) load over tcp. */
static void run_curves(const bench_env_t *env, const opts_t *o) {
  static const struct {
    curve_kind_t kind;
    int n[3];
  } curves[] = {{CURVE_SERVICES, {1, 100, 10000}},
                {CURVE_WORKERS, {1, 100, 10000}},
                {CURVE_CLIENTS, {1, 1000, 10000}},
                {CURVE_QUEUED, {0, 10000, 100000}}};
  run_cfg_t c;
  set_load(&c, 'b', o);
  c.transport = "tcp";
  for (size_t i = 0; i < sizeof curves / sizeof *curves; i++)
    for (int j = 0; j < 3 && n_curve < MAX_CURVE; j++) {
      if (curves[i].n[j] > o->curve_max ||
          !strchr(o->curves, "swcq"[curves[i].kind]))
        continue;
      curve_pt_t *pt = &curve_pts[n_curve++];
      pt->kind = curves[i].kind;
      pt->n = curves[i].n[j];
      progress(o, "(h) %s: %d", curve_names[pt->kind], pt->n);
      if (bench_curve(env, &c, pt->kind, pt->n, 1000, 5000, &pt->r) < 0)
        failures++;
      progress(o, "(h) %s %d: %.0f rt/s, %.1f us CPU/rt, %.0f "
               "instructions/rt, RSS %ld -> %ld KiB", curve_names[pt->kind],
               pt->n, pt->r.rt_per_s, pt->r.cpu_us_rt, pt->r.ir_rt,
               pt->r.rss_before_kib, pt->r.rss_after_kib);
    }
}

static void run_hb_cost(const bench_env_t *env, const opts_t *o) {
  run_cfg_t c;
  set_load(&c, 'e', o);
  c.transport = "tcp";
  c.workers = c.clients = 1;
  for (int i = 0; i < 3 && env->valgrind; i++) {
    for (int j = 0; j < 2; j++) {
      int base = (i + j) % 2;
      c.baseline = c.hb_echo = base;
      if (bench_hb_cost(env, &c, o->hb_idle, o->hb_idle / 10 + 1, 10,
                        &hb_ir[base][i]) < 0)
        failures++;
    }
    progress(o, "(i) run %d: instructions per heartbeat handled: mdp-broker "
             "%.0f, baseline answering each %.0f", i + 1, hb_ir[0][i],
             hb_ir[1][i]);
    hb_runs = i + 1;
  }
}

/* Cost per round trip of the broker and of the baseline (tcp). */
static void run_cost(const bench_env_t *env, const opts_t *o, char sc) {
  run_cfg_t c;
  set_load(&c, sc, o);
  c.transport = "tcp";
  long n = sc == 'c' ? 2000 : sc == 'f' ? 5000 : 20000;
  long n1 = sc == 'c' ? 50 : 1000, n2 = sc == 'c' ? 150 : 5000;
  /* Large bodies: also the baseline with glibc's thresholds raised, which
   * is then the reference (its default thresholds make it fault). */
  cost_t cs[3];
  int n_impl = sc == 'c' ? 3 : 2;
  for (int i = 0; i < n_impl; i++) {
    int base = i < n_impl - 1, tun = n_impl == 3 && i == 1;
    cost_t *k = &cs[i];
    char name[2] = {sc, 0};
    memset(k, 0, sizeof *k);
    snprintf(k->scenario, sizeof k->scenario, "%s", name);
    snprintf(k->transport, sizeof k->transport, "tcp");
    k->impl = tun ? "baseline+tun" : base ? "baseline" : "mdp-broker";
    k->syscalls_rt = k->task_us_rt = k->ir_rt = k->faults_rt = -1;
    c.baseline = base;
    c.tunables = tun;
    run_res_t r;
    if (env->perf) {
      c.count = n;
      c.perf = 1;
      if (bench_run(env, &c, &r) == 0 && r.syscalls >= 0) {
        k->syscalls_rt = r.syscalls / (double)r.count;
        k->task_us_rt = r.task_ms * 1e3 / (double)r.count;
        k->faults_rt = r.faults / (double)r.count;
      } else {
        failures++;
      }
      c.perf = 0;
    }
    if (env->valgrind && o->callgrind && sc != 'f' && !tun) {
      run_res_t r1, r2;
      c.callgrind = 1;
      c.count = n1;
      int rc = bench_run(env, &c, &r1);
      c.count = n2;
      rc |= bench_run(env, &c, &r2);
      c.callgrind = 0;
      if (rc == 0 && r2.count > r1.count) {
        k->ir_rt = (r2.ir - r1.ir) / (double)(r2.count - r1.count);
      } else {
        progress(o, "(%s) callgrind runs of %s failed: %.0f/%.0f "
                 "instructions for %llu/%llu round trips", name, k->impl,
                 r1.ir, r2.ir, (unsigned long long)r1.count,
                 (unsigned long long)r2.count);
        failures++;
      }
    }
    progress(o, "(%s) cost %s: %.1f syscalls/rt, %.1f us task-clock/rt, "
             "%.2f page faults/rt, %.0f instructions/rt", name, k->impl,
             k->syscalls_rt, k->task_us_rt, k->faults_rt, k->ir_rt);
  }
  c.tunables = 0;
  /* Ratios against the reference: the tuned baseline where it ran (for
   * faults and task-clock; instructions against the plain baseline, the
   * only one run under callgrind, where glibc's malloc is not used). */
  const cost_t *ref = &cs[n_impl - 2], *plain = &cs[0];
  for (int i = 0; i < n_impl; i++) {
    cost_t *k = &cs[i];
    if (k == ref)
      continue;
    k->r_sys = ref->syscalls_rt > 0 ? k->syscalls_rt / ref->syscalls_rt : 0;
    k->r_task = ref->task_us_rt > 0 ? k->task_us_rt / ref->task_us_rt : 0;
    k->r_faults = ref->faults_rt > 0 ? k->faults_rt / ref->faults_rt : 0;
    k->r_ir = k != plain && plain->ir_rt > 0 ? k->ir_rt / plain->ir_rt : 0;
  }
  for (int i = 0; i < n_impl && n_costs < MAX_ROWS; i++)
    costs[n_costs++] = cs[i];
}

/* ---- output ------------------------------------------------------------- */

static void machine(char *buf, size_t size) {
  struct utsname u;
  char model[128] = "unknown cpu";
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) {
    char *p = strchr(line, ':');
    if (strncmp(line, "model name", 10) == 0 && p) {
      snprintf(model, sizeof model, "%s", p + 2);
      model[strcspn(model, "\n")] = '\0';
      break;
    }
  }
  if (f)
    fclose(f);
  uname(&u);
  snprintf(buf, size, "%s %s, %ld cpus, %s", u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN), model);
}

static void ratio_str(double r, char *buf, size_t n) {
  if (r > 0)
    snprintf(buf, n, "%.2fx", r);
  else
    snprintf(buf, n, "-");
}

static void print_table(const char *date, const char *mach, const opts_t *o) {
  printf("mdp-bench %s on %s\n\n", date, mach);
  if (n_rows)
    printf("%-3s %-4s %-11s %4s %10s %8s %8s %8s %8s %8s %8s %9s %7s %7s\n",
         "sc", "tr", "impl", "reps", "rt/s", "p50us", "p99us", "p999us",
         "brkCPUs", "wrkCPUs", "cliCPUs", "brk us/rt", "RSS MiB", "ratio");
  for (int i = 0; i < n_rows; i++) {
    row_t *r = &rows[i];
    char rt[16], p50[16];
    ratio_str(r->ratio_rt, rt, sizeof rt);
    ratio_str(r->ratio_p50, p50, sizeof p50);
    printf("%-3s %-4s %-11s %4d %10.0f %8.0f %8.0f %8.0f %8.2f %8.2f %8.2f "
           "%9.1f %7.1f %7s%s\n",
           r->scenario, r->transport, r->impl, r->reps, r->rt, r->p50,
           r->p99, r->p999, r->cpu_b, r->cpu_w, r->cpu_c, r->cpu_b_rt,
           r->rss_mib, rt, r->ok ? "" : " (some reps failed)");
    if (r->ratio_p50 > 0)
      printf("%-3s %-4s %-11s %4s %10s %8s   (p50 ratio %s)\n", "", "", "",
             "", "", "", p50);
  }
  if (n_costs) {
    printf("\ncost per round trip (broker process, all threads, tcp)\n");
    printf("(ratios against the baseline above; in (c) against baseline+tun,"
           " the baseline\n with glibc's thresholds raised, except "
           "instructions)\n");
    printf("%-3s %-12s %10s %7s %12s %7s %9s %7s %14s %7s\n", "sc", "impl",
           "syscalls", "ratio", "task-clk us", "ratio", "faults", "ratio",
           "instructions", "ratio");
    for (int i = 0; i < n_costs; i++) {
      cost_t *k = &costs[i];
      char a[16], b[16], c[16], d[16];
      ratio_str(k->r_sys, a, sizeof a);
      ratio_str(k->r_task, b, sizeof b);
      ratio_str(k->r_ir, c, sizeof c);
      ratio_str(k->r_faults, d, sizeof d);
      printf("%-3s %-12s %10.2f %7s %12.2f %7s %9.2f %7s %14.0f %7s\n",
             k->scenario, k->impl, k->syscalls_rt, a, k->task_us_rt, b,
             k->faults_rt, d, k->ir_rt, c);
    }
  }
  if (n_bigs) {
    printf("\n(g) large bodies, 4x4 (broker process, all threads; ratios "
           "against baseline+tun)\n");
    printf("%-9s %-3s %-20s %4s %8s %7s %10s %7s %9s %8s\n", "body", "tr",
           "impl", "reps", "rt/s", "ratio", "CPU us/rt", "ratio",
           "faults/rt", "RSS MiB");
    for (int i = 0; i < n_bigs; i++) {
      const big_t *g = &bigs[i];
      for (int k = 0; k < BIG_IMPLS; k++) {
        char a[16] = "", b[16] = "";
        if (k != BIG_BASE_TUN) {
          ratio_str(g->rt[BIG_BASE_TUN] > 0 ? g->rt[k] / g->rt[BIG_BASE_TUN]
                                            : 0, a, sizeof a);
          ratio_str(g->cpu_us_rt[BIG_BASE_TUN] > 0
                        ? g->cpu_us_rt[k] / g->cpu_us_rt[BIG_BASE_TUN]
                        : 0, b, sizeof b);
        }
        printf("%-9zu %-3s %-20s %4d %8.0f %7s %10.1f %7s %9.2f %8.1f\n",
               g->body, g->transport, big_names[k], g->reps[k], g->rt[k], a,
               g->cpu_us_rt[k], b, g->faults_rt[k], g->rss_mib[k]);
      }
    }
  }
  if (have_scale_ab) {
    const scale_ab_res_t *x = &scale_ab;
    double ratio[BENCH_AB_MAX_ROUNDS];
    int at_least = 0;
    printf("\n(j) busy rt/s (8x8, 16 B, tcp) beside %d idle workers over %d "
           "services each, both up, phases alternated%s%s\n", o->idle,
           o->idle_services,
           o->ab_control ? " (control: the answering baseline both sides)"
           : o->ab_swap  ? " (swapped: the answering baseline's side first)"
                         : "",
           x->ok ? "" : " (failed)");
    printf("%-6s %12s %16s %8s\n", "round",
           o->ab_control ? "baseline+echo" : "mdp-broker", "baseline+echo",
           "ratio");
    for (int i = 0; i < x->rounds; i++) {
      ratio[i] = x->rt_b[i] > 0 ? x->rt_a[i] / x->rt_b[i] : 0;
      at_least += ratio[i] >= 0.9;
      printf("%-6d %12.0f %16.0f %7.2fx\n", i + 1, x->rt_a[i], x->rt_b[i],
             ratio[i]);
    }
    double ma = median_of(x->rt_a, x->rounds);
    double mb = median_of(x->rt_b, x->rounds);
    printf("median %12.0f %16.0f %7.2fx (ratio of medians); median of the "
           "rounds' ratios %.2fx; rounds at or above 0.90x: %d of %d\n",
           ma, mb, mb > 0 ? ma / mb : 0, median_of(ratio, x->rounds),
           at_least, x->rounds);
  }
  if (hb_runs) {
    printf("\n(i) instructions per heartbeat handled (%d idle workers, "
           "all threads)\n", o->hb_idle);
    for (int i = 0; i < hb_runs; i++)
      printf("run %d: mdp-broker %.0f, baseline answering each %.0f: "
             "%.2fx\n", i + 1, hb_ir[0][i], hb_ir[1][i],
             hb_ir[1][i] > 0 ? hb_ir[0][i] / hb_ir[1][i] : 0);
  }
  if (n_curve) {
    printf("\n(h) scaling curves: (b) 8x8 16 B tcp next to a population "
           "(ratios against each curve's first point)\n");
    printf("%-16s %7s %8s %10s %7s %13s %7s %12s\n", "population", "n",
           "rt/s", "CPU us/rt", "ratio", "instr/rt", "ratio",
           "RSS B/unit");
    const curve_pt_t *first = NULL;
    for (int i = 0; i < n_curve; i++) {
      const curve_pt_t *pt = &curve_pts[i];
      if (first == NULL || first->kind != pt->kind)
        first = pt;
      char a[16] = "", b[16] = "";
      if (pt != first) {
        ratio_str(first->r.cpu_us_rt > 0
                      ? pt->r.cpu_us_rt / first->r.cpu_us_rt : 0, a, sizeof a);
        ratio_str(first->r.ir_rt > 0 ? pt->r.ir_rt / first->r.ir_rt : 0, b,
                  sizeof b);
      }
      double per = pt->n > 0 ? (double)(pt->r.rss_after_kib -
                                        pt->r.rss_before_kib) * 1024.0 /
                                   pt->n
                             : 0;
      printf("%-16s %7d %8.0f %10.1f %7s %13.0f %7s %12.0f%s\n",
             curve_names[pt->kind], pt->n, pt->r.rt_per_s, pt->r.cpu_us_rt,
             a, pt->r.ir_rt, b, per, pt->r.ok ? "" : " (failed)");
    }
  }
  if (have_scale) {
    const scale_res_t *sc[3] = {&scale_mdp, &scale_base, &scale_echo};
    printf("\n(e) scale (tcp)           %14s %14s %14s\n", "mdp-broker",
           "baseline", "baseline+echo");
    printf("busy rt/s without idle   ");
    for (int i = 0; i < 3; i++)
      printf(" %14.0f", sc[i]->rt_without);
    printf("\nbusy rt/s with idle      ");
    for (int i = 0; i < 3; i++)
      printf(" %14.0f", sc[i]->rt_with);
    printf("\nwith / without           ");
    for (int i = 0; i < 3; i++)
      printf(" %13.2fx", sc[i]->rt_without > 0
                             ? sc[i]->rt_with / sc[i]->rt_without
                             : 0);
    printf("\nRSS before/after KiB     ");
    for (int i = 0; i < 3; i++)
      printf(" %6ld/%-7ld", sc[i]->rss_before_kib, sc[i]->rss_after_kib);
    printf("\nbytes per idle worker    ");
    for (int i = 0; i < 3; i++)
      printf(" %14.0f", sc[i]->bytes_per_idle);
    printf("\nidle CPU %% of one core   ");
    for (int i = 0; i < 3; i++)
      printf(" %14.2f", sc[i]->idle_cpu_pct);
    printf("\nheartbeats handled/s     ");
    for (int i = 0; i < 3; i++)
      printf(" %14.0f", heartbeats_per_s(o, i));
    printf("\nCPU us per heartbeat     ");
    for (int i = 0; i < 3; i++)
      printf(" %14.2f", us_per_heartbeat(o, sc[i], i));
    double base = us_per_heartbeat(o, &scale_base, 1);
    double echo = us_per_heartbeat(o, &scale_echo, 2);
    double mdp = us_per_heartbeat(o, &scale_mdp, 0);
    printf("\nmdp-broker per heartbeat: %.2fx the baseline's per message "
           "received, %.2fx the echoing baseline's per message handled\n",
           base > 0 ? mdp / base : 0, echo > 0 ? mdp / echo : 0);
  }
}

static void print_json(const char *date, const char *mach, const opts_t *o) {
  printf("{\"date\":\"%s\",\"machine\":\"%s\",\"reps\":%d,"
         "\"duration_ms\":%d,\"smoke\":%s,\"rows\":[",
         date, mach, o->reps, o->duration_ms, o->smoke ? "true" : "false");
  for (int i = 0; i < n_rows; i++) {
    row_t *r = &rows[i];
    printf("%s{\"scenario\":\"%s\",\"transport\":\"%s\",\"impl\":\"%s\","
           "\"reps\":%d,\"ok\":%s,\"rt_per_s\":%.1f,\"p50_us\":%.1f,"
           "\"p99_us\":%.1f,\"p999_us\":%.1f,\"cpu_broker_s\":%.3f,"
           "\"cpu_workers_s\":%.3f,\"cpu_client_s\":%.3f,"
           "\"broker_cpu_us_per_rt\":%.2f,\"broker_rss_mib\":%.2f,"
           "\"ratio_rt\":%.3f,\"ratio_p50\":%.3f}",
           i ? "," : "", r->scenario, r->transport, r->impl, r->reps,
           r->ok ? "true" : "false", r->rt, r->p50, r->p99, r->p999, r->cpu_b,
           r->cpu_w, r->cpu_c, r->cpu_b_rt, r->rss_mib, r->ratio_rt,
           r->ratio_p50);
  }
  printf("],\"cost\":[");
  for (int i = 0; i < n_costs; i++) {
    cost_t *k = &costs[i];
    printf("%s{\"scenario\":\"%s\",\"transport\":\"%s\",\"impl\":\"%s\","
           "\"syscalls_per_rt\":%.3f,\"task_clock_us_per_rt\":%.3f,"
           "\"instructions_per_rt\":%.1f,\"page_faults_per_rt\":%.3f,"
           "\"ratio_syscalls\":%.3f,\"ratio_task_clock\":%.3f,"
           "\"ratio_instructions\":%.3f,\"ratio_page_faults\":%.3f}",
           i ? "," : "", k->scenario, k->transport, k->impl, k->syscalls_rt,
           k->task_us_rt, k->ir_rt, k->faults_rt, k->r_sys, k->r_task,
           k->r_ir, k->r_faults);
  }
  printf("],\"curves\":[");
  for (int i = 0; i < n_curve; i++) {
    const curve_pt_t *pt = &curve_pts[i];
    printf("%s{\"population\":\"%s\",\"n\":%d,\"ok\":%s,"
           "\"rt_per_s\":%.1f,\"cpu_us_per_rt\":%.2f,"
           "\"instructions_per_rt\":%.1f,\"rss_before_kib\":%ld,"
           "\"rss_after_kib\":%ld}", i ? "," : "", curve_names[pt->kind],
           pt->n, pt->r.ok ? "true" : "false", pt->r.rt_per_s,
           pt->r.cpu_us_rt, pt->r.ir_rt, pt->r.rss_before_kib,
           pt->r.rss_after_kib);
  }
  printf("],\"large_bodies\":[");
  for (int i = 0, first = 1; i < n_bigs; i++)
    for (int k = 0; k < BIG_IMPLS; k++, first = 0)
      printf("%s{\"body\":%zu,\"transport\":\"%s\",\"impl\":\"%s\","
             "\"reps\":%d,\"rt_per_s\":%.1f,\"cpu_us_per_rt\":%.2f,"
             "\"page_faults_per_rt\":%.3f,\"rss_mib\":%.2f}",
             first ? "" : ",", bigs[i].body, bigs[i].transport, big_names[k],
             bigs[i].reps[k], bigs[i].rt[k], bigs[i].cpu_us_rt[k],
             bigs[i].faults_rt[k], bigs[i].rss_mib[k]);
  printf("]");
  if (have_scale) {
    const scale_res_t *s[3] = {&scale_mdp, &scale_base, &scale_echo};
    const char *names[3] = {"mdp-broker", "baseline", "baseline_echo"};
    printf(",\"scale\":{\"idle_workers\":%d,\"services\":%d", o->idle,
           o->idle_services);
    for (int i = 0; i < 3; i++)
      printf(",\"%s\":{\"ok\":%s,\"rt_without\":%.1f,\"rt_with\":%.1f,"
             "\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
             "\"bytes_per_idle\":%.1f,\"idle_cpu_pct\":%.3f,"
             "\"heartbeats_per_s\":%.1f,\"us_per_heartbeat\":%.3f}",
             names[i], s[i]->ok ? "true" : "false", s[i]->rt_without,
             s[i]->rt_with, s[i]->rss_before_kib, s[i]->rss_after_kib,
             s[i]->bytes_per_idle, s[i]->idle_cpu_pct,
             heartbeats_per_s(o, i), us_per_heartbeat(o, s[i], i));
    printf("}");
  }
  if (have_scale_ab) {
    printf(",\"scale_ab\":{\"idle_workers\":%d,\"services\":%d,\"ok\":%s,"
           "\"duration_ms\":%d,\"rounds\":[", o->idle, o->idle_services,
           scale_ab.ok ? "true" : "false", o->duration_ms);
    for (int i = 0; i < scale_ab.rounds; i++)
      printf("%s{\"mdp_broker\":%.1f,\"baseline_echo\":%.1f}", i ? "," : "",
             scale_ab.rt_a[i], scale_ab.rt_b[i]);
    printf("]}");
  }
  printf(",\"failures\":%d}\n", failures);
}

/* ---- main --------------------------------------------------------------- */

static char *find_tool(const char *name) {
  const char *path = getenv("PATH");
  if (path == NULL)
    return NULL;
  char *copy = strdup(path), *save = NULL, *found = NULL;
  for (char *d = strtok_r(copy, ":", &save); d && !found;
       d = strtok_r(NULL, ":", &save)) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/%s", d, name);
    if (access(buf, X_OK) == 0)
      found = strdup(buf);
  }
  free(copy);
  return found;
}

int main(int argc, char **argv) {
  /* A child that died early must not kill us with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 3 && strcmp(argv[1], "--role") == 0)
    return bench_role_main(argv[2], argc - 3, argv + 3);
  opts_t o = {.reps = 5, .duration_ms = 2000, .callgrind = 1,
              .idle = 10000, .idle_services = 1000, .idle_ms = 10000,
              .lib_inflight = 1000, .bodies = "65536,1048576,16777216",
              .curve_max = 100000, .curves = "swcq",
              .hb_idle = 500};
  const char *scen = "abcdef", *transports = "tcp,ipc", *broker = NULL;
  static const struct option longopts[] = {
      {"scenarios", required_argument, NULL, 's'},
      {"transports", required_argument, NULL, 't'},
      {"reps", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, 'd'},
      {"cost", no_argument, NULL, 'C'},
      {"no-callgrind", no_argument, NULL, 'G'},
      {"idle", required_argument, NULL, 'I'},
      {"lib-inflight", required_argument, NULL, 'L'},
      {"bodies", required_argument, NULL, 'Z'},
      {"curve-max", required_argument, NULL, 'M'},
      {"curves", required_argument, NULL, 'V'},
      {"hb-idle", required_argument, NULL, 'H'},
      {"ab-control", no_argument, NULL, 'A'},
      {"ab-swap", no_argument, NULL, 'W'},
      {"idle-services", required_argument, NULL, 'S'},
      {"idle-seconds", required_argument, NULL, 'T'},
      {"smoke", no_argument, NULL, 'k'},
      {"json", no_argument, NULL, 'j'},
      {"broker", required_argument, NULL, 'B'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "s:t:r:d:h", longopts, NULL)) != -1) {
    switch (ch) {
    case 's': scen = optarg; break;
    case 't': transports = optarg; break;
    case 'r': o.reps = atoi(optarg); break;
    case 'd': o.duration_ms = (int)(atof(optarg) * 1000); break;
    case 'C': o.cost = 1; break;
    case 'G': o.callgrind = 0; break;
    case 'I': o.idle = atoi(optarg); break;
    case 'L': o.lib_inflight = atoi(optarg); break;
    case 'Z': o.bodies = optarg; break;
    case 'M': o.curve_max = atoi(optarg); break;
    case 'V': o.curves = optarg; break;
    case 'H': o.hb_idle = atoi(optarg); break;
    case 'A': o.ab_control = 1; break;
    case 'W': o.ab_swap = 1; break;
    case 'S': o.idle_services = atoi(optarg); break;
    case 'T': o.idle_ms = (int)(atof(optarg) * 1000); break;
    case 'k': o.smoke = 1; break;
    case 'j': o.json = 1; break;
    case 'B': broker = optarg; break;
    case 'h': fputs(usage_text, stdout); return 0;
    default: fputs(usage_text, stderr); return 2;
    }
  }
  if (optind < argc || o.reps < 1 || o.duration_ms < 100 || o.idle < 0 ||
      o.lib_inflight < 1 ||
      o.idle_services < 1) {
    fputs(usage_text, stderr);
    return 2;
  }
  if (o.smoke) {
    o.reps = 1;
    o.duration_ms = 400;
    o.cost = 0;
    o.idle = o.idle > 200 ? 200 : o.idle;
    o.idle_services = 20;
    o.idle_ms = 500;
  }
  /* This program and mdp-broker, from /proc/self/exe. */
  static char self[PATH_MAX], broker_path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "mdp-bench: cannot find myself\n");
    return 1;
  }
  self[n] = '\0';
  if (broker == NULL) {
    snprintf(broker_path, sizeof broker_path, "%s", self);
    char *slash = strrchr(broker_path, '/');
    snprintf(slash + 1, sizeof broker_path - (size_t)(slash + 1 - broker_path),
             "mdp-broker");
    broker = broker_path;
  }
  if (access(broker, X_OK) != 0) {
    fprintf(stderr, "mdp-bench: no broker at %s (use --broker)\n", broker);
    return 1;
  }
  bench_env_t env = {self, broker, NULL, NULL};
  char *valgrind = NULL, *perf = NULL;
  if (o.cost || ((strchr(scen, 'h') || strchr(scen, 'i')) && o.callgrind)) {
    valgrind = find_tool("valgrind");
    perf = find_tool("perf");
    env.valgrind = valgrind;
    env.perf = perf;
    if (!perf)
      fprintf(stderr, "mdp-bench: perf not found: no syscall figures\n");
    if (!valgrind && o.callgrind)
      fprintf(stderr, "mdp-bench: valgrind not found: no instructions\n");
  }
  bench_raise_nofile();
  char date[64], mach[256];
  time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  machine(mach, sizeof mach);

  for (const char *s = scen; *s; s++) {
    if (!strchr("abcdefghij", *s))
      continue;
    if (*s == 'j') {
      run_scale_ab(&env, &o);
      continue;
    }
    if (*s == 'i') {
      run_hb_cost(&env, &o);
      continue;
    }
    if (*s == 'h') {
      run_curves(&env, &o);
      continue;
    }
    if (*s == 'g') {
      run_bigs(&env, &o, transports);
      continue;
    }
    if (*s == 'e') {
      run_scale(&env, &o);
      continue;
    }
    for (const char *t = transports; *t;) {
      size_t len = strcspn(t, ",");
      char tr[8];
      snprintf(tr, sizeof tr, "%.*s", (int)len, t);
      /* The smoke runs ipc for (a) only: each scenario once, in seconds. */
      if ((strcmp(tr, "tcp") == 0 || strcmp(tr, "ipc") == 0) &&
          !(o.smoke && strcmp(tr, "ipc") == 0 && *s != 'a'))
        run_scenario(&env, &o, *s, tr);
      t += len;
      if (*t == ',')
        t++;
    }
  }
  if (o.cost)
    for (const char *s = scen; *s; s++)
      if (strchr("abcf", *s))
        run_cost(&env, &o, *s);
  if (o.json)
    print_json(date, mach, &o);
  else
    print_table(date, mach, &o);
  free(valgrind);
  free(perf);
  if (failures)
    fprintf(stderr, "mdp-bench: %d run(s) failed\n", failures);
  return failures ? 1 : 0;
}

int bench_role_main(const char *role, int argc, char **argv) {
  bench_args_t a = {argc, argv};
  if (strcmp(role, "baseline") == 0)
    return bench_baseline_main(&a);
  if (strcmp(role, "client") == 0)
    return bench_client_main(&a);
  if (strcmp(role, "libclient") == 0)
    return bench_libclient_main(&a);
  if (strcmp(role, "worker") == 0)
    return bench_worker_main(&a);
  if (strcmp(role, "libworker") == 0)
    return bench_libworker_main(&a);
  if (strcmp(role, "idle") == 0)
    return bench_idle_main(&a);
  fprintf(stderr, "mdp-bench: unknown role %s\n", role);
  return 2;
}
