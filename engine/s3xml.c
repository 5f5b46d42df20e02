/* sbot.s3xml: S3 XML documents to plain Lua tables, with expat.
 *
 *   s3xml.parse(body [, list_names]) -> root_name, table | nil, message
 *
 * An element with child elements becomes a table keyed by child name; an
 * element without children becomes its text (a string, "" when empty).
 * Names in the list set (default: the repeated elements of S3's answers:
 * Bucket, Contents, CommonPrefixes, Version, DeleteMarker, Deleted, Error,
 * Part, Upload) always become arrays, even with one entry; any other name
 * seen twice under the same parent also becomes an array, so nothing is
 * dropped. Namespace prefixes are removed, attributes ignored, unknown
 * elements kept as they are: the callers pick what they know.
 *
 * The expat parser lives in a userdata whose __gc frees it, so a Lua error
 * while building tables (out of memory) leaks nothing. */
#include <string.h>

#include <expat.h>

#include "sbot.h"

#define MAX_DEPTH 64
#define PARSER_MT "sbot.s3xml.parser"

static const char *default_lists[] = {
    "Bucket", "Contents", "CommonPrefixes", "Version", "DeleteMarker",
    "Deleted", "Error", "Part", "Upload", NULL,
};

struct box {
    XML_Parser parser;
};

struct ctx {
    lua_State *L;
    int lists;      /* index of the list-name set */
    int root;       /* index of the result slot (root table) */
    int depth;      /* open elements */
    int too_deep;
    int base;       /* stack top before the first element */
};

static int box_release(lua_State *L)
{
    struct box *b = luaL_checkudata(L, 1, PARSER_MT);
    if (b->parser) {
        XML_ParserFree(b->parser);
        b->parser = NULL;
    }
    return 0;
}

static const char *local_name(const char *name)
{
    const char *colon = strrchr(name, ':');
    return colon ? colon + 1 : name;
}

/* Stack layout per open element: [name][table][text pieces]. */
static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    struct ctx *c = ud;
    lua_State *L = c->L;
    if (c->too_deep || c->depth >= MAX_DEPTH) {
        c->too_deep++;
        return;
    }
    luaL_checkstack(L, 4, "s3xml");
    lua_pushstring(L, local_name(name));
    lua_newtable(L);
    lua_newtable(L);
    c->depth++;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct ctx *c = ud;
    if (c->depth == 0 || c->too_deep) return;
    lua_State *L = c->L;
    lua_pushlstring(L, s, (size_t)len);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

static int is_list(lua_State *L, int lists, int name)
{
    lua_pushvalue(L, name);
    int r = lua_rawget(L, lists) != LUA_TNIL;
    lua_pop(L, 1);
    return r;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    (void)name;
    struct ctx *c = ud;
    lua_State *L = c->L;
    if (c->too_deep) {
        c->too_deep--;
        return;
    }
    int top = lua_gettop(L);
    int nm = top - 2, tbl = top - 1, pieces = top;
    /* Value: the table when it has children, else the concatenated text. */
    lua_pushnil(L);
    int has_children = lua_next(L, tbl) != 0;
    if (has_children) lua_pop(L, 2);
    if (has_children) {
        lua_pushvalue(L, tbl);
    } else {
        luaL_Buffer b;
        size_t n = lua_rawlen(L, pieces);
        luaL_buffinit(L, &b);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, pieces, (lua_Integer)i);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
    }
    int val = lua_gettop(L);
    c->depth--;
    if (c->depth == 0) {
        /* the root: keep name and value in the result slots */
        lua_pushvalue(L, nm);
        lua_pushvalue(L, val);
        lua_replace(L, c->root + 1);
        lua_replace(L, c->root);
        lua_settop(L, nm - 1);
        return;
    }
    int parent = nm - 2; /* the parent's table */
    lua_pushvalue(L, nm);
    int existing = lua_rawget(L, parent);
    if (is_list(L, c->lists, nm)) {
        if (existing != LUA_TTABLE || !lua_getmetatable(L, -1)) {
            /* a fresh array, marked by the list set itself as metatable */
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, c->lists);
            lua_setmetatable(L, -2);
            lua_pushvalue(L, nm);
            lua_pushvalue(L, -2);
            lua_rawset(L, parent);
        } else {
            lua_pop(L, 1); /* the metatable */
        }
        lua_pushvalue(L, val);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    } else if (existing == LUA_TNIL) {
        lua_pushvalue(L, nm);
        lua_pushvalue(L, val);
        lua_rawset(L, parent);
    } else {
        /* Repeated name that is not a known list: turn it into an array. */
        int is_array = 0;
        if (lua_type(L, -1) == LUA_TTABLE && lua_getmetatable(L, -1)) {
            is_array = lua_rawequal(L, -1, c->lists + 1);
            lua_pop(L, 1);
        }
        if (!is_array) {
            lua_newtable(L);
            lua_pushvalue(L, c->lists + 1);
            lua_setmetatable(L, -2);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
            lua_remove(L, -2);
            lua_pushvalue(L, nm);
            lua_pushvalue(L, -2);
            lua_rawset(L, parent);
        }
        lua_pushvalue(L, val);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_settop(L, nm - 1);
}

