/* sbot.sigv4: AWS Signature Version 4, as a pure function (no I/O).
 *
 *   sigv4.sign{method, url | path, query, host, headers, body | payload_hash,
 *              access_key, secret_key, session_token, region, service, time,
 *              normalize_path}
 *   sigv4.presign{method, url | path, query, host, headers, expires, ...}
 *   sigv4.uri_encode(s [, keep_slash])
 *
 * Every intermediate string is built on the Lua stack (luaL_Buffer) or in
 * fixed stack buffers, so an argument error never leaks memory. `path` is
 * the raw (unencoded) path; a `url` holds its path and query in URL form
 * (percent-encoded). For S3 both are percent-decoded and re-encoded strictly;
 * for other services the query is, and the path is signed encoded once more
 * (AWS's double-encoding rule, see push_paths). The result's `uri` is the
 * exact request target to send, so what the server canonicalises is what was
 * signed. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sbot.h"
#include "util.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ALGORITHM "AWS4-HMAC-SHA256"

/* ---- hashing ------------------------------------------------------------ */

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    sbot_hex(md, 32, out);
}

static void hmac(const void *key, size_t keylen, const char *data, size_t len,
                 unsigned char out[32])
{
    unsigned int outlen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, len, out, &outlen);
}

/* ---- encoding ----------------------------------------------------------- */

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 encoding as SigV4 wants it: uppercase hex, everything but the
 * unreserved characters (and '/' when keep_slash) is encoded. */
static void add_encoded(luaL_Buffer *b, const char *s, size_t n, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            luaL_addchar(b, (char)c);
        } else {
            luaL_addchar(b, '%');
            luaL_addchar(b, digits[c >> 4]);
            luaL_addchar(b, digits[c & 15]);
        }
    }
}

/* Push s with %XX sequences decoded (invalid sequences are kept as is). */
static void push_decoded(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = sbot_hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = sbot_hexval((unsigned char)s[i + 2])) >= 0) {
            luaL_addchar(&b, (char)(hi * 16 + lo));
            i += 2;
        } else {
            luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
}

/* Push the encoded form of a decoded-then-reencoded query component. */
static void push_query_component(lua_State *L, const char *s, size_t n)
{
    push_decoded(L, s, n);
    size_t dl;
    const char *d = lua_tolstring(L, -1, &dl);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_encoded(&b, d, dl, 0);
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* ---- path --------------------------------------------------------------- */

/* Push path p as a request path: with normalize, empty and "." segments are
 * dropped and ".." removes the previous one; with encode, each byte but the
 * unreserved ones and '/' is percent-encoded, else the bytes are kept as
 * they are (a path already in URL form). */
static void push_path(lua_State *L, const char *path, size_t n, int normalize, int encode)
{
    luaL_Buffer b;
    if (n == 0) {
        lua_pushliteral(L, "/");
        return;
    }
    if (!normalize) {
        luaL_buffinit(L, &b);
        if (path[0] != '/') luaL_addchar(&b, '/');
        if (encode) add_encoded(&b, path, n, 1);
        else luaL_addlstring(&b, path, n);
        luaL_pushresult(&b);
        return;
    }
    /* Segments as (offset, length) pairs in a userdata: freed by the GC. */
    size_t max = n / 2 + 2;
    size_t *seg = lua_newuserdatauv(L, sizeof(size_t) * 2 * max, 0);
    size_t count = 0, i = 0;
    while (i < n) {
        while (i < n && path[i] == '/') i++;
        size_t start = i;
        while (i < n && path[i] != '/') i++;
        size_t len = i - start;
        if (len == 0 || (len == 1 && path[start] == '.')) continue;
        if (len == 2 && path[start] == '.' && path[start + 1] == '.') {
            if (count > 0) count--;
            continue;
        }
        seg[2 * count] = start;
        seg[2 * count + 1] = len;
        count++;
    }
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < count; k++) {
        luaL_addchar(&b, '/');
        if (encode) add_encoded(&b, path + seg[2 * k], seg[2 * k + 1], 0);
        else luaL_addlstring(&b, path + seg[2 * k], seg[2 * k + 1]);
    }
    if (count == 0 || path[n - 1] == '/') luaL_addchar(&b, '/');
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* Push the path to send (the "wire" path) and then the canonical URI.
 * `path` is raw (unencoded) unless from_url, where it is in URL form.
 * S3 decodes a path to its key and signs the key encoded once, so for S3 a
 * URL-form path is decoded first (as the query is) and the canonical URI is
 * the wire path. Every other service signs the path it received encoded
 * once more (AWS's "encode twice" rule): the wire path is a raw path encoded
 * once, or a URL-form path as given, and the canonical URI is it encoded
 * again. */
static void push_paths(lua_State *L, const char *path, size_t n, int from_url, int is_s3,
                       int normalize)
{
    if (from_url && is_s3) {
        push_decoded(L, path, n);
        size_t dl;
        const char *d = lua_tolstring(L, -1, &dl);
        push_path(L, d, dl, normalize, 1);
        lua_remove(L, -2);
    } else {
        push_path(L, path, n, normalize, !from_url);
    }
    if (is_s3) {
        lua_pushvalue(L, -1);
        return;
    }
    size_t wl;
    const char *w = lua_tolstring(L, -1, &wl);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_encoded(&b, w, wl, 1);
    luaL_pushresult(&b);
}

/* ---- query -------------------------------------------------------------- */

struct pair {
    const char *k, *v;
    size_t kl, vl;
    size_t order;
};

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) return c;
    return (al > bl) - (al < bl);
}

