/* sbot.fsio: the file primitives the artifact store and the S3 client stand
 * on: streaming SHA-256 (whole file, a byte range, or part by part with the
 * whole-object digest computed in the same read), atomic writes (temp file,
 * fsync, rename, fsync of the directory), stat, directory listing, mkdir -p.
 *
 * Expected failures return nil, "what: path: strerror", errno-name; misuse
 * raises. Files are held in userdata with a shared __gc/__close release, so
 * nothing leaks when an error unwinds. */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sbot.h"

#define CHUNK (256 * 1024)
#define HASHER_MT "sbot.fsio.hasher"
#define FILEBOX_MT "sbot.fsio.file"

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int fail(lua_State *L, const char *what, const char *path, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s: %s", what, path, strerror(err));
    const char *code = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == EEXIST ? "EEXIST"
                     : err == ENOTDIR ? "ENOTDIR" : err == EISDIR ? "EISDIR" : err == ENOSPC ? "ENOSPC"
                     : "EIO";
    lua_pushstring(L, code);
    return 3;
}

/* ---- a file and a digest in one userdata -------------------------------- */

struct hasher {
    int fd;
    EVP_MD_CTX *whole;
    EVP_MD_CTX *part;
    long long offset;   /* bytes consumed so far */
    long long size;     /* file size at open */
    long long part_size;
    int finished;
    unsigned char buf[CHUNK];
};

static void hasher_close(struct hasher *h)
{
    if (h->fd >= 0) close(h->fd);
    h->fd = -1;
    if (h->whole) EVP_MD_CTX_free(h->whole);
    if (h->part) EVP_MD_CTX_free(h->part);
    h->whole = h->part = NULL;
}

static int hasher_release(lua_State *L)
{
    hasher_close(luaL_checkudata(L, 1, HASHER_MT));
    return 0;
}

static struct hasher *new_hasher(lua_State *L)
{
    struct hasher *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->fd = -1;
    h->whole = h->part = NULL;
    h->offset = h->size = h->part_size = 0;
    h->finished = 0;
    luaL_setmetatable(L, HASHER_MT);
    return h;
}

/* Digest up to `len` bytes from the hasher's file position into ctx (and
 * into the whole digest when `also_whole`). Returns bytes read, -1 on error. */
static long long digest_range(struct hasher *h, EVP_MD_CTX *ctx, long long len, int also_whole)
{
    long long done = 0;
    while (len < 0 || done < len) {
        size_t want = CHUNK;
        if (len >= 0 && (long long)want > len - done) want = (size_t)(len - done);
        ssize_t n = read(h->fd, h->buf, want);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) break;
        EVP_DigestUpdate(ctx, h->buf, (size_t)n);
        if (also_whole) EVP_DigestUpdate(h->whole, h->buf, (size_t)n);
        done += n;
    }
    return done;
}

static int open_hasher(lua_State *L, struct hasher *h, const char *path)
{
    h->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (h->fd < 0) return -1;
    struct stat st;
    if (fstat(h->fd, &st) != 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return -1;
    }
    h->size = (long long)st.st_size;
    h->whole = EVP_MD_CTX_new();
    h->part = EVP_MD_CTX_new();
    if (!h->whole || !h->part) {
        luaL_error(L, "fsio: out of memory");
    }
    EVP_DigestInit_ex(h->whole, EVP_sha256(), NULL);
    return 0;
}

static void push_digest(lua_State *L, EVP_MD_CTX *ctx, int with_b64)
{
    unsigned char md[32];
    unsigned int n = 0;
    char hex[65];
    EVP_DigestFinal_ex(ctx, md, &n);
    to_hex(md, 32, hex);
    lua_pushstring(L, hex);
    if (with_b64) {
        unsigned char b64[48];
        EVP_EncodeBlock(b64, md, 32);
        lua_pushstring(L, (const char *)b64);
    }
}

/* fsio.sha256(s) -> hex */
static int l_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[32];
    unsigned int mdlen;
    char hex[65];
    EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, 32, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* fsio.sha256_file(path [, offset [, length]]) -> hex, bytes, base64 */
