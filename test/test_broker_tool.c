/* tools/mdp-broker as a process: options, serving, signals, exit codes. */
#include "harness.h"
#include "peer.h"
#include "proc.h"

/* Starts mdp-broker with `args` (NULL-terminated). */
static int spawn_broker(proc_t *p, const char *const *args) {
  const char *argv[32];
  int n = 0;
  argv[n++] = build_path("tools/mdp-broker");
  while (*args && n < 31)
    argv[n++] = *args++;
  argv[n] = NULL;
  return proc_spawn(p, argv);
}

/* Runs mdp-broker to completion with `args`; returns its exit code. */
static int run_broker(proc_t *p, const char *const *args) {
  if (spawn_broker(p, args) < 0)
    return -100;
  return proc_wait(p, 5000);
}

static void help_lists_every_option(void) {
  proc_t p;
  const char *args[] = {"--help", NULL};
  CHECK_EQ(run_broker(&p, args), 0);
  const char *text = proc_stdout(&p);
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
                           "-b, --bind", "--bind-url", "-i, --heartbeat-interval",
                           "-t, --heartbeat-timeout",
                           "-B, --busy-worker-timeout", "--silent-busy",
                           "-c, --config", "-V, -v, --verbose",
                           "-D, -d, --debug", "YAML",
                           "--disconnect-expired", "--max-mmi-reply-bytes",
                           "--ipv6", "--sndhwm", "--rcvhwm", "--tcp-keepalive", "--malloc-keep",
                           "--log-format",
                           "json", "READY=1", "WATCHDOG=1", "STOPPING=1",
                           "tcp://127.0.0.1:5555"};
  for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
    if (strstr(text, options[i]) == NULL)
      printf("# --help does not mention %s\n", options[i]);
    CHECK(strstr(text, options[i]) != NULL);
  }
  proc_cleanup(&p);
}

static void version(void) {
  proc_t p;
  const char *args[] = {"--version", NULL};
  CHECK_EQ(run_broker(&p, args), 0);
  proc_cleanup(&p);
}


/* An out-of-range port is refused with exit 2 and says which endpoint;
 * libzmq alone would wrap it (99999 bound 34463, -1 bound 65535). */
static void out_of_range_port_refused(void) {
  const char *ports[] = {"tcp://127.0.0.1:99999", "tcp://127.0.0.1:70000",
                         "tcp://127.0.0.1:-1"};
  for (size_t i = 0; i < sizeof ports / sizeof *ports; i++) {
    proc_t p;
    const char *args[] = {"-b", ports[i], NULL};
    int rc = run_broker(&p, args);
    const char *err = proc_stderr(&p);
    if (rc != 2)
      printf("# %s -> exit %d: %s\n", ports[i], rc, err);
    CHECK_EQ(rc, 2);
    CHECK(strstr(err, ports[i]) != NULL);
    CHECK(strstr(err, "listening") == NULL);
    proc_cleanup(&p);
  }
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
      {"-t", "0", NULL},
      {"-B", "-1", NULL},
      {"--silent-busy", "rfc18,bogus", NULL},
      {"--silent-busy", "", NULL},
      {"-c", "/nonexistent/mdp-broker.conf", NULL},
      {"-B", "1e10", NULL}, /* over MDP_BROKER_TIME_MAX_MS */
      {"--max-mmi-reply-bytes", "-1", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    proc_t p;
    int rc = run_broker(&p, cases[i]);
    const char *err = proc_stderr(&p);
    if (rc != 2)
      printf("# %s %s -> exit %d: %s\n", cases[i][0],
             cases[i][1] ? cases[i][1] : "", rc, err);
    CHECK_EQ(rc, 2);
    CHECK(strstr(err, "--help") != NULL); /* says where to look */
    proc_cleanup(&p);
  }
}

/* Majortomo's rule: the timeout is a whole multiple of the interval, at
 * least one; ours: it agrees with --heartbeat-liveness if both are given. */
