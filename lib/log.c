/* Log level names, and the one formatter every object's log hook uses. */
#include <stdio.h>

#include "log_internal.h"

/* The fields of the line whose callback runs now on this thread. */
static __thread const mdp_log_field_t *current_fields;
static __thread size_t current_count;

static void emit(mdp_log_cb cb, void *data, mdp_log_level_t level,
                 const char *prefix, const mdp_log_field_t *fields, size_t n,
                 const char *fmt, va_list ap) {
  char line[512];
  int len = prefix ? snprintf(line, sizeof line, "%s", prefix) : 0;
  if (len < 0 || (size_t)len >= sizeof line)
    len = 0;
  vsnprintf(line + len, sizeof line - (size_t)len, fmt, ap);
  /* Saved and restored: a log callback may log through another object. */
  const mdp_log_field_t *saved = current_fields;
  size_t saved_count = current_count;
  current_fields = n ? fields : NULL;
  current_count = n;
  cb(data, level, line);
  current_fields = saved;
  current_count = saved_count;
}

void mdp__log_emit(mdp_log_cb cb, void *data, mdp_log_level_t max,
                  mdp_log_level_t level, const char *prefix, const char *fmt,
                  ...) {
  if (cb == NULL || level > max)
    return;
  va_list ap;
  va_start(ap, fmt);
  emit(cb, data, level, prefix, NULL, 0, fmt, ap);
  va_end(ap);
}

void mdp__log_emit_fields(mdp_log_cb cb, void *data, mdp_log_level_t max,
                          mdp_log_level_t level, const mdp_log_field_t *fields,
                          size_t n, const char *fmt, ...) {
  if (cb == NULL || level > max)
    return;
  va_list ap;
  va_start(ap, fmt);
  emit(cb, data, level, NULL, fields, n, fmt, ap);
  va_end(ap);
}

const mdp_log_field_t *mdp_log_fields(size_t *count) {
  if (count != NULL)
    *count = current_count;
  return current_fields;
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
