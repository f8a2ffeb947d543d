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
// back (host.go; window.go: one call at a time, and the balloon's DONE
// when the window ends, whatever the plugin did), their conversions and error classes (convert.go,
// status.go), closure-based mocks of both (mock.go), helpers the engine
// and providers share (check.go: CheckRanges, VM.PageRanges, ...;
// batch.go: Batcher, which coalesces and batches what Hints emits) and the
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
//
// # Writing a provider
//
// Everything a provider author needs, in one place (the long form, with
// a complete example and an out-of-tree module, is docs/PLUGINS.md):
//
//   - Implement Provider in a plain Go package (no go-plugin, no gRPC);
//     serve it from a three-line main: Serve(New(Logger(name))). The
//     binary is ferry-hint-<Info.Name>.
//   - Describe the job block with Schema (framework/schema attributes:
//     string, number, bool, duration, size, and TypeAddress for guest
//     physical addresses, written "0x1000000" or "16M"); Configure gets
//     the values as Config (int64 for numbers, durations, sizes and
//     addresses). A bad block is an error wrapping ErrBadConfig; a
//     capability the VMM lacks (ErrNotSupported) means no hints, never a
//     failed Configure.
//   - Report page indices: PageSize (4096) pages of the RAM regions laid
//     end to end. VM.Page and VM.GPA convert one address or page,
//     VM.PageRanges guest physical ranges, VM.Pages is the total, and
//     VM.Regions gives each region's RAMView: First (its first page
//     index), Page, PageGPA. A provider that finds ranges in increasing
//     page order can Add them to a Batcher, which merges touching ones
//     and emits at most BatchRanges at a time.
//   - Read guest RAM only through RAMView (ReadAt, Data, Scan: pread and
//     SEEK_DATA/SEEK_HOLE), never through a mapping of VM.Files: reading
//     a hole of the guest's memfd through a MAP_SHARED mapping allocates
//     it on the host (64 MiB of reads, 64 MiB resident), pread does not.
//     VM.Files are read-only (engine.RAMFiles): a provider cannot write,
//     punch or truncate the guest it hints about, even by mistake.
//   - Answer by the deadline: Request.AnswerBy (the deadline minus a
//     margin) and Request.Context; what arrives after Request.Deadline is
//     dropped and counted as late. Over gRPC a setup call (Info, Schema,
//     Validate, Configure) runs under a context that ends a margin before
//     the host's deadline, so that the error it returns then, saying what
//     it waited for, reaches the host (framework/internal/plugproc's
//     answer.go; docs/PLUGINS.md, "What the host sees when a call times
//     out").
//   - Log through Logger(name) (an hclog.Logger): each record reaches the
//     VMM's log at its level, filtered at the VMM's level, durations as
//     durations. go-plugin owns stdout.
//   - Test with hinttest: Run in process and over gRPC (Main, Launch).
//   - Install the binary in a directory the job names in plugin_path
//     (framework/job), or in the plugin directory.
package hint
