/* ws.c: sbot.ws, a WebSocket client (RFC 6455) on wslay over a TCP socket,
 * with TLS through OpenSSL.
 *
 *   local ws = require "sbot.ws"
 *   local c <close> = assert(ws.connect("wss://nas/api/current",
 *                              {tls = {ca_file = "ca.pem"}, timeout = 10}))
 *   c:send('{"jsonrpc":"2.0","id":1,"method":"core.ping"}')
 *   local text, err, code = c:recv(5)
 *
 * Every wait (connect, TLS handshake, HTTP upgrade, send, recv) is bounded by
 * a timeout. TLS verification is on by default; a CA file or a pinned
 * public-key SHA-256 handles self-signed servers, and `insecure = true` must
 * be asked for (and is logged). The connection object owns every resource;
 * it is created closed before anything is acquired, so a failure at any
 * step leaks nothing, and __gc/__close share one release function. */
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define WS_CONN_MT "sbot.ws.conn"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HEADER_BYTES 16384
#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_MAX_MESSAGE (64u * 1024u * 1024u)

struct msg {
    struct msg *next;
    size_t len;
    int binary;
    char data[];
};

struct conn {
    int fd;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    wslay_event_context_ptr ctx;
    char *pending; /* bytes read past the HTTP response, for wslay */
    size_t pending_len, pending_off;
    struct msg *head, *tail;
    struct msg *asm_msg; /* the data message being received, frame by frame */
    size_t asm_cap;      /* bytes its data[] can hold */
    int in_data_frame;   /* the frame being received belongs to asm_msg */
    int closed_by_peer;
    int close_status;
    int io_error; /* last transport error (errno or -1 for TLS) */
    int tls_starved; /* the last TLS read wanted bytes from the socket: what
                      * OpenSSL still holds (read-ahead) is at most a partial
                      * record, which only the socket can complete */
    char io_msg[160];
    char url[512];
    size_t max_message;
    char closed_why[900]; /* why a failed connection was released */
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- release ------------------------------------------------------------- */

static void conn_release(struct conn *c)
{
    if (c->ctx) {
        wslay_event_context_free(c->ctx);
        c->ctx = NULL;
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->ssl_ctx) {
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    while (c->head) {
        struct msg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    free(c->asm_msg);
    c->asm_msg = NULL;
    c->asm_cap = 0;
}

/* ---- transport: plain or TLS, non-blocking --------------------------------- */

/* Wait until fd is ready for events or the deadline passes.
 * 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - now_mono();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int ms = left > 3600.0 ? 3600000 : (int)(left * 1000.0) + 1; /* int-safe slices */
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 1;
        if (r == 0)
            continue;
        if (errno != EINTR)
            return -1;
    }
}

enum { IO_OK = 0, IO_WANT_READ, IO_WANT_WRITE, IO_EOF, IO_ERR };

/* OpenSSL's socket BIO writes with write(), not send(MSG_NOSIGNAL): on a
 * connection the peer has dropped that raises SIGPIPE, which would kill the
 * process. So TLS runs over a socket BIO of our own that sends with
 * MSG_NOSIGNAL (and otherwise behaves as OpenSSL's: retry flags on EAGAIN,
 * BIO_eof after an orderly close). It used to be a signal-mask guard around
 * every SSL call: four system calls each, most of the calls a TrueNAS
 * client made. */
struct nosig_bio {
    int fd;
    int eof;
};

static int retriable(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == EINPROGRESS; }

static int nosig_write(BIO *b, const char *buf, int len)
{
    struct nosig_bio *nb = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(nb->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && retriable(errno))
        BIO_set_retry_write(b);
    return (int)n;
}

static int nosig_read(BIO *b, char *buf, int len)
{
    struct nosig_bio *nb = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!buf)
        return 0;
    ssize_t n = recv(nb->fd, buf, (size_t)len, 0);
    if (n < 0 && retriable(errno))
        BIO_set_retry_read(b);
    else if (n == 0)
        nb->eof = 1;
    return (int)n;
}

static int nosig_puts(BIO *b, const char *s) { return nosig_write(b, s, (int)strlen(s)); }

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct nosig_bio *nb = BIO_get_data(b);
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return nb && nb->eof;
    case BIO_C_GET_FD:
        if (!nb)
            return -1;
        if (ptr)
            *(int *)ptr = nb->fd;
        return nb->fd;
    default:
        return 0;
    }
}

static int nosig_destroy(BIO *b)
{
    free(BIO_get_data(b)); /* the socket is conn_release's to close */
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static BIO_METHOD *nosig_method;
static void nosig_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "sbot socket (MSG_NOSIGNAL)");
    if (m && BIO_meth_set_write(m, nosig_write) && BIO_meth_set_read(m, nosig_read) &&
        BIO_meth_set_puts(m, nosig_puts) && BIO_meth_set_ctrl(m, nosig_ctrl) &&
        BIO_meth_set_destroy(m, nosig_destroy))
        nosig_method = m;
    else if (m)
        BIO_meth_free(m);
}

