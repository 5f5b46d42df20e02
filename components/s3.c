/* components/s3.c: the S3 component (sbot.component.s3), a site-wide step.
 *
 * A private bucket with versioning for everything, a public bucket whose
 * policy lets anonymous readers GET the published prefixes only, lifecycle
 * rules (noncurrent versions, stale multipart uploads), the artifacts it is
 * given uploaded (streamed, SHA-256 in metadata, multipart for large files)
 * and published (server-side copy into the public bucket), and the metadata
 * index updated with conditional writes. docs/component-s3.md.
 *
 * Layering: the S3 protocol client is sbot.s3 (lua/sbot/s3.lua), a protocol
 * primitive written in Lua over C mechanics (sigv4.c signs, s3xml.c parses,
 * http.c moves bytes, crypto.c hashes). This component reaches it, and the
 * lease and JSON modules it builds on, with `require`: a downward arrow
 * (component -> primitive), never upward (none of them calls a component or
 * a policy module). A second S3 client in C would duplicate 1,000 lines of
 * protocol code that must stay exactly one. Where a C API exists the
 * component uses it: the anonymous reads of housekeep go through
 * sbot_http_request, unsigned, as an anonymous reader's would.
 *
 * Every phase gets the resource open() made (a table: the client, the
 * resolved buckets and keys, the part digests computed by discover, the
 * results of applied changes); it is never part of the results. */
#include "luax.h"
#include "sbot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SID "SbotPublicRead"
#define RULE_ID "sbot"

/* ---- small helpers ------------------------------------------------------------ */

/* Call obj:method(args) where obj is at index `obj` and the argument table
 * at index `args` (0: no argument). Pushes value, err, code. Returns whether
 * value is truthy (the call succeeded). */
static int call_method(lua_State *L, int obj, const char *method, int args)
{
    obj = lua_absindex(L, obj);
    if (args)
        args = lua_absindex(L, args);
    lua_getfield(L, obj, method);
    if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_error(L, "s3 component: the client has no method %s", method);
    lua_pushvalue(L, obj);
    if (args)
        lua_pushvalue(L, args);
    lua_call(L, args ? 2 : 1, 3);
    return lua_toboolean(L, -3);
}

/* After call_method failed: the S3 code (or ""), kept on the stack. */
static const char *fail_code(lua_State *L)
{
    return lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
}

/* Raise "<what>: <err>" with the err of a failed call_method on the stack. */
static int raise_call(lua_State *L, const char *what)
{
    return luaL_error(L, "%s: %s", what, luaL_optstring(L, -2, "failed"));
}

/* A new args table with bucket (and key) set: left on the stack. */
static int args_bk(lua_State *L, const char *bucket, const char *key)
{
    lua_createtable(L, 0, 6);
    sbot_set_str(L, -1, "bucket", bucket);
    if (key)
        sbot_set_str(L, -1, "key", key);
    return lua_gettop(L);
}

/* The plain URL anonymous readers GET s3://bucket/key at (the readers'
 * client, res.reader): pushed. res is an absolute index. */
static const char *push_reader_url(lua_State *L, int res, const char *bucket, const char *key)
{
    lua_getfield(L, res, "reader");
    args_bk(L, bucket, key);
    sbot_call_method(L, -2, "object_url", 1, 1);
    lua_remove(L, -2);
    return lua_tostring(L, -1);
}

/* json.encode(value at idx) pushed */
static const char *json_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    sbot_push_require(L, "sbot.json", "encode");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    return lua_tostring(L, -1);
}

/* json.decode(s) pushed (nil on bad JSON) */
static void json_decode(lua_State *L, const char *s)
{
    sbot_push_require(L, "sbot.json", "decode");
    lua_pushstring(L, s);
    lua_call(L, 1, 1);
}

/* json.array(t at top): mark the table on the top as a JSON list */
static void json_array(lua_State *L)
{
    sbot_push_require(L, "sbot.json", "array");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
}

static int starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* ---- the resource: open ---------------------------------------------------------- */

/* The site's s3 section (error when there is none). */
static int push_site_s3(lua_State *L, int self)
{
    lua_getfield(L, self, "site");
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, "s3") != LUA_TTABLE)
        luaL_error(L, "the site has no s3 section (endpoint, bucket, access_key, secret_key): "
                      "the S3 component needs one");
    lua_remove(L, -2);
    return lua_gettop(L);
}

/* config value k, else the site's s3 value k, else dflt (pushed) */
static const char *conf_or_site(lua_State *L, int cfg, int site, const char *k, const char *dflt)
{
    if (lua_getfield(L, cfg, k) != LUA_TNIL)
        return lua_tostring(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, site, k) != LUA_TNIL)
        return lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_pushstring(L, dflt ? dflt : "");
    return dflt;
}

/* open(self) -> resource table */
static int s3_open(lua_State *L)
{
    int self = 1;
    lua_settop(L, 1);
    int site = push_site_s3(L, self);
    lua_getfield(L, self, "config");
    int cfg = lua_gettop(L);
    lua_newtable(L);
    int res = lua_gettop(L);

    /* the client, from the site's endpoint and credentials */
    lua_createtable(L, 0, 8);
    int copts = lua_gettop(L);
    static const char *const from_site[] = {"endpoint", "region", "access_key", "secret_key",
                                            "tls", "path_style", NULL};
    for (int i = 0; from_site[i]; i++) {
        lua_getfield(L, site, from_site[i]);
        lua_setfield(L, copts, from_site[i]);
    }
    static const char *const from_cfg[] = {"part_size", "concurrency", "multipart_threshold", NULL};
    for (int i = 0; from_cfg[i]; i++) {
        lua_getfield(L, cfg, from_cfg[i]);
        lua_setfield(L, copts, from_cfg[i]);
    }
    sbot_push_require(L, "sbot.s3", "client");
    lua_pushvalue(L, copts);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2))
        return luaL_error(L, "%s", luaL_optstring(L, -1, "cannot make the S3 client"));
    lua_pop(L, 1);
    sbot_set_top(L, res, "client");
    /* the readers' client: the same server at the address anonymous readers
     * (the BMCs) use, s3.public_endpoint (iDRAC 8: http only); it only makes
     * URLs (plain and presigned) and sends the anonymous checks' GETs */
    lua_getfield(L, site, "public_endpoint");
    if (!lua_isnil(L, -1)) {
        const char *pe = lua_tostring(L, -1);
        lua_setfield(L, copts, "endpoint");
        if (strncmp(pe, "http://", 7) == 0) {
            lua_pushnil(L); /* no TLS settings on a plain http address */
            lua_setfield(L, copts, "tls");
        }
        sbot_push_require(L, "sbot.s3", "client");
        lua_pushvalue(L, copts);
        lua_call(L, 1, 2);
        if (lua_isnil(L, -2))
            return luaL_error(L, "s3.public_endpoint: %s", luaL_optstring(L, -1, "cannot make the S3 client"));
        lua_pop(L, 1);
        lua_getfield(L, site, "public_endpoint");
        sbot_set_top(L, res, "public_endpoint");
        if (strncmp(pe, "http://", 7) != 0) {
            lua_getfield(L, site, "tls");
            sbot_set_top(L, res, "reader_tls");
        }
    } else {
        lua_pop(L, 1);
        lua_getfield(L, res, "client");
        lua_getfield(L, site, "tls");
        sbot_set_top(L, res, "reader_tls");
    }
    sbot_set_top(L, res, "reader");
    lua_pop(L, 1); /* copts */

    const char *bucket = conf_or_site(L, cfg, site, "bucket", NULL);
    if (!bucket || !*bucket)
        return luaL_error(L, "no bucket: give the site's s3.bucket or the component's bucket");
    sbot_set_str(L, res, "bucket", bucket);
    const char *pub = conf_or_site(L, cfg, site, "public_bucket", NULL);
    if (!pub || !*pub)
        return luaL_error(L, "no public bucket: give the site's s3.public_bucket or the component's public_bucket");
    if (strcmp(pub, bucket) == 0)
        return luaL_error(L, "the public bucket must not be the private bucket (%s): anonymous "
                             "readers would reach the private one's published prefixes", bucket);
    sbot_set_str(L, res, "public_bucket", pub);
    const char *prefix = conf_or_site(L, cfg, site, "prefix", "");
    size_t pl = strlen(prefix);
    if (pl && prefix[pl - 1] != '/')
        lua_pushfstring(L, "%s/", prefix);
    else
        lua_pushstring(L, prefix);
    sbot_set_top(L, res, "prefix");
    lua_getfield(L, res, "prefix");
    const char *px = lua_tostring(L, -1);

    lua_getfield(L, cfg, "index_key");
    lua_pushfstring(L, "%s%s", px, lua_tostring(L, -1));
    sbot_set_top(L, res, "index_key");
    lua_pop(L, 1);
    lua_pushfstring(L, "%s.sbot/uploads/", px);
    sbot_set_top(L, res, "marker_prefix");

    /* published prefixes, as full keys */
    lua_newtable(L);
    int pubs = lua_gettop(L);
    lua_getfield(L, cfg, "publish");
    lua_Integer np = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= np; i++) {
        lua_rawgeti(L, -1, i);
        const char *p = lua_tostring(L, -1);
        if (!p || !*p)
            return luaL_error(L, "publish[%d] must be a non-empty prefix (\"\" would publish everything)", (int)i);
        lua_pushfstring(L, "%s%s", px, p);
        lua_rawseti(L, pubs, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, pubs);
    sbot_set_top(L, res, "publish");

    /* the artifacts: keys checked, published or not */
    lua_newtable(L);
    int arts = lua_gettop(L);
    lua_getfield(L, cfg, "artifacts");
    lua_Integer na = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, -1, i);
        int a = lua_gettop(L);
        const char *key = sbot_field_tostr(L, a, "key");
        sbot_push_require(L, "sbot.store", "check_key");
        lua_pushstring(L, key);
        lua_call(L, 1, 2);
        if (!lua_toboolean(L, -2))
            return luaL_error(L, "artifacts[%d].key: %s", (int)i, lua_tostring(L, -1));
        lua_pop(L, 2);
        lua_createtable(L, 0, 12);
        int e = lua_gettop(L);
        sbot_set_str(L, e, "key", key);
        lua_pushfstring(L, "%s%s", px, key);
        sbot_set_top(L, e, "object");
        /* the bytes: a local file to upload, or an object already stored in
         * the private bucket (by the artifact store: an agent ISO) */
        const char *file = sbot_field_tostr(L, a, "file"), *source = sbot_field_tostr(L, a, "source");
        if ((file != NULL) == (source != NULL))
            return luaL_error(L, "artifacts[%d] (%s): give file (a local file to upload) or source (a key "
                                 "already stored in the private bucket, under prefix), %s", (int)i, key,
                              file ? "not both" : "one of them");
        sbot_set_str(L, e, "file", file);
        if (source) {
            sbot_push_require(L, "sbot.store", "check_key");
            lua_pushstring(L, source);
            lua_call(L, 1, 2);
            if (!lua_toboolean(L, -2))
                return luaL_error(L, "artifacts[%d].source: %s", (int)i, lua_tostring(L, -1));
            lua_pop(L, 2);
            sbot_set_str(L, e, "source", source);
            lua_pushfstring(L, "%s%s", px, source);
        } else {
            lua_pushfstring(L, "%s%s", px, key);
        }
        sbot_set_top(L, e, "private_object");
        lua_getfield(L, a, "presign");
        sbot_set_top(L, e, "presign");
        lua_getfield(L, a, "warning");
        sbot_set_top(L, e, "warning");
        lua_getfield(L, a, "content_type");
        sbot_set_top(L, e, "content_type");
        lua_getfield(L, a, "metadata");
        sbot_set_top(L, e, "metadata");
        int under = 0;
        for (lua_Integer k = 1; k <= np; k++) {
            lua_rawgeti(L, pubs, k);
            lua_getfield(L, e, "object");
            under |= starts_with(lua_tostring(L, -1), lua_tostring(L, -2));
            lua_pop(L, 2);
        }
        int publish = under;
        if (lua_getfield(L, a, "publish") == LUA_TBOOLEAN) {
            publish = lua_toboolean(L, -1);
            if (publish && !under)
                return luaL_error(L, "artifacts[%d] (%s): publish = true, but the key is under none "
                                     "of the published prefixes (publish = {...}); the bucket policy "
                                     "would not let anyone read it", (int)i, key);
        }
        lua_pop(L, 1);
        sbot_set_bool(L, e, "publish", publish);
        /* the published copies of earlier builds this one replaces (index
         * entries under this prefix): unpublished but for keep_previous */
        const char *sup = sbot_field_tostr(L, a, "supersedes");
        if (sup) {
            size_t sl = strlen(sup);
            if (sl < 2 || sup[sl - 1] != '/')
                return luaL_error(L, "artifacts[%d].supersedes: expected a key prefix ending in '/' (e.g. "
                                     "\"isos/openshift/lab/\"), got \"%s\"", (int)i, sup);
            sbot_push_require(L, "sbot.store", "check_key");
            lua_pushlstring(L, sup, sl - 1);
            lua_call(L, 1, 2);
            if (!lua_toboolean(L, -2))
                return luaL_error(L, "artifacts[%d].supersedes: %s", (int)i, lua_tostring(L, -1));
            lua_pop(L, 2);
            sbot_set_str(L, e, "supersedes", sup);
        }
        lua_getfield(L, a, "keep_previous");
        if (!lua_isnil(L, -1) && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0))
            return luaL_error(L, "artifacts[%d].keep_previous: expected an integer >= 0", (int)i);
        sbot_set_int(L, e, "keep_previous", lua_tointeger(L, -1));
        lua_pop(L, 1);
        lua_rawseti(L, arts, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    sbot_set_top(L, res, "artifacts");

    lua_getfield(L, cfg, "lifecycle");
    sbot_set_top(L, res, "lifecycle");
    lua_getfield(L, cfg, "upload_lease");
    sbot_set_top(L, res, "upload_lease");
    lua_getfield(L, site, "tls");
    sbot_set_top(L, res, "tls");
    lua_newtable(L);
    sbot_set_top(L, res, "hashes");
    lua_newtable(L);
    sbot_set_top(L, res, "applied");
    lua_pushvalue(L, res);
    return 1;
}

/* ---- discover ------------------------------------------------------------------ */

