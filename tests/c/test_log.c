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

/* Reference redactor: at each position, an existing <redacted> is copied,
 * else the longest secret that starts there is replaced. */
static char *naive_redact(const char *const *secrets, int n, const char *s)
{
    static const char R[] = "<redacted>";
    size_t len = strlen(s), cap = len * 11 + 1, o = 0, i = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    while (i < len) {
        if (strncmp(s + i, R, sizeof R - 1) == 0) {
            memcpy(out + o, R, sizeof R - 1);
            o += sizeof R - 1;
            i += sizeof R - 1;
            continue;
        }
        size_t best = 0;
        for (int k = 0; k < n; k++) {
            size_t l = strlen(secrets[k]);
            if (l > best && l <= len - i && memcmp(s + i, secrets[k], l) == 0)
                best = l;
        }
        if (best) {
            memcpy(out + o, R, sizeof R - 1);
            o += sizeof R - 1;
            i += best;
        } else {
            out[o++] = s[i++];
        }
    }
    out[o] = '\0';
    return out;
}

static void random_string(char *out, size_t len, const char *alphabet, unsigned *seed)
{
    size_t an = strlen(alphabet);
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[rand_r(seed) % an];
    out[len] = '\0';
}

/* Many secrets that overlap and prefix one another (a small alphabet), texts
 * with <redacted> pieces in them, secrets added one at a time between
 * redactions: the indexed redactor agrees with the reference every time. */
static void agrees_with_a_naive_redactor(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int round = 0; round < 60; round++) {
        lua_State *L = sbot_runtime_new();
        assert_non_null(L);
        char secrets[24][16];
        const char *ptrs[24];
        int n = 0;
        for (int step = 0; step < 24; step++) {
            random_string(secrets[n], 1 + (size_t)rand_r(&seed) % 7, "ab<r", &seed);
            ptrs[n] = secrets[n];
            sbot_log_add_secret(L, secrets[n], strlen(secrets[n]));
            n++;
            for (int t = 0; t < 8; t++) {
                char text[200];
                size_t len = 0;
                while (len < 120) {
                    if (rand_r(&seed) % 6 == 0) {
                        memcpy(text + len, "<redacted>", 10);
                        len += 10;
                    } else {
                        text[len++] = "ab<r>d"[rand_r(&seed) % 6];
                    }
                }
                text[len] = '\0';
                char *want = naive_redact(ptrs, n, text);
                sbot_log_push_redacted(L, text, len);
                assert_string_equal(lua_tostring(L, -1), want);
                lua_pop(L, 1);
                free(want);
            }
        }
        lua_close(L);
    }
}

static void longest_of_nested_and_branching_secrets_wins(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    const char *sec[] = {"abcdef", "abcdefgh", "abcxyz", "bcdefg", "abcdefghij-tail"};
    for (size_t i = 0; i < sizeof sec / sizeof *sec; i++)
        sbot_log_add_secret(L, sec[i], strlen(sec[i]));
    sbot_log_add_secret(L, "abcdef", 6); /* twice: still one secret */
    const char *in = "1 abcdefg 2 abcdefghi 3 abcxy 4 abcxyz 5 xbcdefg 6 abcdefghij-tai 7 abcdefghij-tail";
    sbot_log_push_redacted(L, in, strlen(in));
    assert_string_equal(lua_tostring(L, -1),
                        "1 <redacted>g 2 <redacted>i 3 abcxy 4 <redacted> 5 x<redacted> "
                        "6 <redacted>ij-tai 7 <redacted>");
    lua_close(L);
}

