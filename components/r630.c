/* components/r630.c: sbot.component.r630 - a Dell PowerEdge R630 (iDRAC 8,
 * and iDRAC 9 machines) set up to boot from an iSCSI target, optionally
 * booting an installer image once from the virtual CD, over Redfish
 * (sbot.redfish's C API). docs/r630.md; `sbot help component r630`.
 *
 * open: one Redfish session for every phase (the runner closes it).
 * discover: read-only and concurrent (get_many, $expand where the service
 *   offers it): service root, manager (firmware -> generation), system, BIOS
 *   current + pending + its attribute registry, NIC functions' iSCSIBoot
 *   current + pending, the virtual CD, the job queue.
 * plan: desired vs current. Every value is checked against the attribute
 *   registry before anything is written; an attribute already at its value
 *   is never sent; a pending job carrying the desired values is reused, a
 *   conflicting one is an error naming it (unless clear_pending).
 * apply: eject-then-insert; one PATCH + one config job per Settings target
 *   (iDRAC 9: @Redfish.SettingsApplyTime when the BIOS lists it); the
 *   one-time virtual-CD boot through BIOS OneTimeUefiBootSeq (iDRAC 8's Cd
 *   override is the physical drive; SCP import when the BIOS has no one-time
 *   attributes); exactly one reboot at the end with listed ResetTypes only;
 *   every job waited for with progress.
 * housekeep: read everything again (but the attribute registry, kept from
 *   discover while the BIOS names the same one): desired values must be current (pending
 *   is not success), jobs Completed, the one-time boot consumed, the media
 *   ejected if asked; an artifact with before/after and the job ids. */
#define _GNU_SOURCE
#include "luax.h"
#include "sbot.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int luaopen_sbot_component_r630(lua_State *L);
int luaopen_sbot_redfish(lua_State *L);

/* ---- small table helpers (the shared ones are in luax.h) -------------------------- */

/* The link t[k]["@odata.id"] (string) or NULL. */
static const char *flink(lua_State *L, int t, const char *k)
{
    const char *s = NULL;
    t = lua_absindex(L, t);
    if (lua_getfield(L, t, k) == LUA_TTABLE) {
        if (lua_getfield(L, -1, "@odata.id") == LUA_TSTRING)
            s = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return s;
}

static int has_prefix(const char *s, const char *p) { return s && strncmp(s, p, strlen(p)) == 0; }

static int is_secret(lua_State *L, int idx) { return sbot_is_secret(L, idx); }

/* The value at idx as text for messages (secrets hidden). Pushed. */
static void push_shown(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (is_secret(L, idx))
        lua_pushliteral(L, "<secret>");
    else if (lua_type(L, idx) == LUA_TSTRING)
        lua_pushfstring(L, "'%s'", lua_tostring(L, idx));
    else if (lua_isnil(L, idx) || (lua_islightuserdata(L, idx) && !lua_touserdata(L, idx)))
        lua_pushliteral(L, "null");
    else
        luaL_tolstring(L, idx, NULL);
}

/* Do two values from a Redfish document and a wanted value mean the same?
 * BMCs read values back in another form than written (FIELD_NOTES): numbers
 * as strings, IQNs in another case, IPv4 addresses with leading zeros. */
static int norm_ip(const char *s, char out[16])
{
    unsigned a, b, c, d;
    char tail;
    if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 || d > 255)
        return 0;
    snprintf(out, 16, "%u.%u.%u.%u", a, b, c, d);
    return 1;
}

static int same_value(lua_State *L, int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_rawequal(L, a, b))
        return 1;
    int ta = lua_type(L, a), tb = lua_type(L, b);
    if ((ta == LUA_TNUMBER || ta == LUA_TSTRING) && (tb == LUA_TNUMBER || tb == LUA_TSTRING)) {
        if (ta == LUA_TNUMBER || tb == LUA_TNUMBER) {
            int ok1, ok2;
            lua_Number x = lua_tonumberx(L, a, &ok1), y = lua_tonumberx(L, b, &ok2);
            return ok1 && ok2 && x == y;
        }
        const char *x = lua_tostring(L, a), *y = lua_tostring(L, b);
        if (strncasecmp(x, "iqn.", 4) == 0 || strncasecmp(x, "eui.", 4) == 0)
            return strcasecmp(x, y) == 0;
        char ix[16], iy[16];
        if (norm_ip(x, ix) && norm_ip(y, iy))
            return strcmp(ix, iy) == 0;
        return strcmp(x, y) == 0;
    }
    return 0;
}

/* ---- the Redfish client ---------------------------------------------------------- */

/* GET path: pushes the document. A 404 pushes nil when absent_ok, else any
 * failure raises the client's message (it names the request and the BMC). */
static int rget(lua_State *L, int cl, const char *path, int absent_ok)
{
    int n = sbot_redfish_get(L, cl, path);
    if (n == 2) {
        lua_pop(L, 1);
        return 1;
    }
    if (absent_ok && n == 4 && lua_tointeger(L, -1) == 404) {
        lua_pop(L, n);
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, -n + 1);
    return lua_error(L);
}

/* Raise the failure (nil, msg, code[, status]) on top, prefixed. */
static int raise_failure(lua_State *L, int n, const char *what)
{
    return luaL_error(L, "%s: %s", what, lua_tostring(L, -n + 1));
}

/* ---- discovery ------------------------------------------------------------------------ */

/* Attributes the component may write or reads to decide (kept from the
 * registry and the BIOS in the discovery; a real registry has hundreds). */
static const char *const bios_names[] = {
    "BootMode", "BootSeq", "UefiBootSeq", "OneTimeBootMode", "OneTimeBootSeqDev", "OneTimeUefiBootSeqDev",
    "IscsiInitiatorName", "IscsiDev1EnDis", "IscsiDev1Con1EnDis", "IscsiDev1Con1Interface",
    "IscsiDev1Con1Protocol", "IscsiDev1Con1DhcpEnDis", "IscsiDev1Con1TgtDhcpEnDis", "IscsiDev1Con1TargetName",
    "IscsiDev1Con1TargetIp", "IscsiDev1Con1Port", "IscsiDev1Con1Lun", "IscsiDev1Con1Auth", "IscsiDev1Con1ChapName",
    "IscsiDev1Con1ChapSecret", "IscsiDev1Con1Retry", "IscsiDev1Con1Timeout", "SystemModelName",
    "SystemServiceTag", "SystemBiosVersion", NULL};

static int managed_bios(const char *name)
{
    for (int i = 0; bios_names[i]; i++)
        if (strcmp(bios_names[i], name) == 0)
            return 1;
    return 0;
}

struct disc {
    int cl;      /* the client */
    int docs;    /* path -> document */
    int absent;  /* list of paths that answered 404 */
    const char *expand; /* "?$expand=.($levels=1)" when the service offers it, else NULL */
    const char *known_registry; /* the path of a registry already read (kept), or NULL */
};

/* Fetch every path of the list at `list` not in docs yet, concurrently.
 * 404s are recorded as absent; other failures raise. */
static void fetch(lua_State *L, struct disc *d, int list)
{
    luaL_checkstack(L, 20, "r630: discover");
    list = lua_absindex(L, list);
    sbot_push_array(L);
    int want = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    lua_newtable(L);
    int seen = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        lua_pushvalue(L, -1);
        int known = lua_rawget(L, d->docs) != LUA_TNIL;
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        int dup = lua_rawget(L, seen) != LUA_TNIL;
        lua_pop(L, 1);
        if (!known && !dup) {
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            sbot_append(L, want);
        } else {
            lua_pop(L, 1);
        }
    }
    if (lua_rawlen(L, want) == 0) {
        lua_pop(L, 2);
        return;
    }
    sbot_redfish_get_many(L, d->cl, want);
    int res = lua_gettop(L);
    lua_Integer m = (lua_Integer)lua_rawlen(L, want);
    for (lua_Integer i = 1; i <= m; i++) {
        lua_rawgeti(L, res, i);
        int r = lua_gettop(L);
        lua_rawgeti(L, want, i);
        int p = lua_gettop(L);
        if (lua_getfield(L, r, "doc") == LUA_TTABLE) {
            lua_pushvalue(L, p);
            lua_insert(L, -2);
            lua_rawset(L, d->docs);
            /* keep the ETag next to the document, for If-Match */
            if (lua_getfield(L, r, "etag") == LUA_TSTRING) {
                lua_pushfstring(L, "etag:%s", lua_tostring(L, p));
                lua_insert(L, -2);
                lua_rawset(L, d->docs);
            } else {
                lua_pop(L, 1);
            }
        } else {
            lua_pop(L, 1);
            if (sbot_field_num(L, r, "status", 0) == 404) {
                lua_pushvalue(L, p);
                sbot_append(L, d->absent);
                lua_pushvalue(L, p);
                lua_pushboolean(L, 0);
                lua_rawset(L, d->docs); /* known, absent */
            } else {
                const char *e = sbot_field_str(L, r, "error");
                luaL_error(L, "discover: %s", e ? e : "a request failed");
            }
        }
        lua_settop(L, res);
    }
    lua_settop(L, want - 1);
}

/* docs[path] if it is a document (pushed, returns 1) else nothing, 0. */
static int doc_of(lua_State *L, struct disc *d, const char *path)
{
    if (!path)
        return 0;
    lua_pushstring(L, path);
    if (lua_rawget(L, d->docs) == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    return 0;
}

static const char *etag_of(lua_State *L, struct disc *d, const char *path)
{
    lua_pushfstring(L, "etag:%s", path);
    lua_rawget(L, d->docs);
    const char *e = lua_tostring(L, -1);
    lua_pop(L, 1);
    return e;
}

/* The members of the collection at `path` (fetched): expanded members go
 * straight into docs, the others' paths are appended to `need`; all member
 * paths are appended to `out` (if out != 0). */
static void members_of(lua_State *L, struct disc *d, const char *path, int need, int out)
{
    luaL_checkstack(L, 20, "r630: discover");
    if (!doc_of(L, d, path))
        return;
    int coll = lua_gettop(L);
    if (sbot_field_table(L, coll, "Members")) {
        int m = lua_gettop(L);
        lua_Integer n = (lua_Integer)lua_rawlen(L, m);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, m, i) == LUA_TTABLE) {
                int mem = lua_gettop(L);
                const char *p = sbot_field_str(L, mem, "@odata.id");
                if (p) {
                    int fields = 0;
                    lua_pushnil(L);
                    while (lua_next(L, mem)) {
                        lua_pop(L, 1);
                        fields++;
                    }
                    if (fields > 1) {
                        lua_pushstring(L, p);
                        lua_pushvalue(L, mem);
                        lua_rawset(L, d->docs);
                    } else if (need) {
                        lua_pushstring(L, p);
                        sbot_append(L, need);
                    }
                    if (out) {
                        lua_pushstring(L, p);
                        sbot_append(L, out);
                    }
                }
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* A collection path with the $expand query when the service supports it. */
static void push_coll(lua_State *L, struct disc *d, const char *path)
{
    if (d->expand)
        lua_pushfstring(L, "%s%s", path, d->expand);
    else
        lua_pushstring(L, path);
}

/* Fetch a collection (expanded when possible): its document is stored
 * under the plain path too. */
static void alias_coll(lua_State *L, struct disc *d, const char *path)
{
    if (!d->expand || !path)
        return;
    lua_pushfstring(L, "%s%s", path, d->expand);
    if (lua_rawget(L, d->docs) == LUA_TTABLE) {
        lua_pushstring(L, path);
        lua_insert(L, -2);
        lua_rawset(L, d->docs);
    } else {
        lua_pop(L, 1);
    }
}

/* Copy the attributes of a registry entry the component uses (pushed). */
static void push_reg_entry(lua_State *L, int e)
{
    static const char *const keep[] = {"Type", "ReadOnly", "LowerBound", "UpperBound", "MinLength",
                                       "MaxLength", "ValueExpression", NULL};
    lua_newtable(L);
    int t = lua_gettop(L);
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, e, keep[i]);
        lua_setfield(L, t, keep[i]);
    }
    if (sbot_field_table(L, e, "Value")) {
        sbot_push_array(L);
        lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -2, i) == LUA_TTABLE && lua_getfield(L, -1, "ValueName") == LUA_TSTRING) {
                lua_remove(L, -2);
                sbot_append(L, -2);
            } else {
                lua_pop(L, lua_istable(L, -1) ? 2 : 1);
            }
        }
        lua_setfield(L, t, "Values");
        lua_pop(L, 1);
    }
}

static const char *const done_states[] = {"Completed", "Failed", "CompletedWithErrors", "Killed", "Cancelled",
                                          "Exception", NULL};

static int job_done(const char *state)
{
    if (!state)
        return 1;
    for (int i = 0; done_states[i]; i++)
        if (strcmp(state, done_states[i]) == 0)
            return 1;
    return 0;
}

/* Discover the server through the client at cl; pushes the discovery table.
 * prev: the stack index of an earlier discovery of the same server (0 for
 * none): its BIOS attribute registry is kept when the BIOS still names the
 * same one, instead of reading it again (a real R630's is hundreds of KB and
 * as many seconds; the housekeeping reads everything else again). */
