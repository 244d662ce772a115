/* The in-process server with 8 worker threads. */
#define WORKERS 8
#define SUITE server_workers
#include "server_cases.inc"
