/* fleet.c: sbot.fleet - run a function over many items, each in its own
 * forked worker with its own, fresh Lua state.
 *
 *   fleet.map(items, fn [, {jobs = 4, timeout = seconds}]) -> results
 *
 * The worker is a fork of this process that builds a new interpreter with
 * sbot_runtime_new() and copies fn (bytecode and upvalues, recursively) and
 * its item into it: modules are re-required by name, secret objects are
 * re-wrapped (and registered with the worker's redactor), plain data is
 * copied. Nothing else of the parent's interpreter is used, so open
 * connections, sessions and handles of the parent are never touched by a
 * worker. fn's return value comes back as JSON over a pipe. Each worker runs
 * in its own process group; a crash or a timeout yields an error result for
 * that item only.
 *
 * Workers are stopped gracefully: on a timeout, or on Ctrl-C/SIGTERM to the
 * parent, the worker gets SIGTERM (sigqueue, with the reason), its
 * interpreter raises "interrupted!", to-be-closed values and component
 * resources close, and it sends back what it has; only after a grace period
 * (opts.grace, default 20 s; a second Ctrl-C ends it at once) is its process
 * group killed. Every worker is reaped before map returns or raises. */
#define _GNU_SOURCE
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 256

/* Set by the signal handler while map() waits; a handler has nowhere else
 * to put it. Only read and reset inside one map() call. */
static volatile sig_atomic_t stop_signal, stop_count;

