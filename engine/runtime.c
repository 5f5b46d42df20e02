/* runtime.c: builds the configured lua_State every sbot command runs in. */
#define _GNU_SOURCE /* ppoll */
#include "sbot.h"

#include <lualib.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdint.h>
#include <unistd.h>

/* Core modules are linked in. The others are declared weak: they resolve to
 * NULL in the sbot binary, where they come from the extension library, and to
 * the function itself in test programs linked against that library. */
#define SBOT_CORE_MODULE(name, fn) int fn(lua_State *L);
#define SBOT_MODULE(name, fn) int fn(lua_State *L) __attribute__((weak));
#include "modules.h"
#undef SBOT_MODULE
#undef SBOT_CORE_MODULE

struct module {
    const char *name;
    const char *symbol;
    lua_CFunction builtin;
};

static const struct module preload_list[] = {
#define SBOT_CORE_MODULE(name, fn) {name, #fn, fn},
#define SBOT_MODULE(name, fn) {name, #fn, fn},
#include "modules.h"
#undef SBOT_MODULE
#undef SBOT_CORE_MODULE
    {NULL, NULL, NULL}};

static char lua_dir[PATH_MAX + 64];
static char workflow_dir[PATH_MAX + 64];
static char component_dir[PATH_MAX + 64];
static char ext_path[PATH_MAX + 64];

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Where the Lua library lives: $SBOT_LUA_DIR, else the source tree when this
 * binary is the one in the build tree, else <prefix>/share/sbot/lua relative
 * to the binary, else the configured install prefix. */
static void find_dirs(void)
{
    char exe[PATH_MAX], dir[PATH_MAX + 32];
    const char *env = getenv("SBOT_LUA_DIR");
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (lua_dir[0])
        return;
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
    } else {
        strcpy(exe, ".");
    }
    if (strcmp(exe, SBOT_BUILD_DIR) == 0 && is_dir(SBOT_SOURCE_DIR "/lua")) {
        snprintf(lua_dir, sizeof lua_dir, "%s", SBOT_SOURCE_DIR "/lua");
        snprintf(workflow_dir, sizeof workflow_dir, "%s", SBOT_SOURCE_DIR "/workflows");
        snprintf(component_dir, sizeof component_dir, "%s", SBOT_SOURCE_DIR "/components");
        snprintf(ext_path, sizeof ext_path, "%s/%s", SBOT_BUILD_DIR, SBOT_EXT_NAME);
    } else {
        snprintf(ext_path, sizeof ext_path, "%s/../%s/sbot/%s", exe, SBOT_LIBDIR, SBOT_EXT_NAME);
        if (access(ext_path, R_OK) != 0)
            snprintf(ext_path, sizeof ext_path, "%s/%s/sbot/%s", SBOT_INSTALL_PREFIX, SBOT_LIBDIR,
                     SBOT_EXT_NAME);
        snprintf(dir, sizeof dir, "%s/../share/sbot", exe);
        if (!is_dir(dir))
            snprintf(dir, sizeof dir, "%s", SBOT_INSTALL_PREFIX "/share/sbot");
        snprintf(lua_dir, sizeof lua_dir, "%s/lua", dir);
        snprintf(workflow_dir, sizeof workflow_dir, "%s/workflows", dir);
        snprintf(component_dir, sizeof component_dir, "%s/components", dir);
    }
    if (env && *env)
        snprintf(lua_dir, sizeof lua_dir, "%s", env);
}

const char *sbot_lua_dir(void)
{
    find_dirs();
    return lua_dir;
}

const char *sbot_workflow_dir(void)
{
    find_dirs();
    return workflow_dir;
}

const char *sbot_component_dir(void)
{
    find_dirs();
    return component_dir;
}

/* Push a list of directories: those in the environment variable env
 * (colon-separated, empty entries skipped), then dir. */
static void push_path(lua_State *L, const char *env, const char *dir)
{
    lua_newtable(L);
    lua_Integer n = 0;
    const char *p = getenv(env);
    while (p && *p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            lua_pushlstring(L, p, len);
            lua_rawseti(L, -2, ++n);
        }
        p = end ? end + 1 : NULL;
    }
    lua_pushstring(L, dir);
    lua_rawseti(L, -2, ++n);
}