static int l_sha256_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer off = luaL_optinteger(L, 2, 0);
    lua_Integer len = luaL_optinteger(L, 3, -1);
    luaL_argcheck(L, off >= 0, 2, "offset must be >= 0");
    struct hasher *h = new_hasher(L);
    if (open_hasher(L, h, path) != 0) {
        int e = errno;
        hasher_close(h);
        return fail(L, "sha256", path, e);
    }
    if (off > 0 && lseek(h->fd, (off_t)off, SEEK_SET) < 0) {
        int e = errno;
        hasher_close(h);
        return fail(L, "sha256 seek", path, e);
    }
    EVP_DigestInit_ex(h->part, EVP_sha256(), NULL);
    long long n = digest_range(h, h->part, len, 0);
    if (n < 0) {
        int e = errno;
        hasher_close(h);
        return fail(L, "sha256 read", path, e);
    }
    push_digest(L, h->part, 1);   /* hex, b64 */
    hasher_close(h);
    lua_pushinteger(L, n);
    lua_insert(L, -2);            /* hex, bytes, b64 */
    return 3;
}

/* fsio.part_hasher(path, part_size) -> hasher | nil, err
 * hasher:next() -> offset, size, hex, base64 (nil at the end)
 * hasher:sha256() -> hex of the whole file (after the last part)
 * hasher.size -> file size at open */
static int l_part_hasher(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer part = luaL_checkinteger(L, 2);
    luaL_argcheck(L, part > 0, 2, "part size must be > 0");
    struct hasher *h = new_hasher(L);
    h->part_size = part;
    if (open_hasher(L, h, path) != 0) {
        int e = errno;
        hasher_close(h);
        return fail(L, "open", path, e);
    }
    return 1;
}

static int hasher_next(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    if (h->fd < 0) return luaL_error(L, "fsio: hasher is closed");
    if (h->finished || (h->offset >= h->size && h->offset > 0)) {
        h->finished = 1;
        return 0;
    }
    EVP_DigestInit_ex(h->part, EVP_sha256(), NULL);
    long long n = digest_range(h, h->part, h->part_size, 1);
    if (n < 0) {
        int e = errno;
        return fail(L, "read", "part", e);
    }
    if (n == 0 && h->offset > 0) {
        h->finished = 1;
        return 0;
    }
    lua_pushinteger(L, h->offset);
    lua_pushinteger(L, n);
    push_digest(L, h->part, 1);
    h->offset += n;
    if (n < h->part_size) h->finished = 1;
    return 4;
}

