/* components/openshift.c: sbot.component.openshift - a cluster's agent ISO,
 * built with the real `openshift-install agent create image`, verified and
 * kept in the artifact store. A site-wide step (one per cluster).
 *
 *   discover  the site's openshift section and cluster servers, checked against
 *             each other (hosts vs replicas, rendezvous IP, CIDRs, MACs, single
 *             node vs VIPs); install-config.yaml and agent-config.yaml rendered
 *             (read-only) and hashed; an ISO for (version, that hash) already in
 *             the store? the installer in the local cache (verified) or its
 *             mirror reachable.
 *   process   plan: nothing when the ISO exists; else fetch the installer (if not
 *             cached) and build the ISO. apply: download the release, check its
 *             SHA-256 against the mirror's sha256sum.txt (and the site's pin),
 *             unpack, cache; write the two configs, run the installer through
 *             sys.spawn with a timeout (its output logged), verify the ISO, put
 *             it in the store; the configs (pull secret redacted) become
 *             artifacts.
 *   housekeep read the stored ISO back: SHA-256 and size against the store,
 *             ISO 9660 primary volume descriptor, El Torito boot catalog.
 *
 * What is rendered from which site value, and why: docs/openshift.md. The C
 * parts are what C is for here: addresses and networks, hashing, reading the
 * ISO's descriptors. The artifact store (sbot.store) and the component's own
 * artifacts are reached through their Lua modules; HTTP, spawn and YAML through
 * the primitives' C API. Nothing here holds malloc'ed memory across a Lua call
 * except in a userdata released by __gc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "luax.h"
#include "sbot.h"
#include "util.h"

#define NAME "openshift"
#define DEFAULT_MIRROR "https://mirror.openshift.com/pub/openshift-v4/clients/ocp"
#define DEFAULT_TIMEOUT 1800.0
#define ISO_NAME "agent.x86_64.iso"
#define SECTOR 2048
#define FBOX_MT "sbot.component.openshift.file"

/* ===========================================================================
 * small Lua helpers
 * ======================================================================== */

/* "site <file>: " prefix for messages about site values */
static const char *site_file(lua_State *L, int self)
{
    lua_getfield(L, self, "site");
    const char *f = lua_istable(L, -1) ? sbot_field_str(L, -1, "file") : NULL;
    lua_pop(L, 1);
    return f ? f : "(no file)";
}

/* ===========================================================================
 * addresses and networks
 * ======================================================================== */

struct addr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char b[16];
    int bits;   /* prefix length (32/128 for a plain address) */
};

static int parse_ip(const char *s, struct addr *a)
{
    memset(a, 0, sizeof *a);
    if (!s)
        return 0;
    if (inet_pton(AF_INET, s, a->b) == 1) {
        a->family = AF_INET;
        a->bits = 32;
        return 1;
    }
    if (inet_pton(AF_INET6, s, a->b) == 1) {
        a->family = AF_INET6;
        a->bits = 128;
        return 1;
    }
    return 0;
}

/* "addr/len" -> a (with the host bits kept); 0 when malformed. */
static int parse_cidr(const char *s, struct addr *a)
{
    char buf[80];
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || (size_t)(slash - s) >= sizeof buf)
        return 0;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = '\0';
    if (!parse_ip(buf, a))
        return 0;
    char *end;
    long n = strtol(slash + 1, &end, 10);
    if (*end || slash[1] == '\0' || n < 0 || n > (a->family == AF_INET ? 32 : 128))
        return 0;
    a->bits = (int)n;
    return 1;
}

static int prefix_equal(const struct addr *x, const struct addr *y, int bits)
{
    if (x->family != y->family)
        return 0;
    int full = bits / 8, rest = bits % 8;
    if (memcmp(x->b, y->b, (size_t)full) != 0)
        return 0;
    if (rest) {
        unsigned char m = (unsigned char)(0xFF << (8 - rest));
        return (x->b[full] & m) == (y->b[full] & m);
    }
    return 1;
}

static int net_contains(const struct addr *net, const struct addr *ip)
{
    return prefix_equal(net, ip, net->bits);
}

static int nets_overlap(const struct addr *x, const struct addr *y)
{
    return prefix_equal(x, y, x->bits < y->bits ? x->bits : y->bits);
}

static int same_ip(const struct addr *x, const struct addr *y)
{
    return x->family == y->family && memcmp(x->b, y->b, x->family == AF_INET ? 4 : 16) == 0;
}

/* ===========================================================================
 * files: a userdata owns the FILE and the digest context
 * ======================================================================== */

struct fbox {
    FILE *f;
    EVP_MD_CTX *md;
};

static int fbox_release(lua_State *L)
{
    struct fbox *b = luaL_checkudata(L, 1, FBOX_MT);
    if (b->f) {
        fclose(b->f);
        b->f = NULL;
    }
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
    return 0;
}

static struct fbox *new_fbox(lua_State *L)
{
    struct fbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->f = NULL;
    b->md = NULL;
    if (luaL_newmetatable(L, FBOX_MT)) {
        lua_pushcfunction(L, fbox_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, fbox_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return b;
}

/* SHA-256 (hex) of a file into out[65]; 0 with errno on failure. */
static int sha256_file(lua_State *L, const char *path, char out[65], long long *size)
{
    struct fbox *b = new_fbox(L);
    b->f = fopen(path, "rb");
    b->md = EVP_MD_CTX_new();
    int ok = b->f && b->md && EVP_DigestInit_ex(b->md, EVP_sha256(), NULL);
    int err = errno;
    long long n = 0;
    unsigned char buf[65536];
    size_t got;
    while (ok && (got = fread(buf, 1, sizeof buf, b->f)) > 0) {
        ok = EVP_DigestUpdate(b->md, buf, got);
        n += (long long)got;
    }
    if (ok && ferror(b->f)) {
        ok = 0;
        err = EIO;
    }
    unsigned char dig[32];
    unsigned int len = 0;
    if (ok)
        ok = EVP_DigestFinal_ex(b->md, dig, &len);
    if (ok)
        sbot_hex(dig, 32, out);
    if (size)
        *size = n;
    lua_pushcfunction(L, fbox_release);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    errno = err ? err : EIO;
    return ok;
}

static void sha256_hex(const char *data, size_t n, char out[65])
{
    unsigned char dig[32];
    EVP_Digest(data, n, dig, NULL, EVP_sha256(), NULL);
    sbot_hex(dig, 32, out);
}

/* mkdir -p; 0 with errno on failure */
static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return 0;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return 0;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return 0;
    struct stat st;
    if (stat(buf, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return 0;
    }
    return 1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf of the component's own work directory */
static void remove_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write data to path with the given mode (created before any data goes in). */
static int write_file(const char *path, const char *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return 0;
    if (fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return 0;
    }
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            errno = e;
            return 0;
        }
        data += w;
        n -= (size_t)w;
    }
    return close(fd) == 0;
}

/* Push the content of a small file, or nil. */
static int push_file(lua_State *L, const char *path, size_t max)
{
    struct fbox *b = new_fbox(L);
    b->f = fopen(path, "rb");
    if (!b->f) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return 0;
    }
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    char chunk[8192];
    size_t got, total = 0;
    while ((got = fread(chunk, 1, sizeof chunk, b->f)) > 0 && total < max) {
        luaL_addlstring(&buf, chunk, got);
        total += got;
    }
    luaL_pushresult(&buf);
    lua_pushcfunction(L, fbox_release);
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_remove(L, -2);
    return 1;
}

/* ===========================================================================
 * the ISO: ISO 9660 primary volume descriptor and El Torito boot catalog
 * ======================================================================== */

static unsigned le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (unsigned)p[3] << 24; }
static unsigned le16(const unsigned char *p) { return p[0] | p[1] << 8; }

static int read_at(FILE *f, long long off, unsigned char *buf, size_t n)
{
    return fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n;
}

static const char *platform_name(int id)
{
    switch (id) {
    case 0: return "BIOS";
    case 1: return "PowerPC";
    case 2: return "Mac";
    case 0xEF: return "UEFI";
    default: return "unknown";
    }
}

/* verify_iso(path) -> {size, sha256, volume_id, blocks, el_torito = {catalog_lba,
 * entries = {{platform, bootable, emulation, load_rba, sectors}}}} | nil, message */
