package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
)

// progress shows the source's progress: a redrawn bar on a terminal
// (when the line changed, at most ttyRedraw apart within a phase), a
// plain line per second (and per phase change) otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	phase engine.Phase
	drawn bool
	line  string // the line last drawn on the terminal
}

// ttyRedraw is how often a terminal's line may be redrawn within a phase.
// The status is polled every statusPoll (20 ms); redrawing each poll
// costs a slow console (a serial line, a remote terminal) far more than
// anyone can read.
const ttyRedraw = 100 * time.Millisecond

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) update(pr engine.Progress) {
	if pr.Phase == "" {
		return
	}
	every := time.Second
	if p.tty {
		every = ttyRedraw
	}
	if pr.Phase == p.phase && time.Since(p.last) < every {
		return
	}
	done := 0.0
	if pr.TotalPages > 0 {
		done = float64(pr.PagesSent+pr.PagesZero+pr.PagesSkipped) / float64(pr.TotalPages)
	}
	line := progressLine(pr, p.phase, done)
	if p.tty && line == p.line {
		return
	}
	p.phase, p.last = pr.Phase, time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn, p.line = true, line
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// progressLine is one progress line. In post-copy the guest runs on the
// destination: the line says so and counts the pages still to arrive
// (Remaining) instead of dirty pages and a downtime estimate, and while
// the source reconnects after a broken connection, for how long instead
// of the rate; so does the last line (phase done) of a migration that
// was in post-copy (prev: the phase of the line before).
func progressLine(pr engine.Progress, prev engine.Phase, done float64) string {
	if pr.Phase == engine.PhasePostcopy || pr.Phase == engine.PhaseDone && prev == engine.PhasePostcopy {
		if pr.TotalPages > 0 {
			done = 1 - float64(min(pr.Remaining, pr.TotalPages))/float64(pr.TotalPages)
		}
		moving := rate(pr.Throughput)
		if pr.Reconnecting > 0 {
			moving = fmt.Sprintf("connection lost, reconnecting for %v", pr.Reconnecting.Round(time.Second))
		}
		return fmt.Sprintf("%-13s guest runs on the destination %s %s  to arrive %d pages (%.1f MiB)  wire %.1f MiB",
			pr.Phase, bar(min(done, 1), 20), moving, pr.Remaining,
			float64(pr.Remaining*framework.PageSize)/(1<<20), float64(pr.BytesWire)/(1<<20))
	}
	return fmt.Sprintf("%-13s pass %-2d %s %s  dirty %d  est. downtime %v  wire %.1f MiB",
		pr.Phase, pr.Pass, bar(min(done, 1), 20), rate(pr.Throughput), pr.Remaining,
		pr.EstDowntime.Round(time.Millisecond), float64(pr.BytesWire)/(1<<20))
}

func (p *progress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// rate formats page data per second (Progress.Throughput: the current
// rate of the pass in progress) in a fixed width: GB/s from 1 GB/s up,
// MB/s from 1 MB/s, kB/s below, so neither a slow link nor a pass that
// trickles a few dirty pages reads as 0 while bytes move. Only no rate
// at all reads "0 MB/s".
func rate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%5.2f GB/s", bps/1e9)
	case bps >= 1e6 || bps <= 0:
		return fmt.Sprintf("%5.0f MB/s", bps/1e6)
	default:
		return fmt.Sprintf("%5.0f kB/s", bps/1e3)
	}
}

func bar(frac float64, width int) string {
	n := int(frac * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
