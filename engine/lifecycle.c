/* lifecycle.c: sbot.lifecycle - the component lifecycle (discover -> process
 * -> housekeep), the same machinery for components written in C and in Lua.
 * Scripts use it as sbot.component (lua/sbot/component.lua), which hands the
 * core its collaborators once: validate and check (sbot.schema), record_artifact
 * (sbot.artifact), encode (sbot.json). The core requires no Lua module
 * (DESIGN.md, "Layers"): what it needs is passed in (configure), and using a
 * collaborator before it is set is an error that says so.
 *
 * A component is defined once from a spec table {name, description, schema,
 * open, discover, plan, apply, undo, housekeep, hooks}; define() returns a
 * module with .new(config [, opts]) and registers it as
 * package.loaded["sbot.component.<name>"]. An instance is a plain table (its
 * metatable names the module) whose fields hold the results of each phase;
 * every phase runs protected, and its outcome (start, end, duration, error
 * with traceback) is recorded in self.phases.
 *
 * A component that holds a connection declares open(self) -> resource: it is
 * called once, lazily, before the first phase function that runs, kept as
 * self.resource (never part of the results) and passed as the last argument
 * to every phase function. c:close() closes it; execute() always does, also
 * when Ctrl-C or a stop request ("interrupted!") unwinds it.
 * Phase errors never escape, except "interrupted!", which stops the run
 * (after the phase is recorded as failed and the resource closed). */
#define _GNU_SOURCE
#include "sbot.h"
#include "luax.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define METHODS_KEY "sbot.component.methods"
#define PLAN_MT_KEY "sbot.component.plan_mt"
#define INSTANCE_NAME "sbot.component"

static const char *const phase_names[] = {"discover", "process", "housekeep", NULL};
static const char *const spec_functions[] = {"open", "discover", "plan", "apply", "undo",
                                             "housekeep", NULL};

/* ---- small helpers --------------------------------------------------------- */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- collaborators ---------------------------------------------------------- */

#define COLLAB_KEY "sbot.lifecycle.collaborators"

static const struct {
    const char *name, *what;
} collaborators[] = {
    {"validate", "validates a config against a component's schema, sbot.schema.validate"},
    {"check", "checks a component's schema, sbot.schema.check"},
    {"record_artifact", "records an artifact, sbot.artifact.record"},
    {"encode", "encodes results as JSON, sbot.json.encode"},
    {NULL, NULL}};

/* Push the collaborator `name` configure() was given, or raise. */
static void push_collaborator(lua_State *L, const char *name)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, COLLAB_KEY) == LUA_TTABLE &&
        lua_getfield(L, -1, name) == LUA_TFUNCTION) {
        lua_remove(L, -2);
        return;
    }
    const char *what = "?";
    for (int i = 0; collaborators[i].name; i++)
        if (strcmp(collaborators[i].name, name) == 0)
            what = collaborators[i].what;
    luaL_error(L, "sbot.component: the lifecycle has no '%s' (the function that %s): require "
                  "\"sbot.component\" first, which hands the lifecycle its collaborators "
                  "(sbot.lifecycle.configure)", name, what);
}

/* lifecycle.configure{validate = fn, check = fn, record_artifact = fn,
 * encode = fn}: every one is required; a later call replaces them all. */
static int l_configure(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int known = 0;
        for (int i = 0; k && collaborators[i].name; i++)
            known |= strcmp(k, collaborators[i].name) == 0;
        if (!known)
            return luaL_error(L, "lifecycle.configure: unknown collaborator '%s' (expected validate, "
                                 "check, record_artifact, encode)", k ? k : luaL_typename(L, -2));
        lua_pop(L, 1);
    }
    lua_createtable(L, 0, 4);
    for (int i = 0; collaborators[i].name; i++) {
        if (lua_getfield(L, 1, collaborators[i].name) != LUA_TFUNCTION)
            return luaL_error(L, "lifecycle.configure: '%s' must be a function (the one that %s), got %s",
                              collaborators[i].name, collaborators[i].what, luaL_typename(L, -1));
        lua_setfield(L, 2, collaborators[i].name);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, COLLAB_KEY);
    return 0;
}

/* The instance at idx, or a "bad argument" error. Pushes its module. */
static void check_instance(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
        lua_getfield(L, -1, "__name");
        int ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), INSTANCE_NAME) == 0;
        lua_pop(L, 1);
        if (ok) {
            lua_getfield(L, -1, "module");
            lua_remove(L, -2);
            if (lua_type(L, -1) == LUA_TTABLE)
                return;
        }
    }
    luaL_typeerror(L, idx, "component instance (use Module.new(config), and call methods with ':')");
}

/* Push the spec function `name` of the instance's module (or nil). */
static int push_spec_fn(lua_State *L, int self, const char *name)
{
    check_instance(L, self);
    lua_getfield(L, -1, "spec");
    lua_remove(L, -2);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    return lua_type(L, -1) == LUA_TFUNCTION;
}

static const char *instance_label(lua_State *L, int self)
{
    self = lua_absindex(L, self);
    lua_getfield(L, self, "component");
    lua_getfield(L, self, "id");
    const char *s = lua_pushfstring(L, "component %s (%s)", luaL_optstring(L, -2, "?"),
                                    luaL_optstring(L, -1, "?"));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return s; /* kept alive on the stack top */
}

/* Error text at idx, redacted, split into message and full traceback;
 * pushes message, traceback. */
