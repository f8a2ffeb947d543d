# Ferry build. `make` builds bin/; `make test` runs every test; `make demo`
# boots the test guest; `make bench` runs the benchmarks.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all test demo bench godefs clean FORCE

all: bin/ferry-vmm bin/guest.elf bin/migrate bin/ferry-demo bin/plugins/ferry-transport-tcp

include vmm/guest/guest.mk

bin/ferry-vmm bin/migrate bin/ferry-demo: FORCE
	@mkdir -p bin
	$(GO) build -o $@ ./cmd/$(notdir $@)

bin/plugins/%: FORCE
	@mkdir -p bin/plugins
	$(GO) build -o $@ ./cmd/$(notdir $@)

# Unit tests, then the end-to-end tests on real KVM (they skip loudly
# without /dev/kvm or QEMU, naming what did not run).
test: all
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# A 1 GiB guest runs the 2016 "finished hog" workload, keeps a 64 MiB
# working set dirty, verifies its memory every tick and powers off after 8 s.
DEMO_WORKLOAD ?= hog:512,dirty:64@32
demo: all
	./bin/ferry-vmm run -kernel bin/guest.elf -mem 1G -cmdline "workload=$(DEMO_WORKLOAD) exit_after=8"

bench: all
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 3x -timeout 30m ./...

# Regenerate the KVM structures from the kernel headers (needs cgo and
# linux-libc-dev); the output is committed so builds need neither.
godefs:
	cd vmm/kvm && (echo "//go:build linux && amd64"; echo; $(GO) tool cgo -godefs types_linux.go) | gofmt > ztypes_linux_amd64.go && rm -rf _obj

clean:
	rm -rf bin vmm/guest/build