static void inconsistent_heartbeat_options_exit_2(void) {
  const char *cases[][7] = {
      {"-i", "1.0", "-t", "0.5", NULL},  /* shorter than one interval */
      {"-i", "1.0", "-t", "2.5", NULL},  /* not a multiple */
      {"-t", "3.0", NULL},               /* nor of the default 2.5 s */
      {"-i", "1", "-t", "3", "--heartbeat-liveness", "4", NULL},
      {"-i", "1000", "--heartbeat-liveness", "100000", NULL}, /* wraps */
  };
  const char *why[] = {"shorter than one", "whole multiple",
                       "whole multiple", "contradicts", "is over"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    proc_t p;
    int rc = run_broker(&p, cases[i]);
    const char *err = proc_stderr(&p);
    if (rc != 2 || strstr(err, why[i]) == NULL)
      printf("# case %zu -> exit %d: %s\n", i, rc, err);
    CHECK_EQ(rc, 2);
    CHECK(strstr(err, why[i]) != NULL);
    proc_cleanup(&p);
  }
}

/* Starts the broker with `args`, waits until it listens, stops it with
 * SIGTERM; its exit code, and its stderr in `err` (`size` bytes). */
static int start_and_stop(const char *const *args, char *err, size_t size) {
  proc_t p;
  err[0] = '\0';
  if (spawn_broker(&p, args) < 0)
    return -100;
  uint64_t deadline = uv_hrtime() + t_slow(5000) * 1000000ull;
  while (strstr(proc_stderr(&p), "listening on") == NULL &&
         uv_hrtime() < deadline)
    usleep(2000);
  kill(p.pid, SIGTERM);
  int rc = proc_wait(&p, 15000);
  /* Copied by length: gcc -O2 -Werror=format-truncation (the sanitizer
   * build) refuses snprintf of the 64 KiB buffer into a smaller one. */
  const char *text = proc_stderr(&p);
  size_t n = strlen(text) < size ? strlen(text) : size - 1;
  memcpy(err, text, n);
  err[n] = '\0';
  proc_cleanup(&p);
  if (rc != 0)
    printf("# exit %d, stderr:\n%s\n", rc, err);
  return rc;
}

/* `python -m majortomo.broker -b URL -i 1.0 -t 3.0 --debug`, as Majortomo's
 * system tests start it, runs unchanged and means the same. */
static void majortomo_command_line(void) {
  void *ctx = zmq_ctx_new();
  char ep[256], err[8192];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  const char *args[] = {"-b", ep, "-i", "1.0", "-t", "3.0", "--debug", NULL};
  CHECK_EQ(start_and_stop(args, err, sizeof err), 0);
  CHECK(strstr(err, "heartbeat 1.000 s x 3") != NULL);
  CHECK(strstr(err, "listening on tcp://127.0.0.1:") != NULL);
  CHECK(strstr(err, "majortomo,mdp01 may be silent for up to 900.000 s") !=
        NULL);
  /* The long forms, -B, and -V meaning --verbose (not --version). */
  const char *longs[] = {"--bind-url", ep, "--heartbeat-interval", "0.5",
                         "--heartbeat-timeout", "2", "--busy-worker-timeout",
                         "60", "-V", "-D", NULL};
  CHECK_EQ(start_and_stop(longs, err, sizeof err), 0);
  CHECK(strstr(err, "heartbeat 0.500 s x 4") != NULL);
  CHECK(strstr(err, "silent for up to 60.000 s; others are judged by "
                    "heartbeats and the busy timeout") != NULL);
  const char *rfc[] = {"-b", ep, "--silent-busy", "rfc18,majortomo,mdp01",
                       "-B", "0", NULL};
  CHECK_EQ(start_and_stop(rfc, err, sizeof err), 0);
  CHECK(strstr(err, "rfc18,majortomo,mdp01 may be silent with no bound") !=
        NULL);
  zmq_ctx_term(ctx);
}

