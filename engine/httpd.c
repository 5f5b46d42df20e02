/* httpd.c: sbot.httpd, a small HTTP/1.1 server whose request handlers are Lua
 * functions. libmicrohttpd parses HTTP (and does TLS), wslay frames
 * WebSocket messages, OpenSSL makes self-signed certificates for the lab.
 *
 * Threading: the daemons run in MHD's "external select" mode, so every
 * callback (and so every Lua handler) runs on the thread that called
 * httpd.poll / httpd.run / server:step. Nothing here touches Lua from another
 * thread. Every call into Lua from an MHD or wslay callback is protected, so
 * no Lua error ever unwinds through C library frames. */
#include "sbot.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define SERVER_MT "sbot.httpd.server"
#define WS_MT "sbot.httpd.websocket"
#define UPGRADE_MT "sbot.httpd.upgrade"
#define CERTJOB_MT "sbot.httpd.certjob"
#define MAX_POLL_SERVERS 256
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The value a handler returns to close the connection without a response.
 * A constant address, not per-interpreter state. */
static const char reset_sentinel = 0;

enum outcome { OUT_RESPONSE = 0, OUT_UPGRADE, OUT_RESET };

struct server;

/* One HTTP request (MHD's per-connection closure, from the URI callback to
 * the completion callback). */
struct request {
    struct server *srv;
    struct MHD_Connection *conn;
    char *raw_uri;
    char *body;
    size_t len, cap;
    int started, too_big;
    struct MHD_Response *resp; /* built, waiting out a delay while suspended */
    unsigned int status;
    double due;
    struct request *next_delayed;
    int upgrade_ref, req_ref; /* websocket function and request table */
};

/* One upgraded WebSocket connection. The Lua side is a box holding a pointer
 * to this struct; the pointer is cleared when the connection is freed. */
struct websocket {
    struct server *srv;
    struct websocket **box;
    MHD_socket sock;
    struct MHD_UpgradeResponseHandle *urh;
    wslay_event_context_ptr ctx;
    char *extra;
    size_t extra_len, extra_off;
    int self_ref; /* the box, while open */
    int co_ref;   /* the coroutine running the websocket function */
    int waiting;  /* that coroutine is suspended in ws:recv() */
    int closing;  /* to be freed at the end of the poll round */
    /* Over TLS: libmicrohttpd's session of the connection (gnutls_session_t)
     * and its TCP socket. Frames are sent on the session directly, not
     * through the socket pair (see tls_flush); what arrives still comes
     * through it. */
    gnutls_session_t tls;
    int tcp_fd;
    struct websocket *next;
};

struct server {
    struct MHD_Daemon *d;
    lua_State *L; /* the thread polling, while it polls */
    int self_ref, handler_ref, ws_fn_ref;
    char *cert, *key;
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    int tls, ipv6, in_poll, close_pending;
    size_t max_body;
    struct request *delayed;
    struct websocket *sockets;
    char last_error[256];
    int last_errno; /* the errno last_error reports (its strerror text is in it), or 0 */
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- MHD callbacks: request lifecycle ------------------------------------- */

/* libmicrohttpd logs a failed call right after it, with strerror(errno) in
 * the text: errno still holds that call's error here. It is kept when the
 * text does report it, so listen() can return the errno name. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct server *srv = cls;
    int e = errno;
    vsnprintf(srv->last_error, sizeof srv->last_error, fmt, ap);
    size_t n = strlen(srv->last_error);
    while (n && (srv->last_error[n - 1] == '\n' || srv->last_error[n - 1] == '\r'))
        srv->last_error[--n] = '\0';
    srv->last_errno = e && strstr(srv->last_error, strerror(e)) ? e : 0;
    errno = e;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = cls;
    r->conn = conn;
    r->upgrade_ref = r->req_ref = LUA_NOREF;
    r->raw_uri = strdup(uri ? uri : "");
    if (!r->raw_uri) {
        free(r);
        return NULL;
    }
    return r;
}

static void unlink_delayed(struct server *srv, struct request *r)
{
    for (struct request **p = &srv->delayed; *p; p = &(*p)->next_delayed)
        if (*p == r) {
            *p = r->next_delayed;
            r->next_delayed = NULL;
            return;
        }
}

static void drop_ref(struct server *srv, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL && srv->L)
        luaL_unref(srv->L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct request *r = *con_cls;
    (void)conn;
    (void)toe;
    if (!r)
        return;
    unlink_delayed(srv, r);
    if (r->resp)
        MHD_destroy_response(r->resp);
    drop_ref(srv, &r->upgrade_ref);
    drop_ref(srv, &r->req_ref);
    free(r->body);
    free(r->raw_uri);
    free(r);
    *con_cls = NULL;
}

/* ---- building the request table and calling the handler ----------------- */

struct dispatch {
    struct server *srv;
    struct request *r;
    const char *url, *method;
    int is_ws;            /* a WebSocket upgrade request */
    enum outcome outcome; /* results */
    unsigned status;
    double delay;
    int fd;             /* options.file: the body is this file's bytes, or -1 */
    uint64_t offset, length;
};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    lua_State *L = cls;
    (void)kind;
    char name[256];
    size_t n = strlen(key);
    if (n >= sizeof name)
        n = sizeof name - 1;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    name[n] = '\0';
    /* repeated headers are joined with ", " as RFC 9110 allows */
    lua_getfield(L, -1, name);
    if (lua_isstring(L, -1)) {
        lua_pushliteral(L, ", ");
        lua_pushstring(L, value ? value : "");
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushstring(L, value ? value : "");
    }
    lua_setfield(L, -2, name);
    return MHD_YES;
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    lua_State *L = cls;
    (void)kind;
    lua_pushstring(L, value ? value : "");
    lua_setfield(L, -2, key);
    return MHD_YES;
}

static void push_remote(lua_State *L, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *in = (const void *)sa;
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
            port = ntohs(in->sin_port);
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const void *)sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
            port = ntohs(in6->sin6_port);
        }
    }
    lua_pushfstring(L, "%s:%d", ip, (int)port);
}

/* req = {method, path, query, raw_query, headers, body, remote} */
static void push_request(lua_State *L, struct dispatch *c)
{
    struct request *r = c->r;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, c->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, c->url);
    lua_setfield(L, -2, "path");
    const char *q = strchr(r->raw_uri, '?');
    lua_pushstring(L, q ? q + 1 : "");
    lua_setfield(L, -2, "raw_query");
    lua_newtable(L);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, L);
    lua_setfield(L, -2, "query");
    lua_newtable(L);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, add_header, L);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body ? r->body : "", r->len);
    lua_setfield(L, -2, "body");
    push_remote(L, r->conn);
    lua_setfield(L, -2, "remote");
    lua_pushboolean(L, c->srv->tls);
    lua_setfield(L, -2, "tls");
}

/* Turn the handler's headers table into a flat list {name, value, ...} of
 * strings, checking every name and value. */
