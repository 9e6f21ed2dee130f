/* tcp_gateway: an existing libuv application (a TCP line server) that
 * turns each line it receives into an MDP request and writes the reply
 * back: the shape of a real gateway.  One mdp_client_t serves every
 * connection; each connection has at most one request in flight, so its
 * replies come back in the order of its lines.
 *
 *   tcp_gateway BROKER_URL SERVICE PORT
 *
 * Reply: the frames of every part joined by spaces, then a newline; an
 * error is written as "ERROR <name>".  Runs until SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdp.h"

#define LINE_MAX_ 65536

typedef struct conn_s {
  uv_tcp_t tcp;
  struct conn_s *prev, *next;
  char buf[LINE_MAX_];
  size_t len;       /* bytes in buf not yet turned into requests */
  uint64_t req_id;  /* request in flight, 0: none */
  int closing;
} conn_t;

static mdp_client_t *client;
static const char *service;
static uv_tcp_t server;
static uv_signal_t sigint, sigterm;
static conn_t *conns; /* every open connection, for shutdown */

static void conn_close(conn_t *c);
static void next_line(conn_t *c);

typedef struct {
  uv_write_t req;
  char data[];
} wbuf_t;

static void written(uv_write_t *req, int status) { free(req); }

static void conn_write(conn_t *c, const char *data, size_t len) {
  wbuf_t *w = malloc(sizeof *w + len);
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, written) < 0)
    free(w);
}

static void on_reply(mdp_client_t *cl, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  conn_t *c = data;
  if (c->closing) { /* the connection went first: nothing to write to */
    mdp_msg_destroy(body);
    return;
  }
  if (status < 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "ERROR %s\n", mdp_err_name(status));
    conn_write(c, line, (size_t)n);
  } else {
    for (size_t i = 0; i < mdp_msg_size(body); i++) {
      if (i > 0)
        conn_write(c, " ", 1);
      conn_write(c, mdp_msg_data(body, i), mdp_msg_frame_size(body, i));
    }
    if (final)
      conn_write(c, "\n", 1);
  }
  mdp_msg_destroy(body);
  if (final) {
    c->req_id = 0;
    next_line(c);
  }
}

/* Sends the next complete line as a request, if no request is in flight. */
static void next_line(conn_t *c) {
  if (c->req_id != 0 || c->closing)
    return;
  char *nl = memchr(c->buf, '\n', c->len);
  if (nl == NULL)
    return;
  size_t n = (size_t)(nl - c->buf);
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_mem(body, c->buf, n > 0 && c->buf[n - 1] == '\r' ? n - 1 : n);
  c->len -= n + 1;
  memmove(c->buf, nl + 1, c->len);
  if (mdp_client_request(client, service, body, NULL, on_reply, c,
                         &c->req_id) < 0) {
    mdp_msg_destroy(body);
    conn_write(c, "ERROR busy\n", 11);
  }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)nread;
  if (c->len == sizeof c->buf && memchr(c->buf, '\n', c->len) == NULL) {
    conn_close(c); /* a line longer than we accept */
    return;
  }
  next_line(c);
}

static void conn_freed(uv_handle_t *h) { free(h->data); }

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->req_id != 0)
    mdp_client_cancel(client, c->req_id); /* its callback sees `closing` */
  if (c->prev)
    c->prev->next = c->next;
  else
    conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0)
    return;
  conn_t *c = calloc(1, sizeof *c);
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
    return;
  }
  c->next = conns;
  if (conns)
    conns->prev = c;
  conns = c;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_signal(uv_signal_t *sig, int signum) {
  while (conns)
    conn_close(conns);
  mdp_client_close(client, NULL);
  uv_close((uv_handle_t *)&server, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: tcp_gateway BROKER_URL SERVICE PORT\n");
    return 64;
  }
  const char *url = argv[1];
  service = argv[2];
  uv_loop_t *loop = uv_default_loop();
  if (mdp_client_new(loop, &url, 1, NULL, &client) < 0)
    return 1;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", atoi(argv[3]), &addr);
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&server, 128, on_connection);
  if (rc < 0) {
    fprintf(stderr, "tcp_gateway: %s\n", uv_strerror(rc));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on 127.0.0.1:%s\n", argv[3]);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  mdp_zmq_context_term();
  return 0;
}
