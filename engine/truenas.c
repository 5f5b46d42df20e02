/* truenas.c: sbot.truenas, a TrueNAS SCALE API client.
 *
 *   local truenas = require "sbot.truenas"
 *   local c <close> = assert(truenas.connect{url = "wss://nas/api/current", api_key = key,
 *                                            tls = {ca_file = "ca.pem"}})
 *   local zvols, err, errname = c:call("pool.dataset.query", {{"type", "=", "VOLUME"}})
 *
 * JSON-RPC 2.0 over one persistent WebSocket (sbot.ws C API) at /api/current
 * (TrueNAS 25.04+), or REST v2.0 (sbot.http C API) when the url ends in
 * /api/v2.0. Login with auth.login_ex (API_KEY_PLAIN), falling back to
 * auth.login_with_api_key on servers without it; each call has a timeout; an
 * idempotent call (query, get_instance, config, ...) whose connection dropped
 * is retried once on a new connection after a new login, and the client
 * refuses to log in more than LOGIN_BUDGET times a minute (the middleware
 * rate-limits logins at 20 per minute). A job method's call follows the job
 * to its end by polling core.get_jobs (job methods are learnt from
 * core.get_methods), reporting progress. Failures are `nil, message,
 * errname`: the middleware's reason and every field error
 * ("iscsi.extent.create: disk: Device ... does not exist"), errname as the
 * middleware gives it (EINVAL, EFAULT, ENOTAUTHENTICATED, ...), or the
 * transport's word ("timeout", "closed", "connect", "tls", "io").
 *
 * This client is the only code that reveals the API key (and any secret in
 * call arguments): secrets become strings only in the request it sends. */
#include "sbot.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TN_MT "sbot.truenas.client"
#define LOGIN_BUDGET 10 /* logins per minute; the server allows 20 before login */
#define MAX_RESEND 3 /* an idempotent call whose answer is lost is asked again this often */
#define POLL_MIN 0.05
#define POLL_MAX 1.0

struct tn {
    int open;
    int rest;            /* 0: JSON-RPC over WebSocket, 1: REST v2.0 */
    char url[512];       /* ws(s)://.../api/current or http(s)://.../api/v2.0 */
    char user[128];
    char *key;           /* revealed API key (malloc), wiped on release */
    size_t key_len;
    int tls_ref, conn_ref, json_ref, progress_ref, jobs_ref;
    double timeout, call_timeout, job_timeout;
    long long next_id;
    double logins[LOGIN_BUDGET];
    int nlogins;
    int login_ex_missing; /* auth.login_ex unknown: use auth.login_with_api_key */
    long long calls, reconnects, resends, login_count;
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_for(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- release --------------------------------------------------------------- */

static void unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

static void drop_conn(lua_State *L, struct tn *t)
{
    if (t->conn_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->conn_ref);
        if (!lua_isnil(L, -1))
            sbot_ws_close(L, -1);
        lua_pop(L, 1);
        unref(L, &t->conn_ref);
    }
}

static void tn_release(lua_State *L, struct tn *t)
{
    if (!t->open)
        return;
    t->open = 0;
    drop_conn(L, t);
    unref(L, &t->tls_ref);
    unref(L, &t->json_ref);
    unref(L, &t->progress_ref);
    unref(L, &t->jobs_ref);
    if (t->key) {
        memset(t->key, 0, t->key_len);
        free(t->key);
        t->key = NULL;
    }
}

static int l_close(lua_State *L)
{
    tn_release(L, luaL_checkudata(L, 1, TN_MT));
    return 0;
}

static struct tn *check_open(lua_State *L, int idx)
{
    struct tn *t = luaL_checkudata(L, idx, TN_MT);
    if (!t->open)
        luaL_error(L, "truenas: the client is closed");
    return t;
}

/* ---- JSON through sbot.json ------------------------------------------------------ */

static void json_call(lua_State *L, struct tn *t, const char *fn, int nargs)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->json_ref);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    lua_call(L, nargs, 1);
}

/* Push a JSON array marker table (sbot.json.array()). */
static void push_array(lua_State *L, struct tn *t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->json_ref);
    lua_getfield(L, -1, "array");
    lua_remove(L, -2);
    lua_call(L, 0, 1);
}

/* Push a copy of the value at idx where every secret object is replaced by
 * its revealed string (the request is the only place a secret is clear).
 * Tables are copied with their metatable (the JSON array marker). */
static void push_revealed(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (depth > 64)
        luaL_error(L, "truenas.call: arguments nested too deeply");
    if (sbot_is_secret(L, idx)) {
        lua_getfield(L, idx, "reveal");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "truenas.call: a secret's reveal() did not give a string");
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_revealed(L, -2, depth + 1);
        lua_rawset(L, out);
        lua_pop(L, 1);
    }
    if (lua_getmetatable(L, idx))
        lua_setmetatable(L, out);
}

/* ---- errors ---------------------------------------------------------------------- */

/* A growing message in a fixed buffer (no Lua stack use, so callers can
 * walk tables while building it). */
struct msgbuf {
    char s[4096];
    size_t n;
};

