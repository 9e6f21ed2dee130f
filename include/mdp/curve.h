/* libmdp: CURVE keys (libzmq's encryption and authentication).
 *
 * Every key libmdp takes or gives is Z85 text: 40 printable characters
 * encoding 32 bytes, NUL-terminated (what zmq_curve_keypair() produces and
 * ZMQ_CURVE_*KEY accept).  Raw 32-byte keys are never used in the API.
 *
 * Key files are text, one `name = value` per line:
 *
 *     # libmdp CURVE key pair (mdp-keygen)
 *     public-key = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
 *     secret-key = JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6
 *
 * Blank lines and lines whose first non-blank character is '#' are ignored;
 * spaces around '=' and at line ends are optional; the names are
 * `public-key` and `secret-key`, nothing else.  A public key file (NAME.pub)
 * holds one public-key line; a secret key file (NAME.secret, mode 0600)
 * holds the public-key line and the secret-key line.  An allow-list file
 * (see mdp_broker_options_t) holds any number of public-key lines and no
 * secret key.  docs/security.md describes how the pieces fit.
 */
#ifndef MDP_CURVE_H
#define MDP_CURVE_H

#include "mdp/export.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Characters of a key in Z85 text (without the NUL). */
#define MDP_CURVE_KEY_LEN 40

typedef struct {
  char public_key[MDP_CURVE_KEY_LEN + 1];
  char secret_key[MDP_CURVE_KEY_LEN + 1]; /* "" when not known */
} mdp_curve_keypair_t;

/* 1 if the libzmq in use was built with CURVE support, else 0. */
MDP_EXTERN int mdp_curve_available(void);

/* 1 if `z85` is a NUL-terminated key: exactly 40 Z85 characters. */
MDP_EXTERN int mdp_curve_key_valid(const char *z85);

/* A new key pair from zmq_curve_keypair().  0, or MDP_ENOTSUP (libzmq has
 * no CURVE), MDP_EINVAL (NULL). */
MDP_EXTERN int mdp_curve_keypair_new(mdp_curve_keypair_t *out);

/* Reads a public or secret key file (format above) into `*out`:
 * `secret_key` is "" if the file has none.  If it has both, the public key
 * must be the one the secret key derives.  Returns 0; MDP_EINVAL for a
 * malformed file (then `*err_line`, if not NULL, is the line number at
 * fault, or 0 when the file as a whole is wrong: no public key, a second
 * one, keys that do not match); a negated errno value for I/O errors
 * (-ENOENT, -EACCES, ...; mdp_strerror() describes them). */
MDP_EXTERN int mdp_curve_load(const char *path, mdp_curve_keypair_t *out,
                   size_t *err_line);

/* Called by mdp_curve_allow_each() for each key of an allow-list: `z85`
 * the key (40 characters), `name` its name as the broker's ZAP handler
 * gives it for the peer's user id (NAME for a directory's NAME.pub; in a
 * file of keys, the key itself).  Both are valid for the call only.
 * Return 0 to go on; any other value ends the walk and is returned. */
typedef int (*mdp_curve_allow_cb)(void *arg, const char *z85,
                                  const char *name);

/* Reads the allow-list `path` (what mdp_broker_options_t's curve_allow
 * names: a file of public-key lines, or a directory of NAME.pub files)
 * exactly as the broker does, then calls `cb` for each key, in no
 * particular order.  Returns 0; MDP_EINVAL for a malformed file (then the
 * file is written to `err_path`, `err_path_size` bytes, if that is not
 * NULL, and its line at fault to `*err_line`, if that is not NULL, 0 for
 * the file as a whole); a negated errno value for I/O errors; MDP_ENOMEM;
 * or the first non-zero value `cb` returned.  Nothing is called if the
 * list cannot be read whole. */
MDP_EXTERN int mdp_curve_allow_each(const char *path, mdp_curve_allow_cb cb,
                                    void *arg, char *err_path,
                                    size_t err_path_size, size_t *err_line);

/* Writes `kp` as `base`.pub (the public key, mode 0644) and, if it has a
 * secret key, `base`.secret (both keys, mode 0600, created so: never
 * readable by others, not even briefly).  Without `overwrite` an existing
 * file is an error (-EEXIST) and nothing is written.  Never writes
 * through a link: a symbolic link at either path is -ELOOP, a file with
 * other hard links -EMLINK, anything but a regular file -EINVAL (with
 * `overwrite`, what was already written of the pair is left).  0 or a
 * negated errno value; MDP_EINVAL for an invalid pair. */
MDP_EXTERN int mdp_curve_save(const char *base, const mdp_curve_keypair_t *kp,
                   int overwrite);

#ifdef __cplusplus
}
#endif
#endif /* MDP_CURVE_H */