static int verify_iso(lua_State *L, const char *path)
{
    int top = lua_gettop(L);
    struct fbox *b = new_fbox(L);
    int box = lua_gettop(L);
    b->f = fopen(path, "rb");
    if (!b->f) {
        lua_pushnil(L);
        lua_pushfstring(L, "ISO %s: %s", path, strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fileno(b->f), &st) != 0 || !S_ISREG(st.st_mode)) {
        lua_pushnil(L);
        lua_pushfstring(L, "ISO %s: not a regular file", path);
        return 2;
    }
    long long size = (long long)st.st_size;
    unsigned char pvd[SECTOR], sec[SECTOR];
#define BAD(...)                                       \
    do {                                               \
        fclose(b->f);                                  \
        b->f = NULL;                                   \
        lua_settop(L, top);                            \
        lua_pushnil(L);                                \
        lua_pushfstring(L, __VA_ARGS__);               \
        return 2;                                      \
    } while (0)
    if (size < 18 * SECTOR || !read_at(b->f, 16LL * SECTOR, pvd, SECTOR))
        BAD("ISO %s: %d bytes, too small for an ISO 9660 image (no volume descriptors at sector 16)", path,
            (int)size);
    if (pvd[0] != 1 || memcmp(pvd + 1, "CD001", 5) != 0 || pvd[6] != 1)
        BAD("ISO %s: no ISO 9660 primary volume descriptor at sector 16 (found type %d, id \"%s\")", path,
            pvd[0], lua_pushlstring(L, (const char *)pvd + 1, 5));
    unsigned blocks = le32(pvd + 80), block_size = le16(pvd + 128);
    if (block_size != SECTOR)
        BAD("ISO %s: logical block size %d, expected 2048", path, (int)block_size);
    if ((long long)blocks * block_size > size)
        BAD("ISO %s: the volume claims %d blocks (%d bytes) but the file has %d bytes (truncated?)", path,
            (int)blocks, (int)((long long)blocks * block_size), (int)size);
    char volid[33];
    memcpy(volid, pvd + 40, 32);
    volid[32] = '\0';
    for (int i = 31; i >= 0 && volid[i] == ' '; i--)
        volid[i] = '\0';
    /* the descriptor set, up to the terminator: find the El Torito boot record */
    long long catalog = -1;
    for (int s = 17; s < 17 + 32; s++) {
        if (!read_at(b->f, (long long)s * SECTOR, sec, SECTOR))
            BAD("ISO %s: the volume descriptor set ends without a terminator", path);
        if (memcmp(sec + 1, "CD001", 5) != 0)
            BAD("ISO %s: sector %d is not a volume descriptor", path, s);
        if (sec[0] == 255)
            break;
        if (sec[0] == 0 && memcmp(sec + 7, "EL TORITO SPECIFICATION", 23) == 0)
            catalog = le32(sec + 0x47);
    }
    if (catalog < 0)
        BAD("ISO %s: no El Torito boot record (the image is not bootable from a CD)", path);
    if (catalog >= blocks || !read_at(b->f, catalog * SECTOR, sec, SECTOR))
        BAD("ISO %s: El Torito boot catalog at block %d is outside the image", path, (int)catalog);
    unsigned sum = 0;
    for (int i = 0; i < 32; i += 2)
        sum += le16(sec + i);
    if (sec[0] != 1 || sec[30] != 0x55 || sec[31] != 0xAA || (sum & 0xFFFF) != 0)
        BAD("ISO %s: the El Torito boot catalog's validation entry is invalid", path);
    lua_createtable(L, 0, 8);
    int info = lua_gettop(L);
    lua_createtable(L, 0, 2);
    sbot_set_int(L, -1, "catalog_lba", catalog);
    sbot_push_array(L);
    int entries = lua_gettop(L);
    int platform = sec[1];
    /* the initial entry, then section headers (0x90, last 0x91) with entries */
    for (int off = 32, n = 0; off + 32 <= SECTOR; off += 32) {
        const unsigned char *e = sec + off;
        if (off == 32 || e[0] == 0x88 || e[0] == 0x00) {
            if (off != 32 && e[0] == 0x00 && e[1] == 0)
                break;
            if (e[0] != 0x88 && e[0] != 0x00)
                BAD("ISO %s: El Torito entry %d has boot indicator 0x%s", path, n + 1,
                    lua_pushfstring(L, "%d", e[0]));
            lua_createtable(L, 0, 5);
            sbot_set_str(L, -1, "platform", platform_name(platform));
            sbot_set_bool(L, -1, "bootable", e[0] == 0x88);
            static const char *const media[] = {"none", "1.2M floppy", "1.44M floppy", "2.88M floppy",
                                                 "hard disk"};
            sbot_set_str(L, -1, "emulation", (e[1] & 0x0F) <= 4 ? media[e[1] & 0x0F] : "unknown");
            sbot_set_int(L, -1, "load_rba", le32(e + 8));
            sbot_set_int(L, -1, "sectors", le16(e + 6));
            if (le32(e + 8) >= blocks)
                BAD("ISO %s: El Torito boot image at block %d is outside the image", path, (int)le32(e + 8));
            sbot_append(L, entries);
            n++;
        } else if (e[0] == 0x90 || e[0] == 0x91) {
            platform = e[1];
        } else if (e[0] == 0x44) {
            continue; /* extension entry */
        } else {
            break;
        }
    }
    if (lua_rawlen(L, entries) == 0 || !lua_toboolean(L, (lua_rawgeti(L, entries, 1), lua_getfield(L, -1, "bootable"), -1)))
        BAD("ISO %s: the El Torito default entry is not bootable", path);
    lua_pop(L, 2);
    lua_setfield(L, -2, "entries");
    lua_setfield(L, info, "el_torito");
    sbot_set_str(L, info, "volume_id", volid);
    sbot_set_int(L, info, "blocks", blocks);
    sbot_set_int(L, info, "size", size);
    char hex[65];
    long long hashed = 0;
    if (!sha256_file(L, path, hex, &hashed))
        BAD("ISO %s: %s", path, strerror(errno));
    sbot_set_str(L, info, "sha256", hex);
#undef BAD
    lua_pushcfunction(L, fbox_release);
    lua_pushvalue(L, box);
    lua_call(L, 1, 0);
    lua_remove(L, box);
    return 1;
}

static int l_verify_iso(lua_State *L)
{
    return verify_iso(L, luaL_checkstring(L, 1));
}

/* ===========================================================================
 * the model: site values checked against each other
 * ======================================================================== */

struct problems {
    lua_State *L;
    int list;
    const char *prefix;
};

static void problem(struct problems *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushfstring(p->L, "%s", p->prefix);
    lua_pushvfstring(p->L, fmt, ap);
    va_end(ap);
    lua_concat(p->L, 2);
    sbot_append(p->L, p->list);
}

/* Push a MAC in the one form compared and written: lower case, ':' separated. */
static const char *push_mac(lua_State *L, const char *mac)
{
    char buf[64];
    size_t n = strlen(mac);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = mac[i] == '-' ? ':' : (mac[i] >= 'A' && mac[i] <= 'Z') ? (char)(mac[i] + 32) : mac[i];
    return lua_pushlstring(L, buf, n);
}

/* Version "4.16.8": major.minor.patch, for the mirror's directory */
static int full_version(const char *v)
{
    int a, b, c;
    char tail;
    return v && sscanf(v, "%d.%d.%d%c", &a, &b, &c, &tail) == 3;
}

/* The OS interface name of a server's primary NIC: eno<port> from
 * NIC.Integrated.1-<port>-1 (R630 onboard ports), else eno1. */
static int hook_interface_name(lua_State *L)
{
    const char *nic = lua_istable(L, 1) ? sbot_field_str(L, 1, "boot_nic") : NULL;
    int port;
    if (nic && sscanf(nic, "NIC.Integrated.1-%d-", &port) == 1 && port > 0)
        lua_pushfstring(L, "eno%d", port);
    else
        lua_pushliteral(L, "eno1");
    return 1;
}

static int hook_hostname(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *h = sbot_field_str(L, 1, "hostname");
    lua_pushstring(L, h ? h : sbot_field_str(L, 1, "id"));
    return 1;
}

/* rootDeviceHints for a server's disk {portal, iqn, lun} or {device}:
 * {deviceName = "/dev/disk/by-path/ip-<portal>-iscsi-<iqn>-lun-<lun>"} */
static int hook_root_device_hints(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_newtable(L);
    const char *device = sbot_field_str(L, 2, "device");
    if (device) {
        sbot_set_str(L, -1, "deviceName", device);
        return 1;
    }
    const char *portal = sbot_field_str(L, 2, "portal"), *iqn = sbot_field_str(L, 2, "iqn");
    lua_getfield(L, 2, "lun");
    lua_Integer lun = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    if (!portal || !iqn)
        return luaL_error(L, "root_device_hints: the disk needs portal and iqn, or device");
    /* udev's path_id names the portal with its port: ip:port, [v6]:port */
    int has_port = portal[0] == '[' ? strstr(portal, "]:") != NULL : strchr(portal, ':') != NULL;
    lua_pushfstring(L, "/dev/disk/by-path/ip-%s%s-iscsi-%s-lun-%d", portal, has_port ? "" : ":3260", iqn,
                    (int)lun);
    lua_setfield(L, -2, "deviceName");
    return 1;
}

/* Push the model of the cluster (a table), or raise with every problem:
 * {file, cluster, base_domain, version, sno, masters, workers, networks...,
 *  hosts = {{id, hostname, role, mac, macs, interface, ip, prefix, family,
 *            gateway, root_device_hints}}, installer = {...}, pull_secret}. */
