/* main.c: the sbot command line. */
#include "sbot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(lua_State *L, int argc, char **argv);
};

static const struct command *find_command(const char *name);

/* Lua names a chunk "@FILE" in messages, shortened to "..." and the last 56
 * characters when FILE is longer than 59 (LUA_IDSIZE is 60): put the whole
 * name back in the error on top of the stack, so it always names the file. */
static void whole_file_name(lua_State *L, const char *file)
{
    size_t n = strlen(file);
    if (n + 1 <= 60 || lua_type(L, -1) != LUA_TSTRING)
        return;
    lua_pushfstring(L, "...%s", file + n - 56);
    luaL_gsub(L, lua_tostring(L, -2), lua_tostring(L, -1), file);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* Report an error value on stderr with every registered secret redacted. */
static void report(lua_State *L, const char *prefix)
{
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    if (!msg)
        msg = "(error object is not a string)", len = strlen(msg);
    sbot_log_push_redacted(L, msg, len);
    fprintf(stderr, "%s%s\n", prefix, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 2);
}

/* ---- run ------------------------------------------------------------------ */

/* A bare workflow name: letters, digits, _ . - and no "/" or ".lua". */
static int is_workflow_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || (n > 4 && strcmp(s + n - 4, ".lua") == 0))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* Find workflow NAME as NAME.lua in the workflow path; pushes the file name
 * and returns 1, or pushes the list of the files tried and returns 0. */
static int find_workflow(lua_State *L, const char *name)
{
    sbot_push_workflow_path(L);
    int dirs = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, dirs);
    luaL_Buffer tried;
    luaL_buffinit(L, &tried);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, dirs, i);
        const char *file = lua_pushfstring(L, "%s/%s.lua", lua_tostring(L, -1), name);
        FILE *f = fopen(file, "r");
        if (f) {
            fclose(f);
            lua_replace(L, dirs);
            lua_settop(L, dirs);
            return 1;
        }
        lua_pushfstring(L, "%s%s", i > 1 ? ", " : "", file);
        lua_remove(L, -2);
        lua_remove(L, -2);
        luaL_addvalue(&tried);
    }
    luaL_pushresult(&tried);
    lua_replace(L, dirs);
    lua_settop(L, dirs);
    return 0;
}

static int cmd_run(lua_State *L, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "sbot run: missing FILE\nusage: sbot run FILE|WORKFLOW [ARGS...]\n");
        return 2;
    }
    const char *file = argv[1];
    FILE *f = fopen(file, "r");
    if (f) {
        fclose(f);
    } else if (errno == ENOENT && is_workflow_name(file)) {
        /* a bare name: the workflow NAME.lua of $SBOT_WORKFLOW_PATH, the
         * tree's workflows/ or the installed share/sbot/workflows */
        if (!find_workflow(L, file)) {
            fprintf(stderr, "sbot run: no file %s and no workflow %s (looked for %s; "
                    "sbot help workflows lists them)\n", file, file, lua_tostring(L, -1));
            return 2;
        }
        file = lua_tostring(L, -1); /* stays on the stack while it runs */
    } else {
        fprintf(stderr, "sbot run: cannot open %s: %s\n", file, strerror(errno));
        return 2;
    }

    /* arg as the lua interpreter gives it: arg[0] the script, arg[1..] its
     * arguments, negative indices for what came before the script. */
    lua_createtable(L, argc, 1);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, -1);
    lua_pushstring(L, file); /* arg[0]: the file that runs (a workflow name resolved) */
    lua_rawseti(L, -2, 0);
    for (int i = 2; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");

    int status = luaL_loadfile(L, file);
    if (status != LUA_OK) {
        /* nothing ran: a syntax or read error is a bad input (2) */
        whole_file_name(L, file);
        report(L, "sbot: ");
        return status == LUA_ERRFILE || status == LUA_ERRSYNTAX ? 2 : 1;
    }
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 2; i < argc; i++)
        lua_pushstring(L, argv[i]);
    status = sbot_docall(L, argc - 2, 0);
    if (status != LUA_OK) {
        whole_file_name(L, file);
        report(L, "sbot: ");
        return 1;
    }
    return 0;
}

/* ---- repl ----------------------------------------------------------------- */

/* Commands implemented in the extension library. */
static void *ext(const char *symbol)
{
    const char *err = NULL;
    void *fn = sbot_ext_symbol(symbol, &err);
    if (!fn)
        fprintf(stderr, "sbot: cannot load %s from the extension library: %s\n", symbol, err);
    return fn;
}

/* Call require(module)[fn](arg): on success print the string it returns to
 * stdout and return 0; on nil, err print err (redacted) and return 2. */
