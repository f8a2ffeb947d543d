source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" {
  chunk = "4 Mb"
}
hint "pagemap" {
  chunk = "1.5B"
}
