/* log.c: sbot.log - levelled log lines (human or JSON) and the secret registry.
 *
 * Every line, whatever its sink, passes through the redactor: each registered
 * secret value is replaced by <redacted>, in the message and the fields as
 * they are, before any JSON escaping. State lives in a userdata in the
 * registry, so each interpreter (and each fleet worker) has its own. */
#define _GNU_SOURCE
#include "sbot.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <unistd.h>

#define STATE_KEY "sbot.log.state"
#define STATE_MT "sbot.log.state.mt" /* not STATE_KEY: that slot holds the state */
#define SECRETS_KEY "sbot.log.secrets"
#define SECRET_SET_KEY "sbot.log.secret-set"
#define REDACTED "<redacted>"

struct secret_index;
static void index_free(struct secret_index *ix);

struct log_state {
    int level;       /* lines below this level go nowhere */
    int json;        /* stderr lines as JSON instead of human text */
    int tty;         /* stderr is a terminal: colour the level */
    int file_level;  /* level for the file sink */
    FILE *file;      /* JSON-lines sink (runs/<id>/log.jsonl), or NULL */
    struct secret_index *index; /* the redactor's index of the secrets, or NULL */
    int dirty;       /* the secrets changed since the index was built */
};


static const char *const level_names[] = {"debug", "info", "warn", "error", "off", NULL};

static int state_gc(lua_State *L)
{
    struct log_state *st = luaL_checkudata(L, 1, STATE_MT);
    if (st->file) {
        fclose(st->file);
        st->file = NULL;
    }
    index_free(st->index);
    st->index = NULL;
    return 0;
}

static struct log_state *get_state(lua_State *L)
{
    struct log_state *st;
    if (lua_getfield(L, LUA_REGISTRYINDEX, STATE_KEY) == LUA_TUSERDATA) {
        st = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return st;
    }
    lua_pop(L, 1);
    st = lua_newuserdatauv(L, sizeof *st, 0);
    st->level = SBOT_INFO;
    st->json = 0;
    st->tty = isatty(STDERR_FILENO);
    st->file_level = SBOT_DEBUG;
    st->file = NULL;
    st->index = NULL;
    st->dirty = 0;
    const char *env = getenv("SBOT_LOG_LEVEL");
    for (int i = 0; env && level_names[i]; i++)
        if (strcmp(env, level_names[i]) == 0)
            st->level = i;
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
    return st;
}

int sbot_log_enabled(lua_State *L, enum sbot_level level)
{
    struct log_state *st = get_state(L);
    return (int)level >= st->level || (st->file && (int)level >= st->file_level);
}

/* ---- the secret registry and the redactor ---------------------------------
 *
 * The secrets are a sequence of strings in the registry (SECRETS_KEY; fleet.c
 * copies it into its workers) with a set beside it (SECRET_SET_KEY) so adding
 * one is O(1). The redactor does not scan the secrets one by one: when the set
 * has changed, the next redaction builds an index once -- a radix tree over
 * the sorted secrets, in one malloc'ed block owned by the log state (freed by
 * its __gc, wiped first) -- and each text position then costs one walk down
 * that tree, as deep as the text agrees with some secret. */

/* A node of the radix tree. Its label is bytes [start, end) of secret `lo`
 * (every secret in lo..hi-1 shares the bytes [0, end)); its children are
 * nodes[kid0 .. kid0 + nkids), in the order of their first byte. */
struct rnode {
    uint32_t lo, hi;     /* the sorted secrets below this node */
    uint32_t start, end; /* label */
    uint32_t kid0, nkids;
    uint32_t terminal;   /* a secret ends here (its length is end) */
};

struct rsecret {
    size_t off, len; /* in blob */
};

struct secret_index {
    unsigned char *blob;     /* every secret, concatenated */
    size_t blob_len;
    struct rsecret *secs;    /* sorted, unique */
    uint32_t nsecs;
    struct rnode *nodes;     /* nodes[0] is the root; at most 2 * nsecs + 1 */
    int32_t root_kid[256];   /* child of the root by byte at root->end, or -1 */
};

static void index_free(struct secret_index *ix)
{
    if (!ix)
        return;
    if (ix->blob)
        explicit_bzero(ix->blob, ix->blob_len);
    free(ix->blob);
    free(ix->secs);
    free(ix->nodes);
    free(ix);
}

