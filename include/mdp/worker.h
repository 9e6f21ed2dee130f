/* placeholder: being written */
#ifndef MDP_WORKER_H
#define MDP_WORKER_H
#endif
