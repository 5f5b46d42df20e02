/* sbot.yaml: YAML text <-> plain Lua tables, on libyaml.
 *
 *   yaml.decode(text [, opts])     -> value | nil, "yaml: line L column C: problem"
 *   yaml.decode_all(text [, opts]) -> list of documents | nil, message
 *   yaml.encode(value [, opts])    -> text (raises on what YAML cannot hold)
 *   yaml.encode_all(list [, opts]) -> text of several documents
 *
 * Decoding builds tables from libyaml's parser events. Plain scalars are
 * resolved with the YAML 1.2 core schema (null, booleans, integers, floats);
 * quoted and block scalars are strings; mapping keys are always the key's text.
 * Sequences carry sbot.json's array marker (a metatable named "sbot.json.array")
 * and null is sbot.json's null (cjson's light userdata NULL), so a decoded
 * document encodes to the same JSON and back to the same YAML. Anchors and
 * aliases are resolved (an alias is the same Lua table as its anchor), `<<`
 * merge keys are applied, duplicate keys are errors, and the alias expansion of
 * a document is bounded (a "billion laughs" document is refused).
 *
 * Encoding emits with libyaml: keys sorted, block style, strings plain only
 * when neither YAML 1.1 nor YAML 1.2 could read them as anything but the same
 * string ("on", "0755", "1e3", "~" are quoted; libyaml itself quotes what the
 * syntax needs: leading spaces, ": ", "#", indicators). Secret objects are
 * refused unless opts.secrets says "reveal" or "redact" (never silently).
 *
 * The parser, the emitter, the current event and the output buffer live in a
 * userdata whose __gc releases them, so a Lua error (bad input, out of
 * memory) never leaks. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "luax.h"
#include "sbot.h"
#include "util.h"

#define BOX_MT "sbot.yaml.box"
#define MAX_DEPTH 1000
#define MAX_EXPANSION 1000000 /* nodes a document's aliases may add */

#define TAG_PREFIX "tag:yaml.org,2002:"

struct box {
    yaml_parser_t parser;
    int has_parser;
    yaml_event_t event;
    int has_event;
    yaml_emitter_t emitter;
    int has_emitter;
    char *out;
    size_t out_len, out_cap;
    int out_failed;
};

static int box_release(lua_State *L)
{
    struct box *b = luaL_checkudata(L, 1, BOX_MT);
    if (b->has_event) {
        yaml_event_delete(&b->event);
        b->has_event = 0;
    }
    if (b->has_parser) {
        yaml_parser_delete(&b->parser);
        b->has_parser = 0;
    }
    if (b->has_emitter) {
        yaml_emitter_delete(&b->emitter);
        b->has_emitter = 0;
    }
    free(b->out);
    b->out = NULL;
    b->out_len = b->out_cap = 0;
    return 0;
}

static struct box *new_box(lua_State *L)
{
    struct box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, box_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return b;
}

/* The array marker shared with sbot.json (and lifecycle.c's plan lists). */
static void push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, SBOT_JSON_ARRAY_MT); /* luax.h: created with its __name on first use */
}

static int is_array_marked(lua_State *L, int idx)
{
    if (luaL_getmetafield(L, idx, "__name") == LUA_TNIL)
        return 0;
    int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), SBOT_JSON_ARRAY_MT) == 0;
    lua_pop(L, 1);
    return yes;
}

static int is_null(lua_State *L, int idx)
{
    return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL;
}

/* ===========================================================================
 * Scalar resolution (YAML 1.2 core schema)
 * ======================================================================== */

static int all_digits(const char *s, size_t n, int (*ok)(int))
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!ok((unsigned char)s[i]))
            return 0;
    return 1;
}
static int is_dec(int c) { return c >= '0' && c <= '9'; }
static int is_oct(int c) { return c >= '0' && c <= '7'; }
static int is_hex(int c) { return sbot_hexval(c) >= 0; }

static int word_in(const char *s, size_t n, const char *const *words)
{
    for (int i = 0; words[i]; i++)
        if (strlen(words[i]) == n && memcmp(s, words[i], n) == 0)
            return 1;
    return 0;
}

static const char *const null_words[] = {"~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};
static const char *const inf_words[] = {".inf", ".Inf", ".INF", NULL};
static const char *const nan_words[] = {".nan", ".NaN", ".NAN", NULL};

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int core_float_syntax(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && is_dec((unsigned char)s[i]))
        i++, d++;
    if (i < n && s[i] == '.') {
        i++;
        size_t f = 0;
        while (i < n && is_dec((unsigned char)s[i]))
            i++, f++;
        if (d == 0 && f == 0)
            return 0;
    } else if (d == 0) {
        return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = 0;
        while (i < n && is_dec((unsigned char)s[i]))
            i++, e++;
        if (e == 0)
            return 0;
    }
    return i == n;
}

/* Push the integer of a decimal/octal/hex text (a float when it does not fit
 * in 64 bits, as Lua's own tonumber does). */
