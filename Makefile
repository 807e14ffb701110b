# Strata — build, run and test. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GOFLAGS := -buildvcs=false

STATICCHECK_VERSION := v0.8.2
VERSITYGW_VERSION := v1.8.0
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 30s

.PHONY: all build run cluster test lint bench fuzz soak tools tools-go tools-apt clean

all: build

build:
	$(GO) build -o $(BIN)/strata ./cmd/strata

## run: build and start a single-node broker on 127.0.0.1:9092 (data in ./strata-data).
run: build
	$(BIN)/strata serve --admin-addr 127.0.0.1:9644

## cluster: three brokers on loopback forming one metadata quorum (Ctrl-C stops them); see docs/replication.md.
cluster: build
	STRATA_BIN=$(BIN)/strata scripts/cluster.sh

## tools: install everything the tests need (Go tools into ./bin, kcat with apt-get).
tools: tools-go tools-apt

tools-go: $(BIN)/staticcheck $(BIN)/versitygw

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Versity S3 Gateway: the real S3-compatible server the s3 backend's tests
# start on loopback (a few minutes to build on a fresh machine; kept in ./bin).
$(BIN)/versitygw:
	GOBIN=$(BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

tools-apt:
	@command -v kcat >/dev/null 2>&1 || { \
		echo "installing kcat with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq kcat >/dev/null; }

## test: install tools, then run every test (race detector on) and the fuzz seed corpora.
test: tools build
	STRATA_BIN=$(BIN)/strata VERSITYGW_BIN=$(BIN)/versitygw $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## lint: gofmt, go vet, staticcheck.
lint: tools-go
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

## bench: Go benchmarks plus the load tool against the real binary; see docs/benchmarks.md.
bench: build tools-go
	$(GO) test -run '^$$' -bench . -benchmem ./...
	STRATA_BIN=$(BIN)/strata $(GO) run ./cmd/strata-load -all

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; done

## soak: long crash loops: SIGKILL during idempotent acks=all production, and the three-broker failover test with new seeds for STRATA_SOAK_MINUTES (20).
soak: build
	STRATA_BIN=$(BIN)/strata STRATA_SOAK=1 $(GO) test -count=1 -timeout 120m -run 'Crash|TestClusterFailover' -v ./test/...

clean:
	rm -rf $(BIN) strata-data
