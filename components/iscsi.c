/* iscsi.c: the iSCSI component — a bootable zvol per server on TrueNAS SCALE.
 *
 *   local Iscsi = require "sbot.component.iscsi"
 *   local c = assert(Iscsi.new({version = "4.14.3"}, {id = "r630-01", site = site, server = server}))
 *   local r = c:execute()   -- r.discovery.iqn, .portal, .lun, .initiator feed the R630's iSCSI boot
 *
 * discover reads the system, the pool, the zvol, portals, initiator groups,
 * the target, the extent, its mapping and the iscsitarget service, and names
 * the IQN (<basename>:<target name>), portal and LUN a server will boot from.
 * plan checks names and size rules before anything is written, then lists what
 * is missing, in the order TrueNAS needs it: zvol, portal, initiator group,
 * target with the (portal, group) pair, extent on "zvol/<zvol>", the mapping at
 * the LUN, the iscsitarget service enabled and running. apply creates one
 * thing per change, marked for this server ("sbot:<server>" as comment or
 * alias); a create whose answer was lost is read back and adopted rather than
 * made twice. undo deletes what this run created, never a zvol an extent
 * still uses (TrueNAS would delete the extent with it). housekeep reads it all
 * back, logs in for real (sbot.iscsi.probe) as the server's initiator and
 * checks the LUN's capacity against the zvol, removes sbot-marked unmapped
 * extents, targets and initiator groups of this server that are not the
 * current ones, and records an artifact with the connection details.
 *
 * Everything goes through the C APIs of sbot.truenas and sbot.iscsi; the
 * TrueNAS connection is the component's resource (open/close). */
#include "luax.h"
#include "sbot.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------------- */

static int fail(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(lua_State *L, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushstring(L, msg);
    return lua_error(L);
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_for(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

/* seconds between logins while TrueNAS rate-limits them */
#define RATE_RETRY 5.0

/* [[field, "=", <value at idx>]] */
static void push_filter(lua_State *L, const char *field, int value)
{
    value = lua_absindex(L, value);
    sbot_push_array(L);
    sbot_push_array(L);
    lua_pushstring(L, field);
    lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "=");
    lua_rawseti(L, -2, 2);
    lua_pushvalue(L, value);
    lua_rawseti(L, -2, 3);
    lua_rawseti(L, -2, 1);
}

static lua_Integer ifield(lua_State *L, int t, const char *k, lua_Integer def)
{
    lua_getfield(L, t, k);
    lua_Integer v = def;
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_numbertointeger(lua_tonumber(L, -1), &v))
        v = def; /* not representable: treat as absent */
    lua_pop(L, 1);
    return v;
}

/* A number in a dataset property {parsed, ...} or a plain number. */
static lua_Integer prop_parsed(lua_State *L, int t, const char *k)
{
    lua_Integer v = -1;
    if (lua_getfield(L, t, k) == LUA_TTABLE) {
        lua_getfield(L, -1, "parsed");
        if (lua_type(L, -1) == LUA_TNUMBER && !lua_numbertointeger(lua_tonumber(L, -1), &v))
            v = -1;
        lua_pop(L, 1);
    } else if (lua_type(L, -1) == LUA_TNUMBER && !lua_numbertointeger(lua_tonumber(L, -1), &v)) {
        v = -1;
    }
    lua_pop(L, 1);
    return v;
}

/* The per-instance state table self._iscsi (ids and created things). */
static int state(lua_State *L, int self)
{
    if (lua_getfield(L, self, "_iscsi") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, self, "_iscsi");
    }
    return lua_gettop(L);
}

/* client:call(method, <nargs args on top>): leaves the result (1) or raises
 * "<what>: <message>" naming the TrueNAS failure. */
static void must(lua_State *L, int res, const char *method, int nargs)
{
    int n = sbot_truenas_call(L, res, method, nargs);
    if (n != 1)
        fail(L, "%s", lua_tostring(L, -2));
}

/* The first entry of method's query with [[field, "=", value]] (value on top,
 * consumed), or nil. Raises on failure. */
static void query1(lua_State *L, int res, const char *method, const char *field)
{
    int v = lua_gettop(L);
    push_filter(L, field, v);
    lua_remove(L, v);
    must(L, res, method, 1);
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
}

static int transport_code(const char *code)
{
    return code && (strcmp(code, "timeout") == 0 || strcmp(code, "closed") == 0 || strcmp(code, "io") == 0);
}

/* ---- CHAP ----------------------------------------------------------------------------- */

/* Is alias sbot's mark for this server: "sbot:<server>" alone or followed by
 * a space (the target's alias, "sbot:<server> <target name>[ <alias>]")? */
static int marked_alias(const char *alias, const char *mark)
{
    size_t ml = strlen(mark);
    return alias && strncmp(alias, mark, ml) == 0 && (alias[ml] == '\0' || alias[ml] == ' ');
}

/* Push the text of the secret object (or string) at idx, or nil; returns it. */
static const char *push_secret_text(lua_State *L, int idx, size_t *len)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
    } else if (sbot_is_secret(L, idx)) {
        lua_getfield(L, idx, "reveal");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
    } else {
        lua_pushnil(L);
    }
    return lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
}

/* Do the secrets (objects or strings) at a and b hold the same text? Compared
 * without an early exit; never logged. */
static int same_secret(lua_State *L, int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    size_t la = 0, lb = 0;
    const char *sa = push_secret_text(L, a, &la);
    const char *sb = push_secret_text(L, b, &lb);
    int same = sa && sb && la == lb;
    if (same) {
        unsigned char diff = 0;
        for (size_t i = 0; i < la; i++)
            diff |= (unsigned char)(sa[i] ^ sb[i]);
        same = diff == 0;
    }
    lua_pop(L, 2);
    return same;
}

/* Is the auth entry at e one sbot made for the server whose mark is mark
 * ("sbot:<server>")? TrueNAS's iscsi.auth has no comment: sbot writes the
 * mark as the entry's peeruser (with a random peer secret nobody uses; the
 * targets ask for one-way CHAP, where the peer credentials play no part). */
static int chap_marked(lua_State *L, int e, const char *mark)
{
    const char *pu = sbot_field_str(L, e, "peeruser");
    return pu && mark && strcmp(pu, mark) == 0;
}

/* Push a fresh random peer secret (16 letters and digits, never the text of
 * the secret at avoid), registered with the log redactor. */
static void push_peer_secret(lua_State *L, int avoid)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    avoid = lua_absindex(L, avoid);
    for (;;) {
        sbot_push_require(L, "sbot.crypto", "random_bytes");
        lua_pushinteger(L, 16);
        lua_call(L, 1, 1);
        size_t n = 0;
        const unsigned char *b = (const unsigned char *)lua_tolstring(L, -1, &n);
        char out[16];
        for (size_t i = 0; i < sizeof out && i < n; i++)
            out[i] = alphabet[b[i] % (sizeof alphabet - 1)];
        lua_pop(L, 1);
        sbot_log_add_secret(L, out, sizeof out);
        lua_pushlstring(L, out, sizeof out);
        if (!same_secret(L, -1, avoid))
            return;
        lua_pop(L, 1);
    }
}

/* TrueNAS's answer for a secret the caller may not see (no SHARING_ISCSI_AUTH_WRITE). */
#define REDACTED_SECRET "********"

/* iscsi.auth.query with the nargs arguments on top (consumed); leaves the
 * list. TrueNAS answers CHAP secrets in clear: each entry's `secret` and
 * `peersecret` become secret objects (registered with the log redactor)
 * the moment they are read; a redacted one is `<field>_redacted = true`
 * instead. Raises on failure. */
static void auth_query(lua_State *L, int res, int nargs)
{
    must(L, res, "iscsi.auth.query", nargs);
    int list = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
        int e = lua_gettop(L);
        static const char *const keys[] = {"secret", "peersecret", NULL};
        for (int k = 0; keys[k]; k++) {
            size_t n = 0;
            lua_getfield(L, e, keys[k]);
            const char *sv = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
            if (sv && strcmp(sv, REDACTED_SECRET) == 0) {
                lua_pushnil(L);
                lua_setfield(L, e, keys[k]);
                lua_pushboolean(L, 1);
                lua_setfield(L, e, k == 0 ? "secret_redacted" : "peersecret_redacted");
            } else if (sv && n >= SBOT_SECRET_MIN_LENGTH) {
                sbot_secret_push(L, sv, n, "TrueNAS iscsi.auth");
                lua_setfield(L, e, keys[k]);
            } else if (sv && n > 0) {
                /* shorter than any TrueNAS takes: hidden all the same, never equal */
                sbot_log_add_secret(L, sv, n);
                lua_pushboolean(L, 0);
                lua_setfield(L, e, keys[k]);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Is CHAP asked by the config (config.chap a table)? */
static int want_chap(lua_State *L, int self)
{
    int top = lua_gettop(L);
    lua_getfield(L, self, "config");
    int want = lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, "chap") == LUA_TTABLE;
    lua_settop(L, top);
    return want;
}

/* The largest tag the auth entries (list at entries, 0: none) or the
 * groups of the targets (list at targets, 0: none) name; 0 when none. */
static lua_Integer max_tag(lua_State *L, int entries, int targets)
{
    lua_Integer m = 0;
    if (entries) {
        for (lua_Integer i = 1; lua_rawgeti(L, entries, i) == LUA_TTABLE; i++) {
            lua_Integer t = ifield(L, -1, "tag", 0);
            m = t > m ? t : m;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (targets) {
        for (lua_Integer i = 1; lua_rawgeti(L, targets, i) == LUA_TTABLE; i++) {
            if (lua_getfield(L, -1, "groups") == LUA_TTABLE) {
                for (lua_Integer j = 1; lua_rawgeti(L, -1, j) == LUA_TTABLE; j++) {
                    lua_Integer t = ifield(L, -1, "auth", 0);
                    m = t > m ? t : m;
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    return m;
}

/* ---- config and names ---------------------------------------------------------------- */

static lua_Integer parse_size(lua_State *L, int idx, const char *where)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer v = 0;
        if (!lua_numbertointeger(lua_tonumber(L, idx), &v) || v <= 0)
            fail(L, "%s: expected a positive number of bytes", where);
        return v;
    }
    const char *s = lua_tostring(L, idx);
    if (!s)
        fail(L, "%s: expected a size such as \"120G\"", where);
    char *end;
    double n = strtod(s, &end);
    double mult = 1;
    switch (*end) {
    case 'K': case 'k': mult = 1024.0; end++; break;
    case 'M': case 'm': mult = 1024.0 * 1024; end++; break;
    case 'G': case 'g': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': case 't': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (end == s || *end || !(n > 0))
        fail(L, "%s: '%s' is not a size (e.g. \"120G\", \"512M\", or bytes)", where, s);
    double bytes = n * mult;
    if (!(bytes < 9.0e18))
        fail(L, "%s: '%s' is too large", where, s);
    /* "0.5" or "1.5" bytes: no such size (and a 0 would be a zvol of no
     * bytes, or a division by zero in the block-size check) */
    if (bytes < 1 || bytes != floor(bytes))
        fail(L, "%s: '%s' is not a whole number of bytes", where, s);
    return (lua_Integer)bytes;
}

/* The config value (self.config[k]) or the site's truenas[k]; pushes it. */
static void push_cfg_or_site(lua_State *L, int self, const char *k, const char *site_section, const char *site_key)
{
    int top = lua_gettop(L);
    lua_getfield(L, self, "config");
    if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, k) != LUA_TNIL) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return;
    }
    lua_settop(L, top);
    lua_getfield(L, self, "site");
    if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, site_section) == LUA_TTABLE) {
        lua_getfield(L, -1, site_key);
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return;
    }
    lua_settop(L, top);
    lua_pushnil(L);
}

static const char *server_id(lua_State *L, int self)
{
    const char *id = sbot_field_tostr(L, self, "id");
    return id ? id : "server";
}

/* Names through the hooks: pushes zvol, target, extent names. */
static void push_names(lua_State *L, int self, const char *pool, const char *version)
{
    const char *id = server_id(L, self);
    lua_pushstring(L, id);
    lua_pushstring(L, version);
    lua_pushstring(L, pool);
    sbot_component_hook(L, self, "zvol_name", 3);
    lua_pushstring(L, id);
    lua_pushstring(L, version);
    sbot_component_hook(L, self, "target_name", 2);
    lua_pushstring(L, id);
    lua_pushstring(L, version);
    sbot_component_hook(L, self, "extent_name", 2);
    for (int i = -3; i <= -1; i++)
        if (lua_type(L, i) != LUA_TSTRING)
            fail(L, "iscsi: the %s hook did not return a string", i == -3 ? "zvol_name" : i == -2 ? "target_name" : "extent_name");
}

/* version with dots as underscores */
static void push_underscored(lua_State *L, const char *v)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; *v; v++)
        luaL_addchar(&b, *v == '.' ? '_' : *v);
    luaL_pushresult(&b);
}

static int h_zvol_name(lua_State *L)
{
    const char *server = luaL_checkstring(L, 1), *version = luaL_checkstring(L, 2), *pool = luaL_checkstring(L, 3);
    push_underscored(L, version);
    lua_pushfstring(L, "%s/openshift_installations/r630_%s_%s", pool, server, lua_tostring(L, -1));
    return 1;
}

static int h_target_name(lua_State *L)
{
    lua_pushfstring(L, "r630-%s.openshift%s", luaL_checkstring(L, 1), luaL_checkstring(L, 2));
    return 1;
}

static int h_extent_name(lua_State *L)
{
    const char *server = luaL_checkstring(L, 1);
    push_underscored(L, luaL_checkstring(L, 2));
    lua_pushfstring(L, "openshift_r630_%s_%s_extent", server, lua_tostring(L, -1));
    return 1;
}

static int h_initiator_name(lua_State *L)
{
    lua_pushfstring(L, "iqn.2024-01.org.sbot:%s", luaL_checkstring(L, 1));
    return 1;
}

/* ---- open ---------------------------------------------------------------------------- */