/* A BIO over the connected socket fd, or NULL (out of memory). */
static BIO *nosig_bio_new(int fd)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, nosig_method_init);
    if (!nosig_method)
        return NULL;
    struct nosig_bio *nb = calloc(1, sizeof *nb);
    BIO *b = nb ? BIO_new(nosig_method) : NULL;
    if (!b) {
        free(nb);
        return NULL;
    }
    nb->fd = fd;
    BIO_set_data(b, nb);
    BIO_set_init(b, 1);
    return b;
}

static void set_io_error(struct conn *c, const char *what)
{
    unsigned long e = ERR_get_error();
    if (e) {
        char buf[120];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(c->io_msg, sizeof c->io_msg, "%s: %s", what, buf);
        ERR_clear_error();
    } else {
        snprintf(c->io_msg, sizeof c->io_msg, "%s: %s", what, errno ? strerror(errno) : "connection lost");
    }
}

static int tr_read(struct conn *c, void *buf, size_t len, size_t *got)
{
    *got = 0;
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
        /* A record at a time, but what read-ahead holds already comes in the
         * same call: a peer sending tiny records (libmicrohttpd's TLS relay
         * of upgraded connections, 4 bytes a record) must not cost a wslay
         * callback round per record. */
        size_t total = n > 0 ? (size_t)n : 0;
        while (n > 0 && total < len && SSL_has_pending(c->ssl)) {
            size_t want = len - total;
            n = SSL_read(c->ssl, (char *)buf + total, (int)(want > 1 << 30 ? 1 << 30 : want));
            if (n > 0)
                total += (size_t)n;
        }
        c->tls_starved = 0;
        if (total > 0) {
            ERR_clear_error(); /* a WANT_READ after some data: the data first */
            *got = total;
            return IO_OK;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            c->tls_starved = 1;
            return IO_WANT_READ;
        }
        if (e == SSL_ERROR_WANT_WRITE)
            return IO_WANT_WRITE;
        if (e == SSL_ERROR_ZERO_RETURN)
            return IO_EOF;
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
            return IO_EOF;
        set_io_error(c, "TLS read");
        return IO_ERR;
    }
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n > 0) {
        *got = (size_t)n;
        return IO_OK;
    }
    if (n == 0)
        return IO_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_WANT_READ;
    set_io_error(c, "recv");
    return IO_ERR;
}

static int tr_write(struct conn *c, const void *buf, size_t len, size_t *sent)
{
    *sent = 0;
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
        if (n > 0) {
            *sent = (size_t)n;
            return IO_OK;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return IO_WANT_READ;
        if (e == SSL_ERROR_WANT_WRITE)
            return IO_WANT_WRITE;
        set_io_error(c, "TLS write");
        return IO_ERR;
    }
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
        *sent = (size_t)n;
        return IO_OK;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_WANT_WRITE;
    set_io_error(c, "send");
    return IO_ERR;
}

/* Write everything before the deadline. 0 ok, -1 error (c->io_msg), -2 timeout. */
static int write_all(struct conn *c, const char *buf, size_t len, double deadline)
{
    size_t off = 0;
    while (off < len) {
        size_t n;
        int r = tr_write(c, buf + off, len - off, &n);
        if (r == IO_OK) {
            off += n;
            continue;
        }
        if (r == IO_ERR)
            return -1;
        int w = wait_fd(c->fd, r == IO_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w == 0)
            return -2;
        if (w < 0) {
            set_io_error(c, "poll");
            return -1;
        }
    }
    return 0;
}

/* ---- wslay callbacks --------------------------------------------------------- */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct conn *c = user;
    if (c->pending && c->pending_off < c->pending_len) {
        size_t n = c->pending_len - c->pending_off;
        if (n > len)
            n = len;
        memcpy(buf, c->pending + c->pending_off, n);
        c->pending_off += n;
        return (ssize_t)n;
    }
    size_t got;
    int r = tr_read(c, buf, len, &got);
    if (r == IO_OK)
        return (ssize_t)got;
    if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r == IO_EOF) {
        c->closed_by_peer = 1;
        snprintf(c->io_msg, sizeof c->io_msg, "connection closed by the server");
    }
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    struct conn *c = user;
    size_t sent;
    int r = tr_write(c, data, len, &sent);
    if (r == IO_OK)
        return (ssize_t)sent;
    if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int cb_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)user;
    if (RAND_bytes(buf, (int)len) != 1) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

/* Data messages are received without wslay's buffering (it kept every
 * frame's payload, then a flattened copy, then ours: three copies of a big
 * message). Each frame's payload goes straight into asm_msg, sized from the
 * frame header; control frames (ping, pong, close) are wslay's. */
static void fail_receive(wslay_event_context_ptr ctx, struct conn *c, uint16_t status)
{
    free(c->asm_msg);
    c->asm_msg = NULL;
    c->asm_cap = 0;
    c->in_data_frame = 0;
    wslay_event_queue_close(ctx, status, NULL, 0);
    wslay_event_shutdown_read(ctx);
}

