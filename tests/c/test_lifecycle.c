/* cmocka tests for lifecycle.c: a component written in C goes through the
 * same machinery as a Lua one (sbot_component_define), with rollback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sbot.h"

/* The C component's "device" is a Lua table in the instance's config:
 * config.device[resource] = value. config.fail names a resource whose apply
 * fails. Calls are appended to config.calls. */
static void note(lua_State *L, const char *what)
{
    lua_getfield(L, 1, "config");
    lua_getfield(L, -1, "calls");
    lua_pushstring(L, what);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

/* The resource: a userdata whose __close notes "close" in the calls list it
 * keeps as its user value. */
#define RES_MT "test_lifecycle.session"

static int res_close(lua_State *L)
{
    int *open = luaL_checkudata(L, 1, RES_MT);
    if (*open) {
        *open = 0;
        lua_getiuservalue(L, 1, 1);
        lua_pushliteral(L, "close");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    return 0;
}

static int c_open(lua_State *L)
{
    note(L, "open");
    int *open = lua_newuserdatauv(L, sizeof *open, 1);
    *open = 1;
    if (luaL_newmetatable(L, RES_MT)) {
        lua_pushcfunction(L, res_close);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    lua_getfield(L, 1, "config");
    lua_getfield(L, -1, "calls");
    lua_setiuservalue(L, -3, 1);
    lua_pop(L, 1);
    return 1;
}

/* Every phase gets the resource as its last argument (index nargs). */
static void check_resource(lua_State *L, int nargs)
{
    if (lua_gettop(L) != nargs || !luaL_testudata(L, nargs, RES_MT))
        luaL_error(L, "phase got %d argument(s), the last not the resource", lua_gettop(L));
}

/* The default of the hook "pick": returns its argument with a suffix. */
static int c_pick_default(lua_State *L)
{
    lua_pushfstring(L, "%s (default)", luaL_checkstring(L, 1));
    return 1;
}

static int c_discover(lua_State *L)
{
    check_resource(L, 2);
    note(L, "discover");
    lua_newtable(L);
    lua_getfield(L, 1, "config");
    lua_getfield(L, -1, "device");
    lua_setfield(L, -3, "device");
    lua_pop(L, 1);
    return 1;
}

static int c_plan(lua_State *L)
{
    check_resource(L, 2);
    note(L, "plan");
    /* a site decision through the component's declared hook */
    lua_pushliteral(L, "x");
    sbot_component_hook(L, 1, "pick", 1);
    note(L, lua_pushfstring(L, "pick %s", lua_tostring(L, -1)));
    lua_pop(L, 2);
    lua_newtable(L);
    static const char *const keys[] = {"x", "y", NULL};
    for (int i = 0; keys[i]; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, keys[i]);
        lua_setfield(L, -2, "resource");
        lua_pushliteral(L, "create");
        lua_setfield(L, -2, "action");
        lua_pushinteger(L, i + 1);
        lua_setfield(L, -2, "after");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int c_apply(lua_State *L)
{
    check_resource(L, 3);
    lua_getfield(L, 2, "resource");
    const char *r = lua_tostring(L, -1);
    note(L, lua_pushfstring(L, "apply %s", r));
    lua_getfield(L, 1, "config");
    lua_getfield(L, -1, "fail");
    if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), r) == 0)
        return luaL_error(L, "device rejected %s", r);
    lua_getfield(L, -2, "device");
    lua_getfield(L, 2, "after");
    lua_setfield(L, -2, r);
    return 0;
}

static int c_undo(lua_State *L)
{
    check_resource(L, 3);
    lua_getfield(L, 2, "resource");
    const char *r = lua_tostring(L, -1);
    note(L, lua_pushfstring(L, "undo %s", r));
    lua_getfield(L, 1, "config");
    lua_getfield(L, -1, "device");
    lua_pushnil(L);
    lua_setfield(L, -2, r);
    return 0;
}

static int c_housekeep(lua_State *L)
{
    check_resource(L, 2);
    note(L, "housekeep");
    lua_newtable(L);
    return 1;
}

static lua_State *define_c_component(void)
{
    lua_State *L = sbot_runtime_new();
    assert_non_null(L);
    lua_newtable(L);
    lua_pushliteral(L, "c_test");
    lua_setfield(L, -2, "name");
    lua_pushcfunction(L, c_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, c_discover);
    lua_setfield(L, -2, "discover");
    lua_pushcfunction(L, c_plan);
    lua_setfield(L, -2, "plan");
    lua_pushcfunction(L, c_apply);
    lua_setfield(L, -2, "apply");
    lua_pushcfunction(L, c_undo);
    lua_setfield(L, -2, "undo");
    lua_pushcfunction(L, c_housekeep);
    lua_setfield(L, -2, "housekeep");
    lua_newtable(L); /* hooks */
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "pick a value");
    lua_setfield(L, -2, "description");
    lua_pushcfunction(L, c_pick_default);
    lua_setfield(L, -2, "default");
    lua_setfield(L, -2, "pick");
    lua_setfield(L, -2, "hooks");
    sbot_component_define(L, -1);
    lua_pop(L, 2);
    return L;
}

