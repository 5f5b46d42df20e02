/* redfish.c: sbot.redfish - a Redfish client for BMCs (Dell iDRAC 8/9 first,
 * any conforming service), on sbot.http's C API (sbot_http_request/batch).
 *
 * C does the protocol mechanics: the session (found at the service root's
 * Links.Sessions, never at a built path), its one re-authentication and its
 * deletion on every way out (close, __close, __gc, errors, Ctrl-C), retries
 * (GET on 5xx and connection failures with backoff; any method on 503 SYS518;
 * 503 RAC0218 is an error, never a retry storm), login retries only where no
 * session can have been created (and a cleanup of a leaked one when it can be
 * proven ours), If-Match PATCH with one re-read on 412, job polling, and the
 * Redfish error shapes (ExtendedInfo as a list or one object). Requests carry
 * JSON encoded here, which is also where secret objects are revealed: the
 * client is the only code that reveals the BMC password.
 * Policy (what to change, in which order) belongs to the components. */
#define _GNU_SOURCE
#include "luax.h"
#include "sbot.h"
#include "util.h"

#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int luaopen_sbot_redfish(lua_State *L);
int luaopen_sbot_http(lua_State *L);

#define CLIENT_MT "sbot.redfish.client"
#define ARRAY_MT SBOT_JSON_ARRAY_MT

/* ---- JSON --------------------------------------------------------------------
 * The shared codec (engine/jsonc.c): decoding is strict JSON with integers
 * kept, arrays marked with the "sbot.json.array" metatable (what sbot.json
 * treats as an array), so [] stays [] when a document is written out again;
 * null is cjson's null (a NULL light userdata), like sbot.json. Encoding sorts
 * object keys, and reveals secret objects (registering the value with the log
 * redactor): the body is what goes on the wire. */

static int json_decode(lua_State *L, const char *s, size_t len, const char **err)
{
    return sbot_json_decode(L, s, len, 0, err, NULL);
}

/* Push the JSON text of the value at idx (a request body: secrets revealed). */
static void json_encode(lua_State *L, int idx)
{
    sbot_json_encode(L, idx, SBOT_JSON_REVEAL | SBOT_JSON_REGISTER, "sbot.redfish: request body");
}

/* ---- the client ------------------------------------------------------------ */

enum auth_mode { AUTH_NONE = 0, AUTH_SESSION, AUTH_BASIC };

struct client {
    int open;           /* 1 from a successful connect until close */
    int auth;           /* enum auth_mode */
    char *host;         /* as given: "name-or-ip[:port]" (for messages) */
    char *base;         /* "https://host" */
    char *token;        /* X-Auth-Token of the session (wiped on free) */
    char *session;      /* the session's path (from Location) */
    double timeout, connect_timeout, login_timeout, not_ready_wait, close_timeout;
    int per_host, max_retries;
    double backoff_base, backoff_cap;
    long requests, retries, reauths, logins;
};

/* Uservalue slots of the client userdata (a table). */
#define UV_USER "user"
#define UV_PASSWORD "password"
#define UV_TLS "tls"
#define UV_ROOT "root"
#define UV_INFO "info"
#define UV_SESSIONS "sessions"

static const char *const connect_keys[] = {"host", "user", "password", "tls", "per_host", "timeout",
                                           "connect_timeout", "login_timeout", "not_ready_wait",
                                           "retries", "auth", "close_timeout", NULL};

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static struct client *check_client(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, CLIENT_MT);
}

static struct client *check_open(lua_State *L, int idx, const char *fn)
{
    struct client *c = check_client(L, idx);
    if (!c->open)
        luaL_error(L, "redfish: %s on a closed client", fn);
    return c;
}

static char *dup_or_die(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        luaL_error(L, "sbot.redfish: out of memory");
    return d;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int noop(lua_State *L)
{
    (void)L;
    return 0;
}

/* Calling a function lets the runtime's Ctrl-C hook fire ("interrupted!")
 * while C code waits. */
static void check_interrupt(lua_State *L)
{
    lua_pushcfunction(L, noop);
    lua_call(L, 0, 0);
}

static void sleep_interruptible(lua_State *L, double secs)
{
    check_interrupt(L);
    sbot_sleep(secs);
    check_interrupt(L);
}

/* Exponential backoff with full jitter: a random time in
 * [base/2, min(cap, base * 2^(n-1))]. */
static double backoff(struct client *c, int attempt)
{
    double hi = c->backoff_base * pow(2.0, attempt - 1);
    if (hi > c->backoff_cap)
        hi = c->backoff_cap;
    double lo = c->backoff_base / 2;
    if (lo > hi)
        lo = hi;
    return lo + (hi - lo) * ((double)arc4random() / 4294967296.0);
}

/* Push the uservalue field k of the client at idx. */
static int uv_get(lua_State *L, int idx, const char *k)
{
    lua_getiuservalue(L, idx, 1);
    int t = lua_getfield(L, -1, k);
    lua_remove(L, -2);
    return t;
}

/* uv[k] = value on top (popped). */
static void uv_set(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, k);
    lua_pop(L, 1);
}

/* The Dell/DMTF MessageId without its registry prefix ("IDRAC.1.6.LC068"
 * -> "LC068", "Base.1.2.PropertyUnknown" -> "PropertyUnknown"). */
static void push_short_id(lua_State *L, const char *id)
{
    const char *dot = strrchr(id, '.');
    lua_pushstring(L, dot ? dot + 1 : id);
}

/* Add one ExtendedInfo entry (table at info) to acc: acc.code (the first
 * id) and acc[n] = "ID: Message". */
static void add_info(lua_State *L, int acc, int info, lua_Integer *nm)
{
    int top = lua_gettop(L);
    const char *id = NULL, *msg = NULL;
    if (lua_getfield(L, info, "MessageId") == LUA_TSTRING)
        id = lua_tostring(L, -1);
    if (lua_getfield(L, info, "Message") == LUA_TSTRING)
        msg = lua_tostring(L, -1);
    if (id || msg) {
        if (id)
            push_short_id(L, id);
        else
            lua_pushliteral(L, "");
        if (lua_getfield(L, acc, "code") == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_setfield(L, acc, "code");
        }
        lua_pop(L, 1);
        if (id && msg)
            lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), msg);
        else if (msg)
            lua_pushstring(L, msg);
        else
            lua_pushvalue(L, -1);
        lua_rawseti(L, acc, ++*nm);
    }
    lua_settop(L, top);
}

/* From a decoded Redfish error document at doc: pushes code and message
 * (strings; code may be "") and returns 1, or pushes nothing and returns 0.
 * Reads error.@Message.ExtendedInfo (one object or a list), else
 * error.code/message, else a top-level @Message.ExtendedInfo. */
static int push_redfish_error(lua_State *L, int doc)
{
    doc = lua_absindex(L, doc);
    if (!lua_istable(L, doc))
        return 0;
    int top = lua_gettop(L);
    lua_newtable(L);
    int acc = lua_gettop(L);
    lua_Integer nm = 0;
    int err = 0;
    if (lua_getfield(L, doc, "error") == LUA_TTABLE)
        err = lua_gettop(L);
    lua_getfield(L, err ? err : doc, "@Message.ExtendedInfo");
    int ext = lua_gettop(L);
    if (lua_istable(L, ext)) {
        lua_getfield(L, ext, "MessageId");
        lua_getfield(L, ext, "Message");
        int single = !lua_isnil(L, -1) || !lua_isnil(L, -2);
        lua_pop(L, 2);
        if (single) {
            add_info(L, acc, ext, &nm);
        } else {
            lua_Integer n = (lua_Integer)lua_rawlen(L, ext);
            for (lua_Integer i = 1; i <= n; i++) {
                if (lua_rawgeti(L, ext, i) == LUA_TTABLE)
                    add_info(L, acc, lua_gettop(L), &nm);
                lua_pop(L, 1);
            }
        }
    }
    if (nm == 0 && err) {
        if (lua_getfield(L, err, "code") == LUA_TSTRING)
            push_short_id(L, lua_tostring(L, -1));
        else
            lua_pushliteral(L, "");
        lua_setfield(L, acc, "code");
        lua_pop(L, 1);
        if (lua_getfield(L, err, "message") == LUA_TSTRING) {
            lua_rawseti(L, acc, ++nm);
        } else {
            lua_pop(L, 1);
        }
    }
    if (nm == 0) {
        lua_settop(L, top);
        return 0;
    }
    lua_getfield(L, acc, "code");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= nm; i++) {
        if (i > 1)
            luaL_addstring(&b, "; ");
        lua_rawgeti(L, acc, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_copy(L, -2, top + 1);
    lua_copy(L, -1, top + 2);
    lua_settop(L, top + 2);
    return 1;
}

/* The MessageId (short) of the response table at res, pushed (or nil). */
static void push_response_id(lua_State *L, int res)
{
    res = lua_absindex(L, res);
    int top = lua_gettop(L);
    lua_getfield(L, res, "json");
    if (push_redfish_error(L, top + 1)) {
        lua_pop(L, 1); /* the message; the code is on top */
        if (lua_rawlen(L, -1) == 0) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
    } else {
        lua_pushnil(L);
    }
    lua_copy(L, -1, top + 1);
    lua_settop(L, top + 1);
}

/* For an HTTP response at res with an error status: pushes nil, message,
 * code, status (returns 4). The message is "ID: text (METHOD path on host)";
 * without a MessageId the code is the HTTP status itself (an integer: the
 * device's answer, as sbot.ws gives for a refused upgrade; docs/errors.md). */
static int push_http_error(lua_State *L, struct client *c, int res, const char *method, const char *path)
{
    res = lua_absindex(L, res);
    int top = lua_gettop(L);
    lua_getfield(L, res, "status");
    int status = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, res, "json");
    int have = push_redfish_error(L, -1);
    const char *code = have ? lua_tostring(L, -2) : NULL;
    const char *msg = have ? lua_tostring(L, -1) : NULL;
    lua_pushnil(L);
    if (code && *code) {
        lua_pushfstring(L, "%s (%s %s on %s)", msg, method, path, c->host);
        lua_pushstring(L, code);
    } else {
        if (msg && *msg)
            lua_pushfstring(L, "HTTP %d: %s (%s %s on %s)", status, msg, method, path, c->host);
        else
            lua_pushfstring(L, "HTTP %d (%s %s on %s)", status, method, path, c->host);
        lua_pushinteger(L, status);
    }
    lua_pushinteger(L, status);
    for (int i = 0; i < 4; i++)
        lua_copy(L, -4 + i, top + 1 + i);
    lua_settop(L, top + 4);
    return 4;
}

