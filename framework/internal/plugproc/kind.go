package plugproc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Kind is what a plugin kind (framework/transport, framework/hint) tells
// this package about itself; Launch and Serve do the rest the same way
// for every kind. The kinds keep their own lifecycles on top: a
// transport restarts its process on demand, a hint provider never does.
type Kind struct {
	// Name is the kind's name ("transport", "hint"): the plugin is
	// dispensed under it, and errors and logs name it.
	Name      string
	Handshake plugin.HandshakeConfig
	FilesEnv  string // how many RAM files the plugin received, at fds 3, 4, ...
	LevelEnv  string // the host logger's level, for Logger
	// ChannelEnv names the descriptor of the plugin's end of a socket
	// the host handed over besides the RAM files (Launch's channel); it
	// is unset when the host handed none.
	ChannelEnv string
	// HeldEnv lists, as a JSON array of names, the descriptors the host
	// handed over after the channel (Launch's held); it is unset when
	// the host handed none.
	HeldEnv string
	// AnswerEarly are the kind's unary methods (full gRPC names, as
	// protoc-gen-go-grpc's *_FullMethodName) on which the host asks the
	// plugin to answer a margin before the call's deadline, so that a
	// call that runs out of time returns the plugin's reason (answer.go
	// says which calls are worth it). Serve's side honours the margin on
	// any unary call the host asks it for.
	AnswerEarly []string
}

// Held is a descriptor the host keeps for a kind across its processes
// and hands to each one it starts (a transport's listening sockets),
// under a name the plugin looks it up by (InheritedHeld).
type Held struct {
	Name string
	File *os.File
}

// MaxHeld and MaxHeldName bound what Launch hands over and InheritedHeld takes.
const (
	MaxHeld     = 16
	MaxHeldName = 256
)

// NewKind returns the Kind called name whose processes' environment
// variables start with envPrefix: envPrefix_FILES, envPrefix_LOG_LEVEL,
// envPrefix_CHANNEL, envPrefix_HELD.
func NewKind(name, envPrefix string, hs plugin.HandshakeConfig) Kind {
	return Kind{Name: name, Handshake: hs, FilesEnv: envPrefix + "_FILES", LevelEnv: envPrefix + "_LOG_LEVEL",
		ChannelEnv: envPrefix + "_CHANNEL", HeldEnv: envPrefix + "_HELD"}
}

// WithAnswerEarly returns k whose host asks for an early answer on
// methods (Kind.AnswerEarly).
func (k Kind) WithAnswerEarly(methods ...string) Kind {
	k.AnswerEarly = methods
	return k
}

// Launch starts one plugin process of kind k from the binary at path
// (Start: mutual TLS, a private socket directory), handing it files, and
// returns the process and the client p dispensed, which must be a C. p
// is the kind's go-plugin plugin holding the same files. channel, if not
// nil, is handed over after the files (the plugin finds it with
// InheritedChannel); the caller keeps its own copy open. held, which
// needs a channel, are handed over after it (the plugin finds them with
// InheritedHeld); the caller keeps its copies too.
func Launch[C any](ctx context.Context, k Kind, path string, files []*os.File, channel *os.File, held []Held, p plugin.Plugin, logger hclog.Logger) (*Process, C, error) {
	var none C
	env := []string{k.FilesEnv + "=" + strconv.Itoa(len(files)), k.LevelEnv + "=" + logger.GetLevel().String()}
	handed := files
	if channel != nil {
		env = append(env, k.ChannelEnv+"="+strconv.Itoa(FirstFile+len(files)))
		handed = append(slices.Clip(files), channel)
	}
	if len(held) > 0 {
		if channel == nil || len(held) > MaxHeld {
			return nil, none, fmt.Errorf("start %s plugin %s: %d held descriptors (at most %d, and only with a channel)", k.Name, path, len(held), MaxHeld)
		}
		names := make([]string, len(held))
		for i, h := range held {
			names[i] = h.Name
			handed = append(slices.Clip(handed), h.File)
		}
		b, _ := json.Marshal(names)
		env = append(env, k.HeldEnv+"="+string(b))
	}
	proc, err := Start(ctx, Config{
		Kind:        k.Name,
		Path:        path,
		Files:       handed,
		Env:         env,
		Handshake:   k.Handshake,
		Plugins:     plugin.PluginSet{k.Name: p},
		Dispense:    k.Name,
		Logger:      logger,
		AnswerEarly: k.AnswerEarly,
	})
	if err != nil {
		return nil, none, err
	}
	c, ok := proc.Raw.(C)
	if !ok {
		proc.Kill()
		return nil, none, fmt.Errorf("start %s plugin %s: dispensed a %T", k.Name, path, proc.Raw)
	}
	return proc, c, nil
}

// Serve runs a plugin process of kind k until the host stops it: it
// takes the RAM files and the channel the host handed over
// (InheritedFiles, InheritedChannel; channel is nil if it handed none),
// exits when the host is gone (WatchParent), and serves the plugin
// newPlugin makes for them, answering a unary call a margin before its
// deadline when the host asks (answerEarly). Call it from the kind's
// Serve.
func (k Kind) Serve(newPlugin func(files []*os.File, channel *os.File) plugin.Plugin) {
	log := k.Logger(k.Name)
	files, err := InheritedFiles(k.FilesEnv)
	var channel *os.File
	if err == nil {
		channel, err = InheritedChannel(k.ChannelEnv, len(files))
	}
	if err != nil {
		log.Error(k.Name+" plugin cannot start", "error", err)
		os.Exit(1)
	}
	go WatchParent(log, HostPID(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: k.Handshake,
		Plugins:         plugin.PluginSet{k.Name: newPlugin(files, channel)},
		GRPCServer:      grpcServer,
		TLSProvider:     ServerTLS,
		Logger:          log,
	})
}

// grpcServer is the gRPC server Serve serves with: go-plugin's, with
// answerEarly on every unary call (answer.go).
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return plugin.DefaultGRPCServer(append(opts, grpc.ChainUnaryInterceptor(answerEarly)))
}

// Logger returns the logger a plugin process of kind k should log
// through (Logger, at the level the host put in k.LevelEnv).
func (k Kind) Logger(name string) hclog.Logger { return Logger(name, k.LevelEnv) }