static void mb_add(struct msgbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mb_add(struct msgbuf *m, const char *fmt, ...)
{
    if (m->n >= sizeof m->s - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(m->s + m->n, sizeof m->s - m->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        m->n = m->n + (size_t)k >= sizeof m->s ? sizeof m->s - 1 : m->n + (size_t)k;
}

/* "[EINVAL] msg\n" -> "msg" */
static const char *strip_reason(const char *r, char *out, size_t size)
{
    if (*r == '[') {
        const char *close = strstr(r, "] ");
        if (close)
            r = close + 2;
    }
    snprintf(out, size, "%s", r);
    size_t len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    return out;
}

/* Add the field errors "attr: msg; ..." of a list [[attr, msg, errno], ...]
 * at idx (attr without its argument prefix: "iscsi_extent_create.disk" ->
 * "disk"; "None" -> the message alone). Returns how many. */
static int add_field_errors(lua_State *L, struct msgbuf *m, int list)
{
    int n = 0;
    list = lua_absindex(L, list);
    for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        const char *attr = lua_tostring(L, -2), *msg = lua_tostring(L, -1);
        if (msg) {
            const char *field = attr ? strchr(attr, '.') : NULL;
            if (attr && *attr && strcmp(attr, "None") != 0)
                mb_add(m, "%s%s: %s", n ? "; " : "", field ? field + 1 : attr, msg);
            else
                mb_add(m, "%s%s", n ? "; " : "", msg);
            n++;
        }
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
    return n;
}

/* Push nil, "method: <reason or field errors>", errname for the JSON-RPC
 * error object at idx. Returns 3. */
static int push_rpc_error(lua_State *L, const char *method, int err)
{
    err = lua_absindex(L, err);
    int top = lua_gettop(L);
    struct msgbuf m = {.n = 0};
    char errname[64] = "";
    mb_add(&m, "%s: ", method);
    lua_getfield(L, err, "code");
    int code = (int)lua_tointeger(L, -1);
    int any = 0;
    if (lua_getfield(L, err, "data") == LUA_TTABLE) {
        int data = lua_gettop(L);
        if (lua_getfield(L, data, "errname") == LUA_TSTRING)
            snprintf(errname, sizeof errname, "%s", lua_tostring(L, -1));
        if (lua_getfield(L, data, "extra") == LUA_TTABLE)
            any = add_field_errors(L, &m, -1);
        if (!any && lua_getfield(L, data, "reason") == LUA_TSTRING) {
            char r[2048];
            mb_add(&m, "%s", strip_reason(lua_tostring(L, -1), r, sizeof r));
            any = 1;
        }
    }
    if (!any) {
        lua_getfield(L, err, "message");
        mb_add(&m, "%s (JSON-RPC error %d)", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error", code);
    }
    if (!errname[0])
        snprintf(errname, sizeof errname, "%s", code == -32601 ? "ENOMETHOD" : "EFAULT");
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushlstring(L, m.s, m.n);
    lua_pushstring(L, errname);
    return 3;
}

static int push_fail(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int push_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
    return 3;
}

/* Move the top n values down to start at base and drop everything above. */
static int keep_top(lua_State *L, int base, int n)
{
    int top = lua_gettop(L);
    for (int i = 0; i < n; i++)
        lua_copy(L, top - n + 1 + i, base + i);
    lua_settop(L, base + n - 1);
    return n;
}

/* ---- JSON-RPC over WebSocket -------------------------------------------------------- */

/* Make sure the WebSocket is open; 0, or 3 values pushed (nil, msg, code). */
static int ws_ensure(lua_State *L, struct tn *t)
{
    if (t->conn_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->conn_ref);
        int open = sbot_ws_is_open(L, -1);
        lua_pop(L, 1);
        if (open)
            return 0;
        drop_conn(L, t);
    }
    lua_createtable(L, 0, 2);
    int opts = lua_gettop(L);
    lua_pushnumber(L, t->timeout);
    lua_setfield(L, opts, "timeout");
    if (t->tls_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->tls_ref);
        lua_setfield(L, opts, "tls");
    }
    int n = sbot_ws_connect(L, t->url, opts);
    if (n == 1 && !lua_isnil(L, -1)) {
        t->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pop(L, 1); /* opts */
        return 0;
    }
    lua_remove(L, opts);
    return 3;
}

/* Send {jsonrpc, id, method, params (at index params)} and read messages until
 * the reply with that id. Pushes the decoded reply (0) or nil, msg, code (3). */
static int rpc_raw(lua_State *L, struct tn *t, const char *method, int params, double timeout)
{
    params = lua_absindex(L, params);
    int r = ws_ensure(L, t);
    if (r)
        return r;
    long long id = ++t->next_id;
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "2.0");
    lua_setfield(L, -2, "jsonrpc");
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushvalue(L, params);
    lua_setfield(L, -2, "params");
    json_call(L, t, "encode", 1);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->conn_ref);
    int conn = lua_gettop(L);
    int n = sbot_ws_send(L, conn, text, len, timeout);
    if (n != 1 || !lua_toboolean(L, -n)) {
        /* nil, msg, code: keep them, drop text, conn */
        lua_remove(L, conn);
        lua_remove(L, conn - 1);
        drop_conn(L, t);
        return 3;
    }
    lua_pop(L, 1);
    double deadline = now_mono() + timeout;
    for (;;) {
        double left = deadline - now_mono();
        if (left <= 0) {
            lua_pop(L, 2); /* text, conn */
            return push_fail(L, "timeout", "truenas %s: %s: no answer within %.1f s", t->url, method, timeout);
        }
        n = sbot_ws_recv(L, conn, left);
        if (n != 1 || lua_isnil(L, -n)) {
            const char *code = n == 3 ? lua_tostring(L, -1) : "io";
            int is_timeout = code && strcmp(code, "timeout") == 0;
            lua_remove(L, conn);
            lua_remove(L, conn - 1);
            if (is_timeout) {
                lua_pop(L, 3);
                return push_fail(L, "timeout", "truenas %s: %s: no answer within %.1f s", t->url, method,
                                 timeout);
            }
            drop_conn(L, t);
            return 3;
        }
        size_t mlen;
        const char *msg = lua_tolstring(L, -1, &mlen);
        (void)msg;
        json_call(L, t, "decode", 1);
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_getfield(L, -1, "id");
            /* cjson decodes every number as a float */
            int matches = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == (lua_Number)id;
            lua_pop(L, 1);
            if (matches) {
                lua_remove(L, conn);
                lua_remove(L, conn - 1);
                return 0;
            }
        }
        /* a notification, or the late answer to an earlier call: skip */
        lua_pop(L, 1);
    }
}

