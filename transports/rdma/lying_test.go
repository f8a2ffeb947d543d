package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestLyingSourceCounts: a source's PROGRESS frames and COMMIT say how
// many data pages its writes covered, which the destination cannot see
// land; its Stats must never count more than the batch's RUNS frames
// named (each run checked against guest RAM, at most guest RAM's pages
// per batch), and a frame that claims more ends the session with a
// protocol error naming it. Each case is a real session on every
// provider whose source sends frames as a hostile or buggy one would
// (on its control channel, or a COMMIT naming other pages), after an
// honest SendPages of 4 pages where the case has one, which the
// destination counted first. Before, it counted whatever PROGRESS or
// COMMIT said (2^40 pages of 1 MiB of RAM) at once, checked a COMMIT
// against the RUNS only once all had come, and a PROGRESS never.
func TestLyingSourceCounts(t *testing.T) {
	const ramPages = 1 << 20 / 4096
	d := transport.KindData
	all := transport.PageRun{First: 0, Count: ramPages, Kind: d}
	for _, p := range providers(t) {
		for _, tc := range []struct {
			name   string
			honest bool                // SendPages of 4 pages first, counted before the lie
			frames [][]byte            // written on the control channel
			commit func(uint64) uint64 // else a Flush whose COMMIT names commit(n) of n pages
			want   string              // in the destination's error
			most   uint64              // data pages the destination may count
		}{
			{"PROGRESS without RUNS", false, [][]byte{rdma.ProgressFrame(1, 1<<40)}, nil,
				"PROGRESS of batch 1 claims 1099511627776 data pages, its RUNS named 0", 0},
			{"PROGRESS past its RUNS", true, [][]byte{rdma.ProgressFrame(1, ramPages)}, nil,
				"PROGRESS of batch 1 claims 256 data pages, its RUNS named 4", 4},
			{"RUNS past guest RAM", false, [][]byte{rdma.RunsFrame(1, all), rdma.RunsFrame(1, all), rdma.ProgressFrame(1, 2*ramPages)}, nil,
				"RUNS of batch 1 name 512 data pages, guest RAM has 256", 0},
			{"COMMIT past guest RAM", true, nil, func(n uint64) uint64 { return n + 1<<40 },
				"COMMIT of batch 1 names 1099511627780 data pages, guest RAM has 256", 4},
			{"COMMIT past its RUNS", true, nil, func(n uint64) uint64 { return n + 100 },
				"batch 1: COMMIT of 104 data pages, RUNS of 4", 4},
		} {
			t.Run(p+"/"+tc.name, func(t *testing.T) {
				send := rdma.New(nil)
				send.SetCommitPages(tc.commit)
				s := open(t, p, 0, 1<<20, send)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if tc.honest {
					fillRandom(s.src, 11)
					if err := s.send.SendPages(ctx, []transport.PageRun{{First: 8, Count: 4, Kind: d}}); err != nil {
						t.Fatal(err)
					}
					if st := waitStats(ctx, t, s.recv, func(st transport.Stats) bool { return st.PagesData >= 4 }, 10*time.Second); st.PagesData != 4 {
						t.Fatalf("the destination counted %d data pages of the 4 written (%+v) in 10s", st.PagesData, st)
					}
				}
				for i, f := range tc.frames {
					if err := s.send.WriteControl(ctx, f); err != nil && i == 0 {
						t.Fatal(err)
					} else if err != nil { // the destination refused a frame before it: the session ended
						t.Logf("frame %d: %v", i, err)
						break
					}
				}
				if tc.commit != nil {
					t.Logf("the source's Flush: %v", s.send.Flush(ctx))
				}
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				defer rcancel()
				_, err := s.recv.RecvMessage(rctx)
				st := stats(ctx, t, s.recv)
				t.Logf("the destination: %v; counted %+v", err, st)
				if st.PagesData > tc.most {
					t.Errorf("the destination counted %d data pages (%d bytes on the wire); want at most %d", st.PagesData, st.BytesWire, tc.most)
				}
				if err == nil || rctx.Err() != nil || !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("the destination's session: %v; want a protocol error saying %q", err, tc.want)
				}
			})
		}
	}
}