static void cb_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    struct conn *c = user;
    c->in_data_frame = 0;
    if (arg->opcode >= 8) /* control frame */
        return;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) { /* a new message */
        free(c->asm_msg);
        c->asm_msg = NULL;
        c->asm_cap = 0;
    } else if (!c->asm_msg) {
        return; /* wslay refuses a continuation without a message */
    }
    size_t have = c->asm_msg ? c->asm_msg->len : 0;
    if (arg->payload_length > c->max_message - have) { /* also a fragmented one */
        fail_receive(ctx, c, WSLAY_CODE_MESSAGE_TOO_BIG);
        return;
    }
    size_t need = have + (size_t)arg->payload_length;
    if (!c->asm_msg || need > c->asm_cap) {
        size_t cap = need;
        if (c->asm_msg && cap < 2 * c->asm_cap && 2 * c->asm_cap <= c->max_message)
            cap = 2 * c->asm_cap; /* many small fragments: no quadratic copying */
        struct msg *m = realloc(c->asm_msg, sizeof *m + cap + 1);
        if (!m) {
            c->io_error = ENOMEM;
            snprintf(c->io_msg, sizeof c->io_msg, "out of memory for a %zu-byte message", need);
            fail_receive(ctx, c, WSLAY_CODE_INTERNAL_SERVER_ERROR);
            return;
        }
        if (!c->asm_msg) {
            m->next = NULL;
            m->len = 0;
            m->binary = arg->opcode == WSLAY_BINARY_FRAME;
        }
        c->asm_msg = m;
        c->asm_cap = cap;
    }
    c->in_data_frame = 1;
}

static void cb_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user)
{
    (void)ctx;
    struct conn *c = user;
    if (!c->in_data_frame || !c->asm_msg || arg->data_length == 0)
        return; /* an empty payload may come with no buffer: never memcpy from NULL */
    if (arg->data_length > c->asm_cap - c->asm_msg->len)
        return; /* more than the header announced: wslay does not let that happen */
    memcpy(c->asm_msg->data + c->asm_msg->len, arg->data, arg->data_length);
    c->asm_msg->len += arg->data_length;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    (void)ctx;
    struct conn *c = user;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        c->closed_by_peer = 1;
        c->close_status = arg->status_code;
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return; /* ping/pong: wslay answers pings itself */
    struct msg *m = c->asm_msg;
    if (!m)
        return;
    c->asm_msg = NULL;
    c->asm_cap = 0;
    c->in_data_frame = 0;
    m->data[m->len] = '\0';
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
}

static const struct wslay_event_callbacks callbacks = {cb_recv,        cb_send,        cb_genmask,
                                                       cb_frame_start, cb_frame_chunk, NULL,
                                                       cb_msg};

/* Send what wslay has queued. 0 ok, -1 error, -2 timeout. */
static int flush(struct conn *c, double deadline)
{
    while (wslay_event_want_write(c->ctx)) {
        if (wslay_event_send(c->ctx) != 0) {
            if (!c->io_msg[0])
                snprintf(c->io_msg, sizeof c->io_msg, "websocket send failed");
            return -1;
        }
        if (!wslay_event_want_write(c->ctx))
            break;
        int w = wait_fd(c->fd, POLLOUT, deadline);
        if (w == 0)
            return -2;
        if (w < 0) {
            set_io_error(c, "poll");
            return -1;
        }
    }
    return 0;
}

/* ---- URL, TLS options, connect ------------------------------------------------- */

struct url {
    int tls;
    char host[256];
    char port[8];
    char path[1024];
};

static int parse_url(const char *s, struct url *u, char *err, size_t errlen)
{
    const char *p;
    if (strncasecmp(s, "ws://", 5) == 0) {
        u->tls = 0;
        p = s + 5;
    } else if (strncasecmp(s, "wss://", 6) == 0) {
        u->tls = 1;
        p = s + 6;
    } else {
        snprintf(err, errlen, "ws.connect: URL '%s' must start with ws:// or wss://", s);
        return -1;
    }
    /* user:password@ is not supported, and the URL is not echoed: it may hold a secret */
    size_t authority = strcspn(p, "/?#");
    if (memchr(p, '@', authority)) {
        snprintf(err, errlen, "ws.connect: credentials in the URL (user@host) are not supported; "
                              "send them in a header or a login call instead");
        return -1;
    }
    const char *host_end;
    const char *host = p;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(p, ']');
        if (!host_end) {
            snprintf(err, errlen, "ws.connect: URL '%s': unterminated [IPv6] host", s);
            return -1;
        }
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof u->host) {
        snprintf(err, errlen, "ws.connect: URL '%s' has no usable host", s);
        return -1;
    }
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    snprintf(u->port, sizeof u->port, "%s", u->tls ? "443" : "80");
    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        long port = pl ? strtol(p, NULL, 10) : 0;
        if (pl == 0 || pl > 5 || port < 1 || port > 65535) {
            snprintf(err, errlen, "ws.connect: URL '%s' has a bad port", s);
            return -1;
        }
        snprintf(u->port, sizeof u->port, "%ld", port);
        p += pl;
    }
    if (*p == '\0' || *p == '?' || *p == '#') {
        snprintf(u->path, sizeof u->path, "/%.*s", (int)strcspn(p, "#"), p);
    } else if (*p == '/') {
        size_t pl = strcspn(p, "#");
        if (pl >= sizeof u->path) {
            snprintf(err, errlen, "ws.connect: URL path is too long");
            return -1;
        }
        memcpy(u->path, p, pl);
        u->path[pl] = '\0';
    } else {
        snprintf(err, errlen, "ws.connect: URL '%s' is malformed after the host", s);
        return -1;
    }
    for (const char *q = u->path; *q; q++) {
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            snprintf(err, errlen, "ws.connect: URL '%s' has a control character or space in its path", s);
            return -1;
        }
    }
    return 0;
}

