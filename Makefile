# courier — `make` lists the targets.
GO          ?= go
BIN         ?= bin/courier
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X courier/cli.Version=$(VERSION)
# Release tools, pinned, installed with `go install` into a cache outside
# the repository (kept between CI runs on the same machine).
GORELEASER_VERSION ?= v2.17.0
TOOLS_CACHE ?= $(HOME)/.cache/courier-release
GORELEASER  := $(TOOLS_CACHE)/goreleaser-$(GORELEASER_VERSION)/goreleaser

.DEFAULT_GOAL := help
.PHONY: help build demo test test-short lint tools bench clean release-test release release-check

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

# Full-size benchmarks, about 5-10 minutes on 2 cores; results and how to
# read them are in docs/benchmarks.md. Smaller: make bench BENCH_ITEMS=100000
# BENCH_EVENTS=5000 BENCH_ROUNDS=1.
BENCH_ITEMS  ?= 1000000
BENCH_EVENTS ?= 30000
BENCH_ROUNDS ?= 3
# The paced drain takes ~9 minutes at PagerDuty's 120/min; BENCH_PACE_LIMIT=600 takes under 2.
BENCH_PACE_LIMIT  ?= 120
BENCH_PACE_EVENTS ?= 1000
bench: build ## benchmarks, full size (see docs/benchmarks.md)
	COURIER_BENCH_ROUNDS=$(BENCH_ROUNDS) $(GO) test -run '^$$' -bench '^BenchmarkEnqueue$$' -benchtime 3s -count 1 -v -timeout 30m ./queue/
	COURIER_BENCH_ITEMS=$(BENCH_ITEMS) $(GO) test -run '^$$' -bench '^BenchmarkDequeue$$' -benchtime 1x -count 1 -v -timeout 30m ./queue/
	COURIER_BIN=$(CURDIR)/$(BIN) COURIER_BENCH_ITEMS=$(BENCH_ITEMS) COURIER_BENCH_EVENTS=$(BENCH_EVENTS) COURIER_BENCH_ROUNDS=$(BENCH_ROUNDS) \
		$(GO) test -run '^$$' -bench '^Benchmark(HTTPEnqueue|RestartBacklog)$$' -benchtime 1x -count 1 -v -timeout 30m ./cli/
	COURIER_BIN=$(CURDIR)/$(BIN) COURIER_BENCH_RECORDS=100000 \
		$(GO) test -run '^$$' -bench '^BenchmarkExportToBackend$$' -benchtime 1x -count 1 -v -timeout 30m ./cli/
	COURIER_BIN=$(CURDIR)/$(BIN) COURIER_BENCH_PACE_LIMIT=$(BENCH_PACE_LIMIT) COURIER_BENCH_PACE_EVENTS=$(BENCH_PACE_EVENTS) \
		$(GO) test -run '^$$' -bench '^BenchmarkPacedDrain$$' -benchtime 1x -count 1 -v -timeout 30m ./cli/
	COURIER_GIT_BENCH_COMMITS=20000,100000 $(GO) test -run '^$$' -bench '^BenchmarkGitExport$$' -benchtime 1x -count 1 -v -timeout 30m ./integrations/git/

$(GORELEASER):
	GOBIN=$(dir $(GORELEASER)) GOFLAGS= $(GO) install github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION)

release-test: $(GORELEASER) ## snapshot release into dist/: archives, deb, rpm, checksums; unsigned, nothing published
	$(GORELEASER) release --snapshot --clean --skip=sign

# make release signs with the GPG key whose fingerprint is GPG_FINGERPRINT
# (default: the first secret key); its secret key is exported for nfpm into
# a 0600 file that is removed afterwards. It needs a tag on HEAD and
# publishes nothing.
release: $(GORELEASER) ## signed release of the tagged commit into dist/ (needs a GPG secret key; publishes nothing)
	@fpr="$${GPG_FINGERPRINT:-$$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$$1=="fpr"{print $$10; exit}')}"; \
	if [ -z "$$fpr" ]; then \
		echo "make release: no GPG secret key (gpg --list-secret-keys shows none). Create one with" >&2; \
		echo "  gpg --quick-generate-key 'courier releases <you@example.com>' ed25519 sign 2y" >&2; \
		echo "or import yours (gpg --import key.asc), or name one with GPG_FINGERPRINT=..., then run make release again." >&2; \
		exit 1; \
	fi; \
	keyfile=$$(mktemp); trap 'rm -f "$$keyfile"' EXIT; chmod 600 "$$keyfile"; \
	gpg --batch --pinentry-mode loopback --passphrase "$${NFPM_COURIER_PASSPHRASE:-}" --armor --export-secret-keys "$$fpr" > "$$keyfile"; \
	GPG_FINGERPRINT="$$fpr" COURIER_SIGNING_KEY_FILE="$$keyfile" $(GORELEASER) release --clean --skip=publish

release-check: ## check dist/ from make release-test: lintian, contents, unit, scripts, install/upgrade/remove in a throwaway root
	bash service/packaging/check.sh dist

clean: ## remove build outputs
	rm -rf bin dist .release
