# A block given twice is reported, and so are the mistakes inside it.
source      { control = "/run/ferry/src.sock" }
source {
  control = 7
  port    = 1
}
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
transport "tcp" { streams = "many" }
hint "balloon" {}
hint "balloon" { chunk = "lots" }
limits { max_passes = 3 }
limits { max_passes = 0 }
security { encryption = false }
security { bogus = 1 }
