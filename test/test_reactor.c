/* placeholder: being written */
#include "harness.h"
static void placeholder(void) { CHECK(1); }
int main(void) { RUN(placeholder); return t_done(); }
