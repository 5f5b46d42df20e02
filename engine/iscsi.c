/* iscsi.c: sbot.iscsi, iSCSI checks on libiscsi.
 *
 *   local iscsi = require "sbot.iscsi"
 *   local r, err = iscsi.probe{portal = "127.0.0.1:3260",
 *                              target = "iqn.2005-10.org.freenas.ctl:node1",
 *                              lun = 0, initiator = "iqn.2024-01.lab:r630-01",
 *                              timeout = 10}
 *   -- r = {inquiry = {vendor, product, revision, device_type},
 *   --      capacity = {blocks, block_size, bytes}}
 *
 * The probe logs in the way a booting server's initiator would (iSCSI login
 * with the initiator's name, optional CHAP), sends INQUIRY and READ
 * CAPACITY(16) (falling back to 10), and logs out. Everything runs on
 * libiscsi's asynchronous API driven by poll(), so one deadline bounds the
 * whole exchange.
 *
 * Failures speak docs/errors.md's vocabulary: a transport word when the
 * connection failed (connect, timeout, closed, io, protocol, resolve), the
 * target's own id when it refused (the iSCSI login status, the SCSI sense
 * key or status), an errno name when the library could not allocate. */
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT 15.0

struct step {
    int done;
    int status;
    struct scsi_task *task;
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
    (void)iscsi;
    struct step *s = private_data;
    s->done = 1;
    s->status = status;
    if (command_data && !s->task)
        s->task = command_data;
}

/* Drive the context until step is done or the deadline passes.
 * 0 done, -1 timeout, -2 service error. */
static int run_until(struct iscsi_context *iscsi, struct step *s, double deadline)
{
    while (!s->done) {
        double left = deadline - now_mono();
        if (left <= 0)
            return -1;
        struct pollfd p = {iscsi_get_fd(iscsi), (short)iscsi_which_events(iscsi), 0};
        int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
        int r = poll(&p, 1, ms);
        if (r < 0)
            continue; /* EINTR */
        /* libiscsi sends with writev(): a target that reset the
         * connection must give an error, not a SIGPIPE */
        struct sbot_sigpipe_guard g;
        sbot_sigpipe_block(&g);
        int sr = iscsi_service(iscsi, r > 0 ? p.revents : 0);
        sbot_sigpipe_unblock(&g);
        if (sr < 0 && !s->done)
            return -2;
    }
    return 0;
}

/* Everything a probe holds, freed in one place. */
struct probe {
    struct iscsi_context *iscsi;
    struct scsi_task *task;
    int logged_in;
};

static void probe_release(struct probe *p)
{
    /* the context first: it cancels a task still in flight (its callback
     * runs), after which the task is ours to free */
    if (p->iscsi) {
        iscsi_destroy_context(p->iscsi);
        p->iscsi = NULL;
    }
    if (p->task) {
        scsi_free_scsi_task(p->task);
        p->task = NULL;
    }
}

static int probe_gc(lua_State *L)
{
    probe_release(luaL_checkudata(L, 1, "sbot.iscsi.probe"));
    return 0;
}

static const char *field_string(lua_State *L, int t, const char *key, int required)
{
    int ty = lua_getfield(L, t, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        if (required)
            luaL_error(L, "iscsi.probe: '%s' (string) is required", key);
        return NULL;
    }
    if (ty != LUA_TSTRING)
        luaL_error(L, "iscsi.probe: '%s' must be a string, got %s", key, lua_typename(L, ty));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the options table */
    return s;
}

static void trim_copy(char *out, size_t n, const char *in)
{
    snprintf(out, n, "%s", in);
    size_t l = strlen(out);
    while (l && out[l - 1] == ' ')
        out[--l] = '\0';
}