static int c_open(lua_State *L)
{
    int self = 1;
    lua_getfield(L, self, "site");
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, "truenas") != LUA_TTABLE)
        return fail(L, "iscsi: the site has no truenas section (url, api_key, pool, portal)");
    int tn = lua_gettop(L);
    lua_createtable(L, 0, 6);
    int o = lua_gettop(L);
    static const char *const keys[] = {"url", "api_key", "user", "tls", NULL};
    for (int i = 0; keys[i]; i++) {
        lua_getfield(L, tn, keys[i]);
        lua_setfield(L, o, keys[i]);
    }
    lua_getfield(L, self, "config");
    lua_getfield(L, -1, "timeout");
    lua_setfield(L, o, "timeout");
    lua_getfield(L, -1, "call_timeout");
    lua_setfield(L, o, "call_timeout");
    lua_getfield(L, -1, "login_wait");
    double wait = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 90;
    lua_pop(L, 2); /* login_wait, config */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.truenas");
    lua_call(L, 1, 0);
    /* TrueNAS takes 20 logins a minute from one address (then EBUSY "Rate
     * Limit Exceeded"): a fleet of more servers than that, each worker with
     * its own connection, waits its turn rather than failing. */
    double start = now_mono(), waited = 0;
    int warned = 0;
    for (;;) {
        int n = sbot_truenas_connect(L, o);
        if (n == 1)
            return 1;
        const char *msg = lua_tostring(L, -2), *code = lua_tostring(L, -1);
        int limited = code && strcmp(code, "EBUSY") == 0 && msg && strstr(msg, "Rate Limit");
        waited = now_mono() - start;
        if (limited && waited + RATE_RETRY <= wait) {
            if (!warned++)
                sbot_log(L, SBOT_WARN, "iscsi (%s): TrueNAS refuses logins for now (%s; it takes 20 a minute "
                         "from one address): trying again every %.0f s for up to %.0f s",
                         server_id(L, self), msg, RATE_RETRY, wait);
            lua_settop(L, o);
            sleep_for(RATE_RETRY);
            continue;
        }
        /* nil, message: the runner reports "<phase>: open: truenas: ..." */
        lua_pushnil(L);
        if (limited)
            lua_pushfstring(L, "truenas: %s (still after %d s of waiting: TrueNAS takes 20 logins a minute from one "
                               "address; login_wait sets how long to wait)", msg, (int)waited);
        else
            lua_pushfstring(L, "truenas: %s", msg);
        return 2;
    }
}

/* ---- discover -------------------------------------------------------------------------- */

/* Does the IP of a portal entry (at idx) serve `ip`? */
static int portal_serves(lua_State *L, int portal, const char *ip)
{
    int found = 0;
    if (lua_getfield(L, portal, "listen") == LUA_TTABLE) {
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
            const char *lip = sbot_field_tostr(L, lua_gettop(L), "ip");
            if (lip && (strcmp(lip, ip) == 0))
                found = 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return found;
}

/* Push the portal entry that serves ip (or every address), or nil. Raises
 * on failure. */
static void push_portal_serving(lua_State *L, int res, const char *ip)
{
    must(L, res, "iscsi.portal.query", 0);
    int list = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
        int p = lua_gettop(L);
        if (portal_serves(L, p, ip) || portal_serves(L, p, "0.0.0.0")) {
            lua_replace(L, list);
            return;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the nil that ended the list */
    lua_pushnil(L);
    lua_replace(L, list);
}

/* The list at idx (strings) equals, as a set, the list at idx2. */
static int same_set(lua_State *L, int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    lua_Integer na = (lua_Integer)lua_rawlen(L, a), nb = (lua_Integer)lua_rawlen(L, b);
    if (na != nb)
        return 0;
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, a, i);
        int found = 0;
        for (lua_Integer j = 1; j <= nb && !found; j++) {
            lua_rawgeti(L, b, j);
            found = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (!found)
            return 0;
    }
    return 1;
}

/* What names the server's disk, from the config, the site and the hooks
 * (no TrueNAS call): d gets version, names {zvol, target, extent},
 * initiator, initiators, lun and mark. Pushes pool, version and the portal
 * setting ("ip[:port]"), in that order (discover uses them). */
static void fill_identity(lua_State *L, int self, int d)
{
    self = lua_absindex(L, self);
    d = lua_absindex(L, d);
    const char *id = server_id(L, self);
    push_cfg_or_site(L, self, "pool", "truenas", "pool");
    if (lua_type(L, -1) != LUA_TSTRING)
        fail(L, "iscsi: no pool (config pool or site truenas.pool)");
    const char *pool = lua_tostring(L, -1);
    push_cfg_or_site(L, self, "version", "openshift", "version");
    if (lua_type(L, -1) != LUA_TSTRING)
        fail(L, "iscsi: no OpenShift version for the names (config version or site openshift.version)");
    const char *version = lua_tostring(L, -1);
    lua_pushvalue(L, -1);
    lua_setfield(L, d, "version");
    push_cfg_or_site(L, self, "portal", "truenas", "portal");
    if (lua_type(L, -1) != LUA_TSTRING)
        fail(L, "iscsi: no portal (config portal or site truenas.portal, \"ip[:port]\")");
    int top = lua_gettop(L); /* pool, version, portal stay */

    /* names: config overrides, else hooks */
    push_names(L, self, pool, version);
    int names = lua_gettop(L) - 2;
    lua_getfield(L, self, "config");
    int cfg = lua_gettop(L);
    for (int i = 0; i < 2; i++) { /* config zvol.name / target.name win over the hooks */
        int t = lua_gettop(L);
        if (lua_getfield(L, cfg, i == 0 ? "zvol" : "target") == LUA_TTABLE &&
            lua_getfield(L, -1, "name") == LUA_TSTRING)
            lua_replace(L, names + i);
        lua_settop(L, t);
    }
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, names);
    lua_setfield(L, -2, "zvol");
    lua_pushvalue(L, names + 1);
    lua_setfield(L, -2, "target");
    lua_pushvalue(L, names + 2);
    lua_setfield(L, -2, "extent");
    lua_setfield(L, d, "names");

    /* the server's initiator (the hook), and the group's initiators (config, else that one) */
    lua_pushstring(L, id);
    sbot_component_hook(L, self, "initiator_name", 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        fail(L, "iscsi: the initiator_name hook did not return a string");
    lua_setfield(L, d, "initiator");
    if (lua_getfield(L, cfg, "initiators") != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        sbot_push_array(L);
        lua_getfield(L, d, "initiator");
        lua_rawseti(L, -2, 1);
    }
    lua_setfield(L, d, "initiators");
    lua_pushinteger(L, ifield(L, cfg, "lun", 0));
    lua_setfield(L, d, "lun");
    lua_pushfstring(L, "sbot:%s", id);
    lua_setfield(L, d, "mark");
    lua_settop(L, top);
}

/* The target's address as an initiator sees it: d gets basename, iqn
 * (<basename>:<target name>), portal_ip and portal ("ip:port": the port of
 * the portal setting, else the global listen port). */
/* The portal setting "ip[:port]" or "[ipv6][:port]" (a bare IPv6 address has
 * no port): the address without brackets into ip, the port into *port (0:
 * none given). 0, or -1 with the reason in err. */
static int parse_portal(const char *portal, char *ip, size_t iplen, long *port, char *err, size_t errlen)
{
    const char *port_text = NULL;
    *port = 0;
    if (portal[0] == '[') {
        const char *close = strchr(portal, ']');
        if (!close || (close[1] != '\0' && close[1] != ':')) {
            snprintf(err, errlen, "iscsi: portal '%s': expected \"ip[:port]\" or \"[ipv6][:port]\"", portal);
            return -1;
        }
        snprintf(ip, iplen, "%.*s", (int)(close - portal - 1), portal + 1);
        if (close[1] == ':')
            port_text = close + 2;
    } else {
        const char *colon = strchr(portal, ':');
        if (colon && !strchr(colon + 1, ':')) { /* one colon: ip:port (more: a bare IPv6 address) */
            snprintf(ip, iplen, "%.*s", (int)(colon - portal), portal);
            port_text = colon + 1;
        } else {
            snprintf(ip, iplen, "%s", portal);
        }
    }
    if (port_text) {
        char *end;
        long v = strtol(port_text, &end, 10);
        if (!*port_text || *end || v < 1 || v > 65535) {
            snprintf(err, errlen, "iscsi: portal '%s': the port must be a number from 1 to 65535", portal);
            return -1;
        }
        *port = v;
    }
    if (!ip[0]) {
        snprintf(err, errlen, "iscsi: portal '%s': no address", portal);
        return -1;
    }
    return 0;
}

/* d.basename, d.iqn, d.portal_ip and d.portal ("ip:port", "[ipv6]:port")
 * from the portal setting (its port, else listen_port). NULL, or why the
 * setting is wrong. */
static const char *fill_address(lua_State *L, int d, const char *portal_cfg, const char *basename,
                                lua_Integer listen_port, char *err, size_t errlen)
{
    d = lua_absindex(L, d);
    lua_getfield(L, d, "names");
    const char *tname = sbot_field_tostr(L, lua_gettop(L), "target");
    lua_pushstring(L, basename ? basename : "");
    lua_setfield(L, d, "basename");
    lua_pushfstring(L, "%s:%s", basename ? basename : "", tname ? tname : "");
    lua_setfield(L, d, "iqn");
    lua_pop(L, 1);
    char pip[256];
    long pport;
    if (parse_portal(portal_cfg, pip, sizeof pip, &pport, err, errlen) != 0)
        return err;
    if (!pport)
        pport = (long)listen_port;
    lua_pushstring(L, pip);
    lua_setfield(L, d, "portal_ip");
    if (strchr(pip, ':'))
        lua_pushfstring(L, "[%s]:%d", pip, (int)pport);
    else
        lua_pushfstring(L, "%s:%d", pip, (int)pport);
    lua_setfield(L, d, "portal");
    return NULL;
}

/* Is there a port in the portal setting? (a wrong one counts as none: the
 * address is refused with its reason by fill_address) */
static int portal_has_port(const char *portal)
{
    char ip[256], err[300];
    long port;
    return parse_portal(portal, ip, sizeof ip, &port, err, sizeof err) == 0 && port > 0;
}

/* IscsiComponent.address(c [, global]) -> {iqn, portal, portal_ip, lun,
 * initiator, names, version, basename} | nil, message: the disk's address
 * computed as discover does, from the config, the site and the hooks,
 * without asking TrueNAS — with global = {basename, listen_port} (what
 * iscsi.global.config says; default: the site's truenas.basename and the
 * portal setting's port). For steps that need the address before the disk's
 * own step runs (the agent ISO's rootDeviceHints). */
static int l_address(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_newtable(L);
    int d = lua_gettop(L);
    fill_identity(L, 1, d);
    const char *portal_cfg = lua_tostring(L, -1);
    const char *basename = NULL;
    lua_Integer port = -1;
    if (lua_istable(L, 2)) {
        basename = sbot_field_tostr(L, 2, "basename");
        port = ifield(L, 2, "listen_port", -1);
    }
    if (!basename) {
        lua_getfield(L, 1, "site");
        if (lua_istable(L, -1) && lua_getfield(L, -1, "truenas") == LUA_TTABLE)
            basename = sbot_field_tostr(L, lua_gettop(L), "basename");
    }
    if (!basename) {
        lua_pushnil(L);
        lua_pushliteral(L, "iscsi: the target's basename is not known without TrueNAS: give the site's "
                           "truenas.basename (iscsi.global.config's basename) or discover the disk");
        return 2;
    }
    {
        char ip[256], perr[600];
        long given;
        if (parse_portal(portal_cfg, ip, sizeof ip, &given, perr, sizeof perr) != 0) {
            lua_pushnil(L);
            lua_pushstring(L, perr);
            return 2;
        }
    }
    if (port < 0 && !portal_has_port(portal_cfg)) {
        lua_pushnil(L);
        lua_pushfstring(L, "iscsi: the portal '%s' has no port, and the global listen port is not known "
                           "without TrueNAS: write the site's truenas.portal as ip:port or discover the disk",
                        portal_cfg);
        return 2;
    }
    char perr[600];
    if (fill_address(L, d, portal_cfg, basename, port < 0 ? 3260 : port, perr, sizeof perr)) {
        lua_pushnil(L);
        lua_pushstring(L, perr);
        return 2;
    }
    lua_pushvalue(L, d);
    return 1;
}

/* Append the integer v to the list at idx unless it is there. */
static void add_unique(lua_State *L, int list, lua_Integer v)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        int same = lua_tointeger(L, -1) == v;
        lua_pop(L, 1);
        if (same)
            return;
    }
    lua_pushinteger(L, v);
    lua_rawseti(L, list, n + 1);
}

/* The server's CHAP credentials on TrueNAS. d.chap_tags: the tags the groups
 * of this server's targets name with CHAP (the current target's first, then
 * its other marked targets': a server has a target per version, all with
 * the same credentials). With config.chap, d.chap = {user, secret (the
 * config's secret object: records show "<redacted>"), next_tag, and when an
 * entry with the user is found in those tags (or, left by a run killed
 * before its target used it, one that no target names with the same user,
 * the same secret and no other entry in its tag): auth_id, tag, secret_ok,
 * secret_redacted}. No secret TrueNAS answers is kept in clear. */
