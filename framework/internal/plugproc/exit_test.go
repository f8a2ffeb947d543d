package plugproc

import (
	"io"
	"strings"
	"testing"
)

// TestStderrTail: what go-plugin reads from a plugin's stderr passes
// through unchanged, and the tail remembers the last ERROR record
// (message and pairs), or the first line of a panic, whatever the reads'
// boundaries.
func TestStderrTail(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"last error record", `{"@level":"info","@message":"started","@timestamp":"x"}
{"@level":"error","@message":"first","n":1}
{"@level":"warn","@message":"not an error"}
{"@level":"error","@message":"exiting on purpose","@module":"crash","in":"Hints","status":3}
`, "exiting on purpose in=Hints status=3"},
		{"a panic wins", `{"@level":"error","@message":"logged"}
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.main()
panic: again
`, "panic: runtime error: index out of range [5] with length 3"},
		{"nothing", "plain text\n{\"@level\":\"info\",\"@message\":\"x\"}\n", ""},
		{"no final newline", `{"@level":"error","@message":"cut"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tail := newStderrTail(io.NopCloser(&chunked{s: tc.in, n: 7}))
			out, err := io.ReadAll(tail)
			if err != nil || string(out) != tc.in {
				t.Fatalf("passed through %q (%v)", out, err)
			}
			tail.setExit("exit status 3")
			if e := tail.exit(); e.LastError != tc.want || e.Status != "exit status 3" || !e.Exited {
				t.Errorf("%+v, want last error %q", e, tc.want)
			}
		})
	}
	long := `{"@level":"error","@message":"` + strings.Repeat("x", 5000) + `"}` + "\n"
	tail := newStderrTail(io.NopCloser(strings.NewReader(long)))
	io.ReadAll(tail)
	if got := tail.exit().LastError; len(got) != maxTailLine+3 {
		t.Errorf("a long line kept %d bytes", len(got))
	}
	if (*stderrTail)(nil).exit() != (Exit{}) {
		t.Error("no tail, yet an exit")
	}
}

// chunked reads s n bytes at a time.
type chunked struct {
	s string
	n int
}

func (c *chunked) Read(b []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}
