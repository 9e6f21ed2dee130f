/* CURVE: key files, the broker's ZAP handler, CURVE workers and clients,
 * and the tools (mdp-keygen, mdp-broker --curve-*, mdp-request --curve-*,
 * mdp-worker --curve-*).
 *
 * Promise checked: an allowed peer is served; a client with an unknown
 * key, a client with the wrong broker key and a plaintext client are
 * refused and never reach a service: the worker gets no REQUEST and the
 * broker's counters show that nothing arrived. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "mdp.h"
#include "peer.h"
#include "proc.h"

/* --- files ----------------------------------------------------------------- */

static char tmpdir[64];

static const char *tmp_path(const char *name) {
  static char paths[8][256];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 256, "%s/%s", tmpdir, name);
  return p;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return -1;
  fputs(text, f);
  return fclose(f);
}

static void rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      char sub[512];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      rm_tree(sub);
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static mode_t file_mode(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (st.st_mode & 0777) : 0;
}

/* --- keys and key files ---------------------------------------------------- */

static void keygen_round_trip(void) {
  CHECK(mdp_curve_available());
  mdp_curve_keypair_t kp, back;
  CHECK_EQ(mdp_curve_keypair_new(&kp), 0);
  CHECK(mdp_curve_key_valid(kp.public_key));
  CHECK(mdp_curve_key_valid(kp.secret_key));
  CHECK(strcmp(kp.public_key, kp.secret_key) != 0);
  CHECK_EQ(mdp_curve_save(tmp_path("alice"), &kp, 0), 0);
  CHECK_EQ(file_mode(tmp_path("alice.secret")), 0600);
  CHECK_EQ(file_mode(tmp_path("alice.pub")), 0644);
  /* the secret file holds the pair, the public file only the public key */
  CHECK_EQ(mdp_curve_load(tmp_path("alice.secret"), &back, NULL), 0);
  CHECK(strcmp(back.public_key, kp.public_key) == 0);
  CHECK(strcmp(back.secret_key, kp.secret_key) == 0);
  CHECK_EQ(mdp_curve_load(tmp_path("alice.pub"), &back, NULL), 0);
  CHECK(strcmp(back.public_key, kp.public_key) == 0);
  CHECK_EQ(back.secret_key[0], '\0');
  CHECK(strstr(read_file_(tmp_path("alice.pub")), kp.secret_key) == NULL);
  /* never overwritten by accident; on request, yes, and modes stay */
  mdp_curve_keypair_t kp2;
  CHECK_EQ(mdp_curve_keypair_new(&kp2), 0);
  CHECK_EQ(mdp_curve_save(tmp_path("alice"), &kp2, 0), -EEXIST);
  CHECK_EQ(mdp_curve_load(tmp_path("alice.secret"), &back, NULL), 0);
  CHECK(strcmp(back.secret_key, kp.secret_key) == 0);
  chmod(tmp_path("alice.secret"), 0644);
  CHECK_EQ(mdp_curve_save(tmp_path("alice"), &kp2, 1), 0);
  CHECK_EQ(file_mode(tmp_path("alice.secret")), 0600);
  CHECK_EQ(mdp_curve_load(tmp_path("alice.secret"), &back, NULL), 0);
  CHECK(strcmp(back.secret_key, kp2.secret_key) == 0);
  /* the format: comments, blanks, spaces, CRLF */
  char text[512];
  snprintf(text, sizeof text,
           "# a comment\r\n\r\n   public-key=%s   \r\n\tsecret-key =\t%s\n",
           kp.public_key, kp.secret_key);
  CHECK_EQ(write_text(tmp_path("loose"), text), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("loose"), &back, NULL), 0);
  CHECK(strcmp(back.secret_key, kp.secret_key) == 0);
  /* malformed files, with the line at fault */
  size_t line = 99;
  snprintf(text, sizeof text, "public-key = %s\nsecret-key = %.39s\n",
           kp.public_key, kp.secret_key);
  CHECK_EQ(write_text(tmp_path("short"), text), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("short"), &back, &line), MDP_EINVAL);
  CHECK_EQ(line, 2);
  snprintf(text, sizeof text, "\npublik-key = %s\n", kp.public_key);
  CHECK_EQ(write_text(tmp_path("name"), text), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("name"), &back, &line), MDP_EINVAL);
  CHECK_EQ(line, 2);
  snprintf(text, sizeof text, "public-key = %.39s\"\n", kp.public_key);
  CHECK_EQ(write_text(tmp_path("char"), text), 0); /* '"' is not Z85 */
  CHECK_EQ(mdp_curve_load(tmp_path("char"), &back, &line), MDP_EINVAL);
  CHECK_EQ(line, 1);
  snprintf(text, sizeof text, "public-key = %s\nsecret-key = %s\n",
           kp2.public_key, kp.secret_key); /* a pair that does not match */
  CHECK_EQ(write_text(tmp_path("mismatch"), text), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("mismatch"), &back, &line), MDP_EINVAL);
  CHECK_EQ(line, 0);
  snprintf(text, sizeof text, "public-key = %s\npublic-key = %s\n",
           kp.public_key, kp2.public_key);
  CHECK_EQ(write_text(tmp_path("two"), text), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("two"), &back, &line), MDP_EINVAL);
  CHECK_EQ(write_text(tmp_path("empty"), "# nothing\n"), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("empty"), &back, &line), MDP_EINVAL);
  CHECK_EQ(mdp_curve_load(tmp_path("missing"), &back, &line), -ENOENT);
  CHECK(!mdp_curve_key_valid(NULL));
  CHECK(!mdp_curve_key_valid(""));
  CHECK(!mdp_curve_key_valid("short"));
}

/* --- a CURVE broker and its peers ------------------------------------------ */

typedef struct {
  uv_loop_t loop;
  void *ctx;
  mdp_broker_t *broker;
  char ep[256];
  int broker_closed;
  mdp_curve_keypair_t server, worker, client, stranger;
  char allow_dir[256];
} env_t;

