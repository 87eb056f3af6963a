# courier — `make` lists the targets.
GO          ?= go
BIN         ?= bin/courier
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X courier/cli.Version=$(VERSION)

.DEFAULT_GOAL := help
.PHONY: help build demo test test-short lint tools bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## build bin/courier
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

demo: build ## export this repository's own git history into .courier-demo/exports, with live progress
	@mkdir -p .courier-demo
	@printf 'repos:\n  - %s\n' "$(CURDIR)" > .courier-demo/git.yaml
	./$(BIN) --root $(CURDIR)/.courier-demo export --integration git --config .courier-demo/git.yaml
	@echo "NDJSON files: $(CURDIR)/.courier-demo/exports/git/ (run it again: only new commits are exported)"

test: build ## all tests with -race, fuzz seed corpora and end-to-end tests of the built binary
	COURIER_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 20m ./...

test-short: ## unit tests only, no race detector
	$(GO) test -short -count=1 ./...

tools: ## install the linters
	@test -x $(GOBIN)/staticcheck || $(GO) install $(STATICCHECK)

lint: tools ## gofmt, go vet, staticcheck, go mod tidy
	@out=$$(gofmt -l $$(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...
	@cp go.mod /tmp/courier-go.mod.bak; cp go.sum /tmp/courier-go.sum.bak; \
		$(GO) mod tidy; \
		if ! cmp -s go.mod /tmp/courier-go.mod.bak || ! cmp -s go.sum /tmp/courier-go.sum.bak; then \
			echo "go mod tidy changed go.mod/go.sum: commit the tidy result"; exit 1; fi

bench: build ## benchmarks (see docs/benchmarks.md)
	COURIER_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./queue/ ./events/

clean: ## remove build outputs
	rm -rf bin
