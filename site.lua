return {
  servers = {
    { id = "r630-01" },
    { id = "r630-02", components = { disk = { fail_apply_on = "bucket" } } },
    { id = "r630-03" },
  },
  components = {
    bucket = { state_file = "/{id}-bucket.json", want = { bucket = "images" } },
    disk = { state_file = "/{id}-disk.json", want = { bucket = "images", name = "vol" } },
    boot = { state_file = "/{id}-boot.json" },
  },
}
