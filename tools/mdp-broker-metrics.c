/* mdp-broker --metrics: the Prometheus endpoint (docs/metrics.md).
 *
 * libmicrohttpd runs without a thread of its own (MHD_USE_EPOLL, no
 * internal polling thread): its epoll descriptor is watched by a uv_poll_t
 * on the broker's loop, MHD_run() is called when it is readable, and a
 * uv_timer_t wakes it for MHD_get_timeout() (connection timeouts, and work
 * MHD has left over).  MHD_run() never blocks, so a scrape costs the
 * broker's loop only the time to format the page.  Abuse is bounded by MHD
 * itself: a connection limit, a per-connection memory limit (request line
 * and headers) and an inactivity timeout.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mdp-broker-log.h"
#include "mdp-broker-metrics.h"
#include "mdp-broker-page.h"

/* "HOST:PORT" or "[V6]:PORT" -> a socket address; HOST is a numeric
 * address or "localhost" (no name lookup: no DNS wait at start). */
static int parse_address(const char *text, struct sockaddr_storage *ss,
                         socklen_t *len) {
  if (strlen(text) >= 256)
    return -1;
  char host[256];
  const char *colon = strrchr(text, ':');
  if (colon == NULL || colon == text || colon[1] == '\0')
    return -1;
  size_t n = (size_t)(colon - text);
  if (text[0] == '[') {
    if (n < 3 || text[n - 1] != ']')
      return -1;
    text++;
    n -= 2;
  }
  if (n >= sizeof host)
    return -1;
  memcpy(host, text, n);
  host[n] = '\0';
  /* Digits only (no sign, no space), at most 5 of them, no more than
   * 65535: strtol alone would take "-1", and a wider type wrapped later
   * would turn 99999 into another port. */
  const char *digits = colon + 1;
  int neg = *digits == '-';
  size_t nd = strspn(digits + neg, "0123456789");
  if (nd == 0 || digits[neg + nd] != '\0')
    return -1;
  if (neg)
    return -2;
  if (nd > 5 || strtol(digits, NULL, 10) > 65535)
    return -2;
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof host, "127.0.0.1");
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST |
                                       AI_PASSIVE};
  struct addrinfo *res = NULL;
  if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
    return -1;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int broker_metrics_check_address(const char *text) {
  struct sockaddr_storage ss;
  socklen_t len;
  return parse_address(text, &ss, &len);
}

#ifndef MDP_HAVE_METRICS

int broker_metrics_supported(void) { return 0; }

int broker_metrics_start(uv_loop_t *loop, mdp_broker_t *broker,
                         const broker_metrics_conf_t *conf,
                         broker_metrics_t **out, char *bound, size_t size) {
  (void)loop, (void)broker, (void)conf, (void)out, (void)bound, (void)size;
  broker_logf(MDP_LOG_ERROR, "--metrics: built without metrics support");
  return -1;
}

void broker_metrics_stop(broker_metrics_t *m) { (void)m; }

void broker_metrics_set_ready(broker_metrics_t *m, int ready) {
  (void)m, (void)ready;
}

void broker_metrics_set_connections(broker_metrics_t *m,
                                    const uint64_t *connections) {
  (void)m, (void)connections;
}

#else /* MDP_HAVE_METRICS */

#include <microhttpd.h>

/* One open connection, from MHD's STARTED notification to its CLOSED one
 * (at most max_connections of them). */
typedef struct conn_s {
  struct conn_s *next, **prev;
  int fd;
  uint64_t opened_ms; /* uv_now */
} conn_t;

struct broker_metrics_s {
  uv_loop_t *loop;
  mdp_broker_t *broker;
  struct MHD_Daemon *daemon;
  uv_poll_t poll;
  uv_timer_t timer;
  /* Our own listening socket: each accepted connection is handed to MHD,
   * which refuses (closes at once) those beyond its connection limit.
   * MHD's own listener would instead stop accepting at the limit and
   * leave them waiting in the kernel's backlog. */
  int listen_fd;
  uv_poll_t listen_poll;
  uint64_t refused;
  /* MHD's timeout is for inactivity: a client that sends a byte now and
   * then (slowloris) would keep its connection, and its slot, forever.
   * This timer shuts down every connection open for longer than the
   * timeout, whatever it sends; it runs only while connections are open. */
  uv_timer_t sweep;
  conn_t *conns;
  uint64_t timeout_ms;
  uint64_t cut; /* connections shut down by the sweep */
  int pending_closes;
  double start_time; /* seconds since the epoch */
  int ready;         /* /readyz: 1 every endpoint bound; 0 starting; -1 stopping */
  /* The request-rate bound: each page kind is built at most once per
   * min_interval_ms of loop time, and the last one served in between (an
   * MHD response is reference-counted: queued to any number of
   * connections, freed when the last is done with it). */
  uint64_t min_interval_ms;
  struct {
    struct MHD_Response *response;
    uint64_t built_ms;
  } cache[3];
  uint64_t pages_built, pages_reused;
  const uint64_t *connections; /* connected peers, or NULL */
};

