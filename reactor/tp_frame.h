/* tp_frame.h - bytes -> messages, per listener framing.
 *
 *   line    a message ends with '\n' (kept on the wire, not in the payload)
 *   length  a 4-byte big-endian payload length, then the payload
 *   raw     whatever one read returned is one message (at most max bytes)
 *   http    an HTTP/1.x request head, through its empty line ('\n' or
 *           "\r\n" line ends); an empty line before a head is a message of
 *           its own. Only the head: an app that takes a body must read it
 *           some other way (app http takes none). A head with no end in its
 *           first max bytes is cut at max + 1 bytes, once they are in, so
 *           the app can answer it (431) rather than the connection being
 *           closed unanswered; never -EMSGSIZE.
 *
 * max is the largest payload a message may have (http: the whole head). */
#ifndef TP_FRAME_H
#define TP_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tp_conf.h"

/* One message found in a buffer: payload at [off, off + len). */
struct tp_frame {
    size_t off;
    size_t len;
};

/* Finds the message at the start of p[0..n). Returns the bytes it takes on
 * the wire (> 0) and fills *out, 0 if more bytes are needed, or -EMSGSIZE if
 * its payload is (or will be) longer than max. Any thread. */
ssize_t tp_frame_next(enum tp_framing f, const char *p, size_t n, uint32_t max,
                      struct tp_frame *out);

/* Where the reactor is in a connection's read buffer: bytes before cut are
 * whole messages; after it, `scanned` bytes are known to hold no message end
 * (so a long line is not searched again after every read). */
struct tp_frame_cursor {
    uint32_t cut;
    uint32_t scanned;
};

/* Moves cur->cut past every whole message in p[0..n) (the bytes before
 * cur->cut were cut before). Line framing costs one memrchr over the new
 * bytes, however many lines they hold. Returns 0, or -EMSGSIZE if a message
 * is longer than max (cut then stops before it). Any thread. */
int tp_frame_advance(enum tp_framing f, const char *p, size_t n, uint32_t max,
                     struct tp_frame_cursor *cur);

/* How many whole messages p[0..n) holds (raw: how many pieces of at most max
 * bytes). Line framing counts the '\n's, 16 bytes a step. Any thread. */
size_t tp_frame_count(enum tp_framing f, const char *p, size_t n, uint32_t max);

/* The wire bytes that go before and after a payload of len bytes: writes up
 * to 4 bytes to head and 1 to tail, and sets their lengths. */
void tp_frame_wrap(enum tp_framing f, size_t len, char head[4], size_t *head_len,
                   char *tail, size_t *tail_len);

/* The longest a wrapped message can be beyond its payload. */
#define TP_FRAME_OVERHEAD 4

#endif /* TP_FRAME_H */
