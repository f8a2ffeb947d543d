# A complete Ferry migration job: every block and argument, with its
# default where it has one. docs/JOBS.md describes the format.

# Where the plugin binaries are. Default: plugins/ beside the migrate binary.
# plugin_dir = "/usr/lib/ferry/plugins"

# More directories holding plugin binaries (a third party's), searched in
# order before plugin_dir. Default: none.
# plugin_path = ["/opt/acme/ferry-plugins"]

# The VMM the guest leaves: the path of its control socket.
source {
  control = "/run/ferry/src.sock"
}

# The VMM the guest moves to.
destination {
  control = "/run/ferry/dst.sock"
}

# The transport plugin that moves the pages, and its configuration.
# The arguments are the plugin's own; these are the TCP transport's.
transport "tcp" {
  listen          = "127.0.0.1:7070" # the destination listens here, the source dials it
  # connect       = "203.0.113.7:7070" # what the source dials when it differs (NAT, a proxy); default: listen
  streams         = 2                # parallel TCP connections, 1..16
  compress        = "lz4"            # or "none"
  connect_timeout = "10s"            # how long the source keeps trying to connect
}

# Hint providers, any number, each name once. The arguments are the
# provider's own, plus deadline: how long the engine waits for its hints
# in each pass (default "300ms").
hint "balloon" {
  deadline = "300ms"
}
hint "pagemap" {
  method = "auto" # or "seek", "pagemap"
}

# Limits of the migration; the block and each argument are optional.
limits {
  max_downtime       = "50ms" # longest pause of the guest at switch-over (default "300ms")
  bandwidth          = "0"    # bytes per second, "0" = unlimited (default), e.g. "1GiB/s"
  max_passes         = 30     # pre-copy passes before stop-and-copy is forced (default 30)
  switchover_timeout = "5s"   # longest switch-over; the wait for RUNNING after COMMIT; how long a fresh
                               # session may stay silent before its HELLO or RESUME (docs/JOBS.md)
  incoming_timeout   = "2m"   # how long the destination waits for its source
  postcopy           = "off"  # or "auto", "always"
  reconnect_timeout  = "10m"  # post-copy: how long both sides try to reconnect
  stall_timeout      = "30s"  # a session moving nothing that long fails before COMMIT (the guest runs on
                               # at the source); in post-copy it is reconnected (docs/HANDOVER.md)
}

# Trust: by default migrate mints one-time keys for the two sides and the
# stream is encrypted (TLS 1.3). Name all four files to use your own
# certificates instead; ca_file is optional.
security {
  encryption = true # false: only the handshake is authenticated (trusted links)
  # ca_file          = "/etc/ferry/ca.pem"
  # source_cert      = "/etc/ferry/src.pem"
  # source_key       = "/etc/ferry/src.key"
  # destination_cert = "/etc/ferry/dst.pem"
  # destination_key  = "/etc/ferry/dst.key"
}