void broker_metrics_set_connections(broker_metrics_t *m,
                                    const uint64_t *connections) {
  if (m != NULL)
    m->connections = connections;
}

/* Connected peers that are not registered workers, or -1 if unknown. */
static long long connected_clients(const broker_metrics_t *m, size_t workers) {
  if (m->connections == NULL)
    return -1;
  return *m->connections > workers ? (long long)(*m->connections - workers)
                                   : 0;
}

enum { PAGE_PROMETHEUS, PAGE_OPENMETRICS, PAGE_STATUS };

void broker_metrics_set_ready(broker_metrics_t *m, int ready) {
  if (m != NULL)
    m->ready = ready;
}

int broker_metrics_supported(void) { return 1; }

/* ---- the page ------------------------------------------------------------ */

typedef struct {
  char *data;
  size_t len, cap;
  int failed;
  int om; /* OpenMetrics 1.0 rather than Prometheus text 0.0.4 */
} page_t;

static void put(page_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(page_t *p, const char *fmt, ...) {
  if (p->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->data + p->len, p->cap - p->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      p->failed = 1;
      return;
    }
    if ((size_t)n < p->cap - p->len) {
      p->len += (size_t)n;
      return;
    }
    size_t cap = p->cap * 2 + (size_t)n;
    char *d = realloc(p->data, cap);
    if (d == NULL) {
      p->failed = 1;
      return;
    }
    p->data = d;
    p->cap = cap;
  }
}

/* A family's header.  `name` is the family name; a counter's samples add
 * "_total" (OpenMetrics names the family without it, Prometheus' text
 * format with it). */
static void family(page_t *p, const char *name, const char *type,
                   const char *help) {
  int counter = strcmp(type, "counter") == 0;
  const char *suffix = counter && !p->om ? "_total" : "";
  if (p->om && strcmp(type, "info") == 0) {
    /* OpenMetrics' info type: family "x", sample "x_info". */
    put(p, "# TYPE %s info\n# HELP %s %s\n", name, name, help);
    return;
  }
  int info = strcmp(type, "info") == 0;
  const char *t = info ? "gauge" : type;
  if (info)
    suffix = "_info"; /* Prometheus' text format: a gauge of value 1 */
  put(p, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix,
      t);
  if (p->om && strstr(name, "_seconds") != NULL)
    put(p, "# UNIT %s seconds\n", name);
}

/* A service name as a label value: printable ASCII escaped as the format
 * says; a name with other bytes as "0x" and its hex (valid UTF-8 either
 * way). */
static void label_value(char *buf, size_t size, const uint8_t *name,
                        size_t len) {
  int text = 1;
  for (size_t i = 0; i < len && text; i++)
    text = name[i] >= 0x20 && name[i] < 0x7f;
  size_t o = 0;
  if (text) {
    for (size_t i = 0; i < len && o + 3 < size; i++) {
      if (name[i] == '\\' || name[i] == '"')
        buf[o++] = '\\';
      buf[o++] = (char)name[i];
    }
  } else {
    static const char hex[] = "0123456789abcdef";
    buf[o++] = '0';
    buf[o++] = 'x';
    for (size_t i = 0; i < len && o + 3 < size; i++) {
      buf[o++] = hex[name[i] >> 4];
      buf[o++] = hex[name[i] & 15];
    }
  }
  buf[o] = '\0';
}

/* A bucket bound in seconds, always with a decimal point ("0.001",
 * "1.0", "300.0"): OpenMetrics' canonical form, fine for Prometheus. */
static void le_text(char *buf, size_t size, uint32_t ms) {
  if (ms % 1000 == 0)
    snprintf(buf, size, "%u.0", ms / 1000);
  else
    snprintf(buf, size, "%g", ms / 1000.0);
}

