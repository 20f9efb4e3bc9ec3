# skiff: build, test and run entry points. `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO            ?= go
BIN           := bin/skiff
COMMIT        := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -X github.com/skiff-sh/skiff/internal/cli.Commit=$(COMMIT) -X github.com/skiff-sh/skiff/internal/cli.Version=0.1.0-$(COMMIT)
STAGE         := hack/stage.sh
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint
E2E_DIR       := test/e2e
# Extra flags for `skiff bench`, e.g. make bench BENCH_FLAGS=--json
BENCH_FLAGS   ?=
# Extra flags for `skiff up`, e.g. make up UP_ARGS="--data-dir /tmp/skiff"
UP_ARGS       ?=
# Extra flags for `skiff down`, e.g. make down DOWN_ARGS=--purge
DOWN_ARGS     ?=

.DEFAULT_GOAL := build
.PHONY: help build test test-unit test-e2e lint bench up down deps clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

build: ## build bin/skiff
	@$(STAGE) build $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skiff

test: ## install what is missing, then unit and e2e tests
	@start=$$EPOCHREALTIME; \
	$(MAKE) --no-print-directory deps; \
	$(MAKE) --no-print-directory test-unit; \
	$(MAKE) --no-print-directory test-e2e; \
	awk -v a="$$start" -v b="$$EPOCHREALTIME" 'BEGIN { printf "==> test (all stages) took %.1fs\n", b - a }'

test-unit: ## unit tests with the race detector
	@$(STAGE) test-unit $(GO) test -race ./internal/... ./cmd/...

test-e2e: build ## end-to-end tests against the real binary
	@if [[ -d $(E2E_DIR) ]] && [[ -n "$$(find $(E2E_DIR) -name '*_test.go' -print -quit)" ]]; then \
		SKIFF_E2E_BINARY=$(CURDIR)/$(BIN) $(STAGE) test-e2e $(GO) test -count=1 -v -timeout 25m ./$(E2E_DIR)/...; \
	else \
		echo "==> test-e2e: no tests in $(E2E_DIR) yet, skipped"; \
	fi

lint: ## gofmt, go vet, go mod tidy and golangci-lint
	@bash hack/install-deps.sh --lint
	@$(STAGE) gofmt bash -c 'out=$$(gofmt -l cmd internal $$([[ -d test ]] && echo test)); if [[ -n $$out ]]; then echo "gofmt -w needed:"; echo "$$out"; exit 1; fi'
	@$(STAGE) vet $(GO) vet ./...
	@$(STAGE) mod-tidy $(GO) mod tidy -diff
	@$(STAGE) golangci-lint $(GOLANGCI_LINT) run ./...

bench: build ## API, startup, scheduler and failover benchmarks (skiff bench --help lists all)
	@$(STAGE) bench-api $(BIN) bench api $(BENCH_FLAGS)
	@$(STAGE) bench-startup $(BIN) bench startup $(BENCH_FLAGS)
	@$(STAGE) bench-scheduler $(BIN) bench scheduler --nodes 1000 --pods 10000 $(BENCH_FLAGS)
	@$(STAGE) bench-failover $(BIN) bench failover $(BENCH_FLAGS)

up: deps ## build skiff and start a local 3-node cluster with a demo app (hack/up.sh)
	@hack/up.sh $(UP_ARGS)

down: build ## stop the local cluster and remove what it made (DOWN_ARGS=--purge: its data too)
	@$(BIN) down $(DOWN_ARGS)

deps: ## install missing Debian packages (hack/install-deps.sh)
	@$(STAGE) deps bash hack/install-deps.sh

clean: ## remove build output
	rm -rf bin