void sbot_push_component_path(lua_State *L)
{
    push_path(L, "SBOT_COMPONENT_PATH", sbot_component_dir());
}

void sbot_push_workflow_path(lua_State *L)
{
    push_path(L, "SBOT_WORKFLOW_PATH", sbot_workflow_dir());
}

/* ---- compiled Lua modules, kept for the process and its forks ------------
 *
 * Every fleet worker is a fork that builds a fresh interpreter and requires
 * its modules again: compiling sbot's ~8,000 lines of Lua took 14 ms a state,
 * undumping their bytecode 1 ms. So a module file, once compiled in this
 * process, is kept as bytecode (with its debug information: error messages
 * and tracebacks are unchanged) together with the file's identity (device,
 * inode, size, modification time); a fork inherits what its parent compiled.
 * A file whose identity changed is compiled again. Only text this process
 * compiled itself is ever loaded as bytecode. */
struct chunk {
    struct chunk *next;
    char *file;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    size_t len;
    char code[]; /* the bytecode */
};
/* Appended to, never freed, and only from the thread that runs Lua
 * (every lua_State of sbot lives on the main thread) */
static struct chunk *chunks;

/* lua_dump into a Lua string, as string.dump does (the buffer starts on the
 * first write, above the function being dumped) */
struct dump {
    luaL_Buffer b;
    int started;
};

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    struct dump *d = ud;
    if (!d->started) {
        d->started = 1;
        luaL_buffinit(L, &d->b);
    }
    luaL_addlstring(&d->b, p, sz);
    return 0;
}

static int same_file(const struct chunk *c, const struct stat *st)
{
    return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
           c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

struct chunk_reader {
    const char *p;
    size_t len;
};

static const char *chunk_read(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    struct chunk_reader *r = ud;
    *size = r->len;
    r->len = 0;
    return *size ? r->p : NULL;
}

/* Like luaL_loadfilex(L, file, NULL): the chunk, or an error message and a
 * status other than LUA_OK. */
static int load_module_file(lua_State *L, const char *file)
{
    struct stat st;
    if (stat(file, &st) != 0)
        return luaL_loadfilex(L, file, NULL); /* its message */
    for (struct chunk *c = chunks; c; c = c->next) {
        if (strcmp(c->file, file) != 0 || !same_file(c, &st))
            continue;
        /* the dump keeps the file's name ("@file") for messages */
        struct chunk_reader r = {c->code, c->len};
        if (lua_load(L, chunk_read, &r, file, "b") == LUA_OK)
            return LUA_OK;
        lua_pop(L, 1); /* cannot happen (our own dump): compile the text */
        break;
    }
    int status = luaL_loadfilex(L, file, NULL);
    if (status != LUA_OK)
        return status;
    struct dump d = {.started = 0};
    if (lua_dump(L, dump_writer, &d, 0) != 0 || !d.started)
        return LUA_OK; /* not kept: the chunk loads all the same */
    luaL_pushresult(&d.b);
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    struct chunk *c = malloc(sizeof *c + len);
    char *name = strdup(file);
    if (c && name) {
        *c = (struct chunk){chunks, name, st.st_dev, st.st_ino, st.st_size, st.st_mtim, len};
        memcpy(c->code, code, len);
        chunks = c;
    } else {
        free(c);
        free(name);
    }
    lua_pop(L, 1);
    return LUA_OK;
}

/* package.searchers entry in place of Lua's own for Lua files: the same
 * search (package.searchpath over package.path), the same messages, the
 * chunk through load_module_file. */
static int search_lua(lua_State *L)
{
    const char *mod = luaL_checkstring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    if (!lua_isstring(L, -1))
        return luaL_error(L, "'package.path' must be a string");
    lua_getfield(L, -2, "searchpath");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -3);
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1; /* the "no file" list */
    const char *file = lua_tostring(L, -2);
    if (load_module_file(L, file) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", mod, file, lua_tostring(L, -1));
    lua_pushstring(L, file);
    return 2;
}

/* package.searchers entry for "sbot.component.<name>": <dir>/<name>.lua in
 * each directory of the component path. Other names: not ours (nil). */
static int search_component(lua_State *L)
{
    const char *mod = luaL_checkstring(L, 1);
    if (strncmp(mod, "sbot.component.", 15) != 0 || !mod[15] || strchr(mod + 15, '.') ||
        strchr(mod + 15, '/'))
        return 0;
    const char *name = mod + 15;
    sbot_push_component_path(L);
    int dirs = lua_gettop(L);
    luaL_Buffer tried;
    luaL_buffinit(L, &tried);
    lua_Integer n = (lua_Integer)lua_rawlen(L, dirs);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, dirs, i);
        const char *file = lua_pushfstring(L, "%s/%s.lua", lua_tostring(L, -1), name);
        FILE *f = fopen(file, "r");
        if (f) {
            fclose(f);
            if (load_module_file(L, file) != LUA_OK)
                return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", mod, file,
                                  lua_tostring(L, -1));
            lua_pushstring(L, file);
            return 2;
        }
        /* after the buffer's own stack slot: add the text, drop the strings */
        lua_pushfstring(L, "%sno file '%s'", i > 1 ? "\n\t" : "", file);
        lua_remove(L, -2);
        lua_remove(L, -2);
        luaL_addvalue(&tried);
    }
    luaL_pushresult(&tried);
    return 1;
}

