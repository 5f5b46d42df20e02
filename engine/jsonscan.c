/* jsonscan.c: sbot.jsonscan - the passes over JSON text that sbot.json needs
 * around cjson, which decodes [] and {} to the same empty table:
 *
 *   count(text)                 how many empty arrays and empty objects there
 *                               are outside strings ("[]", "[ ]", "{}", ...)
 *   rewrite(text, kind, s)      the text with every empty container of that
 *                               kind ("[" or "{") outside strings replaced by s
 *
 * sbot.json counts, and when both kinds occur rewrites only the rarer one to
 * a sentinel; when one kind is absent there is nothing to rewrite at all (an
 * empty table can only be the other kind). In Lua the rewrite cost more than
 * the decoding itself on big answers: one table entry per piece and per
 * string literal visited. Here counting allocates nothing and rewriting is
 * one copy built in a luaL_Buffer. Malformed text (an unterminated string) is
 * left to cjson to report. */
#include "sbot.h"

#include <string.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A scan of the text from position i. */
struct scan {
    const char *s;
    size_t n, i;
};

/* The next empty container outside strings whose opening character is in
 * `opens` ("[{", "[" or "{"), from sc->i on: s[*pos] is its opening
 * character, *end one past its closing one; 0 when there is none. */
static int next_empty(struct scan *sc, const char *opens, size_t *pos, size_t *end)
{
    const char *s = sc->s;
    size_t n = sc->n, i = sc->i;
    while (i < n) {
        char c = s[i];
        if (c == '"') { /* skip the string, escapes included */
            i++;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            i++;
            continue;
        }
        if (c != '[' && c != '{') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && is_ws(s[j]))
            j++;
        if (j < n && s[j] == (c == '[' ? ']' : '}') && strchr(opens, c)) {
            *pos = i;
            *end = sc->i = j + 1;
            return 1;
        }
        i++;
    }
    sc->i = n;
    return 0;
}

/* jsonscan.count(text) -> empty arrays, empty objects (outside strings) */
static int l_count(lua_State *L)
{
    struct scan sc = {0, 0, 0};
    sc.s = luaL_checklstring(L, 1, &sc.n);
    lua_Integer arrays = 0, objects = 0;
    size_t pos, end;
    while (next_empty(&sc, "[{", &pos, &end)) {
        if (sc.s[pos] == '[')
            arrays++;
        else
            objects++;
    }
    lua_pushinteger(L, arrays);
    lua_pushinteger(L, objects);
    return 2;
}

/* jsonscan.rewrite(text, "[" | "{", sentinel) -> text, count replaced (the
 * same string and 0 when there is none) */
static int l_rewrite(lua_State *L)
{
    struct scan sc = {0, 0, 0};
    sc.s = luaL_checklstring(L, 1, &sc.n);
    const char *kind = luaL_checkstring(L, 2);
    luaL_argcheck(L, strcmp(kind, "[") == 0 || strcmp(kind, "{") == 0, 2, "\"[\" or \"{\" expected");
    size_t sl;
    const char *sentinel = luaL_checklstring(L, 3, &sl);
    luaL_Buffer b;
    int started = 0;
    lua_Integer count = 0;
    size_t copied = 0, pos, end; /* s[0 .. copied) is in the buffer */
    while (next_empty(&sc, kind, &pos, &end)) {
        if (!started) {
            luaL_buffinitsize(L, &b, sc.n + sc.n / 8 + sl);
            started = 1;
        }
        luaL_addlstring(&b, sc.s + copied, pos - copied);
        luaL_addlstring(&b, sentinel, sl);
        copied = end;
        count++;
    }
    if (!started) {
        lua_settop(L, 1);
        lua_pushinteger(L, 0);
        return 2;
    }
    luaL_addlstring(&b, sc.s + copied, sc.n - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, count);
    return 2;
}

int luaopen_sbot_jsonscan(lua_State *L)
{
    static const luaL_Reg fns[] = {{"count", l_count}, {"rewrite", l_rewrite}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
