source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tpc" { listen = "127.0.0.1:7070" }
hint "ballon" {}
hint "cmma" {}