// TestPagesTwiceInABatch: a caller may queue a page again before a
// Flush; the source then commits the batch before its runs would name
// more pages than guest RAM has, which the destination refuses since
// setup version 6 (TestLyingSourceCounts). Here all of guest RAM goes
// three times, in one SendPages call and in two more: each write is
// counted once on both sides and the pages arrive.
func TestPagesTwiceInABatch(t *testing.T) {
	eachCompletionMode(t, func(t *testing.T, p, _ string) {
		const ramPages = 1 << 20 / 4096
		s := open(t, p, 0, 1<<20, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		fillRandom(s.src, 12)
		all := transport.PageRun{First: 0, Count: ramPages, Kind: transport.KindData}
		for i, runs := range [][]transport.PageRun{{all, all}, {{First: 3, Count: 1, Kind: transport.KindData}, all}} {
			if err := s.send.SendPages(ctx, runs); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if err := s.send.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		want := uint64(3*ramPages + 1)
		if st := stats(ctx, t, s.recv); st.PagesData != want {
			t.Errorf("the destination counted %d data pages (%+v); want %d", st.PagesData, st, want)
		}
		if st := stats(ctx, t, s.send); st.PagesData != want {
			t.Errorf("the source counted %d data pages (%+v); want %d", st.PagesData, st, want)
		}
		if !bytes.Equal(s.src, s.dst) {
			t.Error("guest RAM differs after the Flush")
		}
	})
}

// TestLyingUrgentCounts: an urgent COMMIT says which runs its writes
// covered, and the destination counts their pages (data in PagesData
// and BytesWire, zero runs applied and in PagesZero) without seeing the
// writes land. A source never lists a page twice in one (postUrgent
// commits before a page repeats), so one lists at most guest RAM's
// pages; one that lists more is a protocol error, as a bulk batch's
// RUNS past guest RAM are (TestLyingSourceCounts). Here an honest
// source queues all of guest RAM twice in one call (two urgent COMMITs
// of all of it, counted whole), then lists all of guest RAM MaxURuns
// times in the COMMIT of a one-page request. Before,
// the destination counted them (255 times guest RAM's pages per
// COMMIT, 16 COMMITs in flight: BytesWire wrapped after some 2^64 /
// (255 × guest RAM's bytes) of them) and the session went on.
func TestLyingUrgentCounts(t *testing.T) {
	const ramPages = 1 << 20 / 4096
	d := transport.KindData
	all := transport.PageRun{First: 0, Count: ramPages, Kind: d}
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			var lie atomic.Bool
			send := rdma.New(nil)
			send.SetUrgentCommitRuns(func(list []transport.PageRun) []transport.PageRun {
				if !lie.Load() {
					return list
				}
				return slices.Repeat([]transport.PageRun{all}, rdma.MaxURuns)
			})
			s := open(t, p, 0, 1<<20, send)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			fillRandom(s.src, 13)
			if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{all, all}); err != nil {
				t.Fatal(err)
			}
			const honest = 2 * ramPages
			if st := waitStats(ctx, t, s.recv, func(st transport.Stats) bool { return st.PagesData >= honest }, 10*time.Second); st.PagesData != honest {
				t.Fatalf("the destination counted %d data pages of all of guest RAM sent twice urgently (%+v) in 10s; want %d", st.PagesData, st, honest)
			}
			lie.Store(true)
			t.Logf("the lying source's SendPagesUrgent: %v", s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: 8, Count: 1, Kind: d}}))
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			_, err := s.recv.RecvMessage(rctx)
			st := stats(ctx, t, s.recv)
			t.Logf("the destination: %v; counted %+v", err, st)
			if st.PagesData > honest {
				t.Errorf("the destination counted %d data pages (%d bytes on the wire); want at most %d", st.PagesData, st.BytesWire, honest)
			}
			want := fmt.Sprintf("urgent COMMIT 3 names %d pages, guest RAM has %d", rdma.MaxURuns*ramPages, ramPages)
			if err == nil || rctx.Err() != nil || !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), want) {
				t.Fatalf("the destination's session: %v; want a protocol error saying %q", err, want)
			}
		})
	}
}
