/* mdp-broker: a Majordomo broker (MDP/0.2, RFC 18, with MMI) as a program.
 *
 * A thin shell around mdp_broker_t: options, logging (text or JSON, to
 * stderr or --log-file), SIGINT/SIGTERM for a clean stop, SIGHUP to reload
 * the configuration, --check-config, optional periodic stats, systemd
 * notifications (mdp-broker-notify.h), the HTTP listener of --metrics.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mdp.h>
#include <zmq.h>

#include "mdp-broker-acl.h"
#include "mdp-broker-log.h"
#include "mdp-broker-notify.h"
#include "mdp-broker-options.h"
#include "mdp-broker-metrics.h"

typedef struct {
  uv_loop_t loop;
  mdp_broker_t *broker;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t stats_timer;
  uv_timer_t grace_timer; /* --stop-grace: the stop after the first signal */
  broker_notify_t notify;
  broker_metrics_t *metrics; /* --metrics, or NULL */
  broker_cli_t cli;          /* the configuration last read */
  /* What the broker runs with of the settings a reload cannot change (the
   * first configuration's; strings copied, freed by run_free). */
  broker_cli_t run;
  int argc;
  char **argv;
  int stopping;
  int draining; /* a signal came; stopping when grace_timer fires */
  uint64_t reloads;
  /* CURVE: the allow-list's key names now (a key removed by a reload is
   * refused on its next READY or REQUEST), and the access list. */
  broker_names_t *names;
  broker_acl_t *acl;
  /* Connected peers (clients and workers), from the ROUTER's monitor:
   * accepted connections less closed ones. */
  mdp_reactor_t *monitor;
  uint64_t connections;
} app_t;

static void on_monitor_event(mdp_reactor_t *r, mdp_msg_t *m) {
  app_t *app = mdp_reactor_get_data(r);
  /* [event (uint16) + value (uint32), endpoint] */
  if (mdp_msg_size(m) >= 1 && mdp_msg_frame_size(m, 0) >= 2) {
    uint16_t event;
    memcpy(&event, mdp_msg_data(m, 0), sizeof event);
    if (event == ZMQ_EVENT_ACCEPTED)
      app->connections++;
    else if (event == ZMQ_EVENT_DISCONNECTED && app->connections > 0)
      app->connections--;
  }
  mdp_msg_destroy(m);
}

/* Watches the broker's connections for the clients gauge; without it the
 * gauge is left out (a monitor that cannot start costs nothing else). */
