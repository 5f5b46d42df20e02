/* log.c: sbot.log - levelled log lines (human or JSON) and the secret registry.
 *
 * Every line, whatever its sink, passes through the redactor: each registered
 * secret value is replaced by <redacted>. State lives in a userdata in the
 * registry, so each interpreter (and each fleet worker) has its own. */
#define _GNU_SOURCE
#include "sbot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <unistd.h>

#define STATE_KEY "sbot.log.state"
#define STATE_MT "sbot.log.state.mt" /* not STATE_KEY: that slot holds the state */
#define SECRETS_KEY "sbot.log.secrets"
#define REDACTED "<redacted>"

struct log_state {
    int level;       /* lines below this level go nowhere */
    int json;        /* stderr lines as JSON instead of human text */
    int tty;         /* stderr is a terminal: colour the level */
    int file_level;  /* level for the file sink */
    FILE *file;      /* JSON-lines sink (runs/<id>/log.jsonl), or NULL */
};

static const char *const level_names[] = {"debug", "info", "warn", "error", "off", NULL};

static int state_gc(lua_State *L)
{
    struct log_state *st = luaL_checkudata(L, 1, STATE_MT);
    if (st->file) {
        fclose(st->file);
        st->file = NULL;
    }
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

/* The secrets table: a sequence of strings in the registry. */
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
    push_secrets(L);
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        size_t l;
        lua_rawgeti(L, -1, i);
        const char *s = lua_tolstring(L, -1, &l);
        int same = (l == len && memcmp(s, value, len) == 0);
        lua_pop(L, 1);
        if (same) {
            lua_pop(L, 1);
            return;
        }
    }
    lua_pushlstring(L, value, len);
    lua_rawseti(L, -2, n + 1);
    lua_pop(L, 1);
}

/* Replace every registered secret by <redacted>, scanning left to right and
 * taking the longest secret that matches at each position. A <redacted> that
 * is already in the text is copied as it is, so redacting twice changes
 * nothing (a secret like "a" would otherwise eat into earlier replacements). */
void sbot_log_push_redacted(lua_State *L, const char *s, size_t len)
{
    static const size_t rlen = sizeof REDACTED - 1;
    push_secrets(L);
    lua_Integer n = luaL_len(L, -1);
    if (n == 0) {
        lua_pop(L, 1);
        lua_pushlstring(L, s, len);
        return;
    }
    int secrets = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    while (i < len) {
        if (len - i >= rlen && memcmp(s + i, REDACTED, rlen) == 0) {
            luaL_addlstring(&b, REDACTED, rlen);
            i += rlen;
            continue;
        }
        size_t best = 0;
        for (lua_Integer k = 1; k <= n; k++) {
            size_t l;
            lua_rawgeti(L, secrets, k);
            const char *sec = lua_tolstring(L, -1, &l);
            if (l > best && l <= len - i && memcmp(s + i, sec, l) == 0)
                best = l;
            lua_pop(L, 1);
        }
        if (best) {
            luaL_addlstring(&b, REDACTED, rlen);
            i += best;
        } else {
            luaL_addchar(&b, s[i]);
            i++;
        }
    }
    luaL_pushresult(&b);
    lua_remove(L, secrets);
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
 * strings (raw: number or boolean, written unquoted in JSON). Done before any
 * luaL_Buffer is opened, because a buffer must own the top of the stack. */
static int sort_keys(lua_State *L)
{
    lua_settop(L, 1);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
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
        int raw = lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TBOOLEAN;
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        lua_rawseti(L, out, 3 * i - 1);
        lua_rawseti(L, out, 3 * i - 2);
        lua_pushboolean(L, raw);
        lua_rawseti(L, out, 3 * i);
    }
    lua_settop(L, out);
    return out;
}

/* Emit one line. fields: stack index of a table of extra key/values or 0.
 * Builds both forms, redacts them, and writes each to its sink. */
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
    int kv = collect_fields(L, fields);
    lua_Integer nkv = luaL_len(L, kv) / 3;

    /* JSON form */
    luaL_Buffer b;
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
    size_t jl;
    const char *j = lua_tolstring(L, -1, &jl);
    sbot_log_push_redacted(L, j, jl);
    int json_line = lua_gettop(L);

    if (to_file) {
        const char *r = lua_tolstring(L, json_line, &jl);
        fwrite(r, 1, jl, st->file);
        fflush(st->file);
    }
    if (to_stderr && st->json) {
        const char *r = lua_tolstring(L, json_line, &jl);
        fwrite(r, 1, jl, stderr);
    } else if (to_stderr) {
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
        sbot_log_push_redacted(L, h, hl);
        h = lua_tolstring(L, -1, &hl);
        fwrite(h, 1, hl, stderr);
    }
    fflush(stderr);
    lua_settop(L, top);
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
        if (!f)
            return luaL_fileresult(L, 0, path);
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

/* log.add_secret(value): strings, or objects with a reveal() method. */
static int l_add_secret(lua_State *L)
{
    size_t len;
    const char *s;
    if (lua_type(L, 1) != LUA_TSTRING && luaL_getmetafield(L, 1, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "reveal");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        lua_replace(L, 1);
    }
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
        {NULL, NULL}};
    get_state(L);
    luaL_newlib(L, fns);
    lua_pushliteral(L, REDACTED);
    lua_setfield(L, -2, "REDACTED");
    return 1;
}