/* ---- login ---------------------------------------------------------------------- */

static int login_allowed(struct tn *t, double now)
{
    int recent = 0;
    for (int i = 0; i < t->nlogins; i++)
        if (now - t->logins[i] < 60.0)
            recent++;
    return recent < LOGIN_BUDGET;
}

static void note_login(struct tn *t, double now)
{
    if (t->nlogins < LOGIN_BUDGET) {
        t->logins[t->nlogins++] = now;
        return;
    }
    int oldest = 0;
    for (int i = 1; i < LOGIN_BUDGET; i++)
        if (t->logins[i] < t->logins[oldest])
            oldest = i;
    t->logins[oldest] = now;
}

/* Log in on the current connection; 0 or 3 values pushed. */
static int ws_login(lua_State *L, struct tn *t)
{
    double now = now_mono();
    if (!login_allowed(t, now))
        return push_fail(L, "EBUSY",
                         "truenas %s: not logging in again: %d logins in the last minute (the server "
                         "rate-limits logins; is the connection dropping?)",
                         t->url, LOGIN_BUDGET);
    note_login(t, now);
    t->login_count++;
    for (int attempt = 0; attempt < 2; attempt++) {
        int ex = !t->login_ex_missing;
        push_array(L, t);
        int params = lua_gettop(L);
        if (ex) {
            lua_createtable(L, 0, 3);
            lua_pushliteral(L, "API_KEY_PLAIN");
            lua_setfield(L, -2, "mechanism");
            lua_pushstring(L, t->user);
            lua_setfield(L, -2, "username");
            lua_pushlstring(L, t->key, t->key_len);
            lua_setfield(L, -2, "api_key");
        } else {
            lua_pushlstring(L, t->key, t->key_len);
        }
        lua_rawseti(L, params, 1);
        const char *method = ex ? "auth.login_ex" : "auth.login_with_api_key";
        int r;
        for (int resend = 0;; resend++) {
            r = rpc_raw(L, t, method, params, t->call_timeout);
            /* a lost answer: logging in again on the same connection is harmless */
            if (r && resend < MAX_RESEND && lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), "timeout") == 0) {
                lua_pop(L, 3);
                t->resends++;
                continue;
            }
            break;
        }
        lua_remove(L, params);
        if (r)
            return r;
        int reply = lua_gettop(L);
        if (lua_getfield(L, reply, "error") == LUA_TTABLE) {
            lua_getfield(L, -1, "code");
            int code = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (ex && code == -32601) { /* older middleware: no auth.login_ex */
                t->login_ex_missing = 1;
                lua_pop(L, 2);
                continue;
            }
            int n = push_rpc_error(L, method, -1);
            lua_remove(L, reply + 1);
            lua_remove(L, reply);
            drop_conn(L, t);
            return n;
        }
        lua_pop(L, 1);
        lua_getfield(L, reply, "result");
        int ok;
        if (ex) {
            lua_getfield(L, -1, "response_type");
            const char *rt = lua_tostring(L, -1);
            ok = rt && strcmp(rt, "SUCCESS") == 0;
            if (!ok) {
                char what[64];
                snprintf(what, sizeof what, "%s", rt ? rt : "no response_type");
                lua_pop(L, 3);
                drop_conn(L, t);
                return push_fail(L, "AUTH_ERR", "truenas %s: auth.login_ex as %s: the API key was refused (%s)",
                                 t->url, t->user, what);
            }
            lua_pop(L, 1);
        } else {
            ok = lua_toboolean(L, -1);
            if (!ok) {
                lua_pop(L, 2);
                drop_conn(L, t);
                return push_fail(L, "AUTH_ERR", "truenas %s: auth.login_with_api_key: the API key was refused",
                                 t->url);
            }
        }
        lua_pop(L, 2);
        return 0;
    }
    return push_fail(L, "AUTH_ERR", "truenas %s: login failed", t->url);
}

/* Connect (if needed) and log in; 0 or 3 values pushed. */
static int ws_session(lua_State *L, struct tn *t, int *fresh)
{
    *fresh = 0;
    if (t->conn_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->conn_ref);
        int open = sbot_ws_is_open(L, -1);
        lua_pop(L, 1);
        if (open)
            return 0;
        drop_conn(L, t);
    }
    int r = ws_ensure(L, t);
    if (r)
        return r;
    *fresh = 1;
    return ws_login(L, t);
}

