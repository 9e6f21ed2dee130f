/* tools/mdp-broker as a process: options, serving, signals, exit codes. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

extern char **environ;

typedef struct {
  pid_t pid;
  char err_path[64]; /* the child's stderr goes here */
} proc_t;

static const char *broker_path(void) {
  static char path[1024];
  const char *dir = getenv("MDP_BUILD_DIR");
  snprintf(path, sizeof path, "%s/tools/mdp-broker", dir ? dir : "build");
  return path;
}

/* Starts mdp-broker with `args` (NULL-terminated), stdout to /dev/null. */
static int spawn_broker(proc_t *p, const char *const *args) {
  const char *argv[32];
  int n = 0;
  argv[n++] = broker_path();
  while (*args && n < 31)
    argv[n++] = *args++;
  argv[n] = NULL;
  snprintf(p->err_path, sizeof p->err_path, "/tmp/mdp-broker-test-XXXXXX");
  int fd = mkstemp(p->err_path);
  if (fd < 0)
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv,
                       environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fd);
  return rc == 0 ? 0 : -1;
}

/* Waits up to `ms` for the process; its exit code, or -1 (still running,
 * then killed) or 128+signal. */
static int wait_exit(proc_t *p, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  int status;
  for (;;) {
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid)
      break;
    if (uv_hrtime() > deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &status, 0);
      return -1;
    }
    usleep(5000);
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/* The child's stderr so far (static buffer). */
static const char *err_text(proc_t *p) {
  static char buf[16384];
  FILE *f = fopen(p->err_path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  return buf;
}

static void done(proc_t *p) { unlink(p->err_path); }

/* Runs mdp-broker to completion with `args`; returns its exit code. */
static int run_broker(proc_t *p, const char *const *args) {
  if (spawn_broker(p, args) < 0)
    return -100;
  return wait_exit(p, 5000);
}

static void help_lists_every_option(void) {
  proc_t p;
  const char *args[] = {"--help", NULL};
  char out[] = "/tmp/mdp-broker-help-XXXXXX";
  int fd = mkstemp(out);
  CHECK(fd >= 0);
  /* --help prints to stdout: capture it through a shell-free dup. */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  const char *argv[] = {broker_path(), args[0], NULL};
  CHECK_EQ(posix_spawn(&p.pid, argv[0], &fa, NULL, (char *const *)argv,
                       environ),
           0);
  posix_spawn_file_actions_destroy(&fa);
  close(fd);
  snprintf(p.err_path, sizeof p.err_path, "%s", out);
  CHECK_EQ(wait_exit(&p, 5000), 0);
  const char *text = err_text(&p);
  const char *options[] = {"--bind",          "--heartbeat-interval",
                           "--heartbeat-liveness", "--busy-timeout",
                           "--request-expiry", "--max-queue",
                           "--max-msg-size",  "--max-redispatch",
                           "--stats-interval", "--verbose", "--dialects",
                           "--max-queued-total", "--max-services",
                           "--max-workers-per-service", "--max-frames",
                           "--max-queue-per-client", "--max-queued-bytes",
                           "--debug",         "--quiet",
                           "--help",          "--version",
                           "tcp://127.0.0.1:5555"};
  for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
    if (strstr(text, options[i]) == NULL)
      printf("# --help does not mention %s\n", options[i]);
    CHECK(strstr(text, options[i]) != NULL);
  }
  done(&p);
}

static void version(void) {
  proc_t p;
  const char *args[] = {"--version", NULL};
  CHECK_EQ(run_broker(&p, args), 0);
  done(&p);
}

static void bad_options_exit_2(void) {
  const char *cases[][3] = {
      {"--bogus", NULL, NULL},
      {"--heartbeat-interval", "abc", NULL},
      {"--heartbeat-interval", "0", NULL},
      {"--heartbeat-liveness", "-1", NULL},
      {"--max-queue", "many", NULL},
      {"--request-expiry", "-2", NULL},
      {"--dialects", "rfc18,nosuch", NULL},
      {"--dialects", "", NULL},
      {"--max-frames", "-3", NULL},
      {"--max-services", "lots", NULL},
      {"unexpected-argument", NULL, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    proc_t p;
    int rc = run_broker(&p, cases[i]);
    const char *err = err_text(&p);
    if (rc != 2)
      printf("# %s %s -> exit %d: %s\n", cases[i][0],
             cases[i][1] ? cases[i][1] : "", rc, err);
    CHECK_EQ(rc, 2);
    CHECK(strstr(err, "--help") != NULL); /* says where to look */
    done(&p);
  }
}

static void unbindable_endpoint_exits_1(void) {
  void *ctx = zmq_ctx_new();
  void *holder = zmq_socket(ctx, ZMQ_ROUTER);
  CHECK_EQ(zmq_bind(holder, "tcp://127.0.0.1:*"), 0);
  char ep[256];
  size_t size = sizeof ep;
  zmq_getsockopt(holder, ZMQ_LAST_ENDPOINT, ep, &size);
  proc_t p;
  const char *args[] = {"-b", ep, NULL};
  int rc = run_broker(&p, args);
  const char *err = err_text(&p);
  zmq_close(holder);
  zmq_ctx_term(ctx);
  CHECK_EQ(rc, 1);
  CHECK(strstr(err, "cannot bind") != NULL);
  done(&p);
  const char *bad[] = {"-b", "nosuch://endpoint", NULL};
  CHECK_EQ(run_broker(&p, bad), 1);
  done(&p);
}

/* A free TCP port on loopback (bound and released; good enough here). */
static void free_endpoint(void *ctx, char *ep, size_t size) {
  void *s = zmq_socket(ctx, ZMQ_ROUTER);
  zmq_bind(s, "tcp://127.0.0.1:*");
  zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &size);
  zmq_close(s);
}

