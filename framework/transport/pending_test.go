package transport

import (
	"testing"
	"time"
)

func TestEvictable(t *testing.T) {
	t0 := time.Now()
	at := func(host string, s int) Pending {
		return Pending{Host: host, Since: t0.Add(time.Duration(s) * time.Second)}
	}
	for _, c := range []struct {
		name    string
		pending map[string]Pending
		newHost string
		want    string
	}{
		{"none pending", map[string]Pending{}, "a", ""},
		{"no host over its share: the oldest",
			map[string]Pending{"src": at("s", 0), "x1": at("x", 1), "y1": at("y", 2)}, "z", "src"},
		{"a host over its share loses its oldest",
			map[string]Pending{"src": at("s", 0), "f1": at("f", 1), "f2": at("f", 2), "f3": at("f", 3)}, "g", "f1"},
		{"the new connection counts toward its host's share",
			map[string]Pending{"src": at("s", 0), "f1": at("f", 1), "f2": at("f", 2)}, "f", "f1"},
		{"several hosts over their share: the oldest of theirs",
			map[string]Pending{"src": at("s", 0), "f1": at("f", 3), "f2": at("f", 4), "f3": at("f", 5),
				"g1": at("g", 1), "g2": at("g", 6), "g3": at("g", 7)}, "h", "g1"},
	} {
		victim, ok := Evictable(c.pending, c.newHost, 2)
		if ok != (c.want != "") || victim != c.want {
			t.Errorf("%s: evicts %q (%v), want %q", c.name, victim, ok, c.want)
		}
	}
}