static void push_error_parts(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    size_t len;
    const char *s = luaL_tolstring(L, idx, &len);
    sbot_log_push_redacted(L, s, len);
    lua_remove(L, -2);
    const char *full = lua_tolstring(L, -1, &len);
    const char *tb = strstr(full, "\nstack traceback:");
    if (tb)
        lua_pushlstring(L, full, (size_t)(tb - full));
    else
        lua_pushvalue(L, -1);
    lua_insert(L, -2);
}

/* Ctrl-C arrives as an "interrupted!" error from the runtime's hook: it
 * must stop the run, not be recorded as a phase failure. */
static int is_interrupt(lua_State *L, int idx)
{
    const char *s = lua_tostring(L, idx);
    if (!s)
        return 0;
    const char *nl = strchr(s, '\n');
    const char *hit = strstr(s, "interrupted!");
    return hit && (!nl || hit < nl);
}

/* Protected call of the function below nargs arguments on the top, with a
 * traceback. Returns the pcall status; leaves one result or the error. An
 * interruption is returned like any error (the caller re-raises it). */
static int pcall_tb_keep(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, sbot_traceback);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, 1, base);
    lua_remove(L, base);
    return st;
}

/* The same, re-raising an interruption at once. */
static int pcall_tb(lua_State *L, int nargs)
{
    int st = pcall_tb_keep(L, nargs);
    if (st != LUA_OK && is_interrupt(L, -1))
        lua_error(L);
    return st;
}

static void mark_failed(lua_State *L, int self, const char *phase, int msg)
{
    msg = lua_absindex(L, msg);
    sbot_set_str(L, self, "status", "failed");
    lua_pushfstring(L, "%s: %s", phase, lua_tostring(L, msg));
    lua_setfield(L, self, "error");
}

/* ---- the component's resource (spec.open) ----------------------------------- */

/* Push self.resource, opening it first with spec.open(self) if the spec has
 * one and it is not open yet; pushes nil for a component without open. Runs
 * inside a phase's protected call: open raising, or returning nil[, err],
 * fails that phase. */
static void push_resource(lua_State *L, int self)
{
    self = lua_absindex(L, self);
    lua_pushliteral(L, "resource");
    if (lua_rawget(L, self) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    if (!push_spec_fn(L, self, "open")) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return;
    }
    lua_pushvalue(L, self);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2)) {
        if (lua_isnil(L, -1))
            luaL_error(L, "open: returned no resource");
        luaL_error(L, "open: %s", luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "resource");
    lua_pushvalue(L, -2);
    lua_rawset(L, self);
    sbot_log(L, SBOT_DEBUG, "%s: resource opened", instance_label(L, self));
    lua_pop(L, 1);
}

/* Protected body of close: arg 1 the resource. res:close() if it has a close
 * method (a `nil, err` return is a failure), else its __close metamethod. */
static int close_body(lua_State *L)
{
    int t = lua_type(L, 1);
    if (t != LUA_TTABLE && t != LUA_TUSERDATA)
        return 0;
    int indexable = t == LUA_TTABLE || luaL_getmetafield(L, 1, "__index") != LUA_TNIL;
    lua_settop(L, 1);
    if (indexable && lua_getfield(L, 1, "close") == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        lua_call(L, 1, 2);
        if (lua_isnil(L, -2) && !lua_isnil(L, -1))
            return luaL_error(L, "%s", luaL_tolstring(L, -1, NULL));
        return 0;
    }
    lua_settop(L, 1);
    if (luaL_getmetafield(L, 1, "__close") != LUA_TNIL) {
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_call(L, 2, 0);
    }
    return 0;
}

/* Close self.resource if open (self.resource is cleared first, so a second
 * close does nothing). Returns -1 when nothing was open, else the pcall
 * status; on failure the redacted message is left on the stack. An
 * interruption while closing is re-raised. */
static int close_resource(lua_State *L, int self)
{
    self = lua_absindex(L, self);
    lua_pushliteral(L, "resource");
    if (lua_rawget(L, self) == LUA_TNIL) {
        lua_pop(L, 1);
        return -1;
    }
    lua_pushliteral(L, "resource");
    lua_pushnil(L);
    lua_rawset(L, self);
    lua_pushcfunction(L, close_body);
    lua_insert(L, -2);
    int st = pcall_tb(L, 1);
    if (st == LUA_OK) {
        lua_pop(L, 1);
        sbot_log(L, SBOT_DEBUG, "%s: resource closed", instance_label(L, self));
        lua_pop(L, 1);
        return st;
    }
    push_error_parts(L, -1);
    lua_pop(L, 1);   /* traceback: the message is what callers report */
    lua_remove(L, -2); /* the raw error */
    return st;
}

/* c:close() -> true | nil, err: close the resource opened by spec.open
 * (idempotent; nothing open is fine). */
