# Targets for humans and for CI (.ci/run calls `make ci`).
GO          ?= go
STATICCHECK := $(GO) tool -modfile=tools/go.mod staticcheck
PKGS        := ./...
# PLUGINS are the adapter modules of their own (plugin/*), each tested in
# its directory.
PLUGINS     := plugin/csprom

.PHONY: soak-sharded race-sharded driver-tests interop-node demo test fmt-check vet lint race spec spec-driver sim bench soak soak-restart soak-lease soak-failover ci deps

## demo: run the quickstart on an embedded simulator (or MONGODB_URI), then the command-line tool against cmd/mongosim
demo:
	$(GO) run ./examples/quickstart
	bash scripts/demo-tool.sh

## test: formatting, vet, staticcheck, the spec tests' summary, every test under the race detector, then the package's tests again on a sharded cluster
test: fmt-check vet lint spec race race-sharded

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	@for p in $(PLUGINS); do (cd $$p && echo "$$p: go vet" && $(GO) vet ./...) || exit 1; done

lint:
	$(STATICCHECK) $(PKGS)
	@for p in $(PLUGINS); do (cd $$p && echo "$$p: staticcheck" && $(GO) tool -modfile=$(CURDIR)/tools/go.mod staticcheck ./...) || exit 1; done

race:
	$(GO) test -race -count=1 $(PKGS)
	@for p in $(PLUGINS); do (cd $$p && $(GO) test -race -count=1 ./...) || exit 1; done

## race-sharded: the root package's, checkpoint's, hub's and the CLI's tests on a simulated sharded cluster (2 shards, 2 mongos)
SHARDED_PKGS := . ./checkpoint/... ./hub/... ./cmd/changestream/...
race-sharded:
	CHANGESTREAM_TEST_TOPOLOGY=sharded $(GO) test -race -count=1 $(SHARDED_PKGS)

## spec: the Change Streams spec tests on one member, on a three-member set and on a sharded cluster (2 shards, 2 mongos), printing every skip reason and the summaries
spec:
	@for n in 1 3; do \
	echo "spec: on a simulated replica set of $$n member(s)"; \
	CHANGESTREAM_SPEC_MEMBERS=$$n $(GO) test -count=1 -v -run TestChangeStreamSpec ./internal/unified > .spec.out 2>&1; \
	status=$$?; grep -E '^\s*spec:' .spec.out; \
	if [ $$status -ne 0 ]; then cat .spec.out; rm -f .spec.out; exit $$status; fi; \
	done; rm -f .spec.out
	@echo "spec: on a simulated sharded cluster of 2 shards behind 2 mongos"; \
	CHANGESTREAM_SPEC_TOPOLOGY=sharded $(GO) test -count=1 -v -run TestChangeStreamSpec ./internal/unified > .spec.out 2>&1; \
	status=$$?; grep -E '^\s*spec:' .spec.out; \
	if [ $$status -ne 0 ]; then cat .spec.out; fi; rm -f .spec.out; exit $$status

## spec-driver: the same files with the driver's own Watch (control mode); SPEC_TOPOLOGY=sharded for the sharded cluster
spec-driver:
	@CHANGESTREAM_DRIVER_WATCH=1 CHANGESTREAM_SPEC_TOPOLOGY=$(SPEC_TOPOLOGY) $(GO) test -count=1 -v -run TestChangeStreamSpec ./internal/unified > .spec.out 2>&1; \
	status=$$?; grep -E '^\s*spec:' .spec.out; \
	if [ $$status -ne 0 ]; then cat .spec.out; fi; rm -f .spec.out; exit $$status

## sim: run the simulator on 127.0.0.1:27017 until interrupted
sim:
	$(GO) run ./cmd/mongosim -addr 127.0.0.1:27017

## bench: every benchmark with allocation counts
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## soak: the long fault soak (events, faults, lost and duplicated counts)
soak:
	CHANGESTREAM_SOAK=long $(GO) test -run 'TestFaultSoak' -count=1 -v .

## soak-restart: a checkpointed consumer process SIGKILLed 100 times while 20,000 documents are written
soak-restart:
	CHANGESTREAM_SOAK=long $(GO) test -run 'TestRestartSoak' -count=1 -v ./checkpoint

## soak-lease: two consumer processes sharing a lease, the holder killed or paused 30 times
soak-lease:
	CHANGESTREAM_SOAK=long $(GO) test -run 'TestFailoverSoak' -count=1 -v ./checkpoint

## soak-failover: 100 elections of a three-member simulated set under a writer; ChangeStream and the driver's Watch side by side
soak-failover:
	CHANGESTREAM_SOAK=long $(GO) test -run 'TestElectionSoak' -count=1 -v .

## soak-sharded: 100 faults of a simulated sharded cluster (shard failovers, mongos restarts, chunk moves, paused no-op writers) under a writer; ChangeStream, checkpoint.Run with a lease (its holder SIGKILLed) and the driver's Watch side by side
soak-sharded:
	CHANGESTREAM_SOAK=long $(GO) test -run 'TestShardedSoak' -count=1 -v .

deps:
	$(GO) mod download
	$(GO) mod download -modfile=tools/go.mod
	@for p in $(PLUGINS); do (cd $$p && $(GO) mod download) || exit 1; done

ci: deps test

## driver-tests: the Go driver's own change-stream tests against cmd/mongosim (replica sets of 1 and 3, 2 shards behind 2 mongos), with counts
driver-tests:
	bash scripts/driver-tests.sh

## interop-node: the official Node.js driver against cmd/mongosim: one member, a three-member set, and 2 shards behind 2 mongos (needs node and npm)
interop-node:
	cd scripts/interop-node && npm install --no-audit --no-fund --silent
	$(GO) build -o bin/mongosim ./cmd/mongosim
	$(GO) build -o bin/changestream ./cmd/changestream
	@bin/mongosim -addr 127.0.0.1:0 > .sim.out 2> .sim.err & pid=$$!; \
	for i in $$(seq 50); do [ -s .sim.out ] && break; sleep 0.1; done; \
	node scripts/interop-node/watch.js "$$(head -1 .sim.out)" && \
	node scripts/interop-node/tokens.js "$$(head -1 .sim.out)" bin/changestream; status=$$?; \
	kill -INT $$pid; wait $$pid; rm -f .sim.out .sim.err; [ $$status -eq 0 ] || exit $$status; \
	bin/mongosim -members 3 > .sim.out 2> .sim.err & pid=$$!; \
	for i in $$(seq 50); do [ -s .sim.out ] && break; sleep 0.1; done; \
	node scripts/interop-node/failover.js "$$(head -1 .sim.out)"; status=$$?; \
	kill -INT $$pid; wait $$pid; rm -f .sim.out .sim.err; [ $$status -eq 0 ] || exit $$status; \
	bin/mongosim -shards 2 -mongos 2 -noop-interval 1s > .sim.out 2> .sim.err & pid=$$!; \
	for i in $$(seq 50); do [ -s .sim.out ] && break; sleep 0.1; done; \
	node scripts/interop-node/sharded.js "$$(head -1 .sim.out)"; status=$$?; \
	kill -INT $$pid; wait $$pid; rm -f .sim.out .sim.err; exit $$status