/* qsort_r: bytewise order, a prefix before the longer strings it starts. */
static int cmp_secret(const void *a, const void *b, void *blob)
{
    const struct rsecret *x = a, *y = b;
    const unsigned char *base = blob;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(base + x->off, base + y->off, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static size_t lcp_from(const struct secret_index *ix, uint32_t a, uint32_t b, size_t d)
{
    const struct rsecret *x = &ix->secs[a], *y = &ix->secs[b];
    size_t n = x->len < y->len ? x->len : y->len;
    while (d < n && ix->blob[x->off + d] == ix->blob[y->off + d])
        d++;
    return d;
}

static unsigned char byte_at(const struct secret_index *ix, uint32_t k, size_t d)
{
    return ix->blob[ix->secs[k].off + d];
}

/* Build the index of the n strings on the stack at index `seq` (a sequence).
 * Returns NULL when out of memory (nothing left allocated). */
static struct secret_index *index_build(lua_State *L, int seq, lua_Integer n)
{
    struct secret_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    size_t total = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, seq, i);
        total += lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    ix->blob = malloc(total ? total : 1);
    ix->blob_len = total;
    ix->secs = malloc((size_t)n * sizeof *ix->secs);
    ix->nodes = malloc((2 * (size_t)n + 1) * sizeof *ix->nodes);
    if (!ix->blob || !ix->secs || !ix->nodes) {
        index_free(ix);
        return NULL;
    }
    size_t off = 0;
    uint32_t m = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, seq, i);
        const char *s = lua_tolstring(L, -1, &len);
        if (s && len > 0) {
            memcpy(ix->blob + off, s, len);
            ix->secs[m].off = off;
            ix->secs[m].len = len;
            off += len;
            m++;
        }
        lua_pop(L, 1);
    }
    qsort_r(ix->secs, m, sizeof *ix->secs, cmp_secret, ix->blob);
    uint32_t u = 0; /* drop duplicates */
    for (uint32_t i = 0; i < m; i++)
        if (u == 0 || cmp_secret(&ix->secs[u - 1], &ix->secs[i], ix->blob) != 0)
            ix->secs[u++] = ix->secs[i];
    ix->nsecs = u;
    for (int c = 0; c < 256; c++)
        ix->root_kid[c] = -1;
    /* Breadth first: nodes[q] covers secrets lo..hi-1, which share `start`
     * bytes; its label runs to their longest common prefix; one child per
     * next byte. Every node but the root ends a secret or has two children
     * or more, so there are at most 2 * nsecs + 1. */
    uint32_t count = 1;
    ix->nodes[0] = (struct rnode){0, u, 0, 0, 0, 0, 0};
    for (uint32_t q = 0; q < count && u > 0; q++) {
        struct rnode *nd = &ix->nodes[q];
        size_t e = lcp_from(ix, nd->lo, nd->hi - 1, nd->start);
        nd->end = (uint32_t)e;
        nd->terminal = ix->secs[nd->lo].len == e;
        nd->kid0 = count;
        uint32_t r = nd->lo + nd->terminal;
        while (r < nd->hi) {
            unsigned char c = byte_at(ix, r, e);
            uint32_t g = r;
            while (g < nd->hi && byte_at(ix, g, e) == c)
                g++;
            if (q == 0)
                ix->root_kid[c] = (int32_t)count;
            ix->nodes[count++] = (struct rnode){r, g, (uint32_t)e, 0, 0, 0, 0};
            nd->nkids++;
            r = g;
        }
    }
    return ix;
}

/* Length of the longest secret that s[0..n) starts with, or 0. */
static size_t longest_at(const struct secret_index *ix, const unsigned char *s, size_t n)
{
    const struct rnode *nd = ix->nodes;
    size_t best = 0;
    for (;;) {
        if (nd->end > n)
            break;
        const unsigned char *label = ix->blob + ix->secs[nd->lo].off;
        if (nd->end > nd->start &&
            memcmp(s + nd->start, label + nd->start, nd->end - nd->start) != 0)
            break;
        if (nd->terminal)
            best = nd->end;
        if (nd->end == n || nd->nkids == 0)
            break;
        unsigned char c = s[nd->end];
        if (nd == ix->nodes) {
            if (ix->root_kid[c] < 0)
                break;
            nd = &ix->nodes[ix->root_kid[c]];
            continue;
        }
        uint32_t lo = nd->kid0, hi = nd->kid0 + nd->nkids; /* binary search on first byte */
        const struct rnode *next = NULL;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            unsigned char k = byte_at(ix, ix->nodes[mid].lo, nd->end);
            if (k == c) {
                next = &ix->nodes[mid];
                break;
            }
            if (k < c)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!next)
            break;
        nd = next;
    }
    return best;
}

