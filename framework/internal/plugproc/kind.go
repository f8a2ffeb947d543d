package plugproc

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
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
}

// NewKind returns the Kind called name whose processes' environment
// variables start with envPrefix: envPrefix_FILES, envPrefix_LOG_LEVEL.
func NewKind(name, envPrefix string, hs plugin.HandshakeConfig) Kind {
	return Kind{Name: name, Handshake: hs, FilesEnv: envPrefix + "_FILES", LevelEnv: envPrefix + "_LOG_LEVEL"}
}

// Launch starts one plugin process of kind k from the binary at path
// (Start: AutoMTLS, a private socket directory), handing it files, and
// returns the process and the client p dispensed, which must be a C. p
// is the kind's go-plugin plugin holding the same files.
func Launch[C any](ctx context.Context, k Kind, path string, files []*os.File, p plugin.Plugin, logger hclog.Logger) (*Process, C, error) {
	var none C
	proc, err := Start(ctx, Config{
		Kind:      k.Name,
		Path:      path,
		Files:     files,
		Env:       []string{k.FilesEnv + "=" + strconv.Itoa(len(files)), k.LevelEnv + "=" + logger.GetLevel().String()},
		Handshake: k.Handshake,
		Plugins:   plugin.PluginSet{k.Name: p},
		Dispense:  k.Name,
		Logger:    logger,
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
// takes the RAM files the host handed over (InheritedFiles), exits when
// the host is gone (WatchParent), and serves the plugin newPlugin makes
// for those files. Call it from the kind's Serve.
func (k Kind) Serve(newPlugin func(files []*os.File) plugin.Plugin) {
	log := k.Logger(k.Name)
	files, err := InheritedFiles(k.FilesEnv)
	if err != nil {
		log.Error(k.Name+" plugin cannot start", "error", err)
		os.Exit(1)
	}
	go WatchParent(log, os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: k.Handshake,
		Plugins:         plugin.PluginSet{k.Name: newPlugin(files)},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log,
	})
}

// Logger returns the logger a plugin process of kind k should log
// through (Logger, at the level the host put in k.LevelEnv).
func (k Kind) Logger(name string) hclog.Logger { return Logger(name, k.LevelEnv) }
