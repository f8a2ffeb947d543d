package transport_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestErrorClassesOverGRPC: an implementation's error reaches the host
// with its class and its text.
func TestErrorClassesOverGRPC(t *testing.T) {
	for _, class := range []error{
		transport.ErrNotSupported, transport.ErrBadConfig, transport.ErrProtocol, transport.ErrClosed, transport.ErrUnauthenticated,
		transport.ErrWrongMigration, transport.ErrPluginGone, context.DeadlineExceeded, context.Canceled, nil,
	} {
		var want error = fmt.Errorf("flush: peer said no: %w", class)
		if class == nil {
			want = errors.New("flush: no class at all")
		}
		tr := overGRPC(t, &transport.Mock{FlushFunc: func(context.Context) error { return want }}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tr.Flush(ctx)
		cancel()
		if err == nil || err.Error() != want.Error() || (class != nil && !errors.Is(err, class)) {
			t.Errorf("class %v: got %v, want %v", class, err, want)
		}
		for _, other := range []error{transport.ErrNotSupported, transport.ErrPluginGone, context.Canceled} {
			if other != class && errors.Is(err, other) {
				t.Errorf("class %v: error also matches %v", class, other)
			}
		}
	}
}

// TestMockDefaults: a Mock without closures supports nothing, in process
// and over gRPC.
func TestMockDefaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, tr := range map[string]transport.Transport{"in process": &transport.Mock{}, "gRPC": overGRPC(t, &transport.Mock{}, nil)} {
		_, e1 := tr.Info(ctx)
		_, e2 := tr.Schema(ctx)
		e3 := tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend})
		e4 := tr.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}})
		e5 := tr.Flush(ctx)
		e6 := tr.SendMessage(ctx, transport.Message{Kind: 1})
		_, e7 := tr.RecvMessage(ctx)
		_, e8 := tr.Stats(ctx)
		e9 := tr.Close()
		for i, err := range []error{e1, e2, e3, e4, e5, e6, e7, e8, e9} {
			if !errors.Is(err, transport.ErrNotSupported) {
				t.Errorf("%s: method %d = %v; want ErrNotSupported", name, i+1, err)
			}
		}
	}
}

// TestConversions: schema, config, RAM and stats cross gRPC unchanged;
// the plugin sees its own files.
func TestConversions(t *testing.T) {
	want := plugintest.SampleSchema()
	files := []*os.File{os.Stdin, os.Stdout}
	stats := transport.Stats{BytesWire: 1 << 40, PagesData: 3, PagesZero: 5, Compressed: 2}
	var got transport.OpenRequest
	tr := overGRPC(t, &transport.Mock{
		SchemaFunc: func(context.Context) (schema.Schema, error) { return want, nil },
		OpenFunc:   func(_ context.Context, r transport.OpenRequest) error { got = r; return nil },
		StatsFunc:  func(context.Context) (transport.Stats, error) { return stats, nil },
	}, files)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tr.Schema(ctx)
	if err != nil || !reflect.DeepEqual(s, want) {
		t.Errorf("Schema = %#v, %v\nwant %#v", s, err, want)
	}
	req := transport.OpenRequest{
		Role:   transport.RoleReceive,
		Config: schema.Config{"addr": "10.0.0.1:7000", "streams": int64(8), "tls": false, "timeout": int64(-1)},
		RAM:    []transport.RAMRegion{{GPA: 1 << 32, Size: 1 << 21, File: 1, Offset: 4096}},
		Credentials: transport.Credentials{Certificate: []byte("cert"), Key: []byte("key"),
			PeerRoots: []byte("roots"), Plaintext: true},
		Tag: transport.Tag{0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xef},
	}
	for _, tag := range []transport.Tag{req.Tag, {}} { // the zero Tag crosses as zero
		req.Tag, req.Files = tag, nil
		if err := tr.Open(ctx, req); err != nil {
			t.Fatal(err)
		}
		req.Files = files
		if !reflect.DeepEqual(got, req) {
			t.Errorf("plugin got %#v\nwant %#v", got, req)
		}
	}
	if st, err := tr.Stats(ctx); err != nil || st != stats {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	err = tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: schema.Config{"x": 1.5}})
	if !errors.Is(err, transport.ErrBadConfig) {
		t.Errorf("Open with a float attribute = %v; want ErrBadConfig", err)
	}
}

// TestSendPagesSplit: a large batch reaches the plugin whole, in order,
// in RPCs of bounded size.
func TestSendPagesSplit(t *testing.T) {
	var batches [][]transport.PageRun
	tr := overGRPC(t, &transport.Mock{SendPagesFunc: func(_ context.Context, runs []transport.PageRun) error {
		batches = append(batches, runs)
		return nil
	}}, nil)
	var runs []transport.PageRun
	for i := range uint64(70000) {
		runs = append(runs, transport.PageRun{First: 2 * i, Count: 1, Kind: transport.Kind(1 + i%2)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.SendPages(ctx, runs); err != nil {
		t.Fatal(err)
	}
	if len(batches) != 3 {
		t.Errorf("%d RPCs for 70000 runs, want 3", len(batches))
	}
	if all := slices.Concat(batches...); !slices.Equal(all, runs) {
		t.Errorf("the plugin got %d runs, not the %d sent in order", len(all), len(runs))
	}
}

// TestRefuseOtherTag: the mock's migration tag rule refuses exactly a
// sender whose tag differs from a receiver's non-zero one, the missing
// tag included, with ErrWrongMigration, in process and over gRPC.
func TestRefuseOtherTag(t *testing.T) {
	a, b := transport.Tag{1}, transport.Tag{2}
	for _, c := range []struct {
		recv, send transport.Tag
		refused    bool
	}{{a, a, false}, {a, b, true}, {a, transport.Tag{}, true}, {transport.Tag{}, b, false}, {transport.Tag{}, transport.Tag{}, false}} {
		mock := &transport.Mock{OpenFunc: func(_ context.Context, req transport.OpenRequest) error {
			return transport.RefuseOtherTag(c.recv, req.Tag)
		}}
		for name, tr := range map[string]transport.Transport{"in process": mock, "gRPC": overGRPC(t, mock, nil)} {
			err := tr.Open(context.Background(), transport.OpenRequest{Role: transport.RoleSend, Tag: c.send})
			if c.refused != errors.Is(err, transport.ErrWrongMigration) || !c.refused && err != nil {
				t.Errorf("%s: receiver %x, sender %x: Open = %v, want refused %v", name, c.recv[:1], c.send[:1], err, c.refused)
			}
		}
	}
}