static void on_stop(int sig)
{
    stop_signal = sig;
    stop_count++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- copying values from the parent's state into the worker's -------------- */

struct copier {
    lua_State *from; /* the parent's interpreter (a copy: we are in the child) */
    lua_State *to;   /* the worker's fresh interpreter */
    int memo;        /* to: table lightuserdata(from pointer) -> copied value */
    int modules;     /* to: table lightuserdata(from pointer) -> module name */
    int cfuncs;      /* to: table lightuserdata(C function) -> {module, field} */
};

static void copy_value(struct copier *c, int idx, const char *path);

/* Index every module in from's package.loaded by identity, and every C
 * function directly in a module table by pointer, into tables of `to`. */
static void index_modules(struct copier *c)
{
    lua_State *F = c->from, *T = c->to;
    lua_newtable(T);
    c->modules = lua_gettop(T);
    lua_newtable(T);
    c->cfuncs = lua_gettop(T);
    if (lua_getfield(F, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) != LUA_TTABLE) {
        lua_pop(F, 1);
        return;
    }
    lua_pushnil(F);
    while (lua_next(F, -2)) {
        if (lua_type(F, -2) == LUA_TSTRING && lua_type(F, -1) == LUA_TTABLE) {
            const char *name = lua_tostring(F, -2);
            lua_pushlightuserdata(T, (void *)lua_topointer(F, -1));
            lua_pushstring(T, name);
            lua_rawset(T, c->modules);
            lua_pushnil(F);
            while (lua_next(F, -2)) {
                if (lua_type(F, -2) == LUA_TSTRING && lua_iscfunction(F, -1)) {
                    lua_pushlightuserdata(T, (void *)lua_tocfunction(F, -1));
                    if (lua_rawget(T, c->cfuncs) == LUA_TNIL) {
                        lua_pop(T, 1);
                        lua_pushlightuserdata(T, (void *)lua_tocfunction(F, -1));
                        lua_createtable(T, 2, 0);
                        lua_pushstring(T, name);
                        lua_rawseti(T, -2, 1);
                        lua_pushstring(T, lua_tostring(F, -2));
                        lua_rawseti(T, -2, 2);
                        lua_rawset(T, c->cfuncs);
                    } else {
                        lua_pop(T, 1);
                    }
                }
                lua_pop(F, 1);
            }
        }
        lua_pop(F, 1);
    }
    lua_pop(F, 1);
}

/* Call require(name) in `to`, protected. Pushes the module and returns 1,
 * or pushes nothing and returns 0. */
static int try_require(lua_State *T, const char *name)
{
    lua_getglobal(T, "require");
    lua_pushstring(T, name);
    if (lua_pcall(T, 1, 1, 0) != LUA_OK) {
        lua_pop(T, 1);
        return 0;
    }
    return 1;
}

/* value.reveal(value) in from, protected, then a new secret object in to. */
static void copy_secret(struct copier *c, int idx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    idx = lua_absindex(F, idx);
    lua_getfield(F, idx, "reveal"); /* through __index; may not raise for tables */
    lua_pushvalue(F, idx);
    if (lua_pcall(F, 1, 1, 0) != LUA_OK || lua_type(F, -1) != LUA_TSTRING) {
        lua_pop(F, 1);
        luaL_error(T, "fleet.map: cannot copy the secret at %s into the worker", path);
    }
    size_t len;
    const char *s = lua_tolstring(F, -1, &len);
    lua_pushlstring(T, s, len); /* anchored in T before F lets go of it */
    lua_pop(F, 1);
    s = lua_tolstring(T, -1, &len);
    sbot_secret_push(T, s, len, "copied into a fleet worker");
    lua_remove(T, -2);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    luaL_addlstring((luaL_Buffer *)ud, p, sz);
    return 0;
}

/* Dump the Lua function at from[idx] and load it in to (pushes it). */
static void copy_lua_function(struct copier *c, int idx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    luaL_Buffer b;
    lua_pushvalue(F, idx);
    /* The dump goes straight into a buffer of `to`: nothing is allocated in
     * from, so a failure cannot raise there. */
    luaL_buffinit(T, &b);
    lua_dump(F, dump_writer, &b, 0);
    lua_pop(F, 1);
    luaL_pushresult(&b);
    size_t len;
    const char *code = lua_tolstring(T, -1, &len);
    if (luaL_loadbufferx(T, code, len, path, "b") != LUA_OK)
        lua_error(T);
    lua_remove(T, -2);
}

static void copy_upvalues(struct copier *c, int fidx, int tidx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    for (int i = 1;; i++) {
        const char *name = lua_getupvalue(F, fidx, i);
        if (!name)
            break;
        if (strcmp(name, "_ENV") == 0) {
            /* globals are the worker's own: a fresh interpreter, whatever
             * environment (sandbox, test framework) fn was defined in */
            lua_pop(F, 1);
            lua_pushglobaltable(T);
            lua_setupvalue(T, tidx, i);
            continue;
        }
        const char *p = lua_pushfstring(T, "%s upvalue '%s'", path, *name ? name : "?");
        copy_value(c, -1, p);
        lua_remove(T, -2);
        lua_pop(F, 1);
        if (!lua_setupvalue(T, tidx, i))
            lua_pop(T, 1);
    }
}

static void copy_function(struct copier *c, int idx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    idx = lua_absindex(F, idx);
    if (lua_iscfunction(F, idx)) {
        lua_CFunction f = lua_tocfunction(F, idx);
        /* a function of a module: take the worker's own (same registry setup) */
        lua_pushlightuserdata(T, (void *)f);
        if (lua_rawget(T, c->cfuncs) == LUA_TTABLE) {
            lua_rawgeti(T, -1, 1);
            if (try_require(T, lua_tostring(T, -1))) {
                lua_rawgeti(T, -3, 2);
                lua_gettable(T, -2);
                lua_replace(T, -4);
                lua_pop(T, 2);
                return;
            }
            lua_pop(T, 1);
        }
        lua_pop(T, 1);
        /* else: the same C function (same binary) with copied upvalues */
        int n = 0;
        while (lua_getupvalue(F, idx, n + 1)) {
            const char *p = lua_pushfstring(T, "%s upvalue %d", path, n + 1);
            copy_value(c, -1, p);
            lua_remove(T, -2);
            lua_pop(F, 1);
            n++;
        }
        lua_pushcclosure(T, f, n);
        return;
    }
    copy_lua_function(c, idx, path);
    int t = lua_gettop(T);
    /* memoise before the upvalues, so recursive functions terminate */
    lua_pushlightuserdata(T, (void *)lua_topointer(F, idx));
    lua_pushvalue(T, t);
    lua_rawset(T, c->memo);
    copy_upvalues(c, idx, t, path);
}

static void copy_table(struct copier *c, int idx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    idx = lua_absindex(F, idx);
    lua_pushglobaltable(F);
    int globals = lua_rawequal(F, -1, idx);
    lua_pop(F, 1);
    if (globals) {
        lua_pushglobaltable(T);
        return;
    }
    /* a module: require it by name in the worker if it can be found there */
    lua_pushlightuserdata(T, (void *)lua_topointer(F, idx));
    const char *modname = NULL;
    if (lua_rawget(T, c->modules) == LUA_TSTRING) {
        modname = lua_tostring(T, -1);
        if (try_require(T, modname)) {
            lua_remove(T, -2);
            return;
        }
    }
    int name_idx = lua_gettop(T); /* module name or nil */
    lua_newtable(T);
    int t = lua_gettop(T);
    lua_pushlightuserdata(T, (void *)lua_topointer(F, idx));
    lua_pushvalue(T, t);
    lua_rawset(T, c->memo);
    lua_pushnil(F);
    while (lua_next(F, idx)) {
        const char *kp;
        if (lua_type(F, -2) == LUA_TSTRING)
            kp = lua_pushfstring(T, "%s.%s", path, lua_tostring(F, -2));
        else if (lua_type(F, -2) == LUA_TNUMBER && lua_isinteger(F, -2))
            kp = lua_pushfstring(T, "%s[%I]", path, lua_tointeger(F, -2));
        else
            kp = lua_pushfstring(T, "%s[%s key]", path, luaL_typename(F, -2));
        copy_value(c, -2, kp);
        copy_value(c, -1, kp);
        lua_rawset(T, t);
        lua_pop(T, 1);
        lua_pop(F, 1);
    }
    if (lua_getmetatable(F, idx)) {
        const char *mp = lua_pushfstring(T, "%s (metatable)", path);
        copy_value(c, -1, mp);
        lua_setmetatable(T, t);
        lua_pop(T, 1);
        lua_pop(F, 1);
    }
    if (modname) {
        /* a module the worker cannot load by itself (e.g. a component the
         * workflow defined inline): make require find the copy */
        luaL_getsubtable(T, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushvalue(T, t);
        lua_setfield(T, -2, modname);
        lua_pop(T, 1);
    }
    lua_remove(T, name_idx);
}

/* Push onto `to` a copy of from[idx]. Raises in `to` (never in from) when a
 * value cannot be copied, naming its path. */
static void copy_value(struct copier *c, int idx, const char *path)
{
    lua_State *F = c->from, *T = c->to;
    idx = lua_absindex(F, idx);
    luaL_checkstack(T, 8, "fleet.map: value nested too deeply");
    if (!lua_checkstack(F, 8))
        luaL_error(T, "fleet.map: %s is nested too deeply", path);
    int type = lua_type(F, idx);
    switch (type) {
    case LUA_TNIL: lua_pushnil(T); return;
    case LUA_TBOOLEAN: lua_pushboolean(T, lua_toboolean(F, idx)); return;
    case LUA_TNUMBER:
        if (lua_isinteger(F, idx))
            lua_pushinteger(T, lua_tointeger(F, idx));
        else
            lua_pushnumber(T, lua_tonumber(F, idx));
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(F, idx, &len);
        lua_pushlstring(T, s, len);
        return;
    }
    case LUA_TLIGHTUSERDATA: lua_pushlightuserdata(T, lua_touserdata(F, idx)); return;
    default: break;
    }
    lua_pushlightuserdata(T, (void *)lua_topointer(F, idx));
    if (lua_rawget(T, c->memo) != LUA_TNIL)
        return;
    lua_pop(T, 1);
    if ((type == LUA_TTABLE || type == LUA_TUSERDATA) && sbot_is_secret(F, idx)) {
        copy_secret(c, idx, path);
    } else if (type == LUA_TTABLE) {
        copy_table(c, idx, path);
        return; /* memoised inside */
    } else if (type == LUA_TFUNCTION) {
        copy_function(c, idx, path);
        return; /* memoised inside (Lua functions) */
    } else if (type == LUA_TUSERDATA) {
        if (lua_getmetatable(F, idx)) {
            lua_getfield(F, -1, "__name");
            lua_pushstring(T, lua_type(F, -1) == LUA_TSTRING ? lua_tostring(F, -1) : "userdata");
            lua_pop(F, 2);
        } else {
            lua_pushliteral(T, "userdata");
        }
        luaL_error(T, "fleet.map: %s is a %s (an open resource?), which cannot be copied into "
                   "a worker; create it inside the worker function", path, lua_tostring(T, -1));
    } else {
        luaL_error(T, "fleet.map: %s is a %s, which cannot be copied into a worker", path,
                   lua_typename(T, type));
    }
    lua_pushlightuserdata(T, (void *)lua_topointer(F, idx));
    lua_pushvalue(T, -2);
    lua_rawset(T, c->memo);
}

/* ---- the worker ------------------------------------------------------------- */

struct job {
    lua_State *parent;
    int items, fn;
    lua_Integer index;
};

/* Runs protected in the worker's state: copy, call, encode. Returns the JSON. */
static int worker_main(lua_State *W)
{
    struct job *job = lua_touserdata(W, 1);
    lua_State *P = job->parent;
    struct copier c = {P, W, 0, 0, 0};
    lua_settop(W, 0);
    lua_newtable(W);
    c.memo = lua_gettop(W);
    index_modules(&c);

    /* the parent's package paths and log configuration */
    lua_getglobal(W, "package");
    lua_getglobal(P, "package");
    lua_getfield(P, -1, "path");
    lua_getfield(P, -2, "cpath");
    lua_pushstring(W, lua_tostring(P, -2));
    lua_setfield(W, -2, "path");
    lua_pushstring(W, lua_tostring(P, -1));
    lua_setfield(W, -2, "cpath");
    lua_pop(P, 3);
    lua_pop(W, 1);
    sbot_log_inherit(W, P); /* levels, JSON or human, secrets */

    copy_value(&c, job->fn, "fn");
    lua_rawgeti(P, job->items, job->index);
    copy_value(&c, -1, lua_pushfstring(W, "items[%I]", job->index));
    lua_pop(P, 1);
    lua_remove(W, -2);
    lua_pushinteger(W, job->index);
    lua_call(W, 2, 1);
    return 1;
}

/* Encode {ok = true, value = v} or {ok = false, error = msg} with sbot.json. */
static int encode_outcome(lua_State *W)
{
    lua_getglobal(W, "require");
    lua_pushliteral(W, "sbot.json");
    lua_call(W, 1, 1);
    lua_getfield(W, -1, "encode");
    lua_createtable(W, 0, 2);
    lua_pushvalue(W, 1);
    lua_setfield(W, -2, "ok");
    lua_pushvalue(W, 2);
    lua_setfield(W, -2, lua_toboolean(W, 1) ? "value" : "error");
    lua_createtable(W, 0, 1); /* results are records: a secret object is <redacted> */
    lua_pushliteral(W, "redact");
    lua_setfield(W, -2, "secrets");
    lua_call(W, 2, 1);
    return 1;
}

static void child(lua_State *P, int items, int fn, lua_Integer index, int wfd, pid_t parent, int errfd,
                  const char *label)
{
    /* a stop (SIGTERM from the parent) that arrives while the worker starts
     * is kept and raised in Lua as soon as it runs */
    sbot_catch_stop_signals();
    signal(SIGPIPE, SIG_DFL);
    /* a parent that draws the progress board reads our stderr (log lines
     * and progress records, docs/progress.md); otherwise waits are logged,
     * labelled with the item's label (the server) */
    if (errfd >= 0 && dup2(errfd, STDERR_FILENO) < 0)
        errfd = -1;
    sbot_progress_worker(errfd >= 0 ? STDERR_FILENO : -1, label);
    sbot_close_fds_except(wfd, wfd); /* all but stdin/out/err and the result pipe */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(70);
    lua_State *W = sbot_runtime_new();
    if (!W) {
        static const char oom[] = "{\"ok\":false,\"error\":\"fleet worker: cannot create a Lua state\"}";
        sbot_write_all(wfd, oom, sizeof oom - 1);
        _exit(71);
    }
    struct job job = {P, items, fn, index};
    lua_pushcfunction(W, worker_main);
    lua_pushlightuserdata(W, &job);
    int st = sbot_docall(W, 1, 1);
    lua_pushboolean(W, st == LUA_OK);
    lua_insert(W, -2);
    if (st != LUA_OK) { /* redact what the worker knows to be secret */
        size_t len;
        const char *m = luaL_tolstring(W, -1, &len);
        sbot_log_push_redacted(W, m, len);
        lua_replace(W, -3);
        lua_pop(W, 1);
    }
    lua_pushcfunction(W, encode_outcome);
    lua_insert(W, -3);
    if (lua_pcall(W, 2, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(W, -1);
        lua_pushcfunction(W, encode_outcome);
        lua_pushboolean(W, 0);
        lua_pushfstring(W, "fleet worker: the result cannot be sent back as JSON: %s",
                        m ? m : "?");
        if (lua_pcall(W, 2, 1, 0) != LUA_OK)
            _exit(72);
    }
    size_t len;
    const char *out = lua_tolstring(W, -1, &len);
    sbot_write_all(wfd, out, len);
    close(wfd);
    lua_close(W);
    _exit(0);
}

/* ---- the parent ------------------------------------------------------------- */

#define LINE_MAX_BYTES 8192 /* a worker's stderr line kept for the board at most */

struct worker {
    pid_t pid;     /* 0: slot free */
    int fd;        /* read end of the result pipe, -1 once closed */
    int errfd;     /* the worker's stderr when the board is drawn, else -1 */
    char *line;    /* what came on errfd and is not handled yet (LINE_MAX_BYTES) */
    size_t line_len;
    char label[64]; /* the item's label (labels[i], else "item i") */
    int pidfd;     /* readable when the worker exits; -1 if the kernel has none */
    lua_Integer index;
    double started, deadline;
    int timed_out;
    double stopped;  /* when SIGTERM was sent (0: not yet) */
    double kill_at;  /* when the grace period ends */
    int killed;      /* SIGKILL sent: 1 after the grace period, 2 at a second Ctrl-C/SIGTERM */
};

struct fleet {
    struct worker w[MAX_JOBS];
    int jobs;
    double grace;
    struct sigaction old_int, old_term;
    int handlers;
    int board;     /* sbot_progress_board_start said yes: workers' stderr comes here */
};

/* Ask worker w to stop: SIGTERM carrying the reason (sbot.h SBOT_STOP_*),
 * to the worker only (its children are its business until the grace period
 * ends: then the whole group is killed). */
static void stop_worker(struct fleet *f, struct worker *w, int reason, double now)
{
    if (w->pid <= 0 || w->stopped > 0)
        return;
    union sigval v;
    v.sival_int = reason;
    if (sigqueue(w->pid, SIGTERM, v) != 0)
        kill(w->pid, SIGTERM);
    w->stopped = now;
    w->kill_at = now + f->grace;
}

static void restore_signals(struct fleet *f)
{
    if (f->handlers) {
        sigaction(SIGINT, &f->old_int, NULL);
        sigaction(SIGTERM, &f->old_term, NULL);
        f->handlers = 0;
    }
}

/* Kill every running worker's process group and reap it. */
static void kill_all(struct fleet *f)
{
    for (int i = 0; i < f->jobs; i++) {
        struct worker *w = &f->w[i];
        if (w->pid > 0) {
            kill(-w->pid, SIGKILL);
            kill(w->pid, SIGKILL);
            while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            w->pid = 0;
        }
        if (w->fd >= 0) {
            close(w->fd);
            w->fd = -1;
        }
        if (w->pidfd >= 0) {
            close(w->pidfd);
            w->pidfd = -1;
        }
        if (w->errfd >= 0) {
            close(w->errfd);
            w->errfd = -1;
        }
        free(w->line);
        w->line = NULL;
        w->line_len = 0;
    }
}

/* __gc/__close of the fleet userdata: if map is left by an error, no child
 * stays behind. Idempotent. */
static void release(struct fleet *f)
{
    kill_all(f);
    restore_signals(f);
    if (f->board) {
        f->board = 0;
        sbot_progress_board_stop();
    }
}

/* Read what the worker wrote on its stderr (board mode) and hand it to the
 * board: progress records are rendered, lines are written above it. At end
 * of file (or flush) what is left is written out and the descriptor closed. */
static void drain_err(struct worker *w, int slot, int flush)
{
    while (w->errfd >= 0 && w->line) {
        if (w->line_len == LINE_MAX_BYTES) /* a very long line: out it goes as it is */
            w->line_len = sbot_progress_feed(slot, w->label, w->line, w->line_len, 1);
        ssize_t n = read(w->errfd, w->line + w->line_len, LINE_MAX_BYTES - w->line_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                close(w->errfd);
                w->errfd = -1;
                flush = 1;
            }
            break;
        }
        w->line_len = sbot_progress_feed(slot, w->label, w->line, w->line_len + (size_t)n, 0);
    }
    if (flush && w->line && w->line_len > 0)
        w->line_len = sbot_progress_feed(slot, w->label, w->line, w->line_len, 1);
}

static int fleet_release(lua_State *L)
{
    release(lua_touserdata(L, 1));
    return 0;
}

/* Read what is available from w's pipe into the chunk list at chunks[index].
 * At end of file the pipe is closed (w->fd = -1): the worker is exiting. */
static void drain(lua_State *L, int chunks, struct worker *w)
{
    char buf[65536];
    while (w->fd >= 0) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            close(w->fd);
            w->fd = -1;
        }
        if (n <= 0)
            return;
        lua_rawgeti(L, chunks, w->index);
        lua_pushlstring(L, buf, (size_t)n);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 1);
    }
}