static int m_close(lua_State *L)
{
    check_instance(L, 1);
    lua_settop(L, 1);
    if (close_resource(L, 1) > 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* __close of an instance: `local c <close> = M.new(...)` closes its resource.
 * A failure to close is logged (a __close must not raise over another error). */
static int m_gc_close(lua_State *L)
{
    if (close_resource(L, 1) > 0) {
        const char *msg = lua_tostring(L, -1);
        const char *label = instance_label(L, 1);
        sbot_log(L, SBOT_WARN, "%s: closing its resource failed: %s", label, msg);
    }
    return 0;
}

/* ---- hooks ------------------------------------------------------------------ */

/* Push the function hook `name` resolves to for instance self: the site's
 * hooks[name] if the site defines it, else the spec's default. Raises if the
 * hook is not declared, or neither exists. */
static void push_hook(lua_State *L, int self, const char *name)
{
    self = lua_absindex(L, self);
    int top = lua_gettop(L);
    check_instance(L, self);          /* top+1: the module */
    lua_getfield(L, top + 1, "spec"); /* top+2 */
    lua_getfield(L, top + 2, "hooks"); /* top+3 */
    if (lua_type(L, top + 3) != LUA_TTABLE || lua_getfield(L, top + 3, name) != LUA_TTABLE) {
        instance_label(L, self);
        luaL_error(L, "%s: hook '%s' is not declared in the component's spec (hooks = {...})",
                   lua_tostring(L, -1), name);
    }
    /* top+4: the declaration */
    lua_getfield(L, self, "site"); /* top+5 */
    if (lua_type(L, top + 5) == LUA_TTABLE && lua_getfield(L, top + 5, "hooks") == LUA_TTABLE &&
        lua_getfield(L, top + 6, name) == LUA_TFUNCTION) {
        sbot_log(L, SBOT_DEBUG, "%s: hook %s: the site's", instance_label(L, self), name);
        lua_pop(L, 1);
    } else {
        lua_settop(L, top + 4);
        if (lua_getfield(L, top + 4, "default") != LUA_TFUNCTION) {
            instance_label(L, self);
            luaL_error(L, "%s: hook '%s': the site defines no hooks.%s and the component has "
                       "no default", lua_tostring(L, -1), name, name);
        }
    }
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

int sbot_component_hook(lua_State *L, int self, const char *name, int nargs)
{
    self = lua_absindex(L, self);
    luaL_checkstack(L, 8, "component hook");
    push_hook(L, self, name);
    lua_insert(L, -(nargs + 1));
    lua_call(L, nargs, 1);
    return 1;
}

/* c:hook(name, ...) -> what the hook returns */
static int m_hook(lua_State *L)
{
    const char *name = luaL_checkstring(L, 2);
    push_hook(L, 1, name);
    lua_replace(L, 2);
    lua_remove(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* ---- phases ---------------------------------------------------------------- */

/* Run the function below nargs args on the stack as phase `phase` of self:
 * record self.phases[phase]; on success leave the result on the stack and
 * return 1; on failure mark self failed, push nothing, return 0. */
static int run_phase(lua_State *L, int self, const char *phase, int nargs)
{
    char started[40], ended[40];
    self = lua_absindex(L, self);
    sbot_utc_iso(started, sizeof started);
    double t0 = mono_ms();
    int st = pcall_tb_keep(L, nargs);
    double ms = mono_ms() - t0;
    if (st != LUA_OK) /* a wait never outlives the phase that failed in it */
        sbot_progress_end(L, NULL);
    sbot_utc_iso(ended, sizeof ended);
    int res = lua_gettop(L);
    int interrupted = st != LUA_OK && is_interrupt(L, res);

    lua_createtable(L, 0, 7);
    int rec = lua_gettop(L);
    sbot_set_str(L, rec, "started", started);
    sbot_set_str(L, rec, "ended", ended);
    lua_pushinteger(L, (lua_Integer)floor(ms + 0.5));
    lua_setfield(L, rec, "ms");
    lua_pushboolean(L, st == LUA_OK);
    lua_setfield(L, rec, "ok");
    if (st != LUA_OK) {
        push_error_parts(L, res);
        lua_setfield(L, rec, "traceback");
        lua_pushvalue(L, -1);
        lua_setfield(L, rec, "error");
        mark_failed(L, self, phase, -1);
        lua_pop(L, 1);
    }
    lua_getfield(L, self, "phases");
    lua_pushvalue(L, rec);
    lua_setfield(L, -2, phase);
    lua_pop(L, 2); /* phases, rec */
    if (interrupted)
        lua_error(L); /* recorded; the run stops (execute closes first) */
    if (st != LUA_OK) {
        lua_pop(L, 1); /* the error */
        return 0;
    }
    lua_getfield(L, self, "status");
    if (strcmp(luaL_optstring(L, -1, "pending"), "failed") != 0)
        sbot_set_str(L, self, "status", "ok");
    lua_pop(L, 1);
    return 1;
}

static void record_skip(lua_State *L, int self, const char *phase, const char *reason)
{
    lua_getfield(L, self, "phases");
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "skipped");
    sbot_set_str(L, -1, "reason", reason);
    lua_setfield(L, -2, phase);
    lua_pop(L, 1);
}

/* The reason a phase cannot run because an earlier one failed, or NULL. */
static const char *earlier_failure(lua_State *L, int self, const char *phase)
{
    lua_getfield(L, self, "phases");
    const char *why = NULL;
    for (int i = 0; phase_names[i] && strcmp(phase_names[i], phase) != 0; i++) {
        lua_getfield(L, -1, phase_names[i]);
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_getfield(L, -1, "ok");
            int failed = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (failed)
                why = phase_names[i];
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return why;
}

/* A phase result must be a table (nil means an empty one). */
static int phase_result_table(lua_State *L)
{
    /* upvalue 1: function, upvalue 2: phase name; args: self */
    lua_settop(L, 1);
    push_resource(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    } else if (lua_type(L, -1) != LUA_TTABLE) {
        return luaL_error(L, "%s must return a table, returned %s",
                          lua_tostring(L, lua_upvalueindex(2)), luaL_typename(L, -1));
    }
    return 1;
}

/* Common shape of discover and housekeep: run spec[phase] into self[field]. */
static int simple_phase(lua_State *L, const char *phase, const char *field)
{
    check_instance(L, 1);
    lua_settop(L, 1);
    const char *why = earlier_failure(L, 1, phase);
    if (why) {
        lua_pushfstring(L, "%s failed", why);
        record_skip(L, 1, phase, lua_tostring(L, -1));
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (!push_spec_fn(L, 1, phase)) {
        lua_pop(L, 1);
        lua_newtable(L); /* an absent phase has nothing to report */
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, field);
        lua_getfield(L, 1, "status");
        if (strcmp(luaL_optstring(L, -1, "pending"), "pending") == 0)
            sbot_set_str(L, 1, "status", "ok");
        lua_pop(L, 1);
        return 1;
    }
    lua_pushstring(L, phase);
    lua_pushcclosure(L, phase_result_table, 2);
    lua_pushvalue(L, 1);
    if (!run_phase(L, 1, phase, 1)) {
        lua_pushnil(L);
        lua_getfield(L, 1, "error");
        return 2;
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, field);
    return 1;
}

static int m_discover(lua_State *L) { return simple_phase(L, "discover", "discovery"); }
static int m_housekeep(lua_State *L) { return simple_phase(L, "housekeep", "housekeeping"); }

/* ---- process: plan, then apply with rollback -------------------------------- */

static const char *const actions[] = {"create", "update", "delete", NULL};

/* Validate the plan on top of the stack and replace it with a copy marked
 * as a JSON array that is also callable (so c:plan() still re-plans after
 * c.plan holds the list). */
static void normalise_plan(lua_State *L)
{
    int src = lua_gettop(L);
    if (lua_isnil(L, src)) {
        lua_pop(L, 1);
        lua_newtable(L);
    } else if (lua_type(L, src) != LUA_TTABLE) {
        luaL_error(L, "plan must return a list of changes, returned %s", luaL_typename(L, src));
    }
    lua_Integer n = luaL_len(L, src);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, src, i) != LUA_TTABLE)
            luaL_error(L, "plan: change %d is a %s, expected a table {resource, action, before, "
                       "after, reason}", (int)i, luaL_typename(L, -1));
        if (lua_getfield(L, -1, "resource") != LUA_TSTRING)
            luaL_error(L, "plan: change %d: resource must be a string, got %s", (int)i,
                       luaL_typename(L, -1));
        lua_pop(L, 1);
        lua_getfield(L, -1, "action");
        const char *a = lua_tostring(L, -1);
        int known = 0;
        for (int k = 0; a && actions[k]; k++)
            known |= strcmp(a, actions[k]) == 0;
        if (!known)
            luaL_error(L, "plan: change %d: action must be create, update or delete, got %s",
                       (int)i, a ? a : luaL_typename(L, -1));
        lua_pop(L, 1);
        lua_rawseti(L, -2, i);
    }
    luaL_getmetatable(L, PLAN_MT_KEY);
    lua_setmetatable(L, -2);
    lua_remove(L, src);
}

static void push_change_record(lua_State *L, lua_Integer i, int change)
{
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, i);
    lua_setfield(L, -2, "index");
    lua_getfield(L, change, "resource");
    lua_setfield(L, -2, "resource");
    lua_getfield(L, change, "action");
    lua_setfield(L, -2, "action");
}

/* Undo changes applied[n..1] (records in processing.applied). Each undo's
 * outcome goes to processing.undone. */
static void rollback(lua_State *L, int self, int plan, int processing, lua_Integer napplied, int res)
{
    sbot_push_array(L);
    int undone = lua_gettop(L);
    lua_setfield(L, processing, "undone");
    lua_getfield(L, processing, "undone");
    for (lua_Integer i = napplied; i >= 1; i--) {
        lua_rawgeti(L, plan, i);
        int change = lua_gettop(L);
        push_change_record(L, i, change);
        int rec = lua_gettop(L);
        if (!push_spec_fn(L, self, "undo")) {
            lua_pop(L, 1);
            lua_pushboolean(L, 0);
            lua_setfield(L, rec, "ok");
            sbot_set_str(L, rec, "error", "the component defines no undo");
        } else {
            lua_pushvalue(L, self);
            lua_pushvalue(L, change);
            lua_pushvalue(L, res);
            double t0 = mono_ms();
            int st = pcall_tb(L, 3);
            lua_pushinteger(L, (lua_Integer)floor(mono_ms() - t0 + 0.5));
            lua_setfield(L, rec, "ms");
            lua_pushboolean(L, st == LUA_OK);
            lua_setfield(L, rec, "ok");
            if (st != LUA_OK) {
                push_error_parts(L, -1);
                lua_setfield(L, rec, "traceback");
                lua_setfield(L, rec, "error");
            } else if (!lua_isnil(L, -1)) {
                lua_pushvalue(L, -1);
                lua_setfield(L, rec, "result");
            }
            lua_pop(L, 1);
        }
        lua_rawseti(L, undone, napplied - i + 1);
        lua_pop(L, 1); /* change */
    }
    lua_pop(L, 1);
}

/* The body of the process phase, run protected by run_phase.
 * Args: self, mode ("apply"|"plan"), before (function or nil). */
static int process_body(lua_State *L)
{
    int self = 1;
    int apply = strcmp(luaL_checkstring(L, 2), "apply") == 0;
    if (lua_type(L, 3) == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        lua_pushvalue(L, self);
        lua_call(L, 1, 0);
    }
    lua_settop(L, 2);

    lua_createtable(L, 0, 4);
    int processing = lua_gettop(L);
    sbot_set_str(L, processing, "mode", apply ? "apply" : "plan");
    sbot_push_array(L);
    lua_setfield(L, processing, "applied");
    lua_pushvalue(L, processing);
    lua_setfield(L, self, "processing");

    lua_pushnil(L); /* the resource, opened when a phase function needs it */
    int res = lua_gettop(L);
    if (push_spec_fn(L, self, "plan")) {
        push_resource(L, self);
        lua_replace(L, res);
        lua_pushvalue(L, self);
        lua_pushvalue(L, res);
        lua_call(L, 2, 1);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    normalise_plan(L);
    int plan = lua_gettop(L);
    lua_pushvalue(L, plan);
    lua_setfield(L, self, "plan");
    lua_Integer n = luaL_len(L, plan);
    lua_pushinteger(L, n);
    lua_setfield(L, processing, "planned");
    if (!apply || n == 0) {
        lua_pushvalue(L, processing);
        return 1;
    }
    if (!push_spec_fn(L, self, "apply"))
        return luaL_error(L, "the plan has %d change(s) but the component defines no apply", (int)n);
    int apply_fn = lua_gettop(L);
    lua_getfield(L, processing, "applied");
    int applied = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, plan, i);
        int change = lua_gettop(L);
        push_change_record(L, i, change);
        int rec = lua_gettop(L);
        lua_pushvalue(L, apply_fn);
        lua_pushvalue(L, self);
        lua_pushvalue(L, change);
        lua_pushvalue(L, res);
        double t0 = mono_ms();
        int st = pcall_tb(L, 3);
        lua_pushinteger(L, (lua_Integer)floor(mono_ms() - t0 + 0.5));
        lua_setfield(L, rec, "ms");
        if (st != LUA_OK) {
            push_error_parts(L, -1); /* message, traceback */
            lua_createtable(L, 0, 5);
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "index");
            lua_getfield(L, change, "resource");
            lua_setfield(L, -2, "resource");
            lua_getfield(L, change, "action");
            lua_setfield(L, -2, "action");
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, "error");
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "traceback");
            lua_setfield(L, processing, "failed");
            rollback(L, self, plan, processing, i - 1, res);
            lua_getfield(L, change, "resource");
            lua_getfield(L, change, "action");
            return luaL_error(L, "change %d of %d (%s %s) failed: %s; %d applied change(s) undone",
                              (int)i, (int)n, lua_tostring(L, -1), lua_tostring(L, -2),
                              lua_tostring(L, -4), (int)(i - 1));
        }
        lua_pushboolean(L, 1);
        lua_setfield(L, rec, "ok");
        if (!lua_isnil(L, -1)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, rec, "result");
        }
        lua_pop(L, 1); /* result */
        lua_rawseti(L, applied, i);
        lua_pop(L, 1); /* change */
    }
    lua_pushvalue(L, processing);
    return 1;
}

