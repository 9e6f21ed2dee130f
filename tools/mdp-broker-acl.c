/* mdp-broker's access list; see mdp-broker-acl.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp-broker-acl.h"

typedef struct {
  char *service;   /* without the '*' of a prefix */
  size_t service_len;
  int prefix;      /* the pattern ended in '*' */
  mdp_broker_access_t role;
  char **names;    /* "*" for any allowed key */
  size_t n_names;
  size_t line;
} rule_t;

struct broker_acl_s {
  char *file;
  rule_t *rules;
  size_t n;
};

struct broker_names_s {
  char **v; /* sorted */
  size_t n;
};

#define ACL_MAX_BYTES (1024 * 1024)

static void rule_free(rule_t *r) {
  for (size_t i = 0; i < r->n_names; i++)
    free(r->names[i]);
  free(r->names);
  free(r->service);
}

void broker_acl_free(broker_acl_t *acl) {
  if (acl == NULL)
    return;
  for (size_t i = 0; i < acl->n; i++)
    rule_free(&acl->rules[i]);
  free(acl->rules);
  free(acl->file);
  free(acl);
}

static int fail(char *err, size_t size, const char *file, size_t line,
                const char *what, const char *arg) {
  if (line > 0)
    snprintf(err, size, "%s:%zu: %s%s", file, line, what, arg ? arg : "");
  else
    snprintf(err, size, "%s: %s%s", file, what, arg ? arg : "");
  return -1;
}

int broker_acl_load(const char *path, broker_acl_t **out, char *err,
                    size_t size) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return fail(err, size, path, 0, "cannot read the access list: ",
                strerror(errno));
  broker_acl_t *acl = calloc(1, sizeof *acl);
  char *text = malloc(ACL_MAX_BYTES + 1);
  size_t len = text ? fread(text, 1, ACL_MAX_BYTES + 1, f) : 0;
  fclose(f);
  if (acl == NULL || text == NULL || (acl->file = strdup(path)) == NULL) {
    free(text);
    broker_acl_free(acl);
    return fail(err, size, path, 0, "out of memory", NULL);
  }
  if (len > ACL_MAX_BYTES) {
    free(text);
    broker_acl_free(acl);
    return fail(err, size, path, 0, "larger than 1 MiB", NULL);
  }
  text[len] = '\0';
  int rc = 0;
  size_t line = 0;
  char *next = text;
  while (rc == 0 && next != NULL) {
    char *l = next;
    next = strchr(l, '\n');
    if (next != NULL)
      *next++ = '\0';
    line++;
    char *hash = strchr(l, '#');
    if (hash != NULL)
      *hash = '\0';
    char *words[3 + 256];
    size_t nw = 0;
    for (char *w = strtok(l, " \t\r"); w != NULL; w = strtok(NULL, " \t\r")) {
      if (nw == sizeof words / sizeof words[0]) {
        rc = fail(err, size, path, line, "too many names on one line", NULL);
        break;
      }
      words[nw++] = w;
    }
    if (rc != 0 || nw == 0)
      continue;
    if (nw < 3) {
      rc = fail(err, size, path, line,
                "expected 'SERVICE ROLE NAME...' (ROLE request or serve)",
                NULL);
      break;
    }
    mdp_broker_access_t role;
    if (strcmp(words[1], "request") == 0)
      role = MDP_BROKER_ACCESS_REQUEST;
    else if (strcmp(words[1], "serve") == 0)
      role = MDP_BROKER_ACCESS_SERVE;
    else {
      rc = fail(err, size, path, line, "ROLE must be request or serve, not ",
                words[1]);
      break;
    }
    size_t slen = strlen(words[0]);
    char *star = strchr(words[0], '*');
    if (slen > 255 || (star != NULL && star != words[0] + slen - 1)) {
      rc = fail(err, size, path, line,
                "SERVICE is a name (up to 255 bytes) or a prefix ending in "
                "'*', not ",
                words[0]);
      break;
    }
    for (size_t i = 2; i < nw && rc == 0; i++)
      if (strchr(words[i], '/') != NULL ||
          (strchr(words[i], '*') != NULL && strcmp(words[i], "*") != 0))
        rc = fail(err, size, path, line,
                  "NAME is a key's name (client-1 for client-1.pub) or *, "
                  "not ",
                  words[i]);
    if (rc != 0)
      break;
    rule_t *rules = realloc(acl->rules, (acl->n + 1) * sizeof *rules);
    if (rules == NULL) {
      rc = fail(err, size, path, 0, "out of memory", NULL);
      break;
    }
    acl->rules = rules;
    rule_t *r = &acl->rules[acl->n];
    memset(r, 0, sizeof *r);
    r->prefix = star != NULL;
    r->service_len = slen - (size_t)r->prefix;
    r->service = strndup(words[0], r->service_len);
    r->role = role;
    r->line = line;
    r->names = calloc(nw - 2, sizeof *r->names);
    int oom = r->service == NULL || r->names == NULL;
    for (size_t i = 2; !oom && i < nw; i++) {
      if ((r->names[r->n_names] = strdup(words[i])) == NULL)
        oom = 1;
      else
        r->n_names++;
    }
    acl->n++;
    if (oom)
      rc = fail(err, size, path, 0, "out of memory", NULL);
  }
  free(text);
  if (rc != 0) {
    broker_acl_free(acl);
    return -1;
  }
  *out = acl;
  return 0;
}