/* The samples of one histogram; `labels` is "" or 'service="x",'. */
static void histogram(page_t *p, const char *name, const char *labels,
                      const mdp_broker_histogram_t *h) {
  uint64_t cum = 0;
  char le[32];
  for (int i = 0; i < MDP_BROKER_HISTOGRAM_BUCKETS; i++) {
    cum += h->counts[i];
    le_text(le, sizeof le, mdp_broker_histogram_bounds_ms[i]);
    put(p, "%s_bucket{%sle=\"%s\"} %llu\n", name, labels, le,
        (unsigned long long)cum);
  }
  cum += h->counts[MDP_BROKER_HISTOGRAM_BUCKETS];
  put(p, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
      (unsigned long long)cum);
  /* A label set ends without a comma. */
  char set[600];
  snprintf(set, sizeof set, "%s", labels);
  size_t n = strlen(set);
  if (n > 0 && set[n - 1] == ',')
    set[n - 1] = '\0';
  const char *open = set[0] ? "{" : "", *close = set[0] ? "}" : "";
  put(p, "%s_sum%s%s%s %.3f\n", name, open, set, close, h->sum_ms / 1000.0);
  put(p, "%s_count%s%s%s %llu\n", name, open, set, close,
      (unsigned long long)cum);
}

/* A service's figures, with its name as a label value (`name`) and as
 * bytes (`raw_name`), both owned. */
typedef struct {
  const uint8_t *name;
  size_t name_size;
  int other;
  uint64_t requests, replies, partials;
  mdp_broker_histogram_t request_duration;
  size_t workers_idle, workers_busy, queued;
  const uint8_t *raw_name;
  size_t raw_size;
} info_t;

typedef struct {
  info_t *v;
  size_t n, cap;
} infos_t;

static int copy_info(const mdp_broker_service_info_t *info, void *data) {
  infos_t *l = data;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    info_t *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return 1;
    l->v = v;
    l->cap = cap;
  }
  info_t *c = &l->v[l->n];
  memset(c, 0, sizeof *c);
  c->name_size = info->name_size;
  c->other = info->other;
  c->requests = info->requests;
  c->replies = info->replies;
  c->partials = info->partials;
  c->request_duration = info->request_duration;
  c->workers_idle = info->workers_idle;
  c->workers_busy = info->workers_busy;
  c->queued = info->queued;
  /* The name is valid during the call only: keep a copy after the array's
   * structs, in the label form. */
  char *label = malloc(2 * info->name_size + 8);
  if (label == NULL)
    return 1;
  label_value(label, 2 * info->name_size + 8, info->name, info->name_size);
  l->v[l->n].name = (const uint8_t *)label;
  /* The name's bytes as well, to look the service up (/status). */
  uint8_t *raw = malloc(info->name_size + 1);
  if (raw == NULL) {
    free(label);
    return 1;
  }
  memcpy(raw, info->name, info->name_size);
  l->v[l->n].raw_name = raw;
  l->v[l->n].raw_size = info->name_size;
  l->n++;
  return 0;
}

#define C(x) ((unsigned long long)(x))

/* The Prometheus client libraries' process_* families, from /proc. */
static void process_metrics(page_t *p) {
  long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
  unsigned long long vsize = 0, rss = 0, ut = 0, st = 0, start = 0;
  FILE *f = fopen("/proc/self/stat", "r");
  if (f != NULL) {
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    /* After the command name's closing parenthesis: field 3 on. */
    const char *q = strrchr(buf, ')');
    if (q != NULL &&
        sscanf(q + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
               "%*d %*d %*d %*d %*d %*d %llu %llu %llu",
               &ut, &st, &start, &vsize, &rss) != 5)
      ut = st = start = vsize = rss = 0;
  }
  double btime = 0;
  if ((f = fopen("/proc/stat", "r")) != NULL) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "btime %lf", &btime) == 1)
        break;
    fclose(f);
  }
  size_t fds = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.')
        fds++;
    closedir(d);
    fds--; /* the directory's own descriptor */
  }
  struct rlimit rl;
  double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0
                       ? (rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur)
                       : -1;
  family(p, "process_cpu_seconds", "counter",
         "Total user and system CPU time spent in seconds.");
  put(p, "process_cpu_seconds_total %.2f\n",
      ticks > 0 ? (double)(ut + st) / (double)ticks : 0.0);
  family(p, "process_resident_memory_bytes", "gauge",
         "Resident memory size in bytes.");
  put(p, "process_resident_memory_bytes %llu\n",
      rss * (unsigned long long)page);
  family(p, "process_virtual_memory_bytes", "gauge",
         "Virtual memory size in bytes.");
  put(p, "process_virtual_memory_bytes %llu\n", vsize);
  family(p, "process_open_fds", "gauge", "Number of open file descriptors.");
  put(p, "process_open_fds %zu\n", fds);
  if (max_fds >= 0) {
    family(p, "process_max_fds", "gauge",
           "Maximum number of open file descriptors.");
    put(p, "process_max_fds %.0f\n", max_fds);
  }
  if (btime > 0 && ticks > 0) {
    family(p, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    put(p, "process_start_time_seconds %.2f\n",
        btime + (double)start / (double)ticks);
  }
}

