/* Child processes for tests: spawn, wait with a deadline, signal, RSS.
 * Include after harness.h. */
#ifndef MDP_TEST_PROC_H
#define MDP_TEST_PROC_H

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct {
  pid_t pid;
  char out_path[64]; /* the child's stdout, or "" */
  char err_path[64]; /* the child's stderr, or "" */
} proc_t;

/* $MDP_BUILD_DIR/<rel>, e.g. build_path("tools/mdp-broker"). */
static inline const char *build_path(const char *rel) {
  static char paths[8][1024];
  static int next;
  char *p = paths[next++ % 8];
  const char *dir = getenv("MDP_BUILD_DIR");
  snprintf(p, 1024, "%s/%s", dir ? dir : "build", rel);
  return p;
}

/* Every child not reaped yet, so that a test that fails half-way (a CHECK
 * returns at once, before its cleanup) leaves no broker or worker running
 * after the test program: they are SIGKILLed at exit. */
#define PROC_MAX_LIVE 256
static pid_t proc_live_[PROC_MAX_LIVE];

static inline void proc_kill_live_(void) {
  for (int i = 0; i < PROC_MAX_LIVE; i++) {
    pid_t pid = proc_live_[i];
    proc_live_[i] = 0;
    /* Only a child still running: one a test reaped itself is no longer
     * ours (waitpid fails), and its pid may belong to anyone now. */
    if (pid > 0 && waitpid(pid, NULL, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
}

static inline void proc_track_(pid_t pid) {
  static int registered;
  if (!registered) {
    registered = 1;
    atexit(proc_kill_live_);
  }
  for (int i = 0; i < PROC_MAX_LIVE; i++)
    if (proc_live_[i] == 0) {
      proc_live_[i] = pid;
      return;
    }
}

static inline void proc_reaped_(pid_t pid) {
  for (int i = 0; i < PROC_MAX_LIVE; i++)
    if (proc_live_[i] == pid)
      proc_live_[i] = 0;
}

static inline int temp_file(char *path, size_t size) {
  snprintf(path, size, "/tmp/mdp-test-XXXXXX");
  return mkstemp(path);
}

/* Starts argv[0] with argv; its stdout and stderr go to temporary files
 * (read them with proc_stdout / proc_stderr).  0 or -1. */
static inline int proc_spawn(proc_t *p, const char *const *argv) {
  int out = temp_file(p->out_path, sizeof p->out_path);
  int err = temp_file(p->err_path, sizeof p->err_path);
  if (out < 0 || err < 0)
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv,
                       environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out);
  close(err);
  if (rc == 0)
    proc_track_(p->pid);
  return rc == 0 ? 0 : -1;
}

/* Waits up to `ms` (scaled by MDP_TEST_SLOW) for the child to exit: its
 * exit code, 128+signal, or -1 if it was still running (then it is
 * killed). */
static inline int proc_wait(proc_t *p, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  int status;
  for (;;) {
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid)
      break;
    if (uv_hrtime() > deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &status, 0);
      proc_reaped_(p->pid);
      return -1;
    }
    usleep(2000);
  }
  proc_reaped_(p->pid);
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/* SIGKILL and reap. */
static inline void proc_kill(proc_t *p) {
  kill(p->pid, SIGKILL);
  int status;
  waitpid(p->pid, &status, 0);
  proc_reaped_(p->pid);
}

static inline const char *read_file_(const char *path) {
  static char buf[65536];
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  return buf;
}

/* The child's output so far (a static buffer, overwritten by the next
 * call). */
static inline const char *proc_stdout(proc_t *p) {
  return read_file_(p->out_path);
}
static inline const char *proc_stderr(proc_t *p) {
  return read_file_(p->err_path);
}

/* Waits up to `ms` until the child's stdout contains `text`. */
static inline int proc_wait_output(proc_t *p, const char *text, uint64_t ms) {
  uint64_t deadline = uv_hrtime() + t_slow(ms) * 1000000ull;
  while (strstr(proc_stdout(p), text) == NULL) {
    if (uv_hrtime() > deadline)
      return 0;
    usleep(2000);
  }
  return 1;
}

static inline void proc_cleanup(proc_t *p) {
  unlink(p->out_path);
  unlink(p->err_path);
}

/* Resident set size of a process in KiB, or 0. */
/* A "Vm...:" figure of /proc/PID/status in KiB (0 if unreadable). */
static inline long proc_status_kb(pid_t pid, const char *field) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  char line[256], fmt[64];
  snprintf(fmt, sizeof fmt, "%s: %%ld kB", field);
  long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, fmt, &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static inline long proc_rss_kb(pid_t pid) {
  return proc_status_kb(pid, "VmRSS");
}

/* Address space (untouched pages too, which RSS does not show). */
static inline long proc_vsz_kb(pid_t pid) {
  return proc_status_kb(pid, "VmSize");
}

/* A free TCP endpoint on loopback (bound by ZeroMQ and released). */
static inline void free_tcp_endpoint(void *ctx, char *ep, size_t size) {
  void *s = zmq_socket(ctx, ZMQ_ROUTER);
  zmq_bind(s, "tcp://127.0.0.1:*");
  zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &size);
  zmq_close(s);
}

#endif /* MDP_TEST_PROC_H */