/* Resolve a path the service gave (an @odata.id or a Location) against the
 * client's base. Absolute URLs are accepted only on the same origin: a token
 * never goes to another host. Pushes the URL, or nil and a message. */
static int push_url(lua_State *L, struct client *c, const char *path)
{
    if (path[0] == '/') {
        lua_pushfstring(L, "%s%s", c->base, path);
        return 1;
    }
    size_t bl = strlen(c->base);
    if (strncasecmp(path, c->base, bl) == 0 && (path[bl] == '/' || path[bl] == '\0')) {
        lua_pushstring(L, path);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "refusing to follow %s: not a path on %s", path, c->base);
    return 2;
}

/* The path part of a same-origin URL or a path (for messages and sessions). */
static const char *path_of(struct client *c, const char *url)
{
    size_t bl = strlen(c->base);
    if (strncasecmp(url, c->base, bl) == 0)
        return url[bl] ? url + bl : "/";
    const char *p = strstr(url, "://");
    if (p) {
        p = strchr(p + 3, '/');
        return p ? p : "/";
    }
    return url;
}

struct reqopt {
    int auth;          /* AUTH_* used for this request (AUTH_NONE: no credentials) */
    int retry_safe;    /* retry on transport errors and 5xx like a GET */
    int no_reauth;     /* do not log in again on 401 */
    double timeout;    /* 0: the client's */
};

static int do_login(lua_State *L, int ci);

/* Build the sbot.http request table for one attempt and push it. body: index
 * of the encoded body string (0: none). headers: index of extra headers (0). */
static void push_http_req(lua_State *L, struct client *c, int ci, const char *method, int url, int body,
                          int headers, const struct reqopt *o)
{
    lua_createtable(L, 0, 10);
    int t = lua_gettop(L);
    lua_pushstring(L, method);
    lua_setfield(L, t, "method");
    lua_pushvalue(L, url);
    lua_setfield(L, t, "url");
    lua_createtable(L, 0, 6);
    int h = lua_gettop(L);
    lua_pushliteral(L, "application/json");
    lua_setfield(L, h, "Accept");
    lua_pushliteral(L, "4.0");
    lua_setfield(L, h, "OData-Version");
    if (body) {
        lua_pushliteral(L, "application/json");
        lua_setfield(L, h, "Content-Type");
        lua_pushvalue(L, body);
        lua_setfield(L, t, "body");
    }
    if (o->auth == AUTH_SESSION && c->token) {
        lua_pushstring(L, c->token);
        lua_setfield(L, h, "X-Auth-Token");
    }
    if (headers) {
        lua_pushnil(L);
        while (lua_next(L, headers)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, h);
        }
    }
    lua_setfield(L, t, "headers");
    if (o->auth == AUTH_BASIC) {
        lua_createtable(L, 0, 2);
        uv_get(L, ci, UV_USER);
        lua_setfield(L, -2, "user");
        uv_get(L, ci, UV_PASSWORD);
        lua_setfield(L, -2, "password");
        lua_setfield(L, t, "basic_auth");
    }
    if (uv_get(L, ci, UV_TLS) != LUA_TNIL)
        lua_setfield(L, t, "tls");
    else
        lua_pop(L, 1);
    lua_pushnumber(L, o->timeout > 0 ? o->timeout : c->timeout);
    lua_setfield(L, t, "timeout");
    lua_pushnumber(L, c->connect_timeout);
    lua_setfield(L, t, "connect_timeout");
    lua_pushboolean(L, 0);
    lua_setfield(L, t, "retries");
}

/* A transport failure that provably happened before the request was sent. */
static int unsent(const char *code, const char *msg)
{
    return strcmp(code, "connect") == 0 || strcmp(code, "resolve") == 0 ||
           (strcmp(code, "timeout") == 0 && msg && strstr(msg, "(connect_timeout)"));
}

static int retryable_transport(const char *code)
{
    return strcmp(code, "connect") == 0 || strcmp(code, "closed") == 0 || strcmp(code, "io") == 0 ||
           strcmp(code, "timeout") == 0;
}

/* Decode res.body as JSON into res.json (when it is JSON). */
static void attach_json(lua_State *L, int res)
{
    lua_getfield(L, res, "body");
    size_t len = 0;
    const char *b = lua_tolstring(L, -1, &len);
    if (b) {
        size_t i = 0;
        while (i < len && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t'))
            i++;
        if (i < len && (b[i] == '{' || b[i] == '[')) {
            const char *err;
            if (json_decode(L, b, len, &err))
                lua_setfield(L, res, "json");
        }
    }
    lua_pop(L, 1);
}

/* One logical request with the client's retry policy. Pushes the response
 * table (with .json) or nil, message, code. method/path as strings; body:
 * index of an encoded JSON string (0 = none); headers: table index (0). */
static int rf_request(lua_State *L, int ci, const char *method, const char *path, int body, int headers,
                      const struct reqopt *o)
{
    struct client *c = check_client(L, ci);
    ci = lua_absindex(L, ci);
    body = body ? lua_absindex(L, body) : 0;
    headers = headers ? lua_absindex(L, headers) : 0;
    int top = lua_gettop(L);
    if (push_url(L, c, path) == 2) {
        /* a link that is not a path on this service: not in the format a
         * request takes (the token never leaves for another host) */
        lua_pushliteral(L, "invalid");
        return 3;
    }
    int url = lua_gettop(L);
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int safe = is_get || o->retry_safe;
    int attempt = 0, reauthed = o->no_reauth;
    double not_ready_until = now_mono() + c->not_ready_wait;
    struct reqopt cur = *o;
    for (;;) {
        attempt++;
        c->requests++;
        push_http_req(L, c, ci, method, url, body, headers, &cur);
        int n = sbot_http_request(L, -1);
        int res = lua_gettop(L) - n + 1;
        if (n == 3) {
            const char *msg = lua_tostring(L, res + 1);
            const char *code = lua_tostring(L, res + 2);
            if (code && (safe || unsent(code, msg)) && retryable_transport(code) &&
                attempt <= c->max_retries) {
                sbot_log(L, SBOT_DEBUG, "redfish %s %s on %s: %s; retrying", method, path, c->host, msg);
                lua_settop(L, url);
                c->retries++;
                sleep_interruptible(L, backoff(c, attempt));
                continue;
            }
            /* nil, msg, code: keep them, drop the request table */
            lua_remove(L, res - 1);
            lua_remove(L, url);
            return 3;
        }
        attach_json(L, res);
        lua_getfield(L, res, "status");
        int status = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (status >= 500) {
            push_response_id(L, res);
            const char *id = lua_tostring(L, -1);
            int sys518 = status == 503 && id && strcmp(id, "SYS518") == 0;
            int rac0218 = status == 503 && id && strcmp(id, "RAC0218") == 0;
            lua_pop(L, 1);
            double wait = backoff(c, attempt);
            if (sys518 && now_mono() + wait < not_ready_until) {
                /* not ready: nothing was done, any method may be repeated */
                sbot_log(L, SBOT_DEBUG, "redfish %s %s on %s: 503 SYS518 (not ready); retrying", method,
                         path, c->host);
                lua_settop(L, url);
                c->retries++;
                sleep_interruptible(L, wait);
                attempt = attempt > 3 ? 3 : attempt; /* keep polling at a steady pace */
                continue;
            }
            if (!rac0218 && !sys518 && safe && attempt <= c->max_retries &&
                (status == 500 || status == 502 || status == 503 || status == 504)) {
                sbot_log(L, SBOT_DEBUG, "redfish %s %s on %s: HTTP %d; retrying", method, path, c->host,
                         status);
                lua_settop(L, url);
                c->retries++;
                sleep_interruptible(L, wait);
                continue;
            }
        }
        if (status == 401 && cur.auth == AUTH_SESSION && !reauthed) {
            /* the session expired (or was deleted): log in again, once */
            reauthed = 1;
            sbot_log(L, SBOT_INFO, "redfish: session on %s no longer valid (401 on %s %s); logging in again",
                     c->host, method, path);
            lua_settop(L, url);
            c->reauths++;
            int ln = do_login(L, ci);
            if (ln != 1) {
                /* nil, msg, code[, status] */
                int first = lua_gettop(L) - ln + 1;
                lua_remove(L, url);
                (void)first;
                return ln;
            }
            lua_pop(L, 1);
            continue;
        }
        /* the response: drop the request table and the url */
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return 1;
    }
}

/* rf_request, then an error status becomes nil, message, code, status.
 * Pushes the response (1) or the failure (3 or 4). */
static int rf_call(lua_State *L, int ci, const char *method, const char *path, int body, int headers,
                   const struct reqopt *o)
{
    struct client *c = check_client(L, ci);
    int n = rf_request(L, ci, method, path, body, headers, o);
    if (n != 1)
        return n;
    lua_getfield(L, -1, "status");
    int status = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (status >= 400) {
        int res = lua_gettop(L);
        int k = push_http_error(L, c, res, method, path);
        lua_remove(L, res);
        return k;
    }
    return 1;
}

static struct reqopt default_opt(struct client *c)
{
    struct reqopt o = {c->auth, 0, 0, 0};
    return o;
}

/* ---- sessions ------------------------------------------------------------------ */

/* Push the set {member @odata.id = true} of the sessions collection, read
 * with Basic auth (no session needed), or nil when it cannot be read. */
static void push_session_set(lua_State *L, int ci, const char *spath)
{
    struct client *c = check_client(L, ci);
    struct reqopt o = {AUTH_BASIC, 1, 1, 0};
    int n = rf_call(L, ci, "GET", spath, 0, 0, &o);
    if (n != 1 || lua_getfield(L, -1, "json") != LUA_TTABLE) {
        lua_settop(L, lua_gettop(L) - n - (n == 1 ? 1 : 0));
        lua_pushnil(L);
        (void)c;
        return;
    }
    int doc = lua_gettop(L);
    lua_newtable(L);
    int set = lua_gettop(L);
    if (lua_getfield(L, doc, "Members") == LUA_TTABLE) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= m; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                if (lua_getfield(L, -1, "@odata.id") == LUA_TSTRING) {
                    lua_pushboolean(L, 1);
                    lua_rawset(L, set);
                } else {
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_replace(L, doc - 1); /* the set where the response was */
    lua_settop(L, doc - 1);
}

/* After a login whose outcome is unknown (the request went out, no answer
 * came): find sessions of our user that appeared since the snapshot `before`
 * (a set at index before). If there are at most `ambiguous` of them, they are
 * ours: delete them and return how many. -1: cannot tell (no snapshot, no
 * listing); -2: more new sessions than our attempts (another client of the
 * same user logged in meanwhile; nothing is deleted). */
static int cleanup_unknown_login(lua_State *L, int ci, const char *spath, int before, int ambiguous)
{
    struct client *c = check_client(L, ci);
    if (!before || lua_isnil(L, before))
        return -1;
    int top = lua_gettop(L);
    push_session_set(L, ci, spath);
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        return -1;
    }
    int now = lua_gettop(L);
    lua_newtable(L);
    int ours = lua_gettop(L);
    lua_Integer n = 0;
    uv_get(L, ci, UV_USER);
    const char *user = lua_tostring(L, -1);
    int userpos = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, now)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, before) == LUA_TNIL) {
            lua_pop(L, 1);
            struct reqopt o = {AUTH_BASIC, 1, 1, 0};
            const char *p = lua_tostring(L, -1);
            int k = rf_call(L, ci, "GET", p, 0, 0, &o);
            int mine = 0;
            if (k == 1 && lua_getfield(L, -1, "json") == LUA_TTABLE) {
                if (lua_getfield(L, -1, "UserName") == LUA_TSTRING && user &&
                    strcmp(lua_tostring(L, -1), user) == 0)
                    mine = 1;
                lua_pop(L, 1);
            }
            lua_settop(L, userpos + 1); /* keep the key */
            if (mine) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, ours, ++n);
            }
        } else {
            lua_pop(L, 1);
        }
    }
    if (n > ambiguous) {
        sbot_log(L, SBOT_WARN,
                 "redfish: login to %s had no answer; %lld new session(s) of user %s appeared, more than "
                 "this client's %d unanswered login(s): another client logged in meanwhile, so none is "
                 "deleted (each expires after the BMC's session timeout)",
                 c->host, (long long)n, user ? user : "?", ambiguous);
        lua_settop(L, top);
        return -2;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, ours, i);
        const char *p = lua_tostring(L, -1);
        struct reqopt o = {AUTH_BASIC, 1, 1, c->close_timeout};
        int k = rf_call(L, ci, "DELETE", p, 0, 0, &o);
        if (k == 1)
            sbot_log(L, SBOT_WARN, "redfish: login to %s had no answer but created session %s; deleted it",
                     c->host, p);
        else
            sbot_log(L, SBOT_WARN, "redfish: login to %s left session %s, which could not be deleted (%s); "
                     "it expires after the BMC's session timeout", c->host, p, lua_tostring(L, -k + 1));
        lua_settop(L, userpos);
    }
    lua_settop(L, top);
    return (int)n;
}