/* c:process{mode = "apply"|"plan", before = fn} -> processing | nil, err */
static int m_process(lua_State *L)
{
    static const char *const modes[] = {"apply", "plan", NULL};
    check_instance(L, 1);
    lua_pop(L, 1);
    const char *mode = "apply";
    int before = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "mode");
        mode = modes[luaL_checkoption(L, -1, "apply", modes)];
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "before") == LUA_TFUNCTION)
            before = lua_gettop(L);
        else
            lua_pop(L, 1);
    }
    const char *why = earlier_failure(L, 1, "process");
    if (why) {
        lua_pushfstring(L, "%s failed", why);
        record_skip(L, 1, "process", lua_tostring(L, -1));
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    sbot_set_str(L, 1, "mode", mode);
    lua_pushcfunction(L, process_body);
    lua_pushvalue(L, 1);
    lua_pushstring(L, mode);
    if (before)
        lua_pushvalue(L, before);
    else
        lua_pushnil(L);
    if (!run_phase(L, 1, "process", 3)) {
        lua_pushnil(L);
        lua_getfield(L, 1, "error");
        return 2;
    }
    return 1;
}

/* c:plan() -> list of changes | nil, err: the process phase in plan mode. */
static int m_plan(lua_State *L)
{
    check_instance(L, 1);
    lua_settop(L, 1);
    lua_pushcfunction(L, m_process);
    lua_pushvalue(L, 1);
    lua_createtable(L, 0, 1);
    sbot_set_str(L, -1, "mode", "plan");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 2;
    lua_getfield(L, 1, "plan");
    return 1;
}