static void push_int_text(lua_State *L, const char *s, size_t n, int base, int skip)
{
    char tmp[128];
    if (n >= sizeof tmp) {
        lua_pushlstring(L, s, n);
        lua_pushnumber(L, lua_tonumber(L, -1));
        lua_remove(L, -2);
        return;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    int neg = tmp[0] == '-';
    const char *digits = tmp + skip;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(digits, &end, base);
    int fits = errno == 0 && (neg ? u <= (unsigned long long)LLONG_MAX + 1ULL : u <= (unsigned long long)LLONG_MAX);
    if (fits) {
        long long v = neg ? (long long)(0ULL - u) : (long long)u;
        lua_pushinteger(L, (lua_Integer)v);
        return;
    }
    double d = base == 10 ? strtod(tmp, NULL) : (double)u * (neg ? -1.0 : 1.0);
    if (base != 10 && errno == ERANGE) {
        d = 0; /* recompute digit by digit: strtoull saturated */
        for (const char *p = digits; *p; p++)
            d = d * base + sbot_hexval((unsigned char)*p);
        if (neg)
            d = -d;
    }
    lua_pushnumber(L, (lua_Number)d);
}

/* Push the value of an untagged plain scalar (YAML 1.2 core schema). */
static void push_plain(lua_State *L, const char *s, size_t n)
{
    if (n == 0 || word_in(s, n, null_words)) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    if (word_in(s, n, true_words) || word_in(s, n, false_words)) {
        lua_pushboolean(L, word_in(s, n, true_words));
        return;
    }
    size_t sign = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (all_digits(s + sign, n - sign, is_dec)) {
        push_int_text(L, s, n, 10, sign);
        return;
    }
    if (n > 2 && s[0] == '0' && s[1] == 'o' && all_digits(s + 2, n - 2, is_oct)) {
        push_int_text(L, s, n, 8, 2);
        return;
    }
    if (n > 2 && s[0] == '0' && s[1] == 'x' && all_digits(s + 2, n - 2, is_hex)) {
        push_int_text(L, s, n, 16, 2);
        return;
    }
    if (core_float_syntax(s, n)) {
        char tmp[512];
        if (n < sizeof tmp) {
            memcpy(tmp, s, n);
            tmp[n] = '\0';
            lua_pushnumber(L, (lua_Number)strtod(tmp, NULL));
        } else {
            lua_pushlstring(L, s, n);
            lua_pushnumber(L, lua_tonumber(L, -1));
            lua_remove(L, -2);
        }
        return;
    }
    if (word_in(s + sign, n - sign, inf_words)) {
        lua_pushnumber(L, s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
        return;
    }
    if (word_in(s, n, nan_words)) {
        lua_pushnumber(L, (lua_Number)NAN);
        return;
    }
    lua_pushlstring(L, s, n);
}

/* ===========================================================================
 * Decoding
 * ======================================================================== */

enum { F_SEQ = 1, F_MAP = 2 };

/* Per open collection: C state here, Lua values in FRAME_SLOTS stack slots:
 * [container][pending key or nil][merge sources or nil][anchor name or nil]. */
#define FRAME_SLOTS 4
struct frame {
    int kind;
    lua_Integer n;      /* sequence length so far */
    long long size;     /* nodes in this collection, aliases expanded */
    int key_is_merge;   /* the pending key is a plain `<<` */
    int key_line, key_col;
};

struct dec {
    lua_State *L;
    struct box *box;
    const char *text;
    size_t len;
    const char *source;  /* prefix of messages ("yaml" or opts.source) */
    int anchors;         /* table: name -> value */
    int anchor_sizes;    /* table: name -> node count */
    int docs;            /* list of documents */
    int ndocs;
    int all;             /* decode_all */
    int base;            /* stack slot below the first frame */
    int depth;
    long long expanded;  /* nodes added by aliases in this document */
    struct frame frames[MAX_DEPTH];
};

#define SLOT(d, i, k) ((d)->base + (i) * FRAME_SLOTS + (k) + 1)

/* Raise "<source>: line L column C: message" (the event is released by the
 * box's __gc; nothing else is held). */
static int dec_error(struct dec *d, yaml_mark_t mark, const char *fmt, ...)
{
    lua_State *L = d->L;
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s: line %d column %d: %s", d->source, (int)mark.line + 1,
                      (int)mark.column + 1, lua_tostring(L, -1));
}

/* Line and column (1-based) of a byte offset in the text. */
static void offset_position(const char *s, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else if ((s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* The parser's own error as "nil, message" (returns 2) — an expected failure. */
static int parser_failure(struct dec *d)
{
    lua_State *L = d->L;
    yaml_parser_t *p = &d->box->parser;
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_position(d->text, d->len, p->problem_offset, &line, &col);
        if (p->problem_value != -1) {
            char byte[8];
            snprintf(byte, sizeof byte, "%02X", (unsigned)(p->problem_value & 0xFF));
            lua_pushfstring(L, "%s: line %d column %d: %s (byte 0x%s at offset %d)", d->source, line,
                            col, p->problem ? p->problem : "cannot read the input", byte,
                            (int)p->problem_offset);
        } else
            lua_pushfstring(L, "%s: line %d column %d: %s", d->source, line, col,
                            p->problem ? p->problem : "cannot read the input");
    } else if (p->error == YAML_MEMORY_ERROR) {
        return luaL_error(L, "%s: out of memory", d->source);
    } else {
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
        if (p->context)
            lua_pushfstring(L, "%s: line %d column %d: %s (%s at line %d column %d)", d->source,
                            line, col, p->problem ? p->problem : "syntax error", p->context,
                            (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        else
            lua_pushfstring(L, "%s: line %d column %d: %s", d->source, line, col,
                            p->problem ? p->problem : "syntax error");
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static struct frame *top_frame(struct dec *d) { return d->depth ? &d->frames[d->depth - 1] : NULL; }

/* The frame expects a key (a mapping whose pending-key slot is empty). */
static int expects_key(struct dec *d)
{
    struct frame *f = top_frame(d);
    return f && f->kind == F_MAP && lua_isnil(d->L, SLOT(d, d->depth - 1, 1));
}

/* Take the value on the stack top (worth `size` nodes) into the current
 * frame, or as the document when no frame is open. */
static void add_value(struct dec *d, long long size, yaml_mark_t mark)
{
    lua_State *L = d->L;
    struct frame *f = top_frame(d);
    if (!f) {
        lua_rawseti(L, d->docs, d->ndocs);
        return;
    }
    f->size += size;
    int i = d->depth - 1;
    int container = SLOT(d, i, 0), key = SLOT(d, i, 1);
    if (f->kind == F_SEQ) {
        lua_rawseti(L, container, ++f->n);
        return;
    }
    if (lua_isnil(L, key)) {
        /* this value is a key: only scalars (or aliases of scalars) can be */
        int t = lua_type(L, -1);
        if (t == LUA_TTABLE)
            dec_error(d, mark, "a mapping key must be a scalar, not a %s",
                      is_array_marked(L, -1) ? "sequence" : "mapping");
        if (t != LUA_TSTRING) {
            if (is_null(L, -1)) {
                lua_pop(L, 1);
                lua_pushliteral(L, "null");
            } else {
                luaL_tolstring(L, -1, NULL);
                lua_remove(L, -2);
            }
        }
        lua_replace(L, key);
        f->key_line = (int)mark.line;
        f->key_col = (int)mark.column;
        return;
    }
    if (f->key_is_merge) {
        /* `<<: *anchor` or `<<: [*a, *b]`: keep the sources, merged at the end */
        int ok = lua_type(L, -1) == LUA_TTABLE;
        if (ok && is_array_marked(L, -1)) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer k = 1; ok && k <= n; k++) {
                lua_rawgeti(L, -1, k);
                ok = lua_type(L, -1) == LUA_TTABLE && !is_array_marked(L, -1);
                lua_pop(L, 1);
            }
        }
        if (!ok)
            dec_error(d, mark, "the value of a << merge key must be a mapping or a sequence of mappings");
        int merges = SLOT(d, i, 2);
        if (lua_isnil(L, merges)) {
            lua_newtable(L);
            lua_replace(L, merges);
        }
        if (is_array_marked(L, -1)) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer k = 1; k <= n; k++) {
                lua_rawgeti(L, -1, k);
                lua_rawseti(L, merges, (lua_Integer)lua_rawlen(L, merges) + 1);
            }
            lua_pop(L, 1);
        } else {
            lua_rawseti(L, merges, (lua_Integer)lua_rawlen(L, merges) + 1);
        }
        f->key_is_merge = 0;
        lua_pushnil(L);
        lua_replace(L, key);
        return;
    }
    lua_pushvalue(L, key);
    if (lua_rawget(L, container) != LUA_TNIL) {
        yaml_mark_t km = {0, (size_t)f->key_line, (size_t)f->key_col};
        dec_error(d, km, "duplicate key \"%s\" in a mapping", lua_tostring(L, key));
    }
    lua_pop(L, 1);
    lua_pushvalue(L, key);
    lua_insert(L, -2);
    lua_rawset(L, container);
    lua_pushnil(L);
    lua_replace(L, key);
}

/* Remember the value on the stack top under the event's anchor (if any). */
static void keep_anchor(struct dec *d, int anchor_slot, long long size)
{
    lua_State *L = d->L;
    if (lua_isnil(L, anchor_slot))
        return;
    lua_pushvalue(L, anchor_slot);
    lua_pushvalue(L, -2);
    lua_rawset(L, d->anchors);
    lua_pushvalue(L, anchor_slot);
    lua_pushinteger(L, (lua_Integer)size);
    lua_rawset(L, d->anchor_sizes);
}

static const char *short_tag(const char *tag)
{
    size_t n = strlen(TAG_PREFIX);
    return strncmp(tag, TAG_PREFIX, n) == 0 ? tag + n : NULL;
}

static void on_scalar(struct dec *d, yaml_event_t *ev)
{
    lua_State *L = d->L;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (expects_key(d)) {
        if (tag && strcmp(tag, "!") != 0 && !(short_tag(tag) && strcmp(short_tag(tag), "str") == 0))
            dec_error(d, ev->start_mark, "unsupported tag %s on a mapping key (keys are strings)", tag);
        top_frame(d)->key_is_merge = plain && !tag && n == 2 && memcmp(s, "<<", 2) == 0;
        lua_pushlstring(L, s, n);
    } else if (!tag) {
        if (plain)
            push_plain(L, s, n);
        else
            lua_pushlstring(L, s, n);
    } else if (strcmp(tag, "!") == 0) {
        lua_pushlstring(L, s, n); /* the non-specific tag: a string */
    } else {
        const char *t = short_tag(tag);
        if (t && strcmp(t, "str") == 0) {
            lua_pushlstring(L, s, n);
        } else if (t && (strcmp(t, "int") == 0 || strcmp(t, "float") == 0 ||
                         strcmp(t, "bool") == 0 || strcmp(t, "null") == 0)) {
            push_plain(L, s, n);
            int ty = lua_type(L, -1);
            int ok = strcmp(t, "int") == 0    ? lua_isinteger(L, -1)
                     : strcmp(t, "float") == 0 ? ty == LUA_TNUMBER
                     : strcmp(t, "bool") == 0  ? ty == LUA_TBOOLEAN
                                               : is_null(L, -1);
            if (!ok)
                dec_error(d, ev->start_mark, "!!%s: \"%s\" is not a%s %s", t, lua_pushlstring(L, s, n),
                          strcmp(t, "int") == 0 ? "n" : "", strcmp(t, "int") == 0 ? "integer" : t);
            if (strcmp(t, "float") == 0 && lua_isinteger(L, -1)) {
                lua_Number v = (lua_Number)lua_tointeger(L, -1);
                lua_pop(L, 1);
                lua_pushnumber(L, v);
            }
        } else {
            dec_error(d, ev->start_mark, "unsupported tag %s", tag);
        }
    }
    if (ev->data.scalar.anchor) {
        lua_pushstring(L, (const char *)ev->data.scalar.anchor);
        lua_pushvalue(L, -2);
        keep_anchor(d, lua_gettop(L) - 1, 1);
        lua_pop(L, 2);
    }
    add_value(d, 1, ev->start_mark);
}

static void on_alias(struct dec *d, yaml_event_t *ev)
{
    lua_State *L = d->L;
    const char *name = (const char *)ev->data.alias.anchor;
    lua_pushstring(L, name);
    if (lua_rawget(L, d->anchors) == LUA_TNIL)
        dec_error(d, ev->start_mark, "alias *%s refers to no anchor defined before it", name);
    lua_pushstring(L, name);
    lua_rawget(L, d->anchor_sizes);
    long long size = (long long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    d->expanded += size;
    if (d->expanded > MAX_EXPANSION)
        dec_error(d, ev->start_mark, "aliases expand to more than %d nodes (refused: an alias bomb?)",
                  MAX_EXPANSION);
    if (expects_key(d))
        top_frame(d)->key_is_merge = 0;
    add_value(d, size, ev->start_mark);
}

static void on_start(struct dec *d, yaml_event_t *ev, int kind)
{
    lua_State *L = d->L;
    const char *tag = (const char *)(kind == F_SEQ ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
    const char *anchor = (const char *)(kind == F_SEQ ? ev->data.sequence_start.anchor
                                                      : ev->data.mapping_start.anchor);
    if (expects_key(d))
        dec_error(d, ev->start_mark, "a mapping key must be a scalar, not a %s",
                  kind == F_SEQ ? "sequence" : "mapping");
    if (tag && strcmp(tag, "!") != 0) {
        const char *t = short_tag(tag);
        if (!t || strcmp(t, kind == F_SEQ ? "seq" : "map") != 0)
            dec_error(d, ev->start_mark, "unsupported tag %s on a %s", tag,
                      kind == F_SEQ ? "sequence" : "mapping");
    }
    if (d->depth >= MAX_DEPTH)
        dec_error(d, ev->start_mark, "nested more than %d levels deep", MAX_DEPTH);
    luaL_checkstack(L, FRAME_SLOTS + 8, "yaml.decode");
    lua_newtable(L);
    if (kind == F_SEQ) {
        push_array_mt(L);
        lua_setmetatable(L, -2);
    }
    lua_pushnil(L);
    lua_pushnil(L);
    if (anchor)
        lua_pushstring(L, anchor);
    else
        lua_pushnil(L);
    struct frame *f = &d->frames[d->depth++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->size = 1;
}

static void on_end(struct dec *d, yaml_event_t *ev)
{
    lua_State *L = d->L;
    int i = d->depth - 1;
    struct frame *f = &d->frames[i];
    int container = SLOT(d, i, 0), merges = SLOT(d, i, 2);
    if (f->kind == F_MAP && !lua_isnil(L, merges)) {
        /* explicit keys win; among merged mappings, the earlier one wins */
        lua_Integer n = (lua_Integer)lua_rawlen(L, merges);
        for (lua_Integer k = 1; k <= n; k++) {
            lua_rawgeti(L, merges, k);
            int src = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, src)) {
                lua_pushvalue(L, -2);
                if (lua_rawget(L, container) == LUA_TNIL) {
                    lua_pop(L, 1);
                    lua_pushvalue(L, -2);
                    lua_pushvalue(L, -2);
                    lua_rawset(L, container);
                    f->size += 1;
                } else {
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    long long size = f->size;
    lua_pushvalue(L, container);
    keep_anchor(d, SLOT(d, i, 3), size);
    lua_replace(L, container);
    lua_settop(L, container);
    d->depth--;
    add_value(d, size, ev->start_mark);
}

/* decode / decode_all: parse the whole stream; returns the documents table
 * at the top of the stack (1 result), or nil, message (2 results). */
static int decode_body(lua_State *L)
{
    /* args: text, source (checked by decode_stream) */
    int all = (int)lua_tointeger(L, lua_upvalueindex(1));
    size_t len;
    const char *text = lua_tolstring(L, 1, &len);
    lua_settop(L, 2);
    const char *source = lua_tostring(L, 2);
    lua_pushnil(L);                          /* 3: unused */
    lua_newtable(L);                         /* 4: anchors */
    lua_newtable(L);                         /* 5: anchor sizes */
    lua_newtable(L);                         /* 6: documents */
    struct box *box = new_box(L);            /* 7 */
    struct dec *d = lua_newuserdatauv(L, sizeof *d, 0); /* 8: decoder state (GC'd) */
    memset(d, 0, sizeof *d);
    d->L = L;
    d->box = box;
    d->text = text;
    d->len = len;
    d->source = source;
    d->anchors = 4;
    d->anchor_sizes = 5;
    d->docs = 6;
    d->all = all;
    d->base = 8;
    if (!yaml_parser_initialize(&box->parser))
        return luaL_error(L, "%s: out of memory", source);
    box->has_parser = 1;
    yaml_parser_set_input_string(&box->parser, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&box->parser, &box->event))
            return parser_failure(d);
        box->has_event = 1;
        yaml_event_t *ev = &box->event;
        int done = 0;
        switch (ev->type) {
        case YAML_DOCUMENT_START_EVENT:
            d->ndocs++;
            if (!all && d->ndocs > 1)
                dec_error(d, ev->start_mark, "a second document in the stream (yaml.decode reads one; "
                                             "use yaml.decode_all for several)");
            lua_newtable(L);
            lua_replace(L, d->anchors); /* anchors are per document */
            lua_newtable(L);
            lua_replace(L, d->anchor_sizes);
            d->expanded = 0;
            break;
        case YAML_SCALAR_EVENT: on_scalar(d, ev); break;
        case YAML_ALIAS_EVENT: on_alias(d, ev); break;
        case YAML_SEQUENCE_START_EVENT: on_start(d, ev, F_SEQ); break;
        case YAML_MAPPING_START_EVENT: on_start(d, ev, F_MAP); break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: on_end(d, ev); break;
        case YAML_STREAM_END_EVENT: done = 1; break;
        default: break;
        }
        yaml_event_delete(&box->event);
        box->has_event = 0;
        if (done)
            break;
    }
    yaml_parser_delete(&box->parser);
    box->has_parser = 0;
    lua_pushvalue(L, d->docs);
    return 1;
}

/* Run decode_body protected: a problem in the text (libyaml's, or ours:
 * duplicate key, unknown anchor, bad tag) is `nil, message`; running out of
 * memory is raised. Arguments are checked before, so misuse raises. */
static int decode_stream(lua_State *L, int all)
{
    const char *fn = all ? "yaml.decode_all" : "yaml.decode";
    luaL_checkstring(L, 1);
    lua_settop(L, 2);
    const char *source = "yaml";
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "source") != 0)
                return luaL_error(L, "%s: unknown option '%s' (expected source)", fn,
                                  luaL_tolstring(L, -2, NULL));
            lua_pop(L, 1);
        }
        lua_getfield(L, 2, "source");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "%s: opts.source must be a string", fn);
            source = lua_tostring(L, -1);
        }
    }
    lua_pushstring(L, source);
    lua_replace(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, all);
    lua_pushcclosure(L, decode_body, 1);
    lua_insert(L, 1);
    int st = lua_pcall(L, 2, LUA_MULTRET, 0);
    if (st == LUA_OK)
        return lua_gettop(L);
    if (st != LUA_ERRRUN)
        return lua_error(L);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int l_decode(lua_State *L)
{
    int n = decode_stream(L, 0);
    if (n != 1)
        return n;
    /* no document at all (empty text, only comments): null, like `~` */
    if (lua_rawgeti(L, -1, 1) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
    }
    return 1;
}

static int l_decode_all(lua_State *L)
{
    int n = decode_stream(L, 1);
    if (n != 1)
        return n;
    push_array_mt(L);
    lua_setmetatable(L, -2);
    return 1;
}

/* ===========================================================================
 * Encoding
 * ======================================================================== */

enum secrets_policy { SECRETS_ERROR, SECRETS_REVEAL, SECRETS_REDACT };

struct enc {
    lua_State *L;
    struct box *box;
    enum secrets_policy secrets;
    int seen;  /* table of the collections on the current path (cycles) */
};

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    struct box *b = data;
    if (b->out_len + size > b->out_cap) {
        size_t cap = b->out_cap ? b->out_cap : 1024;
        while (cap < b->out_len + size)
            cap *= 2;
        char *p = realloc(b->out, cap);
        if (!p) {
            b->out_failed = 1;
            return 0;
        }
        b->out = p;
        b->out_cap = cap;
    }
    memcpy(b->out + b->out_len, buffer, size);
    b->out_len += size;
    return 1;
}

