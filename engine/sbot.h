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
/* Directory holding Lua components (in-tree components/ or share/sbot/components). */
const char *sbot_component_dir(void);
/* Push the list of directories searched for components: $SBOT_COMPONENT_PATH
 * (colon-separated), then sbot_component_dir(). require "sbot.component.X"
 * finds X.lua in them (after preloaded C components, before package.path). */
void sbot_push_component_path(lua_State *L);
/* The same for workflows: $SBOT_WORKFLOW_PATH, then sbot_workflow_dir(). */
void sbot_push_workflow_path(lua_State *L);

/* A symbol of the extension library (libsbot-ext.so, opened on first use);
 * NULL with *err set when it cannot be loaded. */
void *sbot_ext_symbol(const char *symbol, const char **err);

/* Message handler for lua_pcall: adds a traceback to string errors. */
int sbot_traceback(lua_State *L);

/* Run the function on top of the stack (with nargs args below it) protected,
 * with a traceback and Ctrl-C interruption. Returns the lua_pcall status. */
int sbot_docall(lua_State *L, int nargs, int nresults);

/* Stop requests. While sbot_docall runs Lua, SIGINT (Ctrl-C) and SIGTERM
 * raise "interrupted! (...)" at the next Lua instruction (to-be-closed
 * variables and component resources close on the way out); a second one
 * kills the process. A fleet parent stops a worker with SIGTERM sent by
 * sigqueue carrying one of these reasons, which the message names. */
enum { SBOT_STOP_CTRL_C = 1, SBOT_STOP_SIGTERM = 2, SBOT_STOP_TIMEOUT = 3 };
/* Non-zero (the signal) while a stop request waits to be raised in Lua: C
 * code that waits (a poll loop, a transfer) should return early with an
 * "interrupted" failure when it sees it. Async-signal-safe. */
int sbot_stop_requested(void);
/* Sleep secs seconds, or until a stop request comes in (then return at once;
 * a wait that has Lua on its stack calls into Lua next, which raises it).
 * One wake-up however long the wait: no polling of the request. */
void sbot_sleep(double secs);
/* Catch SIGINT/SIGTERM as stop requests from now on, also outside
 * sbot_docall (a request then waits for Lua to run). Fleet workers. */
void sbot_catch_stop_signals(void);

/* ---- log (log.c) -------------------------------------------------------- */

enum sbot_level { SBOT_DEBUG = 0, SBOT_INFO, SBOT_WARN, SBOT_ERROR, SBOT_OFF };

