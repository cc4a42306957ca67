# l2tpproxy — build, test, benchmark, interop.
GO      ?= go
BIN     ?= bin/l2tpproxy
INTEROP := testdata/interop

.PHONY: all build test test-race fuzz bench soak demo interop interop-up interop-down interop-selfcheck release clean

all: build

# The version stamped into binaries (l2tpproxy version): the git description,
# or "dev" outside a checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/l2tpproxy

# Unit tests, known-answer tests, capture replays, fuzz seeds and the
# in-process end-to-end test. No root, no network beyond loopback.
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# The same tests under the race detector (allocation tests skip themselves:
# raceEnabled in the packages' race_test.go). ~2 min on 2 cores (2026-12-02).
test-race:
	$(GO) test -race -count=1 ./...

# A short run of every fuzz target: FUZZTIME executions each.
# The budget is a count ("Nx"), not a duration: Go 1.26's fuzz coordinator
# can report a bare "context deadline exceeded" failure when a -fuzztime
# duration expires while a worker is mid-call (golang/go#75804, fixed in
# Go 1.27). A count has no deadline to race. 200000x takes ~1 min in all.
FUZZTIME ?= 500000x
# Each target runs on its own; a crasher is saved under the package's testdata/fuzz/ and fails the run.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Micro-benchmarks (ESP per suite, stack) and the in-process end-to-end
# throughput with CPU cost per GiB: the table of issue 9 (testdata/bench/table).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./crypto/aescbc/ ./tunnel/esp/ ./netstack/ ./tunnel/
	$(MAKE) build
	testdata/bench/table $(BIN)

# The soak (TestSoak): `up` against the in-process test server for SOAK, with
# rekeys from both sides every few seconds, a server restart every
# SOAK_RESTART and four clients downloading (SOAK_PAUSE between requests); it reports
# requests, rekeys, reconnects, RSS and heap at start and end. CI runs a short
# form; results of long runs are in the README.
SOAK ?= 1h
SOAK_RESTART ?= 3m
SOAK_PAUSE ?= 0s
soak:
	@log=$$(mktemp); L2TPPROXY_SOAK=$(SOAK) L2TPPROXY_SOAK_RESTART=$(SOAK_RESTART) L2TPPROXY_SOAK_PAUSE=$(SOAK_PAUSE) \
	  $(GO) test -count=1 -v -timeout 0 -run '^TestSoak$$' ./cmd/l2tpproxy >$$log 2>&1; rc=$$?; \
	  grep -v '^time=' $$log | tail -n 60; rm -f $$log; exit $$rc

demo: build
	$(BIN) demo

# Real servers (root): SoftEther in a netns, Libreswan and strongSwan in qemu VMs.
interop: build
	$(INTEROP)/run

interop-up:
	$(INTEROP)/run up

interop-down:
	$(INTEROP)/run down

interop-selfcheck:
	$(INTEROP)/run selfcheck

# Static release binaries for every platform we support, with checksums.
# CGO_ENABLED=0: no libc dependency, so one Linux binary runs on any distro;
# -trimpath: no build-machine paths in the binary (reproducible builds).
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
release:
	rm -rf dist && mkdir -p dist
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" != windows ] || ext=.exe; \
	  out=dist/l2tpproxy-$(VERSION)-$$os-$$arch$$ext; echo "== $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $$out ./cmd/l2tpproxy; \
	done
	cd dist && sha256sum l2tpproxy-* > SHA256SUMS

clean:
	rm -rf bin dist
