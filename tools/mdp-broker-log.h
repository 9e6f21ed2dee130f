/* mdp-broker's log lines on stderr: text (a timestamp, the level, the line)
 * or JSON (one object per line: time, level, program, message). */
#ifndef MDP_BROKER_LOG_H
#define MDP_BROKER_LOG_H

#include <stddef.h>
#include <stdio.h>

#include <mdp.h>

typedef enum { BROKER_LOG_TEXT = 0, BROKER_LOG_JSON = 1 } broker_log_format_t;

/* Writes one log line (with its newline) to `out` in `format`, with the
 * current time, in a single write. */
void broker_log_write(FILE *out, broker_log_format_t format,
                      mdp_log_level_t level, const char *line);

/* Appends `text` to `out` (room for `size` bytes, NUL included) as the
 * inside of a JSON string: quote, backslash and control characters
 * escaped, invalid UTF-8 replaced by \ufffd, one per bad byte.  Returns
 * the length it needs (excluding the NUL), as snprintf does; the output is
 * cut at a character boundary if `size` is short. */
size_t broker_json_escape(char *out, size_t size, const char *text);

#endif /* MDP_BROKER_LOG_H */
