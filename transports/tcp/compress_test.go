//go:build linux

package tcp

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// TestCompressorAdapts: a run of batches that do not compress turns
// compression off for skipBatches batches, then it probes again.
func TestCompressorAdapts(t *testing.T) {
	random := make([]byte, batchPages*pageSize)
	fillRandom(random, rand.New(rand.NewPCG(1, 2)))
	easy := make([]byte, batchPages*pageSize)
	fillCompressible(easy, 3)
	var c compressor
	if _, ok := c.compress(easy); !ok {
		t.Fatal("compressible batch went raw")
	}
	for i := range missLimit {
		if _, ok := c.compress(random); ok {
			t.Fatalf("random batch %d went compressed", i)
		}
	}
	for i := range skipBatches {
		if _, ok := c.compress(easy); ok {
			t.Fatalf("batch %d of the pause was compressed", i)
		}
	}
	out, ok := c.compress(easy)
	if !ok {
		t.Fatal("no probe after the pause")
	}
	back := make([]byte, len(easy))
	if n, err := lz4.UncompressBlock(out, back); err != nil || n != len(easy) || string(back) != string(easy) {
		t.Fatalf("round trip: %d %v", n, err)
	}
}

func BenchmarkCompressBatch(b *testing.B) {
	random := make([]byte, batchPages*pageSize)
	fillRandom(random, rand.New(rand.NewPCG(1, 2)))
	easy := make([]byte, batchPages*pageSize)
	fillCompressible(easy, 3)
	dst := make([]byte, len(easy)/10*9)
	for _, data := range []struct {
		name string
		b    []byte
	}{{"random", random}, {"compressible", easy}} {
		b.Run(fmt.Sprintf("fast/%s", data.name), func(b *testing.B) {
			var c lz4.Compressor
			b.SetBytes(int64(len(data.b)))
			for range b.N {
				c.CompressBlock(data.b, dst)
			}
		})
		b.Run(fmt.Sprintf("ccompat/%s", data.name), func(b *testing.B) {
			var c lz4.CompressorCCompat
			b.SetBytes(int64(len(data.b)))
			for range b.N {
				c.CompressBlock(data.b, dst)
			}
		})
	}
	var c lz4.Compressor
	n, _ := c.CompressBlock(easy, dst)
	comp := append([]byte(nil), dst[:n]...)
	b.Run("decompress/compressible", func(b *testing.B) {
		b.SetBytes(int64(len(easy)))
		for range b.N {
			lz4.UncompressBlock(comp, easy)
		}
	})
}
