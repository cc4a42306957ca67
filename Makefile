# l2tpproxy — build, test, benchmark, interop.
GO      ?= go
BIN     ?= bin/l2tpproxy
INTEROP := testdata/interop

.PHONY: all build test fuzz bench demo interop interop-up interop-down interop-selfcheck clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/l2tpproxy

# Unit tests, known-answer tests, capture replays, fuzz seeds and the
# in-process end-to-end test. No root, no network beyond loopback.
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

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
	$(GO) test -run='^$$' -bench=. -benchmem ./tunnel/esp/ ./netstack/ ./tunnel/
	$(MAKE) build
	testdata/bench/table $(BIN)

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

clean:
	rm -rf bin
