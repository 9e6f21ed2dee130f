/* A broker farm with real processes: tools/mdp-broker x 3, tools/mdp-worker
 * (a worker group) and tools/mdp-request (load mode), over tcp://127.0.0.1.
 * Also the two tools' own behaviour: --echo, COMMAND mode (argv, no shell),
 * error replies, --timeout, SIGTERM mid-request, the load summary and
 * --json.  Figures are printed as "# figure: ..." (docs/farm.md). */
#include "harness.h"
#include "peer.h"
#include "proc.h"

#define NB 3

static void *ctx;

typedef struct {
  char ep[NB][256];
  proc_t broker[NB];
  int up[NB];
} farm_t;

/* mmi.workers for `service` at `ep`: idle, busy, queued; -1s when the
 * broker does not answer within 1 s; 0s for 404. */
static void mmi_workers(const char *ep, const char *service, long out[3]) {
  peer_mmi_workers(ctx, ep, service, 1000, out);
}

/* Waits until `ep` has at least `min` workers (idle + busy) for `service`,
 * and, busy >= 0, exactly `busy` busy ones. */
static int wait_workers(const char *ep, const char *service, long min,
                        long busy, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  long w[3];
  do {
    mmi_workers(ep, service, w);
    if (w[0] >= 0 && w[0] + w[1] >= min && (busy < 0 || w[1] == busy))
      return 1;
    usleep(10000);
  } while (uv_hrtime() < deadline);
  printf("# mmi.workers %s at %s: idle %ld busy %ld\n", service, ep, w[0],
         w[1]);
  return 0;
}

static int broker_start(farm_t *f, int i) {
  const char *argv[] = {build_path("tools/mdp-broker"), "-b", f->ep[i],
                        "--heartbeat-interval", "0.1",
                        "--heartbeat-liveness", "3", "-q", NULL};
  if (proc_spawn(&f->broker[i], argv) < 0)
    return -1;
  f->up[i] = 1;
  /* answers MMI (a 404 is an answer) */
  uint64_t deadline = uv_hrtime() + t_slow(10000) * 1000000ull;
  long w[3] = {-1, -1, -1};
  while (w[0] < 0 && uv_hrtime() < deadline)
    mmi_workers(f->ep[i], "-", w);
  return w[0] < 0 ? -1 : 0;
}

static int farm_open(farm_t *f, int n) {
  memset(f, 0, sizeof *f);
  for (int i = 0; i < n; i++) {
    free_tcp_endpoint(ctx, f->ep[i], sizeof f->ep[i]);
    if (broker_start(f, i) < 0)
      return -1;
  }
  return 0;
}

static void farm_close(farm_t *f) {
  for (int i = 0; i < NB; i++)
    if (f->up[i]) {
      proc_kill(&f->broker[i]);
      proc_cleanup(&f->broker[i]);
      f->up[i] = 0;
    }
}

/* Starts mdp-worker with `args` (NULL-terminated) after "-b EP..." for the
 * first `n` brokers and fast heartbeats. */
static int worker_start(proc_t *p, farm_t *f, int n, const char *const *args) {
  const char *argv[48] = {build_path("tools/mdp-worker"), "-i", "0.1", "-l",
                          "3"};
  int k = 5;
  for (int i = 0; i < n; i++) {
    argv[k++] = "-b";
    argv[k++] = f->ep[i];
  }
  while (*args && k < 47)
    argv[k++] = *args++;
  argv[k] = NULL;
  return proc_spawn(p, argv);
}

/* Runs mdp-request with -b for the first `n` brokers then `args`; its exit
 * code; its stdout stays in p's file. */
static int request_run(proc_t *p, farm_t *f, int n, const char *const *args,
                       uint64_t ms) {
  const char *argv[48] = {build_path("tools/mdp-request")};
  int k = 1;
  for (int i = 0; i < n; i++) {
    argv[k++] = "-b";
    argv[k++] = f->ep[i];
  }
  while (*args && k < 47)
    argv[k++] = *args++;
  argv[k] = NULL;
  if (proc_spawn(p, argv) < 0)
    return -1;
  return ms ? proc_wait(p, ms) : 0;
}

