/* mdp-broker's options: one table for the command line and the config
 * file (-c FILE), so a key of the file is exactly a long option's name. */
#ifndef MDP_BROKER_OPTIONS_H
#define MDP_BROKER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include <mdp.h>

#include "mdp-broker-log.h"

#define EXIT_USAGE 2

typedef struct {
  mdp_broker_options_t broker;
  const char **binds;        /* endpoints (owned array, strings borrowed
                                from argv or from `file_text`) */
  size_t n_binds;
  int binds_from_cli;        /* a -b on the command line replaces the file's */
  uint64_t stats_ms;
  mdp_log_level_t level;     /* the program's own lines */
  int verbose;
  broker_log_format_t log_format; /* --log-format text|json */
  const char *curve_secret_file;
  const char *curve_acl;     /* --curve-acl FILE, or NULL */
  const char *config_file;
  /* What was given explicitly, for the consistency checks at the end. */
  int interval_set, liveness_set;
  uint64_t heartbeat_timeout_ms; /* -t; 0: not given */
  char *file_text;           /* the config file's contents (owned) */
  const char *metrics;       /* --metrics HOST:PORT, or NULL */
  unsigned metrics_timeout_s;
  unsigned metrics_max_connections;
  unsigned metrics_min_interval_ms;
  const char *log_file;      /* --log-file PATH, or NULL: stderr */
  int check_config;          /* --check-config: check, print, exit */
  size_t malloc_keep;         /* --malloc-keep, bytes; 0: glibc's defaults */
  uint64_t stop_grace_ms;     /* --stop-grace: serve on this long after SIGTERM */
} broker_cli_t;

/* Parses argv, then the config file if -c named one, into `cli` (which it
 * initialises).  Returns -1 to go on and run the broker, or an exit status:
 * 0 after --help/--version (printed), EXIT_USAGE after a usage error
 * (explained on stderr).  broker_cli_free() releases `cli` either way. */
int broker_cli_parse(broker_cli_t *cli, int argc, char **argv);
void broker_cli_free(broker_cli_t *cli);

/* While `buf` is set (not NULL), usage errors are not printed: the first
 * one is written to `buf` (with its file:line), for a reload to log.
 * Setting it clears it. */
void broker_cli_capture_errors(char *buf, size_t size);

/* -1 if `ep` is a tcp:// endpoint whose port is a number out of 0 to
 * 65535 (why in `why`, `size` bytes; may be NULL), else 0: the bind
 * itself judges the rest. */
int broker_check_endpoint(const char *ep, char *why, size_t size);

extern const char broker_usage_text[];

#endif /* MDP_BROKER_OPTIONS_H */