/* Log in at the sessions collection (uv.sessions). Pushes true, or nil,
 * message, code[, status]. Retries only where no session can exist: the
 * request was not sent, or the BMC answered 503 (SYS518 not ready, or busy).
 * RAC0218 (too many sessions) and 401 are errors at once. */
static int do_login(lua_State *L, int ci)
{
    ci = lua_absindex(L, ci);
    struct client *c = check_client(L, ci);
    int top = lua_gettop(L);
    wipe_free(c->token);
    c->token = NULL;
    free(c->session);
    c->session = NULL;
    uv_get(L, ci, UV_SESSIONS);
    const char *spath = lua_tostring(L, -1);
    int spos = lua_gettop(L);
    if (!spath)
        return luaL_error(L, "redfish: no sessions collection to log in at");
    lua_createtable(L, 0, 2);
    uv_get(L, ci, UV_USER);
    lua_setfield(L, -2, "UserName");
    uv_get(L, ci, UV_PASSWORD);
    lua_setfield(L, -2, "Password");
    json_encode(L, -1); /* the password is revealed here, and only here */
    lua_remove(L, -2);
    int body = lua_gettop(L);
    push_session_set(L, ci, spath);
    int before = lua_gettop(L);
    if (push_url(L, c, spath) == 2)
        return luaL_error(L, "redfish: %s", lua_tostring(L, -1));
    int url = lua_gettop(L);
    int ambiguous = 0;
    double not_ready_until = now_mono() + c->not_ready_wait;
    struct reqopt o = {AUTH_NONE, 0, 1, c->login_timeout};
    for (int attempt = 1;; attempt++) {
        c->requests++;
        push_http_req(L, c, ci, "POST", url, body, 0, &o);
        int n = sbot_http_request(L, -1);
        int res = lua_gettop(L) - n + 1;
        if (n == 3) {
            const char *msg = lua_tostring(L, res + 1);
            const char *code = lua_tostring(L, res + 2);
            int can_retry = attempt <= c->max_retries && retryable_transport(code ? code : "");
            if (code && unsent(code, msg)) {
                if (can_retry) {
                    lua_settop(L, url);
                    c->retries++;
                    sleep_interruptible(L, backoff(c, attempt));
                    continue;
                }
            } else if (code) {
                /* the request went out and no answer came: a session may exist */
                ambiguous++;
                lua_pushvalue(L, res + 1);
                lua_pushvalue(L, res + 2);
                int found = cleanup_unknown_login(L, ci, spath, before, ambiguous);
                if (found >= 0) {
                    ambiguous -= found;
                    if (ambiguous == 0 && can_retry) {
                        sbot_log(L, SBOT_INFO, "redfish: login to %s: %s; no session left behind, retrying",
                                 c->host, msg);
                        lua_settop(L, url);
                        c->retries++;
                        sleep_interruptible(L, backoff(c, attempt));
                        continue;
                    }
                }
                if (ambiguous > 0) {
                    lua_pushnil(L);
                    lua_pushfstring(L,
                                    "login to %s: %s; the request may have created a session that cannot be "
                                    "identified as this client's: it occupies one of the BMC's few sessions "
                                    "until the session timeout",
                                    c->host, lua_tostring(L, -3));
                    lua_pushvalue(L, -3);
                    lua_copy(L, -3, top + 1);
                    lua_copy(L, -2, top + 2);
                    lua_copy(L, -1, top + 3);
                    lua_settop(L, top + 3);
                    return 3;
                }
                lua_pop(L, 2);
            }
            lua_pushnil(L);
            lua_pushfstring(L, "login to %s: %s", c->host, msg);
            lua_pushvalue(L, res + 2);
            lua_copy(L, -3, top + 1);
            lua_copy(L, -2, top + 2);
            lua_copy(L, -1, top + 3);
            lua_settop(L, top + 3);
            return 3;
        }
        attach_json(L, res);
        lua_getfield(L, res, "status");
        int status = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (status == 200 || status == 201) {
            lua_getfield(L, res, "headers");
            int h = lua_gettop(L);
            if (lua_getfield(L, h, "x-auth-token") == LUA_TTABLE)
                lua_rawgeti(L, -1, (lua_Integer)lua_rawlen(L, -1));
            const char *tok = lua_tostring(L, -1);
            if (!tok || !*tok) {
                lua_pushnil(L);
                lua_pushfstring(L, "login to %s: the answer to POST %s has no X-Auth-Token", c->host, spath);
                lua_pushliteral(L, "protocol");
                lua_copy(L, -3, top + 1);
                lua_copy(L, -2, top + 2);
                lua_copy(L, -1, top + 3);
                lua_settop(L, top + 3);
                return 3;
            }
            c->token = dup_or_die(L, tok);
            sbot_log_add_secret(L, tok, strlen(tok));
            lua_settop(L, h);
            const char *loc = NULL;
            if (lua_getfield(L, h, "location") == LUA_TTABLE)
                lua_rawgeti(L, -1, (lua_Integer)lua_rawlen(L, -1));
            loc = lua_tostring(L, -1);
            if (!loc && lua_getfield(L, res, "json") == LUA_TTABLE &&
                lua_getfield(L, -1, "@odata.id") == LUA_TSTRING)
                loc = lua_tostring(L, -1);
            if (loc)
                c->session = dup_or_die(L, path_of(c, loc));
            else
                sbot_log(L, SBOT_WARN, "redfish: login to %s gave no session Location: the session cannot be "
                         "deleted on close and expires after the BMC's session timeout", c->host);
            c->logins++;
            lua_settop(L, top);
            lua_pushboolean(L, 1);
            return 1;
        }
        push_response_id(L, res);
        const char *id = lua_tostring(L, -1);
        int sys518 = status == 503 && id && strcmp(id, "SYS518") == 0;
        int rac0218 = status == 503 && id && strcmp(id, "RAC0218") == 0;
        lua_pop(L, 1);
        if (status == 503 && !rac0218 &&
            (sys518 ? now_mono() < not_ready_until : attempt <= c->max_retries)) {
            /* a 503 created nothing: retry */
            lua_settop(L, url);
            c->retries++;
            sleep_interruptible(L, backoff(c, attempt > 4 ? 4 : attempt));
            continue;
        }
        int k = push_http_error(L, c, res, "POST", spath);
        const char *why = rac0218 ? "; the BMC holds its maximum number of sessions: close unused ones "
                                    "(leaked sessions expire after the session timeout, 30 minutes on an iDRAC)"
                          : (status == 401 || status == 403) ? "; check the user name and password of this BMC"
                                                             : "";
        lua_pushfstring(L, "login to %s: %s%s", c->host, lua_tostring(L, -k + 1), why);
        lua_replace(L, -k);
        for (int i = 0; i < k; i++)
            lua_copy(L, -k + i, top + 1 + i);
        lua_settop(L, top + k);
        (void)spos;
        return k;
    }
}

/* Delete the session (if any) and forget the token. Pushes true, or nil and
 * a message (also logged: a leaked session counts against the BMC's few). */
