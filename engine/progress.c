/* progress.c: sbot.progress - long waits shown while they last.
 *
 * A wait (an iDRAC job, a reboot, an upload, an ISO build, an iSCSI login)
 * is reported by whoever waits, by name:
 *
 *   sbot_progress(L, "iDRAC job JID_1", 0.45);          begin or update
 *   sbot_progress_detail(L, what, fraction, "Running");  with a detail
 *   sbot_progress_end(L, "iDRAC job JID_1");             over
 *
 * (fraction in [0, 1], or SBOT_PROGRESS_UNKNOWN). Where it shows depends on
 * the process:
 *   tty   stdout and stderr are terminals (and no --log-json): a board of
 *         one line per server at the bottom of the terminal, redrawn in
 *         place (what it waits for, a bar and percent when known, elapsed);
 *         log lines scroll above it;
 *   log   otherwise: plain log lines - "waiting: WHAT" when it begins, one
 *         every log_interval seconds (10) while it lasts, "done: WHAT after
 *         N s" when it ends (JSON with --log-json);
 *   pipe  in a fleet worker whose parent draws a board: records on the
 *         worker's stderr, which the parent reads (fleet.c) and renders;
 *   off   nothing.
 * Every report is throttled where it is made (at most one record or redraw
 * per 0.1 s per wait, one log line per log_interval), so reporting from a
 * transfer callback costs a clock read and a string compare.
 *
 * The state is per process, not per interpreter: the terminal, the board and
 * the pipe to the fleet parent are the process's, and a fleet worker (a
 * fork) resets it (sbot_progress_worker). */
#define _GNU_SOURCE
#include "sbot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAITS 64
#define SEND_INTERVAL 0.1  /* seconds between records / redraws of one wait */
#define DRAW_INTERVAL 0.1  /* seconds between board redraws */
#define RECORD_MARK '\x1e' /* starts a progress record on a worker's stderr */

enum { MODE_AUTO = 0, MODE_TTY, MODE_LOG, MODE_PIPE, MODE_OFF };
static const char *const mode_names[] = {"auto", "tty", "log", "pipe", "off", NULL};

struct wait {
    int used;
    int slot;          /* -1: this process's own wait; else a fleet worker's slot */
    int mode;          /* own waits: the mode it was begun in */
    char label[64];    /* the server (fleet item) it is for; "" for none */
    char key[160];     /* what, as reported (to find it again) */
    char what[160];    /* what, redacted (shown) */
    char detail[96];   /* redacted */
    double fraction;   /* < 0: unknown */
    double started;    /* monotonic seconds */
    double sent;       /* own waits: when last sent, drawn or logged */
    double checked;    /* own waits: when a report last went past the throttle */
    int logged;        /* log mode: an update line was written */
    unsigned long seq; /* begin order */
};

static struct {
    int forced;          /* MODE_* set by configure or SBOT_PROGRESS; MODE_AUTO: decide */
    int pipe_fd;         /* in a worker of a drawing parent: where records go, else -1 */
    char label[64];      /* in a worker: its item's label (the server id) */
    double log_interval;
    struct wait w[MAX_WAITS];
    unsigned long seq;
    int board;           /* fleet maps drawing the board (nesting count) */
    int drawn;           /* lines of the board on the terminal below the text */
    int hidden;          /* hide() without show() yet */
    int dirty;
    double last_draw;
    int env_read;
} P = {.pipe_fd = -1, .log_interval = 10.0};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    for (; src && src[n] && n + 1 < size; n++) /* one line: control characters become blanks */
        dst[n] = (unsigned char)src[n] < 0x20 || src[n] == 0x7f ? ' ' : src[n];
    dst[n] = '\0';
}

/* A copy of s with every registered secret redacted, into dst. */
static void copy_redacted(lua_State *L, char *dst, size_t size, const char *s)
{
    if (!s || !*s) {
        dst[0] = '\0';
        return;
    }
    sbot_log_push_redacted(L, s, strlen(s));
    copy_text(dst, size, lua_tostring(L, -1));
    lua_pop(L, 1);
}

