# godwit: `make run` brings up what exists on this machine; `make test`
# installs what the tests need and runs them all, `make check` the short
# ones. They install what they need.

BIN := $(CURDIR)/bin
export PATH := $(BIN):/usr/local/go/bin:$(PATH)
GO ?= go
NATSCLI_VERSION := v0.5.0
DATA ?= $(CURDIR)/data

.PHONY: run demo check test bench build deps tools

## run: build and start the dev stack: simulated vCenter, OMA (:8082), sshd, VMA (localhost:9081 through the tunnel)
run: deps tools build
	DATA=$(DATA) BIN=$(BIN) scripts/dev-stack.sh

## demo: against a running `make run`, the seed's workflow with curl, checked, then an incremental cycle
demo:
	scripts/demo.sh

## build: compile the binaries into ./bin
build:
	$(GO) build -o $(BIN)/oma ./oma
	$(GO) build -o $(BIN)/vma ./vma
	$(GO) build -o $(BIN)/vcsim ./vma/vcsim/cmd/vcsim

## deps: install the Debian packages (apt-get) the tests and the stack use
deps:
	scripts/install-deps.sh

## tools: install the nats CLI into ./bin
tools: $(BIN)/nats

$(BIN)/nats:
	GOBIN=$(BIN) $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

## check: the inner loop: vet and the short tests (go test -short skips the 5,013-VM discovery, the demo,
## the kill loop and the other tests over ~20 s), without -race
check: deps tools
	$(GO) vet ./...
	GO=$(GO) scripts/go-test.sh -short -count=1 -timeout 10m ./...

## test: install what the tests need, then vet and run every test with -race (CI: .ci/run). Both print
## one line per package the moment it ends (scripts/go-test.sh), a failure with its tests' output.
test: deps tools
	$(GO) vet ./...
	GO=$(GO) scripts/go-test.sh -race -count=1 -timeout 30m ./...

## bench: the benchmarks, with their ratios to the peer tools
bench: deps tools build
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 3 ./bus ./schema
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 3 ./oma/api
	$(GO) test -run '^$$' -bench ProgressApply -benchtime 20000x -count 3 ./oma/control
	$(GO) test -run '^$$' -bench ProgressLag -benchtime 5000x -count 3 ./oma/control
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./vma/vcenter
	$(GO) test -run '^$$' -bench . -count 3 ./vma/copier
	$(GO) test -run '^$$' -bench Read -benchtime 3x ./vma/source/datastore
	$(GO) test -run '^$$' -bench InitialCycle -benchtime 3x -timeout 30m ./vma/jobs
	$(GO) test -run '^$$' -bench IncrementalCycle -benchtime 2x -timeout 30m ./vma/jobs
	$(GO) test -run '^$$' -bench CopyThroughSSH -benchtime 3x ./vma/tunnel
	$(GO) test -run '^$$' -bench NATSRoundTrip -benchtime 3x ./vma/tunnel
	BIN=$(BIN) scripts/bench-copy.sh 5