static void start_monitor(app_t *app) {
  char ep[64];
  snprintf(ep, sizeof ep, "inproc://mdp-broker.monitor.%ld", (long)getpid());
  void *pair = zmq_socket(mdp_zmq_context(), ZMQ_PAIR);
  if (pair == NULL ||
      mdp_broker_monitor(app->broker, ep,
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0 ||
      zmq_connect(pair, ep) != 0 ||
      mdp_reactor_new(&app->loop, pair, 1, on_monitor_event, &app->monitor) <
          0) {
    if (pair != NULL)
      zmq_close(pair);
    mdp_broker_monitor(app->broker, NULL, 0);
    app->monitor = NULL;
    broker_logf(MDP_LOG_WARN, "cannot watch the broker's connections: "
                "no connected-clients figure");
    return;
  }
  mdp_reactor_set_data(app->monitor, app);
  mdp_reactor_start(app->monitor);
}

/* The library's access hook: a key still in the allow-list, and allowed
 * by the access list. */
static int on_access(void *data, mdp_broker_access_t role,
                     const uint8_t *service, size_t size, const char *user) {
  app_t *app = data;
  if (app->names != NULL && !broker_names_has(app->names, user))
    return 0;
  return broker_acl_allows(app->acl, role, service, size, user);
}

/* Loads the access list and the allow-list's names of `cli` (each NULL
 * when not configured).  0, or -1 with the first error in `err`. */
static int load_access(const broker_cli_t *cli, broker_names_t **names,
                       broker_acl_t **acl, char *err, size_t size) {
  *names = NULL;
  *acl = NULL;
  if (cli->broker.curve_allow != NULL &&
      broker_names_load(cli->broker.curve_allow, names, err, size) < 0)
    return -1;
  if (cli->curve_acl != NULL &&
      broker_acl_load(cli->curve_acl, acl, err, size) < 0) {
    broker_names_free(*names);
    *names = NULL;
    return -1;
  }
  return 0;
}

static void warn_unknown_name(void *data, const char *file, size_t line,
                              const char *name) {
  (void)data;
  broker_logf(MDP_LOG_WARN,
              "%s:%zu: %s has no key in the allow-list: it matches nothing "
              "until its .pub is added and the broker reloads",
              file, line, name);
}

static void print_unknown_name(void *data, const char *file, size_t line,
                               const char *name) {
  (void)data;
  fprintf(stderr, "mdp-broker: warning: %s:%zu: %s has no key in the "
          "allow-list: it matches nothing until its .pub is added and the "
          "broker reloads\n", file, line, name);
}

static void log_line(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  broker_log_line(level, line);
}

/* The library's threshold for a configuration: worker arrivals and
 * departures are INFO, shown only with -v; the program's own start-up
 * lines are shown unless -q. */
static mdp_log_level_t library_level(const broker_cli_t *cli) {
  return cli->level == MDP_LOG_DEBUG   ? MDP_LOG_DEBUG
         : cli->level == MDP_LOG_ERROR ? MDP_LOG_ERROR
         : cli->verbose                ? MDP_LOG_INFO
                                       : MDP_LOG_WARN;
}

static void on_broker_closed(mdp_broker_t *broker) {
  app_t *app = mdp_broker_get_data(broker);
  app->broker = NULL;
  /* The HTTP listener answered /readyz 503 while the broker closed. */
  broker_metrics_stop(app->metrics);
  app->metrics = NULL;
}

static void stop(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  broker_notify_stopping(&app->notify);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sighup, NULL);
  uv_close((uv_handle_t *)&app->stats_timer, NULL);
  uv_close((uv_handle_t *)&app->grace_timer, NULL);
  broker_metrics_set_ready(app->metrics, -1);
  if (app->monitor != NULL) {
    broker_metrics_set_connections(app->metrics, NULL);
    if (app->broker)
      mdp_broker_monitor(app->broker, NULL, 0);
    mdp_reactor_close(app->monitor, NULL);
    app->monitor = NULL;
  }
  if (app->broker) {
    mdp_broker_close(app->broker, on_broker_closed);
  } else {
    broker_metrics_stop(app->metrics);
    app->metrics = NULL;
  }
}

static void on_grace_over(uv_timer_t *timer) {
  app_t *app = timer->data;
  broker_logf(MDP_LOG_INFO, "stop grace over, stopping");
  stop(app);
}

/* The first SIGTERM or SIGINT with --stop-grace: /readyz says "stopping" at
 * once while everything else goes on, so that a load balancer polling it
 * takes the broker out before its workers are sent DISCONNECT; the stop
 * comes when the grace is over, or at a second signal. */
static void on_signal(uv_signal_t *sig, int signum) {
  app_t *app = sig->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  uint64_t grace = app->cli.stop_grace_ms;
  if (app->draining || grace == 0) {
    broker_logf(MDP_LOG_INFO, "%s received, stopping", name);
    stop(app);
    return;
  }
  app->draining = 1;
  broker_metrics_set_ready(app->metrics, -1);
  broker_notify_stopping(&app->notify);
  uv_timer_start(&app->grace_timer, on_grace_over, grace, 0);
  broker_logf(MDP_LOG_INFO, "%s received, stopping in %.3g s (--stop-grace; "
              "/readyz answers 503 meanwhile, a second signal stops at once)",
              name, grace / 1000.0);
}

