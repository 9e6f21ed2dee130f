/* mdp-worker: serve a Majordomo service from the command line.
 *
 *   mdp-worker -b EP [-b EP ...] [-c N] [options] --echo SERVICE
 *   mdp-worker -b EP [-b EP ...] [-c N] [options] SERVICE -- COMMAND [ARG...]
 *
 * Built on mdp_worker_group_t: N concurrent slots spread over the brokers
 * (docs/farm.md).  --echo replies with the request's frames.  Otherwise
 * COMMAND runs once per request (uv_spawn, no shell unless --shell): the
 * request's frames, concatenated, on its standard input; its standard
 * output is the reply (one frame).  A command that exits non-zero, is
 * killed, times out (--timeout) or cannot be started gives a two-frame
 * FINAL: ["error: ...", what it wrote so far].  SIGINT/SIGTERM: the
 * requests in progress are finished and their replies sent, then exit 0
 * (a second signal kills the commands still running).  With CURVE brokers,
 * --curve-server-key and --curve-key name mdp-keygen files, read as
 * mdp-request reads them; every connection uses them.  At exit one line
 * per broker and a summary go to standard output.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp.h"
#include "tool-options.h"

#define EXIT_BAD_USAGE 2
#define MAX_BROKERS 64
#define MAX_OUTPUT (64u * 1024 * 1024)

typedef struct job_s job_t;

typedef struct {
  uv_loop_t *loop;
  mdp_worker_group_t *group;
  int group_gone;
  int echo;
  uint64_t delay_ms;
  uint64_t timeout_ms; /* 0: none */
  char **cmd;          /* NULL-terminated argv for uv_spawn */
  uv_signal_t sigint, sigterm;
  int signals;
  int in_progress;
  int max_in_progress;
  uint64_t requests;
  uint64_t errors;
  job_t *jobs; /* running commands and delayed echoes */
  int verbose;
} app_t;

struct job_s {
  app_t *app;
  mdp_request_t req;
  mdp_msg_t *body;     /* echo: the reply; command: stdin until written */
  uv_process_t proc;
  uv_pipe_t in, out;
  uv_timer_t timer;
  uv_write_t wr;
  uv_buf_t *bufs;
  int handles;         /* open libuv handles */
  int spawned, exited, out_eof, timed_out, too_big, answered;
  int pgid;            /* the command's process group (its pid), 0: none */
  int64_t exit_status;
  int term_signal;
  int spawn_error;
  char *buf;
  size_t len, cap;
  job_t *prev, *next;
};

