//go:build race

package transporttest

// slowdown scales the suite's timing bounds: the race detector makes
// the code it watches several times slower (5-10x in Go's own numbers),
// and the lz4 bulk path more so.
const slowdown = 5
