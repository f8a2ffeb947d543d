package engine

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
)

// TestForgetHolesKeepsData: after a probe's dirty sync the hole map
// forgets its holes (a guest's write may have filled one: the next query
// for them asks the file again) and keeps its populated extent, which
// no write can empty: a query there is answered without asking, where
// the probe used to drop the whole answer and the classifier's next
// query walked the populated extent again (SEEK_HOLE on shmem visits
// every page of it), at every probe.
func TestForgetHolesKeepsData(t *testing.T) {
	const pg = framework.PageSize
	fd, err := unix.MemfdCreate("holes-test", 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	must(t, unix.Ftruncate(fd, 64*pg))
	data := make([]byte, pg)
	data[0] = 1
	for p := int64(4); p < 8; p++ { // pages [4, 8) populated, the rest holes
		_, err := unix.Pwrite(fd, data, p*pg)
		must(t, err)
	}

	// A hole answered before a write: asked again after forgetHoles.
	h := holes{fd: fd}
	if hole, until := h.at(pg); !hole || until != 4*pg {
		t.Fatalf("at page 1: hole %v until %d; want a hole until page 4", hole, until/pg)
	}
	_, err = unix.Pwrite(fd, data, pg) // the guest fills page 1
	must(t, err)
	h.forgetHoles()
	if hole, _ := h.at(pg); hole {
		t.Error("page 1, written after the hole was answered: still a hole after forgetHoles")
	}

	// A populated extent answered: kept. The descriptor is taken away,
	// so any query of the file would fail (broken: "data to the end").
	k := holes{fd: fd}
	if hole, until := k.at(5 * pg); hole || until != 8*pg {
		t.Fatalf("at page 5: hole %v until %d; want data until page 8", hole, until/pg)
	}
	k.fd = -1
	k.forgetHoles()
	if hole, until := k.at(6 * pg); hole || until != 8*pg || k.broken {
		t.Errorf("at page 6 after forgetHoles: hole %v until %d (file asked again: %v); want the kept answer, data until page 8",
			hole, until/pg, k.broken)
	}
}