static int do_logout(lua_State *L, int ci)
{
    ci = lua_absindex(L, ci);
    struct client *c = check_client(L, ci);
    c->open = 0;
    if (!c->token) {
        free(c->session);
        c->session = NULL;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (!c->session) {
        wipe_free(c->token);
        c->token = NULL;
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushstring(L, c->session);
    const char *sp = lua_tostring(L, -1);
    struct reqopt o = {AUTH_SESSION, 1, 1, c->close_timeout};
    int n = rf_request(L, ci, "DELETE", sp, 0, 0, &o);
    int ok = 0;
    const char *why = NULL;
    if (n == 1) {
        lua_getfield(L, -1, "status");
        int st = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        /* 404 / 401: the session is gone already (expired or deleted) */
        ok = (st >= 200 && st < 300) || st == 404 || st == 401;
        if (!ok)
            why = lua_pushfstring(L, "HTTP %d", st);
    } else {
        why = lua_tostring(L, -n + 1);
    }
    wipe_free(c->token);
    c->token = NULL;
    if (ok) {
        free(c->session);
        c->session = NULL;
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "could not delete Redfish session %s on %s (%s): it stays until the BMC times it out",
                    c->session, c->host, why ? why : "?");
    sbot_log(L, SBOT_WARN, "%s", lua_tostring(L, -1));
    free(c->session);
    c->session = NULL;
    return 2;
}

/* ---- options --------------------------------------------------------------------- */

static void check_keys(lua_State *L, int t, const char *const allowed[], const char *where)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; allowed[i]; i++)
                if (strcmp(lua_tostring(L, -1), allowed[i]) == 0)
                    ok = 1;
        if (!ok) {
            lua_pushvalue(L, -1);
            luaL_error(L, "%s: unknown option '%s'", where, luaL_tolstring(L, -1, NULL));
        }
    }
}

static double opt_num(lua_State *L, int t, const char *k, double dflt, double lo, double hi, const char *where)
{
    int ty = lua_getfield(L, t, k);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    if (ty != LUA_TNUMBER)
        luaL_error(L, "%s: '%s' must be a number, got %s", where, k, luaL_typename(L, -1));
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= lo && v <= hi))
        luaL_error(L, "%s: '%s' must be between %f and %f, got %f", where, k, lo, hi, v);
    return v;
}

/* ---- connect ------------------------------------------------------------------------ */

static int client_gc(lua_State *L);

/* The link target t[k]["@odata.id"] of the table at t, pushed (or nil). */
static void push_link(lua_State *L, int t, const char *k)
{
    t = lua_absindex(L, t);
    if (lua_getfield(L, t, k) == LUA_TTABLE) {
        lua_getfield(L, -1, "@odata.id");
        lua_remove(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING)
            return;
    }
    lua_pop(L, 1);
    lua_pushnil(L);
}

/* The sessions collection of a service root at root: Links.Sessions, else
 * SessionService.Sessions (read with Basic auth if needed). Pushes the path
 * or nil when the service has no session service. */
static void push_sessions_path(lua_State *L, int ci, int root)
{
    root = lua_absindex(L, root);
    lua_getfield(L, root, "Links");
    if (lua_istable(L, -1)) {
        push_link(L, -1, "Sessions");
        lua_remove(L, -2);
        if (!lua_isnil(L, -1))
            return;
    }
    lua_pop(L, 1);
    push_link(L, root, "SessionService");
    if (lua_isnil(L, -1))
        return;
    const char *ss = lua_tostring(L, -1);
    int pos = lua_gettop(L);
    for (int pass = 0; pass < 2; pass++) {
        struct reqopt o = {pass ? AUTH_BASIC : AUTH_NONE, 1, 1, 0};
        int n = rf_call(L, ci, "GET", ss, 0, 0, &o);
        if (n == 1 && lua_getfield(L, -1, "json") == LUA_TTABLE) {
            push_link(L, -1, "Sessions");
            lua_replace(L, pos);
            lua_settop(L, pos);
            return;
        }
        lua_settop(L, pos);
    }
    lua_pushnil(L);
    lua_replace(L, pos);
}

static int l_connect(lua_State *L)
{
    static const char *const W = "redfish.connect";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_keys(L, 1, connect_keys, W);
    if (lua_getfield(L, 1, "host") != LUA_TSTRING)
        luaL_error(L, "%s: 'host' must be a string (name-or-ip[:port]), got %s", W, luaL_typename(L, -1));
    const char *host = lua_tostring(L, -1);
    if (!*host || strstr(host, "://") || strpbrk(host, " \t\r\n/?#@"))
        luaL_error(L, "%s: 'host' must be name-or-ip[:port], not '%s'", W, host);
    const char *bad_host = sbot_check_hostport(host, 0); /* [v6]:port: the URL is https://<host> */
    if (bad_host)
        luaL_error(L, "%s: 'host' '%s' %s", W, host, bad_host);
    int hostpos = lua_gettop(L);
    int ut = lua_getfield(L, 1, "user");
    if (ut != LUA_TNIL && ut != LUA_TSTRING)
        luaL_error(L, "%s: 'user' must be a string, got %s", W, luaL_typename(L, -1));
    if (ut == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "root");
    }
    int userpos = lua_gettop(L);
    lua_getfield(L, 1, "password");
    int pwpos = lua_gettop(L);
    if (lua_type(L, pwpos) == LUA_TSTRING) {
        size_t pl;
        const char *pw = lua_tolstring(L, pwpos, &pl);
        sbot_log_add_secret(L, pw, pl);
    } else if (!sbot_is_secret(L, pwpos)) {
        luaL_error(L, "%s: 'password' must be a string or a secret, got %s", W, luaL_typename(L, pwpos));
    }
    int tt = lua_getfield(L, 1, "tls");
    if (tt != LUA_TNIL && tt != LUA_TTABLE)
        luaL_error(L, "%s: 'tls' must be a table, got %s", W, luaL_typename(L, -1));
    int tlspos = lua_gettop(L);
    struct sbot_tls tls_check;
    sbot_tls_check(L, tlspos, "redfish.connect: tls", NULL, &tls_check); /* misuse raises now, not at the first request */
    const char *auth = "auto";
    if (lua_getfield(L, 1, "auth") != LUA_TNIL) {
        auth = lua_tostring(L, -1);
        if (!auth || (strcmp(auth, "auto") && strcmp(auth, "session") && strcmp(auth, "basic")))
            luaL_error(L, "%s: 'auth' must be \"auto\", \"session\" or \"basic\"", W);
    }
    double per_host = opt_num(L, 1, "per_host", 2, 1, 16, W);
    double timeout = opt_num(L, 1, "timeout", 60, 0.01, 86400, W);
    double connect_timeout = opt_num(L, 1, "connect_timeout", 10, 0.01, 600, W);
    double login_timeout = opt_num(L, 1, "login_timeout", timeout > 90 ? timeout : 90, 0.01, 86400, W);
    double not_ready_wait = opt_num(L, 1, "not_ready_wait", 300, 0, 86400, W);
    double close_timeout = opt_num(L, 1, "close_timeout", 15, 0.01, 600, W);
    int max_retries = 5;
    double rbase = 0.5, rcap = 8;
    int rt = lua_getfield(L, 1, "retries");
    if (rt == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        max_retries = 0;
    } else if (rt == LUA_TTABLE) {
        int r = lua_gettop(L);
        static const char *const rkeys[] = {"max", "base", "cap", NULL};
        check_keys(L, r, rkeys, "redfish.connect: retries");
        max_retries = (int)opt_num(L, r, "max", 5, 0, 100, "redfish.connect: retries");
        rbase = opt_num(L, r, "base", 0.5, 0, 600, "redfish.connect: retries");
        rcap = opt_num(L, r, "cap", 8, 0, 3600, "redfish.connect: retries");
    } else if (rt != LUA_TNIL) {
        luaL_error(L, "%s: 'retries' must be a table {max, base, cap} or false", W);
    }
    lua_pop(L, 1);

    /* the client, closed until logged in */
    struct client *c = lua_newuserdatauv(L, sizeof *c, 1);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, CLIENT_MT);
    int ci = lua_gettop(L);
    lua_createtable(L, 0, 8);
    lua_setiuservalue(L, ci, 1);
    c->host = dup_or_die(L, host);
    lua_pushfstring(L, "https://%s", host);
    c->base = dup_or_die(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    c->timeout = timeout;
    c->connect_timeout = connect_timeout;
    c->login_timeout = login_timeout;
    c->not_ready_wait = not_ready_wait;
    c->close_timeout = close_timeout;
    c->per_host = (int)per_host;
    c->max_retries = max_retries;
    c->backoff_base = rbase;
    c->backoff_cap = rcap;
    lua_pushvalue(L, userpos);
    uv_set(L, ci, UV_USER);
    lua_pushvalue(L, pwpos);
    uv_set(L, ci, UV_PASSWORD);
    if (!lua_isnil(L, tlspos)) {
        lua_pushvalue(L, tlspos);
        uv_set(L, ci, UV_TLS);
    }
    (void)hostpos;

    /* the service root, unauthenticated */
    struct reqopt o = {AUTH_NONE, 1, 1, 0};
    int n = rf_call(L, ci, "GET", "/redfish/v1", 0, 0, &o);
    if (n != 1) {
        lua_pushfstring(L, "redfish.connect to %s: %s", host, lua_tostring(L, -n + 1));
        lua_replace(L, -n);
        return n;
    }
    if (lua_getfield(L, -1, "json") != LUA_TTABLE) {
        lua_pushnil(L);
        lua_pushfstring(L, "redfish.connect to %s: the service root (GET /redfish/v1) is not a JSON object", host);
        lua_pushliteral(L, "protocol");
        return 3;
    }
    int root = lua_gettop(L);
    lua_pushvalue(L, root);
    uv_set(L, ci, UV_ROOT);
    push_sessions_path(L, ci, root);
    int have_sessions = !lua_isnil(L, -1);
    if (have_sessions) {
        lua_pushvalue(L, -1);
        uv_set(L, ci, UV_SESSIONS);
    }
    lua_pop(L, 1);

    if (strcmp(auth, "basic") == 0 || (strcmp(auth, "auto") == 0 && !have_sessions)) {
        /* no session service: every request carries Basic credentials; check
         * them once on the Systems collection (or the root) */
        c->auth = AUTH_BASIC;
        push_link(L, root, "Systems");
        const char *probe = lua_isnil(L, -1) ? "/redfish/v1" : lua_tostring(L, -1);
        struct reqopt b = {AUTH_BASIC, 1, 1, 0};
        int k = rf_call(L, ci, "GET", probe, 0, 0, &b);
        if (k != 1) {
            lua_pushfstring(L, "login to %s (Basic auth): %s", host, lua_tostring(L, -k + 1));
            lua_replace(L, -k);
            return k;
        }
        lua_pop(L, 2);
    } else {
        if (!have_sessions) {
            lua_pushnil(L);
            lua_pushfstring(L, "redfish.connect to %s: the service offers no session service (no "
                               "Links.Sessions); use auth = \"basic\"", host);
            lua_pushliteral(L, "protocol");
            return 3;
        }
        c->auth = AUTH_SESSION;
        int k = do_login(L, ci);
        if (k != 1)
            return k;
        lua_pop(L, 1);
    }
    c->open = 1;
    lua_pushvalue(L, ci);
    return 1;
}