static void discover_all(lua_State *L, int cl, int prev)
{
    luaL_checkstack(L, 80, "r630: discover");
    cl = lua_absindex(L, cl);
    prev = prev ? lua_absindex(L, prev) : 0;
    int top = lua_gettop(L);
    lua_newtable(L);
    int D = lua_gettop(L);
    lua_newtable(L);
    int docs = lua_gettop(L);
    sbot_push_array(L);
    int absent = lua_gettop(L);
    struct disc d = {cl, docs, absent, NULL, NULL};
    if (prev && sbot_field_table(L, prev, "registry")) {
        /* anchored in docs (path -> document: no path starts with a space) */
        lua_getfield(L, -1, "path");
        lua_setfield(L, docs, " known registry");
        d.known_registry = sbot_field_str(L, docs, " known registry");
        lua_pop(L, 1);
    }

    /* Rounds of concurrent GETs (get_many, per_host in flight), each taking
     * what the links read so far lead to; collections with $expand where the
     * service offers it. The longest chain is root -> system -> NIC
     * interfaces -> NIC functions -> their Settings. */
    lua_getfield(L, cl, "root");
    int root = lua_gettop(L);
    if (sbot_field_table(L, root, "ProtocolFeaturesSupported")) {
        if (sbot_field_table(L, -1, "ExpandQuery")) {
            int eq = lua_gettop(L);
            if ((sbot_field_bool(L, eq, "NoLinks", 0) || sbot_field_bool(L, eq, "ExpandAll", 0)) &&
                sbot_field_bool(L, eq, "Levels", 0) &&
                sbot_field_num(L, eq, "MaxLevels", 0) >= 1)
                d.expand = "?$expand=.($levels=1)";
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    const char *systems = flink(L, root, "Systems");
    const char *regs = flink(L, root, "Registries");
    const char *managers = flink(L, root, "Managers");
    if (!systems)
        luaL_error(L, "discover: the service root of %s links no Systems collection", sbot_field_str(L, cl, "host"));

    /* round 0: the systems and the registry files */
    sbot_push_array(L);
    int r0 = lua_gettop(L);
    push_coll(L, &d, systems);
    sbot_append(L, r0);
    if (regs) {
        push_coll(L, &d, regs);
        sbot_append(L, r0);
    }
    fetch(L, &d, r0);
    alias_coll(L, &d, systems);
    alias_coll(L, &d, regs);
    sbot_push_array(L);
    int sysl = lua_gettop(L);
    sbot_push_array(L);
    int reg_files = lua_gettop(L);
    sbot_push_array(L);
    int need = lua_gettop(L);
    members_of(L, &d, systems, need, sysl);
    members_of(L, &d, regs, need, reg_files);
    if (lua_rawlen(L, sysl) == 0)
        luaL_error(L, "discover: the Systems collection of %s lists no system", sbot_field_str(L, cl, "host"));
    lua_rawgeti(L, sysl, 1);
    lua_setfield(L, D, "system_path"); /* anchors the string */
    const char *sys_path = sbot_field_str(L, D, "system_path");
    lua_pushstring(L, sys_path);
    sbot_append(L, need);
    fetch(L, &d, need);
    if (!doc_of(L, &d, sys_path))
        luaL_error(L, "discover: the system %s is absent", sys_path);
    int sys = lua_gettop(L);

    /* round 1: managers, BIOS, NIC interfaces, the system's virtual media,
     * and (read ahead) the one BIOS attribute registry the files list */
    const char *bios_path = flink(L, sys, "Bios");
    const char *netifs = flink(L, sys, "NetworkInterfaces");
    const char *sys_vm = flink(L, sys, "VirtualMedia");
    const char *reg_guess = NULL;
    int bios_files = 0;
    lua_Integer nf = (lua_Integer)lua_rawlen(L, reg_files);
    for (lua_Integer i = 1; i <= nf; i++) {
        lua_rawgeti(L, reg_files, i);
        if (doc_of(L, &d, lua_tostring(L, -1))) {
            const char *id = sbot_field_str(L, -1, "Id");
            if (has_prefix(id, "BiosAttributeRegistry") && sbot_field_table(L, -1, "Location")) {
                if (lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
                    reg_guess = sbot_field_str(L, -1, "Uri");
                    bios_files++;
                }
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    sbot_push_array(L);
    int r1 = lua_gettop(L);
    const char *r1_colls[] = {managers, netifs, sys_vm};
    for (int i = 0; i < 3; i++)
        if (r1_colls[i]) {
            push_coll(L, &d, r1_colls[i]);
            sbot_append(L, r1);
        }
    if (bios_path) {
        lua_pushstring(L, bios_path);
        sbot_append(L, r1);
    }
    if (reg_guess && bios_files == 1 && !(d.known_registry && strcmp(reg_guess, d.known_registry) == 0)) {
        lua_pushstring(L, reg_guess);
        sbot_append(L, r1);
    }
    fetch(L, &d, r1);
    for (int i = 0; i < 3; i++)
        alias_coll(L, &d, r1_colls[i]);
    sbot_push_array(L);
    int mgrs = lua_gettop(L);
    sbot_push_array(L);
    int netif_members = lua_gettop(L);
    sbot_push_array(L);
    need = lua_gettop(L);
    members_of(L, &d, managers, need, mgrs);
    members_of(L, &d, netifs, need, netif_members);
    fetch(L, &d, need);
    /* the BMC: the ManagerType BMC among the managers, else the first */
    const char *mgr_path = NULL;
    lua_Integer nm = (lua_Integer)lua_rawlen(L, mgrs);
    for (lua_Integer i = 1; i <= nm; i++) {
        lua_rawgeti(L, mgrs, i);
        const char *p = lua_tostring(L, -1);
        if (doc_of(L, &d, p)) {
            const char *t = sbot_field_str(L, -1, "ManagerType");
            if (!mgr_path || (t && strcmp(t, "BMC") == 0))
                mgr_path = p;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (!mgr_path || !doc_of(L, &d, mgr_path))
        luaL_error(L, "discover: %s lists no manager", sbot_field_str(L, cl, "host"));
    int mgr = lua_gettop(L);
    int n = sbot_redfish_identify(L, cl, mgr);
    if (n != 1)
        raise_failure(L, n, "discover");
    int info = lua_gettop(L);
    lua_newtable(L);
    int svc = lua_gettop(L);
    static const char *const info_keys[] = {"vendor", "generation", "family", "firmware", "redfish_version",
                                            "manager", "manager_model", NULL};
    for (int i = 0; info_keys[i]; i++) {
        lua_getfield(L, info, info_keys[i]);
        lua_setfield(L, svc, info_keys[i]);
    }
    sbot_set_str(L, svc, "system", sys_path);
    sbot_set_bool(L, svc, "expand", d.expand != NULL);
    lua_pushvalue(L, svc);
    lua_setfield(L, D, "service");

    /* round 2: pending BIOS settings, the NIC functions, the manager's
     * virtual media and job queue, the registry if the guess was not it */
    const char *vm = sys_vm ? sys_vm : flink(L, mgr, "VirtualMedia");
    const char *jobs = NULL, *job_service = NULL;
    if (sbot_field_table(L, mgr, "Links")) {
        if (sbot_field_table(L, -1, "Oem")) {
            if (sbot_field_table(L, -1, "Dell")) {
                jobs = flink(L, -1, "Jobs");
                job_service = flink(L, -1, "DellJobService");
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    const char *bios_settings = NULL, *reg_id = NULL, *reg_uri = NULL;
    if (doc_of(L, &d, bios_path)) {
        reg_id = sbot_field_str(L, -1, "AttributeRegistry");
        if (sbot_field_table(L, -1, "@Redfish.Settings")) {
            bios_settings = flink(L, -1, "SettingsObject");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= nf && reg_id && !reg_uri; i++) {
        lua_rawgeti(L, reg_files, i);
        if (doc_of(L, &d, lua_tostring(L, -1))) {
            const char *id = sbot_field_str(L, -1, "Id");
            if (id && strcmp(id, reg_id) == 0 && sbot_field_table(L, -1, "Location")) {
                if (lua_rawgeti(L, -1, 1) == LUA_TTABLE)
                    reg_uri = sbot_field_str(L, -1, "Uri");
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    sbot_push_array(L);
    int r2 = lua_gettop(L);
    sbot_push_array(L);
    int fn_colls = lua_gettop(L);
    sbot_push_array(L);
    int adapters = lua_gettop(L);
    lua_Integer ni = (lua_Integer)lua_rawlen(L, netif_members);
    for (lua_Integer i = 1; i <= ni; i++) {
        lua_rawgeti(L, netif_members, i);
        if (doc_of(L, &d, lua_tostring(L, -1))) {
            /* the interface links its functions; older shapes only through the adapter */
            const char *f = flink(L, -1, "NetworkDeviceFunctions");
            if (f) {
                lua_pushstring(L, f);
                sbot_append(L, fn_colls);
                push_coll(L, &d, f);
                sbot_append(L, r2);
            } else if (sbot_field_table(L, -1, "Links")) {
                const char *a = flink(L, -1, "NetworkAdapter");
                if (a) {
                    lua_pushstring(L, a);
                    sbot_append(L, adapters);
                    lua_pushstring(L, a);
                    sbot_append(L, r2);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    const char *r2_colls[] = {vm, jobs};
    for (int i = 0; i < 2; i++)
        if (r2_colls[i]) {
            push_coll(L, &d, r2_colls[i]);
            sbot_append(L, r2);
        }
    int reg_known = reg_uri && d.known_registry && strcmp(reg_uri, d.known_registry) == 0;
    const char *r2_paths[] = {bios_settings, reg_known ? NULL : reg_uri};
    for (int i = 0; i < 2; i++)
        if (r2_paths[i]) {
            lua_pushstring(L, r2_paths[i]);
            sbot_append(L, r2);
        }
    fetch(L, &d, r2);
    for (int i = 0; i < 2; i++)
        alias_coll(L, &d, r2_colls[i]);
    /* adapters (when the interfaces did not link the functions directly) */
    sbot_push_array(L);
    need = lua_gettop(L);
    lua_Integer na = (lua_Integer)lua_rawlen(L, adapters);
    for (lua_Integer i = 1; i <= na; i++) {
        lua_rawgeti(L, adapters, i);
        if (doc_of(L, &d, lua_tostring(L, -1))) {
            const char *f = flink(L, -1, "NetworkDeviceFunctions");
            if (f) {
                lua_pushstring(L, f);
                sbot_append(L, fn_colls);
                push_coll(L, &d, f);
                sbot_append(L, need);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    fetch(L, &d, need);

    /* round 3: NIC functions not expanded yet, virtual media and job members,
     * the functions' pending Settings */
    sbot_push_array(L);
    int vm_members = lua_gettop(L);
    sbot_push_array(L);
    int job_members = lua_gettop(L);
    sbot_push_array(L);
    int fns = lua_gettop(L);
    sbot_push_array(L);
    need = lua_gettop(L);
    members_of(L, &d, vm, need, vm_members);
    members_of(L, &d, jobs, need, job_members);
    lua_Integer nc = (lua_Integer)lua_rawlen(L, fn_colls);
    for (lua_Integer i = 1; i <= nc; i++) {
        lua_rawgeti(L, fn_colls, i);
        alias_coll(L, &d, lua_tostring(L, -1));
        members_of(L, &d, lua_tostring(L, -1), need, fns);
        lua_pop(L, 1);
    }
    fetch(L, &d, need);
    sbot_push_array(L);
    int r3 = lua_gettop(L);
    lua_Integer nfn = (lua_Integer)lua_rawlen(L, fns);
    for (lua_Integer i = 1; i <= nfn; i++) {
        lua_rawgeti(L, fns, i);
        if (doc_of(L, &d, lua_tostring(L, -1))) {
            if (sbot_field_table(L, -1, "@Redfish.Settings")) {
                const char *sp = flink(L, -1, "SettingsObject");
                if (sp) {
                    lua_pushstring(L, sp);
                    sbot_append(L, r3);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    fetch(L, &d, r3);

    /* ---- the discovery table ---- */
    lua_newtable(L);
    int s = lua_gettop(L);
    sbot_set_str(L, s, "path", sys_path);
    static const char *const sys_keys[][2] = {{"model", "Model"}, {"service_tag", "SKU"},
                                              {"power_state", "PowerState"}, {"bios_version", "BiosVersion"},
                                              {"manufacturer", "Manufacturer"}, {NULL, NULL}};
    for (int i = 0; sys_keys[i][0]; i++) {
        lua_getfield(L, sys, sys_keys[i][1]);
        lua_setfield(L, s, sys_keys[i][0]);
    }
    if (sbot_field_table(L, sys, "Actions")) {
        if (sbot_field_table(L, -1, "#ComputerSystem.Reset")) {
            lua_getfield(L, -1, "target");
            lua_setfield(L, s, "reset_target");
            lua_getfield(L, -1, "ResetType@Redfish.AllowableValues");
            lua_setfield(L, s, "reset_types");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (sbot_field_table(L, sys, "Boot")) {
        int b = lua_gettop(L);
        lua_newtable(L);
        lua_getfield(L, b, "BootSourceOverrideTarget");
        lua_setfield(L, -2, "override_target");
        lua_getfield(L, b, "BootSourceOverrideEnabled");
        lua_setfield(L, -2, "override_enabled");
        lua_getfield(L, b, "BootSourceOverrideMode");
        lua_setfield(L, -2, "override_mode");
        lua_setfield(L, s, "boot");
        lua_pop(L, 1);
    }
    lua_setfield(L, D, "system");

    lua_newtable(L);
    int m = lua_gettop(L);
    sbot_set_str(L, m, "path", mgr_path);
    sbot_set_str(L, m, "jobs", jobs);
    sbot_set_str(L, m, "job_service", job_service);
    sbot_set_str(L, m, "virtual_media", vm);
    if (sbot_field_table(L, mgr, "Actions")) {
        if (sbot_field_table(L, -1, "Oem")) {
            int oem = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, oem)) {
                const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
                size_t kl = strlen(k);
                const char *suffix = "OemManager.ImportSystemConfiguration";
                size_t sl = strlen(suffix);
                if (kl >= sl && strcmp(k + kl - sl, suffix) == 0 && lua_istable(L, -1)) {
                    lua_newtable(L);
                    sbot_set_str(L, -1, "key", k);
                    lua_getfield(L, -2, "target");
                    lua_setfield(L, -2, "target");
                    lua_setfield(L, m, "scp");
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, D, "manager");

    /* BIOS: current and pending values of the attributes the component uses */
    lua_newtable(L);
    int bt = lua_gettop(L);
    sbot_set_str(L, bt, "path", bios_path);
    sbot_set_str(L, bt, "settings", bios_settings);
    sbot_set_str(L, bt, "registry_id", reg_id);
    sbot_set_str(L, bt, "registry", reg_uri);
    if (bios_settings)
        sbot_set_str(L, bt, "settings_etag", etag_of(L, &d, bios_settings));
    lua_newtable(L);
    int cur = lua_gettop(L);
    lua_newtable(L);
    int pend = lua_gettop(L);
    if (doc_of(L, &d, bios_path)) {
        int bd = lua_gettop(L);
        if (sbot_field_table(L, bd, "Attributes")) {
            for (int i = 0; bios_names[i]; i++) {
                lua_getfield(L, -1, bios_names[i]);
                lua_setfield(L, cur, bios_names[i]);
            }
            lua_pop(L, 1);
        }
        if (sbot_field_table(L, bd, "@Redfish.Settings")) {
            lua_getfield(L, -1, "SupportedApplyTimes");
            lua_setfield(L, bt, "apply_times");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (doc_of(L, &d, bios_settings)) {
        if (sbot_field_table(L, -1, "Attributes")) {
            /* every pending attribute: foreign ones are a conflict */
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, pend);
            }
            lua_pop(L, 1);
        }
        if (sbot_field_table(L, -1, "@Redfish.SettingsApplyTime")) {
            lua_getfield(L, -1, "ApplyTime@Redfish.AllowableValues");
            lua_setfield(L, bt, "settings_apply_times");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, bt, "pending");
    lua_setfield(L, bt, "attributes");
    lua_setfield(L, D, "bios");

    /* the registry entries of those attributes, and their dependencies */
    if (reg_known) {
        lua_getfield(L, prev, "registry");
        lua_setfield(L, D, "registry");
    } else if (doc_of(L, &d, reg_uri)) {
        int rd = lua_gettop(L);
        lua_newtable(L);
        int rt = lua_gettop(L);
        sbot_set_str(L, rt, "path", reg_uri);
        lua_newtable(L);
        int ra = lua_gettop(L);
        sbot_push_array(L);
        int rdeps = lua_gettop(L);
        if (sbot_field_table(L, rd, "RegistryEntries")) {
            int re = lua_gettop(L);
            if (sbot_field_table(L, re, "Attributes")) {
                lua_Integer k = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= k; i++) {
                    if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                        const char *an = sbot_field_str(L, -1, "AttributeName");
                        if (an && managed_bios(an)) {
                            push_reg_entry(L, lua_gettop(L));
                            lua_setfield(L, ra, an);
                        }
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            if (sbot_field_table(L, re, "Dependencies")) {
                lua_Integer k = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= k; i++) {
                    if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                        const char *df = sbot_field_str(L, -1, "DependencyFor");
                        if (df && managed_bios(df) && sbot_field_table(L, -1, "Dependency")) {
                            sbot_append(L, rdeps);
                        }
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_setfield(L, rt, "dependencies");
        lua_setfield(L, rt, "attributes");
        lua_setfield(L, D, "registry");
        lua_pop(L, 1);
    }

    /* NIC functions */
    sbot_push_array(L);
    int nics = lua_gettop(L);
    for (lua_Integer i = 1; i <= nfn; i++) {
        lua_rawgeti(L, fns, i);
        const char *fp = lua_tostring(L, -1);
        if (doc_of(L, &d, fp)) {
            int f = lua_gettop(L);
            lua_newtable(L);
            int e = lua_gettop(L);
            lua_getfield(L, f, "Id");
            lua_setfield(L, e, "id");
            sbot_set_str(L, e, "path", fp);
            if (sbot_field_table(L, f, "Ethernet")) {
                lua_getfield(L, -1, "MACAddress");
                lua_setfield(L, e, "mac");
                lua_pop(L, 1);
            }
            if (sbot_field_table(L, f, "iSCSIBoot")) {
                lua_setfield(L, e, "iscsi");
            }
            const char *sp = NULL;
            if (sbot_field_table(L, f, "@Redfish.Settings")) {
                sp = flink(L, -1, "SettingsObject");
                lua_pop(L, 1);
            }
            sbot_set_str(L, e, "settings", sp);
            if (sp) {
                sbot_set_str(L, e, "settings_etag", etag_of(L, &d, sp));
                if (doc_of(L, &d, sp)) {
                    if (sbot_field_table(L, -1, "iSCSIBoot")) {
                        lua_setfield(L, e, "pending");
                    }
                    lua_pop(L, 1);
                }
            }
            if (lua_getfield(L, e, "pending") == LUA_TNIL) {
                lua_newtable(L);
                lua_setfield(L, e, "pending");
            }
            lua_pop(L, 1);
            sbot_append(L, nics);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, D, "nics");

    /* the virtual CD: the member whose MediaTypes has CD or DVD */
    lua_Integer nv = (lua_Integer)lua_rawlen(L, vm_members);
    for (lua_Integer i = 1; i <= nv; i++) {
        lua_rawgeti(L, vm_members, i);
        const char *vp = lua_tostring(L, -1);
        int is_cd = 0;
        if (doc_of(L, &d, vp)) {
            int v = lua_gettop(L);
            if (sbot_field_table(L, v, "MediaTypes")) {
                lua_Integer k = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer j = 1; j <= k; j++) {
                    lua_rawgeti(L, -1, j);
                    const char *t = lua_tostring(L, -1);
                    if (t && (strcmp(t, "CD") == 0 || strcmp(t, "DVD") == 0))
                        is_cd = 1;
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            if (is_cd) {
                lua_newtable(L);
                int e = lua_gettop(L);
                sbot_set_str(L, e, "path", vp);
                lua_getfield(L, v, "Id");
                lua_setfield(L, e, "id");
                sbot_set_bool(L, e, "inserted", sbot_field_bool(L, v, "Inserted", 0));
                lua_getfield(L, v, "Image");
                if (lua_type(L, -1) != LUA_TSTRING) {
                    lua_pop(L, 1);
                    lua_pushnil(L);
                }
                lua_setfield(L, e, "image");
                if (sbot_field_table(L, v, "Actions")) {
                    if (sbot_field_table(L, -1, "#VirtualMedia.InsertMedia")) {
                        lua_getfield(L, -1, "target");
                        lua_setfield(L, e, "insert");
                        lua_pop(L, 1);
                    }
                    if (sbot_field_table(L, -1, "#VirtualMedia.EjectMedia")) {
                        lua_getfield(L, -1, "target");
                        lua_setfield(L, e, "eject");
                        lua_pop(L, 1);
                    }
                    lua_pop(L, 1);
                }
                lua_setfield(L, D, "virtual_media");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (is_cd)
            break;
    }

    /* unfinished jobs (a real queue keeps hundreds of finished ones) */
    sbot_push_array(L);
    int jl = lua_gettop(L);
    lua_Integer nj = (lua_Integer)lua_rawlen(L, job_members);
    for (lua_Integer i = 1; i <= nj; i++) {
        lua_rawgeti(L, job_members, i);
        const char *jp = lua_tostring(L, -1);
        if (doc_of(L, &d, jp)) {
            int j = lua_gettop(L);
            const char *state = sbot_field_str(L, j, "JobState");
            if (!job_done(state)) {
                lua_newtable(L);
                int e = lua_gettop(L);
                lua_getfield(L, j, "Id");
                lua_setfield(L, e, "id");
                sbot_set_str(L, e, "path", jp);
                sbot_set_str(L, e, "state", state);
                lua_getfield(L, j, "PercentComplete");
                lua_setfield(L, e, "percent");
                lua_getfield(L, j, "TargetSettingsURI");
                if (lua_type(L, -1) != LUA_TSTRING) {
                    lua_pop(L, 1);
                    lua_pushnil(L);
                }
                lua_setfield(L, e, "target");
                lua_getfield(L, j, "Name");
                lua_setfield(L, e, "name");
                lua_getfield(L, j, "Message");
                lua_setfield(L, e, "message");
                sbot_append(L, jl);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, D, "jobs");
    lua_pushvalue(L, absent);
    lua_setfield(L, D, "absent");

    lua_pushvalue(L, D);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

/* discover(self, client) -> the discovery table */
static int r630_discover(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_isnil(L, 2))
        return luaL_error(L, "discover: no Redfish session (open did not run)");
    discover_all(L, 2, 0);
    return 1;
}

/* ---- the desired state ------------------------------------------------------------------ */

/* Where a BIOS attribute's value comes from in the config (for messages). */
static const char *config_key_of(const char *attr)
{
    static const char *const map[][2] = {
        {"BootMode", "boot.mode"},
        {"UefiBootSeq", "boot.first"},
        {"BootSeq", "boot.first"},
        {"IscsiInitiatorName", "iscsi_boot.initiator_iqn"},
        {"InitiatorName", "iscsi_boot.initiator_iqn"},
        {"IscsiDev1Con1Interface", "iscsi_boot.nic"},
        {"IscsiDev1Con1TargetName", "iscsi_boot.target_iqn"},
        {"PrimaryTargetName", "iscsi_boot.target_iqn"},
        {"IscsiDev1Con1TargetIp", "iscsi_boot.target_ip"},
        {"PrimaryTargetIPAddress", "iscsi_boot.target_ip"},
        {"IscsiDev1Con1Port", "iscsi_boot.target_port"},
        {"PrimaryTargetTCPPort", "iscsi_boot.target_port"},
        {"IscsiDev1Con1Lun", "iscsi_boot.lun"},
        {"PrimaryLUN", "iscsi_boot.lun"},
        {"IscsiDev1Con1ChapName", "iscsi_boot.chap.user"},
        {"CHAPUsername", "iscsi_boot.chap.user"},
        {"IscsiDev1Con1ChapSecret", "iscsi_boot.chap.secret"},
        {"CHAPSecret", "iscsi_boot.chap.secret"},
        {"OneTimeBootMode", "virtual_media.boot_once"},
        {"OneTimeUefiBootSeqDev", "virtual_media.boot_once"},
        {"OneTimeBootSeqDev", "virtual_media.boot_once"},
        {NULL, NULL}};
    for (int i = 0; map[i][0]; i++)
        if (strcmp(map[i][0], attr) == 0)
            return map[i][1];
    return "iscsi_boot";
}

/* The NIC iSCSIBoot properties and the BIOS attribute whose registry entry
 * gives their limits (the same iSCSI rules on the same machine). */
static const char *nic_counterpart(const char *prop)
{
    static const char *const map[][2] = {{"InitiatorName", "IscsiInitiatorName"},
                                         {"PrimaryTargetName", "IscsiDev1Con1TargetName"},
                                         {"PrimaryTargetIPAddress", "IscsiDev1Con1TargetIp"},
                                         {"PrimaryTargetTCPPort", "IscsiDev1Con1Port"},
                                         {"CHAPUsername", "IscsiDev1Con1ChapName"},
                                         {"CHAPSecret", "IscsiDev1Con1ChapSecret"},
                                         {NULL, NULL}};
    for (int i = 0; map[i][0]; i++)
        if (strcmp(map[i][0], prop) == 0)
            return map[i][1];
    return NULL;
}


/* Split a boot sequence "a,b, c" into a list (pushed). */
static void push_split(lua_State *L, const char *seq)
{
    sbot_push_array(L);
    if (!seq)
        return;
    const char *p = seq;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if (t > p) {
            lua_pushlstring(L, p, (size_t)(t - p));
            sbot_append(L, -2);
        }
        p = e;
    }
}

/* The boot device of a kind among the list at idx (a string or NULL). */
static const char *device_of_kind(lua_State *L, int list, const char *kind, const char *nic)
{
    static const char *const prefixes[][4] = {{"iscsi", "iSCSI.", NULL, NULL},
                                              {"cd", "Optical.iDRACVirtual", "Optical.", NULL},
                                              {"pxe", "NIC.PxeDevice", "NIC.", NULL},
                                              {"hdd", "RAID.", "HardDisk.", "Disk."}};
    list = lua_absindex(L, list);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    if (strcmp(kind, "iscsi") == 0 && nic) {
        /* legacy boot: the NIC itself boots iSCSI */
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            const char *s = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (s && strcmp(s, nic) == 0)
                return s;
        }
        return NULL;
    }
    for (int k = 0; k < 4; k++) {
        if (strcmp(prefixes[k][0], kind) != 0)
            continue;
        for (int j = 1; j < 4 && prefixes[k][j]; j++)
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, list, i);
                const char *s = lua_tostring(L, -1);
                lua_pop(L, 1);
                if (has_prefix(s, prefixes[k][j]))
                    return s;
            }
    }
    return NULL;
}

/* The enumeration values of registry attribute name (list pushed; empty if none). */
static void push_reg_values(lua_State *L, int D, const char *name)
{
    if (sbot_field_table(L, D, "registry")) {
        if (sbot_field_table(L, -1, "attributes")) {
            if (sbot_field_table(L, -1, name)) {
                if (sbot_field_table(L, -1, "Values")) {
                    lua_replace(L, -4);
                    lua_settop(L, lua_gettop(L) - 2);
                    return;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    sbot_push_array(L);
}

static const char *host_of(lua_State *L, int self)
{
    const char *h = NULL;
    if (sbot_field_table(L, self, "server")) {
        if (sbot_field_table(L, -1, "idrac")) {
            h = sbot_field_str(L, -1, "host");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return h ? h : "the BMC";
}

/* The desired state from the config, the site's hooks and the discovery at
 * D. Pushes W = {mode, bios = {...}, write_only = {name = true}, nic =
 * {id, path, settings, values = {...}} | nil, seq_attr, vm = config | nil}. */
static void push_desired(lua_State *L, int self, int D)
{
    luaL_checkstack(L, 40, "r630: desired state");
    self = lua_absindex(L, self);
    D = lua_absindex(L, D);
    lua_getfield(L, self, "config");
    int cfg = lua_gettop(L);
    lua_newtable(L);
    int W = lua_gettop(L);
    lua_newtable(L);
    int bios = lua_gettop(L);
    lua_newtable(L);
    int wo = lua_gettop(L);
    const char *mode = "Uefi";
    int has_boot = sbot_field_table(L, cfg, "boot");
    int boot = has_boot ? lua_gettop(L) : 0;
    if (boot && sbot_field_str(L, boot, "mode"))
        mode = sbot_field_str(L, boot, "mode");
    sbot_set_str(L, W, "mode", mode);
    int uefi = strcmp(mode, "Uefi") == 0;
    if (boot)
        sbot_set_str(L, bios, "BootMode", mode);
    const char *nic = NULL;
    if (sbot_field_table(L, cfg, "iscsi_boot")) {
        int ib = lua_gettop(L);
        /* the NIC: config, else the site's server entry, else the hook */
        nic = sbot_field_str(L, ib, "nic");
        if (!nic && sbot_field_table(L, self, "server")) {
            nic = sbot_field_str(L, -1, "boot_nic");
            lua_pop(L, 1);
        }
        if (!nic) {
            lua_pushvalue(L, D);
            sbot_component_hook(L, self, "choose_boot_nic", 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "iscsi_boot.nic: not set, and the choose_boot_nic hook returned %s (expected a NIC "
                              "function id such as NIC.Integrated.1-1-1)", luaL_typename(L, -1));
            lua_setfield(L, W, "nic_id");
            nic = sbot_field_str(L, W, "nic_id");
        }
        /* the NIC must be one of the server's functions */
        int found = 0;
        lua_getfield(L, D, "nics");
        int nics = lua_gettop(L);
        lua_Integer nn = (lua_Integer)lua_rawlen(L, nics);
        luaL_Buffer have;
        luaL_buffinit(L, &have);
        for (lua_Integer i = 1; i <= nn; i++) {
            lua_rawgeti(L, nics, i);
            const char *id = sbot_field_str(L, -1, "id");
            if (id && strcmp(id, nic) == 0) {
                found = (int)i;
            }
            lua_pop(L, 1);
        }
        for (lua_Integer i = 1; i <= nn; i++) {
            lua_rawgeti(L, nics, i);
            lua_getfield(L, -1, "id");
            lua_remove(L, -2);
            if (i > 1)
                luaL_addstring(&have, ", ");
            luaL_addvalue(&have);
        }
        luaL_pushresult(&have);
        if (!found)
            luaL_error(L, "iscsi_boot.nic: %s is not a network device function of %s (it has: %s)", nic,
                       host_of(L, self), lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_rawgeti(L, nics, found);
        int nd = lua_gettop(L);
        /* the initiator name: config, else the hook (default: what the BIOS has) */
        int iqnpos;
        if (sbot_field_str(L, ib, "initiator_iqn")) {
            lua_getfield(L, ib, "initiator_iqn");
        } else {
            lua_getfield(L, self, "server");
            lua_pushvalue(L, D);
            sbot_component_hook(L, self, "initiator_iqn", 2);
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                luaL_error(L, "iscsi_boot.initiator_iqn: not set, and the initiator_iqn hook returned %s (expected "
                              "the IQN this server logs in with)", luaL_typename(L, -1));
        }
        iqnpos = lua_gettop(L);
        const char *tiqn = sbot_field_str(L, ib, "target_iqn");
        const char *tip = sbot_field_str(L, ib, "target_ip");
        lua_Integer port = (lua_Integer)sbot_field_num(L, ib, "target_port", 3260);
        lua_Integer lun = (lua_Integer)sbot_field_num(L, ib, "lun", 0);
        int chap = sbot_field_table(L, ib, "chap");
        int ch = chap ? lua_gettop(L) : 0;
        if (chap && sbot_field_bool(L, ch, "resend", 0))
            sbot_set_bool(L, W, "chap_resend", 1);
        if (uefi) {
            lua_pushvalue(L, iqnpos);
            lua_setfield(L, bios, "IscsiInitiatorName");
            sbot_set_str(L, bios, "IscsiDev1EnDis", "Enabled");
            sbot_set_str(L, bios, "IscsiDev1Con1EnDis", "Enabled");
            sbot_set_str(L, bios, "IscsiDev1Con1Interface", nic);
            sbot_set_str(L, bios, "IscsiDev1Con1TgtDhcpEnDis", "Disabled");
            sbot_set_str(L, bios, "IscsiDev1Con1TargetName", tiqn);
            sbot_set_str(L, bios, "IscsiDev1Con1TargetIp", tip);
            lua_pushinteger(L, port);
            lua_setfield(L, bios, "IscsiDev1Con1Port");
            lua_pushfstring(L, "%I", lun);
            lua_setfield(L, bios, "IscsiDev1Con1Lun");
            sbot_set_str(L, bios, "IscsiDev1Con1Auth", chap ? "Chap" : "None");
            if (chap) {
                lua_getfield(L, ch, "user");
                lua_setfield(L, bios, "IscsiDev1Con1ChapName");
                lua_getfield(L, ch, "secret");
                lua_setfield(L, bios, "IscsiDev1Con1ChapSecret");
                sbot_set_bool(L, wo, "IscsiDev1Con1ChapSecret", 1);
            }
        }
        /* the NIC function's own iSCSI boot settings */
        lua_newtable(L);
        int n = lua_gettop(L);
        lua_getfield(L, nd, "id");
        lua_setfield(L, n, "id");
        lua_getfield(L, nd, "path");
        lua_setfield(L, n, "path");
        lua_getfield(L, nd, "settings");
        lua_setfield(L, n, "settings");
        lua_newtable(L);
        int v = lua_gettop(L);
        lua_pushvalue(L, iqnpos);
        lua_setfield(L, v, "InitiatorName");
        sbot_set_bool(L, v, "TargetInfoViaDHCP", 0);
        sbot_set_str(L, v, "PrimaryTargetName", tiqn);
        sbot_set_str(L, v, "PrimaryTargetIPAddress", tip);
        lua_pushinteger(L, port);
        lua_setfield(L, v, "PrimaryTargetTCPPort");
        lua_pushinteger(L, lun);
        lua_setfield(L, v, "PrimaryLUN");
        sbot_set_str(L, v, "AuthenticationMethod", chap ? "CHAP" : "None");
        if (chap) {
            lua_getfield(L, ch, "user");
            lua_setfield(L, v, "CHAPUsername");
            lua_getfield(L, ch, "secret");
            lua_setfield(L, v, "CHAPSecret");
            sbot_set_bool(L, wo, "CHAPSecret", 1);
        }
        lua_setfield(L, n, "values");
        lua_setfield(L, W, "nic");
        lua_settop(L, ib - 1);
    }
    /* the boot order: the device of boot.first first, the rest in their order */
    if (boot && sbot_field_str(L, boot, "first")) {
        const char *first = sbot_field_str(L, boot, "first");
        const char *seq_attr = uefi ? "UefiBootSeq" : "BootSeq";
        sbot_set_str(L, W, "seq_attr", seq_attr);
        lua_getfield(L, D, "bios");
        lua_getfield(L, -1, "attributes");
        const char *cur = sbot_field_str(L, -1, seq_attr);
        lua_pop(L, 2);
        if (!cur)
            luaL_error(L, "boot.first: the BIOS of %s has no %s attribute", host_of(L, self), seq_attr);
        push_split(L, cur);
        int list = lua_gettop(L);
        const char *dev = device_of_kind(L, list, first, uefi ? NULL : nic);
        if (!dev && uefi && strcmp(first, "iscsi") == 0) {
            /* the iSCSI device appears once this run enables it: its name is
             * one of the devices the registry lists for a one-time boot */
            push_reg_values(L, D, "OneTimeUefiBootSeqDev");
            dev = device_of_kind(L, -1, first, NULL);
            if (dev) {
                lua_pushstring(L, dev);
                lua_replace(L, -2);
                dev = lua_tostring(L, -1);
            }
        }
        if (!dev)
            luaL_error(L, "boot.first: no %s device in the %s of %s (%s)", first, seq_attr, host_of(L, self), cur);
        luaL_Buffer b;
        lua_pushstring(L, dev); /* a copy on the stack: dev may point into a list popped below */
        dev = lua_tostring(L, -1);
        luaL_buffinit(L, &b);
        luaL_addstring(&b, dev);
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            const char *s = lua_tostring(L, -1);
            if (s && strcmp(s, dev) != 0) {
                lua_pushfstring(L, ",%s", s);
                lua_remove(L, -2);
                luaL_addvalue(&b);
            } else {
                lua_pop(L, 1);
            }
        }
        luaL_pushresult(&b);
        /* the same order as now: keep the text the BIOS has (never resend it) */
        push_split(L, lua_tostring(L, -1));
        int same = lua_rawlen(L, -1) == lua_rawlen(L, list);
        for (lua_Integer i = 1; same && i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_rawgeti(L, list, i);
            same = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
        if (same) {
            lua_pop(L, 1);
            lua_pushstring(L, cur);
        }
        lua_setfield(L, bios, seq_attr);
        lua_settop(L, boot);
    }
    lua_settop(L, boot ? boot : wo);
    if (sbot_field_table(L, cfg, "virtual_media"))
        lua_setfield(L, W, "vm");
    lua_settop(L, wo);
    lua_setfield(L, W, "write_only");
    lua_setfield(L, W, "bios");
    lua_replace(L, cfg);
    lua_settop(L, cfg);
}

/* ---- checks against the attribute registry ----------------------------------------------- */

/* The registry entry of BIOS attribute name (pushed, 1) or nothing (0). */
static int reg_entry(lua_State *L, int D, const char *name)
{
    if (!sbot_field_table(L, D, "registry"))
        return 0;
    int ok = 0;
    if (sbot_field_table(L, -1, "attributes")) {
        ok = sbot_field_table(L, -1, name);
        if (ok)
            lua_replace(L, -3);
        lua_pop(L, 1);
        if (ok)
            return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Add "line" (on top, popped) to the problems list at idx. */
#define PROBLEM(L, list, ...) (lua_pushfstring((L), __VA_ARGS__), sbot_append((L), (list)))

/* Check every value of `values` (a table at idx) that is in `names` (or all
 * when names == 0) against the registry. nic: check NIC iSCSIBoot properties
 * through their BIOS counterparts. Problems go to the list at problems. */
static void check_values(lua_State *L, int self, int D, int values, int names, int nic, int problems)
{
    luaL_checkstack(L, 20, "r630: checks");
    const char *host = host_of(L, self);
    int have_registry = 0;
    if (sbot_field_table(L, D, "registry")) {
        have_registry = 1;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, values)) {
        int v = lua_gettop(L);
        const char *name = lua_tostring(L, v - 1);
        if (names) {
            lua_pushvalue(L, v - 1);
            int wanted = lua_rawget(L, names) != LUA_TNIL;
            lua_pop(L, 1);
            if (!wanted) {
                lua_pop(L, 1);
                continue;
            }
        }
        const char *attr = nic ? nic_counterpart(name) : name;
        if (nic && strcmp(name, "AuthenticationMethod") == 0) {
            const char *a = lua_tostring(L, v);
            if (!a || (strcmp(a, "None") && strcmp(a, "CHAP") && strcmp(a, "MutualCHAP")))
                PROBLEM(L, problems, "iscsi_boot.chap: AuthenticationMethod %s is not None, CHAP or MutualCHAP", a ? a : "?");
        } else if (nic && strcmp(name, "PrimaryLUN") == 0) {
            /* the BIOS keeps the LUN as text: check its text */
            if (reg_entry(L, D, "IscsiDev1Con1Lun")) {
                lua_pushfstring(L, "%I", (lua_Integer)lua_tointeger(L, v));
                sbot_redfish_check_attribute(L, -2, -1);
                if (!lua_isnil(L, -1))
                    PROBLEM(L, problems, "iscsi_boot.lun: the NIC of %s would refuse PrimaryLUN %d: %s", host,
                            (int)lua_tointeger(L, v), lua_tostring(L, -1));
                lua_settop(L, v);
            }
        } else if (attr) {
            if (!have_registry) {
                PROBLEM(L, problems, "%s: %s publishes no BIOS attribute registry to check %s against", config_key_of(name),
                        host, name);
            } else if (!reg_entry(L, D, attr)) {
                if (!nic)
                    PROBLEM(L, problems, "%s: %s is not an attribute of the BIOS of %s (not in its registry)",
                            config_key_of(name), attr, host);
            } else {
                sbot_redfish_check_attribute(L, -1, v);
                if (!lua_isnil(L, -1)) {
                    push_shown(L, v);
                    PROBLEM(L, problems, "%s: %s would refuse %s = %s: %s", config_key_of(name), host, name,
                            lua_tostring(L, -1), lua_tostring(L, -2));
                }
            }
        }
        lua_settop(L, v - 1);
    }
}

static int compare(lua_State *L, int a, int b, const char *cond)
{
    if (!cond || strcmp(cond, "EQU") == 0)
        return same_value(L, a, b);
    if (strcmp(cond, "NEQ") == 0)
        return !same_value(L, a, b);
    int ok1, ok2;
    lua_Number x = lua_tonumberx(L, a, &ok1), y = lua_tonumberx(L, b, &ok2);
    if (!ok1 || !ok2)
        return 0;
    if (strcmp(cond, "GTR") == 0)
        return x > y;
    if (strcmp(cond, "LSS") == 0)
        return x < y;
    if (strcmp(cond, "GEQ") == 0)
        return x >= y;
    if (strcmp(cond, "LEQ") == 0)
        return x <= y;
    return 0;
}

/* Registry dependencies: would attribute `name` be read-only with the
 * effective values (table at eff: what the BIOS will hold after this PATCH)?
 * Pushes the reason (1) or nothing (0). */
static int read_only_by_dependency(lua_State *L, int D, int eff, const char *name)
{
    luaL_checkstack(L, 20, "r630: checks");
    int top = lua_gettop(L);
    if (!sbot_field_table(L, D, "registry") || !sbot_field_table(L, -1, "dependencies")) {
        lua_settop(L, top);
        return 0;
    }
    int deps = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, deps);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_settop(L, deps);
        if (lua_rawgeti(L, deps, i) != LUA_TTABLE)
            continue;
        const char *df = sbot_field_str(L, -1, "DependencyFor");
        if (!df || strcmp(df, name) != 0 || !sbot_field_table(L, -1, "Dependency"))
            continue;
        int dep = lua_gettop(L);
        const char *to = sbot_field_str(L, dep, "MapToProperty");
        lua_getfield(L, dep, "MapToValue");
        int makes_ro = to && strcmp(to, "ReadOnly") == 0 && lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!makes_ro || !sbot_field_table(L, dep, "MapFrom"))
            continue;
        int from = lua_gettop(L);
        lua_Integer m = (lua_Integer)lua_rawlen(L, from);
        int result = 0;
        const char *first_attr = NULL;
        for (lua_Integer j = 1; j <= m; j++) {
            if (lua_rawgeti(L, from, j) != LUA_TTABLE) {
                lua_pop(L, 1);
                continue;
            }
            int t = lua_gettop(L);
            const char *fa = sbot_field_str(L, t, "MapFromAttribute");
            const char *cond = sbot_field_str(L, t, "MapFromCondition");
            const char *terms = sbot_field_str(L, t, "MapTerms");
            if (!first_attr)
                first_attr = fa;
            lua_getfield(L, eff, fa ? fa : "");
            lua_getfield(L, t, "MapFromValue");
            int r = compare(L, -2, -1, cond);
            lua_pop(L, 2);
            if (j == 1)
                result = r;
            else if (terms && strcmp(terms, "OR") == 0)
                result = result || r;
            else
                result = result && r;
            lua_pop(L, 1);
        }
        if (result) {
            lua_getfield(L, eff, first_attr ? first_attr : "");
            lua_pushfstring(L, "%s is read-only while %s is %s (a dependency in the attribute registry)", name,
                            first_attr ? first_attr : "?", luaL_tolstring(L, -1, NULL));
            lua_copy(L, -1, top + 1);
            lua_settop(L, top + 1);
            return 1;
        }
    }
    lua_settop(L, top);
    return 0;
}

/* The BIOS values a PATCH sends must not be read-only by a registry
 * dependency given what the BIOS will hold (current, pending, this PATCH). */
static void check_dependencies(lua_State *L, int D, int cur, int pend, int diff, int problems)
{
    luaL_checkstack(L, 20, "r630: checks");
    int top = lua_gettop(L);
    lua_newtable(L);
    int eff = lua_gettop(L);
    int srcs[3] = {cur, pend, 0};
    lua_getfield(L, diff, "send");
    srcs[2] = lua_gettop(L);
    for (int i = 0; i < 3; i++) {
        lua_pushnil(L);
        while (lua_next(L, srcs[i])) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, eff);
        }
    }
    lua_pushnil(L);
    while (lua_next(L, srcs[2])) {
        const char *name = lua_tostring(L, -2);
        if (read_only_by_dependency(L, D, eff, name)) {
            lua_pushfstring(L, "%s: %s", config_key_of(name), lua_tostring(L, -1));
            sbot_append(L, problems);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
}

/* ---- plan ---------------------------------------------------------------------------------- */

/* Compare desired values (want) with current (cur) and pending (pend).
 * Pushes R = {send = {}, pending_ok = {}, conflict = {"text", ...}, before,
 * after, n_send, n_ok}. Write-only values (wo) cannot be compared: they are
 * sent only when `with_secret`. */
static void push_diff(lua_State *L, int cur, int pend, int want, int wo, int with_secret, const char *what)
{
    luaL_checkstack(L, 20, "r630: plan");
    lua_newtable(L);
    int R = lua_gettop(L);
    lua_newtable(L);
    int send = lua_gettop(L);
    lua_newtable(L);
    int ok = lua_gettop(L);
    sbot_push_array(L);
    int conflict = lua_gettop(L);
    lua_newtable(L);
    int before = lua_gettop(L);
    lua_newtable(L);
    int after = lua_gettop(L);
    int n_send = 0, n_ok = 0;
    lua_pushnil(L);
    while (lua_next(L, want)) {
        int v = lua_gettop(L);
        const char *name = lua_tostring(L, v - 1);
        lua_pushvalue(L, v - 1);
        int is_wo = lua_rawget(L, wo) != LUA_TNIL;
        lua_pop(L, 1);
        lua_getfield(L, pend, name);
        int p = lua_gettop(L);
        lua_getfield(L, cur, name);
        int c = lua_gettop(L);
        int pending = !lua_isnil(L, p);
        if (is_wo) {
            /* a secret reads back as null: it goes with the other CHAP values */
            if (with_secret) {
                if (pending) {
                    lua_pushvalue(L, v);
                    lua_setfield(L, ok, name);
                    n_ok++;
                } else {
                    lua_pushvalue(L, v);
                    lua_setfield(L, send, name);
                    n_send++;
                }
                lua_pushvalue(L, v);
                lua_setfield(L, after, name);
            } else if (pending && !(lua_islightuserdata(L, p) && !lua_touserdata(L, p))) {
                /* not ours to judge, and not null: leave it */
            }
        } else if (pending) {
            if (same_value(L, p, v)) {
                lua_pushvalue(L, v);
                lua_setfield(L, ok, name);
                n_ok++;
                lua_pushvalue(L, c);
                lua_setfield(L, before, name);
                lua_pushvalue(L, v);
                lua_setfield(L, after, name);
            } else {
                push_shown(L, p);
                push_shown(L, v);
                lua_pushfstring(L, "%s %s is pending as %s, this run wants %s", what, name, lua_tostring(L, -2),
                                lua_tostring(L, -1));
                sbot_append(L, conflict);
                lua_pop(L, 2);
            }
        } else if (!same_value(L, c, v)) {
            lua_pushvalue(L, v);
            lua_setfield(L, send, name);
            n_send++;
            lua_pushvalue(L, c);
            lua_setfield(L, before, name);
            lua_pushvalue(L, v);
            lua_setfield(L, after, name);
        }
        lua_settop(L, v - 1);
    }
    /* pending values this run does not manage would ride along with our job */
    lua_pushnil(L);
    while (lua_next(L, pend)) {
        int v = lua_gettop(L);
        lua_pushvalue(L, v - 1);
        int ours = lua_rawget(L, want) != LUA_TNIL;
        lua_pop(L, 1);
        if (!ours && lua_type(L, v - 1) == LUA_TSTRING && lua_tostring(L, v - 1)[0] != '@') {
            push_shown(L, v);
            lua_pushfstring(L, "%s %s is pending as %s (not set by this component)", what, lua_tostring(L, v - 1),
                            lua_tostring(L, -1));
            sbot_append(L, conflict);
            lua_pop(L, 1);
        }
        lua_settop(L, v - 1);
    }
    lua_pushinteger(L, n_send);
    lua_setfield(L, R, "n_send");
    lua_pushinteger(L, n_ok);
    lua_setfield(L, R, "n_ok");
    lua_setfield(L, R, "after");
    lua_setfield(L, R, "before");
    lua_setfield(L, R, "conflict");
    lua_setfield(L, R, "pending_ok");
    lua_setfield(L, R, "send");
}

/* The unfinished jobs of the discovery at D that target `settings` (list pushed). */
static void push_jobs_for(lua_State *L, int D, const char *settings)
{
    sbot_push_array(L);
    int out = lua_gettop(L);
    if (!sbot_field_table(L, D, "jobs"))
        return;
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *t = sbot_field_str(L, -1, "target");
        if (settings && t && strcmp(t, settings) == 0)
            sbot_append(L, out);
        else
            lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Does the list of strings at idx hold s? */
static int list_has(lua_State *L, int list, const char *s)
{
    list = lua_absindex(L, list);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), s) == 0;
        lua_pop(L, 1);
        if (yes)
            return 1;
    }
    return 0;
}

static int count_keys(lua_State *L, int t)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        n++;
    }
    return n;
}

/* Raise the problems list at idx (if any) as one error. */
static void raise_problems(lua_State *L, int problems, const char *head)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, problems);
    if (n == 0)
        return;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, head);
    for (lua_Integer i = 1; i <= n; i++) {
        luaL_addstring(&b, i == 1 ? "" : "; ");
        lua_rawgeti(L, problems, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_error(L);
}

/* A settings change for one Settings target. kind: "bios" or "nic". */
static void add_settings_change(lua_State *L, int changes, int diff, const char *kind, const char *settings,
                                const char *etag, int apply_time, int job, const char *label, int reboot_jobs)
{
    int n_send = (int)sbot_field_num(L, diff, "n_send", 0), n_ok = (int)sbot_field_num(L, diff, "n_ok", 0);
    if (n_send == 0 && n_ok == 0)
        return;
    if (n_send == 0 && job) {
        /* a scheduled job already carries exactly these values: reuse it */
        lua_getfield(L, job, "path");
        sbot_append(L, reboot_jobs);
        return;
    }
    lua_newtable(L);
    int c = lua_gettop(L);
    sbot_set_str(L, c, "kind", kind);
    sbot_set_str(L, c, "resource", settings);
    sbot_set_str(L, c, "action", "update");
    lua_getfield(L, diff, "before");
    lua_setfield(L, c, "before");
    lua_getfield(L, diff, "after");
    lua_setfield(L, c, "after");
    lua_getfield(L, diff, "send");
    lua_setfield(L, c, "patch");
    sbot_set_str(L, c, "etag", etag);
    sbot_set_bool(L, c, "apply_time", apply_time);
    if (job) {
        lua_getfield(L, job, "path");
        lua_setfield(L, c, "delete_job");
    }
    lua_pushfstring(L, "%s: %d value(s) to set%s, applied by one configuration job at the reboot", label,
                    n_send + n_ok, job ? " (the scheduled job is re-created to take them all)" : "");
    lua_setfield(L, c, "reason");
    sbot_append(L, changes);
}

/* plan(self, client) -> changes */
static int r630_plan(lua_State *L)
{
    luaL_checkstack(L, 60, "r630: plan");
    lua_settop(L, 2);
    int self = 1;
    const char *host = host_of(L, self);
    lua_getfield(L, self, "discovery"); /* 3 */
    int D = 3;
    if (!lua_istable(L, D) || !sbot_field_table(L, D, "system"))
        return luaL_error(L, "plan needs the discovery (run discover first)");
    lua_pop(L, 1);
    lua_getfield(L, self, "config"); /* 4 */
    int cfg = 4;
    push_desired(L, self, D); /* 5 */
    int W = 5;
    sbot_push_array(L); /* 6: changes */
    int changes = 6;
    sbot_push_array(L); /* 7: jobs to run at the reboot that already exist */
    int reboot_jobs = 7;
    sbot_push_array(L); /* 8: problems */
    int problems = 8;
    lua_getfield(L, D, "bios"); /* 9 */
    int bios = 9;
    lua_getfield(L, bios, "attributes"); /* 10 */
    int bcur = 10;
    lua_getfield(L, bios, "pending"); /* 11 */
    int bpend = 11;
    lua_getfield(L, W, "bios"); /* 12 */
    int bwant = 12;
    lua_getfield(L, W, "write_only"); /* 13 */
    int wo = 13;
    int clear = sbot_field_bool(L, cfg, "clear_pending", 0);
    const char *bios_settings = sbot_field_str(L, bios, "settings");

    /* the values, checked against the registry before anything else */
    check_values(L, self, D, bwant, 0, 0, problems);
    int nic = sbot_field_table(L, W, "nic") ? lua_gettop(L) : 0; /* 14 */
    if (!nic)
        lua_pushnil(L), nic = 0;
    int nicpos = 14;
    int nic_d = 0; /* the discovered NIC function */
    if (nic) {
        lua_getfield(L, nicpos, "values");
        check_values(L, self, D, lua_gettop(L), 0, 1, problems);
        lua_pop(L, 1);
        const char *id = sbot_field_str(L, nicpos, "id");
        lua_getfield(L, D, "nics");
        lua_Integer nn = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= nn && !nic_d; i++) {
            lua_rawgeti(L, -1, i);
            const char *x = sbot_field_str(L, -1, "id");
            if (x && id && strcmp(x, id) == 0) {
                lua_replace(L, -2);
                nic_d = lua_gettop(L); /* 15 */
            } else {
                lua_pop(L, 1);
            }
        }
        if (!nic_d) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
    } else {
        lua_pushnil(L);
    }
    /* 15: nic_d or nil */
    if (bwant && count_keys(L, bwant) > 0 && !bios_settings)
        PROBLEM(L, problems, "the BIOS of %s offers no Settings resource to write to", host);
    raise_problems(L, problems, "");

    /* CHAP secrets cannot be read back: they go along when CHAP is being set */
    int bios_secret = 0, nic_secret = 0;
    {
        lua_getfield(L, bwant, "IscsiDev1Con1Auth");
        lua_getfield(L, bcur, "IscsiDev1Con1Auth");
        lua_getfield(L, bwant, "IscsiDev1Con1ChapName");
        lua_getfield(L, bcur, "IscsiDev1Con1ChapName");
        bios_secret = !same_value(L, -4, -3) || !same_value(L, -2, -1);
        lua_pop(L, 4);
        /* the secret changed on the target's side (the iDRAC cannot show
         * whether this one has it): sent along although nothing else moved */
        if (sbot_field_bool(L, W, "chap_resend", 0)) {
            if (lua_getfield(L, bwant, "IscsiDev1Con1ChapSecret") != LUA_TNIL)
                bios_secret = 1;
            lua_pop(L, 1);
        }
        if (nic && nic_d) {
            lua_getfield(L, nicpos, "values");
            lua_getfield(L, nic_d, "iscsi");
            lua_getfield(L, -2, "AuthenticationMethod");
            lua_getfield(L, -2, "AuthenticationMethod");
            lua_getfield(L, -4, "CHAPUsername");
            lua_getfield(L, -4, "CHAPUsername");
            nic_secret = !same_value(L, -4, -3) || !same_value(L, -2, -1) || sbot_field_bool(L, W, "chap_resend", 0);
            lua_pop(L, 6);
        }
    }
    push_diff(L, bcur, bpend, bwant, wo, bios_secret, "BIOS"); /* 16 */
    int bdiff = 16;
    if (nic_d) {
        lua_getfield(L, nic_d, "iscsi");
        lua_getfield(L, nic_d, "pending");
        lua_getfield(L, nicpos, "values");
        push_diff(L, lua_gettop(L) - 2, lua_gettop(L) - 1, lua_gettop(L), wo, nic_secret, "NIC");
        lua_replace(L, -4);
        lua_pop(L, 2);
    } else {
        lua_newtable(L);
    }
    int ndiff = 17;
    int changing = sbot_field_num(L, bdiff, "n_send", 0) > 0 || sbot_field_num(L, ndiff, "n_send", 0) > 0;

    /* the one-time boot from the virtual CD */
    int cd_boot = 0, vm_cfg = sbot_field_table(L, W, "vm") ? lua_gettop(L) : 0; /* 18 */
    if (!vm_cfg)
        lua_pushnil(L);
    int vmpos = 18;
    int use_scp = 0;
    if (vm_cfg && sbot_field_bool(L, vmpos, "boot_once", 1)) {
        lua_getfield(L, self, "server");
        lua_pushvalue(L, D);
        lua_pushboolean(L, changing);
        sbot_component_hook(L, self, "boot_from_cd", 3);
        cd_boot = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (cd_boot) {
        const char *mode = sbot_field_str(L, W, "mode");
        int uefi = mode && strcmp(mode, "Uefi") == 0;
        const char *dev_attr = uefi ? "OneTimeUefiBootSeqDev" : "OneTimeBootSeqDev";
        push_reg_values(L, D, dev_attr);
        const char *dev = device_of_kind(L, -1, "cd", NULL);
        push_reg_values(L, D, "OneTimeBootMode");
        int mode_ok = list_has(L, -1, uefi ? "OneTimeUefiBootSeq" : "OneTimeBootSeq");
        const char *via = sbot_field_str(L, vmpos, "via");
        int want_scp = via && strcmp(via, "scp") == 0;
        if (via && strcmp(via, "bios") == 0 && !(dev && mode_ok))
            return luaL_error(L, "virtual_media.via = bios: the BIOS of %s has no %s with a virtual optical device",
                              host, dev_attr);
        if (dev && mode_ok && !want_scp) {
            /* BIOS one-time boot sequence: part of the BIOS job, no extra reboot */
            lua_newtable(L);
            int once = lua_gettop(L);
            sbot_set_str(L, once, "OneTimeBootMode", uefi ? "OneTimeUefiBootSeq" : "OneTimeBootSeq");
            sbot_set_str(L, once, dev_attr, dev);
            check_values(L, self, D, once, 0, 0, problems);
            raise_problems(L, problems, "");
            lua_pushnil(L);
            while (lua_next(L, once)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_settable(L, bwant);
            }
            lua_pop(L, 1);
            lua_settop(L, vmpos);
            push_diff(L, bcur, bpend, bwant, wo, bios_secret, "BIOS");
            lua_replace(L, bdiff);
        } else if (sbot_field_table(L, D, "manager") && sbot_field_table(L, -1, "scp")) {
            use_scp = 1;
            lua_settop(L, vmpos);
        } else {
            return luaL_error(L, "virtual_media.boot_once: %s offers no way to boot the virtual CD once (no BIOS "
                                 "%s with a virtual optical device, no Server Configuration Profile import); "
                                 "BootSourceOverrideTarget Cd would boot the physical drive", host, dev_attr);
        }
    }

    /* pending configuration: reuse what carries our values, refuse what does not */
    sbot_push_array(L); /* 19: conflicts */
    int conflicts = 19;
    const char *nic_settings = nic_d ? sbot_field_str(L, nic_d, "settings") : NULL;
    for (int t = 0; t < 2; t++) {
        int diff = t ? ndiff : bdiff;
        if (!lua_istable(L, diff) || !sbot_field_table(L, diff, "conflict"))
            continue;
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            sbot_append(L, conflicts);
        }
        lua_pop(L, 1);
    }
    int will_reboot = changing || cd_boot || sbot_field_num(L, bdiff, "n_ok", 0) > 0 || sbot_field_num(L, ndiff, "n_ok",
                                                                                                       0) > 0;
    if (sbot_field_table(L, D, "jobs")) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            int jb = lua_gettop(L);
            const char *t = sbot_field_str(L, jb, "target");
            const char *jid = sbot_field_str(L, jb, "id");
            const char *jname = sbot_field_str(L, jb, "name");
            int ours = t && ((bios_settings && strcmp(t, bios_settings) == 0) ||
                             (nic_settings && strcmp(t, nic_settings) == 0));
            const char *state = sbot_field_str(L, jb, "state");
            if (!ours && will_reboot) {
                lua_pushfstring(L, "job %s (%s, %s) would run at this run's reboot", jid ? jid : "?",
                                state ? state : "?", t ? t : (jname ? jname : "no target"));
                sbot_append(L, conflicts);
            } else if (ours && state && strcmp(state, "Running") == 0) {
                lua_pushfstring(L, "job %s is running on %s", jid ? jid : "?", t);
                sbot_append(L, conflicts);
            } else if (ours) {
                /* a scheduled job for our target with foreign pending values */
                int diff = (bios_settings && strcmp(t, bios_settings) == 0) ? bdiff : ndiff;
                if (sbot_field_table(L, diff, "conflict")) {
                    if (lua_rawlen(L, -1) > 0) {
                        lua_pushfstring(L, "job %s (%s) would apply those pending values", jid ? jid : "?",
                                        state ? state : "?");
                        sbot_append(L, conflicts);
                    }
                    lua_pop(L, 1);
                }
            }
            lua_settop(L, jb - 1);
        }
        lua_pop(L, 1);
    }
    int clearing = 0;
    if (lua_rawlen(L, conflicts) > 0) {
        if (!clear) {
            lua_pushfstring(L, "pending configuration on %s conflicts with this run (set clear_pending = true to "
                               "delete every pending job and value first): ", host);
            raise_problems(L, conflicts, lua_tostring(L, -1));
        }
        lua_getfield(L, D, "manager");
        const char *js = sbot_field_str(L, -1, "job_service");
        lua_pop(L, 1);
        if (!js)
            return luaL_error(L, "clear_pending: %s offers no DellJobService to clear its job queue", host);
        clearing = 1;
        lua_newtable(L);
        int c = lua_gettop(L);
        sbot_set_str(L, c, "kind", "clear_pending");
        sbot_set_str(L, c, "resource", js);
        sbot_set_str(L, c, "action", "delete");
        lua_getfield(L, D, "jobs");
        lua_setfield(L, c, "before");
        lua_pushvalue(L, conflicts);
        lua_setfield(L, c, "conflicts");
        sbot_set_str(L, c, "reason", "clear_pending: pending jobs and values conflict with this run");
        sbot_append(L, changes);
        /* with the queue cleared, compare against current values only */
        lua_newtable(L);
        lua_replace(L, bpend);
        push_diff(L, bcur, bpend, bwant, wo, bios_secret, "BIOS");
        lua_replace(L, bdiff);
        if (nic_d) {
            lua_getfield(L, nic_d, "iscsi");
            lua_newtable(L);
            lua_getfield(L, nicpos, "values");
            push_diff(L, lua_gettop(L) - 2, lua_gettop(L) - 1, lua_gettop(L), wo, nic_secret, "NIC");
            lua_replace(L, ndiff);
            lua_pop(L, 3);
        }
    }

    /* virtual media: eject whatever else is inserted, then insert */
    if (vm_cfg && (cd_boot || !sbot_field_bool(L, vmpos, "boot_once", 1))) {
        const char *url = sbot_field_str(L, vmpos, "image_url");
        if (!sbot_field_table(L, D, "virtual_media"))
            return luaL_error(L, "virtual_media: %s has no virtual CD (no VirtualMedia member with MediaTypes CD or DVD)",
                              host);
        int cd = lua_gettop(L);
        const char *img = sbot_field_str(L, cd, "image");
        int inserted = sbot_field_bool(L, cd, "inserted", 0);
        if (inserted && img && url && strcmp(img, url) == 0 && !cd_boot) {
            /* in place */
        } else {
            if (inserted) {
                lua_newtable(L);
                int c = lua_gettop(L);
                sbot_set_str(L, c, "kind", "eject");
                lua_getfield(L, cd, "path");
                lua_setfield(L, c, "resource");
                sbot_set_str(L, c, "action", "delete");
                lua_newtable(L);
                sbot_set_str(L, -1, "image", img);
                lua_setfield(L, c, "before");
                lua_getfield(L, cd, "eject");
                lua_setfield(L, c, "target");
                sbot_set_str(L, c, "reason", img && url && strcmp(img, url) == 0
                                         ? "eject before inserting again (the one-time boot reads a fresh mount)"
                                         : "another image is inserted: eject before insert");
                sbot_append(L, changes);
            }
            lua_newtable(L);
            int c = lua_gettop(L);
            sbot_set_str(L, c, "kind", "insert");
            lua_getfield(L, cd, "path");
            lua_setfield(L, c, "resource");
            sbot_set_str(L, c, "action", inserted ? "update" : "create");
            lua_newtable(L);
            sbot_set_bool(L, -1, "inserted", inserted);
            sbot_set_str(L, -1, "image", img);
            lua_setfield(L, c, "before");
            lua_newtable(L);
            sbot_set_str(L, -1, "image", url);
            lua_setfield(L, c, "after");
            lua_getfield(L, cd, "insert");
            lua_setfield(L, c, "target");
            sbot_set_str(L, c, "reason", cd_boot ? "the image this server boots once" : "the image stays inserted");
            sbot_append(L, changes);
        }
        lua_pop(L, 1);
    }
    if (use_scp) {
        lua_newtable(L);
        int c = lua_gettop(L);
        sbot_set_str(L, c, "kind", "scp_boot_once");
        lua_getfield(L, D, "manager");
        lua_getfield(L, -1, "scp");
        lua_getfield(L, -1, "target");
        lua_setfield(L, c, "resource");
        lua_getfield(L, -1, "target");
        lua_setfield(L, c, "target");
        lua_pop(L, 2);
        sbot_set_str(L, c, "action", "update");
        lua_newtable(L);
        sbot_set_str(L, -1, "ServerBoot.1#BootOnce", "Enabled");
        sbot_set_str(L, -1, "ServerBoot.1#FirstBootDevice", "VCD-DVD");
        lua_setfield(L, c, "after");
        sbot_set_str(L, c, "reason",
                     "boot the virtual CD once (Server Configuration Profile import: the BIOS has no one-time boot "
                     "attributes)");
        sbot_append(L, changes);
    }

    /* what the PATCH sends must be writable given what the BIOS will hold */
    check_dependencies(L, D, bcur, bpend, bdiff, problems);
    raise_problems(L, problems, "");

    /* the Settings targets: one PATCH and one job each */
    lua_getfield(L, bios, "apply_times");
    int bios_apply_time = lua_istable(L, -1) && list_has(L, -1, "OnReset");
    lua_pop(L, 1);
    push_jobs_for(L, D, bios_settings);
    lua_rawgeti(L, -1, 1);
    int bjob = clearing || lua_isnil(L, -1) ? 0 : lua_gettop(L);
    add_settings_change(L, changes, bdiff, "bios", bios_settings, sbot_field_str(L, bios, "settings_etag"),
                        bios_apply_time,
                        bjob, "BIOS", reboot_jobs);
    lua_settop(L, conflicts);
    if (nic_d && nic_settings) {
        push_jobs_for(L, D, nic_settings);
        lua_rawgeti(L, -1, 1);
        int njob = clearing || lua_isnil(L, -1) ? 0 : lua_gettop(L);
        lua_pushfstring(L, "NIC %s", sbot_field_str(L, nic_d, "id"));
        add_settings_change(L, changes, ndiff, "nic", nic_settings, sbot_field_str(L, nic_d, "settings_etag"), 0, njob,
                            lua_tostring(L, -1), reboot_jobs);
        lua_settop(L, conflicts);
    } else if (nic && !nic_d) {
        return luaL_error(L, "iscsi_boot.nic: the NIC function was not found in the discovery");
    }

    /* exactly one reboot at the end, if anything needs one */
    int need_reboot = lua_rawlen(L, reboot_jobs) > 0 || cd_boot;
    lua_Integer nch = (lua_Integer)lua_rawlen(L, changes);
    for (lua_Integer i = 1; i <= nch; i++) {
        lua_rawgeti(L, changes, i);
        const char *k = sbot_field_str(L, -1, "kind");
        if (k && (strcmp(k, "bios") == 0 || strcmp(k, "nic") == 0))
            need_reboot = 1;
        lua_pop(L, 1);
    }
    if (need_reboot) {
        lua_newtable(L);
        int c = lua_gettop(L);
        sbot_set_str(L, c, "kind", "reboot");
        lua_getfield(L, D, "system");
        lua_getfield(L, -1, "path");
        lua_setfield(L, c, "resource");
        lua_newtable(L);
        lua_getfield(L, -2, "power_state");
        lua_setfield(L, -2, "power_state");
        lua_setfield(L, c, "before");
        lua_pop(L, 1);
        sbot_set_str(L, c, "action", "update");
        lua_newtable(L);
        const char *how = "graceful_then_force";
        if (sbot_field_table(L, cfg, "power")) {
            if (sbot_field_str(L, -1, "reboot"))
                how = sbot_field_str(L, -1, "reboot");
            lua_pop(L, 1);
        }
        sbot_set_str(L, -1, "reset", how);
        lua_pushvalue(L, reboot_jobs);
        lua_setfield(L, -2, "scheduled_jobs");
        lua_setfield(L, c, "after");
        lua_pushvalue(L, reboot_jobs);
        lua_setfield(L, c, "jobs");
        sbot_set_bool(L, c, "cd_boot", cd_boot);
        sbot_set_str(L, c, "reason", cd_boot ? "one reboot: run the configuration jobs and boot the virtual CD once"
                                     : "one reboot: run the configuration jobs");
        sbot_append(L, changes);
    }
    lua_pushvalue(L, changes);
    return 1;
}

/* ---- apply ---------------------------------------------------------------------------------- */

static int noop(lua_State *L)
{
    (void)L;
    return 0;
}

/* Sleep, letting Ctrl-C (the runtime's hook) stop it. */
static void nap(lua_State *L, double secs)
{
    sbot_sleep(secs);
    lua_pushcfunction(L, noop);
    lua_call(L, 0, 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The config section k's number field f (default d). */
static double cfgnum(lua_State *L, int self, const char *k, const char *f, double d)
{
    double v = d;
    lua_getfield(L, self, "config");
    if (sbot_field_table(L, -1, k)) {
        v = sbot_field_num(L, -1, f, d);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

/* Is the failure code at idx a transport word for a request that got no
 * answer (closed, io, timeout): it may or may not have arrived? (A device's
 * MessageId or an HTTP status is an answer.) */
static int no_answer(lua_State *L, int idx)
{
    const char *code = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    return code && (strcmp(code, "closed") == 0 || strcmp(code, "io") == 0 || strcmp(code, "timeout") == 0);
}

/* POST body (table at idx, or 0 for {}) to path. Returns 1 and pushes the
 * result, or 0 and pushes message, code (the failure, shortened). */
static int post(lua_State *L, int cl, const char *path, int body)
{
    int n = sbot_redfish_post(L, cl, path, body);
    if (n == 1)
        return 1;
    int first = lua_gettop(L) - n + 1;
    lua_pushvalue(L, first + 1);
    lua_pushvalue(L, first + 2);
    lua_replace(L, first + 1);
    lua_replace(L, first);
    lua_settop(L, first + 1);
    return 0;
}

static const char *power_state(lua_State *L, int cl, const char *sys, char out[32])
{
    rget(L, cl, sys, 0);
    const char *p = sbot_field_str(L, -1, "PowerState");
    snprintf(out, 32, "%s", p ? p : "Unknown");
    lua_pop(L, 1);
    return out;
}

static int wait_power(lua_State *L, int cl, const char *sys, const char *want, double timeout, double interval)
{
    double end = now_s() + timeout;
    char ps[32], detail[96];
    for (;;) {
        const char *now = power_state(L, cl, sys, ps);
        /* the reboot is a wait of sbot.progress (docs/progress.md) */
        snprintf(detail, sizeof detail, "power %s, waiting for %s", now, want);
        sbot_progress_detail(L, "reboot", SBOT_PROGRESS_UNKNOWN, detail);
        if (strcmp(now, want) == 0)
            return 1;
        if (now_s() >= end)
            return 0;
        nap(L, interval);
    }
}

/* POST a ResetType the system lists. 409 (already in that state) is fine. */
static void reset(lua_State *L, int self, int cl, const char *target, const char *type)
{
    const char *id = sbot_field_str(L, self, "id");
    sbot_log(L, SBOT_INFO, "r630 (%s): ComputerSystem.Reset %s", id ? id : "?", type);
    lua_newtable(L);
    sbot_set_str(L, -1, "ResetType", type);
    int top = lua_gettop(L);
    int ok = post(L, cl, target, top);
    if (!ok && no_answer(L, -1)) {
        /* no answer: the request may not have arrived; a second one of
         * the same type does no harm (409 when it had) */
        lua_settop(L, top);
        ok = post(L, cl, target, top);
    }
    if (!ok) {
        /* the code: a MessageId or transport word, or the HTTP status (an
         * integer) of an answer without a MessageId */
        int conflict = lua_isinteger(L, -1) && lua_tointeger(L, -1) == 409;
        const char *code = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        const char *msg = lua_tostring(L, -2);
        if (!(conflict || no_answer(L, -1) || (code && (strcmp(code, "RAC0508") == 0 || strcmp(code, "RAC0509") == 0))))
            luaL_error(L, "reboot: %s", msg);
        /* already there, or no answer: the power state read next decides */
        sbot_log(L, SBOT_INFO, "r630 (%s): reset %s: %s", id ? id : "?", type, msg);
    }
    lua_settop(L, top - 1);
}


/* The jobs this run made or reuses (list of paths pushed): the results of
 * applied settings changes, plus the scheduled jobs the reboot change names. */
static void push_run_jobs(lua_State *L, int self, int extra)
{
    sbot_push_array(L);
    int out = lua_gettop(L);
    if (sbot_field_table(L, self, "processing")) {
        if (sbot_field_table(L, -1, "applied")) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                if (sbot_field_table(L, -1, "result")) {
                    if (sbot_field_str(L, -1, "job")) {
                        lua_getfield(L, -1, "job");
                        sbot_append(L, out);
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (extra && lua_istable(L, extra)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, extra);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, extra, i);
            sbot_append(L, out);
        }
    }
}

/* Find the unfinished job for Settings `target` in the job queue (path pushed, 1) or 0. */
static int find_job_for(lua_State *L, int cl, const char *jobs, const char *target)
{
    if (!jobs)
        return 0;
    rget(L, cl, jobs, 0);
    int coll = lua_gettop(L);
    lua_getfield(L, coll, "Members");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = n; i >= 1; i--) { /* newest last */
        lua_rawgeti(L, -1, i);
        const char *p = sbot_field_str(L, -1, "@odata.id");
        lua_pop(L, 1);
        if (!p)
            continue;
        rget(L, cl, p, 1);
        if (lua_istable(L, -1)) {
            const char *t = sbot_field_str(L, -1, "TargetSettingsURI");
            if (t && strcmp(t, target) == 0 && !job_done(sbot_field_str(L, -1, "JobState"))) {
                lua_pushstring(L, p);
                lua_replace(L, coll);
                lua_settop(L, coll);
                return 1;
            }
        }
        lua_pop(L, 1);
    }
    lua_settop(L, coll - 1);
    return 0;
}

static int apply_settings(lua_State *L, int self, int change, int cl)
{
    const char *kind = sbot_field_str(L, change, "kind");
    const char *settings = sbot_field_str(L, change, "resource");
    lua_getfield(L, self, "discovery");
    int D = lua_gettop(L);
    lua_getfield(L, D, "manager");
    const char *jobs = sbot_field_str(L, -1, "jobs");
    lua_pop(L, 1);
    /* a scheduled job takes no more values: delete it first (its pending values stay) */
    const char *old = sbot_field_str(L, change, "delete_job");
    if (old) {
        int n = sbot_redfish_delete(L, cl, old);
        if (n != 1 && !(n == 4 && lua_tointeger(L, -1) == 404))
            return luaL_error(L, "delete job %s: %s", old, lua_tostring(L, -n + 1));
        lua_pop(L, n);
    }
    const char *job = NULL;
    lua_getfield(L, change, "patch");
    int patch = lua_gettop(L);
    if (lua_istable(L, patch) && count_keys(L, patch) > 0) {
        lua_newtable(L);
        int body = lua_gettop(L);
        lua_pushvalue(L, patch);
        lua_setfield(L, body, strcmp(kind, "bios") == 0 ? "Attributes" : "iSCSIBoot");
        if (sbot_field_bool(L, change, "apply_time", 0)) {
            lua_newtable(L);
            sbot_set_str(L, -1, "ApplyTime", "OnReset");
            lua_setfield(L, body, "@Redfish.SettingsApplyTime");
        }
        lua_newtable(L);
        int opts = lua_gettop(L);
        if (sbot_field_str(L, change, "etag") && !old)
            sbot_set_str(L, opts, "etag", sbot_field_str(L, change, "etag"));
        int n = 0;
        for (int attempt = 1; attempt <= 3; attempt++) {
            n = sbot_redfish_patch(L, cl, settings, body, count_keys(L, opts) ? opts : 0);
            if (n == 1)
                break;
            if (!no_answer(L, -n + 2) || attempt == 3)
                return luaL_error(L, "PATCH %s: %s", settings, lua_tostring(L, -n + 1));
            /* no answer: did the values arrive? (a PATCH sets values: sending it again is harmless) */
            lua_pop(L, n);
            rget(L, cl, settings, 0);
            int arrived = sbot_field_table(L, -1, strcmp(kind, "bios") == 0 ? "Attributes" : "iSCSIBoot");
            if (arrived) {
                int pend = lua_gettop(L);
                lua_pushnil(L);
                while (arrived && lua_next(L, patch)) {
                    lua_getfield(L, pend, lua_tostring(L, -2));
                    /* a secret reads back as null: it arrived with the others */
                    if (!is_secret(L, -2) && !same_value(L, -1, -2))
                        arrived = 0;
                    lua_pop(L, 2);
                }
                if (!arrived)
                    lua_pop(L, 1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            if (arrived && !sbot_field_bool(L, change, "apply_time", 0)) {
                lua_newtable(L); /* a result without a job: the job POST follows */
                n = 1;
                break;
            }
            if (arrived && find_job_for(L, cl, jobs, settings)) {
                /* the PATCH arrived and scheduled its job (apply time) */
                lua_newtable(L);
                lua_insert(L, -2);
                lua_setfield(L, -2, "location");
                lua_pushliteral(L, "job");
                lua_setfield(L, -2, "job_id");
                n = 1;
                break;
            }
            lua_settop(L, opts);
            if (lua_getfield(L, opts, "etag") != LUA_TNIL) {
                /* the ETag may have changed if it did arrive: read it again */
                lua_pushnil(L);
                lua_setfield(L, opts, "etag");
            }
            lua_pop(L, 1);
        }
        job = sbot_field_str(L, -1, "location");
        if (job && !sbot_field_str(L, -1, "job_id"))
            job = NULL;
        if (job) {
            lua_getfield(L, -1, "location");
            lua_setfield(L, change, "created_job");
            job = sbot_field_str(L, change, "created_job");
        }
    }
    if (!job) {
        if (!jobs)
            return luaL_error(L, "%s: the manager offers no job queue to run the change", settings);
        lua_newtable(L);
        sbot_set_str(L, -1, "TargetSettingsURI", settings);
        if (post(L, cl, jobs, lua_gettop(L))) {
            job = sbot_field_str(L, -1, "location");
            if (!job)
                return luaL_error(L, "POST %s: the answer names no job (no Location)", jobs);
        } else {
            /* SYS011 (already committed) or no answer: the queue says whether a job exists */
            const char *msg = lua_tostring(L, -2);
            if (!find_job_for(L, cl, jobs, settings))
                return luaL_error(L, "create the configuration job for %s: %s", settings, msg);
            job = lua_tostring(L, -1);
        }
        lua_pushstring(L, job);
        lua_setfield(L, change, "created_job");
        job = sbot_field_str(L, change, "created_job");
    }
    lua_newtable(L);
    sbot_set_str(L, -1, "job", job);
    const char *slash = strrchr(job, '/');
    sbot_set_str(L, -1, "job_id", slash ? slash + 1 : job);
    lua_getfield(L, change, "after");
    lua_setfield(L, -2, "set");
    return 1;
}

static int apply_reboot(lua_State *L, int self, int change, int cl)
{
    lua_getfield(L, self, "discovery");
    int D = lua_gettop(L);
    lua_getfield(L, D, "system");
    int sysd = lua_gettop(L);
    const char *sys = sbot_field_str(L, sysd, "path");
    const char *target = sbot_field_str(L, sysd, "reset_target");
    lua_getfield(L, sysd, "reset_types");
    int types = lua_gettop(L);
    if (!target || !lua_istable(L, types))
        return luaL_error(L, "reboot: the system %s lists no ComputerSystem.Reset action with ResetType values", sys);
    lua_getfield(L, change, "after");
    const char *how = sbot_field_str(L, -1, "reset");
    lua_pop(L, 1);
    double timeout = cfgnum(L, self, "power", "timeout", 300);
    double interval = cfgnum(L, self, "power", "interval", 5);
    char ps[32];
    const char *state = power_state(L, cl, sys, ps);
    lua_newtable(L);
    int res = lua_gettop(L);
    sbot_push_array(L);
    int steps = lua_gettop(L);
    int forced = 0;
    if (strcmp(state, "Off") != 0) {
        int graceful = how && strcmp(how, "graceful_then_force") == 0 && list_has(L, types, "GracefulShutdown");
        if (graceful) {
            reset(L, self, cl, target, "GracefulShutdown");
            lua_pushliteral(L, "GracefulShutdown");
            sbot_append(L, steps);
            if (!wait_power(L, cl, sys, "Off", timeout, interval)) {
                const char *id = sbot_field_str(L, self, "id");
                sbot_log(L, SBOT_WARN, "r630 (%s): still on %d s after GracefulShutdown; forcing it off", id ? id : "?",
                         (int)timeout);
                forced = 1;
            }
        }
        if (!graceful || forced) {
            if (!list_has(L, types, "ForceOff"))
                return luaL_error(L, "reboot: %s lists no ForceOff (its ResetTypes: %s)", sys,
                                  luaL_tolstring(L, types, NULL));
            reset(L, self, cl, target, "ForceOff");
            lua_pushliteral(L, "ForceOff");
            sbot_append(L, steps);
            if (!wait_power(L, cl, sys, "Off", timeout, interval))
                return luaL_error(L, "reboot: %s is still %s %d s after ForceOff", sys, power_state(L, cl, sys, ps),
                                  (int)timeout);
        }
    }
    if (!list_has(L, types, "On"))
        return luaL_error(L, "reboot: %s lists no On ResetType", sys);
    reset(L, self, cl, target, "On");
    lua_pushliteral(L, "On");
    sbot_append(L, steps);
    if (!wait_power(L, cl, sys, "On", timeout, interval)) {
        /* On without an answer may not have arrived: once more */
        reset(L, self, cl, target, "On");
        if (!wait_power(L, cl, sys, "On", timeout, interval))
            return luaL_error(L, "reboot: %s is still %s %d s after On", sys, power_state(L, cl, sys, ps), (int)timeout);
    }
    sbot_progress_end(L, "reboot");
    lua_pushvalue(L, steps);
    lua_setfield(L, res, "resets");
    sbot_set_bool(L, res, "forced", forced);

    /* every job of this run, with progress */
    lua_getfield(L, change, "jobs");
    push_run_jobs(L, self, lua_gettop(L));
    int jl = lua_gettop(L);
    lua_newtable(L);
    int done = lua_gettop(L);
    sbot_push_array(L);
    int failed = lua_gettop(L);
    lua_newtable(L);
    int wopts = lua_gettop(L);
    lua_pushnumber(L, cfgnum(L, self, "jobs", "timeout", 1800));
    lua_setfield(L, wopts, "timeout");
    lua_pushnumber(L, cfgnum(L, self, "jobs", "interval", 5));
    lua_setfield(L, wopts, "interval");
    /* no progress function: each job is a wait of sbot.progress ("iDRAC job
     * JID_..."), its percent and state on the board or in log lines */
    lua_Integer n = (lua_Integer)lua_rawlen(L, jl);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, jl, i);
        const char *jp = lua_tostring(L, -1);
        const char *slash = strrchr(jp, '/');
        const char *jid = slash ? slash + 1 : jp;
        int k = sbot_redfish_wait_job(L, cl, jp, wopts);
        if (k == 1) {
            sbot_set_str(L, done, jid, "Completed");
        } else {
            lua_pushvalue(L, -k + 1);
            sbot_append(L, failed);
            sbot_set_str(L, done, jid, "Failed");
        }
        lua_pop(L, k + 1);
    }
    lua_pushvalue(L, done);
    lua_setfield(L, res, "jobs");
    if (lua_rawlen(L, failed) > 0)
        raise_problems(L, failed, "");
    lua_pushvalue(L, res);
    return 1;
}

/* Insert url (insert) or eject the virtual CD at path through its action
 * target, until the device shows it done. A refusal that means "already
 * so" (VRM0021, VRM0012) or no answer is settled by reading the device;
 * no answer and not done: the POST did not arrive, send it again. Returns
 * 1, or 0 with the reason pushed. */
static int media_action(lua_State *L, int cl, const char *target, const char *path, int insert, const char *url)
{
    int top = lua_gettop(L);
    for (int attempt = 1; attempt <= 3; attempt++) {
        lua_settop(L, top);
        lua_newtable(L);
        int body = lua_gettop(L);
        if (insert) {
            sbot_set_str(L, body, "Image", url);
            sbot_set_bool(L, body, "Inserted", 1);
            sbot_set_bool(L, body, "WriteProtected", 1);
        }
        if (post(L, cl, target, body)) {
            lua_settop(L, top);
            return 1;
        }
        int lost = no_answer(L, -1);
        rget(L, cl, path, 0);
        int inserted = sbot_field_bool(L, -1, "Inserted", 0);
        const char *img = sbot_field_str(L, -1, "Image");
        int done = insert ? (inserted && img && url && strcmp(img, url) == 0) : !inserted;
        lua_pop(L, 1);
        if (done) {
            lua_settop(L, top);
            return 1;
        }
        if (!lost || attempt == 3) {
            lua_pushfstring(L, "%s %s: %s", insert ? "insert" : "eject", path, lua_tostring(L, -2));
            lua_copy(L, -1, top + 1);
            lua_settop(L, top + 1);
            return 0;
        }
    }
    return 0;
}

static int apply_media(lua_State *L, int change, int cl, int insert)
{
    const char *target = sbot_field_str(L, change, "target");
    const char *path = sbot_field_str(L, change, "resource");
    const char *url = NULL;
    if (insert) {
        lua_getfield(L, change, "after");
        url = sbot_field_str(L, -1, "image");
    }
    if (!target)
        return luaL_error(L, "%s: the virtual CD offers no %s action", path, insert ? "InsertMedia" : "EjectMedia");
    if (!media_action(L, cl, target, path, insert, url))
        return lua_error(L);
    lua_newtable(L);
    sbot_set_bool(L, -1, "inserted", insert);
    if (url)
        sbot_set_str(L, -1, "image", url);
    return 1;
}

static int apply_clear(lua_State *L, int change, int cl)
{
    const char *js = sbot_field_str(L, change, "resource");
    rget(L, cl, js, 0);
    const char *target = NULL;
    if (sbot_field_table(L, -1, "Actions")) {
        if (sbot_field_table(L, -1, "#DellJobService.DeleteJobQueue")) {
            target = sbot_field_str(L, -1, "target");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (!target)
        return luaL_error(L, "clear_pending: %s offers no DellJobService.DeleteJobQueue action", js);
    lua_newtable(L);
    sbot_set_str(L, -1, "JobID", "JID_CLEARALL");
    if (!post(L, cl, target, lua_gettop(L)))
        return luaL_error(L, "clear_pending: %s", lua_tostring(L, -2));
    lua_newtable(L);
    sbot_set_bool(L, -1, "cleared", 1);
    return 1;
}

static int apply_scp(lua_State *L, int self, int change, int cl)
{
    const char *target = sbot_field_str(L, change, "target");
    lua_newtable(L);
    int body = lua_gettop(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "Target", "IDRAC");
    lua_setfield(L, body, "ShareParameters");
    sbot_set_str(L, body, "ShutdownType", "NoReboot");
    sbot_set_str(L, body, "ImportBuffer",
         "<SystemConfiguration><Component FQDD=\"iDRAC.Embedded.1\">"
         "<Attribute Name=\"ServerBoot.1#BootOnce\">Enabled</Attribute>"
         "<Attribute Name=\"ServerBoot.1#FirstBootDevice\">VCD-DVD</Attribute>"
         "</Component></SystemConfiguration>");
    if (!post(L, cl, target, body))
        return luaL_error(L, "Server Configuration Profile import: %s", lua_tostring(L, -2));
    const char *loc = sbot_field_str(L, -1, "location");
    if (!loc)
        return luaL_error(L, "Server Configuration Profile import: the answer names no task");
    lua_newtable(L);
    int wopts = lua_gettop(L);
    lua_pushnumber(L, cfgnum(L, self, "jobs", "timeout", 1800));
    lua_setfield(L, wopts, "timeout");
    lua_pushnumber(L, cfgnum(L, self, "jobs", "interval", 5));
    lua_setfield(L, wopts, "interval");
    int k = sbot_redfish_wait_job(L, cl, loc, wopts);
    if (k != 1)
        return luaL_error(L, "Server Configuration Profile import: %s", lua_tostring(L, -k + 1));
    lua_newtable(L);
    sbot_set_str(L, -1, "task", loc);
    return 1;
}

/* apply(self, change, client) */
static int r630_apply(lua_State *L)
{
    luaL_checkstack(L, 60, "r630: apply");
    lua_settop(L, 3);
    const char *kind = sbot_field_str(L, 2, "kind");
    if (!kind)
        return luaL_error(L, "r630: a change without a kind (not from this component's plan)");
    if (strcmp(kind, "bios") == 0 || strcmp(kind, "nic") == 0)
        return apply_settings(L, 1, 2, 3);
    if (strcmp(kind, "reboot") == 0)
        return apply_reboot(L, 1, 2, 3);
    if (strcmp(kind, "insert") == 0)
        return apply_media(L, 2, 3, 1);
    if (strcmp(kind, "eject") == 0)
        return apply_media(L, 2, 3, 0);
    if (strcmp(kind, "clear_pending") == 0)
        return apply_clear(L, 2, 3);
    if (strcmp(kind, "scp_boot_once") == 0)
        return apply_scp(L, 1, 2, 3);
    return luaL_error(L, "r630: unknown change kind %s", kind);
}

/* undo(self, change, client): what the device allows to take back. */
static int r630_undo(lua_State *L)
{
    luaL_checkstack(L, 40, "r630: undo");
    lua_settop(L, 3);
    const char *kind = sbot_field_str(L, 2, "kind");
    if (!kind)
        return luaL_error(L, "r630: a change without a kind");
    if (strcmp(kind, "insert") == 0) {
        lua_getfield(L, 1, "discovery");
        lua_getfield(L, -1, "virtual_media");
        const char *eject = lua_istable(L, -1) ? sbot_field_str(L, -1, "eject") : NULL;
        if (!eject)
            return luaL_error(L, "undo insert: no EjectMedia action");
        lua_newtable(L);
        if (!post(L, 3, eject, lua_gettop(L))) {
            const char *code = lua_tostring(L, -1);
            if (!code || strcmp(code, "VRM0012") != 0)
                return luaL_error(L, "undo insert: eject: %s", lua_tostring(L, -2));
        }
        lua_newtable(L);
        sbot_set_bool(L, -1, "ejected", 1);
        return 1;
    }
    if (strcmp(kind, "eject") == 0) {
        lua_getfield(L, 2, "before");
        const char *img = sbot_field_str(L, -1, "image");
        lua_getfield(L, 1, "discovery");
        lua_getfield(L, -1, "virtual_media");
        const char *insert = lua_istable(L, -1) ? sbot_field_str(L, -1, "insert") : NULL;
        if (!img || !insert)
            return luaL_error(L, "undo eject: the image that was inserted is not known");
        lua_newtable(L);
        sbot_set_str(L, -1, "Image", img);
        sbot_set_bool(L, -1, "Inserted", 1);
        sbot_set_bool(L, -1, "WriteProtected", 1);
        if (!post(L, 3, insert, lua_gettop(L)))
            return luaL_error(L, "undo eject: insert %s again: %s", img, lua_tostring(L, -2));
        lua_newtable(L);
        sbot_set_str(L, -1, "inserted", img);
        return 1;
    }
    if (strcmp(kind, "bios") == 0 || strcmp(kind, "nic") == 0) {
        const char *job = sbot_field_str(L, 2, "created_job");
        if (!job)
            return luaL_error(L, "undo: no job was created for %s", sbot_field_str(L, 2, "resource"));
        rget(L, 3, job, 1);
        if (lua_isnil(L, -1)) {
            lua_newtable(L);
            sbot_set_str(L, -1, "note", "the job is gone");
            return 1;
        }
        const char *state = sbot_field_str(L, -1, "JobState");
        if (state && (strcmp(state, "Scheduled") == 0 || strcmp(state, "New") == 0)) {
            int n = sbot_redfish_delete(L, 3, job);
            if (n != 1)
                return luaL_error(L, "undo: delete job %s: %s", job, lua_tostring(L, -n + 1));
            lua_newtable(L);
            sbot_set_str(L, -1, "deleted_job", job);
            sbot_set_str(L, -1, "note", "the job will not run; its values stay pending in the Settings resource");
            return 1;
        }
        if (state && strcmp(state, "Completed") == 0)
            return luaL_error(L, "undo: job %s already applied the values; restoring them needs another job and "
                                 "reboot: run again with the previous configuration", job);
        lua_newtable(L);
        sbot_set_str(L, -1, "note", "the job did not apply its values");
        sbot_set_str(L, -1, "state", state);
        return 1;
    }
    if (strcmp(kind, "reboot") == 0)
        return luaL_error(L, "undo: a reboot cannot be taken back");
    if (strcmp(kind, "clear_pending") == 0)
        return luaL_error(L, "undo: deleted jobs and pending values cannot be restored");
    return luaL_error(L, "undo: %s cannot be taken back", kind);
}

/* ---- housekeep ------------------------------------------------------------------------------ */

/* Did this run plan kind k (the plan change, pushed, 1) or not (0)? */
static int planned(lua_State *L, int self, const char *k)
{
    if (!sbot_field_table(L, self, "plan"))
        return 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *kind = lua_istable(L, -1) ? sbot_field_str(L, -1, "kind") : NULL;
        if (kind && strcmp(kind, k) == 0) {
            lua_replace(L, -2);
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Was change kind k applied (ok) in this run? */
static int applied(lua_State *L, int self, const char *k)
{
    int yes = 0;
    if (!sbot_field_table(L, self, "processing"))
        return 0;
    if (sbot_field_table(L, -1, "applied")) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !yes; i++) {
            lua_rawgeti(L, -1, i);
            lua_Integer idx = (lua_Integer)sbot_field_num(L, -1, "index", 0);
            int ok = sbot_field_bool(L, -1, "ok", 0);
            lua_pop(L, 1);
            if (ok && sbot_field_table(L, self, "plan")) {
                lua_rawgeti(L, -1, idx);
                const char *kind = lua_istable(L, -1) ? sbot_field_str(L, -1, "kind") : NULL;
                yes = kind && strcmp(kind, k) == 0;
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

/* Compare desired values with what the device now has (current, never
 * pending); problems go to the list. */
static void verify_values(lua_State *L, int want, int cur, int pend, int wo, const char *what, int problems)
{
    lua_pushnil(L);
    while (lua_next(L, want)) {
        int v = lua_gettop(L);
        const char *name = lua_tostring(L, v - 1);
        lua_pushvalue(L, v - 1);
        int is_wo = lua_rawget(L, wo) != LUA_TNIL;
        lua_pop(L, 1);
        if (!is_wo) {
            lua_getfield(L, cur, name);
            if (!same_value(L, -1, v)) {
                push_shown(L, -1);
                push_shown(L, v);
                lua_getfield(L, pend, name);
                int is_pending = !lua_isnil(L, -1);
                lua_pop(L, 1);
                PROBLEM(L, problems, "%s %s is %s, not %s%s", what, name, lua_tostring(L, -2), lua_tostring(L, -1),
                        is_pending ? " (the new value is only pending: not applied)" : "");
            }
        }
        lua_settop(L, v - 1);
    }
}

/* housekeep(self, client): read everything again and verify. */
static int r630_housekeep(lua_State *L)
{
    luaL_checkstack(L, 60, "r630: housekeep");
    lua_settop(L, 2);
    int self = 1, cl = 2;
    const char *id = sbot_field_str(L, self, "id");
    lua_getfield(L, self, "discovery");
    discover_all(L, cl, lua_istable(L, -1) ? -1 : 0);
    lua_remove(L, -2);
    /* 3: the state now */
    int D2 = 3;
    push_desired(L, self, D2); /* 4 */
    int W = 4;
    sbot_push_array(L); /* 5: problems */
    int problems = 5;
    lua_newtable(L); /* 6: housekeeping */
    int hk = 6;
    lua_getfield(L, W, "write_only");
    int wo = lua_gettop(L); /* 7 */
    lua_getfield(L, D2, "bios");
    lua_getfield(L, -1, "attributes");
    lua_getfield(L, -2, "pending");
    lua_getfield(L, W, "bios");
    verify_values(L, lua_gettop(L), lua_gettop(L) - 2, lua_gettop(L) - 1, wo, "BIOS", problems);
    lua_settop(L, wo);
    if (sbot_field_table(L, W, "nic")) {
        int n = lua_gettop(L);
        const char *nid = sbot_field_str(L, n, "id");
        lua_getfield(L, D2, "nics");
        lua_Integer nn = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= nn; i++) {
            lua_rawgeti(L, -1, i);
            const char *x = sbot_field_str(L, -1, "id");
            if (x && nid && strcmp(x, nid) == 0) {
                lua_getfield(L, -1, "iscsi");
                lua_getfield(L, -2, "pending");
                lua_getfield(L, n, "values");
                lua_pushfstring(L, "NIC %s", nid);
                verify_values(L, lua_gettop(L) - 1, lua_gettop(L) - 3, lua_gettop(L) - 2, wo, lua_tostring(L, -1),
                              problems);
                lua_pop(L, 4);
            }
            lua_pop(L, 1);
        }
        lua_settop(L, wo);
    }

    /* the jobs of this run: Completed, read back */
    lua_pushnil(L);
    if (planned(L, self, "reboot")) {
        lua_getfield(L, -1, "jobs");
        lua_replace(L, -3);
        lua_pop(L, 1);
    }
    push_run_jobs(L, self, lua_gettop(L));
    int jl = lua_gettop(L);
    lua_newtable(L);
    int jobs = lua_gettop(L);
    lua_Integer nj = (lua_Integer)lua_rawlen(L, jl);
    for (lua_Integer i = 1; i <= nj; i++) {
        lua_rawgeti(L, jl, i);
        const char *jp = lua_tostring(L, -1);
        const char *slash = strrchr(jp, '/');
        rget(L, cl, jp, 1);
        const char *state = lua_istable(L, -1) ? sbot_field_str(L, -1, "JobState") : NULL;
        if (!state && lua_istable(L, -1))
            state = sbot_field_str(L, -1, "TaskState");
        sbot_set_str(L, jobs, slash ? slash + 1 : jp, state ? state : "absent");
        if (!state || strcmp(state, "Completed") != 0)
            PROBLEM(L, problems, "job %s is %s, not Completed", slash ? slash + 1 : jp, state ? state : "absent");
        lua_pop(L, 2);
    }
    lua_setfield(L, hk, "jobs");
    lua_settop(L, wo);

    /* the one-time boot from the virtual CD: consumed, then eject if asked */
    int cd_boot = 0;
    if (planned(L, self, "reboot")) {
        cd_boot = sbot_field_bool(L, -1, "cd_boot", 0);
        lua_pop(L, 1);
    }
    int rebooted = applied(L, self, "reboot");
    if (cd_boot && rebooted) {
        int bios_once = 0;
        if (planned(L, self, "bios")) {
            lua_getfield(L, -1, "after");
            bios_once = lua_istable(L, -1) && sbot_field_str(L, -1, "OneTimeBootMode") != NULL;
            lua_pop(L, 2);
        }
        if (bios_once) {
            lua_getfield(L, D2, "bios");
            const char *bios_path = sbot_field_str(L, -1, "path");
            lua_pop(L, 1);
            double end = now_s() + cfgnum(L, self, "power", "timeout", 300);
            const char *mode = NULL;
            for (;;) {
                rget(L, cl, bios_path, 0);
                lua_getfield(L, -1, "Attributes");
                mode = sbot_field_str(L, -1, "OneTimeBootMode");
                lua_pop(L, 2);
                if (!mode || strcmp(mode, "Disabled") == 0 || now_s() >= end)
                    break;
                nap(L, cfgnum(L, self, "power", "interval", 5));
            }
            if (mode && strcmp(mode, "Disabled") != 0) {
                PROBLEM(L, problems, "the one-time boot from the virtual CD has not happened (OneTimeBootMode is still %s)",
                        mode);
            } else {
                sbot_set_str(L, hk, "one_time_boot", "consumed");
            }
        } else {
            sbot_set_str(L, hk, "one_time_boot", "requested through Server Configuration Profile (not readable back)");
        }
        lua_getfield(L, W, "vm");
        int eject = lua_istable(L, -1) && sbot_field_bool(L, -1, "eject_after", 1);
        lua_pop(L, 1);
        const char *consumed = sbot_field_str(L, hk, "one_time_boot");
        if (eject && consumed && strcmp(consumed, "consumed") == 0 && sbot_field_table(L, D2, "virtual_media")) {
            int vmd = lua_gettop(L);
            if (sbot_field_bool(L, vmd, "inserted", 0)) {
                const char *target = sbot_field_str(L, vmd, "eject");
                if (!target)
                    PROBLEM(L, problems, "eject after the one-time boot: the virtual CD offers no EjectMedia action");
                else if (!media_action(L, cl, target, sbot_field_str(L, vmd, "path"), 0, NULL))
                    PROBLEM(L, problems, "eject after the one-time boot: %s", lua_tostring(L, -1));
                else
                    sbot_set_bool(L, hk, "ejected", 1);
            }
            lua_settop(L, wo);
        }
    } else if (cd_boot) {
        PROBLEM(L, problems, "the one-time boot from the virtual CD was planned but no reboot happened");
    }
    lua_getfield(L, W, "vm");
    if (lua_istable(L, -1) && !sbot_field_bool(L, -1, "boot_once", 1)) {
        const char *url = sbot_field_str(L, -1, "image_url");
        int ok = 0;
        if (sbot_field_table(L, D2, "virtual_media")) {
            const char *img = sbot_field_str(L, -1, "image");
            ok = sbot_field_bool(L, -1, "inserted", 0) && img && url && strcmp(img, url) == 0;
            lua_pop(L, 1);
        }
        if (!ok)
            PROBLEM(L, problems, "virtual media: %s is not inserted", url ? url : "?");
    }
    lua_settop(L, wo);

    /* the record: before, after, changes, jobs */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sbot.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_newtable(L);
    int rec = lua_gettop(L);
    sbot_set_str(L, rec, "id", id);
    lua_getfield(L, D2, "service");
    lua_setfield(L, rec, "service");
    lua_getfield(L, self, "discovery");
    lua_setfield(L, rec, "before");
    lua_pushvalue(L, D2);
    lua_setfield(L, rec, "after");
    lua_getfield(L, self, "plan");
    lua_setfield(L, rec, "changes");
    lua_getfield(L, hk, "jobs");
    lua_setfield(L, rec, "jobs");
    lua_pushvalue(L, problems);
    lua_setfield(L, rec, "problems");
    lua_newtable(L);
    sbot_set_bool(L, -1, "indent", 1);
    sbot_set_str(L, -1, "secrets", "redact"); /* a record: a CHAP secret in the plan is <redacted> */
    lua_call(L, 2, 1);
    int text = lua_gettop(L);
    lua_getfield(L, self, "artifact");
    lua_pushvalue(L, self);
    lua_newtable(L);
    sbot_set_str(L, -1, "key", "r630.json");
    sbot_set_str(L, -1, "type", "application/json");
    lua_pushvalue(L, text);
    lua_setfield(L, -2, "content");
    lua_call(L, 2, 0);
    lua_settop(L, wo);

    raise_problems(L, problems, "verification failed: ");
    sbot_set_bool(L, hk, "verified", 1);
    if (lua_getfield(L, hk, "ejected") == LUA_TNIL)
        sbot_set_bool(L, hk, "ejected", 0);
    lua_pop(L, 1);
    lua_pushvalue(L, hk);
    return 1;
}

/* ---- open, hooks, definition ----------------------------------------------------------------- */

/* open(self): the Redfish session every phase uses. */
static int r630_open(lua_State *L)
{
    luaL_checkstack(L, 30, "r630: open");
    lua_settop(L, 1);
    const char *id = sbot_field_str(L, 1, "id");
    if (!sbot_field_table(L, 1, "server") || !sbot_field_table(L, -1, "idrac"))
        return luaL_error(L, "server %s has no idrac entry in the site", id ? id : "?");
    int idrac = lua_gettop(L);
    lua_newtable(L);
    int o = lua_gettop(L);
    static const char *const keys[] = {"host", "user", "password", "tls", NULL};
    for (int i = 0; keys[i]; i++) {
        lua_getfield(L, idrac, keys[i]);
        lua_setfield(L, o, keys[i]);
    }
    lua_getfield(L, 1, "config");
    if (sbot_field_table(L, -1, "redfish")) {
        int r = lua_gettop(L);
        static const char *const rkeys[] = {"timeout", "per_host", "login_timeout", "not_ready_wait", NULL};
        for (int i = 0; rkeys[i]; i++) {
            lua_getfield(L, r, rkeys[i]);
            lua_setfield(L, o, rkeys[i]);
        }
        if (sbot_field_table(L, r, "retries")) {
            lua_setfield(L, o, "retries");
        }
    }
    int n = sbot_redfish_connect(L, o);
    return n;
}

static int hook_choose_boot_nic(lua_State *L)
{
    if (lua_istable(L, 1) && sbot_field_table(L, 1, "nics")) {
        if (lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
            lua_getfield(L, -1, "id");
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int hook_initiator_iqn(lua_State *L)
{
    /* default: the initiator name the BIOS already has (the factory one on a new server) */
    if (lua_istable(L, 2) && sbot_field_table(L, 2, "bios") && sbot_field_table(L, -1, "attributes")) {
        const char *s = sbot_field_str(L, -1, "IscsiInitiatorName");
        if (s && *s) {
            lua_pushstring(L, s);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int hook_boot_from_cd(lua_State *L)
{
    /* default: a server whose boot configuration this run changes boots the image once */
    lua_pushboolean(L, lua_toboolean(L, 3));
    return 1;
}

static const char SCHEMA[] =
    "return {\n"
    "  iscsi_boot = { type = 'table', description = 'boot from this iSCSI target (BIOS iSCSI device 1 in UEFI mode, "
    "and the NIC function\\'s iSCSIBoot settings)', fields = {\n"
    "    nic = { type = 'string', description = 'NIC function to boot from, e.g. NIC.Integrated.1-1-1 (default: the "
    "site server\\'s boot_nic, else the choose_boot_nic hook)' },\n"
    "    initiator_iqn = { type = 'string', pattern = '^[ie][qu][ni]%.', description = 'the server\\'s initiator "
    "IQN (default: the initiator_iqn hook)' },\n"
    "    target_iqn = { type = 'string', required = true, pattern = '^[ie][qu][ni]%.', description = 'IQN of the "
    "target (TrueNAS: basename:name)' },\n"
    "    target_ip = { type = 'string', required = true, pattern = '^%d+%.%d+%.%d+%.%d+$', description = 'portal "
    "IPv4 address' },\n"
    "    target_port = { type = 'integer', default = 3260, min = 1, max = 65535 },\n"
    "    lun = { type = 'integer', default = 0, min = 0, max = 255 },\n"
    "    chap = { type = 'table', description = 'one-way CHAP', fields = {\n"
    "      user = { type = 'string', required = true }, secret = { type = 'secret', required = true },\n"
    "      resend = { type = 'boolean', default = false, description = 'send the secret even when the BIOS and "
    "NIC already use CHAP with this user (the iDRAC never shows a secret): the target\\'s secret has changed' } } },\n"
    "  } },\n"
    "  boot = { type = 'table', description = 'BIOS boot mode and first boot device', fields = {\n"
    "    mode = { type = 'string', enum = { 'Uefi', 'Bios' }, default = 'Uefi' },\n"
    "    first = { type = 'string', enum = { 'iscsi', 'cd', 'pxe', 'hdd' }, description = 'device put first in the "
    "boot sequence (UefiBootSeq / BootSeq)' },\n"
    "  } },\n"
    "  virtual_media = { type = 'table', description = 'an image on the virtual CD', fields = {\n"
    "    image_url = { type = 'string', required = true, pattern = '^%a+://', description = 'http:// URL (iDRAC 8: "
    "no https or CIFS; the server must support Range requests)' },\n"
    "    boot_once = { type = 'boolean', default = true, description = 'boot it once when the boot_from_cd hook "
    "says so (default: when this run changes the boot configuration); false: keep it inserted, no boot' },\n"
    "    via = { type = 'string', enum = { 'auto', 'bios', 'scp' }, default = 'auto', description = 'how the CD is "
    "booted once: BIOS OneTimeBootMode (part of the BIOS job), or a Server Configuration Profile import; auto: "
    "BIOS when its registry offers it' },\n"
    "    eject_after = { type = 'boolean', default = true, description = 'eject in housekeep once the one-time "
    "boot is consumed' },\n"
    "  } },\n"
    "  power = { type = 'table', description = 'the one reboot at the end', fields = {\n"
    "    reboot = { type = 'string', enum = { 'graceful_then_force', 'force' }, default = 'graceful_then_force', "
    "description = 'GracefulShutdown, wait Off, On (ForceOff after the timeout); force: ForceOff, On' },\n"
    "    timeout = { type = 'number', default = 300, min = 0, description = 'seconds to wait for Off / On' },\n"
    "    interval = { type = 'number', default = 5, min = 0.01, description = 'seconds between power state reads' },\n"
    "  } },\n"
    "  jobs = { type = 'table', description = 'configuration jobs', fields = {\n"
    "    timeout = { type = 'number', default = 1800, min = 0, description = 'seconds to wait for each job' },\n"
    "    interval = { type = 'number', default = 5, min = 0.01, description = 'seconds between job reads' },\n"
    "  } },\n"
    "  clear_pending = { type = 'boolean', default = false, description = 'delete every pending job and value "
    "that conflicts with this run (DellJobService JID_CLEARALL) instead of failing' },\n"
    "  redfish = { type = 'table', description = 'the Redfish connection (sbot.redfish.connect)', fields = {\n"
    "    timeout = { type = 'number', min = 0.01 }, per_host = { type = 'integer', min = 1, max = 16 },\n"
    "    login_timeout = { type = 'number', min = 0.01 }, not_ready_wait = { type = 'number', min = 0 },\n"
    "    retries = { type = 'table', fields = { max = { type = 'integer', min = 0 }, base = { type = 'number', min = 0 "
    "}, cap = { type = 'number', min = 0 } } },\n"
    "  } },\n"
    "}\n";

int luaopen_sbot_component_r630(lua_State *L)
{
    luaL_requiref(L, "sbot.redfish", luaopen_sbot_redfish, 0);
    lua_pop(L, 1);
    lua_newtable(L);
    int spec = lua_gettop(L);
    sbot_set_str(L, spec, "name", "r630");
    sbot_set_str(L, spec, "description",
         "Dell PowerEdge R630 (iDRAC 8; iDRAC 9 machines too) over Redfish: BIOS and NIC iSCSI boot settings "
         "checked against the attribute registry, one configuration job per Settings target, the virtual CD "
         "booted once, exactly one reboot, verified by reading everything back.");
    if (luaL_loadbuffer(L, SCHEMA, sizeof SCHEMA - 1, "=r630 schema") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    lua_setfield(L, spec, "schema");
    static const luaL_Reg phases[] = {{"open", r630_open},   {"discover", NULL},  {"plan", r630_plan},
                                      {"apply", r630_apply}, {"undo", r630_undo}, {"housekeep", r630_housekeep},
                                      {NULL, NULL}};
    for (int i = 0; phases[i].name; i++) {
        if (!phases[i].func)
            continue;
        lua_pushcfunction(L, phases[i].func);
        lua_setfield(L, spec, phases[i].name);
    }
    lua_pushcfunction(L, r630_discover);
    lua_setfield(L, spec, "discover");
    lua_newtable(L);
    int hooks = lua_gettop(L);
    static const struct {
        const char *name, *description;
        lua_CFunction def;
    } hs[] = {{"initiator_iqn", "initiator_iqn(server, discovery) -> the IQN this server logs in to its target with "
                                "(default: the BIOS's current IscsiInitiatorName)",
               hook_initiator_iqn},
              {"choose_boot_nic", "choose_boot_nic(discovery) -> the NIC function id to boot from, e.g. "
                                  "NIC.Integrated.1-1-1 (default: the first one listed)",
               hook_choose_boot_nic},
              {"boot_from_cd", "boot_from_cd(server, discovery, changing) -> whether to boot virtual_media.image_url "
                               "once in this run (default: changing, i.e. this run changes the boot configuration)",
               hook_boot_from_cd},
              {NULL, NULL, NULL}};
    for (int i = 0; hs[i].name; i++) {
        lua_newtable(L);
        sbot_set_str(L, -1, "description", hs[i].description);
        lua_pushcfunction(L, hs[i].def);
        lua_setfield(L, -2, "default");
        lua_setfield(L, hooks, hs[i].name);
    }
    lua_setfield(L, spec, "hooks");
    return sbot_component_define(L, spec);
}