/* Run Lua code that returns one string; compare it. */
static void expect(lua_State *L, const char *code, const char *want)
{
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    assert_string_equal(lua_tostring(L, -1), want);
    lua_pop(L, 1);
}

static void c_component_runs_all_phases(void **state)
{
    (void)state;
    lua_State *L = define_c_component();
    expect(L,
           "local M = require 'sbot.component.c_test'\n"
           "local calls, dev = {}, {}\n"
           "local c = assert(M.new({calls = calls, device = dev}, {id = 'n1'}))\n"
           "local r = c:execute()\n"
           "return r.status .. ' ' .. table.concat(calls, ',') .. ' ' .. dev.x .. dev.y\n"
           "  .. ' ' .. tostring(r.phases.close.ok) .. ' ' .. tostring(c.resource)",
           "ok open,discover,plan,pick x (default),apply x,apply y,housekeep,close 12 true nil");
    /* the site's hook wins over the default */
    expect(L,
           "local M = require 'sbot.component.c_test'\n"
           "local calls = {}\n"
           "local site = {hooks = {pick = function(v) return v .. ' (site)' end}}\n"
           "local r = assert(M.new({calls = calls, device = {}}, {site = site})):execute{mode = 'plan'}\n"
           "return r.status .. ' ' .. table.concat(calls, ',')",
           "ok open,discover,plan,pick x (site),close");
    lua_close(L);
}

static void c_component_rolls_back(void **state)
{
    (void)state;
    lua_State *L = define_c_component();
    expect(L,
           "local M = require 'sbot.component.c_test'\n"
           "local calls, dev = {}, {}\n"
           "local c = assert(M.new({calls = calls, device = dev, fail = 'y'}))\n"
           "local r = c:execute()\n"
           "return r.status .. ' ' .. table.concat(calls, ',') .. ' ' .. tostring(dev.x)\n"
           "  .. ' ' .. r.processing.undone[1].resource .. ' ' .. r.error",
           "failed open,discover,plan,pick x (default),apply x,apply y,undo x,close nil x process: "
           "change 2 of 2 (create y) failed: device rejected y; 1 applied change(s) undone");
    expect(L,
           "local M = require 'sbot.component.c_test'\n"
           "local calls = {}\n"
           "local r = assert(M.new({calls = calls, device = {}})):execute{mode = 'plan'}\n"
           "return #r.plan .. ' ' .. table.concat(calls, ',')",
           "2 open,discover,plan,pick x (default),close");
    lua_close(L);
}

/* Ctrl-C / a stop request inside a C phase: the resource is closed, then the
 * interruption goes on. */