/* ---- methods -------------------------------------------------------------------------- */

/* Push the meta table {status, etag, location} of the response at res. */
static void push_meta(lua_State *L, int res)
{
    res = lua_absindex(L, res);
    lua_createtable(L, 0, 3);
    lua_getfield(L, res, "status");
    lua_setfield(L, -2, "status");
    lua_getfield(L, res, "headers");
    int h = lua_gettop(L);
    if (lua_getfield(L, h, "etag") == LUA_TTABLE)
        lua_rawgeti(L, -1, 1);
    if (lua_isnil(L, -1) && lua_getfield(L, res, "json") == LUA_TTABLE)
        lua_getfield(L, -1, "@odata.etag");
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_setfield(L, h - 1, "etag");
    }
    lua_settop(L, h);
    if (lua_getfield(L, h, "location") == LUA_TTABLE)
        lua_rawgeti(L, -1, (lua_Integer)lua_rawlen(L, -1));
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_setfield(L, h - 1, "location");
    }
    lua_settop(L, h - 1);
}

static const char *check_path(lua_State *L, int idx, const char *fn)
{
    const char *p = luaL_checkstring(L, idx);
    if (!*p || (p[0] != '/' && strncmp(p, "http", 4) != 0))
        luaL_error(L, "redfish: %s: '%s' is not a path (an @odata.id) or a URL of this service", fn, p);
    return p;
}

/* c:get(path) -> doc, meta | nil, message, code[, status] */
static int m_get(lua_State *L)
{
    struct client *c = check_open(L, 1, "get");
    const char *path = check_path(L, 2, "get");
    lua_settop(L, 2);
    struct reqopt o = default_opt(c);
    int n = rf_call(L, 1, "GET", path, 0, 0, &o);
    if (n != 1)
        return n;
    int res = lua_gettop(L);
    if (lua_getfield(L, res, "json") != LUA_TTABLE) {
        lua_pushnil(L);
        lua_pushfstring(L, "the answer to GET %s on %s is not a JSON document", path, c->host);
        lua_pushliteral(L, "protocol");
        return 3;
    }
    push_meta(L, res);
    return 2;
}

/* c:get_many(paths) -> {{doc = ..., etag, status} | {error = msg, code, status}, ...}
 * Concurrent (sbot.http batch) with at most per_host requests in flight;
 * what failed in a way worth retrying is retried one by one with the full
 * policy (SYS518, 5xx, connection errors, an expired session). */
static int m_get_many(lua_State *L)
{
    struct client *c = check_open(L, 1, "get_many");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        check_path(L, -1, "get_many");
        lua_pop(L, 1);
    }
    lua_createtable(L, (int)n, 0); /* 3: results */
    luaL_setmetatable(L, ARRAY_MT);
    lua_createtable(L, (int)n, 0); /* 4: requests */
    struct reqopt o = default_opt(c);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (push_url(L, c, lua_tostring(L, -1)) == 2)
            return luaL_error(L, "redfish: get_many: %s", lua_tostring(L, -1));
        push_http_req(L, c, 1, "GET", lua_gettop(L), 0, 0, &o);
        lua_rawseti(L, 4, i);
        lua_pop(L, 2);
    }
    lua_createtable(L, 0, 2); /* 5: batch options */
    lua_pushinteger(L, c->per_host);
    lua_setfield(L, 5, "per_host");
    c->requests += (long)n;
    sbot_http_batch(L, 4, 5); /* 6: responses */
    int again = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 6, i);
        int r = lua_gettop(L);
        int redo = 0;
        if (lua_getfield(L, r, "status") == LUA_TNIL) {
            lua_pop(L, 1);
            lua_getfield(L, r, "code");
            const char *code = lua_tostring(L, -1);
            redo = code && retryable_transport(code);
            lua_pop(L, 1);
        } else {
            int status = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            redo = status == 401 || status == 500 || status == 502 || status == 503 || status == 504;
        }
        if (redo) {
            again = 1;
            lua_pushboolean(L, 0);
            lua_rawseti(L, 3, i); /* placeholder: done below */
        } else if (lua_getfield(L, r, "status") == LUA_TNIL) {
            lua_pop(L, 1);
            lua_createtable(L, 0, 2);
            lua_getfield(L, r, "error");
            lua_setfield(L, -2, "error");
            lua_getfield(L, r, "code");
            lua_setfield(L, -2, "code");
            lua_rawseti(L, 3, i);
        } else {
            lua_pop(L, 1);
            attach_json(L, r);
            lua_getfield(L, r, "status");
            int status = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            lua_rawgeti(L, 2, i);
            const char *p = lua_tostring(L, -1);
            if (status >= 400) {
                int k = push_http_error(L, c, r, "GET", p);
                int e = lua_gettop(L) - k + 1; /* nil, message, code, status */
                lua_createtable(L, 0, 3);
                lua_pushvalue(L, e + 1);
                lua_setfield(L, -2, "error");
                lua_pushvalue(L, e + 2);
                lua_setfield(L, -2, "code");
                lua_pushvalue(L, e + 3);
                lua_setfield(L, -2, "status");
                lua_rawseti(L, 3, i);
                lua_pop(L, k);
            } else if (lua_getfield(L, r, "json") != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_createtable(L, 0, 3);
                lua_pushfstring(L, "the answer to GET %s on %s is not a JSON document", p, c->host);
                lua_setfield(L, -2, "error");
                lua_pushliteral(L, "protocol");
                lua_setfield(L, -2, "code");
                lua_pushinteger(L, status);
                lua_setfield(L, -2, "status");
                lua_rawseti(L, 3, i);
            } else {
                lua_pop(L, 1);
                push_meta(L, r);
                lua_getfield(L, r, "json");
                lua_setfield(L, -2, "doc");
                lua_rawseti(L, 3, i);
            }
            lua_pop(L, 1); /* path */
        }
        lua_settop(L, 6);
    }
    if (again) {
        /* one by one with the full policy (a 401 logs in again, once) */
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 3, i);
            int todo = lua_isboolean(L, -1);
            lua_pop(L, 1);
            if (!todo)
                continue;
            lua_pushcfunction(L, m_get);
            lua_pushvalue(L, 1);
            lua_rawgeti(L, 2, i);
            lua_call(L, 2, 4);
            lua_createtable(L, 0, 4);
            int e = lua_gettop(L);
            if (lua_istable(L, e - 4)) {
                lua_pushvalue(L, e - 4);
                lua_setfield(L, e, "doc");
                lua_getfield(L, e - 3, "status");
                lua_setfield(L, e, "status");
                lua_getfield(L, e - 3, "etag");
                lua_setfield(L, e, "etag");
                lua_getfield(L, e - 3, "location");
                lua_setfield(L, e, "location");
            } else {
                lua_pushvalue(L, e - 3);
                lua_setfield(L, e, "error");
                lua_pushvalue(L, e - 2);
                lua_setfield(L, e, "code");
                lua_pushvalue(L, e - 1);
                lua_setfield(L, e, "status");
            }
            lua_rawseti(L, 3, i);
            lua_settop(L, 6);
        }
    }
    lua_settop(L, 3);
    return 1;
}

/* The result of a write: {status, location, job_id, body}. */
static void push_write_result(lua_State *L, int res)
{
    res = lua_absindex(L, res);
    lua_createtable(L, 0, 4);
    int t = lua_gettop(L);
    lua_getfield(L, res, "status");
    lua_setfield(L, t, "status");
    if (lua_getfield(L, res, "json") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_getfield(L, res, "body");
    }
    lua_setfield(L, t, "body");
    push_meta(L, res);
    lua_getfield(L, -1, "location");
    const char *loc = lua_tostring(L, -1);
    if (loc) {
        lua_pushvalue(L, -1);
        lua_setfield(L, t, "location");
        /* a job the write created: the last segment of a Jobs/Tasks location */
        const char *last = strrchr(loc, '/');
        if (last && last[1] && (strstr(loc, "/Jobs/") || strstr(loc, "/Tasks/") || strncmp(last + 1, "JID_", 4) == 0)) {
            lua_pushstring(L, last + 1);
            lua_setfield(L, t, "job_id");
        }
    }
    lua_settop(L, t);
}

static int write_call(lua_State *L, const char *method, const char *path, int body, int headers)
{
    struct client *c = check_client(L, 1);
    struct reqopt o = default_opt(c);
    int n = rf_call(L, 1, method, path, body, headers, &o);
    if (n != 1)
        return n;
    push_write_result(L, -1);
    return 1;
}

/* c:post(path, body) -> {status, location, job_id, body} | nil, message, code[, status] */
static int m_post(lua_State *L)
{
    check_open(L, 1, "post");
    const char *path = check_path(L, 2, "post");
    lua_settop(L, 3);
    if (lua_isnil(L, 3)) {
        lua_newtable(L);
        lua_replace(L, 3);
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    json_encode(L, 3); /* 4 */
    return write_call(L, "POST", path, 4, 0);
}

/* c:delete(path) -> {status, ...} | nil, message, code[, status] */
static int m_delete(lua_State *L)
{
    check_open(L, 1, "delete");
    const char *path = check_path(L, 2, "delete");
    lua_settop(L, 2);
    return write_call(L, "DELETE", path, 0, 0);
}

/* The ETag of path, read now (pushed, or nil when the resource has none).
 * Returns 1, or the failure (nil, message, code[, status]) count. */
static int read_etag(lua_State *L, const char *path)
{
    lua_pushcfunction(L, m_get);
    lua_pushvalue(L, 1);
    lua_pushstring(L, path);
    lua_call(L, 2, 4);
    if (lua_isnil(L, -4))
        return 4; /* nil, message, code, status (or nil) */
    lua_getfield(L, -3, "etag");
    lua_replace(L, -5);
    lua_pop(L, 3);
    return 1;
}

/* c:patch(path, body [, {etag = ...}]) -> {status, location, job_id, body} | nil, ...
 * Sends If-Match with the resource's ETag (the one given, else read now);
 * on 412 reads the resource again and retries once. */
static int m_patch(lua_State *L)
{
    struct client *c = check_open(L, 1, "patch");
    const char *path = check_path(L, 2, "patch");
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 4);
    if (!lua_isnil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        static const char *const pk[] = {"etag", NULL};
        check_keys(L, 4, pk, "redfish: patch options");
        lua_getfield(L, 4, "etag");
    } else {
        lua_pushnil(L);
    }
    /* 5: etag */
    if (lua_isnil(L, 5)) {
        int k = read_etag(L, path);
        if (k != 1)
            return k;
        lua_replace(L, 5);
    }
    json_encode(L, 3); /* 6 */
    for (int attempt = 1;; attempt++) {
        lua_settop(L, 6);
        lua_createtable(L, 0, 1); /* 7: headers */
        if (lua_type(L, 5) == LUA_TSTRING) {
            lua_pushvalue(L, 5);
            lua_setfield(L, 7, "If-Match");
        }
        struct reqopt o = default_opt(c);
        int n = rf_request(L, 1, "PATCH", path, 6, 7, &o);
        if (n != 1)
            return n;
        lua_getfield(L, -1, "status");
        int status = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (status == 412 && attempt == 1) {
            /* someone changed it since we read it: read again, retry once */
            sbot_log(L, SBOT_DEBUG, "redfish: PATCH %s on %s: 412, reading it again", path, c->host);
            int k = read_etag(L, path);
            if (k != 1)
                return k;
            lua_replace(L, 5);
            continue;
        }
        if (status >= 400)
            return push_http_error(L, c, lua_gettop(L), "PATCH", path);
        push_write_result(L, -1);
        return 1;
    }
}