static void read_env(void)
{
    if (P.env_read)
        return;
    P.env_read = 1;
    const char *m = getenv("SBOT_PROGRESS");
    for (int i = 0; m && mode_names[i]; i++)
        if (strcmp(m, mode_names[i]) == 0 && i != MODE_PIPE)
            P.forced = i;
}

static int terminal_ok(void)
{
    static int tty = -1;
    if (tty < 0) {
        const char *term = getenv("TERM");
        tty = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0);
    }
    return tty;
}

/* The mode of this process's own waits. */
static int own_mode(lua_State *L)
{
    read_env();
    if (P.pipe_fd >= 0)
        return MODE_PIPE;
    if (P.forced != MODE_AUTO)
        return P.forced;
    return terminal_ok() && !sbot_log_json(L) ? MODE_TTY : MODE_LOG;
}

/* ---- the board ----------------------------------------------------------- */

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

static int term_rows(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4)
        return ws.ws_row;
    return 24;
}

static void format_elapsed(char *out, size_t size, double s)
{
    if (s < 60)
        snprintf(out, size, "%ds", (int)s);
    else if (s < 3600)
        snprintf(out, size, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s, 3600) / 60);
}

/* Cut s to at most n bytes, not inside a UTF-8 sequence. */
static void cut(char *s, size_t n)
{
    if (strlen(s) <= n)
        return;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = '\0';
}

static int is_drawing(void)
{
    return P.board > 0;
}

/* Erase the board: the cursor goes back to where it began. */
static void erase_board(void)
{
    if (P.drawn > 0) {
        fprintf(stderr, "\r\033[%dA\033[J", P.drawn);
        P.drawn = 0;
    }
}

/* One line per label (server) that waits: its waits in begin order joined by
 * " > ", the detail and the fraction of the innermost wait that has them,
 * elapsed since the outermost began. */
static void draw_board(void)
{
    double now = mono();
    int width = term_width() - 1, max_lines = term_rows() - 2;
    int order[MAX_WAITS], n = 0;
    for (int i = 0; i < MAX_WAITS; i++)
        if (P.w[i].used && (P.w[i].slot >= 0 || P.w[i].mode == MODE_TTY))
            order[n++] = i;
    /* by label, then begin order */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            struct wait *a = &P.w[order[j - 1]], *b = &P.w[order[j]];
            int c = strcmp(a->label, b->label);
            if (c > 0 || (c == 0 && a->seq > b->seq)) {
                int t = order[j - 1];
                order[j - 1] = order[j];
                order[j] = t;
            } else {
                break;
            }
        }
    int label_w = 0;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(P.w[order[i]].label);
        if (l > label_w)
            label_w = l;
    }
    erase_board();
    int lines = 0, groups = 0, left = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && strcmp(P.w[order[j]].label, P.w[order[i]].label) == 0)
            j++;
        groups++;
        if (lines >= max_lines - 1 && j < n) { /* room for the "more" line */
            left++;
            i = j;
            continue;
        }
        char what[512] = "", detail[96] = "", bar[32], pct[16] = "", el[32];
        double fraction = -1, started = P.w[order[i]].started;
        for (int k = i; k < j; k++) {
            struct wait *w = &P.w[order[k]];
            if (k > i)
                strncat(what, " > ", sizeof what - strlen(what) - 1);
            strncat(what, w->what, sizeof what - strlen(what) - 1);
            if (w->detail[0])
                snprintf(detail, sizeof detail, "%s", w->detail);
            if (w->fraction >= 0)
                fraction = w->fraction;
        }
        if (fraction >= 0) {
            int fill = (int)(fraction * 10 + 0.5);
            if (fill > 10)
                fill = 10;
            bar[0] = '[';
            for (int b = 0; b < 10; b++)
                bar[1 + b] = b < fill ? '#' : '-';
            bar[11] = ']';
            bar[12] = '\0';
            unsigned percent = (unsigned)(fraction * 100 + 0.5);
            snprintf(pct, sizeof pct, "%3u%%", percent > 100 ? 100u : percent);
        } else {
            /* no fraction from the device: a marker that moves, so the line is seen to live */
            int pos = (int)(now * 4) % 16;
            pos = pos < 8 ? pos : 15 - pos;
            snprintf(bar, sizeof bar, "[%*s<=>%*s]", pos, "", 7 - pos, "");
        }
        format_elapsed(el, sizeof el, now - started);
        char line[1024];
        snprintf(line, sizeof line, "%-*s  %s %4s %6s  %s%s%s", label_w, P.w[order[i]].label, bar, pct, el, what,
                 detail[0] ? "  " : "", detail);
        cut(line, (size_t)(width > 0 ? width : 1));
        fprintf(stderr, "%s\033[K\n", line);
        lines++;
        i = j;
    }
    if (left > 0) {
        fprintf(stderr, "... and %d more waiting\033[K\n", left);
        lines++;
    }
    (void)groups;
    fflush(stderr);
    P.drawn = lines;
    P.dirty = 0;
    P.last_draw = now;
}

