/* app chat and shutdown_message with 4 workers, every batch to a worker:
 * a connection's consecutive batches run on different workers. */
#define WORKERS 4
#define WORKERS_ONLY true
#define SUITE server_chat_workers
#include "chat_cases.inc"
