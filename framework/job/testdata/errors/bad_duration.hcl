source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" {
  listen          = "127.0.0.1:7070"
  connect_timeout = "1m 30s"
}
hint "balloon" {
  deadline = "-300ms"
}
limits {
  max_downtime = "50"
}
