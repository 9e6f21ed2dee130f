/* Log level names, and the one formatter every object's log hook uses. */
#include <stdio.h>

#include "log_internal.h"

void mdp__log_emit(mdp_log_cb cb, void *data, mdp_log_level_t max,
                  mdp_log_level_t level, const char *prefix, const char *fmt,
                  ...) {
  if (cb == NULL || level > max)
    return;
  char line[512];
  int n = prefix ? snprintf(line, sizeof line, "%s", prefix) : 0;
  if (n < 0 || (size_t)n >= sizeof line)
    n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  cb(data, level, line);
}

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