static int call_text(lua_State *L, const char *module, const char *fn, const char *arg)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot: ");
        return 1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_pushstring(L, arg);
    if (sbot_docall(L, 1, 2) != LUA_OK) {
        report(L, "sbot: ");
        return 1;
    }
    if (lua_isnil(L, -2)) {
        report(L, "sbot: ");
        lua_pop(L, 1);
        return 2;
    }
    lua_pop(L, 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, s ? s : "", s ? len : 0);
    fputs(lua_tostring(L, -1), stdout);
    fflush(stdout);
    lua_pop(L, 2);
    return 0;
}

static int cmd_repl(lua_State *L, int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--site") == 0) {
        int rc = call_text(L, "sbot.explore", "open", argv[2]);
        if (rc != 0)
            return rc;
    } else if (argc > 1) {
        fprintf(stderr, "sbot repl: unexpected argument '%s'\nusage: sbot repl [--site FILE]\n",
                argv[1]);
        return 2;
    }
    int (*run)(lua_State *) = (int (*)(lua_State *))(uintptr_t)ext("sbot_repl_run");
    return run ? run(L) : 1;
}

/* ---- lab ------------------------------------------------------------------ */

/* Call require(module).main({argv[1], ...}) -> exit status (a Lua error: 1). */
static int call_main(lua_State *L, const char *module, const char *prefix, int argc, char **argv)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, prefix);
        return 1;
    }
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, prefix);
        return 1;
    }
    int rc = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return rc;
}

/* The lab lives in Lua (lua/sbot/lab/init.lua): main(argv) -> exit status. */
static int cmd_lab(lua_State *L, int argc, char **argv)
{
    return call_main(L, "sbot.lab", "sbot lab: ", argc, argv);
}

/* ---- runs ----------------------------------------------------------------- */

/* The runs command lives in Lua (lua/sbot/runs.lua): main(argv) -> exit status. */
static int cmd_runs(lua_State *L, int argc, char **argv)
{
    return call_main(L, "sbot.runs", "sbot runs: ", argc, argv);
}

/* ---- version -------------------------------------------------------------- */

static int cmd_version(lua_State *L, int argc, char **argv)
{
    (void)L;
    (void)argc;
    (void)argv;
    void (*print_versions)(void) = (void (*)(void))(uintptr_t)ext("sbot_print_versions");
    if (!print_versions)
        return 1;
    printf("sbot %s\n", SBOT_VERSION);
    printf("%s\n", LUA_RELEASE);
    print_versions();
    return 0;
}

/* ---- help ----------------------------------------------------------------- */

/* The command line is described once, in Lua (lua/sbot/cli.lua): the usage,
 * each command's help, the man page and the bash completion are rendered
 * from it. Call require("sbot.cli")[fn](arg) and push its first result (nil
 * and the error reported on a Lua error). */
static void push_cli(lua_State *L, const char *fn, const char *arg)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.cli");
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot: ");
        lua_pushnil(L);
        return;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    if (arg)
        lua_pushstring(L, arg);
    else
        lua_pushliteral(L, SBOT_VERSION);
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot: ");
        lua_pushnil(L);
    }
}

/* The usage text on out; a state is made for it when there is none.
 * Returns 0, or 1 when it could not be rendered (reported on stderr). */
static int print_usage(lua_State *L, FILE *out)
{
    lua_State *own = L ? NULL : sbot_runtime_new();
    lua_State *S = L ? L : own;
    if (!S)
        return 1;
    push_cli(S, "usage", NULL);
    int ok = lua_isstring(S, -1);
    if (ok)
        fputs(lua_tostring(S, -1), out);
    lua_pop(S, 1);
    if (own)
        lua_close(own);
    return ok ? 0 : 1;
}

/* sbot help workflows: each workflow of the workflow path with its description. */
static int help_workflows(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.help");
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot: ");
        return 1;
    }
    lua_getfield(L, -1, "workflows");
    lua_remove(L, -2);
    sbot_push_workflow_path(L);
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot: ");
        return 1;
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, s ? s : "", s ? len : 0);
    fputs(lua_tostring(L, -1), stdout);
    fflush(stdout);
    lua_pop(L, 2);
    return 0;
}

