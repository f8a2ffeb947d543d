source      { control = "/run/ferry/src.sock" }
source      { control = "/run/ferry/other.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
transport "tcp" { listen = "127.0.0.1:7071" }
hint "balloon" {}
hint "balloon" {}
