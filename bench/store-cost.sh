#!/usr/bin/env bash
# What the SQLite store costs, against `--store memory`, in one run (fresh server each time,
# stores alternating, REPEATS times; server pinned to CPU 0 with its store thread, generator
# to CPU 1, as in compare.py). Build first: cargo build --release --workspace.
#
# - fanout: a publisher at maximal rate into a history room (the default 100 kept) with 100
#   subscribers: what writing every message costs delivery.
# - acks: 50 publishers, 4 publishes in flight each, into one history room, each waiting for
#   its ack: the durable ack's latency (sqlite: after the commit) and acknowledged rate.
#
# Usage: bench/store-cost.sh [REPEATS] [SECONDS] [SCENARIOS...]   (default: fanout acks)
set -euo pipefail
repeats="${1:-3}"
secs="${2:-8}"
shift 2 2>/dev/null || shift $#
scenarios=("${@:-fanout acks}")
read -r -a scenarios <<<"${scenarios[*]}"
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
port=3199
for scenario in "${scenarios[@]}"; do
  case "$scenario" in
    fanout) load=(fanout --subs 100 --secs "$secs") ;;
    acks) load=(acks --conns 50 --window 4 --secs "$secs") ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  for rep in $(seq "$repeats"); do
    for store in memory sqlite; do
      dir=$(mktemp -d)
      (cd "$dir" && RUST_LOG=warn exec taskset -c 0 "$target/hubbub" --bind "127.0.0.1:$port" \
        --store "$store" --rate-messages 0 --rate-bytes 0) >"$dir/log" 2>&1 &
      pid=$!
      for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
      result=$(taskset -c 1 "$target/hubbub-bench" --proto v1 --url "ws://127.0.0.1:$port/ws" \
        --server-pid "$pid" "${load[@]}" | grep '^RESULT')
      echo "repeat $rep store $store: $result"
      kill -TERM "$pid"
      wait "$pid" || true
      rm -rf "$dir"
    done
  done
done