/* Is there anything the board shows (drawing parent, or own tty waits)? */
static int board_active(void)
{
    if (is_drawing())
        return 1;
    for (int i = 0; i < MAX_WAITS; i++)
        if (P.w[i].used && P.w[i].slot < 0 && P.w[i].mode == MODE_TTY)
            return 1;
    return 0;
}

void sbot_progress_hide(void)
{
    if (P.drawn > 0 && !P.hidden) {
        erase_board();
        P.hidden = 1;
        fflush(stderr);
    }
}

void sbot_progress_show(void)
{
    if (P.hidden) {
        P.hidden = 0;
        draw_board();
    }
}

void sbot_progress_tick(void)
{
    if (!board_active() && P.drawn == 0)
        return;
    double now = mono();
    /* redraw at DRAW_INTERVAL while something waits (elapsed moves), and once
     * after a change */
    if (now - P.last_draw >= DRAW_INTERVAL && (P.dirty || board_active()))
        draw_board();
}

void sbot_progress_text(const char *text, size_t len)
{
    sbot_progress_hide();
    fwrite(text, 1, len, stderr);
    if (len == 0 || text[len - 1] != '\n')
        fputc('\n', stderr);
    fflush(stderr);
    sbot_progress_show();
}

/* ---- the table of waits ---------------------------------------------------- */

static struct wait *find(int slot, const char *key)
{
    for (int i = 0; i < MAX_WAITS; i++)
        if (P.w[i].used && P.w[i].slot == slot && (!key || strncmp(P.w[i].key, key, sizeof P.w[i].key - 1) == 0))
            return &P.w[i];
    return NULL;
}

static struct wait *add(int slot, const char *label, const char *key)
{
    for (int i = 0; i < MAX_WAITS; i++)
        if (!P.w[i].used) {
            struct wait *w = &P.w[i];
            memset(w, 0, sizeof *w);
            w->used = 1;
            w->slot = slot;
            copy_text(w->label, sizeof w->label, label);
            copy_text(w->key, sizeof w->key, key);
            w->started = mono();
            w->seq = ++P.seq;
            w->fraction = -1;
            return w;
        }
    return NULL; /* full: this wait is not shown; the work goes on */
}

/* ---- log mode ---------------------------------------------------------------- */

static void log_wait(lua_State *L, enum sbot_level level, const char *event, struct wait *w, double now)
{
    if (!sbot_log_enabled(L, level))
        return;
    lua_createtable(L, 0, 6);
    int f = lua_gettop(L);
    lua_pushstring(L, event);
    lua_setfield(L, f, "progress");
    if (sbot_log_json(L)) { /* the message names it for a human */
        lua_pushstring(L, w->what);
        lua_setfield(L, f, "wait");
    }
    if (P.label[0]) {
        lua_pushstring(L, P.label);
        lua_setfield(L, f, "server");
    }
    if (w->fraction >= 0) {
        lua_pushinteger(L, (lua_Integer)floor(w->fraction * 100 + 0.5));
        lua_setfield(L, f, "percent");
    }
    if (strcmp(event, "start") != 0) {
        lua_pushnumber(L, floor((now - w->started) * 10 + 0.5) / 10);
        lua_setfield(L, f, "elapsed_s");
    }
    if (w->detail[0]) {
        lua_pushstring(L, w->detail);
        lua_setfield(L, f, "detail");
    }
    char msg[256];
    if (strcmp(event, "done") == 0)
        snprintf(msg, sizeof msg, "done: %s after %.1f s", w->what, now - w->started);
    else
        snprintf(msg, sizeof msg, "waiting: %s", w->what);
    sbot_log_fields(L, level, msg, f);
    lua_pop(L, 1);
}

