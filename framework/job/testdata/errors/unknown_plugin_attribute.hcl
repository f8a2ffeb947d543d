source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" {
  listen = "127.0.0.1:7070"
  strems = 4
  tls {
    cert = "x.pem"
  }
}
hint "balloon" {
  dedline = "1s"
}
