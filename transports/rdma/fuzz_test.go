package rdma

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// FuzzSetup feeds arbitrary bytes to the setup frame readers (one type,
// and the gate's HELLO or URGENT) and the
// OFFER, HELLO (tag and layout), COMMIT and PROGRESS decoders: they return
// ErrProtocol (or a read error; OTHER: ErrWrongMigration), never panic,
// never allocate past maxSetup.
func FuzzSetup(f *testing.F) {
	var b bytes.Buffer
	writeSetup(&b, setupOffer, offer{port: 7070, layout: []wire.Region{{GPA: 0, Size: 1 << 20}}}.append(nil))
	f.Add(b.Bytes())
	b.Reset()
	writeSetup(&b, setupRefuse, []byte("no"))
	f.Add(b.Bytes())
	b.Reset()
	writeSetup(&b, setupOther, nil)
	f.Add(b.Bytes())
	b.Reset()
	writeSetup(&b, setupReady, nil)
	f.Add(b.Bytes())
	b.Reset()
	writeSetup(&b, setupHello, appendHello(transport.Tag{1, 2}, []wire.Region{{GPA: 0, Size: 1 << 20}}))
	f.Add(b.Bytes())
	b.Reset()
	writeSetup(&b, setupUrgent, make([]byte, nonceSize+tagSize))
	f.Add(b.Bytes())
	b.Reset()
	f.Add(appendHello(transport.Tag{1, 2}, []wire.Region{{GPA: 0, Size: 1 << 20}}))
	c := make([]byte, commitSize)
	commit{seq: 1, zeros: 2, pages: 3}.put(c)
	f.Add(c)
	f.Add([]byte("FRDM\x00\x01\x00\x02\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if p, err := readSetup(bytes.NewReader(in), setupReady); err == nil && len(p) > maxSetup {
			t.Fatalf("READY of %d bytes", len(p))
		}
		// The gate's first frame (gate.go): HELLO or URGENT, nothing else.
		if typ, p, err := readSetupOf(bytes.NewReader(in), setupHello, setupUrgent); err == nil &&
			(typ != setupHello && typ != setupUrgent || len(p) > maxSetup) {
			t.Fatalf("first frame: %v of %d bytes", typ, len(p))
		}
		if p, err := readSetup(bytes.NewReader(in), setupOffer); err == nil {
			if _, err := parseOffer(p); err != nil && !errors.Is(err, transport.ErrProtocol) {
				t.Fatalf("parseOffer: %v is not ErrProtocol", err)
			}
		}
		if _, rest, err := helloTag(in); err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("helloTag: %v is not ErrProtocol", err)
		} else if err == nil && len(rest) != len(in)-tagSize {
			t.Fatalf("helloTag left %d of %d bytes", len(rest), len(in))
		}
		if _, _, err := parseLayout(in); err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("parseLayout: %v is not ErrProtocol", err)
		}
		if _, _, err := parseUCommit(in, 1<<20, nil); err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("parseUCommit: %v is not ErrProtocol", err)
		}
		if _, err := parseCommit(in); err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("parseCommit: %v is not ErrProtocol", err)
		}
		pf := wire.Frame{Header: wire.Header{Type: wire.TypeMsg, Seq: 1}, Kind: progressKind, Payload: in}
		if _, err := parseProgress(pf); (err == nil) != (len(in) == 8) || err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("parseProgress of %d bytes: %v", len(in), err)
		}
		regs := []*region{{}, {}}
		if err := parseKeys(in, regs); err != nil && !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("parseKeys: %v is not ErrProtocol", err)
		}
	})
}