/* Emit an initialised event; on failure raise with libyaml's problem (the
 * event is owned by the emitter from here on, released by the box). */
static void emit(struct enc *e, yaml_event_t *ev, int init_ok, const char *path)
{
    if (!init_ok)
        luaL_error(e->L, "yaml.encode: out of memory at %s", path);
    if (!yaml_emitter_emit(&e->box->emitter, ev)) {
        if (e->box->out_failed || e->box->emitter.error == YAML_MEMORY_ERROR)
            luaL_error(e->L, "yaml.encode: out of memory at %s", path);
        luaL_error(e->L, "yaml.encode: %s: %s", path,
                   e->box->emitter.problem ? e->box->emitter.problem : "cannot emit");
    }
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Could YAML 1.1 or 1.2 read this string, written plain, as anything but
 * itself (null, boolean, number, merge key)? libyaml checks the syntax
 * (indicators, ": ", " #", leading/trailing spaces); this checks meaning. */
static int plain_means_other(const char *s, size_t n)
{
    static const char *const words[] = {
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
        "y", "Y", "n", "N", "<<", "=", NULL};
    if (n == 0 || word_in(s, n, words))
        return 1;
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (word_in(s + i, n - i, inf_words) || word_in(s, n, nan_words))
        return 1;
    /* Numbers in any of the readers' forms: 1.2 core (1e3, 0o17, 0x1F, .5),
     * 1.1 (0755 octal, 0b101, 1_000, 12:30 and 52:54:00:12:34:56
     * sexagesimals), Go's ParseFloat (0x1p-2): a string that starts like a
     * number and uses only digits, one '.', and the letters and signs of
     * those forms is quoted. 10.0.0.0/16 and 192.168.1.10 are not numbers. */
    if (i < n && (is_dec((unsigned char)s[i]) || s[i] == '.')) {
        int dots = 0, numeric = 1;
        for (size_t k = i; k < n && numeric; k++) {
            unsigned char c = (unsigned char)s[k];
            dots += c == '.';
            numeric = is_hex(c) || strchr("._:+-xXoObBpP", c) != NULL;
        }
        if (numeric && dots <= 1)
            return 1;
    }
    /* 1.1 timestamps: 2001-12-14, 2001-12-14t21:59:43.10-05:00 */
    if (n >= 8 && all_digits(s, 4, is_dec) && s[4] == '-' && is_dec((unsigned char)s[5]))
        return 1;
    return 0;
}

static void emit_string(struct enc *e, const char *s, size_t n, const char *path)
{
    if (!valid_utf8((const unsigned char *)s, n))
        luaL_error(e->L, "yaml.encode: %s is not valid UTF-8 text, which YAML cannot represent", path);
    int plain_ok = !plain_means_other(s, n);
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (memchr(s, '\n', n) && n > 1)
        style = YAML_LITERAL_SCALAR_STYLE; /* libyaml falls back to double quotes when it must */
    yaml_event_t ev;
    int ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, plain_ok, 1, style);
    emit(e, &ev, ok, path);
}