/* Non-blocking connect to host:port before the deadline: 0, -1 connect
 * failed, -2 name not resolved, -3 timed out. */
static int tcp_connect(struct conn *c, const struct url *u, double deadline, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(gai));
        return -2;
    }
    int last = 0, timed_out = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w == 1) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                r = soerr ? -1 : 0;
                errno = soerr;
            } else {
                if (w == 0)
                    timed_out = 1;
                r = -1;
                errno = w == 0 ? ETIMEDOUT : errno;
            }
        }
        if (r == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        last = errno;
        close(fd);
        if (timed_out)
            break;
    }
    freeaddrinfo(res);
    if (timed_out)
        snprintf(err, errlen, "connect to %s port %s timed out", u->host, u->port);
    else
        snprintf(err, errlen, "connect to %s port %s failed: %s", u->host, u->port, strerror(last));
    return timed_out ? -3 : -1;
}

/* TLS on the connected socket with the options parsed by tls.c: the chain
 * and host name are verified unless a pin without a CA file replaces them;
 * with both, both must hold. */
static int tls_start(lua_State *L, struct conn *c, const struct url *u, const struct sbot_tls *t,
                     double deadline, char *err, size_t errlen)
{
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_read_ahead(c->ssl_ctx, 1); /* one read() for many records */
    int verify_chain = !t->insecure && !t->has_pin;
    if (t->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(c->ssl_ctx, t->ca_file, NULL) != 1) {
            snprintf(err, errlen, "TLS: cannot load CA file '%.400s'", t->ca_file);
            ERR_clear_error();
            return -1;
        }
        verify_chain = !t->insecure; /* a CA file is checked even with a pin */
    } else if (verify_chain && SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
        snprintf(err, errlen, "TLS: cannot load the system CA store");
        ERR_clear_error();
        return -1;
    }
    SSL_CTX_set_verify(c->ssl_ctx, verify_chain ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl) {
        snprintf(err, errlen, "TLS: cannot create a session");
        return -1;
    }
    const char *sni = t->server_name[0] ? t->server_name : u->host;
    /* SNI only for names, not IP literals (RFC 6066) */
    int is_ip = strspn(sni, "0123456789.") == strlen(sni) || strchr(sni, ':') != NULL;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, sni);
    if (verify_chain && SSL_set1_host(c->ssl, sni) != 1) {
        snprintf(err, errlen, "TLS: cannot set the expected host name '%s'", sni);
        return -1;
    }
    BIO *bio = nosig_bio_new(c->fd);
    if (!bio) {
        snprintf(err, errlen, "TLS: cannot create a socket BIO (out of memory)");
        return -1;
    }
    SSL_set_bio(c->ssl, bio, bio); /* the session owns it now */
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (w == 0) {
                snprintf(err, errlen, "TLS handshake with %s timed out", u->host);
                return -1;
            }
            if (w > 0)
                continue;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            snprintf(err, errlen, "TLS certificate verification failed for %.200s%s%.200s%s: %s", u->host,
                     t->server_name[0] ? " (as " : "", t->server_name, t->server_name[0] ? ")" : "",
                     X509_verify_cert_error_string(vr));
        else {
            unsigned long ee = ERR_get_error();
            char buf[160] = "connection closed";
            if (ee)
                ERR_error_string_n(ee, buf, sizeof buf);
            snprintf(err, errlen, "TLS handshake with %s failed: %s", u->host, buf);
        }
        ERR_clear_error();
        return -1;
    }
    if (t->has_pin) {
        X509 *cert = SSL_get1_peer_certificate(c->ssl);
        if (!cert) {
            snprintf(err, errlen, "TLS: %s sent no certificate to check the pin against", u->host);
            return -1;
        }
        unsigned char md[32];
        int spki = sbot_tls_spki_sha256(cert, md);
        X509_free(cert);
        if (spki != 0) {
            snprintf(err, errlen, "TLS: cannot encode the public key of %s", u->host);
            return -1;
        }
        if (CRYPTO_memcmp(md, t->pin, 32) != 0) {
            char b64[48];
            sbot_base64(md, 32, b64);
            snprintf(err, errlen, "TLS: public key of %s does not match the pinned SHA-256 (server has sha256//%s)",
                     u->host, b64);
            return -1;
        }
    }
    if (t->insecure)
        sbot_log(L, SBOT_WARN, "ws: TLS verification disabled (insecure = true) for %s", u->host);
    return 0;
}