static void build_model(lua_State *L, int self)
{
    self = lua_absindex(L, self);
    const char *file = site_file(L, self);
    lua_newtable(L);
    struct problems p;
    p.L = L;
    p.list = lua_gettop(L);
    p.prefix = lua_pushfstring(L, "site %s: ", file);
    int plist = p.list;
    lua_newtable(L);
    int m = lua_gettop(L);
    sbot_set_str(L, m, "file", file);

    lua_getfield(L, self, "site");
    int site = lua_gettop(L);
    if (!lua_istable(L, site))
        luaL_error(L, "the openshift component needs the site (Module.new(config, {site = site}))");
    lua_getfield(L, site, "openshift");
    int os = lua_gettop(L);
    if (!lua_istable(L, os))
        luaL_error(L, "site %s: openshift: the site has no openshift section (version, cluster_name, "
                      "base_domain, pull_secret, machine_network, ...: docs/openshift.md)", file);
    const char *version = sbot_field_str(L, os, "version");
    if (!full_version(version))
        problem(&p, "openshift.version: \"%s\" names no release; give major.minor.patch (e.g. 4.16.8): the "
                    "mirror's stable-x.y directories move", version ? version : "");
    sbot_set_str(L, m, "version", version);
    sbot_set_str(L, m, "cluster", sbot_field_str(L, os, "cluster_name"));
    sbot_set_str(L, m, "base_domain", sbot_field_str(L, os, "base_domain"));
    sbot_set_str(L, m, "ssh_key", sbot_field_str(L, os, "ssh_key"));
    sbot_set_str(L, m, "network_type",
            sbot_field_str(L, os, "network_type") ? sbot_field_str(L, os, "network_type") : "OVNKubernetes");
    lua_getfield(L, os, "host_prefix");
    sbot_set_int(L, m, "host_prefix", lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 23);
    lua_pop(L, 1);

    /* the pull secret: present and shaped like one (the installer's rule) */
    lua_getfield(L, os, "pull_secret");
    if (!sbot_is_secret(L, -1)) {
        problem(&p, "openshift.pull_secret: required secret is missing");
    } else {
        lua_pushvalue(L, -1);
        lua_setfield(L, m, "pull_secret");
        sbot_call_method(L, -1, "reveal", 0, 1);
        sbot_push_require(L, "sbot.json", "decode");
        lua_insert(L, -2);
        lua_call(L, 1, 2);
        int ok = lua_istable(L, -2);
        if (ok) {
            lua_getfield(L, -2, "auths");
            ok = lua_istable(L, -1) && (lua_pushnil(L), lua_next(L, -2) ? (lua_pop(L, 2), 1) : 0);
            lua_pop(L, 1);
        }
        if (!ok)
            problem(&p, "openshift.pull_secret: not a pull secret (JSON with a non-empty \"auths\" object, as "
                        "downloaded from console.redhat.com)");
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    /* networks */
    struct addr machine, cluster_net, service_net, tmp;
    const char *mn = sbot_field_str(L, os, "machine_network");
    int have_machine = 0;
    if (!mn)
        problem(&p, "openshift.machine_network: required (the CIDR holding the node IPs and VIPs)");
    else if (!parse_cidr(mn, &machine))
        problem(&p, "openshift.machine_network: \"%s\" is not a CIDR (address/prefix)", mn);
    else
        have_machine = 1;
    sbot_set_str(L, m, "machine_network", mn);
    const char *cn = sbot_field_str(L, os, "cluster_network"), *sn = sbot_field_str(L, os, "service_network");
    cn = cn ? cn : "10.128.0.0/14";
    sn = sn ? sn : "172.30.0.0/16";
    sbot_set_str(L, m, "cluster_network", cn);
    sbot_set_str(L, m, "service_network", sn);
    if (!parse_cidr(cn, &cluster_net))
        problem(&p, "openshift.cluster_network: \"%s\" is not a CIDR", cn);
    else if (have_machine && nets_overlap(&cluster_net, &machine))
        problem(&p, "openshift.cluster_network: %s overlaps the machine network %s", cn, mn);
    if (!parse_cidr(sn, &service_net))
        problem(&p, "openshift.service_network: \"%s\" is not a CIDR", sn);
    else if (have_machine && nets_overlap(&service_net, &machine))
        problem(&p, "openshift.service_network: %s overlaps the machine network %s", sn, mn);

    /* the cluster's servers */
    sbot_push_array(L);
    int hosts = lua_gettop(L);
    lua_newtable(L); /* mac -> "servers[i] (id)" */
    int macs_seen = lua_gettop(L);
    int masters = 0, workers = 0, snos = 0;
    struct addr node_ips[256];
    int node_roles[256]; /* 1 master/sno, 2 worker */
    int nnodes = 0;
    lua_getfield(L, self, "config");
    int config = lua_gettop(L);
    lua_getfield(L, config, "disks");
    int disks = lua_gettop(L);
    lua_getfield(L, site, "servers");
    int servers = lua_gettop(L);
    lua_Integer nservers = lua_istable(L, servers) ? (lua_Integer)lua_rawlen(L, servers) : 0;
    for (lua_Integer i = 1; i <= nservers; i++) {
        lua_rawgeti(L, servers, i);
        int s = lua_gettop(L);
        const char *id = sbot_field_str(L, s, "id");
        const char *role = sbot_field_str(L, s, "role");
        const char *where = lua_pushfstring(L, "servers[%d] (%s)", (int)i, id ? id : "?");
        /* every server's MACs are unique, in the cluster or not */
        lua_getfield(L, s, "macs");
        if (lua_istable(L, -1)) {
            for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, -1); k++) {
                lua_rawgeti(L, -1, k);
                const char *mac = lua_tostring(L, -1);
                if (mac) {
                    const char *low = push_mac(L, mac);
                    lua_getfield(L, macs_seen, low);
                    if (lua_isstring(L, -1))
                        problem(&p, "%s.macs[%d]: MAC %s is also %s's", where, (int)k, low, lua_tostring(L, -1));
                    lua_pop(L, 1);
                    lua_pushstring(L, where);
                    lua_setfield(L, macs_seen, low);
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
        int in_cluster = role && (strcmp(role, "master") == 0 || strcmp(role, "worker") == 0 ||
                                  strcmp(role, "sno") == 0);
        if (!in_cluster) {
            lua_pop(L, 2);
            continue;
        }
        if (strcmp(role, "worker") == 0)
            workers++;
        else if (strcmp(role, "sno") == 0)
            snos++;
        else
            masters++;
        lua_newtable(L);
        int h = lua_gettop(L);
        sbot_set_str(L, h, "id", id);
        sbot_set_str(L, h, "role", strcmp(role, "worker") == 0 ? "worker" : "master");
        lua_pushvalue(L, s);
        sbot_component_hook(L, self, "hostname", 1);
        lua_setfield(L, h, "hostname");
        lua_pushvalue(L, s);
        sbot_component_hook(L, self, "interface_name", 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            problem(&p, "%s: the interface_name hook gave no interface name", where);
        lua_setfield(L, h, "interface");
        lua_getfield(L, s, "macs");
        if (lua_istable(L, -1))
            lua_rawgeti(L, -1, 1);
        else
            lua_pushnil(L);
        if (!lua_isstring(L, -1)) {
            problem(&p, "%s.macs: a cluster server needs its primary NIC's MAC (macs[1])", where);
        } else {
            push_mac(L, lua_tostring(L, -1));
            lua_setfield(L, h, "mac");
        }
        lua_pop(L, 2);
        const char *node_ip = sbot_field_str(L, s, "node_ip");
        struct addr ip;
        if (!node_ip) {
            problem(&p, "%s.node_ip: a cluster server needs its node IP (CIDR, e.g. 10.0.0.11/24)", where);
        } else if (!parse_cidr(node_ip, &ip)) {
            problem(&p, "%s.node_ip: \"%s\" is not address/prefix (e.g. 10.0.0.11/24)", where, node_ip);
        } else {
            char text[INET6_ADDRSTRLEN];
            inet_ntop(ip.family, ip.b, text, sizeof text);
            sbot_set_str(L, h, "ip", text);
            sbot_set_int(L, h, "prefix", ip.bits);
            sbot_set_int(L, h, "family", ip.family == AF_INET ? 4 : 6);
            if (have_machine && !net_contains(&machine, &ip))
                problem(&p, "%s.node_ip: %s is outside openshift.machine_network %s", where, text, mn);
            for (int k = 0; k < nnodes; k++)
                if (same_ip(&node_ips[k], &ip))
                    problem(&p, "%s.node_ip: %s is another cluster server's node IP too", where, text);
            if (nnodes < 256) {
                node_ips[nnodes] = ip;
                node_roles[nnodes++] = strcmp(role, "worker") == 0 ? 2 : 1;
            } else {
                problem(&p, "%s: more than 256 cluster servers (sbot checks at most 256)", where);
            }
        }
        const char *gw = sbot_field_str(L, s, "gateway");
        if (gw) {
            if (!parse_ip(gw, &tmp))
                problem(&p, "%s.gateway: \"%s\" is not an IP address", where, gw);
            sbot_set_str(L, h, "gateway", gw);
        }
        /* the boot disk, from the iSCSI step's results */
        if (lua_istable(L, disks) && id)
            lua_getfield(L, disks, id);
        else
            lua_pushnil(L);
        if (!lua_istable(L, -1)) {
            problem(&p, "%s: no boot disk for this server in the component's config (disks[\"%s\"] = {portal, "
                        "iqn, lun} from the iSCSI step, or {device = \"/dev/...\"})", where, id ? id : "?");
            lua_pop(L, 1);
        } else {
            int d = lua_gettop(L);
            if (!sbot_field_str(L, d, "device") && (!sbot_field_str(L, d, "portal") || !sbot_field_str(L, d, "iqn"))) {
                problem(&p, "%s: disks[\"%s\"] needs portal and iqn (or device)", where, id);
                lua_pop(L, 1);
            } else {
                lua_pushvalue(L, s);
                lua_insert(L, -2);
                sbot_component_hook(L, self, "root_device_hints", 2);
                lua_setfield(L, h, "root_device_hints");
            }
        }
        sbot_append(L, hosts);
        lua_pop(L, 2); /* where, server */
    }
    lua_pop(L, 1); /* servers */

    /* hosts against replicas: a single node, or 3 to 5 masters */
    int sno = snos > 0;
    if (snos + masters + workers == 0)
        problem(&p, "servers: no server has a cluster role (master, worker or sno)");
    else if (sno && (snos > 1 || masters || workers))
        problem(&p, "servers: a single-node cluster (role sno) has exactly one server and no master or worker "
                    "(found %d sno, %d master, %d worker)", snos, masters, workers);
    else if (!sno && (masters < 3 || masters > 5))
        problem(&p, "servers: %d server(s) with role master; a cluster has 3, 4 or 5 control-plane nodes, or one "
                    "server with role sno", masters);
    sbot_set_bool(L, m, "sno", sno);
    sbot_set_int(L, m, "masters", sno ? 1 : masters);
    sbot_set_int(L, m, "workers", workers);

    /* VIPs: none for a single node, both otherwise */
    const char *api = sbot_field_str(L, os, "api_vip"), *ingress = sbot_field_str(L, os, "ingress_vip");
    if (sno && (api || ingress)) {
        problem(&p, "openshift.%s: a single-node cluster (role sno) has no VIPs (its platform is none: the node's "
                    "own IP serves the API and ingress); remove api_vip and ingress_vip", api ? "api_vip" : "ingress_vip");
    } else if (!sno) {
        const char *names[2] = {"api_vip", "ingress_vip"};
        const char *vals[2] = {api, ingress};
        struct addr vip[2];
        for (int k = 0; k < 2; k++) {
            if (!vals[k]) {
                problem(&p, "openshift.%s: required for a cluster of %d masters (the %s virtual IP)", names[k],
                        masters, k == 0 ? "API" : "ingress");
            } else if (!parse_ip(vals[k], &vip[k])) {
                problem(&p, "openshift.%s: \"%s\" is not an IP address", names[k], vals[k]);
                vals[k] = NULL;
            } else {
                if (have_machine && !net_contains(&machine, &vip[k]))
                    problem(&p, "openshift.%s: %s is outside openshift.machine_network %s", names[k], vals[k], mn);
                for (int n = 0; n < nnodes; n++)
                    if (same_ip(&node_ips[n], &vip[k]))
                        problem(&p, "openshift.%s: %s is a node's own IP", names[k], vals[k]);
            }
        }
        if (vals[0] && vals[1] && same_ip(&vip[0], &vip[1]))
            problem(&p, "openshift.ingress_vip: %s is the API VIP too; they must differ", ingress);
    }
    sbot_set_str(L, m, "api_vip", api);
    sbot_set_str(L, m, "ingress_vip", ingress);

    /* the rendezvous host: a control-plane node's IP */
    const char *rv = sbot_field_str(L, os, "rendezvous_ip");
    if (rv) {
        struct addr r;
        int found = 0;
        if (!parse_ip(rv, &r)) {
            problem(&p, "openshift.rendezvous_ip: \"%s\" is not an IP address", rv);
        } else {
            for (int n = 0; n < nnodes; n++)
                if (same_ip(&node_ips[n], &r))
                    found = node_roles[n];
            if (!found)
                problem(&p, "openshift.rendezvous_ip: %s is not the node IP of any cluster server (it must be a "
                            "master's: the agent there runs the installation)", rv);
            else if (found == 2)
                problem(&p, "openshift.rendezvous_ip: %s is a worker's node IP; it must be a master's", rv);
        }
        sbot_set_str(L, m, "rendezvous_ip", rv);
    } else {
        for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, hosts); k++) {
            lua_rawgeti(L, hosts, k);
            const char *role = sbot_field_str(L, -1, "role"), *ip = sbot_field_str(L, -1, "ip");
            if (role && strcmp(role, "master") == 0 && ip) {
                sbot_set_str(L, m, "rendezvous_ip", ip);
                lua_pop(L, 1);
                break;
            }
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, hosts);
    lua_setfield(L, m, "hosts");

    /* DNS and NTP */
    lua_getfield(L, os, "dns_servers");
    if (lua_istable(L, -1))
        for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, -1); k++) {
            lua_rawgeti(L, -1, k);
            if (!parse_ip(lua_tostring(L, -1), &tmp))
                problem(&p, "openshift.dns_servers[%d]: \"%s\" is not an IP address", (int)k,
                        luaL_optstring(L, -1, "?"));
            lua_pop(L, 1);
        }
    lua_setfield(L, m, "dns_servers");
    lua_getfield(L, os, "ntp_servers");
    lua_setfield(L, m, "ntp_servers");

    /* where the installer comes from */
    lua_newtable(L);
    int inst = lua_gettop(L);
    lua_getfield(L, os, "installer");
    int si = lua_gettop(L);
    const char *mirror = lua_istable(L, si) ? sbot_field_str(L, si, "mirror_url") : NULL;
    lua_pushstring(L, mirror ? mirror : DEFAULT_MIRROR);
    luaL_gsub(L, lua_tostring(L, -1), "//+$", "");
    lua_remove(L, -2);
    const char *murl = lua_tostring(L, -1);
    size_t ml = strlen(murl);
    while (ml > 0 && murl[ml - 1] == '/')
        ml--;
    lua_pushlstring(L, murl, ml);
    lua_setfield(L, inst, "mirror_url");
    lua_pop(L, 1);
    if (lua_istable(L, si)) {
        const char *pin = sbot_field_str(L, si, "sha256");
        if (pin) {
            lua_getglobal(L, "string");
            lua_getfield(L, -1, "lower");
            lua_pushstring(L, pin);
            lua_call(L, 1, 1);
            lua_setfield(L, inst, "sha256");
            lua_pop(L, 1);
        }
        lua_getfield(L, si, "tls");
        lua_setfield(L, inst, "tls");
        lua_getfield(L, si, "timeout");
        lua_setfield(L, inst, "timeout");
    }
    lua_getfield(L, inst, "timeout");
    if (!lua_isnumber(L, -1)) {
        lua_pushnumber(L, DEFAULT_TIMEOUT);
        lua_setfield(L, inst, "timeout");
    }
    lua_pop(L, 2); /* timeout, site installer */
    lua_setfield(L, m, "installer");

    if (lua_rawlen(L, plist) > 0) {
        /* every problem, one per line */
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "concat");
        lua_pushvalue(L, plist);
        lua_pushliteral(L, "\n");
        lua_call(L, 2, 1);
        lua_error(L);
    }
    lua_pushvalue(L, m);
    lua_replace(L, plist);
    lua_settop(L, plist);
}

