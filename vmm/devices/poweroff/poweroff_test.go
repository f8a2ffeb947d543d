package poweroff

import (
	"bytes"
	"slices"
	"sync"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		offset uint64
		data   []byte
		want   []int
	}{
		{"32-bit zero", 0, []byte{0, 0, 0, 0}, []int{0}},
		{"32-bit code", 0, []byte{42, 0, 0, 0}, []int{42}},
		{"32-bit keeps the low byte", 0, []byte{0x01, 0x02, 0x03, 0x04}, []int{1}},
		{"32-bit 0xff", 0, []byte{0xff, 0xff, 0xff, 0xff}, []int{255}},
		{"8-bit", 0, []byte{7}, []int{7}},
		{"16-bit", 0, []byte{0x34, 0x12}, []int{0x34}},
		{"64-bit ignored", 0, make([]byte, 8), nil},
		{"3 bytes ignored", 0, []byte{1, 2, 3}, nil},
		{"empty ignored", 0, nil, nil},
		{"offset 1 ignored", 1, []byte{1}, nil},
		{"offset 2 ignored", 2, []byte{1, 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			d := New(func(code int) { got = append(got, code) })
			d.Write(tt.offset, tt.data)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("onExit calls %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFirstExitWins(t *testing.T) {
	var mu sync.Mutex
	var got []int
	d := New(func(code int) { mu.Lock(); got = append(got, code); mu.Unlock() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); d.Write(0, []byte{byte(i), 0, 0, 0}) }()
	}
	wg.Wait()
	if len(got) != 1 {
		t.Fatalf("onExit called %d times, want once", len(got))
	}
}

func TestReadZeros(t *testing.T) {
	d := New(func(int) { t.Fatal("read must not exit") })
	for _, n := range []int{1, 2, 4} {
		b := bytes.Repeat([]byte{0xff}, n)
		d.Read(0, b)
		if !bytes.Equal(b, make([]byte, n)) {
			t.Fatalf("%d-byte read = %x, want zeros", n, b)
		}
	}
}

func TestNilOnExit(t *testing.T) {
	New(nil).Write(0, []byte{1, 0, 0, 0}) // must not panic
}
