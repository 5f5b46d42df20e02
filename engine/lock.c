/* lock.c: sbot.lock - exclusive lock files (one run at a time per server).
 *
 * A lock is a file holding {"pid":P,"host":"H","since":"T"} and an flock()
 * on it for as long as the holder lives. The kernel drops the flock when the
 * holder dies, however it dies, so "stale" is decided by the flock, not by
 * guessing from the pid: a file whose flock can be taken belongs to nobody
 * and is taken over with a warning naming its previous owner. */
#define _GNU_SOURCE
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOCK_MT "sbot.lock"

struct lock {
    int fd; /* -1 once released */
};

struct owner {
    long pid;
    char host[256];
    char since[64];
    int parsed;
};

static void read_owner(int fd, struct owner *o)
{
    char buf[1024];
    memset(o, 0, sizeof *o);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return;
    buf[n] = '\0';
    o->parsed = sscanf(buf, "{\"host\":\"%255[^\"]\",\"pid\":%ld,\"since\":\"%63[^\"]\"}",
                       o->host, &o->pid, o->since) == 3;
}

/* Release: unlink while still holding the flock, then close. Idempotent. */
static int lock_release(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    if (lk->fd >= 0) {
        lua_getiuservalue(L, 1, 1);
        const char *path = lua_tostring(L, -1);
        if (path)
            unlink(path);
        close(lk->fd);
        lk->fd = -1;
        lua_pop(L, 1);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* lock:detach(): let go of the flock but leave the file, which then tells
 * whoever looks that its holder is gone (a run record that could not be
 * finished). Idempotent; release() after it does nothing. */
static int lock_detach(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    if (lk->fd >= 0) {
        close(lk->fd);
        lk->fd = -1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int lock_held(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    lua_pushboolean(L, lk->fd >= 0);
    return 1;
}

static int lock_path(lua_State *L)
{
    luaL_checkudata(L, 1, LOCK_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int lock_tostring(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "sbot.lock(%s, %s)", lua_tostring(L, -1), lk->fd >= 0 ? "held" : "released");
    return 1;
}

/* lock.acquire(path [, {name = "server r630-01"}]) -> lock | nil, msg, "locked" */
static int l_acquire(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *name = path;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "name");
        if (lua_isstring(L, -1))
            name = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_settop(L, 2); /* name stays alive: the opts table at 2 holds it */
    struct lock *lk = lua_newuserdatauv(L, sizeof *lk, 1);
    lk->fd = -1; /* closed state first: nothing leaks if anything below fails */
    luaL_setmetatable(L, LOCK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    int ud = lua_gettop(L);

    for (int attempt = 0; attempt < 10; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            lua_pushnil(L);
            lua_pushfstring(L, "lock %s: %s", path, strerror(e));
            lua_pushstring(L, sbot_errno_name(e));
            return 3;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            struct owner o;
            read_owner(fd, &o);
            close(fd);
            lua_pushnil(L);
            if (e != EWOULDBLOCK)
                lua_pushfstring(L, "lock %s: %s", path, strerror(e));
            else if (o.parsed)
                lua_pushfstring(L, "%s is locked by pid %d on host %s since %s (lock file %s)",
                                name, (int)o.pid, o.host, o.since, path);
            else
                lua_pushfstring(L, "%s is locked by another process (lock file %s)", name, path);
            if (e != EWOULDBLOCK)
                lua_pushstring(L, sbot_errno_name(e));
            else
                lua_pushliteral(L, "locked");
            return 3;
        }
        /* The file may have been released (unlinked) between open and flock:
         * then we hold a lock on an orphaned inode. Try again. */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        struct owner o;
        read_owner(fd, &o);
        lk->fd = fd;
        if (o.parsed)
            sbot_log(L, SBOT_WARN, "%s: taking over stale lock %s of pid %ld on host %s since %s "
                     "(that process no longer holds it)", name, path, o.pid, o.host, o.since);
        else if (lseek(fd, 0, SEEK_END) > 0)
            sbot_log(L, SBOT_WARN, "%s: taking over stale lock %s (unreadable owner)", name, path);

        char host[256], since[64], line[512];
        struct timeval tv;
        struct tm tm;
        if (gethostname(host, sizeof host) != 0)
            strcpy(host, "unknown");
        host[sizeof host - 1] = '\0';
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        int n = snprintf(line, sizeof line, "{\"host\":\"%s\",\"pid\":%d,\"since\":\"%s\"}\n",
                         host, (int)getpid(), since);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
            int e = errno;
            lua_pushcfunction(L, lock_release);
            lua_pushvalue(L, ud);
            lua_call(L, 1, 0);
            lua_pushnil(L);
            lua_pushfstring(L, "lock %s: cannot write owner: %s", path, strerror(e));
            lua_pushstring(L, sbot_errno_name(e));
            return 3;
        }
        fsync(fd);
        lua_pushvalue(L, ud);
        return 1;
    }
    lua_pushnil(L);
    /* ten times the file was released and made again between our open and
     * flock: other processes are taking and releasing it */
    lua_pushfstring(L, "%s: the lock file %s keeps changing hands (released and taken again by other "
                       "processes); try again", name, path);
    lua_pushliteral(L, "locked");
    return 3;
}

/* lock.owner(path) -> {pid, host, since} | nil: who the file says holds it. */
static int l_owner(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct owner o;
    read_owner(fd, &o);
    close(fd);
    if (!o.parsed)
        return 0;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, o.pid);
    lua_setfield(L, -2, "pid");
    lua_pushstring(L, o.host);
    lua_setfield(L, -2, "host");
    lua_pushstring(L, o.since);
    lua_setfield(L, -2, "since");
    return 1;
}

/* lock.probe(path) -> {held = bool, pid, host, since} | nil, msg, code:
 * whether a live process holds the lock file now (its flock), without taking
 * it over; the owner fields when the file names one. No file: nil, msg,
 * "ENOENT". The flock is tried shared, so it never blocks the holder. */
static int l_probe(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "lock %s: %s", path, strerror(e));
        lua_pushstring(L, e == ENOENT ? "ENOENT" : "error");
        return 3;
    }
    int held = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0)
        held = errno == EWOULDBLOCK;
    struct owner o;
    read_owner(fd, &o);
    close(fd); /* drops our shared flock, if we got it */
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, held);
    lua_setfield(L, -2, "held");
    if (o.parsed) {
        lua_pushinteger(L, o.pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, o.host);
        lua_setfield(L, -2, "host");
        lua_pushstring(L, o.since);
        lua_setfield(L, -2, "since");
    }
    return 1;
}

int luaopen_sbot_lock(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"release", lock_release}, {"held", lock_held}, {"path", lock_path},
        {"detach", lock_detach},   {NULL, NULL}};
    static const luaL_Reg fns[] = {{"acquire", l_acquire}, {"owner", l_owner}, {"probe", l_probe},
                                   {NULL, NULL}};
    if (luaL_newmetatable(L, LOCK_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, lock_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