static void normalize_headers(lua_State *L, int idx)
{
    lua_newtable(L);
    int out = lua_gettop(L), n = 0;
    if (lua_isnoneornil(L, idx))
        return;
    if (!lua_istable(L, idx))
        luaL_error(L, "httpd handler: headers (2nd result) must be a table, got %s",
                   luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "httpd handler: header names must be strings");
        const char *name = lua_tostring(L, -2);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "httpd handler: header '%s' must be a string or number, got %s",
                       name, luaL_typename(L, -1));
        const char *value = lua_tostring(L, -1); /* converts numbers in place */
        if (strpbrk(name, "\r\n: ") || strpbrk(value, "\r\n"))
            luaL_error(L, "httpd handler: header '%s' has a forbidden character", name);
        if (strcasecmp(name, "content-length") != 0) { /* MHD computes it */
            lua_pushvalue(L, -2);
            lua_rawseti(L, out, ++n);
            lua_pushvalue(L, -1);
            lua_rawseti(L, out, ++n);
        }
        lua_pop(L, 1);
    }
}

/* Protected: run the handler and check what it returned.
 * Stack in: handler, req. Out: outcome, status, header list, body, delay. */
static int run_handler(lua_State *L)
{
    lua_settop(L, 2);
    lua_call(L, 1, 4);
    int base = 1; /* results at 1..4 */
    if (luaL_testudata(L, base, UPGRADE_MT)) {
        lua_pushinteger(L, OUT_UPGRADE);
        lua_pushinteger(L, 101);
        lua_newtable(L);
        lua_getiuservalue(L, base, 1); /* the websocket function as "body" */
        lua_pushnumber(L, 0);
        lua_pushnil(L);
        return 6;
    }
    if (lua_touserdata(L, base) == &reset_sentinel) {
        lua_pushinteger(L, OUT_RESET);
        lua_pushinteger(L, 0);
        lua_newtable(L);
        lua_pushliteral(L, "");
        lua_pushnumber(L, 0);
        lua_pushnil(L);
        return 6;
    }
    int isnum;
    lua_Integer status = lua_tointegerx(L, base, &isnum);
    if (!isnum || status < 100 || status > 599)
        luaL_error(L, "httpd handler: status (1st result) must be an integer 100..599, got %s",
                   lua_isnil(L, base) ? "nil" : lua_tostring(L, base) ? lua_tostring(L, base)
                                                                     : luaL_typename(L, base));
    if (!lua_isnoneornil(L, base + 2) && lua_type(L, base + 2) != LUA_TSTRING)
        luaL_error(L, "httpd handler: body (3rd result) must be a string, got %s",
                   luaL_typename(L, base + 2));
    double delay = 0;
    int has_file = 0;
    if (lua_istable(L, base + 3)) {
        lua_getfield(L, base + 3, "delay");
        delay = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
        lua_pop(L, 1);
        has_file = lua_getfield(L, base + 3, "file") != LUA_TNIL;
        if (has_file && lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "httpd handler: options.file must be a path (string), got %s",
                       luaL_typename(L, -1));
        lua_pop(L, 1);
        if (has_file && !lua_isnoneornil(L, base + 2) && lua_rawlen(L, base + 2) > 0)
            luaL_error(L, "httpd handler: give a body (3rd result) or options.file, not both");
        for (int i = 0; i < 2; i++) {
            const char *k = i == 0 ? "offset" : "length";
            if (lua_getfield(L, base + 3, k) != LUA_TNIL) {
                int isint;
                lua_Integer v = lua_tointegerx(L, -1, &isint);
                if (!has_file || !isint || v < 0)
                    luaL_error(L, "httpd handler: options.%s must be an integer >= 0 with options.file", k);
            }
            lua_pop(L, 1);
        }
    } else if (!lua_isnoneornil(L, base + 3)) {
        luaL_error(L, "httpd handler: options (4th result) must be a table");
    }
    lua_pushinteger(L, OUT_RESPONSE);
    lua_pushinteger(L, status);
    normalize_headers(L, base + 1);
    if (lua_isnoneornil(L, base + 2))
        lua_pushliteral(L, "");
    else
        lua_pushvalue(L, base + 2);
    lua_pushnumber(L, delay);
    if (has_file)
        lua_pushvalue(L, base + 3);
    else
        lua_pushnil(L);
    return 6;
}

/* Open options.file (the table at idx) for a response streamed from the
 * file: fills c->fd, c->offset, c->length. The last thing pdispatch does,
 * so nothing can raise while the descriptor is held. 0, or -1 with the
 * reason logged. */
static int open_body_file(lua_State *L, struct dispatch *c, int idx)
{
    lua_getfield(L, idx, "file");
    lua_getfield(L, idx, "offset");
    lua_getfield(L, idx, "length");
    const char *path = lua_tostring(L, -3);
    uint64_t off = (uint64_t)luaL_optinteger(L, -2, 0);
    int has_len = !lua_isnil(L, -1);
    uint64_t len = has_len ? (uint64_t)lua_tointeger(L, -1) : 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        sbot_log(L, SBOT_ERROR, "httpd: handler for %s %s: cannot open options.file %s: %s",
                 c->method, c->url, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        lua_pop(L, 3);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (off > size || (has_len && len > size - off)) {
        sbot_log(L, SBOT_ERROR, "httpd: handler for %s %s: options.file %s is %llu bytes, "
                 "offset %llu + length %llu is past its end", c->method, c->url, path,
                 (unsigned long long)size, (unsigned long long)off, (unsigned long long)len);
        close(fd);
        lua_pop(L, 3);
        return -1;
    }
    lua_pop(L, 3);
    c->fd = fd;
    c->offset = off;
    c->length = has_len ? len : size - off;
    return 0;
}

static void push_ws_accept(lua_State *L, const char *key)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char out[64];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, key);
    luaL_addstring(&b, WS_GUID);
    luaL_pushresult(&b);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    SHA1((const unsigned char *)s, n, md);
    sbot_base64(md, SHA_DIGEST_LENGTH, out);
    lua_pop(L, 1);
    lua_pushstring(L, out);
}

/* Protected: everything Lua does for one request. Leaves a header list and
 * a body string on the stack and fills in the dispatch outcome. */
