/* jsonc.c: sbot.jsonc - the one JSON codec of sbot, in C.
 *
 * sbot.json (lua/sbot/json.lua) is its Lua face; sbot.redfish and any other C
 * module call it through sbot_json_encode / sbot_json_decode (engine/sbot.h).
 *
 * Encoding (docs/json.md): object keys sorted (by their string form, bytewise,
 * number keys written as strings), arrays = tables marked with a metatable
 * whose __name is "sbot.json.array" or non-empty sequences, an unmarked empty
 * table = {}, json.null (cjson's NULL light userdata) = null, a metatable's
 * __tojson(v) gives the value to write instead, integers as %d and floats as
 * %.17g, strings escaped as lua-cjson 2.1.0 escapes them except "/", secret
 * objects written as the caller says (redact, reveal, or an error). Misuse
 * raises an error naming the path inside the value ("value.a.b[3]"). The
 * text is built in one growing buffer owned by a userdata (freed by __gc on an
 * error too); the path is only put together when an error needs it.
 *
 * Decoding builds the tables directly: arrays (empty ones too) get the array
 * metatable, null is json.null. Two dialects: SBOT_JSON_CJSON is what
 * sbot.json has always returned (lua-cjson 2.1.0's: every number a float, read
 * by strtod with what cjson also accepts - hex, inf, nan, a leading "+";
 * 1000 levels; a lone surrogate escape is an error; raw control characters
 * pass; the text ends at a NUL byte); without it, sbot.redfish's strict
 * reading (integers stay integers, 200 levels, lone surrogates become U+FFFD,
 * raw control characters are errors). */
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int luaopen_sbot_jsonc(lua_State *L);

#define BUF_MT "sbot.jsonc.buffer"
#define MAX_DEPTH 1000        /* encoder (and the cjson dialect's decoder) */
#define STRICT_MAX_DEPTH 200  /* the strict decoder */
#define TOJSON_MAX 100        /* __tojson returning values with __tojson */
#define TOJSON_OPEN_MAX MAX_DEPTH /* __tojson results being written, nested (C stack) */

/* ---- output buffer ---------------------------------------------------------- */

struct kent {
    const char *s;
    size_t len;
    lua_Integer slot; /* the key is anchor[slot], its string form anchor[slot + 1] */
};

/* The output text, and the sort space of object keys (a stack: each object
 * being written holds a region), both malloc'ed and freed by __gc on errors. */
struct ebuf {
    char *p;
    size_t len, cap;
    struct kent *k;
    size_t kcap;
};

static void ebuf_gc_now(struct ebuf *b)
{
    free(b->p);
    free(b->k);
    b->p = NULL;
    b->k = NULL;
    b->len = b->cap = b->kcap = 0;
}

static int ebuf_gc(lua_State *L)
{
    ebuf_gc_now(lua_touserdata(L, 1));
    return 0;
}

static void ebuf_reserve(lua_State *L, struct ebuf *b, size_t need)
{
    if (b->cap - b->len >= need)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        luaL_error(L, "json.encode: out of memory");
    b->p = p;
    b->cap = cap;
}

static inline void ebuf_add(lua_State *L, struct ebuf *b, const char *s, size_t len)
{
    ebuf_reserve(L, b, len);
    memcpy(b->p + b->len, s, len);
    b->len += len;
}

static inline void ebuf_char(lua_State *L, struct ebuf *b, char c)
{
    ebuf_reserve(L, b, 1);
    b->p[b->len++] = c;
}

#define ebuf_lit(L, b, s) ebuf_add(L, b, s, sizeof(s) - 1)

/* ---- encoding --------------------------------------------------------------- */

/* Where the value being encoded is: a chain up to the root, walked only to
 * name the path in an error, and to find cycles. */
struct frame {
    const struct frame *up;
    const char *key; /* object member: its key's string form (anchored) */
    size_t klen;
    lua_Integer index; /* array element (key == NULL, up != NULL) */
    const void *table; /* the table encoded at this level, if any */
};

