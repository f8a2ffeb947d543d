# A provider's own checks (hint.Validator) point at the attribute they
# are about, at the block when they name none, and say so when the value
# refused is a default; a block that does not decode is not asked.
source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "pagemap" {
  chunk   = "6KiB"
  enabled = false
}