/* Put search_component right after the preload searcher: C components
 * (preloaded) first, then the component directories, then package.path. */
static void add_component_searcher(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "insert");
    lua_pushvalue(L, -3);
    lua_pushinteger(L, 2);
    lua_pushcfunction(L, search_component);
    lua_call(L, 3, 0);
    /* Lua's file searcher (now 3rd) gives way to search_lua */
    lua_pushcfunction(L, search_lua);
    lua_rawseti(L, -3, 3);
    lua_pop(L, 3);
}

/* package.path: sbot's library first, then what Lua would use anyway (the
 * system paths, so Debian's busted, argparse and friends load), then the
 * directory that holds inspect.lua if the system paths miss it. */
static void set_paths(lua_State *L)
{
    luaL_Buffer b;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *sys = lua_tostring(L, -1);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, sbot_lua_dir());
    luaL_addstring(&b, "/?.lua;");
    luaL_addstring(&b, sbot_lua_dir());
    luaL_addstring(&b, "/?/init.lua;");
    luaL_addstring(&b, sys ? sys : "");
#ifdef SBOT_INSPECT_DIR
    luaL_addstring(&b, ";" SBOT_INSPECT_DIR "/?.lua");
#endif
    luaL_pushresult(&b);
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

/* The extension library holds the modules that need libcurl, OpenSSL,
 * libedit, libmicrohttpd... Loading those libraries costs more than the rest
 * of start-up together, so it is opened on the first require that needs it. */
void *sbot_ext_symbol(const char *symbol, const char **err)
{
    static void *handle;
    find_dirs();
    if (!handle) {
        handle = dlopen(ext_path, RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            *err = dlerror();
            return NULL;
        }
    }
    void *sym = dlsym(handle, symbol);
    if (!sym)
        *err = "symbol not found in the extension library";
    return sym;
}