/* The worker exited with status st: store its result entry in results.
 * interrupt_name: "Ctrl-C" or "SIGTERM" when the whole map was stopped. */
static void finish(lua_State *L, struct fleet *f, int chunks, int results, struct worker *w, int st,
                   const char *interrupt_name)
{
    double ms = (now_s() - w->started) * 1000.0;
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "concat");
    lua_remove(L, -2);
    lua_rawgeti(L, chunks, w->index);
    lua_call(L, 1, 1);
    int text = lua_gettop(L);

    lua_createtable(L, 0, 6);
    int e = lua_gettop(L);
    lua_pushinteger(L, w->index);
    lua_setfield(L, e, "item");
    lua_pushinteger(L, w->pid);
    lua_setfield(L, e, "pid");
    lua_pushinteger(L, (lua_Integer)floor(ms + 0.5));
    lua_setfield(L, e, "ms");

    /* what the worker sent back, if anything: {ok, value | error} */
    int sent = 0, sent_ok = 0;
    if (!WIFSIGNALED(st) && lua_rawlen(L, text) > 0) {
        lua_getglobal(L, "require");
        lua_pushliteral(L, "sbot.json");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "decode");
        lua_remove(L, -2);
        lua_pushvalue(L, text);
        lua_call(L, 1, 2);
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TTABLE) {
            sent = 1;
            lua_getfield(L, -1, "ok");
            sent_ok = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    } else {
        lua_pushnil(L);
    }
    int outcome = lua_gettop(L); /* the decoded table, or nil/garbage */

    int ok = 0;
    const char *reason = NULL;
    char secs[32], how[128];
    snprintf(secs, sizeof secs, "%.1f", ms / 1000.0);
    if (w->killed == 2)
        snprintf(how, sizeof how, "stopped with SIGTERM, then killed (SIGKILL) at the second %s",
                 interrupt_name ? interrupt_name : "stop");
    else if (w->killed)
        snprintf(how, sizeof how, "stopped with SIGTERM, then killed (SIGKILL) after the %.1f s grace "
                 "period", f->grace);
    else
        snprintf(how, sizeof how, "stopped with SIGTERM, it exited %.1f s later",
                 now_s() - w->stopped);
    if (w->timed_out) {
        reason = "timeout";
        lua_pushfstring(L, "worker for item %I (pid %d) timed out after %s s: %s", w->index,
                        (int)w->pid, secs, how);
    } else if (w->stopped > 0) {
        reason = "interrupted";
        lua_pushfstring(L, "fleet.map: interrupted! (%s) while item was running: its worker was %s",
                        interrupt_name, how);
    } else if (WIFSIGNALED(st)) {
        reason = "crash";
        lua_pushfstring(L, "worker for item %I (pid %d) crashed: killed by signal %d (%s)",
                        w->index, (int)w->pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
    } else if (lua_rawlen(L, text) == 0) {
        reason = "exit";
        lua_pushfstring(L, "worker for item %I (pid %d) exited with status %d and no result",
                        w->index, (int)w->pid, WEXITSTATUS(st));
    } else if (!sent) {
        reason = "exit";
        lua_pushfstring(L, "worker for item %I (pid %d) sent an unreadable result", w->index,
                        (int)w->pid);
    } else if (sent_ok) {
        ok = 1;
    } else {
        reason = "error";
        lua_getfield(L, outcome, "error");
    }
    /* a stopped worker that still sent its value back keeps it: the
     * results of what it finished (and how far it got) are worth keeping */
    if (sent && sent_ok) {
        lua_getfield(L, outcome, "value");
        lua_setfield(L, e, "value");
    }
    sbot_log(L, SBOT_DEBUG, "fleet: item %d (pid %d) finished: %s", (int)w->index, (int)w->pid,
             ok ? "ok" : reason);
    lua_pushboolean(L, ok);
    lua_setfield(L, e, "ok");
    if (!ok) {
        lua_setfield(L, e, "error");
        lua_pushstring(L, reason);
        lua_setfield(L, e, "reason");
    }
    lua_pushvalue(L, e);
    lua_rawseti(L, results, w->index);
    lua_settop(L, text - 1);
    if (w->fd >= 0)
        close(w->fd);
    if (w->pidfd >= 0)
        close(w->pidfd);
    w->fd = w->pidfd = -1;
    w->pid = 0;
    if (f->board) {
        int slot = (int)(w - f->w);
        drain_err(w, slot, 1);
        if (w->errfd >= 0)
            close(w->errfd);
        w->errfd = -1;
        w->line_len = 0;
        sbot_progress_slot_done(slot);
    }
}

