// Package hint is the hint-provider plugin kind: out-of-process providers
// that tell the migration engine which guest pages need not travel (free
// pages the guest reported through virtio-balloon, RAM the host never
// populated, pages s390 CMMA marks unused).
//
//	source VMM process                           provider plugin process
//	engine ── per pass, after the dirty sync ──► Hints(generation, deadline)
//	       ◄── page ranges (streamed) ──────────
//	VMM ◄── Host callbacks (go-plugin broker) ── BalloonHint, CMMABits, ...
//
// The engine asks every provider asynchronously, each under its own
// deadline, and applies ranges only to the to-send set of the pass whose
// dirty sync preceded the request: a hint that arrives after a later sync
// is dropped, so a page written after the request always travels. A slow,
// lying or dead provider costs its hints, never the migration.
//
// The package holds the Go interface (hint.go), the go-plugin glue
// (plugin.go, launch.go), the gRPC client and server shims of the Provider
// service (client.go, server.go) and of the Host service the plugin calls
// back (host.go), their conversions and error classes (convert.go,
// status.go), closure-based mocks of both (mock.go), helpers the engine
// and providers share (check.go: CheckRanges, VM.PageRanges, ...) and the
// conformance suite every provider passes in process and over real gRPC
// (hinttest). The configuration model (framework/schema), its protobuf
// messages (framework/schema/proto), the error-class mapping
// (framework/internal/errclass), process start and serving
// (framework/internal/plugproc) and the test helpers (framework/plugintest)
// are shared with transports; the lifecycle is the hint kind's own (one
// process per Launch, never restarted).
//
// One plugin process, as Launch starts it:
//
//	host process                                   plugin process (Serve)
//	Launch(ctx, path, files) ── exec ────────────► fd 0-2  go-plugin stdio
//	  files[0] ─── exec.Cmd.ExtraFiles ──────────► fd 3    files[0]  (FERRY_HINT_FILES=n)
//	  files[n-1] ────────────────────────────────► fd 3+n-1
//	*Plugin (grpcClient) ══ gRPC, unix socket ════► grpcServer ── impl hint.Provider
//	  Configure: Region.File = launch index         VM.Files = the inherited files
//	  Host h served under a broker id ◄══ broker ══ hostClient ── the impl's Host
//	  error ◄── status code = error class ◄───────  ErrNotSupported → Unimplemented, ...
//	  Close(final): window ends, Host unserved      the process keeps running
//	  Kill: the process ends
//
// A plugin whose process is gone turns every call into an error wrapping
// ErrPluginGone, at once; nothing restarts it. Errors cross the boundary
// by class both ways: a provider's ErrNotSupported reaches the engine as
// ErrNotSupported, and so does a Host's reach the provider.
package hint
