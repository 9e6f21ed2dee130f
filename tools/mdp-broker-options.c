/* mdp-broker's options: the command line, Majortomo's short options, and
 * the config file, all through one table and one apply_option(). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp-broker-options.h"
#include "mdp-broker-metrics.h"

/* A printf format: %s is whether this build sends systemd notifications. */
const char broker_usage_text[] =
    "Usage: mdp-broker [OPTION]...\n"
    "Run a Majordomo broker (MDP/0.2, RFC 18, with MMI, RFC 8).\n"
    "Majortomo's command line works unchanged: -b URL -i SEC -t SEC -B SEC\n"
    "-V -D mean what they mean to `python -m majortomo.broker`.\n"
    "\n"
    "Options:\n"
    "  -b, --bind URL, --bind-url URL\n"
    "                              endpoint to bind (repeatable; tcp://, ipc://),\n"
    "                              default " MDP_DEFAULT_ENDPOINT "; a tcp://\n"
    "                              bind takes an address (127.0.0.1, [::1]), an\n"
    "                              interface name (lo, eth0) or *, not a host\n"
    "                              name\n"
    "  -i, --heartbeat-interval S  seconds between heartbeats to each worker\n"
    "                              (default 2.5)\n"
    "  -t, --heartbeat-timeout S   seconds of silence after which a worker is\n"
    "                              removed; a whole multiple of the interval,\n"
    "                              as in Majortomo (default 10)\n"
    "      --heartbeat-liveness N  the same as a count of intervals (default 4);\n"
    "                              give -t or this, or both if they agree\n"
    "  -B, --busy-worker-timeout S, --busy-timeout S\n"
    "                              longest a worker may hold one request before\n"
    "                              it is dropped and the request sent to\n"
    "                              another worker; 0 = no bound (default: 900\n"
    "                              for workers that may be silent while busy,\n"
    "                              none for the others)\n"
    "      --silent-busy LIST      dialects whose busy workers are not removed\n"
    "                              for silence, only by -B: comma-separated,\n"
    "                              from rfc18, majortomo, mdp01, or 'none'\n"
    "                              (default majortomo,mdp01: their worker\n"
    "                              libraries heartbeat only while idle; add\n"
    "                              rfc18 for a synchronous RFC 18 library)\n"
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
    "      --max-mmi-reply-bytes N bytes of names in one mmi.services reply, each\n"
    "                              charged 64 more; 0 = unlimited (default 65536)\n"
    "      --malloc-keep MIB       free memory the allocator keeps for reuse, per\n"
    "                              heap, so large messages do not fault fresh\n"
    "                              pages in (mdp_malloc_tune, docs/performance.md);\n"
    "                              0 = the C library's defaults (default 256)\n"
    "      --ipv6                  IPv6 too: tcp://* binds both IPv4 and IPv6 (an\n"
    "                              IPv6 literal such as tcp://[::1]:5555 works\n"
    "                              without it)\n"
    "      --sndhwm N, --rcvhwm N  ZeroMQ's high-water marks: messages queued per\n"
    "                              peer; 0 = libzmq's default (1000)\n"
    "      --tcp-keepalive S       TCP keepalive probes after S seconds idle, so a\n"
    "                              peer behind a dead link or NAT is noticed;\n"
    "                              0 = the system's setting (default)\n"
    "      --disconnect-expired    send DISCONNECT to a worker removed for silence\n"
    "                              (as Majortomo's broker does); by default it is\n"
    "                              sent nothing more, as RFC 18 says\n"
    "      --dialects LIST         dialects to accept, comma-separated, from\n"
    "                              rfc18, majortomo, mdp01 (default: all three;\n"
    "                              each peer is answered in its own)\n"
    "      --curve-secret-key FILE CURVE: encrypt and authenticate every peer\n"
    "                              with the broker's key pair from FILE (an\n"
    "                              mdp-keygen NAME.secret); needs --curve-allow\n"
    "      --curve-allow DIR|FILE  public keys of the clients and workers let in:\n"
    "                              the *.pub files of DIR, or the public-key\n"
    "                              lines of FILE; everyone else is refused\n"
    "      --curve-acl FILE        which keys may request or serve which\n"
    "                              services: 'SERVICE ROLE NAME...' lines,\n"
    "                              ROLE request or serve, NAME an allow-list\n"
    "                              key's name (client-1 for client-1.pub) or\n"
    "                              *; a service no line names stays open\n"
    "                              (docs/security.md); reloaded on SIGHUP\n"
    "      --stats-interval S      log a one-line stats summary every S seconds;\n"
    "                              0 = never (default 0)\n"
    "      --metrics HOST:PORT     serve Prometheus metrics at\n"
    "                              http://HOST:PORT/metrics from the broker's\n"
    "                              loop (docs/metrics.md); port 0 picks one\n"
    "      --metrics-max-services N\n"
    "                              services with their own 'service' label;\n"
    "                              the others are summed as service=\"_other\"\n"
    "                              (default 100)\n"
    "      --metrics-timeout S     close a metrics connection idle or slow for\n"
    "                              S whole seconds (default 10)\n"
    "      --metrics-max-connections N\n"
    "                              metrics connections at once; more are\n"
    "                              refused (default 16)\n"
    "      --stop-grace S          on SIGTERM or SIGINT, answer /readyz 503 and\n"
    "                              go on serving for S seconds before the\n"
    "                              clean stop, so a load balancer can take\n"
    "                              the broker out first; a second signal\n"
    "                              stops at once (default 0: stop at once)\n"
    "      --metrics-min-interval S\n"
    "                              build a page (/metrics, /status) at most once\n"
    "                              per S seconds; requests in between get the\n"
    "                              last one, so scrapers cannot keep the\n"
    "                              broker's loop busy (default 0.2)\n"
    "  -c, --config FILE           read options from FILE first: 'key = value'\n"
    "                              lines, a key being a long option's name\n"
    "                              (bind may repeat; verbose = true), '#' starts\n"
    "                              a comment; the command line overrides it.\n"
    "                              Majortomo's YAML logging file is refused.\n"
    "  -V, -v, --verbose           also log worker arrivals and departures\n"
    "  -D, -d, --debug             also log every dropped or invalid message\n"
    "  -q, --quiet                 log errors only\n"
    "      --log-format FORMAT     text (default): 'TIME mdp-broker LEVEL: MESSAGE'\n"
    "                              lines; json: one JSON object per line with\n"
    "                              time (RFC 3339, UTC, ms), level, program\n"
    "                              and message, for a log shipper\n"
    "      --log-file PATH         log to PATH (appended to) instead of stderr;\n"
    "                              reopened on SIGHUP, for logrotate\n"
    "      --check-config          check the options, the config file, the key\n"
    "                              files and the allow-list, print\n"
    "                              'configuration ok' and exit 0, or the first\n"
    "                              error and exit 2; binds nothing\n"
    "  -h, --help                  show this help and exit\n"
    "      --version               show the version and exit (-V is --verbose,\n"
    "                              as in Majortomo)\n"
    "\n"
    "Busy workers, by dialect (docs/broker.md): an RFC 18 worker must heartbeat\n"
    "while busy and is removed after -t of silence; a Majortomo or MDP/0.1\n"
    "worker may be silent while it holds a request, bounded by -B.  In every\n"
    "dialect a worker whose process dies is noticed within about one interval\n"
    "(the broker's heartbeat to it fails) and its request goes to another.\n"
    "\n"
    "Durations are in seconds and may have fractions (-i 0.5); none may be\n"
    "over 4294967 s (49.7 days).\n"
    "SIGINT or SIGTERM stops the broker cleanly (workers get DISCONNECT).\n"
    "SIGHUP reloads the config file: log level and format, the log file\n"
    "(reopened), the CURVE allow-list and the queue and size limits change;\n"
    "what needs a restart (endpoints, heartbeats...) is logged and kept; a\n"
    "config with an error is refused whole and the old one kept.\n"
    "Under systemd (Type=notify) it sends READY=1 once every endpoint is bound,\n"
    "STOPPING=1 when it stops and WATCHDOG=1 at half of WatchdogSec, if it was\n"
    "built with libsystemd (this one: %s).\n"
    "Exit status: 0 after a clean stop, 1 if an endpoint cannot be bound or\n"
    "the broker fails, 2 for a bad option or config file.\n";