static int cmp_query(const void *pa, const void *pb)
{
    const struct pair *a = pa, *b = pb;
    int c = cmp_bytes(a->k, a->kl, b->k, b->kl);
    return c ? c : cmp_bytes(a->v, a->vl, b->v, b->vl);
}

static int cmp_header(const void *pa, const void *pb)
{
    const struct pair *a = pa, *b = pb;
    int c = cmp_bytes(a->k, a->kl, b->k, b->kl);
    return c ? c : (a->order > b->order) - (a->order < b->order);
}

/* Add one encoded name/value to the list table at index `list`. */
static void list_add(lua_State *L, int list, const char *k, size_t kl, const char *v, size_t vl)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    push_query_component(L, k, kl);
    lua_rawseti(L, list, n + 1);
    push_query_component(L, v, vl);
    lua_rawseti(L, list, n + 2);
}

/* Parse a query string ("a=1&b") into the flat list at index `list`. */
static void parse_query_string(lua_State *L, int list, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && q[i] != '&') i++;
        size_t len = i - start;
        if (len > 0) {
            const char *eq = memchr(q + start, '=', len);
            if (eq)
                list_add(L, list, q + start, (size_t)(eq - (q + start)), eq + 1,
                         len - (size_t)(eq - (q + start)) - 1);
            else
                list_add(L, list, q + start, len, "", 0);
        }
        i++;
    }
}

/* The (name, value) pairs of the flat list at index `list`, in a userdata
 * left on the stack (the strings stay anchored in the list), sorted by cmp. */
static struct pair *sorted_pairs(lua_State *L, int list, size_t *np,
                                 int (*cmp)(const void *, const void *))
{
    size_t n = lua_rawlen(L, list) / 2;
    struct pair *p = lua_newuserdatauv(L, sizeof(struct pair) * (n ? n : 1), 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (lua_Integer)(2 * i + 1));
        p[i].k = lua_tolstring(L, -1, &p[i].kl);
        lua_rawgeti(L, list, (lua_Integer)(2 * i + 2));
        p[i].v = lua_tolstring(L, -1, &p[i].vl);
        lua_pop(L, 2);
        p[i].order = i;
    }
    qsort(p, n, sizeof *p, cmp);
    *np = n;
    return p;
}

/* Push the canonical query string of the flat list at index `list`. */
static void push_canonical_query(lua_State *L, int list)
{
    size_t n;
    struct pair *p = sorted_pairs(L, list, &n, cmp_query);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        if (i) luaL_addchar(&b, '&');
        luaL_addlstring(&b, p[i].k, p[i].kl);
        luaL_addchar(&b, '=');
        luaL_addlstring(&b, p[i].v, p[i].vl);
    }
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* ---- headers ------------------------------------------------------------ */

