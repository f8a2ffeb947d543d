package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunNoEmptyCause: a source whose report carries no error (a fake,
// or an embedder's engine) ends a run whose reason and log name no
// empty cause. Before, a cancelled run failed with "migration
// cancelled:  (the source keeps running)", and the other ends below
// likewise ("handover unknown (); resolving").
func TestRunNoEmptyCause(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(t *testing.T, c *runCase) context.Context
		says string // in the reason
	}{
		{"cancelled", func(t *testing.T, c *runCase) context.Context {
			return c.src.interruptWhenSending(t)
		}, "migration cancelled (the source keeps running)"},
		{"failed", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
			return t.Context()
		}, "migration failed (the source keeps running)"},
		{"failed, the source's VM stopped", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusFailed, api.SideFailed)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed) // nothing to wait for
			return t.Context()
		}, "migration failed (the source's VM was stopped"},
		{"handover-unknown, resolved to the source", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			return t.Context()
		}, "migration failed in the handover (resolved: the guest runs on the source)"},
		{"postcopy-broken", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			return t.Context()
		}, "migration postcopy-broken (the guest is lost; the source stays paused)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			ctx := tc.set(t, c)
			_, log, err := c.run(ctx, t)
			if err == nil {
				t.Fatal("succeeded: want it failed")
			}
			wantSays(t, err.Error(), tc.says)
			for _, text := range []string{err.Error(), log} {
				for _, empty := range []string{":  (", ": (", " ()", ": \n"} {
					if strings.Contains(text, empty) {
						t.Errorf("an empty cause (%q) in %q", empty, text)
					}
				}
			}
		})
	}
}
