/* placeholder: being written */
#ifndef MDP_CLIENT_H
#define MDP_CLIENT_H
#endif
