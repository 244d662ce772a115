/* tp_stress_msg.h - the bytes of each message the stress tool sends.
 * Message seq of connection conn is "SEQ:CONN " in hex written least
 * significant digit first, then letters that shift with seq, then '\n' (cut
 * short to fit small sizes), so consecutive messages differ and a reply out
 * of order or from another connection shows. */
#ifndef TP_STRESS_MSG_H
#define TP_STRESS_MSG_H

#include <stdint.h>

#define TP_STRESS_MSG_MIN 2u              /* one byte and the '\n' */
#define TP_STRESS_MSG_MAX (16u << 20)

/* Writes the size bytes (TP_STRESS_MSG_MIN..TP_STRESS_MSG_MAX) of message seq
 * of connection conn into dst: printable ASCII, one '\n', at the end.
 * Never allocates; any thread. */
void tp_stress_msg_fill(char *dst, uint32_t size, uint32_t conn, uint64_t seq);

#endif /* TP_STRESS_MSG_H */