int sbot_log_enabled(lua_State *L, enum sbot_level level);
/* printf-style message; every registered secret is redacted before output. */
void sbot_log(lua_State *L, enum sbot_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One line with fields: the table at stack index fields (0: none) gives
 * key=value pairs (human) or JSON members, as log.info(msg, fields) does. */
void sbot_log_fields(lua_State *L, enum sbot_level level, const char *msg, int fields);
/* Are stderr log lines JSON (--log-json, log.configure{json = true})? */
int sbot_log_json(lua_State *L);
/* Register a secret value: it is replaced by <redacted> in every log line. */
void sbot_log_add_secret(lua_State *L, const char *value, size_t len);
/* Push a copy of s with every registered secret replaced by <redacted>. */
void sbot_log_push_redacted(lua_State *L, const char *s, size_t len);
/* Give `to` (a new state, e.g. a fleet worker's) the log configuration of
 * `from`: the stderr and file levels, JSON or human lines, and every
 * registered secret. Not the file sink: a state opens its own. */
void sbot_log_inherit(lua_State *to, lua_State *from);

/* ---- progress of long waits (progress.c, docs/progress.md) -------------
 * A wait is named by `what` ("iDRAC job JID_123", "upload agent.iso"); the
 * same `what` again updates it. fraction is from 0 to 1, or
 * SBOT_PROGRESS_UNKNOWN when the device gives none. Throttled where it is
 * called: call it as often as the work polls or transfers. Shown as a line
 * per server on a terminal, as log lines otherwise (docs/progress.md). */
#define SBOT_PROGRESS_UNKNOWN (-1.0)
void sbot_progress(lua_State *L, const char *what, double fraction);
/* The same with a detail shown beside it (a job state, "120 of 900 MiB"). */
void sbot_progress_detail(lua_State *L, const char *what, double fraction, const char *detail);
/* The wait `what` is over (NULL: every wait of this process). Call it on
 * error paths too; a failed component phase ends its waits anyway. */
void sbot_progress_end(lua_State *L, const char *what);
/* For fleet.c: the parent draws a board when sbot_progress_board_start
 * returns 1 (then its workers' stderr comes through it: feed each worker's
 * bytes to sbot_progress_feed, which renders records and forwards lines);
 * sbot_progress_board_stop when done. A worker calls sbot_progress_worker
 * first (fd: where records go, its stderr; -1: log lines; label: its server). */
int sbot_progress_board_start(lua_State *L);
void sbot_progress_board_stop(void);
void sbot_progress_worker(int fd, const char *label);
/* Handle buf[0..len) read from the stderr of the worker in slot (records
 * and whole lines; flush: the worker is gone, write what is left). Returns
 * the length of what is kept in buf for later (the start of a line). */
size_t sbot_progress_feed(int slot, const char *label, char *buf, size_t len, int flush);
void sbot_progress_slot_done(int slot);
void sbot_progress_tick(void);
/* Write text to stderr without tearing a board that is drawn (log.c). */
void sbot_progress_text(const char *text, size_t len);
void sbot_progress_hide(void);
void sbot_progress_show(void);

/* ---- secret objects (log.c) ---------------------------------------------- */

/* The metatable (registry key and __name) of secret objects. */
#define SBOT_SECRET_MT "sbot.secret"
/* Shortest value accepted as a secret, in bytes (docs/log.md, Short secrets). */
#define SBOT_SECRET_MIN_LENGTH 6
/* Push a new secret object holding value (registered with the redactor);
 * source says where it came from ("env X", "file /p"). Raises when value is
 * shorter than SBOT_SECRET_MIN_LENGTH. */
void sbot_secret_push(lua_State *L, const char *value, size_t len, const char *source);
/* Is the value at idx a secret object? (luaL_testudata: the one test) */
int sbot_is_secret(lua_State *L, int idx);

/* ---- JSON (jsonc.c: the one codec; sbot.json is its Lua face) ------------- */

/* __name of the metatable that marks a table as a JSON array (docs/json.md). */
#define SBOT_JSON_ARRAY_MT "sbot.json.array"
/* Push that metatable (the registry's, created on first use). */
void sbot_json_push_array_mt(lua_State *L);
/* Encoding flags: one secrets mode, then options. */
#define SBOT_JSON_ERROR 0      /* a secret object is an error (sbot.json's default) */
#define SBOT_JSON_REDACT 1     /* a secret object is written "<redacted>" */
#define SBOT_JSON_REVEAL 2     /* a secret object is written as its value */
#define SBOT_JSON_SECRETS 3    /* (the mask of the mode) */
#define SBOT_JSON_INDENT 0x10  /* pretty-print, two spaces */
#define SBOT_JSON_REGISTER 0x20 /* with REVEAL: register each value with the log redactor */
/* Push the JSON text of the value at idx (json.encode's rules, docs/json.md).
 * Raises "<who>: value.a.b[3] is ..." on what JSON cannot hold (who NULL =
 * "json.encode"); holds no malloc'ed memory when it raises. */
void sbot_json_encode(lua_State *L, int idx, int flags, const char *who);
/* Decoding flag: lua-cjson 2.1.0's dialect, what sbot.json.decode returns
 * (every number a float, cjson's extra number spellings, 1000 levels; s must
 * be followed by a NUL, as Lua strings are). Without it: strict JSON,
 * integers kept (sbot.redfish). */
#define SBOT_JSON_CJSON 1
/* Decode s: pushes the value and returns 1 (arrays marked, null = NULL light
 * userdata), or pushes nothing and returns 0 with *err (static text) and
 * *pos (byte offset of the fault; pos may be NULL). Never raises on bad text. */
int sbot_json_decode(lua_State *L, const char *s, size_t len, int flags, const char **err, size_t *pos);

/* ---- components (lifecycle.c, sbot.lifecycle) --------------------------- */

/* Define a component from the spec table at index spec ({name, description,
 * schema, open, discover, plan, apply, undo, housekeep, hooks}; phase
 * functions may be C functions). Pushes the module (with .new) and registers
 * it as package.loaded["sbot.component.<name>"]. Raises on a bad spec, and
 * when the spec has a schema but nothing handed the lifecycle its
 * collaborators yet (require "sbot.component" does; the runtime does it
 * before opening a preloaded C component: docs/lifecycle.md).
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

/* iscsi.c: iscsi.probe(opts): pushes the result table or nil, msg, code. */
int sbot_iscsi_probe(lua_State *L, int opts);

/* truenas.c: truenas.connect(opts): pushes the client or nil, msg, code. */
int sbot_truenas_connect(lua_State *L, int opts);
/* client:call(method, ...) with the nargs arguments on the stack top (they are
 * consumed): pushes the result (1) or nil, message, errname (3). */
int sbot_truenas_call(lua_State *L, int client, const char *method, int nargs);
/* client:close() (idempotent). */
void sbot_truenas_close(lua_State *L, int client);

/* sys.c: sys.spawn(opts) with the options table at index opts: pushes the
 * result table (1) or nil, message, errno name (3). */
int sbot_sys_spawn(lua_State *L, int opts);

/* yaml.c: yaml.decode(text, {source = source}) (source NULL = "yaml"): pushes
 * the value (1) or nil, message (2). */
int sbot_yaml_decode(lua_State *L, const char *text, size_t len, const char *source);
/* yaml.c: yaml.encode(value, {secrets = secrets}) with the value at index value;
 * secrets is "error" (NULL), "reveal" or "redact". Pushes the text; raises on
 * what YAML cannot hold. */
int sbot_yaml_encode(lua_State *L, int value, const char *secrets);

/* ---- TLS options (tls.c) -------------------------------------------------
 * The one parser of tls = {ca_file, pin_sha256, insecure, server_name}, with
 * the rules of docs/tls.md; http.c, ws.c and the site schema use it, and a C
 * client validates its tls table with it before passing the table on. */
struct sbot_tls {
    char ca_file[4096];    /* "" = the system CA store */
    char server_name[256]; /* "" = the URL's host (SNI and the certificate name check) */
    unsigned char pin[32]; /* SHA-256 of the server's DER SubjectPublicKeyInfo, if has_pin */
    int has_pin;
    int insecure;          /* no verification at all (never with ca_file or a pin) */
};
/* Parse the tls table at idx (nil or none: every default) into *out. where
 * names the table in messages ("http.request: tls", "servers[1].idrac.tls");
 * url, if not NULL, is the URL the settings are for (TLS settings for an
 * http:// or ws:// URL are refused). Returns 0, or -1 with one message pushed
 * naming every problem, one per line: "<where>.<key>: <problem>" or
 * "<where>: unknown key 'k' (...)"; *out is then zeroed. Allocates nothing
 * outside Lua; raises only on memory errors. */
int sbot_tls_parse(lua_State *L, int idx, const char *where, const char *url,
                   struct sbot_tls *out);
/* sbot_tls_parse raising its message as a Lua error (misuse). */
void sbot_tls_check(lua_State *L, int idx, const char *where, const char *url,
                    struct sbot_tls *out);
/* Any setting given (ca_file, pin, insecure, server_name)? */
int sbot_tls_any(const struct sbot_tls *t);
/* Push the canonical table: only the keys that are set, the pin as base64. */
void sbot_tls_push(lua_State *L, const struct sbot_tls *t);
/* The pin as base64 (44 characters and a NUL). */
void sbot_tls_pin_base64(const struct sbot_tls *t, char out[45]);
/* Decode a pin in any accepted form (n bytes at s) into 32 bytes: 0 or -1. */
int sbot_tls_decode_pin(const char *s, size_t n, unsigned char out[32]);
/* SHA-256 of a certificate's DER SubjectPublicKeyInfo (what a pin is): 0 or -1. */
struct x509_st;
int sbot_tls_spki_sha256(struct x509_st *cert, unsigned char out[32]);

/* redfish.c: a Redfish client (docs/redfish.md); every function is the Lua
 * method of the same name, with the client userdata at index client.
 * redfish.connect(opts) with the options table at index opts: pushes the
 * client (1) or nil, message, code[, status]. */
int sbot_redfish_connect(lua_State *L, int opts);
/* client:get(path): pushes doc, meta (2) or nil, message, code[, status]. */
int sbot_redfish_get(lua_State *L, int client, const char *path);
/* client:get_many(paths) (list at index paths): pushes the list of
 * {doc, etag, status} | {error, code, status}. */
int sbot_redfish_get_many(lua_State *L, int client, int paths);
/* client:patch(path, body [, opts]) (opts 0 = none): pushes {status,
 * location, job_id, body} or nil, message, code[, status]. */
int sbot_redfish_patch(lua_State *L, int client, const char *path, int body, int opts);
/* client:post(path, body) (body 0 = {}): as patch. */
int sbot_redfish_post(lua_State *L, int client, const char *path, int body);
/* client:delete(path): as patch. */
int sbot_redfish_delete(lua_State *L, int client, const char *path);
/* client:wait_job(job, opts) (opts 0 = defaults): pushes the job document or
 * nil, message, code[, document]. */
int sbot_redfish_wait_job(lua_State *L, int client, const char *job, int opts);
/* client:identify([manager_doc]) (manager 0 = read it): pushes the info
 * table or nil, message, code[, status]. */
int sbot_redfish_identify(lua_State *L, int client, int manager);
/* client:close(): pushes true or nil, message. Idempotent. */
int sbot_redfish_close(lua_State *L, int client);
/* redfish.check_attribute(entry, value): the value at index value against
 * the AttributeRegistry entry at index entry; pushes nil or the reason. */
int sbot_redfish_check_attribute(lua_State *L, int entry, int value);

/* ---- module openers (one per C file) ------------------------------------ */
int luaopen_sbot_log(lua_State *L);
int luaopen_sbot_progress(lua_State *L);

/* Entry points main.c reaches through sbot_ext_symbol. */
int sbot_repl_run(lua_State *L);     /* repl.c */
void sbot_print_versions(void);      /* version.c */

#endif
