# portal-domains: `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal_domains
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal_domains_test
export DATABASE_URL TEST_DATABASE_URL

BIN := bin/portal-domains
DEV_BIN := bin/portal-domains-dev
# FUZZTIME is a count of inputs per fuzz target, not a duration: go1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" when a
# duration runs out under load (go.dev/issue/75804, fixed in go1.27); a count
# has no deadline to race. 20000 inputs take 3-30 s per target warm.
FUZZTIME ?= 20000x

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/portal-domains (the product) and bin/portal-domains-dev (dev stack and bench)
	$(GO) build -o $(BIN) ./cmd/portal-domains
	$(GO) build -o $(DEV_BIN) ./cmd/portal-domains-dev

.PHONY: postgres
postgres: ## make sure Postgres answers (starts a throwaway one when not)
	@scripts/ensure-postgres.sh "$(DATABASE_URL)"
	@scripts/ensure-postgres.sh "$(TEST_DATABASE_URL)"

.PHONY: kube-binaries
kube-binaries: ## build kube-apiserver and etcd from the Go module proxy into .cache/kube-bin (cached)
	@scripts/build-kube-binaries.sh >/dev/null

.PHONY: acme-binaries
acme-binaries: ## build cert-manager's ACME controllers and Pebble from the Go module proxy into .cache/acme-bin (cached)
	@scripts/build-acme-binaries.sh >/dev/null

.PHONY: chromium
chromium: ## make sure Chromium is installed for the River UI browser test (installs Debian's package when not)
	@scripts/ensure-package.sh chromium chromium "the River UI browser test"

.PHONY: git
git: ## make sure git is installed for the manifest record tests (installs Debian's package when not)
	@scripts/ensure-package.sh git git "the manifest record tests' git http-backend"

.PHONY: run
run: build ## everything on this machine (Postgres, kube-apiserver, DNS, HTTPS, DEV-ONLY issuer, worker, River UI) with demo domains; Ctrl-C stops it
	@scripts/ensure-postgres.sh "$(DATABASE_URL)"
	$(DEV_BIN) dev

BENCH_FLAGS ?=
.PHONY: bench
bench: build ## one table: each pipeline stage against a baseline from the same run (BENCH_FLAGS="-n 20000 -workers 100 -json")
	@scripts/ensure-postgres.sh "$(DATABASE_URL)"
	$(DEV_BIN) bench $(BENCH_FLAGS)

.PHONY: lint
lint: ## gofmt and go vet
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

# The packages with concurrency of their own run under the race detector.
RACE_PKGS := ./db/... ./gitrecord/... ./jobs/... ./k8s/... ./internal/worker/... ./internal/server/... ./internal/cli/... ./cmd/...
.PHONY: test
test: postgres chromium git kube-binaries acme-binaries lint ## run every test against real Postgres, DNS, kube-apiserver, cert-manager and Pebble, HTTPS servers, a Git remote and Chromium, plus short fuzzing
	$(GO) test -p 2 -count=1 -timeout 25m -race $(RACE_PKGS)
	$(GO) test -p 2 -count=1 -timeout 25m $$($(GO) list ./... | grep -v -E '/(db|gitrecord|jobs|k8s|internal/worker|internal/server|internal/cli|cmd)(/|$$)')
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME inputs (default 20000x; a duration such as 60s also works)
	@for target in $$(git grep -lE '^func Fuzz' -- '*_test.go' | xargs -n1 dirname | sort -u); do \
	  for fn in $$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' $$target/*_test.go | awk '{print $$2}'); do \
	    echo "fuzz ./$$target $$fn ($(FUZZTIME))"; \
	    $(GO) test ./$$target -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) >/tmp/fuzz-$$fn.log 2>&1 || { cat /tmp/fuzz-$$fn.log; exit 1; }; \
	  done; \
	done

.PHONY: soak
soak: postgres kube-binaries ## the reliability tests at soak size: PORTAL_DOMAIN_SOAK=1 (600 domains, 6 SIGKILLs, 30-60 s outages)
	PORTAL_DOMAIN_SOAK=1 $(GO) test -count=1 -timeout 90m -v -run '^TestReliability$$' ./internal/harness/reliability

.PHONY: clean
clean: ## remove built binaries (keeps the kube-apiserver cache)
	rm -rf bin