/* Writes `text` to a fresh temporary file; its path in `path`. */
static void write_temp(char *path, size_t size, const char *text) {
  int fd = temp_file(path, size);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* -c FILE: our 'key = value' file, overridden by the command line; a
 * Majortomo YAML file and bad lines refused with FILE:LINE. */
static void config_file(void) {
  void *ctx = zmq_ctx_new();
  char ep[256], other[256], err[8192], conf[64], text[1024];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  free_tcp_endpoint(ctx, other, sizeof other);
  snprintf(text, sizeof text,
           "# mdp-broker.conf\n"
           "bind = %s\n"
           "heartbeat-interval = 0.2   # seconds\n"
           "\n"
           "heartbeat-liveness = 5\n"
           "verbose = true\n",
           other);
  write_temp(conf, sizeof conf, text);
  /* The file alone. */
  const char *alone[] = {"-c", conf, NULL};
  CHECK_EQ(start_and_stop(alone, err, sizeof err), 0);
  CHECK(strstr(err, "heartbeat 0.200 s x 5") != NULL);
  CHECK(strstr(err, other) != NULL);
  /* The command line wins, -b replacing the file's binds. */
  const char *over[] = {"-i", "0.1", "--config", conf, "-b", ep, NULL};
  CHECK_EQ(start_and_stop(over, err, sizeof err), 0);
  CHECK(strstr(err, "heartbeat 0.100 s x 5") != NULL);
  CHECK(strstr(err, ep) != NULL);
  CHECK(strstr(err, other) == NULL);
  unlink(conf);
  const char *bad[][2] = {
      {"logging:\n  version: 1\n  root:\n    level: DEBUG\n", ":1: this "
                                                              "looks like "
                                                              "YAML"},
      {"---\nlogging: {}\n", ":1: this looks like YAML"},
      {"bind = tcp://127.0.0.1:1\nno-such-key = 1\n", ":2: unknown key"},
      {"heartbeat-interval = fast\n", ":1: invalid heartbeat-interval"},
      {"\n\nverbose = maybe\n", ":3: invalid verbose"},
      {"max-queue\n", ":1: expected 'key = value'"},
      {"config = other.conf\n", ":1: unknown key 'config'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_temp(conf, sizeof conf, bad[i][0]);
    const char *args[] = {"-c", conf, NULL};
    proc_t p;
    int rc = run_broker(&p, args);
    const char *e = proc_stderr(&p);
    char where[128];
    snprintf(where, sizeof where, "%s%s", conf, bad[i][1]);
    if (rc != 2 || strstr(e, where) == NULL)
      printf("# config case %zu -> exit %d: %s\n", i, rc, e);
    CHECK_EQ(rc, 2);
    CHECK(strstr(e, where) != NULL);
    proc_cleanup(&p);
    unlink(conf);
  }
  zmq_ctx_term(ctx);
}

/* An MMI answer from the broker at `endpoint` (ZMQ_IPV6 on the client),
 * waiting for the broker to come up. */
static int tool_answers(void *ctx, const char *endpoint) {
  void *c = zmq_socket(ctx, ZMQ_DEALER);
  int one = 1, zero = 0, ok = 0;
  zmq_setsockopt(c, ZMQ_IPV6, &one, sizeof one);
  zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(c, endpoint);
  for (int i = 0; i < 50 && !ok; i++) {
    peer_send(c, "MDPC02", "\x01", "mmi.service", "echo", NULL);
    mdp_msg_t *m = peer_recv(NULL, c, 200);
    ok = msg_is(m, "MDPC02", "\x03", "mmi.service", "404", NULL);
    mdp_msg_destroy(m);
  }
  zmq_close(c);
  return ok;
}

/* `-b tcp://[::1]:PORT` just works; `--ipv6 -b tcp://\*:PORT` serves both
 * families; a host name is refused with what a bind accepts. */
static void ipv6_endpoints(void) {
  void *ctx = zmq_ctx_new();
  char ep[256], v6[64], v4[64];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  const char *port = strrchr(ep, ':') + 1;
  snprintf(v6, sizeof v6, "tcp://[::1]:%s", port);
  snprintf(v4, sizeof v4, "tcp://127.0.0.1:%s", port);
  proc_t p;
  const char *literal[] = {"-b", v6, NULL};
  CHECK_EQ(spawn_broker(&p, literal), 0);
  CHECK(tool_answers(ctx, v6));
  kill(p.pid, SIGTERM);
  CHECK_EQ(proc_wait(&p, 15000), 0);
  proc_cleanup(&p);
  char any[64];
  snprintf(any, sizeof any, "tcp://*:%s", port);
  const char *dual[] = {"--ipv6", "-b", any, NULL};
  CHECK_EQ(spawn_broker(&p, dual), 0);
  CHECK(tool_answers(ctx, v6));
  CHECK(tool_answers(ctx, v4));
  kill(p.pid, SIGTERM);
  CHECK_EQ(proc_wait(&p, 15000), 0);
  proc_cleanup(&p);
  const char *host[] = {"-b", "tcp://localhost:5555", NULL};
  CHECK_EQ(run_broker(&p, host), 1);
  CHECK(strstr(proc_stderr(&p), "resolves no host name") != NULL);
  proc_cleanup(&p);
  zmq_ctx_term(ctx);
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
  const char *err = proc_stderr(&p);
  zmq_close(holder);
  zmq_ctx_term(ctx);
  CHECK_EQ(rc, 1);
  CHECK(strstr(err, "cannot bind") != NULL);
  proc_cleanup(&p);
  const char *bad[] = {"-b", "nosuch://endpoint", NULL};
  CHECK_EQ(run_broker(&p, bad), 1);
  proc_cleanup(&p);
}

static void serve_then_stop(int signum) {
  void *ctx = zmq_ctx_new();
  char ep[256];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  proc_t p;
  /* The raw worker below never heartbeats: a long liveness keeps it. */
  const char *args[] = {"-b", ep, "-v", "--heartbeat-interval", "0.2",
                        "--heartbeat-liveness", "100", "--stats-interval",
                        "0.1", NULL};
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
  int rc = proc_wait(&p, 15000);
  /* The worker is told the broker is going. */
  int told = 0;
  while ((m = peer_recv(NULL, w, 1000)) != NULL) {
    told |= msg_is(m, "MDPW02", "\x06", NULL);
    mdp_msg_destroy(m);
  }
  zmq_close(w);
  zmq_close(c);
  zmq_ctx_term(ctx);
  const char *err = proc_stderr(&p);
  if (rc != 0)
    printf("# exit %d, stderr:\n%s\n", rc, err);
  CHECK_EQ(rc, 0);
  CHECK(told);
  CHECK(strstr(err, "listening on tcp://127.0.0.1:") != NULL);
  CHECK(strstr(err, "ready for service 'echo'") != NULL); /* -v */
  CHECK(strstr(err, "stats: workers 1") != NULL);
  CHECK(strstr(err, signum == SIGTERM ? "SIGTERM" : "SIGINT") != NULL);
  CHECK(strstr(err, "stopped") != NULL);
  proc_cleanup(&p);
}

/* --log-format json: a worker's lines carry its service, identity and
 * dialect as fields a log shipper can index. */
static void json_log_fields(void) {
  void *ctx = zmq_ctx_new();
  char ep[256];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  proc_t p;
  const char *args[] = {"-b", ep, "-v", "--log-format", "json", NULL};
  CHECK_EQ(spawn_broker(&p, args), 0);
  void *w = peer_new(ctx, ZMQ_DEALER, ep);
  peer_send(w, "MDPW02", "\x01", "echo", NULL);
  uint64_t deadline = uv_hrtime() + t_slow(5000) * 1000000ull;
  while (strstr(proc_stderr(&p), "ready for service") == NULL &&
         uv_hrtime() < deadline)
    usleep(5000);
  kill(p.pid, SIGTERM);
  CHECK_EQ(proc_wait(&p, 15000), 0);
  const char *line = strstr(proc_stderr(&p), "ready for service");
  const char *end = line ? strchr(line, '\n') : NULL;
  char ready[1024] = "";
  if (line && end && end - line < (long)sizeof ready)
    memcpy(ready, line, (size_t)(end - line));
  if (strstr(ready, "\"service\":\"echo\"") == NULL)
    printf("# the line: %s\n", ready);
  CHECK(strstr(ready, "\"service\":\"echo\"") != NULL);
  CHECK(strstr(ready, "\"worker\":\"") != NULL);
  CHECK(strstr(ready, "\"dialect\":\"rfc18\"}") != NULL);
  zmq_close(w);
  proc_cleanup(&p);
  zmq_ctx_term(ctx);
}

static void serve_then_sigterm(void) { serve_then_stop(SIGTERM); }
static void serve_then_sigint(void) { serve_then_stop(SIGINT); }

int main(void) {
  RUN(help_lists_every_option);
  RUN(version);
  RUN(bad_options_exit_2);
  RUN(out_of_range_port_refused);
  RUN(inconsistent_heartbeat_options_exit_2);
  RUN(majortomo_command_line);
  RUN(config_file);
  RUN(unbindable_endpoint_exits_1);
  RUN(ipv6_endpoints);
  RUN(serve_then_sigterm);
  RUN(serve_then_sigint);
  RUN(json_log_fields);
  return t_done();
}