static int pdispatch(lua_State *L)
{
    struct dispatch *c = lua_touserdata(L, 1);
    struct server *srv = c->srv;
    lua_settop(L, 0);
    push_request(L, c); /* 1 */
    lua_pushcfunction(L, sbot_traceback); /* 2 */
    lua_pushcfunction(L, run_handler);
    if (c->is_ws && srv->ws_fn_ref != LUA_NOREF) {
        /* listen{websocket = fn}: every upgrade request goes there */
        lua_pop(L, 1);
        lua_pushinteger(L, OUT_UPGRADE);
        lua_pushinteger(L, 101);
        lua_newtable(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, srv->ws_fn_ref);
        lua_pushnumber(L, 0);
        lua_pushnil(L);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, srv->handler_ref);
        lua_pushvalue(L, 1);
        if (lua_pcall(L, 2, 6, 2) != LUA_OK) {
            sbot_log(L, SBOT_ERROR, "httpd: handler for %s %s failed: %s", c->method, c->url,
                     lua_tostring(L, -1));
            lua_pop(L, 1);
            lua_pushinteger(L, OUT_RESPONSE);
            lua_pushinteger(L, 500);
            lua_newtable(L);
            lua_pushliteral(L, "Content-Type");
            lua_rawseti(L, -2, 1);
            lua_pushliteral(L, "text/plain");
            lua_rawseti(L, -2, 2);
            lua_pushliteral(L, "internal error in the request handler (see the log)\n");
            lua_pushnumber(L, 0);
            lua_pushnil(L);
        }
    }
    /* stack: req, traceback, outcome, status, headers, body, delay, file options */
    c->outcome = (enum outcome)lua_tointeger(L, 3);
    c->status = (unsigned)lua_tointeger(L, 4);
    c->delay = lua_tonumber(L, 7);
    if (c->outcome == OUT_UPGRADE) {
        const char *key = MHD_lookup_connection_value(c->r->conn, MHD_HEADER_KIND,
                                                      "Sec-WebSocket-Key");
        if (!c->is_ws || !key) {
            sbot_log(L, SBOT_ERROR, "httpd: handler for %s %s returned httpd.upgrade() but the "
                     "request is not a WebSocket upgrade", c->method, c->url);
            c->outcome = OUT_RESPONSE;
            c->status = 400;
            lua_settop(L, 4);
            lua_newtable(L);
            lua_pushliteral(L, "not a WebSocket upgrade request\n");
        } else {
            lua_pushvalue(L, 6);
            c->r->upgrade_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_pushvalue(L, 1);
            c->r->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_settop(L, 4);
            lua_newtable(L);
            lua_pushliteral(L, "Upgrade");
            lua_rawseti(L, -2, 1);
            lua_pushliteral(L, "websocket");
            lua_rawseti(L, -2, 2);
            lua_pushliteral(L, "Sec-WebSocket-Accept");
            lua_rawseti(L, -2, 3);
            push_ws_accept(L, key);
            lua_rawseti(L, -2, 4);
            lua_pushliteral(L, "");
        }
    } else {
        if (lua_istable(L, 8) && open_body_file(L, c, 8) != 0) {
            c->status = 500;
            lua_settop(L, 4);
            lua_newtable(L);
            lua_pushliteral(L, "internal error: the response file could not be read (see the log)\n");
            return 2;
        }
        lua_settop(L, 6);
    }
    return 2; /* headers, body */
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh);

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status,
                                    const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain");
    enum MHD_Result ok = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static int header_has_token(struct MHD_Connection *conn, const char *name, const char *token)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    size_t tl = strlen(token);
    for (; v && *v; v++)
        if (strncasecmp(v, token, tl) == 0)
            return 1;
    return 0;
}

static enum MHD_Result dispatch(struct server *srv, struct request *r, const char *url,
                                const char *method)
{
    lua_State *L = srv->L;
    struct dispatch c = {srv, r, url, method, 0, OUT_RESPONSE, 500, 0, -1, 0, 0};
    if (!L)
        return MHD_NO;
    c.is_ws = strcmp(method, "GET") == 0 && header_has_token(r->conn, "Upgrade", "websocket") &&
              MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 8))
        return MHD_NO;
    lua_pushcfunction(L, pdispatch);
    lua_pushlightuserdata(L, &c);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) { /* only memory errors get here */
        lua_settop(L, top);
        return MHD_NO;
    }
    if (c.outcome == OUT_RESET) {
        lua_settop(L, top);
        return MHD_NO; /* MHD closes the connection without answering */
    }
    size_t blen;
    const char *body = lua_tolstring(L, -1, &blen);
    struct MHD_Response *resp;
    if (c.outcome == OUT_UPGRADE)
        resp = MHD_create_response_for_upgrade(on_upgrade, r);
    else if (c.fd >= 0) /* streamed from the file (sendfile where possible); MHD closes fd */
        resp = MHD_create_response_from_fd_at_offset64(c.length, c.fd, c.offset);
    else
        resp = MHD_create_response_from_buffer(blen, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (c.fd >= 0)
            close(c.fd);
        lua_settop(L, top);
        return MHD_NO;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
    for (lua_Integer i = 1; i + 1 <= n; i += 2) {
        lua_rawgeti(L, -2, i);
        lua_rawgeti(L, -3, i + 1);
        MHD_add_response_header(resp, lua_tostring(L, -2), lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    lua_settop(L, top);
    if (c.outcome == OUT_RESPONSE && c.delay > 0) {
        /* answer later without blocking the loop: park the connection */
        r->resp = resp;
        r->status = c.status;
        r->due = now_mono() + c.delay;
        r->next_delayed = srv->delayed;
        srv->delayed = r;
        MHD_suspend_connection(r->conn);
        return MHD_YES;
    }
    enum MHD_Result ok = MHD_queue_response(r->conn, c.status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct server *srv = cls;
    struct request *r = *con_cls;
    (void)version;
    if (!r)
        return MHD_NO;
    r->conn = conn;
    if (r->resp) { /* resumed after a delay */
        enum MHD_Result ok = MHD_queue_response(conn, r->status, r->resp);
        MHD_destroy_response(r->resp);
        r->resp = NULL;
        return ok;
    }
    if (!r->started) {
        r->started = 1;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->len + n > srv->max_body) {
            r->too_big = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (!nb)
                return MHD_NO;
            r->body = nb;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    if (r->too_big)
        return respond_text(conn, 413, "request body too large\n");
    return dispatch(srv, r, url, method);
}

/* ---- WebSocket ------------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user)
{
    struct websocket *w = user;
    (void)flags;
    if (w->extra_off < w->extra_len) {
        size_t n = w->extra_len - w->extra_off;
        if (n > len)
            n = len;
        memcpy(buf, w->extra + w->extra_off, n);
        w->extra_off += n;
        return (ssize_t)n;
    }
    ssize_t n;
    do
        n = recv(w->sock, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK)
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

/* A TLS websocket sends on libmicrohttpd's session itself. libmicrohttpd
 * 0.9.75 (Debian 12) would relay what the socket pair carries through
 * buffers of 4 bytes each way (its connection memory pool is spent on the
 * HTTP buffers by then; later versions free them first): every 4 bytes a
 * TLS record of their own, i.e. 2,500 records for a 10 KB answer, each one
 * decrypted by the client, where a real server (TrueNAS's nginx) sends
 * records of up to 16 KB. So the session stays corked (gnutls_record_cork):
 * frames are appended, and tls_flush sends them as full records at the end
 * of each write. This thread is the only one using the session, and
 * libmicrohttpd sends on it only what the socket pair carries, which is
 * nothing; it still reads on it and relays what arrives. */
#define TLS_BACKLOG_MAX (8u << 20) /* corked bytes beyond which frames wait in wslay */

/* Send what is corked: 0 = all sent or the socket is full (the rest waits,
 * still corked, for the socket to take more), -1 = the connection failed. */
static int tls_flush(struct websocket *w)
{
    if (!w->tls || gnutls_record_check_corked(w->tls) == 0)
        return 0;
    int r = gnutls_record_uncork(w->tls, 0);
    if (r >= 0) {
        gnutls_record_cork(w->tls);
        return 0;
    }
    /* on failure gnutls keeps the session corked with the rest */
    return r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED ? 0 : -1;
}

/* Before the connection is handed back for closing: give what is corked up
 * to a second to leave (the close frame is among it). */
static void tls_drain(struct websocket *w)
{
    for (int i = 0; w->tls && i < 50 && gnutls_record_check_corked(w->tls) > 0; i++) {
        if (tls_flush(w) != 0)
            return;
        if (gnutls_record_check_corked(w->tls) > 0) {
            struct pollfd p = {w->tcp_fd, POLLOUT, 0};
            poll(&p, 1, 20);
        }
    }
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                          int flags, void *user)
{
    struct websocket *w = user;
    if (w->tls) {
        if (gnutls_record_check_corked(w->tls) >= TLS_BACKLOG_MAX &&
            (tls_flush(w) != 0 || gnutls_record_check_corked(w->tls) >= TLS_BACKLOG_MAX)) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        ssize_t n = gnutls_record_send(w->tls, data, len); /* corked: appended */
        if (n < 0) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        return n;
    }
    int sflags = MSG_NOSIGNAL;
    if (flags & WSLAY_MSG_MORE)
        sflags |= MSG_MORE;
    ssize_t n;
    do
        n = send(w->sock, data, len, sflags);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK)
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static void log_protected_error(lua_State *L, const char *what)
{
    const char *msg = lua_tostring(L, -1);
    sbot_log(L, SBOT_ERROR, "httpd: %s failed: %s", what, msg ? msg : "(non-string error)");
}

/* Resume the websocket coroutine with the values on top of L's stack. */
static void ws_resume(lua_State *L, struct websocket *w, int nargs)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->co_ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (!co) {
        lua_pop(L, nargs);
        return;
    }
    lua_xmove(L, co, nargs);
    w->waiting = 0;
    int nres = 0;
    int st = lua_resume(co, L, nargs, &nres);
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        w->waiting = 1;
        return;
    }
    if (st != LUA_OK) {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
        log_protected_error(L, "websocket function");
        lua_pop(L, 1);
        if (w->ctx && !wslay_event_get_close_sent(w->ctx))
            wslay_event_queue_close(w->ctx, 1011, NULL, 0);
        w->closing = 1;
    } else {
        lua_pop(co, nres);
        /* finished: the connection lives on only if it has an on_message */
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->self_ref);
        lua_getiuservalue(L, -1, 1);
        lua_getfield(L, -1, "on_message");
        int keep = lua_isfunction(L, -1);
        lua_pop(L, 3);
        if (!keep && w->ctx && !wslay_event_get_close_sent(w->ctx))
            wslay_event_queue_close(w->ctx, 1000, NULL, 0);
        if (!keep)
            w->closing = 1;
    }
    drop_ref(w->srv, &w->co_ref);
}

struct deliver {
    struct websocket *w;
    const uint8_t *msg;
    size_t len;
    int closed; /* deliver "closed" instead of a message */
};

/* Protected: hand a message (or the close) to the coroutine or on_message. */
static int pdeliver(lua_State *L)
{
    struct deliver *d = lua_touserdata(L, 1);
    struct websocket *w = d->w;
    lua_settop(L, 0);
    if (w->waiting) {
        if (d->closed) {
            lua_pushnil(L);
            lua_pushliteral(L, "websocket closed");
            ws_resume(L, w, 2);
        } else {
            lua_pushlstring(L, (const char *)d->msg, d->len);
            ws_resume(L, w, 1);
        }
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->self_ref);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, 2, d->closed ? "on_close" : "on_message");
    if (!lua_isfunction(L, -1))
        return 0;
    lua_pushvalue(L, 1);
    if (!d->closed)
        lua_pushlstring(L, (const char *)d->msg, d->len);
    lua_pushcfunction(L, sbot_traceback);
    lua_insert(L, 3);
    if (lua_pcall(L, d->closed ? 1 : 2, 0, 3) != LUA_OK)
        log_protected_error(L, d->closed ? "websocket on_close" : "websocket on_message");
    return 0;
}

