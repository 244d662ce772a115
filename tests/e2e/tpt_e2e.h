/* tpt_e2e.h - what the end-to-end tests of the built binaries share. */
#ifndef TPT_E2E_H
#define TPT_E2E_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
long long tpt_now_ms(void);

/* A loopback TCP port nothing listens on now (bound, read, closed). */
uint16_t tpt_free_port(void);

/* A NOTIFY_SOCKET for the server under test: a datagram socket bound at
 * dir/notify.sock, its path in path. Returns the fd. */
int tpt_notify_socket(const char *dir, char *path, size_t cap);

#endif /* TPT_E2E_H */
