package uart

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// op is one step of a register test: a write, a read with its expected
// value, or an Enqueue with its expected count. raised is the number of
// interrupt edges expected so far after the step.
type op struct {
	kind   byte // 'w', 'r' or 'e'
	off    uint64
	val    byte
	in     string
	n      int
	raised int
}

func w(off uint64, v byte, raised int) op { return op{kind: 'w', off: off, val: v, raised: raised} }
func r(off uint64, want byte, raised int) op {
	return op{kind: 'r', off: off, val: want, raised: raised}
}
func e(in string, n int, raised int) op { return op{kind: 'e', in: in, n: n, raised: raised} }
func rs(off uint64, want string, raised int) []op {
	var ops []op
	for i := range len(want) {
		ops = append(ops, r(off, want[i], raised))
	}
	return ops
}

func TestRegisters(t *testing.T) {
	tests := []struct {
		name    string
		ops     []op
		wantOut string
	}{
		{"reset values", []op{
			r(offData, 0, 0), r(offIER, 0x00, 0), r(offIIR, 0xc1, 0), r(offLCR, 0x03, 0),
			r(offMCR, 0x08, 0), r(offLSR, 0x60, 0), r(offMSR, 0xb0, 0), r(offSCR, 0x00, 0),
			r(8, 0, 0), r(1<<40, 0, 0),
		}, ""},
		{"DLAB selects the divisor", []op{
			w(offLCR, 0x83, 0), r(offData, 0x0c, 0), r(offIER, 0x00, 0),
			w(offData, 0x01, 0), w(offIER, 0x02, 0), r(offData, 0x01, 0), r(offIER, 0x02, 0),
			r(offLCR, 0x83, 0),
			w(offLCR, 0x03, 0), r(offIER, 0x00, 0), r(offData, 0x00, 0),
			w(offLCR, 0x80, 0), r(offData, 0x01, 0), r(offIER, 0x02, 0),
		}, ""},
		{"IER keeps the 16550A bits", []op{w(offIER, 0xff, 0), r(offIER, 0x0f, 0), w(offIER, 0x00, 0), r(offIER, 0x00, 0)}, ""},
		{"THR without THRI", []op{w(offData, 'a', 0), r(offIIR, 0xc1, 0), r(offLSR, 0x60, 0)}, "a"},
		{"THR interrupt, IIR read resets", []op{
			w(offIER, ierTHRI, 0), r(offIIR, 0xc1, 0),
			w(offData, 'a', 1), w(offData, 'b', 1), // second byte: already pending, no new edge
			r(offIIR, 0xc2, 1), r(offIIR, 0xc1, 1),
			w(offData, 'c', 2), r(offIIR, 0xc2, 2),
		}, "abc"},
		{"THR interrupt disabled again", []op{
			w(offIER, ierTHRI, 0), w(offData, 'a', 1), w(offIER, 0, 1), r(offIIR, 0xc2, 1),
			w(offData, 'b', 1), r(offIIR, 0xc1, 1),
		}, "ab"},
		{"RX without RDI", append([]op{
			e("ab", 2, 0), r(offLSR, 0x61, 0), r(offIIR, 0xc1, 0), r(offData, 'a', 0), r(offLSR, 0x61, 0),
			r(offData, 'b', 0), r(offLSR, 0x60, 0), r(offData, 0, 0),
		}, e("", 0, 0)), ""},
		{"RX interrupt", []op{
			w(offIER, ierRDI, 0), e("x", 1, 1), e("y", 1, 1), r(offIIR, 0xc4, 1), r(offIIR, 0xc1, 1),
			e("z", 1, 2), r(offData, 'x', 2), r(offIIR, 0xc1, 2), r(offLSR, 0x61, 2),
			e("w", 1, 3), r(offIIR, 0xc4, 3),
		}, ""},
		{"RX interrupt needs RDI", []op{e("x", 1, 0), w(offIER, ierRDI, 0), r(offIIR, 0xc1, 0), e("y", 1, 1)}, ""},
		{"RDA has priority over THRE", []op{
			w(offIER, ierRDI|ierTHRI, 0), w(offData, 'a', 1), r(offIIR, 0xc2, 1),
			w(offData, 'b', 2), e("x", 1, 3), r(offIIR, 0xc4, 3), r(offIIR, 0xc1, 3),
		}, "ab"},
		{"RBR read keeps THRE pending", []op{
			w(offIER, ierRDI|ierTHRI, 0), e("x", 1, 1), w(offData, 'a', 2), r(offData, 'x', 2), r(offIIR, 0xc2, 2),
		}, "a"},
		{"RX FIFO holds 64 bytes", append(append([]op{
			e(strings.Repeat("0123456789abcdef", 4)+"XYZ", 64, 0), e("x", 0, 0),
			r(offData, '0', 0), e("yz", 1, 0),
		}, rs(offData, "123456789abcdef"+strings.Repeat("0123456789abcdef", 3), 0)...),
			r(offData, 'y', 0), r(offLSR, 0x60, 0)), ""},
		{"FCR clears the RX FIFO", []op{
			w(offIER, ierRDI, 0), e("abc", 3, 1), w(offIIR, 0x01, 1), r(offLSR, 0x61, 1),
			w(offIIR, 0x07, 1), r(offLSR, 0x60, 1), r(offData, 0, 1), r(offIIR, 0xc1, 1),
			e("d", 1, 2), r(offData, 'd', 2),
		}, ""},
		{"loopback mirrors MCR into MSR", []op{
			w(offMCR, mcrLoop, 0), r(offMSR, 0x00, 0),
			w(offMCR, mcrLoop|mcrRTS, 0), r(offMSR, msrCTS, 0),
			w(offMCR, mcrLoop|mcrDTR, 0), r(offMSR, msrDSR, 0),
			w(offMCR, mcrLoop|mcrOUT1, 0), r(offMSR, msrRI, 0),
			w(offMCR, mcrLoop|mcrOUT2, 0), r(offMSR, msrDCD, 0),
			w(offMCR, 0x1f, 0), r(offMSR, 0xf0, 0), r(offMCR, 0x1f, 0),
			w(offMCR, 0x0f, 0), r(offMSR, 0xb0, 0),
		}, ""},
		{"loopback routes THR to RBR", []op{
			w(offMCR, mcrLoop, 0), w(offIER, ierRDI|ierTHRI, 0), w(offData, 'a', 1), w(offData, 'b', 1),
			r(offLSR, 0x61, 1), r(offIIR, 0xc4, 1), e("host", 0, 1), r(offData, 'a', 1), r(offData, 'b', 1),
			r(offLSR, 0x60, 1), w(offMCR, 0x08, 1), w(offData, 'c', 2),
		}, "c"},
		{"loopback drops when the FIFO is full", append(loopFill(65), r(offLSR, 0x61, 0), r(offData, 63, 0), r(offLSR, 0x60, 0), r(offData, 0, 0)), ""},
		{"LCR, MCR and SCR read back", []op{
			w(offLCR, 0x1b, 0), r(offLCR, 0x1b, 0), w(offMCR, 0x0b, 0), r(offMCR, 0x0b, 0),
			w(offSCR, 0x5a, 0), r(offSCR, 0x5a, 0),
		}, ""},
		{"LSR and MSR are read-only", []op{w(offLSR, 0xff, 0), r(offLSR, 0x60, 0), w(offMSR, 0x00, 0), r(offMSR, 0xb0, 0)}, ""},
		{"out-of-range offsets", []op{w(8, 1, 0), w(255, 1, 0), r(8, 0, 0), r(offSCR, 0, 0)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			u := New(&out)
			raised := 0
			u.SetInterruptLine(func() { raised++ })
			for i, o := range tt.ops {
				switch o.kind {
				case 'w':
					u.Write(o.off, []byte{o.val})
				case 'r':
					b := []byte{0xee}
					u.Read(o.off, b)
					if b[0] != o.val {
						t.Fatalf("step %d: read offset %d = %#02x, want %#02x", i, o.off, b[0], o.val)
					}
				case 'e':
					if n := u.Enqueue([]byte(o.in)); n != o.n {
						t.Fatalf("step %d: Enqueue(%q) = %d, want %d", i, o.in, n, o.n)
					}
				}
				if raised != o.raised {
					t.Fatalf("step %d (%c offset %d): %d interrupts raised, want %d", i, o.kind, o.off, raised, o.raised)
				}
			}
			if err := u.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut {
				t.Fatalf("output %q, want %q", out.String(), tt.wantOut)
			}
		})
	}
}