static void build_page(broker_metrics_t *m, page_t *p) {
  mdp_broker_stats_t s;
  mdp_broker_get_stats(m->broker, &s);
  infos_t l = {0};
  if (mdp_broker_foreach_service(m->broker, copy_info, &l) != 0)
    p->failed = 1;
  char lab[600];
#define EACH_SERVICE(stmt)                                                     \
  for (size_t i = 0; i < l.n; i++) {                                           \
    const info_t *e = &l.v[i];                                                 \
    const char *svc = (const char *)e->name;                                   \
    (void)svc;                                                                 \
    stmt;                                                                      \
  }
  const char *tot = "_total";

  family(p, "mdp_broker_requests", "counter",
         "Client requests accepted for a service (queued or sent to a "
         "worker at once); MMI requests not included.");
  EACH_SERVICE(put(p, "mdp_broker_requests%s{service=\"%s\"} %llu\n", tot,
                   svc, C(e->requests)));
  family(p, "mdp_broker_replies", "counter",
         "Final replies (FINAL) forwarded to clients.");
  EACH_SERVICE(put(p, "mdp_broker_replies%s{service=\"%s\"} %llu\n", tot, svc,
                   C(e->replies)));
  family(p, "mdp_broker_partials", "counter",
         "Partial replies (PARTIAL) forwarded to clients.");
  EACH_SERVICE(put(p, "mdp_broker_partials%s{service=\"%s\"} %llu\n", tot,
                   svc, C(e->partials)));
  family(p, "mdp_broker_mmi_requests", "counter",
         "MMI requests (mmi.*) answered by the broker itself.");
  put(p, "mdp_broker_mmi_requests_total %llu\n", C(s.mmi_requests));
  family(p, "mdp_broker_dispatched", "counter",
         "Requests sent to a worker (re-dispatches included).");
  put(p, "mdp_broker_dispatched_total %llu\n", C(s.dispatched));
  family(p, "mdp_broker_redispatched", "counter",
         "Requests sent to another worker after theirs was lost.");
  put(p, "mdp_broker_redispatched_total %llu\n", C(s.redispatched));

  family(p, "mdp_broker_dropped", "counter",
         "Messages and requests dropped, by reason (dialect drops are also "
         "counted as invalid).");
  const struct {
    const char *reason;
    uint64_t n;
  } drops[] = {
      {"invalid", s.dropped_invalid},       {"expired", s.dropped_expired},
      {"queue_full", s.dropped_queue_full}, {"unroutable", s.dropped_unroutable},
      {"worker_lost", s.dropped_worker_lost},
      {"slow_client", s.dropped_slow_client},
      {"too_large", s.dropped_too_large},   {"frames", s.dropped_frames},
      {"dialect", s.dropped_dialect},
  };
  for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
    put(p, "mdp_broker_dropped_total{reason=\"%s\"} %llu\n", drops[i].reason,
        C(drops[i].n));

  family(p, "mdp_broker_heartbeats_sent", "counter",
         "HEARTBEATs sent to workers.");
  put(p, "mdp_broker_heartbeats_sent_total %llu\n", C(s.heartbeats_sent));
  family(p, "mdp_broker_workers_registered", "counter",
         "Workers registered (READYs accepted).");
  put(p, "mdp_broker_workers_registered_total %llu\n",
      C(s.workers_registered));
  family(p, "mdp_broker_workers_expired", "counter",
         "Workers removed for silence or the busy timeout.");
  put(p, "mdp_broker_workers_expired_total %llu\n", C(s.workers_expired));
  family(p, "mdp_broker_workers_unreachable", "counter",
         "Workers removed because a send found them gone or not reading.");
  put(p, "mdp_broker_workers_unreachable_total %llu\n",
      C(s.workers_unreachable));
  family(p, "mdp_broker_workers_refused", "counter",
         "READYs refused by max_workers_per_service or max_services.");
  put(p, "mdp_broker_workers_refused_total %llu\n", C(s.workers_refused));
  family(p, "mdp_broker_disconnects_sent", "counter",
         "DISCONNECTs sent (protocol errors, expiry, shutdown).");
  put(p, "mdp_broker_disconnects_sent_total %llu\n", C(s.disconnects_sent));
  family(p, "mdp_broker_mmi_truncated", "counter",
         "mmi.services replies cut at max_mmi_reply_bytes.");
  put(p, "mdp_broker_mmi_truncated_total %llu\n", C(s.mmi_truncated));
  family(p, "mdp_broker_curve_handshakes", "counter",
         "CURVE handshakes judged by the broker's ZAP handler, by result.");
  put(p, "mdp_broker_curve_handshakes_total{result=\"accepted\"} %llu\n",
      C(s.curve_accepted));
  put(p, "mdp_broker_curve_handshakes_total{result=\"refused\"} %llu\n",
      C(s.curve_refused));

  family(p, "mdp_broker_denied", "counter",
         "REQUESTs dropped and READYs refused by the access list "
         "(--curve-acl) or for a key no longer in the allow-list.");
  uint64_t denied_req = 0, denied_serve = 0;
  mdp_broker_get_denied(m->broker, &denied_req, &denied_serve);
  put(p, "mdp_broker_denied_total{role=\"request\"} %llu\n", C(denied_req));
  put(p, "mdp_broker_denied_total{role=\"serve\"} %llu\n", C(denied_serve));
  family(p, "mdp_broker_workers", "gauge",
         "Registered workers, by service and state (idle or busy).");
  EACH_SERVICE({
    put(p, "mdp_broker_workers{service=\"%s\",state=\"idle\"} %zu\n", svc,
        e->workers_idle);
    put(p, "mdp_broker_workers{service=\"%s\",state=\"busy\"} %zu\n", svc,
        e->workers_busy);
  });
  family(p, "mdp_broker_queued_requests", "gauge",
         "Requests waiting for a worker, by service.");
  EACH_SERVICE(put(p, "mdp_broker_queued_requests{service=\"%s\"} %zu\n", svc,
                   e->queued));
  family(p, "mdp_broker_queued_bytes", "gauge",
         "Bytes held by queued requests and by replies being collected for "
         "MDP/0.1 clients (bounded by max_queued_bytes).");
  put(p, "mdp_broker_queued_bytes %zu\n", s.queued_bytes);
  family(p, "mdp_broker_services", "gauge",
         "Services the broker knows now (with workers or queued requests).");
  put(p, "mdp_broker_services %zu\n", s.services);

  family(p, "mdp_broker_request_duration_seconds", "histogram",
         "Request accepted to its FINAL forwarded, by service (loop time, "
         "ms resolution).");
  EACH_SERVICE({
    snprintf(lab, sizeof lab, "service=\"%s\",", svc);
    histogram(p, "mdp_broker_request_duration_seconds", lab,
              &e->request_duration);
  });
  family(p, "mdp_broker_queue_wait_seconds", "histogram",
         "Request accepted to its first dispatch to a worker (loop time, ms "
         "resolution).");
  mdp_broker_histogram_t qw;
  mdp_broker_get_queue_wait(m->broker, &qw);
  histogram(p, "mdp_broker_queue_wait_seconds", "", &qw);

  family(p, "mdp_broker_metrics_connections_cut", "counter",
         "Metrics HTTP connections shut down for being open longer than "
         "--metrics-timeout (slow or stalled clients).");
  put(p, "mdp_broker_metrics_connections_cut_total %llu\n", C(m->cut));
  family(p, "mdp_broker_metrics_connections_refused", "counter",
         "Metrics HTTP connections closed at once: over "
         "--metrics-max-connections.");
  put(p, "mdp_broker_metrics_connections_refused_total %llu\n",
      C(m->refused));
  family(p, "mdp_broker_metrics_pages_built", "counter",
         "Pages (/metrics, /status) built; requests within "
         "the rate bound get the last one built instead.");
  put(p, "mdp_broker_metrics_pages_built_total %llu\n",
      C(m->pages_built + 1));
  family(p, "mdp_broker_metrics_pages_reused", "counter",
         "Requests answered with the last page built (rate bound).");
  put(p, "mdp_broker_metrics_pages_reused_total %llu\n", C(m->pages_reused));
  family(p, "mdp_broker_waiting_clients", "gauge",
         "Clients with requests waiting in a queue, once per service.");
  put(p, "mdp_broker_waiting_clients %zu\n",
      mdp_broker_waiting_clients(m->broker));
  if (m->connections != NULL) {
    family(p, "mdp_broker_connected_peers", "gauge",
           "Connections to the broker's endpoints now (clients and "
           "workers).");
    put(p, "mdp_broker_connected_peers %llu\n", C(*m->connections));
    family(p, "mdp_broker_connected_clients", "gauge",
           "Connections that are not registered workers: clients (and "
           "workers that have not sent READY yet).");
    put(p, "mdp_broker_connected_clients %lld\n",
        connected_clients(m, s.workers));
  }
  process_metrics(p);
  family(p, "mdp_broker_start_time_seconds", "gauge",
         "When the broker started, in seconds since the Unix epoch.");
  put(p, "mdp_broker_start_time_seconds %.3f\n", m->start_time);
  family(p, "mdp_broker_build", "info", "libmdp's version.");
  put(p, "mdp_broker_build_info{version=\"%s\"} 1\n", MDP_VERSION_STRING);
  if (p->om)
    put(p, "# EOF\n");
  for (size_t i = 0; i < l.n; i++) {
    free((void *)l.v[i].name);
    free((void *)l.v[i].raw_name);
  }
  free(l.v);
#undef EACH_SERVICE
}

