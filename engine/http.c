/* http.c: sbot.http - HTTP(S) client on libcurl.
 *
 * Every request, single or batched, runs on one libcurl multi handle kept per
 * interpreter (a userdata in the registry), so connections, DNS entries and
 * TLS sessions are reused across calls (keep-alive).
 *
 * Memory rule: everything a call allocates is owned by a "batch" userdata
 * whose __gc/__close releases it, so a Lua error anywhere (argument checks,
 * out of memory) leaks nothing. Lua callbacks (progress, retry_if) always run
 * under lua_pcall; an error there is recorded, the transfer is aborted from
 * the libcurl callback by returning "abort", and the error is raised only
 * after every handle and file has been released. */
#define _GNU_SOURCE
#include "luax.h"
#include "sbot.h"
#include "util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_KEY "sbot.http.state"  /* registry key of the state userdata */
#define STATE_MT "sbot.http.state_mt" /* its metatable (a different registry key) */
#define BATCH_MT "sbot.http.batch"

#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_TIMEOUT 60.0
#define DEFAULT_MAX_BODY (64u * 1024 * 1024)
#define DEFAULT_RETRY_MAX 3
#define DEFAULT_RETRY_BASE 0.5
#define DEFAULT_RETRY_CAP 30.0
#define DEFAULT_PER_HOST 2
#define DEFAULT_TOTAL 64
#define PROGRESS_INTERVAL 0.25 /* seconds between progress calls */

int luaopen_sbot_http(lua_State *L);

/* ---- per-interpreter state ------------------------------------------------ */

struct http_state {
    CURLM *multi; /* owns the connection cache shared by every request */
    CURLSH *share; /* TLS session cache */
    int busy;      /* a request is running: callbacks may not start another */
};

static int state_gc(lua_State *L)
{
    struct http_state *st = luaL_checkudata(L, 1, STATE_MT);
    if (st->multi) {
        curl_multi_cleanup(st->multi);
        st->multi = NULL;
    }
    if (st->share) {
        curl_share_cleanup(st->share);
        st->share = NULL;
    }
    return 0;
}

/* Push the state userdata (its uservalue holds the insecure-warned hosts). */
static struct http_state *push_state(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, STATE_KEY) == LUA_TUSERDATA)
        return lua_touserdata(L, -1);
    lua_pop(L, 1);
    struct http_state *st = lua_newuserdatauv(L, sizeof *st, 1);
    st->multi = NULL;
    st->share = NULL;
    st->busy = 0;
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    st->multi = curl_multi_init();
    st->share = curl_share_init();
    if (!st->multi || !st->share)
        luaL_error(L, "sbot.http: cannot create a libcurl handle (out of memory)");
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, 64L);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
    return st;
}

/* ---- small helpers ---------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
};

/* Capacity for exactly cap bytes (no-op when it already has that much). */
static int buf_reserve(struct buf *b, size_t cap)
{
    if (cap <= b->cap)
        return 0;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static double random_unit(void)
{
    unsigned int r;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (unsigned int)rand();
    return (double)r / 4294967296.0;
}

/* Header names whose values never appear in a log line. */
static int sensitive_header(const char *name, size_t len)
{
    static const char *const names[] = {"authorization", "proxy-authorization", "x-auth-token",
                                        "cookie", "set-cookie", "x-amz-security-token", NULL};
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

static int sensitive_param(const char *name, size_t len)
{
    static const char *const names[] = {"x-amz-signature", "x-amz-credential",
                                        "x-amz-security-token", NULL};
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

/* Push url with the password of its userinfo and the values of signing query
 * parameters replaced by <redacted>, then every registered secret too. */
static void push_redacted_url(lua_State *L, const char *url)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *p = url;
    const char *scheme = strstr(url, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = memrchr(auth, '@', (size_t)(end - auth));
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
            luaL_addlstring(&b, url, (size_t)(colon + 1 - url));
            luaL_addstring(&b, "<redacted>");
            p = at;
        }
    }
    const char *q = strchr(p, '?');
    if (!q) {
        luaL_addstring(&b, p);
    } else {
        luaL_addlstring(&b, p, (size_t)(q + 1 - p));
        const char *s = q + 1;
        const char *hash = strchr(s, '#');
        const char *end = hash ? hash : s + strlen(s);
        while (s < end) {
            const char *amp = memchr(s, '&', (size_t)(end - s));
            const char *pe = amp ? amp : end;
            const char *eq = memchr(s, '=', (size_t)(pe - s));
            if (eq && sensitive_param(s, (size_t)(eq - s))) {
                luaL_addlstring(&b, s, (size_t)(eq + 1 - s));
                luaL_addstring(&b, "<redacted>");
            } else {
                luaL_addlstring(&b, s, (size_t)(pe - s));
            }
            if (amp)
                luaL_addchar(&b, '&');
            s = amp ? amp + 1 : end;
        }
        if (hash)
            luaL_addstring(&b, hash);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *r = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, r, len);
    lua_remove(L, -2);
}

/* ---- one transfer ------------------------------------------------------------ */

enum xstate { X_QUEUED, X_RUNNING, X_WAITING, X_DONE };
enum sink { SINK_UNDECIDED, SINK_MEMORY, SINK_FILE };

struct batch;

struct xfer {
    struct batch *batch;
    CURL *easy;
    enum xstate state;
    int index; /* 1-based position in the batch */
    int host;  /* small id of scheme://host:port */

    /* request */
    char method[16];
    char *url, *url_safe;
    struct curl_slist *headers;
    struct buf header_log; /* redacted request headers for the debug log */
    const char *body; /* anchored Lua string */
    size_t body_len;
    int has_body;
    char *body_file, *output_file, *part_file;
    long timeout_ms, connect_timeout_ms;
    int retry_max;
    double retry_base, retry_cap;
    int retry_unsafe;
    int retry_if; /* index in the anchor table, 0 = none */
    int progress; /* index in the anchor table, 0 = none */
    char *progress_what; /* progress = "what": reported through sbot.progress */
    int progress_shown;  /* a wait was begun for progress_what */
    size_t max_body;
    int connection_close;
    int insecure;
    char *ca_file, *pin, *server_name;
    struct curl_slist *connect_to; /* tls.server_name: connect to the URL's host */
    char *user, *password;

    /* current attempt */
    FILE *in, *out;
    curl_off_t in_size, in_left; /* bytes of body_file to send, still to send */
    long long body_offset, body_length; /* body_length -1: to the end of the file */
    enum sink sink;
    struct buf body_buf, head_buf;
    int too_large;
    int write_errno;
    int read_errno;
    double last_progress;
    curl_off_t p_done, p_total;
    char errbuf[CURL_ERROR_SIZE];

    int attempts;
    double not_before;
    double started;
};

struct batch {
    struct http_state *st;
    lua_State *L;
    int n;
    struct xfer *x;
    int cb_failed; /* a Lua callback raised: its error is in the anchor table */
    int anchor;    /* stack index of the anchor table while the batch runs */
    int per_host, total;
    int *host_running;
    int nhosts;
    const char *fname; /* "http.request" or "http.batch" for messages */
};

static void xfer_close_files(struct xfer *x, int remove_part)
{
    if (x->in) {
        fclose(x->in);
        x->in = NULL;
    }
    if (x->out) {
        fclose(x->out);
        x->out = NULL;
    }
    if (remove_part && x->part_file)
        unlink(x->part_file);
}

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void xfer_release(struct batch *b, struct xfer *x)
{
    if (x->progress_shown && b->L) {
        x->progress_shown = 0;
        sbot_progress_end(b->L, x->progress_what);
    }
    free(x->progress_what);
    x->progress_what = NULL;
    if (x->easy) {
        if (x->state == X_RUNNING && b->st && b->st->multi)
            curl_multi_remove_handle(b->st->multi, x->easy);
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    xfer_close_files(x, x->state != X_DONE);
    x->state = X_DONE;
    free(x->url);
    free(x->url_safe);
    curl_slist_free_all(x->headers);
    buf_free(&x->header_log);
    free(x->body_file);
    free(x->output_file);
    free(x->part_file);
    free(x->ca_file);
    free(x->pin);
    free(x->server_name);
    curl_slist_free_all(x->connect_to);
    free(x->user);
    wipe_free(x->password);
    buf_free(&x->body_buf);
    buf_free(&x->head_buf);
    memset(x, 0, sizeof *x);
    x->state = X_DONE;
}

static int batch_release(lua_State *L)
{
    struct batch *b = luaL_checkudata(L, 1, BATCH_MT);
    if (b->x) {
        for (int i = 0; i < b->n; i++)
            xfer_release(b, &b->x[i]);
        free(b->x);
        b->x = NULL;
    }
    free(b->host_running);
    b->host_running = NULL;
    if (b->st) {
        b->st->busy = 0;
        b->st = NULL;
    }
    return 0;
}

/* ---- libcurl callbacks ------------------------------------------------------- */

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        x->head_buf.len = 0; /* a new response (after 100 Continue, redirects) */
    if (x->head_buf.len + n > 256 * 1024)
        return 0; /* absurd header block */
    return buf_add(&x->head_buf, data, n) == 0 ? n : 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->sink == SINK_UNDECIDED) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        x->sink = SINK_MEMORY;
        if (x->output_file && status >= 200 && status < 300) {
            x->out = fopen(x->part_file, "wbe");
            if (!x->out) {
                x->write_errno = errno ? errno : EIO;
                return 0;
            }
            x->sink = SINK_FILE;
        }
    }
    if (x->sink == SINK_FILE) {
        if (fwrite(data, 1, n, x->out) != n) {
            x->write_errno = errno ? errno : EIO;
            return 0;
        }
        return n;
    }
    if (x->body_buf.len == 0 && x->body_buf.cap == 0) {
        /* a body of announced size: refuse it now if it is over max_body,
         * else hold exactly that (growing by doubling could hold twice) */
        curl_off_t announced = -1;
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
        if (announced > (curl_off_t)x->max_body) {
            x->too_large = 1;
            return 0;
        }
        if (announced > 0 && buf_reserve(&x->body_buf, (size_t)announced + 1) != 0)
            return 0;
    }
    if (x->body_buf.len + n > x->max_body) {
        x->too_large = 1;
        return 0;
    }
    return buf_add(&x->body_buf, data, n) == 0 ? n : 0;
}

