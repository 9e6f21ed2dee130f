/* mdp-request: a command-line Majordomo client, as curl is for HTTP.
 *
 *   mdp-request -b URL SERVICE [FRAME...]
 *   mdp-request -b URL [-b URL...] -n COUNT [-C CONCURRENCY] SERVICE [FRAME...]
 *
 * The second form is a load tool: COUNT requests, CONCURRENCY in flight,
 * on one client that spreads them over the brokers (mdp_spread_t, --spread;
 * a retry goes to another broker), then one summary line (or --json: one
 * object, with each broker's share).
 *
 * Sends one request (each FRAME argument is a body frame; "-" is a frame
 * read from standard input) and prints every reply part as it arrives.
 * Built on mdp_client_t, so timeouts, retries and failover across several
 * -b brokers behave as in the library.  Exit codes (sysexits.h):
 *   0 success; 2 usage (as every libmdp tool); 75 timeout; 76 protocol
 *   error (the request timed out after malformed replies were received, or
 *   MMI said 501); 1 MMI said 404; 69 other failure, an error reply of a
 *   command service included (mdp-worker's two frames: "error: ...", the
 *   output).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdp.h"
#include "tool-options.h"

#define EXIT_USAGE 2 /* the same in every libmdp tool */
#define EXIT_UNAVAILABLE 69
#define EXIT_TIMEOUT 75
#define EXIT_PROTOCOL 76
#define EXIT_NOT_FOUND 1

enum { OUT_RAW, OUT_HEX, OUT_JSON };

typedef struct {
  int format;
  int verbose;
  int mmi;
  int parts;
  int status;     /* of the reply callback's last call */
  int malformed;  /* malformed replies were dropped before the request ended */
  int error_reply; /* the FINAL was a command service's error reply */
  int done;
  char mmi_code[4];
} app_t;

static void usage(FILE *out) {
  fprintf(out,
          "Usage: mdp-request [-b URL]... [OPTION]... SERVICE [FRAME]...\n"
          "  or:  mdp-request [-b URL]... [OPTION]... --mmi NAME [FRAME]...\n"
          "  or:  mdp-request [-b URL]... -n COUNT [-C N] [OPTION]... SERVICE [FRAME]...\n"
          "Sends one Majordomo (MDP/0.2) request and prints each reply part as it\n"
          "arrives.  Each FRAME is one body frame; \"-\" reads a frame from standard\n"
          "input; no FRAME sends one empty frame.  Use -- before frames that\n"
          "start with '-'.\n"
          "\n"
          "Options:\n"
          "  -b, --broker URL     broker endpoint; repeat for several: requests\n"
          "                       are spread over them (--spread), a broker on\n"
          "                       which a request timed out is avoided for a\n"
          "                       back-off and probed (mmi.service) before it\n"
          "                       gets requests again, and a retry goes to\n"
          "                       another broker; default %s\n"
          "      --spread NAME    round-robin (default: the live brokers in\n"
          "                       turn), fewest (the one with the fewest\n"
          "                       requests outstanding) or failover (the first\n"
          "                       live one in -b order)\n"
          "      --no-probe       a broker put aside takes requests again when\n"
          "                       its back-off ends, unprobed (for brokers that\n"
          "                       do not answer MMI)\n"
          "  -t, --timeout SECS   wait for each reply part (fractions allowed;\n"
          "                       default %g)\n"
          "  -r, --retries N      resend a timed-out request N times (default 1)\n"
          "  -M, --max-msg-size BYTES\n"
          "                       largest reply frame accepted (default 67108864);\n"
          "                       a larger one drops the connection, so it shows as\n"
          "                       a timeout; -1 = unlimited\n"
          "      --dialect NAME   rfc18 (default), majortomo (a Majortomo broker)\n"
          "                       or mdp01 (an MDP/0.1 broker)\n"
          "  -S, --curve-server-key FILE\n"
          "                       CURVE: the broker's public key file\n"
          "                       (mdp-keygen NAME.pub); needs --curve-key\n"
          "  -K, --curve-key FILE this client's key pair (mdp-keygen\n"
          "                       NAME.secret), listed in the broker's\n"
          "                       --curve-allow\n"
          "  -n, --count COUNT    load mode: send COUNT requests (the same body),\n"
          "                       spread over the -b brokers as --spread says;\n"
          "                       a request that times out on one broker is\n"
          "                       retried on another (-r); progress on standard\n"
          "                       error when it is a terminal; at the end one line:\n"
          "                       COUNT requests: OK ok, FAILED failed, RATE/s,\n"
          "                       p50 X ms, p99 Y ms (latency of the ok ones;\n"
          "                       --json: one JSON object instead, with each\n"
          "                       broker's share); exit 0 if none failed, else 69\n"
          "  -C, --concurrency N  load mode: requests in flight at once (default 1;\n"
          "                       -c still works but is deprecated: it is\n"
          "                       --config in mdp-broker)\n"
          "  -x, --hex            print frames in hexadecimal\n"
          "  -j, --json           print each part as a JSON object on one line\n"
          "  -m, --mmi NAME       ask the broker's mmi.NAME service, e.g.\n"
          "                       --mmi service echo\n"
          "  -v, -V, --verbose    log to standard error\n"
          "  -h, --help           this text\n"
          "      --version        the version\n"
          "\n"
          "Raw output writes each frame followed by a newline.\n"
          "A reply of two frames whose first starts with \"error: \" (a command\n"
          "service's failure, as mdp-worker sends it) is printed, and the exit\n"
          "status is 69.\n"
          "Exit status: 0 success, 1 MMI \"404\" (not found), 2 usage error,\n"
          "69 other failure, 75 timeout, 76 protocol error (the request timed\n"
          "out after malformed replies were received, or MMI \"501\").\n",
          MDP_DEFAULT_ENDPOINT, MDP_DEFAULT_TIMEOUT_MS / 1000.0);
}