/* ---- /status: JSON ------------------------------------------------------- */

/* Services in /status: the busiest (busy + queued, then requests) of the
 * named entries, at most this many; the rest summed as "_other". */
#define STATUS_MAX_SERVICES 50

static int busier(const void *a, const void *b) {
  const info_t *x = a, *y = b;
  size_t lx = x->workers_busy + x->queued, ly = y->workers_busy + y->queued;
  if (lx != ly)
    return lx < ly ? 1 : -1;
  return x->requests < y->requests ? 1 : x->requests > y->requests ? -1 : 0;
}

/* A JSON string's inside: the label form (printable ASCII, or 0x + hex)
 * needs only its backslashes and quotes kept escaped, which the label
 * form already does. */
static void status_service(page_t *p, broker_metrics_t *m,
                           const info_t *e,
                           const char *name, int first) {
  double oldest = 0;
  if (!e->other && e->raw_name != NULL) {
    uint64_t age = 0;
    if (mdp_broker_oldest_queued_ms(m->broker, e->raw_name, e->raw_size,
                                    &age) == 0)
      oldest = age / 1000.0;
  }
  put(p,
      "%s{\"name\":\"%s\",\"workers\":%zu,\"idle\":%zu,\"busy\":%zu,"
      "\"queued\":%zu,\"oldest_queued_seconds\":%.3f,\"requests_total\":"
      "%llu}",
      first ? "" : ",", name, e->workers_idle + e->workers_busy,
      e->workers_idle, e->workers_busy, e->queued, oldest,
      C(e->requests));
}

