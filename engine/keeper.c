/* keeper.c: sbot.keeper - periodic work in a helper process while the caller
 * is busy, and an interruptible sleep.
 *
 *   local k = assert(keeper.start{module = "sbot.lease", fn = "keep",
 *                                 args = {...}, interval = 40, name = "lease x"})
 *   ... long work: the helper calls require(module)[fn](args, state) every
 *       `interval` seconds, in its own process and Lua state ...
 *   local state = assert(k:stop())   -- the last state fn returned
 *
 * Why a process: the caller blocks in long C calls (an upload, a reboot
 * wait) where no Lua code of its own runs, so work that must happen on time
 * (renewing a lease) cannot share its thread; a forked helper with a fresh
 * interpreter (as sbot.fleet's workers) shares nothing with it but a pipe.
 * The helper dies with its parent (PR_SET_PDEATHSIG), and stops when the
 * parent closes the stop pipe (stop, __close, __gc, or the parent exiting).
 *
 * `args` is plain data (strings, numbers, booleans, tables) plus secret
 * objects, which are made secret objects again in the helper's state (and
 * registered with its log redactor); it is copied into the helper at fork
 * time. */
#define _GNU_SOURCE
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEEPER_MT "sbot.keeper"
#define MAX_DEPTH 32

struct keeper {
    pid_t pid;   /* 0 once reaped */
    int stop_fd; /* write end of the stop pipe, -1 once closed */
    int res_fd;  /* read end of the result pipe, -1 once closed */
};

/* ---- args: checked in the parent, copied into the helper ----------------- */

static void check_args(lua_State *L, int idx, int depth, const char *path)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING:
        return;
    case LUA_TUSERDATA:
        if (sbot_is_secret(L, idx))
            return;
        luaL_error(L, "keeper.start: args holds a userdata at %s (only plain data and secrets cross "
                      "into the helper)", path);
        return;
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) {
            lua_pop(L, 1);
            /* a JSON array marker is fine: the helper gets a plain table */
        }
        if (depth >= MAX_DEPTH)
            luaL_error(L, "keeper.start: args nested deeper than %d tables at %s", MAX_DEPTH, path);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            int kt = lua_type(L, -2);
            if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
                luaL_error(L, "keeper.start: args key of type %s at %s", lua_typename(L, kt), path);
            lua_pushvalue(L, -2);
            const char *k = lua_tostring(L, -1);
            const char *sub = lua_pushfstring(L, "%s.%s", path, k);
            check_args(L, -3, depth + 1, sub);
            lua_pop(L, 3);
        }
        return;
    default:
        luaL_error(L, "keeper.start: args holds a %s at %s (only plain data and secrets cross "
                      "into the helper)", luaL_typename(L, idx), path);
    }
}

/* Copy the value at P[idx] onto W's stack. Runs in the helper, on its copy
 * of the parent's state; check_args made sure every value can be copied. */
static void copy_value(lua_State *P, int idx, lua_State *W)
{
    idx = lua_absindex(P, idx);
    switch (lua_type(P, idx)) {
    case LUA_TBOOLEAN:
        lua_pushboolean(W, lua_toboolean(P, idx));
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(P, idx))
            lua_pushinteger(W, lua_tointeger(P, idx));
        else
            lua_pushnumber(W, lua_tonumber(P, idx));
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(P, idx, &n);
        lua_pushlstring(W, s, n);
        return;
    }
    case LUA_TUSERDATA: /* a secret (check_args made sure): a secret again in W */
        if (sbot_is_secret(P, idx)) {
            lua_getfield(P, idx, "reveal");
            lua_pushvalue(P, idx);
            lua_call(P, 1, 1);
            size_t n;
            const char *s = lua_tolstring(P, -1, &n);
            sbot_secret_push(W, s ? s : "", s ? n : 0, "keeper");
            lua_pop(P, 1);
            return;
        }
        lua_pushnil(W);
        return;
    case LUA_TTABLE:
        lua_newtable(W);
        lua_pushnil(P);
        while (lua_next(P, idx)) {
            copy_value(P, -2, W);
            copy_value(P, -1, W);
            lua_rawset(W, -3);
            lua_pop(P, 1);
        }
        return;
    default:
        lua_pushnil(W);
    }
}

