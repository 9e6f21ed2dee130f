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

/* "error", "warn", "info", "debug". */
MDP_EXTERN const char *mdp_log_level_name(mdp_log_level_t level);

#ifdef __cplusplus
}
#endif
#endif /* MDP_LOG_H */
