# Ferry build. `make` builds bin/; `make test` runs every test; `make demo`
# migrates a live test guest between two VMMs; `make bench` runs the
# benchmarks.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all test lint demo boot-demo bench soak-postcopy model race godefs proto clean FORCE

# Plugin binaries, built into bin/plugins/ from cmd/<name>; the example
# hint providers (plugins/example) serve tests and docs/PLUGINS.md.
PLUGINS := ferry-transport-tcp ferry-hint-balloon ferry-hint-pagemap ferry-hint-cmma \
	$(addprefix ferry-hint-example-,static liar liar-free hang crash)

all: bin/ferry-vmm bin/guest.elf bin/migrate bin/ferry-demo $(addprefix bin/plugins/,$(PLUGINS)) bin/plugins/ferry-transport-rdma

# The RDMA transport is the one cgo package (transports/rdma/fabric, over
# libfabric). Without cgo or libfabric's headers it is skipped, and the
# tests build its stub (tag nolibfabric), which says "not supported".
LIBFABRIC_MISSING := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] || { echo "cgo is off (CGO_ENABLED=0)"; exit 0; }; \
	printf '\043include <rdma/fabric.h>\n' | $$($(GO) env CC) -E - >/dev/null 2>&1 || \
	echo "libfabric headers are missing (apt-get install libfabric-dev)")
GOTAGS := $(if $(LIBFABRIC_MISSING),-tags nolibfabric)

include vmm/guest/guest.mk

bin/ferry-vmm bin/migrate bin/ferry-demo: FORCE
	@mkdir -p bin
	$(GO) build -o $@ ./cmd/$(notdir $@)

bin/plugins/ferry-transport-rdma: FORCE
	@mkdir -p bin/plugins
ifeq ($(LIBFABRIC_MISSING),)
	$(GO) build -o $@ ./cmd/ferry-transport-rdma
else
	@echo "skipped ferry-transport-rdma: $(LIBFABRIC_MISSING)"
endif

bin/plugins/%: FORCE
	@mkdir -p bin/plugins
	$(GO) build -o $@ ./cmd/$(notdir $@)

# Unit tests, then the end-to-end tests on real KVM (they skip loudly
# without /dev/kvm or QEMU, naming what did not run).
test: all lint
	$(GO) test $(GOTAGS) -count=1 -timeout 20m ./...

# go vet and staticcheck (pinned; fetched through the Go module proxy on
# first use), and go vet of the hint plugins and their conformance suite
# for macOS: hosts run on Linux only, but a plugin author may build and
# test a provider elsewhere (docs/PLUGINS.md). A finding that is not a fault (a kernel structure's field Go
# never reads) is marked in place with //lint:ignore and the reason.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) vet $(GOTAGS) ./...
	$(GO) run $(STATICCHECK) $(GOTAGS) ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./plugins/... ./framework/hint/hinttest ./framework/plugintest

# Migrates a live 1 GiB guest (finished hog, a dirty working set, a
# key-value store) between two ferry-vmm processes with configs/demo.hcl,
# shows it verifying its memory on the destination, then prints the 2016
# table: a 2 GiB guest, idle and after a memory hog, migrated between two
# network namespaces over a 10 Gbit/s veth pair without hints and with each
# provider (needs root and iproute2; `make bench` runs it at 8 GiB).
demo: all
	./bin/ferry-demo -config configs/demo.hcl -table -table-mem 2G -table-hog 1536

# Boots the test guest alone and shows its output for 8 s.
DEMO_WORKLOAD ?= hog:512,dirty:64@32
boot-demo: all
	./bin/ferry-vmm run -kernel bin/guest.elf -mem 1G -cmdline "workload=$(DEMO_WORKLOAD) exit_after=8"

# `make bench` also puts QEMU (microvm, free-page-hint off and on) in the
# 2016 table, on the same guests and link, when qemu-system-x86_64 is here.
bench: all
	$(GO) test $(GOTAGS) -count=1 -run '^$$' -bench . -benchtime 3x -timeout 30m ./...
	./bin/ferry-demo -demo=false -table -table-mem 8G -table-hog 7168 -table-json bin/table-8g.json \
		$$(command -v qemu-system-x86_64 >/dev/null && echo -table-qemu)

# The race detector over the packages where goroutines meet: the engine,
# post-copy's fault service, sessions, transports (the urgent channel to
# a plugin, the TCP transport), the fake-VM end-to-end tests, migrate,
# and the reference VMM's packages and the hint plugins (their tests that
# need no KVM: the control server, locks, lingers, devices; vmm/e2e is left
# out, it needs KVM and runs real processes). Not part of `make test`
# (about ten minutes on two cores); run it after
# changing concurrent code. Timing bounds scale up under -race
# (framework/transport/transporttest/race.go).
race: all
	$(GO) test $(GOTAGS) -race -short -count=1 -timeout 40m ./framework/... ./transports/tcp/... ./cmd/migrate \
		$$($(GO) list $(GOTAGS) ./vmm/... ./plugins/... | grep -v /vmm/e2e)

# Post-copy soak: 100 migrations of the fake VM over the real TCP plugin,
# each with one side's transport process killed at a random moment of
# post-copy; every one must reconnect and complete page-exact (issue 10).
soak-postcopy: all
	FERRY_POSTCOPY_CUTS=100 $(GO) test $(GOTAGS) -count=1 -run 'TestEmbedPostcopyCut$$' -timeout 60m ./framework/vmtest/

# The SPIN model of the handover (docs/model) in full: TestModel and its
# mutants (part of `make test`), then post-copy with two and three
# connection breaks (about two minutes more, 2.5 GiB at most). Needs spin and
# gcc.
model:
	FERRY_MODEL_DEEP=1 $(GO) test -count=1 -run 'TestModel' -v -timeout 30m ./cmd/migrate/

# Regenerate the KVM and userfaultfd structures from the kernel headers (needs cgo and
# linux-libc-dev); the output is committed so builds need neither.
godefs:
	cd vmm/kvm && (echo "//go:build linux && amd64"; echo; $(GO) tool cgo -godefs types_linux.go) | gofmt > ztypes_linux_amd64.go && rm -rf _obj
	cd framework/internal/uffd && (echo "//go:build linux && amd64"; echo; $(GO) tool cgo -godefs types_linux.go) | gofmt > ztypes_linux_amd64.go && rm -rf _obj

# Regenerate the plugin protocols' gRPC code: the shared schema messages and
# the transport and hint kinds (needs /usr/bin/protoc); the generators are pinned to the protobuf and grpc versions in go.mod and
# installed in bin/tools; the output is committed so builds need neither.
PROTOC ?= protoc
PROTOC_GEN_GO ?= google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
PROTOC_GEN_GO_GRPC ?= google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
proto:
	@mkdir -p bin/tools
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	$(PROTOC) -I . \
	  --plugin=protoc-gen-go=bin/tools/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=bin/tools/protoc-gen-go-grpc \
	  --go_out=paths=source_relative:. \
	  --go-grpc_out=paths=source_relative:. \
	  framework/schema/proto/schema.proto \
	  framework/transport/proto/transport.proto \
	  framework/hint/proto/hint.proto

clean:
	rm -rf bin vmm/guest/build
