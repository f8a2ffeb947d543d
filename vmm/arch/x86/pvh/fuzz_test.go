package pvh

import "testing"

// FuzzParse checks that Parse never panics and that whatever it accepts is
// consistent and can be handed to Load without panicking.
func FuzzParse(f *testing.F) {
	for _, class := range []int{32, 64} {
		f.Add(validELF(class).build())
		e := validELF(class)
		e.noteAlign = 8
		e.notes = append([]testNote{{name: "GNU\x00", typ: 5, desc: make([]byte, 12)}}, e.notes...)
		f.Add(e.build())
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, image []byte) {
		k, err := Parse(image)
		if err != nil {
			return
		}
		if len(k.Segments) == 0 || k.Low >= k.High {
			t.Fatalf("accepted kernel with no extent: %+v", k)
		}
		for _, s := range k.Segments {
			if s.FileSize > s.MemSize || s.Offset+s.FileSize > uint64(len(image)) || s.GPA < k.Low || s.GPA+s.MemSize > k.High {
				t.Fatalf("accepted inconsistent segment %+v in %+v", s, k)
			}
		}
		_ = k.Load(image, newFakeMem(4<<20), []Region{{0, 4 << 20}})
	})
}
