source      { control = ["/run/ferry/src.sock"] }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" {
  listen  = { host = "127.0.0.1", port = 7070 }
  streams = "two"
}
hint "balloon" {
  enabled = "sometimes"
}
limits {
  max_passes = 2.5
}
