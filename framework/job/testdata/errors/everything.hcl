# One file with a mistake in every part: all of them are reported at once.
plugin_dir = ["plugins"]
source      { control = "" }
destination { socket = "/run/ferry/dst.sock" }
transport "tcp" {
  listen          = "127.0.0.1:7070"
  streams         = "many"
  compress        = "lz4"
  connect_timeout = "soon"
}
hint "balloon" { chunk = "lots" }
hint "pagemap" {}
hint "pagemap" {}
limits {
  max_downtime = "1h"
  bandwidth    = "fast"
  max_passes   = 1001
}
extra {}