enum {
  OPT_HELP = 'h',
  OPT_BIND = 'b',
  OPT_INTERVAL = 'i',
  OPT_TIMEOUT = 't',
  OPT_BUSY = 'B',
  OPT_CONFIG = 'c',
  OPT_VERBOSE = 'V',
  OPT_DEBUG = 'D',
  OPT_QUIET = 'q',
  OPT_LIVENESS = 256,
  OPT_SILENT_BUSY,
  OPT_EXPIRY,
  OPT_MAX_QUEUE,
  OPT_MAX_QUEUED_TOTAL,
  OPT_MAX_PER_CLIENT,
  OPT_MAX_QUEUED_BYTES,
  OPT_MAX_SERVICES,
  OPT_MAX_WORKERS,
  OPT_MAX_FRAMES,
  OPT_MAX_MSG,
  OPT_MAX_REDISPATCH,
  OPT_DIALECTS,
  OPT_CURVE_SECRET,
  OPT_CURVE_ALLOW,
  OPT_STATS,
  OPT_LOG_FORMAT,
  OPT_VERSION,
  OPT_MAX_MMI_REPLY,
  OPT_DISCONNECT_EXPIRED,
  OPT_IPV6,
  OPT_SNDHWM,
  OPT_RCVHWM,
  OPT_TCP_KEEPALIVE,
  OPT_METRICS,
  OPT_METRICS_MAX_SERVICES,
  OPT_METRICS_TIMEOUT,
  OPT_METRICS_MAX_CONNECTIONS,
  OPT_LOG_FILE,
  OPT_CURVE_ACL,
  OPT_METRICS_MIN_INTERVAL,
  OPT_STOP_GRACE,
  OPT_CHECK_CONFIG,
  OPT_MALLOC_KEEP
};