static env_t E;

static void on_broker_closed(mdp_broker_t *b) { E.broker_closed++; }
static int is_set(void *arg) { return *(int *)arg; }

static void curve_broker_opts(mdp_broker_options_t *o) {
  mdp_broker_options_init(o);
  o->zmq_context = E.ctx;
  o->curve_secret_key = E.server.secret_key;
  o->curve_allow = E.allow_dir;
}

/* A broker on tcp:// that lets in the worker's and the client's keys. */
static int env_open(void) {
  memset(&E, 0, sizeof E);
  uv_loop_init(&E.loop);
  E.ctx = zmq_ctx_new();
  if (mdp_curve_keypair_new(&E.server) || mdp_curve_keypair_new(&E.worker) ||
      mdp_curve_keypair_new(&E.client) || mdp_curve_keypair_new(&E.stranger))
    return -1;
  snprintf(E.allow_dir, sizeof E.allow_dir, "%s", tmp_path("allow"));
  mkdir(E.allow_dir, 0755);
  char base[300];
  snprintf(base, sizeof base, "%s/worker", E.allow_dir);
  if (mdp_curve_save(base, &E.worker, 1) != 0)
    return -1;
  snprintf(base, sizeof base, "%s/client", E.allow_dir);
  mdp_curve_keypair_t pub = E.client;
  pub.secret_key[0] = '\0'; /* only NAME.pub: what an operator copies in */
  if (mdp_curve_save(base, &pub, 1) != 0)
    return -1;
  mdp_broker_options_t o;
  curve_broker_opts(&o);
  if (mdp_broker_new(&E.loop, &o, &E.broker) != 0 ||
      mdp_broker_bind(E.broker, "tcp://127.0.0.1:*") != 0)
    return -1;
  mdp_broker_last_endpoint(E.broker, E.ep, sizeof E.ep);
  return 0;
}

static int env_close(void) {
  if (E.broker)
    mdp_broker_close(E.broker, on_broker_closed);
  int ok = t_run_until(&E.loop, is_set, &E.broker_closed, 3000);
  int rc = t_loop_close(&E.loop);
  zmq_ctx_term(E.ctx);
  return ok && rc == 0 ? 0 : -1;
}

static mdp_broker_stats_t bstats(void) {
  mdp_broker_stats_t s;
  mdp_broker_get_stats(E.broker, &s);
  return s;
}

typedef struct {
  int requests;
  int closed;
} wapp_t;

static void on_echo(mdp_worker_t *w, mdp_request_t req,
                    mdp_msg_t *body) {
  wapp_t *a = mdp_worker_get_data(w);
  a->requests++;
  if (mdp_worker_final(req, body) < 0)
    mdp_msg_destroy(body);
}

static void on_worker_closed(mdp_worker_t *w) {
  ((wapp_t *)mdp_worker_get_data(w))->closed = 1;
}

static int w_closed(void *arg) { return ((wapp_t *)arg)->closed; }

static mdp_worker_t *curve_worker(const mdp_curve_keypair_t *server,
                                  const mdp_curve_keypair_t *own, wapp_t *a) {
  mdp_worker_options_t o;
  mdp_worker_options_init(&o);
  o.zmq_context = E.ctx;
  /* the broker heartbeats every 2.5 s: stay well within that */
  o.heartbeat_interval_ms = 1000;
  o.heartbeat_liveness = 10;
  if (own != NULL) {
    o.curve_server_key = server->public_key;
    o.curve_public_key = own->public_key;
    o.curve_secret_key = own->secret_key;
  }
  mdp_worker_t *w = NULL;
  if (mdp_worker_new(&E.loop, E.ep, "echo", &o, on_echo, &w) != 0)
    return NULL;
  mdp_worker_set_data(w, a);
  return w;
}

/* The ZAP handler has refused at least *arg peers (a handshake may finish
 * after the client that started it gave up). */
static int refused_at_least(void *arg) {
  return bstats().curve_refused >= *(size_t *)arg;
}

static int registered(void *arg) {
  mdp_broker_stats_t s = bstats();
  return s.workers_idle >= *(size_t *)arg;
}

typedef struct {
  int done;
  int status;
  int frames_ok;
} rep_t;

static void on_reply(mdp_client_t *c, uint64_t id, int status, int final,
                     mdp_msg_t *body, void *data) {
  rep_t *r = data;
  if (final) {
    r->done = 1;
    r->status = status;
    r->frames_ok = body != NULL && mdp_msg_size(body) == 1 &&
                   mdp_msg_frame_eq(body, 0, "secret", 6);
  }
  mdp_msg_destroy(body);
}

static int rep_done(void *arg) { return ((rep_t *)arg)->done; }

static int client_closed;
static void on_client_closed(mdp_client_t *c) { client_closed = 1; }

/* One request for "echo" from a client with these keys (own NULL:
 * plaintext); returns the reply's status. */
static int ask(const mdp_curve_keypair_t *server,
               const mdp_curve_keypair_t *own, uint64_t timeout_ms,
               int *frames_ok) {
  mdp_client_options_t o;
  mdp_client_options_init(&o);
  o.zmq_context = E.ctx;
  o.timeout_ms = timeout_ms;
  o.retries = 0;
  if (own != NULL) {
    o.curve_server_key = server->public_key;
    o.curve_public_key = own->public_key;
    o.curve_secret_key = own->secret_key;
  }
  const char *eps[] = {E.ep};
  mdp_client_t *c = NULL;
  if (mdp_client_new(&E.loop, eps, 1, &o, &c) != 0)
    return -12345;
  rep_t r = {0};
  mdp_msg_t *body = mdp_msg_new();
  mdp_msg_append_str(body, "secret");
  if (mdp_client_request(c, "echo", body, NULL, on_reply, &r, NULL) != 0) {
    mdp_msg_destroy(body);
    r.status = -12346;
  } else {
    t_run_until(&E.loop, rep_done, &r, timeout_ms + 3000);
  }
  client_closed = 0;
  mdp_client_close(c, on_client_closed);
  t_run_until(&E.loop, is_set, &client_closed, 2000);
  if (frames_ok)
    *frames_ok = r.frames_ok;
  return r.done ? r.status : -12347;
}

