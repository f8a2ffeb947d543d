//go:build linux && cgo && !nolibfabric

package fabric

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkRawWrite is libfabric's own fi_write on each software
// provider, loopback: 1 GiB in 1 MiB writes, up to 64 in flight, both
// ends in this process. It reports Gb/s and the CPU seconds per GiB of
// both ends together (getrusage, timed part only):
//
//	go test -run '^$' -bench RawWrite -benchtime 3x ./transports/rdma/fabric/
//
// Two axes, because each moves the figure a lot here:
//   - memory: "warm" writes the same anonymous mappings every iteration,
//     after one untimed transfer that touched them; "fresh" maps a memfd on each side
//     anew for every iteration and writes it once, as a migration does
//     (transports/rdma maps guest RAM at Open): every page is touched
//     through a new mapping at both ends.
//     "fresh-pop" also populates each 16 MiB of both mappings
//     (MADV_POPULATE_READ, _WRITE) as it posts its first write, as
//     transports/rdma does, instead of a page fault per page.
//   - polling: "busy" polls both completion queues without waiting, one
//     thread; "wait" has each side wait in fi_cq_sread (10 ms), the
//     target on its own goroutine, as transports/rdma does.
//
// BenchmarkTransport (../bench_test.go) is comparable to fresh-pop-wait.
func BenchmarkRawWrite(b *testing.B) {
	for _, prov := range softProviders {
		for _, mode := range []rawMode{{"warm-busy", false, false, false}, {"warm-wait", false, false, true},
			{"fresh-busy", true, false, false}, {"fresh-wait", true, false, true}, {"fresh-pop-wait", true, true, true}} {
			b.Run(prov+"/"+mode.name, func(b *testing.B) { rawWrite(b, prov, mode) })
		}
	}
}

const rawSize, rawChunk, rawDepth, rawPopulate = 1 << 30, 1 << 20, 64, 16 << 20

type rawMode struct {
	name                  string
	fresh, populate, wait bool
}

func rawWrite(b *testing.B, prov string, mode rawMode) {
	fresh := mode.fresh
	var src, dst []byte
	var sf *os.File
	if fresh {
		sf = memfdFilled(b, rawSize)
	} else {
		src, dst = mappingB(b, rawSize), mappingB(b, rawSize)
		for i := 0; i < rawSize; i += 4096 {
			src[i] = byte(i>>12) | 1
		}
		se, te, dmr := pairB(b, prov, dst)
		smr, err := se.Register(src, AccessWrite, 0x42)
		if err != nil {
			b.Fatal(err)
		}
		rawWaiting(b, se, te, src, dst, smr, dmr, false) // the first touch of every page, at both ends
		se.Close()
		te.Close()
	}
	var secs, cpu float64
	var switches int64
	for range b.N {
		b.StopTimer()
		if fresh {
			src, dst = mapFile(b, sf, rawSize, unix.PROT_READ), mapFile(b, memfdB(b, rawSize), rawSize, unix.PROT_READ|unix.PROT_WRITE)
		}
		se, te, dmr := pairB(b, prov, dst)
		smr, err := se.Register(src, AccessWrite, 0x42)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0, s0 := cpuNow()
		t0 := time.Now()
		if mode.wait {
			rawWaiting(b, se, te, src, dst, smr, dmr, mode.populate)
		} else {
			rawBusy(b, se, te, src, dst, smr, dmr, mode.populate)
		}
		secs += time.Since(t0).Seconds()
		c1, s1 := cpuNow()
		cpu, switches = cpu+c1-c0, switches+s1-s0
		b.StopTimer()
		se.Close()
		te.Close()
		if fresh {
			unix.Munmap(src)
			unix.Munmap(dst)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(rawSize)*float64(b.N)/secs*8/1e9, "Gb/s")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/GiB")
	b.ReportMetric(float64(switches)/float64(b.N), "switches/GiB")
	b.ReportMetric(0, "ns/op")
}

// rawBusy posts the writes and polls both queues without waiting.
func rawBusy(b *testing.B, se, te *Endpoint, src, dst []byte, smr, dmr *MR, populate bool) {
	base := dmr.Base(se.Caps().VirtAddr)
	var cs [64]Completion
	posted, done := 0, 0
	for done < rawSize/rawChunk {
		posted = rawPost(b, se, src, dst, smr, dmr, base, posted, done, populate)
		n, err := se.Poll(cs[:], 0)
		if err != nil {
			b.Fatal(err)
		}
		done += n
		if _, err := te.Poll(cs[:], 0); err != nil {
			b.Fatal(err)
		}
	}
}

// rawWaiting posts the writes and waits for completions in fi_cq_sread,
// while a goroutine drives the target the same way.
func rawWaiting(b *testing.B, se, te *Endpoint, src, dst []byte, smr, dmr *MR, populate bool) {
	base := dmr.Base(se.Caps().VirtAddr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var cs [8]Completion
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := te.Poll(cs[:], 10*time.Millisecond); err != nil {
				b.Error(err)
				return
			}
		}
	})
	var cs [64]Completion
	posted, done := 0, 0
	for done < rawSize/rawChunk {
		posted = rawPost(b, se, src, dst, smr, dmr, base, posted, done, populate)
		n, err := se.Poll(cs[:], 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		done += n
	}
	close(stop)
	wg.Wait()
}