static void serve_then_stop(int signum) {
  void *ctx = zmq_ctx_new();
  char ep[256];
  free_endpoint(ctx, ep, sizeof ep);
  proc_t p;
  const char *args[] = {"-b", ep, "-v", "--heartbeat-interval", "0.2",
                        "--stats-interval", "0.1", NULL};
  CHECK_EQ(spawn_broker(&p, args), 0);
  void *w = peer_new(ctx, ZMQ_DEALER, ep);
  void *c = peer_new(ctx, ZMQ_DEALER, ep);
  peer_send(w, "MDPW02", "\x01", "echo", NULL);
  /* The READY may be sent before the broker listens; ZeroMQ reconnects and
   * delivers it.  MMI tells when the worker is registered. */
  int registered = 0;
  for (int i = 0; i < 100 && !registered; i++) {
    peer_send(c, "MDPC02", "\x01", "mmi.service", "echo", NULL);
    mdp_msg_t *m = peer_recv(NULL, c, 2000);
    registered = msg_is(m, "MDPC02", "\x03", "mmi.service", "200", NULL);
    mdp_msg_destroy(m);
    if (!registered)
      usleep(20000);
  }
  CHECK(registered);
  peer_send(c, "MDPC02", "\x01", "echo", "over tcp", NULL);
  mdp_msg_t *req = NULL;
  while (req == NULL || msg_is(req, "MDPW02", "\x05", NULL)) {
    mdp_msg_destroy(req);
    req = peer_recv(NULL, w, 2000);
    CHECK(req != NULL);
  }
  CHECK(msg_is(req, "MDPW02", "\x02", ANY, "", "over tcp", NULL));
  mdp_msg_t *rep = mdp_msg_new();
  mdp_msg_append_str(rep, "MDPW02");
  mdp_msg_append_str(rep, "\x04");
  mdp_msg_append_mem(rep, mdp_msg_data(req, 2), mdp_msg_frame_size(req, 2));
  mdp_msg_append_str(rep, "");
  mdp_msg_append_str(rep, "back");
  mdp_msg_destroy(req);
  peer_send_msg(w, rep);
  mdp_msg_t *m = peer_recv(NULL, c, 2000);
  CHECK(msg_is(m, "MDPC02", "\x03", "echo", "back", NULL));
  mdp_msg_destroy(m);
  usleep(250000); /* at least one stats line */
  CHECK_EQ(kill(p.pid, signum), 0);
  int rc = wait_exit(&p, 5000);
  /* The worker is told the broker is going. */
  int told = 0;
  while ((m = peer_recv(NULL, w, 1000)) != NULL) {
    told |= msg_is(m, "MDPW02", "\x06", NULL);
    mdp_msg_destroy(m);
  }
  zmq_close(w);
  zmq_close(c);
  zmq_ctx_term(ctx);
  const char *err = err_text(&p);
  if (rc != 0)
    printf("# exit %d, stderr:\n%s\n", rc, err);
  CHECK_EQ(rc, 0);
  CHECK(told);
  CHECK(strstr(err, "listening on tcp://127.0.0.1:") != NULL);
  CHECK(strstr(err, "ready for service 'echo'") != NULL); /* -v */
  CHECK(strstr(err, "stats: workers 1") != NULL);
  CHECK(strstr(err, signum == SIGTERM ? "SIGTERM" : "SIGINT") != NULL);
  CHECK(strstr(err, "stopped") != NULL);
  done(&p);
}

static void serve_then_sigterm(void) { serve_then_stop(SIGTERM); }
static void serve_then_sigint(void) { serve_then_stop(SIGINT); }

int main(void) {
  RUN(help_lists_every_option);
  RUN(version);
  RUN(bad_options_exit_2);
  RUN(unbindable_endpoint_exits_1);
  RUN(serve_then_sigterm);
  RUN(serve_then_sigint);
  return t_done();
}