static size_t on_read(char *data, size_t size, size_t nitems, void *ud)
{
    struct xfer *x = ud;
    size_t want = size * nitems;
    if ((curl_off_t)want > x->in_left)
        want = (size_t)x->in_left;
    if (want == 0)
        return 0;
    size_t n = fread(data, 1, want, x->in);
    if (n == 0) {
        /* an error, or the file shrank below the announced length */
        x->read_errno = ferror(x->in) && errno ? errno : ENODATA;
        return CURL_READFUNC_ABORT;
    }
    x->in_left -= (curl_off_t)n;
    return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    struct xfer *x = ud;
    if (origin != SEEK_SET || offset < 0 || offset > x->in_size ||
        fseeko(x->in, (off_t)(x->body_offset + offset), SEEK_SET) != 0)
        return CURL_SEEKFUNC_FAIL;
    x->in_left = x->in_size - offset;
    return CURL_SEEKFUNC_OK;
}

static void human_bytes(char *out, size_t size, double n)
{
    if (n < 1024)
        snprintf(out, size, "%.0f B", n);
    else if (n < 1024.0 * 1024)
        snprintf(out, size, "%.1f KiB", n / 1024);
    else if (n < 1024.0 * 1024 * 1024)
        snprintf(out, size, "%.1f MiB", n / (1024.0 * 1024));
    else
        snprintf(out, size, "%.2f GiB", n / (1024.0 * 1024 * 1024));
}

/* progress = "what": the transfer's counters as a wait of sbot.progress.
 * Runs protected (it may allocate); the xfer is the light userdata. */
static int report_progress(lua_State *L)
{
    struct xfer *x = lua_touserdata(L, 1);
    char done[32], total[32], detail[80];
    human_bytes(done, sizeof done, (double)x->p_done);
    double fraction = SBOT_PROGRESS_UNKNOWN;
    if (x->p_total > 0) {
        human_bytes(total, sizeof total, (double)x->p_total);
        snprintf(detail, sizeof detail, "%s of %s", done, total);
        fraction = (double)x->p_done / (double)x->p_total;
    } else {
        snprintf(detail, sizeof detail, "%s", done);
    }
    sbot_progress_detail(L, x->progress_what, fraction, detail);
    x->progress_shown = 1;
    return 0;
}

/* Call the progress function of x with its current counters. Returns 0, or
 * -1 when it raised (the error goes to anchor.cb_error, the batch fails). */
static int call_progress(struct xfer *x)
{
    struct batch *b = x->batch;
    lua_State *L = b->L;
    if (x->progress_what) {
        lua_pushcfunction(L, report_progress);
        lua_pushlightuserdata(L, x);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            lua_setfield(L, b->anchor, "cb_error");
            b->cb_failed = 1;
            return -1;
        }
        return 0;
    }
    lua_rawgeti(L, b->anchor, x->progress);
    lua_pushinteger(L, (lua_Integer)x->p_done);
    if (x->p_total > 0)
        lua_pushinteger(L, (lua_Integer)x->p_total);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        lua_setfield(L, b->anchor, "cb_error");
        b->cb_failed = 1;
        return -1;
    }
    return 0;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = ud;
    if (x->batch->cb_failed)
        return 1;
    if (x->has_body) {
        x->p_done = ulnow;
        x->p_total = ultotal;
    } else {
        x->p_done = dlnow;
        x->p_total = dltotal;
    }
    double t = now_mono();
    if (t - x->last_progress < PROGRESS_INTERVAL)
        return 0;
    x->last_progress = t;
    return call_progress(x) == 0 ? 0 : 1;
}

/* ---- parsing a request table ------------------------------------------------- */

static const char *const request_keys[] = {
    "method", "url", "headers", "body", "body_file", "output_file", "timeout", "connect_timeout",
    "retries", "retry_unsafe", "retry_if", "tls", "basic_auth", "max_body", "progress",
    "connection_close", "body_offset", "body_length", NULL};

static char *dup_or_die(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        luaL_error(L, "sbot.http: out of memory");
    return d;
}

/* Fail on keys of table t not in `allowed`. */
static void check_keys(lua_State *L, int t, const char *const allowed[], const char *where,
                       const char *what)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; allowed[i]; i++)
                if (strcmp(k, allowed[i]) == 0)
                    ok = 1;
        }
        if (!ok) {
            lua_pushvalue(L, -1);
            luaL_error(L, "%s: unknown %s '%s'", where, what, luaL_tolstring(L, -1, NULL));
        }
    }
}

