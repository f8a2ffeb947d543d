//go:build !race

package transporttest

// slowdown scales the suite's timing bounds (race.go).
const slowdown = 1
