source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "rdma" {
  base  = "16 megs"
  limit = "0x1_0000_0000_0000_0000"
  align = "1000h"
}
