/* A client's broker endpoints: which one a request goes to, and which are
 * put aside after a timeout (lib/client_spread.h). */
#include <stdlib.h>
#include <string.h>

#include "client_spread.h"
#include "mdp/error.h"

int mdp__spread_init(mdp__spread_t *s, const char *const *urls, size_t n,
                     mdp_spread_t policy, uint64_t backoff_ms,
                     uint64_t backoff_max_ms) {
  memset(s, 0, sizeof *s);
  s->eps = calloc(n, sizeof *s->eps);
  if (s->eps == NULL)
    return MDP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(urls[i]) + 1;
    s->eps[i].url = malloc(len);
    if (s->eps[i].url == NULL) {
      s->n = i;
      mdp__spread_free(s);
      return MDP_ENOMEM;
    }
    memcpy(s->eps[i].url, urls[i], len);
    mdp__list_init(&s->eps[i].idle);
    s->eps[i].state = MDP__EP_LIVE;
  }
  s->n = n;
  s->live = n;
  s->policy = policy;
  s->backoff_ms = backoff_ms;
  s->backoff_max_ms = backoff_max_ms;
  return 0;
}

void mdp__spread_free(mdp__spread_t *s) {
  for (size_t i = 0; s->eps != NULL && i < s->n; i++)
    free(s->eps[i].url);
  free(s->eps);
  s->eps = NULL;
  s->n = 0;
}

int mdp__spread_acceptable(const mdp__spread_t *s, size_t i, size_t exclude) {
  if (s->n == 1)
    return 1;
  if (i == exclude)
    return 0;
  if (s->eps[i].state == MDP__EP_LIVE)
    return 1;
  /* Aside: acceptable only if nothing but `exclude` is live. */
  size_t live_others = s->live;
  if (exclude < s->n && s->eps[exclude].state == MDP__EP_LIVE)
    live_others--;
  return live_others == 0;
}

size_t mdp__spread_pick(const mdp__spread_t *s, size_t exclude,
                        const unsigned char *only) {
  size_t best = MDP__EP_NONE;
  for (size_t k = 0; k < s->n; k++) {
    /* FAILOVER looks from the top of the list, the others in turn. */
    size_t i = s->policy == MDP_SPREAD_FAILOVER ? k : (s->cursor + k) % s->n;
    if ((only != NULL && !only[i]) || !mdp__spread_acceptable(s, i, exclude))
      continue;
    if (s->policy != MDP_SPREAD_FEWEST)
      return i;
    if (best == MDP__EP_NONE ||
        s->eps[i].stats.outstanding < s->eps[best].stats.outstanding)
      best = i;
  }
  /* Without `only`, some endpoint is always acceptable. */
  return best == MDP__EP_NONE && only == NULL ? 0 : best;
}

void mdp__spread_sent(mdp__spread_t *s, size_t i) {
  s->eps[i].stats.sent++;
  s->eps[i].stats.outstanding++;
  s->cursor = (i + 1) % s->n;
}

void mdp__spread_unsent(mdp__spread_t *s, size_t i) {
  if (s->eps[i].stats.outstanding > 0)
    s->eps[i].stats.outstanding--;
}

static void put_aside(mdp__spread_t *s, mdp__client_endpoint_t *ep,
                      uint64_t now) {
  uint64_t b = ep->backoff == 0 ? s->backoff_ms : ep->backoff * 2;
  if (b > s->backoff_max_ms || b < ep->backoff) /* also on overflow */
    b = s->backoff_max_ms;
  ep->backoff = b;
  ep->until = b >= UINT64_MAX - now ? UINT64_MAX : now + b;
  if (ep->state == MDP__EP_LIVE)
    s->live--;
  ep->state = MDP__EP_AVOIDED;
  ep->probe = NULL;
}

int mdp__spread_failed(mdp__spread_t *s, size_t i, uint64_t now) {
  mdp__client_endpoint_t *ep = &s->eps[i];
  ep->stats.timeouts++;
  if (s->n == 1 || s->backoff_ms == 0 || ep->state != MDP__EP_LIVE)
    return 0;
  put_aside(s, ep, now);
  return 1;
}

void mdp__spread_probe_failed(mdp__spread_t *s, size_t i, uint64_t now) {
  put_aside(s, &s->eps[i], now);
}

void mdp__spread_probing(mdp__spread_t *s, size_t i, uint64_t deadline) {
  mdp__client_endpoint_t *ep = &s->eps[i];
  if (ep->state == MDP__EP_LIVE)
    s->live--;
  ep->state = MDP__EP_PROBING;
  ep->until = deadline;
}

static void make_live(mdp__spread_t *s, mdp__client_endpoint_t *ep) {
  if (ep->state != MDP__EP_LIVE)
    s->live++;
  ep->state = MDP__EP_LIVE;
  ep->until = 0;
  ep->probe = NULL;
}

void mdp__spread_answered(mdp__spread_t *s, size_t i) {
  s->eps[i].backoff = 0;
  make_live(s, &s->eps[i]);
}

void mdp__spread_return(mdp__spread_t *s, size_t i) {
  make_live(s, &s->eps[i]);
}

uint64_t mdp__spread_due(const mdp__spread_t *s) {
  uint64_t due = 0;
  for (size_t i = 0; i < s->n; i++)
    if (s->eps[i].state != MDP__EP_LIVE && s->eps[i].until != UINT64_MAX &&
        (due == 0 || s->eps[i].until < due))
      due = s->eps[i].until;
  return due;
}