/* Push a header value trimmed, with runs of spaces collapsed and folded
 * continuation lines joined by commas (as the AWS test suite expects). */
static void push_header_value(lua_State *L, const char *v, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    int first_line = 1;
    while (i <= n) {
        size_t start = i;
        while (i < n && v[i] != '\n' && v[i] != '\r') i++;
        /* trim and collapse one line */
        size_t s = start, e = i;
        while (s < e && isspace((unsigned char)v[s])) s++;
        while (e > s && isspace((unsigned char)v[e - 1])) e--;
        if (s < e || first_line) {
            if (!first_line) luaL_addchar(&b, ',');
            int space = 0;
            for (size_t k = s; k < e; k++) {
                if (v[k] == ' ' || v[k] == '\t') {
                    space = 1;
                } else {
                    if (space) luaL_addchar(&b, ' ');
                    space = 0;
                    luaL_addchar(&b, v[k]);
                }
            }
            first_line = 0;
        }
        if (i >= n) break;
        i++;
    }
    luaL_pushresult(&b);
}

/* Append (lowercased name, canonical value) to the flat list at `list`. */
static void header_add(lua_State *L, int list, const char *name, size_t nl,
                       const char *value, size_t vl)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < nl; i++) luaL_addchar(&b, (char)tolower((unsigned char)name[i]));
    luaL_pushresult(&b);
    lua_rawseti(L, list, n + 1);
    push_header_value(L, value, vl);
    lua_rawseti(L, list, n + 2);
}

static int header_present(lua_State *L, int list, const char *lname)
{
    size_t n = lua_rawlen(L, list);
    for (size_t i = 1; i <= n; i += 2) {
        lua_rawgeti(L, list, (lua_Integer)i);
        int same = strcmp(lua_tostring(L, -1), lname) == 0;
        lua_pop(L, 1);
        if (same) return 1;
    }
    return 0;
}

/* Read args.headers: either a map {Name = value | {values...}} or a list
 * of {name, value} pairs (order kept for repeated names). */
static void read_headers(lua_State *L, int args, int list)
{
    if (lua_getfield(L, args, "headers") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    luaL_argexpected(L, lua_istable(L, -1), 1, "table at 'headers'");
    int h = lua_gettop(L);
    size_t len = lua_rawlen(L, h);
    if (len > 0) {
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, h, (lua_Integer)i);
            if (!lua_istable(L, -1)) luaL_error(L, "sigv4: headers[%d] must be a {name, value} pair", (int)i);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            size_t nl, vl;
            const char *name = lua_tolstring(L, -2, &nl);
            const char *value = lua_tolstring(L, -1, &vl);
            if (!name || !value) luaL_error(L, "sigv4: headers[%d] must be a {name, value} pair of strings", (int)i);
            header_add(L, list, name, nl, value, vl);
            lua_pop(L, 3);
        }
    } else {
        /* A map: iterate in sorted name order so the result is deterministic. */
        lua_pushnil(L);
        while (lua_next(L, h)) {
            if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "sigv4: header names must be strings");
            size_t nl;
            const char *name = lua_tolstring(L, -2, &nl);
            if (lua_istable(L, -1)) {
                size_t m = lua_rawlen(L, -1);
                for (size_t i = 1; i <= m; i++) {
                    lua_rawgeti(L, -1, (lua_Integer)i);
                    size_t vl;
                    const char *value = lua_tolstring(L, -1, &vl);
                    if (!value) luaL_error(L, "sigv4: header '%s' values must be strings", name);
                    header_add(L, list, name, nl, value, vl);
                    lua_pop(L, 1);
                }
            } else {
                size_t vl;
                const char *value = lua_tolstring(L, -1, &vl);
                if (!value || lua_type(L, -1) == LUA_TBOOLEAN)
                    luaL_error(L, "sigv4: header '%s' must be a string", name);
                header_add(L, list, name, nl, value, vl);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Push canonical headers block and signed-headers list from `list`. */
static void push_canonical_headers(lua_State *L, int list)
{
    size_t n;
    struct pair *p = sorted_pairs(L, list, &n, cmp_header);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int same = i > 0 && cmp_bytes(p[i].k, p[i].kl, p[i - 1].k, p[i - 1].kl) == 0;
        if (same) {
            luaL_addchar(&b, ',');
        } else {
            if (i) luaL_addchar(&b, '\n');
            luaL_addlstring(&b, p[i].k, p[i].kl);
            luaL_addchar(&b, ':');
        }
        luaL_addlstring(&b, p[i].v, p[i].vl);
    }
    if (n) luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_bytes(p[i].k, p[i].kl, p[i - 1].k, p[i - 1].kl) == 0) continue;
        if (i) luaL_addchar(&b, ';');
        luaL_addlstring(&b, p[i].k, p[i].kl);
    }
    luaL_pushresult(&b);
    lua_remove(L, -3); /* the pair array */
}

