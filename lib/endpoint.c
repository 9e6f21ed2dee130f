/* Endpoint checks done before libzmq sees an endpoint.  libzmq parses a
 * tcp:// port with no range check: tcp://127.0.0.1:99999 binds port 34463,
 * :70000 binds 4464 and :-1 binds 65535, so a typo would serve (or call)
 * somewhere else without a word.  Other transports are left to libzmq. */
#include <string.h>

#include "mdp/context.h"
#include "mdp/error.h"

int mdp_endpoint_check(const char *endpoint, int bind) {
  if (endpoint == NULL || endpoint[0] == '\0')
    return MDP_EINVAL;
  if (strncmp(endpoint, "tcp://", 6) != 0)
    return 0;
  /* connect's "tcp://source;destination": the destination's port. */
  const char *addr = strrchr(endpoint, ';');
  addr = addr ? addr + 1 : endpoint + 6;
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr)
    return MDP_EINVAL;
  const char *port = colon + 1;
  if (strcmp(port, "*") == 0)
    return bind ? 0 : MDP_EINVAL;
  unsigned long value = 0;
  size_t digits = 0;
  for (const char *p = port; *p != '\0'; p++, digits++) {
    if (*p < '0' || *p > '9' || digits == 5)
      return MDP_EINVAL;
    value = value * 10 + (unsigned long)(*p - '0');
  }
  if (digits == 0 || value > 65535 || (value == 0 && !bind))
    return MDP_EINVAL;
  return 0;
}
