package hint

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestConfigureRefusesBadLayout: the plugin side refuses a Configure
// whose VM the provider could not trust (regions overlapping, out of
// order, wrapping past 2^64, unaligned, past a file's int64 offsets or
// past the end of their file), with ErrBadConfig, before the provider
// sees it; a well-formed VM reaches it, also one backed by a file that
// has no size (a pipe here, a device in a VMM).
func TestConfigureRefusesBadLayout(t *testing.T) {
	const mib = 1 << 20
	ram := plugintest.Memfd(t, "ram", 4*mib)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	files := []*os.File{ram, pr}
	region := func(gpa, size, offset uint64, file uint32) *pb.Region {
		return &pb.Region{Gpa: gpa, Size: size, File: file, Offset: offset}
	}
	for _, c := range []struct {
		name string
		ram  []*pb.Region
		bad  string // part of the error; "": accepted
	}{
		{"two regions of one file", []*pb.Region{region(0, mib, 0, 0), region(1<<32, 3*mib, mib, 0)}, ""},
		{"the whole file", []*pb.Region{region(0, 4*mib, 0, 0)}, ""},
		{"a file without a size", []*pb.Region{region(0, 1<<40, 0, 1)}, ""},
		{"no RAM", nil, ""},
		{"overlapping", []*pb.Region{region(0, 2*mib, 0, 0), region(mib, mib, 2*mib, 0)}, "overlaps"},
		{"out of order", []*pb.Region{region(1<<32, mib, 0, 0), region(0, mib, mib, 0)}, "overlaps or precedes"},
		{"wraps past 2^64", []*pb.Region{region(math.MaxUint64-mib+1, 2*mib, 0, 1)}, "runs past the end"},
		{"past int64 offsets", []*pb.Region{region(0, mib, 1<<63, 1)}, "runs past the end"},
		{"unaligned", []*pb.Region{region(100, mib, 0, 0)}, "not page-aligned"},
		{"empty", []*pb.Region{region(0, 0, 0, 0)}, "not page-aligned"},
		{"past the file's end", []*pb.Region{region(0, 4*mib, mib, 0)}, "past the end of its file"},
		{"second region past the file's end", []*pb.Region{region(0, mib, 0, 0), region(1<<32, mib, 4*mib, 0)}, "past the end of its file"},
		{"a file the plugin lacks", []*pb.Region{region(0, mib, 0, 2)}, "uses file 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			configured := false
			s := newServer(&Mock{ConfigureFunc: func(context.Context, Config, VM, Host) error {
				configured = true
				return nil
			}}, files, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.Configure(ctx, &pb.ConfigureRequest{Vm: &pb.VM{Id: "vm", Ram: c.ram}})
			if c.bad == "" {
				if err != nil || !configured {
					t.Errorf("Configure = %v (provider configured: %v); want it accepted", err, configured)
				}
				return
			}
			got := classes.FromRPC(ctx, err)
			if !errors.Is(got, ErrBadConfig) || !strings.Contains(got.Error(), c.bad) || configured {
				t.Errorf("Configure = %v (provider configured: %v); want ErrBadConfig saying %q, the provider not called",
					got, configured, c.bad)
			}
		})
	}
}
