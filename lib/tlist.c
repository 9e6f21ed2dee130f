/* Timeout lists: see tlist.h. */
#include "tlist.h"

uint64_t mdp__tlist_expire(mdp__tlist_t *list, uint64_t now) {
  mdp__list_t *head;
  while ((head = mdp__list_head(&list->nodes)) != NULL) {
    mdp__tnode_t *node = mdp__container_of(head, mdp__tnode_t, link);
    if (node->stamp + list->duration > now + list->early)
      return node->stamp + list->duration - now + list->late;
    mdp__list_remove(head);
    list->cb(list, node);
    if (list->stop && *list->stop)
      return MDP__TLIST_NONE;
  }
  return MDP__TLIST_NONE;
}

static int head_due(const mdp__tlist_t *list, uint64_t now) {
  mdp__list_t *head = mdp__list_head(&list->nodes);
  if (head == NULL)
    return 0;
  const mdp__tnode_t *node = mdp__container_of(head, mdp__tnode_t, link);
  return node->stamp + list->duration <= now + list->early;
}

static void on_timer(uv_timer_t *timer) {
  mdp__tlist_t *list = mdp__container_of(timer, mdp__tlist_t, timer);
  list->armed = 0; /* a one-shot timer: libuv stopped it */
  uint64_t now = uv_now(timer->loop);
  if (list->drain != NULL && head_due(list, now)) {
    list->drain(list);
    if (list->closing || (list->stop && *list->stop))
      return;
    now = uv_now(timer->loop); /* a callback may have updated it */
  }
  uint64_t delay = mdp__tlist_expire(list, now);
  if (delay != MDP__TLIST_NONE && !list->closing &&
      uv_timer_start(timer, on_timer, delay, 0) == 0)
    list->armed = 1;
}

int mdp__tlist_init(uv_loop_t *loop, mdp__tlist_t *list, uint64_t duration,
                   mdp__tlist_cb cb) {
  mdp__list_init(&list->nodes);
  list->duration = duration;
  list->cb = cb;
  list->stop = NULL;
  list->early = list->late = 0;
  list->drain = NULL;
  list->armed = list->closing = 0;
  return uv_timer_init(loop, &list->timer);
}

void mdp__tlist_arm(mdp__tlist_t *list) {
  if (uv_timer_start(&list->timer, on_timer, list->duration, 0) == 0)
    list->armed = 1;
}

void mdp__tlist_close(mdp__tlist_t *list, uv_close_cb close_cb) {
  mdp__list_t *head;
  while ((head = mdp__list_head(&list->nodes)) != NULL)
    mdp__list_remove(head);
  uv_timer_stop(&list->timer);
  list->armed = 0;
  list->closing = 1;
  uv_close((uv_handle_t *)&list->timer, close_cb);
}
