/* cmocka tests for log.c: redaction and the JSON line sink. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbot.h"

static void redacts_every_registered_secret(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    assert_non_null(L);
    sbot_log_add_secret(L, "hunter2", 7);
    sbot_log_add_secret(L, "hunter2-longer", 14);
    const char *in = "a=hunter2 b=hunter2-longer c=hunter";
    sbot_log_push_redacted(L, in, strlen(in));
    assert_string_equal(lua_tostring(L, -1), "a=<redacted> b=<redacted> c=hunter");
    lua_close(L);
}

static void redacting_twice_changes_nothing(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    sbot_log_add_secret(L, "a", 1);
    sbot_log_add_secret(L, "ted", 3);
    const char *in = "plan: a table";
    sbot_log_push_redacted(L, in, strlen(in));
    assert_string_equal(lua_tostring(L, -1), "pl<redacted>n: <redacted> t<redacted>ble");
    const char *once = lua_tostring(L, -1);
    sbot_log_push_redacted(L, once, strlen(once));
    assert_string_equal(lua_tostring(L, -1), "pl<redacted>n: <redacted> t<redacted>ble");
    lua_close(L);
}

static void empty_secret_is_ignored(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    sbot_log_add_secret(L, "", 0);
    sbot_log_push_redacted(L, "abc", 3);
    assert_string_equal(lua_tostring(L, -1), "abc");
    lua_close(L);
}

static void file_sink_gets_redacted_json(void **state)
{
    (void)state;
    char path[] = "/tmp/sbot-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    lua_State *L = sbot_runtime_new();
    lua_pushstring(L, path);
    lua_setglobal(L, "LOGFILE");
    assert_int_equal(luaL_dostring(L,
        "local log = require 'sbot.log'\n"
        "log.configure{level = 'off', file = LOGFILE}\n"
        "log.add_secret('s3cr3t-value')\n"
        "log.info('token s3cr3t-value used', {host = 'h1', n = 3, quote = 'a\"b'})\n"
        "log.debug('debug goes to the file too')\n"), LUA_OK);
    lua_close(L); /* closes the sink */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    assert_null(strstr(line, "s3cr3t-value"));
    assert_non_null(strstr(line, "\"msg\":\"token <redacted> used\""));
    assert_non_null(strstr(line, "\"host\":\"h1\",\"n\":3,\"quote\":\"a\\\"b\"}"));
    assert_non_null(strstr(line, "\"level\":\"info\""));
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"level\":\"debug\""));
    fclose(f);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redacts_every_registered_secret),
        cmocka_unit_test(redacting_twice_changes_nothing),
        cmocka_unit_test(empty_secret_is_ignored),
        cmocka_unit_test(file_sink_gets_redacted_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