/* ---- REST v2.0 --------------------------------------------------------------------- */

/* "/api/v2.0" + "/iscsi/target" for "iscsi.target" */
static void push_rest_path(lua_State *L, struct tn *t, const char *ns, size_t nslen)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, t->url);
    luaL_addchar(&b, '/');
    for (size_t i = 0; i < nslen; i++)
        luaL_addchar(&b, ns[i] == '.' ? '/' : ns[i]);
    luaL_pushresult(&b);
}

/* Percent-encode a path segment (dataset ids hold '/'). */
static void push_pct(lua_State *L, const char *s)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~')
            luaL_addchar(&b, (char)c);
        else {
            char h[4];
            snprintf(h, sizeof h, "%%%02X", c);
            luaL_addstring(&b, h);
        }
    }
    luaL_pushresult(&b);
}

/* One REST request: method, url (string at idx), body (index or 0).
 * Pushes the decoded JSON answer (0) or nil, msg, code (3). */
static int rest_request(lua_State *L, struct tn *t, const char *call, const char *verb, int url, int body)
{
    url = lua_absindex(L, url);
    body = body ? lua_absindex(L, body) : 0;
    lua_createtable(L, 0, 6);
    int req = lua_gettop(L);
    lua_pushstring(L, verb);
    lua_setfield(L, req, "method");
    lua_pushvalue(L, url);
    lua_setfield(L, req, "url");
    lua_pushnumber(L, t->call_timeout);
    lua_setfield(L, req, "timeout");
    lua_pushboolean(L, 0);
    lua_setfield(L, req, "retries");
    if (t->tls_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->tls_ref);
        lua_setfield(L, req, "tls");
    }
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "Bearer ");
    lua_pushlstring(L, t->key, t->key_len);
    lua_concat(L, 2);
    lua_setfield(L, -2, "Authorization");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "Content-Type");
    lua_setfield(L, req, "headers");
    if (body) {
        lua_pushvalue(L, body);
        json_call(L, t, "encode", 1);
        lua_setfield(L, req, "body");
    }
    int n = sbot_http_request(L, req);
    if (n != 1) {
        lua_remove(L, req);
        return n;
    }
    int res = lua_gettop(L);
    lua_getfield(L, res, "status");
    int status = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, res, "body");
    json_call(L, t, "decode", 1);
    int js = lua_gettop(L);
    if (status >= 200 && status < 300) {
        lua_replace(L, req);
        lua_settop(L, req);
        return 0;
    }
    /* 422 {"attr": [{"message", "errno"}]} or {"message": ...} */
    struct msgbuf m = {.n = 0};
    mb_add(&m, "%s: ", call);
    int any = 0;
    if (lua_type(L, js) == LUA_TTABLE) {
        if (lua_getfield(L, js, "message") == LUA_TSTRING) {
            char r[2048];
            mb_add(&m, "%s", strip_reason(lua_tostring(L, -1), r, sizeof r));
            any = 1;
        }
        lua_pop(L, 1);
        if (!any) {
            /* every field, not just the first */
            lua_pushnil(L);
            while (lua_next(L, js)) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
                    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
                        lua_getfield(L, -1, "message");
                        const char *attr = lua_tostring(L, -4), *msg = lua_tostring(L, -1);
                        const char *field = strchr(attr, '.');
                        mb_add(&m, "%s%s: %s", any ? "; " : "", field ? field + 1 : attr, msg ? msg : "?");
                        any = 1;
                        lua_pop(L, 2);
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
        }
    }
    if (!any)
        mb_add(&m, "HTTP %d", status);
    const char *code = status == 401 ? "ENOTAUTHENTICATED" : status == 404 ? "ENOENT" : "EINVAL";
    lua_settop(L, req - 1);
    lua_pushnil(L);
    lua_pushlstring(L, m.s, m.n);
    lua_pushstring(L, code);
    return 3;
}

/* Map one call onto REST v2.0 (CRUD and `config` by path, other methods as
 * POST /<namespace>/<method> with the arguments as body). params at idx. */