static void emit_plain(struct enc *e, const char *s, const char *path)
{
    yaml_event_t ev;
    int ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 0,
                                          YAML_PLAIN_SCALAR_STYLE);
    emit(e, &ev, ok, path);
}

static void format_float(lua_Number v, char *out, size_t size)
{
    if (v != v) {
        snprintf(out, size, ".nan");
        return;
    }
    if (v == HUGE_VAL || v == -HUGE_VAL) {
        snprintf(out, size, "%s.inf", v < 0 ? "-" : "");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, (double)v);
        if (strtod(out, NULL) == (double)v)
            break;
    }
    /* keep it a float for every reader: 1 -> 1.0, 1e+300 -> 1.0e+300 (YAML
     * 1.1 floats need the dot; %g always signs the exponent, which 1.1 needs) */
    if (!strchr(out, '.')) {
        char *e = strchr(out, 'e');
        size_t len = strlen(out);
        if (len + 3 <= size) {
            size_t at = e ? (size_t)(e - out) : len;
            memmove(out + at + 2, out + at, len - at + 1);
            out[at] = '.';
            out[at + 1] = '0';
        }
    }
}

static void encode_value(struct enc *e, int idx, const char *path, int depth);

struct kv {
    const char *s;
    size_t n;
};

static int cmp_keys(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    return c ? c : (x->n < y->n ? -1 : x->n > y->n);
}