/* ---- identification ------------------------------------------------------------------ */

/* Dell generation from the manager firmware (and RedfishVersion for 1.x):
 * iDRAC 7/8 run 2.x firmware, iDRAC 9 3.x..7.x, iDRAC 10 1.x with a Redfish
 * version of 1.18 or later. 0 when it cannot be told. */
static int dell_generation(const char *fw, const char *rv)
{
    if (!fw)
        return 0;
    int major = atoi(fw);
    if (major == 2)
        return 8;
    if (major >= 3 && major <= 7)
        return 9;
    if (major == 1 && rv) {
        int a = 0, b = 0;
        if (sscanf(rv, "%d.%d", &a, &b) == 2 && (a > 1 || b >= 18))
            return 10;
    }
    return 0;
}

/* Push the BMC manager document (and leave its path below it): the member
 * of the Managers collection whose ManagerType is BMC, else the first.
 * Returns 2, or the failure count (nil, message, code[, status]). */
static int push_bmc_manager(lua_State *L, int root)
{
    struct client *c = check_client(L, 1);
    int top = lua_gettop(L);
    push_link(L, root, "Managers");
    if (lua_isnil(L, -1)) {
        lua_pushnil(L);
        lua_pushfstring(L, "the service root of %s links no Managers collection", c->host);
        lua_pushliteral(L, "protocol");
        return 3;
    }
    int coll = lua_gettop(L);
    lua_pushcfunction(L, m_get);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, coll);
    lua_call(L, 2, 4);
    if (lua_isnil(L, coll + 1))
        return 4;
    lua_settop(L, coll + 1);
    lua_createtable(L, 4, 0); /* member paths */
    int paths = lua_gettop(L);
    if (lua_getfield(L, coll + 1, "Members") == LUA_TTABLE) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= m; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                if (lua_getfield(L, -1, "@odata.id") == LUA_TSTRING)
                    lua_rawseti(L, paths, (lua_Integer)lua_rawlen(L, paths) + 1);
                else
                    lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, paths);
    if (lua_rawlen(L, paths) == 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "the Managers collection of %s lists no manager", c->host);
        lua_pushliteral(L, "protocol");
        return 3;
    }
    lua_pushcfunction(L, m_get_many);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, paths);
    lua_call(L, 2, 1);
    int got = lua_gettop(L);
    int pick = 0;
    lua_Integer m = (lua_Integer)lua_rawlen(L, got);
    for (lua_Integer i = 1; i <= m && !pick; i++) {
        lua_rawgeti(L, got, i);
        if (lua_getfield(L, -1, "doc") == LUA_TTABLE) {
            lua_getfield(L, -1, "ManagerType");
            if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "BMC") == 0)
                pick = (int)i;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    if (!pick)
        pick = 1;
    lua_rawgeti(L, got, pick);
    if (lua_getfield(L, -1, "doc") != LUA_TTABLE) {
        lua_getfield(L, -2, "error");
        lua_getfield(L, -3, "code");
        lua_pushnil(L);
        lua_insert(L, -3);
        return 3;
    }
    lua_rawgeti(L, paths, pick);
    lua_insert(L, -2);
    lua_copy(L, -2, top + 1);
    lua_copy(L, -1, top + 2);
    lua_settop(L, top + 2);
    return 2;
}

/* c:identify([manager_doc]) -> {vendor, product, redfish_version, manager,
 * manager_model, firmware, generation, family} (cached) | nil, message,
 * code[, status]. Reads the Managers collection and its BMC, unless the
 * caller already has the BMC's Manager document (then no request). */
static int m_identify(lua_State *L)
{
    struct client *c = check_open(L, 1, "identify");
    lua_settop(L, 2);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (uv_get(L, 1, UV_INFO) == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    uv_get(L, 1, UV_ROOT); /* 3 */
    int root = 3;
    lua_createtable(L, 0, 8); /* 4 */
    int info = 4;
    lua_getfield(L, root, "RedfishVersion");
    lua_setfield(L, info, "redfish_version");
    lua_getfield(L, root, "Product");
    lua_setfield(L, info, "product");
    lua_getfield(L, root, "Vendor");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (lua_getfield(L, root, "Oem") == LUA_TTABLE && lua_getfield(L, -1, "Dell") != LUA_TNIL) {
            lua_settop(L, info);
            lua_pushliteral(L, "Dell");
        } else {
            lua_settop(L, info);
            lua_pushnil(L);
        }
    }
    lua_setfield(L, info, "vendor");
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "@odata.id"); /* 5: path */
        if (lua_type(L, 5) != LUA_TSTRING)
            return luaL_error(L, "redfish: identify: the manager document has no @odata.id");
        lua_pushvalue(L, 2); /* 6: doc */
    } else {
        int k = push_bmc_manager(L, root);
        if (k != 2)
            return k;
    }
    int mgr = 6;
    lua_pushvalue(L, 5);
    lua_setfield(L, info, "manager");
    lua_getfield(L, mgr, "Model");
    lua_setfield(L, info, "manager_model");
    lua_getfield(L, mgr, "FirmwareVersion");
    lua_setfield(L, info, "firmware");
    lua_getfield(L, info, "vendor");
    lua_getfield(L, info, "firmware");
    lua_getfield(L, info, "redfish_version");
    int gen = 0;
    if (lua_type(L, -3) == LUA_TSTRING && strcmp(lua_tostring(L, -3), "Dell") == 0)
        gen = dell_generation(lua_tostring(L, -2), lua_tostring(L, -1));
    lua_pop(L, 3);
    if (gen) {
        lua_pushinteger(L, gen);
        lua_setfield(L, info, "generation");
        lua_pushfstring(L, "iDRAC %d", gen);
        lua_setfield(L, info, "family");
    }
    (void)c;
    lua_pushvalue(L, info);
    uv_set(L, 1, UV_INFO);
    lua_pushvalue(L, info);
    return 1;
}

/* ---- jobs ------------------------------------------------------------------------------ */

static int last_segment_is(const char *path, const char *id)
{
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    size_t il = strlen(id);
    return pl >= il + 1 && path[pl - il - 1] == '/' && strncmp(path + pl - il, id, il) == 0;
}

/* Find the path of job `id` by following links: the manager's Dell job
 * queue (Links.Oem.Dell.Jobs), else the TaskService's Tasks. Pushes the path
 * or nil, message, code (returns 1 or 3). */
static int find_job(lua_State *L, const char *id)
{
    struct client *c = check_client(L, 1);
    int top = lua_gettop(L);
    lua_createtable(L, 2, 0);
    int colls = lua_gettop(L);
    lua_pushcfunction(L, m_identify);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "manager");
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushcfunction(L, m_get);
            lua_pushvalue(L, 1);
            lua_pushvalue(L, -3);
            lua_call(L, 2, 1);
            if (lua_istable(L, -1) && lua_getfield(L, -1, "Links") == LUA_TTABLE &&
                lua_getfield(L, -1, "Oem") == LUA_TTABLE && lua_getfield(L, -1, "Dell") == LUA_TTABLE) {
                push_link(L, -1, "Jobs");
                if (!lua_isnil(L, -1))
                    lua_rawseti(L, colls, 1);
            }
        }
    }
    lua_settop(L, colls);
    uv_get(L, 1, UV_ROOT);
    push_link(L, -1, "Tasks");
    if (!lua_isnil(L, -1)) {
        lua_pushcfunction(L, m_get);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, -3);
        lua_call(L, 2, 1);
        if (lua_istable(L, -1)) {
            push_link(L, -1, "Tasks");
            if (!lua_isnil(L, -1))
                lua_rawseti(L, colls, (lua_Integer)lua_rawlen(L, colls) + 1);
        }
    }
    lua_settop(L, colls);
    lua_Integer nc = (lua_Integer)lua_rawlen(L, colls);
    for (lua_Integer i = 1; i <= nc; i++) {
        lua_pushcfunction(L, m_get);
        lua_pushvalue(L, 1);
        lua_rawgeti(L, colls, i);
        lua_call(L, 2, 1);
        if (lua_istable(L, -1) && lua_getfield(L, -1, "Members") == LUA_TTABLE) {
            lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer j = 1; j <= m; j++) {
                if (lua_rawgeti(L, -1, j) == LUA_TTABLE && lua_getfield(L, -1, "@odata.id") == LUA_TSTRING &&
                    last_segment_is(lua_tostring(L, -1), id)) {
                    lua_copy(L, -1, top + 1);
                    lua_settop(L, top + 1);
                    return 1;
                }
                lua_settop(L, colls + 2);
            }
        }
        lua_settop(L, colls);
    }
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushfstring(L, "job %s is not in the job queue of %s", id, c->host);
    lua_pushliteral(L, "not_found"); /* docs/errors.md: a lookup found nothing */
    return 3;
}

/* Read a job/task document at doc: state, percent, message, message id. */
struct jobview {
    const char *state; /* Dell JobState, or the Task's TaskState mapped */
    int percent;
    const char *message;
    const char *id;
    int done, ok;
};

