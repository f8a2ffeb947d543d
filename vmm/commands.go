package vmm

import (
	"context"
	"encoding/json"

	"github.com/ferryvm/ferry/vmm/control"
)

// Serve registers the VM's control commands on s:
//
//	status  → Status
//	pause   → parks the vCPUs, then returns Status
//	resume  → runs them again, then returns Status
//	quit    → stops the VM (Run returns 0), then returns Status
func (v *VM) Serve(s *control.Server) {
	s.Handle("status", func(context.Context, json.RawMessage) (any, error) {
		return v.Status(), nil
	})
	s.Handle("pause", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := v.Pause(ctx); err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
	s.Handle("resume", func(context.Context, json.RawMessage) (any, error) {
		if err := v.Resume(); err != nil {
			return nil, err
		}
		return v.Status(), nil
	})
	s.Handle("quit", func(context.Context, json.RawMessage) (any, error) {
		v.Stop()
		return v.Status(), nil
	})
}