static void print_json_string(const uint8_t *p, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = p[i];
    if (ch == '"' || ch == '\\')
      printf("\\%c", ch);
    else if (ch == '\n')
      fputs("\\n", stdout);
    else if (ch == '\t')
      fputs("\\t", stdout);
    else if (ch < 0x20 || ch >= 0x7f)
      printf("\\u%04x", ch); /* bytes, not UTF-8: each maps to U+00XX */
    else
      putchar(ch);
  }
  putchar('"');
}

static void print_part(app_t *a, mdp_msg_t *body, int final) {
  size_t n = mdp_msg_size(body);
  if (a->format == OUT_JSON)
    printf("{\"part\":%d,\"final\":%s,\"frames\":[", a->parts,
           final ? "true" : "false");
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = mdp_msg_data(body, i);
    size_t len = mdp_msg_frame_size(body, i);
    switch (a->format) {
    case OUT_HEX:
      for (size_t k = 0; k < len; k++)
        printf("%02x", p[k]);
      putchar('\n');
      break;
    case OUT_JSON:
      if (i > 0)
        putchar(',');
      print_json_string(p, len);
      break;
    default:
      fwrite(p, 1, len, stdout);
      putchar('\n');
      break;
    }
  }
  if (a->format == OUT_JSON)
    fputs("]}\n", stdout);
  fflush(stdout); /* parts are shown as they arrive */
}

static void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  app_t *a = data;
  if (status < 0) {
    a->status = status;
  } else {
    if (a->mmi && final && mdp_msg_frame_size(body, 0) == 3)
      memcpy(a->mmi_code, mdp_msg_data(body, 0), 3);
    /* mdp-worker's failure reply: ["error: ...", the output so far]. */
    if (!a->mmi && final && mdp_msg_size(body) == 2 &&
        mdp_msg_frame_size(body, 0) >= 7 &&
        memcmp(mdp_msg_data(body, 0), "error: ", 7) == 0)
      a->error_reply = 1;
    print_part(a, body, final);
    a->parts++;
    mdp_msg_destroy(body);
  }
  if (final) {
    /* The outcome is taken here, when the request ends: stats read between
     * loop iterations would miss a malformed reply that was read in the same
     * iteration as the timeout it preceded. */
    mdp_client_stats_t st;
    mdp_client_get_stats(c, &st);
    a->malformed = st.dropped > 0;
    a->done = 1;
    mdp_client_close(c, NULL);
  }
}

static void on_log(void *data, mdp_log_level_t level, const char *line) {
  fprintf(stderr, "mdp-request: %s: %s\n", mdp_log_level_name(level), line);
}

/* Reads all of standard input into one frame. */
static int append_stdin(mdp_msg_t *body) {
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    return -1;
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
    len += got;
    if (len == cap) {
      char *more = realloc(buf, cap * 2);
      if (more == NULL) {
        free(buf);
        return -1;
      }
      buf = more;
      cap *= 2;
    }
  }
  int rc = ferror(stdin) ? -1 : mdp_msg_append_mem(body, buf, len);
  free(buf);
  return rc;
}