// rawPost posts writes until rawDepth are in flight or the queue is full;
// with populate, each rawPopulate bytes of src and dst are populated as
// their first write is posted.
func rawPost(b *testing.B, se *Endpoint, src, dst []byte, smr, dmr *MR, base uint64, posted, done int, populate bool) int {
	for posted < rawSize/rawChunk && posted-done < rawDepth {
		if at := posted * rawChunk; populate && at%rawPopulate == 0 {
			unix.Madvise(src[at:at+rawPopulate], unix.MADV_POPULATE_READ)
			unix.Madvise(dst[at:at+rawPopulate], unix.MADV_POPULATE_WRITE)
		}
		err := se.Write(src[posted*rawChunk:(posted+1)*rawChunk], smr, base+uint64(posted*rawChunk), dmr.Key(), 1)
		if err == ErrAgain {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		posted++
	}
	return posted
}

// cpuNow is the process's CPU seconds and context switches (voluntary
// and not) so far: each switch here is a wake-up, which in this nested
// guest often costs a VM exit.
func cpuNow() (float64, int64) {
	var r unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r)
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9, r.Nvcsw + r.Nivcsw
}

func mappingB(b *testing.B, n int) []byte {
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(m) })
	return m
}

// memfdB is an empty memfd of n bytes, closed at the end of b.
func memfdB(b *testing.B, n int) *os.File {
	fd, err := unix.MemfdCreate("raw", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "raw")
	if err := f.Truncate(int64(n)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// memfdFilled is a memfd of n bytes of data, written with pwrite (so no
// mapping of it has page-table entries yet).
func memfdFilled(b *testing.B, n int) *os.File {
	f := memfdB(b, n)
	buf := make([]byte, 1<<20)
	for off := 0; off < n; off += len(buf) {
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = byte((off+i)>>12) | 1
		}
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func mapFile(b *testing.B, f *os.File, n, prot int) []byte {
	m, err := unix.Mmap(int(f.Fd()), 0, n, prot, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(fmt.Errorf("map: %w", err))
	}
	return m
}

// pairB connects two endpoints of prov on loopback; the target registers
// dst for remote writes.
func pairB(b *testing.B, prov string, dst []byte) (src, target *Endpoint, dmr *MR) {
	l, err := Listen(prov, "127.0.0.1")
	if err != nil {
		b.Skipf("SKIPPED: provider %s: %v", prov, err)
	}
	defer l.Close()
	port, _ := l.Port()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acc := make(chan *Endpoint, 1)
	go func() {
		e, err := l.Accept(ctx, func([]byte) bool { return true }, func(e *Endpoint) error {
			var err error
			dmr, err = e.Register(dst, AccessRemoteWrite, 0x1234)
			return err
		})
		if err != nil {
			b.Error(err)
		}
		acc <- e
	}()
	src, err = Connect(ctx, prov, "127.0.0.1", port, []byte("x"))
	if err != nil {
		b.Fatal(err)
	}
	target = <-acc
	if target == nil {
		b.FailNow()
	}
	return src, target, dmr
}

// BenchmarkRegister times registering guest RAM for remote writes, as a
// destination's setup does at each try: a memfd of 1 and 4 GiB, sparse
// ("empty", a destination's) or with every page written ("filled", a
// source's), mapped fresh, on each software provider, in the domain of a
// connected endpoint. "mlock" pins the same mappings instead, a stand-in
// for verbs (no device here), which pins every page it registers:
//
//	go test -run '^$' -bench Register -benchtime 3x ./transports/rdma/fabric/
//
// It reports milliseconds and CPU seconds per registration.
func BenchmarkRegister(b *testing.B) {
	for _, prov := range append(append([]string(nil), softProviders...), "mlock") {
		for _, gib := range []int{1, 4} {
			for _, filled := range []bool{false, true} {
				what := map[bool]string{false: "empty", true: "filled"}[filled]
				b.Run(fmt.Sprintf("%s/%dGiB/%s", prov, gib, what), func(b *testing.B) { register(b, prov, gib<<30, filled) })
			}
		}
	}
}

func register(b *testing.B, prov string, n int, filled bool) {
	var f *os.File
	if filled {
		f = memfdFilled(b, n)
	}
	var secs, cpu float64
	for range b.N {
		b.StopTimer()
		if !filled {
			f = memfdB(b, n) // a new one each time: mlock leaves the pages it allocated in the file
		}
		mem := mapFile(b, f, n, unix.PROT_READ|unix.PROT_WRITE)
		reg, done := func() error { return unix.Mlock(mem) }, func() {}
		if prov != "mlock" {
			se, te, _ := pairB(b, prov, mappingB(b, 4096))
			reg = func() error { _, err := te.Register(mem, AccessRemoteWrite, 0x77); return err }
			done = func() { se.Close(); te.Close() }
		}
		c0, _ := cpuNow()
		start := time.Now()
		b.StartTimer()
		err := reg()
		b.StopTimer()
		secs += time.Since(start).Seconds()
		c1, _ := cpuNow()
		cpu += c1 - c0
		done()
		unix.Munmap(mem)
		if !filled {
			f.Close()
		}
		if err != nil {
			b.Skipf("%s of %d bytes: %v", prov, n, err)
		}
	}
	b.ReportMetric(secs*1e3/float64(b.N), "ms/register")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/register")
	b.ReportMetric(0, "ns/op")
}
