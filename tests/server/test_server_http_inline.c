/* app http on the in-process server with workers 0: apps run on the reactor
 * thread. */
#define WORKERS 0
#define WORKERS_ONLY false
#define SUITE server_http_inline
#include "http_cases.inc"