/* Push nil, "iscsi probe <portal> <target> lun N: <what>: <why>", code. */
static int probe_fail(lua_State *L, struct probe *p, const char *portal, const char *target, int lun,
                      const char *what, const char *why, const char *code)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "iscsi probe %s %s lun %d: %s: %s", portal, target, lun, what,
             why && *why ? why : "unknown error");
    probe_release(p);
    luaL_pushfail(L);
    sbot_log_push_redacted(L, msg, strlen(msg));
    lua_pushstring(L, code);
    return 3;
}

static const char *task_error(struct iscsi_context *iscsi, struct step *s, char *buf, size_t n)
{
    if (s->status == SCSI_STATUS_CHECK_CONDITION && s->task) {
        snprintf(buf, n, "CHECK CONDITION, sense key %s, ascq 0x%04x",
                 scsi_sense_key_str(s->task->sense.key), s->task->sense.ascq);
        return buf;
    }
    if (s->status == SCSI_STATUS_TIMEOUT)
        return "timed out";
    if (s->status == SCSI_STATUS_CANCELLED)
        return "the connection was lost (the target closed it)";
    snprintf(buf, n, "status 0x%x: %s", (unsigned)s->status, iscsi_get_error(iscsi));
    return buf;
}

/* ---- codes (docs/iscsi.md, docs/errors.md) -------------------------------- */

/* The iSCSI login status class/detail (RFC 7143, 11.13.5) a target refused
 * a login with, as its id; an unknown detail is its class's name. */
static const char *login_status_id(int status)
{
    static const struct {
        int status;
        const char *id;
    } ids[] = {{0x0101, "TARGET_MOVED_TEMPORARILY"}, {0x0102, "TARGET_MOVED_PERMANENTLY"},
               {0x0200, "INITIATOR_ERROR"},         {0x0201, "AUTHENTICATION_FAILURE"},
               {0x0202, "AUTHORIZATION_FAILURE"},   {0x0203, "TARGET_NOT_FOUND"},
               {0x0204, "TARGET_REMOVED"},          {0x0205, "UNSUPPORTED_VERSION"},
               {0x0206, "TOO_MANY_CONNECTIONS"},    {0x0207, "MISSING_PARAMETER"},
               {0x0208, "CANT_INCLUDE_IN_SESSION"}, {0x0209, "SESSION_TYPE_NOT_SUPPORTED"},
               {0x020a, "SESSION_DOES_NOT_EXIST"},  {0x020b, "INVALID_DURING_LOGIN"},
               {0x0300, "TARGET_ERROR"},            {0x0301, "SERVICE_UNAVAILABLE"},
               {0x0302, "OUT_OF_RESOURCES"}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].status == status)
            return ids[i].id;
    switch (status >> 8) {
    case 1: return "REDIRECTION";
    case 2: return "INITIATOR_ERROR";
    case 3: return "TARGET_ERROR";
    default: return "protocol";
    }
}

/* libiscsi reports a refused login only in its error text, "Failed to log in
 * to target. Status: <text>(<status>)": the status, or -1. */
static int login_status_of(const char *why)
{
    const char *p = why ? strstr(why, "Status: ") : NULL;
    const char *open = p ? strrchr(p, '(') : NULL;
    if (!open)
        return -1;
    char *end;
    long v = strtol(open + 1, &end, 10);
    return end != open + 1 && *end == ')' && v > 0 && v <= 0xffff ? (int)v : -1;
}

/* The SPC sense key names. */
static const char *sense_key_id(int key)
{
    static const char *const names[] = {"NO_SENSE",        "RECOVERED_ERROR", "NOT_READY",
                                        "MEDIUM_ERROR",    "HARDWARE_ERROR",  "ILLEGAL_REQUEST",
                                        "UNIT_ATTENTION",  "DATA_PROTECT",    "BLANK_CHECK",
                                        "VENDOR_SPECIFIC", "COPY_ABORTED",    "ABORTED_COMMAND",
                                        NULL,              "VOLUME_OVERFLOW", "MISCOMPARE"};
    return key >= 0 && key < (int)(sizeof names / sizeof names[0]) && names[key] ? names[key]
                                                                                  : "CHECK_CONDITION";
}