/* Remove the marker metatables (they are only a parse-time tag). */
static void strip_marks(lua_State *L, int idx, int depth)
{
    if (depth > MAX_DEPTH + 2) return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    lua_setmetatable(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_istable(L, -1)) strip_marks(L, -1, depth + 1);
        lua_pop(L, 1);
    }
}

static int l_parse(lua_State *L)
{
    size_t len;
    const char *body = luaL_checklstring(L, 1, &len);
    lua_settop(L, 2);
    /* 3: list-name set (also the array marker); 4: repeated-name marker */
    lua_newtable(L);
    if (lua_istable(L, 2)) {
        size_t n = lua_rawlen(L, 2);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, 2, (lua_Integer)i);
            luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "list names must be strings");
            lua_pushboolean(L, 1);
            lua_rawset(L, 3);
        }
    } else {
        luaL_argcheck(L, lua_isnil(L, 2), 2, "table of element names expected");
        for (const char **p = default_lists; *p; p++) {
            lua_pushboolean(L, 1);
            lua_setfield(L, 3, *p);
        }
    }
    lua_newtable(L);
    /* 5, 6: root name and value; 7: the parser box */
    lua_pushnil(L);
    lua_pushnil(L);
    struct box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->parser = NULL;
    if (luaL_newmetatable(L, PARSER_MT)) {
        lua_pushcfunction(L, box_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, box_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    b->parser = XML_ParserCreate("UTF-8");
    if (!b->parser) return luaL_error(L, "s3xml: out of memory creating the XML parser");

    struct ctx c = {L, 3, 5, 0, 0, 7};
    XML_SetUserData(b->parser, &c);
    XML_SetElementHandler(b->parser, on_start, on_end);
    XML_SetCharacterDataHandler(b->parser, on_text);
    enum XML_Status st = XML_Parse(b->parser, body, (int)len, 1);
    if (st != XML_STATUS_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "XML parse error at line %d column %d: %s",
                        (int)XML_GetCurrentLineNumber(b->parser),
                        (int)XML_GetCurrentColumnNumber(b->parser),
                        XML_ErrorString(XML_GetErrorCode(b->parser)));
        XML_ParserFree(b->parser);
        b->parser = NULL;
        return 2;
    }
    XML_ParserFree(b->parser);
    b->parser = NULL;
    lua_settop(L, 6);
    if (lua_isnil(L, 5)) {
        lua_pushnil(L);
        lua_pushliteral(L, "XML parse error: no root element");
        return 2;
    }
    if (lua_istable(L, 6)) strip_marks(L, 6, 0);
    return 2;
}

/* Escape text for an XML element body or attribute. */
static int l_escape(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': luaL_addstring(&b, "&amp;"); break;
        case '<': luaL_addstring(&b, "&lt;"); break;
        case '>': luaL_addstring(&b, "&gt;"); break;
        case '"': luaL_addstring(&b, "&quot;"); break;
        case '\'': luaL_addstring(&b, "&apos;"); break;
        case '\r': luaL_addstring(&b, "&#13;"); break;
        default: luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

int luaopen_sbot_s3xml(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"parse", l_parse},
        {"escape", l_escape},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