static int rest_call(lua_State *L, struct tn *t, const char *method, int params)
{
    params = lua_absindex(L, params);
    const char *dot = strrchr(method, '.');
    if (!dot)
        return push_fail(L, "EINVAL", "truenas: %s: not a TrueNAS method name", method);
    size_t nslen = (size_t)(dot - method);
    const char *verb = dot + 1;
    int nargs = (int)lua_rawlen(L, params);
    int top = lua_gettop(L);
    int r;
    if (strcmp(verb, "query") == 0) {
        /* filters [["field", "=", value], ...] -> ?field=value (REST v2.0 takes only these) */
        struct msgbuf q = {.n = 0};
        if (nargs >= 1 && lua_rawgeti(L, params, 1) == LUA_TTABLE) {
            int f = lua_gettop(L);
            for (lua_Integer i = 1; lua_rawgeti(L, f, i) == LUA_TTABLE; i++) {
                lua_rawgeti(L, -1, 1);
                lua_rawgeti(L, -2, 2);
                lua_rawgeti(L, -3, 3);
                const char *field = lua_tostring(L, -3), *op = lua_tostring(L, -2);
                int scalar = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ||
                             lua_type(L, -1) == LUA_TBOOLEAN;
                if (!field || !op || strcmp(op, "=") != 0 || !scalar) {
                    lua_settop(L, top);
                    return push_fail(L, "ENOTSUP", "truenas %s: %s: only [field, \"=\", value] filters go over "
                                     "REST v2.0", t->url, method);
                }
                push_pct(L, luaL_tolstring(L, -1, NULL));
                mb_add(&q, "%c%s=%s", q.n ? '&' : '?', field, lua_tostring(L, -1));
                lua_pop(L, 6);
            }
            lua_pop(L, 1);
        }
        lua_settop(L, top);
        push_rest_path(L, t, method, nslen);
        lua_pushlstring(L, q.s, q.n);
        lua_concat(L, 2);
        r = rest_request(L, t, method, "GET", -1, 0);
        if (r != 0)
            return keep_top(L, top + 1, 3);
        lua_remove(L, -2);
        /* options {get = true}: one entry */
        int get = 0;
        if (nargs >= 2 && lua_rawgeti(L, params, 2) == LUA_TTABLE) {
            lua_getfield(L, -1, "get");
            get = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, nargs >= 2 ? 1 : 0);
        if (get) {
            if (lua_type(L, -1) != LUA_TTABLE || lua_rawgeti(L, -1, 1) == LUA_TNIL) {
                lua_settop(L, top);
                return push_fail(L, "ENOENT", "%s: MatchNotFound", method);
            }
            lua_remove(L, -2);
        }
        return 0;
    }
    if (strcmp(verb, "get_instance") == 0 || strcmp(verb, "update") == 0 || strcmp(verb, "delete") == 0) {
        if (nargs < 1)
            return push_fail(L, "EINVAL", "%s: an id is required", method);
        push_rest_path(L, t, method, nslen);
        lua_pushliteral(L, "/id/");
        lua_rawgeti(L, params, 1);
        push_pct(L, luaL_tolstring(L, -1, NULL));
        lua_remove(L, -2);
        lua_remove(L, -2);
        lua_concat(L, 3);
        int url = lua_gettop(L);
        int body = 0;
        if (nargs >= 2) {
            lua_rawgeti(L, params, 2);
            body = lua_gettop(L);
        }
        const char *v = verb[0] == 'g' ? "GET" : verb[0] == 'u' ? "PUT" : "DELETE";
        r = rest_request(L, t, method, v, url, body);
        keep_top(L, url, r == 0 ? 1 : 3);
        return r;
    }
    int body = 0;
    const char *http_verb;
    if (strcmp(verb, "create") == 0 || strcmp(verb, "config") == 0 || strcmp(method, "system.info") == 0) {
        push_rest_path(L, t, method, strcmp(verb, "create") == 0 ? nslen : strlen(method));
        if (strcmp(verb, "config") == 0) {
            lua_pop(L, 1);
            push_rest_path(L, t, method, nslen);
        }
        http_verb = strcmp(verb, "create") == 0 ? "POST" : "GET";
        if (http_verb[0] == 'P' && nargs >= 1) {
            lua_rawgeti(L, params, 1);
            body = lua_gettop(L);
        }
    } else {
        push_rest_path(L, t, method, strlen(method));
        http_verb = "POST";
        if (nargs == 1) {
            lua_rawgeti(L, params, 1);
        } else {
            lua_pushvalue(L, params);
        }
        body = lua_gettop(L);
    }
    int url = top + 1;
    r = rest_request(L, t, method, http_verb, url, body);
    keep_top(L, url, r == 0 ? 1 : 3);
    return r;
}

/* ---- calls ------------------------------------------------------------------------- */

static int idempotent(const char *method)
{
    static const char *const suffixes[] = {".query", ".get_instance", ".config", ".info", ".ping",
                                           ".me", ".get_jobs", ".get_methods", NULL};
    size_t n = strlen(method);
    for (int i = 0; suffixes[i]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(method + n - k, suffixes[i]) == 0)
            return 1;
    }
    return strcmp(method, "core.job_wait") == 0;
}

/* One call with params at idx: pushes the result (1) or nil, msg, code (3). */
static int call_once(lua_State *L, struct tn *t, const char *method, int params)
{
    params = lua_absindex(L, params);
    t->calls++;
    if (t->rest) {
        int r = rest_call(L, t, method, params);
        return r == 0 ? 1 : r;
    }
    int reconnected = 0, resent = 0;
    for (;;) {
        int fresh;
        int r = ws_session(L, t, &fresh);
        if (r)
            return r;
        r = rpc_raw(L, t, method, params, t->call_timeout);
        if (r) {
            const char *code = lua_tostring(L, -1);
            int timeout = code && strcmp(code, "timeout") == 0;
            int dropped = code && (strcmp(code, "closed") == 0 || strcmp(code, "io") == 0);
            if (timeout && resent < MAX_RESEND && idempotent(method)) {
                /* the answer was lost, the connection may be fine: ask again */
                lua_pop(L, 3);
                resent++;
                t->resends++;
                continue;
            }
            if (dropped && !reconnected && idempotent(method)) {
                /* one new connection and login, then the same call again */
                lua_pop(L, 3);
                drop_conn(L, t);
                reconnected = 1;
                t->reconnects++;
                continue;
            }
            return r;
        }
        int reply = lua_gettop(L);
        if (lua_getfield(L, reply, "error") == LUA_TTABLE) {
            int n = push_rpc_error(L, method, -1);
            lua_remove(L, reply + 1);
            lua_remove(L, reply);
            return n;
        }
        lua_pop(L, 1);
        lua_getfield(L, reply, "result");
        lua_remove(L, reply);
        return 1;
    }
}

