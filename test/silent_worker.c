/* silent_worker: a worker process that behaves as the synchronous worker
 * libraries of other projects do (Majortomo's Worker, the zguide's
 * mdwrkapi in C and Python, zeromq/majordomo): it heartbeats only while it
 * waits for a request, and handles a request by blocking, sending nothing
 * at all, until it is done.  Raw libzmq, frames written out from
 * ../shared/protocol/WIRE.md, no libmdp.
 *
 *   silent_worker ENDPOINT SERVICE DIALECT WORK_MS [HEARTBEAT_MS]
 *
 * DIALECT: rfc18, majortomo or mdp01.  Each request takes WORK_MS (a sleep:
 * the process is silent meanwhile) and is answered with one FINAL (REPLY
 * in MDP/0.1) of the frames [NAME, body...], NAME being "pid:<pid>".  On
 * DISCONNECT it reconnects on a new socket and sends READY again, as those
 * libraries do.  Prints "ready" once READY is sent and "request <n>" (n
 * counting from 1) when a request arrives, so tests can synchronise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
  int lead; /* a leading empty frame */
  const char *header;
  char ready, request, reply, heartbeat, disconnect;
} wire_t;

static const wire_t rfc18 = {0, "MDPW02", 1, 2, 4, 5, 6};
static const wire_t majortomo = {1, "MDPW02", 1, 2, 4, 5, 6};
static const wire_t mdp01 = {1, "MDPW01", 1, 2, 3, 4, 5};

static const wire_t *W;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void send_frame(void *s, const void *data, size_t size, int more) {
  zmq_send(s, data, size, more ? ZMQ_SNDMORE : 0);
}

/* Sends the header and command; `more`: frames follow. */
static void send_command(void *s, char command, int more) {
  if (W->lead)
    send_frame(s, "", 0, 1);
  send_frame(s, W->header, 6, 1);
  send_frame(s, &command, 1, more);
}

static void *connect_ready(void *ctx, const char *endpoint,
                           const char *service) {
  void *s = zmq_socket(ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(s, endpoint);
  send_command(s, W->ready, 1);
  send_frame(s, service, strlen(service), 0);
  return s;
}

/* Receives one whole message into `frames` (at most `max`); the count. */
static int recv_message(void *s, zmq_msg_t *frames, int max) {
  int n = 0, more = 1;
  while (more) {
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, s, 0) < 0) {
      zmq_msg_close(&f);
      break;
    }
    more = zmq_msg_more(&f);
    if (n < max)
      frames[n++] = f;
    else
      zmq_msg_close(&f);
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: silent_worker ENDPOINT SERVICE DIALECT WORK_MS "
                    "[HEARTBEAT_MS]\n");
    return 2;
  }
  const char *endpoint = argv[1], *service = argv[2];
  W = strcmp(argv[3], "rfc18") == 0       ? &rfc18
      : strcmp(argv[3], "majortomo") == 0 ? &majortomo
      : strcmp(argv[3], "mdp01") == 0     ? &mdp01
                                          : NULL;
  if (W == NULL)
    return 2;
  long work_ms = atol(argv[4]);
  long heartbeat_ms = argc > 5 ? atol(argv[5]) : 100;
  char name[32];
  snprintf(name, sizeof name, "pid:%ld", (long)getpid());

  void *ctx = zmq_ctx_new();
  void *s = connect_ready(ctx, endpoint, service);
  printf("ready\n");
  fflush(stdout);
  uint64_t last_sent = now_ms();
  unsigned requests = 0;
  for (;;) {
    /* Waiting for work: the only time such a worker heartbeats. */
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    long wait = (long)(last_sent + (uint64_t)heartbeat_ms) - (long)now_ms();
    if (wait > 0 && zmq_poll(&item, 1, wait) < 0)
      break;
    if (!(item.revents & ZMQ_POLLIN)) {
      send_command(s, W->heartbeat, 0);
      last_sent = now_ms();
      continue;
    }
    zmq_msg_t f[64];
    int n = recv_message(s, f, 64);
    int i = W->lead; /* the header, then the command */
    char command = n > i + 1 && zmq_msg_size(&f[i + 1]) == 1
                       ? *(char *)zmq_msg_data(&f[i + 1])
                       : 0;
    if (command == W->request && n >= i + 4) {
      printf("request %u\n", ++requests);
      fflush(stdout);
      usleep((useconds_t)work_ms * 1000); /* busy, and silent */
      /* [lead] header REPLY client "" name body... */
      send_command(s, W->reply, 1);
      send_frame(s, zmq_msg_data(&f[i + 2]), zmq_msg_size(&f[i + 2]), 1);
      send_frame(s, "", 0, 1);
      send_frame(s, name, strlen(name), n > i + 4);
      for (int k = i + 4; k < n; k++)
        send_frame(s, zmq_msg_data(&f[k]), zmq_msg_size(&f[k]), k + 1 < n);
      last_sent = now_ms();
    } else if (command == W->disconnect) {
      zmq_close(s);
      s = connect_ready(ctx, endpoint, service);
      last_sent = now_ms();
    }
    for (int k = 0; k < n; k++)
      zmq_msg_close(&f[k]);
  }
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}
