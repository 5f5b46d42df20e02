/* sys.c: sbot.sys - process and host primitives the Lua library needs and
 * plain Lua lacks: running a program (spawn), pids and signals, host name, a
 * monotonic clock and UTC timestamps. Files are sbot.fsio, hashes and
 * randomness sbot.crypto. Expected failures return nil, "what: why",
 * "E<NAME>" (docs/errors.md); misuse raises. */
#define _GNU_SOURCE
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail(lua_State *L, const char *what, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushstring(L, sbot_errno_name(err));
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

/* Is pid a zombie (exited, waiting for its parent to reap it)? Linux's
 * /proc/<pid>/stat: "pid (comm) S ...", comm may hold spaces and ')'. */
static int is_zombie(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

/* sys.pid_alive(pid) -> boolean: a process with that pid runs (on this host).
 * A zombie has exited (its memory, files and sockets are gone) and only
 * waits for its parent -- init for a daemon -- to reap it: not alive. */
static int l_pid_alive(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    /* above INT_MAX the cast to pid_t could give -1 (every process) or a
     * process group: only real pids get through */
    luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "pid must be a positive process id");
    int exists = kill((pid_t)pid, 0) == 0 || errno == EPERM;
    lua_pushboolean(L, exists && !is_zombie((pid_t)pid));
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

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_monotime(lua_State *L)
{
    lua_pushnumber(L, now_mono());
    return 1;
}

/* ---- spawn ----------------------------------------------------------------
 * sys.spawn{argv, cwd, env, stdin, timeout, output_limit, progress}: posix_spawn (no
 * shell), the child in its own process group, stdin from a string, stdout and
 * stderr captured up to a limit, the group stopped (TERM, then KILL after
 * KILL_GRACE) at the deadline and on SIGINT/SIGTERM.
 *
 * Everything the call acquires (pipes, the pidfd, capture buffers, the
 * running child, the temporary signal handlers) belongs to a userdata created
 * closed before anything is acquired; its __gc/__close release kills and
 * reaps a child still running, so an error at any point leaks nothing. No Lua
 * call happens between posix_spawn and the child being reaped. */

#define SPAWN_MT "sbot.sys.spawn"
#define DEFAULT_SPAWN_TIMEOUT 60.0
#define DEFAULT_OUTPUT_LIMIT (16 * 1024 * 1024)
#define KILL_GRACE 1.0 /* seconds between SIGTERM and SIGKILL to the group */

struct capture {
    int fd;
    char *p;
    size_t len, cap;
    int truncated;
};

struct child {
    pid_t pid;      /* > 0 until reaped */
    pid_t pgid;     /* the child's process group (its pid) */
    int pidfd;      /* readable when the child exits; -1 without kernel support */
    int in_fd;      /* our end of the child's stdin, -1 once closed */
    int child_fds[3]; /* the child's ends, closed once it runs */
    struct capture out, err;
    int wstatus;
    /* the temporary SIGINT/SIGTERM handlers while the child runs */
    int guarding;
    int guarded[2]; /* SIGINT, SIGTERM: handler installed */
    struct sigaction old_act[2];
    sigset_t old_mask;
};

static const int stop_signals[2] = {SIGINT, SIGTERM};

/* Process-wide by nature: a signal handler has nowhere else to write. */
static volatile sig_atomic_t spawn_stop_signal;

static void on_stop_signal(int sig)
{
    spawn_stop_signal = sig;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void unguard(struct child *c)
{
    if (!c->guarding)
        return;
    for (int i = 0; i < 2; i++)
        if (c->guarded[i])
            sigaction(stop_signals[i], &c->old_act[i], NULL);
    pthread_sigmask(SIG_SETMASK, &c->old_mask, NULL);
    c->guarding = 0;
}

static void child_release(struct child *c)
{
    if (c->pid > 0) {
        kill(-c->pgid, SIGKILL);
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        c->pid = 0;
    }
    close_fd(&c->pidfd);
    close_fd(&c->in_fd);
    for (int i = 0; i < 3; i++)
        close_fd(&c->child_fds[i]);
    close_fd(&c->out.fd);
    close_fd(&c->err.fd);
    free(c->out.p);
    free(c->err.p);
    c->out.p = c->err.p = NULL;
    unguard(c);
}

static int child_gc(lua_State *L)
{
    child_release(luaL_checkudata(L, 1, SPAWN_MT));
    return 0;
}

/* A pipe whose both ends are >= 3 (so dup2 onto 0..2 in the child always
 * clears close-on-exec) and close-on-exec here. */
static int make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 3) {
            int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            int e = errno;
            close(fds[i]);
            fds[i] = moved;
            if (moved < 0) {
                close(fds[1 - i]);
                errno = e;
                return -1;
            }
        }
    }
    return 0;
}