/* ---- arguments ---------------------------------------------------------- */

static const char *opt_field(lua_State *L, int args, const char *key, size_t *len)
{
    lua_getfield(L, args, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "sigv4: '%s' must be a string, got %s", key, luaL_typename(L, -1));
    return lua_tolstring(L, -1, len); /* stays on the stack: anchored */
}

/* A secret value may be a string or an sbot.secret object (reveal()). */
static const char *secret_field(lua_State *L, int args, const char *key, size_t *len, int required)
{
    lua_getfield(L, args, key);
    if (lua_isnil(L, -1)) {
        if (required) luaL_error(L, "sigv4: '%s' is required", key);
        lua_pop(L, 1);
        return NULL;
    }
    if (sbot_is_secret(L, -1)) {
        lua_getfield(L, -1, "reveal"); /* a method: found through __index */
        lua_pushvalue(L, -2);
        lua_call(L, 1, 1);
        lua_remove(L, -2);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "sigv4: '%s': reveal() did not give a string", key);
    } else if (lua_type(L, -1) != LUA_TSTRING) {
        luaL_error(L, "sigv4: '%s' must be a string or a secret, got %s", key, luaL_typename(L, -1));
    }
    return lua_tolstring(L, -1, len);
}

static const char *req_field(lua_State *L, int args, const char *key, size_t *len)
{
    const char *s = opt_field(L, args, key, len);
    if (!s) luaL_error(L, "sigv4: '%s' is required", key);
    return s;
}