static const char *opt_string(lua_State *L, int t, const char *key, const char *where)
{
    int ty = lua_getfield(L, t, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (ty != LUA_TSTRING)
        luaL_error(L, "%s: '%s' must be a string, got %s", where, key, luaL_typename(L, -1));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive in t */
    return s;
}

static double opt_number(lua_State *L, int t, const char *key, double dflt, double min,
                         const char *where)
{
    int ty = lua_getfield(L, t, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    if (ty != LUA_TNUMBER)
        luaL_error(L, "%s: '%s' must be a number, got %s", where, key, luaL_typename(L, -1));
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= min) || isinf(v)) {
        char lo[32], got[32];
        snprintf(lo, sizeof lo, "%g", min);
        snprintf(got, sizeof got, "%g", v);
        luaL_error(L, "%s: '%s' must be a number >= %s, got %s", where, key, lo, got);
    }
    return v;
}

static int opt_bool(lua_State *L, int t, const char *key, const char *where)
{
    int ty = lua_getfield(L, t, key);
    if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
        luaL_error(L, "%s: '%s' must be a boolean, got %s", where, key, luaL_typename(L, -1));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Store the function t[key] (if any) in the anchor table; returns its slot. */
static int opt_function(lua_State *L, int t, const char *key, int anchor, const char *where)
{
    int ty = lua_getfield(L, t, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (ty != LUA_TFUNCTION)
        luaL_error(L, "%s: '%s' must be a function, got %s", where, key, luaL_typename(L, -1));
    int slot = (int)lua_rawlen(L, anchor) + 1;
    lua_rawseti(L, anchor, slot);
    return slot;
}

/* Replace the value at idx (absolute) by the revealed string of a secret
 * object, registering it with the log redactor. Returns 1 if it was one. */
static int reveal_in_place(lua_State *L, int idx, const char *where, const char *what)
{
    if (!sbot_is_secret(L, idx))
        return 0;
    lua_getfield(L, idx, "reveal");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s: secret reveal() returned %s, expected a string", where, what,
                   luaL_typename(L, -1));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    sbot_log_add_secret(L, s, len);
    lua_replace(L, idx);
    return 1;
}

static int valid_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static void parse_headers(lua_State *L, struct xfer *x, int t, const char *where)
{
    if (lua_getfield(L, t, "headers") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: 'headers' must be a table, got %s", where, luaL_typename(L, -1));
    int h = lua_gettop(L);
    struct buf *hl = &x->header_log;
    lua_pushnil(L);
    while (lua_next(L, h)) {
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING || !valid_token(lua_tostring(L, -2))) {
            lua_pushvalue(L, -2);
            luaL_error(L, "%s: headers: invalid header name '%s'", where,
                       luaL_tolstring(L, -1, NULL));
        }
        const char *name = lua_tostring(L, -2);
        int secret = 0;
        if (lua_type(L, v) == LUA_TNUMBER) {
            lua_pushstring(L, lua_tostring(L, v)); /* a copy: never convert the table value */
            lua_replace(L, v);
        } else if (lua_type(L, v) != LUA_TSTRING) {
            secret = reveal_in_place(L, v, where, "headers");
            if (!secret) {
                    luaL_error(L, "%s: headers.%s must be a string, number or secret, got %s", where,
                           name, luaL_typename(L, v));
            }
        }
        size_t vl;
        const char *value = lua_tolstring(L, v, &vl);
        if (strlen(value) != vl || strpbrk(value, "\r\n")) {
            luaL_error(L, "%s: headers.%s contains a line break or NUL byte", where, name);
        }
        /* libcurl sends "Name;" as a header with an empty value. */
        lua_pushfstring(L, vl ? "%s: %s" : "%s;", name, value);
        struct curl_slist *n = curl_slist_append(x->headers, lua_tostring(L, -1));
        if (!n) {
            luaL_error(L, "sbot.http: out of memory");
        }
        x->headers = n;
        int hide = secret || sensitive_header(name, strlen(name));
        if (buf_add(hl, hl->len ? ", " : "", hl->len ? 2 : 0) || buf_add(hl, name, strlen(name)) ||
            buf_add(hl, ": ", 2) || buf_add(hl, hide ? "<redacted>" : value, hide ? 10 : vl))
            luaL_error(L, "sbot.http: out of memory");
        lua_settop(L, v - 1);
    }
    lua_pop(L, 1);
}

static int has_header(struct xfer *x, const char *name)
{
    size_t n = strlen(name);
    for (struct curl_slist *s = x->headers; s; s = s->next)
        if (strncasecmp(s->data, name, n) == 0 && (s->data[n] == ':' || s->data[n] == ';'))
            return 1;
    return 0;
}

static void add_header(lua_State *L, struct xfer *x, const char *line)
{
    struct curl_slist *n = curl_slist_append(x->headers, line);
    if (!n)
        luaL_error(L, "sbot.http: out of memory");
    x->headers = n;
}

/* tls = {ca_file, pin_sha256, insecure, server_name}: the shared parser
 * (tls.c), then copies in x (a struct sbot_tls per transfer would cost 4 KiB
 * each in a batch of thousands). */
static void parse_tls(lua_State *L, struct xfer *x, int t, const char *where)
{
    struct sbot_tls tls;
    lua_getfield(L, t, "tls");
    lua_pushfstring(L, "%s: tls", where);
    sbot_tls_check(L, -2, lua_tostring(L, -1), x->url_safe, &tls);
    lua_pop(L, 2);
    x->insecure = tls.insecure;
    if (tls.ca_file[0])
        x->ca_file = dup_or_die(L, tls.ca_file);
    if (tls.has_pin) {
        char b64[45];
        sbot_tls_pin_base64(&tls, b64);
        lua_pushfstring(L, "sha256//%s", b64);
        x->pin = dup_or_die(L, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    if (tls.server_name[0])
        x->server_name = dup_or_die(L, tls.server_name);
}

/* tls.server_name: the URL's host becomes server_name (libcurl sends it as
 * SNI and checks the certificate against it) while CURLOPT_CONNECT_TO still
 * connects to the URL's host, and the Host header stays the URL's. */
static void apply_server_name(lua_State *L, struct xfer *x, const char *where)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *named = NULL;
    if (!u)
        luaL_error(L, "sbot.http: out of memory");
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, x->url, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (rc == CURLUE_OK)
        rc = curl_url_set(u, CURLUPART_HOST, x->server_name, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_URL, &named, 0);
    char connect[700], hosthdr[600]; /* no Lua call while libcurl's strings are held */
    int fits = 0;
    if (rc == CURLUE_OK) {
        char *explicit_port = NULL;
        int default_port = curl_url_get(u, CURLUPART_PORT, &explicit_port, 0) != CURLUE_OK;
        curl_free(explicit_port);
        int a = snprintf(connect, sizeof connect, "%s:%s:%s:%s", x->server_name, port, host, port);
        int b = default_port ? snprintf(hosthdr, sizeof hosthdr, "Host: %s", host)
                             : snprintf(hosthdr, sizeof hosthdr, "Host: %s:%s", host, port);
        fits = a > 0 && (size_t)a < sizeof connect && b > 0 && (size_t)b < sizeof hosthdr;
    }
    char *url = rc == CURLUE_OK && fits ? strdup(named) : NULL;
    curl_free(named);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK)
        luaL_error(L, "%s: tls.server_name '%s' cannot stand for the host of '%s': %s", where,
                   x->server_name, x->url_safe, curl_url_strerror(rc));
    if (!fits)
        luaL_error(L, "%s: the host of '%s' is too long", where, x->url_safe);
    if (!url)
        luaL_error(L, "sbot.http: out of memory");
    free(x->url);
    x->url = url;
    x->connect_to = curl_slist_append(NULL, connect);
    if (!x->connect_to)
        luaL_error(L, "sbot.http: out of memory");
    if (!has_header(x, "Host"))
        add_header(L, x, hosthdr);
}

static void parse_basic_auth(lua_State *L, struct xfer *x, int t, const char *where)
{
    static const char *const keys[] = {"user", "password", NULL};
    if (lua_getfield(L, t, "basic_auth") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: 'basic_auth' must be a table {user = ..., password = ...}, got %s",
                   where, luaL_typename(L, -1));
    int at = lua_gettop(L);
    check_keys(L, at, keys, where, "basic_auth key");
    const char *user = opt_string(L, at, "user", where);
    if (!user)
        luaL_error(L, "%s: basic_auth.user is missing", where);
    x->user = dup_or_die(L, user);
    lua_getfield(L, at, "password");
    int pv = lua_gettop(L);
    if (lua_type(L, pv) != LUA_TSTRING && !reveal_in_place(L, pv, where, "basic_auth.password"))
        luaL_error(L, "%s: basic_auth.password must be a string or secret, got %s", where,
                   luaL_typename(L, pv));
    size_t pl;
    const char *pw = lua_tolstring(L, pv, &pl);
    sbot_log_add_secret(L, pw, pl);
    x->password = dup_or_die(L, pw);
    lua_settop(L, at - 1);
}

static void parse_retries(lua_State *L, struct xfer *x, int t, const char *where)
{
    static const char *const keys[] = {"max", "base", "cap", NULL};
    x->retry_max = DEFAULT_RETRY_MAX;
    x->retry_base = DEFAULT_RETRY_BASE;
    x->retry_cap = DEFAULT_RETRY_CAP;
    int ty = lua_getfield(L, t, "retries");
    if (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        x->retry_max = 0;
    } else if (ty == LUA_TTABLE) {
        int rt = lua_gettop(L);
        lua_pushfstring(L, "%s: retries", where);
        const char *w = lua_tostring(L, -1);
        check_keys(L, rt, keys, w, "key");
        double max = opt_number(L, rt, "max", DEFAULT_RETRY_MAX, 0, w);
        if (max != floor(max) || max > 100)
            luaL_error(L, "%s: 'max' must be an integer from 0 to 100", w);
        x->retry_max = (int)max;
        x->retry_base = opt_number(L, rt, "base", DEFAULT_RETRY_BASE, 0, w);
        x->retry_cap = opt_number(L, rt, "cap", DEFAULT_RETRY_CAP, 0, w);
        lua_pop(L, 1);
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "%s: 'retries' must be a table {max, base, cap} or false, got %s", where,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* Host key for the per-host limit: the scheme://host:port of the URL. */
static int host_id(lua_State *L, struct batch *b, struct xfer *x, const char *where)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    if (!u)
        luaL_error(L, "sbot.http: out of memory");
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, x->url, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    int scheme_ok = scheme && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    if (rc == CURLUE_OK && scheme_ok)
        lua_pushfstring(L, "%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK)
        luaL_error(L, "%s: invalid URL '%s': %s", where, x->url_safe, curl_url_strerror(rc));
    if (!scheme_ok)
        luaL_error(L, "%s: URL '%s' must start with http:// or https://", where, x->url_safe);
    lua_getfield(L, b->anchor, "hosts");
    lua_pushvalue(L, -2);
    int id;
    if (lua_rawget(L, -2) == LUA_TNUMBER) {
        id = (int)lua_tointeger(L, -1);
    } else {
        id = b->nhosts++;
        lua_pushvalue(L, -3);
        lua_pushinteger(L, id);
        lua_rawset(L, -4);
    }
    lua_pop(L, 3);
    return id;
}

/* Fill x from the request table at index t. Raises on misuse. */
static void parse_request(lua_State *L, struct batch *b, struct xfer *x, int t, const char *where)
{
    if (!lua_istable(L, t))
        luaL_error(L, "%s: expected a request table, got %s", where, luaL_typename(L, t));
    check_keys(L, t, request_keys, where, "option");
    const char *method = opt_string(L, t, "method", where);
    if (!method)
        method = "GET";
    size_t ml = strlen(method);
    if (ml == 0 || ml >= sizeof x->method || !valid_token(method))
        luaL_error(L, "%s: invalid method '%s'", where, method);
    for (size_t i = 0; i <= ml; i++)
        x->method[i] = (char)toupper((unsigned char)method[i]);
    const char *url = opt_string(L, t, "url", where);
    if (!url)
        luaL_error(L, "%s: 'url' is missing", where);
    x->url = dup_or_die(L, url);
    push_redacted_url(L, url);
    x->url_safe = dup_or_die(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    x->host = host_id(L, b, x, where);

    parse_headers(L, x, t, where);

    if (lua_getfield(L, t, "body") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: 'body' must be a string, got %s", where, luaL_typename(L, -1));
        x->body = lua_tolstring(L, -1, &x->body_len);
        x->has_body = 1;
        lua_rawseti(L, b->anchor, (int)lua_rawlen(L, b->anchor) + 1); /* keep it alive */
    } else {
        lua_pop(L, 1);
    }
    const char *bf = opt_string(L, t, "body_file", where);
    if (bf) {
        if (x->has_body)
            luaL_error(L, "%s: give either 'body' or 'body_file', not both", where);
        x->body_file = dup_or_die(L, bf);
        x->has_body = 1;
    }
    double off = opt_number(L, t, "body_offset", 0, 0, where);
    double blen = opt_number(L, t, "body_length", -1, 0, where);
    lua_getfield(L, t, "body_length");
    int has_len = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if ((off != 0 || has_len) && !bf)
        luaL_error(L, "%s: 'body_offset' and 'body_length' need 'body_file'", where);
    if (off != floor(off) || off > 9e15 || (has_len && (blen != floor(blen) || blen > 9e15)))
        luaL_error(L, "%s: 'body_offset' and 'body_length' must be integers", where);
    x->body_offset = (long long)off;
    x->body_length = has_len ? (long long)blen : -1;
    const char *of = opt_string(L, t, "output_file", where);
    if (of) {
        x->output_file = dup_or_die(L, of);
        lua_pushfstring(L, "%s.part", of);
        x->part_file = dup_or_die(L, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    double to = opt_number(L, t, "timeout", DEFAULT_TIMEOUT, 0.001, where);
    double cto = opt_number(L, t, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, 0.001, where);
    if (to > 31536000 || cto > 31536000)
        luaL_error(L, "%s: timeouts longer than a year are not supported", where);
    x->timeout_ms = (long)(to * 1000);
    x->connect_timeout_ms = (long)(cto * 1000);
    parse_retries(L, x, t, where);
    x->retry_unsafe = opt_bool(L, t, "retry_unsafe", where);
    x->retry_if = opt_function(L, t, "retry_if", b->anchor, where);
    if (lua_getfield(L, t, "progress") == LUA_TSTRING) {
        /* a name: the transfer is a wait of sbot.progress (docs/progress.md) */
        x->progress_what = dup_or_die(L, lua_tostring(L, -1));
        x->progress = -1;
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
        x->progress = opt_function(L, t, "progress", b->anchor, where);
    }
    double mb = opt_number(L, t, "max_body", DEFAULT_MAX_BODY, 0, where);
    x->max_body = mb > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)mb;
    x->connection_close = opt_bool(L, t, "connection_close", where);
    parse_tls(L, x, t, where);
    parse_basic_auth(L, x, t, where);
    if (x->server_name)
        apply_server_name(L, x, where);

    /* Bodies go out with Content-Length, no "Expect: 100-continue" round trip
     * and no form Content-Type invented by libcurl. */
    if (!has_header(x, "Expect"))
        add_header(L, x, "Expect:");
    if (x->has_body && !has_header(x, "Content-Type"))
        add_header(L, x, "Content-Type:");
    if (x->connection_close && !has_header(x, "Connection"))
        add_header(L, x, "Connection: close");
    x->easy = curl_easy_init();
    if (!x->easy)
        luaL_error(L, "sbot.http: cannot create a libcurl handle (out of memory)");
}

/* ---- running transfers --------------------------------------------------------- */

/* Warn once per host and interpreter that TLS verification is off. */
static void warn_insecure(lua_State *L, struct xfer *x)
{
    push_state(L);
    lua_getiuservalue(L, -1, 1);
    lua_getfield(L, x->batch->anchor, "hostnames");
    lua_rawgeti(L, -1, x->host + 1);
    const char *host = lua_tostring(L, -1);
    if (lua_getfield(L, -3, host) == LUA_TNIL) {
        sbot_log(L, SBOT_WARN, "http: TLS verification is disabled for %s (tls.insecure = true)",
                 host);
        lua_pushboolean(L, 1);
        lua_setfield(L, -5, host);
    }
    lua_pop(L, 5);
}

/* Configure the easy handle for one attempt and add it to the multi handle.
 * Returns 0, or an errno value when body_file cannot be opened. */
static int xfer_start(lua_State *L, struct batch *b, struct xfer *x)
{
    CURL *e = x->easy;
    if (x->body_file) {
        struct stat sb;
        int err = 0;
        x->in = fopen(x->body_file, "rbe");
        if (!x->in)
            return errno ? errno : EIO;
        if (fstat(fileno(x->in), &sb) != 0)
            err = errno ? errno : EIO;
        else if (!S_ISREG(sb.st_mode))
            err = EISDIR;
        else if (x->body_offset > (long long)sb.st_size ||
                 (x->body_length >= 0 && x->body_offset + x->body_length > (long long)sb.st_size))
            err = ERANGE;
        else if (fseeko(x->in, (off_t)x->body_offset, SEEK_SET) != 0)
            err = errno ? errno : EIO;
        if (err) {
            fclose(x->in);
            x->in = NULL;
            return err;
        }
        x->in_size = x->body_length >= 0 ? (curl_off_t)x->body_length
                                          : (curl_off_t)(sb.st_size - x->body_offset);
        x->in_left = x->in_size;
    }
    curl_easy_reset(e);
    x->sink = SINK_UNDECIDED;
    x->body_buf.len = 0;
    x->head_buf.len = 0;
    x->too_large = x->write_errno = x->read_errno = 0;
    x->errbuf[0] = '\0';
    x->p_done = x->p_total = 0;
    x->last_progress = now_mono();
    if (x->attempts == 0)
        x->started = x->last_progress;
    x->attempts++;

    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_SHARE, b->st->share);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);

    if (strcmp(x->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(x->method, "GET") != 0 || x->has_body)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
    if (x->body_file) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, x->in_size);
    } else if (x->body || strcmp(x->method, "POST") == 0 || strcmp(x->method, "PUT") == 0 ||
               strcmp(x->method, "PATCH") == 0) {
        /* no body given for a method that carries one: send Content-Length: 0 */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
    }
    if (x->progress) {
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    }
    if (x->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, x->connect_to);
    if (x->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, x->ca_file);
    if (x->pin) {
        curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY, x->pin);
        if (!x->ca_file) {
            /* the pinned key is the trust anchor: no CA chain or name to check */
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
    }
    if (x->insecure) {
        if (x->attempts == 1)
            warn_insecure(L, x);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (x->connection_close) {
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (x->user) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, x->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, x->password);
    }
    if (curl_multi_add_handle(b->st->multi, e) != CURLM_OK) {
        xfer_close_files(x, 0);
        return ENOMEM;
    }
    x->state = X_RUNNING;
    return 0;
}

/* Push the parsed response headers of x: lower-case names; a repeated header
 * becomes an array of its values in order. */
static void push_headers(lua_State *L, struct xfer *x)
{
    lua_newtable(L);
    int t = lua_gettop(L);
    const char *p = x->head_buf.p ? x->head_buf.p : "";
    const char *end = p + x->head_buf.len;
    int first = 1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *le = eol ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (first) { /* status line */
            first = 0;
            p = next;
            continue;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p) {
            /* the name in lower case, written in place (no per-character
             * buffer checks) */
            size_t nl = (size_t)(colon - p);
            luaL_Buffer nb;
            char *name = luaL_buffinitsize(L, &nb, nl);
            for (size_t i = 0; i < nl; i++)
                name[i] = (char)tolower((unsigned char)p[i]);
            luaL_pushresultsize(&nb, nl);
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            lua_pushvalue(L, -1);
            int ty = lua_rawget(L, t);
            if (ty == LUA_TNIL) {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawset(L, t);
            } else if (ty == LUA_TSTRING) {
                lua_createtable(L, 2, 0);
                lua_insert(L, -2);
                lua_rawseti(L, -2, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawseti(L, -2, 2);
                lua_rawset(L, t);
            } else {
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
                lua_pop(L, 2);
            }
        }
        p = next;
    }
}

static double info_seconds(CURL *e, CURLINFO what)
{
    curl_off_t us = 0;
    curl_easy_getinfo(e, what, &us);
    return (double)us / 1e6;
}

/* Push the response table of the finished attempt of x. */
static void push_response(lua_State *L, struct xfer *x)
{
    long status = 0;
    char *eff = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    push_headers(L, x);
    lua_setfield(L, -2, "headers");
    if (x->sink == SINK_FILE) {
        lua_pushstring(L, x->output_file);
        lua_setfield(L, -2, "file");
    } else {
        lua_pushlstring(L, x->body_buf.p ? x->body_buf.p : "", x->body_buf.len);
        lua_setfield(L, -2, "body");
    }
    if (x->server_name) /* the URL asked for, not the one naming server_name */
        lua_pushstring(L, x->url_safe);
    else
        push_redacted_url(L, eff ? eff : x->url);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, x->attempts);
    lua_setfield(L, -2, "attempts");
    double dns = info_seconds(x->easy, CURLINFO_NAMELOOKUP_TIME_T);
    double con = info_seconds(x->easy, CURLINFO_CONNECT_TIME_T);
    double tls = info_seconds(x->easy, CURLINFO_APPCONNECT_TIME_T);
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, dns);
    lua_setfield(L, -2, "dns");
    lua_pushnumber(L, con > dns ? con - dns : 0);
    lua_setfield(L, -2, "connect");
    lua_pushnumber(L, tls > con ? tls - con : 0);
    lua_setfield(L, -2, "tls");
    lua_pushnumber(L, info_seconds(x->easy, CURLINFO_STARTTRANSFER_TIME_T));
    lua_setfield(L, -2, "ttfb");
    lua_pushnumber(L, info_seconds(x->easy, CURLINFO_TOTAL_TIME_T));
    lua_setfield(L, -2, "total");
    lua_setfield(L, -2, "timings");
}

