# no destination block, no control in source, no listen in transport
source {
}
transport "tcp" {
  streams = 4
}