static void build_status(broker_metrics_t *m, page_t *p) {
  mdp_broker_stats_t s;
  mdp_broker_get_stats(m->broker, &s);
  infos_t l = {0};
  if (mdp_broker_foreach_service(m->broker, copy_info, &l) != 0)
    p->failed = 1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
  put(p, "{\"version\":\"%s\",\"uptime_seconds\":%.3f,\"services\":[",
      MDP_VERSION_STRING, now - m->start_time);
  /* The named entries come first, the "_other" sum last. */
  size_t named = l.n > 0 ? l.n - 1 : 0;
  qsort(l.v, named, sizeof *l.v, busier);
  info_t rest;
  memset(&rest, 0, sizeof rest);
  if (l.n > 0)
    rest = l.v[l.n - 1];
  int first = 1;
  for (size_t i = 0; i < named; i++) {
    const info_t *e = &l.v[i];
    if (i < STATUS_MAX_SERVICES) {
      status_service(p, m, e, (const char *)e->name, first);
      first = 0;
    } else {
      rest.workers_idle += e->workers_idle;
      rest.workers_busy += e->workers_busy;
      rest.queued += e->queued;
      rest.requests += e->requests;
    }
  }
  if (rest.workers_idle + rest.workers_busy + rest.queued + rest.requests > 0) {
    rest.other = 1;
    status_service(p, m, &rest, MDP_BROKER_OTHER_SERVICE, first);
  }
  long long clients = connected_clients(m, s.workers);
  put(p, "],\"workers\":%zu,\"idle\":%zu,\"queued\":%zu,\"clients\":%lld,"
         "\"waiting_clients\":%zu,\"requests_total\":%llu,"
         "\"replies_total\":%llu}\n",
      s.workers, s.workers_idle, s.queued,
      clients >= 0 ? clients : (long long)mdp_broker_waiting_clients(m->broker),
      mdp_broker_waiting_clients(m->broker), C(s.requests), C(s.replies));
  for (size_t i = 0; i < l.n; i++) {
    free((void *)l.v[i].name);
    free((void *)l.v[i].raw_name);
  }
  free(l.v);
}

/* ---- HTTP ---------------------------------------------------------------- */

static enum MHD_Result reply_text(struct MHD_Connection *conn,
                                  unsigned status, const char *text,
                                  const char *allow) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (allow != NULL)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result rc = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* The page of `kind`: the cached one if it is younger than the rate
 * bound, else a new one (which replaces it). */