/* Discover one bucket into a table {name, exists, versioning, policy, lifecycle}. */
static void discover_bucket(lua_State *L, int client, const char *name, int want_policy)
{
    lua_createtable(L, 0, 6);
    int t = lua_gettop(L);
    sbot_set_str(L, t, "name", name);
    int a = args_bk(L, name, NULL);
    if (!call_method(L, client, "head_bucket", a)) {
        const char *code = fail_code(L);
        if (strcmp(code, "NoSuchBucket") == 0) {
            sbot_set_bool(L, t, "exists", 0);
            lua_pop(L, 4);
            return;
        }
        if (strcmp(code, "AccessDenied") == 0 || strcmp(code, "SignatureDoesNotMatch") == 0 ||
            strcmp(code, "InvalidAccessKeyId") == 0)
            luaL_error(L, "bucket %s: the endpoint refused our signed request (%s): check the "
                          "site's s3 access_key/secret_key and region, and that the key may use this bucket",
                       name, code);
        raise_call(L, name);
    }
    lua_pop(L, 3);
    sbot_set_bool(L, t, "exists", 1);
    if (!call_method(L, client, "get_bucket_versioning", a))
        raise_call(L, name);
    lua_getfield(L, -3, "status");
    sbot_set_top(L, t, "versioning");
    lua_pop(L, 3);
    if (want_policy) {
        if (call_method(L, client, "get_bucket_policy", a)) {
            sbot_set_str(L, t, "policy_text", lua_tostring(L, -3));
            json_decode(L, lua_tostring(L, -3));
            if (!lua_istable(L, -1))
                luaL_error(L, "bucket %s: its policy is not JSON", name);
            sbot_set_top(L, t, "policy");
        } else if (strcmp(fail_code(L), "NoSuchBucketPolicy") != 0) {
            raise_call(L, name);
        }
        lua_pop(L, 3);
    }
    if (call_method(L, client, "get_bucket_lifecycle", a)) {
        lua_pushvalue(L, -3);
        json_array(L);
        sbot_set_top(L, t, "lifecycle");
    } else if (strcmp(fail_code(L), "NoSuchLifecycleConfiguration") != 0) {
        raise_call(L, name);
    }
    lua_pop(L, 4); /* results, args */
}

/* head of (bucket, key) -> table {exists, size, sha256, etag, version_id,
 * source_version_id} pushed */
static void discover_object(lua_State *L, int client, const char *bucket, const char *key)
{
    lua_createtable(L, 0, 6);
    int t = lua_gettop(L);
    int a = args_bk(L, bucket, key);
    if (!call_method(L, client, "head_object", a)) {
        if (strcmp(fail_code(L), "NoSuchKey") != 0 && strcmp(fail_code(L), "NoSuchBucket") != 0)
            raise_call(L, key);
        sbot_set_bool(L, t, "exists", 0);
        lua_pop(L, 4);
        return;
    }
    int h = lua_gettop(L) - 2;
    sbot_set_bool(L, t, "exists", 1);
    lua_getfield(L, h, "size");
    sbot_set_top(L, t, "size");
    lua_getfield(L, h, "etag");
    sbot_set_top(L, t, "etag");
    lua_getfield(L, h, "version_id");
    sbot_set_top(L, t, "version_id");
    lua_getfield(L, h, "content_type");
    sbot_set_top(L, t, "content_type");
    lua_getfield(L, h, "metadata");
    lua_getfield(L, -1, "sbot-sha256");
    sbot_set_top(L, t, "sha256");
    lua_getfield(L, -1, "sbot-source-version-id");
    sbot_set_top(L, t, "source_version_id");
    lua_pop(L, 1);
    lua_pop(L, 4);
}

/* The artifact e (of res.artifacts) with {sha256} in its key: sha put in
 * its key and object (and private object, for a file). Returns the key. */
static const char *resolve_key(lua_State *L, int res, int e, const char *sha)
{
    const char *key = sbot_field_tostr(L, e, "key");
    if (!strstr(key, "{sha256}"))
        return key;
    sbot_push_require(L, "string", "gsub");
    lua_pushstring(L, key);
    lua_pushliteral(L, "{sha256}");
    lua_pushstring(L, sha);
    lua_call(L, 3, 1);
    sbot_set_top(L, e, "key");
    key = sbot_field_tostr(L, e, "key");
    lua_pushfstring(L, "%s%s", sbot_field_tostr(L, res, "prefix"), key);
    sbot_set_top(L, e, "object");
    if (!sbot_field_tostr(L, e, "source")) {
        lua_getfield(L, e, "object");
        sbot_set_top(L, e, "private_object");
    }
    return key;
}

/* ---- superseded published copies ------------------------------------------------- */

/* table.sort comparator over index entry keys (upvalue 1: the index's
 * objects): the newest `updated` first, then by key */
static int newer_first(lua_State *L)
{
    lua_getfield(L, lua_upvalueindex(1), lua_tostring(L, 1));
    lua_getfield(L, -1, "updated");
    lua_getfield(L, lua_upvalueindex(1), lua_tostring(L, 2));
    lua_getfield(L, -1, "updated");
    const char *ua = lua_isstring(L, -3) ? lua_tostring(L, -3) : "";
    const char *ub = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    int c = strcmp(ua, ub);
    lua_pushboolean(L, c != 0 ? c > 0 : strcmp(lua_tostring(L, 1), lua_tostring(L, 2)) < 0);
    return 1;
}

/* Every version and delete marker under prefix in bucket (every page of
 * client:list_object_versions): pushes the list; raises "<what>: <err>"
 * when S3 refuses. */
static void push_versions(lua_State *L, int client, const char *bucket, const char *prefix, const char *what)
{
    lua_newtable(L);
    int out = lua_gettop(L), n = 0;
    int a = args_bk(L, bucket, NULL);
    sbot_set_str(L, a, "prefix", prefix);
    sbot_call_method(L, client, "list_object_versions", 1, 1);
    int iter = lua_gettop(L);
    for (;;) {
        lua_pushvalue(L, iter);
        lua_call(L, 0, 3);
        if (lua_isnil(L, -3))
            break;
        if (!lua_toboolean(L, -3))
            luaL_error(L, "%s: %s", what, luaL_optstring(L, -2, "?"));
        lua_pop(L, 2);
        lua_rawseti(L, out, ++n);
    }
    lua_settop(L, out);
}

/* The versions of exactly `key` in a versioned bucket, each non-marker one
 * HEADed for its sbot-sha256: pushes {{version_id, delete_marker, is_latest,
 * sha256, content_type}}; raises when S3 refuses. */
static void key_versions(lua_State *L, int client, const char *bucket, const char *key)
{
    lua_newtable(L);
    int out = lua_gettop(L), n = 0;
    push_versions(L, client, bucket, key, lua_pushfstring(L, "listing the versions of s3://%s/%s", bucket, key));
    int list = lua_gettop(L);
    lua_Integer nl = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= nl; i++) {
        lua_rawgeti(L, list, i);
        int v = lua_gettop(L);
        if (strcmp(sbot_field_tostr(L, v, "key"), key) == 0) {
            lua_createtable(L, 0, 5);
            int r = lua_gettop(L);
            lua_getfield(L, v, "version_id");
            sbot_set_top(L, r, "version_id");
            lua_getfield(L, v, "is_latest");
            sbot_set_top(L, r, "is_latest");
            lua_getfield(L, v, "delete_marker");
            int marker = lua_toboolean(L, -1);
            sbot_set_top(L, r, "delete_marker");
            if (!marker) {
                int h = args_bk(L, bucket, key);
                lua_getfield(L, v, "version_id");
                sbot_set_top(L, h, "version_id");
                if (!call_method(L, client, "head_object", h))
                    luaL_error(L, "HEAD s3://%s/%s (version %s): %s", bucket, key, sbot_field_tostr(L, r, "version_id"),
                               luaL_optstring(L, -2, "?"));
                lua_getfield(L, -3, "metadata");
                lua_getfield(L, -1, "sbot-sha256");
                sbot_set_top(L, r, "sha256");
                lua_pop(L, 1);
                lua_getfield(L, -3, "content_type");
                sbot_set_top(L, r, "content_type");
                lua_pop(L, 4);
            }
            lua_rawseti(L, out, ++n);
        }
        lua_settop(L, list);
    }
    lua_settop(L, out);
}

/* discovery.superseded: for each artifact with `supersedes`, the index
 * entries under that prefix (not a configured artifact's) with a public copy
 * in this public bucket — copies sbot published for earlier builds — newest
 * first by the entry's `updated`. The first keep_previous are kept; each
 * other one is to be unpublished when the public object (each of its
 * versions, in a versioned bucket) is still the copy sbot made: its
 * sbot-sha256 is the entry's. Records {key, by, public_key, url, sha256,
 * updated, source = {bucket, object, version_id}, action = "unpublish" |
 * "kept" | "gone" (nothing left to delete: the index is fixed) | "left" (not
 * sbot's copy), why, versions, delete = {{key, version_id}}}. Pushes the list. */
static void discover_superseded(lua_State *L, int res, int d, int client, const char *pub, int pub_exists,
                                int versioned)
{
    lua_newtable(L);
    int out = lua_gettop(L), n = 0;
    lua_getfield(L, res, "artifacts");
    int cfga = lua_gettop(L);
    lua_getfield(L, d, "artifacts");
    int arts = lua_gettop(L);
    lua_getfield(L, d, "index");
    lua_getfield(L, -1, "objects");
    lua_remove(L, -2);
    int objs = lua_gettop(L);
    lua_newtable(L);
    int seen = lua_gettop(L); /* configured keys and entries already taken */
    lua_Integer na = luaL_len(L, arts);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, arts, i);
        lua_getfield(L, -1, "key");
        lua_pushboolean(L, 1);
        lua_settable(L, seen);
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= na; i++) {
        int top = lua_gettop(L);
        lua_rawgeti(L, cfga, i);
        int ca = top + 1;
        const char *sup = sbot_field_tostr(L, ca, "supersedes");
        if (!sup) {
            lua_settop(L, top);
            continue;
        }
        lua_getfield(L, ca, "keep_previous");
        lua_Integer keep = lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_rawgeti(L, arts, i);
        const char *by = sbot_field_tostr(L, top + 2, "key");
        lua_newtable(L);
        int cands = lua_gettop(L), nc = 0;
        lua_pushnil(L);
        while (lua_next(L, objs)) {
            int ent = lua_gettop(L);
            if (lua_type(L, ent - 1) == LUA_TSTRING && lua_istable(L, ent) &&
                starts_with(lua_tostring(L, ent - 1), sup)) {
                lua_pushvalue(L, ent - 1);
                int taken = lua_gettable(L, seen) != LUA_TNIL;
                lua_pop(L, 1);
                if (!taken && lua_getfield(L, ent, "public") == LUA_TTABLE) {
                    const char *pb = sbot_field_tostr(L, -1, "bucket"), *pk = sbot_field_tostr(L, -1, "key");
                    if (pb && pk && strcmp(pb, pub) == 0) {
                        lua_pushvalue(L, ent - 1);
                        lua_rawseti(L, cands, ++nc);
                    }
                }
            }
            lua_settop(L, ent - 1);
        }
        sbot_push_require(L, "table", "sort");
        lua_pushvalue(L, cands);
        lua_pushvalue(L, objs);
        lua_pushcclosure(L, newer_first, 1);
        lua_call(L, 2, 0);
        for (int j = 1; j <= nc; j++) {
            int base = lua_gettop(L);
            lua_rawgeti(L, cands, j);
            const char *key = lua_tostring(L, -1);
            lua_pushboolean(L, 1);
            lua_setfield(L, seen, key);
            lua_getfield(L, objs, key);
            int ent = lua_gettop(L);
            lua_getfield(L, ent, "public");
            int pe = lua_gettop(L);
            lua_createtable(L, 0, 12);
            int r = lua_gettop(L);
            sbot_set_str(L, r, "key", key);
            sbot_set_str(L, r, "by", by);
            const char *pk = sbot_field_tostr(L, pe, "key");
            sbot_set_str(L, r, "public_key", pk);
            lua_getfield(L, pe, "url");
            sbot_set_top(L, r, "url");
            const char *sha = sbot_field_tostr(L, ent, "sha256");
            sbot_set_str(L, r, "sha256", sha);
            lua_getfield(L, ent, "updated");
            sbot_set_top(L, r, "updated");
            lua_createtable(L, 0, 3);
            lua_getfield(L, ent, "bucket");
            sbot_set_top(L, -2, "bucket");
            lua_getfield(L, ent, "object");
            sbot_set_top(L, -2, "object");
            lua_getfield(L, ent, "version_id");
            sbot_set_top(L, -2, "version_id");
            sbot_set_top(L, r, "source");
            const char *action, *why = NULL;
            int current = 0; /* the key shows sbot's copy: what an undo puts back */
            if (j <= keep) {
                action = "kept";
                why = lua_pushfstring(L, "keep_previous = %d: one of the %d newest earlier copies", (int)keep,
                                      (int)keep);
            } else if (!pub_exists) {
                action = "gone";
                why = "the public bucket does not exist";
            } else if (versioned) {
                /* a versioned bucket keeps a deleted key's data as a noncurrent
                 * version (hidden from anonymous GetObject, but stored, and
                 * readable by version id to whoever may GetObjectVersion):
                 * sbot's versions are deleted by id */
                key_versions(L, client, pub, pk);
                int vs = lua_gettop(L);
                json_array(L);
                lua_newtable(L);
                int del = lua_gettop(L), ndel = 0, data = 0, theirs = 0;
                lua_Integer nv = luaL_len(L, vs);
                for (lua_Integer v = 1; v <= nv; v++) {
                    lua_rawgeti(L, vs, v);
                    lua_getfield(L, -1, "delete_marker");
                    int marker = lua_toboolean(L, -1);
                    lua_pop(L, 1);
                    const char *vsha = sbot_field_tostr(L, -1, "sha256");
                    int ours = !marker && vsha && sha && strcmp(vsha, sha) == 0;
                    lua_getfield(L, -1, "is_latest");
                    if (ours && lua_toboolean(L, -1))
                        current = 1;
                    lua_pop(L, 1);
                    if (!marker) {
                        sbot_set_bool(L, -1, "ours", ours);
                        data++;
                        theirs += !ours;
                    }
                    if (ours) {
                        lua_createtable(L, 0, 2);
                        sbot_set_str(L, -1, "key", pk);
                        lua_getfield(L, -2, "version_id");
                        sbot_set_top(L, -2, "version_id");
                        lua_rawseti(L, del, ++ndel);
                        if (sbot_field_tostr(L, -1, "content_type")) {
                            lua_getfield(L, -1, "content_type");
                            sbot_set_top(L, r, "content_type");
                        }
                    }
                    lua_pop(L, 1);
                }
                /* delete markers go too once no data is left under the key
                 * (removing one in front of someone else's version would make
                 * that version current again) */
                if (theirs == 0) {
                    for (lua_Integer v = 1; v <= nv; v++) {
                        lua_rawgeti(L, vs, v);
                        lua_getfield(L, -1, "delete_marker");
                        if (lua_toboolean(L, -1)) {
                            lua_createtable(L, 0, 2);
                            sbot_set_str(L, -1, "key", pk);
                            lua_getfield(L, -3, "version_id");
                            sbot_set_top(L, -2, "version_id");
                            lua_rawseti(L, del, ++ndel);
                        }
                        lua_pop(L, 2);
                    }
                }
                lua_pushvalue(L, vs);
                sbot_set_top(L, r, "versions");
                sbot_set_int(L, r, "others", theirs);
                if (data - theirs > 0) {
                    action = "unpublish";
                    why = theirs ? "sbot's versions of the key are deleted; other versions are not sbot's and are "
                                   "left"
                                 : "every version of the key is deleted (the bucket is versioned: a plain delete "
                                   "would only hide the data behind a delete marker)";
                    lua_pushvalue(L, del);
                    json_array(L);
                    sbot_set_top(L, r, "delete");
                } else if (data == 0) {
                    action = ndel ? "unpublish" : "gone";
                    why = ndel ? "only delete markers are left under the key: they are removed"
                               : "the public copy no longer exists";
                    if (ndel) {
                        lua_pushvalue(L, del);
                        json_array(L);
                        sbot_set_top(L, r, "delete");
                    }
                } else {
                    action = "left";
                    why = "the object at that key is not the copy sbot published (its sbot-sha256 is not the "
                          "index entry's): left alone";
                }
            } else {
                discover_object(L, client, pub, pk);
                int o = lua_gettop(L);
                lua_getfield(L, o, "exists");
                int exists = lua_toboolean(L, -1);
                lua_pop(L, 1);
                const char *osha = sbot_field_tostr(L, o, "sha256");
                if (!exists) {
                    action = "gone";
                    why = "the public copy no longer exists";
                } else if (osha && sha && strcmp(osha, sha) == 0) {
                    action = "unpublish";
                    current = 1;
                    why = "the public bucket is not versioned: deleting the key removes the data";
                    lua_getfield(L, o, "content_type");
                    sbot_set_top(L, r, "content_type");
                } else {
                    action = "left";
                    why = "the object at that key is not the copy sbot published (its sbot-sha256 is not the "
                          "index entry's): left alone";
                }
            }
            sbot_set_str(L, r, "action", action);
            sbot_set_str(L, r, "why", why);
            sbot_set_bool(L, r, "current", current);
            lua_pushvalue(L, r);
            lua_rawseti(L, out, ++n);
            lua_settop(L, base);
        }
        lua_settop(L, top);
    }
    lua_settop(L, out);
    json_array(L);
}