/* Read what the pipe has; beyond limit the bytes are read and dropped (the
 * child must not block on a full pipe). Closes the fd at end of file. */
static void drain(struct capture *cap, size_t limit)
{
    char scratch[16384];
    while (cap->fd >= 0) {
        char *dst = scratch;
        size_t room = sizeof scratch;
        if (cap->len < limit) {
            if (cap->cap - cap->len < 65536 && cap->cap < limit) {
                size_t want = cap->cap ? cap->cap * 2 : 65536;
                if (want > limit)
                    want = limit;
                char *p = realloc(cap->p, want);
                if (p) {
                    cap->p = p;
                    cap->cap = want;
                }
            }
            if (cap->cap > cap->len) {
                dst = cap->p + cap->len;
                room = cap->cap - cap->len;
            }
        }
        ssize_t n = read(cap->fd, dst, room);
        if (n > 0) {
            if (dst == scratch)
                cap->truncated = 1;
            else
                cap->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_fd(&cap->fd); /* end of file, or an error: nothing more will come */
    }
}

static void reap(struct child *c, int block)
{
    if (c->pid <= 0)
        return;
    int st;
    pid_t r;
    while ((r = waitpid(c->pid, &st, block ? 0 : WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == c->pid || (r < 0 && errno == ECHILD)) {
        c->wstatus = r == c->pid ? st : 0;
        c->pid = 0;
        close_fd(&c->pidfd);
    }
}

static void signal_group(struct child *c, int sig)
{
    if (kill(-c->pgid, sig) != 0 && c->pid > 0)
        kill(c->pid, sig);
}

static const char *const spawn_keys[] = {"argv", "cwd", "env", "stdin", "timeout",
                                         "output_limit", "progress", NULL};

/* The string at idx, or a secret object revealed (and registered with the
 * log redactor) into the anchor table; NULL for other types. */
static const char *string_or_secret(lua_State *L, int idx, int anchor, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    if (!sbot_is_secret(L, idx))
        return NULL;
    lua_getfield(L, idx, "reveal");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "sys.spawn: a secret's reveal() returned %s, expected a string",
                   luaL_typename(L, -1));
    const char *s = lua_tolstring(L, -1, len);
    sbot_log_add_secret(L, s, *len);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

/* argv: a list of strings (numbers converted) -> NULL-terminated char *[] in
 * a userdata left on the stack. */
static char **build_argv(lua_State *L, int opts, int anchor)
{
    if (lua_getfield(L, opts, "argv") != LUA_TTABLE)
        luaL_error(L, "sys.spawn: 'argv' must be a non-empty list of strings, got %s",
                   luaL_typename(L, -1));
    int t = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, t);
    if (n < 1 || n > 100000)
        luaL_error(L, "sys.spawn: 'argv' must be a non-empty list of strings (got %I elements)", n);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
            luaL_error(L, "sys.spawn: 'argv' must be a list (1..n), it has the key %s",
                       luaL_tolstring(L, -1, NULL));
    }
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        int ty = lua_rawgeti(L, t, i);
        if (ty == LUA_TNUMBER) {
            lua_pushstring(L, lua_tostring(L, -1)); /* a copy: never convert the table value */
            lua_remove(L, -2);
        } else if (ty != LUA_TSTRING) {
            if (sbot_is_secret(L, -1))
                luaL_error(L, "sys.spawn: argv[%I] is a secret: pass it in 'env' or 'stdin' (every "
                              "user of the host can read a process's arguments)", i);
            luaL_error(L, "sys.spawn: argv[%I] must be a string, got %s", i, luaL_typename(L, -1));
        }
        size_t len;
        const char *a = lua_tolstring(L, -1, &len);
        if (strlen(a) != len)
            luaL_error(L, "sys.spawn: argv[%I] contains a NUL byte", i);
        if (i == 1 && len == 0)
            luaL_error(L, "sys.spawn: argv[1] (the program) is empty");
        argv[i - 1] = (char *)a;
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    }
    argv[n] = NULL;
    lua_remove(L, t);
    return argv;
}