static int load_ext_module(lua_State *L)
{
    const char *symbol = lua_tostring(L, lua_upvalueindex(1));
    const char *err = NULL;
    lua_CFunction open = (lua_CFunction)(uintptr_t)sbot_ext_symbol(symbol, &err);
    if (!open)
        return luaL_error(L, "cannot load module '%s' from %s: %s", lua_tostring(L, 1), ext_path,
                          err);
    lua_pushcfunction(L, open);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* A C component (sbot.component.<name>) defines itself with
 * sbot_component_define, which needs the lifecycle's collaborators: the
 * state is wired first by requiring sbot.component (lua/sbot/component.lua
 * hands them to the C core, which requires no Lua module itself). Upvalue 1:
 * the module's own loader. */
static int load_c_component(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.component");
    lua_call(L, 1, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

static void set_preload(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const struct module *m = preload_list; m->name; m++) {
        if (m->builtin) {
            lua_pushcfunction(L, m->builtin);
        } else {
            lua_pushstring(L, m->symbol);
            lua_pushcclosure(L, load_ext_module, 1);
        }
        if (strncmp(m->name, "sbot.component.", 15) == 0)
            lua_pushcclosure(L, load_c_component, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

static int pinit(lua_State *L)
{
    luaL_openlibs(L);
    set_paths(L);
    set_preload(L);
    add_component_searcher(L);
    /* sbot.log is always loaded: C modules log through it. */
    luaL_requiref(L, "sbot.log", luaopen_sbot_log, 0);
    lua_pop(L, 1);
    lua_pushliteral(L, SBOT_VERSION);
    lua_setglobal(L, "_SBOT_VERSION");
    return 0;
}

lua_State *sbot_runtime_new(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return NULL;
    lua_pushcfunction(L, pinit);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "sbot: cannot initialise Lua: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

int sbot_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1; /* error object with a string form: no traceback */
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Stop requests: Ctrl-C (SIGINT) or SIGTERM while Lua runs in sbot_docall.
 * The handler sets a hook that raises "interrupted! ..." at the next Lua
 * instruction, so to-be-closed variables and component resources close on
 * the way out. The pointer and flags are process-wide because a signal
 * handler has nowhere else to look; running_state is set only for the
 * duration of one protected call. A request that arrives while no Lua runs
 * (a fleet worker starting up) stays pending and is raised as soon as
 * sbot_docall runs Lua. A second SIGINT or SIGTERM kills the process. */
static lua_State *volatile running_state;
static volatile sig_atomic_t stop_signal; /* the signal of a pending request, or 0 */
static volatile sig_atomic_t stop_reason; /* what the fleet parent said (SBOT_STOP_*), or 0 */
static int docall_depth;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    int sig = stop_signal, why = stop_reason;
    stop_signal = 0;
    switch (why) {
    case SBOT_STOP_CTRL_C: luaL_error(L, "interrupted! (Ctrl-C: the run is stopping)"); break;
    case SBOT_STOP_SIGTERM: luaL_error(L, "interrupted! (SIGTERM: the run is stopping)"); break;
    case SBOT_STOP_TIMEOUT: luaL_error(L, "interrupted! (the worker's time limit passed)"); break;
    default: break;
    }
    if (sig == SIGTERM)
        luaL_error(L, "interrupted! (SIGTERM)");
    luaL_error(L, "interrupted!");
}

static void on_stop(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    if (si && si->si_code == SI_QUEUE)
        stop_reason = si->si_value.sival_int;
    stop_signal = sig;
    signal(sig, SIG_DFL); /* a second one kills the process */
    if (running_state)
        lua_sethook(running_state, stop_hook, mask, 1);
}

static void catch_stop(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_stop;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
}

void sbot_catch_stop_signals(void)
{
    catch_stop(NULL, NULL);
}

int sbot_stop_requested(void)
{
    return stop_signal;
}

void sbot_sleep(double secs)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double end = (double)now.tv_sec + (double)now.tv_nsec / 1e9 + secs;
    sigset_t stops, old;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    /* blocked between the check and the wait, which unblocks them as it
     * starts: a request that comes in between ends the wait at once */
    sigprocmask(SIG_BLOCK, &stops, &old);
    while (!stop_signal) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = end - ((double)now.tv_sec + (double)now.tv_nsec / 1e9);
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int saved = errno;
        ppoll(NULL, 0, &ts, &old);
        errno = saved;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
}

int sbot_docall(lua_State *L, int nargs, int nresults)
{
    struct sigaction old_int, old_term;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, sbot_traceback);
    lua_insert(L, base);
    lua_State *outer = running_state;
    running_state = L;
    docall_depth++;
    catch_stop(&old_int, &old_term);
    if (stop_signal) /* requested before Lua ran */
        lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    int status = lua_pcall(L, nargs, nresults, base);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    running_state = outer;
    if (--docall_depth == 0) {
        stop_signal = 0; /* nothing left to interrupt */
        stop_reason = 0;
    }
    lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    return status;
}