/* discover(self, res) */
static int s3_discover(lua_State *L)
{
    lua_settop(L, 2);
    int res = 2;
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    const char *bucket = sbot_field_tostr(L, res, "bucket");
    const char *pub = sbot_field_tostr(L, res, "public_bucket");
    const char *prefix = sbot_field_tostr(L, res, "prefix");
    lua_newtable(L);
    int d = lua_gettop(L);
    lua_getfield(L, client, "endpoint");
    sbot_set_top(L, d, "endpoint");
    lua_getfield(L, client, "region");
    sbot_set_top(L, d, "region");
    sbot_set_str(L, d, "prefix", prefix);

    /* endpoint reachable and signing accepted (a transport failure or a
     * refused signature fails discover, naming which) */
    lua_createtable(L, 0, 2);
    discover_bucket(L, client, bucket, 0);
    sbot_set_top(L, -2, "private");
    discover_bucket(L, client, pub, 1);
    sbot_set_top(L, -2, "public");
    sbot_set_top(L, d, "buckets");
    sbot_set_bool(L, d, "reachable", 1);
    lua_getfield(L, d, "buckets");
    lua_getfield(L, -1, "private");
    int priv_exists = (lua_getfield(L, -1, "exists"), lua_toboolean(L, -1));
    lua_pop(L, 2);
    lua_getfield(L, -1, "public");
    int pub_exists = (lua_getfield(L, -1, "exists"), lua_toboolean(L, -1));
    lua_pop(L, 3);

    /* the index: content and ETag */
    lua_createtable(L, 0, 4);
    int idx = lua_gettop(L);
    sbot_set_str(L, idx, "key", sbot_field_tostr(L, res, "index_key"));
    sbot_set_bool(L, idx, "exists", 0);
    if (priv_exists) {
        int a = args_bk(L, bucket, sbot_field_tostr(L, res, "index_key"));
        if (call_method(L, client, "get_object", a)) {
            int g = lua_gettop(L) - 2;
            sbot_set_bool(L, idx, "exists", 1);
            lua_getfield(L, g, "etag");
            sbot_set_top(L, idx, "etag");
            lua_getfield(L, g, "body");
            json_decode(L, lua_tostring(L, -1));
            if (!lua_istable(L, -1))
                return luaL_error(L, "the index s3://%s/%s is not JSON: sbot will not overwrite it",
                                  bucket, sbot_field_tostr(L, res, "index_key"));
            sbot_push_require(L, "sbot.store", "normalise_index");
            lua_insert(L, -2);
            lua_call(L, 1, 1);
            lua_getfield(L, -1, "objects");
            sbot_set_top(L, idx, "objects");
            lua_pop(L, 2);
        } else if (strcmp(fail_code(L), "NoSuchKey") != 0) {
            raise_call(L, "the index");
        }
        lua_pop(L, 4);
    }
    if (lua_getfield(L, idx, "objects") == LUA_TNIL) {
        lua_newtable(L);
        sbot_set_top(L, idx, "objects");
    }
    lua_pop(L, 1);
    sbot_set_top(L, d, "index");

    /* the objects under the prefix (one listing, 1000 keys a page): what the
     * index entries must match */
    lua_newtable(L);
    int listing = lua_gettop(L);
    if (priv_exists) {
        int a = args_bk(L, bucket, NULL);
        sbot_set_str(L, a, "prefix", prefix);
        if (!call_method(L, client, "list_objects_all", a))
            raise_call(L, "listing the private bucket");
        int list = lua_gettop(L) - 2;
        lua_Integer n = luaL_len(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            lua_createtable(L, 0, 2);
            lua_getfield(L, -2, "size");
            sbot_set_top(L, -2, "size");
            lua_getfield(L, -2, "etag");
            sbot_set_top(L, -2, "etag");
            lua_getfield(L, -2, "key");
            lua_insert(L, -2);
            lua_settable(L, listing);
            lua_pop(L, 1);
        }
        lua_pop(L, 4);
    }
    lua_setfield(L, res, "listing"); /* in the resource: not part of the results */

    /* the artifacts: the local file (size, SHA-256 and part digests in one
     * read, kept in the resource for the upload) and the stored objects */
    lua_newtable(L);
    int arts = lua_gettop(L);
    lua_getfield(L, res, "artifacts");
    int cfga = lua_gettop(L);
    lua_getfield(L, res, "hashes");
    int hashes = lua_gettop(L);
    lua_Integer na = luaL_len(L, cfga);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, cfga, i);
        int e = lua_gettop(L);
        const char *key = sbot_field_tostr(L, e, "key");
        const char *source = sbot_field_tostr(L, e, "source");
        lua_createtable(L, 0, 12);
        int t = lua_gettop(L);
        /* the bytes first: their SHA-256 may be part of the key ({sha256}) */
        lua_pushnil(L); /* the private object's state, below */
        int pv = lua_gettop(L);
        const char *sha = NULL;
        lua_Integer size = -1;
        if (source) {
            /* stored already: its size and SHA-256 (the store's metadata) are
             * what the public copy must have; not there yet = an earlier step
             * of this run stores it (--plan), published once it is */
            const char *pobject = sbot_field_tostr(L, e, "private_object");
            if (priv_exists)
                discover_object(L, client, bucket, pobject);
            else {
                lua_createtable(L, 0, 1);
                sbot_set_bool(L, -1, "exists", 0);
            }
            lua_replace(L, pv);
            sbot_set_str(L, t, "source", source);
            lua_pushfstring(L, "s3://%s/%s", bucket, pobject);
            sbot_set_top(L, t, "source_url");
            lua_getfield(L, pv, "exists");
            int there = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (!there) {
                sbot_set_bool(L, t, "pending", 1);
            } else {
                sha = sbot_field_tostr(L, pv, "sha256");
                if (!sha)
                    return luaL_error(L, "artifact %s: the source s3://%s/%s has no sbot-sha256 metadata (it was "
                                         "not stored by sbot): sbot publishes only what it can check", key, bucket,
                                      pobject);
                size = (lua_getfield(L, pv, "size"), lua_tointeger(L, -1));
                lua_pop(L, 1);
            }
        } else {
            lua_createtable(L, 0, 1);
            sbot_set_str(L, -1, "file", sbot_field_tostr(L, e, "file"));
            int ha = lua_gettop(L);
            /* hashing a large file (an ISO) takes a while: a wait of sbot.progress */
            char wait[256];
            snprintf(wait, sizeof wait, "hash %s", key);
            sbot_progress(L, wait, SBOT_PROGRESS_UNKNOWN);
            int hashed = call_method(L, client, "hash_file", ha);
            sbot_progress_end(L, wait);
            if (!hashed)
                return luaL_error(L, "artifact %s: %s", key, luaL_optstring(L, -2, "cannot read the file"));
            lua_pushvalue(L, -3);
            sbot_set_top(L, e, "hash");
            lua_getfield(L, -3, "size");
            size = lua_tointeger(L, -1);
            lua_pop(L, 1);
            lua_getfield(L, -3, "sha256");
            sbot_set_top(L, e, "sha256");
            sha = sbot_field_tostr(L, e, "sha256");
            lua_pop(L, 4);
        }
        /* a key naming {sha256} (a content-addressed, unguessable key): the
         * bytes' SHA-256 goes in, once known; until then (a source not stored
         * yet, --plan) it stays a template */
        if (sha)
            key = resolve_key(L, res, e, sha);
        if (!source) {
            lua_getfield(L, e, "hash");
            lua_setfield(L, hashes, key);
        }
        const char *object = sbot_field_tostr(L, e, "object");
        const char *pobject = sbot_field_tostr(L, e, "private_object");
        if (!source) {
            if (priv_exists)
                discover_object(L, client, bucket, pobject);
            else {
                lua_createtable(L, 0, 1);
                sbot_set_bool(L, -1, "exists", 0);
            }
            lua_replace(L, pv);
        }
        sbot_set_str(L, t, "key", key);
        sbot_set_str(L, t, "object", object);
        sbot_set_str(L, t, "private_object", pobject);
        sbot_set_str(L, t, "file", sbot_field_tostr(L, e, "file"));
        lua_getfield(L, e, "publish");
        sbot_set_top(L, t, "publish");
        lua_getfield(L, e, "warning");
        sbot_set_top(L, t, "warning");
        if (sha) {
            sbot_set_str(L, t, "sha256", sha);
            sbot_set_int(L, t, "size", size);
        }
        lua_pushvalue(L, pv);
        sbot_set_top(L, t, "private");
        lua_pop(L, 1); /* pv */
        lua_getfield(L, e, "presign");
        lua_Integer presign = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (presign > 0) {
            /* a GET of the private object for readers that take a URL with a
             * query string, at the readers' address; it expires */
            lua_getfield(L, res, "reader");
            int ua = args_bk(L, bucket, pobject);
            sbot_set_int(L, ua, "expires", presign);
            call_method(L, lua_gettop(L) - 1, "presign", ua);
            lua_pop(L, 2);
            sbot_set_top(L, t, "presigned_url");
            lua_pop(L, 2);
            sbot_set_int(L, t, "presign_expires", presign);
        }
        lua_getfield(L, t, "publish");
        int publish = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (publish) {
            if (pub_exists)
                discover_object(L, client, pub, object);
            else {
                lua_createtable(L, 0, 1);
                sbot_set_bool(L, -1, "exists", 0);
            }
            sbot_set_top(L, t, "public");
            /* where anonymous readers fetch it (plain, unsigned) */
            push_reader_url(L, res, pub, object);
            sbot_set_top(L, t, "public_url");
        }
        /* the URL readers are given: presigned when asked, else the public one */
        if (lua_getfield(L, t, "presigned_url") == LUA_TNIL) {
            lua_pop(L, 1);
            lua_getfield(L, t, "public_url");
        }
        sbot_set_top(L, t, "url");
        lua_rawseti(L, arts, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    json_array(L);
    sbot_set_top(L, d, "artifacts");

    /* published copies of earlier builds that this run's artifacts supersede */
    {
        lua_getfield(L, d, "buckets");
        lua_getfield(L, -1, "public");
        lua_getfield(L, -1, "versioning");
        int versioned = lua_isstring(L, -1); /* Enabled or Suspended: keys keep versions */
        lua_pop(L, 3);
        discover_superseded(L, res, d, client, pub, pub_exists, versioned);
        lua_pushvalue(L, -1);
        lua_setfield(L, res, "superseded");
        sbot_set_top(L, d, "superseded");
    }

    /* unfinished multipart uploads under our prefix, in both buckets */
    lua_newtable(L);
    int ups = lua_gettop(L);
    int nu = 0;
    for (int b = 0; b < 2; b++) {
        const char *name = b ? pub : bucket;
        if (!(b ? pub_exists : priv_exists))
            continue;
        int a = args_bk(L, name, NULL);
        sbot_set_str(L, a, "prefix", prefix);
        if (!call_method(L, client, "list_multipart_uploads", a))
            raise_call(L, name);
        int list = lua_gettop(L) - 2;
        lua_Integer n = luaL_len(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            sbot_set_str(L, -1, "bucket", name);
            lua_rawseti(L, ups, ++nu);
        }
        lua_pop(L, 4);
    }
    json_array(L);
    sbot_set_top(L, d, "uploads");
    lua_pushvalue(L, d);
    return 1;
}

/* ---- desired state ----------------------------------------------------------- */

/* Is the statement at idx an Allow whose principal is everyone? */
static int anonymous_allow(lua_State *L, int st)
{
    st = lua_absindex(L, st);
    if (!lua_istable(L, st))
        return 0;
    lua_getfield(L, st, "Effect");
    int allow = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "Allow") == 0;
    lua_pop(L, 1);
    if (!allow)
        return 0;
    int anyone = 0;
    lua_getfield(L, st, "Principal");
    if (lua_isstring(L, -1)) {
        anyone = strcmp(lua_tostring(L, -1), "*") == 0;
    } else if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "AWS");
        if (lua_isstring(L, -1)) {
            anyone = strcmp(lua_tostring(L, -1), "*") == 0;
        } else if (lua_istable(L, -1)) {
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                anyone |= lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "*") == 0;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return anyone;
}

/* Push the policy the public bucket must have: every statement it has that
 * is not an anonymous Allow, plus ours (anonymous s3:GetObject on the
 * published prefixes only). Pushes the removed statements' Sids too. */