static void deliver(struct websocket *w, const uint8_t *msg, size_t len, int closed)
{
    lua_State *L = w->srv->L;
    struct deliver d = {w, msg, len, closed};
    if (!L || w->self_ref == LUA_NOREF)
        return;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 4))
        return;
    lua_pushcfunction(L, pdeliver);
    lua_pushlightuserdata(L, &d);
    lua_pcall(L, 1, 0, 0);
    lua_settop(L, top);
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    struct websocket *w = user;
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        if (!w->closing)
            deliver(w, arg->msg, arg->msg_length, 0);
}

/* Free one websocket: tell Lua (when notify), release everything. */
static void ws_free(struct websocket *w, int notify)
{
    struct server *srv = w->srv;
    if (notify)
        deliver(w, NULL, 0, 1);
    for (struct websocket **p = &srv->sockets; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    if (w->urh) {
        tls_drain(w); /* libmicrohttpd ends the session at once (gnutls_bye) */
        MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
    }
    if (w->box)
        *w->box = NULL;
    drop_ref(srv, &w->co_ref);
    drop_ref(srv, &w->self_ref);
    free(w->extra);
    free(w);
}

static const struct wslay_event_callbacks ws_callbacks = {
    ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL, ws_on_msg};

struct ws_open {
    struct request *r;
    const char *extra;
    size_t extra_len;
    MHD_socket sock;
    struct MHD_UpgradeResponseHandle *urh;
    gnutls_session_t tls; /* NULL without TLS */
    int tcp_fd;
    int attached; /* the urh now belongs to a struct websocket */
};

/* Protected: create the websocket object and start its function. */
static int pws_open(lua_State *L)
{
    struct ws_open *o = lua_touserdata(L, 1);
    struct server *srv = o->r->srv;
    lua_settop(L, 0);
    struct websocket **box = lua_newuserdatauv(L, sizeof *box, 1); /* 1 */
    *box = NULL;
    luaL_setmetatable(L, WS_MT);
    lua_createtable(L, 0, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->r->req_ref);
    lua_setfield(L, -2, "request");
    lua_setiuservalue(L, 1, 1);
    struct websocket *w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "httpd: out of memory for a websocket");
    w->srv = srv;
    w->sock = o->sock;
    w->urh = o->urh;
    w->tls = o->tls;
    w->tcp_fd = o->tcp_fd;
    if (w->tls)
        gnutls_record_cork(w->tls);
    w->self_ref = w->co_ref = LUA_NOREF;
    w->box = box;
    *box = w;
    w->next = srv->sockets;
    srv->sockets = w;
    o->attached = 1; /* from here on ws_free releases everything */
    lua_pushvalue(L, 1);
    w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (o->extra_len) {
        w->extra = malloc(o->extra_len);
        if (!w->extra) {
            w->closing = 1;
            return luaL_error(L, "httpd: out of memory for a websocket");
        }
        memcpy(w->extra, o->extra, o->extra_len);
        w->extra_len = o->extra_len;
    }
    int fl = fcntl(w->sock, F_GETFL, 0);
    fcntl(w->sock, F_SETFL, fl | O_NONBLOCK);
    if (wslay_event_context_server_init(&w->ctx, &ws_callbacks, w) != 0) {
        w->ctx = NULL;
        w->closing = 1;
        return luaL_error(L, "httpd: cannot set up WebSocket framing");
    }
    /* the websocket function runs as a coroutine so ws:recv() can wait */
    lua_State *co = lua_newthread(L);
    w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->r->upgrade_ref);
    lua_pushvalue(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->r->req_ref);
    drop_ref(srv, &o->r->upgrade_ref);
    drop_ref(srv, &o->r->req_ref);
    lua_xmove(L, co, 3);
    /* ws_resume expects the function and arguments already on co; resume
     * with nargs = 2 (function below them). */
    int nres = 0;
    w->waiting = 0;
    int st = lua_resume(co, L, 2, &nres);
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        w->waiting = 1;
    } else if (st != LUA_OK) {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
        log_protected_error(L, "websocket function");
        wslay_event_queue_close(w->ctx, 1011, NULL, 0);
        w->closing = 1;
        drop_ref(srv, &w->co_ref);
    } else {
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, "on_message");
        if (!lua_isfunction(L, -1)) {
            wslay_event_queue_close(w->ctx, 1000, NULL, 0);
            w->closing = 1;
        }
        drop_ref(srv, &w->co_ref);
    }
    return 0;
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
    struct request *r = cls;
    lua_State *L = r->srv->L;
    struct ws_open o = {r, extra_in, extra_in_size, sock, urh, NULL, -1, 0};
    (void)con_cls;
    /* libmicrohttpd turned Nagle back on for the connection; an upgraded
     * connection sends small frames that would each wait for the peer's
     * delayed ACK (~40 ms) */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        int one = 1;
        o.tcp_fd = ci->connect_fd;
        setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (r->srv->tls) {
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!ci || !ci->tls_session || o.tcp_fd < 0) {
            sbot_log(L, SBOT_ERROR, "httpd: no TLS session for an upgraded connection: closing it");
            MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
            return;
        }
        o.tls = ci->tls_session;
    }
    if (L && lua_checkstack(L, 4)) {
        int top = lua_gettop(L);
        lua_pushcfunction(L, pws_open);
        lua_pushlightuserdata(L, &o);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK)
            log_protected_error(L, "websocket open");
        lua_settop(L, top);
    }
    if (!o.attached)
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* ---- server object --------------------------------------------------------- */