static void allowed_peers_served(void) {
  CHECK_EQ(env_open(), 0);
  wapp_t a = {0};
  mdp_worker_t *w = curve_worker(&E.server, &E.worker, &a);
  CHECK(w != NULL);
  size_t one = 1;
  CHECK(t_run_until(&E.loop, registered, &one, 3000));
  int ok = 0;
  CHECK_EQ(ask(&E.server, &E.client, 3000, &ok), 0);
  CHECK(ok);
  CHECK_EQ(a.requests, 1);
  mdp_broker_stats_t s = bstats();
  CHECK_EQ(s.requests, 1);
  CHECK_EQ(s.replies, 1);
  CHECK_EQ(s.workers_registered, 1);
  CHECK(s.curve_accepted >= 2);
  CHECK_EQ(s.curve_refused, 0);
  mdp_worker_close(w, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  CHECK_EQ(env_close(), 0);
}

/* Each intruder asks for "echo", which an allowed worker serves; none of
 * them gets an answer, the worker sees nothing, the broker counts nothing
 * but the ZAP refusal. */
static void intruders_refused(void) {
  CHECK_EQ(env_open(), 0);
  wapp_t a = {0};
  mdp_worker_t *w = curve_worker(&E.server, &E.worker, &a);
  CHECK(w != NULL);
  size_t one = 1;
  CHECK(t_run_until(&E.loop, registered, &one, 3000));
  /* an unknown key, with the right broker key: refused by the ZAP handler */
  /* (long enough for the handshake to reach the ZAP handler before the
   * client gives up, on a slow day too) */
  CHECK_EQ(ask(&E.server, &E.stranger, 1500, NULL), MDP_ETIMEDOUT);
  CHECK(t_run_until(&E.loop, refused_at_least, &one, 3000));
  mdp_broker_stats_t s;
  /* an allowed key but the wrong broker key: the handshake fails */
  CHECK_EQ(ask(&E.stranger, &E.client, 400, NULL), MDP_ETIMEDOUT);
  /* no CURVE at all */
  CHECK_EQ(ask(NULL, NULL, 400, NULL), MDP_ETIMEDOUT);
  /* a raw plaintext DEALER sending RFC 18's REQUEST frame by frame, and a
   * raw READY: nothing arrives */
  void *raw = peer_new(E.ctx, ZMQ_DEALER, E.ep);
  CHECK(raw != NULL);
  peer_send(raw, "MDPC02", "\x01", "echo", "secret", NULL);
  void *raw_w = peer_new(E.ctx, ZMQ_DEALER, E.ep);
  peer_send(raw_w, "MDPW02", "\x01", "echo", NULL);
  mdp_msg_t *m = peer_recv(&E.loop, raw, 300);
  CHECK(m == NULL);
  zmq_close(raw);
  zmq_close(raw_w);
  /* a CURVE worker whose key is not listed never registers */
  wapp_t b = {0};
  mdp_worker_t *w2 = curve_worker(&E.server, &E.stranger, &b);
  CHECK(w2 != NULL);
  size_t two = 2; /* the stranger client and worker */
  CHECK(t_run_until(&E.loop, refused_at_least, &two, 3000));
  t_run_until(&E.loop, NULL, NULL, 100); /* time to misbehave, if it would */
  s = bstats();
  CHECK_EQ(a.requests, 0);
  CHECK_EQ(b.requests, 0);
  CHECK_EQ(s.requests, 0);
  CHECK_EQ(s.dispatched, 0);
  CHECK_EQ(s.dropped_invalid, 0);
  CHECK_EQ(s.workers_registered, 1);
  CHECK_EQ(s.workers, 1);
  CHECK(s.curve_refused >= 2); /* the stranger client and worker */
  /* and the allowed client is still served */
  int ok = 0;
  CHECK_EQ(ask(&E.server, &E.client, 3000, &ok), 0);
  CHECK(ok);
  CHECK_EQ(a.requests, 1);
  mdp_worker_close(w, 0, on_worker_closed);
  mdp_worker_close(w2, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  CHECK(t_run_until(&E.loop, w_closed, &b, 2000));
  CHECK_EQ(env_close(), 0);
}

/* The allow-list as a single file, and as keys given in memory. */
static void allow_file_and_keys(void) {
  CHECK_EQ(env_open(), 0);
  mdp_broker_close(E.broker, on_broker_closed);
  CHECK(t_run_until(&E.loop, is_set, &E.broker_closed, 2000));
  E.broker_closed = 0;
  char text[512];
  snprintf(text, sizeof text,
           "# the worker and the client\npublic-key = %s\n\n"
           "public-key = %s\n",
           E.worker.public_key, E.client.public_key);
  CHECK_EQ(write_text(tmp_path("allow.txt"), text), 0);
  mdp_broker_options_t o;
  curve_broker_opts(&o);
  o.curve_allow = tmp_path("allow.txt");
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &E.broker), 0);
  CHECK_EQ(mdp_broker_bind(E.broker, "tcp://127.0.0.1:*"), 0);
  mdp_broker_last_endpoint(E.broker, E.ep, sizeof E.ep);
  wapp_t a = {0};
  mdp_worker_t *w = curve_worker(&E.server, &E.worker, &a);
  size_t one = 1;
  CHECK(t_run_until(&E.loop, registered, &one, 3000));
  CHECK_EQ(ask(&E.server, &E.client, 3000, NULL), 0);
  CHECK_EQ(ask(&E.server, &E.stranger, 300, NULL), MDP_ETIMEDOUT);
  mdp_worker_close(w, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  mdp_broker_close(E.broker, on_broker_closed);
  CHECK(t_run_until(&E.loop, is_set, &E.broker_closed, 2000));
  E.broker_closed = 0;
  /* in memory only */
  const char *keys[] = {E.worker.public_key, E.client.public_key};
  curve_broker_opts(&o);
  o.curve_allow = NULL;
  o.curve_allow_keys = keys;
  o.curve_allow_count = 2;
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &E.broker), 0);
  CHECK_EQ(mdp_broker_bind(E.broker, "tcp://127.0.0.1:*"), 0);
  mdp_broker_last_endpoint(E.broker, E.ep, sizeof E.ep);
  a.closed = 0;
  w = curve_worker(&E.server, &E.worker, &a);
  CHECK(t_run_until(&E.loop, registered, &one, 3000));
  CHECK_EQ(ask(&E.server, &E.client, 3000, NULL), 0);
  CHECK_EQ(ask(&E.server, &E.stranger, 300, NULL), MDP_ETIMEDOUT);
  mdp_worker_close(w, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  CHECK_EQ(env_close(), 0);
}