/* Signing time: args.time as "YYYYMMDDTHHMMSSZ" or epoch seconds; default now. */
static void read_time(lua_State *L, int args, char amz_date[17])
{
    int t = lua_getfield(L, args, "time");
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        int ok = n == 16 && s[8] == 'T' && s[15] == 'Z';
        for (size_t i = 0; ok && i < 15; i++)
            if (i != 8 && !isdigit((unsigned char)s[i])) ok = 0;
        if (!ok) luaL_error(L, "sigv4: 'time' must look like 20150830T123600Z, got '%s'", s);
        memcpy(amz_date, s, 17);
    } else {
        time_t now;
        int isint = 1;
        if (t == LUA_TNUMBER) now = (time_t)lua_tointegerx(L, -1, &isint);
        else if (t == LUA_TNIL) now = time(NULL);
        else return (void)luaL_error(L, "sigv4: 'time' must be a string or epoch seconds");
        struct tm tm;
        /* only years 0000..9999 fit the 16 characters of an x-amz-date */
        if (!isint || !gmtime_r(&now, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900 ||
            strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
            luaL_error(L, "sigv4: 'time' must be integer epoch seconds of a year from 0 to 9999");
    }
    lua_pop(L, 1);
}

struct target {
    const char *path, *host, *query;
    size_t pathl, hostl, queryl;
    int path_from_url; /* path in URL form (percent-encoded), not raw */
};

/* Read url (path?query, or scheme://host/path?query), path, query, host. */
static void read_target(lua_State *L, int args, struct target *t)
{
    memset(t, 0, sizeof *t);
    size_t ul;
    const char *url = opt_field(L, args, "url", &ul);
    if (url) {
        const char *p = url, *end = url + ul;
        /* a path-only url ("/bucket/key?...") has no scheme, even if "://" occurs later */
        const char *scheme = url[0] != '/' ? strstr(url, "://") : NULL;
        if (scheme) {
            const char *h = scheme + 3;
            const char *slash = memchr(h, '/', (size_t)(end - h));
            const char *qm = memchr(h, '?', (size_t)(end - h));
            const char *he = slash ? slash : (qm ? qm : end);
            if (qm && qm < he) he = qm;
            t->host = h;
            t->hostl = (size_t)(he - h);
            p = he;
        }
        const char *qm = memchr(p, '?', (size_t)(end - p));
        t->path = p;
        t->pathl = (size_t)((qm ? qm : end) - p);
        t->path_from_url = 1;
        if (qm) {
            t->query = qm + 1;
            t->queryl = (size_t)(end - qm - 1);
        }
    }
    size_t l;
    const char *s;
    if ((s = opt_field(L, args, "path", &l))) { t->path = s; t->pathl = l; t->path_from_url = 0; }
    if ((s = opt_field(L, args, "host", &l))) { t->host = s; t->hostl = l; }
    if (!t->path) luaL_error(L, "sigv4: 'url' or 'path' is required");
}

/* Add args.query (a string, or a map {name = value}) to the list. */
static void read_query(lua_State *L, int args, int list, const struct target *t)
{
    if (t->query) parse_query_string(L, list, t->query, t->queryl);
    int ty = lua_getfield(L, args, "query");
    if (ty == LUA_TSTRING) {
        size_t n;
        const char *q = lua_tolstring(L, -1, &n);
        parse_query_string(L, list, q, n);
    } else if (ty == LUA_TTABLE) {
        int q = lua_gettop(L);
        /* Plain names and values: encode them as they are (no decoding). */
        lua_pushnil(L);
        while (lua_next(L, q)) {
            size_t kl, vl = 0;
            /* check the key's type first: lua_tolstring would turn a number
             * key into a string in place and break lua_next */
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "sigv4: 'query' must map names to strings");
            const char *k = lua_tolstring(L, -2, &kl);
            const char *v = lua_type(L, -1) == LUA_TBOOLEAN ? "" : lua_tolstring(L, -1, &vl);
            if (!v)
                luaL_error(L, "sigv4: 'query' must map names to strings");
            lua_Integer n = (lua_Integer)lua_rawlen(L, list);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            add_encoded(&b, k, kl, 0);
            luaL_pushresult(&b);
            lua_rawseti(L, list, n + 1);
            luaL_buffinit(L, &b);
            add_encoded(&b, v, vl, 0);
            luaL_pushresult(&b);
            lua_rawseti(L, list, n + 2);
            lua_pop(L, 1);
        }
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "sigv4: 'query' must be a string or a table");
    }
    lua_pop(L, 1);
}

/* Push the hex signature of string_to_sign (at index sts). */
static void push_signature(lua_State *L, const char *secret, size_t sl, const char *date8,
                           const char *region, const char *service, int sts)
{
    unsigned char k[32];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "AWS4");
    luaL_addlstring(&b, secret, sl);
    luaL_pushresult(&b);
    size_t kl;
    const char *k0 = lua_tolstring(L, -1, &kl);
    hmac(k0, kl, date8, 8, k);
    lua_pop(L, 1);
    hmac(k, 32, region, strlen(region), k);
    hmac(k, 32, service, strlen(service), k);
    hmac(k, 32, "aws4_request", 12, k);
    size_t stsl;
    const char *s = lua_tolstring(L, sts, &stsl);
    unsigned char sig[32];
    hmac(k, 32, s, stsl, sig);
    char hex[65];
    sbot_hex(sig, 32, hex);
    OPENSSL_cleanse(k, sizeof k);
    lua_pushstring(L, hex);
}

static void set_str(lua_State *L, int t, const char *key, int idx)
{
    lua_pushvalue(L, idx);
    lua_setfield(L, t, key);
}