static void discover_chap(lua_State *L, int self, int res, int d, const char *mark)
{
    int top = lua_gettop(L);
    int want = want_chap(L, self);
    lua_Integer cur_tid = ifield(L, d, "target_id", -1), cur_tag = -1;
    lua_newtable(L); /* tag -> true: named by a group of any target */
    int referenced = lua_gettop(L);
    sbot_push_array(L);
    int others = lua_gettop(L);
    must(L, res, "iscsi.target.query", 0);
    int targets = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, targets, i) == LUA_TTABLE; i++) {
        int t = lua_gettop(L);
        lua_Integer tid = ifield(L, t, "id", -1);
        int mine = marked_alias(sbot_field_tostr(L, t, "alias"), mark);
        if (lua_getfield(L, t, "groups") == LUA_TTABLE) {
            for (lua_Integer j = 1; lua_rawgeti(L, -1, j) == LUA_TTABLE; j++) {
                lua_Integer tag = ifield(L, -1, "auth", -1);
                const char *m = sbot_field_tostr(L, -1, "authmethod");
                if (tag >= 0) {
                    lua_pushboolean(L, 1);
                    lua_rawseti(L, referenced, tag);
                    if (m && strcmp(m, "NONE") != 0) {
                        if (tid == cur_tid && cur_tag < 0)
                            cur_tag = tag;
                        else if (mine)
                            add_unique(L, others, tag);
                    }
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    sbot_push_array(L);
    int tags = lua_gettop(L);
    if (cur_tag >= 0)
        add_unique(L, tags, cur_tag);
    for (lua_Integer i = 1; lua_rawgeti(L, others, i) == LUA_TNUMBER; i++) {
        add_unique(L, tags, lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, tags);
    lua_setfield(L, d, "chap_tags");
    if (!want) {
        lua_settop(L, top);
        return;
    }

    lua_getfield(L, self, "config");
    lua_getfield(L, -1, "chap");
    int chap = lua_gettop(L);
    const char *user = sbot_field_tostr(L, chap, "user");
    lua_getfield(L, chap, "secret");
    int secret = lua_gettop(L);
    auth_query(L, res, 0);
    int entries = lua_gettop(L);
    lua_Integer next = max_tag(L, entries, targets) + 1; /* a tag nothing names */
    int found = 0, adopted = 0;
    lua_Integer ntags = (lua_Integer)lua_rawlen(L, tags);
    for (lua_Integer k = 1; k <= ntags && !found; k++) {
        lua_rawgeti(L, tags, k);
        lua_Integer tag = lua_tointeger(L, -1);
        lua_pop(L, 1);
        for (lua_Integer i = 1; !found && lua_rawgeti(L, entries, i) == LUA_TTABLE; i++) {
            const char *u = sbot_field_tostr(L, -1, "user");
            if (ifield(L, -1, "tag", -1) == tag && u && user && strcmp(u, user) == 0)
                found = lua_gettop(L);
            else
                lua_pop(L, 1);
        }
        if (!found)
            lua_pop(L, 1); /* the nil that ended the list */
    }
    if (!found) {
        /* left by a run killed between the entry and the target that uses it:
         * only an entry sbot made for this server (its peeruser is the
         * server's mark), never one of another server with the same user */
        for (lua_Integer i = 1; !found && lua_rawgeti(L, entries, i) == LUA_TTABLE; i++) {
            int e = lua_gettop(L);
            const char *u = sbot_field_tostr(L, e, "user");
            lua_Integer tag = ifield(L, e, "tag", -1);
            int named = lua_rawgeti(L, referenced, tag) != LUA_TNIL;
            lua_pop(L, 1);
            int alone = 1;
            for (lua_Integer j = 1; lua_rawgeti(L, entries, j) == LUA_TTABLE; j++) {
                if (j != i && ifield(L, -1, "tag", -2) == tag)
                    alone = 0;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            int same = u && user && strcmp(u, user) == 0 && !named && alone && chap_marked(L, e, mark);
            if (same)
                found = adopted = e;
            else
                lua_pop(L, 1);
        }
        if (!found)
            lua_pop(L, 1);
    }
    lua_createtable(L, 0, 8);
    int dc = lua_gettop(L);
    lua_pushstring(L, user);
    lua_setfield(L, dc, "user");
    lua_pushvalue(L, secret);
    lua_setfield(L, dc, "secret");
    lua_pushinteger(L, next);
    lua_setfield(L, dc, "next_tag");
    if (found) {
        lua_getfield(L, found, "id");
        lua_setfield(L, dc, "auth_id");
        lua_getfield(L, found, "tag");
        lua_setfield(L, dc, "tag");
        lua_getfield(L, found, "secret");
        lua_pushboolean(L, same_secret(L, -1, secret));
        lua_setfield(L, dc, "secret_ok");
        lua_pop(L, 1);
        lua_getfield(L, found, "secret_redacted");
        lua_setfield(L, dc, "secret_redacted");
        if (adopted) {
            lua_pushboolean(L, 1);
            lua_setfield(L, dc, "adopted");
        }
        sbot_set_bool(L, dc, "marked", chap_marked(L, found, mark));
    }
    lua_setfield(L, d, "chap");
    lua_settop(L, top);
}

static int c_discover(lua_State *L)
{
    int self = 1, res = 2;
    const char *id = server_id(L, self);
    char mark[256];
    snprintf(mark, sizeof mark, "sbot:%s", id);
    lua_newtable(L);
    int d = lua_gettop(L);

    /* config + site defaults, names, initiators (fill_identity) */
    fill_identity(L, self, d);
    int pool_i = lua_gettop(L) - 2;
    const char *portal_cfg = lua_tostring(L, -1);
    lua_getfield(L, d, "names");
    int names = lua_gettop(L);
    const char *zvol = sbot_field_tostr(L, names, "zvol");
    const char *tname = sbot_field_tostr(L, names, "target");
    const char *ename = sbot_field_tostr(L, names, "extent");
    lua_getfield(L, d, "initiators");
    int inits = lua_gettop(L);

    /* the system */
    must(L, res, "system.info", 0);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -2, "version");
    lua_setfield(L, -2, "version");
    lua_getfield(L, -2, "hostname");
    lua_setfield(L, -2, "hostname");
    lua_setfield(L, d, "truenas");
    lua_pop(L, 1);
    must(L, res, "iscsi.global.config", 0);
    int global = lua_gettop(L);
    const char *basename = sbot_field_tostr(L, global, "basename");
    lua_Integer listen_port = ifield(L, global, "listen_port", 3260);
    lua_pushinteger(L, listen_port);
    lua_setfield(L, d, "listen_port");
    /* portal "ip[:port]": the port the servers use, else the global one */
    {
        char perr[600];
        if (fill_address(L, d, portal_cfg, basename, listen_port, perr, sizeof perr))
            return fail(L, "%s", perr);
    }
    (void)tname;
    const char *pip = sbot_field_tostr(L, d, "portal_ip"); /* d keeps it alive */

    /* the pool and the space the zvol's parent has */
    lua_createtable(L, 0, 4);
    int pd = lua_gettop(L);
    lua_pushvalue(L, pool_i);
    lua_setfield(L, pd, "name");
    lua_pushvalue(L, pool_i);
    query1(L, res, "pool.query", "name");
    lua_pushboolean(L, !lua_isnil(L, -1));
    lua_setfield(L, pd, "exists");
    lua_pop(L, 1);
    if (lua_getfield(L, pd, "exists"), lua_toboolean(L, -1)) {
        /* the nearest existing ancestor of the zvol */
        char parent[512];
        snprintf(parent, sizeof parent, "%s", zvol);
        for (;;) {
            char *slash = strrchr(parent, '/');
            if (!slash)
                break;
            *slash = '\0';
            lua_pushstring(L, parent);
            query1(L, res, "pool.dataset.query", "id");
            if (!lua_isnil(L, -1)) {
                lua_pushinteger(L, prop_parsed(L, lua_gettop(L), "available"));
                lua_setfield(L, pd, "available");
                lua_pushstring(L, parent);
                lua_setfield(L, pd, "parent");
                lua_pop(L, 1);
                break;
            }
            lua_pop(L, 1);
        }
    } else {
        must(L, res, "pool.query", 0);
        char others[1024] = "";
        size_t on = 0;
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
            const char *nm = sbot_field_tostr(L, -1, "name");
            if (nm && on < sizeof others - 1)
                on += (size_t)snprintf(others + on, sizeof others - on, "%s%s", i > 1 ? ", " : "", nm);
            if (on >= sizeof others)
                on = sizeof others - 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
        lua_pushstring(L, others);
        lua_setfield(L, pd, "others");
    }
    lua_pop(L, 1);
    lua_setfield(L, d, "pool");

    /* the zvol */
    lua_pushstring(L, zvol);
    query1(L, res, "pool.dataset.query", "id");
    if (!lua_isnil(L, -1)) {
        int z = lua_gettop(L);
        lua_createtable(L, 0, 4);
        lua_pushstring(L, zvol);
        lua_setfield(L, -2, "id");
        lua_getfield(L, z, "type");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, prop_parsed(L, z, "volsize"));
        lua_setfield(L, -2, "size");
        lua_getfield(L, z, "comments");
        lua_getfield(L, -1, "value");
        lua_remove(L, -2);
        lua_setfield(L, -2, "comments");
        lua_setfield(L, d, "zvol");
    }
    lua_pop(L, 1);

    /* portal: one that listens on the portal IP (or everywhere) */
    push_portal_serving(L, res, pip);
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "id");
        lua_setfield(L, d, "portal_id");
    }
    lua_pop(L, 1);

    /* initiator group: ours (marked), else one with exactly these initiators */
    must(L, res, "iscsi.initiator.query", 0);
    int groups = lua_gettop(L);
    for (int pass = 0; pass < 2; pass++) {
        lua_getfield(L, d, "initiator_group_id");
        int have = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (have)
            break;
        for (lua_Integer i = 1; lua_rawgeti(L, groups, i) == LUA_TTABLE; i++) {
            int g = lua_gettop(L);
            const char *comment = sbot_field_tostr(L, g, "comment");
            lua_getfield(L, g, "initiators");
            int match = pass == 0 ? (comment && strcmp(comment, mark) == 0) : same_set(L, -1, inits);
            if (match) {
                lua_setfield(L, d, "initiator_group_initiators");
                lua_getfield(L, g, "id");
                lua_setfield(L, d, "initiator_group_id");
                lua_pop(L, 1);
                break;
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* target, extent, mapping */
    lua_pushstring(L, tname);
    query1(L, res, "iscsi.target.query", "name");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "id");
        lua_setfield(L, d, "target_id");
        lua_getfield(L, -1, "groups");
        lua_setfield(L, d, "target_groups");
        lua_getfield(L, -1, "alias");
        lua_setfield(L, d, "target_alias");
    }
    lua_pop(L, 1);
    lua_pushstring(L, ename);
    query1(L, res, "iscsi.extent.query", "name");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "id");
        lua_setfield(L, d, "extent_id");
        lua_getfield(L, -1, "disk");
        lua_setfield(L, d, "extent_disk");
    }
    lua_pop(L, 1);
    lua_pushfstring(L, "zvol/%s", zvol);
    query1(L, res, "iscsi.extent.query", "disk");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "name");
        lua_setfield(L, d, "disk_extent_name");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, d, "extent_id") != LUA_TNIL) {
        query1(L, res, "iscsi.targetextent.query", "extent");
        if (!lua_isnil(L, -1)) {
            lua_createtable(L, 0, 3);
            lua_getfield(L, -2, "id");
            lua_setfield(L, -2, "id");
            lua_getfield(L, -2, "target");
            lua_setfield(L, -2, "target");
            lua_getfield(L, -2, "lunid");
            lua_setfield(L, -2, "lun");
            lua_setfield(L, d, "mapping");
        }
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    /* the LUN on our target: held by another extent? */
    if (lua_getfield(L, d, "target_id") != LUA_TNIL) {
        int v = lua_gettop(L);
        push_filter(L, "target", v);
        lua_remove(L, v);
        must(L, res, "iscsi.targetextent.query", 1);
        lua_Integer mine = ifield(L, d, "extent_id", -1);
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
            if (ifield(L, -1, "lunid", -1) == ifield(L, d, "lun", 0) && ifield(L, -1, "extent", -1) != mine) {
                lua_getfield(L, -1, "extent");
                lua_setfield(L, d, "lun_taken_by");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
    }

    /* the CHAP credentials (iscsi.auth) */
    discover_chap(L, self, res, d, mark);

    /* the service */
    lua_pushliteral(L, "iscsitarget");
    query1(L, res, "service.query", "service");
    if (!lua_isnil(L, -1)) {
        lua_createtable(L, 0, 2);
        lua_getfield(L, -2, "state");
        lua_setfield(L, -2, "state");
        lua_getfield(L, -2, "enable");
        lua_setfield(L, -2, "enable");
        lua_setfield(L, d, "service");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, d);
    return 1;
}

/* ---- plan ------------------------------------------------------------------------------- */

/* Append {resource, action, after = <value at index after, 0 = none>, reason}. */
static void add_change(lua_State *L, int list, int after, const char *resource, const char *action, const char *reason)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, resource);
    lua_setfield(L, -2, "resource");
    lua_pushstring(L, action);
    lua_setfield(L, -2, "action");
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
    if (after) {
        lua_pushvalue(L, after);
        lua_setfield(L, -2, "after");
    }
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

static int valid_target_name(const char *s)
{
    if (!*s || strlen(s) > 120)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == ':'))
            return 0;
    return 1;
}

