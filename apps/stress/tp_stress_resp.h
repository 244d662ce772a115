/* tp_stress_resp.h - the little of RESP2 (the Redis protocol) that pub/sub
 * load needs: commands written as arrays of bulk strings, and replies cut
 * from a byte stream: simple strings, errors, integers, bulk strings (nil
 * too) and one-level arrays of those (the pub/sub pushes "message" and
 * "subscribe" are three-element arrays). The parser is picohttpparser's
 * kind: stateless, it is given everything not yet consumed and says how
 * much one whole reply took, or that it needs more; the caller keeps a
 * partial reply's bytes until the rest arrives. */
#ifndef TP_STRESS_RESP_H
#define TP_STRESS_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TP_STRESS_RESP_MAX_ITEMS 4      /* array elements kept */

enum tp_stress_resp_type {
    TP_STRESS_RESP_STATUS,   /* +OK */
    TP_STRESS_RESP_ERROR,    /* -ERR ... */
    TP_STRESS_RESP_INT,      /* :N */
    TP_STRESS_RESP_BULK,     /* $N then N bytes */
    TP_STRESS_RESP_NIL,      /* $-1 or *-1 */
    TP_STRESS_RESP_ARRAY,    /* *N then N of the above */
};

/* Plain struct: one value; str points into the parsed bytes. */
struct tp_stress_resp_item {
    enum tp_stress_resp_type type;
    int64_t num;             /* INT: the value; ARRAY: the element count */
    const char *str;         /* STATUS, ERROR, BULK: the text, not terminated */
    size_t len;
};

/* Plain struct: a whole reply; for an array, its elements in item[]. */
struct tp_stress_resp_reply {
    struct tp_stress_resp_item top;
    unsigned nitems;
    struct tp_stress_resp_item item[TP_STRESS_RESP_MAX_ITEMS];
};

/* Cuts one reply off the len bytes at data. Returns the bytes it took (> 0)
 * with *r filled (pointing into data), 0 if the reply is not whole yet,
 * -EPROTO for bytes that are not RESP2 (or a nested array, or more than
 * TP_STRESS_RESP_MAX_ITEMS elements), -EMSGSIZE for a bulk string longer
 * than max_bulk or a line longer than 512 bytes. Any thread. */
ssize_t tp_stress_resp_parse(const char *data, size_t len, size_t max_bulk,
                             struct tp_stress_resp_reply *r);

/* Writes the command argv[0..argc) (lens[i] bytes each) as a RESP array of
 * bulk strings into dst (cap bytes). Returns its length, which is more than
 * cap (and nothing whole written) if it did not fit. */
size_t tp_stress_resp_command(char *dst, size_t cap, unsigned argc, const char *const *argv,
                              const size_t *lens);

#endif /* TP_STRESS_RESP_H */