static struct server *check_server(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SERVER_MT);
}

static struct server *check_open_server(lua_State *L, int idx)
{
    struct server *srv = check_server(L, idx);
    if (!srv->d)
        luaL_error(L, "httpd: the server is closed");
    return srv;
}

static void server_release(struct server *srv, lua_State *L, int notify)
{
    if (!srv->d)
        return;
    lua_State *saved = srv->L;
    srv->L = L;
    while (srv->sockets) {
        struct websocket *w = srv->sockets;
        if (w->ctx && !wslay_event_get_close_sent(w->ctx)) { /* 1001: going away */
            wslay_event_queue_close(w->ctx, 1001, NULL, 0);
            wslay_event_send(w->ctx); /* best effort: the socket is non-blocking */
        }
        ws_free(w, notify);
    }
    /* parked connections must be resumed before the daemon stops */
    for (struct request *r = srv->delayed; r; r = r->next_delayed)
        MHD_resume_connection(r->conn);
    srv->delayed = NULL;
    MHD_stop_daemon(srv->d);
    srv->d = NULL;
    drop_ref(srv, &srv->handler_ref);
    drop_ref(srv, &srv->ws_fn_ref);
    drop_ref(srv, &srv->self_ref);
    free(srv->cert);
    free(srv->key);
    srv->cert = srv->key = NULL;
    srv->L = saved;
}

static int server_gc(lua_State *L)
{
    server_release(check_server(L, 1), L, 0);
    return 0;
}

static int server_close(lua_State *L)
{
    struct server *srv = check_server(L, 1);
    if (srv->in_poll)
        srv->close_pending = 1; /* closed when the poll round ends */
    else
        server_release(srv, L, 1);
    return 0;
}

static int server_port(lua_State *L)
{
    struct server *srv = check_open_server(L, 1);
    lua_pushinteger(L, srv->port);
    return 1;
}

static int server_url(lua_State *L)
{
    struct server *srv = check_open_server(L, 1);
    lua_pushfstring(L, srv->ipv6 ? "%s://[%s]:%d" : "%s://%s:%d", srv->tls ? "https" : "http",
                    srv->host, (int)srv->port);
    return 1;
}

static int server_tostring(lua_State *L)
{
    struct server *srv = check_server(L, 1);
    if (srv->d)
        lua_pushfstring(L, srv->ipv6 ? "httpd server ([%s]:%d%s)" : "httpd server (%s:%d%s)", srv->host,
                        (int)srv->port, srv->tls ? ", tls" : "");
    else
        lua_pushliteral(L, "httpd server (closed)");
    return 1;
}

static double opt_number_field(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "httpd.listen: '%s' must be a number, got %s", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *tls_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "httpd.listen: tls.%s must be a PEM string, got %s", k,
                   luaL_typename(L, -1));
    return lua_tostring(L, -1); /* stays on the stack */
}