/* env: name -> string | number | secret; the child's whole environment.
 * NULL (nothing pushed) when absent: the child inherits ours. */
static char **build_env(lua_State *L, int opts, int anchor)
{
    int ty = lua_getfield(L, opts, "env");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (ty != LUA_TTABLE)
        luaL_error(L, "sys.spawn: 'env' must be a table name -> value, got %s", luaL_typename(L, -1));
    int t = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        n++;
    }
    char **envp = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "sys.spawn: env keys must be variable names, got %s", luaL_typename(L, -2));
        size_t nl;
        const char *name = lua_tolstring(L, -2, &nl);
        if (nl == 0 || strlen(name) != nl || strchr(name, '='))
            luaL_error(L, "sys.spawn: env: '%s' is not a variable name (empty, '=' or NUL)", name);
        size_t vl;
        const char *value;
        if (lua_type(L, v) == LUA_TNUMBER) {
            value = lua_pushstring(L, lua_tostring(L, v));
            vl = strlen(value);
        } else {
            value = string_or_secret(L, v, anchor, &vl);
            if (!value)
                luaL_error(L, "sys.spawn: env.%s must be a string, number or secret, got %s", name,
                           luaL_typename(L, v));
        }
        if (strlen(value) != vl)
            luaL_error(L, "sys.spawn: env.%s contains a NUL byte", name);
        lua_pushfstring(L, "%s=%s", name, value);
        envp[k++] = (char *)lua_tostring(L, -1);
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
        lua_settop(L, v - 1);
    }
    envp[k] = NULL;
    lua_remove(L, t);
    return envp;
}