/* OpenShiftComponent.check(c) -> {cluster, version, platform, masters,
 * workers, rendezvous_ip}: discover's checks of the site against itself
 * (build_model) for an instance, without the store, the cache or the mirror,
 * so that a workflow can refuse an inconsistent site before any step runs.
 * Raises with every problem, one per line, as discover does. */
static int l_check(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    build_model(L, 1);
    int m = lua_gettop(L);
    lua_newtable(L);
    static const char *const keep[] = {"cluster", "version", "rendezvous_ip", NULL};
    for (int i = 0; keep[i]; i++)
        sbot_set_str(L, -1, keep[i], sbot_field_str(L, m, keep[i]));
    lua_getfield(L, m, "sno");
    sbot_set_str(L, -2, "platform", lua_toboolean(L, -1) ? "none" : "baremetal");
    lua_pop(L, 1);
    lua_getfield(L, m, "masters");
    lua_setfield(L, -2, "masters");
    lua_getfield(L, m, "workers");
    lua_setfield(L, -2, "workers");
    return 1;
}

/* ===========================================================================
 * rendering install-config.yaml and agent-config.yaml
 * ======================================================================== */

static void push_str_list(lua_State *L, const char *a)
{
    sbot_push_array(L);
    lua_pushstring(L, a);
    sbot_append(L, -2);
}

/* nmstate for one host: its primary interface with the static node IP, the
 * default route through the gateway, the DNS servers */
static void push_network_config(lua_State *L, int m, int h)
{
    const char *itf = sbot_field_str(L, h, "interface");
    const char *mac = sbot_field_str(L, h, "mac");
    const char *ip = sbot_field_str(L, h, "ip");
    lua_getfield(L, h, "family");
    int v6 = lua_tointeger(L, -1) == 6;
    lua_pop(L, 1);
    lua_newtable(L);
    int nc = lua_gettop(L);
    sbot_push_array(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "name", itf);
    sbot_set_str(L, -1, "type", "ethernet");
    sbot_set_str(L, -1, "state", "up");
    sbot_set_str(L, -1, "mac-address", mac);
    lua_newtable(L);
    sbot_set_bool(L, -1, "enabled", 1);
    sbot_set_bool(L, -1, "dhcp", 0);
    sbot_push_array(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "ip", ip);
    lua_getfield(L, h, "prefix");
    lua_setfield(L, -2, "prefix-length");
    sbot_append(L, -2);
    lua_setfield(L, -2, "address");
    if (v6)
        sbot_set_bool(L, -1, "autoconf", 0);
    lua_setfield(L, -2, v6 ? "ipv6" : "ipv4");
    sbot_append(L, -2);
    lua_setfield(L, nc, "interfaces");
    const char *gw = sbot_field_str(L, h, "gateway");
    if (gw) {
        lua_newtable(L);
        sbot_push_array(L);
        lua_newtable(L);
        sbot_set_str(L, -1, "destination", v6 ? "::/0" : "0.0.0.0/0");
        sbot_set_str(L, -1, "next-hop-address", gw);
        sbot_set_str(L, -1, "next-hop-interface", itf);
        sbot_set_int(L, -1, "table-id", 254);
        sbot_append(L, -2);
        lua_setfield(L, -2, "config");
        lua_setfield(L, nc, "routes");
    }
    lua_getfield(L, m, "dns_servers");
    if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
        lua_newtable(L);
        lua_newtable(L);
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "server");
        lua_setfield(L, -2, "config");
        lua_setfield(L, nc, "dns-resolver");
    }
    lua_pop(L, 1);
}

/* Push install-config and agent-config (tables) rendered from the model. */
static void render(lua_State *L, int m)
{
    m = lua_absindex(L, m);
    int sno = (lua_getfield(L, m, "sno"), lua_toboolean(L, -1));
    lua_pop(L, 1);

    /* install-config.yaml */
    lua_newtable(L);
    int ic = lua_gettop(L);
    sbot_set_str(L, ic, "apiVersion", "v1");
    sbot_set_str(L, ic, "baseDomain", sbot_field_str(L, m, "base_domain"));
    lua_newtable(L);
    sbot_set_str(L, -1, "name", sbot_field_str(L, m, "cluster"));
    lua_setfield(L, ic, "metadata");
    lua_newtable(L);
    sbot_set_str(L, -1, "name", "master");
    lua_getfield(L, m, "masters");
    lua_setfield(L, -2, "replicas");
    sbot_set_str(L, -1, "architecture", "amd64");
    sbot_set_str(L, -1, "hyperthreading", "Enabled");
    lua_setfield(L, ic, "controlPlane");
    sbot_push_array(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "name", "worker");
    lua_getfield(L, m, "workers");
    lua_setfield(L, -2, "replicas");
    sbot_set_str(L, -1, "architecture", "amd64");
    sbot_set_str(L, -1, "hyperthreading", "Enabled");
    sbot_append(L, -2);
    lua_setfield(L, ic, "compute");
    lua_newtable(L);
    sbot_set_str(L, -1, "networkType", sbot_field_str(L, m, "network_type"));
    sbot_push_array(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "cidr", sbot_field_str(L, m, "machine_network"));
    sbot_append(L, -2);
    lua_setfield(L, -2, "machineNetwork");
    sbot_push_array(L);
    lua_newtable(L);
    sbot_set_str(L, -1, "cidr", sbot_field_str(L, m, "cluster_network"));
    lua_getfield(L, m, "host_prefix");
    lua_setfield(L, -2, "hostPrefix");
    sbot_append(L, -2);
    lua_setfield(L, -2, "clusterNetwork");
    push_str_list(L, sbot_field_str(L, m, "service_network"));
    lua_setfield(L, -2, "serviceNetwork");
    lua_setfield(L, ic, "networking");
    lua_newtable(L);
    lua_newtable(L);
    if (!sno) {
        push_str_list(L, sbot_field_str(L, m, "api_vip"));
        lua_setfield(L, -2, "apiVIPs");
        push_str_list(L, sbot_field_str(L, m, "ingress_vip"));
        lua_setfield(L, -2, "ingressVIPs");
    }
    lua_setfield(L, -2, sno ? "none" : "baremetal");
    lua_setfield(L, ic, "platform");
    lua_getfield(L, m, "pull_secret");
    lua_setfield(L, ic, "pullSecret");
    if (sbot_field_str(L, m, "ssh_key"))
        sbot_set_str(L, ic, "sshKey", sbot_field_str(L, m, "ssh_key"));

    /* agent-config.yaml */
    lua_newtable(L);
    int ac = lua_gettop(L);
    sbot_set_str(L, ac, "apiVersion", "v1beta1");
    sbot_set_str(L, ac, "kind", "AgentConfig");
    lua_newtable(L);
    sbot_set_str(L, -1, "name", sbot_field_str(L, m, "cluster"));
    lua_setfield(L, ac, "metadata");
    sbot_set_str(L, ac, "rendezvousIP", sbot_field_str(L, m, "rendezvous_ip"));
    lua_getfield(L, m, "ntp_servers");
    if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
        sbot_push_array(L);
        for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, -2); k++) {
            lua_rawgeti(L, -2, k);
            sbot_append(L, -2);
        }
        lua_setfield(L, ac, "additionalNTPSources");
    }
    lua_pop(L, 1);
    sbot_push_array(L);
    int hosts = lua_gettop(L);
    lua_getfield(L, m, "hosts");
    for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, -1); k++) {
        lua_rawgeti(L, -1, k);
        int h = lua_gettop(L);
        lua_newtable(L);
        sbot_set_str(L, -1, "hostname", sbot_field_str(L, h, "hostname"));
        sbot_set_str(L, -1, "role", sbot_field_str(L, h, "role"));
        sbot_push_array(L);
        lua_newtable(L);
        sbot_set_str(L, -1, "name", sbot_field_str(L, h, "interface"));
        sbot_set_str(L, -1, "macAddress", sbot_field_str(L, h, "mac"));
        sbot_append(L, -2);
        lua_setfield(L, -2, "interfaces");
        lua_getfield(L, h, "root_device_hints");
        lua_setfield(L, -2, "rootDeviceHints");
        push_network_config(L, m, h);
        lua_setfield(L, -2, "networkConfig");
        sbot_append(L, hosts);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_setfield(L, ac, "hosts");
}

/* Push: install-config text (revealed), agent-config text, install-config
 * text (pull secret redacted), config hash (hex). */
static void render_texts(lua_State *L, int m, char hash[65])
{
    render(L, m); /* ic, ac */
    int ic = lua_gettop(L) - 1, ac = ic + 1;
    sbot_yaml_encode(L, ic, "reveal");
    sbot_yaml_encode(L, ac, "error");
    sbot_yaml_encode(L, ic, "redact");
    lua_remove(L, ic);
    lua_remove(L, ic); /* ac */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, sbot_field_str(L, m, "version"));
    luaL_addchar(&b, '\n');
    lua_pushvalue(L, -3);
    luaL_addvalue(&b);
    luaL_addchar(&b, '\n');
    lua_pushvalue(L, -2);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    size_t n;
    const char *all = lua_tolstring(L, -1, &n);
    sha256_hex(all, n, hash);
    lua_pop(L, 1);
    lua_pushstring(L, hash);
}

/* ===========================================================================
 * the store, the cache, the paths
 * ======================================================================== */

