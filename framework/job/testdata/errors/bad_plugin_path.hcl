plugin_path = ["/opt/kvzero/bin", "", "plugins"]
source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
limits { max_passes = 0 }
