/* repl.c: the interactive prompt (sbot repl), on libedit. */
#include "sbot.h"

#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROMPT "sbot> "
#define PROMPT2 "...> "
#define MAX_MATCHES 512

/* The REPL is one interactive session per process, so the completion
 * callback (which libedit calls with no user pointer) finds the state here. */
static lua_State *repl_state;
static char *matches[MAX_MATCHES];
static int nmatches;

static char history_path[4096];

/* Ctrl-C at the prompt abandons the line being edited. libedit's own signal
 * handling re-sends the signal to the whole process group, so it is turned
 * off; our handler only sets a flag, and the read function below turns the
 * interrupted read into an end of line that read_and_run then discards. */
static volatile sig_atomic_t prompt_interrupted;

static void on_prompt_sigint(int sig)
{
    (void)sig;
    prompt_interrupted = 1;
}

static int read_char(FILE *in)
{
    unsigned char c;
    for (;;) {
        ssize_t n = read(fileno(in), &c, 1);
        if (n == 1)
            return c;
        if (n == 0)
            return EOF;
        if (errno == EINTR && prompt_interrupted)
            return '\n';
        if (errno != EINTR)
            return EOF;
    }
}

/* readline() with Ctrl-C handling; *interrupted tells the caller to drop the line. */
static char *prompt_line(const char *prompt, int *interrupted)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prompt_sigint; /* no SA_RESTART: read() must return EINTR */
    sigemptyset(&sa.sa_mask);
    prompt_interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    char *line = readline(prompt);
    sigaction(SIGINT, &old, NULL);
    *interrupted = prompt_interrupted;
    if (*interrupted) {
        free(line);
        return NULL;
    }
    return line;
}

/* ---- completion ---------------------------------------------------------- */

static void clear_matches(void)
{
    for (int i = 0; i < nmatches; i++)
        free(matches[i]);
    nmatches = 0;
}

static void add_match(const char *s)
{
    if (nmatches < MAX_MATCHES)
        matches[nmatches++] = strdup(s);
}

static char *generator(const char *text, int state)
{
    (void)text;
    static int next;
    if (state == 0)
        next = 0;
    return next < nmatches ? strdup(matches[next++]) : NULL;
}

/* Call require("sbot.repl")[fn] with nargs arguments on the stack top,
 * protected; leaves its first result (nil on any error). */
static void call_repl_lua(lua_State *L, const char *fn, int nargs)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.repl");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1 + nargs);
        lua_pushnil(L);
        return;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* Completion is Lua's (sbot.repl.complete: expressions, t["key"], the
 * string arguments of run(...), server(...)): it gets the word before the
 * cursor and the line in front of it, and returns the replacements. */
static char **complete(const char *text, int start, int end)
{
    lua_State *L = repl_state;
    (void)end;
    clear_matches();
    int top = lua_gettop(L);
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer ? rl_line_buffer : "", rl_line_buffer && start > 0 ? (size_t)start : 0);
    call_repl_lua(L, "complete", 2);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TSTRING)
                add_match(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    rl_completion_append_character = '\0';
    if (nmatches == 0)
        return NULL;
    return rl_completion_matches(text, generator);
}

/* ---- evaluation ------------------------------------------------------------ */

/* Print every value on the stack above base with sbot.pretty. */
static void print_results(lua_State *L, int base)
{
    int n = lua_gettop(L) - base;
    if (n == 0)
        return;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.pretty");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        lua_settop(L, base);
        return;
    }
    lua_getfield(L, -1, "print");
    lua_remove(L, -2);
    lua_insert(L, base + 1);
    if (sbot_docall(L, n, 0) != LUA_OK) {
        size_t len;
        const char *m = lua_tolstring(L, -1, &len);
        sbot_log_push_redacted(L, m ? m : "?", m ? len : 1);
        fprintf(stderr, "error printing result: %s\n", lua_tostring(L, -1));
    }
    lua_settop(L, base);
}

