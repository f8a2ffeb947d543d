package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	maxLine := `{"cmd":"status"}` + strings.Repeat(" ", MaxLine-len(`{"cmd":"status"}`))
	tests := []struct {
		name     string
		line     string
		wantCmd  string
		wantArgs string
		wantErr  string
	}{
		{"cmd only", `{"cmd":"status"}`, "status", "", ""},
		{"with args", `{"cmd":"pause","args":{"timeout_ms":500}}`, "pause", `{"timeout_ms":500}`, ""},
		{"args first", `{"args":[1,2],"cmd":"x"}`, "x", `[1,2]`, ""},
		{"args null", `{"cmd":"x","args":null}`, "x", `null`, ""},
		{"whitespace and CR", " \t{ \"cmd\" : \"quit\" }\r", "quit", "", ""},
		{"exactly MaxLine", maxLine, "status", "", ""},
		{"empty", ``, "", "", "must be a JSON object"},
		{"blank", `   `, "", "", "must be a JSON object"},
		{"not JSON", `status`, "", "", "must be a JSON object"},
		{"array", `[{"cmd":"x"}]`, "", "", "must be a JSON object"},
		{"string", `"status"`, "", "", "must be a JSON object"},
		{"broken object", `{"cmd":"x"`, "", "", "malformed request"},
		{"trailing data", `{"cmd":"x"} {"cmd":"y"}`, "", "", "malformed request"},
		{"no cmd", `{"args":{}}`, "", "", `no "cmd"`},
		{"empty cmd", `{"cmd":""}`, "", "", `no "cmd"`},
		{"null cmd", `{"cmd":null}`, "", "", `no "cmd"`},
		{"cmd not a string", `{"cmd":42}`, "", "", `"cmd" must be a string`},
		{"unknown field", `{"cmd":"x","id":1}`, "", "", `unknown field "id"`},
		{"case-folded key", `{"CMD":"x"}`, "", "", `unknown field "CMD"`},
		{"too long", maxLine + " ", "", "", "request line too long: 65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeRequest([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeRequest error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if req.Cmd != tt.wantCmd || string(req.Args) != tt.wantArgs {
				t.Fatalf("DecodeRequest = {%q %s}, want {%q %s}", req.Cmd, req.Args, tt.wantCmd, tt.wantArgs)
			}
		})
	}
	if _, err := DecodeRequest(make([]byte, MaxLine+1)); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("oversized line error = %v, want ErrLineTooLong", err)
	}
}

func TestResponseEncoding(t *testing.T) {
	tests := []struct {
		name   string
		result any
		want   string
	}{
		{"nil result", nil, `{"ok":true}`},
		{"struct", struct {
			State string `json:"state"`
		}{"running"}, `{"ok":true,"result":{"state":"running"}}`},
		{"raw", json.RawMessage(`[1,2]`), `{"ok":true,"result":[1,2]}`},
	}
	for _, tt := range tests {
		b, err := okResponse(tt.result)
		if err != nil || string(b) != tt.want+"\n" {
			t.Errorf("%s: okResponse = %q, %v; want %q", tt.name, b, err, tt.want+"\n")
		}
	}
	if _, err := okResponse(make(chan int)); err == nil {
		t.Error("okResponse accepted an unencodable result")
	}
	if got := string(errorResponse(`bad "x"`)); got != `{"ok":false,"error":"bad \"x\""}`+"\n" {
		t.Errorf("errorResponse = %q", got)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"cmd":"status"}`, `{"cmd":"pause","args":{"a":[1,{"b":null}]}}`, `{"CMD":1}`, `[]`, `{"cmd":"x","cmd":"y"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err != nil {
			return
		}
		if req.Cmd == "" || len(line) > MaxLine {
			t.Fatalf("accepted %q as %+v", line, req)
		}
		if req.Args != nil && !json.Valid(req.Args) {
			t.Fatalf("accepted invalid args %q", req.Args)
		}
		// What was accepted survives a round trip through the client's encoder.
		enc, err := encodeRequest(req.Cmd, req.Args)
		if err != nil {
			if errors.Is(err, ErrLineTooLong) {
				return
			}
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		again, err := DecodeRequest(bytes.TrimSuffix(enc, []byte("\n")))
		if err != nil || again.Cmd != req.Cmd {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}