/* Find header name in the raw response head; copies its value. */
static int find_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (!end)
            break;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = (size_t)(end - v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return 1;
        }
        p = end;
    }
    return 0;
}

static int has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        size_t l = strcspn(p, ", \t");
        if (l == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p += l;
    }
    return 0;
}

/* ---- Lua API ------------------------------------------------------------------ */

static struct conn *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, WS_CONN_MT);
}

static int fail3(lua_State *L, const char *msg, const char *code)
{
    luaL_pushfail(L);
    sbot_log_push_redacted(L, msg, strlen(msg));
    lua_pushstring(L, code);
    return 3;
}

/* Push the upgrade request (a Lua string: nothing malloc'ed to leak). */
static void push_request(lua_State *L, int opts, const struct url *u, const char *key)
{
    int is_v6 = strchr(u->host, ':') != NULL;
    int default_port = strcmp(u->port, u->tls ? "443" : "80") == 0;
    lua_pushfstring(L,
                    "GET %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nUser-Agent: sbot/" SBOT_VERSION "\r\n",
                    u->path, is_v6 ? "[" : "", u->host, is_v6 ? "]" : "", default_port ? "" : ":",
                    default_port ? "" : u->port, key);
    int acc = lua_gettop(L);
    if (!opts)
        goto done;
    int t = lua_getfield(L, opts, "headers");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        goto done;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "ws.connect: opts.headers must be a table, got %s", lua_typename(L, t));
    int h = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, h)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "ws.connect: opts.headers keys must be header names (strings)");
        const char *name = lua_tostring(L, -2);
        if (lua_type(L, -1) != LUA_TSTRING) {
            if (!sbot_is_secret(L, -1))
                luaL_error(L, "ws.connect: opts.headers['%s'] must be a string or a secret, got %s", name,
                           luaL_typename(L, -1));
            lua_getfield(L, -1, "reveal");
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "ws.connect: opts.headers['%s']: the secret's reveal() did not give a string", name);
            lua_replace(L, -2);
        }
        const char *value = lua_tostring(L, -1);
        if (strpbrk(name, "\r\n: ") || !*name || strpbrk(value, "\r\n"))
            luaL_error(L, "ws.connect: opts.headers['%s'] has a bad name or a line break in its value", name);
        lua_pushvalue(L, acc);
        lua_pushvalue(L, -3);
        lua_pushliteral(L, ": ");
        lua_pushvalue(L, -4);
        lua_pushliteral(L, "\r\n");
        lua_concat(L, 5);
        lua_replace(L, acc);
        lua_pop(L, 1); /* value */
    }
    lua_pop(L, 1); /* headers table */
done:
    lua_pushliteral(L, "\r\n");
    lua_concat(L, 2);
}

/* ws.connect(url, {headers, tls = {ca_file, pin_sha256, insecure, server_name},
 *                  timeout, max_message}) -> conn | nil, err, code */
