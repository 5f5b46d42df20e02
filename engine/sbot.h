/* sbot: shared declarations of the engine. */
#ifndef SBOT_H
#define SBOT_H

#include <lua.h>
#include <lauxlib.h>
#include <stdarg.h>

#define SBOT_VERSION "0.1.0"

/* ---- runtime (runtime.c) ------------------------------------------------ */

/* Build a configured interpreter: standard libraries, package paths, every
 * sbot C module in the preload list, sbot.log configured. NULL on OOM. */
lua_State *sbot_runtime_new(void);

/* Directory holding sbot's Lua library (in-tree lua/ or share/sbot/lua). */
const char *sbot_lua_dir(void);
/* Directory holding the workflows (in-tree workflows/ or share/sbot/workflows). */
const char *sbot_workflow_dir(void);

/* A symbol of the extension library (libsbot-ext.so, opened on first use);
 * NULL with *err set when it cannot be loaded. */
void *sbot_ext_symbol(const char *symbol, const char **err);

/* Message handler for lua_pcall: adds a traceback to string errors. */
int sbot_traceback(lua_State *L);

/* Run the function on top of the stack (with nargs args below it) protected,
 * with a traceback and Ctrl-C interruption. Returns the lua_pcall status. */
int sbot_docall(lua_State *L, int nargs, int nresults);

/* ---- log (log.c) -------------------------------------------------------- */

enum sbot_level { SBOT_DEBUG = 0, SBOT_INFO, SBOT_WARN, SBOT_ERROR, SBOT_OFF };

int sbot_log_enabled(lua_State *L, enum sbot_level level);
/* printf-style message; every registered secret is redacted before output. */
void sbot_log(lua_State *L, enum sbot_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Register a secret value: it is replaced by <redacted> in every log line. */
void sbot_log_add_secret(lua_State *L, const char *value, size_t len);
/* Push a copy of s with every registered secret replaced by <redacted>. */
void sbot_log_push_redacted(lua_State *L, const char *s, size_t len);

/* ---- components (lifecycle.c) ------------------------------------------- */

/* Define a component from the spec table at index spec ({name, description,
 * schema, open, discover, plan, apply, undo, housekeep, hooks}; phase
 * functions may be C functions). Pushes the module (with .new) and registers
 * it as package.loaded["sbot.component.<name>"]. Raises on a bad spec.
 * Phase functions get the resource open(self) returned as their last
 * argument: discover(self, res), plan(self, res), apply(self, change, res),
 * undo(self, change, res), housekeep(self, res). */
int sbot_component_define(lua_State *L, int spec);

/* Call the hook `name` that the component's spec declares (hooks = {name =
 * {description, default}}) for the instance at index self: the site's
 * hooks[name] if the site defines it, else the declared default. The nargs
 * arguments are on the stack top; they are replaced by the hook's first
 * result. Returns 1. Raises if the hook is not declared or has neither. */
int sbot_component_hook(lua_State *L, int self, const char *name, int nargs);

/* ---- C API of the protocol primitives (extension library) ---------------
 * Stack-based, like the Lua API: the arguments are stack indices or C values;
 * each pushes what its Lua face returns and returns the number of values
 * pushed. Misuse raises a Lua error; expected failures are `nil, msg, code`.
 * The module must have been required once (luaopen_* run) in this state. */

/* http.c: http.request(t) with the request table at index req: pushes the
 * response table (1) or nil, message, code (3). */
int sbot_http_request(lua_State *L, int req);
/* http.c: http.batch(reqs [, opts]) (opts 0 = none): pushes the list of results. */
int sbot_http_batch(lua_State *L, int reqs, int opts);

/* ws.c: ws.connect(url, opts) (opts 0 = none): pushes conn or nil, msg, code. */
int sbot_ws_connect(lua_State *L, const char *url, int opts);
/* conn:send(text, timeout): pushes true or nil, msg, code. */
int sbot_ws_send(lua_State *L, int conn, const char *text, size_t len, double timeout);
/* conn:recv(timeout): pushes text or nil, msg, code. */
int sbot_ws_recv(lua_State *L, int conn, double timeout);
/* conn:close() (idempotent); conn:is_open(). */
void sbot_ws_close(lua_State *L, int conn);
int sbot_ws_is_open(lua_State *L, int conn);

/* ---- module openers (one per C file) ------------------------------------ */
int luaopen_sbot_log(lua_State *L);

/* Entry points main.c reaches through sbot_ext_symbol. */
int sbot_repl_run(lua_State *L);     /* repl.c */
void sbot_print_versions(void);      /* version.c */

#endif