/* Write text (on the stack top, popped) to path, or to stdout when path is NULL. */
static int write_text(lua_State *L, const char *path)
{
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    if (!text) {
        lua_pop(L, 1);
        return 1;
    }
    FILE *f = path ? fopen(path, "we") : stdout;
    if (!f) {
        fprintf(stderr, "sbot help: cannot write %s: %s\n", path, strerror(errno));
        lua_pop(L, 1);
        return 1;
    }
    int ok = fwrite(text, 1, len, f) == len;
    ok = (path ? fclose(f) : fflush(f)) == 0 && ok;
    lua_pop(L, 1);
    if (!ok) {
        fprintf(stderr, "sbot help: cannot write %s: %s\n", path ? path : "stdout", strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_help(lua_State *L, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "workflows") == 0)
        return help_workflows(L);
    if (argc >= 2 && strcmp(argv[1], "component") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: sbot help component NAME\n");
            return 2;
        }
        return call_text(L, "sbot.help", "component", argv[2]);
    }
    if (argc >= 2 && (strcmp(argv[1], "--man") == 0 || strcmp(argv[1], "--bash-completion") == 0)) {
        if (argc > 3) {
            fprintf(stderr, "usage: sbot help %s [FILE]\n", argv[1]);
            return 2;
        }
        int man = strcmp(argv[1], "--man") == 0;
        push_cli(L, man ? "man" : "bash_completion", NULL);
        return write_text(L, argc == 3 ? argv[2] : NULL);
    }
    if (argc < 2) {
        if (print_usage(L, stdout) != 0)
            return 1;
        fputs("\nRun 'sbot help COMMAND' for more about one command; 'man sbot' for everything.\n", stdout);
        return 0;
    }
    if (argc > 2 || !find_command(argv[1])) {
        fprintf(stderr, "sbot help: unknown command '%s'\n\n", argv[1]);
        print_usage(L, stderr);
        return 2;
    }
    push_cli(L, "help", argv[1]);
    return write_text(L, NULL);
}

/* sbot complete KIND [ARG]: one name per line (the bash completion's source). */
static int cmd_complete(lua_State *L, int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: sbot complete commands|workflows|components|servers SITE|runs [DIR]\n");
        return 2;
    }
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.cli");
    if (sbot_docall(L, 1, 1) != LUA_OK) {
        report(L, "sbot complete: ");
        return 1;
    }
    lua_getfield(L, -1, "complete");
    lua_pushstring(L, argv[1]);
    if (argc == 3)
        lua_pushstring(L, argv[2]);
    else
        lua_pushnil(L);
    sbot_push_workflow_path(L);
    if (sbot_docall(L, 3, 2) != LUA_OK) {
        report(L, "sbot complete: ");
        return 1;
    }
    if (!lua_istable(L, -2)) {
        report(L, "sbot complete: ");
        return 2;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        if (lua_isstring(L, -1))
            printf("%s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    fflush(stdout);
    lua_pop(L, 3);
    return 0;
}

/* The commands sbot runs; what each does and how it is used is in
 * lua/sbot/cli.lua (tests/lua/cli_doc_spec.lua keeps the two lists equal). */
static const struct command commands[] = {
    {"run", cmd_run},       {"repl", cmd_repl},   {"lab", cmd_lab},           {"runs", cmd_runs},
    {"version", cmd_version}, {"help", cmd_help}, {"complete", cmd_complete}, {NULL, NULL}};

static const struct command *find_command(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "sbot: ");
    fprintf(stderr, fmt, what);
    fputs("\n\n", stderr);
    print_usage(NULL, stderr);
    return 2;
}

/* Global options go to sbot.log before the command runs. */
static int configure_log(lua_State *L, const char *level, int json)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "sbot.log");
    lua_getfield(L, -1, "configure");
    lua_createtable(L, 0, 2);
    if (level) {
        lua_pushstring(L, level);
        lua_setfield(L, -2, "level");
    }
    if (json) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "json");
    }
    int status = lua_pcall(L, 1, 0, 0);
    if (status != LUA_OK)
        report(L, "sbot: --log-level: ");
    lua_pop(L, 2);
    return status == LUA_OK;
}

int main(int argc, char **argv)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", "off", NULL};
    const char *level = NULL;
    int json = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0)
            level = "debug";
        else if (strcmp(argv[i], "--log-json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--log-level") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s", "--log-level needs a LEVEL (debug, info, warn, error or off)");
            level = argv[++i];
            int k = 0;
            while (levels[k] && strcmp(levels[k], level) != 0)
                k++;
            if (!levels[k])
                return usage_error("--log-level: unknown level '%s' (expected debug, info, warn, "
                                   "error or off)", level);
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return print_usage(NULL, stdout);
        } else
            return usage_error("unknown option '%s'", argv[i]);
    }
    if (i >= argc)
        return usage_error("%s", "missing COMMAND");
    const struct command *c = find_command(argv[i]);
    if (!c)
        return usage_error("unknown command '%s'", argv[i]);
    if (c->run == cmd_version)
        return c->run(NULL, argc - i, argv + i);

    lua_State *L = sbot_runtime_new();
    if (!L)
        return 1;
    if (!configure_log(L, level, json)) {
        lua_close(L);
        return 2;
    }
    int rc = c->run(L, argc - i, argv + i);
    lua_close(L);
    return rc;
}