static double opt_seconds(lua_State *L, int opts, const char *key, double dflt)
{
    int ty = lua_getfield(L, opts, key);
    double v = dflt;
    if (ty != LUA_TNIL) {
        if (ty != LUA_TNUMBER)
            luaL_error(L, "sys.spawn: '%s' must be a number of seconds, got %s", key,
                       luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v > 0)) /* NaN too */
            luaL_error(L, "sys.spawn: '%s' must be > 0 seconds (math.huge: no limit), got %s", key,
                       lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* Install the SIGINT/SIGTERM handlers (unless a signal is ignored) and block
 * them and SIGPIPE outside ppoll. *wait_mask: what ppoll runs with. */
static void guard(struct child *c, sigset_t *wait_mask)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    spawn_stop_signal = 0;
    for (int i = 0; i < 2; i++) {
        struct sigaction now;
        sigaction(stop_signals[i], NULL, &now);
        if (now.sa_handler == SIG_IGN)
            continue;
        sigaddset(&block, stop_signals[i]);
    }
    pthread_sigmask(SIG_BLOCK, &block, &c->old_mask);
    c->guarding = 1;
    for (int i = 0; i < 2; i++) {
        if (!sigismember(&block, stop_signals[i]))
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(stop_signals[i], &sa, &c->old_act[i]);
        c->guarded[i] = 1;
    }
    *wait_mask = c->old_mask;
    sigaddset(wait_mask, SIGPIPE); /* a write to a closed stdin is EPIPE, never a signal */
}

/* A SIGPIPE our writes raised is consumed before the mask is restored
 * (unless one was already pending before the call). */
static void consume_sigpipe(const sigset_t *old_mask)
{
    sigset_t pending, pipe_only;
    if (sigismember(old_mask, SIGPIPE))
        return;
    sigemptyset(&pending);
    if (sigpending(&pending) != 0 || !sigismember(&pending, SIGPIPE))
        return;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
        ;
}

/* sys.spawn(opts) -> {status, signal, stdout, stderr, timed_out?, truncated?}
 *                  | nil, message, ENAME (the program could not be started) */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; spawn_keys[i]; i++)
                ok |= strcmp(lua_tostring(L, -1), spawn_keys[i]) == 0;
        if (!ok)
            return luaL_error(L, "sys.spawn: unknown option '%s' (expected argv, cwd, env, stdin, "
                                 "timeout, output_limit, progress)", luaL_tolstring(L, -1, NULL));
    }
    lua_newtable(L); /* 2: anchor of every string the child gets */
    char **argv = build_argv(L, 1, 2);   /* 3 */
    char **envp = build_env(L, 1, 2);    /* 4 if any */
    const char *cwd = NULL;
    if (lua_getfield(L, 1, "cwd") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "sys.spawn: 'cwd' must be a string, got %s", luaL_typename(L, -1));
        cwd = lua_tostring(L, -1);
    }
    lua_pop(L, 1);
    const char *input = NULL;
    size_t input_len = 0;
    if (lua_getfield(L, 1, "stdin") != LUA_TNIL) {
        input = string_or_secret(L, lua_gettop(L), 2, &input_len);
        if (!input)
            return luaL_error(L, "sys.spawn: 'stdin' must be a string or secret, got %s",
                              luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    double timeout = opt_seconds(L, 1, "timeout", DEFAULT_SPAWN_TIMEOUT);
    size_t limit = DEFAULT_OUTPUT_LIMIT;
    if (lua_getfield(L, 1, "output_limit") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > (1LL << 40))
            return luaL_error(L, "sys.spawn: 'output_limit' must be an integer number of bytes >= 0");
        limit = (size_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    /* progress = "what": the run is a wait of sbot.progress (docs/progress.md) */
    const char *progress = NULL;
    if (lua_getfield(L, 1, "progress") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "sys.spawn: 'progress' must be a string (the wait's name), got %s",
                              luaL_typename(L, -1));
        progress = lua_tostring(L, -1); /* anchored in opts */
    }
    lua_pop(L, 1);
    const char *prog = argv[0];

    if (cwd) {
        struct stat st;
        int e = stat(cwd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
        if (e) {
            lua_pushnil(L);
            lua_pushfstring(L, "sys.spawn %s: cwd %s: %s", prog, cwd, strerror(e));
            lua_pushstring(L, sbot_errno_name(e));
            return 3;
        }
    }

    struct child *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->pidfd = c->in_fd = c->out.fd = c->err.fd = -1;
    c->child_fds[0] = c->child_fds[1] = c->child_fds[2] = -1;
    if (luaL_newmetatable(L, SPAWN_MT)) {
        lua_pushcfunction(L, child_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, child_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    int box = lua_gettop(L);
    /* begun before anything is acquired; ended on every way out (below).
     * While the child runs only sbot_progress_tick is called: no Lua. */
    if (progress)
        sbot_progress(L, progress, SBOT_PROGRESS_UNKNOWN);

    int p[2], e = 0;
    if (make_pipe(p) != 0)
        goto os_failure;
    c->out.fd = p[0];
    c->child_fds[1] = p[1];
    if (make_pipe(p) != 0)
        goto os_failure;
    c->err.fd = p[0];
    c->child_fds[2] = p[1];
    if (input) {
        if (make_pipe(p) != 0)
            goto os_failure;
        c->child_fds[0] = p[0];
        c->in_fd = p[1];
    }

    sigset_t wait_mask;
    guard(c, &wait_mask);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    if ((e = posix_spawn_file_actions_init(&fa)) != 0)
        goto spawn_failure;
    if ((e = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        goto spawn_failure;
    }
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    if (c->child_fds[0] >= 0)
        e = posix_spawn_file_actions_adddup2(&fa, c->child_fds[0], 0);
    else
        e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, c->child_fds[1], 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, c->child_fds[2], 2);
    if (!e && cwd)
        e = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid = 0;
    if (!e)
        e = posix_spawnp(&pid, prog, &fa, &attr, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e)
        goto spawn_failure;
    c->pid = c->pgid = pid;
    c->pidfd = pidfd_open(pid, 0); /* -1 on old kernels: then waitpid is polled */
    for (int i = 0; i < 3; i++)
        close_fd(&c->child_fds[i]);
    fcntl(c->out.fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err.fd, F_SETFL, O_NONBLOCK);
    if (c->in_fd >= 0)
        fcntl(c->in_fd, F_SETFL, O_NONBLOCK);

    double started = now_mono();
    double deadline = isinf(timeout) ? HUGE_VAL : started + timeout;
    double term_at = -1, kill_at = -1; /* when TERM / KILL went to the group */
    int timed_out = 0, stopped_by = 0;
    size_t in_off = 0;
    if (c->in_fd >= 0 && input_len == 0)
        close_fd(&c->in_fd);
    while (c->pid > 0 || c->out.fd >= 0 || c->err.fd >= 0) {
        double now = now_mono();
        if (spawn_stop_signal && !stopped_by)
            stopped_by = spawn_stop_signal;
        if (term_at < 0 && (stopped_by || now >= deadline)) {
            timed_out = !stopped_by;
            signal_group(c, SIGTERM);
            term_at = now;
        }
        if (term_at >= 0 && kill_at < 0 && now >= term_at + KILL_GRACE) {
            signal_group(c, SIGKILL);
            kill_at = now;
        }
        if (kill_at >= 0 && now >= kill_at + KILL_GRACE) {
            /* what still holds the pipes left the group: stop reading */
            close_fd(&c->out.fd);
            close_fd(&c->err.fd);
            close_fd(&c->in_fd);
            reap(c, 1);
            break;
        }
        struct pollfd pf[4];
        int np = 0, i_out = -1, i_err = -1, i_in = -1, i_pid = -1;
        if (c->out.fd >= 0) {
            i_out = np;
            pf[np++] = (struct pollfd){c->out.fd, POLLIN, 0};
        }
        if (c->err.fd >= 0) {
            i_err = np;
            pf[np++] = (struct pollfd){c->err.fd, POLLIN, 0};
        }
        if (c->in_fd >= 0) {
            i_in = np;
            pf[np++] = (struct pollfd){c->in_fd, POLLOUT, 0};
        }
        if (c->pid > 0 && c->pidfd >= 0) {
            i_pid = np;
            pf[np++] = (struct pollfd){c->pidfd, POLLIN, 0};
        }
        double next = term_at < 0 ? deadline : kill_at < 0 ? term_at + KILL_GRACE
                                                           : kill_at + KILL_GRACE;
        double wait = next - now;
        if (c->pid > 0 && c->pidfd < 0 && wait > 0.02)
            wait = 0.02;
        if (progress && wait > 0.25) /* a board on this terminal shows the time go by */
            wait = 0.25;
        struct timespec ts, *tsp = NULL;
        if (wait < 3600.0) {
            if (wait < 0)
                wait = 0;
            ts.tv_sec = (time_t)wait;
            ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
            tsp = &ts;
        }
        int r = ppoll(pf, (nfds_t)np, tsp, &wait_mask);
        if (progress)
            sbot_progress_tick();
        if (r < 0)
            continue; /* EINTR: a stop signal, looked at above */
        if (i_out >= 0 && pf[i_out].revents)
            drain(&c->out, limit);
        if (i_err >= 0 && pf[i_err].revents)
            drain(&c->err, limit);
        if (i_in >= 0 && pf[i_in].revents) {
            while (c->in_fd >= 0 && in_off < input_len) {
                ssize_t w = write(c->in_fd, input + in_off, input_len - in_off);
                if (w > 0)
                    in_off += (size_t)w;
                else if (w < 0 && errno == EINTR)
                    continue;
                else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                else
                    close_fd(&c->in_fd); /* EPIPE: the child does not read its input */
            }
            if (in_off >= input_len)
                close_fd(&c->in_fd);
        }
        if (c->pid > 0 && (c->pidfd < 0 || (i_pid >= 0 && pf[i_pid].revents)))
            reap(c, 0);
        if (c->pid <= 0)
            close_fd(&c->in_fd); /* nobody left to read it */
    }
    double ms = (now_mono() - started) * 1000.0;
    consume_sigpipe(&c->old_mask);
    unguard(c);
    if (progress)
        sbot_progress_end(L, progress);
    if (stopped_by) {
        int dfl = 0;
        for (int i = 0; i < 2; i++)
            if (stop_signals[i] == stopped_by && c->old_act[i].sa_handler == SIG_DFL)
                dfl = 1;
        child_release(c);
        if (dfl) /* nobody handles it: die of it, as without us (the child is gone) */
            raise(stopped_by);
        return luaL_error(L, "sys.spawn: interrupted! (%s); %s (process group %d) was stopped",
                          stopped_by == SIGINT ? "Ctrl-C" : "SIGTERM", prog, (int)c->pgid);
    }

    lua_createtable(L, 0, 6);
    if (WIFEXITED(c->wstatus)) {
        lua_pushinteger(L, WEXITSTATUS(c->wstatus));
        lua_setfield(L, -2, "status");
    } else if (WIFSIGNALED(c->wstatus)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(c->wstatus));
        if (abbrev)
            lua_pushstring(L, abbrev);
        else
            lua_pushfstring(L, "SIG%d", WTERMSIG(c->wstatus));
        lua_setfield(L, -2, "signal");
    }
    lua_pushlstring(L, c->out.p ? c->out.p : "", c->out.len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, c->err.p ? c->err.p : "", c->err.len);
    lua_setfield(L, -2, "stderr");
    if (timed_out) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "timed_out");
    }
    if (c->out.truncated || c->err.truncated) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "truncated");
    }
    if (sbot_log_enabled(L, SBOT_DEBUG)) {
        if (WIFEXITED(c->wstatus))
            sbot_log(L, SBOT_DEBUG, "sys.spawn %s (pid %d): exit %d after %.0f ms%s", prog,
                     (int)c->pgid, WEXITSTATUS(c->wstatus), ms, timed_out ? " (timed out)" : "");
        else
            sbot_log(L, SBOT_DEBUG, "sys.spawn %s (pid %d): signal %d after %.0f ms%s", prog,
                     (int)c->pgid, WTERMSIG(c->wstatus), ms, timed_out ? " (timed out)" : "");
    }
    child_release(c);
    (void)box;
    return 1;

