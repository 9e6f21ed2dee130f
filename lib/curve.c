/* CURVE key files (format in include/mdp/curve.h), key sets for the ZAP
 * handler, and the client-side socket options. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "curve_internal.h"
#include "mdp/error.h"

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int mdp_curve_available(void) { return zmq_has("curve") ? 1 : 0; }

int mdp_curve_key_valid(const char *z85) {
  if (z85 == NULL || strlen(z85) != MDP_CURVE_KEY_LEN)
    return 0;
  for (size_t i = 0; i < MDP_CURVE_KEY_LEN; i++)
    if (strchr(z85_chars, z85[i]) == NULL)
      return 0;
  uint8_t raw[32];
  return zmq_z85_decode(raw, z85) != NULL;
}

int mdp_curve_keypair_new(mdp_curve_keypair_t *out) {
  if (out == NULL)
    return MDP_EINVAL;
  memset(out, 0, sizeof *out);
  if (!mdp_curve_available())
    return MDP_ENOTSUP;
  if (zmq_curve_keypair(out->public_key, out->secret_key) != 0)
    return MDP_ENOTSUP;
  return 0;
}

/* --- parsing ------------------------------------------------------------- */

enum { KEY_PUBLIC = 1, KEY_SECRET = 2 };

/* Called for each key line; returns 0 or an error that stops the parse. */
typedef int (*key_line_cb)(void *arg, int kind, const char *z85);

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                   s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

/* Reads `path` line by line.  0, MDP_EINVAL (`*err_line` set), the
 * callback's error, or a negated errno value. */
static int parse_key_file(const char *path, key_line_cb cb, void *arg,
                          size_t *err_line) {
  *err_line = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -errno;
  char buf[512];
  size_t line = 0;
  int rc = 0;
  while (rc == 0 && fgets(buf, sizeof buf, f) != NULL) {
    line++;
    size_t len = strlen(buf);
    if (len == sizeof buf - 1 && buf[len - 1] != '\n' && !feof(f)) {
      rc = MDP_EINVAL; /* far longer than any key line */
      break;
    }
    char *s = trim(buf);
    if (*s == '\0' || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      rc = MDP_EINVAL;
      break;
    }
    *eq = '\0';
    char *name = trim(s);
    char *value = trim(eq + 1);
    int kind = strcmp(name, "public-key") == 0   ? KEY_PUBLIC
               : strcmp(name, "secret-key") == 0 ? KEY_SECRET
                                                 : 0;
    if (kind == 0 || !mdp_curve_key_valid(value)) {
      rc = MDP_EINVAL;
      break;
    }
    rc = cb(arg, kind, value);
  }
  if (rc == 0 && ferror(f))
    rc = -EIO;
  fclose(f);
  if (rc == MDP_EINVAL)
    *err_line = line;
  return rc;
}

typedef struct {
  mdp_curve_keypair_t *kp;
  int publics, secrets;
} pair_parse_t;

static int pair_line(void *arg, int kind, const char *z85) {
  pair_parse_t *p = arg;
  if (kind == KEY_PUBLIC) {
    if (p->publics++ == 0)
      memcpy(p->kp->public_key, z85, MDP_CURVE_KEY_LEN + 1);
  } else if (p->secrets++ == 0) {
    memcpy(p->kp->secret_key, z85, MDP_CURVE_KEY_LEN + 1);
  }
  return 0;
}

int mdp_curve_load(const char *path, mdp_curve_keypair_t *out,
                   size_t *err_line) {
  size_t line_unused;
  if (err_line == NULL)
    err_line = &line_unused;
  *err_line = 0;
  if (path == NULL || out == NULL)
    return MDP_EINVAL;
  mdp_curve_keypair_t kp;
  memset(&kp, 0, sizeof kp);
  pair_parse_t p = {&kp, 0, 0};
  int rc = parse_key_file(path, pair_line, &p, err_line);
  if (rc < 0)
    return rc;
  if (p.publics != 1 || p.secrets > 1)
    return MDP_EINVAL;
  if (p.secrets == 1) {
    char derived[MDP_CURVE_KEY_LEN + 1];
    if (zmq_curve_public(derived, kp.secret_key) != 0 ||
        strcmp(derived, kp.public_key) != 0)
      return MDP_EINVAL;
  }
  *out = kp;
  return 0;
}

/* --- writing ------------------------------------------------------------- */

