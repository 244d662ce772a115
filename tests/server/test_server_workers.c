/* The in-process server with 8 worker threads, every message handed to a
 * worker: the cross-thread path, whatever the app costs. */
#define WORKERS 8
#define WORKERS_ONLY true
#define SUITE server_workers
#include "server_cases.inc"
