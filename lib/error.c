/* mdp_strerror() and mdp_err_name(). */
#include <string.h>

#include "mdp/error.h"

const char *mdp_strerror(int err) {
  switch (err) {
#define MDP_ERR_MSG_(name, value, msg)                                         \
  case MDP_##name:                                                             \
    return msg;
    MDP_ERRNO_MAP(MDP_ERR_MSG_)
#undef MDP_ERR_MSG_
  default:
    break;
  }
  if (err < 0 && err > -5000)
    return strerror(-err);
  return "unknown error";
}

const char *mdp_err_name(int err) {
  switch (err) {
#define MDP_ERR_NAME_(name, value, msg)                                        \
  case MDP_##name:                                                             \
    return #name;
    MDP_ERRNO_MAP(MDP_ERR_NAME_)
#undef MDP_ERR_NAME_
  default:
    return "UNKNOWN";
  }
}
