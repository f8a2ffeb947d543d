package fabric

import "sync"

// Warm starts, in the background, libfabric's first use in this process
// for provider prov, once per process and provider, and returns a
// channel closed when it is done. Listen and Connect no longer pay it
// once it is: the process's first call into libfabric runs its one-time
// initialisation (it loads every provider and reads /proc/kallsyms line
// by line: 0.1-0.25 s of wall time here, seconds under an emulated
// KVM; in libfabric 1.17 verbs looks for its devices there too), and
// a provider's first getinfo may do work of its own. prov "" runs the
// initialisation and no core provider's getinfo (the utility providers'
// getinfo still runs, rxm, rxd and mrail in 1.17, each finding no core
// provider of that name: 0.1-0.2 ms once initialised): for a process
// that does not know its provider yet. A first Listen after Warm("")
// took 0.5-2.5 ms here, as after Warm(its provider), against 80-640
// ms cold (TestFirstCallCost, tcp and net, at a load of 9-12).
//
// What it cannot do: it cannot be interrupted (a C call), so a caller
// that stops waiting leaves it running, and every later Warm of prov
// returns the same channel; it says nothing of whether prov works here
// (its answer is dropped: Listen and Connect report their own). The
// cost of loading libfabric's shared libraries (libpsm_infinipath's
// constructor sleeps at process start, before main) is not its to take.
// Call it with a bounded set of provider names: each is remembered for
// the process's life. Without libfabric the channel is closed at once.
func Warm(prov string) <-chan struct{} {
	warming.mu.Lock()
	defer warming.mu.Unlock()
	if done, ok := warming.by[prov]; ok {
		return done
	}
	done := make(chan struct{})
	warming.by[prov] = done
	go func() {
		defer close(done)
		warmUp(prov)
	}()
	return done
}

// warming holds Warm's channels by provider.
var warming = struct {
	mu sync.Mutex
	by map[string]chan struct{}
}{by: map[string]chan struct{}{}}