static const struct option longopts[] = {
    {"bind", required_argument, NULL, OPT_BIND},
    {"bind-url", required_argument, NULL, OPT_BIND},
    {"heartbeat-interval", required_argument, NULL, OPT_INTERVAL},
    {"heartbeat-timeout", required_argument, NULL, OPT_TIMEOUT},
    {"heartbeat-liveness", required_argument, NULL, OPT_LIVENESS},
    {"busy-worker-timeout", required_argument, NULL, OPT_BUSY},
    {"busy-timeout", required_argument, NULL, OPT_BUSY},
    {"silent-busy", required_argument, NULL, OPT_SILENT_BUSY},
    {"request-expiry", required_argument, NULL, OPT_EXPIRY},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"max-queued-total", required_argument, NULL, OPT_MAX_QUEUED_TOTAL},
    {"max-queue-per-client", required_argument, NULL, OPT_MAX_PER_CLIENT},
    {"max-queued-bytes", required_argument, NULL, OPT_MAX_QUEUED_BYTES},
    {"max-services", required_argument, NULL, OPT_MAX_SERVICES},
    {"max-workers-per-service", required_argument, NULL, OPT_MAX_WORKERS},
    {"max-frames", required_argument, NULL, OPT_MAX_FRAMES},
    {"max-msg-size", required_argument, NULL, OPT_MAX_MSG},
    {"max-redispatch", required_argument, NULL, OPT_MAX_REDISPATCH},
    {"max-mmi-reply-bytes", required_argument, NULL, OPT_MAX_MMI_REPLY},
    {"malloc-keep", required_argument, NULL, OPT_MALLOC_KEEP},
    {"disconnect-expired", no_argument, NULL, OPT_DISCONNECT_EXPIRED},
    {"ipv6", no_argument, NULL, OPT_IPV6},
    {"sndhwm", required_argument, NULL, OPT_SNDHWM},
    {"rcvhwm", required_argument, NULL, OPT_RCVHWM},
    {"tcp-keepalive", required_argument, NULL, OPT_TCP_KEEPALIVE},
    {"dialects", required_argument, NULL, OPT_DIALECTS},
    {"curve-secret-key", required_argument, NULL, OPT_CURVE_SECRET},
    {"curve-allow", required_argument, NULL, OPT_CURVE_ALLOW},
    {"curve-acl", required_argument, NULL, OPT_CURVE_ACL},
    {"stats-interval", required_argument, NULL, OPT_STATS},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"metrics-max-services", required_argument, NULL, OPT_METRICS_MAX_SERVICES},
    {"metrics-timeout", required_argument, NULL, OPT_METRICS_TIMEOUT},
    {"metrics-max-connections", required_argument, NULL,
     OPT_METRICS_MAX_CONNECTIONS},
    {"metrics-min-interval", required_argument, NULL,
     OPT_METRICS_MIN_INTERVAL},
    {"stop-grace", required_argument, NULL, OPT_STOP_GRACE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"debug", no_argument, NULL, OPT_DEBUG},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

/* -v and -d are ours from before; -V and -D are Majortomo's. */
static const char shortopts[] = "b:i:t:B:c:vVdDqh";

#define CONFIG_MAX_BYTES (1024 * 1024)

/* Where a value came from, for error messages. */
typedef struct {
  const char *file; /* NULL: the command line */
  size_t line;
} origin_t;

