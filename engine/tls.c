/* tls.c: sbot.tls - the one parser of the TLS options every client takes,
 *
 *   tls = {ca_file = path, pin_sha256 = pin, insecure = bool, server_name = name}
 *
 * used by sbot.http, sbot.ws, the site schema (sbot.site through tls.check)
 * and C clients (sbot_tls_parse in sbot.h), so the same table is accepted
 * and refused with the same words everywhere. A pin is the SHA-256 of the
 * server's DER SubjectPublicKeyInfo, given as base64 (44 characters ending in
 * '='), as curl's "sha256//<base64>" or as 64 hex digits (colons allowed
 * between bytes); it is held as its 32 raw bytes and shown as base64.
 *
 * Parsing allocates nothing: strings are copied into the fixed buffers of
 * struct sbot_tls, so a caller can raise right after a failed parse. */
#include "sbot.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

static const char *const tls_keys[] = {"ca_file", "pin_sha256", "insecure", "server_name", NULL};

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 of exactly 32 bytes: 43 alphabet characters and one '=' whose
 * decoding encodes back to the same text (no stray low bits). */
static int pin_from_base64(const char *s, size_t n, unsigned char out[32])
{
    if (n != 44 || s[43] != '=' || strspn(s, B64) != 43)
        return -1;
    unsigned char tmp[36];
    if (EVP_DecodeBlock(tmp, (const unsigned char *)s, 44) != 33) /* 32 + the padding byte */
        return -1;
    char again[48];
    sbot_base64(tmp, 32, again);
    if (memcmp(again, s, 44) != 0)
        return -1;
    memcpy(out, tmp, 32);
    return 0;
}

/* 64 hex digits, or 32 pairs separated by ':' (openssl's style). */
static int pin_from_hex(const char *s, size_t n, unsigned char out[32])
{
    int colons = n == 95;
    if (n != 64 && !colons)
        return -1;
    for (size_t i = 0, k = 0; k < 32; k++) {
        int hi = sbot_hexval(s[i]), lo = sbot_hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[k] = (unsigned char)(hi << 4 | lo);
        i += 2;
        if (colons && k < 31 && s[i++] != ':')
            return -1;
    }
    return 0;
}

int sbot_tls_decode_pin(const char *s, size_t n, unsigned char out[32])
{
    if (n >= 8 && strncmp(s, "sha256//", 8) == 0)
        return pin_from_base64(s + 8, n - 8, out);
    if (pin_from_base64(s, n, out) == 0)
        return 0;
    return pin_from_hex(s, n, out);
}

