/* mdp-broker: a Majordomo broker (MDP/0.2, RFC 18, with MMI) as a program.
 *
 * A thin shell around mdp_broker_t: options, logging to stderr with
 * timestamps, SIGINT/SIGTERM for a clean stop, optional periodic stats.
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mdp.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "Usage: mdp-broker [OPTION]...\n"
    "Run a Majordomo broker (MDP/0.2, RFC 18, with MMI, RFC 8).\n"
    "\n"
    "  -b, --bind URL              endpoint to bind (repeatable; tcp://, ipc://),\n"
    "                              default " MDP_DEFAULT_ENDPOINT "\n"
    "      --heartbeat-interval S  seconds between heartbeats to each worker\n"
    "                              (default 2.5)\n"
    "      --heartbeat-liveness N  heartbeats a worker may miss before it is\n"
    "                              removed (default 4: 10 s at the default\n"
    "                              interval)\n"
    "      --busy-timeout S        longest a worker may hold one request before it\n"
    "                              is dropped and the request sent to another\n"
    "                              worker; 0 = off (default 0)\n"
    "      --request-expiry S      queued requests are dropped after S seconds\n"
    "                              without a worker; 0 = never (default 30)\n"
    "      --max-queue N           queued requests per service; more are dropped;\n"
    "                              0 = unlimited (default 10000)\n"
    "      --max-queued-total N    queued requests over all services; 0 =\n"
    "                              unlimited (default 100000)\n"
    "      --max-queue-per-client N\n"
    "                              queued requests of one client for one\n"
    "                              service; 0 = unlimited (default 1000)\n"
    "      --max-queued-bytes N    bytes held by queued requests, all services;\n"
    "                              0 = unlimited (default 268435456, 256 MiB)\n"
    "      --max-services N        services known at once; READYs and requests\n"
    "                              for more are refused; 0 = unlimited\n"
    "                              (default 10000)\n"
    "      --max-workers-per-service N\n"
    "                              workers per service; more get DISCONNECT;\n"
    "                              0 = unlimited (default 10000)\n"
    "      --max-frames N          frames in one message; larger messages are\n"
    "                              dropped; 0 = unlimited (default 1024)\n"
    "      --max-msg-size BYTES    largest frame (message part) a peer may send;\n"
    "                              a larger one disconnects the peer; -1 =\n"
    "                              unlimited\n"
    "                              (default 67108864, 64 MiB)\n"
    "      --max-redispatch N      times a request is sent to another worker when\n"
    "                              its worker dies before replying (default 1)\n"
    "      --dialects LIST         dialects to accept, comma-separated, from\n"
    "                              rfc18, majortomo, mdp01 (default: all three;\n"
    "                              each peer is answered in its own)\n"
    "      --curve-secret-key FILE CURVE: encrypt and authenticate every peer\n"
    "                              with the broker's key pair from FILE (an\n"
    "                              mdp-keygen NAME.secret); needs --curve-allow\n"
    "      --curve-allow DIR|FILE  public keys of the clients and workers let in:\n"
    "                              the *.pub files of DIR, or the public-key\n"
    "                              lines of FILE; everyone else is refused\n"
    "      --stats-interval S      log a one-line stats summary every S seconds;\n"
    "                              0 = never (default 0)\n"
    "  -v, --verbose               also log worker arrivals and departures\n"
    "  -d, --debug                 also log every dropped or invalid message\n"
    "  -q, --quiet                 log errors only\n"
    "  -h, --help                  show this help and exit\n"
    "  -V, --version               show the version and exit\n"
    "\n"
    "Durations are in seconds and may have fractions (--heartbeat-interval 0.5).\n"
    "SIGINT or SIGTERM stops the broker cleanly (workers get DISCONNECT).\n"
    "Exit status: 0 after a clean stop, 1 if an endpoint cannot be bound or\n"
    "the broker fails, 2 for a bad option.\n";

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *broker;
  uv_signal_t sigint, sigterm;
  uv_timer_t stats_timer;
  mdp_log_level_t level;
  int stopping;
} app_t;

static void log_line(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ldZ mdp-broker %s: %s\n", when, ts.tv_nsec / 1000000,
          mdp_log_level_name(level), line);
}

static void app_log(app_t *app, mdp_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void app_log(app_t *app, mdp_log_level_t level, const char *fmt, ...) {
  if (level > app->level)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_line(NULL, level, line);
}

/* Parses a duration in seconds (fractions allowed) into ms. */
static int parse_seconds(const char *text, uint64_t *ms) {
  char *end;
  double s = strtod(text, &end);
  if (end == text || *end != '\0' || !isfinite(s) || s < 0 || s > 1e9)
    return -1;
  *ms = (uint64_t)llround(s * 1000.0);
  return 0;
}

