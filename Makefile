# h2kvm build and test entry points. On a fresh Debian 12:
#   make        install system packages (idempotent), provide the libguestfs Go module, build bin/h2kvm
#   make test   the same set-up, then gofmt check, go vet, the full test suite with -race, and a
#               30-second fuzzing run of the image parser (fuzz-smoke)
# Go modules come from the module proxy through ordinary go commands.

export PATH := /usr/local/go/bin:$(PATH):/usr/sbin:/sbin
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Go files checked by gofmt: everything but the vendored libguestfs binding (generated, not ours).
GOFILES  = $(shell find . -name '*.go' -not -path './.deps/*' -not -path './bin/*')

.PHONY: all build deps test test-short fmt-check vet fuzz-smoke bench demo clean

all: build

# System packages and the libguestfs.org/guestfs module (go.mod replaces it with ./.deps/guestfs).
# Both scripts are fast when everything is in place.
deps:
	tools/install-deps.sh
	tools/guestfs-module.sh

build: deps
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/h2kvm ./cmd/h2kvm

fmt-check:
	@out="$$(gofmt -l $(GOFILES))"; \
	if [ -n "$$out" ]; then echo "gofmt: these files are not formatted:"; echo "$$out"; exit 1; fi

vet: deps
	$(GO) vet ./...

# Tests that need an external tool fail instead of skipping when it is missing.
test: export H2KVM_REQUIRE_TOOLS = 1
test: deps fmt-check vet
	$(GO) test -race -timeout 60m ./...
	$(MAKE) fuzz-smoke

# A short fuzzing run of the image parser on its corpus and new inputs: it must not stall or
# crash (each input's work is bounded; minimizing a finding is capped too).
fuzz-smoke:
	$(GO) test ./vfs/vmdk -run '^$$' -fuzz '^FuzzOpenImage$$' -fuzztime 30s -fuzzminimizetime 5s -parallel 2

# Quicker local run: no race detector, -short (tests may skip slow cases), and tests may skip
# when a tool is missing.
test-short: deps fmt-check vet
	$(GO) test -short -timeout 40m ./...

# The main job on an embedded default: build (or reuse) a VMware-style guest, migrate it,
# boot it under libvirtd.
demo: build
	bash tools/demo.sh
# Benchmarks: h2kvm side by side with nbdkit, qemu-nbd, qemu-img, printed as ratios, then whole
# migrations of the cached test guests against a naive pipeline and virt-v2v (slow: TCG).
# BENCH=io or BENCH=migrate runs one part only (default: all), e.g. make bench BENCH=migrate.
bench: build
	BENCH='$(BENCH)' bash tools/bench.sh

clean:
	rm -rf bin