/* Where usage errors go while a running broker reloads (NULL: stderr). */
static char *error_buf;
static size_t error_size;

void broker_cli_capture_errors(char *buf, size_t size) {
  error_buf = buf;
  error_size = size;
  if (buf != NULL && size > 0)
    buf[0] = '\0';
}

static int usage_error(const origin_t *at, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const origin_t *at, const char *fmt, ...) {
  if (error_buf != NULL) {
    if (error_buf[0] != '\0') /* the first error is the one to report */
      return EXIT_USAGE;
    size_t n = 0;
    if (at != NULL && at->file != NULL)
      n = (size_t)snprintf(error_buf, error_size, "%s:%zu: ", at->file,
                           at->line);
    if (n < error_size) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(error_buf + n, error_size - n, fmt, ap);
      va_end(ap);
    }
    return EXIT_USAGE;
  }
  fprintf(stderr, "mdp-broker: ");
  if (at != NULL && at->file != NULL)
    fprintf(stderr, "%s:%zu: ", at->file, at->line);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'mdp-broker --help' for more information.\n");
  return EXIT_USAGE;
}

/* Parses a duration in seconds (fractions allowed) into ms. */
static int parse_seconds(const char *text, uint64_t *ms) {
  char *end;
  errno = 0;
  double s = strtod(text, &end);
  if (end == text || *end != '\0' || errno || !isfinite(s) || s < 0 ||
      s * 1000.0 > (double)MDP_BROKER_TIME_MAX_MS)
    return -1;
  *ms = (uint64_t)llround(s * 1000.0);
  return 0;
}

static int parse_count(const char *text, long long min, long long max,
                       long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* "rfc18,mdp01" -> a mask of mdp_dialect_t; "none" -> 0 if allowed. */
static int parse_dialects(const char *text, int none_ok, unsigned *mask) {
  static const mdp_dialect_t all[] = {MDP_DIALECT_RFC18, MDP_DIALECT_MAJORTOMO,
                                      MDP_DIALECT_MDP01};
  *mask = 0;
  if (none_ok && strcmp(text, "none") == 0)
    return 0;
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

/* A flag's value in the config file. */
static int parse_bool(const char *text, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcmp(text, yes[i]) == 0)
      return *out = 1, 0;
    if (strcmp(text, no[i]) == 0)
      return *out = 0, 0;
  }
  return -1;
}

static const struct option *option_by_id(int id) {
  for (const struct option *o = longopts; o->name; o++)
    if (o->val == id)
      return o;
  return NULL;
}

/* The option's name as the user wrote it: "-i" on the command line (or its
 * long name), the key in a file. */
static int bad_value(const origin_t *at, const char *name, const char *value,
                     const char *expected) {
  return usage_error(at, "invalid %s%s '%s': %s", at->file ? "" : "--", name,
                     value, expected);
}

/* Applies one option.  `value` is NULL for a flag given on the command line.
 * Returns 0, or EXIT_USAGE after saying why. */