static void encode_map(struct enc *e, int t, const char *path, int depth)
{
    lua_State *L = e->L;
    /* keys as strings, in a table key-text -> original key (duplicates after
     * conversion, 1 and "1", are an error) */
    lua_newtable(L);
    int keys = lua_gettop(L);
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int kt = lua_type(L, -1);
        if (kt == LUA_TSTRING) {
            lua_pushvalue(L, -1);
        } else if (kt == LUA_TNUMBER) {
            if (lua_isinteger(L, -1)) {
                lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -1));
            } else {
                char buf[64];
                format_float(lua_tonumber(L, -1), buf, sizeof buf);
                lua_pushstring(L, buf);
            }
        } else {
            luaL_error(L, "yaml.encode: %s has a %s key, which YAML (as sbot writes it) cannot represent",
                       path, lua_typename(L, kt));
        }
        lua_pushvalue(L, -1);
        if (lua_rawget(L, keys) != LUA_TNIL)
            luaL_error(L, "yaml.encode: %s has the key \"%s\" twice (as a number and as a string)", path,
                       lua_tostring(L, -2));
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, keys);
        count++;
    }
    yaml_event_t ev;
    if (count == 0) {
        int ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_MAPPING_STYLE);
        emit(e, &ev, ok, path);
        yaml_mapping_end_event_initialize(&ev);
        emit(e, &ev, 1, path);
        lua_pop(L, 1);
        return;
    }
    struct kv *list = lua_newuserdatauv(L, count * sizeof *list, 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, keys)) {
        lua_pop(L, 1);
        list[k].s = lua_tolstring(L, -1, &list[k].n); /* anchored in `keys` */
        k++;
    }
    qsort(list, count, sizeof *list, cmp_keys);
    int ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    emit(e, &ev, ok, path);
    for (size_t i = 0; i < count; i++) {
        const char *sub = lua_pushfstring(L, "%s.%s", path, list[i].s);
        emit_string(e, list[i].s, list[i].n, sub);
        lua_pushlstring(L, list[i].s, list[i].n);
        lua_rawget(L, keys);       /* the original key */
        lua_rawget(L, t);          /* its value */
        encode_value(e, lua_gettop(L), sub, depth + 1);
        lua_pop(L, 2);
    }
    yaml_mapping_end_event_initialize(&ev);
    emit(e, &ev, 1, path);
    lua_pop(L, 2); /* list, keys */
}

