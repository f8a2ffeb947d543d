package postcopy

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Stats reports the fault service's work. JSON names follow the
// engine report's keys (issue 10).
type Stats struct {
	Faults         uint64 `json:"faults"`           // page faults read (each thread's fault counts)
	PagesRequested uint64 `json:"pages_requested"`  // faults that went over the network
	PagesZeroLocal uint64 `json:"pages_zero_local"` // faults resolved with ZEROPAGE, no network
	PagesLandLocal uint64 `json:"pages_land_local"` // faults on pages already landed: CONTINUE, no network
	Duplicate      uint64 `json:"faults_duplicate"` // faults on a page already requested (not asked again)
	Spurious       uint64 `json:"faults_spurious"`  // faults on a page already placed (woken)
	// Fault latency, from reading the fault to the ioctl that resolved
	// it returning (the kernel's wake-up of the thread comes after).
	FaultP50us float64 `json:"fault_p50_us"`
	FaultP99us float64 `json:"fault_p99_us"`
	FaultMaxus float64 `json:"fault_max_us"`
	// The same for the faults that went over the network only (the page
	// was absent: requested, then placed when it landed).
	NetP50us float64 `json:"fault_net_p50_us"`
	NetP99us float64 `json:"fault_net_p99_us"`
	NetMaxus float64 `json:"fault_net_max_us"`
	// Pages per state now (absent, requested, zero-known, landed, placed).
	Absent    uint64 `json:"pages_absent"`
	Requested uint64 `json:"pages_in_flight"`
	ZeroKnown uint64 `json:"pages_zero_known"`
	Landed    uint64 `json:"pages_landed"`
	Placed    uint64 `json:"pages_placed"`
}

// maxSamples bounds the latency samples kept (a reservoir beyond it).
const maxSamples = 1 << 17

// latencies keeps a uniform sample of fault latencies and the exact max.
type latencies struct {
	samples []time.Duration
	seen    uint64
	max     time.Duration
	rng     *rand.Rand
}

func (l *latencies) add(d time.Duration) {
	l.seen++
	l.max = max(l.max, d)
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, d)
		return
	}
	if l.rng == nil {
		l.rng = rand.New(rand.NewPCG(1, 2))
	}
	if i := l.rng.Uint64N(l.seen); i < maxSamples {
		l.samples[i] = d
	}
}

// percentiles returns p50, p99 and max in microseconds (zero with no
// samples).
func (l *latencies) percentiles() (p50, p99, maxUS float64) {
	if len(l.samples) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return us(s[len(s)/2]), us(s[min(len(s)-1, len(s)*99/100)]), us(l.max)
}
