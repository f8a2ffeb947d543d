# Issue 13: a duplicate block hid a type error. Both are reported, and so
# is the type error of the first block.
source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" { enabled = "yes" }
hint "balloon" { chunk = true }