/* --- load mode ---------------------------------------------------------- */

#define LOAD_MAX_COUNT 10000000L

typedef struct {
  mdp_client_t *client;
  const char *service;
  mdp_msg_t *body;
  size_t count, concurrency;
  size_t sent, done, ok, failed;
  uint64_t *start;   /* per request: uv_hrtime() when sent */
  float *lat_ms;     /* per ok request */
  uv_timer_t progress;
  int tty;
  int closing;
  mdp_client_endpoint_stats_t *shares; /* filled at close, nshares of them */
  size_t nshares;
} load_t;

static void load_reply(mdp_client_t *c, uint64_t id, int status, int final,
                       mdp_msg_t *body, void *data);

static void load_close(load_t *l) {
  if (l->closing)
    return;
  l->closing = 1;
  if (l->client != NULL) {
    for (size_t i = 0; l->shares != NULL && i < l->nshares; i++)
      mdp_client_get_endpoint_stats(l->client, i, &l->shares[i]);
    mdp_client_close(l->client, NULL);
  }
  if (l->tty)
    uv_timer_stop(&l->progress);
  uv_close((uv_handle_t *)&l->progress, NULL);
}

/* Sends request number l->sent; the client picks its broker. */
static int load_send(load_t *l) {
  size_t idx = l->sent;
  mdp_msg_t *m = mdp_msg_dup(l->body);
  if (m == NULL)
    return MDP_ENOMEM;
  l->start[idx] = uv_hrtime();
  int rc = mdp_client_request(l->client, l->service, m, NULL, load_reply,
                              (void *)(uintptr_t)idx, NULL);
  if (rc < 0) {
    mdp_msg_destroy(m);
    return rc;
  }
  l->sent++;
  return 0;
}

static void load_reply(mdp_client_t *c, uint64_t id, int status, int final,
                       mdp_msg_t *body, void *data) {
  (void)id;
  load_t *l = mdp_client_get_data(c);
  mdp_msg_destroy(body);
  if (!final || l->closing)
    return;
  size_t idx = (size_t)(uintptr_t)data;
  if (status == 0)
    l->lat_ms[l->ok++] = (float)((uv_hrtime() - l->start[idx]) / 1e6);
  else
    l->failed++;
  l->done++;
  while (l->sent < l->count && l->sent - l->done < l->concurrency)
    if (load_send(l) < 0) { /* count it failed and go on */
      l->failed++;
      l->done++;
      l->sent++;
    }
  if (l->done == l->count)
    load_close(l);
}

