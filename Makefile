# Keel build, run and test entry points. See README.md.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PLUGINS := $(patsubst plugins/%/manifest.json,%,$(wildcard plugins/*/manifest.json))
# Development signing key: make plugins creates it, make run trusts it.
DEV_KEY := $(CURDIR)/.keel/dev-signing
# Settings for run and dev only (tests must not inherit them); the caller's KEEL_* win.
JWT_KEY := $(CURDIR)/.keel/dev-jwt
RUN_ENV := KEEL_PLUGINS_DIR=$${KEEL_PLUGINS_DIR:-$(CURDIR)/dist} KEEL_DATA_DIR=$${KEEL_DATA_DIR:-$(CURDIR)/.keel} \
	KEEL_TRUSTED_KEYS=$${KEEL_TRUSTED_KEYS:-$(DEV_KEY).pub} \
	KEEL_JWT_PUBLIC_KEY=$${KEEL_JWT_PUBLIC_KEY:-$$(cat $(JWT_KEY).pub)} \
	KEEL_PLUGIN_AUTH_SIGNING_SEED=$${KEEL_PLUGIN_AUTH_SIGNING_SEED:-$$(cat $(JWT_KEY).seed)}
# The local PostgreSQL (started by .ci/services); its "keel" database is created if missing.
LOCAL_DB := postgres://postgres@127.0.0.1:5432/keel?sslmode=disable

.PHONY: all build plugins run dev test test-race test-short check bench services clean help

all: build plugins

help:
	@echo "make run    build host + plugins and serve on :8080"
	@echo "make test   the whole test suite (starts PostgreSQL/Redis/NATS if needed)"
	@echo "make test-race  the same under the race detector (slower; not in CI)"
	@echo "make check  gofmt, go vet, go mod tidy"
	@echo "make bench  benchmarks with ratios against native Go (writes bench/out/)"

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/keel ./host/cmd/keel

# Each plugins/<name> (with migrations/<name>, if any) becomes a signed bundle dist/<name>.keel.
plugins: build $(DEV_KEY).key
	@mkdir -p dist
	@for p in $(PLUGINS); do ./bin/keel plugin build -dir plugins/$$p -key $(DEV_KEY).key -out dist/$$p.keel || exit 1; done

$(DEV_KEY).key:
	@mkdir -p .keel
	./bin/keel plugin keygen -out $(DEV_KEY)

# Development access-token keys: the auth plugin signs with the seed, the gateway verifies.
$(JWT_KEY).seed:
	@mkdir -p .keel
	./bin/keel plugin jwt-keygen -out $(JWT_KEY)

# run uses the local PostgreSQL when it is reachable (registry, SQL, events outbox),
# and says so in one line when it is not; KEEL_* variables from the environment win.
run: build plugins $(JWT_KEY).seed
	@.ci/services --optional
	@if [ -z "$$KEEL_DATABASE_URL" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
		psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='keel'" | grep -q 1 || \
			psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE keel" ; \
		export KEEL_DATABASE_URL='$(LOCAL_DB)'; \
	elif [ -z "$$KEEL_DATABASE_URL" ]; then \
		echo "keel: no PostgreSQL on 127.0.0.1:5432; running without the registry, SQL and events"; \
	fi; export $(RUN_ENV); exec ./bin/keel serve

# dev runs the host and hot-swaps a plugin whenever its source changes.
dev: build plugins $(JWT_KEY).seed
	@.ci/services --optional
	@export $(RUN_ENV) KEEL_DEV_MODE=true KEEL_ADMIN_TOKEN=$${KEEL_ADMIN_TOKEN:-dev-admin-token-change-me} KEEL_DATABASE_URL=$${KEEL_DATABASE_URL:-$(LOCAL_DB)}; \
		psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='keel'" | grep -q 1 || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE keel"; \
		./bin/keel serve & host=$$!; trap "kill $$host" EXIT INT TERM; \
		addr=$${KEEL_HTTP_ADDR:-:8080}; ./bin/keel plugin watch -key $(DEV_KEY).key -url http://127.0.0.1:$${addr##*:}

services:
	.ci/services

test: services
	$(GO) test -count=1 -timeout 20m ./...

# The whole suite under the race detector: about 3× slower, so not part of make test.
test-race: services
	$(GO) test -race -count=1 -timeout 40m ./...

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
	set -o pipefail; $(GO) run ./host/cmd/keelbench | tee bench/out/latest.txt

clean:
	rm -rf bin dist bench/out