struct enc {
    lua_State *L;
    struct ebuf *b;
    int flags;
    const char *who;
    int tojson;         /* __tojson calls in a row at the place being encoded */
    int tojson_open;    /* all __tojson results being written (each a C frame) */
    int anchor;         /* stack index of a table anchoring object keys (a stack) */
    lua_Integer atop;   /* its slots in use */
    size_t ktop;        /* entries of b->k in use */
};

static void push_path(lua_State *L, luaL_Buffer *lb, const struct frame *f)
{
    if (!f->up) {
        luaL_addstring(lb, "value");
        return;
    }
    push_path(L, lb, f->up);
    if (f->key) {
        luaL_addchar(lb, '.');
        luaL_addlstring(lb, f->key, f->klen);
    } else {
        char n[32];
        snprintf(n, sizeof n, "[%lld]", (long long)f->index);
        luaL_addstring(lb, n);
    }
}

/* Raise "<who>: <path> <what>" (what: a message with one optional %s = arg). */
static void enc_error(struct enc *e, const struct frame *f, const char *what, const char *arg)
{
    lua_State *L = e->L;
    luaL_Buffer lb;
    luaL_buffinit(L, &lb);
    luaL_addstring(&lb, e->who);
    luaL_addstring(&lb, ": ");
    push_path(L, &lb, f);
    luaL_addchar(&lb, ' ');
    const char *pct = strstr(what, "%s");
    if (pct) {
        luaL_addlstring(&lb, what, (size_t)(pct - what));
        luaL_addstring(&lb, arg);
        luaL_addstring(&lb, pct + 2);
    } else {
        luaL_addstring(&lb, what);
    }
    luaL_pushresult(&lb);
    lua_error(L);
}

/* lua-cjson 2.1.0's escapes, "/" left alone: NULL = the byte itself. */
static const char *escape_of(unsigned char c)
{
    static char table[128][8];
    static int ready;
    if (!ready) {
        for (int i = 0; i < 0x20; i++)
            snprintf(table[i], sizeof table[i], "\\u%04x", i);
        strcpy(table['\b'], "\\b");
        strcpy(table['\f'], "\\f");
        strcpy(table['\n'], "\\n");
        strcpy(table['\r'], "\\r");
        strcpy(table['\t'], "\\t");
        strcpy(table['"'], "\\\"");
        strcpy(table['\\'], "\\\\");
        strcpy(table[0x7f], "\\u007f");
        ready = 1;
    }
    if (c >= 0x80 || (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f))
        return NULL;
    return table[c];
}

/* 1 for the bytes escape_of escapes: below 0x20, '"', '\\', 0x7f */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1, [0x7f] = 1,
};

static void enc_string(lua_State *L, struct ebuf *b, const char *s, size_t len)
{
    ebuf_reserve(L, b, len + 2);
    b->p[b->len++] = '"';
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && !needs_escape[(unsigned char)s[i]])
            i++;
        if (i > start)
            ebuf_add(L, b, s + start, i - start);
        if (i < len) {
            const char *esc = escape_of((unsigned char)s[i]);
            ebuf_add(L, b, esc, strlen(esc));
            i++;
        }
    }
    ebuf_char(L, b, '"');
}

static void enc_newline(struct enc *e, int depth)
{
    ebuf_reserve(e->L, e->b, 1 + 2 * (size_t)depth);
    e->b->p[e->b->len++] = '\n';
    memset(e->b->p + e->b->len, ' ', 2 * (size_t)depth);
    e->b->len += 2 * (size_t)depth;
}

/* Push what Lua's getmetatable(v) returns (the __metatable field, if set);
 * returns 0 and pushes nothing when v has no metatable. */
static int get_mt(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    if (lua_getfield(L, -1, "__metatable") != LUA_TNIL) {
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 1);
    return 1;
}

