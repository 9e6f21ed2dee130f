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

/* ---- the broker's one log sink -------------------------------------------
 * Every line mdp-broker writes once its options are read goes through here,
 * so that it is in the chosen format and in the chosen place: the program's
 * own lines, the library's (its log hook) and the metrics listener's. */

/* Sets the format and the destination: `path` NULL is stderr, else a file
 * opened for appending (created 0640).  Returns 0, or a negated errno value
 * (the sink is left as it was).  The path is copied. */
int broker_log_open(broker_log_format_t format, const char *path);

/* Reopens the log file at its path (logrotate moved it away): 0, or a
 * negated errno value after which lines go on to the old file. */
int broker_log_reopen(void);

void broker_log_set_format(broker_log_format_t format);
broker_log_format_t broker_log_format(void);
/* The path given to broker_log_open(), or NULL for stderr. */
const char *broker_log_path(void);
/* The program's own threshold: lines above it are not written. */
void broker_log_set_level(mdp_log_level_t level);

/* One line to the sink, at `level` (not filtered: the library filters its
 * own, and broker_logf() filters the program's). */
void broker_log_line(mdp_log_level_t level, const char *line);
void broker_logf(mdp_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Closes the log file, if one is open. */
void broker_log_close(void);

#endif /* MDP_BROKER_LOG_H */