static int l_listen(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "host");
    const char *host = luaL_optstring(L, -1, "127.0.0.1");
    double port = opt_number_field(L, 1, "port", 0);
    if (port < 0 || port > 65535 || port != (double)(int)port)
        return luaL_error(L, "httpd.listen: port must be an integer 0..65535 (0 = any free port)");
    double max_body = opt_number_field(L, 1, "max_body", 16 * 1024 * 1024);
    double timeout = opt_number_field(L, 1, "timeout", 60);
    if (!(max_body >= 0) || !(timeout >= 0))
        return luaL_error(L, "httpd.listen: max_body and timeout must not be negative");
    if (max_body > 1e15)
        max_body = 1e15; /* "no limit" (math.huge): keep the size_t conversion defined */
    if (timeout > 86400 * 365)
        timeout = 86400 * 365;
    lua_getfield(L, 1, "handler");
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "httpd.listen: 'handler' must be a function, got %s",
                          luaL_typename(L, -1));
    int handler_idx = lua_gettop(L);
    lua_getfield(L, 1, "websocket");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        return luaL_error(L, "httpd.listen: 'websocket' must be a function, got %s",
                          luaL_typename(L, -1));
    int ws_idx = lua_gettop(L);
    const char *cert = NULL, *key = NULL;
    lua_getfield(L, 1, "tls");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return luaL_error(L, "httpd.listen: 'tls' must be a table {cert=, key=}");
        int t = lua_gettop(L);
        cert = tls_field(L, t, "cert");
        key = tls_field(L, t, "key");
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int ipv6 = 0;
    struct sockaddr_in *in4 = (void *)&ss;
    struct sockaddr_in6 *in6 = (void *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((unsigned short)port);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)port);
        ipv6 = 1;
    } else {
        return luaL_error(L, "httpd.listen: host '%s' is not an IPv4 or IPv6 address", host);
    }

    struct server *srv = lua_newuserdatauv(L, sizeof *srv, 0);
    memset(srv, 0, sizeof *srv);
    srv->self_ref = srv->handler_ref = srv->ws_fn_ref = LUA_NOREF;
    luaL_setmetatable(L, SERVER_MT);
    int srv_idx = lua_gettop(L);
    snprintf(srv->host, sizeof srv->host, "%s", host);
    srv->tls = cert != NULL;
    srv->ipv6 = ipv6;
    srv->max_body = (size_t)max_body;
    if (cert && !MHD_is_feature_supported(MHD_FEATURE_TLS))
        return luaL_error(L, "httpd.listen: this libmicrohttpd has no TLS support");
    if (cert) {
        srv->cert = strdup(cert);
        srv->key = strdup(key);
        if (!srv->cert || !srv->key) {
            free(srv->cert);
            free(srv->key);
            srv->cert = srv->key = NULL;
            return luaL_error(L, "httpd.listen: out of memory");
        }
    }

    struct MHD_OptionItem opts[10];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, srv};
    if (cert) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->key};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    /* a client that goes away mid-response must not kill the process (as
     * libmicrohttpd's documentation asks); only a default handler is replaced */
    struct sigaction sa_pipe;
    if (sigaction(SIGPIPE, NULL, &sa_pipe) == 0 && sa_pipe.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE;
    if (cert)
        flags |= MHD_USE_TLS;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    srv->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, srv,
                              MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!srv->d) {
        /* the code (docs/errors.md): the errno name of the call that failed
         * (EADDRINUSE, EADDRNOTAVAIL, EACCES, ...); "tls" when the TLS
         * library refused the certificate or key */
        int e = srv->last_errno ? srv->last_errno : errno;
        int tls_failed = cert && !srv->last_errno && strstr(srv->last_error, "TLS") != NULL;
        free(srv->cert);
        free(srv->key);
        srv->cert = srv->key = NULL;
        lua_pushnil(L);
        lua_pushfstring(L, "httpd.listen: cannot listen on %s port %d: %s", host, (int)port,
                        srv->last_error[0] ? srv->last_error : strerror(e ? e : EIO));
        lua_pushstring(L, tls_failed ? "tls" : sbot_errno_name(e ? e : EIO));
        return 3;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    srv->port = (unsigned)port;
    if (di && getsockname(di->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
        srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                      : ((struct sockaddr_in *)&bound)->sin_port);
    lua_pushvalue(L, handler_idx);
    srv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_isnil(L, ws_idx)) {
        lua_pushvalue(L, ws_idx);
        srv->ws_fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushvalue(L, srv_idx);
    srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* open servers stay alive */
    lua_pushvalue(L, srv_idx);
    return 1;
}

/* ---- the event loop -------------------------------------------------------- */

static int collect_servers(lua_State *L, int idx, struct server **list)
{
    int n = 0;
    if (luaL_testudata(L, idx, SERVER_MT)) {
        list[n++] = lua_touserdata(L, idx);
        return n;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "httpd.poll: expected a server or a list of servers, got %s",
                   luaL_typename(L, idx));
    lua_Integer len = luaL_len(L, idx);
    if (len > MAX_POLL_SERVERS)
        luaL_error(L, "httpd.poll: at most %d servers", MAX_POLL_SERVERS);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        struct server *s = luaL_testudata(L, -1, SERVER_MT);
        if (!s)
            luaL_error(L, "httpd.poll: servers[%d] is not an httpd server", (int)i);
        lua_pop(L, 1);
        list[n++] = s;
    }
    return n;
}

/* One round: wait up to timeout seconds for activity on any of the servers,
 * then run every handler that is ready. */
