# A guest that dirties memory faster than the link moves it: pre-copy
# would never converge. With postcopy = "auto" the source switches to
# post-copy when the estimated downtime stops falling: the guest runs on
# the destination while its remaining pages arrive on demand and in the
# background. Hint blocks (none here; add hint "balloon" {}) stay on in
# post-copy: pages they mark free are resolved on the destination without
# a network round trip. If the connection breaks
# after the switch, both sides try to reconnect for 5 minutes; after that
# the guest is lost (status postcopy-broken, docs/JOBS.md "Post-copy").
# `migrate -start-postcopy -config postcopy.hcl` switches by hand.

source {
  control = "/run/ferry/src.sock"
}

destination {
  control = "/run/ferry/dst.sock"
}

transport "tcp" {
  listen = "10.0.0.2:7070"
}

limits {
  max_downtime      = "300ms"
  bandwidth         = "40MB/s"
  postcopy          = "auto"
  reconnect_timeout = "5m"
}
