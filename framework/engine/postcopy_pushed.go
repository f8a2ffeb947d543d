package engine

import "github.com/ferryvm/ferry/framework/bitmap"

// pushedPages is Report.PagesPushed: the pages the pusher sent that the
// destination did not name missing afterwards, each page once. A page
// is added as the pusher takes it from the owed set, and taken off when
// a reconnect's MISSING names it again (whatever carried it did not
// land: a push call that failed, or a session that ended before it
// arrived). So a page pushed again after a reconnect counts once, and
// one that a failed push did not deliver and a request then did counts
// as requested, not pushed.
//
// It cannot tell a page of the current session that is still on its
// way from one that landed: until SETTLED, or at the end of a post-copy
// that broke for good, those count as pushed.
//
// n is kept rather than derived (set.Count): the push loop reports
// after every batch (pcSend.report), and a Count over a large guest's
// bitmap there would be work per batch in proportion to guest RAM.
type pushedPages struct {
	set *bitmap.Bitmap // the pages counted in n
	n   uint64
}

func newPushedPages(pages uint64) pushedPages {
	return pushedPages{set: bitmap.New(pages)}
}

// add counts pages [first, first+count) the pusher took; a page already
// counted is not counted again.
func (pp *pushedPages) add(first, count uint64) {
	end := min(first+count, pp.set.Len())
	for p := pp.set.NextClearIn(first, end); p < end; p = pp.set.NextClearIn(p+1, end) {
		pp.set.Set(p)
		pp.n++
	}
}

// missing takes pages [first, first+count) off the count: the
// destination lacks them.
func (pp *pushedPages) missing(first, count uint64) {
	end := min(first+count, pp.set.Len())
	for p := pp.set.NextSetIn(first, end); p < end; p = pp.set.NextSetIn(p+1, end) {
		pp.set.Clear(p)
		pp.n--
	}
}
