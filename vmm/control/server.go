package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// HandlerFunc runs one command. args is the request's "args" value (nil if
// absent). The result is encoded as the response's "result" (nil leaves it
// out); a non-nil error becomes the response's "error". ctx carries the
// handler deadline and is cancelled when Serve stops; handlers must return
// promptly when it ends, because Serve waits for them.
type HandlerFunc func(ctx context.Context, args json.RawMessage) (any, error)

// DefaultHandlerTimeout is the deadline given to each handler call unless
// SetHandlerTimeout changes it.
const DefaultHandlerTimeout = 30 * time.Second

// writeTimeout bounds how long the server waits for a client to take a
// response before it gives up on the connection.
const writeTimeout = 10 * time.Second

// Server accepts control connections on a unix socket.
type Server struct {
	path string
	ln   *net.UnixListener
	fi   os.FileInfo // the socket file we created, to remove only our own
	log  *slog.Logger

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	timeout  time.Duration
	started  bool // Serve was called
	closed   bool // listener closed and socket removed
	conns    map[net.Conn]struct{}
}

// NewServer listens on a unix socket at path with mode 0600. A socket file
// left by a dead VMM is replaced; if a process is listening on path, or
// path is not a socket, NewServer fails and leaves the file alone. log may
// be nil.
func NewServer(path string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, fi, err := listen(path)
	if err != nil {
		return nil, err
	}
	return &Server{
		path: path, ln: ln, fi: fi, log: log,
		handlers: make(map[string]HandlerFunc),
		timeout:  DefaultHandlerTimeout,
		conns:    make(map[net.Conn]struct{}),
	}, nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.path }

// Handle registers h for requests whose "cmd" is cmd. Register before Serve.
// It panics if cmd is empty, h is nil, or cmd is already registered.
func (s *Server) Handle(cmd string, h HandlerFunc) {
	if cmd == "" || h == nil {
		panic("control: Handle needs a command name and a handler")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.handlers[cmd]; dup {
		panic(fmt.Sprintf("control: command %q registered twice", cmd))
	}
	s.handlers[cmd] = h
}

// SetHandlerTimeout sets the deadline of each handler call (default
// DefaultHandlerTimeout). Call it before Serve; d <= 0 restores the default.
func (s *Server) SetHandlerTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultHandlerTimeout
	}
	s.mu.Lock()
	s.timeout = d
	s.mu.Unlock()
}

// Serve accepts connections until ctx is cancelled, then closes the
// listener and every connection, waits for all connection goroutines (and
// so all running handlers) to return, removes the socket file and returns
// nil. It returns an error if the listener fails for another reason, or if
// Serve was already called or the server closed. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("control: Serve called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, s.shutdownConns)
	defer stop()

	var wg sync.WaitGroup
	err := s.acceptLoop(ctx, &wg)
	cancel()
	s.shutdownConns()
	wg.Wait()
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// acceptLoop accepts connections and starts one goroutine for each, until
// ctx ends (nil) or Accept fails for good.
func (s *Server) acceptLoop(ctx context.Context, wg *sync.WaitGroup) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("control socket closed: %w", err)
			}
			// Out of file descriptors and the like: wait and retry.
			s.log.Warn("control: accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.track(conn) {
			conn.Close()
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.untrack(conn)
			s.serveConn(ctx, conn)
		}()
	}
}

// track records an open connection; it reports false once shutting down.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// untrack closes and forgets a connection.
func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// shutdownConns closes the listener and every open connection, which
// unblocks their reads; later connections are refused.
func (s *Server) shutdownConns() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// Close closes the listener and removes the socket file if it is still the
// one NewServer created. Serve does this itself on return; call Close only
// for a server that will never Serve. Close does not wait for connections.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.shutdownConns()
	return removeIfOurs(s.path, s.fi)
}

// knownCommands returns the sorted registered command names.
func (s *Server) knownCommands() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handlers) == 0 {
		return "(none)"
	}
	return strings.Join(slices.Sorted(maps.Keys(s.handlers)), ", ")
}
