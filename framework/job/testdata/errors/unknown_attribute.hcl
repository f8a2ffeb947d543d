plugins = "/opt/ferry"
source      { contrl = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
limits {
  max_downtme = "50ms"
  bandwith    = "1GiB/s"
}
source = { control = "x" }
