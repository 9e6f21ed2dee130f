/* mdp-broker's service-manager notifications (systemd's sd_notify):
 * READY=1 once every endpoint is bound, STOPPING=1 when it stops, and
 * WATCHDOG=1 from a loop timer at half the watchdog interval when the unit
 * sets WatchdogSec.  Built without libsystemd (meson -Dsystemd=disabled, or
 * auto without libsystemd-dev), every call does nothing. */
#ifndef MDP_BROKER_NOTIFY_H
#define MDP_BROKER_NOTIFY_H

#include <stdint.h>

#include <uv.h>

typedef struct {
  uv_timer_t watchdog;
  int timer_open;          /* the watchdog timer is initialised, not closed */
  int stopped;             /* STOPPING=1 was sent */
  uint64_t watchdog_usec;  /* WatchdogSec as systemd passed it, or 0 */
} broker_notify_t;

/* 1 if this build sends notifications (has libsystemd), else 0. */
int broker_notify_available(void);

/* READY=1 and a STATUS= line; starts the watchdog timer on `loop` if the
 * service manager asked for one (WATCHDOG_USEC, and WATCHDOG_PID unset or
 * ours). */
void broker_notify_ready(broker_notify_t *n, uv_loop_t *loop,
                         const char *status);

/* RELOADING=1 (with MONOTONIC_USEC, as systemd's notify-reload wants);
 * follow it with broker_notify_reloaded() once the reload is done. */
void broker_notify_reloading(broker_notify_t *n);
/* READY=1 and a STATUS= line after a reload. */
void broker_notify_reloaded(broker_notify_t *n, const char *status);

/* STOPPING=1; closes the watchdog timer.  Safe to call more than once and
 * without broker_notify_ready(). */
void broker_notify_stopping(broker_notify_t *n);

#endif /* MDP_BROKER_NOTIFY_H */