static int worker_stop(proc_t *p) {
  kill(p->pid, SIGTERM);
  return proc_wait(p, 10000);
}

/* "broker EP: N requests" from mdp-worker's stdout. */
static long worker_broker_count(proc_t *p, const char *ep) {
  char pat[300];
  snprintf(pat, sizeof pat, "broker %s: ", ep);
  const char *s = strstr(proc_stdout(p), pat);
  return s ? atol(s + strlen(pat)) : -1;
}

static long worker_max_in_progress(proc_t *p) {
  const char *s = strstr(proc_stdout(p), "max ");
  return s ? atol(s + 4) : -1;
}

/* --- mdp-worker ------------------------------------------------------- */

static void worker_tool_usage(void) {
  proc_t p;
  const char *help[] = {build_path("tools/mdp-worker"), "--help", NULL};
  CHECK(proc_spawn(&p, help) == 0);
  CHECK_EQ(proc_wait(&p, 5000), 0);
  const char *out = proc_stdout(&p);
  CHECK(strstr(out, "--echo") && strstr(out, "--timeout") &&
        strstr(out, "--shell") && strstr(out, "--concurrency") &&
        strstr(out, "--dialect") && strstr(out, "--heartbeat-interval"));
  proc_cleanup(&p);
  const char *bad[][6] = {
      {"--bogus", "--echo", "svc", NULL},
      {"-C", "0", "--echo", "svc", NULL},
      {"-d", "nope", "--echo", "svc", NULL},
      {"svc", NULL},                             /* neither mode */
      {"--echo", "svc", "--", "cat", NULL},       /* both */
      {"--delay", "1", "svc", "--", "cat", NULL}, /* --delay without --echo */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *argv[8] = {build_path("tools/mdp-worker")};
    for (int k = 0; bad[i][k]; k++)
      argv[k + 1] = bad[i][k];
    CHECK(proc_spawn(&p, argv) == 0);
    int rc = proc_wait(&p, 5000);
    if (rc != 2)
      printf("# case %zu: exit %d\n", i, rc);
    CHECK_EQ(rc, 2);
    proc_cleanup(&p);
  }
}

/* Promise: --echo replies with the request's frames; COMMAND gets the
 * frames concatenated on stdin, its stdout is the one-frame reply; no
 * shell is involved unless asked; failures are two-frame error replies. */
static void worker_tool_modes(void) {
  farm_t f;
  CHECK(farm_open(&f, 1) == 0);
  proc_t w[5], r;
  const char *echo[] = {"--echo", "echo", NULL};
  const char *up[] = {"up", "--", "tr", "a-z", "A-Z", NULL};
  const char *ex[] = {"ex", "--", "sh", "-c", "exit 3", NULL};
  const char *slp[] = {"-t", "0.3", "slp", "--", "sleep", "30", NULL};
  /* A shell would expand $HOME; argv mode passes it as is. */
  const char *lit[] = {"lit", "--", "echo", "$HOME", NULL};
  CHECK(worker_start(&w[0], &f, 1, echo) == 0);
  CHECK(worker_start(&w[1], &f, 1, up) == 0);
  CHECK(worker_start(&w[2], &f, 1, ex) == 0);
  CHECK(worker_start(&w[3], &f, 1, slp) == 0);
  CHECK(worker_start(&w[4], &f, 1, lit) == 0);
  const char *svcs[] = {"echo", "up", "ex", "slp", "lit"};
  for (int i = 0; i < 5; i++)
    CHECK(wait_workers(f.ep[0], svcs[i], 1, -1, 5000));

  const char *a1[] = {"echo", "one", "two", NULL};
  CHECK_EQ(request_run(&r, &f, 1, a1, 10000), 0);
  CHECK(strcmp(proc_stdout(&r), "one\ntwo\n") == 0);
  proc_cleanup(&r);
  const char *a2[] = {"up", "hello ", "world", NULL};
  CHECK_EQ(request_run(&r, &f, 1, a2, 10000), 0);
  CHECK(strcmp(proc_stdout(&r), "HELLO WORLD\n") == 0);
  proc_cleanup(&r);
  const char *a3[] = {"-j", "ex", "x", NULL};
  CHECK_EQ(request_run(&r, &f, 1, a3, 10000), 69); /* an error reply: non-zero */
  CHECK(strstr(proc_stdout(&r), "\"frames\":[\"error: exit status 3\",\"\"]"));
  proc_cleanup(&r);
  uint64_t t0 = uv_hrtime();
  const char *a4[] = {"-j", "slp", "x", NULL};
  CHECK_EQ(request_run(&r, &f, 1, a4, 10000), 69);
  double ms = (uv_hrtime() - t0) / 1e6;
  CHECK(strstr(proc_stdout(&r), "error: timed out after 0.3 s"));
  CHECK(ms < 300 + t_slow(5000)); /* not the 30 s of the command */
  proc_cleanup(&r);
  const char *a5[] = {"lit", NULL};
  CHECK_EQ(request_run(&r, &f, 1, a5, 10000), 0);
  CHECK(strcmp(proc_stdout(&r), "$HOME\n\n") == 0);
  proc_cleanup(&r);

  for (int i = 0; i < 5; i++) {
    CHECK_EQ(worker_stop(&w[i]), 0);
    CHECK(strstr(proc_stdout(&w[i]), "1 requests"));
    proc_cleanup(&w[i]);
  }
  farm_close(&f);
}