/* Whether `method` is a job method, learnt from core.get_methods(<service>)
 * once per service. 1 yes, 0 no; -1 with nil, msg, code pushed. */
static int is_job(lua_State *L, struct tn *t, const char *method)
{
    const char *dot = strrchr(method, '.');
    if (!dot)
        return 0;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->jobs_ref);
    int jobs = top + 1;
    lua_pushlstring(L, method, (size_t)(dot - method));
    int service = top + 2;
    lua_pushvalue(L, service);
    if (lua_rawget(L, jobs) != LUA_TTABLE) { /* not asked yet */
        lua_pop(L, 1);
        push_array(L, t);
        lua_pushvalue(L, service);
        lua_rawseti(L, -2, 1);
        int n = call_once(L, t, "core.get_methods", -1);
        if (n != 1)
            return keep_top(L, top + 1, 3), -1;
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_pushvalue(L, service);
        lua_pushvalue(L, -2);
        lua_rawset(L, jobs);
    }
    /* the service's methods at the top */
    int isjob = 0;
    if (lua_getfield(L, -1, method) == LUA_TTABLE) {
        lua_getfield(L, -1, "job");
        isjob = lua_toboolean(L, -1);
    }
    lua_settop(L, top);
    return isjob;
}

/* The name of job id's wait (sbot.progress): "TrueNAS job 42 pool.create". */
static void job_wait_name(char *out, size_t size, const char *method, lua_Integer id)
{
    snprintf(out, size, "TrueNAS job %lld %s", (long long)id, method);
}

static void report_progress(lua_State *L, struct tn *t, int job, const char *wait)
{
    if (t->progress_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->progress_ref);
        lua_pushvalue(L, job);
        lua_call(L, 1, 0);
        return;
    }
    /* no callback: the job is a wait of sbot.progress, with TrueNAS's
     * percent and description */
    lua_getfield(L, job, "progress");
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "percent");
        lua_getfield(L, -2, "description");
        sbot_progress_detail(L, wait, lua_isnumber(L, -2) ? lua_tonumber(L, -2) / 100.0 : SBOT_PROGRESS_UNKNOWN,
                             lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (!sbot_log_enabled(L, SBOT_DEBUG))
        return;
    lua_getfield(L, job, "progress");
    lua_getfield(L, -1, "percent");
    lua_getfield(L, -2, "description");
    lua_getfield(L, job, "id");
    lua_getfield(L, job, "method");
    sbot_log(L, SBOT_DEBUG, "truenas job %lld %s: %s%% %s", (long long)lua_tointeger(L, -2),
             lua_tostring(L, -1) ? lua_tostring(L, -1) : "?",
             lua_isnumber(L, -4) ? lua_tostring(L, -4) : "?", lua_tostring(L, -3) ? lua_tostring(L, -3) : "");
    lua_pop(L, 5);
}

/* Follow job `id` to its end by polling core.get_jobs; pushes its result (1)
 * or nil, msg, code (3). */
static int follow_job(lua_State *L, struct tn *t, const char *method, lua_Integer id, const char *wait_name)
{
    double deadline = now_mono() + t->job_timeout, wait = POLL_MIN;
    double last_percent = -2; /* the first poll is reported, with a percent or without */
    for (;;) {
        /* core.get_jobs [["id", "=", id]] */
        push_array(L, t);
        int params = lua_gettop(L);
        push_array(L, t);
        push_array(L, t);
        lua_pushliteral(L, "id");
        lua_rawseti(L, -2, 1);
        lua_pushliteral(L, "=");
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, id);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, 1);
        lua_rawseti(L, params, 1);
        int n = call_once(L, t, "core.get_jobs", params);
        lua_remove(L, params);
        if (n != 1)
            return n;
        if (lua_type(L, -1) != LUA_TTABLE || lua_rawgeti(L, -1, 1) != LUA_TTABLE) {
            lua_settop(L, lua_gettop(L) - (lua_type(L, -1) == LUA_TTABLE ? 2 : 1));
            return push_fail(L, "ENOENT", "%s: job %lld is not in core.get_jobs", method, (long long)id);
        }
        lua_remove(L, -2);
        int job = lua_gettop(L);
        lua_getfield(L, job, "progress");
        lua_getfield(L, -1, "percent");
        double percent = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
        lua_pop(L, 2);
        if (percent != last_percent) {
            report_progress(L, t, job, wait_name);
            last_percent = percent;
        }
        lua_getfield(L, job, "state");
        const char *state = lua_tostring(L, -1);
        char st[32];
        snprintf(st, sizeof st, "%s", state ? state : "?");
        lua_pop(L, 1);
        if (strcmp(st, "SUCCESS") == 0) {
            lua_getfield(L, job, "result");
            lua_remove(L, job);
            return 1;
        }
        if (strcmp(st, "FAILED") == 0 || strcmp(st, "ABORTED") == 0) {
            lua_getfield(L, job, "error");
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : st);
            lua_pop(L, 1);
            size_t len = strlen(msg);
            while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
                msg[--len] = '\0';
            const char *m = msg;
            if (*m == '[') {
                const char *close = strstr(m, "] ");
                if (close)
                    m = close + 2;
            }
            char errname[32] = "EFAULT";
            lua_getfield(L, job, "exc_info");
            if (lua_type(L, -1) == LUA_TTABLE) {
                lua_getfield(L, -1, "type");
                if (lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), "VALIDATION") == 0)
                    strcpy(errname, "EINVAL");
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            if (msg[0] == '[') {
                const char *close = strchr(msg, ']');
                if (close && close - msg < (long)sizeof errname) {
                    memcpy(errname, msg + 1, (size_t)(close - msg - 1));
                    errname[close - msg - 1] = '\0';
                }
            }
            lua_pop(L, 1);
            return push_fail(L, strcmp(st, "ABORTED") == 0 ? "ABORTED" : errname, "%s: job %lld %s: %s", method,
                             (long long)id, strcmp(st, "ABORTED") == 0 ? "aborted" : "failed", m);
        }
        lua_pop(L, 1);
        if (now_mono() + wait > deadline)
            return push_fail(L, "timeout", "%s: job %lld still %s after %.0f s", method, (long long)id, st,
                             t->job_timeout);
        sleep_for(wait);
        wait = wait * 2 > POLL_MAX ? POLL_MAX : wait * 2;
    }
}

