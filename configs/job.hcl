# A complete Ferry migration job: every block and argument, with its
# default where it has one. docs/JOBS.md describes the format.

# Where the plugin binaries are. Default: plugins/ beside the migrate binary.
# plugin_dir = "/usr/lib/ferry/plugins"

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
  listen   = "127.0.0.1:7070" # the destination listens here, the source dials it
  streams  = 2                # parallel TCP connections
  compress = "lz4"            # or "none"
}

# Limits of the migration; the block and each argument are optional.
limits {
  max_downtime = "50ms" # longest pause of the guest at switch-over (default "300ms")
  bandwidth    = "0"    # bytes per second, "0" = unlimited (default), e.g. "1GiB/s"
  max_passes   = 30     # pre-copy passes before stop-and-copy is forced (default 30)
}