static void push_desired_policy(lua_State *L, int res, int current)
{
    const char *pub = sbot_field_tostr(L, res, "public_bucket");
    lua_createtable(L, 0, 2);
    int pol = lua_gettop(L);
    sbot_set_str(L, pol, "Version", "2012-10-17");
    lua_newtable(L);
    int sts = lua_gettop(L);
    int n = 0;
    lua_newtable(L);
    int removed = lua_gettop(L);
    int nr = 0;
    if (lua_istable(L, current)) {
        lua_getfield(L, current, "Statement");
        if (lua_istable(L, -1) && lua_rawlen(L, -1) == 0) {
            int single = lua_getfield(L, -1, "Effect") != LUA_TNIL;
            lua_pop(L, 1);
            if (single) { /* a single statement object, not a list */
                lua_newtable(L);
                lua_insert(L, -2);
                lua_rawseti(L, -2, 1);
            }
        }
        lua_Integer m = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
        for (lua_Integer i = 1; i <= m; i++) {
            lua_rawgeti(L, -1, i);
            lua_getfield(L, -1, "Sid");
            int ours = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), SID) == 0;
            lua_pop(L, 1);
            if (ours || anonymous_allow(L, -1)) {
                if (!ours) {
                    lua_getfield(L, -1, "Sid");
                    if (lua_isnil(L, -1)) {
                        lua_pop(L, 1);
                        lua_pushfstring(L, "statement %d", (int)i);
                    }
                    lua_rawseti(L, removed, ++nr);
                }
                lua_pop(L, 1);
            } else {
                lua_rawseti(L, sts, ++n);
            }
        }
        lua_pop(L, 1);
    }
    /* ours */
    lua_createtable(L, 0, 5);
    int st = lua_gettop(L);
    sbot_set_str(L, st, "Sid", SID);
    sbot_set_str(L, st, "Effect", "Allow");
    lua_createtable(L, 0, 1);
    lua_createtable(L, 1, 0);
    lua_pushliteral(L, "*");
    lua_rawseti(L, -2, 1);
    json_array(L);
    lua_setfield(L, -2, "AWS");
    sbot_set_top(L, st, "Principal");
    lua_createtable(L, 1, 0);
    lua_pushliteral(L, "s3:GetObject");
    lua_rawseti(L, -2, 1);
    json_array(L);
    sbot_set_top(L, st, "Action");
    lua_newtable(L);
    lua_getfield(L, res, "publish");
    lua_Integer np = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= np; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushfstring(L, "arn:aws:s3:::%s/%s*", pub, lua_tostring(L, -1));
        lua_rawseti(L, -4, i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    json_array(L);
    sbot_set_top(L, st, "Resource");
    lua_rawseti(L, sts, ++n);
    lua_pushvalue(L, sts);
    json_array(L);
    lua_pop(L, 1);
    lua_pushvalue(L, sts);
    sbot_set_top(L, pol, "Statement");
    lua_pushvalue(L, removed);
    json_array(L);
    lua_pop(L, 1);
    /* stack: pol, sts, removed -> pol, removed */
    lua_remove(L, sts);
}

/* The lifecycle rules the bucket must have: its other rules, then ours.
 * Raises when another rule has parts sbot cannot write back. */
static void push_desired_rules(lua_State *L, int res, int current, int private_bucket,
                               const char *bucket)
{
    lua_newtable(L);
    int rules = lua_gettop(L);
    int n = 0;
    if (lua_istable(L, current)) {
        lua_Integer m = luaL_len(L, current);
        for (lua_Integer i = 1; i <= m; i++) {
            lua_rawgeti(L, current, i);
            lua_getfield(L, -1, "id");
            int ours = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), RULE_ID) == 0;
            lua_pop(L, 1);
            if (!ours) {
                lua_getfield(L, -1, "other");
                if (lua_toboolean(L, -1))
                    luaL_error(L, "bucket %s has lifecycle rules with parts sbot cannot rewrite "
                                  "(transitions, tag filters, dated expirations): sbot would have "
                                  "to replace them to add its own rule; merge rule '%s' by hand",
                               bucket, RULE_ID);
                lua_pop(L, 1);
                lua_rawseti(L, rules, ++n);
            } else {
                lua_pop(L, 1);
            }
        }
    }
    lua_createtable(L, 0, 5);
    sbot_set_str(L, -1, "id", RULE_ID);
    sbot_set_str(L, -1, "prefix", sbot_field_tostr(L, res, "prefix"));
    sbot_set_str(L, -1, "status", "Enabled");
    lua_getfield(L, res, "lifecycle");
    lua_getfield(L, -1, "abort_multipart_days");
    sbot_set_top(L, -3, "abort_multipart_days");
    if (private_bucket) {
        lua_getfield(L, -1, "noncurrent_days");
        sbot_set_top(L, -3, "noncurrent_days");
    }
    lua_pop(L, 1);
    lua_rawseti(L, rules, ++n);
    json_array(L);
}

/* equal(a, b) by their canonical JSON (sorted keys) */
static int json_equal(lua_State *L, int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    const char *x = json_encode(L, a);
    const char *y = json_encode(L, b);
    int eq = x && y && strcmp(x, y) == 0;
    lua_pop(L, 2);
    return eq;
}

/* A change {kind, resource, action, before, after, reason} appended to plan. */
static int new_change(lua_State *L, int plan, const char *kind, const char *action,
                      const char *reason)
{
    lua_createtable(L, 0, 8);
    int c = lua_gettop(L);
    sbot_set_str(L, c, "kind", kind);
    sbot_set_str(L, c, "action", action);
    sbot_set_str(L, c, "reason", reason);
    lua_pushvalue(L, c);
    lua_rawseti(L, plan, (lua_Integer)lua_rawlen(L, plan) + 1);
    return c;
}

/* The index entry an artifact's objects call for, from (private, public)
 * states at indices priv and pubo (0 when not published). Pushed. */
static void push_entry(lua_State *L, int res, int art, int priv, int pubo)
{
    lua_createtable(L, 0, 8);
    int e = lua_gettop(L);
    sbot_set_str(L, e, "key", sbot_field_tostr(L, art, "key"));
    sbot_set_str(L, e, "bucket", sbot_field_tostr(L, res, "bucket"));
    sbot_set_str(L, e, "object", sbot_field_tostr(L, art, "private_object"));
    lua_getfield(L, priv, "size");
    sbot_set_top(L, e, "size");
    lua_getfield(L, priv, "sha256");
    sbot_set_top(L, e, "sha256");
    lua_getfield(L, priv, "etag");
    sbot_set_top(L, e, "etag");
    lua_getfield(L, priv, "version_id");
    sbot_set_top(L, e, "version_id");
    if (pubo) {
        lua_createtable(L, 0, 3);
        sbot_set_str(L, -1, "bucket", sbot_field_tostr(L, res, "public_bucket"));
        sbot_set_str(L, -1, "key", sbot_field_tostr(L, art, "object"));
        push_reader_url(L, res, sbot_field_tostr(L, res, "public_bucket"), sbot_field_tostr(L, art, "object"));
        sbot_set_top(L, -2, "url");
        sbot_set_top(L, e, "public");
    }
}

/* the fields an index entry must agree on with its objects */
static const char *const ENTRY_FIELDS[] = {"bucket", "object", "size", "sha256", "etag", "version_id", NULL};

static int entry_matches(lua_State *L, int have, int want)
{
    have = lua_absindex(L, have);
    want = lua_absindex(L, want);
    if (!lua_istable(L, have))
        return 0;
    for (int i = 0; ENTRY_FIELDS[i]; i++) {
        lua_getfield(L, have, ENTRY_FIELDS[i]);
        lua_getfield(L, want, ENTRY_FIELDS[i]);
        int eq = lua_compare(L, -1, -2, LUA_OPEQ) || (lua_isnil(L, -1) && lua_isnil(L, -2));
        lua_pop(L, 2);
        if (!eq)
            return 0;
    }
    lua_getfield(L, have, "public");
    lua_getfield(L, want, "public");
    int eq = json_equal(L, -1, -2);
    lua_pop(L, 2);
    return eq;
}