/* An absolute form of path (relative to the working directory), pushed. */
static const char *push_absolute(lua_State *L, const char *path)
{
    if (path[0] == '/')
        return lua_pushstring(L, path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        luaL_error(L, "openshift: getcwd: %s", strerror(errno));
    if (strncmp(path, "./", 2) == 0)
        path += 2;
    return lua_pushfstring(L, "%s/%s", cwd, strcmp(path, ".") == 0 ? "" : path);
}

/* The component config's directory `key`, else <state_dir>/openshift/<sub>,
 * pushed as an absolute path. Created (mode 0700) only when create is set:
 * discover never creates anything. */
static const char *dir_path(lua_State *L, int self, const char *key, const char *sub, int create)
{
    lua_getfield(L, self, "config");
    const char *v = sbot_field_str(L, -1, key);
    lua_pop(L, 1);
    if (v) {
        push_absolute(L, v);
    } else {
        lua_getfield(L, self, "site");
        const char *sd = lua_istable(L, -1) ? sbot_field_str(L, -1, "state_dir") : NULL;
        push_absolute(L, sd ? sd : "state");
        lua_pushfstring(L, "%s/openshift/%s", lua_tostring(L, -1), sub);
        lua_replace(L, -3);
        lua_pop(L, 1);
    }
    const char *path = lua_tostring(L, -1);
    if (create && !mkdirs(path, 0700))
        luaL_error(L, "openshift: cannot create %s: %s", path, strerror(errno));
    return path;
}

/* open(self) -> {store_url = url}: where the cluster's ISOs live
 * (config.store, else the site's store, else file://<state_dir>/openshift/store).
 * The store itself is opened on first use (get_store): opening a file:// store
 * creates its directory, which discover must not do. */
static int os_open(lua_State *L)
{
    int self = 1;
    lua_newtable(L);
    int res = lua_gettop(L);
    lua_getfield(L, self, "config");
    const char *url = sbot_field_str(L, -1, "store");
    lua_pop(L, 1);
    lua_getfield(L, self, "site");
    if (!url && lua_istable(L, -1))
        url = sbot_field_str(L, -1, "store");
    if (!url)
        url = lua_pushfstring(L, "file://%s", dir_path(L, self, "store", "store", 0));
    sbot_set_str(L, res, "store_url", url);
    lua_settop(L, res);
    return 1;
}

/* Push the store of res (opened once), or nil when create is 0 and it is a
 * file:// store whose directory does not exist yet (an empty store). */
static int get_store(lua_State *L, int self, int res, int create)
{
    res = lua_absindex(L, res);
    if (lua_getfield(L, res, "store") == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    const char *url = sbot_field_str(L, res, "store_url");
    struct stat st;
    if (!create && strncmp(url, "file://", 7) == 0 && stat(url + 7, &st) != 0) {
        lua_pushnil(L);
        return 0;
    }
    /* an s3:// store signs with the site's S3 credentials and TLS, at the
     * site's endpoint only (sbot.store for_site: a URL naming another
     * endpoint is refused rather than sent the site's keys) */
    sbot_push_require(L, "sbot.store", "for_site");
    lua_pushstring(L, url);
    lua_getfield(L, self, "site");
    lua_pushliteral(L, "openshift: store");
    lua_call(L, 3, 2);
    if (lua_isnil(L, -2))
        luaL_error(L, "%s", luaL_optstring(L, -1, "store: bad URL"));
    int opts = lua_gettop(L);
    sbot_push_require(L, "sbot.store", "open");
    lua_pushvalue(L, opts - 1);
    if (lua_isnil(L, opts))
        lua_newtable(L);
    else
        lua_pushvalue(L, opts);
    lua_call(L, 2, 2);
    lua_remove(L, opts);
    lua_remove(L, opts - 1);
    if (lua_isnil(L, -2))
        luaL_error(L, "openshift: store %s: %s", url, luaL_optstring(L, -1, "cannot open"));
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, res, "store");
    return 1;
}

static const char *iso_key(lua_State *L, int m, const char *hash)
{
    char short_hash[17];
    snprintf(short_hash, sizeof short_hash, "%.16s", hash);
    return lua_pushfstring(L, "openshift/%s/%s/%s/%s", sbot_field_str(L, m, "cluster"), sbot_field_str(L, m, "version"),
                           short_hash, ISO_NAME);
}

/* the cached installer: <cache>/<version>/openshift-install + manifest.json.
 * Pushes {path, dir, manifest?, valid, why} */
static void check_cache(lua_State *L, int self, int m)
{
    const char *cache = dir_path(L, self, "cache_dir", "cache", 0);
    const char *version = sbot_field_str(L, m, "version");
    lua_newtable(L);
    int t = lua_gettop(L);
    const char *dir = lua_pushfstring(L, "%s/%s", cache, version);
    sbot_set_str(L, t, "dir", dir);
    const char *bin = lua_pushfstring(L, "%s/openshift-install", dir);
    sbot_set_str(L, t, "path", bin);
    const char *mpath = lua_pushfstring(L, "%s/manifest.json", dir);
    push_file(L, mpath, 65536);
    const char *why = NULL;
    if (lua_isnil(L, -1)) {
        why = "not in the cache";
    } else {
        sbot_push_require(L, "sbot.json", "decode");
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        if (!lua_istable(L, -1)) {
            why = "the cache's manifest.json is unreadable";
        } else {
            lua_pushvalue(L, -1);
            lua_setfield(L, t, "manifest");
            const char *want = sbot_field_str(L, -1, "binary_sha256");
            const char *tsum = sbot_field_str(L, -1, "tarball_sha256");
            lua_getfield(L, m, "installer");
            const char *pin = sbot_field_str(L, -1, "sha256");
            lua_pop(L, 1);
            char hex[65];
            if (pin && (!tsum || strcmp(pin, tsum) != 0))
                why = "the cached release is not the pinned one (openshift.installer.sha256)";
            else if (!want || !sha256_file(L, bin, hex, NULL))
                why = "the cached binary is missing";
            else if (strcmp(hex, want) != 0)
                why = "the cached binary's SHA-256 differs from the manifest (changed since it was unpacked)";
        }
    }
    lua_pop(L, 1);
    sbot_set_bool(L, t, "valid", why == NULL);
    if (why)
        sbot_set_str(L, t, "why", why);
    lua_settop(L, t);
    lua_remove(L, t - 1); /* cache string */
}

/* GET the mirror's sha256sum.txt: pushes {url, expected (hex) | nil, reachable,
 * error} for the release file. */
static void mirror_sums(lua_State *L, int m)
{
    lua_getfield(L, m, "installer");
    int inst = lua_gettop(L);
    const char *version = sbot_field_str(L, m, "version");
    lua_newtable(L);
    int t = lua_gettop(L);
    const char *url = lua_pushfstring(L, "%s/%s/sha256sum.txt", sbot_field_str(L, inst, "mirror_url"), version);
    sbot_set_str(L, t, "sums_url", url);
    const char *file = lua_pushfstring(L, "openshift-install-linux-%s.tar.gz", version);
    sbot_set_str(L, t, "file", file);
    sbot_set_str(L, t, "url", lua_pushfstring(L, "%s/%s/%s", sbot_field_str(L, inst, "mirror_url"), version, file));
    lua_pop(L, 1);
    lua_newtable(L);
    sbot_set_str(L, -1, "url", url);
    lua_getfield(L, inst, "tls");
    lua_setfield(L, -2, "tls");
    lua_pushnumber(L, 30);
    lua_setfield(L, -2, "timeout");
    int nres = sbot_http_request(L, -1);
    if (nres != 1 || !lua_istable(L, -nres)) {
        sbot_set_bool(L, t, "reachable", 0);
        sbot_set_str(L, t, "error", lua_tostring(L, -nres + 1));
    } else {
        lua_getfield(L, -1, "status");
        int status = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        sbot_set_int(L, t, "status", status);
        if (status != 200) {
            sbot_set_bool(L, t, "reachable", 0);
            sbot_set_str(L, t, "error",
                         lua_pushfstring(L, "GET %s: HTTP %d (no release %s on the mirror?)", url, status, version));
            lua_pop(L, 1);
        } else {
            sbot_set_bool(L, t, "reachable", 1);
            const char *body = sbot_field_str(L, -1, "body");
            /* "<hex>  <file>" lines */
            size_t fl = strlen(file);
            for (const char *line = body; line && *line;) {
                const char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t)(nl - line) : strlen(line);
                if (len > 66 && line[64] == ' ' && len - 66 == fl && memcmp(line + 66, file, fl) == 0 &&
                    line[65] == ' ') {
                    char hex[65];
                    for (int i = 0; i < 64; i++)
                        hex[i] = (char)((line[i] >= 'A' && line[i] <= 'F') ? line[i] + 32 : line[i]);
                    hex[64] = '\0';
                    sbot_set_str(L, t, "expected", hex);
                }
                line = nl ? nl + 1 : NULL;
            }
            if (!sbot_field_str(L, t, "expected"))
                sbot_set_str(L, t, "error", lua_pushfstring(L, "%s lists no %s", url, file));
        }
    }
    lua_settop(L, t);
    lua_remove(L, inst);
}

/* ===========================================================================
 * phases
 * ======================================================================== */