static int l_connect(lua_State *L)
{
    const char *urlstr = luaL_checkstring(L, 1);
    int opts = lua_isnoneornil(L, 2) ? 0 : 2;
    if (opts)
        luaL_checktype(L, 2, LUA_TTABLE);
    double timeout = DEFAULT_TIMEOUT;
    size_t max_message = DEFAULT_MAX_MESSAGE;
    struct url u;
    char err[512];
    if (parse_url(urlstr, &u, err, sizeof err) != 0)
        return luaL_error(L, "%s", err);
    struct sbot_tls t;
    memset(&t, 0, sizeof t);
    if (opts) {
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0))
                return luaL_error(L, "ws.connect: opts.timeout must be a positive number of seconds");
            timeout = lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "max_message") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
                return luaL_error(L, "ws.connect: opts.max_message must be a positive integer");
            max_message = (size_t)lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "tls");
        sbot_tls_check(L, -1, "ws.connect: opts.tls", urlstr, &t);
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "headers") && strcmp(k, "tls") && strcmp(k, "timeout") && strcmp(k, "max_message"))
                return luaL_error(L, "ws.connect: unknown option '%s'", k);
            lua_pop(L, 1);
        }
    }


    /* the Sec-WebSocket-Key and the request, before anything is acquired */
    unsigned char raw_key[16];
    char key[32];
    if (RAND_bytes(raw_key, sizeof raw_key) != 1)
        return luaL_error(L, "ws.connect: no random bytes for the WebSocket key");
    sbot_base64(raw_key, sizeof raw_key, key);
    push_request(L, opts, &u, key);
    size_t req_len;
    const char *req = lua_tolstring(L, -1, &req_len);
    int req_idx = lua_gettop(L);

    struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    luaL_setmetatable(L, WS_CONN_MT);
    snprintf(c->url, sizeof c->url, "%s", urlstr);
    int conn_idx = lua_gettop(L);
    double deadline = now_mono() + timeout;

    int tr = tcp_connect(c, &u, deadline, err, sizeof err);
    if (tr != 0) {
        conn_release(c);
        char msg[700];
        snprintf(msg, sizeof msg, "ws.connect %s: %s", urlstr, err);
        return fail3(L, msg, tr == -2 ? "resolve" : tr == -3 ? "timeout" : "connect");
    }
    if (u.tls && tls_start(L, c, &u, &t, deadline, err, sizeof err) != 0) {
        conn_release(c);
        char msg[700];
        snprintf(msg, sizeof msg, "ws.connect %s: %s", urlstr, err);
        return fail3(L, msg, strstr(err, "timed out") ? "timeout" : "tls");
    }
    int w = write_all(c, req, req_len, deadline);
    if (w != 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "ws.connect %s: sending the upgrade request: %s", urlstr,
                 w == -2 ? "timed out" : c->io_msg);
        conn_release(c);
        return fail3(L, msg, w == -2 ? "timeout" : "io");
    }

    /* read the response head into a Lua buffer userdata-free: use a stack
     * array, the head is bounded */
    char head[MAX_HEADER_BYTES + 1];
    size_t hl = 0;
    char *end = NULL;
    while (!end) {
        if (hl >= MAX_HEADER_BYTES) {
            conn_release(c);
            return fail3(L, "ws.connect: upgrade response headers exceed 16 KiB", "protocol");
        }
        size_t got;
        int r = tr_read(c, head + hl, MAX_HEADER_BYTES - hl, &got);
        if (r == IO_OK) {
            hl += got;
            head[hl] = '\0';
            end = strstr(head, "\r\n\r\n");
            continue;
        }
        if (r == IO_EOF || r == IO_ERR) {
            char msg[700];
            snprintf(msg, sizeof msg, "ws.connect %s: connection %s before the upgrade response%s%s", urlstr,
                     r == IO_ERR ? "failed" : "closed by the server", r == IO_ERR ? ": " : "",
                     r == IO_ERR ? c->io_msg : "");
            conn_release(c);
            return fail3(L, msg, r == IO_ERR ? "io" : "closed");
        }
        int ww = wait_fd(c->fd, r == IO_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (ww <= 0) {
            char msg[700];
            snprintf(msg, sizeof msg, "ws.connect %s: no upgrade response within %.3g s", urlstr, timeout);
            conn_release(c);
            return fail3(L, msg, "timeout");
        }
    }
    size_t head_len = (size_t)(end - head) + 4;
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
        char line[200];
        size_t l = strcspn(head, "\r\n");
        snprintf(line, sizeof line, "%.*s", (int)(l < 150 ? l : 150), head);
        /* keep the body start for the message: it often says why */
        char msg[900];
        snprintf(msg, sizeof msg, "ws.connect %s: server refused the WebSocket upgrade: %s%s%.200s", urlstr, line,
                 hl > head_len ? " -- " : "", hl > head_len ? head + head_len : "");
        conn_release(c);
        luaL_pushfail(L);
        sbot_log_push_redacted(L, msg, strlen(msg));
        lua_pushinteger(L, status);
        return 3;
    }
    char val[256];
    if (!find_header(head, "Upgrade", val, sizeof val) || !has_token(val, "websocket") ||
        !find_header(head, "Connection", val, sizeof val) || !has_token(val, "upgrade")) {
        conn_release(c);
        return fail3(L, "ws.connect: 101 response without Upgrade: websocket / Connection: Upgrade", "protocol");
    }
    char expect[64];
    {
        unsigned char md[SHA_DIGEST_LENGTH];
        char cat[96];
        snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
        SHA1((const unsigned char *)cat, strlen(cat), md);
        sbot_base64(md, sizeof md, expect);
    }
    if (!find_header(head, "Sec-WebSocket-Accept", val, sizeof val) || strcmp(val, expect) != 0) {
        conn_release(c);
        return fail3(L, "ws.connect: the server's Sec-WebSocket-Accept does not match our key", "protocol");
    }
    if (hl > head_len) {
        c->pending = malloc(hl - head_len);
        if (!c->pending) {
            conn_release(c);
            return fail3(L, "ws.connect: out of memory", "ENOMEM");
        }
        memcpy(c->pending, head + head_len, hl - head_len);
        c->pending_len = hl - head_len;
    }
    if (wslay_event_context_client_init(&c->ctx, &callbacks, c) != 0) {
        conn_release(c);
        return fail3(L, "ws.connect: cannot create the WebSocket context (out of memory)", "ENOMEM");
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, max_message);
    wslay_event_config_set_no_buffering(c->ctx, 1); /* data frames: cb_frame_* */
    c->max_message = max_message;
    sbot_log(L, SBOT_DEBUG, "ws: connected to %s", urlstr);
    lua_pushvalue(L, conn_idx);
    (void)req_idx;
    return 1;
}