/* The code of a failed SCSI command (its step is done, r is run_until's). */
static const char *task_code(int r, const struct step *s)
{
    if (r == -1)
        return "timeout";
    if (r == -2)
        return "io";
    switch (s->status) {
    case SCSI_STATUS_CHECK_CONDITION:
        if (!s->task)
            return "CHECK_CONDITION";
        /* no such LUN: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25h/00h) */
        if (s->task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST &&
            s->task->sense.ascq == SCSI_SENSE_ASCQ_LOGICAL_UNIT_NOT_SUPPORTED)
            return "LOGICAL_UNIT_NOT_SUPPORTED";
        return sense_key_id(s->task->sense.key);
    case SCSI_STATUS_BUSY: return "BUSY";
    case SCSI_STATUS_RESERVATION_CONFLICT: return "RESERVATION_CONFLICT";
    case SCSI_STATUS_TASK_SET_FULL: return "TASK_SET_FULL";
    case SCSI_STATUS_ACA_ACTIVE: return "ACA_ACTIVE";
    case SCSI_STATUS_TASK_ABORTED: return "TASK_ABORTED";
    case SCSI_STATUS_TIMEOUT: return "timeout";
    case SCSI_STATUS_CANCELLED: return "closed";
    default: return "protocol"; /* SCSI_STATUS_ERROR: a reply libiscsi could not take */
    }
}


