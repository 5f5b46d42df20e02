/* crypto.c: sbot.crypto - hashes, HMAC, encodings and randomness on OpenSSL.
 *
 * Digests are returned raw (binary strings); crypto.hex turns them into
 * text. The *_file variants stream a file in 64 KiB blocks, so a file of any
 * size is hashed in constant memory. */
#include "sbot.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define HASHER_MT "sbot.crypto.hasher"
#define JOB_MT "sbot.crypto.job"
#define BLOCK 65536

int luaopen_sbot_crypto(lua_State *L);

/* A byte range of a file: offset, and length (-1: to the end). */
struct range {
    long long offset, length;
};

/* Optional arguments offset, length at stack index idx, idx + 1. */
static struct range check_range(lua_State *L, int idx)
{
    struct range r = {luaL_optinteger(L, idx, 0), luaL_optinteger(L, idx + 1, -1)};
    luaL_argcheck(L, r.offset >= 0, idx, "offset must be >= 0");
    luaL_argcheck(L, lua_isnoneornil(L, idx + 1) || r.length >= 0, idx + 1, "length must be >= 0");
    return r;
}

/* Feed a range of a file to update(ctx, data, n). Returns 0 or an errno
 * value (ERANGE: the file ends before the range does, the code
 * http.request gives a body_file shorter than its range). */
static int feed_file(const char *path, struct range r,
                     int (*update)(void *, const void *, size_t), void *ctx)
{
    static const int ok = 1;
    unsigned char buf[BLOCK];
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno ? errno : EIO;
    int err = 0;
    if (r.offset && fseeko(f, (off_t)r.offset, SEEK_SET) != 0)
        err = errno ? errno : EIO;
    long long left = r.length;
    while (!err && left != 0) {
        size_t want = left < 0 || left > (long long)sizeof buf ? sizeof buf : (size_t)left;
        size_t n = fread(buf, 1, want, f);
        if (n == 0) {
            if (ferror(f))
                err = errno ? errno : EIO;
            else if (left > 0)
                err = ERANGE;
            break;
        }
        if (update(ctx, buf, n) != ok)
            err = EIO;
        if (left > 0)
            left -= (long long)n;
    }
    fclose(f);
    return err;
}

/* nil, message, the errno name (docs/errors.md) */
static int push_file_error(lua_State *L, const char *fname, const char *path, int err)
{
    lua_pushnil(L);
    if (err == ERANGE)
        lua_pushfstring(L, "crypto.%s: %s ends before the requested range", fname, path);
    else
        lua_pushfstring(L, "crypto.%s: cannot read %s: %s", fname, path, strerror(err));
    lua_pushstring(L, sbot_errno_name(err));
    return 3;
}

static int md_update(void *ctx, const void *d, size_t n)
{
    return EVP_DigestUpdate(ctx, d, n);
}

static int mac_update(void *ctx, const void *d, size_t n)
{
    return EVP_MAC_update(ctx, d, n);
}

/* digest(md, data) or, with is_file, digest of the file named by arg 1. */
static int digest(lua_State *L, const EVP_MD *md, int is_file, const char *fname)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!is_file) {
        if (!EVP_Digest(data, len, out, &outlen, md, NULL))
            return luaL_error(L, "crypto.%s: OpenSSL digest failed", fname);
        lua_pushlstring(L, (const char *)out, outlen);
        return 1;
    }
    struct range r = check_range(L, 2);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL)) {
        EVP_MD_CTX_free(ctx);
        return luaL_error(L, "crypto.%s: OpenSSL digest failed", fname);
    }
    int err = feed_file(data, r, md_update, ctx);
    int fin = !err && EVP_DigestFinal_ex(ctx, out, &outlen);
    EVP_MD_CTX_free(ctx);
    if (err)
        return push_file_error(L, fname, data, err);
    if (!fin)
        return luaL_error(L, "crypto.%s: OpenSSL digest failed", fname);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_sha256(lua_State *L) { return digest(L, EVP_sha256(), 0, "sha256"); }
