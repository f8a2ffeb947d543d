source {
	control = "/run/ferry/src.sock"
	cöntrol = "ünïcode"
}
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