/* __call of a plan list: list(self) re-plans, so c:plan() keeps working. */
static int plan_call(lua_State *L)
{
    lua_remove(L, 1);
    return m_plan(L);
}

/* ---- results --------------------------------------------------------------- */

static void reset(lua_State *L, int self)
{
    static const char *const fields[] = {"discovery", "plan", "processing", "housekeeping",
                                         "error", "mode", NULL};
    for (int i = 0; fields[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, self, fields[i]);
    }
    lua_newtable(L);
    lua_setfield(L, self, "phases");
    lua_newtable(L); /* a failed or skipped component still has a discovery table */
    lua_setfield(L, self, "discovery");
    sbot_push_array(L);
    lua_setfield(L, self, "artifacts");
    sbot_set_str(L, self, "status", "pending");
}

/* c:results() -> the uniform, JSON-serialisable results table */
static int m_results(lua_State *L)
{
    static const char *const fields[] = {"component", "id", "step", "status", "mode", "error",
                                         "phases", "discovery", "plan", "processing",
                                         "housekeeping", "artifacts", NULL};
    check_instance(L, 1);
    lua_settop(L, 1);
    lua_createtable(L, 0, 12);
    for (int i = 0; fields[i]; i++) {
        lua_pushstring(L, fields[i]);
        lua_rawget(L, 1); /* raw: "plan" must not find the method */
        lua_setfield(L, -2, fields[i]);
    }
    return 1;
}