/* mdp_curve_allow_each: the keys of an allow-list with the names the
 * broker's ZAP handler gives (NAME of NAME.pub; a file's keys by
 * themselves), a malformed file's line, a callback that stops the walk. */
typedef struct {
  char z85[4][41];
  char name[4][64];
  int n;
  int stop_at; /* return 7 on this call (1-based), 0: never */
} seen_t;

static int seen_key(void *arg, const char *z85, const char *name) {
  seen_t *s = arg;
  if (s->n < 4) {
    snprintf(s->z85[s->n], sizeof s->z85[0], "%s", z85);
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
  }
  s->n++;
  return s->n == s->stop_at ? 7 : 0;
}

static int seen_has(const seen_t *s, const char *z85, const char *name) {
  for (int i = 0; i < s->n && i < 4; i++)
    if (strcmp(s->z85[i], z85) == 0 && strcmp(s->name[i], name) == 0)
      return 1;
  return 0;
}

static void allow_each_names_keys(void) {
  mdp_curve_keypair_t a, b;
  CHECK_EQ(mdp_curve_keypair_new(&a), 0);
  CHECK_EQ(mdp_curve_keypair_new(&b), 0);
  char dir[300];
  snprintf(dir, sizeof dir, "%s", tmp_path("each.d"));
  CHECK_EQ(mkdir(dir, 0700), 0);
  char base[400];
  snprintf(base, sizeof base, "%s/alice", dir);
  mdp_curve_keypair_t pub_a = a, pub_b = b;
  pub_a.secret_key[0] = pub_b.secret_key[0] = '\0';
  CHECK_EQ(mdp_curve_save(base, &pub_a, 0), 0);
  snprintf(base, sizeof base, "%s/bob", dir);
  CHECK_EQ(mdp_curve_save(base, &pub_b, 0), 0);
  seen_t s = {0};
  CHECK_EQ(mdp_curve_allow_each(dir, seen_key, &s, NULL, 0, NULL), 0);
  CHECK_EQ(s.n, 2);
  CHECK(seen_has(&s, a.public_key, "alice"));
  CHECK(seen_has(&s, b.public_key, "bob"));
  /* A file of keys: each named by itself. */
  char text[300];
  snprintf(text, sizeof text, "# two\npublic-key = %s\npublic-key = %s\n",
           a.public_key, b.public_key);
  CHECK_EQ(write_text(tmp_path("each.txt"), text), 0);
  memset(&s, 0, sizeof s);
  CHECK_EQ(mdp_curve_allow_each(tmp_path("each.txt"), seen_key, &s, NULL, 0,
                                NULL), 0);
  CHECK_EQ(s.n, 2);
  CHECK(seen_has(&s, a.public_key, a.public_key));
  CHECK(seen_has(&s, b.public_key, b.public_key));
  /* The callback's value ends the walk. */
  memset(&s, 0, sizeof s);
  s.stop_at = 1;
  CHECK_EQ(mdp_curve_allow_each(tmp_path("each.txt"), seen_key, &s, NULL, 0,
                                NULL), 7);
  CHECK_EQ(s.n, 1);
  /* A malformed file: where, and no callback at all. */
  snprintf(text, sizeof text, "public-key = %s\npublic-key = nonsense\n",
           a.public_key);
  CHECK_EQ(write_text(tmp_path("each-bad.txt"), text), 0);
  memset(&s, 0, sizeof s);
  char where[300] = "";
  size_t line = 0;
  CHECK_EQ(mdp_curve_allow_each(tmp_path("each-bad.txt"), seen_key, &s, where,
                                sizeof where, &line), MDP_EINVAL);
  CHECK_EQ(s.n, 0);
  CHECK_EQ(line, 2);
  CHECK(strcmp(where, tmp_path("each-bad.txt")) == 0);
  CHECK_EQ(mdp_curve_allow_each(tmp_path("none-such"), seen_key, &s, NULL, 0,
                                NULL), -ENOENT);
  CHECK_EQ(mdp_curve_allow_each(NULL, seen_key, &s, NULL, 0, NULL),
           MDP_EINVAL);
}

/* One ZAP handler per ZeroMQ context; options checked before anything
 * is created or bound. */
static int closed_two(void *arg) { return *(int *)arg >= 2; }

