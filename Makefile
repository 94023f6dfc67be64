# presenced developer tasks. `make help` lists them.

GO       ?= go
BIN      := bin
FUZZTIME ?= 10s
# Go files to format and check; testdata may hold deliberately odd files.
GOFILES   = $(shell find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*')

.PHONY: help run build test test-short fmt vet lint fuzz chaos clean bench bench-full

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## run the service (REDIS_URL unset: embedded Redis, no setup needed)
	$(GO) run ./cmd/presenced

build: ## build bin/presenced
	$(GO) build -trimpath -o $(BIN)/ ./cmd/presenced

test: ## install test deps, then every test with the race detector against real redis-servers and headless Chromium
	./scripts/test-deps.sh
	PRESENCE_REQUIRE_REDIS=1 PRESENCE_REQUIRE_BROWSER=1 $(GO) test -race -count=1 -timeout 8m ./...

test-short: ## quick tests: no race detector, slow tests skipped
	$(GO) test -short -count=1 ./...

fmt: ## gofmt every Go file
	gofmt -w $(GOFILES)

vet: ## go vet
	$(GO) vet ./...

lint: ## fail on unformatted files, then go vet
	@unformatted=$$(gofmt -l $(GOFILES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fuzz: ## run every Fuzz* target for FUZZTIME (default 10s) each
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

chaos: ## fault scenarios (internal/chaos): real presenced (built with -race) and redis-server processes stopped, frozen, killed, flooded; about 90 s
	./scripts/test-deps.sh
	PRESENCE_CHAOS=1 PRESENCE_REQUIRE_REDIS=1 $(GO) test -count=1 -timeout 6m -v ./internal/chaos/

bench: ## short benchmark run (small sizes, ~2 min; needs redis-server, as make test): tables + JSON in artifacts/bench-short
	$(GO) build -o $(BIN)/presence-bench ./cmd/presence-bench
	$(BIN)/presence-bench -preset short -out artifacts/bench-short

bench-full: ## full benchmark run (10k users, 1M-user dataset, < 15 min): tables + JSON in artifacts/bench-full
	$(GO) build -o $(BIN)/presence-bench ./cmd/presence-bench
	$(BIN)/presence-bench -preset full -profile -out artifacts/bench-full

clean: ## remove build and test outputs
	rm -rf $(BIN) artifacts coverage.out coverage.html
