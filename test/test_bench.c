/* test_bench: runs `mdp-bench --smoke` (every scenario for about a second,
 * no thresholds: the figures come from real runs, docs/performance.md) and
 * passes if it ran everything and exited 0.  Then the large-body scenario
 * (g) with one small body size, its four implementations (the baseline
 * with and without raised glibc thresholds, mdp-broker with and without
 * --malloc-keep), and the scaling curves (h) at their smallest sizes
 * without callgrind. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int run(int n, const char *build, const char *args, const char *what) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/tools/mdp-bench' %s 1>&2",
           build ? build : ".", args);
  int status = system(cmd);
  int ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  printf("%s %d - %s (status %d)\n", ok ? "ok" : "not ok", n, what, status);
  fflush(stdout);
  return ok;
}

int main(void) {
  const char *build = getenv("MDP_BUILD_DIR");
  printf("1..3\n");
  fflush(stdout);
  int passed = 0;
  passed += run(1, build, "--smoke", "mdp-bench --smoke");
  passed += run(2, build, "--smoke -s g -t tcp --bodies 65536",
                "mdp-bench --smoke -s g (large bodies, page faults)");
  passed += run(3, build, "--smoke -s h --curve-max 1 --no-callgrind",
                "mdp-bench --smoke -s h (scaling curves, smallest)");
  printf("# %d passed, %d failed\n", passed, 3 - passed);
  return passed == 3 ? 0 : 1;
}
