package session_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
)

// The test binary doubles as the plugin binaries: TestMain links it
// under the names below, and a process started under one of them serves
// that plugin instead of running tests.
var plugins = map[string]func(){
	transportName:         func() { transport.Serve(loopback.New()) },
	strangerTransport:     func() { transport.Serve(strangerPlugin()) },
	"ferry-hint-balloon":  func() { hint.Serve(balloonProvider()) },
	"ferry-hint-cmma":     func() { hint.Serve(cmmaProvider()) },
	"ferry-hint-logger":   func() { hint.Serve(loggerProvider()) },
	"ferry-hint-badblock": func() { hint.Serve(badBlockProvider()) },
	"ferry-hint-refuses":  func() { hint.Serve(refusesProvider()) },
	"ferry-hint-vandal":   func() { hint.Serve(vandalProvider()) },
	"ferry-hint-hostile":  func() { hint.Serve(hostileProvider()) },
	"ferry-hint-badinfo":  func() { hint.Serve(badInfoProvider()) },
	"ferry-hint-slow1":    func() { hint.Serve(quietProvider("slow1", meetOthers)) },
	"ferry-hint-slow2":    func() { hint.Serve(quietProvider("slow2", meetOthers)) },
	"ferry-hint-zr":       func() { hint.Serve(quietProvider("zerorun", func() {})) }, // not its binary's name
	"ferry-hint-noted":    func() { hint.Serve(notedProvider()) },
	"ferry-hint-slowexit": func() {
		hint.Serve(quietProvider("slowexit", func() {}))
		time.Sleep(slowExit) // go-plugin waits for the process to exit
	},
}

// How long a slow1 or slow2 provider's Info waits for the other one to be
// asked too (meetOthers), and how long a slowexit provider takes to exit
// once stopped.
const (
	slowStart = 20 * time.Second // started together they meet at once; a loaded machine may start the second late
	slowExit  = 1500 * time.Millisecond
)

// meetOthers notes "begin" in the file $FERRY_TEST_MEET names and waits
// until two did, or slowStart: providers started at the same time meet
// at once; started one after the other, the first waits it out. It
// notes "end" as it returns: the file (appended to, so in the order the
// notes were made) is the order of the calls across processes, which
// their relayed logs are not.
func meetOthers() {
	path := os.Getenv("FERRY_TEST_MEET")
	note := func(s string) {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(f, s)
			f.Close()
		}
	}
	note("begin")
	defer note("end")
	for end := time.Now().Add(slowStart); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Count(string(b), "begin") >= 2 {
			return
		}
	}
}

// transportName is the loopback transport (its "socket" block attribute
// names the unix socket the receiver listens on).
const transportName = "ferry-transport-loopback"

// pluginDir holds the links; set by TestMain.
var pluginDir string

func plugin(name string) string { return filepath.Join(pluginDir, name) }