/* Push the message "<METHOD> <url>: <cause>" for a failed attempt and return
 * its code; *retryable says whether the failure happened before the request
 * could have reached the server (or the connection broke). */
static const char *push_failure(lua_State *L, struct xfer *x, CURLcode rc, int *retryable)
{
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    const char *code;
    *retryable = 0;
    lua_pushfstring(L, "%s %s: ", x->method, x->url_safe);
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        code = "resolve";
        lua_pushfstring(L, "cannot resolve host (%s)", detail);
        break;
    case CURLE_COULDNT_CONNECT:
        code = "connect";
        *retryable = 1;
        lua_pushfstring(L, "cannot connect (%s)", detail);
        break;
    case CURLE_OPERATION_TIMEDOUT: {
        /* a connect timeout only if no connection was made and nothing was
         * sent: on a reused (kept-alive) connection the connect time is 0
         * too, but the request went out and may have been acted upon */
        curl_off_t connected = 0;
        long sent = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected);
        curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
        code = "timeout";
        if (connected == 0 && sent == 0) {
            *retryable = 1;
            lua_pushfstring(L, "connect timed out after %d ms (connect_timeout)",
                            (int)x->connect_timeout_ms);
        } else {
            lua_pushfstring(L, "timed out after %d ms (timeout): %s", (int)x->timeout_ms, detail);
        }
        break;
    }
    case CURLE_PEER_FAILED_VERIFICATION:
        code = "tls";
        lua_pushfstring(L,
                        "TLS certificate verification failed (%s); if the server uses a private "
                        "CA or a self-signed certificate, pass tls = {ca_file = \"/path/to/ca.pem\"} "
                        "or pin its public key with tls = {pin_sha256 = \"<base64 SHA-256 of the "
                        "server public key>\"} (see docs/http.md)",
                        detail);
        break;
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        code = "tls";
        lua_pushfstring(L, "the server public key does not match tls.pin_sha256 (%s)", detail);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        code = "tls";
        lua_pushfstring(L, "TLS error (%s)", detail);
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        code = "closed";
        *retryable = 1;
        lua_pushfstring(L, "the server closed the connection %s (%s)",
                        rc == CURLE_GOT_NOTHING ? "without an answer" : "before the whole body",
                        detail);
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        code = "io";
        *retryable = 1;
        lua_pushfstring(L, "connection broken (%s)", detail);
        break;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_RANGE_ERROR:
    case CURLE_UNSUPPORTED_PROTOCOL:
        code = "protocol";
        lua_pushfstring(L, "the server broke the HTTP protocol (%s)", detail);
        break;
    case CURLE_OUT_OF_MEMORY:
        code = "ENOMEM";
        lua_pushfstring(L, "out of memory (%s)", detail);
        break;
    case CURLE_WRITE_ERROR:
        if (x->too_large) {
            code = "too_large";
            lua_pushfstring(L, "response body larger than max_body (%I bytes); use output_file "
                               "for large downloads",
                            (lua_Integer)x->max_body);
        } else if (x->write_errno) {
            code = sbot_errno_name(x->write_errno);
            lua_pushfstring(L, "cannot write %s: %s", x->part_file, strerror(x->write_errno));
        } else {
            code = "io";
            lua_pushfstring(L, "cannot store the response (%s)", detail);
        }
        break;
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
        if (x->read_errno) {
            code = sbot_errno_name(x->read_errno);
            lua_pushfstring(L, "cannot read body_file %s: %s", x->body_file,
                            strerror(x->read_errno));
            break;
        }
        /* fall through */
    default:
        code = "io";
        lua_pushfstring(L, "%s", detail);
    }
    lua_concat(L, 2);
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, msg, len);
    lua_remove(L, -2);
    return code;
}