static void a_secret_added_later_is_redacted_too(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    sbot_log_add_secret(L, "first-secret", 12);
    sbot_log_push_redacted(L, "first-secret second-secret", 26);
    assert_string_equal(lua_tostring(L, -1), "<redacted> second-secret");
    sbot_log_add_secret(L, "second-secret", 13);
    sbot_log_push_redacted(L, "first-secret second-secret", 26);
    assert_string_equal(lua_tostring(L, -1), "<redacted> <redacted>");
    lua_close(L);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Run `code` with stderr sent to a file; returns what it wrote. */
static char *capture_stderr(lua_State *L, const char *code)
{
    char path[] = "/tmp/sbot-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    int rc = luaL_dostring(L, code);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    if (rc != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    char *out = slurp(path);
    unlink(path);
    return out;
}

/* A secret holding a quote, a backslash and a tab: JSON escaping would turn
 * it into another byte string, so it must be redacted before escaping -- on
 * stderr (human and JSON) and in the file sink, in the message, in a field
 * value and in a field key. */
static void secret_with_json_specials_is_redacted_on_every_sink(void **state)
{
    (void)state;
    const char *secret = "pa\"ss\\w\tord-42";
    const char *escaped = "pa\\\"ss\\\\w\\tord-42"; /* how JSON would spell it */
    char path[] = "/tmp/sbot-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    lua_State *L = sbot_runtime_new();
    sbot_log_add_secret(L, secret, strlen(secret));
    lua_pushstring(L, path);
    lua_setglobal(L, "LOGFILE");
    lua_pushstring(L, secret);
    lua_setglobal(L, "SECRET");
    const char *emit =
        "local log = require 'sbot.log'\n"
        "log.info('login with ' .. SECRET .. ' ok', {pw = SECRET, [SECRET] = 'as a key',"
        " quote = 'a\"b'})\n";
    assert_int_equal(luaL_dostring(L, "require('sbot.log').configure{level = 'info', json = false,"
                                      " file = LOGFILE}"), LUA_OK);
    char *human = capture_stderr(L, emit);
    assert_int_equal(luaL_dostring(L, "require('sbot.log').configure{json = true, file = false}"),
                     LUA_OK);
    char *js = capture_stderr(L, emit);
    lua_close(L);
    char *file = slurp(path);
    unlink(path);
    const char *sinks[] = {human, js, file};
    for (int i = 0; i < 3; i++) {
        assert_null(strstr(sinks[i], secret));
        assert_null(strstr(sinks[i], escaped));
        assert_null(strstr(sinks[i], "ord-42"));
    }
    assert_non_null(strstr(human, "INFO  login with <redacted> ok <redacted>=as a key pw=<redacted>"
                                  " quote=a\"b\n"));
    for (int i = 1; i < 3; i++)
        assert_non_null(strstr(sinks[i], "\"msg\":\"login with <redacted> ok\",\"<redacted>\":"
                                         "\"as a key\",\"pw\":\"<redacted>\",\"quote\":\"a\\\"b\"}\n"));
    free(human);
    free(js);
    free(file);
}

/* A number field whose text is a secret is redacted and written as a JSON
 * string, so the line stays valid JSON. */
static void a_secret_number_field_stays_valid_json(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    sbot_log_add_secret(L, "80417723", 8);
    char *js = capture_stderr(L, "local log = require 'sbot.log'\n"
                                 "log.configure{level = 'info', json = true}\n"
                                 "log.info('x', {n = 80417723, m = 7, ok = true})\n");
    assert_non_null(strstr(js, "\"m\":7,\"n\":\"<redacted>\",\"ok\":true}\n"));
    free(js);
    lua_close(L);
}

static int push_short_secret(lua_State *L)
{
    sbot_secret_push(L, "abcde", 5, "test");
    return 1;
}

/* The secret type belongs to the core: sbot_secret_push makes it (and
 * registers the value), sbot_is_secret is the one test (a table named
 * "sbot.secret" is not one), a value under 6 bytes is refused. */
static void secret_objects_are_one_core_type(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    sbot_secret_push(L, "core-secret-Cs11", 16, "env CS");
    assert_true(sbot_is_secret(L, -1));
    lua_setglobal(L, "S");
    assert_int_equal(luaL_dostring(L, "return tostring(S) .. ' ' .. ('x=' .. S) .. ' ' .. S:reveal() .. ' ' .. "
                                      "S:source() .. ' ' .. require('sbot.log').redact('core-secret-Cs11')"),
                     LUA_OK);
    assert_string_equal(lua_tostring(L, -1), "<redacted> x=<redacted> core-secret-Cs11 env CS <redacted>");
    lua_pop(L, 1);
    assert_int_equal(luaL_dostring(L, "return setmetatable({}, {__name = 'sbot.secret'})"), LUA_OK);
    assert_false(sbot_is_secret(L, -1));
    lua_pop(L, 1);
    lua_pushcfunction(L, push_short_secret);
    assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_ERRRUN);
    assert_string_equal(lua_tostring(L, -1),
                        "sbot.secret: the value (test) is 5 bytes long; secrets shorter than 6 bytes are "
                        "refused (see docs/log.md, Short secrets)");
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redacts_every_registered_secret),
        cmocka_unit_test(redacting_twice_changes_nothing),
        cmocka_unit_test(empty_secret_is_ignored),
        cmocka_unit_test(file_sink_gets_redacted_json),
        cmocka_unit_test(agrees_with_a_naive_redactor),
        cmocka_unit_test(longest_of_nested_and_branching_secrets_wins),
        cmocka_unit_test(a_secret_added_later_is_redacted_too),
        cmocka_unit_test(secret_with_json_specials_is_redacted_on_every_sink),
        cmocka_unit_test(a_secret_number_field_stays_valid_json),
        cmocka_unit_test(secret_objects_are_one_core_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