static int start(lua_State *L, struct fleet *f, struct worker *w, int items, int fn,
                 lua_Integer index, double timeout)
{
    int p[2], e[2] = {-1, -1};
    /* the label: labels[index] (the fleet userdata's user value), else "item N" */
    lua_getiuservalue(L, 5, 1);
    if (lua_type(L, -1) == LUA_TTABLE && lua_rawgeti(L, -1, index) == LUA_TSTRING)
        snprintf(w->label, sizeof w->label, "%s", lua_tostring(L, -1));
    else
        snprintf(w->label, sizeof w->label, "item %lld", (long long)index);
    lua_settop(L, 5);
    if (pipe2(p, O_CLOEXEC) != 0)
        return errno;
    /* board: the worker's stderr is a socket to us (records go with
     * MSG_DONTWAIT, so a slow parent never blocks a worker's progress) */
    if (f->board && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e) != 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        return err;
    }
    if (f->board && !w->line && !(w->line = malloc(LINE_MAX_BYTES))) {
        close(p[0]);
        close(p[1]);
        close(e[0]);
        close(e[1]);
        return ENOMEM;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        if (e[0] >= 0) {
            close(e[0]);
            close(e[1]);
        }
        return err;
    }
    if (pid == 0) {
        for (int i = 0; i < f->jobs; i++) {
            if (f->w[i].fd >= 0)
                close(f->w[i].fd);
            if (f->w[i].pidfd >= 0)
                close(f->w[i].pidfd);
            if (f->w[i].errfd >= 0)
                close(f->w[i].errfd);
        }
        close(p[0]);
        if (e[0] >= 0)
            close(e[0]);
        child(L, items, fn, index, p[1], parent, e[1], w->label);
    }
    setpgid(pid, pid); /* also done by the child; whichever runs first */
    close(p[1]);
    if (e[0] >= 0) {
        close(e[1]);
        fcntl(e[0], F_SETFL, fcntl(e[0], F_GETFL) | O_NONBLOCK);
        w->errfd = e[0];
        w->line_len = 0;
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    w->pid = pid;
    w->fd = p[0];
    w->pidfd = pidfd_open(pid, 0); /* -1 on old kernels: then waitpid is polled */
    if (w->pidfd >= 0)
        fcntl(w->pidfd, F_SETFD, FD_CLOEXEC);
    w->index = index;
    w->started = now_s();
    w->deadline = timeout > 0 ? w->started + timeout : 0;
    w->timed_out = 0;
    sbot_log(L, SBOT_DEBUG, "fleet: item %d in worker pid %d", (int)index, (int)pid);
    return 0;
}

