/* mdp-broker --metrics: GET /metrics (Prometheus text format 0.0.4, or
 * OpenMetrics 1.0 when the scraper asks for it) served from the broker's
 * own libuv loop by GNU libmicrohttpd, with no thread of its own.  See
 * docs/metrics.md. */
#ifndef MDP_BROKER_METRICS_H
#define MDP_BROKER_METRICS_H

#include <mdp.h>

typedef struct broker_metrics_s broker_metrics_t;

typedef struct {
  const char *address;        /* HOST:PORT ([V6]:PORT); port 0 picks one */
  unsigned timeout_s;         /* an idle or slow connection is closed after
                                 this long */
  unsigned max_connections;   /* open at once; more are refused */
  unsigned min_interval_ms;   /* a page (/metrics, /status) is built at
                                 most once per this; requests in between
                                 get the last one */
} broker_metrics_conf_t;

#define BROKER_METRICS_TIMEOUT_S 10
#define BROKER_METRICS_MAX_CONNECTIONS 16
#define BROKER_METRICS_MIN_INTERVAL_MS 200
/* Bytes MHD may use per connection (request line and headers included): a
 * larger request header is answered 431 and closed. */
#define BROKER_METRICS_MEMORY_LIMIT (32 * 1024)

/* 1 if this mdp-broker was built with libmicrohttpd. */
int broker_metrics_supported(void);

/* 0 if `text` is a valid --metrics address (HOST:PORT, HOST a numeric
 * IPv4 or [IPv6] address or localhost, PORT 0 to 65535); -2 if only
 * the port is out of that range; else -1. */
int broker_metrics_check_address(const char *text);

/* Starts serving on `loop`, reading `broker` (which must outlive it, until
 * broker_metrics_stop).  Returns 0 and sets `*out`; or -1 after printing
 * why on stderr (bad address, cannot bind, no support).  The listening
 * address, with the port picked, is written to `bound` (`size` bytes).
 * Loop thread only. */
int broker_metrics_start(uv_loop_t *loop, mdp_broker_t *broker,
                         const broker_metrics_conf_t *conf,
                         broker_metrics_t **out, char *bound, size_t size);

/* /readyz answers 200 while `ready` is 1 (every endpoint bound), 503
 * "not ready: starting" while 0 (unless the broker is closing) and 503
 * "stopping" while -1 (a stop has begun).  NULL is a no-op. */
void broker_metrics_set_ready(broker_metrics_t *m, int ready);

/* Where the count of connected peers is (the broker's monitor), for the
 * connected-clients gauge; NULL: unknown (the gauge is left out). */
void broker_metrics_set_connections(broker_metrics_t *m,
                                    const uint64_t *connections);

/* Closes the listening socket and every connection, and frees `m` once its
 * handles are closed (the loop must run on).  NULL is a no-op. */
void broker_metrics_stop(broker_metrics_t *m);

#endif /* MDP_BROKER_METRICS_H */
