package engine

import (
	"testing"

	"github.com/ferryvm/ferry/framework/bitmap"
)

// TestPagesPushedOnce: Report.PagesPushed counts each page the pusher
// sent once, and not a page a reconnect's MISSING named since. The
// pusher takes 16 owed pages in a call that fails; MISSING names all 16
// after the reconnect; it pushes 8 of them again, and the next
// reconnect's MISSING names the other 8, which were never pushed since
// (they may yet arrive on request). 8 pages were pushed and not named
// missing afterwards. Before, every page the pusher took counted, each
// time: 24.
func TestPagesPushedOnce(t *testing.T) {
	absent := bitmap.New(64)
	absent.SetRange(0, 16)
	s := &sender{}
	pc, err := newPostcopy(s, absent)
	must(t, err)
	defer pc.close()
	reconnect := func(missing ...pageRun) {
		t.Helper()
		must(t, pc.renew())
		pc.owe(missing)
	}
	if got := pc.take(16, nil); len(got) != 1 || got[0] != (pageRun{0, 16}) {
		t.Fatalf("took %v, want pages 0-15", got)
	}
	reconnect(pageRun{0, 16}) // the call failed: none of them landed
	if got := pc.take(8, nil); len(got) != 1 || got[0] != (pageRun{0, 8}) {
		t.Fatalf("took %v, want pages 0-7", got)
	}
	reconnect(pageRun{8, 8}) // pages 0-7 landed
	pc.report()
	if s.rep.PagesPushed != 8 {
		t.Errorf("pages_pushed %d, want 8: pages 0-7, pushed twice and then landed", s.rep.PagesPushed)
	}
	if left := pc.owedCount(); left != 8 {
		t.Errorf("%d pages owed, want 8 (8-15)", left)
	}
}