static int write_file(const char *path, mode_t mode, int overwrite,
                      const char *text) {
  /* Never through a link: O_NOFOLLOW refuses a symbolic link planted at
   * `path` (ELOOP), and an existing file is truncated only once it is
   * known to be a regular file with no other name (a hard link would
   * have its target's contents and mode changed). */
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
  if (!overwrite)
    flags |= O_EXCL;
  int fd = open(path, flags, mode);
  if (fd < 0)
    return -errno;
  struct stat st;
  int err = 0;
  if (fstat(fd, &st) != 0)
    err = -errno;
  else if (!S_ISREG(st.st_mode))
    err = -EINVAL;
  else if (st.st_nlink > 1)
    err = -EMLINK;
  /* An existing file keeps its mode through the truncation: set it again. */
  else if (ftruncate(fd, 0) != 0 || fchmod(fd, mode) != 0)
    err = -errno;
  if (err < 0) {
    close(fd);
    return err;
  }
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t n = write(fd, text + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = -errno;
      close(fd);
      return err;
    }
    done += (size_t)n;
  }
  return close(fd) == 0 ? 0 : -errno;
}

int mdp_curve_save(const char *base, const mdp_curve_keypair_t *kp,
                   int overwrite) {
  if (base == NULL || kp == NULL || !mdp_curve_key_valid(kp->public_key))
    return MDP_EINVAL;
  int has_secret = kp->secret_key[0] != '\0';
  if (has_secret && !mdp_curve_key_valid(kp->secret_key))
    return MDP_EINVAL;
  size_t blen = strlen(base);
  char *pub = malloc(blen + 8), *sec = malloc(blen + 8);
  if (pub == NULL || sec == NULL) {
    free(pub);
    free(sec);
    return MDP_ENOMEM;
  }
  snprintf(pub, blen + 8, "%s.pub", base);
  snprintf(sec, blen + 8, "%s.secret", base);
  int rc = 0;
  struct stat st;
  if (!overwrite && (stat(pub, &st) == 0 || (has_secret && stat(sec, &st) == 0)))
    rc = -EEXIST; /* write neither rather than one of two */
  char text[256];
  if (rc == 0 && has_secret) {
    snprintf(text, sizeof text,
             "# libmdp CURVE key pair (mdp-keygen): keep this file secret\n"
             "public-key = %s\nsecret-key = %s\n",
             kp->public_key, kp->secret_key);
    rc = write_file(sec, 0600, overwrite, text);
  }
  if (rc == 0) {
    snprintf(text, sizeof text,
             "# libmdp CURVE public key (mdp-keygen)\npublic-key = %s\n",
             kp->public_key);
    rc = write_file(pub, 0644, overwrite, text);
    if (rc < 0 && has_secret)
      unlink(sec);
  }
  free(pub);
  free(sec);
  return rc;
}

/* --- key sets ------------------------------------------------------------ */

int mdp__keyset_add_named(mdp__keyset_t *set, const char *z85,
                          const char *name) {
  if (!mdp_curve_key_valid(z85))
    return MDP_EINVAL;
  if (set->n == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 16;
    void *keys = realloc(set->keys, cap * sizeof *set->keys);
    if (keys == NULL)
      return MDP_ENOMEM;
    set->keys = keys;
    set->cap = cap;
  }
  /* Without a name of its own a key is named by itself (Z85). */
  char *copy = strdup(name != NULL ? name : z85);
  if (copy == NULL)
    return MDP_ENOMEM;
  mdp__keyentry_t *e = &set->keys[set->n++];
  zmq_z85_decode(e->key, z85);
  e->name = copy;
  return 0;
}

int mdp__keyset_add_z85(mdp__keyset_t *set, const char *z85) {
  return mdp__keyset_add_named(set, z85, NULL);
}

typedef struct {
  mdp__keyset_t *set;
  const char *name;
} allow_arg_t;

static int allow_line(void *arg, int kind, const char *z85) {
  allow_arg_t *a = arg;
  if (kind != KEY_PUBLIC)
    return MDP_EINVAL; /* a secret key has no place in an allow-list */
  return mdp__keyset_add_named(a->set, z85, a->name);
}

/* `name`: the key's name (a directory's NAME.pub), or NULL (a file of
 * keys: each is named by itself). */
static int load_one(mdp__keyset_t *set, const char *path, const char *name,
                    char *err_path, size_t err_path_size, size_t *err_line) {
  allow_arg_t a = {set, name};
  int rc = parse_key_file(path, allow_line, &a, err_line);
  if (rc < 0 && err_path_size > 0)
    snprintf(err_path, err_path_size, "%s", path);
  return rc;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n > m && strcmp(s + n - m, suffix) == 0;
}

