/* sys.c: sbot.sys - small POSIX primitives the Lua library needs and plain
 * Lua lacks: stat with permission bits, recursive mkdir, pids and signals,
 * host name, random bytes, SHA-256 of strings and (streamed) files, and an
 * atomic streamed file copy. Expected failures return nil, "what: why", errno. */
#define _GNU_SOURCE
#include "sbot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int fail(lua_State *L, const char *what, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* sys.stat(path) -> {type, mode, size, uid, mtime} | nil, err, errno */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(L, path, errno);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* sys.mkdir(path [, mode]) -> true | nil, err: creates missing parents too. */
static int l_mkdir(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
    char buf[PATH_MAX];
    if (len == 0 || len >= sizeof buf)
        return luaL_argerror(L, 1, "empty or too long path");
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return fail(L, buf, errno);
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(L, path, errno);
    if (!S_ISDIR(st.st_mode))
        return fail(L, path, ENOTDIR);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_hostname(lua_State *L)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        return fail(L, "gethostname", errno);
    host[sizeof host - 1] = '\0';
    lua_pushstring(L, host);
    return 1;
}

/* sys.pid_alive(pid) -> boolean: a process with that pid exists (on this host). */
static int l_pid_alive(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    luaL_argcheck(L, pid > 0, 1, "pid must be positive");
    lua_pushboolean(L, kill((pid_t)pid, 0) == 0 || errno == EPERM);
    return 1;
}

static const char *const signal_names[] = {"TERM", "KILL", "INT", "HUP", "SEGV", "ABRT",
                                           "USR1", "USR2", "STOP", "CONT", NULL};
static const int signal_numbers[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGSEGV, SIGABRT,
                                     SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};

/* sys.kill(pid, "TERM"|"KILL"|...) -> true | nil, err */
static int l_kill(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    int sig = signal_numbers[luaL_checkoption(L, 2, "TERM", signal_names)];
    luaL_argcheck(L, pid > 0, 1, "pid must be positive");
    if (kill((pid_t)pid, sig) != 0)
        return fail(L, lua_pushfstring(L, "kill %d", (int)pid), errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.random_hex(nbytes) -> lowercase hex string of nbytes random bytes */
static int l_random_hex(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0 && n <= 64, 1, "between 1 and 64 bytes");
    unsigned char raw[64];
    char hex[129];
    if (RAND_bytes(raw, (int)n) != 1)
        return luaL_error(L, "sys.random_hex: OpenSSL RAND_bytes failed");
    for (lua_Integer i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    lua_pushlstring(L, hex, (size_t)(2 * n));
    return 1;
}

static void push_hex(lua_State *L, const unsigned char *md, unsigned len)
{
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lua_pushlstring(L, hex, 2 * len);
}

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return luaL_error(L, "sys.sha256: OpenSSL digest failed");
    push_hex(L, md, mdlen);
    return 1;
}

/* Stream src (and optionally copy it to the open fd out) through SHA-256.
 * Returns 0 or an errno; *size gets the byte count. No Lua calls inside. */
static int stream_file(int in, int out, unsigned char *md, unsigned *mdlen, long long *size)
{
    char buf[65536];
    int err = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return ENOMEM;
    }
    *size = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += n;
        for (ssize_t off = 0; out >= 0 && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                err = errno;
                break;
            }
            off += w;
        }
        if (err)
            break;
    }
    if (!err && EVP_DigestFinal_ex(ctx, md, mdlen) != 1)
        err = EIO;
    EVP_MD_CTX_free(ctx);
    return err;
}

/* sys.sha256_file(path) -> hex, size | nil, err, errno (streamed, any size) */
static int l_sha256_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(L, path, errno);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    long long size = 0;
    int err = stream_file(fd, -1, md, &mdlen, &size);
    close(fd);
    if (err)
        return fail(L, path, err);
    push_hex(L, md, mdlen);
    lua_pushinteger(L, size);
    return 2;
}

/* sys.copy_file(src, dst) -> sha256, size | nil, err, errno. Streams src to a
 * temporary file beside dst and renames it into place (atomic). */
static int l_copy_file(lua_State *L)
{
    const char *src = luaL_checkstring(L, 1);
    const char *dst = luaL_checkstring(L, 2);
    const char *tmp = lua_pushfstring(L, "%s.tmp.%d", dst, (int)getpid());
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return fail(L, src, errno);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return fail(L, tmp, e);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    long long size = 0;
    int err = stream_file(in, out, md, &mdlen, &size);
    close(in);
    if (close(out) != 0 && !err)
        err = errno;
    if (!err && rename(tmp, dst) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        return fail(L, lua_pushfstring(L, "copy %s to %s", src, dst), err);
    }
    push_hex(L, md, mdlen);
    lua_pushinteger(L, size);
    return 2;
}

/* sys.monotime() -> seconds (float) from a monotonic clock, for durations. */
static int l_monotime(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* sys.utc_iso() -> "2026-11-26T12:03:00.123Z" (wall clock, milliseconds) */
static int l_utc_iso(lua_State *L)
{
    struct timeval tv;
    struct tm tm;
    char out[40];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, sizeof out - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    lua_pushstring(L, out);
    return 1;
}

/* sys.realpath(path) -> absolute canonical path | nil, err, errno */
static int l_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *abs = realpath(path, NULL);
    if (!abs)
        return fail(L, path, errno);
    lua_pushstring(L, abs);
    free(abs);
    return 1;
}

int luaopen_sbot_sys(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"stat", l_stat},           {"mkdir", l_mkdir},
        {"getpid", l_getpid},       {"hostname", l_hostname},
        {"pid_alive", l_pid_alive}, {"kill", l_kill},
        {"random_hex", l_random_hex}, {"sha256", l_sha256},
        {"sha256_file", l_sha256_file}, {"copy_file", l_copy_file},
        {"monotime", l_monotime},   {"utc_iso", l_utc_iso},
        {"realpath", l_realpath},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
