local json = require "sbot.json"

describe("sbot.json", function()
  it("encodes with sorted keys, null and explicit empty arrays", function()
    assert.are.equal('{"a":[],"b":1,"c":null,"d":{}}',
      json.encode({ b = 1, a = json.array(), c = json.null, d = {} }))
    assert.are.equal("[]", json.encode(json.empty_array))
    assert.are.equal('[1,"x",true]', json.encode({ 1, "x", true }))
  end)

  it("keeps [] and {} apart through a round trip", function()
    local text = '{"a":[],"b":{},"c":[ ],"s":"[]","n":[1,[],{"x":null}]}'
    local v = assert(json.decode(text))
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.are.equal("[]", v.s)
    assert.are.equal(json.null, v.n[3].x)
    assert.are.equal('{"a":[],"b":{},"c":[],"n":[1,[],{"x":null}],"s":"[]"}', json.encode(v))
  end)

  it("tells [] from {} around strings that look like them, and around the sentinels", function()
    -- (texts that broke the old rewrite of [] and {} around cjson: strings, escapes, sentinels)
    local v = assert(json.decode('["a\\"[]", "[ ]", [\n\t ], {"k":"\\\\", "l":[]}, [[]]]'))
    assert.are.equal('a"[]', v[1])
    assert.are.equal("[ ]", v[2])
    assert.is_true(json.is_array(v[3]))
    assert.are.equal(0, #v[3])
    assert.are.equal("\\", v[4].k)
    assert.is_true(json.is_array(v[4].l))
    assert.are.same({}, v[5][1])
    assert.is_true(json.is_array(v[5][1]))
    assert.are.equal('["a\\"[]","[ ]",[],{"k":"\\\\","l":[]},[[]]]', json.encode(v))
    -- text that holds the short sentinel itself (a string of one NUL) keeps it
    v = assert(json.decode('{"nul":["\\u0000"],"empty":[]}'))
    assert.are.same({ "\0" }, v.nul)
    assert.is_true(json.is_array(v.empty))
    assert.are.equal(0, #v.empty)
    -- only one kind of empty container: nothing rewritten, every empty table is that kind
    v = assert(json.decode('[[], {"a":[], "b":[[]]}, "{}"]'))
    assert.is_true(json.is_array(v[1]) and json.is_array(v[2].a) and json.is_array(v[2].b[1]))
    assert.are.equal('[[],{"a":[],"b":[[]]},"{}"]', json.encode(v))
    v = assert(json.decode('[{}, {"a":{}, "b":[{ }]}, "[]"]'))
    assert.is_false(json.is_array(v[1]) or json.is_array(v[2].a) or json.is_array(v[2].b[1]))
    assert.are.equal('[{},{"a":{},"b":[{}]},"[]"]', json.encode(v))
    -- both kinds, fewer {} than []: the {} are the ones rewritten (and the sentinels' own
    -- spelling in the text makes the long ones be used)
    for _, text in ipairs({ '[[],[],[],{},{"k":[]},"{}"]', '[[],[],[],{},{"k":[]},"\\u0000"]',
                            '[{},{},[],{"k":{}},"[]"]' }) do
      assert.are.equal(text, json.encode(assert(json.decode(text))), text)
    end
    v = assert(json.decode('{"\\u0000":0,"a":[],"b":{},"c":{}}'))
    assert.are.equal(0, v["\0"])
    assert.are.equal('{"\\u0000":0,"a":[],"b":{},"c":{}}', json.encode(v))
    -- a top-level empty array and scalars
    assert.is_true(json.is_array(assert(json.decode("[]"))))
    assert.are.equal(5, json.decode("5"))
    assert.are.equal("x", json.decode('"x"'))
  end)

  it("returns nil and a message for invalid JSON", function()
    local v, err = json.decode('{"a":')
    assert.is_nil(v)
    assert.are.equal("invalid JSON: expected a value, found the end of the text at character 6", err)
  end)

  it("raises on values JSON cannot hold, naming the path", function()
    assert.has_error(function() json.encode({ a = { b = 0 / 0 } }) end,
      "json.encode: value.a.b is " .. tostring(0 / 0) .. ", which JSON cannot represent")
    assert.has_error(function() json.encode({ f = print }) end,
      "json.encode: value.f is a function, which JSON cannot represent")
    local t = {}; t.self = t
    assert.has_error(function() json.encode(t) end, "json.encode: value.self refers to itself (cycle)")
  end)

  it("stops a __tojson that keeps returning values with __tojson, naming the path", function()
    local mt = {}
    mt.__tojson = function(self) return self end
    assert.has_error(function() json.encode({ a = { setmetatable({}, mt) } }) end,
      "json.encode: value.a[1] has __tojson results nested too deeply")
    -- a short chain is fine
    local inner = setmetatable({}, { __tojson = function() return "end" end })
    local outer = setmetatable({}, { __tojson = function() return inner end })
    assert.are.equal('["end"]', json.encode({ outer }))
    -- the limit is on a row at one place, not on __tojson objects nested in
    -- each other's results: 150 levels of them encode
    local node_mt = { __tojson = function(self) return { child = self.child } end }
    local root
    for _ = 1, 150 do root = setmetatable({ child = root }, node_mt) end
    assert.are.equal(string.rep('{"child":', 149) .. "{}" .. string.rep("}", 149), json.encode(root))
    -- but each result being written is a C frame: rows of 99 at each of 20
    -- levels (1980 in all) are refused, not left to overflow the C stack
    local function wrap(v, n)
      for _ = 1, n do
        local inner = v
        v = setmetatable({}, { __tojson = function() return inner end })
      end
      return v
    end
    local node = json.null
    for _ = 1, 20 do node = wrap({ c = node }, 99) end
    local ok, err = pcall(json.encode, node)
    assert.is_false(ok)
    assert.matches("^json.encode: value%.c%.c%.c%.c%.c%.c%.c%.c%.c%.c has __tojson results nested too deeply$", err)
  end)

  it("pretty-prints with indent", function()
    assert.are.equal('{\n  "a": [\n    1\n  ]\n}', json.encode({ a = { 1 } }, { indent = true }))
  end)

  it("encodes secret objects as <redacted> when asked (records); a table cannot pass for one", function()
    local secret = require("sbot.secret").new("json-secret-Jk51")
    assert.are.equal('{"k":"<redacted>"}', json.encode({ k = secret }, { secrets = "redact" }))
    -- the type is the core's, not a name any table can carry
    local forged = setmetatable({}, { __name = "sbot.secret", __index = { reveal = function() return "x" end } })
    assert.are.equal('{"k":{}}', json.encode({ k = forged }, { secrets = "reveal" }))
    assert.are.equal('{"k":{}}', json.encode({ k = forged }))
  end)

  it("reveals secrets only when asked (a protocol client's request body), and refuses them unless told", function()
    local secret = require("sbot.secret").new('pa"ss\\word-Jk52')
    local body = { Attributes = { ["Users.2.Password"] = secret }, n = 1 }
    assert.are.equal('{"Attributes":{"Users.2.Password":"pa\\"ss\\\\word-Jk52"},"n":1}',
      json.encode(body, { secrets = "reveal" }))
    -- no option: neither in clear nor as "<redacted>" (a body sent with that
    -- would set the password to "<redacted>"); the caller must say which
    local refused = 'json.encode: value.Attributes.Users.2.Password is a secret, and this JSON was asked to carry '
      .. 'none (secrets = "error", the default): a record or a display encodes with secrets = "redact", a protocol '
      .. 'client that must send it with secrets = "reveal"'
    assert.has_error(function() json.encode(body) end, refused)
    assert.has_error(function() json.encode(body, { indent = true }) end, refused)
    assert.has_error(function() json.encode(body, { secrets = "error" }) end, refused)
    assert.has_error(function() json.encode(body, { secrets = "show" }) end,
      'json.encode: secrets must be "error", "redact" or "reveal", got show')
  end)
end)

describe("sbot.json strings", function()
  it("does not escape slashes and round-trips backslashes", function()
    assert.are.equal('"http://x/a"', json.encode("http://x/a"))
    local s = "a\\/b\\\\/c\"\n\0"
    assert.are.equal(s, json.decode(json.encode(s)))
  end)
end)