// TestSetupFrames: round trips, and the bad cases named.
func TestSetupFrames(t *testing.T) {
	o := offer{port: 9, uport: 11, layout: []wire.Region{{GPA: 0, Size: 4096}, {GPA: 1 << 32, Size: 8192}}}
	o.nonce[3] = 7
	o.unonce[5] = 8
	var b bytes.Buffer
	if err := writeSetup(&b, setupOffer, o.append(nil)); err != nil {
		t.Fatal(err)
	}
	p, err := readSetup(bytes.NewReader(b.Bytes()), setupOffer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseOffer(p)
	if err != nil || got.port != 9 || got.uport != 11 || got.nonce != o.nonce || got.unonce != o.unonce || !sameLayout(got.layout, o.layout) {
		t.Fatalf("OFFER round trip: %+v %v", got, err)
	}
	for name, in := range map[string][]byte{
		"bad magic":  append([]byte("XRDM"), b.Bytes()[4:]...),
		"version 1":  append([]byte("FRDM\x00\x01"), b.Bytes()[6:]...), // no urgent path
		"version 2":  append([]byte("FRDM\x00\x02"), b.Bytes()[6:]...), // no tag
		"version 3":  append([]byte("FRDM\x00\x03"), b.Bytes()[6:]...), // no READY
		"version 4":  append([]byte("FRDM\x00\x04"), b.Bytes()[6:]...), // no PROGRESS
		"version 5":  append([]byte("FRDM\x00\x05"), b.Bytes()[6:]...), // PROGRESS may name pages no RUNS named yet
		"wrong type": append([]byte("FRDM\x00\x06\x00\x03"), b.Bytes()[8:]...),
		"too long":   []byte("FRDM\x00\x06\x00\x02\x7f\xff\xff\xff"),
	} {
		_, err := readSetup(bytes.NewReader(in), setupOffer)
		if !errors.Is(err, transport.ErrProtocol) || strings.HasPrefix(name, "version") != errors.Is(err, errSetupVersion) {
			t.Errorf("%s: %v; want ErrProtocol (naming the versions for another version)", name, err)
		}
	}
	if setupVersion != 6 {
		t.Errorf("setup version %d: the cases above write version 6 as this side's", setupVersion)
	}
	b.Reset()
	writeSetup(&b, setupReady, nil)
	if want := []byte("FRDM\x00\x06\x00\x07\x00\x00\x00\x00"); !bytes.Equal(b.Bytes(), want) {
		t.Errorf("READY = %x; want %x", b.Bytes(), want)
	}
	if p, err := readSetup(bytes.NewReader(b.Bytes()), setupReady); err != nil || len(p) != 0 {
		t.Errorf("READY round trip: %x %v", p, err)
	}
	b.Reset()
	writeSetup(&b, setupOffer, o.append(nil))
	if _, err := readSetup(bytes.NewReader(b.Bytes()[:20]), setupOffer); err == nil {
		t.Error("truncated: accepted")
	}
	b.Reset()
	writeSetup(&b, setupOther, nil)
	if _, err := readSetup(bytes.NewReader(b.Bytes()), setupOffer); !errors.Is(err, transport.ErrWrongMigration) {
		t.Errorf("OTHER: %v; want ErrWrongMigration", err)
	}
	tag := transport.Tag{0xa, 0xb}
	if got, rest, err := helloTag(appendHello(tag, o.layout)); err != nil || got != tag {
		t.Errorf("HELLO round trip: tag %x, %v", got, err)
	} else if l, _, err := parseLayout(rest); err != nil || !sameLayout(l, o.layout) {
		t.Errorf("HELLO round trip: layout %v, %v", l, err)
	}
	if _, _, err := helloTag(tag[:tagSize-1]); !errors.Is(err, transport.ErrProtocol) {
		t.Errorf("HELLO shorter than a tag: %v; want ErrProtocol", err)
	}
	c := make([]byte, commitSize)
	commit{seq: 5, zeros: 6, pages: 7, runs: 8}.put(c)
	if cm, err := parseCommit(c); err != nil || cm != (commit{seq: 5, zeros: 6, pages: 7, runs: 8}) {
		t.Errorf("COMMIT round trip: %+v %v", cm, err)
	}
	c[0] = 'X'
	if _, err := parseCommit(c); !errors.Is(err, transport.ErrProtocol) {
		t.Errorf("COMMIT bad magic: %v", err)
	}
	runs := []transport.PageRun{{First: 3, Count: 2, Kind: transport.KindData}, {First: 9, Count: 1, Kind: transport.KindZero}}
	u := make([]byte, uslotSize)
	n := putUCommit(u, 4, runs)
	if useq, got, err := parseUCommit(u[:n], 10, nil); err != nil || useq != 4 || !slices.Equal(got, runs) {
		t.Errorf("urgent COMMIT round trip: %d %v %v", useq, got, err)
	}
	for name, in := range map[string][]byte{
		"outside RAM": u[:n], // 10 pages: fine; 9 pages: the zero run lies outside
		"truncated":   u[:n-1],
		"no runs":     u[:ucommitHeader],
	} {
		pages := uint64(10)
		if name == "outside RAM" {
			pages = 9
		}
		if _, _, err := parseUCommit(in, pages, nil); !errors.Is(err, transport.ErrProtocol) {
			t.Errorf("urgent COMMIT %s: %v; want ErrProtocol", name, err)
		}
	}
}
