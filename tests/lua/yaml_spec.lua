local yaml = require "sbot.yaml"
local json = require "sbot.json"
local secret = require "sbot.secret"
local gen = require "yamlgen"

-- The shapes the OpenShift component renders (install-config.yaml and
-- agent-config.yaml of the agent-based installer), with the values that
-- trip YAML writers: MACs, IPs, a JSON pull secret, a PEM bundle.
local function install_config()
  return {
    apiVersion = "v1",
    baseDomain = "lab.example.com",
    metadata = { name = "ocp" },
    compute = json.array { { name = "worker", replicas = 0, architecture = "amd64" } },
    controlPlane = { name = "master", replicas = 3, architecture = "amd64" },
    networking = {
      networkType = "OVNKubernetes",
      machineNetwork = json.array { { cidr = "10.0.0.0/16" } },
      clusterNetwork = json.array { { cidr = "10.128.0.0/14", hostPrefix = 23 } },
      serviceNetwork = json.array { "172.30.0.0/16" },
    },
    platform = { baremetal = { apiVIPs = json.array { "10.0.0.5" }, ingressVIPs = json.array { "10.0.0.6" } } },
    pullSecret = '{"auths":{"quay.io":{"auth":"dXNlcjpwYXNz","email":"a@b.c"}}}',
    sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk user@host",
    additionalTrustBundle = "-----BEGIN CERTIFICATE-----\nMIIB\nAbC=\n-----END CERTIFICATE-----\n",
    publish = "External",
  }
end

local function agent_config()
  local hosts = json.array {}
  for i = 1, 3 do
    hosts[i] = {
      hostname = "r630-0" .. i,
      role = "master",
      interfaces = json.array { { name = "eno1", macAddress = "52:54:00:12:34:5" .. i } },
      rootDeviceHints = { deviceName = "/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-iqn.2005-10.org.freenas.ctl:r630-0"
        .. i .. ".openshift4168-lun-0" },
      networkConfig = {
        interfaces = json.array { { name = "eno1", type = "ethernet", state = "up",
          ["mac-address"] = "52:54:00:12:34:5" .. i,
          ipv4 = { enabled = true, dhcp = false,
            address = json.array { { ip = "10.0.0.1" .. i, ["prefix-length"] = 16 } } } } },
        ["dns-resolver"] = { config = { server = json.array { "10.0.0.1" } } },
        routes = { config = json.array { { destination = "0.0.0.0/0", ["next-hop-address"] = "10.0.0.1",
          ["next-hop-interface"] = "eno1" } } },
      },
    }
  end
  return { apiVersion = "v1beta1", kind = "AgentConfig", metadata = { name = "ocp" },
    rendezvousIP = "10.0.0.11", hosts = hosts }
end