/* Promise: SIGTERM while a request is in progress: it is finished and
 * answered, then mdp-worker exits 0. */
static void worker_tool_sigterm_finishes(void) {
  farm_t f;
  CHECK(farm_open(&f, 1) == 0);
  proc_t w, r;
  const char *args[] = {"slow", "--", "sh", "-c", "sleep 0.5; cat", NULL};
  CHECK(worker_start(&w, &f, 1, args) == 0);
  CHECK(wait_workers(f.ep[0], "slow", 1, -1, 5000));
  const char *a[] = {"-t", "10", "slow", "payload", NULL};
  CHECK(request_run(&r, &f, 1, a, 0) == 0);
  CHECK(wait_workers(f.ep[0], "slow", 1, 1, 5000)); /* busy now */
  kill(w.pid, SIGTERM);
  CHECK_EQ(proc_wait(&r, 10000), 0);
  CHECK(strcmp(proc_stdout(&r), "payload\n") == 0);
  CHECK_EQ(proc_wait(&w, 10000), 0);
  CHECK(strstr(proc_stdout(&w), "1 requests, 0 errors"));
  proc_cleanup(&w);
  proc_cleanup(&r);
  farm_close(&f);
}


/* Promise: --timeout holds until the reply is sent and kills everything the
 * command started (its process group), not only the direct child.  Before,
 * `sh -c "sleep 6 & echo hi"` was answered after 6 s as a success (the
 * shell had exited, the sleep held the output open), and `--shell` with
 * `sleep 3; echo done` timed out only after 3 s (the shell was killed, not
 * its sleep). */
static void worker_tool_timeout_kills_group(void) {
  farm_t f;
  CHECK(farm_open(&f, 1) == 0);
  char pidfile[64];
  int fd = temp_file(pidfile, sizeof pidfile);
  CHECK(fd >= 0);
  close(fd);
  char bg_cmd[200];
  snprintf(bg_cmd, sizeof bg_cmd, "sleep 6 & echo $! > %s; echo hi", pidfile);
  proc_t w[2], r;
  const char *bg[] = {"-t", "0.3", "bg", "--", "sh", "-c", bg_cmd, NULL};
  const char *sh[] = {"-t", "0.3", "--shell", "sh", "--", "sleep 5; echo done",
                      NULL};
  CHECK(worker_start(&w[0], &f, 1, bg) == 0);
  CHECK(worker_start(&w[1], &f, 1, sh) == 0);
  CHECK(wait_workers(f.ep[0], "bg", 1, -1, 5000));
  CHECK(wait_workers(f.ep[0], "sh", 1, -1, 5000));
  const char *svcs[] = {"bg", "sh"};
  for (int i = 0; i < 2; i++) {
    uint64_t t0 = uv_hrtime();
    const char *a[] = {"-j", svcs[i], "x", NULL};
    request_run(&r, &f, 1, a, 20000);
    double ms = (uv_hrtime() - t0) / 1e6;
    printf("# %s: answered after %.0f ms: %s", svcs[i], ms, proc_stdout(&r));
    CHECK(strstr(proc_stdout(&r), "error: timed out after 0.3 s"));
    CHECK(ms < 4000); /* not the 5 or 6 s of the sleeps */
    proc_cleanup(&r);
  }
  /* The background sleep went with its group. */
  FILE *pf = fopen(pidfile, "r");
  long bgpid = 0;
  CHECK(pf != NULL && fscanf(pf, "%ld", &bgpid) == 1 && bgpid > 0);
  if (pf)
    fclose(pf);
  unlink(pidfile);
  uint64_t deadline = uv_hrtime() + 3000000000ull;
  while (bgpid > 0 && kill((pid_t)bgpid, 0) == 0 && uv_hrtime() < deadline)
    usleep(20000);
  CHECK(bgpid > 0 && kill((pid_t)bgpid, 0) != 0);
  for (int i = 0; i < 2; i++) {
    CHECK_EQ(worker_stop(&w[i]), 0);
    CHECK(strstr(proc_stdout(&w[i]), "1 requests, 1 errors"));
    proc_cleanup(&w[i]);
  }
  farm_close(&f);
}

