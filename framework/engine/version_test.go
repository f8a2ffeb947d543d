package engine

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

var update = flag.Bool("update", false, "rewrite testdata/hello_v<current>.golden from the current encoder")

// goldenLayout is the RAM layout every HELLO golden describes.
var goldenLayout = framework.Layout{{GPA: 0, Size: 0xc0000000}, {GPA: 0x100000000, Size: 0x40000000}}

// goldenTag is the migration tag of the HELLO goldens from protocol 7 on.
var goldenTag = migrationTag{0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x0f}

// readGolden reads a hex.Dump golden back into bytes.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (run go test -update to create the current version's golden)", err)
	}
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(string(dump)), "\n") {
		b, err := hex.DecodeString(strings.ReplaceAll(line[10:min(len(line), 59)], " ", ""))
		if err != nil {
			t.Fatalf("%s: line %q: %v", name, line, err)
		}
		out = append(out, b...)
	}
	return out
}

// TestHelloGolden pins the current HELLO byte for byte: a change to it is
// an engine protocol change and needs a protocolVersion bump
// (docs/ARCHITECTURE.md#versions).
func TestHelloGolden(t *testing.T) {
	name := fmt.Sprintf("hello_v%d.golden", protocolVersion)
	b := encodeHello(goldenLayout, helloMaySwitch, goldenTag)
	if *update {
		if err := os.WriteFile(filepath.Join("testdata", name), []byte(hex.Dump(b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t, name)
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("HELLO encoding changed (bump protocolVersion and keep %s as the previous version's golden):\n%s", name, hex.Dump(b))
	}
	h, err := decodeHello(want)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != protocolVersion || h.Pages != goldenLayout.Pages() || goldenLayout.Same(h.layout()) != nil || h.Flags != helloMaySwitch || h.Tag != goldenTag {
		t.Fatalf("decoded %+v", h)
	}
}

// TestHelloCompatPrevious: the rule for the engine protocol is an exact
// match (docs/ARCHITECTURE.md#versions). The HELLOs of the previous
// versions, written by the code of commit 206800e^ (hello_v1.golden),
// eb8045f (hello_v2.golden), deee559 (hello_v3.golden), a4215d8
// (hello_v4.golden), 8f79555 (hello_v5.golden), c999f97
// (hello_v6.golden) and bdf5ce3 (hello_v7.golden), are refused before
// any page moves, and the destination's ABORT names both versions, so
// the source reports why.
func TestHelloCompatPrevious(t *testing.T) {
	for v := 1; v < protocolVersion; v++ {
		old := readGolden(t, fmt.Sprintf("hello_v%d.golden", v))
		_, err := decodeHello(old)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("engine protocol %d", v)) || !strings.Contains(err.Error(), fmt.Sprintf("this destination %d", protocolVersion)) {
			t.Fatalf("decode v%d HELLO: %v, want a refusal naming versions %d and %d", v, err, v, protocolVersion)
		}
	}
	v1 := readGolden(t, "hello_v1.golden")

	dst := newFakeVM(t, [2]uint64{0, 64 << 10})
	src, r := newPipe(dst, dst)
	done := make(chan error, 1)
	go func() {
		_, err := Receive(t.Context(), dst, r, Options{})
		done <- err
	}()
	if err := src.SendMessage(t.Context(), transport.Message{Kind: msgHello, Payload: v1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "engine protocol 1") {
			t.Fatalf("Receive: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not refuse a version-1 HELLO")
	}
	m, err := src.RecvMessage(t.Context())
	if err != nil || m.Kind != msgAbort || !strings.Contains(string(m.Payload), fmt.Sprintf("engine protocol 1, this destination %d", protocolVersion)) {
		t.Fatalf("the source got %d %q (%v), want ABORT naming both versions", m.Kind, m.Payload, err)
	}
	if dst.resumed != 0 {
		t.Fatal("the destination ran the VM")
	}
}

// TestHelloFlagBits: HELLO's flags are added within a protocol version
// (an older peer ignores a flag it does not know: helloTransportTag in
// 7, helloCheck in 8), so a flag's bit is wire format that no version
// bump protects. Renumbering one would make a new destination read an
// older source's flag as another promise.
func TestHelloFlagBits(t *testing.T) {
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"helloMaySwitch", helloMaySwitch, 1 << 0},
		{"helloTransportTag", helloTransportTag, 1 << 1},
		{"helloCheck", helloCheck, 1 << 2},
	} {
		if f.got != f.want {
			t.Errorf("%s = %#x on the wire, was %#x: a flag's bit never changes", f.name, f.got, f.want)
		}
	}
}
