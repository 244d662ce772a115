/* The in-process server with workers 0: apps run on the reactor thread. */
#define WORKERS 0
#define SUITE server_inline
#include "server_cases.inc"
