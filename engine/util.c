/* util.c: helpers shared by the C modules (see util.h): hex and base64
 * (crypto.c, sigv4.c, fsio.c, httpd.c, ws.c), UTC timestamps (sys.c,
 * lifecycle.c), the SIGPIPE guard (ws.c, iscsi.c), errno names (fsio.c,
 * sys.c), the host[:port] grammar (iscsi.c, redfish.c), a forked child's
 * result pipe and descriptors (fleet.c, keeper.c). The secret-object test is
 * sbot_is_secret in log.c (sbot.h). */
#define _GNU_SOURCE
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

void sbot_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t sbot_base64(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[k++] = a[(v >> 18) & 63];
        out[k++] = a[(v >> 12) & 63];
        out[k++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[k] = '\0';
    return k;
}

const char *sbot_errno_name(int e)
{
    const char *name = e ? strerrorname_np(e) : NULL;
    return name ? name : "EUNKNOWN";
}

/* A host name of RFC 1123 (2.1): labels of letters, digits and '-', 1..63
 * characters, neither starting nor ending with '-', joined by '.', 253
 * characters at most; '_' is taken inside a label too (names with one exist
 * in real DNS). An IPv4 address is such a name. No empty label: no leading,
 * trailing or doubled '.'. */
static int is_host_name(const char *s, const char *end)
{
    if (end - s > 253)
        return 0;
    const char *label = s;
    for (const char *c = s;; c++) {
        if (c == end || *c == '.') {
            size_t n = (size_t)(c - label);
            if (n == 0 || n > 63 || label[0] == '-' || c[-1] == '-')
                return 0;
            if (c == end)
                return 1;
            label = c + 1;
        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                     *c == '-' || *c == '_')) {
            return 0;
        }
    }
}

const char *sbot_check_hostport(const char *s, int port_required)
{
    const char *port = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        char addr[INET6_ADDRSTRLEN + 64];
        struct in6_addr a6;
        size_t n = close ? (size_t)(close - s - 1) : 0;
        if (!close || n == 0)
            return port_required ? "must be HOST:PORT (IPv6 as [addr]:port)"
                                 : "must be HOST[:PORT] (IPv6 as [addr]:port)";
        if (n >= sizeof addr)
            return "has no IPv6 address in its brackets";
        memcpy(addr, s + 1, n);
        addr[n] = '\0';
        char *zone = strchr(addr, '%'); /* fe80::1%eth0 */
        if (zone)
            *zone = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1)
            return "has no IPv6 address in its brackets";
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] || port_required)
            return port_required ? "must be HOST:PORT (IPv6 as [addr]:port)"
                                 : "must be HOST[:PORT] (IPv6 as [addr]:port)";
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            return "holds an IPv6 address without brackets: write [addr]:port";
        const char *end = colon ? colon : s + strlen(s);
        if (end == s || (!colon && port_required))
            return port_required ? "must be HOST:PORT (IPv6 as [addr]:port)"
                                 : "must be HOST[:PORT] (IPv6 as [addr]:port)";
        if (!is_host_name(s, end))
            return "is not a host name or an IP address (IPv6 as [addr]:port)";
        if (colon)
            port = colon + 1;
    }
    if (port) {
        long v = 0;
        const char *c = port;
        for (; *c >= '0' && *c <= '9' && v <= 65535; c++)
            v = v * 10 + (*c - '0');
        if (c == port || *c || v < 1 || v > 65535)
            return "has no port 1..65535 after its ':'";
    }
    return NULL;
}

void sbot_utc_iso(char *out, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

void sbot_sigpipe_block(struct sbot_sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void sbot_sigpipe_unblock(struct sbot_sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigemptyset(&pending);
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            int saved = errno;
            struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                ;
            errno = saved;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

void sbot_write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

void sbot_close_fds_except(int a, int b)
{
    if (a > b) {
        int t = a;
        a = b;
        b = t;
    }
    int ok = (a <= 3 || close_range(3, (unsigned)a - 1, 0) == 0) &&
             (b <= a + 1 || close_range((unsigned)a + 1, (unsigned)b - 1, 0) == 0) &&
             close_range((unsigned)b + 1, ~0U, 0) == 0;
    if (!ok) { /* no close_range (old kernel): one by one */
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536)
            max = 65536;
        for (int fd = 3; fd < (int)max; fd++)
            if (fd != a && fd != b)
                close(fd);
    }
}
