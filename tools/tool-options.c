/* Options the peer-side tools share (tools/tool-options.h). */
#include <stdio.h>
#include <string.h>

#include "tool-options.h"

int tool_curve_load(const char *prog, const char *server_file,
                    const char *own_file, mdp_curve_keypair_t *server,
                    mdp_curve_keypair_t *own) {
  memset(server, 0, sizeof *server);
  memset(own, 0, sizeof *own);
  if ((server_file != NULL) != (own_file != NULL)) {
    fprintf(stderr, "%s: --curve-server-key and --curve-key go together\n",
            prog);
    return -1;
  }
  if (own_file == NULL)
    return 0;
  const char *files[2] = {server_file, own_file};
  mdp_curve_keypair_t *pairs[2] = {server, own};
  for (int i = 0; i < 2; i++) {
    size_t line = 0;
    int rc = mdp_curve_load(files[i], pairs[i], &line);
    if (rc == 0 && i == 1 && own->secret_key[0] == '\0')
      rc = MDP_EINVAL; /* a public key file where the pair belongs */
    if (rc == 0)
      continue;
    if (line > 0)
      fprintf(stderr, "%s: %s:%zu: not a key line\n", prog, files[i], line);
    else
      fprintf(stderr, "%s: %s: %s\n", prog, files[i],
              rc == MDP_EINVAL ? (i == 0 ? "not a public key file"
                                         : "not a key pair (NAME.secret)")
                               : mdp_strerror(rc));
    memset(own, 0, sizeof *own);
    return -1;
  }
  return 0;
}

int tool_dialect(const char *prog, const char *name, mdp_dialect_t *out) {
  static const mdp_dialect_t all[] = {MDP_DIALECT_RFC18, MDP_DIALECT_MAJORTOMO,
                                      MDP_DIALECT_MDP01};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(name, mdp_dialect_name(all[i])) == 0) {
      *out = all[i];
      return 0;
    }
  fprintf(stderr, "%s: bad --dialect: %s (rfc18, majortomo, mdp01)\n", prog,
          name);
  return -1;
}

int tool_check_endpoint(const char *prog, const char *endpoint) {
  /* The library's own check (mdp_endpoint_check), at once and with the
   * endpoint named: libzmq would wrap a port out of range (99999 is
   * 34463). */
  if (mdp_endpoint_check(endpoint, 0) == 0)
    return 0;
  fprintf(stderr, "%s: invalid broker endpoint '%s': a tcp:// endpoint "
          "needs a port from 1 to 65535 (out of range or missing)\n", prog,
          endpoint);
  return -1;
}