static int safe_method(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
           !strcmp(m, "OPTIONS");
}

/* Seconds asked for by a Retry-After header of the last response, or -1. */
static double retry_after(struct xfer *x)
{
    const char *p = x->head_buf.p;
    if (!p)
        return -1;
    while ((p = strcasestr(p, "\nretry-after:")) != NULL) {
        p += 13;
        while (*p == ' ' || *p == '\t')
            p++;
        char line[128];
        size_t n = strcspn(p, "\r\n");
        if (n >= sizeof line)
            return -1;
        memcpy(line, p, n);
        line[n] = '\0';
        char *end;
        double secs = strtod(line, &end);
        if (end != line && (*end == '\0' || *end == ' '))
            return secs >= 0 ? secs : -1;
        time_t when = curl_getdate(line, NULL);
        if (when == -1)
            return -1;
        double d = difftime(when, time(NULL));
        return d > 0 ? d : 0;
    }
    return -1;
}

/* Ask retry_if(response) or retry_if(nil, err, code) with the values on top
 * of the stack (nargs of them, left in place). -1 if it raised. */
static int ask_retry_if(lua_State *L, struct xfer *x, int nargs)
{
    struct batch *b = x->batch;
    int base = lua_gettop(L) - nargs;
    lua_rawgeti(L, b->anchor, x->retry_if);
    for (int i = 1; i <= nargs; i++)
        lua_pushvalue(L, base + i);
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
        lua_setfield(L, b->anchor, "cb_error");
        b->cb_failed = 1;
        return -1;
    }
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* One debug line per request: method, URL, status (or failure), time and
 * attempts, then the request and the response headers (sensitive values
 * hidden). One line, not three: each is a write to the run's log. */