static int c_plan(lua_State *L)
{
    int self = 1;
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_getfield(L, self, "config");
    int cfg = lua_gettop(L);
    lua_getfield(L, d, "names");
    int names = lua_gettop(L);
    const char *zvol = sbot_field_tostr(L, names, "zvol");
    const char *tname = sbot_field_tostr(L, names, "target");
    const char *ename = sbot_field_tostr(L, names, "extent");
    lua_getfield(L, d, "pool");
    int pool = lua_gettop(L);
    const char *pname = sbot_field_tostr(L, pool, "name");
    const char *id = server_id(L, self);
    char mark[256];
    snprintf(mark, sizeof mark, "sbot:%s", id);
    sbot_push_array(L);
    int list = lua_gettop(L);

    /* everything is checked before anything is written */
    int chap = want_chap(L, self);
    if (chap) {
        /* TrueNAS's rules for a secret (plugins/iscsi_/auth.py), the BIOS's
         * too (12..16): checked here, the value never shown */
        lua_getfield(L, cfg, "chap");
        const char *user = sbot_field_tostr(L, -1, "user");
        if (!user || !*user)
            return fail(L, "iscsi: chap.user: the CHAP user name is empty");
        for (const char *c = user; *c; c++)
            if ((unsigned char)*c <= ' ' || *c == '"' || *c == '\\')
                return fail(L, "iscsi: chap.user '%s': no spaces, quotes, backslashes or control characters "
                               "(the target's configuration cannot hold them)", user);
        lua_getfield(L, -1, "secret");
        size_t n = 0;
        const char *sx = push_secret_text(L, -1, &n);
        if (!sx)
            return fail(L, "iscsi: chap.secret: expected a secret (a secret: reference in the site)");
        const char *why = NULL;
        if (n < 12 || n > 16)
            why = "TrueNAS (and the R630's BIOS) take 12 to 16 characters";
        else if (isspace((unsigned char)sx[0]) || isspace((unsigned char)sx[n - 1]))
            why = "it begins or ends with a space, which TrueNAS refuses";
        else if (memchr(sx, '#', n))
            why = "it contains '#', which TrueNAS refuses";
        else if (memchr(sx, '"', n) || memchr(sx, '\\', n))
            why = "it contains a quote or a backslash, which the target's configuration cannot hold";
        for (size_t i = 0; !why && i < n; i++)
            if ((unsigned char)sx[i] < ' ' || sx[i] == 0x7f)
                why = "it contains a control character";
        lua_pop(L, 3);
        if (why)
            return fail(L, "iscsi: chap.secret of user %s (%zu characters, not shown) cannot be used: %s", user, n,
                        why);
    }
    {
        /* the site's basename is what names are computed from before this
         * step runs (IscsiComponent.address: the agent ISO's rootDeviceHints):
         * it must be the TrueNAS's */
        const char *have = sbot_field_tostr(L, d, "basename");
        lua_getfield(L, self, "site");
        const char *want = NULL;
        if (lua_istable(L, -1) && lua_getfield(L, -1, "truenas") == LUA_TTABLE)
            want = sbot_field_tostr(L, lua_gettop(L), "basename");
        if (want && have && strcmp(want, have) != 0)
            return fail(L, "iscsi: the site's truenas.basename '%s' is not the TrueNAS's iSCSI basename '%s': "
                           "names computed from the site (the agent ISO's rootDeviceHints) would not be this "
                           "disk's; fix truenas.basename", want, have);
        lua_settop(L, list);
    }
    lua_getfield(L, pool, "exists");
    if (!lua_toboolean(L, -1))
        return fail(L, "iscsi: pool '%s' does not exist on the TrueNAS (pools: %s)", pname,
                    sbot_field_tostr(L, pool, "others") ? sbot_field_tostr(L, pool, "others") : "none");
    lua_pop(L, 1);
    if (!valid_target_name(tname))
        return fail(L, "iscsi: target name '%s' is invalid: TrueNAS takes 1-120 characters of lowercase letters, "
                       "digits, '.', '-' and ':' (no underscores; write the version with dots)", tname);
    if (strncmp(zvol, pname, strlen(pname)) != 0 || zvol[strlen(pname)] != '/')
        return fail(L, "iscsi: zvol '%s' is not in pool '%s'", zvol, pname);
    if (strlen(zvol) > 255)
        return fail(L, "iscsi: zvol name '%s' is longer than ZFS's 255 characters", zvol);
    {
        const char *me = sbot_field_tostr(L, d, "initiator");
        int in = 0;
        lua_getfield(L, d, "initiators");
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
            if (me && strcmp(lua_tostring(L, -1), me) == 0)
                in = 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
        if (!in)
            return fail(L, "iscsi: the server's initiator %s is not in the initiator group (initiators): it could "
                           "not log in to its own disk; add it or change the initiator_name hook", me ? me : "?");
    }

    /* zvol size: config zvol.size, else site truenas.zvol_size */
    lua_getfield(L, cfg, "zvol");
    int zc = lua_gettop(L);
    if (lua_type(L, zc) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    lua_getfield(L, zc, "size");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        push_cfg_or_site(L, self, "zvol_size", "truenas", "zvol_size");
    }
    if (lua_isnil(L, -1))
        return fail(L, "iscsi: no zvol size (config zvol.size or site truenas.zvol_size)");
    lua_Integer size = parse_size(L, -1, "iscsi: zvol.size");
    lua_pop(L, 1);
    lua_getfield(L, zc, "volblocksize");
    lua_Integer bs = lua_isnil(L, -1) ? 16384 : parse_size(L, -1, "iscsi: zvol.volblocksize");
    const char *bs_text = lua_isnil(L, -1) ? "16K" : lua_tostring(L, -1);
    char bs_buf[16];
    snprintf(bs_buf, sizeof bs_buf, "%s", bs_text ? bs_text : "16K");
    lua_pop(L, 1);
    lua_getfield(L, zc, "sparse");
    int sparse = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, zc, "force_size");
    int force = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, zc, "existing");
    int existing = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (size % bs != 0)
        return fail(L, "iscsi: zvol.size %lld is not a multiple of volblocksize %s (%lld bytes)", (long long)size,
                    bs_buf, (long long)bs);

    /* the zvol */
    lua_getfield(L, d, "zvol");
    if (lua_isnil(L, -1) && existing)
        return fail(L, "iscsi: zvol %s does not exist, and zvol.existing is set: this step only points the "
                       "server at a disk that is already there (it never creates an empty disk to boot from); "
                       "install version %s on it first (full_deployment or iscsi_only)", zvol,
                    sbot_field_tostr(L, d, "version") ? sbot_field_tostr(L, d, "version") : "?");
    if (lua_isnil(L, -1)) {
        lua_Integer avail = ifield(L, pool, "available", -1);
        if (avail >= 0 && !force && (double)size > 0.8 * (double)avail)
            return fail(L, "iscsi: zvol %s of %lld bytes is more than 80%% of the %lld bytes available under %s: "
                           "TrueNAS refuses it (set zvol.force_size to override, or a smaller zvol.size)",
                        zvol, (long long)size, (long long)avail,
                        sbot_field_tostr(L, pool, "parent") ? sbot_field_tostr(L, pool, "parent") : pname);
        lua_createtable(L, 0, 8);
        lua_pushstring(L, zvol);
        lua_setfield(L, -2, "name");
        lua_pushliteral(L, "VOLUME");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, size);
        lua_setfield(L, -2, "volsize");
        lua_pushstring(L, bs_buf);
        lua_setfield(L, -2, "volblocksize");
        lua_pushboolean(L, sparse);
        lua_setfield(L, -2, "sparse");
        if (force) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "force_size");
        }
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "create_ancestors");
        lua_pushstring(L, mark);
        lua_setfield(L, -2, "comments");
        lua_pushfstring(L, "zvol:%s", zvol);
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "the server's boot zvol does not exist");
        lua_pop(L, 2);
    } else {
        lua_Integer have = ifield(L, -1, "size", -1);
        const char *type = sbot_field_tostr(L, -1, "type");
        if (type && strcmp(type, "VOLUME") != 0)
            return fail(L, "iscsi: %s exists and is a %s, not a zvol", zvol, type);
        if (have != size && !existing) /* an existing disk is taken as it is */
            return fail(L, "iscsi: zvol %s exists with %lld bytes, the config asks %lld: sbot does not resize "
                           "(or delete) a boot disk; change zvol.size or the zvol by hand", zvol, (long long)have,
                        (long long)size);
    }
    lua_pop(L, 1);

    /* portal */
    lua_getfield(L, d, "portal_id");
    if (lua_isnil(L, -1)) {
        lua_createtable(L, 0, 2);
        lua_createtable(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_getfield(L, d, "portal_ip");
        lua_setfield(L, -2, "ip");
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, "listen");
        lua_pushstring(L, mark);
        lua_setfield(L, -2, "comment");
        lua_pushfstring(L, "portal:%s", sbot_field_tostr(L, d, "portal_ip"));
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "no portal listens on the portal's address");
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    /* initiator group */
    lua_getfield(L, d, "initiator_group_id");
    if (lua_isnil(L, -1)) {
        lua_createtable(L, 0, 2);
        lua_getfield(L, d, "initiators");
        lua_setfield(L, -2, "initiators");
        lua_pushstring(L, mark);
        lua_setfield(L, -2, "comment");
        lua_pushfstring(L, "initiator_group:%s", sbot_field_tostr(L, d, "initiator"));
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "no initiator group holds the server's initiator");
        lua_pop(L, 1);
        lua_pop(L, 1);
    } else {
        lua_getfield(L, d, "initiator_group_initiators");
        lua_getfield(L, d, "initiators");
        int same = lua_type(L, -2) == LUA_TTABLE && same_set(L, -1, -2);
        lua_pop(L, 2);
        if (!same) {
            lua_createtable(L, 0, 1);
            lua_getfield(L, d, "initiators");
            lua_setfield(L, -2, "initiators");
            lua_pushfstring(L, "initiator_group:%s", sbot_field_tostr(L, d, "initiator"));
            add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "update", "the server's initiator group lists other initiators");
            lua_pop(L, 1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);

    /* the CHAP credentials: the server's user and secret in a tag of its own */
    lua_Integer chap_tag = -1;
    if (chap) {
        lua_getfield(L, d, "chap");
        int dc = lua_gettop(L);
        const char *user = sbot_field_tostr(L, dc, "user");
        lua_getfield(L, dc, "secret_redacted");
        if (lua_toboolean(L, -1))
            return fail(L, "iscsi: TrueNAS shows the CHAP secret of user %s as %s: the API key's user may not read "
                           "it (it needs the SHARING_ISCSI_AUTH_WRITE role, or full admin), so sbot cannot compare it",
                        user, REDACTED_SECRET);
        lua_pop(L, 1);
        chap_tag = ifield(L, dc, "tag", -1);
        if (ifield(L, dc, "auth_id", -1) < 0) {
            lua_createtable(L, 0, 3);
            lua_pushinteger(L, ifield(L, dc, "next_tag", 1));
            lua_setfield(L, -2, "tag");
            lua_pushstring(L, user);
            lua_setfield(L, -2, "user");
            lua_getfield(L, dc, "secret");
            lua_setfield(L, -2, "secret");
            lua_pushfstring(L, "chap:%s", user);
            add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create",
                       "no CHAP credentials of this user in the server's tags (iscsi.auth)");
            lua_pop(L, 2);
        } else {
            lua_getfield(L, dc, "secret_ok");
            int ok = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (!ok) {
                lua_createtable(L, 0, 1);
                lua_getfield(L, dc, "secret");
                lua_setfield(L, -2, "secret");
                lua_pushfstring(L, "chap:%s", user);
                add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "update",
                           "the CHAP secret on TrueNAS is not the config's");
                lua_pop(L, 2);
                lua_rawgeti(L, list, (lua_Integer)lua_rawlen(L, list));
                lua_createtable(L, 0, 1);
                lua_pushliteral(L, "(another)");
                lua_setfield(L, -2, "secret");
                lua_setfield(L, -2, "before");
                lua_pop(L, 1);
            }
            if (!sbot_field_bool(L, dc, "marked", 0)) {
                /* an entry made before sbot marked its entries: marked now,
                 * so that housekeep knows it for this server's (a change of
                 * its own: not a new secret, nothing to send to the R630) */
                lua_createtable(L, 0, 1);
                sbot_set_str(L, -1, "peeruser", mark);
                lua_pushfstring(L, "chap_mark:%s", user);
                add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "update",
                           "the CHAP entry does not carry sbot's mark for this server (peeruser)");
                lua_pop(L, 2);
                lua_rawgeti(L, list, (lua_Integer)lua_rawlen(L, list));
                lua_createtable(L, 0, 1);
                sbot_set_str(L, -1, "peeruser", "(not the mark)");
                lua_setfield(L, -2, "before");
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }

    /* target (with the group pair) */
    lua_getfield(L, d, "target_id");
    if (lua_isnil(L, -1)) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, tname);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, chap ? "CHAP" : "NONE");
        lua_setfield(L, -2, "authmethod");
        lua_pushfstring(L, "target:%s", tname);
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "the server's target does not exist");
        lua_pop(L, 2);
    } else {
        /* the pair present? (ids known when both exist) */
        lua_getfield(L, d, "portal_id");
        lua_getfield(L, d, "initiator_group_id");
        int known = !lua_isnil(L, -1) && !lua_isnil(L, -2);
        lua_Integer pid = (lua_Integer)lua_tonumber(L, -2), gid = (lua_Integer)lua_tonumber(L, -1);
        lua_pop(L, 2);
        /* TrueNAS keeps one group per portal on a target */
        int has = 0, auth_ok = 0;
        char method[32] = "NONE";
        if (known && lua_getfield(L, d, "target_groups") == LUA_TTABLE) {
            for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
                if (ifield(L, -1, "portal", -1) == pid) {
                    has = ifield(L, -1, "initiator", -1) == gid;
                    const char *m = sbot_field_tostr(L, -1, "authmethod");
                    snprintf(method, sizeof method, "%s", m ? m : "NONE");
                    auth_ok = chap ? strcmp(method, "CHAP") == 0 && chap_tag >= 0 && ifield(L, -1, "auth", -1) == chap_tag
                                   : strcmp(method, "NONE") == 0;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (!has || !auth_ok) {
            lua_createtable(L, 0, 1);
            lua_pushstring(L, chap ? "CHAP" : "NONE");
            lua_setfield(L, -2, "authmethod");
            lua_pushfstring(L, "target_groups:%s", tname);
            add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "update",
                       !has ? "the target lacks the (portal, initiator group) pair"
                       : chap ? "the target's group does not ask for the server's CHAP credentials"
                              : "the target's group asks for CHAP, the config has none");
            lua_pop(L, 2);
            if (has) {
                lua_rawgeti(L, list, (lua_Integer)lua_rawlen(L, list));
                lua_createtable(L, 0, 1);
                lua_pushstring(L, method);
                lua_setfield(L, -2, "authmethod");
                lua_setfield(L, -2, "before");
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);

    /* extent */
    lua_getfield(L, d, "extent_id");
    if (lua_isnil(L, -1)) {
        const char *other = sbot_field_tostr(L, d, "disk_extent_name");
        if (other)
            return fail(L, "iscsi: zvol %s is already the disk of extent '%s' (not '%s'): set the extent_name hook "
                           "or remove that extent", zvol, other, ename);
        lua_createtable(L, 0, 4);
        lua_pushstring(L, ename);
        lua_setfield(L, -2, "name");
        lua_pushliteral(L, "DISK");
        lua_setfield(L, -2, "type");
        lua_pushfstring(L, "zvol/%s", zvol);
        lua_setfield(L, -2, "disk");
        lua_pushstring(L, mark);
        lua_setfield(L, -2, "comment");
        lua_pushfstring(L, "extent:%s", ename);
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "the zvol has no extent");
        lua_pop(L, 2);
    } else {
        const char *disk = sbot_field_tostr(L, d, "extent_disk");
        char want[600];
        snprintf(want, sizeof want, "zvol/%s", zvol);
        if (!disk || strcmp(disk, want) != 0)
            return fail(L, "iscsi: extent '%s' exists on %s, not on %s", ename, disk ? disk : "no disk", want);
    }
    lua_pop(L, 1);

    /* mapping */
    lua_Integer lun = ifield(L, d, "lun", 0);
    lua_getfield(L, d, "mapping");
    if (lua_isnil(L, -1)) {
        lua_Integer other = ifield(L, d, "lun_taken_by", -1);
        if (other >= 0)
            return fail(L, "iscsi: LUN %lld of target %s is already extent %lld's: choose another lun, or free it",
                        (long long)lun, tname, (long long)other);
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, lun);
        lua_setfield(L, -2, "lunid");
        lua_pushfstring(L, "mapping:%s/%d", tname, (int)lun);
        add_change(L, list, lua_gettop(L) - 1, lua_tostring(L, -1), "create", "the extent is not mapped to the target");
        lua_pop(L, 2);
    } else {
        lua_Integer mt = ifield(L, -1, "target", -1), ml = ifield(L, -1, "lun", -1);
        lua_Integer tid = ifield(L, d, "target_id", -2);
        if (mt != tid)
            return fail(L, "iscsi: extent '%s' is mapped to target %lld, not to %s: TrueNAS maps an extent to one "
                           "target only", ename, (long long)mt, tname);
        if (ml != lun)
            return fail(L, "iscsi: extent '%s' is LUN %lld of %s, the config asks LUN %lld", ename, (long long)ml, tname,
                        (long long)lun);
    }
    lua_pop(L, 1);

    /* the service: before -> after shown in the plan */
    lua_getfield(L, d, "service");
    int svc = lua_gettop(L);
    if (lua_type(L, svc) != LUA_TTABLE)
        return fail(L, "iscsi: TrueNAS lists no iscsitarget service (service.query): nothing could be exported");
    if (lua_getfield(L, svc, "enable"), !lua_toboolean(L, -1)) {
        lua_createtable(L, 0, 1);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "enable");
        add_change(L, list, lua_gettop(L), "service:iscsitarget:enable", "update", "iscsitarget does not start at boot");
        lua_pop(L, 1);
        lua_rawgeti(L, list, (lua_Integer)lua_rawlen(L, list));
        lua_createtable(L, 0, 1);
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "enable");
        lua_setfield(L, -2, "before");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    const char *st = sbot_field_tostr(L, svc, "state");
    if (!st || strcmp(st, "RUNNING") != 0) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "RUNNING");
        lua_setfield(L, -2, "state");
        add_change(L, list, lua_gettop(L), "service:iscsitarget:start", "update",
                   "iscsitarget is not running: nothing is exported until it runs");
        lua_pop(L, 1);
        lua_rawgeti(L, list, (lua_Integer)lua_rawlen(L, list));
        lua_createtable(L, 0, 1);
        lua_pushstring(L, st ? st : "unknown");
        lua_setfield(L, -2, "state");
        lua_setfield(L, -2, "before");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, list);
    return 1;
}