static void c_component_closes_on_interrupt(void **state)
{
    (void)state;
    lua_State *L = define_c_component();
    expect(L,
           "local M = require 'sbot.component.c_test'\n"
           "local calls = {}\n"
           "local site = {hooks = {pick = function() error('interrupted!') end}}\n"
           "local c = assert(M.new({calls = calls, device = {}}, {site = site}))\n"
           "local ok, err = pcall(c.execute, c)\n"
           "return tostring(ok) .. ' ' .. tostring(err:find('interrupted!', 1, true) ~= nil) .. ' '\n"
           "  .. table.concat(calls, ',') .. ' ' .. c:results().status",
           "false true open,discover,plan,close failed");
    lua_close(L);
}

static void bad_spec_raises(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    assert_int_not_equal(luaL_dostring(L, "require 'sbot.component'.define{name = 'x', apply = 5}"),
                         LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1),
                           ": component.define x: apply must be a function, got number"));
    lua_close(L);
}

/* A C component with a schema, defined from C (sbot_component_define) in a
 * state nothing wired: the core requires no Lua module, so it says what is
 * missing instead of reaching up for sbot.schema. */
static int define_with_schema(lua_State *L)
{
    lua_newtable(L);
    lua_pushliteral(L, "c_schema");
    lua_setfield(L, -2, "name");
    luaL_dostring(L, "return {size = {type = 'integer', default = 4}}");
    lua_setfield(L, -2, "schema");
    sbot_component_define(L, -1);
    return 1;
}

static void c_component_needs_the_collaborators(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    lua_pushcfunction(L, define_with_schema);
    assert_int_not_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
    assert_string_equal(lua_tostring(L, -1),
                        "sbot.component: the lifecycle has no 'check' (the function that checks a "
                        "component's schema, sbot.schema.check): require \"sbot.component\" first, which "
                        "hands the lifecycle its collaborators (sbot.lifecycle.configure)");
    lua_pop(L, 1);
    /* wired by sbot.component, the same definition works */
    assert_int_equal(luaL_dostring(L, "require 'sbot.component'"), LUA_OK);
    lua_pushcfunction(L, define_with_schema);
    assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
    lua_pop(L, 1);
    expect(L, "return tostring(assert(require('sbot.component.c_schema').new({})).config.size)", "4");
    lua_close(L);
}

/* The core alone, nothing configured: a component without a schema runs
 * every phase; the first use of a collaborator (an artifact, results as
 * JSON) is an error that names it and says what to do, and nothing reached
 * for sbot.schema, sbot.artifact or sbot.json meanwhile. */
static void lifecycle_without_collaborators(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    expect(L,
           "local lc = require 'sbot.lifecycle'\n"
           "local calls = {}\n"
           "local M = lc.define { name = 'bare',\n"
           "  discover = function(self) calls[#calls + 1] = 'discover'; return { n = 1 } end,\n"
           "  plan = function(self) calls[#calls + 1] = 'plan'\n"
           "    return { { resource = 'x', action = 'create' } } end,\n"
           "  apply = function(self, ch) calls[#calls + 1] = 'apply ' .. ch.resource end,\n"
           "  housekeep = function(self) calls[#calls + 1] = 'housekeep'; return {} end }\n"
           "local r = assert(M.new({})):execute()\n"
           "local loaded = {}\n"
           "for _, m in ipairs { 'sbot.schema', 'sbot.artifact', 'sbot.json', 'sbot.component' } do\n"
           "  if package.loaded[m] then loaded[#loaded + 1] = m end end\n"
           "return r.status .. ' ' .. r.discovery.n .. ' ' .. table.concat(calls, ',') .. ' ['\n"
           "  .. table.concat(loaded, ',') .. ']'",
           "ok 1 discover,plan,apply x,housekeep []");
    /* c:to_json() needs encode: raised, as misuse */
    int rc = luaL_dostring(L, "local c = assert(require('sbot.component.bare').new({}))\n"
                              "c:execute { phases = { 'discover' } }\n"
                              "return c:to_json()");
    assert_int_not_equal(rc, LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1),
                           "sbot.component: the lifecycle has no 'encode' (the function that encodes "
                           "results as JSON, sbot.json.encode): require \"sbot.component\" first, which "
                           "hands the lifecycle its collaborators (sbot.lifecycle.configure)"));
    lua_pop(L, 1);
    /* self:artifact in a phase needs record_artifact: that phase fails with it */
    expect(L,
           "local M = require 'sbot.lifecycle'.define { name = 'bare_artifact',\n"
           "  discover = function(self) self:artifact { key = 'a.txt', content = 'x' }; return {} end }\n"
           "local r = assert(M.new({})):execute()\n"
           "return r.status .. ' | ' .. (r.error:gsub('^discover: %[string .-%]:%d+: ', 'discover: '))",
           "failed | discover: "
           "sbot.component: the lifecycle has no 'record_artifact' (the function that records an "
           "artifact, sbot.artifact.record): require \"sbot.component\" first, which hands the "
           "lifecycle its collaborators (sbot.lifecycle.configure)");
    lua_close(L);
}

