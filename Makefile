# ferry: build, install dependencies, demo and tests.
# `make demo` and `make test` are the two set-up commands of README.md.

export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
PKG     := github.com/ferry-migrate/ferry
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X $(PKG)/cmd.version=$(VERSION) -X $(PKG)/cmd.commit=$(COMMIT)
FERRY   := bin/ferry

.PHONY: all build deps test-deps demo test fuzz vet bench clean FORCE

all: build

build: $(FERRY)

# A static binary: ferry copies itself into testbed hosts and remote hosts.
$(FERRY): FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/ferry

# Idempotent: a second run changes nothing.
deps:
	scripts/install-deps.sh

# What the tests need besides: LXD and Incus (their tests start and stop
# the daemons themselves).
test-deps:
	scripts/install-deps.sh --lxd --incus

# ferry's main job on the built-in default: this host's facts, then a live
# migration between two simulated hosts with its downtime; the testbed is
# torn down at the end.
demo: deps build
	FERRY=$(FERRY) scripts/demo.sh

vet:
	$(GO) vet ./...

# The full test suite. Tests that need root, CRIU or namespaces skip outside
# CI only; with CI=true a missing prerequisite fails. Then every fuzz target
# for a short, bounded time (the seed corpora already ran as tests).
test: test-deps build vet
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

FUZZTIME ?= 10s
FUZZ_TARGETS := report/explain:FuzzExplain inspect:FuzzEntries inspect:FuzzReadPagemap inspect:FuzzGhostSize inspect:FuzzLoad

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1x ./$$pkg/ || exit 1; \
	done

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