/* ---- apply / undo ---------------------------------------------------------------------------- */

/* Create with the args table on top (consumed); on a lost answer, look the
 * object up (query field = value at key) and adopt it, else create once more.
 * Leaves the entry. */
static void create_or_adopt(lua_State *L, int res, const char *create, const char *query, const char *field,
                            const char *key)
{
    int args = lua_gettop(L);
    for (int attempt = 0;; attempt++) {
        lua_pushvalue(L, args);
        int n = sbot_truenas_call(L, res, create, 1);
        if (n == 1) {
            lua_remove(L, args);
            return;
        }
        const char *code = lua_tostring(L, -1);
        if (!transport_code(code) || attempt >= 2)
            fail(L, "%s", lua_tostring(L, -2));
        lua_pop(L, 3);
        lua_getfield(L, args, key);
        query1(L, res, query, field);
        if (!lua_isnil(L, -1)) {
            lua_remove(L, args);
            return;
        }
        lua_pop(L, 1);
    }
}

static lua_Integer ids_get(lua_State *L, int self, const char *k)
{
    int st = state(L, self);
    lua_Integer v = ifield(L, st, k, -1);
    lua_pop(L, 1);
    if (v < 0) {
        lua_getfield(L, self, "discovery");
        char dk[64];
        snprintf(dk, sizeof dk, "%s_id", k);
        v = ifield(L, -1, dk, -1);
        lua_pop(L, 1);
    }
    return v;
}

static void ids_set(lua_State *L, int self, const char *k, int value, int created)
{
    value = lua_absindex(L, value);
    int st = state(L, self);
    lua_pushvalue(L, value);
    lua_setfield(L, st, k);
    if (created) {
        char ck[64];
        snprintf(ck, sizeof ck, "created_%s", k);
        lua_pushvalue(L, value);
        lua_setfield(L, st, ck);
    }
    lua_pop(L, 1);
}

/* Delete by id (method, id): done when TrueNAS deletes it or answers that it
 * does not exist. A lost answer is read back with get: gone is done; still
 * there, or the read-back failing, raises. A refusal whose message contains
 * keep (NULL: none) leaves the object: returns 0 with TrueNAS's message
 * pushed; else returns 1, nothing pushed. Raises on any other failure. */
static int delete_unless(lua_State *L, int res, const char *method, const char *get, lua_Integer id, const char *keep)
{
    lua_pushinteger(L, id);
    int n = sbot_truenas_call(L, res, method, 1);
    if (n == 1) {
        lua_pop(L, 1);
        return 1;
    }
    const char *msg = lua_tostring(L, -2);
    if (msg && strstr(msg, "does not exist")) {
        lua_pop(L, 3);
        return 1;
    }
    if (keep && msg && strstr(msg, keep)) {
        lua_pop(L, 1);     /* the code */
        lua_remove(L, -2); /* the nil */
        return 0;
    }
    if (!transport_code(lua_tostring(L, -1)))
        fail(L, "%s", msg ? msg : method);
    lua_pop(L, 3);
    lua_pushinteger(L, id);
    n = sbot_truenas_call(L, res, get, 1);
    if (n == 1)
        fail(L, "%s %lld: the answer was lost and it still exists", method, (long long)id);
    msg = lua_tostring(L, -2);
    if (!msg || !strstr(msg, "does not exist"))
        fail(L, "%s %lld: the answer was lost and reading it back failed: %s", method, (long long)id,
             msg ? msg : get);
    lua_pop(L, 3);
    return 1;
}

/* delete_unless with no refusal tolerated. */
static void delete_id(lua_State *L, int res, const char *method, const char *get, lua_Integer id)
{
    delete_unless(L, res, method, get, id, NULL);
}

/* The tag of the server's CHAP credentials: this run's (made by the chap:
 * change), else the discovered one; -1 when none. */
static lua_Integer chap_tag_now(lua_State *L, int self)
{
    int st = state(L, self);
    lua_Integer t = ifield(L, st, "chap_tag", -1);
    lua_pop(L, 1);
    if (t < 0) {
        lua_getfield(L, self, "discovery");
        if (lua_getfield(L, -1, "chap") == LUA_TTABLE)
            t = ifield(L, -1, "tag", -1);
        lua_pop(L, 2);
    }
    return t;
}

/* Push the target group {portal, initiator, authmethod[, auth]} the config
 * wants: CHAP with the server's tag, or NONE (auth null). */
static void push_group(lua_State *L, int self, lua_Integer pid, lua_Integer gid)
{
    int chap = want_chap(L, self);
    lua_Integer tag = chap ? chap_tag_now(L, self) : -1;
    if (chap && tag < 0)
        fail(L, "iscsi: the server's CHAP tag is not known: its credentials were not made (the chap: change)");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, pid);
    lua_setfield(L, -2, "portal");
    lua_pushinteger(L, gid);
    lua_setfield(L, -2, "initiator");
    lua_pushstring(L, chap ? "CHAP" : "NONE");
    lua_setfield(L, -2, "authmethod");
    if (chap) {
        lua_pushinteger(L, tag);
        lua_setfield(L, -2, "auth");
    }
}

/* The first tag no auth entry and no target's group names. Raises on failure. */
static lua_Integer free_tag(lua_State *L, int res)
{
    auth_query(L, res, 0);
    must(L, res, "iscsi.target.query", 0);
    lua_Integer t = max_tag(L, lua_gettop(L) - 1, lua_gettop(L)) + 1;
    lua_pop(L, 2);
    return t;
}

/* [[field1, "=", v1], [field2, "=", v2]] with v1 an integer, v2 a string. */
static void push_filter2(lua_State *L, const char *f1, lua_Integer v1, const char *f2, const char *v2)
{
    sbot_push_array(L);
    for (int i = 0; i < (f2 ? 2 : 1); i++) {
        sbot_push_array(L);
        lua_pushstring(L, i == 0 ? f1 : f2);
        lua_rawseti(L, -2, 1);
        lua_pushliteral(L, "=");
        lua_rawseti(L, -2, 2);
        if (i == 0)
            lua_pushinteger(L, v1);
        else
            lua_pushstring(L, v2);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, i + 1);
    }
}

/* lua_CFunction (res, tag, id): is there an entry with that tag and a lower
 * id (another run's, older)? Raises on failure. */
static int l_older_in_tag(lua_State *L)
{
    lua_Integer tag = luaL_checkinteger(L, 2), id = luaL_checkinteger(L, 3);
    push_filter2(L, "tag", tag, NULL, NULL);
    auth_query(L, 1, 1);
    lua_Integer older = 0;
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
        lua_Integer other = ifield(L, -1, "id", -1);
        if (other >= 0 && other < id)
            older++;
        lua_pop(L, 1);
    }
    lua_pushinteger(L, older);
    return 1;
}

/* lua_CFunction (res, id): delete the auth entry id (delete_id). */
static int l_delete_auth(lua_State *L)
{
    delete_id(L, 1, "iscsi.auth.delete", "iscsi.auth.get_instance", luaL_checkinteger(L, 2));
    return 0;
}

/* The entry id this change made cannot stay: the change fails, and a failed
 * change is not undone (only the ones before it). Delete it (protected),
 * then raise the message on the stack top, saying what became of it. */
static int chap_fail_made(lua_State *L, int res, lua_Integer id)
{
    int msg = lua_gettop(L);
    lua_pushcfunction(L, l_delete_auth);
    lua_pushvalue(L, res);
    lua_pushinteger(L, id);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK)
        return fail(L, "%s (the CHAP entry %lld this change made was deleted)", lua_tostring(L, msg), (long long)id);
    return fail(L, "%s; the CHAP entry %lld this change made could not be deleted (%s): delete it by hand",
                lua_tostring(L, msg), (long long)id, lua_tostring(L, -1));
}

/* Rounds a CHAP create may take before it gives up: each round a tag taken
 * by an older entry at once (parallel runs) sends this one to another. */
#define CHAP_TAG_ROUNDS 12

/* The chap: change. create: the entry {tag, user, secret} (a lost answer is
 * looked up by tag and user and adopted); servers converging in parallel may
 * pick the same free tag, so the tag is read back: when an older entry (a
 * lower id) has it too, this one goes and the next free tag is taken. update:
 * the secret. Leaves {id, tag} (never the secret) at out. */
static void apply_chap(lua_State *L, int self, int res, const char *action, int after, int out)
{
    lua_getfield(L, self, "discovery");
    lua_getfield(L, -1, "chap");
    int dc = lua_gettop(L);
    const char *user = sbot_field_tostr(L, dc, "user");
    if (strcmp(action, "update") == 0) {
        lua_Integer id = ifield(L, dc, "auth_id", -1);
        for (int attempt = 0;; attempt++) {
            lua_pushinteger(L, id);
            lua_createtable(L, 0, 1);
            lua_getfield(L, after, "secret");
            lua_setfield(L, -2, "secret");
            int n = sbot_truenas_call(L, res, "iscsi.auth.update", 2);
            if (n == 1)
                break;
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2)
                fail(L, "%s", lua_tostring(L, -2)); /* idempotent: a lost answer is sent again */
            lua_pop(L, 3);
        }
        lua_pop(L, 1);
        lua_pushinteger(L, id);
        lua_setfield(L, out, "id");
        lua_pushinteger(L, ifield(L, dc, "tag", -1));
        lua_setfield(L, out, "tag");
        lua_pop(L, 2);
        return;
    }
    lua_Integer tag = ifield(L, after, "tag", 1);
    const char *mark = sbot_field_str(L, dc - 1, "mark");
    if (!mark)
        fail(L, "iscsi: the discovery has no mark for the server: cannot make its CHAP entry");
    for (int round = 0;; round++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, tag);
        lua_setfield(L, -2, "tag");
        lua_pushstring(L, user);
        lua_setfield(L, -2, "user");
        lua_getfield(L, after, "secret");
        lua_setfield(L, -2, "secret");
        /* sbot's mark (see chap_marked) */
        sbot_set_str(L, -1, "peeruser", mark);
        lua_getfield(L, after, "secret");
        push_peer_secret(L, -1);
        lua_remove(L, -2);
        lua_setfield(L, -2, "peersecret");
        int args = lua_gettop(L);
        for (int attempt = 0;; attempt++) {
            lua_pushvalue(L, args);
            int n = sbot_truenas_call(L, res, "iscsi.auth.create", 1);
            if (n == 1)
                break;
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2)
                fail(L, "%s", lua_tostring(L, -2));
            lua_pop(L, 3);
            push_filter2(L, "tag", tag, "user", user);
            auth_query(L, res, 1);
            lua_rawgeti(L, -1, 1);
            lua_remove(L, -2);
            if (!lua_isnil(L, -1))
                break;
            lua_pop(L, 1);
        }
        lua_Integer id = ifield(L, -1, "id", -1);
        lua_pop(L, 2); /* the entry (its secret in clear, if it was the create's answer), args */
        lua_pushinteger(L, id);
        ids_set(L, self, "chap", -1, 1);
        lua_pop(L, 1);
        /* the tag read back: an older entry there is another run's */
        lua_pushcfunction(L, l_older_in_tag);
        lua_pushvalue(L, res);
        lua_pushinteger(L, tag);
        lua_pushinteger(L, id);
        if (lua_pcall(L, 3, 1, 0) != LUA_OK)
            chap_fail_made(L, res, id);
        lua_Integer older = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (!older) {
            lua_pushinteger(L, tag);
            int st = state(L, self);
            lua_pushvalue(L, -2);
            lua_setfield(L, st, "chap_tag");
            lua_pop(L, 2);
            lua_pushinteger(L, id);
            lua_setfield(L, out, "id");
            lua_pushinteger(L, tag);
            lua_setfield(L, out, "tag");
            break;
        }
        if (round >= CHAP_TAG_ROUNDS - 1) {
            lua_pushfstring(L, "iscsi: CHAP tag %I was taken by another entry %d times in a row (servers converging "
                               "at once): run again", tag, round + 1);
            chap_fail_made(L, res, id);
        }
        sbot_log(L, SBOT_INFO, "iscsi (%s): CHAP tag %lld was also taken by %lld older entr%s: moving to another",
                 server_id(L, self), (long long)tag, (long long)older, older == 1 ? "y" : "ies");
        delete_id(L, res, "iscsi.auth.delete", "iscsi.auth.get_instance", id);
        /* k servers that took the same tag at once: the oldest keeps it, the
         * others (ranked by how many older entries they saw) spread over the
         * next free tags instead of all taking the same next one again (20
         * servers at once needed up to 19 rounds that way) */
        tag = free_tag(L, res) + (older - 1);
    }
    lua_pop(L, 2);
}