/* ---- the helper ------------------------------------------------------------- */

struct helper {
    lua_State *P; /* the helper's copy of the parent state */
    int args;     /* index of args in P */
    const char *module, *fn;
    double interval;
    int stop_fd;
};

/* Protected: the helper's whole life in W. Leaves the JSON text to send. */
static int helper_main(lua_State *W)
{
    struct helper *h = lua_touserdata(W, 1);
    lua_settop(W, 0);
    /* the parent's module search paths, as sbot.fleet's workers get them */
    lua_getglobal(h->P, "package");
    lua_getglobal(W, "package");
    for (int i = 0; i < 2; i++) {
        const char *f = i == 0 ? "path" : "cpath";
        if (lua_getfield(h->P, -1, f) == LUA_TSTRING) {
            lua_pushstring(W, lua_tostring(h->P, -1));
            lua_setfield(W, -2, f);
        }
        lua_pop(h->P, 1);
    }
    lua_pop(h->P, 1);
    lua_settop(W, 0);
    copy_value(h->P, h->args, W); /* 1: args */
    lua_getglobal(W, "require");
    lua_pushstring(W, h->module);
    lua_call(W, 1, 1);
    lua_getfield(W, -1, h->fn);
    if (lua_type(W, -1) != LUA_TFUNCTION)
        luaL_error(W, "keeper: %s.%s is not a function", h->module, h->fn);
    lua_replace(W, 2);           /* 2: fn */
    lua_settop(W, 2);
    lua_pushnil(W);              /* 3: state */
    int wait_ms = (int)(h->interval * 1000.0);
    for (;;) {
        struct pollfd pfd = {h->stop_fd, POLLIN, 0};
        int r = poll(&pfd, 1, wait_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 0)
            break; /* the parent closed the pipe (or died): stop */
        lua_pushvalue(W, 2);
        lua_pushvalue(W, 1);
        lua_pushvalue(W, 3);
        lua_call(W, 2, 2);
        if (lua_isnil(W, -2) && !lua_isnil(W, -1))
            luaL_error(W, "%s", luaL_tolstring(W, -1, NULL));
        lua_pop(W, 1);
        if (!lua_isnil(W, -1))
            lua_replace(W, 3);
        else
            lua_pop(W, 1);
    }
    /* {"ok": true, "state": state} through sbot.json */
    lua_getglobal(W, "require");
    lua_pushliteral(W, "sbot.json");
    lua_call(W, 1, 1);
    lua_getfield(W, -1, "encode");
    lua_createtable(W, 0, 2);
    lua_pushboolean(W, 1);
    lua_setfield(W, -2, "ok");
    lua_pushvalue(W, 3);
    lua_setfield(W, -2, "state");
    lua_call(W, 1, 1);
    return 1;
}

static int encode_error(lua_State *W)
{
    lua_getglobal(W, "require");
    lua_pushliteral(W, "sbot.json");
    lua_call(W, 1, 1);
    lua_getfield(W, -1, "encode");
    lua_createtable(W, 0, 2);
    lua_pushboolean(W, 0);
    lua_setfield(W, -2, "ok");
    lua_pushvalue(W, 1);
    lua_setfield(W, -2, "error");
    lua_call(W, 1, 1);
    return 1;
}

