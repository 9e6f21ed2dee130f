/* libmdp: logging hook shared by broker, worker and client.
 *
 * libmdp never writes to stdout or stderr by itself.  An object created with
 * a log callback calls it with a level and a NUL-terminated line (no
 * trailing newline); the line is valid only during the call.  Messages above
 * the object's `log_level` are not even formatted.
 */
#ifndef MDP_LOG_H
#define MDP_LOG_H

#include "mdp/export.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MDP_LOG_ERROR = 0,
  MDP_LOG_WARN = 1,
  MDP_LOG_INFO = 2,
  MDP_LOG_DEBUG = 3
} mdp_log_level_t;

typedef void (*mdp_log_cb)(void *log_data, mdp_log_level_t level,
                           const char *line);

/* One field of a log line, for log shippers that index them. */
typedef struct {
  const char *key;   /* "service", "worker", "peer", "dialect", "reason" */
  const char *value; /* printable text (binary identities in hex) */
} mdp_log_field_t;

/* "error", "warn", "info", "debug". */
MDP_EXTERN const char *mdp_log_level_name(mdp_log_level_t level);

/* Called from inside a log callback: the fields of the line being logged
 * (e.g. the service and worker a "worker ready" line is about), `*count` of
 * them; the array and its strings are the library's, valid only until the
 * callback returns.  Outside a log callback, or for a line without fields:
 * NULL and 0.  Per thread, so objects on loops of different threads do not
 * mix. */
MDP_EXTERN const mdp_log_field_t *mdp_log_fields(size_t *count);

#ifdef __cplusplus
}
#endif
#endif /* MDP_LOG_H */