static void read_job(lua_State *L, int doc, struct jobview *j)
{
    memset(j, 0, sizeof *j);
    j->percent = -1;
    doc = lua_absindex(L, doc);
    /* values stay referenced by doc, so the pointers remain valid */
    if (lua_getfield(L, doc, "JobState") == LUA_TSTRING) {
        j->state = lua_tostring(L, -1);
        j->done = !strcmp(j->state, "Completed") || !strcmp(j->state, "Failed") ||
                  !strcmp(j->state, "CompletedWithErrors") || !strcmp(j->state, "Killed") ||
                  !strcmp(j->state, "Cancelled");
        j->ok = !strcmp(j->state, "Completed");
    } else if (lua_getfield(L, doc, "TaskState") == LUA_TSTRING) {
        j->state = lua_tostring(L, -1);
        j->done = !strcmp(j->state, "Completed") || !strcmp(j->state, "Exception") ||
                  !strcmp(j->state, "Killed") || !strcmp(j->state, "Cancelled");
        int status_ok = 1;
        if (lua_getfield(L, doc, "TaskStatus") == LUA_TSTRING)
            status_ok = strcmp(lua_tostring(L, -1), "Critical") != 0;
        lua_pop(L, 1);
        j->ok = !strcmp(j->state, "Completed") && status_ok;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, doc, "PercentComplete") == LUA_TNUMBER)
        j->percent = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, doc, "Message") == LUA_TSTRING)
        j->message = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, doc, "MessageId") == LUA_TSTRING)
        j->id = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (!j->message && lua_getfield(L, doc, "Messages") == LUA_TTABLE) {
        if (lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
            if (lua_getfield(L, -1, "Message") == LUA_TSTRING)
                j->message = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (lua_getfield(L, -1, "MessageId") == LUA_TSTRING)
                j->id = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    } else if (!j->message) {
        lua_pop(L, 1);
    }
}

static int wait_job_loop(lua_State *L, struct client *c, const char *path, const char *short_id, double timeout,
                         double interval, const char *wait);

/* c:wait_job(job [, {timeout = 1800, interval = 5, progress = fn}]) -> job
 * document | nil, message, code, document. job: a path (a write's location)
 * or a job id (found in the job queue by following links). progress(view)
 * is called when the state or percentage changes, view = {id, state,
 * percent, message}. Polling rides out a busy or restarting BMC until the
 * timeout. */
static int m_wait_job(lua_State *L)
{
    struct client *c = check_open(L, 1, "wait_job");
    const char *job = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    double timeout = 1800, interval = 5;
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const wk[] = {"timeout", "interval", "progress", NULL};
        check_keys(L, 3, wk, "redfish: wait_job options");
        timeout = opt_num(L, 3, "timeout", 1800, 0, 86400 * 7, "redfish: wait_job options");
        interval = opt_num(L, 3, "interval", 5, 0.01, 3600, "redfish: wait_job options");
        lua_getfield(L, 3, "progress");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            luaL_error(L, "redfish: wait_job options: 'progress' must be a function");
        lua_pop(L, 1);
    }
    /* 4: the job's path */
    if (job[0] == '/' || strncmp(job, "http", 4) == 0) {
        lua_pushstring(L, path_of(c, job));
    } else {
        int k = find_job(L, job);
        if (k != 1)
            return k;
    }
    const char *path = lua_tostring(L, 4);
    const char *short_id = strrchr(path, '/');
    short_id = short_id ? short_id + 1 : path;
    /* without a progress function the job is a wait of sbot.progress
     * (docs/progress.md): the board's line or log lines, with its percent */
    int has_fn = 0;
    if (!lua_isnil(L, 3)) {
        has_fn = lua_getfield(L, 3, "progress") == LUA_TFUNCTION;
        lua_pop(L, 1);
    }
    char wait[160];
    snprintf(wait, sizeof wait, "iDRAC job %s", short_id);
    int n = wait_job_loop(L, c, path, short_id, timeout, interval, has_fn ? NULL : wait);
    if (!has_fn)
        sbot_progress_end(L, wait);
    return n;
}

/* The polling of m_wait_job (its stack: 1 client, 2 job, 3 opts, 4 path);
 * wait: the sbot.progress name, or NULL (a progress function is called). */
static int wait_job_loop(lua_State *L, struct client *c, const char *path, const char *short_id, double timeout,
                         double interval, const char *wait)
{
    double deadline = now_mono() + timeout;
    char last_state[64] = "";
    int last_percent = -2;
    lua_pushnil(L); /* 5: the last error message */
    for (;;) {
        lua_settop(L, 5);
        lua_pushcfunction(L, m_get);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 4);
        lua_call(L, 2, 4); /* 6..9 */
        if (lua_istable(L, 6)) {
            struct jobview j;
            read_job(L, 6, &j);
            if (wait && j.state) { /* every poll: the board shows the time go by */
                char detail[96];
                if (lua_getfield(L, 6, "Name") == LUA_TSTRING)
                    snprintf(detail, sizeof detail, "%s (%s)", j.state, lua_tostring(L, -1));
                else
                    snprintf(detail, sizeof detail, "%s", j.state);
                lua_pop(L, 1);
                sbot_progress_detail(L, wait, j.percent >= 0 ? j.percent / 100.0 : SBOT_PROGRESS_UNKNOWN, detail);
            }
            if (j.state && (strcmp(j.state, last_state) != 0 || j.percent != last_percent)) {
                snprintf(last_state, sizeof last_state, "%s", j.state);
                last_percent = j.percent;
                if (!lua_isnil(L, 3) && lua_getfield(L, 3, "progress") == LUA_TFUNCTION) {
                    lua_createtable(L, 0, 4);
                    lua_pushstring(L, short_id);
                    lua_setfield(L, -2, "id");
                    lua_pushstring(L, j.state);
                    lua_setfield(L, -2, "state");
                    if (j.percent >= 0) {
                        lua_pushinteger(L, j.percent);
                        lua_setfield(L, -2, "percent");
                    }
                    if (j.message) {
                        lua_pushstring(L, j.message);
                        lua_setfield(L, -2, "message");
                    }
                    lua_call(L, 1, 0);
                } else if (!lua_isnil(L, 3)) {
                    lua_pop(L, 1);
                }
            }
            if (j.done) {
                if (j.ok) {
                    lua_pushvalue(L, 6);
                    return 1;
                }
                lua_pushnil(L);
                if (j.id) {
                    lua_pushfstring(L, "job %s %s: ", short_id, j.state);
                    push_short_id(L, j.id);
                    lua_pushfstring(L, "%s%s: %s (GET %s on %s)", lua_tostring(L, -2), lua_tostring(L, -1),
                                    j.message ? j.message : "(no message)", path, c->host);
                    lua_replace(L, -3);
                    lua_pop(L, 1);
                    push_short_id(L, j.id);
                } else {
                    lua_pushfstring(L, "job %s %s: %s (GET %s on %s)", short_id, j.state,
                                    j.message ? j.message : "(no message)", path, c->host);
                    /* no MessageId: the device's own word for how the job
                     * ended (JobState/TaskState; "Critical" for a task that
                     * Completed with TaskStatus Critical) */
                    if (strcmp(j.state, "Completed") == 0)
                        lua_pushliteral(L, "Critical");
                    else
                        lua_pushstring(L, j.state);
                }
                lua_pushvalue(L, 6);
                return 4;
            }
        } else {
            /* a failed read: a 404 ends it; anything else is polled through
             * (the BMC may be restarting) until the deadline */
            if (lua_isinteger(L, 9) && lua_tointeger(L, 9) == 404) {
                lua_pushnil(L);
                lua_pushfstring(L, "job %s: %s", short_id, lua_tostring(L, 7));
                lua_pushvalue(L, 8);
                return 3;
            }
            lua_pushvalue(L, 7);
            lua_replace(L, 5);
        }
        double left = deadline - now_mono();
        if (left <= 0) {
            lua_pushnil(L);
            if (last_state[0])
                lua_pushfstring(L, "job %s on %s: still %s (%d%%) after %d s", short_id, c->host, last_state,
                                last_percent < 0 ? 0 : last_percent, (int)timeout);
            else
                lua_pushfstring(L, "job %s on %s: not readable after %d s (%s)", short_id, c->host, (int)timeout,
                                lua_isnil(L, 5) ? "no answer" : lua_tostring(L, 5));
            lua_pushliteral(L, "timeout");
            return 3;
        }
        sleep_interruptible(L, interval < left ? interval : left);
    }
}

/* ---- closing ----------------------------------------------------------------------------- */

/* c:close() -> true | nil, message (the session could not be deleted). Idempotent. */
static int m_close(lua_State *L)
{
    check_client(L, 1);
    lua_settop(L, 1);
    return do_logout(L, 1);
}

static int protected_logout(lua_State *L)
{
    return do_logout(L, 1);
}

/* __gc and __close: delete the session if there still is one, then free. */
static int client_release(lua_State *L, int free_all)
{
    struct client *c = check_client(L, 1);
    if (c->token && c->base) {
        lua_pushcfunction(L, protected_logout);
        lua_pushvalue(L, 1);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            sbot_log(L, SBOT_WARN, "redfish: closing the session on %s failed: %s", c->host ? c->host : "?",
                     lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    c->open = 0;
    if (free_all) {
        wipe_free(c->token);
        c->token = NULL;
        free(c->session);
        c->session = NULL;
        free(c->base);
        c->base = NULL;
        free(c->host);
        c->host = NULL;
    }
    return 0;
}

static int client_gc(lua_State *L) { return client_release(L, 1); }
static int client_close(lua_State *L) { return client_release(L, 0); }

static int client_tostring(lua_State *L)
{
    struct client *c = check_client(L, 1);
    lua_pushfstring(L, "redfish client %s (%s)", c->host ? c->host : "?",
                    !c->open ? "closed" : c->auth == AUTH_BASIC ? "basic auth" : "session");
    return 1;
}

static int m_stats(lua_State *L)
{
    struct client *c = check_client(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, c->requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, c->retries);
    lua_setfield(L, -2, "retries");
    lua_pushinteger(L, c->reauths);
    lua_setfield(L, -2, "reauths");
    lua_pushinteger(L, c->logins);
    lua_setfield(L, -2, "logins");
    return 1;
}

static const luaL_Reg methods[] = {
    {"get", m_get},           {"get_many", m_get_many}, {"patch", m_patch}, {"post", m_post},
    {"delete", m_delete},     {"wait_job", m_wait_job}, {"identify", m_identify},
    {"close", m_close},       {"stats", m_stats},       {NULL, NULL}};

/* Fields: host, base, auth, session, sessions, root, open; then methods. */
static int client_index(lua_State *L)
{
    struct client *c = check_client(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "host")) {
        lua_pushstring(L, c->host);
    } else if (!strcmp(k, "base")) {
        lua_pushstring(L, c->base);
    } else if (!strcmp(k, "auth")) {
        lua_pushstring(L, c->auth == AUTH_BASIC ? "basic" : c->auth == AUTH_SESSION ? "session" : "none");
    } else if (!strcmp(k, "session")) {
        if (c->session)
            lua_pushstring(L, c->session);
        else
            lua_pushnil(L);
    } else if (!strcmp(k, "open")) {
        lua_pushboolean(L, c->open);
    } else if (!strcmp(k, "sessions")) {
        uv_get(L, 1, UV_SESSIONS);
    } else if (!strcmp(k, "root")) {
        uv_get(L, 1, UV_ROOT);
    } else {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, k);
    }
    return 1;
}

