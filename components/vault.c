/* components/vault.c: sbot.component.vault - the pre-flight check of a site's
 * HashiCorp Vault, run as a workflow step before a deployment.
 *
 * discover (read-only, nothing else): the Vault answers and is unsealed
 * (sys/health), sbot can log in and its token is valid (lookup-self: TTL,
 * renewable, policies), the KV mount's version, and every `secret:PATH:KEY`
 * the site file references (or the config's list) is readable. Every check is
 * recorded in the discovery; any failure fails the phase with every problem
 * named, the discovery kept. No plan: a pre-flight changes nothing.
 *
 * The Vault protocol is spoken by the Lua client sbot.vault (require), not
 * reimplemented here: login, renewal, KV v1/v2, namespaces and Vault's error
 * shapes exist once, shared with the secret resolver that site loading uses,
 * so the check and the run read secrets the same way and cannot drift apart.
 * The direction is still component -> protocol client (sbot.vault is at the
 * level of sbot.s3, a client over the C primitives; no policy module is
 * involved); only the language differs. open() returns the client: in the
 * process that loaded the site it is the one site loading used (vault.shared),
 * token included, so no second login; in a fleet worker (a site step, a
 * server's step) it starts with the token the parent handed over (the
 * workflow runner's vault.handoff/vault.adopt), renewed if its lease says so. */
#include "luax.h"
#include "sbot.h"

#include <stdio.h>
#include <string.h>

/* A failure triple on the stack top (nil, msg, code): raise msg, prefixed. */
static int raise_failure(lua_State *L, const char *what)
{
    const char *msg = lua_tostring(L, -2);
    return luaL_error(L, "%s: %s", what, msg ? msg : "failed");
}

/* Copy t[k] into out[k] when present. */
static void copy_field(lua_State *L, int t, int out, const char *k)
{
    if (lua_getfield(L, t, k) != LUA_TNIL)
        lua_setfield(L, out, k);
    else
        lua_pop(L, 1);
}

/* open(self) -> the sbot.vault client of the site's vault section, shared
 * with site loading in this process (vault.shared). It holds no connection
 * of its own to close: the token stays with the process, so close does
 * nothing (the client has neither close nor __close). */
static int vault_open(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "site");
    if (!lua_istable(L, -1))
        return luaL_error(L, "the vault step needs the site (Module.new(config, {site = site}))");
    lua_getfield(L, -1, "vault");
    if (!lua_istable(L, -1))
        return luaL_error(L, "the site has no vault section: nothing to check (docs/vault.md)");
    sbot_push_require(L, "sbot.vault", NULL);
    lua_getfield(L, -1, "shared");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 1);
    return 1;
}

