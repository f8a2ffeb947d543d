package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoder")

// goldenFrame is one frame encoding pinned in testdata, with what the
// decoder must make of it.
type goldenFrame struct {
	name  string
	bytes []byte
	want  Frame
	pages []byte // PAGES: the decoded page data
}

func mustFrame(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func patternPages(n int, compressible bool) []byte {
	b := make([]byte, n*PageSize)
	for i := range b {
		if compressible {
			b[i] = byte(i / 1024)
		} else {
			b[i] = byte(i*131 + i/7*17 + i>>9)
		}
	}
	return b
}

// goldenFrames are the pinned encodings. pages_lz4 also pins the lz4
// library's output; a library update that changes it needs -update, not a
// Version bump, as any valid lz4 block decodes the same.
func goldenFrames() []goldenFrame {
	hello := Hello{Session: [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		Tag:    [TagSize]byte{0x7a, 0x67, 0x54, 0x41, 0x47, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xff},
		Stream: 1, Streams: 2, PageSize: PageSize,
		RAM: []Region{{0, 0xc0000000}, {0x100000000, 0x40000000}}}
	urgent := hello
	urgent.Stream, urgent.Urgent = 0, true
	raw := patternPages(1, false)
	two := patternPages(2, true)
	comp := compressForTest(two)
	msg := []byte("state chunk")
	return []goldenFrame{
		{"hello", mustFrame(AppendHello(nil, hello)), Frame{Header: Header{Type: TypeHello, Length: 76}, Hello: hello}, nil},
		{"hello_urgent", mustFrame(AppendHello(nil, urgent)), Frame{Header: Header{Type: TypeHello, Flags: FlagUrgent, Length: 76}, Hello: urgent}, nil},
		{"pages_raw", mustFrame(AppendPages(nil, 7, Run{First: 0x12345, Count: 1}, false, raw)),
			Frame{Header: Header{Type: TypePages, Length: RunSize + PageSize, Seq: 7}, Run: Run{First: 0x12345, Count: 1}, DataLen: PageSize}, raw},
		{"pages_lz4", mustFrame(AppendPages(nil, 8, Run{First: 0x200, Count: 2}, true, comp)),
			Frame{Header: Header{Type: TypePages, Flags: FlagCompressed, Length: uint32(RunSize + len(comp)), Seq: 8}, Run: Run{First: 0x200, Count: 2}, DataLen: len(comp)}, two},
		{"zero", mustFrame(AppendZero(nil, 9, Run{First: 0x40000, Count: 256})),
			Frame{Header: Header{Type: TypeZero, Length: RunSize, Seq: 9}, Run: Run{First: 0x40000, Count: 256}}, nil},
		{"zero_strided", mustFrame(AppendZero(nil, 10, Run{First: 0x40100, Count: 0x1ff00, Cell: goldenCell, Every: goldenEvery})),
			Frame{Header: Header{Type: TypeZero, Flags: FlagStrided, Length: RunSize, Seq: 10}, Run: Run{First: 0x40100, Count: 0x1ff00, Cell: goldenCell, Every: goldenEvery}}, nil},
		{"ack", AppendAck(nil, 9), Frame{Header: Header{Type: TypeAck, Seq: 9}}, nil},
		{"msg", mustFrame(AppendMsg(nil, 3, msg)),
			Frame{Header: Header{Type: TypeMsg, Length: uint32(4 + len(msg))}, Kind: 3, Payload: msg}, nil},
		{"bye", AppendBye(nil, "done"), Frame{Header: Header{Type: TypeBye, Length: 4}, Reason: "done"}, nil},
		{"abort", AppendAbort(nil, CodeLayout, "layouts differ"),
			Frame{Header: Header{Type: TypeAbort, Length: 18}, Code: CodeLayout, Reason: "layouts differ"}, nil},
	}
}

func TestGolden(t *testing.T) {
	for _, g := range goldenFrames() {
		t.Run(g.name, func(t *testing.T) {
			path := filepath.Join("testdata", g.name+".golden")
			dump := hex.Dump(g.bytes)
			if *update {
				if err := os.WriteFile(path, []byte(dump), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if dump != string(want) {
				t.Errorf("encoding of %s changed (a wire format change needs a Version bump):\ngot:\n%s\nwant:\n%s", g.name, dump, want)
			}
			checkDecode(t, undump(t, string(want)), g)
		})
	}
}

// undump parses hex.Dump output back into bytes.
func undump(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:min(len(line), 59)]
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("golden line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

// checkDecode decodes b, which must be g's frame in version Version
// (or the version g.want names).
func checkDecode(t *testing.T, b []byte, g goldenFrame) {
	t.Helper()
	d := newDecoder(b)
	f, err := d.Next()
	if err != nil {
		t.Fatalf("decode %s: %v", g.name, err)
	}
	want := g.want
	if want.Version == 0 {
		want.Version = Version
	}
	if !reflect.DeepEqual(f, want) || d.Version() != want.Version {
		t.Fatalf("decode %s (stream version %d):\ngot  %+v\nwant %+v", g.name, d.Version(), f, want)
	}
	if g.pages != nil {
		got := make([]byte, len(g.pages))
		if err := d.ReadPages(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, g.pages) {
			t.Fatal("page data differs after decoding")
		}
	}
	if _, err := d.Next(); err == nil || err.Error() != "EOF" {
		t.Fatalf("after the only frame: %v, want EOF", err)
	}
}

// TestVersionCompat is the wire rule of docs/ARCHITECTURE.md#versions: a
// decoder reads its own version and the previous one, and refuses any
// other, naming both. testdata/v1/ holds the goldens of version 1,
// written by the code before Version 2 (they are the files of
// testdata/ at commit c2ccb8d): each still decodes, to the frame it
// always meant (a HELLO without a tag has the zero Tag), and a
// destination that answers in version 1 (AppendHelloIn, SetVersion)
// writes exactly those bytes.
func TestVersionCompat(t *testing.T) {
	good := mustFrame(AppendHello(nil, goldenFrames()[0].want.Hello))
	for _, v := range []byte{0, MinVersion - 1, Version + 1} {
		b := bytes.Clone(good)
		b[4] = v
		_, err := NewDecoder(bytes.NewReader(b)).Next()
		if !errors.Is(err, ErrBadVersion) || !strings.Contains(err.Error(), fmt.Sprintf("%d (this side speaks %d and reads %d)", v, Version, MinVersion)) {
			t.Errorf("version %d: %v, want ErrBadVersion naming %d, %d and %d", v, err, v, Version, MinVersion)
		}
	}
	prev := filepath.Join("testdata", fmt.Sprintf("v%d", MinVersion))
	for _, g := range goldenFrames() {
		t.Run(g.name, func(t *testing.T) {
			dump, err := os.ReadFile(filepath.Join(prev, g.name+".golden"))
			if err != nil {
				t.Fatalf("%v: keep the goldens of the previous wire version when Version changes", err)
			}
			old := undump(t, string(dump))
			g.want.Version = MinVersion
			if g.want.Type == TypeHello {
				g.want.Hello.Tag = [TagSize]byte{}
				g.want.Length -= TagSize
			}
			checkDecode(t, old, g)
			if re := answerIn(t, g, MinVersion); !bytes.Equal(re, old) {
				t.Errorf("written in version %d:\n%s\nwant:\n%s", MinVersion, hex.Dump(re), dump)
			}
		})
	}
}

// answerIn writes g's frame in version v as a destination answering a
// stream of that version does.
func answerIn(t testing.TB, g goldenFrame, v uint8) []byte {
	t.Helper()
	if g.want.Type == TypeHello {
		h := g.want.Hello
		if v == 1 {
			h.Tag = [TagSize]byte{} // version 1 names no migration
		}
		return mustFrame(AppendHelloIn(nil, h, v))
	}
	b := bytes.Clone(g.bytes)
	if err := SetVersion(b, v); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVersionWriters: a version-1 HELLO cannot carry a tag, no frame is
// written in a version this side does not read, SetVersion never
// rewrites a HELLO (its layout differs), and a stream that changes
// version midway is refused.
func TestVersionWriters(t *testing.T) {
	h := goldenFrames()[0].want.Hello
	if _, err := AppendHelloIn(nil, h, 1); !errors.Is(err, ErrMalformed) {
		t.Errorf("a version-1 HELLO with a tag: %v, want ErrMalformed", err)
	}
	for _, v := range []uint8{0, Version + 1} {
		if _, err := AppendHelloIn(nil, Hello{Streams: 1}, v); !errors.Is(err, ErrMalformed) {
			t.Errorf("HELLO of version %d: %v, want ErrMalformed", v, err)
		}
		if err := SetVersion(AppendAck(nil, 1), v); !errors.Is(err, ErrMalformed) {
			t.Errorf("ACK rewritten to version %d: %v, want ErrMalformed", v, err)
		}
	}
	if err := SetVersion(mustFrame(AppendHello(nil, h)), 1); !errors.Is(err, ErrMalformed) {
		t.Errorf("HELLO rewritten to version 1: %v, want ErrMalformed", err)
	}
	v1 := AppendAck(nil, 1)
	SetVersion(v1, 1)
	d := newDecoder(append(v1, AppendAck(nil, 2)...))
	if _, err := d.Next(); err != nil || d.Version() != 1 {
		t.Fatalf("a version-1 ACK: %v, stream version %d", err, d.Version())
	}
	if _, err := d.Next(); !errors.Is(err, ErrBadVersion) {
		t.Errorf("a version-2 frame on a version-1 stream: %v, want ErrBadVersion", err)
	}
}