int mdp__keyset_load(mdp__keyset_t *set, const char *path, char *err_path,
                    size_t err_path_size, size_t *err_line) {
  size_t line_unused;
  if (err_line == NULL)
    err_line = &line_unused;
  *err_line = 0;
  if (err_path_size > 0)
    snprintf(err_path, err_path_size, "%s", path);
  struct stat st;
  if (stat(path, &st) != 0)
    return -errno;
  if (!S_ISDIR(st.st_mode))
    return load_one(set, path, NULL, err_path, err_path_size, err_line);
  DIR *dir = opendir(path);
  if (dir == NULL)
    return -errno;
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(dir)) != NULL) {
    if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".pub"))
      continue;
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    char *file = malloc(len);
    char *name = strdup(e->d_name);
    if (file == NULL || name == NULL) {
      free(file);
      free(name);
      rc = MDP_ENOMEM;
      break;
    }
    name[strlen(name) - 4] = '\0'; /* NAME.pub -> NAME */
    snprintf(file, len, "%s/%s", path, e->d_name);
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
      rc = load_one(set, file, name, err_path, err_path_size, err_line);
    free(file);
    free(name);
  }
  closedir(dir);
  return rc;
}

int mdp_curve_allow_each(const char *path, mdp_curve_allow_cb cb, void *arg,
                         char *err_path, size_t err_path_size,
                         size_t *err_line) {
  if (path == NULL || cb == NULL)
    return MDP_EINVAL;
  char unused[1];
  if (err_path == NULL) {
    err_path = unused;
    err_path_size = 0;
  }
  /* The broker's own reader, so that what a tool is told is what the
   * broker's ZAP handler allows, names and all. */
  mdp__keyset_t set = {0};
  int rc = mdp__keyset_load(&set, path, err_path, err_path_size, err_line);
  for (size_t i = 0; rc == 0 && i < set.n; i++) {
    char z85[41];
    zmq_z85_encode(z85, set.keys[i].key, 32);
    rc = cb(arg, z85, set.keys[i].name);
  }
  mdp__keyset_free(&set);
  return rc;
}

static int key_cmp(const void *a, const void *b) {
  const mdp__keyentry_t *x = a, *y = b;
  int c = memcmp(x->key, y->key, 32);
  /* Equal keys: by name, so that which name a duplicate keeps does not
   * depend on the order readdir() gave. */
  return c != 0 ? c : strcmp(x->name, y->name);
}

void mdp__keyset_finish(mdp__keyset_t *set) {
  if (set->n == 0)
    return;
  qsort(set->keys, set->n, sizeof *set->keys, key_cmp);
  size_t out = 1;
  for (size_t i = 1; i < set->n; i++) {
    if (memcmp(set->keys[i].key, set->keys[out - 1].key, 32) != 0)
      set->keys[out++] = set->keys[i];
    else
      free(set->keys[i].name);
  }
  set->n = out;
}

static int key_only_cmp(const void *key, const void *entry) {
  return memcmp(key, ((const mdp__keyentry_t *)entry)->key, 32);
}

const char *mdp__keyset_find(const mdp__keyset_t *set,
                             const uint8_t key[32]) {
  if (set->n == 0)
    return NULL;
  const mdp__keyentry_t *e =
      bsearch(key, set->keys, set->n, sizeof *set->keys, key_only_cmp);
  return e != NULL ? e->name : NULL;
}

int mdp__keyset_has(const mdp__keyset_t *set, const uint8_t key[32]) {
  return mdp__keyset_find(set, key) != NULL;
}

void mdp__keyset_free(mdp__keyset_t *set) {
  for (size_t i = 0; i < set->n; i++)
    free(set->keys[i].name);
  free(set->keys);
  memset(set, 0, sizeof *set);
}

/* --- client side --------------------------------------------------------- */

int mdp__curve_client_check(const char *server_key, const char *public_key,
                           const char *secret_key) {
  int given = (server_key != NULL) + (public_key != NULL) + (secret_key != NULL);
  if (given == 0)
    return 0;
  if (given != 3 || !mdp_curve_key_valid(server_key) ||
      !mdp_curve_key_valid(public_key) || !mdp_curve_key_valid(secret_key))
    return MDP_EINVAL;
  if (!mdp_curve_available())
    return MDP_ENOTSUP;
  return 1;
}

int mdp__curve_client_setup(void *socket, const char *server_key,
                           const char *public_key, const char *secret_key) {
  if (zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, server_key,
                     MDP_CURVE_KEY_LEN) != 0 ||
      zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, public_key,
                     MDP_CURVE_KEY_LEN) != 0 ||
      zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret_key,
                     MDP_CURVE_KEY_LEN) != 0)
    return MDP_EZMQ;
  return 0;
}
