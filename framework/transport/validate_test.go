package transport_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// checksPlugin is a transport whose only method is Validate: streams
// must be 1 to 16, compress "lz4" or "none", and a block with broken =
// true is refused as a whole.
func checksPlugin() transport.Transport {
	return &transport.Mock{ValidateFunc: func(_ context.Context, cfg schema.Config) error {
		var errs []error
		if n, _ := cfg["streams"].(int64); n < 1 || n > 16 {
			errs = append(errs, schema.Problemf("streams", "must be a number from 1 to 16, not %v", cfg["streams"]))
		}
		if c := cfg["compress"]; c != "lz4" && c != "none" {
			errs = append(errs, schema.Problemf("compress", `must be "lz4" or "none", not %v`, c))
		}
		if cfg["broken"] == true {
			errs = append(errs, errors.New("the block as a whole"))
		}
		return errors.Join(errs...)
	}}
}

func vctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestValidate: a transport's own checks of its block reach the host as
// problems naming their attributes, in process, over gRPC and from a
// launched plugin process; a transport without checks (no ValidateFunc,
// not a Validator at all, or a plugin built before the Validate RPC)
// has nothing to add.
func TestValidate(t *testing.T) {
	bad := schema.Config{"streams": int64(17), "compress": "zstd", "broken": true}
	want := []schema.Problem{{Attribute: "streams", Message: "must be a number from 1 to 16, not 17"},
		{Attribute: "compress", Message: `must be "lz4" or "none", not zstd`}, {Message: "the block as a whole"}}
	checking := map[string]transport.Transport{
		"in process":        checksPlugin(),
		"over gRPC":         overGRPC(t, checksPlugin(), nil),
		"a launched plugin": launch(t, "ferry-transport-checks", nil),
	}
	for name, tr := range checking {
		err := transport.Validate(vctx(t), tr, bad)
		if got := schema.Problems(err); !reflect.DeepEqual(got, want) || !errors.Is(err, transport.ErrBadConfig) {
			t.Errorf("%s: problems %+v (%v), want %+v", name, got, err, want)
		}
		if err := transport.Validate(vctx(t), tr, schema.Config{"streams": int64(16), "compress": "none"}); err != nil {
			t.Errorf("%s: a good block: %v", name, err)
		}
	}
	none := map[string]transport.Transport{
		"mock without ValidateFunc":     &transport.Mock{},
		"over gRPC, no ValidateFunc":    overGRPC(t, &transport.Mock{}, nil),
		"over gRPC, no Validator":       overGRPC(t, loopback.New(), nil),
		"a launched plugin, no checks":  launch(t, "ferry-transport-loopback", nil),
		"a plugin older than Validate":  oldPlugin(t),
		"no Validator, in process":      loopback.New(),
		"a launched plugin after Close": closed(t, launch(t, "ferry-transport-loopback", nil)),
	}
	for name, tr := range none {
		if err := transport.Validate(vctx(t), tr, bad); err != nil {
			t.Errorf("%s: %v, want nothing to add", name, err)
		}
	}
	if err := overGRPC(t, &transport.Mock{}, nil).(transport.Validator).Validate(vctx(t), bad); !errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("Validate of a transport without checks: %v, want ErrNotSupported", err)
	}
}

// closed closes tr and returns it: a launched transport starts its
// plugin again for the next call.
func closed(t *testing.T, tr transport.Transport) transport.Transport {
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// oldServer is a Transport service built before Validate existed: the
// generated stubs answer it Unimplemented.
type oldServer struct {
	pb.UnimplementedTransportServer
}

// oldPlugin serves oldServer over a unix socket in this process; the
// host side is today's client.
func oldPlugin(t *testing.T) transport.Transport { return rawPlugin(t, oldServer{}) }

// rawPlugin serves srv, a Transport service written against the
// generated stubs (a plugin in any language), over a unix socket in this
// process; the host side is today's client.
func rawPlugin(t *testing.T, srv pb.TransportServer) transport.Transport {
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterTransportServer(s, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	conn, err := grpc.Dial("unix://"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		<-served
	})
	c, err := (&transport.GRPCPlugin{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return c.(transport.Transport)
}

// hostileServer answers Validate with answer, whatever it is asked.
type hostileServer struct {
	pb.UnimplementedTransportServer
	answer *schemapb.ValidateResponse
}

func (h hostileServer) Validate(context.Context, *schemapb.ValidateRequest) (*schemapb.ValidateResponse, error) {
	return h.answer, nil
}

// TestValidateHostileAnswer: a plugin (not necessarily Go, not
// necessarily built with schemaconv) that answers Validate with more
// than schema.MaxProblems problems has the first MaxProblems-1 kept and
// the rest counted; one whose answer exceeds the host's 1 MiB bound is
// an error of the call, not a list of problems, and the host neither
// reads it nor blocks. The bounds are the hint kind's
// (plugintest.CheckValidateBounds).
func TestValidateHostileAnswer(t *testing.T) {
	plugintest.CheckValidateBounds(t, transport.ErrBadConfig, func(answer *schemapb.ValidateResponse) error {
		return transport.Validate(vctx(t), rawPlugin(t, hostileServer{answer: answer}), schema.Config{"streams": int64(1)})
	})
}

// TestValidateServedBounds: a Go transport whose Validate finds more
// than the host takes (schema.MaxProblems problems, or 1 MiB of them)
// sends what fits and counts the rest, and the host reports them as
// problems, not as a failed call; text that is not UTF-8 comes back
// with U+FFFD, an error that joins none as one problem. The bounds are
// the hint kind's (plugintest.CheckValidateServed).
func TestValidateServedBounds(t *testing.T) {
	plugintest.CheckValidateServed(t, transport.ErrBadConfig, func(problems error) error {
		tr := overGRPC(t, &transport.Mock{ValidateFunc: func(context.Context, schema.Config) error { return problems }}, nil)
		return transport.Validate(vctx(t), tr, schema.Config{"streams": int64(1)})
	})
}