spawn_failure:
    child_release(c);
    if (progress)
        sbot_progress_end(L, progress);
    lua_pushnil(L);
    lua_pushfstring(L, "sys.spawn %s: %s", prog, strerror(e));
    lua_pushstring(L, sbot_errno_name(e));
    return 3;
os_failure:
    e = errno;
    child_release(c);
    if (progress)
        sbot_progress_end(L, progress);
    lua_pushnil(L);
    lua_pushfstring(L, "sys.spawn %s: cannot create a pipe: %s", prog, strerror(e));
    lua_pushstring(L, sbot_errno_name(e));
    return 3;
}

/* sys.check_hostport(s [, port_required]) -> true | nil, "'<s>' <what is
 * wrong>", "invalid": the grammar of sbot_check_hostport (util.h), the one
 * iscsi.probe's portal and redfish.connect's host are checked with. */
static int l_check_hostport(lua_State *L)
{
    size_t len;
    luaL_checktype(L, 1, LUA_TSTRING);
    const char *s = lua_tolstring(L, 1, &len);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TBOOLEAN);
    const char *why = strlen(s) != len ? "is not a host name or an IP address (IPv6 as [addr]:port)"
                                       : sbot_check_hostport(s, lua_toboolean(L, 2));
    if (!why) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "'%s' %s", s, why);
    lua_pushliteral(L, "invalid");
    return 3;
}

/* sys.utc_iso() -> "2026-11-26T12:03:00.123Z" (wall clock, milliseconds) */
static int l_utc_iso(lua_State *L)
{
    char out[40];
    sbot_utc_iso(out, sizeof out);
    lua_pushstring(L, out);
    return 1;
}

/* C API (engine/sbot.h): sys.spawn(opts) with the options table at index opts. */
int sbot_sys_spawn(lua_State *L, int opts)
{
    opts = lua_absindex(L, opts);
    int base = lua_gettop(L);
    lua_pushcfunction(L, l_spawn);
    lua_pushvalue(L, opts);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - base;
}

int luaopen_sbot_sys(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"getpid", l_getpid},       {"hostname", l_hostname},
        {"pid_alive", l_pid_alive}, {"kill", l_kill},
        {"monotime", l_monotime},   {"utc_iso", l_utc_iso},
        {"spawn", l_spawn},         {"check_hostport", l_check_hostport},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
