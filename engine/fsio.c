/* sbot.fsio: the file primitives of the Lua library (the artifact store,
 * the S3 client, runs and components): stat, directory listing, mkdir -p,
 * remove, realpath, and atomic writes (temp file, fsync, rename, fsync of
 * the directory) that return the SHA-256 of what was written. Hashing of
 * files and byte ranges is sbot.crypto.
 *
 * Expected failures return nil, "what: path: strerror", the errno name
 * ("ENOENT", "EROFS", ...: docs/errors.md); misuse
 * raises. Files are held in userdata with a shared __gc/__close release, so
 * nothing leaks when an error unwinds. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sbot.h"
#include "util.h"

#define CHUNK (256 * 1024)
#define FILEBOX_MT "sbot.fsio.file"

static int fail(lua_State *L, const char *what, const char *path, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s: %s", what, path, strerror(err));
    lua_pushstring(L, sbot_errno_name(err)); /* the real name: EROFS, EPERM, ENOSPC, ... */
    return 3;
}

/* A permission mode at idx: a string of octal digits ("0600", "755") or an
 * integer from 0 to 0777 (tonumber("600", 8), 0x180). Lua has no octal
 * literals: 0600 is the decimal 600 (octal 1130), refused with that hint.
 * nil gives dflt. */
static lua_Integer check_mode(lua_State *L, int idx, lua_Integer dflt, const char *what)
{
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx))
        return dflt;
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        lua_Integer m = 0;
        if (n < 1 || n > 4 || strspn(str, "01234567") != n)
            return luaL_error(L, "%s must be octal permission digits such as \"0600\", got \"%s\"",
                              what, str);
        for (size_t i = 0; i < n; i++)
            m = m * 8 + (str[i] - '0');
        if (m > 0777)
            return luaL_error(L, "%s: \"%s\": only permission bits (up to 0777) are supported", what,
                              str);
        return m;
    }
    if (!lua_isinteger(L, idx))
        return luaL_error(L, "%s must be a string of octal digits (\"0600\") or an integer, got %s",
                          what, luaL_typename(L, idx));
    lua_Integer m = lua_tointeger(L, idx);
    if (m < 0 || m > 0777)
        return luaL_error(L, "%s: %I is not a permission mode (0 to 0777); Lua has no octal literals "
                             "(0600 is the decimal 600): write \"0600\" or tonumber(\"600\", 8)",
                          what, m);
    return m;
}

/* ---- atomic write -------------------------------------------------------- */

struct filebox {
    int fd;          /* destination temp file */
    int src;         /* source file or -1 */
    char tmp[4096];  /* temp path, unlinked on release unless committed */
    int committed;
    EVP_MD_CTX *md;  /* SHA-256 of what is written */
    unsigned char buf[CHUNK];
};

static void filebox_close(struct filebox *b)
{
    if (b->fd >= 0) close(b->fd);
    if (b->src >= 0) close(b->src);
    b->fd = b->src = -1;
    if (!b->committed && b->tmp[0]) unlink(b->tmp);
    b->tmp[0] = '\0';
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
}

static int filebox_release(lua_State *L)
{
    filebox_close(luaL_checkudata(L, 1, FILEBOX_MT));
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int abort_write(lua_State *L, struct filebox *b, const char *what, const char *path, int e)
{
    filebox_close(b);
    return fail(L, what, path, e);
}

/* fsio.write_atomic(path, source [, {mode = 0600}]) -> {size, sha256} | nil, err, code
 * source: a string of content, or {file = path} streamed. mode: the file's
 * permission bits, set (not masked by the umask) before any data goes in. */
static int l_write_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = -1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "mode") != 0)
                return luaL_error(L, "fsio.write_atomic: unknown option '%s' (expected mode)",
                                  luaL_tolstring(L, -1, NULL));
        }
        lua_getfield(L, 3, "mode");
        mode = check_mode(L, -1, -1, "fsio.write_atomic: 'mode'");
        lua_settop(L, 2);
    }
    size_t datalen = 0;
    const char *data = NULL, *srcpath = NULL;
    if (lua_type(L, 2) == LUA_TSTRING) {
        data = lua_tolstring(L, 2, &datalen);
    } else if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "file");
        srcpath = lua_tostring(L, -1);
        if (!srcpath) return luaL_argerror(L, 2, "a string or {file = path} expected");
    } else {
        return luaL_argerror(L, 2, "a string or {file = path} expected");
    }
    if (strlen(path) + 32 >= sizeof(((struct filebox *)0)->tmp))
        return luaL_argerror(L, 1, "path too long");

    struct filebox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->fd = b->src = -1;
    b->tmp[0] = '\0';
    b->committed = 0;
    b->md = NULL;
    luaL_setmetatable(L, FILEBOX_MT);
    b->md = EVP_MD_CTX_new();
    if (!b->md || !EVP_DigestInit_ex(b->md, EVP_sha256(), NULL))
        return luaL_error(L, "fsio.write_atomic: OpenSSL digest failed");

    if (srcpath) {
        b->src = open(srcpath, O_RDONLY | O_CLOEXEC);
        if (b->src < 0) return abort_write(L, b, "open source", srcpath, errno);
    }
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return luaL_error(L, "fsio.write_atomic: the OpenSSL random generator failed");
    char suffix[13];
    sbot_hex(rnd, sizeof rnd, suffix);
    snprintf(b->tmp, sizeof b->tmp, "%s.tmp-%s", path, suffix);
    /* with a mode the file is created owner-only, then given exactly that
     * mode, before any byte of (possibly secret) data goes in */
    b->fd = open(b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode >= 0 ? 0600 : 0644);
    if (b->fd < 0) {
        int e = errno;
        b->tmp[0] = '\0';
        return abort_write(L, b, "create", path, e);
    }
    if (mode >= 0 && fchmod(b->fd, (mode_t)mode) != 0)
        return abort_write(L, b, "chmod", path, errno);
    long long total = 0;
    if (data) {
        EVP_DigestUpdate(b->md, data, datalen);
        if (write_all(b->fd, data, datalen) != 0) return abort_write(L, b, "write", path, errno);
        total = (long long)datalen;
    } else {
        for (;;) {
            ssize_t n = read(b->src, b->buf, CHUNK);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return abort_write(L, b, "read", srcpath, errno);
            if (n == 0) break;
            EVP_DigestUpdate(b->md, b->buf, (size_t)n);
            if (write_all(b->fd, b->buf, (size_t)n) != 0) return abort_write(L, b, "write", path, errno);
            total += n;
        }
    }
    if (fsync(b->fd) != 0) return abort_write(L, b, "fsync", path, errno);
    if (close(b->fd) != 0) {
        b->fd = -1;
        return abort_write(L, b, "close", path, errno);
    }
    b->fd = -1;
    if (rename(b->tmp, path) != 0) return abort_write(L, b, "rename", path, errno);
    b->committed = 1;
    fsync_dir_of(path);
    unsigned char md[32];
    char hex[65];
    unsigned int mdlen = 0;
    int ok = EVP_DigestFinal_ex(b->md, md, &mdlen);
    filebox_close(b);
    if (!ok)
        return luaL_error(L, "fsio.write_atomic: OpenSSL digest failed");
    sbot_hex(md, 32, hex);

    lua_createtable(L, 0, 2);
    lua_pushinteger(L, total);
    lua_setfield(L, -2, "size");
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "sha256");
    return 1;
}