static int conn_is_open(struct conn *c)
{
    return c->ctx != NULL && c->fd >= 0;
}

static double opt_timeout(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return DEFAULT_TIMEOUT;
    double t = luaL_checknumber(L, idx);
    luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0 seconds"); /* NaN fails too */
    return t;
}

/* The connection failed (a bad frame, an oversized message, a broken
 * transport) or the server closed it: send what wslay queued (its close
 * frame, our answer to the server's) for at most half a second, shut TLS
 * down, release everything, remember why; then nil, message, code. Every
 * later call says "closed" with that reason. */
static int fail_conn(lua_State *L, struct conn *c, const char *msg, const char *code)
{
    if (c->ctx && c->fd >= 0 && wslay_event_want_write(c->ctx))
        flush(c, now_mono() + 0.5);
    if (c->ssl && c->fd >= 0)
        SSL_shutdown(c->ssl);
    snprintf(c->closed_why, sizeof c->closed_why, "%s", msg);
    conn_release(c);
    return fail3(L, msg, code);
}

static int fail_closed(lua_State *L, struct conn *c, const char *what)
{
    char msg[1100];
    if (c->closed_why[0])
        snprintf(msg, sizeof msg, "%s: connection is closed (%s)", what, c->closed_why);
    else
        snprintf(msg, sizeof msg, "%s: connection is closed", what);
    return fail3(L, msg, "closed");
}

