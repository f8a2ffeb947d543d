# The local demo (`make demo`): both VMMs on this machine, the pages over
# loopback TCP in two lz4-compressed streams.

source {
  control = "/tmp/ferry-demo/src.sock"
}

destination {
  control = "/tmp/ferry-demo/dst.sock"
}

transport "tcp" {
  listen   = "127.0.0.1:7070"
  streams  = 2
  compress = "lz4"
}

limits {
  max_downtime = "50ms"
}
