/* The shared wire vectors (test/vectors.txt, a copy of
 * ../shared/protocol/vectors.txt) as data for tests.  Include after
 * harness.h; vectors_load() is a test step (its CHECKs fail the step). */
#ifndef MDP_TEST_VECTORS_H
#define MDP_TEST_VECTORS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp/codec.h"
#include "mdp/msg.h"

/* ---- the vectors file -------------------------------------------------- */

#define VEC_MAX 256
#define VEC_FRAMES_MAX 16
#define VEC_FRAME_BYTES 512

typedef struct {
  size_t size;
  uint8_t data[VEC_FRAME_BYTES];
} vframe_t;

typedef struct {
  int line;
  mdp_dialect_t dialect;
  mdp_role_t role;       /* who receives it */
  mdp_command_t command; /* what it is (or pretends to be) */
  int valid;
  size_t nframes;
  vframe_t frames[VEC_FRAMES_MAX];
} vector_t;

static vector_t vectors[VEC_MAX];
static size_t nvectors;

/* What a line's <sender> <COMMAND> pair means.  MDP/0.1's REPLY is FINAL. */
static const struct {
  const char *sender;
  const char *name;
  mdp_role_t role;
  mdp_command_t command;
} senders[] = {
    {"client", "REQUEST", MDP_ROLE_BROKER, MDP_CLIENT_REQUEST},
    {"broker>client", "PARTIAL", MDP_ROLE_CLIENT, MDP_CLIENT_PARTIAL},
    {"broker>client", "FINAL", MDP_ROLE_CLIENT, MDP_CLIENT_FINAL},
    {"broker>client", "REPLY", MDP_ROLE_CLIENT, MDP_CLIENT_FINAL},
    {"worker", "READY", MDP_ROLE_BROKER, MDP_WORKER_READY},
    {"worker", "PARTIAL", MDP_ROLE_BROKER, MDP_WORKER_PARTIAL},
    {"worker", "FINAL", MDP_ROLE_BROKER, MDP_WORKER_FINAL},
    {"worker", "REPLY", MDP_ROLE_BROKER, MDP_WORKER_FINAL},
    {"worker", "HEARTBEAT", MDP_ROLE_BROKER, MDP_WORKER_HEARTBEAT},
    {"worker", "DISCONNECT", MDP_ROLE_BROKER, MDP_WORKER_DISCONNECT},
    {"broker>worker", "REQUEST", MDP_ROLE_WORKER, MDP_WORKER_REQUEST},
    {"broker>worker", "HEARTBEAT", MDP_ROLE_WORKER, MDP_WORKER_HEARTBEAT},
    {"broker>worker", "DISCONNECT", MDP_ROLE_WORKER, MDP_WORKER_DISCONNECT},
};

static const struct {
  const char *name;
  mdp_dialect_t dialect;
} dialect_names[] = {
    {"rfc18", MDP_DIALECT_RFC18},
    {"majortomo", MDP_DIALECT_MAJORTOMO},
    {"mdp01", MDP_DIALECT_MDP01},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Parses the frames after ':'.  Strict, so that a typo in the file shows
 * as a load failure instead of a silently different message. */
static const char *parse_frames(const char *p, vector_t *v) {
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0')
    return NULL; /* a message of zero frames */
  for (;;) {
    if (v->nframes == VEC_FRAMES_MAX)
      return "too many frames";
    vframe_t *f = &v->frames[v->nframes++];
    f->size = 0;
    if (*p++ != '"')
      return "frame does not start with a quote";
    for (;;) {
      int c = (unsigned char)*p++;
      if (c == '\0')
        return "unterminated frame";
      if (c == '"')
        break;
      if (c == '\\') {
        c = (unsigned char)*p++;
        if (c == 'x') {
          int hi = hexval(p[0]);
          int lo = hi < 0 ? -1 : hexval(p[1]);
          if (lo < 0)
            return "\\x not followed by two hex digits";
          c = hi * 16 + lo;
          p += 2;
        } else if (c != '\\' && c != '"') {
          return "unknown escape";
        }
      }
      if (f->size == VEC_FRAME_BYTES)
        return "frame too long";
      f->data[f->size++] = (uint8_t)c;
    }
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0')
      return NULL;
    if (*p++ != '|')
      return "expected '|' between frames";
    while (*p == ' ' || *p == '\t')
      p++;
  }
}

static const char *parse_line(const char *line, vector_t *v) {
  char dialect[32], sender[32], command[32], validity[32];
  int used = 0;
  size_t i;

  if (sscanf(line, "%31s %31s %31s %31s :%n", dialect, sender, command,
             validity, &used) != 4 ||
      used == 0)
    return "expected '<dialect> <sender> <COMMAND> <valid|invalid> :'";

  for (i = 0; i < COUNT(dialect_names); i++)
    if (strcmp(dialect, dialect_names[i].name) == 0)
      break;
  if (i == COUNT(dialect_names))
    return "unknown dialect";
  v->dialect = dialect_names[i].dialect;

  for (i = 0; i < COUNT(senders); i++)
    if (strcmp(sender, senders[i].sender) == 0 &&
        strcmp(command, senders[i].name) == 0)
      break;
  if (i == COUNT(senders))
    return "unknown sender/command pair";
  v->role = senders[i].role;
  v->command = senders[i].command;

  if (strcmp(validity, "valid") == 0)
    v->valid = 1;
  else if (strcmp(validity, "invalid") == 0)
    v->valid = 0;
  else
    return "expected valid or invalid";

  v->nframes = 0;
  return parse_frames(line + used, v);
}

static void vectors_load(void) {
  const char *dir = getenv("MDP_TEST_DIR");
  char path[1024], line[4096];
  int lineno = 0;
  FILE *fp;

  nvectors = 0;
  snprintf(path, sizeof(path), "%s/vectors.txt", dir ? dir : ".");
  fp = fopen(path, "r");
  if (fp == NULL)
    printf("# cannot open %s (set MDP_TEST_DIR)\n", path);
  CHECK(fp != NULL);

  while (fgets(line, sizeof(line), fp) != NULL) {
    size_t len = strlen(line);
    lineno++;
    if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
      printf("# vectors.txt:%d: line too long\n", lineno);
      fclose(fp);
      CHECK(0);
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    const char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0' || *p == '#')
      continue;
    if (nvectors == VEC_MAX) {
      fclose(fp);
      CHECK(nvectors < VEC_MAX);
    }
    vector_t *v = &vectors[nvectors];
    const char *err = parse_line(p, v);
    if (err != NULL) {
      printf("# vectors.txt:%d: %s\n", lineno, err);
      fclose(fp);
      CHECK(err == NULL);
    }
    v->line = lineno;
    nvectors++;
  }
  fclose(fp);
  CHECK(nvectors > 0);
}

/* A new message holding the vector's frames, or NULL (out of memory). */
static mdp_msg_t *vector_msg(const vector_t *v) {
  mdp_msg_t *msg = mdp_msg_new();
  if (msg == NULL)
    return NULL;
  for (size_t i = 0; i < v->nframes; i++) {
    if (mdp_msg_append_mem(msg, v->frames[i].data, v->frames[i].size) != 0) {
      mdp_msg_destroy(msg);
      return NULL;
    }
  }
  return msg;
}

#endif /* MDP_TEST_VECTORS_H */