static int c_apply(lua_State *L)
{
    int self = 1, change = 2, res = 3;
    const char *resource = sbot_field_tostr(L, change, "resource");
    const char *action = sbot_field_tostr(L, change, "action");
    lua_getfield(L, change, "after");
    int after = lua_gettop(L);
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_newtable(L);
    int out = lua_gettop(L);
    if (strncmp(resource, "zvol:", 5) == 0) {
        lua_pushvalue(L, after);
        create_or_adopt(L, res, "pool.dataset.create", "pool.dataset.query", "id", "name");
        lua_getfield(L, -1, "id");
        ids_set(L, self, "zvol", -1, 1);
        lua_setfield(L, out, "id");
    } else if (strncmp(resource, "portal:", 7) == 0) {
        /* The portal is the one object servers share: another server's run
         * (workers run in parallel) may have made one on this IP since our
         * discovery, and TrueNAS refuses a second ("IP is already in use").
         * After any failure, a portal that now serves the IP is used: ours
         * when the answer was lost (marked, undone on rollback), else the
         * other run's (never deleted by us). */
        const char *pip = sbot_field_tostr(L, d, "portal_ip");
        const char *mark = sbot_field_tostr(L, d, "mark");
        int created = 1;
        for (int attempt = 0;; attempt++) {
            lua_pushvalue(L, after);
            int n = sbot_truenas_call(L, res, "iscsi.portal.create", 1);
            if (n == 1)
                break;
            int lost = transport_code(lua_tostring(L, -1));
            lua_pop(L, 1);
            lua_remove(L, -2); /* the message stays for the final error */
            int msg = lua_gettop(L);
            push_portal_serving(L, res, pip ? pip : "");
            if (!lua_isnil(L, -1)) {
                const char *comment = sbot_field_tostr(L, -1, "comment");
                created = lost && comment && mark && strcmp(comment, mark) == 0;
                lua_remove(L, msg);
                break;
            }
            lua_pop(L, 1);
            if (!lost || attempt >= 2)
                return fail(L, "%s", lua_tostring(L, msg));
            lua_pop(L, 1);
        }
        lua_getfield(L, -1, "id");
        ids_set(L, self, "portal", -1, created);
        lua_setfield(L, out, "id");
        lua_pushboolean(L, created);
        lua_setfield(L, out, "created");
    } else if (strncmp(resource, "initiator_group:", 16) == 0) {
        if (strcmp(action, "create") == 0) {
            lua_pushvalue(L, after);
            create_or_adopt(L, res, "iscsi.initiator.create", "iscsi.initiator.query", "comment", "comment");
            lua_getfield(L, -1, "id");
            ids_set(L, self, "initiator_group", -1, 1);
            lua_setfield(L, out, "id");
        } else {
            lua_pushinteger(L, ids_get(L, self, "initiator_group"));
            lua_pushvalue(L, after);
            must(L, res, "iscsi.initiator.update", 2);
        }
    } else if (strncmp(resource, "target:", 7) == 0) {
        lua_Integer pid = ids_get(L, self, "portal"), gid = ids_get(L, self, "initiator_group");
        const char *id = server_id(L, self);
        lua_createtable(L, 0, 3);
        lua_getfield(L, after, "name");
        lua_setfield(L, -2, "name");
        lua_getfield(L, self, "config");
        lua_getfield(L, -1, "target");
        const char *alias = lua_type(L, -1) == LUA_TTABLE ? sbot_field_tostr(L, -1, "alias") : NULL;
        /* TrueNAS wants every target's alias unique: a server has a target
         * per OpenShift version, so the mark is followed by the target name */
        const char *tname = sbot_field_tostr(L, after, "name");
        if (alias)
            lua_pushfstring(L, "sbot:%s %s %s", id, tname ? tname : "", alias);
        else
            lua_pushfstring(L, "sbot:%s %s", id, tname ? tname : "");
        lua_setfield(L, -4, "alias");
        lua_pop(L, 2);
        sbot_push_array(L);
        push_group(L, self, pid, gid);
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, "groups");
        create_or_adopt(L, res, "iscsi.target.create", "iscsi.target.query", "name", "name");
        lua_getfield(L, -1, "id");
        ids_set(L, self, "target", -1, 1);
        lua_setfield(L, out, "id");
    } else if (strncmp(resource, "target_groups:", 14) == 0) {
        lua_Integer tid = ids_get(L, self, "target");
        lua_Integer pid = ids_get(L, self, "portal"), gid = ids_get(L, self, "initiator_group");
        lua_pushinteger(L, tid);
        must(L, res, "iscsi.target.get_instance", 1);
        lua_getfield(L, -1, "groups");
        int groups = lua_gettop(L);
        sbot_push_array(L);
        int ng = lua_gettop(L);
        push_group(L, self, pid, gid);
        int want = lua_gettop(L);
        const char *want_method = sbot_field_tostr(L, want, "authmethod");
        lua_Integer want_tag = ifield(L, want, "auth", -1);
        lua_Integer n = 0;
        int has = 0, replaced = 0;
        /* one group per portal: the portal's group becomes the wanted one */
        for (lua_Integer i = 1; lua_rawgeti(L, groups, i) == LUA_TTABLE; i++) {
            if (ifield(L, -1, "portal", -1) == pid) {
                const char *m = sbot_field_tostr(L, -1, "authmethod");
                has = ifield(L, -1, "initiator", -1) == gid && strcmp(m ? m : "NONE", want_method) == 0 &&
                      ifield(L, -1, "auth", -1) == want_tag;
                lua_pop(L, 1);
                lua_pushvalue(L, want);
                replaced = 1;
            }
            lua_rawseti(L, ng, ++n);
        }
        lua_pop(L, 1);
        if (!has) {
            if (!replaced) {
                lua_pushvalue(L, want);
                lua_rawseti(L, ng, ++n);
            }
            lua_pushinteger(L, tid);
            lua_createtable(L, 0, 1);
            lua_pushvalue(L, ng);
            lua_setfield(L, -2, "groups");
            int nres = sbot_truenas_call(L, res, "iscsi.target.update", 2);
            if (nres != 1) {
                if (!transport_code(lua_tostring(L, -1)))
                    return fail(L, "%s", lua_tostring(L, -2));
                /* lost answer: the read-back in housekeep decides; try once more */
                lua_pop(L, 3);
                lua_pushinteger(L, tid);
                lua_createtable(L, 0, 1);
                lua_pushvalue(L, ng);
                lua_setfield(L, -2, "groups");
                must(L, res, "iscsi.target.update", 2);
            }
        }
        lua_pushboolean(L, 1);
        lua_setfield(L, out, "groups");
    } else if (strncmp(resource, "chap_mark:", 10) == 0) {
        /* sbot's mark on an entry made before sbot marked its entries; a
         * lost answer is sent again (a new peer secret: nothing uses it) */
        lua_getfield(L, d, "chap");
        lua_Integer id = ifield(L, -1, "auth_id", -1);
        lua_getfield(L, -1, "secret");
        int secret = lua_gettop(L);
        for (int attempt = 0;; attempt++) {
            lua_pushinteger(L, id);
            lua_createtable(L, 0, 2);
            lua_getfield(L, after, "peeruser");
            lua_setfield(L, -2, "peeruser");
            push_peer_secret(L, secret);
            lua_setfield(L, -2, "peersecret");
            int n = sbot_truenas_call(L, res, "iscsi.auth.update", 2);
            if (n == 1)
                break;
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2)
                return fail(L, "%s", lua_tostring(L, -2));
            lua_pop(L, 3);
        }
        lua_pop(L, 3);
        sbot_set_int(L, out, "id", id);
    } else if (strncmp(resource, "chap:", 5) == 0) {
        apply_chap(L, self, res, action, after, out);
    } else if (strncmp(resource, "extent:", 7) == 0) {
        /* the zvol's device may show up a moment after the zvol: wait and retry */
        for (int attempt = 0;; attempt++) {
            lua_pushvalue(L, after);
            lua_pushvalue(L, after);
            int n = sbot_truenas_call(L, res, "iscsi.extent.create", 1);
            if (n == 1) {
                lua_remove(L, -2);
                break;
            }
            const char *msg = lua_tostring(L, -2), *code = lua_tostring(L, -1);
            if (msg && strstr(msg, "does not exist") && strstr(msg, "/dev/zvol/") && attempt < 40) {
                lua_pop(L, 4);
                sleep_for(0.05 * (attempt < 10 ? attempt + 1 : 10));
                continue;
            }
            if (transport_code(code) && attempt < 40) {
                lua_pop(L, 4);
                lua_getfield(L, after, "name");
                query1(L, res, "iscsi.extent.query", "name");
                if (!lua_isnil(L, -1))
                    break;
                lua_pop(L, 1);
                continue;
            }
            return fail(L, "%s", msg);
        }
        lua_getfield(L, -1, "id");
        ids_set(L, self, "extent", -1, 1);
        lua_setfield(L, out, "id");
    } else if (strncmp(resource, "mapping:", 8) == 0) {
        lua_Integer tid = ids_get(L, self, "target"), eid = ids_get(L, self, "extent");
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, tid);
        lua_setfield(L, -2, "target");
        lua_pushinteger(L, eid);
        lua_setfield(L, -2, "extent");
        lua_getfield(L, after, "lunid");
        lua_setfield(L, -2, "lunid");
        lua_pushinteger(L, eid);
        lua_setfield(L, -2, "_extent");
        /* the lookup key goes through the args table; drop it before the call */
        lua_getfield(L, -1, "_extent");
        lua_pushnil(L);
        lua_setfield(L, -3, "_extent");
        lua_pop(L, 1);
        int args = lua_gettop(L);
        for (int attempt = 0;; attempt++) {
            lua_pushvalue(L, args);
            int n = sbot_truenas_call(L, res, "iscsi.targetextent.create", 1);
            if (n == 1)
                break;
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2)
                return fail(L, "%s", lua_tostring(L, -2));
            lua_pop(L, 3);
            lua_pushinteger(L, eid);
            query1(L, res, "iscsi.targetextent.query", "extent");
            if (!lua_isnil(L, -1))
                break;
            lua_pop(L, 1);
        }
        lua_getfield(L, -1, "id");
        ids_set(L, self, "mapping", -1, 1);
        lua_setfield(L, out, "id");
    } else if (strcmp(resource, "service:iscsitarget:enable") == 0) {
        /* a lost answer: read the service back, as for every other write
         * (up to 3 attempts); enabling twice is harmless */
        for (int attempt = 0;; attempt++) {
            lua_pushliteral(L, "iscsitarget");
            lua_createtable(L, 0, 1);
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "enable");
            int n = sbot_truenas_call(L, res, "service.update", 2);
            if (n == 1) {
                lua_pop(L, 1);
                break;
            }
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2)
                return fail(L, "%s", lua_tostring(L, -2));
            lua_pop(L, 3);
            lua_pushliteral(L, "iscsitarget");
            query1(L, res, "service.query", "service");
            int enabled = 0;
            if (lua_type(L, -1) == LUA_TTABLE) {
                lua_getfield(L, -1, "enable");
                enabled = lua_toboolean(L, -1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            if (enabled)
                break;
        }
        lua_pushboolean(L, 1);
        lua_setfield(L, out, "enable");
    } else if (strcmp(resource, "service:iscsitarget:start") == 0) {
        /* a TrueNAS job (service.control): its percent shows beside this */
        sbot_progress(L, "start the iscsitarget service", SBOT_PROGRESS_UNKNOWN);
        for (int attempt = 0;; attempt++) {
            lua_pushliteral(L, "START");
            lua_pushliteral(L, "iscsitarget");
            lua_newtable(L);
            int n = sbot_truenas_call(L, res, "service.control", 3);
            if (n == 1) {
                if (!lua_toboolean(L, -1)) {
                    sbot_progress_end(L, "start the iscsitarget service");
                    return fail(L, "service.control START iscsitarget: the service did not start");
                }
                break;
            }
            if (!transport_code(lua_tostring(L, -1)) || attempt >= 2) {
                sbot_progress_end(L, "start the iscsitarget service");
                return fail(L, "%s", lua_tostring(L, -2));
            }
            lua_pop(L, 3);
            lua_pushliteral(L, "iscsitarget");
            query1(L, res, "service.query", "service");
            const char *st = lua_type(L, -1) == LUA_TTABLE ? sbot_field_tostr(L, -1, "state") : NULL;
            if (st && strcmp(st, "RUNNING") == 0)
                break;
            lua_pop(L, 1);
        }
        sbot_progress_end(L, "start the iscsitarget service");
        lua_pushboolean(L, 1);
        lua_setfield(L, out, "running");
    } else {
        return fail(L, "iscsi: unknown change %s", resource);
    }
    (void)d;
    lua_pushvalue(L, out);
    return 1;
}