/* The core shared by sign and presign. presign moves the auth into the
 * query string and signs UNSIGNED-PAYLOAD (for S3). */
static int do_sign(lua_State *L, int presign)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, 64, "sigv4");
    size_t l;
    const char *method = req_field(L, 1, "method", &l);
    const char *access = secret_field(L, 1, "access_key", &l, 1);
    size_t secl;
    const char *secret = secret_field(L, 1, "secret_key", &secl, 1);
    size_t tokl = 0;
    const char *token = secret_field(L, 1, "session_token", &tokl, 0);
    const char *region = req_field(L, 1, "region", &l);
    const char *service = req_field(L, 1, "service", &l);
    char amz_date[17];
    read_time(L, 1, amz_date);
    char date8[9];
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';

    int is_s3 = strcmp(service, "s3") == 0;
    int normalize = !is_s3;
    if (lua_getfield(L, 1, "normalize_path") != LUA_TNIL) normalize = lua_toboolean(L, -1);
    lua_pop(L, 1);

    struct target t;
    read_target(L, 1, &t);

    /* Scope and credential. */
    lua_pushfstring(L, "%s/%s/%s/aws4_request", date8, region, service);
    int scope = lua_gettop(L);
    lua_pushfstring(L, "%s/%s", access, lua_tostring(L, scope));
    int credential = lua_gettop(L);

    /* Payload hash. */
    char body_hash[65];
    const char *payload = NULL;
    size_t bl;
    const char *body = opt_field(L, 1, "body", &bl);
    const char *given = opt_field(L, 1, "payload_hash", &l);
    if (presign && is_s3) {
        /* S3 checks a presigned URL against UNSIGNED-PAYLOAD whatever the
         * body: a body hash here would give a URL that S3 refuses */
        if (body || (given && strcmp(given, "UNSIGNED-PAYLOAD") != 0))
            luaL_error(L, "sigv4.presign: an S3 presigned URL signs UNSIGNED-PAYLOAD; "
                          "give no 'body' or 'payload_hash'");
        payload = "UNSIGNED-PAYLOAD";
    } else if (given) payload = given;
    else if (body) { sha256_hex(body, bl, body_hash); payload = body_hash; }
    else payload = EMPTY_SHA256;

    /* Headers. */
    lua_newtable(L);
    int hl = lua_gettop(L);
    read_headers(L, 1, hl);
    if (!header_present(L, hl, "host")) {
        if (!t.host) luaL_error(L, "sigv4: no host: give 'host', a full 'url' or a Host header");
        header_add(L, hl, "host", 4, t.host, t.hostl);
    }
    if (!presign) {
        if (!header_present(L, hl, "x-amz-date")) header_add(L, hl, "x-amz-date", 10, amz_date, 16);
        if (token && !header_present(L, hl, "x-amz-security-token"))
            header_add(L, hl, "x-amz-security-token", 20, token, tokl);
        if (is_s3 && !header_present(L, hl, "x-amz-content-sha256"))
            header_add(L, hl, "x-amz-content-sha256", 20, payload, strlen(payload));
    }
    push_canonical_headers(L, hl);
    int canon_headers = lua_gettop(L) - 1, signed_headers = lua_gettop(L);

    /* Query. */
    lua_newtable(L);
    int ql = lua_gettop(L);
    read_query(L, 1, ql, &t);
    if (presign) {
        lua_Integer expires = 3600;
        if (lua_getfield(L, 1, "expires") != LUA_TNIL) {
            int isnum;
            expires = lua_tointegerx(L, -1, &isnum);
            if (!isnum || expires < 1 || expires > 604800)
                luaL_error(L, "sigv4: 'expires' must be an integer from 1 to 604800 seconds");
        }
        lua_pop(L, 1);
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)expires);
        size_t sh;
        const char *shs = lua_tolstring(L, signed_headers, &sh);
        list_add(L, ql, "X-Amz-Algorithm", 15, ALGORITHM, strlen(ALGORITHM));
        list_add(L, ql, "X-Amz-Credential", 16, lua_tostring(L, credential), lua_rawlen(L, credential));
        list_add(L, ql, "X-Amz-Date", 10, amz_date, 16);
        list_add(L, ql, "X-Amz-Expires", 13, num, strlen(num));
        if (token) {
            /* Encode the raw token (it may hold '+' and '/'), no decoding. */
            lua_Integer n = (lua_Integer)lua_rawlen(L, ql);
            lua_pushliteral(L, "X-Amz-Security-Token");
            lua_rawseti(L, ql, n + 1);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            add_encoded(&b, token, tokl, 0);
            luaL_pushresult(&b);
            lua_rawseti(L, ql, n + 2);
        }
        list_add(L, ql, "X-Amz-SignedHeaders", 19, shs, sh);
    }
    push_canonical_query(L, ql);
    int canon_query = lua_gettop(L);
    push_paths(L, t.path, t.pathl, t.path_from_url, is_s3, normalize);
    int canon_uri = lua_gettop(L), wire_path = canon_uri - 1;

    lua_pushfstring(L, "%s\n%s\n%s\n%s\n%s\n%s", method, lua_tostring(L, canon_uri),
                    lua_tostring(L, canon_query), lua_tostring(L, canon_headers),
                    lua_tostring(L, signed_headers), payload);
    int creq = lua_gettop(L);
    char creq_hash[65];
    sha256_hex(lua_tostring(L, creq), lua_rawlen(L, creq), creq_hash);
    lua_pushfstring(L, ALGORITHM "\n%s\n%s\n%s", amz_date, lua_tostring(L, scope), creq_hash);
    int sts = lua_gettop(L);
    push_signature(L, secret, secl, date8, region, service, sts);
    int sig = lua_gettop(L);

    lua_createtable(L, 0, 12);
    int r = lua_gettop(L);
    set_str(L, r, "canonical_request", creq);
    set_str(L, r, "string_to_sign", sts);
    set_str(L, r, "signature", sig);
    set_str(L, r, "signed_headers", signed_headers);
    set_str(L, r, "scope", scope);
    lua_pushstring(L, amz_date);
    lua_setfield(L, r, "amz_date");
    lua_pushstring(L, payload);
    lua_setfield(L, r, "payload_hash");
    if (presign) {
        lua_pushfstring(L, "%s?%s&X-Amz-Signature=%s", lua_tostring(L, wire_path),
                        lua_tostring(L, canon_query), lua_tostring(L, sig));
        lua_setfield(L, r, "uri");
    } else {
        if (lua_rawlen(L, canon_query) > 0)
            lua_pushfstring(L, "%s?%s", lua_tostring(L, wire_path), lua_tostring(L, canon_query));
        else
            lua_pushvalue(L, wire_path);
        lua_setfield(L, r, "uri");
        lua_pushfstring(L, ALGORITHM " Credential=%s, SignedHeaders=%s, Signature=%s",
                        lua_tostring(L, credential), lua_tostring(L, signed_headers),
                        lua_tostring(L, sig));
        lua_setfield(L, r, "authorization");
        /* The headers the caller must send besides its own. */
        lua_createtable(L, 0, 4);
        lua_getfield(L, r, "authorization");
        lua_setfield(L, -2, "Authorization");
        lua_pushstring(L, amz_date);
        lua_setfield(L, -2, "X-Amz-Date");
        if (token) {
            lua_pushlstring(L, token, tokl);
            lua_setfield(L, -2, "X-Amz-Security-Token");
        }
        if (is_s3) {
            lua_pushstring(L, payload);
            lua_setfield(L, -2, "X-Amz-Content-Sha256");
        }
        lua_setfield(L, r, "headers");
    }
    return 1;
}

static int l_sign(lua_State *L) { return do_sign(L, 0); }
static int l_presign(lua_State *L) { return do_sign(L, 1); }

static int l_uri_encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int keep_slash = lua_toboolean(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_encoded(&b, s, n, keep_slash);
    luaL_pushresult(&b);
    return 1;
}

int luaopen_sbot_sigv4(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"sign", l_sign},
        {"presign", l_presign},
        {"uri_encode", l_uri_encode},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
