/* mdp-bench: shared declarations (internal to the benchmark).
 *
 *   mdp-bench.c            options, output (table, --json), main
 *   mdp-bench-scenarios.c  scenarios (a)-(f) and the cost runs: spawns the
 *                          broker (or the baseline), the worker load and the
 *                          client load as separate processes and measures them
 *   mdp-bench-baseline.c   the baseline: a minimal raw-libzmq forwarder
 *   mdp-bench-load.c       the load generators (raw sockets, or the library's
 *                          mdp_client_t / mdp_worker_t), the same code against
 *                          both brokers
 *   mdp-bench-stats.c      clocks, percentiles, medians, /proc readers,
 *                          process spawning
 *
 * Child processes are this same program re-executed with `--role NAME
 * key=value...` (see bench_role_main).
 */
#ifndef MDP_BENCH_H
#define MDP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_SERVICE "echo"
#define BENCH_PARKED "parked" /* (h): a service without workers */

/* ---- key=value arguments of a child role ------------------------------- */
typedef struct {
  int argc;
  char **argv;
} bench_args_t;
const char *bench_arg_str(const bench_args_t *a, const char *key,
                          const char *def);
long long bench_arg_int(const bench_args_t *a, const char *key, long long def);

/* ---- roles (child processes) -------------------------------------------- */
int bench_role_main(const char *role, int argc, char **argv);
int bench_baseline_main(const bench_args_t *a);
int bench_client_main(const bench_args_t *a);    /* raw DEALER clients */
int bench_libclient_main(const bench_args_t *a); /* one mdp_client_t */
int bench_worker_main(const bench_args_t *a);    /* raw DEALER workers */
int bench_libworker_main(const bench_args_t *a); /* mdp_worker_t objects */
int bench_idle_main(const bench_args_t *a);      /* idle, heartbeating workers */

/* The client load reports on stdout, one line each:
 *   "warm"                                  after the warm-up round trips
 * then, for each 'g' on stdin, runs a measured phase and prints
 *   "done <count> <elapsed_ns> <p50_ns> <p99_ns> <p999_ns> <errors>"
 * and ends on any other byte, EOF or 5 minutes of silence.               */

/* ---- stats, clocks and processes --------------------------------------- */
uint64_t bench_now_ns(void);
void bench_sleep_ms(unsigned ms);
/* Sorts `v` and returns the q-quantile (0..1), nearest rank. */
uint64_t bench_quantile(uint64_t *v, size_t n, double q);
double bench_median(double *v, size_t n);

/* Installs a SIGTERM/SIGINT handler that sets *flag (no SA_RESTART). */
void bench_on_term(volatile int *flag);

typedef struct {
  pid_t pid;
  int in_fd;  /* write end of the child's stdin, or -1 */
  int out_fd; /* read end of the child's stdout, or -1 */
} bench_proc_t;
/* posix_spawn()s argv (argv[0] a path); pipes for stdin/stdout if `pipes`.
 * The child's stderr is inherited; its environment is ours, plus
 * `env_extra` ("NAME=value", or NULL).  0 or -1. */
int bench_spawn(bench_proc_t *p, char *const argv[], int pipes,
                const char *env_extra);
/* Reads one line from the child within timeout_ms; 0, or -1 (timeout/EOF). */
int bench_read_line(bench_proc_t *p, char *buf, size_t size, int timeout_ms);
/* SIGTERM (sig) and reap within timeout_ms, then SIGKILL.  Returns the wait
 * status, or -1. */
int bench_stop(bench_proc_t *p, int sig, int timeout_ms);
/* CPU seconds (user + system, all threads) of a live process; -1 if gone. */
double bench_proc_cpu(pid_t pid);
/* Page faults (minor + major, all threads) of a live process; -1 if gone. */
double bench_proc_faults(pid_t pid);
/* VmRSS in KiB; -1 if gone. */
long bench_proc_rss_kib(pid_t pid);
/* Raises RLIMIT_NOFILE to its hard limit. */
void bench_raise_nofile(void);

/* ---- runs (mdp-bench-scenarios.c) --------------------------------------- */
typedef struct {
  const char *self;     /* this program */
  const char *broker;   /* mdp-broker */
  const char *valgrind; /* NULL: no callgrind runs */
  const char *perf;     /* NULL: no perf runs */
} bench_env_t;

