/* Formatting a log line for an object's log hook (internal). */
#ifndef MDP_LOG_INTERNAL_H
#define MDP_LOG_INTERNAL_H

#include <stdarg.h>

#include "mdp/log.h"

/* Formats `prefix` (may be NULL) followed by `fmt` into one line of at most
 * 511 bytes and passes it to `cb`, unless `cb` is NULL or `level` is more
 * verbose than `max`: then nothing is formatted. */
void mdp__log_emit(mdp_log_cb cb, void *data, mdp_log_level_t max,
                  mdp_log_level_t level, const char *prefix, const char *fmt,
                  ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* The same, with `fields` (`n` of them) readable through mdp_log_fields()
 * during the callback. */
void mdp__log_emit_fields(mdp_log_cb cb, void *data, mdp_log_level_t max,
                          mdp_log_level_t level, const mdp_log_field_t *fields,
                          size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;

#endif /* MDP_LOG_INTERNAL_H */