static void encode_table(struct enc *e, int t, const char *path, int depth)
{
    lua_State *L = e->L;
    if (depth > MAX_DEPTH)
        luaL_error(L, "yaml.encode: %s is nested too deeply", path);
    lua_pushvalue(L, t);
    if (lua_rawget(L, e->seen) != LUA_TNIL)
        luaL_error(L, "yaml.encode: %s refers to itself (cycle)", path);
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->seen);
    luaL_checkstack(L, 16, "yaml.encode");

    /* a sequence: marked as an array, or a non-empty 1..n sequence */
    int marked = is_array_marked(L, t);
    lua_Integer n = 0, count = 0;
    int sequence = 1;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            if (lua_tointeger(L, -1) > n)
                n = lua_tointeger(L, -1);
            count++;
        } else {
            if (marked) {
                lua_pushvalue(L, -1);
                luaL_error(L, "yaml.encode: %s is an array with a non-integer key %s", path,
                           luaL_tolstring(L, -1, NULL));
            }
            sequence = 0;
        }
    }
    yaml_event_t ev;
    if (marked || (sequence && count > 0 && count == n)) {
        int ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                      n ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
        emit(e, &ev, ok, path);
        for (lua_Integer i = 1; i <= n; i++) {
            const char *sub = lua_pushfstring(L, "%s[%I]", path, (LUAI_UACINT)i);
            lua_rawgeti(L, t, i);
            encode_value(e, lua_gettop(L), sub, depth + 1);
            lua_pop(L, 2);
        }
        yaml_sequence_end_event_initialize(&ev);
        emit(e, &ev, 1, path);
    } else {
        encode_map(e, t, path, depth);
    }
    lua_pushvalue(L, t);
    lua_pushnil(L);
    lua_rawset(L, e->seen);
}