static void option_errors(void) {
  CHECK_EQ(env_open(), 0);
  mdp_broker_options_t o;
  mdp_broker_t *b = NULL;
  curve_broker_opts(&o);
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), MDP_EADDRINUSE);
  void *ctx2 = zmq_ctx_new(); /* another context: fine */
  o.zmq_context = ctx2;
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), 0);
  mdp_broker_close(b, on_broker_closed);
  curve_broker_opts(&o);
  o.curve_allow = NULL;
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), MDP_EINVAL); /* no allow-list */
  curve_broker_opts(&o);
  o.curve_secret_key = "not a key";
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), MDP_EINVAL);
  curve_broker_opts(&o);
  o.curve_allow = tmp_path("no-such-dir");
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), -ENOENT);
  curve_broker_opts(&o);
  o.curve_allow = tmp_path("alice.secret"); /* a secret key: refused */
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), MDP_EINVAL);
  const char *bad[] = {"x"};
  curve_broker_opts(&o);
  o.curve_allow = NULL;
  o.curve_allow_keys = bad;
  o.curve_allow_count = 1;
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), MDP_EINVAL);
  /* a closing broker releases the ZAP endpoint at once */
  mdp_broker_close(E.broker, on_broker_closed);
  E.broker = NULL;
  curve_broker_opts(&o);
  CHECK_EQ(mdp_broker_new(&E.loop, &o, &b), 0);
  CHECK(t_run_until(&E.loop, closed_two, &E.broker_closed, 2000));
  mdp_broker_close(b, on_broker_closed);
  /* client and worker: all three keys or none, each a key */
  mdp_worker_options_t wo;
  mdp_worker_options_init(&wo);
  wo.zmq_context = E.ctx;
  wo.curve_server_key = E.server.public_key;
  mdp_worker_t *w = NULL;
  CHECK_EQ(mdp_worker_new(&E.loop, "tcp://127.0.0.1:1", "echo", &wo, on_echo,
                          &w), MDP_EINVAL);
  wo.curve_public_key = E.worker.public_key;
  wo.curve_secret_key = "too short";
  CHECK_EQ(mdp_worker_new(&E.loop, "tcp://127.0.0.1:1", "echo", &wo, on_echo,
                          &w), MDP_EINVAL);
  mdp_client_options_t co;
  mdp_client_options_init(&co);
  co.zmq_context = E.ctx;
  co.curve_secret_key = E.client.secret_key;
  const char *eps[] = {"tcp://127.0.0.1:1"};
  mdp_client_t *c = NULL;
  CHECK_EQ(mdp_client_new(&E.loop, eps, 1, &co, &c), MDP_EINVAL);
  CHECK_EQ(env_close(), 0);
  CHECK_EQ(E.broker_closed, 3);
  zmq_ctx_term(ctx2);
}

/* --- the tools, as processes ----------------------------------------------- */

static int run_tool(const char *const *argv, uint64_t ms, proc_t *p) {
  if (proc_spawn(p, argv) != 0)
    return -100;
  return proc_wait(p, ms);
}

static void count_handle(uv_handle_t *h, void *arg) {
  (void)h;
  (*(int *)arg)++;
}

static int loop_handles(uv_loop_t *loop) {
  int n = 0;
  uv_walk(loop, count_handle, &n);
  return n;
}

/* "On failure nothing is left behind", even for a caller that frees its
 * loop at once: the ZAP handler adds no libuv handle before the first
 * bind, so no step of mdp_broker_new() that can fail comes after a handle
 * that only a loop turn could close.  Its handle comes with the first
 * bind, and CURVE works from there. */