/* plan(self, res) */
static int s3_plan(lua_State *L)
{
    lua_settop(L, 2);
    int self = 1, res = 2;
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_newtable(L);
    int plan = lua_gettop(L);
    const char *bucket = sbot_field_tostr(L, res, "bucket");
    const char *pub = sbot_field_tostr(L, res, "public_bucket");
    lua_getfield(L, d, "buckets");
    lua_getfield(L, -1, "private");
    int bp = lua_gettop(L);
    lua_getfield(L, -2, "public");
    int bq = lua_gettop(L);

    /* the private bucket, versioned, with its lifecycle rule */
    lua_getfield(L, bp, "exists");
    int p_exists = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!p_exists) {
        int c = new_change(L, plan, "bucket", "create", "the private bucket does not exist");
        lua_pushfstring(L, "s3://%s", bucket);
        sbot_set_top(L, c, "resource");
        sbot_set_str(L, c, "bucket", bucket);
        lua_pop(L, 1);
    }
    lua_getfield(L, bp, "versioning");
    const char *ver = lua_tostring(L, -1);
    if (!ver || strcmp(ver, "Enabled") != 0) {
        int c = new_change(L, plan, "versioning", ver ? "update" : "create",
                           "the private bucket keeps every version of what sbot stores");
        lua_pushfstring(L, "s3://%s?versioning", bucket);
        sbot_set_top(L, c, "resource");
        sbot_set_str(L, c, "bucket", bucket);
        sbot_set_str(L, c, "before", ver);
        sbot_set_str(L, c, "after", "Enabled");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    for (int b = 0; b < 2; b++) {
        int bt = b ? bq : bp;
        const char *name = b ? pub : bucket;
        if (b) {
            lua_getfield(L, bq, "exists");
            int q_exists = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (!q_exists) {
                int c = new_change(L, plan, "bucket", "create", "the public bucket does not exist");
                lua_pushfstring(L, "s3://%s", pub);
                sbot_set_top(L, c, "resource");
                sbot_set_str(L, c, "bucket", pub);
                lua_pop(L, 1);
            }
            /* the policy: anonymous GetObject on the published prefixes only */
            lua_getfield(L, bq, "policy");
            int cur = lua_gettop(L);
            push_desired_policy(L, res, cur);
            int want = lua_gettop(L) - 1, removed = lua_gettop(L);
            if (!json_equal(L, cur, want)) {
                const char *reason = "anonymous readers may GET the published prefixes, and nothing else";
                if (lua_rawlen(L, removed) > 0) {
                    sbot_push_require(L, "table", "concat");
                    lua_pushvalue(L, removed);
                    lua_pushliteral(L, ", ");
                    lua_call(L, 2, 1);
                    reason = lua_pushfstring(L, "%s; removes anonymous access outside them (%s)",
                                             reason, lua_tostring(L, -1));
                }
                int c = new_change(L, plan, "policy", lua_isnil(L, cur) ? "create" : "update", reason);
                lua_pushfstring(L, "s3://%s?policy", pub);
                sbot_set_top(L, c, "resource");
                sbot_set_str(L, c, "bucket", pub);
                lua_pushvalue(L, cur);
                sbot_set_top(L, c, "before");
                lua_pushvalue(L, want);
                sbot_set_top(L, c, "after");
                lua_settop(L, removed);
            }
            lua_settop(L, cur - 1);
        }
        lua_getfield(L, bt, "lifecycle");
        int cur = lua_gettop(L);
        push_desired_rules(L, res, cur, !b, name);
        if (!json_equal(L, cur, -1)) {
            int c = new_change(L, plan, "lifecycle", lua_isnil(L, cur) ? "create" : "update",
                               b ? "stale multipart uploads are removed after abort_multipart_days"
                                 : "noncurrent versions expire after noncurrent_days; stale "
                                   "multipart uploads are removed after abort_multipart_days");
            lua_pushfstring(L, "s3://%s?lifecycle", name);
            sbot_set_top(L, c, "resource");
            sbot_set_str(L, c, "bucket", name);
            lua_pushvalue(L, cur);
            sbot_set_top(L, c, "before");
            lua_pushvalue(L, cur + 1);
            sbot_set_top(L, c, "after");
        }
        lua_settop(L, cur - 1);
    }

    /* uploads and publishes; the index entries they call for */
    lua_getfield(L, d, "artifacts");
    int arts = lua_gettop(L);
    lua_getfield(L, d, "index");
    lua_getfield(L, -1, "objects");
    int idx_objects = lua_gettop(L);
    lua_newtable(L);
    int entries_changed = lua_gettop(L);
    int nchanged = 0;
    lua_Integer na = luaL_len(L, arts);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, arts, i);
        int a = lua_gettop(L);
        const char *key = sbot_field_tostr(L, a, "key");
        const char *sha = sbot_field_tostr(L, a, "sha256"); /* NULL: a source not stored yet */
        const char *source = sbot_field_tostr(L, a, "source");
        lua_getfield(L, a, "private");
        int priv = lua_gettop(L);
        const char *have = sbot_field_tostr(L, priv, "sha256");
        /* a source is stored by someone else: never uploaded here */
        int upload = !source && (!have || strcmp(have, sha) != 0);
        int changed = upload;
        if (upload) {
            lua_getfield(L, priv, "exists");
            int exists = lua_toboolean(L, -1);
            lua_pop(L, 1);
            int c = new_change(L, plan, "upload", exists ? "update" : "create",
                               exists ? "the stored object's SHA-256 differs from the file's"
                                      : "not stored yet");
            lua_pushfstring(L, "s3://%s/%s", bucket, sbot_field_tostr(L, a, "object"));
            sbot_set_top(L, c, "resource");
            sbot_set_str(L, c, "key", key);
            if (exists) {
                lua_createtable(L, 0, 2);
                lua_getfield(L, priv, "sha256");
                sbot_set_top(L, -2, "sha256");
                lua_getfield(L, priv, "size");
                sbot_set_top(L, -2, "size");
                sbot_set_top(L, c, "before");
            }
            lua_createtable(L, 0, 3);
            sbot_set_str(L, -1, "sha256", sha);
            lua_getfield(L, a, "size");
            sbot_set_top(L, -2, "size");
            sbot_set_str(L, -1, "file", sbot_field_tostr(L, a, "file"));
            sbot_set_top(L, c, "after");
            lua_pop(L, 1);
        }
        int pubo = 0;
        lua_getfield(L, a, "publish");
        int publish = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (publish) {
            lua_getfield(L, a, "public");
            pubo = lua_gettop(L);
            const char *phave = sbot_field_tostr(L, pubo, "sha256");
            if (upload || !sha || !phave || strcmp(phave, sha) != 0) {
                lua_getfield(L, pubo, "exists");
                int exists = lua_toboolean(L, -1);
                lua_pop(L, 1);
                luaL_Buffer why;
                luaL_buffinit(L, &why);
                luaL_addstring(&why, "published: a server-side copy of the private object");
                if (source) {
                    luaL_addstring(&why, " ");
                    luaL_addstring(&why, sbot_field_tostr(L, a, "source_url"));
                    if (!sha)
                        luaL_addstring(&why, ", once it is stored (it is not yet: an earlier step of "
                                             "the run stores it)");
                }
                const char *warning = sbot_field_tostr(L, a, "warning");
                if (warning) {
                    luaL_addstring(&why, ". WARNING: ");
                    luaL_addstring(&why, warning);
                }
                luaL_pushresult(&why);
                int c = new_change(L, plan, "publish", exists ? "update" : "create", lua_tostring(L, -1));
                lua_pushfstring(L, "s3://%s/%s", pub, sbot_field_tostr(L, a, "object"));
                sbot_set_top(L, c, "resource");
                sbot_set_str(L, c, "key", key);
                if (exists) {
                    lua_createtable(L, 0, 2);
                    lua_getfield(L, pubo, "sha256");
                    sbot_set_top(L, -2, "sha256");
                    lua_getfield(L, pubo, "source_version_id");
                    sbot_set_top(L, -2, "source_version_id");
                    sbot_set_top(L, c, "before");
                }
                lua_createtable(L, 0, 3);
                sbot_set_str(L, -1, "sha256", sha);
                if (source)
                    sbot_set_str(L, -1, "source", sbot_field_tostr(L, a, "source_url"));
                lua_getfield(L, a, "public_url");
                sbot_set_top(L, -2, "url");
                sbot_set_top(L, c, "after");
                lua_pop(L, 2); /* the change, its reason */
                changed = 1; /* the index entry changes too */
            }
        }
        if (!changed && source && !sha)
            changed = 1; /* an unpublished source not stored yet: its entry comes with it */
        if (changed) {
            lua_pushstring(L, key);
            lua_rawseti(L, entries_changed, ++nchanged);
        } else {
            push_entry(L, res, a, priv, pubo);
            lua_getfield(L, idx_objects, key);
            if (!entry_matches(L, -1, -2)) {
                lua_pushstring(L, key);
                lua_rawseti(L, entries_changed, ++nchanged);
            }
            lua_pop(L, 2);
        }
        lua_settop(L, a - 1);
    }
    /* published copies of earlier builds: deleted after the new copies are
     * made (a failed publish stops the run before any of them goes); the
     * index then records each as unpublished */
    lua_newtable(L);
    int unpub = lua_gettop(L);
    int nunpub = 0;
    lua_getfield(L, d, "superseded");
    int sup = lua_gettop(L);
    lua_Integer nsup = lua_istable(L, sup) ? luaL_len(L, sup) : 0;
    for (lua_Integer i = 1; i <= nsup; i++) {
        lua_rawgeti(L, sup, i);
        int r = lua_gettop(L);
        const char *action = sbot_field_tostr(L, r, "action");
        if (strcmp(action, "unpublish") == 0) {
            lua_pushfstring(L, "superseded by %s: the copy sbot published for an earlier build, still "
                               "readable by anyone given its URL; %s",
                            sbot_field_tostr(L, r, "by"), sbot_field_tostr(L, r, "why"));
            int c = new_change(L, plan, "unpublish", "delete", lua_tostring(L, -1));
            lua_pushfstring(L, "s3://%s/%s", pub, sbot_field_tostr(L, r, "public_key"));
            sbot_set_top(L, c, "resource");
            sbot_set_str(L, c, "key", sbot_field_tostr(L, r, "key"));
            sbot_set_str(L, c, "bucket", pub);
            sbot_set_str(L, c, "public_key", sbot_field_tostr(L, r, "public_key"));
            lua_createtable(L, 0, 6);
            lua_getfield(L, r, "sha256");
            sbot_set_top(L, -2, "sha256");
            lua_getfield(L, r, "url");
            sbot_set_top(L, -2, "url");
            lua_getfield(L, r, "updated");
            sbot_set_top(L, -2, "published");
            lua_getfield(L, r, "source");
            sbot_set_top(L, -2, "source");
            lua_getfield(L, r, "content_type");
            sbot_set_top(L, -2, "content_type");
            lua_getfield(L, r, "current");
            sbot_set_top(L, -2, "current");
            if (lua_getfield(L, r, "delete") == LUA_TTABLE) {
                lua_newtable(L);
                lua_Integer nd = luaL_len(L, -2);
                for (lua_Integer k = 1; k <= nd; k++) {
                    lua_rawgeti(L, -2, k);
                    lua_getfield(L, -1, "version_id");
                    lua_rawseti(L, -3, k);
                    lua_pop(L, 1);
                }
                json_array(L);
                sbot_set_top(L, -3, "versions");
            }
            lua_pop(L, 1);
            sbot_set_top(L, c, "before");
            lua_pop(L, 2); /* the change, its reason */
        }
        if (strcmp(action, "unpublish") == 0 || strcmp(action, "gone") == 0) {
            lua_getfield(L, r, "key");
            lua_rawseti(L, unpub, ++nunpub);
        }
        lua_settop(L, r - 1);
    }
    lua_pop(L, 1); /* superseded */

    /* index entries whose object is gone or changed outside sbot */
    lua_newtable(L);
    int stale = lua_gettop(L);
    int nstale = 0;
    lua_getfield(L, res, "listing");
    int listing = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx_objects)) {
        int configured = 0;
        for (lua_Integer i = 1; i <= na; i++) {
            lua_rawgeti(L, arts, i);
            lua_getfield(L, -1, "key");
            configured |= lua_compare(L, -1, -4, LUA_OPEQ);
            lua_pop(L, 2);
        }
        if (!configured && lua_istable(L, -1)) {
            lua_getfield(L, -1, "object");
            lua_gettable(L, listing);
            int gone = !lua_istable(L, -1);
            int changed = 0;
            if (!gone) {
                lua_getfield(L, -1, "etag");
                lua_getfield(L, -3, "etag");
                changed = !lua_compare(L, -1, -2, LUA_OPEQ);
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
            if (gone || changed) {
                lua_pushvalue(L, -2);
                lua_rawseti(L, stale, ++nstale);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (nchanged || nstale || nunpub) {
        lua_getfield(L, d, "index");
        lua_getfield(L, -1, "exists");
        int exists = lua_toboolean(L, -1);
        lua_pop(L, 2);
        int c = new_change(L, plan, "index", exists ? "update" : "create",
                           nstale ? "the index lists objects that are gone or were changed outside sbot"
                           : nchanged ? "the index lists every stored and published object"
                                      : "the index records the superseded copies as unpublished");
        lua_pushfstring(L, "s3://%s/%s", bucket, sbot_field_tostr(L, res, "index_key"));
        sbot_set_top(L, c, "resource");
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, entries_changed);
        json_array(L);
        sbot_set_top(L, -2, "set");
        lua_pushvalue(L, stale);
        json_array(L);
        sbot_set_top(L, -2, "drop");
        lua_pushvalue(L, unpub);
        json_array(L);
        sbot_set_top(L, -2, "unpublish");
        sbot_set_top(L, c, "after");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, plan);
    return 1;
}

/* ---- apply and undo ---------------------------------------------------------- */

/* The artifact (from the resource) and its discovery entry, by key: pushes
 * the resource's artifact table and the discovery's. */
static void push_artifact(lua_State *L, int self, int res, const char *key)
{
    lua_getfield(L, res, "artifacts");
    lua_Integer n = luaL_len(L, -1);
    int found = 0;
    for (lua_Integer i = 1; i <= n && !found; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "key");
        found = strcmp(lua_tostring(L, -1), key) == 0;
        lua_pop(L, 1);
        if (found) {
            lua_remove(L, -2);
            lua_getfield(L, self, "discovery");
            lua_getfield(L, -1, "artifacts");
            lua_rawgeti(L, -1, i);
            lua_remove(L, -2);
            lua_remove(L, -2);
            return;
        }
        lua_pop(L, 1);
    }
    luaL_error(L, "no artifact %s in the configuration", key);
}

/* on_upload(upload_id): the upload's lease marker, so that a later
 * housekeep knows whose it is (upvalues: res, key) */
static int upload_started(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int res = lua_upvalueindex(1);
    sbot_push_require(L, "sbot.lease", "acquire");
    lua_getfield(L, res, "client");
    lua_createtable(L, 0, 6);
    sbot_set_str(L, -1, "bucket", sbot_field_tostr(L, res, "bucket"));
    lua_pushfstring(L, "%s%s.lease", sbot_field_tostr(L, res, "marker_prefix"), id);
    sbot_set_top(L, -2, "key");
    lua_pushfstring(L, "multipart upload %s", id);
    sbot_set_top(L, -2, "name");
    lua_getfield(L, res, "upload_lease");
    sbot_set_top(L, -2, "ttl");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, lua_upvalueindex(2));
    sbot_set_top(L, -2, "key");
    sbot_set_str(L, -1, "upload_id", id);
    sbot_set_top(L, -2, "holder");
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3))
        return luaL_error(L, "marking multipart upload %s as sbot's: %s", id, luaL_optstring(L, -2, "?"));
    lua_getfield(L, res, "upload_leases");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, res, "upload_leases");
    }
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, id);
    return 0;
}

/* release every upload marker lease held (after an upload, and in close) */
static void release_markers(lua_State *L, int res)
{
    if (lua_getfield(L, res, "upload_leases") == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_getfield(L, -1, "release");
            lua_pushvalue(L, -2);
            lua_pcall(L, 1, 0, 0) == LUA_OK ? (void)0 : lua_pop(L, 1);
            lua_pop(L, 1);
        }
        lua_pushnil(L);
        lua_setfield(L, res, "upload_leases");
    }
    lua_pop(L, 1);
}

static int protected_put(lua_State *L)
{
    /* client, args -> client:put_object(args) with 3 results */
    call_method(L, 1, "put_object", 2);
    return 3;
}

static void apply_upload(lua_State *L, int self, int change, int res)
{
    const char *key = sbot_field_tostr(L, change, "key");
    push_artifact(L, self, res, key);
    int art = lua_gettop(L) - 1;
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    int a = args_bk(L, sbot_field_tostr(L, res, "bucket"), sbot_field_tostr(L, art, "object"));
    sbot_set_str(L, a, "file", sbot_field_tostr(L, art, "file"));
    /* an upload takes a while: a wait of sbot.progress (one for all its parts) */
    lua_pushfstring(L, "upload %s", sbot_field_tostr(L, art, "object"));
    sbot_set_top(L, a, "progress");
    sbot_set_bool(L, a, "sha256_metadata", 1);
    lua_getfield(L, art, "content_type");
    sbot_set_top(L, a, "content_type");
    lua_getfield(L, art, "metadata");
    sbot_set_top(L, a, "metadata");
    lua_getfield(L, res, "hashes");
    lua_getfield(L, -1, key);
    sbot_set_top(L, a, "hashes");
    lua_pop(L, 1);
    lua_pushvalue(L, res);
    lua_pushstring(L, key);
    lua_pushcclosure(L, upload_started, 2);
    sbot_set_top(L, a, "on_upload");
    /* the upload is protected so its markers are released whatever happens */
    lua_pushcfunction(L, protected_put);
    lua_pushvalue(L, client);
    lua_pushvalue(L, a);
    int st = lua_pcall(L, 2, 3, 0);
    release_markers(L, res);
    if (st != LUA_OK)
        lua_error(L);
    if (!lua_toboolean(L, -3))
        luaL_error(L, "uploading %s: %s", key, luaL_optstring(L, -2, "failed"));
    int r = lua_gettop(L) - 2;
    lua_getfield(L, res, "applied");
    lua_pushvalue(L, r);
    lua_setfield(L, -2, key);
    lua_pop(L, 1);
    lua_pushvalue(L, r);
}

static void apply_publish(lua_State *L, int self, int change, int res)
{
    const char *key = sbot_field_tostr(L, change, "key");
    push_artifact(L, self, res, key);
    int art = lua_gettop(L) - 1, disc = lua_gettop(L);
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    const char *pobject = sbot_field_tostr(L, art, "private_object");
    const char *sha = sbot_field_tostr(L, disc, "sha256");
    if (strstr(key, "{sha256}"))
        luaL_error(L, "publishing %s: the key names {sha256}, which was not known when discover ran (the "
                      "source s3://%s/%s was not stored yet); run again", key, sbot_field_tostr(L, res,
                                                                                                "bucket"), pobject);
    /* the version to copy: the one uploaded now, else the stored one; a
     * source is read again now (an earlier step may have stored it since
     * discover), and what is copied is what the index records */
    lua_getfield(L, res, "applied");
    int applied = lua_gettop(L);
    lua_getfield(L, applied, key);
    if (lua_isnil(L, -1) && sbot_field_tostr(L, art, "source")) {
        lua_pop(L, 1);
        discover_object(L, client, sbot_field_tostr(L, res, "bucket"), pobject);
        lua_getfield(L, -1, "exists");
        if (!lua_toboolean(L, -1))
            luaL_error(L, "publishing %s: the source s3://%s/%s does not exist (the step that stores it "
                          "did not run, or failed)", key, sbot_field_tostr(L, res, "bucket"), pobject);
        lua_pop(L, 1);
        sha = sbot_field_tostr(L, lua_gettop(L), "sha256");
        if (!sha)
            luaL_error(L, "publishing %s: the source s3://%s/%s has no sbot-sha256 metadata (it was not "
                          "stored by sbot)", key, sbot_field_tostr(L, res, "bucket"), pobject);
        lua_pushvalue(L, -1);
        lua_setfield(L, applied, key);
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, disc, "private");
    }
    int src = lua_gettop(L);
    const char *warning = sbot_field_tostr(L, art, "warning");
    if (warning)
        sbot_log(L, SBOT_WARN, "publishing %s: %s", key, warning);
    int a = args_bk(L, sbot_field_tostr(L, res, "public_bucket"), sbot_field_tostr(L, art, "object"));
    sbot_set_str(L, a, "source_bucket", sbot_field_tostr(L, res, "bucket"));
    sbot_set_str(L, a, "source_key", pobject);
    const char *vid = sbot_field_tostr(L, src, "version_id");
    if (vid && strcmp(vid, "null") != 0)
        sbot_set_str(L, a, "source_version_id", vid);
    sbot_set_str(L, a, "metadata_directive", "REPLACE");
    lua_getfield(L, art, "content_type");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, disc, "private");
        lua_getfield(L, -1, "content_type");
        lua_remove(L, -2);
    }
    sbot_set_top(L, a, "content_type");
    lua_newtable(L);
    lua_getfield(L, art, "metadata");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
    }
    lua_pop(L, 1);
    sbot_set_str(L, -1, "sbot-sha256", sha);
    if (vid)
        sbot_set_str(L, -1, "sbot-source-version-id", vid);
    sbot_set_top(L, a, "metadata");
    if (!call_method(L, client, "copy_object", a))
        luaL_error(L, "publishing %s: %s", key, luaL_optstring(L, -2, "failed"));
    lua_createtable(L, 0, 3);
    lua_getfield(L, -4, "etag");
    sbot_set_top(L, -2, "etag");
    sbot_set_str(L, -1, "source_version_id", vid);
    sbot_set_str(L, -1, "bucket", sbot_field_tostr(L, res, "public_bucket"));
}