/* conn:send(text [, timeout]) -> true | nil, err, code */
static int l_send(lua_State *L)
{
    struct conn *c = check_conn(L);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    double timeout = opt_timeout(L, 3);
    if (!conn_is_open(c))
        return fail_closed(L, c, "ws send");
    if (c->closed_by_peer)
        return fail3(L, "ws send: the server closed the connection", "closed");
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (wslay_event_queue_msg(c->ctx, &m) != 0)
        return fail3(L, "ws send: cannot queue the message (closing or out of memory)", "closed");
    c->io_msg[0] = '\0';
    int r = flush(c, now_mono() + timeout);
    if (r == -2)
        return fail3(L, "ws send: timed out", "timeout");
    if (r != 0) {
        char msg[900];
        snprintf(msg, sizeof msg, "ws send to %s: %s", c->url, c->io_msg);
        return fail_conn(L, c, msg, "io");
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int pop_message(lua_State *L, struct conn *c)
{
    struct msg *m = c->head;
    c->head = m->next;
    if (!c->head)
        c->tail = NULL;
    lua_pushlstring(L, m->data, m->len); /* may raise on OOM: m is unlinked, free after */
    free(m);
    return 1;
}

/* conn:recv([timeout]) -> text | nil, err, code
 * (code: "timeout", "closed", "protocol", "too_large", "io", "ENOMEM") */
static int l_recv(lua_State *L)
{
    struct conn *c = check_conn(L);
    double timeout = opt_timeout(L, 2);
    if (c->head)
        return pop_message(L, c);
    if (!conn_is_open(c))
        return fail_closed(L, c, "ws recv");
    double deadline = now_mono() + timeout;
    char msg[900];
    for (;;) {
        if (c->closed_by_peer) {
            if (c->close_status)
                snprintf(msg, sizeof msg, "ws recv: %s closed the connection (status %d)", c->url, c->close_status);
            else
                snprintf(msg, sizeof msg, "ws recv: %s closed the connection", c->url);
            return fail_conn(L, c, msg, "closed");
        }
        c->io_msg[0] = '\0';
        /* Read without waiting for the socket when bytes are buffered: ours
         * (past the HTTP response), or OpenSSL's - decrypted data, or whole
         * records read ahead. A partial record read ahead (SSL_has_pending
         * says yes to it too) needs the socket: waiting for it in poll, not
         * in a loop of reads that find nothing new. */
        int has_pending = (c->pending && c->pending_off < c->pending_len) ||
                          (c->ssl && (SSL_pending(c->ssl) > 0 || (SSL_has_pending(c->ssl) && !c->tls_starved)));
        if (!has_pending) {
            int w = wait_fd(c->fd, POLLIN, deadline);
            if (w == 0)
                return fail3(L, "ws recv: timed out", "timeout");
            if (w < 0) {
                set_io_error(c, "poll");
                snprintf(msg, sizeof msg, "ws recv from %s: %s", c->url, c->io_msg);
                return fail_conn(L, c, msg, "io");
            }
        }
        int rr = wslay_event_recv(c->ctx);
        if (rr != 0 && c->closed_by_peer)
            continue; /* end of the stream: reported above */
        if (c->io_error == ENOMEM) {
            snprintf(msg, sizeof msg, "ws recv from %s: %s", c->url, c->io_msg);
            return fail_conn(L, c, msg, "ENOMEM");
        }
        if (rr != 0 && c->io_msg[0]) {
            snprintf(msg, sizeof msg, "ws recv from %s: %s", c->url, c->io_msg);
            return fail_conn(L, c, msg, "io");
        }
        /* After a bad frame or an oversized message wslay queues a close
         * frame and reads nothing more, ever (the bytes behind it stay
         * buffered): the connection has failed. */
        if (rr != 0 || !wslay_event_get_read_enabled(c->ctx)) {
            if (wslay_event_get_close_received(c->ctx)) {
                c->closed_by_peer = 1;
                c->close_status = wslay_event_get_status_code_received(c->ctx);
                continue;
            }
            if (wslay_event_want_write(c->ctx)) /* the close frame wslay queued */
                flush(c, now_mono() + 0.5);
            int sent = wslay_event_get_status_code_sent(c->ctx);
            if (sent == WSLAY_CODE_MESSAGE_TOO_BIG) {
                snprintf(msg, sizeof msg, "ws recv from %s: a message larger than max_message (%zu bytes); "
                         "the connection was closed (status 1009)", c->url, c->max_message);
                return fail_conn(L, c, msg, "too_large");
            }
            if (sent == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA)
                snprintf(msg, sizeof msg, "ws recv from %s: protocol error: the server sent text that is not "
                         "UTF-8; the connection was closed (status 1007)", c->url);
            else
                snprintf(msg, sizeof msg, "ws recv from %s: protocol error: the server sent an invalid frame; "
                         "the connection was closed", c->url);
            return fail_conn(L, c, msg, "protocol");
        }
        /* pongs and close replies wslay queued */
        if (wslay_event_want_write(c->ctx))
            flush(c, now_mono() + 1.0);
        if (c->head)
            return pop_message(L, c);
        if (wslay_event_get_close_received(c->ctx))
            c->closed_by_peer = 1;
        else if (now_mono() >= deadline) /* also when bytes stay buffered: never spin */
            return fail3(L, "ws recv: timed out", "timeout");
    }
}

/* close: a close frame (1000) if the connection still stands, then free. */
static int l_close(lua_State *L)
{
    struct conn *c = check_conn(L);
    if (c->ctx && c->fd >= 0 && !c->closed_by_peer && !wslay_event_get_close_sent(c->ctx)) {
        if (wslay_event_queue_close(c->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0) == 0)
            flush(c, now_mono() + 1.0);
    }
    if (c->ssl && c->fd >= 0)
        SSL_shutdown(c->ssl);
    conn_release(c);
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct conn *c = check_conn(L);
    lua_pushfstring(L, "sbot.ws.conn(%s%s)", c->url, conn_is_open(c) ? "" : ", closed");
    return 1;
}

static int l_is_open(lua_State *L)
{
    struct conn *c = check_conn(L);
    lua_pushboolean(L, conn_is_open(c) && !c->closed_by_peer);
    return 1;
}

/* ---- C API (engine/sbot.h) ------------------------------------------------- */

static int ws_call(lua_State *L, lua_CFunction f, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, f);
    lua_insert(L, base + 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - base;
}

int sbot_ws_connect(lua_State *L, const char *url, int opts)
{
    opts = opts ? lua_absindex(L, opts) : 0;
    lua_pushstring(L, url);
    if (opts)
        lua_pushvalue(L, opts);
    else
        lua_pushnil(L);
    return ws_call(L, l_connect, 2);
}

int sbot_ws_send(lua_State *L, int conn, const char *text, size_t len, double timeout)
{
    conn = lua_absindex(L, conn);
    lua_pushvalue(L, conn);
    lua_pushlstring(L, text, len);
    lua_pushnumber(L, timeout);
    return ws_call(L, l_send, 3);
}

int sbot_ws_recv(lua_State *L, int conn, double timeout)
{
    conn = lua_absindex(L, conn);
    lua_pushvalue(L, conn);
    lua_pushnumber(L, timeout);
    return ws_call(L, l_recv, 2);
}

void sbot_ws_close(lua_State *L, int conn)
{
    conn = lua_absindex(L, conn);
    lua_pushvalue(L, conn);
    ws_call(L, l_close, 1);
}

int sbot_ws_is_open(lua_State *L, int conn)
{
    conn = lua_absindex(L, conn);
    lua_pushvalue(L, conn);
    ws_call(L, l_is_open, 1);
    int open = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return open;
}

static const luaL_Reg conn_methods[] = {
    {"send", l_send}, {"recv", l_recv}, {"close", l_close}, {"is_open", l_is_open}, {NULL, NULL}};

static const luaL_Reg module_funcs[] = {{"connect", l_connect}, {NULL, NULL}};

int luaopen_sbot_ws(lua_State *L)
{
    if (luaL_newmetatable(L, WS_CONN_MT)) {
        luaL_newlib(L, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newlib(L, module_funcs);
    return 1;
}
