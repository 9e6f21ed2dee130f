/* CURVE key files and key sets (internal).  The public half is
 * include/mdp/curve.h; this adds what the broker's ZAP handler and the
 * client and worker need. */
#ifndef MDP_CURVE_INTERNAL_H
#define MDP_CURVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mdp/curve.h"

/* A key and its name: the NAME of an allow-list directory's NAME.pub,
 * else the key in Z85. */
typedef struct {
  uint8_t key[32];
  char *name; /* owned */
} mdp__keyentry_t;

/* A set of 32-byte public keys with names, sorted for binary search once
 * loaded. */
typedef struct {
  mdp__keyentry_t *keys;
  size_t n, cap;
} mdp__keyset_t;

/* Adds one key given as Z85 text, named by itself.  0, MDP_EINVAL,
 * MDP_ENOMEM. */
int mdp__keyset_add_z85(mdp__keyset_t *set, const char *z85);
/* The same with a name (NULL: the key itself). */
int mdp__keyset_add_named(mdp__keyset_t *set, const char *z85,
                          const char *name);

/* Adds the public keys of an allow-list: a file (public-key lines only; a
 * secret-key line is an error) or a directory, whose regular files named
 * *.pub are read (others are ignored).  0; MDP_EINVAL for a malformed file
 * (`err_path` and `*err_line` say where), or a negated errno value. */
int mdp__keyset_load(mdp__keyset_t *set, const char *path, char *err_path,
                    size_t err_path_size, size_t *err_line);

/* Sorts and removes duplicates (a key in two files keeps the smaller
 * name); call before mdp__keyset_has() and mdp__keyset_find(). */
void mdp__keyset_finish(mdp__keyset_t *set);
int mdp__keyset_has(const mdp__keyset_t *set, const uint8_t key[32]);
/* The key's name, or NULL if the key is not in the set. */
const char *mdp__keyset_find(const mdp__keyset_t *set,
                             const uint8_t key[32]);
void mdp__keyset_free(mdp__keyset_t *set);

/* Client side (worker and client objects): checks the three options (all
 * NULL: plaintext, 0; all valid keys: 1), or MDP_EINVAL (some missing or
 * malformed), MDP_ENOTSUP (no CURVE in libzmq). */
int mdp__curve_client_check(const char *server_key, const char *public_key,
                           const char *secret_key);
/* Makes `socket` a CURVE client with these keys (before connecting).
 * 0 or MDP_EZMQ. */
int mdp__curve_client_setup(void *socket, const char *server_key,
                           const char *public_key, const char *secret_key);

#endif /* MDP_CURVE_INTERNAL_H */
