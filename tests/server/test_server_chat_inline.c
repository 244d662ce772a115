/* app chat and shutdown_message with workers 0: everything on the reactor. */
#define WORKERS 0
#define WORKERS_ONLY false
#define SUITE server_chat_inline
#include "chat_cases.inc"