/* The whole call: params at idx (already revealed). */
static int do_call(lua_State *L, struct tn *t, const char *method, int params)
{
    params = lua_absindex(L, params);
    int n = call_once(L, t, method, params);
    if (n != 1)
        return n;
    /* an integral number may be a job id (cjson decodes numbers as floats) */
    lua_Integer id;
    if (lua_type(L, -1) != LUA_TNUMBER || !lua_numbertointeger(lua_tonumber(L, -1), &id) ||
        lua_tonumber(L, -1) != (lua_Number)id || strcmp(method, "core.get_methods") == 0)
        return 1;
    int j = is_job(L, t, method);
    if (j < 0) {
        lua_remove(L, -4); /* the job id below nil, msg, code */
        return 3;
    }
    if (!j)
        return 1;
    lua_pop(L, 1);
    char wait_name[160];
    job_wait_name(wait_name, sizeof wait_name, method, id);
    n = follow_job(L, t, method, id, wait_name);
    if (t->progress_ref == LUA_NOREF)
        sbot_progress_end(L, wait_name);
    return n;
}

/* ---- Lua API --------------------------------------------------------------------------- */

static double opt_seconds(lua_State *L, int opts, const char *key, double def)
{
    double v = def;
    if (lua_getfield(L, opts, key) != LUA_TNIL) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "truenas.connect: opts.%s must be a number of seconds", key);
        v = lua_tonumber(L, -1);
        if (!(v > 0 && v <= 86400))
            luaL_error(L, "truenas.connect: opts.%s must be a positive number of seconds (at most a day)", key);
    }
    lua_pop(L, 1);
    return v;
}

