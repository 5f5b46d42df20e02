/* jsonscan.c: sbot.jsonscan - the one pass over JSON text that sbot.json
 * needs before cjson decodes it: every empty array outside a string ("[]",
 * "[ ]", ...) is rewritten to a sentinel array, so the decoded document
 * still tells [] from {} (cjson gives both as an empty table).
 *
 * In Lua this pass cost more than the decoding itself on big answers: one
 * table entry per piece and per string literal visited (a 60 MB answer with
 * millions of [] took some 300 MB and seconds). Here it is one copy built in
 * a luaL_Buffer, at memory speed, and no copy when there is nothing to
 * rewrite. Malformed text (an unterminated string) is left to cjson to
 * report. */
#include "sbot.h"

#include <string.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* jsonscan.empty_arrays(text, sentinel) -> text with every empty array
 * outside strings replaced by sentinel (the same string when there is none),
 * and the count replaced. */
static int l_empty_arrays(lua_State *L)
{
    size_t n, sl;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *sentinel = luaL_checklstring(L, 2, &sl);
    luaL_Buffer b;
    int started = 0;
    lua_Integer count = 0;
    size_t copied = 0; /* s[0 .. copied) is in the buffer */
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') { /* skip the string, escapes included */
            i++;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            i++;
            continue;
        }
        if (c != '[') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && is_ws(s[j]))
            j++;
        if (j >= n || s[j] != ']') {
            i++;
            continue;
        }
        if (!started) {
            luaL_buffinitsize(L, &b, n + n / 8 + sl);
            started = 1;
        }
        luaL_addlstring(&b, s + copied, i - copied);
        luaL_addlstring(&b, sentinel, sl);
        count++;
        i = copied = j + 1;
    }
    if (!started) {
        lua_settop(L, 1);
        lua_pushinteger(L, 0);
        return 2;
    }
    luaL_addlstring(&b, s + copied, n - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, count);
    return 2;
}

int luaopen_sbot_jsonscan(lua_State *L)
{
    static const luaL_Reg fns[] = {{"empty_arrays", l_empty_arrays}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
