source      { control = var.src }
destination { control = upper("/run/ferry/dst.sock") }
transport "tcp" { listen = "127.0.0.1:${port}" }