/* Push a copy of the value at idx whose string values are redacted (keys
 * and metatables kept: keys are structure, a metatable marks a JSON array or
 * a secret). seen maps tables already copied to their copy (cycles). */
static void push_redacted_copy(lua_State *L, int idx, int seen, int depth)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        sbot_log_push_redacted(L, s, len);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || sbot_is_secret(L, idx)) {
        lua_pushvalue(L, idx);
        return;
    }
    if (depth > 200)
        luaL_error(L, "to_json: results nested deeper than 200 tables");
    luaL_checkstack(L, 8, "to_json");
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, out);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_redacted_copy(L, -2, seen, depth + 1);
        lua_rawset(L, out);
        lua_pop(L, 1);
    }
    if (lua_getmetatable(L, idx))
        lua_setmetatable(L, out);
}

/* c:to_json([{indent = true}]): results are records, so json.encode is
 * always asked to redact secret objects; the only option is indent. */
static int m_to_json(lua_State *L)
{
    check_instance(L, 1);
    lua_pop(L, 1); /* the module check_instance pushed */
    lua_settop(L, 2);
    int indent = 0;
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "indent") != 0)
                return luaL_error(L, "to_json: unknown option '%s' (expected indent): results are "
                                     "records, their secrets are always redacted",
                                  luaL_tolstring(L, -1, NULL));
        }
        lua_getfield(L, 2, "indent");
        indent = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_createtable(L, 0, 2); /* the options json.encode gets */
    if (indent) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "indent");
    }
    sbot_set_str(L, -1, "secrets", "redact");
    lua_replace(L, 2);
    push_collaborator(L, "encode");
    lua_pushcfunction(L, m_results);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    /* every string value that holds a registered secret (a value read back
     * from a device) is redacted before it is encoded: after encoding, a
     * secret with a '"' or '\' would be escaped and no longer match */
    lua_newtable(L);
    push_redacted_copy(L, -2, lua_gettop(L), 0);
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

/* The phases of execute, in lifecycle order, run protected by m_execute so
 * that the resource is closed whatever happens.
 * Args: self, want (int[3] as light userdata), mode, before_process. */
static int execute_body(lua_State *L)
{
    const int *want = lua_touserdata(L, 2);
    const char *mode = lua_tostring(L, 3);
    for (int k = 0; phase_names[k]; k++) {
        int top = lua_gettop(L);
        if (!want[k])
            continue;
        if (k == 2 && strcmp(mode, "plan") == 0) {
            record_skip(L, 1, "housekeep", "plan mode");
            continue;
        }
        if (k == 1) {
            lua_pushcfunction(L, m_process);
            lua_pushvalue(L, 1);
            lua_createtable(L, 0, 2);
            sbot_set_str(L, -1, "mode", mode);
            lua_pushvalue(L, 4);
            lua_setfield(L, -2, "before");
            lua_call(L, 2, 2);
        } else {
            lua_pushcfunction(L, k == 0 ? m_discover : m_housekeep);
            lua_pushvalue(L, 1);
            lua_call(L, 1, 2);
        }
        lua_settop(L, top);
    }
    return 0;
}

/* Close self's resource if one is open and record it as phases.close; a
 * failure to close fails the component (a leaked session is a real problem
 * on a BMC) unless it failed already. */
static void record_close(lua_State *L, int self)
{
    char started[40], ended[40];
    self = lua_absindex(L, self);
    sbot_utc_iso(started, sizeof started);
    double t0 = mono_ms();
    int st = close_resource(L, self);
    if (st < 0)
        return;
    double ms = mono_ms() - t0;
    sbot_utc_iso(ended, sizeof ended);
    lua_createtable(L, 0, 5);
    int rec = lua_gettop(L);
    sbot_set_str(L, rec, "started", started);
    sbot_set_str(L, rec, "ended", ended);
    lua_pushinteger(L, (lua_Integer)floor(ms + 0.5));
    lua_setfield(L, rec, "ms");
    lua_pushboolean(L, st == LUA_OK);
    lua_setfield(L, rec, "ok");
    if (st != LUA_OK) {
        lua_pushvalue(L, rec - 1);
        lua_setfield(L, rec, "error");
        lua_getfield(L, self, "status");
        int failed = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "failed") == 0;
        lua_pop(L, 1);
        if (!failed)
            mark_failed(L, self, "close", rec - 1);
    }
    lua_getfield(L, self, "phases");
    lua_pushvalue(L, rec);
    lua_setfield(L, -2, "close");
    lua_pop(L, 2);
    if (st != LUA_OK)
        lua_pop(L, 1);
}

