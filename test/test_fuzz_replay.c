/* Replays every file of fuzz/corpus/<target>/ through the fuzz targets'
 * own harnesses, without libFuzzer: the seeds and every crash reproducer
 * that was fixed stay regression tests in the normal suite (and so run
 * under ASan/UBSan and valgrind in CI).  The targets are compiled in with
 * MDP_FUZZ_NO_MAIN, which renames LLVMFuzzerTestOneInput; a failed check
 * in a harness abort()s, which fails this test with the file's name just
 * printed.  docs/reliability.md describes the targets.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MDP_FUZZ_NO_MAIN
#include "../fuzz/fuzz_broker.c"
#include "../fuzz/fuzz_codec.c"

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs `one` on every file of fuzz/corpus/<target>; returns the count, or
 * -1 if the directory cannot be read. */
static int replay(const char *target,
                  int (*one)(const uint8_t *, size_t)) {
  const char *dir = getenv("MDP_TEST_DIR");
  char path[2048];
  snprintf(path, sizeof path, "%s/../fuzz/corpus/%s", dir ? dir : "test",
           target);
  DIR *d = opendir(path);
  if (d == NULL) {
    printf("# cannot open %s (set MDP_TEST_DIR)\n", path);
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      names = realloc(names, cap * sizeof *names);
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof *names, name_cmp);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    char file[4096];
    snprintf(file, sizeof file, "%s/%s", path, names[i]);
    FILE *fp = fopen(file, "rb");
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fp != NULL) {
      fseek(fp, 0, SEEK_END);
      long end = ftell(fp);
      fseek(fp, 0, SEEK_SET);
      buf = malloc(end > 0 ? (size_t)end : 1);
      len = end > 0 ? fread(buf, 1, (size_t)end, fp) : 0;
      fclose(fp);
    }
    if (buf == NULL) {
      printf("# cannot read %s\n", file);
      count = -1;
    } else {
      /* Named first, so an abort inside says which input it was. */
      printf("# %s/%s (%zu bytes)\n", target, names[i], len);
      fflush(stdout);
      one(buf, len);
      free(buf);
      if (count >= 0)
        count++;
    }
    free(names[i]);
  }
  free(names);
  return count;
}

static void codec_corpus(void) {
  int n = replay("fuzz_codec", mdp_fuzz_codec_one);
  CHECK(n > 0);
  printf("# %d codec inputs\n", n);
}

static void broker_corpus(void) {
  int n = replay("fuzz_broker", mdp_fuzz_broker_one);
  CHECK(n > 0);
  printf("# %d broker inputs\n", n);
}

static void empty_and_tiny_inputs(void) {
  /* What libFuzzer always tries first. */
  static const uint8_t bytes[] = {0xff, 0xff, 0xff, 0xff};
  for (size_t len = 0; len <= sizeof bytes; len++) {
    mdp_fuzz_codec_one(bytes, len);
    mdp_fuzz_broker_one(bytes, len);
  }
}

int main(void) {
  RUN(empty_and_tiny_inputs);
  RUN(codec_corpus);
  RUN(broker_corpus);
  return t_done();
}