static int apply_option(broker_cli_t *cli, int id, const char *name,
                        const char *value, const origin_t *at) {
  mdp_broker_options_t *o = &cli->broker;
  long long n;
  int on = 1;
  if (value != NULL && (id == OPT_VERBOSE || id == OPT_DEBUG ||
                        id == OPT_QUIET || id == OPT_DISCONNECT_EXPIRED ||
                        id == OPT_IPV6)) {
    if (parse_bool(value, &on) < 0)
      return bad_value(at, name, value, "true or false expected");
  }
  switch (id) {
  case OPT_BIND:
    if (broker_check_endpoint(value, NULL, 0) < 0) {
      char why[200];
      broker_check_endpoint(value, why, sizeof why);
      return usage_error(at, "invalid %s%s '%s': %s", at->file ? "" : "--",
                         name, value, why);
    }
    if (at->file == NULL && !cli->binds_from_cli) {
      cli->binds_from_cli = 1; /* the command line's replace the file's */
      cli->n_binds = 0;
    }
    cli->binds[cli->n_binds++] = value;
    return 0;
  case OPT_INTERVAL:
    if (parse_seconds(value, &o->heartbeat_interval_ms) < 0 ||
        o->heartbeat_interval_ms == 0)
      return bad_value(at, name, value,
                       "a positive number of seconds is expected");
    cli->interval_set = 1;
    return 0;
  case OPT_TIMEOUT:
    if (parse_seconds(value, &cli->heartbeat_timeout_ms) < 0 ||
        cli->heartbeat_timeout_ms == 0)
      return bad_value(at, name, value,
                       "a positive number of seconds is expected");
    return 0;
  case OPT_LIVENESS:
    if (parse_count(value, 1, 1000000, &n) < 0)
      return bad_value(at, name, value, "a whole number from 1 is expected");
    o->heartbeat_liveness = (unsigned)n;
    cli->liveness_set = 1;
    return 0;
  case OPT_BUSY:
    if (parse_seconds(value, &o->silent_busy_timeout_ms) < 0)
      return bad_value(at, name, value, "seconds expected, or 0");
    o->busy_timeout_ms = o->silent_busy_timeout_ms; /* every dialect */
    return 0;
  case OPT_SILENT_BUSY:
    if (parse_dialects(value, 1, &o->silent_busy_dialects) < 0)
      return bad_value(at, name, value,
                       "a comma-separated list of rfc18, majortomo, mdp01, "
                       "or none expected");
    return 0;
  case OPT_EXPIRY:
    if (parse_seconds(value, &o->request_expiry_ms) < 0)
      return bad_value(at, name, value, "seconds expected");
    return 0;
  case OPT_MAX_QUEUED_BYTES:
  case OPT_MAX_MMI_REPLY:
    if (parse_count(value, 0, INT64_MAX, &n) < 0)
      return bad_value(at, name, value, "bytes, or 0");
    *(id == OPT_MAX_QUEUED_BYTES ? &o->max_queued_bytes
                                 : &o->max_mmi_reply_bytes) = (size_t)n;
    return 0;
  case OPT_DISCONNECT_EXPIRED:
    o->disconnect_expired = on;
    return 0;
  case OPT_IPV6:
    o->socket.ipv6 = on;
    return 0;
  case OPT_SNDHWM:
  case OPT_RCVHWM:
    if (parse_count(value, 0, INT32_MAX, &n) < 0)
      return bad_value(at, name, value,
                       "a message count, or 0 for libzmq's default (1000)");
    *(id == OPT_SNDHWM ? &o->socket.sndhwm : &o->socket.rcvhwm) = (int)n;
    return 0;
  case OPT_TCP_KEEPALIVE: {
    uint64_t idle_ms;
    if (parse_seconds(value, &idle_ms) < 0 || idle_ms / 1000 > INT32_MAX)
      return bad_value(at, name, value, "seconds expected, or 0 for off");
    o->socket.tcp_keepalive = idle_ms > 0 ? 1 : -1;
    o->socket.tcp_keepalive_idle =
        idle_ms > 0 ? (int)((idle_ms + 999) / 1000) : -1;
    return 0;
  }
  case OPT_MAX_QUEUE:
  case OPT_MAX_QUEUED_TOTAL:
  case OPT_MAX_SERVICES:
  case OPT_MAX_WORKERS:
  case OPT_MAX_FRAMES:
  case OPT_MAX_PER_CLIENT:
    if (parse_count(value, 0, 1000000000, &n) < 0)
      return bad_value(at, name, value,
                       "a whole number from 0 (no limit) expected");
    *(id == OPT_MAX_QUEUE          ? &o->max_queue
      : id == OPT_MAX_QUEUED_TOTAL ? &o->max_queued_total
      : id == OPT_MAX_SERVICES     ? &o->max_services
      : id == OPT_MAX_WORKERS      ? &o->max_workers_per_service
      : id == OPT_MAX_PER_CLIENT   ? &o->max_queue_per_client
                                   : &o->max_frames) = (size_t)n;
    return 0;
  case OPT_MAX_MSG:
    if (parse_count(value, -1, INT64_MAX, &n) < 0)
      return bad_value(at, name, value, "bytes, or -1");
    o->max_msg_size = n;
    return 0;
  case OPT_MAX_REDISPATCH:
    if (parse_count(value, 0, 1000, &n) < 0)
      return bad_value(at, name, value, "0 to 1000 expected");
    o->max_redispatch = (unsigned)n;
    return 0;
  case OPT_DIALECTS:
    if (parse_dialects(value, 0, &o->dialects) < 0)
      return bad_value(at, name, value,
                       "a comma-separated list of rfc18, majortomo, mdp01 "
                       "expected");
    return 0;
  case OPT_CURVE_SECRET:
    cli->curve_secret_file = value;
    return 0;
  case OPT_CURVE_ALLOW:
    o->curve_allow = value;
    return 0;
  case OPT_CURVE_ACL:
    cli->curve_acl = value;
    return 0;
  case OPT_STATS:
    if (parse_seconds(value, &cli->stats_ms) < 0)
      return bad_value(at, name, value, "seconds expected");
    return 0;
  case OPT_LOG_FORMAT:
    if (strcmp(value, "text") == 0)
      cli->log_format = BROKER_LOG_TEXT;
    else if (strcmp(value, "json") == 0)
      cli->log_format = BROKER_LOG_JSON;
    else
      return bad_value(at, name, value, "text or json expected");
    return 0;
  case OPT_METRICS:
    if (!broker_metrics_supported())
      return usage_error(at, "--metrics: built without metrics support "
                             "(libmicrohttpd; meson -Dmetrics=enabled)");
    switch (broker_metrics_check_address(value)) {
    case 0:
      break;
    case -2:
      return bad_value(at, name, value, "the port is out of range (0 to "
                                        "65535)");
    default:
      return bad_value(at, name, value, "HOST:PORT expected, HOST an IP "
                       "address ([...] for IPv6) or localhost, PORT 0 to "
                       "65535");
    }
    cli->metrics = value;
    return 0;
  case OPT_METRICS_MAX_SERVICES:
    if (parse_count(value, 0, 1000000, &n) < 0)
      return bad_value(at, name, value, "a whole number from 0 expected");
    o->metrics_max_services = (size_t)n;
    return 0;
  case OPT_LOG_FILE:
    if (*value == '\0')
      return bad_value(at, name, value, "a file name expected");
    cli->log_file = value;
    return 0;
  case OPT_METRICS_MIN_INTERVAL: {
    uint64_t ms;
    if (parse_seconds(value, &ms) < 0 || ms > 60000)
      return bad_value(at, name, value, "seconds from 0 to 60 expected");
    cli->metrics_min_interval_ms = (unsigned)ms;
    return 0;
  }
  case OPT_STOP_GRACE: {
    uint64_t ms;
    if (parse_seconds(value, &ms) < 0 || ms > 3600000)
      return bad_value(at, name, value, "seconds from 0 to 3600 expected");
    cli->stop_grace_ms = ms;
    return 0;
  }
  case OPT_MALLOC_KEEP:
    if (parse_count(value, 0, 2047, &n) < 0)
      return bad_value(at, name, value, "MiB from 0 to 2047 expected");
    cli->malloc_keep = (size_t)n << 20;
    return 0;
  case OPT_METRICS_TIMEOUT:
    if (parse_count(value, 1, 3600, &n) < 0)
      return bad_value(at, name, value, "whole seconds from 1 to 3600 "
                                        "expected");
    cli->metrics_timeout_s = (unsigned)n;
    return 0;
  case OPT_METRICS_MAX_CONNECTIONS:
    if (parse_count(value, 1, 1000, &n) < 0)
      return bad_value(at, name, value, "1 to 1000 expected");
    cli->metrics_max_connections = (unsigned)n;
    return 0;
  case OPT_VERBOSE:
    cli->verbose = on;
    return 0;
  case OPT_DEBUG:
    if (on)
      cli->level = MDP_LOG_DEBUG;
    return 0;
  case OPT_QUIET:
    if (on)
      cli->level = MDP_LOG_ERROR;
    return 0;
  default:
    return usage_error(at, "%s cannot be set here", name);
  }
}