static int os_discover(lua_State *L)
{
    int self = 1, res = 2;
    build_model(L, self);
    int m = lua_gettop(L);
    char hash[65];
    render_texts(L, m, hash); /* ic, ac, ic_redacted, hash */
    int top = lua_gettop(L);
    lua_newtable(L);
    int d = lua_gettop(L);
    sbot_set_str(L, d, "cluster", sbot_field_str(L, m, "cluster"));
    sbot_set_str(L, d, "version", sbot_field_str(L, m, "version"));
    sbot_set_str(L, d, "config_sha256", hash);
    sbot_set_str(L, d, "platform", (lua_getfield(L, m, "sno"), lua_toboolean(L, -1)) ? "none" : "baremetal");
    lua_pop(L, 1);
    lua_getfield(L, m, "masters");
    lua_setfield(L, d, "masters");
    lua_getfield(L, m, "workers");
    lua_setfield(L, d, "workers");
    sbot_set_str(L, d, "rendezvous_ip", sbot_field_str(L, m, "rendezvous_ip"));
    sbot_push_array(L);
    lua_getfield(L, m, "hosts");
    for (lua_Integer k = 1; k <= (lua_Integer)lua_rawlen(L, -1); k++) {
        lua_rawgeti(L, -1, k);
        lua_newtable(L);
        static const char *const keep[] = {"id", "hostname", "role", "mac", "interface", "ip", NULL};
        for (int i = 0; keep[i]; i++)
            sbot_set_str(L, -1, keep[i], sbot_field_str(L, -2, keep[i]));
        lua_getfield(L, -2, "root_device_hints");
        lua_getfield(L, -1, "deviceName");
        lua_setfield(L, -3, "root_device");
        lua_pop(L, 1);
        sbot_append(L, -4);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_setfield(L, d, "hosts");
    lua_newtable(L);
    lua_pushvalue(L, top - 1);
    lua_setfield(L, -2, "install_config");
    lua_pushvalue(L, top - 2);
    lua_setfield(L, -2, "agent_config");
    lua_setfield(L, d, "rendered");

    /* an ISO for these configs in the store? */
    int have_store = get_store(L, self, res, 0);
    int st = lua_gettop(L);
    const char *key = iso_key(L, m, hash);
    lua_newtable(L);
    int iso = lua_gettop(L);
    sbot_set_str(L, iso, "key", key);
    sbot_set_str(L, iso, "store", sbot_field_str(L, res, "store_url"));
    if (have_store) {
        lua_pushstring(L, key);
        sbot_call_method(L, st, "head", 1, 3);
    } else {
        lua_pushnil(L);
        lua_pushliteral(L, "the store's directory does not exist yet");
        lua_pushliteral(L, "NotFound");
    }
    if (lua_istable(L, -3)) {
        sbot_set_bool(L, iso, "exists", 1);
        lua_getfield(L, -3, "size");
        lua_setfield(L, iso, "size");
        lua_getfield(L, -3, "sha256");
        lua_setfield(L, iso, "sha256");
    } else if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "NotFound") == 0) {
        sbot_set_bool(L, iso, "exists", 0);
    } else {
        return luaL_error(L, "openshift: store %s: head %s: %s", sbot_field_str(L, res, "store_url"), key,
                          luaL_optstring(L, -2, "failed"));
    }
    lua_pop(L, 3);
    lua_pushvalue(L, iso);
    lua_setfield(L, d, "iso");
    lua_getfield(L, iso, "exists");
    int exists = lua_toboolean(L, -1);
    lua_pop(L, 1);

    /* the installer: cached and verified, or its mirror reachable */
    check_cache(L, self, m);
    int cache = lua_gettop(L);
    lua_newtable(L);
    int inst = lua_gettop(L);
    lua_getfield(L, m, "installer");
    sbot_set_str(L, inst, "mirror_url", sbot_field_str(L, -1, "mirror_url"));
    sbot_set_str(L, inst, "pin", sbot_field_str(L, -1, "sha256"));
    lua_pop(L, 1);
    sbot_set_str(L, inst, "path", sbot_field_str(L, cache, "path"));
    lua_getfield(L, cache, "valid");
    int cached = lua_toboolean(L, -1);
    lua_setfield(L, inst, "cached");
    if (!cached)
        sbot_set_str(L, inst, "cache", sbot_field_str(L, cache, "why"));
    if (!exists && !cached) {
        mirror_sums(L, m);
        int ms = lua_gettop(L);
        static const char *const copy[] = {"url", "sums_url", "expected", "error", NULL};
        for (int i = 0; copy[i]; i++)
            sbot_set_str(L, inst, copy[i], sbot_field_str(L, ms, copy[i]));
        lua_getfield(L, ms, "reachable");
        int reachable = lua_toboolean(L, -1);
        lua_setfield(L, inst, "reachable");
        if (!reachable || !sbot_field_str(L, ms, "expected"))
            return luaL_error(L, "openshift: openshift-install %s is not in the cache (%s) and its mirror cannot "
                                 "give it: %s", sbot_field_str(L, m, "version"), sbot_field_str(L, cache, "path"),
                              sbot_field_str(L, ms, "error"));
        const char *pin = sbot_field_str(L, inst, "pin"), *expected = sbot_field_str(L, ms, "expected");
        if (pin && strcmp(pin, expected) != 0)
            return luaL_error(L, "openshift: openshift.installer.sha256 pins %s but %s lists %s for %s: the mirror "
                                 "serves another release than the one pinned; nothing downloaded",
                              pin, sbot_field_str(L, ms, "sums_url"), expected, sbot_field_str(L, ms, "file"));
        lua_pop(L, 1);
    }
    lua_setfield(L, d, "installer");
    lua_pushvalue(L, d);
    return 1;
}

static int os_plan(lua_State *L)
{
    int self = 1;
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    sbot_push_array(L);
    int plan = lua_gettop(L);
    lua_getfield(L, d, "iso");
    int iso = lua_gettop(L);
    lua_getfield(L, iso, "exists");
    int exists = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (exists)
        return 1; /* the ISO for these configs is in the store: nothing to do */
    lua_getfield(L, d, "installer");
    int inst = lua_gettop(L);
    lua_getfield(L, inst, "cached");
    int cached = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!cached) {
        lua_newtable(L);
        sbot_set_str(L, -1, "kind", "installer");
        lua_pushfstring(L, "openshift-install %s", sbot_field_str(L, d, "version"));
        lua_setfield(L, -2, "resource");
        sbot_set_str(L, -1, "action", "create");
        lua_newtable(L);
        sbot_set_str(L, -1, "path", sbot_field_str(L, inst, "path"));
        sbot_set_str(L, -1, "from", sbot_field_str(L, inst, "url"));
        sbot_set_str(L, -1, "sha256", sbot_field_str(L, inst, "expected"));
        lua_setfield(L, -2, "after");
        sbot_set_str(L, -1, "reason", sbot_field_str(L, inst, "cache"));
        sbot_append(L, plan);
    }
    lua_newtable(L);
    sbot_set_str(L, -1, "kind", "iso");
    lua_pushfstring(L, "%s %s", sbot_field_str(L, iso, "store"), sbot_field_str(L, iso, "key"));
    lua_setfield(L, -2, "resource");
    sbot_set_str(L, -1, "action", "create");
    lua_newtable(L);
    static const char *const keep[] = {"cluster", "version", "config_sha256", "platform", "rendezvous_ip", NULL};
    for (int i = 0; keep[i]; i++)
        sbot_set_str(L, -1, keep[i], sbot_field_str(L, d, keep[i]));
    lua_getfield(L, d, "masters");
    lua_setfield(L, -2, "masters");
    lua_getfield(L, d, "workers");
    lua_setfield(L, -2, "workers");
    sbot_set_str(L, -1, "key", sbot_field_str(L, iso, "key"));
    lua_setfield(L, -2, "after");
    sbot_set_str(L, -1, "reason", "no agent ISO for these configs and this version in the store");
    sbot_append(L, plan);
    lua_pushvalue(L, plan);
    return 1;
}

/* Log each line of a spawned program's output. */
static void log_lines(lua_State *L, const char *prog, const char *text)
{
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        if (len > 0)
            sbot_log(L, SBOT_INFO, "%s: %.*s", prog, len, line);
        line = nl ? nl + 1 : NULL;
    }
}

/* The last "level=fatal msg=..." line of the installer's output (its error), or
 * the last non-empty line. */