static void usage(FILE *out) {
  fprintf(out,
    "Usage: mdp-worker [-b URL]... [OPTION]... --echo SERVICE\n"
    "  or:  mdp-worker [-b URL]... [OPTION]... SERVICE -- COMMAND [ARG]...\n"
    "Serves a Majordomo (MDP/0.2) service through one or more brokers, with\n"
    "up to N requests in progress at once (N worker connections spread over\n"
    "the brokers that are alive; docs/farm.md).\n"
    "\n"
    "Options:\n"
    "  -b, --broker URL     broker endpoint; repeat for a farm (default %s)\n"
    "  -C, --concurrency N  requests in progress at once, all brokers together\n"
    "                       (default: one per broker; -c still works but is\n"
    "                       deprecated: it is --config in mdp-broker)\n"
    "  -e, --echo           reply with the request's frames\n"
    "      --delay SECS     with --echo: reply after SECS (for tests and demos)\n"
    "  -t, --timeout SECS   COMMAND: kill it and every process it started\n"
    "                       (its process group, SIGKILL) after SECS and\n"
    "                       reply with an error (default: no limit)\n"
    "      --shell          COMMAND: run it with /bin/sh -c (the words after\n"
    "                       -- joined by spaces); without it, no shell: the\n"
    "                       words are the program and its arguments\n"
    "  -i, --heartbeat-interval SECS\n"
    "                       heartbeat interval (default %g)\n"
    "  -l, --heartbeat-liveness N\n"
    "                       broker lost after N silent intervals (default %d)\n"
    "      --dialect NAME   rfc18 (default), majortomo (a Majortomo broker)\n"
    "                       or mdp01 (an MDP/0.1 broker)\n"
    "  -S, --curve-server-key FILE\n"
    "                       CURVE: the brokers' public key file\n"
    "                       (mdp-keygen NAME.pub); needs --curve-key\n"
    "  -K, --curve-key FILE this worker's key pair (mdp-keygen\n"
    "                       NAME.secret), listed in the brokers'\n"
    "                       --curve-allow\n"
    "  -v, -V, --verbose    log to standard error\n"
    "  -h, --help           this text\n"
    "      --version        the version\n"
    "\n"
    "COMMAND runs once per request: the request's frames, concatenated, on its\n"
    "standard input; its standard output (up to 64 MiB) is the reply, one\n"
    "frame; its standard error is mdp-worker's.  When it exits non-zero, is\n"
    "killed, times out or cannot be run, the reply has two frames: a status\n"
    "text (\"error: exit status 3\", \"error: killed by signal 9\", \"error:\n"
    "timed out after 2 s\", \"error: cannot run: ...\", \"error: output too\n"
    "large\") and the output so far.  A one-frame reply is a success.\n"
    "\n"
    "SIGINT or SIGTERM: requests in progress are finished and answered, then\n"
    "mdp-worker exits 0; a second signal kills the commands still running.\n"
    "At exit it prints to standard output one line per broker\n"
    "(\"broker URL: N requests\") and \"N requests, M errors, max P in\n"
    "progress (C slots)\".  Exit status: 0, 2 usage error, 1 failure.\n",
    MDP_DEFAULT_ENDPOINT, MDP_DEFAULT_HEARTBEAT_INTERVAL_MS / 1000.0,
    MDP_DEFAULT_HEARTBEAT_LIVENESS);
}

static void on_log(void *data, mdp_log_level_t level, const char *line) {
  (void)data;
  fprintf(stderr, "mdp-worker: %s: %s\n", mdp_log_level_name(level), line);
}

/* --- jobs ------------------------------------------------------------- */

static void job_unlink(job_t *j) {
  app_t *a = j->app;
  if (j->prev)
    j->prev->next = j->next;
  else
    a->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
}

static void job_handle_closed(uv_handle_t *h) {
  job_t *j = h->data;
  if (--j->handles > 0)
    return;
  job_unlink(j);
  mdp_msg_destroy(j->body);
  free(j->bufs);
  free(j->buf);
  free(j);
}

static void job_close_handle(job_t *j, uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, job_handle_closed);
}

/* Sends the FINAL (unless the group is gone: then nobody can take it). */
static void job_reply(job_t *j, mdp_msg_t *reply) {
  app_t *a = j->app;
  j->answered = 1;
  a->in_progress--;
  if (a->group_gone || mdp_worker_final(j->req, reply) < 0)
    mdp_msg_destroy(reply);
}

static void job_finish(job_t *j) {
  if (j->answered || !(j->spawn_error || (j->exited && j->out_eof)))
    return;
  app_t *a = j->app;
  mdp_msg_t *reply = mdp_msg_new();
  char status[160] = "";
  if (j->spawn_error)
    snprintf(status, sizeof status, "error: cannot run: %s",
             uv_strerror(j->spawn_error));
  else if (j->too_big)
    snprintf(status, sizeof status, "error: output too large");
  else if (j->timed_out)
    snprintf(status, sizeof status, "error: timed out after %g s",
             a->timeout_ms / 1000.0);
  else if (j->term_signal)
    snprintf(status, sizeof status, "error: killed by signal %d",
             j->term_signal);
  else if (j->exit_status != 0)
    snprintf(status, sizeof status, "error: exit status %lld",
             (long long)j->exit_status);
  if (status[0]) {
    a->errors++;
    mdp_msg_append_str(reply, status);
  }
  mdp_msg_append_mem(reply, j->buf, j->len);
  job_reply(j, reply);
  if (j->spawned)
    job_close_handle(j, (uv_handle_t *)&j->proc);
  job_close_handle(j, (uv_handle_t *)&j->timer);
  job_close_handle(j, (uv_handle_t *)&j->out);
  job_close_handle(j, (uv_handle_t *)&j->in);
}