static int l_connect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const known[] = {"url", "api_key", "user", "tls", "timeout", "call_timeout",
                                        "job_timeout", "progress", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int ok = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; known[i]; i++)
                if (strcmp(lua_tostring(L, -2), known[i]) == 0)
                    ok = 1;
        if (!ok)
            return luaL_error(L, "truenas.connect: unknown option '%s'", luaL_tolstring(L, -2, NULL));
        lua_pop(L, 1);
    }
    if (lua_getfield(L, 1, "url") != LUA_TSTRING)
        return luaL_error(L, "truenas.connect: opts.url (string) is required");
    const char *url = lua_tostring(L, -1);
    int rest;
    if (strncmp(url, "ws://", 5) == 0 || strncmp(url, "wss://", 6) == 0)
        rest = 0;
    else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
        rest = 1;
    else
        return luaL_error(L, "truenas.connect: opts.url '%s' must be ws(s)://HOST/api/current or "
                             "http(s)://HOST/api/v2.0", url);
    if (strlen(url) >= 500)
        return luaL_error(L, "truenas.connect: opts.url is too long");
    if (rest && !strstr(url, "/api/v2.0"))
        return luaL_error(L, "truenas.connect: opts.url '%s': an http(s) URL is the REST API and must end in "
                             "/api/v2.0 (JSON-RPC needs ws(s)://HOST/api/current)", url);
    int key_type = lua_getfield(L, 1, "api_key");
    if (key_type != LUA_TSTRING && !sbot_is_secret(L, -1))
        return luaL_error(L, "truenas.connect: opts.api_key (string or secret) is required");
    if (lua_getfield(L, 1, "user") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "truenas.connect: opts.user must be a string");
    const char *user = lua_isstring(L, -1) ? lua_tostring(L, -1) : "root";
    if (strlen(user) >= 128)
        return luaL_error(L, "truenas.connect: opts.user is too long");
    lua_getfield(L, 1, "tls");
    {
        struct sbot_tls tls; /* the one TLS option parser: misuse raises here, naming truenas */
        sbot_tls_check(L, -1, "truenas.connect: tls", url, &tls);
    }
    if (lua_getfield(L, 1, "progress") != LUA_TNIL && lua_type(L, -1) != LUA_TFUNCTION)
        return luaL_error(L, "truenas.connect: opts.progress must be a function");
    double timeout = opt_seconds(L, 1, "timeout", 30);
    double call_timeout = opt_seconds(L, 1, "call_timeout", timeout);
    double job_timeout = opt_seconds(L, 1, "job_timeout", 600);
    /* stack: 2 url, 3 api_key, 4 user, 5 tls, 6 progress */

    /* the collaborators, required once (their C APIs need it) */
    lua_getglobal(L, "require");
    lua_pushstring(L, rest ? "sbot.http" : "sbot.ws");
    lua_call(L, 1, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.json");
    lua_call(L, 1, 1);
    int json = lua_gettop(L);

    /* the key as a string (revealed here, held in C, wiped on close) */
    if (sbot_is_secret(L, 3)) {
        lua_getfield(L, 3, "reveal");
        lua_pushvalue(L, 3);
        lua_call(L, 1, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "truenas.connect: opts.api_key: the secret's reveal() did not give a string");
        lua_replace(L, 3);
    }
    size_t klen;
    const char *key = lua_tolstring(L, 3, &klen);
    if (klen == 0)
        return luaL_error(L, "truenas.connect: opts.api_key is empty");
    sbot_log_add_secret(L, key, klen); /* never printed from now on */

    struct tn *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->tls_ref = t->conn_ref = t->json_ref = t->progress_ref = t->jobs_ref = LUA_NOREF;
    luaL_setmetatable(L, TN_MT);
    int ud = lua_gettop(L);
    t->key = malloc(klen + 1);
    if (!t->key)
        return luaL_error(L, "truenas.connect: out of memory");
    memcpy(t->key, key, klen + 1);
    t->key_len = klen;
    t->open = 1;
    t->rest = rest;
    snprintf(t->url, sizeof t->url, "%s", url);
    if (rest) { /* base without a trailing slash */
        size_t n = strlen(t->url);
        while (n && t->url[n - 1] == '/')
            t->url[--n] = '\0';
    }
    snprintf(t->user, sizeof t->user, "%s", user);
    t->timeout = timeout;
    t->call_timeout = call_timeout;
    t->job_timeout = job_timeout;
    lua_pushvalue(L, json);
    t->json_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_isnil(L, 5)) {
        lua_pushvalue(L, 5);
        t->tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (!lua_isnil(L, 6)) {
        lua_pushvalue(L, 6);
        t->progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_newtable(L);
    t->jobs_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* connect and log in now: a wrong key or an unreachable host is an error here */
    int r;
    if (rest) {
        lua_pushfstring(L, "%s/auth/me", t->url);
        r = rest_request(L, t, "auth.me", "GET", -1, 0);
        if (r == 0)
            lua_pop(L, 2);
        else
            lua_remove(L, -4);
    } else {
        int fresh;
        r = ws_session(L, t, &fresh);
    }
    if (r) {
        tn_release(L, t);
        return r;
    }
    lua_settop(L, ud);
    return 1;
}

static int l_call(lua_State *L)
{
    struct tn *t = check_open(L, 1);
    const char *method = luaL_checkstring(L, 2);
    int nargs = lua_gettop(L) - 2;
    push_array(L, t);
    int params = lua_gettop(L);
    for (int i = 1; i <= nargs; i++) {
        push_revealed(L, 2 + i, 0);
        lua_rawseti(L, params, i);
    }
    return do_call(L, t, method, params);
}

static int l_stats(lua_State *L)
{
    struct tn *t = luaL_checkudata(L, 1, TN_MT);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, t->calls);
    lua_setfield(L, -2, "calls");
    lua_pushinteger(L, t->login_count);
    lua_setfield(L, -2, "logins");
    lua_pushinteger(L, t->reconnects);
    lua_setfield(L, -2, "reconnects");
    lua_pushinteger(L, t->resends);
    lua_setfield(L, -2, "resends");
    lua_pushstring(L, t->rest ? "rest" : "jsonrpc");
    lua_setfield(L, -2, "transport");
    lua_pushstring(L, t->url);
    lua_setfield(L, -2, "url");
    return 1;
}

static int l_tostring(lua_State *L)
{
    struct tn *t = luaL_checkudata(L, 1, TN_MT);
    lua_pushfstring(L, "truenas client %s (%s)", t->url, t->open ? "open" : "closed");
    return 1;
}

/* ---- C API (engine/sbot.h) ----------------------------------------------------------- */

int sbot_truenas_connect(lua_State *L, int opts)
{
    opts = lua_absindex(L, opts);
    int base = lua_gettop(L);
    lua_pushcfunction(L, l_connect);
    lua_pushvalue(L, opts);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - base;
}

int sbot_truenas_call(lua_State *L, int client, const char *method, int nargs)
{
    client = lua_absindex(L, client);
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, l_call);
    lua_pushvalue(L, client);
    lua_pushstring(L, method);
    for (int i = 1; i <= nargs; i++)
        lua_pushvalue(L, base + i);
    lua_call(L, nargs + 2, LUA_MULTRET);
    int n = lua_gettop(L) - base - nargs;
    /* drop the arguments below the results */
    for (int i = 0; i < nargs; i++)
        lua_remove(L, base + 1);
    return n;
}

void sbot_truenas_close(lua_State *L, int client)
{
    client = lua_absindex(L, client);
    lua_pushcfunction(L, l_close);
    lua_pushvalue(L, client);
    lua_call(L, 1, 0);
}

int luaopen_sbot_truenas(lua_State *L)
{
    static const luaL_Reg methods[] = {{"call", l_call}, {"close", l_close}, {"stats", l_stats}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"connect", l_connect}, {NULL, NULL}};
    if (luaL_newmetatable(L, TN_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