/* The superseded record (res.superseded) of an index key: pushed (raises
 * when discover did not find it). */
static int push_superseded(lua_State *L, int res, const char *key)
{
    lua_getfield(L, res, "superseded");
    lua_Integer n = lua_istable(L, -1) ? luaL_len(L, -1) : 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (strcmp(sbot_field_tostr(L, -1, "key"), key) == 0) {
            lua_remove(L, -2);
            return lua_gettop(L);
        }
        lua_pop(L, 1);
    }
    return luaL_error(L, "no superseded copy %s in the discovery", key);
}

/* unpublish: delete the superseded public copy — in a versioned bucket each
 * of sbot's versions by id (and the delete markers once nothing else is
 * left), else the key. Pushes {bucket, key, deleted = {{key, version_id,
 * delete_marker}}}. */
static void apply_unpublish(lua_State *L, int change, int res)
{
    const char *key = sbot_field_tostr(L, change, "key");
    int r = push_superseded(L, res, key);
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    const char *pub = sbot_field_tostr(L, res, "public_bucket");
    const char *pk = sbot_field_tostr(L, r, "public_key");
    lua_createtable(L, 0, 3);
    int out = lua_gettop(L);
    sbot_set_str(L, out, "bucket", pub);
    sbot_set_str(L, out, "key", pk);
    if (lua_getfield(L, r, "delete") == LUA_TTABLE) {
        int a = args_bk(L, pub, NULL);
        lua_pushvalue(L, -2);
        sbot_set_top(L, a, "objects");
        if (!call_method(L, client, "delete_objects", a))
            luaL_error(L, "unpublishing %s (s3://%s/%s): %s", key, pub, pk, luaL_optstring(L, -2, "failed"));
        int dr = lua_gettop(L) - 2;
        lua_getfield(L, dr, "errors");
        if (luaL_len(L, -1) > 0) {
            lua_rawgeti(L, -1, 1);
            int e = lua_gettop(L);
            const char *ev = sbot_field_tostr(L, e, "version_id"), *em = sbot_field_tostr(L, e, "message");
            const char *ec = sbot_field_tostr(L, e, "code");
            luaL_error(L, "unpublishing %s: deleting s3://%s/%s version %s: %s (%s)", key, pub, pk,
                       ev ? ev : "(none)", em ? em : "refused", ec ? ec : "?");
        }
        lua_pop(L, 1);
        lua_getfield(L, dr, "deleted");
        sbot_set_top(L, out, "deleted");
    } else {
        int a = args_bk(L, pub, pk);
        if (!call_method(L, client, "delete_object", a))
            luaL_error(L, "unpublishing %s (s3://%s/%s): %s", key, pub, pk, luaL_optstring(L, -2, "failed"));
        lua_createtable(L, 1, 0);
        lua_createtable(L, 0, 1);
        sbot_set_str(L, -1, "key", pk);
        lua_rawseti(L, -2, 1);
        sbot_set_top(L, out, "deleted");
    }
    lua_getfield(L, out, "deleted");
    json_array(L);
    lua_pop(L, 1);
    sbot_log(L, SBOT_INFO, "unpublished %s: s3://%s/%s (superseded by %s)", key, pub, pk, sbot_field_tostr(L, r, "by"));
    sbot_set_bool(L, r, "unpublished", 1); /* for housekeep's checks (the resource's copy) */
    lua_pushvalue(L, out);
}

/* the index update: entries of every configured artifact from what is
 * stored now, stale entries dropped (conditional writes: see update_index) */
static int index_update(lua_State *L)
{
    /* upvalues: entries (key -> entry), drop (list), unpublish (list), the
     * time; arg: the index doc */
    lua_settop(L, 1);
    sbot_push_require(L, "sbot.store", "normalise_index");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    int doc = lua_gettop(L);
    lua_getfield(L, doc, "objects");
    int objs = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, lua_upvalueindex(1))) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, objs);
    }
    /* the superseded copies deleted by this run: the entry stays (the
     * private object is kept) without its public copy, which it records as
     * unpublished (upvalue 3: their keys, 4: the time) */
    lua_Integer nu = luaL_len(L, lua_upvalueindex(3));
    for (lua_Integer i = 1; i <= nu; i++) {
        lua_rawgeti(L, lua_upvalueindex(3), i);
        if (lua_gettable(L, objs) == LUA_TTABLE) {
            int e = lua_gettop(L);
            if (lua_getfield(L, e, "public") == LUA_TTABLE) {
                lua_pushvalue(L, lua_upvalueindex(4));
                lua_setfield(L, -2, "at");
                lua_setfield(L, e, "unpublished");
                lua_pushnil(L);
                lua_setfield(L, e, "public");
                lua_pushvalue(L, lua_upvalueindex(4));
                lua_setfield(L, e, "updated");
            } else {
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_Integer n = luaL_len(L, lua_upvalueindex(2));
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, lua_upvalueindex(2), i);
        lua_pushnil(L);
        lua_settable(L, objs);
    }
    lua_pushvalue(L, doc);
    return 1;
}

static const char *utc_now(lua_State *L)
{
    sbot_push_require(L, "sbot.sys", "utc_iso");
    lua_call(L, 0, 1);
    return lua_tostring(L, -1);
}

static void apply_index(lua_State *L, int self, int change, int res)
{
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_getfield(L, d, "artifacts");
    int arts = lua_gettop(L);
    lua_getfield(L, d, "index");
    lua_getfield(L, -1, "objects");
    int old = lua_gettop(L);
    lua_getfield(L, res, "applied");
    int applied = lua_gettop(L);
    lua_getfield(L, res, "artifacts");
    int cfga = lua_gettop(L);
    lua_newtable(L);
    int entries = lua_gettop(L);
    const char *now = utc_now(L);
    lua_Integer na = luaL_len(L, arts);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, arts, i);
        int a = lua_gettop(L);
        lua_rawgeti(L, cfga, i);
        int ca = lua_gettop(L);
        const char *key = sbot_field_tostr(L, a, "key");
        /* the private object now: as uploaded by this run, else as discovered */
        lua_getfield(L, applied, key);
        int priv;
        if (lua_istable(L, -1)) {
            lua_createtable(L, 0, 4);
            lua_getfield(L, -2, "size");
            sbot_set_top(L, -2, "size");
            lua_getfield(L, -2, "sha256");
            sbot_set_top(L, -2, "sha256");
            lua_getfield(L, -2, "etag");
            sbot_set_top(L, -2, "etag");
            lua_getfield(L, -2, "version_id");
            sbot_set_top(L, -2, "version_id");
            priv = lua_gettop(L);
        } else {
            lua_getfield(L, a, "private");
            priv = lua_gettop(L);
        }
        lua_getfield(L, a, "publish");
        int publish = lua_toboolean(L, -1);
        lua_pop(L, 1);
        push_entry(L, res, ca, priv, publish ? priv : 0);
        int e = lua_gettop(L);
        lua_getfield(L, old, key);
        int oe = lua_gettop(L);
        if (entry_matches(L, oe, e) && lua_getfield(L, oe, "updated") == LUA_TSTRING)
            sbot_set_top(L, e, "updated"); /* unchanged: keeps its date */
        else
            sbot_set_str(L, e, "updated", now);
        lua_settop(L, e);
        lua_pushvalue(L, e);
        lua_setfield(L, entries, key);
        lua_settop(L, a - 1);
    }
    lua_getfield(L, change, "after");
    lua_getfield(L, -1, "drop");
    int drop = lua_gettop(L);
    lua_getfield(L, -2, "unpublish");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int unpub = lua_gettop(L);
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    int a = args_bk(L, sbot_field_tostr(L, res, "bucket"), sbot_field_tostr(L, res, "index_key"));
    lua_pushvalue(L, entries);
    lua_pushvalue(L, drop);
    lua_pushvalue(L, unpub);
    lua_pushstring(L, now);
    lua_pushcclosure(L, index_update, 4);
    sbot_set_top(L, a, "update");
    if (!call_method(L, client, "update_json", a))
        luaL_error(L, "updating the index: %s", luaL_optstring(L, -2, "failed"));
    lua_createtable(L, 0, 4);
    lua_getfield(L, -4, "etag");
    sbot_set_top(L, -2, "etag");
    lua_getfield(L, -4, "version_id");
    sbot_set_top(L, -2, "version_id");
    lua_getfield(L, -4, "attempts");
    sbot_set_top(L, -2, "attempts");
    sbot_set_int(L, -1, "entries", (lua_Integer)na);
    sbot_set_int(L, -1, "dropped", (lua_Integer)luaL_len(L, drop));
    sbot_set_int(L, -1, "unpublished", (lua_Integer)luaL_len(L, unpub));
}