/* discover(self, client): the checks above; returns the discovery or raises. */
static int vault_discover(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE); /* the client open() returned */
    lua_settop(L, 2);
    int client = 2;
    lua_getfield(L, 1, "config");
    int config = lua_gettop(L);
    lua_getfield(L, 1, "site");
    int site = lua_gettop(L);

    sbot_push_require(L, "sbot.vault", NULL);
    int vault = lua_gettop(L);
    sbot_push_require(L, "sbot.secret", NULL);
    int secret = lua_gettop(L);

    lua_newtable(L);
    int disc = lua_gettop(L);
    lua_pushvalue(L, disc);
    lua_setfield(L, 1, "discovery"); /* kept if a check below fails */

    lua_getfield(L, client, "cfg");
    int cfg = lua_gettop(L);
    copy_field(L, cfg, disc, "addr");
    copy_field(L, cfg, disc, "namespace");
    copy_field(L, cfg, disc, "mount");

    /* reachable and unsealed */
    sbot_call_method(L, client, "health", 0, 3);
    if (lua_isnil(L, -3))
        return raise_failure(L, "Vault unreachable");
    lua_pop(L, 2);
    int health = lua_gettop(L);
    static const char *const health_fields[] = {"version", "initialized", "sealed", "standby",
                                                "cluster_name", NULL};
    for (int i = 0; health_fields[i]; i++)
        copy_field(L, health, disc, health_fields[i]);
    lua_getfield(L, health, "sealed");
    int sealed = lua_toboolean(L, -1);
    lua_getfield(L, health, "initialized");
    int initialized = lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (!initialized) {
        lua_getfield(L, cfg, "addr");
        return luaL_error(L, "vault %s is not initialized", lua_tostring(L, -1));
    }
    if (sealed) {
        lua_getfield(L, cfg, "addr");
        return luaL_error(L, "vault %s is sealed: unseal it before the deployment", lua_tostring(L, -1));
    }

    /* logged in, token valid: its TTL */
    sbot_call_method(L, client, "ensure_token", 0, 3);
    if (lua_isnil(L, -3))
        return raise_failure(L, "Vault login failed");
    lua_pop(L, 3);
    sbot_call_method(L, client, "lookup", 0, 3);
    if (lua_isnil(L, -3))
        return raise_failure(L, "Vault token not valid");
    lua_pop(L, 2);
    int info = lua_gettop(L);
    lua_newtable(L);
    int token = lua_gettop(L);
    lua_getfield(L, cfg, "auth");
    lua_getfield(L, -1, "method");
    lua_setfield(L, token, "method");
    lua_pop(L, 1);
    static const char *const token_fields[] = {"ttl", "renewable", "policies", "expire_time",
                                               "display_name", "explicit_max_ttl", "period", NULL};
    for (int i = 0; token_fields[i]; i++)
        copy_field(L, info, token, token_fields[i]);
    lua_pushvalue(L, token);
    lua_setfield(L, disc, "token");
    lua_getfield(L, info, "ttl");
    lua_Integer ttl = lua_tointeger(L, -1);
    lua_getfield(L, info, "renewable");
    int renewable = lua_toboolean(L, -1);
    lua_getfield(L, config, "min_ttl");
    lua_Integer min_ttl = lua_tointeger(L, -1);
    lua_pop(L, 3);
    if (ttl > 0 && ttl < min_ttl && !renewable)
        return luaL_error(L, "the Vault token expires in %I s and cannot be renewed; the step asks for "
                          "at least min_ttl = %I s", ttl, min_ttl);

    /* the mount */
    sbot_call_method(L, client, "kv_version", 0, 3);
    if (lua_isnil(L, -3))
        return raise_failure(L, "Vault mount");
    lua_pop(L, 2);
    lua_setfield(L, disc, "kv_version");

    /* the references: the config's, else every one of the site file */
    lua_getfield(L, config, "references");
    int refs;
    if (lua_istable(L, -1)) {
        lua_newtable(L);
        refs = lua_gettop(L);
        lua_Integer n = luaL_len(L, -2);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_createtable(L, 0, 2);
            lua_geti(L, -3, i);
            /* PATH:KEY in a site file (a secret: string there would be resolved) */
            if (strncmp(lua_tostring(L, -1), "secret:", 7) != 0) {
                lua_pushfstring(L, "secret:%s", lua_tostring(L, -1));
                lua_remove(L, -2);
            }
            lua_setfield(L, -2, "ref");
            lua_pushfstring(L, "references[%I]", i);
            lua_setfield(L, -2, "at");
            lua_rawseti(L, refs, i);
        }
    } else {
        lua_getfield(L, site, "file");
        if (!lua_isstring(L, -1))
            return luaL_error(L, "no references in the config and the site has no file to read them from");
        lua_getfield(L, vault, "site_references");
        lua_insert(L, -2);
        lua_call(L, 1, 2);
        if (lua_isnil(L, -2))
            return luaL_error(L, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        refs = lua_gettop(L);
    }

    /* each one readable? (the value itself is dropped) */
    lua_newtable(L);
    int checked = lua_gettop(L);
    lua_newtable(L);
    int problems = lua_gettop(L);
    lua_Integer nrefs = luaL_len(L, refs), readable = 0, unreadable = 0;
    static const char wait[] = "read the site's Vault secrets";
    for (lua_Integer i = 1; i <= nrefs; i++) {
        char detail[64];
        snprintf(detail, sizeof detail, "%lld of %lld", (long long)i - 1, (long long)nrefs);
        sbot_progress_detail(L, wait, (double)(i - 1) / (double)nrefs, detail); /* each read may retry */
        int base = lua_gettop(L);
        lua_geti(L, refs, i);
        int entry = lua_gettop(L);
        lua_createtable(L, 0, 5);
        int rec = lua_gettop(L);
        copy_field(L, entry, rec, "at");
        copy_field(L, entry, rec, "ref");
        lua_getfield(L, secret, "parse_ref");
        lua_getfield(L, entry, "ref");
        lua_call(L, 1, 3); /* path, key, version | nil, err */
        if (lua_isnil(L, -3)) {
            lua_pushboolean(L, 0);
            lua_setfield(L, rec, "ok");
            if (lua_isnil(L, -2))
                lua_pushliteral(L, "not a secret:PATH:KEY reference");
            else
                lua_pushvalue(L, -2);
            lua_setfield(L, rec, "error");
        } else {
            sbot_call_method(L, client, "get", 3, 3);
            int ok = !lua_isnil(L, -3);
            lua_pushboolean(L, ok);
            lua_setfield(L, rec, "ok");
            if (!ok) {
                lua_pushvalue(L, -2);
                lua_setfield(L, rec, "error");
                lua_pushvalue(L, -1);
                lua_setfield(L, rec, "code");
            }
        }
        lua_getfield(L, rec, "ok");
        if (lua_toboolean(L, -1)) {
            readable++;
        } else {
            unreadable++;
            lua_getfield(L, rec, "at");
            lua_getfield(L, rec, "ref");
            lua_getfield(L, rec, "error");
            lua_pushfstring(L, "%s (%s): %s", lua_tostring(L, -3), lua_tostring(L, -2),
                            lua_tostring(L, -1));
            lua_rawseti(L, problems, (lua_Integer)luaL_len(L, problems) + 1);
        }
        lua_pushvalue(L, rec);
        lua_rawseti(L, checked, i);
        lua_settop(L, base);
    }
    sbot_progress_end(L, wait);
    lua_pushvalue(L, checked);
    lua_setfield(L, disc, "secrets");
    lua_pushinteger(L, readable);
    lua_setfield(L, disc, "readable");
    lua_pushinteger(L, unreadable);
    lua_setfield(L, disc, "unreadable");
    if (unreadable > 0) {
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "concat");
        lua_pushvalue(L, problems);
        lua_pushliteral(L, "\n  ");
        lua_call(L, 2, 1);
        return luaL_error(L, "%I of %I secret reference(s) cannot be read from Vault:\n  %s", unreadable,
                          nrefs, lua_tostring(L, -1));
    }
    lua_pushvalue(L, disc);
    return 1;
}

