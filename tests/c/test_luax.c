/* cmocka tests for the components' shared table helpers (engine/luax.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "luax.h"
#include "sbot.h"

/* A number field's text outlives the call: it is anchored, not left on a
 * popped stack slot for the collector (under ASan a freed string is a
 * use-after-free here; without it, other strings reuse the memory). */
static void tostr_number_survives_gc(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, 1234567);
    lua_setfield(L, -2, "n");
    lua_pushstring(L, "text");
    lua_setfield(L, -2, "s");
    const char *n = sbot_field_tostr(L, -1, "n");
    const char *s = sbot_field_tostr(L, -1, "s");
    assert_non_null(n);
    assert_string_equal(s, "text");
    for (int i = 0; i < 200; i++) {
        lua_pushfstring(L, "filler %d %d", i, i * 7);
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT);
    }
    assert_string_equal(n, "1234567");
    assert_null(sbot_field_tostr(L, -1, "missing"));
    assert_int_equal(lua_gettop(L), 1);
    lua_close(L);
}

static void field_readers(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, 5);
    lua_setfield(L, -2, "n");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "b");
    assert_null(sbot_field_str(L, -1, "n"));
    assert_int_equal(sbot_field_bool(L, -1, "b", 0), 1);
    assert_int_equal(sbot_field_bool(L, -1, "n", 0), 0);
    assert_true(sbot_field_num(L, -1, "n", 0) == 5);
    assert_true(sbot_field_num(L, -1, "b", -1) == -1);
    assert_int_equal(lua_gettop(L), 1);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tostr_number_survives_gc),
        cmocka_unit_test(field_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
