source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }

# Durations reach the VMMs in whole milliseconds: these would arrive as 0,
# the engine's default, without a word.
limits {
  max_downtime       = "500us"
  switchover_timeout = "999us"
  stall_timeout      = "500ms"
}