static int hasher_sha256(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    if (!h->whole) return luaL_error(L, "fsio: hasher is closed");
    if (!h->finished) return luaL_error(L, "fsio: sha256() before the last part was read");
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    if (!copy) return luaL_error(L, "fsio: out of memory");
    EVP_MD_CTX_copy_ex(copy, h->whole);
    unsigned char md[32];
    unsigned int n;
    char hex[65];
    EVP_DigestFinal_ex(copy, md, &n);
    EVP_MD_CTX_free(copy);
    to_hex(md, 32, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int hasher_index(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "size") == 0) {
        lua_pushinteger(L, h->size);
        return 1;
    }
    if (strcmp(k, "offset") == 0) {
        lua_pushinteger(L, h->offset);
        return 1;
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

/* ---- atomic write -------------------------------------------------------- */

struct filebox {
    int fd;          /* destination temp file */
    int src;         /* source file or -1 */
    char tmp[4096];  /* temp path, unlinked on release unless committed */
    int committed;
};

static void filebox_close(struct filebox *b)
{
    if (b->fd >= 0) close(b->fd);
    if (b->src >= 0) close(b->src);
    b->fd = b->src = -1;
    if (!b->committed && b->tmp[0]) unlink(b->tmp);
    b->tmp[0] = '\0';
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

/* fsio.write_atomic(path, source) -> {size, sha256} | nil, err, code
 * source: a string of content, or {file = path} streamed. */
static int l_write_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
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
    luaL_setmetatable(L, FILEBOX_MT);
    /* The digest context lives in a hasher userdata for the same reason. */
    struct hasher *h = new_hasher(L);
    h->whole = EVP_MD_CTX_new();
    if (!h->whole) return luaL_error(L, "fsio: out of memory");
    EVP_DigestInit_ex(h->whole, EVP_sha256(), NULL);

    if (srcpath) {
        b->src = open(srcpath, O_RDONLY | O_CLOEXEC);
        if (b->src < 0) return abort_write(L, b, "open source", srcpath, errno);
    }
    unsigned char rnd[6];
    RAND_bytes(rnd, sizeof rnd);
    char suffix[13];
    to_hex(rnd, sizeof rnd, suffix);
    snprintf(b->tmp, sizeof b->tmp, "%s.tmp-%s", path, suffix);
    b->fd = open(b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (b->fd < 0) {
        int e = errno;
        b->tmp[0] = '\0';
        return abort_write(L, b, "create", path, e);
    }
    long long total = 0;
    if (data) {
        EVP_DigestUpdate(h->whole, data, datalen);
        if (write_all(b->fd, data, datalen) != 0) return abort_write(L, b, "write", path, errno);
        total = (long long)datalen;
    } else {
        for (;;) {
            ssize_t n = read(b->src, h->buf, CHUNK);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return abort_write(L, b, "read", srcpath, errno);
            if (n == 0) break;
            EVP_DigestUpdate(h->whole, h->buf, (size_t)n);
            if (write_all(b->fd, h->buf, (size_t)n) != 0) return abort_write(L, b, "write", path, errno);
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
    filebox_close(b);

    lua_createtable(L, 0, 2);
    lua_pushinteger(L, total);
    lua_setfield(L, -2, "size");
    push_digest(L, h->whole, 0);
    lua_setfield(L, -2, "sha256");
    return 1;
}

/* fsio.copy_range(src, offset, length, dst) -> hex, base64, bytes | nil, err, code
 * Copy a byte range of src into dst (created or truncated, mode 0600),
 * hashing it in the same read: a part file for an upload. */
static int l_copy_range(lua_State *L)
{
    const char *src = luaL_checkstring(L, 1);
    lua_Integer off = luaL_checkinteger(L, 2);
    lua_Integer len = luaL_checkinteger(L, 3);
    const char *dst = luaL_checkstring(L, 4);
    luaL_argcheck(L, off >= 0, 2, "offset must be >= 0");
    luaL_argcheck(L, len >= 0, 3, "length must be >= 0");
    struct hasher *h = new_hasher(L);
    if (open_hasher(L, h, src) != 0) {
        int e = errno;
        hasher_close(h);
        return fail(L, "open", src, e);
    }
    struct filebox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->fd = b->src = -1;
    b->tmp[0] = '\0';
    b->committed = 1; /* the destination is the caller's: never unlinked here */
    luaL_setmetatable(L, FILEBOX_MT);
    b->fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (b->fd < 0) {
        int e = errno;
        hasher_close(h);
        return abort_write(L, b, "create", dst, e);
    }
    if (lseek(h->fd, (off_t)off, SEEK_SET) < 0) {
        int e = errno;
        hasher_close(h);
        return abort_write(L, b, "seek", src, e);
    }
    EVP_DigestInit_ex(h->part, EVP_sha256(), NULL);
    long long done = 0;
    while (done < len) {
        size_t want = CHUNK;
        if ((long long)want > len - done) want = (size_t)(len - done);
        ssize_t n = read(h->fd, h->buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            hasher_close(h);
            return abort_write(L, b, "read", src, e);
        }
        if (n == 0) break;
        EVP_DigestUpdate(h->part, h->buf, (size_t)n);
        if (write_all(b->fd, h->buf, (size_t)n) != 0) {
            int e = errno;
            hasher_close(h);
            return abort_write(L, b, "write", dst, e);
        }
        done += n;
    }
    if (close(b->fd) != 0) {
        int e = errno;
        b->fd = -1;
        hasher_close(h);
        return abort_write(L, b, "close", dst, e);
    }
    b->fd = -1;
    push_digest(L, h->part, 1);
    hasher_close(h);
    lua_pushinteger(L, done);
    return 3;
}

/* fsio.md5(s) -> hex, base64 (Content-MD5 of small request bodies) */
static int l_md5(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[16];
    unsigned int mdlen;
    char hex[33];
    unsigned char b64[32];
    EVP_Digest(s, n, md, &mdlen, EVP_md5(), NULL);
    to_hex(md, 16, hex);
    EVP_EncodeBlock(b64, md, 16);
    lua_pushstring(L, hex);
    lua_pushstring(L, (const char *)b64);
    return 2;
}

/* ---- part pipeline: a worker thread prepares upload parts ----------------
 *
 * fsio.part_pipeline(path, part_size, dir, ahead, whole) -> pipeline | nil, err
 * A worker thread reads the file once, in order, and for each part writes a
 * part file dir/part-N while computing the part's SHA-256 (and, when `whole`,
 * the whole file's SHA-256 in the same read). It stays at most `ahead` parts
 * ahead of what the caller has released, so hashing and copying overlap the
 * uploads of the previous parts and disk use stays bounded.
 *   p:take()      -> number, offset, size, hex, base64, path  (nil at the end;
 *                    nil, err, code when the worker failed)
 *   p:release(n)  removes part file n and lets the worker go on
 *   p:sha256()    -> whole-file hex (waits for the worker; needs whole = true)
 *   p:close()     stops the worker, removes every part file (also __gc/__close)
 * The worker never touches the Lua state. */

#define PIPE_MT "sbot.fsio.pipeline"

struct part_info {
    long long off, size;
    char hex[65];
    char b64[48];
    int released;
};

struct pipeline {
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;
    long long size, part_size;
    int nparts, ahead, want_whole;
    int produced, taken, released, stop, done, err;
    char errmsg[4600];
    char dir[3800];
    char whole_hex[65];
    EVP_MD_CTX *whole, *part;
    struct part_info *parts;
    unsigned char *buf;
};

struct pipe_box {
    struct pipeline *p;
};

static void part_path(const struct pipeline *p, int n, char *out, size_t len)
{
    snprintf(out, len, "%s/part-%d", p->dir, n);
}

static void pipe_fail(struct pipeline *p, const char *what, const char *path, int e)
{
    pthread_mutex_lock(&p->mu);
    p->err = e ? e : EIO;
    snprintf(p->errmsg, sizeof p->errmsg, "%s: %s: %s", what, path, strerror(p->err));
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *pipe_worker(void *arg)
{
    struct pipeline *p = arg;
    char path[4096];
    for (int i = 0; i < p->nparts; i++) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->produced - p->released >= p->ahead)
            pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) return NULL;
        struct part_info *pi = &p->parts[i];
        part_path(p, i + 1, path, sizeof path);
        int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
            pipe_fail(p, "create part file", path, errno);
            return NULL;
        }
        EVP_DigestInit_ex(p->part, EVP_sha256(), NULL);
        long long done = 0;
        while (done < pi->size) {
            size_t want = CHUNK;
            if ((long long)want > pi->size - done) want = (size_t)(pi->size - done);
            ssize_t n = pread(p->fd, p->buf, want, (off_t)(pi->off + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                int e = n == 0 ? EIO : errno;
                close(out);
                unlink(path);
                pipe_fail(p, n == 0 ? "file shrank while reading" : "read", "source", e);
                return NULL;
            }
            EVP_DigestUpdate(p->part, p->buf, (size_t)n);
            if (p->want_whole) EVP_DigestUpdate(p->whole, p->buf, (size_t)n);
            if (write_all(out, p->buf, (size_t)n) != 0) {
                int e = errno;
                close(out);
                unlink(path);
                pipe_fail(p, "write part file", path, e);
                return NULL;
            }
            done += n;
        }
        if (close(out) != 0) {
            pipe_fail(p, "close part file", path, errno);
            return NULL;
        }
        unsigned char md[32];
        unsigned int mdlen;
        EVP_DigestFinal_ex(p->part, md, &mdlen);
        to_hex(md, 32, pi->hex);
        EVP_EncodeBlock((unsigned char *)pi->b64, md, 32);
        pthread_mutex_lock(&p->mu);
        p->produced++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    if (p->want_whole) {
        unsigned char md[32];
        unsigned int mdlen;
        EVP_DigestFinal_ex(p->whole, md, &mdlen);
        to_hex(md, 32, p->whole_hex);
    }
    pthread_mutex_lock(&p->mu);
    p->done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pipe_free(struct pipeline *p)
{
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->th, NULL);
    }
    char path[4096];
    for (int i = 0; p->parts && i < p->nparts; i++) {
        if (!p->parts[i].released) {
            part_path(p, i + 1, path, sizeof path);
            unlink(path); /* a part file may or may not exist */
        }
    }
    if (p->fd >= 0) close(p->fd);
    if (p->whole) EVP_MD_CTX_free(p->whole);
    if (p->part) EVP_MD_CTX_free(p->part);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->parts);
    free(p->buf);
    free(p);
}

static int pipe_release_all(lua_State *L)
{
    struct pipe_box *b = luaL_checkudata(L, 1, PIPE_MT);
    pipe_free(b->p);
    b->p = NULL;
    return 0;
}

static struct pipeline *check_pipe(lua_State *L)
{
    struct pipe_box *b = luaL_checkudata(L, 1, PIPE_MT);
    if (!b->p) luaL_error(L, "fsio: pipeline is closed");
    return b->p;
}

static int l_part_pipeline(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer part_size = luaL_checkinteger(L, 2);
    size_t dl;
    const char *dir = luaL_checklstring(L, 3, &dl);
    lua_Integer ahead = luaL_optinteger(L, 4, 4);
    int whole = lua_toboolean(L, 5);
    luaL_argcheck(L, part_size > 0, 2, "part size must be > 0");
    luaL_argcheck(L, dl > 0 && dl < 3700, 3, "directory path empty or too long");
    luaL_argcheck(L, ahead >= 1 && ahead <= 10000, 4, "ahead must be 1..10000");
    struct pipe_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    luaL_setmetatable(L, PIPE_MT);
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "fsio: out of memory");
    b->p = p;
    p->fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    memcpy(p->dir, dir, dl + 1);
    p->part_size = part_size;
    p->ahead = (int)ahead;
    p->want_whole = whole;
    p->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (p->fd < 0 || fstat(p->fd, &st) != 0) {
        int e = errno;
        pipe_release_all(L);
        lua_pop(L, 1);
        return fail(L, "open", path, e);
    }
    if (!S_ISREG(st.st_mode)) {
        pipe_release_all(L);
        lua_pop(L, 1);
        return fail(L, "open", path, EISDIR);
    }
    p->size = (long long)st.st_size;
    long long n = p->size == 0 ? 1 : (p->size + part_size - 1) / part_size;
    if (n > 10000) {
        pipe_release_all(L);
        lua_pop(L, 1);
        return luaL_error(L, "fsio: %s needs %d parts of %d bytes (more than 10000)", path, (int)n,
                          (int)part_size);
    }
    p->nparts = (int)n;
    p->parts = calloc((size_t)n, sizeof *p->parts);
    p->buf = malloc(CHUNK);
    p->whole = EVP_MD_CTX_new();
    p->part = EVP_MD_CTX_new();
    if (!p->parts || !p->buf || !p->whole || !p->part) {
        pipe_release_all(L);
        return luaL_error(L, "fsio: out of memory");
    }
    for (int i = 0; i < p->nparts; i++) {
        p->parts[i].off = (long long)i * part_size;
        p->parts[i].size = p->size - p->parts[i].off < part_size ? p->size - p->parts[i].off : part_size;
    }
    EVP_DigestInit_ex(p->whole, EVP_sha256(), NULL);
    if (pthread_create(&p->th, NULL, pipe_worker, p) != 0) {
        int e = errno;
        pipe_release_all(L);
        lua_pop(L, 1);
        return fail(L, "start worker for", path, e);
    }
    p->started = 1;
    return 1;
}

static int pipe_take(lua_State *L)
{
    struct pipeline *p = check_pipe(L);
    pthread_mutex_lock(&p->mu);
    while (!p->err && p->taken >= p->produced && !(p->done && p->taken >= p->nparts))
        pthread_cond_wait(&p->cv, &p->mu);
    int err = p->err, i = p->taken;
    int end = !err && p->taken >= p->nparts;
    if (!err && !end) p->taken++;
    pthread_mutex_unlock(&p->mu);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, p->errmsg);
        lua_pushstring(L, "IO");
        return 3;
    }
    if (end) return 0;
    struct part_info *pi = &p->parts[i];
    char path[4096];
    part_path(p, i + 1, path, sizeof path);
    lua_pushinteger(L, i + 1);
    lua_pushinteger(L, pi->off);
    lua_pushinteger(L, pi->size);
    lua_pushstring(L, pi->hex);
    lua_pushstring(L, pi->b64);
    lua_pushstring(L, path);
    return 6;
}

