source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }

limits {
  postcopy          = true
  reconnect_timeout = "48h"
}
