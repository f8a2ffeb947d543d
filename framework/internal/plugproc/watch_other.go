//go:build !linux

package plugproc

// watchExit watches nothing off Linux: there are no pidfds, and a plugin
// that ends on its own while a process it started holds its stdout or
// stderr looks alive until it is killed (see the Linux watchExit). Ferry
// hosts run on Linux only (KVM); this lets a plugin author build and
// test the plugin side elsewhere.
func (r *cmdRunner) watchExit() {}
