// Package transport is the transport plugin kind: how the migration engine
// moves guest pages and small messages between a source and a destination.
//
//	source VMM process              plugin process (source)       plugin process (dest)
//	engine ── SendPages(runs) ──►   reads pages from the memfd ═══► writes pages into the memfd
//	       ── SendMessage(m) ──►    ─────────────── message ──────► RecvMessage ──► engine
//	       ◄─ RecvMessage ─────     ◄────────────── message ───────  SendMessage ◄── engine
//
// Post-copy adds the urgent path (API version 3): SendUrgent/RecvUrgent
// carry page requests both ways and SendPagesUrgent the requested pages,
// never behind bulk pages or ordinary messages; Landed tells the
// destination which runs are completely written, from both paths. The
// ordering rules are Transport's; Lane and LandedQueue (urgent.go) are
// the destination-side helpers implementations share. Between the host
// and a plugin process the urgent path takes the urgent channel (API
// version 4, channel.go: a socket pair the plugin inherits at start),
// not gRPC, because it is the latency of a post-copy fault.
//
// Guest RAM bytes never cross the plugin RPC: the plugin maps the same
// files as the VMM (their descriptors are handed over when the plugin
// starts) and the RPC carries only page runs, messages of at most
// MaxMessage bytes, and acknowledgements.
//
// Every session is authenticated (see Transport): OpenRequest.Credentials
// carry this side's key and what the peer is checked against: its own
// pinned certificate, or CAs (credentials.go; MintCredentials makes a
// pinned pair per job), and Secure (secure.go) is the
// mutual TLS 1.3 handshake a stream transport runs before it reads a byte
// of the peer's frames. Credentials name hosts, not migrations: each
// session also names its migration's tag (OpenRequest.Tag, API version
// 8) in the transport's own handshake, and a destination that knows its
// tag refuses another migration's source as it refuses a stranger
// (Transport, "Migration tag"; ErrWrongMigration on the refused side).
//
// The package holds the Go interface (transport.go), the go-plugin glue
// (plugin.go, launch.go), the gRPC client and server shims (client.go,
// server.go, convert.go, status.go), the optional check of a
// configuration block before anything opens (validate.go: Validator, the
// Validate RPC, which a plugin built before it answers Unimplemented), the urgent channel (channel.go,
// channel_host.go, channel_plugin.go), a closure-based mock (mock.go) and a
// conformance suite (transporttest) that every transport passes in process
// and over real gRPC. The loopback subpackage is a transport for tests.
//
// What both plugin kinds share lives outside it: the configuration model
// (framework/schema: Schema, Attribute, Config, Coerce) and its protobuf
// messages (framework/schema/proto, ferry.schema.v1), the error-class
// mapping (framework/internal/errclass; this package lists its classes in
// status.go), process start and serving (framework/internal/plugproc),
// and the test helpers (framework/plugintest). What is left here is the
// transport's own: its contract, its messages, and its lifecycle (Launch
// restarts the process on demand after Close).
//
// One plugin process, as Launch starts it:
//
//	host process                                  plugin process (Serve)
//	Launch(ctx, path, files) ── exec ───────────► fd 0-2  go-plugin stdio
//	  files[0] ─── exec.Cmd.ExtraFiles ─────────► fd 3    files[0]  (FERRY_TRANSPORT_FILES=n)
//	  files[n-1] ───────────────────────────────► fd 3+n-1
//	  urgent channel (a socket pair's end) ─────► fd 3+n  (FERRY_TRANSPORT_CHANNEL)
//	Transport (grpcClient) ══ gRPC, unix socket ═► grpcServer ── impl transport.Transport
//	  Open: RAMRegion.File = launch index          OpenRequest.Files = the inherited files
//	  error ◄── status code = error class ◄──────  ErrNotSupported → Unimplemented, ...
//	  Close: Stats, Close RPC, kill the process;   a later Info/Schema/Open starts a fresh one
//	  held listening sockets ──────────────────► fd 3+n+1… (FERRY_TRANSPORT_HELD: their addresses)
//
// A stream transport's listening socket outlives the plugin process
// (API version 7, listen.go): the plugin binds it with Listen, which
// hands the host a copy over the urgent channel; the host keeps it from
// then until Close and hands it to every process it starts, whose Listen
// on the same address takes it. CloseHoldingListeners (ListenerHolder)
// is the Close of a post-copy reconnect: the process goes, the port stays
// bound, so no one else on the host can take it meanwhile.
//
// A plugin that exits or crashes turns every later call into an error
// wrapping ErrPluginGone; Close (and then Open) starts over. A setup call
// (Info, Schema, Validate, Open) that runs out of time returns the
// plugin's reason as a context.DeadlineExceeded: the plugin's context
// ends a margin before the host's (framework/internal/plugproc's
// answer.go); the data path, RecvMessage and Close keep the whole
// deadline, and the host sees its deadline alone when one runs out.
package transport
