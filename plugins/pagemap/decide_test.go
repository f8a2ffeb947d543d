package pagemap

import (
	"context"
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

func TestDecide(t *testing.T) {
	const ok, bad, refuse = 0, 1, 2 // no error, ErrBadConfig, plain error
	for _, c := range []struct {
		method string
		kind   mapKind
		veto   bool
		err    int
	}{
		{MethodAuto, mapShared, false, ok},
		{MethodAuto, mapPrivate, true, ok},
		{MethodAuto, mapUnknown, false, ok},
		{MethodAuto, mapOther, false, refuse},
		{MethodSeek, mapShared, false, ok},
		{MethodSeek, mapPrivate, false, bad},
		{MethodSeek, mapUnknown, false, ok},
		{MethodSeek, mapOther, false, refuse},
		{MethodPagemap, mapShared, true, ok},
		{MethodPagemap, mapPrivate, true, ok},
		{MethodPagemap, mapUnknown, false, bad},
		{MethodPagemap, mapOther, false, refuse},
	} {
		veto, err := decide(c.method, 3, c.kind, "why")
		got := ok
		if err != nil {
			got = refuse
			if errors.Is(err, hint.ErrBadConfig) {
				got = bad
			}
		}
		if veto != c.veto || got != c.err {
			t.Errorf("%s/%v: veto %t, err %v; want veto %t, error kind %d", c.method, c.kind, veto, err, c.veto, c.err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	for _, c := range []struct {
		in   hint.Config
		want string
		err  bool
	}{
		{nil, MethodAuto, false},
		{hint.Config{"method": "seek"}, MethodSeek, false},
		{hint.Config{"method": "pagemap"}, MethodPagemap, false},
		{hint.Config{"method": "auto"}, MethodAuto, false},
		{hint.Config{"method": "mincore"}, "", true},
		{hint.Config{"method": int64(1)}, "", true},
		{hint.Config{"deadline": int64(1)}, MethodAuto, false}, // the engine's: ignored
		{hint.Config{"workers": int64(1)}, "", true},
	} {
		got, err := parseConfig(c.in)
		if (err != nil) != c.err || (!c.err && got.method != c.want) {
			t.Errorf("%v: %+v, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, hint.ErrBadConfig) {
			t.Errorf("%v: %v is not ErrBadConfig", c.in, err)
		}
	}
	s, _ := New(nil).Schema(context.Background())
	if len(s) != 1 || s[0].Name != "method" || s[0].Default != MethodAuto {
		t.Fatalf("schema %+v", s)
	}
	info, _ := New(nil).Info(context.Background())
	if info.Name != Name || info.Meaning != hint.MeaningZero {
		t.Fatalf("info %+v", info)
	}
}
