/* cmocka tests for sbot_check_hostport (util.c): the one host[:port]
 * grammar of iscsi.probe's portal (port required), redfish.connect's host
 * (port optional) and, through sys.check_hostport, the site file's. A bare IPv6 address is refused with a message that says
 * where the brackets go. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbot.h"
#include "util.h"

#define PORT_REQUIRED 1

static const char *const bare_v6 = "holds an IPv6 address without brackets: write [addr]:port";
static const char *const not_v6 = "has no IPv6 address in its brackets";

static void accepted(const char *s, int port_required)
{
    const char *why = sbot_check_hostport(s, port_required);
    if (why)
        fail_msg("'%s' (port %s) refused: %s", s, port_required ? "required" : "optional", why);
}

static void refused(const char *s, int port_required, const char *want)
{
    const char *why = sbot_check_hostport(s, port_required);
    if (!why)
        fail_msg("'%s' (port %s) accepted, expected: %s", s, port_required ? "required" : "optional",
                 want);
    if (strcmp(why, want) != 0)
        fail_msg("'%s' (port %s): got '%s', expected '%s'", s,
                 port_required ? "required" : "optional", why, want);
}

/* Every case of tests/fixtures/hostport_cases.txt, the table the Lua side
 * (sys.check_hostport, the site file's checks) reads too. */
static void shared_table(void **state)
{
    (void)state;
    FILE *f = fopen(SBOT_SOURCE_DIR "/tests/fixtures/hostport_cases.txt", "r");
    assert_non_null(f);
    char line[1024];
    int n = 0, seen_accept = 0, seen_refuse = 0, seen_bare_v6 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *fields[4] = {0};
        char *p = line;
        for (int i = 0; i < 4; i++) {
            fields[i] = p;
            p = strchr(p, '\t');
            if (!p && i < 3)
                fail_msg("hostport_cases.txt: '%s' has %d fields, expected 4", line, i + 1);
            if (p)
                *p++ = '\0';
        }
        int port_required = strcmp(fields[1], "required") == 0;
        if (!port_required && strcmp(fields[1], "optional") != 0)
            fail_msg("hostport_cases.txt: '%s' is not required or optional", fields[1]);
        if (strcmp(fields[0], "accept") == 0) {
            accepted(fields[2], port_required);
            seen_accept++;
        } else if (strcmp(fields[0], "refuse") == 0) {
            refused(fields[2], port_required, fields[3]);
            seen_refuse++;
            seen_bare_v6 += strcmp(fields[3], bare_v6) == 0;
        } else {
            fail_msg("hostport_cases.txt: '%s' is not accept or refuse", fields[0]);
        }
        n++;
    }
    fclose(f);
    assert_true(n > 60);
    assert_true(seen_accept > 10 && seen_refuse > 40);
    /* the table holds bare IPv6 addresses, refused with the advice where the brackets go */
    assert_true(seen_bare_v6 > 0);
}

/* far longer than any address (and a zone): refused, not copied past the buffer */
static void long_brackets_refused(void **state)
{
    (void)state;
    char longv6[300];
    memset(longv6, 'a', sizeof longv6);
    longv6[0] = '[';
    memcpy(longv6 + sizeof longv6 - 7, "]:3260", 7);
    refused(longv6, PORT_REQUIRED, not_v6);
}

/* The grammar is what the Lua faces apply: the error names the function,
 * the key and the value, before anything touches the network. */
static void raised(lua_State *L, const char *code, const char *want)
{
    if (luaL_dostring(L, code) == LUA_OK)
        fail_msg("no error from: %s", code);
    const char *msg = lua_tostring(L, -1);
    if (!msg || !strstr(msg, want))
        fail_msg("error '%s' does not hold '%s'", msg ? msg : "(not a string)", want);
    lua_pop(L, 1);
}

static void lua_faces_apply_it(void **state)
{
    (void)state;
    lua_State *L = sbot_runtime_new();
    assert_non_null(L);
    raised(L, "require 'sbot.iscsi'.probe{portal = 'fe80::1:3260', target = 'iqn.2024-01.org.sbot:t'}",
           "iscsi.probe: portal 'fe80::1:3260' holds an IPv6 address without brackets: write [addr]:port");
    raised(L, "require 'sbot.iscsi'.probe{portal = '[::1]', target = 'iqn.2024-01.org.sbot:t'}",
           "iscsi.probe: portal '[::1]' must be HOST:PORT (IPv6 as [addr]:port)");
    raised(L, "require 'sbot.iscsi'.probe{portal = '127.0.0.1:0', target = 'iqn.2024-01.org.sbot:t'}",
           "iscsi.probe: portal '127.0.0.1:0' has no port 1..65535 after its ':'");
    raised(L, "require 'sbot.redfish'.connect{host = 'fd00::7', user = 'root', password = 'calvin'}",
           "redfish.connect: 'host' 'fd00::7' holds an IPv6 address without brackets: write [addr]:port");
    raised(L, "require 'sbot.redfish'.connect{host = '[idrac]:443', user = 'root', password = 'calvin'}",
           "redfish.connect: 'host' '[idrac]:443' has no IPv6 address in its brackets");
    lua_close(L);
}

int main(void)
{
    setenv("SBOT_LUA_DIR", SBOT_SOURCE_DIR "/lua", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shared_table),
        cmocka_unit_test(long_brackets_refused),
        cmocka_unit_test(lua_faces_apply_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
