#!/usr/bin/env bash
# What the SQLite store costs a history room's publisher: the fan-out scenario (100
# subscribers, maximal rate, into the auto-created room `bench`, which keeps the default
# 100 messages) against a fresh server with `--store memory` and then `--store sqlite`,
# alternating, REPEATS times. Server pinned to CPU 0 (its store thread included), generator
# to CPU 1, as in compare.py. Build first: cargo build --release --workspace.
# Usage: bench/store-cost.sh [REPEATS] [SECONDS]
set -euo pipefail
repeats="${1:-3}"
secs="${2:-8}"
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
port=3199
for rep in $(seq "$repeats"); do
  for store in memory sqlite; do
    dir=$(mktemp -d)
    (cd "$dir" && RUST_LOG=warn exec taskset -c 0 "$target/hubbub" --bind "127.0.0.1:$port" \
      --store "$store" --rate-messages 0 --rate-bytes 0) >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    result=$(taskset -c 1 "$target/hubbub-bench" --proto v1 --url "ws://127.0.0.1:$port/ws" \
      --server-pid "$pid" fanout --subs 100 --secs "$secs" | grep '^RESULT')
    echo "repeat $rep store $store: $result"
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$dir"
  done
done