/* iscsi.probe{portal, target, lun, initiator, timeout, chap = {user, secret}} */
static int l_probe(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *portal = field_string(L, 1, "portal", 1);
    const char *target = field_string(L, 1, "target", 1);
    const char *initiator = field_string(L, 1, "initiator", 0);
    if (!initiator)
        initiator = "iqn.2024-01.org.sbot:probe";
    lua_getfield(L, 1, "lun");
    int isnum;
    lua_Integer lun = lua_isnil(L, -1) ? 0 : lua_tointegerx(L, -1, &isnum);
    if (!lua_isnil(L, -1) && (!isnum || lun < 0 || lun > 16383))
        return luaL_error(L, "iscsi.probe: 'lun' must be an integer 0..16383");
    lua_pop(L, 1);
    lua_getfield(L, 1, "timeout");
    double timeout = lua_isnil(L, -1) ? DEFAULT_TIMEOUT : lua_tonumber(L, -1);
    if (!lua_isnil(L, -1) && (!lua_isnumber(L, -1) || !(timeout > 0) || timeout > 86400))
        return luaL_error(L, "iscsi.probe: 'timeout' must be a positive number of seconds (at most a day)");
    lua_pop(L, 1);
    const char *chap_user = NULL, *chap_secret = NULL;
    int ct = lua_getfield(L, 1, "chap");
    if (ct == LUA_TTABLE) {
        int t = lua_gettop(L);
        chap_user = field_string(L, t, "user", 1);
        if (lua_getfield(L, t, "secret") != LUA_TSTRING) {
            /* a secret object (sbot_is_secret: the one test): reveal() it */
            if (!sbot_is_secret(L, -1))
                return luaL_error(L, "iscsi.probe: chap.secret must be a string or a secret");
            lua_getfield(L, -1, "reveal");
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "iscsi.probe: chap.secret must be a string or a secret");
        }
        size_t chap_len;
        chap_secret = lua_tolstring(L, -1, &chap_len); /* left on the stack */
        /* a plain-string secret is registered too: libiscsi errors may echo it */
        sbot_log_add_secret(L, chap_secret, chap_len);
    } else if (ct != LUA_TNIL) {
        return luaL_error(L, "iscsi.probe: 'chap' must be a table {user, secret}");
    }
    /* HOST:PORT, [IPv6]:PORT: libiscsi would read "fe80::1:3260" as port 3260
     * of fe80::1, and take port 3260 for "[::1]" */
    const char *bad_portal = sbot_check_hostport(portal, 1);
    if (bad_portal)
        return luaL_error(L, "iscsi.probe: portal '%s' %s", portal, bad_portal);

    struct probe *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    if (luaL_newmetatable(L, "sbot.iscsi.probe")) {
        lua_pushcfunction(L, probe_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int lu = (int)lun;
    double deadline = now_mono() + timeout;

    p->iscsi = iscsi_create_context(initiator);
    if (!p->iscsi)
        return probe_fail(L, p, portal, target, lu, "setup", "cannot create an iSCSI context", "ENOMEM");
    iscsi_set_targetname(p->iscsi, target);
    iscsi_set_session_type(p->iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(p->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_timeout(p->iscsi, (int)(timeout + 0.999));
    /* One session, never a silent second one: a connection lost in the
     * middle fails the command in flight ("closed") at once. libiscsi's
     * reconnect would log in again out of sight; it did not even succeed
     * here (the probe sat out its whole timeout), and a target that closed
     * the connection at the logout set it off and spun on the socket. */
    iscsi_set_noautoreconnect(p->iscsi, 1);
    if (chap_user && iscsi_set_initiator_username_pwd(p->iscsi, chap_user, chap_secret) != 0)
        return probe_fail(L, p, portal, target, lu, "CHAP setup", iscsi_get_error(p->iscsi), "ENOMEM");

    /* Connect, log in and TEST UNIT READY step by step, as
     * iscsi_full_connect_async would: that one mallocs a connect_task that
     * libiscsi (1.19) never frees when the connection closes before the
     * login completes (a PDU of a session not logged in is dropped without
     * its callback). Our steps live on this stack frame instead. */
    static const char *const closed = "cannot connect to the portal (connection refused or closed before login)";
    struct step s = {0, 0, NULL};
    if (iscsi_connect_async(p->iscsi, portal, on_done, &s) != 0) {
        const char *why = iscsi_get_error(p->iscsi);
        return probe_fail(L, p, portal, target, lu, "connect", why,
                          why && strstr(why, "resolv") ? "resolve"
                          : why && strstr(why, "Out-of-memory") ? "ENOMEM"
                                                                 : "connect");
    }
    int r = run_until(p->iscsi, &s, deadline);
    if (r == -1)
        return probe_fail(L, p, portal, target, lu, "connect", "timed out", "timeout");
    if (r == -2 || s.status != SCSI_STATUS_GOOD)
        return probe_fail(L, p, portal, target, lu, "connect", closed, "connect");
    struct step sl = {0, 0, NULL};
    if (iscsi_login_async(p->iscsi, on_done, &sl) != 0)
        return probe_fail(L, p, portal, target, lu, "login", iscsi_get_error(p->iscsi), "ENOMEM");
    r = run_until(p->iscsi, &sl, deadline);
    if (r == -1)
        return probe_fail(L, p, portal, target, lu, "login", "timed out", "timeout");
    if (r == -2 || sl.status != SCSI_STATUS_GOOD) {
        const char *why = iscsi_get_error(p->iscsi);
        int status = r == 0 ? login_status_of(why) : -1;
        char refused[256];
        if (status > 0) { /* the target's answer: its login status is the code */
            const char *text = strstr(why, "Status: ") + 8;
            snprintf(refused, sizeof refused, "refused by the target: %.*s (status 0x%04x)",
                     (int)(strrchr(text, '(') - text), text, (unsigned)status);
            return probe_fail(L, p, portal, target, lu, "login", refused, login_status_id(status));
        }
        if (r == 0 && sl.status == SCSI_STATUS_REDIRECT)
            return probe_fail(L, p, portal, target, lu, "login",
                              "the target redirects the login to another portal (not followed)", "REDIRECTION");
        /* libiscsi words a connection closed before the login as a failed reconnect */
        if (why && strstr(why, "reconnect"))
            return probe_fail(L, p, portal, target, lu, "login", closed, "closed");
        return probe_fail(L, p, portal, target, lu, "login", why, r == -2 ? "io" : "protocol");
    }
    p->logged_in = 1;

    char ebuf[256];
    /* TEST UNIT READY: a fresh session's UNIT ATTENTIONs are consumed (at
     * most 10, as libiscsi's login does), and a LUN the target does not have
     * fails here, still as a login failure (docs/iscsi.md); no medium or a
     * reservation is no reason to fail */
    for (int ua = 0;; ua++) {
        struct step st = {0, 0, NULL};
        p->task = iscsi_testunitready_task(p->iscsi, lu, on_done, &st);
        if (!p->task)
            return probe_fail(L, p, portal, target, lu, "TEST UNIT READY", iscsi_get_error(p->iscsi), "ENOMEM");
        st.task = p->task;
        r = run_until(p->iscsi, &st, deadline);
        if (r == -1)
            return probe_fail(L, p, portal, target, lu, "TEST UNIT READY", "timed out", "timeout");
        int sense = p->task->sense.key, ascq = p->task->sense.ascq;
        int check = r == 0 && st.status == SCSI_STATUS_CHECK_CONDITION;
        int fine = r == 0 && (st.status == SCSI_STATUS_GOOD || st.status == SCSI_STATUS_RESERVATION_CONFLICT ||
                              (check && sense == SCSI_SENSE_NOT_READY &&
                               (ascq == SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT ||
                                ascq == SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT_TRAY_CLOSED ||
                                ascq == SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT_TRAY_OPEN)));
        int again = check && sense == SCSI_SENSE_UNIT_ATTENTION && ua < 10;
        if (!fine && !again) {
            const char *why = r == -2 ? iscsi_get_error(p->iscsi) : task_error(p->iscsi, &st, ebuf, sizeof ebuf);
            return probe_fail(L, p, portal, target, lu, "TEST UNIT READY", why, task_code(r, &st));
        }
        scsi_free_scsi_task(p->task);
        p->task = NULL;
        if (fine)
            break;
    }

    /* INQUIRY (standard data) */
    struct step si = {0, 0, NULL};
    p->task = iscsi_inquiry_task(p->iscsi, lu, 0, 0, 255, on_done, &si);
    if (!p->task)
        return probe_fail(L, p, portal, target, lu, "INQUIRY", iscsi_get_error(p->iscsi), "ENOMEM");
    si.task = p->task;
    r = run_until(p->iscsi, &si, deadline);
    if (r == -1)
        return probe_fail(L, p, portal, target, lu, "INQUIRY", "timed out", "timeout");
    if (r == -2 || si.status != SCSI_STATUS_GOOD)
        return probe_fail(L, p, portal, target, lu, "INQUIRY", task_error(p->iscsi, &si, ebuf, sizeof ebuf),
                          task_code(r, &si));
    struct scsi_inquiry_standard *inq = scsi_datain_unmarshall(p->task);
    if (!inq)
        return probe_fail(L, p, portal, target, lu, "INQUIRY", "cannot decode the reply", "protocol");
    char vendor[16], product[24], revision[8];
    trim_copy(vendor, sizeof vendor, inq->vendor_identification);
    trim_copy(product, sizeof product, inq->product_identification);
    trim_copy(revision, sizeof revision, inq->product_revision_level);
    int qualifier = inq->qualifier, device_type = inq->device_type;
    scsi_free_scsi_task(p->task);
    p->task = NULL;
    if (qualifier != 0)
        return probe_fail(L, p, portal, target, lu, "INQUIRY", "no logical unit at this LUN (peripheral qualifier != 0)",
                          "LOGICAL_UNIT_NOT_SUPPORTED");

    /* READ CAPACITY(16), then (10) for devices that do not know 16 */
    uint64_t blocks = 0;
    uint32_t block_size = 0;
    struct step sc = {0, 0, NULL};
    p->task = iscsi_readcapacity16_task(p->iscsi, lu, on_done, &sc);
    if (!p->task)
        return probe_fail(L, p, portal, target, lu, "READ CAPACITY", iscsi_get_error(p->iscsi), "ENOMEM");
    sc.task = p->task;
    r = run_until(p->iscsi, &sc, deadline);
    if (r == -1)
        return probe_fail(L, p, portal, target, lu, "READ CAPACITY(16)", "timed out", "timeout");
    if (r == 0 && sc.status == SCSI_STATUS_GOOD) {
        struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(p->task);
        if (!rc)
            return probe_fail(L, p, portal, target, lu, "READ CAPACITY(16)", "cannot decode the reply", "protocol");
        blocks = rc->returned_lba + 1;
        block_size = rc->block_length;
    } else {
        scsi_free_scsi_task(p->task);
        p->task = NULL;
        struct step s10 = {0, 0, NULL};
        p->task = iscsi_readcapacity10_task(p->iscsi, lu, 0, 0, on_done, &s10);
        if (!p->task)
            return probe_fail(L, p, portal, target, lu, "READ CAPACITY(10)", iscsi_get_error(p->iscsi), "ENOMEM");
        s10.task = p->task;
        r = run_until(p->iscsi, &s10, deadline);
        if (r == -1)
            return probe_fail(L, p, portal, target, lu, "READ CAPACITY(10)", "timed out", "timeout");
        if (r == -2 || s10.status != SCSI_STATUS_GOOD)
            return probe_fail(L, p, portal, target, lu, "READ CAPACITY(10)",
                              task_error(p->iscsi, &s10, ebuf, sizeof ebuf), task_code(r, &s10));
        struct scsi_readcapacity10 *rc = scsi_datain_unmarshall(p->task);
        if (!rc)
            return probe_fail(L, p, portal, target, lu, "READ CAPACITY(10)", "cannot decode the reply", "protocol");
        blocks = (uint64_t)rc->lba + 1;
        block_size = rc->block_size;
    }
    scsi_free_scsi_task(p->task);
    p->task = NULL;

    /* log out politely (bounded); the result does not change the probe's,
     * and a target that closes the connection instead of answering has
     * logged us out too */
    struct step so = {0, 0, NULL};
    if (iscsi_logout_async(p->iscsi, on_done, &so) == 0)
        run_until(p->iscsi, &so, now_mono() + 2.0 < deadline ? now_mono() + 2.0 : deadline);
    probe_release(p);

    lua_createtable(L, 0, 4);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, vendor);
    lua_setfield(L, -2, "vendor");
    lua_pushstring(L, product);
    lua_setfield(L, -2, "product");
    lua_pushstring(L, revision);
    lua_setfield(L, -2, "revision");
    lua_pushinteger(L, device_type);
    lua_setfield(L, -2, "device_type");
    lua_setfield(L, -2, "inquiry");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)blocks);
    lua_setfield(L, -2, "blocks");
    lua_pushinteger(L, (lua_Integer)block_size);
    lua_setfield(L, -2, "block_size");
    lua_pushinteger(L, (lua_Integer)(blocks * block_size));
    lua_setfield(L, -2, "bytes");
    lua_setfield(L, -2, "capacity");
    lua_pushstring(L, portal);
    lua_setfield(L, -2, "portal");
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
    lua_pushinteger(L, lun);
    lua_setfield(L, -2, "lun");
    return 1;
}

static const luaL_Reg funcs[] = {{"probe", l_probe}, {NULL, NULL}};

/* C API (engine/sbot.h): iscsi.probe(opts) with the options table at index
 * opts: pushes the result (1) or nil, message, code (3). */
int sbot_iscsi_probe(lua_State *L, int opts)
{
    opts = lua_absindex(L, opts);
    int base = lua_gettop(L);
    lua_pushcfunction(L, l_probe);
    lua_pushvalue(L, opts);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - base;
}

int luaopen_sbot_iscsi(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
