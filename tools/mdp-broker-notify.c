/* mdp-broker's sd_notify messages; see mdp-broker-notify.h. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mdp-broker-notify.h"

#ifdef MDP_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

int broker_notify_available(void) { return 1; }

static void on_watchdog(uv_timer_t *timer) {
  (void)timer;
  sd_notify(0, "WATCHDOG=1");
}

void broker_notify_ready(broker_notify_t *n, uv_loop_t *loop,
                         const char *status) {
  char msg[512];
  snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
  sd_notify(0, msg);
  uint64_t usec = 0;
  /* > 0 only if WATCHDOG_USEC is set and WATCHDOG_PID is unset or ours. */
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0 && !n->timer_open &&
      !n->stopped) {
    n->watchdog_usec = usec;
    uint64_t every_ms = usec / 2000; /* half the interval, as systemd asks */
    if (every_ms == 0)
      every_ms = 1;
    uv_timer_init(loop, &n->watchdog);
    n->timer_open = 1;
    sd_notify(0, "WATCHDOG=1");
    uv_timer_start(&n->watchdog, on_watchdog, every_ms, every_ms);
  }
}

void broker_notify_reloading(broker_notify_t *n) {
  if (n->stopped)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char msg[128];
  snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
           (unsigned long long)ts.tv_sec * 1000000ULL +
               (unsigned long long)ts.tv_nsec / 1000);
  sd_notify(0, msg);
}

void broker_notify_reloaded(broker_notify_t *n, const char *status) {
  if (n->stopped)
    return;
  char msg[512];
  snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
  sd_notify(0, msg);
}

void broker_notify_stopping(broker_notify_t *n) {
  if (!n->stopped)
    sd_notify(0, "STOPPING=1");
  n->stopped = 1;
  if (n->timer_open)
    uv_close((uv_handle_t *)&n->watchdog, NULL);
  n->timer_open = 0;
}

#else /* built without libsystemd: nothing is sent */

int broker_notify_available(void) { return 0; }

void broker_notify_ready(broker_notify_t *n, uv_loop_t *loop,
                         const char *status) {
  (void)n, (void)loop, (void)status;
}

void broker_notify_reloading(broker_notify_t *n) { (void)n; }

void broker_notify_reloaded(broker_notify_t *n, const char *status) {
  (void)n, (void)status;
}

void broker_notify_stopping(broker_notify_t *n) { (void)n; }

#endif
