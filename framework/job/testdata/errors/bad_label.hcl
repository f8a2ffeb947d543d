source "vm1" { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport { listen = "127.0.0.1:7070" }
hint "balloon" "fast" {}
hint "../../bin/sh" {}