static void log_result(lua_State *L, struct xfer *x, long status, const char *err, const char *code)
{
    if (!sbot_log_enabled(L, SBOT_DEBUG))
        return;
    int ms = (int)((now_mono() - x->started) * 1000 + 0.5);
    luaL_Buffer hb;
    luaL_buffinit(L, &hb);
    if (err)
        lua_pushfstring(L, "http %s %s failed (%s) %d ms attempts=%d: %s", x->method, x->url_safe, code, ms,
                        x->attempts, err);
    else
        lua_pushfstring(L, "http %s %s %d %d ms attempts=%d", x->method, x->url_safe, (int)status, ms,
                        x->attempts);
    luaL_addvalue(&hb);
    if (x->header_log.len) {
        luaL_addstring(&hb, "; request headers: ");
        luaL_addlstring(&hb, x->header_log.p, x->header_log.len);
    }
    if (!err && x->head_buf.len) {
        /* response headers, sensitive values hidden */
        luaL_addstring(&hb, "; response headers: ");
        const char *p = x->head_buf.p, *end = p + x->head_buf.len;
        int first = 1, listed = 0;
        while (p < end) {
            const char *le = p + strcspn(p, "\r\n");
            const char *colon = memchr(p, ':', (size_t)(le - p));
            if (first) {
                first = 0;
            } else if (colon) {
                luaL_addstring(&hb, listed++ ? ", " : "");
                if (sensitive_header(p, (size_t)(colon - p))) {
                    luaL_addlstring(&hb, p, (size_t)(colon - p));
                    luaL_addstring(&hb, ": <redacted>");
                } else {
                    luaL_addlstring(&hb, p, (size_t)(le - p));
                }
            }
            p = le;
            while (p < end && (*p == '\r' || *p == '\n'))
                p++;
        }
    }
    luaL_pushresult(&hb);
    sbot_log_fields(L, SBOT_DEBUG, lua_tostring(L, -1), 0);
    lua_pop(L, 1);
}

/* Schedule another attempt of x after the backoff delay. */
static void schedule_retry(lua_State *L, struct xfer *x, long status, const char *err)
{
    double window = x->retry_base * pow(2.0, x->attempts - 1);
    if (window > x->retry_cap)
        window = x->retry_cap;
    double delay = random_unit() * window; /* full jitter */
    double ra = status ? retry_after(x) : -1;
    if (ra >= 0) {
        if (ra > x->retry_cap)
            ra = x->retry_cap;
        if (ra > delay)
            delay = ra;
    }
    if (status)
        sbot_log(L, SBOT_DEBUG, "http %s %s answered %ld, retry %d/%d in %.2f s", x->method,
                 x->url_safe, status, x->attempts, x->retry_max, delay);
    else
        sbot_log(L, SBOT_DEBUG, "http retry %d/%d in %.2f s after: %s", x->attempts,
                 x->retry_max, delay, err);
    x->state = X_WAITING;
    x->not_before = now_mono() + delay;
}

/* x is finished and its result stored: give back its memory now rather than
 * at the end of the batch (a batch can hold thousands of transfers). */