static void push_last_error(lua_State *L, const char *text)
{
    const char *best = NULL, *last = NULL;
    int best_len = 0, last_len = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        if (len > 0) {
            last = line;
            last_len = len;
            if (strstr(line, "level=fatal") && (!nl || strstr(line, "level=fatal") < nl)) {
                best = line;
                best_len = len;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    if (best)
        lua_pushlstring(L, best, (size_t)best_len);
    else if (last)
        lua_pushlstring(L, last, (size_t)last_len);
    else
        lua_pushliteral(L, "(no output)");
}

/* spawn argv (a list at idx) with timeout; raises unless it exits 0. Pushes the
 * result table. */
static void run_program(lua_State *L, int argv, const char *cwd, double timeout, int env, const char *what)
{
    argv = lua_absindex(L, argv);
    env = env ? lua_absindex(L, env) : 0;
    lua_newtable(L);
    lua_pushvalue(L, argv);
    lua_setfield(L, -2, "argv");
    if (cwd)
        sbot_set_str(L, -1, "cwd", cwd);
    if (env) {
        lua_pushvalue(L, env);
        lua_setfield(L, -2, "env");
    }
    lua_pushnumber(L, timeout);
    lua_setfield(L, -2, "timeout");
    sbot_set_str(L, -1, "progress", what); /* minutes: a wait of sbot.progress */
    int n = sbot_sys_spawn(L, -1);
    if (n != 1)
        luaL_error(L, "%s: %s", what, luaL_optstring(L, -n + 1, "cannot start"));
    int r = lua_gettop(L);
    const char *out = sbot_field_str(L, r, "stdout"), *err = sbot_field_str(L, r, "stderr");
    lua_rawgeti(L, argv, 1);
    const char *prog = strrchr(lua_tostring(L, -1), '/') ? strrchr(lua_tostring(L, -1), '/') + 1 : lua_tostring(L, -1);
    log_lines(L, prog, out);
    log_lines(L, prog, err);
    lua_pop(L, 1);
    lua_getfield(L, r, "timed_out");
    if (lua_toboolean(L, -1))
        luaL_error(L, "%s: stopped after %d s (timeout; openshift.installer.timeout)", what, (int)timeout);
    lua_pop(L, 1);
    lua_getfield(L, r, "status");
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != 0) {
        lua_getfield(L, r, "signal");
        lua_pushfstring(L, "%s\n%s", err ? err : "", out ? out : "");
        push_last_error(L, lua_tostring(L, -1));
        if (lua_isinteger(L, -4))
            luaL_error(L, "%s: exit status %d: %s", what, (int)lua_tointeger(L, -4), lua_tostring(L, -1));
        luaL_error(L, "%s: killed by signal %s: %s", what, luaL_optstring(L, -3, "?"), lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_remove(L, r - 1); /* the options */
}

/* Download, check and unpack the installer into the cache. */
static int apply_installer(lua_State *L, int self, int m)
{
    mirror_sums(L, m);
    int ms = lua_gettop(L);
    const char *version = sbot_field_str(L, m, "version");
    const char *expected = sbot_field_str(L, ms, "expected");
    if (!expected)
        return luaL_error(L, "openshift-install %s: %s", version, sbot_field_str(L, ms, "error"));
    lua_getfield(L, m, "installer");
    int inst = lua_gettop(L);
    const char *pin = sbot_field_str(L, inst, "sha256");
    if (pin && strcmp(pin, expected) != 0)
        return luaL_error(L, "openshift-install %s: openshift.installer.sha256 pins %s but %s lists %s; nothing "
                             "downloaded", version, pin, sbot_field_str(L, ms, "sums_url"), expected);
    check_cache(L, self, m);
    int cache = lua_gettop(L);
    const char *dir = sbot_field_str(L, cache, "dir");
    if (!mkdirs(dir, 0700))
        return luaL_error(L, "openshift-install %s: cannot create %s: %s", version, dir, strerror(errno));
    const char *tarball = lua_pushfstring(L, "%s/%s", dir, sbot_field_str(L, ms, "file"));
    int tb = lua_gettop(L);
    sbot_log(L, SBOT_INFO, "openshift-install %s: downloading %s", version, sbot_field_str(L, ms, "url"));
    lua_newtable(L);
    sbot_set_str(L, -1, "url", sbot_field_str(L, ms, "url"));
    sbot_set_str(L, -1, "output_file", tarball);
    const char *wait = lua_pushfstring(L, "download openshift-install %s", version);
    sbot_set_str(L, -2, "progress", wait);
    lua_pop(L, 1);
    lua_getfield(L, inst, "tls");
    lua_setfield(L, -2, "tls");
    lua_getfield(L, inst, "timeout");
    lua_setfield(L, -2, "timeout");
    int n = sbot_http_request(L, -1);
    if (n != 1)
        return luaL_error(L, "openshift-install %s: %s", version, luaL_optstring(L, -n + 1, "download failed"));
    lua_getfield(L, -1, "status");
    int status = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (status != 200)
        return luaL_error(L, "openshift-install %s: GET %s: HTTP %d", version, sbot_field_str(L, ms, "url"), status);
    lua_pop(L, 2);
    char got[65];
    long long size = 0;
    if (!sha256_file(L, tarball, got, &size)) {
        int e = errno;
        unlink(tarball);
        return luaL_error(L, "openshift-install %s: %s: %s", version, tarball, strerror(e));
    }
    if (strcmp(got, expected) != 0) {
        unlink(tarball);
        return luaL_error(L, "openshift-install %s: the download's SHA-256 is %s but %s says %s: refused, not "
                             "unpacked and not run (removed %s)", version, got, sbot_field_str(L, ms, "sums_url"),
                          expected, tarball);
    }
    /* unpack the one program we need */
    const char *bin = sbot_field_str(L, cache, "path");
    unlink(bin);
    sbot_push_array(L);
    static const char *const tar_argv[] = {"tar", "-xzf", NULL, "-C", NULL, "--no-same-owner", "openshift-install"};
    for (int i = 0; i < 7; i++) {
        lua_pushstring(L, i == 2 ? tarball : i == 4 ? dir : tar_argv[i]);
        sbot_append(L, -2);
    }
    int targv = lua_gettop(L);
    lua_getfield(L, inst, "timeout");
    double t = lua_tonumber(L, -1);
    lua_pop(L, 1);
    const char *what = lua_pushfstring(L, "openshift-install %s: unpacking %s", version, tarball);
    run_program(L, targv, NULL, t, 0, what);
    lua_pop(L, 3); /* result, what, argv */
    unlink(tarball);
    char binsum[65];
    if (!sha256_file(L, bin, binsum, NULL))
        return luaL_error(L, "openshift-install %s: the release has no openshift-install (%s: %s)", version, bin,
                          strerror(errno));
    chmod(bin, 0755);
    lua_newtable(L);
    sbot_set_str(L, -1, "version", version);
    sbot_set_str(L, -1, "tarball", sbot_field_str(L, ms, "url"));
    sbot_set_str(L, -1, "tarball_sha256", got);
    sbot_set_int(L, -1, "tarball_size", size);
    sbot_set_str(L, -1, "binary_sha256", binsum);
    int man = lua_gettop(L);
    sbot_push_require(L, "sbot.json", "encode");
    lua_pushvalue(L, man);
    lua_call(L, 1, 1);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    const char *mpath = lua_pushfstring(L, "%s/manifest.json", dir);
    if (!write_file(mpath, text, len, 0644))
        return luaL_error(L, "openshift-install %s: %s: %s", version, mpath, strerror(errno));
    lua_pop(L, 2);
    sbot_log(L, SBOT_INFO, "openshift-install %s: cached at %s (release SHA-256 %s)", version, bin, got);
    sbot_set_str(L, man, "path", bin);
    lua_remove(L, tb);
    return 1;
}

/* Put a local file in the store under key; raise unless the stored SHA-256 is
 * sha (when given). meta: index of a metadata table or 0. */
static void store_put(lua_State *L, int st, const char *key, const char *path, const char *sha, int meta)
{
    int top = lua_gettop(L);
    st = lua_absindex(L, st);
    lua_pushstring(L, key);
    lua_newtable(L);
    sbot_set_str(L, -1, "file", path);
    /* an upload of an ISO takes a while: a wait of sbot.progress */
    const char *wait = lua_pushfstring(L, "upload %s", key);
    sbot_set_str(L, -2, "progress", wait);
    lua_pop(L, 1);
    if (meta)
        lua_pushvalue(L, meta);
    else
        lua_newtable(L);
    sbot_call_method(L, st, "put", 3, 2);
    if (!lua_istable(L, top + 1))
        luaL_error(L, "store put %s: %s", key, luaL_optstring(L, top + 2, "failed"));
    const char *got = sbot_field_str(L, top + 1, "sha256");
    if (sha && (!got || strcmp(got, sha) != 0))
        luaL_error(L, "store put %s: the stored SHA-256 %s differs from the file's %s", key, got ? got : "?", sha);
    lua_settop(L, top);
}

/* The store's address of a key for results: file:// URL, or s3://bucket/prefix/key
 * (never a presigned URL: that is a credential). */
static const char *push_stored_url(lua_State *L, int res, const char *key)
{
    const char *base = sbot_field_str(L, res, "store_url");
    if (strncmp(base, "s3://", 5) == 0) {
        const char *q = strchr(base, '?');
        size_t n = q ? (size_t)(q - base) : strlen(base);
        while (n > 0 && base[n - 1] == '/')
            n--;
        lua_pushlstring(L, base, n);
        lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), key);
        lua_remove(L, -2);
        return lua_tostring(L, -1);
    }
    return lua_pushfstring(L, "%s/%s", base, key);
}

/* The body of the ISO build, run protected so that the caller removes the work
 * directory on every way out. Args: self, res, model, work, bin, cache dir,
 * ic text, ac text, ic redacted, hash. Returns the change's result. */
static int iso_body(lua_State *L)
{
    int self = 1, res = 2, m = 3;
    const char *work = lua_tostring(L, 4), *bin = lua_tostring(L, 5), *cache = lua_tostring(L, 6);
    const char *hash = lua_tostring(L, 10);
    const char *version = sbot_field_str(L, m, "version");
    size_t len;
    const char *ic = lua_tolstring(L, 7, &len);
    const char *icp = lua_pushfstring(L, "%s/install-config.yaml", work);
    if (!write_file(icp, ic, len, 0600))
        return luaL_error(L, "openshift: %s: %s", icp, strerror(errno));
    const char *ac = lua_tolstring(L, 8, &len);
    const char *acp = lua_pushfstring(L, "%s/agent-config.yaml", work);
    if (!write_file(acp, ac, len, 0600))
        return luaL_error(L, "openshift: %s: %s", acp, strerror(errno));
    lua_pop(L, 2);

    /* the installer: no shell, its own environment, a deadline */
    sbot_push_array(L);
    int argv = lua_gettop(L);
    static const char *const args[] = {"agent", "create", "image", "--dir", NULL, "--log-level", "info"};
    lua_pushstring(L, bin);
    sbot_append(L, argv);
    for (int i = 0; i < 7; i++) {
        lua_pushstring(L, args[i] ? args[i] : work);
        sbot_append(L, argv);
    }
    lua_newtable(L);
    int env = lua_gettop(L);
    const char *path = getenv("PATH");
    sbot_set_str(L, env, "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin");
    sbot_set_str(L, env, "HOME", work);
    /* the real installer caches the RHCOS base ISO under $XDG_CACHE_HOME/agent */
    sbot_set_str(L, env, "XDG_CACHE_HOME", cache);
    sbot_set_str(L, env, "LANG", "C.UTF-8");
    lua_getfield(L, m, "installer");
    lua_getfield(L, -1, "timeout");
    double timeout = lua_tonumber(L, -1);
    lua_pop(L, 2);
    sbot_log(L, SBOT_INFO, "openshift-install %s: agent create image for cluster %s (configs %.16s)", version,
             sbot_field_str(L, m, "cluster"), hash);
    run_program(L, argv, work, timeout, env, lua_pushfstring(L, "openshift-install %s agent create image", version));
    lua_pop(L, 2); /* result, what */

    /* the ISO it wrote, verified before it goes anywhere */
    const char *isop = lua_pushfstring(L, "%s/%s", work, ISO_NAME);
    if (verify_iso(L, isop) != 1)
        return luaL_error(L, "openshift-install %s exited 0 but its ISO is unusable: %s", version,
                          lua_tostring(L, -1));
    int info = lua_gettop(L);
    get_store(L, self, res, 1);
    int st = lua_gettop(L);
    const char *key = iso_key(L, m, hash);
    int keyi = lua_gettop(L);
    lua_newtable(L);
    int meta = lua_gettop(L);
    sbot_set_str(L, meta, "version", version);
    sbot_set_str(L, meta, "cluster", sbot_field_str(L, m, "cluster"));
    sbot_set_str(L, meta, "config-sha256", hash);
    sbot_set_str(L, meta, "volume-id", sbot_field_str(L, info, "volume_id"));
    store_put(L, st, key, isop, sbot_field_str(L, info, "sha256"), meta);
    sbot_log(L, SBOT_INFO, "openshift: agent ISO %s stored (%s)", key, sbot_field_str(L, info, "sha256"));

    /* what the installer leaves for the operator: kept beside the ISO in the
     * (private) store; the password is a secret from now on */
    static const char *const auth[] = {"auth/kubeconfig", "auth/kubeadmin-password", NULL};
    for (int i = 0; auth[i]; i++) {
        const char *f = lua_pushfstring(L, "%s/%s", work, auth[i]);
        if (access(f, R_OK) == 0) {
            if (i == 1) {
                if (push_file(L, f, 4096)) {
                    size_t n;
                    const char *pw = lua_tolstring(L, -1, &n);
                    while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
                        n--;
                    sbot_log_add_secret(L, pw, n);
                }
                lua_pop(L, 1);
            }
            char short_hash[17];
            snprintf(short_hash, sizeof short_hash, "%.16s", hash);
            const char *k = lua_pushfstring(L, "openshift/%s/%s/%s/%s", sbot_field_str(L, m, "cluster"), version,
                                            short_hash, auth[i]);
            store_put(L, st, k, f, NULL, 0);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }

    /* the rendered configs (pull secret redacted) and the installer's log
     * (redacted) become this run's artifacts */
    static const char *const names[] = {"install-config.yaml", "agent-config.yaml", NULL};
    for (int i = 0; names[i]; i++) {
        lua_newtable(L);
        sbot_set_str(L, -1, "key", names[i]);
        lua_pushvalue(L, i == 0 ? 9 : 8);
        lua_setfield(L, -2, "content");
        sbot_set_str(L, -1, "type", "application/yaml");
        lua_newtable(L);
        sbot_set_str(L, -1, "config-sha256", hash);
        lua_setfield(L, -2, "metadata");
        sbot_call_method(L, self, "artifact", 1, 0);
    }
    const char *logp = lua_pushfstring(L, "%s/.openshift_install.log", work);
    if (push_file(L, logp, 16 * 1024 * 1024)) {
        size_t n;
        const char *text = lua_tolstring(L, -1, &n);
        sbot_log_push_redacted(L, text, n);
        lua_newtable(L);
        sbot_set_str(L, -1, "key", "openshift_install.log");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "content");
        sbot_set_str(L, -1, "type", "text/plain");
        sbot_call_method(L, self, "artifact", 1, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);

    lua_newtable(L);
    int r = lua_gettop(L);
    lua_pushvalue(L, keyi);
    lua_setfield(L, r, "key");
    push_stored_url(L, res, lua_tostring(L, keyi));
    lua_setfield(L, r, "stored");
    static const char *const keep[] = {"sha256", "size", "volume_id", NULL};
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, info, keep[i]);
        lua_setfield(L, r, keep[i]);
    }
    sbot_set_str(L, r, "config_sha256", hash);
    return 1;
}

