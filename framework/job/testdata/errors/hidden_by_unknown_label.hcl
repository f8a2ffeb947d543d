# Issue 13: an unknown hint label hid three errors in another block. The
# label is reported, and so is every mistake of the transport block.
source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
hint "ballon" {}
transport "tcp" {
  streams         = "many"
  compress        = 1
  connect_timeout = "soon"
}