/* ---- small file-system helpers ----------------------------------------- */

static const char *type_name(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "link" : "other";
}

/* fsio.stat(path [, follow]) -> {type, size, mtime, mode, uid, dev, ino} | nil, err, code
 * lstat (a link is type "link") unless follow is true. */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int follow = lua_toboolean(L, 2);
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) return fail(L, "stat", path, errno);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushstring(L, type_name(st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_dev);
    lua_setfield(L, -2, "dev");
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    lua_setfield(L, -2, "ino");
    return 1;
}

struct dirbox {
    DIR *d;
};

static int dirbox_release(lua_State *L)
{
    struct dirbox *b = luaL_checkudata(L, 1, "sbot.fsio.dir");
    if (b->d) closedir(b->d);
    b->d = NULL;
    return 0;
}

/* fsio.list(dir) -> {{name, type}, ...} in directory order | nil, err, code */
static int l_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct dirbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->d = NULL;
    if (luaL_newmetatable(L, "sbot.fsio.dir")) {
        lua_pushcfunction(L, dirbox_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, dirbox_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    b->d = opendir(path);
    if (!b->d) return fail(L, "list", path, errno);
    lua_newtable(L);
    int dfd = dirfd(b->d);
    struct dirent *e;
    lua_Integer n = 0;
    while ((e = readdir(b->d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        struct stat st;
        const char *type = "other";
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) type = type_name(st.st_mode);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, e->d_name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, type);
        lua_setfield(L, -2, "type");
        lua_rawseti(L, -2, ++n);
    }
    closedir(b->d);
    b->d = NULL;
    return 1;
}

/* fsio.mkdirs(path [, mode = "0755"]) -> true | nil, err, code (mkdir -p) */
static int l_mkdirs(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    lua_Integer mode = check_mode(L, 2, 0755, "fsio.mkdirs: mode");
    char buf[PATH_MAX];
    if (n == 0 || n >= sizeof buf) return luaL_argerror(L, 1, "empty or too long path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) return fail(L, "mkdir", buf, errno);
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0) return fail(L, "mkdir", path, errno);
    if (!S_ISDIR(st.st_mode)) return fail(L, "mkdir", path, ENOTDIR);
    lua_pushboolean(L, 1);
    return 1;
}

/* fsio.remove(path) -> true | nil, err, code (files and empty directories) */
static int l_remove(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (remove(path) != 0) return fail(L, "remove", path, errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* fsio.realpath(path) -> absolute canonical path | nil, err, code (must exist) */
static int l_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char abs[PATH_MAX]; /* not malloc'ed: lua_pushstring may raise */
    if (!realpath(path, abs)) return fail(L, "realpath", path, errno);
    lua_pushstring(L, abs);
    return 1;
}

int luaopen_sbot_fsio(lua_State *L)
{
    luaL_newmetatable(L, FILEBOX_MT);
    lua_pushcfunction(L, filebox_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, filebox_release);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"write_atomic", l_write_atomic},
        {"stat", l_stat},
        {"list", l_list},
        {"mkdirs", l_mkdirs},
        {"remove", l_remove},
        {"realpath", l_realpath},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