static void poll_round(lua_State *L, struct server **list, int n, double timeout)
{
    fd_set rs, wsets, es;
    MHD_socket maxfd = -1;
    FD_ZERO(&rs);
    FD_ZERO(&wsets);
    FD_ZERO(&es);
    double wait = timeout, now = now_mono();
    for (int i = 0; i < n; i++)
        if (list[i]->d && list[i]->in_poll)
            luaL_error(L, "httpd.poll: server %s:%d is already being polled (called from a handler?)",
                       list[i]->host, (int)list[i]->port);
    for (int i = 0; i < n; i++) {
        struct server *s = list[i];
        if (!s->d)
            continue;
        if (MHD_get_fdset2(s->d, &rs, &wsets, &es, &maxfd, FD_SETSIZE) != MHD_YES)
            luaL_error(L, "httpd.poll: too many open sockets for select()");
        MHD_UNSIGNED_LONG_LONG to;
        if (MHD_get_timeout(s->d, &to) == MHD_YES && to / 1000.0 < wait)
            wait = to / 1000.0;
        for (struct request *r = s->delayed; r; r = r->next_delayed)
            if (r->due - now < wait)
                wait = r->due - now;
        for (struct websocket *w = s->sockets; w; w = w->next) {
            if (w->closing || !w->ctx)
                continue;
            if (w->sock >= FD_SETSIZE)
                luaL_error(L, "httpd.poll: too many open sockets for select()");
            if (w->extra_off < w->extra_len)
                wait = 0;
            if (wslay_event_want_read(w->ctx))
                FD_SET(w->sock, &rs);
            /* over TLS frames go to the session, not the socket pair (which
             * is always writable): what waits (the rest of a flush, or frames
             * held back by the backlog) waits for room on the TCP socket */
            if (wslay_event_want_write(w->ctx) && !w->tls)
                FD_SET(w->sock, &wsets);
            if (w->sock > maxfd)
                maxfd = w->sock;
            if (w->tls && (gnutls_record_check_corked(w->tls) > 0 || wslay_event_want_write(w->ctx)) &&
                w->tcp_fd < FD_SETSIZE) {
                FD_SET(w->tcp_fd, &wsets);
                if (w->tcp_fd > maxfd)
                    maxfd = w->tcp_fd;
            }
        }
    }
    if (wait < 0)
        wait = 0;
    struct timeval tv;
    tv.tv_sec = (time_t)wait;
    tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
    int ready = select(maxfd + 1, &rs, &wsets, &es, &tv);
    if (ready < 0) {
        if (errno != EINTR)
            luaL_error(L, "httpd.poll: select: %s", strerror(errno));
        FD_ZERO(&rs);
        FD_ZERO(&wsets);
        FD_ZERO(&es);
    }
    /* no Lua error may escape from here until in_poll is cleared */
    for (int i = 0; i < n; i++)
        if (list[i]->d) {
            list[i]->in_poll = 1;
            list[i]->L = L;
        }
    for (int i = 0; i < n; i++) {
        struct server *s = list[i];
        if (!s->d)
            continue;
        MHD_run_from_select(s->d, &rs, &wsets, &es);
    }
    for (int i = 0; i < n; i++) {
        struct server *s = list[i];
        if (!s->d)
            continue;
        for (struct websocket *w = s->sockets; w; w = w->next) {
            if (w->closing || !w->ctx)
                continue;
            if ((FD_ISSET(w->sock, &rs) || w->extra_off < w->extra_len) &&
                wslay_event_recv(w->ctx) != 0)
                w->closing = 1;
            if (!w->closing && wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0)
                w->closing = 1;
            if (!w->closing && tls_flush(w) != 0)
                w->closing = 1;
            if (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx))
                w->closing = 1;
            if (wslay_event_get_close_sent(w->ctx) && !wslay_event_want_write(w->ctx))
                w->closing = 1;
        }
        now = now_mono();
        int resumed = 0;
        for (struct request **p = &s->delayed; *p;) {
            struct request *r = *p;
            if (r->due <= now) {
                *p = r->next_delayed;
                r->next_delayed = NULL;
                MHD_resume_connection(r->conn);
                resumed = 1;
            } else {
                p = &r->next_delayed;
            }
        }
        if (resumed)
            MHD_run(s->d);
        for (struct websocket *w = s->sockets, *next; w; w = next) {
            next = w->next;
            if (w->closing) {
                if (w->ctx && wslay_event_want_write(w->ctx))
                    wslay_event_send(w->ctx); /* the close frame, best effort */
                ws_free(w, 1);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        struct server *s = list[i];
        s->in_poll = 0;
        if (s->d && s->close_pending) {
            s->close_pending = 0;
            server_release(s, L, 1);
        }
        s->L = NULL;
    }
}

static int l_poll(lua_State *L)
{
    struct server *list[MAX_POLL_SERVERS];
    int n = collect_servers(L, 1, list);
    double timeout = luaL_optnumber(L, 2, 0);
    poll_round(L, list, n, timeout);
    lua_pushboolean(L, 1);
    return 1;
}

static int server_step(lua_State *L)
{
    struct server *srv = check_open_server(L, 1);
    double timeout = luaL_optnumber(L, 2, 0);
    poll_round(L, &srv, 1, timeout);
    lua_pushboolean(L, 1);
    return 1;
}

static int noop(lua_State *L)
{
    (void)L;
    return 0;
}

/* httpd.run(servers, {until = fn, tick = seconds}) */
static int l_run(lua_State *L)
{
    struct server *list[MAX_POLL_SERVERS];
    int n = collect_servers(L, 1, list);
    double tick = 0.25;
    int until_idx = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "tick");
        if (!lua_isnil(L, -1)) {
            tick = luaL_checknumber(L, -1);
            if (tick < 0)
                return luaL_error(L, "httpd.run: tick must not be negative");
        }
        lua_getfield(L, 2, "until");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            return luaL_error(L, "httpd.run: 'until' must be a function");
        if (lua_isfunction(L, -1))
            until_idx = lua_gettop(L);
    }
    for (;;) {
        int open = 0;
        for (int i = 0; i < n; i++)
            open += list[i]->d != NULL;
        if (!open)
            break; /* every server closed: nothing left to serve */
        poll_round(L, list, n, tick);
        /* a Lua call each round lets the Ctrl-C hook stop the loop */
        if (until_idx) {
            lua_pushvalue(L, until_idx);
            lua_call(L, 0, 1);
            int done = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (done)
                break;
        } else {
            lua_pushcfunction(L, noop);
            lua_call(L, 0, 0);
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- module functions ------------------------------------------------------ */

static int l_upgrade(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_newuserdatauv(L, 0, 1);
    luaL_setmetatable(L, UPGRADE_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_reset(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&reset_sentinel);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, now_mono());
    return 1;
}

/* ---- websocket methods ----------------------------------------------------- */

static struct websocket *ws_get(lua_State *L)
{
    struct websocket **box = luaL_checkudata(L, 1, WS_MT);
    return *box;
}

static int ws_send(lua_State *L)
{
    struct websocket *w = ws_get(L);
    size_t len;
    const char *msg = luaL_checklstring(L, 2, &len);
    static const char *const kinds[] = {"text", "binary", NULL};
    int kind = luaL_checkoption(L, 3, "text", kinds);
    if (!w || w->closing || !w->ctx || wslay_event_get_close_sent(w->ctx)) {
        lua_pushnil(L);
        lua_pushliteral(L, "websocket send: the connection is closed");
        lua_pushliteral(L, "closed");
        return 3;
    }
    struct wslay_event_msg m = {kind ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
                                (const uint8_t *)msg, len};
    if (wslay_event_queue_msg(w->ctx, &m) != 0 || wslay_event_send(w->ctx) != 0 || tls_flush(w) != 0) {
        w->closing = 1;
        lua_pushnil(L);
        lua_pushliteral(L, "websocket send: the connection failed");
        lua_pushliteral(L, "closed");
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int ws_recv(lua_State *L)
{
    struct websocket *w = ws_get(L);
    if (!w || w->closing) {
        lua_pushnil(L);
        lua_pushliteral(L, "websocket closed");
        return 2;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->co_ref);
    int own = lua_tothread(L, -1) == L;
    lua_pop(L, 1);
    if (!own || !lua_isyieldable(L))
        return luaL_error(L, "websocket recv: call it from the websocket function itself "
                             "(it runs as a coroutine); use ws.on_message elsewhere");
    w->waiting = 1;
    return lua_yield(L, 0);
}

static int ws_close(lua_State *L)
{
    struct websocket *w = ws_get(L);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t rlen;
    const char *reason = luaL_optlstring(L, 3, "", &rlen);
    if (rlen > 123)
        return luaL_error(L, "websocket close: reason longer than 123 bytes");
    if (w && !w->closing && w->ctx) {
        if (!wslay_event_get_close_sent(w->ctx))
            wslay_event_queue_close(w->ctx, (uint16_t)code, (const uint8_t *)reason, rlen);
        wslay_event_send(w->ctx);
        w->closing = 1;
    }
    return 0;
}

static int ws_is_open(lua_State *L)
{
    struct websocket *w = ws_get(L);
    lua_pushboolean(L, w && !w->closing);
    return 1;
}

static int ws_gc(lua_State *L)
{
    struct websocket **box = luaL_checkudata(L, 1, WS_MT);
    if (*box) {
        struct websocket *w = *box;
        struct server *srv = w->srv;
        lua_State *saved = srv->L;
        srv->L = L; /* borrowed for the unrefs */
        w->box = NULL;
        *box = NULL;
        ws_free(w, 0);
        srv->L = saved;
    }
    return 0;
}

/* __close: what ws:close() does (a 1000 close frame; the connection is
 * freed at the end of the poll round). Freeing it here, as __gc does, would
 * pull it from under the poll round, the websocket function or the wslay
 * callback that is running the code leaving the <close> scope. */
static int ws_close_meta(lua_State *L)
{
    struct websocket *w = ws_get(L);
    if (w && !w->closing && w->ctx) {
        if (!wslay_event_get_close_sent(w->ctx))
            wslay_event_queue_close(w->ctx, 1000, NULL, 0);
        wslay_event_send(w->ctx);
        w->closing = 1;
    }
    return 0;
}

static const luaL_Reg ws_methods[] = {
    {"send", ws_send}, {"recv", ws_recv}, {"close", ws_close}, {"is_open", ws_is_open},
    {NULL, NULL}};

static int ws_index(lua_State *L)
{
    luaL_checkudata(L, 1, WS_MT);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

static int ws_newindex(lua_State *L)
{
    luaL_checkudata(L, 1, WS_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_settable(L, -3);
    return 0;
}

static int ws_tostring(lua_State *L)
{
    struct websocket *w = ws_get(L);
    lua_pushstring(L, w && !w->closing ? "websocket (open)" : "websocket (closed)");
    return 1;
}

/* ---- self-signed certificates ---------------------------------------------- */

struct certjob {
    EVP_PKEY *pkey;
    X509 *x;
    BIO *bio;
};

static int certjob_release(lua_State *L)
{
    struct certjob *j = luaL_checkudata(L, 1, CERTJOB_MT);
    EVP_PKEY_free(j->pkey);
    X509_free(j->x);
    BIO_free(j->bio);
    j->pkey = NULL;
    j->x = NULL;
    j->bio = NULL;
    return 0;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Push the PEM text written to j->bio so far, then empty it. */
static void push_bio(lua_State *L, struct certjob *j)
{
    char *data;
    long n = BIO_get_mem_data(j->bio, &data);
    lua_pushlstring(L, data, (size_t)n);
    (void)BIO_reset(j->bio);
}

/* httpd.selfsigned{cn = "name", ips = {"127.0.0.1"}, dns = {...}, days = 365}
 * -> {cert = PEM, key = PEM, pin_sha256 = base64(sha256(SubjectPublicKeyInfo))} */
static int l_selfsigned(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "cn"); /* 2 */
    const char *cn = luaL_optstring(L, 2, "sbot-lab");
    if (!*cn || strpbrk(cn, ",\n/"))
        return luaL_error(L, "httpd.selfsigned: cn '%s' is not a valid host name", cn);
    lua_Integer days = 365;
    lua_getfield(L, 1, "days");
    if (!lua_isnil(L, -1))
        days = luaL_checkinteger(L, -1);
    if (days < 1 || days > 36500)
        return luaL_error(L, "httpd.selfsigned: days must be 1..36500");
    lua_settop(L, 2);
    /* subjectAltName, accumulated in slot 3: DNS:cn, DNS:each dns, IP:each ip */
    lua_pushfstring(L, "DNS:%s", cn); /* 3 */
    static const char *const lists[] = {"dns", "ips"};
    for (int li = 0; li < 2; li++) {
        lua_getfield(L, 1, lists[li]); /* 4 */
        if (!lua_isnil(L, 4)) {
            if (!lua_istable(L, 4))
                return luaL_error(L, "httpd.selfsigned: '%s' must be a list of strings", lists[li]);
            lua_Integer len = (lua_Integer)lua_rawlen(L, 4);
            for (lua_Integer i = 1; i <= len; i++) {
                lua_rawgeti(L, 4, i); /* 5 */
                const char *v = lua_type(L, 5) == LUA_TSTRING ? lua_tostring(L, 5) : NULL;
                unsigned char tmp[16];
                if (!v || !*v || strpbrk(v, ",\n") ||
                    (li == 1 && inet_pton(AF_INET, v, tmp) != 1 && inet_pton(AF_INET6, v, tmp) != 1))
                    return luaL_error(L, "httpd.selfsigned: %s[%d] is not a valid %s", lists[li],
                                      (int)i, li ? "IP address" : "DNS name");
                lua_pushfstring(L, "%s,%s:%s", lua_tostring(L, 3), li ? "IP" : "DNS", v);
                lua_replace(L, 3);
                lua_settop(L, 4);
            }
        }
        lua_settop(L, 3);
    }
    const char *san = lua_tostring(L, 3);

    /* every OpenSSL object lives in a userdata, so an error leaks nothing */
    struct certjob *j = lua_newuserdatauv(L, sizeof *j, 0); /* 4 */
    memset(j, 0, sizeof *j);
    luaL_setmetatable(L, CERTJOB_MT);
    unsigned char serial[16];
    const char *fail = NULL;
    j->pkey = EVP_EC_gen("P-256");
    j->x = X509_new();
    j->bio = BIO_new(BIO_s_mem());
    if (!j->pkey || !j->x || !j->bio)
        fail = "cannot allocate the key or certificate";
    else if (RAND_bytes(serial, sizeof serial) != 1)
        fail = "no randomness for the serial number";
    if (!fail) {
        serial[0] &= 0x7f; /* positive */
        BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
        ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
        int ok = sn && X509_set_serialNumber(j->x, sn);
        ASN1_INTEGER_free(sn);
        BN_free(bn);
        X509_NAME *name = X509_get_subject_name(j->x);
        if (!ok || !X509_set_version(j->x, 2) ||
            !X509_gmtime_adj(X509_getm_notBefore(j->x), -3600) ||
            !X509_gmtime_adj(X509_getm_notAfter(j->x), (long)days * 86400) ||
            !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0) ||
            !X509_set_issuer_name(j->x, name) || !X509_set_pubkey(j->x, j->pkey) ||
            !add_ext(j->x, NID_subject_alt_name, san) ||
            !add_ext(j->x, NID_basic_constraints, "critical,CA:TRUE") ||
            !add_ext(j->x, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
            !add_ext(j->x, NID_ext_key_usage, "serverAuth") ||
            !add_ext(j->x, NID_subject_key_identifier, "hash") ||
            !X509_sign(j->x, j->pkey, EVP_sha256()))
            fail = "cannot build the certificate";
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    char pin[64];
    if (!fail) {
        unsigned char *der = NULL;
        int dlen = i2d_PUBKEY(j->pkey, &der);
        if (dlen <= 0)
            fail = "cannot encode the public key";
        else {
            SHA256(der, (size_t)dlen, md);
            OPENSSL_free(der);
            sbot_base64(md, SHA256_DIGEST_LENGTH, pin);
        }
    }
    if (fail) {
        lua_pushcfunction(L, certjob_release);
        lua_pushvalue(L, 4);
        lua_call(L, 1, 0);
        return luaL_error(L, "httpd.selfsigned: %s", fail);
    }
    lua_createtable(L, 0, 3); /* 5 */
    if (!PEM_write_bio_X509(j->bio, j->x))
        fail = "cannot write the certificate";
    else {
        push_bio(L, j);
        lua_setfield(L, 5, "cert");
        if (!PEM_write_bio_PrivateKey(j->bio, j->pkey, NULL, NULL, 0, NULL, NULL))
            fail = "cannot write the key";
        else {
            push_bio(L, j);
            lua_setfield(L, 5, "key");
        }
    }
    lua_pushstring(L, pin);
    lua_setfield(L, 5, "pin_sha256");
    lua_pushcfunction(L, certjob_release);
    lua_pushvalue(L, 4);
    lua_call(L, 1, 0);
    if (fail)
        return luaL_error(L, "httpd.selfsigned: %s", fail);
    return 1;
}

static const luaL_Reg server_methods[] = {
    {"port", server_port}, {"url", server_url}, {"close", server_close},
    {"step", server_step}, {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"listen", l_listen}, {"poll", l_poll}, {"run", l_run}, {"upgrade", l_upgrade},
    {"reset", l_reset}, {"now", l_now}, {"selfsigned", l_selfsigned}, {NULL, NULL}};

int luaopen_sbot_httpd(lua_State *L)
{
    if (luaL_newmetatable(L, SERVER_MT)) {
        luaL_newlib(L, server_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, server_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, server_gc);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, server_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, WS_MT)) {
        luaL_newlib(L, ws_methods);
        lua_setfield(L, -2, "methods");
        lua_pushcfunction(L, ws_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ws_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, ws_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, ws_close_meta);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, ws_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newmetatable(L, UPGRADE_MT);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CERTJOB_MT)) {
        lua_pushcfunction(L, certjob_release);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
