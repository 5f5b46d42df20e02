/* sys.c: sbot.sys - process and host primitives the Lua library needs and
 * plain Lua lacks: pids and signals, host name, a monotonic clock and UTC
 * timestamps. Files are sbot.fsio, hashes and randomness sbot.crypto.
 * Expected failures return nil, "what: why", errno. */
#define _GNU_SOURCE
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fail(lua_State *L, const char *what, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_hostname(lua_State *L)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        return fail(L, "gethostname", errno);
    host[sizeof host - 1] = '\0';
    lua_pushstring(L, host);
    return 1;
}

/* sys.pid_alive(pid) -> boolean: a process with that pid exists (on this host). */
static int l_pid_alive(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    /* above INT_MAX the cast to pid_t could give -1 (every process) or a
     * process group: only real pids get through */
    luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "pid must be a positive process id");
    lua_pushboolean(L, kill((pid_t)pid, 0) == 0 || errno == EPERM);
    return 1;
}

static const char *const signal_names[] = {"TERM", "KILL", "INT", "HUP", "SEGV", "ABRT",
                                           "USR1", "USR2", "STOP", "CONT", NULL};
static const int signal_numbers[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGSEGV, SIGABRT,
                                     SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};

/* sys.kill(pid, "TERM"|"KILL"|...) -> true | nil, err */
static int l_kill(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    int sig = signal_numbers[luaL_checkoption(L, 2, "TERM", signal_names)];
    luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "pid must be a positive process id");
    if (kill((pid_t)pid, sig) != 0) {
        int e = errno;
        return fail(L, lua_pushfstring(L, "kill %d", (int)pid), e);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_monotime(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* sys.utc_iso() -> "2026-11-26T12:03:00.123Z" (wall clock, milliseconds) */
static int l_utc_iso(lua_State *L)
{
    char out[40];
    sbot_utc_iso(out, sizeof out);
    lua_pushstring(L, out);
    return 1;
}

int luaopen_sbot_sys(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"getpid", l_getpid},       {"hostname", l_hostname},
        {"pid_alive", l_pid_alive}, {"kill", l_kill},
        {"monotime", l_monotime},   {"utc_iso", l_utc_iso},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
