package pagemap

import (
	"context"
	"sync"
)

// session is one hint window: the regions as Configure prepared them.
type session struct {
	ctx     context.Context // cancelled by close: stops a running Hints
	cancel  context.CancelFunc
	running sync.WaitGroup // Hints calls in progress
	regions []region
	res     resources // files and the pagemap reader, released by close
}

// close stops running Hints calls and releases the files once they
// returned; if ctx ends first, the release happens when they do.
func (s *session) close(ctx context.Context) {
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.running.Wait()
		s.res.release()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