/* Each command runs in a process group of its own (a new session), so
 * what it started in the background goes with it: the group is killed,
 * not only the direct child, whose exit may leave the output pipe held
 * open by its children. */
static void job_kill(job_t *j) {
  if (j->pgid > 0)
    kill(-j->pgid, SIGKILL);
}

/* The reply no longer waits for the end of the output: after a timeout, a
 * process that left the group (its own setsid) may hold the pipe open. */
static void job_stop_reading(job_t *j) {
  if (j->out_eof)
    return;
  uv_read_stop((uv_stream_t *)&j->out);
  j->out_eof = 1;
}

static void on_exit_(uv_process_t *p, int64_t status, int sig) {
  job_t *j = p->data;
  j->exited = 1;
  j->exit_status = status;
  j->term_signal = sig;
  /* The deadline stays until the reply is sent: a background process may
   * hold the output open after the command itself exited. */
  if (j->timed_out)
    job_stop_reading(j);
  job_finish(j);
}

static void on_timeout(uv_timer_t *t) {
  job_t *j = t->data;
  j->timed_out = 1;
  job_kill(j);
  if (j->exited) {
    job_stop_reading(j);
    job_finish(j);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  job_t *j = h->data;
  (void)hint;
  if (j->cap - j->len < 65536) {
    size_t cap = j->cap ? j->cap * 2 : 65536;
    char *more = realloc(j->buf, cap);
    if (more == NULL) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
    j->buf = more;
    j->cap = cap;
  }
  buf->base = j->buf + j->len;
  buf->len = j->cap - j->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  job_t *j = s->data;
  (void)buf;
  if (n > 0) {
    j->len += (size_t)n;
    if (j->len > MAX_OUTPUT && !j->too_big) {
      j->too_big = 1;
      j->len = MAX_OUTPUT;
      job_kill(j);
    }
    if (j->too_big)
      j->len = MAX_OUTPUT;
    return;
  }
  if (n < 0) { /* UV_EOF, or an error: the output ends here */
    uv_read_stop(s);
    j->out_eof = 1;
    job_finish(j);
  }
}

static void on_written(uv_write_t *w, int status) {
  job_t *j = w->data;
  (void)status; /* EPIPE: the command did not read its input; fine */
  mdp_msg_destroy(j->body);
  j->body = NULL;
  job_close_handle(j, (uv_handle_t *)&j->in);
}

static job_t *job_new(app_t *a, mdp_request_t req, mdp_msg_t *body) {
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL)
    return NULL;
  j->app = a;
  j->req = req;
  j->body = body;
  j->next = a->jobs;
  if (a->jobs)
    a->jobs->prev = j;
  a->jobs = j;
  return j;
}

static void run_command(app_t *a, job_t *j) {
  uv_pipe_init(a->loop, &j->in, 0);
  uv_pipe_init(a->loop, &j->out, 0);
  uv_timer_init(a->loop, &j->timer);
  j->in.data = j->out.data = j->timer.data = j->proc.data = j;
  j->handles = 3;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&j->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&j->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = a->cmd[0];
  po.args = a->cmd;
  po.exit_cb = on_exit_;
  po.stdio = stdio;
  po.stdio_count = 3;
  po.flags = UV_PROCESS_DETACHED; /* setsid(): its own process group */
  int rc = uv_spawn(a->loop, &j->proc, &po);
  j->handles++; /* the process handle is closed in either case */
  if (rc < 0) {
    j->spawn_error = rc;
    job_close_handle(j, (uv_handle_t *)&j->proc);
    job_finish(j);
    return;
  }
  j->spawned = 1;
  j->pgid = j->proc.pid;
  if (a->timeout_ms)
    uv_timer_start(&j->timer, on_timeout, a->timeout_ms, 0);
  uv_read_start((uv_stream_t *)&j->out, on_alloc, on_read);
  size_t n = mdp_msg_size(j->body), total = 0;
  j->bufs = calloc(n ? n : 1, sizeof *j->bufs);
  for (size_t i = 0; j->bufs && i < n; i++) {
    j->bufs[i] = uv_buf_init((char *)mdp_msg_data(j->body, i),
                             (unsigned)mdp_msg_frame_size(j->body, i));
    total += mdp_msg_frame_size(j->body, i);
  }
  j->wr.data = j;
  if (j->bufs == NULL || total == 0 ||
      uv_write(&j->wr, (uv_stream_t *)&j->in, j->bufs, (unsigned)n,
               on_written) < 0)
    job_close_handle(j, (uv_handle_t *)&j->in); /* EOF at once */
}