/* The secrets sequence, created on first use. */
static void push_secrets(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, SECRETS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, SECRETS_KEY);
    }
}

void sbot_log_add_secret(lua_State *L, const char *value, size_t len)
{
    if (len == 0)
        return;
    struct log_state *st = get_state(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, SECRET_SET_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, SECRET_SET_KEY);
    }
    lua_pushlstring(L, value, len);
    if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_pop(L, 2);
        return;
    }
    lua_pop(L, 1);
    lua_pushlstring(L, value, len);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    push_secrets(L);
    lua_pushlstring(L, value, len);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    st->dirty = 1;
}

void sbot_log_inherit(lua_State *to, lua_State *from)
{
    struct log_state *src = get_state(from), *dst = get_state(to);
    dst->level = src->level;
    dst->file_level = src->file_level;
    dst->json = src->json;
    push_secrets(from);
    lua_Integer n = (lua_Integer)lua_rawlen(from, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        if (lua_rawgeti(from, -1, i) == LUA_TSTRING) {
            const char *s = lua_tolstring(from, -1, &len);
            sbot_log_add_secret(to, s, len);
        }
        lua_pop(from, 1);
    }
    lua_pop(from, 1);
}

/* The index of the current secrets (rebuilt when they changed), or NULL when
 * there are none. Raises a memory error when it cannot be built. */
static const struct secret_index *current_index(lua_State *L)
{
    struct log_state *st = get_state(L);
    if (!st->dirty)
        return st->index;
    index_free(st->index);
    st->index = NULL;
    push_secrets(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n > 0) {
        st->index = index_build(L, lua_gettop(L), n);
        if (!st->index) {
            lua_pop(L, 1);
            lua_pushliteral(L, "sbot.log: out of memory building the secret index");
            lua_error(L);
        }
    }
    lua_pop(L, 1);
    st->dirty = 0;
    return st->index;
}

/* Replace every registered secret by <redacted>, scanning left to right and
 * taking the longest secret that matches at each position. A <redacted> that
 * is already in the text is copied as it is, so redacting twice changes
 * nothing (a secret like "a" would otherwise eat into earlier replacements). */
void sbot_log_push_redacted(lua_State *L, const char *s, size_t len)
{
    static const size_t rlen = sizeof REDACTED - 1;
    const struct secret_index *ix = current_index(L);
    if (!ix || ix->nsecs == 0) {
        lua_pushlstring(L, s, len);
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0, plain = 0; /* s[plain .. i) is copied when a match ends it */
    while (i < len) {
        size_t skip = 0, best = 0;
        if (u[i] == '<' && len - i >= rlen && memcmp(s + i, REDACTED, rlen) == 0)
            skip = rlen;
        else
            best = longest_at(ix, u + i, len - i);
        if (best) {
            luaL_addlstring(&b, s + plain, i - plain);
            luaL_addlstring(&b, REDACTED, rlen);
            i += best;
            plain = i;
        } else {
            i += skip ? skip : 1;
        }
    }
    luaL_addlstring(&b, s + plain, len - plain);
    luaL_pushresult(&b);
}

static void add_json_string(luaL_Buffer *b, const char *s, size_t len)
{
    luaL_addchar(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': luaL_addstring(b, "\\\""); break;
        case '\\': luaL_addstring(b, "\\\\"); break;
        case '\n': luaL_addstring(b, "\\n"); break;
        case '\r': luaL_addstring(b, "\\r"); break;
        case '\t': luaL_addstring(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                luaL_addstring(b, esc);
            } else {
                luaL_addchar(b, (char)c);
            }
        }
    }
    luaL_addchar(b, '"');
}

static void timestamp(char *out, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* Turn the fields table into a sorted sequence {k1, v1, raw1, k2, ...} of
 * strings, each already redacted (raw: a number or boolean that redaction
 * left alone, written unquoted in JSON). Done before any luaL_Buffer is
 * opened, because a buffer must own the top of the stack. */
static int sort_keys(lua_State *L)
{
    lua_settop(L, 1);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
}

/* Replace the string at the top of the stack by its redacted copy; returns
 * whether redaction changed it. */
static int redact_top(lua_State *L)
{
    size_t len, rl;
    const char *s = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, s, len);
    const char *r = lua_tolstring(L, -1, &rl);
    int changed = rl != len || memcmp(r, s, len) != 0;
    lua_remove(L, -2);
    return changed;
}