static int c_undo(lua_State *L)
{
    int self = 1, change = 2, res = 3;
    const char *resource = sbot_field_tostr(L, change, "resource");
    int st = state(L, self);
    if (strncmp(resource, "zvol:", 5) == 0) {
        const char *zvol = resource + 5;
        lua_getfield(L, st, "created_zvol");
        if (lua_isnil(L, -1))
            return 0;
        /* never a zvol an extent uses: TrueNAS would delete the extent too */
        lua_pushfstring(L, "zvol/%s", zvol);
        query1(L, res, "iscsi.extent.query", "disk");
        if (!lua_isnil(L, -1))
            return fail(L, "iscsi undo: zvol %s is the disk of extent '%s': not deleting it", zvol,
                        sbot_field_tostr(L, -1, "name"));
        lua_pop(L, 1);
        lua_pushstring(L, zvol);
        int n = sbot_truenas_call(L, res, "pool.dataset.delete", 1);
        if (n != 1 && !(lua_tostring(L, -2) && strstr(lua_tostring(L, -2), "does not exist")))
            return fail(L, "%s", lua_tostring(L, -2));
        return 0;
    }
    if (strncmp(resource, "chap:", 5) == 0) {
        /* the entry this run made; a new secret cannot be taken back (the old
         * one is not known) */
        lua_Integer id = ifield(L, st, "created_chap", -1);
        if (id < 0)
            return 0;
        /* a target kept from before this run names it now (its group update
         * is not undone): left, and the next run finds it there */
        if (!delete_unless(L, res, "iscsi.auth.delete", "iscsi.auth.get_instance", id, "is being used"))
            sbot_log(L, SBOT_WARN, "iscsi undo: CHAP entry %lld stays: %s", (long long)id, lua_tostring(L, -1));
        return 0;
    }
    static const struct {
        const char *prefix, *key, *del, *get;
    } kinds[] = {{"portal:", "created_portal", "iscsi.portal.delete", "iscsi.portal.get_instance"},
                 {"initiator_group:", "created_initiator_group", "iscsi.initiator.delete", "iscsi.initiator.get_instance"},
                 {"target:", "created_target", "iscsi.target.delete", "iscsi.target.get_instance"},
                 {"extent:", "created_extent", "iscsi.extent.delete", "iscsi.extent.get_instance"},
                 {"mapping:", "created_mapping", "iscsi.targetextent.delete", "iscsi.targetextent.get_instance"},
                 {NULL, NULL, NULL, NULL}};
    for (int i = 0; kinds[i].prefix; i++) {
        if (strncmp(resource, kinds[i].prefix, strlen(kinds[i].prefix)) == 0) {
            lua_Integer id = ifield(L, st, kinds[i].key, -1);
            if (id >= 0)
                delete_id(L, res, kinds[i].del, kinds[i].get, id);
            return 0;
        }
    }
    /* group updates and the service stay: other targets may rely on them */
    return 0;
}

/* ---- housekeep ---------------------------------------------------------------------------------- */

/* One login check's parameters; attempts counts the probes made. */
struct login {
    const char *portal, *iqn;
    lua_Integer lun;
    const char *initiator;
    int attempts;
    int pad;
};

/* sbot.iscsi.probe as the server's initiator, with the CHAP table at chap
 * ({user, secret}; 0: none). TrueNAS reloads its target after
 * configuration changes, so the portal may be closed for a moment right
 * after them: a connection refused (or closed before the login) is tried
 * again, with backoff, until the deadline; any other answer of the target
 * (Target not found, an authentication failure, a LUN it does not have) is
 * final. Pushes the result (1) or nil, message, code (3). */
static int login_until(lua_State *L, struct login *lg, int chap, double deadline, const char *label)
{
    double wait = 0.1;
    for (;;) {
        double left = deadline - now_mono();
        lua_createtable(L, 0, 6);
        lua_pushstring(L, lg->portal);
        lua_setfield(L, -2, "portal");
        lua_pushstring(L, lg->iqn);
        lua_setfield(L, -2, "target");
        lua_pushinteger(L, lg->lun);
        lua_setfield(L, -2, "lun");
        lua_pushstring(L, lg->initiator);
        lua_setfield(L, -2, "initiator");
        lua_pushnumber(L, left > 1 ? left : 1);
        lua_setfield(L, -2, "timeout");
        if (chap) {
            lua_pushvalue(L, chap);
            lua_setfield(L, -2, "chap");
        }
        int opts = lua_gettop(L);
        int n = sbot_iscsi_probe(L, opts);
        lg->attempts++;
        lua_remove(L, opts);
        if (n == 1)
            return 1;
        const char *perr = lua_tostring(L, -2);
        int closed = perr && strstr(perr, "cannot connect to the portal") != NULL;
        if (!closed || now_mono() + wait >= deadline)
            return n;
        char detail[64];
        snprintf(detail, sizeof detail, "the portal closed the connection (attempt %d)", lg->attempts);
        sbot_progress_detail(L, label, SBOT_PROGRESS_UNKNOWN, detail);
        lua_pop(L, n);
        sleep_for(wait);
        wait = wait * 2 > 1.0 ? 1.0 : wait * 2;
    }
}

/* Is the failed probe on the stack top (nil, message, code) a refused
 * authentication? The code is the target's own id for the iSCSI login
 * status 0x0201 (docs/errors.md). */
static int is_auth_failure(lua_State *L)
{
    const char *code = lua_tostring(L, -1);
    return code && strcmp(code, "AUTHENTICATION_FAILURE") == 0;
}

static int c_housekeep(lua_State *L)
{
    int self = 1, res = 2;
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_getfield(L, d, "names");
    int names = lua_gettop(L);
    const char *zvol = sbot_field_tostr(L, names, "zvol");
    const char *tname = sbot_field_tostr(L, names, "target");
    const char *ename = sbot_field_tostr(L, names, "extent");
    const char *iqn = sbot_field_tostr(L, d, "iqn");
    const char *portal = sbot_field_tostr(L, d, "portal");
    const char *initiator = sbot_field_tostr(L, d, "initiator");
    const char *mark = sbot_field_tostr(L, d, "mark");
    lua_Integer lun = ifield(L, d, "lun", 0);
    lua_newtable(L);
    int hk = lua_gettop(L);

    /* read back */
    lua_pushstring(L, zvol);
    query1(L, res, "pool.dataset.query", "id");
    if (lua_isnil(L, -1))
        return fail(L, "iscsi: read back: zvol %s does not exist", zvol);
    lua_Integer volsize = prop_parsed(L, lua_gettop(L), "volsize");
    lua_pop(L, 1);
    lua_pushstring(L, tname);
    query1(L, res, "iscsi.target.query", "name");
    if (lua_isnil(L, -1))
        return fail(L, "iscsi: read back: target %s does not exist", tname);
    lua_Integer tid = ifield(L, -1, "id", -1);
    lua_getfield(L, -1, "groups");
    lua_Integer ngroups = (lua_Integer)lua_rawlen(L, -1);
    int chap = want_chap(L, self);
    lua_Integer chap_tag = chap ? chap_tag_now(L, self) : -1;
    if (chap) {
        /* the portal's group asks for CHAP with the server's tag */
        lua_Integer pid = ids_get(L, self, "portal");
        int asks = 0;
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
            const char *m = sbot_field_tostr(L, -1, "authmethod");
            if (ifield(L, -1, "portal", -1) == pid && m && strcmp(m, "CHAP") == 0 && ifield(L, -1, "auth", -1) == chap_tag)
                asks = 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (!asks)
            return fail(L, "iscsi: read back: target %s does not ask for CHAP with tag %lld on portal %lld", tname,
                        (long long)chap_tag, (long long)pid);
    }
    lua_pop(L, 2);
    if (ngroups == 0)
        return fail(L, "iscsi: read back: target %s has no groups: nothing would be visible", tname);
    if (chap) {
        lua_getfield(L, self, "config");
        lua_getfield(L, -1, "chap");
        const char *user = sbot_field_tostr(L, -1, "user");
        push_filter2(L, "tag", chap_tag, "user", user);
        auth_query(L, res, 1);
        int none = lua_rawlen(L, -1) == 0;
        lua_pop(L, 1);
        if (none)
            return fail(L, "iscsi: read back: no CHAP credentials of user %s in tag %lld (iscsi.auth)", user,
                        (long long)chap_tag);
        lua_pop(L, 2);
    }
    lua_pushstring(L, ename);
    query1(L, res, "iscsi.extent.query", "name");
    if (lua_isnil(L, -1))
        return fail(L, "iscsi: read back: extent %s does not exist", ename);
    lua_Integer eid = ifield(L, -1, "id", -1);
    lua_pop(L, 1);
    lua_pushinteger(L, eid);
    query1(L, res, "iscsi.targetextent.query", "extent");
    if (lua_isnil(L, -1) || ifield(L, -1, "target", -1) != tid || ifield(L, -1, "lunid", -1) != lun)
        return fail(L, "iscsi: read back: extent %s is not LUN %lld of target %s", ename, (long long)lun, tname);
    lua_pop(L, 1);
    lua_pushliteral(L, "iscsitarget");
    query1(L, res, "service.query", "service");
    const char *svc_state = lua_type(L, -1) == LUA_TTABLE ? sbot_field_tostr(L, -1, "state") : NULL;
    if (!svc_state || strcmp(svc_state, "RUNNING") != 0)
        return fail(L, "iscsi: read back: the iscsitarget service is %s, not RUNNING", svc_state ? svc_state : "missing");
    lua_pop(L, 1);

    /* a real login as the server's initiator (with the server's CHAP user
     * and secret when the config has them); then, with CHAP, one without
     * them, which the target must refuse: the proof that it asks for them
     * (TrueNAS exports a target whose CHAP tag has no entry without any) */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.iscsi");
    lua_call(L, 1, 0);
    lua_getfield(L, self, "config");
    lua_getfield(L, -1, "probe_timeout");
    double probe_timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 15;
    lua_pop(L, 1);
    int chap_t = 0;
    const char *chap_user = NULL;
    if (lua_getfield(L, -1, "chap") == LUA_TTABLE) {
        chap_t = lua_gettop(L);
        chap_user = sbot_field_tostr(L, chap_t, "user");
    } else {
        lua_pop(L, 1);
    }
    struct login lg = {portal, iqn, lun, initiator, 0, 0};
    char login[256];
    snprintf(login, sizeof login, "iSCSI login to %s at %s", iqn, portal);
    sbot_progress(L, login, SBOT_PROGRESS_UNKNOWN); /* up to probe_timeout on a busy portal */
    int n = login_until(L, &lg, chap_t, now_mono() + probe_timeout, login);
    if (n != 1) {
        sbot_progress_end(L, login);
        const char *perr = lua_tostring(L, -2);
        if (chap_t && is_auth_failure(L))
            return fail(L, "iscsi: login as %s to %s LUN %lld at %s with CHAP user %s was refused: the target does "
                           "not take the config's secret for that user (the secret on TrueNAS is another one, or "
                           "its target has not taken the new one yet): %s", initiator, iqn, (long long)lun, portal,
                        chap_user, perr);
        return fail(L, "iscsi: login as %s to %s LUN %lld at %s%s%s failed%s: %s", initiator, iqn, (long long)lun,
                    portal, chap_t ? " with CHAP user " : "", chap_t ? chap_user : "",
                    lg.attempts > 1 ? " (portal closed throughout probe_timeout)" : "", perr);
    }
    int probe = lua_gettop(L);
    if (chap_t) {
        sbot_progress_detail(L, login, SBOT_PROGRESS_UNKNOWN, "a login without CHAP must be refused");
        int m = login_until(L, &lg, 0, now_mono() + probe_timeout, login);
        if (m == 1) {
            sbot_progress_end(L, login);
            return fail(L, "iscsi: %s at %s let %s log in without CHAP: the target does not ask for the CHAP "
                           "credentials its group names (on TrueNAS a CHAP group whose tag has no entry exports "
                           "without authentication)", iqn, portal, initiator);
        }
        if (!is_auth_failure(L)) {
            sbot_progress_end(L, login);
            return fail(L, "iscsi: a login without CHAP to %s at %s failed, but not for want of CHAP: %s", iqn,
                        portal, lua_tostring(L, -2));
        }
        lua_pop(L, 3);
    }
    sbot_progress_end(L, login);
    lua_getfield(L, probe, "capacity");
    lua_Integer bytes = ifield(L, -1, "bytes", -1);
    lua_pop(L, 1);
    if (bytes != volsize)
        return fail(L, "iscsi: LUN %lld of %s shows %lld bytes, the zvol has %lld", (long long)lun, iqn, (long long)bytes,
                    (long long)volsize);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, initiator);
    lua_setfield(L, -2, "initiator");
    lua_pushinteger(L, bytes);
    lua_setfield(L, -2, "capacity");
    lua_getfield(L, probe, "inquiry");
    lua_setfield(L, -2, "inquiry");
    if (chap_t) {
        lua_pushstring(L, chap_user);
        lua_setfield(L, -2, "chap_user");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "refused_without_chap");
    }
    lua_setfield(L, hk, "login");
    lua_remove(L, probe);
    if (chap_t)
        lua_remove(L, chap_t);
    lua_pop(L, 1); /* config */

    /* leftovers of this server marked by sbot: unmapped extents, targets
     * without LUNs, unused initiator groups (zvols are data: listed only) */
    sbot_push_array(L);
    int removed = lua_gettop(L);
    lua_Integer nrem = 0;
    lua_pushstring(L, mark);
    {
        int v = lua_gettop(L);
        push_filter(L, "comment", v);
        lua_remove(L, v);
    }
    must(L, res, "iscsi.extent.query", 1);
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
        lua_Integer id = ifield(L, -1, "id", -1);
        if (id != eid) {
            lua_pushinteger(L, id);
            query1(L, res, "iscsi.targetextent.query", "extent");
            int mapped = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!mapped) {
                delete_id(L, res, "iscsi.extent.delete", "iscsi.extent.get_instance", id);
                lua_pushfstring(L, "extent %s", sbot_field_tostr(L, -1, "name"));
                lua_rawseti(L, removed, ++nrem);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    must(L, res, "iscsi.target.query", 0);
    int targets = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, targets, i) == LUA_TTABLE; i++) {
        lua_Integer id = ifield(L, -1, "id", -1);
        if (id != tid && marked_alias(sbot_field_tostr(L, -1, "alias"), mark)) {
            lua_pushinteger(L, id);
            query1(L, res, "iscsi.targetextent.query", "target");
            int mapped = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!mapped) {
                delete_id(L, res, "iscsi.target.delete", "iscsi.target.get_instance", id);
                lua_pushfstring(L, "target %s", sbot_field_tostr(L, -1, "name"));
                lua_rawseti(L, removed, ++nrem);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_Integer gid = ids_get(L, self, "initiator_group");
    lua_pushstring(L, mark);
    {
        int v = lua_gettop(L);
        push_filter(L, "comment", v);
        lua_remove(L, v);
    }
    must(L, res, "iscsi.initiator.query", 1);
    int igs = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, igs, i) == LUA_TTABLE; i++) {
        lua_Integer id = ifield(L, -1, "id", -1);
        if (id != gid) {
            /* used by any target? */
            must(L, res, "iscsi.target.query", 0);
            int used = 0;
            for (lua_Integer j = 1; lua_rawgeti(L, -1, j) == LUA_TTABLE; j++) {
                lua_getfield(L, -1, "groups");
                for (lua_Integer k = 1; lua_rawgeti(L, -1, k) == LUA_TTABLE; k++) {
                    if (ifield(L, -1, "initiator", -2) == id)
                        used = 1;
                    lua_pop(L, 1);
                }
                lua_pop(L, 3);
            }
            lua_pop(L, 2);
            if (!used) {
                delete_id(L, res, "iscsi.initiator.delete", "iscsi.initiator.get_instance", id);
                lua_pushfstring(L, "initiator group %d", (int)id);
                lua_rawseti(L, removed, ++nrem);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    /* CHAP entries no target names (CHAP turned off, another user, a target
     * removed above, a run killed before its housekeep or before its target
     * used the entry): those sbot made for this server (marked, see
     * chap_marked) go; others in a tag this server's targets named
     * (discover) stay, with a warning: an admin may have added them */
    {
        lua_getfield(L, d, "chap_tags");
        int was = lua_gettop(L);
        lua_newtable(L);
        int named = lua_gettop(L);
        must(L, res, "iscsi.target.query", 0);
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
            if (lua_getfield(L, -1, "groups") == LUA_TTABLE) {
                for (lua_Integer j = 1; lua_rawgeti(L, -1, j) == LUA_TTABLE; j++) {
                    lua_Integer t = ifield(L, -1, "auth", -1);
                    if (t >= 0) {
                        lua_pushboolean(L, 1);
                        lua_rawseti(L, named, t);
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 2);
        lua_newtable(L); /* tag -> true: named by this server's targets at discovery */
        int was_set = lua_gettop(L);
        if (lua_type(L, was) == LUA_TTABLE) {
            for (lua_Integer k = 1; lua_rawgeti(L, was, k) == LUA_TNUMBER; k++) {
                lua_pushboolean(L, 1);
                lua_rawset(L, was_set);
            }
            lua_pop(L, 1);
        }
        auth_query(L, res, 0);
        int entries = lua_gettop(L);
        for (lua_Integer i = 1; lua_rawgeti(L, entries, i) == LUA_TTABLE; i++) {
            int e = lua_gettop(L);
            lua_Integer tag = ifield(L, e, "tag", -1);
            int keep = lua_rawgeti(L, named, tag) != LUA_TNIL || tag == chap_tag;
            lua_pop(L, 1);
            if (!keep && chap_marked(L, e, mark)) {
                delete_id(L, res, "iscsi.auth.delete", "iscsi.auth.get_instance", ifield(L, e, "id", -1));
                lua_pushfstring(L, "CHAP credentials of user %s (tag %d)", sbot_field_tostr(L, e, "user"), (int)tag);
                lua_rawseti(L, removed, ++nrem);
            } else if (!keep) {
                if (lua_rawgeti(L, was_set, tag) != LUA_TNIL)
                    sbot_log(L, SBOT_WARN,
                             "iscsi housekeep (%s): CHAP tag %lld, which this server's targets named, keeps the entry "
                             "of user %s: sbot did not make it for this server (delete it by hand if nothing needs it)",
                             server_id(L, self), (long long)tag, sbot_field_tostr(L, e, "user"));
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 5); /* the nil, entries, was_set, named, was */
    }
    lua_pushvalue(L, removed);
    lua_setfield(L, hk, "removed");
    lua_pop(L, 1);
    /* marked zvols of this server other than the current one: reported */
    sbot_push_array(L);
    int left = lua_gettop(L);
    lua_Integer nleft = 0;
    lua_pushliteral(L, "VOLUME");
    {
        int v = lua_gettop(L);
        push_filter(L, "type", v);
        lua_remove(L, v);
    }
    must(L, res, "pool.dataset.query", 1);
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
        const char *zid = sbot_field_tostr(L, -1, "id");
        lua_getfield(L, -1, "comments");
        const char *c = lua_type(L, -1) == LUA_TTABLE ? sbot_field_tostr(L, -1, "value") : NULL;
        if (zid && c && strcmp(c, mark) == 0 && strcmp(zid, zvol) != 0) {
            lua_pushstring(L, zid);
            lua_rawseti(L, left, ++nleft);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
    lua_setfield(L, hk, "other_zvols");

    /* the connection details, as an artifact */
    lua_createtable(L, 0, 8);
    int info = lua_gettop(L);
    lua_pushstring(L, iqn);
    lua_setfield(L, info, "iqn");
    lua_pushstring(L, portal);
    lua_setfield(L, info, "portal");
    lua_pushinteger(L, lun);
    lua_setfield(L, info, "lun");
    lua_pushstring(L, initiator);
    lua_setfield(L, info, "initiator");
    lua_pushstring(L, zvol);
    lua_setfield(L, info, "zvol");
    lua_pushinteger(L, volsize);
    lua_setfield(L, info, "size");
    lua_pushstring(L, tname);
    lua_setfield(L, info, "target");
    lua_pushstring(L, ename);
    lua_setfield(L, info, "extent");
    if (chap) {
        lua_getfield(L, self, "config");
        lua_getfield(L, -1, "chap");
        lua_getfield(L, -1, "user");
        lua_setfield(L, info, "chap_user"); /* the user; the secret stays where the site keeps it */
        lua_pop(L, 2);
        lua_pushinteger(L, chap_tag);
        lua_setfield(L, info, "chap_tag");
    }
    lua_pushvalue(L, info);
    lua_setfield(L, hk, "connection");
    lua_getfield(L, self, "artifact");
    lua_pushvalue(L, self);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "iscsi.json");
    lua_setfield(L, -2, "key");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "type");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, info);
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "indent");
    lua_call(L, 2, 1);
    lua_remove(L, -2);
    lua_setfield(L, -2, "content");
    lua_call(L, 2, 0);
    lua_pushboolean(L, 1);
    lua_setfield(L, hk, "verified");
    lua_pushvalue(L, hk);
    return 1;
}

/* ---- definition -------------------------------------------------------------------------------------- */

static void field(lua_State *L, int schema, const char *name, const char *type, const char *desc)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushstring(L, desc);
    lua_setfield(L, -2, "description");
    lua_setfield(L, schema, name);
}

static void hook(lua_State *L, int hooks, const char *name, lua_CFunction fn, const char *desc)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, desc);
    lua_setfield(L, -2, "description");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, "default");
    lua_setfield(L, hooks, name);
}

