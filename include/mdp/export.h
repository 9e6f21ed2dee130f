/* libmdp: MDP_EXTERN, the mark of every public function.
 *
 * The library is built with hidden visibility: only what is declared with
 * MDP_EXTERN in these headers is exported from libmdp.so, so internal
 * functions (prefixed mdp__, as libuv's are uv__) cannot clash with a
 * program's own names.  A program that links the static library sees the
 * internals as ordinary symbols; they are not part of the API. */
#ifndef MDP_EXPORT_H
#define MDP_EXPORT_H

#if defined(_WIN32)
#if defined(MDP_BUILDING_SHARED)
#define MDP_EXTERN __declspec(dllexport)
#elif defined(MDP_USING_SHARED)
#define MDP_EXTERN __declspec(dllimport)
#else
#define MDP_EXTERN /* static */
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define MDP_EXTERN __attribute__((visibility("default")))
#else
#define MDP_EXTERN /* nothing */
#endif

#endif /* MDP_EXPORT_H */
