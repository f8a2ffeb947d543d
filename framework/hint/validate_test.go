package hint_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ferryvm/ferry/framework/hint"
	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/schema"
)

// TestValidate: a provider's own checks of its block reach the host as
// problems naming their attributes, in process and over gRPC; a provider
// without checks (no ValidateFunc, not a Validator at all, or a plugin
// built before the Validate RPC) has nothing to add.
func TestValidate(t *testing.T) {
	checks := &hint.Mock{ValidateFunc: func(_ context.Context, cfg hint.Config) error {
		lo, _ := cfg["min_gpa"].(int64)
		hi, _ := cfg["max_gpa"].(int64)
		var errs []error
		if hi <= lo {
			errs = append(errs, schema.Problemf("max_gpa", "must be above min_gpa (%#x)", lo))
		}
		if cfg["mode"] != "fast" {
			errs = append(errs, schema.Problemf("mode", `want "fast", not %q`, cfg["mode"]))
		}
		if cfg["broken"] == true {
			errs = append(errs, errors.New("the block as a whole"))
		}
		return errors.Join(errs...)
	}}
	bad := hint.Config{"min_gpa": int64(0x2000), "max_gpa": int64(0x1000), "mode": "slow", "broken": true}
	want := []schema.Problem{{Attribute: "max_gpa", Message: "must be above min_gpa (0x2000)"},
		{Attribute: "mode", Message: `want "fast", not "slow"`}, {Message: "the block as a whole"}}
	for name, p := range map[string]hint.Provider{"in process": checks, "over gRPC": overGRPC(t, checks, nil)} {
		err := hint.Validate(tctx(t), p, bad)
		if got := schema.Problems(err); !reflect.DeepEqual(got, want) || !errors.Is(err, hint.ErrBadConfig) {
			t.Errorf("%s: problems %+v (%v), want %+v", name, got, err, want)
		}
		if err := hint.Validate(tctx(t), p, hint.Config{"max_gpa": int64(1), "mode": "fast"}); err != nil {
			t.Errorf("%s: a good block: %v", name, err)
		}
	}
	none := map[string]hint.Provider{
		"mock without ValidateFunc":    &hint.Mock{},
		"over gRPC, no ValidateFunc":   overGRPC(t, &hint.Mock{}, nil),
		"over gRPC, no Validator":      overGRPC(t, newZeroProvider(), nil),
		"a plugin older than Validate": oldPlugin(t),
	}
	for name, p := range none {
		if err := hint.Validate(tctx(t), p, bad); err != nil {
			t.Errorf("%s: %v, want nothing to add", name, err)
		}
	}
	if err := overGRPC(t, &hint.Mock{}, nil).(hint.Validator).Validate(tctx(t), bad); !errors.Is(err, hint.ErrNotSupported) {
		t.Errorf("Validate of a provider without checks: %v, want ErrNotSupported", err)
	}
}

// oldServer is a Provider service built before Validate existed: the
// generated stubs answer it Unimplemented.
type oldServer struct{ pb.UnimplementedProviderServer }

// oldGRPCPlugin serves oldServer; the host side is today's client.
type oldGRPCPlugin struct{ hint.GRPCPlugin }

func (oldGRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, oldServer{})
	return nil
}

func oldPlugin(t *testing.T) hint.Provider {
	client, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{hint.PluginName: &oldGRPCPlugin{}})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(hint.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(hint.Provider)
}
