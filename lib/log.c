/* Log level names. */
#include "mdp/log.h"

const char *mdp_log_level_name(mdp_log_level_t level) {
  switch (level) {
  case MDP_LOG_ERROR:
    return "error";
  case MDP_LOG_WARN:
    return "warn";
  case MDP_LOG_INFO:
    return "info";
  case MDP_LOG_DEBUG:
    return "debug";
  }
  return "unknown";
}