static void encode_value(struct enc *e, int idx, const char *path, int depth)
{
    lua_State *L = e->L;
    idx = lua_absindex(L, idx);
    if (sbot_is_secret(L, idx)) {
        if (e->secrets == SECRETS_ERROR)
            luaL_error(L, "yaml.encode: %s is a secret; pass {secrets = \"reveal\"} to write its value "
                          "or {secrets = \"redact\"} to write <redacted>", path);
        if (e->secrets == SECRETS_REDACT) {
            emit_string(e, "<redacted>", 10, path);
            return;
        }
        lua_getfield(L, idx, "reveal");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (!s)
            luaL_error(L, "yaml.encode: %s: the secret's reveal() gave no string", path);
        emit_string(e, s, n, path);
        lua_pop(L, 1);
        return;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        emit_plain(e, "null", path);
        return;
    case LUA_TBOOLEAN:
        emit_plain(e, lua_toboolean(L, idx) ? "true" : "false", path);
        return;
    case LUA_TNUMBER: {
        char buf[64];
        if (lua_isinteger(L, idx))
            snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        else
            format_float(lua_tonumber(L, idx), buf, sizeof buf);
        emit_plain(e, buf, path);
        return;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        emit_string(e, s, n, path);
        return;
    }
    case LUA_TLIGHTUSERDATA:
        if (is_null(L, idx)) {
            emit_plain(e, "null", path);
            return;
        }
        break;
    case LUA_TTABLE:
        encode_table(e, idx, path, depth);
        return;
    default:
        break;
    }
    luaL_error(L, "yaml.encode: %s is a %s, which YAML cannot represent", path, luaL_typename(L, idx));
}