static int scheme_is(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

/* The problems found in one table: messages collected in a Lua table at a
 * fixed stack index (so the stack stays balanced inside lua_next), joined by
 * "\n" at the end. */
struct problems {
    lua_State *L;
    const char *where;
    int list; /* stack index of the message list */
    int n;
};

/* Record "<where>.<key>: <message>" (or "<where>: <message>" with key NULL),
 * the message formatted like lua_pushfstring. */
static void bad(struct problems *p, const char *key, const char *fmt, ...)
{
    lua_State *L = p->L;
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    if (key)
        lua_pushfstring(L, "%s.%s: %s", p->where, key, msg);
    else
        lua_pushfstring(L, "%s: %s", p->where, msg);
    lua_rawseti(L, p->list, ++p->n);
    lua_pop(L, 1);
}

/* The string field key of the table at t into buf (size bytes): 1 copied,
 * 0 absent or bad (a problem recorded). *given is set when it is present. */
static int string_field(struct problems *p, int t, const char *key, char *buf, size_t size,
                        int *given)
{
    lua_State *L = p->L;
    int ty = lua_getfield(L, t, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    *given = 1;
    if (ty != LUA_TSTRING) {
        bad(p, key, "expected a string, got %s", luaL_typename(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    int fits = n > 0 && n < size && strlen(s) == n;
    if (fits)
        memcpy(buf, s, n + 1);
    else if (n == 0)
        bad(p, key, "must not be empty");
    else if (n >= size)
        bad(p, key, "is too long (at most %d bytes)", (int)size - 1);
    else
        bad(p, key, "contains a NUL byte");
    lua_pop(L, 1);
    return fits;
}

int sbot_tls_parse(lua_State *L, int idx, const char *where, const char *url,
                   struct sbot_tls *out)
{
    memset(out, 0, sizeof *out);
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx))
        return 0;
    if (!lua_istable(L, idx) || sbot_is_secret(L, idx)) {
        lua_pushfstring(L, "%s: expected a table {ca_file, pin_sha256, insecure, server_name}, got %s",
                        where, luaL_typename(L, idx));
        return -1;
    }
    luaL_checkstack(L, 10, "sbot.tls");
    lua_newtable(L);
    struct problems p = {L, where, lua_gettop(L), 0};
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; tls_keys[i]; i++)
                known |= strcmp(lua_tostring(L, -1), tls_keys[i]) == 0;
        if (!known) {
            lua_pushvalue(L, -1);
            bad(&p, NULL, "unknown key '%s' (expected ca_file, pin_sha256, insecure, server_name)",
                luaL_tolstring(L, -1, NULL));
            lua_pop(L, 2);
        }
    }
    int given = 0;
    string_field(&p, idx, "ca_file", out->ca_file, sizeof out->ca_file, &given);
    if (string_field(&p, idx, "server_name", out->server_name, sizeof out->server_name, &given)) {
        for (const char *c = out->server_name; *c; c++) {
            if ((unsigned char)*c <= ' ' || *c == 0x7f || strchr("/@?#", *c)) {
                bad(&p, "server_name", "'%s' is not a host name", out->server_name);
                out->server_name[0] = '\0';
                break;
            }
        }
    }
    int ty = lua_getfield(L, idx, "pin_sha256");
    if (ty != LUA_TNIL) {
        given = 1;
        size_t n = 0;
        const char *pin = ty == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (!pin)
            bad(&p, "pin_sha256", "expected a string, got %s", luaL_typename(L, -1));
        else if (sbot_tls_decode_pin(pin, n, out->pin) == 0)
            out->has_pin = 1;
        else
            bad(&p, "pin_sha256",
                "'%s' is not a SHA-256 public-key pin: give its 44 base64 characters ending in "
                "'=' (optionally after sha256//) or its 64 hex digits (colons allowed between "
                "bytes)",
                pin);
    }
    lua_pop(L, 1);
    ty = lua_getfield(L, idx, "insecure");
    if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
        bad(&p, "insecure", "expected a boolean, got %s", luaL_typename(L, -1));
    out->insecure = ty == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    given |= out->insecure;
    if (out->insecure && (out->ca_file[0] || out->has_pin))
        bad(&p, "insecure", "insecure = true cannot be combined with ca_file or pin_sha256");
    if (url && given && (scheme_is(url, "http") || scheme_is(url, "ws")))
        bad(&p, NULL, "TLS settings given for the plain-text URL %s; use %s", url,
            scheme_is(url, "ws") ? "wss://" : "https://");
    if (p.n == 0) {
        lua_pop(L, 1);
        return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= p.n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\n');
        lua_rawgeti(L, p.list, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_remove(L, p.list);
    memset(out, 0, sizeof *out); /* nothing half-parsed for a caller that ignores -1 */
    return -1;
}

void sbot_tls_check(lua_State *L, int idx, const char *where, const char *url,
                    struct sbot_tls *out)
{
    if (sbot_tls_parse(L, idx, where, url, out) != 0)
        lua_error(L);
}

int sbot_tls_any(const struct sbot_tls *t)
{
    return t->ca_file[0] || t->has_pin || t->insecure || t->server_name[0];
}

void sbot_tls_pin_base64(const struct sbot_tls *t, char out[45])
{
    sbot_base64(t->pin, 32, out);
}

void sbot_tls_push(lua_State *L, const struct sbot_tls *t)
{
    lua_createtable(L, 0, 4);
    if (t->ca_file[0]) {
        lua_pushstring(L, t->ca_file);
        lua_setfield(L, -2, "ca_file");
    }
    if (t->has_pin) {
        char b64[45];
        sbot_tls_pin_base64(t, b64);
        lua_pushstring(L, b64);
        lua_setfield(L, -2, "pin_sha256");
    }
    if (t->insecure) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "insecure");
    }
    if (t->server_name[0]) {
        lua_pushstring(L, t->server_name);
        lua_setfield(L, -2, "server_name");
    }
}

int sbot_tls_spki_sha256(X509 *cert, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (n <= 0)
        return -1;
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

/* ---- Lua API ------------------------------------------------------------- */

/* tls.check(t [, where [, url]]) -> canonical table | nil, message */
static int l_check(lua_State *L)
{
    const char *where = luaL_optstring(L, 2, "tls");
    const char *url = luaL_optstring(L, 3, NULL);
    struct sbot_tls t;
    if (sbot_tls_parse(L, 1, where, url, &t) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    sbot_tls_push(L, &t);
    return 1;
}

/* tls.pin_sha256(pem) -> base64 pin of the first certificate (or public key)
 * in the PEM text | nil, message */
static int l_pin_sha256(lua_State *L)
{
    size_t n;
    const char *pem = luaL_checklstring(L, 1, &n);
    if (n > 1024 * 1024)
        return luaL_argerror(L, 1, "PEM text larger than 1 MiB");
    unsigned char md[32];
    int ok = -1;
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (bio) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert) {
            ok = sbot_tls_spki_sha256(cert, md);
            X509_free(cert);
        } else if (BIO_reset(bio) == 1) {
            EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
            if (key) {
                unsigned char *der = NULL;
                int dl = i2d_PUBKEY(key, &der);
                if (dl > 0) {
                    SHA256(der, (size_t)dl, md);
                    OPENSSL_free(der);
                    ok = 0;
                }
                EVP_PKEY_free(key);
            }
        }
        BIO_free(bio);
    }
    ERR_clear_error();
    if (ok != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "tls.pin_sha256: no PEM certificate or public key in the text");
        return 2;
    }
    char b64[45];
    sbot_base64(md, 32, b64);
    lua_pushstring(L, b64);
    return 1;
}

int luaopen_sbot_tls(lua_State *L)
{
    static const luaL_Reg fns[] = {{"check", l_check}, {"pin_sha256", l_pin_sha256}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
