#!/usr/bin/env bash
# The Go driver's own change-stream tests (go.mongodb.org/mongo-driver/v2,
# internal/integration) against cmd/mongosim: a one-member and a
# three-member replica set, and a sharded cluster of 2 shards behind 2
# mongos (1 s no-op interval). Three suites each: TestChangeStream_*, the
# CSOT change-stream tests, and the driver's unified runner on the
# Change Streams spec files, copied from ../shared at test time (the
# module in the cache has no testdata/specifications). Prints one count
# line a suite and topology; exits non-zero if a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
spec=${CHANGESTREAM_SPEC_DIR:-$root/../shared/spec-tests/change-streams}
version=$(go list -m -f '{{.Version}}' go.mongodb.org/mongo-driver/v2)
go mod download go.mongodb.org/mongo-driver/v2
src=$(go env GOMODCACHE)/go.mongodb.org/mongo-driver/v2@$version
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
cp -r "$src" "$work/driver"
chmod -R u+w "$work/driver"
mkdir -p "$work/driver/testdata/specifications/source/change-streams/tests/unified"
cp "$spec"/*.json "$work/driver/testdata/specifications/source/change-streams/tests/unified/"
go build -o "$work/mongosim" ./cmd/mongosim
go build -o "$work/testcount" ./scripts/testcount

status=0
run() { # label, mongosim flags...
	local label=$1
	shift
	"$work/mongosim" "$@" >"$work/sim.out" 2>"$work/sim.err" &
	pid=$!
	for _ in $(seq 100); do [ -s "$work/sim.out" ] && break; sleep 0.1; done
	local uri
	uri=$(head -1 "$work/sim.out")
	echo "driver-tests: $label at $uri"
	(cd "$work/driver" && MONGODB_URI=$uri GOWORK=off GOFLAGS=-mod=mod go test -json -count=1 ./internal/integration \
		-run '^TestChangeStream_|^TestCSOT_.*ChangeStream') | "$work/testcount" "driver-tests: $label TestChangeStream_* and CSOT" || status=1
	(cd "$work/driver" && MONGODB_URI=$uri GOWORK=off GOFLAGS=-mod=mod go test -json -count=1 ./internal/integration/unified \
		-run '^TestUnifiedSpec$/^change-streams/') | "$work/testcount" "driver-tests: $label unified change-streams" || status=1
	kill -INT "$pid"
	wait "$pid" || true
	pid=
}
run "replica set of 1" -addr 127.0.0.1:0
run "replica set of 3" -members 3
run "sharded, 2 shards, 2 mongos" -shards 2 -mongos 2 -noop-interval 1s
exit $status
