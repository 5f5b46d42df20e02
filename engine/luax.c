/* luax.c: Lua C API helpers shared by the components and the protocol
 * modules of the extension library (see luax.h). */
#include "luax.h"

#include <lauxlib.h>

const char *sbot_field_str(lua_State *L, int t, const char *k)
{
    const char *s = NULL;
    if (lua_getfield(L, t, k) == LUA_TSTRING)
        s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive in t */
    return s;
}

const char *sbot_field_tostr(lua_State *L, int t, const char *k)
{
    t = lua_absindex(L, t);
    int type = lua_getfield(L, t, k);
    const char *s = lua_tostring(L, -1);
    if (type == LUA_TNUMBER) {
        /* The converted string lives only on the stack: anchor it in the
         * registry's set of such strings (a number's text is short and a run
         * converts few distinct ones) so the pointer outlives the pop. */
        if (lua_getfield(L, LUA_REGISTRYINDEX, "sbot.luax.tostr") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, LUA_REGISTRYINDEX, "sbot.luax.tostr");
        }
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return s;
}

int sbot_field_bool(lua_State *L, int t, const char *k, int dflt)
{
    int v = dflt;
    if (lua_getfield(L, t, k) == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

double sbot_field_num(lua_State *L, int t, const char *k, double dflt)
{
    double v = dflt;
    if (lua_getfield(L, t, k) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

int sbot_field_table(lua_State *L, int t, const char *k)
{
    if (lua_getfield(L, t, k) == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    return 0;
}

void sbot_set_str(lua_State *L, int t, const char *k, const char *v)
{
    t = lua_absindex(L, t);
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    lua_setfield(L, t, k);
}

void sbot_set_int(lua_State *L, int t, const char *k, lua_Integer v)
{
    t = lua_absindex(L, t);
    lua_pushinteger(L, v);
    lua_setfield(L, t, k);
}

void sbot_set_bool(lua_State *L, int t, const char *k, int v)
{
    t = lua_absindex(L, t);
    lua_pushboolean(L, v);
    lua_setfield(L, t, k);
}

void sbot_set_top(lua_State *L, int t, const char *k)
{
    t = lua_absindex(L, t);
    lua_setfield(L, t, k);
}

void sbot_push_array(lua_State *L)
{
    lua_newtable(L);
    luaL_newmetatable(L, SBOT_JSON_ARRAY_MT); /* new: __name = SBOT_JSON_ARRAY_MT */
    lua_setmetatable(L, -2);
}

void sbot_append(lua_State *L, int list)
{
    list = lua_absindex(L, list);
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

void sbot_push_require(lua_State *L, const char *name, const char *field)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (field) {
        lua_getfield(L, -1, field);
        lua_remove(L, -2);
    }
}

void sbot_call_method(lua_State *L, int obj, const char *method, int nargs, int nresults)
{
    obj = lua_absindex(L, obj);
    lua_getfield(L, obj, method);
    lua_pushvalue(L, obj);
    lua_rotate(L, -(nargs + 2), 2); /* method, obj, args... */
    lua_call(L, nargs + 1, nresults);
}

int sbot_call_api(lua_State *L, lua_CFunction f, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, f);
    lua_insert(L, base + 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - base;
}
