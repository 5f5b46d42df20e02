/* cmocka tests for sbot_check_hostport (util.c): the one host[:port]
 * grammar of iscsi.probe's portal (port required) and redfish.connect's host
 * (port optional). A bare IPv6 address is refused with a message that says
 * where the brackets go. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sbot.h"
#include "util.h"

#define PORT_REQUIRED 1
#define PORT_OPTIONAL 0

static const char *const need_port = "must be HOST:PORT (IPv6 as [addr]:port)";
static const char *const may_port = "must be HOST[:PORT] (IPv6 as [addr]:port)";
static const char *const bare_v6 = "holds an IPv6 address without brackets: write [addr]:port";
static const char *const bad_port = "has no port 1..65535 after its ':'";
static const char *const not_v6 = "has no IPv6 address in its brackets";
static const char *const not_host = "is not a host name or an IP address (IPv6 as [addr]:port)";

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

static void ipv4_and_names(void **state)
{
    (void)state;
    accepted("10.0.0.5:3260", PORT_REQUIRED);
    accepted("127.0.0.1:1", PORT_REQUIRED);
    accepted("127.0.0.1:65535", PORT_REQUIRED);
    accepted("truenas.lab:3260", PORT_REQUIRED);
    accepted("nas-01_a.example.org:3260", PORT_REQUIRED);
    accepted("idrac-r630-1", PORT_OPTIONAL);
    accepted("idrac.lab:8443", PORT_OPTIONAL);
    accepted("192.168.0.120", PORT_OPTIONAL);
    /* the port is required for a portal */
    refused("10.0.0.5", PORT_REQUIRED, need_port);
    refused("truenas.lab", PORT_REQUIRED, need_port);
    /* what no host name holds */
    refused("nas lab:3260", PORT_REQUIRED, not_host);
    refused("nas/lab:3260", PORT_REQUIRED, not_host);
    refused("root@idrac", PORT_OPTIONAL, not_host);
    refused("idrac?x", PORT_OPTIONAL, not_host);
}

static void ipv6_in_brackets(void **state)
{
    (void)state;
    accepted("[::1]:3260", PORT_REQUIRED);
    accepted("[fd00::5]:3260", PORT_REQUIRED);
    accepted("[fe80::1%eth0]:3260", PORT_REQUIRED); /* a zone */
    accepted("[2001:db8::192.168.0.1]:3260", PORT_REQUIRED);
    accepted("[::1]", PORT_OPTIONAL);
    accepted("[fd00::7]:443", PORT_OPTIONAL);
    /* brackets without a port: a portal needs one (libiscsi took 3260 for "[::1]") */
    refused("[::1]", PORT_REQUIRED, need_port);
    /* what follows the brackets is ':' and a port, nothing else */
    refused("[::1]3260", PORT_REQUIRED, need_port);
    refused("[::1]x", PORT_OPTIONAL, may_port);
    refused("[::1", PORT_REQUIRED, need_port);
    refused("[::1:3260", PORT_OPTIONAL, may_port);
    refused("[]:3260", PORT_REQUIRED, need_port);
    /* brackets hold an IPv6 address, not a name or an IPv4 one */
    refused("[nas.lab]:3260", PORT_REQUIRED, not_v6);
    refused("[10.0.0.5]:3260", PORT_REQUIRED, not_v6);
    refused("[fd00::zz]:3260", PORT_OPTIONAL, not_v6);
    /* far longer than any address (and a zone): refused, not copied past the buffer */
    char longv6[300];
    memset(longv6, 'a', sizeof longv6);
    longv6[0] = '[';
    memcpy(longv6 + sizeof longv6 - 7, "]:3260", 7);
    refused(longv6, PORT_REQUIRED, not_v6);
}

/* "fe80::1:3260" cannot say where its port is (libiscsi read it as port
 * 3260 of fe80::1; https://fe80::1:443 is no URL): refused both ways, with
 * where the brackets go. */
static void bare_ipv6_refused(void **state)
{
    (void)state;
    refused("fe80::1:3260", PORT_REQUIRED, bare_v6);
    refused("fe80::1", PORT_REQUIRED, bare_v6);
    refused("::1", PORT_REQUIRED, bare_v6);
    refused("fd00::7", PORT_OPTIONAL, bare_v6);
    refused("fd00::7:443", PORT_OPTIONAL, bare_v6);
    refused("2001:db8:0:0:0:0:0:1", PORT_OPTIONAL, bare_v6);
    assert_non_null(strstr(bare_v6, "[addr]:port"));
}

static void bad_ports(void **state)
{
    (void)state;
    static const char *const ports[] = {
        "10.0.0.5:",     "10.0.0.5:0",     "10.0.0.5:65536", "10.0.0.5:99999999999999999999",
        "10.0.0.5:-1",   "10.0.0.5:+3260", "10.0.0.5: 3260", "10.0.0.5:3260 ",
        "10.0.0.5:32a0", "10.0.0.5:0x10",  "[::1]:",         "[::1]:0",
        "[::1]:65536",   "[::1]:iscsi",    NULL};
    for (int i = 0; ports[i]; i++) {
        refused(ports[i], PORT_REQUIRED, bad_port);
        refused(ports[i], PORT_OPTIONAL, bad_port);
    }
}

static void empty_refused(void **state)
{
    (void)state;
    refused("", PORT_REQUIRED, need_port);
    refused("", PORT_OPTIONAL, may_port);
    /* a port without a host */
    refused(":3260", PORT_REQUIRED, need_port);
    refused(":443", PORT_OPTIONAL, may_port);
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
        cmocka_unit_test(ipv4_and_names),   cmocka_unit_test(ipv6_in_brackets),
        cmocka_unit_test(bare_ipv6_refused), cmocka_unit_test(bad_ports),
        cmocka_unit_test(empty_refused),    cmocka_unit_test(lua_faces_apply_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