static int collect_fields(lua_State *L, int fields)
{
    lua_newtable(L);
    int out = lua_gettop(L);
    if (!fields)
        return out;
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_Integer nk = 0;
    lua_pushnil(L);
    while (lua_next(L, fields)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, keys, ++nk);
        }
    }
    lua_pushcfunction(L, sort_keys);
    lua_pushvalue(L, keys);
    lua_call(L, 1, 0);
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        lua_pushvalue(L, -1);
        lua_gettable(L, fields);
        /* numbers and booleans go unquoted in JSON, except what JSON has no
         * number for (inf, -inf, nan): those are written as strings */
        int raw = lua_type(L, -1) == LUA_TBOOLEAN ||
                  (lua_type(L, -1) == LUA_TNUMBER &&
                   (lua_isinteger(L, -1) || isfinite(lua_tonumber(L, -1))));
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        if (redact_top(L)) /* a number that is a secret is written as a string */
            raw = 0;
        lua_rawseti(L, out, 3 * i - 1);
        redact_top(L); /* the key */
        lua_rawseti(L, out, 3 * i - 2);
        lua_pushboolean(L, raw);
        lua_rawseti(L, out, 3 * i);
    }
    lua_settop(L, out);
    return out;
}

/* Emit one line. fields: stack index of a table of extra key/values or 0.
 * The message, the field keys and the field values are redacted first, as
 * they are; only then are they escaped (JSON) or joined (human), so a secret
 * holding a quote, a backslash or a control character is found as it is. */
static void emit(lua_State *L, int level, const char *msg, size_t msglen, int fields)
{
    struct log_state *st = get_state(L);
    int to_stderr = level >= st->level;
    int to_file = st->file && level >= st->file_level;
    char ts[40];
    if (!to_stderr && !to_file)
        return;
    timestamp(ts, sizeof ts);
    int top = lua_gettop(L);
    sbot_log_push_redacted(L, msg, msglen);
    msg = lua_tolstring(L, -1, &msglen); /* stays on the stack until the end */
    int kv = collect_fields(L, fields);
    lua_Integer nkv = luaL_len(L, kv) / 3;
    luaL_Buffer b;
    size_t jl;

    if (to_file || (to_stderr && st->json)) {
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "{\"ts\":\"");
        luaL_addstring(&b, ts);
        luaL_addstring(&b, "\",\"level\":\"");
        luaL_addstring(&b, level_names[level]);
        luaL_addstring(&b, "\",\"msg\":");
        add_json_string(&b, msg, msglen);
        for (lua_Integer i = 1; i <= nkv; i++) {
            size_t kl, vl;
            lua_rawgeti(L, kv, 3 * i - 2);
            lua_rawgeti(L, kv, 3 * i - 1);
            lua_rawgeti(L, kv, 3 * i);
            const char *k = lua_tolstring(L, -3, &kl);
            const char *v = lua_tolstring(L, -2, &vl);
            int raw = lua_toboolean(L, -1);
            lua_pop(L, 3); /* the strings stay alive in the kv table */
            luaL_addchar(&b, ',');
            add_json_string(&b, k, kl);
            luaL_addchar(&b, ':');
            if (raw)
                luaL_addlstring(&b, v, vl);
            else
                add_json_string(&b, v, vl);
        }
        luaL_addstring(&b, "}\n");
        luaL_pushresult(&b);
        const char *j = lua_tolstring(L, -1, &jl);
        if (to_file) {
            fwrite(j, 1, jl, st->file);
            fflush(st->file);
        }
        if (to_stderr && st->json) {
            sbot_progress_hide(); /* below the progress board, if one is drawn */
            fwrite(j, 1, jl, stderr);
            sbot_progress_show();
        }
    }
    if (to_stderr && !st->json) {
        static const char *const colour[] = {"\033[2m", "\033[36m", "\033[33m", "\033[31m"};
        char lv[8];
        snprintf(lv, sizeof lv, "%-5s", level_names[level]);
        for (char *p = lv; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        luaL_buffinit(L, &b);
        luaL_addstring(&b, ts + 11); /* time of day; the date is in log.jsonl */
        luaL_addchar(&b, ' ');
        if (st->tty)
            luaL_addstring(&b, colour[level]);
        luaL_addstring(&b, lv);
        if (st->tty)
            luaL_addstring(&b, "\033[0m");
        luaL_addchar(&b, ' ');
        luaL_addlstring(&b, msg, msglen);
        for (lua_Integer i = 1; i <= nkv; i++) {
            size_t kl, vl;
            lua_rawgeti(L, kv, 3 * i - 2);
            lua_rawgeti(L, kv, 3 * i - 1);
            const char *k = lua_tolstring(L, -2, &kl);
            const char *v = lua_tolstring(L, -1, &vl);
            lua_pop(L, 2);
            luaL_addchar(&b, ' ');
            luaL_addlstring(&b, k, kl);
            luaL_addchar(&b, '=');
            luaL_addlstring(&b, v, vl);
        }
        luaL_addchar(&b, '\n');
        luaL_pushresult(&b);
        size_t hl;
        const char *h = lua_tolstring(L, -1, &hl);
        sbot_progress_hide();
        fwrite(h, 1, hl, stderr);
        sbot_progress_show();
    }
    fflush(stderr);
    lua_settop(L, top);
}