/* Does the table at idx read like a plain table (no __index, __len, __pairs)? */
static int is_raw(lua_State *L, int idx)
{
    static const char *const names[] = {"__index", "__len", "__pairs"};
    if (!lua_getmetatable(L, idx))
        return 1;
    int raw = 1;
    for (int i = 0; i < 3 && raw; i++) {
        lua_pushstring(L, names[i]);
        if (lua_rawget(L, -2) != LUA_TNIL)
            raw = 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return raw;
}

/* pairs(t) for a table that may have __pairs: pushes the iterator function,
 * state and control (3 slots), like Lua's pairs; returns 1 when the table has
 * no __pairs (then the slots are three nils, the third lua_next's current
 * key, and lua_next walks the table). */
static int pairs_begin(lua_State *L, int idx)
{
    if (luaL_getmetafield(L, idx, "__pairs") != LUA_TNIL) {
        lua_pushvalue(L, idx);
        lua_call(L, 1, 3);
        return 0;
    }
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
    return 1;
}

/* Next pair of an iteration begun at base (pairs_begin's 3 slots): pushes
 * key and value and returns 1, or pushes nothing and returns 0. */
static int pairs_next(lua_State *L, int base, int rawiter, int idx)
{
    if (rawiter) {
        lua_pushvalue(L, base + 2);
        if (!lua_next(L, idx))
            return 0;
        lua_pushvalue(L, -2);
        lua_replace(L, base + 2);
        return 1;
    }
    lua_pushvalue(L, base);
    lua_pushvalue(L, base + 1);
    lua_pushvalue(L, base + 2);
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_pushvalue(L, -2);
    lua_replace(L, base + 2);
    return 1;
}

static int kent_cmp(const void *a, const void *b)
{
    const struct kent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int is_marked_array(lua_State *L, int idx)
{
    if (!get_mt(L, idx))
        return 0;
    int yes = 0;
    if (lua_type(L, -1) == LUA_TTABLE || lua_type(L, -1) == LUA_TUSERDATA || lua_type(L, -1) == LUA_TSTRING) {
        lua_getfield(L, -1, "__name");
        size_t n;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        yes = s && n == sizeof SBOT_JSON_ARRAY_MT - 1 && memcmp(s, SBOT_JSON_ARRAY_MT, n) == 0;
        lua_pop(L, 1);
    } else if (lua_toboolean(L, -1)) {
        lua_getfield(L, -1, "__name"); /* indexing it raises, as in Lua */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

static void enc_value(struct enc *e, int idx, int depth, const struct frame *f);

static void enc_table(struct enc *e, int idx, int depth, const struct frame *f)
{
    lua_State *L = e->L;
    const void *tp = lua_topointer(L, idx);
    for (const struct frame *g = f; g; g = g->up)
        if (g->table == tp)
            enc_error(e, f, "refers to itself (cycle)", NULL);
    if (depth > MAX_DEPTH)
        enc_error(e, f, "is nested too deeply", NULL);
    struct frame here = *f;
    here.table = tp;
    int indent = e->flags & SBOT_JSON_INDENT;
    int raw = is_raw(L, idx);
    int top = lua_gettop(L);

    /* array: marked, or a sequence (every key an integer >= 1, as many as #v) */
    int array = is_marked_array(L, idx);
    lua_Integer n = 0;
    if (!array) {
        lua_Integer count = 0, maxk = 0;
        int seq = 1;
        int it = pairs_begin(L, idx);
        while (pairs_next(L, top + 1, it, idx)) {
            lua_pop(L, 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
                seq = 0;
                lua_pop(L, 1);
                break;
            }
            lua_Integer k = lua_tointeger(L, -1);
            if (k > maxk)
                maxk = k;
            count++;
            lua_pop(L, 1);
        }
        lua_settop(L, top);
        if (seq && count > 0) {
            lua_Integer len = raw ? (lua_Integer)lua_rawlen(L, idx) : luaL_len(L, idx);
            if (count == len) {
                array = 1;
                n = len > maxk ? len : maxk;
            }
        }
    } else {
        n = raw ? (lua_Integer)lua_rawlen(L, idx) : luaL_len(L, idx);
        int it = pairs_begin(L, idx);
        while (pairs_next(L, top + 1, it, idx)) {
            lua_pop(L, 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
                const char *k = luaL_tolstring(L, -1, NULL);
                enc_error(e, f, "is an array with a non-integer key %s", k);
            }
            lua_Integer k = lua_tointeger(L, -1);
            if (k > n)
                n = k;
            lua_pop(L, 1);
        }
        lua_settop(L, top);
    }

    if (array) {
        if (n == 0) {
            ebuf_lit(L, e->b, "[]");
            return;
        }
        ebuf_char(L, e->b, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                ebuf_char(L, e->b, ',');
            if (indent)
                enc_newline(e, depth + 1);
            if (raw)
                lua_rawgeti(L, idx, i);
            else
                lua_geti(L, idx, i);
            struct frame child = {&here, NULL, 0, i, NULL};
            enc_value(e, lua_gettop(L), depth + 1, &child);
            lua_pop(L, 1);
        }
        if (indent)
            enc_newline(e, depth);
        ebuf_char(L, e->b, ']');
        return;
    }

    /* object: keys (strings, numbers as their string form) sorted bytewise;
     * each key and its string form anchored in e->anchor while it is written */
    lua_Integer abase = e->atop;
    size_t nk = 0;
    int it = pairs_begin(L, idx);
    while (pairs_next(L, top + 1, it, idx)) {
        lua_pop(L, 1);
        int tk = lua_type(L, -1);
        if (tk != LUA_TSTRING && tk != LUA_TNUMBER)
            enc_error(e, f, "has a %s key, which JSON cannot represent", lua_typename(L, tk));
        lua_Integer slot = abase + 2 * (lua_Integer)nk + 1;
        nk++;
        lua_pushvalue(L, -1);
        lua_rawseti(L, e->anchor, slot);
        lua_pushvalue(L, -1);
        if (tk == LUA_TNUMBER)
            lua_tolstring(L, -1, NULL); /* tostring(k) */
        lua_rawseti(L, e->anchor, slot + 1);
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (nk == 0) {
        ebuf_lit(L, e->b, "{}");
        return;
    }
    e->atop = abase + 2 * (lua_Integer)nk;
    size_t kbase = e->ktop;
    struct ebuf *b = e->b;
    if (b->kcap - kbase < nk) {
        size_t cap = b->kcap ? b->kcap : 64;
        while (cap - kbase < nk)
            cap *= 2;
        struct kent *k = realloc(b->k, cap * sizeof *k);
        if (!k)
            luaL_error(L, "json.encode: out of memory");
        b->k = k;
        b->kcap = cap;
    }
    for (size_t i = 0; i < nk; i++) {
        struct kent *k = &b->k[kbase + i];
        k->slot = abase + 2 * (lua_Integer)i + 1;
        lua_rawgeti(L, e->anchor, k->slot + 1);
        k->s = lua_tolstring(L, -1, &k->len); /* anchored */
        lua_pop(L, 1);
    }
    e->ktop = kbase + nk;
    qsort(b->k + kbase, nk, sizeof *b->k, kent_cmp);
    ebuf_char(L, e->b, '{');
    for (size_t i = 0; i < nk; i++) {
        struct kent k = b->k[kbase + i]; /* a copy: b->k moves when a child grows it */
        if (i > 0)
            ebuf_char(L, e->b, ',');
        if (indent)
            enc_newline(e, depth + 1);
        enc_string(L, e->b, k.s, k.len);
        if (indent)
            ebuf_lit(L, e->b, ": ");
        else
            ebuf_char(L, e->b, ':');
        lua_rawgeti(L, e->anchor, k.slot);
        if (raw)
            lua_rawget(L, idx);
        else
            lua_gettable(L, idx);
        struct frame child = {&here, k.s, k.len, 0, NULL};
        enc_value(e, lua_gettop(L), depth + 1, &child);
        lua_pop(L, 1);
    }
    if (indent)
        enc_newline(e, depth);
    ebuf_char(L, e->b, '}');
    e->ktop = kbase;
    e->atop = abase;
}

static void enc_value(struct enc *e, int idx, int depth, const struct frame *f)
{
    lua_State *L = e->L;
    luaL_checkstack(L, 12, "json.encode: nested too deeply");
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TNIL:
        ebuf_lit(L, e->b, "null");
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            ebuf_lit(L, e->b, "true");
        else
            ebuf_lit(L, e->b, "false");
        return;
    case LUA_TNUMBER: {
        char num[64];
        int len;
        if (lua_isinteger(L, idx)) {
            len = snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            lua_Number v = lua_tonumber(L, idx);
            if (!isfinite(v)) {
                lua_pushvalue(L, idx);
                enc_error(e, f, "is %s, which JSON cannot represent", lua_tostring(L, -1));
            }
            len = snprintf(num, sizeof num, "%.17g", (double)v);
        }
        ebuf_add(L, e->b, num, (size_t)len);
        return;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        enc_string(L, e->b, s, len);
        return;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* json.null */
            ebuf_lit(L, e->b, "null");
            return;
        }
        /* fallthrough */
    case LUA_TUSERDATA:
    case LUA_TTABLE: {
        if (sbot_is_secret(L, idx)) {
            int mode = e->flags & SBOT_JSON_SECRETS;
            if (mode == SBOT_JSON_REVEAL) {
                lua_getfield(L, idx, "reveal");
                lua_pushvalue(L, idx);
                lua_call(L, 1, 1);
                if (lua_type(L, -1) != LUA_TSTRING)
                    enc_error(e, f, "is a secret whose reveal() returned a %s", luaL_typename(L, -1));
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                if (e->flags & SBOT_JSON_REGISTER)
                    sbot_log_add_secret(L, s, len);
                enc_string(L, e->b, s, len);
                lua_pop(L, 1);
            } else if (mode == SBOT_JSON_REDACT) {
                ebuf_lit(L, e->b, "\"<redacted>\"");
            } else {
                enc_error(e, f,
                          "is a secret, and this JSON was asked to carry none (secrets = \"error\", the default): "
                          "a record or a display encodes with secrets = \"redact\", a protocol client that must "
                          "send it with secrets = \"reveal\"",
                          NULL);
            }
            return;
        }
        int top = lua_gettop(L);
        if (get_mt(L, idx)) {
            if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, "__tojson") != LUA_TNIL &&
                lua_toboolean(L, -1)) {
                if (++e->tojson > TOJSON_MAX || ++e->tojson_open > TOJSON_OPEN_MAX)
                    enc_error(e, f, "has __tojson results nested too deeply", NULL);
                lua_pushvalue(L, idx);
                lua_call(L, 1, 1);
                lua_remove(L, -2); /* the metatable */
                enc_value(e, lua_gettop(L), depth, f);
                e->tojson--;
                e->tojson_open--;
                lua_pop(L, 1);
                return;
            }
            lua_settop(L, top);
        }
        break;
    }
    default:
        break;
    }
    if (t == LUA_TTABLE) {
        /* its members are other places: their __tojson rows start anew */
        int row = e->tojson;
        e->tojson = 0;
        enc_table(e, idx, depth, f);
        e->tojson = row;
        return;
    }
    enc_error(e, f, "is a %s, which JSON cannot represent", luaL_typename(L, idx));
}

void sbot_json_encode(lua_State *L, int idx, int flags, const char *who)
{
    idx = lua_absindex(L, idx);
    struct ebuf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, BUF_MT)) {
        lua_pushcfunction(L, ebuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_createtable(L, 64, 0);
    struct enc e = {L, b, flags, who ? who : "json.encode", 0, 0, lua_gettop(L), 0, 0};
    struct frame root = {NULL, NULL, 0, 0, NULL};
    enc_value(&e, idx, 0, &root);
    lua_pop(L, 1); /* the anchor */
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    ebuf_gc_now(b);
    lua_remove(L, -2); /* the buffer */
}

/* ---- decoding --------------------------------------------------------------- */

struct jdec {
    const char *s, *p, *end;
    int flags;
    int array_mt; /* stack index of the array metatable */
    const char *err;
    const char *at; /* where the error is */
};

static int fail(struct jdec *d, const char *msg, const char *at)
{
    d->err = msg;
    d->at = at;
    return 0;
}

static void skip_ws(struct jdec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

/* Value of one hex digit (either case), or -1. Declared in util.h: the
 * extension's modules use it too (it is here, in the core, for this codec). */
int sbot_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = sbot_hexval((unsigned char)p[i]);
        if (h < 0)
            return 0;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 1;
}

static void put_utf8(luaL_Buffer *b, unsigned cp)
{
    char u[4];
    if (cp < 0x80) {
        luaL_addchar(b, (char)cp);
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        luaL_addlstring(b, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        luaL_addlstring(b, u, 3);
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        luaL_addlstring(b, u, 4);
    }
}

static int dec_string(lua_State *L, struct jdec *d)
{
    const char *open = d->p++;
    int cjson = d->flags & SBOT_JSON_CJSON;
    /* the common case: no escape, pushed straight from the text */
    const char *q = d->p;
    while (q < d->end && *q != '"' && *q != '\\' && (cjson || (unsigned char)*q >= 0x20))
        q++;
    if (q < d->end && *q == '"') {
        lua_pushlstring(L, d->p, (size_t)(q - d->p));
        d->p = q + 1;
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (d->p < d->end) {
        const char *start = d->p;
        while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (cjson || (unsigned char)*d->p >= 0x20))
            d->p++;
        luaL_addlstring(&b, start, (size_t)(d->p - start));
        if (d->p >= d->end)
            break;
        char c = *d->p;
        if (c == '"') {
            d->p++;
            luaL_pushresult(&b);
            return 1;
        }
        if ((unsigned char)c < 0x20) {
            luaL_pushresult(&b);
            lua_pop(L, 1);
            return fail(d, "control character in a string", d->p);
        }
        if (d->end - d->p < 2)
            break;
        const char *esc = d->p;
        char x = d->p[1];
        d->p += 2;
        switch (x) {
        case '"': luaL_addchar(&b, '"'); break;
        case '\\': luaL_addchar(&b, '\\'); break;
        case '/': luaL_addchar(&b, '/'); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u': {
            unsigned cp;
            if (d->end - d->p < 4 || !hex4(d->p, &cp)) {
                luaL_pushresult(&b);
                lua_pop(L, 1);
                return fail(d, "bad \\u escape in a string", esc);
            }
            d->p += 4;
            if (cp >= 0xD800 && cp < 0xE000) {
                unsigned lo;
                if (cp < 0xDC00 && d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u' &&
                    hex4(d->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    d->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cjson) {
                    luaL_pushresult(&b);
                    lua_pop(L, 1);
                    return fail(d, "lone UTF-16 surrogate in a \\u escape", esc);
                } else {
                    cp = 0xFFFD;
                }
            }
            put_utf8(&b, cp);
            break;
        }
        default:
            luaL_pushresult(&b);
            lua_pop(L, 1);
            return fail(d, "bad escape in a string", esc);
        }
    }
    luaL_pushresult(&b);
    lua_pop(L, 1);
    return fail(d, "unterminated string", open);
}

/* lua-cjson's numbers: strtod on the text (which ends with a NUL, see
 * sbot_json_decode), always a float. */
static int dec_number_cjson(lua_State *L, struct jdec *d)
{
    char *endp;
    double v = strtod(d->p, &endp);
    if (endp == d->p || endp > d->end)
        return fail(d, "bad number", d->p);
    d->p = endp;
    lua_pushnumber(L, (lua_Number)v);
    return 1;
}

static const char *digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int dec_number_strict(lua_State *L, struct jdec *d)
{
    const char *start = d->p, *p = d->p, *end = d->end, *q;
    int is_float = 0;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if ((q = digits(p, end)) > p)
        p = q;
    else
        return fail(d, "bad number", start);
    if (p < end && *p == '.') {
        is_float = 1;
        if ((q = digits(p + 1, end)) == p + 1)
            return fail(d, "bad number", start);
        p = q;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_float = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if ((q = digits(p, end)) == p)
            return fail(d, "bad number", start);
        p = q;
    }
    d->p = p;
    size_t n = (size_t)(p - start);
    char tmp[64];
    if (n >= sizeof tmp)
        return fail(d, "bad number", start);
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    if (!is_float) {
        char *e;
        errno = 0;
        long long v = strtoll(tmp, &e, 10);
        if (errno == 0 && *e == '\0') {
            lua_pushinteger(L, (lua_Integer)v);
            return 1;
        }
    }
    lua_pushnumber(L, strtod(tmp, NULL)); /* the grammar held: strtod reads it all */
    return 1;
}

/* Would lua-cjson (decode_invalid_numbers on, its default) read a number here
 * although it is not JSON's: "+...", "inf...", "nan..." (any case)? */
static int cjson_odd_number(const struct jdec *d)
{
    const char *p = d->p;
    size_t left = (size_t)(d->end - p);
    if (*p == '+')
        return 1;
    return left >= 3 && (strncasecmp(p, "inf", 3) == 0 || strncasecmp(p, "nan", 3) == 0);
}

static int dec_value(lua_State *L, struct jdec *d, int depth)
{
    int cjson = d->flags & SBOT_JSON_CJSON;
    if (!cjson && depth > STRICT_MAX_DEPTH)
        return fail(d, "nested too deeply", d->p);
    luaL_checkstack(L, 6, "json.decode: nested too deeply");
    skip_ws(d);
    if (d->p >= d->end)
        return fail(d, "expected a value, found the end of the text", d->p);
    char c = *d->p;
    if (c == '{') {
        if (cjson && depth >= MAX_DEPTH)
            return fail(d, "nested too deeply (more than 1000 levels)", d->p);
        d->p++;
        lua_newtable(L);
        skip_ws(d);
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            return 1;
        }
        for (;;) {
            skip_ws(d);
            if (d->p >= d->end || *d->p != '"')
                return fail(d, "expected a string key", d->p);
            if (!dec_string(L, d))
                return 0;
            skip_ws(d);
            if (d->p >= d->end || *d->p != ':')
                return fail(d, "expected ':'", d->p);
            d->p++;
            if (!dec_value(L, d, depth + 1))
                return 0;
            lua_rawset(L, -3);
            skip_ws(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }
            if (d->p < d->end && *d->p == '}') {
                d->p++;
                return 1;
            }
            return fail(d, "expected ',' or '}'", d->p);
        }
    }
    if (c == '[') {
        if (cjson && depth >= MAX_DEPTH)
            return fail(d, "nested too deeply (more than 1000 levels)", d->p);
        d->p++;
        lua_newtable(L);
        lua_pushvalue(L, d->array_mt);
        lua_setmetatable(L, -2);
        skip_ws(d);
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 1;
        }
        lua_Integer i = 1;
        for (;;) {
            if (!dec_value(L, d, depth + 1))
                return 0;
            lua_rawseti(L, -2, i++);
            skip_ws(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }
            if (d->p < d->end && *d->p == ']') {
                d->p++;
                return 1;
            }
            return fail(d, "expected ',' or ']'", d->p);
        }
    }
    if (c == '"')
        return dec_string(L, d);
    if (c == '-' || (c >= '0' && c <= '9'))
        return cjson ? dec_number_cjson(L, d) : dec_number_strict(L, d);
    if (d->end - d->p >= 4 && memcmp(d->p, "true", 4) == 0) {
        d->p += 4;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (d->end - d->p >= 5 && memcmp(d->p, "false", 5) == 0) {
        d->p += 5;
        lua_pushboolean(L, 0);
        return 1;
    }
    if (d->end - d->p >= 4 && memcmp(d->p, "null", 4) == 0) {
        d->p += 4;
        lua_pushlightuserdata(L, NULL);
        return 1;
    }
    if (cjson && cjson_odd_number(d))
        return dec_number_cjson(L, d);
    return fail(d, "expected a value, found an unexpected character", d->p);
}

int sbot_json_decode(lua_State *L, const char *s, size_t len, int flags, const char **err, size_t *pos)
{
    if (flags & SBOT_JSON_CJSON) {
        /* lua-cjson refuses a NUL among the first two bytes (UTF-16/32
         * text), then reads up to a NUL */
        if (len >= 2 && (s[0] == '\0' || s[1] == '\0')) {
            *err = "a NUL byte among the first two (UTF-16 or UTF-32 text?), not UTF-8 JSON";
            if (pos)
                *pos = s[0] == '\0' ? 0 : 1;
            return 0;
        }
        len = strnlen(s, len);
    }
    int top = lua_gettop(L);
    sbot_json_push_array_mt(L); /* whoever calls: created here if need be */
    struct jdec d = {s, s, s + len, flags, top + 1, NULL, NULL};
    if (dec_value(L, &d, 0)) {
        skip_ws(&d);
        if (d.p == d.end) {
            lua_remove(L, top + 1);
            return 1;
        }
        d.err = "trailing characters after the value";
        d.at = d.p;
    }
    lua_settop(L, top);
    *err = d.err ? d.err : "invalid JSON";
    if (pos)
        *pos = (size_t)((d.at ? d.at : d.p) - s);
    return 0;
}

/* ---- the Lua face ------------------------------------------------------------- */

/* jsonc.encode(value [, opts]): sbot.json.encode (docs/json.md) */
static int l_encode(lua_State *L)
{
    int flags = SBOT_JSON_ERROR;
    lua_settop(L, 2);
    if (lua_toboolean(L, 2)) {
        if (!lua_istable(L, 2)) {
            luaL_where(L, 1);
            lua_pushfstring(L, "json.encode: opts must be a table, got %s", luaL_typename(L, 2));
            lua_concat(L, 2);
            return lua_error(L);
        }
        lua_getfield(L, 2, "secrets");
        if (!lua_isnil(L, -1)) {
            const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (s && strcmp(s, "redact") == 0) {
                flags = SBOT_JSON_REDACT;
            } else if (s && strcmp(s, "reveal") == 0) {
                flags = SBOT_JSON_REVEAL;
            } else if (!s || strcmp(s, "error") != 0) {
                luaL_where(L, 1);
                lua_pushstring(L, "json.encode: secrets must be \"error\", \"redact\" or \"reveal\", got ");
                luaL_tolstring(L, -3, NULL);
                lua_concat(L, 3);
                return lua_error(L);
            }
        }
        lua_getfield(L, 2, "indent");
        if (lua_toboolean(L, -1))
            flags |= SBOT_JSON_INDENT;
        lua_settop(L, 2);
    }
    sbot_json_encode(L, 1, flags, "json.encode");
    return 1;
}

/* jsonc.decode(text): sbot.json.decode (docs/json.md) */
static int l_decode(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) {
        luaL_where(L, 1);
        lua_pushfstring(L, "json.decode: expected a string, got %s", luaL_typename(L, 1));
        lua_concat(L, 2);
        return lua_error(L);
    }
    size_t len, pos;
    const char *s = lua_tolstring(L, 1, &len);
    const char *err;
    if (sbot_json_decode(L, s, len, SBOT_JSON_CJSON, &err, &pos))
        return 1;
    lua_pushnil(L);
    lua_pushfstring(L, "invalid JSON: %s at character %I", err, (lua_Integer)pos + 1);
    return 2;
}

void sbot_json_push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, SBOT_JSON_ARRAY_MT);
}

int luaopen_sbot_jsonc(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
    sbot_json_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