/* c:execute{phases = {...}, mode = "apply"|"plan", strict = bool, before_process = fn} */
static int m_execute(lua_State *L)
{
    static const char *const modes[] = {"apply", "plan", NULL};
    check_instance(L, 1);
    lua_pop(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    int want[3] = {1, 1, 1};
    if (lua_getfield(L, 2, "phases") != LUA_TNIL) {
        luaL_argcheck(L, lua_type(L, -1) == LUA_TTABLE, 2, "phases must be a list of phase names");
        want[0] = want[1] = want[2] = 0;
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *p = lua_tostring(L, -1);
            int k = 0;
            while (phase_names[k] && (!p || strcmp(p, phase_names[k]) != 0))
                k++;
            if (!phase_names[k])
                return luaL_error(L, "execute: unknown phase '%s' (expected discover, process or "
                                  "housekeep)", p ? p : luaL_typename(L, -1));
            want[k] = 1;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "mode");
    const char *mode = modes[luaL_checkoption(L, -1, "apply", modes)];
    lua_pop(L, 1);
    lua_getfield(L, 2, "strict");
    int strict = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "before_process"); /* index 3 */

    reset(L, 1);
    sbot_set_str(L, 1, "mode", mode);
    lua_pushcfunction(L, execute_body);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, want);
    lua_pushstring(L, mode);
    lua_pushvalue(L, 3);
    int st = lua_pcall(L, 4, 0, 0);
    /* the resource is closed whatever happened, also when Ctrl-C or a stop
     * request unwinds the phases; then that error goes on */
    record_close(L, 1);
    if (st != LUA_OK)
        lua_error(L);
    lua_getfield(L, 1, "status");
    if (strcmp(lua_tostring(L, -1), "pending") == 0)
        sbot_set_str(L, 1, "status", "skipped");
    else if (strict && strcmp(lua_tostring(L, -1), "failed") == 0) {
        instance_label(L, 1);
        lua_getfield(L, 1, "error");
        return luaL_error(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, m_results);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* c:artifact{key, file | content, type, metadata}: delegated to the
 * record_artifact collaborator (sbot.artifact.record). */
static int m_artifact(lua_State *L)
{
    check_instance(L, 1);
    lua_pop(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    push_collaborator(L, "record_artifact");
    lua_insert(L, 1);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L);
}

static int m_tostring(lua_State *L)
{
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "component");
    lua_getfield(L, 1, "id");
    lua_pushfstring(L, "sbot.component.%s(%s, %s)", luaL_optstring(L, -2, "?"),
                    luaL_optstring(L, -1, "?"), luaL_optstring(L, -3, "?"));
    return 1;
}

/* ---- define / new ---------------------------------------------------------- */

/* Module.new(config [, opts]) -> instance | nil, err, "invalid" (docs/errors.md:
 * a config that does not validate is input not in the format new reads)
 * opts: {id = "r630-01", step = "boot_disk", artifact_dir = dir, site = site, server = server}.
 * Upvalues: 1 module, 2 instance metatable. */
static int l_new(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_isnil(L, 1)) {
        lua_newtable(L);
        lua_replace(L, 1);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, lua_upvalueindex(1), "name");
    const char *name = lua_tostring(L, -1);
    int name_idx = lua_gettop(L);

    lua_getfield(L, lua_upvalueindex(1), "schema");
    if (lua_istable(L, -1)) {
        push_collaborator(L, "validate");
        lua_insert(L, -2);
        lua_pushvalue(L, 1);
        lua_pushfstring(L, "component %s config", name);
        lua_call(L, 3, 2);
        if (lua_isnil(L, -2)) {
            lua_pushliteral(L, "invalid");
            return 3;
        }
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
        lua_pushvalue(L, 1);
    }
    int config = lua_gettop(L);

    lua_createtable(L, 0, 16);
    int self = lua_gettop(L);
    lua_pushvalue(L, name_idx);
    lua_setfield(L, self, "component");
    lua_pushvalue(L, config);
    lua_setfield(L, self, "config");
    lua_pushvalue(L, name_idx);
    if (lua_istable(L, 2)) {
        static const char *const opt_fields[] = {"artifact_dir", "site", "server", NULL};
        if (lua_getfield(L, 2, "step") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "%s.new: opts.step must be a string", name);
        lua_setfield(L, self, "step");
        if (lua_getfield(L, 2, "id") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "%s.new: opts.id must be a string", name);
            lua_replace(L, -2);
        } else {
            lua_pop(L, 1);
        }
        for (int i = 0; opt_fields[i]; i++) {
            lua_getfield(L, 2, opt_fields[i]);
            lua_setfield(L, self, opt_fields[i]);
        }
    }
    lua_setfield(L, self, "id");
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, self);
    reset(L, self);
    return 1;
}

static int is_identifier(const char *s)
{
    if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return 0;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static void ensure_metatables(lua_State *L)
{
    if (luaL_newmetatable(L, PLAN_MT_KEY)) {
        lua_pushliteral(L, SBOT_JSON_ARRAY_MT); /* encodes as a JSON array */
        lua_setfield(L, -2, "__name");
        lua_pushcfunction(L, plan_call);
        lua_setfield(L, -2, "__call");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY) != LUA_TTABLE) {
        static const luaL_Reg methods[] = {
            {"discover", m_discover}, {"plan", m_plan},       {"process", m_process},
            {"housekeep", m_housekeep}, {"execute", m_execute}, {"results", m_results},
            {"to_json", m_to_json},   {"artifact", m_artifact}, {"close", m_close},
            {"hook", m_hook},         {NULL, NULL}};
        lua_pop(L, 1);
        luaL_newlib(L, methods);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
    }
    lua_pop(L, 1);
}

/* spec.hooks: {name = {description = "...", default = function}}; raises on
 * a bad declaration, naming the component and the hook. */
static void check_hooks(lua_State *L, int spec, const char *name)
{
    int t = lua_getfield(L, spec, "hooks");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "component.define %s: hooks must be a table {name = {description, "
                   "default}}, got %s", name, lua_typename(L, t));
    int hooks = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, hooks)) {
        const char *h = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!is_identifier(h))
            luaL_error(L, "component.define %s: hooks: a hook name must be an identifier, got %s",
                       name, h ? h : luaL_typename(L, -2));
        if (lua_type(L, -1) != LUA_TTABLE)
            luaL_error(L, "component.define %s: hooks.%s must be a table {description = "
                       "string, default = function}, got %s", name, h, luaL_typename(L, -1));
        int decl = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, decl)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (!k || (strcmp(k, "description") != 0 && strcmp(k, "default") != 0))
                luaL_error(L, "component.define %s: hooks.%s: unknown field '%s' (expected "
                           "description, default)", name, h, k ? k : luaL_typename(L, -2));
            lua_pop(L, 1);
        }
        if (lua_getfield(L, decl, "description") != LUA_TSTRING)
            luaL_error(L, "component.define %s: hooks.%s.description must be a string (it is "
                       "what `sbot help component` shows)", name, h);
        int d = lua_getfield(L, decl, "default");
        if (d != LUA_TNIL && d != LUA_TFUNCTION)
            luaL_error(L, "component.define %s: hooks.%s.default must be a function, got %s",
                       name, h, lua_typename(L, d));
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
}

