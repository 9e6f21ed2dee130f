/* mdp-broker's log formats; see mdp-broker-log.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mdp-broker-log.h"

/* The length of the valid UTF-8 sequence at `s`, or 0 if it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_sequence(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, cp = c & 0x07;
  else
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

size_t broker_json_escape(char *out, size_t size, const char *text) {
  const unsigned char *s = (const unsigned char *)text;
  size_t need = 0, written = 0;
  while (*s) {
    char esc[8];
    const char *piece = esc;
    size_t n, adv = 1;
    switch (*s) {
    case '"': piece = "\\\"", n = 2; break;
    case '\\': piece = "\\\\", n = 2; break;
    case '\b': piece = "\\b", n = 2; break;
    case '\f': piece = "\\f", n = 2; break;
    case '\n': piece = "\\n", n = 2; break;
    case '\r': piece = "\\r", n = 2; break;
    case '\t': piece = "\\t", n = 2; break;
    default:
      if (*s < 0x20 || *s == 0x7f) {
        snprintf(esc, sizeof esc, "\\u%04x", *s);
        n = 6;
      } else if ((adv = utf8_sequence(s)) == 0) {
        piece = "\\ufffd", n = 6, adv = 1;
      } else {
        piece = (const char *)s, n = adv;
      }
    }
    if (written == need && need + n < size) { /* nothing cut yet, and room */
      memcpy(out + written, piece, n);
      written += n;
    }
    need += n;
    s += adv;
  }
  if (size > 0)
    out[written] = '\0';
  return need;
}

void broker_log_write(FILE *out, broker_log_format_t format,
                      mdp_log_level_t level, const char *line) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);
  const char *lvl = mdp_log_level_name(level);
  if (format == BROKER_LOG_TEXT) {
    fprintf(out, "%s mdp-broker %s: %s\n", when, lvl, line);
    return;
  }
  char small[1024];
  size_t need = broker_json_escape(small, sizeof small, line);
  char *msg = small;
  if (need >= sizeof small && (msg = malloc(need + 1)) != NULL)
    broker_json_escape(msg, need + 1, line);
  if (msg == NULL)
    msg = small; /* out of memory: the message cut short, still valid */
  fprintf(out,
          "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"mdp-broker\","
          "\"message\":\"%s\"",
          when, lvl, msg);
  if (msg != small)
    free(msg);
  /* The library's fields of this line (service, worker, peer, reason...),
   * for a log shipper to index: keys are the library's own identifiers,
   * values escaped as the message is. */
  size_t n = 0;
  const mdp_log_field_t *fields = mdp_log_fields(&n);
  for (size_t i = 0; i < n; i++) {
    char value[1100];
    broker_json_escape(value, sizeof value, fields[i].value);
    fprintf(out, ",\"%s\":\"%s\"", fields[i].key, value);
  }
  fputs("}\n", out);
}

/* ---- the sink ------------------------------------------------------------ */

static struct {
  broker_log_format_t format;
  FILE *file;  /* NULL: stderr */
  char *path;
  mdp_log_level_t level;
} sink = {BROKER_LOG_TEXT, NULL, NULL, MDP_LOG_INFO};

static FILE *open_log(const char *path, int *err) {
  /* O_APPEND: lines of this process and of anyone else appending stay
   * whole; not O_TRUNC, a restart keeps what was logged before. */
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY,
                0640);
  if (fd < 0) {
    *err = -errno;
    return NULL;
  }
  FILE *f = fdopen(fd, "a");
  if (f == NULL) {
    *err = -errno;
    close(fd);
    return NULL;
  }
  setvbuf(f, NULL, _IOLBF, 0); /* each line out as it is written */
  return f;
}

int broker_log_open(broker_log_format_t format, const char *path) {
  FILE *f = NULL;
  char *copy = NULL;
  if (path != NULL) {
    int err = 0;
    if ((copy = strdup(path)) == NULL)
      return -ENOMEM;
    if ((f = open_log(path, &err)) == NULL) {
      free(copy);
      return err;
    }
  }
  broker_log_close();
  sink.file = f;
  sink.path = copy;
  sink.format = format;
  return 0;
}

int broker_log_reopen(void) {
  if (sink.path == NULL)
    return 0;
  int err = 0;
  FILE *f = open_log(sink.path, &err);
  if (f == NULL)
    return err;
  fclose(sink.file);
  sink.file = f;
  return 0;
}

void broker_log_set_format(broker_log_format_t format) { sink.format = format; }
broker_log_format_t broker_log_format(void) { return sink.format; }
const char *broker_log_path(void) { return sink.path; }
void broker_log_set_level(mdp_log_level_t level) { sink.level = level; }

void broker_log_line(mdp_log_level_t level, const char *line) {
  broker_log_write(sink.file ? sink.file : stderr, sink.format, level, line);
}

void broker_logf(mdp_log_level_t level, const char *fmt, ...) {
  if (level > sink.level)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  broker_log_line(level, line);
}

void broker_log_close(void) {
  if (sink.file != NULL)
    fclose(sink.file);
  free(sink.path);
  sink.file = NULL;
  sink.path = NULL;
}
