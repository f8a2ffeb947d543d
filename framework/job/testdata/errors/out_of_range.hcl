plugin_dir  = ""
source      { control = "" }
destination { control = "   " }
transport "tcp" { listen = "127.0.0.1:7070" }
limits {
  max_downtime = "2h"
  max_passes   = 0
}