static void on_delay(uv_timer_t *t) {
  job_t *j = t->data;
  mdp_msg_t *body = j->body;
  j->body = NULL;
  job_reply(j, body);
  job_close_handle(j, (uv_handle_t *)t);
}

static void on_request(mdp_worker_group_t *g, mdp_request_t req,
                       mdp_msg_t *body) {
  app_t *a = mdp_worker_group_get_data(g);
  a->requests++;
  if (++a->in_progress > a->max_in_progress)
    a->max_in_progress = a->in_progress;
  if (a->echo && a->delay_ms == 0) {
    a->in_progress--;
    if (mdp_worker_final(req, body) < 0)
      mdp_msg_destroy(body);
    return;
  }
  job_t *j = job_new(a, req, body);
  if (j == NULL) {
    a->in_progress--;
    mdp_msg_destroy(body);
    mdp_msg_t *err = mdp_msg_new();
    mdp_msg_append_str(err, "error: out of memory");
    mdp_msg_append_mem(err, NULL, 0);
    if (mdp_worker_final(req, err) < 0)
      mdp_msg_destroy(err);
    return;
  }
  if (a->echo) {
    uv_timer_init(a->loop, &j->timer);
    j->timer.data = j;
    j->handles = 1;
    uv_timer_start(&j->timer, on_delay, a->delay_ms, 0);
    return;
  }
  run_command(a, j);
}

/* --- stopping --------------------------------------------------------- */

static void print_summary(app_t *a) {
  mdp_worker_group_stats_t st;
  mdp_worker_group_get_stats(a->group, &st);
  for (size_t i = 0;; i++) {
    mdp_worker_group_broker_t b;
    if (mdp_worker_group_get_broker(a->group, i, &b) < 0)
      break;
    printf("broker %s: %llu requests\n", b.endpoint,
           (unsigned long long)b.requests);
  }
  printf("%llu requests, %llu errors, max %d in progress (%zu slots)\n",
         (unsigned long long)a->requests, (unsigned long long)a->errors,
         a->max_in_progress, st.slots);
  fflush(stdout);
}

static void on_group_closed(mdp_worker_group_t *g) {
  app_t *a = mdp_worker_group_get_data(g);
  print_summary(a);
  a->group_gone = 1;
  /* Requests abandoned with a lost connection: nobody takes the reply. */
  for (job_t *j = a->jobs; j; j = j->next)
    job_kill(j);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  app_t *a = s->data;
  if (a->verbose)
    fprintf(stderr, "mdp-worker: signal %d: stopping\n", signum);
  if (a->signals++ == 0) {
    mdp_worker_group_close(a->group, 1, on_group_closed);
    return;
  }
  for (job_t *j = a->jobs; j; j = j->next)
    job_kill(j);
}

/* --- options ---------------------------------------------------------- */

static int parse_secs(const char *s, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !(v > 0) || v > max)
    return -1;
  *out = v;
  return 0;
}

static uint64_t secs_ms(double s) {
  uint64_t ms = (uint64_t)ceil(s * 1000.0);
  return ms ? ms : 1;
}