/* ---- pipe mode (a worker of a drawing parent) -------------------------------- */

static void send_record(char kind, struct wait *w)
{
    char rec[512];
    int n;
    if (kind == 'E')
        n = snprintf(rec, sizeof rec, "%cE\t%s\n", RECORD_MARK, w->key);
    else
        n = snprintf(rec, sizeof rec, "%cP%.4f\t%s\t%s\t%s\n", RECORD_MARK, w->fraction, w->key, w->what, w->detail);
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof rec) {
        rec[sizeof rec - 2] = '\n';
        n = sizeof rec - 1;
    }
    /* never blocks: a parent that does not read loses a record, the work
     * goes on (MSG_DONTWAIT on the socket; the stderr pipe stays blocking
     * for log lines) */
    ssize_t r = send(P.pipe_fd, rec, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)r;
}

/* ---- the C API -------------------------------------------------------------- */

void sbot_progress_detail(lua_State *L, const char *what, double fraction, const char *detail)
{
    if (!what || !*what)
        return;
    int mode = own_mode(L);
    if (mode == MODE_OFF)
        return;
    if (!(fraction >= 0)) /* NaN too */
        fraction = -1;
    else if (fraction > 1)
        fraction = 1;
    double now = mono();
    struct wait *w = find(-1, what);
    int fresh = 0;
    if (!w) {
        w = add(-1, mode == MODE_TTY ? P.label : "", what);
        if (!w)
            return;
        w->mode = mode;
        fresh = 1;
        copy_redacted(L, w->what, sizeof w->what, what);
    } else if (now - w->checked < SEND_INTERVAL && !(fraction >= 1 && w->fraction < 1)) {
        /* throttled: keep the latest numbers for the next report */
        w->fraction = fraction;
        return;
    }
    w->checked = now;
    w->fraction = fraction;
    if (detail)
        copy_redacted(L, w->detail, sizeof w->detail, detail);
    switch (mode) {
    case MODE_PIPE:
        send_record('P', w);
        w->sent = now;
        if (fresh)
            log_wait(L, SBOT_DEBUG, "start", w, now);
        break;
    case MODE_TTY:
        if (fresh)
            log_wait(L, SBOT_DEBUG, "start", w, now);
        P.dirty = 1;
        if (fresh || now - P.last_draw >= DRAW_INTERVAL)
            draw_board();
        w->sent = now;
        break;
    default: /* log */
        if (fresh) {
            log_wait(L, SBOT_INFO, "start", w, now);
            w->sent = now;
        } else if (now - w->sent >= P.log_interval) {
            log_wait(L, SBOT_INFO, "update", w, now);
            w->sent = now;
            w->logged = 1;
        }
        break;
    }
}

void sbot_progress(lua_State *L, const char *what, double fraction)
{
    sbot_progress_detail(L, what, fraction, NULL);
}

static void end_one(lua_State *L, struct wait *w, int mode)
{
    double now = mono();
    switch (mode) {
    case MODE_PIPE:
        send_record('E', w);
        log_wait(L, SBOT_DEBUG, "done", w, now);
        break;
    case MODE_TTY:
        log_wait(L, SBOT_DEBUG, "done", w, now);
        break;
    case MODE_LOG:
        /* a short wait ends quietly: its "waiting" line said enough */
        log_wait(L, now - w->started >= 1.0 || w->logged ? SBOT_INFO : SBOT_DEBUG, "done", w, now);
        break;
    default:
        break;
    }
    w->used = 0;
}

