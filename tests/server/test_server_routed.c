/* The in-process server with 2 worker threads as configured by default:
 * cheap work runs on the reactor, costly work (the slow app) at the workers,
 * both at once. */
#define WORKERS 2
#define WORKERS_ONLY false
#define SUITE server_routed
#include "server_cases.inc"