static void helper(struct helper *h, int res_fd, pid_t parent)
{
    signal(SIGINT, SIG_IGN); /* the parent decides when to stop; it dies -> SIGKILL */
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sbot_close_fds_except(h->stop_fd, res_fd); /* all but stdin/out/err and the two pipes */
    /* a fork: a progress board the caller draws is not the helper's to redraw */
    sbot_progress_worker(-1, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(70);
    lua_State *W = sbot_runtime_new();
    if (!W) {
        static const char oom[] = "{\"ok\":false,\"error\":\"keeper: cannot create a Lua state\"}";
        sbot_write_all(res_fd, oom, sizeof oom - 1);
        _exit(71);
    }
    lua_pushcfunction(W, helper_main);
    lua_pushlightuserdata(W, h);
    int st = lua_pcall(W, 1, 1, 0);
    int code = 0;
    if (st != LUA_OK) {
        size_t len;
        const char *m = luaL_tolstring(W, -1, &len);
        sbot_log_push_redacted(W, m, len);
        lua_pushcfunction(W, encode_error);
        lua_insert(W, -2);
        if (lua_pcall(W, 1, 1, 0) != LUA_OK)
            _exit(72);
        code = 3;
    }
    size_t len;
    const char *out = lua_tolstring(W, -1, &len);
    sbot_write_all(res_fd, out, len);
    close(res_fd);
    _exit(code);
}

/* ---- the parent --------------------------------------------------------------- */

static struct keeper *check_keeper(lua_State *L)
{
    return luaL_checkudata(L, 1, KEEPER_MT);
}

/* Close the stop pipe, collect what the helper wrote and reap it. With
 * patience_ms >= 0, a helper still running after that long is killed.
 * Pushes the JSON text written (possibly empty) and the wait status. */
static int finish(lua_State *L, struct keeper *k, int patience_ms)
{
    if (k->stop_fd >= 0) {
        close(k->stop_fd);
        k->stop_fd = -1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int waited = 0;
    while (k->res_fd >= 0) {
        struct pollfd pfd = {k->res_fd, POLLIN, 0};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            waited += 100;
            if (patience_ms >= 0 && waited >= patience_ms && k->pid > 0)
                kill(k->pid, SIGKILL);
            continue;
        }
        char buf[4096];
        ssize_t n = read(k->res_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(k->res_fd);
            k->res_fd = -1;
            break;
        }
        luaL_addlstring(&b, buf, (size_t)n);
    }
    int status = 0;
    if (k->pid > 0) {
        while (waitpid(k->pid, &status, 0) < 0 && errno == EINTR)
            ;
        k->pid = 0;
    }
    luaL_pushresult(&b);
    return status;
}

/* k:stop() -> state (true when the function never returned one) | nil, err, "keeper" */
static int k_stop(lua_State *L)
{
    struct keeper *k = check_keeper(L);
    if (k->pid == 0 && k->res_fd < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "keeper: already stopped");
        lua_pushliteral(L, "keeper");
        return 3;
    }
    lua_getiuservalue(L, 1, 1);
    const char *name = lua_tostring(L, -1);
    int status = finish(L, k, 30000);
    int text = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "decode");
    lua_pushvalue(L, text);
    lua_call(L, 1, 1);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "ok");
        int ok = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (ok) {
            lua_getfield(L, -1, "state");
            if (lua_isnil(L, -1))
                lua_pushboolean(L, 1);
            return 1;
        }
        lua_getfield(L, -1, "error");
        lua_pushnil(L);
        lua_pushfstring(L, "keeper %s: %s", name ? name : "?", luaL_optstring(L, -2, "?"));
        lua_pushliteral(L, "keeper");
        return 3;
    }
    lua_pushnil(L);
    if (WIFSIGNALED(status))
        lua_pushfstring(L, "keeper %s: the helper was killed by signal %d", name ? name : "?",
                        WTERMSIG(status));
    else
        lua_pushfstring(L, "keeper %s: the helper exited (status %d) without a result",
                        name ? name : "?", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    lua_pushliteral(L, "keeper");
    return 3;
}

/* k:alive() -> boolean: the helper is still running */
static int k_alive(lua_State *L)
{
    struct keeper *k = check_keeper(L);
    int alive = 0;
    if (k->pid > 0) {
        int status;
        pid_t r = waitpid(k->pid, &status, WNOHANG);
        alive = r == 0;
    }
    lua_pushboolean(L, alive);
    return 1;
}

/* __gc / __close: stop without waiting long (the helper polls every
 * interval, so it is killed if it does not exit within a second). */
