/* mdp-broker --curve-acl FILE: which CURVE keys may request or serve which
 * services (docs/security.md), and the names the allow-list gives keys.
 *
 * The file has lines "SERVICE ROLE NAME...": SERVICE a service name or a
 * prefix ending in '*', ROLE "request" (clients) or "serve" (workers),
 * each NAME an allow-list key's name (client-1 for allow/client-1.pub) or
 * '*' for every allowed key; '#' starts a comment.  A service and role
 * that no line names stay open to every allowed key: the list only
 * narrows.  mmi.* is always open (the library never asks about it). */
#ifndef MDP_BROKER_ACL_H
#define MDP_BROKER_ACL_H

#include <stddef.h>
#include <stdint.h>

#include <mdp.h>

typedef struct broker_acl_s broker_acl_t;
typedef struct broker_names_s broker_names_t;

/* Reads `path`.  0 and `*out`; or -1 with the first error in `err`
 * ("FILE:LINE: what", `size` bytes). */
int broker_acl_load(const char *path, broker_acl_t **out, char *err,
                    size_t size);
void broker_acl_free(broker_acl_t *acl);

/* 1 if the key named `name` (NULL: no key) may act as `role` on the
 * service `service` (`size` bytes), else 0. */
int broker_acl_allows(const broker_acl_t *acl, mdp_broker_access_t role,
                      const uint8_t *service, size_t size, const char *name);

/* The names of the keys of an allow-list as the broker's ZAP handler
 * gives them: a directory's NAME.pub files, or the Z85 keys of a file's
 * public-key lines.  0, or -1 with why in `err`. */
int broker_names_load(const char *allow, broker_names_t **out, char *err,
                      size_t size);
void broker_names_free(broker_names_t *names);
int broker_names_has(const broker_names_t *names, const char *name);

/* Calls `cb` for each NAME of the list (not '*') that `names` lacks: it
 * matches nothing until its key is added and the broker reloads. */
void broker_acl_unknown_names(const broker_acl_t *acl,
                              const broker_names_t *names,
                              void (*cb)(void *data, const char *file,
                                         size_t line, const char *name),
                              void *data);

#endif /* MDP_BROKER_ACL_H */