static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t len;
        const char *msg = lua_tolstring(L, -1, &len);
        if (len >= 5 && strcmp(msg + len - 5, "<eof>") == 0)
            return 1;
    }
    return 0;
}

/* Compile chunk: first as "return <chunk>", then as a statement. Returns the
 * load status; on LUA_OK the function is on top. */
static int compile(lua_State *L, const char *chunk)
{
    lua_pushfstring(L, "return %s;", chunk);
    int status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin");
    lua_remove(L, -2);
    if (status == LUA_OK)
        return status;
    lua_pop(L, 1);
    return luaL_loadbuffer(L, chunk, strlen(chunk), "=stdin");
}

static void add_to_history(const char *line)
{
    if (!*line)
        return;
    add_history(line);
    if (history_path[0])
        write_history(history_path);
}

/* Read one complete chunk (continuing on incomplete input) and compile it.
 * Returns 0 at end of input, 1 when something was handled. */
static int read_and_run(lua_State *L)
{
    int interrupted;
    char *line = prompt_line(PROMPT, &interrupted);
    if (interrupted)
        return 1;
    if (!line)
        return 0;
    if (line[0] == ':') {
        if (strcmp(line, ":help") == 0) {
            call_repl_lua(L, "help", 0);
            fputs(lua_isstring(L, -1) ? lua_tostring(L, -1) : "no help: sbot.repl does not load\n", stdout);
            lua_pop(L, 1);
        }
        else if (strcmp(line, ":quit") == 0 || strcmp(line, ":q") == 0) {
            free(line);
            return 0;
        } else
            fprintf(stderr, "unknown command %s (try :help)\n", line);
        add_to_history(line);
        free(line);
        return 1;
    }
    lua_pushstring(L, line);
    free(line);
    int status;
    for (;;) {
        status = compile(L, lua_tostring(L, -1));
        if (!incomplete(L, status))
            break;
        lua_pop(L, 1); /* the error message */
        char *more = prompt_line(PROMPT2, &interrupted);
        if (interrupted) { /* Ctrl-C abandons the whole statement */
            lua_pop(L, 1);
            return 1;
        }
        if (!more) { /* EOF in the middle of a statement: report it */
            status = compile(L, lua_tostring(L, -1));
            break;
        }
        lua_pushfstring(L, "%s\n%s", lua_tostring(L, -1), more);
        lua_remove(L, -2);
        free(more);
    }
    add_to_history(lua_tostring(L, -2));
    lua_remove(L, -2); /* the source text */
    if (status == LUA_OK) {
        int base = lua_gettop(L) - 1;
        status = sbot_docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) {
            print_results(L, base);
            return 1;
        }
    }
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    sbot_log_push_redacted(L, msg ? msg : "(error object is not a string)", msg ? len : 30);
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_pop(L, 2);
    return 1;
}

int sbot_repl_run(lua_State *L)
{
    const char *home = getenv("HOME");
    repl_state = L;
    rl_readline_name = "sbot";
    rl_catch_signals = 0;
    rl_getc_function = read_char;
    /* quotes, brackets, '-', '.' and ':' belong to the word: t["r630-01"].nics
     * is one expression to complete (sbot.repl finds where it starts) */
    rl_basic_word_break_characters = " \t\n`><=;+*/%^~#&|{}(),";
    rl_attempted_completion_function = complete;
    using_history();
    stifle_history(1000);
    if (home && *home) {
        snprintf(history_path, sizeof history_path, "%s/.sbot_history", home);
        read_history(history_path);
    }
    printf("sbot %s (%s) - :help for help, Ctrl-D to leave\n", SBOT_VERSION, LUA_RELEASE);
    fflush(stdout);
    while (read_and_run(L))
        lua_settop(L, 0);
    putchar('\n');
    clear_matches();
    repl_state = NULL;
    return 0;
}