int broker_check_endpoint(const char *ep, char *why, size_t size) {
  /* Only a numeric port out of range is refused here (libzmq would wrap
   * it into another port: 99999 binds 34463, -1 binds 65535); anything
   * else malformed is left to the bind, whose error names the endpoint. */
  const char *msg = NULL;
  const char *colon = strncmp(ep, "tcp://", 6) == 0 ? strrchr(ep + 6, ':')
                                                    : NULL;
  if (colon != NULL) {
    const char *d = colon + 1;
    int neg = *d == '-';
    size_t nd = strspn(d + neg, "0123456789");
    if (nd > 0 && d[neg + nd] == '\0' &&
        (neg || nd > 5 || strtol(d, NULL, 10) > 65535))
      msg = "the port is out of range (1 to 65535, or * for any free one)";
  }
  if (msg != NULL && why != NULL && size > 0)
    snprintf(why, size, "%s", msg);
  return msg != NULL ? -1 : 0;
}

/* ---- the config file -------------------------------------------------- */

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *end = s + strlen(s);
  while (end > s && isspace((unsigned char)end[-1]))
    *--end = '\0';
  return s;
}

/* A line of YAML rather than of ours: "---", or "name:" / "name: value"
 * with no '=' (Majortomo's -c file is a YAML logging configuration whose
 * first line is typically "logging:"). */