static void xfer_shrink(struct xfer *x)
{
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    buf_free(&x->body_buf);
    buf_free(&x->head_buf);
    x->state = X_DONE;
}

/* With a message at the top of the stack, push the batch entry of a
 * transport failure: {nil, message, code, error = message, code = code}. */
static void push_failure_entry(lua_State *L, const char *code)
{
    lua_createtable(L, 3, 2);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    lua_pushstring(L, code);
    lua_rawseti(L, -2, 3);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
}

/* An attempt of x ended with rc. Either schedules a retry or stores the
 * final result in the results table. Returns 1 when x is finished. */
static int xfer_done(lua_State *L, struct batch *b, struct xfer *x, CURLcode rc, int results)
{
    int top = lua_gettop(L);
    curl_multi_remove_handle(b->st->multi, x->easy);
    x->state = X_WAITING;
    int write_failed = 0;
    if (x->out && fclose(x->out) != 0 && rc == CURLE_OK) {
        x->write_errno = errno ? errno : EIO;
        write_failed = 1;
    }
    x->out = NULL;
    if (x->in) {
        fclose(x->in);
        x->in = NULL;
    }
    if (b->cb_failed)
        return 0;
    int can_retry = x->attempts <= x->retry_max;
    int safe = safe_method(x->method) || x->retry_unsafe;

    if (rc == CURLE_OK && !write_failed) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        push_response(L, x);
        int retry = 0;
        if (can_retry && x->retry_if) {
            retry = ask_retry_if(L, x, 1);
            if (retry < 0)
                return 0;
        } else if (can_retry) {
            retry = safe && (status == 429 || status == 502 || status == 503 || status == 504);
        }
        if (retry) {
            xfer_close_files(x, 1); /* no stale .part if the next attempt is not a 2xx */
            schedule_retry(L, x, status, NULL);
            lua_settop(L, top);
            return 0;
        }
        /* The final progress call comes before output_file is renamed into
         * place: if it raises, the call fails and the .part file is removed
         * with the batch, so no file is left behind. */
        if (x->progress) {
            curl_off_t up = 0, down = 0, len = -1;
            curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &up);
            curl_easy_getinfo(x->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
            curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
            x->p_done = x->has_body ? up : down;
            x->p_total = x->has_body ? (x->body_file ? x->in_size : (curl_off_t)x->body_len) : len;
            if (call_progress(x) != 0)
                return 0;
        }
        if (x->output_file && status >= 200 && status < 300) {
            if (x->sink == SINK_UNDECIDED) { /* empty body: still produce the file */
                FILE *f = fopen(x->part_file, "wbe");
                if (!f || fclose(f) != 0) {
                    x->write_errno = errno ? errno : EIO;
                    lua_settop(L, top);
                    goto failed_write;
                }
                x->sink = SINK_FILE;
                lua_pushstring(L, x->output_file);
                lua_setfield(L, -2, "file");
                lua_pushnil(L);
                lua_setfield(L, -2, "body");
            }
            if (rename(x->part_file, x->output_file) != 0) {
                x->write_errno = errno;
                lua_settop(L, top);
                goto failed_write;
            }
        }
        log_result(L, x, status, NULL, NULL);
        lua_rawseti(L, results, x->index);
        lua_settop(L, top);
        xfer_shrink(x);
        return 1;
    }
    if (write_failed) {
    failed_write:
        rc = CURLE_WRITE_ERROR;
    }
    int retryable;
    const char *code = push_failure(L, x, rc, &retryable);
    int retry = 0;
    if (can_retry && x->retry_if) {
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_pushstring(L, code);
        retry = ask_retry_if(L, x, 3);
        if (retry < 0)
            return 0;
        lua_pop(L, 1);
        lua_remove(L, -2);
    } else if (can_retry) {
        retry = safe && retryable;
    }
    if (retry) {
        xfer_close_files(x, 1);
        schedule_retry(L, x, 0, lua_tostring(L, -1));
        lua_settop(L, top);
        return 0;
    }
    xfer_close_files(x, 1);
    log_result(L, x, 0, lua_tostring(L, -1), code);
    push_failure_entry(L, code);
    lua_rawseti(L, results, x->index);
    lua_settop(L, top);
    xfer_shrink(x);
    return 1;
}

/* The result of an attempt that never started (body_file unreadable). */
static void xfer_cannot_start(lua_State *L, struct xfer *x, int err, int results)
{
    if (err == ERANGE)
        lua_pushfstring(L, "%s %s: body_file %s is shorter than body_offset + body_length (%I)",
                        x->method, x->url_safe, x->body_file,
                        (lua_Integer)(x->body_offset + (x->body_length > 0 ? x->body_length : 0)));
    else if (err == EISDIR)
        lua_pushfstring(L, "%s %s: body_file %s is not a regular file", x->method, x->url_safe,
                        x->body_file);
    else if (x->body_file)
        lua_pushfstring(L, "%s %s: cannot open body_file %s: %s", x->method, x->url_safe,
                        x->body_file, strerror(err));
    else
        lua_pushfstring(L, "%s %s: cannot start the transfer: %s", x->method, x->url_safe,
                        strerror(err));
    const char *code = sbot_errno_name(err);
    log_result(L, x, 0, lua_tostring(L, -1), code);
    push_failure_entry(L, code);
    lua_rawseti(L, results, x->index);
    lua_pop(L, 1);
    x->state = X_DONE;
}

/* Run every transfer of b to completion, honouring the per-host and total
 * limits and the retry delays. Results go to the table at `results`. */
static void run_batch(lua_State *L, struct batch *b, int results)
{
    CURLM *m = b->st->multi;
    int remaining = b->n, running = 0;
    int nhosts = b->nhosts ? b->nhosts : 1;
    b->host_running = calloc((size_t)nhosts, sizeof(int));
    if (!b->host_running)
        luaL_error(L, "sbot.http: out of memory");
    while (remaining > 0) {
        double now = now_mono(), wake = HUGE_VAL;
        for (int i = 0; i < b->n; i++) {
            struct xfer *x = &b->x[i];
            if (x->state == X_WAITING && x->not_before > now) {
                if (x->not_before < wake)
                    wake = x->not_before;
                continue;
            }
            if ((x->state != X_QUEUED && x->state != X_WAITING) || running >= b->total ||
                b->host_running[x->host] >= b->per_host)
                continue;
            int err = xfer_start(L, b, x);
            if (err) {
                xfer_cannot_start(L, x, err, results);
                remaining--;
                continue;
            }
            running++;
            b->host_running[x->host]++;
        }
        if (remaining == 0)
            break;
        int still = 0;
        curl_multi_perform(m, &still);
        if (b->cb_failed)
            return;
        int finished = 0, left;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            CURLcode rc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            running--;
            b->host_running[x->host]--;
            finished++;
            if (xfer_done(L, b, x, rc, results))
                remaining--;
            if (b->cb_failed)
                return;
        }
        if (finished || remaining == 0)
            continue; /* start what the freed slots allow before waiting */
        now = now_mono();
        if (running > 0) {
            double w = wake - now;
            int ms = w > 1.0 ? 1000 : (w <= 0 ? 0 : (int)(w * 1000) + 1);
            curl_multi_poll(m, NULL, 0, ms, NULL);
        } else if (wake < HUGE_VAL) {
            sleep_seconds(wake - now);
        }
    }
}

/* ---- Lua API -------------------------------------------------------------------- */

/* Push a new batch userdata (closed state) with n transfers and its anchor
 * table; returns it. Stack: ... batch anchor results */