static int l_sha256_file(lua_State *L) { return digest(L, EVP_sha256(), 1, "sha256_file"); }
static int l_md5(lua_State *L) { return digest(L, EVP_md5(), 0, "md5"); }
static int l_md5_file(lua_State *L) { return digest(L, EVP_md5(), 1, "md5_file"); }

static EVP_MAC_CTX *hmac_new(const char *key, size_t keylen)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!mac)
        return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (!ctx)
        return NULL;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end()};
    /* an empty key is valid HMAC input; OpenSSL wants a non-NULL pointer */
    if (!EVP_MAC_init(ctx, (const unsigned char *)(keylen ? key : ""), keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int hmac(lua_State *L, int is_file, const char *fname)
{
    size_t keylen, len;
    const char *key = luaL_checklstring(L, 1, &keylen);
    const char *data = luaL_checklstring(L, 2, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outlen = 0;
    struct range r = is_file ? check_range(L, 3) : (struct range){0, -1};
    EVP_MAC_CTX *ctx = hmac_new(key, keylen);
    if (!ctx)
        return luaL_error(L, "crypto.%s: OpenSSL HMAC failed", fname);
    int err = 0, ok;
    if (is_file)
        err = feed_file(data, r, mac_update, ctx);
    else
        err = EVP_MAC_update(ctx, (const unsigned char *)data, len) ? 0 : EIO;
    ok = !err && EVP_MAC_final(ctx, out, &outlen, sizeof out);
    EVP_MAC_CTX_free(ctx);
    if (err && is_file)
        return push_file_error(L, fname, data, err);
    if (!ok)
        return luaL_error(L, "crypto.%s: OpenSSL HMAC failed", fname);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_hmac_sha256(lua_State *L) { return hmac(L, 0, "hmac_sha256"); }
static int l_hmac_sha256_file(lua_State *L) { return hmac(L, 1, "hmac_sha256_file"); }

static int l_hex(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, len * 2 + 1);
    sbot_hex(s, len, p);
    luaL_pushresultsize(&b, len * 2);
    return 1;
}

static int l_base64_encode(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, SBOT_BASE64_LEN(len) + 1);
    luaL_pushresultsize(&b, sbot_base64(s, len, p));
    return 1;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe alphabet; padding optional; whitespace ignored. */
static int l_base64_decode(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    unsigned v = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int d = b64val(c);
        if (d < 0 || pad) {
            luaL_pushresult(&b);
            lua_pushnil(L);
            lua_pushfstring(L, "crypto.base64_decode: invalid base64 at byte %d", (int)i + 1);
            lua_pushliteral(L, "invalid");
            return 3;
        }
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            luaL_addchar(&b, (char)((v >> bits) & 0xff));
        }
    }
    if (bits >= 6 || pad > 2 || (v & ((1u << bits) - 1)) != 0) {
        luaL_pushresult(&b);
        lua_pushnil(L);
        lua_pushliteral(L, "crypto.base64_decode: truncated or non-canonical base64 input");
        lua_pushliteral(L, "invalid");
        return 3;
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 1 << 20, 1, "must be from 0 to 1048576");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n > 0 && RAND_bytes(p, (int)n) != 1)
        return luaL_error(L, "crypto.random_bytes: the OpenSSL random generator failed");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int l_uuid4(lua_State *L)
{
    unsigned char u[16];
    char out[37];
    if (RAND_bytes(u, sizeof u) != 1)
        return luaL_error(L, "crypto.uuid4: the OpenSSL random generator failed");
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, sizeof out,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
    lua_pushstring(L, out);
    return 1;
}

/* ---- incremental hasher ------------------------------------------------------ */

struct hasher {
    EVP_MD_CTX *ctx; /* NULL once digested or closed */
};

static int hasher_release(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

static struct hasher *check_open(lua_State *L)
{
    struct hasher *h = luaL_checkudata(L, 1, HASHER_MT);
    if (!h->ctx)
        luaL_error(L, "crypto hasher: already finished (digest() was called or it was closed)");
    return h;
}

static int hasher_update(lua_State *L)
{
    struct hasher *h = check_open(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (!EVP_DigestUpdate(h->ctx, s, len))
        return luaL_error(L, "crypto hasher: OpenSSL digest failed");
    lua_settop(L, 1);
    return 1;
}

static int hasher_digest(lua_State *L)
{
    struct hasher *h = check_open(L);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, out, &n);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    if (!ok)
        return luaL_error(L, "crypto hasher: OpenSSL digest failed");
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

static int l_hasher(lua_State *L)
{
    static const char *const names[] = {"sha256", "md5", NULL};
    int which = luaL_checkoption(L, 1, NULL, names);
    struct hasher *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->ctx = NULL;
    luaL_setmetatable(L, HASHER_MT);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, which == 0 ? EVP_sha256() : EVP_md5(), NULL))
        return luaL_error(L, "crypto.hasher: OpenSSL digest failed");
    return 1;
}

/* ---- SHA-256 of byte ranges of a file, in a worker thread -------------------
 *
 * crypto.sha256_ranges(path, ranges [, hasher]) -> job
 * job:wait() -> {raw digest, ...} | nil, message, errno name
 * A worker thread hashes each {offset, length} of the file (and feeds every
 * byte, in range order, to a copy of `hasher`'s state, which wait() copies
 * back), so the caller can do other work (an upload) meanwhile. The worker
 * never touches the Lua state; closing or collecting the job cancels and
 * joins it. */

struct job {
    pthread_t tid;
    int running;          /* thread started and not joined yet */
    int waited;
    atomic_int cancel;
    char *path;
    struct range *ranges;
    size_t n;
    unsigned char (*out)[32];
    EVP_MD_CTX *part, *whole; /* whole: NULL unless a hasher was given */
    int err;                  /* errno of the failure (ERANGE: short file, ECANCELED) */
};

struct job_feed {
    struct job *job;
};

static int job_update(void *ctx, const void *d, size_t n)
{
    struct job *j = ((struct job_feed *)ctx)->job;
    if (atomic_load(&j->cancel))
        return 0;
    if (!EVP_DigestUpdate(j->part, d, n))
        return 0;
    if (j->whole && !EVP_DigestUpdate(j->whole, d, n))
        return 0;
    return 1;
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct job_feed feed = {j};
    for (size_t i = 0; i < j->n && !j->err; i++) {
        unsigned int len = 0;
        if (!EVP_DigestInit_ex(j->part, EVP_sha256(), NULL)) {
            j->err = EIO;
            break;
        }
        j->err = feed_file(j->path, j->ranges[i], job_update, &feed);
        if (atomic_load(&j->cancel))
            j->err = ECANCELED;
        if (!j->err && !EVP_DigestFinal_ex(j->part, j->out[i], &len))
            j->err = EIO;
    }
    return NULL;
}

static void job_join(struct job *j)
{
    if (j->running) {
        pthread_join(j->tid, NULL);
        j->running = 0;
    }
}

static int job_release(lua_State *L)
{
    struct job *j = luaL_checkudata(L, 1, JOB_MT);
    atomic_store(&j->cancel, 1);
    job_join(j);
    free(j->path);
    free(j->ranges);
    free(j->out);
    EVP_MD_CTX_free(j->part);
    EVP_MD_CTX_free(j->whole);
    j->path = NULL;
    j->ranges = NULL;
    j->out = NULL;
    j->part = j->whole = NULL;
    j->waited = 1;
    return 0;
}

static int l_sha256_ranges(lua_State *L)
{
    size_t plen;
    const char *path = luaL_checklstring(L, 1, &plen);
    luaL_checktype(L, 2, LUA_TTABLE);
    struct hasher *h = lua_isnoneornil(L, 3) ? NULL : luaL_checkudata(L, 3, HASHER_MT);
    if (h && !h->ctx)
        return luaL_argerror(L, 3, "the hasher is already finished");
    lua_Integer n = luaL_len(L, 2);
    luaL_argcheck(L, n >= 1 && n <= 100000, 2, "must list 1 to 100000 {offset, length} ranges");
    struct range *ranges = lua_newuserdatauv(L, (size_t)n * sizeof *ranges, 0); /* scratch */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_error(L, "crypto.sha256_ranges: range #%d must be {offset, length}", (int)i);
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        int ok1, ok2;
        lua_Integer off = lua_tointegerx(L, -2, &ok1), len = lua_tointegerx(L, -1, &ok2);
        if (!ok1 || !ok2 || off < 0 || len < 0)
            return luaL_error(L, "crypto.sha256_ranges: range #%d must be {offset >= 0, length >= 0}",
                              (int)i);
        ranges[i - 1] = (struct range){off, len};
        lua_pop(L, 3);
    }
    struct job *j = lua_newuserdatauv(L, sizeof *j, 1);
    memset(j, 0, sizeof *j);
    atomic_init(&j->cancel, 0);
    luaL_setmetatable(L, JOB_MT);
    j->path = malloc(plen + 1);
    j->ranges = malloc((size_t)n * sizeof *ranges);
    j->out = malloc((size_t)n * sizeof *j->out);
    j->part = EVP_MD_CTX_new();
    j->whole = h ? EVP_MD_CTX_new() : NULL;
    j->n = (size_t)n;
    if (!j->path || !j->ranges || !j->out || !j->part || (h && !j->whole))
        return luaL_error(L, "crypto.sha256_ranges: out of memory"); /* freed by __gc */
    memcpy(j->path, path, plen + 1);
    memcpy(j->ranges, ranges, (size_t)n * sizeof *ranges);
    if (h && !EVP_MD_CTX_copy_ex(j->whole, h->ctx))
        return luaL_error(L, "crypto.sha256_ranges: OpenSSL digest failed");
    int e = pthread_create(&j->tid, NULL, job_main, j);
    if (e != 0)
        return luaL_error(L, "crypto.sha256_ranges: cannot start a thread: %s", strerror(e));
    j->running = 1;
    if (h) {
        lua_pushvalue(L, 3); /* wait() copies the state back into this hasher */
        lua_setiuservalue(L, -2, 1);
    }
    return 1;
}

