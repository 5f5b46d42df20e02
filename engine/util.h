/* util.h: small helpers shared by the C modules of the extension library
 * (engine/util.c): hexadecimal and base64 of raw bytes,
 * UTC timestamps. No allocation. */
#ifndef SBOT_UTIL_H
#define SBOT_UTIL_H

#include <signal.h>
#include <stddef.h>

#include <lua.h>

/* Lower-case hex of n bytes into out, NUL-terminated (out holds 2n + 1). */
void sbot_hex(const unsigned char *in, size_t n, char *out);

/* Value of one hex digit (either case), or -1 (in the core: engine/jsonc.c). */
int sbot_hexval(int c);

/* Standard base64 with '=' padding, no line breaks, NUL-terminated (out holds
 * SBOT_BASE64_LEN(n) + 1). Returns the length without the NUL. */
#define SBOT_BASE64_LEN(n) (((n) + 2) / 3 * 4)
size_t sbot_base64(const unsigned char *in, size_t n, char *out);

/* The errno name of e ("ENOENT", "EROFS", ...): the code of an expected OS
 * failure (docs/errors.md). "EUNKNOWN" for a value the C library cannot name. */
const char *sbot_errno_name(int e);

/* Check "host[:port]", the form a portal or a BMC address takes: a host name
 * (RFC 1123 labels; '_' allowed inside one) or an IP address, an IPv6
 * address in brackets ("[fd00::5]:3260", a zone allowed), then ':' and a port
 * 1..65535 (required when port_required). sys.check_hostport is its Lua face
 * (the site file's idrac.host and truenas.portal). Cases shared by the C and
 * the Lua tests: tests/fixtures/hostport_cases.txt.
 * Returns NULL, or what is wrong as the end of a sentence naming the value
 * ("must be HOST:PORT (IPv6 as [addr]:port)"). A bare IPv6 address is
 * refused: "fe80::1:3260" cannot say where its port is. */
const char *sbot_check_hostport(const char *s, int port_required);

/* The wall clock as "2026-11-26T12:03:00.123Z" (out holds at least 32). */
void sbot_utc_iso(char *out, size_t size);

/* Block SIGPIPE for this thread around calls into libraries that write to
 * sockets with write()/writev() (libiscsi; sbot.ws gives OpenSSL a socket BIO
 * that sends with MSG_NOSIGNAL instead): a write to a connection
 * the peer has reset then fails with EPIPE instead of killing the process.
 * A SIGPIPE raised in between is consumed before unblocking; the process-wide
 * disposition is left alone. */
struct sbot_sigpipe_guard {
    sigset_t old;
    int was_pending;
};
void sbot_sigpipe_block(struct sbot_sigpipe_guard *g);
void sbot_sigpipe_unblock(struct sbot_sigpipe_guard *g);

/* write(2) all len bytes of s to fd, again after EINTR; stops silently at any
 * other failure (the reader then sees a short message). For a forked child
 * sending its result to the parent (fleet.c, keeper.c). */
void sbot_write_all(int fd, const char *s, size_t len);

/* In a forked child: close every descriptor from 3 up but a and b (the same
 * descriptor twice to keep only one), with close_range(2), else one by one.
 * The fork inherits the parent's open files, sockets and other children's
 * pipes; held open they would keep ports bound and connections up after the
 * parent closes them. */
void sbot_close_fds_except(int a, int b);

#endif
