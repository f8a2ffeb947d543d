package plugproc

import (
	"net"

	"google.golang.org/grpc"
)

// SetPid makes p's process id pid, as if the kernel had given the
// plugin's pid to another process after the plugin exited and was
// reaped (its pid was free for reuse).
func SetPid(p *Process, pid int) { p.pid = pid }

// HostEnv is the variable Start names the host's pid in.
const HostEnv = hostEnv

// DeferGRPCCloses makes gRPC's own closes of the host's connections to
// the plugin that Start(cfg) starts take effect only once release is
// closed, each in a goroutine of its own: as when gRPC's transport
// goroutines close a connection after ClientConn.Close returned
// (conns.go). Kill's own closes are not deferred.
func DeferGRPCCloses(cfg *Config, release <-chan struct{}) {
	cfg.wrapConn = func(c net.Conn) net.Conn { return &lateClose{Conn: c, release: release} }
}

// lateClose is a connection whose Close closes it once release is closed.
type lateClose struct {
	net.Conn
	release <-chan struct{}
}

func (c *lateClose) Close() error {
	go func() {
		<-c.release
		c.Conn.Close()
	}()
	return nil
}

// AddDialOptions appends opts to the gRPC dial options Start(cfg) gives
// go-plugin, after Start's own (a stream interceptor among them runs
// inside Start's).
func AddDialOptions(cfg *Config, opts ...grpc.DialOption) {
	cfg.dialOpts = append(cfg.dialOpts, opts...)
}

// KeptClients is how many ClientConns p's hostConns keeps for Kill to
// close (keepClient).
func KeptClients(p *Process) int {
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	return len(p.conns.clients)
}