static void on_stats(uv_timer_t *timer) {
  app_t *app = timer->data;
  mdp_broker_stats_t s;
  mdp_broker_get_stats(app->broker, &s);
  /* Asked for explicitly, so printed unless -q. */
  broker_logf(MDP_LOG_INFO,
              "stats: workers %zu (idle %zu) services %zu queued %zu | "
              "requests %llu replies %llu partials %llu mmi %llu "
              "redispatched %llu | dropped: invalid %llu expired %llu "
              "queue-full %llu unroutable %llu worker-lost %llu",
              s.workers, s.workers_idle, s.services, s.queued,
              (unsigned long long)s.requests, (unsigned long long)s.replies,
              (unsigned long long)s.partials,
              (unsigned long long)s.mmi_requests,
              (unsigned long long)s.redispatched,
              (unsigned long long)s.dropped_invalid,
              (unsigned long long)s.dropped_expired,
              (unsigned long long)s.dropped_queue_full,
              (unsigned long long)s.dropped_unroutable,
              (unsigned long long)s.dropped_worker_lost);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void run_snapshot(app_t *app) {
  broker_cli_t *r = &app->run;
  *r = app->cli;
  r->file_text = NULL;
  r->config_file = NULL;
  r->log_file = NULL;
  r->binds = calloc(app->cli.n_binds + 1, sizeof *r->binds);
  r->n_binds = 0;
  for (size_t i = 0; r->binds && i < app->cli.n_binds; i++)
    r->binds[r->n_binds++] = dup_or_null(app->cli.binds[i]);
  r->curve_secret_file = dup_or_null(app->cli.curve_secret_file);
  r->broker.curve_allow = dup_or_null(app->cli.broker.curve_allow);
  r->metrics = dup_or_null(app->cli.metrics);
}

static void run_free(app_t *app) {
  broker_cli_t *r = &app->run;
  for (size_t i = 0; r->binds && i < r->n_binds; i++)
    free((char *)r->binds[i]);
  free(r->binds);
  free((char *)r->curve_secret_file);
  free((char *)r->broker.curve_allow);
  free((char *)r->metrics);
  memset(r, 0, sizeof *r);
}

/* ---- SIGHUP: reload ------------------------------------------------------ */

static int same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Settings a running broker cannot change: each that differs is logged
 * as needing a restart and keeps its old value. */
static void warn_restart_only(const broker_cli_t *old,
                              const broker_cli_t *new) {
  const mdp_broker_options_t *a = &old->broker, *b = &new->broker;
  int binds = old->n_binds != new->n_binds;
  for (size_t i = 0; !binds && i < old->n_binds; i++)
    binds = strcmp(old->binds[i], new->binds[i]) != 0;
  const struct {
    int changed;
    const char *what;
  } checks[] = {
      {binds, "bind"},
      {a->heartbeat_interval_ms != b->heartbeat_interval_ms ||
           a->heartbeat_liveness != b->heartbeat_liveness,
       "heartbeat-interval/heartbeat-timeout/heartbeat-liveness"},
      {a->busy_timeout_ms != b->busy_timeout_ms ||
           a->silent_busy_timeout_ms != b->silent_busy_timeout_ms ||
           a->silent_busy_dialects != b->silent_busy_dialects,
       "busy-worker-timeout/silent-busy"},
      {a->request_expiry_ms != b->request_expiry_ms, "request-expiry"},
      {a->dialects != b->dialects, "dialects"},
      {a->max_msg_size != b->max_msg_size, "max-msg-size"},
      {a->socket.ipv6 != b->socket.ipv6 || a->socket.sndhwm != b->socket.sndhwm ||
           a->socket.rcvhwm != b->socket.rcvhwm ||
           a->socket.tcp_keepalive != b->socket.tcp_keepalive ||
           a->socket.tcp_keepalive_idle != b->socket.tcp_keepalive_idle,
       "ipv6/sndhwm/rcvhwm/tcp-keepalive"},
      {!same_str(old->curve_secret_file, new->curve_secret_file) ||
           (a->curve_allow == NULL) != (b->curve_allow == NULL),
       "curve-secret-key (CURVE on or off)"},
      {!same_str(old->metrics, new->metrics) ||
           old->metrics_timeout_s != new->metrics_timeout_s ||
           old->metrics_max_connections != new->metrics_max_connections ||
           a->metrics_max_services != b->metrics_max_services,
       "metrics/metrics-timeout/metrics-max-connections/"
       "metrics-max-services"},
      /* The allocator is set once, before any thread (mdp_malloc_tune). */
      {old->malloc_keep != new->malloc_keep, "malloc-keep"},
  };
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
    if (checks[i].changed)
      broker_logf(MDP_LOG_WARN,
                  "reload: %s changed, which needs a restart; the running "
                  "broker keeps the old value",
                  checks[i].what);
}

static void reload(app_t *app) {
  uint64_t t0 = uv_hrtime();
  app->reloads++;
  broker_notify_reloading(&app->notify);
  broker_logf(MDP_LOG_INFO, "SIGHUP received, reloading %s",
              app->cli.config_file ? app->cli.config_file
                                   : "(no config file: the command line)");
  broker_cli_t next;
  char why[768];
  broker_cli_capture_errors(why, sizeof why);
  int rc = broker_cli_parse(&next, app->argc, app->argv);
  broker_cli_capture_errors(NULL, 0);
  const char *status = "reload refused: running with the previous "
                       "configuration";
  if (rc >= 0) {
    broker_logf(MDP_LOG_ERROR, "reload refused, the configuration has an "
                "error: %s; still running with the previous one",
                why[0] ? why : "(no detail)");
    broker_cli_free(&next);
    broker_notify_reloaded(&app->notify, status);
    return;
  }
  /* Everything that can fail, in an order that leaves nothing to undo
   * but the log sink: the access list and the allow-list's names (read
   * only), the log sink (a file of the same name is opened again, which
   * is what logrotate needs of a SIGHUP), then the allow-list, whose
   * reload is all or nothing in the library. */
  int curve = app->run.broker.curve_allow != NULL;       /* CURVE runs */
  int curve_next = curve && next.broker.curve_allow != NULL;
  broker_names_t *names = NULL;
  broker_acl_t *acl = NULL;
  if (curve_next && load_access(&next, &names, &acl, why, sizeof why) < 0) {
    broker_logf(MDP_LOG_ERROR, "reload refused: %s; still running with the "
                "previous configuration", why);
    broker_cli_free(&next);
    broker_notify_reloaded(&app->notify, status);
    return;
  }
  broker_log_format_t old_format = broker_log_format();
  const char *old_path = app->cli.log_file;
  int err = broker_log_open(next.log_format, next.log_file);
  if (err < 0) {
    broker_logf(MDP_LOG_ERROR, "reload refused: cannot open the log file "
                "%s: %s; still running with the previous configuration",
                next.log_file, strerror(-err));
    broker_names_free(names);
    broker_acl_free(acl);
    broker_cli_free(&next);
    broker_notify_reloaded(&app->notify, status);
    return;
  }
  if (curve_next) {
    err = mdp_broker_reload_curve_allow(app->broker, &next.broker);
    if (err < 0) {
      broker_log_open(old_format, old_path); /* undo: all or nothing */
      broker_logf(MDP_LOG_ERROR, "reload refused: the allow-list %s did "
                  "not load (%s; the line above says where); still running "
                  "with the previous configuration",
                  next.broker.curve_allow, mdp_strerror(err));
      broker_names_free(names);
      broker_acl_free(acl);
      broker_cli_free(&next);
      broker_notify_reloaded(&app->notify, status);
      return;
    }
    broker_names_free(app->names);
    broker_acl_free(app->acl);
    app->names = names;
    app->acl = acl;
    broker_acl_unknown_names(acl, names, warn_unknown_name, NULL);
  }
  /* (CURVE turned off in the file: a restart-only change, logged below;
   * the allow-list and access list in force stay.) */
  broker_log_set_level(next.level); /* first: the lines below are in it */
  warn_restart_only(&app->run, &next);
  mdp_broker_set_limits(app->broker, &next.broker);
  mdp_broker_set_log_level(app->broker, library_level(&next));
  if (next.stats_ms != app->cli.stats_ms) {
    uv_timer_stop(&app->stats_timer);
    if (next.stats_ms > 0)
      uv_timer_start(&app->stats_timer, on_stats, next.stats_ms,
                     next.stats_ms);
  }
  if (curve_next) {
    /* A key taken out of the allow-list, or out of a service's lines in
     * the access list: its registered workers go now, not at their next
     * READY (which a connected worker never sends again). */
    int gone = mdp_broker_recheck_access(app->broker);
    if (gone > 0)
      broker_logf(MDP_LOG_WARN, "reload: %d worker%s no longer allowed by "
                  "the access list or the allow-list sent DISCONNECT", gone,
                  gone == 1 ? "" : "s");
    else if (gone < 0)
      broker_logf(MDP_LOG_ERROR, "reload: registered workers not checked "
                  "against the new lists: %s", mdp_strerror(gone));
  }
  broker_cli_free(&app->cli);
  app->cli = next;
  double ms = (uv_hrtime() - t0) / 1e6;
  broker_logf(MDP_LOG_INFO, "reloaded in %.3f ms (reload %llu)", ms,
              (unsigned long long)app->reloads);
  broker_notify_reloaded(&app->notify, "reloaded");
}

static void on_sighup(uv_signal_t *sig, int signum) {
  (void)signum;
  app_t *app = sig->data;
  if (!app->stopping && app->broker != NULL)
    reload(app);
}

/* ---- --check-config ------------------------------------------------------ */

static void check_log(void *data, mdp_log_level_t level, const char *line) {
  int *errors = data;
  if (level == MDP_LOG_ERROR) {
    (*errors)++;
    fprintf(stderr, "mdp-broker: %s\n", line);
  } else if (level == MDP_LOG_WARN) {
    fprintf(stderr, "mdp-broker: warning: %s\n", line);
  }
}

static void on_check_closed(mdp_broker_t *broker) { (void)broker; }

/* Everything the broker would check at start, without binding: the
 * options (already parsed), the key files and the allow-list (creating the
 * broker reads them), the log file.  0 and "configuration ok", or
 * EXIT_USAGE after the first error. */
static int check_config(broker_cli_t *cli, mdp_broker_options_t *opts) {
  int errors = 0;
  opts->log_cb = check_log;
  opts->log_data = &errors;
  opts->log_level = MDP_LOG_WARN;
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_t *b = NULL;
  int err = mdp_broker_new(&loop, opts, &b);
  if (err < 0) {
    if (errors == 0)
      fprintf(stderr, "mdp-broker: the options are refused: %s\n",
              mdp_strerror(err));
    uv_loop_close(&loop);
    mdp_zmq_context_term();
    return EXIT_USAGE;
  }
  mdp_broker_close(b, on_check_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  mdp_zmq_context_term();
  if (cli->log_file != NULL) {
    /* Writable, or creatable in its directory: checked, not created. */
    int ok = access(cli->log_file, W_OK) == 0;
    if (!ok && errno == ENOENT) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s", cli->log_file);
      char *slash = strrchr(dir, '/');
      if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
      else if (slash == dir)
        dir[1] = '\0';
      else
        *slash = '\0';
      ok = access(dir, W_OK) == 0;
    }
    if (!ok) {
      fprintf(stderr, "mdp-broker: --log-file %s: cannot write: %s\n",
              cli->log_file, strerror(errno));
      return EXIT_USAGE;
    }
  }
  broker_names_t *names;
  broker_acl_t *acl;
  char why[768];
  if (load_access(cli, &names, &acl, why, sizeof why) < 0) {
    fprintf(stderr, "mdp-broker: %s\n", why);
    return EXIT_USAGE;
  }
  broker_acl_unknown_names(acl, names, print_unknown_name, NULL);
  broker_names_free(names);
  broker_acl_free(acl);
  printf("configuration ok\n");
  return 0;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv) {
  app_t app;
  memset(&app, 0, sizeof app);
  app.argc = argc;
  app.argv = argv;
  broker_cli_t *cli = &app.cli;
  int rc = broker_cli_parse(cli, argc, argv);
  mdp_broker_options_t opts = cli->broker;
  mdp_curve_keypair_t curve_pair;
  memset(&curve_pair, 0, sizeof curve_pair);
  if (rc < 0 && cli->curve_secret_file != NULL) {
    const char *file = cli->curve_secret_file;
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
  if (rc < 0 && cli->check_config) {
    rc = check_config(cli, &opts);
    memset(&curve_pair, 0, sizeof curve_pair);
  }
  if (rc < 0) {
    int err = broker_log_open(cli->log_format, cli->log_file);
    if (err < 0) {
      fprintf(stderr, "mdp-broker: --log-file %s: %s\n", cli->log_file,
              strerror(-err));
      rc = EXIT_USAGE;
    }
  }
  if (rc >= 0) {
    memset(&curve_pair, 0, sizeof curve_pair);
    broker_cli_free(cli);
    return rc;
  }
  /* Before any thread: large bodies reuse freed buffers instead of
   * faulting fresh pages in (include/mdp/malloc.h). */
  int untuned = cli->malloc_keep > 0 && mdp_malloc_tune(cli->malloc_keep) < 0;
  broker_log_set_level(cli->level);
  opts.log_cb = log_line;
  opts.log_level = library_level(cli);
  uv_loop_init(&app.loop);
  int err = mdp_broker_new(&app.loop, &opts, &app.broker);
  if (err < 0) {
    broker_logf(MDP_LOG_ERROR, "cannot create the broker: %s",
                mdp_strerror(err));
    memset(&curve_pair, 0, sizeof curve_pair);
    broker_cli_free(cli);
    uv_loop_close(&app.loop);
    mdp_zmq_context_term();
    broker_log_close();
    return 1;
  }
  /* (Said after the library's starting line, in the chosen format.) */
  if (untuned)
    broker_logf(MDP_LOG_INFO, "malloc-keep: the C library's allocator "
                "cannot be tuned here (not glibc's, or a sanitizer's); "
                "using its defaults");
  mdp_broker_set_data(app.broker, &app);
  /* After the broker: it has judged the allow-list itself (and said what
   * is wrong with it); this reads its names and the access list. */
  char why[768];
  if (load_access(cli, &app.names, &app.acl, why, sizeof why) < 0) {
    broker_logf(MDP_LOG_ERROR, "%s", why);
    memset(&curve_pair, 0, sizeof curve_pair);
    mdp_broker_close(app.broker, on_broker_closed);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    mdp_zmq_context_term();
    broker_cli_free(cli);
    broker_log_close();
    return EXIT_USAGE;
  }
  broker_acl_unknown_names(app.acl, app.names, warn_unknown_name, NULL);
  if (app.names != NULL)
    mdp_broker_set_access_cb(app.broker, on_access, &app);
  run_snapshot(&app);
  broker_logf(MDP_LOG_INFO,
              "libmdp %s starting: heartbeat %.3f s x %u, request expiry "
              "%.3f s, max queue %zu",
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
  broker_logf(MDP_LOG_INFO,
              "busy workers: %s may be silent %s; others are judged by "
              "heartbeats%s",
              silent[0] ? silent : "none", bound,
              opts.busy_timeout_ms ? " and the busy timeout" : "");
  if (cli->curve_secret_file != NULL)
    broker_logf(MDP_LOG_INFO,
                "CURVE on: broker public key %s, peers allowed from %s",
                curve_pair.public_key, opts.curve_allow);
  memset(&curve_pair, 0, sizeof curve_pair); /* libzmq has its own copy */
  /* The signals first: a SIGTERM that comes once the first endpoint is
   * listening must stop the broker cleanly, not kill it; a SIGHUP (a
   * reload, or a terminal gone) must not kill it either. */
  uv_signal_init(&app.loop, &app.sigint);
  uv_signal_init(&app.loop, &app.sigterm);
  uv_signal_init(&app.loop, &app.sighup);
  uv_timer_init(&app.loop, &app.stats_timer);
  uv_timer_init(&app.loop, &app.grace_timer);
  app.sigint.data = app.sigterm.data = app.sighup.data = &app;
  app.stats_timer.data = app.grace_timer.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);
  uv_signal_start(&app.sighup, on_sighup, SIGHUP);
  int status = 0;
  /* The HTTP listener before the endpoints: /readyz answers 503 until
   * every endpoint is bound. */
  if (cli->metrics != NULL) {
    broker_metrics_conf_t mc = {cli->metrics, cli->metrics_timeout_s,
                                cli->metrics_max_connections,
                                cli->metrics_min_interval_ms};
    char where[300];
    if (broker_metrics_start(&app.loop, app.broker, &mc, &app.metrics, where,
                             sizeof where) < 0)
      status = 1;
    else
      broker_logf(MDP_LOG_INFO, "metrics on http://%s/metrics", where);
  }
  if (status == 0 && app.metrics != NULL) {
    start_monitor(&app);
    if (app.monitor != NULL)
      broker_metrics_set_connections(app.metrics, &app.connections);
  }
  for (size_t i = 0; status == 0 && i < cli->n_binds; i++) {
    /* An endpoint libmdp refuses outright (no port, a port out of range:
     * libzmq would wrap it) is a usage error, as a bad option is. */
    if (mdp_endpoint_check(cli->binds[i], 1) < 0) {
      broker_logf(MDP_LOG_ERROR, "cannot bind to %s: not a valid endpoint "
                  "(a tcp:// port is 1..65535, 0 or *); see --help",
                  cli->binds[i]);
      status = 2;
      break;
    }
    err = mdp_broker_bind(app.broker, cli->binds[i]);
    if (err < 0) {
      /* The library's error line said why (and what a bind accepts). */
      status = 1;
      break;
    }
    char ep[256];
    mdp_broker_last_endpoint(app.broker, ep, sizeof ep);
    broker_logf(MDP_LOG_INFO, "listening on %s", ep);
  }

  if (status == 0) {
    if (cli->stats_ms > 0)
      uv_timer_start(&app.stats_timer, on_stats, cli->stats_ms,
                     cli->stats_ms);
    broker_metrics_set_ready(app.metrics, 1);
    char what[64];
    snprintf(what, sizeof what, "listening on %zu endpoint%s", cli->n_binds,
             cli->n_binds == 1 ? "" : "s");
    broker_notify_ready(&app.notify, &app.loop, what);
  } else {
    stop(&app);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&app.loop) != 0) {
    broker_logf(MDP_LOG_ERROR, "handles left open at exit");
    status = 1;
  }
  mdp_zmq_context_term();
  if (status == 0)
    broker_logf(MDP_LOG_INFO, "stopped");
  broker_cli_free(cli);
  run_free(&app);
  broker_names_free(app.names);
  broker_acl_free(app.acl);
  broker_log_close();
  return status;
}