static struct MHD_Response *page(broker_metrics_t *m, int kind) {
  uint64_t now = uv_now(m->loop);
  if (m->cache[kind].response != NULL &&
      now - m->cache[kind].built_ms < m->min_interval_ms) {
    m->pages_reused++;
    return m->cache[kind].response;
  }
  page_t p = {.om = kind == PAGE_OPENMETRICS};
  p.cap = 16384;
  p.data = malloc(p.cap);
  p.failed = p.data == NULL;
  if (!p.failed) {
    if (kind == PAGE_STATUS)
      build_status(m, &p);
    else
      build_page(m, &p);
  }
  if (p.failed) {
    free(p.data);
    return NULL;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(p.len, p.data, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(p.data);
    return NULL;
  }
  MHD_add_response_header(
      r, MHD_HTTP_HEADER_CONTENT_TYPE,
      kind == PAGE_STATUS ? "application/json"
      : p.om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (m->cache[kind].response != NULL)
    MHD_destroy_response(m->cache[kind].response); /* connections keep
                                                      their references */
  m->cache[kind].response = r;
  m->cache[kind].built_ms = now;
  m->pages_built++;
  return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  broker_metrics_t *m = cls;
  (void)version, (void)upload, (void)upload_size, (void)req_cls;
  int kind;
  if (strcmp(url, "/metrics") == 0)
    kind = 0;
  else if (strcmp(url, "/status") == 0)
    kind = PAGE_STATUS;
  else if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
           strcmp(url, "/") == 0)
    kind = -1;
  else
    return reply_text(conn, MHD_HTTP_NOT_FOUND,
                      "not found: try /metrics, /status, /healthz, /readyz "
                      "or /\n",
                      NULL);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                      "method not allowed: GET or HEAD\n", "GET, HEAD");
  if (strcmp(url, "/healthz") == 0) /* answered from the loop: a stuck
                                       loop answers nothing */
    return reply_text(conn, MHD_HTTP_OK, "ok\n", NULL);
  if (strcmp(url, "/readyz") == 0)
    return m->ready > 0 ? reply_text(conn, MHD_HTTP_OK, "ready\n", NULL)
                        : reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                     m->ready < 0 ||
                                             mdp_broker_is_closing(m->broker)
                                         ? "stopping\n"
                                         : "not ready: starting\n",
                                     NULL);
  if (strcmp(url, "/") == 0) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(broker_status_page), (void *)broker_status_page,
        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
      return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/html; charset=utf-8");
    /* Self-contained: nothing but this origin, inline script and style. */
    MHD_add_response_header(
        r, "Content-Security-Policy",
        "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
  }
  if (kind == 0) {
    const char *accept =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    kind = accept != NULL &&
                   strstr(accept, "application/openmetrics-text") != NULL
               ? PAGE_OPENMETRICS
               : PAGE_PROMETHEUS;
  }
  struct MHD_Response *r = page(m, kind);
  if (r == NULL)
    return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                      "out of memory\n", NULL);
  return MHD_queue_response(conn, MHD_HTTP_OK, r);
}

/* ---- on the loop --------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Runs whatever MHD has to do now, then arms the timer for what it will
 * have to do next (a timeout, or at once if work is left). */
static void run(broker_metrics_t *m) {
  MHD_run(m->daemon);
  MHD_UNSIGNED_LONG_LONG ms;
  if (MHD_get_timeout(m->daemon, &ms) == MHD_YES)
    uv_timer_start(&m->timer, on_timer, ms, 0);
  else
    uv_timer_stop(&m->timer);
}

static void on_timer(uv_timer_t *t) { run(t->data); }

#define SWEEP_MS 250