/* redfish.decode(text) -> value | nil, message (the module's JSON reader,
 * exposed for tests and tools) */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *err;
    if (json_decode(L, s, len, &err))
        return 1;
    lua_pushnil(L);
    lua_pushfstring(L, "redfish.decode: %s", err);
    return 2;
}

/* redfish.encode(value) -> text (secrets revealed: for request bodies only) */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    json_encode(L, 1);
    return 1;
}

/* ---- attribute registries ---------------------------------------------------------------- */

/* Is the value at v one of the entry's allowed values? (Value = [{ValueName}]
 * as a registry gives it, or Values = ["name", ...].) -1 when the entry
 * lists none. */
static int in_value_list(lua_State *L, int entry, int v)
{
    int found = -1;
    const char *s = lua_tostring(L, v);
    if (lua_getfield(L, entry, "Value") == LUA_TTABLE) {
        found = 0;
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !found; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                if (lua_getfield(L, -1, "ValueName") == LUA_TSTRING && s && strcmp(lua_tostring(L, -1), s) == 0)
                    found = 1;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (found >= 0)
        return found;
    if (lua_getfield(L, entry, "Values") == LUA_TTABLE) {
        found = 0;
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !found; i++) {
            lua_rawgeti(L, -1, i);
            if (s && lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), s) == 0)
                found = 1;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return found;
}

/* Check the value at idx against a Redfish AttributeRegistry entry at entry
 * (Type, ReadOnly, Value/Values, LowerBound, UpperBound, MinLength, MaxLength,
 * ValueExpression). Secret objects are checked on their value, which no
 * message ever shows. Pushes nil when the value fits, else the reason. */
int sbot_redfish_check_attribute(lua_State *L, int entry, int value)
{
    entry = lua_absindex(L, entry);
    value = lua_absindex(L, value);
    luaL_checkstack(L, 10, "sbot.redfish");
    int top = lua_gettop(L);
    int secret = sbot_is_secret(L, value);
    if (secret) {
        lua_getfield(L, value, "reveal");
        lua_pushvalue(L, value);
        lua_call(L, 1, 1);
        value = lua_gettop(L);
    }
    const char *type = NULL;
    if (lua_getfield(L, entry, "Type") == LUA_TSTRING)
        type = lua_tostring(L, -1);
    int ro = 0;
    if (lua_getfield(L, entry, "ReadOnly") == LUA_TBOOLEAN)
        ro = lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *why = NULL;
    if (ro) {
        why = lua_pushliteral(L, "it is read-only");
    } else if (type && strcmp(type, "Enumeration") == 0) {
        int in = lua_type(L, value) == LUA_TSTRING ? in_value_list(L, entry, value) : 0;
        if (lua_type(L, value) != LUA_TSTRING)
            why = lua_pushliteral(L, "it is not a string (Enumeration)");
        else if (in == 0)
            why = lua_pushfstring(L, "'%s' is not one of its allowed values", lua_tostring(L, value));
    } else if (type && strcmp(type, "Integer") == 0) {
        int isnum;
        lua_Number v = lua_tonumberx(L, value, &isnum);
        if (!isnum || v != floor(v)) {
            why = lua_pushliteral(L, "it is not an integer");
        } else {
            int has_lo = lua_getfield(L, entry, "LowerBound") == LUA_TNUMBER;
            lua_Number lo = lua_tonumber(L, -1);
            int has_hi = lua_getfield(L, entry, "UpperBound") == LUA_TNUMBER;
            lua_Number hi = lua_tonumber(L, -1);
            lua_pop(L, 2);
            if ((has_lo && v < lo) || (has_hi && v > hi))
                why = lua_pushfstring(L, "%d is outside %d..%d", (int)v, has_lo ? (int)lo : INT32_MIN,
                                      has_hi ? (int)hi : INT32_MAX);
        }
    } else if (type && strcmp(type, "Boolean") == 0) {
        if (lua_type(L, value) != LUA_TBOOLEAN)
            why = lua_pushliteral(L, "it is not a boolean");
    } else if (type && (strcmp(type, "String") == 0 || strcmp(type, "Password") == 0)) {
        if (lua_type(L, value) != LUA_TSTRING) {
            why = lua_pushliteral(L, "it is not a string");
        } else {
            size_t len;
            const char *s = lua_tolstring(L, value, &len);
            int has_min = lua_getfield(L, entry, "MinLength") == LUA_TNUMBER;
            lua_Integer mn = lua_tointeger(L, -1);
            int has_max = lua_getfield(L, entry, "MaxLength") == LUA_TNUMBER;
            lua_Integer mx = lua_tointeger(L, -1);
            const char *expr = lua_getfield(L, entry, "ValueExpression") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            /* an empty string clears a value: lengths and patterns apply to set values */
            if (len > 0 && ((has_min && (lua_Integer)len < mn) || (has_max && (lua_Integer)len > mx))) {
                why = lua_pushfstring(L, "its length %d is outside %d..%d", (int)len, has_min ? (int)mn : 0,
                                      has_max ? (int)mx : INT32_MAX);
            } else if (len > 0 && expr && *expr) {
                regex_t re;
                int rc = regcomp(&re, expr, REG_EXTENDED | REG_NOSUB);
                if (rc == 0) {
                    int m = regexec(&re, s, 0, NULL, 0);
                    regfree(&re);
                    if (m != 0)
                        why = secret ? lua_pushfstring(L, "the value does not match %s", expr)
                                     : lua_pushfstring(L, "'%s' does not match %s", s, expr);
                }
                /* an expression this regex library cannot read is not held against the value */
            }
        }
    }
    if (why) {
        lua_copy(L, -1, top + 1);
    } else {
        lua_pushnil(L);
        lua_copy(L, -1, top + 1);
    }
    lua_settop(L, top + 1);
    return 1;
}

/* redfish.check_attribute(entry, value) -> nil | reason */
static int l_check_attribute(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    return sbot_redfish_check_attribute(L, 1, 2);
}

/* ---- C API (engine/sbot.h) -------------------------------------------------------------- */

int sbot_redfish_connect(lua_State *L, int opts)
{
    lua_pushvalue(L, opts);
    return sbot_call_api(L, l_connect, 1);
}

int sbot_redfish_get(lua_State *L, int client, const char *path)
{
    client = lua_absindex(L, client);
    lua_pushvalue(L, client);
    lua_pushstring(L, path);
    return sbot_call_api(L, m_get, 2);
}

int sbot_redfish_get_many(lua_State *L, int client, int paths)
{
    client = lua_absindex(L, client);
    paths = lua_absindex(L, paths);
    lua_pushvalue(L, client);
    lua_pushvalue(L, paths);
    return sbot_call_api(L, m_get_many, 2);
}

int sbot_redfish_patch(lua_State *L, int client, const char *path, int body, int opts)
{
    client = lua_absindex(L, client);
    body = lua_absindex(L, body);
    opts = opts ? lua_absindex(L, opts) : 0;
    lua_pushvalue(L, client);
    lua_pushstring(L, path);
    lua_pushvalue(L, body);
    if (opts)
        lua_pushvalue(L, opts);
    else
        lua_pushnil(L);
    return sbot_call_api(L, m_patch, 4);
}

int sbot_redfish_post(lua_State *L, int client, const char *path, int body)
{
    client = lua_absindex(L, client);
    body = body ? lua_absindex(L, body) : 0;
    lua_pushvalue(L, client);
    lua_pushstring(L, path);
    if (body)
        lua_pushvalue(L, body);
    else
        lua_pushnil(L);
    return sbot_call_api(L, m_post, 3);
}

int sbot_redfish_delete(lua_State *L, int client, const char *path)
{
    client = lua_absindex(L, client);
    lua_pushvalue(L, client);
    lua_pushstring(L, path);
    return sbot_call_api(L, m_delete, 2);
}

int sbot_redfish_wait_job(lua_State *L, int client, const char *job, int opts)
{
    client = lua_absindex(L, client);
    opts = opts ? lua_absindex(L, opts) : 0;
    lua_pushvalue(L, client);
    lua_pushstring(L, job);
    if (opts)
        lua_pushvalue(L, opts);
    else
        lua_pushnil(L);
    return sbot_call_api(L, m_wait_job, 3);
}

int sbot_redfish_identify(lua_State *L, int client, int manager)
{
    client = lua_absindex(L, client);
    manager = manager ? lua_absindex(L, manager) : 0;
    lua_pushvalue(L, client);
    if (manager)
        lua_pushvalue(L, manager);
    else
        lua_pushnil(L);
    return sbot_call_api(L, m_identify, 2);
}

int sbot_redfish_close(lua_State *L, int client)
{
    client = lua_absindex(L, client);
    lua_pushvalue(L, client);
    return sbot_call_api(L, m_close, 1);
}

int luaopen_sbot_redfish(lua_State *L)
{
    static const luaL_Reg fns[] = {{"connect", l_connect}, {"decode", l_decode}, {"encode", l_encode},
                                   {"check_attribute", l_check_attribute}, {NULL, NULL}};
    /* the transport: sbot.http must be open in this state (sbot_http_request) */
    luaL_requiref(L, "sbot.http", luaopen_sbot_http, 0);
    lua_pop(L, 1);
    sbot_json_push_array_mt(L); /* get_many's results carry it */
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CLIENT_MT)) {
        lua_pushcfunction(L, client_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, client_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, client_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, client_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "methods");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
