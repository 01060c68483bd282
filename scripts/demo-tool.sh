#!/usr/bin/env bash
# The second half of `make demo`: cmd/changestream tails a collection of
# cmd/mongosim while the quickstart writes to it, then decodes the first
# event's resume token.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'kill -INT $sim 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/mongosim" ./cmd/mongosim
go build -o "$dir/changestream" ./cmd/changestream
"$dir/mongosim" -addr 127.0.0.1:0 > "$dir/sim.out" 2> "$dir/sim.err" & sim=$!
for _ in $(seq 100); do [ -s "$dir/sim.out" ] && break; sleep 0.05; done
uri=$(head -1 "$dir/sim.out")

echo
echo "$ changestream tail -db quickstart -checkpoint file:STATE -format human   # while the quickstart writes"
"$dir/changestream" tail -uri "$uri" -db quickstart -checkpoint "file:$dir/state" -format human > "$dir/tail.out" 2> "$dir/tail.err" & tail=$!
for _ in $(seq 100); do ls "$dir/state"/checkpoint-* > /dev/null 2>&1 && break; sleep 0.05; done
MONGODB_URI="$uri" go run ./examples/quickstart > /dev/null
sleep 0.5
kill -INT $tail; wait $tail || true
cat "$dir/tail.out" "$dir/tail.err"

echo
echo "$ changestream tail -db quickstart -checkpoint file:STATE -fields _id   # restarted: nothing new since the checkpoint"
"$dir/changestream" tail -uri "$uri" -db quickstart -checkpoint "file:$dir/state" -fields _id > "$dir/again.out" 2>&1 & tail=$!
sleep 1
kill -INT $tail; wait $tail || true
echo "($(wc -l < "$dir/again.out") lines)"

first=$(sed -n 's/.*"_data": *"\([0-9A-F]*\)".*/\1/p' "$dir"/state/checkpoint-*.json | head -1)
echo
echo "$ changestream token $first   # the saved checkpoint's token"
"$dir/changestream" token "$first"