void sbot_progress_end(lua_State *L, const char *what)
{
    int mode = own_mode(L);
    int any = 0;
    struct wait *w;
    while ((w = find(-1, what)) != NULL) {
        end_one(L, w, mode);
        any = 1;
        if (what)
            break;
    }
    if (any && mode == MODE_TTY) {
        P.dirty = 1;
        draw_board();
    }
}

/* ---- fleet: workers and the drawing parent ----------------------------------- */

int sbot_progress_board_start(lua_State *L)
{
    if (P.pipe_fd >= 0 || own_mode(L) != MODE_TTY)
        return 0;
    P.board++;
    return 1;
}

void sbot_progress_board_stop(void)
{
    if (P.board > 0)
        P.board--;
    if (P.board == 0) {
        for (int i = 0; i < MAX_WAITS; i++)
            if (P.w[i].used && P.w[i].slot >= 0)
                P.w[i].used = 0;
        erase_board();
        P.hidden = 0;
        if (board_active())
            draw_board();
        fflush(stderr);
    }
}

void sbot_progress_worker(int fd, const char *label)
{
    /* a fork: the parent's waits, board and terminal are not ours */
    memset(P.w, 0, sizeof P.w);
    P.board = P.drawn = P.hidden = P.dirty = 0;
    P.pipe_fd = fd;
    copy_text(P.label, sizeof P.label, label);
}

void sbot_progress_slot_done(int slot)
{
    int any = 0;
    for (int i = 0; i < MAX_WAITS; i++)
        if (P.w[i].used && P.w[i].slot == slot) {
            P.w[i].used = 0;
            any = 1;
        }
    if (any)
        P.dirty = 1;
}