static int job_wait(lua_State *L)
{
    struct job *j = luaL_checkudata(L, 1, JOB_MT);
    if (j->waited)
        return luaL_error(L, "crypto job: already waited for or closed");
    job_join(j);
    j->waited = 1;
    if (j->err)
        return push_file_error(L, "sha256_ranges", j->path, j->err);
    if (j->whole) {
        lua_getiuservalue(L, 1, 1);
        struct hasher *h = luaL_checkudata(L, -1, HASHER_MT);
        if (!h->ctx)
            return luaL_error(L, "crypto job: the hasher was finished while the job ran");
        if (!EVP_MD_CTX_copy_ex(h->ctx, j->whole))
            return luaL_error(L, "crypto job: OpenSSL digest failed");
        lua_pop(L, 1);
    }
    lua_createtable(L, (int)j->n, 0);
    for (size_t i = 0; i < j->n; i++) {
        lua_pushlstring(L, (const char *)j->out[i], 32);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

int luaopen_sbot_crypto(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"sha256", l_sha256},
        {"sha256_file", l_sha256_file},
        {"md5", l_md5},
        {"md5_file", l_md5_file},
        {"hmac_sha256", l_hmac_sha256},
        {"hmac_sha256_file", l_hmac_sha256_file},
        {"hex", l_hex},
        {"base64_encode", l_base64_encode},
        {"base64_decode", l_base64_decode},
        {"random_bytes", l_random_bytes},
        {"uuid4", l_uuid4},
        {"hasher", l_hasher},
        {"sha256_ranges", l_sha256_ranges},
        {NULL, NULL}};
    static const luaL_Reg methods[] = {{"update", hasher_update}, {"digest", hasher_digest},
                                       {NULL, NULL}};
    if (luaL_newmetatable(L, HASHER_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, hasher_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, hasher_release);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    static const luaL_Reg job_methods[] = {{"wait", job_wait}, {"close", job_release}, {NULL, NULL}};
    if (luaL_newmetatable(L, JOB_MT)) {
        luaL_newlib(L, job_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, job_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, job_release);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