/* --- mdp-request -n --------------------------------------------------- */

/* Promise: the load mode's summary line, --json, exit codes, and new
 * requests spread over the brokers in turn; a group never has more than C
 * requests in progress. */
static void request_load_summary(void) {
  farm_t f;
  CHECK(farm_open(&f, 2) == 0);
  proc_t w, r;
  const char *args[] = {"-C", "3", "--echo", "--delay", "0.01", "svc", NULL};
  CHECK(worker_start(&w, &f, 2, args) == 0);
  CHECK(wait_workers(f.ep[0], "svc", 2, -1, 5000));
  CHECK(wait_workers(f.ep[1], "svc", 1, -1, 5000));
  const char *a[] = {"-n", "300", "-C", "12", "svc", "x", NULL};
  CHECK_EQ(request_run(&r, &f, 2, a, 30000), 0);
  const char *out = proc_stdout(&r);
  long n = -1, ok = -1, failed = -1;
  double rate = -1, p50 = -1, p99 = -1;
  CHECK(sscanf(out, "%ld requests: %ld ok, %ld failed, %lf/s, p50 %lf ms, p99 "
                    "%lf ms\n", &n, &ok, &failed, &rate, &p50, &p99) == 6);
  CHECK(n == 300 && ok == 300 && failed == 0 && rate > 0 && p50 > 0 &&
        p99 >= p50);
  proc_cleanup(&r);
  const char *j[] = {"-n", "100", "-C", "4", "--json", "svc", "x", NULL};
  CHECK_EQ(request_run(&r, &f, 2, j, 30000), 0);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
           "sys.exit(0 if d[\"requests\"]==100 and d[\"ok\"]==100 and "
           "d[\"failed\"]==0 and d[\"rate\"]>0 and d[\"p99_ms\"]>=d[\"p50_ms\"]"
           " and len(d[\"per_broker\"])==2 and "
           "sum(b[\"finals\"] for b in d[\"per_broker\"])==100 and "
           "all(b[\"sent\"]>=40 for b in d[\"per_broker\"])"
           " else 1)' %s", r.out_path);
  CHECK_EQ(system(cmd), 0);
  proc_cleanup(&r);
  const char *bad[] = {"-n", "2", "--spread", "nope", "svc", NULL};
  CHECK_EQ(request_run(&r, &f, 2, bad, 30000), 2);
  proc_cleanup(&r);
  /* --spread failover: everything to the first broker while it is up. */
  const char *fo[] = {"-n", "20", "-C", "2", "--json", "--spread", "failover",
                      "svc", "x", NULL};
  CHECK_EQ(request_run(&r, &f, 2, fo, 30000), 0);
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
           "p=d[\"per_broker\"]; "
           "sys.exit(0 if p[0][\"sent\"]==20 and p[1][\"sent\"]==0 else 1)'"
           " %s", r.out_path);
  CHECK_EQ(system(cmd), 0);
  proc_cleanup(&r);
  /* No worker for the service: every request fails; exit 69. */
  const char *none[] = {"-n", "4", "-C", "2", "-t", "0.2", "-r", "1",
                        "nosvc", NULL};
  CHECK_EQ(request_run(&r, &f, 2, none, 30000), 69);
  CHECK(strstr(proc_stdout(&r), "4 requests: 0 ok, 4 failed"));
  proc_cleanup(&r);
  CHECK_EQ(worker_stop(&w), 0);
  long c0 = worker_broker_count(&w, f.ep[0]);
  long c1 = worker_broker_count(&w, f.ep[1]);
  long maxp = worker_max_in_progress(&w);
  printf("# requests per broker: %ld %ld; max in progress %ld (C = 3)\n", c0,
         c1, maxp);
  CHECK(c0 + c1 == 420);
  CHECK(c0 >= 100 && c1 >= 100); /* spread in turn: about half each */
  CHECK(maxp >= 2 && maxp <= 3);
  proc_cleanup(&w);
  farm_close(&f);
}