static int yaml_line(const char *line) {
  if (strcmp(line, "---") == 0)
    return 1;
  if (strchr(line, '=') != NULL)
    return 0;
  const char *p = line;
  while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')
    p++;
  return p > line && *p == ':' && (p[1] == '\0' || isspace((unsigned char)p[1]));
}

static int read_file(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -errno;
  char *buf = malloc(CONFIG_MAX_BYTES + 1);
  size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
  int err = buf == NULL ? -ENOMEM : ferror(f) ? -EIO : 0;
  fclose(f);
  if (err == 0 && n > CONFIG_MAX_BYTES)
    err = -EFBIG;
  if (err < 0) {
    free(buf);
    return err;
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

/* `argc`: the command line's size, for which cli->binds has room. */
static int apply_config_file(broker_cli_t *cli, const char *path,
                             size_t argc) {
  int err = read_file(path, &cli->file_text);
  if (err < 0)
    return usage_error(NULL, "cannot read config file %s: %s", path,
                       err == -EFBIG ? "larger than 1 MiB" : strerror(-err));
  /* Room for a bind per line of the file as well. */
  size_t lines = 1;
  for (const char *p = cli->file_text; (p = strchr(p, '\n')) != NULL; p++)
    lines++;
  const char **binds =
      realloc(cli->binds, (argc + lines + 2) * sizeof *cli->binds);
  if (binds == NULL)
    return usage_error(NULL, "out of memory");
  cli->binds = binds;
  origin_t at = {path, 0};
  char *next = cli->file_text;
  while (next != NULL) {
    char *line = next;
    next = strchr(line, '\n');
    if (next != NULL)
      *next++ = '\0';
    at.line++;
    /* A comment runs from a '#' at the start or after white space. */
    for (char *h = strchr(line, '#'); h != NULL; h = strchr(h + 1, '#'))
      if (h == line || isspace((unsigned char)h[-1])) {
        *h = '\0';
        break;
      }
    line = trim(line);
    if (*line == '\0')
      continue;
    if (yaml_line(line))
      return usage_error(&at,
                         "this looks like YAML (Majortomo's -c logging "
                         "configuration?); mdp-broker's config file has "
                         "'key = value' lines whose keys are its long "
                         "options (see --help); set logging with -V, -D "
                         "or -q");
    char *eq = strchr(line, '=');
    if (eq == NULL)
      return usage_error(&at, "expected 'key = value', got '%s'", line);
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    const struct option *o = longopts;
    while (o->name && strcmp(o->name, key) != 0)
      o++;
    if (o->name == NULL || o->val == OPT_CONFIG || o->val == OPT_HELP ||
        o->val == OPT_VERSION || o->val == OPT_CHECK_CONFIG)
      return usage_error(&at, "unknown key '%s' (keys are the long options "
                              "of --help, without the dashes)", key);
    if (*value == '\0')
      return usage_error(&at, "'%s' needs a value", key);
    int rc = apply_option(cli, o->val, key, value, &at);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- checks across options -------------------------------------------- */

/* -t is Majortomo's silence window: liveness x interval. */
static int resolve_heartbeat_timeout(broker_cli_t *cli) {
  mdp_broker_options_t *o = &cli->broker;
  uint64_t t = cli->heartbeat_timeout_ms, i = o->heartbeat_interval_ms;
  if (t == 0) {
    if (o->heartbeat_liveness > MDP_BROKER_TIME_MAX_MS / i)
      return usage_error(NULL, "--heartbeat-liveness %u x "
                               "--heartbeat-interval %.3f s is over %.0f s",
                         o->heartbeat_liveness, i / 1000.0,
                         MDP_BROKER_TIME_MAX_MS / 1000.0);
    return 0;
  }
  if (t < i)
    return usage_error(NULL,
                       "--heartbeat-timeout %.3f s is shorter than one "
                       "--heartbeat-interval (%.3f s)",
                       t / 1000.0, i / 1000.0);
  if (t % i != 0)
    return usage_error(NULL,
                       "--heartbeat-timeout (%.3f s) must be a whole multiple "
                       "of --heartbeat-interval (%.3f s), as in Majortomo",
                       t / 1000.0, i / 1000.0);
  if (t / i > 1000000)
    return usage_error(NULL, "--heartbeat-timeout is over a million "
                             "heartbeat intervals");
  unsigned liveness = (unsigned)(t / i);
  if (cli->liveness_set && liveness != o->heartbeat_liveness)
    return usage_error(NULL,
                       "--heartbeat-liveness %u contradicts "
                       "--heartbeat-timeout %.3f s at an interval of %.3f s "
                       "(liveness %u)",
                       o->heartbeat_liveness, t / 1000.0, i / 1000.0,
                       liveness);
  o->heartbeat_liveness = liveness;
  return 0;
}

int broker_cli_parse(broker_cli_t *cli, int argc, char **argv) {
  memset(cli, 0, sizeof *cli);
  optind = 0; /* GNU getopt: start afresh (a reload parses argv again) */
  mdp_broker_options_init(&cli->broker);
  cli->level = MDP_LOG_INFO;
  cli->metrics_timeout_s = BROKER_METRICS_TIMEOUT_S;
  cli->malloc_keep = MDP_MALLOC_KEEP_DEFAULT;
  cli->metrics_max_connections = BROKER_METRICS_MAX_CONNECTIONS;
  cli->metrics_min_interval_ms = BROKER_METRICS_MIN_INTERVAL_MS;
  /* The command line is read whole before anything is applied: the config
   * file it names goes first, so that the command line overrides it. */
  typedef struct {
    int id;
    const char *name, *value;
  } arg_t;
  arg_t *args = calloc((size_t)argc + 1, sizeof *args);
  cli->binds = calloc((size_t)argc + 2, sizeof *cli->binds);
  if (args == NULL || cli->binds == NULL) {
    free(args);
    fprintf(stderr, "mdp-broker: out of memory\n");
    return 1;
  }
  size_t n_args = 0;
  int c, index, rc = -1;
  origin_t cmdline = {NULL, 0};
  opterr = error_buf == NULL;
  while (rc < 0 &&
         (c = getopt_long(argc, argv, shortopts, longopts, &index)) != -1) {
    if (c == 'v')
      c = OPT_VERBOSE;
    else if (c == 'd')
      c = OPT_DEBUG;
    switch (c) {
    case OPT_HELP:
#ifdef MDP_HAVE_SYSTEMD
      printf(broker_usage_text, "yes");
#else
      printf(broker_usage_text, "no, so it sends none");
#endif
      rc = 0;
      break;
    case OPT_VERSION:
      printf("mdp-broker (libmdp) %s\n", MDP_VERSION_STRING);
      rc = 0;
      break;
    case OPT_CONFIG:
      cli->config_file = optarg;
      break;
    case OPT_CHECK_CONFIG:
      cli->check_config = 1;
      break;
    case '?':
      if (error_buf == NULL)
        fprintf(stderr, "Try 'mdp-broker --help' for more information.\n");
      else
        usage_error(NULL, "the command line has become invalid");
      rc = EXIT_USAGE; /* getopt said why */
      break;
    default: {
      const struct option *o = option_by_id(c);
      args[n_args++] = (arg_t){c, o ? o->name : "?", optarg};
      break;
    }
    }
  }
  if (rc < 0 && optind < argc)
    rc = usage_error(NULL, "unexpected argument '%s'", argv[optind]);
  if (rc < 0 && cli->config_file != NULL) {
    int frc = apply_config_file(cli, cli->config_file, (size_t)argc);
    if (frc)
      rc = frc;
  }
  for (size_t i = 0; rc < 0 && i < n_args; i++) {
    int arc = apply_option(cli, args[i].id, args[i].name, args[i].value,
                           &cmdline);
    if (arc)
      rc = arc;
  }
  free(args);
  if (rc < 0 && resolve_heartbeat_timeout(cli))
    rc = EXIT_USAGE;
  if (rc < 0 && (cli->curve_secret_file != NULL) !=
                    (cli->broker.curve_allow != NULL))
    rc = usage_error(NULL, "%s: --curve-secret-key and --curve-allow go "
                           "together",
                     cli->curve_secret_file ? "--curve-secret-key"
                                            : "--curve-allow");
  if (rc < 0 && cli->curve_acl != NULL && cli->curve_secret_file == NULL)
    rc = usage_error(NULL, "--curve-acl %s: needs CURVE (--curve-secret-key "
                           "and --curve-allow): keys are what it names",
                     cli->curve_acl);
  if (rc < 0 && cli->n_binds == 0)
    cli->binds[cli->n_binds++] = MDP_DEFAULT_ENDPOINT;
  return rc;
}

void broker_cli_free(broker_cli_t *cli) {
  free(cli->binds);
  free(cli->file_text);
  cli->binds = NULL;
  cli->file_text = NULL;
}