/* Build the ISO with openshift-install and put it in the store. */
static int apply_iso(lua_State *L, int self, int change, int res, int m)
{
    char hash[65];
    int base = lua_gettop(L);
    render_texts(L, m, hash); /* ic, ac, ic_redacted, hash */
    lua_getfield(L, change, "after");
    const char *planned = sbot_field_str(L, -1, "config_sha256");
    lua_pop(L, 1);
    if (!planned || strcmp(planned, hash) != 0)
        return luaL_error(L, "the rendered configs changed since the plan (config SHA-256 %s, planned %s): plan again",
                          hash, planned ? planned : "?");
    const char *version = sbot_field_str(L, m, "version");
    check_cache(L, self, m);
    int cache = lua_gettop(L);
    lua_getfield(L, cache, "valid");
    if (!lua_toboolean(L, -1))
        return luaL_error(L, "openshift-install %s: %s (%s)", version, sbot_field_str(L, cache, "why"),
                          sbot_field_str(L, cache, "path"));
    lua_pop(L, 1);

    /* a fresh work directory, mode 0700 (the configs hold the pull secret),
     * removed on every way out */
    const char *root = dir_path(L, self, "work_dir", "work", 1);
    char short_hash[17];
    snprintf(short_hash, sizeof short_hash, "%.16s", hash);
    const char *work = lua_pushfstring(L, "%s/%s-%d", root, short_hash, (int)getpid());
    int wk = lua_gettop(L);
    remove_tree(work);
    if (!mkdirs(work, 0700))
        return luaL_error(L, "openshift: cannot create %s: %s", work, strerror(errno));
    lua_pushcfunction(L, iso_body);
    lua_pushvalue(L, self);
    lua_pushvalue(L, res);
    lua_pushvalue(L, m);
    lua_pushvalue(L, wk);
    lua_getfield(L, cache, "path");
    lua_getfield(L, cache, "dir");
    for (int i = 1; i <= 4; i++)
        lua_pushvalue(L, base + i);
    int st = lua_pcall(L, 10, 1, 0);
    remove_tree(lua_tostring(L, wk));
    if (st != LUA_OK)
        return lua_error(L);
    return 1;
}

static int os_apply(lua_State *L)
{
    int self = 1, change = 2, res = 3;
    build_model(L, self);
    int m = lua_gettop(L);
    const char *kind = sbot_field_str(L, change, "kind");
    if (kind && strcmp(kind, "installer") == 0)
        return apply_installer(L, self, m);
    if (kind && strcmp(kind, "iso") == 0)
        return apply_iso(L, self, change, res, m);
    return luaL_error(L, "openshift: unknown change kind %s", kind ? kind : "(none)");
}

/* Undo: the ISO this run stored is deleted; a verified installer stays cached. */
static int os_undo(lua_State *L)
{
    int change = 2, res = 3;
    const char *kind = sbot_field_str(L, change, "kind");
    lua_newtable(L);
    int r = lua_gettop(L);
    if (kind && strcmp(kind, "iso") == 0) {
        lua_getfield(L, change, "after");
        const char *key = sbot_field_str(L, -1, "key");
        get_store(L, 1, res, 1);
        lua_pushstring(L, key);
        sbot_call_method(L, -2, "delete", 1, 2);
        if (lua_isnil(L, -2))
            return luaL_error(L, "store delete %s: %s", key, luaL_optstring(L, -1, "failed"));
        sbot_set_str(L, r, "deleted", key);
    } else {
        sbot_set_str(L, r, "kept", "a verified installer stays in the cache");
    }
    lua_settop(L, r);
    return 1;
}

/* Housekeep: read the stored ISO back and check it as a bootable ISO. */
static int os_housekeep(lua_State *L)
{
    int self = 1, res = 2;
    lua_getfield(L, self, "discovery");
    int d = lua_gettop(L);
    lua_getfield(L, d, "iso");
    const char *key = sbot_field_str(L, -1, "key");
    if (!key)
        return luaL_error(L, "openshift: no ISO key in the discovery");
    get_store(L, self, res, 1);
    int st = lua_gettop(L);
    lua_pushstring(L, key);
    sbot_call_method(L, st, "head", 1, 2);
    if (!lua_istable(L, -2))
        return luaL_error(L, "openshift: the agent ISO %s is not in the store %s: %s", key,
                          sbot_field_str(L, res, "store_url"), luaL_optstring(L, -1, "?"));
    lua_pop(L, 1);
    int head = lua_gettop(L);
    const char *root = dir_path(L, self, "work_dir", "work", 1);
    const char *tmp = lua_pushfstring(L, "%s/verify-%d.iso", root, (int)getpid());
    int tmpi = lua_gettop(L);
    lua_pushstring(L, key);
    lua_pushstring(L, tmp);
    sbot_call_method(L, st, "get", 2, 3);
    if (lua_isnil(L, -3)) {
        unlink(tmp);
        return luaL_error(L, "openshift: reading the agent ISO %s back from %s: %s", key,
                          sbot_field_str(L, res, "store_url"), luaL_optstring(L, -2, "?"));
    }
    lua_pop(L, 3);
    int n = verify_iso(L, lua_tostring(L, tmpi));
    unlink(lua_tostring(L, tmpi));
    if (n != 1)
        return luaL_error(L, "openshift: the stored agent ISO %s fails verification: %s", key, lua_tostring(L, -1));
    int info = lua_gettop(L);
    const char *want = sbot_field_str(L, head, "sha256");
    if (!want || strcmp(want, sbot_field_str(L, info, "sha256")) != 0)
        return luaL_error(L, "openshift: the stored agent ISO %s has SHA-256 %s, the store recorded %s", key,
                          sbot_field_str(L, info, "sha256"), want ? want : "none");
    lua_getfield(L, head, "size");
    lua_getfield(L, info, "size");
    if (!lua_rawequal(L, -1, -2))
        return luaL_error(L, "openshift: the stored agent ISO %s has %d bytes, the store recorded %d", key,
                          (int)lua_tointeger(L, -1), (int)lua_tointeger(L, -2));
    lua_pop(L, 2);
    lua_newtable(L);
    int r = lua_gettop(L);
    lua_pushvalue(L, info);
    sbot_set_str(L, -1, "key", key);
    push_stored_url(L, res, key);
    lua_setfield(L, -2, "stored");
    sbot_set_bool(L, -1, "verified", 1);
    lua_setfield(L, r, "iso");
    return 1;
}

/* ===========================================================================
 * the module
 * ======================================================================== */

/* push {type = t, description = d} */
static void field(lua_State *L, const char *type, const char *desc)
{
    lua_createtable(L, 0, 3);
    sbot_set_str(L, -1, "type", type);
    if (desc)
        sbot_set_str(L, -1, "description", desc);
}

static void hook(lua_State *L, int hooks, const char *name, const char *desc, lua_CFunction fn)
{
    lua_createtable(L, 0, 2);
    sbot_set_str(L, -1, "description", desc);
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, "default");
    lua_setfield(L, hooks, name);
}

int luaopen_sbot_component_openshift(lua_State *L)
{
    /* the primitives whose C API the phases use */
    sbot_push_require(L, "sbot.http", NULL);
    sbot_push_require(L, "sbot.sys", NULL);
    sbot_push_require(L, "sbot.yaml", NULL);
    lua_pop(L, 3);

    lua_newtable(L);
    int spec = lua_gettop(L);
    sbot_set_str(L, spec, "name", NAME);
    sbot_set_str(L, spec, "description",
            "The cluster's agent ISO (site-wide step): install-config.yaml and agent-config.yaml rendered from the "
            "site's openshift section and cluster servers, checked against each other, built with the real "
            "`openshift-install agent create image` (downloaded from the mirror, SHA-256 checked, cached), "
            "verified (ISO 9660, El Torito) and kept in the artifact store, once per (version, configs). "
            "docs/openshift.md");
    lua_newtable(L);
    int schema = lua_gettop(L);
    field(L, "map", "each cluster server's boot disk by server id: {portal, iqn, lun} from the iSCSI step's "
                    "results (rootDeviceHints /dev/disk/by-path/ip-<portal>-iscsi-<iqn>-lun-<lun>) or "
                    "{device = \"/dev/...\"}");
    lua_newtable(L);
    sbot_set_str(L, -1, "type", "table");
    lua_newtable(L);
    field(L, "string", "iSCSI portal ip[:port] (port 3260 when absent)");
    lua_setfield(L, -2, "portal");
    field(L, "string", "target IQN");
    lua_setfield(L, -2, "iqn");
    field(L, "integer", "LUN");
    sbot_set_int(L, -1, "min", 0);
    sbot_set_int(L, -1, "default", 0);
    lua_setfield(L, -2, "lun");
    field(L, "string", "a local disk instead of iSCSI");
    sbot_set_str(L, -1, "pattern", "^/dev/");
    lua_setfield(L, -2, "device");
    lua_setfield(L, -2, "fields");
    lua_setfield(L, -2, "values");
    lua_newtable(L);
    lua_setfield(L, -2, "default");
    lua_setfield(L, schema, "disks");
    field(L, "string", "where agent ISOs are kept (file:///dir or s3://bucket/prefix?endpoint=...); default the "
                       "site's store, else file://<state_dir>/openshift/store");
    sbot_set_str(L, -1, "pattern", "^%a[%w+.-]*://");
    lua_setfield(L, schema, "store");
    field(L, "string", "installer cache; default <state_dir>/openshift/cache");
    lua_setfield(L, schema, "cache_dir");
    field(L, "string", "where the installer runs (a fresh directory per build, removed after); default "
                       "<state_dir>/openshift/work");
    lua_setfield(L, schema, "work_dir");
    lua_setfield(L, spec, "schema");

    lua_pushcfunction(L, os_open);
    lua_setfield(L, spec, "open");
    lua_pushcfunction(L, os_discover);
    lua_setfield(L, spec, "discover");
    lua_pushcfunction(L, os_plan);
    lua_setfield(L, spec, "plan");
    lua_pushcfunction(L, os_apply);
    lua_setfield(L, spec, "apply");
    lua_pushcfunction(L, os_undo);
    lua_setfield(L, spec, "undo");
    lua_pushcfunction(L, os_housekeep);
    lua_setfield(L, spec, "housekeep");
    lua_newtable(L);
    int hooks = lua_gettop(L);
    hook(L, hooks, "hostname", "hostname(server) -> the node's host name (default: server.hostname, else its id)",
         hook_hostname);
    hook(L, hooks, "interface_name", "interface_name(server) -> the OS name of the node's primary NIC, the one "
                                     "macs[1] and node_ip belong to (default: eno<port> from boot_nic "
                                     "NIC.Integrated.1-<port>-1, else eno1)", hook_interface_name);
    hook(L, hooks, "root_device_hints", "root_device_hints(server, disk) -> agent-config rootDeviceHints (default: "
                                        "{deviceName = /dev/disk/by-path/ip-<portal>-iscsi-<iqn>-lun-<lun>}, or "
                                        "disk.device)", hook_root_device_hints);
    lua_setfield(L, spec, "hooks");
    sbot_component_define(L, spec);
    lua_pushcfunction(L, l_verify_iso);
    lua_setfield(L, -2, "verify_iso");
    lua_pushcfunction(L, l_check);
    lua_setfield(L, -2, "check");
    return 1;
}