/* --- the farm --------------------------------------------------------- */

/* Promise: three brokers, one worker group (C = 4) on all three, a load of
 * 20000 requests, 32 in flight, over all three; one broker SIGKILLed mid-run
 * and restarted on its endpoint: no request fails (retries allowed), the
 * restarted broker has workers again within a few heartbeat intervals, the
 * load was spread over the brokers, and the group never had more than C in
 * progress. */
static void farm_broker_killed_mid_run(void) {
  farm_t f;
  CHECK(farm_open(&f, NB) == 0);
  proc_t w, r;
  const char *wargs[] = {"-C", "4", "--echo", "svc", NULL};
  CHECK(worker_start(&w, &f, NB, wargs) == 0);
  for (int i = 0; i < NB; i++)
    CHECK(wait_workers(f.ep[i], "svc", 1, -1, 5000));
  char count[16];
  snprintf(count, sizeof count, "%d", t_scale(20000));
  const char *rargs[] = {"-n", count, "-C", "32", "-t", "1", "-r", "3",
                         "svc", "x", NULL};
  uint64_t t0 = uv_hrtime();
  CHECK(request_run(&r, &f, NB, rargs, 0) == 0);
  usleep(300000);
  /* Still running: this is mid-run. */
  CHECK(waitpid(r.pid, NULL, WNOHANG) == 0);
  uint64_t tk = uv_hrtime();
  proc_kill(&f.broker[0]);
  proc_cleanup(&f.broker[0]);
  f.up[0] = 0;
  CHECK(broker_start(&f, 0) == 0);
  CHECK(wait_workers(f.ep[0], "svc", 1, -1, 5000));
  double back_ms = (uv_hrtime() - tk) / 1e6;
  int rc = proc_wait(&r, 50000);
  double run_s = (uv_hrtime() - t0) / 1e9;
  printf("# mdp-request: %s", proc_stdout(&r));
  CHECK_EQ(rc, 0);
  char want[64];
  snprintf(want, sizeof want, "%s requests: %s ok, 0 failed", count, count);
  CHECK(strstr(proc_stdout(&r), want));
  printf("# figure: broker SIGKILLed and restarted: workers registered "
         "there again %.0f ms after the kill (heartbeat 100 ms x 3); run "
         "%.1f s\n", back_ms, run_s);
  CHECK(back_ms < t_slow(5000));
  CHECK_EQ(worker_stop(&w), 0);
  long total = 0;
  for (int i = 0; i < NB; i++) {
    long c = worker_broker_count(&w, f.ep[i]);
    printf("# broker %d: %ld requests\n", i, c);
    CHECK(c > atol(count) / 20); /* each broker saw a share */
    total += c;
  }
  CHECK(total >= atol(count)); /* at least once: a retried one may run twice */
  long maxp = worker_max_in_progress(&w);
  CHECK(maxp >= 1 && maxp <= 4);
  proc_cleanup(&w);
  proc_cleanup(&r);
  farm_close(&f);
}

int main(void) {
  ctx = zmq_ctx_new();
  RUN(worker_tool_usage);
  RUN(worker_tool_modes);
  RUN(worker_tool_sigterm_finishes);
  RUN(worker_tool_timeout_kills_group);
  RUN(request_load_summary);
  RUN(farm_broker_killed_mid_run);
  zmq_ctx_term(ctx);
  return t_done();
}