static struct batch *new_batch(lua_State *L, int n, const char *fname)
{
    struct http_state *st = push_state(L);
    lua_pop(L, 1);
    if (st->busy)
        luaL_error(L, "%s: cannot start a request from inside a progress or retry_if callback",
                   fname);
    struct batch *b = lua_newuserdatauv(L, sizeof *b, 1);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, BATCH_MT)) {
        lua_pushcfunction(L, batch_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, batch_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    b->fname = fname;
    b->L = L;
    b->x = calloc(n ? (size_t)n : 1, sizeof *b->x);
    if (!b->x)
        luaL_error(L, "sbot.http: out of memory");
    b->n = n;
    for (int i = 0; i < n; i++) {
        b->x[i].batch = b;
        b->x[i].index = i + 1;
        b->x[i].state = X_QUEUED;
    }
    lua_newtable(L);
    lua_newtable(L);
    lua_setfield(L, -2, "hosts");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, -3, 1);
    b->anchor = lua_gettop(L);
    lua_createtable(L, n, 0);
    return b;
}

/* Host names for warnings, indexed by host id + 1. */
static void index_hostnames(lua_State *L, struct batch *b)
{
    lua_getfield(L, b->anchor, "hosts");
    lua_createtable(L, b->nhosts, 0);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, -4, lua_tointeger(L, -2) + 1);
        lua_pop(L, 1);
    }
    lua_setfield(L, b->anchor, "hostnames");
    lua_pop(L, 1);
}

/* Run the prepared batch (at stack index bidx); on a callback error release
 * everything, then raise that error. */
/* run_batch under lua_pcall: arguments are the batch (light userdata), its
 * anchor table and the results table, so stack indices are this frame's. */
static int run_protected(lua_State *L)
{
    struct batch *b = lua_touserdata(L, 1);
    b->anchor = 2;
    luaL_checkstack(L, 40, "sbot.http");
    run_batch(L, b, 3);
    return 0;
}

/* Run the prepared batch (userdata at bidx). Whatever happens, every handle
 * and file is released before this returns or raises: a Lua callback's error
 * (or any other error) is raised only afterwards. */
static void execute(lua_State *L, struct batch *b, int bidx, int results, long curl_per_host,
                    long curl_total)
{
    int anchor = b->anchor;
    index_hostnames(L, b);
    b->st = push_state(L);
    lua_pop(L, 1);
    b->st->busy = 1;
    curl_multi_setopt(b->st->multi, CURLMOPT_MAX_HOST_CONNECTIONS, curl_per_host);
    curl_multi_setopt(b->st->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, curl_total);
    lua_pushcfunction(L, run_protected);
    lua_pushlightuserdata(L, b);
    lua_pushvalue(L, anchor);
    lua_pushvalue(L, results);
    int status = lua_pcall(L, 3, 0, 0);
    b->anchor = anchor;
    int failed = b->cb_failed;
    lua_pushcfunction(L, batch_release);
    lua_pushvalue(L, bidx);
    lua_call(L, 1, 0);
    if (failed) {
        lua_getfield(L, anchor, "cb_error");
        lua_error(L);
    }
    if (status != LUA_OK)
        lua_error(L);
}

static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    struct batch *b = new_batch(L, 1, "http.request");
    int results = lua_gettop(L);
    parse_request(L, b, &b->x[0], 1, "http.request");
    b->per_host = b->total = 1;
    execute(L, b, 2, results, 0L, 0L);
    if (lua_rawgeti(L, results, 1) == LUA_TTABLE && lua_getfield(L, -1, "status") == LUA_TNIL) {
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        return 3;
    }
    lua_pop(L, 1);
    return 1;
}

/* http.get(url, opts) and friends: a copy of opts with method and url. */
static int shorthand(lua_State *L, const char *method)
{
    char name[16]; /* "get" for messages: the function the caller called */
    size_t k = 0;
    for (; method[k] && k < sizeof name - 1; k++)
        name[k] = (char)tolower((unsigned char)method[k]);
    name[k] = '\0';
    const char *url = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    lua_newtable(L);
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 3);
        }
        lua_getfield(L, 3, "method");
        lua_getfield(L, 3, "url");
        if (!lua_isnil(L, -1) || !lua_isnil(L, -2))
            luaL_error(L, "http.%s: pass the URL as the first argument, not 'url' or 'method' "
                          "in the options", name);
        lua_pop(L, 2);
    }
    lua_pushstring(L, method);
    lua_setfield(L, 3, "method");
    lua_pushstring(L, url);
    lua_setfield(L, 3, "url");
    lua_pushcfunction(L, l_request);
    lua_insert(L, 3);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - 2;
}

static int l_get(lua_State *L) { return shorthand(L, "GET"); }
static int l_head(lua_State *L) { return shorthand(L, "HEAD"); }
static int l_put(lua_State *L) { return shorthand(L, "PUT"); }
static int l_post(lua_State *L) { return shorthand(L, "POST"); }
static int l_patch(lua_State *L) { return shorthand(L, "PATCH"); }
static int l_delete(lua_State *L) { return shorthand(L, "DELETE"); }

static int l_batch(lua_State *L)
{
    static const char *const keys[] = {"per_host", "total", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    int per_host = DEFAULT_PER_HOST, total = DEFAULT_TOTAL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        check_keys(L, 2, keys, "http.batch: options", "key");
        double ph = opt_number(L, 2, "per_host", DEFAULT_PER_HOST, 1, "http.batch: options");
        double tt = opt_number(L, 2, "total", DEFAULT_TOTAL, 1, "http.batch: options");
        if (ph != floor(ph) || tt != floor(tt) || ph > 1000 || tt > 10000)
            luaL_error(L, "http.batch: options: per_host (1..1000) and total (1..10000) must be "
                          "integers");
        per_host = (int)ph;
        total = (int)tt;
    }
    lua_settop(L, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n > 1000000)
        luaL_error(L, "http.batch: too many requests (%I)", n);
    struct batch *b = new_batch(L, (int)n, "http.batch");
    int results = lua_gettop(L);
    for (int i = 0; i < (int)n; i++) {
        lua_rawgeti(L, 1, i + 1);
        lua_pushfstring(L, "http.batch: request #%d", i + 1);
        parse_request(L, b, &b->x[i], lua_gettop(L) - 1, lua_tostring(L, -1));
        lua_rawseti(L, b->anchor, (int)lua_rawlen(L, b->anchor) + 1); /* keep the where */
        lua_rawseti(L, b->anchor, (int)lua_rawlen(L, b->anchor) + 1); /* keep the table */
    }
    b->per_host = per_host;
    b->total = total;
    execute(L, b, 2, results, (long)per_host, (long)total);
    lua_settop(L, results);
    return 1;
}

/* ---- C API (engine/sbot.h) ------------------------------------------------- */

int sbot_http_request(lua_State *L, int req)
{
    req = lua_absindex(L, req);
    lua_pushvalue(L, req);
    return sbot_call_api(L, l_request, 1);
}

int sbot_http_batch(lua_State *L, int reqs, int opts)
{
    reqs = lua_absindex(L, reqs);
    opts = opts ? lua_absindex(L, opts) : 0;
    lua_pushvalue(L, reqs);
    if (opts)
        lua_pushvalue(L, opts);
    else
        lua_pushnil(L);
    return sbot_call_api(L, l_batch, 2);
}

int luaopen_sbot_http(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {"get", l_get},     {"head", l_head},
                                   {"put", l_put},         {"post", l_post},   {"patch", l_patch},
                                   {"delete", l_delete},   {"batch", l_batch}, {NULL, NULL}};
    static int initialised; /* curl_global_init is process-wide by nature */
    if (!initialised) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "sbot.http: curl_global_init failed");
        initialised = 1;
    }
    push_state(L);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
