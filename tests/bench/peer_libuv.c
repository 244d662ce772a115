/* peer_libuv.c - echo with libuv, as its guide teaches it.
 *
 * The alloc callback hands libuv a fresh buffer for each read; the read
 * callback gives that same buffer to uv_write, and the write callback frees
 * it. A client that stops reading pauses its own reads once OUT_HIGH bytes
 * are queued, until they drain to OUT_LOW.
 * usage: peer_libuv PORT   (listens on 127.0.0.1; SIGTERM/SIGINT stop it) */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <uv.h>

#define BACKLOG 4096
#define OUT_HIGH (1024 * 1024)
#define OUT_LOW (256 * 1024)

struct conn {
    uv_tcp_t tcp;    /* first, so a uv_stream_t * is a struct conn * */
    bool paused;     /* reads stopped until the write queue drains */
};

static void free_data(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, free_data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;   /* 0: libuv reports UV_ENOBUFS */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = (struct conn *)req->handle;

    free(req->data);
    free(req);
    if (status < 0) {   /* UV_ECANCELED when closing: c lives until free_data */
        conn_close(c);
        return;
    }
    if (c->paused && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= OUT_LOW) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;
    uv_write_t *req;
    uv_buf_t out;

    if (nread <= 0) {
        free(buf->base);
        if (nread < 0)   /* UV_EOF or an error */
            conn_close(c);
        return;
    }
    req = malloc(sizeof(*req));
    out = uv_buf_init(buf->base, (unsigned)nread);
    if (req == NULL || uv_write(req, s, &out, 1, on_write) < 0) {
        free(req);
        free(buf->base);
        conn_close(c);
        return;
    }
    req->data = buf->base;   /* on_write frees it */
    if (uv_stream_get_write_queue_size(s) >= OUT_HIGH) {
        c->paused = true;
        uv_read_stop(s);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;

    if (status < 0) {
        fprintf(stderr, "peer_libuv: accept: %s\n", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || uv_tcp_init(server->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Handles with data are connections and own it; the rest are static. */
static void close_one(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h->data != NULL ? free_data : NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    uv_walk(sig->loop, close_one, NULL);
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
        fprintf(stderr, "usage: peer_libuv PORT\n");
        return -1;
    }
    return (int)port;
}

int main(int argc, char **argv)
{
    static uv_tcp_t server;
    static uv_signal_t sigint, sigterm;
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in sa;
    int port = parse_port(argc, argv), err;

    if (port < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(loop, &server);
    if ((err = uv_tcp_bind(&server, (struct sockaddr *)&sa, 0)) < 0 ||
        (err = uv_listen((uv_stream_t *)&server, BACKLOG, on_connection)) < 0) {
        fprintf(stderr, "peer_libuv: port %d: %s\n", port, uv_strerror(err));
        return 1;
    }
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
