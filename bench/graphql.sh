#!/usr/bin/env bash
# GraphQL fan-out beside v1 and Socket.IO fan-out, in one run: a v1 publisher on `/ws` and
# SUBS subscribers of one room speaking v1, Socket.IO or GraphQL (graphql-transport-ws, a
# `messages(room)` subscription selecting `data`), alternating, REPEATS times, each against
# a fresh server pinned to CPU 0 with the generator on CPU 1. The figures are ratios
# between the three on one machine, not absolutes.
#
# Usage: bench/graphql.sh [REPEATS] [SECONDS] [SUBS] [RATE]   (RATE 0: maximal, window 16)
# Build first: cargo build --release --workspace.
set -euo pipefail
repeats="${1:-2}"
secs="${2:-5}"
subs="${3:-1000}"
rate="${4:-0}"
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../target}/release"
port=3301
for rep in $(seq "$repeats"); do
  for proto in v1 sio gql; do
    dir=$(mktemp -d)
    (cd "$dir" && RUST_LOG=warn exec taskset -c 0 "$target/hubbub" --bind "127.0.0.1:$port" \
      --store memory --default-history 0 --rate-messages 0 --rate-bytes 0 --compression off) >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    case "$proto" in
      v1) sub="ws://127.0.0.1:$port/ws" ;;
      sio) sub="ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket" ;;
      gql) sub="ws://127.0.0.1:$port/graphql" ;;
    esac
    result=$(taskset -c 1 "$target/hubbub-bench" --proto v1 --url "ws://127.0.0.1:$port/ws" \
      --sub-proto "$proto" --sub-url "$sub" --server-pid "$pid" \
      fanout --subs "$subs" --rate "$rate" --secs "$secs" | grep '^RESULT' || echo "RESULT failed")
    echo "repeat $rep $proto: $result"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