describe("sbot.yaml", function()
  describe("decode", function()
    it("resolves plain scalars with the YAML 1.2 core schema; quoted ones stay strings", function()
      local v = assert(yaml.decode([[
n1: ~
n2: null
n3:
b1: true
b2: False
i1: 42
i2: -7
i3: 0o17
i4: 0x1F
f1: 1.5
f2: 1e3
f3: .inf
f4: -.Inf
s1: yes
s2: on
s3: "42"
s4: '0755'
s5: 0755x
s6: |
  two
  lines
s7: >-
  folded
  text
]]))
      assert.are.equal(json.null, v.n1)
      assert.are.equal(json.null, v.n2)
      assert.are.equal(json.null, v.n3)
      assert.are.equal(true, v.b1)
      assert.are.equal(false, v.b2)
      assert.are.equal(42, v.i1); assert.are.equal("integer", math.type(v.i1))
      assert.are.equal(-7, v.i2)
      assert.are.equal(15, v.i3)
      assert.are.equal(31, v.i4)
      assert.are.equal(1.5, v.f1)
      assert.are.equal(1000.0, v.f2); assert.are.equal("float", math.type(v.f2))
      assert.are.equal(math.huge, v.f3)
      assert.are.equal(-math.huge, v.f4)
      assert.are.equal("yes", v.s1)
      assert.are.equal("on", v.s2)
      assert.are.equal("42", v.s3)
      assert.are.equal("0755", v.s4)
      assert.are.equal("0755x", v.s5)
      assert.are.equal("two\nlines\n", v.s6)
      assert.are.equal("folded text", v.s7)
      assert.is_true(yaml.decode(".nan") ~= yaml.decode(".nan")) -- NaN
    end)

    it("takes mapping keys as their text, marks sequences as JSON arrays", function()
      local v = assert(yaml.decode("1: a\ntrue: b\n~: c\nlist: []\nmap: {}\nseq: [1, [], {}]\n"))
      assert.are.equal("a", v["1"])
      assert.are.equal("b", v["true"])
      assert.are.equal("c", v["~"])
      assert.is_true(json.is_array(v.list))
      assert.is_false(json.is_array(v.map))
      assert.are.equal('{"1":"a","list":[],"map":{},"seq":[1,[],{}],"true":"b","~":"c"}', json.encode(v))
    end)

    it("honours the standard tags and refuses others, naming line and column", function()
      local v = assert(yaml.decode("a: !!str 12\nb: !!int '12'\nc: !!float 1\nd: !!bool 'true'\ne: ! 12\n"))
      assert.are.equal("12", v.a)
      assert.are.equal(12, v.b)
      assert.are.equal("float", math.type(v.c))
      assert.are.equal(true, v.d)
      assert.are.equal("12", v.e)
      local r, err = yaml.decode("a: 1\nb: !!binary aGk=\n")
      assert.is_nil(r)
      assert.are.equal("yaml: line 2 column 4: unsupported tag tag:yaml.org,2002:binary", err)
      r, err = yaml.decode("x: !!int abc\n")
      assert.is_nil(r)
      assert.are.equal('yaml: line 1 column 4: !!int: "abc" is not an integer', err)
      r, err = yaml.decode("x: !custom {a: 1}\n")
      assert.are.equal("yaml: line 1 column 4: unsupported tag !custom on a mapping", err)
    end)

    it("reports syntax errors with line, column and what libyaml was parsing", function()
      local r, err = yaml.decode("a: 1\nb: [1, 2\nc: 3\n", { source = "install-config.yaml" })
      assert.is_nil(r)
      assert.are.equal("install-config.yaml: line 3 column 2: did not find expected ',' or ']' "
        .. "(while parsing a flow sequence at line 2 column 4)", err)
      r, err = yaml.decode("a:\n  b: 1\n c: 2\n")
      assert.is_nil(r)
      assert.matches("^yaml: line 3 column 2: did not find expected key", err)
      r, err = yaml.decode("key: value: other\n")
      assert.are.equal("yaml: line 1 column 11: mapping values are not allowed in this context", err)
      r, err = yaml.decode("a: \"unterminated\n")
      assert.matches("^yaml: line 2 column 1: found unexpected end of stream", err)
    end)

    it("names the line and column of invalid UTF-8", function()
      local r, err = yaml.decode("a: 1\nb: x\xff\n")
      assert.is_nil(r)
      assert.are.equal("yaml: line 2 column 5: invalid leading UTF-8 octet (byte 0xFF at offset 9)", err)
    end)

    it("refuses duplicate keys, naming the second one", function()
      local r, err = yaml.decode("hosts:\n- hostname: a\n  role: master\n  role: worker\n")
      assert.is_nil(r)
      assert.are.equal('yaml: line 4 column 3: duplicate key "role" in a mapping', err)
    end)

    it("resolves anchors and aliases (one shared table) and << merge keys", function()
      local v = assert(yaml.decode([[
base: &b {role: master, disk: /dev/sda}
net: &n [eno1, eno2]
h1: {<<: *b, name: a}
h2:
  <<: [*b, {role: worker, extra: 1}]
  role: arbiter
nics: *n
s: &s hello
t: *s
]]))
      assert.are.same({ role = "master", disk = "/dev/sda", name = "a" }, v.h1)
      assert.are.same({ role = "arbiter", disk = "/dev/sda", extra = 1 }, v.h2)
      assert.are.equal(v.net, v.nics) -- the same table
      assert.are.equal("hello", v.t)
      local r, err = yaml.decode("a: *nope\n")
      assert.is_nil(r)
      assert.are.equal("yaml: line 1 column 4: alias *nope refers to no anchor defined before it", err)
      r, err = yaml.decode("a: &x [1, *x]\n")
      assert.is_nil(r)
      assert.are.equal("yaml: line 1 column 11: alias *x refers to no anchor defined before it", err)
      r, err = yaml.decode("a: {<<: 5}\n")
      assert.are.equal("yaml: line 1 column 9: the value of a << merge key must be a mapping or a "
        .. "sequence of mappings", err)
    end)

    it("refuses an alias bomb instead of building it", function()
      local lines = { "a0: &a0 [x, x, x, x, x, x, x, x, x]" }
      for i = 1, 9 do
        local refs = {}
        for k = 1, 9 do refs[k] = "*a" .. (i - 1) end
        lines[#lines + 1] = ("a%d: &a%d [%s]"):format(i, i, table.concat(refs, ", "))
      end
      local r, err = yaml.decode(table.concat(lines, "\n") .. "\n")
      assert.is_nil(r)
      assert.matches("aliases expand to more than 1000000 nodes", err)
    end)

    it("reads one document; decode_all reads a stream", function()
      local r, err = yaml.decode("a: 1\n---\nb: 2\n")
      assert.is_nil(r)
      assert.are.equal("yaml: line 2 column 1: a second document in the stream (yaml.decode reads one; "
        .. "use yaml.decode_all for several)", err)
      local docs = assert(yaml.decode_all("a: 1\n---\nb: 2\n--- ~\n"))
      assert.are.same({ { a = 1 }, { b = 2 }, json.null }, docs)
      assert.is_true(json.is_array(docs))
      assert.are.equal(json.null, yaml.decode(""))
      assert.are.equal(json.null, yaml.decode("# only a comment\n"))
      assert.are.equal(0, #assert(yaml.decode_all("")))
      assert.are.equal(yaml.null, json.null)
    end)

    it("raises on misuse", function()
      assert.has_error(function() yaml.decode(nil) end)
      assert.has_error(function() yaml.decode("a: 1", { sauce = "x" }) end,
        "yaml.decode: unknown option 'sauce' (expected source)")
      assert.has_error(function() yaml.decode("a: 1", { source = 5 }) end,
        "yaml.decode: opts.source must be a string")
    end)
  end)

  describe("encode", function()
    it("writes block style with sorted keys and explicit empty collections", function()
      assert.are.equal("a: 1\nb:\n- x\n- true\n- null\nc: []\nd: {}\n",
        yaml.encode { b = { "x", true, json.null }, a = 1, c = json.array {}, d = {} })
      assert.are.equal("[]\n", yaml.encode(json.array {}))
      assert.are.equal("{}\n", yaml.encode({}))
      assert.are.equal("- 1\n- null\n- 3\n", yaml.encode(json.array { 1, nil, 3 }))
    end)

    it("quotes every string YAML 1.1 or 1.2 would read as something else", function()
      local misread = { "on", "On", "OFF", "yes", "no", "y", "N", "true", "False", "null", "~", "",
        "0755", "0o17", "0x1F", "0b101", "1e3", "1.0", ".5", "+1", "-1", "1_000", "12:30",
        "52:54:00:12:34:56", ".inf", "-.Inf", ".NaN", "2001-12-14", "<<", "=",
        " lead", "trail ", "a: b", "a:", "#x", "a #b", "- x", "-", "---", "...", "? x",
        "[x]", "{x}", "&a", "*a", "!x", "|", ">", "'", "\"", "%x", "@x", "`x", ", x" }
      for _, s in ipairs(misread) do
        local text = yaml.encode { v = s }
        assert.is_nil(text:match("^v: " .. s:gsub("%p", "%%%0") .. "\n$"), "written plain: " .. text)
        assert.are.equal(s, yaml.decode(text).v, "round trip of " .. text)
      end
      -- what needs no quotes stays readable
      for _, s in ipairs { "ok", "10.0.0.0/16", "192.168.1.10", "a:b", "a#b", "/dev/disk/by-path/x",
        "ssh-ed25519 AAAA user@host", "OVNKubernetes", "üñí" } do
        assert.are.equal("v: " .. s .. "\n", yaml.encode { v = s })
      end
      -- PyYAML (YAML 1.1, like the installer's Go reader) reads them all back as the same strings
      local doc = {}
      for i, s in ipairs(misread) do doc["k" .. i] = s end
      local got = assert(gen.pyyaml_load_all(yaml.encode(doc)))
      assert.are.same(doc, got[1])
    end)

    it("writes multi-line strings as literal blocks that round-trip", function()
      assert.are.equal("pem: |\n  -----BEGIN-----\n  AbC=\n  -----END-----\n",
        yaml.encode { pem = "-----BEGIN-----\nAbC=\n-----END-----\n" })
      for _, s in ipairs { "a\nb", "a\nb\n\n", "\na", " a\nb", "a \nb", "a\r\nb", "a\n\tb", "\n" } do
        assert.are.equal(s, yaml.decode(yaml.encode { v = s }).v)
      end
    end)

    it("keeps integers and floats apart", function()
      assert.are.equal("1\n", yaml.encode(1))
      assert.are.equal("1.0\n", yaml.encode(1.0))
      assert.are.equal("0.1\n", yaml.encode(0.1))
      assert.are.equal("-0.0\n", yaml.encode(-0.0))
      assert.are.equal("1.0e+300\n", yaml.encode(1e300))
      assert.are.equal(".inf\n", yaml.encode(math.huge))
      assert.are.equal("-.inf\n", yaml.encode(-math.huge))
      assert.are.equal(".nan\n", yaml.encode(0 / 0))
      for _, n in ipairs { 0, -1, math.maxinteger, math.mininteger, 1.0, 0.1, 1e-300, 2 ^ 63, 123.456 } do
        local back = yaml.decode(yaml.encode(n))
        assert.are.equal(n, back)
        assert.are.equal(math.type(n), math.type(back))
      end
    end)

    it("writes keys as strings, quoted when needed", function()
      assert.are.equal("'1': a\n'on': b\n", yaml.encode { [1] = "a", on = "b", n = nil })
      assert.has_error(function() yaml.encode { [1] = "a", ["1"] = "b" } end,
        'yaml.encode: value has the key "1" twice (as a number and as a string)')
      assert.has_error(function() yaml.encode { [true] = 1 } end,
        "yaml.encode: value has a boolean key, which YAML (as sbot writes it) cannot represent")
    end)

    it("refuses secrets unless told to reveal or redact them", function()
      local t = { pullSecret = secret.new('{"auths":{"x":{"auth":"c2VjcmV0"}}}') }
      assert.has_error(function() yaml.encode(t) end,
        'yaml.encode: value.pullSecret is a secret; pass {secrets = "reveal"} to write its value or '
        .. '{secrets = "redact"} to write <redacted>')
      assert.are.equal("pullSecret: '{\"auths\":{\"x\":{\"auth\":\"c2VjcmV0\"}}}'\n",
        yaml.encode(t, { secrets = "reveal" }))
      assert.are.equal("pullSecret: <redacted>\n", yaml.encode(t, { secrets = "redact" }))
      assert.has_error(function() yaml.encode(t, { secrets = "maybe" }) end)
      assert.has_error(function() yaml.encode(t, { colour = 1 }) end,
        "yaml.encode: unknown option 'colour' (expected secrets)")
    end)

    it("raises on what YAML cannot hold, naming the path", function()
      assert.has_error(function() yaml.encode { a = { b = print } } end,
        "yaml.encode: value.a.b is a function, which YAML cannot represent")
      assert.has_error(function() yaml.encode { a = json.array { "x", "\xff" } } end,
        "yaml.encode: value.a[2] is not valid UTF-8 text, which YAML cannot represent")
      local c = {}; c.self = c
      assert.has_error(function() yaml.encode(c) end, "yaml.encode: value.self refers to itself (cycle)")
      local a = json.array { 1 }; a.x = 2
      assert.has_error(function() yaml.encode { a = a } end,
        "yaml.encode: value.a is an array with a non-integer key x")
      -- a shared (not cyclic) table is fine
      local s = { 1 }
      assert.are.equal("a:\n- 1\nb:\n- 1\n", yaml.encode { a = s, b = s })
    end)

    it("encode_all writes a stream decode_all reads back", function()
      local text = yaml.encode_all { { a = 1 }, json.array { "x" } }
      assert.are.equal("---\na: 1\n---\n- x\n", text)
      assert.are.same({ { a = 1 }, { "x" } }, yaml.decode_all(text))
    end)
  end)

  describe("round trips", function()
    for name, build in pairs { ["install-config.yaml"] = install_config, ["agent-config.yaml"] = agent_config } do
      it("of a real " .. name .. " shape, also through PyYAML", function()
        local t = build()
        local text = yaml.encode(t)
        local back = assert(yaml.decode(text, { source = name }))
        assert.is_true(gen.same(t, back))
        assert.are.equal(text, yaml.encode(back))
        assert.are.equal(json.encode(t), json.encode(back))
        local py = assert(gen.pyyaml_load_all(text))
        assert.is_true(gen.same_value(t, py[1]))
      end)
    end

    it("of MAC addresses PyYAML would otherwise read as sexagesimal numbers", function()
      local text = yaml.encode(agent_config())
      assert.matches("macAddress: '52:54:00:12:34:51'", text, 1, true)
      assert.matches("rendezvousIP: 10.0.0.11\n", text, 1, true)
    end)

    it("of random documents (a few seeds; tests/fuzz/yaml_roundtrip.lua runs thousands)", function()
      local docs = {}
      for seed = 1, 150 do
        local r = gen.rng(seed)
        local v = gen.random_value(r, 0, { special = seed % 5 == 0 })
        local text = yaml.encode(v)
        local back, err = yaml.decode(text)
        assert(back ~= nil, ("seed %d: %s\n%s"):format(seed, tostring(err), text))
        local ok, why = gen.same(v, back)
        assert(ok, ("seed %d: %s\n%s"):format(seed, tostring(why), text))
        assert.are.equal(text, yaml.encode(back))
        if seed % 5 ~= 0 then docs[#docs + 1] = v end
      end
      local py = assert(gen.pyyaml_load_all(yaml.encode_all(docs)))
      for i, v in ipairs(docs) do
        local ok, why = gen.same_value(v, py[i])
        assert(ok, ("document %d: %s\n%s"):format(i, tostring(why), yaml.encode(v)))
      end
    end)
  end)
end)