enum { OPT_DELAY = 256, OPT_SHELL, OPT_DIALECT, OPT_VERSION };

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"broker", required_argument, NULL, 'b'},
      {"concurrency", required_argument, NULL, 'C'},
      {"echo", no_argument, NULL, 'e'},
      {"delay", required_argument, NULL, OPT_DELAY},
      {"timeout", required_argument, NULL, 't'},
      {"shell", no_argument, NULL, OPT_SHELL},
      {"heartbeat-interval", required_argument, NULL, 'i'},
      {"heartbeat-liveness", required_argument, NULL, 'l'},
      {"dialect", required_argument, NULL, OPT_DIALECT},
      {"curve-server-key", required_argument, NULL, 'S'},
      {"curve-key", required_argument, NULL, 'K'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0}};
  const char *brokers[MAX_BROKERS];
  size_t nbrokers = 0;
  app_t a;
  memset(&a, 0, sizeof a);
  mdp_worker_group_options_t o;
  mdp_worker_group_options_init(&o);
  int shell = 0;
  const char *server_key_file = NULL, *key_file = NULL;
  int opt;
  double v;
  /* "+": stop at the first non-option (the service), so COMMAND's own
   * options after -- are never ours. */
  while ((opt = getopt_long(argc, argv, "+b:C:c:et:i:l:d:S:K:vVh", longopts,
                            NULL)) != -1) {
    char *end;
    long n;
    switch (opt) {
    case 'b':
      if (nbrokers == MAX_BROKERS) {
        fprintf(stderr, "mdp-worker: too many brokers (%d)\n", MAX_BROKERS);
        return EXIT_BAD_USAGE;
      }
      if (tool_check_endpoint("mdp-worker", optarg) < 0)
        return EXIT_BAD_USAGE;
      brokers[nbrokers++] = optarg;
      break;
    case 'c': /* deprecated: -c is --config in mdp-broker */
      fprintf(stderr, "mdp-worker: -c is deprecated, use -C (--concurrency;"
                      " -c is --config in mdp-broker)\n");
      /* fall through */
    case 'C':
      errno = 0;
      n = strtol(optarg, &end, 10);
      if (errno || *end || n < 1 || n > (long)MDP_WORKER_GROUP_MAX_CONCURRENCY) {
        fprintf(stderr, "mdp-worker: bad --concurrency: %s (1..%u)\n", optarg,
                MDP_WORKER_GROUP_MAX_CONCURRENCY);
        return EXIT_BAD_USAGE;
      }
      o.concurrency = (size_t)n;
      break;
    case 'e':
      a.echo = 1;
      break;
    case OPT_DELAY:
      if (parse_secs(optarg, 1e6, &v) < 0) {
        fprintf(stderr, "mdp-worker: bad --delay: %s\n", optarg);
        return EXIT_BAD_USAGE;
      }
      a.delay_ms = secs_ms(v);
      break;
    case 't':
      if (parse_secs(optarg, 1e6, &v) < 0) {
        fprintf(stderr, "mdp-worker: bad --timeout: %s\n", optarg);
        return EXIT_BAD_USAGE;
      }
      a.timeout_ms = secs_ms(v);
      break;
    case OPT_SHELL:
      shell = 1;
      break;
    case 'i':
      if (parse_secs(optarg, 1e6, &v) < 0) {
        fprintf(stderr, "mdp-worker: bad --heartbeat-interval: %s\n", optarg);
        return EXIT_BAD_USAGE;
      }
      o.worker.heartbeat_interval_ms = secs_ms(v);
      break;
    case 'l':
      errno = 0;
      n = strtol(optarg, &end, 10);
      if (errno || *end || n < 1 || n > (long)MDP_WORKER_LIVENESS_MAX) {
        fprintf(stderr, "mdp-worker: bad --heartbeat-liveness: %s\n", optarg);
        return EXIT_BAD_USAGE;
      }
      o.worker.heartbeat_liveness = (unsigned)n;
      break;
    case 'd': /* deprecated: -d is --debug in mdp-broker */
      fprintf(stderr, "mdp-worker: -d is deprecated, use --dialect (-d is "
                      "--debug in mdp-broker)\n");
      /* fall through */
    case OPT_DIALECT:
      if (tool_dialect("mdp-worker", optarg, &o.worker.dialect) < 0)
        return EXIT_BAD_USAGE;
      break;
    case 'S':
      server_key_file = optarg;
      break;
    case 'K':
      key_file = optarg;
      break;
    case 'v':
    case 'V': /* as in mdp-broker (Majortomo's -V) */
      a.verbose = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case OPT_VERSION:
      printf("mdp-worker (libmdp) %s\n", MDP_VERSION_STRING);
      return 0;
    default:
      usage(stderr);
      return EXIT_BAD_USAGE;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "mdp-worker: no SERVICE\n");
    usage(stderr);
    return EXIT_BAD_USAGE;
  }
  const char *service = argv[optind++];
  /* getopt with "+" leaves a "--" after SERVICE in place */
  int has_cmd = optind < argc && strcmp(argv[optind], "--") == 0;
  if (has_cmd)
    optind++;
  if (a.echo == (has_cmd && optind < argc) || (has_cmd && optind >= argc) ||
      (!has_cmd && optind < argc)) {
    fprintf(stderr, "mdp-worker: give either --echo or -- COMMAND after "
                    "SERVICE\n");
    return EXIT_BAD_USAGE;
  }
  if (a.delay_ms && !a.echo) {
    fprintf(stderr, "mdp-worker: --delay goes with --echo\n");
    return EXIT_BAD_USAGE;
  }
  if ((a.timeout_ms || shell) && a.echo) {
    fprintf(stderr, "mdp-worker: --timeout and --shell go with COMMAND\n");
    return EXIT_BAD_USAGE;
  }
  mdp_curve_keypair_t server_pair, own_pair;
  if (tool_curve_load("mdp-worker", server_key_file, key_file, &server_pair,
                      &own_pair) < 0)
    return EXIT_BAD_USAGE;
  if (key_file != NULL) { /* copied by mdp_worker_group_new() */
    o.worker.curve_server_key = server_pair.public_key;
    o.worker.curve_public_key = own_pair.public_key;
    o.worker.curve_secret_key = own_pair.secret_key;
  }
  char *shell_argv[4] = {NULL, NULL, NULL, NULL};
  char *joined = NULL;
  if (!a.echo) {
    if (shell) {
      size_t len = 1;
      for (int i = optind; i < argc; i++)
        len += strlen(argv[i]) + 1;
      joined = calloc(1, len);
      if (joined == NULL)
        return 1;
      for (int i = optind; i < argc; i++) {
        if (i > optind)
          strcat(joined, " ");
        strcat(joined, argv[i]);
      }
      shell_argv[0] = "/bin/sh";
      shell_argv[1] = "-c";
      shell_argv[2] = joined;
      a.cmd = shell_argv;
    } else {
      a.cmd = argv + optind; /* argv is NULL-terminated */
    }
  }
  if (nbrokers == 0)
    brokers[nbrokers++] = MDP_DEFAULT_ENDPOINT;
  if (a.verbose) {
    o.worker.log_cb = on_log;
    o.worker.log_level = MDP_LOG_DEBUG;
  }
  signal(SIGPIPE, SIG_IGN); /* a command that does not read its input */

  uv_loop_t loop;
  uv_loop_init(&loop);
  a.loop = &loop;
  int rc = mdp_worker_group_new(&loop, brokers, nbrokers, service, on_request,
                                &o, &a.group);
  memset(&own_pair, 0, sizeof own_pair); /* the group holds its own copy */
  if (rc < 0) {
    /* The endpoints are what the library judged, most often. */
    fprintf(stderr, "mdp-worker: %s", mdp_strerror(rc));
    for (size_t i = 0; i < nbrokers; i++)
      fprintf(stderr, "%s%s", i ? ", " : " (broker endpoint ", brokers[i]);
    fprintf(stderr, ")\n");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(joined);
    return rc == MDP_EINVAL || rc == MDP_ESERVICE ? EXIT_BAD_USAGE : 1;
  }
  mdp_worker_group_set_data(a.group, &a);
  uv_signal_init(&loop, &a.sigint);
  uv_signal_init(&loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  mdp_zmq_context_term();
  free(joined);
  return 0;
}