static void on_sweep(uv_timer_t *t) {
  broker_metrics_t *m = t->data;
  uint64_t now = uv_now(m->loop);
  for (conn_t *c = m->conns; c != NULL; c = c->next)
    if (c->fd >= 0 && now - c->opened_ms >= m->timeout_ms) {
      /* MHD sees the end of the stream and closes the connection (its
       * CLOSED notification frees `c`). */
      shutdown(c->fd, SHUT_RDWR);
      c->fd = -1;
      m->cut++;
    }
  run(m);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  broker_metrics_t *m = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    conn_t *c = malloc(sizeof *c);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = c;
    if (c == NULL)
      return; /* not tracked: MHD's idle timeout still applies */
    c->fd = ci ? ci->connect_fd : -1;
    c->opened_ms = uv_now(m->loop);
    c->next = m->conns;
    c->prev = &m->conns;
    if (m->conns)
      m->conns->prev = &c->next;
    m->conns = c;
    if (!uv_is_active((uv_handle_t *)&m->sweep))
      uv_timer_start(&m->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    conn_t *c = *socket_context;
    if (c == NULL)
      return;
    *c->prev = c->next;
    if (c->next)
      c->next->prev = c->prev;
    free(c);
    *socket_context = NULL;
    if (m->conns == NULL)
      uv_timer_stop(&m->sweep);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  run(h->data);
}

/* Accepts what waits (at most a batch per wake-up, so a connect flood
 * cannot hold the loop) and hands each connection to MHD. */
static void on_listen(uv_poll_t *h, int status, int events) {
  broker_metrics_t *m = h->data;
  (void)status, (void)events;
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(m->listen_fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      break; /* EAGAIN, or an error of that one connection */
    if (MHD_add_connection(m->daemon, fd, (struct sockaddr *)&ss, len) !=
        MHD_YES)
      m->refused++; /* over the limit (or no memory): MHD closed it */
  }
  run(m);
}

static void on_closed(uv_handle_t *h) {
  broker_metrics_t *m = h->data;
  if (--m->pending_closes > 0)
    return;
  MHD_stop_daemon(m->daemon); /* CLOSED notifications free the conns */
  for (int i = 0; i < 3; i++)
    if (m->cache[i].response != NULL)
      MHD_destroy_response(m->cache[i].response);
  close(m->listen_fd);
  free(m);
}

void broker_metrics_stop(broker_metrics_t *m) {
  if (m == NULL)
    return;
  m->pending_closes = 4;
  uv_close((uv_handle_t *)&m->listen_poll, on_closed);
  uv_close((uv_handle_t *)&m->poll, on_closed);
  uv_close((uv_handle_t *)&m->timer, on_closed);
  uv_close((uv_handle_t *)&m->sweep, on_closed);
}

int broker_metrics_start(uv_loop_t *loop, mdp_broker_t *broker,
                         const broker_metrics_conf_t *conf,
                         broker_metrics_t **out, char *bound, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  if (parse_address(conf->address, &ss, &len) < 0) {
    broker_logf(MDP_LOG_ERROR, "--metrics %s: expected HOST:PORT (an "
                "address of this machine, or [IPV6]:PORT; PORT 0 to 65535)",
                conf->address);
    return -1;
  }
  broker_metrics_t *m = calloc(1, sizeof *m);
  if (m == NULL) {
    broker_logf(MDP_LOG_ERROR, "--metrics: out of memory");
    return -1;
  }
  m->loop = loop;
  m->broker = broker;
  m->timeout_ms = (uint64_t)conf->timeout_s * 1000;
  m->min_interval_ms = conf->min_interval_ms;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  m->start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
  m->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
                                         SOCK_CLOEXEC, 0);
  int one = 1;
  if (m->listen_fd < 0 ||
      setsockopt(m->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(m->listen_fd, (struct sockaddr *)&ss, len) ||
      listen(m->listen_fd, 64)) {
    broker_logf(MDP_LOG_ERROR, "cannot serve metrics on %s: %s",
                conf->address, strerror(errno));
    if (m->listen_fd >= 0)
      close(m->listen_fd);
    free(m);
    return -1;
  }
  struct sockaddr_storage at;
  socklen_t at_len = sizeof at;
  getsockname(m->listen_fd, (struct sockaddr *)&at, &at_len);
  unsigned flags = MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET |
                   (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  m->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, m, MHD_OPTION_CONNECTION_LIMIT,
      conf->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)BROKER_METRICS_MEMORY_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
      conf->timeout_s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
      MHD_OPTION_END);
  const union MHD_DaemonInfo *fd =
      m->daemon ? MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_EPOLL_FD)
                : NULL;
  int polled = fd != NULL && uv_poll_init(loop, &m->poll, fd->epoll_fd) == 0;
  if (!polled || uv_poll_init(loop, &m->listen_poll, m->listen_fd) != 0) {
    broker_logf(MDP_LOG_ERROR, "--metrics: cannot start libmicrohttpd");
    if (polled) { /* a handle of the loop now: freed once closed */
      m->poll.data = m;
      m->pending_closes = 1;
      uv_close((uv_handle_t *)&m->poll, on_closed);
      return -1;
    }
    if (m->daemon)
      MHD_stop_daemon(m->daemon);
    close(m->listen_fd);
    free(m);
    return -1;
  }
  uv_timer_init(loop, &m->timer);
  uv_timer_init(loop, &m->sweep);
  m->poll.data = m->timer.data = m->sweep.data = m->listen_poll.data = m;
  uv_poll_start(&m->poll, UV_READABLE, on_poll);
  uv_poll_start(&m->listen_poll, UV_READABLE, on_listen);
  char host[256], port[16];
  if (getnameinfo((struct sockaddr *)&at, at_len, host, sizeof host, port,
                  sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    snprintf(host, sizeof host, "?"), snprintf(port, sizeof port, "?");
  snprintf(bound, size, at.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
           port);
  *out = m;
  run(m); /* arm the timer */
  return 0;
}

#endif /* MDP_HAVE_METRICS */