static int rule_matches(const rule_t *r, const uint8_t *service, size_t size) {
  if (r->prefix)
    return size >= r->service_len &&
           memcmp(service, r->service, r->service_len) == 0;
  return size == r->service_len && memcmp(service, r->service, size) == 0;
}

int broker_acl_allows(const broker_acl_t *acl, mdp_broker_access_t role,
                      const uint8_t *service, size_t size, const char *name) {
  if (acl == NULL)
    return 1;
  int named = 0;
  for (size_t i = 0; i < acl->n; i++) {
    const rule_t *r = &acl->rules[i];
    if (r->role != role || !rule_matches(r, service, size))
      continue;
    named = 1;
    for (size_t k = 0; k < r->n_names; k++)
      if (strcmp(r->names[k], "*") == 0 ||
          (name != NULL && strcmp(r->names[k], name) == 0))
        return 1;
  }
  return !named; /* the list only narrows */
}

/* ---- the allow-list's names --------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int names_add(broker_names_t *n, const char *name, size_t len) {
  char **v = realloc(n->v, (n->n + 1) * sizeof *v);
  if (v == NULL)
    return -1;
  n->v = v;
  if ((n->v[n->n] = strndup(name, len)) == NULL)
    return -1;
  n->n++;
  return 0;
}

void broker_names_free(broker_names_t *names) {
  if (names == NULL)
    return;
  for (size_t i = 0; i < names->n; i++)
    free(names->v[i]);
  free(names->v);
  free(names);
}

static int names_add_cb(void *arg, const char *z85, const char *name) {
  (void)z85;
  return names_add(arg, name, strlen(name)) < 0 ? MDP_ENOMEM : 0;
}

int broker_names_load(const char *allow, broker_names_t **out, char *err,
                      size_t size) {
  broker_names_t *n = calloc(1, sizeof *n);
  if (n == NULL)
    return fail(err, size, allow, 0, "out of memory", NULL);
  /* The library's reader: the names are those its ZAP handler gives. */
  char file[1024];
  size_t line = 0;
  int rc = mdp_curve_allow_each(allow, names_add_cb, n, file, sizeof file,
                                &line);
  if (rc != 0) {
    broker_names_free(n);
    if (rc == MDP_EINVAL)
      return fail(err, size, file, line, "not a valid allow-list file",
                  NULL);
    return fail(err, size, rc == MDP_ENOMEM ? allow : file, 0, "",
                mdp_strerror(rc));
  }
  if (n->n > 0)
    qsort(n->v, n->n, sizeof *n->v, cmp_str);
  *out = n;
  return 0;
}

int broker_names_has(const broker_names_t *names, const char *name) {
  if (names == NULL || name == NULL || names->n == 0)
    return 0;
  return bsearch(&name, names->v, names->n, sizeof *names->v, cmp_str) !=
         NULL;
}

void broker_acl_unknown_names(const broker_acl_t *acl,
                              const broker_names_t *names,
                              void (*cb)(void *data, const char *file,
                                         size_t line, const char *name),
                              void *data) {
  if (acl == NULL)
    return;
  for (size_t i = 0; i < acl->n; i++)
    for (size_t k = 0; k < acl->rules[i].n_names; k++) {
      const char *nm = acl->rules[i].names[k];
      if (strcmp(nm, "*") != 0 && !broker_names_has(names, nm))
        cb(data, acl->file, acl->rules[i].line, nm);
    }
}
