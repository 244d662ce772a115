/* peer_libevent.c - echo with libevent bufferevents, as its book teaches it.
 *
 * An evconnlistener accepts; each connection's read callback moves its whole
 * input buffer to its output buffer (bufferevent_write_buffer moves the
 * chains, no copy) and libevent writes it out. A client that stops reading
 * pauses its own reads once OUT_HIGH bytes wait, until they drain to OUT_LOW.
 * usage: peer_libevent PORT   (listens on 127.0.0.1; SIGTERM/SIGINT stop it) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define BACKLOG 4096
#define OUT_HIGH (1024 * 1024)
#define OUT_LOW (256 * 1024)

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* The write callback is set only while reads are paused; it runs once the
 * output has drained to the low watermark. */
static void on_drained(struct bufferevent *bev, void *arg)
{
    bufferevent_setcb(bev, on_read, NULL, on_event, arg);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    if (bufferevent_write_buffer(bev, bufferevent_get_input(bev)) < 0) {
        bufferevent_free(bev);
        return;
    }
    if (evbuffer_get_length(out) >= OUT_HIGH) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW, 0);
        bufferevent_setcb(bev, on_read, on_drained, on_event, arg);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);   /* closes the socket: BEV_OPT_CLOSE_ON_FREE */
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct event_base *base = arg;
    struct bufferevent *bev;
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();

    fprintf(stderr, "peer_libevent: accept: %s\n", evutil_socket_error_to_string(err));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int parse_port(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;

    if (argc != 2 || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "usage: peer_libevent PORT\n");
        return -1;
    }
    return (int)port;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    struct event *sigint, *sigterm;
    struct evconnlistener *lev;
    struct event_base *base;
    int port = parse_port(argc, argv);

    if (port < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    base = event_base_new();
    if (base == NULL)
        return 1;
    lev = evconnlistener_new_bind(base, on_accept, base,
                                  LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
                                  LEV_OPT_CLOSE_ON_EXEC, BACKLOG,
                                  (struct sockaddr *)&sa, sizeof(sa));
    if (lev == NULL) {
        fprintf(stderr, "peer_libevent: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    evconnlistener_set_error_cb(lev, on_accept_error);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    if (sigint == NULL || sigterm == NULL || event_add(sigint, NULL) < 0 ||
        event_add(sigterm, NULL) < 0)
        return 1;
    event_base_dispatch(base);
    /* Connections still open are closed by exit; the listener and base are
     * freed so a leak checker sees only those. */
    event_free(sigint);
    event_free(sigterm);
    evconnlistener_free(lev);
    event_base_free(base);
    return 0;
}
