// Package plugintest holds the test helpers every plugin test shares,
// whatever its kind: the framework's hint and transport packages, their
// conformance suites (hinttest, transporttest), the plugins and the
// binaries in cmd/. It imports neither plugin kind.
//
//	go test binary ── Main ── started as "ferry-hint-x"? ── yes ─► run that role (serve a plugin, play a host)
//	                               │ no
//	                               ▼
//	                 link itself as every role in Dir() ──► m.Run() ──► tests Launch Path("ferry-hint-x")
//
//	Main, Path, Dir       the test binary doubles as plugin (and host) binaries
//	Logger, NewLog        a host logger: warnings to the test log, a plugin's data race fails the test
//	Host, PluginExitsWithHost, ChildPIDs, SocketDir
//	                      a plugin whose host was killed exits and leaves no socket directory
//	NoLeaks, LaunchFails  launch and teardown leak no goroutine or process; a failed start says why
//	Memfd, MemfdWith, Map, Dup, SuiteRAM, SuiteMemfds, SuiteLayout
//	                      guest RAM for tests: memfds, shared mappings, the suites' layout; gone when the test ends
//	SampleSchema          a schema with every attribute type, for conversion tests
//	CheckGolden, CheckMethods
//	                      wire compatibility of the plugin protocols with an older build
//	CheckValidateBounds   a host caps a hostile plugin's Validate answer (either kind)
//	CheckValidateServed   a Go plugin's Validate answer fits the host's bounds and counts what it cut
//	BuildCommands         the real binaries of cmd/, for tests that run them (vmtest, vmm)
package plugintest