int luaopen_sbot_component_iscsi(lua_State *L)
{
    lua_newtable(L);
    int spec = lua_gettop(L);
    lua_pushliteral(L, "iscsi");
    lua_setfield(L, spec, "name");
    lua_pushliteral(L, "A bootable iSCSI disk per server on TrueNAS SCALE: zvol, portal, initiator group, target, "
                       "extent, mapping, iscsitarget running; verified by a real iSCSI login.");
    lua_setfield(L, spec, "description");

    lua_newtable(L);
    int schema = lua_gettop(L);
    field(L, schema, "pool", "string", "ZFS pool of the zvol (default: site truenas.pool)");
    field(L, schema, "version", "string", "OpenShift version in the names, e.g. \"4.14.3\" (default: site openshift.version)");
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "table");
    lua_setfield(L, -2, "type");
    lua_pushliteral(L, "{name, size (\"120G\" or bytes; default site truenas.zvol_size), sparse = true, volblocksize = \"16K\", force_size = false}");
    lua_setfield(L, -2, "description");
    lua_newtable(L);
    int zf = lua_gettop(L);
    field(L, zf, "name", "string", "full zvol name (default: the zvol_name hook)");
    field(L, zf, "existing", "boolean",
          "the zvol must exist already (plan fails otherwise; its size is taken as it is): for steps that "
          "point a server at an installed disk and must never create an empty one (switch_version)");
    field(L, zf, "size", "any", "size, \"120G\" or bytes");
    field(L, zf, "sparse", "boolean", "thin provisioned (default true)");
    field(L, zf, "volblocksize", "string", "block size (default \"16K\")");
    field(L, zf, "force_size", "boolean", "pass TrueNAS's 80 % rule (default false)");
    lua_setfield(L, -2, "fields");
    lua_setfield(L, schema, "zvol");
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "table");
    lua_setfield(L, -2, "type");
    lua_pushliteral(L, "{name (default: the target_name hook), alias}");
    lua_setfield(L, -2, "description");
    lua_newtable(L);
    int tf = lua_gettop(L);
    field(L, tf, "name", "string", "target name: the part after the basename (lowercase, digits, . - :)");
    field(L, tf, "alias", "string", "added to the target's alias after sbot's mark");
    lua_setfield(L, -2, "fields");
    lua_setfield(L, schema, "target");
    field(L, schema, "portal", "string", "\"ip[:port]\" servers boot from (default: site truenas.portal)");
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "list");
    lua_setfield(L, -2, "type");
    lua_pushliteral(L, "initiator IQNs allowed to log in (default: the initiator_name hook)");
    lua_setfield(L, -2, "description");
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "type");
    lua_setfield(L, -2, "items");
    lua_setfield(L, schema, "initiators");
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "table");
    lua_setfield(L, -2, "type");
    lua_pushliteral(L, "one-way CHAP {user, secret}: the target asks the server for them (iscsi.auth entry in a tag "
                       "of the server's own, the target's group authmethod CHAP); absent: no CHAP");
    lua_setfield(L, -2, "description");
    lua_newtable(L);
    int cf = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "required");
    lua_pushliteral(L, "CHAP user name (the R630's IscsiDev1Con1ChapName and CHAPUsername)");
    lua_setfield(L, -2, "description");
    lua_setfield(L, cf, "user");
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "secret");
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "required");
    lua_pushliteral(L, "CHAP secret, 12 to 16 characters, no '#' (a secret: reference in the site, e.g. "
                       "\"secret:iscsi/r630-01:chap\")");
    lua_setfield(L, -2, "description");
    lua_setfield(L, cf, "secret");
    lua_setfield(L, -2, "fields");
    lua_setfield(L, schema, "chap");
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "integer");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "default");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, 16382);
    lua_setfield(L, -2, "max");
    lua_pushliteral(L, "LUN id of the disk on its target (as the initiator sees it)");
    lua_setfield(L, -2, "description");
    lua_setfield(L, schema, "lun");
    static const struct {
        const char *name, *desc;
        double def;
    } nums[] = {{"timeout", "TrueNAS connect timeout, seconds", 30},
                {"call_timeout", "one TrueNAS call's timeout, seconds", 30},
                {"probe_timeout", "the iSCSI login check's timeout, seconds", 15},
                {"login_wait", "seconds to wait while TrueNAS rate-limits logins (20 a minute from one address) "
                               "before failing", 90},
                {NULL, NULL, 0}};
    for (int i = 0; nums[i].name; i++) {
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "number");
        lua_setfield(L, -2, "type");
        lua_pushnumber(L, nums[i].def);
        lua_setfield(L, -2, "default");
        lua_pushstring(L, nums[i].desc);
        lua_setfield(L, -2, "description");
        lua_setfield(L, schema, nums[i].name);
    }
    lua_setfield(L, spec, "schema");

    lua_newtable(L);
    int hooks = lua_gettop(L);
    hook(L, hooks, "zvol_name", h_zvol_name,
         "zvol_name(server, version, pool) -> full zvol name; default <pool>/openshift_installations/r630_<server>_<version_>");
    hook(L, hooks, "target_name", h_target_name,
         "target_name(server, version) -> target name (after the basename); default r630-<server>.openshift<version>");
    hook(L, hooks, "extent_name", h_extent_name,
         "extent_name(server, version) -> extent name; default openshift_r630_<server>_<version_>_extent");
    hook(L, hooks, "initiator_name", h_initiator_name,
         "initiator_name(server) -> the server's initiator IQN; default iqn.2024-01.org.sbot:<server>");
    lua_setfield(L, spec, "hooks");

    lua_pushcfunction(L, c_open);
    lua_setfield(L, spec, "open");
    lua_pushcfunction(L, c_discover);
    lua_setfield(L, spec, "discover");
    lua_pushcfunction(L, c_plan);
    lua_setfield(L, spec, "plan");
    lua_pushcfunction(L, c_apply);
    lua_setfield(L, spec, "apply");
    lua_pushcfunction(L, c_undo);
    lua_setfield(L, spec, "undo");
    lua_pushcfunction(L, c_housekeep);
    lua_setfield(L, spec, "housekeep");
    sbot_component_define(L, spec);
    lua_pushcfunction(L, l_address);
    lua_setfield(L, -2, "address");
    return 1;
}