static int pipe_release(lua_State *L)
{
    struct pipeline *p = check_pipe(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 1 && n <= p->nparts, 2, "no such part");
    pthread_mutex_lock(&p->mu);
    int ok = n <= p->taken && !p->parts[n - 1].released;
    if (ok) {
        p->parts[n - 1].released = 1;
        p->released++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (!ok) return luaL_error(L, "fsio: part %d was not taken or is already released", (int)n);
    char path[4096];
    part_path(p, (int)n, path, sizeof path);
    unlink(path);
    return 0;
}

static int pipe_sha256(lua_State *L)
{
    struct pipeline *p = check_pipe(L);
    if (!p->want_whole) return luaL_error(L, "fsio: pipeline was opened without the whole-file digest");
    pthread_mutex_lock(&p->mu);
    while (!p->err && !p->done) pthread_cond_wait(&p->cv, &p->mu);
    int err = p->err;
    pthread_mutex_unlock(&p->mu);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, p->errmsg);
        return 2;
    }
    lua_pushstring(L, p->whole_hex);
    return 1;
}

static int pipe_index(lua_State *L)
{
    struct pipe_box *b = luaL_checkudata(L, 1, PIPE_MT);
    struct pipeline *p = b->p;
    const char *k = luaL_checkstring(L, 2);
    if (!p && (strcmp(k, "size") == 0 || strcmp(k, "parts") == 0)) {
        lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "size") == 0) {
        lua_pushinteger(L, p->size);
        return 1;
    }
    if (strcmp(k, "parts") == 0) {
        lua_pushinteger(L, p->nparts);
        return 1;
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

/* ---- small file-system helpers ----------------------------------------- */

static const char *type_name(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "link" : "other";
}

/* fsio.stat(path) -> {size, mtime, type} | nil, err, code (lstat: links not followed) */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (lstat(path, &st) != 0) return fail(L, "stat", path, errno);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushstring(L, type_name(st.st_mode));
    lua_setfield(L, -2, "type");
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

/* fsio.mkdirs(path [, mode]) -> true | nil, err, code */
static int l_mkdirs(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    char buf[4096];
    if (n == 0 || n >= sizeof buf) return luaL_argerror(L, 1, "empty or too long path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return fail(L, "mkdir", buf, errno);
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

int luaopen_sbot_fsio(lua_State *L)
{
    static const luaL_Reg hasher_methods[] = {
        {"next", hasher_next},
        {"sha256", hasher_sha256},
        {"close", hasher_release},
        {NULL, NULL},
    };
    luaL_newmetatable(L, HASHER_MT);
    lua_pushcfunction(L, hasher_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, hasher_release);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, hasher_index);
    lua_setfield(L, -2, "__index");
    luaL_newlib(L, hasher_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);

    static const luaL_Reg pipe_methods[] = {
        {"take", pipe_take},
        {"release", pipe_release},
        {"sha256", pipe_sha256},
        {"close", pipe_release_all},
        {NULL, NULL},
    };
    luaL_newmetatable(L, PIPE_MT);
    lua_pushcfunction(L, pipe_release_all);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, pipe_release_all);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, pipe_index);
    lua_setfield(L, -2, "__index");
    luaL_newlib(L, pipe_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);

    luaL_newmetatable(L, FILEBOX_MT);
    lua_pushcfunction(L, filebox_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, filebox_release);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"sha256", l_sha256},
        {"sha256_file", l_sha256_file},
        {"part_hasher", l_part_hasher},
        {"write_atomic", l_write_atomic},
        {"copy_range", l_copy_range},
        {"part_pipeline", l_part_pipeline},
        {"md5", l_md5},
        {"stat", l_stat},
        {"list", l_list},
        {"mkdirs", l_mkdirs},
        {"remove", l_remove},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