/* The core with collaborators a test hands in: it uses them and loads none
 * of sbot.schema, sbot.artifact, sbot.json. */
static void collaborators_are_injected(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    expect(L,
           "local lc = require 'sbot.lifecycle'\n"
           "local seen = {}\n"
           "lc.configure {\n"
           "  check = function(spec) seen[#seen + 1] = 'check' end,\n"
           "  validate = function(spec, config, where) seen[#seen + 1] = 'validate ' .. where\n"
           "    return { size = config.size or 7 } end,\n"
           "  record_artifact = function(self, a) seen[#seen + 1] = 'artifact ' .. a.key; return { key = a.key } end,\n"
           "  encode = function(v, o) seen[#seen + 1] = 'encode ' .. o.secrets; return 'json' end }\n"
           "local M = lc.define { name = 'fake_wired', schema = { size = { type = 'integer' } },\n"
           "  discover = function(self) self:artifact { key = 'a.txt', content = 'x' }; return {} end }\n"
           "local c = assert(M.new({}))\n"
           "c:execute { phases = { 'discover' } }\n"
           "local text = c:to_json()\n"
           "seen[#seen + 1] = text .. ' ' .. c.config.size\n"
           "for _, m in ipairs { 'sbot.schema', 'sbot.artifact', 'sbot.json', 'sbot.component' } do\n"
           "  if package.loaded[m] then seen[#seen + 1] = m .. ' loaded' end end\n"
           "return table.concat(seen, ', ')",
           "check, validate component fake_wired config, artifact a.txt, encode redact, json 7");
    /* misuse names the key */
    assert_int_not_equal(luaL_dostring(L, "require 'sbot.lifecycle'.configure { encode = print, chek = print }"),
                         LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "lifecycle.configure: unknown collaborator 'chek' (expected "
                                                "validate, check, record_artifact, encode)"));
    lua_pop(L, 1);
    assert_int_not_equal(luaL_dostring(L, "require 'sbot.lifecycle'.configure { encode = print }"), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "lifecycle.configure: 'validate' must be a function (the one "
                                                "that validates a config against a component's schema, "
                                                "sbot.schema.validate), got nil"));
    lua_close(L);
}

/* A C component required first thing in a fresh state: the runtime wires
 * the lifecycle before opening it. */
static void c_component_required_alone(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    expect(L,
           "local S3 = require 'sbot.component.s3'\n"
           "return S3.name .. ' ' .. tostring(require 'sbot.component' == require 'sbot.lifecycle')",
           "s3 true");
    lua_close(L);
}

int main(void)
{
    /* the Lua library (sbot.json, sbot.schema) from the source tree: this
     * binary is not the one the runtime recognises as the build's sbot */
    setenv("SBOT_LUA_DIR", SBOT_SOURCE_DIR "/lua", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(c_component_runs_all_phases),
        cmocka_unit_test(c_component_rolls_back),
        cmocka_unit_test(c_component_closes_on_interrupt),
        cmocka_unit_test(bad_spec_raises),
        cmocka_unit_test(c_component_needs_the_collaborators),
        cmocka_unit_test(lifecycle_without_collaborators),
        cmocka_unit_test(collaborators_are_injected),
        cmocka_unit_test(c_component_required_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
