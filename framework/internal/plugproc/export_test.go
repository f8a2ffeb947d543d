package plugproc

// SetPid makes p's process id pid, as if the kernel had given the
// plugin's pid to another process after the plugin exited and was
// reaped (its pid was free for reuse).
func SetPid(p *Process, pid int) { p.pid = pid }

// HostEnv is the variable Start names the host's pid in.
const HostEnv = hostEnv
