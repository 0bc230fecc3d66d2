# godwit: `make run` brings up what exists on this machine; `make test`
# installs what the tests need and runs them all, `make check` the short
# ones. They install what they need.

BIN := $(CURDIR)/bin
export PATH := $(BIN):/usr/local/go/bin:$(PATH)
GO ?= go
NATSCLI_VERSION := v0.5.0
DATA ?= $(CURDIR)/data
# WANLINK is the link emulator's source (its own module, read-only): bench-wan builds it with go build -C.
WANLINK ?= ../shared/tools/wanlink
# VERSION is what oma, vma and vcsim -version print; without git, the
# binaries fall back to the VCS revision the go command records.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
LDFLAGS := -X github.com/godwit/godwit/version.stamp=$(VERSION)

.PHONY: run run-cluster demo check test test-guest bench bench-wan build deps tools

## run: build and start the dev stack: simulated vCenter, OMA (:8082), sshd, VMA (localhost:9081 through the tunnel)
# The first run takes minutes (packages, the nats CLI and the binaries
# compiled from a cold cache): each step says what it does before it starts.
run: deps tools build
	@echo "make run: starting the dev stack (vcsim, oma, sshd, vma, oma watch); Ctrl-C stops it"
	DATA=$(DATA) BIN=$(BIN) scripts/dev-stack.sh

## run-cluster: three NATS nodes on loopback (an active OMA, its standby, a node alone), streams on three replicas; Ctrl-C stops it
run-cluster: deps tools build
	@echo "make run-cluster: starting oma-1 (active), oma-2 (standby) and node-3; Ctrl-C stops them"
	DATA=$(DATA)/cluster BIN=$(BIN) scripts/run-cluster.sh

## demo: against a running `make run`, the seed's workflow with curl, checked, then an incremental cycle
demo:
	scripts/demo.sh

## build: compile the binaries into ./bin
build:
	@echo "make build: compiling oma, vma and vcsim $(VERSION) into $(BIN) (the first time about 2-3 min on 2 cores, then seconds)"
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/oma ./oma
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vma ./vma
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vcsim ./vma/vcsim/cmd/vcsim

## deps: install the Debian packages (apt-get) the tests and the stack use
deps:
	@echo "make deps: checking the Debian packages (nbdkit, libnbd-bin, openssh-server, qemu, a kernel, grub, ...); apt-get installs those missing"
	@scripts/install-deps.sh

## tools: install the nats CLI into ./bin
tools: $(BIN)/nats

$(BIN)/nats:
	@echo "make tools: installing the nats CLI $(NATSCLI_VERSION) into $(BIN) with go install (compiled from source: about 4 min on 2 cores, once)"
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

## test-guest: the whole cutover of a real Debian 12 guest (built with mmdebstrap, cached in /var/tmp/godwit-guests):
## virt-v2v-in-place and boot checks under TCG, 6-15 min; as root. make test runs the same path on a busybox guest.
test-guest: deps
	bash -o pipefail -c "GODWIT_TEST_GUEST=1 $(GO) test -count=1 -timeout 60m -run TestCutoverDebianGuest -v ./oma/cutover | tee test-guest.log"

## screenshots: photograph the web console's pages into docs/screenshots (the README shows them), with the
## browser test that drives it (headless chromium)
screenshots: deps
	GODWIT_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run TestConsoleInABrowser ./oma/console

## bench: the benchmarks, with their ratios to the peer tools
bench: deps tools build
	$(GO) test -run '^$$' -bench 'Publish$$|PublishToConsume|CheckEvent' -benchtime 3s -count 3 ./bus ./schema
	$(GO) test -run '^$$' -bench PublishReplicas -benchtime 2000x -count 3 ./bus
	$(GO) test -run '^$$' -bench ClusterApply -benchtime 10x -count 3 -timeout 30m ./oma/appliance
	$(GO) test -run '^$$' -bench CreateReplication -benchtime 200x -count 3 ./oma/api
	$(GO) test -run '^$$' -bench Consoles -benchtime 10000x -count 3 ./oma/api
	$(GO) test -run '^$$' -bench ProgressApply -benchtime 20000x -count 3 ./oma/control
	$(GO) test -run '^$$' -bench ProgressLag -benchtime 5000x -count 3 ./oma/control
	$(GO) test -run '^$$' -bench 'CreatePlan1000|ScheduleTick1000' -benchtime 3x -timeout 30m ./oma/plans
	$(GO) test -run '^$$' -bench 'Dispatch' -benchtime 1x -count 3 -timeout 30m ./oma/queue
	$(GO) test -run '^$$' -bench CutoverDowntime -benchtime 3x -timeout 30m ./oma/cutover
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./vma/vcenter
	$(GO) test -run '^$$' -bench . -count 3 ./vma/copier
	$(GO) test -run '^$$' -bench Read -benchtime 3x ./vma/source/datastore
	$(GO) test -run '^$$' -bench InitialCycle -benchtime 3x -timeout 30m ./vma/jobs
	$(GO) test -run '^$$' -bench IncrementalCycle -benchtime 2x -timeout 30m ./vma/jobs
	$(GO) test -run '^$$' -bench CopyThroughSSH -benchtime 3x ./vma/tunnel
	$(GO) test -run '^$$' -bench NATSRoundTrip -benchtime 3x ./vma/tunnel
	BIN=$(BIN) scripts/bench-copy.sh 5

## bench-wan: as root, a real job (verification on) vs nbdcopy over ssh -L across emulated WAN links (wanlink
## between two network namespaces): 1 Gbit/s 20 ms, 1 Gbit/s 100 ms, 100 Mbit/s 80 ms; minutes. GODWIT_BENCH_DISK
## (1G), GODWIT_BENCH_NBD_CONNECTIONS, GODWIT_BENCH_VMA_FLAGS tune it; BENCH_WAN=WAN/100ms runs one link
BENCH_WAN ?= WAN
bench-wan: deps build
	$(GO) build -C $(WANLINK) -o $(BIN)/wanlink .
	$(GO) test -run '^$$' -bench '$(BENCH_WAN)' -benchtime 1x -timeout 60m ./e2e