/* Item index (1-based) entries of results that are still empty get an
 * "interrupted" error: the items that never ran. */
static void mark_not_started(lua_State *L, int results, lua_Integer n, const char *why)
{
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, results, i) == LUA_TNIL) {
            lua_createtable(L, 0, 4);
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "item");
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "ok");
            lua_pushliteral(L, "interrupted");
            lua_setfield(L, -2, "reason");
            lua_pushfstring(L, "fleet.map: interrupted! (%s) before item started", why);
            lua_setfield(L, -2, "error");
            lua_rawseti(L, results, i);
        }
        lua_pop(L, 1);
    }
}

/* fleet.map(items, fn [, {jobs = 4, timeout = seconds, grace = 20, partial = false}])
 *   -> results [, interrupted]
 * results[i] = {ok = true, value = v, item = i, pid, ms}
 *            | {ok = false, error = msg, reason = "error"|"crash"|"timeout"|"exit"|"interrupted",
 *               item, pid, ms [, value = what a stopped worker still sent back]} */
static int l_map(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_Integer jobs = 4;
    double timeout = 0, grace = 20;
    int partial = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "jobs") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > MAX_JOBS)
                return luaL_error(L, "fleet.map: jobs must be an integer from 1 to %d", MAX_JOBS);
            jobs = lua_tointeger(L, -1);
        }
        if (lua_getfield(L, 3, "timeout") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0) ||
                !isfinite(lua_tonumber(L, -1)))
                return luaL_error(L, "fleet.map: timeout must be a number of seconds >= 0");
            timeout = lua_tonumber(L, -1);
        }
        if (lua_getfield(L, 3, "grace") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0) ||
                !isfinite(lua_tonumber(L, -1)))
                return luaL_error(L, "fleet.map: grace must be a number of seconds >= 0");
            grace = lua_tonumber(L, -1);
        }
        lua_getfield(L, 3, "partial");
        partial = lua_toboolean(L, -1);
        lua_pop(L, 4);
        if (lua_getfield(L, 3, "labels") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TTABLE)
                return luaL_error(L, "fleet.map: labels must be a list of strings (one per item)");
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 1); i++) {
                int t = lua_rawgeti(L, -1, i);
                if (t != LUA_TSTRING && t != LUA_TNIL)
                    return luaL_error(L, "fleet.map: labels[%I] must be a string, got %s", i, lua_typename(L, t));
                lua_pop(L, 1);
            }
        }
        lua_replace(L, 3); /* opts -> labels (or nil) */
    }
    lua_settop(L, 3);
    lua_pushvalue(L, 3);
    lua_setfield(L, LUA_REGISTRYINDEX, "sbot.fleet.labels"); /* kept until the userdata holds it */
    lua_settop(L, 2);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    lua_createtable(L, (int)n, 0); /* 3: results */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "array_mt");
    lua_setmetatable(L, 3);
    lua_pop(L, 1);
    if (n == 0)
        return 1;
    lua_createtable(L, (int)n, 0); /* 4: chunks per item */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_newtable(L);
        lua_rawseti(L, 4, i);
    }
    if (jobs > n)
        jobs = n;

    struct fleet *f = lua_newuserdatauv(L, sizeof *f, 1); /* 5 */
    memset(f, 0, sizeof *f);
    for (int i = 0; i < MAX_JOBS; i++)
        f->w[i].fd = f->w[i].pidfd = f->w[i].errfd = -1;
    lua_getfield(L, LUA_REGISTRYINDEX, "sbot.fleet.labels");
    lua_setiuservalue(L, 5, 1);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "sbot.fleet.labels");
    f->jobs = (int)jobs;
    f->grace = grace;
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, fleet_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, fleet_release);
    lua_setfield(L, -2, "__close");
    lua_setmetatable(L, 5);
    lua_toclose(L, 5);
    f->board = sbot_progress_board_start(L);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    stop_count = 0;
    sigaction(SIGINT, &sa, &f->old_int);
    sigaction(SIGTERM, &sa, &f->old_term);
    f->handlers = 1;

    lua_Integer next = 1, done = 0;
    const char *interrupted = NULL; /* "Ctrl-C" or "SIGTERM" once the parent was asked to stop */
    for (;;) {
        double now = now_s();
        if (stop_signal && !interrupted) {
            /* stop gracefully: no new item; each running worker gets SIGTERM */
            interrupted = stop_signal == SIGINT ? "Ctrl-C" : "SIGTERM";
            int reason = stop_signal == SIGINT ? SBOT_STOP_CTRL_C : SBOT_STOP_SIGTERM;
            int k = 0;
            for (int i = 0; i < f->jobs; i++)
                k += f->w[i].pid > 0;
            sbot_log(L, SBOT_WARN, "fleet: %s: stopping %d running worker(s) (grace period %.1f s; "
                     "%s again kills them now)", interrupted, k, grace, interrupted);
            for (int i = 0; i < f->jobs; i++)
                stop_worker(f, &f->w[i], reason, now);
        }
        int running = 0;
        for (int i = 0; i < f->jobs; i++)
            running += f->w[i].pid > 0;
        if (interrupted && (stop_count > 1 || running == 0))
            break;
        if (!interrupted && done == n)
            break;
        for (int i = 0; !interrupted && i < f->jobs && next <= n; i++) {
            if (f->w[i].pid == 0) {
                int err = start(L, f, &f->w[i], 1, 2, next, timeout);
                if (err) {
                    release(f);
                    return luaL_error(L, "fleet.map: cannot start a worker for item %d: %s",
                                      (int)next, strerror(err));
                }
                next++;
            }
        }
        struct pollfd pfd[3 * MAX_JOBS];
        int np = 0;
        double wait_ms = f->board ? 100 : 200; /* the board's elapsed times move */
        for (int i = 0; i < f->jobs; i++) {
            struct worker *w = &f->w[i];
            if (w->pid == 0)
                continue;
            if (w->fd >= 0) {
                pfd[np].fd = w->fd;
                pfd[np].events = POLLIN;
                np++;
            }
            if (w->errfd >= 0) {
                pfd[np].fd = w->errfd;
                pfd[np].events = POLLIN;
                np++;
            }
            if (w->pidfd >= 0) {
                pfd[np].fd = w->pidfd;
                pfd[np].events = POLLIN;
                np++;
            } else if (w->fd < 0 && wait_ms > 2) {
                wait_ms = 2; /* result read, no pidfd: poll waitpid for the exit */
            }
            double until = w->stopped > 0 ? (w->killed ? 0 : w->kill_at)
                                          : (w->deadline > 0 ? w->deadline : 0);
            if (until > 0) {
                double left = (until - now) * 1000.0;
                if (left < wait_ms)
                    wait_ms = left < 0 ? 0 : left;
            }
        }
        poll(pfd, (nfds_t)np, (int)wait_ms + 1);
        now = now_s();
        for (int i = 0; i < f->jobs; i++) {
            struct worker *w = &f->w[i];
            if (w->pid == 0)
                continue;
            drain(L, 4, w);
            if (f->board)
                drain_err(w, i, 0);
            if (w->deadline > 0 && !w->timed_out && w->stopped == 0 && now >= w->deadline) {
                w->timed_out = 1;
                sbot_log(L, SBOT_WARN, "fleet: item %d (pid %d) passed its time limit: stopping it",
                         (int)w->index, (int)w->pid);
                stop_worker(f, w, SBOT_STOP_TIMEOUT, now);
            }
            if (w->stopped > 0 && !w->killed && now >= w->kill_at) {
                w->killed = 1;
                sbot_log(L, SBOT_WARN, "fleet: item %d (pid %d) still running after the %.1f s "
                         "grace period: killing it", (int)w->index, (int)w->pid, grace);
                kill(-w->pid, SIGKILL);
                kill(w->pid, SIGKILL);
            }
            /* Look for the exit without reaping (WNOWAIT): while the worker
             * is an unreaped zombie its pid, and so its process group id,
             * cannot be reused, so killing the group hits only what the
             * worker left behind. Then reap. */
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == w->pid) {
                int st = 0;
                kill(-w->pid, SIGKILL);
                while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
                    ;
                drain(L, 4, w);
                finish(L, f, 4, 3, w, st, interrupted);
                done++;
            }
        }
        if (f->board)
            sbot_progress_tick();
    }
    if (interrupted) {
        /* a second Ctrl-C: whoever is still running is killed now */
        for (int i = 0; i < f->jobs; i++) {
            struct worker *w = &f->w[i];
            if (w->pid > 0) {
                w->killed = 2;
                kill(-w->pid, SIGKILL);
                kill(w->pid, SIGKILL);
                int st = 0;
                while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
                    ;
                drain(L, 4, w);
                finish(L, f, 4, 3, w, st, interrupted);
            }
        }
        release(f);
        if (!partial)
            return luaL_error(L, "fleet.map: interrupted! (%s); every worker was stopped",
                              interrupted);
        mark_not_started(L, 3, n, interrupted);
        lua_settop(L, 3);
        lua_pushstring(L, interrupted);
        return 2;
    }
    release(f); /* every worker is reaped: this only restores and clears the board */
    lua_settop(L, 3);
    return 1;
}

int luaopen_sbot_fleet(lua_State *L)
{
    static const luaL_Reg fns[] = {{"map", l_map}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