static void zap_handle_only_from_bind(void) {
  CHECK_EQ(env_open(), 0); /* for its keys and allow-list */
  mdp_broker_options_t o;
  uv_loop_t loop;
  uv_loop_init(&loop);
  void *ctx = zmq_ctx_new();
  mdp_broker_t *plain = NULL, *curved = NULL;
  mdp_broker_options_init(&o);
  o.zmq_context = ctx;
  CHECK_EQ(mdp_broker_new(&loop, &o, &plain), 0);
  int plain_handles = loop_handles(&loop);
  mdp_broker_close(plain, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  curve_broker_opts(&o);
  o.zmq_context = ctx;
  CHECK_EQ(mdp_broker_new(&loop, &o, &curved), 0);
  CHECK_EQ(loop_handles(&loop), plain_handles);
  /* Closed unbound: nothing of the handler is left to wait for. */
  mdp_broker_close(curved, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(loop_handles(&loop), 0);
  /* A failure (a second handler in the context) leaves the loop closable
   * without running it. */
  CHECK_EQ(mdp_broker_new(&loop, &o, &curved), 0);
  CHECK_EQ(mdp_broker_bind(curved, "tcp://127.0.0.1:*"), 0);
  CHECK_EQ(loop_handles(&loop), plain_handles + 3); /* the handler's */
  uv_loop_t other;
  uv_loop_init(&other);
  mdp_broker_t *second = NULL;
  CHECK_EQ(mdp_broker_new(&other, &o, &second), MDP_EADDRINUSE);
  CHECK(second == NULL);
  CHECK_EQ(uv_loop_close(&other), 0);
  mdp_broker_close(curved, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(t_loop_close(&loop), 0);
  zmq_ctx_term(ctx);
  CHECK_EQ(env_close(), 0);
}

static void keygen_tool(void) {
  const char *kg = build_path("tools/mdp-keygen");
  proc_t p;
  const char *help[] = {kg, "--help", NULL};
  CHECK_EQ(run_tool(help, 5000, &p), 0);
  CHECK(strstr(proc_stdout(&p), "NAME.secret") != NULL);
  proc_cleanup(&p);
  const char *gen[] = {kg, tmp_path("tool-key"), NULL};
  CHECK_EQ(run_tool(gen, 5000, &p), 0);
  char printed[64];
  memcpy(printed, proc_stdout(&p), sizeof printed); /* a static buffer */
  printed[sizeof printed - 1] = '\0';
  proc_cleanup(&p);
  CHECK_EQ(file_mode(tmp_path("tool-key.secret")), 0600);
  CHECK_EQ(file_mode(tmp_path("tool-key.pub")), 0644);
  mdp_curve_keypair_t kp, pub;
  CHECK_EQ(mdp_curve_load(tmp_path("tool-key.secret"), &kp, NULL), 0);
  CHECK_EQ(mdp_curve_load(tmp_path("tool-key.pub"), &pub, NULL), 0);
  CHECK(strcmp(kp.public_key, pub.public_key) == 0);
  CHECK(kp.secret_key[0] != '\0');
  CHECK(strncmp(printed, kp.public_key, MDP_CURVE_KEY_LEN) == 0);
  CHECK_EQ(run_tool(gen, 5000, &p), 73); /* exists */
  CHECK(strstr(proc_stderr(&p), "--force") != NULL);
  proc_cleanup(&p);
  const char *force[] = {kg, "-f", tmp_path("tool-key"), NULL};
  CHECK_EQ(run_tool(force, 5000, &p), 0);
  proc_cleanup(&p);
  mdp_curve_keypair_t kp2;
  CHECK_EQ(mdp_curve_load(tmp_path("tool-key.secret"), &kp2, NULL), 0);
  CHECK(strcmp(kp2.secret_key, kp.secret_key) != 0);
  const char *print[] = {kg, "--print", NULL};
  CHECK_EQ(run_tool(print, 5000, &p), 0);
  CHECK_EQ(write_text(tmp_path("printed"), proc_stdout(&p)), 0);
  proc_cleanup(&p);
  CHECK_EQ(mdp_curve_load(tmp_path("printed"), &kp2, NULL), 0);
  CHECK(kp2.secret_key[0] != '\0');
  const char *none[] = {kg, NULL};
  CHECK_EQ(run_tool(none, 5000, &p), 2);
  proc_cleanup(&p);
}

typedef struct {
  proc_t *p;
  int code;
} exit_wait_t;

static int exited(void *arg) {
  exit_wait_t *e = arg;
  int status;
  if (waitpid(e->p->pid, &status, WNOHANG) != e->p->pid)
    return 0;
  e->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return 1;
}

/* Runs mdp-request while the loop (and the worker on it) runs. */
static int request_tool(const char *const *argv, proc_t *p) {
  if (proc_spawn(p, argv) != 0)
    return -100;
  exit_wait_t e = {p, -1};
  if (!t_run_until(&E.loop, exited, &e, 10000)) {
    proc_kill(p);
    return -1;
  }
  return e.code;
}

static int broker_listening(void *arg) {
  return strstr(proc_stderr(arg), "listening on") != NULL;
}

static void broker_and_request_tools(void) {
  const char *kg = build_path("tools/mdp-keygen");
  const char *br = build_path("tools/mdp-broker");
  const char *rq = build_path("tools/mdp-request");
  proc_t p;
  const char *help[] = {br, "--help", NULL};
  CHECK_EQ(run_tool(help, 5000, &p), 0);
  CHECK(strstr(proc_stdout(&p), "--curve-secret-key FILE") != NULL);
  CHECK(strstr(proc_stdout(&p), "--curve-allow DIR|FILE") != NULL);
  proc_cleanup(&p);
  const char *rhelp[] = {rq, "--help", NULL};
  CHECK_EQ(run_tool(rhelp, 5000, &p), 0);
  CHECK(strstr(proc_stdout(&p), "--curve-server-key") != NULL);
  CHECK(strstr(proc_stdout(&p), "--curve-key") != NULL);
  proc_cleanup(&p);
  /* keys: the broker's, an allowed client's and worker's, a stranger's */
  mkdir(tmp_path("tool-allow"), 0755);
  char cli[300], wrk[300];
  snprintf(cli, sizeof cli, "%s/cli", tmp_path("tool-allow"));
  snprintf(wrk, sizeof wrk, "%s/wrk", tmp_path("tool-allow"));
  const char *gens[][3] = {{kg, tmp_path("tool-broker"), NULL},
                           {kg, cli, NULL},
                           {kg, wrk, NULL},
                           {kg, tmp_path("tool-stranger"), NULL}};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(run_tool(gens[i], 5000, &p), 0);
    proc_cleanup(&p);
  }
  /* option errors: exit 2 */
  const char *lonely[] = {br, "--curve-secret-key",
                          tmp_path("tool-broker.secret"), NULL};
  CHECK_EQ(run_tool(lonely, 5000, &p), 2);
  CHECK(strstr(proc_stderr(&p), "go together") != NULL);
  proc_cleanup(&p);
  const char *pubonly[] = {br, "--curve-secret-key", tmp_path("tool-broker.pub"),
                           "--curve-allow", tmp_path("tool-allow"), NULL};
  CHECK_EQ(run_tool(pubonly, 5000, &p), 2);
  CHECK(strstr(proc_stderr(&p), "no secret-key") != NULL);
  proc_cleanup(&p);
  const char *noallow[] = {br, "--curve-secret-key",
                           tmp_path("tool-broker.secret"), "--curve-allow",
                           tmp_path("no-such"), "-b", "tcp://127.0.0.1:*", NULL};
  CHECK_EQ(run_tool(noallow, 5000, &p), 1);
  CHECK(strstr(proc_stderr(&p), "no-such") != NULL);
  proc_cleanup(&p);

  /* a CURVE broker process, an in-process CURVE worker, mdp-request */
  memset(&E, 0, sizeof E);
  uv_loop_init(&E.loop);
  E.ctx = zmq_ctx_new();
  free_tcp_endpoint(E.ctx, E.ep, sizeof E.ep);
  proc_t bp;
  const char *bargs[] = {br, "-b", E.ep, "--curve-secret-key",
                         tmp_path("tool-broker.secret"), "--curve-allow",
                         tmp_path("tool-allow"), NULL};
  CHECK_EQ(proc_spawn(&bp, bargs), 0);
  int up = t_run_until(&E.loop, broker_listening, &bp, 5000);
  if (!up)
    printf("# broker: %s\n", proc_stderr(&bp));
  CHECK(up);
  mdp_curve_keypair_t bk, wk;
  char wsec[320];
  snprintf(wsec, sizeof wsec, "%s.secret", wrk);
  CHECK_EQ(mdp_curve_load(tmp_path("tool-broker.pub"), &bk, NULL), 0);
  CHECK_EQ(mdp_curve_load(wsec, &wk, NULL), 0);
  wapp_t a = {0};
  mdp_worker_t *w = curve_worker(&bk, &wk, &a);
  CHECK(w != NULL);
  char csec[320];
  snprintf(csec, sizeof csec, "%s.secret", cli);
  const char *ok_args[] = {rq, "-b", E.ep, "-t", "5", "--curve-server-key",
                           tmp_path("tool-broker.pub"), "--curve-key", csec,
                           "echo", "hello", NULL};
  CHECK_EQ(request_tool(ok_args, &p), 0);
  CHECK(strcmp(proc_stdout(&p), "hello\n") == 0);
  proc_cleanup(&p);
  CHECK_EQ(a.requests, 1);
  /* -t 2: time for the handshake to reach the ZAP handler, whose log line
   * is checked below */
  const char *stranger[] = {rq, "-b", E.ep, "-t", "2", "-r", "0",
                            "-S", tmp_path("tool-broker.pub"),
                            "-K", tmp_path("tool-stranger.secret"),
                            "echo", "x", NULL};
  CHECK_EQ(request_tool(stranger, &p), 75);
  proc_cleanup(&p);
  const char *plain[] = {rq, "-b", E.ep, "-t", "0.3", "-r", "0", "echo", "x",
                         NULL};
  CHECK_EQ(request_tool(plain, &p), 75);
  proc_cleanup(&p);
  const char *half[] = {rq, "-b", E.ep, "-S", tmp_path("tool-broker.pub"),
                        "echo", NULL};
  CHECK_EQ(request_tool(half, &p), 2);
  proc_cleanup(&p);
  const char *pub_as_pair[] = {rq, "-b", E.ep, "-S", tmp_path("tool-broker.pub"),
                               "-K", tmp_path("tool-broker.pub"), "echo", NULL};
  CHECK_EQ(request_tool(pub_as_pair, &p), 2);
  proc_cleanup(&p);
  CHECK_EQ(a.requests, 1); /* the refused ones never reached the worker */
  kill(bp.pid, SIGTERM);
  exit_wait_t e = {&bp, -1};
  CHECK(t_run_until(&E.loop, exited, &e, 5000));
  CHECK_EQ(e.code, 0);
  CHECK(strstr(proc_stderr(&bp), "refused unknown CURVE key") != NULL);
  proc_cleanup(&bp);
  mdp_worker_close(w, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  CHECK_EQ(t_loop_close(&E.loop), 0);
  zmq_ctx_term(E.ctx);
}


/* A key in an allow-list FILE may hold '#', one of Z85's characters: the
 * broker's access names read the rest of the line as the library does, so
 * such a key is served (mdp-broker cut it at the '#', refused its READYs
 * and REQUESTs as "denied by the access list", about one key in three). */
static void allow_file_key_with_hash(void) {
  const char *br = build_path("tools/mdp-broker");
  const char *rq = build_path("tools/mdp-request");
  mdp_curve_keypair_t bk, wk, ck;
  CHECK_EQ(mdp_curve_keypair_new(&bk), 0);
  int tries = 0;
  do {
    CHECK_EQ(mdp_curve_keypair_new(&ck), 0);
  } while (strchr(ck.public_key, '#') == NULL && ++tries < 1000);
  CHECK(strchr(ck.public_key, '#') != NULL);
  do {
    CHECK_EQ(mdp_curve_keypair_new(&wk), 0);
  } while (strchr(wk.public_key, '#') == NULL && ++tries < 2000);
  CHECK(strchr(wk.public_key, '#') != NULL);
  CHECK_EQ(mdp_curve_save(tmp_path("hash-broker"), &bk, 1), 0);
  CHECK_EQ(mdp_curve_save(tmp_path("hash-client"), &ck, 1), 0);
  char text[300];
  snprintf(text, sizeof text, "# two keys with a '#'\npublic-key = %s\n"
           "public-key = %s  \n", ck.public_key, wk.public_key);
  CHECK_EQ(write_text(tmp_path("hash-allow.txt"), text), 0);
  memset(&E, 0, sizeof E);
  uv_loop_init(&E.loop);
  E.ctx = zmq_ctx_new();
  free_tcp_endpoint(E.ctx, E.ep, sizeof E.ep);
  char bsec[300], csec[300], bpub[300];
  snprintf(bsec, sizeof bsec, "%s.secret", tmp_path("hash-broker"));
  snprintf(bpub, sizeof bpub, "%s.pub", tmp_path("hash-broker"));
  snprintf(csec, sizeof csec, "%s.secret", tmp_path("hash-client"));
  proc_t bp, p;
  const char *bargs[] = {br, "-b", E.ep, "--curve-secret-key", bsec,
                         "--curve-allow", tmp_path("hash-allow.txt"), NULL};
  CHECK_EQ(proc_spawn(&bp, bargs), 0);
  CHECK(t_run_until(&E.loop, broker_listening, &bp, 5000));
  wapp_t a = {0};
  mdp_worker_t *w = curve_worker(&bk, &wk, &a);
  CHECK(w != NULL);
  const char *args[] = {rq, "-b", E.ep, "-t", "5", "--curve-server-key", bpub,
                        "--curve-key", csec, "echo", "hash", NULL};
  int rc = request_tool(args, &p);
  if (rc != 0)
    printf("# broker: %s\n", proc_stderr(&bp));
  CHECK_EQ(rc, 0);
  CHECK(strcmp(proc_stdout(&p), "hash\n") == 0);
  proc_cleanup(&p);
  CHECK(strstr(proc_stderr(&bp), "denied") == NULL);
  kill(bp.pid, SIGTERM);
  exit_wait_t e = {&bp, -1};
  CHECK(t_run_until(&E.loop, exited, &e, 5000));
  proc_cleanup(&bp);
  mdp_worker_close(w, 0, on_worker_closed);
  CHECK(t_run_until(&E.loop, w_closed, &a, 2000));
  CHECK_EQ(t_loop_close(&E.loop), 0);
  zmq_ctx_term(E.ctx);
}

/* mdp-worker --curve-server-key/--curve-key, all real processes: a CURVE
 * mdp-broker, mdp-worker with its listed pair and the broker's public key
 * answers mdp-request; the same worker given another server key is never
 * let in, so a request for its service times out and it counts none. */
static void worker_tool(void) {
  const char *kg = build_path("tools/mdp-keygen");
  const char *br = build_path("tools/mdp-broker");
  const char *rq = build_path("tools/mdp-request");
  const char *wk = build_path("tools/mdp-worker");
  proc_t p;
  const char *help[] = {wk, "--help", NULL};
  CHECK_EQ(run_tool(help, 5000, &p), 0);
  CHECK(strstr(proc_stdout(&p), "--curve-server-key FILE") != NULL);
  CHECK(strstr(proc_stdout(&p), "--curve-key FILE") != NULL);
  proc_cleanup(&p);
  mkdir(tmp_path("wt-allow"), 0755);
  char cli[300], wrk[300], csec[320], wsec[320];
  snprintf(cli, sizeof cli, "%s/cli", tmp_path("wt-allow"));
  snprintf(wrk, sizeof wrk, "%s/wrk", tmp_path("wt-allow"));
  snprintf(csec, sizeof csec, "%s.secret", cli);
  snprintf(wsec, sizeof wsec, "%s.secret", wrk);
  const char *gens[][3] = {{kg, tmp_path("wt-broker"), NULL},
                           {kg, tmp_path("wt-other"), NULL},
                           {kg, cli, NULL},
                           {kg, wrk, NULL}};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(run_tool(gens[i], 5000, &p), 0);
    proc_cleanup(&p);
  }
  /* option errors: exit 2 before any connection */
  const char *half[] = {wk, "-b", "tcp://127.0.0.1:1", "-S",
                        tmp_path("wt-broker.pub"), "--echo", "echo", NULL};
  CHECK_EQ(run_tool(half, 5000, &p), 2);
  CHECK(strstr(proc_stderr(&p), "go together") != NULL);
  proc_cleanup(&p);
  const char *pub_as_pair[] = {wk, "-b", "tcp://127.0.0.1:1", "-S",
                               tmp_path("wt-broker.pub"), "-K",
                               tmp_path("wt-broker.pub"), "--echo", "echo",
                               NULL};
  CHECK_EQ(run_tool(pub_as_pair, 5000, &p), 2);
  CHECK(strstr(proc_stderr(&p), "not a key pair") != NULL);
  proc_cleanup(&p);
  const char *missing[] = {wk, "-b", "tcp://127.0.0.1:1", "-S",
                           tmp_path("no-such.pub"), "-K", wsec, "--echo",
                           "echo", NULL};
  CHECK_EQ(run_tool(missing, 5000, &p), 2);
  CHECK(strstr(proc_stderr(&p), "no-such.pub") != NULL);
  proc_cleanup(&p);

  void *ctx = zmq_ctx_new();
  char ep[256];
  free_tcp_endpoint(ctx, ep, sizeof ep);
  zmq_ctx_term(ctx);
  proc_t bp;
  const char *bargs[] = {br, "-b", ep, "--curve-secret-key",
                         tmp_path("wt-broker.secret"), "--curve-allow",
                         tmp_path("wt-allow"), NULL};
  CHECK_EQ(proc_spawn(&bp, bargs), 0);
  uv_loop_t idle; /* nothing on it: t_run_until as a bounded wait */
  uv_loop_init(&idle);
  int up = t_run_until(&idle, broker_listening, &bp, 5000);
  CHECK_EQ(t_loop_close(&idle), 0);
  if (!up)
    printf("# broker: %s\n", proc_stderr(&bp));
  CHECK(up);

  /* the right keys: served (the broker queues the request until the
   * worker's READY arrives, so no wait for the worker first) */
  proc_t wp;
  const char *wargs[] = {wk, "-b", ep, "--curve-server-key",
                         tmp_path("wt-broker.pub"), "--curve-key", wsec,
                         "--echo", "echo", NULL};
  CHECK_EQ(proc_spawn(&wp, wargs), 0);
  const char *ok_args[] = {rq, "-b", ep, "-t", "10", "-r", "0", "-S",
                           tmp_path("wt-broker.pub"), "-K", csec, "echo",
                           "hello", NULL};
  CHECK_EQ(run_tool(ok_args, 20000, &p), 0);
  CHECK(strcmp(proc_stdout(&p), "hello\n") == 0);
  proc_cleanup(&p);
  kill(wp.pid, SIGTERM);
  CHECK_EQ(proc_wait(&wp, 10000), 0);
  CHECK(strstr(proc_stdout(&wp), "\n1 requests, 0 errors") != NULL);
  proc_cleanup(&wp);

  /* another server key: the handshake fails, the worker never registers
   * (its own service, so nothing is left from above) */
  const char *bad_args[] = {wk, "-b", ep, "-S", tmp_path("wt-other.pub"),
                            "-K", wsec, "--echo", "echo2", NULL};
  CHECK_EQ(proc_spawn(&wp, bad_args), 0);
  const char *lost_args[] = {rq, "-b", ep, "-t", "2", "-r", "0", "-S",
                             tmp_path("wt-broker.pub"), "-K", csec, "echo2",
                             "x", NULL};
  CHECK_EQ(run_tool(lost_args, 20000, &p), 75); /* timed out */
  proc_cleanup(&p);
  kill(wp.pid, SIGTERM);
  CHECK_EQ(proc_wait(&wp, 10000), 0);
  CHECK(strstr(proc_stdout(&wp), "\n0 requests, 0 errors") != NULL);
  proc_cleanup(&wp);

  kill(bp.pid, SIGTERM);
  CHECK_EQ(proc_wait(&bp, 5000), 0);
  proc_cleanup(&bp);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mdp-curve-XXXXXX");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  RUN(keygen_round_trip);
  RUN(allowed_peers_served);
  RUN(intruders_refused);
  RUN(allow_file_and_keys);
  RUN(allow_each_names_keys);
  RUN(option_errors);
  RUN(zap_handle_only_from_bind);
  RUN(keygen_tool);
  RUN(broker_and_request_tools);
  RUN(allow_file_key_with_hash);
  RUN(worker_tool);
  rm_tree(tmpdir);
  t_context_term();
  return t_done();
}
