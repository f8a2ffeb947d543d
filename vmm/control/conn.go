package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"time"
)

// serveConn answers requests on one connection until the client closes it,
// sends an oversized line, stops reading responses, or ctx ends.
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	r := bufio.NewReaderSize(conn, 4096)
	for {
		line, err := readLine(r)
		if errors.Is(err, ErrLineTooLong) {
			s.log.Warn("control: closing connection after an oversized request line", "limit", MaxLine)
			s.reply(conn, errorResponse(fmt.Sprintf("request line longer than %d bytes; closing the connection", MaxLine)))
			return
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if !s.reply(conn, s.handleLine(ctx, line)) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Debug("control: connection read failed", "err", err)
			}
			return
		}
	}
}

// readLine returns the next line without its newline, or the bytes before
// EOF with the read error. A line longer than MaxLine returns
// ErrLineTooLong as soon as that is known, without reading the rest.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			line = line[:len(line)-1]
		}
		if len(line) > MaxLine {
			return nil, ErrLineTooLong
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// reply writes one response line, giving the client writeTimeout to take
// it, and reports whether it succeeded.
func (s *Server) reply(conn net.Conn, b []byte) bool {
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write(b); err != nil {
		s.log.Debug("control: write response failed", "err", err)
		return false
	}
	return true
}

// handleLine decodes and runs one request and returns the response line.
func (s *Server) handleLine(ctx context.Context, line []byte) []byte {
	req, err := DecodeRequest(line)
	if err != nil {
		return errorResponse(err.Error())
	}
	s.mu.Lock()
	h, timeout := s.handlers[req.Cmd], s.timeout
	s.mu.Unlock()
	if h == nil {
		return errorResponse(fmt.Sprintf("unknown command %q; known: %s", req.Cmd, s.knownCommands()))
	}
	start := time.Now()
	result, err := s.call(ctx, timeout, req, h)
	s.log.Debug("control: request", "cmd", req.Cmd, "took", time.Since(start), "err", err)
	if err != nil {
		return errorResponse(err.Error())
	}
	b, err := okResponse(result)
	if err != nil {
		s.log.Error("control: handler result cannot be encoded", "cmd", req.Cmd, "err", err)
		return errorResponse(fmt.Sprintf("%s: %v", req.Cmd, err))
	}
	return b
}

// call runs h with a deadline, turning a panic into an error.
func (s *Server) call(ctx context.Context, timeout time.Duration, req Request, h HandlerFunc) (result any, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control: handler panicked", "cmd", req.Cmd, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, fmt.Errorf("%s: internal error in the VMM (handler panicked); see its log", req.Cmd)
		}
	}()
	return h(ctx, req.Args)
}