func TestMain(m *testing.M) {
	if serve := plugins[filepath.Base(os.Args[0])]; serve != nil {
		serve()
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err == nil {
		pluginDir, err = os.MkdirTemp("", "ferry-session-plugins")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(pluginDir)
	for name := range plugins {
		if err := os.Symlink(exe, plugin(name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// balloonProvider hints, as free, what the embedder's BalloonHint
// reports, and gives it back (BalloonDone) when its window closes for
// good: a provider that calls back into the embedder's capability.
// Configure first checks the VM it is given: its PID's memory at each
// region's HostAddr must hold what the region's file holds.
func balloonProvider() hint.Provider {
	var mu sync.Mutex // gRPC serves each call on a goroutine of its own
	var vm hint.VM
	var host hint.Host
	get := func() (hint.VM, hint.Host) { mu.Lock(); defer mu.Unlock(); return vm, host }
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "balloon", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) {
			return hint.Schema{{Name: "label", Type: schema.TypeString, Required: true}}, nil
		},
		ConfigureFunc: func(_ context.Context, _ hint.Config, v hint.VM, h hint.Host) error {
			mu.Lock()
			vm, host = v, h
			mu.Unlock()
			return checkVM(v)
		},
		HintsFunc: func(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			vm, host := get()
			rs, err := host.BalloonHint(ctx)
			if err != nil {
				return err
			}
			return emit(pageRanges(vm, rs))
		},
		CloseFunc: func(ctx context.Context, final bool) error {
			if _, host := get(); final {
				return host.BalloonDone(ctx)
			}
			return nil
		},
	}
}

// checkVM reads the first page of each region through /proc/PID/mem at
// its HostAddr and through its file, and wants the same bytes.
func checkVM(vm hint.VM) error {
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", vm.PID))
	if err != nil {
		return err
	}
	defer mem.Close()
	for i, r := range vm.RAM {
		a, b := make([]byte, 4096), make([]byte, 4096)
		if _, err := mem.ReadAt(a, int64(r.HostAddr)); err != nil {
			return fmt.Errorf("region %d: read VMM memory at %#x: %w", i, r.HostAddr, err)
		}
		if _, err := vm.Files[r.File].ReadAt(b, int64(r.Offset)); err != nil {
			return fmt.Errorf("region %d: read file: %w", i, err)
		}
		if string(a) != string(b) {
			return fmt.Errorf("region %d: HostAddr %#x does not map file %d offset %#x", i, r.HostAddr, r.File, r.Offset)
		}
	}
	return nil
}

// pageRanges turns guest-physical ranges into framework page ranges.
func pageRanges(vm hint.VM, rs []hint.GPARange) []hint.Range {
	var out []hint.Range
	for _, g := range rs {
		var base uint64
		for _, r := range vm.RAM {
			if g.GPA >= r.GPA && g.GPA+g.Size <= r.GPA+r.Size {
				out = append(out, hint.Range{First: base + (g.GPA-r.GPA)/4096, Count: g.Size / 4096})
			}
			base += r.Size / 4096
		}
	}
	return out
}

// vandalProvider makes the mistakes a provider could make with the guest
// RAM files it is given: at Configure it writes, punches, truncates and
// maps each of them writable. Configure fails, naming what it managed
// to do, if any of it worked; it hints nothing.
func vandalProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "vandal", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(_ context.Context, _ hint.Config, vm hint.VM, _ hint.Host) error {
			var did []string
			for i, f := range vm.Files {
				fd := int(f.Fd())
				if _, err := unix.Pwrite(fd, make([]byte, 4096), 4096); err == nil {
					did = append(did, fmt.Sprintf("wrote file %d", i))
				}
				if unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20) == nil {
					did = append(did, fmt.Sprintf("punched file %d", i))
				}
				if m, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
					did = append(did, fmt.Sprintf("mapped file %d writable", i))
					unix.Munmap(m)
				}
				if unix.Ftruncate(fd, 0) == nil {
					did = append(did, fmt.Sprintf("truncated file %d", i))
				}
			}
			if len(did) > 0 {
				return fmt.Errorf("the provider %s", strings.Join(did, ", "))
			}
			return nil
		},
		HintsFunc: func(context.Context, hint.Request, func([]hint.Range) error) error { return nil },
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// quietProvider, called name, hints nothing; its Info runs wait and
// logs when it begins and ends.
func quietProvider(name string, wait func()) hint.Provider {
	log := hint.Logger(name)
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			log.Info("info begins", "pid", os.Getpid())
			wait()
			log.Info("info ends", "pid", os.Getpid())
			return hint.Info{Name: name, Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc:    func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return nil },
		HintsFunc:     func(context.Context, hint.Request, func([]hint.Range) error) error { return nil },
		CloseFunc:     func(context.Context, bool) error { return nil },
	}
}

// notedProvider, called "noted", hints nothing; its Configure creates
// the file $FERRY_TEST_CONFIGURED names: whether a session configured a
// provider at all.
func notedProvider() hint.Provider {
	p := quietProvider("noted", func() {}).(*hint.Mock)
	p.ConfigureFunc = func(context.Context, hint.Config, hint.VM, hint.Host) error {
		return os.WriteFile(os.Getenv("FERRY_TEST_CONFIGURED"), nil, 0o600)
	}
	return p
}

// cmmaProvider needs the host's CMMA bits, which the tests' hosts lack:
// its Configure fails with ErrNotSupported.
func cmmaProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "cmma", Version: "test", Meaning: hint.MeaningUnused}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(ctx context.Context, _ hint.Config, _ hint.VM, h hint.Host) error {
			if h == nil {
				return fmt.Errorf("%w: no host", hint.ErrNotSupported)
			}
			_, _, err := h.CMMABits(ctx, 0, 1)
			return err
		},
	}
}

// loggerProvider logs one message at each level from Info (with a
// key/value pair; the info message also a duration and a large count),
// then fails it: its logs are all it is for.
func loggerProvider() hint.Provider {
	log := hint.Logger("logger")
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			log.Trace("trace message", "n", 0)
			log.Debug("debug message", "n", 1)
			log.Info("info message", "n", 2, "took", 148*time.Millisecond, "pages", 1<<20)
			log.Warn("warn message", "n", 3)
			log.Error("error message", "n", 4)
			return hint.Info{}, errors.New("logger: done logging")
		},
	}
}

// badBlockProvider's schema has no attributes: any block is refused.
func badBlockProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "badblock", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil },
	}
}

// refusesProvider's own checks (hint.Validator) refuse every block; its
// Configure would fail the test's migration by crashing.
func refusesProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "refuses", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil },
		ValidateFunc: func(context.Context, hint.Config) error {
			return schema.Problemf("max_gpa", "must be above min_gpa")
		},
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error {
			os.Exit(7) // never reached: Validate refused the block
			return nil
		},
	}
}