// loopFill writes n bytes in loopback mode and checks the first 64 read
// back in order.
func loopFill(n int) []op {
	ops := []op{w(offMCR, mcrLoop, 0)}
	for i := range n {
		ops = append(ops, w(offData, byte(i), 0))
	}
	for i := range FIFOSize - 1 {
		ops = append(ops, r(offData, byte(i), 0))
	}
	return ops
}

func TestWideAccesses(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	u.Write(offSCR, []byte{1, 2})
	u.Write(offSCR, nil)
	b := []byte{0xff}
	u.Read(offSCR, b)
	if b[0] != 0 {
		t.Fatalf("SCR = %#x after wide writes, want 0", b[0])
	}
	wide := []byte{0xff, 0xff, 0xff, 0xff}
	u.Read(offLSR, wide)
	if !bytes.Equal(wide, make([]byte, 4)) {
		t.Fatalf("wide read = %x, want zeros", wide)
	}
	u.Read(offLSR, nil) // must not panic
}

func TestNilInterruptLine(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	u.SetInterruptLine(nil)
	u.Write(offIER, []byte{ierRDI | ierTHRI})
	u.Write(offData, []byte{'a'})
	u.Enqueue([]byte("x"))
}

// TestInterruptOutsideLock checks that raise may call back into the UART.
func TestInterruptOutsideLock(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	var iir byte
	u.SetInterruptLine(func() {
		b := []byte{0}
		u.Read(offIIR, b)
		iir = b[0]
	})
	u.Write(offIER, []byte{ierRDI})
	done := make(chan struct{})
	go func() { u.Enqueue([]byte("x")); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Enqueue deadlocked calling raise")
	}
	if iir != 0xc4 {
		t.Fatalf("IIR seen from raise = %#x, want 0xc4", iir)
	}
}

func TestConcurrentUse(t *testing.T) {
	var out bytes.Buffer
	u := New(&out)
	u.SetInterruptLine(func() {})
	u.Write(offIER, []byte{ierRDI | ierTHRI})
	const n = 5000
	input := make([]byte, n)
	for i := range input {
		input[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // host input
		defer wg.Done()
		for rest := input; len(rest) > 0; {
			rest = rest[u.Enqueue(rest[:min(len(rest), 13)]):]
		}
	}()
	var got []byte
	go func() { // vCPU: echo every received byte
		defer wg.Done()
		b := []byte{0}
		for len(got) < n {
			u.Read(offLSR, b)
			if b[0]&lsrDR == 0 {
				continue
			}
			u.Read(offData, b)
			got = append(got, b[0])
			u.Write(offData, b)
			u.Read(offIIR, b)
		}
	}()
	wg.Wait()
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, input) || !bytes.Equal(out.Bytes(), input) {
		t.Fatalf("received %d bytes, echoed %d; content mismatch", len(got), out.Len())
	}
}
