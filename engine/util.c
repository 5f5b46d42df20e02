/* util.c: helpers shared by the C modules (see util.h): hex and base64
 * (crypto.c, sigv4.c, fsio.c, httpd.c, ws.c), UTC timestamps (sys.c,
 * lifecycle.c), the SIGPIPE guard (ws.c, iscsi.c), errno names (fsio.c,
 * sys.c), a forked child's result pipe and descriptors (fleet.c, keeper.c).
 * The secret-object test is sbot_is_secret in log.c (sbot.h). */
#define _GNU_SOURCE
#include "util.h"

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

int sbot_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
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
