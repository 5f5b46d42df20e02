/* runtime.c: builds the configured lua_State every sbot command runs in. */
#include "sbot.h"

#include <lualib.h>
#include <dlfcn.h>
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
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

static int pinit(lua_State *L)
{
    luaL_openlibs(L);
    set_paths(L);
    set_preload(L);
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

/* Ctrl-C while Lua runs: a hook stops the code at the next instruction. The
 * pointer is process-wide because a signal handler has nowhere else to look;
 * it is set only for the duration of one protected call. */
static lua_State *volatile running_state;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    signal(sig, SIG_DFL); /* a second Ctrl-C kills the process */
    if (running_state)
        lua_sethook(running_state, stop_hook, mask, 1);
}

int sbot_docall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, sbot_traceback);
    lua_insert(L, base);
    running_state = L;
    void (*old)(int) = signal(SIGINT, on_sigint);
    int status = lua_pcall(L, nargs, nresults, base);
    signal(SIGINT, old);
    running_state = NULL;
    lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    return status;
}
