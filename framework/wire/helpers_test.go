package wire

import "github.com/pierrec/lz4/v4"

func compressForTest(b []byte) []byte {
	var c lz4.Compressor
	dst := make([]byte, lz4.CompressBlockBound(len(b)))
	n, err := c.CompressBlock(b, dst)
	if err != nil || n == 0 {
		panic("test data does not compress")
	}
	return dst[:n]
}