/* One record (without its mark and newline) from the worker in `slot`. */
static void feed_record(int slot, const char *label, char *rec)
{
    char kind = rec[0];
    char *fields[4] = {NULL, NULL, NULL, NULL};
    int nf = 0;
    for (char *p = rec + 1; nf < 4;) {
        fields[nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    if (kind == 'E' && nf >= 2) {
        struct wait *w = find(slot, fields[1]);
        if (w)
            w->used = 0;
        P.dirty = 1;
    } else if (kind == 'P' && nf >= 4) {
        struct wait *w = find(slot, fields[1]);
        if (!w)
            w = add(slot, label, fields[1]);
        if (!w)
            return;
        w->fraction = strtod(fields[0], NULL);
        copy_text(w->what, sizeof w->what, fields[2]);
        copy_text(w->detail, sizeof w->detail, fields[3]);
        P.dirty = 1;
    }
}

size_t sbot_progress_feed(int slot, const char *label, char *buf, size_t len, int flush)
{
    size_t pos = 0; /* buf[0 .. pos) is handled */
    while (pos < len) {
        char *start = buf + pos;
        size_t left = len - pos;
        char *nl = memchr(start, '\n', left);
        char *mark = memchr(start, RECORD_MARK, nl ? (size_t)(nl - start) : left);
        if (mark) {
            char *end = memchr(mark, '\n', left - (size_t)(mark - start));
            if (!end)
                break; /* the record's end has not come yet */
            *end = '\0';
            feed_record(slot, label, mark + 1);
            /* text in front of the record (a partial line of another writer) stays */
            size_t before = (size_t)(mark - start), rec_len = (size_t)(end - mark) + 1;
            memmove(mark, end + 1, left - before - rec_len);
            len -= rec_len;
            continue;
        }
        if (!nl)
            break;
        sbot_progress_text(start, (size_t)(nl - start) + 1);
        pos += (size_t)(nl - start) + 1;
    }
    if (flush && pos < len) { /* the worker is gone: its last partial line */
        sbot_progress_text(buf + pos, len - pos);
        pos = len;
    }
    if (pos > 0) {
        memmove(buf, buf + pos, len - pos);
        len -= pos;
    }
    return len;
}

/* ---- Lua API ------------------------------------------------------------------ */

#define WAIT_MT "sbot.progress.wait"

static double opt_fraction(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return SBOT_PROGRESS_UNKNOWN;
    double f = luaL_checknumber(L, idx);
    luaL_argcheck(L, f >= 0 && f <= 1, idx, "fraction must be from 0 to 1 (or nil: unknown)");
    return f;
}

/* progress.update(what, fraction [, detail]) */
static int l_update(lua_State *L)
{
    const char *what = luaL_checkstring(L, 1);
    double f = opt_fraction(L, 2);
    const char *detail = luaL_optstring(L, 3, NULL);
    sbot_progress_detail(L, what, f, detail);
    return 0;
}

/* progress.done(what) */
static int l_done(lua_State *L)
{
    sbot_progress_end(L, luaL_checkstring(L, 1));
    return 0;
}

/* progress.start(what [, detail]) -> wait (update, done; a to-be-closed value) */
static int l_start(lua_State *L)
{
    const char *what = luaL_checkstring(L, 1);
    const char *detail = luaL_optstring(L, 2, NULL);
    sbot_progress_detail(L, what, SBOT_PROGRESS_UNKNOWN, detail);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "what");
    luaL_setmetatable(L, WAIT_MT);
    return 1;
}

static const char *check_wait(lua_State *L)
{
    if (!lua_istable(L, 1) || !lua_getmetatable(L, 1))
        luaL_typeerror(L, 1, WAIT_MT);
    luaL_getmetatable(L, WAIT_MT);
    if (!lua_rawequal(L, -1, -2))
        luaL_typeerror(L, 1, WAIT_MT);
    lua_pop(L, 2);
    lua_getfield(L, 1, "what");
    const char *what = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
    return what;
}

static int w_update(lua_State *L)
{
    const char *what = check_wait(L);
    lua_getfield(L, 1, "closed");
    int closed = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (closed)
        return luaL_error(L, "progress: wait '%s' is done already", what);
    sbot_progress_detail(L, what, opt_fraction(L, 2), luaL_optstring(L, 3, NULL));
    return 0;
}

static int w_done(lua_State *L)
{
    const char *what = check_wait(L);
    lua_getfield(L, 1, "closed");
    if (!lua_toboolean(L, -1)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, 1, "closed");
        sbot_progress_end(L, what);
    }
    return 0;
}

/* progress.mode() -> "tty" | "log" | "pipe" | "off" */
static int l_mode(lua_State *L)
{
    lua_pushstring(L, mode_names[own_mode(L)]);
    return 1;
}

/* progress.configure{mode = "auto"|"tty"|"log"|"off", log_interval = seconds} */
static int l_configure(lua_State *L)
{
    static const char *const settable[] = {"auto", "tty", "log", "off", NULL};
    static const int values[] = {MODE_AUTO, MODE_TTY, MODE_LOG, MODE_OFF};
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING ||
            (strcmp(lua_tostring(L, -1), "mode") != 0 && strcmp(lua_tostring(L, -1), "log_interval") != 0))
            return luaL_error(L, "progress.configure: unknown key '%s' (expected mode, log_interval)",
                              luaL_tolstring(L, -1, NULL));
    }
    read_env();
    if (lua_getfield(L, 1, "mode") != LUA_TNIL)
        P.forced = values[luaL_checkoption(L, -1, NULL, settable)];
    if (lua_getfield(L, 1, "log_interval") != LUA_TNIL) {
        double s = luaL_checknumber(L, -1);
        if (!(s >= 0) || !isfinite(s))
            return luaL_error(L, "progress.configure: log_interval must be a number of seconds >= 0");
        P.log_interval = s;
    }
    lua_pop(L, 2);
    return 0;
}

int luaopen_sbot_progress(lua_State *L)
{
    static const luaL_Reg fns[] = {{"update", l_update}, {"done", l_done},     {"start", l_start},
                                   {"mode", l_mode},     {"configure", l_configure}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"update", w_update}, {"done", w_done}, {NULL, NULL}};
    if (luaL_newmetatable(L, WAIT_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, w_done);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
