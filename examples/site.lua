-- Example site for examples/local_boot.lua: two R630s, local directories only
-- (relative to the current directory; lock files go to <this dir>/state, runs to ./runs).
-- The iDRAC passwords are secrets: set IDRAC_R630_01_PASSWORD and
-- IDRAC_R630_02_PASSWORD, or put them in examples/secrets/idrac/<id>/password (mode 0600).
return {
  name = "example",
  servers = {
    { id = "r630-01", hostname = "node1.example.test", role = "master",
      idrac = { host = "192.0.2.11", password = "secret:idrac/r630-01:password" },
      macs = { "24:6e:96:00:00:01" } },
    { id = "r630-02", hostname = "node2.example.test", role = "worker",
      idrac = { host = "192.0.2.12", password = "secret:idrac/r630-02:password" },
      macs = { "24:6e:96:00:00:02" } },
  },
  components = {
    scratch_volume = { dir = "example-state/volumes" },
    boot_script = { dir = "example-state/boot", portal = "192.0.2.50:3260" },
  },
  hooks = {
    name_target = function(server) return "ocp-" .. server.id end,
  },
}
