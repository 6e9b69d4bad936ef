# Keel build, run and test entry points. See README.md.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PLUGINS := $(patsubst plugins/%/manifest.json,%,$(wildcard plugins/*/manifest.json))
export KEEL_PLUGINS_DIR ?= $(CURDIR)/dist
export KEEL_DATA_DIR ?= $(CURDIR)/.keel

.PHONY: all build plugins run test test-short check bench services clean help

all: build plugins

help:
	@echo "make run    build host + plugins and serve on :8080"
	@echo "make test   the whole test suite (starts PostgreSQL/Redis/NATS if needed)"
	@echo "make check  gofmt, go vet, go mod tidy"
	@echo "make bench  benchmarks with ratios against native Go (writes bench/out/)"

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/keel ./host/cmd/keel

# Each plugins/<name> becomes dist/<name>/{plugin.wasm,manifest.json}.
plugins: $(addprefix dist/,$(addsuffix /plugin.wasm,$(PLUGINS)))

dist/%/plugin.wasm: FORCE
	@mkdir -p dist/$*
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o dist/$*/plugin.wasm ./plugins/$*
	@cp plugins/$*/manifest.json dist/$*/manifest.json

FORCE:

run: build plugins
	@.ci/services --optional
	./bin/keel serve

services:
	.ci/services

test: services
	$(GO) test -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 -short ./...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^bench/out/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./abi/... ./plugins/...
	@cp go.mod /tmp/keel-go.mod.bak && cp go.sum /tmp/keel-go.sum.bak; \
	$(GO) mod tidy; \
	if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changed go.mod/go.sum:"; git diff --stat -- go.mod go.sum; exit 1; fi

bench: build plugins
	@mkdir -p bench/out
	$(GO) run ./bench/cmd/keelbench | tee bench/out/latest.txt

clean:
	rm -rf bin dist bench/out
