# A migration that must not saturate the link: the transport may use at
# most 100 MB/s (800 Mbit/s), and after 10 passes the guest is stopped and
# the rest copied, however much is still dirty.

source {
  control = "/run/ferry/src.sock"
}

destination {
  control = "/run/ferry/dst.sock"
}

transport "tcp" {
  listen          = "10.0.0.2:7070"
  streams         = 1
  compress        = "lz4"
  connect_timeout = "30s"
}

limits {
  max_downtime = "500ms"
  bandwidth    = "100MB/s"
  max_passes   = 10
}
