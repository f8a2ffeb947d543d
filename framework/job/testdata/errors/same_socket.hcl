source      { control = "/run/ferry/vm.sock" }
destination { control = "/run/ferry//./vm.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
