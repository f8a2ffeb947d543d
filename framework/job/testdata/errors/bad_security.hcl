source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }

security {
  encryption  = "maybe"
  ca_file     = ""
  source_cert = "/etc/ferry/src.pem"
  source_kye  = "/etc/ferry/src.key"
}