static int parse_count(const char *text, long long min, long long max,
                       long long *out) {
  char *end;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* "rfc18,mdp01" -> a mask of mdp_dialect_t. */
static int parse_dialects(const char *text, unsigned *mask) {
  static const mdp_dialect_t all[] = {MDP_DIALECT_RFC18, MDP_DIALECT_MAJORTOMO,
                                      MDP_DIALECT_MDP01};
  *mask = 0;
  const char *p = text;
  while (*p) {
    size_t len = strcspn(p, ",");
    size_t i = 0;
    for (; i < 3; i++) {
      const char *name = mdp_dialect_name(all[i]);
      if (len == strlen(name) && strncmp(p, name, len) == 0)
        break;
    }
    if (i == 3)
      return -1;
    *mask |= all[i];
    p += len;
    if (*p == ',')
      p++;
  }
  return *mask ? 0 : -1;
}

static void on_broker_closed(mdp_broker_t *broker) {
  app_t *app = mdp_broker_get_data(broker);
  app->broker = NULL;
}

static void stop(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->stats_timer, NULL);
  if (app->broker)
    mdp_broker_close(app->broker, on_broker_closed);
}

static void on_signal(uv_signal_t *sig, int signum) {
  app_t *app = sig->data;
  app_log(app, MDP_LOG_INFO, "%s received, stopping",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  stop(app);
}

static void on_stats(uv_timer_t *timer) {
  app_t *app = timer->data;
  mdp_broker_stats_t s;
  mdp_broker_get_stats(app->broker, &s);
  char line[512];
  snprintf(line, sizeof line,
           "stats: workers %zu (idle %zu) services %zu queued %zu | "
           "requests %llu replies %llu partials %llu mmi %llu "
           "redispatched %llu | dropped: invalid %llu expired %llu "
           "queue-full %llu unroutable %llu worker-lost %llu",
           s.workers, s.workers_idle, s.services, s.queued,
           (unsigned long long)s.requests, (unsigned long long)s.replies,
           (unsigned long long)s.partials, (unsigned long long)s.mmi_requests,
           (unsigned long long)s.redispatched,
           (unsigned long long)s.dropped_invalid,
           (unsigned long long)s.dropped_expired,
           (unsigned long long)s.dropped_queue_full,
           (unsigned long long)s.dropped_unroutable,
           (unsigned long long)s.dropped_worker_lost);
  /* Asked for explicitly, so printed unless -q. */
  app_log(app, MDP_LOG_INFO, "%s", line);
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "mdp-broker: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'mdp-broker --help' for more information.\n");
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  enum {
    OPT_HB_INTERVAL = 256,
    OPT_HB_LIVENESS,
    OPT_BUSY_TIMEOUT,
    OPT_EXPIRY,
    OPT_MAX_QUEUE,
    OPT_MAX_MSG,
    OPT_MAX_REDISPATCH,
    OPT_STATS,
    OPT_DIALECTS,
    OPT_MAX_QUEUED_TOTAL,
    OPT_MAX_SERVICES,
    OPT_MAX_WORKERS,
    OPT_MAX_FRAMES,
    OPT_CURVE_SECRET,
    OPT_CURVE_ALLOW,
    OPT_MAX_PER_CLIENT,
    OPT_MAX_QUEUED_BYTES
  };
  static const struct option longopts[] = {
      {"bind", required_argument, NULL, 'b'},
      {"heartbeat-interval", required_argument, NULL, OPT_HB_INTERVAL},
      {"heartbeat-liveness", required_argument, NULL, OPT_HB_LIVENESS},
      {"busy-timeout", required_argument, NULL, OPT_BUSY_TIMEOUT},
      {"request-expiry", required_argument, NULL, OPT_EXPIRY},
      {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
      {"max-msg-size", required_argument, NULL, OPT_MAX_MSG},
      {"max-redispatch", required_argument, NULL, OPT_MAX_REDISPATCH},
      {"stats-interval", required_argument, NULL, OPT_STATS},
      {"dialects", required_argument, NULL, OPT_DIALECTS},
      {"max-queued-total", required_argument, NULL, OPT_MAX_QUEUED_TOTAL},
      {"max-services", required_argument, NULL, OPT_MAX_SERVICES},
      {"max-workers-per-service", required_argument, NULL, OPT_MAX_WORKERS},
      {"max-frames", required_argument, NULL, OPT_MAX_FRAMES},
      {"max-queue-per-client", required_argument, NULL, OPT_MAX_PER_CLIENT},
      {"max-queued-bytes", required_argument, NULL, OPT_MAX_QUEUED_BYTES},
      {"curve-secret-key", required_argument, NULL, OPT_CURVE_SECRET},
      {"curve-allow", required_argument, NULL, OPT_CURVE_ALLOW},
      {"verbose", no_argument, NULL, 'v'},
      {"debug", no_argument, NULL, 'd'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};

  mdp_broker_options_t opts;
  mdp_broker_options_init(&opts);
  const char **binds = calloc((size_t)argc + 1, sizeof *binds);
  size_t n_binds = 0;
  uint64_t stats_ms = 0;
  mdp_log_level_t level = MDP_LOG_INFO;
  int verbose = 0;
  long long n;
  int c;
  int rc = 0;
  const char *curve_secret_file = NULL;
  mdp_curve_keypair_t curve_pair;
  memset(&curve_pair, 0, sizeof curve_pair);
  while ((c = getopt_long(argc, argv, "b:vdqhV", longopts, NULL)) != -1) {
    switch (c) {
    case 'b':
      binds[n_binds++] = optarg;
      break;
    case OPT_HB_INTERVAL:
      if (parse_seconds(optarg, &opts.heartbeat_interval_ms) < 0 ||
          opts.heartbeat_interval_ms == 0)
        rc = usage_error("invalid --heartbeat-interval '%s': a positive "
                         "number of seconds is expected", optarg);
      break;
    case OPT_HB_LIVENESS:
      if (parse_count(optarg, 1, 1000000, &n) < 0)
        rc = usage_error("invalid --heartbeat-liveness '%s': a whole number "
                         "from 1 is expected", optarg);
      opts.heartbeat_liveness = (unsigned)n;
      break;
    case OPT_BUSY_TIMEOUT:
      if (parse_seconds(optarg, &opts.busy_timeout_ms) < 0)
        rc = usage_error("invalid --busy-timeout '%s': seconds expected",
                         optarg);
      break;
    case OPT_EXPIRY:
      if (parse_seconds(optarg, &opts.request_expiry_ms) < 0)
        rc = usage_error("invalid --request-expiry '%s': seconds expected",
                         optarg);
      break;
    case OPT_MAX_QUEUE:
      if (parse_count(optarg, 0, 1000000000, &n) < 0)
        rc = usage_error("invalid --max-queue '%s': a whole number expected",
                         optarg);
      opts.max_queue = (size_t)n;
      break;
    case OPT_MAX_QUEUED_BYTES:
      if (parse_count(optarg, 0, INT64_MAX, &n) < 0)
        rc = usage_error("invalid --max-queued-bytes '%s': bytes, or 0",
                         optarg);
      opts.max_queued_bytes = (size_t)n;
      break;
    case OPT_MAX_QUEUED_TOTAL:
    case OPT_MAX_SERVICES:
    case OPT_MAX_WORKERS:
    case OPT_MAX_FRAMES:
    case OPT_MAX_PER_CLIENT:
      if (parse_count(optarg, 0, 1000000000, &n) < 0) {
        rc = usage_error("invalid limit '%s': a whole number from 0 (no "
                         "limit) expected", optarg);
        break;
      }
      *(c == OPT_MAX_QUEUED_TOTAL ? &opts.max_queued_total
        : c == OPT_MAX_SERVICES   ? &opts.max_services
        : c == OPT_MAX_WORKERS    ? &opts.max_workers_per_service
        : c == OPT_MAX_PER_CLIENT ? &opts.max_queue_per_client
                                  : &opts.max_frames) = (size_t)n;
      break;
    case OPT_MAX_MSG:
      if (parse_count(optarg, -1, INT64_MAX, &n) < 0)
        rc = usage_error("invalid --max-msg-size '%s': bytes, or -1",
                         optarg);
      opts.max_msg_size = n;
      break;
    case OPT_MAX_REDISPATCH:
      if (parse_count(optarg, 0, 1000, &n) < 0)
        rc = usage_error("invalid --max-redispatch '%s': 0 to 1000 expected",
                         optarg);
      opts.max_redispatch = (unsigned)n;
      break;
    case OPT_STATS:
      if (parse_seconds(optarg, &stats_ms) < 0)
        rc = usage_error("invalid --stats-interval '%s': seconds expected",
                         optarg);
      break;
    case OPT_DIALECTS:
      if (parse_dialects(optarg, &opts.dialects) < 0)
        rc = usage_error("invalid --dialects '%s': a comma-separated list of "
                         "rfc18, majortomo, mdp01 expected", optarg);
      break;
    case OPT_CURVE_SECRET:
      curve_secret_file = optarg;
      break;
    case OPT_CURVE_ALLOW:
      opts.curve_allow = optarg;
      break;
    case 'v':
      verbose = 1;
      break;
    case 'd':
      level = MDP_LOG_DEBUG;
      break;
    case 'q':
      level = MDP_LOG_ERROR;
      break;
    case 'h':
      fputs(usage_text, stdout);
      free(binds);
      return 0;
    case 'V':
      printf("mdp-broker (libmdp) %s\n", MDP_VERSION_STRING);
      free(binds);
      return 0;
    default:
      rc = EXIT_USAGE; /* getopt printed why */
      fprintf(stderr, "Try 'mdp-broker --help' for more information.\n");
      break;
    }
    if (rc)
      break;
  }
  if (rc == 0 && optind < argc)
    rc = usage_error("unexpected argument '%s'", argv[optind]);
  if (rc == 0 && (curve_secret_file != NULL) != (opts.curve_allow != NULL))
    rc = usage_error("%s: --curve-secret-key and --curve-allow go together",
                     curve_secret_file ? "--curve-secret-key"
                                       : "--curve-allow");
  if (rc == 0 && curve_secret_file != NULL) {
    size_t line = 0;
    int err = mdp_curve_load(curve_secret_file, &curve_pair, &line);
    if (err == 0 && curve_pair.secret_key[0] != '\0') {
      opts.curve_secret_key = curve_pair.secret_key;
    } else {
      rc = EXIT_USAGE;
      if (err == 0)
        fprintf(stderr, "mdp-broker: --curve-secret-key %s: no secret-key "
                "line (a public key file?)\n", curve_secret_file);
      else if (line > 0)
        fprintf(stderr, "mdp-broker: %s:%zu: expected 'public-key = KEY' or "
                "'secret-key = KEY' (KEY: 40 Z85 characters)\n",
                curve_secret_file, line);
      else
        fprintf(stderr, "mdp-broker: --curve-secret-key %s: %s\n",
                curve_secret_file,
                err == MDP_EINVAL ? "not one matching key pair (see "
                                    "mdp-keygen)"
                                  : mdp_strerror(err));
    }
  }
  if (rc) {
    free(binds);
    return rc;
  }
  if (n_binds == 0)
    binds[n_binds++] = MDP_DEFAULT_ENDPOINT;

  app_t app;
  memset(&app, 0, sizeof app);
  app.level = level;
  /* Library messages: worker arrivals/departures are INFO, which the
   * program shows only with -v; its own start-up lines are shown unless -q. */
  opts.log_cb = log_line;
  opts.log_level = level == MDP_LOG_DEBUG ? MDP_LOG_DEBUG
                   : level == MDP_LOG_ERROR ? MDP_LOG_ERROR
                   : verbose                ? MDP_LOG_INFO
                                            : MDP_LOG_WARN;
  uv_loop_init(&app.loop);
  int err = mdp_broker_new(&app.loop, &opts, &app.broker);
  if (err < 0) {
    fprintf(stderr, "mdp-broker: cannot create the broker: %s\n",
            mdp_strerror(err));
    memset(&curve_pair, 0, sizeof curve_pair);
    free(binds);
    uv_loop_close(&app.loop);
    mdp_zmq_context_term();
    return 1;
  }
  mdp_broker_set_data(app.broker, &app);
  app_log(&app, MDP_LOG_INFO,
          "libmdp %s starting: heartbeat %.3f s x %u, request expiry %.3f s, "
          "max queue %zu",
          MDP_VERSION_STRING, opts.heartbeat_interval_ms / 1000.0,
          opts.heartbeat_liveness, opts.request_expiry_ms / 1000.0,
          opts.max_queue);
  if (curve_secret_file != NULL)
    app_log(&app, MDP_LOG_INFO,
            "CURVE on: broker public key %s, peers allowed from %s",
            curve_pair.public_key, opts.curve_allow);
  memset(&curve_pair, 0, sizeof curve_pair); /* libzmq has its own copy */
  int status = 0;
  for (size_t i = 0; i < n_binds; i++) {
    err = mdp_broker_bind(app.broker, binds[i]);
    if (err < 0) {
      fprintf(stderr, "mdp-broker: cannot bind to %s: %s\n", binds[i],
              err == MDP_EZMQ ? zmq_strerror(zmq_errno()) : mdp_strerror(err));
      status = 1;
      break;
    }
    char ep[256];
    mdp_broker_last_endpoint(app.broker, ep, sizeof ep);
    app_log(&app, MDP_LOG_INFO, "listening on %s", ep);
  }
  free(binds);

  uv_signal_init(&app.loop, &app.sigint);
  uv_signal_init(&app.loop, &app.sigterm);
  uv_timer_init(&app.loop, &app.stats_timer);
  app.sigint.data = app.sigterm.data = app.stats_timer.data = &app;
  if (status == 0) {
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    if (stats_ms > 0)
      uv_timer_start(&app.stats_timer, on_stats, stats_ms, stats_ms);
  } else {
    stop(&app);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&app.loop) != 0) {
    fprintf(stderr, "mdp-broker: handles left open at exit\n");
    status = 1;
  }
  mdp_zmq_context_term();
  if (status == 0)
    app_log(&app, MDP_LOG_INFO, "stopped");
  return status;
}