/* apply(self, change, res) */
static int s3_apply(lua_State *L)
{
    lua_settop(L, 3);
    int self = 1, change = 2, res = 3;
    const char *kind = sbot_field_tostr(L, change, "kind");
    const char *bucket = sbot_field_tostr(L, change, "bucket");
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    if (strcmp(kind, "bucket") == 0) {
        int a = args_bk(L, bucket, NULL);
        if (!call_method(L, client, "create_bucket", a))
            raise_call(L, bucket);
        lua_createtable(L, 0, 1);
        sbot_set_bool(L, -1, "created", 1);
        return 1;
    }
    if (strcmp(kind, "versioning") == 0) {
        int a = args_bk(L, bucket, NULL);
        sbot_set_str(L, a, "status", "Enabled");
        if (!call_method(L, client, "put_bucket_versioning", a))
            raise_call(L, bucket);
        lua_createtable(L, 0, 1);
        sbot_set_str(L, -1, "versioning", "Enabled");
        return 1;
    }
    if (strcmp(kind, "policy") == 0) {
        int a = args_bk(L, bucket, NULL);
        lua_getfield(L, change, "after");
        sbot_set_top(L, a, "policy");
        if (!call_method(L, client, "put_bucket_policy", a))
            raise_call(L, bucket);
        lua_createtable(L, 0, 1);
        sbot_set_bool(L, -1, "policy", 1);
        return 1;
    }
    if (strcmp(kind, "lifecycle") == 0) {
        int a = args_bk(L, bucket, NULL);
        lua_getfield(L, change, "after");
        sbot_set_top(L, a, "rules");
        if (!call_method(L, client, "put_bucket_lifecycle", a))
            raise_call(L, bucket);
        lua_createtable(L, 0, 1);
        lua_getfield(L, change, "after");
        sbot_set_int(L, -2, "rules", (lua_Integer)lua_rawlen(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    if (strcmp(kind, "upload") == 0) {
        apply_upload(L, self, change, res);
        return 1;
    }
    if (strcmp(kind, "publish") == 0) {
        apply_publish(L, self, change, res);
        return 1;
    }
    if (strcmp(kind, "unpublish") == 0) {
        apply_unpublish(L, change, res);
        return 1;
    }
    if (strcmp(kind, "index") == 0) {
        apply_index(L, self, change, res);
        return 1;
    }
    return luaL_error(L, "unknown change kind %s", kind);
}

/* undo(self, change, res): put back what the change replaced, where S3 allows */
static int s3_undo(lua_State *L)
{
    lua_settop(L, 3);
    int self = 1, change = 2, res = 3;
    const char *kind = sbot_field_tostr(L, change, "kind");
    const char *bucket = sbot_field_tostr(L, change, "bucket");
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    if (strcmp(kind, "bucket") == 0) {
        /* the versions of sbot's own upload markers (released, so only old
         * versions and delete markers) would keep the bucket from going */
        push_versions(L, client, bucket, sbot_field_tostr(L, res, "marker_prefix"),
                      lua_pushfstring(L, "%s: listing its upload markers", bucket));
        if (lua_rawlen(L, -1) > 0) { /* delete_objects takes their {key, version_id} */
            int d = args_bk(L, bucket, NULL);
            lua_pushvalue(L, -2);
            sbot_set_top(L, d, "objects");
            sbot_set_bool(L, d, "quiet", 1);
            if (!call_method(L, client, "delete_objects", d))
                raise_call(L, bucket);
            lua_pop(L, 4);
        }
        int a = args_bk(L, bucket, NULL);
        if (!call_method(L, client, "delete_bucket", a))
            raise_call(L, bucket);
        return 0;
    }
    if (strcmp(kind, "versioning") == 0) {
        lua_getfield(L, change, "before");
        if (lua_isnil(L, -1))
            return luaL_error(L, "versioning of %s cannot be turned off again once enabled (S3 "
                                 "only allows Suspended); left Enabled", bucket);
        int a = args_bk(L, bucket, NULL);
        sbot_set_str(L, a, "status", lua_tostring(L, -2));
        if (!call_method(L, client, "put_bucket_versioning", a))
            raise_call(L, bucket);
        return 0;
    }
    if (strcmp(kind, "policy") == 0 || strcmp(kind, "lifecycle") == 0) {
        int policy = strcmp(kind, "policy") == 0;
        lua_getfield(L, change, "before");
        int a = args_bk(L, bucket, NULL);
        int ok;
        if (lua_isnil(L, -2)) {
            ok = call_method(L, client, policy ? "delete_bucket_policy" : "delete_bucket_lifecycle", a);
        } else {
            lua_pushvalue(L, -2);
            sbot_set_top(L, a, policy ? "policy" : "rules");
            ok = call_method(L, client, policy ? "put_bucket_policy" : "put_bucket_lifecycle", a);
        }
        if (!ok)
            raise_call(L, bucket);
        return 0;
    }
    if (strcmp(kind, "upload") == 0) {
        /* the version this run made goes; the previous one is current again */
        const char *key = sbot_field_tostr(L, change, "key");
        lua_getfield(L, res, "applied");
        lua_getfield(L, -1, key);
        const char *vid = lua_istable(L, -1) ? sbot_field_tostr(L, lua_gettop(L), "version_id") : NULL;
        if (!vid || strcmp(vid, "null") == 0)
            return luaL_error(L, "%s: no version id to remove (is versioning on?)", key);
        push_artifact(L, self, res, key);
        int a = args_bk(L, sbot_field_tostr(L, res, "bucket"), sbot_field_tostr(L, -2, "object"));
        sbot_set_str(L, a, "version_id", vid);
        if (!call_method(L, client, "delete_object", a))
            raise_call(L, key);
        return 0;
    }
    if (strcmp(kind, "publish") == 0) {
        const char *key = sbot_field_tostr(L, change, "key");
        push_artifact(L, self, res, key);
        int art = lua_gettop(L) - 1;
        lua_getfield(L, change, "before");
        const char *prev = sbot_field_tostr(L, lua_gettop(L), "source_version_id");
        int a = args_bk(L, sbot_field_tostr(L, res, "public_bucket"), sbot_field_tostr(L, art, "object"));
        int ok;
        if (prev) { /* copy the version it was published from again */
            sbot_set_str(L, a, "source_bucket", sbot_field_tostr(L, res, "bucket"));
            sbot_set_str(L, a, "source_key", sbot_field_tostr(L, art, "private_object"));
            sbot_set_str(L, a, "source_version_id", prev);
            ok = call_method(L, client, "copy_object", a);
        } else {
            ok = call_method(L, client, "delete_object", a);
        }
        if (!ok)
            raise_call(L, key);
        return 0;
    }
    if (strcmp(kind, "unpublish") == 0) {
        /* published again: a copy of the private version it was copied from,
         * when the key showed sbot's copy before (a copy becomes the current
         * version: over someone else's current one, or where only noncurrent
         * versions or delete markers were deleted, it would publish what
         * readers did not get before the change) */
        lua_getfield(L, change, "before");
        int before = lua_gettop(L);
        lua_getfield(L, before, "current");
        int current = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!current) {
            sbot_log(L, SBOT_INFO, "undo %s: s3://%s/%s did not show sbot's copy before the change: nothing to "
                                   "publish again", sbot_field_tostr(L, change, "key"), bucket,
                     sbot_field_tostr(L, change, "public_key"));
            return 0;
        }
        lua_getfield(L, before, "source");
        int src = lua_gettop(L);
        const char *sbucket = lua_istable(L, src) ? sbot_field_tostr(L, src, "bucket") : NULL;
        const char *sobject = lua_istable(L, src) ? sbot_field_tostr(L, src, "object") : NULL;
        if (!sbucket || !sobject)
            return luaL_error(L, "%s: the index entry names no private object to publish it from again",
                              sbot_field_tostr(L, change, "key"));
        int a = args_bk(L, bucket, sbot_field_tostr(L, change, "public_key"));
        sbot_set_str(L, a, "source_bucket", sbucket);
        sbot_set_str(L, a, "source_key", sobject);
        const char *vid = sbot_field_tostr(L, src, "version_id");
        if (vid && strcmp(vid, "null") != 0)
            sbot_set_str(L, a, "source_version_id", vid);
        sbot_set_str(L, a, "metadata_directive", "REPLACE");
        lua_getfield(L, before, "content_type");
        sbot_set_top(L, a, "content_type");
        lua_newtable(L);
        lua_getfield(L, before, "sha256");
        sbot_set_top(L, -2, "sbot-sha256");
        if (vid)
            sbot_set_str(L, -1, "sbot-source-version-id", vid);
        sbot_set_top(L, a, "metadata");
        if (!call_method(L, client, "copy_object", a))
            return luaL_error(L, "publishing %s again from s3://%s/%s: %s", sbot_field_tostr(L, change, "key"), sbucket,
                              sobject, luaL_optstring(L, -2, "failed"));
        return 0;
    }
    if (strcmp(kind, "index") == 0)
        return luaL_error(L, "the index is not rolled back: it lists what is stored, and the "
                             "undone uploads are listed again by the next run");
    return luaL_error(L, "unknown change kind %s", kind);
}

/* ---- housekeep ---------------------------------------------------------------- */

/* An unsigned GET of url (first byte only) through sbot.http's C API, as an
 * anonymous reader would: pushes the status (integer) or raises. */
static lua_Integer anonymous_get(lua_State *L, int res, const char *url)
{
    lua_createtable(L, 0, 6);
    int req = lua_gettop(L);
    sbot_set_str(L, req, "method", "GET");
    sbot_set_str(L, req, "url", url);
    lua_createtable(L, 0, 1);
    sbot_set_str(L, -1, "Range", "bytes=0-0");
    sbot_set_top(L, req, "headers");
    lua_getfield(L, res, "reader_tls");
    sbot_set_top(L, req, "tls");
    sbot_set_int(L, req, "timeout", 60);
    sbot_set_int(L, req, "max_body", 1 << 20);
    sbot_push_require(L, "sbot.http", NULL); /* the module must be loaded for its C API */
    lua_pop(L, 1);
    int n = sbot_http_request(L, req);
    if (n != 1 || lua_isnil(L, -n))
        luaL_error(L, "anonymous GET %s: %s", url, n >= 2 ? luaL_optstring(L, -n + 1, "?") : "?");
    lua_getfield(L, -1, "status");
    lua_Integer st = lua_tointeger(L, -1);
    lua_pop(L, 3);
    return st;
}

/* An anonymous reader's GET of s3://bucket/key at the readers' address,
 * recorded as {url, expect, status} in the list at anon: pushes the URL,
 * returns the status. */
static lua_Integer anonymous_check(lua_State *L, int res, int anon, const char *bucket, const char *key,
                                   const char *expect)
{
    const char *url = push_reader_url(L, res, bucket, key);
    lua_Integer st = anonymous_get(L, res, url);
    lua_createtable(L, 0, 3);
    sbot_set_str(L, -1, "url", url);
    sbot_set_str(L, -1, "expect", expect);
    sbot_set_int(L, -1, "status", st);
    sbot_append(L, anon);
    return st;
}

/* housekeep(self, res) */
static int s3_housekeep(lua_State *L)
{
    lua_settop(L, 2);
    int res = 2;
    lua_getfield(L, res, "client");
    int client = lua_gettop(L);
    const char *bucket = sbot_field_tostr(L, res, "bucket");
    const char *pub = sbot_field_tostr(L, res, "public_bucket");
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_newtable(L);
    int problems = lua_gettop(L);
    int np = 0;
#define PROBLEM(...)                                    \
    do {                                                \
        lua_pushfstring(L, __VA_ARGS__);                \
        lua_rawseti(L, problems, ++np);                 \
    } while (0)

    /* every artifact read back by HEAD: size and SHA-256 metadata, in both buckets */
    lua_getfield(L, res, "artifacts");
    int arts = lua_gettop(L);
    lua_getfield(L, res, "hashes");
    int hashes = lua_gettop(L);
    lua_newtable(L);
    int checked = lua_gettop(L);
    lua_newtable(L);
    int anon = lua_gettop(L);
    int nc = 0;
    lua_Integer na = luaL_len(L, arts);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, arts, i);
        int a = lua_gettop(L);
        const char *key = sbot_field_tostr(L, a, "key");
        const char *pobject = sbot_field_tostr(L, a, "private_object");
        int is_source = sbot_field_tostr(L, a, "source") != NULL;
        lua_getfield(L, hashes, key);
        if (is_source) { /* what the copy must match: the source as stored now */
            lua_pop(L, 1);
            discover_object(L, client, bucket, pobject);
            lua_getfield(L, -1, "exists");
            if (!lua_toboolean(L, -1))
                PROBLEM("the source s3://%s/%s is missing", bucket, pobject);
            lua_pop(L, 1);
        } else if (lua_isnil(L, -1)) { /* housekeep without discover: hash the file now */
            lua_pop(L, 1);
            lua_createtable(L, 0, 1);
            sbot_set_str(L, -1, "file", sbot_field_tostr(L, a, "file"));
            if (!call_method(L, client, "hash_file", lua_gettop(L)))
                return luaL_error(L, "artifact %s: %s", key, luaL_optstring(L, -2, "cannot read the file"));
            lua_pop(L, 2);
            lua_replace(L, -2);
        }
        int h = lua_gettop(L);
        /* housekeep without discover: a {sha256} key is resolved here */
        if (sbot_field_tostr(L, h, "sha256")) {
            key = resolve_key(L, res, a, sbot_field_tostr(L, h, "sha256"));
            pobject = sbot_field_tostr(L, a, "private_object");
        }
        const char *object = sbot_field_tostr(L, a, "object");
        lua_getfield(L, a, "publish");
        int publish = lua_toboolean(L, -1);
        lua_pop(L, 1);
        for (int b = 0; b < (publish ? 2 : 1); b++) {
            const char *bk = b ? pub : bucket;
            discover_object(L, client, bk, b ? object : pobject);
            int o = lua_gettop(L);
            lua_getfield(L, o, "exists");
            int exists = lua_toboolean(L, -1);
            lua_getfield(L, o, "size");
            lua_Integer osize = lua_tointeger(L, -1);
            lua_getfield(L, h, "size");
            lua_Integer hsize = lua_tointeger(L, -1);
            lua_pop(L, 3);
            const char *osha = sbot_field_tostr(L, o, "sha256");
            const char *hsha = sbot_field_tostr(L, h, "sha256");
            const char *ob = b ? object : pobject;
            const char *what = is_source ? "the source" : "the file";
            if (!exists)
                PROBLEM("s3://%s/%s is missing", bk, ob);
            else if (osize != hsize)
                PROBLEM("s3://%s/%s is %I bytes, %s %I", bk, ob, osize, what, hsize);
            else if (!osha || !hsha || strcmp(osha, hsha) != 0)
                PROBLEM("s3://%s/%s has SHA-256 %s in its metadata, %s %s", bk, ob,
                        osha ? osha : "(none)", what, hsha ? hsha : "?");
            else {
                lua_pushfstring(L, "s3://%s/%s", bk, ob);
                lua_rawseti(L, checked, ++nc);
            }
            lua_settop(L, o - 1);
        }
        /* anonymous readers, at their address: the published copy readable,
         * the private one not */
        lua_Integer st = anonymous_check(L, res, anon, bucket, pobject, "refused");
        if (st != 403)
            PROBLEM("an anonymous GET of the private object %s answered %d, not 403", lua_tostring(L, -1),
                    (int)st);
        if (publish) {
            st = anonymous_check(L, res, anon, pub, object, "allowed");
            if (st != 200 && st != 206 && st != 416)
                PROBLEM("an anonymous GET of the published object %s answered %d", lua_tostring(L, -1), (int)st);
        }
        lua_settop(L, a - 1);
    }
    /* the superseded copies this run deleted: gone for anonymous readers
     * (403: the policy lets nobody list, so a missing key is refused too),
     * and in a versioned bucket no version of sbot's copy left */
    lua_newtable(L);
    int unpublished = lua_gettop(L), nunp = 0;
    lua_getfield(L, res, "superseded");
    int sup = lua_gettop(L);
    lua_Integer nsup = lua_istable(L, sup) ? luaL_len(L, sup) : 0;
    for (lua_Integer i = 1; i <= nsup; i++) {
        lua_rawgeti(L, sup, i);
        int r = lua_gettop(L);
        lua_getfield(L, r, "unpublished");
        int done = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!done) {
            lua_settop(L, r - 1);
            continue;
        }
        const char *pk = sbot_field_tostr(L, r, "public_key");
        lua_getfield(L, r, "others");
        int others = lua_tointeger(L, -1) > 0; /* versions someone else wrote: one may be current */
        lua_pop(L, 1);
        lua_Integer st = anonymous_check(L, res, anon, pub, pk, others ? "not sbot's" : "gone");
        const char *url = lua_tostring(L, -1);
        if (!others && st != 403 && st != 404)
            PROBLEM("the unpublished copy %s still answers an anonymous GET with %d", url, (int)st);
        lua_createtable(L, 0, 3);
        lua_getfield(L, r, "key");
        sbot_set_top(L, -2, "key");
        sbot_set_str(L, -1, "url", url);
        sbot_set_int(L, -1, "status", st);
        lua_rawseti(L, unpublished, ++nunp);
        if (lua_getfield(L, r, "versions") == LUA_TTABLE) {
            key_versions(L, client, pub, pk);
            const char *sha = sbot_field_tostr(L, r, "sha256");
            lua_Integer nv = luaL_len(L, -1);
            for (lua_Integer v = 1; v <= nv; v++) {
                lua_rawgeti(L, -1, v);
                const char *vsha = sbot_field_tostr(L, -1, "sha256");
                if (vsha && sha && strcmp(vsha, sha) == 0)
                    PROBLEM("s3://%s/%s still holds version %s of sbot's unpublished copy", pub, pk,
                            sbot_field_tostr(L, -1, "version_id"));
                lua_pop(L, 1);
            }
        }
        lua_settop(L, r - 1);
    }
    lua_pop(L, 1); /* superseded */
    json_array(L);
    sbot_set_top(L, out, "unpublished");

    /* the public bucket outside the published prefixes: refused too (403,
     * also for a key that does not exist: a 404 would mean anyone may look) */
    {
        const char *probe = lua_pushfstring(L, "%s.sbot/anonymous-probe", sbot_field_tostr(L, res, "prefix"));
        lua_Integer st = anonymous_check(L, res, anon, pub, probe, "refused");
        if (st != 403)
            PROBLEM("an anonymous GET outside the published prefixes (%s) answered %d, not 403", lua_tostring(L, -1),
                    (int)st);
        lua_pop(L, 2);
    }
    lua_pushvalue(L, checked);
    json_array(L);
    sbot_set_top(L, out, "verified");
    lua_pushvalue(L, anon);
    json_array(L);
    sbot_set_top(L, out, "anonymous");

    /* the index: exactly the configured artifacts as stored, no entry for
     * an object that is gone */
    {
        int a = args_bk(L, bucket, sbot_field_tostr(L, res, "index_key"));
        if (!call_method(L, client, "get_object", a)) {
            /* no index and nothing to list in it (a step with no artifacts,
             * on a new bucket): nothing is missing */
            if (!(na == 0 && strcmp(fail_code(L), "NoSuchKey") == 0))
                PROBLEM("the index s3://%s/%s cannot be read: %s", bucket, sbot_field_tostr(L, res, "index_key"),
                        luaL_optstring(L, -2, "?"));
            else
                sbot_set_int(L, out, "index_entries", 0);
        } else {
            lua_getfield(L, -3, "body");
            json_decode(L, lua_tostring(L, -1));
            lua_getfield(L, -1, "objects");
            int objs = lua_gettop(L);
            int entries = 0;
            if (!lua_istable(L, objs)) {
                PROBLEM("the index has no objects table");
            } else {
                for (lua_Integer i = 1; i <= na; i++) {
                    int top = lua_gettop(L);
                    lua_rawgeti(L, arts, i);
                    const char *key = sbot_field_tostr(L, top + 1, "key");
                    const char *object = sbot_field_tostr(L, top + 1, "private_object");
                    lua_getfield(L, objs, key);
                    int ent = top + 2;
                    discover_object(L, client, bucket, object);
                    int o = top + 3;
                    if (!lua_istable(L, ent)) {
                        PROBLEM("the index has no entry for %s", key);
                    } else {
                        static const char *const same[] = {"etag", "sha256", "size", "version_id", NULL};
                        for (int f = 0; same[f]; f++) {
                            lua_getfield(L, ent, same[f]);
                            lua_getfield(L, o, same[f]);
                            int eq = lua_compare(L, -1, -2, LUA_OPEQ) || (lua_isnil(L, -1) && lua_isnil(L, -2));
                            lua_pop(L, 2);
                            if (!eq) {
                                PROBLEM("the index entry of %s does not match the stored object (%s)", key, same[f]);
                                break;
                            }
                        }
                    }
                    lua_settop(L, top);
                }
                lua_pushnil(L);
                /* one listing of the prefix (1,000 keys a page), not a HEAD per entry */
                lua_newtable(L);
                int listed = lua_gettop(L);
                int la = args_bk(L, bucket, NULL);
                sbot_set_str(L, la, "prefix", sbot_field_tostr(L, res, "prefix"));
                if (!call_method(L, client, "list_objects_all", la)) {
                    PROBLEM("listing s3://%s/%s: %s", bucket, sbot_field_tostr(L, res, "prefix"),
                            luaL_optstring(L, -2, "?"));
                } else {
                    lua_Integer nl = luaL_len(L, -3);
                    for (lua_Integer i = 1; i <= nl; i++) {
                        lua_rawgeti(L, -3, i);
                        lua_getfield(L, -1, "key");
                        lua_getfield(L, -2, "etag");
                        lua_settable(L, listed);
                        lua_pop(L, 1);
                    }
                }
                lua_settop(L, listed);
                lua_pushnil(L);
                while (lua_next(L, objs)) {
                    entries++;
                    int ent = lua_gettop(L);
                    if (lua_istable(L, ent)) {
                        const char *ob = sbot_field_tostr(L, ent, "object");
                        const char *bk = sbot_field_tostr(L, ent, "bucket");
                        if (ob && bk && strcmp(bk, bucket) == 0) {
                            lua_getfield(L, listed, ob);
                            lua_getfield(L, ent, "etag");
                            if (lua_isnil(L, -2))
                                PROBLEM("the index lists s3://%s/%s, which does not exist", bk, ob);
                            else if (!lua_compare(L, -1, -2, LUA_OPEQ))
                                PROBLEM("the index entry of s3://%s/%s has another ETag than the object", bk, ob);
                        } else if (ob && bk) { /* an entry of another bucket: read it back */
                            discover_object(L, client, bk, ob);
                            lua_getfield(L, -1, "exists");
                            if (!lua_toboolean(L, -1))
                                PROBLEM("the index lists s3://%s/%s, which does not exist", bk, ob);
                        }
                    }
                    lua_settop(L, ent - 1);
                }
                lua_pop(L, 1); /* listed */
            }
            sbot_set_int(L, out, "index_entries", entries);
            lua_settop(L, a);
        }
        lua_pop(L, 1);
    }

    /* sbot's own stale multipart uploads: those whose marker lease is stale
     * (expired, or its process on this host is gone) are aborted; others'
     * are left alone */
    lua_newtable(L);
    int aborted = lua_gettop(L);
    lua_newtable(L);
    int kept = lua_gettop(L);
    lua_newtable(L);
    int live_ids = lua_gettop(L);
    int nab = 0, nkept = 0;
    const char *markers = sbot_field_tostr(L, res, "marker_prefix");
    for (int b = 0; b < 2; b++) {
        const char *bk = b ? pub : bucket;
        int a = args_bk(L, bk, NULL);
        sbot_set_str(L, a, "prefix", sbot_field_tostr(L, res, "prefix"));
        if (!call_method(L, client, "list_multipart_uploads", a)) {
            PROBLEM("listing the multipart uploads of %s: %s", bk, luaL_optstring(L, -2, "?"));
            lua_settop(L, a - 1);
            continue;
        }
        int list = lua_gettop(L) - 2;
        lua_Integer n = luaL_len(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            int u = lua_gettop(L);
            const char *id = sbot_field_tostr(L, u, "upload_id");
            const char *key = sbot_field_tostr(L, u, "key");
            lua_pushboolean(L, 1);
            lua_setfield(L, live_ids, id);
            sbot_push_require(L, "sbot.lease", "read");
            lua_pushvalue(L, client);
            lua_pushstring(L, bucket);
            lua_pushfstring(L, "%s%s.lease", markers, id);
            lua_call(L, 3, 3);
            int info = lua_gettop(L) - 2;
            lua_createtable(L, 0, 5);
            int e = lua_gettop(L);
            sbot_set_str(L, e, "bucket", bk);
            sbot_set_str(L, e, "key", key);
            sbot_set_str(L, e, "upload_id", id);
            lua_getfield(L, u, "initiated");
            sbot_set_top(L, e, "initiated");
            if (!lua_istable(L, info)) {
                sbot_set_str(L, e, "why", strcmp(luaL_optstring(L, info + 2, ""), "NoSuchKey") == 0
                                         ? "not sbot's: no marker" : luaL_optstring(L, info + 1, "?"));
                lua_rawseti(L, kept, ++nkept);
            } else if (lua_getfield(L, info, "stale"), lua_toboolean(L, -1)) {
                lua_pop(L, 1);
                lua_getfield(L, info, "why");
                sbot_set_top(L, e, "why");
                int ab = args_bk(L, bk, key);
                sbot_set_str(L, ab, "upload_id", id);
                if (!call_method(L, client, "abort_multipart_upload", ab) &&
                    strcmp(fail_code(L), "NoSuchUpload") != 0)
                    PROBLEM("aborting sbot's stale multipart upload %s of s3://%s/%s: %s", id, bk, key,
                            luaL_optstring(L, -2, "?"));
                lua_pop(L, 3);
                sbot_set_str(L, ab, "bucket", bucket);
                lua_pushfstring(L, "%s%s.lease", markers, id);
                sbot_set_top(L, ab, "key");
                call_method(L, client, "delete_object", ab);
                lua_pop(L, 4);
                lua_pushvalue(L, e);
                lua_rawseti(L, aborted, ++nab);
            } else {
                lua_pop(L, 1);
                lua_pushliteral(L, "in progress");
                sbot_set_top(L, e, "why");
                lua_getfield(L, info, "holder");
                sbot_set_top(L, e, "holder");
                lua_rawseti(L, kept, ++nkept);
            }
            lua_settop(L, u - 1);
        }
        lua_settop(L, a - 1);
    }
    /* markers whose upload is gone (completed or aborted elsewhere) and that
     * nobody renews any more: removed */
    {
        int a = args_bk(L, bucket, NULL);
        sbot_set_str(L, a, "prefix", markers);
        if (call_method(L, client, "list_objects_all", a)) {
            int list = lua_gettop(L) - 2;
            lua_Integer n = luaL_len(L, list);
            size_t ml = strlen(markers);
            for (lua_Integer i = 1; i <= n; i++) {
                int top = lua_gettop(L);
                lua_rawgeti(L, list, i);
                const char *mk = sbot_field_tostr(L, top + 1, "key");
                size_t kl = mk ? strlen(mk) : 0;
                if (kl > ml + 6 && strcmp(mk + kl - 6, ".lease") == 0) {
                    lua_pushlstring(L, mk + ml, kl - ml - 6);
                    if (lua_getfield(L, live_ids, lua_tostring(L, -1)) == LUA_TNIL) {
                        sbot_push_require(L, "sbot.lease", "read");
                        lua_pushvalue(L, client);
                        lua_pushstring(L, bucket);
                        lua_pushstring(L, mk);
                        lua_call(L, 3, 3);
                        int info = lua_gettop(L) - 2;
                        if (lua_istable(L, info) && (lua_getfield(L, info, "stale"), lua_toboolean(L, -1))) {
                            int d = args_bk(L, bucket, mk);
                            call_method(L, client, "delete_object", d);
                        }
                    }
                }
                lua_settop(L, top);
            }
        }
        lua_settop(L, a - 1);
    }
    lua_pushvalue(L, aborted);
    json_array(L);
    sbot_set_top(L, out, "uploads_aborted");
    lua_pushvalue(L, kept);
    json_array(L);
    sbot_set_top(L, out, "uploads_left");

    if (np > 0) {
        sbot_push_require(L, "table", "concat");
        lua_pushvalue(L, problems);
        lua_pushliteral(L, "; ");
        lua_call(L, 2, 1);
        return luaL_error(L, "%d check(s) failed: %s", np, lua_tostring(L, -1));
    }
    lua_pushvalue(L, out);
    return 1;
