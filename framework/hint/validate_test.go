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
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
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

func oldPlugin(t *testing.T) hint.Provider { return rawPlugin(t, oldServer{}) }

// rawGRPCPlugin serves srv, a Provider service written against the
// generated stubs (a plugin in any language); the host side is today's
// client.
type rawGRPCPlugin struct {
	hint.GRPCPlugin
	srv pb.ProviderServer
}

func (r *rawGRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, r.srv)
	return nil
}

func rawPlugin(t *testing.T, srv pb.ProviderServer) hint.Provider {
	client, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{hint.PluginName: &rawGRPCPlugin{srv: srv}})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(hint.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(hint.Provider)
}

// hostileServer answers Validate with answer, whatever it is asked.
type hostileServer struct {
	pb.UnimplementedProviderServer
	answer *schemapb.ValidateResponse
}

func (h hostileServer) Validate(context.Context, *schemapb.ValidateRequest) (*schemapb.ValidateResponse, error) {
	return h.answer, nil
}

// TestValidateHostileAnswer: a third-party provider (not necessarily Go,
// not necessarily built with this package) that answers Validate with
// more than schema.MaxProblems problems has the first MaxProblems-1 kept
// and the rest counted in a last problem; one whose answer exceeds the
// host's 1 MiB bound is an error of the call, not a list of problems.
// The bounds are the transport kind's (plugintest.CheckValidateBounds).
func TestValidateHostileAnswer(t *testing.T) {
	plugintest.CheckValidateBounds(t, hint.ErrBadConfig, func(answer *schemapb.ValidateResponse) error {
		return hint.Validate(tctx(t), rawPlugin(t, hostileServer{answer: answer}), hint.Config{"mode": "fast"})
	})
}

// TestValidateServedBounds: a Go provider whose Validate finds more than
// the host takes (schema.MaxProblems problems, or 1 MiB of them) sends
// what fits and counts the rest, and the host reports them as problems,
// not as a failed call; text that is not UTF-8 comes back with U+FFFD,
// an error that joins none as one problem. The bounds are the transport
// kind's (plugintest.CheckValidateServed).
func TestValidateServedBounds(t *testing.T) {
	plugintest.CheckValidateServed(t, hint.ErrBadConfig, func(problems error) error {
		p := overGRPC(t, &hint.Mock{ValidateFunc: func(context.Context, hint.Config) error { return problems }}, nil)
		return hint.Validate(tctx(t), p, hint.Config{"mode": "fast"})
	})
}
