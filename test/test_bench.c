/* test_bench: runs `mdp-bench --smoke` (every scenario for about a second,
 * no thresholds: the figures come from real runs, docs/performance.md) and
 * passes if it ran everything and exited 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

int main(void) {
  const char *build = getenv("MDP_BUILD_DIR");
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/tools/mdp-bench' --smoke 1>&2",
           build ? build : ".");
  printf("1..1\n");
  fflush(stdout);
  int status = system(cmd);
  int ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  printf("%s 1 - mdp-bench --smoke (status %d)\n", ok ? "ok" : "not ok",
         status);
  printf("# %d passed, %d failed\n", ok, !ok);
  return ok ? 0 : 1;
}
