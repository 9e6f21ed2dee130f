/* mdp-keygen: generates a CURVE key pair for mdp-broker, workers and
 * clients.
 *
 *   mdp-keygen NAME    writes NAME.pub (mode 0644) and NAME.secret (0600)
 *
 * The files use the text format of include/mdp/curve.h.  Exit codes: 0
 * success, 2 usage (as every libmdp tool), 69 no CURVE in libzmq, 73 a
 * file cannot be created (or exists, without --force, or is a link).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mdp.h"

#define EXIT_USAGE 2 /* the same in every libmdp tool */
#define EXIT_UNAVAILABLE 69
#define EXIT_CANTCREAT 73

static const char usage_text[] =
    "Usage: mdp-keygen [options] NAME\n"
    "Generates a CURVE key pair (zmq_curve_keypair) and writes it as\n"
    "  NAME.pub     the public key, mode 0644: give it to the broker's\n"
    "               --curve-allow directory (clients and workers) or to\n"
    "               clients and workers (the broker's own)\n"
    "  NAME.secret  the public and the secret key, mode 0600: keep it\n"
    "               private to the program that uses the pair\n"
    "and prints the public key.  Both files are text:\n"
    "  public-key = <40 Z85 characters>\n"
    "  secret-key = <40 Z85 characters>   (NAME.secret only)\n"
    "with '#' comment lines.\n"
    "\n"
    "Options:\n"
    "  -f, --force     overwrite existing files\n"
    "  -p, --print     print the pair in the same format to standard output\n"
    "                  instead of writing files (NAME not needed)\n"
    "  -h, --help      this text\n"
    "      --version   the version\n"
    "\n"
    "Exit status: 0 success, 2 usage error, 69 libzmq has no CURVE,\n"
    "73 a file cannot be created (or exists, without --force, or is a\n"
    "symbolic or hard link: never written through).\n";

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"force", no_argument, NULL, 'f'},
      {"print", no_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'W'}, /* long only: -V is --verbose
                                               in mdp-broker */
      {NULL, 0, NULL, 0}};
  int force = 0, print = 0, opt;
  while ((opt = getopt_long(argc, argv, "fph", longopts, NULL)) != -1) {
    switch (opt) {
    case 'f':
      force = 1;
      break;
    case 'p':
      print = 1;
      break;
    case 'h':
      fputs(usage_text, stdout);
      return 0;
    case 'W':
      printf("mdp-keygen (libmdp) %s\n", MDP_VERSION_STRING);
      return 0;
    default:
      fputs(usage_text, stderr);
      return EXIT_USAGE;
    }
  }
  if ((print && optind != argc) || (!print && optind + 1 != argc) ||
      (!print && argv[optind][0] == '\0')) {
    fputs(usage_text, stderr);
    return EXIT_USAGE;
  }
  mdp_curve_keypair_t kp;
  int rc = mdp_curve_keypair_new(&kp);
  if (rc < 0) {
    fprintf(stderr, "mdp-keygen: cannot generate a key pair: %s\n",
            mdp_strerror(rc));
    return EXIT_UNAVAILABLE;
  }
  if (print) {
    printf("# libmdp CURVE key pair (mdp-keygen)\n"
           "public-key = %s\nsecret-key = %s\n",
           kp.public_key, kp.secret_key);
    memset(&kp, 0, sizeof kp);
    return 0;
  }
  rc = mdp_curve_save(argv[optind], &kp, force);
  if (rc < 0) {
    fprintf(stderr, "mdp-keygen: cannot write %s.pub / %s.secret: %s%s\n",
            argv[optind], argv[optind],
            rc == -ELOOP    ? "one is a symbolic link"
            : rc == -EMLINK ? "one has other hard links"
                            : mdp_strerror(rc),
            rc == -EEXIST ? " (use --force to overwrite)"
            : rc == -ELOOP || rc == -EMLINK
                ? "; refusing to write through a link (remove it first)"
                : "");
    memset(&kp, 0, sizeof kp);
    return EXIT_CANTCREAT;
  }
  printf("%s\n", kp.public_key);
  memset(&kp, 0, sizeof kp);
  return 0;
}