/* encode(value, opts) / encode_all(list, opts) */
static int encode_stream(lua_State *L, int all)
{
    static const char *const policies[] = {"error", "reveal", "redact", NULL};
    lua_settop(L, 2);
    if (all)
        luaL_checktype(L, 1, LUA_TTABLE);
    enum secrets_policy secrets = SECRETS_ERROR;
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "secrets") != 0)
                return luaL_error(L, "yaml.encode: unknown option '%s' (expected secrets)", k);
            lua_pop(L, 1);
        }
        lua_getfield(L, 2, "secrets");
        secrets = (enum secrets_policy)luaL_checkoption(L, -1, "error", policies);
        lua_pop(L, 1);
    }
    lua_newtable(L); /* 3: seen */
    struct box *box = new_box(L);
    if (!yaml_emitter_initialize(&box->emitter))
        return luaL_error(L, "yaml.encode: out of memory");
    box->has_emitter = 1;
    yaml_emitter_set_output(&box->emitter, write_handler, box);
    yaml_emitter_set_unicode(&box->emitter, 1);
    yaml_emitter_set_width(&box->emitter, -1);
    yaml_emitter_set_indent(&box->emitter, 2);
    yaml_emitter_set_break(&box->emitter, YAML_LN_BREAK);
    struct enc e = {L, box, secrets, 3};
    yaml_event_t ev;
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    emit(&e, &ev, ok, "value");
    lua_Integer ndocs = all ? (lua_Integer)lua_rawlen(L, 1) : 1;
    for (lua_Integer i = 1; i <= ndocs; i++) {
        ok = yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, !all);
        emit(&e, &ev, ok, "value");
        if (all) {
            const char *path = lua_pushfstring(L, "value[%I]", (LUAI_UACINT)i);
            lua_rawgeti(L, 1, i);
            encode_value(&e, lua_gettop(L), path, 0);
            lua_pop(L, 2);
        } else {
            encode_value(&e, 1, "value", 0);
        }
        ok = yaml_document_end_event_initialize(&ev, 1);
        emit(&e, &ev, ok, "value");
    }
    ok = yaml_stream_end_event_initialize(&ev);
    emit(&e, &ev, ok, "value");
    if (!yaml_emitter_flush(&box->emitter))
        return luaL_error(L, "yaml.encode: cannot write the output");
    lua_pushlstring(L, box->out ? box->out : "", box->out_len);
    return 1;
}

static int l_encode(lua_State *L) { return encode_stream(L, 0); }
static int l_encode_all(lua_State *L) { return encode_stream(L, 1); }

/* ---- C API (engine/sbot.h) ------------------------------------------------ */

int sbot_yaml_decode(lua_State *L, const char *text, size_t len, const char *source)
{
    lua_pushlstring(L, text, len);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, source ? source : "yaml");
    lua_setfield(L, -2, "source");
    return sbot_call_api(L, l_decode, 2);
}

int sbot_yaml_encode(lua_State *L, int value, const char *secrets)
{
    value = lua_absindex(L, value);
    lua_pushvalue(L, value);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, secrets ? secrets : "error");
    lua_setfield(L, -2, "secrets");
    return sbot_call_api(L, l_encode, 2);
}

int luaopen_sbot_yaml(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"decode", l_decode},
        {"decode_all", l_decode_all},
        {"encode", l_encode},
        {"encode_all", l_encode_all},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
