/* tpt_server.h - helpers for the in-process server tests: run a tp_server on
 * a thread on an ephemeral port, and blocking clients with time limits. */
#ifndef TPT_SERVER_H
#define TPT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tp_reactor.h"

struct tpt_server {
    tp_server_t *srv;
    struct tp_conf conf;
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    uint16_t port;
    int rc;                       /* what tp_server_run() returned */
    unsigned long thread;         /* pthread_t */
    bool running;
};

/* The built-in default with listener 0 on 127.0.0.1:0 and `workers`. */
void tpt_conf(struct tp_conf *conf, int workers);

/* Starts a server for conf with app on every listener; fails the test if it
 * cannot. */
struct tpt_server *tpt_start(const struct tp_conf *conf, const struct tp_app *app);

/* The same with apps[i] on listener i. */
struct tpt_server *tpt_start_apps(const struct tp_conf *conf, const struct tp_app *const *apps);

/* Servers started from now on send every message to a worker (see
 * tp_server_opts.workers_only). */
extern bool tpt_workers_only;

/* Stops (gracefully or not), joins, checks the loop returned 0, frees. */
void tpt_stop(struct tpt_server *t, bool graceful);

struct tp_stats tpt_stats(const struct tpt_server *t);

/* Waits up to ms for cond (an expression over `st`, a struct tp_stats) to
 * hold; evaluates to whether it did. */
#define tpt_wait_stats(t, ms, cond) __extension__ ({                         \
        struct tp_stats st;                                                  \
        bool ok_ = false;                                                    \
        for (int i_ = 0; i_ <= (ms) / 5; i_++) {                             \
            st = tpt_stats(t);                                               \
            if ((cond)) { ok_ = true; break; }                               \
            usleep(5000);                                                    \
        }                                                                    \
        ok_; })

/* A blocking TCP connection to 127.0.0.1:port (or ::1 if v6). */
int tpt_dial(uint16_t port);
int tpt_dial6(uint16_t port);

/* The same with a receive buffer of about rcvbuf bytes, set before connect
 * so the window stays small (replies pile up on the server's side). */
int tpt_dial_small(uint16_t port, int rcvbuf);

/* A numbered stream: line i is i in 63 decimal digits and '\n' (64 bytes),
 * so any prefix of it can be checked. */
#define TPT_LINE 64
/* Writes the stream's bytes [off, off + n) to buf. */
void tpt_stream(char *buf, uint64_t off, size_t n);
/* The offset of the first byte of buf[0..n) that differs from the stream,
 * or n if none does. */
size_t tpt_stream_check(const char *buf, size_t n);

/* A thread that writes the stream to fd without ever reading, as fast as the
 * socket takes it (non-blocking), until tpt_flood_stop(), `limit` bytes or
 * `ms` milliseconds. */
struct tpt_flood {
    int fd;
    uint64_t limit;
    int ms;
    uint64_t sent;                /* the flood thread writes; read after stop */
    int err;                      /* errno that ended it, 0 if none */
    int stop;                     /* atomic */
    unsigned long thread;
};
void tpt_flood_start(struct tpt_flood *f, int fd, uint64_t limit, int ms);
/* Stops and joins the thread; returns the bytes it sent. */
uint64_t tpt_flood_stop(struct tpt_flood *f);

/* Reads until EOF within ms into buf (cap bytes; more is an error). Returns
 * bytes read; *reset tells whether it ended with ECONNRESET, -1 if the peer
 * did not close in time. */
ssize_t tpt_read_all(int fd, char *buf, size_t cap, int ms, bool *reset);

/* Writes all of buf or fails the test. */
void tpt_write_all(int fd, const void *buf, size_t len);

/* Reads until len bytes, EOF, an error or ms passed. Returns bytes read. */
size_t tpt_read_n(int fd, void *buf, size_t len, int ms);

/* Reads until EOF or reset within ms, discarding up to cap bytes into buf
 * (may be NULL). Returns bytes read, or -1 if the peer did not close in time. */
ssize_t tpt_read_to_eof(int fd, void *buf, size_t cap, int ms);

/* Bytes of resident memory of this process. */
size_t tpt_rss(void);

/* Seconds of CPU this process used (all threads). */
double tpt_cpu_seconds(void);

/* Raises the soft open-file limit to the hard limit. */
void tpt_raise_fd_limit(void);

/* Apps for the tests. slow: sleeps 2 ms per message, then echoes. chat: sends
 * each message to every other connection of the listener. count: replies
 * "<n>:<message>" where n numbers the connection in open order, and counts
 * open/close calls (tpt_count_*). empty: makes a zero-byte reply, send and
 * broadcast, then echoes. */
extern const struct tp_app tpt_app_slow, tpt_app_chat, tpt_app_count, tpt_app_empty;
int tpt_count_open(void), tpt_count_close(void);

#endif /* TPT_SERVER_H */
