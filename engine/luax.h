/* luax.h: small Lua C API helpers shared by the components (components/<name>.c)
 * and the protocol modules of the extension library (engine/luax.c).
 *
 * They live in libsbot-ext.so with their users; the core binary (runtime.c,
 * log.c, progress.c, main.c) does not use them.
 *
 * Table arguments `t` may be relative (negative) indices: every helper turns
 * them absolute before pushing anything. */
#ifndef SBOT_LUAX_H
#define SBOT_LUAX_H

#include <lua.h>

/* ---- reading fields: t[k] (metamethods apply, as lua_getfield) -----------
 * A string returned stays valid while the table holding it lives. */

/* t[k] if it is a string, else NULL. */
const char *sbot_field_str(lua_State *L, int t, const char *k);

/* t[k] as lua_tostring gives it: a string, a number converted to a string,
 * else NULL. A converted number's text is anchored in the registry (a set
 * of such strings, "sbot.luax.tostr"), so it stays valid like a field's own
 * string; prefer sbot_field_str where the value must be a string. */
const char *sbot_field_tostr(lua_State *L, int t, const char *k);

/* t[k] if it is a boolean, else dflt. */
int sbot_field_bool(lua_State *L, int t, const char *k, int dflt);

/* t[k] if it is a number, else dflt. */
double sbot_field_num(lua_State *L, int t, const char *k, double dflt);

/* Push t[k] and return 1 if it is a table; else push nothing and return 0. */
int sbot_field_table(lua_State *L, int t, const char *k);

/* ---- writing fields: t[k] = v (metamethods apply, as lua_setfield) -------- */

/* t[k] = v, or nil when v is NULL. */
void sbot_set_str(lua_State *L, int t, const char *k, const char *v);
void sbot_set_int(lua_State *L, int t, const char *k, lua_Integer v);
/* t[k] = (v != 0) */
void sbot_set_bool(lua_State *L, int t, const char *k, int v);
/* t[k] = the value on the top of the stack, which is popped. */
void sbot_set_top(lua_State *L, int t, const char *k);

/* ---- JSON arrays -------------------------------------------------------------- */

/* The metatable name sbot.json recognises as an array marker (json.is_array):
 * a table carrying it encodes as [] even when empty. */
#define SBOT_JSON_ARRAY_MT "sbot.json.array"

/* Push a new empty table marked as a JSON array (the registry's metatable
 * named SBOT_JSON_ARRAY_MT, created on first use). */
void sbot_push_array(lua_State *L);

/* Append the value on the top to the sequence at index list (popped). */
void sbot_append(lua_State *L, int list);

/* ---- modules and methods --------------------------------------------------------- */

/* Push require(name)[field], or require(name) itself when field is NULL.
 * Errors of require propagate. */
void sbot_push_require(lua_State *L, const char *name, const char *field);

/* Call obj:method(...) with the object at index obj and the nargs arguments
 * on the top of the stack (consumed); leaves nresults results. Errors
 * propagate (lua_call). */
void sbot_call_method(lua_State *L, int obj, const char *method, int nargs, int nresults);

/* Call the C function f with the nargs values on the top of the stack
 * (consumed), unprotected: errors (misuse) propagate like any Lua API call.
 * Returns the number of results pushed. The C API of a module (sbot.h) is
 * its Lua functions called this way. */
int sbot_call_api(lua_State *L, lua_CFunction f, int nargs);

#endif