void sbot_log_fields(lua_State *L, enum sbot_level level, const char *msg, int fields)
{
    if (!sbot_log_enabled(L, level))
        return;
    emit(L, level, msg, strlen(msg), fields ? lua_absindex(L, fields) : 0);
}

int sbot_log_json(lua_State *L)
{
    return get_state(L)->json;
}

void sbot_log(lua_State *L, enum sbot_level level, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    if (!sbot_log_enabled(L, level))
        return;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        emit(L, level, small, (size_t)n, 0);
        return;
    }
    /* formatted straight into a Lua buffer: nothing malloc'ed to leak if
     * Lua raises (out of memory) */
    luaL_Buffer b;
    char *big = luaL_buffinitsize(L, &b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    luaL_pushresultsize(&b, (size_t)n);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    emit(L, level, s, len, 0);
    lua_pop(L, 1);
}

/* ---- secret objects ----------------------------------------------------------
 *
 * A secret is a userdata with the metatable SBOT_SECRET_MT ("sbot.secret")
 * holding the value's bytes (wiped when collected) and, as its user value,
 * where the value came from. It is the one type identity every module tests
 * (sbot_is_secret: luaL_testudata; log.is_secret in Lua): a table cannot
 * pass for one. Creating one registers the value with the redactor. */

struct secret {
    size_t len;
    char value[]; /* len bytes, then a NUL */
};

int sbot_is_secret(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, SBOT_SECRET_MT) != NULL;
}

static struct secret *check_secret(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SBOT_SECRET_MT);
}

static int secret_reveal(lua_State *L)
{
    struct secret *s = check_secret(L, 1);
    lua_pushlstring(L, s->value, s->len);
    return 1;
}

static int secret_source(lua_State *L)
{
    check_secret(L, 1);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int secret_tostring(lua_State *L)
{
    lua_pushliteral(L, REDACTED);
    return 1;
}

/* "pw=" .. s: either operand may be the secret; the other is a string or a
 * number (anything else is the same error plain concatenation raises). */
static int secret_concat(lua_State *L)
{
    for (int i = 1; i <= 2; i++) {
        if (sbot_is_secret(L, i)) {
            lua_pushliteral(L, REDACTED);
        } else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
            lua_pushvalue(L, i);
        } else {
            return luaL_error(L, "attempt to concatenate a %s value with a secret", luaL_typename(L, i));
        }
    }
    lua_concat(L, 2);
    return 1;
}

static int secret_newindex(lua_State *L)
{
    return luaL_error(L, "sbot.secret: secret objects are read-only");
}

static int secret_gc(lua_State *L)
{
    struct secret *s = check_secret(L, 1);
    explicit_bzero(s->value, s->len);
    s->len = 0;
    return 0;
}

static void secret_metatable(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__tostring", secret_tostring}, {"__concat", secret_concat},
        {"__newindex", secret_newindex}, {"__gc", secret_gc}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"reveal", secret_reveal}, {"source", secret_source}, {NULL, NULL}};
    if (luaL_newmetatable(L, SBOT_SECRET_MT)) { /* sets __name = "sbot.secret" */
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
}