static void load_progress(uv_timer_t *t) {
  load_t *l = t->data;
  fprintf(stderr, "\r%zu/%zu done, %zu failed", l->done, l->count, l->failed);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static double percentile(const float *v, size_t n, double p) {
  if (n == 0)
    return 0;
  size_t i = (size_t)ceil(p * (double)n) - 1;
  return v[i < n ? i : n - 1];
}

static int run_load(const char *const *brokers, size_t nbrokers,
                    const mdp_client_options_t *co, const char *service,
                    mdp_msg_t *body, long count, long concurrency, int json) {
  load_t l;
  memset(&l, 0, sizeof l);
  l.service = service;
  l.body = body;
  l.count = (size_t)count;
  l.concurrency = (size_t)concurrency;
  l.start = calloc(l.count, sizeof *l.start);
  l.lat_ms = calloc(l.count, sizeof *l.lat_ms);
  mdp_client_endpoint_stats_t *shares = calloc(nbrokers, sizeof *shares);
  if (l.start == NULL || l.lat_ms == NULL || shares == NULL) {
    fprintf(stderr, "mdp-request: out of memory\n");
    free(l.start);
    free(l.lat_ms);
    free(shares);
    return EXIT_UNAVAILABLE;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_client_options_t o = *co;
  /* Room for a full pool to each broker: at the pool's bound the client
   * reuses an idle socket to another broker rather than close and open
   * one, which would bend the spread. */
  o.max_sockets = l.concurrency * nbrokers;
  o.max_queue = 0;
  o.max_queued_bytes = 0;
  int rc = mdp_client_new(&loop, brokers, nbrokers, &o, &l.client);
  if (rc == 0)
    mdp_client_set_data(l.client, &l);
  uv_timer_init(&loop, &l.progress);
  l.progress.data = &l;
  l.tty = isatty(2);
  if (l.tty)
    uv_timer_start(&l.progress, load_progress, 250, 250);
  uint64_t t0 = uv_hrtime();
  while (rc == 0 && l.sent < l.count && l.sent < l.concurrency)
    rc = load_send(&l);
  if (rc < 0) {
    fprintf(stderr, "mdp-request: %s\n", mdp_strerror(rc));
    load_close(&l);
  }
  /* Each broker's share, read as the last request ends (the client is
   * freed once the loop has run its close). */
  l.shares = shares;
  l.nshares = nbrokers;
  uv_run(&loop, UV_RUN_DEFAULT);
  double secs = (uv_hrtime() - t0) / 1e9;
  uv_loop_close(&loop);
  if (l.tty)
    fputs("\r\033[K", stderr);
  free(l.start);
  if (rc < 0) {
    free(l.lat_ms);
    return rc == MDP_EINVAL || rc == MDP_ESERVICE ? EXIT_USAGE
                                                  : EXIT_UNAVAILABLE;
  }
  qsort(l.lat_ms, l.ok, sizeof *l.lat_ms, cmp_float);
  double rate = secs > 0 ? (double)l.done / secs : 0;
  double p50 = percentile(l.lat_ms, l.ok, 0.50);
  double p99 = percentile(l.lat_ms, l.ok, 0.99);
  if (json) {
    printf("{\"requests\":%zu,\"ok\":%zu,\"failed\":%zu,\"seconds\":%.3f,"
           "\"rate\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"brokers\":%zu,"
           "\"concurrency\":%zu,\"per_broker\":[",
           l.count, l.ok, l.failed, secs, rate, p50, p99, nbrokers,
           l.concurrency);
    for (size_t i = 0; i < nbrokers; i++) {
      printf("%s{\"endpoint\":", i ? "," : "");
      print_json_string((const uint8_t *)brokers[i], strlen(brokers[i]));
      printf(",\"sent\":%llu,\"finals\":%llu,\"timeouts\":%llu}",
             (unsigned long long)shares[i].sent,
             (unsigned long long)shares[i].finals,
             (unsigned long long)shares[i].timeouts);
    }
    printf("]}\n");
  } else {
    printf("%zu requests: %zu ok, %zu failed, %.0f/s, p50 %.2f ms, p99 %.2f "
           "ms\n", l.count, l.ok, l.failed, rate, p50, p99);
  }
  free(l.lat_ms);
  free(shares);
  return l.failed == 0 ? 0 : EXIT_UNAVAILABLE;
}

enum { OPT_SPREAD = 256, OPT_NO_PROBE, OPT_DIALECT, OPT_VERSION };

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"broker", required_argument, NULL, 'b'},
      {"timeout", required_argument, NULL, 't'},
      {"retries", required_argument, NULL, 'r'},
      {"max-msg-size", required_argument, NULL, 'M'},
      {"dialect", required_argument, NULL, OPT_DIALECT},
      {"curve-server-key", required_argument, NULL, 'S'},
      {"curve-key", required_argument, NULL, 'K'},
      {"count", required_argument, NULL, 'n'},
      {"concurrency", required_argument, NULL, 'C'},
      {"hex", no_argument, NULL, 'x'},
      {"json", no_argument, NULL, 'j'},
      {"spread", required_argument, NULL, OPT_SPREAD},
      {"no-probe", no_argument, NULL, OPT_NO_PROBE},
      {"mmi", required_argument, NULL, 'm'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0}};
  const char *brokers[16];
  size_t nbrokers = 0;
  double timeout = MDP_DEFAULT_TIMEOUT_MS / 1000.0;
  long retries = 1;
  long long max_msg_size = 64ll * 1024 * 1024;
  const char *mmi = NULL;
  long count = 0, concurrency = 1;
  mdp_dialect_t dialect = MDP_DIALECT_RFC18;
  mdp_spread_t spread = MDP_SPREAD_ROUND_ROBIN;
  int probe = 1;
  const char *server_key_file = NULL, *key_file = NULL;
  app_t a;
  memset(&a, 0, sizeof a);
  int opt;
  while ((opt = getopt_long(argc, argv, "b:t:r:M:d:S:K:n:C:c:xjm:vVh", longopts, NULL)) !=
         -1) {
    char *end;
    switch (opt) {
    case 'b':
      if (nbrokers == sizeof brokers / sizeof brokers[0]) {
        fprintf(stderr, "mdp-request: too many brokers\n");
        return EXIT_USAGE;
      }
      if (tool_check_endpoint("mdp-request", optarg) < 0)
        return EXIT_USAGE;
      brokers[nbrokers++] = optarg;
      break;
    case 't':
      errno = 0;
      timeout = strtod(optarg, &end);
      if (errno || *end || !(timeout > 0) || timeout > 1e9) {
        fprintf(stderr, "mdp-request: bad --timeout: %s\n", optarg);
        return EXIT_USAGE;
      }
      break;
    case 'r':
      errno = 0;
      retries = strtol(optarg, &end, 10);
      if (errno || *end || retries < 0 || retries > 1000000) {
        fprintf(stderr, "mdp-request: bad --retries: %s\n", optarg);
        return EXIT_USAGE;
      }
      break;
    case 'M':
      errno = 0;
      max_msg_size = strtoll(optarg, &end, 10);
      if (errno || *end || end == optarg || max_msg_size < -1) {
        fprintf(stderr, "mdp-request: bad --max-msg-size: %s\n", optarg);
        return EXIT_USAGE;
      }
      break;
    case 'd': /* deprecated: -d is --debug in mdp-broker */
      fprintf(stderr, "mdp-request: -d is deprecated, use --dialect (-d is "
                      "--debug in mdp-broker)\n");
      /* fall through */
    case OPT_DIALECT:
      if (tool_dialect("mdp-request", optarg, &dialect) < 0)
        return EXIT_USAGE;
      break;
    case OPT_SPREAD:
      if (strcmp(optarg, "round-robin") == 0)
        spread = MDP_SPREAD_ROUND_ROBIN;
      else if (strcmp(optarg, "fewest") == 0)
        spread = MDP_SPREAD_FEWEST;
      else if (strcmp(optarg, "failover") == 0)
        spread = MDP_SPREAD_FAILOVER;
      else {
        fprintf(stderr, "mdp-request: bad --spread: %s (round-robin, fewest, "
                        "failover)\n", optarg);
        return EXIT_USAGE;
      }
      break;
    case OPT_NO_PROBE:
      probe = 0;
      break;
    case 'S':
      server_key_file = optarg;
      break;
    case 'K':
      key_file = optarg;
      break;
    case 'c': /* deprecated: -c is --config in mdp-broker */
      fprintf(stderr, "mdp-request: -c is deprecated, use -C (--concurrency;"
                      " -c is --config in mdp-broker)\n");
      opt = 'C';
      /* fall through */
    case 'n':
    case 'C':
      errno = 0;
      {
        long v = strtol(optarg, &end, 10);
        if (errno || *end || v < 1 || v > (opt == 'n' ? LOAD_MAX_COUNT : 100000)) {
          fprintf(stderr, "mdp-request: bad --%s: %s\n",
                  opt == 'n' ? "count" : "concurrency", optarg);
          return EXIT_USAGE;
        }
        if (opt == 'n')
          count = v;
        else
          concurrency = v;
      }
      break;
    case 'x':
      a.format = OUT_HEX;
      break;
    case 'j':
      a.format = OUT_JSON;
      break;
    case 'm':
      mmi = optarg;
      break;
    case 'v':
    case 'V': /* as in mdp-broker (Majortomo's -V) */
      a.verbose = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case OPT_VERSION:
      printf("mdp-request (libmdp) %s\n", MDP_VERSION_STRING);
      return 0;
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  char service[MDP_SERVICE_MAX + 1];
  if (mmi != NULL) {
    if (snprintf(service, sizeof service, "%s%s", MDP_MMI_PREFIX, mmi) >=
        (int)sizeof service) {
      fprintf(stderr, "mdp-request: service name too long\n");
      return EXIT_USAGE;
    }
    a.mmi = 1;
  } else if (optind < argc) {
    snprintf(service, sizeof service, "%s", argv[optind++]);
    if (strlen(argv[optind - 1]) > MDP_SERVICE_MAX || service[0] == '\0') {
      fprintf(stderr, "mdp-request: bad service name\n");
      return EXIT_USAGE;
    }
  } else {
    usage(stderr);
    return EXIT_USAGE;
  }
  if (nbrokers == 0)
    brokers[nbrokers++] = MDP_DEFAULT_ENDPOINT;
  /* CURVE: the broker's public key and our own pair, from key files */
  mdp_curve_keypair_t server_pair, own_pair;
  if (tool_curve_load("mdp-request", server_key_file, key_file, &server_pair,
                      &own_pair) < 0)
    return EXIT_USAGE;

  mdp_msg_t *body = mdp_msg_new();
  if (body == NULL)
    return EXIT_UNAVAILABLE;
  int stdin_used = 0;
  for (int i = optind; i < argc; i++) {
    int rc;
    if (strcmp(argv[i], "-") == 0) {
      if (stdin_used++) {
        fprintf(stderr, "mdp-request: \"-\" may be given once\n");
        mdp_msg_destroy(body);
        return EXIT_USAGE;
      }
      rc = append_stdin(body);
    } else {
      rc = mdp_msg_append_str(body, argv[i]);
    }
    if (rc < 0) {
      fprintf(stderr, "mdp-request: cannot read the body\n");
      mdp_msg_destroy(body);
      return EXIT_UNAVAILABLE;
    }
  }
  if (mdp_msg_size(body) == 0)
    mdp_msg_append_mem(body, NULL, 0); /* a body has at least one frame */

  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.timeout_ms = (uint64_t)ceil(timeout * 1000.0);
  if (o.timeout_ms == 0)
    o.timeout_ms = 1;
  o.retries = (unsigned)retries;
  o.max_sockets = 1;
  o.max_msg_size = (int64_t)max_msg_size;
  o.dialect = dialect;
  o.spread = spread;
  o.probe = probe;
  if (key_file != NULL) {
    o.curve_server_key = server_pair.public_key;
    o.curve_public_key = own_pair.public_key;
    o.curve_secret_key = own_pair.secret_key;
  }
  if (a.verbose) {
    o.log_cb = on_log;
    o.log_level = MDP_LOG_DEBUG;
  }
  if (count > 0) {
    int lrc = run_load(brokers, nbrokers, &o, service, body, count,
                       concurrency, a.format == OUT_JSON);
    memset(&own_pair, 0, sizeof own_pair);
    mdp_msg_destroy(body);
    mdp_zmq_context_term();
    return lrc;
  }
  /* One request: this loop (the load mode runs its own). */
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_client_t *client = NULL;
  int rc = mdp_client_new(&loop, brokers, nbrokers, &o, &client);
  memset(&own_pair, 0, sizeof own_pair); /* the client has its own copy */
  if (rc == 0) {
    rc = mdp_client_request(client, service, body, NULL, on_reply, &a, NULL);
    if (rc < 0)
      mdp_client_close(client, NULL);
  }
  if (rc < 0) {
    mdp_msg_destroy(body);
    /* The endpoints are what the library judged, most often. */
    fprintf(stderr, "mdp-request: %s", mdp_strerror(rc));
    for (size_t i = 0; i < nbrokers; i++)
      fprintf(stderr, "%s%s", i ? ", " : " (broker endpoint ", brokers[i]);
    fprintf(stderr, ")\n");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc == MDP_EINVAL || rc == MDP_ESERVICE ? EXIT_USAGE
                                                  : EXIT_UNAVAILABLE;
  }
  while (!a.done)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT); /* the client closes itself */
  uv_loop_close(&loop);
  mdp_zmq_context_term();

  if (a.status == MDP_ETIMEDOUT) {
    fprintf(stderr, "mdp-request: %s: no reply from %s\n",
            a.malformed ? "protocol error" : "timed out", brokers[0]);
    return a.malformed ? EXIT_PROTOCOL : EXIT_TIMEOUT;
  }
  if (a.status < 0) {
    fprintf(stderr, "mdp-request: %s", mdp_strerror(a.status));
    if (a.status == MDP_EINVAL) /* an endpoint the library refused */
      for (size_t i = 0; i < nbrokers; i++)
        fprintf(stderr, "%s%s", i ? ", " : " (broker endpoint ", brokers[i]);
    fprintf(stderr, "%s\n", a.status == MDP_EINVAL ? ")" : "");
    return EXIT_UNAVAILABLE;
  }
  if (a.mmi && strcmp(a.mmi_code, MDP_MMI_NOT_FOUND) == 0)
    return EXIT_NOT_FOUND;
  if (a.mmi && strcmp(a.mmi_code, MDP_MMI_NOT_IMPLEMENTED) == 0)
    return EXIT_PROTOCOL;
  if (a.error_reply)
    return EXIT_UNAVAILABLE;
  return 0;
}
