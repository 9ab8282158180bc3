# edgevault — see README.md. Every target works offline on a fresh clone
# once the Go module cache (and, for synth, the .cdk tooling) is filled.
SHELL := /bin/bash
GO ?= go
export CDK_DISABLE_CLI_TELEMETRY := true
BIN := build/bin
FUNCTIONS := scheduler worker assembler api drcopy drill maintain

.PHONY: build test test-fast lint demo demo-05 bench scale lambdas e2e conformance clean

build: ## edgevault and the emulator for this machine
	$(GO) build -o $(BIN)/edgevault ./cmd/edgevault
	$(GO) build -o $(BIN)/edgebase-emulator ./cmd/edgebase-emulator

test: ## every test, including slow suites and moto-backed adapters
	$(GO) vet ./...
	EDGEVAULT_SLOW=1 $(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v /test/crash$$)
	@# The crash suite's runs mostly wait on each other's clocks: run many at once.
	EDGEVAULT_SLOW=1 $(GO) test -count=1 -timeout 30m -parallel 8 ./test/crash/
	@# The engine and the code that runs concurrently in it, under the race detector.
	$(GO) test -count=1 -race -timeout 20m ./pkg/pipeline/ ./pkg/backup/ ./pkg/restore/ ./pkg/serverless/ ./pkg/blob/fs/ ./pkg/queue/mem/

test-fast: ## quick unit run
	$(GO) test ./...

GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT ?= $(shell command -v golangci-lint 2>/dev/null || echo $$($(GO) env GOPATH)/bin/golangci-lint)

lint: ## gofmt, go vet and golangci-lint (.golangci.yml: adapter boundaries, funlen 100, staticcheck)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@[ -x "$(GOLANGCI_LINT)" ] || { echo "golangci-lint not found: $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)" >&2; exit 1; }
	$(GOLANGCI_LINT) run ./...

demo: build ## backup + verify + restore round trip against a local emulator (DEMO_PROFILE=0.5 for EdgeBase 0.4-0.5)
	./scripts/demo.sh

demo-05: build ## the demo against emulators behaving like EdgeBase 0.4.x-0.5.x
	DEMO_PROFILE=0.5 ./scripts/demo.sh

bench: build ## benchmarks (see bench/README.md)
	./scripts/bench.sh

scale: ## one embedded backup of 10,000 DOs and 200,000 objects (R2 direct), measured into bench/scale.md (docs/SCALE.md)
	./scripts/scale.sh

lambdas: ## linux/arm64 bootstrap binaries for the Lambda functions
	@for fn in $(FUNCTIONS); do \
	  echo "build/lambda/$$fn/bootstrap"; \
	  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' \
	    -o build/lambda/$$fn/bootstrap ./functions/$$fn || exit 1; \
	done

e2e: ## serverless round trip: handlers against moto + the emulator
	EDGEVAULT_E2E=1 $(GO) test -count=1 -v -run TestE2E ./test/e2e/

conformance: build ## against the real EdgeBase peer (EDGEBASE_PEER_DIR, default ../shared/peer)
	./scripts/conformance.sh

clean:
	rm -rf build cdk.out

# --- cdk ---
# CDK CLI pinned to a release newer than the aws-cdk-lib (v2.276.0) in
# go.mod, so it reads every cloud assembly the Go app writes. It lives in
# .cdk/ (a dot directory, ignored by git and skipped by `go test ./...`).
CDK_VERSION := 2.1148.1
CDK_DIR     := .cdk
CDK         := $(CDK_DIR)/node_modules/.bin/cdk
CDK_STAMP   := $(CDK_DIR)/.installed-$(CDK_VERSION)
CDK_OUT     ?= cdk.out
# Extra CLI arguments, e.g. CDK_ARGS='-c edgebaseUrl=https://my-app.example.com -c alarmEmail=ops@example.com'.
# edgebaseUrl is required; the default here only lets `make synth` check the
# templates. DR_ARGS are the DR stack's keys for `make synth-dr`.
CDK_ARGS    ?= -c edgebaseUrl=https://edgebase.example.com
DR_ARGS     ?=
# Offline: no telemetry, no version check, no notices.
CDK_ENV     := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true

.PHONY: cdk-install synth synth-dr

cdk-install: $(CDK_STAMP) ## CDK CLI into .cdk/ (idempotent)

$(CDK_STAMP):
	rm -f $(CDK_DIR)/.installed-*
	npm install --prefix $(CDK_DIR) --no-audit --no-fund --save-exact aws-cdk@$(CDK_VERSION)
	touch $@

synth: lambdas cdk-install ## cdk synth (offline) into $(CDK_OUT)
	$(CDK_ENV) $(CDK) synth --no-notices --no-version-reporting --output $(CDK_OUT) --quiet $(CDK_ARGS)

synth-dr: cdk-install ## the DR stack alone (no function binaries), e.g. DR_ARGS='-c drSourceRoleArn=... -c drSourceBucket=... -c drSourceKeyArn=... -c drRegion=...'
	$(CDK_ENV) $(CDK) synth --no-notices --no-version-reporting --output $(CDK_OUT) --quiet -c drOnly=true $(DR_ARGS)
# --- end cdk ---