typedef struct {
  int baseline;          /* the raw-libzmq forwarder instead of mdp-broker */
  int hb_echo;           /* baseline: answer each worker HEARTBEAT with one */
  int tunables;          /* the broker runs with BENCH_GLIBC_TUNABLES */
  const char *const *broker_args; /* mdp-broker: more arguments (NULL-
                                   * terminated), or NULL */
  const char *transport; /* "tcp" or "ipc" */
  int workers, lib_workers, partials;
  int clients, inflight, lib_client, max_sockets;
  size_t body;
  int warmup;
  long count;      /* round trips per measured phase; 0: duration_ms */
  int duration_ms;
  int reps;        /* measured phases (scale runs) */
  int perf;        /* attach perf stat to the broker while measuring */
  int callgrind;   /* run the broker under callgrind */
} run_cfg_t;

typedef struct {
  int ok;
  uint64_t count, errors;
  double elapsed_s, rt_per_s, p50_us, p99_us, p999_us;
  double cpu_broker, cpu_workers, cpu_client; /* seconds, measured phase */
  long rss_kib;                               /* broker, after the phase */
  double faults;                              /* broker page faults, phase */
  double syscalls, task_ms;                   /* perf; -1 if not measured */
  double ir;                                  /* callgrind total; -1 */
} run_res_t;

/* glibc's trim and mmap thresholds raised, as an operator would set them
 * without mdp_malloc_tune(): the large-body baseline (docs/performance.md). */
#define BENCH_GLIBC_TUNABLES                                                   \
  "GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:"                      \
  "glibc.malloc.mmap_threshold=33554432"

/* The heartbeat interval of the load's workers (and mdp-broker's
 * default): (e)'s idle workers each send one per interval. */
#define BENCH_HEARTBEAT_MS 2500

typedef struct {
  int ok;
  double rt_without, rt_with; /* busy service, medians */
  long rss_before_kib, rss_after_kib;
  double bytes_per_idle;      /* broker RSS growth / idle workers */
  double idle_cpu_pct;        /* broker CPU, % of one core, idle fleet */
} scale_res_t;

/* (h) scaling curves: the busy load's cost per round trip next to a
 * population of one kind. */
typedef enum {
  CURVE_SERVICES, /* n services, one idle worker each */
  CURVE_WORKERS,  /* n idle workers of one other service */
  CURVE_CLIENTS,  /* n connected clients, each served once (mmi.service) */
  CURVE_QUEUED    /* n requests queued for a service without workers */
} curve_kind_t;
typedef struct {
  int ok;
  double rt_per_s, cpu_us_rt; /* plain run */
  long rss_before_kib, rss_after_kib;
  double ir_rt;               /* callgrind: instructions per round trip */
} curve_res_t;
/* c: the busy load.  A plain run (c->duration_ms: rate, CPU, RSS before
 * and after the population), then, with env->valgrind, one run under
 * callgrind of n2 round trips whose counters are zeroed before the measured
 * phase and dumped after it (callgrind_control), so that neither start-up
 * nor the population's arrival is counted (n1 is unused). */
int bench_curve(const bench_env_t *env, const run_cfg_t *c, curve_kind_t kind,
                int n, long n1, long n2, curve_res_t *out);

/* (i): instructions per heartbeat handled (one received and one sent per
 * idle worker per interval), under callgrind over `seconds` of only
 * heartbeats; c->baseline with c->hb_echo for the protocol's floor. */
int bench_hb_cost(const bench_env_t *env, const run_cfg_t *c, int idle,
                  int services, int seconds, double *ir_per_hb);

/* One session with a fresh broker, worker load and client load, and one
 * measured phase.  0, or -1 (the result says what it could). */
int bench_run(const bench_env_t *env, const run_cfg_t *c, run_res_t *r);
/* Scenario (e): busy-service throughput (c->reps phases) without, then with
 * `idle` idle workers over `services` services; RSS growth; the broker's
 * CPU over `idle_ms` with only heartbeats. */
int bench_scale(const bench_env_t *env, const run_cfg_t *c, int idle,
                int services, int idle_ms, scale_res_t *out);

/* Scenario (j): (e)'s comparison made side by side.  Two sessions up at
 * once, `a` and `b` (mdp-broker and the baseline answering each
 * heartbeat), each with its own fleet of `idle` idle workers over
 * `services` services, heartbeating throughout; then `rounds` pairs of
 * short busy phases (a->duration_ms each), the order alternating, so that
 * both see the same machine and the same background (both fleets). */
#define BENCH_AB_MAX_ROUNDS 64
typedef struct {
  int ok;
  int rounds;                          /* pairs measured */
  double rt_a[BENCH_AB_MAX_ROUNDS];    /* busy rt/s of `a`, per round */
  double rt_b[BENCH_AB_MAX_ROUNDS];
} scale_ab_res_t;
int bench_scale_ab(const bench_env_t *env, const run_cfg_t *a,
                   const run_cfg_t *b, int idle, int services, int rounds,
                   scale_ab_res_t *out);

#endif /* MDP_BENCH_H */
