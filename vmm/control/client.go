package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// MaxResponse bounds the response line Call reads, in bytes.
const MaxResponse = 16 << 20

// RemoteError is the error Call returns when the server answered
// {"ok":false}: the command ran (or was refused) and failed there.
type RemoteError struct {
	Cmd     string // the command sent
	Message string // the server's "error" text
}

func (e *RemoteError) Error() string { return e.Cmd + ": " + e.Message }

// Call connects to the control socket at path, sends one request (cmd with
// args encoded as JSON; nil args are left out), reads one response and
// closes the connection. It talks only to a server run by this user,
// root, or the owner of the socket's directory (peer.go). If the server answers ok, the result is decoded
// into result (unless result is nil). If it answers with an error, Call
// returns a *RemoteError holding the server's message. ctx bounds the whole
// exchange.
func Call(ctx context.Context, path, cmd string, args any, result any) error {
	line, err := encodeRequest(cmd, args)
	if err != nil {
		return &notSentError{err} // nothing was written: the command did not run
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return &notSentError{fmt.Errorf("connect to control socket: %w", err)}
	}
	defer conn.Close()
	if err := checkPeer(conn, path); err != nil {
		return &notSentError{err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	resp, err := exchange(conn, line)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("control %s: %w", cmd, ctx.Err())
		}
		return fmt.Errorf("control %s: %w", cmd, err)
	}
	if !resp.OK {
		return &RemoteError{Cmd: cmd, Message: resp.Error}
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("control %s: decode result: %w", cmd, err)
		}
	}
	return nil
}

// notSentError is Call's error when the request was never written: the
// command did not run.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// NotSent reports whether err, from Call, says the request never reached
// the server (a request that could not be encoded, longer than MaxLine
// say; no connection; or a peer Call will not talk to), so the command
// did not run. Any other error leaves that open: a request written
// whose answer was lost may have run. Until TestCallUnencodableNotSent
// a request that could not be encoded was not NotSent, and a caller
// took it for one that may have run.
func NotSent(err error) bool {
	var n *notSentError
	return errors.As(err, &n)
}

// encodeRequest builds the request line, newline included.
func encodeRequest(cmd string, args any) ([]byte, error) {
	if cmd == "" {
		return nil, errors.New("control: empty command")
	}
	req := Request{Cmd: cmd}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("control %s: encode args: %w", cmd, err)
		}
		req.Args = raw
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control %s: encode request: %w", cmd, err)
	}
	if len(b) > MaxLine {
		return nil, fmt.Errorf("control %s: %w: %d bytes, the limit is %d", cmd, ErrLineTooLong, len(b), MaxLine)
	}
	return append(b, '\n'), nil
}

// exchange writes line and reads one response line from conn.
func exchange(conn net.Conn, line []byte) (Response, error) {
	if _, err := conn.Write(line); err != nil {
		return Response{}, fmt.Errorf("send request: %w", err)
	}
	r := bufio.NewReader(io.LimitReader(conn, MaxResponse+1))
	b, err := r.ReadBytes('\n')
	if err != nil {
		if len(b) > MaxResponse {
			return Response{}, fmt.Errorf("response longer than %d bytes", MaxResponse)
		}
		if errors.Is(err, io.EOF) {
			return Response{}, errors.New("server closed the connection without answering")
		}
		return Response{}, fmt.Errorf("read response: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(b, &resp); err != nil {
		return Response{}, fmt.Errorf("malformed response: %w", err)
	}
	if !resp.OK && resp.Error == "" {
		resp.Error = "failed (the server gave no reason)"
	}
	return resp, nil
}