int sbot_component_define(lua_State *L, int spec)
{
    spec = lua_absindex(L, spec);
    luaL_checktype(L, spec, LUA_TTABLE);
    ensure_metatables(L);
    lua_getfield(L, spec, "name");
    const char *name = lua_tostring(L, -1);
    if (!is_identifier(name))
        return luaL_error(L, "component.define: name must be an identifier (letters, digits, _), "
                          "got %s", name ? name : luaL_typename(L, -1));
    int name_idx = lua_gettop(L);
    for (int i = 0; spec_functions[i]; i++) {
        int t = lua_getfield(L, spec, spec_functions[i]);
        if (t != LUA_TNIL && t != LUA_TFUNCTION)
            return luaL_error(L, "component.define %s: %s must be a function, got %s", name,
                              spec_functions[i], lua_typename(L, t));
        lua_pop(L, 1);
    }
    lua_getfield(L, spec, "plan");
    lua_getfield(L, spec, "apply");
    if (!lua_isnil(L, -2) && lua_isnil(L, -1))
        return luaL_error(L, "component.define %s: a component with plan needs apply", name);
    lua_pop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, spec)) {
        static const char *const known[] = {"name", "description", "schema", "open",
                                            "discover", "plan", "apply", "undo", "housekeep",
                                            "hooks", NULL};
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int ok = 0;
        for (int i = 0; k && known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            return luaL_error(L, "component.define %s: unknown field '%s' (expected name, "
                              "description, schema, open, discover, plan, apply, undo, "
                              "housekeep, hooks)", name, k ? k : luaL_typename(L, -2));
        lua_pop(L, 1);
    }
    check_hooks(L, spec, name);
    int st = lua_getfield(L, spec, "description");
    if (st != LUA_TNIL && st != LUA_TSTRING)
        return luaL_error(L, "component.define %s: description must be a string", name);
    int description = lua_gettop(L);
    if (lua_getfield(L, spec, "schema") != LUA_TNIL) {
        push_collaborator(L, "check");
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    }
    int schema = lua_gettop(L);

    /* the module */
    lua_createtable(L, 0, 6);
    int mod = lua_gettop(L);
    lua_getfield(L, spec, "hooks");
    lua_setfield(L, mod, "hooks");
    lua_pushvalue(L, name_idx);
    lua_setfield(L, mod, "name");
    lua_pushvalue(L, description);
    lua_setfield(L, mod, "description");
    lua_pushvalue(L, schema);
    lua_setfield(L, mod, "schema");
    lua_pushvalue(L, spec);
    lua_setfield(L, mod, "spec");

    /* the instances' metatable */
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, INSTANCE_NAME);
    lua_setfield(L, -2, "__name");
    lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, m_gc_close);
    lua_setfield(L, -2, "__close");
    lua_pushvalue(L, mod);
    lua_setfield(L, -2, "module");
    int imt = lua_gettop(L);

    lua_pushvalue(L, mod);
    lua_pushvalue(L, imt);
    lua_pushcclosure(L, l_new, 2);
    lua_setfield(L, mod, "new");
    lua_pop(L, 1); /* imt */

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushfstring(L, "sbot.component.%s", name);
    lua_pushvalue(L, mod);
    lua_settable(L, -3);
    lua_pop(L, 1);
    sbot_log(L, SBOT_DEBUG, "component %s defined", name);
    lua_replace(L, name_idx);
    lua_settop(L, name_idx);
    return 1;
}

static int l_define(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    return sbot_component_define(L, 1);
}

/* component.is_instance(v) -> boolean */
static int l_is_instance(lua_State *L)
{
    int ok = 0;
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
        lua_getfield(L, -1, "__name");
        ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), INSTANCE_NAME) == 0;
    }
    lua_pushboolean(L, ok);
    return 1;
}

/* component.loaded() -> sorted list of the names of components defined so far */
static int l_loaded(lua_State *L)
{
    lua_newtable(L);
    int out = lua_gettop(L);
    int n = 0;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE &&
            strncmp(lua_tostring(L, -2), "sbot.component.", 15) == 0) {
            lua_pushstring(L, lua_tostring(L, -2) + 15);
            lua_rawseti(L, out, ++n);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, out);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

/* component.path() -> list of the directories require "sbot.component.X"
 * searches for X.lua ($SBOT_COMPONENT_PATH, then the tree's components/ or
 * the installed share/sbot/components) */
static int l_path(lua_State *L)
{
    sbot_push_component_path(L);
    return 1;
}

int luaopen_sbot_lifecycle(lua_State *L)
{
    static const luaL_Reg fns[] = {{"define", l_define},           {"is_instance", l_is_instance},
                                   {"loaded", l_loaded},           {"path", l_path},
                                   {"configure", l_configure},     {NULL, NULL}};
    ensure_metatables(L);
    luaL_newlib(L, fns);
    lua_newtable(L);
    for (int i = 0; phase_names[i]; i++) {
        lua_pushstring(L, phase_names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "PHASES");
    return 1;
}
