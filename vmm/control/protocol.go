package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxLine is the longest request line the server reads, in bytes, not
// counting the newline.
const MaxLine = 64 << 10

// Request is one line from a client.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is the line the server sends back for each request.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// ErrLineTooLong is returned (wrapped) for a line longer than MaxLine.
var ErrLineTooLong = errors.New("request line too long")

// DecodeRequest parses one request line (without its newline). It is
// strict: the line must be at most MaxLine bytes and hold exactly one JSON
// object whose only keys are "cmd" (a non-empty string) and, optionally,
// "args" (any JSON value). Keys are case-sensitive.
func DecodeRequest(line []byte) (Request, error) {
	if len(line) > MaxLine {
		return Request{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrLineTooLong, len(line), MaxLine)
	}
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Request{}, fmt.Errorf("request must be a JSON object like {\"cmd\":\"status\"}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return Request{}, fmt.Errorf("malformed request: %w", err)
	}
	var req Request
	for k, v := range fields {
		switch k {
		case "cmd":
			if err := json.Unmarshal(v, &req.Cmd); err != nil {
				return Request{}, fmt.Errorf("\"cmd\" must be a string")
			}
		case "args":
			req.Args = v
		default:
			return Request{}, fmt.Errorf("unknown field %q in request; allowed: cmd, args", k)
		}
	}
	if req.Cmd == "" {
		return Request{}, fmt.Errorf("request has no \"cmd\"")
	}
	return req, nil
}

// errorResponse encodes a failed Response as a line, newline included.
func errorResponse(msg string) []byte {
	b, _ := json.Marshal(Response{OK: false, Error: msg}) // cannot fail
	return append(b, '\n')
}

// okResponse encodes a successful Response with result as a line.
func okResponse(result any) ([]byte, error) {
	resp := Response{OK: true}
	if result != nil {
		raw, err := json.Marshal(result)
		if err != nil {
			return nil, fmt.Errorf("encode result: %w", err)
		}
		resp.Result = raw
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return append(b, '\n'), nil
}
