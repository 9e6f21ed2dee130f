/* mdp-broker: a Majordomo broker (MDP/0.2, RFC 18, with MMI) as a program.
 *
 * A thin shell around mdp_broker_t: options, logging to stderr with
 * timestamps (text or JSON), SIGINT/SIGTERM for a clean stop, optional
 * periodic stats, systemd notifications (mdp-broker-notify.h).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mdp.h>

#include "mdp-broker-log.h"
#include "mdp-broker-notify.h"
#include "mdp-broker-options.h"
#include "mdp-broker-metrics.h"

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *broker;
  uv_signal_t sigint, sigterm;
  uv_timer_t stats_timer;
  broker_notify_t notify;
  broker_metrics_t *metrics; /* --metrics, or NULL */
  mdp_log_level_t level;
  int stopping;
} app_t;

static broker_log_format_t log_format; /* --log-format */

static void log_line(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  broker_log_write(stderr, log_format, level, line);
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

static void on_broker_closed(mdp_broker_t *broker) {
  app_t *app = mdp_broker_get_data(broker);
  app->broker = NULL;
}

static void stop(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  broker_notify_stopping(&app->notify);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->stats_timer, NULL);
  broker_metrics_stop(app->metrics);
  app->metrics = NULL;
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

int main(int argc, char **argv) {
  broker_cli_t cli;
  int rc = broker_cli_parse(&cli, argc, argv);
  mdp_broker_options_t opts = cli.broker;
  mdp_curve_keypair_t curve_pair;
  memset(&curve_pair, 0, sizeof curve_pair);
  if (rc < 0 && cli.curve_secret_file != NULL) {
    const char *file = cli.curve_secret_file;
    size_t line = 0;
    int err = mdp_curve_load(file, &curve_pair, &line);
    if (err == 0 && curve_pair.secret_key[0] != '\0') {
      opts.curve_secret_key = curve_pair.secret_key;
    } else {
      rc = EXIT_USAGE;
      if (err == 0)
        fprintf(stderr, "mdp-broker: --curve-secret-key %s: no secret-key "
                "line (a public key file?)\n", file);
      else if (line > 0)
        fprintf(stderr, "mdp-broker: %s:%zu: expected 'public-key = KEY' or "
                "'secret-key = KEY' (KEY: 40 Z85 characters)\n", file, line);
      else
        fprintf(stderr, "mdp-broker: --curve-secret-key %s: %s\n", file,
                err == MDP_EINVAL ? "not one matching key pair (see "
                                    "mdp-keygen)"
                                  : mdp_strerror(err));
    }
  }
  if (rc >= 0) {
    broker_cli_free(&cli);
    return rc;
  }
  mdp_log_level_t level = cli.level;
  const char **binds = cli.binds;
  size_t n_binds = cli.n_binds;
  uint64_t stats_ms = cli.stats_ms;
  int verbose = cli.verbose;
  const char *curve_secret_file = cli.curve_secret_file;

  app_t app;
  memset(&app, 0, sizeof app);
  app.level = level;
  log_format = cli.log_format;
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
    app_log(&app, MDP_LOG_ERROR, "cannot create the broker: %s",
            mdp_strerror(err));
    memset(&curve_pair, 0, sizeof curve_pair);
    broker_cli_free(&cli);
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
  char silent[64] = "";
  for (unsigned d = MDP_DIALECT_RFC18; d <= MDP_DIALECT_MDP01; d <<= 1)
    if (opts.silent_busy_dialects & d)
      snprintf(silent + strlen(silent), sizeof silent - strlen(silent),
               "%s%s", silent[0] ? "," : "",
               mdp_dialect_name((mdp_dialect_t)d));
  char bound[64] = "with no bound";
  if (opts.silent_busy_timeout_ms)
    snprintf(bound, sizeof bound, "for up to %.3f s",
             opts.silent_busy_timeout_ms / 1000.0);
  app_log(&app, MDP_LOG_INFO,
          "busy workers: %s may be silent %s; others are judged by "
          "heartbeats%s",
          silent[0] ? silent : "none", bound,
          opts.busy_timeout_ms ? " and the busy timeout" : "");
  if (curve_secret_file != NULL)
    app_log(&app, MDP_LOG_INFO,
            "CURVE on: broker public key %s, peers allowed from %s",
            curve_pair.public_key, opts.curve_allow);
  memset(&curve_pair, 0, sizeof curve_pair); /* libzmq has its own copy */
  /* The signals first: a SIGTERM that comes once the first endpoint is
   * listening must stop the broker cleanly, not kill it. */
  uv_signal_init(&app.loop, &app.sigint);
  uv_signal_init(&app.loop, &app.sigterm);
  uv_timer_init(&app.loop, &app.stats_timer);
  app.sigint.data = app.sigterm.data = app.stats_timer.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);
  int status = 0;
  for (size_t i = 0; i < n_binds; i++) {
    /* A port out of range is a usage error (libzmq would wrap it). */
    if (mdp_endpoint_check(binds[i], 1) < 0) {
      app_log(&app, MDP_LOG_ERROR, "cannot bind to %s: not a valid endpoint "
              "(a tcp:// port is 1..65535, 0 or *); see --help", binds[i]);
      status = 2;
      break;
    }
    err = mdp_broker_bind(app.broker, binds[i]);
    if (err < 0) {
      /* The library's error line said why (and what a bind accepts). */
      status = 1;
      break;
    }
    char ep[256];
    mdp_broker_last_endpoint(app.broker, ep, sizeof ep);
    app_log(&app, MDP_LOG_INFO, "listening on %s", ep);
  }
  if (status == 0 && cli.metrics != NULL) {
    broker_metrics_conf_t mc = {cli.metrics, cli.metrics_timeout_s,
                                cli.metrics_max_connections};
    char where[300];
    if (broker_metrics_start(&app.loop, app.broker, &mc, &app.metrics, where,
                             sizeof where) < 0)
      status = 1;
    else
      app_log(&app, MDP_LOG_INFO, "metrics on http://%s/metrics", where);
  }
  broker_cli_free(&cli);

  if (status == 0) {
    if (stats_ms > 0)
      uv_timer_start(&app.stats_timer, on_stats, stats_ms, stats_ms);
    char what[64];
    snprintf(what, sizeof what, "listening on %zu endpoint%s", n_binds,
             n_binds == 1 ? "" : "s");
    broker_notify_ready(&app.notify, &app.loop, what);
  } else {
    stop(&app);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&app.loop) != 0) {
    app_log(&app, MDP_LOG_ERROR, "handles left open at exit");
    status = 1;
  }
  mdp_zmq_context_term();
  if (status == 0)
    app_log(&app, MDP_LOG_INFO, "stopped");
  return status;
}
