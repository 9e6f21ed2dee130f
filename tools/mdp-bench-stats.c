/* mdp-bench: clocks, percentiles, medians, /proc readers and processes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mdp-bench.h"

extern char **environ;

const char *bench_arg_str(const bench_args_t *a, const char *key,
                          const char *def) {
  size_t n = strlen(key);
  for (int i = 0; i < a->argc; i++)
    if (strncmp(a->argv[i], key, n) == 0 && a->argv[i][n] == '=')
      return a->argv[i] + n + 1;
  return def;
}

long long bench_arg_int(const bench_args_t *a, const char *key,
                        long long def) {
  const char *v = bench_arg_str(a, key, NULL);
  return v ? strtoll(v, NULL, 10) : def;
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

uint64_t bench_quantile(uint64_t *v, size_t n, double q) {
  if (n == 0)
    return 0;
  qsort(v, n, sizeof *v, cmp_u64);
  size_t i = (size_t)(q * (double)n);
  if (i >= n)
    i = n - 1;
  return v[i];
}

double bench_median(double *v, size_t n) {
  if (n == 0)
    return 0;
  double *c = malloc(n * sizeof *c);
  if (c == NULL)
    return v[0];
  memcpy(c, v, n * sizeof *c);
  qsort(c, n, sizeof *c, cmp_double);
  double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
  free(c);
  return m;
}

static volatile int *term_flag;

static void on_term(int sig) {
  (void)sig;
  if (term_flag)
    *term_flag = 1;
}

void bench_on_term(volatile int *flag) {
  term_flag = flag;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int bench_spawn(bench_proc_t *p, char *const argv[], int pipes,
                const char *env_extra) {
  /* The environment, with env_extra ("NAME=value") added or replacing. */
  size_t n_env = 0;
  while (environ[n_env])
    n_env++;
  char **envp = calloc(n_env + 2, sizeof *envp);
  if (envp == NULL)
    return -1;
  size_t k = 0, name_len = env_extra ? strcspn(env_extra, "=") + 1 : 0;
  for (size_t i = 0; i < n_env; i++)
    if (!env_extra || strncmp(environ[i], env_extra, name_len) != 0)
      envp[k++] = environ[i];
  if (env_extra)
    envp[k++] = (char *)env_extra;
  envp[k] = NULL;
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  p->in_fd = p->out_fd = -1;
  if (pipes) {
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
      posix_spawn_file_actions_destroy(&fa);
      free(envp);
      return -1;
    }
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(envp);
  if (pipes) {
    close(in[0]);
    close(out[1]);
    p->in_fd = in[1];
    p->out_fd = out[0];
  }
  if (rc != 0) {
    fprintf(stderr, "mdp-bench: cannot run %s: %s\n", argv[0], strerror(rc));
    if (pipes) {
      close(p->in_fd);
      close(p->out_fd);
    }
    p->pid = -1;
    return -1;
  }
  return 0;
}

int bench_read_line(bench_proc_t *p, char *buf, size_t size, int timeout_ms) {
  size_t n = 0;
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (n + 1 < size) {
    uint64_t now = bench_now_ns();
    if (now >= deadline)
      return -1;
    struct pollfd pfd = {p->out_fd, POLLIN, 0};
    int rc = poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc <= 0)
      return -1;
    char c;
    ssize_t r = read(p->out_fd, &c, 1);
    if (r <= 0)
      return -1;
    if (c == '\n') {
      buf[n] = '\0';
      return 0;
    }
    buf[n++] = c;
  }
  buf[n] = '\0';
  return 0;
}

int bench_stop(bench_proc_t *p, int sig, int timeout_ms) {
  if (p->pid <= 0)
    return -1;
  if (sig)
    kill(p->pid, sig);
  int status = -1;
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  for (;;) {
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid)
      break;
    if (r < 0) {
      status = -1;
      break;
    }
    if (bench_now_ns() >= deadline) {
      fprintf(stderr, "mdp-bench: pid %d did not stop, killing it\n",
              (int)p->pid);
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &status, 0);
      status = -1;
      break;
    }
    bench_sleep_ms(5);
  }
  if (p->in_fd >= 0)
    close(p->in_fd);
  if (p->out_fd >= 0)
    close(p->out_fd);
  p->in_fd = p->out_fd = -1;
  p->pid = -1;
  return status;
}

/* /proc/PID/stat read into `buf`: the fields after the command name (which
 * may hold spaces and parentheses), starting at the state; NULL if the
 * process is gone or the file is not as expected. */
static const char *proc_stat_fields(pid_t pid, char *buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return NULL;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' ? p + 2 : NULL;
}

double bench_proc_cpu(pid_t pid) {
  char buf[1024];
  const char *p = proc_stat_fields(pid, buf, sizeof buf);
  unsigned long utime = 0, stime = 0;
  /* state(3) ... utime is field 14, stime 15: 11 fields after state. */
  if (p == NULL ||
      sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
             &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

double bench_proc_faults(pid_t pid) {
  char buf[1024];
  const char *p = proc_stat_fields(pid, buf, sizeof buf);
  unsigned long minflt = 0, majflt = 0;
  /* minflt is field 10, majflt 12 (cminflt, the children's, between). */
  if (p == NULL || sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %lu %*u %lu",
                          &minflt, &majflt) != 2)
    return -1;
  return (double)minflt + (double)majflt;
}

long bench_proc_rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

void bench_raise_nofile(void) {
  struct rlimit rl;
  /* (h)'s 20,000 clients need more descriptors in the broker than a hard
   * limit of 20,000: raise it where we may (root), for every child. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < 65536) {
    struct rlimit want = {65536, 65536};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
      return;
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