int luaopen_sbot_component_vault(lua_State *L)
{
    lua_newtable(L);
    int spec = lua_gettop(L);
    lua_pushliteral(L, "vault");
    lua_setfield(L, spec, "name");
    lua_pushliteral(L, "Pre-flight check of the site's HashiCorp Vault: reachable and unsealed, "
                       "sbot's token valid (TTL, policies), the KV mount's version, and every "
                       "secret:PATH:KEY reference of the site readable. Read-only.");
    lua_setfield(L, spec, "description");

    lua_newtable(L);
    int schema = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "list");
    lua_setfield(L, -2, "type");
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "type");
    lua_pushliteral(L, "^[^%s]+:[^:%s]+$");
    lua_setfield(L, -2, "pattern");
    lua_setfield(L, -2, "items");
    lua_pushliteral(L, "references to check as PATH:KEY[@N], without secret: (which the site loader "
                       "would resolve); default: every secret: reference of the site file outside "
                       "its vault section");
    lua_setfield(L, -2, "description");
    lua_setfield(L, schema, "references");
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "integer");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "default");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "min");
    lua_pushliteral(L, "seconds the token must still live when it cannot be renewed (0: no check)");
    lua_setfield(L, -2, "description");
    lua_setfield(L, schema, "min_ttl");
    lua_setfield(L, spec, "schema");

    lua_pushcfunction(L, vault_open);
    lua_setfield(L, spec, "open");
    lua_pushcfunction(L, vault_discover);
    lua_setfield(L, spec, "discover");
    return sbot_component_define(L, spec);
}