static int k_release(lua_State *L)
{
    struct keeper *k = luaL_checkudata(L, 1, KEEPER_MT);
    if (k->pid > 0 || k->res_fd >= 0 || k->stop_fd >= 0) {
        finish(L, k, 1000);
        lua_pop(L, 1);
    }
    return 0;
}

static int k_pid(lua_State *L)
{
    struct keeper *k = check_keeper(L);
    lua_pushinteger(L, k->pid);
    return 1;
}

static const char *field_string(lua_State *L, const char *key)
{
    if (lua_getfield(L, 1, key) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        luaL_error(L, "keeper.start: '%s' must be a non-empty string", key);
    return lua_tostring(L, -1); /* stays on the stack */
}

/* keeper.start{module, fn, args, interval, name} -> keeper | nil, err, code */
static int l_start(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    static const char *const known[] = {"module", "fn", "args", "interval", "name", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int ok = 0;
        for (int i = 0; k && known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            luaL_error(L, "keeper.start: unknown option '%s' (expected module, fn, args, interval, name)",
                       k ? k : luaL_typename(L, -2));
        lua_pop(L, 1);
    }
    const char *module = field_string(L, "module");
    const char *fn = field_string(L, "fn");
    lua_getfield(L, 1, "interval");
    int isnum;
    double interval = lua_tonumberx(L, -1, &isnum);
    if (!isnum || !(interval >= 0.01) || interval > 86400)
        luaL_error(L, "keeper.start: 'interval' must be a number of seconds from 0.01 to 86400");
    lua_getfield(L, 1, "name");
    const char *name = luaL_optstring(L, -1, module);
    lua_getfield(L, 1, "args");
    int args = lua_gettop(L);
    check_args(L, args, 0, "args");

    struct keeper *k = lua_newuserdatauv(L, sizeof *k, 1); /* closed until forked */
    k->pid = 0;
    k->stop_fd = -1;
    k->res_fd = -1;
    luaL_setmetatable(L, KEEPER_MT);
    lua_pushstring(L, name);
    lua_setiuservalue(L, -2, 1);

    int stop[2], res[2];
    if (pipe2(stop, O_CLOEXEC) != 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "keeper.start %s: pipe: %s", name, strerror(e));
        lua_pushstring(L, sbot_errno_name(e));
        return 3;
    }
    if (pipe2(res, O_CLOEXEC) != 0) {
        int e = errno;
        close(stop[0]);
        close(stop[1]);
        lua_pushnil(L);
        lua_pushfstring(L, "keeper.start %s: pipe: %s", name, strerror(e));
        lua_pushstring(L, sbot_errno_name(e));
        return 3;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(stop[0]);
        close(stop[1]);
        close(res[0]);
        close(res[1]);
        lua_pushnil(L);
        lua_pushfstring(L, "keeper.start %s: fork: %s", name, strerror(e));
        lua_pushstring(L, sbot_errno_name(e));
        return 3;
    }
    if (pid == 0) {
        close(stop[1]);
        close(res[0]);
        struct helper h = {L, args, module, fn, interval, stop[0]};
        helper(&h, res[1], parent);
    }
    close(stop[0]);
    close(res[1]);
    k->pid = pid;
    k->stop_fd = stop[1];
    k->res_fd = res[0];
    sbot_log(L, SBOT_DEBUG, "keeper %s: helper pid %d, every %g s", name, (int)pid, interval);
    return 1;
}

/* keeper.sleep(seconds): waits; Ctrl-C ends the wait early and the
 * interpreter then stops with its usual `interrupted!`. */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (!(s >= 0) || s > 86400)
        return luaL_error(L, "keeper.sleep: seconds must be from 0 to 86400");
    sbot_sleep(s); /* a stop request (Ctrl-C) ends the wait; Lua raises it next */
    return 0;
}

int luaopen_sbot_keeper(lua_State *L)
{
    static const luaL_Reg methods[] = {{"stop", k_stop}, {"alive", k_alive}, {"pid", k_pid},
                                       {NULL, NULL}};
    if (luaL_newmetatable(L, KEEPER_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, k_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, k_release);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"start", l_start}, {"sleep", l_sleep}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
