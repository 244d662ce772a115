/* app http on the in-process server with 2 worker threads, every batch
 * handed to a worker: the cross-thread path, replies built off the reactor. */
#define WORKERS 2
#define WORKERS_ONLY true
#define SUITE server_http_workers
#include "http_cases.inc"