#undef PROBLEM
}

/* ---- the module ---------------------------------------------------------------- */

/* schema helpers: t[name] = {type, description [, default]} */
static int field(lua_State *L, int t, const char *name, const char *type, const char *desc)
{
    lua_createtable(L, 0, 4);
    sbot_set_str(L, -1, "type", type);
    sbot_set_str(L, -1, "description", desc);
    lua_pushvalue(L, -1);
    lua_setfield(L, t, name);
    return lua_gettop(L); /* the spec, left on the stack */
}

static void push_schema(lua_State *L)
{
    lua_newtable(L);
    int s = lua_gettop(L);
    field(L, s, "bucket", "string", "private, versioned bucket (default: the site's s3.bucket)");
    field(L, s, "public_bucket", "string",
          "bucket anonymous readers may GET the published prefixes of (default: the site's s3.public_bucket)");
    field(L, s, "prefix", "string", "key prefix of everything sbot stores (default: the site's s3.prefix)");
    int p = field(L, s, "publish", "list", "prefixes (under prefix) readable anonymously in the public bucket");
    lua_createtable(L, 0, 1);
    sbot_set_str(L, -1, "type", "string");
    sbot_set_top(L, p, "items");
    lua_createtable(L, 1, 0);
    lua_pushliteral(L, "isos/");
    lua_rawseti(L, -2, 1);
    sbot_set_top(L, p, "default");
    int lc = field(L, s, "lifecycle", "table", "lifecycle rules sbot keeps on both buckets");
    lua_newtable(L);
    int lf = lua_gettop(L);
    int nd = field(L, lf, "noncurrent_days", "integer", "days a noncurrent version is kept (private bucket)");
    sbot_set_int(L, nd, "default", 30);
    sbot_set_int(L, nd, "min", 1);
    int ad = field(L, lf, "abort_multipart_days", "integer", "days after which an unfinished multipart upload is removed");
    sbot_set_int(L, ad, "default", 2);
    sbot_set_int(L, ad, "min", 1);
    lua_settop(L, lf);
    sbot_set_top(L, lc, "fields");
    lua_createtable(L, 0, 2);
    sbot_set_int(L, -1, "noncurrent_days", 30);
    sbot_set_int(L, -1, "abort_multipart_days", 2);
    sbot_set_top(L, lc, "default");
    int ik = field(L, s, "index_key", "string", "the metadata index, under prefix");
    sbot_set_str(L, ik, "default", "metadata/index.json");
    int ul = field(L, s, "upload_lease", "integer",
                   "seconds a multipart upload's marker lease lasts without renewal (renewed while it runs)");
    sbot_set_int(L, ul, "default", 300);
    sbot_set_int(L, ul, "min", 10);
    field(L, s, "part_size", "integer", "multipart part size in bytes (sbot.s3's default: 16 MiB)");
    field(L, s, "concurrency", "integer", "parts in flight (sbot.s3's default: 4)");
    field(L, s, "multipart_threshold", "integer", "files above this many bytes go multipart (default 16 MiB)");
    int ar = field(L, s, "artifacts", "list", "files to store (and publish when under a published prefix)");
    lua_createtable(L, 0, 2);
    sbot_set_str(L, -1, "type", "table");
    lua_newtable(L);
    int af = lua_gettop(L);
    int k = field(L, af, "key", "string", "key under prefix, e.g. isos/agent.iso");
    sbot_set_bool(L, k, "required", 1);
    field(L, af, "file", "string", "local file to upload (or source)");
    field(L, af, "source", "string",
          "instead of file: a key (under prefix) already stored in the private bucket by sbot (the "
          "artifact store): published by server-side copy, never uploaded; not there yet in --plan = "
          "an earlier step stores it");
    int ps = field(L, af, "presign", "integer",
                   "seconds: also give readers a presigned GET URL of the private object, at s3.public_endpoint "
                   "(discovery.artifacts[i].presigned_url)");
    sbot_set_int(L, ps, "min", 1);
    sbot_set_int(L, ps, "max", 604800);
    field(L, af, "warning", "string", "what readers of the published copy get (shown with its publish change, and logged)");
    field(L, af, "content_type", "string", "Content-Type (default application/octet-stream)");
    field(L, af, "publish", "boolean", "publish it (default: when the key is under a published prefix)");
    field(L, af, "supersedes", "string",
          "a key prefix ending in '/': the public copies sbot published for index entries under it (earlier "
          "builds of the same thing) are unpublished — deleted, every version of sbot's copy in a versioned "
          "bucket — but for the keep_previous newest; the entries stay, marked unpublished");
    int kp = field(L, af, "keep_previous", "integer",
                   "with supersedes: how many of the newest earlier public copies stay published (default 0)");
    sbot_set_int(L, kp, "min", 0);
    sbot_set_int(L, kp, "default", 0);
    int md = field(L, af, "metadata", "map", "x-amz-meta-* values");
    lua_createtable(L, 0, 1);
    sbot_set_str(L, -1, "type", "string");
    sbot_set_top(L, md, "values");
    lua_settop(L, af);
    sbot_set_top(L, -2, "fields");
    sbot_set_top(L, ar, "items");
    lua_newtable(L);
    sbot_set_top(L, ar, "default");
    lua_settop(L, s);
}

int luaopen_sbot_component_s3(lua_State *L)
{
    lua_createtable(L, 0, 10);
    int spec = lua_gettop(L);
    sbot_set_str(L, spec, "name", "s3");
    sbot_set_str(L, spec, "description",
            "S3 for a site (a site-wide step): a private bucket with versioning, a public bucket "
            "whose policy lets anonymous readers GET the published prefixes only, lifecycle "
            "rules, the given files uploaded (SHA-256 in metadata, multipart when large) and "
            "published by server-side copy, and the metadata index kept with conditional writes.");
    push_schema(L);
    lua_setfield(L, spec, "schema");
    static const struct {
        const char *name;
        lua_CFunction fn;
    } phases[] = {{"open", s3_open},   {"discover", s3_discover},   {"plan", s3_plan},
                  {"apply", s3_apply}, {"undo", s3_undo},           {"housekeep", s3_housekeep},
                  {NULL, NULL}};
    for (int i = 0; phases[i].name; i++) {
        lua_pushcfunction(L, phases[i].fn);
        lua_setfield(L, spec, phases[i].name);
    }
    return sbot_component_define(L, spec);
}