void sbot_secret_push(lua_State *L, const char *value, size_t len, const char *source)
{
    if (len < SBOT_SECRET_MIN_LENGTH)
        luaL_error(L, "sbot.secret: the value (%s) is %d byte%s long; secrets shorter than %d bytes are "
                   "refused (see docs/log.md, Short secrets)", source ? source : "literal", (int)len,
                   len == 1 ? "" : "s", SBOT_SECRET_MIN_LENGTH);
    sbot_log_add_secret(L, value, len);
    struct secret *s = lua_newuserdatauv(L, sizeof *s + len + 1, 1);
    s->len = len;
    memcpy(s->value, value, len);
    s->value[len] = '\0';
    lua_pushstring(L, source ? source : "literal");
    lua_setiuservalue(L, -2, 1);
    secret_metatable(L);
    lua_setmetatable(L, -2);
}

/* log.secret(value [, source]) -> secret object */
static int l_secret(lua_State *L)
{
    if (sbot_is_secret(L, 1)) {
        lua_settop(L, 1);
        return 1;
    }
    size_t len;
    const char *v = luaL_checklstring(L, 1, &len);
    const char *source = luaL_optstring(L, 2, "literal");
    sbot_secret_push(L, v, len, source);
    return 1;
}

static int l_is_secret(lua_State *L)
{
    lua_pushboolean(L, sbot_is_secret(L, 1));
    return 1;
}

/* ---- Lua API -------------------------------------------------------------- */

static int l_emit(lua_State *L, int level)
{
    size_t len;
    int fields = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        fields = 2;
    }
    lua_settop(L, 2);
    const char *msg = luaL_tolstring(L, 1, &len);
    emit(L, level, msg, len, fields);
    return 0;
}

static int l_debug(lua_State *L) { return l_emit(L, SBOT_DEBUG); }
static int l_info(lua_State *L) { return l_emit(L, SBOT_INFO); }
static int l_warn(lua_State *L) { return l_emit(L, SBOT_WARN); }
static int l_error(lua_State *L) { return l_emit(L, SBOT_ERROR); }

static int l_enabled(lua_State *L)
{
    int level = luaL_checkoption(L, 1, NULL, level_names);
    lua_pushboolean(L, sbot_log_enabled(L, level));
    return 1;
}

static int l_level(lua_State *L)
{
    lua_pushstring(L, level_names[get_state(L)->level]);
    return 1;
}

/* log.configure{level=, json=, file=path|false, file_level=} */
static int l_configure(lua_State *L)
{
    struct log_state *st = get_state(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "level") != LUA_TNIL)
        st->level = luaL_checkoption(L, -1, NULL, level_names);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "file_level") != LUA_TNIL)
        st->file_level = luaL_checkoption(L, -1, NULL, level_names);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "json") != LUA_TNIL)
        st->json = lua_toboolean(L, -1);
    lua_pop(L, 1);
    int t = lua_getfield(L, 1, "file");
    if (t == LUA_TSTRING) {
        const char *path = lua_tostring(L, -1);
        FILE *f = fopen(path, "ae");
        if (!f) { /* nil, "path: reason", errno name (docs/errors.md) */
            int e = errno;
            const char *name = strerrorname_np(e);
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(e));
            lua_pushstring(L, name ? name : "EUNKNOWN");
            return 3;
        }
        if (st->file)
            fclose(st->file);
        st->file = f;
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        if (st->file)
            fclose(st->file);
        st->file = NULL;
    } else if (t != LUA_TNIL) {
        return luaL_error(L, "log.configure: 'file' must be a path or false, got %s",
                          luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* log.add_secret(value): a string, or a secret object (already registered). */
static int l_add_secret(lua_State *L)
{
    size_t len;
    const char *s;
    if (sbot_is_secret(L, 1))
        return 0;
    s = luaL_checklstring(L, 1, &len);
    sbot_log_add_secret(L, s, len);
    return 0;
}

static int l_redact(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    sbot_log_push_redacted(L, s, len);
    return 1;
}

int luaopen_sbot_log(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"debug", l_debug},       {"info", l_info},           {"warn", l_warn},
        {"error", l_error},       {"enabled", l_enabled},     {"level", l_level},
        {"configure", l_configure}, {"add_secret", l_add_secret}, {"redact", l_redact},
        {"secret", l_secret},     {"is_secret", l_is_secret}, {NULL, NULL}};
    get_state(L);
    secret_metatable(L);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_pushliteral(L, REDACTED);
    lua_setfield(L, -2, "REDACTED");
    lua_pushinteger(L, SBOT_SECRET_MIN_LENGTH);
    lua_setfield(L, -2, "SECRET_MIN_LENGTH");
    return 1;
}
